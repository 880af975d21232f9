//! The core capability on etcd's v2 API (Patroni's `etcd:` section): three
//! daemons bootstrap one primary and two streaming replicas under
//! `/v2/keys`, with Patroni's layout (Patroni's own patronictl, reading v2
//! through python-etcd, lists them as pgpilotctl does; the v3 keyspace stays
//! empty); a switchover through pgpilotctl; a failover when the primary is
//! killed (kill -9 of the daemon and the postmaster), within the TTL of its
//! leader key; the killed node rejoins by pg_rewind. The store's faults on
//! two nodes: the primary cut off from etcd (fenced before a takeover),
//! etcd frozen without failsafe mode (demoted, nobody promoted), etcd
//! stopped with failsafe mode (the primary keeps writing).

mod support;

use std::time::{Duration, Instant};

use pgpilot::dcs::etcd::EtcdDcs;
use pgpilot::dcs::etcd2::Etcd2Dcs;
use pgpilot::dcs::{Cluster, Dcs, keys};
use support::cluster::{ClusterOptions, TestCluster, Timing};
use support::eventually;
use support::families::{
    failsafe_lists_both, kill_9_failover, outage_demotes_and_nobody_promotes,
    outage_with_failsafe_keeps_writing, roles, switchover_via_ctl, writable,
};

const BOOT: Duration = Duration::from_secs(90);

fn prefix(c: &TestCluster) -> String {
    keys::cluster_prefix("/it/", &c.scope)
}

/// The cluster as a fresh read of the test's etcd over v2 shows it.
async fn read(c: &TestCluster) -> Option<Cluster> {
    let reader = Etcd2Dcs::new(
        vec![c.etcd.endpoint()],
        prefix(c),
        "test-reader".into(),
        Duration::from_secs(10),
        Duration::from_secs(5),
    );
    reader.load_cluster_fresh().await.ok()
}

fn list(cmd: &mut std::process::Command, what: &str) -> Vec<serde_json::Value> {
    let out = cmd
        .args(["list", "--format", "json"])
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what} json list: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_switchover_and_kill_9_failover_on_etcd_v2() {
    let opts = ClusterOptions {
        etcd2: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(3, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;

    // Patroni's layout under /v2/keys: the leader key names the primary,
    // every node has a member key, initialize holds the system identifier.
    let cl = eventually(
        Duration::from_secs(20),
        "three members in etcd v2",
        || async {
            let cl = read(&c).await?;
            (cl.members.len() == 3).then_some(cl)
        },
    )
    .await;
    assert_eq!(cl.leader_name(), Some(c.nodes[primary].name.as_str()));
    let sysid = c.status(primary).await.expect("status")["database_system_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(cl.initialize.as_deref(), Some(sysid.as_str()));
    assert!(cl.config.is_some(), "config key");
    // Nothing in v3's keyspace: `etcd:` is the v2 API, not a spelling of
    // `etcd3:`.
    let v3 = EtcdDcs::new(
        vec![c.etcd.endpoint()],
        None,
        prefix(&c),
        "test-reader".into(),
        Duration::from_secs(10),
        Duration::from_secs(5),
    );
    let v3 = v3.load_cluster_fresh().await.expect("v3 read");
    assert!(
        v3.members.is_empty() && v3.leader.is_none() && v3.initialize.is_none(),
        "keys in the v3 keyspace: {v3:?}"
    );
    for i in (0..3).filter(|&i| i != primary) {
        eventually(Duration::from_secs(30), "replica streams", || async {
            c.is_streaming_replica(i).await.then_some(())
        })
        .await;
    }
    assert!(writable(&c, primary).await, "the primary takes writes");

    // pgpilotctl through the file's `etcd` section, and Patroni's own
    // patronictl on v2 (python-etcd): the same members, roles and leader.
    let ours = list(
        std::process::Command::new(env!("CARGO_BIN_EXE_pgpilotctl"))
            .arg("-c")
            .arg(&c.nodes[0].config_path),
        "pgpilotctl",
    );
    assert_eq!(ours.len(), 3, "{ours:?}");
    let leaders: Vec<&serde_json::Value> = ours.iter().filter(|r| r["Role"] == "Leader").collect();
    assert_eq!(leaders.len(), 1, "{ours:?}");
    assert_eq!(leaders[0]["Member"], c.nodes[primary].name.as_str());
    let yml = c.root.join("patronictl.yml");
    let host = c.etcd.endpoint().trim_start_matches("http://").to_owned();
    std::fs::write(
        &yml,
        format!(
            "scope: {}\nnamespace: /it/\netcd:\n  hosts: {host}\n",
            c.scope
        ),
    )
    .expect("write patronictl.yml");
    let patronictl = std::env::var_os("PATRONICTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/opt/patroni/bin/patronictl".into());
    let theirs = list(
        std::process::Command::new(&patronictl)
            .arg("-c")
            .arg(&yml)
            .env("HOME", &c.root),
        "patronictl (scripts/lib.sh ensure_patronictl installs it)",
    );
    assert_eq!(
        roles(&theirs),
        roles(&ours),
        "patronictl and pgpilotctl disagree"
    );

    // A switchover through pgpilotctl (the failover key and the REST API)
    // on v2: the candidate leads, the old primary follows it.
    let candidate = (primary + 1) % 3;
    switchover_via_ctl(&c, primary, candidate).await;
    let cl = read(&c).await.expect("read after the switchover");
    assert_eq!(cl.leader_name(), Some(c.nodes[candidate].name.as_str()));
    let primary = candidate;

    // kill -9 of the primary's daemon and postmaster: its leader key lapses
    // one TTL after its last renewal, and a replica takes over.
    let ttl = c.timing.ttl;
    let (new_primary, _) = kill_9_failover(&mut c, primary, ttl, "etcd v2").await;
    let cl = eventually(
        Duration::from_secs(c.timing.ttl + 5),
        "the killed node's member key lapses",
        || async {
            let cl = read(&c).await?;
            cl.member(&c.nodes[primary].name).is_none().then_some(cl)
        },
    )
    .await;
    assert_eq!(cl.leader_name(), Some(c.nodes[new_primary].name.as_str()));

    // The killed node comes back and rejoins as a replica, by pg_rewind.
    support::families::rejoins_by_rewind(&mut c, primary, new_primary, BOOT).await;
}

/// A mixed cluster on etcd v2: pgpilot bootstraps, Patroni 4.1.5's own
/// daemon (its `etcd:` section, python-etcd) joins as a replica beside a
/// second pgpilot node; a switchover hands the leader key to Patroni,
/// whose key the pgpilot nodes follow; Patroni killed (kill -9 of its
/// daemon and postmaster), its leader key lapses and a pgpilot node takes
/// over; the Patroni node, switched to pgpilot on the same YAML and data
/// directory, rejoins as a replica. Timing at Patroni's minimums (`ttl` 20, `retry_timeout` 3), which
/// both daemons then run with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_patroni_and_pgpilot_cluster_on_etcd_v2() {
    let opts = ClusterOptions {
        etcd2: true,
        shape: support::cluster::Shape::PatroniSample,
        ..ClusterOptions::default()
    };
    let timing = Timing {
        ttl: 20,
        loop_wait: 2,
        retry_timeout: 3,
    };
    let mut c = TestCluster::with_options(3, timing, opts);
    const PATRONI: usize = 1;
    c.start(0);
    assert_eq!(c.wait_healthy(BOOT).await, 0, "pgpilot bootstraps");
    c.start_patroni(PATRONI);
    c.start(2);
    for i in [PATRONI, 2] {
        eventually(Duration::from_secs(90), "replica streams", || async {
            c.is_streaming_replica(i).await.then_some(())
        })
        .await;
    }
    let cl = eventually(Duration::from_secs(20), "three members", || async {
        let cl = read(&c).await?;
        (cl.members.len() == 3).then_some(cl)
    })
    .await;
    assert_eq!(cl.leader_name(), Some(c.nodes[0].name.as_str()));

    // The two tools agree on the mixed cluster.
    let ours = list(
        std::process::Command::new(env!("CARGO_BIN_EXE_pgpilotctl"))
            .arg("-c")
            .arg(&c.nodes[0].config_path),
        "pgpilotctl",
    );
    let patronictl = std::env::var_os("PATRONICTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/opt/patroni/bin/patronictl".into());
    let theirs = list(
        std::process::Command::new(&patronictl)
            .arg("-c")
            .arg(&c.nodes[PATRONI].config_path)
            .env("HOME", &c.root),
        "patronictl",
    );
    assert_eq!(
        roles(&theirs),
        roles(&ours),
        "patronictl and pgpilotctl disagree"
    );

    // Switchover to the Patroni node: it creates the leader key (Patroni's
    // prevExist=false write) and promotes; both pgpilot nodes follow it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgpilotctl"))
        .arg("-c")
        .arg(&c.nodes[0].config_path)
        .args([
            "switchover",
            "--candidate",
            &c.nodes[PATRONI].name,
            "--force",
        ])
        .output()
        .expect("run pgpilotctl switchover");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(90), "Patroni leads", || async {
        let cl = read(&c).await?;
        (cl.leader_name() == Some(c.nodes[PATRONI].name.as_str()) && writable(&c, PATRONI).await)
            .then_some(())
    })
    .await;
    for i in [0, 2] {
        eventually(
            Duration::from_secs(90),
            "pgpilot follows Patroni",
            || async { c.is_streaming_replica(i).await.then_some(()) },
        )
        .await;
    }

    // Patroni killed: its leader key (Patroni's TTL) lapses, and a pgpilot
    // node takes over; the other follows it.
    let killed_at = Instant::now();
    c.kill_node(PATRONI).await;
    let bound = Duration::from_secs(timing.ttl + 2 * timing.loop_wait + 10);
    let new_primary = eventually(bound, "a pgpilot node takes over", || async {
        for i in [0, 2] {
            if writable(&c, i).await {
                return Some(i);
            }
        }
        None
    })
    .await;
    eprintln!(
        "failover from Patroni to pgpilot on etcd v2 took {:?}",
        killed_at.elapsed()
    );
    let other = if new_primary == 0 { 2 } else { 0 };
    eventually(
        Duration::from_secs(60),
        "the other pgpilot node follows",
        || async { c.is_streaming_replica(other).await.then_some(()) },
    )
    .await;
    assert!(!writable(&c, other).await, "two writable primaries");
    let cl = read(&c).await.expect("read after the failover");
    assert_eq!(cl.leader_name(), Some(c.nodes[new_primary].name.as_str()));

    // The Patroni node switches to pgpilot: the same YAML and data
    // directory. It finds the cluster (the v2 keys Patroni and pgpilot
    // wrote), never bootstraps another, and rejoins as a replica of the
    // new primary (pg_rewind: it was the primary).
    c.start(PATRONI);
    eventually(
        Duration::from_secs(90),
        "the former Patroni node streams from the new primary",
        || async { c.is_streaming_replica(PATRONI).await.then_some(()) },
    )
    .await;
    let cl = read(&c).await.expect("read after the switch to pgpilot");
    assert_eq!(cl.leader_name(), Some(c.nodes[new_primary].name.as_str()));
    assert_eq!(
        cl.initialize.as_deref(),
        c.status(new_primary).await.expect("status")["database_system_identifier"].as_str(),
        "one cluster, one system identifier"
    );
    let log = c.nodes[PATRONI].log();
    assert!(
        !support::cluster::has_event(&log, pgpilot::events::BOOTSTRAP_PUBLISHED),
        "the former Patroni node bootstrapped:\n{log}"
    );
}

fn two_nodes_on_v2(dcs_proxies: bool, failsafe: bool) -> TestCluster {
    let opts = ClusterOptions {
        etcd2: true,
        dcs_proxies,
        extra_dcs: if failsafe {
            vec![("failsafe_mode".into(), "true".into())]
        } else {
            Vec::new()
        },
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    c
}

/// The primary alone cut off from etcd (its connections reset, the process
/// alive): on v2 its leader key lapses for the others one TTL after the last
/// refresh etcd took; the primary stops taking writes at its fencing point,
/// counted from a refresh etcd answered, so before the other node can take
/// the key. One primary again after the cut heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_cut_off_from_etcd_v2_is_fenced_before_a_takeover() {
    let c = two_nodes_on_v2(true, false);
    let old = c.wait_healthy(BOOT).await;
    let other = 1 - old;
    support::families::cut_off_primary_is_replaced(&c, old, other, BOOT).await;
}

/// etcd frozen (SIGSTOP: connections open, no answer) for 3×ttl without
/// failsafe mode: the primary stops taking writes within ttl, nobody
/// answers `/primary` after ttl; one primary once etcd is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_v2_frozen_without_failsafe_demotes_and_nobody_promotes() {
    let c = two_nodes_on_v2(false, false);
    let primary = c.wait_healthy(BOOT).await;
    assert!(writable(&c, primary).await, "the primary takes writes");
    c.etcd.pause();
    outage_demotes_and_nobody_promotes(&c, primary).await;
    c.etcd.resume();
    c.wait_healthy(BOOT).await;
}

/// etcd stopped for 3×ttl with failsafe mode: the replica confirms the
/// primary over REST, so it keeps taking writes, and it is still the
/// primary once etcd is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_v2_stopped_with_failsafe_keeps_the_primary_writable() {
    let mut c = two_nodes_on_v2(false, true);
    let primary = c.wait_healthy(BOOT).await;
    failsafe_lists_both(&c, primary).await;
    assert!(writable(&c, primary).await, "the primary takes writes");
    c.etcd.stop();
    outage_with_failsafe_keeps_writing(&c, primary).await;
    c.etcd.restart();
    let p = c.wait_healthy(BOOT).await;
    assert_eq!(p, primary, "the primary changed");
    assert!(writable(&c, primary).await, "write after etcd returned");
}
