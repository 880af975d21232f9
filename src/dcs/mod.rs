//! The distributed configuration store: one trait, one implementation per
//! backend, and the cluster view every backend produces.
//!
//! Every call gives up after `retry_timeout` and reports one of two error
//! classes; the HA decision code reacts to the class, never to a backend's
//! own error type. A compare-and-swap that lost is not an error: it is the
//! call's outcome (`Ok(false)`, [`LeaderHold::Lost`]), the one way every
//! backend reports it (docs/dcs.md, "The trait").

pub mod cluster;
pub mod consul;
mod consul_http;
pub mod consul_service;
pub mod etcd;
pub mod etcd2;
mod etcd2_http;
mod etcd2_watch;
mod etcd_conn;
mod etcd_srv;
pub mod etcd_tls;
mod etcd_view;
pub mod exhibitor;
pub mod keys;
pub mod member;
pub mod memory;
pub mod metered;
pub mod sync_key;
pub mod version;
pub mod zookeeper;
pub mod zookeeper_tls;

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

pub use cluster::{Cluster, Failover, HistoryLine, Leader, Status, Versioned};
pub use member::{Member, MemberData, PendingChange};
pub use sync_key::SyncState;
pub use version::{Expiry, SessionId, Version};

/// What `attempt_to_acquire_leader` and `update_leader` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderHold {
    /// The leader key is mine, attached to my session, which the store
    /// keeps as `expiry` says (from the send time of the last renewal it
    /// answered: this call's, or an earlier one still recent enough). A
    /// lease deadline of `expiry.earliest` never outlives the key in the
    /// store.
    Held { expiry: Expiry },
    /// The key is gone, another session's, or not at the version given:
    /// the compare-and-swap lost, and nothing was written.
    Lost,
}

impl LeaderHold {
    pub fn is_held(&self) -> bool {
        matches!(self, LeaderHold::Held { .. })
    }

    /// Until when the hold surely lasts, if held.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        match self {
            LeaderHold::Held { expiry } => Some(expiry.earliest),
            LeaderHold::Lost => None,
        }
    }
}

/// The two classes of DCS failure, each with one defined reaction. A lost
/// compare-and-swap is none of them: it is the call's outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcsError {
    /// The store did not answer within `retry_timeout` (network, quorum
    /// loss, a frozen server): nothing is known of what the call did.
    #[error("DCS unreachable: {0}")]
    Unreachable(String),
    /// Anything else: bad data, auth failure, a bug.
    #[error("DCS error: {0}")]
    Other(String),
}

pub type DcsResult<T> = Result<T, DcsError>;

/// Run `f` within `limit` (a call's `retry_timeout`): no answer by then is
/// `Unreachable`, named `"{store} {what}"`. The backends whose calls need
/// nothing more than this bound (ZooKeeper, Consul) share it; etcd's also
/// reset their connection on a timeout.
pub(crate) fn bounded<'a, T: Send + 'a>(
    limit: Duration,
    store: &'static str,
    what: &'static str,
    f: impl std::future::Future<Output = DcsResult<T>> + Send + 'a,
) -> BoxFuture<'a, DcsResult<T>> {
    Box::pin(async move {
        match tokio::time::timeout(limit, f).await {
            Ok(r) => r,
            Err(_) => Err(DcsError::Unreachable(format!(
                "{store} {what}: no answer within {limit:?}"
            ))),
        }
    })
}

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

    /// One read of every key under the cluster prefix. What it promises
    /// about consistency is each backend's to state (docs/dcs.md, "What
    /// `load_cluster` promises"); every backend promises at least that one
    /// answer is one state of the store (no mix of two), and that this
    /// client's own acknowledged writes show in it. A backend may answer
    /// from a view its watch keeps valid (docs/dcs.md, "Idle cost"); such a
    /// view may lag a write made by another client by the watch's delivery
    /// time.
    fn load_cluster(&self) -> BoxFuture<'_, DcsResult<Cluster>>;

    /// [`Dcs::load_cluster`] straight from the store, never from a cached
    /// view: for readers that must see what another client just wrote (the
    /// REST API's `GET /config`, `/cluster`, `/history`, switchover checks).
    fn load_cluster_fresh(&self) -> BoxFuture<'_, DcsResult<Cluster>> {
        self.load_cluster()
    }

    /// Write (or just keep alive) `members/<me>` under this node's session.
    fn touch_member(&self, data: &MemberData) -> BoxFuture<'_, DcsResult<()>>;

    /// Atomically create the leader key with my name, attached to my
    /// session (renewed first, so the expiry counts from before the call).
    /// `Held`: created; `Lost`: the key exists (anyone's, even mine).
    fn attempt_to_acquire_leader(&self) -> BoxFuture<'_, DcsResult<LeaderHold>>;

    /// Confirm my hold on the leader key, renewing the session if its last
    /// renewal is not recent (docs/dcs.md, "Idle cost"). A compare-and-swap
    /// on `leader`, the key as the caller read it: it holds only while the
    /// key is still at `leader.version` and attached to a session of this
    /// process (never on the name alone: a daemon of the same name, a
    /// restarted one or a late request must not take or keep another
    /// process's key). A key of mine still on a session I dropped (a `ttl`
    /// change) is moved to my current one by the same compare. `Held` says
    /// how long the store keeps the session; `Lost` = the compare lost.
    fn update_leader(&self, leader: &Leader) -> BoxFuture<'_, DcsResult<LeaderHold>>;

    /// Renew this node's session once, writing no key and never creating a
    /// session. `Some`: the session was alive and the store now keeps it as
    /// the expiry says; `None`: there is no session, or it is gone (its
    /// keys, the leader key among them, are gone with it). The leader's own
    /// schedule, `ha::lease`.
    fn keep_alive(&self) -> BoxFuture<'_, DcsResult<Option<Expiry>>>;

    /// This node's current session (etcd lease), if it holds one.
    fn session(&self) -> Option<SessionId> {
        None
    }

    /// Whether `id` is a session of this process: its current one, one it
    /// dropped (a `ttl` change) or one it inherited
    /// ([`Dcs::inherit_session`]). The sessions [`Dcs::delete_leader`] and
    /// [`Dcs::update_leader`] count as mine.
    fn holds_session(&self, id: &SessionId) -> bool {
        self.session().as_ref() == Some(id)
    }

    /// A session this node's previous daemon held, read by the elector from
    /// the node's own disk (docs/dcs.md, "A restarted daemon"): counted as
    /// a session of this process, so [`Dcs::update_leader`] moves a leader
    /// key still under it onto the current session, by a compare on the
    /// key's version and that session in one request, never on the name.
    fn inherit_session(&self, _id: &SessionId) {}

    /// Delete the leader key if (and only if) it is attached to a session
    /// of this process, in one conditional request: a key of my name under
    /// another process's session is left alone. `true`: deleted; `false`:
    /// no key of mine to delete (none, or another process's).
    fn delete_leader(&self) -> BoxFuture<'_, DcsResult<bool>>;

    /// Write `status` (leader's WAL position and slots).
    fn write_status(&self, status: &Status) -> BoxFuture<'_, DcsResult<()>>;

    /// `initialize`: create-only when `create` (value `""` by convention,
    /// `Ok(false)` if it exists), otherwise overwrite with `value`.
    fn initialize(&self, create: bool, value: &str) -> BoxFuture<'_, DcsResult<bool>>;

    /// Delete `initialize` after a failed bootstrap.
    fn cancel_initialization(&self) -> BoxFuture<'_, DcsResult<()>>;

    /// Write `config`; with `version`, only if it is still that version
    /// (`Ok(false)`: the compare lost, nothing written).
    fn set_config_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>>;

    /// Write `failover`; with `version`, only if it is still that version
    /// (`Ok(false)`: the compare lost, nothing written).
    fn set_failover_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>>;

    /// Write `history`.
    fn set_history_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>>;

    /// Write `failsafe` (`{name: api_url}` JSON), unconditionally.
    fn set_failsafe_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>>;

    /// Write `sync` (docs/replication-modes.md §2): with `version`, only if
    /// the key is still at that version; without, only if it is absent.
    /// `Ok(false)`: the compare lost, nothing written. Never
    /// unconditional: the sync key is what makes a standby promotable, and
    /// a write that overtook another leader's must lose.
    fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>>;

    /// Delete `sync` if it is still at `version` (`Ok(false)`: it changed
    /// or is gone, nothing deleted).
    fn delete_sync_state(&self, version: &Version) -> BoxFuture<'_, DcsResult<bool>>;

    /// Remove every key of the cluster (`patronictl remove`).
    fn delete_cluster(&self) -> BoxFuture<'_, DcsResult<()>>;

    /// Drop this node's session so its member (and leader) keys vanish now
    /// rather than at ttl (clean shutdown).
    fn release_session(&self) -> BoxFuture<'_, DcsResult<()>>;

    /// Changes under the cluster prefix, for waking the HA loop early. The
    /// stream re-establishes itself after errors (after reporting `Lost`).
    fn watch(&self) -> BoxStream<'static, WatchEvent>;
}
