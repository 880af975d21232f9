//! `PATCH /config` and `PUT /config` (docs/rest-api.md, "PATCH /config, PUT
//! /config"): the pure merge and validation, and the read-merge-write against
//! the DCS.
//!
//! A document is checked as a whole before anything is written, so a bad
//! request leaves the `config` key byte for byte as it was. PATCH writes
//! with compare-and-swap on the key's version and retries the
//! read-merge-write a few times when another writer got in between, so two
//! concurrent PATCHes of different keys both survive. The write itself wakes
//! every node's HA loop through the DCS watch.

use serde_json::{Map, Value};

use crate::config::DynamicConfig;
use crate::config::patch::patch_object;
use crate::dcs::Dcs;
use crate::postgres::params::check_dynamic_parameter;

/// How many times PATCH re-reads and retries after losing a CAS.
pub const PATCH_ATTEMPTS: usize = 5;

/// Why a config write was refused, with the HTTP status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigWriteError {
    /// 400: the body is not a JSON object or the result does not validate.
    BadRequest(String),
    /// 503: the DCS cannot be read, or (PATCH) holds no valid config to patch.
    Unavailable(String),
    /// 409: PATCH kept losing the compare-and-swap.
    Conflict,
    /// 502: the write failed.
    WriteFailed(String),
}

impl ConfigWriteError {
    pub fn status(&self) -> u16 {
        match self {
            ConfigWriteError::BadRequest(_) => 400,
            ConfigWriteError::Unavailable(_) => 503,
            ConfigWriteError::Conflict => 409,
            ConfigWriteError::WriteFailed(_) => 502,
        }
    }

    pub fn message(&self) -> String {
        match self {
            ConfigWriteError::BadRequest(m)
            | ConfigWriteError::Unavailable(m)
            | ConfigWriteError::WriteFailed(m) => m.clone(),
            ConfigWriteError::Conflict => {
                "the config key kept changing under the update (compare-and-swap lost); retry"
                    .to_owned()
            }
        }
    }
}

/// A request body: a JSON object, or 400 saying what is wrong.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ConfigWriteError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ConfigWriteError::BadRequest(format!(
            "the configuration must be a JSON object, got {}",
            kind(&other)
        ))),
        Err(e) => Err(ConfigWriteError::BadRequest(format!("invalid JSON: {e}"))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Check a complete dynamic configuration before it is written: what
/// [`DynamicConfig::from_json`] checks, plus the cluster-wide PostgreSQL
/// parameters against their minimums (docs/configuration.md §9.1). Errors name the field
/// (`ttl`, `postgresql.parameters.max_connections`).
pub fn validate_document(doc: &Map<String, Value>) -> Result<DynamicConfig, ConfigWriteError> {
    let v = Value::Object(doc.clone());
    let mut problems = Vec::new();
    let parsed = DynamicConfig::from_json(&v);
    if let Err(e) = &parsed {
        problems.push(e.to_string());
    }
    if let Some(Value::Object(params)) = v.pointer("/postgresql/parameters") {
        for (name, value) in params {
            if let Err(why) = check_dynamic_parameter(name, value) {
                problems.push(format!(
                    "dynamic configuration: postgresql.parameters.{name}: {why}"
                ));
            }
        }
    }
    match parsed {
        Ok(d) if problems.is_empty() => Ok(d),
        _ => Err(ConfigWriteError::BadRequest(problems.join("\n"))),
    }
}

/// `PATCH /config`: merge `body` into the stored config and write it back
/// with CAS, retrying after a lost CAS. Returns the new document.
pub async fn patch_config(dcs: &dyn Dcs, body: &[u8]) -> Result<Value, ConfigWriteError> {
    let patch = parse_body(body)?;
    for _ in 0..PATCH_ATTEMPTS {
        let cluster = dcs
            .load_cluster()
            .await
            .map_err(|e| ConfigWriteError::Unavailable(e.to_string()))?;
        let Some(current) = cluster.config else {
            return Err(ConfigWriteError::Unavailable(
                "the config key is missing or not a JSON object".to_owned(),
            ));
        };
        let mut doc = match current.value {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        // Patroni's patch_config (src/config/patch.rs), as its PATCH /config.
        patch_object(&mut doc, patch.clone());
        validate_document(&doc)?;
        let text = Value::Object(doc.clone()).to_string();
        match dcs.set_config_value(&text, Some(&current.version)).await {
            Ok(true) => return Ok(Value::Object(doc)),
            Ok(false) => continue,
            Err(e) => return Err(ConfigWriteError::WriteFailed(e.to_string())),
        }
    }
    Err(ConfigWriteError::Conflict)
}

/// `PUT /config`: replace the stored config (unconditionally) when it
/// differs. Returns the document.
pub async fn put_config(dcs: &dyn Dcs, body: &[u8]) -> Result<Value, ConfigWriteError> {
    let doc = parse_body(body)?;
    validate_document(&doc)?;
    let new = Value::Object(doc);
    let cluster = dcs
        .load_cluster()
        .await
        .map_err(|e| ConfigWriteError::Unavailable(e.to_string()))?;
    if cluster.config.is_some_and(|c| c.value == new) {
        return Ok(new);
    }
    match dcs.set_config_value(&new.to_string(), None).await {
        Ok(_) => Ok(new),
        Err(e) => Err(ConfigWriteError::WriteFailed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::memory::{MemoryDcs, MemoryStore};
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Duration;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn bodies_and_validation_name_the_field() {
        for (body, needle) in [
            (&b"not json"[..], "invalid JSON"),
            (b"[1, 2]", "a list"),
            (b"\"x\"", "a string"),
            (b"null", "null"),
        ] {
            match parse_body(body) {
                Err(ConfigWriteError::BadRequest(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        let cases = [
            (json!({"ttl": "abc"}), "ttl"),
            (json!({"loop_wait": -1}), "loop_wait"),
            (json!({"postgresql": 5}), "postgresql"),
            (
                json!({"postgresql": {"parameters": []}}),
                "postgresql.parameters",
            ),
            (
                json!({"postgresql": {"parameters": {"max_connections": 1}}}),
                "postgresql.parameters.max_connections",
            ),
            (json!({"pause": "maybe"}), "pause"),
        ];
        for (doc, field) in cases {
            match validate_document(&obj(doc.clone())) {
                Err(ConfigWriteError::BadRequest(m)) => {
                    assert!(m.contains(&format!("{field}:")), "{doc}: {m}")
                }
                other => panic!("{doc}: {other:?}"),
            }
        }
        let ok = validate_document(&obj(json!({
            "ttl": 20, "loop_wait": 2, "retry_timeout": 5, "pause": true,
            "postgresql": {"parameters": {"max_connections": 200, "work_mem": "8MB"}}
        })))
        .unwrap();
        assert!(ok.pause);
    }

    fn dcs(store: &Arc<MemoryStore>, name: &str) -> MemoryDcs {
        MemoryDcs::new(
            store.clone(),
            "/service/t".into(),
            name.into(),
            Duration::from_secs(30),
            Duration::from_secs(5),
        )
    }

    async fn stored(d: &MemoryDcs) -> Option<Value> {
        d.load_cluster().await.unwrap().config.map(|c| c.value)
    }

    #[tokio::test]
    async fn patch_put_and_concurrent_patches() {
        let store = MemoryStore::new();
        let a = dcs(&store, "a");
        let b = dcs(&store, "b");
        assert_eq!(
            patch_config(&a, br#"{"ttl": 20}"#)
                .await
                .unwrap_err()
                .status(),
            503
        );
        put_config(
            &a,
            br#"{"ttl": 30, "postgresql": {"parameters": {"work_mem": "4MB"}}}"#,
        )
        .await
        .unwrap();
        let before = stored(&a).await;
        for bad in [
            &b"{"[..],
            b"[1]",
            br#"{"ttl": "x"}"#,
            br#"{"postgresql": {"parameters": {"max_connections": 1}}}"#,
            // docs/replication-modes.md §1: bad synchronous settings are
            // refused whole, even next to a good key.
            br#"{"synchronous_mode": "maybe", "ttl": 25}"#,
            br#"{"synchronous_mode": true, "synchronous_node_count": 0}"#,
            br#"{"synchronous_mode_strict": "sometimes"}"#,
        ] {
            assert_eq!(patch_config(&a, bad).await.unwrap_err().status(), 400);
            assert_eq!(put_config(&a, bad).await.unwrap_err().status(), 400);
        }
        assert_eq!(stored(&a).await, before);

        // Many concurrent PATCHes of different keys: all of them survive.
        let patches: Vec<String> = (0..8)
            .map(|i| format!(r#"{{"postgresql": {{"parameters": {{"p{i}": {i}}}}}}}"#))
            .collect();
        let results = futures_util::future::join_all(
            patches
                .iter()
                .enumerate()
                .map(|(i, p)| patch_config(if i % 2 == 0 { &a } else { &b }, p.as_bytes())),
        )
        .await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(ConfigWriteError::Conflict)))
            .count();
        assert_eq!(ok + conflicts, 8, "{results:?}");
        let v = stored(&a).await.unwrap();
        for (i, r) in results.iter().enumerate() {
            if r.is_ok() {
                assert_eq!(v["postgresql"]["parameters"][format!("p{i}")], json!(i));
            }
        }
        assert!(ok >= 2, "{results:?}");
        assert_eq!(v["postgresql"]["parameters"]["work_mem"], "4MB");

        let out = put_config(&b, br#"{"loop_wait": 3}"#).await.unwrap();
        assert_eq!(out, json!({"loop_wait": 3}));
        assert_eq!(stored(&a).await, Some(json!({"loop_wait": 3})));
    }

    /// Issue 14 §1: Patroni stores `{"ttl": 20}` over `retry_timeout: 10`
    /// and adjusts the values in force; the key keeps what was written.
    #[tokio::test]
    async fn timing_breaking_the_rule_is_stored_as_written() {
        let store = MemoryStore::new();
        let a = dcs(&store, "a");
        put_config(&a, br#"{"ttl": 30, "loop_wait": 10, "retry_timeout": 10}"#)
            .await
            .unwrap();
        let out = patch_config(&a, br#"{"ttl": 20}"#).await.unwrap();
        let want = json!({"ttl": 20, "loop_wait": 10, "retry_timeout": 10});
        assert_eq!(out, want);
        assert_eq!(stored(&a).await, Some(want.clone()));
        let d = DynamicConfig::from_json(&want).unwrap();
        assert_eq!(d.timing.loop_wait, Duration::from_secs(1));
        assert_eq!(d.timing.retry_timeout, Duration::from_secs(9));
        // Under pgpilot's minimum: stored, raised to it in force.
        let out = put_config(&a, br#"{"ttl": 2}"#).await.unwrap();
        assert_eq!(out, json!({"ttl": 2}));
        assert_eq!(
            DynamicConfig::from_json(&out).unwrap().timing.ttl,
            Duration::from_secs(5)
        );
    }

    /// Issue 14 §6: Patroni's merge, byte for byte in the stored key. A
    /// falsy slot value is a physical slot (accepted, stored as given); a
    /// new key keeps the nulls inside it; a null removes an existing key.
    #[tokio::test]
    async fn patch_stores_what_patroni_stores() {
        let store = MemoryStore::new();
        let a = dcs(&store, "a");
        put_config(&a, br#"{"ttl": 30}"#).await.unwrap();
        // The stored text is `Value::to_string` of what PATCH merged.
        async fn raw_text(d: &MemoryDcs) -> String {
            stored(d).await.expect("config key").to_string()
        }
        patch_config(&a, br#"{"slots": {"test_physical": 0}}"#)
            .await
            .unwrap();
        assert_eq!(
            raw_text(&a).await,
            r#"{"slots":{"test_physical":0},"ttl":30}"#
        );
        patch_config(&a, br#"{"slots": {"a": null}}"#)
            .await
            .unwrap();
        assert_eq!(
            raw_text(&a).await,
            r#"{"slots":{"test_physical":0},"ttl":30}"#,
            "a null for an absent key inside an existing mapping removes nothing"
        );
        patch_config(&a, br#"{"slots": null}"#).await.unwrap();
        patch_config(&a, br#"{"slots": {"a": null, "b": {}}}"#)
            .await
            .unwrap();
        assert_eq!(
            raw_text(&a).await,
            r#"{"slots":{"a":null,"b":{}},"ttl":30}"#
        );
        patch_config(&a, br#"{"ttl": "30", "loop_wait": 5}"#)
            .await
            .unwrap();
        assert_eq!(
            raw_text(&a).await,
            r#"{"loop_wait":5,"slots":{"a":null,"b":{}},"ttl":30}"#,
            "scalars compare by their text: \"30\" over 30 keeps the number"
        );
        assert_eq!(
            patch_config(&a, br#"{"slots": {"t": 1}}"#)
                .await
                .unwrap_err()
                .status(),
            400
        );
    }
}
