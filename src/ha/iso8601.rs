//! `scheduled_at` timestamps (switchover, restart) and the UTC calendar
//! times pgpilot writes, on top of the `time` crate's ISO 8601 support.
//!
//! Patroni reads `scheduled_at` with `dateutil.parser.parse`, which takes far
//! more than ISO 8601. What an operator plausibly types is accepted here too,
//! by rewriting it into ISO 8601 before `time` parses it:
//!
//! * a space or `t` between date and time (`2024-06-01 10:00:00Z`), any case
//!   of `T`/`Z`;
//! * a zone written `UTC` or `GMT` (with or without a space before it), or
//!   separated from the time by spaces (`10:00:00 +02:00`);
//! * one-digit fields (`2024-6-1T9:05:00Z`, an offset `+2`);
//! * the basic format (`20240601T100000Z`), minutes-only times, fractions
//!   with `.` or `,` and any number of digits (through `time`).
//!
//! As in Patroni, a time without a zone (and a date alone) is refused as
//! ambiguous ([`TimeError::NoTimezone`], 400 from the REST API), and so is
//! an unknown zone name such as `EST`, which dateutil turns into a local
//! time. Out-of-range fields (`24:00`, `+25:00`, second 60) are
//! [`TimeError::Unparsable`], as dateutil refuses them.

use time::format_description::well_known::Iso8601;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Not a date and time this parser understands.
    Unparsable,
    /// A valid local time without a zone: ambiguous, refused.
    NoTimezone,
}

/// Seconds since the Unix epoch of a timestamp with a zone (module doc for
/// the forms accepted).
pub fn parse(s: &str) -> Result<f64, TimeError> {
    let (text, zoned) = canonical(s).ok_or(TimeError::Unparsable)?;
    if !zoned {
        let local = PrimitiveDateTime::parse(&text, &Iso8601::PARSING).is_ok()
            || Date::parse(&text, &Iso8601::PARSING).is_ok();
        return Err(if local {
            TimeError::NoTimezone
        } else {
            TimeError::Unparsable
        });
    }
    let t = OffsetDateTime::parse(&text, &Iso8601::PARSING).map_err(|_| TimeError::Unparsable)?;
    // `time` allows offsets up to ±25:59; Python (and ISO 8601) below 24 h.
    if t.offset().whole_hours().abs() >= 24 {
        return Err(TimeError::Unparsable);
    }
    Ok(t.unix_timestamp() as f64 + f64::from(t.nanosecond()) / 1e9)
}

/// The ISO 8601 spelling of a lax timestamp, and whether it has a zone;
/// `None` when it is not even shaped like one.
fn canonical(s: &str) -> Option<(String, bool)> {
    let s = s.trim();
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], s[i + 1..].trim_start()),
        None => (s, ""),
    };
    let date = pad_fields(date, '-', 4)?;
    if rest.is_empty() {
        return Some((date, false));
    }
    let (time, zone) = split_zone(rest)?;
    let time = match time.split_once(['.', ',']) {
        Some((hms, frac)) => format!("{}.{frac}", pad_fields(hms, ':', 2)?),
        // An hour alone (`T10Z`).
        None if time.len() <= 2 => format!("{}:00", pad(time, 2)?),
        None => pad_fields(time, ':', 2)?,
    };
    Some((format!("{date}T{time}{zone}"), !zone.is_empty()))
}

/// `time` and its zone (`Z`, `+HH:MM`, or empty) from what follows the
/// date.
fn split_zone(rest: &str) -> Option<(&str, String)> {
    for name in ["UTC", "GMT", "Z", "z"] {
        if let Some(time) = rest.strip_suffix(name) {
            return Some((time.trim_end(), "Z".to_owned()));
        }
    }
    let Some(i) = rest.find(['+', '-']) else {
        // A zone name dateutil cannot place (`EST`: up to five capitals)
        // leaves a local time.
        return match rest.rsplit_once(' ') {
            Some((time, name))
                if name.len() <= 5 && name.bytes().all(|b| b.is_ascii_uppercase()) =>
            {
                Some((time.trim_end(), String::new()))
            }
            _ => Some((rest, String::new())),
        };
    };
    let (time, zone) = (rest[..i].trim_end(), &rest[i..]);
    let (sign, offset) = zone.split_at(1);
    let offset = match offset.split_once(':') {
        Some((h, m)) => format!("{}:{m}", pad(h, 2)?),
        None if offset.len() == 4 => offset.to_owned(),
        None => pad(offset, 2)?,
    };
    Some((time, format!("{sign}{offset}")))
}

/// `fields` joined by `sep`, each number padded to two digits (the first to
/// `first` digits); `None` if a field is not a short number. A text
/// without `sep` (the basic format) is passed through.
fn pad_fields(fields: &str, sep: char, first: usize) -> Option<String> {
    if !fields.contains(sep) {
        return Some(fields.to_owned());
    }
    let parts: Vec<String> = fields
        .split(sep)
        .enumerate()
        .map(|(i, f)| pad(f, if i == 0 { first } else { 2 }))
        .collect::<Option<_>>()?;
    Some(parts.join(&sep.to_string()))
}

/// A number of 1..=`width` digits, zero-padded to `width`.
fn pad(digits: &str, width: usize) -> Option<String> {
    let ok = (1..=width).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| format!("{digits:0>width$}"))
}

/// Now, in seconds since the Unix epoch: the clock is read outside
/// `src/ha` (`crate::clock`).
pub use crate::clock::now_unix;

/// A UTC calendar date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    /// The calendar time of `secs` since the Unix epoch: the one
    /// conversion the daemon, the CLI and the data-directory names share.
    /// Past year 9999 (`time`'s range) it stays at the last second of 9999.
    pub fn from_unix(secs: u64) -> Utc {
        let t = i64::try_from(secs)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or_else(|| PrimitiveDateTime::MAX.assume_utc());
        Utc {
            year: i64::from(t.year()),
            month: u32::from(u8::from(t.month())),
            day: u32::from(t.day()),
            hour: u32::from(t.hour()),
            minute: u32::from(t.minute()),
            second: u32::from(t.second()),
        }
    }

    /// `YYYY-MM-DD<sep>HH:MM:SS`.
    pub fn format(&self, sep: char) -> String {
        format!(
            "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// ISO 8601 with an explicit UTC offset, as Patroni writes timestamps.
    pub fn to_iso8601(&self) -> String {
        format!("{}+00:00", self.format('T'))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn calendar_from_unix_round_trips_with_the_parser() {
        for secs in [0u64, 951_782_400, 1_724_873_966, 4_102_444_799] {
            let iso = Utc::from_unix(secs).to_iso8601();
            assert_eq!(parse(&iso), Ok(secs as f64), "{iso}");
        }
        assert_eq!(
            Utc::from_unix(951_782_400).format(' '),
            "2000-02-29 00:00:00"
        );
    }

    #[test]
    fn utc_forms() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Ok(0.0));
        assert_eq!(parse("2000-03-01T00:00:00+00:00"), Ok(951868800.0));
        assert_eq!(parse("2024-02-29T12:34:56Z"), Ok(1709210096.0));
        assert_eq!(parse("2024-02-29 12:34:56z"), Ok(1709210096.0));
        assert_eq!(parse("2024-02-29T12:34Z"), Ok(1709210040.0));
    }

    #[test]
    fn offsets_and_fractions() {
        let utc = parse("2024-06-01T10:00:00Z").unwrap();
        assert_eq!(parse("2024-06-01T12:00:00+02:00"), Ok(utc));
        assert_eq!(parse("2024-06-01T12:00:00+0200"), Ok(utc));
        assert_eq!(parse("2024-06-01T12:00:00+02"), Ok(utc));
        assert_eq!(parse("2024-06-01T04:30:00-05:30"), Ok(utc));
        let f = parse("2024-06-01T10:00:00.25Z").unwrap();
        assert!((f - utc - 0.25).abs() < 1e-6);
        assert!(parse("2024-06-01T10:00:00,5+00:00").is_ok());
    }

    #[test]
    fn lax_forms_patroni_accepts() {
        // What dateutil.parser.parse (Patroni's reader) also takes.
        let utc = parse("2024-06-01T10:00:00Z").unwrap();
        for lax in [
            "2024-06-01T10:00:00 UTC",
            "2024-06-01T10:00:00UTC",
            "2024-06-01 10:00:00 GMT",
            "  2024-06-01T10:00:00Z ",
            "2024-06-01t10:00:00z",
            "2024-06-01T12:00:00 +02:00",
            "2024-06-01 12:00 +02:00",
            "2024-06-01T12:00:00+2",
            "2024-06-01T10:00:00+00",
            "2024-6-1T10:00:00Z",
            "2024-06-01T10Z",
            "2024-06-01T10:00Z",
            "20240601T100000Z",
            "2024-06-01T10:00:00.000000000Z",
            "2024-06-01T04:30:00-0530",
        ] {
            assert_eq!(parse(lax), Ok(utc), "{lax}");
        }
        assert_eq!(parse("2024-06-01T09:05:00Z"), parse("2024-06-01T9:5:0Z"));
        let f = parse("2024-06-01T10:00:00.123456789Z").unwrap();
        assert!((f - utc - 0.123_456_789).abs() < 1e-6);
    }

    #[test]
    fn local_times_are_ambiguous() {
        for local in [
            "2024-06-01T10:00:00",
            "2024-06-01 10:00",
            "2024-06-01",
            "2024-06-01T10:00:00 EST",
        ] {
            assert_eq!(parse(local), Err(TimeError::NoTimezone), "{local}");
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse("2024-06-01T10:00:00"),
            Err(TimeError::NoTimezone),
            "a local time is ambiguous"
        );
        for bad in [
            "",
            "tomorrow",
            "2024-13-01T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2024-06-01T24:00:00Z",
            "2024-06-01T10:00:00+25:00",
            "2024-06-01T10:00:00+24:00",
            "2024-06-01T10:00:60Z",
            "2024-06-01T10:00:00 utc",
            "2024-06-01T10:00:00+02:00:00",
            "2024-06-01T10:00:00+200",
            "2024-06-01T10:00:00.Z",
            "June 1 2024 10:00 UTC",
        ] {
            assert_eq!(parse(bad), Err(TimeError::Unparsable), "{bad}");
        }
    }
}
