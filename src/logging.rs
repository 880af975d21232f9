//! Logging setup: plain text or one JSON object per line, level from the
//! config (`log.level`) unless `RUST_LOG` says otherwise.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::telemetry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Install the global subscriber. Logs go to stderr.
pub fn init(format: LogFormat, level: Option<&str>) {
    let level = level.unwrap_or("info").to_ascii_lowercase();
    let level = match level.as_str() {
        "warning" => "warn",
        "critical" | "fatal" => "error",
        other => other,
    }
    .to_owned();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},tokio_postgres=warn,h2=warn,tower=warn,hyper=warn"
        ))
    });
    let ansi = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
        LogFormat::Plain => lines.boxed(),
    };
    // The log level filters the lines only: every pgpilot event, at any
    // level, is counted (src/telemetry.rs).
    let counted = Targets::new().with_target("pgpilot", LevelFilter::TRACE);
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(telemetry::EventCounter.with_filter(counted))
        .try_init();
}

/// Colour codes only for a person at a terminal: a log file, journald or a
/// pipe gets plain text (escape codes there only make the lines hard to
/// grep). `NO_COLOR` set to anything non-empty turns colour off even on a
/// terminal (no-color.org).
fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }
}
