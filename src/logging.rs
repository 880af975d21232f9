//! Logging setup: plain text or one JSON object per line, level from the
//! config (`log.level`) unless `RUST_LOG` says otherwise.

use tracing_subscriber::EnvFilter;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}
