//! The Consul emulator (tests/support/consul_emulator) against the rules of
//! Consul's HTTP API documentation it implements, one test per rule, over
//! HTTP as a client sees it.

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use support::consul_emulator::{ConsulEmulator, EmulatorConfig};

struct Client {
    http: reqwest::Client,
    base: String,
}

struct Answer {
    status: u16,
    index: Option<u64>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Client {
    fn new(e: &ConsulEmulator) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            base: e.url(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: &str) -> Answer {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body.to_owned())
            .send()
            .await
            .expect("emulator answers");
        let status = r.status().as_u16();
        let index = r
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Answer {
            status,
            index,
            body: r.text().await.expect("body"),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(reqwest::Method::GET, path, "").await
    }

    async fn put(&self, path: &str, body: &str) -> Answer {
        self.call(reqwest::Method::PUT, path, body).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.call(reqwest::Method::DELETE, path, "").await
    }

    /// `true`/`false` of a KV write.
    async fn put_ok(&self, path: &str, body: &str) -> bool {
        let a = self.put(path, body).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        a.json() == json!(true)
    }

    /// The one entry of `GET /v1/kv/<key>`, `None` on 404.
    async fn entry(&self, key: &str) -> Option<Value> {
        let a = self.get(&format!("/v1/kv/{key}")).await;
        (a.status == 200).then(|| a.json()[0].clone())
    }

    async fn session(&self, body: Value) -> String {
        let a = self.put("/v1/session/create", &body.to_string()).await;
        assert_eq!(a.status, 200, "session create: {}", a.body);
        a.json()["ID"].as_str().expect("ID").to_owned()
    }
}

fn value_of(entry: &Value) -> String {
    let b = entry["Value"].as_str().unwrap_or("");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .expect("base64"),
    )
    .expect("utf-8")
}

fn idx(entry: &Value, field: &str) -> u64 {
    entry[field].as_u64().expect(field)
}

fn short_ttl() -> ConsulEmulator {
    ConsulEmulator::with_session_ttl_min(Duration::from_millis(500))
}

// ---- KV ----------------------------------------------------------------------

#[tokio::test]
async fn kv_put_then_get_returns_base64_value_and_indexes() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    assert!(c.put_ok("/v1/kv/a/b?flags=42", "hello").await);
    let a = c.get("/v1/kv/a/b").await;
    assert_eq!(a.status, 200);
    let entry = &a.json()[0];
    assert_eq!(entry["Key"], "a/b");
    assert_eq!(value_of(entry), "hello");
    assert_eq!(entry["Flags"], 42);
    assert_eq!(idx(entry, "CreateIndex"), idx(entry, "ModifyIndex"));
    assert_eq!(entry["LockIndex"], 0);
    assert!(entry.get("Session").is_none());
    // A single key's X-Consul-Index is its ModifyIndex.
    assert_eq!(a.index, Some(idx(entry, "ModifyIndex")));
}

#[tokio::test]
async fn kv_missing_key_is_404_with_an_index() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let a = c.get("/v1/kv/nothing").await;
    assert_eq!(a.status, 404);
    assert!(a.index.is_some_and(|i| i >= 1));
}

#[tokio::test]
async fn kv_empty_value_reads_as_null() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    assert!(c.put_ok("/v1/kv/empty", "").await);
    let entry = c.entry("empty").await.expect("entry");
    assert_eq!(entry["Value"], Value::Null);
}

#[tokio::test]
async fn kv_update_keeps_create_index_and_moves_modify_index() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/k", "1").await;
    let first = c.entry("k").await.expect("k");
    c.put_ok("/v1/kv/k", "2").await;
    let second = c.entry("k").await.expect("k");
    assert_eq!(idx(&first, "CreateIndex"), idx(&second, "CreateIndex"));
    assert!(idx(&second, "ModifyIndex") > idx(&first, "ModifyIndex"));
}

#[tokio::test]
async fn kv_cas_zero_creates_only_when_absent() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    assert!(c.put_ok("/v1/kv/init?cas=0", "x").await);
    assert!(!c.put_ok("/v1/kv/init?cas=0", "y").await);
    assert_eq!(value_of(&c.entry("init").await.expect("init")), "x");
}

#[tokio::test]
async fn kv_cas_writes_only_at_the_modify_index() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/cfg", "1").await;
    let v = idx(&c.entry("cfg").await.expect("cfg"), "ModifyIndex");
    assert!(
        !c.put_ok(&format!("/v1/kv/cfg?cas={}", v + 100), "bad")
            .await
    );
    assert!(c.put_ok(&format!("/v1/kv/cfg?cas={v}"), "2").await);
    // The old index no longer matches.
    assert!(!c.put_ok(&format!("/v1/kv/cfg?cas={v}"), "3").await);
    assert_eq!(value_of(&c.entry("cfg").await.expect("cfg")), "2");
    // A non-zero cas on a missing key fails.
    assert!(!c.put_ok("/v1/kv/none?cas=5", "x").await);
}

#[tokio::test]
async fn kv_recurse_lists_the_prefix_with_the_latest_index() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/svc/a", "1").await;
    c.put_ok("/v1/kv/svc/b", "2").await;
    c.put_ok("/v1/kv/other", "3").await;
    let a = c.get("/v1/kv/svc/?recurse").await;
    let list = a.json();
    let keys: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["Key"].as_str().expect("Key"))
        .collect();
    assert_eq!(keys, ["svc/a", "svc/b"]);
    let b_index = idx(&list[1], "ModifyIndex");
    assert_eq!(a.index, Some(b_index));
    // A deletion under the prefix moves the prefix's index.
    c.delete("/v1/kv/svc/b").await;
    let after = c.get("/v1/kv/svc/?recurse").await;
    assert!(after.index.expect("index") > b_index);
    assert_eq!(c.get("/v1/kv/nope/?recurse").await.status, 404);
}

#[tokio::test]
async fn kv_keys_lists_names_up_to_the_separator() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/p/a", "").await;
    c.put_ok("/v1/kv/p/d/x", "").await;
    c.put_ok("/v1/kv/p/d/y", "").await;
    let a = c.get("/v1/kv/p/?keys&separator=/").await;
    assert_eq!(a.json(), json!(["p/a", "p/d/"]));
}

#[tokio::test]
async fn kv_raw_returns_the_bare_value() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/r", "{\"a\":1}").await;
    assert_eq!(c.get("/v1/kv/r?raw").await.body, "{\"a\":1}");
}

#[tokio::test]
async fn kv_delete_recurse_and_cas() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/t/a", "").await;
    c.put_ok("/v1/kv/t/b", "").await;
    c.put_ok("/v1/kv/u", "").await;
    let v = idx(&c.entry("u").await.expect("u"), "ModifyIndex");
    assert_eq!(
        c.delete(&format!("/v1/kv/u?cas={}", v + 1)).await.json(),
        json!(false)
    );
    assert!(c.entry("u").await.is_some());
    assert_eq!(
        c.delete(&format!("/v1/kv/u?cas={v}")).await.json(),
        json!(true)
    );
    assert!(c.entry("u").await.is_none());
    assert_eq!(c.delete("/v1/kv/t/?recurse").await.json(), json!(true));
    assert_eq!(c.get("/v1/kv/t/?recurse").await.status, 404);
}

#[tokio::test]
async fn kv_value_above_512k_is_refused() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let big = "x".repeat(512 * 1024 + 1);
    assert_eq!(c.put("/v1/kv/big", &big).await.status, 413);
}

// ---- locks -------------------------------------------------------------------

#[tokio::test]
async fn acquire_takes_a_free_key_and_counts_lock_index() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let s = c.session(json!({})).await;
    assert!(c.put_ok(&format!("/v1/kv/leader?acquire={s}"), "n1").await);
    let entry = c.entry("leader").await.expect("leader");
    assert_eq!(entry["Session"], s.as_str());
    assert_eq!(entry["LockIndex"], 1);
    // The holder may write again: LockIndex unchanged.
    assert!(c.put_ok(&format!("/v1/kv/leader?acquire={s}"), "n1b").await);
    let entry = c.entry("leader").await.expect("leader");
    assert_eq!(entry["LockIndex"], 1);
    assert_eq!(value_of(&entry), "n1b");
}

#[tokio::test]
async fn acquire_of_a_key_held_by_another_session_fails() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let s1 = c.session(json!({})).await;
    let s2 = c.session(json!({})).await;
    assert!(c.put_ok(&format!("/v1/kv/leader?acquire={s1}"), "n1").await);
    assert!(!c.put_ok(&format!("/v1/kv/leader?acquire={s2}"), "n2").await);
    let entry = c.entry("leader").await.expect("leader");
    assert_eq!(entry["Session"], s1.as_str());
    assert_eq!(value_of(&entry), "n1");
}

#[tokio::test]
async fn acquire_with_an_unknown_session_is_an_error() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let a = c.put("/v1/kv/leader?acquire=no-such-session", "n1").await;
    assert_eq!(a.status, 500);
    assert!(a.body.starts_with("invalid session"), "{}", a.body);
}

#[tokio::test]
async fn acquire_ignores_cas() {
    // Consul's HTTP handler takes acquire over cas: a stale cas beside
    // acquire is not compared.
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let s = c.session(json!({})).await;
    c.put_ok("/v1/kv/k", "v").await;
    assert!(
        c.put_ok(&format!("/v1/kv/k?cas=99999&acquire={s}"), "w")
            .await
    );
}

#[tokio::test]
async fn release_frees_the_lock_only_for_its_holder() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let s1 = c.session(json!({})).await;
    let s2 = c.session(json!({})).await;
    c.put_ok(&format!("/v1/kv/l?acquire={s1}"), "a").await;
    assert!(!c.put_ok(&format!("/v1/kv/l?release={s2}"), "b").await);
    assert!(c.put_ok(&format!("/v1/kv/l?release={s1}"), "c").await);
    let entry = c.entry("l").await.expect("l");
    assert!(entry.get("Session").is_none());
    assert_eq!(value_of(&entry), "c");
    // Free now: another session takes it, LockIndex counts 2.
    assert!(c.put_ok(&format!("/v1/kv/l?acquire={s2}"), "d").await);
    assert_eq!(c.entry("l").await.expect("l")["LockIndex"], 2);
}

#[tokio::test]
async fn plain_put_on_a_held_key_keeps_the_lock() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let s = c.session(json!({})).await;
    c.put_ok(&format!("/v1/kv/l?acquire={s}"), "a").await;
    assert!(c.put_ok("/v1/kv/l", "b").await);
    assert_eq!(c.entry("l").await.expect("l")["Session"], s.as_str());
}

// ---- sessions ----------------------------------------------------------------

#[tokio::test]
async fn session_ttl_below_the_minimum_is_refused() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let a = c.put("/v1/session/create", r#"{"ttl": "3.0s"}"#).await;
    assert_eq!(a.status, 500);
    assert!(a.body.starts_with("Invalid Session TTL"), "{}", a.body);
    assert_eq!(
        c.put("/v1/session/create", r#"{"TTL": "10s"}"#)
            .await
            .status,
        200
    );
    assert_eq!(
        c.put("/v1/session/create", r#"{"TTL": "86401s"}"#)
            .await
            .status,
        500
    );
}

#[tokio::test]
async fn session_fields_are_read_case_insensitively_with_defaults() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let s = c
        .session(json!({"name": "b-n1", "behavior": "delete", "lockdelay": "0.001s", "checks": [], "ttl": "15s"}))
        .await;
    let info = c.get(&format!("/v1/session/info/{s}")).await.json();
    assert_eq!(info[0]["Name"], "b-n1");
    assert_eq!(info[0]["Behavior"], "delete");
    assert_eq!(info[0]["LockDelay"], 1_000_000);
    assert_eq!(info[0]["Checks"], json!([]));
    assert_eq!(info[0]["TTL"], "15s");
    // Defaults: release, 15 s lock-delay, the serfHealth check.
    let d = c.session(json!({})).await;
    let info = c.get(&format!("/v1/session/info/{d}")).await.json();
    assert_eq!(info[0]["Behavior"], "release");
    assert_eq!(info[0]["LockDelay"], 15_000_000_000u64);
    assert_eq!(info[0]["Checks"], json!(["serfHealth"]));
    assert_eq!(c.get("/v1/session/info/gone").await.json(), json!([]));
}

#[tokio::test]
async fn session_is_invalidated_between_ttl_and_twice_ttl_without_renewal() {
    let e = short_ttl();
    let c = Client::new(&e);
    let s = c
        .session(json!({"TTL": "1s", "Behavior": "delete", "LockDelay": "0s"}))
        .await;
    let start = Instant::now();
    assert!(c.put_ok(&format!("/v1/kv/leader?acquire={s}"), "n1").await);
    // Alive at TTL (Consul keeps a session at least TTL).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(c.entry("leader").await.is_some(), "gone before TTL×2");
    // Gone by 2×TTL (plus the emulator's scheduling).
    support::eventually(Duration::from_secs(3), "session invalidated", || async {
        c.entry("leader").await.is_none().then_some(())
    })
    .await;
    let gone_after = start.elapsed();
    assert!(gone_after >= Duration::from_secs(1), "{gone_after:?}");
    assert!(gone_after < Duration::from_millis(2600), "{gone_after:?}");
    assert_eq!(
        c.put(&format!("/v1/session/renew/{s}"), "").await.status,
        404
    );
}

#[tokio::test]
async fn ttl_multiplier_one_invalidates_at_ttl() {
    let e = ConsulEmulator::start_with(EmulatorConfig {
        session_ttl_min: Duration::from_millis(500),
        ttl_multiplier: 1.0,
        ..EmulatorConfig::default()
    });
    let c = Client::new(&e);
    let s = c.session(json!({"TTL": "1s", "Behavior": "delete"})).await;
    c.put_ok(&format!("/v1/kv/k?acquire={s}"), "v").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(c.entry("k").await.is_none());
}

#[tokio::test]
async fn renew_restarts_the_session_timer() {
    let e = short_ttl();
    let c = Client::new(&e);
    let s = c.session(json!({"TTL": "1s", "Behavior": "delete"})).await;
    c.put_ok(&format!("/v1/kv/k?acquire={s}"), "v").await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let a = c.put(&format!("/v1/session/renew/{s}"), "").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.json()[0]["ID"], s.as_str());
    }
    // 3.5 s, more than 2×TTL after creation: still there.
    assert!(c.entry("k").await.is_some());
}

#[tokio::test]
async fn behavior_delete_deletes_held_keys_on_destroy() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let s = c.session(json!({"Behavior": "delete"})).await;
    c.put_ok(&format!("/v1/kv/m/a?acquire={s}"), "1").await;
    c.put_ok("/v1/kv/m/b", "2").await;
    assert_eq!(
        c.put(&format!("/v1/session/destroy/{s}"), "").await.json(),
        json!(true)
    );
    assert!(c.entry("m/a").await.is_none());
    assert!(c.entry("m/b").await.is_some());
    assert_eq!(
        c.get(&format!("/v1/session/info/{s}")).await.json(),
        json!([])
    );
}

#[tokio::test]
async fn behavior_release_releases_held_keys_and_moves_their_index() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let s = c.session(json!({"LockDelay": "0s"})).await;
    c.put_ok(&format!("/v1/kv/r?acquire={s}"), "1").await;
    let before = idx(&c.entry("r").await.expect("r"), "ModifyIndex");
    c.put(&format!("/v1/session/destroy/{s}"), "").await;
    let after = c.entry("r").await.expect("kept");
    assert!(after.get("Session").is_none());
    assert_eq!(value_of(&after), "1");
    assert!(idx(&after, "ModifyIndex") > before);
}

#[tokio::test]
async fn lock_delay_blocks_acquisition_after_invalidation() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let s1 = c.session(json!({"LockDelay": "1s"})).await;
    let s2 = c.session(json!({})).await;
    c.put_ok(&format!("/v1/kv/l?acquire={s1}"), "a").await;
    c.put(&format!("/v1/session/destroy/{s1}"), "").await;
    assert!(!c.put_ok(&format!("/v1/kv/l?acquire={s2}"), "b").await);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(c.put_ok(&format!("/v1/kv/l?acquire={s2}"), "b").await);
}

#[tokio::test]
async fn explicit_release_sets_no_lock_delay() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let s1 = c.session(json!({})).await;
    let s2 = c.session(json!({})).await;
    c.put_ok(&format!("/v1/kv/l?acquire={s1}"), "a").await;
    c.put_ok(&format!("/v1/kv/l?release={s1}"), "a").await;
    assert!(c.put_ok(&format!("/v1/kv/l?acquire={s2}"), "b").await);
}

#[tokio::test]
async fn session_on_a_critical_or_missing_check_cannot_be_created() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let a = c.put("/v1/session/create", r#"{"Checks": ["nope"]}"#).await;
    assert_eq!(a.status, 500);
    c.put(
        "/v1/agent/check/register",
        r#"{"Name": "crit", "TTL": "10s"}"#,
    )
    .await;
    let a = c.put("/v1/session/create", r#"{"Checks": ["crit"]}"#).await;
    assert_eq!(a.status, 500, "{}", a.body);
    assert!(a.body.contains("critical"), "{}", a.body);
}

#[tokio::test]
async fn a_check_going_critical_invalidates_its_sessions() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put(
        "/v1/agent/check/register",
        r#"{"Name": "alive", "TTL": "30s", "Status": "passing"}"#,
    )
    .await;
    let s = c
        .session(json!({"Checks": ["alive"], "Behavior": "delete"}))
        .await;
    c.put_ok(&format!("/v1/kv/k?acquire={s}"), "v").await;
    c.put("/v1/agent/check/fail/alive", "").await;
    support::eventually(Duration::from_secs(3), "session invalidated", || async {
        c.entry("k").await.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_ttl_check_not_updated_goes_critical() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put(
        "/v1/agent/check/register",
        r#"{"Name": "beat", "TTL": "500ms", "Status": "passing"}"#,
    )
    .await;
    support::eventually(Duration::from_secs(3), "check critical", || async {
        let checks = c.get("/v1/agent/checks").await.json();
        (checks["beat"]["Status"] == "critical").then_some(())
    })
    .await;
}

// ---- blocking queries ----------------------------------------------------------

#[tokio::test]
async fn blocking_get_returns_on_a_change_of_the_key() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/w", "1").await;
    let v = c.get("/v1/kv/w").await.index.expect("index");
    let writer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.put_ok("/v1/kv/w", "2").await;
    };
    let start = Instant::now();
    let path = format!("/v1/kv/w?index={v}&wait=10s");
    let (a, ()) = tokio::join!(c.get(&path), writer);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(a.index.expect("index") > v);
    assert_eq!(value_of(&a.json()[0]), "2");
}

#[tokio::test]
async fn blocking_get_times_out_with_the_same_index() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/w", "1").await;
    let v = c.get("/v1/kv/w").await.index.expect("index");
    let start = Instant::now();
    let a = c.get(&format!("/v1/kv/w?index={v}&wait=0.5s")).await;
    let took = start.elapsed();
    assert_eq!(a.index, Some(v));
    // wait plus at most wait/16 of jitter.
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
}

#[tokio::test]
async fn blocking_get_ignores_writes_to_other_keys_of_an_existing_key() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/w", "1").await;
    let v = c.get("/v1/kv/w").await.index.expect("index");
    let writer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.put_ok("/v1/kv/other", "x").await;
    };
    let path = format!("/v1/kv/w?index={v}&wait=1s");
    let (a, ()) = tokio::join!(c.get(&path), writer);
    assert_eq!(a.index, Some(v));
}

#[tokio::test]
async fn blocking_get_returns_when_the_key_is_deleted() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/w", "1").await;
    let v = c.get("/v1/kv/w").await.index.expect("index");
    let writer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.delete("/v1/kv/w").await;
    };
    let path = format!("/v1/kv/w?index={v}&wait=10s");
    let (a, ()) = tokio::join!(c.get(&path), writer);
    assert_eq!(a.status, 404);
    assert!(a.index.expect("index") > v);
}

#[tokio::test]
async fn blocking_recurse_returns_on_a_change_under_the_prefix() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/p/a", "1").await;
    let v = c.get("/v1/kv/p/?recurse").await.index.expect("index");
    let writer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.put_ok("/v1/kv/p/b", "2").await;
    };
    let path = format!("/v1/kv/p/?recurse&index={v}&wait=10s");
    let (a, ()) = tokio::join!(c.get(&path), writer);
    assert!(a.index.expect("index") > v);
    assert_eq!(a.json().as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn blocking_get_returns_when_a_session_expiry_deletes_the_key() {
    let e = short_ttl();
    let c = Client::new(&e);
    let s = c.session(json!({"TTL": "1s", "Behavior": "delete"})).await;
    c.put_ok(&format!("/v1/kv/leader?acquire={s}"), "n").await;
    let v = c.get("/v1/kv/leader").await.index.expect("index");
    let a = c.get(&format!("/v1/kv/leader?index={v}&wait=10s")).await;
    assert_eq!(a.status, 404);
}

// ---- transactions ------------------------------------------------------------

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn txn_applies_all_or_nothing() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/x", "1").await;
    let v = idx(&c.entry("x").await.expect("x"), "ModifyIndex");
    let bad = json!([
        {"KV": {"Verb": "set", "Key": "y", "Value": b64("new")}},
        {"KV": {"Verb": "check-index", "Key": "x", "Index": v + 1}},
    ]);
    let a = c.put("/v1/txn", &bad.to_string()).await;
    assert_eq!(a.status, 409);
    assert_eq!(a.json()["Errors"][0]["OpIndex"], 1);
    assert!(c.entry("y").await.is_none(), "the failed transaction wrote");
    let good = json!([
        {"KV": {"Verb": "check-index", "Key": "x", "Index": v}},
        {"KV": {"Verb": "set", "Key": "y", "Value": b64("new")}},
    ]);
    let a = c.put("/v1/txn", &good.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(value_of(&c.entry("y").await.expect("y")), "new");
}

#[tokio::test]
async fn txn_moves_a_lock_between_sessions_on_session_and_index_checks() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let old = c.session(json!({})).await;
    let new = c.session(json!({})).await;
    c.put_ok(&format!("/v1/kv/leader?acquire={old}"), "n1")
        .await;
    let v = idx(&c.entry("leader").await.expect("leader"), "ModifyIndex");
    let wrong = json!([
        {"KV": {"Verb": "check-session", "Key": "leader", "Session": new}},
        {"KV": {"Verb": "lock", "Key": "leader", "Value": b64("n1"), "Session": new}},
    ]);
    assert_eq!(c.put("/v1/txn", &wrong.to_string()).await.status, 409);
    let mv = json!([
        {"KV": {"Verb": "check-index", "Key": "leader", "Index": v}},
        {"KV": {"Verb": "check-session", "Key": "leader", "Session": old}},
        {"KV": {"Verb": "unlock", "Key": "leader", "Value": b64("n1"), "Session": old}},
        {"KV": {"Verb": "lock", "Key": "leader", "Value": b64("n1"), "Session": new}},
    ]);
    let a = c.put("/v1/txn", &mv.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        c.entry("leader").await.expect("leader")["Session"],
        new.as_str()
    );
}

// ---- agent, health, catalog ------------------------------------------------------

#[tokio::test]
async fn agent_self_names_the_node_and_datacenter() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let a = c.get("/v1/agent/self").await.json();
    assert_eq!(a["Config"]["Datacenter"], "dc1");
    assert!(a["Config"]["NodeName"].is_string());
}

#[tokio::test]
async fn service_with_http_check_turns_passing_and_is_found_by_tag() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    // The check probes the emulator itself: a 200.
    let url = format!("{}/v1/status/leader", e.url());
    let reg = json!({
        "name": "batman", "id": "batman/n1", "address": "127.0.0.1", "port": 5432,
        "tags": ["primary", "master"], "enabletagoverride": true,
        "checks": [{"http": url, "interval": "200ms", "DeregisterCriticalServiceAfter": "150s"}],
    });
    assert_eq!(
        c.put("/v1/agent/service/register", &reg.to_string())
            .await
            .status,
        200
    );
    let checks = c.get("/v1/agent/checks").await.json();
    assert_eq!(
        checks["service:batman/n1"]["Status"], "critical",
        "new checks start critical"
    );
    support::eventually(Duration::from_secs(5), "the check passes", || async {
        let h = c
            .get("/v1/health/service/batman?passing&tag=primary")
            .await
            .json();
        (h.as_array().map(Vec::len) == Some(1)).then_some(h)
    })
    .await;
    let cat = c.get("/v1/catalog/service/batman?tag=master").await.json();
    assert_eq!(cat[0]["ServiceID"], "batman/n1");
    assert_eq!(cat[0]["ServicePort"], 5432);
    assert_eq!(
        c.get("/v1/catalog/service/batman?tag=replica").await.json(),
        json!([])
    );
    assert_eq!(
        c.get("/v1/catalog/services").await.json()["batman"],
        json!(["primary", "master"])
    );
}

#[tokio::test]
async fn service_with_failing_http_check_is_not_passing() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let url = format!("{}/no-such-path", e.url());
    let reg = json!({"Name": "s", "ID": "s1", "Check": {"HTTP": url, "Interval": "200ms"}});
    c.put("/v1/agent/service/register", &reg.to_string()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        c.get("/v1/health/service/s?passing").await.json(),
        json!([])
    );
    let all = c.get("/v1/health/service/s").await.json();
    assert_eq!(
        all[0]["Checks"]
            .as_array()
            .map(|a| a.iter().any(|ch| ch["Status"] == "critical")),
        Some(true)
    );
}

#[tokio::test]
async fn reregistration_retags_and_deregistration_removes() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    let reg = |tags: Value| json!({"Name": "s", "ID": "s/n1", "Tags": tags}).to_string();
    c.put("/v1/agent/service/register", &reg(json!(["replica"])))
        .await;
    c.put("/v1/agent/service/register", &reg(json!(["primary"])))
        .await;
    let services = c.get("/v1/agent/services").await.json();
    assert_eq!(services["s/n1"]["Tags"], json!(["primary"]));
    assert_eq!(
        c.put("/v1/agent/service/deregister/s/n1", "").await.status,
        200
    );
    assert_eq!(c.get("/v1/agent/services").await.json(), json!({}));
    assert_eq!(
        c.put("/v1/agent/service/deregister/s/n1", "").await.status,
        404
    );
}

// ---- the server itself -----------------------------------------------------------

#[tokio::test]
async fn stopped_emulator_refuses_connections_and_resumes_with_its_state() {
    let mut e = ConsulEmulator::start();
    let c = Client::new(&e);
    c.put_ok("/v1/kv/keep", "1").await;
    e.stop();
    assert!(
        c.http
            .get(format!("{}/v1/kv/keep", c.base))
            .send()
            .await
            .is_err()
    );
    e.resume();
    assert!(c.entry("keep").await.is_some());
}

#[tokio::test]
async fn frozen_emulator_answers_nothing_until_thawed() {
    let e = ConsulEmulator::start();
    let c = Client::new(&e);
    e.freeze();
    let r = c
        .http
        .get(format!("{}/v1/kv/x", c.base))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(r.is_err(), "a frozen emulator answered");
    e.thaw();
    assert_eq!(c.get("/v1/kv/x").await.status, 404);
}

#[tokio::test]
async fn restart_gives_sessions_a_fresh_timer() {
    let mut e = short_ttl();
    let c = Client::new(&e);
    let s = c.session(json!({"TTL": "1s", "Behavior": "delete"})).await;
    c.put_ok(&format!("/v1/kv/k?acquire={s}"), "v").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    e.stop();
    e.resume();
    // Without the reset it would be gone at 2 s.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(c.entry("k").await.is_some());
}
