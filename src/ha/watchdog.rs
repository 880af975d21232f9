//! The watchdog rules of the decision (docs/ha.md §12): a node whose
//! watchdog is required but unusable neither bootstraps, races, promotes,
//! restarts as primary nor keeps the lock; every other node arms a usable
//! watchdog before it leads. Pause mode leaves the watchdog disarmed and
//! these rules out.

use super::action::{Action, Decision, DemoteMode};
use super::view::LocalView;

/// Arm the watchdog now: it is usable but not armed, and the node is about
/// to lead (put before the promotion, the restart as primary, the lock, and
/// the bootstrap race: a node that cannot arm a required watchdog must not
/// create a cluster it could never lead, and finds out before it claims
/// `initialize`; the watchdog stays armed and kept alive while the
/// bootstrap runs).
pub(super) fn arm(local: &LocalView) -> Option<Action> {
    (!local.paused && local.watchdog == super::WatchdogState::Ready)
        .then_some(Action::ActivateWatchdog)
}

/// `[ActivateWatchdog,] AcquireLock`: a race winner arms the watchdog
/// before it takes the lock, so a node that cannot arm a required one
/// finds out without holding up the failover.
pub(super) fn then_lock(local: &LocalView) -> Vec<Action> {
    arm(local)
        .into_iter()
        .chain([Action::AcquireLock])
        .collect()
}

/// [`then_lock`] for a decision that may take the lock.
pub(super) fn arm_before_lock(mut d: Decision, local: &LocalView) -> Decision {
    if let Some(i) = d.actions.iter().position(|a| *a == Action::AcquireLock)
        && let Some(a) = arm(local)
    {
        d.actions.insert(i, a);
    }
    d
}

/// The lock holder cannot arm a required watchdog: a primary stops at once
/// and releases the lock (Patroni's `demote('immediate')`), a replica does
/// not promote and releases it, so a node that can arm one takes over.
pub(super) fn lock_holder_must_step_down(local: &LocalView) -> Option<Decision> {
    let why = local.watchdog.failure()?;
    Some(
        if local.pg.running && local.pg.role != Some(super::PgRole::Replica) {
            Decision::new(
                vec![
                    Action::Demote {
                        mode: DemoteMode::ImmediateNoLock,
                    },
                    Action::ReleaseLock,
                ],
                format!(
                    "the watchdog is required but unusable ({why}): demoting and releasing the lock"
                ),
            )
        } else {
            Decision::new(
                vec![Action::ReleaseLock],
                format!(
                    "the watchdog is required but unusable ({why}): not leading, releasing the lock"
                ),
            )
        },
    )
}

/// No leader key: a node whose required watchdog is unusable does not race
/// (and a primary among them steps down rather than take the lock).
pub(super) fn may_not_race(local: &LocalView) -> Option<Decision> {
    let why = local.watchdog.failure()?;
    Some(if local.pg.is_primary() {
        Decision::new(
            vec![Action::Demote {
                mode: DemoteMode::ImmediateNoLock,
            }],
            format!("no leader, and the watchdog is required but unusable ({why}): demoting"),
        )
    } else {
        Decision::idle(format!(
            "not racing: the watchdog is required but unusable ({why})"
        ))
    })
}

/// No cluster yet and the required watchdog is unusable: a node that could
/// never lead does not bootstrap one.
pub(super) fn not_bootstrapping(local: &LocalView) -> Decision {
    let why = local.watchdog.failure().unwrap_or_default();
    Decision::idle(format!(
        "not bootstrapping: the watchdog is required but unusable ({why}); waiting for another node"
    ))
}
