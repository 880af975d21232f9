//! The fault matrix of synchronous replication (docs/replication-modes.md
//! §7), run in sequence on one three-node cluster with a writer going
//! through all of it: the primary's daemon restarted (the list survives),
//! the primary's daemon tree frozen for 2×ttl, the primary cut from the
//! DCS for 2×ttl, a synchronous standby killed, a switchover under the
//! writer. After each fault the cluster converges (one primary, both
//! replicas streaming and synchronous again) and every write acknowledged
//! so far is on the primary; each fault's time without a primary (REST)
//! and without an acknowledged write is printed. One cluster for all of
//! them keeps the suite's time down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cluster::TestCluster;
use super::eventually;
use super::writer::TimedWriter;

const BOOT: Duration = Duration::from_secs(120);
const APPLY: Duration = Duration::from_secs(45);

/// Which synchronous mode the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// `synchronous_mode: true`, `synchronous_mode_strict: true`.
    Strict,
    /// `synchronous_mode: quorum`, `synchronous_mode_strict: true`.
    QuorumStrict,
}

impl SyncMode {
    /// The role `/cluster` gives a synchronous standby.
    fn role(self) -> &'static str {
        match self {
            SyncMode::Strict => "sync_standby",
            SyncMode::QuorumStrict => "quorum_standby",
        }
    }

    /// `sync_state` in `pg_stat_replication`.
    fn sync_state(self) -> &'static str {
        match self {
            SyncMode::Strict => "sync",
            SyncMode::QuorumStrict => "quorum",
        }
    }

    /// How many synchronous standbys a converged 3-node cluster has
    /// (`synchronous_node_count` 1; every streaming standby votes in
    /// quorum mode).
    fn converged_count(self) -> usize {
        match self {
            SyncMode::Strict => 1,
            SyncMode::QuorumStrict => 2,
        }
    }
}

/// The members node `p`'s `/cluster` shows in `mode`'s synchronous role,
/// sorted.
pub async fn sync_members(c: &TestCluster, p: usize, mode: SyncMode) -> Option<Vec<String>> {
    let cl = c.get_json(p, "/cluster").await?;
    let mut names: Vec<String> = cl["members"]
        .as_array()?
        .iter()
        .filter(|m| m["role"] == mode.role())
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Some(names)
}

/// `(application_name, sync_state)` of node `p`'s `pg_stat_replication`.
async fn replication(c: &TestCluster, p: usize) -> Option<Vec<(String, String)>> {
    let client = c.sql(p).await.ok()?;
    let rows = client
        .query(
            "SELECT application_name, sync_state::text FROM pg_stat_replication",
            &[],
        )
        .await
        .ok()?;
    Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn show(c: &TestCluster, i: usize, name: &str) -> Option<String> {
    let client = c.sql(i).await.ok()?;
    let row = client.query_one(&format!("SHOW {name}"), &[]).await.ok()?;
    Some(row.get(0))
}

fn index_of(c: &TestCluster, name: &str) -> usize {
    c.nodes
        .iter()
        .position(|n| n.name == name)
        .expect("a member of the cluster")
}

/// A node other than `old` answering `/primary` 200 (the old one may not
/// answer at all while frozen).
async fn new_primary(c: &TestCluster, old: usize) -> usize {
    eventually(BOOT, "a new primary", || async {
        for i in (0..c.nodes.len()).filter(|&i| i != old) {
            if c.http_code(i, "/primary").await == 200 {
                return Some(i);
            }
        }
        None
    })
    .await
}

/// One primary, every node streaming, the synchronous standbys of `mode`
/// in `/cluster` and reported so by PostgreSQL, and the writer getting
/// writes acknowledged on the primary again. Returns the primary.
pub async fn converge(c: &TestCluster, mode: SyncMode, w: &TimedWriter, what: &str) -> usize {
    let p = c.wait_healthy(BOOT).await;
    let members = eventually(APPLY, &format!("{what}: synchronous standbys"), || async {
        let m = sync_members(c, p, mode).await?;
        let rows = replication(c, p).await?;
        let confirmed = m.iter().all(|n| {
            rows.iter()
                .any(|(a, s)| a == n && s.as_str() == mode.sync_state())
        });
        (m.len() == mode.converged_count() && confirmed).then_some(m)
    })
    .await;
    assert!(!members.contains(&c.nodes[p].name), "{what}: {members:?}");
    let since = Instant::now();
    eventually(
        Duration::from_secs(30),
        &format!("{what}: writes acknowledged by the primary"),
        || async { w.first_of_after(p, since) },
    )
    .await;
    p
}

/// Polls every node's `GET /primary` and keeps whether one answered 200.
struct PrimaryWatch {
    samples: Arc<Mutex<Vec<(Instant, bool)>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl PrimaryWatch {
    fn start(c: &TestCluster) -> PrimaryWatch {
        let urls: Vec<String> = c.nodes.iter().map(|n| n.api("/primary")).collect();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, halt) = (samples.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_millis(800))
                .build()
                .expect("http client");
            while !halt.load(Ordering::SeqCst) {
                let mut any = false;
                for u in &urls {
                    if http
                        .get(u)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 200)
                    {
                        any = true;
                        break;
                    }
                }
                s.lock().expect("samples").push((Instant::now(), any));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        PrimaryWatch {
            samples,
            stop,
            task,
        }
    }

    /// The longest time no node answered `/primary` 200: from the first
    /// sample without one to the next sample with one.
    async fn finish(self) -> Duration {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let samples = self.samples.lock().expect("samples").clone();
        let mut longest = Duration::ZERO;
        let mut since: Option<Instant> = None;
        for (at, any) in samples {
            match (any, since) {
                (false, None) => since = Some(at),
                (true, Some(s)) => {
                    longest = longest.max(at.saturating_duration_since(s));
                    since = None;
                }
                _ => {}
            }
        }
        longest
    }
}

async fn patch_config(c: &TestCluster, i: usize, body: Value) -> u16 {
    reqwest::Client::new()
        .patch(c.nodes[i].api("/config"))
        .json(&body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// One fault's figures, printed at the end.
struct Figures {
    fault: &'static str,
    no_primary: Duration,
    no_write: Duration,
    acked: usize,
}

/// docs/replication-modes.md §3, "A daemon restart keeps the list": kill
/// -9 of the primary's daemon alone (PostgreSQL keeps running), started
/// again at once, then a `PATCH` of an unrelated parameter that rewrites
/// postgresql.conf and reloads: `synchronous_standby_names` on the primary
/// keeps its value throughout (never empty: no asynchronous commit while
/// the `sync` key names standbys).
async fn daemon_restart(c: &mut TestCluster, p: usize) {
    let before = show(c, p, "synchronous_standby_names")
        .await
        .expect("synchronous_standby_names");
    assert!(!before.is_empty(), "no list before the restart");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = c.sql(p).await.expect("connect to the primary");
    let (s, halt) = (seen.clone(), stop.clone());
    let watcher = tokio::spawn(async move {
        while !halt.load(Ordering::SeqCst) {
            if let Ok(row) = client
                .query_one("SHOW synchronous_standby_names", &[])
                .await
            {
                let v: String = row.get(0);
                let mut seen = s.lock().expect("seen");
                if seen.last() != Some(&v) {
                    seen.push(v);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    c.kill_daemon(p).await;
    c.start(p);
    eventually(BOOT, "the restarted daemon leads", || async {
        (c.http_code(p, "/primary").await == 200).then_some(())
    })
    .await;
    let code = patch_config(
        c,
        p,
        json!({"postgresql": {"parameters": {"work_mem": "5MB"}}}),
    )
    .await;
    assert_eq!(code, 200, "PATCH work_mem");
    eventually(APPLY, "work_mem applied", || async {
        (show(c, p, "work_mem").await.as_deref() == Some("5MB")).then_some(())
    })
    .await;
    c.during_cycles(&[p], 3, APPLY, "after the rewrite", || async {})
        .await;
    stop.store(true, Ordering::SeqCst);
    watcher.await.expect("watcher");
    let seen = seen.lock().expect("seen").clone();
    eprintln!("daemon restart: synchronous_standby_names seen: {seen:?}");
    assert!(
        seen.iter().all(|v| !v.is_empty()),
        "synchronous_standby_names went empty around the daemon restart: {seen:?}"
    );
    assert_eq!(seen.first(), Some(&before), "{seen:?}");
}

/// The sequence, on a converged 3-node cluster in `mode` whose nodes all
/// run, built with `dcs_proxies`. Every fault asserts that the primary
/// after it holds every write acknowledged so far.
pub async fn run(c: &mut TestCluster, mode: SyncMode) {
    let ttl = Duration::from_secs(c.timing.ttl);
    let w = TimedWriter::start(c);
    let mut p = converge(c, mode, &w, "before the faults").await;
    let mut figures = Vec::new();

    // 0. The primary's daemon restarts: the list survives.
    daemon_restart(c, p).await;
    assert_eq!(converge(c, mode, &w, "daemon restart").await, p);

    // 1. The primary's daemon tree frozen for 2×ttl (PostgreSQL left
    // running; its fence stops it): a synchronous standby takes over.
    let sync_before = sync_members(c, p, mode).await.expect("sync members");
    let t0 = Instant::now();
    let watch = PrimaryWatch::start(c);
    let stopped = c.freeze_tree(p);
    let new = new_primary(c, p).await;
    assert!(
        sync_before.contains(&c.nodes[new].name),
        "frozen primary: {} promoted, not one of {sync_before:?}",
        c.nodes[new].name
    );
    tokio::time::sleep((2 * ttl).saturating_sub(t0.elapsed())).await;
    c.thaw(&stopped);
    p = converge(c, mode, &w, "frozen primary").await;
    figures.push(Figures {
        fault: "primary's daemon tree frozen 2×ttl",
        no_primary: watch.finish().await,
        no_write: w.longest_gap_since(t0),
        acked: w.assert_none_missing_on(c, p, "frozen primary").await,
    });

    // 2. The primary cut from the DCS for 2×ttl: it demotes itself, a
    // synchronous standby takes over.
    let sync_before = sync_members(c, p, mode).await.expect("sync members");
    let t0 = Instant::now();
    let watch = PrimaryWatch::start(c);
    c.cut_from_dcs(p);
    let new = new_primary(c, p).await;
    assert!(
        sync_before.contains(&c.nodes[new].name),
        "cut primary: {} promoted, not one of {sync_before:?}",
        c.nodes[new].name
    );
    tokio::time::sleep((2 * ttl).saturating_sub(t0.elapsed())).await;
    c.heal_dcs(p);
    p = converge(c, mode, &w, "primary cut from the DCS").await;
    figures.push(Figures {
        fault: "primary cut from the DCS 2×ttl",
        no_primary: watch.finish().await,
        no_write: w.longest_gap_since(t0),
        acked: w
            .assert_none_missing_on(c, p, "primary cut from the DCS")
            .await,
    });

    // 3. A synchronous standby killed: commits go on on the other replica
    // (strict mode never drops to asynchronous), then it comes back.
    let sync_before = sync_members(c, p, mode).await.expect("sync members");
    let s = index_of(c, &sync_before[0]);
    let t0 = Instant::now();
    let watch = PrimaryWatch::start(c);
    c.kill_node(s).await;
    let killed_at = Instant::now();
    eventually(
        APPLY,
        "commits go on without the killed standby",
        || async { w.first_of_after(p, killed_at + Duration::from_secs(1)) },
    )
    .await;
    let stall = w.longest_gap_since(t0);
    // One cycle to notice and replace it, plus the writer's 2 s timeout.
    assert!(
        stall < Duration::from_secs(c.timing.loop_wait) + ttl + Duration::from_secs(4),
        "commits stalled {stall:?} after a synchronous standby died"
    );
    assert_eq!(c.primary().await, Some(p));
    c.start(s);
    p = converge(c, mode, &w, "synchronous standby killed").await;
    figures.push(Figures {
        fault: "synchronous standby killed",
        no_primary: watch.finish().await,
        no_write: w.longest_gap_since(t0),
        acked: w
            .assert_none_missing_on(c, p, "synchronous standby killed")
            .await,
    });

    // 4. A switchover under the writer, no candidate named: it goes to a
    // synchronous standby.
    let sync_before = sync_members(c, p, mode).await.expect("sync members");
    let t0 = Instant::now();
    let watch = PrimaryWatch::start(c);
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("client")
        .post(c.nodes[p].api("/switchover"))
        .json(&json!({ "leader": c.nodes[p].name }))
        .send()
        .await
        .expect("POST /switchover");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    let new = new_primary(c, p).await;
    assert!(
        sync_before.contains(&c.nodes[new].name),
        "switchover: {} promoted, not one of {sync_before:?}",
        c.nodes[new].name
    );
    p = converge(c, mode, &w, "switchover").await;
    figures.push(Figures {
        fault: "switchover under write load",
        no_primary: watch.finish().await,
        no_write: w.longest_gap_since(t0),
        acked: w.assert_none_missing_on(c, p, "switchover").await,
    });

    let acks = w.finish().await;
    eprintln!(
        "{mode:?}: fault | no primary (REST) | longest without an acknowledged write | acknowledged so far, missing"
    );
    for f in &figures {
        eprintln!(
            "{mode:?}: {} | {:.1} s | {:.1} s | {}, 0",
            f.fault,
            f.no_primary.as_secs_f64(),
            f.no_write.as_secs_f64(),
            f.acked
        );
    }
    eprintln!("{mode:?}: {} writes acknowledged in all", acks.len());
}
