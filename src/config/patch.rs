//! The one merge of configuration documents: Patroni's `patch_config`
//! (patroni/utils.py), used wherever Patroni uses it and wherever pgpilot
//! merges a document into another:
//!
//! * the files of a configuration directory and the `PATRONI_*` variables,
//!   merged in order (src/config/load.rs);
//! * `PATCH /config` into the DCS `config` key (src/api/config.rs);
//! * `pgpilotctl edit-config --apply FILE` into the cluster's configuration.
//!
//! The rules, for each key of the patch (docs/configuration.md §1):
//!
//! * `null` removes the key (and does nothing where it is absent);
//! * a key the document does not have is stored **as given**, nulls inside
//!   included: this is where Patroni differs from RFC 7386, which would strip
//!   them;
//! * a mapping merges recursively into a mapping, and replaces anything else
//!   whole (again as given);
//! * any other value replaces the old one unless both read the same as text
//!   (Python's `str()`): `"30"` over `30` keeps the number.
//!
//! The function is generic over the two document types the code holds:
//! [`serde_json::Value`] (the DCS, the REST API) and
//! [`serde_yaml_ng::Value`] (configuration files, whose keys need not be
//! strings).

/// A document `patch_config` can merge: a JSON or YAML value.
pub trait Document: Sized + PartialEq {
    /// A mapping key.
    type Key;

    fn is_null(&self) -> bool;

    fn is_mapping(&self) -> bool;

    /// The entries of a mapping, taken out; anything else is given back.
    fn into_entries(self) -> Result<Vec<(Self::Key, Self)>, Self>;

    /// The value at `key` of a mapping (`None` when absent or `self` is not
    /// a mapping).
    fn entry_mut(&mut self, key: &Self::Key) -> Option<&mut Self>;

    /// Remove `key` from a mapping, returning what it held.
    fn remove_entry(&mut self, key: &Self::Key) -> Option<Self>;

    /// Set `key` in a mapping (no-op on anything else).
    fn insert_entry(&mut self, key: Self::Key, value: Self);

    /// Python's `str()` of a scalar (`True`, `30`, `4MB`); `None` for
    /// sequences and mappings, which compare by value instead.
    fn python_str(&self) -> Option<String>;
}

/// Merge `data` into `config` with Patroni's `patch_config` rules (module
/// doc). Both are expected to be mappings; if either is not, `data`
/// replaces `config` whole (Patroni would raise: callers check first).
/// Returns whether `config` changed.
pub fn patch_config<D: Document>(config: &mut D, data: D) -> bool {
    if !config.is_mapping() {
        *config = data;
        return true;
    }
    let entries = match data.into_entries() {
        Ok(e) => e,
        Err(other) => {
            *config = other;
            return true;
        }
    };
    let mut changed = false;
    for (key, value) in entries {
        if value.is_null() {
            changed |= config.remove_entry(&key).is_some_and(|old| !old.is_null());
            continue;
        }
        match config.entry_mut(&key) {
            Some(old) if value.is_mapping() && old.is_mapping() => {
                changed |= patch_config(old, value);
            }
            Some(old) if value.is_mapping() || !same_text(old, &value) => {
                *old = value;
                changed = true;
            }
            Some(_) => {}
            None => {
                config.insert_entry(key, value);
                changed = true;
            }
        }
    }
    changed
}

/// [`patch_config`] of two JSON objects (`PATCH /config`).
pub fn patch_object(
    config: &mut serde_json::Map<String, serde_json::Value>,
    data: serde_json::Map<String, serde_json::Value>,
) -> bool {
    let mut doc = serde_json::Value::Object(std::mem::take(config));
    let changed = patch_config(&mut doc, serde_json::Value::Object(data));
    // An object patched with an object stays an object.
    if let serde_json::Value::Object(m) = doc {
        *config = m;
    }
    changed
}

/// Patroni's `str(config[name]) != str(value)`, for the values where
/// Python's `str()` is a plain rendering; sequences and mappings by value.
fn same_text<D: Document>(a: &D, b: &D) -> bool {
    match (a.python_str(), b.python_str()) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a == b,
        _ => false,
    }
}

fn python_bool(b: bool) -> String {
    if b { "True" } else { "False" }.to_owned()
}

impl Document for serde_json::Value {
    type Key = String;

    fn is_null(&self) -> bool {
        serde_json::Value::is_null(self)
    }

    fn is_mapping(&self) -> bool {
        self.is_object()
    }

    fn into_entries(self) -> Result<Vec<(String, Self)>, Self> {
        match self {
            serde_json::Value::Object(m) => Ok(m.into_iter().collect()),
            other => Err(other),
        }
    }

    fn entry_mut(&mut self, key: &String) -> Option<&mut Self> {
        self.as_object_mut()?.get_mut(key)
    }

    fn remove_entry(&mut self, key: &String) -> Option<Self> {
        self.as_object_mut()?.remove(key)
    }

    fn insert_entry(&mut self, key: String, value: Self) {
        if let Some(m) = self.as_object_mut() {
            m.insert(key, value);
        }
    }

    fn python_str(&self) -> Option<String> {
        match self {
            serde_json::Value::Bool(b) => Some(python_bool(*b)),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Document for serde_yaml_ng::Value {
    type Key = serde_yaml_ng::Value;

    fn is_null(&self) -> bool {
        serde_yaml_ng::Value::is_null(self)
    }

    fn is_mapping(&self) -> bool {
        serde_yaml_ng::Value::is_mapping(self)
    }

    fn into_entries(self) -> Result<Vec<(Self, Self)>, Self> {
        match self {
            serde_yaml_ng::Value::Mapping(m) => Ok(m.into_iter().collect()),
            other => Err(other),
        }
    }

    fn entry_mut(&mut self, key: &Self) -> Option<&mut Self> {
        self.as_mapping_mut()?.get_mut(key)
    }

    fn remove_entry(&mut self, key: &Self) -> Option<Self> {
        self.as_mapping_mut()?.remove(key)
    }

    fn insert_entry(&mut self, key: Self, value: Self) {
        if let Some(m) = self.as_mapping_mut() {
            m.insert(key, value);
        }
    }

    fn python_str(&self) -> Option<String> {
        match self {
            serde_yaml_ng::Value::Bool(b) => Some(python_bool(*b)),
            serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
            serde_yaml_ng::Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn patched(mut config: Value, data: Value) -> (Value, bool) {
        let changed = patch_config(&mut config, data);
        (config, changed)
    }

    #[test]
    fn null_removes_an_existing_key_and_ignores_an_absent_one() {
        let (v, changed) = patched(json!({"a": 1, "b": 2}), json!({"a": null, "zz": null}));
        assert_eq!(v, json!({"b": 2}));
        assert!(changed);
        let (v, changed) = patched(json!({"b": 2}), json!({"zz": null}));
        assert_eq!(v, json!({"b": 2}));
        assert!(!changed, "removing what is absent changes nothing");
    }

    #[test]
    fn a_new_key_is_stored_as_given_nulls_inside_included() {
        let (v, _) = patched(
            json!({"ttl": 30}),
            json!({"new": {"deep": {"k": null, "v": 1}}, "list": [null]}),
        );
        assert_eq!(
            v,
            json!({"ttl": 30, "new": {"deep": {"k": null, "v": 1}}, "list": [null]})
        );
    }

    #[test]
    fn mappings_merge_recursively() {
        let (v, changed) = patched(
            json!({"postgresql": {"use_slots": true,
                                  "parameters": {"work_mem": "4MB", "max_connections": 100}}}),
            json!({"postgresql": {"parameters": {"work_mem": null, "shared_buffers": "256MB"}}}),
        );
        assert_eq!(
            v,
            json!({"postgresql": {"use_slots": true,
                                  "parameters": {"max_connections": 100, "shared_buffers": "256MB"}}})
        );
        assert!(changed);
    }

    #[test]
    fn a_mapping_replaces_a_non_mapping_as_given() {
        let (v, _) = patched(
            json!({"tags": ["a"], "x": 1}),
            json!({"tags": {"k": null, "v": 1}, "x": {"y": null}}),
        );
        assert_eq!(v, json!({"tags": {"k": null, "v": 1}, "x": {"y": null}}));
    }

    #[test]
    fn other_values_replace_unless_they_read_the_same() {
        let (v, changed) = patched(
            json!({"ttl": 30, "on": true, "s": "x", "list": [1, 2], "m": {"a": 1}}),
            json!({"ttl": "30", "on": "True", "s": "x", "list": [1, 2]}),
        );
        assert_eq!(
            v,
            json!({"ttl": 30, "on": true, "s": "x", "list": [1, 2], "m": {"a": 1}}),
            "Python's str() of both sides is equal: the old value stays"
        );
        assert!(!changed);
        let (v, changed) = patched(
            json!({"ttl": 30, "list": [1, 2], "m": {"a": 1}, "f": 1}),
            json!({"ttl": "20", "list": ["1", 2], "m": 5, "f": 1.0}),
        );
        assert_eq!(v, json!({"ttl": "20", "list": ["1", 2], "m": 5, "f": 1.0}));
        assert!(changed);
    }

    #[test]
    fn a_non_mapping_on_either_side_replaces_whole() {
        let (v, changed) = patched(json!(5), json!({"a": 1}));
        assert_eq!(v, json!({"a": 1}));
        assert!(changed);
        let (v, _) = patched(json!({"a": 1}), json!([1]));
        assert_eq!(v, json!([1]));
    }

    #[test]
    fn objects_patch_in_place() {
        let Value::Object(mut m) = json!({"a": 1, "b": {"c": 2}}) else {
            panic!()
        };
        let Value::Object(p) = json!({"a": null, "b": {"d": null}}) else {
            panic!()
        };
        assert!(patch_object(&mut m, p));
        assert_eq!(Value::Object(m), json!({"b": {"c": 2}}));
    }

    #[test]
    fn yaml_documents_follow_the_same_rules() {
        let y = |s: &str| -> serde_yaml_ng::Value { serde_yaml_ng::from_str(s).unwrap() };
        let mut a = y("a: {b: 1, c: 2}\nd: [1]\ne: x\n1: one");
        let changed = patch_config(
            &mut a,
            y("a: {c: 3, f: 4}\nd: [2]\ne: null\nnew: {k: null}\n1: uno"),
        );
        assert!(changed);
        assert_eq!(
            a,
            y("a: {b: 1, c: 3, f: 4}\nd: [2]\nnew: {k: null}\n1: uno")
        );
        let mut b = y("port: 5432\nflag: true");
        assert!(!patch_config(&mut b, y("port: '5432'\nflag: 'True'")));
        assert_eq!(b, y("port: 5432\nflag: true"));
    }
}
