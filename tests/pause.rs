//! Pause (maintenance) mode against real etcd and PostgreSQL: with
//! `pause: true` a crashed primary is neither restarted nor replaced, the
//! daemon's SIGTERM leaves PostgreSQL running, and resuming brings the
//! cluster back to one primary.

mod support;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::cluster::{TestCluster, Timing};
use support::eventually;

const BOOT: Duration = Duration::from_secs(90);
const APPLY: Duration = Duration::from_secs(20);

async fn patch_config(c: &TestCluster, i: usize, body: &str) {
    let r = reqwest::Client::new()
        .patch(c.nodes[i].api("/config"))
        .body(body.to_owned())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("PATCH /config");
    let code = r.status().as_u16();
    assert_eq!(code, 200, "{}", r.text().await.unwrap_or_default());
}

/// `PATCH /config {"pause": true}` through node `i`, then wait until
/// every node's `/patroni` shows it.
async fn pause(c: &TestCluster, i: usize) {
    patch_config(c, i, r#"{"pause": true}"#).await;
    eventually(APPLY, "/patroni shows pause: true on all nodes", || {
        all_paused(c, true)
    })
    .await;
}

async fn all_paused(c: &TestCluster, want: bool) -> Option<()> {
    for i in 0..c.nodes.len() {
        let s = c.status(i).await?;
        let paused = s.get("pause").and_then(|v| v.as_bool()).unwrap_or(false);
        if paused != want {
            return None;
        }
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_cluster_neither_restarts_nor_fails_over_then_resumes() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;

    pause(&c, primary).await;

    // Crash the primary's PostgreSQL (the daemon keeps running).
    let pm = c.nodes[primary].postmaster_pid().expect("postmaster");
    kill(Pid::from_raw(pm), Signal::SIGKILL).unwrap();
    // 2×ttl worth of timed HA cycles on every node, plus one for a cycle
    // the crash may wake early.
    let all: Vec<usize> = (0..c.nodes.len()).collect();
    let k = usize::try_from(2 * c.timing.ttl / c.timing.loop_wait + 1).expect("cycles");
    c.during_cycles(
        &all,
        k,
        Duration::from_secs(6 * c.timing.ttl),
        "paused after the crash",
        || async {
            for i in 0..c.nodes.len() {
                if i == primary {
                    continue;
                }
                assert_ne!(
                    c.http_code(i, "/primary").await,
                    200,
                    "node {i} became primary while paused"
                );
            }
            assert!(
                // A restart writes a new postmaster.pid.
                c.nodes[primary].postmaster_pid().is_none_or(|p| p == pm),
                "PostgreSQL of the paused primary was restarted"
            );
        },
    )
    .await;
    assert!(c.nodes[primary].log().contains("paused"));
    // Patroni's name for it while paused: `stopped`, not `crashed`, in
    // `/patroni` and in the member key (`/cluster` of another node).
    let me = c.get_json(primary, "/patroni").await.expect("/patroni");
    assert_eq!(me["state"], "stopped", "{me}");
    let other = (primary + 1) % 3;
    let name = c.nodes[primary].name.clone();
    eventually(APPLY, "the member key says stopped", || async {
        let cl = c.get_json(other, "/cluster").await?;
        let m = cl["members"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == name.as_str())?
            .clone();
        (m["state"] == "stopped").then_some(())
    })
    .await;

    // Resume: one primary again (restart of the old one or a failover).
    patch_config(&c, (primary + 1) % 3, r#"{"pause": null}"#).await;
    eventually(APPLY, "/patroni shows no pause", || all_paused(&c, false)).await;
    let now = c.wait_healthy(BOOT).await;
    eprintln!("after resume the primary is node {now} (was {primary})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_paused_leaves_postgres_running() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    pause(&c, primary).await;

    let pm = c.nodes[primary].postmaster_pid().expect("postmaster");
    c.signal(primary, Signal::SIGTERM);
    let code = c.wait_exit(primary, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "daemon exit code after SIGTERM");
    // The paused fence (it does nothing while paused) exits with it.
    assert_eq!(
        c.nodes[primary].fence_pids(),
        Vec::<i32>::new(),
        "the fence still runs after a clean stop"
    );
    // Still running, still accepting connections, and no failover, two
    // of the replica's cycles later.
    let replica = 1 - primary;
    c.during_cycles(
        &[replica],
        2,
        Duration::from_secs(20),
        "no failover",
        || async {
            assert_ne!(c.http_code(replica, "/primary").await, 200);
        },
    )
    .await;
    assert_eq!(c.nodes[primary].postmaster_pid(), Some(pm));
    assert!(kill(Pid::from_raw(pm), None).is_ok(), "postmaster is gone");
    let client = c.sql(primary).await.expect("PostgreSQL answers");
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "no longer a primary");
    assert_ne!(c.http_code(replica, "/primary").await, 200);

    // A restarted daemon adopts the running PostgreSQL and the lock.
    c.start(primary);
    eventually(
        APPLY,
        "the restarted daemon reports the primary",
        || async { (c.http_code(primary, "/primary").await == 200).then_some(()) },
    )
    .await;
    assert_eq!(c.nodes[primary].postmaster_pid(), Some(pm), "PG restarted");
}

/// kill -9 of a paused primary's daemon: its lease runs out, but the fence
/// (told `paused`) leaves PostgreSQL running, and no replica promotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_does_nothing_while_paused() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    pause(&c, primary).await;
    let hb_file = c.nodes[primary].fence_dir().join("heartbeat.json");
    eventually(APPLY, "the fence heartbeat says paused", || async {
        let text = std::fs::read_to_string(&hb_file).ok()?;
        let hb: serde_json::Value = serde_json::from_str(&text).ok()?;
        (hb["paused"] == true && hb["armed"] == true).then_some(())
    })
    .await;

    let pm = c.nodes[primary].postmaster_pid().expect("postmaster");
    c.kill_daemon(primary).await;
    // The dead daemon's lease runs out: no leader left in the replica's
    // view (a positive signal, not a guess at how long that takes)...
    let replica = 1 - primary;
    eventually(
        Duration::from_secs(4 * c.timing.ttl),
        "the dead daemon's lease to run out",
        || async {
            assert_ne!(c.http_code(replica, "/primary").await, 200);
            let cl = c.get_json(replica, "/cluster").await?;
            let led = cl["members"]
                .as_array()?
                .iter()
                .any(|m| m["role"] == "leader");
            (!led).then_some(())
        },
    )
    .await;
    // ...then ttl's worth of the replica's HA cycles without a leader.
    let k = usize::try_from(c.timing.ttl / c.timing.loop_wait).expect("cycles");
    c.during_cycles(
        &[replica],
        k,
        Duration::from_secs(6 * c.timing.ttl),
        "no promotion",
        || async {
            assert_ne!(c.http_code(replica, "/primary").await, 200);
        },
    )
    .await;
    assert!(
        kill(Pid::from_raw(pm), None).is_ok(),
        "the fence stopped PG"
    );
    assert!(c.sql(primary).await.is_ok(), "PostgreSQL does not answer");
    let log = c.nodes[primary].fence_log();
    assert!(!log.contains("stopping PostgreSQL"), "fence log:\n{log}");
}

/// While paused, a switchover to a named candidate still works (docs/ha.md
/// §11): the candidate promotes and the old primary rejoins as its replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_to_a_named_candidate_works_while_paused() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let p0 = c.wait_healthy(BOOT).await;
    pause(&c, p0).await;
    let cand = (p0 + 1) % 3;
    let body = serde_json::json!({"leader": c.nodes[p0].name, "candidate": c.nodes[cand].name});
    let r = reqwest::Client::new()
        .post(c.nodes[p0].api("/switchover"))
        .json(&body)
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .expect("POST /switchover");
    let code = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(code, 200, "{text}");
    let p1 = c.wait_healthy(BOOT).await;
    assert_eq!(p1, cand);
    all_paused(&c, true).await.expect("still paused");
}
