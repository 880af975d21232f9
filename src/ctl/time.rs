//! Small time helpers for the CLI: the `list -t` timestamp and the time-zone
//! check of `switchover --scheduled`.

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since the Unix epoch.
pub fn format_utc(secs: u64) -> String {
    crate::ha::iso8601::Utc::from_unix(secs).format(' ')
}

/// Does a date-time carry a zone (`Z`, `+02:00`, `-0500`, ` UTC`)? Read
/// as the daemon reads `scheduled_at` (src/ha/iso8601.rs); what it cannot
/// read at all is passed on for the daemon to refuse with its message.
pub fn has_timezone(ts: &str) -> bool {
    crate::ha::iso8601::parse(ts) != Err(crate::ha::iso8601::TimeError::NoTimezone)
}

/// `ts` with `+00:00` appended when it has no zone (patronictl appends the
/// local zone; pgpilotctl reads zone-less times as UTC).
pub fn with_timezone(ts: &str) -> String {
    if has_timezone(ts) {
        ts.trim().to_owned()
    } else {
        format!("{}+00:00", ts.trim())
    }
}

/// patronictl's `timestamp()`: `YYYY-MM-DD HH:MM:SS.fffff` (local time,
/// five digits of the second's fraction), before a switchover's answer.
pub fn patroni_timestamp(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:05}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond() / 10
    )
}

/// Now, in the local zone when it can be read (UTC otherwise).
pub fn now_local() -> time::OffsetDateTime {
    time::OffsetDateTime::now_local().unwrap_or_else(|_| time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patronictls_timestamp() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_798_761_599_123_456_789)
            .expect("time");
        assert_eq!(patroni_timestamp(t), "2026-12-31 23:59:59.12345");
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_798_761_599), "2026-12-31 23:59:59");
    }

    #[test]
    fn zones() {
        assert!(has_timezone("2030-01-01T10:00:00+02:00"));
        assert!(has_timezone("2030-01-01T10:00:00Z"));
        assert!(has_timezone("2030-01-01 10:00:00-0500"));
        assert!(!has_timezone("2030-01-01T10:00:00"));
        assert!(!has_timezone("2030-01-01T10:00:00.5"));
        assert_eq!(with_timezone("2030-01-01T10:00"), "2030-01-01T10:00+00:00");
        assert_eq!(with_timezone("2030-01-01T10:00Z"), "2030-01-01T10:00Z");
        // The lax forms the daemon (and Patroni) read.
        assert!(has_timezone("2030-01-01 10:00 UTC"));
        assert!(has_timezone("2030-1-1 9:00 +2"));
        assert!(!has_timezone("2030-01-01"));
        assert_eq!(
            with_timezone(" 2030-01-01 10:00 "),
            "2030-01-01 10:00+00:00"
        );
    }
}
