//! The core capability against real etcd and PostgreSQL 15: three daemons
//! bootstrap one primary and two streaming replicas, keep exactly one
//! primary, and fail over when the primary dies; on a 3-member etcd
//! cluster, the member in use killed causes no failover and no demotion.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pgpilot::events;
use support::cluster::{ClusterOptions, TestCluster, Timing, has_event};
use support::eventually;
use support::writer::{spawn_writer, values_on, wait_for_writes};

const BOOT: Duration = Duration::from_secs(90);

/// Insert a row on node `i`; Ok only when the commit was acknowledged.
async fn write_row(c: &TestCluster, i: usize, v: i64) -> Result<(), String> {
    let client = c.sql(i).await.map_err(|e| e.to_string())?;
    client
        .execute("INSERT INTO t(v) VALUES ($1)", &[&v])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn has_row(c: &TestCluster, i: usize, v: i64) -> bool {
    let Ok(client) = c.sql(i).await else {
        return false;
    };
    matches!(
        client
            .query_opt("SELECT 1 FROM t WHERE v = $1", &[&v])
            .await,
        Ok(Some(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_replicate_fail_over_and_rejoin() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;

    // Exactly one node bootstrapped: the others were cloned from it.
    let sysids: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..3 {
            let s = c.status(i).await.expect("status");
            v.push(
                s["database_system_identifier"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        v
    };
    assert!(
        !sysids[0].is_empty() && sysids.iter().all(|s| *s == sysids[0]),
        "{sysids:?}"
    );

    // pgpilotctl list reads the same picture from etcd. The member keys
    // follow the REST answers by up to one HA cycle (a member key is
    // rewritten on the cycle after its state changes, as Patroni's
    // touch_member does), so wait for it rather than read it once.
    let ctl_list = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgpilotctl"))
            .arg("-c")
            .arg(&c.nodes[0].config_path)
            .args(["list", "--format", "json"])
            .output()
            .expect("run pgpilotctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("json list")
    };
    let expected = |r: &serde_json::Value| {
        let member = r["Member"].as_str().unwrap_or_default();
        if member == c.nodes[primary].name {
            (r["Role"] == "Leader", r["State"] == "running")
        } else {
            (r["Role"] == "Replica", r["State"] == "streaming")
        }
    };
    eventually(
        Duration::from_secs(20),
        "pgpilotctl list settles",
        || async {
            let rows = ctl_list();
            (rows.len() == 3 && rows.iter().all(|r| expected(r) == (true, true))).then_some(())
        },
    )
    .await;
    // Once settled the roles never disagree with the REST picture.
    let rows = ctl_list();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(expected(r), (true, true), "{r}");
    }

    // A row written on the primary reaches both replicas.
    c.create_table_t(primary).await;
    write_row(&c, primary, 1).await.expect("insert");
    for i in (0..3).filter(|&i| i != primary) {
        eventually(Duration::from_secs(20), "row replicated", || async {
            has_row(&c, i, 1).await.then_some(())
        })
        .await;
    }
    // Replicas refuse writes.
    for i in (0..3).filter(|&i| i != primary) {
        assert!(
            write_row(&c, i, 99).await.is_err(),
            "replica {i} accepted a write"
        );
        assert_eq!(c.http_code(i, "/primary").await, 503);
        assert_eq!(c.http_code(i, "/replica").await, 200);
    }

    // kill -9 of the primary's daemon and postmaster together.
    let killed_at = Instant::now();
    c.kill_node(primary).await;
    let mut row = 1000;
    let new_primary = loop {
        let mut accepted = None;
        for i in (0..3).filter(|&i| i != primary) {
            row += 1;
            if write_row(&c, i, row).await.is_ok() {
                accepted = Some(i);
                break;
            }
        }
        if let Some(i) = accepted {
            break i;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "no new primary within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let failover = killed_at.elapsed();
    let t = c.timing;
    let bound = Duration::from_secs(t.ttl + 2 * t.loop_wait);
    eprintln!("failover took {failover:?} (bound {bound:?})");
    assert!(
        failover <= bound,
        "failover took {failover:?}, more than ttl + 2*loop_wait = {bound:?}"
    );

    // Exactly one primary among the survivors; the other follows it.
    let other = (0..3)
        .find(|&i| i != primary && i != new_primary)
        .expect("third node");
    eventually(
        Duration::from_secs(30),
        "survivor streams from the new primary",
        || async { c.is_streaming_replica(other).await.then_some(()) },
    )
    .await;
    assert!(
        write_row(&c, other, 5).await.is_err(),
        "two writable primaries"
    );
    assert!(
        has_row(&c, new_primary, 1).await,
        "the acknowledged row survived the failover"
    );

    // The former primary comes back and rejoins as a replica, by pg_rewind.
    c.start(primary);
    let p = c.wait_healthy(BOOT).await;
    assert_eq!(p, new_primary, "the returning node must not take over");
    let log = c.nodes[primary].log();
    assert!(
        has_event(&log, events::REWIND_DONE),
        "no rewind in the log:\n{log}"
    );
    assert!(
        !has_event(&log, events::REPLICA_METHOD_STARTED),
        "rebuilt by basebackup"
    );
    // The daemon's stderr is a file here, not a terminal: plain text.
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");
    write_row(&c, new_primary, 7)
        .await
        .expect("write after rejoin");
    eventually(
        Duration::from_secs(20),
        "rejoined node has the new rows",
        || async { (has_row(&c, primary, 7).await && has_row(&c, primary, 1).await).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_primary_hands_over_at_once() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    let t0 = Instant::now();
    c.signal(primary, Signal::SIGTERM);
    let code = c.wait_exit(primary, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "daemon exit code after SIGTERM");
    assert!(
        c.nodes[primary].postmaster_pid().is_none(),
        "PostgreSQL still running after SIGTERM"
    );
    // A clean stop leaves nothing running: the daemon waits for its
    // (detached) fence to exit before it exits itself.
    assert_eq!(
        c.nodes[primary].fence_pids(),
        Vec::<i32>::new(),
        "the fence still runs after a clean stop"
    );
    let new = eventually(Duration::from_secs(30), "a new primary", || async {
        c.primary().await
    })
    .await;
    let took = t0.elapsed();
    let bound = Duration::from_secs(c.timing.loop_wait + 5);
    eprintln!("handover after SIGTERM took {took:?} (bound {bound:?})");
    assert_ne!(new, primary);
    assert!(took <= bound, "handover took {took:?}");
    assert!(
        c.nodes[primary].logged(events::LOCK_RELEASED),
        "leader key not released on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_daemon_restart_adopts_running_postgres() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    let replica = 1 - primary;
    let pm_before = c.nodes[replica]
        .postmaster_pid()
        .expect("replica postmaster");
    c.signal(replica, Signal::SIGKILL);
    c.wait_exit(replica, Duration::from_secs(10)).await;
    c.start(replica);
    eventually(
        Duration::from_secs(30),
        "restarted daemon reports a streaming replica",
        || async { c.is_streaming_replica(replica).await.then_some(()) },
    )
    .await;
    assert_eq!(
        c.nodes[replica].postmaster_pid(),
        Some(pm_before),
        "PostgreSQL was restarted"
    );
    assert!(c.nodes[replica].logged(events::POSTGRES_ADOPTED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_at_start_touches_nothing_then_recovers() {
    let mut c = TestCluster::new(1, Timing::default());
    c.etcd.stop();
    c.start(0);
    eventually(
        Duration::from_secs(30),
        "the daemon reports the DCS as unreachable",
        || async {
            let log = c.nodes[0].log();
            (log.matches("DCS is not accessible").count() >= 2).then_some(())
        },
    )
    .await;
    assert!(
        !c.nodes[0].data_dir().exists(),
        "data directory touched without a DCS"
    );
    assert!(
        c.nodes[0].exited().is_none(),
        "daemon gave up instead of retrying"
    );
    c.etcd.restart();
    c.wait_healthy(BOOT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_data_directory_is_never_joined() {
    let mut c = TestCluster::new(1, Timing::default());
    c.start(0);
    c.wait_healthy(BOOT).await;
    // A second node whose data directory holds another cluster.
    let i = c.add_node("stranger", &Default::default());
    let data = c.nodes[i].data_dir();
    c.initdb_foreign(i);
    let before = std::fs::read(data.join("global/pg_control")).expect("pg_control");
    c.start(i);
    let code = c.wait_exit(i, Duration::from_secs(60)).await;
    assert_ne!(code, 0);
    assert!(
        c.nodes[i].log().contains("system identifier"),
        "{}",
        c.nodes[i].log()
    );
    assert_eq!(
        std::fs::read(data.join("global/pg_control")).expect("pg_control"),
        before
    );
}

/// A primary cut off from the DCS keeps serving until its fencing point
/// (send time of its last renewal + ttl - 1 s), not a cycle earlier, and
/// stops taking writes before its lease can expire (so no other node could
/// have been promoted yet); the cluster converges to one primary when the
/// DCS returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_cut_off_from_dcs_demotes_before_lease_expires() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let frozen_at = Instant::now();
    c.etcd.pause();
    let mut v = 0;
    let (refused_after, refused_ms) = loop {
        v += 1;
        if write_row(&c, primary, v).await.is_err() {
            break (frozen_at.elapsed(), pgpilot::fence::boottime_ms());
        }
        assert!(
            frozen_at.elapsed() < Duration::from_secs(30),
            "primary kept taking writes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The fence's last order: fencing point = last renewal's send time +
    // ttl - margin (1 s), in CLOCK_BOOTTIME ms.
    let hb =
        pgpilot::fence::read_heartbeat(&c.nodes[primary].fence_dir()).expect("fence heartbeat");
    let lease_end_ms = hb.deadline_ms + 1000;
    let t = c.timing;
    eprintln!(
        "writes refused {refused_after:?} after the DCS froze, {} ms before the lease could end",
        lease_end_ms as i64 - refused_ms as i64
    );
    assert!(
        refused_ms < lease_end_ms,
        "writes refused at {refused_ms} ms, the lease may have ended at {lease_end_ms} ms"
    );
    // The last renewal (HA cycle or keep-alive) came at most ~1.5 s before
    // the freeze, so the fencing point is at least ttl - 1.5 s - 1 s after
    // it; the old rule stepped down a whole cycle (3 s) before that.
    let served_at_least = Duration::from_millis(t.ttl * 1000 - 2500);
    assert!(
        refused_after >= served_at_least,
        "stepped down after {refused_after:?}, before the fencing point (>= {served_at_least:?})"
    );
    c.etcd.resume();
    c.wait_healthy(BOOT).await;
}

/// `pg_is_in_recovery()` on node `i`, `None` if it does not answer.
async fn in_recovery(c: &TestCluster, i: usize) -> Option<bool> {
    let client = c.sql(i).await.ok()?;
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .ok()?;
    row.try_get(0).ok()
}

/// docs/ha.md §9.6: the primary alone cut off from etcd stops taking writes
/// (the fence, by its fencing point) and then runs read-only while the cut
/// lasts: PostgreSQL up and in recovery, serving reads, refusing writes. The
/// replica takes over; once the cut heals the old primary follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_cut_off_from_dcs_runs_read_only_then_follows_the_leader() {
    let opts = ClusterOptions {
        dcs_proxies: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    let old = c.wait_healthy(BOOT).await;
    let other = 1 - old;
    c.create_table_t(old).await;
    write_row(&c, old, 1).await.expect("write before the cut");
    eventually(Duration::from_secs(30), "row 1 on the replica", || async {
        has_row(&c, other, 1).await.then_some(())
    })
    .await;

    c.cut_from_dcs(old);
    let ttl = Duration::from_secs(c.timing.ttl);
    eventually(4 * ttl, "the cut-off primary runs read-only", || async {
        (in_recovery(&c, old).await == Some(true)).then_some(())
    })
    .await;
    assert!(has_row(&c, old, 1).await, "no reads on the read-only node");
    let client = c.sql(old).await.expect("connect to the read-only node");
    let err = client
        .execute("INSERT INTO t(v) VALUES (2)", &[])
        .await
        .expect_err("the read-only node took a write");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err:?}"
    );
    let mark = c.nodes[old].log().len();

    let p = eventually(BOOT, "the replica took over", || async {
        (c.primary().await == Some(other)).then_some(other)
    })
    .await;
    // `/primary` may answer a moment before the promotion finished.
    eventually(
        Duration::from_secs(30),
        "a write on the new primary",
        || async { write_row(&c, p, 3).await.ok() },
    )
    .await;
    // Still read-only while the cut lasts, never a primary again.
    assert_eq!(in_recovery(&c, old).await, Some(true));
    assert_ne!(c.http_code(old, "/primary").await, 200);

    c.heal_dcs(old);
    assert_eq!(c.wait_healthy(BOOT).await, other);
    eventually(
        Duration::from_secs(30),
        "row 3 on the old primary",
        || async { has_row(&c, old, 3).await.then_some(()) },
    )
    .await;
    let log = c.nodes[old].log();
    assert!(
        log.contains("starting it read-only") || log.contains("demoting to read-only"),
        "{log}"
    );
    assert!(
        log[mark..].contains("rejoin as a former primary"),
        "{}",
        &log[mark..]
    );
}

/// A crash of PostgreSQL alone on the leader is repaired in place: the
/// daemon restarts it as the primary and keeps the leader key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_on_the_leader_is_repaired_in_place() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    let pm = c.nodes[primary].postmaster_pid().expect("postmaster pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), Signal::SIGKILL)
        .expect("kill postmaster");
    eventually(
        Duration::from_secs(30),
        "PostgreSQL restarted on the same leader",
        || async {
            let new_pm = c.nodes[primary].postmaster_pid()?;
            (new_pm != pm && c.primary().await == Some(primary)).then_some(())
        },
    )
    .await;
    assert!(
        c.nodes[primary].log().contains("restarting it as primary"),
        "{}",
        c.nodes[primary].log()
    );
    c.wait_healthy(BOOT).await;
}

/// docs/ha.md §8.1: with `primary_start_timeout: 0` a crash of PostgreSQL
/// on the leader is not repaired in place: the leader releases the key, the
/// healthy replica takes over, and the old primary rejoins it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crash_on_the_leader_fails_over_with_zero_start_timeout() {
    let mut c = TestCluster::with_dcs(2, Timing::default(), &[("primary_start_timeout", "0")]);
    c.start_all();
    let old = c.wait_healthy(BOOT).await;
    let pm = c.nodes[old].postmaster_pid().expect("postmaster pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pm), Signal::SIGKILL)
        .expect("kill postmaster");
    let other = 1 - old;
    eventually(BOOT, "the replica took over", || async {
        (c.primary().await == Some(other)).then_some(())
    })
    .await;
    assert_eq!(c.wait_healthy(BOOT).await, other);
    let log = c.nodes[old].log();
    assert!(log.contains("primary_start_timeout is 0"), "{log}");
    assert!(!log.contains("restarting it as primary"), "{log}");
}

/// `database_system_identifier` and `postmaster_start_time` of every node.
async fn identities(c: &TestCluster) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..c.nodes.len() {
        let s = c.status(i).await.unwrap_or_default();
        out.push((
            s["database_system_identifier"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            s["postmaster_start_time"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    out
}

/// Without failsafe mode, etcd gone for 3×ttl: the primary stops taking
/// writes within ttl, no replica is ever promoted, and when etcd returns
/// the cluster has one primary again, all on the same system identifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcs_outage_without_failsafe_demotes_and_nobody_promotes() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let ttl = Duration::from_secs(c.timing.ttl);

    let stopped_at = Instant::now();
    c.etcd.stop();
    let mut refused_after = None;
    let mut v = 0;
    while stopped_at.elapsed() < 3 * ttl {
        if refused_after.is_none() {
            v += 1;
            if write_row(&c, primary, v).await.is_err() {
                refused_after = Some(stopped_at.elapsed());
            }
        }
        for i in 0..3 {
            // The old primary may answer /primary while its lease holds;
            // after ttl nobody may.
            if i == primary && stopped_at.elapsed() < ttl {
                continue;
            }
            let code = c.http_code(i, "/primary").await;
            assert!(
                code == 503 || code == 0,
                "{} answers /primary {code} {:?} into the outage",
                c.nodes[i].name,
                stopped_at.elapsed()
            );
        }
        for i in (0..3).filter(|&i| i != primary) {
            v += 1;
            assert!(
                write_row(&c, i, 1_000_000 + v).await.is_err(),
                "replica {} took a write during the outage",
                c.nodes[i].name
            );
        }
        // Poll interval; the outage's length (3×ttl) is the scenario.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused_after = refused_after.expect("the primary kept taking writes for 3×ttl");
    eprintln!("writes refused {refused_after:?} after etcd stopped (ttl {ttl:?})");
    assert!(
        refused_after < ttl,
        "read-only only after {refused_after:?}"
    );

    c.etcd.restart();
    c.wait_healthy(BOOT).await;
    let ids = identities(&c).await;
    assert!(
        !ids[0].0.is_empty() && ids.iter().all(|(s, _)| *s == ids[0].0),
        "{ids:?}"
    );
}

/// With failsafe mode, etcd gone for 3×ttl: every member confirms the
/// primary over REST, so it keeps taking writes the whole time; afterwards
/// it is still the one primary and no PostgreSQL was restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcs_outage_with_failsafe_keeps_the_primary_writable() {
    let mut c = TestCluster::with_dcs(3, Timing::default(), &[("failsafe_mode", "true")]);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    // The leader has published all three members in the failsafe key.
    eventually(
        Duration::from_secs(30),
        "failsafe key lists every member",
        || async {
            let r = reqwest::get(c.nodes[primary].api("/failsafe")).await.ok()?;
            let m: serde_json::Value = r.json().await.ok()?;
            (m.as_object()?.len() == 3).then_some(())
        },
    )
    .await;
    c.create_table_t(primary).await;
    let client = c.sql(primary).await.expect("connect");
    // Replicas have seen the failsafe key too (they report it on GET).
    for i in 0..3 {
        eventually(Duration::from_secs(30), "failsafe key known", || async {
            (c.http_code(i, "/failsafe").await == 200).then_some(())
        })
        .await;
    }
    let before = identities(&c).await;
    let ttl = Duration::from_secs(c.timing.ttl);

    let stopped_at = Instant::now();
    c.etcd.stop();
    let mut v: i64 = 0;
    let mut active_seen = false;
    while stopped_at.elapsed() < 3 * ttl {
        v += 1;
        if let Err(e) = client.execute("INSERT INTO t(v) VALUES ($1)", &[&v]).await {
            panic!(
                "insert refused {:?} into the outage: {e}",
                stopped_at.elapsed()
            );
        }
        if !active_seen && let Some(s) = c.status(primary).await {
            active_seen = s["failsafe_mode_is_active"] == true;
        }
        for i in (0..3).filter(|&i| i != primary) {
            let code = c.http_code(i, "/primary").await;
            assert!(
                code == 503 || code == 0,
                "replica {} answers /primary {code}",
                c.nodes[i].name
            );
        }
        // Poll interval; the outage's length (3×ttl) is the scenario.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{v} inserts acknowledged during {:?} without etcd", 3 * ttl);
    assert!(active_seen, "/patroni never showed failsafe_mode_is_active");
    assert!(
        c.nodes[primary].log().contains("failsafe"),
        "no failsafe decision logged"
    );

    c.etcd.restart();
    let p = c.wait_healthy(BOOT).await;
    assert_eq!(p, primary, "the primary changed");
    client
        .execute("INSERT INTO t(v) VALUES ($1)", &[&(v + 1)])
        .await
        .expect("write after etcd returned");
    let after = identities(&c).await;
    assert_eq!(before, after, "a PostgreSQL was restarted");
}
/// docs/ha.md §9.6, §10.1: with failsafe mode and etcd gone, the primary
/// runs on its members' confirmations; when a replica dies it loses one and
/// steps down to read-only (in recovery, reads served, writes refused) while
/// etcd stays away. When etcd returns the cluster has one primary again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcs_outage_with_failsafe_and_a_lost_replica_demotes_to_read_only() {
    let mut c = TestCluster::with_dcs(3, Timing::default(), &[("failsafe_mode", "true")]);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    eventually(
        Duration::from_secs(30),
        "failsafe key lists every member",
        || async {
            let r = reqwest::get(c.nodes[primary].api("/failsafe")).await.ok()?;
            let m: serde_json::Value = r.json().await.ok()?;
            (m.as_object()?.len() == 3).then_some(())
        },
    )
    .await;
    c.create_table_t(primary).await;
    for i in 0..3 {
        eventually(Duration::from_secs(30), "failsafe key known", || async {
            (c.http_code(i, "/failsafe").await == 200).then_some(())
        })
        .await;
    }
    let ttl = Duration::from_secs(c.timing.ttl);
    c.etcd.stop();
    // Past the lease: only the confirmations keep it writable.
    tokio::time::sleep(2 * ttl).await;
    write_row(&c, primary, 1)
        .await
        .expect("a write on failsafe confirmations");
    let lost = (primary + 1) % 3;
    c.kill_node(lost).await;
    eventually(
        3 * ttl,
        "the primary that lost a confirmation runs read-only",
        || async { (in_recovery(&c, primary).await == Some(true)).then_some(()) },
    )
    .await;
    assert!(
        has_row(&c, primary, 1).await,
        "no reads on the read-only node"
    );
    assert!(
        write_row(&c, primary, 2).await.is_err(),
        "the read-only node took a write"
    );
    for i in (0..3).filter(|&i| i != lost) {
        assert_ne!(c.http_code(i, "/primary").await, 200, "{}", c.nodes[i].name);
    }

    c.etcd.restart();
    let p = c.wait_healthy(BOOT).await;
    eventually(
        Duration::from_secs(30),
        "a write after etcd returned",
        || async { write_row(&c, p, 3).await.ok() },
    )
    .await;
}

/// Physical replication slots on node `i`, sorted (empty if unreachable).
async fn slot_names(c: &TestCluster, i: usize) -> Option<Vec<String>> {
    let client = c.sql(i).await.ok()?;
    let rows = client
        .query(
            "SELECT slot_name::text FROM pg_replication_slots
              WHERE slot_type = 'physical' ORDER BY 1",
            &[],
        )
        .await
        .ok()?;
    Some(rows.iter().map(|r| r.get(0)).collect())
}
/// Names of the nodes `idx`, sorted (they are valid slot names already).
fn names(c: &TestCluster, idx: &[usize]) -> Vec<String> {
    let mut v: Vec<String> = idx.iter().map(|&i| c.nodes[i].name.clone()).collect();
    v.sort();
    v
}
/// The `status` key as JSON.
async fn status_key(c: &TestCluster) -> Option<serde_json::Value> {
    let mut client = etcd_client::Client::connect([c.etcd.endpoint()], None)
        .await
        .ok()?;
    let resp = client
        .get(format!("/it/{}/status", c.scope), None)
        .await
        .ok()?;
    let kv = resp.kvs().first()?;
    serde_json::from_slice(kv.value()).ok()
}
/// `/cluster` on node `i` lists these members.
async fn cluster_members(c: &TestCluster, i: usize) -> Option<Vec<String>> {
    let resp = reqwest::get(c.nodes[i].api("/cluster")).await.ok()?;
    let j: serde_json::Value = resp.json().await.ok()?;
    Some(
        j["members"]
            .as_array()?
            .iter()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect(),
    )
}
/// The leader keeps one slot per member in the DCS. A member that leaves
/// keeps its slot for `member_slots_ttl` (listed in `status.retain_slots`)
/// and loses it once retention ends (here: `member_slots_ttl` set to 0); a
/// returning one gets it back, and a new primary creates slots for the
/// others (never one for itself) right after its promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_keeps_a_slot_per_member_and_drops_slots_of_departed_members() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let reps: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    let both = names(&c, &reps);
    eventually(
        Duration::from_secs(20),
        "a slot per replica on the primary",
        || async { (slot_names(&c, p).await? == both).then_some(()) },
    )
    .await;
    // status.slots: every slot's position and the leader's own name;
    // status.retain_slots: every member's slot name.
    let mut everyone = names(&c, &[p, reps[0], reps[1]]);
    everyone.sort();
    eventually(
        Duration::from_secs(20),
        "status.slots and retain_slots published",
        || async {
            let s = status_key(&c).await?;
            let slots = s["slots"].as_object()?;
            let mut got: Vec<String> = slots.keys().cloned().collect();
            got.sort();
            let retain: Vec<String> = serde_json::from_value(s["retain_slots"].clone()).ok()?;
            (got == everyone && retain == everyone && slots.values().all(|v| v.as_u64().is_some()))
                .then_some(())
        },
    )
    .await;

    // A replica leaves: SIGTERM releases its session, its member key vanishes.
    let gone = reps[0];
    c.signal(gone, Signal::SIGTERM);
    assert_eq!(c.wait_exit(gone, Duration::from_secs(30)).await, 0);
    let gone_name = c.nodes[gone].name.clone();
    eventually(Duration::from_secs(10), "member key gone", || async {
        (!cluster_members(&c, p).await?.contains(&gone_name)).then_some(())
    })
    .await;
    // member_slots_ttl (default 30 min) keeps its slot, and the leader
    // still lists it, for several of the leader's cycles (where slots are
    // dropped and retain_slots published).
    c.during_cycles(
        &[p],
        3,
        Duration::from_secs(30),
        "the slot retained",
        || async {
            assert_eq!(
                slot_names(&c, p).await.as_ref(),
                Some(&both),
                "retained slot dropped"
            );
            let s = status_key(&c).await.expect("status key");
            let retain: Vec<String> =
                serde_json::from_value(s["retain_slots"].clone()).expect("retain_slots");
            assert_eq!(retain, everyone, "retain_slots while the member is away");
        },
    )
    .await;
    // Retention off: the slot goes at once.
    let r = reqwest::Client::new()
        .patch(c.nodes[p].api("/config"))
        .body(r#"{"member_slots_ttl": 0}"#)
        .send()
        .await
        .expect("PATCH /config");
    assert_eq!(r.status().as_u16(), 200);
    let t0 = Instant::now();
    let only_other = names(&c, &[reps[1]]);
    eventually(
        Duration::from_secs(15),
        "departed member's slot dropped",
        || async { (slot_names(&c, p).await? == only_other).then_some(()) },
    )
    .await;
    eprintln!(
        "slot dropped {:?} after member_slots_ttl became 0",
        t0.elapsed()
    );

    // It comes back: its slot is created again.
    c.start(gone);
    c.wait_healthy(BOOT).await;
    eventually(Duration::from_secs(20), "slot recreated", || async {
        (slot_names(&c, p).await? == both).then_some(())
    })
    .await;

    // kill -9 of the primary: the new one keeps a slot for the other
    // replica only.
    c.kill_node(p).await;
    let np = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await
    })
    .await;
    let other = reps.iter().copied().find(|&i| i != np).expect("other");
    let want = names(&c, &[other]);
    eventually(
        Duration::from_secs(15),
        "new primary has a slot for the remaining replica",
        || async { (slot_names(&c, np).await? == want).then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "remaining replica streams through its slot",
        || async { c.is_streaming_replica(other).await.then_some(()) },
    )
    .await;
    // "streaming" is read from the replica; its walsender marks the slot
    // active on the primary a moment later.
    eventually(
        Duration::from_secs(15),
        "the replica uses its slot",
        || async {
            let row = c
                .sql(np)
                .await
                .ok()?
                .query_one(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                    &[&want[0]],
                )
                .await
                .ok()?;
            row.get::<_, bool>(0).then_some(())
        },
    )
    .await;
}
/// `restart_lsn` of slot `name` on node `i`, as a byte position.
async fn slot_position(c: &TestCluster, i: usize, name: &str) -> Option<i64> {
    c.sql(i)
        .await
        .ok()?
        .query_opt(
            "SELECT (restart_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots
              WHERE slot_name = $1",
            &[&name],
        )
        .await
        .ok()??
        .get(0)
}
/// Patroni 4.1 rules on replicas: a replica that may become primary keeps
/// the permanent slots and a slot for every other member, and advances the
/// idle ones to the positions the primary publishes in `status.slots`; after
/// a kill -9 failover the new primary has the permanent slot, no further
/// back than it stood on the old primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_slot_on_replicas_advances_and_survives_failover() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let reps: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    let r = reqwest::Client::new()
        .patch(c.nodes[p].api("/config"))
        .body(r#"{"slots": {"keep": {"type": "physical"}}}"#)
        .send()
        .await
        .expect("PATCH /config");
    assert_eq!(r.status().as_u16(), 200);
    for &i in &[p, reps[0], reps[1]] {
        let mut want = names(&c, &(0..3).filter(|&j| j != i).collect::<Vec<_>>());
        want.push("keep".into());
        want.sort();
        eventually(
            Duration::from_secs(30),
            "the permanent slot and the other members' slots on every node",
            || async { (slot_names(&c, i).await? == want).then_some(()) },
        )
        .await;
    }
    // Its consumer moves it on the primary; the replicas follow.
    c.create_table_t(p).await;
    write_row(&c, p, 1).await.expect("insert");
    let primary = c.sql(p).await.expect("connect");
    primary
        .query_one(
            "SELECT pg_replication_slot_advance('keep', pg_current_wal_lsn())",
            &[],
        )
        .await
        .expect("advance on the primary");
    let target = slot_position(&c, p, "keep")
        .await
        .expect("keep on the primary");
    for &i in &reps {
        eventually(
            Duration::from_secs(30),
            "the replica advanced the permanent slot",
            || async { (slot_position(&c, i, "keep").await? >= target).then_some(()) },
        )
        .await;
    }
    c.kill_node(p).await;
    let np = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await
    })
    .await;
    let at = slot_position(&c, np, "keep")
        .await
        .expect("keep on the new primary");
    assert!(at >= target, "keep went back from {target} to {at}");
}
/// Where every slot belongs with `nofailover` and `replicatefrom` tags
/// (Patroni 4.1): the primary keeps its replicas' slots and the permanent
/// one; a replica that may become primary keeps the permanent slot and one
/// per other member; the nofailover replica keeps only the slot of the
/// member cascading from it. After a kill -9 the new primary has the
/// permanent slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_on_every_member_follow_nofailover_and_replicatefrom() {
    let mut c = TestCluster::new(2, Timing::default());
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("tags", "{nofailover: true}");
    c.add_node("node2", &extra);
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("tags", "{replicatefrom: node2}");
    c.add_node("node3", &extra);
    c.start(0);
    c.wait_healthy(BOOT).await;
    for i in 1..4 {
        c.start(i);
    }
    assert_eq!(c.wait_healthy(BOOT).await, 0);
    let r = reqwest::Client::new()
        .patch(c.nodes[0].api("/config"))
        .body(r#"{"slots": {"keep": {"type": "physical"}}}"#)
        .send()
        .await
        .expect("PATCH /config");
    assert_eq!(r.status().as_u16(), 200);
    let want: [&[&str]; 4] = [
        &["keep", "node1", "node2"],
        &["keep", "node0", "node2", "node3"],
        &["node3"],
        &["keep", "node0", "node1", "node2"],
    ];
    for (i, want) in want.iter().enumerate() {
        eventually(
            Duration::from_secs(30),
            &format!("the slots of node{i}"),
            || async { (slot_names(&c, i).await? == *want).then_some(()) },
        )
        .await;
    }
    c.kill_node(0).await;
    let np = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await
    })
    .await;
    assert_ne!(np, 2, "the nofailover member was promoted");
    eventually(
        Duration::from_secs(15),
        "the new primary keeps the permanent slot",
        || async {
            slot_names(&c, np)
                .await?
                .contains(&"keep".to_owned())
                .then_some(())
        },
    )
    .await;
}
/// A replica tagged nofailover never takes the leader key, even when it is
/// the only one left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nofailover_replica_never_takes_the_lock() {
    let mut c = TestCluster::new(1, Timing::default());
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("tags", "{nofailover: true}");
    let r = c.add_node("node1", &extra);
    c.start(0);
    c.wait_healthy(BOOT).await;
    c.start(r);
    assert_eq!(c.wait_healthy(BOOT).await, 0);
    c.kill_node(0).await;
    let never_primary = || async {
        assert_ne!(
            c.http_code(r, "/primary").await,
            200,
            "nofailover replica became primary"
        );
        let s = c.status(r).await;
        if let Some(s) = s {
            assert_eq!(s["role"], "replica", "{s}");
        }
    };
    // Until the lease is gone and the replica has decided, in three
    // cycles, not to race for it...
    let declined = || {
        c.nodes[r]
            .log()
            .matches("tagged nofailover and do not race")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(4 * c.timing.ttl);
    while declined() < 3 {
        never_primary().await;
        assert!(
            Instant::now() < deadline,
            "the replica never declined the race: {}",
            c.nodes[r].log()
        );
        // Poll interval of the check.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and for ttl's worth of cycles after that.
    let k = usize::try_from(c.timing.ttl / c.timing.loop_wait).expect("cycles");
    c.during_cycles(
        &[r],
        k,
        Duration::from_secs(4 * c.timing.ttl),
        "no leader",
        never_primary,
    )
    .await;
    assert!(
        !c.nodes[r].logged(events::LOCK_ACQUIRED),
        "nofailover replica took the lock"
    );
}
/// Among replicas, the one with the most WAL wins the race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_advanced_replica_wins_the_race() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let reps: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    let (lagging, ahead) = (reps[0], reps[1]);
    c.create_table_t(p).await;
    for i in &reps {
        eventually(Duration::from_secs(20), "table replicated", || async {
            let cl = c.sql(*i).await.ok()?;
            cl.query_opt("SELECT 1 FROM pg_class WHERE relname = 't'", &[])
                .await
                .ok()?
                .map(|_| ())
        })
        .await;
    }
    // Cut the lagging replica's WAL stream: an empty primary_conninfo in
    // postgresql.auto.conf overrides pgpilot's and stops the walreceiver.
    let lc = c.sql(lagging).await.expect("connect lagging replica");
    // (ALTER SYSTEM cannot run inside a multi-statement batch.)
    lc.batch_execute("ALTER SYSTEM SET primary_conninfo = ''")
        .await
        .expect("alter system");
    lc.batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    eventually(Duration::from_secs(20), "walreceiver stopped", || async {
        let n: i64 = lc
            .query_one("SELECT count(*) FROM pg_stat_wal_receiver", &[])
            .await
            .ok()?
            .get(0);
        (n == 0).then_some(())
    })
    .await;
    for v in 1..=200 {
        write_row(&c, p, v).await.expect("insert");
    }
    eventually(
        Duration::from_secs(20),
        "rows reach the other replica",
        || async { has_row(&c, ahead, 200).await.then_some(()) },
    )
    .await;
    assert!(
        !has_row(&c, lagging, 200).await,
        "lagging replica got the rows"
    );
    c.kill_node(p).await;
    let np = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await
    })
    .await;
    assert_eq!(np, ahead, "the lagging replica won the race");
    assert!(has_row(&c, np, 200).await);
    let log = c.nodes[lagging].log();
    assert!(
        !has_event(&log, events::LOCK_ACQUIRED),
        "lagging replica took the lock"
    );
    assert!(log.contains("not racing"), "{log}");
}
/// A replica tagged replicatefrom streams from that replica, not the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicatefrom_cascades_from_the_named_replica() {
    let mut c = TestCluster::new(2, Timing::default());
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("tags", "{replicatefrom: node1}");
    let cascade = c.add_node("node2", &extra);
    c.start(0);
    c.wait_healthy(BOOT).await;
    c.start(1);
    assert_eq!(c.wait_healthy(BOOT).await, 0);
    c.start(cascade);
    c.wait_healthy(BOOT).await;
    let streams_to = |i: usize| {
        let c = &c;
        async move {
            let rows = c
                .sql(i)
                .await
                .ok()?
                .query("SELECT application_name FROM pg_stat_replication", &[])
                .await
                .ok()?;
            Some(
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>(),
            )
        }
    };
    eventually(
        Duration::from_secs(30),
        "node2 streams from node1 only",
        || async {
            let from_replica = streams_to(1).await?;
            let from_primary = streams_to(0).await?;
            (from_replica == ["node2"] && from_primary == ["node1"]).then_some(())
        },
    )
    .await;
    // Its slot lives on node1; the primary keeps none for it. node1 may
    // become primary, so it also keeps one for node0 (Patroni 4.1).
    eventually(
        Duration::from_secs(20),
        "slots follow the cascade",
        || async {
            (slot_names(&c, 1).await? == ["node0", "node2"]
                && slot_names(&c, 0).await? == ["node1"])
            .then_some(())
        },
    )
    .await;
    c.create_table_t(0).await;
    write_row(&c, 0, 42).await.expect("insert");
    eventually(Duration::from_secs(20), "row cascades to node2", || async {
        has_row(&c, cascade, 42).await.then_some(())
    })
    .await;
}
/// Failover under a steady write load: the old primary, killed with its
/// daemon, comes back and rejoins by pg_rewind (not a new basebackup),
/// streams from the new primary, and no write the new primary acknowledged
/// is lost. The new leader publishes the history key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_writes_then_old_primary_rejoins_by_rewind() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ports = c.nodes.iter().map(|n| n.pg_port).collect();
    let writer = spawn_writer(ports, stop.clone());
    // Let the writer get going on the primary first.
    wait_for_writes(&c, primary, 20, Duration::from_secs(30)).await;

    c.kill_node(primary).await;
    let new_primary = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await.filter(|&p| p != primary)
    })
    .await;
    let history = eventually(Duration::from_secs(30), "the history key", || async {
        let h = c.get_json(new_primary, "/history").await?;
        (h.as_array()?.len() == 1).then_some(h)
    })
    .await;
    assert_eq!(
        history[0][4], c.nodes[new_primary].name,
        "history names the new leader: {history}"
    );
    assert_eq!(history[0][0], 1, "{history}");

    c.start(primary);
    eventually(
        Duration::from_secs(90),
        "the old primary streams from the new one",
        || async { c.is_streaming_replica(primary).await.then_some(()) },
    )
    .await;
    assert_eq!(c.primary().await, Some(new_primary), "exactly one primary");
    let log = c.nodes[primary].log();
    assert!(
        has_event(&log, events::REWIND) && log.contains("running pg_rewind"),
        "no rewind event:\n{log}"
    );
    assert!(
        has_event(&log, events::REWIND_DONE),
        "rewind did not finish:\n{log}"
    );
    assert!(
        !has_event(&log, events::REPLICA_METHOD_STARTED),
        "rebuilt by basebackup instead of pg_rewind:\n{log}"
    );
    let status = c.status(primary).await.expect("status");
    assert_eq!(status["replication_state"], "streaming", "{status}");

    // A row written on the new primary after the rejoin reaches the old one.
    let marker = -1i64;
    c.sql(new_primary)
        .await
        .expect("connect to new primary")
        .execute("INSERT INTO t(v) VALUES ($1)", &[&marker])
        .await
        .expect("insert on new primary");
    eventually(
        Duration::from_secs(20),
        "new row on the rejoined node",
        || async { has_row(&c, primary, marker).await.then_some(()) },
    )
    .await;

    stop.store(true, Ordering::SeqCst);
    let acked = writer.await.expect("writer task");
    let by_new: Vec<i64> = acked
        .iter()
        .filter(|(_, i)| *i == new_primary)
        .map(|(v, _)| *v)
        .collect();
    assert!(
        !by_new.is_empty(),
        "the writer never reached the new primary"
    );
    assert!(
        acked
            .iter()
            .all(|(_, i)| *i == primary || *i == new_primary),
        "a third node acknowledged writes: {acked:?}"
    );
    let on_new = values_on(&c, new_primary).await;
    let lost: Vec<i64> = by_new
        .iter()
        .copied()
        .filter(|v| !on_new.contains(v))
        .collect();
    assert!(
        lost.is_empty(),
        "rows acknowledged by the new primary were lost: {lost:?}"
    );
    let on_old = values_on(&c, primary).await;
    eprintln!(
        "{} writes acknowledged ({} by the new primary); {} rows on the new primary, {} on the rejoined node",
        acked.len(),
        by_new.len(),
        on_new.len(),
        on_old.len()
    );
}
/// A pg_rewind that fails is not retried and nothing is deleted: the node
/// stays stopped in state `rewind failed` until an operator acts (here: a
/// fixed configuration and a daemon restart, after which it rewinds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rewind_stays_stopped_until_an_operator_acts() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    let other = 1 - primary;
    // --restore-target-wal without a restore_command makes pg_rewind fail.
    let path = c.nodes[primary].config_path.clone();
    let good = std::fs::read_to_string(&path).expect("read config");
    let bad = good.replacen(
        "\npostgresql:\n",
        "\npostgresql:\n  rewind:\n  - restore-target-wal\n",
        1,
    );
    assert_ne!(bad, good);
    std::fs::write(&path, &bad).expect("write config");

    c.kill_node(primary).await;
    eventually(Duration::from_secs(60), "a new primary", || async {
        (c.primary().await == Some(other)).then_some(())
    })
    .await;
    c.start(primary);
    eventually(Duration::from_secs(60), "state rewind failed", || async {
        let s = c.status(primary).await?;
        (s["state"] == "rewind failed").then_some(())
    })
    .await;
    // Several cycles later: still stopped, one attempt, nothing rebuilt.
    c.during_cycles(
        &[primary],
        4,
        Duration::from_secs(30),
        "cycles after the failed rewind",
        || async {},
    )
    .await;
    let s = c.status(primary).await.expect("status");
    assert_eq!(s["state"], "rewind failed", "{s}");
    assert!(
        c.nodes[primary].postmaster_pid().is_none(),
        "PostgreSQL started"
    );
    let log = c.nodes[primary].log();
    // One rewind job started (`job=Rewind { from: ... }`), never retried.
    assert_eq!(log.matches("Rewind { from").count(), 1, "{log}");
    assert!(!has_event(&log, events::REPLICA_METHOD_STARTED), "{log}");
    assert!(!has_event(&log, events::DATA_DIR_MOVED_ASIDE), "{log}");
    assert!(c.nodes[primary].data_dir().join("PG_VERSION").exists());

    // The operator fixes the configuration and restarts the daemon.
    c.signal(primary, Signal::SIGTERM);
    c.wait_exit(primary, Duration::from_secs(30)).await;
    std::fs::write(&path, &good).expect("write config");
    c.start(primary);
    eventually(
        Duration::from_secs(60),
        "the node rewinds and streams",
        || async { c.is_streaming_replica(primary).await.then_some(()) },
    )
    .await;
    assert!(c.nodes[primary].logged(events::REWIND_DONE));
}

/// A fresh replica whose first start fails (its port is taken) stays a
/// replica: its base backup, whose control file still says `in
/// production`, is not taken for a crashed primary (no crash recovery and
/// pg_rewind, which would write WAL of its own), and after a switchover it
/// follows the new timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_whose_first_start_failed_is_not_taken_for_a_former_primary() {
    let mut c = TestCluster::new(3, Timing::default());
    let late = 2;
    let blocker = std::net::TcpListener::bind(("127.0.0.1", c.nodes[late].pg_port))
        .expect("hold the replica's port");
    c.start(0);
    c.start(1);
    let p = c.wait_healthy(BOOT).await;
    c.start(late);
    eventually(
        Duration::from_secs(60),
        "the cloned replica's start to fail",
        || async {
            let pg_log =
                std::fs::read_to_string(c.nodes[late].dir.join("data.log")).unwrap_or_default();
            pg_log
                .contains("could not create any TCP/IP sockets")
                .then_some(())
        },
    )
    .await;
    drop(blocker);
    c.wait_healthy(BOOT).await;
    assert!(
        !c.nodes[late].log().contains("I was a primary"),
        "{}",
        c.nodes[late].log()
    );

    // Switch over to the other replica: the late one follows timeline 2.
    let candidate = (0..3).find(|&i| i != p && i != late).expect("candidate");
    let r = reqwest::Client::new()
        .post(c.nodes[p].api("/switchover"))
        .json(&serde_json::json!({
            "leader": c.nodes[p].name,
            "candidate": c.nodes[candidate].name,
        }))
        .send()
        .await
        .expect("POST /switchover");
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.text().await.unwrap_or_default()
    );
    eventually(
        Duration::from_secs(60),
        "the late replica streams on timeline 2",
        || async {
            let s = c.status(late).await?;
            (c.is_streaming_replica(late).await && s["timeline"] == 2).then_some(())
        },
    )
    .await;
}

/// The leader key as etcd holds it: value, create revision, lease.
async fn leader_key(c: &TestCluster) -> Option<(String, i64, i64)> {
    let mut client = etcd_client::Client::connect([c.etcd.endpoint()], None)
        .await
        .ok()?;
    let resp = client
        .get(format!("/it/{}/leader", c.scope), None)
        .await
        .ok()?;
    let kv = resp.kvs().first()?;
    Some((
        String::from_utf8_lossy(kv.value()).into_owned(),
        kv.create_revision(),
        kv.lease(),
    ))
}

/// A second daemon with the running leader's `name` and an empty data
/// directory (issue 14 §2): it sees "its" name on the leader key, but the
/// key is under another session, so it never decides to release it
/// (docs/ha.md §3.4), and its DCS client never renews, takes over or
/// deletes the leader's key either, because every write of the leader key
/// is conditional on the writer's own lease (docs/dcs.md, "leader"). The key stays the same
/// key (same create revision and lease) and the primary keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_name_never_touches_the_leaders_key() {
    let mut c = TestCluster::new(1, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let name = c.nodes[p].name.clone();
    let before = leader_key(&c).await.expect("the leader key");
    assert_eq!(before.0, name);
    let dup = c.add_node("dup", &std::collections::BTreeMap::new());
    let path = c.nodes[dup].config_path.clone();
    let yaml = std::fs::read_to_string(&path).expect("dup yaml");
    assert!(yaml.contains("\nname: dup\n"), "{yaml}");
    std::fs::write(
        &path,
        yaml.replacen("\nname: dup\n", &format!("\nname: {name}\n"), 1),
    )
    .expect("rename dup");
    // Past the start-up refusal (tests/duplicate_name.rs tests that): the
    // DCS client must hold on its own.
    c.start_with_env(dup, &[("PGPILOT_TEST_SKIP_NAME_CHECK", "1")]);
    c.during_cycles(
        &[dup, p],
        10,
        Duration::from_secs(90),
        "the leader key stays the leader's",
        || async {
            assert_eq!(leader_key(&c).await.as_ref(), Some(&before));
            assert_eq!(c.http_code(p, "/primary").await, 200);
        },
    )
    .await;
    assert!(
        !has_event(&c.nodes[p].log(), events::LOCK_LOST),
        "the leader lost its key to the duplicate"
    );
    // The duplicate (empty data directory, "its" name on the leader key)
    // never even tried to release it: the key is under another session
    // (docs/ha.md §3.4), so the decision drops the release.
    let dup_log = c.nodes[dup].log();
    assert!(has_event(&dup_log, events::DECISION), "{dup_log}");
    for e in [events::LOCK_RELEASED, events::LOCK_NOT_MINE] {
        assert!(!has_event(&dup_log, e), "{e}: {dup_log}");
    }
}

/// Node `i` took a write.
async fn etcd_writable(c: &TestCluster, i: usize) -> bool {
    let Ok(client) = c.sql(i).await else {
        return false;
    };
    client
        .execute("CREATE TABLE IF NOT EXISTS etcd_t(v int)", &[])
        .await
        .is_ok()
        && client
            .execute("INSERT INTO etcd_t VALUES (1)", &[])
            .await
            .is_ok()
}

/// On a 3-member etcd cluster that the nodes know in order (`hosts`), the
/// member in use is killed (kill -9) for 2×ttl, then restarted, three
/// times: the daemons move to another member within `retry_timeout` and
/// nothing else happens: no failover, no demotion; the primary keeps
/// taking writes, the leader key stays at its version on its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_member_in_use_killed_no_failover_no_demotion() {
    use pgpilot::dcs::Dcs;
    use pgpilot::dcs::etcd::EtcdDcs;
    let opts = ClusterOptions {
        etcd_cluster: true,
        ..ClusterOptions::default()
    };
    // retry_timeout 3 s: an etcd leader election (the killed member may be
    // the raft leader) takes one to two seconds.
    let timing = Timing {
        ttl: 10,
        loop_wait: 1,
        retry_timeout: 3,
    };
    let mut c = TestCluster::with_options(2, timing, opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    let other = 1 - primary;
    eventually(Duration::from_secs(30), "replica streams", || async {
        c.is_streaming_replica(other).await.then_some(())
    })
    .await;
    let endpoints = c.etcd_cluster.as_ref().expect("etcd cluster").endpoints();
    let reader = EtcdDcs::new(
        endpoints.clone(),
        None,
        pgpilot::dcs::keys::cluster_prefix("/it/", &c.scope),
        "reader".into(),
        Duration::from_secs(10),
        Duration::from_secs(5),
    );
    let held = reader
        .load_cluster_fresh()
        .await
        .ok()
        .and_then(|cl| cl.leader);
    assert!(held.is_some(), "no leader key");
    let ttl = Duration::from_secs(c.timing.ttl);
    // The nodes start on the first member; after its kill they moved to
    // the next one, which is killed next.
    for m in 0..3 {
        c.etcd_cluster.as_mut().expect("etcd cluster").members[m].kill();
        let down_at = Instant::now();
        while down_at.elapsed() < 2 * ttl {
            assert!(
                etcd_writable(&c, primary).await,
                "member {m} down {:?}: the primary refused a write",
                down_at.elapsed()
            );
            assert!(
                !etcd_writable(&c, other).await,
                "member {m} down: the replica took a write"
            );
            // Poll interval; the member's absence (2×ttl) is the scenario.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let now = reader
            .load_cluster_fresh()
            .await
            .ok()
            .and_then(|cl| cl.leader);
        assert_eq!(now, held, "member {m} down: the leader key changed");
        c.etcd_cluster.as_mut().expect("etcd cluster").members[m].restart();
    }
    assert_eq!(c.primary().await, Some(primary));
    for (i, node) in c.nodes.iter().enumerate() {
        assert!(!node.logged(events::DEMOTE), "node {i} demoted");
    }
    assert!(
        !c.nodes[other].logged(events::PROMOTE),
        "the replica promoted"
    );
}
