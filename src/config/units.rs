//! Sizes with PostgreSQL units, shared by the config checks and the REST
//! API's `?lag=`.

/// Parse a size the way PostgreSQL (and Patroni's `parse_int(v, 'B')`) does:
/// an integer with an optional unit `B`, `kB`, `MB`, `GB`, `TB` (powers of
/// 1024, case-sensitive), bytes by default. `None` when invalid.
pub fn parse_size(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    let mult: i64 = match unit.trim() {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("16"), Some(16));
        assert_eq!(parse_size("1kB"), Some(1024));
        assert_eq!(parse_size(" 16MB "), Some(16 << 20));
        assert_eq!(parse_size("2GB"), Some(2 << 30));
        assert_eq!(parse_size("1mb"), None);
        assert_eq!(parse_size("x"), None);
    }
}
