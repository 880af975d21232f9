//! Quorum commit, the primary's steps and the vote
//! (docs/replication-modes.md §5): the [`super::quorum`] resolver's changes
//! as [`SyncStep`]s, what a node sets before promoting, and how many votes
//! a replica needs to take the leader key. Pure; Patroni's
//! `_process_quorum_replication`, `_process_quorum_prepromote` and the
//! quorum part of `_is_healthiest_node` / `is_failover_possible`.

use super::quorum::{NameSet, QuorumInput, TransitionKind, resolve};
use super::sync::{Candidates, SyncPlan, SyncStep, set_names};
use super::sync_names::{StandbyNames, standby_names_value};
use crate::config::{SyncConfig, SyncMode};
use crate::dcs::Cluster;

/// Quorum mode is asked for and in force: the key names a leader.
pub fn active(cfg: &SyncConfig, cluster: &Cluster) -> bool {
    cfg.mode == SyncMode::Quorum && !cluster.sync_state().is_empty()
}

/// `synchronous_standby_names` for quorum commit: `ANY num (names)`; no
/// name and `num` >= 1 is the placeholder (commits wait), no name and 0
/// is empty (asynchronous). `num` is at least 1 with names: PostgreSQL
/// refuses `ANY 0`.
fn any_value(names: &[String], num: u32) -> String {
    let num = if names.is_empty() { num } else { num.max(1) };
    standby_names_value(names, Some(num), true)
}

/// The primary's plan in quorum mode. Steps, in order:
///
/// 1. no key (or an empty one): write `{leader: me, quorum: 0}`;
/// 2. strict mode with fewer standbys streaming than required: keep
///    waiting on the key's voters (`ANY max(1, voters - quorum)`) or the
///    placeholder, and stop;
///    non-strict with nobody streaming nor voting: clear the list, stop;
/// 3. the resolver's changes, up to (not including) a second write of the
///    key (its version changes with the first; the next cycle goes on
///    from fresh facts, which the resolver is built for) or a restart;
/// 4. nothing to change but PostgreSQL runs `FIRST`: the same list as
///    `ANY`.
pub fn primary_plan(
    cfg: &SyncConfig,
    me: &str,
    cluster: &Cluster,
    names: &StandbyNames,
    cand: &Candidates,
) -> SyncPlan {
    let state = cluster.sync_state();
    let mut steps = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let mut key_writes = 0;
    let (leader, quorum, voters) = if state.is_empty() {
        steps.push(SyncStep::WriteKey {
            standbys: Vec::new(),
            quorum: 0,
            version: cluster.sync_version().cloned(),
        });
        key_writes += 1;
        reasons.push("enabling quorum commit".into());
        (me.to_owned(), 0, Vec::new())
    } else {
        (
            state.leader.clone().unwrap_or_default(),
            state.quorum,
            state.voters(),
        )
    };
    let done = |steps: Vec<SyncStep>, reasons: Vec<String>| SyncPlan {
        steps,
        reason: reasons.join("; "),
    };
    if leader.eq_ignore_ascii_case(me) {
        if (cand.active.len() as u32) < cfg.min_nodes() {
            let num = cfg
                .min_nodes()
                .max((voters.len() as u32).saturating_sub(quorum));
            steps.extend(set_names(any_value(&voters, num), names));
            reasons.push("synchronous_mode_strict and no standby streams: commits wait".into());
            return done(steps, reasons);
        }
        if cfg.min_nodes() == 0
            && cand.active.is_empty()
            && voters.is_empty()
            && (!names.members.is_empty() || names.num > 0)
        {
            steps.push(SyncStep::SetNames {
                value: Some(String::new()),
            });
            reasons.push("no standby streams: commits go on asynchronously".into());
            return done(steps, reasons);
        }
    }
    let input = QuorumInput {
        leader,
        quorum,
        voters: voters.iter().collect(),
        numsync: names.num,
        sync: if names.has_star {
            // `*`: a name that matches no member, as Patroni reads it.
            NameSet::from_iter([super::sync_names::STRICT_PLACEHOLDER])
        } else {
            names.members.iter().collect()
        },
        numsync_confirmed: cand.confirmed.len() as u32,
        active: cand.active.iter().collect(),
        sync_wanted: cfg.wanted(),
        leader_wanted: me.to_owned(),
    };
    let transitions = match resolve(&input) {
        Ok(t) => t,
        Err(e) => {
            reasons.push(format!("quorum state left as it is: {e}"));
            return done(steps, reasons);
        }
    };
    if transitions.is_empty() && names.quorum == Some(false) && !names.members.is_empty() {
        steps.extend(set_names(any_value(&names.members, names.num), names));
        reasons.push("synchronous_standby_names from FIRST to ANY".into());
    }
    let mut version = cluster.sync_version().cloned();
    for t in transitions {
        match t.kind {
            TransitionKind::Restart => break,
            TransitionKind::Sync => {
                let list = t.names.names();
                steps.push(SyncStep::SetNames {
                    value: Some(any_value(&list, t.num)),
                });
                reasons.push(format!(
                    "synchronous_standby_names to ANY {} ({})",
                    t.num,
                    list.join(",")
                ));
            }
            TransitionKind::Quorum => {
                if key_writes > 0 || !t.leader.eq_ignore_ascii_case(me) {
                    break;
                }
                let list = t.names.names();
                reasons.push(format!(
                    "sync key to quorum {} of ({})",
                    t.num,
                    list.join(",")
                ));
                steps.push(SyncStep::WriteKey {
                    standbys: list,
                    quorum: t.num,
                    version: version.take(),
                });
                key_writes += 1;
            }
        }
    }
    done(steps, reasons)
}

/// Before promoting in quorum mode (Patroni's `_process_quorum_prepromote`):
/// only `synchronous_standby_names`, to the key's members but me (the old
/// leader among them), requiring as many as keep the key's promise; the
/// key itself is taken over by the first cycle as primary (the resolver's
/// failover rule), which lists the old leader as a voter.
pub fn prepromote_plan(cfg: &SyncConfig, me: &str, cluster: &Cluster) -> SyncPlan {
    let state = cluster.sync_state();
    let quorum = if active(cfg, cluster) {
        state.quorum as i64
    } else {
        0
    };
    let members = state.members();
    let mut num = members.len() as i64 - quorum - 1;
    let others: Vec<String> = members
        .iter()
        .filter(|m| !m.eq_ignore_ascii_case(me))
        .cloned()
        .collect();
    if others.len() == members.len() {
        // Not among them (a manual failover, or the votes): one more.
        num += 1;
    }
    let num = u32::try_from(num.max(i64::from(cfg.min_nodes()))).unwrap_or(0);
    SyncPlan {
        steps: vec![SyncStep::SetNames {
            value: Some(any_value(&others, num)),
        }],
        reason: "synchronous_standby_names before promoting (quorum commit)".into(),
    }
}

/// The votes a replica racing for the leader key gathered (Patroni's
/// `_is_healthiest_node` in quorum mode): itself if the key lists it,
/// plus each listed member that answered with PostgreSQL up and is not
/// ahead. Enough: as many as `quorum` (counting itself), so that among
/// them is a member with every acknowledged commit; or, the key naming
/// this node as its leader, nobody ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Votes {
    pub votes: i64,
    pub needed: u32,
}

impl Votes {
    /// Start counting for `me`: 0 when the key lists it, else -1 (it needs
    /// one vote more, its own position not being covered by the key).
    pub fn start(cluster: &Cluster, me: &str) -> Votes {
        let state = cluster.sync_state();
        Votes {
            votes: if state.matches(me, true) { 0 } else { -1 },
            needed: state.quorum,
        }
    }

    pub fn enough(&self, cluster: &Cluster, me: &str, nodes_ahead: u32) -> bool {
        self.votes >= i64::from(self.needed)
            || (nodes_ahead == 0 && cluster.sync_state().leader_matches(me))
    }
}

/// May a failover happen at all (Patroni's `is_failover_possible`): in
/// quorum mode, `healthy` candidates the key lists must cover the quorum.
pub fn failover_possible(cfg: &SyncConfig, cluster: &Cluster, healthy: usize) -> bool {
    !active(cfg, cluster) || healthy as i64 > i64::from(cluster.sync_state().quorum)
}
