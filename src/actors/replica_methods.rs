//! Replica creation methods (`postgresql.create_replica_methods`) and the
//! custom bootstrap method (`bootstrap.method`), as Patroni runs them.
//!
//! Methods are tried in the configured order until one succeeds:
//! - `basebackup` is built in (pg_basebackup from the leader, with the
//!   `postgresql.basebackup` options);
//! - any other name runs `postgresql.<method>.command` (default: the method
//!   name) through `/bin/sh -c`, with `--scope=<scope> --role=replica
//!   --datadir=<data_dir> --connstring=<libpq conninfo of the leader>` and every other key of
//!   the section as `--key=value`, unless the section says `no_params:
//!   true` (then only the command runs). `PGPASSFILE` points at the pgpass
//!   file with the replication credentials, which never appear in the
//!   arguments.
//! - Before each attempt a non-empty data directory (what a failed method
//!   left) is removed, unless the method says `keep_data: true`.
//! - Without a leader only methods with `no_leader: true` are tried (never
//!   `basebackup`), and `--connstring=` is empty.
//!
//! A custom bootstrap runs `bootstrap.<method>.command` with
//! `--scope=<scope> --datadir=<data_dir>` (unless `no_params`) instead of
//! initdb; the rest of the bootstrap (configuration, start, roles,
//! post_bootstrap) follows as after initdb.

use std::path::Path;

use serde_json::{Map, Value};
use tracing::{info, warn};

use super::postgres_jobs::JobEnv;
use crate::ha::Upstream;
use crate::postgres::{PgError, PgResult, conninfo, datadir, ops};

/// Keys of a method section that are pgpilot's, not the command's, when
/// `no_params` is set (Patroni drops them then; otherwise it passes them on).
const OWN_KEYS: &[&str] = &["no_params", "no_master", "no_leader", "keep_data"];

/// Python's `str()` of a YAML value, which is what Patroni puts after `=`.
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

fn flag(section: &Map<String, Value>, key: &str) -> bool {
    section
        .get(key)
        .is_some_and(crate::config::types::json_truthy)
}

/// The command line of a custom method: the command string (run by the
/// shell, so it may carry its own arguments) and the `--key=value`
/// parameters, in Patroni's order (the section's keys, then the defaults).
pub fn method_command(
    method: &str,
    section: &Map<String, Value>,
    defaults: &[(&str, String)],
) -> (String, Vec<String>) {
    let mut section = section.clone();
    let command = section
        .remove("command")
        .map(|v| python_str(&v))
        .unwrap_or_else(|| method.to_owned());
    let mut params: Vec<(String, String)> = Vec::new();
    if flag(&section, "no_params") {
        for k in OWN_KEYS {
            section.remove(*k);
        }
        params.extend(section.iter().map(|(k, v)| (k.clone(), python_str(v))));
    } else {
        params.extend(
            section
                .iter()
                .filter(|(k, _)| !defaults.iter().any(|(d, _)| d == k))
                .map(|(k, v)| (k.clone(), python_str(v))),
        );
        params.extend(defaults.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    }
    (
        command,
        params
            .into_iter()
            .map(|(k, v)| format!("--{k}={v}"))
            .collect(),
    )
}

/// The libpq connection string of the upstream for the replication user,
/// with the replication section's TLS settings (Patroni's `connstring`:
/// `dbname=... user=... host=... port=... [ssl...]`); the password comes
/// from `PGPASSFILE`.
/// How a method reaches `from`: a libpq connection string, empty for a
/// standby cluster's remote without `host` or `port` (docs/ha.md §16).
pub fn connstring(env: &JobEnv, from: &Upstream) -> String {
    if from.remote && from.port == 0 {
        return String::new();
    }
    conninfo::connection_string(
        &env.replication_credentials(),
        env.target(from),
        env.version_num(),
    )
}

async fn run_command(env: &JobEnv, command: &str, params: &[String]) -> PgResult<()> {
    let passfile = env.write_pgpass()?;
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("{command} \"$@\""))
        .arg("sh")
        .args(params)
        .env("PGPASSFILE", &passfile);
    let out = crate::postgres::command::run(cmd).await?;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| !l.trim().is_empty())
        .take(50)
    {
        info!(event = crate::events::METHOD_OUTPUT, line = %line);
    }
    Ok(())
}

fn clear_data_dir(dir: &Path) -> PgResult<()> {
    if datadir::is_empty(dir).map_err(|e| PgError::io("inspect data directory", e))? {
        return Ok(());
    }
    warn!(event = crate::events::DATA_DIR_REMOVED, dir = %dir.display(), "removing what a failed replica method left");
    std::fs::remove_dir_all(dir).map_err(|e| PgError::io(format!("remove {}", dir.display()), e))
}

/// Fill the (empty) data directory from `from`, or without a leader with a
/// `no_leader` method. Returns the method that worked.
/// `basebackup`, the method of a standby cluster whose section lists none.
static BASEBACKUP_ONLY: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| vec!["basebackup".to_owned()]);

/// The methods to try: a standby cluster's remote is cloned with the
/// section's `create_replica_methods`, else `basebackup`, never the local
/// list (Patroni's `create_replica` for a `RemoteMember`; docs/ha.md §16);
/// anything else with `postgresql.create_replica_methods`.
pub(super) fn methods_for<'a>(env: &'a JobEnv, from: Option<&Upstream>) -> &'a [String] {
    match (from, env.dynamic.standby_cluster.as_ref()) {
        (Some(u), Some(sc)) if u.remote && !sc.create_replica_methods.is_empty() => {
            &sc.create_replica_methods
        }
        (Some(u), _) if u.remote => &BASEBACKUP_ONLY,
        _ => &env.cfg.postgresql.create_replica_methods,
    }
}

pub async fn create_replica(env: &JobEnv, from: Option<&Upstream>) -> PgResult<String> {
    let pg = &env.cfg.postgresql;
    let methods: Vec<&String> = methods_for(env, from)
        .iter()
        .filter(|m| from.is_some() || pg.method_works_without_leader(m))
        .collect();
    if methods.is_empty() {
        return Err(PgError::InvalidOption(match from {
            Some(_) => "create_replica_methods is empty".to_owned(),
            None => "no replica method works without a leader (no_leader)".to_owned(),
        }));
    }
    let mut last_error = None;
    for method in methods {
        let section = pg.replica_method(method);
        if !flag(&section, "keep_data") {
            clear_data_dir(&env.data_dir)?;
        }
        info!(event = crate::events::REPLICA_METHOD_STARTED, method = %method, from = ?from.map(|u| &u.name));
        let result = match (method.as_str(), from) {
            ("basebackup", Some(from)) => basebackup(env, from).await,
            ("basebackup", None) => continue,
            _ => {
                let defaults = [
                    ("scope", env.cfg.scope.clone()),
                    ("role", "replica".to_owned()),
                    ("datadir", env.data_dir.display().to_string()),
                    (
                        "connstring",
                        from.map(|u| connstring(env, u)).unwrap_or_default(),
                    ),
                ];
                let (command, params) = method_command(method, &section, &defaults);
                run_command(env, &command, &params).await
            }
        };
        match result {
            Ok(()) if !datadir::is_empty(&env.data_dir).unwrap_or(true) => {
                datadir::ensure_mode_0700(&env.data_dir)
                    .map_err(|e| PgError::io("chmod data directory", e))?;
                info!(event = crate::events::REPLICA_CREATED, method = %method);
                return Ok(method.clone());
            }
            Ok(()) => {
                warn!(event = crate::events::REPLICA_METHOD_FAILED, method = %method, error = "the data directory is still empty");
                last_error = Some(PgError::InvalidOption(format!(
                    "replica method {method} left the data directory empty"
                )));
            }
            Err(e) => {
                warn!(event = crate::events::REPLICA_METHOD_FAILED, method = %method, error = %e, "trying the next method");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| PgError::InvalidOption("no replica method ran".to_owned())))
}

async fn basebackup(env: &JobEnv, from: &Upstream) -> PgResult<()> {
    if from.remote && from.port == 0 {
        return Err(PgError::InvalidOption(
            "standby_cluster names no host or port: basebackup cannot clone the remote (list a method in standby_cluster.create_replica_methods)".into(),
        ));
    }
    let passfile = env.write_pgpass()?;
    let source = ops::BasebackupSource {
        conninfo: connstring(env, from),
        passfile: Some(passfile),
    };
    let extra = match &env.cfg.postgresql.basebackup {
        Some(v) => ops::basebackup_args(v)?,
        None => Vec::new(),
    };
    ops::basebackup(&env.bins, &env.data_dir, &source, &extra).await
}

/// The custom bootstrap, if `bootstrap.method` names one with a section:
/// `Ok(false)` means "not configured, run initdb".
pub async fn custom_bootstrap(env: &JobEnv) -> PgResult<bool> {
    let Some(boot) = env.cfg.bootstrap.as_ref() else {
        return Ok(false);
    };
    let Some((method, section)) = boot.custom_method() else {
        return Ok(false);
    };
    if section.contains_key("recovery_conf") {
        warn!(
            event = crate::events::BOOTSTRAP_RECOVERY_CONF_IGNORED,
            method = %method,
            "recovery_conf of a custom bootstrap is not supported yet: the restored data directory starts as it is"
        );
    }
    let defaults = [
        ("scope", env.cfg.scope.clone()),
        ("datadir", env.data_dir.display().to_string()),
    ];
    let mut section = section.clone();
    for k in ["keep_existing_recovery_conf", "recovery_conf"] {
        section.remove(k);
    }
    let (command, params) = method_command(method, &section, &defaults);
    info!(event = crate::events::BOOTSTRAP_METHOD_STARTED, method = %method);
    run_command(env, &command, &params).await?;
    if datadir::is_empty(&env.data_dir).unwrap_or(true) {
        return Err(PgError::InvalidOption(format!(
            "bootstrap method {method} left the data directory empty"
        )));
    }
    datadir::ensure_mode_0700(&env.data_dir).map_err(|e| PgError::io("chmod data directory", e))?;
    info!(event = crate::events::BOOTSTRAP_METHOD_DONE, method = %method);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn defaults() -> Vec<(&'static str, String)> {
        vec![
            ("scope", "batman".into()),
            ("role", "replica".into()),
            ("datadir", "/data".into()),
            ("connstring", "postgres://r@h:5432/postgres".into()),
        ]
    }

    #[test]
    fn command_gets_defaults_and_section_params() {
        let (cmd, params) = method_command(
            "wal_g",
            &section(json!({"command": "/bin/restore --x", "no_leader": true, "threads": 4})),
            &defaults(),
        );
        assert_eq!(cmd, "/bin/restore --x");
        assert_eq!(
            params,
            vec![
                "--no_leader=True",
                "--threads=4",
                "--scope=batman",
                "--role=replica",
                "--datadir=/data",
                "--connstring=postgres://r@h:5432/postgres"
            ]
        );
    }

    #[test]
    fn method_sections_are_kept_from_yaml() {
        let pg: crate::config::Postgresql = serde_yaml_ng::from_str(
            "listen: 127.0.0.1:5432\nconnect_address: 127.0.0.1:5432\ndata_dir: /d\n\
             authentication: {replication: {username: r}}\n\
             create_replica_methods: [wal_e, basebackup]\n\
             wal_e: {command: /bin/true, no_leader: yes}\n",
        )
        .unwrap();
        assert_eq!(pg.replica_method("wal_e")["command"], json!("/bin/true"));
        assert!(pg.method_works_without_leader("wal_e"));
        assert!(!pg.method_works_without_leader("basebackup"));
        assert!(pg.can_clone_without_leader());
        let boot: crate::config::Bootstrap =
            serde_yaml_ng::from_str("method: restore\nrestore: {command: /bin/restore}\n").unwrap();
        assert_eq!(boot.custom_method().unwrap().0, "restore");
        let initdb: crate::config::Bootstrap = serde_yaml_ng::from_str("method: initdb\n").unwrap();
        assert!(initdb.custom_method().is_none());
    }

    #[test]
    fn no_params_drops_defaults_and_own_keys() {
        let (cmd, params) = method_command(
            "restore",
            &section(json!({"no_params": "on", "keep_data": true, "extra": "x"})),
            &defaults(),
        );
        assert_eq!(cmd, "restore");
        assert_eq!(params, vec!["--extra=x"]);
    }
}
