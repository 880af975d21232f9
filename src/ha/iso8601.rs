//! A small ISO 8601 parser for `scheduled_at` (switchover) values: no date
//! crate is available, and the accepted form is narrow enough for `std`:
//! `YYYY-MM-DD[T ]HH:MM[:SS[.frac]](Z|±HH[:MM]|±HHMM)`.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Not a date and time this parser understands.
    Unparsable,
    /// A valid local time without a zone: ambiguous, refused.
    NoTimezone,
}

/// Seconds since the Unix epoch of an ISO 8601 timestamp with a zone.
pub fn parse(s: &str) -> Result<f64, TimeError> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, TimeError> {
        let part = s.get(from..from + len).ok_or(TimeError::Unparsable)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(TimeError::Unparsable);
        }
        part.parse().map_err(|_| TimeError::Unparsable)
    };
    let at = |i: usize| b.get(i).copied();
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if at(4) != Some(b'-') || at(7) != Some(b'-') || !matches!(at(10), Some(b'T' | b't' | b' ')) {
        return Err(TimeError::Unparsable);
    }
    let (hour, minute) = (num(11, 2)?, num(14, 2)?);
    if at(13) != Some(b':') {
        return Err(TimeError::Unparsable);
    }
    let mut i = 16;
    let mut second = 0.0;
    if at(i) == Some(b':') {
        second = num(i + 1, 2)? as f64;
        i += 3;
        if matches!(at(i), Some(b'.' | b',')) {
            let start = i + 1;
            let mut end = start;
            while at(end).is_some_and(|c| c.is_ascii_digit()) {
                end += 1;
            }
            if end == start {
                return Err(TimeError::Unparsable);
            }
            let frac: f64 = format!("0.{}", &s[start..end])
                .parse()
                .map_err(|_| TimeError::Unparsable)?;
            second += frac;
            i = end;
        }
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second >= 61.0
    {
        return Err(TimeError::Unparsable);
    }
    let offset = match &s[i..] {
        "" => return Err(TimeError::NoTimezone),
        "Z" | "z" => 0,
        tz => {
            let sign = match tz.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(TimeError::Unparsable),
            };
            let rest = &tz[1..];
            let digits: String = rest.chars().filter(|c| *c != ':').collect();
            let valid_shape =
                matches!(rest.len(), 2 | 4) || (rest.len() == 5 && rest.as_bytes()[2] == b':');
            if !valid_shape || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(TimeError::Unparsable);
            }
            let h: i64 = digits[..2].parse().map_err(|_| TimeError::Unparsable)?;
            let m: i64 = if digits.len() == 4 {
                digits[2..].parse().map_err(|_| TimeError::Unparsable)?
            } else {
                0
            };
            if h > 23 || m > 59 {
                return Err(TimeError::Unparsable);
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86400 + hour * 3600 + minute * 60 - offset;
    Ok(secs as f64 + second)
}

/// Now, in seconds since the Unix epoch.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

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
    /// The calendar time of `secs` since the Unix epoch (H. Hinnant's
    /// civil_from_days): the one conversion the daemon, the CLI and the
    /// data-directory names share.
    pub fn from_unix(secs: u64) -> Utc {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: month as u32,
            day: day as u32,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
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
            "2024-06-01T10:00:00 UTC",
            "2024-06-01",
            "2024-06-01T10:00:00.Z",
            "2024-06-01T10:00:00+2",
        ] {
            assert_eq!(parse(bad), Err(TimeError::Unparsable), "{bad}");
        }
    }
}
