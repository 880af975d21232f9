//! `log.dateformat`: the C `strftime` directives Python's `time.strftime`
//! passes through on Linux (Patroni's `asctime` comes from
//! `logging.Formatter.formatTime`), and Python's default when no date format
//! is set: `%Y-%m-%d %H:%M:%S` then `,` and the milliseconds
//! (`2026-12-05 11:21:49,123`). A custom date format has no milliseconds, as
//! in Python (the format's `%(msecs)03d` gives them). An unknown directive
//! is written as it stands, as glibc does.

use time::OffsetDateTime;

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `asctime` for `t`: `dateformat` when set, else Python's default.
pub fn asctime(t: OffsetDateTime, dateformat: Option<&str>) -> String {
    match dateformat {
        Some(f) => strftime(t, f),
        None => format!(
            "{},{:03}",
            strftime(t, "%Y-%m-%d %H:%M:%S"),
            t.millisecond()
        ),
    }
}

/// C `strftime` of `t` (in its own offset).
pub fn strftime(t: OffsetDateTime, format: &str) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        directive(t, d, &mut out);
    }
    out
}

fn directive(t: OffsetDateTime, d: char, out: &mut String) {
    use std::fmt::Write;
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let day = DAYS[t.weekday().number_days_from_monday() as usize];
    let month = MONTHS[usize::from(u8::from(t.month())) - 1];
    let offset = t.offset();
    let _ = match d {
        'Y' => write!(out, "{}", t.year()),
        'C' => write!(out, "{:02}", t.year().div_euclid(100)),
        'y' => write!(out, "{:02}", t.year().rem_euclid(100)),
        'm' => write!(out, "{:02}", u8::from(t.month())),
        'd' => write!(out, "{:02}", t.day()),
        'e' => write!(out, "{:2}", t.day()),
        'H' => write!(out, "{:02}", t.hour()),
        'k' => write!(out, "{:2}", t.hour()),
        'I' => write!(out, "{hour12:02}"),
        'l' => write!(out, "{hour12:2}"),
        'M' => write!(out, "{:02}", t.minute()),
        'S' => write!(out, "{:02}", t.second()),
        'j' => write!(out, "{:03}", t.ordinal()),
        'p' => write!(out, "{}", if t.hour() < 12 { "AM" } else { "PM" }),
        'P' => write!(out, "{}", if t.hour() < 12 { "am" } else { "pm" }),
        'a' => write!(out, "{}", &day[..3]),
        'A' => write!(out, "{day}"),
        'b' | 'h' => write!(out, "{}", &month[..3]),
        'B' => write!(out, "{month}"),
        'u' => write!(out, "{}", t.weekday().number_from_monday()),
        'w' => write!(out, "{}", t.weekday().number_days_from_sunday()),
        's' => write!(out, "{}", t.unix_timestamp()),
        'z' => {
            let (h, m, _) = offset.as_hms();
            let sign = if offset.is_negative() { '-' } else { '+' };
            write!(out, "{sign}{:02}{:02}", h.abs(), m.abs())
        }
        // The zone's name is not known here (the offset is): UTC by name,
        // any other zone as its offset.
        'Z' => {
            if offset.is_utc() {
                write!(out, "UTC")
            } else {
                directive(t, 'z', out);
                Ok(())
            }
        }
        'F' => write!(out, "{}", strftime(t, "%Y-%m-%d")),
        'T' => write!(out, "{}", strftime(t, "%H:%M:%S")),
        'R' => write!(out, "{}", strftime(t, "%H:%M")),
        'D' | 'x' => write!(out, "{}", strftime(t, "%m/%d/%y")),
        'X' => write!(out, "{}", strftime(t, "%H:%M:%S")),
        'r' => write!(out, "{}", strftime(t, "%I:%M:%S %p")),
        'c' => write!(out, "{}", strftime(t, "%a %b %e %H:%M:%S %Y")),
        'n' => writeln!(out),
        't' => write!(out, "\t"),
        '%' => write!(out, "%"),
        other => write!(out, "%{other}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

    fn at(day: u8, h: u8, m: u8, s: u8, micro: u32, off: (i8, i8)) -> OffsetDateTime {
        let date = Date::from_calendar_date(2026, Month::December, day).expect("date");
        let time = Time::from_hms_micro(h, m, s, micro).expect("time");
        let off = UtcOffset::from_hms(off.0, off.1, 0).expect("offset");
        PrimitiveDateTime::new(date, time).assume_offset(off)
    }

    #[test]
    fn python_default_has_milliseconds_after_a_comma() {
        let t = at(5, 11, 21, 49, 123_456, (0, 0));
        assert_eq!(asctime(t, None), "2026-12-05 11:21:49,123");
        let t = at(2, 3, 4, 5, 7_000, (0, 0));
        assert_eq!(asctime(t, None), "2026-12-02 03:04:05,007");
    }

    #[test]
    fn custom_dateformat_as_c_strftime() {
        let t = at(5, 15, 21, 9, 500_000, (0, 0));
        assert_eq!(
            asctime(t, Some("%Y-%m-%dT%H:%M:%S%z")),
            "2026-12-05T15:21:09+0000"
        );
        assert_eq!(
            strftime(t, "%a %A %b %B %d %e|%I %p %j %y"),
            "Sat Saturday Dec December 05  5|03 PM 339 26"
        );
        assert_eq!(
            strftime(t, "%F %T %Z %s %%"),
            "2026-12-05 15:21:09 UTC 1796484069 %"
        );
        assert_eq!(strftime(t, "%q %"), "%q %");
        let t = at(5, 15, 21, 9, 0, (-5, -30));
        assert_eq!(strftime(t, "%z %Z"), "-0530 -0530");
    }
}
