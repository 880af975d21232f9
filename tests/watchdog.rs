//! `watchdog.mode` against real etcd and PostgreSQL. This machine has no
//! watchdog device (no `/dev/watchdog`, no softdog module), so only the
//! "unusable" paths run here: `required` with a missing device keeps every
//! node from leading (the cluster is never bootstrapped) and shows
//! `watchdog_failed: true` in `GET /patroni`; `automatic` with a missing
//! device runs the cluster normally; a `required` node whose device is a
//! regular file (ENOTTY) replicates but is never promoted, not in a
//! failover and not by a switchover.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgpilot::events;
use serde_json::{Value, json};
use support::cluster::{TestCluster, Timing, count_events};
use support::eventually;

const BOOT: Duration = Duration::from_secs(90);

fn watchdog(mode: &str, device: &str) -> String {
    format!("{{mode: {mode}, device: {device}}}")
}

async fn watchdog_failed(c: &TestCluster, i: usize) -> Option<bool> {
    let s = c.status(i).await?;
    Some(s.get("watchdog_failed").and_then(Value::as_bool) == Some(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_without_device_no_node_leads() {
    let mut c = TestCluster::new(0, Timing::default());
    let missing = c.root.join("no-such-watchdog").display().to_string();
    let wd = watchdog("required", &missing);
    for i in 0..3 {
        c.add_node(
            &format!("node{i}"),
            &BTreeMap::from([("watchdog", wd.as_str())]),
        );
    }
    c.start_all();
    eventually(
        Duration::from_secs(30),
        "every node reports watchdog_failed: true",
        || async {
            for i in 0..3 {
                if watchdog_failed(&c, i).await != Some(true) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    // Several ttls' worth of HA cycles: nobody bootstraps, nobody leads.
    let k = usize::try_from(3 * c.timing.ttl / c.timing.loop_wait).expect("cycles");
    c.during_cycles(
        &[0, 1, 2],
        k,
        Duration::from_secs(9 * c.timing.ttl),
        "nobody leads",
        || async {
            for i in 0..3 {
                assert_ne!(c.http_code(i, "/primary").await, 200, "node {i} leads");
                let s = c.status(i).await.expect("status");
                assert_eq!(s["watchdog_failed"], true, "{s}");
                assert_eq!(s["cluster_unlocked"], true, "{s}");
            }
        },
    )
    .await;
    for n in &c.nodes {
        assert!(
            !n.data_dir().join("PG_VERSION").exists(),
            "{} ran initdb",
            n.name
        );
        let log = n.log();
        assert!(
            log.contains("not bootstrapping: the watchdog is required but unusable"),
            "{}: {log}",
            n.name
        );
        assert!(log.contains(&missing), "the reason names the device: {log}");
    }
    let cluster = c.get_json(0, "/cluster").await.expect("/cluster");
    assert!(
        cluster["members"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["role"] != "leader")),
        "{cluster}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_without_device_works_and_a_failed_required_node_is_never_promoted() {
    let mut c = TestCluster::new(0, Timing::default());
    // node0: required, on a regular file (opens, but the ioctl says ENOTTY).
    let not_a_device = c.root.join("not-a-watchdog");
    std::fs::write(&not_a_device, "").unwrap();
    // The daemons run as postgres: let them open it for writing.
    if nix::unistd::Uid::effective().is_root()
        && let Some(u) = nix::unistd::User::from_name("postgres").ok().flatten()
    {
        nix::unistd::chown(&not_a_device, Some(u.uid), Some(u.gid)).unwrap();
    }
    let required = watchdog("required", &not_a_device.display().to_string());
    c.add_node("node0", &BTreeMap::from([("watchdog", required.as_str())]));
    // node1, node2: automatic, no device (explicitly, so a machine that has
    // /dev/watchdog is not armed by the test).
    let missing = c.root.join("no-such-watchdog").display().to_string();
    let automatic = watchdog("automatic", &missing);
    for i in 1..3 {
        c.add_node(
            &format!("node{i}"),
            &BTreeMap::from([("watchdog", automatic.as_str())]),
        );
    }
    // node0 alone first: it tries to arm its watchdog before the bootstrap
    // race, fails, and so never bootstraps (a probe alone would pass: the
    // file is writable; only the ioctl tells).
    c.start(0);
    eventually(
        Duration::from_secs(30),
        "node0 reports watchdog_failed",
        || async { watchdog_failed(&c, 0).await.filter(|f| *f) },
    )
    .await;
    c.start(1);
    c.start(2);
    let primary = c.wait_healthy(BOOT).await;
    assert_ne!(primary, 0, "node0 cannot arm its required watchdog");
    assert_eq!(watchdog_failed(&c, 0).await, Some(true));
    for i in 1..3 {
        assert_eq!(watchdog_failed(&c, i).await, Some(false), "node{i}");
    }
    // Automatic warns once, when it first tries (the primary did, before
    // its bootstrap; a replica that never led may not have).
    for i in 1..3 {
        let log = c.nodes[i].log();
        let warned = count_events(&log, events::WATCHDOG_UNAVAILABLE);
        assert!(
            warned == 1 || (i != primary && warned == 0),
            "node{i} warned {warned} times: {log}"
        );
    }
    let log0 = c.nodes[0].log();
    assert!(
        log0.contains("Inappropriate ioctl for device"),
        "node0 says why: {log0}"
    );
    assert_eq!(std::fs::read(&not_a_device).unwrap(), b"", "file untouched");

    // A switchover to node0 is refused: not watchdog capable.
    let resp = reqwest::Client::new()
        .post(c.nodes[primary].api("/switchover"))
        .json(&json!({"leader": c.nodes[primary].name, "candidate": "node0"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("POST /switchover");
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(code, 412, "{text}");
    assert!(text.contains("no good candidates"), "{text}");

    // Kill the primary: the other automatic node takes over, node0 never.
    let other = 3 - primary;
    c.kill_node(primary).await;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        assert_ne!(c.http_code(0, "/primary").await, 200, "node0 was promoted");
        if c.http_code(other, "/primary").await == 200 {
            break;
        }
        if Instant::now() > until {
            c.dump_logs();
            panic!("node{other} did not take over");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // node0 follows the new primary and still never leads.
    eventually(
        Duration::from_secs(60),
        "node0 streams from the new primary",
        || async { c.is_streaming_replica(0).await.then_some(()) },
    )
    .await;
    assert_ne!(c.http_code(0, "/primary").await, 200);
    // After the failover the new primary tried (and warned) at most once.
    let warned = c.nodes[other].event_count(events::WATCHDOG_UNAVAILABLE);
    assert_eq!(warned, 1, "{}", c.nodes[other].log());
}
