//! `synchronous_standby_names`: the value pgpilot writes and how a value
//! PostgreSQL runs with reads (docs/replication-modes.md §3), as Patroni's
//! `postgresql/sync.py` builds and parses it.

/// The name that matches no standby: with it alone in the list every commit
/// waits (strict mode without a standby). Patroni's, so either reads the
/// other's value.
pub const STRICT_PLACEHOLDER: &str = "__patroni_strict_sync_replica_placeholder__";

/// What a `synchronous_standby_names` value asks of PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StandbyNames {
    /// `None`: off (empty value); `Some(false)`: `FIRST`/priority,
    /// `Some(true)`: `ANY`/quorum.
    pub quorum: Option<bool>,
    /// How many standbys must confirm a commit.
    pub num: u32,
    /// The names listed, as written (placeholder dropped).
    pub members: Vec<String>,
    /// `*` is listed: any standby counts.
    pub has_star: bool,
}

impl StandbyNames {
    /// `name` is listed (case-insensitively, as PostgreSQL matches).
    pub fn lists(&self, name: &str) -> bool {
        self.members.iter().any(|m| m.eq_ignore_ascii_case(name))
    }
}

/// A standby name as the list needs it: bare when it is a plain identifier
/// other than the keywords `first` and `any`, else double-quoted.
pub fn quote_standby_name(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if plain && !name.eq_ignore_ascii_case("first") && !name.eq_ignore_ascii_case("any") {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The value for `standbys` with `num` of them required (`None`: all).
/// No standby and no `num`: empty (asynchronous). No standby but `num` >=
/// 1: the placeholder, so commits wait (strict mode). One standby: its
/// name. More: `FIRST n (a,b)` (priority) or `ANY n (a,b)` (quorum), names
/// sorted.
pub fn standby_names_value(standbys: &[String], num: Option<u32>, quorum: bool) -> String {
    let mut raw: Vec<&String> = standbys.iter().collect();
    raw.sort_unstable();
    raw.dedup();
    let mut names: Vec<String> = raw.into_iter().map(|s| quote_standby_name(s)).collect();
    if names.is_empty() {
        return if num.unwrap_or(0) >= 1 {
            STRICT_PLACEHOLDER.to_owned()
        } else {
            String::new()
        };
    }
    let n = num.unwrap_or(names.len() as u32);
    if names.len() == 1 && !quorum {
        return names.remove(0);
    }
    let kind = if quorum { "ANY" } else { "FIRST" };
    format!("{kind} {n} ({})", names.join(","))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    First,
    Any,
    Ident(String),
    Quoted(String),
    Star,
    Num(u32),
    Comma,
    Open,
    Close,
}

fn tokens(value: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            ',' | '(' | ')' | '*' => {
                chars.next();
                out.push(match c {
                    ',' => Token::Comma,
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Star,
                });
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            s.push('"');
                        }
                        '"' => break,
                        ch => s.push(ch),
                    }
                }
                out.push(Token::Quoted(s));
            }
            c if c.is_ascii_digit() => {
                let mut s = String::new();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    s.push(d);
                    chars.next();
                }
                out.push(Token::Num(s.parse().ok()?));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                while let Some(&d) = chars
                    .peek()
                    .filter(|d| d.is_ascii_alphanumeric() || **d == '_' || **d == '$')
                {
                    s.push(d);
                    chars.next();
                }
                out.push(if s.eq_ignore_ascii_case("first") {
                    Token::First
                } else if s.eq_ignore_ascii_case("any") {
                    Token::Any
                } else {
                    Token::Ident(s)
                });
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Read a value as PostgreSQL would (Patroni's `parse_sync_standby_names`).
/// `None`: unparsable; PostgreSQL refuses it, and it is treated as off.
pub fn parse_standby_names(value: &str) -> Option<StandbyNames> {
    let toks = tokens(value)?;
    if toks.is_empty() {
        return Some(StandbyNames::default());
    }
    let closed = toks.last() == Some(&Token::Close);
    let (quorum, num, list) = match toks.as_slice() {
        [Token::Any, Token::Num(n), Token::Open, rest @ ..] if closed => {
            (true, *n, &rest[..rest.len() - 1])
        }
        [Token::First, Token::Num(n), Token::Open, rest @ ..] if closed => {
            (false, *n, &rest[..rest.len() - 1])
        }
        [Token::Num(n), Token::Open, rest @ ..] if closed => (false, *n, &rest[..rest.len() - 1]),
        all => (false, 1, all),
    };
    let mut names = StandbyNames {
        quorum: Some(quorum),
        num,
        ..StandbyNames::default()
    };
    for (i, t) in list.iter().enumerate() {
        if i % 2 == 1 {
            if t != &Token::Comma || i + 1 == list.len() {
                return None;
            }
            continue;
        }
        match t {
            Token::Ident(s) | Token::Quoted(s) => names.members.push(s.clone()),
            Token::First => names.members.push("first".into()),
            Token::Any => names.members.push("any".into()),
            Token::Star => {
                names.members.push("*".into());
                names.has_star = true;
            }
            _ => return None,
        }
    }
    if names.members.len() == 1 && names.members[0] == STRICT_PLACEHOLDER {
        names.members.clear();
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn builds_values() {
        assert_eq!(standby_names_value(&[], None, false), "");
        assert_eq!(standby_names_value(&[], Some(0), false), "");
        assert_eq!(standby_names_value(&[], Some(1), false), STRICT_PLACEHOLDER);
        assert_eq!(standby_names_value(&v(&["b"]), None, false), "b");
        assert_eq!(
            standby_names_value(&v(&["c", "b"]), None, false),
            "FIRST 2 (b,c)"
        );
        assert_eq!(
            standby_names_value(&v(&["c", "b"]), Some(1), true),
            "ANY 1 (b,c)"
        );
        assert_eq!(
            standby_names_value(&v(&["node-1", "First"]), None, false),
            "FIRST 2 (\"First\",\"node-1\")"
        );
    }

    #[test]
    fn parses_values() {
        let p = parse_standby_names("").unwrap();
        assert_eq!(p.quorum, None);
        assert!(p.members.is_empty());
        let p = parse_standby_names("FIRST 2 (b,\"node-1\")").unwrap();
        assert_eq!((p.quorum, p.num), (Some(false), 2));
        assert_eq!(p.members, v(&["b", "node-1"]));
        assert!(p.lists("B"));
        let p = parse_standby_names("2 (a,b)").unwrap();
        assert_eq!((p.quorum, p.num), (Some(false), 2));
        let p = parse_standby_names("ANY 4(\"a\",*,b)").unwrap();
        assert_eq!((p.quorum, p.num, p.has_star), (Some(true), 4, true));
        let p = parse_standby_names(" a , b ").unwrap();
        assert_eq!((p.num, p.members.len()), (1, 2));
        let p = parse_standby_names(STRICT_PLACEHOLDER).unwrap();
        assert!(p.members.is_empty());
        assert_eq!(p.quorum, Some(false));
        for bad in [
            "1",
            "a,",
            "ANY 4(\"a\" b,\"c c\")",
            "FIRST 4(\"a\",)",
            "2 (,)",
            "a;b",
        ] {
            assert!(parse_standby_names(bad).is_none(), "{bad}");
        }
        // What pgpilot writes reads back as written.
        for names in [v(&["a"]), v(&["a", "b-c"])] {
            let p = parse_standby_names(&standby_names_value(&names, None, false)).unwrap();
            assert_eq!(p.members, names);
            assert_eq!(p.num as usize, names.len());
        }
    }
}
