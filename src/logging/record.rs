//! One log event as Python's `LogRecord` would hold it, and its line: plain
//! (`log.format`, pgpilot's structured fields appended to the message so
//! nothing is lost) or one JSON object (`log.format`'s fields, then
//! `static_fields`, then pgpilot's structured fields, as python-json-logger
//! orders them).

use std::fmt::Write as _;

use serde_json::Value;
use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Level};

use super::pyformat::{PyFormat, Val};
use super::strftime::asctime;

/// A structured field's value, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A `&str` value: quoted in a plain line, as tracing's own format
    /// quotes it (`event="decision"`; tests and tools match on that).
    Str(String),
    /// A `%display` or `?debug` value: as it renders.
    Text(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl FieldValue {
    fn plain(&self) -> String {
        match self {
            FieldValue::Str(s) => format!("{s:?}"),
            FieldValue::Text(s) => s.clone(),
            FieldValue::I64(n) => n.to_string(),
            FieldValue::U64(n) => n.to_string(),
            FieldValue::F64(f) => f.to_string(),
            FieldValue::Bool(b) => b.to_string(),
        }
    }

    fn text(&self) -> String {
        match self {
            FieldValue::Str(s) | FieldValue::Text(s) => s.clone(),
            other => other.plain(),
        }
    }

    fn json(&self) -> Value {
        match self {
            FieldValue::Str(s) | FieldValue::Text(s) => Value::String(s.clone()),
            FieldValue::I64(n) => Value::from(*n),
            FieldValue::U64(n) => Value::from(*n),
            FieldValue::F64(f) => Value::from(*f),
            FieldValue::Bool(b) => Value::Bool(*b),
        }
    }
}

/// The field that raises an event's level name above tracing's levels:
/// `severity = "CRITICAL"` on an ERROR event renders as Patroni's CRITICAL.
pub const SEVERITY: &str = "severity";

/// An event, collected.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: OffsetDateTime,
    pub level: Level,
    /// tracing's target (a module path unless set), Python's `name`.
    pub target: String,
    pub module_path: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub message: String,
    /// The structured fields, in the order logged.
    pub fields: Vec<(String, FieldValue)>,
    /// Process facts: `process`, `thread`, `threadName`, and the start
    /// time for `relativeCreated`.
    pub pid: u32,
    pub thread_id: i64,
    pub thread_name: String,
    pub started: OffsetDateTime,
}

thread_local! {
    /// This thread's id, asked of the kernel once (a system call per log
    /// line was a measurable part of an idle HA cycle: issue 12 §5).
    static TID: i64 = i64::from(nix::unistd::gettid().as_raw());
}

/// This process's id, asked once: the daemon never forks a child that logs
/// through it (helpers and the fence are new programs, `exec`ed).
fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

impl Record {
    /// Collect `event` at `time`.
    pub fn from_event(event: &Event<'_>, time: OffsetDateTime, started: OffsetDateTime) -> Record {
        let meta = event.metadata();
        let mut v = Collect::default();
        event.record(&mut v);
        let current = std::thread::current();
        let thread_name = match current.name() {
            Some("main") => "MainThread".to_owned(),
            Some(n) => n.to_owned(),
            None => "Thread".to_owned(),
        };
        Record {
            time,
            level: *meta.level(),
            // A `log` crate record carries its own origin in `log.*` fields
            // (tracing-log's bridge): prefer them.
            target: v.log_target.unwrap_or_else(|| meta.target().to_owned()),
            module_path: v.log_module.or(meta.module_path().map(str::to_owned)),
            file: v.log_file.or(meta.file().map(str::to_owned)),
            line: v.log_line.or(meta.line()),
            message: v.message,
            fields: v.fields,
            pid: process_id(),
            thread_id: TID.with(|t| *t),
            thread_name,
            started,
        }
    }

    /// Python's level name (`WARNING`, not `WARN`; CRITICAL when the event
    /// says so in [`SEVERITY`]).
    pub fn levelname(&self) -> &'static str {
        if self.level == Level::ERROR && self.critical() {
            return "CRITICAL";
        }
        match self.level {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        }
    }

    fn critical(&self) -> bool {
        self.fields
            .iter()
            .any(|(k, v)| k == SEVERITY && v.text().eq_ignore_ascii_case("critical"))
    }

    fn levelno(&self) -> i64 {
        match self.levelname() {
            "CRITICAL" => 50,
            "ERROR" => 40,
            "WARNING" => 30,
            "INFO" => 20,
            "DEBUG" => 10,
            _ => 5,
        }
    }

    /// A structured field is carried by the level name rather than repeated.
    fn shown_as_field(&self, name: &str) -> bool {
        !(name == SEVERITY && self.critical())
    }

    /// Python's `LogRecord` attribute `name` (plus `asctime` and `message`
    /// as the formatter sets them; `message` given). `funcName` is the
    /// module path: tracing records no function. An unknown name is a
    /// structured field of that name.
    fn attribute(&self, name: &str, dateformat: Option<&str>, message: &str) -> Option<Val> {
        let created = self.time.unix_timestamp_nanos() as f64 / 1e9;
        let basename = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
        Some(match name {
            "asctime" => Val::Str(asctime(self.time, dateformat)),
            "message" | "msg" => Val::Str(message.to_owned()),
            "levelname" => Val::Str(self.levelname().to_owned()),
            "levelno" => Val::Int(self.levelno()),
            "name" => Val::Str(self.target.clone()),
            "pathname" => Val::Str(self.file.clone().unwrap_or_default()),
            "filename" => Val::Str(basename(self.file.as_deref().unwrap_or(""))),
            "module" => {
                let f = basename(self.file.as_deref().unwrap_or(""));
                Val::Str(f.strip_suffix(".rs").unwrap_or(&f).to_owned())
            }
            "funcName" => Val::Str(self.module_path.clone().unwrap_or_default()),
            "lineno" => Val::Int(i64::from(self.line.unwrap_or(0))),
            "created" => Val::Float(created),
            "msecs" => Val::Float(f64::from(self.time.nanosecond()) / 1e6),
            "relativeCreated" => Val::Float((self.time - self.started).as_seconds_f64() * 1000.0),
            "process" => Val::Int(i64::from(self.pid)),
            "processName" => Val::Str("MainProcess".to_owned()),
            "thread" => Val::Int(self.thread_id),
            "threadName" => Val::Str(self.thread_name.clone()),
            other => {
                let (_, v) = self.fields.iter().find(|(k, _)| k == other)?;
                match v {
                    FieldValue::I64(n) => Val::Int(*n),
                    FieldValue::U64(n) => Val::Int(i64::try_from(*n).unwrap_or(i64::MAX)),
                    FieldValue::F64(f) => Val::Float(*f),
                    v => Val::Str(v.text()),
                }
            }
        })
    }

    /// The plain line (without its newline): `format` with `%(message)s`
    /// being the message then every structured field not named in the
    /// format, as ` key=value`.
    pub fn plain(&self, format: &PyFormat, dateformat: Option<&str>) -> String {
        let used = format.fields();
        let mut message = self.message.clone();
        for (k, v) in &self.fields {
            if used.contains(&k.as_str()) || !self.shown_as_field(k) {
                continue;
            }
            if !message.is_empty() {
                message.push(' ');
            }
            let _ = write!(message, "{k}={}", v.plain());
        }
        format.render(&mut |name| self.attribute(name, dateformat, &message))
    }

    /// The JSON line (without its newline): one object.
    pub fn json(
        &self,
        fields: &[(String, String)],
        static_fields: &[(String, Value)],
        dateformat: Option<&str>,
    ) -> String {
        let mut keys: Vec<String> = Vec::new();
        let mut out = String::from("{");
        let mut put = |key: &str, v: &Value, out: &mut String| {
            if keys.iter().any(|k| k == key) {
                return;
            }
            if !keys.is_empty() {
                out.push(',');
            }
            keys.push(key.to_owned());
            // Serialising a string or a JSON value cannot fail.
            out.push_str(&serde_json::to_string(key).unwrap_or_default());
            out.push(':');
            out.push_str(&serde_json::to_string(v).unwrap_or_default());
        };
        for (field, key) in fields {
            let v = match field.as_str() {
                // A structured field keeps its JSON type.
                f if self.fields.iter().any(|(k, _)| k == f) && !is_attribute(f) => self
                    .fields
                    .iter()
                    .find(|(k, _)| k == f)
                    .map(|(_, v)| v.json())
                    .unwrap_or(Value::Null),
                f => match self.attribute(f, dateformat, &self.message) {
                    Some(Val::Str(s)) => Value::String(s),
                    Some(Val::Int(n)) => Value::from(n),
                    Some(Val::Float(x)) => Value::from(x),
                    None => Value::Null,
                },
            };
            put(key, &v, &mut out);
        }
        for (k, v) in static_fields {
            put(k, v, &mut out);
        }
        for (k, v) in &self.fields {
            if self.shown_as_field(k) && !fields.iter().any(|(f, _)| f == k) {
                put(k, &v.json(), &mut out);
            }
        }
        out.push('}');
        out
    }
}

fn is_attribute(name: &str) -> bool {
    matches!(
        name,
        "asctime"
            | "message"
            | "msg"
            | "levelname"
            | "levelno"
            | "name"
            | "pathname"
            | "filename"
            | "module"
            | "funcName"
            | "lineno"
            | "created"
            | "msecs"
            | "relativeCreated"
            | "process"
            | "processName"
            | "thread"
            | "threadName"
    )
}

/// The visitor collecting an event's fields.
#[derive(Default)]
struct Collect {
    message: String,
    fields: Vec<(String, FieldValue)>,
    log_target: Option<String>,
    log_module: Option<String>,
    log_file: Option<String>,
    log_line: Option<u32>,
}

impl Collect {
    fn push(&mut self, field: &Field, v: FieldValue) {
        match (field.name(), &v) {
            ("message", _) => self.message = v.text(),
            ("log.target", _) => self.log_target = Some(v.text()),
            ("log.module_path", _) => self.log_module = Some(v.text()),
            ("log.file", _) => self.log_file = Some(v.text()),
            ("log.line", FieldValue::U64(n)) => self.log_line = u32::try_from(*n).ok(),
            ("log.line", FieldValue::I64(n)) => self.log_line = u32::try_from(*n).ok(),
            (name, _) if name.starts_with("log.") => {}
            (name, _) => self.fields.push((name.to_owned(), v)),
        }
    }
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, FieldValue::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, FieldValue::Text(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, FieldValue::Text(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Date, Month, PrimitiveDateTime, Time};

    fn record(level: Level, message: &str, fields: Vec<(&str, FieldValue)>) -> Record {
        let date = Date::from_calendar_date(2026, Month::December, 5).expect("date");
        let t = PrimitiveDateTime::new(date, Time::from_hms_milli(11, 21, 49, 123).expect("time"))
            .assume_utc();
        Record {
            time: t,
            level,
            target: "pgpilot::ha::cycle".into(),
            module_path: Some("pgpilot::ha::cycle".into()),
            file: Some("src/ha/cycle.rs".into()),
            line: Some(77),
            message: message.into(),
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            pid: 4242,
            thread_id: 4243,
            thread_name: "MainThread".into(),
            started: t - time::Duration::milliseconds(1500),
        }
    }

    fn default_format() -> PyFormat {
        PyFormat::parse(super::super::settings::DEFAULT_FORMAT)
    }

    #[test]
    fn plain_line_like_patroni_with_fields_appended() {
        let r = record(
            Level::INFO,
            "no action. I am (node1), the leader with the lock",
            vec![
                ("event", FieldValue::Str("decision".into())),
                ("term", FieldValue::U64(3)),
                ("error", FieldValue::Text("timed out".into())),
            ],
        );
        assert_eq!(
            r.plain(&default_format(), None),
            "2026-12-05 11:21:49,123 INFO: no action. I am (node1), the leader with the lock \
             event=\"decision\" term=3 error=timed out"
        );
        let r = record(
            Level::WARN,
            "",
            vec![("event", FieldValue::Str("x".into()))],
        );
        assert_eq!(
            r.plain(&default_format(), None),
            "2026-12-05 11:21:49,123 WARNING: event=\"x\""
        );
    }

    #[test]
    fn record_attributes_in_a_custom_format() {
        let r = record(
            Level::DEBUG,
            "m",
            vec![("event", FieldValue::Str("decision".into()))],
        );
        let f = PyFormat::parse(
            "%(asctime)s.%(msecs)03d %(levelno)d %(name)s %(process)d %(thread)d %(filename)s \
             %(module)s %(funcName)s:%(lineno)d %(relativeCreated)d [%(event)s] %(message)s",
        );
        assert_eq!(
            r.plain(&f, Some("%H:%M:%S")),
            "11:21:49.123 10 pgpilot::ha::cycle 4242 4243 cycle.rs cycle pgpilot::ha::cycle:77 1500 \
             [decision] m",
            "a field named in the format is not appended again"
        );
    }

    #[test]
    fn critical_severity_is_the_level_name() {
        let r = record(
            Level::ERROR,
            "Can't start; there is already a node named 'n' running",
            vec![("severity", FieldValue::Str("CRITICAL".into()))],
        );
        assert_eq!(
            r.plain(&default_format(), None),
            "2026-12-05 11:21:49,123 CRITICAL: Can't start; there is already a node named 'n' running"
        );
    }

    #[test]
    fn json_line_orders_format_static_then_structured_fields() {
        let r = record(
            Level::INFO,
            "promoted self to leader",
            vec![
                ("event", FieldValue::Str("lock_acquired".into())),
                ("term", FieldValue::U64(2)),
                ("ok", FieldValue::Bool(true)),
            ],
        );
        let fields = vec![
            ("asctime".to_owned(), "@timestamp".to_owned()),
            ("levelname".to_owned(), "level".to_owned()),
            ("message".to_owned(), "message".to_owned()),
            ("lineno".to_owned(), "lineno".to_owned()),
            ("term".to_owned(), "term".to_owned()),
        ];
        let line = r.json(&fields, &[("app".to_owned(), Value::from("patroni"))], None);
        assert_eq!(
            line,
            r#"{"@timestamp":"2026-12-05 11:21:49,123","level":"INFO","message":"promoted self to leader","lineno":77,"term":2,"app":"patroni","event":"lock_acquired","ok":true}"#
        );
        let v: Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(v["event"], "lock_acquired");
    }
}
