//! The PostgresSupervisor: owns the postmaster child process.
//!
//! It reports facts (`GetPgStatus`), runs long jobs in the background
//! (bootstrap, clone, start, promote...) and tells the elector when one
//! finishes. It never decides anything: the elector asks, it carries out.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use tracing::{error, info, warn};

use super::pg_callbacks::PgCallbacks;
use super::postgres_jobs::{self as jobs, JobEnv};
use crate::config::{Config, DynamicConfig};
use crate::ha::{DataDir, JobKind, JobOutcome, PgFacts, PgRole, Upstream};
use crate::messages::callbacks::CallbackEvent;
use crate::messages::config::{ConfigChanged, ConfigReloaded};
use crate::messages::elector::JobFinished;
use crate::messages::supervisor::{
    DynamicConfigChanged, Follow, GetPgStatus, Job, PgState, PgStatus, ReplicationRow, Restart,
    RunJob, StopAndWait, StopGracefully, SyncSlots,
};
use crate::postgres::{Binaries, Postmaster, StopMode, controldata, datadir, params, query};

pub struct PostgresSupervisor {
    env: JobEnv,
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
    pg_callbacks: PgCallbacks,
    /// The role the running job starts PostgreSQL as.
    job_role: Option<PgRole>,
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

impl PostgresSupervisor {
    pub fn new(
        cfg: Arc<Config>,
        dynamic: DynamicConfig,
        listener: Recipient<JobFinished>,
    ) -> PostgresSupervisor {
        let data_dir = absolute(&cfg.postgresql.data_dir);
        let config_dir = absolute(cfg.postgresql.config_dir());
        let bins = Binaries::from_config(&cfg.postgresql);
        PostgresSupervisor {
            env: JobEnv {
                cfg,
                dynamic,
                bins,
                data_dir,
                config_dir,
            },
            postmaster: None,
            state: PgState::Stopped,
            busy: None,
            outcome: None,
            following: None,
            listener,
            apply_pending: false,
            callbacks: None,
            pg_callbacks: PgCallbacks::default(),
            job_role: None,
        }
    }

    /// Send callback events (`on_start`, `on_stop`, `on_role_change`,
    /// `on_reload`) to `sink`.
    pub fn with_callbacks(mut self, sink: Recipient<CallbackEvent>) -> PostgresSupervisor {
        self.callbacks = Some(sink);
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
            warn!(event = "postgres_exited", pid = pm.pid(), status = ?pm.exit_status());
            self.postmaster = None;
            self.pg_callbacks.crashed();
            if self.busy.is_none() {
                self.state = PgState::Crashed;
            }
        }
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
            warn!(event = "config_apply_failed", error = %e);
            return;
        }
        let env = self.env.clone();
        ctx.spawn(
            async move { jobs::reload(&env).await }
                .into_actor(self)
                .map(|r, _, _| match r {
                    Ok(()) => info!(
                        event = "config_applied",
                        "postgresql.conf rewritten and reloaded"
                    ),
                    Err(e) => warn!(event = "config_apply_failed", error = %e),
                }),
        );
    }

    fn finish(
        &mut self,
        kind: JobKind,
        result: Result<Option<Postmaster>, String>,
        following: Option<Upstream>,
    ) {
        self.busy = None;
        let job_role = self.job_role.take();
        let outcome = match result {
            Ok(pm) => {
                let ev = match (&pm, kind, job_role) {
                    (_, JobKind::Promote, _) => Some(self.pg_callbacks.promoted()),
                    (Some(_), _, Some(role)) => Some(self.pg_callbacks.started(role)),
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
            Err(e) => {
                error!(event = "job_failed", job = ?kind, error = %e);
                self.state = match (kind, self.postmaster.is_some()) {
                    (_, true) => PgState::Running,
                    (JobKind::Bootstrap, false) => PgState::InitdbFailed,
                    (_, false) => PgState::StartFailed,
                };
                JobOutcome::Failed(kind, e)
            }
        };
        self.outcome = Some(outcome.clone());
        self.listener.do_send(JobFinished(outcome));
    }
}

impl Actor for PostgresSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.env.log_parameter_warnings();
        if let Some(pm) = Postmaster::adopt(&self.env.data_dir) {
            info!(
                event = "postgres_adopted",
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
        let running = self.postmaster.is_some();
        let env = self.env.clone();
        let outcome = if msg.take_outcome {
            self.outcome.take()
        } else {
            self.outcome.clone()
        };
        let base = PgStatus {
            state: self.state,
            facts: PgFacts {
                running,
                following: self.following.as_ref().map(|u| u.name.clone()),
                ..PgFacts::default()
            },
            data_dir: DataDir::Empty,
            busy: self.busy,
            outcome,
            server_version: None,
            postmaster_start_time: None,
            receive_lsn: None,
            replay_lsn: None,
            replayed_timestamp: None,
            replay_paused: false,
            replication_state: None,
            replication: Vec::new(),
            pending_restart: Default::default(),
        };
        Box::pin(gather_status(env, base).into_actor(self).map(|st, act, _| {
            if act.busy.is_none() {
                act.pg_callbacks.observed(st.facts.role);
            }
            st
        }))
    }
}

/// Fill in what only PostgreSQL and the data directory can tell.
async fn gather_status(env: JobEnv, mut st: PgStatus) -> PgStatus {
    if st.facts.running {
        match query::connect(&env.local_conn(), env.dynamic.timing.local_query_timeout()).await {
            Ok(client) => match query::snapshot(&client).await {
                Ok(s) => {
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
                        })
                        .collect();
                    if st.busy.is_none() {
                        st.state = PgState::Running;
                    }
                    match query::restart_settings(&client, params::COMMAND_LINE_PARAMETERS).await {
                        Ok(rows) => {
                            st.pending_restart = params::pending_restart(&rows, &env.parameters())
                        }
                        Err(e) => {
                            tracing::debug!(event = "pending_restart_query_failed", error = %e)
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(event = "status_query_failed", error = %e);
                    st.state = PgState::Unknown;
                }
            },
            Err(e) => {
                tracing::debug!(event = "status_connect_failed", error = %e);
                if st.state == PgState::Running {
                    st.state = PgState::Starting;
                }
            }
        }
    }
    st.data_dir = match datadir::is_empty(&env.data_dir) {
        Ok(true) => DataDir::Empty,
        Ok(false) => match controldata::read(&env.bins, &env.data_dir).await {
            Ok(cd) => DataDir::Initialized {
                sysid: cd.system_identifier.clone(),
                was_primary: match st.facts.role {
                    Some(role) => role == PgRole::Primary,
                    None => cd.state.was_primary(),
                },
            },
            // Files but no readable control file: nothing may start or
            // overwrite it until a human looks.
            Err(e) => DataDir::Unreadable(e.to_string()),
        },
        Err(e) => DataDir::Unreadable(e.to_string()),
    };
    st
}

impl Handler<RunJob> for PostgresSupervisor {
    type Result = Result<(), String>;

    fn handle(&mut self, RunJob(job): RunJob, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(b) = self.busy {
            return Err(format!("{b:?} is already in progress"));
        }
        self.check_alive();
        let kind = job.kind();
        let env = self.env.clone();
        self.busy = Some(kind);
        self.job_role = Some(match job {
            Job::Bootstrap | Job::StartPrimary | Job::Promote => PgRole::Primary,
            _ => PgRole::Replica,
        });
        self.state = match kind {
            JobKind::Bootstrap => PgState::InitializingNewCluster,
            JobKind::Clone | JobKind::Reinitialize => PgState::CreatingReplica,
            JobKind::Start => PgState::Starting,
            JobKind::Stop => PgState::Stopping,
            JobKind::Promote | JobKind::Rewind => self.state,
        };
        info!(event = "job_started", job = ?job);
        match job {
            Job::Bootstrap => {
                ctx.spawn(
                    async move {
                        jobs::bootstrap(&env)
                            .await
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }
                    .into_actor(self)
                    .map(move |r, act, _| act.finish(kind, r, None)),
                );
            }
            Job::Clone { from } => {
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
                );
            }
            Job::CloneWithoutLeader => {
                ctx.spawn(
                    async move {
                        jobs::clone_without_leader(&env)
                            .await
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }
                    .into_actor(self)
                    .map(move |r, act, _| act.finish(kind, r, None)),
                );
            }
            Job::Reinitialize { from } => {
                let up = from.clone();
                let running = self.postmaster.take();
                ctx.spawn(
                    async move {
                        jobs::reinitialize(&env, running, &from)
                            .await
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }
                    .into_actor(self)
                    .map(move |r, act, _| act.finish(kind, r, Some(up))),
                );
            }
            Job::Rewind { from } => {
                let up = from.clone();
                let before = self.state;
                ctx.spawn(
                    async move { jobs::rewind(&env, &from).await }
                        .into_actor(self)
                        .map(move |r, act, _| {
                            let failed = matches!(r, Err(jobs::RewindError::Failed(_)));
                            act.finish(kind, r.map(Some).map_err(|e| e.to_string()), Some(up));
                            if act.postmaster.is_none() {
                                // Sticky until a rebuild or a daemon restart:
                                // the elector never retries a failed rewind.
                                act.state = if failed {
                                    PgState::RewindFailed
                                } else {
                                    before
                                };
                            }
                        }),
                );
            }
            Job::StartPrimary => {
                ctx.spawn(
                    async move {
                        jobs::start(&env, None)
                            .await
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }
                    .into_actor(self)
                    .map(move |r, act, _| act.finish(kind, r, None)),
                );
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
                );
            }
            Job::Promote => {
                ctx.spawn(
                    async move {
                        jobs::promote(&env)
                            .await
                            .map(|()| None)
                            .map_err(|e| e.to_string())
                    }
                    .into_actor(self)
                    .map(move |r, act, _| act.finish(kind, r, None)),
                );
            }
        }
        Ok(())
    }
}

impl Handler<Follow> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, Follow(up): Follow, _ctx: &mut Context<Self>) -> Self::Result {
        let env = self.env.clone();
        let up2 = up.clone();
        Box::pin(
            async move {
                env.write_config(Some(Some(&up)))
                    .map_err(|e| e.to_string())?;
                let client =
                    query::connect(&env.local_conn(), env.dynamic.timing.local_query_timeout())
                        .await
                        .map_err(|e| e.to_string())?;
                query::reload(&client).await.map_err(|e| e.to_string())
            }
            .into_actor(self)
            .map(move |r, act, _| {
                if r.is_ok() {
                    act.following = Some(up2);
                }
                r
            }),
        )
    }
}

impl Handler<StopAndWait> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, StopAndWait(mode): StopAndWait, _ctx: &mut Context<Self>) -> Self::Result {
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
                        info!(event = "postgres_stopped", mode = ?mode, outcome = ?o);
                    }),
                    None => Ok(()),
                }
            }
            .into_actor(self)
            .map(move |r, act, _| {
                act.state = PgState::Stopped;
                act.following = None;
                if was_running && r.is_ok() {
                    let ev = act.pg_callbacks.stopped();
                    act.callback(Some(ev));
                }
                r.map_err(|e| e.to_string())
            }),
        )
    }
}

impl Handler<Restart> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    /// Runs as a `Start` job, so the HA loop keeps the lock and waits, and
    /// hears about the outcome as about any start.
    fn handle(&mut self, _msg: Restart, _ctx: &mut Context<Self>) -> Self::Result {
        self.check_alive();
        if let Some(b) = self.busy {
            return Box::pin(fut::ready(Err(format!("{b:?} already in progress"))));
        }
        let Some(mut pm) = self.postmaster.take() else {
            return Box::pin(fut::ready(Err("postgres is not running".to_owned())));
        };
        let standby = self.env.data_dir.join(datadir::STANDBY_SIGNAL).exists();
        let following = self.following.clone();
        let env = self.env.clone();
        self.busy = Some(JobKind::Start);
        self.state = PgState::Stopping;
        info!(
            event = "restart",
            standby, "restarting PostgreSQL (fast stop, start)"
        );
        let up = following.clone();
        Box::pin(
            async move {
                if let Err(e) = pm.stop(StopMode::Fast, env.pg_ctl_timeout()).await {
                    return Err((Some(pm), e.to_string()));
                }
                jobs::start(&env, standby.then_some(up.as_ref()))
                    .await
                    .map_err(|e| (None, e.to_string()))
            }
            .into_actor(self)
            .map(move |r, act, _| match r {
                Ok(pm) => {
                    act.finish(JobKind::Start, Ok(Some(pm)), following);
                    let ev = act.pg_callbacks.restarted();
                    act.callback(Some(ev));
                    Ok(())
                }
                Err((still_running, e)) => {
                    if still_running.is_some() {
                        act.postmaster = still_running;
                    }
                    act.finish(JobKind::Start, Err(e.clone()), following);
                    Err(e)
                }
            }),
        )
    }
}

impl Handler<StopGracefully> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, Result<u64, String>>;

    fn handle(&mut self, _msg: StopGracefully, _ctx: &mut Context<Self>) -> Self::Result {
        let pm = self.postmaster.take();
        let env = self.env.clone();
        self.state = PgState::Stopping;
        Box::pin(
            async move { super::switchover::stop(&env, pm).await }
                .into_actor(self)
                .map(|r, act, _| {
                    act.state = PgState::Stopped;
                    act.following = None;
                    r
                }),
        )
    }
}

impl Handler<SyncSlots> for PostgresSupervisor {
    type Result = ResponseActFuture<Self, Option<std::collections::BTreeMap<String, u64>>>;

    fn handle(&mut self, SyncSlots(req): SyncSlots, _ctx: &mut Context<Self>) -> Self::Result {
        let env = self.env.clone();
        Box::pin(
            async move {
                jobs::sync_slots(&env, &req)
                    .await
                    .inspect_err(|e| warn!(event = "slot_sync_failed", error = %e))
                    .ok()
            }
            .into_actor(self),
        )
    }
}

impl Handler<DynamicConfigChanged> for PostgresSupervisor {
    type Result = ();
    fn handle(&mut self, DynamicConfigChanged(d): DynamicConfigChanged, ctx: &mut Context<Self>) {
        self.env.dynamic = d;
        self.env.log_parameter_warnings();
        self.apply_config(ctx);
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
        self.env.cfg = cfg;
        self.env.log_parameter_warnings();
        self.apply_config(ctx);
    }
}
