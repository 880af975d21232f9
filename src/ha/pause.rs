//! Pause (maintenance) mode, docs/ha.md §11: the operator is in charge.
//! Nothing is promoted, demoted, started, stopped, bootstrapped, cloned,
//! rewound or rebuilt automatically. The leader keeps its lock only while
//! its PostgreSQL runs as a primary; replicas keep following the leader
//! (a reload, never a restart).

use super::action::{Action, Decision};
use super::decide::{follow_leader, leader_primary};
use super::switchover::{self, RaceRule};
use super::view::{DataDir, LocalView};
use crate::dcs::Cluster;

/// The decision while paused, once a finished job has been followed up and
/// no job runs.
pub(super) fn decide_paused(
    cluster: &Cluster,
    local: &LocalView,
    now: std::time::Instant,
    i_lead: bool,
) -> Decision {
    let release = |why: &str| {
        Decision::new(
            vec![Action::ReleaseLock],
            format!("paused; {why}: releasing the lock"),
        )
    };
    let sysid = match &local.data_dir {
        DataDir::Initialized { sysid, .. } => sysid,
        DataDir::Empty if i_lead => return release("my data directory is empty"),
        DataDir::Empty => {
            return Decision::idle(
                "paused; the data directory is empty: not bootstrapping or cloning",
            );
        }
        DataDir::Unreadable(why) if i_lead => {
            return release(&format!("cannot read my data directory ({why})"));
        }
        DataDir::Unreadable(why) => {
            return Decision::idle(format!(
                "paused; cannot read pg_control ({why}); leaving the data directory alone"
            ));
        }
    };
    if let Some(init) = cluster.initialize.as_deref()
        && !init.is_empty()
        && init != sysid
    {
        let why = format!(
            "WARNING: data directory has system identifier {sysid} but the cluster's is {init}"
        );
        return if i_lead {
            release(&why)
        } else {
            Decision::idle(format!("paused; {why}"))
        };
    }
    // A manual switchover's old primary rejoins as the new leader's replica.
    if let Some(d) = switchover::after_graceful_demotion(cluster, local, now, i_lead) {
        return d;
    }
    if !local.pg.running {
        return if i_lead {
            release("PostgreSQL is not running")
        } else {
            Decision::idle("paused; PostgreSQL is not running: not starting it")
        };
    }
    if local.pg.role.is_none() {
        return Decision::idle("paused; PostgreSQL is running but not answering: waiting");
    }
    match cluster.leader_name() {
        // docs/ha.md §11: a primary takes a free lock (its sysid was
        // checked above); nobody else races while paused.
        None if local.pg.is_primary() => Decision::new(
            vec![Action::AcquireLock],
            "paused; no leader and I run as primary: taking the lock",
        ),
        // Only a manual failover naming me as candidate makes me race.
        None if i_am_candidate(cluster, local) => match switchover::race_rule(cluster, local) {
            RaceRule::Decided(d) => Decision::new(d.actions, format!("paused; {}", d.reason)),
            RaceRule::Race { .. } => Decision::idle("paused; no leader: not racing"),
        },
        None => {
            Decision::idle("paused; no leader: not racing (no automatic failover while paused)")
        }
        Some(_) if i_lead && local.pg.is_primary() => match manual_switchover(cluster, local) {
            Some(d) => d,
            None => leader_primary(cluster, local, "paused; "),
        },
        // The candidate of a manual failover won the lock: promote it.
        Some(_) if i_lead && local.pg.is_replica() && i_am_candidate(cluster, local) => {
            let mut actions = vec![Action::RenewLock, Action::Promote];
            actions.extend(switchover::clear_after_win(cluster));
            Decision::new(
                actions,
                "paused; I won the lock as the manual failover candidate: promoting",
            )
        }
        Some(_) if i_lead => release("I hold the lock but PostgreSQL does not run as primary"),
        Some(leader) if local.pg.is_primary() => Decision::idle(format!(
            "paused; WARNING: {leader} holds the lock but I run as a primary: not demoting"
        )),
        Some(leader) => follow_leader(cluster, leader, local),
    }
}

/// A `failover` request names me as candidate.
fn i_am_candidate(cluster: &Cluster, local: &LocalView) -> bool {
    cluster
        .failover
        .as_ref()
        .is_some_and(|f| f.value.member.as_deref() == Some(local.name.as_str()))
}

/// The leader's side of a `failover` request while paused (docs/ha.md §11, §6.1):
/// only a switchover to a named candidate, never a scheduled one.
fn manual_switchover(cluster: &Cluster, local: &LocalView) -> Option<Decision> {
    let f = cluster.failover.as_ref()?;
    let why = if f.value.member.is_none() {
        "a switchover without a candidate"
    } else if f.value.scheduled_at.is_some() {
        "a scheduled switchover"
    } else {
        let d = switchover::leader_side(cluster, local)?;
        return Some(Decision::new(d.actions, format!("paused; {}", d.reason)));
    };
    Some(Decision::new(
        vec![
            Action::RenewLock,
            Action::ClearFailover {
                version: f.version.clone(),
            },
        ],
        format!("paused; {why} is not allowed while paused: clearing it"),
    ))
}
