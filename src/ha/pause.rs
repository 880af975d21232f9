//! Pause (maintenance) mode, ha-loop.md §13: the operator is in charge.
//! Nothing is promoted, demoted, started, stopped, bootstrapped, cloned,
//! rewound or rebuilt automatically. The leader keeps its lock only while
//! its PostgreSQL runs as a primary; replicas keep following the leader
//! (a reload, never a restart).

use super::action::{Action, Decision};
use super::decide::{follow_leader, leader_primary};
use super::view::{DataDir, LocalView};
use crate::dcs::Cluster;

/// The decision while paused, once a finished job has been followed up and
/// no job runs.
pub(super) fn decide_paused(cluster: &Cluster, local: &LocalView, i_lead: bool) -> Decision {
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
        // ha-loop.md §4 rule 4: a primary takes a free lock (its sysid was
        // checked above); nobody else races while paused.
        None if local.pg.is_primary() => Decision::new(
            vec![Action::AcquireLock],
            "paused; no leader and I run as primary: taking the lock",
        ),
        None => {
            Decision::idle("paused; no leader: not racing (no automatic failover while paused)")
        }
        Some(_) if i_lead && local.pg.is_primary() => leader_primary(cluster, local, "paused; "),
        Some(_) if i_lead => release("I hold the lock but PostgreSQL does not run as primary"),
        Some(leader) if local.pg.is_primary() => Decision::idle(format!(
            "paused; WARNING: {leader} holds the lock but I run as a primary: not demoting"
        )),
        Some(leader) => follow_leader(cluster, leader, local),
    }
}
