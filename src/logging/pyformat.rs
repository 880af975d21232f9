//! Python's %-style format strings, as `logging.Formatter` reads `log.format`
//! (docs/configuration.md, "log"): `%(name)s` fields with Python's flags,
//! width, precision and conversion, `%%` for a percent sign. Parsed once per
//! configuration; rendering looks each field up through a closure, so the
//! same parse serves every line.

/// A value a field renders: Python's formatting differs by type (`%d` of a
/// float truncates, `%s` of a float prints it as Python's `str`).
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    Float(f64),
}

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Field(Spec),
}

/// `%(name)<flags><width>.<precision><conversion>`.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    name: String,
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    width: usize,
    precision: Option<usize>,
    conversion: char,
}

/// A parsed format string.
#[derive(Debug, Clone, PartialEq)]
pub struct PyFormat {
    pieces: Vec<Piece>,
}

impl PyFormat {
    /// Parse `text`. Python raises at the first line for a malformed field;
    /// here a `%` that does not start a well-formed field stays as text, so
    /// a typo shows in the log instead of silencing it.
    pub fn parse(text: &str) -> PyFormat {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                literal.push('%');
                rest = tail;
                continue;
            }
            match parse_spec(after) {
                Some((spec, used)) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(spec));
                    rest = &after[used..];
                }
                None => {
                    literal.push('%');
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        PyFormat { pieces }
    }

    /// The field names used, in order (python-json-logger takes the fields
    /// of a JSON line from them).
    pub fn fields(&self) -> Vec<&str> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Field(s) => Some(s.name.as_str()),
                Piece::Literal(_) => None,
            })
            .collect()
    }

    /// Render with `lookup` giving each field's value (`None`: unknown,
    /// rendered as an empty string).
    pub fn render(&self, lookup: &mut dyn FnMut(&str) -> Option<Val>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Field(spec) => {
                    let v = lookup(&spec.name).unwrap_or(Val::Str(String::new()));
                    out.push_str(&apply(spec, &v));
                }
            }
        }
        out
    }
}

/// Parse what follows a `%`: `(name)` then flags, width, precision and the
/// conversion. Returns the spec and the bytes used.
fn parse_spec(s: &str) -> Option<(Spec, usize)> {
    let body = s.strip_prefix('(')?;
    let close = body.find(')')?;
    let name = body[..close].to_owned();
    let mut i = 1 + close + 1;
    let bytes = s.as_bytes();
    let mut spec = Spec {
        name,
        left: false,
        zero: false,
        plus: false,
        space: false,
        width: 0,
        precision: None,
        conversion: 's',
    };
    while let Some(&b) = bytes.get(i) {
        match b {
            b'-' => spec.left = true,
            b'0' => spec.zero = true,
            b'+' => spec.plus = true,
            b' ' => spec.space = true,
            b'#' => {}
            _ => break,
        }
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        s[start..*i].parse::<usize>().ok()
    };
    spec.width = digits(&mut i).unwrap_or(0);
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        spec.precision = Some(digits(&mut i).unwrap_or(0));
    }
    // Python's length modifiers (`%(x)ld`) are accepted and ignored.
    while matches!(bytes.get(i), Some(b'h' | b'l' | b'L')) {
        i += 1;
    }
    let c = *bytes.get(i)?;
    if !b"sdifFrxXoeEgGca".contains(&c) {
        return None;
    }
    spec.conversion = c as char;
    Some((spec, i + 1))
}

/// Python's `str()` of a float: shortest round-trip digits, always with a
/// fractional part.
fn py_float(f: f64) -> String {
    let s = format!("{f}");
    if s.contains(['.', 'e', 'n', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

fn apply(spec: &Spec, v: &Val) -> String {
    let numeric = |n: String, negative: bool| {
        let sign = if negative {
            ""
        } else if spec.plus {
            "+"
        } else if spec.space {
            " "
        } else {
            ""
        };
        format!("{sign}{n}")
    };
    let body = match (spec.conversion, v) {
        ('d' | 'i', Val::Int(n)) => numeric(n.to_string(), *n < 0),
        ('d' | 'i', Val::Float(f)) => numeric((f.trunc() as i64).to_string(), *f < 0.0),
        ('x', Val::Int(n)) => format!("{n:x}"),
        ('X', Val::Int(n)) => format!("{n:X}"),
        ('o', Val::Int(n)) => format!("{n:o}"),
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Val::Int(n)) => numeric(
            format!("{:.*}", spec.precision.unwrap_or(6), *n as f64),
            *n < 0,
        ),
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Val::Float(f)) => {
            numeric(format!("{:.*}", spec.precision.unwrap_or(6), f), *f < 0.0)
        }
        ('r' | 'a', Val::Str(s)) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        (_, Val::Str(s)) => match spec.precision {
            Some(p) if matches!(spec.conversion, 's' | 'r' | 'a') => s.chars().take(p).collect(),
            _ => s.clone(),
        },
        (_, Val::Int(n)) => n.to_string(),
        (_, Val::Float(f)) => py_float(*f),
    };
    let len = body.chars().count();
    if len >= spec.width {
        return body;
    }
    let pad = spec.width - len;
    let is_number = !matches!(v, Val::Str(_)) && !matches!(spec.conversion, 's' | 'r' | 'a');
    if spec.left {
        format!("{body}{}", " ".repeat(pad))
    } else if spec.zero && is_number {
        // Zeros go after the sign.
        let (sign, digits) = match body.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), body[1..].to_owned()),
            _ => (String::new(), body.clone()),
        };
        format!("{sign}{}{digits}", "0".repeat(pad))
    } else {
        format!("{}{body}", " ".repeat(pad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(fmt: &str, fields: &[(&str, Val)]) -> String {
        PyFormat::parse(fmt)
            .render(&mut |n| fields.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
    }

    #[test]
    fn patroni_default_format() {
        let out = render(
            "%(asctime)s %(levelname)s: %(message)s",
            &[
                ("asctime", Val::Str("2026-12-05 11:21:49,123".into())),
                ("levelname", Val::Str("INFO".into())),
                ("message", Val::Str("no action. I am (node1)".into())),
            ],
        );
        assert_eq!(out, "2026-12-05 11:21:49,123 INFO: no action. I am (node1)");
    }

    #[test]
    fn flags_width_precision_and_conversions() {
        let f = [
            ("levelname", Val::Str("INFO".into())),
            ("msecs", Val::Float(7.9)),
            ("lineno", Val::Int(42)),
            ("process", Val::Int(-3)),
            ("created", Val::Float(1.5)),
            ("name", Val::Str("pgpilot::ha".into())),
        ];
        assert_eq!(render("[%(levelname)-8s]", &f), "[INFO    ]");
        assert_eq!(render("[%(levelname)8s]", &f), "[    INFO]");
        assert_eq!(render("%(msecs)03d", &f), "007");
        assert_eq!(render("%(lineno)d %(lineno)5d", &f), "42    42");
        assert_eq!(render("%(process)05d", &f), "-0003");
        assert_eq!(
            render("%(created)s %(created).3f %(created)f", &f),
            "1.5 1.500 1.500000"
        );
        assert_eq!(render("%(name).7s|%(name)r", &f), "pgpilot|'pgpilot::ha'");
        assert_eq!(render("%(lineno)x", &f), "2a");
    }

    #[test]
    fn percent_signs_and_malformed_fields_stay_text() {
        assert_eq!(render("100%% %(x", &[]), "100% %(x");
        assert_eq!(render("a % b %(y)q", &[]), "a % b %(y)q");
        assert_eq!(render("%(unknown)s|", &[]), "|");
    }

    #[test]
    fn fields_in_order() {
        let f = PyFormat::parse("%(asctime)s %(levelname)s: %(message)s");
        assert_eq!(f.fields(), ["asctime", "levelname", "message"]);
    }
}
