//! `POST /reinitialize`, `POST`/`DELETE /restart` and their pgpilotctl
//! commands against real etcd and PostgreSQL 15: a replica is rebuilt
//! (old data directory gone, streams again with the leader's data), the
//! leader refuses, restart conditions are checked, a scheduled restart
//! fires at its time and a cancelled one does not, and a restart of the
//! leader keeps the leader key.

mod support;

use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgpilot::events;
use serde_json::{Value, json};
use support::cluster::{TestCluster, Timing, has_event};
use support::ctl::ok;
use support::eventually;

const BOOT: Duration = Duration::from_secs(120);

async fn call(
    c: &TestCluster,
    i: usize,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let mut req = client.request(method, c.nodes[i].api(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap_or_default())
}

async fn post(c: &TestCluster, i: usize, path: &str, body: Value) -> (u16, String) {
    call(c, i, reqwest::Method::POST, path, Some(body)).await
}

fn ctl(c: &TestCluster, args: &[&str]) -> Output {
    ctl_stdin(c, args, "")
}

fn ctl_stdin(c: &TestCluster, args: &[&str], stdin: &str) -> Output {
    support::ctl::run(c, args, stdin, &[])
}

async fn leader_name(c: &TestCluster, i: usize) -> Option<String> {
    let cl = c.get_json(i, "/cluster").await?;
    cl["members"]
        .as_array()?
        .iter()
        .find(|m| m["role"] == "leader")
        .and_then(|m| m["name"].as_str().map(str::to_owned))
}

async fn start_time(c: &TestCluster, i: usize) -> Option<String> {
    c.status(i).await?["postmaster_start_time"]
        .as_str()
        .map(str::to_owned)
}

/// ISO 8601 (UTC) `secs` from now.
fn in_secs(secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    pgpilot::ha::iso8601::Utc::from_unix(now + secs).to_iso8601()
}

/// Moved-aside copies of node `i`'s data directory (`data_<timestamp>`).
fn moved_aside(c: &TestCluster, i: usize) -> Vec<String> {
    std::fs::read_dir(&c.nodes[i].dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("data_"))
                .collect()
        })
        .unwrap_or_default()
}

async fn rows_on(c: &TestCluster, i: usize) -> Option<i64> {
    let client = c.sql(i).await.ok()?;
    client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .ok()
        .map(|r| r.get(0))
}

/// Reinitialize: refused on the leader; a replica's data directory is
/// replaced (a marker file is gone, no moved-aside copy remains), it
/// streams again with the leader's data; a second request while the first
/// runs is refused; `pgpilotctl reinit --force --wait` does it end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinitialize_rebuilds_a_replica_and_refuses_the_leader() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let r = 1 - p;
    c.create_table_t(p).await;
    c.sql(p)
        .await
        .expect("connect")
        .batch_execute("INSERT INTO t SELECT generate_series(1, 100)")
        .await
        .expect("insert");

    // The leader refuses, and nothing changes there.
    let pid = c.nodes[p].postmaster_pid();
    assert_eq!(
        post(&c, p, "/reinitialize", json!({})).await,
        (503, "I am the leader, can not reinitialize".to_owned())
    );
    assert_eq!(c.nodes[p].postmaster_pid(), pid);
    assert_eq!(c.primary().await, Some(p));

    // A replica is rebuilt.
    let marker = c.nodes[r].data_dir().join("pgpilot_test_marker");
    std::fs::write(&marker, "old").expect("marker");
    let mark = c.nodes[r].log().len();
    assert_eq!(
        post(&c, r, "/reinitialize", json!({})).await,
        (200, "reinitialize started".to_owned())
    );
    let (code, text) = post(&c, r, "/reinitialize", json!({})).await;
    assert_eq!(
        (code, text.as_str()),
        (503, "reinitialize already in progress"),
        "a second request while the first runs"
    );
    eventually(
        Duration::from_secs(90),
        "the replica streams again",
        || async {
            (c.is_streaming_replica(r).await && rows_on(&c, r).await == Some(100)).then_some(())
        },
    )
    .await;
    assert!(!marker.exists(), "the old data directory is still in place");
    assert!(
        moved_aside(&c, r).is_empty(),
        "moved-aside copy left: {:?}",
        moved_aside(&c, r)
    );
    let log = c.nodes[r].log()[mark..].to_owned();
    assert!(has_event(&log, events::DATA_DIR_MOVED_ASIDE), "{log}");
    assert!(has_event(&log, events::OLD_DATA_DIR_REMOVED), "{log}");
    assert_eq!(c.primary().await, Some(p), "no failover");

    // A forced request cancels the rebuild under way and starts over; the
    // copies both moved aside are gone once the new one runs.
    std::fs::write(&marker, "old").expect("marker");
    let mark = c.nodes[r].log().len();
    assert_eq!(
        post(&c, r, "/reinitialize", json!({})).await,
        (200, "reinitialize started".to_owned())
    );
    eventually(Duration::from_secs(10), "the rebuild under way", || async {
        has_event(&c.nodes[r].log()[mark..], events::JOB_STARTED).then_some(())
    })
    .await;
    assert_eq!(
        post(
            &c,
            r,
            "/reinitialize",
            json!({"force": true, "from_leader": true})
        )
        .await,
        (200, "reinitialize started".to_owned())
    );
    eventually(
        Duration::from_secs(90),
        "the replica streams again",
        || async {
            (c.is_streaming_replica(r).await && rows_on(&c, r).await == Some(100)).then_some(())
        },
    )
    .await;
    assert!(!marker.exists());
    eventually(
        Duration::from_secs(10),
        "no moved-aside copy left",
        || async { moved_aside(&c, r).is_empty().then_some(()) },
    )
    .await;
    let log = c.nodes[r].log()[mark..].to_owned();
    assert!(
        has_event(&log, events::JOB_CANCELLED),
        "nothing was cancelled:\n{log}"
    );

    // pgpilotctl reinit while a rebuild runs: refused, then (confirmed)
    // forced, as patronictl offers.
    let name = c.nodes[r].name.clone();
    assert_eq!(
        post(&c, r, "/reinitialize", json!({})).await,
        (200, "reinitialize started".to_owned())
    );
    let out = ctl_stdin(&c, &["reinit", &name, "--from-leader", "--wait"], "y\ny\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("status code=503, (reinitialize already in progress)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("Reinitialize is completed on: {name}")),
        "{stdout}"
    );
    c.wait_healthy(BOOT).await;

    // pgpilotctl reinit --force --wait, end to end.
    std::fs::write(&marker, "old").expect("marker");
    let name = c.nodes[r].name.clone();
    let out = ok(&c, &["reinit", &name, "--force", "--wait"]);
    assert!(
        out.contains(&format!("Success: reinitialize for member {name}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Reinitialize is completed on: {name}")),
        "{out}"
    );
    assert!(
        !marker.exists(),
        "pgpilotctl reinit did not replace the data"
    );
    eventually(
        Duration::from_secs(60),
        "the replica streams again",
        || async {
            (c.is_streaming_replica(r).await && rows_on(&c, r).await == Some(100)).then_some(())
        },
    )
    .await;
    // pgpilotctl refuses the leader itself.
    let out = ctl(&c, &["reinit", &c.nodes[p].name.clone(), "--force"]);
    assert!(!out.status.success());
    assert!(moved_aside(&c, r).is_empty());
}

/// Restart: unmet conditions answer 503 and restart nothing; the leader
/// restarts and keeps the leader key; a scheduled restart fires after its
/// time, a second one is refused, a cancelled one never fires; pgpilotctl
/// schedules and flushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_conditions_schedule_and_leader_key() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let r = 1 - p;
    let leader = c.nodes[p].name.clone();

    // Conditions not met: 503, same postmaster.
    let pid = c.nodes[r].postmaster_pid();
    for body in [
        json!({"role": "primary"}),
        json!({"restart_pending": true}),
        json!({"postgres_version": "15.0"}),
    ] {
        assert_eq!(
            post(&c, r, "/restart", body.clone()).await,
            (503, "restart conditions are not satisfied".to_owned()),
            "{body}"
        );
    }
    assert_eq!(
        post(&c, r, "/restart", json!({"role": "master"})).await.0,
        400
    );
    assert_eq!(c.nodes[r].postmaster_pid(), pid);

    // The leader restarts and keeps its key: no failover.
    let before = start_time(&c, p).await.expect("start time");
    let pid = c.nodes[p].postmaster_pid();
    assert_eq!(
        post(
            &c,
            p,
            "/restart",
            json!({"role": "primary", "postgres_version": "99.0", "timeout": "60s"})
        )
        .await,
        (200, "restarted successfully".to_owned())
    );
    assert_ne!(c.nodes[p].postmaster_pid(), pid);
    assert_ne!(start_time(&c, p).await.as_ref(), Some(&before));
    assert_eq!(leader_name(&c, p).await.as_deref(), Some(leader.as_str()));
    assert_eq!(c.wait_healthy(BOOT).await, p);
    let tl = c.status(p).await.expect("status")["timeline"].clone();
    assert_eq!(tl, 1, "no promotion happened");
    assert_eq!(leader_name(&c, r).await.as_deref(), Some(leader.as_str()));

    // A scheduled restart on the replica fires after its time.
    let before = start_time(&c, r).await.expect("start time");
    let at = in_secs(5);
    let (code, text) = post(&c, r, "/restart", json!({"schedule": at})).await;
    assert_eq!((code, text.as_str()), (202, "Restart scheduled"));
    assert_eq!(
        post(&c, r, "/restart", json!({"schedule": in_secs(60)})).await,
        (409, "Another restart is already scheduled".to_owned())
    );
    let s = c.status(r).await.expect("status");
    assert_eq!(s["scheduled_restart"]["schedule"], at.as_str(), "{s}");
    assert!(
        s["scheduled_restart"]
            .get("postmaster_start_time")
            .is_none()
    );
    let scheduled_at = SystemTime::now() + Duration::from_secs(4);
    eventually(Duration::from_secs(40), "the scheduled restart", || async {
        start_time(&c, r).await.filter(|t| *t != before).map(|_| ())
    })
    .await;
    assert!(
        SystemTime::now() >= scheduled_at,
        "restarted before its time"
    );
    let s = c.status(r).await.expect("status");
    assert!(s.get("scheduled_restart").is_none(), "{s}");
    c.wait_healthy(BOOT).await;

    // A cancelled one never fires.
    let before = start_time(&c, r).await.expect("start time");
    let due = SystemTime::now() + Duration::from_secs(4);
    let (code, _) = post(&c, r, "/restart", json!({"schedule": in_secs(4)})).await;
    assert_eq!(code, 202);
    assert_eq!(
        call(&c, r, reqwest::Method::DELETE, "/restart", None).await,
        (200, "scheduled restart deleted".to_owned())
    );
    assert_eq!(
        call(&c, r, reqwest::Method::DELETE, "/restart", None).await,
        (404, "no restarts are scheduled".to_owned())
    );
    // Past its time (the scenario's clock: a schedule is wall-clock time),
    // then through several cycles of the node: it never fired.
    let to_due = due.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_secs(1);
    tokio::time::sleep(to_due).await;
    c.during_cycles(&[r], 3, Duration::from_secs(30), "no restart", || async {
        assert_eq!(start_time(&c, r).await, Some(before.clone()));
    })
    .await;
    assert_eq!(start_time(&c, r).await, Some(before.clone()));

    // pgpilotctl: schedule on the replica, see it in the member key, flush.
    let name = c.nodes[r].name.clone();
    let out = ok(
        &c,
        &["restart", &name, "--scheduled", &in_secs(3600), "--force"],
    );
    assert!(out.contains("Restart scheduled"), "{out}");
    eventually(
        Duration::from_secs(20),
        "scheduled_restart in the member key",
        || async {
            let cl = c.get_json(p, "/cluster").await?;
            cl["members"]
                .as_array()?
                .iter()
                .any(|m| m["name"] == name.as_str() && m.get("scheduled_restart").is_some())
                .then_some(())
        },
    )
    .await;
    let out = ok(&c, &["flush", "restart", "--force"]);
    assert!(out.contains("scheduled restart deleted"), "{out}");
    let s = c.status(r).await.expect("status");
    assert!(s.get("scheduled_restart").is_none(), "{s}");
    assert_eq!(start_time(&c, r).await, Some(before));
}

/// `timeout`: a leader whose PostgreSQL is not up within it fails the
/// restart (503 `restart failed`) and releases the lock, so the replica
/// takes over. The slow start comes from a `postgres` wrapper (in a
/// `bin_dir` of symlinks) that sleeps while a flag file exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_timeout_on_the_leader_fails_over() {
    let mut c = TestCluster::new(2, Timing::default());
    let real = std::path::Path::new("/usr/lib/postgresql/15/bin");
    let bin = c.root.join("slowbin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    for e in std::fs::read_dir(real).expect("postgres bin dir").flatten() {
        if e.file_name() != "postgres" {
            std::os::unix::fs::symlink(e.path(), bin.join(e.file_name())).expect("symlink");
        }
    }
    let flag = c.root.join("slow-start");
    let script = c.write_script(
        "slowbin/postgres",
        &format!(
            "#!/bin/sh\nif [ -e {flag} ]; then sleep 15; fi\nexec {real}/postgres \"$@\"\n",
            flag = flag.display(),
            real = real.display()
        ),
    );
    assert!(script.exists());
    for i in 0..2 {
        c.add_to_section(i, "postgresql", &format!("bin_dir: {}", bin.display()));
    }
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let r = 1 - p;
    let leader = c.nodes[p].name.clone();

    std::fs::write(&flag, "").expect("flag");
    let (code, text) = post(&c, p, "/restart", json!({"timeout": 2})).await;
    assert_eq!((code, text.as_str()), (503, "restart failed"));
    let new = eventually(
        Duration::from_secs(60),
        "the replica takes over",
        || async {
            leader_name(&c, r)
                .await
                .filter(|l| *l != leader)
                .and(c.primary().await.filter(|&x| x == r))
        },
    )
    .await;
    assert_eq!(new, r);
    std::fs::remove_file(&flag).expect("remove flag");
    assert_eq!(c.wait_healthy(BOOT).await, r, "the old leader rejoins");
}
