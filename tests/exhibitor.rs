//! ZooKeeper found through Exhibitor (docs/dcs.md, "Exhibitor"): two
//! daemons with an `exhibitor` section pointing at a stand-in Exhibitor
//! (tests/support/exhibitor.rs) that lists servers 1 and 2 of a 3-server
//! ensemble bootstrap a primary and a streaming replica. The list then
//! changes to servers 2 and 3: both daemons log the change and move their
//! session onto it; server 1 is killed: no failover, no demotion, the
//! leader znode unchanged. Then to server 3 alone: every daemon connection
//! moves there, the sessions (and the leader znode) kept.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgpilot::events::{EXHIBITOR_SERVERS_CHANGED, EXHIBITOR_SESSION_MOVED};
use support::cluster::{ClusterOptions, TestCluster, Timing};
use support::eventually;
use support::families::writable;
use support::zookeeper::read_cluster as read;

const BOOT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhibitor_list_changes_the_leader_stays() {
    let opts = ClusterOptions {
        zookeeper: true,
        zookeeper_ensemble: true,
        exhibitor: true,
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
    assert_eq!(held.name, c.nodes[primary].name);
    let ex = c.exhibitor.as_ref().expect("exhibitor stand-in");
    assert!(ex.requests() > 0, "the daemons never asked Exhibitor");
    for n in &c.nodes {
        assert_eq!(
            n.event_count(EXHIBITOR_SERVERS_CHANGED),
            1,
            "{}: the first list is logged once",
            n.name
        );
    }

    // Servers 2 and 3 from now on; each daemon polls every second.
    let ensemble = c.zookeeper_ensemble.as_ref().expect("ensemble");
    let (zk_port, two_three): (u16, Vec<String>) = (
        ensemble.members[0].port(),
        ensemble.members[1..]
            .iter()
            .map(|m| m.host_name())
            .collect(),
    );
    ex.set(&two_three, zk_port);
    let third = ensemble.members[2].server();
    eventually(
        Duration::from_secs(15),
        "both daemons log the new list and move their session onto it",
        || async {
            c.nodes
                .iter()
                .all(|n| {
                    n.event_count(EXHIBITOR_SERVERS_CHANGED) == 2
                        && n.log().contains(&third)
                        && n.event_count(EXHIBITOR_SESSION_MOVED) == 1
                })
                .then_some(())
        },
    )
    .await;

    // Server 1, on the first list only, killed for 2×ttl: the sessions
    // move to server 2 (or are made on the new list), the primary stays.
    c.zookeeper_ensemble.as_mut().expect("ensemble").members[0].kill();
    let ttl = Duration::from_secs(c.timing.ttl);
    let down_at = Instant::now();
    while down_at.elapsed() < 2 * ttl {
        assert!(
            writable(&c, primary).await,
            "server 1 down {:?}: the primary refused a write",
            down_at.elapsed()
        );
        assert!(
            !writable(&c, other).await,
            "server 1 down: the replica took a write"
        );
        // Poll interval; the server's absence (2×ttl) is the scenario.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let now = read(&c).await.and_then(|cl| cl.leader);
    assert_eq!(
        now.as_ref(),
        Some(&held),
        "server 1 down: the leader key changed"
    );
    assert_eq!(c.primary().await, Some(primary));

    // Server 3 alone: the sessions (and the watches) move there; servers
    // 2 and 3 stay the quorum, so only where the clients are tells.
    let ex = c.exhibitor.as_ref().expect("exhibitor stand-in");
    ex.set(&two_three[1..], zk_port);
    eventually(
        Duration::from_secs(15),
        "both sessions moved to server 3",
        || async {
            c.nodes
                .iter()
                .all(|n| n.event_count(EXHIBITOR_SESSION_MOVED) == 2)
                .then_some(())
        },
    )
    .await;
    let ensemble = c.zookeeper_ensemble.as_ref().expect("ensemble");
    eventually(
        Duration::from_secs(15),
        "no daemon connection left on server 2, four on server 3",
        || async {
            let on_2 = ensemble.members[1].connections()?;
            let on_3 = ensemble.members[2].connections()?;
            // Each count includes the `srvr` query's own connection.
            (on_2 <= 1 && on_3 > 4).then_some(())
        },
    )
    .await;
    assert!(writable(&c, primary).await, "the primary refused a write");
    let now = read(&c).await.and_then(|cl| cl.leader);
    assert_eq!(
        now.as_ref(),
        Some(&held),
        "the session moved: the leader key changed"
    );
    assert_eq!(c.primary().await, Some(primary));
    eventually(Duration::from_secs(30), "replica still streams", || async {
        c.is_streaming_replica(other).await.then_some(())
    })
    .await;

    // A stopped daemon closes its (detached, moved) session before it
    // exits: its member znode is gone once the process is, not a session
    // timeout (6 s) later.
    c.signal(other, Signal::SIGTERM);
    c.wait_exit(other, Duration::from_secs(60)).await;
    let name = c.nodes[other].name.clone();
    let cl = read(&c).await.expect("the ensemble reads");
    assert!(
        !cl.members.iter().any(|m| m.name == name),
        "the stopped daemon's member znode outlived it: its session was not closed"
    );
}
