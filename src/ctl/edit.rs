//! `pgpilotctl edit-config`: `--set key=value` / `--pg name=value` turned
//! into the JSON merge patch sent with `PATCH /config`, the merge itself (to
//! show what will change) and a line diff of the before/after YAML.

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

/// Set `value` at `path` in `patch`, creating objects on the way.
fn insert(patch: &mut Map<String, Value>, path: &[String], value: Value) -> anyhow::Result<()> {
    let (last, parents) = path.split_last().context("empty key")?;
    let mut cur = patch;
    for (i, p) in parents.iter().enumerate() {
        let slot = cur
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            bail!(
                "key {} is set both as a value and as a section",
                path[..=i].join(".")
            );
        }
        cur = slot.as_object_mut().expect("checked");
    }
    cur.insert(last.clone(), value);
    Ok(())
}

/// The merge patch for `--set k=v` and `--pg name=value` options.
pub fn build_patch(sets: &[String], pgs: &[String]) -> anyhow::Result<Value> {
    let mut patch = Map::new();
    for kv in sets {
        let (k, v) = split_kv("--set", kv)?;
        insert(&mut patch, &key_path(k)?, parse_value(v)?)?;
    }
    for kv in pgs {
        let (k, v) = split_kv("--pg", kv)?;
        if k.is_empty() {
            bail!("--pg {kv:?}: empty parameter name");
        }
        let path = ["postgresql", "parameters", k].map(str::to_owned);
        insert(&mut patch, &path, parse_value(v)?)?;
    }
    Ok(Value::Object(patch))
}

/// RFC 7386 merge, as `PATCH /config` applies it: `null` deletes, objects
/// merge recursively, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge patch that turns `before` into `after`: removed keys become
/// `null`, objects recurse, other changes are the new value.
pub fn patch_between(before: &Value, after: &Value) -> Value {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut p = Map::new();
            for k in b.keys() {
                if !a.contains_key(k) {
                    p.insert(k.clone(), Value::Null);
                }
            }
            for (k, av) in a {
                match b.get(k) {
                    Some(bv) if bv == av => {}
                    Some(bv @ Value::Object(_)) if av.is_object() => {
                        p.insert(k.clone(), patch_between(bv, av));
                    }
                    _ => {
                        p.insert(k.clone(), av.clone());
                    }
                }
            }
            Value::Object(p)
        }
        _ => after.clone(),
    }
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

    #[test]
    fn dotted_keys_build_nested_patch() {
        let p = build_patch(
            &[
                "loop_wait=2".into(),
                "postgresql.use_slots=false".into(),
                "postgresql.parameters.pg_stat_statements.max=1000".into(),
                "synchronous_mode=".into(),
            ],
            &["work_mem=16MB".into(), "max_connections=200".into()],
        )
        .unwrap();
        assert_eq!(
            p,
            json!({
                "loop_wait": 2,
                "synchronous_mode": null,
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
    fn bad_options_are_refused() {
        assert!(build_patch(&["loop_wait".into()], &[]).is_err());
        assert!(build_patch(&["a..b=1".into()], &[]).is_err());
        assert!(build_patch(&["=1".into()], &[]).is_err());
        let e = build_patch(&["a=1".into(), "a.b=2".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("a"), "{e}");
        assert!(build_patch(&[], &["=1".into()]).is_err());
    }

    #[test]
    fn merge_follows_rfc7386() {
        let mut t = json!({"ttl": 30, "postgresql": {"parameters": {"a": 1, "b": 2}}, "x": 1});
        merge(
            &mut t,
            &json!({"ttl": 20, "x": null, "postgresql": {"parameters": {"a": null, "c": 3}}}),
        );
        assert_eq!(
            t,
            json!({"ttl": 20, "postgresql": {"parameters": {"b": 2, "c": 3}}})
        );
    }

    #[test]
    fn patch_between_round_trips() {
        let before = json!({"ttl": 30, "x": 1, "postgresql": {"parameters": {"a": 1, "b": 2}, "use_slots": true}});
        let after = json!({"ttl": 20, "postgresql": {"parameters": {"b": 2, "c": 3}, "use_slots": true}, "new": [1]});
        let p = patch_between(&before, &after);
        assert_eq!(
            p,
            json!({"ttl": 20, "x": null, "new": [1], "postgresql": {"parameters": {"a": null, "c": 3}}})
        );
        let mut t = before.clone();
        merge(&mut t, &p);
        assert_eq!(t, after);
        assert_eq!(patch_between(&after, &after), json!({}));
    }

    #[test]
    fn diff_marks_changed_lines() {
        assert_eq!(diff("a\nb\n", "a\nb\n"), "");
        let d = diff("a: 1\nb: 2\nc: 3\n", "a: 1\nb: 5\nc: 3\n");
        assert_eq!(d, "---\n+++\n  a: 1\n- b: 2\n+ b: 5\n  c: 3\n");
    }
}
