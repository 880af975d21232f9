//! Go's duration strings (`time.ParseDuration`), the form Consul reads for
//! `wait`, a session's `TTL` and `LockDelay`, a check's `interval`:
//! `"10s"`, `"1.5s"`, `"1m30s"`, `"0.001s"`, `"300ms"`.

use std::time::Duration;

/// Parse a Go duration string; `None` if it is not one.
pub fn parse(text: &str) -> Option<Duration> {
    let s = text.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Some(Duration::from_secs_f64(total))
}

/// A duration as Go prints one for whole seconds and below (`"10s"`,
/// `"1.5s"`, `"24h0m0s"`): what Consul's error messages show.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        return format!("{}h{}m{}s", secs / 3600, (secs % 3600) / 60, secs % 60);
    }
    if secs >= 60 {
        return format!("{}m{}s", secs / 60, secs % 60);
    }
    let f = d.as_secs_f64();
    if f.fract() == 0.0 {
        format!("{secs}s")
    } else {
        format!("{f}s")
    }
}
