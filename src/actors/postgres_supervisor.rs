//! The PostgresSupervisor: owns the postmaster child process.
//!
//! It reports facts (`GetPgStatus`), runs long jobs in the background
//! (bootstrap, clone, start, promote...) and tells the elector when one
//! finishes. It never decides anything: the elector asks, it carries out.

use crate::postgres::settings_gate::SettingsGate;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{error, info, warn};

use super::pg_callbacks::PgCallbacks;
use super::postgres_jobs::{self as jobs, JobEnv};
use crate::config::{Config, DynamicConfig};
use crate::ha::logical_slots::{LeaderCatalogXmin, LogicalReadiness, PrimarySlot};
use crate::ha::{DataDir, JobKind, JobOutcome, PgFacts, PgRole, Upstream};
use crate::messages::board::PgBoard;
use crate::messages::callbacks::CallbackEvent;
use crate::messages::config::{ConfigChanged, ConfigReloaded};
use crate::messages::elector::{JobFinished, SyncDuty};
use crate::messages::restart::{self as restart, Fire, RestartOptions};
use crate::messages::supervisor::{
    DynamicConfigChanged, Follow, GetPgStatus, Job, PgOp, PgOpOutcome, PgState, PgStatus,
    ReplicationRow, RunJob, SetStandbyNames, ShowRewindFailed, StopAndWait, StopGracefully,
    SupervisorError, SyncSlots,
};
use crate::postgres::{
    Binaries, LocalSession, Postmaster, SnapshotError, StopMode, controldata, datadir, params,
    query,
};

pub struct PostgresSupervisor {
    /// Shared with every job and status read in flight; a change makes a
    /// new copy (`Arc::make_mut`), so one in flight keeps what it began with.
    env: Arc<JobEnv>,
    postmaster: Option<Postmaster>,
    state: PgState,
    busy: Option<JobKind>,
    outcome: Option<JobOutcome>,
    /// The member the standby is configured to stream from.
    following: Option<Upstream>,
    listener: Recipient<JobFinished>,
    /// The configuration changed while a job ran: rewrite and reload once
    /// the job is done.
    apply_pending: bool,
    /// Where `on_*` callback events go, and the role they report.
    callbacks: Option<Recipient<CallbackEvent>>,
    /// The elector, which releases a synchronous standby's duty around a
    /// scheduled restart (docs/replication-modes.md §3).
    sync_duty: Option<Recipient<SyncDuty>>,
    pg_callbacks: PgCallbacks,
    /// The role the running job starts PostgreSQL as.
    job_role: Option<PgRole>,
    /// The running job's future, so `POST /reinitialize` with `force` can
    /// cancel it.
    job_handle: Option<SpawnHandle>,
    /// What the running job is called in "`<x> already in progress`".
    busy_label: &'static str,
    /// A running start as primary: since when, and how to make it give up
    /// (`primary_start_timeout`, docs/ha.md §8.1).
    start_primary: Option<(Instant, tokio::sync::watch::Sender<bool>)>,
    /// Told when the running job has ended (a stop waiting for a cancelled
    /// start).
    job_end: Vec<tokio::sync::oneshot::Sender<()>>,
    /// The restart `POST /restart` scheduled, with its timer.
    scheduled: Option<ScheduledRestart>,
    /// PostgreSQL's start time as last seen by a status query.
    last_start_time: Option<String>,
    /// Data directories moved aside by `POST /reinitialize` rebuilds not
    /// finished yet (a forced one cancels the one before): the rebuild
    /// that succeeds deletes them all.
    rebuild_leftovers: Arc<std::sync::Mutex<Vec<PathBuf>>>,
    /// The long-lived connection of status questions and slot sync.
    session: LocalSession,
    /// What the last full status (the HA loop's) read of the settings only
    /// a restart applies; other askers (the REST API) get this copy, as
    /// Patroni's API reports the flag its HA loop last set.
    last_pending_restart: std::collections::BTreeMap<String, crate::dcs::PendingChange>,
    /// When the HA loop's status reads `pg_settings` again.
    settings_gate: SettingsGate,
    /// What the last full status read that a light one does not (see
    /// [`query::SnapshotKind`]); forgotten whenever a job starts or ends.
    known: Option<Known>,
    /// Counts job starts and ends and stops: a status read across one does
    /// not set `known`.
    epoch: u64,
    /// The last light status (the REST API's), published for the API to
    /// read without a message (`messages::board`); cleared by
    /// [`Self::changed`].
    board: Arc<PgBoard>,
    /// Copied logical slots not yet known to be safe after a failover
    /// (docs/ha.md §13.1).
    logical_readiness: LogicalReadiness,
    /// The logical slots found at the first replica sync were put into
    /// [`Self::logical_readiness`] (Patroni checks them all at start-up).
    readiness_seeded: bool,
    /// The leader's `restart_lsn` of each logical slot when it was last
    /// copied here ([`crate::ha::logical_slots::worth_copying`]).
    copied_restart_lsn: std::collections::BTreeMap<String, Option<u64>>,
}

/// Facts of the running server that only the supervisor's own jobs change
/// (the system identifier) or that only move forward (a standby's
/// timeline), read by the HA loop's full status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Known {
    sysid: String,
    timeline: u64,
}

/// A restart waiting for its time (docs/rest-api.md, "POST /restart, DELETE /restart").
struct ScheduledRestart {
    at_unix: f64,
    schedule: String,
    options: RestartOptions,
    /// The postmaster start time when it was requested: a restart in
    /// between cancels it.
    postmaster_start_time: Option<String>,
    timer: SpawnHandle,
}

impl ScheduledRestart {
    fn json(&self) -> serde_json::Value {
        restart::scheduled_json(
            &self.schedule,
            &self.options,
            self.postmaster_start_time.as_deref(),
        )
    }
}

/// The name a job goes by in Patroni's "<action> already in progress".
/// `busy_label` of a restart (`POST /restart`, scheduled), which runs as a
/// start job.
const RESTART_LABEL: &str = "restart";

fn job_label(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Bootstrap => "bootstrap",
        JobKind::Clone => "clone",
        JobKind::Reinitialize => "reinitialize",
        JobKind::Start => "start",
        JobKind::Stop => "stop",
        JobKind::Promote => "promote",
        JobKind::Rewind => "rewind",
    }
}

/// Resolve a configured path against the working directory, as Patroni's
/// relative `data_dir: data/postgresql0` expects.
pub fn absolute(p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

/// `synchronous_standby_names` as the previous daemon left it in the
/// managed postgresql.conf (docs/replication-modes.md, "A daemon restart
/// keeps the list"), as Patroni's `load_current_server_parameters` takes
/// over the running value when it joins a running PostgreSQL.
fn inherited_standby_names(config_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(config_dir.join(datadir::POSTGRESQL_CONF)).ok()?;
    crate::postgres::conf::conf_value(&text, "synchronous_standby_names")
}

impl PostgresSupervisor {
    pub fn new(
        cfg: Arc<Config>,
        dynamic: DynamicConfig,
        listener: Recipient<JobFinished>,
    ) -> PostgresSupervisor {
        let data_dir = absolute(&cfg.postgresql.data_dir);
        let config_dir = absolute(cfg.postgresql.config_dir());
        let bins = Binaries::from_config(&cfg.postgresql);
        let inherited_standby_names = inherited_standby_names(&config_dir);
        let env = JobEnv {
            cfg,
            dynamic,
            bins,
            data_dir,
            config_dir,
            hot_standby_feedback: false,
            standby_names: None,
            inherited_standby_names,
        };
        let session = LocalSession::new(env.local_conn(), env.dynamic.timing.local_query_timeout());
        PostgresSupervisor {
            env: Arc::new(env),
            postmaster: None,
            state: PgState::Stopped,
            busy: None,
            outcome: None,
            following: None,
            listener,
            apply_pending: false,
            callbacks: None,
            sync_duty: None,
            pg_callbacks: PgCallbacks::default(),
            job_role: None,
            job_handle: None,
            start_primary: None,
            job_end: Vec::new(),
            busy_label: "",
            scheduled: None,
            last_start_time: None,
            rebuild_leftovers: Arc::default(),
            session,
            last_pending_restart: Default::default(),
            settings_gate: SettingsGate::default(),
            known: None,
            epoch: 0,
            logical_readiness: LogicalReadiness::default(),
            readiness_seeded: false,
            copied_restart_lsn: Default::default(),
            board: Arc::default(),
        }
    }

    /// What the REST API reads of this supervisor.
    pub fn pg_board(&self) -> Arc<PgBoard> {
        self.board.clone()
    }

    /// Something a status shows changed (state, job, whom it follows, a
    /// scheduled restart, an outcome): the published light status no
    /// longer holds (the invariant of `messages::board::PgBoard`).
    fn changed(&self) {
        self.board.clear();
    }

    /// A job starts or ends, or PostgreSQL is stopped: what the last full
    /// status read may no longer hold.
    fn forget_known(&mut self) {
        self.epoch += 1;
        self.known = None;
        self.changed();
    }

    /// The configuration changed: the status session connects where it
    /// now says.
    fn retarget_session(&self) {
        self.session.retarget(
            self.env.local_conn(),
            self.env.dynamic.timing.local_query_timeout(),
        );
    }

    /// Send callback events (`on_start`, `on_stop`, `on_role_change`,
    /// `on_reload`) to `sink`.
    pub fn with_callbacks(mut self, sink: Recipient<CallbackEvent>) -> PostgresSupervisor {
        self.callbacks = Some(sink);
        self
    }

    /// Ask `elector` to release this node's synchronous duty around a
    /// scheduled restart, as `POST /restart` does for an immediate one.
    pub fn with_sync_duty(mut self, elector: Recipient<SyncDuty>) -> PostgresSupervisor {
        self.sync_duty = Some(elector);
        self
    }

    fn callback(&self, ev: Option<CallbackEvent>) {
        if let (Some(sink), Some(ev)) = (&self.callbacks, ev) {
            sink.do_send(ev);
        }
    }

    /// Notice a postmaster that died under us.
    fn check_alive(&mut self) {
        if let Some(pm) = &mut self.postmaster
            && !pm.is_alive()
        {
            warn!(event = crate::events::POSTGRES_EXITED, pid = pm.pid(), status = ?pm.exit_status());
            self.postmaster = None;
            self.pg_callbacks.crashed();
            self.changed();
        }
        // Patroni's names for a PostgreSQL that is down while nothing runs:
        // `crashed`, or `stopped` while paused (also once a pause begins).
        if self.postmaster.is_none() && self.busy.is_none() {
            let state = self.state.when_down(self.env.dynamic.pause);
            if state != self.state {
                self.state = state;
                self.changed();
            }
        }
    }

    /// Does the bootstrap run a `bootstrap.method` other than `initdb`?
    fn custom_bootstrap(&self) -> bool {
        self.env
            .cfg
            .bootstrap
            .as_ref()
            .is_some_and(|b| b.custom_method().is_some())
    }

    /// Bring a running PostgreSQL in line with the configuration: rewrite
    /// postgresql.conf (keeping the standby settings if it is one) and
    /// reload. Postmaster-context changes then show as pending restart in
    /// `pg_settings`, which [`gather_status`] reports. Without a postmaster
    /// nothing is to do: the next start writes the files.
    fn apply_config(&mut self, ctx: &mut Context<Self>) {
        // A running job (a start, a clone) took its copy of the settings
        // before this change: apply once it is done.
        if self.busy.is_some() {
            self.apply_pending = true;
            return;
        }
        self.apply_pending = false;
        self.check_alive();
        if self.postmaster.is_none() {
            return;
        }
        // The files are written here, synchronously, so no job that starts
        // afterwards (a promotion) can be overtaken by a stale write.
        let standby = self.env.data_dir.join(datadir::STANDBY_SIGNAL).exists();
        if let Err(e) = self
            .env
            .write_config(standby.then_some(self.following.as_ref()))
        {
            warn!(event = crate::events::CONFIG_APPLY_FAILED, error = %e);
            return;
        }
        self.settings_gate.config_changed(Instant::now());
        let env = self.env.clone();
        ctx.spawn(
            async move { jobs::reload(&env).await }
                .into_actor(self)
                .map(|r, _, _| match r {
                    Ok(()) => info!(
                        event = crate::events::CONFIG_APPLIED,
                        "postgresql.conf rewritten and reloaded"
                    ),
                    Err(e) => warn!(event = crate::events::CONFIG_APPLY_FAILED, error = %e),
                }),
        );
    }

    fn finish(
        &mut self,
        kind: JobKind,
        result: Result<Option<Postmaster>, String>,
        following: Option<Upstream>,
    ) {
        let result = result.map_err(|e| JobOutcome::Failed(kind, e));
        self.finish_with(kind, result, following);
    }

    /// A job ended: `Err` carries its failure as reported to the elector.
    fn finish_with(
        &mut self,
        kind: JobKind,
        result: Result<Option<Postmaster>, JobOutcome>,
        following: Option<Upstream>,
    ) {
        self.forget_known();
        self.busy = None;
        self.job_handle = None;
        let job_role = self.job_role.take();
        let outcome = match result {
            Ok(pm) => {
                let remote = following.as_ref().is_some_and(|u| u.remote);
                let ev = match (&pm, kind, job_role) {
                    (_, JobKind::Promote, _) => Some(self.pg_callbacks.promoted()),
                    (Some(_), _, Some(role)) => Some(self.pg_callbacks.started(role, remote)),
                    _ => None,
                };
                if let Some(pm) = pm {
                    self.postmaster = Some(pm);
                    self.state = PgState::Running;
                }
                self.callback(ev);
                if kind != JobKind::Promote {
                    self.following = following;
                } else {
                    self.following = None;
                }
                JobOutcome::Succeeded(kind)
            }
            Err(failed) => {
                let e = failed.failure().unwrap_or_default();
                error!(event = crate::events::JOB_FAILED, job = ?kind, error = %e);
                if kind == JobKind::Start && self.postmaster.is_none() {
                    let ev = self.pg_callbacks.start_failed(job_role);
                    self.callback(ev);
                }
                self.state = PgState::after_failure(
                    kind,
                    self.postmaster.is_some(),
                    self.custom_bootstrap(),
                    self.busy_label == RESTART_LABEL,
                );
                failed
            }
        };
        self.outcome = Some(outcome.clone());
        self.listener.do_send(JobFinished(outcome));
        self.job_ended();
    }

    /// The running job ended (finished or cancelled): wake who waits.
    fn job_ended(&mut self) {
        self.start_primary = None;
        for tx in self.job_end.drain(..) {
            let _ = tx.send(());
        }
    }
}

impl Actor for PostgresSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.env.log_parameter_warnings();
        if let Some(pm) = Postmaster::adopt(&self.env.data_dir) {
            info!(
                event = crate::events::POSTGRES_ADOPTED,
                pid = pm.pid(),
                "PostgreSQL was already running; adopting it"
            );
            self.postmaster = Some(pm);
            self.state = PgState::Running;
        }
    }
}

impl Handler<GetPgStatus> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, PgStatus>;

    fn handle(&mut self, msg: GetPgStatus, ctx: &mut Context<Self>) -> Self::Result {
        self.check_alive();
        if self.apply_pending && self.busy.is_none() {
            self.apply_config(ctx);
        }
        let env = self.env.clone();
        // The HA loop's question (it takes the outcome) reads everything;
        // others reuse the settings it last read.
        let full = msg.take_outcome;
        let mut base = self.light_base();
        if full && let Some(outcome) = self.outcome.take() {
            base.outcome = Some(outcome);
            self.changed();
        }
        let session = self.session.clone();
        let epoch = self.epoch;
        let sent = std::time::Instant::now();
        let light_base = (!full).then(|| base.clone());
        let settings = if full {
            SettingsRead::IfDue(self.settings_gate.clone())
        } else {
            SettingsRead::Never
        };
        if let Some(st) = light_base
            .as_ref()
            .and_then(|base| self.board.fresh_under(sent, base))
        {
            return Box::pin(fut::ready(st));
        }
        Box::pin(
            gather_status(env, base, session, full, self.known.clone(), settings)
                .into_actor(self)
                .map(move |(st, read), act, _| {
                    if let Some((start_time, generation)) = read {
                        act.settings_gate
                            .read(start_time, generation, Instant::now());
                    }
                    if let Some(base) = light_base
                        && act.epoch == epoch
                        && act.light_base() == base
                    {
                        act.board.publish(sent, base, st.clone());
                    }
                    if act.epoch == epoch
                        && act.busy.is_none()
                        && let (DataDir::Initialized { sysid, .. }, Some(_), Some(timeline)) =
                            (&st.data_dir, st.facts.role, st.facts.timeline)
                    {
                        act.known = Some(Known {
                            sysid: sysid.clone(),
                            timeline,
                        });
                    }
                    if act.busy.is_none() {
                        act.pg_callbacks.observed(st.facts.role);
                    }
                    if st.postmaster_start_time.is_some() {
                        act.last_start_time = st.postmaster_start_time.clone();
                    }
                    if full && act.last_pending_restart != st.pending_restart {
                        act.last_pending_restart = st.pending_restart.clone();
                        act.changed();
                    }
                    st
                }),
        )
    }
}

/// Whether a status reads `pg_settings` (the pending-restart flag).
enum SettingsRead {
    Always,
    Never,
    /// When the gate says so; without a read the status carries the
    /// pending-restart flag it was given (the last one read).
    IfDue(SettingsGate),
}

/// Fill in what only PostgreSQL and the data directory can tell, over the
/// long-lived `session`. `full`: the full snapshot. `settings`: whether to
/// read the pending-restart settings; the second value is the postmaster
/// start time and configuration generation of a successful read.
async fn gather_status(
    env: Arc<JobEnv>,
    mut st: PgStatus,
    session: LocalSession,
    full: bool,
    known: Option<Known>,
    settings: SettingsRead,
) -> (PgStatus, Option<(String, u64)>) {
    let mut settings_read = None;
    let mut sysid = None;
    // A light status needs what the last full one read; without it, a
    // full one.
    let full = full || known.is_none();
    if st.facts.running {
        let snapshot = if full {
            session.snapshot_full().await
        } else {
            session.snapshot().await
        };
        match snapshot {
            Ok(mut s) => {
                if let Some(k) = known.as_ref().filter(|_| !full) {
                    s.system_identifier = Some(k.sysid.clone());
                    if s.in_recovery {
                        s.timeline = s.timeline.max(k.timeline);
                    }
                }
                sysid = s.system_identifier.clone();
                st.facts.role = Some(if s.in_recovery {
                    PgRole::Replica
                } else {
                    PgRole::Primary
                });
                st.facts.lsn = Some(s.wal_position());
                st.facts.timeline = Some(s.timeline);
                st.server_version = u32::try_from(s.server_version).ok();
                st.postmaster_start_time = Some(s.postmaster_start_time.clone());
                if s.in_recovery {
                    st.receive_lsn = s.receive_lsn;
                    st.replay_lsn = s.replay_lsn;
                    st.replayed_timestamp = s.last_replay_timestamp.clone();
                    st.replay_paused = s.replay_paused;
                    st.replication_state = Some(
                        if s.receiver_state.as_deref() == Some("streaming") {
                            "streaming"
                        } else {
                            "in archive recovery"
                        }
                        .to_owned(),
                    );
                }
                st.replication = s
                    .replication
                    .iter()
                    .map(|r| ReplicationRow {
                        usename: r.usename.clone().unwrap_or_default(),
                        application_name: r.application_name.clone().unwrap_or_default(),
                        client_addr: r.client_addr.clone(),
                        state: r.state.clone().unwrap_or_default(),
                        sync_state: r.sync_state.clone().unwrap_or_default(),
                        sync_priority: r.sync_priority.unwrap_or(0),
                        flush_lsn: r.flush_lsn,
                    })
                    .collect();
                st.synchronous_standby_names = Some(s.synchronous_standby_names.clone());
                if st.busy.is_none() {
                    st.state = PgState::Running;
                }
                let generation = match &settings {
                    SettingsRead::Always => Some(0),
                    SettingsRead::Never => None,
                    SettingsRead::IfDue(g) => g
                        .due(&s.postmaster_start_time, Instant::now())
                        .then(|| g.generation()),
                };
                if let Some(generation) = generation {
                    let rows = match session.prepared().await {
                        Ok(p) => {
                            query::restart_settings(
                                &p.client,
                                &p.settings,
                                params::COMMAND_LINE_PARAMETERS,
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    };
                    match rows {
                        Ok(rows) => {
                            st.pending_restart = params::pending_restart(&rows, &env.parameters());
                            if matches!(settings, SettingsRead::IfDue(_)) {
                                settings_read = Some((s.postmaster_start_time.clone(), generation));
                            }
                        }
                        Err(e) => {
                            tracing::debug!(event = crate::events::PENDING_RESTART_QUERY_FAILED, error = %e)
                        }
                    }
                }
            }
            Err(SnapshotError::Query(e)) => {
                tracing::debug!(event = crate::events::STATUS_QUERY_FAILED, error = %e);
                st.state = PgState::Unknown;
            }
            Err(SnapshotError::Connect(e)) => {
                tracing::debug!(event = crate::events::STATUS_CONNECT_FAILED, error = %e);
                if st.state == PgState::Running {
                    st.state = PgState::Starting;
                }
            }
        }
    }
    // PostgreSQL answered: its data directory is initialised, and
    // pg_control_system() gave the identifier (no pg_controldata run).
    if let (Some(sysid), Some(role)) = (sysid, st.facts.role) {
        st.data_dir = DataDir::Initialized {
            sysid,
            was_primary: crate::ha::data_dir::was_primary(Some(role), false, || false),
        };
        return (st, settings_read);
    }
    st.data_dir = match datadir::is_empty(&env.data_dir) {
        Ok(true) => DataDir::Empty,
        Ok(false) => match controldata::read(&env.bins, &env.data_dir).await {
            Ok(cd) => DataDir::Initialized {
                sysid: cd.system_identifier.clone(),
                // docs/ha.md §8 (`ha::data_dir::was_primary`).
                was_primary: crate::ha::data_dir::was_primary(
                    st.facts.role,
                    cd.state.was_primary(),
                    || datadir::is_unstarted_base_backup(&env.data_dir),
                ),
            },
            // Files but no readable control file: nothing may start or
            // overwrite it until a human looks.
            Err(e) => DataDir::Unreadable(e.to_string()),
        },
        Err(e) => DataDir::Unreadable(e.to_string()),
    };
    (st, settings_read)
}

impl Handler<RunJob> for PostgresSupervisor {
    type Result = Result<(), SupervisorError>;

    fn handle(&mut self, RunJob(job): RunJob, ctx: &mut Context<Self>) -> Self::Result {
        if self.busy.is_some() {
            return Err(SupervisorError::Busy(self.busy_label));
        }
        self.start_job(job, ctx);
        Ok(())
    }
}

impl PostgresSupervisor {
    /// Start `job` in the background (the caller checked that none runs).
    fn start_job(&mut self, job: Job, ctx: &mut Context<Self>) {
        self.forget_known();
        self.check_alive();
        let kind = job.kind();
        let env = self.env.clone();
        self.busy = Some(kind);
        self.busy_label = job_label(kind);
        self.job_role = Some(match job {
            Job::Bootstrap | Job::StartPrimary | Job::Promote => PgRole::Primary,
            _ => PgRole::Replica,
        });
        // A standby cluster's bootstrap is a clone (docs/ha.md §16).
        let shown = match job {
            Job::BootstrapStandby { .. } => JobKind::Clone,
            _ => kind,
        };
        self.state = PgState::during(shown, self.custom_bootstrap()).unwrap_or(self.state);
        info!(event = crate::events::JOB_STARTED, job = ?job);
        let handle = match job {
            Job::Bootstrap => ctx.spawn(
                async move {
                    jobs::bootstrap(&env)
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
                .into_actor(self)
                .map(move |r, act, _| act.finish(kind, r, None)),
            ),
            Job::Clone { from } | Job::BootstrapStandby { from } => {
                let up = from.clone();
                ctx.spawn(
                    async move {
                        jobs::clone(&env, &from)
                            .await
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }
                    .into_actor(self)
                    .map(move |r, act, _| act.finish(kind, r, Some(up))),
                )
            }
            Job::CloneWithoutLeader => ctx.spawn(
                async move {
                    jobs::clone_without_leader(&env)
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
                .into_actor(self)
                .map(move |r, act, _| act.finish(kind, r, None)),
            ),
            Job::Reinitialize { from, remove_old } => {
                let up = from.clone();
                let running = self.postmaster.take();
                let leftovers = self.rebuild_leftovers.clone();
                if running.is_some() {
                    // The rebuild stops it first (immediate, as Patroni).
                    let ev = self.pg_callbacks.stopped();
                    self.callback(Some(ev));
                }
                ctx.spawn(
                    async move {
                        jobs::reinitialize(&env, running, &from, remove_old, &leftovers)
                            .await
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }
                    .into_actor(self)
                    .map(move |r, act, _| act.finish(kind, r, Some(up))),
                )
            }
            Job::Rewind { from } => {
                let up = from.clone();
                let before = self.state;
                ctx.spawn(
                    async move { jobs::rewind(&env, &from).await }
                        .into_actor(self)
                        .map(move |r, act, _| {
                            let r = r.map(Some).map_err(JobOutcome::RewindFailed);
                            act.finish_with(kind, r, Some(up));
                            if act.postmaster.is_none() {
                                // The state it had: whether the rewind failed
                                // for good is `ha::rewind`'s to say, and the
                                // elector shows it (`ShowRewindFailed`).
                                act.state = before;
                            }
                        }),
                )
            }
            Job::StartPrimary => {
                let (tx, cancel) = tokio::sync::watch::channel(false);
                self.start_primary = Some((Instant::now(), tx));
                ctx.spawn(
                    async move {
                        jobs::start_primary(&env, cancel)
                            .await
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }
                    .into_actor(self)
                    .map(move |r, act, _| act.finish(kind, r, None)),
                )
            }
            Job::StartReplica { upstream } => {
                let up = upstream.clone();
                ctx.spawn(
                    async move {
                        jobs::start(&env, Some(upstream.as_ref()))
                            .await
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }
                    .into_actor(self)
                    .map(move |r, act, _| act.finish(kind, r, up)),
                )
            }
            Job::Promote => {
                if !self.logical_readiness.is_empty() {
                    warn!(event = crate::events::LOGICAL_SLOTS_UNSAFE,
                          slots = ?self.logical_readiness.pending(),
                          "promoting with logical slots that might be unsafe to use");
                    self.logical_readiness.clear();
                }
                ctx.spawn(
                    async move {
                        jobs::promote(&env)
                            .await
                            .map(|()| None)
                            .map_err(|e| e.to_string())
                    }
                    .into_actor(self)
                    .map(move |r, act, _| act.finish(kind, r, None)),
                )
            }
        };
        self.job_handle = Some(handle);
    }

    /// Cancel the running job (`POST /reinitialize` with `force`). Its
    /// child processes die with its future (`kill_on_drop`); a postmaster
    /// it may have started is found through `postmaster.pid` and stopped by
    /// the rebuild that follows.
    fn cancel_job(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.job_handle.take() {
            ctx.cancel_future(h);
        }
        if let Some(kind) = self.busy.take() {
            warn!(event = crate::events::JOB_CANCELLED, job = ?kind, "cancelled by a forced reinitialize");
        }
        self.forget_known();
        self.job_role = None;
        self.job_ended();
    }

    /// Restart PostgreSQL in the role it runs in: fast stop, then start
    /// (within `timeout`, default `primary_start_timeout`). Runs as a
    /// `Start` job, so the HA loop keeps the lock and waits, and hears
    /// about the outcome as about any start (a failed start on the leader
    /// releases the lock). Answers on the returned channel. `copies`:
    /// logical slots copied from the leader, written into `pg_replslot`
    /// between the stop and the start (docs/ha.md §13.1).
    fn begin_restart(
        &mut self,
        timeout: Option<Duration>,
        copies: Vec<PrimarySlot>,
        ctx: &mut Context<Self>,
    ) -> Result<tokio::sync::oneshot::Receiver<PgOpOutcome>, PgOpOutcome> {
        self.check_alive();
        if self.busy.is_some() {
            return Err(PgOpOutcome::InProgress(self.busy_label));
        }
        let Some(mut pm) = self.postmaster.take() else {
            return Err(PgOpOutcome::NotRunning);
        };
        let standby = self.env.data_dir.join(datadir::STANDBY_SIGNAL).exists();
        let following = self.following.clone();
        let env = self.env.clone();
        // `primary_start_timeout` of the dynamic configuration (300 s).
        let timeout = timeout.unwrap_or_else(|| {
            let secs = self
                .env
                .dynamic
                .raw
                .get("primary_start_timeout")
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                .unwrap_or(300);
            Duration::from_secs(secs.max(1))
        });
        self.forget_known();
        self.busy = Some(JobKind::Start);
        self.busy_label = RESTART_LABEL;
        self.state = PgState::Restarting;
        info!(
            event = crate::events::RESTART,
            standby,
            timeout_s = timeout.as_secs(),
            "restarting PostgreSQL (fast stop, start)"
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let up = following.clone();
        let handle = ctx.spawn(
            async move {
                if let Err(e) = pm.stop(StopMode::Fast, env.pg_ctl_timeout()).await {
                    return Err((Some(pm), e.to_string()));
                }
                if !copies.is_empty() {
                    jobs::write_copied_slots(&env, &copies);
                }
                jobs::start_within(&env, standby.then_some(up.as_ref()), timeout)
                    .await
                    .map_err(|e| (None, e.to_string()))
            }
            .into_actor(self)
            .map(move |r, act, _| {
                let reply = match r {
                    Ok(pm) => {
                        act.finish(JobKind::Start, Ok(Some(pm)), following);
                        let ev = act.pg_callbacks.restarted();
                        act.callback(Some(ev));
                        PgOpOutcome::Restarted
                    }
                    Err((still_running, e)) => {
                        if still_running.is_some() {
                            act.postmaster = still_running;
                        }
                        act.finish(JobKind::Start, Err(e.clone()), following);
                        warn!(event = crate::events::RESTART_FAILED, error = %e);
                        PgOpOutcome::RestartFailed
                    }
                };
                let _ = tx.send(reply);
            }),
        );
        self.job_handle = Some(handle);
        Ok(rx)
    }

    /// The timer of a scheduled restart fired: check it still applies
    /// (docs/rest-api.md, "POST /restart, DELETE /restart"), then restart.
    fn fire_scheduled(&mut self, ctx: &mut Context<Self>) {
        let Some(s) = self.scheduled.take() else {
            return;
        };
        self.changed();
        info!(event = crate::events::SCHEDULED_RESTART_DUE, schedule = %s.schedule);
        // Lateness counts from the timer, not from the status query below.
        let fired_at = crate::ha::iso8601::now_unix();
        self.check_alive();
        let base = self.status_base();
        let env = self.env.clone();
        let session = self.session.clone();
        ctx.spawn(gather_status(env, base, session, true, None, SettingsRead::Always).into_actor(self).map(move |(pg, _), act, ctx| {
            let fire = restart::at_fire_time(
                s.at_unix,
                fired_at,
                act.env.dynamic.timing.loop_wait,
                act.env.dynamic.pause,
                s.postmaster_start_time.as_deref(),
                &s.options,
                &pg,
            );
            match fire {
                Fire::Drop(why) => {
                    warn!(event = crate::events::SCHEDULED_RESTART_DROPPED, schedule = %s.schedule, reason = %why)
                }
                Fire::Run => act.run_scheduled(s, ctx),
            }
        }));
    }

    /// A due scheduled restart that still applies: a synchronous standby
    /// asks to be released first, as Patroni's scheduled restart runs its
    /// `restart()` inside `while_not_sync_standby`
    /// (docs/replication-modes.md §3); the duty is resumed once the
    /// restart is over, or did not start.
    fn run_scheduled(&mut self, s: ScheduledRestart, ctx: &mut Context<Self>) {
        let duty = self.sync_duty.clone();
        let release = duty.clone();
        ctx.spawn(
            async move {
                match release {
                    Some(d) => d.send(SyncDuty::Release).await.unwrap_or(false),
                    None => false,
                }
            }
            .into_actor(self)
            .map(move |released, act, ctx| {
                let resume = move || {
                    if let (true, Some(d)) = (released, &duty) {
                        d.do_send(SyncDuty::Resume);
                    }
                };
                match act.begin_restart(s.options.timeout, Vec::new(), ctx) {
                    Ok(rx) => {
                        ctx.spawn(
                            async move {
                                if let Ok(outcome) = rx.await {
                                    info!(event = crate::events::SCHEDULED_RESTART_DONE, result = %outcome);
                                }
                                resume();
                            }
                            .into_actor(act),
                        );
                    }
                    Err(why) => {
                        resume();
                        warn!(event = crate::events::SCHEDULED_RESTART_DROPPED, schedule = %s.schedule, reason = %why)
                    }
                }
            }),
        );
    }

    /// What a light status is read under: [`Self::status_base`], the
    /// pending-restart flag the HA loop's status last read (a status that
    /// does not read `pg_settings` carries it) and the last outcome.
    fn light_base(&self) -> PgStatus {
        let mut base = self.status_base();
        if self.postmaster.is_some() {
            base.pending_restart = self.last_pending_restart.clone();
        }
        base.outcome = self.outcome.clone();
        base
    }

    /// What the supervisor itself knows, before PostgreSQL is asked (no job
    /// outcome: only the HA loop's status question carries it).
    fn status_base(&self) -> PgStatus {
        PgStatus {
            facts: PgFacts {
                running: self.postmaster.is_some(),
                following: self.following.as_ref().map(|u| u.name.clone()),
                ..PgFacts::default()
            },
            follows_remote: self.following.as_ref().is_some_and(|u| u.remote),
            busy: self.busy,
            starting_primary_since: self.start_primary.as_ref().map(|(t, _)| *t),
            scheduled_restart: self.scheduled.as_ref().map(ScheduledRestart::json),
            ..PgStatus::unknown(self.state)
        }
    }
}

impl Handler<PgOp> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, PgOpOutcome>;

    fn handle(&mut self, op: PgOp, ctx: &mut Context<Self>) -> Self::Result {
        let now = |r: PgOpOutcome| -> Self::Result { Box::pin(fut::ready(r)) };
        match op {
            PgOp::Restart(o) => match self.begin_restart(o.timeout, Vec::new(), ctx) {
                Ok(rx) => Box::pin(
                    async move { rx.await.unwrap_or(PgOpOutcome::RestartCancelled) }
                        .into_actor(self),
                ),
                Err(r) => now(r),
            },
            PgOp::ScheduleRestart {
                at_unix,
                schedule,
                options,
            } => {
                if self.scheduled.is_some() {
                    return now(PgOpOutcome::AlreadyScheduled);
                }
                // The postmaster start time the request is made against,
                // fresh: a restart after this point cancels it.
                self.check_alive();
                let base = self.status_base();
                let env = self.env.clone();
                let session = self.session.clone();
                Box::pin(
                    gather_status(env, base, session, false, self.known.clone(), SettingsRead::Never)
                        .into_actor(self)
                        .map(move |(pg, _), act, ctx| {
                            if act.scheduled.is_some() {
                                return PgOpOutcome::AlreadyScheduled;
                            }
                            let wait = (at_unix - crate::ha::iso8601::now_unix()).max(0.0);
                            let timer = ctx.run_later(Duration::from_secs_f64(wait), |act, ctx| {
                                act.fire_scheduled(ctx)
                            });
                            info!(event = crate::events::RESTART_SCHEDULED, schedule = %schedule, in_s = wait);
                            act.changed();
                            act.scheduled = Some(ScheduledRestart {
                                at_unix,
                                schedule,
                                options,
                                postmaster_start_time: pg
                                    .postmaster_start_time
                                    .or_else(|| act.last_start_time.clone()),
                                timer,
                            });
                            PgOpOutcome::RestartScheduled
                        }),
                )
            }
            PgOp::CancelScheduledRestart => match self.scheduled.take() {
                Some(s) => {
                    self.changed();
                    ctx.cancel_future(s.timer);
                    info!(event = crate::events::SCHEDULED_RESTART_DELETED, schedule = %s.schedule);
                    now(PgOpOutcome::ScheduledRestartDeleted)
                }
                None => now(PgOpOutcome::NoScheduledRestart),
            },
            PgOp::Reinitialize { from, force } => {
                if self.busy.is_some() {
                    if !force {
                        return now(PgOpOutcome::InProgress(self.busy_label));
                    }
                    self.cancel_job(ctx);
                }
                info!(event = crate::events::REINITIALIZE_REQUESTED, from = %from.name, force);
                self.start_job(
                    Job::Reinitialize {
                        from,
                        remove_old: true,
                    },
                    ctx,
                );
                now(PgOpOutcome::ReinitializeStarted)
            }
        }
    }
}

impl Handler<ShowRewindFailed> for PostgresSupervisor {
    type Result = ();

    fn handle(&mut self, _msg: ShowRewindFailed, _ctx: &mut Context<Self>) {
        self.check_alive();
        // A job (a rebuild) started since names the state itself.
        if self.postmaster.is_none() && self.busy.is_none() {
            self.state = PgState::RewindFailed;
            self.changed();
        }
    }
}

impl Handler<Follow> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, Result<(), SupervisorError>>;

    fn handle(&mut self, Follow(up): Follow, _ctx: &mut Context<Self>) -> Self::Result {
        // A decision made just before a rebuild started must not write
        // into the data directory being replaced.
        if self.busy.is_some_and(|b| {
            matches!(
                b,
                JobKind::Bootstrap | JobKind::Clone | JobKind::Reinitialize
            )
        }) {
            return Box::pin(fut::ready(Err(SupervisorError::Busy(self.busy_label))));
        }
        self.settings_gate.config_changed(Instant::now());
        let env = self.env.clone();
        let up2 = up.clone();
        Box::pin(
            async move {
                env.write_config(Some(Some(&up)))?;
                jobs::reload(&env).await?;
                Ok(())
            }
            .into_actor(self)
            .map(move |r, act, _| {
                if r.is_ok() {
                    // To or from a standby cluster's remote: a role change
                    // (docs/ha.md §16).
                    let ev = act.pg_callbacks.followed(up2.remote);
                    act.callback(ev);
                    act.following = Some(up2);
                    act.changed();
                }
                r
            }),
        )
    }
}

impl Handler<StopAndWait> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, Result<(), SupervisorError>>;

    fn handle(&mut self, StopAndWait(mode): StopAndWait, _ctx: &mut Context<Self>) -> Self::Result {
        if mode == StopMode::Immediate
            && let Some((_, cancel)) = &self.start_primary
        {
            // docs/ha.md §8.1: a start as primary that takes too long. The
            // job stops the postmaster it started and fails; the stop is
            // done when the job has ended, so the leader key is released
            // only after PostgreSQL is down.
            let _ = cancel.send(true);
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.job_end.push(tx);
            let bound = crate::fence::KILL_GRACE + self.env.pg_ctl_timeout();
            warn!(
                event = crate::events::START_CANCELLED,
                "giving up the start as primary"
            );
            return Box::pin(
                async move {
                    match tokio::time::timeout(bound, rx).await {
                        Ok(_) => Ok(()),
                        Err(_) => Err(SupervisorError::StartDidNotEnd),
                    }
                }
                .into_actor(self),
            );
        }
        self.forget_known();
        let pm = self.postmaster.take();
        let was_running = pm.is_some();
        // An immediate shutdown is a fencing stop: a postmaster that does not
        // act on SIGQUIT within the grace (frozen, hung I/O) has its whole
        // process group SIGKILLed rather than waited for.
        let timeout = match mode {
            StopMode::Immediate => crate::fence::KILL_GRACE.min(self.env.pg_ctl_timeout()),
            _ => self.env.pg_ctl_timeout(),
        };
        self.state = PgState::Stopping;
        Box::pin(
            async move {
                match pm {
                    Some(mut pm) => pm.stop(mode, timeout).await.map(|o| {
                        info!(event = crate::events::POSTGRES_STOPPED, mode = ?mode, outcome = ?o);
                    }),
                    None => Ok(()),
                }
            }
            .into_actor(self)
            .map(move |r, act, _| {
                act.state = if r.is_ok() {
                    PgState::Stopped
                } else {
                    PgState::StopFailed
                };
                act.following = None;
                act.changed();
                if was_running && r.is_ok() {
                    let ev = act.pg_callbacks.stopped();
                    act.callback(Some(ev));
                }
                Ok(r?)
            }),
        )
    }
}

impl Handler<StopGracefully> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, Result<u64, SupervisorError>>;

    fn handle(&mut self, _msg: StopGracefully, _ctx: &mut Context<Self>) -> Self::Result {
        self.forget_known();
        let pm = self.postmaster.take();
        let env = self.env.clone();
        self.state = PgState::Stopping;
        Box::pin(
            async move { super::switchover::stop(&env, pm).await }
                .into_actor(self)
                .map(|r, act, _| {
                    act.state = PgState::Stopped;
                    act.following = None;
                    act.changed();
                    r
                }),
        )
    }
}

impl Handler<SyncSlots> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, Option<std::collections::BTreeMap<String, u64>>>;

    fn handle(&mut self, SyncSlots(req): SyncSlots, ctx: &mut Context<Self>) -> Self::Result {
        if req.hot_standby_feedback != self.env.hot_standby_feedback {
            // A reload applies it (Patroni's `set_enforce_hot_standby_feedback`).
            Arc::make_mut(&mut self.env).hot_standby_feedback = req.hot_standby_feedback;
            info!(
                event = crate::events::HOT_STANDBY_FEEDBACK_FORCED,
                on = req.hot_standby_feedback,
                "hot_standby_feedback forced for permanent logical slots"
            );
            self.apply_config(ctx);
        }
        let env = self.env.clone();
        let session = self.session.clone();
        let mut readiness = std::mem::take(&mut self.logical_readiness);
        let seed = !self.readiness_seeded && !req.i_lead;
        let last_copied = self.copied_restart_lsn.clone();
        Box::pin(
            async move {
                let r = match session.prepared().await {
                    Ok(pg) => jobs::sync_slots(&env, &pg, &req).await,
                    Err(e) => Err(e),
                };
                let out = match r {
                    Ok(out) => out,
                    Err(e) => {
                        // A broken or hung connection must not stay in use.
                        session.reset().await;
                        warn!(event = crate::events::SLOT_SYNC_FAILED, error = %e);
                        return (None, Vec::new(), readiness, false);
                    }
                };
                if req.i_lead {
                    readiness.clear();
                    return (Some(out.published), Vec::new(), readiness, false);
                }
                if seed {
                    let expected = out
                        .logical_catalog_xmin
                        .keys()
                        .filter(|n| req.expected.iter().any(|w| w.name == **n));
                    readiness.copied(expected.map(String::as_str));
                }
                let copies = if out.copy.is_empty() {
                    Vec::new()
                } else {
                    let read = jobs::read_leader_slots(&env, &req, &out.copy)
                        .await
                        .unwrap_or_else(|e| {
                            warn!(event = crate::events::SLOT_COPY_FAILED, slots = ?out.copy, error = %e);
                            Vec::new()
                        });
                    crate::ha::logical_slots::worth_copying(read, &out.missing, &last_copied)
                };
                if !readiness.is_empty() {
                    check_readiness(&env, &req, &mut readiness, &out.logical_catalog_xmin).await;
                }
                (Some(out.published), copies, readiness, seed)
            }
            .into_actor(self)
            .map(|(published, copies, readiness, seeded), act, ctx| {
                act.logical_readiness = readiness;
                act.readiness_seeded |= seeded;
                if !copies.is_empty() {
                    act.copy_logical_slots(copies, ctx);
                }
                published
            }),
        )
    }
}

/// One readiness check of the copied logical slots against the leader
/// ([`LogicalReadiness::observe`]).
async fn check_readiness(
    env: &JobEnv,
    req: &crate::ha::slots::SlotRequest,
    readiness: &mut LogicalReadiness,
    here: &std::collections::BTreeMap<String, Option<u32>>,
) {
    let leader = match jobs::leader_catalog_xmin(env, req, &readiness.to_ask()).await {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            warn!(event = crate::events::LOGICAL_SLOT_CHECK_FAILED, error = %e);
            return;
        }
    };
    let (ready, _) = readiness.observe(&leader, here);
    for name in ready {
        info!(event = crate::events::LOGICAL_SLOT_READY, slot = %name,
              "logical slot is safe to be used after a failover");
    }
    match leader {
        LeaderCatalogXmin::NoPhysicalSlot => warn!(
            event = crate::events::LOGICAL_SLOT_CHECK_FAILED,
            "this replica's physical slot is not on the leader"
        ),
        LeaderCatalogXmin::Known { physical: None, .. } if !env.hot_standby_feedback => warn!(
            event = crate::events::LOGICAL_SLOT_CHECK_FAILED,
            "logical slot failover requires hot_standby_feedback"
        ),
        LeaderCatalogXmin::Known { .. } => {}
    }
}

impl PostgresSupervisor {
    /// Restart PostgreSQL with the logical slots copied from the leader
    /// (docs/ha.md §13.1), through the restart
    /// path: fast stop, state files written, start as the replica it was.
    fn copy_logical_slots(&mut self, copies: Vec<PrimarySlot>, ctx: &mut Context<Self>) {
        let names: Vec<String> = copies.iter().map(|c| c.name.clone()).collect();
        for c in &copies {
            self.copied_restart_lsn
                .insert(c.name.clone(), c.restart_lsn);
        }
        info!(event = crate::events::SLOT_COPY, slots = ?names,
              "copying logical slots from the primary (PostgreSQL restarts)");
        match self.begin_restart(None, copies, ctx) {
            Ok(_) => self
                .logical_readiness
                .copied(names.iter().map(String::as_str)),
            Err(why) => {
                warn!(event = crate::events::SLOT_COPY_FAILED, slots = ?names, reason = %why)
            }
        }
    }
}

impl Handler<DynamicConfigChanged> for PostgresSupervisor {
    type Result = ();
    fn handle(&mut self, DynamicConfigChanged(d): DynamicConfigChanged, ctx: &mut Context<Self>) {
        // Without slots no slot sync comes to say otherwise: no logical
        // slot is kept, nothing needs the feedback forced.
        if !d.use_slots {
            Arc::make_mut(&mut self.env).hot_standby_feedback = false;
        }
        Arc::make_mut(&mut self.env).dynamic = d;
        self.env.log_parameter_warnings();
        self.retarget_session();
        self.apply_config(ctx);
    }
}

impl Handler<SetStandbyNames> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, Result<(), SupervisorError>>;

    fn handle(
        &mut self,
        SetStandbyNames(value): SetStandbyNames,
        _ctx: &mut Context<Self>,
    ) -> Self::Result {
        let done = |r: Result<(), SupervisorError>| -> Self::Result { Box::pin(fut::ready(r)) };
        // The rules decided: what the previous daemon left no longer
        // counts. Nothing to write when the value in force stays.
        let before = self.env.managed_standby_names().map(str::to_owned);
        let env = Arc::make_mut(&mut self.env);
        env.inherited_standby_names = None;
        env.standby_names = value;
        if self.env.managed_standby_names() == before.as_deref() {
            return done(Ok(()));
        }
        // A running job took its copy of the settings: rewrite once it is
        // done. Without a postmaster the next start writes the files.
        if self.busy.is_some() {
            self.apply_pending = true;
            return done(Ok(()));
        }
        self.check_alive();
        if self.postmaster.is_none() {
            return done(Ok(()));
        }
        let standby = self.env.data_dir.join(datadir::STANDBY_SIGNAL).exists();
        if let Err(e) = self
            .env
            .write_config(standby.then_some(self.following.as_ref()))
        {
            return done(Err(e.into()));
        }
        let env = self.env.clone();
        Box::pin(async move { Ok(jobs::reload(&env).await?) }.into_actor(self))
    }
}

impl Handler<ConfigReloaded> for PostgresSupervisor {
    type Result = ();
    fn handle(&mut self, _msg: ConfigReloaded, _ctx: &mut Context<Self>) {
        self.check_alive();
        let ev = self.pg_callbacks.reloaded(self.postmaster.is_some());
        self.callback(ev);
    }
}

impl Handler<ConfigChanged> for PostgresSupervisor {
    type Result = ();
    fn handle(&mut self, ConfigChanged(cfg): ConfigChanged, ctx: &mut Context<Self>) {
        Arc::make_mut(&mut self.env).cfg = cfg;
        self.env.log_parameter_warnings();
        self.retarget_session();
        self.apply_config(ctx);
    }
}
