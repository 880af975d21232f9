//! The one error type of the PostgreSQL layer. Every variant says what was
//! being done, so a log line is enough to diagnose a failure without a
//! debugger: the command, its exit status and the last lines it printed.

use std::io;
use std::time::Duration;

/// How many trailing stderr lines a failed command keeps.
pub const STDERR_TAIL_LINES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// An external program could not be started at all.
    #[error("could not run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    /// An external program ran and failed.
    #[error("{command} failed ({status}){}", tail(stderr))]
    CommandFailed {
        command: String,
        status: String,
        /// The last [`STDERR_TAIL_LINES`] lines of its stderr.
        stderr: Vec<String>,
    },
    /// Something did not happen before its deadline.
    #[error("{what}: timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    /// A connection or statement failed.
    #[error("{context}: {detail}")]
    Query {
        context: String,
        detail: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// Output of a tool or a file did not have the expected shape.
    #[error("could not parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// A caller-supplied option is not allowed or malformed.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Sending a signal failed.
    #[error("{context}: {source}")]
    Signal {
        context: String,
        #[source]
        source: nix::Error,
    },
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines.join(" | "))
    }
}

pub type PgResult<T> = Result<T, PgError>;

impl PgError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        PgError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn query(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        // tokio-postgres' Display is only "db error"; the server's message is
        // what an operator needs.
        let detail = match source.as_db_error() {
            Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
            None => source.to_string(),
        };
        PgError::Query {
            context: context.into(),
            detail,
            source,
        }
    }

    /// The server's SQLSTATE of a failed statement.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            PgError::Query { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }

    pub fn parse(what: impl Into<String>, detail: impl Into<String>) -> Self {
        PgError::Parse {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// The last `n` non-empty lines of `text`.
pub fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_failed_shows_status_and_tail() {
        let e = PgError::CommandFailed {
            command: "initdb".into(),
            status: "exit status: 1".into(),
            stderr: last_lines("a\n\nb\nc\n", 2),
        };
        assert_eq!(e.to_string(), "initdb failed (exit status: 1): b | c");
    }
}
