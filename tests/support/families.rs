//! The steps the integration families take the same way on every store
//! (etcd v2, ZooKeeper, Consul): a write that must succeed on a primary, the
//! roles `list --format json` shows, a switchover through pgpilotctl, and a
//! crash failover (kill -9 of the primary's daemon and postmaster) with its
//! time bound. What differs per store (how its keys are read, what lapses on
//! a crash) stays in each test file.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::cluster::TestCluster;
use super::{ctl, eventually};

/// Node `i` takes a write (a table of its own, created if missing).
pub async fn writable(c: &TestCluster, i: usize) -> bool {
    let Ok(client) = c.sql(i).await else {
        return false;
    };
    client
        .execute("CREATE TABLE IF NOT EXISTS family_t(v int)", &[])
        .await
        .is_ok()
        && client
            .execute("INSERT INTO family_t VALUES (1)", &[])
            .await
            .is_ok()
}

/// `(member, role)` of the rows of a `list --format json`, sorted.
pub fn roles(rows: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["Member"].as_str().unwrap_or_default().to_owned(),
                r["Role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `pgpilotctl list --format json` with node 0's configuration.
pub fn ctl_list(c: &TestCluster) -> Vec<Value> {
    let out = ctl::ok(c, &["list", "--format", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("pgpilotctl json list ({e}): {out}"))
}

/// A switchover through pgpilotctl (the failover key and the REST API):
/// the candidate takes writes and the old primary streams from it.
pub async fn switchover_via_ctl(c: &TestCluster, primary: usize, candidate: usize) {
    ctl::ok(
        c,
        &[
            "switchover",
            "--candidate",
            &c.nodes[candidate].name,
            "--force",
        ],
    );
    eventually(Duration::from_secs(60), "the candidate leads", || async {
        (c.primary().await == Some(candidate) && writable(c, candidate).await).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(60),
        "the old primary follows",
        || async { c.is_streaming_replica(primary).await.then_some(()) },
    )
    .await;
}

/// kill -9 of `primary`'s daemon and postmaster on a 3-node cluster: another
/// node takes writes within `ttl + 2 × loop_wait + 2` s (the ttl in force,
/// which a test may have changed), the third streams from it, and it alone
/// is writable. Returns `(new primary, the third node)`.
pub async fn kill_9_failover(
    c: &mut TestCluster,
    primary: usize,
    ttl: u64,
    store: &str,
) -> (usize, usize) {
    let bound = Duration::from_secs(ttl + 2 * c.timing.loop_wait + 2);
    let killed_at = Instant::now();
    c.kill_node(primary).await;
    let c: &TestCluster = c;
    let new_primary = loop {
        let mut found = None;
        for i in (0..3).filter(|&i| i != primary) {
            if writable(c, i).await {
                found = Some(i);
                break;
            }
        }
        if let Some(i) = found {
            break i;
        }
        assert!(
            killed_at.elapsed() < bound + Duration::from_secs(30),
            "no new primary on {store} within {:?}",
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let failover = killed_at.elapsed();
    eprintln!("failover on {store} took {failover:?} (bound {bound:?})");
    assert!(
        failover <= bound,
        "failover on {store} took {failover:?} (> {bound:?})"
    );
    let other = (0..3)
        .find(|&i| i != primary && i != new_primary)
        .expect("third node");
    eventually(
        Duration::from_secs(30),
        "survivor follows the new primary",
        || async { c.is_streaming_replica(other).await.then_some(()) },
    )
    .await;
    assert!(!writable(c, other).await, "two writable primaries");
    (new_primary, other)
}

/// The killed former primary `old`, started again, rejoins as a streaming
/// replica of `primary` by pg_rewind (the event in its log).
pub async fn rejoins_by_rewind(c: &mut TestCluster, old: usize, primary: usize, boot: Duration) {
    c.start(old);
    assert_eq!(
        c.wait_healthy(boot).await,
        primary,
        "the returning node took over"
    );
    eventually(
        Duration::from_secs(60),
        "the old primary streams again",
        || async { c.is_streaming_replica(old).await.then_some(()) },
    )
    .await;
    let log = c.nodes[old].log();
    assert!(
        super::cluster::has_event(&log, pgpilot::events::REWIND_DONE),
        "no rewind in the log:\n{log}"
    );
}

/// The primary `old` cut off from its store (`cut_from_dcs`): it stops
/// taking writes before its lease can end for the others (the fence's last
/// heartbeat gives the fencing point, docs/ha.md §9.1, 1 s before the end),
/// and `other` takes no write meanwhile. Returns how long after the cut the
/// writes were refused.
pub async fn cut_off_primary_stops_writes(c: &TestCluster, old: usize, other: usize) -> Duration {
    assert!(writable(c, old).await, "the primary takes writes");
    let cut_at = Instant::now();
    c.cut_from_dcs(old);
    let refused_ms = loop {
        if !writable(c, old).await {
            break pgpilot::fence::boottime_ms();
        }
        assert!(
            !writable(c, other).await,
            "two writable primaries {:?} after the cut",
            cut_at.elapsed()
        );
        assert!(
            cut_at.elapsed() < Duration::from_secs(30),
            "the cut-off primary kept taking writes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let refused_after = cut_at.elapsed();
    let hb = pgpilot::fence::read_heartbeat(&c.nodes[old].fence_dir()).expect("fence heartbeat");
    let lease_end_ms = hb.deadline_ms + 1000;
    eprintln!(
        "writes refused {refused_after:?} after the cut, {} ms before the lease could end",
        lease_end_ms as i64 - refused_ms as i64
    );
    assert!(
        refused_ms < lease_end_ms,
        "writes refused at {refused_ms} ms, the lease may have ended at {lease_end_ms} ms"
    );
    refused_after
}

/// Two nodes, the store out (stopped or frozen by the caller) without
/// failsafe mode, watched for 3×ttl: the primary stops taking writes within
/// ttl, nobody answers `/primary` after ttl (the old primary may while its
/// lease holds), the replica takes no write. Returns when writes were
/// refused, counted from the call (made right after the outage began).
pub async fn outage_demotes_and_nobody_promotes(c: &TestCluster, primary: usize) -> Duration {
    let ttl = Duration::from_secs(c.timing.ttl);
    let since = Instant::now();
    let mut refused_after = None;
    while since.elapsed() < 3 * ttl {
        if refused_after.is_none() && !writable(c, primary).await {
            refused_after = Some(since.elapsed());
        }
        for i in 0..2 {
            if i == primary && since.elapsed() < ttl {
                continue;
            }
            let code = c.http_code(i, "/primary").await;
            assert!(
                code == 503 || code == 0,
                "{} answers /primary {code} {:?} into the outage",
                c.nodes[i].name,
                since.elapsed()
            );
        }
        assert!(
            !writable(c, 1 - primary).await,
            "the replica took a write during the outage"
        );
        // Poll interval; the outage's length (3×ttl) is the scenario.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused_after = refused_after.expect("the primary kept taking writes for 3×ttl");
    eprintln!("writes refused {refused_after:?} into the outage (ttl {ttl:?})");
    assert!(
        refused_after < ttl,
        "read-only only after {refused_after:?}"
    );
    refused_after
}

/// Two nodes with failsafe mode: wait until both know the failsafe key and
/// it lists both (call before the outage).
pub async fn failsafe_lists_both(c: &TestCluster, primary: usize) {
    for i in 0..2 {
        eventually(Duration::from_secs(30), "failsafe key known", || async {
            (c.http_code(i, "/failsafe").await == 200).then_some(())
        })
        .await;
    }
    eventually(Duration::from_secs(30), "failsafe lists both", || async {
        let r = reqwest::get(c.nodes[primary].api("/failsafe")).await.ok()?;
        let m: Value = r.json().await.ok()?;
        (m.as_object()?.len() == 2).then_some(())
    })
    .await;
}

/// Two nodes with failsafe mode, the store out (the caller stopped it):
/// for 3×ttl the primary takes every write and the replica never answers
/// `/primary`.
pub async fn outage_with_failsafe_keeps_writing(c: &TestCluster, primary: usize) {
    let ttl = Duration::from_secs(c.timing.ttl);
    let since = Instant::now();
    while since.elapsed() < 3 * ttl {
        assert!(
            writable(c, primary).await,
            "write refused {:?} into the outage",
            since.elapsed()
        );
        let code = c.http_code(1 - primary, "/primary").await;
        assert!(
            code == 503 || code == 0,
            "the replica answers /primary {code}"
        );
        // Poll interval; the outage's length (3×ttl) is the scenario.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole cut-off case on two nodes: [`cut_off_primary_stops_writes`],
/// then `other` takes writes, `old` never does again, and after the cut
/// heals `other` stays the primary.
pub async fn cut_off_primary_is_replaced(
    c: &TestCluster,
    old: usize,
    other: usize,
    boot: Duration,
) {
    cut_off_primary_stops_writes(c, old, other).await;
    eventually(Duration::from_secs(30), "a new primary", || async {
        writable(c, other).await.then_some(())
    })
    .await;
    assert!(!writable(c, old).await, "two writable primaries");
    c.heal_dcs(old);
    assert_eq!(c.wait_healthy(boot).await, other, "the new primary stays");
}
