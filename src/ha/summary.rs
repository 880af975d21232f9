//! Patroni's words for a cycle (docs/operations.md, "Patroni's messages"):
//! the one-line summary Patroni's `_run_cycle` returns and logs at INFO
//! (`no action. I am (node1), the leader with the lock`), and the lines it
//! logs before it (`Lock owner: node1; I am node2`). Operators alert on
//! these strings and log shippers parse them, so they are Patroni's,
//! character for character; pgpilot's own explanation stays in the
//! decision's `reason` (the `reason` field of the same log line).
//!
//! A pure function of the decision and the two views it was taken on. A
//! decision Patroni has no words for (a primary serving on its lease
//! without the DCS, a fence) is summarised by its reason.

use std::time::Instant;

use super::action::{Action, Decision, DemoteMode};
use super::view::{DataDir, DcsView, JobKind, LocalView};
use crate::dcs::Cluster;

/// Patroni's prefix of every summary while the cluster is paused.
const PAUSE: &str = "PAUSE: ";

/// The summary of `d`, taken on `dcs` and `local`.
pub fn summary(d: &Decision, dcs: &DcsView, local: &LocalView, now: Instant) -> String {
    let lapsed = local.lease_deadline.is_some_and(|t| now >= t);
    let line = match dcs {
        DcsView::Failed(_) => dcs_failed(d, local),
        DcsView::Ok(c) => cluster_summary(d, c, local, lapsed),
    };
    paused_prefix(local, line)
}

/// `line` as Patroni logs it: prefixed with `PAUSE: ` while paused.
pub fn paused_prefix(local: &LocalView, line: String) -> String {
    if local.paused {
        format!("{PAUSE}{line}")
    } else {
        line
    }
}

/// `Lock owner: X; I am Y`, which Patroni logs at INFO whenever it checks
/// the lock on a readable cluster with a data directory: each cycle of a
/// node following or holding the lock, and before recovering a stopped
/// PostgreSQL (then `Lock owner: None` when nobody holds it).
pub fn lock_owner(dcs: &DcsView, local: &LocalView) -> Option<String> {
    let DcsView::Ok(c) = dcs else { return None };
    if !matches!(local.data_dir, DataDir::Initialized { .. }) {
        return None;
    }
    match c.leader_name() {
        Some(l) => Some(format!("Lock owner: {l}; I am {}", local.name)),
        None if !local.pg.running && local.busy.is_none() => {
            Some(format!("Lock owner: None; I am {}", local.name))
        }
        None => None,
    }
}

/// Patroni's `_handle_dcs_error`.
fn dcs_failed(d: &Decision, local: &LocalView) -> String {
    if d.actions.contains(&Action::StayPrimaryOnFailsafe) {
        return "continue to run as a leader because failsafe mode is enabled and all members are accessible".into();
    }
    // A lapsed lease is stopped before the DCS is looked at: Patroni's
    // words for a leader without the DCS fit that demotion as well.
    if has_demote(d) {
        return "demoted self because DCS is not accessible and I was a leader".into();
    }
    if local.pg.is_primary() {
        // pgpilot keeps serving while its lease surely holds (docs/ha.md
        // §9.3); Patroni has no such state, nor words for it.
        return d.reason.clone();
    }
    "DCS is not accessible".into()
}

fn has_demote(d: &Decision) -> bool {
    d.actions.iter().any(|a| matches!(a, Action::Demote { .. }))
}

fn has(d: &Decision, f: impl Fn(&Action) -> bool) -> bool {
    d.actions.iter().any(f)
}

/// Patroni's name of a background job (its `scheduled_action`).
fn job_name(job: JobKind) -> &'static str {
    match job {
        JobKind::Bootstrap => "bootstrap",
        JobKind::Clone => "bootstrap from leader",
        JobKind::Reinitialize => "reinitialize",
        JobKind::Start => "starting",
        JobKind::Stop => "stopping",
        JobKind::Promote => "promote",
        JobKind::Rewind => "running pg_rewind",
    }
}

fn cluster_summary(d: &Decision, c: &Cluster, local: &LocalView, lapsed: bool) -> String {
    let me = local.name.as_str();
    let leader = c.leader_name();
    let i_lead = leader == Some(me);
    let empty = matches!(local.data_dir, DataDir::Empty);
    for a in &d.actions {
        match a {
            Action::Fatal { .. } | Action::CancelInitialize => return d.reason.clone(),
            Action::CompleteBootstrap { .. } => return "initialized a new cluster".into(),
            Action::Bootstrap => return "trying to bootstrap a new cluster".into(),
            Action::Clone { from } => {
                let role = if Some(from.name.as_str()) == leader {
                    "leader"
                } else {
                    "replica"
                };
                return format!("trying to bootstrap from {role} '{}'", from.name);
            }
            Action::CloneWithoutLeader => return "trying to bootstrap (without leader)".into(),
            Action::Rewind { from } => return format!("running pg_rewind from {}", from.name),
            Action::Reinitialize { .. } => {
                return "reinitializing due to diverged timelines".into();
            }
            _ => {}
        }
    }
    if let Some(job) = local.busy {
        return if has_demote(d) {
            // `primary_start_timeout` ran out with a replica to take over.
            "stopped PostgreSQL because of startup timeout".into()
        } else if i_lead {
            format!("updated leader lock during {}", job_name(job))
        } else {
            format!("{} in progress", job_name(job))
        };
    }
    if empty || matches!(local.data_dir, DataDir::Unreadable(_)) {
        return data_dir_summary(d, local, i_lead, empty);
    }
    if has_demote(d) {
        return demote_summary(d, c, local, i_lead, lapsed);
    }
    if has(d, |a| *a == Action::AcquireLock) {
        return if local.pg.is_primary() {
            "acquired session lock as a leader".into()
        } else {
            "promoted self to leader by acquiring session lock".into()
        };
    }
    if has(d, |a| *a == Action::Promote) {
        return "promoted self to leader because I had the session lock".into();
    }
    if has(d, |a| *a == Action::StartPrimary) {
        return "starting primary after failure".into();
    }
    if has(d, |a| matches!(a, Action::StartReplica { .. })) {
        return if i_lead {
            "starting as readonly because i had the session lock".into()
        } else {
            "starting as a secondary".into()
        };
    }
    if has(d, |a| *a == Action::ReleaseLock) {
        return release_summary(local);
    }
    if !local.pg.running || local.pg.role.is_none() {
        return d.reason.clone();
    }
    if i_lead && local.pg.is_primary() {
        return format!("no action. I am ({me}), the leader with the lock");
    }
    if local.paused && local.pg.is_primary() && !i_lead {
        // Paused, nothing demotes a primary without the lock.
        return "continue to run as primary without lock".into();
    }
    match leader {
        Some(l) if !i_lead => {
            format!("no action. I am ({me}), a secondary, and following a leader ({l})")
        }
        Some(_) => d.reason.clone(),
        // Paused, a node without a leader to follow races for nothing.
        None if local.paused => format!("no action. I am ({me})"),
        None if local.pg.is_replica() => {
            if local.tags.can_failover() {
                "following a different leader because i am not the healthiest node".into()
            } else {
                "following a different leader because I am not allowed to promote".into()
            }
        }
        None => d.reason.clone(),
    }
}

/// Patroni's words for an empty or unreadable data directory.
fn data_dir_summary(d: &Decision, local: &LocalView, i_lead: bool, empty: bool) -> String {
    if i_lead {
        let what = if empty { "empty" } else { "not accessible" };
        return format!("released leader key voluntarily as data dir {what} and currently leader");
    }
    if let DataDir::Unreadable(why) = &local.data_dir {
        return format!("data directory is not accessible: {why}");
    }
    if local.paused {
        return "running with empty data directory".into();
    }
    if d.actions.is_empty() {
        // Patroni's `bootstrap` with neither a cluster to create nor a
        // member to clone from.
        return "waiting for leader to bootstrap".into();
    }
    d.reason.clone()
}

/// Patroni's words for a demotion.
fn demote_summary(
    d: &Decision,
    c: &Cluster,
    local: &LocalView,
    i_lead: bool,
    lapsed: bool,
) -> String {
    let graceful = has(d, |a| {
        matches!(
            a,
            Action::Demote {
                mode: DemoteMode::Graceful
            }
        )
    });
    if graceful {
        // `_get_failover_action_name`: a request naming the leader is a
        // switchover, one without a manual failover.
        let action = match &c.failover {
            Some(f) if f.value.leader.is_some() => "switchover",
            Some(_) => "manual failover",
            None => "failover",
        };
        return format!("{action}: demoting myself");
    }
    match c.leader_name() {
        Some(_) if !i_lead => {
            "demoting self because I do not have the lock and I was a leader".into()
        }
        // The lease ran out: Patroni's failed `update_lock`.
        _ if lapsed => "demoted self because failed to update leader lock in DCS".into(),
        Some(_) => d.reason.clone(),
        None if !local.tags.can_failover() => {
            "demoting self because I am not allowed to become primary".into()
        }
        None => "demoting self because i am not the healthiest node".into(),
    }
}

/// Patroni's words for a lock holder giving the lock up.
fn release_summary(local: &LocalView) -> String {
    if !local.pg.running {
        if local.primary_start_timeout.is_zero() {
            return "stopped PostgreSQL to fail over after a crash".into();
        }
        return "removed leader key after trying and failing to start postgres".into();
    }
    "removed leader lock because postgres is not running as primary".into()
}
