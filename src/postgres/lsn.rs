//! WAL positions as PostgreSQL prints them (`16/B374D848`), parsed into
//! this module's error type; the pure code is `crate::ha::lsn`.

use super::error::{PgError, PgResult};

pub use crate::ha::lsn::format;

/// Parses `X/Y` (both hex, each at most 32 bits) into a byte position.
pub fn parse(text: &str) -> PgResult<u64> {
    crate::ha::lsn::parse(text).ok_or_else(|| PgError::parse("LSN", format!("{text:?}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_name_the_text() {
        assert_eq!(super::parse("16/B374D848").unwrap(), 0x16_B374_D848);
        let e = super::parse("1/2/3").unwrap_err().to_string();
        assert!(e.contains("LSN") && e.contains("1/2/3"), "{e}");
    }
}
