//! Quorum commit, the state resolver (docs/replication-modes.md §5):
//! given the `sync` key (leader, `quorum`, voters), what PostgreSQL runs
//! with (`ANY numsync (sync)`), the standbys streaming and those confirmed,
//! and `synchronous_node_count`, the ordered changes that reach the wanted
//! state. A port of the rules of Patroni's `QuorumStateResolver`
//! (`patroni/quorum.py`), so a mixed cluster reads the same key the same
//! way; pure.
//!
//! Both pairs mean "any n of the set": a commit is acknowledged once
//! `numsync` of `sync` have it; a new leader must have seen `quorum` of the
//! voters (besides itself). The invariant every step keeps: any set of
//! nodes that can acknowledge a commit meets any set that can make a
//! quorum, `|voters ∪ sync ∪ {leader}| <= quorum + numsync + 1`, and one
//! of the two sets contains the other. So a raised number goes first, a
//! lowered one last: `numsync` up before `quorum` down, `quorum` up before
//! `numsync` down.

use std::collections::BTreeMap;

/// Names compared case-insensitively, as PostgreSQL compares
/// `synchronous_standby_names` with `application_name`; each kept as last
/// spelled (Patroni's `CaseInsensitiveSet`).
#[derive(Debug, Clone, Default)]
pub struct NameSet(BTreeMap<String, String>);

impl PartialEq for NameSet {
    fn eq(&self, other: &NameSet) -> bool {
        self.0.len() == other.0.len() && self.0.keys().all(|k| other.0.contains_key(k))
    }
}

impl Eq for NameSet {}

impl<S: AsRef<str>> FromIterator<S> for NameSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> NameSet {
        let mut set = NameSet::default();
        for name in iter {
            set.insert(name.as_ref());
        }
        set
    }
}

impl NameSet {
    fn insert(&mut self, name: &str) {
        self.0.insert(name.to_lowercase(), name.to_owned());
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(&name.to_lowercase())
    }

    /// The names as spelled, sorted as spelled (Patroni sorts so).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.values().cloned().collect();
        v.sort_unstable();
        v
    }

    /// Union; a name in both keeps `other`'s spelling.
    pub fn union(&self, other: &NameSet) -> NameSet {
        let mut out = self.clone();
        out.0
            .extend(other.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    /// The names not in `other`.
    pub fn minus(&self, other: &NameSet) -> NameSet {
        NameSet(
            self.0
                .iter()
                .filter(|(k, _)| !other.0.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Intersection, in `other`'s spelling.
    pub fn and(&self, other: &NameSet) -> NameSet {
        NameSet(
            other
                .0
                .iter()
                .filter(|(k, _)| self.0.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    pub fn is_subset(&self, other: &NameSet) -> bool {
        self.0.keys().all(|k| other.0.contains_key(k))
    }

    fn is_proper_subset(&self, other: &NameSet) -> bool {
        self.len() < other.len() && self.is_subset(other)
    }

    fn with(&self, name: &str) -> NameSet {
        let mut out = self.clone();
        out.insert(name);
        out
    }
}

/// What a [`Transition`] changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionKind {
    /// `synchronous_standby_names` to `ANY num (names)`.
    Sync,
    /// The `sync` key to `{leader, quorum: num, sync_standby: names}`.
    Quorum,
    /// Stop here: PostgreSQL was just asked for new standbys and none is
    /// confirmed yet; the next cycle starts again from fresh facts.
    Restart,
}

/// One change, carrying the new state (Patroni's `Transition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub kind: TransitionKind,
    pub leader: String,
    pub num: u32,
    pub names: NameSet,
}

/// The state cannot be reached safely from here (Patroni's `QuorumError`,
/// and its assertions): nothing is changed this cycle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    #[error("quorum {quorum} out of range for voters ({voters})")]
    QuorumRange { quorum: i64, voters: String },
    #[error("numsync {numsync} out of range for ({sync})")]
    SyncRange { numsync: i64, sync: String },
    #[error(
        "quorum and sync not guaranteed to overlap: {nodes} nodes > quorum {quorum} + numsync {numsync} + 1"
    )]
    NoOverlap {
        nodes: usize,
        quorum: i64,
        numsync: i64,
    },
    #[error("mismatched sets: voters only ({voters_only}), sync only ({sync_only})")]
    Mismatched {
        voters_only: String,
        sync_only: String,
    },
    #[error("inconsistent quorum state: {0}")]
    Inconsistent(&'static str),
}

/// The inputs (Patroni's `QuorumStateResolver.__init__`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumInput {
    /// `leader` of the `sync` key.
    pub leader: String,
    /// `quorum` of the `sync` key.
    pub quorum: u32,
    /// `sync_standby` of the `sync` key.
    pub voters: NameSet,
    /// The `n` of `ANY n (...)` PostgreSQL runs with.
    pub numsync: u32,
    /// The names PostgreSQL runs with.
    pub sync: NameSet,
    /// How many listed standbys reached the primary's position since the
    /// list last changed.
    pub numsync_confirmed: u32,
    /// The standbys streaming that may be synchronous.
    pub active: NameSet,
    /// `synchronous_node_count`.
    pub sync_wanted: u32,
    /// The leader that should be in the key: this node.
    pub leader_wanted: String,
}

/// The changes to make, in order: consecutive changes of the same kind
/// merged into the last (skipping the first is the same as nobody having
/// seen it), and nothing after a [`TransitionKind::Restart`].
pub fn resolve(input: &QuorumInput) -> Result<Vec<Transition>, QuorumError> {
    let mut r = Resolver::new(input);
    r.generate()?;
    let mut out: Vec<Transition> = Vec::new();
    for (i, t) in r.out.iter().enumerate() {
        if r.out.get(i + 1).is_some_and(|next| next.kind == t.kind) {
            continue;
        }
        out.push(t.clone());
        if t.kind == TransitionKind::Restart {
            break;
        }
    }
    Ok(out)
}

fn fmt(set: &NameSet) -> String {
    set.names().join(",")
}

/// Patroni's resolver state; numbers are signed so that a negative
/// intermediate is refused as Patroni refuses it, not wrapped.
struct Resolver {
    leader: String,
    quorum: i64,
    voters: NameSet,
    numsync: i64,
    sync: NameSet,
    numsync_confirmed: i64,
    active: NameSet,
    sync_wanted: i64,
    leader_wanted: String,
    out: Vec<Transition>,
}

fn len(s: &NameSet) -> i64 {
    s.len() as i64
}

impl Resolver {
    fn new(i: &QuorumInput) -> Resolver {
        Resolver {
            leader: i.leader.clone(),
            quorum: i64::from(i.quorum),
            voters: i.voters.clone(),
            // PostgreSQL waits for at most as many as it lists.
            numsync: i64::from(i.numsync).min(len(&i.sync)),
            sync: i.sync.clone(),
            numsync_confirmed: i64::from(i.numsync_confirmed),
            active: i.active.clone(),
            sync_wanted: i64::from(i.sync_wanted),
            leader_wanted: i.leader_wanted.clone(),
            out: Vec::new(),
        }
    }

    fn push(&mut self, kind: TransitionKind, num: i64, names: NameSet) {
        self.out.push(Transition {
            kind,
            leader: self.leader.clone(),
            num: u32::try_from(num).unwrap_or(0),
            names,
        });
    }

    /// The invariant (module doc): the sets overlap, and one contains the
    /// other (they differ only between the two halves of a change).
    fn check_invariants(&self) -> Result<(), QuorumError> {
        let voters = self.voters.with(&self.leader);
        let sync = self.sync.with(&self.leader_wanted);
        let nodes = voters.union(&sync).len();
        if !self.voters.is_empty() && nodes as i64 > self.quorum + self.numsync + 1 {
            return Err(QuorumError::NoOverlap {
                nodes,
                quorum: self.quorum,
                numsync: self.numsync,
            });
        }
        if !(voters.is_subset(&sync) || sync.is_subset(&voters)) {
            return Err(QuorumError::Mismatched {
                voters_only: fmt(&voters.minus(&sync)),
                sync_only: fmt(&sync.minus(&voters)),
            });
        }
        Ok(())
    }

    /// Patroni's `quorum_update`: a new key. Unless a leader is given,
    /// with no standby confirmed and no voter yet the key is reset to no
    /// voters; with `adjust`, `quorum` grows by the listed standbys not
    /// yet confirmed, so that a race still finds one that is.
    fn quorum_update(
        &mut self,
        mut quorum: i64,
        mut voters: NameSet,
        leader: Option<&str>,
        adjust: bool,
    ) -> Result<(), QuorumError> {
        if quorum < 0 || (quorum > 0 && quorum >= len(&voters)) {
            return Err(QuorumError::QuorumRange {
                quorum,
                voters: fmt(&voters),
            });
        }
        let old_leader = self.leader.clone();
        if let Some(l) = leader {
            self.leader = l.to_owned();
        } else if self.numsync_confirmed == 0 && self.voters.is_empty() {
            quorum = 0;
            voters = NameSet::default();
        } else if adjust {
            quorum += (self.numsync - self.numsync_confirmed).max(0);
        }
        if self.leader == old_leader && quorum == self.quorum && voters == self.voters {
            if !self.voters.is_empty() {
                return Ok(());
            }
            // No change and nobody confirmed: ask the caller to look again.
            self.push(TransitionKind::Restart, self.quorum, self.voters.clone());
        }
        self.quorum = quorum;
        self.voters = voters;
        self.check_invariants()?;
        self.push(TransitionKind::Quorum, self.quorum, self.voters.clone());
        Ok(())
    }

    /// Patroni's `sync_update`: a new `synchronous_standby_names`.
    fn sync_update(&mut self, numsync: i64, sync: NameSet) -> Result<(), QuorumError> {
        if numsync < 0 || numsync > len(&sync) {
            return Err(QuorumError::SyncRange {
                numsync,
                sync: fmt(&sync),
            });
        }
        self.numsync = numsync;
        self.sync = sync;
        self.check_invariants()?;
        self.push(TransitionKind::Sync, self.numsync, self.sync.clone());
        Ok(())
    }

    /// After a failover the key still names the old leader: it becomes a
    /// voter (it may hold commits) and this node the leader; an empty list
    /// is filled first. `Ok(true)`: stop, no standby streams yet (they get
    /// a `loop_wait` to reconnect before they are dropped).
    fn take_over_or_check(&mut self) -> Result<bool, QuorumError> {
        if self.leader_wanted == self.leader {
            self.check_invariants()?;
            return Ok(false);
        }
        let voters = self
            .voters
            .minus(&NameSet::from_iter([self.leader_wanted.as_str()]))
            .with(&self.leader);
        if self.sync.is_empty() {
            let numsync = len(&voters) - self.quorum;
            self.sync_update(numsync, voters.clone())?;
        }
        let wanted = self.leader_wanted.clone();
        self.quorum_update(self.quorum, voters, Some(&wanted), true)?;
        Ok(self.sync.and(&self.active).is_empty())
    }

    fn generate(&mut self) -> Result<(), QuorumError> {
        match self.take_over_or_check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(_) => {
                // Someone else changed one of the two: make the key match
                // what PostgreSQL runs with.
                let q = len(&self.sync) - self.numsync;
                self.quorum_update(q, self.sync.clone(), None, true)?;
            }
        }
        if self.leader != self.leader_wanted {
            return Err(QuorumError::Inconsistent(
                "the key's leader is not this node",
            ));
        }
        // After a restart or a failover nobody is known confirmed: the key
        // says how many of the listed ones are.
        let streaming_listed = self.sync.and(&self.active);
        if self.numsync_confirmed == 0 && !streaming_listed.is_empty() {
            self.numsync_confirmed = len(&streaming_listed).min(len(&self.voters) - self.quorum);
        }
        self.non_steady()?;
        self.remove_gone()?;
        self.add_new()?;
        self.replication_factor()
    }

    /// A change left half done: finish it so that voters and sync match.
    fn non_steady(&mut self) -> Result<(), QuorumError> {
        if self.sync.is_proper_subset(&self.voters) {
            // Case 1: in the middle of changing the voters. Dead voters not
            // listed in PostgreSQL go; live ones are listed.
            let remove = self.voters.minus(&self.sync.union(&self.active));
            if !remove.is_empty() {
                let q = len(&self.voters) - len(&remove) - self.numsync;
                let adjust = self.sync.minus(&self.active).is_empty();
                self.quorum_update(q, self.voters.minus(&remove), None, adjust)?;
            }
            let add = self.voters.and(&self.active).minus(&self.sync);
            if !add.is_empty() {
                self.sync_update(self.numsync, self.sync.union(&add))?;
            }
        } else if self.voters.is_proper_subset(&self.sync) {
            // Case 2: in the middle of changing the replication factor.
            let dead = self.sync.minus(&self.active);
            let left = self.sync.minus(&dead);
            // Dead ones go from the list if some stay, and some of those
            // that stay are voters.
            if !dead.is_empty()
                && !left.is_empty()
                && (self.voters.is_empty() || !left.and(&self.voters).is_empty())
            {
                let n = self.numsync.min(len(&self.sync) - len(&dead));
                self.sync_update(n, left)?;
            }
            let add = self.sync.minus(&self.voters).and(&self.active);
            if !add.is_empty() {
                let voters = self.voters.union(&add);
                self.quorum_update(len(&voters) - self.numsync, voters, None, true)?;
            }
            let remove = self.sync.minus(&self.voters);
            if !remove.is_empty() {
                let n = self.numsync.min(len(&self.sync) - len(&remove));
                self.sync_update(n, self.sync.minus(&remove))?;
            }
        }
        if self.voters != self.sync {
            return Err(QuorumError::Inconsistent(
                "voters and synchronous_standby_names still differ",
            ));
        }
        let all = len(&self.voters.union(&self.sync));
        let margin = self.quorum + self.numsync.min(self.numsync_confirmed) - all;
        if margin > 0 {
            if self.numsync > self.sync_wanted {
                // Case 3: more standbys required than wanted.
                let n = self.sync_wanted.max(len(&self.voters) - self.quorum);
                self.sync_update(n, self.sync.clone())?;
            } else {
                // Case 4: a larger quorum than needed.
                let q = len(&self.sync) - self.numsync;
                self.quorum_update(q, self.voters.clone(), None, true)?;
            }
        } else {
            let margin = self.quorum + self.numsync - all;
            if self.numsync == self.sync_wanted
                && margin > 0
                && self.numsync > self.numsync_confirmed
            {
                let q = len(&self.sync) - self.numsync;
                self.quorum_update(q, self.voters.clone(), None, true)?;
            }
        }
        Ok(())
    }

    /// Standbys no longer streaming leave the list and the key: all of
    /// them, the key first; some, the list first while the quorum can
    /// shrink with them, else the key first.
    fn remove_gone(&mut self) -> Result<(), QuorumError> {
        let mut gone = self.sync.minus(&self.active);
        if gone.is_empty() {
            return Ok(());
        }
        if self.sync == gone {
            self.quorum_update(0, NameSet::default(), None, false)?;
            return self.sync_update(0, NameSet::default());
        }
        if self.quorum > 0 {
            // Deterministic choice, as Patroni's (reverse sorted).
            let mut names = gone.names();
            names.reverse();
            let remove: NameSet = names
                .iter()
                .take(usize::try_from(self.quorum).unwrap_or(0))
                .collect();
            let sync = self.sync.minus(&remove);
            let n = if self.sync_wanted > self.numsync {
                self.sync_wanted
            } else {
                self.numsync
            }
            .min(len(&sync));
            self.sync_update(n, sync)?;
            let voters = self.voters.minus(&remove);
            gone = gone.minus(&gone.minus(&self.sync));
            self.quorum_update(len(&voters) - self.numsync, voters, None, gone.is_empty())?;
        }
        if !gone.is_empty() {
            if self.quorum != 0 {
                return Err(QuorumError::Inconsistent(
                    "standbys to remove with a quorum left",
                ));
            }
            let numsync = self.numsync - len(&gone);
            let sync = self.sync.minus(&gone);
            let voters = self.voters.minus(&gone);
            let decrease = numsync - self.sync_wanted.min(len(&sync));
            let q = if decrease != 0 {
                decrease.min(len(&voters) - 1)
            } else {
                0
            };
            self.quorum_update(q, voters, None, false)?;
            self.sync_update(numsync, sync)?;
        }
        Ok(())
    }

    /// New streaming standbys: first up to the wanted replication factor
    /// (list first, then key), then the rest (key first, then list).
    fn add_new(&mut self) -> Result<(), QuorumError> {
        let mut add = self.active.minus(&self.sync);
        if add.is_empty() {
            return Ok(());
        }
        let wanted = self.sync_wanted.min(len(&self.sync.union(&add)));
        let mut increase = wanted - self.numsync;
        if increase > 0 {
            let first = if self.sync.is_empty() {
                // Only the leader: all may be listed at once.
                add.clone()
            } else {
                let picked: NameSet = add
                    .names()
                    .iter()
                    .take(usize::try_from(increase).unwrap_or(0))
                    .collect();
                increase = len(&picked);
                picked
            };
            self.sync_update(self.numsync + increase, self.sync.union(&first))?;
            let voters = self.voters.union(&first);
            self.quorum_update(len(&voters) - wanted, voters, None, true)?;
            add = add.minus(&self.sync);
        }
        if !add.is_empty() {
            let voters = self.voters.union(&add);
            let adjust = wanted > self.numsync_confirmed;
            self.quorum_update(len(&voters) - wanted, voters, None, adjust)?;
            self.sync_update(wanted, self.sync.union(&add))?;
        }
        Ok(())
    }

    /// `synchronous_node_count` changed: up, the list first; down, the
    /// quorum first.
    fn replication_factor(&mut self) -> Result<(), QuorumError> {
        let increase = self.sync_wanted.min(len(&self.sync)) - self.numsync;
        if increase > 0 {
            self.sync_update(self.numsync + increase, self.sync.clone())?;
            let q = len(&self.voters) - self.numsync;
            self.quorum_update(q, self.voters.clone(), None, true)?;
        } else if increase < 0 {
            if self.quorum - increase < len(&self.voters) {
                let q = len(&self.voters) - self.numsync - increase;
                let adjust = self.sync_wanted > self.numsync_confirmed;
                self.quorum_update(q, self.voters.clone(), None, adjust)?;
            }
            self.sync_update(self.numsync + increase, self.sync.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "quorum_tests.rs"]
mod tests;
