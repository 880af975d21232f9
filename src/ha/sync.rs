//! Synchronous replication, the rules (docs/replication-modes.md §3, §4):
//! which standbys the primary picks, when a standby counts as confirmed,
//! and in what order the DCS `sync` key and `synchronous_standby_names`
//! change. Pure: the elector gathers `pg_stat_replication` and the key,
//! and carries the [`SyncStep`]s out in order, stopping at the first that
//! fails.
//!
//! The invariant every plan keeps: a standby the `sync` key lists has every
//! commit the primary acknowledged. So a standby enters the key only once
//! PostgreSQL reports it `sync` (and it caught up with the primary as of
//! the last change of the list), and leaves the key before it leaves
//! `synchronous_standby_names`.

use std::collections::BTreeSet;

use super::sync_names::{StandbyNames, parse_standby_names, standby_names_value};
use crate::config::{SyncConfig, SyncMode};
use crate::dcs::{Cluster, Member, Version};

/// One `pg_stat_replication` row as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    /// `application_name`: the member's name.
    pub name: String,
    /// `sync_state`: `async`, `potential`, `sync` or `quorum`.
    pub sync_state: String,
    /// `flush_lsn`; `None` while the walsender has not reported one (not
    /// streaming yet), and such a row is no candidate.
    pub lsn: Option<u64>,
}

/// What the primary learns each cycle (Patroni's `_SyncState`): the
/// standbys it would pick now, best first, and those of them PostgreSQL
/// confirms as synchronous.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Candidates {
    pub active: Vec<String>,
    pub confirmed: Vec<String>,
}

/// Which standbys reached the primary's position since
/// `synchronous_standby_names` last changed (Patroni's `_ready_replicas`):
/// one is confirmed only after that, so a standby just added to the list
/// and still catching up is not yet promotable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncTracker {
    /// The value last seen, as PostgreSQL runs it.
    seen: Option<String>,
    parsed: StandbyNames,
    /// The primary's flush position when it changed.
    flush_at_change: u64,
    /// Lower-cased names of the ready standbys.
    ready: BTreeSet<String>,
}

impl SyncTracker {
    /// Take the value PostgreSQL runs with now and the primary's flush
    /// position. A changed value forgets the standbys it no longer lists
    /// and moves the mark the others must reach.
    pub fn observe(&mut self, value: &str, primary_lsn: u64) -> &StandbyNames {
        if self.seen.as_deref() != Some(value) {
            self.seen = Some(value.to_owned());
            self.parsed = parse_standby_names(value).unwrap_or_default();
            let parsed = &self.parsed;
            self.ready.retain(|n| parsed.lists(n));
            self.flush_at_change = primary_lsn;
        }
        &self.parsed
    }

    /// The value last observed, parsed.
    pub fn names(&self) -> &StandbyNames {
        &self.parsed
    }

    fn is_ready(&self, name: &str) -> bool {
        self.ready.contains(&name.to_lowercase())
    }
}

/// The primary's facts for [`primary_plan`], gathered by the elector each
/// cycle: the value PostgreSQL runs with and this cycle's [`candidates`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncFacts {
    pub names: StandbyNames,
    pub candidates: Candidates,
}

/// A streaming standby that may be picked.
#[derive(Debug, Clone)]
struct Candidate<'a> {
    name: &'a str,
    sync_state: &'a str,
    lsn: u64,
    nofailover: bool,
    priority: i64,
}

/// `nosync` as Patroni reads the tags: the tag, or `sync_priority <= 0`.
fn nosync(m: &Member) -> bool {
    m.data.tags.nosync || m.data.tags.sync_priority.is_some_and(|p| p <= 0)
}

fn priority(m: &Member) -> i64 {
    m.data.tags.sync_priority.unwrap_or(1)
}

/// Members that may be synchronous at all: running, not `nosync`, not me.
fn eligible<'a>(cluster: &'a Cluster, me: &str) -> Vec<&'a Member> {
    cluster
        .members
        .iter()
        .filter(|m| m.data.state == "running" && !nosync(m) && !m.name.eq_ignore_ascii_case(me))
        .collect()
}

fn find<'a>(members: &[&'a Member], name: &str) -> Option<&'a Member> {
    members
        .iter()
        .copied()
        .find(|m| m.name.eq_ignore_ascii_case(name))
}

/// Patroni's `_should_cascade`: `m` is meant to stream from another
/// eligible standby, and the head of that chain streams from me already.
fn should_cascade(members: &[&Member], streaming: &BTreeSet<String>, m: &Member) -> bool {
    let mut cur = m;
    // A cycle in `replicatefrom` ends after as many steps as members.
    for _ in 0..=members.len() {
        let Some(up) = cur.data.tags.replicatefrom.as_deref() else {
            return false;
        };
        let Some(next) = find(members, up) else {
            return false;
        };
        if next.data.tags.replicatefrom.is_none() {
            return streaming.contains(&next.name.to_lowercase());
        }
        cur = next;
    }
    false
}

/// Patroni's `SyncHandler.current_state`: order the streaming
/// standbys by `sync_priority`, then `sync` first, then position (those
/// tagged `nofailover` last), skip those further than
/// `maximum_lag_on_syncnode` behind the most advanced (the primary when
/// only one streams), and take the first `synchronous_node_count`.
/// Confirmed: picked, reported `sync`, and ready (listed in the `sync` key
/// already, or caught up with the position of the last list change).
/// Quorum mode: every streaming standby within the lag is picked (those
/// tagged `nofailover` only up to the count), and confirmed once it
/// reached the mark reported `quorum`.
pub fn candidates(
    cfg: &SyncConfig,
    me: &str,
    cluster: &Cluster,
    rows: &[ReplicaRow],
    primary_lsn: u64,
    tracker: &mut SyncTracker,
) -> Candidates {
    let members = eligible(cluster, me);
    let rows: Vec<(&ReplicaRow, &Member, u64)> = rows
        .iter()
        .filter_map(|r| Some((r, find(&members, &r.name)?, r.lsn?)))
        .collect();
    let streaming: BTreeSet<String> = rows.iter().map(|(r, ..)| r.name.to_lowercase()).collect();
    let mut list: Vec<Candidate> = rows
        .iter()
        .filter(|(_, m, _)| !should_cascade(&members, &streaming, m))
        .map(|(r, m, lsn)| Candidate {
            name: &r.name,
            sync_state: &r.sync_state,
            lsn: *lsn,
            nofailover: !m.data.tags.can_failover(),
            priority: priority(m),
        })
        .collect();
    // Readiness first, on the value PostgreSQL runs with. In quorum mode
    // the key cannot vouch for a standby (it lists standbys once any one
    // of them caught up): each must reach the mark itself, as `quorum`.
    let sync = cluster.sync_state();
    let quorum = cfg.mode == SyncMode::Quorum;
    for c in &list {
        let caught_up = c.lsn >= tracker.flush_at_change;
        let ready = if quorum {
            caught_up && c.sync_state == "quorum"
        } else {
            sync.matches(c.name, false) || (c.sync_state == "sync" && caught_up)
        };
        if !tracker.is_ready(c.name) && tracker.parsed.lists(c.name) && ready {
            tracker.ready.insert(c.name.to_lowercase());
        }
    }
    // Patroni sorts on (sync_priority, sync_state, lsn) descending, the
    // state as a string ("sync" > "quorum" > "potential" > "async"), then
    // stably puts nofailover last.
    list.sort_by(|a, b| (b.priority, b.sync_state, b.lsn).cmp(&(a.priority, a.sync_state, a.lsn)));
    list.sort_by_key(|c| c.nofailover);
    let max_lsn = if list.len() > 1 {
        list.iter().map(|c| c.lsn).max().unwrap_or(primary_lsn)
    } else {
        primary_lsn
    };
    let wanted = cfg.wanted() as usize;
    let mut out = Candidates::default();
    for c in list {
        let lag_ok = cfg.maximum_lag_on_syncnode <= 0
            || max_lsn.saturating_sub(c.lsn) <= cfg.maximum_lag_on_syncnode as u64;
        if !lag_ok {
            continue;
        }
        if quorum {
            // docs/replication-modes.md §5: every streaming standby takes
            // part; one tagged `nofailover` only while fewer than wanted
            // do (its vote would not count, and waiting on it costs).
            if !c.nofailover || out.active.len() < wanted {
                if tracker.is_ready(c.name) {
                    out.confirmed.push(c.name.to_owned());
                }
                out.active.push(c.name.to_owned());
            }
            continue;
        }
        out.active.push(c.name.to_owned());
        if c.sync_state == "sync" && tracker.is_ready(c.name) {
            out.confirmed.push(c.name.to_owned());
        }
        if out.active.len() >= wanted {
            break;
        }
    }
    out
}

/// One step of a plan, carried out in order; a step that fails (a lost
/// compare-and-swap, an error) ends the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStep {
    /// Write the `sync` key as `{leader: me, quorum, sync_standby:
    /// standbys}` by compare-and-swap on `version` (`None`: create it);
    /// `quorum` is 0 but in quorum mode (docs/replication-modes.md §5).
    WriteKey {
        standbys: Vec<String>,
        quorum: u32,
        version: Option<Version>,
    },
    /// Delete the `sync` key by compare-and-swap.
    DeleteKey { version: Version },
    /// Set `synchronous_standby_names` in the managed configuration and
    /// reload; `None` gives it back to the user's `postgresql.parameters`.
    SetNames { value: Option<String> },
}

/// What to change this cycle, in order, and why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncPlan {
    pub steps: Vec<SyncStep>,
    pub reason: String,
}

pub(super) fn lower_set(names: &[String]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_lowercase()).collect()
}

fn same_set(a: &[String], b: &[String]) -> bool {
    lower_set(a) == lower_set(b)
}

/// `a` asks PostgreSQL for what `b` asks.
fn same_names(a: &StandbyNames, b: &StandbyNames) -> bool {
    a.quorum == b.quorum
        && a.has_star == b.has_star
        && same_set(&a.members, &b.members)
        && (a.quorum.is_none() || a.num == b.num)
}

/// A `SetNames` step when `want` differs from what PostgreSQL runs with.
pub(super) fn set_names(want: String, now: &StandbyNames) -> Option<SyncStep> {
    let parsed = parse_standby_names(&want).unwrap_or_default();
    (!same_names(&parsed, now)).then_some(SyncStep::SetNames { value: Some(want) })
}

/// The primary's plan (Patroni's `process_sync_replication`;
/// docs/replication-modes.md §3 and §5; quorum mode in
/// [`super::quorum_plan::primary_plan`]). `names` is the value PostgreSQL runs
/// with, `cand` this cycle's [`candidates`]. At most one write of the key
/// per plan: its version changes with the write, and the next cycle reads
/// it again.
pub fn primary_plan(
    cfg: &SyncConfig,
    me: &str,
    cluster: &Cluster,
    names: &StandbyNames,
    cand: &Candidates,
) -> SyncPlan {
    let sync = cluster.sync_state();
    let version = cluster.sync_version().cloned();
    if !cfg.enabled() {
        // Off: the key goes first, then the list (given back to the user).
        // Without a key the elector gives the list back by itself.
        let mut steps = Vec::new();
        if !sync.is_empty()
            && let Some(v) = version
        {
            steps.push(SyncStep::DeleteKey { version: v });
            steps.push(SyncStep::SetNames { value: None });
        }
        return SyncPlan {
            reason: if steps.is_empty() {
                String::new()
            } else {
                "synchronous mode is off: removing the sync key, then synchronous_standby_names"
                    .into()
            },
            steps,
        };
    }
    if cfg.mode == SyncMode::Quorum {
        return super::quorum_plan::primary_plan(cfg, me, cluster, names, cand);
    }
    let mut steps = Vec::new();
    let mut reasons = Vec::new();
    let mut voters = sync.voters();
    let mut wrote = false;
    if !sync.leader_matches(me) {
        // Nothing is promised until a standby is confirmed under me.
        steps.push(SyncStep::WriteKey {
            standbys: Vec::new(),
            quorum: 0,
            version: version.clone(),
        });
        reasons.push(if sync.is_empty() {
            "enabling synchronous replication".to_owned()
        } else {
            format!(
                "the sync key names {} as leader: taking it over with no standby",
                sync.leader.as_deref().unwrap_or_default()
            )
        });
        voters.clear();
        wrote = true;
    }
    if (cand.active.len() as u32) < cfg.min_nodes() {
        // Strict: keep waiting on the standbys the key lists, or on the
        // placeholder; commits wait until a standby is back.
        let num = cfg.min_nodes().max(voters.len() as u32);
        steps.extend(set_names(
            standby_names_value(&voters, Some(num), false),
            names,
        ));
        reasons.push("synchronous_mode_strict and no standby streams: commits wait".into());
        return SyncPlan {
            steps,
            reason: reasons.join("; "),
        };
    }
    // Remove first: the key keeps only standbys still confirmed and picked.
    let confirmed = &cand.confirmed;
    let common: Vec<String> = voters
        .iter()
        .filter(|v| lower_set(confirmed).contains(&v.to_lowercase()))
        .cloned()
        .collect();
    if !same_set(&common, &voters) {
        steps.push(SyncStep::WriteKey {
            standbys: common.clone(),
            quorum: 0,
            version: version.clone(),
        });
        reasons.push(format!(
            "removing {} from the sync key before synchronous_standby_names",
            voters
                .iter()
                .filter(|v| !common.contains(v))
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        ));
        wrote = true;
    }
    if let Some(step) = set_names(standby_names_value(&cand.active, None, false), names) {
        reasons.push(format!(
            "synchronous_standby_names to [{}]",
            cand.active.join(",")
        ));
        steps.push(step);
    }
    // Add last: only what PostgreSQL confirms (confirmed is a part of the
    // picked, so it stays required under the new list).
    if !wrote && !confirmed.is_empty() && !same_set(confirmed, &common) {
        steps.push(SyncStep::WriteKey {
            standbys: confirmed.clone(),
            quorum: 0,
            version,
        });
        reasons.push(format!(
            "synchronous standby status to [{}]",
            confirmed.join(",")
        ));
    }
    SyncPlan {
        steps,
        reason: reasons.join("; "),
    }
}

/// Before promoting (Patroni's `_process_multisync_prepromote`): take the
/// key as its leader, by compare-and-swap (a failure postpones the
/// promotion). Strict mode keeps the other members it lists as standbys
/// and requires them (or the placeholder); otherwise nobody is listed and
/// commits are asynchronous until a standby is confirmed.
pub fn prepromote_plan(cfg: &SyncConfig, me: &str, cluster: &Cluster) -> SyncPlan {
    if !cfg.enabled() {
        return SyncPlan::default();
    }
    if cfg.mode == SyncMode::Quorum {
        return super::quorum_plan::prepromote_plan(cfg, me, cluster);
    }
    let sync = cluster.sync_state();
    let standbys: Vec<String> = if cfg.min_nodes() > 0 {
        sync.members()
            .into_iter()
            .filter(|m| !m.eq_ignore_ascii_case(me))
            .collect()
    } else {
        Vec::new()
    };
    let num = (cfg.min_nodes() > 0 && standbys.is_empty()).then_some(cfg.min_nodes());
    SyncPlan {
        steps: vec![
            SyncStep::WriteKey {
                standbys: standbys.clone(),
                quorum: 0,
                version: cluster.sync_version().cloned(),
            },
            SyncStep::SetNames {
                value: Some(standby_names_value(&standbys, num, false)),
            },
        ],
        reason: "taking the sync key before promoting".into(),
    }
}

/// The plan's steps as actions, for a decision.
pub fn actions(plan: SyncPlan) -> Vec<super::Action> {
    plan.steps.into_iter().map(super::Action::Sync).collect()
}

/// Synchronous mode is on and in force: the key names a leader.
pub fn active(cfg: &SyncConfig, cluster: &Cluster) -> bool {
    cfg.enabled() && !cluster.sync_state().is_empty()
}

/// May the standby `name` take over from the leader (a failover after a
/// crash, a switchover; docs/replication-modes.md §4)? With synchronous
/// mode in force, only a standby the key lists.
pub fn may_take_over(cfg: &SyncConfig, cluster: &Cluster, name: &str) -> bool {
    !active(cfg, cluster) || cluster.sync_state().matches(name, false)
}

/// The leader race with synchronous mode in force (Patroni's
/// `is_healthiest_node`): a member the key does not list (as standby or
/// as the leader that wrote it) stays out, unless a manual failover names
/// it. When no listed member can take over the cluster stays without a
/// primary rather than lose acknowledged commits.
/// In quorum mode nobody is kept out here: a member the key does not list
/// races too, and needs one vote more (docs/replication-modes.md §5).
pub fn race_gate(cluster: &Cluster, local: &super::LocalView) -> Option<super::Decision> {
    if !active(&local.sync, cluster)
        || local.sync.mode == SyncMode::Quorum
        || cluster.sync_state().matches(&local.name, true)
    {
        return None;
    }
    let named = cluster
        .failover
        .as_ref()
        .is_some_and(|f| f.value.member.as_deref() == Some(local.name.as_str()));
    (!named).then(|| {
        super::Decision::idle(format!(
            "not racing: synchronous mode is on and the sync key lists only {}",
            cluster.sync_state().members().join(",")
        ))
    })
}

/// docs/replication-modes.md §3: whether a restart of this node's
/// PostgreSQL first asks the primary to release its synchronous duty
/// (Patroni's `restart()`: `is_synchronous_mode() and not has_lock()`,
/// and `while_not_sync_standby` skips a node tagged `nosync`): a node
/// that leads or cannot be a synchronous standby has nothing to release.
pub fn restart_releases_duty(cfg: &SyncConfig, nosync_tag: bool, holds_lease: bool) -> bool {
    cfg.enabled() && !nosync_tag && !holds_lease
}
