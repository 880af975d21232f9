//! Synchronous replication against real PostgreSQL
//! (docs/replication-modes.md): three nodes with `synchronous_mode` on.
//! The sync key names a standby PostgreSQL confirmed, `/sync` answers 200
//! only there, a kill -9 of the primary while a writer gets commits
//! acknowledged promotes that standby with every acknowledged write, and
//! turning the mode off clears `synchronous_standby_names`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use pgpilot::events;
use serde_json::{Value, json};
use support::cluster::{ClusterOptions, TestCluster, Timing};
use support::eventually;
use support::sync_faults::SyncMode;
use support::writer::{spawn_writer, values_on, wait_for_writes};

const BOOT: Duration = Duration::from_secs(90);
const APPLY: Duration = Duration::from_secs(30);

/// The `sync` key as `GET /cluster` shows it: the member whose role is
/// `sync_standby`, if exactly one is.
async fn sync_standby(c: &TestCluster, i: usize) -> Option<String> {
    let cl = c.get_json(i, "/cluster").await?;
    let names: Vec<String> = cl["members"]
        .as_array()?
        .iter()
        .filter(|m| m["role"] == "sync_standby")
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    (names.len() == 1).then(|| names[0].clone())
}

async fn show(c: &TestCluster, i: usize, name: &str) -> Option<String> {
    let client = c.sql(i).await.ok()?;
    let row = client.query_one(&format!("SHOW {name}"), &[]).await.ok()?;
    Some(row.get(0))
}

/// `sync_state` of `standby` in the primary's `pg_stat_replication`.
async fn sync_state(c: &TestCluster, primary: usize, standby: &str) -> Option<String> {
    let client = c.sql(primary).await.ok()?;
    let row = client
        .query_opt(
            "SELECT sync_state::text FROM pg_stat_replication WHERE application_name = $1",
            &[&standby],
        )
        .await
        .ok()??;
    Some(row.get(0))
}

async fn patch_config(c: &TestCluster, i: usize, body: Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .patch(c.nodes[i].api("/config"))
        .json(&body)
        .send()
        .await
        .expect("PATCH /config");
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_standby_is_promoted_with_every_acknowledged_write() {
    let mut c = TestCluster::with_dcs(3, Timing::default(), &[("synchronous_mode", "true")]);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;

    // The key names a standby only once PostgreSQL reports it `sync`.
    let sync_name = eventually(APPLY, "a synchronous standby in the sync key", || async {
        sync_standby(&c, primary).await
    })
    .await;
    let s = c
        .nodes
        .iter()
        .position(|n| n.name == sync_name)
        .expect("the sync standby is a member");
    assert_ne!(s, primary);
    assert_eq!(
        sync_state(&c, primary, &sync_name).await.as_deref(),
        Some("sync"),
        "the key names a standby PostgreSQL does not call sync"
    );
    assert_eq!(
        show(&c, primary, "synchronous_standby_names")
            .await
            .as_deref(),
        Some(sync_name.as_str())
    );
    let other = (0..3).find(|&i| i != primary && i != s).expect("3 nodes");
    eventually(APPLY, "/sync 200 only on the sync standby", || async {
        let codes = (
            c.http_code(s, "/sync").await,
            c.http_code(s, "/read-only-sync").await,
            c.http_code(other, "/sync").await,
            c.http_code(other, "/async").await,
            c.http_code(primary, "/sync").await,
            c.http_code(primary, "/read-only-sync").await,
            c.http_code(s, "/async").await,
        );
        (codes == (200, 200, 503, 200, 503, 200, 503)).then_some(())
    })
    .await;
    let st = c.status(s).await.expect("/patroni of the sync standby");
    assert_eq!(st["sync_standby"], true, "{st}");

    // A writer gets commits acknowledged; kill -9 of the primary.
    let stop = Arc::new(AtomicBool::new(false));
    let ports = c.nodes.iter().map(|n| n.pg_port).collect();
    let writer = spawn_writer(ports, stop.clone());
    wait_for_writes(&c, primary, 20, Duration::from_secs(30)).await;
    // The standby the key names right before the fault.
    let sync_name = sync_standby(&c, primary).await.expect("sync key");
    let s = c
        .nodes
        .iter()
        .position(|n| n.name == sync_name)
        .expect("the sync standby is a member");
    c.kill_node(primary).await;
    let new_primary = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await.filter(|&p| p != primary)
    })
    .await;
    assert_eq!(
        new_primary, s,
        "only the synchronous standby may be promoted"
    );
    wait_for_writes(&c, new_primary, 20, Duration::from_secs(60)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = writer.await.expect("writer");
    let have = values_on(&c, new_primary).await;
    let missing: Vec<i64> = acked
        .iter()
        .filter(|(v, _)| !have.contains(v))
        .map(|(v, _)| *v)
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing on the new primary: {missing:?}",
        missing.len()
    );
    assert!(
        acked.iter().any(|(_, i)| *i == primary),
        "the old primary acknowledged no write"
    );

    // The remaining replica becomes the new primary's sync standby.
    let other_name = c.nodes[other].name.clone();
    eventually(APPLY, "the other replica as sync standby", || async {
        (sync_standby(&c, new_primary).await.as_deref() == Some(other_name.as_str())).then_some(())
    })
    .await;

    // Bad values are refused and change nothing.
    let (code, text) = patch_config(&c, new_primary, json!({"synchronous_mode": "maybe"})).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("synchronous_mode"), "{text}");
    // Off: the key goes, then synchronous_standby_names.
    let (code, text) = patch_config(&c, new_primary, json!({"synchronous_mode": false})).await;
    assert_eq!(code, 200, "{text}");
    eventually(APPLY, "synchronous_standby_names cleared", || async {
        let v = show(&c, new_primary, "synchronous_standby_names").await?;
        v.is_empty().then_some(())
    })
    .await;
    eventually(APPLY, "no sync standby left", || async {
        let cl = c.get_json(new_primary, "/cluster").await?;
        let any = cl["members"]
            .as_array()?
            .iter()
            .any(|m| m["role"] == "sync_standby");
        (!any).then_some(())
    })
    .await;
    assert_eq!(c.http_code(other, "/sync").await, 503);
    let log = c.nodes[new_primary].log();
    assert!(
        support::cluster::has_event(&log, events::SYNC_KEY_DELETED),
        "the sync key was not deleted:\n{log}"
    );
}

fn index_of(c: &TestCluster, name: &str) -> usize {
    c.nodes
        .iter()
        .position(|n| n.name == name)
        .expect("a member of the cluster")
}

/// Whether an insert on node `i` is acknowledged within 3 s. Measured by
/// the client: `statement_timeout` does not cover the wait for synchronous
/// standbys at commit. Every attempt inserts a new value: one that timed
/// out here may still commit later, once a standby confirms it.
async fn commits(c: &TestCluster, i: usize) -> bool {
    static NEXT: AtomicI64 = AtomicI64::new(1_000_000);
    let v = NEXT.fetch_add(1, Ordering::SeqCst);
    let insert = async {
        let client = c.sql(i).await.ok()?;
        client
            .execute("INSERT INTO t(v) VALUES ($1)", &[&v])
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), insert).await,
        Ok(Some(_))
    )
}

/// Strict mode (docs/replication-modes.md §3): a dead synchronous standby
/// is replaced by the other one; with both gone commits wait instead of
/// going asynchronous, and go on once a standby is back. Then, on the same
/// cluster, the fault sequence of docs/replication-modes.md §7
/// (`support::sync_faults`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_replaces_a_dead_sync_standby_then_blocks_commits() {
    let opts = ClusterOptions {
        extra_dcs: vec![
            ("synchronous_mode".to_owned(), "true".to_owned()),
            ("synchronous_mode_strict".to_owned(), "true".to_owned()),
        ],
        dcs_proxies: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(3, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let first = eventually(APPLY, "a synchronous standby", || async {
        sync_standby(&c, primary).await
    })
    .await;
    let s = index_of(&c, &first);
    let other = (0..3).find(|&i| i != primary && i != s).expect("3 nodes");
    let other_name = c.nodes[other].name.clone();

    c.kill_node(s).await;
    eventually(APPLY, "the other replica as sync standby", || async {
        (sync_standby(&c, primary).await.as_deref() == Some(other_name.as_str())).then_some(())
    })
    .await;
    assert!(commits(&c, primary).await, "commits with a sync standby");

    c.kill_node(other).await;
    // No standby: strict mode keeps waiting on the one the key lists.
    eventually(APPLY, "commits wait without a standby", || async {
        (!commits(&c, primary).await).then_some(())
    })
    .await;
    assert_eq!(
        show(&c, primary, "synchronous_standby_names")
            .await
            .as_deref(),
        Some(other_name.as_str()),
        "strict mode must not drop the list"
    );
    assert_eq!(c.primary().await, Some(primary));

    c.start(other);
    eventually(BOOT, "commits go on once the standby is back", || async {
        commits(&c, primary).await.then_some(())
    })
    .await;

    c.start(s);
    support::sync_faults::run(&mut c, SyncMode::Strict).await;
}

/// docs/replication-modes.md §4: primary and synchronous standby killed
/// together; the asynchronous replica may have missed acknowledged commits,
/// so it is never promoted, and the cluster waits without a primary until
/// the synchronous standby is back, which then leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_promotion_without_a_sync_standby() {
    let mut c = TestCluster::with_dcs(3, Timing::default(), &[("synchronous_mode", "true")]);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let name = eventually(APPLY, "a synchronous standby", || async {
        sync_standby(&c, primary).await
    })
    .await;
    let s = index_of(&c, &name);
    let other = (0..3).find(|&i| i != primary && i != s).expect("3 nodes");
    // An acknowledged commit, so on the synchronous standby.
    c.sql(primary)
        .await
        .expect("connect to the primary")
        .execute("INSERT INTO t(v) VALUES (1)", &[])
        .await
        .expect("insert acknowledged");

    c.kill_node(primary).await;
    c.kill_node(s).await;
    // Well past ttl (6 s) and many cycles: the async replica stays one.
    let ttl = Duration::from_secs(6);
    let until = tokio::time::Instant::now() + 3 * ttl;
    while tokio::time::Instant::now() < until {
        assert_ne!(
            c.http_code(other, "/primary").await,
            200,
            "the asynchronous replica was promoted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = c.nodes[other].log();
    assert!(
        log.contains("the sync key lists only"),
        "no refusal to race in the log:\n{log}"
    );

    c.start(s);
    let new_primary = eventually(BOOT, "the sync standby leads", || async {
        c.primary().await
    })
    .await;
    assert_eq!(new_primary, s);
    let have = values_on(&c, s).await;
    assert!(
        have.contains(&1),
        "the acknowledged row is on the new primary"
    );
}

/// docs/replication-modes.md §3: a synchronous standby restarted by
/// `POST /restart` (now or scheduled), or stopped cleanly, asks the
/// primary to release it first, and the other replica takes over the duty, so commits never wait
/// on a standby that is going away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_releases_the_sync_duty_first() {
    let mut c = TestCluster::with_dcs(3, Timing::default(), &[("synchronous_mode", "true")]);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let name = eventually(APPLY, "a synchronous standby", || async {
        sync_standby(&c, primary).await
    })
    .await;
    let s = index_of(&c, &name);
    let other = (0..3).find(|&i| i != primary && i != s).expect("3 nodes");
    let other_name = c.nodes[other].name.clone();
    let released = |log: &str| {
        log.lines()
            .any(|l| l.contains(events::SYNC_DUTY_RELEASE) && l.contains("released=true"))
    };

    // POST /restart of the synchronous standby: released before
    // PostgreSQL stops, the other replica takes the duty over.
    let (code, text) = post_json(&c, s, "/restart", json!({})).await;
    assert_eq!(code, 200, "{text}");
    let log = c.nodes[s].log();
    assert!(
        released(&log),
        "the standby restarted without being released:\n{log}"
    );
    eventually(APPLY, "the other replica took the duty over", || async {
        (sync_standby(&c, primary).await.as_deref() == Some(other_name.as_str())).then_some(())
    })
    .await;
    assert!(commits(&c, primary).await, "commits go on");
    // Back and streaming, no longer `nosync`: a candidate again.
    eventually(APPLY, "the restarted standby streams again", || async {
        let st = c.status(s).await?;
        let cl = c.get_json(primary, "/cluster").await?;
        let member = cl["members"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == name.as_str())?
            .clone();
        (st["replication_state"] == "streaming" && member["tags"]["nosync"] != true).then_some(())
    })
    .await;

    // A scheduled restart of the synchronous standby (now the other
    // replica) is released the same way when it fires.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3;
    let at = pgpilot::ha::iso8601::Utc::from_unix(at).to_iso8601();
    let (code, text) = post_json(&c, other, "/restart", json!({ "schedule": at })).await;
    assert_eq!(code, 202, "{text}");
    eventually(
        Duration::from_secs(40),
        "the scheduled restart released the standby",
        || async { released(&c.nodes[other].log()).then_some(()) },
    )
    .await;
    eventually(APPLY, "the first replica took the duty back", || async {
        (sync_standby(&c, primary).await.as_deref() == Some(name.as_str())).then_some(())
    })
    .await;
    assert!(commits(&c, primary).await, "commits go on");
    eventually(APPLY, "the restarted standby streams again", || async {
        let st = c.status(other).await?;
        (st["replication_state"] == "streaming").then_some(())
    })
    .await;

    // A clean stop of the synchronous standby (the first one again).
    let before = c.nodes[s].log().len();
    c.signal(s, nix::sys::signal::Signal::SIGTERM);
    c.wait_exit(s, Duration::from_secs(60)).await;
    let log = c.nodes[s].log();
    assert!(
        released(&log[before..]),
        "the standby stopped without being released:\n{log}"
    );
    // The stopped standby left the key before it stopped; commits go on
    // (synchronous_standby_names names the other one already), and that
    // one enters the key once PostgreSQL confirms it.
    assert_ne!(sync_standby(&c, primary).await, Some(name));
    assert!(commits(&c, primary).await, "commits go on");
    eventually(APPLY, "the other replica takes the duty over", || async {
        (sync_standby(&c, primary).await.as_deref() == Some(other_name.as_str())).then_some(())
    })
    .await;
}

async fn post_json(c: &TestCluster, i: usize, path: &str, body: Value) -> (u16, String) {
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("client")
        .post(c.nodes[i].api(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap_or_default())
}

/// docs/replication-modes.md §4: a switchover under write load goes only
/// to the synchronous standby (an asynchronous candidate is refused with
/// Patroni's 412), and loses no acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_goes_to_the_sync_standby_under_load() {
    let mut c = TestCluster::with_dcs(3, Timing::default(), &[("synchronous_mode", "true")]);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let name = eventually(APPLY, "a synchronous standby", || async {
        sync_standby(&c, primary).await
    })
    .await;
    let s = index_of(&c, &name);
    let other = (0..3).find(|&i| i != primary && i != s).expect("3 nodes");

    let stop = Arc::new(AtomicBool::new(false));
    let ports = c.nodes.iter().map(|n| n.pg_port).collect();
    let writer = spawn_writer(ports, stop.clone());
    wait_for_writes(&c, primary, 20, Duration::from_secs(30)).await;

    let leader = c.nodes[primary].name.clone();
    let (code, text) = post_json(
        &c,
        primary,
        "/switchover",
        json!({"leader": leader, "candidate": c.nodes[other].name}),
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (412, "candidate name does not match with sync_standby")
    );
    // No candidate: the synchronous standby.
    let (code, text) = post_json(&c, primary, "/switchover", json!({"leader": leader})).await;
    assert_eq!(code, 200, "{text}");
    let new_primary = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await.filter(|&p| p != primary)
    })
    .await;
    assert_eq!(new_primary, s, "the switchover went to the sync standby");
    wait_for_writes(&c, new_primary, 20, Duration::from_secs(60)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = writer.await.expect("writer");
    let have = values_on(&c, new_primary).await;
    let missing: Vec<i64> = acked
        .iter()
        .filter(|(v, _)| !have.contains(v))
        .map(|(v, _)| *v)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing: {missing:?}"
    );
}
