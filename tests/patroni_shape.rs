//! The integration families on the configuration users run, not ours:
//! a cluster shaped like Patroni's sample `postgres0.yml`
//! ([`Shape::PatroniSample`]: no data checksums, parameters and `pg_hba`
//! only in `bootstrap.dcs`, password-only host lines, a rewind user, a
//! relative `data_dir`). The other test files run the same families on
//! [`Shape::Ours`].
//!
//! One cluster goes through every family in turn, each step leaving one
//! primary and streaming replicas for the next, so the matrix costs one
//! bootstrap: bootstrap, crash failover and rejoin by pg_rewind (issue 12
//! §1: crash recovery before pg_rewind lost `wal_log_hints`, which a
//! cluster without checksums needs), switchover, dynamic configuration
//! and restarts (issue 12 §2: no `hba_file`/`ident_file` pending restart
//! with a relative `data_dir`), pause, frozen PostgreSQL, frozen daemon,
//! primary cut off from the DCS, reinitialize.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgpilot::events;
use serde_json::{Value, json};
use support::cluster::{
    ClusterOptions, REPLICATION_PASSWORD, SUPERUSER_PASSWORD, Shape, TestCluster, Timing, has_event,
};
use support::eventually;

const BOOT: Duration = Duration::from_secs(90);
const APPLY: Duration = Duration::from_secs(20);
/// A failover, a rewind, a restart: generous for a loaded 2-core machine.
const REJOIN: Duration = Duration::from_secs(90);

async fn call(
    c: &TestCluster,
    i: usize,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, String) {
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("client")
        .request(method, c.nodes[i].api(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap_or_default())
}

async fn post(c: &TestCluster, i: usize, path: &str, body: Value) -> (u16, String) {
    call(c, i, reqwest::Method::POST, path, body).await
}

async fn patch_config(c: &TestCluster, i: usize, body: Value) {
    let (code, text) = call(c, i, reqwest::Method::PATCH, "/config", body).await;
    assert_eq!(code, 200, "PATCH /config: {text}");
}

async fn show(c: &TestCluster, i: usize, name: &str) -> Option<String> {
    let client = c.sql(i).await.ok()?;
    let row = client.query_one(&format!("SHOW {name}"), &[]).await.ok()?;
    Some(row.get(0))
}

/// The names node `i` reports in `pending_restart_reason` (empty: no
/// restart pending); `None` if it does not answer.
async fn pending(c: &TestCluster, i: usize) -> Option<BTreeSet<String>> {
    let s = c.status(i).await?;
    let names: BTreeSet<String> = s["pending_restart_reason"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    assert_eq!(
        s.get("pending_restart").is_some(),
        !names.is_empty(),
        "pending_restart and its reason disagree: {s}"
    );
    Some(names)
}

async fn has_value(c: &TestCluster, i: usize, v: i64) -> bool {
    let Ok(cl) = c.sql(i).await else { return false };
    matches!(
        cl.query_opt("SELECT 1 FROM t WHERE v = $1", &[&v]).await,
        Ok(Some(_))
    )
}

/// Insert `v` on the primary `p` and wait until every node has it, so a
/// fault that follows cannot lose it to asynchronous replication (not what
/// these steps are about); after the fault every node must still have it.
async fn write_everywhere(c: &TestCluster, p: usize, v: i64) {
    // `/primary` answers 200 for the holder of the leader key (as Patroni's
    // does) while its PostgreSQL may still be read-only: after a crash it
    // restarts in recovery and promotes on the next cycle. Wait for that.
    eventually(APPLY, "the primary takes writes", || async {
        let cl = c.sql(p).await.ok()?;
        let row = cl.query_one("SELECT pg_is_in_recovery()", &[]).await.ok()?;
        (!row.get::<_, bool>(0)).then_some(())
    })
    .await;
    c.sql(p)
        .await
        .expect("connect to the primary")
        .execute("INSERT INTO t(v) VALUES ($1)", &[&v])
        .await
        .expect("insert on the primary");
    assert_everywhere(c, v).await;
}

async fn assert_everywhere(c: &TestCluster, v: i64) {
    for i in 0..c.nodes.len() {
        eventually(APPLY, &format!("row {v} on node {i}"), || async {
            has_value(c, i, v).await.then_some(())
        })
        .await;
    }
}

/// A node other than `old` answering `/primary` 200 (`old` may not answer
/// at all).
async fn new_primary(c: &TestCluster, old: usize) -> usize {
    eventually(REJOIN, "a new primary", || async {
        for i in (0..c.nodes.len()).filter(|&i| i != old) {
            if c.http_code(i, "/primary").await == 200 {
                return Some(i);
            }
        }
        None
    })
    .await
}

/// The primary's timeline, and `i`'s WAL receiver: (status, sender port,
/// received timeline).
async fn wal_receiver(c: &TestCluster, i: usize) -> Option<(String, i32, i32)> {
    let cl = c.sql(i).await.ok()?;
    let row = cl
        .query_opt(
            "SELECT status, sender_port, received_tli FROM pg_stat_wal_receiver",
            &[],
        )
        .await
        .ok()??;
    Some((row.get(0), row.get(1), row.get(2)))
}

/// Wait until `old` streams from `new` on `new`'s timeline, and `new` is
/// the only primary. Returns that timeline.
async fn wait_streams_from(c: &TestCluster, old: usize, new: usize) -> i64 {
    eventually(
        REJOIN,
        &format!("node {old} streams from node {new} on its timeline"),
        || async {
            if c.primary().await != Some(new) || !c.is_streaming_replica(old).await {
                return None;
            }
            let tl = c.status(new).await?["timeline"].as_i64()?;
            let (status, port, tli) = wal_receiver(c, old).await?;
            (status == "streaming" && port == i32::from(c.nodes[new].pg_port) && tli as i64 == tl)
                .then_some(tl)
        },
    )
    .await
}

/// `old`'s log since byte `mark`: no base backup (rejoined, not
/// rebuilt), and a pg_rewind that started also finished. With `rewound`
/// a pg_rewind must have run: a former primary that crashed always
/// rewinds; one stopped by its fence may find nothing diverged and just
/// follow.
fn assert_rejoined(c: &TestCluster, old: usize, mark: usize, rewound: bool) {
    let log = c.nodes[old]
        .log()
        .get(mark..)
        .unwrap_or_default()
        .to_owned();
    let ran = log.contains("running pg_rewind");
    assert!(!rewound || ran, "no pg_rewind:\n{log}");
    assert!(
        !ran || has_event(&log, events::REWIND_DONE),
        "unfinished pg_rewind:\n{log}"
    );
    assert!(!log.contains("rewind failed"), "{log}");
    assert!(
        !has_event(&log, events::REPLICA_METHOD_STARTED)
            && !has_event(&log, events::DATA_DIR_MOVED_ASIDE),
        "rebuilt instead of rejoined:\n{log}"
    );
    eprintln!(
        "    {} rejoined {}",
        c.nodes[old].name,
        if ran {
            "by pg_rewind"
        } else {
            "without pg_rewind (nothing diverged)"
        }
    );
}

/// No member reports a pending restart, over several HA cycles (each
/// cycle's status query reads `pg_settings` again).
async fn assert_no_pending_restart(c: &TestCluster, what: &str) {
    let all: Vec<usize> = (0..c.nodes.len()).collect();
    c.during_cycles(&all, 3, Duration::from_secs(30), what, || async {
        for i in 0..c.nodes.len() {
            if let Some(p) = pending(c, i).await {
                assert!(
                    p.is_empty(),
                    "{what}: node {i} reports pending restart {p:?}: {}",
                    c.status(i).await.unwrap_or_default()
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_sample_configuration_through_every_family() {
    let started = Instant::now();
    let opts = ClusterOptions {
        shape: Shape::PatroniSample,
        dcs_proxies: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(3, Timing::default(), opts);
    let step = |name: &str| eprintln!("[{:>6.1?}] {name}", started.elapsed());

    // ---- Bootstrap.
    step("bootstrap");
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let sysid = c.status(p).await.expect("status")["database_system_identifier"].clone();
    for i in 0..3 {
        let s = c.status(i).await.expect("status");
        assert_eq!(s["database_system_identifier"], sysid, "one cluster: {s}");
        // What this configuration is about: no checksums, so pg_rewind
        // depends on wal_log_hints (from bootstrap.dcs).
        assert_eq!(show(&c, i, "data_checksums").await.as_deref(), Some("off"));
        assert_eq!(show(&c, i, "wal_log_hints").await.as_deref(), Some("on"));
        assert_eq!(show(&c, i, "max_connections").await.as_deref(), Some("30"));
        // The relative data_dir resolved against the daemon's directory.
        let data_dir = show(&c, i, "data_directory").await.expect("data_directory");
        assert_eq!(std::path::Path::new(&data_dir), c.nodes[i].data_dir());
        assert_eq!(
            show(&c, i, "hba_file")
                .await
                .as_deref()
                .map(std::path::Path::new),
            Some(c.nodes[i].data_dir().join("pg_hba.conf").as_path())
        );
        // bootstrap.dcs.postgresql.pg_hba is the whole file: passwords only.
        let hba = std::fs::read_to_string(c.nodes[i].data_dir().join("pg_hba.conf"))
            .expect("read pg_hba.conf");
        let rules: Vec<&str> = hba
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(
            rules,
            [
                "host replication replicator 127.0.0.1/32 scram-sha-256",
                "host all all 0.0.0.0/0 md5"
            ],
            "node {i}"
        );
    }
    // Passwords are checked: a wrong one is refused, the right ones work
    // (the superuser's above; replication below, by the replicas).
    let mut wrong = tokio_postgres::Config::new();
    wrong
        .host("127.0.0.1")
        .port(c.nodes[p].pg_port)
        .user("postgres")
        .password("not-the-password")
        .dbname("postgres");
    let err = wrong
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("a wrong password was accepted");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err:?}"
    );
    assert_ne!(SUPERUSER_PASSWORD, REPLICATION_PASSWORD);
    c.create_table_t(p).await;
    write_everywhere(&c, p, 1).await;
    assert_no_pending_restart(&c, "after bootstrap").await;

    // ---- Crash failover and rejoin by pg_rewind (issue 12 §1): kill -9
    // of everything the primary's node runs, then the daemon restarted.
    step("crash failover + rewind");
    let old = p;
    c.kill_node_tree(old).await;
    let p = new_primary(&c, old).await;
    // Writes on the new timeline the old primary never saw.
    write_row_on(&c, p, 2).await;
    let mark = c.nodes[old].log().len();
    c.start(old);
    let tl = wait_streams_from(&c, old, p).await;
    assert!(tl >= 2, "a failover gives a new timeline, got {tl}");
    assert_rejoined(&c, old, mark, true);
    // The path of issue 12 §1: crash recovery first, then pg_rewind,
    // which refused the data directory when the recovery had run without
    // wal_log_hints.
    let log = c.nodes[old].log()[mark..].to_owned();
    assert!(has_event(&log, events::REWIND_CRASH_RECOVERY), "{log}");
    write_everywhere(&c, p, 3).await;
    assert_everywhere(&c, 2).await;

    // ---- Switchover back to the node that crashed.
    step("switchover");
    let (cand, old) = (old, p);
    let mark = c.nodes[old].log().len();
    let (code, text) = post(
        &c,
        old,
        "/switchover",
        json!({"leader": c.nodes[old].name, "candidate": c.nodes[cand].name}),
    )
    .await;
    assert_eq!(
        (code, text),
        (
            200,
            format!("Successfully switched over to \"{}\"", c.nodes[cand].name)
        )
    );
    let p = cand;
    wait_streams_from(&c, old, p).await;
    let log = c.nodes[old].log()[mark..].to_owned();
    assert!(
        !log.contains("running pg_rewind") && !has_event(&log, events::REPLICA_METHOD_STARTED),
        "a switchover needs no rebuild:\n{log}"
    );
    c.wait_healthy(BOOT).await;
    write_everywhere(&c, p, 4).await;
    // Issue 12 §2: the relative data_dir made every node report
    // hba_file/ident_file as pending restart after a switchover.
    assert_no_pending_restart(&c, "after a switchover").await;

    // ---- Dynamic configuration and restarts.
    step("PATCH /config, restarts");
    // A reloadable parameter, and the pg_hba lines of the DCS.
    let (code, text) = call(
        &c,
        p,
        reqwest::Method::PATCH,
        "/config",
        json!({"postgresql": {"pg_hba": "host all all 0.0.0.0/0 md5"}}),
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("postgresql.pg_hba"), "{text}");
    let hba = [
        "host replication replicator 127.0.0.1/32 scram-sha-256",
        "host all postgres 127.0.0.1/32 scram-sha-256",
        "host all all 0.0.0.0/0 md5",
    ];
    patch_config(
        &c,
        (p + 1) % 3,
        json!({"postgresql": {"parameters": {"work_mem": "12MB"}, "pg_hba": hba}}),
    )
    .await;
    for i in 0..3 {
        eventually(APPLY, "work_mem applied by reload", || async {
            (show(&c, i, "work_mem").await.as_deref() == Some("12MB")).then_some(())
        })
        .await;
        let file = c.nodes[i].data_dir().join("pg_hba.conf");
        let text = std::fs::read_to_string(file).expect("read pg_hba.conf");
        assert!(text.contains(hba[1]), "node {i}: {text}");
    }
    assert_no_pending_restart(&c, "after a PATCH of a reloadable parameter").await;
    // A postmaster parameter: pending on every node, and nothing else is.
    patch_config(
        &c,
        p,
        json!({"postgresql": {"parameters": {"shared_buffers": "24MB"}}}),
    )
    .await;
    for i in 0..3 {
        let names = eventually(APPLY, "shared_buffers pending restart", || async {
            pending(&c, i).await.filter(|p| !p.is_empty())
        })
        .await;
        assert_eq!(
            names,
            BTreeSet::from(["shared_buffers".to_owned()]),
            "node {i}: only the changed parameter waits for a restart"
        );
    }
    // POST /restart {"restart_pending": true}: replicas, then the leader,
    // which keeps its key.
    for i in (0..3).filter(|&i| i != p).chain([p]) {
        assert_eq!(
            post(&c, i, "/restart", json!({"restart_pending": true})).await,
            (200, "restarted successfully".to_owned()),
            "node {i}"
        );
        assert_eq!(show(&c, i, "shared_buffers").await.as_deref(), Some("24MB"));
    }
    assert_eq!(c.wait_healthy(BOOT).await, p, "a restart is no failover");
    for i in 0..3 {
        eventually(APPLY, "pending restart cleared", || async {
            pending(&c, i).await.filter(|p| p.is_empty())
        })
        .await;
    }
    write_everywhere(&c, p, 5).await;

    // ---- Pause: a crashed primary is neither restarted nor replaced.
    step("pause");
    patch_config(&c, p, json!({"pause": true})).await;
    eventually(APPLY, "every node paused", || async {
        for i in 0..3 {
            if c.status(i).await?["pause"] != json!(true) {
                return None;
            }
        }
        Some(())
    })
    .await;
    let pm = c.nodes[p].postmaster_pid().expect("postmaster");
    kill(Pid::from_raw(pm), Signal::SIGKILL).expect("kill the postmaster");
    // ttl + 2 × loop_wait worth of timed HA cycles on every node, plus one
    // for a cycle the crash may wake early.
    let k = usize::try_from(c.timing.ttl / c.timing.loop_wait + 3).expect("cycles");
    c.during_cycles(
        &[0, 1, 2],
        k,
        Duration::from_secs(4 * c.timing.ttl),
        "paused after the crash",
        || async {
            for i in (0..3).filter(|&i| i != p) {
                assert_ne!(
                    c.http_code(i, "/primary").await,
                    200,
                    "failover while paused"
                );
            }
            assert!(
                c.nodes[p].postmaster_pid().is_none_or(|x| x == pm),
                "PostgreSQL restarted while paused"
            );
        },
    )
    .await;
    patch_config(&c, (p + 1) % 3, json!({"pause": null})).await;
    let p = c.wait_healthy(BOOT).await;
    assert_everywhere(&c, 5).await;
    write_everywhere(&c, p, 6).await;

    // ---- Frozen PostgreSQL (SIGSTOP of the postmaster and every child):
    // fenced, a replica takes over, the old primary rejoins by pg_rewind.
    step("frozen PostgreSQL");
    let old = p;
    let pm = c.nodes[old].postmaster_pid().expect("postmaster");
    let tree: Vec<i32> = std::iter::once(pm)
        .chain(pgpilot::postgres::postmaster::children_of(pm))
        .collect();
    let mark = c.nodes[old].log().len();
    for x in &tree {
        let _ = kill(Pid::from_raw(*x), Signal::SIGSTOP);
    }
    let p = new_primary(&c, old).await;
    for x in &tree {
        let _ = kill(Pid::from_raw(*x), Signal::SIGCONT);
    }
    write_row_on(&c, p, 7).await;
    wait_streams_from(&c, old, p).await;
    assert_rejoined(&c, old, mark, false);
    assert_everywhere(&c, 6).await;
    write_everywhere(&c, p, 8).await;

    // ---- Frozen daemon (SIGSTOP): the fence stops PostgreSQL before the
    // lease can end, a replica takes over, the old node rejoins.
    step("frozen daemon");
    let old = p;
    let mark = c.nodes[old].log().len();
    c.signal(old, Signal::SIGSTOP);
    let p = new_primary(&c, old).await;
    write_row_on(&c, p, 9).await;
    c.signal(old, Signal::SIGCONT);
    wait_streams_from(&c, old, p).await;
    assert_rejoined(&c, old, mark, false);
    assert!(
        c.nodes[old].fence_log().contains("stopping PostgreSQL"),
        "{}",
        c.nodes[old].fence_log()
    );
    assert_everywhere(&c, 8).await;
    write_everywhere(&c, p, 10).await;

    // ---- The primary cut off from the DCS (the others keep it): it stops
    // taking writes, a replica takes over, after the cut heals the old
    // primary rejoins by pg_rewind.
    step("primary cut off from the DCS");
    let old = p;
    let mark = c.nodes[old].log().len();
    c.cut_from_dcs(old);
    let p = new_primary(&c, old).await;
    write_row_on(&c, p, 11).await;
    c.heal_dcs(old);
    wait_streams_from(&c, old, p).await;
    assert_rejoined(&c, old, mark, false);
    assert_everywhere(&c, 10).await;
    write_everywhere(&c, p, 12).await;

    // ---- Reinitialize a replica.
    step("reinitialize");
    let r = (p + 1) % 3;
    let mark = c.nodes[r].log().len();
    assert_eq!(
        post(&c, r, "/reinitialize", json!({})).await,
        (200, "reinitialize started".to_owned())
    );
    eventually(REJOIN, "the rebuilt replica streams again", || async {
        let log = c.nodes[r].log();
        (has_event(&log[mark..], events::REPLICA_METHOD_STARTED) && c.is_streaming_replica(r).await)
            .then_some(())
    })
    .await;
    assert_eq!(c.wait_healthy(BOOT).await, p);
    assert_everywhere(&c, 12).await;
    write_everywhere(&c, p, 13).await;
    step("done");
}

/// Insert `v` on the primary `p` (acknowledged, not waited for elsewhere).
async fn write_row_on(c: &TestCluster, p: usize, v: i64) {
    eventually(APPLY, "a write on the new primary", || async {
        let cl = c.sql(p).await.ok()?;
        cl.execute("INSERT INTO t(v) VALUES ($1)", &[&v])
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}
