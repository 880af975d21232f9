//! What the etcd backend may take from its watch instead of asking etcd
//! again (issue 12 §5; docs/dcs.md, "Idle cost").
//!
//! While a watch on the cluster prefix is open and heard from recently, a
//! full read of the prefix, kept up to date with the events the watch
//! reports and with our own acknowledged writes, stays as true as a new
//! read would be. So:
//! * `load_cluster` answers from the view: an idle cluster reads nothing,
//!   and a change costs each node one watch event, not one read;
//! * `touch_member` skips its write while our member key still holds what we
//!   wrote, under our lease.
//!
//! The invariants:
//! * Every key's history is totally ordered by etcd's revisions, so the
//!   view keeps, per key, the revision of what it holds (a tombstone for a
//!   deleted key) and takes a change, whether an event or our own write,
//!   only if it is newer. Events arrive on another connection than our
//!   writes and reads, so an old event may arrive after a newer read or
//!   write: it is then ignored, never applied over newer data.
//! * A key the read did not hold takes only events newer than the read's
//!   revision. The watch was open before the read was sent, so every change
//!   after the read's revision reaches the view as an event.
//! * A read is kept only if nothing moved (no event, no write of ours, no
//!   watch opened or lost, no failed request) while it was in flight, and
//!   only while the watch vouches for it: one is open and its server was
//!   heard from within the probe period (a silent, frozen or partitioned
//!   server makes it stale). Heard from: on the watch itself, or by a
//!   request of ours that the same server answered (`answered_by`), since
//!   the watch's own connection is kept honest by TCP keep-alive
//!   (`etcd_conn`) and a server that answers requests also sends the
//!   watch's events. A failed request or a lost watch forgets everything.
//!
//! Pure bookkeeping: no I/O, the caller passes the clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dcs::Cluster;

/// One row of a prefix read: relative key, value, mod revision, lease.
pub(crate) type Row = (String, String, i64, i64);

/// What the view knows of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Live {
        value: String,
        mod_rev: i64,
        lease: i64,
    },
    /// Deleted at `rev`: an older put arriving late must not revive it.
    Gone { rev: i64 },
}

impl Entry {
    fn rev(&self) -> i64 {
        match self {
            Entry::Live { mod_rev, .. } => *mod_rev,
            Entry::Gone { rev } => *rev,
        }
    }
}

/// A full read and what happened to it since.
#[derive(Debug)]
struct Cache {
    /// The store revision the read was taken at.
    read_rev: i64,
    keys: BTreeMap<String, Entry>,
    /// `keys` parsed, once: an idle node's cycle copies it instead of
    /// parsing every member's JSON again. Dropped by every change.
    parsed: Option<Cluster>,
}

impl Cache {
    /// Take a change of `key` made at `rev`, if it is newer than what the
    /// view holds for that key.
    fn apply(&mut self, key: &str, entry: Entry) {
        let newer = match self.keys.get(key) {
            Some(held) => entry.rev() > held.rev(),
            None => entry.rev() > self.read_rev,
        };
        if newer {
            self.keys.insert(key.to_owned(), entry);
            self.parsed = None;
        }
    }

    fn rows(&self) -> Vec<Row> {
        self.keys
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Live {
                    value,
                    mod_rev,
                    lease,
                } => Some((k.clone(), value.clone(), *mod_rev, *lease)),
                Entry::Gone { .. } => None,
            })
            .collect()
    }
}

/// One change, as the watch reports it or as our own write made it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    Put {
        value: &'a str,
        mod_rev: i64,
        lease: i64,
    },
    Delete {
        rev: i64,
    },
}

impl Change<'_> {
    fn entry(self) -> Entry {
        match self {
            Change::Put {
                value,
                mod_rev,
                lease,
            } => Entry::Live {
                value: value.to_owned(),
                mod_rev,
                lease,
            },
            Change::Delete { rev } => Entry::Gone { rev },
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct View {
    /// Moves on every event, write, watch open or loss and failure: a read
    /// in flight across a move is not kept.
    generation: u64,
    /// Watches open (confirmed created) now.
    watches: usize,
    /// When an open watch last heard from the server.
    heard: Option<Instant>,
    /// The servers the open watches are connected to (`watch_on`): a
    /// request one of them answered counts as hearing from it.
    watch_servers: Vec<Arc<str>>,
    cache: Option<Cache>,
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
        self.cache = None;
        self.member = None;
    }

    /// The cluster prefix as a new read would show it, if the view can vouch.
    pub(crate) fn cached(&self, now: Instant, fresh_within: Duration) -> Option<Vec<Row>> {
        self.cache
            .as_ref()
            .filter(|_| self.watched(now, fresh_within))
            .map(Cache::rows)
    }

    /// [`View::cached`], parsed (`Cluster::from_kvs`), parsed again only
    /// after a change: an idle cluster's view is parsed once.
    pub(crate) fn cached_cluster(
        &mut self,
        now: Instant,
        fresh_within: Duration,
    ) -> Option<Cluster> {
        if !self.watched(now, fresh_within) {
            return None;
        }
        let cache = self.cache.as_mut()?;
        if cache.parsed.is_none() {
            cache.parsed = Some(Cluster::from_kvs(cache.rows()));
        }
        cache.parsed.clone()
    }

    /// What key `rel` holds (value, mod revision, lease), if the view can
    /// vouch: `Some(None)` when it holds nothing.
    pub(crate) fn cached_key(
        &self,
        rel: &str,
        now: Instant,
        fresh_within: Duration,
    ) -> Option<Option<(&str, i64, i64)>> {
        let cache = self
            .cache
            .as_ref()
            .filter(|_| self.watched(now, fresh_within))?;
        Some(match cache.keys.get(rel) {
            Some(Entry::Live {
                value,
                mod_rev,
                lease,
            }) => Some((value.as_str(), *mod_rev, *lease)),
            Some(Entry::Gone { .. }) | None => None,
        })
    }

    pub(crate) fn ticket(&self, now: Instant, fresh_within: Duration) -> Ticket {
        Ticket {
            generation: self.generation,
            watched: self.watched(now, fresh_within),
        }
    }

    /// Keep a read taken under `t` at revision `read_rev` if the watch
    /// vouched for it then and nothing moved since.
    pub(crate) fn store(&mut self, t: Ticket, read_rev: i64, rows: Vec<Row>) {
        if t.watched && t.generation == self.generation {
            let keys = rows
                .into_iter()
                .map(|(k, value, mod_rev, lease)| {
                    (
                        k,
                        Entry::Live {
                            value,
                            mod_rev,
                            lease,
                        },
                    )
                })
                .collect();
            self.cache = Some(Cache {
                read_rev,
                keys,
                parsed: None,
            });
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

    /// When an open watch's server was last heard from, on the watch or by
    /// a request it answered.
    pub(crate) fn last_heard(&self) -> Option<Instant> {
        self.heard.filter(|_| self.watches > 0)
    }

    /// An open watch (counted by `watch_opened`) is connected to `server`.
    pub(crate) fn watch_on(&mut self, server: Arc<str>) {
        self.watch_servers.push(server);
    }

    /// The watch on `server` (`watch_on`) closed.
    pub(crate) fn watch_off(&mut self, server: &str) {
        if let Some(i) = self.watch_servers.iter().position(|s| &**s == server) {
            self.watch_servers.swap_remove(i);
        }
    }

    /// `server` answered a request of ours at `now`: if a watch is open on
    /// it, its server is heard from, as if the watch had answered a
    /// progress request. That server process is up and serving, which is
    /// what the progress request showed (its answer, too, says nothing of
    /// a member whose apply loop is stuck); the watch's own connection is
    /// checked by TCP keep-alive (`etcd_conn`).
    pub(crate) fn answered_by(&mut self, server: &str, now: Instant) {
        if self.watches > 0 && self.watch_servers.iter().any(|s| &**s == server) {
            self.heard = Some(now);
        }
    }

    /// The watch reported a change of `rel`; `ours` when `rel` is our member
    /// key.
    pub(crate) fn changed(&mut self, rel: &str, change: Change<'_>, ours: bool) {
        self.generation += 1;
        if let Some(c) = self.cache.as_mut() {
            c.apply(rel, change.entry());
        }
        if ours {
            let keep = match (change, &self.member) {
                // Our own write coming back, or someone else's of our key.
                (Change::Put { value, lease, .. }, Some((mv, ml))) => value == mv && lease == *ml,
                _ => false,
            };
            if !keep {
                self.member = None;
            }
        }
    }

    /// We wrote `rel` and etcd acknowledged it at the change's revision.
    /// `member`: it is our member key.
    pub(crate) fn own_write(&mut self, rel: &str, change: Change<'_>, member: bool) {
        self.generation += 1;
        if let Some(c) = self.cache.as_mut() {
            c.apply(rel, change.entry());
        }
        if member {
            self.member = match change {
                Change::Put { value, lease, .. } => Some((value.to_owned(), lease)),
                Change::Delete { .. } => None,
            };
        }
    }

    /// A compare found our member key holding `value` under `lease` (no
    /// write was needed).
    pub(crate) fn member_holds(&mut self, value: String, lease: i64) {
        self.member = Some((value, lease));
    }

    /// Our member key is known to hold `value` under `lease`.
    pub(crate) fn member_is(&self, value: &str, lease: i64, now: Instant, fresh: Duration) -> bool {
        self.watched(now, fresh)
            && self
                .member
                .as_ref()
                .is_some_and(|(v, l)| v == value && *l == lease)
    }

    /// Something we wrote that the view cannot follow key by key (a prefix
    /// delete, a revoked lease, a write whose revision is unknown): the last
    /// read no longer counts.
    pub(crate) fn wrote(&mut self) {
        self.generation += 1;
        self.cache = None;
        self.member = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRESH: Duration = Duration::from_secs(9);

    fn row(k: &str, v: &str, rev: i64) -> Row {
        (k.into(), v.into(), rev, 0)
    }

    fn put(value: &str, mod_rev: i64) -> Change<'_> {
        Change::Put {
            value,
            mod_rev,
            lease: 0,
        }
    }

    fn values(v: &View, now: Instant) -> Vec<(String, String)> {
        v.cached(now, FRESH)
            .expect("cached")
            .into_iter()
            .map(|(k, v, _, _)| (k, v))
            .collect()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A view with a watch open and a read of `rows` at `rev` stored.
    fn read(now: Instant, rev: i64, rows: Vec<Row>) -> View {
        let mut v = View::default();
        v.watch_opened(now);
        let t = v.ticket(now, FRESH);
        v.store(t, rev, rows);
        v
    }

    #[test]
    fn the_parsed_view_follows_every_change() {
        let now = Instant::now();
        let mut v = read(now, 10, vec![row("leader", "a", 3)]);
        let first = v.cached_cluster(now, FRESH).expect("cached");
        assert_eq!(first.leader_name(), Some("a"));
        assert_eq!(
            v.cached_cluster(now, FRESH).expect("again").leader_name(),
            Some("a")
        );
        v.changed("leader", put("b", 11), false);
        assert_eq!(
            v.cached_cluster(now, FRESH)
                .expect("after an event")
                .leader_name(),
            Some("b"),
            "an event drops the parsed copy"
        );
        v.own_write("leader", put("c", 12), false);
        assert_eq!(
            v.cached_cluster(now, FRESH)
                .expect("after a write")
                .leader_name(),
            Some("c")
        );
        v.changed("leader", put("old", 4), false);
        assert_eq!(
            v.cached_cluster(now, FRESH)
                .expect("after a late event")
                .leader_name(),
            Some("c"),
            "an older event changes nothing"
        );
        v.watch_closed();
        assert!(v.cached_cluster(now, FRESH).is_none());
    }

    #[test]
    fn no_cache_without_a_watch() {
        let now = Instant::now();
        let mut v = View::default();
        let t = v.ticket(now, FRESH);
        v.store(t, 5, vec![row("leader", "a", 5)]);
        assert!(v.cached(now, FRESH).is_none());
    }

    #[test]
    fn events_keep_the_read_current() {
        let now = Instant::now();
        let mut v = read(
            now,
            10,
            vec![row("leader", "a", 3), row("members/a", "x", 9)],
        );
        v.changed("members/b", put("y", 11), false);
        v.changed("members/a", put("x2", 12), false);
        v.changed("leader", Change::Delete { rev: 13 }, false);
        assert_eq!(
            values(&v, now),
            kv(&[("members/a", "x2"), ("members/b", "y")])
        );
        v.changed("leader", put("b", 14), false);
        assert_eq!(
            v.cached_key("leader", now, FRESH),
            Some(Some(("b", 14, 0))),
            "a key put again after its delete"
        );
    }

    #[test]
    fn late_events_never_override_newer_data() {
        let now = Instant::now();
        // The read at 20 already holds the put at 18 and the delete at 19.
        let mut v = read(now, 20, vec![row("leader", "a", 18)]);
        // Their events arrive after the read: both are old news.
        v.changed("leader", put("a", 18), false);
        v.changed("members/gone", Change::Delete { rev: 19 }, false);
        v.changed("members/gone", put("old", 17), false);
        assert_eq!(values(&v, now), kv(&[("leader", "a")]));
        // A key deleted at 21 is not revived by a put of 20 arriving late.
        v.changed("leader", Change::Delete { rev: 21 }, false);
        v.changed("leader", put("stale", 20), false);
        assert_eq!(v.cached_key("leader", now, FRESH), Some(None));
    }

    #[test]
    fn own_writes_count_at_once_and_their_events_change_nothing() {
        let now = Instant::now();
        let mut v = read(now, 30, vec![row("members/a", "x", 25)]);
        v.own_write(
            "leader",
            Change::Put {
                value: "a",
                mod_rev: 31,
                lease: 7,
            },
            false,
        );
        assert_eq!(v.cached_key("leader", now, FRESH), Some(Some(("a", 31, 7))));
        // Someone else's write at 32 arrives before our own event (31).
        v.changed("status", put("s", 32), false);
        v.changed(
            "leader",
            Change::Put {
                value: "a",
                mod_rev: 31,
                lease: 7,
            },
            false,
        );
        assert_eq!(
            values(&v, now),
            kv(&[("leader", "a"), ("members/a", "x"), ("status", "s")])
        );
    }

    #[test]
    fn a_move_during_the_read_discards_it() {
        let now = Instant::now();
        let mut v = View::default();
        v.watch_opened(now);
        let t = v.ticket(now, FRESH);
        v.changed("leader", put("a", 3), false);
        v.store(t, 3, vec![row("leader", "a", 3)]);
        assert!(v.cached(now, FRESH).is_none());
        let t = v.ticket(now, FRESH);
        v.own_write("status", put("s", 4), false);
        v.store(t, 3, vec![row("leader", "a", 3)]);
        assert!(v.cached(now, FRESH).is_none());
        let t = v.ticket(now, FRESH);
        v.wrote();
        v.store(t, 4, vec![row("leader", "a", 3)]);
        assert!(v.cached(now, FRESH).is_none());
    }

    #[test]
    fn an_untracked_write_or_a_failure_forgets_the_read() {
        let now = Instant::now();
        let mut v = read(now, 5, vec![row("leader", "a", 5)]);
        v.wrote();
        assert!(v.cached(now, FRESH).is_none());
        let mut v = read(now, 5, vec![row("leader", "a", 5)]);
        v.invalidate();
        assert!(v.cached(now, FRESH).is_none());
    }

    #[test]
    fn a_silent_or_lost_watch_vouches_for_nothing() {
        let now = Instant::now();
        let mut v = read(now, 5, vec![row("leader", "a", 5)]);
        assert!(v.cached(now + FRESH, FRESH).is_none());
        assert!(v.cached_key("leader", now + FRESH, FRESH).is_none());
        v.watch_heard(now + FRESH);
        assert!(v.cached(now + FRESH, FRESH).is_some());
        v.watch_closed();
        assert!(v.cached(now + FRESH, FRESH).is_none());
    }

    #[test]
    fn an_answer_from_the_watchs_server_vouches_one_from_another_does_not() {
        let now = Instant::now();
        let mut v = read(now, 5, vec![row("leader", "a", 5)]);
        v.watch_on(Arc::from("10.0.0.1:2379"));
        let later = now + FRESH;
        v.answered_by("10.0.0.2:2379", later);
        assert!(
            v.cached(later, FRESH).is_none(),
            "another server says nothing of the watch's"
        );
        assert_eq!(v.last_heard(), Some(now));
        v.answered_by("10.0.0.1:2379", later);
        assert!(
            v.cached(later, FRESH).is_some(),
            "the watch's server answered"
        );
        assert_eq!(v.last_heard(), Some(later));
        // Once that watch is gone, its server's answers vouch for nothing,
        // and with no watch at all nothing is heard.
        v.watch_off("10.0.0.1:2379");
        v.watch_closed();
        v.answered_by("10.0.0.1:2379", later + FRESH);
        assert_eq!(v.last_heard(), None);
        v.watch_opened(later + FRESH);
        v.answered_by("10.0.0.1:2379", later + FRESH * 2);
        assert_eq!(
            v.last_heard(),
            Some(later + FRESH),
            "the new watch is on no known server"
        );
    }
    #[test]
    fn member_known_until_someone_else_changes_it() {
        let now = Instant::now();
        let mut v = View::default();
        v.watch_opened(now);
        let mine = |value, lease| Change::Put {
            value,
            mod_rev: 1,
            lease,
        };
        v.own_write("members/a", mine("a", 7), true);
        assert!(v.member_is("a", 7, now, FRESH));
        assert!(!v.member_is("b", 7, now, FRESH));
        assert!(!v.member_is("a", 8, now, FRESH));
        // Our own write's event keeps it; other keys' events too.
        v.changed("members/a", mine("a", 7), true);
        v.changed("leader", put("x", 2), false);
        assert!(v.member_is("a", 7, now, FRESH));
        // Someone else's write or a delete of our key forgets it.
        v.changed("members/a", mine("x", 7), true);
        assert!(!v.member_is("a", 7, now, FRESH));
        v.own_write("members/a", mine("a", 7), true);
        v.changed("members/a", Change::Delete { rev: 3 }, true);
        assert!(!v.member_is("a", 7, now, FRESH));
        // Without a fresh watch, nothing is known.
        v.own_write("members/a", mine("a", 7), true);
        assert!(!v.member_is("a", 7, now + FRESH, FRESH));
    }
}
