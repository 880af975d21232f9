//! WAL positions as PostgreSQL prints them (`16/B374D848`) and as u64.
//! Pure: the history key and the lag checks read them; the PostgreSQL side
//! wraps the parse in its own error (`crate::postgres::lsn`).

/// Parses `X/Y` (both hex, each at most 32 bits) into a byte position;
/// `None` when the text is not one.
pub fn parse(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
        return None;
    }
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// Formats a byte position the way PostgreSQL does: upper-case hex, no padding.
pub fn format(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(parse("0/0"), Some(0));
        assert_eq!(parse("0/17414F8"), Some(0x17414F8));
        assert_eq!(parse("16/b374d848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(format(0x16_B374_D848), "16/B374D848");
        assert_eq!(format(0), "0/0");
        let max = parse("FFFFFFFF/FFFFFFFF").unwrap();
        assert_eq!(max, u64::MAX);
        assert_eq!(format(max), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "0", "/1", "1/", "x/1", "1/2/3", "100000000/0"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
