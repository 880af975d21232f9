//! The distributed configuration store: one trait, one implementation per
//! backend, and the cluster view every backend produces.
//!
//! Every call gives up after `retry_timeout` and reports one of three error
//! classes; the HA decision code reacts to the class, never to a backend's
//! own error type.

pub mod cluster;
pub mod etcd;
mod etcd_conn;
mod etcd_view;
pub mod keys;
pub mod member;
pub mod memory;

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

pub use cluster::{Cluster, Failover, HistoryLine, Leader, Status, Versioned};
pub use member::{Member, MemberData, PendingChange};

/// What `update_leader` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderHold {
    /// The leader key is mine, under a session the store keeps for at least
    /// `ttl` from `renewed_at`: the send time of the last renewal it
    /// answered (this call's, or an earlier one still recent enough). A
    /// lease deadline computed from it never outlives the key in the store.
    Held { renewed_at: std::time::Instant },
    /// The key is gone or another member's.
    Lost,
}

impl LeaderHold {
    pub fn is_held(&self) -> bool {
        matches!(self, LeaderHold::Held { .. })
    }
}

/// The three classes of DCS failure, each with one defined reaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcsError {
    /// The store did not answer within `retry_timeout` (network, quorum loss).
    #[error("DCS unreachable: {0}")]
    Unreachable(String),
    /// A compare-and-swap or create-only write lost to another writer.
    #[error("DCS compare-and-swap conflict on {0}")]
    CasConflict(String),
    /// Anything else: bad data, auth failure, a bug.
    #[error("DCS error: {0}")]
    Other(String),
}

pub type DcsResult<T> = Result<T, DcsError>;

/// A change seen by the watch on the cluster prefix. It only says what moved;
/// readers re-read the cluster to learn the new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The `leader` key was created, changed or deleted.
    Leader,
    /// The `config` key changed.
    Config,
    /// `status` or `optime/leader` changed.
    Status,
    /// The `failover` key changed.
    Failover,
    /// Any other key under the prefix.
    Other,
    /// The watch broke; it will be re-established.
    Lost(String),
}

/// Operations the HA loop and the API need from a store. Names follow
/// Patroni's `AbstractDCS` so its behaviour maps one to one.
///
/// Implementations own the node's session (etcd lease, Consul session, ZK
/// session): the member and leader keys live and die with it.
pub trait Dcs: Send + Sync + 'static {
    /// Change the lease length and the per-request deadline. A changed ttl
    /// drops the current session so the next write creates one of the new
    /// length.
    fn set_timing(&self, ttl: Duration, retry_timeout: Duration);

    /// One consistent read of every key under the cluster prefix. A backend
    /// may answer from a view its watch keeps valid (docs/dcs.md, "Idle
    /// cost"); such a view may lag a write made by another client by the
    /// watch's delivery time.
    fn load_cluster(&self) -> BoxFuture<'_, DcsResult<Cluster>>;

    /// [`Dcs::load_cluster`] straight from the store, never from a cached
    /// view: for readers that must see what another client just wrote (the
    /// REST API's `GET /config`, `/cluster`, `/history`, switchover checks).
    fn load_cluster_fresh(&self) -> BoxFuture<'_, DcsResult<Cluster>> {
        self.load_cluster()
    }

    /// Write (or just keep alive) `members/<me>` under this node's session.
    fn touch_member(&self, data: &MemberData) -> BoxFuture<'_, DcsResult<()>>;

    /// Atomically create the leader key with my name. `Ok(false)` = someone
    /// else holds it.
    fn attempt_to_acquire_leader(&self) -> BoxFuture<'_, DcsResult<bool>>;

    /// Confirm my hold on the leader key, renewing the session if its last
    /// renewal is not recent (docs/dcs.md, "Idle cost"). `Held` says from
    /// when the store counts the session's `ttl`; `Lost` = the key is gone
    /// or held by someone else.
    fn update_leader(&self, leader: &Leader) -> BoxFuture<'_, DcsResult<LeaderHold>>;

    /// Renew this node's session (etcd lease) once, writing no key and
    /// never creating a session. `Ok(true)`: the session was alive and now
    /// runs for `ttl` from when the store received the request; `Ok(false)`:
    /// there is no session, or it is gone (its keys, the leader key among
    /// them, are gone with it). The leader's own schedule, `ha::lease`.
    fn keep_alive(&self) -> BoxFuture<'_, DcsResult<bool>>;

    /// Delete the leader key if (and only if) it is mine.
    fn delete_leader(&self) -> BoxFuture<'_, DcsResult<()>>;

    /// Write `status` (leader's WAL position and slots).
    fn write_status(&self, status: &Status) -> BoxFuture<'_, DcsResult<()>>;

    /// `initialize`: create-only when `create` (value `""` by convention,
    /// `Ok(false)` if it exists), otherwise overwrite with `value`.
    fn initialize(&self, create: bool, value: &str) -> BoxFuture<'_, DcsResult<bool>>;

    /// Delete `initialize` after a failed bootstrap.
    fn cancel_initialization(&self) -> BoxFuture<'_, DcsResult<()>>;

    /// Write `config`; with `version`, only if it is still that version.
    fn set_config_value(&self, value: &str, version: Option<i64>)
    -> BoxFuture<'_, DcsResult<bool>>;

    /// Write `failover`; with `version`, only if it is still that version.
    fn set_failover_value(
        &self,
        value: &str,
        version: Option<i64>,
    ) -> BoxFuture<'_, DcsResult<bool>>;

    /// Write `history`.
    fn set_history_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>>;

    /// Write `failsafe` (`{name: api_url}` JSON), unconditionally.
    fn set_failsafe_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>>;

    /// Remove every key of the cluster (`patronictl remove`).
    fn delete_cluster(&self) -> BoxFuture<'_, DcsResult<()>>;

    /// Drop this node's session so its member (and leader) keys vanish now
    /// rather than at ttl (clean shutdown).
    fn release_session(&self) -> BoxFuture<'_, DcsResult<()>>;

    /// Changes under the cluster prefix, for waking the HA loop early. The
    /// stream re-establishes itself after errors (after reporting `Lost`).
    fn watch(&self) -> BoxStream<'static, WatchEvent>;
}
