//! `restapi.http_extra_headers` / `https_extra_headers`: the syntax of one
//! configured header, checked when the configuration is validated. The
//! REST API builds the headers from entries that pass
//! (`crate::api::headers`); a test there checks both agree.

use std::collections::BTreeMap;

/// Headers that would break the HTTP framing or the connection handling.
pub const RESERVED: [&str; 6] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
];

/// The characters of a header name: RFC 9110's `tchar`, and `"`, which
/// the HTTP types the API builds headers with accept too (so a name that
/// worked keeps working).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!\"#$%&'*+-.^_`|~".contains(&b)
}

/// What is wrong with one configured header, if anything: a valid token
/// as its name, visible ASCII (and spaces, tabs) as its value, not a
/// framing header.
pub fn problem(name: &str, value: &str) -> Option<String> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Some(format!("{name:?} is not a valid HTTP header name"));
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Some(format!(
            "{name:?} cannot be set: the server manages this header"
        ));
    }
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Some(format!(
            "{name}: {value:?} is not a valid HTTP header value (visible ASCII only)"
        ));
    }
    None
}

/// Every problem of one map, each a message for its key.
pub fn check(map: Option<&BTreeMap<String, String>>) -> Vec<String> {
    map.into_iter()
        .flatten()
        .filter_map(|(n, v)| problem(n, v))
        .collect()
}
