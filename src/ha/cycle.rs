//! One HA cycle in flight, and what each action's result means for it
//! (docs/ha.md §3.1, "How the actions are carried out").
//!
//! The caller carries an action out (a DCS write, a supervisor job) and
//! reports a [`ActionResult`]; [`Cycle::action_done`] says whether the cycle
//! goes on, decides again at once, or stops, and keeps what the result
//! changed: the lease deadline as the cycle leaves it, whether the hold was
//! confirmed, whether PostgreSQL was demoted.

use std::time::{Duration, Instant};

use super::{Action, DemoteMode};
use crate::dcs::Status;
use crate::watchdog::WatchdogOrder;

/// What carrying an action out came to.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionResult {
    /// Done (or, for actions whose failure is only logged, attempted).
    Done,
    /// A create-only write found the key there, or a compare-and-swap
    /// found it changed: `initialize` or the leader key is someone else's
    /// (for `RenewLock`: the leader key is no longer mine).
    Refused,
    /// The lease holds until this instant: the expiry the store guarantees
    /// for the request that took it (`AcquireLock`) or for the renewal the
    /// hold rests on (`RenewLock`, perhaps the keep-alive's; docs/dcs.md,
    /// "Versions, sessions and expiry" and "Idle cost").
    Renewed(Instant),
    /// A graceful demotion stepped down and handed the lock over, having
    /// published this final status.
    SteppedDown(Status),
    /// It failed (an error, a timeout, a refusal by the supervisor).
    Failed(String),
}

/// What the cycle does after an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The next action.
    Continue,
    /// The facts changed (a race was won or lost, the lock lost or released,
    /// a switchover handed over): end the actions and decide again at once.
    Rerun,
    /// The action failed: end the cycle; the next decides on fresh facts.
    Stop(String),
    /// Stop the daemon (exit code 1), leaving PostgreSQL and the data
    /// directory as they are.
    Fatal(String),
}

/// [`Next`], and what the watchdog is to do at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionStep {
    pub next: Next,
    /// `Keepalive` after a renewed lock; `Disable` once a demotion stopped
    /// PostgreSQL (the watchdog's safe point).
    pub watchdog: Option<WatchdogOrder>,
}

impl ActionStep {
    fn new(next: Next) -> ActionStep {
        ActionStep {
            next,
            watchdog: None,
        }
    }
}

/// A cycle between its start and its end: what it started with and what
/// its actions changed.
#[derive(Debug, Clone)]
pub(crate) struct Cycle {
    /// When the cycle started gathering its facts: the time a confirmation
    /// of the lease counts from (`None`: not known, no confirmation).
    pub started: Option<Instant>,
    /// The lease deadline at the start.
    pub lease_at_start: Option<Instant>,
    /// The lease deadline as the cycle carries it.
    pub lease: Option<Instant>,
    /// Failsafe confirmations standing in for the lease at the start.
    pub failsafe_at_start: Option<Instant>,
    /// When the failsafe confirmations were asked for.
    pub confirm_started: Option<Instant>,
    /// Every failsafe member confirmed this primary: active until then.
    pub failsafe_until: Option<Instant>,
    /// `RenewLock` succeeded.
    pub lock_renewed: bool,
    /// A demotion stopped PostgreSQL.
    pub demoted: bool,
    /// Stepped down for a switchover.
    pub demoted_gracefully: bool,
    /// A bootstrap job was started.
    pub bootstrap_started: bool,
    pub rerun_now: bool,
    pub fatal: Option<String>,
    pub reason: Option<String>,
    pub status_written: Option<Status>,
}

impl Cycle {
    pub fn new(
        started: Option<Instant>,
        lease: Option<Instant>,
        failsafe_until: Option<Instant>,
    ) -> Cycle {
        Cycle {
            started,
            lease_at_start: lease,
            lease,
            failsafe_at_start: failsafe_until,
            confirm_started: None,
            failsafe_until: None,
            lock_renewed: false,
            demoted: false,
            demoted_gracefully: false,
            bootstrap_started: false,
            rerun_now: false,
            fatal: None,
            reason: None,
            status_written: None,
        }
    }

    /// Fold the result of `action` into the cycle (docs/ha.md §3.1).
    pub fn action_done(
        &mut self,
        action: &Action,
        result: ActionResult,
        ttl: Duration,
    ) -> ActionStep {
        use ActionResult as R;
        // A demoted node no longer counts itself the leader (`/primary`,
        // `/leader`), whatever the lease in the DCS still says, and a
        // released lock is no lease: both drop it before the result.
        if matches!(action, Action::ReleaseLock | Action::Demote { .. }) {
            self.lease = None;
        }
        let step = match (action, result) {
            (Action::Fatal { reason }, _) => {
                self.fatal = Some(reason.clone());
                ActionStep::new(Next::Fatal(reason.clone()))
            }
            (Action::StayPrimaryOnFailsafe, _) => {
                // The confirmations stand in for the lease until the time
                // they were asked for plus ttl (docs/ha.md §10.1).
                self.failsafe_until = self.confirm_started.map(|t| t + ttl);
                ActionStep::new(Next::Continue)
            }
            (Action::AcquireLock, R::Renewed(until)) => {
                self.lease = Some(until);
                ActionStep::new(Next::Rerun)
            }
            (Action::AcquireLock | Action::TakeInitialize, R::Refused) => {
                ActionStep::new(Next::Rerun)
            }
            (Action::RenewLock, R::Renewed(until)) => {
                // Never later than the store's expiry: that of the renewal
                // the hold rests on, not one counted from this answer.
                self.lease = Some(until);
                self.lock_renewed = true;
                ActionStep {
                    next: Next::Continue,
                    watchdog: Some(WatchdogOrder::Keepalive),
                }
            }
            // The "refresh failed" row: the leader key is no longer mine.
            // The lease is dropped and the node decides again at once (it
            // no longer holds the lock, so the table demotes or races).
            (Action::RenewLock, R::Refused) => {
                self.lease = None;
                ActionStep::new(Next::Rerun)
            }
            // Deleted, or no key under my session was there to delete (it
            // lapsed, or it is another process's): either way the lock is
            // not mine now; decide again at once, as before. A key of my
            // name under another session is never released in the first
            // place (docs/ha.md §3.4), so this cannot loop on it.
            (Action::ReleaseLock, R::Done | R::Refused) => ActionStep::new(Next::Rerun),
            // docs/replication-modes.md §3: a lost compare on the sync key
            // ends the steps; the next cycle plans from fresh facts.
            (Action::Sync(_), R::Refused) => {
                ActionStep::new(Next::Stop("the sync key changed meanwhile".into()))
            }
            (Action::CreateInitialize { .. }, R::Refused) => {
                ActionStep::new(Next::Stop("initialize exists".into()))
            }
            (
                Action::Demote {
                    mode: DemoteMode::Graceful,
                },
                R::SteppedDown(status),
            ) => {
                self.status_written = Some(status);
                self.demoted_gracefully = true;
                ActionStep {
                    next: Next::Rerun,
                    watchdog: Some(WatchdogOrder::Disable),
                }
            }
            (
                Action::Demote {
                    mode: DemoteMode::Graceful,
                },
                R::Done,
            ) => ActionStep::new(Next::Stop("no final status from the hand-over".into())),
            (Action::Demote { .. }, R::Done) => {
                self.demoted = true;
                ActionStep {
                    next: Next::Continue,
                    watchdog: Some(WatchdogOrder::Disable),
                }
            }
            (Action::Bootstrap | Action::BootstrapStandby { .. }, R::Done) => {
                self.bootstrap_started = true;
                ActionStep::new(Next::Continue)
            }
            (_, R::Done) => ActionStep::new(Next::Continue),
            (_, R::Failed(why)) => ActionStep::new(Next::Stop(why)),
            (a, r) => ActionStep::new(Next::Stop(format!("unexpected result {r:?} of {a}"))),
        };
        if step.next == Next::Rerun {
            self.rerun_now = true;
        }
        step
    }
}
