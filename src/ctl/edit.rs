//! `pgpilotctl edit-config`: `--set key=value` / `--pg name=value` applied to
//! the configuration as patronictl applies them, and a line diff of the
//! before/after YAML. `--apply FILE` merges with Patroni's `patch_config`
//! (src/config/patch.rs).

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// A value as patronictl reads it: YAML (`5` is a number, `true` a
/// boolean, `on` a string); an empty value or `null` deletes the key.
pub fn parse_value(raw: &str) -> anyhow::Result<Value> {
    if raw.trim().is_empty() {
        return Ok(Value::Null);
    }
    let v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(raw).with_context(|| format!("value {raw:?} is not valid YAML"))?;
    serde_json::to_value(v).with_context(|| format!("value {raw:?} cannot be expressed as JSON"))
}

/// The key path of a `--set` key: dots separate levels, except that
/// everything after `postgresql.parameters.` is one parameter name
/// (parameters like `pg_stat_statements.max` contain dots).
pub fn key_path(key: &str) -> anyhow::Result<Vec<String>> {
    if key.is_empty() || key.split('.').any(str::is_empty) {
        bail!("invalid key {key:?}: expected dotted names like postgresql.use_slots");
    }
    if let Some(param) = key.strip_prefix("postgresql.parameters.") {
        return Ok(vec!["postgresql".into(), "parameters".into(), param.into()]);
    }
    Ok(key.split('.').map(str::to_owned).collect())
}

fn split_kv<'a>(flag: &str, kv: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    kv.split_once('=')
        .with_context(|| format!("{flag} {kv:?}: expected name=value"))
}

/// Set `value` at `path`, or delete the key when `value` is null, as
/// patronictl's `set_path_value`: a non-object on the way becomes an object,
/// and a section left empty by a deletion goes too.
fn set_path(config: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((key, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        if value.is_null() {
            config.remove(key);
        } else {
            config.insert(key.clone(), value);
        }
        return;
    }
    let slot = config.entry(key.clone()).or_insert(Value::Null);
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    let emptied = match slot {
        Value::Object(child) => {
            set_path(child, rest, value);
            child.is_empty()
        }
        _ => false,
    };
    if emptied {
        config.remove(key);
    }
}

/// Apply `--set k=v` then `--pg name=value` options to the configuration
/// `doc` in order (a later option wins), as patronictl does.
pub fn apply_options(doc: &mut Value, sets: &[String], pgs: &[String]) -> anyhow::Result<()> {
    let Some(config) = doc.as_object_mut() else {
        bail!("the configuration is not a mapping");
    };
    for kv in sets {
        let (k, v) = split_kv("--set", kv)?;
        set_path(config, &key_path(k.trim())?, parse_value(v)?);
    }
    for kv in pgs {
        let (k, v) = split_kv("--pg", kv)?;
        let k = k.trim();
        if k.is_empty() {
            bail!("--pg {kv:?}: empty parameter name");
        }
        let path = ["postgresql", "parameters", k].map(str::to_owned);
        set_path(config, &path, parse_value(v)?);
    }
    Ok(())
}

/// A unified-style line diff (`-` removed, `+` added, two spaces kept);
/// empty when the texts are equal.
pub fn diff(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    if a == b {
        return String::new();
    }
    // Longest common subsequence table.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::from("---\n+++\n");
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", a[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_yaml() {
        assert_eq!(parse_value("5").unwrap(), json!(5));
        assert_eq!(parse_value("true").unwrap(), json!(true));
        assert_eq!(parse_value("16MB").unwrap(), json!("16MB"));
        assert_eq!(parse_value("").unwrap(), Value::Null);
        assert_eq!(parse_value("null").unwrap(), Value::Null);
        assert_eq!(parse_value("{a: 1}").unwrap(), json!({"a": 1}));
    }

    fn applied(mut doc: Value, sets: &[&str], pgs: &[&str]) -> anyhow::Result<Value> {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        apply_options(&mut doc, &own(sets), &own(pgs))?;
        Ok(doc)
    }

    #[test]
    fn dotted_keys_set_nested_values() {
        let doc = applied(
            json!({"loop_wait": 10, "synchronous_mode": true,
                   "postgresql": {"use_slots": true, "parameters": {"work_mem": "4MB"}}}),
            &[
                "loop_wait=2",
                "postgresql.use_slots=false",
                "postgresql.parameters.pg_stat_statements.max=1000",
                "synchronous_mode=",
            ],
            &["work_mem=16MB", "max_connections=200"],
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({
                "loop_wait": 2,
                "postgresql": {
                    "use_slots": false,
                    "parameters": {
                        "pg_stat_statements.max": 1000,
                        "work_mem": "16MB",
                        "max_connections": 200
                    }
                }
            })
        );
    }

    #[test]
    fn later_options_win_and_emptied_sections_go() {
        let doc = applied(json!({"a": 1}), &["a.b=2"], &[]).unwrap();
        assert_eq!(doc, json!({"a": {"b": 2}}));
        let doc = applied(json!({"a": {"c": 1}}), &["a={b: 1}"], &[]).unwrap();
        assert_eq!(doc, json!({"a": {"b": 1}}), "a mapping value replaces");
        let doc = applied(json!({"ttl": 30}), &["x.y="], &[]).unwrap();
        assert_eq!(doc, json!({"ttl": 30}), "no empty section left behind");
        let doc = applied(json!({"p": {"q": 1}}), &["p.q=null"], &["work_mem="]).unwrap();
        assert_eq!(doc, json!({}));
        let doc = applied(json!({}), &["a=1", "a.b=2", "a.b=3"], &[]).unwrap();
        assert_eq!(doc, json!({"a": {"b": 3}}));
    }

    #[test]
    fn bad_options_are_refused() {
        let bad = |sets: &[&str], pgs: &[&str]| applied(json!({}), sets, pgs).is_err();
        assert!(bad(&["loop_wait"], &[]));
        assert!(bad(&["a..b=1"], &[]));
        assert!(bad(&["=1"], &[]));
        assert!(bad(&[], &["=1"]));
        assert!(bad(&["a=[unclosed"], &[]));
        assert!(apply_options(&mut json!([1]), &[], &[]).is_err());
    }

    #[test]
    fn diff_marks_changed_lines() {
        assert_eq!(diff("a\nb\n", "a\nb\n"), "");
        let d = diff("a: 1\nb: 2\nc: 3\n", "a: 1\nb: 5\nc: 3\n");
        assert_eq!(d, "---\n+++\n  a: 1\n- b: 2\n+ b: 5\n  c: 3\n");
    }
}
