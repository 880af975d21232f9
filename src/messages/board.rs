//! What the REST API reads without a message: the HA loop's state and the
//! supervisor's last PostgreSQL status, published by their actors.
//!
//! Why: a health check that asks the actors crosses threads twice (the
//! API's thread wakes the actors' thread, which wakes it back); with one
//! client that wake-up pair was most of a request's time (docs/rest-api.md,
//! "Health checks and PostgreSQL"). The actors stay the only writers: the
//! API reads what they published and never changes it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::messages::elector::HaState;
use crate::messages::supervisor::PgStatus;

/// The HA loop's state as of `now`. The elector's board
/// (`actors::ha_board`) computes the time-dependent parts (lease held,
/// failsafe, DCS view older than ttl) at the call, so a reader never sees
/// a lease that ended while nothing was published.
pub trait HaView: Send + Sync {
    fn ha_state(&self, now: Instant) -> HaState;
}

/// A fixed state (tests, fakes).
impl HaView for HaState {
    fn ha_state(&self, _now: Instant) -> HaState {
        self.clone()
    }
}

/// How long a light status (the REST API's) is answered from the last one
/// read: a read at most this old is as true as one that took this much
/// longer to arrive, and a storm of checks costs PostgreSQL one query per
/// period instead of one per request (docs/rest-api.md, "Health checks and
/// PostgreSQL").
pub const LIGHT_STATUS_FRESH: Duration = Duration::from_millis(20);

/// The supervisor's last light status: the one cache of it, read by the
/// REST API without a message and by the supervisor itself.
///
/// Invariant: an entry is only here while nothing the supervisor knows has
/// changed since its query (its state, a job, whom it follows, a
/// scheduled restart): the supervisor clears the board at every such
/// change (`PostgresSupervisor::changed`), before anyone can ask again.
/// The supervisor also compares the facts of its own it was read under
/// ([`PgBoard::fresh_under`]), so a change it forgot to announce reaches
/// every request that asks it.
#[derive(Default)]
pub struct PgBoard {
    last: Mutex<Option<Posted>>,
}

struct Posted {
    /// When its query was sent.
    sent: Instant,
    /// The supervisor's own facts it was read under.
    base: PgStatus,
    status: PgStatus,
}

impl PgBoard {
    /// A status read under `base` over a query sent at `sent`.
    pub fn publish(&self, sent: Instant, base: PgStatus, status: PgStatus) {
        *crate::sync::lock(&self.last) = Some(Posted { sent, base, status });
    }

    /// Something the published status was read under changed.
    pub fn clear(&self) {
        *crate::sync::lock(&self.last) = None;
    }

    /// The published status if its query was sent less than
    /// [`LIGHT_STATUS_FRESH`] before `now`; otherwise ask the supervisor.
    pub fn fresh(&self, now: Instant) -> Option<PgStatus> {
        self.read(now, |_| true)
    }

    /// [`PgBoard::fresh`], and read under `base`.
    pub fn fresh_under(&self, now: Instant, base: &PgStatus) -> Option<PgStatus> {
        self.read(now, |p| p.base == *base)
    }

    fn read(&self, now: Instant, ok: impl Fn(&Posted) -> bool) -> Option<PgStatus> {
        let last = crate::sync::lock(&self.last);
        let p = last.as_ref()?;
        (now.saturating_duration_since(p.sent) < LIGHT_STATUS_FRESH && ok(p))
            .then(|| p.status.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::supervisor::PgState;

    #[test]
    fn a_status_is_fresh_for_its_period_only() {
        let board = PgBoard::default();
        let t0 = Instant::now();
        assert!(board.fresh(t0).is_none(), "nothing published yet");
        let base = PgStatus::unknown(PgState::Running);
        board.publish(t0, base.clone(), base);
        assert!(board.fresh(t0 + Duration::from_millis(19)).is_some());
        assert!(board.fresh(t0 + LIGHT_STATUS_FRESH).is_none());
    }

    #[test]
    fn the_supervisor_also_checks_what_it_was_read_under() {
        let board = PgBoard::default();
        let t0 = Instant::now();
        let base = PgStatus::unknown(PgState::Running);
        board.publish(t0, base.clone(), base.clone());
        assert!(board.fresh_under(t0, &base).is_some());
        let stopping = PgStatus::unknown(PgState::Stopping);
        assert!(board.fresh_under(t0, &stopping).is_none());
        assert!(board.fresh(t0).is_some(), "the API relies on the clear");
    }

    #[test]
    fn a_change_clears_it() {
        let board = PgBoard::default();
        let t0 = Instant::now();
        let base = PgStatus::unknown(PgState::Running);
        board.publish(t0, base.clone(), base);
        board.clear();
        assert!(board.fresh(t0).is_none());
    }
}
