//! The LeaderElector: runs the HA cycle.
//!
//! Each cycle it gathers facts (one DCS read, PostgreSQL's status, peer
//! answers during a leader race), asks [`crate::ha::decide`] what to do, and
//! carries the actions out: DCS writes itself, PostgreSQL work through the
//! supervisor. It is the only actor that turns facts into decisions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::future::join_all;
use tracing::{error, info, warn};

use super::failsafe::{confirm_members, heartbeat_body};
use super::member_record::{api_url, conn_url, member_data};
use super::peers::fetch_peer;
use crate::config::{Config, DynamicConfig, dynamic_file};
use crate::dcs::{Cluster, Dcs, DcsError, LeaderHold, Member, MemberData, Status};
use crate::fence::{FenceClient, FenceOrder};
use crate::ha::lease::{Confirmation, KeepaliveAnswer, KeepaliveOutcome};
use crate::ha::slots::{RetainedSlots, SlotRequest};
use crate::ha::{
    self, Action, DcsView, DemoteMode, FailsafeView, LeaderHeartbeat, LocalView, PgRole,
};
use crate::messages::callbacks::CallbackEvent;
use crate::messages::config::ConfigChanged;
use crate::messages::elector::{
    FailsafeHeartbeat, GetHaState, HaState, JobFinished, Shutdown, Wake,
};
use crate::messages::supervisor::{
    DynamicConfigChanged, Follow, GetPgStatus, Job, PgState, PgStatus, RunJob, StopAndWait,
    StopGracefully, StopMode, SyncSlots,
};
use crate::sync;
use crate::watchdog::Watchdog;

/// The watchdog, even if a panic poisoned its mutex (its state stays valid:
/// every method leaves it consistent).
fn wd(w: &Mutex<Watchdog>) -> std::sync::MutexGuard<'_, Watchdog> {
    sync::lock(w)
}

/// Who the elector talks to.
pub struct ElectorLinks {
    pub dcs: Arc<dyn Dcs>,
    pub get_pg: Recipient<GetPgStatus>,
    pub run_job: Recipient<RunJob>,
    pub follow: Recipient<Follow>,
    pub stop_pg: Recipient<StopAndWait>,
    pub stop_gracefully: Recipient<StopGracefully>,
    pub sync_slots: Recipient<SyncSlots>,
    pub dynamic_changed: Recipient<DynamicConfigChanged>,
    pub callbacks: Recipient<CallbackEvent>,
}

pub struct LeaderElector {
    cfg: Arc<Config>,
    dynamic: DynamicConfig,
    links: Arc<ElectorLinks>,
    http: reqwest::Client,
    /// A cycle is in flight.
    cycling: bool,
    /// Someone asked for a cycle while one was in flight.
    rerun: bool,
    timer: Option<SpawnHandle>,
    /// The lease, the HA loop's confirmation and the keep-alive's
    /// bookkeeping, carried between cycles (`ha::lease::Lease`).
    lease: ha::lease::Lease,
    cluster: Option<(Cluster, Instant)>,
    dcs_last_seen: Option<SystemTime>,
    next_cycle_due: Option<Instant>,
    last_role: Option<PgRole>,
    last_status: Option<Status>,
    /// The reason of the last decision, so a steady state is logged once.
    last_reason: Option<String>,
    /// Every member seen in the DCS since start (name -> api_url): a leader
    /// race asks them too, since a member whose key just expired may still be
    /// the most advanced (docs/ha.md §3.1).
    seen_members: std::collections::BTreeMap<String, String>,
    shutting_down: bool,
    /// The last `POST /failsafe` a leader sent this node.
    heartbeat: Option<LeaderHeartbeat>,
    /// Running as primary on failsafe confirmations until then.
    failsafe_active_until: Option<Instant>,
    /// The fence process beside this daemon (src/fence.rs).
    fence: Arc<Mutex<FenceClient>>,
    /// What this node last wrote to `patroni.dynamic.json`.
    dumped: Option<serde_json::Value>,
    /// When this node last stepped down for a switchover.
    demoted_gracefully_at: Option<Instant>,
    /// Slots of vanished members kept for `member_slots_ttl`.
    retained_slots: Arc<Mutex<RetainedSlots>>,
    /// The watchdog device (src/watchdog/).
    watchdog: Arc<Mutex<Watchdog>>,
    /// The deadline the last keep-alive gave the current lease, shared with
    /// the cycle in flight so a slow cycle decides on it rather than on the
    /// deadline it started with.
    keepalive_deadline: Arc<Mutex<Option<Instant>>>,
}

/// What a finished cycle reports back to the actor.
struct CycleReport {
    cluster: Option<Cluster>,
    lease_deadline: Option<Instant>,
    role: Option<PgRole>,
    status_written: Option<Status>,
    rerun_now: bool,
    fatal: Option<String>,
    reason: Option<String>,
    /// Every failsafe member confirmed this primary: active until then.
    failsafe_until: Option<Instant>,
    /// This cycle stepped down for a switchover.
    demoted_gracefully: bool,
    /// What this cycle says about the leader's health (`ha::lease`).
    confirmation: Confirmation,
}

impl LeaderElector {
    pub fn new(cfg: Arc<Config>, dynamic: DynamicConfig, links: ElectorLinks) -> LeaderElector {
        let data_dir = super::postgres_supervisor::absolute(&cfg.postgresql.data_dir);
        // A fence outlives its daemon long enough for a restart to adopt it,
        // and exits afterwards only once PostgreSQL is not running.
        let orphan_after = (dynamic.timing.ttl * 10).max(Duration::from_secs(60));
        let fence = Arc::new(Mutex::new(FenceClient::new(&data_dir, orphan_after)));
        LeaderElector {
            fence,
            watchdog: Arc::new(Mutex::new(Watchdog::from_config(&cfg))),
            http: crate::peer_client::build(&cfg),
            cfg,
            dynamic,
            links: Arc::new(links),
            cycling: false,
            rerun: false,
            timer: None,
            lease: ha::lease::Lease::default(),
            cluster: None,
            dcs_last_seen: None,
            next_cycle_due: None,
            last_role: None,
            last_status: None,
            last_reason: None,
            seen_members: std::collections::BTreeMap::new(),
            shutting_down: false,
            heartbeat: None,
            failsafe_active_until: None,
            dumped: None,
            demoted_gracefully_at: None,
            retained_slots: Arc::default(),
            keepalive_deadline: Arc::new(Mutex::new(None)),
        }
    }

    /// One tick of the lease keep-alive (every ttl/4): send one when
    /// `ha::lease::Lease::keepalive` says so, and carry out what its answer
    /// changed (`Lease::keepalive_answered`).
    fn keepalive_tick(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let timing = self.dynamic.timing;
        ctx.run_later(timing.keepalive_interval(), |act, ctx| {
            act.keepalive_tick(ctx)
        });
        let Some(ticket) = self
            .lease
            .keepalive(Instant::now(), self.dynamic.pause, &timing)
        else {
            return;
        };
        let dcs = self.links.dcs.clone();
        ctx.spawn(
            async move { dcs.keep_alive().await }
                .into_actor(self)
                .map(move |r, act, _| {
                    let answer = match &r {
                        Ok(true) => KeepaliveAnswer::Alive,
                        Ok(false) => KeepaliveAnswer::Gone,
                        Err(_) => KeepaliveAnswer::Failed,
                    };
                    match act.lease.keepalive_answered(ticket, answer, &timing) {
                        KeepaliveOutcome::Extended(d) => {
                            *sync::lock(&act.keepalive_deadline) = Some(d);
                            sync::lock(&act.fence).extend(d, timing.fence_margin());
                        }
                        KeepaliveOutcome::Lost => warn!(
                            event = "lease_keepalive_lost",
                            "the lease is gone; the next cycle decides"
                        ),
                        KeepaliveOutcome::Nothing => {
                            if let Err(e) = r {
                                tracing::debug!(event = "lease_keepalive_failed", error = %e);
                            }
                        }
                    }
                }),
        );
    }

    fn start_cycle(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        if self.cycling {
            self.rerun = true;
            return;
        }
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        self.cycling = true;
        self.rerun = false;
        let started = Instant::now();
        let input = CycleInput {
            cfg: self.cfg.clone(),
            dynamic: self.dynamic.clone(),
            links: self.links.clone(),
            http: self.http.clone(),
            lease_deadline: self.lease.deadline(),
            last_status: self.last_status.clone(),
            last_reason: self.last_reason.clone(),
            failsafe_last_known: self.cluster.as_ref().and_then(|(c, _)| c.failsafe.clone()),
            seen_members: self.seen_members.clone(),
            heartbeat: self.heartbeat.clone(),
            failsafe_until: self.failsafe_active_until,
            fence: self.fence.clone(),
            keepalive_deadline: self.keepalive_deadline.clone(),
            demoted_gracefully_at: self.demoted_gracefully_at,
            retained_slots: self.retained_slots.clone(),
            watchdog: self.watchdog.clone(),
        };
        ctx.spawn(
            run_cycle(input)
                .into_actor(self)
                .map(move |report, act, ctx| {
                    act.cycling = false;
                    act.finish_cycle(report, started, ctx);
                }),
        );
    }

    fn finish_cycle(&mut self, report: CycleReport, started: Instant, ctx: &mut Context<Self>) {
        // systemd's watchdog (WatchdogSec=): a finished cycle proves the HA
        // loop is alive; a hung loop stops the pings and systemd kills the
        // daemon (KillMode=process: the fence stops PostgreSQL before the
        // lease can end, and the restarted daemon adopts both).
        if let Err(e) = crate::sd_notify::notify("WATCHDOG=1") {
            tracing::debug!(event = "sd_notify_failed", error = %e);
        }
        // A keep-alive may have moved the deadline while the cycle ran; a
        // cycle that dropped the lease wins (`ha::lease::Lease::cycle_finished`).
        if self
            .lease
            .cycle_finished(report.lease_deadline, report.confirmation)
        {
            *sync::lock(&self.keepalive_deadline) = None;
        }
        if report.failsafe_until.is_some() != self.failsafe_active_until.is_some() {
            info!(
                event = "failsafe_mode_active",
                active = report.failsafe_until.is_some()
            );
        }
        self.failsafe_active_until = report.failsafe_until;
        if report.demoted_gracefully {
            self.demoted_gracefully_at = Some(Instant::now());
        } else if report.role.is_some() {
            self.demoted_gracefully_at = None;
        }
        if report.reason.is_some() {
            self.last_reason = report.reason.clone();
        }
        if let Some(s) = report.status_written {
            self.last_status = Some(s);
        }
        if let Some(c) = report.cluster {
            self.dcs_last_seen = Some(SystemTime::now());
            for m in c.members.iter().filter(|m| !m.data.api_url.is_empty()) {
                self.seen_members
                    .insert(m.name.clone(), m.data.api_url.clone());
            }
            self.apply_dynamic_config(&c);
            self.dump_dynamic_config(&c);
            self.cluster = Some((c, Instant::now()));
        }
        // Role-change callbacks come from the supervisor, which knows a
        // promotion or a demotion happened (not just a different role seen).
        self.last_role = report.role;
        if let Some(reason) = report.fatal {
            error!(event = "fatal", reason = %reason, "stopping the daemon; PostgreSQL and the data directory are left as they are");
            System::current().stop_with_code(1);
            return;
        }
        if report.rerun_now || self.rerun {
            self.next_cycle_due = Some(Instant::now());
            ctx.notify(Wake("follow-up cycle"));
            return;
        }
        let mut due = started + self.dynamic.timing.loop_wait;
        // A scheduled switchover runs at its time, not up to loop_wait late.
        if let Some(secs) = self.cluster.as_ref().and_then(|(c, _)| {
            let f = c.failover.as_ref()?;
            ha::switchover::seconds_until_due(&f.value, ha::iso8601::now_unix())
        }) {
            due = due.min(Instant::now() + std::time::Duration::from_secs_f64(secs));
        }
        let wait = due.saturating_duration_since(Instant::now());
        self.next_cycle_due = Some(due);
        self.timer = Some(ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.start_cycle(ctx);
        }));
    }

    /// Adopt a changed `config` key: timing goes to the DCS client, the rest
    /// to the supervisor. An invalid value keeps the last good one.
    fn apply_dynamic_config(&mut self, cluster: &Cluster) {
        let Some(cfg) = &cluster.config else { return };
        if cfg.value == self.dynamic.raw {
            return;
        }
        match DynamicConfig::from_json(&cfg.value) {
            Ok(new) => {
                // The key keeps what was written; these values are in force
                // (docs/configuration.md, "Timing: adjusted, not refused").
                for note in new.timing_adjustments() {
                    warn!(event = crate::events::TIMING_ADJUSTED, "{note}");
                }
                if new.timing != self.dynamic.timing {
                    info!(event = crate::events::TIMING_CHANGED, ttl = ?new.timing.ttl, loop_wait = ?new.timing.loop_wait, retry_timeout = ?new.timing.retry_timeout);
                    self.links
                        .dcs
                        .set_timing(new.timing.ttl, new.timing.retry_timeout);
                }
                self.links
                    .dynamic_changed
                    .do_send(DynamicConfigChanged(new.clone()));
                self.dynamic = new;
            }
            Err(e) => {
                warn!(event = "bad_dynamic_config", error = %e, "keeping the previous dynamic configuration")
            }
        }
    }

    /// The leader keeps the applied dynamic configuration in
    /// `patroni.dynamic.json`, to restore a lost `config` key from.
    fn dump_dynamic_config(&mut self, cluster: &Cluster) {
        let leading = self.lease.deadline().is_some()
            && cluster.leader_name() == Some(self.cfg.name.as_str());
        let applied = cluster
            .config
            .as_ref()
            .is_some_and(|c| c.value == self.dynamic.raw);
        if !leading || !applied || self.dumped.as_ref() == Some(&self.dynamic.raw) {
            return;
        }
        let dir = std::path::Path::new(&self.cfg.postgresql.data_dir);
        match dynamic_file::save(dir, &self.dynamic.raw) {
            Ok(()) => {
                info!(event = "dynamic_config_saved", file = %dynamic_file::path(dir).display());
                self.dumped = Some(self.dynamic.raw.clone());
            }
            Err(e) => warn!(event = "dynamic_config_save_failed", error = %e),
        }
    }

    fn ha_state(&self) -> HaState {
        let ttl = self.dynamic.timing.ttl;
        let fresh = self
            .cluster
            .as_ref()
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(c, _)| c.clone());
        HaState {
            name: self.cfg.name.clone(),
            scope: self.cfg.scope.clone(),
            tags: self.cfg.tags.clone(),
            cluster: fresh,
            is_leader: self.lease.held_at(Instant::now())
                || self
                    .failsafe_active_until
                    .is_some_and(|d| d > Instant::now()),
            dcs_last_seen: self.dcs_last_seen,
            ttl_secs: ttl.as_secs_f64(),
            loop_wait_secs: self.dynamic.timing.loop_wait.as_secs_f64(),
            maximum_lag_on_failover: self.dynamic.maximum_lag_on_failover,
            next_cycle_due: self.next_cycle_due,
            failsafe_mode: self.dynamic.failsafe_mode,
            failsafe_active: self.failsafe_active(),
            failsafe: self.cluster.as_ref().and_then(|(c, _)| c.failsafe.clone()),
            watchdog_failed: wd(&self.watchdog).is_failed(&self.dynamic.timing),
        }
    }

    /// Primary: running on failsafe confirmations; replica: a leader sent
    /// `POST /failsafe` less than ttl ago.
    fn failsafe_active(&self) -> bool {
        let now = Instant::now();
        self.failsafe_active_until.is_some_and(|d| d > now)
            || self
                .heartbeat
                .as_ref()
                .is_some_and(|h| now.saturating_duration_since(h.at) < self.dynamic.timing.ttl)
    }
}

impl Actor for LeaderElector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_cycle(ctx);
        let first = self.dynamic.timing.keepalive_interval();
        ctx.run_later(first, |act, ctx| act.keepalive_tick(ctx));
    }
}

impl Handler<Wake> for LeaderElector {
    type Result = ();
    fn handle(&mut self, _msg: Wake, ctx: &mut Context<Self>) {
        self.start_cycle(ctx);
    }
}

impl Handler<JobFinished> for LeaderElector {
    type Result = ();
    fn handle(&mut self, msg: JobFinished, ctx: &mut Context<Self>) {
        info!(event = "job_finished", outcome = ?msg.0);
        self.start_cycle(ctx);
    }
}

impl Handler<GetHaState> for LeaderElector {
    type Result = MessageResult<GetHaState>;
    fn handle(&mut self, _msg: GetHaState, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.ha_state())
    }
}

/// A reloaded local configuration (SIGHUP, `POST /reload`): tags, REST and
/// connection addresses and the rest take effect from the next cycle, which
/// starts now. The name and scope key this node's DCS records and cannot
/// change while it runs.
impl Handler<ConfigChanged> for LeaderElector {
    type Result = ();
    fn handle(&mut self, ConfigChanged(cfg): ConfigChanged, ctx: &mut Context<Self>) {
        let mut cfg = (*cfg).clone();
        if cfg.name != self.cfg.name || cfg.scope != self.cfg.scope {
            warn!(
                event = "config_reload_partial",
                "name and scope cannot change while running; restart the daemon for that"
            );
            cfg.name = self.cfg.name.clone();
            cfg.scope = self.cfg.scope.clone();
        }
        self.http = crate::peer_client::build(&cfg);
        wd(&self.watchdog).reconfigure(&cfg, &self.dynamic.timing);
        self.cfg = Arc::new(cfg);
        self.start_cycle(ctx);
    }
}

impl Handler<FailsafeHeartbeat> for LeaderElector {
    type Result = ();
    fn handle(&mut self, msg: FailsafeHeartbeat, _ctx: &mut Context<Self>) {
        let known = self.heartbeat.as_ref().is_some_and(|h| {
            h.name == msg.name && msg.at.saturating_duration_since(h.at) < self.dynamic.timing.ttl
        });
        if !known {
            info!(event = "failsafe_heartbeat", leader = %msg.name, "a leader without DCS access confirmed it runs; not racing while it does");
        }
        self.heartbeat = Some(LeaderHeartbeat {
            name: msg.name,
            conn_url: msg.conn_url,
            api_url: msg.api_url,
            at: msg.at,
        });
    }
}

impl Handler<Shutdown> for LeaderElector {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _msg: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let links = self.links.clone();
        let held = self.lease.deadline().is_some();
        let fence = self.fence.clone();
        let watchdog = self.watchdog.clone();
        if self.dynamic.pause {
            // Paused: the watchdog is disarmed already (every paused cycle
            // disarms it); make sure.
            wd(&self.watchdog).disable();
            // docs/ha.md §14: paused, PostgreSQL and the lock are left
            // alone. The session is not revoked either (that would drop the
            // leader key with it); it lapses after ttl unless a restarted
            // daemon takes over first. The fence stays paused.
            info!(
                event = "shutdown",
                "paused: leaving PostgreSQL running and the leader lock in place"
            );
            // A paused fence does nothing: it exits too, so that a clean
            // stop leaves no process of ours; the next daemon starts one
            // when it arms it.
            let exiting = crate::sync::lock(&fence).shutdown();
            return Box::pin(
                async move {
                    if let Some(e) = exiting {
                        e.wait(crate::fence::EXIT_WAIT).await;
                    }
                }
                .into_actor(self)
                .map(|_, _, _| System::current().stop()),
            );
        }
        Box::pin(
            async move {
                info!(event = "shutdown", "stopping PostgreSQL (fast)");
                match links.stop_pg.send(StopAndWait(StopMode::Fast)).await {
                    Ok(Ok(())) => {
                        // PostgreSQL is down: the fence has nothing left to
                        // guard, and this is the watchdog's safe point. If
                        // the stop failed, the watchdog stays armed and
                        // resets the machine once the daemon is gone.
                        let exiting = crate::sync::lock(&fence).shutdown();
                        if let Some(e) = exiting {
                            e.wait(crate::fence::EXIT_WAIT).await;
                        }
                        wd(&watchdog).disable();
                    }
                    Ok(Err(e)) => {
                        warn!(event = "shutdown", error = %e, "PostgreSQL did not stop cleanly")
                    }
                    Err(e) => warn!(event = "shutdown", error = %e),
                }
                if held {
                    match links.dcs.delete_leader().await {
                        Ok(()) => info!(event = crate::events::LOCK_RELEASED, reason = "shutdown"),
                        Err(e) => warn!(event = "lock_release_failed", error = %e),
                    }
                }
                if let Err(e) = links.dcs.release_session().await {
                    warn!(event = "session_release_failed", error = %e);
                }
            }
            .into_actor(self)
            .map(|_, _, _| System::current().stop()),
        )
    }
}

/// A snapshot of what a cycle needs, so the cycle runs without borrowing the
/// actor (messages such as `GetHaState` are answered meanwhile).
struct CycleInput {
    cfg: Arc<Config>,
    dynamic: DynamicConfig,
    links: Arc<ElectorLinks>,
    http: reqwest::Client,
    lease_deadline: Option<Instant>,
    last_status: Option<Status>,
    last_reason: Option<String>,
    failsafe_last_known: Option<std::collections::BTreeMap<String, String>>,
    seen_members: std::collections::BTreeMap<String, String>,
    heartbeat: Option<LeaderHeartbeat>,
    /// Confirmed by every failsafe member until then (a lease in all but name).
    failsafe_until: Option<Instant>,
    fence: Arc<Mutex<FenceClient>>,
    demoted_gracefully_at: Option<Instant>,
    retained_slots: Arc<Mutex<RetainedSlots>>,
    watchdog: Arc<Mutex<Watchdog>>,
    keepalive_deadline: Arc<Mutex<Option<Instant>>>,
}

async fn run_cycle(input: CycleInput) -> CycleReport {
    let CycleInput {
        cfg,
        dynamic,
        links,
        http,
        mut lease_deadline,
        last_status,
        last_reason,
        failsafe_last_known,
        seen_members,
        heartbeat,
        failsafe_until,
        fence,
        demoted_gracefully_at,
        retained_slots,
        watchdog,
        keepalive_deadline,
    } = input;
    let lease_at_start = lease_deadline;
    let cycle_started = Instant::now();
    let mut report = CycleReport {
        cluster: None,
        lease_deadline,
        role: None,
        status_written: None,
        rerun_now: false,
        fatal: None,
        reason: None,
        failsafe_until: None,
        demoted_gracefully: false,
        confirmation: Confirmation::Unchanged,
    };
    let timing = dynamic.timing;

    let (dcs_view, pg) = futures_util::join!(
        links.dcs.load_cluster(),
        links.get_pg.send(GetPgStatus { take_outcome: true })
    );
    let pg = match pg {
        Ok(pg) => pg,
        Err(e) => {
            error!(event = "supervisor_unavailable", error = %e);
            return report;
        }
    };
    report.role = pg.facts.role;
    #[cfg(debug_assertions)]
    debug_stall(&cfg).await;
    let dcs_view = match dcs_view {
        Ok(c) => DcsView::Ok(c),
        Err(e) => {
            warn!(event = "dcs_unreachable", error = %e, "will retry next cycle");
            DcsView::Failed(e)
        }
    };

    let mut peers = Vec::new();
    if let DcsView::Ok(c) = &dcs_view
        && ((c.leader.is_none() && pg.facts.is_replica())
            || (c.failover.is_some()
                && c.leader_name() == Some(cfg.name.as_str())
                && pg.facts.is_primary()))
    {
        let mut ask: Vec<Member> = c.members.clone();
        if dynamic.failsafe_mode {
            // docs/ha.md §3.1: also the members only the failsafe key knows.
            ask.extend(failsafe_only_members(c));
        }
        for (name, url) in &seen_members {
            if !ask.iter().any(|m| &m.name == name) {
                ask.push(member_at(name, url));
            }
        }
        peers = join_all(
            ask.iter()
                .filter(|m| m.name != cfg.name && !m.data.api_url.is_empty())
                .map(|m| fetch_peer(&http, m, timing.peer_timeout())),
        )
        .await;
    }

    // Failsafe (docs/ha.md §10.1): DCS gone, I run as primary and the last
    // known failsafe key lists me: ask the others to confirm me.
    let failsafe_known = match &dcs_view {
        DcsView::Ok(c) => c.failsafe.clone(),
        DcsView::Failed(_) => failsafe_last_known,
    };
    let mut failsafe_acks = None;
    let confirm_started = Instant::now();
    if let (DcsView::Failed(_), Some(members)) = (&dcs_view, &failsafe_known)
        && dynamic.failsafe_mode
        && pg.facts.is_primary()
        && members.contains_key(&cfg.name)
    {
        let body = heartbeat_body(&cfg.name, &conn_url(&cfg), &api_url(&cfg));
        failsafe_acks = Some(confirm_members(&http, members, &cfg.name, &body).await);
    }

    // Only worth a look at the disk when the key needs restoring.
    let config_backup = match &dcs_view {
        DcsView::Ok(c)
            if c.leader_name() == Some(cfg.name.as_str())
                && c.config
                    .as_ref()
                    .is_none_or(|x| DynamicConfig::from_json(&x.value).is_err()) =>
        {
            dynamic_file::load(std::path::Path::new(&cfg.postgresql.data_dir)).is_some()
        }
        _ => false,
    };
    let local = LocalView {
        name: cfg.name.clone(),
        tags: cfg.tags.clone(),
        timing,
        maximum_lag_on_failover: dynamic.maximum_lag_on_failover,
        can_bootstrap: cfg.bootstrap.is_some(),
        can_clone_without_leader: cfg.postgresql.can_clone_without_leader(),
        data_dir: pg.data_dir.clone(),
        pg: pg.facts.clone(),
        busy: pg.busy,
        outcome: pg.outcome.clone(),
        // Failsafe confirmations stand in for the lease while they last.
        lease_deadline: lease_deadline.max(failsafe_until),
        fence_armed: crate::sync::lock(&fence).confirmed_point(),
        peers,
        rewind: ha::RewindView {
            enabled: cfg
                .postgresql
                .use_pg_rewind
                .unwrap_or(dynamic.use_pg_rewind),
            remove_on_failure: cfg.postgresql.remove_data_directory_on_rewind_failure,
            remove_on_diverged: cfg.postgresql.remove_data_directory_on_diverged_timelines,
            failed: pg.state == PgState::RewindFailed,
        },
        failsafe: FailsafeView {
            enabled: dynamic.failsafe_mode,
            api_url: api_url(&cfg),
            last_known: failsafe_known,
            acks: failsafe_acks,
            heartbeat,
        },
        config_backup,
        switchover: ha::SwitchoverView {
            now_unix: ha::iso8601::now_unix(),
            demoted_gracefully_at,
        },
        paused: dynamic.pause,
        watchdog: wd(&watchdog).state(&timing),
    };
    // A keep-alive may have extended the lease while this cycle waited
    // (a slow DCS answer, a slow PostgreSQL): decide on the newest deadline.
    lease_deadline = ha::lease::with_keepalive(lease_deadline, *sync::lock(&keepalive_deadline));
    let local = LocalView {
        lease_deadline: lease_deadline.max(failsafe_until),
        ..local
    };
    let decided_at = Instant::now();
    let decision = ha::decide(&dcs_view, &local, decided_at);
    lease_deadline = ha::lease::after_decision(lease_deadline, decided_at);
    let steady = decision.actions.is_empty() || decision.actions == [Action::RenewLock];
    if steady && last_reason.as_deref() == Some(decision.reason.as_str()) {
        // The same steady state as last cycle: not worth an INFO line per loop_wait.
        tracing::debug!(event = crate::events::DECISION, reason = %decision.reason);
    } else {
        let actions: Vec<String> = decision.actions.iter().map(ToString::to_string).collect();
        info!(event = crate::events::DECISION, reason = %decision.reason, actions = ?actions,
              leader = ?dcs_view_leader(&dcs_view), role = ?pg.facts.role, lsn = ?pg.facts.lsn);
    }

    report.reason = Some(decision.reason.clone());
    let cluster = match dcs_view {
        DcsView::Ok(c) => Some(c),
        DcsView::Failed(_) => None,
    };
    // `member_slots_ttl`: only the lock holder keeps and publishes them.
    let retain = match (&cluster, crate::sync::lock(&retained_slots)) {
        (Some(c), mut r) if dynamic.use_slots && c.leader_name() == Some(cfg.name.as_str()) => {
            let ttl = Duration::from_secs(dynamic.slots.member_slots_ttl);
            r.observe(c, &cfg.name, Instant::now(), ttl)
        }
        _ => Vec::new(),
    };
    let mut demoted = false;
    let mut bootstrap_started = false;
    let mut lock_renewed = false;
    for action in decision.actions {
        if action == Action::StayPrimaryOnFailsafe {
            report.failsafe_until = Some(confirm_started + timing.ttl);
        }
        let outcome = if action == Action::ActivateWatchdog {
            // Before leading (docs/ha.md §12); a required watchdog that
            // cannot be armed ends the cycle, and the next one steps down.
            match wd(&watchdog).activate(&timing) {
                Ok(()) => Step::Continue,
                Err(why) => Step::Stop(why.to_string()),
            }
        } else {
            execute(
                &action,
                &cfg,
                &dynamic,
                &links,
                cluster.as_ref(),
                &pg,
                &mut lease_deadline,
                &last_status,
                &retain,
            )
            .await
        };
        if action == Action::RenewLock && matches!(outcome, Step::Continue | Step::ContinueWrote(_))
        {
            lock_renewed = true;
            wd(&watchdog).keepalive(&timing);
        }
        if action == Action::Bootstrap && matches!(outcome, Step::Continue) {
            bootstrap_started = true;
        }
        if matches!(action, Action::Demote { .. })
            && matches!(outcome, Step::Continue | Step::SteppedDown(_))
        {
            demoted = demoted || matches!(outcome, Step::Continue);
            // PostgreSQL stopped: the watchdog's safe point.
            wd(&watchdog).disable();
        }
        match outcome {
            Step::Continue => {}
            Step::ContinueWrote(s) => report.status_written = Some(s),
            Step::SteppedDown(s) => {
                report.status_written = Some(s);
                report.demoted_gracefully = true;
                report.rerun_now = true;
                break;
            }
            Step::Rerun => {
                report.rerun_now = true;
                break;
            }
            Step::Stop(why) => {
                warn!(event = "action_failed", action = %action, reason = %why);
                break;
            }
            Step::Fatal(why) => {
                report.fatal = Some(why);
                break;
            }
        }
    }

    // A replica keeps slots for the members cascading from it
    // (`replicatefrom`) and drops those nobody uses any more.
    if let Some(c) = &cluster
        && dynamic.use_slots
        && pg.facts.is_replica()
        && pg.busy.is_none()
        && c.leader_name().is_some_and(|l| l != cfg.name)
    {
        sync_slots(&links, &cfg, &dynamic, c, false, &[], None).await;
    }

    if cluster.is_some() {
        let data = member_data(&cfg, &pg, dynamic.pause);
        // It renews the node's lease only when due (ttl/4), so it does not
        // move the leader's lease deadline: RenewLock and the keep-alive do.
        if let Err(e) = links.dcs.touch_member(&data).await {
            warn!(event = "member_update_failed", error = %e);
        }
    }
    report.lease_deadline = lease_deadline;
    report.cluster = cluster;

    let renewed = ha::lease::vouched(lease_deadline, lease_at_start, lock_renewed);
    let order = fence_order(&pg.facts, demoted, renewed.max(report.failsafe_until));
    // The HA loop vouches for this leader: the keep-alive may extend its
    // lease for a while (ha::lease).
    report.confirmation = if demoted || !pg.facts.is_primary() || lease_deadline.is_none() {
        Confirmation::Revoked
    } else if lock_renewed {
        Confirmation::Confirmed(cycle_started)
    } else {
        Confirmation::Unchanged
    };
    let margin = timing.fence_margin();
    crate::sync::lock(&fence).apply(order, margin, dynamic.pause);
    let wd_order = crate::watchdog::order(
        &pg.facts,
        crate::watchdog::CycleFacts {
            demoted: demoted || report.demoted_gracefully,
            paused: dynamic.pause,
            renewed: renewed.max(report.failsafe_until).is_some(),
            holds_lock: lease_deadline.is_some(),
            busy: pg.busy.is_some(),
            bootstrapping: pg.busy == Some(ha::JobKind::Bootstrap) || bootstrap_started,
        },
    );
    wd(&watchdog).apply(wd_order, &timing);
    report
}

/// Test seam, compiled into debug builds only: when the file
/// `<data_dir>.stall` exists, the cycle stalls for the milliseconds it
/// holds (once; the file is removed first) between gathering its facts and
/// deciding, as a slow DCS answer or a slow PostgreSQL would stall it.
#[cfg(debug_assertions)]
async fn debug_stall(cfg: &Config) {
    let data_dir = std::path::Path::new(&cfg.postgresql.data_dir);
    let mut name = data_dir.as_os_str().to_owned();
    name.push(".stall");
    let path = std::path::PathBuf::from(name);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    if std::fs::remove_file(&path).is_err() {
        return;
    }
    if let Ok(ms) = text.trim().parse::<u64>() {
        warn!(
            event = crate::events::DEBUG_STALL,
            ms, "test seam: stalling this HA cycle"
        );
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// What the fence is told at the end of a cycle. It is armed only with a
/// lease renewed (or failsafe confirmed) in this cycle for a PostgreSQL
/// that answered as a primary in this cycle; without such fresh facts the
/// last order stands, so the fence stops PostgreSQL when that lease runs
/// out.
fn fence_order(pg: &ha::PgFacts, demoted: bool, held_until: Option<Instant>) -> FenceOrder {
    if demoted {
        return FenceOrder::Disarm;
    }
    if pg.is_primary() {
        return held_until.map_or(FenceOrder::Keep, FenceOrder::Arm);
    }
    if !pg.running || pg.role == Some(PgRole::Replica) {
        return FenceOrder::Disarm;
    }
    FenceOrder::Keep
}

/// Members listed in the `failsafe` key without a member record, as peers
/// to ask during a race.
fn failsafe_only_members(c: &Cluster) -> Vec<Member> {
    c.failsafe
        .iter()
        .flatten()
        .filter(|(name, _)| c.member(name).is_none())
        .map(|(name, url)| member_at(name, url))
        .collect()
}

/// A member known only by name and REST address, for peer questions.
fn member_at(name: &str, api_url: &str) -> Member {
    Member {
        name: name.to_owned(),
        data: MemberData {
            api_url: api_url.to_owned(),
            ..MemberData::default()
        },
        version: 0,
        session: 0,
    }
}

fn dcs_view_leader(v: &DcsView) -> Option<String> {
    match v {
        DcsView::Ok(c) => c.leader_name().map(str::to_owned),
        DcsView::Failed(_) => None,
    }
}

enum Step {
    Continue,
    ContinueWrote(Status),
    /// Stepped down for a switchover, having published this final status.
    SteppedDown(Status),
    /// The facts changed (a race was won or lost): decide again at once.
    Rerun,
    Stop(String),
    Fatal(String),
}

fn dcs_step(r: Result<bool, DcsError>, lost: &str) -> Step {
    match r {
        Ok(true) => Step::Continue,
        Ok(false) => Step::Stop(lost.to_owned()),
        Err(e) => Step::Stop(e.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    action: &Action,
    cfg: &Config,
    dynamic: &DynamicConfig,
    links: &ElectorLinks,
    cluster: Option<&Cluster>,
    pg: &PgStatus,
    lease_deadline: &mut Option<Instant>,
    last_status: &Option<Status>,
    retain: &[String],
) -> Step {
    let ttl = dynamic.timing.ttl;
    match action {
        Action::TakeInitialize => match links.dcs.initialize(true, "").await {
            Ok(true) => {
                info!(event = "initialize_taken", "won the bootstrap race");
                Step::Continue
            }
            Ok(false) => {
                info!(
                    event = "initialize_lost",
                    "another node bootstraps the cluster"
                );
                Step::Rerun
            }
            Err(e) => Step::Stop(e.to_string()),
        },
        Action::CreateInitialize { sysid } => {
            dcs_step(links.dcs.initialize(true, sysid).await, "initialize exists")
        }
        Action::CompleteBootstrap { sysid } => {
            if let Err(e) = links.dcs.initialize(false, sysid).await {
                return Step::Stop(e.to_string());
            }
            let dcs_json = cfg
                .bootstrap
                .as_ref()
                .map(|b| b.dcs.clone())
                .filter(|v| v.is_object())
                .unwrap_or_else(|| serde_json::json!({}));
            match links
                .dcs
                .set_config_value(&dcs_json.to_string(), None)
                .await
            {
                Ok(_) => {
                    info!(event = "bootstrap_published", sysid = %sysid);
                    Step::Continue
                }
                Err(e) => Step::Stop(e.to_string()),
            }
        }
        Action::CancelInitialize => match links.dcs.cancel_initialization().await {
            Ok(()) => {
                warn!(
                    event = "initialize_released",
                    "bootstrap failed; another attempt may start"
                );
                Step::Continue
            }
            Err(e) => Step::Stop(e.to_string()),
        },
        Action::AcquireLock => {
            let sent = Instant::now();
            match links.dcs.attempt_to_acquire_leader().await {
                Ok(true) => {
                    *lease_deadline = Some(sent + ttl);
                    info!(event = crate::events::LOCK_ACQUIRED, lsn = ?pg.facts.lsn);
                    Step::Rerun
                }
                Ok(false) => {
                    info!(event = "lock_lost_race", "another node took the leader key");
                    Step::Rerun
                }
                Err(e) => Step::Stop(e.to_string()),
            }
        }
        Action::RenewLock => {
            let Some(leader) = cluster.and_then(|c| c.leader.clone()) else {
                return Step::Stop("no leader key to renew".into());
            };
            match links.dcs.update_leader(&leader).await {
                Ok(LeaderHold::Held { renewed_at }) => {
                    // The renewal the hold rests on, perhaps the keep-alive's
                    // (docs/dcs.md, "Idle cost"): never later than the store's.
                    *lease_deadline = Some(renewed_at + ttl);
                    if pg.facts.is_primary() {
                        let slots = match cluster {
                            Some(c) if dynamic.use_slots => {
                                sync_slots(links, cfg, dynamic, c, true, retain, pg.facts.lsn).await
                            }
                            _ => Some(Default::default()),
                        }
                        // A failed sync keeps the positions published last.
                        .or_else(|| last_status.as_ref().map(|s| s.slots.clone()))
                        .unwrap_or_default();
                        let status = Status {
                            optime: pg.facts.lsn,
                            slots,
                            retain_slots: retain.to_vec(),
                        };
                        if last_status.as_ref() != Some(&status) {
                            if let Err(e) = links.dcs.write_status(&status).await {
                                warn!(event = "status_write_failed", error = %e);
                            } else {
                                return Step::ContinueWrote(status);
                            }
                        }
                    }
                    Step::Continue
                }
                Ok(LeaderHold::Lost) => {
                    *lease_deadline = None;
                    warn!(event = "lock_lost", "the leader key is no longer mine");
                    Step::Rerun
                }
                Err(e) => Step::Stop(e.to_string()),
            }
        }
        Action::ReleaseLock => {
            *lease_deadline = None;
            match links.dcs.delete_leader().await {
                Ok(()) => {
                    info!(event = crate::events::LOCK_RELEASED);
                    Step::Rerun
                }
                Err(e) => Step::Stop(e.to_string()),
            }
        }
        Action::Bootstrap => job(links, Job::Bootstrap).await,
        Action::Clone { from } => job(links, Job::Clone { from: from.clone() }).await,
        Action::CloneWithoutLeader => job(links, Job::CloneWithoutLeader).await,
        Action::Reinitialize { from } => {
            job(
                links,
                Job::Reinitialize {
                    from: from.clone(),
                    remove_old: false,
                },
            )
            .await
        }
        Action::Rewind { from } => job(links, Job::Rewind { from: from.clone() }).await,
        Action::WriteHistory => {
            if let Some(c) = cluster {
                super::history_writer::write(cfg, dynamic, links.dcs.as_ref(), c, pg).await;
            }
            Step::Continue
        }
        Action::StartPrimary => job(links, Job::StartPrimary).await,
        Action::StartReplica { upstream } => {
            job(
                links,
                Job::StartReplica {
                    upstream: upstream.clone(),
                },
            )
            .await
        }
        Action::Promote => {
            info!(event = "promote", "promoting PostgreSQL");
            job(links, Job::Promote).await
        }
        Action::Demote {
            mode: DemoteMode::Graceful,
        } => {
            warn!(
                event = "demote",
                mode = "graceful",
                "switchover: checkpoint, stop, hand over the lock"
            );
            *lease_deadline = None;
            let stopped = match links.stop_gracefully.send(StopGracefully).await {
                Ok(r) => r,
                Err(e) => Err(e.to_string()),
            };
            match stopped {
                Ok(lsn) => {
                    match super::switchover::hand_over(links.dcs.as_ref(), lsn, last_status).await {
                        Ok(s) => Step::SteppedDown(s),
                        Err(e) => Step::Stop(e.to_string()),
                    }
                }
                Err(e) => Step::Stop(e),
            }
        }
        Action::ClearFailover { version } => {
            match links.dcs.set_failover_value("{}", Some(*version)).await {
                Ok(true) => info!(event = "failover_key_cleared"),
                Ok(false) => info!(
                    event = "failover_key_changed",
                    "the failover key changed meanwhile; not cleared"
                ),
                Err(e) => warn!(event = "failover_key_clear_failed", error = %e),
            }
            Step::Continue
        }
        Action::Demote { mode } => {
            let stop = match mode {
                DemoteMode::ImmediateNoLock => StopMode::Immediate,
                DemoteMode::Offline | DemoteMode::Graceful => StopMode::Fast,
            };
            warn!(event = "demote", mode = ?mode, "stopping PostgreSQL so it accepts no more writes");
            // A demoted node no longer counts itself the leader (`/primary`,
            // `/leader`), whatever the lease in the DCS still says.
            *lease_deadline = None;
            match links.stop_pg.send(StopAndWait(stop)).await {
                Ok(Ok(())) => Step::Continue,
                Ok(Err(e)) => Step::Stop(e),
                Err(e) => Step::Stop(e.to_string()),
            }
        }
        Action::Follow { upstream } => match links.follow.send(Follow(upstream.clone())).await {
            Ok(Ok(())) => {
                info!(event = "follow", leader = %upstream.name);
                Step::Continue
            }
            Ok(Err(e)) => Step::Stop(e),
            Err(e) => Step::Stop(e.to_string()),
        },
        Action::Fatal { reason } => Step::Fatal(reason.clone()),
        Action::WriteFailsafe { members } => {
            let value = serde_json::to_string(members).unwrap_or_else(|_| "{}".into());
            match links.dcs.set_failsafe_value(&value).await {
                Ok(_) => {
                    info!(event = "failsafe_written", members = ?members.keys().collect::<Vec<_>>())
                }
                Err(e) => warn!(event = "failsafe_write_failed", error = %e),
            }
            Step::Continue
        }
        Action::StayPrimaryOnFailsafe => Step::Continue,
        // Carried out by `run_cycle`, which owns the watchdog.
        Action::ActivateWatchdog => Step::Continue,
        Action::RestoreConfig => {
            let dir = std::path::Path::new(&cfg.postgresql.data_dir);
            match dynamic_file::load(dir) {
                Some(v) => match links.dcs.set_config_value(&v.to_string(), None).await {
                    Ok(_) => {
                        warn!(event = crate::events::CONFIG_RESTORED, file = %dynamic_file::path(dir).display(),
                                   "the config key was missing or invalid; restored it")
                    }
                    Err(e) => warn!(event = "config_restore_failed", error = %e),
                },
                None => warn!(
                    event = "config_restore_failed",
                    "no valid patroni.dynamic.json"
                ),
            }
            Step::Continue
        }
    }
}

/// Ask the supervisor to sync the slots of this node (docs/ha.md §13)
/// and return `status.slots`: the physical slot positions, plus on the
/// leader its own slot name at its current LSN (so the others keep WAL for
/// it after a switchover). `retain` is the leader's `retain_slots`.
async fn sync_slots(
    links: &ElectorLinks,
    cfg: &Config,
    dynamic: &DynamicConfig,
    cluster: &Cluster,
    i_lead: bool,
    retain: &[String],
    lsn: Option<u64>,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let req = SlotRequest::new(cluster, &cfg.name, i_lead, &dynamic.slots, retain);
    let positions = links.sync_slots.send(SyncSlots(req)).await.ok().flatten()?;
    let mut out: serde_json::Map<String, serde_json::Value> =
        positions.into_iter().map(|(k, v)| (k, v.into())).collect();
    if let (true, Some(lsn)) = (i_lead, lsn) {
        out.insert(crate::postgres::conf::slot_name(&cfg.name), lsn.into());
    }
    Some(out)
}

async fn job(links: &ElectorLinks, job: Job) -> Step {
    match links.run_job.send(RunJob(job)).await {
        Ok(Ok(())) => Step::Continue,
        Ok(Err(e)) => Step::Stop(e),
        Err(e) => Step::Stop(e.to_string()),
    }
}
