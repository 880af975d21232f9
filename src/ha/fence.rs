//! What the fence is told at the end of a cycle (docs/ha.md §9.5).

use std::time::Instant;

use super::{PgFacts, PgRole};
use crate::fence::FenceOrder;

/// The fence's order after a cycle. It is armed only with a lease renewed
/// (or failsafe confirmed) in this cycle (`held_until`, see
/// [`super::lease::vouched`]) for a PostgreSQL that answered as a primary in
/// this cycle; without such fresh facts the last order stands, so the fence
/// stops PostgreSQL when that lease runs out. A demotion in this cycle, a
/// stopped PostgreSQL or a replica disarm it.
pub fn fence_order(pg: &PgFacts, demoted: bool, held_until: Option<Instant>) -> FenceOrder {
    if demoted {
        return FenceOrder::Disarm;
    }
    if pg.is_primary() {
        return held_until.map_or(FenceOrder::Keep, FenceOrder::Arm);
    }
    if !pg.running || pg.role == Some(PgRole::Replica) {
        return FenceOrder::Disarm;
    }
    FenceOrder::Keep
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pg(running: bool, role: Option<PgRole>) -> PgFacts {
        PgFacts {
            running,
            role,
            ..PgFacts::default()
        }
    }

    #[test]
    fn a_primary_with_a_vouched_lease_arms_the_fence_at_its_deadline() {
        let d = Instant::now() + Duration::from_secs(30);
        let p = pg(true, Some(PgRole::Primary));
        assert_eq!(fence_order(&p, false, Some(d)), FenceOrder::Arm(d));
    }

    #[test]
    fn a_primary_without_fresh_word_keeps_the_last_order() {
        let p = pg(true, Some(PgRole::Primary));
        assert_eq!(fence_order(&p, false, None), FenceOrder::Keep);
        // Running but not answering: nothing is known either.
        assert_eq!(fence_order(&pg(true, None), false, None), FenceOrder::Keep);
        let d = Instant::now();
        assert_eq!(
            fence_order(&pg(true, None), false, Some(d)),
            FenceOrder::Keep
        );
    }

    #[test]
    fn demoted_stopped_or_replica_disarms() {
        let d = Some(Instant::now() + Duration::from_secs(30));
        let p = pg(true, Some(PgRole::Primary));
        assert_eq!(fence_order(&p, true, d), FenceOrder::Disarm, "demoted");
        assert_eq!(fence_order(&pg(false, None), false, d), FenceOrder::Disarm);
        let r = pg(true, Some(PgRole::Replica));
        assert_eq!(fence_order(&r, false, d), FenceOrder::Disarm);
    }
}
