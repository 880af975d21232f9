//! Loading the local configuration (docs/configuration.md §1, §8): a file or a
//! directory of `*.yml`/`*.yaml` files (sorted, deep-merged), with
//! `PATRONI_*`/`PGPILOT_*` environment variables merged over it, or the
//! whole document from `PATRONI_CONFIGURATION`.
//!
//! Everything is merged as an untyped YAML tree and then deserialised into
//! [`Config`]. Errors are traced back to the layer that set the offending
//! key (a file and line, or an environment variable).

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::env::{self, EnvLayer};
use super::error::ConfigError;
use super::lines;
use super::patch::patch_config;
use super::tree;
use super::types::Config;

/// The result of [`load`].
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Unknown keys, ignored variables and similar, each naming its origin.
    pub warnings: Vec<String>,
    /// Where the configuration came from: the file or directory path,
    /// `PATRONI_CONFIGURATION` (or `PGPILOT_CONFIGURATION`), or `environment`.
    pub source: String,
}

/// One YAML document that contributes to the configuration.
#[derive(Debug)]
pub(crate) struct Layer {
    pub origin: String,
    pub text: String,
    /// As written (the `etcd` spelling kept), for warnings and lines.
    pub value: Value,
}

/// All layers of a load, kept to trace keys back to where they were set.
#[derive(Debug)]
pub(crate) struct Sources {
    pub files: Vec<Layer>,
    pub env: Option<EnvLayer>,
    pub source: String,
}

impl Sources {
    /// Where `key` (a dotted path) was set last: `(origin, line)`. Falls back
    /// to the overall source when no layer sets it.
    pub fn locate(&self, key: &str) -> (String, Option<usize>) {
        let segs = tree::split_path(key);
        // Try the key, then shorter prefixes (a missing key's parent).
        for len in (1..=segs.len()).rev() {
            let prefix = &segs[..len];
            if let Some(env) = &self.env
                && tree::defines(&env.value, prefix)
                && let Some(var) = env.var_for(prefix)
            {
                return (format!("environment ({var})"), None);
            }
            for layer in self.files.iter().rev() {
                if tree::defines(&layer.value, prefix) {
                    return (layer.origin.clone(), lines::find_line(&layer.text, prefix));
                }
            }
        }
        (self.source.clone(), None)
    }
}

/// Load the local configuration.
///
/// * `path`: a file, or a directory whose `*.yml`/`*.yaml` files are merged
///   in name order; `None` for environment-only configuration.
/// * `env`: the process environment (pass `std::env::vars().collect()`).
///
/// `PATRONI_CONFIGURATION` (or `PGPILOT_CONFIGURATION`) replaces the file
/// whole, and then no other variable is considered. Otherwise the
/// `PATRONI_*`/`PGPILOT_*` variables are deep-merged over the file.
pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Loaded, ConfigError> {
    load_with_sources(path, env).map(|(l, _)| l)
}

pub(crate) fn load_with_sources(
    path: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<(Loaded, Sources), ConfigError> {
    let (merged, sources, warnings) = merge_layers(path, env)?;
    let config = deserialize::<Config>(&merged, &sources)?;
    let source = sources.source.clone();
    Ok((
        Loaded {
            config,
            warnings,
            source,
        },
        sources,
    ))
}

/// What a client of the cluster (`pgpilotctl`) reads, through the same
/// layers as the daemon's [`load`]: the file or directory, then the
/// `PATRONI_*` variables, or `PATRONI_CONFIGURATION` alone. Without a path
/// and without variables there is nothing to read: the defaults (the
/// command line then names the DCS and the cluster).
pub fn load_client(
    path: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<super::ClientConfig, ConfigError> {
    if path.is_none() && env::configuration_var(env).is_none() && env::env_layer(env).is_empty() {
        return Ok(super::ClientConfig::default());
    }
    let (merged, sources, _) = merge_layers(path, env)?;
    deserialize(&merged, &sources)
}

/// Every layer read and merged, with the warnings of the reading (unknown
/// keys, ignored variables) and where each key came from.
fn merge_layers(
    path: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<(Value, Sources, Vec<String>), ConfigError> {
    let mut warnings = Vec::new();
    let mut sources = Sources {
        files: Vec::new(),
        env: None,
        source: String::new(),
    };
    if let Some((var, text)) = env::configuration_var(env) {
        if let Some(p) = path {
            warnings.push(format!(
                "{var} is set: it replaces {} and all other PATRONI_/PGPILOT_ variables are ignored",
                p.display()
            ));
        }
        sources.source = var.clone();
        sources.files.push(parse_layer(var, text)?);
    } else {
        if let Some(p) = path {
            sources.source = p.display().to_string();
            for file in config_files(p)? {
                let origin = file.display().to_string();
                let text = std::fs::read_to_string(&file).map_err(|error| ConfigError::Io {
                    origin: origin.clone(),
                    error,
                })?;
                sources.files.push(parse_layer(origin, text)?);
            }
        } else {
            sources.source = "environment".to_owned();
        }
        let layer = env::env_layer(env);
        warnings.extend(layer.warnings.iter().cloned());
        if path.is_none() && layer.is_empty() {
            return Err(ConfigError::key(
                "environment",
                "",
                "no configuration: give a configuration file, PATRONI_CONFIGURATION or PATRONI_* variables",
            ));
        }
        if !layer.is_empty() {
            sources.env = Some(layer);
        }
    }

    // Merge.
    let mut merged = Value::Mapping(Mapping::new());
    for layer in &sources.files {
        patch_config(&mut merged, layer.value.clone());
    }
    if let Some(env) = &sources.env {
        patch_config(&mut merged, env.value.clone());
    }
    tree::normalize(&mut merged);

    // Unknown keys: warnings naming the layer that has them.
    for layer in &sources.files {
        for key in tree::unknown_keys(&layer.value, &merged) {
            let line = lines::find_line(&layer.text, &tree::split_path(&key));
            let at = match line {
                Some(l) => format!("{} line {l}", layer.origin),
                None => layer.origin.clone(),
            };
            warnings.push(unknown_key_warning(&at, &key));
        }
    }
    if let Some(env) = &sources.env {
        for key in tree::unknown_keys(&env.value, &merged) {
            let var = env.var_for(&tree::split_path(&key)).unwrap_or("?");
            warnings.push(unknown_key_warning(&format!("environment ({var})"), &key));
        }
    }

    Ok((merged, sources, warnings))
}

/// Cluster-wide settings (docs/configuration.md §9) that Patroni ignores in the local
/// file: they only take effect through `bootstrap.dcs` or the DCS.
const DYNAMIC_ONLY: &[&str] = &[
    "ttl",
    "loop_wait",
    "retry_timeout",
    "maximum_lag_on_failover",
    "maximum_lag_on_syncnode",
    "max_timelines_history",
    "primary_start_timeout",
    "primary_stop_timeout",
    "master_start_timeout",
    "master_stop_timeout",
    "synchronous_mode",
    "synchronous_mode_strict",
    "synchronous_node_count",
    "failsafe_mode",
    "check_timeline",
    "pause",
    "member_slots_ttl",
    "slots",
    "permanent_slots",
    "permanent_replication_slots",
    "ignore_slots",
    "standby_cluster",
];

fn unknown_key_warning(at: &str, key: &str) -> String {
    if DYNAMIC_ONLY.contains(&key) {
        format!(
            "{at}: {key}: cluster-wide setting, ignored in the local configuration; \
             set it in bootstrap.dcs or with `pgpilotctl edit-config`"
        )
    } else {
        format!("{at}: {key}: unknown key, ignored")
    }
}

/// The files to read for `path`: itself, or the sorted `*.yml`/`*.yaml` of a
/// directory.
fn config_files(path: &Path) -> Result<Vec<std::path::PathBuf>, ConfigError> {
    let io = |error| ConfigError::Io {
        origin: path.display().to_string(),
        error,
    };
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let p = entry.map_err(io)?.path();
        let yaml = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yml" || e == "yaml");
        if yaml && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::key(
            path.display().to_string(),
            "",
            "directory contains no *.yml or *.yaml files",
        ));
    }
    Ok(files)
}

fn parse_layer(origin: String, text: String) -> Result<Layer, ConfigError> {
    let mut value: Value = serde_yaml_ng::from_str(&text).map_err(|e| {
        let (_, message) = split_yaml_error(&e);
        ConfigError::Invalid {
            origin: origin.clone(),
            line: e.location().map(|l| l.line()),
            key: String::new(),
            message,
        }
    })?;
    value.apply_merge().map_err(|e| ConfigError::Invalid {
        origin: origin.clone(),
        line: e.location().map(|l| l.line()),
        key: String::new(),
        message: split_yaml_error(&e).1,
    })?;
    match value {
        Value::Null => value = Value::Mapping(Mapping::new()),
        Value::Mapping(_) => {}
        _ => {
            return Err(ConfigError::key(
                origin,
                "",
                "the top level must be a mapping of keys",
            ));
        }
    }
    Ok(Layer {
        origin,
        text,
        value,
    })
}

/// Split a serde_yaml_ng error into `(path, message)`; its Display is
/// `<path>: <message> at line L column C` (path omitted at the root).
fn split_yaml_error(e: &serde_yaml_ng::Error) -> (String, String) {
    let mut s = e.to_string();
    if let Some(i) = s.rfind(" at line ")
        && s[i + " at line ".len()..]
            .split(' ')
            .next()
            .is_some_and(|n| n.parse::<usize>().is_ok())
    {
        s.truncate(i);
    }
    if let Some((p, m)) = s.split_once(": ")
        && !p.is_empty()
        && !p.contains(' ')
    {
        return (p.to_owned(), m.to_owned());
    }
    (String::new(), s)
}

/// Make serde's wording readable for configuration users.
fn friendly(message: &str) -> String {
    let mut m = message.to_owned();
    for (from, to) in [
        ("expected u8", "expected a non-negative integer"),
        ("expected u16", "expected a port number (0-65535)"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected i32", "expected an integer"),
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping"),
        (
            "data did not match any variant of untagged enum HostList",
            "expected a list of hosts or a comma-separated string",
        ),
        (
            "data did not match any variant of untagged enum InitdbOption",
            "expected a flag or a single `option: value`",
        ),
    ] {
        if let Some(i) = m.find(from) {
            // Only whole words: "expected u16" must not match "expected u160".
            let end = i + from.len();
            if !m[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                m.replace_range(i..end, to);
            }
        }
    }
    m
}

fn deserialize<T: serde::de::DeserializeOwned>(
    merged: &Value,
    sources: &Sources,
) -> Result<T, ConfigError> {
    // Round-trip through text so that errors carry the key path.
    let text = serde_yaml_ng::to_string(merged).map_err(|e| {
        ConfigError::key(sources.source.clone(), "", format!("internal error: {e}"))
    })?;
    serde_yaml_ng::from_str::<T>(&text).map_err(|e| {
        let (path, message) = split_yaml_error(&e);
        let path = if path == "." { String::new() } else { path };
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let key = if path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
            let origin = if path.is_empty() {
                sources.source.clone()
            } else {
                let (origin, _) = sources.locate(&path);
                // The section came from several variables: name none.
                if origin.starts_with("environment (") {
                    "environment".to_owned()
                } else {
                    origin
                }
            };
            return ConfigError::missing(origin, key);
        }
        let (origin, line) = if path.is_empty() {
            (sources.source.clone(), None)
        } else {
            sources.locate(&path)
        };
        ConfigError::Invalid {
            origin,
            line,
            key: path,
            message: friendly(&message),
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::types::{HostList, InitdbOption};
    use std::path::PathBuf;

    /// Modelled on Patroni's own `postgres0.yml`.
    pub(crate) const POSTGRES0: &str = r#"scope: batman
#namespace: /service/
name: postgresql0

restapi:
  listen: 127.0.0.1:8008
  connect_address: 127.0.0.1:8008
#  certfile: /etc/ssl/certs/ssl-cert-snakeoil.pem
  authentication:
    username: username
    password: password

ctl:
  insecure: false

etcd3:
  #Provide host to do the initial discovery of the cluster topology:
  host: 127.0.0.1:2379

bootstrap:
  # this section will be written into Etcd:/<namespace>/<scope>/config after initializing new cluster
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: hot_standby
        hot_standby: "on"
        max_connections: 100
        wal_log_hints: "on"
        archive_mode: "on"
        archive_timeout: 1800s

  # some desired options for 'initdb'
  initdb:  # Note: It needs to be a list (some options need values, others are switches)
  - encoding: UTF8
  - data-checksums

  pg_hba:  # Add following lines to pg_hba.conf after running 'initdb'
  - host replication replicator 127.0.0.1/32 md5
  - host all all 0.0.0.0/0 md5

  # Some additional users users which needs to be created after initializing new cluster
  users:
    admin:
      password: admin%
      options:
        - createrole
        - createdb

postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: data/postgresql0
  pgpass: /tmp/pgpass0
  authentication:
    replication:
      username: replicator
      password: rep-pass
    superuser:
      username: postgres
      password: zalando
    rewind:  # Has no effect on postgres 10 and lower
      username: rewind_user
      password: rewind_password
  parameters:
    unix_socket_directories: '..'  # parent directory of data_dir

tags:
    nofailover: false
    noloadbalance: false
    clonefrom: false
    nosync: false
"#;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    pub(crate) struct TempDir(pub PathBuf);
    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "pgpilot-config-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        pub fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn load_text(text: &str, e: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        let d = TempDir::new("t");
        let p = d.write("conf.yml", text);
        load(Some(&p), &env(e))
    }

    #[test]
    fn patroni_postgres0_parses() {
        let l = load_text(POSTGRES0, &[]).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let c = &l.config;
        assert_eq!(c.scope, "batman");
        assert_eq!(c.name, "postgresql0");
        assert_eq!(c.namespace, "/service");
        assert_eq!(c.restapi.listen, "127.0.0.1:8008");
        assert_eq!(
            c.etcd3.as_ref().unwrap().endpoints(),
            ["http://127.0.0.1:2379"]
        );
        let b = c.bootstrap.as_ref().unwrap();
        assert_eq!(b.dcs["ttl"], serde_json::json!(30));
        assert_eq!(
            b.initdb,
            vec![
                InitdbOption::Valued([("encoding".into(), serde_json::json!("UTF8"))].into()),
                InitdbOption::Flag("data-checksums".into())
            ]
        );
        assert_eq!(b.pg_hba.len(), 2);
        assert_eq!(b.users["admin"].options, ["createrole", "createdb"]);
        let pg = &c.postgresql;
        assert_eq!(pg.data_dir, "data/postgresql0");
        assert_eq!(
            pg.authentication.replication.username.as_deref(),
            Some("replicator")
        );
        assert_eq!(
            pg.authentication.superuser.password.as_deref(),
            Some("zalando")
        );
        assert_eq!(
            pg.authentication
                .rewind
                .as_ref()
                .unwrap()
                .username
                .as_deref(),
            Some("rewind_user")
        );
        assert_eq!(
            pg.parameters["unix_socket_directories"],
            serde_json::json!("..")
        );
        assert!(c.tags.can_failover());
        assert_eq!(c.ctl.as_ref().unwrap().insecure, Some(false));
        assert!(l.source.ends_with("conf.yml"));
    }

    #[test]
    fn log_section_as_patroni_writes_it() {
        // YAML 1.2 reads `0644` as a string, PyYAML as octal: both are 0o644
        // (src/logging/settings.rs); a JSON format is a list with renames.
        let text = format!(
            "{POSTGRES0}\nlog:\n  mode: 0644\n  type: json\n  format:\n    - message\n    \
             - asctime: '@timestamp'\n  static_fields:\n    app: patroni\n  loggers:\n    \
             patroni.postmaster: WARNING\n"
        );
        let l = load_text(&text, &[]).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let log = &l.config.log;
        let mode = log.mode.as_ref().and_then(crate::logging::parse_mode);
        assert_eq!(mode, Some(0o644));
        assert_eq!(log.static_fields.as_ref().unwrap()["app"], "patroni");
        assert_eq!(log.format.as_ref().unwrap()[1]["asctime"], "@timestamp");
        let l = load_text(
            POSTGRES0,
            &[
                ("PATRONI_LOG_MODE", "0600"),
                ("PATRONI_LOG_FILE_SIZE", "1000"),
                ("PATRONI_LOG_DIR", "/var/log/pgpilot"),
            ],
        )
        .unwrap();
        let log = &l.config.log;
        let mode = log.mode.as_ref().and_then(crate::logging::parse_mode);
        assert_eq!(mode, Some(0o600));
        assert_eq!(log.file_size, Some(1000));
        assert_eq!(log.dir.as_deref(), Some("/var/log/pgpilot"));
    }

    #[test]
    fn etcd_is_the_v2_section_and_etcd3_the_v3_one() {
        let text = POSTGRES0.replace("etcd3:", "etcd:");
        let l = load_text(&text, &[]).unwrap();
        assert_eq!(l.config.etcd3, None, "`etcd` is not another spelling");
        assert_eq!(
            l.config.etcd.unwrap().host.as_deref(),
            Some("127.0.0.1:2379")
        );
        // Both: both are read; the v2 one is used, first in Patroni's
        // order (config::validate warns about the other).
        let both = format!("{POSTGRES0}\netcd:\n  host: x:1\n");
        let c = load_text(&both, &[]).unwrap().config;
        assert_eq!(c.dcs_sections(), ["etcd", "etcd3"]);
        assert_eq!(c.etcd.unwrap().host.as_deref(), Some("x:1"));
        assert_eq!(c.etcd3.unwrap().host.as_deref(), Some("127.0.0.1:2379"));
        // PATRONI_ETCD_* lands in `etcd`, PATRONI_ETCD3_* in `etcd3`.
        let c = load_text(
            POSTGRES0,
            &[
                ("PATRONI_ETCD_HOSTS", "10.0.0.1:2379"),
                ("PATRONI_ETCD3_PORT", "2380"),
            ],
        )
        .unwrap()
        .config;
        assert_eq!(c.etcd.unwrap().endpoints(), ["http://10.0.0.1:2379"]);
        assert_eq!(c.etcd3.unwrap().port, Some(2380));
    }

    #[test]
    fn env_overrides() {
        let l = load_text(
            POSTGRES0,
            &[
                ("PATRONI_NAME", "pg-env"),
                ("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8009"),
                ("PATRONI_POSTGRESQL_DATA_DIR", "/var/lib/pg"),
                ("PATRONI_ETCD3_HOSTS", "[10.0.0.1:2379, 10.0.0.2:2379]"),
                ("PATRONI_SUPERUSER_PASSWORD", "s3cret"),
                ("PGPILOT_SCOPE", "robin"),
                ("PATRONI_SCOPE", "ignored"),
                ("PATRONI_POSTGRESQL_PG_CTL_TIMEOUT", "90"),
                ("PATRONI_CTL_INSECURE", "on"),
            ],
        )
        .unwrap();
        let c = &l.config;
        assert_eq!(c.name, "pg-env");
        assert_eq!(c.scope, "robin");
        assert_eq!(c.restapi.listen, "0.0.0.0:8009");
        assert_eq!(c.restapi.connect_address, "127.0.0.1:8008");
        assert_eq!(c.postgresql.data_dir, "/var/lib/pg");
        assert_eq!(c.postgresql.pg_ctl_timeout, 90);
        assert_eq!(c.ctl.as_ref().unwrap().insecure, Some(true));
        assert_eq!(
            c.postgresql.authentication.superuser.password.as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            c.postgresql.authentication.superuser.username.as_deref(),
            Some("postgres")
        );
        let etcd = c.etcd3.as_ref().unwrap();
        assert_eq!(
            etcd.hosts,
            Some(HostList::List(vec![
                "10.0.0.1:2379".into(),
                "10.0.0.2:2379".into()
            ]))
        );
        // The file's `host` is still there: deep merge, not replacement.
        assert_eq!(etcd.host.as_deref(), Some("127.0.0.1:2379"));

        // CSV form, and PATRONI_ETCD_* merging into a file's `etcd:` section.
        let l = load_text(
            &POSTGRES0.replace("etcd3:", "etcd:"),
            &[("PATRONI_ETCD_HOSTS", "10.0.0.1:2379,10.0.0.2")],
        )
        .unwrap();
        // `hosts` is used, the file's `host` not (Patroni's precedence).
        assert_eq!(
            l.config.etcd.unwrap().endpoints(),
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
    }

    #[test]
    fn patroni_configuration_replaces_everything() {
        let e = env(&[
            ("PATRONI_CONFIGURATION", POSTGRES0),
            ("PATRONI_NAME", "ignored"),
            ("PATRONI_SCOPE", "ignored"),
        ]);
        let l = load(None, &e).unwrap();
        assert_eq!(l.config.name, "postgresql0");
        assert_eq!(l.config.scope, "batman");
        assert_eq!(l.source, "PATRONI_CONFIGURATION");
        assert!(l.warnings.is_empty());

        // It also replaces a file given on the command line (with a warning).
        let d = TempDir::new("conf");
        let p = d.write("other.yml", "name: x\n");
        let l = load(Some(&p), &e).unwrap();
        assert_eq!(l.config.name, "postgresql0");
        assert_eq!(l.warnings.len(), 1);

        // PGPILOT_CONFIGURATION wins over PATRONI_CONFIGURATION.
        let mut e2 = e.clone();
        e2.insert(
            "PGPILOT_CONFIGURATION".into(),
            POSTGRES0.replace("name: postgresql0", "name: pgpilot0"),
        );
        assert_eq!(load(None, &e2).unwrap().config.name, "pgpilot0");
    }

    #[test]
    fn environment_alone() {
        let e = env(&[
            ("PATRONI_NAME", "n"),
            ("PATRONI_SCOPE", "s"),
            ("PATRONI_RESTAPI_LISTEN", ":8008"),
            ("PATRONI_RESTAPI_CONNECT_ADDRESS", "h:8008"),
            ("PATRONI_ETCD3_HOST", "h:2379"),
            ("PATRONI_POSTGRESQL_LISTEN", "*:5432"),
            ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "h:5432"),
            ("PATRONI_POSTGRESQL_DATA_DIR", "/d"),
            ("PATRONI_REPLICATION_USERNAME", "rep"),
        ]);
        let l = load(None, &e).unwrap();
        assert_eq!(l.source, "environment");
        assert_eq!(l.config.postgresql.listen, "*:5432");
        assert!(load(None, &env(&[])).is_err());
        // A missing key names the environment as the origin.
        let mut e = e;
        e.remove("PATRONI_POSTGRESQL_DATA_DIR");
        let err = load(None, &e).unwrap_err().to_string();
        assert!(
            err.contains("postgresql.data_dir: missing required key"),
            "{err}"
        );
    }

    #[test]
    fn directory_of_files_is_merged_in_order() {
        let d = TempDir::new("dir");
        let (base, rest) = POSTGRES0.split_at(POSTGRES0.find("postgresql:\n  listen").unwrap());
        d.write("10-base.yml", base);
        d.write("20-postgresql.yaml", rest);
        d.write(
            "30-override.yml",
            "name: node-b\ntags:\n  nofailover: true\n",
        );
        d.write("ignored.txt", "name: nope\n");
        let l = load(Some(&d.0), &env(&[])).unwrap();
        assert_eq!(l.config.name, "node-b");
        assert_eq!(l.config.scope, "batman");
        assert_eq!(l.config.postgresql.data_dir, "data/postgresql0");
        assert!(l.config.tags.nofailover);
        // The merge is deep: other tags from the earlier file survive.
        assert!(!l.config.tags.noloadbalance);
        assert_eq!(l.source, d.0.display().to_string());
        let empty = TempDir::new("empty");
        assert!(load(Some(&empty.0), &env(&[])).is_err());
    }

    #[test]
    fn missing_required_key_names_key_and_file() {
        let text = POSTGRES0.replace(
            "    replication:\n      username: replicator\n      password: rep-pass\n",
            "",
        );
        let d = TempDir::new("missing");
        let p = d.write("pgpilot.yml", &text);
        let e = load(Some(&p), &env(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: postgresql.authentication.replication: missing required key",
                p.display()
            )
        );
        let e = load_text(&POSTGRES0.replace("scope: batman\n", ""), &[]).unwrap_err();
        assert_eq!(e.key_path(), Some("scope"));
        assert!(
            e.to_string()
                .ends_with("conf.yml: scope: missing required key")
        );
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let text = POSTGRES0.replace("  data_dir: data/postgresql0", "  data_dir: [a]");
        let line = text
            .lines()
            .position(|l| l.contains("data_dir: [a]"))
            .unwrap()
            + 1;
        let e = load_text(&text, &[]).unwrap_err();
        assert_eq!(e.key_path(), Some("postgresql.data_dir"));
        assert_eq!(e.line(), Some(line));
        let s = e.to_string();
        assert!(
            s.ends_with(&format!(
                "conf.yml line {line}: postgresql.data_dir: invalid type: sequence, expected a string"
            )),
            "{s}"
        );

        let text = POSTGRES0.replace("  pgpass: /tmp/pgpass0", "  pg_ctl_timeout: abc");
        let e = load_text(&text, &[]).unwrap_err();
        assert_eq!(e.key_path(), Some("postgresql.pg_ctl_timeout"));
        assert!(e.line().is_some());
        assert!(
            e.to_string()
                .contains("invalid type: string \"abc\", expected a non-negative integer"),
            "{e}"
        );

        // Blame the environment when the bad value came from there.
        let e = load_text(POSTGRES0, &[("PATRONI_POSTGRESQL_PG_CTL_TIMEOUT", "soon")]).unwrap_err();
        assert_eq!(
            e.origin(),
            "environment (PATRONI_POSTGRESQL_PG_CTL_TIMEOUT)"
        );

        // YAML syntax errors carry the line.
        let e = load_text("name: a\nscope: [b\n", &[]).unwrap_err();
        assert!(e.line().is_some(), "{e}");
        let e = load_text("- a\n- b\n", &[]).unwrap_err();
        assert!(e.to_string().contains("top level"), "{e}");
    }

    #[test]
    fn lines_in_flow_mappings_and_after_block_scalars() {
        let base = POSTGRES0.lines().count();
        let text = format!(
            "{POSTGRES0}watchdog: {{mode: automatic,\n  device: /dev/null, safety_margin: abc}}\n"
        );
        let e = load_text(&text, &[]).unwrap_err();
        assert_eq!(e.key_path(), Some("watchdog.safety_margin"), "{e}");
        assert_eq!(e.line(), Some(base + 2), "{e}");
        // Text in a block scalar is not a key, however it is indented.
        let text = format!(
            "{POSTGRES0}watchdog:\n  device: |\n    safety_margin: 1\n  safety_margin: abc\n"
        );
        let e = load_text(&text, &[]).unwrap_err();
        assert_eq!(e.key_path(), Some("watchdog.safety_margin"), "{e}");
        assert_eq!(e.line(), Some(base + 4), "{e}");
    }

    #[test]
    fn unknown_keys_are_warnings() {
        let text = POSTGRES0.replace(
            "  pgpass: /tmp/pgpass0",
            "  pgpass: /tmp/pgpass0\n  data_dri: typo\n  wal_e:\n    command: x",
        ) + "loop_wait: 5\n";
        let l = load_text(&text, &[("PATRONI_RESTAPI_FOO", "1")]).unwrap();
        let w = l.warnings.join("\n");
        assert!(w.contains("postgresql.data_dri: unknown key"), "{w}");
        assert!(w.contains("conf.yml line"), "{w}");
        assert!(w.contains("postgresql.wal_e: unknown key"), "{w}");
        assert!(
            w.contains("loop_wait: cluster-wide setting, ignored"),
            "{w}"
        );
        assert!(
            w.contains("environment (PATRONI_RESTAPI_FOO): restapi.foo: unknown key"),
            "{w}"
        );
        // A replica method section named in create_replica_methods is known.
        let text = text.replace(
            "  pgpass: /tmp/pgpass0",
            "  pgpass: /tmp/pgpass0\n  create_replica_methods: [wal_e, basebackup]",
        );
        let l = load_text(&text, &[]).unwrap();
        assert!(!l.warnings.join("\n").contains("wal_e"), "{:?}", l.warnings);
    }

    #[test]
    fn yaml11_booleans_and_numbers_as_strings() {
        let text = POSTGRES0
            .replace("nofailover: false", "nofailover: yes")
            .replace("password: rep-pass", "password: 12345");
        let c = load_text(&text, &[]).unwrap().config;
        assert!(c.tags.nofailover);
        assert_eq!(
            c.postgresql.authentication.replication.password.as_deref(),
            Some("12345")
        );
    }

    #[test]
    fn yaml_error_split() {
        let e = serde_yaml_ng::from_str::<Config>("name: [1]").unwrap_err();
        let (p, m) = split_yaml_error(&e);
        assert_eq!(p, "name");
        assert!(m.starts_with("invalid type"), "{m}");
    }
}
