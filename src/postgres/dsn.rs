//! libpq connection strings as `pgpilot --generate-config --dsn` takes
//! them (Patroni's `parse_dsn`, libpq's `conninfo_to_dict`): `key=value`
//! pairs (values single-quoted with `\'` and `\\` escapes, or bare up to
//! the next space) or a `postgresql://` / `postgres://` URI (user,
//! password, host, port, database, then `?key=value` options).

use std::collections::BTreeMap;

/// A connection string libpq would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("missing \"=\" after {0:?} in the connection string")]
    MissingEquals(String),
    #[error("unterminated quoted string in the connection string")]
    Unterminated,
    #[error("invalid URI: {0}")]
    Uri(String),
}

/// The keywords and values of `dsn`, libpq's names (`user`, `dbname`,
/// `host`...).
pub fn parse_dsn(dsn: &str) -> Result<BTreeMap<String, String>, DsnError> {
    let t = dsn.trim();
    if t.starts_with("postgresql://") || t.starts_with("postgres://") {
        parse_uri(t)
    } else {
        parse_pairs(t)
    }
}

fn parse_pairs(s: &str) -> Result<BTreeMap<String, String>, DsnError> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(DsnError::MissingEquals(key));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(DsnError::Unterminated),
                    Some('\'') => break,
                    Some('\\') => value.push(chars.next().ok_or(DsnError::Unterminated)?),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.insert(key, value);
    }
}

fn parse_uri(s: &str) -> Result<BTreeMap<String, String>, DsnError> {
    let u = url::Url::parse(s).map_err(|e| DsnError::Uri(e.to_string()))?;
    let decode = percent_decode;
    let mut out = BTreeMap::new();
    if !u.username().is_empty() {
        out.insert("user".to_owned(), decode(u.username()));
    }
    if let Some(p) = u.password() {
        out.insert("password".to_owned(), decode(p));
    }
    if let Some(h) = u.host_str().filter(|h| !h.is_empty()) {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        out.insert("host".to_owned(), decode(h));
    }
    if let Some(p) = u.port() {
        out.insert("port".to_owned(), p.to_string());
    }
    let db = u.path().trim_start_matches('/');
    if !db.is_empty() {
        out.insert("dbname".to_owned(), decode(db));
    }
    for (k, v) in u.query_pairs() {
        out.insert(k.into_owned(), v.into_owned());
    }
    Ok(out)
}

/// `%XX` sequences decoded (a `+` stays a `+`, unlike in a query string).
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn keyword_value_pairs() {
        // A doubled quote is not libpq's escape: the value ends at the
        // second quote and `'s'` is a keyword without `=`, as libpq says.
        assert_eq!(
            parse_dsn("user=postgres password='it''s'"),
            Err(DsnError::MissingEquals("'s'".into()))
        );
        assert_eq!(parse_dsn("password='open"), Err(DsnError::Unterminated));
        assert_eq!(
            parse_dsn(r"host=/var/run/postgresql port = 5433 user=postgres password='it\'s a \\ pw' sslmode=disable")
                .unwrap(),
            m(&[
                ("host", "/var/run/postgresql"),
                ("port", "5433"),
                ("user", "postgres"),
                ("password", r"it's a \ pw"),
                ("sslmode", "disable"),
            ])
        );
        assert_eq!(parse_dsn("  ").unwrap(), m(&[]));
        assert_eq!(
            parse_dsn("host localhost"),
            Err(DsnError::MissingEquals("host".into()))
        );
    }

    #[test]
    fn uris() {
        assert_eq!(
            parse_dsn("postgresql://admin:p%40s+s@db.example:6432/app?sslmode=require").unwrap(),
            m(&[
                ("user", "admin"),
                ("password", "p@s+s"),
                ("host", "db.example"),
                ("port", "6432"),
                ("dbname", "app"),
                ("sslmode", "require"),
            ])
        );
        assert_eq!(
            parse_dsn("postgres://%2Fvar%2Frun%2Fpostgresql/postgres").unwrap(),
            m(&[("host", "/var/run/postgresql"), ("dbname", "postgres")])
        );
        assert_eq!(
            parse_dsn("postgresql://[::1]:5432").unwrap(),
            m(&[("host", "::1"), ("port", "5432")])
        );
    }
}
