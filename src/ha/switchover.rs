//! Switchover and manual failover through the `failover` key (docs/ha.md
//! §6), as pure rules `decide` consults.
//!
//! A planned switchover loses nothing, even with asynchronous replication:
//! the leader checkpoints, stops fast (its walsenders hand the shutdown
//! checkpoint to the connected standbys before the postmaster exits),
//! publishes the shutdown checkpoint's LSN as `status.optime` and only then
//! deletes the leader key. A standby promotes only once it has received
//! that position, so the old primary's WAL ends exactly where the new
//! timeline forks, and it can follow the new primary without pg_rewind.

use std::time::Instant;

use super::action::{Action, Decision, DemoteMode, Upstream};
use super::iso8601;
use super::view::{LocalView, PeerStatus, PgRole};
use crate::dcs::{Cluster, Failover, Versioned};

/// The switchover facts of this node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SwitchoverView {
    /// Wall clock, seconds since the Unix epoch (for `scheduled_at`).
    pub now_unix: f64,
    /// When this node last stepped down gracefully (docs/ha.md §6.3). Within
    /// ttl of it the stopped former primary waits for the new leader and then
    /// starts as its replica without pg_rewind; cleared once PostgreSQL runs
    /// again.
    pub demoted_gracefully_at: Option<Instant>,
}

/// Where a request stands in time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Due {
    /// Not scheduled, or its time has come.
    Now,
    /// Scheduled later: at this Unix time.
    Later(f64),
    /// Late by more than 1.5 * loop_wait, or its time cannot be read.
    Dropped,
}

fn due(f: &Failover, local: &LocalView) -> Due {
    let Some(at) = f.scheduled_at.as_deref() else {
        return Due::Now;
    };
    let Ok(t) = iso8601::parse(at) else {
        return Due::Dropped;
    };
    let now = local.switchover.now_unix;
    if t > now {
        Due::Later(t)
    } else if now - t > 1.5 * local.timing.loop_wait.as_secs_f64() {
        Due::Dropped
    } else {
        Due::Now
    }
}

/// How long until a scheduled request is due, so the elector can wake then.
pub fn seconds_until_due(f: &Failover, now_unix: f64) -> Option<f64> {
    let t = iso8601::parse(f.scheduled_at.as_deref()?).ok()?;
    (t > now_unix).then_some(t - now_unix)
}

fn clear(f: &Versioned<Failover>, why: String) -> Decision {
    Decision::new(
        vec![
            Action::RenewLock,
            Action::ClearFailover {
                version: f.version.clone(),
            },
        ],
        why,
    )
}

/// A peer that could take over now: answered, runs as a replica, may be
/// promoted, and has at least `min_lsn`.
fn promotable(p: &PeerStatus, min_lsn: u64) -> bool {
    p.reply.as_ref().is_some_and(|r| {
        r.running && r.role == PgRole::Replica && r.can_promote() && r.lsn.unwrap_or(0) >= min_lsn
    })
}

/// Leader side (docs/ha.md §6.1): I hold the lock and run as primary. `None`
/// = no request to act on now; keep leading.
pub fn leader_side(cluster: &Cluster, local: &LocalView) -> Option<Decision> {
    let f = cluster.failover.as_ref()?;
    let req = &f.value;
    match due(req, local) {
        Due::Later(_) => return None,
        Due::Dropped => {
            return Some(clear(
                f,
                format!(
                    "switchover scheduled at {} is overdue or unreadable: dropping it",
                    req.scheduled_at.as_deref().unwrap_or_default()
                ),
            ));
        }
        Due::Now => {}
    }
    if let Some(l) = req.leader.as_deref()
        && l != local.name
    {
        return Some(clear(
            f,
            format!("switchover request names {l} as leader, not me: clearing it"),
        ));
    }
    if req.member.as_deref() == Some(local.name.as_str()) {
        return Some(clear(
            f,
            "failover request names me, the leader, as candidate: clearing it".into(),
        ));
    }
    let my_lsn = local.pg.lsn.unwrap_or(0);
    let min_lsn = my_lsn.saturating_sub(local.maximum_lag_on_failover);
    let eligible: Vec<&str> = local
        .peers
        .iter()
        .filter(|p| p.name != local.name)
        .filter(|p| req.member.as_deref().is_none_or(|m| m == p.name))
        .filter(|p| promotable(p, min_lsn))
        // docs/replication-modes.md §4: a switchover goes to a synchronous
        // standby; a failover (no leader named) may go anywhere.
        .filter(|p| {
            req.leader.is_none() || super::sync::may_take_over(&local.sync, cluster, &p.name)
        })
        .map(|p| p.name.as_str())
        .collect();
    if eligible.is_empty() {
        let to = req.member.as_deref().unwrap_or("any member");
        return Some(clear(
            f,
            format!("switchover to {to} is not possible: no eligible candidate; clearing it"),
        ));
    }
    // docs/replication-modes.md §5: without a named candidate the
    // standbys left must be able to gather the quorum's votes, else none
    // would win the race (Patroni's `is_failover_possible`).
    if req.member.is_none()
        && !super::quorum_plan::failover_possible(&local.sync, cluster, eligible.len())
    {
        return Some(clear(
            f,
            format!(
                "switchover is not possible: {} eligible candidates do not cover the quorum of {}; clearing it",
                eligible.len(),
                cluster.sync_state().quorum
            ),
        ));
    }
    Some(Decision::new(
        vec![
            Action::RenewLock,
            Action::Demote {
                mode: DemoteMode::Graceful,
            },
        ],
        format!(
            "switchover to {}: checkpoint, stop, hand over the lock",
            req.member.as_deref().unwrap_or(&eligible.join(","))
        ),
    ))
}

/// The manual-failover rule of the leader race (docs/ha.md §6.2), for a
/// replica while no one holds the lock.
#[derive(Debug, Clone, PartialEq)]
pub enum RaceRule {
    /// The request settles it.
    Decided(Decision),
    /// Run the ordinary healthiest check, without comparing with `exclude`
    /// (the old leader), and without the lag limit when `ignore_lag`.
    Race {
        exclude: Option<String>,
        ignore_lag: bool,
    },
}

pub fn race_rule(cluster: &Cluster, local: &LocalView) -> RaceRule {
    let plain = RaceRule::Race {
        exclude: None,
        ignore_lag: false,
    };
    let Some(f) = &cluster.failover else {
        return plain;
    };
    let req = &f.value;
    if due(req, local) != Due::Now {
        return plain;
    }
    // A switchover (leader named) hands over everything the old leader
    // wrote: its final position is status.optime.
    let min_lsn = if req.leader.is_some() {
        cluster.status.optime.unwrap_or(0)
    } else {
        0
    };
    let my_lsn = local.pg.lsn.unwrap_or(0);
    if req.member.as_deref() == Some(local.name.as_str()) {
        if my_lsn < min_lsn {
            return RaceRule::Decided(Decision::idle(format!(
                "I am the switchover candidate; waiting to receive the old leader's WAL up to {min_lsn} (have {my_lsn})"
            )));
        }
        return RaceRule::Decided(Decision::new(
            vec![Action::AcquireLock],
            "I am the failover candidate: taking the lock",
        ));
    }
    if let Some(cand) = req.member.as_deref()
        && local
            .peers
            .iter()
            .any(|p| p.name == cand && promotable(p, min_lsn))
    {
        return RaceRule::Decided(Decision::idle(format!(
            "not racing: failover candidate {cand} takes over"
        )));
    }
    if req.leader.as_deref() == Some(local.name.as_str()) {
        if let Some(p) = local.peers.iter().find(|p| promotable(p, min_lsn)) {
            return RaceRule::Decided(Decision::idle(format!(
                "not racing: I am the old leader and {} can take over",
                p.name
            )));
        }
        return plain;
    }
    RaceRule::Race {
        exclude: req.leader.clone(),
        ignore_lag: true,
    }
}

/// A former primary that stepped down gracefully (docs/ha.md §6.3), with PostgreSQL
/// stopped: wait for the new leader, then start as its replica, without
/// pg_rewind (its WAL ends at the shutdown checkpoint the new leader
/// received). `None` after ttl, or when something else applies.
pub fn after_graceful_demotion(
    cluster: &Cluster,
    local: &LocalView,
    now: Instant,
    i_lead: bool,
) -> Option<Decision> {
    let at = local.switchover.demoted_gracefully_at?;
    if i_lead || local.pg.running || now.saturating_duration_since(at) > local.timing.ttl {
        return None;
    }
    let Some(leader) = cluster.leader_name() else {
        return Some(Decision::idle(
            "stepped down for a switchover: waiting for the new leader",
        ));
    };
    let m = cluster.member(leader)?;
    let (host, port) = m.data.conn_host_port()?;
    Some(Decision::new(
        vec![Action::StartReplica {
            upstream: Some(Upstream {
                name: leader.to_owned(),
                host,
                port,
                remote: false,
            }),
        }],
        format!(
            "stepped down cleanly for a switchover: starting as a replica of {leader} (no rewind needed)"
        ),
    ))
}

/// The winner of a race clears the request (docs/ha.md §5).
pub fn clear_after_win(cluster: &Cluster) -> Option<Action> {
    cluster.failover.as_ref().map(|f| Action::ClearFailover {
        version: f.version.clone(),
    })
}

/// Why this node promotes, for `pgpilot_promotions_total` (docs/rest-api.md,
/// "GET /metrics"), from the cluster view of the cycle that promotes (the
/// request is cleared in that same cycle, after the promotion): a
/// `failover` key naming the leader is a `switchover`, one naming only a
/// candidate a `manual_failover`, none (or an empty one) a `failover`: the
/// leader's lease ran out.
pub fn promotion_cause(cluster: Option<&Cluster>) -> &'static str {
    match cluster.and_then(|c| c.failover.as_ref()).map(|f| &f.value) {
        Some(Failover {
            leader: Some(_), ..
        }) => "switchover",
        Some(Failover {
            member: Some(_), ..
        }) => "manual_failover",
        _ => "failover",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_failover(value: Option<&str>) -> Cluster {
        let mut rows = vec![("leader".to_owned(), "n2".to_owned(), 1, 0)];
        if let Some(v) = value {
            rows.push(("failover".to_owned(), v.to_owned(), 2, 0));
        }
        Cluster::from_kvs(rows)
    }

    #[test]
    fn the_failover_key_says_why_a_node_promotes() {
        assert_eq!(promotion_cause(None), "failover");
        assert_eq!(promotion_cause(Some(&with_failover(None))), "failover");
        assert_eq!(
            promotion_cause(Some(&with_failover(Some(
                r#"{"leader":"n1","member":"n2"}"#
            )))),
            "switchover"
        );
        assert_eq!(
            promotion_cause(Some(&with_failover(Some(r#"{"leader":"n1"}"#)))),
            "switchover"
        );
        assert_eq!(
            promotion_cause(Some(&with_failover(Some(r#"{"member":"n2"}"#)))),
            "manual_failover"
        );
    }
}
