//! Logging (docs/configuration.md, "log"; docs/operations.md, "Logs"):
//! Patroni's `log` section. A plain line is `log.format` (Python's %-style,
//! default `%(asctime)s %(levelname)s: %(message)s`) with pgpilot's
//! structured fields appended to the message; `type: json` writes one JSON
//! object per line. Lines go to stderr, or with `log.dir` to
//! `<dir>/patroni.log`, rotated as Patroni's `RotatingFileHandler` does.
//! `RUST_LOG`, when set and not empty, replaces `log.level` and
//! `log.loggers`.
//!
//! A reload (SIGHUP, `POST /reload`) applies a new `log` section: the output
//! is swapped under its lock and the filter through tracing's reload layer,
//! so no line is written half in the old and half in the new shape.
//!
//! The level filters the lines only: every pgpilot event, at any level, is
//! counted (src/telemetry.rs).

mod pyformat;
mod record;
mod rotate;
mod settings;
mod strftime;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};

use time::{OffsetDateTime, UtcOffset};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, reload};

pub use record::SEVERITY;
pub use rotate::FILE_NAME;
use settings::Settings;
pub use settings::{LogFormat, parse_level, parse_mode};

use crate::config::Log;
use crate::sync::lock;
use crate::telemetry;

/// Why the log could not be set up as configured.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log.dir: cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("the log is already set up in this process")]
    AlreadySet,
}

/// Where lines go.
#[derive(Debug)]
enum Sink {
    /// `journal`: stderr is systemd's journal stream ([`is_journal`]).
    Stderr {
        colour: bool,
        journal: bool,
    },
    File(rotate::RotatingFile),
}

/// The settings and the sink, swapped together at a reload.
#[derive(Debug)]
struct Output {
    settings: Settings,
    sink: Sink,
}

impl Output {
    fn write(&mut self, r: &record::Record) {
        let s = &self.settings;
        let mut line = match s.kind {
            LogFormat::Plain => r.plain(&s.format, s.dateformat.as_deref()),
            LogFormat::Json => r.json(&s.json_fields, &s.static_fields, s.dateformat.as_deref()),
        };
        match &mut self.sink {
            Sink::Stderr { colour, journal } => {
                if *colour && s.kind == LogFormat::Plain {
                    line = colour_level(&line, r.levelname(), r.level);
                }
                if *journal {
                    line.insert_str(0, syslog_prefix(r.levelname()));
                }
                line.push('\n');
                // stderr gone: nowhere left to say so.
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::File(f) => {
                line.push('\n');
                if let Err(e) = f.write_line(line.as_bytes()) {
                    // The line is not lost: stderr (the journal under
                    // systemd) gets it with the reason.
                    let _ = write!(
                        std::io::stderr().lock(),
                        "log file write failed ({e}): {line}"
                    );
                }
            }
        }
    }
}

/// The priority prefix journald reads off a line of a service's stderr and
/// strips (`SyslogLevelPrefix=`, on by default): `journalctl -p warning`
/// then shows WARNING and worse.
fn syslog_prefix(levelname: &str) -> &'static str {
    match levelname {
        "CRITICAL" => "<2>",
        "ERROR" => "<3>",
        "WARNING" => "<4>",
        "INFO" => "<6>",
        _ => "<7>",
    }
}

/// Is stderr the journal? systemd sets `JOURNAL_STREAM=<dev>:<inode>` of
/// the stream it connects; a process whose stderr was redirected since
/// inherits the variable but not the stream, hence the comparison.
fn is_journal(journal_stream: Option<&std::ffi::OsStr>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(v), Some((dev, ino))) = (journal_stream.and_then(|v| v.to_str()), stderr) else {
        return false;
    };
    v.split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/self/fd/2").ok()?;
    Some((m.dev(), m.ino()))
}

/// The first occurrence of the level name, coloured as tracing colours it.
fn colour_level(line: &str, levelname: &str, level: Level) -> String {
    let code = match level {
        Level::ERROR => "31",
        Level::WARN => "33",
        Level::INFO => "32",
        Level::DEBUG => "34",
        Level::TRACE => "35",
    };
    line.replacen(levelname, &format!("\x1b[{code}m{levelname}\x1b[0m"), 1)
}

/// The layer that writes the lines.
#[derive(Clone)]
struct Lines {
    out: Arc<Mutex<Output>>,
    offset: UtcOffset,
    started: OffsetDateTime,
}

impl<S: Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let now = OffsetDateTime::now_utc().to_offset(self.offset);
        let r = record::Record::from_event(event, now, self.started);
        lock(&self.out).write(&r);
    }
}

/// What a reload needs.
struct Installed {
    out: Arc<Mutex<Output>>,
    filter: reload::Handle<Targets, Registry>,
    /// `--log-format`, which wins over `log.type` at every reload.
    kind: Option<LogFormat>,
    /// `RUST_LOG` was set: it keeps deciding the filter.
    env_filter: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Colour codes only for a person at a terminal: a log file, journald or a
/// pipe gets plain text (escape codes there only make the lines hard to
/// grep). `NO_COLOR` set to anything non-empty turns colour off even on a
/// terminal (no-color.org).
fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

fn sink(settings: &Settings) -> Result<Sink, LogError> {
    match &settings.dir {
        None => Ok(Sink::Stderr {
            colour: use_colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ),
            journal: settings.kind == LogFormat::Plain
                && is_journal(
                    std::env::var_os("JOURNAL_STREAM").as_deref(),
                    stderr_identity(),
                ),
        }),
        Some(dir) => rotate::RotatingFile::open(dir, settings.rotation)
            .map(Sink::File)
            .map_err(|source| LogError::Open {
                path: dir.join(FILE_NAME).display().to_string(),
                source,
            }),
    }
}

fn filter_for(settings: &Settings, env_filter: bool) -> Targets {
    if env_filter && let Ok(v) = std::env::var("RUST_LOG") {
        return targets(&v);
    }
    targets(&settings.directives())
}

/// The most verbose level `filter` lets through for any target.
fn most_verbose(filter: &Targets) -> LevelFilter {
    filter
        .iter()
        .map(|(_, l)| l)
        .chain(filter.default_level())
        .max()
        .unwrap_or(LevelFilter::OFF)
}

/// Dependencies log through the `log` crate (tokio-postgres writes a debug
/// record for every statement). Its own level check is one comparison;
/// left at TRACE (the counting layer's pgpilot-only filter would keep it
/// there) every record went on to the subscriber to be filtered out, ~1% of
/// an idle replica's CPU. pgpilot's own events are `tracing` events: this
/// changes nothing they count or show.
fn set_log_crate_level(most: LevelFilter) {
    let level = match most {
        LevelFilter::OFF => log::LevelFilter::Off,
        LevelFilter::ERROR => log::LevelFilter::Error,
        LevelFilter::WARN => log::LevelFilter::Warn,
        LevelFilter::INFO => log::LevelFilter::Info,
        LevelFilter::DEBUG => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    log::set_max_level(level);
}

/// `RUST_LOG`'s directives (docs/configuration.md, "log"): a bare level (the
/// default for every target) and `target=level` (a target and the modules
/// under it), comma-separated; the most specific target decides, a later
/// directive for the same target wins, a directive that does not parse is
/// skipped. Without a bare level, what no directive names logs errors only.
/// A static per-target filter, not `EnvFilter`: span and field filters are
/// not taken, and the regular-expression engine they need (~0.2 MB of the
/// daemon's resident code) is not linked.
fn targets(directives: &str) -> Targets {
    directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter_map(|d| d.parse::<Targets>().ok())
        .fold(Targets::new().with_default(LevelFilter::ERROR), |acc, t| {
            let acc = match t.default_level() {
                Some(l) => acc.with_default(l),
                None => acc,
            };
            acc.with_targets(
                t.iter()
                    .map(|(name, l)| (name.to_owned(), l))
                    .collect::<Vec<_>>(),
            )
        })
}

/// Install the global subscriber for the `log` section. `kind` is the
/// command line's `--log-format` (it wins over `log.type`). Returns the
/// warnings about the section for the caller to log. Call it before other
/// threads start: the local time offset is read here, once (reading it
/// later is unsound on Unix while other threads run; a change of the
/// offset, e.g. daylight saving time, shows after a restart).
pub fn init(kind: Option<LogFormat>, log: &Log) -> Result<Vec<String>, LogError> {
    let (settings, warnings) = Settings::from_config(log, kind);
    // An empty RUST_LOG is no RUST_LOG (the usual reading).
    let env_filter = std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty());
    let lines_filter = filter_for(&settings, env_filter);
    let most = most_verbose(&lines_filter);
    let (filter, handle) = reload::Layer::new(lines_filter);
    let out = Arc::new(Mutex::new(Output {
        sink: sink(&settings)?,
        settings,
    }));
    let lines = Lines {
        out: out.clone(),
        offset: UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC),
        started: OffsetDateTime::now_utc(),
    };
    INSTALLED
        .set(Installed {
            out,
            filter: handle,
            kind,
            env_filter,
        })
        .map_err(|_| LogError::AlreadySet)?;
    let counted = Targets::new().with_target("pgpilot", LevelFilter::TRACE);
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(telemetry::EventCounter.with_filter(counted))
        .try_init();
    set_log_crate_level(most);
    Ok(warnings)
}

/// Apply a reloaded `log` section. On an error (a new `log.dir` that cannot
/// be opened) the running output stays. Returns the section's warnings.
pub fn reload(log: &Log) -> Result<Vec<String>, LogError> {
    let Some(i) = INSTALLED.get() else {
        return Ok(Vec::new());
    };
    let (settings, warnings) = Settings::from_config(log, i.kind);
    let mut out = lock(&i.out);
    if out.settings == settings {
        return Ok(warnings);
    }
    let same_file = matches!(&out.sink, Sink::File(f) if settings.dir.as_deref() == f.dir());
    match &mut out.sink {
        // The same directory keeps its open file (and its size count): only
        // the rotation settings change, as Patroni keeps its handler.
        Sink::File(f) if same_file => {
            f.set_rotation(settings.rotation)
                .map_err(|source| LogError::Open {
                    path: f.path().display().to_string(),
                    source,
                })?
        }
        // A sink that cannot be made leaves the running one in place.
        current => *current = sink(&settings)?,
    }
    // The filter changes while lines wait for the output, so that the new
    // shape starts with the new level (rebuilding the callsite interest
    // cache: a lowered level takes effect at once). The filter never takes
    // the output's lock: no deadlock.
    let lines_filter = filter_for(&settings, i.env_filter);
    let most = most_verbose(&lines_filter);
    let _ = i.filter.reload(lines_filter);
    set_log_crate_level(most);
    out.settings = settings;
    Ok(warnings)
}

/// Applies the `log` section of each changed configuration (SIGHUP,
/// `POST /reload`).
pub struct LogReloader;

impl actix::Actor for LogReloader {
    type Context = actix::Context<Self>;
}

impl actix::Handler<crate::messages::config::ConfigChanged> for LogReloader {
    type Result = ();
    fn handle(
        &mut self,
        crate::messages::config::ConfigChanged(cfg): crate::messages::config::ConfigChanged,
        _ctx: &mut Self::Context,
    ) {
        match reload(&cfg.log) {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!(event = crate::events::CONFIG_WARNING, "{w}");
                }
            }
            Err(e) => tracing::error!(event = crate::events::CONFIG_RELOAD_FAILED, error = %e,
                                      "keeping the running log settings"),
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    /// The `log` crate's level follows the most verbose target: a logger
    /// set to DEBUG still gets its dependency's debug records.
    #[test]
    fn the_log_crate_level_is_the_most_verbose_target() {
        use tracing_subscriber::filter::LevelFilter;
        let most = |d: &str| super::most_verbose(&super::targets(d));
        assert_eq!(most("info"), LevelFilter::INFO);
        assert_eq!(most("warn,tokio_postgres=debug"), LevelFilter::DEBUG);
        assert_eq!(most(""), LevelFilter::ERROR, "no bare level: errors only");
        assert_eq!(most("trace,pgpilot=info"), LevelFilter::TRACE);
    }

    /// The filter the daemon builds from `log.level`, `log.loggers` and
    /// `RUST_LOG`: the most specific target decides; junk is skipped.
    #[test]
    fn targets_take_levels_and_targets() {
        let t = super::targets("info,tokio_postgres=warn,pgpilot::dcs=debug");
        assert!(t.would_enable("pgpilot::ha", &Level::INFO));
        assert!(!t.would_enable("pgpilot::ha", &Level::DEBUG));
        assert!(t.would_enable("pgpilot::dcs::etcd", &Level::DEBUG));
        assert!(!t.would_enable("tokio_postgres::connection", &Level::INFO));
        assert!(t.would_enable("tokio_postgres::connection", &Level::WARN));
        // No bare level: errors only for what no directive names.
        let t = super::targets("pgpilot=debug");
        assert!(t.would_enable("h2::codec", &Level::ERROR));
        assert!(!t.would_enable("h2::codec", &Level::WARN));
        assert!(t.would_enable("pgpilot", &Level::DEBUG));
        // A directive that does not parse is skipped, the others stay.
        let t = super::targets("warn,pgpilot=loud,pgpilot::api=trace,");
        assert!(t.would_enable("pgpilot::ha", &Level::WARN));
        assert!(!t.would_enable("pgpilot::ha", &Level::INFO));
        assert!(t.would_enable("pgpilot::api::listener", &Level::TRACE));
        // A later bare level wins.
        let t = super::targets("debug,error");
        assert!(!t.would_enable("x", &Level::WARN));
    }

    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }

    #[test]
    fn journal_only_when_stderr_is_the_announced_stream() {
        let v = Some(OsStr::new("8:12345"));
        assert!(is_journal(v, Some((8, 12345))));
        assert!(!is_journal(v, Some((8, 999))), "stderr redirected since");
        assert!(!is_journal(None, Some((8, 12345))));
        assert!(!is_journal(Some(OsStr::new("junk")), Some((8, 12345))));
        assert_eq!(syslog_prefix("CRITICAL"), "<2>");
        assert_eq!(syslog_prefix("WARNING"), "<4>");
        assert_eq!(syslog_prefix("TRACE"), "<7>");
    }

    #[test]
    fn colour_wraps_the_level_name_only() {
        assert_eq!(
            colour_level("t WARNING: WARNING x", "WARNING", Level::WARN),
            "t \x1b[33mWARNING\x1b[0m: WARNING x"
        );
    }
}
