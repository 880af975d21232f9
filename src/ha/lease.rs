//! The leader's lease keep-alive, decided by pure functions.
//!
//! Besides the renewal of every HA cycle, the leader sends a keep-alive of
//! its own (etcd: one `LeaseKeepAlive` request for the session lease, which
//! also holds the leader key) every [`Timing::keepalive_interval`] (ttl/4),
//! so a slow cycle (a slow etcd answer, a slow PostgreSQL query, a busy
//! host) does not cost the lease. A successful keep-alive also moves the
//! lease deadline fed to the fence to the expiry the backend guarantees
//! (`dcs::Expiry::earliest`; etcd: its send time + the lease's TTL).
//!
//! The rule ([`keepalive_allowed`]): a keep-alive is sent, and its result
//! used, only while
//!
//! 1. this node holds a lease that has not reached its fencing point
//!    (deadline − margin), and
//! 2. the HA loop *confirmed* it less than [`Timing::keepalive_confirmation_bound`]
//!    (ttl/2) before the keep-alive's send time: a cycle read the DCS, found
//!    the leader key mine, renewed it (compare-and-swap on the key's version
//!    and my own lease) and saw PostgreSQL answering as a primary.
//!
//! Why this is safe. The fence deadline is always the earliest expiry the
//! backend guarantees after a request it answered with the lease alive
//! (etcd: the request's send time + ttl, while etcd counts the ttl from
//! when it *received* it; docs/dcs.md, "Versions, sessions and expiry"), so
//! the deadline never outlives the lease in the store: a keep-alive cannot let a primary run while another node
//! may hold the key. What the keep-alive changes is only how long a leader
//! whose HA loop stopped confirming (hung cycle, PostgreSQL not answering)
//! keeps the key: at most the confirmation bound plus one ttl after the last
//! confirmation, i.e. 1.5 × ttl, instead of one ttl after the last renewal.
//! After that the keep-alives stop, the fence stops PostgreSQL at its
//! deadline and etcd drops the key at about the same time, so a replica
//! takes over. A keep-alive never grants a new lease: a lost lease means a
//! lost leader key, and only the HA cycle may take the key again.

use std::time::{Duration, Instant};

use crate::config::Timing;

/// May a keep-alive sent (or about to be sent) at `at` extend the lease?
/// `lease_deadline`: until when the lease surely holds now;
/// `confirmed_at`: when the HA loop last confirmed this node as the healthy,
/// rightful leader (lock renewed, PostgreSQL answering as primary).
pub fn keepalive_allowed(
    lease_deadline: Option<Instant>,
    confirmed_at: Option<Instant>,
    at: Instant,
    timing: &Timing,
) -> bool {
    let (Some(deadline), Some(confirmed)) = (lease_deadline, confirmed_at) else {
        return false;
    };
    at + timing.fence_margin() < deadline
        && at.saturating_duration_since(confirmed) < timing.keepalive_confirmation_bound()
}

/// The lease deadline after a keep-alive sent at `sent` that etcd answered
/// with the lease alive: never earlier than the current one.
pub fn extended_deadline(
    current: Option<Instant>,
    sent: Instant,
    ttl: Duration,
) -> Option<Instant> {
    current.map(|d| d.max(sent + ttl))
}

/// The deadline a cycle decides on: the later of the one it started with
/// and the one a keep-alive gave the same lease while the cycle waited (a
/// slow DCS answer, a slow PostgreSQL). A keep-alive never creates a lease
/// the cycle did not start with.
pub fn with_keepalive(
    started_with: Option<Instant>,
    keepalive: Option<Instant>,
) -> Option<Instant> {
    match (started_with, keepalive) {
        (Some(d), Some(k)) => Some(d.max(k)),
        (d, _) => d,
    }
}

/// What the cycle carries on after deciding at `decided_at`: a lapsed lease
/// is no lease, so the node stops counting itself the leader.
pub fn after_decision(deadline: Option<Instant>, decided_at: Instant) -> Option<Instant> {
    deadline.filter(|d| *d > decided_at)
}

/// The lease the cycle vouches for, to arm the fence and the watchdog with:
/// the deadline as the cycle leaves it, if the cycle took or renewed the
/// lock (its deadline moved: acquired, or renewed with a new renewal) or
/// confirmed its hold (`RenewLock` succeeded: the key is ours, and the
/// deadline rests on a renewal the store answered, possibly the keep-alive's
/// or an earlier cycle's, docs/dcs.md "Idle cost"). `None`: no fresh word,
/// the last order stands.
pub fn vouched(
    deadline: Option<Instant>,
    at_start: Option<Instant>,
    hold_confirmed: bool,
) -> Option<Instant> {
    deadline.filter(|_| hold_confirmed || deadline != at_start)
}

/// A cycle's word on the keep-alive's confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Lock renewed for a PostgreSQL answering as primary; the time the
    /// cycle's facts were gathered from.
    Confirmed(Instant),
    /// PostgreSQL did not answer as primary, or the lease was dropped:
    /// no more keep-alives on the old confirmation.
    Revoked,
    /// No new facts about the leader (e.g. the DCS read failed while
    /// PostgreSQL answered as primary): the last confirmation ages on.
    Unchanged,
}

/// What the store said to a keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveAnswer {
    /// The lease was alive; the store keeps it at least `until` (the
    /// backend's guaranteed expiry, `dcs::Expiry::earliest`: for etcd the
    /// request's send time + the lease's TTL; docs/dcs.md).
    Alive { until: Instant },
    /// There is no lease any more (its keys are gone with it).
    Gone,
    /// No answer (unreachable, timed out): nothing is known.
    Failed,
}

/// A keep-alive the caller is to send now, and must report back with
/// [`Lease::keepalive_answered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveTicket {
    epoch: u64,
    /// The send time the answer counts from: taken before sending.
    pub sent: Instant,
}

/// What a keep-alive's answer changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveOutcome {
    /// The lease deadline moved to this: re-arm the fence with it.
    Extended(Instant),
    /// The lease is gone: no more keep-alives until a cycle confirms again.
    Lost,
    /// Nothing changes: a failed request, or an answer for an older lease
    /// or one the rule no longer allows.
    Nothing,
}

/// The leader's lease as the elector carries it between HA cycles and
/// keep-alives (docs/ha.md §9): its deadline, the HA loop's last
/// confirmation, and an epoch that moves whenever the lease is dropped or a
/// new one is taken, so that a keep-alive answer for an older lease is
/// ignored. Pure: every method takes the clock from its caller.
#[derive(Debug, Clone, Default)]
pub struct Lease {
    deadline: Option<Instant>,
    confirmed_at: Option<Instant>,
    epoch: u64,
    keepalive_inflight: bool,
}

impl Lease {
    /// Until when the lease surely holds, if this node holds one.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The lease holds at `now`.
    pub fn held_at(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d > now)
    }

    /// A keep-alive to send at `now`, if the rule allows one
    /// ([`keepalive_allowed`]), none is in flight and the cluster is not
    /// paused (in pause the fence does nothing and the cycle's renewals
    /// suffice).
    pub fn keepalive(
        &mut self,
        now: Instant,
        paused: bool,
        timing: &Timing,
    ) -> Option<KeepaliveTicket> {
        if self.keepalive_inflight
            || paused
            || !keepalive_allowed(self.deadline, self.confirmed_at, now, timing)
        {
            return None;
        }
        self.keepalive_inflight = true;
        Some(KeepaliveTicket {
            epoch: self.epoch,
            sent: now,
        })
    }

    /// The answer to the keep-alive of `ticket`. An answer is used only for
    /// the lease it was sent for, and only under the rule at its send time.
    pub fn keepalive_answered(
        &mut self,
        ticket: KeepaliveTicket,
        answer: KeepaliveAnswer,
        timing: &Timing,
    ) -> KeepaliveOutcome {
        self.keepalive_inflight = false;
        match answer {
            KeepaliveAnswer::Alive { until }
                if ticket.epoch == self.epoch
                    && keepalive_allowed(self.deadline, self.confirmed_at, ticket.sent, timing) =>
            {
                // What the backend guarantees, never a ttl counted here.
                self.deadline = self.deadline.map(|d| d.max(until));
                self.deadline
                    .map_or(KeepaliveOutcome::Nothing, KeepaliveOutcome::Extended)
            }
            KeepaliveAnswer::Gone => {
                self.confirmed_at = None;
                KeepaliveOutcome::Lost
            }
            KeepaliveAnswer::Alive { .. } | KeepaliveAnswer::Failed => KeepaliveOutcome::Nothing,
        }
    }

    /// A cycle finished with `cycle_deadline` (the lease as the cycle left
    /// it) and its word on the confirmation. A keep-alive may have moved the
    /// deadline while the cycle ran: the later one stands, but a cycle that
    /// dropped the lease wins. Returns whether the epoch moved (the lease
    /// was dropped, or a new one taken): keep-alive deadlines handed to a
    /// cycle in flight no longer count.
    pub fn cycle_finished(
        &mut self,
        cycle_deadline: Option<Instant>,
        confirmation: Confirmation,
    ) -> bool {
        let before = self.deadline;
        self.deadline = match (cycle_deadline, before) {
            (Some(d), Some(k)) => Some(d.max(k)),
            (d, _) => d,
        };
        let moved = cycle_deadline.is_none() || before.is_none();
        if moved {
            self.epoch += 1;
        }
        match confirmation {
            _ if self.deadline.is_none() => self.confirmed_at = None,
            Confirmation::Confirmed(at) => self.confirmed_at = Some(at),
            Confirmation::Revoked => self.confirmed_at = None,
            Confirmation::Unchanged => {}
        }
        moved
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn t(ttl: u64) -> Timing {
        Timing {
            ttl: Duration::from_secs(ttl),
            loop_wait: Duration::from_secs(1),
            retry_timeout: Duration::from_secs(2),
        }
    }

    /// The answer of a store that keeps the lease `ttl` from the send time
    /// (etcd's guarantee).
    fn alive(k: &KeepaliveTicket, timing: &Timing) -> KeepaliveAnswer {
        KeepaliveAnswer::Alive {
            until: k.sent + timing.ttl,
        }
    }

    #[test]
    fn an_alive_answer_extends_to_what_the_store_guarantees() {
        // A store that guarantees less than ttl from the send time (a
        // Consul-like one counting from elsewhere, a shorter granted TTL):
        // the deadline is what it guarantees, not send time + ttl.
        let now = Instant::now();
        let timing = t(20);
        let mut l = leader(now, &timing);
        let later = now + Duration::from_secs(5);
        let k = l.keepalive(later, false, &timing).expect("allowed");
        let until = later + Duration::from_secs(18);
        assert_eq!(
            l.keepalive_answered(k, KeepaliveAnswer::Alive { until }, &timing),
            KeepaliveOutcome::Extended(until)
        );
        assert_eq!(l.deadline(), Some(until));
    }

    #[test]
    fn fresh_confirmation_and_live_lease_allow_a_keepalive() {
        let now = Instant::now();
        let timing = t(20);
        let deadline = Some(now + Duration::from_secs(15));
        let confirmed = Some(now - Duration::from_secs(3));
        assert!(keepalive_allowed(deadline, confirmed, now, &timing));
        // Confirmation just younger than ttl/2 = 10 s: still allowed.
        let confirmed = Some(now - Duration::from_millis(9_999));
        assert!(keepalive_allowed(deadline, confirmed, now, &timing));
    }

    #[test]
    fn stale_confirmation_stops_the_keepalive() {
        // The HA loop has not confirmed for ttl/2: the lease is left to
        // lapse, so a hung loop keeps the key at most 1.5 x ttl.
        let now = Instant::now();
        let timing = t(20);
        let deadline = Some(now + Duration::from_secs(15));
        assert!(!keepalive_allowed(
            deadline,
            Some(now - Duration::from_secs(10)),
            now,
            &timing
        ));
        assert!(!keepalive_allowed(deadline, None, now, &timing));
    }

    #[test]
    fn no_lease_or_past_the_fencing_point_stops_the_keepalive() {
        let now = Instant::now();
        let timing = t(20);
        let confirmed = Some(now - Duration::from_secs(1));
        assert!(!keepalive_allowed(None, confirmed, now, &timing));
        // Deadline within the 1 s margin: the fence may be stopping
        // PostgreSQL already; a keep-alive must not revive the lease.
        let deadline = Some(now + Duration::from_millis(900));
        assert!(!keepalive_allowed(deadline, confirmed, now, &timing));
        let deadline = Some(now - Duration::from_secs(1));
        assert!(!keepalive_allowed(deadline, confirmed, now, &timing));
    }

    #[test]
    fn a_hung_loop_keeps_the_lease_at_most_one_and_a_half_ttl() {
        // Confirmed at c, then keep-alives every ttl/4 succeed while the HA
        // loop is silent: the deadline stops moving once the confirmation
        // is ttl/2 old.
        let c = Instant::now();
        let timing = t(8);
        let mut deadline = Some(c + timing.ttl);
        let mut at = c;
        while at < c + 3 * timing.ttl {
            at += timing.keepalive_interval();
            if keepalive_allowed(deadline, Some(c), at, &timing) {
                deadline = extended_deadline(deadline, at, timing.ttl);
            }
        }
        let held = deadline.unwrap() - c;
        assert!(held <= timing.ttl * 3 / 2, "{held:?}");
        assert!(held > timing.ttl, "{held:?}");
    }

    #[test]
    fn extension_never_moves_the_deadline_back() {
        let now = Instant::now();
        let ttl = Duration::from_secs(10);
        let later = now + Duration::from_secs(20);
        assert_eq!(extended_deadline(Some(later), now, ttl), Some(later));
        assert_eq!(extended_deadline(Some(now), now, ttl), Some(now + ttl));
        assert_eq!(extended_deadline(None, now, ttl), None);
    }

    fn leader(now: Instant, timing: &Timing) -> Lease {
        let mut l = Lease::default();
        l.cycle_finished(Some(now + timing.ttl), Confirmation::Confirmed(now));
        l
    }

    #[test]
    fn no_keepalive_without_a_confirmed_lease_or_in_pause() {
        let now = Instant::now();
        let timing = t(20);
        let mut l = Lease::default();
        assert_eq!(l.keepalive(now, false, &timing), None, "no lease");
        l.cycle_finished(Some(now + timing.ttl), Confirmation::Unchanged);
        assert_eq!(l.keepalive(now, false, &timing), None, "never confirmed");
        let mut l = leader(now, &timing);
        assert_eq!(l.keepalive(now, true, &timing), None, "paused");
        assert!(l.keepalive(now, false, &timing).is_some());
    }

    #[test]
    fn one_keepalive_in_flight_at_a_time() {
        let now = Instant::now();
        let timing = t(20);
        let mut l = leader(now, &timing);
        let k = l.keepalive(now, false, &timing).expect("allowed");
        assert_eq!(l.keepalive(now, false, &timing), None, "one in flight");
        assert_eq!(
            l.keepalive_answered(k, KeepaliveAnswer::Failed, &timing),
            KeepaliveOutcome::Nothing
        );
        assert!(l.keepalive(now, false, &timing).is_some(), "free again");
    }

    #[test]
    fn an_alive_answer_extends_from_its_send_time() {
        let now = Instant::now();
        let timing = t(20);
        let mut l = leader(now, &timing);
        let later = now + Duration::from_secs(5);
        let k = l.keepalive(later, false, &timing).expect("allowed");
        assert_eq!(
            l.keepalive_answered(k, alive(&k, &timing), &timing),
            KeepaliveOutcome::Extended(later + timing.ttl)
        );
        assert_eq!(l.deadline(), Some(later + timing.ttl));
    }

    #[test]
    fn an_answer_for_a_dropped_lease_is_ignored() {
        // The keep-alive was sent for the old lease; the cycle dropped it
        // (and even took a new one) before the answer came.
        let now = Instant::now();
        let timing = t(20);
        let mut l = leader(now, &timing);
        let k = l.keepalive(now, false, &timing).expect("allowed");
        assert!(l.cycle_finished(None, Confirmation::Revoked));
        assert_eq!(
            l.keepalive_answered(k, alive(&k, &timing), &timing),
            KeepaliveOutcome::Nothing
        );
        assert_eq!(l.deadline(), None);
        let mut l = leader(now, &timing);
        let k = l.keepalive(now, false, &timing).expect("allowed");
        l.cycle_finished(None, Confirmation::Revoked);
        l.cycle_finished(
            Some(now + Duration::from_secs(3)),
            Confirmation::Confirmed(now),
        );
        assert_eq!(
            l.keepalive_answered(k, alive(&k, &timing), &timing),
            KeepaliveOutcome::Nothing,
            "an answer for the old lease does not extend the new one"
        );
        assert_eq!(l.deadline(), Some(now + Duration::from_secs(3)));
    }

    #[test]
    fn a_gone_lease_stops_the_keepalives_until_a_cycle_confirms() {
        let now = Instant::now();
        let timing = t(20);
        let mut l = leader(now, &timing);
        let k = l.keepalive(now, false, &timing).expect("allowed");
        assert_eq!(
            l.keepalive_answered(k, KeepaliveAnswer::Gone, &timing),
            KeepaliveOutcome::Lost
        );
        assert_eq!(l.keepalive(now, false, &timing), None);
        l.cycle_finished(Some(now + timing.ttl), Confirmation::Confirmed(now));
        assert!(l.keepalive(now, false, &timing).is_some());
    }

    #[test]
    fn a_cycle_keeps_the_later_deadline_unless_it_dropped_the_lease() {
        let now = Instant::now();
        let timing = t(20);
        let mut l = leader(now, &timing);
        // A keep-alive moved the deadline while a slower cycle ran.
        let k = l
            .keepalive(now + Duration::from_secs(4), false, &timing)
            .expect("allowed");
        l.keepalive_answered(k, alive(&k, &timing), &timing);
        let moved = l.cycle_finished(Some(now + Duration::from_secs(21)), Confirmation::Unchanged);
        assert!(!moved, "same lease, same epoch");
        assert_eq!(l.deadline(), Some(now + Duration::from_secs(24)));
        assert!(l.cycle_finished(None, Confirmation::Unchanged), "dropped");
        assert_eq!(l.deadline(), None);
        assert!(!l.held_at(now));
        // A dropped lease forgets the confirmation, whatever the cycle said.
        l.cycle_finished(None, Confirmation::Confirmed(now));
        assert_eq!(l.keepalive(now, false, &timing), None);
    }

    #[test]
    fn revoked_confirmation_stops_the_keepalives() {
        let now = Instant::now();
        let timing = t(20);
        let mut l = leader(now, &timing);
        l.cycle_finished(Some(now + timing.ttl), Confirmation::Revoked);
        assert_eq!(l.keepalive(now, false, &timing), None);
        assert!(l.held_at(now), "the lease itself still holds");
    }

    #[test]
    fn a_cycle_decides_on_the_newest_deadline_of_its_lease() {
        let now = Instant::now();
        let d = now + Duration::from_secs(10);
        let k = now + Duration::from_secs(12);
        assert_eq!(with_keepalive(Some(d), Some(k)), Some(k));
        assert_eq!(with_keepalive(Some(k), Some(d)), Some(k));
        assert_eq!(with_keepalive(Some(d), None), Some(d));
        assert_eq!(with_keepalive(None, Some(k)), None, "no lease to extend");
    }

    #[test]
    fn a_lapsed_lease_is_no_lease() {
        let now = Instant::now();
        assert_eq!(after_decision(Some(now), now), None);
        assert_eq!(
            after_decision(Some(now - Duration::from_millis(1)), now),
            None
        );
        let d = now + Duration::from_millis(1);
        assert_eq!(after_decision(Some(d), now), Some(d));
        assert_eq!(after_decision(None, now), None);
    }

    #[test]
    fn a_confirmed_hold_vouches_even_when_the_deadline_did_not_move() {
        // The keep-alive renewed just before the cycle, so RenewLock rested
        // on that renewal and left the deadline where the cycle found it:
        // the fence must still be armed with it (a primary whose fence was
        // disarmed in pause stayed unfenced when only the deadline's move
        // counted).
        let now = Instant::now();
        let d = Some(now + Duration::from_secs(20));
        assert_eq!(vouched(d, d, true), d);
        // No confirmation and no move: no fresh word.
        assert_eq!(vouched(d, d, false), None);
        // Acquired (or renewed anew) in this cycle: the move vouches.
        let later = Some(now + Duration::from_secs(21));
        assert_eq!(vouched(later, d, false), later);
        assert_eq!(vouched(later, None, false), later);
        // No lease: nothing, whatever was confirmed.
        assert_eq!(vouched(None, d, true), None);
    }
}
