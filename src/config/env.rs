//! `PATRONI_*` / `PGPILOT_*` environment variables (docs/configuration.md §8) turned
//! into a YAML tree that is deep-merged over the file.
//!
//! Both prefixes are accepted; when both spell the same variable the
//! `PGPILOT_` one wins. Mapping:
//! * `NAME`, `NAMESPACE`, `SCOPE`, `THREAD_POOL_SIZE`, `THREAD_STACK_SIZE`: top level;
//! * `LOGLEVEL`, `LOGFORMAT`, `LOG_DATEFMT`: old aliases of `log.level/format/dateformat`;
//! * `RESTAPI_USERNAME/PASSWORD`, `CTL_USERNAME/PASSWORD`: `<section>.authentication.*`;
//! * `{SUPERUSER,REPLICATION,REWIND}_<param>`: `postgresql.authentication.<user>.<param>`;
//! * `POSTGRESQL_BIN_<binary>`: `postgresql.bin_name.<binary>`;
//! * `CITUS_GROUP`, `CITUS_DATABASE`: `citus.*`;
//! * `<SECTION>_<REST>` for the sections restapi, postgresql (also the seed's
//!   `POSTGRES`), etcd, etcd3, zookeeper, exhibitor, consul, bootstrap, log, ctl, watchdog:
//!   `<section>.<rest lower-cased>`;
//! * `<user>_PASSWORD`, `<user>_OPTIONS`: `bootstrap.users.<user>`.
//!
//! Values are typed by the key they land on (ints, bools, lists given as
//! `[a, b]` or `a,b`, dicts given as `{k: v}` or `k: v`). Empty values are
//! ignored, as Patroni does.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::schema::{BINARIES, Kind, kind_of, parse_bool};
use super::tree;

pub(crate) const PREFIXES: [&str; 2] = ["PATRONI_", "PGPILOT_"];

const SECTIONS: &[(&str, &str)] = &[
    ("RESTAPI", "restapi"),
    ("POSTGRESQL", "postgresql"),
    ("POSTGRES", "postgresql"),
    ("ETCD", "etcd"),
    ("ETCD3", "etcd3"),
    ("ZOOKEEPER", "zookeeper"),
    ("EXHIBITOR", "exhibitor"),
    ("CONSUL", "consul"),
    ("BOOTSTRAP", "bootstrap"),
    ("LOG", "log"),
    ("CTL", "ctl"),
    ("WATCHDOG", "watchdog"),
];

const PG_USERS: &[&str] = &["SUPERUSER", "REPLICATION", "REWIND"];
const PG_AUTH_PARAMS: &[&str] = &[
    "USERNAME",
    "PASSWORD",
    "SSLMODE",
    "SSLCERT",
    "SSLKEY",
    "SSLPASSWORD",
    "SSLROOTCERT",
    "SSLCRL",
    "SSLCRLDIR",
    "GSSENCMODE",
    "CHANNEL_BINDING",
    "SSLNEGOTIATION",
];

/// The environment's contribution to the configuration.
#[derive(Debug, Default)]
pub(crate) struct EnvLayer {
    pub value: Value,
    /// `(key path, variable name)` for every variable used.
    pub vars: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

impl EnvLayer {
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The variable that set `key`, or a key below/above it.
    pub fn var_for(&self, key: &[String]) -> Option<&str> {
        let key = key.join(".");
        self.vars
            .iter()
            .rev()
            .find(|(p, _)| {
                p == &key || key.starts_with(&format!("{p}.")) || p.starts_with(&format!("{key}."))
            })
            .map(|(_, v)| v.as_str())
    }
}

/// `PGPILOT_CONFIGURATION` or `PATRONI_CONFIGURATION`: `(variable, text)`.
pub(crate) fn configuration_var(env: &BTreeMap<String, String>) -> Option<(String, String)> {
    PREFIXES.iter().rev().find_map(|p| {
        let name = format!("{p}CONFIGURATION");
        env.get(&name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v.clone()))
    })
}

/// Build the tree from the variables in `env`.
pub(crate) fn env_layer(env: &BTreeMap<String, String>) -> EnvLayer {
    // suffix -> (variable, value); PGPILOT_ is applied last so it wins.
    let mut vars: BTreeMap<String, (String, String)> = BTreeMap::new();
    for prefix in PREFIXES {
        for (name, value) in env {
            if let Some(suffix) = name.strip_prefix(prefix)
                && !suffix.is_empty()
                && suffix != "CONFIGURATION"
                && !value.is_empty()
            {
                vars.insert(suffix.to_owned(), (name.clone(), value.clone()));
            }
        }
    }
    let mut layer = EnvLayer {
        value: Value::Mapping(Default::default()),
        ..Default::default()
    };
    for (suffix, (var, raw)) in &vars {
        let Some(path) = map_suffix(suffix) else {
            layer.warnings.push(format!(
                "environment: {var}: not a recognised configuration variable, ignored"
            ));
            continue;
        };
        let value = match typed(&path, raw) {
            Ok(v) => v,
            Err(msg) => {
                layer
                    .warnings
                    .push(format!("environment: {var}: {msg}; using it as a string"));
                Value::String(raw.clone())
            }
        };
        tree::insert(&mut layer.value, &path, value);
        layer.vars.push((path.join("."), var.clone()));
    }
    layer
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Where the variable `PATRONI_<suffix>` goes, `None` if nowhere.
fn map_suffix(suffix: &str) -> Option<Vec<String>> {
    let lower = suffix.to_ascii_lowercase();
    match suffix {
        "NAME" | "NAMESPACE" | "SCOPE" | "THREAD_POOL_SIZE" | "THREAD_STACK_SIZE" => {
            return Some(vec![lower]);
        }
        "LOGLEVEL" => return Some(strs(&["log", "level"])),
        "LOGFORMAT" => return Some(strs(&["log", "format"])),
        "LOG_DATEFMT" => return Some(strs(&["log", "dateformat"])),
        "CITUS_GROUP" => return Some(strs(&["citus", "group"])),
        "CITUS_DATABASE" => return Some(strs(&["citus", "database"])),
        _ => {}
    }
    for section in ["RESTAPI", "CTL"] {
        for param in ["USERNAME", "PASSWORD"] {
            if suffix == format!("{section}_{param}") {
                return Some(vec![
                    section.to_ascii_lowercase(),
                    "authentication".into(),
                    param.to_ascii_lowercase(),
                ]);
            }
        }
    }
    if let Some((user, param)) = suffix.split_once('_')
        && PG_USERS.contains(&user)
        && PG_AUTH_PARAMS.contains(&param)
    {
        return Some(vec![
            "postgresql".into(),
            "authentication".into(),
            user.to_ascii_lowercase(),
            param.to_ascii_lowercase(),
        ]);
    }
    if let Some(bin) = suffix
        .strip_prefix("POSTGRESQL_BIN_")
        .map(str::to_ascii_lowercase)
        && BINARIES.contains(&bin.as_str())
    {
        return Some(vec!["postgresql".into(), "bin_name".into(), bin]);
    }
    if let Some((section, rest)) = suffix.split_once('_')
        && !rest.is_empty()
        && let Some((_, name)) = SECTIONS.iter().find(|(s, _)| *s == section)
    {
        return Some(vec![(*name).to_owned(), rest.to_ascii_lowercase()]);
    }
    // PATRONI_<username>_PASSWORD / _OPTIONS: users created at bootstrap.
    for param in ["PASSWORD", "OPTIONS"] {
        if let Some(user) = suffix.strip_suffix(&format!("_{param}"))
            && !user.is_empty()
        {
            return Some(vec![
                "bootstrap".into(),
                "users".into(),
                user.to_owned(),
                param.to_ascii_lowercase(),
            ]);
        }
    }
    None
}

/// A `PATRONI_*` value that does not have its key's type (the variable is
/// then used as a string, with a warning quoting this).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvValueError {
    #[error("expected an integer, got {0:?}")]
    NotInteger(String),
    #[error("expected a boolean, got {0:?}")]
    NotBoolean(String),
    #[error("expected a list, got {0:?}")]
    NotList(String),
    #[error("cannot parse {raw:?} as a list: {error}")]
    ListSyntax {
        raw: String,
        #[source]
        error: serde_yaml_ng::Error,
    },
    #[error("expected a mapping, got {0:?}")]
    NotMapping(String),
    #[error("cannot parse {raw:?} as a mapping: {error}")]
    MappingSyntax {
        raw: String,
        #[source]
        error: serde_yaml_ng::Error,
    },
}

/// Type `raw` for the key at `path`.
fn typed(path: &[String], raw: &str) -> Result<Value, EnvValueError> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    if let ["bootstrap", "users", _, "options"] = p.as_slice() {
        return parse_list(raw);
    }
    match kind_of(&p) {
        Some(Kind::Int) => raw
            .trim()
            .parse::<i64>()
            .map(|n| Value::Number(n.into()))
            .map_err(|_| EnvValueError::NotInteger(raw.to_owned())),
        Some(Kind::Bool) => parse_bool(raw)
            .map(Value::Bool)
            .ok_or_else(|| EnvValueError::NotBoolean(raw.to_owned())),
        Some(Kind::List) => parse_list(raw),
        Some(Kind::Dict | Kind::Map | Kind::Open) => parse_dict(raw),
        _ => Ok(Value::String(raw.to_owned())),
    }
}

/// A list given as YAML (`[a, b]`, `- a`) or bare `a,b`.
pub(crate) fn parse_list(raw: &str) -> Result<Value, EnvValueError> {
    let t = raw.trim();
    let text = if t.starts_with('-') || t.contains('[') {
        t.to_owned()
    } else {
        format!("[{t}]")
    };
    match serde_yaml_ng::from_str::<Value>(&text) {
        Ok(v @ Value::Sequence(_)) => Ok(v),
        Ok(_) => Err(EnvValueError::NotList(raw.to_owned())),
        Err(error) => Err(EnvValueError::ListSyntax {
            raw: raw.to_owned(),
            error,
        }),
    }
}

/// A dict given as YAML `{k: v}` or bare `k: v, k2: v2`.
pub(crate) fn parse_dict(raw: &str) -> Result<Value, EnvValueError> {
    let t = raw.trim();
    let text = if t.starts_with('{') {
        t.to_owned()
    } else {
        format!("{{{t}}}")
    };
    match serde_yaml_ng::from_str::<Value>(&text) {
        Ok(v @ Value::Mapping(_)) => Ok(v),
        Ok(_) => Err(EnvValueError::NotMapping(raw.to_owned())),
        Err(error) => Err(EnvValueError::MappingSyntax {
            raw: raw.to_owned(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn y(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn maps_patroni_names() {
        let l = env_layer(&env(&[
            ("PATRONI_NAME", "n1"),
            ("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008"),
            ("PATRONI_RESTAPI_USERNAME", "u"),
            ("PATRONI_CTL_PASSWORD", "p"),
            ("PATRONI_POSTGRESQL_DATA_DIR", "/d"),
            ("PATRONI_POSTGRESQL_BIN_PG_CTL", "pg_ctl15"),
            ("PATRONI_POSTGRESQL_BIN_DIR", "/usr/bin"),
            ("PATRONI_SUPERUSER_PASSWORD", "s"),
            ("PATRONI_REPLICATION_SSLMODE", "require"),
            ("PATRONI_ETCD3_HOSTS", "a:1,b:2"),
            ("PATRONI_ETCD_USE_PROXIES", "yes"),
            ("PATRONI_CONSUL_PORT", "8500"),
            ("PATRONI_LOG_LOGGERS", "etcd: DEBUG"),
            ("PATRONI_LOGLEVEL", "DEBUG"),
            ("PATRONI_admin_PASSWORD", "adm"),
            ("PATRONI_admin_OPTIONS", "createrole,createdb"),
            ("PATRONI_WHATEVER", "x"),
            ("PATRONI_EMPTY_VALUE", ""),
            ("OTHER", "x"),
        ]));
        let want = y(r#"
name: n1
restapi: {listen: "0.0.0.0:8008", authentication: {username: u}}
ctl: {authentication: {password: p}}
postgresql:
  data_dir: /d
  bin_dir: /usr/bin
  bin_name: {pg_ctl: pg_ctl15}
  authentication: {superuser: {password: s}, replication: {sslmode: require}}
etcd3: {hosts: ["a:1", "b:2"]}
etcd: {use_proxies: true}
consul: {port: 8500}
log: {loggers: {etcd: DEBUG}, level: DEBUG}
bootstrap: {users: {admin: {password: adm, options: [createrole, createdb]}}}
"#);
        let got = l.value.clone();
        // Compared as JSON: order-independently.
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::to_value(&want).unwrap()
        );
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(l.warnings[0].contains("PATRONI_WHATEVER"));
        assert_eq!(
            l.var_for(&tree::split_path("postgresql.data_dir")),
            Some("PATRONI_POSTGRESQL_DATA_DIR")
        );
    }

    #[test]
    fn pgpilot_prefix_wins() {
        let l = env_layer(&env(&[
            ("PATRONI_SCOPE", "a"),
            ("PGPILOT_SCOPE", "b"),
            ("PGPILOT_NAMESPACE", "/x"),
        ]));
        assert_eq!(l.value["scope"], y("b"));
        assert_eq!(l.value["namespace"], y("/x"));
        assert_eq!(l.var_for(&["scope".into()]), Some("PGPILOT_SCOPE"));
    }

    #[test]
    fn lists_and_bad_values() {
        assert_eq!(parse_list("[a, b]").unwrap(), y("[a, b]"));
        assert_eq!(parse_list("a,b").unwrap(), y("[a, b]"));
        assert_eq!(
            parse_list("'h1:2181','h2:2181'").unwrap(),
            y("['h1:2181', 'h2:2181']")
        );
        let l = env_layer(&env(&[("PATRONI_RESTAPI_REQUEST_QUEUE_SIZE", "lots")]));
        assert_eq!(l.value["restapi"]["request_queue_size"], y("lots"));
        assert_eq!(l.warnings.len(), 1);
    }

    #[test]
    fn configuration_variable() {
        assert_eq!(configuration_var(&env(&[("PATRONI_NAME", "x")])), None);
        let e = env(&[
            ("PATRONI_CONFIGURATION", "a: 1"),
            ("PGPILOT_CONFIGURATION", "b: 2"),
        ]);
        assert_eq!(
            configuration_var(&e),
            Some(("PGPILOT_CONFIGURATION".into(), "b: 2".into()))
        );
    }
}
