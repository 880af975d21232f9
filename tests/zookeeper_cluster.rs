//! The core capability on ZooKeeper instead of etcd: three daemons with a
//! `zookeeper` section bootstrap one primary and two streaming replicas,
//! lay the keys out as Patroni does (leader and members ephemeral, on the
//! holder's session; Patroni's patronictl lists them as pgpilotctl does),
//! take a ttl change, switch over through pgpilotctl and through Patroni's
//! patronictl, carry a SIGHUP-reloaded tag into a member znode, fail over when the
//! primary is killed (kill -9 of the daemon and the postmaster) and take it
//! back by pg_rewind; a primary cut off from ZooKeeper is fenced before
//! another node takes over; ZooKeeper frozen and stopped, each with and
//! without failsafe mode; pause; one member of an ensemble killed at a time.

mod support;

use std::time::{Duration, Instant};

use support::cluster::{ClusterOptions, TestCluster, Timing};
use support::eventually;
use support::families::{
    ctl_list, failsafe_lists_both, kill_9_failover, outage_demotes_and_nobody_promotes,
    outage_with_failsafe_keeps_writing, roles, switchover_via_ctl, writable,
};
use support::zookeeper::read_cluster as read;

const BOOT: Duration = Duration::from_secs(90);
/// The ttl the bootstrap test sets through `PATCH /config` (the server's
/// tick of 500 ms grants up to 10 s).
const NEW_TTL: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_and_kill_9_failover_on_zookeeper() {
    let opts = ClusterOptions {
        zookeeper: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(3, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;

    // Patroni's layout: the leader key names the primary and is on the same
    // session as its member key; every node has a member key; initialize
    // holds the system identifier; config is there.
    let cl = eventually(
        Duration::from_secs(20),
        "three members in ZooKeeper",
        || async {
            let cl = read(&c).await?;
            (cl.members.len() == 3).then_some(cl)
        },
    )
    .await;
    let leader = cl.leader.as_ref().expect("leader key");
    assert_eq!(leader.name, c.nodes[primary].name);
    assert!(leader.session.is_some(), "the leader znode is ephemeral");
    assert_eq!(
        leader.session,
        cl.member(&leader.name).and_then(|m| m.session.clone()),
        "leader and member znodes on one session"
    );
    let sysid = c.status(primary).await.expect("status")["database_system_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(cl.initialize.as_deref(), Some(sysid.as_str()));
    assert!(cl.config.is_some(), "config key");
    for i in (0..3).filter(|&i| i != primary) {
        eventually(Duration::from_secs(30), "replica streams", || async {
            c.is_streaming_replica(i).await.then_some(())
        })
        .await;
    }
    assert!(writable(&c, primary).await, "the primary takes writes");

    // pgpilotctl reads the same picture through the file's zookeeper section.
    let rows = ctl_list(&c);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let leaders: Vec<&serde_json::Value> = rows.iter().filter(|r| r["Role"] == "Leader").collect();
    assert_eq!(leaders.len(), 1, "{rows:?}");
    assert_eq!(leaders[0]["Member"], c.nodes[primary].name.as_str());

    // Patroni's own patronictl (with its ZooKeeper extra, kazoo) reads the
    // znodes pgpilot wrote: the same members, roles and leader.
    let zk = c.zookeeper.as_ref().expect("zookeeper").server();
    let yml = c.root.join("patronictl.yml");
    std::fs::write(
        &yml,
        format!(
            "scope: {}\nnamespace: /it/\nzookeeper:\n  hosts: [{zk}]\n",
            c.scope
        ),
    )
    .expect("write patronictl.yml");
    let patronictl = std::env::var_os("PATRONICTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/opt/patroni/bin/patronictl".into());
    let out = std::process::Command::new(&patronictl)
        .arg("-c")
        .arg(&yml)
        .args(["list", "--format", "json"])
        .env("HOME", &c.root)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {} (scripts/lib.sh ensure_patronictl installs it): {e}",
                patronictl.display()
            )
        });
    assert!(
        out.status.success(),
        "patronictl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("patronictl json list");
    assert_eq!(
        roles(&theirs),
        roles(&rows),
        "patronictl and pgpilotctl disagree"
    );

    // A ttl change (PATCH /config): every node makes a session of the new
    // length and moves its keys onto it; the primary keeps the leader key
    // (moved, not lost) and stays the primary.
    let before = read(&c).await.expect("read before the ttl change");
    let old_session = before.leader.as_ref().and_then(|l| l.session.clone());
    let r = reqwest::Client::new()
        .patch(c.nodes[primary].api("/config"))
        .body(format!(r#"{{"ttl": {NEW_TTL}}}"#))
        .send()
        .await
        .expect("PATCH /config");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    eventually(
        Duration::from_secs(30),
        "keys on the new sessions",
        || async {
            let cl = read(&c).await?;
            let l = cl.leader.as_ref()?;
            let moved = l.name == c.nodes[primary].name
                && l.session.is_some()
                && l.session != old_session
                && cl.members.len() == 3
                && cl
                    .members
                    .iter()
                    .all(|m| before.member(&m.name).map(|b| &b.session) != Some(&m.session));
            moved.then_some(())
        },
    )
    .await;
    assert_eq!(
        c.primary().await,
        Some(primary),
        "the primary changed at the ttl change"
    );
    assert!(
        writable(&c, primary).await,
        "the primary takes writes after the ttl change"
    );

    // A switchover through pgpilotctl (the failover key and the REST API)
    // on ZooKeeper: the candidate leads, the old primary follows it.
    let candidate = (primary + 1) % 3;
    switchover_via_ctl(&c, primary, candidate).await;
    let cl = read(&c).await.expect("read after the switchover");
    assert_eq!(cl.leader_name(), Some(c.nodes[candidate].name.as_str()));
    let primary = candidate;

    // A switchover through Patroni's own patronictl (kazoo reads the
    // znodes, its request goes to the leader's REST API).
    let candidate = (primary + 1) % 3;
    let out = std::process::Command::new(&patronictl)
        .arg("-c")
        .arg(&yml)
        .args(["switchover", "--leader", &c.nodes[primary].name])
        .args(["--candidate", &c.nodes[candidate].name, "--force"])
        .env("HOME", &c.root)
        .output()
        .expect("run patronictl switchover");
    assert!(
        out.status.success(),
        "patronictl switchover: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(60), "the candidate leads", || async {
        (c.primary().await? == candidate).then_some(())
    })
    .await;
    let cl = read(&c).await.expect("read after patronictl's switchover");
    assert_eq!(cl.leader_name(), Some(c.nodes[candidate].name.as_str()));
    let primary = candidate;

    // SIGHUP reload of a replica's file: its new tag reaches its member
    // znode (rewritten on its session), the primary unchanged.
    let replica = (primary + 1) % 3;
    let path = &c.nodes[replica].config_path;
    let mut text = std::fs::read_to_string(path).expect("read the replica's config");
    assert!(!text.contains("\ntags:"), "the test's YAML has no tags yet");
    text.push_str("tags:\n  noloadbalance: true\n");
    std::fs::write(path, text).expect("write the replica's config");
    c.signal(replica, nix::sys::signal::Signal::SIGHUP);
    let name = c.nodes[replica].name.clone();
    eventually(
        Duration::from_secs(30),
        "the reloaded tag in the member znode",
        || async {
            let cl = read(&c).await?;
            cl.member(&name)?.data.tags.noloadbalance.then_some(())
        },
    )
    .await;
    assert_eq!(
        c.primary().await,
        Some(primary),
        "the reload moved the primary"
    );

    // kill -9 of the primary's daemon and postmaster: its session lapses
    // (one granted timeout), and a replica takes over.
    // The ttl in force is the one PATCHed above.
    let (new_primary, _) = kill_9_failover(&mut c, primary, NEW_TTL, "zookeeper").await;
    let cl = read(&c).await.expect("read after failover");
    assert_eq!(cl.leader_name(), Some(c.nodes[new_primary].name.as_str()));
    assert!(
        cl.member(&c.nodes[primary].name).is_none(),
        "the killed node's member znode went with its session"
    );

    // The killed node comes back and rejoins as a replica, by pg_rewind.
    support::families::rejoins_by_rewind(&mut c, primary, new_primary, BOOT).await;
}

/// The primary alone cut off from ZooKeeper (its connection reset, the
/// process alive): its session lapses for the others one granted timeout
/// after the server last heard from it. The primary stops taking writes by
/// its fencing point, which rests on that timeout counted from a request the
/// server answered, and so before the other node can take the key and
/// promote: never two writable primaries. The cluster is one again after
/// the cut heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_cut_off_from_zookeeper_is_fenced_before_a_takeover() {
    let opts = ClusterOptions {
        zookeeper: true,
        dcs_proxies: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    let old = c.wait_healthy(BOOT).await;
    let other = 1 - old;
    eventually(Duration::from_secs(30), "replica streams", || async {
        c.is_streaming_replica(other).await.then_some(())
    })
    .await;
    let cut_at = Instant::now();
    let refused_after = support::families::cut_off_primary_stops_writes(&c, old, other).await;
    // The other node takes over once the old session lapsed: the server
    // expires it one granted timeout (ttl, 6 s) after it last heard from the
    // old primary, rounded up to its 500 ms tick, i.e. about the fencing
    // margin (1 s) plus a tick after the old one stopped its writes, then the
    // watch wakes the replica (docs/dcs.md, "Benchmarks on ZooKeeper").
    eventually(Duration::from_secs(30), "a new primary", || async {
        writable(&c, other).await.then_some(())
    })
    .await;
    let takeover = cut_at.elapsed().saturating_sub(refused_after);
    eprintln!("the other node took writes {takeover:?} after the old primary refused them");
    // Printed, not bounded: how long the takeover takes is a figure of
    // `scripts/bench-partition --dcs zookeeper` (docs/dcs.md), and a loaded
    // CI machine would make any bound here either loose or flaky.
    assert!(!writable(&c, old).await, "two writable primaries");
    c.heal_dcs(old);
    assert_eq!(c.wait_healthy(BOOT).await, other, "the new primary stays");
}

/// ZooKeeper frozen (SIGSTOP) for 3×ttl without failsafe mode: the primary
/// stops taking writes within ttl, nobody answers `/primary` after ttl, the
/// replica takes no write; once ZooKeeper is back there is one primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_frozen_without_failsafe_demotes_and_nobody_promotes() {
    let opts = ClusterOptions {
        zookeeper: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    assert!(writable(&c, primary).await, "the primary takes writes");
    let zk = c.zookeeper.as_ref().expect("zookeeper");
    zk.pause();
    outage_demotes_and_nobody_promotes(&c, primary).await;
    zk.resume();
    c.wait_healthy(BOOT).await;
}

/// ZooKeeper stopped for 3×ttl with failsafe mode: the replica confirms the
/// primary over REST, so it keeps taking writes the whole time, and it is
/// still the primary once ZooKeeper is back (its key kept or moved back onto
/// its new session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_stopped_with_failsafe_keeps_the_primary_writable() {
    let opts = ClusterOptions {
        zookeeper: true,
        extra_dcs: vec![("failsafe_mode".into(), "true".into())],
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    failsafe_lists_both(&c, primary).await;
    assert!(writable(&c, primary).await, "the primary takes writes");
    c.zookeeper.as_mut().expect("zookeeper").stop();
    outage_with_failsafe_keeps_writing(&c, primary).await;
    c.zookeeper.as_mut().expect("zookeeper").restart();
    let p = c.wait_healthy(BOOT).await;
    assert_eq!(p, primary, "the primary changed");
    assert!(
        writable(&c, primary).await,
        "write after ZooKeeper returned"
    );
}

/// The other two outages on one cluster: ZooKeeper stopped for 3×ttl
/// without failsafe mode (the primary demoted within ttl, nobody promoted,
/// one primary once it is back), then failsafe mode turned on through
/// `PATCH /config` and ZooKeeper frozen (SIGSTOP) for 3×ttl (the replica
/// confirms the primary over REST, so it keeps taking writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_stopped_without_failsafe_then_frozen_with_it() {
    let opts = ClusterOptions {
        zookeeper: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    assert!(writable(&c, primary).await, "the primary takes writes");
    c.zookeeper.as_mut().expect("zookeeper").stop();
    outage_demotes_and_nobody_promotes(&c, primary).await;
    c.zookeeper.as_mut().expect("zookeeper").restart();
    let primary = c.wait_healthy(BOOT).await;

    let r = reqwest::Client::new()
        .patch(c.nodes[primary].api("/config"))
        .body(r#"{"failsafe_mode": true}"#)
        .send()
        .await
        .expect("PATCH /config answered");
    assert!(r.status().is_success(), "PATCH /config: {}", r.status());
    failsafe_lists_both(&c, primary).await;
    assert!(writable(&c, primary).await, "the primary takes writes");
    let zk = c.zookeeper.as_ref().expect("zookeeper");
    zk.pause();
    outage_with_failsafe_keeps_writing(&c, primary).await;
    zk.resume();
    assert_eq!(c.wait_healthy(BOOT).await, primary, "the primary changed");
}

/// `pgpilotctl pause --wait` on ZooKeeper (the config key written by
/// compare-and-swap, seen in every member znode): with the primary's daemon
/// killed (its PostgreSQL left running) nobody takes over for 2×ttl, though
/// its session and leader znode lapse; after `resume` the cluster has one
/// primary again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_on_zookeeper_keeps_the_primary_without_its_daemon() {
    let opts = ClusterOptions {
        zookeeper: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    let other = 1 - primary;
    let out = support::ctl::ok(&c, &["pause", "--wait"]);
    assert!(out.contains("paused"), "{out}");
    let cl = read(&c).await.expect("read");
    assert_eq!(
        cl.config.as_ref().map(|v| v.value["pause"].clone()),
        Some(serde_json::Value::Bool(true)),
        "the config znode says paused"
    );
    c.kill_daemon(primary).await;
    let ttl = Duration::from_secs(c.timing.ttl);
    let killed_at = Instant::now();
    while killed_at.elapsed() < 2 * ttl {
        assert!(
            !writable(&c, other).await,
            "the replica took over {:?} into the pause",
            killed_at.elapsed()
        );
        // Poll interval; the pause's length (2×ttl) is the scenario.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let cl = read(&c).await.expect("read");
    assert!(cl.leader.is_none(), "the dead daemon's leader znode lapsed");
    assert!(
        writable(&c, primary).await,
        "the primary's PostgreSQL still runs"
    );
    support::ctl::ok(&c, &["resume"]);
    c.start(primary);
    c.wait_healthy(BOOT).await;
}

/// On a 3-server ensemble, one member at a time killed (kill -9) for 2×ttl
/// and restarted: no failover and no demotion; the primary keeps taking
/// writes and keeps its leader znode on the same session throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ensemble_member_killed_no_failover_no_demotion() {
    let opts = ClusterOptions {
        zookeeper: true,
        zookeeper_ensemble: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    let other = 1 - primary;
    eventually(Duration::from_secs(30), "replica streams", || async {
        c.is_streaming_replica(other).await.then_some(())
    })
    .await;
    let held = read(&c).await.and_then(|cl| cl.leader).expect("leader key");
    let ttl = Duration::from_secs(c.timing.ttl);
    for m in 0..3 {
        c.zookeeper_ensemble.as_mut().expect("ensemble").members[m].kill();
        let down_at = Instant::now();
        while down_at.elapsed() < 2 * ttl {
            assert!(
                writable(&c, primary).await,
                "member {m} down {:?}: the primary refused a write",
                down_at.elapsed()
            );
            assert!(
                !writable(&c, other).await,
                "member {m} down: the replica took a write"
            );
            // Poll interval; the member's absence (2×ttl) is the scenario.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let now = read(&c).await.and_then(|cl| cl.leader);
        assert_eq!(
            now.as_ref(),
            Some(&held),
            "member {m} down: the leader key changed"
        );
        c.zookeeper_ensemble.as_mut().expect("ensemble").members[m].restart();
    }
    assert_eq!(c.primary().await, Some(primary));
}
