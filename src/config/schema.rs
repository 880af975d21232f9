//! The known key set of Patroni's local configuration (docs/configuration.md
//! §2, §3, §5, §6, §7, §7a, §9) with the type of each leaf. It drives three
//! things: unknown-key warnings, typing of environment variable values, and
//! the normalisation of YAML 1.1 spellings (`on`, `yes`) that PyYAML reads
//! as booleans but YAML 1.2 reads as strings.

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Int,
    Bool,
    /// A list (from the environment: `[a, b]` or `a,b`).
    List,
    /// A free-form mapping (from the environment: `{k: v}` or `k: v`).
    Dict,
    /// A mapping whose children are all listed here.
    Map,
    /// A mapping with typed known children that also allows any other key
    /// (`tags`).
    Open,
    /// Anything; not checked further.
    Any,
}

use Kind::*;

const AUTH: &[&str] = &["username", "password"];
const PG_AUTH: &[&str] = &[
    "username",
    "password",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "gssencmode",
    "channel_binding",
    "sslnegotiation",
];
/// Binaries that `postgresql.bin_name` (and `PATRONI_POSTGRESQL_BIN_<x>`) name.
pub(crate) const BINARIES: &[&str] = &[
    "pg_ctl",
    "initdb",
    "pg_controldata",
    "pg_basebackup",
    "postgres",
    "pg_isready",
    "pg_rewind",
];

/// The known keys, as dotted paths. `*` matches any single segment.
const KEYS: &[(&str, Kind)] = &[
    ("name", Str),
    ("scope", Str),
    ("namespace", Str),
    ("thread_pool_size", Int),
    ("thread_stack_size", Int),
    // log
    ("log", Map),
    ("log.type", Str),
    ("log.level", Str),
    ("log.traceback_level", Str),
    ("log.format", Any),
    ("log.dateformat", Str),
    ("log.static_fields", Dict),
    ("log.max_queue_size", Int),
    ("log.dir", Str),
    // A string like "0644" is octal (Patroni's parse_int): read by
    // src/logging/settings.rs, not typed here.
    ("log.mode", Any),
    ("log.file_num", Int),
    ("log.file_size", Int),
    ("log.loggers", Dict),
    ("log.deduplicate_heartbeat_logs", Bool),
    // restapi
    ("restapi", Map),
    ("restapi.listen", Str),
    ("restapi.connect_address", Str),
    ("restapi.authentication", Map),
    ("restapi.certfile", Str),
    ("restapi.keyfile", Str),
    ("restapi.keyfile_password", Str),
    ("restapi.cafile", Str),
    ("restapi.ciphers", Str),
    ("restapi.verify_client", Str),
    ("restapi.allowlist", List),
    ("restapi.allowlist_include_members", Bool),
    ("restapi.http_extra_headers", Dict),
    ("restapi.https_extra_headers", Dict),
    ("restapi.request_queue_size", Int),
    ("restapi.thread_pool_size", Int),
    ("restapi.server_tokens", Str),
    // ctl
    ("ctl", Map),
    ("ctl.authentication", Map),
    ("ctl.insecure", Bool),
    ("ctl.cacert", Str),
    ("ctl.certfile", Str),
    ("ctl.keyfile", Str),
    ("ctl.keyfile_password", Str),
    // etcd (v2) and etcd3 (v3): the same keys
    ("etcd", Map),
    ("etcd3", Map),
    ("etcd*.host", Str),
    ("etcd*.hosts", List),
    ("etcd*.port", Int),
    ("etcd*.url", Str),
    ("etcd*.proxy", Str),
    ("etcd*.use_proxies", Bool),
    ("etcd*.srv", Str),
    ("etcd*.srv_suffix", Str),
    ("etcd*.protocol", Str),
    ("etcd*.username", Str),
    ("etcd*.password", Str),
    ("etcd*.cacert", Str),
    ("etcd*.cert", Str),
    ("etcd*.key", Str),
    ("etcd*.retry_timeout", Int),
    // consul
    ("consul", Map),
    ("consul.host", Str),
    ("consul.url", Str),
    ("consul.port", Int),
    ("consul.scheme", Str),
    ("consul.token", Str),
    ("consul.verify", Bool),
    ("consul.cacert", Str),
    ("consul.cert", Str),
    ("consul.key", Str),
    ("consul.dc", Str),
    ("consul.consistency", Str),
    ("consul.checks", List),
    ("consul.register_service", Bool),
    ("consul.service_tags", List),
    ("consul.service_check_interval", Str),
    ("consul.service_check_tls_server_name", Str),
    // zookeeper
    ("zookeeper", Map),
    ("zookeeper.hosts", List),
    ("zookeeper.use_ssl", Bool),
    ("zookeeper.cacert", Str),
    ("zookeeper.cert", Str),
    ("zookeeper.key", Str),
    ("zookeeper.key_password", Str),
    ("zookeeper.verify", Bool),
    ("zookeeper.set_acls", Dict),
    ("zookeeper.auth_data", Dict),
    // Patroni's old spelling, moved to `exhibitor` (tree::normalize).
    ("zookeeper.exhibitor", Any),
    // exhibitor
    ("exhibitor", Map),
    ("exhibitor.hosts", List),
    ("exhibitor.port", Int),
    ("exhibitor.poll_interval", Int),
    ("exhibitor.use_ssl", Bool),
    ("exhibitor.cacert", Str),
    ("exhibitor.cert", Str),
    ("exhibitor.key", Str),
    ("exhibitor.key_password", Str),
    ("exhibitor.verify", Bool),
    ("exhibitor.set_acls", Dict),
    ("exhibitor.auth_data", Dict),
    // out-of-scope DCS sections: accepted, not interpreted
    ("kubernetes", Any),
    ("raft", Any),
    // bootstrap
    ("bootstrap", Map),
    ("bootstrap.dcs", Dict),
    ("bootstrap.initdb", Any),
    ("bootstrap.pg_hba", Any),
    ("bootstrap.users", Dict),
    ("bootstrap.post_init", Str),
    ("bootstrap.post_bootstrap", Str),
    ("bootstrap.method", Str),
    // citus
    ("citus", Map),
    ("citus.group", Int),
    ("citus.database", Str),
    // postgresql
    ("postgresql", Map),
    ("postgresql.name", Str),
    ("postgresql.listen", Str),
    ("postgresql.connect_address", Str),
    ("postgresql.proxy_address", Str),
    ("postgresql.data_dir", Str),
    ("postgresql.config_dir", Str),
    ("postgresql.bin_dir", Str),
    ("postgresql.bin_name", Map),
    ("postgresql.pgpass", Str),
    ("postgresql.database", Str),
    ("postgresql.authentication", Map),
    ("postgresql.authentication.superuser", Map),
    ("postgresql.authentication.replication", Map),
    ("postgresql.authentication.rewind", Map),
    ("postgresql.callbacks", Map),
    ("postgresql.callbacks.on_start", Str),
    ("postgresql.callbacks.on_stop", Str),
    ("postgresql.callbacks.on_restart", Str),
    ("postgresql.callbacks.on_reload", Str),
    ("postgresql.callbacks.on_role_change", Str),
    ("postgresql.pre_promote", Str),
    ("postgresql.before_stop", Str),
    ("postgresql.create_replica_methods", List),
    ("postgresql.basebackup", Any),
    ("postgresql.rewind", Any),
    ("postgresql.use_pg_rewind", Bool),
    ("postgresql.use_slots", Bool),
    ("postgresql.remove_data_directory_on_rewind_failure", Bool),
    (
        "postgresql.remove_data_directory_on_diverged_timelines",
        Bool,
    ),
    ("postgresql.recovery_conf", Dict),
    ("postgresql.custom_conf", Str),
    ("postgresql.parameters", Dict),
    ("postgresql.pg_hba", Any),
    ("postgresql.pg_ident", Any),
    ("postgresql.pg_ctl_timeout", Int),
    ("postgresql.use_unix_socket", Bool),
    ("postgresql.use_unix_socket_repl", Bool),
    ("postgresql.krbsrvname", Str),
    // watchdog
    ("watchdog", Map),
    ("watchdog.mode", Any),
    ("watchdog.device", Str),
    ("watchdog.safety_margin", Int),
    // tags: free-form, known ones typed
    ("tags", Open),
    ("tags.nofailover", Bool),
    ("tags.failover_priority", Int),
    ("tags.nosync", Bool),
    ("tags.sync_priority", Int),
    ("tags.noloadbalance", Bool),
    ("tags.clonefrom", Bool),
    ("tags.nostream", Bool),
    ("tags.replicatefrom", Str),
];

fn segment_matches(pattern: &str, seg: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => seg.starts_with(prefix) && (seg == "etcd" || seg == "etcd3"),
        None => pattern == seg,
    }
}

/// The kind of the key at `path`, if it is a known key.
pub(crate) fn kind_of(path: &[&str]) -> Option<Kind> {
    // Credential blocks share their leaves.
    if let [section, "authentication", leaf] = path
        && (*section == "restapi" || *section == "ctl")
    {
        return AUTH.contains(leaf).then_some(Str);
    }
    if let ["postgresql", "authentication", _, leaf] = path {
        return PG_AUTH.contains(leaf).then_some(Str);
    }
    if let ["postgresql", "bin_name", leaf] = path {
        return BINARIES.contains(leaf).then_some(Str);
    }
    KEYS.iter()
        .find(|(p, _)| {
            let segs: Vec<&str> = p.split('.').collect();
            segs.len() == path.len() && segs.iter().zip(path).all(|(a, b)| segment_matches(a, b))
        })
        .map(|(_, k)| *k)
}

/// Parse a boolean the way Patroni does: `on/off/true/false/yes/no/1/0`
/// (case-insensitive).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "y" | "1" => Some(true),
        "off" | "false" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup() {
        assert_eq!(kind_of(&["postgresql", "data_dir"]), Some(Str));
        assert_eq!(kind_of(&["etcd", "hosts"]), Some(List));
        assert_eq!(kind_of(&["etcd3", "use_proxies"]), Some(Bool));
        assert_eq!(kind_of(&["etcd4", "hosts"]), None);
        assert_eq!(
            kind_of(&["postgresql", "authentication", "rewind", "sslmode"]),
            Some(Str)
        );
        assert_eq!(kind_of(&["restapi", "authentication", "sslmode"]), None);
        assert_eq!(kind_of(&["postgresql", "bin_name", "pg_ctl"]), Some(Str));
        assert_eq!(kind_of(&["tags"]), Some(Open));
        assert_eq!(kind_of(&["postgresql", "foo"]), None);
    }

    #[test]
    fn bools() {
        for t in ["on", "true", "YES", "1", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["off", "false", "No", "0"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }
}
