//! Messages handled by the `PostgresSupervisor`.

use std::fmt;

use actix::Message;
use serde::Serialize;

use crate::config::DynamicConfig;
use crate::ha::{DataDir, JobKind, JobOutcome, PgFacts, PgRole, Upstream};
use crate::messages::restart::RestartOptions;

/// PostgreSQL's state as Patroni names it in member keys and `/patroni`
/// (Patroni's `PostgresqlState`; docs/ha.md §15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PgState {
    Stopped,
    Starting,
    Running,
    Stopping,
    /// A fast stop did not complete (`pg_ctl stop` failed or timed out).
    StopFailed,
    Crashed,
    StartFailed,
    /// `POST /restart` (or a scheduled one): from the stop to the end of
    /// the start.
    Restarting,
    /// The restart's stop or start failed and PostgreSQL is not running.
    RestartFailed,
    CreatingReplica,
    InitializingNewCluster,
    InitdbFailed,
    /// A `bootstrap.method` other than `initdb` runs.
    RunningCustomBootstrap,
    CustomBootstrapFailed,
    /// pg_rewind ran and failed (`ha::rewind` says so; shown on
    /// `ShowRewindFailed`). Sticky: PostgreSQL stays down in this state
    /// until a job rebuilds it or the daemon restarts.
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
            PgState::StopFailed => "stop failed",
            PgState::Crashed => "crashed",
            PgState::StartFailed => "start failed",
            PgState::Restarting => "restarting",
            PgState::RestartFailed => "restart failed",
            PgState::CreatingReplica => "creating replica",
            PgState::InitializingNewCluster => "initializing new cluster",
            PgState::InitdbFailed => "initdb failed",
            PgState::RunningCustomBootstrap => "running custom bootstrap script",
            PgState::CustomBootstrapFailed => "custom bootstrap failed",
            PgState::RewindFailed => "rewind failed",
            PgState::Unknown => "unknown",
        }
    }
}

impl PgState {
    /// The state of a PostgreSQL that is not running, seen while no job
    /// runs, as Patroni's HA loop names it (`ha.py`, PostgreSQL not
    /// healthy): while paused it is `stopped`, whatever failed before (the
    /// cluster waits for a person); otherwise one that was running or
    /// starting has `crashed`. Every other state (a stop, a failed initdb or
    /// rewind) keeps its name.
    pub fn when_down(self, paused: bool) -> PgState {
        match self {
            PgState::Running | PgState::Starting | PgState::Unknown => {
                if paused {
                    PgState::Stopped
                } else {
                    PgState::Crashed
                }
            }
            PgState::Crashed | PgState::StartFailed | PgState::RestartFailed if paused => {
                PgState::Stopped
            }
            s => s,
        }
    }

    /// The state while a job of `kind` runs (`custom`: the bootstrap runs a
    /// `bootstrap.method` other than `initdb`); `None`: it keeps the current
    /// one (a promotion, a rewind).
    pub fn during(kind: JobKind, custom: bool) -> Option<PgState> {
        Some(match kind {
            JobKind::Bootstrap if custom => PgState::RunningCustomBootstrap,
            JobKind::Bootstrap => PgState::InitializingNewCluster,
            JobKind::Clone | JobKind::Reinitialize => PgState::CreatingReplica,
            JobKind::Start => PgState::Starting,
            JobKind::Stop => PgState::Stopping,
            JobKind::Promote | JobKind::Rewind => return None,
        })
    }

    /// The state after a job of `kind` failed (`running`: a postmaster is
    /// still up; `restart`: the job was a restart's start).
    pub fn after_failure(kind: JobKind, running: bool, custom: bool, restart: bool) -> PgState {
        match (kind, running) {
            (_, true) => PgState::Running,
            (JobKind::Bootstrap, false) if custom => PgState::CustomBootstrapFailed,
            (JobKind::Bootstrap, false) => PgState::InitdbFailed,
            (_, false) if restart => PgState::RestartFailed,
            (_, false) => PgState::StartFailed,
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
    /// How far the standby flushed; the sync rules' position, not shown.
    #[serde(skip)]
    pub flush_lsn: Option<u64>,
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
    /// `synchronous_standby_names` as PostgreSQL runs it (`None`: not
    /// read).
    pub synchronous_standby_names: Option<String>,
    /// PostgreSQL runs with settings only a restart applies (its own
    /// `pg_settings.pending_restart`, and command-line parameters whose
    /// running value differs from the configured one).
    pub pending_restart: std::collections::BTreeMap<String, crate::dcs::PendingChange>,
    /// The scheduled restart, as the member key shows it (`schedule`, the
    /// filters, `postmaster_start_time`); `None` when none is scheduled.
    pub scheduled_restart: Option<serde_json::Value>,
    /// PostgreSQL is configured to stream from the remote of a standby
    /// cluster: as a replica it is the standby leader (docs/ha.md §16).
    pub follows_remote: bool,
}

impl PgStatus {
    /// The role `/patroni` and the restart conditions name: what
    /// PostgreSQL runs as, or, when it does not answer, what its data
    /// directory was last.
    pub fn role_str(&self) -> &'static str {
        match self.facts.role {
            Some(PgRole::Primary) => "primary",
            Some(PgRole::Replica) if self.follows_remote => "standby_leader",
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
            synchronous_standby_names: None,
            pending_restart: Default::default(),
            scheduled_restart: None,
            follows_remote: false,
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
    /// Bootstrap a standby cluster: clone the remote, start as its
    /// standby; reported as a bootstrap (docs/ha.md §16).
    BootstrapStandby {
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
            Job::Bootstrap | Job::BootstrapStandby { .. } => JobKind::Bootstrap,
            Job::Clone { .. } | Job::CloneWithoutLeader => JobKind::Clone,
            Job::Reinitialize { .. } => JobKind::Reinitialize,
            Job::Rewind { .. } => JobKind::Rewind,
            Job::StartPrimary | Job::StartReplica { .. } => JobKind::Start,
            Job::Promote => JobKind::Promote,
        }
    }
}

/// Why the supervisor did not do what a message asked. The elector logs it
/// and reports the action failed (`ha::ActionResult::Failed`); nothing
/// matches on the text.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// Another job runs (Patroni's wording: `restart already in progress`).
    #[error("{0} already in progress")]
    Busy(&'static str),
    /// The message needs a running PostgreSQL.
    #[error("PostgreSQL is not running")]
    NotRunning,
    /// A start as primary that was told to give up did not end within its
    /// bound (docs/ha.md §8.1).
    #[error("the start as primary did not end in time")]
    StartDidNotEnd,
    /// After a fast stop, pg_control does not say "shut down".
    #[error("PostgreSQL did not shut down cleanly ({0})")]
    UncleanShutdown(String),
    #[error(transparent)]
    Pg(#[from] crate::postgres::PgError),
}

/// Start a job. Refused (`Err`) while another job runs.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct RunJob(pub Job);

/// Show the state `rewind failed` while PostgreSQL stays down and no job
/// runs (`ha::Action::ShowRewindFailed`; docs/ha.md §15). Display only: the
/// sticky state itself is `ha::Node`'s, and the next job replaces the name.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ShowRewindFailed;

/// Re-point a running standby (rewrite `primary_conninfo`, reload).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct Follow(pub Upstream);

/// The dynamic configuration changed (parameters, use_slots...).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DynamicConfigChanged(pub DynamicConfig);

/// Stop PostgreSQL and wait for it (daemon shutdown); returns when it is down.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct StopAndWait(pub StopMode);

/// Set `synchronous_standby_names` (docs/replication-modes.md §3;
/// `None`: back to the configured parameter), rewrite postgresql.conf and
/// reload; answers once the reload is done, so a step after it (a
/// promotion) runs with the new value.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), SupervisorError>")]
pub struct SetStandbyNames(pub Option<String>);

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
#[rtype(result = "Result<u64, SupervisorError>")]
pub struct StopGracefully;

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14 §5: Patroni's names, one transition each.
    #[test]
    fn postgres_that_died_is_crashed_or_stopped_while_paused() {
        assert_eq!(PgState::Running.when_down(false), PgState::Crashed);
        assert_eq!(PgState::Starting.when_down(false), PgState::Crashed);
        assert_eq!(PgState::Running.when_down(true), PgState::Stopped);
        // A pause that begins after the crash, or after a failed start.
        assert_eq!(PgState::Crashed.when_down(true), PgState::Stopped);
        assert_eq!(PgState::StartFailed.when_down(true), PgState::Stopped);
        assert_eq!(PgState::RestartFailed.when_down(true), PgState::Stopped);
        // Unpaused, a failure keeps its name; `stopped` stays `stopped`
        // after the pause ends, until something starts PostgreSQL.
        assert_eq!(PgState::StartFailed.when_down(false), PgState::StartFailed);
        assert_eq!(PgState::Stopped.when_down(false), PgState::Stopped);
        for s in [
            PgState::Stopping,
            PgState::StopFailed,
            PgState::InitdbFailed,
            PgState::CustomBootstrapFailed,
            PgState::RewindFailed,
        ] {
            assert_eq!(s.when_down(true), s);
            assert_eq!(s.when_down(false), s);
        }
    }

    #[test]
    fn job_states() {
        assert_eq!(
            PgState::during(JobKind::Bootstrap, false),
            Some(PgState::InitializingNewCluster)
        );
        assert_eq!(
            PgState::during(JobKind::Bootstrap, true),
            Some(PgState::RunningCustomBootstrap)
        );
        assert_eq!(
            PgState::during(JobKind::Clone, false),
            Some(PgState::CreatingReplica)
        );
        assert_eq!(
            PgState::during(JobKind::Reinitialize, true),
            Some(PgState::CreatingReplica)
        );
        assert_eq!(
            PgState::during(JobKind::Start, false),
            Some(PgState::Starting)
        );
        assert_eq!(
            PgState::during(JobKind::Stop, false),
            Some(PgState::Stopping)
        );
        assert_eq!(PgState::during(JobKind::Promote, false), None);
        assert_eq!(PgState::during(JobKind::Rewind, false), None);

        let f = PgState::after_failure;
        assert_eq!(
            f(JobKind::Bootstrap, false, false, false),
            PgState::InitdbFailed
        );
        assert_eq!(
            f(JobKind::Bootstrap, false, true, false),
            PgState::CustomBootstrapFailed
        );
        assert_eq!(f(JobKind::Start, false, false, false), PgState::StartFailed);
        assert_eq!(
            f(JobKind::Start, false, false, true),
            PgState::RestartFailed
        );
        assert_eq!(f(JobKind::Clone, false, false, false), PgState::StartFailed);
        assert_eq!(f(JobKind::Start, true, false, true), PgState::Running);
    }

    /// The names are Patroni's `PostgresqlState` values.
    #[test]
    fn names() {
        for (s, name) in [
            (PgState::Stopped, "stopped"),
            (PgState::Starting, "starting"),
            (PgState::Running, "running"),
            (PgState::Stopping, "stopping"),
            (PgState::StopFailed, "stop failed"),
            (PgState::Crashed, "crashed"),
            (PgState::StartFailed, "start failed"),
            (PgState::Restarting, "restarting"),
            (PgState::RestartFailed, "restart failed"),
            (PgState::CreatingReplica, "creating replica"),
            (PgState::InitializingNewCluster, "initializing new cluster"),
            (PgState::InitdbFailed, "initdb failed"),
            (
                PgState::RunningCustomBootstrap,
                "running custom bootstrap script",
            ),
            (PgState::CustomBootstrapFailed, "custom bootstrap failed"),
        ] {
            assert_eq!(s.as_str(), name);
        }
    }
}
