//! `POST /restart` and `DELETE /restart` (docs/rest-api.md, "POST /restart,
//! DELETE /restart"), the HTTP side:
//! the body's validation. The conditions and the scheduled restart's rules
//! are the supervisor's (`crate::messages::restart`).

use std::time::Duration;

use serde_json::{Map, Value};

pub use crate::messages::restart::RestartOptions;

use crate::ha::iso8601::{self, TimeError};

/// A validated `POST /restart` body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestartRequest {
    pub options: RestartOptions,
    /// `schedule`: when (Unix seconds) and as given.
    pub schedule: Option<(f64, String)>,
}

/// A refusal: HTTP status and text.
pub type Refusal = (u16, String);

/// A `postgres_version` of `POST /restart` that is not a version (400, in
/// Patroni's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Not numbers, or a part above 99.
    #[error("Invalid PostgreSQL version: {0}")]
    Invalid(String),
    /// Not `X.Y` (X >= 10) or `X.Y.Z`.
    #[error("Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: {0}")]
    Format(String),
}

/// Patroni's `postgres_version_to_int`: `X.Y` (X >= 10) or `X.Y.Z`.
pub fn postgres_version_num(v: &str) -> Result<u32, VersionError> {
    let parts: Result<Vec<u32>, _> = v.trim().split('.').map(str::parse::<u32>).collect();
    let Ok(mut parts) = parts else {
        return Err(VersionError::Invalid(v.to_owned()));
    };
    if parts.len() < 2 || parts.len() > 3 || (parts.len() == 2 && parts[0] < 10) {
        return Err(VersionError::Format(v.to_owned()));
    }
    if parts.len() == 2 {
        parts.insert(1, 0);
    }
    if parts[1] > 99 || parts[2] > 99 {
        return Err(VersionError::Invalid(v.to_owned()));
    }
    Ok(parts[0] * 10_000 + parts[1] * 100 + parts[2])
}

/// Patroni's `parse_int(value, 's')`: a number of seconds, or a string
/// with a unit (`30`, `30s`, `1min`, `2h`, `1d`, `1500ms`).
pub fn parse_timeout(v: &Value) -> Option<Duration> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: f64 = num.parse().ok()?;
            n * match unit.trim() {
                "" | "s" => 1.0,
                "ms" => 0.001,
                "min" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                _ => return None,
            }
        }
        _ => return None,
    };
    (secs.is_finite() && secs >= 1.0).then(|| Duration::from_secs(secs.round() as u64))
}

/// Validate a `POST /restart` body (empty = no conditions), in Patroni's
/// order: paused + schedule, then each key.
pub fn parse_request(body: &[u8], paused: bool, now_unix: f64) -> Result<RestartRequest, Refusal> {
    let obj = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => return Err((400, "Invalid JSON".to_owned())),
        }
    };
    if paused && obj.contains_key("schedule") {
        return Err((500, "Can't schedule restart in the paused state".to_owned()));
    }
    let mut req = RestartRequest::default();
    for (k, v) in &obj {
        match k.as_str() {
            "schedule" => {
                let s = v.as_str().unwrap_or_default();
                match iso8601::parse(s) {
                    Err(TimeError::NoTimezone) => {
                        return Err((
                            400,
                            "Timezone information is mandatory for the scheduled restart"
                                .to_owned(),
                        ));
                    }
                    Err(TimeError::Unparsable) => {
                        return Err((
                            422,
                            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"
                                .to_owned(),
                        ));
                    }
                    Ok(t) if t < now_unix => {
                        return Err((422, "Cannot schedule restart in the past".to_owned()));
                    }
                    Ok(t) => req.schedule = Some((t, s.to_owned())),
                }
            }
            "role" => match v.as_str() {
                Some(r @ ("primary" | "standby_leader" | "replica")) => {
                    req.options.role = Some(r.to_owned())
                }
                _ => {
                    return Err((
                        400,
                        "PostgreSQL role should be either primary, standby_leader, or replica"
                            .to_owned(),
                    ));
                }
            },
            "postgres_version" => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let n = postgres_version_num(&text).map_err(|e| (400, e.to_string()))?;
                req.options.postgres_version = Some((n, text));
            }
            "timeout" => match parse_timeout(v) {
                Some(t) => req.options.timeout = Some(t),
                None => {
                    return Err((
                        400,
                        "Timeout should be a positive number of seconds".to_owned(),
                    ));
                }
            },
            "restart_pending" => {
                req.options.restart_pending = crate::config::dynamic::json_bool(v).unwrap_or(true)
            }
            other => {
                return Err((
                    400,
                    format!("Unknown filter for the scheduled restart: {other}"),
                ));
            }
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: f64 = 1_900_000_000.0;

    #[test]
    fn empty_and_simple_bodies() {
        assert_eq!(
            parse_request(b"", false, NOW).unwrap(),
            RestartRequest::default()
        );
        assert_eq!(
            parse_request(b"{}", false, NOW).unwrap(),
            RestartRequest::default()
        );
        let r = parse_request(
            br#"{"role": "replica", "restart_pending": true, "postgres_version": "15.99", "timeout": "2min"}"#,
            false,
            NOW,
        )
        .unwrap();
        assert_eq!(r.options.role.as_deref(), Some("replica"));
        assert!(r.options.restart_pending);
        assert_eq!(r.options.postgres_version, Some((150_099, "15.99".into())));
        assert_eq!(r.options.timeout, Some(Duration::from_secs(120)));
        assert!(r.schedule.is_none());
    }

    #[test]
    fn refusals_in_patronis_words() {
        let e = |b: &[u8]| parse_request(b, false, NOW).unwrap_err();
        assert_eq!(e(b"[1]").0, 400);
        assert_eq!(e(b"not json").0, 400);
        assert_eq!(
            e(br#"{"role": "master"}"#),
            (
                400,
                "PostgreSQL role should be either primary, standby_leader, or replica".into()
            )
        );
        assert_eq!(
            e(br#"{"postgres_version": "9.6"}"#),
            (
                400,
                "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6".into()
            )
        );
        assert_eq!(e(br#"{"postgres_version": "a.b"}"#).0, 400);
        assert_eq!(e(br#"{"timeout": 0}"#).0, 400);
        assert_eq!(e(br#"{"timeout": "-5"}"#).0, 400);
        assert_eq!(e(br#"{"timeout": "soon"}"#).0, 400);
        assert_eq!(
            e(br#"{"foo": 1}"#),
            (400, "Unknown filter for the scheduled restart: foo".into())
        );
        assert_eq!(e(br#"{"schedule": "2030-01-01T00:00:00"}"#).0, 400);
        assert_eq!(e(br#"{"schedule": "whenever"}"#).0, 422);
        assert_eq!(
            e(br#"{"schedule": "2020-01-01T00:00:00Z"}"#),
            (422, "Cannot schedule restart in the past".into())
        );
        assert_eq!(
            parse_request(br#"{"schedule": "2030-01-01T00:00:00Z"}"#, true, NOW).unwrap_err(),
            (500, "Can't schedule restart in the paused state".into())
        );
    }

    #[test]
    fn schedule_with_zone() {
        let r = parse_request(br#"{"schedule": "2030-06-01T12:00:00+02:00"}"#, false, NOW).unwrap();
        let (t, text) = r.schedule.unwrap();
        assert_eq!(t, iso8601::parse("2030-06-01T10:00:00Z").unwrap());
        assert_eq!(text, "2030-06-01T12:00:00+02:00");
    }

    #[test]
    fn versions_and_timeouts() {
        assert_eq!(postgres_version_num("9.5.3"), Ok(90_503));
        assert_eq!(postgres_version_num("10.1"), Ok(100_001));
        assert_eq!(postgres_version_num("15.2"), Ok(150_002));
        assert_eq!(
            postgres_version_num("10"),
            Err(VersionError::Format("10".into()))
        );
        assert!(postgres_version_num("1.2.3.4").is_err());
        assert_eq!(
            postgres_version_num("15.100").map_err(|e| e.to_string()),
            Err("Invalid PostgreSQL version: 15.100".into())
        );
        assert_eq!(parse_timeout(&json!(30)), Some(Duration::from_secs(30)));
        assert_eq!(parse_timeout(&json!("30s")), Some(Duration::from_secs(30)));
        assert_eq!(parse_timeout(&json!("1min")), Some(Duration::from_secs(60)));
        assert_eq!(parse_timeout(&json!("1h")), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(&json!(true)), None);
    }
}
