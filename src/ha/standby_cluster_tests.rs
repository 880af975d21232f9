//! The standby cluster's rules (docs/ha.md §16), one test each.

use super::tests::{cluster, empty_local, local, ok, peer};
use super::*;
use crate::dcs::{Cluster, DcsError};

fn remote() -> Upstream {
    standby_cluster::remote_upstream(Some(("10.0.0.9".into(), 5433)))
}

fn standby(mut l: LocalView) -> LocalView {
    l.standby_cluster = Some(remote());
    l
}

/// A standby-cluster member whose PostgreSQL is stopped; `was_primary`:
/// pg_control says it last ran as a primary.
fn stopped(was_primary: bool) -> LocalView {
    let mut l = standby(local(None));
    l.data_dir = DataDir::Initialized {
        sysid: "7000000000000000001".into(),
        was_primary,
    };
    l
}

fn run(c: Cluster, l: &LocalView) -> Decision {
    decide(&ok(c), l, std::time::Instant::now())
}

#[test]
fn the_remote_is_named_by_its_address() {
    let r = remote();
    assert!(r.remote);
    assert_eq!((r.host.as_str(), r.port), ("10.0.0.9", 5433));
    assert_ne!(
        r.name,
        standby_cluster::remote_upstream(Some(("10.0.0.8".into(), 5433))).name,
        "a changed address is a new upstream to follow"
    );
    assert_eq!(standby_cluster::remote_upstream(None).port, 0);
}

#[test]
fn the_bootstrap_winner_clones_the_remote_instead_of_initdb() {
    let c = Cluster {
        initialize: None,
        ..cluster(None)
    };
    let d = run(c, &standby(empty_local()));
    assert_eq!(
        d.actions,
        vec![
            Action::TakeInitialize,
            Action::BootstrapStandby { from: remote() }
        ]
    );
    assert_eq!(d.summary, "trying to bootstrap a new standby leader");
}

#[test]
fn without_host_or_port_the_winner_still_bootstraps_from_the_remote() {
    // Fed by restore_command alone: the section's create_replica_methods
    // clone it (the job refuses basebackup without an address), as in
    // Patroni.
    let c = Cluster {
        initialize: None,
        ..cluster(None)
    };
    let mut l = empty_local();
    let remote = standby_cluster::remote_upstream(None);
    l.standby_cluster = Some(remote.clone());
    let d = run(c, &l);
    assert_eq!(
        d.actions,
        vec![
            Action::TakeInitialize,
            Action::BootstrapStandby { from: remote }
        ]
    );
}

#[test]
fn the_lock_holder_streaming_from_the_remote_only_renews() {
    let mut l = standby(local(Some(PgRole::Replica)));
    l.pg.following = Some(remote().name);
    let d = run(cluster(Some("a")), &l);
    assert_eq!(d.actions, vec![Action::RenewLock]);
    assert_eq!(
        d.summary,
        "no action. I am (a), the standby leader with the lock"
    );
}

#[test]
fn the_new_lock_holder_follows_the_remote_and_never_promotes() {
    let mut l = standby(local(Some(PgRole::Replica)));
    l.pg.following = Some("b".into());
    // A watchdog is armed before a promotion, not here.
    l.watchdog = WatchdogState::Ready;
    let d = run(cluster(Some("a")), &l);
    assert_eq!(
        d.actions,
        vec![Action::RenewLock, Action::Follow { upstream: remote() }]
    );
    assert_eq!(
        d.summary,
        "promoted self to a standby leader because i had the session lock"
    );
}

#[test]
fn a_lock_holder_running_as_primary_stops() {
    let l = standby(local(Some(PgRole::Primary)));
    let d = run(cluster(Some("a")), &l);
    assert_eq!(
        d.actions,
        vec![
            Action::RenewLock,
            Action::Demote {
                mode: DemoteMode::Offline
            },
        ]
    );
    assert_eq!(d.summary, "demoting to a standby cluster");
}

#[test]
fn a_stopped_former_primary_holding_the_lock_is_rewound_onto_the_remote() {
    let mut l = stopped(true);
    l.rewind.enabled = true;
    let d = run(cluster(Some("a")), &l);
    assert_eq!(
        d.actions,
        vec![Action::RenewLock, Action::Rewind { from: remote() }]
    );
    assert_eq!(d.summary, "running pg_rewind from remote 10.0.0.9:5433");
    // Without use_pg_rewind it starts as the remote's standby.
    l.rewind.enabled = false;
    let d = run(cluster(Some("a")), &l);
    assert_eq!(
        d.actions,
        vec![
            Action::RenewLock,
            Action::StartReplica {
                upstream: Some(remote())
            }
        ]
    );
}

#[test]
fn paused_a_primary_lock_holder_is_left_alone() {
    let mut l = standby(local(Some(PgRole::Primary)));
    l.paused = true;
    let d = run(cluster(Some("a")), &l);
    assert!(
        !d.actions.iter().any(|a| matches!(a, Action::Demote { .. })),
        "{d:?}"
    );
}

#[test]
fn a_stopped_lock_holder_starts_as_the_remotes_standby() {
    let l = stopped(false);
    let d = run(cluster(Some("a")), &l);
    assert_eq!(
        d.actions,
        vec![
            Action::RenewLock,
            Action::StartReplica {
                upstream: Some(remote())
            }
        ]
    );
    assert_eq!(
        d.summary,
        "starting as a standby leader because i had the session lock"
    );
}

#[test]
fn a_stopped_member_of_a_leaderless_standby_cluster_follows_the_remote() {
    let l = standby(local(None));
    let d = run(cluster(None), &l);
    assert_eq!(
        d.actions,
        vec![Action::StartReplica {
            upstream: Some(remote())
        }]
    );
    assert_eq!(
        d.summary,
        "trying to follow a remote member because standby cluster is unhealthy"
    );
}

#[test]
fn the_healthiest_replica_takes_the_lock_without_arming_a_watchdog() {
    let mut l = standby(local(Some(PgRole::Replica)));
    l.watchdog = WatchdogState::Ready;
    l.peers = vec![peer("b", PgRole::Replica, 900)];
    let d = run(cluster(None), &l);
    assert_eq!(d.actions, vec![Action::AcquireLock]);
    assert_eq!(
        d.summary,
        "promoted self to a standby leader by acquiring session lock"
    );
}

#[test]
fn the_races_notes_are_kept() {
    let mut l = standby(local(Some(PgRole::Replica)));
    l.peers = vec![peer("b", PgRole::Replica, 2000)];
    let d = run(cluster(None), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(
        d.notes
            .iter()
            .any(|n| n == "Wal position of b is ahead of my wal position"),
        "{:?}",
        d.notes
    );
}

#[test]
fn a_replica_follows_the_standby_leader() {
    let mut l = standby(local(Some(PgRole::Replica)));
    l.pg.following = Some("b".into());
    let d = run(cluster(Some("b")), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert_eq!(
        d.summary,
        "no action. I am (a), a secondary, and following a standby leader (b)"
    );
}

#[test]
fn without_the_dcs_nothing_changes() {
    let l = stopped(true);
    let dcs = DcsView::Failed(DcsError::Unreachable("x".into()));
    let d = decide(&dcs, &l, std::time::Instant::now());
    assert_eq!(d.actions, vec![Action::StartReplica { upstream: None }]);
}

#[test]
fn a_switchover_request_is_cleared_not_carried_out() {
    // Not implemented in a standby cluster (docs/ha.md §16): the standby
    // leader clears the request, so it cannot linger until a promotion.
    let mut l = standby(local(Some(PgRole::Replica)));
    l.pg.following = Some(remote().name);
    let c = super::tests::with_failover(cluster(Some("a")), Some("a"), Some("b"));
    let d = run(c, &l);
    assert_eq!(
        d.actions,
        vec![
            Action::RenewLock,
            Action::ClearFailover {
                version: crate::dcs::Version::from_int(7)
            }
        ]
    );
}
