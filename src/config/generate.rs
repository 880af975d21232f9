//! The documents of `pgpilot --generate-sample-config` and
//! `pgpilot --generate-config` (docs/configuration.md, "Generating a
//! configuration"), as Patroni's `patroni/config_generator.py` builds them:
//! a template (host name and address, Patroni's defaults, `#FIXME` where
//! only the operator knows), the `PATRONI_*` variables merged over it, then
//! either sample values for the local PostgreSQL major version or what a
//! running server reports. Pure: the facts (host, version, settings, files)
//! are gathered by the caller (`crate::postgres::describe`).
//!
//! One difference from Patroni: pgpilot needs a DCS section to run (and
//! `--validate` asks for one), so a document without one gets
//! `etcd3: {hosts: 127.0.0.1:2379}`, etcd's own default client address.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::env;
use super::patch::patch_config;
use super::types::DCS_ORDER;

/// What Patroni writes where only the operator knows the value.
pub const NO_VALUE: &str = "#FIXME";

/// Patroni's `ConfigHandler.CMDLINE_OPTIONS`: the parameters always read
/// from a running server (`wal_keep_segments` for servers before 13).
pub const CMDLINE_OPTIONS: &[&str] = &[
    "listen_addresses",
    "port",
    "cluster_name",
    "wal_level",
    "hot_standby",
    "max_connections",
    "max_wal_senders",
    "wal_keep_segments",
    "wal_keep_size",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "track_commit_timestamp",
    "max_replication_slots",
    "max_worker_processes",
    "wal_log_hints",
];

/// Settings a generated document keeps in the local `postgresql.parameters`
/// rather than in `bootstrap.dcs`: commands (a DCS any member can write
/// must not choose what every node runs) and the files' locations (so they
/// are not reset later). Patroni's list.
const LOCAL_PARAMETERS: &[&str] = &[
    "archive_command",
    "restore_command",
    "archive_cleanup_command",
    "recovery_end_command",
    "ssl_passphrase_command",
    "hba_file",
    "ident_file",
    "config_file",
];

/// The host's name and address (Patroni's `get_address`): the address of
/// the name, IPv4 first; [`NO_VALUE`] for both when it cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub hostname: String,
    pub ip: String,
}

/// Patroni's template: identity and addresses from `host`, its log, tags
/// and `bootstrap.dcs` defaults, then the `PATRONI_*`/`PGPILOT_*`
/// variables of `env` merged over it.
pub fn template(host: &Host, env: &BTreeMap<String, String>) -> Value {
    let ip = &host.ip;
    let mut t = json!({
        "scope": NO_VALUE,
        "name": host.hostname,
        "restapi": {"connect_address": format!("{ip}:8008"), "listen": format!("{ip}:8008")},
        "log": {
            "type": "plain",
            "level": "INFO",
            "traceback_level": "ERROR",
            "format": "%(asctime)s %(levelname)s: %(message)s",
            "max_queue_size": 1000
        },
        "postgresql": {
            "data_dir": NO_VALUE,
            "connect_address": format!("{ip}:5432"),
            "listen": format!("{ip}:5432"),
            "bin_dir": "",
            "authentication": {
                "superuser": {"username": "postgres", "password": NO_VALUE},
                "replication": {"username": "replicator", "password": NO_VALUE}
            }
        },
        "tags": {
            "failover_priority": 1,
            "sync_priority": 1,
            "noloadbalance": false,
            "clonefrom": true,
            "nosync": false,
            "nostream": false
        },
        "bootstrap": {"dcs": {
            "ttl": 30,
            "loop_wait": 10,
            "retry_timeout": 10,
            "postgresql": {
                "use_slots": true,
                "parameters": {
                    "hot_standby": "on",
                    "max_connections": 100,
                    "max_locks_per_transaction": 64,
                    "max_prepared_transactions": 0,
                    "max_replication_slots": 10,
                    "max_wal_senders": 10,
                    "max_worker_processes": 8,
                    "track_commit_timestamp": "off",
                    "wal_keep_size": "128MB",
                    "wal_level": "replica",
                    "wal_log_hints": "on"
                }
            }
        }}
    });
    let layer = env::env_layer(env).value;
    if let Ok(from_env) = serde_json::to_value(&layer)
        && from_env.as_object().is_some_and(|m| !m.is_empty())
    {
        patch_config(&mut t, from_env);
    }
    t
}

/// `major.minor` (or `9.6.x`) as Patroni's integer: 15.4 -> 150000,
/// 9.6.24 -> 90600. `None` when it does not start with a number.
pub fn major_version_num(version: &str) -> Option<u32> {
    let mut parts = version.split(['.', ' ', 'b', 'r']);
    let major: u32 = parts.next()?.parse().ok()?;
    if major >= 10 {
        return Some(major * 10_000);
    }
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some(major * 10_000 + minor * 100)
}

/// The version in `postgres --version`'s answer ("postgres (PostgreSQL)
/// 15.18 (Debian ...)"): its third word.
pub fn version_of_postgres_output(out: &str) -> Option<u32> {
    major_version_num(out.split_whitespace().nth(2)?)
}

/// The mapping `v[key]`, made (and `v` made a mapping) where it is not one.
fn obj<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    fn mapping(v: &mut Value) -> &mut Map<String, Value> {
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        match v {
            Value::Object(m) => m,
            _ => unreachable!("made a mapping above"),
        }
    }
    mapping(
        mapping(v)
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(Map::new())),
    )
}

/// Patroni's `SampleConfigGenerator.generate`: the template with the
/// password method, `pg_hba` lines, WAL settings and rewind user for a
/// server of `pg_major` (`0`: unknown, the oldest choices).
pub fn sample(mut config: Value, pg_major: u32) -> Value {
    let auth = if pg_major >= 100_000 {
        "scram-sha-256"
    } else {
        "md5"
    };
    let replication_user = config
        .pointer("/postgresql/authentication/replication/username")
        .and_then(Value::as_str)
        .unwrap_or("replicator")
        .to_owned();
    {
        let pg = obj(&mut config, "postgresql");
        pg.insert("parameters".into(), json!({"password_encryption": auth}));
        pg.insert(
            "pg_hba".into(),
            json!([
                format!("host all all all {auth}"),
                format!("host replication {replication_user} all {auth}")
            ]),
        );
    }
    if pg_major >= 110_000 {
        let auth = config
            .pointer_mut("/postgresql/authentication")
            .and_then(Value::as_object_mut);
        if let Some(auth) = auth {
            let rewind = auth
                .entry("rewind")
                .or_insert_with(|| json!({"username": "rewind_user"}));
            if let Some(r) = rewind.as_object_mut() {
                r.entry("password").or_insert_with(|| json!(NO_VALUE));
            }
        }
    }
    let dcs_pg = config.pointer_mut("/bootstrap/dcs/postgresql");
    if let Some(dcs_pg) = dcs_pg.and_then(Value::as_object_mut) {
        let params = dcs_pg
            .entry("parameters")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        let mut hints = None;
        if let Some(p) = params {
            if pg_major < 130_000 {
                p.remove("wal_keep_size");
                p.insert("wal_keep_segments".into(), json!(8));
            } else {
                p.insert("wal_keep_size".into(), json!("128MB"));
            }
            let level = if pg_major != 0 && pg_major < 90_600 {
                "hot_standby"
            } else {
                "replica"
            };
            p.insert("wal_level".into(), json!(level));
            hints = p.get("wal_log_hints").cloned();
        }
        let rewind = hints.is_some_and(|h| match h {
            Value::Bool(b) => b,
            Value::String(s) => super::parse_bool(&s) == Some(true),
            _ => false,
        });
        dcs_pg.insert("use_pg_rewind".into(), json!(rewind));
    }
    with_dcs_section(config)
}

/// The superuser's connection settings for `--generate-config` (Patroni's
/// `_set_su_params`): libpq keyword -> value, `user` written `username`.
pub type SuperuserParams = BTreeMap<String, String>;

/// What `--generate-config` read from a running server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningServer {
    /// `server_version_num`.
    pub version_num: u32,
    /// `(name, current_setting(name))` of Patroni's settings query.
    pub settings: Vec<(String, String)>,
    /// The port the connection used, when the DSN or `PGPORT` gave one.
    pub connect_port: Option<String>,
    /// The superuser's connection settings (`username`, `password`,
    /// `sslmode`...).
    pub superuser: SuperuserParams,
    /// `pg_hba.conf` and `pg_ident.conf` lines, when they are the data
    /// directory's own (`None`: elsewhere, or not read).
    pub hba_lines: Option<Vec<String>>,
    pub ident_lines: Option<Vec<String>>,
    /// The directory of the running postmaster's program.
    pub bin_dir: String,
}

/// libpq settings a server older than the version does not know
/// (Patroni's `AUTH_ALLOWED_PARAMETERS_VERSIONS`).
fn auth_param_since(name: &str) -> u32 {
    match name {
        "gssencmode" => 120_000,
        "channel_binding" => 130_000,
        "sslcrldir" => 140_000,
        "sslnegotiation" => 170_000,
        _ => 0,
    }
}

/// The connection types a `pg_hba.conf` line may start with.
fn hba_types(version_num: u32) -> &'static [&'static str] {
    const OLD: &[&str] = &[
        "local",
        "host",
        "hostssl",
        "hostnossl",
        "hostgssenc",
        "hostnogssenc",
    ];
    const V16: &[&str] = &[
        "local",
        "host",
        "hostssl",
        "hostnossl",
        "hostgssenc",
        "hostnogssenc",
        "include",
        "include_if_exists",
        "include_dir",
    ];
    if version_num >= 160_000 { V16 } else { OLD }
}

/// The `pg_hba.conf` lines a document keeps: non-empty, starting with a
/// connection type (comments and blank lines go).
pub fn hba_entries(lines: &[String], version_num: u32) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| hba_types(version_num).contains(&w))
        })
        .map(str::to_owned)
        .collect()
}

/// The `pg_ident.conf` lines a document keeps: non-empty, not comments.
pub fn ident_entries(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Patroni's `RunningClusterConfigGenerator.generate` on the template:
/// the superuser's settings, the server's settings (commands and file
/// locations local, the rest in `bootstrap.dcs`), `scope` from
/// `cluster_name`, the addresses from `listen_addresses` and `port`, the
/// data directory's `pg_hba.conf`/`pg_ident.conf` lines and the running
/// program's `bin_dir`.
pub fn from_running(mut config: Value, server: &RunningServer) -> Value {
    let mut superuser = server.superuser.clone();
    superuser.retain(|k, _| server.version_num >= auth_param_since(k));
    {
        let pg = obj(&mut config, "postgresql");
        pg.insert(
            "authentication".into(),
            json!({
                "superuser": superuser,
                "replication": {"username": NO_VALUE, "password": NO_VALUE}
            }),
        );
        pg.entry("parameters").or_insert_with(|| json!({}));
    }
    let (mut port, mut listen_addresses) = (String::new(), String::new());
    for (name, value) in &server.settings {
        match name.as_str() {
            "data_directory" => {
                obj(&mut config, "postgresql").insert("data_dir".into(), json!(value));
            }
            "cluster_name" if !value.is_empty() => {
                if let Some(m) = config.as_object_mut() {
                    m.insert("scope".into(), json!(value));
                }
            }
            "port" => port.clone_from(value),
            "listen_addresses" => listen_addresses.clone_from(value),
            n if LOCAL_PARAMETERS.contains(&n) => {
                if let Some(p) = config
                    .pointer_mut("/postgresql/parameters")
                    .and_then(Value::as_object_mut)
                {
                    p.insert(n.into(), json!(value));
                }
            }
            n => {
                if let Some(p) = config
                    .pointer_mut("/bootstrap/dcs/postgresql/parameters")
                    .and_then(Value::as_object_mut)
                {
                    p.insert(n.into(), json!(value));
                }
            }
        }
    }
    let connect_ip = config
        .pointer("/postgresql/connect_address")
        .and_then(Value::as_str)
        .and_then(|a| a.split(':').next())
        .unwrap_or(NO_VALUE)
        .to_owned();
    let connect_port = server.connect_port.clone().unwrap_or_else(|| port.clone());
    let data_dir = config
        .pointer("/postgresql/data_dir")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let pg = obj(&mut config, "postgresql");
    pg.insert(
        "connect_address".into(),
        json!(format!("{connect_ip}:{connect_port}")),
    );
    pg.insert("listen".into(), json!(format!("{listen_addresses}:{port}")));
    let local = |name: &str| {
        pg_param(pg, name).is_some_and(|f| f == format!("{data_dir}/{}", file_name(name)))
    };
    let (hba_default, ident_default) = (local("hba_file"), local("ident_file"));
    if hba_default && let Some(lines) = &server.hba_lines {
        pg.insert(
            "pg_hba".into(),
            json!(hba_entries(lines, server.version_num)),
        );
    }
    if ident_default && let Some(lines) = &server.ident_lines {
        let entries = ident_entries(lines);
        if !entries.is_empty() {
            pg.insert("pg_ident".into(), json!(entries));
        }
    }
    pg.insert("bin_dir".into(), json!(server.bin_dir));
    with_dcs_section(config)
}

fn pg_param(pg: &Map<String, Value>, name: &str) -> Option<String> {
    pg.get("parameters")?.get(name)?.as_str().map(str::to_owned)
}

fn file_name(setting: &str) -> &'static str {
    if setting == "hba_file" {
        "pg_hba.conf"
    } else {
        "pg_ident.conf"
    }
}

/// The document with a DCS section: the one the variables gave, else
/// etcd's v3 API on its default client address (see the module's note).
fn with_dcs_section(mut config: Value) -> Value {
    let has_one = config
        .as_object()
        .is_some_and(|m| DCS_ORDER.iter().any(|s| m.contains_key(*s)));
    if !has_one && let Some(m) = config.as_object_mut() {
        m.insert("etcd3".into(), json!({"hosts": "127.0.0.1:2379"}));
    }
    config
}

/// Every mapping's keys sorted, as PyYAML's `safe_dump` writes them.
fn sorted_yaml(v: &Value) -> serde_yaml_ng::Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_yaml_ng::Mapping::new();
            for k in keys {
                out.insert(serde_yaml_ng::Value::String(k.clone()), sorted_yaml(&m[k]));
            }
            serde_yaml_ng::Value::Mapping(out)
        }
        Value::Array(a) => serde_yaml_ng::Value::Sequence(a.iter().map(sorted_yaml).collect()),
        Value::String(s) => serde_yaml_ng::Value::String(s.clone()),
        Value::Bool(b) => serde_yaml_ng::Value::Bool(*b),
        Value::Number(n) => serde_yaml_ng::to_value(n).unwrap_or(serde_yaml_ng::Value::Null),
        Value::Null => serde_yaml_ng::Value::Null,
    }
}

/// One block `{name: value}` as YAML, each line after the first prefixed.
fn block(name: &str, value: &Value, prefix: &str) -> String {
    let mut m = Map::new();
    m.insert(name.to_owned(), value.clone());
    let text = serde_yaml_ng::to_string(&sorted_yaml(&Value::Object(m))).unwrap_or_default();
    let body = text.trim().replace('\n', &format!("\n{prefix}"));
    format!("{prefix}{body}")
}

/// The document as Patroni's `_format_config` writes it: the sections in
/// its order, a blank line before each mapping, the `bootstrap` section
/// with its comments and the timing keys first.
pub fn render(config: &Value) -> String {
    let empty = Map::new();
    let m = config.as_object().unwrap_or(&empty);
    let mut out: Vec<String> = Vec::new();
    let section = |out: &mut Vec<String>, name: &str| {
        if let Some(v) = m.get(name) {
            if v.is_object() {
                out.push(String::new());
            }
            out.push(block(name, v, ""));
        }
    };
    for name in [
        "scope",
        "namespace",
        "name",
        "log",
        "restapi",
        "ctl",
        "citus",
        "consul",
        "etcd",
        "etcd3",
        "exhibitor",
        "kubernetes",
        "raft",
        "zookeeper",
    ] {
        section(&mut out, name);
    }
    if let Some(b) = m.get("bootstrap").and_then(Value::as_object) {
        out.push(
            "\n# The bootstrap configuration. Works only when the cluster is not yet initialized."
                .into(),
        );
        out.push("# If the cluster is already initialized, all changes in the `bootstrap` section are ignored!".into());
        out.push("bootstrap:".into());
        if let Some(dcs) = b.get("dcs").and_then(Value::as_object) {
            out.push("  # This section will be written into <dcs>:/<namespace>/<scope>/config after initializing".into());
            out.push("  # new cluster and all other cluster members will use it as a `global configuration`.".into());
            out.push(
                "  # WARNING! If you want to change any of the parameters that were set up".into(),
            );
            out.push(
                "  # via `bootstrap.dcs` section, please use `pgpilotctl edit-config`!".into(),
            );
            out.push("  dcs:".into());
            let first = ["loop_wait", "retry_timeout", "ttl"];
            for name in first {
                if let Some(v) = dcs.get(name) {
                    out.push(block(name, v, "    "));
                }
            }
            let mut rest: Vec<&String> = dcs
                .keys()
                .filter(|k| !first.contains(&k.as_str()))
                .collect();
            rest.sort();
            for name in rest {
                out.push(block(name, &dcs[name], "    "));
            }
        }
        let mut others: Vec<&String> = b.keys().filter(|k| *k != "dcs").collect();
        others.sort();
        for name in others {
            out.push(block(name, &b[name], "  "));
        }
    }
    for name in ["postgresql", "watchdog", "tags"] {
        section(&mut out, name);
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            hostname: "node1".into(),
            ip: "10.0.0.5".into(),
        }
    }

    fn no_env() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// `text` written to a file and run through `pgpilot --validate`'s
    /// checks: the warnings, or the errors as text.
    fn validate_text(tag: &str, text: &str) -> Result<Vec<String>, String> {
        let dir = std::env::temp_dir().join(format!("pgpilot-gen-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pgpilot.yml");
        std::fs::write(&path, text).unwrap();
        let out = crate::config::validate_file(&path, &no_env())
            .map(|(_, w)| w)
            .map_err(|e| e.to_string());
        std::fs::remove_dir_all(&dir).unwrap();
        out
    }

    /// The rendered text reads back as the document.
    fn round_trips(doc: &Value) {
        let text = render(doc);
        let back: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(&back, doc, "{text}");
    }

    #[test]
    fn sample_for_a_current_server_is_patronis_and_validates() {
        let doc = sample(template(&host(), &no_env()), 150_000);
        assert_eq!(doc["scope"], NO_VALUE);
        assert_eq!(doc["name"], "node1");
        assert_eq!(doc["restapi"]["listen"], "10.0.0.5:8008");
        assert_eq!(doc["postgresql"]["connect_address"], "10.0.0.5:5432");
        assert_eq!(doc["postgresql"]["data_dir"], NO_VALUE);
        assert_eq!(
            doc["postgresql"]["parameters"]["password_encryption"],
            "scram-sha-256"
        );
        assert_eq!(
            doc["postgresql"]["pg_hba"],
            json!([
                "host all all all scram-sha-256",
                "host replication replicator all scram-sha-256"
            ])
        );
        assert_eq!(
            doc["postgresql"]["authentication"]["rewind"],
            json!({"username": "rewind_user", "password": NO_VALUE})
        );
        let dcs = &doc["bootstrap"]["dcs"];
        assert_eq!(dcs["ttl"], 30);
        assert_eq!(dcs["postgresql"]["parameters"]["wal_keep_size"], "128MB");
        assert_eq!(dcs["postgresql"]["parameters"]["wal_level"], "replica");
        assert_eq!(dcs["postgresql"]["use_pg_rewind"], true);
        assert_eq!(doc["etcd3"]["hosts"], "127.0.0.1:2379");
        round_trips(&doc);
        let warnings = validate_text("sample", &render(&doc)).expect("the sample validates");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn sample_follows_the_major_version() {
        let v12 = sample(template(&host(), &no_env()), 120_000);
        let p = &v12["bootstrap"]["dcs"]["postgresql"]["parameters"];
        assert_eq!(p["wal_keep_segments"], 8);
        assert!(p.get("wal_keep_size").is_none());
        let v95 = sample(template(&host(), &no_env()), 90_500);
        assert_eq!(
            v95["postgresql"]["parameters"]["password_encryption"],
            "md5"
        );
        assert_eq!(
            v95["bootstrap"]["dcs"]["postgresql"]["parameters"]["wal_level"],
            "hot_standby"
        );
        assert!(v95["postgresql"]["authentication"].get("rewind").is_none());
        // Unknown (0): Patroni's oldest choices, but wal_level replica.
        let unknown = sample(template(&host(), &no_env()), 0);
        assert_eq!(
            unknown["postgresql"]["parameters"]["password_encryption"],
            "md5"
        );
    }

    #[test]
    fn variables_are_merged_over_the_template() {
        let env: BTreeMap<String, String> = [
            ("PATRONI_SCOPE", "batman"),
            ("PATRONI_ZOOKEEPER_HOSTS", "[zk1:2181, zk2:2181]"),
            ("PATRONI_REPLICATION_USERNAME", "standby"),
            ("PATRONI_POSTGRESQL_DATA_DIR", "/var/lib/pg/data"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let doc = sample(template(&host(), &env), 160_000);
        assert_eq!(doc["scope"], "batman");
        assert_eq!(doc["postgresql"]["data_dir"], "/var/lib/pg/data");
        assert_eq!(doc["zookeeper"]["hosts"], json!(["zk1:2181", "zk2:2181"]));
        assert!(doc.get("etcd3").is_none(), "the variables named a DCS");
        assert_eq!(
            doc["postgresql"]["pg_hba"][1],
            "host replication standby all scram-sha-256"
        );
        validate_text("env", &render(&doc)).expect("validates");
    }

    #[test]
    fn versions() {
        assert_eq!(major_version_num("15.4"), Some(150_000));
        assert_eq!(major_version_num("17beta1"), Some(170_000));
        assert_eq!(major_version_num("9.6.24"), Some(90_600));
        assert_eq!(major_version_num("x"), None);
        assert_eq!(
            version_of_postgres_output("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(150_000)
        );
    }

    fn running() -> RunningServer {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        RunningServer {
            version_num: 150_004,
            settings: vec![
                s("data_directory", "/var/lib/postgresql/15/main"),
                s("cluster_name", "15/main"),
                s("port", "5433"),
                s("listen_addresses", "localhost"),
                s("max_connections", "200"),
                s("archive_command", "cp %p /archive/%f"),
                s("hba_file", "/var/lib/postgresql/15/main/pg_hba.conf"),
                s("ident_file", "/etc/postgresql/15/main/pg_ident.conf"),
                s("config_file", "/etc/postgresql/15/main/postgresql.conf"),
            ],
            connect_port: None,
            superuser: [
                ("username", "postgres"),
                ("password", "pw"),
                ("sslnegotiation", "direct"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            hba_lines: Some(vec![
                "# TYPE DATABASE USER ADDRESS METHOD".into(),
                String::new(),
                "local   all   postgres   peer".into(),
                "host all all 127.0.0.1/32 scram-sha-256".into(),
                "include_dir conf.d".into(),
            ]),
            ident_lines: Some(vec!["# comment".into()]),
            bin_dir: "/usr/lib/postgresql/15/bin".into(),
        }
    }

    #[test]
    fn running_server_settings_land_where_patroni_puts_them() {
        let doc = from_running(template(&host(), &no_env()), &running());
        assert_eq!(doc["scope"], "15/main");
        let pg = &doc["postgresql"];
        assert_eq!(pg["data_dir"], "/var/lib/postgresql/15/main");
        assert_eq!(pg["connect_address"], "10.0.0.5:5433");
        assert_eq!(pg["listen"], "localhost:5433");
        assert_eq!(pg["bin_dir"], "/usr/lib/postgresql/15/bin");
        assert_eq!(pg["parameters"]["archive_command"], "cp %p /archive/%f");
        assert_eq!(
            pg["parameters"]["config_file"],
            "/etc/postgresql/15/main/postgresql.conf"
        );
        assert_eq!(
            doc["bootstrap"]["dcs"]["postgresql"]["parameters"]["max_connections"],
            "200"
        );
        // sslnegotiation is 17+: dropped for a 15 server.
        assert_eq!(
            pg["authentication"]["superuser"],
            json!({"username": "postgres", "password": "pw"})
        );
        assert_eq!(pg["authentication"]["replication"]["username"], NO_VALUE);
        // The data directory's own pg_hba.conf: its entries (include_dir
        // is 16+); pg_ident.conf is elsewhere: not read.
        assert_eq!(
            pg["pg_hba"],
            json!([
                "local   all   postgres   peer",
                "host all all 127.0.0.1/32 scram-sha-256"
            ])
        );
        assert!(pg.get("pg_ident").is_none());
        round_trips(&doc);
        validate_text("running", &render(&doc)).expect("validates");
    }

    #[test]
    fn running_server_port_from_the_connection_and_no_cluster_name() {
        let mut r = running();
        r.connect_port = Some("6432".into());
        r.settings.retain(|(n, _)| n != "cluster_name");
        r.version_num = 160_000;
        let doc = from_running(template(&host(), &no_env()), &r);
        assert_eq!(doc["scope"], NO_VALUE);
        assert_eq!(doc["postgresql"]["connect_address"], "10.0.0.5:6432");
        assert_eq!(doc["postgresql"]["pg_hba"][2], "include_dir conf.d");
    }

    #[test]
    fn rendered_in_patronis_order_with_its_comments() {
        let text = render(&sample(template(&host(), &no_env()), 150_000));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "scope: '#FIXME'");
        assert_eq!(lines[1], "name: node1");
        let at = |needle: &str| {
            lines
                .iter()
                .position(|l| *l == needle)
                .unwrap_or_else(|| panic!("no line {needle:?} in\n{text}"))
        };
        assert!(at("log:") < at("restapi:"));
        assert!(at("restapi:") < at("etcd3:"));
        assert!(at("etcd3:") < at("bootstrap:"));
        assert!(at("bootstrap:") < at("postgresql:"));
        assert!(at("postgresql:") < at("tags:"));
        // The timing first in bootstrap.dcs.
        assert_eq!(lines[at("  dcs:") + 1], "    loop_wait: 10");
        assert_eq!(lines[at("  dcs:") + 2], "    retry_timeout: 10");
        assert_eq!(lines[at("  dcs:") + 3], "    ttl: 30");
        assert!(text.contains("# The bootstrap configuration."));
    }

    #[test]
    fn hba_and_ident_filters() {
        let lines: Vec<String> = [
            "  host all all ::1/128 md5  ",
            "#local all all trust",
            "hostx a b",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(hba_entries(&lines, 150_000), ["host all all ::1/128 md5"]);
        assert_eq!(
            ident_entries(&lines),
            ["host all all ::1/128 md5", "hostx a b"]
        );
    }
}
