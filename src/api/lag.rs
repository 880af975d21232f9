//! The `lag` query parameter of the health checks (docs/rest-api.md, "Health
//! checks (GET/HEAD/OPTIONS)"), read exactly as Patroni reads it:
//! `parse_int(value, 'B')` of its `utils.py`, which imitates PostgreSQL's GUC
//! parser (C `strtol` with base 0, falling back to `strtod`, then a memory
//! unit).
//!
//! So `1.5MB`, `0x400kB`, `1e3`, `010` (octal: 8) and `  16 MB ` all mean
//! what they mean to Patroni, and a value Patroni cannot parse is `None`
//! here too (Patroni then applies no limit). Values are `i128` because
//! Python's integers are unbounded: a huge limit saturates instead of
//! failing to parse.

/// Patroni's `parse_int(value, 'B')`: bytes, or `None` when Patroni's
/// parser returns `None`.
pub fn parse_lag(value: &str) -> Option<i128> {
    let value = value.trim();
    let (int, rest) = match strtol(value) {
        Some((n, rest)) => (Some(n), rest),
        None => (None, value),
    };
    // Python: `val is None and unit.startswith('.') or unit and unit[0] in '.eE'`.
    let (number, unit) = if rest.starts_with(['.', 'e', 'E']) {
        let (f, rest) = strtod(value)?;
        (Number::Real(f), rest)
    } else {
        (Number::Int(int?), rest)
    };
    let unit = unit.trim();
    if unit.is_empty() {
        return number.rounded();
    }
    to_bytes(number, unit)
}

#[derive(Debug, Clone, Copy)]
enum Number {
    Int(i128),
    Real(f64),
}

impl Number {
    /// Python's `round()` of the value: half to even, as an integer. An
    /// infinite or NaN value makes Python raise; it counts as unparsable.
    fn rounded(self) -> Option<i128> {
        match self {
            Number::Int(n) => Some(n),
            Number::Real(f) => round_even(f),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            // Python turns an int to float the same way (nearest).
            Number::Int(n) => n as f64,
            Number::Real(f) => f,
        }
    }
}

fn round_even(f: f64) -> Option<i128> {
    // `as` saturates, as Python's unbounded int would not; only limits
    // beyond any WAL position are affected.
    f.is_finite().then(|| f.round_ties_even() as i128)
}

/// `convert_to_base_unit(value, unit, 'B')`, then `round()`: the unit is
/// case-sensitive, and the value is first rounded to whole units of the
/// next smaller unit (`1.0001TB` to whole GB), as Patroni does.
fn to_bytes(number: Number, unit: &str) -> Option<i128> {
    const KB: f64 = 1024.0;
    // (bytes per unit, bytes per next smaller unit)
    let (mult, next): (f64, Option<f64>) = match unit {
        "TB" => (KB * KB * KB * KB, Some(KB * KB * KB)),
        "GB" => (KB * KB * KB, Some(KB * KB)),
        "MB" => (KB * KB, Some(KB)),
        "kB" => (KB, Some(1.0)),
        "B" => (1.0, None),
        _ => return None,
    };
    let mut v = number.as_f64() * mult;
    if let Some(m) = next {
        v = (v / m).round_ties_even() * m;
    }
    round_even(v)
}

/// C `strtol` with base 0 as Patroni's regexes have it, tried in this
/// order: hex `[-+]?0x[0-9a-fA-F]+` (lower-case `x` only), octal
/// `[-+]?0[0-7]*`, decimal `[-+]?(0|[1-9][0-9]*)`. Returns the number and
/// the rest of the text; `None` when none matches.
fn strtol(s: &str) -> Option<(i128, &str)> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let sign_len = s.len() - body.len();
    let (radix, digits_start) =
        if body.starts_with("0x") && body[2..].starts_with(|c: char| c.is_ascii_hexdigit()) {
            (16, 2)
        } else if body.starts_with('0') {
            (8, 1)
        } else if body.starts_with(|c: char| matches!(c, '1'..='9')) {
            (10, 0)
        } else {
            return None;
        };
    let digits_len = body[digits_start..]
        .bytes()
        .take_while(|b| char::from(*b).is_digit(radix))
        .count();
    let digits = &body[digits_start..digits_start + digits_len];
    let mut n: i128 = 0;
    for d in digits.chars() {
        let d = i128::from(d.to_digit(radix).unwrap_or(0));
        n = n.saturating_mul(i128::from(radix)).saturating_add(d);
    }
    let end = sign_len + digits_start + digits_len;
    Some((if neg { -n } else { n }, &s[end..]))
}

/// C `strtod` as Patroni's regex has it: `[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?`
/// (no `inf`, no `nan`, no hex floats).
fn strtod(s: &str) -> Option<(f64, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let int_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    // `[0-9]*\.?[0-9]+`: at least one digit after an optional dot; with
    // no dot the integer digits are that `[0-9]+` (the regex backtracks).
    let frac_digits = if b.get(i) == Some(&b'.') {
        b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count()
    } else {
        0
    };
    if frac_digits > 0 {
        i += 1 + frac_digits;
    } else if int_digits == 0 {
        return None;
    }
    // Optional exponent, taken only when complete.
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'-' | b'+')) {
            j += 1;
        }
        let exp_digits = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits > 0 {
            i = j + exp_digits;
        }
    }
    let f: f64 = s[..i].parse().ok()?;
    Some((f, &s[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row is what `patroni.utils.parse_int(value, 'B')` of Patroni
    /// 4.1.5 returns (checked with its Python).
    #[test]
    fn patroni_forms() {
        let cases: &[(&str, Option<i128>)] = &[
            // plain integers and units
            ("0", Some(0)),
            ("1024", Some(1024)),
            ("16MB", Some(16 << 20)),
            (" 16 MB ", Some(16 << 20)),
            ("1kB", Some(1024)),
            ("10B", Some(10)),
            ("2GB", Some(2 << 30)),
            ("1TB", Some(1 << 40)),
            ("+5", Some(5)),
            ("-1", Some(-1)),
            // decimals
            ("1.5MB", Some(1_572_864)),
            ("0.5MB", Some(524_288)),
            (".5MB", Some(524_288)),
            ("1.5", Some(2)),
            ("2.5", Some(2)),
            ("0.5", Some(0)),
            ("1.0001TB", Some(1 << 40)),
            ("1.7kB", Some(1741)),
            ("0.3B", Some(0)),
            // exponents
            ("1e3", Some(1000)),
            ("1E3kB", Some(1_024_000)),
            ("2.5e-1MB", Some(262_144)),
            ("1e", None),
            // hex and octal
            ("0x400", Some(1024)),
            ("0x400kB", Some(1 << 20)),
            ("-0x10", Some(-16)),
            ("0X400", None),
            ("010", Some(8)),
            ("08", None),
            ("0x", None),
            // unparsable
            ("1KB", None),
            ("1mb", None),
            ("MB", None),
            ("", None),
            ("abc", None),
            ("e5", None),
            ("1.5 M B", None),
            ("1ms", None),
            ("-.5", None),
            // Python's float arithmetic, then an unbounded int
            ("99999999999TB", Some(109_951_162_776_500_488_372_224)),
        ];
        for (v, want) in cases {
            assert_eq!(parse_lag(v), *want, "parse_lag({v:?})");
        }
    }

    #[test]
    fn beyond_patroni() {
        // Python's int has no bound; here the limit saturates, still
        // beyond any WAL position.
        assert!(parse_lag(&"9".repeat(60)).is_some_and(|n| n > i128::from(u64::MAX)));
        // Patroni raises OverflowError (no reply at all); here: unparsable.
        assert_eq!(parse_lag("1e400"), None);
    }
}
