//! The LeaderElector: runs the HA cycle, as glue around [`crate::ha::Node`].
//!
//! Each cycle it gathers facts (one DCS read, PostgreSQL's status, the peer
//! answers and failsafe confirmations the node asks for), feeds them to the
//! node, carries the actions out (DCS writes itself, PostgreSQL work through
//! the supervisor), reports each result back, and hands the fence and the
//! watchdog the orders the node gives. The rules (the lease, keep-alive,
//! fence order, peers, failsafe, slot retention, shutdown) live in `src/ha`
//! (docs/architecture.md); this file only does the I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::future::join_all;
use tracing::{error, info, warn};

use super::failsafe::{confirm_members, heartbeat_body};
use super::ha_board::{ElectorBoard, Published};
use super::member_record::{api_url, conn_url, effective_tags, member_data};
use super::peers::fetch_peer;
use crate::config::{Config, DynamicConfig, dynamic_file};
use crate::dcs::{Cluster, Dcs, LeaderHold, Status};
use crate::fence::FenceClient;
use crate::ha::lease::{KeepaliveAnswer, KeepaliveOutcome};
use crate::ha::slots::SlotRequest;
use crate::ha::{
    self, Action, ActionResult, CycleEnd, DcsView, DemoteMode, EndFacts, FailsafeView,
    LeaderHeartbeat, LocalView, Next, PgRole, ShutdownPlan,
};
use crate::messages::callbacks::CallbackEvent;
use crate::messages::config::ConfigChanged;
use crate::messages::elector::{FailsafeHeartbeat, JobFinished, Shutdown, SyncDuty, Wake};
use crate::messages::supervisor::{
    DynamicConfigChanged, Follow, GetPgStatus, Job, PgState, PgStatus, RunJob, ShowRewindFailed,
    StopAndWait, StopGracefully, StopMode, SyncSlots,
};
use crate::sync;
use crate::telemetry;
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
    pub show_rewind_failed: Recipient<ShowRewindFailed>,
    pub set_standby_names: Recipient<crate::messages::supervisor::SetStandbyNames>,
    pub dynamic_changed: Recipient<DynamicConfigChanged>,
    pub callbacks: Recipient<CallbackEvent>,
}

pub struct LeaderElector {
    cfg: Arc<Config>,
    /// Shared with each cycle in flight (a cycle copies no configuration).
    dynamic: Arc<DynamicConfig>,
    links: Arc<ElectorLinks>,
    http: reqwest::Client,
    /// A cycle is in flight.
    cycling: bool,
    /// Someone asked for a cycle while one was in flight.
    rerun: bool,
    timer: Option<SpawnHandle>,
    /// The keep-alive tick is scheduled. It runs only while this node holds
    /// a lease (a replica has nothing to keep alive, and every timer wake
    /// is CPU an idle node spends: docs/dcs.md, "Idle cost"); the cycle
    /// that takes or keeps a lease starts it.
    keepalive_ticking: bool,
    /// The HA protocol's state (`ha::Node`), shared with the cycle in
    /// flight, which locks it only between its awaits.
    node: Arc<Mutex<ha::Node>>,
    cluster: Option<(Arc<Cluster>, Instant)>,
    dcs_last_seen: Option<SystemTime>,
    next_cycle_due: Option<Instant>,
    last_role: Option<PgRole>,
    shutting_down: bool,
    /// The fence process beside this daemon (src/fence.rs).
    fence: Arc<Mutex<FenceClient>>,
    /// What this node last wrote to `patroni.dynamic.json`.
    dumped: Option<serde_json::Value>,
    /// The watchdog device (src/watchdog/).
    watchdog: Arc<Mutex<Watchdog>>,
    /// Restarts in flight that released this node's synchronous duty
    /// (`SyncDuty`): while any is, the member key says `nosync`.
    sync_released: usize,
    /// systemd's watchdog (`WatchdogSec=`), pinged after every cycle.
    systemd_watchdog: crate::sd_notify::SystemdWatchdog,
    /// What the REST API reads of this actor (src/actors/ha_board.rs),
    /// published whenever a field it shows changes.
    board: Arc<ElectorBoard>,
}

/// What a finished cycle reports back to the actor.
struct CycleReport {
    cluster: Option<Cluster>,
    role: Option<PgRole>,
    /// What the node said at the end of the cycle; `None`: abandoned.
    end: Option<CycleEnd>,
    /// Failsafe mode became active or ended.
    failsafe_changed: Option<bool>,
}

impl LeaderElector {
    pub fn new(cfg: Arc<Config>, dynamic: DynamicConfig, mut links: ElectorLinks) -> LeaderElector {
        // The HA loop's store calls are timed for `/metrics` (src/dcs/metered.rs).
        links.dcs = crate::dcs::metered::Metered::wrap(links.dcs);
        let data_dir = super::postgres_supervisor::absolute(&cfg.postgresql.data_dir);
        // A fence outlives its daemon long enough for a restart to adopt it,
        // and exits afterwards only once PostgreSQL is not running.
        let orphan_after = (dynamic.timing.ttl * 10).max(Duration::from_secs(60));
        let fence_client = FenceClient::new(&data_dir, orphan_after);
        // The session this node's previous daemon held, if it wrote one:
        // a leader key still under it is ours to keep (docs/dcs.md, "A
        // restarted daemon").
        let session_file = fence_client.dir().join(SESSION_FILE);
        if let Some(id) = std::fs::read_to_string(&session_file)
            .ok()
            .and_then(|s| crate::dcs::SessionId::from_persisted(&s))
        {
            info!(event = crate::events::SESSION_INHERITED, session = ?id);
            links.dcs.inherit_session(&id);
        }
        let fence_dir: Arc<std::path::Path> = Arc::from(fence_client.dir());
        let fence = Arc::new(Mutex::new(fence_client));
        let node = Arc::new(Mutex::new(ha::Node::new(&cfg.name)));
        let watchdog = Arc::new(Mutex::new(Watchdog::from_config(&cfg)));
        let board = Arc::new(ElectorBoard::new(
            published(&cfg, &dynamic, None, None, None),
            node.clone(),
            watchdog.clone(),
            fence_dir.clone(),
        ));
        LeaderElector {
            node,
            fence,
            watchdog,
            board,
            systemd_watchdog: crate::sd_notify::SystemdWatchdog::from_env(),
            http: crate::peer_client::build(&cfg),
            cfg,
            dynamic: Arc::new(dynamic),
            links: Arc::new(links),
            cycling: false,
            rerun: false,
            timer: None,
            keepalive_ticking: false,
            cluster: None,
            dcs_last_seen: None,
            next_cycle_due: None,
            last_role: None,
            shutting_down: false,
            dumped: None,
            sync_released: 0,
        }
    }

    /// One tick of the lease keep-alive (every ttl/4): send one when
    /// `ha::Node::tick` says so, and carry out what its answer changed
    /// (`ha::Node::keepalive_answered`).
    fn keepalive_tick(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let timing = self.dynamic.timing;
        if sync::lock(&self.node).lease_deadline().is_none() {
            // No lease, nothing to keep alive: the tick stops until a cycle
            // holds one again (`ensure_keepalive_ticking`).
            self.keepalive_ticking = false;
            return;
        }
        after(ctx, timing.keepalive_interval(), |act, ctx| {
            act.keepalive_tick(ctx)
        });
        let Some(ticket) = sync::lock(&self.node).tick(Instant::now(), self.dynamic.pause, &timing)
        else {
            return;
        };
        let dcs = self.links.dcs.clone();
        ctx.spawn(
            async move { dcs.keep_alive().await }
                .into_actor(self)
                .map(move |r, act, _| {
                    let answer = match &r {
                        Ok(Some(expiry)) => KeepaliveAnswer::Alive {
                            until: expiry.earliest,
                        },
                        Ok(None) => KeepaliveAnswer::Gone,
                        Err(_) => KeepaliveAnswer::Failed,
                    };
                    let outcome = sync::lock(&act.node).keepalive_answered(ticket, answer, &timing);
                    match outcome {
                        KeepaliveOutcome::Extended(d) => {
                            telemetry::ha::keepalive("extended");
                            sync::lock(&act.fence).extend(d, timing.fence_margin());
                        }
                        KeepaliveOutcome::Lost => {
                            telemetry::ha::keepalive("lost");
                            warn!(
                                event = crate::events::LEASE_KEEPALIVE_LOST,
                                "the lease is gone; the next cycle decides"
                            )
                        }
                        KeepaliveOutcome::Nothing => {
                            if let Err(e) = r {
                                telemetry::ha::keepalive("failed");
                                tracing::debug!(event = crate::events::LEASE_KEEPALIVE_FAILED, error = %e);
                            } else {
                                telemetry::ha::keepalive("ignored");
                            }
                        }
                    }
                }),
        );
    }

    /// Starts the keep-alive tick if this node holds a lease and it is not
    /// running; the first keep-alive a quarter of the ttl after now (the
    /// cycle that calls this has just renewed the lease).
    fn ensure_keepalive_ticking(&mut self, ctx: &mut Context<Self>) {
        if self.keepalive_ticking
            || self.shutting_down
            || sync::lock(&self.node).lease_deadline().is_none()
        {
            return;
        }
        self.keepalive_ticking = true;
        after(ctx, self.dynamic.timing.keepalive_interval(), |act, ctx| {
            act.keepalive_tick(ctx)
        });
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
        sync::lock(&self.node).start_cycle(started);
        let input = CycleInput {
            cfg: self.cfg.clone(),
            dynamic: self.dynamic.clone(),
            links: self.links.clone(),
            http: self.http.clone(),
            node: self.node.clone(),
            fence: self.fence.clone(),
            watchdog: self.watchdog.clone(),
            sync_released: self.sync_released > 0,
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
        telemetry::ha::cycle_finished(started.elapsed());
        // systemd's watchdog (WatchdogSec=): a finished cycle proves the HA
        // loop is alive; a hung loop stops the pings and systemd kills the
        // daemon (KillMode=process: the fence stops PostgreSQL before the
        // lease can end, and the restarted daemon adopts both). Its timeout
        // follows the timing in force (sd_notify::watchdog_timeout).
        self.systemd_watchdog.cycle_finished(&self.dynamic.timing);
        if let Some(active) = report.failsafe_changed {
            info!(event = crate::events::FAILSAFE_MODE_ACTIVE, active);
        }
        if let Some(c) = report.cluster {
            self.dcs_last_seen = Some(SystemTime::now());
            self.apply_dynamic_config(&c);
            self.dump_dynamic_config(&c);
            self.cluster = Some((Arc::new(c), Instant::now()));
        }
        // Role-change callbacks come from the supervisor, which knows a
        // promotion or a demotion happened (not just a different role seen).
        self.last_role = report.role;
        self.ensure_keepalive_ticking(ctx);
        let (fatal, rerun_now) = report.end.map_or((None, false), |e| (e.fatal, e.rerun_now));
        if let Some(reason) = fatal {
            error!(event = crate::events::FATAL, reason = %reason, "stopping the daemon; PostgreSQL and the data directory are left as they are");
            System::current().stop_with_code(1);
            return;
        }
        if rerun_now || self.rerun {
            self.next_cycle_due = Some(Instant::now());
            self.publish();
            ctx.notify(Wake("follow-up cycle"));
            return;
        }
        let switchover_in = self.cluster.as_ref().and_then(|(c, _)| {
            let f = c.failover.as_ref()?;
            ha::switchover::seconds_until_due(&f.value, crate::clock::now_unix())
        });
        let now = Instant::now();
        let due = ha::next_cycle_due(
            started,
            now,
            self.dynamic.timing.loop_wait,
            switchover_in.map(Duration::from_secs_f64),
        );
        let wait = due.saturating_duration_since(now);
        self.next_cycle_due = Some(due);
        self.publish();
        self.timer = Some(after(ctx, wait, |act, ctx| {
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
                self.dynamic = Arc::new(new);
            }
            Err(e) => {
                warn!(event = crate::events::BAD_DYNAMIC_CONFIG, error = %e, "keeping the previous dynamic configuration")
            }
        }
    }

    /// The leader keeps the applied dynamic configuration in
    /// `patroni.dynamic.json`, to restore a lost `config` key from.
    fn dump_dynamic_config(&mut self, cluster: &Cluster) {
        let holds_lease = sync::lock(&self.node).lease_deadline().is_some();
        if !ha::config_restore::save_due(
            holds_lease,
            cluster,
            &self.cfg.name,
            &self.dynamic.raw,
            self.dumped.as_ref(),
        ) {
            return;
        }
        let dir = std::path::Path::new(&self.cfg.postgresql.data_dir);
        match dynamic_file::save(dir, &self.dynamic.raw) {
            Ok(()) => {
                info!(event = crate::events::DYNAMIC_CONFIG_SAVED, file = %dynamic_file::path(dir).display());
                self.dumped = Some(self.dynamic.raw.clone());
            }
            Err(e) => warn!(event = crate::events::DYNAMIC_CONFIG_SAVE_FAILED, error = %e),
        }
    }

    /// Show the REST API what changed (src/actors/ha_board.rs).
    fn publish(&self) {
        self.board.publish(published(
            &self.cfg,
            &self.dynamic,
            self.cluster.clone(),
            self.dcs_last_seen,
            self.next_cycle_due,
        ));
    }

    /// What the REST API reads of this elector.
    pub fn board(&self) -> Arc<ElectorBoard> {
        self.board.clone()
    }
}

/// The board's copy of the elector's fields (cheap: `Arc`s and scalars).
fn published(
    cfg: &Arc<Config>,
    dynamic: &DynamicConfig,
    cluster: Option<(Arc<Cluster>, Instant)>,
    dcs_last_seen: Option<SystemTime>,
    next_cycle_due: Option<Instant>,
) -> Published {
    Published {
        cfg: cfg.clone(),
        timing: dynamic.timing,
        maximum_lag_on_failover: dynamic.maximum_lag_on_failover,
        failsafe_mode: dynamic.failsafe_mode,
        cluster,
        dcs_last_seen,
        next_cycle_due,
    }
}

impl Actor for LeaderElector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_cycle(ctx);
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
        telemetry::ha::job_finished(&msg.0);
        info!(event = crate::events::JOB_FINISHED, outcome = ?msg.0);
        self.start_cycle(ctx);
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
                event = crate::events::CONFIG_RELOAD_PARTIAL,
                "name and scope cannot change while running; restart the daemon for that"
            );
            cfg.name = self.cfg.name.clone();
            cfg.scope = self.cfg.scope.clone();
        }
        self.http = crate::peer_client::build(&cfg);
        wd(&self.watchdog).reconfigure(&cfg, &self.dynamic.timing);
        self.cfg = Arc::new(cfg);
        self.publish();
        self.start_cycle(ctx);
    }
}

impl Handler<FailsafeHeartbeat> for LeaderElector {
    type Result = ();
    fn handle(&mut self, msg: FailsafeHeartbeat, _ctx: &mut Context<Self>) {
        let name = msg.name.clone();
        let hb = LeaderHeartbeat {
            name: msg.name,
            conn_url: msg.conn_url,
            api_url: msg.api_url,
            at: msg.at,
        };
        if sync::lock(&self.node).heartbeat(hb, self.dynamic.timing.ttl) {
            info!(event = crate::events::FAILSAFE_HEARTBEAT, leader = %name, "a leader without DCS access confirmed it runs; not racing while it does");
        }
    }
}

impl Handler<SyncDuty> for LeaderElector {
    type Result = ResponseActFuture<Self, bool>;
    fn handle(&mut self, msg: SyncDuty, _ctx: &mut Context<Self>) -> Self::Result {
        match msg {
            SyncDuty::Resume => {
                self.sync_released = self.sync_released.saturating_sub(1);
                Box::pin(fut::ready(false))
            }
            SyncDuty::Release => {
                // Patroni wraps only a replica's restart in a synchronous
                // mode (`is_synchronous_mode() and not has_lock()`).
                let holds_lease = sync::lock(&self.node).lease_deadline().is_some();
                if !ha::sync::restart_releases_duty(
                    &self.dynamic.sync,
                    self.cfg.tags.nosync,
                    holds_lease,
                ) {
                    return Box::pin(fut::ready(false));
                }
                self.sync_released += 1;
                let (links, cfg, dynamic) =
                    (self.links.clone(), self.cfg.clone(), self.dynamic.clone());
                Box::pin(
                    async move {
                        super::sync_steps::release_duty(&links, &cfg, &dynamic).await;
                        true
                    }
                    .into_actor(self),
                )
            }
        }
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
        let fence = self.fence.clone();
        let watchdog = self.watchdog.clone();
        // docs/ha.md §14 (`ha::Node::shutdown`).
        let release_lock = match sync::lock(&self.node).shutdown(self.dynamic.pause) {
            ShutdownPlan::LeaveRunning => None,
            ShutdownPlan::Stop { release_lock } => Some(release_lock),
        };
        let Some(release_lock) = release_lock else {
            // Paused: the watchdog is disarmed already (every paused cycle
            // disarms it); make sure.
            wd(&self.watchdog).disable();
            // docs/ha.md §14: paused, PostgreSQL and the lock are left
            // alone. The session is not revoked either (that would drop the
            // leader key with it); it lapses after ttl unless a restarted
            // daemon takes over first. The fence stays paused.
            info!(
                event = crate::events::SHUTDOWN,
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
        };
        let (cfg, dynamic) = (self.cfg.clone(), self.dynamic.clone());
        Box::pin(
            async move {
                if !release_lock {
                    super::sync_steps::release_duty(&links, &cfg, &dynamic).await;
                }
                info!(event = crate::events::SHUTDOWN, "stopping PostgreSQL (fast)");
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
                        warn!(event = crate::events::SHUTDOWN, error = %e, "PostgreSQL did not stop cleanly")
                    }
                    Err(e) => warn!(event = crate::events::SHUTDOWN, error = %e),
                }
                if release_lock {
                    match links.dcs.delete_leader().await {
                        Ok(true) => info!(event = crate::events::LOCK_RELEASED, reason = "shutdown"),
                        Ok(false) => info!(event = crate::events::LOCK_NOT_MINE, reason = "shutdown"),
                        Err(e) => warn!(event = crate::events::LOCK_RELEASE_FAILED, error = %e),
                    }
                }
                if let Err(e) = links.dcs.release_session().await {
                    warn!(event = crate::events::SESSION_RELEASE_FAILED, error = %e);
                }
            }
            .into_actor(self)
            .map(|_, _, _| System::current().stop()),
        )
    }
}

/// `ctx.run_later` on a timerfd (src/long_sleep.rs: one wake-up per sleep,
/// where tokio's timer wheel made two or three).
fn after(
    ctx: &mut Context<LeaderElector>,
    wait: Duration,
    then: impl FnOnce(&mut LeaderElector, &mut Context<LeaderElector>) + 'static,
) -> SpawnHandle {
    ctx.spawn(
        actix::fut::wrap_future::<_, LeaderElector>(crate::long_sleep::sleep(wait))
            .map(move |(), act, ctx| then(act, ctx)),
    )
}

/// A snapshot of what a cycle needs, so the cycle runs without borrowing the
/// actor (its messages, a `Wake` or a failsafe heartbeat, are handled meanwhile).
struct CycleInput {
    cfg: Arc<Config>,
    dynamic: Arc<DynamicConfig>,
    links: Arc<ElectorLinks>,
    http: reqwest::Client,
    /// The node, its cycle started (`ha::Node::start_cycle`).
    node: Arc<Mutex<ha::Node>>,
    fence: Arc<Mutex<FenceClient>>,
    watchdog: Arc<Mutex<Watchdog>>,
    /// A restart released the synchronous duty (`SyncDuty`): the member
    /// key says `nosync` until it is done.
    sync_released: bool,
}

/// One cycle (docs/ha.md §3.1): gather, feed `ha::Node`, carry out, report
/// back. The node is locked only between awaits.
async fn run_cycle(input: CycleInput) -> CycleReport {
    let CycleInput {
        cfg,
        dynamic,
        links,
        http,
        node,
        fence,
        watchdog,
        sync_released,
    } = input;
    let mut report = CycleReport {
        cluster: None,
        role: None,
        end: None,
        failsafe_changed: None,
    };
    let timing = dynamic.timing;
    let last_status = sync::lock(&node).last_status().cloned();

    let (dcs_view, pg) = futures_util::join!(
        links.dcs.load_cluster(),
        links.get_pg.send(GetPgStatus { take_outcome: true })
    );
    let pg = match pg {
        Ok(pg) => pg,
        Err(e) => {
            error!(event = crate::events::SUPERVISOR_UNAVAILABLE, error = %e);
            report.failsafe_changed = sync::lock(&node).abandon_cycle();
            return report;
        }
    };
    report.role = pg.facts.role;
    #[cfg(debug_assertions)]
    debug_stall(&cfg).await;
    let dcs_view = match dcs_view {
        Ok(c) => DcsView::Ok(c),
        Err(e) => {
            warn!(event = crate::events::DCS_UNREACHABLE, error = %e, "will retry next cycle");
            DcsView::Failed(e)
        }
    };

    let ask = match &dcs_view {
        DcsView::Ok(c) => sync::lock(&node).peers_to_ask(c, &pg.facts, dynamic.failsafe_mode),
        DcsView::Failed(_) => Vec::new(),
    };
    let peers = join_all(
        ask.iter()
            .map(|p| fetch_peer(&http, p, timing.peer_timeout())),
    )
    .await;

    // Failsafe (docs/ha.md §10.1): DCS gone, I run as primary and the last
    // known failsafe key lists me: ask the others to confirm me.
    let confirm = sync::lock(&node).failsafe_to_confirm(
        &dcs_view,
        &pg.facts,
        dynamic.failsafe_mode,
        Instant::now(),
    );
    let mut failsafe_acks = None;
    if let Some(members) = &confirm {
        let body = heartbeat_body(&cfg.name, &conn_url(&cfg), &api_url(&cfg));
        failsafe_acks = Some(confirm_members(&http, members, &cfg.name, &body).await);
    }

    // Only worth a look at the disk when the key needs restoring.
    let config_backup = match &dcs_view {
        DcsView::Ok(c) if ha::config_restore::backup_wanted(c, &cfg.name) => {
            dynamic_file::load(std::path::Path::new(&cfg.postgresql.data_dir)).is_some()
        }
        _ => false,
    };
    // docs/replication-modes.md §3: the primary's standbys as PostgreSQL
    // reports them, for the sync rules.
    let sync_facts = match (&dcs_view, &pg.synchronous_standby_names) {
        (DcsView::Ok(c), Some(names)) if pg.facts.is_primary() => {
            let rows = super::sync_steps::replica_rows(&pg.replication);
            sync::lock(&node).sync_facts(&dynamic.sync, c, &rows, names, pg.facts.lsn.unwrap_or(0))
        }
        _ => Default::default(),
    };
    // The lease deadline, the failsafe leader's heartbeat, the last known
    // failsafe key and the last step-down are the node's (`Node::decide`).
    let local = LocalView {
        name: cfg.name.clone(),
        tags: cfg.tags.clone(),
        timing,
        maximum_lag_on_failover: dynamic.maximum_lag_on_failover,
        sync: dynamic.sync,
        sync_facts,
        primary_start_timeout: Duration::from_secs(dynamic.primary_start_timeout),
        rejoin_pending: false,
        starting_primary_for: pg
            .starting_primary_since
            .map(|t| Instant::now().saturating_duration_since(t)),
        can_bootstrap: cfg.bootstrap.is_some(),
        can_clone_without_leader: cfg.postgresql.can_clone_without_leader(),
        data_dir: pg.data_dir.clone(),
        pg: pg.facts.clone(),
        busy: pg.busy,
        outcome: pg.outcome.clone(),
        lease_deadline: None,
        fence_armed: crate::sync::lock(&fence).confirmed_point(),
        peers,
        rewind: ha::RewindView {
            enabled: cfg
                .postgresql
                .use_pg_rewind
                .unwrap_or(dynamic.use_pg_rewind),
            remove_on_failure: cfg.postgresql.remove_data_directory_on_rewind_failure,
            remove_on_diverged: cfg.postgresql.remove_data_directory_on_diverged_timelines,
            // The node's (`ha::rewind`).
            failed: false,
        },
        leader_key_foreign: match &dcs_view {
            DcsView::Ok(c) => leader_key_foreign(c, &cfg.name, links.dcs.as_ref()),
            DcsView::Failed(_) => false,
        },
        failsafe: FailsafeView {
            enabled: dynamic.failsafe_mode,
            api_url: api_url(&cfg),
            last_known: None,
            acks: failsafe_acks,
            heartbeat: None,
        },
        config_backup,
        switchover: ha::SwitchoverView {
            now_unix: crate::clock::now_unix(),
            demoted_gracefully_at: None,
        },
        paused: dynamic.pause,
        watchdog: wd(&watchdog).state(&timing),
        standby_cluster: dynamic
            .standby_cluster
            .as_ref()
            .map(|sc| ha::standby_cluster::remote_upstream(sc.stream_address())),
    };
    let (decision, repeat) = {
        let mut n = sync::lock(&node);
        let d = n.decide(&dcs_view, local, Instant::now());
        let repeat = n.is_repeat(&d);
        (d, repeat)
    };
    telemetry::ha::decided(decision.kind());
    // Patroni's words as the messages, pgpilot's reason and facts as
    // fields beside them (docs/operations.md, "Patroni's messages").
    if repeat && cfg.log.deduplicate_heartbeat_logs == Some(true) {
        // The same steady state as last cycle, and the operator asked for
        // no repeats (Patroni's `log.deduplicate_heartbeat_logs`).
        for note in &decision.notes {
            tracing::debug!(event = crate::events::CYCLE_NOTE, "{note}");
        }
        tracing::debug!(event = crate::events::DECISION, reason = %decision.reason, "{}", decision.summary);
    } else {
        for note in &decision.notes {
            info!(event = crate::events::CYCLE_NOTE, "{note}");
        }
        let actions: Vec<String> = decision.actions.iter().map(ToString::to_string).collect();
        info!(event = crate::events::DECISION, reason = %decision.reason, actions = ?actions,
              leader = ?dcs_view_leader(&dcs_view), role = ?pg.facts.role, lsn = ?pg.facts.lsn,
              "{}", decision.summary);
    }

    let cluster = match dcs_view {
        DcsView::Ok(c) => Some(c),
        DcsView::Failed(_) => None,
    };
    // `member_slots_ttl`: only the lock holder keeps and publishes them.
    let retain = sync::lock(&node).retain_slots(
        cluster.as_ref(),
        dynamic.use_slots,
        Duration::from_secs(dynamic.slots.member_slots_ttl),
        Instant::now(),
    );
    let ctx = ExecCtx {
        cfg: &cfg,
        dynamic: &dynamic,
        links: &links,
        cluster: cluster.as_ref(),
        pg: &pg,
        last_status: &last_status,
        retain: &retain,
        node: &node,
    };
    for action in decision.actions {
        let result = if action == Action::ActivateWatchdog {
            // Before leading (docs/ha.md §12); a required watchdog that
            // cannot be armed ends the cycle, and the next one steps down.
            match wd(&watchdog).activate(&timing) {
                Ok(()) => ActionResult::Done,
                Err(why) => ActionResult::Failed(why.to_string()),
            }
        } else {
            execute(&action, &ctx).await
        };
        count_action(&action, &result, cluster.as_ref());
        let step = sync::lock(&node).action_done(&action, result, timing.ttl);
        if let Some(order) = step.watchdog {
            wd(&watchdog).apply(order, &timing);
        }
        match step.next {
            Next::Continue => {}
            Next::Rerun | Next::Fatal(_) => break,
            Next::Stop(why) => {
                warn!(event = crate::events::ACTION_FAILED, action = %action, reason = %why);
                break;
            }
        }
    }

    if let Some(c) = &cluster
        && ha::slots::replica_sync_due(c, &cfg.name, dynamic.use_slots, &pg.facts, pg.busy)
    {
        let req = slot_request(&cfg, &dynamic, c, false, &[]);
        let now = Instant::now();
        if sync::lock(&node).replica_slots_due(&req, pg.facts.lsn, now) {
            let ok = send_slots(&links, req.clone()).await.is_some();
            sync::lock(&node).replica_slots_synced(ok.then_some(req), pg.facts.lsn, now);
        }
    } else {
        sync::lock(&node).replica_slots_synced(None, None, Instant::now());
    }

    if cluster.is_some() {
        let mut pg = pg.clone();
        // The sticky state is the node's (docs/ha.md §8.2); the supervisor
        // shows it from `ShowRewindFailed` on, this cycle's snapshot not yet.
        if sync::lock(&node).rewind_failed() && !pg.facts.running && pg.busy.is_none() {
            pg.state = PgState::RewindFailed;
        }
        let mut data = member_data(&cfg, &pg, dynamic.pause);
        data.tags = effective_tags(&cfg.tags, sync_released);
        // It renews the node's lease only when due (ttl/4), so it does not
        // move the leader's lease deadline: RenewLock and the keep-alive do.
        if let Err(e) = links.dcs.touch_member(&data).await {
            warn!(event = crate::events::MEMBER_UPDATE_FAILED, error = %e);
        }
    }
    // docs/replication-modes.md §3: a node that does not lead runs with
    // no synchronous standbys of its own (Patroni clears them on a start
    // as replica), so a promotion never inherits an old list. After the
    // member key: nothing waits on this, and the member key should not.
    if let Some(c) = &cluster {
        let i_lead = c.leader_name() == Some(cfg.name.as_str());
        super::sync_steps::settle(&links, &dynamic.sync, c, i_lead, pg.facts.is_primary()).await;
    }
    let end = sync::lock(&node).finish_cycle(
        EndFacts {
            pg: &pg.facts,
            busy: pg.busy,
            paused: dynamic.pause,
            cluster: cluster.as_ref(),
        },
        Instant::now(),
    );
    crate::sync::lock(&fence).apply(end.fence, timing.fence_margin(), dynamic.pause);
    wd(&watchdog).apply(end.watchdog, &timing);
    keep_session(&links, &fence);
    report.failsafe_changed = end.failsafe_changed;
    report.end = Some(end);
    report.cluster = cluster;
    report
}

/// Where a daemon leaves its DCS session for the one that follows it on
/// this data directory, beside the fence's files.
const SESSION_FILE: &str = "dcs_session";

/// Write this node's current session to [`SESSION_FILE`] when it changed
/// (a new lease: at start, after a ttl change or an expiry), so that a
/// daemon restarted after a crash keeps the leader key its predecessor
/// held instead of letting it lapse into a failover. Only the node's own
/// disk carries it: a second daemon of the same name elsewhere has no
/// claim on the session.
fn keep_session(links: &ElectorLinks, fence: &Mutex<FenceClient>) {
    let Some(id) = links.dcs.session() else {
        return;
    };
    // What was written last, per file: the file is read once per change,
    // not once per cycle.
    static WRITTEN: Mutex<BTreeMap<std::path::PathBuf, String>> = Mutex::new(BTreeMap::new());
    let text = id.to_persisted();
    let path = sync::lock(fence).dir().join(SESSION_FILE);
    let mut written = sync::lock(&WRITTEN);
    if written.get(&path) == Some(&text) {
        return;
    }
    match crate::atomic_file::write_atomic(&path, text.as_bytes()) {
        Ok(()) => {
            written.insert(path, text);
        }
        Err(e) => {
            warn!(event = crate::events::SESSION_FILE_FAILED, path = %path.display(), error = %e)
        }
    }
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

/// The leader key names `me` but is attached to a session that is not this
/// process's (docs/ha.md §3.4). A key without a session is judged by its
/// name, as before.
fn leader_key_foreign(c: &Cluster, me: &str, dcs: &dyn crate::dcs::Dcs) -> bool {
    c.leader
        .as_ref()
        .filter(|l| l.name == me)
        .and_then(|l| l.session.as_ref())
        .is_some_and(|s| !dcs.holds_session(s))
}

/// An action's result, counted for `/metrics` (src/telemetry/ha.rs): by
/// kind and result; a promotion job started under its cause (the failover
/// key of this cycle's view, `ha::switchover::promotion_cause`), a
/// demotion carried out under its mode.
fn count_action(action: &Action, result: &ActionResult, cluster: Option<&Cluster>) {
    telemetry::ha::action_done(action.kind(), telemetry::ha::result_label(result));
    if matches!(result, ActionResult::Failed(_)) {
        return;
    }
    match action {
        Action::Promote => {
            telemetry::ha::promotion_started(ha::switchover::promotion_cause(cluster));
        }
        Action::Demote { mode } => telemetry::ha::demoted(*mode),
        _ => {}
    }
}

fn dcs_view_leader(v: &DcsView) -> Option<String> {
    match v {
        DcsView::Ok(c) => c.leader_name().map(str::to_owned),
        DcsView::Failed(_) => None,
    }
}

/// What carrying an action out needs.
struct ExecCtx<'a> {
    cfg: &'a Config,
    dynamic: &'a DynamicConfig,
    links: &'a ElectorLinks,
    cluster: Option<&'a Cluster>,
    pg: &'a PgStatus,
    /// The status published last when the cycle started.
    last_status: &'a Option<Status>,
    retain: &'a [String],
    node: &'a Mutex<ha::Node>,
}

/// A DCS write that may find the key taken or changed.
fn dcs_result(r: Result<bool, crate::dcs::DcsError>) -> ActionResult {
    match r {
        Ok(true) => ActionResult::Done,
        Ok(false) => ActionResult::Refused,
        Err(e) => ActionResult::Failed(e.to_string()),
    }
}

/// Carry `action` out and say how it went; what that means for the cycle
/// is `ha::Node::action_done`'s to say.
async fn execute(action: &Action, x: &ExecCtx<'_>) -> ActionResult {
    let ExecCtx {
        cfg,
        dynamic,
        links,
        cluster,
        pg,
        last_status,
        retain,
        node,
    } = *x;
    match action {
        Action::TakeInitialize => match links.dcs.initialize(true, "").await {
            Ok(true) => {
                info!(
                    event = crate::events::INITIALIZE_TAKEN,
                    "won the bootstrap race"
                );
                ActionResult::Done
            }
            Ok(false) => {
                info!(
                    event = crate::events::INITIALIZE_LOST,
                    "another node bootstraps the cluster"
                );
                ActionResult::Refused
            }
            Err(e) => ActionResult::Failed(e.to_string()),
        },
        Action::CreateInitialize { sysid } => dcs_result(links.dcs.initialize(true, sysid).await),
        Action::CompleteBootstrap { sysid } => {
            if let Err(e) = links.dcs.initialize(false, sysid).await {
                return ActionResult::Failed(e.to_string());
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
                    info!(event = crate::events::BOOTSTRAP_PUBLISHED, sysid = %sysid);
                    ActionResult::Done
                }
                Err(e) => ActionResult::Failed(e.to_string()),
            }
        }
        Action::CancelInitialize => match links.dcs.cancel_initialization().await {
            Ok(()) => {
                warn!(
                    event = crate::events::INITIALIZE_RELEASED,
                    "bootstrap failed; another attempt may start"
                );
                ActionResult::Done
            }
            Err(e) => ActionResult::Failed(e.to_string()),
        },
        Action::AcquireLock => {
            match links.dcs.attempt_to_acquire_leader().await {
                Ok(LeaderHold::Held { expiry }) => {
                    // What the store guarantees (docs/dcs.md, "Versions,
                    // sessions and expiry").
                    info!(event = crate::events::LOCK_ACQUIRED, lsn = ?pg.facts.lsn);
                    ActionResult::Renewed(expiry.earliest)
                }
                Ok(LeaderHold::Lost) => {
                    info!(
                        event = crate::events::LOCK_LOST_RACE,
                        "another node took the leader key"
                    );
                    ActionResult::Refused
                }
                Err(e) => ActionResult::Failed(e.to_string()),
            }
        }
        Action::RenewLock => {
            let Some(leader) = cluster.and_then(|c| c.leader.clone()) else {
                return ActionResult::Failed("no leader key to renew".into());
            };
            match links.dcs.update_leader(&leader).await {
                Ok(LeaderHold::Held { expiry }) => {
                    // The renewal the hold rests on, perhaps the keep-alive's
                    // (docs/dcs.md, "Idle cost"): never later than the store's.
                    // A standby leader keeps its replicas' slots and
                    // publishes its position too (docs/ha.md §16).
                    if pg.facts.is_primary() || (pg.facts.is_replica() && pg.follows_remote) {
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
                                warn!(event = crate::events::STATUS_WRITE_FAILED, error = %e);
                            } else {
                                sync::lock(node).status_written(status);
                            }
                        }
                    }
                    ActionResult::Renewed(expiry.earliest)
                }
                Ok(LeaderHold::Lost) => {
                    warn!(
                        event = crate::events::LOCK_LOST,
                        "the leader key is no longer mine"
                    );
                    ActionResult::Refused
                }
                Err(e) => ActionResult::Failed(e.to_string()),
            }
        }
        // Compare-and-delete on this process's sessions (docs/dcs.md,
        // "leader"): a key of my name under another session stays.
        Action::ReleaseLock => match links.dcs.delete_leader().await {
            Ok(true) => {
                info!(event = crate::events::LOCK_RELEASED);
                ActionResult::Done
            }
            Ok(false) => {
                warn!(
                    event = crate::events::LOCK_NOT_MINE,
                    "no leader key under my session: nothing released"
                );
                ActionResult::Refused
            }
            Err(e) => ActionResult::Failed(e.to_string()),
        },
        Action::Bootstrap => job(links, Job::Bootstrap).await,
        Action::Clone { from } => job(links, Job::Clone { from: from.clone() }).await,
        Action::BootstrapStandby { from } => {
            job(links, Job::BootstrapStandby { from: from.clone() }).await
        }
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
        Action::ShowRewindFailed => match links.show_rewind_failed.send(ShowRewindFailed).await {
            Ok(()) => ActionResult::Done,
            Err(e) => ActionResult::Failed(e.to_string()),
        },
        Action::WriteHistory => {
            if let Some(c) = cluster {
                super::history_writer::write(cfg, dynamic, links.dcs.as_ref(), c, pg).await;
            }
            ActionResult::Done
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
            info!(event = crate::events::PROMOTE, "promoting PostgreSQL");
            job(links, Job::Promote).await
        }
        Action::Demote {
            mode: DemoteMode::Graceful,
        } => {
            warn!(
                event = crate::events::DEMOTE,
                mode = "graceful",
                "switchover: checkpoint, stop, hand over the lock"
            );
            // The node drops the lease (`Cycle::action_done`).
            let stopped = match links.stop_gracefully.send(StopGracefully).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match stopped {
                Ok(lsn) => {
                    match super::switchover::hand_over(links.dcs.as_ref(), lsn, last_status).await {
                        Ok(s) => ActionResult::SteppedDown(s),
                        Err(e) => ActionResult::Failed(e.to_string()),
                    }
                }
                Err(e) => ActionResult::Failed(e),
            }
        }
        Action::ClearFailover { version } => {
            match links.dcs.set_failover_value("{}", Some(version)).await {
                Ok(true) => info!(event = crate::events::FAILOVER_KEY_CLEARED),
                Ok(false) => info!(
                    event = crate::events::FAILOVER_KEY_CHANGED,
                    "the failover key changed meanwhile; not cleared"
                ),
                Err(e) => warn!(event = crate::events::FAILOVER_KEY_CLEAR_FAILED, error = %e),
            }
            ActionResult::Done
        }
        Action::Demote { mode } => {
            let stop = match mode {
                DemoteMode::ImmediateNoLock => StopMode::Immediate,
                DemoteMode::Offline | DemoteMode::Graceful => StopMode::Fast,
            };
            warn!(event = crate::events::DEMOTE, mode = ?mode, "stopping PostgreSQL so it accepts no more writes");
            // The node drops the lease: a demoted node no longer counts
            // itself the leader (`Cycle::action_done`).
            match links.stop_pg.send(StopAndWait(stop)).await {
                Ok(Ok(())) => ActionResult::Done,
                Ok(Err(e)) => ActionResult::Failed(e.to_string()),
                Err(e) => ActionResult::Failed(e.to_string()),
            }
        }
        Action::Follow { upstream } => match links.follow.send(Follow(upstream.clone())).await {
            Ok(Ok(())) => {
                info!(event = crate::events::FOLLOW, leader = %upstream.name);
                ActionResult::Done
            }
            Ok(Err(e)) => ActionResult::Failed(e.to_string()),
            Err(e) => ActionResult::Failed(e.to_string()),
        },
        // The node ends the cycle and the daemon; nothing to carry out.
        Action::Fatal { .. } => ActionResult::Done,
        Action::WriteFailsafe { members } => {
            let value = serde_json::to_string(members).unwrap_or_else(|_| "{}".into());
            match links.dcs.set_failsafe_value(&value).await {
                Ok(_) => {
                    info!(event = crate::events::FAILSAFE_WRITTEN, members = ?members.keys().collect::<Vec<_>>())
                }
                Err(e) => warn!(event = crate::events::FAILSAFE_WRITE_FAILED, error = %e),
            }
            ActionResult::Done
        }
        // The node keeps the confirmations (`Cycle::action_done`).
        Action::StayPrimaryOnFailsafe => ActionResult::Done,
        // Carried out by `run_cycle`, which owns the watchdog.
        Action::ActivateWatchdog => ActionResult::Done,
        Action::Sync(step) => super::sync_steps::run(links, &cfg.name, step).await,
        Action::RestoreConfig => {
            let dir = std::path::Path::new(&cfg.postgresql.data_dir);
            match dynamic_file::load(dir) {
                Some(v) => match links.dcs.set_config_value(&v.to_string(), None).await {
                    Ok(_) => {
                        warn!(event = crate::events::CONFIG_RESTORED, file = %dynamic_file::path(dir).display(),
                                   "the config key was missing or invalid; restored it")
                    }
                    Err(e) => warn!(event = crate::events::CONFIG_RESTORE_FAILED, error = %e),
                },
                None => warn!(
                    event = crate::events::CONFIG_RESTORE_FAILED,
                    "no valid patroni.dynamic.json"
                ),
            }
            ActionResult::Done
        }
    }
}

/// Ask the supervisor to sync the slots of this node (docs/ha.md §13)
/// and return `status.slots` ([`SlotRequest::published`]): on the leader
/// the positions of the slots it manages plus its own slot name at `lsn`.
/// `retain` is the leader's `retain_slots`.
async fn sync_slots(
    links: &ElectorLinks,
    cfg: &Config,
    dynamic: &DynamicConfig,
    cluster: &Cluster,
    i_lead: bool,
    retain: &[String],
    lsn: Option<u64>,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut req = slot_request(cfg, dynamic, cluster, i_lead, retain);
    if i_lead {
        req.my_lsn = lsn;
    }
    send_slots(links, req).await
}

/// The slots node `cfg.name` should have, from one DCS read.
fn slot_request(
    cfg: &Config,
    dynamic: &DynamicConfig,
    cluster: &Cluster,
    i_lead: bool,
    retain: &[String],
) -> SlotRequest {
    SlotRequest::new(
        cluster,
        &cfg.name,
        &cfg.tags,
        i_lead,
        &dynamic.slots,
        retain,
    )
}

/// Have the supervisor apply `req`; the positions it read, `None` if the
/// sync failed.
async fn send_slots(
    links: &ElectorLinks,
    req: SlotRequest,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let positions = links.sync_slots.send(SyncSlots(req)).await.ok().flatten()?;
    Some(positions.into_iter().map(|(k, v)| (k, v.into())).collect())
}

async fn job(links: &ElectorLinks, job: Job) -> ActionResult {
    match links.run_job.send(RunJob(job)).await {
        Ok(Ok(())) => ActionResult::Done,
        Ok(Err(e)) => ActionResult::Failed(e.to_string()),
        Err(e) => ActionResult::Failed(e.to_string()),
    }
}
