//! Messages handled by the `PostgresSupervisor`.

use std::fmt;

use actix::Message;
use serde::Serialize;

use crate::config::DynamicConfig;
use crate::ha::{DataDir, JobKind, JobOutcome, PgFacts, PgRole, Upstream};
use crate::messages::restart::RestartOptions;

/// PostgreSQL's state as Patroni names it in member keys and `/patroni`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PgState {
    Stopped,
    Starting,
    Running,
    Stopping,
    Crashed,
    StartFailed,
    CreatingReplica,
    InitializingNewCluster,
    InitdbFailed,
    /// pg_rewind ran and failed. Sticky: PostgreSQL stays down in this
    /// state until a job rebuilds it or the daemon restarts.
    RewindFailed,
    Unknown,
}

impl PgState {
    pub fn as_str(self) -> &'static str {
        match self {
            PgState::Stopped => "stopped",
            PgState::Starting => "starting",
            PgState::Running => "running",
            PgState::Stopping => "stopping",
            PgState::Crashed => "crashed",
            PgState::StartFailed => "start failed",
            PgState::CreatingReplica => "creating replica",
            PgState::InitializingNewCluster => "initializing new cluster",
            PgState::InitdbFailed => "initdb failed",
            PgState::RewindFailed => "rewind failed",
            PgState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for PgState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `pg_stat_replication`, as `/patroni` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicationRow {
    pub usename: String,
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: String,
    pub sync_state: String,
    pub sync_priority: i32,
}

/// Everything the supervisor knows about its PostgreSQL right now.
#[derive(Debug, Clone, PartialEq)]
pub struct PgStatus {
    pub state: PgState,
    pub facts: PgFacts,
    pub data_dir: DataDir,
    pub busy: Option<JobKind>,
    /// When the running job, a start as primary, began (docs/ha.md §8.1).
    pub starting_primary_since: Option<std::time::Instant>,
    /// Only filled for `GetPgStatus { take_outcome: true }`.
    pub outcome: Option<JobOutcome>,
    pub server_version: Option<u32>,
    pub postmaster_start_time: Option<String>,
    /// Replica only.
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    pub replayed_timestamp: Option<String>,
    pub replay_paused: bool,
    /// `streaming` or `in archive recovery` (replicas).
    pub replication_state: Option<String>,
    pub replication: Vec<ReplicationRow>,
    /// PostgreSQL runs with settings only a restart applies (its own
    /// `pg_settings.pending_restart`, and command-line parameters whose
    /// running value differs from the configured one).
    pub pending_restart: std::collections::BTreeMap<String, crate::dcs::PendingChange>,
    /// The scheduled restart, as the member key shows it (`schedule`, the
    /// filters, `postmaster_start_time`); `None` when none is scheduled.
    pub scheduled_restart: Option<serde_json::Value>,
}

impl PgStatus {
    /// The role `/patroni` and the restart conditions name: what
    /// PostgreSQL runs as, or, when it does not answer, what its data
    /// directory was last.
    pub fn role_str(&self) -> &'static str {
        match self.facts.role {
            Some(PgRole::Primary) => "primary",
            Some(PgRole::Replica) => "replica",
            None => match &self.data_dir {
                DataDir::Empty => "uninitialized",
                DataDir::Initialized {
                    was_primary: true, ..
                } => "primary",
                DataDir::Initialized { .. } | DataDir::Unreadable(_) => "replica",
            },
        }
    }

    /// Nothing known beyond `state`: the base the supervisor fills in, and
    /// what the API reports when the supervisor does not answer.
    pub fn unknown(state: PgState) -> PgStatus {
        PgStatus {
            state,
            facts: PgFacts::default(),
            data_dir: DataDir::Empty,
            busy: None,
            starting_primary_since: None,
            outcome: None,
            server_version: None,
            postmaster_start_time: None,
            receive_lsn: None,
            replay_lsn: None,
            replayed_timestamp: None,
            replay_paused: false,
            replication_state: None,
            replication: Vec::new(),
            pending_restart: Default::default(),
            scheduled_restart: None,
        }
    }
}

/// Fresh facts about PostgreSQL (queries it when it runs).
#[derive(Debug, Message)]
#[rtype(result = "PgStatus")]
pub struct GetPgStatus {
    /// The HA loop consumes the outcome of the last finished job; other
    /// askers (the API) leave it in place.
    pub take_outcome: bool,
}

pub use crate::postgres::StopMode;

/// A job for the supervisor to run in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    Bootstrap,
    Clone {
        from: Upstream,
    },
    /// A `no_leader` replica method, no upstream.
    CloneWithoutLeader,
    /// Move the data directory aside and rebuild from `from`;
    /// `remove_old`: delete the moved-aside copy once the new one runs
    /// (`POST /reinitialize`), else keep it (the HA loop's rebuilds).
    Reinitialize {
        from: Upstream,
        remove_old: bool,
    },
    Rewind {
        from: Upstream,
    },
    StartPrimary,
    StartReplica {
        upstream: Option<Upstream>,
    },
    Promote,
}

impl Job {
    pub fn kind(&self) -> JobKind {
        match self {
            Job::Bootstrap => JobKind::Bootstrap,
            Job::Clone { .. } | Job::CloneWithoutLeader => JobKind::Clone,
            Job::Reinitialize { .. } => JobKind::Reinitialize,
            Job::Rewind { .. } => JobKind::Rewind,
            Job::StartPrimary | Job::StartReplica { .. } => JobKind::Start,
            Job::Promote => JobKind::Promote,
        }
    }
}

/// Start a job. Refused (`Err`) while another job runs.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct RunJob(pub Job);

/// Re-point a running standby (rewrite `primary_conninfo`, reload).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Follow(pub Upstream);

/// The dynamic configuration changed (parameters, use_slots...).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DynamicConfigChanged(pub DynamicConfig);

/// Stop PostgreSQL and wait for it (daemon shutdown); returns when it is down.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct StopAndWait(pub StopMode);

/// Operations the REST API asks for (docs/rest-api.md, "Summary"). Each answers what
/// came of it; the API alone turns that into an HTTP reply.
#[derive(Debug, Message)]
#[rtype(result = "PgOpOutcome")]
pub enum PgOp {
    /// `POST /restart` without `schedule`: restart PostgreSQL now in the
    /// role it runs in (fast stop, start with the current configuration)
    /// and answer once it accepts connections again, or why not.
    Restart(RestartOptions),
    /// `POST /restart` with `schedule` (Unix seconds, and as given).
    ScheduleRestart {
        at_unix: f64,
        schedule: String,
        options: RestartOptions,
    },
    /// `DELETE /restart`.
    CancelScheduledRestart,
    /// `POST /reinitialize`: stop, move the data directory aside, rebuild
    /// from `from`, start; `force` cancels a running job first. Answers
    /// once the job started.
    Reinitialize { from: Upstream, force: bool },
}

/// What came of a [`PgOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOpOutcome {
    /// PostgreSQL was stopped and accepts connections again.
    Restarted,
    /// The restart's stop or start failed (the job outcome says why).
    RestartFailed,
    /// The restart was cancelled before it finished (e.g. by a forced
    /// reinitialize).
    RestartCancelled,
    /// A job runs already; the name Patroni gives it (`restart`,
    /// `reinitialize`...).
    InProgress(&'static str),
    /// No PostgreSQL to restart.
    NotRunning,
    RestartScheduled,
    /// One restart at a time can be scheduled.
    AlreadyScheduled,
    ScheduledRestartDeleted,
    NoScheduledRestart,
    ReinitializeStarted,
}

impl fmt::Display for PgOpOutcome {
    /// In Patroni's words (the REST API replies with them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgOpOutcome::Restarted => f.write_str("restarted successfully"),
            PgOpOutcome::RestartFailed => f.write_str("restart failed"),
            PgOpOutcome::RestartCancelled => f.write_str("restart cancelled"),
            PgOpOutcome::InProgress(job) => write!(f, "{job} already in progress"),
            PgOpOutcome::NotRunning => f.write_str("postgres is not running"),
            PgOpOutcome::RestartScheduled => f.write_str("Restart scheduled"),
            PgOpOutcome::AlreadyScheduled => f.write_str("Another restart is already scheduled"),
            PgOpOutcome::ScheduledRestartDeleted => f.write_str("scheduled restart deleted"),
            PgOpOutcome::NoScheduledRestart => f.write_str("no restarts are scheduled"),
            PgOpOutcome::ReinitializeStarted => f.write_str("reinitialize started"),
        }
    }
}

/// Bring the replication slots in line with the cluster (the leader every
/// cycle after renewing its lock, a replica for members cascading from it).
/// Answers the physical slot positions, `None` if the sync failed.
#[derive(Debug, Message)]
#[rtype(result = "Option<std::collections::BTreeMap<String, u64>>")]
pub struct SyncSlots(pub crate::ha::slots::SlotRequest);

/// Switchover: CHECKPOINT, stop fast, answer the shutdown checkpoint's LSN.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, String>")]
pub struct StopGracefully;
