//! What the etcd backend may take from its watch instead of asking etcd
//! again (issue 12 §5; docs/dcs.md, "Idle cost").
//!
//! While a watch on the cluster prefix is open and heard from recently, a
//! full read of the prefix stays true until the watch reports a change. So:
//! * `load_cluster` answers from the last read while nothing changed;
//! * `touch_member` skips its write while our member key still holds what we
//!   wrote, under our lease.
//!
//! The invariant: a cached answer is only given when every event etcd could
//! have sent since the read was taken has been seen. Every watch event, every
//! open or loss of a watch, every write of ours and every failed request
//! bumps `generation`; a read is kept only if the generation did not move
//! while it was in flight, and only used while the watch is fresh (heard
//! from within its probe period: a silent, frozen or partitioned server
//! makes it stale). Pure bookkeeping: no I/O, the caller passes the clock.

use std::time::{Duration, Instant};

/// One row of a prefix read: relative key, value, mod revision, lease.
pub(crate) type Row = (String, String, i64, i64);

#[derive(Debug, Default)]
pub(crate) struct View {
    generation: u64,
    /// Watches open (confirmed created) now.
    watches: usize,
    /// When an open watch last heard from the server.
    heard: Option<Instant>,
    /// The last full read and the generation it is valid for.
    rows: Option<(u64, Vec<Row>)>,
    /// What we last wrote to our member key, and under which lease, while
    /// no event said otherwise.
    member: Option<(String, i64)>,
}

/// Taken before a read; the read is kept only if nothing moved since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    generation: u64,
    watched: bool,
}

impl View {
    /// The watch can vouch for the cache: one is open and it heard from the
    /// server within `fresh_within`.
    fn watched(&self, now: Instant, fresh_within: Duration) -> bool {
        self.watches > 0
            && self
                .heard
                .is_some_and(|t| now.saturating_duration_since(t) < fresh_within)
    }

    /// Forget everything cached.
    pub(crate) fn invalidate(&mut self) {
        self.generation += 1;
        self.rows = None;
        self.member = None;
    }

    /// The last read, if it is still true.
    pub(crate) fn cached(&self, now: Instant, fresh_within: Duration) -> Option<&[Row]> {
        match &self.rows {
            Some((g, rows)) if *g == self.generation && self.watched(now, fresh_within) => {
                Some(rows)
            }
            _ => None,
        }
    }

    pub(crate) fn ticket(&self, now: Instant, fresh_within: Duration) -> Ticket {
        Ticket {
            generation: self.generation,
            watched: self.watched(now, fresh_within),
        }
    }

    /// Keep a read taken under `t` if the watch vouched for it then and
    /// nothing moved since.
    pub(crate) fn store(&mut self, t: Ticket, rows: Vec<Row>) {
        if t.watched && t.generation == self.generation {
            self.rows = Some((t.generation, rows));
        }
    }

    pub(crate) fn watch_opened(&mut self, now: Instant) {
        self.watches += 1;
        self.heard = Some(now);
        // Events before the watch started are not replayed.
        self.invalidate();
    }

    pub(crate) fn watch_closed(&mut self) {
        self.watches = self.watches.saturating_sub(1);
        self.invalidate();
    }

    pub(crate) fn watch_heard(&mut self, now: Instant) {
        self.heard = Some(now);
    }

    /// A change under the prefix. `ours` is `Some((value, lease))` when it
    /// is a put of our member key, `None` for any other key; `deleted_ours`
    /// when it deleted our member key.
    pub(crate) fn changed(&mut self, ours: Option<(&str, i64)>, deleted_ours: bool) {
        self.generation += 1;
        self.rows = None;
        let keep = match (ours, &self.member) {
            // Our own write coming back, or someone else's of our key.
            (Some((v, l)), Some((mv, ml))) => v == mv && l == *ml,
            (Some(_), None) => false,
            (None, _) => !deleted_ours,
        };
        if !keep {
            self.member = None;
        }
    }

    /// We wrote our member key (`value` under `lease`), or a request may
    /// have changed it (`None`).
    pub(crate) fn member_written(&mut self, written: Option<(String, i64)>) {
        self.generation += 1;
        self.rows = None;
        self.member = written;
    }

    /// Our member key is known to hold `value` under `lease`.
    pub(crate) fn member_is(&self, value: &str, lease: i64, now: Instant, fresh: Duration) -> bool {
        self.watched(now, fresh)
            && self
                .member
                .as_ref()
                .is_some_and(|(v, l)| v == value && *l == lease)
    }

    /// Something we wrote (other than our member key) or a failed request:
    /// the last read no longer counts.
    pub(crate) fn wrote(&mut self) {
        self.generation += 1;
        self.rows = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: Duration = Duration::from_secs(9);

    fn row(k: &str) -> Row {
        (k.into(), "v".into(), 1, 0)
    }

    #[test]
    fn no_cache_without_a_watch() {
        let now = Instant::now();
        let mut v = View::default();
        let t = v.ticket(now, FRESH);
        v.store(t, vec![row("leader")]);
        assert!(v.cached(now, FRESH).is_none());
    }

    #[test]
    fn cache_until_a_change() {
        let now = Instant::now();
        let mut v = View::default();
        v.watch_opened(now);
        let t = v.ticket(now, FRESH);
        v.store(t, vec![row("leader")]);
        assert_eq!(v.cached(now, FRESH).map(<[Row]>::len), Some(1));
        v.changed(None, false);
        assert!(v.cached(now, FRESH).is_none());
    }

    #[test]
    fn a_change_during_the_read_discards_it() {
        let now = Instant::now();
        let mut v = View::default();
        v.watch_opened(now);
        let t = v.ticket(now, FRESH);
        v.changed(None, false);
        v.store(t, vec![row("leader")]);
        assert!(v.cached(now, FRESH).is_none());
        let t = v.ticket(now, FRESH);
        v.wrote();
        v.store(t, vec![row("leader")]);
        assert!(v.cached(now, FRESH).is_none());
    }

    #[test]
    fn a_silent_or_lost_watch_vouches_for_nothing() {
        let now = Instant::now();
        let mut v = View::default();
        v.watch_opened(now);
        let t = v.ticket(now, FRESH);
        v.store(t, vec![row("leader")]);
        assert!(v.cached(now + FRESH, FRESH).is_none());
        v.watch_heard(now + FRESH);
        assert!(v.cached(now + FRESH, FRESH).is_some());
        v.watch_closed();
        assert!(v.cached(now + FRESH, FRESH).is_none());
    }

    #[test]
    fn member_known_until_someone_else_changes_it() {
        let now = Instant::now();
        let mut v = View::default();
        v.watch_opened(now);
        v.member_written(Some(("a".into(), 7)));
        assert!(v.member_is("a", 7, now, FRESH));
        assert!(!v.member_is("b", 7, now, FRESH));
        assert!(!v.member_is("a", 8, now, FRESH));
        // Our own write's event keeps it; other keys' events too.
        v.changed(Some(("a", 7)), false);
        v.changed(None, false);
        assert!(v.member_is("a", 7, now, FRESH));
        // Someone else's write or a delete of our key forgets it.
        v.changed(Some(("x", 7)), false);
        assert!(!v.member_is("a", 7, now, FRESH));
        v.member_written(Some(("a".into(), 7)));
        v.changed(None, true);
        assert!(!v.member_is("a", 7, now, FRESH));
        // Without a fresh watch, nothing is known.
        v.member_written(Some(("a".into(), 7)));
        assert!(!v.member_is("a", 7, now + FRESH, FRESH));
    }
}
