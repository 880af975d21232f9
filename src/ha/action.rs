//! The orders a decision gives.

use std::collections::BTreeMap;
use std::fmt;

/// Where a replica streams from or clones from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// How a primary steps down (docs/ha.md §6.4). Either way PostgreSQL is left
/// stopped; the next cycle decides how it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoteMode {
    /// Someone else holds (or may take) the lock: stop now, no checkpoint.
    ImmediateNoLock,
    /// The DCS cannot be reached and the lease is running out: stop fast.
    Offline,
    /// Switchover: CHECKPOINT, stop fast, publish the shutdown checkpoint's
    /// LSN as `status.optime`, then delete the leader key.
    Graceful,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create `initialize` (create-only, value `""`): the bootstrap lock.
    TakeInitialize,
    /// Create `initialize` = this sysid (create-only) for an existing cluster.
    CreateInitialize { sysid: String },
    /// Finish a bootstrap: `initialize` = sysid, `config` from bootstrap.dcs.
    CompleteBootstrap { sysid: String },
    /// A failed bootstrap releases `initialize` so another node can try.
    CancelInitialize,
    /// Create the leader key (atomic create).
    AcquireLock,
    /// Renew the leader lease and publish the WAL position.
    RenewLock,
    /// Delete the leader key if it is mine.
    ReleaseLock,
    /// initdb, start, users, post_init (a background job).
    Bootstrap,
    /// pg_basebackup from a member, then start as its replica.
    Clone { from: Upstream },
    /// Create a replica with a `no_leader` replica method (no leader to
    /// copy from), then start as a standby without upstream.
    CloneWithoutLeader,
    /// Move the data directory aside and clone again.
    Reinitialize { from: Upstream },
    /// pg_rewind a former primary from the leader, then start as its replica.
    Rewind { from: Upstream },
    /// Publish the `history` key from my new timeline's history file.
    WriteHistory,
    /// Start PostgreSQL as the primary it was (crash repair on the leader).
    StartPrimary,
    /// Start PostgreSQL as a standby; no upstream = read-only, no streaming.
    StartReplica { upstream: Option<Upstream> },
    /// Arm the watchdog device before leading (docs/ha.md §12). Fails, and
    /// ends the cycle, when it is required and cannot be armed.
    ActivateWatchdog,
    /// Promote the running standby.
    Promote,
    /// Stop a primary that must no longer accept writes.
    Demote { mode: DemoteMode },
    /// Clear the `failover` key (write `{}` with CAS on its version).
    ClearFailover { version: crate::dcs::Version },
    /// Point a running standby at another upstream (reload, no restart).
    Follow { upstream: Upstream },
    /// Refuse to go on: the data directory belongs to another cluster.
    Fatal { reason: String },
    /// Write the `failsafe` key (`{name: api_url}`); the leader does this
    /// only when the value differs from what the DCS holds.
    WriteFailsafe { members: BTreeMap<String, String> },
    /// The DCS is gone but every member in `failsafe` confirmed me: keep
    /// running as primary and report failsafe mode as active.
    StayPrimaryOnFailsafe,
    /// Show PostgreSQL's state as `rewind failed` (member key, REST API;
    /// docs/ha.md §15) until a job replaces it: the rewind job just reported
    /// a failure `ha::rewind` calls final.
    ShowRewindFailed,
    /// Write the `config` key back from `patroni.dynamic.json` (the leader
    /// only, when the key is missing or invalid).
    RestoreConfig,
    /// A step of synchronous replication (docs/replication-modes.md §3):
    /// the `sync` key (compare-and-swap; a lost compare ends the cycle) or
    /// `synchronous_standby_names`.
    Sync(super::sync::SyncStep),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Clone { from } => write!(f, "clone from {}", from.name),
            Action::CloneWithoutLeader => write!(f, "clone without a leader"),
            Action::Reinitialize { from } => write!(f, "reinitialize from {}", from.name),
            Action::Rewind { from } => write!(f, "pg_rewind from {}", from.name),
            Action::StartReplica { upstream: Some(u) } => write!(f, "start replica of {}", u.name),
            Action::StartReplica { upstream: None } => write!(f, "start replica without upstream"),
            Action::Follow { upstream } => write!(f, "follow {}", upstream.name),
            Action::Demote { mode } => write!(f, "demote ({mode:?})"),
            Action::Fatal { reason } => write!(f, "fatal: {reason}"),
            Action::WriteFailsafe { members } => {
                let names: Vec<&str> = members.keys().map(String::as_str).collect();
                write!(f, "write failsafe {}", names.join(","))
            }
            other => write!(f, "{other:?}"),
        }
    }
}

/// What to do this cycle and why. Actions run in order; the first one that
/// fails (or loses a race) ends the cycle and a new one starts at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// pgpilot's explanation (the `reason` field of the decision's line).
    pub reason: String,
    /// Patroni's one-line summary of the cycle, the decision's log message
    /// (`ha::summary`; docs/operations.md, "Patroni's messages"); `decide`
    /// fills it in.
    pub summary: String,
    /// Lines Patroni logs at INFO before its summary, in its words
    /// (`Lock owner: ...`, `Wal position of X is ahead of my wal
    /// position`), in order.
    pub notes: Vec<String>,
}

impl Decision {
    pub fn new(actions: Vec<Action>, reason: impl Into<String>) -> Decision {
        Decision {
            actions,
            reason: reason.into(),
            summary: String::new(),
            notes: Vec::new(),
        }
    }

    pub fn idle(reason: impl Into<String>) -> Decision {
        Decision::new(Vec::new(), reason)
    }
}
