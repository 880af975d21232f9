//! The `log` section read into what the logger needs (docs/configuration.md,
//! "log"): Patroni's defaults, its level names, its logger names mapped to
//! pgpilot's module paths, and its lenient reading of `format` (a value of
//! the wrong type is a warning and the default, as in Patroni's
//! `PatroniLogger._get_formatter`).

use std::path::PathBuf;

use serde_json::Value;
use tracing_subscriber::filter::LevelFilter;

use super::pyformat::PyFormat;
use super::rotate::Rotation;
use crate::config::Log;

/// Patroni's `DEFAULT_FORMAT`.
pub const DEFAULT_FORMAT: &str = "%(asctime)s %(levelname)s: %(message)s";
/// Patroni's default `file_size` (bytes).
pub const DEFAULT_FILE_SIZE: u64 = 25_000_000;
/// Patroni's default `file_num`.
pub const DEFAULT_FILE_NUM: u64 = 4;

/// Libraries quieter than the level by default: their INFO and DEBUG lines
/// are about connections, not about the cluster. `log.loggers` can name
/// them to change that.
const QUIET_LIBRARIES: [&str; 4] = ["tokio_postgres", "h2", "tower", "hyper"];

/// `log.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// The `log` section, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub kind: LogFormat,
    pub level: LevelFilter,
    /// `log.loggers` as (target, level), in pgpilot's target names.
    pub loggers: Vec<(String, LevelFilter)>,
    /// The plain line.
    pub format: PyFormat,
    /// The JSON line's fields as (record attribute, key).
    pub json_fields: Vec<(String, String)>,
    pub dateformat: Option<String>,
    pub static_fields: Vec<(String, Value)>,
    pub dir: Option<PathBuf>,
    pub rotation: Rotation,
}

impl Settings {
    /// Read `log`; `kind` (the command line's `--log-format`) wins over
    /// `log.type`. The warnings are for the log once it is set up.
    pub fn from_config(log: &Log, kind: Option<LogFormat>) -> (Settings, Vec<String>) {
        let mut warnings = Vec::new();
        let kind = kind.unwrap_or(match log.kind.as_deref() {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Plain,
        });
        let level = log
            .level
            .as_deref()
            .and_then(|l| parse_level(&Value::String(l.to_owned())))
            .unwrap_or(LevelFilter::INFO);
        let mut loggers = Vec::new();
        for (name, level) in log.loggers.iter().flatten() {
            match parse_level(level) {
                Some(l) => loggers.extend(targets_for(name).into_iter().map(|t| (t, l))),
                None => warnings.push(format!("log.loggers.{name}: unknown level {level}")),
            }
        }
        let format_value = log.format.clone();
        let (format, json_fields) = match kind {
            LogFormat::Plain => (
                plain_format(format_value.as_ref(), &mut warnings),
                Vec::new(),
            ),
            LogFormat::Json => (
                PyFormat::parse(DEFAULT_FORMAT),
                json_fields(format_value.as_ref(), &mut warnings),
            ),
        };
        let dateformat = log.dateformat.clone().filter(|d| !d.is_empty());
        let static_fields = log
            .static_fields
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mode = log.mode.as_ref().and_then(|m| {
            let parsed = parse_mode(m);
            if parsed.is_none() {
                warnings.push(format!(
                    "log.mode: {m} is not a file mode; using the umask's"
                ));
            }
            parsed
        });
        let settings = Settings {
            kind,
            level,
            loggers,
            format,
            json_fields,
            dateformat,
            static_fields,
            dir: log.dir.as_ref().map(PathBuf::from),
            rotation: Rotation {
                max_bytes: log.file_size.unwrap_or(DEFAULT_FILE_SIZE),
                backups: log.file_num.unwrap_or(DEFAULT_FILE_NUM),
                mode,
            },
        };
        (settings, warnings)
    }

    /// The filter, in `RUST_LOG`'s syntax: the level, the quiet libraries,
    /// then `log.loggers` (a library named there is not quieted).
    pub fn directives(&self) -> String {
        let mut d = vec![level_name(self.level).to_owned()];
        for lib in QUIET_LIBRARIES {
            if !self.loggers.iter().any(|(t, _)| t == lib) {
                d.push(format!("{lib}=warn"));
            }
        }
        for (t, l) in &self.loggers {
            d.push(format!("{t}={}", level_name(*l)));
        }
        d.join(",")
    }
}

fn level_name(l: LevelFilter) -> &'static str {
    match l {
        LevelFilter::OFF => "off",
        LevelFilter::ERROR => "error",
        LevelFilter::WARN => "warn",
        LevelFilter::INFO => "info",
        LevelFilter::DEBUG => "debug",
        _ => "trace",
    }
}

/// A Python logging level: a name (`DEBUG`, `INFO`, `WARNING`/`WARN`,
/// `ERROR`, `CRITICAL`/`FATAL`, `NOTSET`; any case; pgpilot adds `TRACE`)
/// or a number (10, 20, 30, 40, 50; between two levels, the lower one).
/// CRITICAL is tracing's ERROR: tracing has no level above it.
pub fn parse_level(v: &Value) -> Option<LevelFilter> {
    let n = match v {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => match s.trim().to_ascii_uppercase().as_str() {
            "TRACE" => return Some(LevelFilter::TRACE),
            "NOTSET" => 0,
            "DEBUG" => 10,
            "INFO" => 20,
            "WARNING" | "WARN" => 30,
            "ERROR" => 40,
            "CRITICAL" | "FATAL" => 50,
            other => other.parse().ok()?,
        },
        _ => return None,
    };
    Some(match n {
        i64::MIN..=9 => LevelFilter::TRACE,
        10..=19 => LevelFilter::DEBUG,
        20..=29 => LevelFilter::INFO,
        30..=39 => LevelFilter::WARN,
        _ => LevelFilter::ERROR,
    })
}

/// `log.mode`: a number as it stands (YAML 1.1's `0644` reaches here as
/// 420 from PyYAML-minded tools, or as the string `"0644"` from a YAML 1.2
/// reader), a string as C's `strtol(s, NULL, 0)`: `0644` and `0o644` octal,
/// `0x1a4` hexadecimal, else decimal.
pub fn parse_mode(v: &Value) -> Option<u32> {
    let mode = match v {
        Value::Number(n) => u32::try_from(n.as_u64()?).ok()?,
        Value::String(s) => {
            let s = s.trim();
            if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                u32::from_str_radix(h, 16).ok()?
            } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
                u32::from_str_radix(o, 8).ok()?
            } else if s.len() > 1 && s.starts_with('0') {
                u32::from_str_radix(&s[1..], 8).ok()?
            } else {
                s.parse().ok()?
            }
        }
        _ => return None,
    };
    (mode <= 0o7777).then_some(mode)
}

/// pgpilot's targets for a `log.loggers` name. A Rust path (`pgpilot::ha`)
/// is taken as it is; Patroni's module names map to the pgpilot modules
/// doing that work; a library's dotted name becomes a path.
pub fn targets_for(name: &str) -> Vec<String> {
    if name.contains("::") {
        return vec![name.to_owned()];
    }
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    let Some(rest) = name
        .strip_prefix("patroni.")
        .or((name == "patroni").then_some(""))
    else {
        return match name {
            "urllib3" | "urllib3.connectionpool" => owned(&["reqwest", "hyper_util", "hyper"]),
            "psycopg" | "psycopg2" => owned(&["tokio_postgres"]),
            other => vec![other.replace('.', "::")],
        };
    };
    let first = rest.split('.').next().unwrap_or("");
    match first {
        "" => owned(&["pgpilot"]),
        "ha" => owned(&["pgpilot::ha", "pgpilot::actors::leader_elector"]),
        "postgresql" | "postmaster" => owned(&[
            "pgpilot::postgres",
            "pgpilot::actors::postgres_supervisor",
            "pgpilot::actors::postgres_jobs",
        ]),
        "dcs" => match rest {
            "dcs" => owned(&["pgpilot::dcs", "pgpilot::actors::dcs_watcher"]),
            // Patroni's `patroni.dcs.etcd` is the v2 module and the base
            // its v3 module builds on.
            "dcs.etcd" => owned(&["pgpilot::dcs::etcd", "pgpilot::dcs::etcd2"]),
            "dcs.etcd3" => owned(&["pgpilot::dcs::etcd"]),
            other => vec![format!("pgpilot::{}", other.replace('.', "::"))],
        },
        "api" | "restapi" => owned(&["pgpilot::api"]),
        "config" => owned(&["pgpilot::config", "pgpilot::actors::config_manager"]),
        "log" => owned(&["pgpilot::logging"]),
        _ => vec![format!("pgpilot::{}", rest.replace('.', "::"))],
    }
}

fn plain_format(v: Option<&Value>, warnings: &mut Vec<String>) -> PyFormat {
    match v {
        None => PyFormat::parse(DEFAULT_FORMAT),
        Some(Value::String(s)) => PyFormat::parse(s),
        Some(other) => {
            warnings.push(format!(
                "Expected log format to be a string when log type is plain, but got \"{}\"",
                type_name(other)
            ));
            PyFormat::parse(DEFAULT_FORMAT)
        }
    }
}

/// The JSON fields as Patroni's `_get_json_formatter` reads `format`: a
/// string's `%(field)s` names, or a list of names and `{field: key}`
/// renames.
fn json_fields(v: Option<&Value>, warnings: &mut Vec<String>) -> Vec<(String, String)> {
    let same = |f: &str| (f.to_owned(), f.to_owned());
    let default = || {
        PyFormat::parse(DEFAULT_FORMAT)
            .fields()
            .into_iter()
            .map(same)
            .collect()
    };
    match v {
        None => default(),
        Some(Value::String(s)) => PyFormat::parse(s).fields().into_iter().map(same).collect(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    Value::String(f) => out.push(same(f)),
                    Value::Object(m) => {
                        for (field, key) in m {
                            match key {
                                Value::String(k) => out.push((field.clone(), k.clone())),
                                other => warnings.push(format!(
                                    "Expected renamed log field to be a string, but got \"{}\"",
                                    type_name(other)
                                )),
                            }
                        }
                    }
                    other => warnings.push(format!(
                        "Expected each item of log format to be a string or dictionary, but got \"{}\"",
                        type_name(other)
                    )),
                }
            }
            if out.is_empty() { default() } else { out }
        }
        Some(other) => {
            warnings.push(format!(
                "Expected log format to be a string or a list, but got \"{}\"",
                type_name(other)
            ));
            default()
        }
    }
}

/// Python's type names, for Patroni's warnings.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log(v: Value) -> Log {
        serde_json::from_value(v).expect("log section")
    }

    #[test]
    fn patroni_defaults() {
        let (s, w) = Settings::from_config(&Log::default(), None);
        assert!(w.is_empty());
        assert_eq!(s.kind, LogFormat::Plain);
        assert_eq!(s.level, LevelFilter::INFO);
        assert_eq!(s.format, PyFormat::parse(DEFAULT_FORMAT));
        assert_eq!(s.rotation.max_bytes, 25_000_000);
        assert_eq!(s.rotation.backups, 4);
        assert_eq!(s.rotation.mode, None);
        assert_eq!(s.dateformat, None);
        assert_eq!(
            s.directives(),
            "info,tokio_postgres=warn,h2=warn,tower=warn,hyper=warn"
        );
    }

    #[test]
    fn levels_as_python_names_them() {
        let l = |v: Value| parse_level(&v);
        assert_eq!(l(json!("DEBUG")), Some(LevelFilter::DEBUG));
        assert_eq!(l(json!("warning")), Some(LevelFilter::WARN));
        assert_eq!(l(json!("CRITICAL")), Some(LevelFilter::ERROR));
        assert_eq!(l(json!(30)), Some(LevelFilter::WARN));
        assert_eq!(l(json!("15")), Some(LevelFilter::DEBUG));
        assert_eq!(l(json!("NOTSET")), Some(LevelFilter::TRACE));
        assert_eq!(l(json!("LOUD")), None);
        assert_eq!(l(json!(true)), None);
    }

    #[test]
    fn loggers_map_patroni_names_and_take_pgpilot_paths() {
        let (s, w) = Settings::from_config(
            &log(json!({"level": "WARNING", "loggers": {
                "patroni.postmaster": "WARNING",
                "patroni.dcs.etcd3": "DEBUG",
                "urllib3": "DEBUG",
                "pgpilot::api::server": "ERROR",
                "patroni.ha": "BAD",
            }})),
            None,
        );
        assert_eq!(w.len(), 1, "{w:?}");
        let d = s.directives();
        assert!(
            d.starts_with("warn,tokio_postgres=warn,h2=warn,tower=warn,"),
            "{d}"
        );
        assert!(!d.contains("hyper=warn"), "urllib3 names hyper: {d}");
        for want in [
            "pgpilot::dcs::etcd=debug",
            "pgpilot::postgres=warn",
            "pgpilot::actors::postgres_supervisor=warn",
            "hyper=debug",
            "reqwest=debug",
            "pgpilot::api::server=error",
        ] {
            assert!(d.split(',').any(|x| x == want), "{want} in {d}");
        }
        assert_eq!(targets_for("patroni"), ["pgpilot"]);
        assert_eq!(
            targets_for("patroni.watchdog.base"),
            ["pgpilot::watchdog::base"]
        );
        assert_eq!(targets_for("some.lib"), ["some::lib"]);
    }

    #[test]
    fn mode_as_strtol_base_zero() {
        assert_eq!(parse_mode(&json!("0644")), Some(0o644));
        assert_eq!(parse_mode(&json!("0o600")), Some(0o600));
        assert_eq!(parse_mode(&json!(420)), Some(0o644));
        assert_eq!(parse_mode(&json!("420")), Some(0o644));
        assert_eq!(parse_mode(&json!("0x1a4")), Some(0o644));
        assert_eq!(parse_mode(&json!("0999")), None);
        assert_eq!(parse_mode(&json!("rw")), None);
        let (s, w) = Settings::from_config(&log(json!({"mode": "0640"})), None);
        assert!(w.is_empty());
        assert_eq!(s.rotation.mode, Some(0o640));
    }

    #[test]
    fn json_format_as_a_list_with_renames() {
        let (s, w) = Settings::from_config(
            &log(json!({"type": "json", "format": [
                "message", {"asctime": "@timestamp", "levelname": "level"}, 7
            ], "static_fields": {"app": "patroni"}})),
            None,
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            s.json_fields,
            [
                ("message".to_owned(), "message".to_owned()),
                ("asctime".to_owned(), "@timestamp".to_owned()),
                ("levelname".to_owned(), "level".to_owned()),
            ]
        );
        assert_eq!(s.static_fields, [("app".to_owned(), json!("patroni"))]);
        let (s, _) = Settings::from_config(
            &log(json!({"type": "json", "format": "%(levelname)s %(name)s"})),
            None,
        );
        assert_eq!(s.json_fields.len(), 2);
        assert_eq!(s.json_fields[1].1, "name");
    }

    #[test]
    fn wrong_format_types_warn_and_use_the_default() {
        let (s, w) = Settings::from_config(&log(json!({"format": ["message"]})), None);
        assert_eq!(s.format, PyFormat::parse(DEFAULT_FORMAT));
        assert_eq!(
            w,
            ["Expected log format to be a string when log type is plain, but got \"list\""]
        );
        let (s, _) = Settings::from_config(&log(json!({"type": "json"})), Some(LogFormat::Plain));
        assert_eq!(s.kind, LogFormat::Plain, "the command line wins");
        let (s, _) = Settings::from_config(&log(json!({"dateformat": ""})), None);
        assert_eq!(s.dateformat, None);
    }
}
