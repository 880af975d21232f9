//! Messages handled by the `LeaderElector`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix::Message;

use crate::config::Tags;
use crate::dcs::Cluster;
use crate::ha::JobOutcome;

/// Run a cycle now instead of waiting for `loop_wait` (watch event, finished
/// job, API request).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Wake(pub &'static str);

/// A supervisor job finished.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct JobFinished(pub JobOutcome);

/// The HA loop's view, for the REST API (read from the elector's board:
/// `messages::board::HaView`).
#[derive(Debug, Clone)]
pub struct HaState {
    pub name: String,
    pub scope: String,
    pub tags: Tags,
    /// The last DCS read, `None` if the last read failed or it is older than ttl.
    pub cluster: Option<Arc<Cluster>>,
    /// This node holds the leader lease right now.
    pub is_leader: bool,
    pub dcs_last_seen: Option<SystemTime>,
    pub ttl_secs: f64,
    pub loop_wait_secs: f64,
    pub maximum_lag_on_failover: u64,
    /// When the next HA cycle is due (liveness).
    pub next_cycle_due: Option<std::time::Instant>,
    /// `failsafe_mode` of the dynamic configuration.
    pub failsafe_mode: bool,
    /// Primary: running on failsafe confirmations; replica: a leader sent
    /// `POST /failsafe` less than ttl ago.
    pub failsafe_active: bool,
    /// The `failsafe` key of the last successful DCS read.
    pub failsafe: Option<BTreeMap<String, String>>,
    /// `watchdog.mode: required` and the device cannot be used.
    pub watchdog_failed: bool,
    /// Until when this node's lease surely holds, as the HA core keeps it
    /// (`ha::Node::lease_deadline`; `/metrics`).
    pub lease_deadline: Option<Instant>,
    /// The fence's directory (`<data_dir>.fence`), whose answer `/metrics`
    /// reads; `None` in tests without a fence.
    pub fence_dir: Option<std::sync::Arc<std::path::Path>>,
}

/// Graceful shutdown: stop PostgreSQL, release the lock, leave.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Patroni's `while_not_sync_standby` around a `POST /restart`
/// (docs/replication-modes.md §3). With a synchronous mode on and the
/// leader lock not held, `Release` publishes `nosync` in the member key
/// and answers `true` once the primary released this standby from the
/// `sync` key (at most two `loop_wait`; at once when the key does not
/// list it); the member key keeps `nosync` until `Resume`, so the primary
/// does not pick the node again while PostgreSQL restarts. Otherwise it
/// answers `false` and nothing is to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "bool")]
pub enum SyncDuty {
    Release,
    Resume,
}

/// A leader cut off from the DCS sent `POST /failsafe`: treat it as a live
/// leader for ttl from `at`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct FailsafeHeartbeat {
    pub name: String,
    pub conn_url: String,
    pub api_url: String,
    pub at: Instant,
}
