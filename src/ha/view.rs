//! The facts a decision is made from.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::config::{Tags, Timing};
use crate::dcs::{Cluster, DcsError};

/// What PostgreSQL reports about its own role when it answers queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgRole {
    Primary,
    Replica,
}

/// The data directory as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// Missing or empty: nothing to lose.
    Empty,
    /// A cluster is there. `was_primary` is true when pg_controldata says it
    /// last ran (or shut down) as a primary, so it may hold WAL no standby
    /// has seen.
    Initialized { sysid: String, was_primary: bool },
    /// Not empty, but pg_control cannot be read: whose data it holds is
    /// unknown, so it is neither started nor replaced.
    Unreadable(String),
}

/// Live state of the postmaster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgFacts {
    /// The postmaster process exists.
    pub running: bool,
    /// Set when PostgreSQL answers queries.
    pub role: Option<PgRole>,
    /// Primary: flush LSN; replica: max(receive, replay).
    pub lsn: Option<u64>,
    pub timeline: Option<u64>,
    /// The member this replica is configured to stream from.
    pub following: Option<String>,
}

impl PgFacts {
    pub fn is_primary(&self) -> bool {
        self.running && self.role == Some(PgRole::Primary)
    }
    pub fn is_replica(&self) -> bool {
        self.running && self.role == Some(PgRole::Replica)
    }
}

/// Long-running jobs the PostgresSupervisor runs in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Bootstrap,
    Clone,
    Reinitialize,
    Start,
    Stop,
    Promote,
    /// pg_rewind from the leader, then start as its replica.
    Rewind,
}

/// How the last finished job ended; reported once, then consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded(JobKind),
    /// A job other than a rewind failed.
    Failed(JobKind, String),
    /// A rewind failed: the job's raw report, which `ha::rewind` classifies.
    RewindFailed(super::rewind::RewindReport),
}

impl JobOutcome {
    /// Why the job failed, for the log; `None` when it succeeded.
    pub fn failure(&self) -> Option<String> {
        match self {
            JobOutcome::Succeeded(_) => None,
            JobOutcome::Failed(_, why) => Some(why.clone()),
            JobOutcome::RewindFailed(r) => Some(r.to_string()),
        }
    }
}

/// How a former primary may rejoin (docs/ha.md §8), and whether a rewind
/// already failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RewindView {
    /// `postgresql.use_pg_rewind` (local, else dynamic).
    pub enabled: bool,
    /// `postgresql.remove_data_directory_on_rewind_failure`.
    pub remove_on_failure: bool,
    /// `postgresql.remove_data_directory_on_diverged_timelines`.
    pub remove_on_diverged: bool,
    /// pg_rewind ran and failed; stays set until an operator acts (daemon
    /// restart, reinitialise), so a failed rewind is never retried in a loop.
    /// Kept by `ha::Node` (`ha::rewind::RewindState`); the caller's value is
    /// ignored.
    pub failed: bool,
}

/// What a peer answered on `GET /patroni` during a leader race.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub name: String,
    /// `None` when the peer did not answer in time; unreachable peers do not
    /// block a race.
    pub reply: Option<PeerReply>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerReply {
    pub role: PgRole,
    pub running: bool,
    pub lsn: Option<u64>,
    /// `None` when the peer did not say (older peers).
    pub timeline: Option<u64>,
    pub tags: Tags,
    /// `watchdog_failed: true`: its watchdog is required but unusable.
    pub watchdog_failed: bool,
}

impl PeerReply {
    /// Whether the peer may be promoted at all (Patroni's
    /// `failover_limitation`): not `nofailover`, watchdog not failed.
    pub fn can_promote(&self) -> bool {
        self.tags.can_failover() && !self.watchdog_failed
    }
}

/// The watchdog device of this node (docs/ha.md §12), as the elector found
/// it before the decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WatchdogState {
    /// Not used: `mode: off`, or `automatic` without a usable device.
    #[default]
    Off,
    /// Usable as far as is known, not armed: armed before leading.
    Ready,
    /// Armed: kept alive with every lease renewal.
    Active,
    /// `mode: required` but the device cannot be used (why): this node must
    /// neither take nor keep the leadership.
    Failed(String),
}

impl WatchdogState {
    /// Why this node may not lead, if it may not.
    pub fn failure(&self) -> Option<&str> {
        match self {
            WatchdogState::Failed(why) => Some(why),
            _ => None,
        }
    }
}

/// The DCS as this cycle saw it. Built once per cycle, so the size of the
/// `Ok` variant costs nothing worth a box.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum DcsView {
    Ok(Cluster),
    Failed(DcsError),
}

/// Everything this node knows about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalView {
    pub name: String,
    pub tags: Tags,
    pub timing: Timing,
    pub maximum_lag_on_failover: u64,
    /// Synchronous replication settings: with a mode on and the `sync` key
    /// in force only the members it lists may take the leader key
    /// (docs/replication-modes.md §4).
    pub sync: crate::config::SyncConfig,
    /// What the primary's PostgreSQL says about its standbys (empty
    /// elsewhere): the sync rules' input.
    pub sync_facts: super::sync::SyncFacts,
    /// `primary_start_timeout`: how long a lock holder whose primary
    /// crashed may take to start it again before it fails over to a
    /// healthy replica; zero fails over at once (docs/ha.md §8.1).
    pub primary_start_timeout: std::time::Duration,
    /// This node ran as a primary, lost the DCS and was started read-only
    /// without it (docs/ha.md §9.6): its WAL may have left a new leader's
    /// history, so it rejoins as a former primary would (docs/ha.md §8). Kept by
    /// `ha::Node`.
    pub rejoin_pending: bool,
    /// How long the running job, a start as primary, has run (docs/ha.md
    /// §8.1); `None` when no such job runs.
    pub starting_primary_for: Option<std::time::Duration>,
    /// A `bootstrap` section exists, so this node may create a new cluster.
    pub can_bootstrap: bool,
    /// A `no_leader` replica method is configured: an empty data
    /// directory may be filled while the cluster has no leader.
    pub can_clone_without_leader: bool,
    pub data_dir: DataDir,
    pub pg: PgFacts,
    /// The job the supervisor is running now.
    pub busy: Option<JobKind>,
    /// The job that finished since the last cycle.
    pub outcome: Option<JobOutcome>,
    /// Until when the leader lease surely holds: send time of the last
    /// successful renewal plus ttl. `None` when this node holds no lease.
    pub lease_deadline: Option<Instant>,
    /// The fencing point the fence process confirmed it holds: it stops
    /// PostgreSQL then unless a newer order comes. `None` when no live fence
    /// confirmed one (not running, disarmed, paused, silent for a while).
    /// With it, a leader cut off from the DCS may serve right up to its own
    /// fencing point and leave the last step to the fence.
    pub fence_armed: Option<Instant>,
    /// Peer answers, gathered when the cluster has no leader, and by the
    /// leader while a `failover` request exists.
    pub peers: Vec<PeerStatus>,
    /// The leader key names this node but is attached to a session that is
    /// not this process's (a daemon started with the same `name`): it is
    /// not this node's to release (docs/ha.md §3.4).
    pub leader_key_foreign: bool,
    /// Failsafe mode facts (docs/ha.md §10).
    pub failsafe: FailsafeView,
    /// Rejoin policy for a former primary.
    pub rewind: RewindView,
    /// A valid `patroni.dynamic.json` is in the data directory (checked only
    /// when the `config` key is missing or invalid).
    pub config_backup: bool,
    /// Switchover facts (wall clock, graceful step-down).
    pub switchover: super::switchover::SwitchoverView,
    /// Pause (maintenance) mode, `pause` of the dynamic configuration
    /// (docs/ha.md §11): nothing is promoted, demoted, started or stopped
    /// automatically.
    pub paused: bool,
    /// The watchdog device: armed before this node leads, and with
    /// `required` a reason not to lead at all.
    pub watchdog: WatchdogState,
    /// The remote PostgreSQL of a standby cluster
    /// (`super::standby_cluster::remote_upstream`); `None` in a normal
    /// cluster (docs/ha.md §16).
    pub standby_cluster: Option<super::action::Upstream>,
}

/// What failsafe mode needs to know. All empty when `failsafe_mode` is off.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FailsafeView {
    /// `failsafe_mode` of the dynamic configuration.
    pub enabled: bool,
    /// My own REST address, as the leader lists it in the `failsafe` key.
    pub api_url: String,
    /// The `failsafe` key of the last successful DCS read (used when this
    /// cycle's read failed).
    pub last_known: Option<BTreeMap<String, String>>,
    /// Answers to `POST /failsafe`, gathered only when the DCS read failed,
    /// I run as primary and `last_known` lists me.
    pub acks: Option<Vec<FailsafeAck>>,
    /// The last `POST /failsafe` a leader sent me.
    pub heartbeat: Option<LeaderHeartbeat>,
}

/// One member's answer to `POST /failsafe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailsafeAck {
    pub name: String,
    /// 200 `Accepted`; anything else (refusal, timeout) is false.
    pub accepted: bool,
}

/// A leader that told me over REST it still runs, while the DCS could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHeartbeat {
    pub name: String,
    pub conn_url: String,
    pub api_url: String,
    /// When the `POST /failsafe` arrived.
    pub at: Instant,
}
