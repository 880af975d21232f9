//! The simulated cluster: nodes that each drive a real `pgpilot::ha::Node`
//! (the protocol's state and rules, as the LeaderElector drives it) on
//! facts gathered from a simulated DCS and PostgreSQL, carry its actions out
//! against them and report the results back, under a fault schedule drawn
//! from the seed. Only the I/O is simulated here; what a result means (the
//! lease, the keep-alive, the confirmation) is the node's. Invariants are
//! checked at every step (one step = `TICK` ms of virtual time).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgpilot::config::{SyncConfig, Tags, Timing};
use pgpilot::dcs::{Cluster, DcsError, MemberData, Status, keys};
use pgpilot::ha::{
    self, Action, ActionResult, DataDir, DcsView, Decision, EndFacts, FailsafeView, JobKind,
    JobOutcome, LocalView, Next, PeerReply, PeerStatus, PgFacts, PgRole, RewindView,
};

use pgpilot::dcs::SyncState;
use pgpilot::ha::rewind::{RewindReport, RewindTool};
use pgpilot::ha::sync::SyncStep;

use super::dcs::SimDcs;
use super::pg::{Data, Pg, compatible};
use super::rng::Rng;

pub const TICK: u64 = 100;
pub const TTL: u64 = 30_000;
pub const LOOP_WAIT: u64 = 10_000;
pub const RETRY_TIMEOUT: u64 = 10_000;
pub const MAX_LAG: u64 = 1 << 20;
/// The fence stops writes this long before the lease deadline the daemon
/// last computed.
pub const FENCE_MARGIN: u64 = 1_000;
pub const START: u64 = 1_000;
/// Faults start and heal before this; afterwards the cluster must settle.
pub const FAULT_END: u64 = START + 300_000;
pub const END: u64 = FAULT_END + 200_000;
/// After the last fault heals, one writable leader must exist within this.
pub const CONVERGE_BOUND: u64 = 120_000;

/// The simulated timing as `decide` sees it.
pub fn timing() -> Timing {
    Timing {
        ttl: Duration::from_millis(TTL),
        loop_wait: Duration::from_millis(LOOP_WAIT),
        retry_timeout: Duration::from_millis(RETRY_TIMEOUT),
    }
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Virtual milliseconds as an `Instant` (decide only compares Instants).
pub fn instant(ms: u64) -> Instant {
    base() + Duration::from_millis(ms)
}

/// An `Instant` of [`instant`] back as virtual milliseconds.
fn ms(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base()).as_millis()).unwrap_or(u64::MAX)
}

#[derive(Clone, Debug)]
pub enum FaultKind {
    /// The postmaster dies; the daemon lives.
    CrashPg,
    /// Daemon and postmaster die (kill -9, power loss); back after `down`.
    CrashNode { down: u64 },
    /// The daemon is frozen (SIGSTOP, GC, VM stall); PostgreSQL keeps
    /// running. `mid_cycle`: frozen between reading the DCS and acting.
    Pause { len: u64, mid_cycle: bool },
    /// No node reaches the DCS. `extend`: leases survive it (etcd quorum
    /// loss: a new etcd leader extends leases); otherwise they run out.
    DcsOutage { len: u64, extend: bool },
    /// One node cannot reach the DCS (still reaches its peers).
    Partition { len: u64 },
    /// One replica applies WAL far slower than the primary writes it.
    Slow { len: u64 },
}

#[derive(Clone, Debug)]
pub enum Target {
    /// Whoever holds the leader key when the fault fires (else node 0).
    Leader,
    /// The k-th node (by name) not holding the leader key then.
    Replica(usize),
    Node(usize),
}

#[derive(Clone, Debug)]
pub struct Fault {
    pub at: u64,
    pub target: Target,
    pub kind: FaultKind,
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Model the lease fence: PostgreSQL refuses writes once the lease
    /// deadline the daemon last computed, minus `FENCE_MARGIN`, has passed.
    pub fence: bool,
    pub verbose: bool,
    pub capture: bool,
    /// Replace the seeded schedule (scenario tests).
    pub faults: Option<Vec<Fault>>,
    pub nodes: Option<usize>,
    pub nofailover_node: Option<bool>,
    /// Feed `decide` a wrong fact on purpose, to show the checker notices.
    pub mutant: Option<Mutant>,
    /// Synchronous replication (docs/replication-modes.md): with a mode on,
    /// a write is acknowledged only once the standbys PostgreSQL waits for
    /// (`synchronous_standby_names`) have it, and no acknowledged write
    /// may be missing on a later primary.
    pub sync: SyncConfig,
}

/// Deliberate lies told to `decide` (checker self-tests only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutant {
    /// `maximum_lag_on_failover` = unlimited.
    NoLagLimit,
    /// Tags without `nofailover`.
    HideNofailover,
    /// The primary's sync facts count every picked standby as confirmed:
    /// the `sync` key names a standby before PostgreSQL confirms it has
    /// caught up.
    EagerSyncKey,
    /// Standbys decide with synchronous mode off: they ignore the `sync`
    /// key, so a standby that is not synchronous may promote.
    IgnoreSyncKey,
    /// In quorum mode, standbys decide as with `synchronous_mode: true`:
    /// any voter races without counting votes, so one that lacks writes
    /// acknowledged by another voter may promote.
    IgnoreVotes,
}

impl SimConfig {
    pub fn seed(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            fence: true,
            // SIM_VERBOSE=1 prints every step of scenario tests too.
            verbose: std::env::var("SIM_VERBOSE").is_ok_and(|v| v == "1"),
            capture: false,
            faults: None,
            nodes: None,
            nofailover_node: None,
            mutant: None,
            sync: SyncConfig::default(),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub nodes: usize,
    pub faults: usize,
    pub writes: u64,
    /// Writes a failover dropped: acknowledged ones with asynchronous
    /// replication; with a synchronous mode only unacknowledged ones
    /// (invariant 6 fails the run otherwise).
    pub lost_writes: u64,
    pub promotions: u64,
    /// Virtual ms from the end of faults to one writable leader.
    pub converged_after: u64,
    pub trace: Vec<String>,
}

/// Which invariant broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Two nodes accept writes, each believing it holds the lease.
    SplitBrain,
    /// A nofailover node, or one beyond the lag limit, promoted.
    BadPromotion,
    /// A node's timeline went back without a rebuild.
    TimelineBack,
    /// A node whose WAL left the cluster's history accepts writes.
    Diverged,
    /// Two promotions created the same timeline and both took writes.
    TimelineCollision,
    /// Diverged or TimelineCollision by a node that won a leader race
    /// while its timeline was behind the newest one in the cluster:
    /// the known gap (no timeline check in the race; docs/architecture.md).
    StaleTimelineRace,
    /// No single writable leader after the faults ended.
    NoLeader,
    /// A write acknowledged under synchronous replication is missing on a
    /// primary that accepts writes.
    LostAckedWrite,
    /// Anything the model does not expect (a fatal stop, a failsafe action).
    Unexpected,
}

#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub at: u64,
    pub kind: Kind,
    pub what: String,
    pub trace: Vec<String>,
}

#[derive(Clone, Debug)]
enum JobSpec {
    Bootstrap,
    Clone(String),
    Reinit(String),
    /// pg_rewind from that member: the node keeps its data directory and
    /// ends up with the source's history (common prefix + the source's WAL).
    Rewind(String),
    StartPrimary,
    StartReplica,
    Promote,
}

#[derive(Clone, Debug)]
struct Job {
    spec: JobSpec,
    kind: JobKind,
    done_at: u64,
}

/// What a cycle gathered from the supervisor at its start.
#[derive(Clone)]
struct Snap {
    facts: PgFacts,
    data_dir: DataDir,
    busy: Option<JobKind>,
    outcome: Option<JobOutcome>,
    started: u64,
}

/// A cycle waiting on something: a DCS read that fails after
/// `retry_timeout`, or a daemon frozen after it decided.
struct Pending {
    due: u64,
    snap: Snap,
    decided: Option<(DcsView, Decision)>,
}

struct Node {
    name: String,
    tags: Tags,
    pg: Pg,
    job: Option<Job>,
    outcome: Option<JobOutcome>,
    down_until: Option<u64>,
    paused_until: u64,
    partitioned_until: u64,
    slow_until: u64,
    next_cycle: u64,
    pending: Option<Pending>,
    /// The protocol's state, `ha::Node` itself: the lease, the HA loop's
    /// confirmation, the keep-alive's bookkeeping, the members seen, the
    /// last published status.
    ha: ha::Node,
    /// The DCS client's lease id.
    session: Option<i64>,
    /// The next tick of the lease keep-alive (every ttl/4).
    next_keepalive: u64,
    /// Data directories this node has had (bootstrap, clone, reinit).
    rebuilds: u64,
    seen_timeline: Option<(u64, u64)>,
    /// This node's last promotion started from a timeline older than the
    /// newest one in the cluster.
    stale_promotion: bool,
    /// Synchronous mode: writes this primary took that wait for their
    /// standbys, as (index in its WAL, entry), oldest first.
    unacked: std::collections::VecDeque<(usize, u64)>,
}

impl Node {
    /// The lease deadline in virtual milliseconds.
    fn lease_deadline(&self) -> Option<u64> {
        self.ha.lease_deadline().map(ms)
    }
}

pub struct Sim {
    cfg: SimConfig,
    rng: Rng,
    now: u64,
    dcs: SimDcs,
    dcs_down_until: u64,
    dcs_extend: bool,
    nodes: Vec<Node>,
    faults: Vec<Fault>,
    /// The WAL of the latest primary that accepted a write: every writer
    /// must be on it (prefix either way).
    ref_log: Vec<u64>,
    /// timeline -> the promotion that created the one writes happened on.
    timeline_origin: std::collections::BTreeMap<u64, u64>,
    next_id: u64,
    /// The newest timeline any promotion created.
    max_timeline: u64,
    report: Report,
    /// Synchronous mode: the newest acknowledged write (index, entry); the
    /// WAL is a hash chain, so a node holding it holds every earlier one.
    last_ack: Option<(usize, u64)>,
    converged_at: Option<u64>,
    last_summary: String,
}

type Res = Result<(), (Kind, String)>;

impl Sim {
    pub fn run(cfg: SimConfig) -> Result<Report, Failure> {
        let mut sim = Sim::new(cfg);
        let res = sim.run_all();
        let trace = std::mem::take(&mut sim.report.trace);
        match res {
            Ok(()) => Ok(Report {
                trace,
                ..sim.report
            }),
            Err((kind, what)) => Err(Failure {
                seed: sim.cfg.seed,
                at: sim.now,
                kind,
                what,
                trace,
            }),
        }
    }

    fn new(cfg: SimConfig) -> Sim {
        let mut rng = Rng::new(cfg.seed);
        let n = cfg.nodes.unwrap_or_else(|| rng.range(3, 5) as usize);
        let nofailover = cfg.nofailover_node.unwrap_or_else(|| rng.chance(30));
        let nodes = (0..n)
            .map(|i| Node {
                name: format!("n{i}"),
                tags: Tags {
                    nofailover: nofailover && i == n - 1,
                    ..Tags::default()
                },
                pg: Pg::default(),
                job: None,
                outcome: None,
                down_until: None,
                paused_until: 0,
                partitioned_until: 0,
                slow_until: 0,
                next_cycle: START + rng.range(0, 20) * TICK,
                pending: None,
                ha: ha::Node::new(&format!("n{i}")),
                session: None,
                next_keepalive: START,

                rebuilds: 0,
                seen_timeline: None,
                stale_promotion: false,
                unacked: Default::default(),
            })
            .collect();
        let faults = match &cfg.faults {
            Some(f) => f.clone(),
            None => random_faults(&mut rng, n),
        };
        let report = Report {
            nodes: n,
            faults: faults.len(),
            ..Report::default()
        };
        Sim {
            cfg,
            rng,
            now: START,
            dcs: SimDcs::default(),
            dcs_down_until: 0,
            dcs_extend: false,
            nodes,
            faults,
            ref_log: Vec::new(),
            timeline_origin: Default::default(),
            next_id: 1,
            max_timeline: 1,
            report,
            last_ack: None,
            converged_at: None,
            last_summary: String::new(),
        }
    }

    fn tracing(&self) -> bool {
        self.cfg.verbose || self.cfg.capture
    }

    fn log(&mut self, line: String) {
        let line = format!("{:>8.1}s {line}", self.now as f64 / 1000.0);
        if self.cfg.verbose {
            println!("{line}");
        }
        if self.cfg.capture {
            self.report.trace.push(line);
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn run_all(&mut self) -> Res {
        if self.tracing() {
            let tags: Vec<String> = self
                .nodes
                .iter()
                .map(|n| {
                    format!(
                        "{}{}",
                        n.name,
                        if n.tags.nofailover {
                            "(nofailover)"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            let faults = format!("{:?}", self.faults);
            self.log(format!(
                "seed {} fence={} nodes {} faults {faults}",
                self.cfg.seed,
                self.cfg.fence,
                tags.join(",")
            ));
        }
        while self.now < END {
            self.step()?;
            self.now += TICK;
        }
        if !self.one_leader() {
            return Err((
                Kind::NoLeader,
                "no single writable leader at the end of the run".into(),
            ));
        }
        Ok(())
    }

    fn step(&mut self) -> Res {
        self.fire_faults();
        self.heal();
        if self.dcs_up() {
            let gone = self.dcs.expire(self.now);
            if !gone.is_empty() {
                if self.tracing() {
                    self.log(format!("dcs: lease expired, keys gone: {gone:?}"));
                }
                if gone.iter().any(|k| k == keys::LEADER) {
                    self.wake_all();
                }
            }
        }
        for i in 0..self.nodes.len() {
            self.keepalive_step(i);
            self.fence_step(i);
        }
        for i in 0..self.nodes.len() {
            self.finish_job(i);
        }
        for i in 0..self.nodes.len() {
            self.replicate(i);
        }
        for i in 0..self.nodes.len() {
            self.acknowledge(i);
        }
        for i in 0..self.nodes.len() {
            self.client_write(i)?;
        }
        let off = self.rng.range(0, self.nodes.len() as u64 - 1) as usize;
        for k in 0..self.nodes.len() {
            let i = (k + off) % self.nodes.len();
            self.cycle_if_due(i)?;
        }
        self.check()?;
        if self.tracing() {
            self.summary();
        }
        Ok(())
    }

    // ---------------------------------------------------------------- faults

    fn fire_faults(&mut self) {
        let due: Vec<Fault> = self
            .faults
            .iter()
            .filter(|f| f.at > self.now.saturating_sub(TICK) && f.at <= self.now)
            .cloned()
            .collect();
        for f in due {
            let i = match f.target {
                Target::Node(i) => i,
                Target::Replica(k) => {
                    let leader = self.dcs.leader().map(str::to_owned);
                    (0..self.nodes.len())
                        .filter(|&j| leader.as_deref() != Some(self.nodes[j].name.as_str()))
                        .nth(k)
                        .unwrap_or(0)
                }
                Target::Leader => self.dcs.leader().and_then(|l| self.index(l)).unwrap_or(0),
            };
            let now = self.now;
            if self.tracing() {
                self.log(format!("FAULT {:?} on {}", f.kind, self.nodes[i].name));
            }
            match f.kind {
                FaultKind::CrashPg => self.nodes[i].pg.stop(),
                FaultKind::CrashNode { down } => {
                    let n = &mut self.nodes[i];
                    n.pg.stop();
                    n.job = None;
                    n.outcome = None;
                    n.pending = None;
                    // A restarted daemon starts from nothing, and PostgreSQL
                    // with the configured synchronous_standby_names (empty):
                    // the managed value lives in the daemon's memory
                    // (docs/replication-modes.md).
                    n.ha = ha::Node::new(&n.name);
                    n.pg.set_sync_names("");
                    n.session = None;
                    n.paused_until = 0;
                    n.down_until = Some(now + down);
                }
                FaultKind::Pause { len, mid_cycle } => {
                    if self.nodes[i].down_until.is_some() {
                        continue;
                    }
                    if mid_cycle && self.nodes[i].pending.is_none() && self.dcs_reachable(i) {
                        // Read and decide now, act after the freeze.
                        let snap = self.snapshot(i);
                        let view = DcsView::Ok(self.dcs.load());
                        let facts = self.sync_facts(i, &snap, &view);
                        let local = self.local_view(i, &snap, &view, facts);
                        let d = self.nodes[i].ha.decide(&view, local, instant(now));
                        self.trace_decision(i, &d);
                        self.nodes[i].pending = Some(Pending {
                            due: now + len,
                            snap,
                            decided: Some((view, d)),
                        });
                    }
                    let n = &mut self.nodes[i];
                    n.paused_until = n.paused_until.max(now + len);
                }
                FaultKind::DcsOutage { len, extend } => {
                    self.dcs_down_until = self.dcs_down_until.max(now + len);
                    self.dcs_extend = extend;
                }
                FaultKind::Partition { len } => {
                    let n = &mut self.nodes[i];
                    n.partitioned_until = n.partitioned_until.max(now + len);
                }
                FaultKind::Slow { len } => {
                    let n = &mut self.nodes[i];
                    n.slow_until = n.slow_until.max(now + len);
                }
            }
        }
    }

    fn heal(&mut self) {
        let now = self.now;
        if self.dcs_down_until != 0 && self.dcs_down_until <= now {
            self.dcs_down_until = 0;
            if self.dcs_extend {
                self.dcs.extend_all(now, TTL);
            }
            if self.tracing() {
                self.log(format!("dcs back (leases extended: {})", self.dcs_extend));
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].down_until.is_some_and(|t| t <= now) {
                self.nodes[i].down_until = None;
                self.nodes[i].next_cycle = now;
                if self.tracing() {
                    self.log(format!("{} daemon restarted", self.nodes[i].name));
                }
            }
        }
    }

    fn dcs_up(&self) -> bool {
        self.dcs_down_until == 0
    }

    fn dcs_reachable(&self, i: usize) -> bool {
        self.dcs_up() && self.nodes[i].partitioned_until <= self.now
    }

    fn alive(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.down_until.is_none() && n.paused_until <= self.now
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn wake_all(&mut self) {
        // The DcsWatcher: a changed leader key starts a cycle at once.
        for i in 0..self.nodes.len() {
            if self.alive(i) && self.dcs_reachable(i) {
                let n = &mut self.nodes[i];
                n.next_cycle = n.next_cycle.min(self.now + TICK);
            }
        }
    }

    // ------------------------------------------------------------ PostgreSQL

    /// The leader's own keep-alive (every ttl/4) as the node says
    /// (`ha::Node::tick`): only a live daemon that reaches the DCS, only on
    /// a confirmation younger than ttl/2, and it never grants a lease.
    fn keepalive_step(&mut self, i: usize) {
        let now = self.now;
        if self.nodes[i].next_keepalive > now || !self.alive(i) || !self.dcs_reachable(i) {
            return;
        }
        let t = timing();
        self.nodes[i].next_keepalive = now + TTL / 4;
        let Some(ticket) = self.nodes[i].ha.tick(instant(now), false, &t) else {
            return;
        };
        // Answered at once: the virtual DCS has no latency.
        let answer = if self.dcs.renew(self.nodes[i].session, now, TTL) {
            ha::lease::KeepaliveAnswer::Alive {
                until: instant(now + TTL),
            }
        } else {
            ha::lease::KeepaliveAnswer::Gone
        };
        self.nodes[i].ha.keepalive_answered(ticket, answer, &t);
    }

    /// The fence process takes the last step: at the fencing point of the
    /// lease the daemon last computed (frozen or not, cut off or not), it
    /// stops a PostgreSQL that runs as primary (immediate shutdown), so
    /// peers see it stopped and may race at once.
    fn fence_step(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        if self.cfg.fence
            && n.down_until.is_none()
            && n.pg.is_primary()
            && n.lease_deadline().is_some_and(|d| now + FENCE_MARGIN >= d)
        {
            n.pg.stop();
            if self.tracing() {
                self.log(format!(
                    "{}: fence stops PostgreSQL at the fencing point",
                    self.nodes[i].name
                ));
            }
        }
    }

    /// PostgreSQL accepts writes (the fence, when modelled, included).
    fn writable(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.pg.is_primary()
            && (!self.cfg.fence
                || n.lease_deadline()
                    .is_some_and(|d| self.now + FENCE_MARGIN < d))
    }

    fn replicate(&mut self, i: usize) {
        let n = &self.nodes[i];
        if !(n.pg.running && n.pg.answering && !n.pg.primary) {
            return;
        }
        let Some(j) = n.pg.following.as_deref().and_then(|u| self.index(u)) else {
            return;
        };
        let up = &self.nodes[j].pg;
        let (Some(u), Some(r)) = (&up.data, &n.pg.data) else {
            return;
        };
        if !(up.running && up.answering) || u.sysid != r.sysid || u.timeline < r.timeline {
            return;
        }
        if r.log.len() > u.log.len() || !compatible(&r.log, &u.log) {
            return; // diverged (or ahead): streaming fails until rewind/reinit
        }
        let want = u.log.len() - r.log.len();
        let take = if self.nodes[i].slow_until > self.now {
            usize::from(self.rng.chance(10)).min(want)
        } else {
            want.min(200)
        };
        let add: Vec<u64> = u.log[r.log.len()..r.log.len() + take].to_vec();
        let (utl, uorigin) = (u.timeline, u.origin);
        let r = self.nodes[i].pg.data.as_mut().unwrap();
        r.log.extend(add);
        if utl > r.timeline {
            r.timeline = utl;
            r.origin = uorigin;
        }
    }

    /// A client writes to every node that accepts writes.
    fn client_write(&mut self, i: usize) -> Res {
        if !self.writable(i) {
            return Ok(());
        }
        let id = self.id();
        let name = self.nodes[i].name.clone();
        let stale = self.nodes[i].stale_promotion;
        let d = self.nodes[i].pg.data.as_mut().unwrap();
        if !compatible(&d.log, &self.ref_log) {
            let kind = if stale {
                Kind::StaleTimelineRace
            } else {
                Kind::Diverged
            };
            return Err((
                kind,
                format!(
                    "diverged node {name} accepts writes: its WAL (timeline {}, {} writes) is not on the history of the last primary ({} writes)",
                    d.timeline,
                    d.log.len(),
                    self.ref_log.len()
                ),
            ));
        }
        let origin = *self.timeline_origin.entry(d.timeline).or_insert(d.origin);
        if origin != d.origin {
            let kind = if stale {
                Kind::StaleTimelineRace
            } else {
                Kind::TimelineCollision
            };
            return Err((
                kind,
                format!(
                    "timeline collision: {name} writes on timeline {} created by another promotion",
                    d.timeline
                ),
            ));
        }
        if d.log.len() < self.ref_log.len() {
            self.report.lost_writes += (self.ref_log.len() - d.log.len()) as u64;
            self.ref_log.truncate(d.log.len());
        }
        d.append(id);
        let entry = (d.log.len() - 1, d.log[d.log.len() - 1]);
        let have = self.ref_log.len();
        self.ref_log.extend_from_slice(&d.log[have..]);
        if self.cfg.sync.enabled() {
            self.nodes[i].unacked.push_back(entry);
        } else {
            self.report.writes += 1;
        }
        Ok(())
    }

    /// Node `j` streams from node `i` now (as `replicate` would copy).
    fn streams_from(&self, j: usize, i: usize) -> bool {
        let (n, up) = (&self.nodes[j].pg, &self.nodes[i].pg);
        if !(n.running && n.answering && !n.primary && up.running && up.answering)
            || n.following.as_deref() != Some(self.nodes[i].name.as_str())
        {
            return false;
        }
        let (Some(u), Some(r)) = (&up.data, &n.data) else {
            return false;
        };
        u.sysid == r.sysid
            && u.timeline >= r.timeline
            && r.log.len() <= u.log.len()
            && compatible(&r.log, &u.log)
    }

    /// `pg_stat_replication` of primary `i`: its streaming standbys, their
    /// flush position and `sync_state` as PostgreSQL derives it from
    /// `synchronous_standby_names` (`FIRST n`: the first n streaming
    /// standbys listed are `sync`, the other listed `potential`; `ANY n`:
    /// every listed one `quorum`; unlisted `async`).
    fn replication_rows(&self, i: usize) -> Vec<ha::sync::ReplicaRow> {
        let names = &self.nodes[i].pg.sync_parsed;
        let streaming: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != i && self.streams_from(j, i))
            .collect();
        let sync = self.sync_standbys(names, &streaming);
        streaming
            .iter()
            .map(|&j| {
                let name = &self.nodes[j].name;
                let state = if names.quorum == Some(true) && names.lists(name) {
                    "quorum"
                } else if sync.contains(&j) {
                    "sync"
                } else if names.lists(name) || names.has_star {
                    "potential"
                } else {
                    "async"
                };
                ha::sync::ReplicaRow {
                    name: name.clone(),
                    sync_state: state.into(),
                    lsn: self.nodes[j].pg.data.as_ref().map(Data::lsn),
                }
            })
            .collect()
    }

    /// `FIRST n`: the first `num` streaming standbys in list order (`*`
    /// matching any), the ones a commit waits for.
    fn sync_standbys(
        &self,
        names: &ha::sync_names::StandbyNames,
        streaming: &[usize],
    ) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for m in &names.members {
            if let Some(&j) = streaming
                .iter()
                .find(|&&j| self.nodes[j].name.eq_ignore_ascii_case(m))
                && !out.contains(&j)
            {
                out.push(j);
            }
        }
        if names.has_star {
            for &j in streaming {
                if !out.contains(&j) {
                    out.push(j);
                }
            }
        }
        out.truncate(names.num as usize);
        out
    }

    /// Synchronous commit on primary `i`: its waiting writes are
    /// acknowledged, oldest first, once the standbys PostgreSQL waits for
    /// have flushed them (at once with an empty list: asynchronous). A
    /// standby streaming from it holds a prefix of its WAL, so its length
    /// says which writes it has. A primary that stopped never acknowledges
    /// what it still held.
    fn acknowledge(&mut self, i: usize) {
        let Some(&(first, _)) = self.nodes[i].unacked.front() else {
            return;
        };
        if !self.nodes[i].pg.is_primary() {
            self.nodes[i].unacked.clear();
            return;
        }
        let flushed = self.sync_flushed(i);
        if first >= flushed {
            return;
        }
        while let Some(&(idx, entry)) = self.nodes[i].unacked.front() {
            if idx >= flushed {
                break;
            }
            self.nodes[i].unacked.pop_front();
            self.last_ack = Some((idx, entry));
            self.report.writes += 1;
        }
    }

    /// How many of primary `i`'s writes its synchronous standbys have
    /// flushed: `FIRST n`, the least of the first `n` streaming standbys
    /// listed (none if fewer stream); `ANY n`, the `n`-th best of those
    /// listed; everything with an empty list.
    fn sync_flushed(&self, i: usize) -> usize {
        let names = &self.nodes[i].pg.sync_parsed;
        if names.quorum.is_none() {
            return usize::MAX;
        }
        let need = names.num.max(1) as usize;
        let streaming: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != i && self.streams_from(j, i))
            .collect();
        let waited: Vec<usize> = if names.quorum == Some(true) {
            streaming
                .into_iter()
                .filter(|&j| names.has_star || names.lists(&self.nodes[j].name))
                .collect()
        } else {
            self.sync_standbys(names, &streaming)
        };
        let mut lens: Vec<usize> = waited
            .iter()
            .map(|&j| self.nodes[j].pg.data.as_ref().map_or(0, |d| d.log.len()))
            .collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        lens.get(need - 1).copied().unwrap_or(0)
    }

    // ------------------------------------------------------------- the cycle

    fn cycle_if_due(&mut self, i: usize) -> Res {
        if !self.alive(i) {
            return Ok(());
        }
        if let Some(p) = &self.nodes[i].pending {
            if p.due <= self.now {
                let p = self.nodes[i].pending.take().unwrap();
                let (view, decided) = match p.decided {
                    Some((v, d)) => (v, Some(d)),
                    None => (
                        DcsView::Failed(DcsError::Unreachable("simulated".into())),
                        None,
                    ),
                };
                return self.finish_cycle(i, p.snap, view, decided);
            }
            return Ok(());
        }
        if self.nodes[i].next_cycle > self.now {
            return Ok(());
        }
        let snap = self.snapshot(i);
        if !self.dcs_reachable(i) {
            // The read fails after retry_timeout.
            self.nodes[i].pending = Some(Pending {
                due: self.now + RETRY_TIMEOUT,
                snap,
                decided: None,
            });
            return Ok(());
        }
        let view = DcsView::Ok(self.dcs.load());
        self.finish_cycle(i, snap, view, None)
    }

    /// A cycle starts: what it gathers from the supervisor.
    fn snapshot(&mut self, i: usize) -> Snap {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.ha.start_cycle(instant(now));
        let pg = &n.pg;
        Snap {
            facts: PgFacts {
                running: pg.running,
                role: pg.role(),
                lsn: pg
                    .data
                    .as_ref()
                    .filter(|_| pg.role().is_some())
                    .map(Data::lsn),
                timeline: pg
                    .data
                    .as_ref()
                    .filter(|_| pg.role().is_some())
                    .map(|d| d.timeline),
                following: pg
                    .following
                    .clone()
                    .filter(|_| pg.role() == Some(PgRole::Replica)),
            },
            data_dir: match &pg.data {
                None => DataDir::Empty,
                Some(d) => DataDir::Initialized {
                    sysid: d.sysid.to_string(),
                    was_primary: d.was_primary,
                },
            },
            busy: n.job.as_ref().map(|j| j.kind),
            outcome: n.outcome.take(),
            started: now,
        }
    }

    fn local_view(
        &self,
        i: usize,
        snap: &Snap,
        view: &DcsView,
        sync_facts: ha::sync::SyncFacts,
    ) -> LocalView {
        let n = &self.nodes[i];
        let mut peers = Vec::new();
        if let DcsView::Ok(c) = view {
            for name in
                n.ha.peers_to_ask(c, &snap.facts, false)
                    .into_iter()
                    .map(|p| p.name)
            {
                let reply = self.index(&name).filter(|&j| self.alive(j)).map(|j| {
                    let p = &self.nodes[j].pg;
                    PeerReply {
                        role: if p.is_primary() {
                            PgRole::Primary
                        } else {
                            PgRole::Replica
                        },
                        running: p.role().is_some(),
                        timeline: p.data.as_ref().map(|d| d.timeline),
                        lsn: p
                            .data
                            .as_ref()
                            .filter(|_| p.role().is_some())
                            .map(Data::lsn),
                        tags: self.nodes[j].tags.clone(),
                        watchdog_failed: false,
                    }
                });
                peers.push(PeerStatus {
                    name: name.clone(),
                    reply,
                });
            }
        }
        LocalView {
            name: n.name.clone(),
            tags: Tags {
                nofailover: n.tags.nofailover && self.cfg.mutant != Some(Mutant::HideNofailover),
                ..n.tags.clone()
            },
            timing: timing(),
            sync: match self.cfg.mutant {
                Some(Mutant::IgnoreSyncKey) if !snap.facts.is_primary() => SyncConfig::default(),
                Some(Mutant::IgnoreVotes) if !snap.facts.is_primary() => SyncConfig {
                    mode: pgpilot::config::SyncMode::On,
                    ..self.cfg.sync
                },
                _ => self.cfg.sync,
            },
            sync_facts,
            maximum_lag_on_failover: if self.cfg.mutant == Some(Mutant::NoLagLimit) {
                u64::MAX
            } else {
                MAX_LAG
            },
            primary_start_timeout: std::time::Duration::from_secs(300),
            rejoin_pending: false,
            starting_primary_for: None,
            can_bootstrap: true,
            data_dir: snap.data_dir.clone(),
            pg: snap.facts.clone(),
            busy: snap.busy,
            outcome: snap.outcome.clone(),
            // The node's (`ha::Node::decide`).
            lease_deadline: None,
            // The modelled fence stops PostgreSQL at the fencing point of
            // the lease the daemon last computed (`fence_step`).
            fence_armed: n
                .lease_deadline()
                .filter(|_| self.cfg.fence)
                .map(|d| instant(d.saturating_sub(FENCE_MARGIN))),
            peers,
            // No daemon of the same name is modelled.
            leader_key_foreign: false,
            failsafe: FailsafeView::default(),
            // The simulated config key is never lost.
            config_backup: false,
            // No restore-from-backup replica method is modelled.
            can_clone_without_leader: false,
            // No switchover requests are modelled.
            switchover: Default::default(),
            rewind: RewindView {
                enabled: true,
                // A failed rewind rebuilds the node, so that the "one leader
                // after the faults" invariant does not wait for an operator.
                remove_on_failure: true,
                remove_on_diverged: false,
                // `ha::Node` keeps it (`ha::rewind`).
                failed: false,
            },
            // Pause mode is not modelled.
            paused: false,
            // No watchdog device is modelled (the fence plays its part).
            watchdog: Default::default(),
            // Standby clusters are not modelled.
            standby_cluster: None,
        }
    }

    fn trace_decision(&mut self, i: usize, d: &Decision) {
        if self.nodes[i].ha.is_repeat(d) {
            return;
        }
        if self.tracing() {
            let acts: Vec<String> = d.actions.iter().map(ToString::to_string).collect();
            self.log(format!(
                "{}: {} -> [{}]",
                self.nodes[i].name,
                d.reason,
                acts.join(", ")
            ));
        }
    }

    fn finish_cycle(
        &mut self,
        i: usize,
        snap: Snap,
        view: DcsView,
        decided: Option<Decision>,
    ) -> Res {
        let decision = match decided {
            Some(d) => d,
            None => {
                let facts = self.sync_facts(i, &snap, &view);
                let local = self.local_view(i, &snap, &view, facts);
                let d = self.nodes[i].ha.decide(&view, local, instant(self.now));
                self.trace_decision(i, &d);
                d
            }
        };
        let cluster = match view {
            DcsView::Ok(c) => Some(c),
            DcsView::Failed(_) => None,
        };
        for action in &decision.actions {
            let result = self.execute(i, action, cluster.as_ref(), &snap)?;
            let step = self.nodes[i].ha.action_done(action, result, timing().ttl);
            match step.next {
                Next::Continue => {}
                Next::Rerun | Next::Fatal(_) => break,
                Next::Stop(why) => {
                    if self.tracing() {
                        self.log(format!("{}: {action} failed: {why}", self.nodes[i].name));
                    }
                    break;
                }
            }
        }
        self.settle_names(i);
        if cluster.is_some() && self.dcs_reachable(i) {
            let data = self.member_data(i, &snap);
            let (now, name) = (self.now, self.nodes[i].name.clone());
            let lease = self.dcs.keepalive(self.nodes[i].session, now, TTL);
            self.nodes[i].session = Some(lease);
            // Touching the member does not move the leader's deadline.
            self.dcs.put(&keys::member(&name), &data.to_json(), lease);
        }
        // The fence is modelled from the lease (`fence_step`) and no
        // watchdog is: the node's orders are not needed.
        let end = self.nodes[i].ha.finish_cycle(
            EndFacts {
                pg: &snap.facts,
                busy: snap.busy,
                paused: false,
                cluster: cluster.as_ref(),
            },
            instant(self.now),
        );
        let n = &mut self.nodes[i];
        n.next_cycle = if end.rerun_now {
            self.now + TICK
        } else {
            (snap.started + LOOP_WAIT).max(self.now + TICK)
        };
        Ok(())
    }

    /// The primary's sync facts this cycle, as the LeaderElector gathers
    /// them: its `pg_stat_replication` and `synchronous_standby_names`.
    fn sync_facts(&mut self, i: usize, snap: &Snap, view: &DcsView) -> ha::sync::SyncFacts {
        let DcsView::Ok(c) = view else {
            return Default::default();
        };
        if !snap.facts.is_primary() {
            return Default::default();
        }
        let rows = self.replication_rows(i);
        let lsn = snap.facts.lsn.unwrap_or(0);
        let cfg = self.cfg.sync;
        let n = &mut self.nodes[i];
        let names = n.pg.sync_names.clone();
        let mut facts = n.ha.sync_facts(&cfg, c, &rows, &names, lsn);
        if self.cfg.mutant == Some(Mutant::EagerSyncKey) {
            facts.candidates.confirmed = facts.candidates.active.clone();
        }
        facts
    }

    /// `sync_steps::settle`: a node that does not lead runs with no
    /// synchronous standbys while a mode is on.
    fn settle_names(&mut self, i: usize) {
        let leads = self.nodes[i].ha.is_leader(instant(self.now));
        let n = &mut self.nodes[i];
        if self.cfg.sync.enabled() && !leads && !n.pg.is_primary() {
            n.pg.set_sync_names("");
        }
    }

    fn member_data(&self, i: usize, snap: &Snap) -> MemberData {
        let n = &self.nodes[i];
        let host = format!("10.0.0.{}", i + 1);
        MemberData {
            conn_url: format!("postgres://{host}:5432/postgres"),
            api_url: format!("http://{host}:8008/patroni"),
            state: if snap.facts.role.is_some() {
                "running"
            } else if snap.facts.running {
                "starting"
            } else {
                "stopped"
            }
            .into(),
            role: match (snap.facts.role, &snap.data_dir) {
                (Some(PgRole::Primary), _) => "primary",
                (None, DataDir::Empty) => "uninitialized",
                _ => "replica",
            }
            .into(),
            version: pgpilot::PATRONI_COMPAT_VERSION.into(),
            xlog_location: snap.facts.lsn,
            timeline: snap.facts.timeline,
            tags: n.tags.clone(),
            ..MemberData::default()
        }
    }

    /// Carry one action out against the simulated DCS and PostgreSQL and
    /// say how it went, as the LeaderElector's `execute` does; what that
    /// means is the node's (`ha::Node::action_done`).
    fn execute(
        &mut self,
        i: usize,
        action: &Action,
        cluster: Option<&Cluster>,
        snap: &Snap,
    ) -> Result<ActionResult, (Kind, String)> {
        let now = self.now;
        let name = self.nodes[i].name.clone();
        let reach = self.dcs_reachable(i);
        let unreachable = || ActionResult::Failed("DCS unreachable".into());
        Ok(match action {
            Action::TakeInitialize | Action::CreateInitialize { .. } => {
                if !reach {
                    return Ok(unreachable());
                }
                if self.dcs.kv.contains_key(keys::INITIALIZE) {
                    ActionResult::Refused
                } else {
                    let v = match action {
                        Action::CreateInitialize { sysid } => sysid.clone(),
                        _ => String::new(),
                    };
                    self.dcs.put(keys::INITIALIZE, &v, 0);
                    ActionResult::Done
                }
            }
            Action::CompleteBootstrap { sysid } => {
                if !reach {
                    return Ok(unreachable());
                }
                self.dcs.put(keys::INITIALIZE, sysid, 0);
                self.dcs
                    .put(keys::CONFIG, r#"{"ttl":30,"loop_wait":10}"#, 0);
                ActionResult::Done
            }
            Action::CancelInitialize => {
                if !reach {
                    return Ok(unreachable());
                }
                self.dcs.delete(keys::INITIALIZE);
                ActionResult::Done
            }
            Action::AcquireLock => {
                if !reach {
                    return Ok(unreachable());
                }
                let lease = self.dcs.live_lease(self.nodes[i].session, now, TTL);
                self.nodes[i].session = Some(lease);
                if self.dcs.kv.contains_key(keys::LEADER) {
                    if self.tracing() {
                        self.log(format!("{name}: lost the leader race"));
                    }
                    ActionResult::Refused
                } else {
                    self.dcs.put(keys::LEADER, &name, lease);
                    if self.tracing() {
                        let optime = self.dcs.load().status.optime;
                        let lsn = snap.facts.lsn;
                        self.log(format!(
                            "{name}: lock acquired (my lsn {lsn:?}, published optime {optime:?})"
                        ));
                    }
                    self.wake_all();
                    ActionResult::Renewed(instant(now + TTL))
                }
            }
            Action::RenewLock => {
                if cluster.and_then(|c| c.leader.as_ref()).is_none() {
                    return Ok(ActionResult::Failed("no leader key to renew".into()));
                }
                if !reach {
                    return Ok(unreachable());
                }
                let lease = self.dcs.keepalive(self.nodes[i].session, now, TTL);
                self.nodes[i].session = Some(lease);
                match self.dcs.kv.get(keys::LEADER) {
                    Some(e) if e.value == name => {
                        if e.lease != lease {
                            self.dcs.put(keys::LEADER, &name, lease);
                        }
                        if snap.facts.is_primary() {
                            let status = Status {
                                optime: snap.facts.lsn,
                                ..Status::default()
                            };
                            if self.nodes[i].ha.last_status() != Some(&status) {
                                self.dcs.put(keys::STATUS, &status.to_json(), 0);
                                self.nodes[i].ha.status_written(status);
                            }
                        }
                        ActionResult::Renewed(instant(now + TTL))
                    }
                    _ => {
                        if self.tracing() {
                            self.log(format!("{name}: lock lost"));
                        }
                        ActionResult::Refused
                    }
                }
            }
            Action::ReleaseLock => {
                if !reach {
                    return Ok(unreachable());
                }
                if self.dcs.leader() == Some(name.as_str()) {
                    self.dcs.delete(keys::LEADER);
                    self.wake_all();
                }
                ActionResult::Done
            }
            Action::Bootstrap => self.run_job(i, JobSpec::Bootstrap),
            Action::Clone { from } => self.run_job(i, JobSpec::Clone(from.name.clone())),
            Action::Reinitialize { from } => self.run_job(i, JobSpec::Reinit(from.name.clone())),
            Action::Rewind { from } => self.run_job(i, JobSpec::Rewind(from.name.clone())),
            // No REST API or member state is modelled.
            Action::ShowRewindFailed => ActionResult::Done,
            // Only the newest line matters to `decide` (cluster timeline =
            // its timeline + 1, and it names the leader).
            // Only asked for when the config key is missing, which the
            // simulation never does.
            Action::RestoreConfig | Action::ActivateWatchdog => ActionResult::Done,
            // `sync_steps::run`: the key by compare-and-swap, the list on
            // the server (a reload; the file keeps it while stopped).
            Action::Sync(step) => match step {
                SyncStep::WriteKey {
                    standbys,
                    quorum,
                    version,
                } => {
                    if !reach {
                        return Ok(unreachable());
                    }
                    let value = SyncState::to_json(&name, standbys, *quorum);
                    if self.dcs.put_cas(keys::SYNC, &value, version.as_ref()) {
                        ActionResult::Done
                    } else {
                        ActionResult::Refused
                    }
                }
                SyncStep::DeleteKey { version } => {
                    if !reach {
                        return Ok(unreachable());
                    }
                    if self.dcs.delete_cas(keys::SYNC, version) {
                        ActionResult::Done
                    } else {
                        ActionResult::Refused
                    }
                }
                SyncStep::SetNames { value } => {
                    let value = value.as_deref().unwrap_or_default();
                    self.nodes[i].pg.set_sync_names(value);
                    ActionResult::Done
                }
            },
            // Only decided when a failover key exists, which the simulation
            // never writes.
            Action::ClearFailover { .. } => ActionResult::Done,
            // Never decided: `can_clone_without_leader` is false here.
            Action::CloneWithoutLeader => {
                ActionResult::Failed("no replica method without a leader".into())
            }
            // Never decided: standby clusters are not modelled.
            Action::BootstrapStandby { .. } => {
                ActionResult::Failed("standby clusters are not modelled".into())
            }
            Action::WriteHistory => {
                if !reach {
                    return Ok(unreachable());
                }
                let n = &self.nodes[i];
                if let Some(tl) = n.pg.data.as_ref().map(|d| d.timeline).filter(|t| *t > 1) {
                    let value = format!(
                        r#"[[{},0,"promoted","1970-01-01T00:00:00+00:00","{}"]]"#,
                        tl - 1,
                        n.name
                    );
                    self.dcs.put(keys::HISTORY, &value, 0);
                }
                ActionResult::Done
            }
            Action::StartPrimary => self.run_job(i, JobSpec::StartPrimary),
            Action::StartReplica { upstream } => {
                let step = self.run_job(i, JobSpec::StartReplica);
                if step == ActionResult::Done {
                    self.nodes[i].pg.following = upstream.as_ref().map(|u| u.name.clone());
                }
                step
            }
            Action::Promote => {
                // Invariant: only a node allowed to fail over, within the lag
                // limit of the last position the leader published, promotes.
                if !self.nodes[i].tags.can_failover() {
                    return Err((
                        Kind::BadPromotion,
                        format!("{name} is tagged nofailover but promotes"),
                    ));
                }
                let optime = self.dcs.load().status.optime;
                let lsn = self.nodes[i].pg.data.as_ref().map_or(0, Data::lsn);
                if let Some(o) = optime
                    && o.saturating_sub(lsn) > MAX_LAG
                {
                    return Err((
                        Kind::BadPromotion,
                        format!(
                            "{name} promotes {} bytes behind the last leader position (limit {MAX_LAG})",
                            o - lsn
                        ),
                    ));
                }
                self.run_job(i, JobSpec::Promote)
            }
            Action::Demote { .. } => {
                self.nodes[i].pg.stop();
                ActionResult::Done
            }
            Action::Follow { upstream } => {
                if self.nodes[i].pg.role() == Some(PgRole::Replica) {
                    self.nodes[i].pg.following = Some(upstream.name.clone());
                    ActionResult::Done
                } else {
                    ActionResult::Failed("PostgreSQL is not a running standby".into())
                }
            }
            Action::Fatal { reason } => {
                return Err((Kind::Unexpected, format!("{name} stops fatally: {reason}")));
            }
            Action::WriteFailsafe { .. } | Action::StayPrimaryOnFailsafe => {
                return Err((
                    Kind::Unexpected,
                    format!("{name}: failsafe action with failsafe mode off"),
                ));
            }
        })
    }

    // ------------------------------------------------------------- the jobs

    fn run_job(&mut self, i: usize, spec: JobSpec) -> ActionResult {
        if let Some(j) = &self.nodes[i].job {
            return ActionResult::Failed(format!("{:?} is already in progress", j.kind));
        }
        let (kind, ms) = match spec {
            JobSpec::Bootstrap => (JobKind::Bootstrap, self.rng.range(2_000, 5_000)),
            JobSpec::Clone(_) => (JobKind::Clone, self.rng.range(3_000, 15_000)),
            JobSpec::Reinit(_) => (JobKind::Reinitialize, self.rng.range(3_000, 15_000)),
            JobSpec::Rewind(_) => (JobKind::Rewind, self.rng.range(1_000, 8_000)),
            JobSpec::StartPrimary | JobSpec::StartReplica => {
                (JobKind::Start, self.rng.range(500, 3_000))
            }
            JobSpec::Promote => (JobKind::Promote, self.rng.range(200, 2_000)),
        };
        let pg = &mut self.nodes[i].pg;
        match &spec {
            JobSpec::Reinit(_) => {
                pg.stop();
                pg.data = None; // moved aside
            }
            JobSpec::Rewind(_) => pg.stop(),
            JobSpec::StartPrimary => {
                pg.running = true;
                pg.answering = false;
                pg.primary = true;
                pg.following = None;
            }
            JobSpec::StartReplica => {
                pg.running = true;
                pg.answering = false;
                pg.primary = false;
                if let Some(d) = &mut pg.data {
                    d.was_primary = false; // standby.signal: "in archive recovery"
                }
            }
            _ => {}
        }
        self.nodes[i].job = Some(Job {
            spec,
            kind,
            done_at: self.now + ms,
        });
        ActionResult::Done
    }

    fn finish_job(&mut self, i: usize) {
        if !self.alive(i) {
            return;
        }
        let Some(job) = self.nodes[i].job.clone() else {
            return;
        };
        if job.done_at > self.now {
            return;
        }
        self.nodes[i].job = None;
        let fails = self.rng.chance(3);
        let ok = match &job.spec {
            JobSpec::Bootstrap => {
                let (sysid, origin) = (self.rng.next_u64() >> 1, self.id());
                let n = &mut self.nodes[i];
                n.pg.data = Some(Data {
                    sysid,
                    was_primary: true,
                    log: Vec::new(),
                    timeline: 1,
                    origin,
                });
                n.pg.running = true;
                n.pg.answering = true;
                n.pg.primary = true;
                n.rebuilds += 1;
                true
            }
            JobSpec::Clone(from) | JobSpec::Reinit(from) | JobSpec::Rewind(from) => {
                let src = self
                    .index(from)
                    .map(|j| &self.nodes[j].pg)
                    .filter(|p| p.role().is_some())
                    .and_then(|p| p.data.clone());
                match src {
                    Some(mut d) if !fails => {
                        d.was_primary = false;
                        let n = &mut self.nodes[i];
                        n.pg = Pg {
                            data: Some(d),
                            running: true,
                            answering: true,
                            primary: false,
                            following: Some(from.clone()),
                            // Written afresh for a replica.
                            sync_names: String::new(),
                            sync_parsed: Default::default(),
                        };
                        n.rebuilds += 1;
                        true
                    }
                    _ => false,
                }
            }
            JobSpec::StartPrimary | JobSpec::StartReplica => {
                let pg = &mut self.nodes[i].pg;
                if pg.running && !fails {
                    pg.answering = true;
                    true
                } else {
                    pg.stop();
                    false
                }
            }
            JobSpec::Promote => {
                let origin = self.id();
                let pg = &mut self.nodes[i].pg;
                if pg.role() == Some(PgRole::Replica) && !fails {
                    pg.primary = true;
                    pg.following = None;
                    let d = pg.data.as_mut().unwrap();
                    let stale = d.timeline < self.max_timeline;
                    d.timeline += 1;
                    self.max_timeline = self.max_timeline.max(d.timeline);
                    d.origin = origin;
                    d.was_primary = true;
                    self.nodes[i].stale_promotion = stale;
                    self.report.promotions += 1;
                    true
                } else {
                    false
                }
            }
        };
        let outcome = if ok {
            JobOutcome::Succeeded(job.kind)
        } else if let JobSpec::Rewind(_) = job.spec {
            // The job's raw report; `ha::Node` says it failed for good.
            JobOutcome::RewindFailed(RewindReport::ToolFailed {
                tool: RewindTool::PgRewind,
                status: Some("exit status: 1".into()),
                stderr: vec!["simulated failure".into()],
                error: "simulated failure".into(),
            })
        } else {
            JobOutcome::Failed(job.kind, "simulated failure".into())
        };
        if self.tracing() {
            self.log(format!(
                "{}: job {:?} -> {outcome:?}",
                self.nodes[i].name, job.spec
            ));
        }
        let n = &mut self.nodes[i];
        n.outcome = Some(outcome);
        n.next_cycle = self.now; // JobFinished wakes the elector
    }

    // ------------------------------------------------------------ invariants

    fn one_leader(&self) -> bool {
        let writers: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.writable(i))
            .collect();
        writers.len() == 1 && self.dcs.leader() == Some(self.nodes[writers[0]].name.as_str())
    }

    fn check(&mut self) -> Res {
        // At most one node whose PostgreSQL accepts writes while its daemon
        // believes it holds the lease.
        let believers: Vec<&str> = (0..self.nodes.len())
            .filter(|&i| self.writable(i) && self.nodes[i].lease_deadline().is_some())
            .map(|i| self.nodes[i].name.as_str())
            .collect();
        if believers.len() > 1 {
            return Err((
                Kind::SplitBrain,
                format!(
                    "split brain: {} accept writes, each believing it holds the lease",
                    believers.join(" and ")
                ),
            ));
        }
        // Synchronous mode: every acknowledged write is on every primary
        // that accepts writes from now on.
        if let Some((idx, entry)) = self.last_ack {
            for i in 0..self.nodes.len() {
                let d = self.nodes[i].pg.data.as_ref();
                if self.writable(i) && d.is_none_or(|d| d.log.get(idx) != Some(&entry)) {
                    return Err((
                        Kind::LostAckedWrite,
                        format!(
                            "{} accepts writes without acknowledged write #{} (it has {} writes)",
                            self.nodes[i].name,
                            idx + 1,
                            d.map_or(0, |d| d.log.len())
                        ),
                    ));
                }
            }
        }
        // Timelines only move forward (a rebuilt data directory starts over).
        for n in &mut self.nodes {
            if let Some(d) = &n.pg.data {
                if let Some((tl, rb)) = n.seen_timeline
                    && rb == n.rebuilds
                    && d.timeline < tl
                {
                    return Err((
                        Kind::TimelineBack,
                        format!("{}: timeline went back from {tl} to {}", n.name, d.timeline),
                    ));
                }
                n.seen_timeline = Some((d.timeline, n.rebuilds));
            }
        }
        if self.now >= FAULT_END && self.converged_at.is_none() {
            if self.one_leader() {
                self.converged_at = Some(self.now);
                self.report.converged_after = self.now - FAULT_END;
                if self.tracing() {
                    self.log(format!(
                        "converged {:.1}s after the faults ended",
                        (self.now - FAULT_END) as f64 / 1000.0
                    ));
                }
            } else if self.now - FAULT_END > CONVERGE_BOUND {
                return Err((
                    Kind::NoLeader,
                    format!(
                        "no single writable leader {}s after the faults ended",
                        CONVERGE_BOUND / 1000
                    ),
                ));
            }
        }
        Ok(())
    }

    fn summary(&mut self) {
        let parts: Vec<String> = (0..self.nodes.len())
            .map(|i| {
                let n = &self.nodes[i];
                let state = if n.down_until.is_some() {
                    "DOWN".to_string()
                } else {
                    let pg = match (n.pg.role(), n.pg.running, &n.pg.data) {
                        (_, _, None) => "empty".to_string(),
                        (Some(PgRole::Primary), _, Some(d)) => format!(
                            "primary tl{}{}",
                            d.timeline,
                            if self.writable(i) { " W" } else { " ro" }
                        ),
                        (Some(PgRole::Replica), _, Some(d)) => format!(
                            "replica tl{} of {}",
                            d.timeline,
                            n.pg.following.as_deref().unwrap_or("-")
                        ),
                        (None, true, _) => "starting".into(),
                        (None, false, _) => "stopped".into(),
                    };
                    let mut s = pg;
                    if n.paused_until > self.now {
                        s.push_str(" PAUSED");
                    }
                    if n.partitioned_until > self.now {
                        s.push_str(" CUT");
                    }
                    if n.lease_deadline().is_some() {
                        s.push_str(" lease");
                    }
                    s
                };
                format!("{}=[{state}]", n.name)
            })
            .collect();
        let line = format!(
            "state: leader={} dcs={} {}",
            self.dcs.leader().unwrap_or("-"),
            if self.dcs_up() { "up" } else { "DOWN" },
            parts.join(" ")
        );
        if line != self.last_summary {
            self.last_summary = line.clone();
            self.log(line);
        }
    }
}

/// The seeded fault schedule: 2-7 faults in the fault phase, half of them
/// aimed at whoever leads when they fire.
fn random_faults(rng: &mut Rng, n: usize) -> Vec<Fault> {
    let count = rng.range(2, 7);
    let mut out = Vec::new();
    for _ in 0..count {
        let at = rng.range(START + 30_000, FAULT_END - 10_000) / TICK * TICK;
        let room = FAULT_END - at;
        let len = |rng: &mut Rng, lo: u64, hi: u64| (rng.range(lo, hi) / TICK * TICK).min(room);
        let pick = rng.range(0, 99);
        let kind = match pick {
            0..20 => FaultKind::CrashPg,
            20..40 => FaultKind::CrashNode {
                down: len(rng, 5_000, 60_000),
            },
            40..55 => FaultKind::Pause {
                len: len(rng, 5_000, 60_000),
                mid_cycle: rng.chance(50),
            },
            55..65 => FaultKind::DcsOutage {
                len: len(rng, 5_000, 90_000),
                extend: rng.chance(50),
            },
            65..85 => FaultKind::Partition {
                len: len(rng, 5_000, 90_000),
            },
            _ => FaultKind::Slow {
                len: len(rng, 10_000, 120_000),
            },
        };
        let target = if rng.chance(50) {
            Target::Leader
        } else {
            Target::Node(rng.range(0, n as u64 - 1) as usize)
        };
        out.push(Fault { at, target, kind });
    }
    out.sort_by_key(|f| f.at);
    out
}
