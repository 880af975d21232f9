//! Fencing against real etcd and PostgreSQL 15: a frozen or dead daemon,
//! or a frozen PostgreSQL, never leaves a writable primary behind once its
//! lease may have ended.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgpilot::events;
use support::cluster::{SUPERUSER_PASSWORD, TestCluster, Timing};
use support::eventually;

const BOOT: Duration = Duration::from_secs(90);

/// One acknowledged insert: which node took it, the value, when.
#[derive(Debug, Clone, Copy)]
struct Ack {
    node: usize,
    value: i64,
    at: Instant,
}

/// One writer task per node, each connected straight to its node, inserting
/// a new value every 50 ms and recording those acknowledged.
struct Writers {
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    /// Per node: writes suspended.
    hold: Vec<Arc<AtomicBool>>,
    /// Per node: the writer has seen its hold, with no insert in flight.
    held: Vec<Arc<AtomicBool>>,
    /// Per node: when the last finished attempt (connect, or insert, either
    /// outcome) began.
    tried: Vec<Arc<Mutex<Option<Instant>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn connect(port: u16) -> Option<tokio_postgres::Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password(SUPERUSER_PASSWORD)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(1));
    let (client, conn) =
        tokio::time::timeout(Duration::from_secs(1), cfg.connect(tokio_postgres::NoTls))
            .await
            .ok()?
            .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(client)
}

impl Writers {
    fn start(c: &TestCluster) -> Writers {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut hold = Vec::new();
        let mut held = Vec::new();
        let mut tried = Vec::new();
        let mut tasks = Vec::new();
        for (i, n) in c.nodes.iter().enumerate() {
            let (acks, stop, port) = (acks.clone(), stop.clone(), n.pg_port);
            let h = Arc::new(AtomicBool::new(false));
            hold.push(h.clone());
            let idle = Arc::new(AtomicBool::new(false));
            held.push(idle.clone());
            let last_try = Arc::new(Mutex::new(None));
            tried.push(last_try.clone());
            tasks.push(tokio::spawn(async move {
                let mut client = None;
                let mut seq = 0i64;
                while !stop.load(Ordering::SeqCst) {
                    // Pacing of the writer: one insert per 50 ms.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let on_hold = h.load(Ordering::SeqCst);
                    idle.store(on_hold, Ordering::SeqCst);
                    if on_hold {
                        continue;
                    }
                    let began = Instant::now();
                    if client.is_none() {
                        client = connect(port).await;
                    }
                    let Some(cl) = &client else {
                        *last_try.lock().unwrap() = Some(began);
                        continue;
                    };
                    seq += 1;
                    let v = (i as i64 + 1) * 10_000_000 + seq;
                    let r = tokio::time::timeout(
                        Duration::from_secs(1),
                        cl.execute("INSERT INTO t(v) VALUES ($1)", &[&v]),
                    )
                    .await;
                    match r {
                        Ok(Ok(_)) => acks.lock().unwrap().push(Ack {
                            node: i,
                            value: v,
                            at: Instant::now(),
                        }),
                        // Refused (read-only) or timed out: reconnect next time.
                        _ => client = None,
                    }
                    *last_try.lock().unwrap() = Some(began);
                }
            }));
        }
        Writers {
            acks,
            stop,
            hold,
            held,
            tried,
            tasks,
        }
    }

    /// Has node `node`'s writer finished an attempt begun after `at`?
    fn tried_since(&self, node: usize, at: Instant) -> bool {
        self.tried[node].lock().unwrap().is_some_and(|t| t > at)
    }

    /// Wait until node `node` has acknowledged `n` writes.
    async fn wait_acks(&self, node: usize, n: usize) {
        eventually(
            Duration::from_secs(30),
            &format!("{n} writes acknowledged by node {node}"),
            || async { (self.acks().iter().filter(|a| a.node == node).count() >= n).then_some(()) },
        )
        .await;
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    fn last_of(&self, node: usize) -> Option<Ack> {
        self.acks().into_iter().rfind(|a| a.node == node)
    }

    fn first_of_after(&self, node: usize, after: Instant) -> Option<Ack> {
        self.acks()
            .into_iter()
            .find(|a| a.node == node && a.at > after)
    }

    async fn finish(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        self.acks.lock().unwrap().clone()
    }
}

async fn setup(c: &mut TestCluster) -> usize {
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    for i in (0..c.nodes.len()).filter(|&i| i != primary) {
        eventually(Duration::from_secs(20), "table replicated", || async {
            let cl = c.sql(i).await.ok()?;
            cl.query_opt("SELECT 1 FROM t LIMIT 1", &[]).await.ok()?;
            Some(())
        })
        .await;
    }
    primary
}

async fn has_value(c: &TestCluster, i: usize, v: i64) -> bool {
    let Ok(cl) = c.sql(i).await else { return false };
    matches!(
        cl.query_opt("SELECT 1 FROM t WHERE v = $1", &[&v]).await,
        Ok(Some(_))
    )
}

/// A node other than `old` answering `/primary` 200 (the old one may not
/// answer at all while frozen).
async fn new_primary(c: &TestCluster, old: usize, within: Duration) -> usize {
    eventually(within, "a new primary", || async {
        for i in (0..c.nodes.len()).filter(|&i| i != old) {
            if c.http_code(i, "/primary").await == 200 {
                return Some(i);
            }
        }
        None
    })
    .await
}

/// The fence's "deadline passed N ms ago" figure: PostgreSQL was stopped
/// `margin - N` ms before the lease (send time of the last renewal + ttl)
/// could end.
fn fence_lateness_ms(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("stopping PostgreSQL"))?;
    let rest = line.split("deadline passed ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// `pgpilot_fence_fired_total` in node `i`'s `/metrics` (docs/rest-api.md,
/// "GET /metrics"): the fence's record of its firings, which outlives the
/// daemon that was frozen or killed.
async fn fence_fired(c: &TestCluster, i: usize) -> Option<f64> {
    let text = reqwest::get(c.nodes[i].api("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("pgpilot_fence_fired_total{"))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 3 is the state; a zombie is dead.
    !stat
        .rsplit(')')
        .next()
        .is_some_and(|r| r.trim_start().starts_with('Z'))
}

/// SIGSTOP of the primary's daemon for 2×ttl, PostgreSQL left running: the
/// fence stops PostgreSQL before the lease can expire, a replica takes
/// over, and after SIGCONT the old node rejoins as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_daemon_is_fenced_before_its_lease_ends() {
    let mut c = TestCluster::new(3, Timing::default());
    let old = setup(&mut c).await;
    let w = Writers::start(&c);
    w.wait_acks(old, 20).await;
    let ttl = Duration::from_secs(c.timing.ttl);
    let frozen_at = Instant::now();
    c.signal(old, Signal::SIGSTOP);
    let new = new_primary(&c, old, Duration::from_secs(30)).await;
    let promoted_after = frozen_at.elapsed();
    // The fault lasts 2×ttl: its length is the scenario.
    let remaining = (2 * ttl).saturating_sub(frozen_at.elapsed());
    tokio::time::sleep(remaining).await;
    c.signal(old, Signal::SIGCONT);

    let last_old = w.last_of(old).expect("the old primary took writes");
    let first_new = eventually(
        Duration::from_secs(20),
        "a write acknowledged by the new primary",
        || async { w.first_of_after(new, frozen_at) },
    )
    .await;
    let log = c.nodes[old].fence_log();
    let late = fence_lateness_ms(&log);
    // Timing::fence_margin: a fixed 1 s.
    let margin_ms: u64 = 1000;
    eprintln!(
        "frozen daemon: last write on old primary {:?} after the freeze, new primary {} after {promoted_after:?}, \
         its first write {:?} after the freeze; fence fired {late:?} ms after lease-{margin_ms}ms, i.e. {:?} ms before the lease could end",
        last_old.at.saturating_duration_since(frozen_at),
        c.nodes[new].name,
        first_new.at.saturating_duration_since(frozen_at),
        late.map(|l| margin_ms as i64 - l as i64)
    );
    assert!(
        last_old.at < first_new.at,
        "old primary acknowledged {last_old:?} after the new one's first {first_new:?}"
    );
    assert!(log.contains("stopping PostgreSQL"), "fence log:\n{log}");
    let late = late.expect("fence lateness");
    assert!(late < margin_ms, "fence fired {late} ms late");

    let p = c.wait_healthy(BOOT).await;
    assert_eq!(p, new, "the frozen node must not take over again");
    // The thawed daemon shows what happened under it.
    eventually(
        Duration::from_secs(10),
        "the thawed node's /metrics counts one fence firing",
        || async { (fence_fired(&c, old).await? == 1.0).then_some(()) },
    )
    .await;
    let acks = w.finish().await;
    assert!(acks.iter().all(|a| a.node != old || a.at <= last_old.at));
}

/// kill -9 of the primary's daemon alone: the fence stops PostgreSQL before
/// the lease can end, a replica takes over, and the restarted daemon adopts
/// the same fence (one fence process) and rejoins as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_daemon_is_fenced_and_its_fence_adopted() {
    let mut c = TestCluster::new(3, Timing::default());
    let old = setup(&mut c).await;
    let w = Writers::start(&c);
    w.wait_acks(old, 20).await;
    let fences = c.nodes[old].fence_pids();
    assert_eq!(fences.len(), 1, "one fence on the primary: {fences:?}");
    let pm = c.nodes[old].postmaster_pid().expect("postmaster");
    let killed_at = Instant::now();
    c.kill_daemon(old).await;
    let new = new_primary(&c, old, Duration::from_secs(30)).await;
    let promoted_after = killed_at.elapsed();
    let first_new = eventually(
        Duration::from_secs(20),
        "a write acknowledged by the new primary",
        || async { w.first_of_after(new, killed_at) },
    )
    .await;
    let last_old = w.last_of(old).expect("the old primary took writes");
    assert!(!pid_alive(pm), "the old postmaster still runs");
    let log = c.nodes[old].fence_log();
    eprintln!(
        "dead daemon: last write on old primary {:?} after the kill, new primary after {promoted_after:?}, \
         its first write {:?}; fence: {:?} ms late on lease-margin",
        last_old.at.saturating_duration_since(killed_at),
        first_new.at.saturating_duration_since(killed_at),
        fence_lateness_ms(&log)
    );
    assert!(last_old.at < first_new.at, "{last_old:?} {first_new:?}");
    assert!(log.contains("stopping PostgreSQL"), "fence log:\n{log}");
    assert_eq!(c.nodes[old].fence_pids(), fences, "the fence survived");

    c.start(old);
    let p = c.wait_healthy(BOOT).await;
    assert_eq!(p, new);
    assert!(
        c.nodes[old].logged(events::FENCE_ADOPTED),
        "{}",
        c.nodes[old].log()
    );
    assert_eq!(
        c.nodes[old].fence_pids(),
        fences,
        "the restarted daemon adopted the fence instead of starting another"
    );
    assert_eq!(
        fence_fired(&c, old).await,
        Some(1.0),
        "the restarted daemon's /metrics counts the firing"
    );
    let acks = w.finish().await;
    assert_none_lost(&c, p, &acks).await;
}

/// kill -9 of the primary's daemon alone, restarted at once (systemd's
/// `Restart=`): the new daemon inherits its predecessor's DCS session from
/// the node's disk and keeps the leader key, as Patroni keeps it: no
/// failover, the same postmaster, and every write acknowledged before and
/// after is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_daemon_keeps_its_primary() {
    let mut c = TestCluster::new(3, Timing::default());
    let p = setup(&mut c).await;
    let w = Writers::start(&c);
    w.wait_acks(p, 20).await;
    let pm = c.nodes[p].postmaster_pid().expect("postmaster");
    c.kill_daemon(p).await;
    let restarted_at = Instant::now();
    c.start(p);
    eventually(
        Duration::from_secs(30),
        "the restarted daemon inherits its predecessor's session",
        || async { c.nodes[p].logged(events::SESSION_INHERITED).then_some(()) },
    )
    .await;
    // Past the old lease's end (ttl) and the fencing point: still primary.
    let ttl = Duration::from_secs(c.timing.ttl);
    // (`None` while the restarted daemon's API is not up yet.)
    while restarted_at.elapsed() < ttl + Duration::from_secs(2) {
        let now = c.primary().await;
        assert!(now.is_none_or(|i| i == p), "the primary changed: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(c.primary().await, Some(p));
    assert_eq!(
        c.nodes[p].postmaster_pid(),
        Some(pm),
        "PostgreSQL was stopped:\n{}",
        c.nodes[p].fence_log()
    );
    for i in (0..3).filter(|&i| i != p) {
        assert!(
            !c.nodes[i].logged(events::LOCK_ACQUIRED),
            "node {i} took the lock"
        );
    }
    w.wait_acks(p, 20).await;
    let acks = w.finish().await;
    assert_none_lost(&c, p, &acks).await;
}

/// SIGSTOP of the primary's postmaster and all its processes for 2×ttl: the
/// daemon stops renewing, fences it (SIGKILL of the group) and a replica
/// takes over; after SIGCONT the old primary acknowledges nothing and no
/// acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_postgres_is_killed_and_a_replica_takes_over() {
    let mut c = TestCluster::new(3, Timing::default());
    let old = setup(&mut c).await;
    let w = Writers::start(&c);
    w.wait_acks(old, 20).await;
    // Let the replicas catch up with every acknowledged write first:
    // asynchronous replication may lose the last ones otherwise, which is
    // not what this test is about.
    w.hold[old].store(true, Ordering::SeqCst);
    eventually(
        Duration::from_secs(10),
        "the old primary's writer holds",
        || async { w.held[old].load(Ordering::SeqCst).then_some(()) },
    )
    .await;
    let last_old = w.last_of(old).expect("the old primary took writes");
    for i in (0..3).filter(|&i| i != old) {
        eventually(Duration::from_secs(20), "replica caught up", || async {
            has_value(&c, i, last_old.value).await.then_some(())
        })
        .await;
    }
    let pm = c.nodes[old].postmaster_pid().expect("postmaster");
    // PostgreSQL's children call setsid(): the postmaster's process group
    // is the postmaster alone, so each child is stopped too.
    let frozen_at = Instant::now();
    kill(Pid::from_raw(pm), Signal::SIGSTOP).expect("SIGSTOP the postmaster");
    let children = pgpilot::postgres::postmaster::children_of(pm);
    for ch in &children {
        let _ = kill(Pid::from_raw(*ch), Signal::SIGSTOP);
    }
    assert!(!children.is_empty());
    w.hold[old].store(false, Ordering::SeqCst);
    let new = new_primary(&c, old, Duration::from_secs(30)).await;
    let promoted_after = frozen_at.elapsed();
    // The fault lasts 2×ttl: its length is the scenario.
    let remaining = (2 * Duration::from_secs(c.timing.ttl)).saturating_sub(frozen_at.elapsed());
    tokio::time::sleep(remaining).await;
    for p in children.iter().chain([&pm]) {
        let _ = kill(Pid::from_raw(*p), Signal::SIGCONT);
    }
    // Thawed: were any of it still alive, the old primary's writer would
    // get an insert acknowledged. Wait for that writer to finish an attempt
    // begun after the thaw, then check nothing was acknowledged.
    let thawed_at = Instant::now();
    eventually(
        Duration::from_secs(10),
        "the old primary's writer to try after the thaw",
        || async { w.tried_since(old, thawed_at).then_some(()) },
    )
    .await;
    // What was killed while stopped is gone once thawed; a child that only
    // notices its postmaster's death on waking gets up to 2 s for it.
    eventually(
        Duration::from_secs(2).saturating_sub(thawed_at.elapsed()),
        "the frozen PostgreSQL processes gone within 2 s of the thaw",
        || async { (!children.iter().chain([&pm]).any(|p| pid_alive(*p))).then_some(()) },
    )
    .await;
    assert!(!pid_alive(pm), "the frozen postmaster was not killed");
    for ch in &children {
        assert!(
            !pid_alive(*ch),
            "PostgreSQL child {ch} of the frozen primary survived"
        );
    }
    let after = w.acks();
    assert!(
        after.iter().all(|a| a.node != old || a.at < frozen_at),
        "the frozen primary acknowledged a write: {:?}",
        after.iter().rfind(|a| a.node == old)
    );
    eprintln!(
        "frozen PostgreSQL: new primary {} after {promoted_after:?}",
        c.nodes[new].name
    );
    assert!(
        c.nodes[old].log().contains("fencing it")
            || c.nodes[old].fence_log().contains("stopping PostgreSQL"),
        "{}",
        c.nodes[old].log()
    );

    let p = c.wait_healthy(BOOT).await;
    let acks = w.finish().await;
    let cl = c.sql(p).await.expect("connect to the primary");
    for a in &acks {
        let found = cl
            .query_opt("SELECT 1 FROM t WHERE v = $1", &[&a.value])
            .await
            .expect("query");
        assert!(found.is_some(), "acknowledged write lost: {a:?}");
    }
    eprintln!("{} acknowledged writes, none lost", acks.len());
}

/// A stalled HA cycle on the primary (4.5 s at ttl 6: its fencing point,
/// ttl - 1 s after the last renewal, passes during the stall) costs neither
/// the lease nor PostgreSQL: the keep-alive renews the lease every ttl/4 on
/// its own while the loop's last confirmation is younger than ttl/2, and
/// moves the fence's deadline with it. The stall comes from a test seam of
/// debug builds (`<data_dir>.stall`, see `debug_stall`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_cycle_keeps_the_lease_through_the_keepalive() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    // The fence holds an armed order: the lease is renewed and confirmed.
    eventually(Duration::from_secs(10), "an armed fence", || async {
        let ack = std::fs::read_to_string(c.nodes[primary].fence_dir().join("ack.json")).ok()?;
        let ack: serde_json::Value = serde_json::from_str(&ack).ok()?;
        (ack["armed"] == true).then_some(())
    })
    .await;
    let pm = c.nodes[primary].postmaster_pid().expect("postmaster");
    let stall = c.nodes[primary].dir.join("data.stall");
    std::fs::write(&stall, "4500").expect("write the stall file");
    eventually(Duration::from_secs(10), "the cycle to stall", || async {
        c.nodes[primary].logged(events::DEBUG_STALL).then_some(())
    })
    .await;
    // Through the stall and well past the fencing point it would have had:
    // ttl + 2 cycles of every node, the stalled one included (its cycles
    // after the stall are the ones that would see a lost lease).
    let all: Vec<usize> = (0..c.nodes.len()).collect();
    let k = usize::try_from(c.timing.ttl / c.timing.loop_wait + 2).expect("cycles");
    c.during_cycles(
        &all,
        k,
        Duration::from_secs(60),
        "the primary keeps its lease",
        || async {
            for i in (0..c.nodes.len()).filter(|&i| i != primary) {
                assert_ne!(
                    c.http_code(i, "/primary").await,
                    200,
                    "{} became primary during the stall",
                    c.nodes[i].name
                );
            }
        },
    )
    .await;
    assert_eq!(c.primary().await, Some(primary), "the primary changed");
    assert_eq!(
        c.nodes[primary].postmaster_pid(),
        Some(pm),
        "PostgreSQL was restarted"
    );
    assert!(pid_alive(pm), "the postmaster is gone");
    let fence_log = c.nodes[primary].fence_log();
    assert!(
        !fence_log.contains("stopping PostgreSQL"),
        "the fence fired:\n{fence_log}"
    );
    assert!(
        !c.nodes[primary].log().contains("lease ran out"),
        "{}",
        c.nodes[primary].log()
    );
    c.wait_healthy(BOOT).await;
}

/// How the primary's daemon is frozen.
#[derive(Debug, Clone, Copy)]
enum Freeze {
    /// The daemon and every process found by walking its descendants,
    /// except PostgreSQL.
    Tree,
    /// The daemon's process group (it leads its own, as under systemd).
    Group,
}

/// Every acknowledged write is on node `p`.
async fn assert_none_lost(c: &TestCluster, p: usize, acks: &[Ack]) {
    let cl = c.sql(p).await.expect("connect to the primary");
    let rows = cl.query("SELECT v FROM t", &[]).await.expect("select");
    let have: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let lost: Vec<&Ack> = acks.iter().filter(|a| !have.contains(&a.value)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}

/// Freeze the primary's daemon as `how` says for 2×ttl, PostgreSQL left
/// running: the old primary acknowledges nothing after the new primary's
/// first write, and no acknowledged write is lost.
async fn freeze_primary_daemon(c: &TestCluster, how: Freeze) {
    let old = c.wait_healthy(BOOT).await;
    let w = Writers::start(c);
    eventually(Duration::from_secs(10), "writes on the primary", || async {
        w.last_of(old)
    })
    .await;
    let fences = c.nodes[old].fence_pids();
    assert_eq!(fences.len(), 1, "one fence on the primary: {fences:?}");
    let ttl = Duration::from_secs(c.timing.ttl);
    let frozen_at = Instant::now();
    let stopped = match how {
        Freeze::Tree => c.freeze_tree(old),
        Freeze::Group => c.freeze_group(old),
    };
    // The fence must not be among what the freeze reached.
    let fence_frozen = fences.iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{f}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('T'))
        })
    });
    let new = new_primary(c, old, Duration::from_secs(30)).await;
    let promoted_after = frozen_at.elapsed();
    // The fault lasts 2×ttl: its length is the scenario.
    tokio::time::sleep((2 * ttl).saturating_sub(frozen_at.elapsed())).await;
    c.thaw(&stopped);
    let first_new = eventually(
        Duration::from_secs(20),
        "a write acknowledged by the new primary",
        || async { w.first_of_after(new, frozen_at) },
    )
    .await;
    let last_old = w.last_of(old).expect("the old primary took writes");
    let late: Vec<Ack> = w
        .acks()
        .into_iter()
        .filter(|a| a.node == old && a.at >= first_new.at)
        .collect();
    eprintln!(
        "{how:?} freeze ({} stopped, fence frozen: {fence_frozen}): last write on the old primary {:?} after the freeze, \
         new primary {} after {promoted_after:?}, its first write {:?}; {} writes acknowledged by the old primary after it",
        stopped.len(),
        last_old.at.saturating_duration_since(frozen_at),
        c.nodes[new].name,
        first_new.at.saturating_duration_since(frozen_at),
        late.len()
    );
    assert!(
        late.is_empty(),
        "{how:?} freeze: the old primary acknowledged {} writes after the new primary's first ({first_new:?}), e.g. {:?}",
        late.len(),
        late.first()
    );
    assert!(!fence_frozen, "{how:?} freeze stopped the fence");
    let log = c.nodes[old].fence_log();
    assert!(log.contains("stopping PostgreSQL"), "fence log:\n{log}");

    let p = c.wait_healthy(BOOT).await;
    assert_eq!(p, new, "the frozen node must not take over again");
    let acks = w.finish().await;
    assert_none_lost(c, p, &acks).await;
    eprintln!(
        "{how:?} freeze: {} acknowledged writes, none lost",
        acks.len()
    );
}

/// The fence shares nothing with its daemon's fate: it is not the daemon's
/// descendant, nor in its process group, so freezing the primary's daemon
/// with its whole process tree (PostgreSQL excepted), then with its process
/// group, for 2×ttl each leaves one writable primary at any time and loses
/// no acknowledged write. One cluster for both faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_daemon_tree_or_group_is_fenced() {
    let mut c = TestCluster::new(3, Timing::default());
    let p = setup(&mut c).await;
    eventually(
        Duration::from_secs(10),
        "a fence on the primary",
        || async { c.nodes[p].fence_pids().first().copied() },
    )
    .await;
    let daemon = c.nodes[p].daemon_pid().expect("daemon");
    for f in c.nodes[p].fence_pids() {
        let mut q = vec![daemon];
        while let Some(x) = q.pop() {
            let ch = pgpilot::postgres::postmaster::children_of(x);
            assert!(
                !ch.contains(&f),
                "the fence {f} is a descendant of daemon {daemon}"
            );
            q.extend(ch);
        }
        assert_ne!(
            nix::unistd::getpgid(Some(Pid::from_raw(f))).ok(),
            nix::unistd::getpgid(Some(Pid::from_raw(daemon))).ok(),
            "the fence shares the daemon's process group"
        );
    }
    freeze_primary_daemon(&c, Freeze::Tree).await;
    freeze_primary_daemon(&c, Freeze::Group).await;
}
