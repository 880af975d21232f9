//! Replication slot management (docs/ha.md §13) as pure functions: which slots
//! should exist on this node, and what to create and drop given the slots
//! PostgreSQL has.
//!
//! * The leader keeps one physical slot per other member, except members
//!   tagged `nostream` and members that cascade from another running member
//!   (`replicatefrom`): their upstream keeps their slot instead. Permanent
//!   slots (`slots`) are created on the leader only.
//! * A replica keeps slots for the members that cascade from it and, if it
//!   may become primary, the slots it would need as one: the permanent
//!   slots and one per other member (Patroni 4.1 rules, see
//!   [`SlotRequest::new`]). It advances those nobody streams from to the
//!   positions the primary publishes in `status.slots`, so that after a
//!   failover they hold the WAL their consumers still need.
//! * Any other slot is dropped unless `ignore_slots` matches it (a replica
//!   leaves logical slots alone: it cannot create them, see
//!   docs/operations.md, "Replication slots").
//! * The leader keeps the slot of a member whose key vanished for
//!   `member_slots_ttl` (`status.retain_slots`, docs/dcs.md, "status"), so
//!   a replica back from a reboot or a network cut finds its WAL still there.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::{SlotKind, SlotMatcher, SlotSpec, SlotsConfig, Tags};
use crate::dcs::{Cluster, Member};

/// When the leader last saw each member slot's owner, for
/// `member_slots_ttl`. It lives in the leader's memory; the names travel in
/// `status.retain_slots`, so a new leader keeps them too (counting their
/// age from when it first read them, as Patroni does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetainedSlots {
    last_seen: BTreeMap<String, Instant>,
}

impl RetainedSlots {
    /// Fold one DCS read on the leader `me` into the record and return the
    /// slot names to publish as `retain_slots`: every streaming member's
    /// slot, mine, and those of members gone for at most `ttl`. A zero
    /// `ttl` turns retention off.
    pub fn observe(
        &mut self,
        cluster: &Cluster,
        me: &str,
        now: Instant,
        ttl: Duration,
    ) -> Vec<String> {
        if ttl.is_zero() {
            self.last_seen.clear();
            return Vec::new();
        }
        for name in &cluster.status.retain_slots {
            self.last_seen.entry(name.clone()).or_insert(now);
        }
        let present = cluster
            .members
            .iter()
            .filter(|m| !m.data.tags.nostream)
            .map(|m| m.name.as_str())
            .chain(std::iter::once(me));
        for name in present {
            self.last_seen.insert(slot_name(name), now);
        }
        self.last_seen
            .retain(|_, seen| now.saturating_duration_since(*seen) <= ttl);
        self.last_seen.keys().cloned().collect()
    }
}

/// A slot PostgreSQL reports in `pg_replication_slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingSlot {
    pub name: String,
    pub kind: SlotKind,
    pub database: Option<String>,
    pub plugin: Option<String>,
    /// A walsender (or logical decoding session) uses it now.
    pub active: bool,
    /// Where it holds WAL from; none for a slot created without reserving.
    pub restart_lsn: Option<u64>,
    /// A logical slot: how far its consumer confirmed.
    pub confirmed_flush_lsn: Option<u64>,
    /// Its `xmin` is set: hot standby feedback came through it.
    pub has_xmin: bool,
    /// `wal_status = 'lost'`: the WAL it reserved is gone.
    pub lost: bool,
}

/// What to change. Drops come first: a slot of the wrong kind under an
/// expected name is dropped and then created anew.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotPlan {
    pub create: Vec<SlotSpec>,
    pub drop: Vec<ExistingSlot>,
    /// `pg_replication_slot_advance(name, lsn)` on a replica, after the
    /// creations (a logical slot's in its own database).
    pub advance: Vec<(String, u64)>,
    /// Logical slots a replica lacks and the primary publishes a position
    /// for: to be copied from the primary (Patroni copies the slot's state
    /// file, then restarts the replica; not done yet, docs/operations.md).
    pub copy: Vec<String>,
}

/// The member `name` streams from instead of the leader: its
/// `replicatefrom` member, if that one is in the DCS, running, not `name`
/// itself and not cascading from `name` (a loop would leave both without
/// WAL).
pub fn cascade_source<'a>(
    cluster: &'a Cluster,
    name: &str,
    replicatefrom: Option<&str>,
) -> Option<&'a Member> {
    let target = replicatefrom?;
    if target == name {
        return None;
    }
    cluster.member(target).filter(|up| {
        up.data.state == "running" && up.data.tags.replicatefrom.as_deref() != Some(name)
    })
}

/// Members that stream from node `me` and so need a slot on it. On the
/// leader: everyone else except `nostream` members and those cascading from
/// another member; on a replica: the members cascading from it.
pub fn member_slot_owners<'a>(cluster: &'a Cluster, me: &str, i_lead: bool) -> Vec<&'a Member> {
    cluster
        .members
        .iter()
        .filter(|m| m.name != me && !m.data.tags.nostream)
        .filter(
            |m| match cascade_source(cluster, &m.name, m.data.tags.replicatefrom.as_deref()) {
                Some(up) => up.name == me,
                None => i_lead,
            },
        )
        .filter(|m| i_lead || cluster.leader_name() != Some(m.name.as_str()))
        .collect()
}

/// The slots node `me` should have: member slots, plus permanent slots on
/// the leader (one named after me is skipped: nobody streams from it here).
pub fn expected_slots(
    cluster: &Cluster,
    me: &str,
    i_lead: bool,
    permanent: &[SlotSpec],
) -> Vec<SlotSpec> {
    let mut out: Vec<SlotSpec> = member_slot_owners(cluster, me, i_lead)
        .into_iter()
        .map(|m| SlotSpec::physical(slot_name(&m.name)))
        .collect();
    if i_lead {
        let mine = slot_name(me);
        for p in permanent {
            if p.name != mine && !out.iter().any(|s| s.name == p.name) {
                out.push(p.clone());
            }
        }
    }
    out
}

fn matches(m: &SlotMatcher, s: &ExistingSlot) -> bool {
    m.name.as_ref().is_none_or(|n| *n == s.name)
        && m.kind.is_none_or(|k| k == s.kind)
        && m.database
            .as_ref()
            .is_none_or(|d| Some(d) == s.database.as_ref())
        && m.plugin
            .as_ref()
            .is_none_or(|p| Some(p) == s.plugin.as_ref())
}

fn same_slot(want: &SlotSpec, have: &ExistingSlot) -> bool {
    want.kind == have.kind
        && (want.kind == SlotKind::Physical
            || (want.database == have.database && want.plugin == have.plugin))
}

/// Compare the expected slots with the existing ones. `protected` slots are
/// never dropped (`ignore_slots`). A replica leaves logical slots alone and
/// creates none: PostgreSQL before 16 cannot create one on a standby.
pub fn plan(
    expected: &[SlotSpec],
    protected: &[SlotMatcher],
    existing: &[ExistingSlot],
    i_lead: bool,
) -> SlotPlan {
    let mut out = SlotPlan::default();
    for have in existing {
        if protected.iter().any(|m| matches(m, have)) {
            continue;
        }
        // A lost slot can serve nobody: dropped and created anew (Patroni
        // does the same for an expected slot).
        let keep = match expected.iter().find(|w| w.name == have.name) {
            Some(want) => same_slot(want, have) && !have.lost,
            None => !i_lead && have.kind == SlotKind::Logical,
        };
        if !keep {
            out.drop.push(have.clone());
        }
    }
    for want in expected
        .iter()
        .filter(|w| i_lead || w.kind == SlotKind::Physical)
    {
        let present = existing
            .iter()
            .any(|h| h.name == want.name && same_slot(want, h) && !h.lost);
        if !present {
            out.create.push(want.clone());
        }
    }
    out
}

/// What a slot sync on node `me` needs, computed from one DCS read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRequest {
    pub me: String,
    pub i_lead: bool,
    pub expected: Vec<SlotSpec>,
    pub protected: Vec<SlotMatcher>,
    /// On a replica: the position each slot nobody streams from here should
    /// be advanced to (what the primary publishes in `status.slots`; 0 when
    /// it publishes none). Empty on the leader: its walsenders move its
    /// slots.
    pub targets: BTreeMap<String, u64>,
    /// On the leader: its current WAL position, published under its own
    /// slot name (the others keep WAL for it after a switchover).
    pub my_lsn: Option<u64>,
    /// With `member_slots_ttl: 0` only the permanent slots are published
    /// (Patroni's `maybe_filter_permanent_slots`): these names. None:
    /// every slot this node manages.
    pub publish_only: Option<Vec<String>>,
    /// On a replica: the leader, where the logical slots it lacks are
    /// copied from ([`crate::ha::logical_slots`]).
    pub leader: Option<crate::ha::Upstream>,
    /// PostgreSQL must run with `hot_standby_feedback = on`
    /// ([`enforce_hot_standby_feedback`]).
    pub hot_standby_feedback: bool,
    /// On a replica: [`slot_on_primary`].
    pub slot_on_primary: Option<String>,
}

impl SlotRequest {
    /// `retain`: on the leader, the `retain_slots` names from
    /// [`RetainedSlots::observe`]; a name whose member is gone keeps its
    /// physical slot. `tags`: this node's own tags (a `nofailover` replica
    /// keeps only the slots of the members cascading from it).
    pub fn new(
        cluster: &Cluster,
        me: &str,
        tags: &Tags,
        i_lead: bool,
        cfg: &SlotsConfig,
        retain: &[String],
    ) -> SlotRequest {
        let hot_standby_feedback = enforce_hot_standby_feedback(cluster, me, tags, cfg);
        if !i_lead {
            let (expected, targets) = replica_slots(cluster, me, tags, cfg);
            return SlotRequest {
                me: me.to_owned(),
                i_lead,
                expected,
                protected: cfg.ignore.clone(),
                targets,
                my_lsn: None,
                publish_only: None,
                leader: cluster
                    .leader_name()
                    .filter(|l| *l != me)
                    .and_then(|l| crate::ha::upstream_of(cluster, l)),
                hot_standby_feedback,
                slot_on_primary: slot_on_primary(cluster, me, tags),
            };
        }
        let mut expected = expected_slots(cluster, me, i_lead, &cfg.permanent);
        let present: Vec<String> = cluster.members.iter().map(|m| slot_name(&m.name)).collect();
        let mine = slot_name(me);
        for name in retain {
            if *name != mine && !present.contains(name) && !expected.iter().any(|s| s.name == *name)
            {
                expected.push(SlotSpec::physical(name.clone()));
            }
        }
        SlotRequest {
            me: me.to_owned(),
            i_lead,
            expected,
            protected: cfg.ignore.clone(),
            targets: BTreeMap::new(),
            my_lsn: None,
            publish_only: (cfg.member_slots_ttl == 0).then(|| {
                cfg.permanent
                    .iter()
                    .filter(|p| p.kind == SlotKind::Physical || !present.contains(&p.name))
                    .map(|p| p.name.clone())
                    .collect()
            }),
            leader: None,
            hot_standby_feedback,
            slot_on_primary: None,
        }
    }

    /// `status.slots` (docs/dcs.md, "status"), in Patroni's form: each slot
    /// this node manages (an expected one, of the expected kind) at its
    /// position, `restart_lsn` for a physical slot and
    /// `confirmed_flush_lsn` for a logical one, plus my own slot name at
    /// [`SlotRequest::my_lsn`]. Slots matched by `ignore_slots` or left
    /// over are not published.
    pub fn published(&self, existing: &[ExistingSlot]) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = existing
            .iter()
            .filter(|have| {
                self.expected
                    .iter()
                    .any(|w| w.name == have.name && same_slot(w, have))
            })
            .filter_map(|have| {
                let lsn = match have.kind {
                    SlotKind::Physical => have.restart_lsn,
                    SlotKind::Logical => have.confirmed_flush_lsn,
                }?;
                Some((have.name.clone(), lsn))
            })
            .collect();
        if let Some(lsn) = self.my_lsn {
            out.insert(slot_name(&self.me), lsn);
        }
        if let Some(only) = &self.publish_only {
            out.retain(|name, _| only.contains(name));
        }
        out
    }

    /// `replay_lsn`: how far this replica has replayed; no slot is advanced
    /// beyond it (PostgreSQL refuses to, and WAL not replayed yet is not
    /// here to keep).
    pub fn plan(&self, existing: &[ExistingSlot], replay_lsn: Option<u64>) -> SlotPlan {
        let mut out = plan(&self.expected, &self.protected, existing, self.i_lead);
        // A slot about to be dropped (wrong kind, database or plugin) is
        // not worth moving.
        let kept: Vec<ExistingSlot> = existing
            .iter()
            .filter(|s| !out.drop.contains(s))
            .cloned()
            .collect();
        // An idle physical slot with an xmin holds back this node's horizon
        // and nothing will ever move that xmin: dropped and created anew
        // (Patroni's `clean_inactive_physical_slots`).
        for have in &kept {
            if have.kind == SlotKind::Physical
                && have.has_xmin
                && self.targets.contains_key(&have.name)
            {
                out.drop.push(have.clone());
                out.create.push(SlotSpec::physical(have.name.clone()));
            }
        }
        let kept: Vec<ExistingSlot> = kept.into_iter().filter(|s| !out.drop.contains(s)).collect();
        out.advance = advances(&self.targets, &kept, replay_lsn);
        out.copy = self
            .expected
            .iter()
            .filter(|w| {
                w.kind == SlotKind::Logical && self.targets.get(&w.name).is_some_and(|l| *l > 0)
            })
            .filter(|w| !kept.iter().any(|h| h.name == w.name))
            .map(|w| w.name.clone())
            .collect();
        out
    }
}

/// Whether node `me` (with `tags`) gets its WAL by streaming, directly or
/// through a chain of `replicatefrom` members, from the primary (Patroni's
/// `get_slot_name_on_primary` is not None): not if it or a member on the
/// chain is `nostream`, nor if the chain loops. Only such a node may hold
/// logical slots: without feedback up the chain the primary would remove
/// the catalog rows they need.
pub fn streams_from_primary(cluster: &Cluster, me: &str, tags: &Tags) -> bool {
    chain_head(cluster, me, tags, false).is_some()
}

/// The physical slot on the primary this node's WAL comes through: its
/// own, or that of the member at the head of its `replicatefrom` chain
/// (Patroni's `get_slot_name_on_primary`, except that the chain ends at a
/// member cascading from the leader, whose own slot it is: Patroni walks on
/// to the leader's name). None if it does not stream from the primary. Its
/// `catalog_xmin` on the primary tells whether this node's logical slots
/// are protected there ([`crate::ha::logical_slots::LogicalReadiness`]).
pub fn slot_on_primary(cluster: &Cluster, me: &str, tags: &Tags) -> Option<String> {
    chain_head(cluster, me, tags, true).map(slot_name)
}

/// The member at the head of `me`'s `replicatefrom` chain, none if the
/// chain meets a `nostream` member or loops. `stop_at_leader`: a member
/// cascading from the leader is a head.
fn chain_head<'a>(
    cluster: &'a Cluster,
    me: &'a str,
    tags: &'a Tags,
    stop_at_leader: bool,
) -> Option<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    let mut name = me;
    let mut tags = tags;
    loop {
        seen.push(name);
        if tags.nostream {
            return None;
        }
        let up = tags
            .replicatefrom
            .as_deref()
            .filter(|r| *r != name)
            .and_then(|r| cluster.member(r))
            .filter(|up| !stop_at_leader || cluster.leader_name() != Some(up.name.as_str()));
        let Some(up) = up else {
            return Some(name);
        };
        if seen.contains(&up.name.as_str()) {
            return None;
        }
        name = &up.name;
        tags = &up.data.tags;
    }
}

/// Whether node `me` must run with `hot_standby_feedback = on` (Patroni's
/// `should_enforce_hot_standby_feedback`): it would hold permanent logical
/// slots as a replica, or it streams from the primary and a member
/// cascading from it (not the leader) must. Without the feedback the
/// primary would vacuum away the catalog rows a copied logical slot still
/// needs (its `catalog_xmin` reaches the primary only through that
/// feedback), and the slot would be useless after a failover. The leader
/// computes it too: on it the setting is harmless, and it is already in
/// place when it becomes a replica.
pub fn enforce_hot_standby_feedback(
    cluster: &Cluster,
    me: &str,
    tags: &Tags,
    cfg: &SlotsConfig,
) -> bool {
    fn walk(
        cluster: &Cluster,
        me: &str,
        tags: &Tags,
        cfg: &SlotsConfig,
        seen: &mut Vec<String>,
    ) -> bool {
        if seen.iter().any(|s| s == me) {
            return false;
        }
        seen.push(me.to_owned());
        let (expected, _) = replica_slots(cluster, me, tags, cfg);
        if expected.iter().any(|s| s.kind == SlotKind::Logical) {
            return true;
        }
        if !streams_from_primary(cluster, me, tags) {
            return false;
        }
        cluster
            .members
            .iter()
            .filter(|m| m.data.tags.replicatefrom.as_deref() == Some(me))
            .filter(|m| m.name != me && cluster.leader_name() != Some(m.name.as_str()))
            .any(|m| walk(cluster, &m.name, &m.data.tags, cfg, seen))
    }
    walk(cluster, me, tags, cfg, &mut Vec::new())
}

/// The slots a replica keeps (Patroni 4.1, `_get_members_slots` and
/// `_get_permanent_slots` for a replica), and where the primary says the
/// ones nobody streams from here stand.
///
/// * Always: a physical slot per member cascading from it.
/// * If it may become primary (not `nofailover`): with `member_slots_ttl`
///   above 0, also a physical slot for every other member that could
///   follow it after a failover (all but `nostream` members, the leader
///   included) and for the names in `status.retain_slots`; and the
///   permanent slots (only the physical ones if it does not stream from
///   the primary, see [`streams_from_primary`]). A permanent slot named
///   like a member is that member's slot; a physical one named like me is
///   skipped.
fn replica_slots(
    cluster: &Cluster,
    me: &str,
    tags: &Tags,
    cfg: &SlotsConfig,
) -> (Vec<SlotSpec>, BTreeMap<String, u64>) {
    let mine = slot_name(me);
    let can_promote = tags.can_failover();
    let cascading = member_slot_owners(cluster, me, false);
    let mut expected: Vec<SlotSpec> = Vec::new();
    let mut targets = BTreeMap::new();
    let mut add = |spec: SlotSpec, active: bool, expected: &mut Vec<SlotSpec>| {
        if spec.name == mine || expected.iter().any(|s| s.name == spec.name) {
            return;
        }
        if !active {
            targets.insert(spec.name.clone(), published_position(cluster, &spec.name));
        }
        expected.push(spec);
    };
    for m in &cascading {
        add(SlotSpec::physical(slot_name(&m.name)), true, &mut expected);
    }
    if can_promote {
        if cfg.member_slots_ttl > 0 {
            for m in cluster
                .members
                .iter()
                .filter(|m| m.name != me && !m.data.tags.nostream)
            {
                add(SlotSpec::physical(slot_name(&m.name)), false, &mut expected);
            }
            for name in &cluster.status.retain_slots {
                add(SlotSpec::physical(name.clone()), false, &mut expected);
            }
        }
        let logical_ok = streams_from_primary(cluster, me, tags);
        for p in &cfg.permanent {
            if p.kind == SlotKind::Logical && !logical_ok {
                continue;
            }
            add(p.clone(), false, &mut expected);
        }
    }
    (expected, targets)
}

/// Where the primary says slot `name` stands: its `status.slots` entry, or
/// further if a member cascading from another one owns it and reports
/// more (the slot on the primary does not move then; Patroni takes the
/// maximum too). 0 when nothing is known.
fn published_position(cluster: &Cluster, name: &str) -> u64 {
    let published = cluster
        .status
        .slots
        .get(name)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let reported = cluster
        .members
        .iter()
        .filter(|m| m.data.tags.replicatefrom.is_some() && slot_name(&m.name) == name)
        .filter_map(|m| m.data.xlog_location)
        .max()
        .unwrap_or(0);
    published.max(reported)
}

/// The `pg_replication_slot_advance` calls: each inactive slot with a
/// target beyond its position (`restart_lsn` of a physical slot,
/// `confirmed_flush_lsn` of a logical one), moved to the target but never
/// beyond `replay_lsn` (unknown: nothing is advanced).
fn advances(
    targets: &BTreeMap<String, u64>,
    existing: &[ExistingSlot],
    replay_lsn: Option<u64>,
) -> Vec<(String, u64)> {
    let Some(replay) = replay_lsn else {
        return Vec::new();
    };
    existing
        .iter()
        .filter(|s| !s.active)
        .filter_map(|s| {
            let to = (*targets.get(&s.name)?).min(replay);
            let at = match s.kind {
                SlotKind::Physical => s.restart_lsn,
                SlotKind::Logical => s.confirmed_flush_lsn,
            }?;
            (to > at).then(|| (s.name.clone(), to))
        })
        .collect()
}

/// The replication slot name of a member (docs/operations.md, "Replication slots"): lower-cased,
/// `-` and `.` become `_`, any other character outside `[a-z0-9_]` becomes
/// `u` + its code point as 4 decimal digits, cut to 63 characters.
pub fn slot_name(member: &str) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for c in member.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => s.push(c),
            '-' | '.' => s.push('_'),
            other => {
                let _ = write!(s, "u{:04}", other as u32);
            }
        }
    }
    s.chars().take(63).collect()
}

/// A replica syncs its slots after the cycle's actions (docs/ha.md §13):
/// slots are used, PostgreSQL runs as a replica with no job running, and
/// another node holds the leader key. It keeps slots for the members that
/// cascade from it (`replicatefrom`) and drops those nobody uses any more.
pub fn replica_sync_due(
    cluster: &Cluster,
    me: &str,
    use_slots: bool,
    pg: &crate::ha::PgFacts,
    busy: Option<crate::ha::JobKind>,
) -> bool {
    use_slots && pg.is_replica() && busy.is_none() && cluster.leader_name().is_some_and(|l| l != me)
}

/// How long a replica may skip its slot sync while nothing it plans from
/// changed: PostgreSQL's slots can still change behind its back (dropped
/// by hand, lost), which a sync at least this often repairs.
pub const REPLICA_SLOTS_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether a replica's slot sync is worth its queries this cycle. Every
/// cycle of an idle replica asked PostgreSQL for its slots although its
/// plan (the DCS view, the published positions) and its own replay
/// position had not moved: a third of an idle replica's CPU at loop_wait 1.
/// A sync is due when the plan or the replay position changed since the
/// last one that went through, or [`REPLICA_SLOTS_RECHECK`] has passed.
#[derive(Debug, Clone, Default)]
pub struct ReplicaSlotGate {
    last: Option<(SlotRequest, Option<u64>, Instant)>,
}

impl ReplicaSlotGate {
    pub fn due(&self, req: &SlotRequest, replay_lsn: Option<u64>, now: Instant) -> bool {
        match &self.last {
            Some((r, lsn, at)) => {
                r != req
                    || *lsn != replay_lsn
                    || now.saturating_duration_since(*at) >= REPLICA_SLOTS_RECHECK
            }
            None => true,
        }
    }

    /// The sync of `req` went through at `now`.
    pub fn synced(&mut self, req: SlotRequest, replay_lsn: Option<u64>, now: Instant) {
        self.last = Some((req, replay_lsn, now));
    }

    /// Forget the last sync (it failed, or the node stopped being a
    /// replica): the next one is due at once.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::config::Tags;
    use crate::dcs::{Leader, MemberData};

    fn member(name: &str, tags: Tags) -> Member {
        Member {
            name: name.to_owned(),
            data: MemberData {
                conn_url: "postgres://127.0.0.1:5432/postgres".into(),
                state: "running".into(),
                role: "replica".into(),
                tags,
                ..Default::default()
            },
            version: crate::dcs::Version::from_int(1),
            session: Some(crate::dcs::SessionId::from_int(1)),
        }
    }

    fn cluster(members: Vec<Member>) -> Cluster {
        Cluster {
            leader: Some(Leader {
                name: "a".into(),
                version: crate::dcs::Version::from_int(1),
                session: Some(crate::dcs::SessionId::from_int(1)),
            }),
            members,
            ..Default::default()
        }
    }

    fn from(up: &str) -> Tags {
        Tags {
            replicatefrom: Some(up.into()),
            ..Tags::default()
        }
    }

    fn phys(name: &str, active: bool) -> ExistingSlot {
        ExistingSlot {
            name: name.into(),
            kind: SlotKind::Physical,
            database: None,
            plugin: None,
            active,
            restart_lsn: Some(1),
            confirmed_flush_lsn: None,
            has_xmin: false,
            lost: false,
        }
    }

    fn names(v: &[SlotSpec]) -> Vec<&str> {
        v.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn leader_keeps_a_slot_per_streaming_member_named_by_the_spec() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("Node-B", Tags::default()),
            member("c.x", Tags::default()),
        ]);
        let e = expected_slots(&c, "a", true, &[]);
        assert_eq!(names(&e), ["node_b", "c_x"]);
        assert!(e.iter().all(|s| s.kind == SlotKind::Physical));
    }

    #[test]
    fn nostream_members_get_no_slot() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member(
                "b",
                Tags {
                    nostream: true,
                    ..Tags::default()
                },
            ),
            member("c", Tags::default()),
        ]);
        assert_eq!(names(&expected_slots(&c, "a", true, &[])), ["c"]);
    }

    #[test]
    fn cascading_member_has_its_slot_on_its_upstream_not_the_leader() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
            member("c", from("b")),
        ]);
        assert_eq!(names(&expected_slots(&c, "a", true, &[])), ["b"]);
        assert_eq!(names(&expected_slots(&c, "b", false, &[])), ["c"]);
        // c keeps none: nobody cascades from it.
        assert!(expected_slots(&c, "c", false, &[]).is_empty());
    }

    #[test]
    fn cascade_to_a_missing_or_stopped_member_falls_back_to_the_leader() {
        let mut c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
            member("c", from("gone")),
        ]);
        assert_eq!(names(&expected_slots(&c, "a", true, &[])), ["b", "c"]);
        c.members[2].data.tags = from("b");
        c.members[1].data.state = "stopped".into();
        assert_eq!(names(&expected_slots(&c, "a", true, &[])), ["b", "c"]);
        assert!(expected_slots(&c, "b", false, &[]).is_empty());
    }

    #[test]
    fn cascade_loops_and_self_references_stream_from_the_leader() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("b", from("c")),
            member("c", from("b")),
            member("d", from("d")),
        ]);
        assert_eq!(names(&expected_slots(&c, "a", true, &[])), ["b", "c", "d"]);
        assert!(expected_slots(&c, "b", false, &[]).is_empty());
    }

    #[test]
    fn a_replica_never_keeps_a_slot_for_the_leader() {
        // The leader names b as replicatefrom: it is the primary, it streams
        // from nobody.
        let c = cluster(vec![member("a", from("b")), member("b", Tags::default())]);
        assert!(expected_slots(&c, "b", false, &[]).is_empty());
    }

    #[test]
    fn permanent_slots_on_the_leader_only_and_never_my_own_name() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
        ]);
        let perm = vec![
            SlotSpec::physical("keep"),
            SlotSpec::physical("a"),
            SlotSpec::physical("b"),
            SlotSpec {
                name: "cdc".into(),
                kind: SlotKind::Logical,
                database: Some("app".into()),
                plugin: Some("pgoutput".into()),
            },
        ];
        assert_eq!(
            names(&expected_slots(&c, "a", true, &perm)),
            ["b", "keep", "cdc"]
        );
        assert!(expected_slots(&c, "b", false, &perm).is_empty());
    }

    #[test]
    fn plan_creates_missing_and_drops_slots_of_vanished_members() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
        ]);
        let req = SlotRequest::new(
            &c,
            "a",
            &Tags::default(),
            true,
            &SlotsConfig::default(),
            &[],
        );
        let p = req.plan(&[phys("gone", false), phys("x", true)], None);
        assert_eq!(names(&p.create), ["b"]);
        let dropped: Vec<_> = p.drop.iter().map(|s| (s.name.as_str(), s.active)).collect();
        // Active slots are listed too; the applier skips them and retries.
        assert_eq!(dropped, [("gone", false), ("x", true)]);
        assert_eq!(req.plan(&[phys("b", true)], None), SlotPlan::default());
    }

    #[test]
    fn ignored_slots_are_never_dropped() {
        let c = cluster(vec![member("a", Tags::default())]);
        let cfg = SlotsConfig {
            ignore: vec![
                SlotMatcher {
                    name: Some("ext".into()),
                    ..Default::default()
                },
                SlotMatcher {
                    kind: Some(SlotKind::Logical),
                    plugin: Some("wal2json".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let logical = |name: &str, plugin: &str| ExistingSlot {
            name: name.into(),
            kind: SlotKind::Logical,
            database: Some("app".into()),
            plugin: Some(plugin.into()),
            active: false,
            restart_lsn: None,
            confirmed_flush_lsn: None,
            has_xmin: false,
            lost: false,
        };
        let p = SlotRequest::new(&c, "a", &Tags::default(), true, &cfg, &[]).plan(
            &[
                phys("ext", false),
                logical("w", "wal2json"),
                logical("t", "test_decoding"),
                phys("other", false),
            ],
            None,
        );
        let dropped: Vec<_> = p.drop.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(dropped, ["t", "other"]);
        assert!(p.create.is_empty());
    }

    #[test]
    fn a_slot_of_the_wrong_kind_is_replaced() {
        let c = cluster(vec![member("a", Tags::default())]);
        let cfg = SlotsConfig {
            permanent: vec![SlotSpec {
                name: "cdc".into(),
                kind: SlotKind::Logical,
                database: Some("app".into()),
                plugin: Some("pgoutput".into()),
            }],
            ..Default::default()
        };
        let p = SlotRequest::new(&c, "a", &Tags::default(), true, &cfg, &[])
            .plan(&[phys("cdc", false)], None);
        assert_eq!(p.drop.len(), 1);
        assert_eq!(names(&p.create), ["cdc"]);
    }

    fn replica_cfg(ttl: u64) -> SlotsConfig {
        let logical = |name: &str| SlotSpec {
            name: name.into(),
            kind: SlotKind::Logical,
            database: Some("app".into()),
            plugin: Some("pgoutput".into()),
        };
        SlotsConfig {
            permanent: vec![
                SlotSpec::physical("keep"),
                // Named like me: skipped; named like a member: its slot.
                SlotSpec::physical("b"),
                logical("c"),
                logical("cdc"),
            ],
            member_slots_ttl: ttl,
            ..Default::default()
        }
    }

    fn replica_cluster() -> Cluster {
        let mut c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
            member("c", from("b")),
            member("d", from("a")),
            member(
                "n",
                Tags {
                    nostream: true,
                    ..Tags::default()
                },
            ),
        ]);
        c.status.retain_slots = vec!["a".into(), "b".into(), "gone".into()];
        c
    }

    #[test]
    fn a_replica_that_may_promote_keeps_what_it_would_need_as_primary() {
        let c = replica_cluster();
        let req = SlotRequest::new(&c, "b", &Tags::default(), false, &replica_cfg(1800), &[]);
        // c cascades from me; a (the leader) and d would follow me after a
        // failover; gone is retained; n streams from nobody.
        assert_eq!(names(&req.expected), ["c", "a", "d", "gone", "keep", "cdc"]);
        let logical = ExistingSlot {
            name: "old".into(),
            kind: SlotKind::Logical,
            database: Some("app".into()),
            plugin: Some("pgoutput".into()),
            active: false,
            restart_lsn: Some(1),
            confirmed_flush_lsn: None,
            has_xmin: false,
            lost: false,
        };
        let p = req.plan(&[phys("stale", false), phys("keep", false), logical], None);
        // Logical slots are neither created nor dropped on a replica.
        assert_eq!(names(&p.create), ["c", "a", "d", "gone"]);
        let dropped: Vec<_> = p.drop.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(dropped, ["stale"]);
    }

    #[test]
    fn a_nofailover_replica_keeps_only_the_slots_of_its_cascading_members() {
        let c = replica_cluster();
        for tags in [
            Tags {
                nofailover: true,
                ..Tags::default()
            },
            Tags {
                failover_priority: Some(0),
                ..Tags::default()
            },
        ] {
            let req = SlotRequest::new(&c, "b", &tags, false, &replica_cfg(1800), &[]);
            assert_eq!(names(&req.expected), ["c"]);
            assert!(req.targets.is_empty());
            let p = req.plan(&[phys("keep", false), phys("a", false)], Some(10));
            let dropped: Vec<_> = p.drop.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(dropped, ["keep", "a"]);
        }
    }

    #[test]
    fn without_member_slots_ttl_a_replica_keeps_no_slots_of_other_members() {
        let c = replica_cluster();
        let req = SlotRequest::new(&c, "b", &Tags::default(), false, &replica_cfg(0), &[]);
        assert_eq!(names(&req.expected), ["c", "keep", "cdc"]);
    }

    #[test]
    fn logical_permanent_slots_only_where_wal_streams_from_the_primary() {
        let mut c = replica_cluster();
        let cfg = replica_cfg(0);
        let nostream = Tags {
            nostream: true,
            ..Tags::default()
        };
        let req = SlotRequest::new(&c, "b", &nostream, false, &cfg, &[]);
        assert_eq!(
            names(&req.expected),
            ["c", "keep"],
            "nostream: physical only"
        );
        // Cascading from a nostream member: no feedback reaches the primary.
        assert!(!streams_from_primary(&c, "x", &from("n")));
        assert_eq!(
            names(&SlotRequest::new(&c, "x", &from("n"), false, &cfg, &[]).expected),
            ["keep", "b"]
        );
        // Through a chain ending at the primary: fine, through the slot of
        // the chain's head there.
        assert!(streams_from_primary(&c, "x", &from("d")));
        assert_eq!(slot_on_primary(&c, "x", &from("d")).as_deref(), Some("d"));
        assert_eq!(slot_on_primary(&c, "x", &from("a")).as_deref(), Some("x"));
        assert_eq!(
            slot_on_primary(&c, "x", &Tags::default()).as_deref(),
            Some("x")
        );
        assert!(streams_from_primary(&c, "x", &from("unknown")));
        // A loop streams from nobody.
        c.members[0].data.tags = from("b");
        assert!(!streams_from_primary(&c, "b", &from("a")));
        // a leads: b streams from the primary through its own slot.
        assert_eq!(slot_on_primary(&c, "b", &from("a")).as_deref(), Some("b"));
    }

    #[test]
    fn hot_standby_feedback_is_forced_where_logical_slots_live_or_cascade() {
        let nofailover = Tags {
            nofailover: true,
            ..Tags::default()
        };
        let mut c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
            member("n", nofailover.clone()),
        ]);
        let cfg = replica_cfg(0);
        // b may become primary: it holds the logical slots.
        assert!(enforce_hot_standby_feedback(
            &c,
            "b",
            &Tags::default(),
            &cfg
        ));
        let req = SlotRequest::new(&c, "b", &Tags::default(), false, &cfg, &[]);
        assert!(req.hot_standby_feedback);
        assert_eq!(req.leader.as_ref().map(|u| u.name.as_str()), Some("a"));
        // n does not, and nobody cascades from it.
        assert!(!enforce_hot_standby_feedback(&c, "n", &nofailover, &cfg));
        // Without logical permanent slots nobody needs it.
        let physical_only = SlotsConfig {
            permanent: vec![SlotSpec::physical("keep")],
            ..Default::default()
        };
        assert!(!enforce_hot_standby_feedback(
            &c,
            "b",
            &Tags::default(),
            &physical_only
        ));
        // A member cascading from n holds logical slots: n must pass its
        // feedback up.
        c.members.push(member("x", from("n")));
        assert!(enforce_hot_standby_feedback(&c, "n", &nofailover, &cfg));
        // Unless n itself does not stream from the primary.
        let n_nostream = Tags {
            nostream: true,
            ..nofailover.clone()
        };
        c.members[2].data.tags = n_nostream.clone();
        assert!(!enforce_hot_standby_feedback(&c, "n", &n_nostream, &cfg));
        // The leader computes it as a replica would (harmless on it).
        let req = SlotRequest::new(&c, "a", &Tags::default(), true, &cfg, &[]);
        assert!(req.hot_standby_feedback);
        assert!(req.leader.is_none());
    }

    #[test]
    fn a_replica_advances_idle_physical_slots_to_the_published_position_capped_at_replay() {
        let mut c = replica_cluster();
        let pos = |v: u64| serde_json::Value::from(v);
        c.status.slots.insert("a".into(), pos(100));
        c.status.slots.insert("keep".into(), pos(300));
        c.status.slots.insert("c".into(), pos(500));
        c.status.slots.insert("d".into(), pos(50));
        // d cascades from a: the slot on the primary does not move, d's own
        // report does.
        c.members[3].data.xlog_location = Some(120);
        let req = SlotRequest::new(&c, "b", &Tags::default(), false, &replica_cfg(1800), &[]);
        // c streams from me: its walsender moves its slot; gone: unknown.
        let want: BTreeMap<String, u64> = [
            ("a".into(), 100),
            ("cdc".into(), 0),
            ("d".into(), 120),
            ("gone".into(), 0),
            ("keep".into(), 300),
        ]
        .into();
        assert_eq!(req.targets, want);
        let at = |name: &str, lsn: Option<u64>, active: bool| ExistingSlot {
            restart_lsn: lsn,
            ..phys(name, active)
        };
        let existing = [
            at("a", Some(90), false),
            at("c", Some(1), false),
            at("d", Some(120), false),
            at("keep", Some(10), false),
        ];
        let adv = req.plan(&existing, Some(200)).advance;
        assert_eq!(adv, [("a".to_string(), 100), ("keep".to_string(), 200)]);
        assert!(
            req.plan(&existing, None).advance.is_empty(),
            "replay unknown"
        );
        let busy = [at("a", Some(90), true), at("keep", None, false)];
        assert!(
            req.plan(&busy, Some(200)).advance.is_empty(),
            "active or unreserved"
        );
    }

    #[test]
    fn the_leader_publishes_the_slots_it_manages_and_its_own_name() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
        ]);
        let cdc = |name: &str| SlotSpec {
            name: name.into(),
            kind: SlotKind::Logical,
            database: Some("app".into()),
            plugin: Some("pgoutput".into()),
        };
        let mut cfg = SlotsConfig {
            permanent: vec![SlotSpec::physical("keep"), cdc("cdc"), cdc("b")],
            member_slots_ttl: 1800,
            ..Default::default()
        };
        let logical = |name: &str| ExistingSlot {
            name: name.into(),
            kind: SlotKind::Logical,
            database: Some("app".into()),
            plugin: Some("pgoutput".into()),
            active: true,
            restart_lsn: Some(3),
            confirmed_flush_lsn: Some(40),
            has_xmin: false,
            lost: false,
        };
        let at = |name: &str, lsn: u64| ExistingSlot {
            restart_lsn: Some(lsn),
            ..phys(name, false)
        };
        let existing = [
            at("b", 10),
            at("keep", 20),
            logical("cdc"),
            at("foreign", 30),
            at("cdc_wrong_kind", 5),
        ];
        let mut req = SlotRequest::new(&c, "a", &Tags::default(), true, &cfg, &[]);
        req.my_lsn = Some(99);
        let want: BTreeMap<String, u64> = [
            ("a".into(), 99),
            ("b".into(), 10),
            ("cdc".into(), 40),
            ("keep".into(), 20),
        ]
        .into();
        assert_eq!(req.published(&existing), want);
        // member_slots_ttl 0: only the permanent slots (a logical one named
        // like a member is that member's slot, not permanent).
        cfg.member_slots_ttl = 0;
        let mut req = SlotRequest::new(&c, "a", &Tags::default(), true, &cfg, &[]);
        req.my_lsn = Some(99);
        let want: BTreeMap<String, u64> = [("cdc".into(), 40), ("keep".into(), 20)].into();
        assert_eq!(req.published(&existing), want);
    }

    #[test]
    fn a_replica_advances_its_logical_slots_and_lists_the_missing_ones_to_copy() {
        let mut c = replica_cluster();
        let pos = |v: u64| serde_json::Value::from(v);
        c.status.slots.insert("cdc".into(), pos(300));
        let req = SlotRequest::new(&c, "b", &Tags::default(), false, &replica_cfg(0), &[]);
        assert_eq!(req.targets.get("cdc"), Some(&300));
        let cdc = |flushed: u64, plugin: &str| ExistingSlot {
            name: "cdc".into(),
            kind: SlotKind::Logical,
            database: Some("app".into()),
            plugin: Some(plugin.into()),
            active: false,
            restart_lsn: Some(1),
            confirmed_flush_lsn: Some(flushed),
            has_xmin: false,
            lost: false,
        };
        let p = req.plan(&[cdc(100, "pgoutput")], Some(250));
        assert_eq!(p.advance, [("cdc".to_string(), 250)]);
        assert!(p.copy.is_empty());
        assert!(
            req.plan(&[cdc(300, "pgoutput")], Some(400))
                .advance
                .is_empty()
        );
        // Missing, or about to be dropped as it differs: to be copied.
        assert_eq!(req.plan(&[], Some(250)).copy, ["cdc"]);
        let p = req.plan(&[cdc(100, "wal2json")], Some(250));
        assert_eq!(p.drop.len(), 1);
        assert!(p.advance.is_empty());
        assert_eq!(p.copy, ["cdc"]);
        // No published position: nothing to copy yet (Patroni copies only
        // slots with feedback in the DCS).
        c.status.slots.clear();
        let req = SlotRequest::new(&c, "b", &Tags::default(), false, &replica_cfg(0), &[]);
        assert!(req.plan(&[], Some(250)).copy.is_empty());
    }

    #[test]
    fn an_expected_slot_whose_wal_is_lost_is_recreated() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
        ]);
        let lost = ExistingSlot {
            lost: true,
            ..phys("b", false)
        };
        for (me, lead) in [("a", true), ("b", false)] {
            let name = if lead { "b" } else { "a" };
            let lost = ExistingSlot {
                name: name.into(),
                ..lost.clone()
            };
            let cfg = SlotsConfig {
                member_slots_ttl: 1800,
                ..Default::default()
            };
            let p = SlotRequest::new(&c, me, &Tags::default(), lead, &cfg, &[])
                .plan(std::slice::from_ref(&lost), Some(10));
            assert_eq!(p.drop, [lost]);
            assert_eq!(names(&p.create), [name]);
        }
    }

    #[test]
    fn a_replica_recreates_an_idle_slot_that_holds_an_xmin() {
        let c = replica_cluster();
        let req = SlotRequest::new(&c, "b", &Tags::default(), false, &replica_cfg(1800), &[]);
        let with_xmin = |name: &str| ExistingSlot {
            has_xmin: true,
            ..phys(name, false)
        };
        // a: idle here, its xmin would never move; c: its walsender's.
        let p = req.plan(&[with_xmin("a"), with_xmin("c")], Some(10));
        assert_eq!(p.drop, [with_xmin("a")]);
        assert!(names(&p.create).contains(&"a"));
        assert!(p.advance.is_empty());
    }

    const TTL: Duration = Duration::from_secs(1800);

    #[test]
    fn retention_lists_every_streaming_member_and_me() {
        let mut c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
        ]);
        c.members.push(member(
            "n",
            Tags {
                nostream: true,
                ..Tags::default()
            },
        ));
        let mut r = RetainedSlots::default();
        assert_eq!(r.observe(&c, "a", Instant::now(), TTL), ["a", "b"]);
    }

    #[test]
    fn a_vanished_member_keeps_its_slot_for_member_slots_ttl_then_loses_it() {
        let t0 = Instant::now();
        let mut c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
            member("c", Tags::default()),
        ]);
        let mut r = RetainedSlots::default();
        r.observe(&c, "a", t0, TTL);
        c.members.retain(|m| m.name != "c");
        let retain = r.observe(&c, "a", t0 + TTL, TTL);
        assert_eq!(retain, ["a", "b", "c"]);
        let req = SlotRequest::new(
            &c,
            "a",
            &Tags::default(),
            true,
            &SlotsConfig::default(),
            &retain,
        );
        assert_eq!(names(&req.expected), ["b", "c"]);
        // Its slot is not dropped while retained...
        assert!(req.plan(&[phys("c", false)], None).drop.is_empty());
        // ...and is once the ttl has passed.
        let retain = r.observe(&c, "a", t0 + TTL + Duration::from_secs(1), TTL);
        assert_eq!(retain, ["a", "b"]);
        let req = SlotRequest::new(
            &c,
            "a",
            &Tags::default(),
            true,
            &SlotsConfig::default(),
            &retain,
        );
        assert_eq!(req.plan(&[phys("c", false)], None).drop, [phys("c", false)]);
    }

    #[test]
    fn zero_member_slots_ttl_drops_a_vanished_member_slot_at_once() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
        ]);
        let mut r = RetainedSlots::default();
        r.observe(&c, "a", Instant::now(), TTL);
        assert!(
            r.observe(&c, "a", Instant::now(), Duration::ZERO)
                .is_empty()
        );
    }

    #[test]
    fn a_new_leader_keeps_the_names_it_reads_in_status_and_times_them_itself() {
        let t0 = Instant::now();
        let mut c = cluster(vec![member("b", Tags::default())]);
        c.status.retain_slots = vec!["a".into(), "b".into(), "gone".into()];
        let mut r = RetainedSlots::default();
        assert_eq!(r.observe(&c, "b", t0, TTL), ["a", "b", "gone"]);
        // My own name is never a slot on me.
        let req = SlotRequest::new(
            &c,
            "b",
            &Tags::default(),
            true,
            &SlotsConfig::default(),
            &r.observe(&c, "b", t0, TTL),
        );
        assert_eq!(names(&req.expected), ["a", "gone"]);
        assert_eq!(
            r.observe(&c, "b", t0 + TTL + Duration::from_secs(1), TTL),
            ["b"]
        );
    }

    #[test]
    fn a_present_cascading_member_gets_no_retained_slot_on_the_leader() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
            member("c", from("b")),
        ]);
        let mut r = RetainedSlots::default();
        let retain = r.observe(&c, "a", Instant::now(), TTL);
        let req = SlotRequest::new(
            &c,
            "a",
            &Tags::default(),
            true,
            &SlotsConfig::default(),
            &retain,
        );
        assert_eq!(names(&req.expected), ["b"]);
    }

    #[test]
    fn a_replica_ignores_retention() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
        ]);
        let req = SlotRequest::new(
            &c,
            "b",
            &Tags::default(),
            false,
            &SlotsConfig::default(),
            &["gone".into()],
        );
        assert!(req.expected.is_empty());
    }

    #[test]
    fn slot_names() {
        assert_eq!(slot_name("Node-1.a"), "node_1_a");
        assert_eq!(slot_name("pg_0"), "pg_0");
        assert_eq!(slot_name("ü x"), "u0252u0032x");
        assert_eq!(slot_name("日本"), "u26085u26412");
        assert_eq!(slot_name(&"a".repeat(70)).len(), 63);
        assert_eq!(slot_name(&"é".repeat(20)).len(), 63);
    }

    #[test]
    fn a_replica_following_another_leader_syncs_its_slots() {
        use crate::dcs::Leader;
        use crate::ha::{JobKind, PgFacts, PgRole};
        let replica = PgFacts {
            running: true,
            role: Some(PgRole::Replica),
            ..PgFacts::default()
        };
        let led_by = |l: Option<&str>| Cluster {
            leader: l.map(|l| Leader {
                name: l.into(),
                version: crate::dcs::Version::from_int(1),
                session: Some(crate::dcs::SessionId::from_int(1)),
            }),
            ..Cluster::default()
        };
        let c = led_by(Some("b"));
        assert!(replica_sync_due(&c, "a", true, &replica, None));
        assert!(
            !replica_sync_due(&c, "a", false, &replica, None),
            "use_slots off"
        );
        let busy = Some(JobKind::Rewind);
        assert!(
            !replica_sync_due(&c, "a", true, &replica, busy),
            "job running"
        );
        assert!(
            !replica_sync_due(&led_by(Some("a")), "a", true, &replica, None),
            "I lead"
        );
        assert!(
            !replica_sync_due(&led_by(None), "a", true, &replica, None),
            "no leader"
        );
        let primary = PgFacts {
            role: Some(PgRole::Primary),
            ..replica.clone()
        };
        assert!(
            !replica_sync_due(&c, "a", true, &primary, None),
            "a primary"
        );
    }

    #[test]
    fn an_idle_replica_skips_its_slot_sync_until_something_moves() {
        let c = cluster(vec![
            member("a", Tags::default()),
            member("b", Tags::default()),
        ]);
        let req = SlotRequest::new(
            &c,
            "b",
            &Tags::default(),
            false,
            &SlotsConfig::default(),
            &[],
        );
        let t = Instant::now();
        let mut g = ReplicaSlotGate::default();
        assert!(g.due(&req, Some(100), t), "the first sync");
        g.synced(req.clone(), Some(100), t);
        assert!(!g.due(&req, Some(100), t + Duration::from_secs(1)));
        assert!(
            g.due(&req, Some(200), t + Duration::from_secs(1)),
            "replay moved"
        );
        let mut other = req.clone();
        other.expected.push(SlotSpec::physical("x"));
        assert!(
            g.due(&other, Some(100), t + Duration::from_secs(1)),
            "plan changed"
        );
        assert!(
            g.due(&req, Some(100), t + REPLICA_SLOTS_RECHECK),
            "rechecked at least every {REPLICA_SLOTS_RECHECK:?}"
        );
        g.reset();
        assert!(g.due(&req, Some(100), t + Duration::from_secs(1)));
    }
}
