//! Operations on the untyped YAML tree: normalisation of Patroni-isms and
//! unknown-key detection.

use serde_yaml_ng::{Mapping, Value};

use super::schema::{Kind, kind_of, parse_bool};

/// A mapping key as text (`None` for sequences/mappings used as keys).
pub(crate) fn key_str(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".to_owned()),
        _ => None,
    }
}

/// Split `a.b[2].c` into `["a", "b", "c"]` (sequence indexes dropped).
pub(crate) fn split_path(path: &str) -> Vec<String> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .map(|s| s.split('[').next().unwrap_or(s).to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether `root` has a value at `path` (indexes ignored).
pub(crate) fn defines(root: &Value, path: &[String]) -> bool {
    let mut cur = root;
    for seg in path {
        match cur.as_mapping().and_then(|m| get(m, seg)) {
            Some(v) => cur = v,
            None => return false,
        }
    }
    true
}

pub(crate) fn get<'a>(m: &'a Mapping, key: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| key_str(k).as_deref() == Some(key))
        .map(|(_, v)| v)
}

/// Insert `value` at `path`, creating intermediate mappings.
pub(crate) fn insert(root: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = root;
    for seg in parents {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Mapping::new());
        }
        let m = cur.as_mapping_mut().expect("mapping");
        let k = Value::String(seg.clone());
        if !m.get(&k).is_some_and(Value::is_mapping) {
            m.insert(k.clone(), Value::Mapping(Mapping::new()));
        }
        cur = m.get_mut(&k).expect("just inserted");
    }
    if !cur.is_mapping() {
        *cur = Value::Mapping(Mapping::new());
    }
    cur.as_mapping_mut()
        .expect("mapping")
        .insert(Value::String(last.clone()), value);
}

/// Bring a merged tree into the shape the typed structs expect, accepting
/// what PyYAML would have accepted for Patroni:
/// * legacy `postgresql.name` supplies a missing top-level `name`;
/// * boolean keys accept `on/off/yes/no/true/false/1/0` strings;
/// * integer keys accept numeric strings;
/// * string keys accept numbers and booleans (`password: 12345`).
pub(crate) fn normalize(root: &mut Value) {
    if let Some(m) = root.as_mapping_mut()
        && get(m, "name").is_none()
        && let Some(n) = m.get("postgresql").and_then(|p| p.get("name")).cloned()
    {
        m.insert(Value::String("name".into()), n);
    }
    exhibitor_out_of_zookeeper(root);
    coerce(root, &mut Vec::new());
}

/// Patroni's old spelling, `zookeeper: {exhibitor: {...}}`: the inner
/// section becomes the top-level `exhibitor` one and `zookeeper` is
/// dropped, as Patroni's config loader does (docs/configuration.md §4.4).
fn exhibitor_out_of_zookeeper(root: &mut Value) {
    let Some(m) = root.as_mapping_mut() else {
        return;
    };
    let inner = m
        .get_mut("zookeeper")
        .and_then(Value::as_mapping_mut)
        .and_then(|z| z.remove("exhibitor"));
    if let Some(x) = inner {
        m.insert(Value::String("exhibitor".into()), x);
        m.remove("zookeeper");
    }
}

fn coerce(v: &mut Value, path: &mut Vec<String>) {
    let Some(m) = v.as_mapping_mut() else { return };
    for (k, child) in m.iter_mut() {
        let Some(k) = key_str(k) else { continue };
        path.push(k);
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match kind_of(&p) {
            Some(Kind::Bool) => {
                if let Some(b) = child.as_str().and_then(parse_bool) {
                    *child = Value::Bool(b);
                } else if let Some(n) = child.as_i64().filter(|n| *n == 0 || *n == 1) {
                    *child = Value::Bool(n == 1);
                }
            }
            Some(Kind::Int) => {
                if let Some(n) = child.as_str().and_then(|s| s.trim().parse::<i64>().ok()) {
                    *child = Value::Number(n.into());
                }
            }
            Some(Kind::Str) => match child {
                Value::Number(n) => *child = Value::String(n.to_string()),
                Value::Bool(b) => *child = Value::String(b.to_string()),
                _ => {}
            },
            Some(Kind::Map | Kind::Open) => coerce(child, path),
            _ => {}
        }
        path.pop();
    }
}

/// Keys of `layer` that are not part of Patroni's schema, as dotted paths.
/// `context` is the merged tree: it tells which `postgresql.<method>` and
/// `bootstrap.<method>` sections are replica/bootstrap method sections.
pub(crate) fn unknown_keys(layer: &Value, context: &Value) -> Vec<String> {
    let mut methods: Vec<String> = Vec::new();
    if let Some(list) = context
        .get("postgresql")
        .and_then(|p| p.get("create_replica_methods"))
        .and_then(Value::as_sequence)
    {
        methods.extend(list.iter().filter_map(|v| v.as_str().map(str::to_owned)));
    }
    let bootstrap_method = context
        .get("bootstrap")
        .and_then(|b| b.get("method"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut out = Vec::new();
    walk_unknown(
        layer,
        &mut Vec::new(),
        &methods,
        bootstrap_method.as_deref(),
        &mut out,
    );
    out
}

fn walk_unknown(
    v: &Value,
    path: &mut Vec<String>,
    methods: &[String],
    bootstrap_method: Option<&str>,
    out: &mut Vec<String>,
) {
    let Some(m) = v.as_mapping() else { return };
    let parent_kind = if path.is_empty() {
        Some(Kind::Map)
    } else {
        kind_of(&path.iter().map(String::as_str).collect::<Vec<_>>())
    };
    for (k, child) in m {
        let Some(k) = key_str(k) else { continue };
        path.push(k);
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match kind_of(&p) {
            Some(Kind::Map | Kind::Open) => {
                walk_unknown(child, path, methods, bootstrap_method, out)
            }
            Some(_) => {}
            None => {
                let method_section = match p.as_slice() {
                    ["postgresql", m] => methods.iter().any(|x| x == m),
                    ["bootstrap", m] => bootstrap_method == Some(*m),
                    _ => false,
                };
                if !method_section && parent_kind != Some(Kind::Open) {
                    out.push(path.join("."));
                }
            }
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn normalize_coerces_by_kind() {
        let mut v = yaml(
            "postgresql: {name: pg1, use_pg_rewind: 'on', pg_ctl_timeout: '30', \
             authentication: {replication: {password: 12345}}}\ntags: {nofailover: yes, custom: 'on'}",
        );
        normalize(&mut v);
        assert_eq!(v["name"], yaml("pg1"));
        assert_eq!(v["postgresql"]["use_pg_rewind"], Value::Bool(true));
        assert_eq!(v["postgresql"]["pg_ctl_timeout"], yaml("30"));
        assert_eq!(
            v["postgresql"]["authentication"]["replication"]["password"],
            Value::String("12345".into())
        );
        assert_eq!(v["tags"]["nofailover"], Value::Bool(true));
        assert_eq!(v["tags"]["custom"], Value::String("on".into()));
    }

    #[test]
    fn unknown_keys_respect_free_form_and_methods() {
        let v = yaml(
            "name: a\nfoo: 1\npostgresql: {parameters: {x: 1}, wal_e: {command: c}, bogus: 1, \
             create_replica_methods: [wal_e, basebackup]}\ntags: {anything: 1}\n\
             bootstrap: {dcs: {whatever: 1}, method: mine, mine: {command: x}, other: {}}",
        );
        let mut u = unknown_keys(&v, &v);
        u.sort();
        assert_eq!(u, vec!["bootstrap.other", "foo", "postgresql.bogus"]);
    }
}
