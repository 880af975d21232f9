//! The leader's lease keep-alive, decided by pure functions.
//!
//! Besides the renewal of every HA cycle, the leader sends a keep-alive of
//! its own (etcd: one `LeaseKeepAlive` request for the session lease, which
//! also holds the leader key) every [`Timing::keepalive_interval`] (ttl/4),
//! so a slow cycle (a slow etcd answer, a slow PostgreSQL query, a busy
//! host) does not cost the lease. A successful keep-alive also moves the
//! lease deadline fed to the fence to its send time + ttl.
//!
//! The rule ([`keepalive_allowed`]): a keep-alive is sent, and its result
//! used, only while
//!
//! 1. this node holds a lease that has not reached its fencing point
//!    (deadline − margin), and
//! 2. the HA loop *confirmed* it less than [`Timing::keepalive_confirmation_bound`]
//!    (ttl/2) before the keep-alive's send time: a cycle read the DCS, found
//!    the leader key mine, renewed it (compare-and-swap on my name and
//!    lease) and saw PostgreSQL answering as a primary.
//!
//! Why this is safe. The fence deadline is always `send time + ttl` of a
//! request etcd answered with the lease alive, and etcd counts the ttl from
//! when it *received* that request, so the deadline never outlives the
//! lease in etcd: a keep-alive cannot let a primary run while another node
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ttl: u64) -> Timing {
        Timing {
            ttl: Duration::from_secs(ttl),
            loop_wait: Duration::from_secs(1),
            retry_timeout: Duration::from_secs(2),
        }
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
}
