//! Whether a former primary that ran read-only without the DCS still has
//! to rejoin as a former primary (docs/ha.md §9.6): the flag `ha::Node`
//! keeps between cycles and hands to `decide` as
//! `LocalView::rejoin_pending`.
//!
//! Once started as a standby, pg_control no longer says the data directory
//! ran as a primary, yet its WAL may reach past the point where a new
//! leader's timeline forked off (writes it took before the fence stopped
//! it). Streaming from that leader would then fail for good; so the flag
//! stays until the node's WAL is known to be on the cluster's history.

use super::{Action, DcsView, Decision, JobKind, JobOutcome, LocalView};

/// The flag after a decision, from the flag before it.
///
/// * Set when, without the DCS, PostgreSQL is started read-only (the only
///   `StartReplica` with no upstream decided on a failed DCS read: the
///   demotion of docs/ha.md §9.3 or the start of docs/ha.md §9.6).
/// * Cleared once the WAL is known to be the cluster's: a rewind, a
///   rebuild or a clone succeeded; this node promotes (it leads, so its WAL
///   is the history); or the table follows or starts as a replica of a
///   leader without a rewind (no `use_pg_rewind` and no
///   `remove_data_directory_on_diverged_timelines`: the rules of docs/ha.md §8 for a
///   former primary say so).
pub fn rejoin_pending_after(
    before: bool,
    view: &DcsView,
    local: &LocalView,
    decision: &Decision,
) -> bool {
    if matches!(view, DcsView::Failed(_)) {
        let started_read_only = decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::StartReplica { upstream: None }));
        return before || started_read_only;
    }
    let rebuilt = matches!(
        local.outcome,
        Some(JobOutcome::Succeeded(
            JobKind::Rewind | JobKind::Reinitialize | JobKind::Clone
        ))
    );
    let joined = decision.actions.iter().any(|a| {
        matches!(
            a,
            Action::Promote | Action::Follow { .. } | Action::StartReplica { upstream: Some(_) }
        )
    });
    before && !rebuilt && !joined
}
