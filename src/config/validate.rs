//! Semantic checks of a loaded [`Config`], as `pgpilot --validate` (and
//! `patroni --validate-config`) run them. Type errors are caught earlier, by
//! [`load`](super::load()).

use std::collections::BTreeMap;
use std::path::Path;

use super::error::{ConfigError, ORIGIN_CONFIG};
use super::load::load_with_sources;
use super::types::{Config, DynamicConfig, InitdbOption, Watchdog, WatchdogMode};

/// initdb options Patroni sets itself (docs/configuration.md §5).
const INITDB_FORBIDDEN: &[&str] = &["pgdata", "nosync", "pwfile", "sync-only", "version"];
/// `postgresql.basebackup` options pgpilot sets itself (the clone job
/// refuses them too: `crate::postgres::ops::basebackup_args`).
pub const FORBIDDEN_BASEBACKUP_OPTIONS: &[&str] = &[
    "pgdata",
    "format",
    "wal-method",
    "xlog-method",
    "gzip",
    "version",
    "dbname",
    "host",
    "port",
    "username",
    "password",
];

/// Patroni (HEAD) reserves this member name.
const RESERVED_NAME: &str = "__patroni_strict_sync_replica_placeholder__";

/// Check `cfg`. `Ok` carries warnings; `Err` carries every problem found
/// (a [`ConfigError::Many`] when there are several). Errors have the origin
/// `configuration`; [`validate_file`] replaces it with the file and line.
pub fn validate(cfg: &Config) -> Result<Vec<String>, ConfigError> {
    validate_with(cfg, &[])
}

/// A check of files the configuration names that other modules read and
/// parse (the TLS certificates and keys: `crate::tls::check_files`), so
/// this module needs none of them. Each problem reads `key: message`.
pub type FileCheck = fn(&Config) -> Vec<String>;

/// [`validate`], plus `file_checks` (the daemon passes every one it has).
pub fn validate_with(cfg: &Config, file_checks: &[FileCheck]) -> Result<Vec<String>, ConfigError> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut err = |key: &str, msg: String| errors.push(ConfigError::key(ORIGIN_CONFIG, key, msg));

    // Identity.
    if cfg.name.trim().is_empty() {
        err("name", "must not be empty".into());
    } else if cfg.name == RESERVED_NAME {
        err("name", format!("`{RESERVED_NAME}` is reserved"));
    }
    if cfg.scope.trim().is_empty() {
        err("scope", "must not be empty".into());
    }

    // REST API.
    if let Err(m) = host_port(&cfg.restapi.listen, true) {
        err("restapi.listen", m.to_string());
    }
    if let Err(m) = connect_address(&cfg.restapi.connect_address) {
        err("restapi.connect_address", m.to_string());
    }
    if let Some(v) = &cfg.restapi.verify_client
        && !matches!(v.as_str(), "none" | "optional" | "required")
    {
        err(
            "restapi.verify_client",
            format!("expected none, optional or required, got {v:?}"),
        );
    }
    if cfg.restapi.keyfile.is_some() && cfg.restapi.certfile.is_none() {
        err(
            "restapi.certfile",
            "required when restapi.keyfile is set".into(),
        );
    }
    if cfg.restapi.certfile.is_some() {
        if cfg.restapi.ciphers.is_some() {
            warnings.push(format!(
                "{ORIGIN_CONFIG}: restapi.ciphers is ignored: pgpilot (rustls) offers only \
                 TLS 1.2/1.3 with AEAD cipher suites"
            ));
        }
    } else if cfg.restapi.verify_client.is_some() || cfg.restapi.cafile.is_some() {
        warnings.push(format!(
            "{ORIGIN_CONFIG}: restapi.verify_client and restapi.cafile have no effect \
             without restapi.certfile (the REST API serves plain HTTP)"
        ));
    }
    // Files (TLS: readable, parsable, key matching its certificate).
    for problem in file_checks.iter().flat_map(|check| check(cfg)) {
        let (key, msg) = problem.split_once(": ").unwrap_or(("restapi", &problem));
        err(key, msg.to_owned());
    }
    // Extra response headers: valid names and values.
    if cfg.restapi.certfile.is_none() && cfg.restapi.https_extra_headers.is_some() {
        warnings.push(format!(
            "{ORIGIN_CONFIG}: restapi.https_extra_headers have no effect without \
             restapi.certfile (the REST API serves plain HTTP)"
        ));
    }
    for (key, map) in [
        (
            "restapi.http_extra_headers",
            &cfg.restapi.http_extra_headers,
        ),
        (
            "restapi.https_extra_headers",
            &cfg.restapi.https_extra_headers,
        ),
    ] {
        for problem in super::headers::check(map.as_ref()) {
            err(key, problem);
        }
    }

    // PostgreSQL.
    let pg = &cfg.postgresql;
    if pg.listen_parts().is_none() {
        err(
            "postgresql.listen",
            format!("expected `addr[,addr...]:port`, got {:?}", pg.listen),
        );
    }
    if let Err(m) = connect_address(&pg.connect_address) {
        err("postgresql.connect_address", m.to_string());
    }
    if let Some(p) = &pg.proxy_address
        && let Err(m) = connect_address(p)
    {
        err("postgresql.proxy_address", m.to_string());
    }
    if pg.data_dir.trim().is_empty() {
        err("postgresql.data_dir", "must not be empty".into());
    }
    if pg
        .authentication
        .replication
        .username
        .as_deref()
        .is_none_or(|u| u.trim().is_empty())
    {
        err(
            "postgresql.authentication.replication.username",
            "missing required key".into(),
        );
    }
    if pg.authentication.superuser.username.is_none() {
        warnings.push(format!(
            "{ORIGIN_CONFIG}: postgresql.authentication.superuser.username is not set; \
             pgpilot will connect as the operating-system user"
        ));
    }
    if let Some(b) = &pg.basebackup {
        for (i, opt) in option_names(b).into_iter().enumerate() {
            if FORBIDDEN_BASEBACKUP_OPTIONS.contains(&opt.as_str()) {
                err(
                    &format!("postgresql.basebackup[{i}]"),
                    format!("option `{opt}` is set by pgpilot and not allowed here"),
                );
            }
        }
    }

    // DCS: the first section in Patroni's order is used; it must be one
    // pgpilot supports (Consul, etcd v2, etcd v3, Exhibitor, ZooKeeper); the
    // others are ignored, as Patroni ignores them, with a warning that says
    // which and why.
    let dcs = cfg.dcs_sections();
    match dcs.first() {
        None => err(
            "etcd3",
            "no DCS section: add an `etcd3`, `etcd` (v2 API), `zookeeper`, `exhibitor` or `consul` section"
                .into(),
        ),
        Some(&used) => {
            if !matches!(used, "etcd" | "etcd3" | "exhibitor" | "zookeeper" | "consul") {
                err(
                    used,
                    "this DCS is not supported yet; use `etcd3`, `etcd` (v2 API), `zookeeper`, `exhibitor` or `consul`"
                        .into(),
                );
            }
            for other in &dcs[1..] {
                warnings.push(format!(
                    "{other}: ignored: `{used}` is used, the first DCS section in Patroni's order ({})",
                    crate::config::types::DCS_ORDER.join(", ")
                ));
            }
        }
    }
    if let Some(z) = cfg
        .zookeeper
        .as_ref()
        .filter(|_| dcs.first() == Some(&"zookeeper"))
    {
        let (errors, warns) = z.problems(|h| host_port(h, false));
        for (key, msg) in errors {
            err(&key, msg);
        }
        warnings.extend(warns);
    }
    if let Some(x) = cfg
        .exhibitor
        .as_ref()
        .filter(|_| dcs.first() == Some(&"exhibitor"))
    {
        let (errors, warns) = x.problems(|h| host_port(h, false));
        for (key, msg) in errors {
            err(&key, msg);
        }
        warnings.extend(warns);
    }
    if let Some(c) = cfg
        .consul
        .as_ref()
        .filter(|_| dcs.first() == Some(&"consul"))
    {
        let (errors, warns) = c.problems();
        for (key, msg) in errors {
            err(&key, msg);
        }
        warnings.extend(warns);
    }
    let etcd = match dcs.first() {
        Some(&"etcd3") => cfg.etcd3.as_ref().map(|e| ("etcd3", e)),
        Some(&"etcd") => cfg.etcd.as_ref().map(|e| ("etcd", e)),
        _ => None,
    };
    if let Some((section, e)) = etcd {
        // `srv` alone is enough, for v3 and v2 alike: its records give the
        // endpoints at run time (docs/dcs.md; src/dcs/etcd_srv.rs).
        let srv = e.srv.as_deref().is_some_and(|s| !s.is_empty());
        if e.endpoints().is_empty() && !srv {
            err(
                section,
                "one of `host`, `hosts`, `url`, `proxy` or `srv` is required".into(),
            );
        }
        for h in e.endpoints() {
            let hp = h.split_once("://").map_or(h.as_str(), |(_, r)| r);
            let hp = hp.split('/').next().unwrap_or(hp);
            if let Err(m) = host_port(hp, false) {
                err(
                    &format!("{section}.hosts"),
                    format!("bad endpoint {h:?}: {m}"),
                );
            }
        }
    }

    // Bootstrap.
    if let Some(b) = &cfg.bootstrap {
        for (i, opt) in b.initdb.iter().enumerate() {
            let names: Vec<&str> = match opt {
                InitdbOption::Flag(f) => vec![f.as_str()],
                InitdbOption::Valued(m) => m.keys().map(String::as_str).collect(),
            };
            for n in names {
                if INITDB_FORBIDDEN.contains(&n) {
                    err(
                        &format!("bootstrap.initdb[{i}]"),
                        format!("option `{n}` is set by pgpilot and not allowed here"),
                    );
                }
            }
            if let InitdbOption::Valued(m) = opt
                && m.len() != 1
            {
                err(
                    &format!("bootstrap.initdb[{i}]"),
                    "each entry must be a flag or a single `option: value`".into(),
                );
            }
        }
        match DynamicConfig::from_json(&b.dcs) {
            Err(e) => errors.push(e.nested(ORIGIN_CONFIG, "bootstrap.dcs")),
            // Adjusted, not refused (docs/configuration.md, "Timing: adjusted, not refused").
            Ok(d) => warnings.extend(d.timing_adjustments().into_iter().map(|n| {
                format!("{ORIGIN_CONFIG}: bootstrap.dcs: {n} (the values in force; the DCS keeps those written)")
            })),
        }
    }

    // Watchdog and tags.
    let mut err = |key: &str, msg: String| errors.push(ConfigError::key(ORIGIN_CONFIG, key, msg));
    if let Some(w) = &cfg.watchdog
        && w.mode().is_none()
    {
        err(
            "watchdog.mode",
            format!(
                "expected off, automatic or required, got {}",
                w.mode.as_ref().map_or("null".into(), ToString::to_string)
            ),
        );
    }
    if let Some(w) = &cfg.watchdog {
        check_watchdog(cfg, w, &mut err, &mut warnings);
    }
    let t = &cfg.tags;
    if let Some(p) = t.failover_priority {
        if p < 0 {
            err("tags.failover_priority", format!("must be >= 0, got {p}"));
        } else if t.nofailover && p > 0 {
            warnings.push(conflicting_tags("nofailover", "failover_priority", p));
        }
    }
    if let Some(p) = t.sync_priority {
        if p < 0 {
            err("tags.sync_priority", format!("must be >= 0, got {p}"));
        } else if t.nosync && p > 0 {
            warnings.push(conflicting_tags("nosync", "sync_priority", p));
        }
    }
    if let Some(k) = &cfg.log.kind
        && !matches!(k.as_str(), "plain" | "json")
    {
        err("log.type", format!("expected plain or json, got {k:?}"));
    }
    // Python's logging refuses an unknown level name (Patroni exits at
    // start); pgpilot says so before starting (src/logging/settings.rs).
    if let Some(l) = &cfg.log.level
        && crate::logging::parse_level(&serde_json::Value::String(l.clone())).is_none()
    {
        err("log.level", format!("unknown level {l:?}"));
    }
    for (name, l) in cfg.log.loggers.iter().flatten() {
        if crate::logging::parse_level(l).is_none() {
            err(&format!("log.loggers.{name}"), format!("unknown level {l}"));
        }
    }
    if let Some(m) = &cfg.log.mode
        && crate::logging::parse_mode(m).is_none()
    {
        err(
            "log.mode",
            format!("expected a file mode such as 0644, got {m}"),
        );
    }

    match ConfigError::combine(errors) {
        None => Ok(warnings),
        Some(e) => Err(e),
    }
}

/// `watchdog.safety_margin` (docs/ha.md §1, §12): at least `-1` (ttl/2),
/// and the timeout it gives with the timing of `bootstrap.dcs` (Patroni's
/// defaults without one) must be at least `loop_wait`: an error with
/// `mode: required` (the node could never lead), a warning with
/// `automatic` (it leads without a watchdog, as Patroni does, so Patroni
/// files keep loading). The cluster-wide timing may change later; the
/// daemon then treats a watchdog with too short a timeout as unusable.
fn check_watchdog(
    cfg: &Config,
    w: &Watchdog,
    err: &mut impl FnMut(&str, String),
    warnings: &mut Vec<String>,
) {
    let margin = w.safety_margin();
    if margin < -1 {
        err(
            "watchdog.safety_margin",
            format!("must be >= 0, or -1 for ttl/2, got {margin}"),
        );
        return;
    }
    if w.mode().is_none_or(|m| m == WatchdogMode::Off) {
        return;
    }
    let timing = cfg
        .bootstrap
        .as_ref()
        .and_then(|b| DynamicConfig::from_json(&b.dcs).ok())
        .unwrap_or_else(DynamicConfig::defaults)
        .timing;
    if let Err(m) = w.timeout(&timing) {
        if w.mode() == Some(WatchdogMode::Required) {
            err("watchdog.safety_margin", m.to_string());
        } else {
            warnings.push(format!(
                "{ORIGIN_CONFIG}: watchdog.safety_margin: {m}; the watchdog will not be used"
            ));
        }
    }
}

/// [`load`](super::load()) then [`validate()`]; validation errors are traced
/// back to the file and line (or variable) that set the key. Used by
/// `pgpilot --validate`. Returns the configuration and all warnings.
pub fn validate_file(
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<(Config, Vec<String>), ConfigError> {
    validate_file_with(path, env, &[])
}

/// [`validate_file`] with `file_checks`, as [`validate_with`].
pub fn validate_file_with(
    path: &Path,
    env: &BTreeMap<String, String>,
    file_checks: &[FileCheck],
) -> Result<(Config, Vec<String>), ConfigError> {
    let (loaded, sources) = load_with_sources(Some(path), env)?;
    let mut warnings = loaded.warnings;
    let relocate = |e: &ConfigError| -> ConfigError {
        match e {
            ConfigError::Invalid {
                origin,
                line,
                key,
                message,
            } if origin == ORIGIN_CONFIG => {
                let (origin, found) = if key.is_empty() {
                    (sources.source.clone(), None)
                } else {
                    sources.locate(key)
                };
                ConfigError::Invalid {
                    origin,
                    line: line.or(found),
                    key: key.clone(),
                    message: message.clone(),
                }
            }
            other => ConfigError::key(other.origin(), "", other.to_string()),
        }
    };
    match validate_with(&loaded.config, file_checks) {
        Ok(w) => {
            warnings.extend(
                w.into_iter()
                    .map(|s| s.replacen(ORIGIN_CONFIG, &sources.source, 1)),
            );
            Ok((loaded.config, warnings))
        }
        Err(e) => Err(
            ConfigError::combine(e.errors().into_iter().map(relocate).collect())
                .expect("at least one error"),
        ),
    }
}

/// A bad `host:port` (the message of the key's [`ConfigError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum AddressError {
    #[error("expected `host:port`, got {0:?}")]
    NotHostPort(String),
    #[error("expected `host:port`, got {0:?} (write IPv6 addresses as [addr]:port)")]
    BareIpv6(String),
    #[error("bad port in {0:?}")]
    BadPort(String),
    #[error("{0:?} is a wildcard address; other nodes need an address they can connect to")]
    Wildcard(String),
}

/// `host:port` (`[v6]:port` allowed). An empty host is allowed for listen
/// addresses (all interfaces).
fn host_port(s: &str, empty_host_ok: bool) -> Result<(), AddressError> {
    let bad = || AddressError::NotHostPort(s.to_owned());
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, r) = rest.split_once(']').ok_or_else(bad)?;
        (h, r.strip_prefix(':').ok_or_else(bad)?)
    } else {
        let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
        if h.contains(':') {
            return Err(AddressError::BareIpv6(s.to_owned()));
        }
        (h, p)
    };
    if host.is_empty() && !empty_host_ok {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(AddressError::BadPort(s.to_owned())),
    }
}

/// A `host:port` other nodes can connect to.
fn connect_address(s: &str) -> Result<(), AddressError> {
    host_port(s, false)?;
    let host = s.rsplit_once(':').map_or(s, |(h, _)| h);
    if matches!(host, "*" | "0.0.0.0" | "[::]") {
        return Err(AddressError::Wildcard(s.to_owned()));
    }
    Ok(())
}

/// Option names of a `basebackup`/`rewind` block: a list of flags or
/// `{option: value}` maps, or a single map.
fn option_names(v: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
                other => other.to_string(),
            })
            .collect(),
        Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Patroni's warning for a `nofailover`/`nosync` tag set to true beside a
/// positive priority, word for word (its `_validate_contradictory_tags`;
/// docs/operations.md, "Patroni's messages"): the flag wins. Patroni also
/// warns about a flag set to false beside a priority of 0, and then lets
/// the flag win; pgpilot cannot tell a false flag from an absent one and
/// lets the priority of 0 forbid the failover, so it does not say so.
fn conflicting_tags(flag: &str, priority: &str, p: i64) -> String {
    format!(
        "Conflicting configuration between {flag}: True and {priority}: {p}. Defaulting to {flag}: True"
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::load::load;
    use crate::config::load::tests::{POSTGRES0, TempDir, env};

    /// A configuration loaded from `text` as a file (also used by the TLS
    /// file checks' tests in `crate::tls`).
    pub(crate) fn cfg(text: &str) -> Config {
        let d = TempDir::new("v");
        let p = d.write("c.yml", text);
        load(Some(&p), &env(&[])).unwrap().config
    }

    /// The key paths an error names.
    pub(crate) fn keys(e: &ConfigError) -> Vec<String> {
        e.errors()
            .iter()
            .filter_map(|e| e.key_path().map(str::to_owned))
            .collect()
    }

    #[test]
    fn postgres0_is_valid() {
        let w = validate(&cfg(POSTGRES0)).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let v2 = POSTGRES0.replace("etcd3:", "etcd:");
        validate(&cfg(&v2)).unwrap();
    }

    #[test]
    fn srv_alone_is_enough_for_either_etcd_api() {
        for section in ["etcd3", "etcd"] {
            let mut c = cfg(POSTGRES0);
            let e = crate::config::Etcd {
                srv: Some("example.com".into()),
                ..Default::default()
            };
            c.etcd3 = None;
            c.etcd = None;
            if section == "etcd" {
                c.etcd = Some(e);
            } else {
                c.etcd3 = Some(e);
            }
            validate(&c).unwrap_or_else(|e| panic!("{section}: {e}"));
            // Neither endpoints nor `srv`: the section says what it needs.
            let mut c2 = c.clone();
            for s in [&mut c2.etcd3, &mut c2.etcd] {
                if let Some(e) = s.as_mut() {
                    e.srv = None;
                }
            }
            let err = validate(&c2).unwrap_err();
            assert_eq!(keys(&err), [section], "{err}");
        }
    }

    #[test]
    fn log_levels_and_mode() {
        let mut c = cfg(POSTGRES0);
        c.log.level = Some("WARNING".into());
        c.log.loggers = Some([("patroni.ha".to_owned(), serde_json::json!(10))].into());
        c.log.mode = Some(serde_json::json!("0640"));
        validate(&c).unwrap();
        c.log.level = Some("LOUD".into());
        c.log.loggers = Some([("patroni.ha".to_owned(), serde_json::json!("QUIET"))].into());
        c.log.mode = Some(serde_json::json!("rw-r-----"));
        let e = validate(&c).unwrap_err().to_string();
        for key in ["log.level", "log.loggers.patroni.ha", "log.mode"] {
            assert!(e.contains(key), "{key} in {e}");
        }
    }

    #[test]
    fn extra_headers() {
        let mut c = cfg(POSTGRES0);
        let map = |l: &[(&str, &str)]| {
            Some(
                l.iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )
        };
        c.restapi.http_extra_headers = map(&[("X-Frame-Options", "DENY")]);
        c.restapi.https_extra_headers = map(&[("Strict-Transport-Security", "max-age=1")]);
        let w = validate(&c).unwrap();
        assert!(
            w.iter().any(|w| w.contains("restapi.https_extra_headers")),
            "{w:?}"
        );
        c.restapi.http_extra_headers = map(&[("X Frame", "DENY")]);
        c.restapi.https_extra_headers = map(&[("X-A", "bad\r\nvalue")]);
        let err = validate(&c).unwrap_err();
        assert_eq!(
            keys(&err),
            ["restapi.http_extra_headers", "restapi.https_extra_headers"]
        );
    }

    #[test]
    fn addresses() {
        let mut c = cfg(POSTGRES0);
        c.restapi.listen = "nope".into();
        c.restapi.connect_address = "0.0.0.0:8008".into();
        c.postgresql.listen = "127.0.0.1".into();
        c.postgresql.connect_address = "host:99999".into();
        let e = validate(&c).unwrap_err();
        assert_eq!(
            keys(&e),
            [
                "restapi.listen",
                "restapi.connect_address",
                "postgresql.listen",
                "postgresql.connect_address"
            ]
        );
        let mut c = cfg(POSTGRES0);
        c.restapi.listen = ":8008".into();
        c.postgresql.listen = "127.0.0.1,10.0.0.1:5432".into();
        c.postgresql.connect_address = "[::1]:5432".into();
        validate(&c).unwrap();
    }

    #[test]
    fn identity_and_credentials() {
        let mut c = cfg(POSTGRES0);
        c.name = " ".into();
        c.scope = String::new();
        c.postgresql.authentication.replication.username = None;
        let e = validate(&c).unwrap_err();
        assert_eq!(
            keys(&e),
            [
                "name",
                "scope",
                "postgresql.authentication.replication.username"
            ]
        );
    }

    #[test]
    fn dcs_sections() {
        let no_dcs = POSTGRES0.replace("etcd3:\n", "unused:\n");
        let e = validate(&cfg(&no_dcs)).unwrap_err();
        assert!(e.to_string().contains("no DCS section"), "{e}");
        let zk = no_dcs.replace(
            "unused:\n  #Provide",
            "zookeeper:\n  hosts: [a:2181]\n  #Provide",
        );
        validate(&cfg(&zk)).unwrap();
        let zk_bad = zk.replace("[a:2181]", "'a:99999, b'");
        let e = validate(&cfg(&zk_bad)).unwrap_err();
        assert_eq!(keys(&e), ["zookeeper.hosts"]);
        // Both: etcd3 is used, as Patroni does; zookeeper is ignored, said so.
        let both = format!("{POSTGRES0}zookeeper:\n  hosts: ['a:99999']\n");
        let w = validate(&cfg(&both)).unwrap();
        assert_eq!(cfg(&both).dcs_sections(), ["etcd3", "zookeeper"]);
        assert!(
            w.iter()
                .any(|w| w.starts_with("zookeeper: ignored: `etcd3` is used")),
            "{w:?}"
        );
        // `etcd` (v2) and `etcd3`: the v2 one is used, first in Patroni's
        // order, and its endpoints are the ones checked.
        let v2_too = format!("{POSTGRES0}etcd:\n  hosts: ['b:99999']\n");
        assert_eq!(cfg(&v2_too).dcs_sections(), ["etcd", "etcd3"]);
        let e = validate(&cfg(&v2_too)).unwrap_err();
        assert_eq!(keys(&e), ["etcd.hosts"]);
        let v2_too = v2_too.replace("b:99999", "b:2379");
        let w = validate(&cfg(&v2_too)).unwrap();
        assert!(
            w.iter()
                .any(|w| w.starts_with("etcd3: ignored: `etcd` is used")),
            "{w:?}"
        );
        let auth = v2_too.replace(
            "etcd:\n  hosts",
            "etcd:\n  username: u\n  password: p\n  hosts",
        );
        // v2 sends them (HTTP Basic) and speaks https: neither is refused
        // nor warned about any more.
        let w = validate(&cfg(&auth)).unwrap();
        assert!(!w.iter().any(|w| w.starts_with("etcd.username")), "{w:?}");
        let https = v2_too.replace("b:2379", "https://b:2379");
        validate(&cfg(&https)).expect("https for the v2 API is valid");
        // Consul comes first in Patroni's order: it is used, etcd3 ignored.
        let consul = format!("{POSTGRES0}consul:\n  host: c:8500\n");
        let w = validate(&cfg(&consul)).unwrap();
        assert_eq!(cfg(&consul).dcs_sections(), ["consul", "etcd3"]);
        assert!(
            w.iter()
                .any(|w| w.starts_with("etcd3: ignored: `consul` is used")),
            "{w:?}"
        );
        let bad = format!("{POSTGRES0}consul:\n  url: nope\n");
        let e = validate(&cfg(&bad)).unwrap_err();
        assert_eq!(keys(&e), ["consul.url"]);
        // Kubernetes, first in its place, is not supported.
        let k8s = format!("{no_dcs}kubernetes:\n  namespace: x\n");
        let e = validate(&cfg(&k8s)).unwrap_err();
        assert_eq!(keys(&e), ["kubernetes"]);
        assert!(e.to_string().contains("not supported yet"), "{e}");
        // Exhibitor comes before ZooKeeper in Patroni's order: used, checked.
        let ex = zk.replace(
            "zookeeper:\n  hosts: [a:2181]\n",
            "exhibitor:\n  hosts: [e1]\n  port: 8181\nzookeeper:\n  hosts: [a:2181]\n",
        );
        let w = validate(&cfg(&ex)).unwrap();
        assert_eq!(cfg(&ex).dcs_sections(), ["exhibitor", "zookeeper"]);
        assert!(
            w.iter()
                .any(|w| w.starts_with("zookeeper: ignored: `exhibitor` is used")),
            "{w:?}"
        );
        let e = validate(&cfg(&ex.replace("  port: 8181\n", ""))).unwrap_err();
        assert_eq!(keys(&e), ["exhibitor.port"]);
    }

    #[test]
    fn initdb_forbidden_options() {
        let text = POSTGRES0.replace(
            "  - data-checksums\n",
            "  - data-checksums\n  - nosync\n  - pgdata: /x\n",
        );
        let e = validate(&cfg(&text)).unwrap_err();
        assert_eq!(keys(&e), ["bootstrap.initdb[2]", "bootstrap.initdb[3]"]);
        assert!(e.to_string().contains("`nosync`"), "{e}");
    }

    #[test]
    fn bad_bootstrap_dcs_names_nested_key() {
        let text = POSTGRES0.replace("    ttl: 30", "    ttl: thirty");
        let e = validate(&cfg(&text)).unwrap_err();
        assert_eq!(keys(&e), ["bootstrap.dcs.ttl"]);
    }

    /// Timing breaking `loop_wait + 2*retry_timeout <= ttl` is valid: the
    /// node adjusts it as Patroni does, and `--validate` says how.
    #[test]
    fn bootstrap_dcs_timing_adjustments_are_warnings() {
        let text = POSTGRES0.replace("    ttl: 30", "    ttl: 15");
        let w = validate(&cfg(&text)).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("configuration: bootstrap.dcs: Violated the rule"),
            "{w:?}"
        );
        assert!(
            w[0].contains(
                "where ttl=15. Adjusting loop_wait from 10 to 1 and retry_timeout from 10 to 7"
            ),
            "{w:?}"
        );
        let text = POSTGRES0.replace("    ttl: 30", "    ttl: 3");
        let w = validate(&cfg(&text)).unwrap();
        assert!(
            w[0].contains("ttl=3 can't be smaller than 5, adjusting..."),
            "{w:?}"
        );
    }

    #[test]
    fn validate_file_points_at_file_and_line() {
        let d = TempDir::new("vf");
        let text = POSTGRES0.replace("    ttl: 30", "    ttl: soon");
        let p = d.write("pgpilot.yml", &text);
        let line = text.lines().position(|l| l == "    ttl: soon").unwrap() + 1;
        let e = validate_file(&p, &env(&[])).unwrap_err();
        assert_eq!(e.origin(), p.display().to_string());
        assert_eq!(e.line(), Some(line));
        assert!(
            e.to_string().starts_with(&format!(
                "{} line {line}: bootstrap.dcs.ttl: expected a number of seconds",
                p.display()
            )),
            "{e}"
        );
        // From the environment: the variable is named.
        let p = d.write("ok.yml", POSTGRES0);
        let e = validate_file(&p, &env(&[("PATRONI_POSTGRESQL_LISTEN", "5432")])).unwrap_err();
        assert_eq!(e.origin(), "environment (PATRONI_POSTGRESQL_LISTEN)");
        let (c, w) = validate_file(&p, &env(&[])).unwrap();
        assert_eq!(c.name, "postgresql0");
        assert!(w.is_empty());
    }

    #[test]
    fn watchdog_and_tags() {
        let text = format!("{POSTGRES0}watchdog:\n  mode: sometimes\n");
        let e = validate(&cfg(&text)).unwrap_err();
        assert_eq!(keys(&e), ["watchdog.mode"]);
        let text = format!("{POSTGRES0}watchdog:\n  mode: off\n");
        validate(&cfg(&text)).unwrap();
        let text = POSTGRES0.replace(
            "    nosync: false",
            "    nosync: false\n    failover_priority: -1",
        );
        let e = validate(&cfg(&text)).unwrap_err();
        assert_eq!(keys(&e), ["tags.failover_priority"]);
    }

    #[test]
    fn conflicting_tags_warn_in_patronis_words() {
        let text = POSTGRES0
            .replace(
                "    nofailover: false",
                "    nofailover: true\n    failover_priority: 1",
            )
            .replace(
                "    nosync: false",
                "    nosync: true\n    sync_priority: 2",
            );
        let w = validate(&cfg(&text)).unwrap();
        for want in [
            "Conflicting configuration between nofailover: True and failover_priority: 1. Defaulting to nofailover: True",
            "Conflicting configuration between nosync: True and sync_priority: 2. Defaulting to nosync: True",
        ] {
            assert!(w.iter().any(|l| l == want), "{want} in {w:?}");
        }
    }

    #[test]
    fn watchdog_mode_aliases() {
        for (v, want) in [
            ("off", WatchdogMode::Off),
            ("false", WatchdogMode::Off),
            ("disable", WatchdogMode::Off),
            ("automatic", WatchdogMode::Automatic),
            ("auto", WatchdogMode::Automatic),
            ("required", WatchdogMode::Required),
            ("require", WatchdogMode::Required),
            ("Required", WatchdogMode::Required),
        ] {
            let c = cfg(&format!("{POSTGRES0}watchdog:\n  mode: {v}\n"));
            validate(&c).unwrap();
            assert_eq!(c.watchdog_mode(), want, "{v}");
        }
        // No section: automatic, on /dev/watchdog, margin 5.
        let c = cfg(POSTGRES0);
        assert_eq!(c.watchdog_mode(), WatchdogMode::Automatic);
        let w = Watchdog::default();
        assert_eq!(w.device(), "/dev/watchdog");
        assert_eq!(w.safety_margin(), 5);
    }

    #[test]
    fn watchdog_from_environment() {
        let d = TempDir::new("wdenv");
        let p = d.write("pgpilot.yml", POSTGRES0);
        let vars = env(&[
            ("PATRONI_WATCHDOG_MODE", "require"),
            ("PATRONI_WATCHDOG_DEVICE", "/dev/watchdog1"),
            ("PATRONI_WATCHDOG_SAFETY_MARGIN", "-1"),
        ]);
        let (c, _) = validate_file(&p, &vars).unwrap();
        assert_eq!(c.watchdog_mode(), WatchdogMode::Required);
        let w = c.watchdog.unwrap();
        assert_eq!(w.device(), "/dev/watchdog1");
        assert_eq!(w.safety_margin(), -1);
        let (c, _) = validate_file(&p, &env(&[("PATRONI_WATCHDOG_MODE", "off")])).unwrap();
        assert_eq!(c.watchdog_mode(), WatchdogMode::Off);
    }

    #[test]
    fn watchdog_timeout_must_cover_loop_wait() {
        // POSTGRES0: ttl 30, loop_wait 10. 30 - 25 = 5 < 10.
        let text = format!("{POSTGRES0}watchdog:\n  mode: required\n  safety_margin: 25\n");
        let e = validate(&cfg(&text)).unwrap_err();
        assert_eq!(keys(&e), ["watchdog.safety_margin"]);
        assert!(
            e.to_string()
                .contains("ttl (30) - safety_margin (25) = 5 s must be at least loop_wait (10 s)"),
            "{e}"
        );
        // Automatic: a warning naming the key, not an error.
        let text = format!("{POSTGRES0}watchdog:\n  mode: automatic\n  safety_margin: 25\n");
        let w = validate(&cfg(&text)).unwrap();
        assert!(
            w.iter().any(|w| w.contains("watchdog.safety_margin")
                && w.contains("must be at least loop_wait")),
            "{w:?}"
        );
        // 30 - 20 = 10 = loop_wait: accepted; -1 gives 15.
        for m in ["20", "-1", "0"] {
            let text = format!("{POSTGRES0}watchdog:\n  mode: required\n  safety_margin: {m}\n");
            assert!(validate(&cfg(&text)).unwrap().is_empty());
        }
        // Off: the timing does not matter, the margin's range does.
        let text = format!("{POSTGRES0}watchdog:\n  mode: off\n  safety_margin: 25\n");
        validate(&cfg(&text)).unwrap();
        let text = format!("{POSTGRES0}watchdog:\n  mode: off\n  safety_margin: -2\n");
        assert_eq!(
            keys(&validate(&cfg(&text)).unwrap_err()),
            ["watchdog.safety_margin"]
        );
        // ttl/2 with ttl 30, loop_wait 20, retry_timeout 5: 15 < 20.
        let text = POSTGRES0
            .replace("    loop_wait: 10", "    loop_wait: 20")
            .replace("    retry_timeout: 10", "    retry_timeout: 5")
            + "watchdog:\n  mode: required\n  safety_margin: -1\n";
        let e = validate(&cfg(&text)).unwrap_err();
        assert!(e.to_string().contains("ttl (30) / 2 = 15 s"), "{e}");
    }

    #[test]
    fn watchdog_file_error_names_key_and_line() {
        let d = TempDir::new("wdline");
        let text = format!("{POSTGRES0}watchdog:\n  mode: required\n  safety_margin: 28\n");
        let p = d.write("pgpilot.yml", &text);
        let line = text
            .lines()
            .position(|l| l == "  safety_margin: 28")
            .unwrap()
            + 1;
        let e = validate_file(&p, &env(&[])).unwrap_err();
        assert_eq!(e.line(), Some(line), "{e}");
        assert!(e.to_string().contains("watchdog.safety_margin"), "{e}");
        // The default margin with a short ttl (the example of the docs).
        let text = POSTGRES0
            .replace("    ttl: 30", "    ttl: 6")
            .replace("    loop_wait: 10", "    loop_wait: 2")
            .replace("    retry_timeout: 10", "    retry_timeout: 2")
            + "watchdog:\n  mode: required\n";
        let p = d.write("short.yml", &text);
        let e = validate_file(&p, &env(&[])).unwrap_err();
        assert!(
            e.to_string().contains(
                "watchdog.safety_margin: watchdog timeout ttl (6) - safety_margin (5) = 1 s must be at least loop_wait (2 s) and 1 s"
            ),
            "{e}"
        );
    }
}
