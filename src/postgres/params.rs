//! The server parameters pgpilot computes, forces and validates
//! (docs/configuration.md §9.1, §9.3).
//!
//! Precedence: built-in defaults <- dynamic `postgresql.parameters` <- local
//! `postgresql.parameters`. Local values for the cluster-wide names are
//! dropped, since those must be equal on every member; dynamic values that
//! fail validation fall back to the default with a warning. The cluster-wide names then
//! go on the postmaster command line so no file can override them.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::config::{Config, DynamicConfig};

/// Parameters that go on the `postgres` command line (`--name=value`).
pub const COMMAND_LINE_PARAMETERS: &[&str] = &[
    "listen_addresses",
    "port",
    "cluster_name",
    "wal_level",
    "hot_standby",
    "max_connections",
    "max_wal_senders",
    "max_replication_slots",
    "wal_keep_size",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "track_commit_timestamp",
    "max_worker_processes",
    "wal_log_hints",
];

/// Where the server's unix socket goes when the user did not say.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// How a cluster-wide value is validated.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Integer with a minimum.
    IntMin(i64),
    /// Size in MB (PG units kB/MB/GB/TB accepted) with a minimum in MB.
    SizeMinMb(i64),
    Bool,
    /// One of hot_standby, replica, logical (hot_standby means replica on 9.6+).
    WalLevel,
}

/// The validated cluster-wide names with their defaults (the always-forced ones,
/// listen_addresses, port, cluster_name and hot_standby, are set separately).
const VALIDATED: &[(&str, &str, Rule)] = &[
    ("wal_level", "replica", Rule::WalLevel),
    ("max_connections", "100", Rule::IntMin(25)),
    ("max_wal_senders", "10", Rule::IntMin(3)),
    ("wal_keep_size", "128MB", Rule::SizeMinMb(16)),
    ("max_prepared_transactions", "0", Rule::IntMin(0)),
    ("max_locks_per_transaction", "64", Rule::IntMin(32)),
    ("track_commit_timestamp", "off", Rule::Bool),
    ("max_replication_slots", "10", Rule::IntMin(4)),
    ("max_worker_processes", "8", Rule::IntMin(2)),
    ("wal_log_hints", "on", Rule::Bool),
];

/// The merged parameter set and what was adjusted on the way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EffectiveParameters {
    pub values: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// Renders a YAML/JSON parameter value as PostgreSQL reads it: booleans as
/// `on`/`off`, numbers as written, strings verbatim. `null` means unset.
pub fn render_value(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(if *b { "on" } else { "off" }.to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// PostgreSQL's boolean spellings (the unambiguous ones).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// A size in MB from `128MB`, `1GB`, `16384kB` or a bare number of MB.
pub fn parse_size_mb(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    match unit.trim() {
        "" | "MB" => Some(n),
        "kB" => Some(n / 1024),
        "GB" => n.checked_mul(1024),
        "TB" => n.checked_mul(1024 * 1024),
        _ => None,
    }
}

fn validate(value: &str, rule: Rule) -> Option<String> {
    match rule {
        Rule::IntMin(min) => value
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= min)
            .map(|n| n.to_string()),
        Rule::SizeMinMb(min) => parse_size_mb(value)
            .filter(|n| *n >= min)
            .map(|_| value.trim().to_owned()),
        Rule::Bool => parse_bool(value).map(|b| if b { "on" } else { "off" }.to_owned()),
        Rule::WalLevel => match value.trim() {
            "hot_standby" | "replica" => Some("replica".to_owned()),
            "logical" => Some("logical".to_owned()),
            _ => None,
        },
    }
}

impl Rule {
    fn expected(self) -> String {
        match self {
            Rule::IntMin(min) => format!("an integer of at least {min}"),
            Rule::SizeMinMb(min) => format!("a size of at least {min}MB"),
            Rule::Bool => "a boolean".to_owned(),
            Rule::WalLevel => "replica, hot_standby or logical".to_owned(),
        }
    }
}

/// A dynamic `postgresql.parameters` value refused before it reaches the
/// DCS (the API answers 400 with this message after the parameter's key).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParameterError {
    #[error("expected a scalar value, got {0}")]
    NotScalar(serde_json::Value),
    /// Outside the parameter's rule (a type, a minimum, a set of values).
    #[error("expected {expected}, got {value}")]
    Unexpected {
        expected: String,
        value: serde_json::Value,
    },
}

/// Check one dynamic `postgresql.parameters` value before it is written to
/// the DCS (`PATCH`/`PUT /config`): the cluster-wide names against their rule and
/// minimum, every value a scalar. `Err` says what was expected. Values read
/// back from the DCS are not refused: [`effective_parameters`] falls back to
/// the default with a warning instead.
pub fn check_dynamic_parameter(
    name: &str,
    value: &serde_json::Value,
) -> Result<(), ParameterError> {
    if value.is_array() || value.is_object() {
        return Err(ParameterError::NotScalar(value.clone()));
    }
    let Some(v) = render_value(value) else {
        return Ok(());
    };
    let rule = match VALIDATED.iter().find(|(n, _, _)| *n == name) {
        Some((_, _, rule)) => *rule,
        None if name == "wal_keep_segments" => Rule::IntMin(1),
        None => return Ok(()),
    };
    match validate(&v, rule) {
        Some(_) => Ok(()),
        None => Err(ParameterError::Unexpected {
            expected: rule.expected(),
            value: value.clone(),
        }),
    }
}

fn is_cluster_wide(name: &str) -> bool {
    COMMAND_LINE_PARAMETERS.contains(&name) || name == "wal_keep_segments"
}

/// The full parameter set for this node: see the module docs for the order.
///
/// Besides the cluster-wide names it fills in, when the user did not set them:
/// * `hba_file` / `ident_file` = `<config_dir>/pg_hba.conf` / `pg_ident.conf`.
///   Set or not, both are absolute: `config_dir` (default: `data_dir`) is
///   resolved against the working directory and a relative value against
///   `config_dir`, as Patroni does. PostgreSQL turns them absolute when it
///   starts, so a relative value in the file would differ from the running
///   one at every reload and show as a pending restart;
/// * `unix_socket_directories` = [`DEFAULT_SOCKET_DIR`] when this process can
///   write there (the Debian default, short and stable), else the data
///   directory itself (absolute: PostgreSQL resolves a relative one against
///   the data directory). Socket paths are limited to ~107 bytes, so
///   deployments with deep data directories should set it explicitly;
/// * `wal_retrieve_retry_interval` = `1s` (PostgreSQL's default is 5 s): how
///   long a standby waits before it retries its upstream. After a failover
///   or switchover the new primary may not have created the standby's slot
///   yet when the standby first connects; with 5 s every such miss cost the
///   rejoin 5 s (bench-switchover measured 6 s from request to streaming).
pub fn effective_parameters(cfg: &Config, dynamic: &DynamicConfig) -> EffectiveParameters {
    let mut warnings = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();

    let mut dynamic_params: BTreeMap<String, String> = dynamic
        .parameters
        .iter()
        .filter_map(|(k, v)| render_value(v).map(|v| (k.clone(), v)))
        .collect();

    // wal_keep_segments (PG < 13) becomes wal_keep_size = n * 16MB.
    if let Some(segs) = dynamic_params.remove("wal_keep_segments") {
        if dynamic_params.contains_key("wal_keep_size") {
            warnings.push("wal_keep_segments ignored: wal_keep_size is set".to_owned());
        } else if let Ok(n) = segs.trim().parse::<i64>() {
            dynamic_params.insert("wal_keep_size".to_owned(), format!("{}MB", n * 16));
        } else {
            warnings.push(format!("invalid wal_keep_segments {segs:?} ignored"));
        }
    }

    for (name, default, rule) in VALIDATED {
        let value = match dynamic_params.get(*name) {
            Some(v) => match validate(v, *rule) {
                Some(ok) => ok,
                None => {
                    warnings.push(format!(
                        "invalid value {v:?} for {name}; using the default {default:?}"
                    ));
                    (*default).to_owned()
                }
            },
            None => (*default).to_owned(),
        };
        values.insert((*name).to_owned(), value);
    }
    for (k, v) in &dynamic_params {
        if !is_cluster_wide(k) {
            values.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in &cfg.postgresql.parameters {
        if is_cluster_wide(k) {
            warnings.push(format!(
                "local value for {k} ignored: it is set cluster-wide (DCS config)"
            ));
            continue;
        }
        match render_value(v) {
            Some(v) => {
                values.insert(k.clone(), v);
            }
            None => {
                values.remove(k);
            }
        }
    }

    // Always forced.
    match cfg.postgresql.listen_parts() {
        Some((addrs, port)) => {
            values.insert("listen_addresses".to_owned(), addrs.join(","));
            values.insert("port".to_owned(), port.to_string());
        }
        None => warnings.push(format!(
            "postgresql.listen {:?} is not addr:port",
            cfg.postgresql.listen
        )),
    }
    values.insert("cluster_name".to_owned(), cfg.scope.clone());
    values.insert("hot_standby".to_owned(), "on".to_owned());

    let config_dir = absolute_path(Path::new(cfg.postgresql.config_dir()));
    for (name, default) in [("hba_file", "pg_hba.conf"), ("ident_file", "pg_ident.conf")] {
        let file = values.get(name).map_or(default, String::as_str);
        let path = absolute_path(&config_dir.join(file));
        values.insert(name.to_owned(), path.display().to_string());
    }
    values
        .entry("unix_socket_directories".to_owned())
        .or_insert_with(|| default_socket_dir(Path::new(&cfg.postgresql.data_dir)));
    values
        .entry("wal_retrieve_retry_interval".to_owned())
        .or_insert_with(|| "1s".to_owned());

    EffectiveParameters { values, warnings }
}

fn default_socket_dir(data_dir: &Path) -> String {
    let writable = nix::unistd::access(DEFAULT_SOCKET_DIR, nix::unistd::AccessFlags::W_OK).is_ok();
    if writable {
        DEFAULT_SOCKET_DIR.to_owned()
    } else {
        absolute_path(data_dir).display().to_string()
    }
}

/// `p` resolved against the working directory (the daemon's, which a
/// relative `data_dir` is relative to), in the canonical form PostgreSQL
/// gives the paths it makes absolute (`canonicalize_path`): no `.`, `..`
/// folded lexically, no repeated or trailing `/`. Symlinks are kept, as
/// PostgreSQL keeps them.
pub fn absolute_path(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(p),
            Err(_) => p.to_path_buf(),
        }
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            // `/..` is `/`: pop() leaves the root alone.
            Component::ParentDir if out.parent().is_some() => {
                out.pop();
            }
            Component::ParentDir if out.as_os_str().is_empty() => out.push(".."),
            Component::ParentDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Recovery parameters (PostgreSQL 12+ keeps them in `postgresql.conf`) and
/// `hot_standby`: they change with the node's role (a promoted replica's
/// file loses `recovery_target_timeline`), never because of the
/// configuration, so, as Patroni does, they never make a restart pending.
pub const NOT_PENDING_RESTART: &[&str] = &[
    "archive_cleanup_command",
    "hot_standby",
    "pause_at_recovery_target",
    "primary_conninfo",
    "primary_slot_name",
    "promote_trigger_file",
    "recovery_end_command",
    "recovery_min_apply_delay",
    "recovery_target",
    "recovery_target_action",
    "recovery_target_inclusive",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_timeline",
    "recovery_target_xid",
    "restore_command",
    "standby_mode",
    "trigger_file",
];

/// What waits for a restart, from PostgreSQL's own view (`rows` from
/// `pg_settings`) and the configured values: every setting PostgreSQL marks
/// `pending_restart` (postmaster-context values changed in the file and
/// reloaded), and every command-line parameter whose running value differs
/// from the configured one (a reload never changes those). The parameters of
/// [`NOT_PENDING_RESTART`] never count.
pub fn pending_restart(
    rows: &[crate::postgres::query::SettingRow],
    wanted: &BTreeMap<String, String>,
) -> BTreeMap<String, crate::dcs::PendingChange> {
    let mut out = BTreeMap::new();
    for r in rows {
        if NOT_PENDING_RESTART.contains(&r.name.to_ascii_lowercase().as_str()) {
            continue;
        }
        let want = wanted.get(&r.name);
        let differs = if r.pending_restart {
            true
        } else if COMMAND_LINE_PARAMETERS.contains(&r.name.as_str()) {
            want.is_some_and(|w| !same_setting(&r.setting, r.unit.as_deref(), w))
        } else {
            false
        };
        if differs {
            out.insert(
                r.name.clone(),
                crate::dcs::PendingChange {
                    old_value: with_unit(&r.setting, r.unit.as_deref()),
                    new_value: want.cloned().unwrap_or_default(),
                },
            );
        }
    }
    out
}

fn with_unit(setting: &str, unit: Option<&str>) -> String {
    match unit {
        Some(u @ ("B" | "kB" | "MB" | "GB" | "TB" | "ms" | "s" | "min" | "h" | "d")) => {
            format!("{setting}{u}")
        }
        _ => setting.to_owned(),
    }
}

/// Whether a `pg_settings.setting` (with its unit) means the configured value.
fn same_setting(setting: &str, unit: Option<&str>, wanted: &str) -> bool {
    let (s, w) = (setting.trim(), wanted.trim());
    if s == w {
        return true;
    }
    if let (Some(a), Some(b)) = (parse_bool(s), parse_bool(w)) {
        return a == b;
    }
    if let (Ok(a), Ok(b)) = (s.parse::<i64>(), w.parse::<i64>()) {
        return a == b;
    }
    match unit {
        Some("MB") => s.parse::<i64>().ok() == parse_size_mb(w),
        _ => w == "hot_standby" && s == "replica",
    }
}

/// The subset of `params` that goes on the postmaster command line, in
/// [`COMMAND_LINE_PARAMETERS`] order.
pub fn command_line_parameters(params: &BTreeMap<String, String>) -> Vec<(String, String)> {
    COMMAND_LINE_PARAMETERS
        .iter()
        .filter_map(|n| params.get(*n).map(|v| ((*n).to_owned(), v.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Timing;
    use serde_json::json;

    fn config(local: serde_json::Value) -> Config {
        let yaml = format!(
            r#"
name: node1
scope: demo
restapi: {{listen: "127.0.0.1:8008", connect_address: "127.0.0.1:8008"}}
postgresql:
  listen: "127.0.0.1,10.0.0.1:5433"
  connect_address: "10.0.0.1:5433"
  data_dir: /data/pg
  config_dir: /etc/pg
  authentication: {{replication: {{username: rep, password: x}}}}
  parameters: {local}
"#
        );
        serde_yaml_ng::from_str(&yaml).unwrap()
    }

    fn dynamic(params: serde_json::Value) -> DynamicConfig {
        DynamicConfig {
            timing: Timing::default(),
            maximum_lag_on_failover: 1 << 20,
            use_slots: true,
            slots: Default::default(),
            use_pg_rewind: false,
            parameters: serde_json::from_value(params).unwrap(),
            pause: false,
            failsafe_mode: false,
            primary_start_timeout: 300,
            sync: Default::default(),
            standby_cluster: None,
            raw: json!({}),
        }
    }

    #[test]
    fn defaults_and_forced() {
        let e = effective_parameters(&config(json!({})), &dynamic(json!({})));
        let v = &e.values;
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
        assert_eq!(v["listen_addresses"], "127.0.0.1,10.0.0.1");
        assert_eq!(v["port"], "5433");
        assert_eq!(v["cluster_name"], "demo");
        assert_eq!(v["hot_standby"], "on");
        assert_eq!(v["wal_level"], "replica");
        assert_eq!(v["wal_log_hints"], "on");
        assert_eq!(v["max_connections"], "100");
        assert_eq!(v["max_wal_senders"], "10");
        assert_eq!(v["max_replication_slots"], "10");
        assert_eq!(v["wal_keep_size"], "128MB");
        assert_eq!(v["max_worker_processes"], "8");
        assert_eq!(v["max_locks_per_transaction"], "64");
        assert_eq!(v["max_prepared_transactions"], "0");
        assert_eq!(v["track_commit_timestamp"], "off");
        assert_eq!(v["hba_file"], "/etc/pg/pg_hba.conf");
        assert_eq!(v["ident_file"], "/etc/pg/pg_ident.conf");
        assert!(v.contains_key("unix_socket_directories"));
        assert_eq!(v["wal_retrieve_retry_interval"], "1s");
        let cmd = command_line_parameters(v);
        assert_eq!(cmd.len(), COMMAND_LINE_PARAMETERS.len());
        assert_eq!(
            cmd[0],
            ("listen_addresses".into(), "127.0.0.1,10.0.0.1".into())
        );
    }

    fn config_at(data_dir: &str, config_dir: Option<&str>, local: serde_json::Value) -> Config {
        let mut c = config(local);
        c.postgresql.data_dir = data_dir.to_owned();
        c.postgresql.config_dir = config_dir.map(str::to_owned);
        c
    }

    /// Issue 12 §2: with Patroni's `data_dir: data/postgresql0` the files
    /// were written as relative paths, which PostgreSQL had made absolute
    /// when it started, so every reload marked them pending restart.
    #[test]
    fn hba_and_ident_files_are_absolute() {
        let cwd = std::env::current_dir().unwrap();
        let e = effective_parameters(
            &config_at("data/postgresql0", None, json!({})),
            &dynamic(json!({})),
        );
        let data = cwd.join("data/postgresql0");
        assert_eq!(
            e.values["hba_file"],
            data.join("pg_hba.conf").display().to_string()
        );
        assert_eq!(
            e.values["ident_file"],
            data.join("pg_ident.conf").display().to_string()
        );
        // A relative value of the user's is relative to config_dir (as in
        // Patroni); an absolute one is kept.
        let e = effective_parameters(
            &config_at(
                "/data/pg",
                Some("./conf/../etc//"),
                json!({"hba_file": "hba/my_hba.conf", "ident_file": "/etc/ident.conf"}),
            ),
            &dynamic(json!({})),
        );
        assert_eq!(
            e.values["hba_file"],
            cwd.join("etc/hba/my_hba.conf").display().to_string()
        );
        assert_eq!(e.values["ident_file"], "/etc/ident.conf");
    }

    #[test]
    fn absolute_paths_are_canonical() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute_path(Path::new("/a/./b//c/")), Path::new("/a/b/c"));
        assert_eq!(absolute_path(Path::new("/a/b/../c")), Path::new("/a/c"));
        assert_eq!(absolute_path(Path::new("/../a")), Path::new("/a"));
        assert_eq!(absolute_path(Path::new("data")), cwd.join("data"));
        assert_eq!(absolute_path(Path::new("./x/../data/")), cwd.join("data"));
    }

    #[test]
    fn precedence_and_validation() {
        let local = json!({
            "max_connections": 500,          // cluster-wide: dropped
            "work_mem": "8MB",               // local wins over dynamic
            "unix_socket_directories": "/tmp/s",
            "port": 1,                       // forced from listen
            "log_min_duration_statement": null
        });
        let dynamic = dynamic(json!({
            "max_connections": 10,           // below min 25: default
            "max_wal_senders": "20",
            "wal_level": "hot_standby",
            "wal_log_hints": false,
            "track_commit_timestamp": "yes",
            "work_mem": "4MB",
            "log_min_duration_statement": 100,
            "shared_buffers": "256MB",
            "hot_standby": "off",            // forced on
            "wal_keep_segments": 4
        }));
        let e = effective_parameters(&config(local), &dynamic);
        let v = &e.values;
        assert_eq!(v["max_connections"], "100");
        assert_eq!(v["max_wal_senders"], "20");
        assert_eq!(v["wal_level"], "replica");
        assert_eq!(v["wal_log_hints"], "off");
        assert_eq!(v["track_commit_timestamp"], "on");
        assert_eq!(v["work_mem"], "8MB");
        assert_eq!(v["shared_buffers"], "256MB");
        assert_eq!(v["hot_standby"], "on");
        assert_eq!(v["port"], "5433");
        assert_eq!(v["unix_socket_directories"], "/tmp/s");
        assert_eq!(v["wal_keep_size"], "64MB");
        assert!(!v.contains_key("wal_keep_segments"));
        assert!(!v.contains_key("log_min_duration_statement"));
        assert!(
            e.warnings
                .iter()
                .any(|w| w.contains("max_connections") && w.contains("10"))
        );
        assert!(
            e.warnings
                .iter()
                .any(|w| w.contains("local value for max_connections"))
        );
        assert!(
            e.warnings
                .iter()
                .any(|w| w.contains("local value for port"))
        );
    }

    #[test]
    fn small_wal_keep_size_falls_back() {
        let e = effective_parameters(
            &config(json!({})),
            &dynamic(json!({"wal_keep_size": "8MB", "wal_level": "minimal"})),
        );
        assert_eq!(e.values["wal_keep_size"], "128MB");
        assert_eq!(e.values["wal_level"], "replica");
        assert_eq!(e.warnings.len(), 2);
        let ok = effective_parameters(
            &config(json!({})),
            &dynamic(json!({"wal_keep_size": "1GB"})),
        );
        assert_eq!(ok.values["wal_keep_size"], "1GB");
    }

    #[test]
    fn pending_restart_from_pg_settings() {
        use crate::postgres::query::SettingRow;
        let row = |name: &str, setting: &str, unit: Option<&str>, pending: bool| SettingRow {
            name: name.into(),
            setting: setting.into(),
            unit: unit.map(Into::into),
            pending_restart: pending,
        };
        let wanted: BTreeMap<String, String> = [
            ("max_connections", "200"),
            ("wal_keep_size", "128MB"),
            ("wal_log_hints", "on"),
            ("wal_level", "replica"),
            ("shared_buffers", "256MB"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let rows = [
            row("max_connections", "100", None, false),
            row("wal_keep_size", "128", Some("MB"), false),
            row("wal_log_hints", "on", None, false),
            row("wal_level", "replica", None, false),
            row("shared_buffers", "16384", Some("8kB"), true),
            row("work_mem", "4096", Some("kB"), false),
        ];
        let p = pending_restart(&rows, &wanted);
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            ["max_connections", "shared_buffers"]
        );
        assert_eq!(p["max_connections"].old_value, "100");
        assert_eq!(p["max_connections"].new_value, "200");
        assert_eq!(p["shared_buffers"].old_value, "16384");
        assert_eq!(p["shared_buffers"].new_value, "256MB");
        let rows = [row("max_connections", "200", None, false)];
        assert!(pending_restart(&rows, &wanted).is_empty());
        let rows = [row("wal_keep_size", "64", Some("MB"), false)];
        assert_eq!(
            pending_restart(&rows, &wanted)["wal_keep_size"].old_value,
            "64MB"
        );
        // A promoted replica: its file no longer sets the recovery
        // parameters, which PostgreSQL marks pending; not a restart reason.
        let rows = [
            row("recovery_target_timeline", "latest", None, true),
            row("primary_conninfo", "host=x", None, true),
            row("hot_standby", "on", None, true),
        ];
        assert!(pending_restart(&rows, &wanted).is_empty());
    }

    #[test]
    fn dynamic_parameter_checks() {
        assert!(check_dynamic_parameter("max_connections", &json!(100)).is_ok());
        assert!(check_dynamic_parameter("max_connections", &json!("200")).is_ok());
        let e = check_dynamic_parameter("max_connections", &json!(1)).unwrap_err();
        assert!(
            matches!(&e, ParameterError::Unexpected { value, .. } if *value == json!(1)),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains("at least 25"), "{e}");
        assert!(check_dynamic_parameter("wal_keep_size", &json!("8MB")).is_err());
        assert!(check_dynamic_parameter("wal_level", &json!("minimal")).is_err());
        assert!(check_dynamic_parameter("wal_log_hints", &json!("maybe")).is_err());
        assert!(check_dynamic_parameter("work_mem", &json!("8MB")).is_ok());
        assert!(check_dynamic_parameter("work_mem", &json!(null)).is_ok());
        assert!(check_dynamic_parameter("work_mem", &json!({"a": 1})).is_err());
    }

    #[test]
    fn sizes_and_bools() {
        assert_eq!(parse_size_mb("128MB"), Some(128));
        assert_eq!(parse_size_mb("2GB"), Some(2048));
        assert_eq!(parse_size_mb("16384kB"), Some(16));
        assert_eq!(parse_size_mb("64"), Some(64));
        assert_eq!(parse_size_mb("12XB"), None);
        assert_eq!(parse_bool("On"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(render_value(&json!(true)).unwrap(), "on");
        assert_eq!(render_value(&json!(1.5)).unwrap(), "1.5");
        assert_eq!(render_value(&json!(null)), None);
    }
}
