//! Permanent logical slots on replicas (docs/ha.md §13.1), as pure
//! functions: which of the leader's slots to copy, when a failed advance
//! calls for a fresh copy, and when a copied slot is safe to use after a
//! failover.
//!
//! PostgreSQL 15 cannot create a logical slot on a standby, so a replica
//! that may become primary gets the leader's slot as Patroni does: its
//! state file (`pg_replslot/<name>/state`, read on the leader with
//! `pg_read_binary_file`) is written into the replica's `pg_replslot`
//! while PostgreSQL is stopped, and PostgreSQL is started again. From then
//! on the replica advances the slot to the `confirmed_flush_lsn` the
//! leader publishes ([`super::slots::SlotRequest::plan`]).

use std::collections::BTreeMap;

use crate::config::{SlotKind, SlotSpec};

/// One of the leader's slots as read for a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimarySlot {
    pub name: String,
    pub kind: SlotKind,
    pub database: Option<String>,
    pub plugin: Option<String>,
    /// The oldest catalog rows the slot still needs, on the leader.
    pub catalog_xmin: Option<u32>,
    /// Where decoding from the slot starts: a copy needs the WAL from here.
    pub restart_lsn: Option<u64>,
    pub confirmed_flush_lsn: Option<u64>,
    /// The slot's state file, as PostgreSQL wrote it.
    pub state: Vec<u8>,
}

/// What to do with the slots read from the leader.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySelection {
    /// To write into this replica's `pg_replslot`.
    pub copy: Vec<PrimarySlot>,
    /// Expected here but the leader's slot of that name is of another kind,
    /// database or plugin: not copied (Patroni logs the mismatch too).
    pub mismatched: Vec<String>,
}

/// Of the slots read from the leader, those this replica expects as
/// logical slots of the same database and plugin (a slot the leader has
/// under another configuration would decode the wrong thing). A slot
/// without a state file is skipped.
pub fn select_copies(expected: &[SlotSpec], from_leader: Vec<PrimarySlot>) -> CopySelection {
    let mut out = CopySelection::default();
    for slot in from_leader {
        let Some(want) = expected.iter().find(|w| w.name == slot.name) else {
            continue;
        };
        let same = want.kind == SlotKind::Logical
            && slot.kind == SlotKind::Logical
            && want.database == slot.database
            && want.plugin == slot.plugin;
        if !same {
            out.mismatched.push(slot.name);
        } else if !slot.state.is_empty() {
            out.copy.push(slot);
        }
    }
    out
}

/// Of the slots selected for a copy, those worth a restart. A slot this
/// replica lacks (`missing`) always is. One copied before whose advance
/// failed is only if the leader's `restart_lsn` moved since that copy
/// (`last_copied`): the same copy would fail the same way, and every
/// attempt restarts PostgreSQL (Patroni copies again regardless; with a
/// consumer that confirms but whose slot's `restart_lsn` waits for the
/// next running-transactions record, that restarted the replica every
/// cycle).
pub fn worth_copying(
    selected: Vec<PrimarySlot>,
    missing: &[String],
    last_copied: &BTreeMap<String, Option<u64>>,
) -> Vec<PrimarySlot> {
    selected
        .into_iter()
        .filter(|s| {
            missing.contains(&s.name)
                || last_copied
                    .get(&s.name)
                    .is_none_or(|last| *last != s.restart_lsn)
        })
        .collect()
}

/// Where WAL segment file `name` (`TTTTTTTTXXXXXXXXYYYYYYYY`, hex:
/// timeline, then the segment number as high and low parts) starts, for
/// segments of `seg_size` bytes. None for any other file name.
pub fn segment_start(name: &str, seg_size: u64) -> Option<u64> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) || seg_size == 0 {
        return None;
    }
    let hi = u64::from_str_radix(&name[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&name[16..24], 16).ok()?;
    let per_xlogid = 0x1_0000_0000 / seg_size;
    (hi * per_xlogid + lo).checked_mul(seg_size)
}

/// The logical slots of `names` this replica has but cannot decode from:
/// their `restart_lsn` is before `oldest_wal`, the start of the oldest WAL
/// segment in its `pg_wal`. A copy carries the leader's `restart_lsn`, and
/// a replica has WAL only from its clone on; such a copy fails only once
/// it is advanced, or after a failover when its consumer comes back. Found
/// here, it is copied again (when the leader's slot moved, see
/// [`worth_copying`]). Patroni finds it only through a failed advance.
pub fn undecodable(
    names: &[String],
    existing: &[super::slots::ExistingSlot],
    oldest_wal: Option<u64>,
) -> Vec<String> {
    let Some(oldest) = oldest_wal else {
        return Vec::new();
    };
    existing
        .iter()
        .filter(|s| s.kind == SlotKind::Logical && names.contains(&s.name))
        .filter(|s| s.restart_lsn.is_some_and(|r| r < oldest))
        .map(|s| s.name.clone())
        .collect()
}

/// Whether a failed `pg_replication_slot_advance` of a logical slot on a
/// replica calls for a fresh copy from the leader (Patroni's rule): the
/// WAL the slot starts from is gone here (`58P01`, undefined file) or the
/// slot cannot be used (`55000`, object not in prerequisite state: it was
/// invalidated). Other errors are retried as they are.
pub fn recopy_after_advance_error(sqlstate: Option<&str>) -> bool {
    matches!(sqlstate, Some("58P01" | "55000"))
}

/// Copied logical slots not yet known to be safe after a failover
/// (Patroni's `_logical_slots_processing_queue`). A copy carries the
/// leader's `catalog_xmin`; the catalog rows it needs are protected only
/// once this replica's own physical slot on the leader holds them too
/// (hot standby feedback carries the copy's `catalog_xmin` up). Until then
/// the leader may have vacuumed them, and decoding from the copy after a
/// promotion could fail or be wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogicalReadiness {
    /// Slot name → the leader's `catalog_xmin` of it, once read after the
    /// physical slot had one.
    pending: BTreeMap<String, Option<u32>>,
}

/// What the leader said in one readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderCatalogXmin {
    /// This replica's physical slot is not on the leader.
    NoPhysicalSlot,
    /// It is, with this `catalog_xmin` (none: no feedback came through it
    /// yet, or `hot_standby_feedback` is off), and the leader's logical
    /// slots asked for have these.
    Known {
        physical: Option<u32>,
        logical: BTreeMap<String, u32>,
    },
}

impl LogicalReadiness {
    /// Slots were just copied: each is pending from scratch.
    pub fn copied<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        for n in names {
            self.pending.insert(n.to_owned(), None);
        }
    }

    /// The slots whose leader `catalog_xmin` is still to be read.
    pub fn to_ask(&self) -> Vec<String> {
        self.pending
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn pending(&self) -> Vec<String> {
        self.pending.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// This node is the primary now: nothing is pending any more.
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Fold in one check: `leader` is what the leader said, `standby` the
    /// `catalog_xmin` of each logical slot this replica has. Returns the
    /// slots that became safe (Patroni's `_ready_logical_slots`): a slot
    /// is safe once the physical slot's `catalog_xmin` is at or past the
    /// leader's logical one (the leader keeps what the copy needs) and not
    /// past the copy's own (the copy still needs nothing older than what is
    /// kept). A pending slot that no longer exists here leaves the list.
    /// Without a physical `catalog_xmin` nothing changes; `false` then
    /// says the check could not make progress (worth a warning).
    pub fn observe(
        &mut self,
        leader: &LeaderCatalogXmin,
        standby: &BTreeMap<String, Option<u32>>,
    ) -> (Vec<String>, bool) {
        let physical = match leader {
            LeaderCatalogXmin::NoPhysicalSlot => return (Vec::new(), false),
            LeaderCatalogXmin::Known {
                physical: Some(p),
                logical,
            } => {
                for (name, xmin) in logical {
                    if let Some(v) = self.pending.get_mut(name)
                        && v.is_none()
                    {
                        *v = Some(*xmin);
                    }
                }
                *p
            }
            LeaderCatalogXmin::Known { physical: None, .. } => {
                self.pending.retain(|n, _| standby.contains_key(n));
                return (Vec::new(), false);
            }
        };
        let mut ready = Vec::new();
        self.pending.retain(|name, on_leader| {
            let Some(here) = standby.get(name) else {
                return false;
            };
            let safe = matches!(
                (*on_leader, *here),
                (Some(l), Some(s)) if l <= physical && physical <= s
            );
            if safe {
                ready.push(name.clone());
            }
            !safe
        });
        (ready, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, db: &str, plugin: &str) -> SlotSpec {
        SlotSpec {
            name: name.into(),
            kind: SlotKind::Logical,
            database: Some(db.into()),
            plugin: Some(plugin.into()),
        }
    }

    fn on_leader(name: &str, db: &str, plugin: &str) -> PrimarySlot {
        PrimarySlot {
            name: name.into(),
            kind: SlotKind::Logical,
            database: Some(db.into()),
            plugin: Some(plugin.into()),
            catalog_xmin: Some(700),
            restart_lsn: Some(90),
            confirmed_flush_lsn: Some(100),
            state: vec![1, 2, 3],
        }
    }

    #[test]
    fn only_expected_slots_of_the_same_database_and_plugin_are_copied() {
        let expected = [
            spec("cdc", "app", "pgoutput"),
            spec("other_db", "app", "pgoutput"),
            SlotSpec::physical("phys"),
        ];
        let empty = PrimarySlot {
            state: Vec::new(),
            ..on_leader("cdc", "app", "pgoutput")
        };
        let sel = select_copies(
            &expected,
            vec![
                on_leader("cdc", "app", "pgoutput"),
                on_leader("other_db", "postgres", "pgoutput"),
                on_leader("phys", "app", "pgoutput"),
                on_leader("unexpected", "app", "pgoutput"),
            ],
        );
        assert_eq!(sel.copy, [on_leader("cdc", "app", "pgoutput")]);
        assert_eq!(sel.mismatched, ["other_db", "phys"]);
        assert!(select_copies(&expected, vec![empty]).copy.is_empty());
    }

    #[test]
    fn a_failed_copy_is_copied_again_only_once_the_leader_moved() {
        let slot = on_leader("cdc", "app", "pgoutput");
        let last: BTreeMap<String, Option<u64>> = [("cdc".to_string(), Some(90))].into();
        // Missing here: copied whatever happened before.
        assert_eq!(
            worth_copying(vec![slot.clone()], &["cdc".into()], &last),
            std::slice::from_ref(&slot)
        );
        // Its advance failed and the leader's restart_lsn is where the
        // last copy had it: the same copy would fail again.
        assert!(worth_copying(vec![slot.clone()], &[], &last).is_empty());
        let moved = PrimarySlot {
            restart_lsn: Some(95),
            ..slot.clone()
        };
        assert_eq!(worth_copying(vec![moved.clone()], &[], &last), [moved]);
        // Never copied by this daemon: copied.
        assert_eq!(
            worth_copying(vec![slot.clone()], &[], &BTreeMap::new()),
            [slot]
        );
    }

    #[test]
    fn wal_segment_names_give_their_start() {
        const MB16: u64 = 16 << 20;
        assert_eq!(segment_start("000000010000000000000001", MB16), Some(MB16));
        assert_eq!(
            segment_start("00000002000000010000000A", MB16),
            Some((1 << 32) + 10 * MB16)
        );
        assert_eq!(segment_start("00000001.history", MB16), None);
        assert_eq!(
            segment_start("000000010000000000000001.partial", MB16),
            None
        );
        assert_eq!(segment_start("archive_status", MB16), None);
    }

    #[test]
    fn a_copy_whose_wal_is_not_here_is_undecodable() {
        use super::super::slots::ExistingSlot;
        let slot = |name: &str, kind: SlotKind, restart: Option<u64>| ExistingSlot {
            name: name.into(),
            kind,
            database: None,
            plugin: None,
            active: false,
            restart_lsn: restart,
            confirmed_flush_lsn: None,
            has_xmin: false,
            lost: false,
        };
        let existing = [
            slot("old", SlotKind::Logical, Some(10)),
            slot("fine", SlotKind::Logical, Some(100)),
            slot("phys", SlotKind::Physical, Some(10)),
            slot("ignored", SlotKind::Logical, Some(10)),
        ];
        let names: Vec<String> = ["old", "fine", "phys"].map(String::from).into();
        assert_eq!(undecodable(&names, &existing, Some(100)), ["old"]);
        assert!(undecodable(&names, &existing, None).is_empty());
    }

    #[test]
    fn a_missing_wal_file_or_an_invalidated_slot_calls_for_a_new_copy() {
        assert!(recopy_after_advance_error(Some("58P01")));
        assert!(recopy_after_advance_error(Some("55000")));
        assert!(!recopy_after_advance_error(Some("57014")));
        assert!(!recopy_after_advance_error(None));
    }

    #[test]
    fn a_copied_slot_is_safe_once_the_physical_catalog_xmin_covers_it() {
        let mut r = LogicalReadiness::default();
        r.copied(["cdc"]);
        assert_eq!(r.to_ask(), ["cdc"]);
        let here: BTreeMap<String, Option<u32>> = [("cdc".to_string(), Some(700))].into();
        // No feedback reached the leader yet: nothing learned.
        let none = LeaderCatalogXmin::Known {
            physical: None,
            logical: [("cdc".to_string(), 700)].into(),
        };
        assert_eq!(r.observe(&none, &here), (vec![], false));
        assert_eq!(r.to_ask(), ["cdc"]);
        assert_eq!(
            r.observe(&LeaderCatalogXmin::NoPhysicalSlot, &here),
            (vec![], false)
        );
        // The physical slot's catalog_xmin is older than the leader's
        // logical one: the leader may have vacuumed rows the copy needs.
        let behind = LeaderCatalogXmin::Known {
            physical: Some(650),
            logical: [("cdc".to_string(), 700)].into(),
        };
        assert_eq!(r.observe(&behind, &here), (vec![], true));
        assert!(r.to_ask().is_empty(), "the leader's value is remembered");
        let caught_up = LeaderCatalogXmin::Known {
            physical: Some(700),
            logical: BTreeMap::new(),
        };
        assert_eq!(
            r.observe(&caught_up, &here),
            (vec!["cdc".to_string()], true)
        );
        assert!(r.is_empty());
    }

    #[test]
    fn a_pending_slot_that_is_gone_here_leaves_the_list() {
        let mut r = LogicalReadiness::default();
        r.copied(["cdc", "gone"]);
        let here: BTreeMap<String, Option<u32>> = [("cdc".to_string(), Some(10))].into();
        let k = LeaderCatalogXmin::Known {
            physical: None,
            logical: BTreeMap::new(),
        };
        r.observe(&k, &here);
        assert_eq!(r.pending(), ["cdc"]);
        // The copy's own catalog_xmin is older than the physical one: not
        // safe (Patroni's `physical <= standby`).
        let k = LeaderCatalogXmin::Known {
            physical: Some(20),
            logical: [("cdc".to_string(), 5)].into(),
        };
        assert_eq!(r.observe(&k, &here), (vec![], true));
        r.clear();
        assert!(r.is_empty());
    }
}
