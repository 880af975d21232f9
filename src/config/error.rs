//! Configuration errors. Every error says where the problem is: the origin
//! (a file, `environment (PATRONI_X)`, `PATRONI_CONFIGURATION`, ...), the
//! key path (`postgresql.data_dir`) and the line when it is known.

use std::fmt::Write as _;

/// Origin used for values that did not come from a file or the environment,
/// e.g. a [`Config`](super::Config) built in code.
pub const ORIGIN_CONFIG: &str = "configuration";
/// Origin used by [`DynamicConfig::from_json`](super::DynamicConfig::from_json).
pub const ORIGIN_DYNAMIC: &str = "dynamic configuration";

/// A timing (`ttl`, `loop_wait`, `retry_timeout`, the watchdog's
/// `safety_margin`) that cannot work, whichever layer set it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimingError {
    /// The watchdog timeout, `ttl - safety_margin` (or `ttl / 2` when the
    /// margin is `-1`), is under `loop_wait` or one second: the watchdog is
    /// kept alive once per cycle.
    #[error(
        "watchdog timeout {} s must be at least loop_wait ({loop_wait} s) and 1 s",
        watchdog_formula(*.ttl, *.margin, *.timeout)
    )]
    WatchdogTimeout {
        ttl: i64,
        margin: i64,
        timeout: i64,
        loop_wait: f64,
    },
    /// `ttl - margin` does not exceed one cycle: a healthy leader would be
    /// fenced between two renewals.
    #[error(
        "impossible timing: ttl ({ttl}) minus the fencing margin ({margin}) must exceed \
         loop_wait ({loop_wait}) + retry_timeout ({retry_timeout}); a healthy leader would be fenced between two renewals"
    )]
    NoFenceRoom {
        ttl: f64,
        margin: f64,
        loop_wait: f64,
        retry_timeout: f64,
    },
}

fn watchdog_formula(ttl: i64, margin: i64, timeout: i64) -> String {
    if margin == -1 {
        format!("ttl ({ttl}) / 2 = {timeout}")
    } else {
        format!("ttl ({ttl}) - safety_margin ({margin}) = {timeout}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("{origin}: {error}")]
    Io {
        origin: String,
        #[source]
        error: std::io::Error,
    },
    /// A bad, missing or contradictory value. `key` is empty for problems
    /// that concern the document as a whole (YAML syntax errors).
    #[error("{}", render(.origin, *.line, .key, .message))]
    Invalid {
        origin: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
    /// Several independent problems (from validation), one per line.
    #[error("{}", render_many(.0))]
    Many(Vec<ConfigError>),
}

fn render(origin: &str, line: Option<usize>, key: &str, message: &str) -> String {
    let mut s = origin.to_owned();
    if let Some(l) = line {
        let _ = write!(s, " line {l}");
    }
    s.push_str(": ");
    if !key.is_empty() {
        s.push_str(key);
        s.push_str(": ");
    }
    s.push_str(message);
    s
}

fn render_many(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// A keyed error without a line.
    pub fn key(
        origin: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            origin: origin.into(),
            line: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// `key: missing required key`.
    pub fn missing(origin: impl Into<String>, key: impl Into<String>) -> Self {
        Self::key(origin, key, "missing required key")
    }

    /// The key path of the (first) problem, if any.
    pub fn key_path(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } if !key.is_empty() => Some(key),
            ConfigError::Many(v) => v.first().and_then(ConfigError::key_path),
            _ => None,
        }
    }

    /// The line of the (first) problem, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => *line,
            ConfigError::Many(v) => v.first().and_then(ConfigError::line),
            ConfigError::Io { .. } => None,
        }
    }

    /// The origin of the (first) problem.
    pub fn origin(&self) -> &str {
        match self {
            ConfigError::Io { origin, .. } | ConfigError::Invalid { origin, .. } => origin,
            ConfigError::Many(v) => v.first().map_or("", ConfigError::origin),
        }
    }

    /// The individual errors (one for anything but [`ConfigError::Many`]).
    pub fn errors(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(v) => v.iter().flat_map(ConfigError::errors).collect(),
            e => vec![e],
        }
    }

    /// Prefix every key with `prefix.` (e.g. `bootstrap.dcs`) and replace
    /// the origin.
    pub fn nested(self, origin: &str, prefix: &str) -> Self {
        match self {
            ConfigError::Invalid {
                line, key, message, ..
            } => ConfigError::Invalid {
                origin: origin.to_owned(),
                line,
                key: if key.is_empty() {
                    prefix.to_owned()
                } else {
                    format!("{prefix}.{key}")
                },
                message,
            },
            ConfigError::Many(v) => {
                ConfigError::Many(v.into_iter().map(|e| e.nested(origin, prefix)).collect())
            }
            e @ ConfigError::Io { .. } => e,
        }
    }

    /// Combine a list of errors: `None` when empty, the error itself when
    /// there is one, [`ConfigError::Many`] otherwise.
    pub fn combine(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Many(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_origin_line_and_key() {
        let e = ConfigError::Invalid {
            origin: "conf.yml".into(),
            line: Some(7),
            key: "loop_wait".into(),
            message: "invalid type: string \"abc\", expected a number".into(),
        };
        assert_eq!(
            e.to_string(),
            "conf.yml line 7: loop_wait: invalid type: string \"abc\", expected a number"
        );
        let e = ConfigError::missing("/etc/pgpilot.yml", "postgresql.authentication.replication");
        assert_eq!(
            e.to_string(),
            "/etc/pgpilot.yml: postgresql.authentication.replication: missing required key"
        );
        assert_eq!(e.key_path(), Some("postgresql.authentication.replication"));
    }

    #[test]
    fn nested_prefixes_keys_and_many_joins_lines() {
        let e = ConfigError::Many(vec![
            ConfigError::key(ORIGIN_DYNAMIC, "ttl", "too small"),
            ConfigError::key(ORIGIN_DYNAMIC, "loop_wait", "too small"),
        ])
        .nested("a.yml", "bootstrap.dcs");
        assert_eq!(
            e.to_string(),
            "a.yml: bootstrap.dcs.ttl: too small\na.yml: bootstrap.dcs.loop_wait: too small"
        );
        assert_eq!(e.errors().len(), 2);
        assert!(ConfigError::combine(vec![]).is_none());
    }
}
