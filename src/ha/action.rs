//! The orders a decision gives.

use std::collections::BTreeMap;
use std::fmt;

/// Where a replica streams from or clones from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// The remote PostgreSQL of a standby cluster (docs/ha.md §16), not a
    /// member: streamed from with the `standby_cluster` section's slot and
    /// recovery settings, and whoever streams from it is the standby
    /// leader.
    pub remote: bool,
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
    /// Bootstrap a standby cluster (docs/ha.md §16): clone the remote
    /// PostgreSQL and start as its standby. Ends as a bootstrap does.
    BootstrapStandby { from: Upstream },
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
            Action::BootstrapStandby { from } => {
                write!(f, "bootstrap a standby cluster from {}", from.name)
            }
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

    /// What kind of decision this is, for `pgpilot_ha_decisions_total`
    /// (docs/rest-api.md, "GET /metrics"): the kind of its most
    /// consequential action by `DECISION_RANKING` (a leader's decision
    /// that renews the lock and also promotes is a `promote`), else the kind
    /// of its first action (bookkeeping only: history, failsafe, sync key),
    /// `none` when it orders nothing.
    pub fn kind(&self) -> &'static str {
        let kinds = || self.actions.iter().map(Action::kind);
        DECISION_RANKING
            .iter()
            .find(|k| kinds().any(|a| a == **k))
            .copied()
            .or_else(|| kinds().next())
            .unwrap_or("none")
    }
}

/// Action kinds from the most to the least consequential: what a decision
/// that orders several counts as ([`Decision::kind`]). Stopping the daemon,
/// then anything that stops, promotes or rebuilds PostgreSQL, then the
/// leader key, then starting and following, then keeping the lease.
pub const DECISION_RANKING: [&str; 21] = [
    "fatal",
    "demote",
    "promote",
    "acquire_lock",
    "release_lock",
    "rewind",
    "reinitialize",
    "clone",
    "clone_without_leader",
    "bootstrap",
    "bootstrap_standby",
    "take_initialize",
    "complete_bootstrap",
    "create_initialize",
    "cancel_initialize",
    "start_primary",
    "start_replica",
    "follow",
    "stay_primary_on_failsafe",
    "show_rewind_failed",
    "renew_lock",
];

impl Action {
    /// The action's name as a metric label (`pgpilot_ha_actions_total`,
    /// `pgpilot_ha_decisions_total`): its variant in snake_case, without
    /// its data, so the label set stays small and fixed.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::TakeInitialize => "take_initialize",
            Action::CreateInitialize { .. } => "create_initialize",
            Action::CompleteBootstrap { .. } => "complete_bootstrap",
            Action::CancelInitialize => "cancel_initialize",
            Action::AcquireLock => "acquire_lock",
            Action::RenewLock => "renew_lock",
            Action::ReleaseLock => "release_lock",
            Action::Bootstrap => "bootstrap",
            Action::BootstrapStandby { .. } => "bootstrap_standby",
            Action::Clone { .. } => "clone",
            Action::CloneWithoutLeader => "clone_without_leader",
            Action::Reinitialize { .. } => "reinitialize",
            Action::Rewind { .. } => "rewind",
            Action::WriteHistory => "write_history",
            Action::StartPrimary => "start_primary",
            Action::StartReplica { .. } => "start_replica",
            Action::ActivateWatchdog => "activate_watchdog",
            Action::Promote => "promote",
            Action::Demote { .. } => "demote",
            Action::ClearFailover { .. } => "clear_failover",
            Action::Follow { .. } => "follow",
            Action::Fatal { .. } => "fatal",
            Action::WriteFailsafe { .. } => "write_failsafe",
            Action::StayPrimaryOnFailsafe => "stay_primary_on_failsafe",
            Action::ShowRewindFailed => "show_rewind_failed",
            Action::RestoreConfig => "restore_config",
            Action::Sync(_) => "sync",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_counts_as_its_most_consequential_action() {
        let kind = |actions: Vec<Action>| Decision::new(actions, "").kind();
        assert_eq!(kind(vec![]), "none");
        assert_eq!(kind(vec![Action::RenewLock]), "renew_lock");
        // The watchdog is armed before the lock is taken: still a race won.
        assert_eq!(
            kind(vec![Action::ActivateWatchdog, Action::AcquireLock]),
            "acquire_lock"
        );
        assert_eq!(
            kind(vec![
                Action::RenewLock,
                Action::ActivateWatchdog,
                Action::Promote,
                Action::ClearFailover {
                    version: crate::dcs::Version::from_int(1),
                },
            ]),
            "promote"
        );
        assert_eq!(
            kind(vec![Action::RenewLock, Action::WriteHistory]),
            "renew_lock"
        );
        // Bookkeeping alone: its first action.
        assert_eq!(
            kind(vec![Action::WriteHistory, Action::RestoreConfig]),
            "write_history"
        );
        assert_eq!(
            kind(vec![
                Action::ShowRewindFailed,
                Action::Demote {
                    mode: DemoteMode::Offline
                }
            ]),
            "demote"
        );
    }

    #[test]
    fn every_ranked_kind_is_an_action_kind() {
        let all = [
            Action::TakeInitialize,
            Action::CreateInitialize { sysid: "1".into() },
            Action::CompleteBootstrap { sysid: "1".into() },
            Action::CancelInitialize,
            Action::AcquireLock,
            Action::RenewLock,
            Action::ReleaseLock,
            Action::Bootstrap,
            Action::CloneWithoutLeader,
            Action::StartPrimary,
            Action::StartReplica { upstream: None },
            Action::Promote,
            Action::Demote {
                mode: DemoteMode::Graceful,
            },
            Action::Fatal { reason: "x".into() },
            Action::StayPrimaryOnFailsafe,
            Action::ShowRewindFailed,
        ];
        let up = Upstream {
            name: "n".into(),
            host: "h".into(),
            port: 1,
            remote: false,
        };
        let with_upstream = [
            Action::Clone { from: up.clone() },
            Action::BootstrapStandby { from: up.clone() },
            Action::Reinitialize { from: up.clone() },
            Action::Rewind { from: up.clone() },
            Action::Follow { upstream: up },
        ];
        let kinds: Vec<&str> = all.iter().chain(&with_upstream).map(Action::kind).collect();
        for k in DECISION_RANKING {
            assert!(kinds.contains(&k), "{k} is no action's kind");
        }
        let mut unique = DECISION_RANKING.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), DECISION_RANKING.len());
    }
}
