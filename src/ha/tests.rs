//! One test per row of the decision table (docs/ha.md §2) and per rule the
//! table leaves implicit.

use std::time::{Duration, Instant};

use super::rewind::{RewindReport, RewindStep, RewindTool};
use super::view::PeerReply;
use super::*;
use crate::config::{Tags, Timing};
use crate::dcs::{Cluster, DcsError, Leader, Member, MemberData};

const SYSID: &str = "7000000000000000001";

fn member(name: &str, role: &str, port: u16) -> Member {
    Member {
        name: name.to_owned(),
        data: MemberData {
            conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
            api_url: format!("http://127.0.0.1:{}/patroni", port + 1000),
            state: "running".into(),
            role: role.into(),
            ..Default::default()
        },
        version: crate::dcs::Version::from_int(1),
        session: Some(crate::dcs::SessionId::from_int(1)),
    }
}

/// A cluster of a, b, c with `leader` holding the lock (if any).
pub(super) fn cluster(leader: Option<&str>) -> Cluster {
    Cluster {
        initialize: Some(SYSID.into()),
        leader: leader.map(|l| Leader {
            name: l.into(),
            version: crate::dcs::Version::from_int(1),
            session: Some(crate::dcs::SessionId::from_int(1)),
        }),
        members: vec![
            member(
                "a",
                if leader == Some("a") {
                    "primary"
                } else {
                    "replica"
                },
                5432,
            ),
            member(
                "b",
                if leader == Some("b") {
                    "primary"
                } else {
                    "replica"
                },
                5433,
            ),
            member(
                "c",
                if leader == Some("c") {
                    "primary"
                } else {
                    "replica"
                },
                5434,
            ),
        ],
        ..Default::default()
    }
}

pub(super) fn timing() -> Timing {
    Timing {
        ttl: Duration::from_secs(30),
        loop_wait: Duration::from_secs(10),
        retry_timeout: Duration::from_secs(10),
    }
}

/// The local view every decision test starts from (also `sync_tests`).
pub(super) fn local(role: Option<PgRole>) -> LocalView {
    LocalView {
        name: "a".into(),
        tags: Tags::default(),
        timing: timing(),
        maximum_lag_on_failover: 1 << 20,
        sync: Default::default(),
        sync_facts: Default::default(),
        primary_start_timeout: std::time::Duration::from_secs(300),
        rejoin_pending: false,
        starting_primary_for: None,
        can_bootstrap: true,
        can_clone_without_leader: false,
        data_dir: DataDir::Initialized {
            sysid: SYSID.into(),
            was_primary: role == Some(PgRole::Primary),
        },
        pg: PgFacts {
            running: role.is_some(),
            role,
            lsn: Some(1000),
            timeline: Some(1),
            following: None,
        },
        busy: None,
        outcome: None,
        lease_deadline: None,
        fence_armed: None,
        peers: Vec::new(),
        leader_key_foreign: false,
        failsafe: FailsafeView::default(),
        rewind: RewindView::default(),
        config_backup: false,
        switchover: SwitchoverView::default(),
        paused: false,
        watchdog: WatchdogState::Off,
        standby_cluster: None,
    }
}

pub(super) fn empty_local() -> LocalView {
    LocalView {
        data_dir: DataDir::Empty,
        pg: PgFacts::default(),
        ..local(None)
    }
}

/// A primary stepping down without the DCS: stop (`mode`), then start as a
/// standby following nobody (docs/ha.md §9.6).
fn read_only(mode: DemoteMode) -> Vec<Action> {
    vec![
        Action::Demote { mode },
        Action::StartReplica { upstream: None },
    ]
}

pub(super) fn ok(c: Cluster) -> DcsView {
    DcsView::Ok(c)
}

pub(super) fn run(dcs: &DcsView, l: &LocalView) -> Decision {
    decide(dcs, l, Instant::now())
}

fn up(name: &str, port: u16) -> Upstream {
    Upstream {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        remote: false,
    }
}

pub(super) fn peer(name: &str, role: PgRole, lsn: u64) -> PeerStatus {
    PeerStatus {
        name: name.into(),
        reply: Some(PeerReply {
            role,
            running: true,
            lsn: Some(lsn),
            timeline: Some(1),
            tags: Tags::default(),
            watchdog_failed: false,
        }),
    }
}

// --- DCS error rows ---

#[test]
fn dcs_error_primary_with_lease_left_stays_primary() {
    let now = Instant::now();
    let mut l = local(Some(PgRole::Primary));
    l.timing = Timing {
        ttl: Duration::from_secs(30),
        loop_wait: Duration::from_secs(2),
        retry_timeout: Duration::from_secs(3),
    };
    l.lease_deadline = Some(now + Duration::from_secs(25));
    let d = decide(&DcsView::Failed(DcsError::Unreachable("x".into())), &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
}

#[test]
fn dcs_error_primary_whose_lease_may_lapse_demotes_offline() {
    // ttl 30, loop_wait 10, retry_timeout 10, no fence: fencing point =
    // deadline - 1 s = now + 20 s, not after the next decision (now + 20 s).
    let now = Instant::now();
    let mut l = local(Some(PgRole::Primary));
    l.lease_deadline = Some(now + Duration::from_secs(21));
    let d = decide(&DcsView::Failed(DcsError::Unreachable("x".into())), &l, now);
    assert_eq!(d.actions, read_only(DemoteMode::Offline));
}

/// The test clusters' timing: ttl 6, loop_wait 1, retry_timeout 2, so the
/// fencing margin is 1 s and one cycle 3 s.
fn test_timing() -> Timing {
    Timing {
        ttl: Duration::from_secs(6),
        loop_wait: Duration::from_secs(1),
        retry_timeout: Duration::from_secs(2),
    }
}

#[test]
fn dcs_error_primary_serves_until_one_cycle_before_the_fencing_point() {
    let now = Instant::now();
    let mut l = local(Some(PgRole::Primary));
    l.timing = test_timing();
    let dcs = DcsView::Failed(DcsError::Unreachable("x".into()));
    // Fencing point now + 3.1 s: the next decision (<= 3 s) still precedes it.
    l.lease_deadline = Some(now + Duration::from_millis(4100));
    let d = decide(&dcs, &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
    // Fencing point now + 2.9 s: the next decision could come after it.
    l.lease_deadline = Some(now + Duration::from_millis(3900));
    assert_eq!(
        decide(&dcs, &l, now).actions,
        read_only(DemoteMode::Offline)
    );
    // Past the fencing point (the fence may be stopping it): immediate.
    l.lease_deadline = Some(now + Duration::from_millis(1000));
    assert_eq!(
        decide(&dcs, &l, now).actions,
        read_only(DemoteMode::ImmediateNoLock)
    );
}

#[test]
fn dcs_error_primary_with_an_armed_fence_serves_up_to_the_fencing_point() {
    // test timing: margin 1 s, one cycle 3 s. The fence confirmed it stops
    // PostgreSQL at the fencing point, so no demotion a cycle early: the
    // fence takes the last step, and the DCS may come back first.
    let now = Instant::now();
    let mut l = local(Some(PgRole::Primary));
    l.timing = test_timing();
    let dcs = DcsView::Failed(DcsError::Unreachable("x".into()));
    let deadline = now + Duration::from_millis(3900);
    let fence_at = deadline - Duration::from_secs(1);
    l.lease_deadline = Some(deadline);
    l.fence_armed = Some(fence_at);
    let d = decide(&dcs, &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(
        d.reason.contains("the fence stops PostgreSQL in 2.9s"),
        "{}",
        d.reason
    );
    // 50 ms before the fencing point: still serving.
    let d = decide(&dcs, &l, fence_at - Duration::from_millis(50));
    assert!(d.actions.is_empty(), "{d:?}");
    // A fence armed earlier than my fencing point is as good.
    l.fence_armed = Some(fence_at - Duration::from_secs(1));
    assert!(decide(&dcs, &l, now).actions.is_empty());
    // At the fencing point the daemon stops it itself too, at once.
    let immediate = vec![Action::Demote {
        mode: DemoteMode::ImmediateNoLock,
    }];
    l.fence_armed = Some(fence_at);
    assert_eq!(
        decide(&dcs, &l, fence_at).actions,
        read_only(DemoteMode::ImmediateNoLock)
    );
    // Then the lease deadline itself: the lapsed-lease rule.
    assert_eq!(decide(&dcs, &l, deadline).actions, immediate);
}

#[test]
fn dcs_error_primary_without_a_confirmed_fence_demotes_a_cycle_early() {
    let now = Instant::now();
    let mut l = local(Some(PgRole::Primary));
    l.timing = test_timing();
    let dcs = DcsView::Failed(DcsError::Unreachable("x".into()));
    let deadline = now + Duration::from_millis(3900);
    l.lease_deadline = Some(deadline);
    let offline = read_only(DemoteMode::Offline);
    // No fence confirmed an order.
    l.fence_armed = None;
    let d = decide(&dcs, &l, now);
    assert_eq!(d.actions, offline);
    assert!(d.reason.contains("no fence is armed"), "{}", d.reason);
    // The fence holds an older, later point (it did not see the last order):
    // it would stop PostgreSQL too late.
    l.fence_armed = Some(deadline);
    assert_eq!(decide(&dcs, &l, now).actions, offline);
}

#[test]
fn armed_fence_and_dcs_back_before_the_fencing_point_changes_nothing() {
    // The DCS answers again before the fencing point: the lock is renewed
    // as in any cycle, nothing was stopped.
    let now = Instant::now();
    let mut l = local(Some(PgRole::Primary));
    l.timing = test_timing();
    l.lease_deadline = Some(now + Duration::from_millis(1500));
    l.fence_armed = Some(now + Duration::from_millis(500));
    let d = decide(&ok(cluster(Some("a"))), &l, now);
    assert_eq!(d.actions, vec![Action::RenewLock], "{d:?}");
}

#[test]
fn dcs_error_primary_keeps_serving_later_than_the_old_rule() {
    // ttl 30, loop_wait 10, retry_timeout 10: the old rule demoted when
    // now + 30 >= deadline; without a fence it serves until now + 20
    // reaches deadline - 1 (the margin).
    let now = Instant::now();
    let mut l = local(Some(PgRole::Primary));
    l.lease_deadline = Some(now + Duration::from_secs(27));
    let d = decide(&DcsView::Failed(DcsError::Unreachable("x".into())), &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("holds for 27.0s"), "{}", d.reason);
}

#[test]
fn lapsed_lease_stops_postgres_before_anything_else() {
    // The daemon wakes from a freeze: its lease ended 2 s ago. Whatever the
    // DCS says (still my key, another leader, unreachable), PostgreSQL is
    // stopped at once.
    let now = Instant::now();
    let demote = vec![Action::Demote {
        mode: DemoteMode::ImmediateNoLock,
    }];
    for role in [Some(PgRole::Primary), None] {
        let mut l = local(role);
        l.pg.running = true;
        l.lease_deadline = Some(now - Duration::from_secs(2));
        for dcs in [
            ok(cluster(Some("a"))),
            ok(cluster(Some("b"))),
            ok(cluster(None)),
            DcsView::Failed(DcsError::Unreachable("x".into())),
        ] {
            let d = decide(&dcs, &l, now);
            assert_eq!(d.actions, demote, "{role:?} {dcs:?}: {d:?}");
            assert!(d.reason.contains("lease ran out"), "{}", d.reason);
        }
    }
    // A replica or a stopped PostgreSQL accepts no writes: the normal rules.
    let mut l = local(Some(PgRole::Replica));
    l.lease_deadline = Some(now - Duration::from_secs(2));
    let d = decide(&ok(cluster(Some("b"))), &l, now);
    assert!(!d.reason.contains("lease ran out"), "{d:?}");
    let mut l = local(None);
    l.lease_deadline = Some(now - Duration::from_secs(2));
    let d = decide(&ok(cluster(Some("b"))), &l, now);
    assert!(!d.reason.contains("lease ran out"), "{d:?}");
    // A lease still running is not lapsed.
    let mut l = local(Some(PgRole::Primary));
    l.lease_deadline = Some(now + Duration::from_secs(25));
    assert_eq!(
        decide(&ok(cluster(Some("a"))), &l, now).actions,
        vec![Action::RenewLock]
    );
}

#[test]
fn leader_whose_postgres_does_not_answer_stops_renewing_then_fences() {
    let now = Instant::now();
    let mut l = local(Some(PgRole::Primary));
    l.pg.role = None;
    l.timing = test_timing();
    l.lease_deadline = Some(now + Duration::from_secs(6));
    // Room left: wait for it to answer, but do not vouch for it.
    let d = decide(&ok(cluster(Some("a"))), &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("not renewing"), "{}", d.reason);
    // No room before the fencing point: fence and let a replica take over.
    l.lease_deadline = Some(now + Duration::from_secs(4));
    let d = decide(&ok(cluster(Some("a"))), &l, now);
    assert_eq!(
        d.actions,
        vec![
            Action::Demote {
                mode: DemoteMode::ImmediateNoLock
            },
            Action::ReleaseLock
        ]
    );
    // A restarted daemon knows no lease: same.
    l.lease_deadline = None;
    assert_eq!(decide(&ok(cluster(Some("a"))), &l, now).actions.len(), 2);
    // Not the leader: nothing to fence.
    let d = decide(&ok(cluster(Some("b"))), &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
}

#[test]
fn dcs_error_primary_without_lease_demotes() {
    let l = local(Some(PgRole::Primary));
    let d = run(&DcsView::Failed(DcsError::Other("auth".into())), &l);
    assert_eq!(d.actions, read_only(DemoteMode::Offline));
}

#[test]
fn dcs_error_replica_does_nothing() {
    let l = local(Some(PgRole::Replica));
    let d = run(&DcsView::Failed(DcsError::Unreachable("x".into())), &l);
    assert!(d.actions.is_empty());
    assert!(d.reason.contains("not accessible"));
}

#[test]
fn dcs_error_stopped_does_nothing() {
    let d = run(
        &DcsView::Failed(DcsError::Unreachable("x".into())),
        &local(None),
    );
    assert!(d.actions.is_empty());
}

// --- empty data directory rows ---

#[test]
fn empty_no_cluster_races_for_bootstrap() {
    let c = Cluster::default();
    let d = run(&ok(c), &empty_local());
    assert_eq!(d.actions, vec![Action::TakeInitialize, Action::Bootstrap]);
}

#[test]
fn empty_without_bootstrap_section_waits() {
    let mut l = empty_local();
    l.can_bootstrap = false;
    assert!(run(&ok(Cluster::default()), &l).actions.is_empty());
}

#[test]
fn empty_nofailover_does_not_bootstrap() {
    let mut l = empty_local();
    l.tags.nofailover = true;
    assert!(run(&ok(Cluster::default()), &l).actions.is_empty());
}

#[test]
fn empty_while_someone_bootstraps_waits() {
    let c = Cluster {
        initialize: Some(String::new()),
        ..Default::default()
    };
    let d = run(&ok(c), &empty_local());
    assert!(d.actions.is_empty());
    assert!(d.reason.contains("bootstrapping"));
}

#[test]
fn empty_with_leader_clones_from_leader() {
    let mut l = empty_local();
    l.name = "c".into();
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(
        d.actions,
        vec![Action::Clone {
            from: up("b", 5433)
        }]
    );
}

#[test]
fn empty_prefers_running_clonefrom_member() {
    let mut c = cluster(Some("b"));
    c.members[0].data.tags.clonefrom = true; // a
    let mut l = empty_local();
    l.name = "c".into();
    let d = run(&ok(c), &l);
    assert_eq!(
        d.actions,
        vec![Action::Clone {
            from: up("a", 5432)
        }]
    );
}

#[test]
fn empty_with_initialized_cluster_but_no_leader_waits() {
    let d = run(&ok(cluster(None)), &empty_local());
    assert!(d.actions.is_empty());
}

#[test]
fn empty_without_leader_clones_only_with_a_no_leader_method() {
    let mut l = empty_local();
    l.can_clone_without_leader = true;
    let d = run(&ok(cluster(None)), &l);
    assert_eq!(d.actions, vec![Action::CloneWithoutLeader]);
    // Never while another node bootstraps (initialize = ""), nor before
    // the cluster exists, nor when there is a leader to copy from.
    let bootstrapping = Cluster {
        initialize: Some(String::new()),
        ..Default::default()
    };
    assert!(run(&ok(bootstrapping), &l).actions.is_empty());
    assert!(
        !run(&ok(Cluster::default()), &l)
            .actions
            .contains(&Action::CloneWithoutLeader)
    );
    l.name = "c".into();
    assert_eq!(
        run(&ok(cluster(Some("b"))), &l).actions,
        vec![Action::Clone {
            from: up("b", 5433)
        }]
    );
}

#[test]
fn empty_data_dir_while_holding_lock_releases_it() {
    let d = run(&ok(cluster(Some("a"))), &empty_local());
    assert_eq!(d.actions, vec![Action::ReleaseLock]);
}

/// docs/ha.md §3.4: the leader key bears my name but another process's
/// session (a daemon started with my name): whatever the table says, it is
/// not released.
#[test]
fn a_leader_key_of_my_name_under_another_session_is_never_released() {
    let mut failed_rewind = former_primary(RewindView {
        failed: true,
        ..Default::default()
    });
    failed_rewind.outcome = Some(rewind_failed());
    let mut unreadable = local(None);
    unreadable.data_dir = DataDir::Unreadable("x".into());
    for (what, mut l) in [
        ("empty data directory", empty_local()),
        ("failed rewind", failed_rewind),
        ("unreadable data directory", unreadable),
    ] {
        let c = ok(cluster(Some("a")));
        assert_eq!(run(&c, &l).actions, [Action::ReleaseLock], "{what}");
        l.leader_key_foreign = true;
        let d = run(&c, &l);
        assert!(d.actions.is_empty(), "{what}: {d:?}");
        assert!(d.reason.contains("not releasing it"), "{what}: {d:?}");
    }
}

// --- bootstrap completion ---

#[test]
fn finished_bootstrap_publishes_and_takes_lock() {
    let mut l = local(Some(PgRole::Primary));
    l.outcome = Some(JobOutcome::Succeeded(JobKind::Bootstrap));
    let c = Cluster {
        initialize: Some(String::new()),
        ..Default::default()
    };
    let d = run(&ok(c), &l);
    assert_eq!(
        d.actions,
        vec![
            Action::CompleteBootstrap {
                sysid: SYSID.into()
            },
            Action::AcquireLock
        ]
    );
}

#[test]
fn failed_bootstrap_releases_initialize() {
    let mut l = empty_local();
    l.outcome = Some(JobOutcome::Failed(JobKind::Bootstrap, "initdb".into()));
    let c = Cluster {
        initialize: Some(String::new()),
        ..Default::default()
    };
    assert_eq!(run(&ok(c), &l).actions, vec![Action::CancelInitialize]);
}

#[test]
fn failed_promotion_releases_lock() {
    let mut l = local(Some(PgRole::Replica));
    l.outcome = Some(JobOutcome::Failed(JobKind::Promote, "x".into()));
    assert_eq!(
        run(&ok(cluster(Some("a"))), &l).actions,
        vec![Action::ReleaseLock]
    );
}

#[test]
fn failed_start_while_leading_releases_lock() {
    let mut l = local(None);
    l.outcome = Some(JobOutcome::Failed(JobKind::Start, "x".into()));
    assert_eq!(
        run(&ok(cluster(Some("a"))), &l).actions,
        vec![Action::ReleaseLock]
    );
}

#[test]
fn failed_start_of_a_replica_retries_normally() {
    let mut l = local(None);
    l.outcome = Some(JobOutcome::Failed(JobKind::Start, "x".into()));
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(
        d.actions,
        vec![Action::StartReplica {
            upstream: Some(up("b", 5433))
        }]
    );
}

// --- busy ---

#[test]
fn busy_leader_keeps_lock() {
    let mut l = local(None);
    l.busy = Some(JobKind::Start);
    assert_eq!(
        run(&ok(cluster(Some("a"))), &l).actions,
        vec![Action::RenewLock]
    );
}

#[test]
fn busy_replica_waits() {
    let mut l = local(None);
    l.busy = Some(JobKind::Clone);
    assert!(run(&ok(cluster(Some("b"))), &l).actions.is_empty());
}

// --- system identifier ---

#[test]
fn sysid_mismatch_is_fatal() {
    let mut c = cluster(Some("b"));
    c.initialize = Some("7999999999999999999".into());
    let d = run(&ok(c), &local(Some(PgRole::Replica)));
    assert!(
        matches!(d.actions.as_slice(), [Action::Fatal { .. }]),
        "{d:?}"
    );
}

#[test]
fn missing_initialize_is_claimed_by_primary_data() {
    let mut c = cluster(None);
    c.initialize = None;
    let d = run(&ok(c), &local(Some(PgRole::Primary)));
    assert_eq!(
        d.actions,
        vec![Action::CreateInitialize {
            sysid: SYSID.into()
        }]
    );
}

#[test]
fn missing_initialize_replica_waits() {
    let mut c = cluster(None);
    c.initialize = None;
    assert!(
        run(&ok(c), &local(Some(PgRole::Replica)))
            .actions
            .is_empty()
    );
}

#[test]
fn unreadable_data_dir_is_left_alone() {
    let mut l = local(None);
    l.data_dir = DataDir::Unreadable("permission denied".into());
    assert!(run(&ok(cluster(Some("b"))), &l).actions.is_empty());
    assert!(run(&ok(cluster(None)), &l).actions.is_empty());
    assert_eq!(
        run(&ok(cluster(Some("a"))), &l).actions,
        vec![Action::ReleaseLock]
    );
}

// --- PG not running: recover() ---

#[test]
fn crashed_primary_with_lock_restarts_as_primary() {
    let mut l = local(None);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.actions, vec![Action::RenewLock, Action::StartPrimary]);
}

#[test]
fn stopped_replica_with_lock_starts_readonly() {
    let d = run(&ok(cluster(Some("a"))), &local(None));
    assert_eq!(
        d.actions,
        vec![Action::RenewLock, Action::StartReplica { upstream: None }]
    );
}

#[test]
fn stopped_replica_follows_leader() {
    let d = run(&ok(cluster(Some("b"))), &local(None));
    assert_eq!(
        d.actions,
        vec![Action::StartReplica {
            upstream: Some(up("b", 5433))
        }]
    );
}

/// A rewind job's report of pg_rewind failing.
fn rewind_failed() -> JobOutcome {
    JobOutcome::RewindFailed(RewindReport::ToolFailed {
        tool: RewindTool::PgRewind,
        status: Some("exit status: 1".into()),
        stderr: vec!["pg_rewind: fatal: x".into()],
        error: "x".into(),
    })
}

/// A stopped former primary (its data may hold WAL the new leader never saw).
fn former_primary(rewind: RewindView) -> LocalView {
    let mut l = local(None);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    l.rewind = rewind;
    l
}

#[test]
fn stopped_former_primary_rewinds_from_new_leader() {
    let l = former_primary(RewindView {
        enabled: true,
        remove_on_diverged: true,
        ..Default::default()
    });
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(
        d.actions,
        vec![Action::Rewind {
            from: up("b", 5433)
        }]
    );
}

#[test]
fn stopped_former_primary_without_rewind_is_rebuilt_if_allowed() {
    let l = former_primary(RewindView {
        remove_on_diverged: true,
        ..Default::default()
    });
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(
        d.actions,
        vec![Action::Reinitialize {
            from: up("b", 5433)
        }]
    );
}

#[test]
fn stopped_former_primary_without_rewind_or_removal_starts_as_replica() {
    let d = run(
        &ok(cluster(Some("b"))),
        &former_primary(RewindView::default()),
    );
    assert_eq!(
        d.actions,
        vec![Action::StartReplica {
            upstream: Some(up("b", 5433))
        }]
    );
}

#[test]
fn failed_rewind_with_removal_allowed_reinitializes() {
    let mut l = former_primary(RewindView {
        enabled: true,
        remove_on_failure: true,
        failed: true,
        ..Default::default()
    });
    l.outcome = Some(rewind_failed());
    let want = vec![Action::Reinitialize {
        from: up("b", 5433),
    }];
    assert_eq!(run(&ok(cluster(Some("b"))), &l).actions, want);
    // Also on later cycles, once the outcome was consumed.
    l.outcome = None;
    assert_eq!(run(&ok(cluster(Some("b"))), &l).actions, want);
}

#[test]
fn failed_rewind_with_diverged_removal_reinitializes_too() {
    // Patroni's Rewind.execute: either removal setting allows the rebuild.
    let mut l = former_primary(RewindView {
        enabled: true,
        remove_on_diverged: true,
        failed: true,
        ..Default::default()
    });
    l.outcome = Some(rewind_failed());
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(
        d.actions,
        vec![Action::Reinitialize {
            from: up("b", 5433),
        }]
    );
    assert!(
        d.reason
            .contains("remove_data_directory_on_diverged_timelines"),
        "{d:?}"
    );
}

#[test]
fn failed_rewind_without_removal_stays_stopped() {
    let mut l = former_primary(RewindView {
        enabled: true,
        failed: true,
        ..Default::default()
    });
    l.outcome = Some(rewind_failed());
    let d = run(&ok(cluster(Some("b"))), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("pg_rewind failed"), "{d:?}");
    // Never retried: not on the next cycle either.
    l.outcome = None;
    assert!(run(&ok(cluster(Some("b"))), &l).actions.is_empty());
}

#[test]
fn rewind_that_could_not_start_waits_a_cycle_then_retries() {
    let mut l = former_primary(RewindView {
        enabled: true,
        ..Default::default()
    });
    l.outcome = Some(JobOutcome::RewindFailed(RewindReport::NotRun {
        step: RewindStep::LeaderCheckpoint,
        error: "leader unreachable".into(),
    }));
    assert!(run(&ok(cluster(Some("b"))), &l).actions.is_empty());
    l.outcome = None;
    assert_eq!(
        run(&ok(cluster(Some("b"))), &l).actions,
        vec![Action::Rewind {
            from: up("b", 5433)
        }]
    );
}

#[test]
fn without_leader_a_former_primary_is_never_rebuilt() {
    for rewind in [
        RewindView {
            enabled: true,
            remove_on_failure: true,
            remove_on_diverged: true,
            failed: false,
        },
        RewindView {
            enabled: true,
            remove_on_failure: true,
            remove_on_diverged: true,
            failed: true,
        },
    ] {
        let d = run(&ok(cluster(None)), &former_primary(rewind));
        assert!(
            d.actions
                .iter()
                .all(|a| matches!(a, Action::StartReplica { upstream: None })),
            "{rewind:?}: {d:?}"
        );
    }
    // A failed rewind leaves data nobody should start: stay stopped.
    let d = run(
        &ok(cluster(None)),
        &former_primary(RewindView {
            failed: true,
            ..Default::default()
        }),
    );
    assert!(d.actions.is_empty(), "{d:?}");
}

#[test]
fn failed_rewind_while_holding_the_lock_releases_it() {
    let l = former_primary(RewindView {
        failed: true,
        ..Default::default()
    });
    assert_eq!(
        run(&ok(cluster(Some("a"))), &l).actions,
        vec![Action::ReleaseLock]
    );
}

#[test]
fn stopped_without_leader_starts_readonly() {
    let d = run(&ok(cluster(None)), &local(None));
    assert_eq!(d.actions, vec![Action::StartReplica { upstream: None }]);
}

#[test]
fn running_but_not_answering_keeps_the_lock_unrenewed_while_the_lease_holds() {
    // The lock is kept (not released) but not renewed: renewing would vouch
    // for a PostgreSQL nobody could check (see
    // leader_whose_postgres_does_not_answer_stops_renewing_then_fences).
    let mut l = local(None);
    l.pg.running = true;
    l.timing = test_timing();
    l.lease_deadline = Some(Instant::now() + Duration::from_secs(6));
    assert!(run(&ok(cluster(Some("a"))), &l).actions.is_empty());
    assert!(run(&ok(cluster(Some("b"))), &l).actions.is_empty());
}

// --- no leader: race ---

#[test]
fn no_leader_healthiest_replica_takes_lock() {
    let mut l = local(Some(PgRole::Replica));
    l.peers = vec![
        peer("b", PgRole::Replica, 900),
        peer("c", PgRole::Replica, 1000),
    ];
    let d = run(&ok(cluster(None)), &l);
    assert_eq!(d.actions, vec![Action::AcquireLock]);
}

#[test]
fn no_leader_unreachable_peers_do_not_block() {
    let mut l = local(Some(PgRole::Replica));
    l.peers = vec![PeerStatus {
        name: "b".into(),
        reply: None,
    }];
    assert_eq!(
        run(&ok(cluster(None)), &l).actions,
        vec![Action::AcquireLock]
    );
}

#[test]
fn no_leader_peer_ahead_wins() {
    let mut l = local(Some(PgRole::Replica));
    l.peers = vec![peer("b", PgRole::Replica, 2000)];
    let d = run(&ok(cluster(None)), &l);
    assert!(d.actions.is_empty());
    assert!(d.reason.contains("ahead"));
}

#[test]
fn no_leader_peer_still_primary_blocks_race() {
    let mut l = local(Some(PgRole::Replica));
    l.peers = vec![peer("b", PgRole::Primary, 10)];
    assert!(run(&ok(cluster(None)), &l).actions.is_empty());
}

#[test]
fn no_leader_nofailover_peer_ahead_is_ignored() {
    let mut l = local(Some(PgRole::Replica));
    let mut p = peer("b", PgRole::Replica, 5000);
    if let Some(r) = p.reply.as_mut() {
        r.tags.nofailover = true;
    }
    l.peers = vec![p];
    assert_eq!(
        run(&ok(cluster(None)), &l).actions,
        vec![Action::AcquireLock]
    );
}

#[test]
fn no_leader_equal_lsn_higher_priority_wins() {
    let mut l = local(Some(PgRole::Replica));
    let mut p = peer("b", PgRole::Replica, 1000);
    if let Some(r) = p.reply.as_mut() {
        r.tags.failover_priority = Some(5);
    }
    l.peers = vec![p];
    assert!(run(&ok(cluster(None)), &l).actions.is_empty());
}

#[test]
fn no_leader_lagging_replica_does_not_race() {
    let mut c = cluster(None);
    c.status.optime = Some(1000 + (1 << 20) + 1);
    let d = run(&ok(c), &local(Some(PgRole::Replica)));
    assert!(d.actions.is_empty());
    assert!(d.reason.contains("behind"));
}

#[test]
fn no_leader_nofailover_replica_does_not_race() {
    let mut l = local(Some(PgRole::Replica));
    l.tags.nofailover = true;
    assert!(run(&ok(cluster(None)), &l).actions.is_empty());
    l.tags.nofailover = false;
    l.tags.failover_priority = Some(0);
    assert!(run(&ok(cluster(None)), &l).actions.is_empty());
}

#[test]
fn no_leader_nofailover_primary_demotes() {
    let mut l = local(Some(PgRole::Primary));
    l.tags.nofailover = true;
    let d = run(&ok(cluster(None)), &l);
    assert_eq!(
        d.actions,
        vec![Action::Demote {
            mode: DemoteMode::ImmediateNoLock
        }]
    );
}

#[test]
fn no_leader_running_primary_takes_lock() {
    let d = run(&ok(cluster(None)), &local(Some(PgRole::Primary)));
    assert_eq!(d.actions, vec![Action::AcquireLock]);
}

#[test]
fn no_leader_primary_behind_cluster_timeline_demotes() {
    let mut c = cluster(None);
    c.history = Some(vec![crate::dcs::HistoryLine {
        timeline: 1,
        lsn: 10,
        reason: "x".into(),
        timestamp: None,
        new_leader: None,
    }]);
    let d = run(&ok(c), &local(Some(PgRole::Primary)));
    assert_eq!(
        d.actions,
        vec![Action::Demote {
            mode: DemoteMode::ImmediateNoLock
        }]
    );
}

// --- leader key mine ---

#[test]
fn leader_primary_renews() {
    let d = run(&ok(cluster(Some("a"))), &local(Some(PgRole::Primary)));
    assert_eq!(d.actions, vec![Action::RenewLock]);
}

#[test]
fn lock_holder_replica_promotes() {
    let d = run(&ok(cluster(Some("a"))), &local(Some(PgRole::Replica)));
    assert_eq!(d.actions, vec![Action::RenewLock, Action::Promote]);
}

// --- leader key someone else's ---

#[test]
fn other_leader_primary_demotes_immediately() {
    let d = run(&ok(cluster(Some("b"))), &local(Some(PgRole::Primary)));
    assert_eq!(
        d.actions,
        vec![Action::Demote {
            mode: DemoteMode::ImmediateNoLock
        }]
    );
}

#[test]
fn other_leader_replica_repoints_to_new_leader() {
    let mut l = local(Some(PgRole::Replica));
    l.pg.following = Some("c".into());
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(
        d.actions,
        vec![Action::Follow {
            upstream: up("b", 5433)
        }]
    );
}

#[test]
fn other_leader_replica_already_following_idles() {
    let mut l = local(Some(PgRole::Replica));
    l.pg.following = Some("b".into());
    let d = run(&ok(cluster(Some("b"))), &l);
    assert!(d.actions.is_empty());
}

#[test]
fn other_leader_without_member_record_waits() {
    let mut c = cluster(Some("b"));
    c.members.retain(|m| m.name != "b");
    assert!(
        run(&ok(c), &local(Some(PgRole::Replica)))
            .actions
            .is_empty()
    );
}

// --- failsafe mode (docs/ha.md §9.3, §10) ---

fn api(name: &str) -> String {
    let port = match name {
        "a" => 6432,
        "b" => 6433,
        _ => 6434,
    };
    format!("http://127.0.0.1:{port}/patroni")
}

/// The failsafe key listing `names`, with the api_urls `member()` gives.
fn fs_key(names: &[&str]) -> std::collections::BTreeMap<String, String> {
    names.iter().map(|n| (n.to_string(), api(n))).collect()
}

fn ack(name: &str, accepted: bool) -> FailsafeAck {
    FailsafeAck {
        name: name.into(),
        accepted,
    }
}

/// Primary `a`, DCS down, failsafe on with a, b, c listed, the given answers.
fn failsafe_primary(acks: Vec<FailsafeAck>) -> LocalView {
    let mut l = local(Some(PgRole::Primary));
    l.failsafe = FailsafeView {
        enabled: true,
        api_url: api("a"),
        last_known: Some(fs_key(&["a", "b", "c"])),
        acks: Some(acks),
        heartbeat: None,
    };
    l
}

fn dcs_down() -> DcsView {
    DcsView::Failed(DcsError::Unreachable("x".into()))
}

const DEMOTE_OFFLINE: Action = Action::Demote {
    mode: DemoteMode::Offline,
};
const START_READ_ONLY: Action = Action::StartReplica { upstream: None };

#[test]
fn failsafe_leader_publishes_members_when_changed() {
    let mut l = local(Some(PgRole::Primary));
    l.failsafe.enabled = true;
    l.failsafe.api_url = api("a");
    let c = cluster(Some("a"));
    let d = run(&ok(c.clone()), &l);
    assert_eq!(
        d.actions,
        vec![
            Action::RenewLock,
            Action::WriteFailsafe {
                members: fs_key(&["a", "b", "c"])
            }
        ]
    );
    // Unchanged: nothing to write.
    let mut same = c.clone();
    same.failsafe = Some(fs_key(&["a", "b", "c"]));
    assert_eq!(run(&ok(same), &l).actions, vec![Action::RenewLock]);
    // A member left: rewrite.
    let mut gone = c.clone();
    gone.members.retain(|m| m.name != "c");
    gone.failsafe = Some(fs_key(&["a", "b", "c"]));
    assert_eq!(
        run(&ok(gone), &l).actions,
        vec![
            Action::RenewLock,
            Action::WriteFailsafe {
                members: fs_key(&["a", "b"])
            }
        ]
    );
    // My own record missing from the DCS: I list myself anyway.
    let mut no_me = c.clone();
    no_me.members.retain(|m| m.name != "a");
    assert_eq!(
        run(&ok(no_me), &l).actions[1],
        Action::WriteFailsafe {
            members: fs_key(&["a", "b", "c"])
        }
    );
    // Failsafe off: never written.
    l.failsafe.enabled = false;
    assert_eq!(run(&ok(c), &l).actions, vec![Action::RenewLock]);
}

#[test]
fn failsafe_replica_never_writes_the_key() {
    let mut l = local(Some(PgRole::Replica));
    l.failsafe.enabled = true;
    let d = run(&ok(cluster(Some("b"))), &l);
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::WriteFailsafe { .. })),
        "{d:?}"
    );
}

#[test]
fn failsafe_all_ack_stays_primary_without_lease() {
    // No lease left at all: only the confirmations keep it running.
    let l = failsafe_primary(vec![ack("b", true), ack("c", true)]);
    let d = run(&dcs_down(), &l);
    assert_eq!(d.actions, vec![Action::StayPrimaryOnFailsafe], "{d:?}");
    assert!(d.reason.contains("failsafe"), "{}", d.reason);
}

#[test]
fn failsafe_one_refusal_demotes_as_before() {
    let l = failsafe_primary(vec![ack("b", true), ack("c", false)]);
    assert_eq!(
        run(&dcs_down(), &l).actions,
        vec![DEMOTE_OFFLINE, START_READ_ONLY]
    );
}

#[test]
fn failsafe_unreachable_member_demotes_as_before() {
    // c did not answer at all.
    let l = failsafe_primary(vec![ack("b", true)]);
    assert_eq!(
        run(&dcs_down(), &l).actions,
        vec![DEMOTE_OFFLINE, START_READ_ONLY]
    );
}

#[test]
fn failsafe_refusal_keeps_the_lease_rule() {
    // Without all confirmations the lease decides, exactly as without failsafe.
    let now = Instant::now();
    let mut l = failsafe_primary(vec![ack("b", true), ack("c", false)]);
    l.timing = Timing {
        ttl: Duration::from_secs(30),
        loop_wait: Duration::from_secs(2),
        retry_timeout: Duration::from_secs(3),
    };
    l.lease_deadline = Some(now + Duration::from_secs(25));
    assert!(decide(&dcs_down(), &l, now).actions.is_empty());
    // Fencing point now + 4 s, the next decision up to now + 5 s.
    l.lease_deadline = Some(now + Duration::from_secs(6));
    assert_eq!(
        decide(&dcs_down(), &l, now).actions,
        vec![DEMOTE_OFFLINE, START_READ_ONLY]
    );
}

#[test]
fn failsafe_off_demotes_as_before() {
    let mut l = failsafe_primary(vec![ack("b", true), ack("c", true)]);
    l.failsafe.enabled = false;
    assert_eq!(
        run(&dcs_down(), &l).actions,
        vec![DEMOTE_OFFLINE, START_READ_ONLY]
    );
}

#[test]
fn failsafe_key_without_me_demotes_as_before() {
    let mut l = failsafe_primary(vec![ack("b", true), ack("c", true)]);
    l.failsafe.last_known = Some(fs_key(&["b", "c"]));
    assert_eq!(
        run(&dcs_down(), &l).actions,
        vec![DEMOTE_OFFLINE, START_READ_ONLY]
    );
    l.failsafe.last_known = None;
    assert_eq!(
        run(&dcs_down(), &l).actions,
        vec![DEMOTE_OFFLINE, START_READ_ONLY]
    );
}

#[test]
fn failsafe_without_answers_demotes_as_before() {
    let mut l = failsafe_primary(vec![]);
    l.failsafe.acks = None;
    assert_eq!(
        run(&dcs_down(), &l).actions,
        vec![DEMOTE_OFFLINE, START_READ_ONLY]
    );
}

#[test]
fn failsafe_single_member_stays_primary() {
    let mut l = failsafe_primary(vec![]);
    l.failsafe.last_known = Some(fs_key(&["a"]));
    assert_eq!(
        run(&dcs_down(), &l).actions,
        vec![Action::StayPrimaryOnFailsafe]
    );
}

fn heartbeat_from(name: &str, age: Duration, now: Instant) -> LeaderHeartbeat {
    LeaderHeartbeat {
        name: name.into(),
        conn_url: "postgres://127.0.0.1:5433/postgres".into(),
        api_url: api(name),
        at: now - age,
    }
}

#[test]
fn failsafe_replica_with_dcs_down_and_heartbeat_does_nothing() {
    let now = Instant::now();
    let mut l = local(Some(PgRole::Replica));
    l.failsafe.enabled = true;
    l.failsafe.heartbeat = Some(heartbeat_from("b", Duration::from_secs(1), now));
    let d = decide(&dcs_down(), &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("b is alive"), "{}", d.reason);
}

#[test]
fn failsafe_heartbeat_without_leader_key_prevents_race() {
    let now = Instant::now();
    let mut l = local(Some(PgRole::Replica));
    l.lease_deadline = None;
    l.failsafe.enabled = true;
    l.failsafe.heartbeat = Some(heartbeat_from("b", Duration::from_secs(5), now));
    // I would win the race on facts alone.
    l.peers = vec![peer("c", PgRole::Replica, 900)];
    let d = decide(&ok(cluster(None)), &l, now);
    assert_eq!(
        d.actions,
        vec![Action::Follow {
            upstream: up("b", 5433)
        }],
        "{d:?}"
    );
    l.pg.following = Some("b".into());
    let d = decide(&ok(cluster(None)), &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("failsafe leader b"), "{}", d.reason);
}

#[test]
fn failsafe_stale_heartbeat_does_not_block_race() {
    let now = Instant::now();
    let mut l = local(Some(PgRole::Replica));
    l.failsafe.enabled = true;
    // ttl is 30 s in these tests.
    l.failsafe.heartbeat = Some(heartbeat_from("b", Duration::from_secs(31), now));
    assert_eq!(
        decide(&ok(cluster(None)), &l, now).actions,
        vec![Action::AcquireLock]
    );
    // A fresh one, but failsafe mode off: race as before.
    l.failsafe.heartbeat = Some(heartbeat_from("b", Duration::from_secs(1), now));
    l.failsafe.enabled = false;
    assert_eq!(
        decide(&ok(cluster(None)), &l, now).actions,
        vec![Action::AcquireLock]
    );
}

#[test]
fn failsafe_key_not_listing_me_bars_the_race() {
    let mut l = local(Some(PgRole::Replica));
    l.failsafe.enabled = true;
    let mut c = cluster(None);
    c.failsafe = Some(fs_key(&["b", "c"]));
    let d = run(&ok(c.clone()), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    // Listed: race as usual.
    c.failsafe = Some(fs_key(&["a", "b", "c"]));
    assert_eq!(run(&ok(c.clone()), &l).actions, vec![Action::AcquireLock]);
    // An empty key does not bar anyone; neither does failsafe off.
    c.failsafe = Some(fs_key(&[]));
    assert_eq!(run(&ok(c.clone()), &l).actions, vec![Action::AcquireLock]);
    c.failsafe = Some(fs_key(&["b", "c"]));
    l.failsafe.enabled = false;
    assert_eq!(run(&ok(c), &l).actions, vec![Action::AcquireLock]);
}
// --- replicatefrom (docs/ha.md §7) ---

fn replicating_from(target: &str) -> LocalView {
    let mut l = local(Some(PgRole::Replica));
    l.tags.replicatefrom = Some(target.into());
    l
}
#[test]
fn replicatefrom_running_member_is_followed_instead_of_the_leader() {
    let mut l = replicating_from("c");
    l.pg.following = Some("b".into());
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(
        d.actions,
        vec![Action::Follow {
            upstream: up("c", 5434)
        }]
    );
    l.pg.following = Some("c".into());
    assert!(run(&ok(cluster(Some("b"))), &l).actions.is_empty());
}
#[test]
fn replicatefrom_member_not_running_or_gone_falls_back_to_the_leader() {
    let mut l = replicating_from("c");
    l.pg.following = Some("c".into());
    let mut c = cluster(Some("b"));
    c.members[2].data.state = "stopped".into();
    let want = vec![Action::Follow {
        upstream: up("b", 5433),
    }];
    assert_eq!(run(&ok(c.clone()), &l).actions, want);
    c.members.retain(|m| m.name != "c");
    assert_eq!(run(&ok(c), &l).actions, want);
}
#[test]
fn replicatefrom_loop_or_self_streams_from_the_leader() {
    let mut c = cluster(Some("b"));
    c.members[2].data.tags.replicatefrom = Some("a".into());
    let mut l = replicating_from("c");
    l.pg.following = Some("b".into());
    assert!(run(&ok(c), &l).actions.is_empty());
    let l = replicating_from("a");
    assert_eq!(
        run(&ok(cluster(Some("b"))), &l).actions,
        vec![Action::Follow {
            upstream: up("b", 5433)
        }]
    );
}
#[test]
fn replicatefrom_the_leader_follows_the_leader() {
    let mut l = replicating_from("b");
    l.pg.following = Some("b".into());
    assert!(run(&ok(cluster(Some("b"))), &l).actions.is_empty());
}

// --- history key ---

fn history(lines: &[(u64, Option<&str>)]) -> Option<Vec<crate::dcs::HistoryLine>> {
    Some(
        lines
            .iter()
            .map(|(tl, leader)| crate::dcs::HistoryLine {
                timeline: *tl,
                lsn: 100,
                reason: "no recovery target specified".into(),
                timestamp: leader.map(|_| "2026-01-01T00:00:00+00:00".into()),
                new_leader: leader.map(str::to_owned),
            })
            .collect(),
    )
}

#[test]
fn leader_on_a_new_timeline_writes_history() {
    let mut l = local(Some(PgRole::Primary));
    l.pg.timeline = Some(2);
    let mut c = cluster(Some("a"));
    let want = vec![Action::RenewLock, Action::WriteHistory];
    // Missing key, a key one timeline behind, a newest line without leader.
    for h in [None, history(&[]), history(&[(1, None)])] {
        c.history = h.clone();
        assert_eq!(run(&ok(c.clone()), &l).actions, want, "{h:?}");
    }
    // Up to date: just renew.
    c.history = history(&[(1, Some("a"))]);
    assert_eq!(run(&ok(c.clone()), &l).actions, vec![Action::RenewLock]);
    // Timeline 1: `[]` or missing is right; a stale non-empty key is cleared.
    l.pg.timeline = Some(1);
    for h in [None, history(&[])] {
        c.history = h;
        assert_eq!(run(&ok(c.clone()), &l).actions, vec![Action::RenewLock]);
    }
    c.history = history(&[(1, Some("b"))]);
    assert_eq!(run(&ok(c), &l).actions, want);
}

#[test]
fn replicas_never_write_history() {
    let mut l = local(Some(PgRole::Replica));
    l.pg.timeline = Some(5);
    let d = run(&ok(cluster(Some("b"))), &l);
    assert!(!d.actions.contains(&Action::WriteHistory), "{d:?}");
}

#[test]
fn no_leader_replica_behind_cluster_timeline_does_not_race() {
    let mut c = cluster(None);
    c.history = Some(vec![crate::dcs::HistoryLine {
        timeline: 1,
        lsn: 10,
        reason: "x".into(),
        timestamp: None,
        new_leader: Some("b".into()),
    }]);
    let mut l = local(Some(PgRole::Replica));
    l.pg.timeline = Some(1);
    let d = run(&ok(c.clone()), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("timeline"), "{d:?}");
    // On the cluster's timeline it races as usual.
    l.pg.timeline = Some(2);
    assert_eq!(run(&ok(c), &l).actions, vec![Action::AcquireLock]);
}

#[test]
fn no_leader_peer_on_an_older_timeline_is_not_ahead() {
    let mut l = local(Some(PgRole::Replica));
    l.pg.timeline = Some(3);
    let mut p = peer("b", PgRole::Replica, 5000);
    if let Some(r) = p.reply.as_mut() {
        r.timeline = Some(2);
    }
    l.peers = vec![p];
    assert_eq!(
        run(&ok(cluster(None)), &l).actions,
        vec![Action::AcquireLock]
    );
}

#[test]
fn no_leader_peer_on_a_newer_timeline_is_ahead_whatever_its_lsn() {
    let mut l = local(Some(PgRole::Replica));
    l.pg.timeline = Some(1);
    let mut p = peer("b", PgRole::Replica, 10);
    if let Some(r) = p.reply.as_mut() {
        r.timeline = Some(2);
    }
    l.peers = vec![p];
    let d = run(&ok(cluster(None)), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("newer timeline"), "{d:?}");
}
// --- switchover / manual failover (docs/ha.md §6) ---

pub(super) fn with_failover(mut c: Cluster, leader: Option<&str>, member: Option<&str>) -> Cluster {
    c.failover = Some(crate::dcs::Versioned {
        value: crate::dcs::Failover {
            leader: leader.map(Into::into),
            member: member.map(Into::into),
            scheduled_at: None,
        },
        version: crate::dcs::Version::from_int(7),
    });
    c
}
fn is_graceful(d: &Decision) -> bool {
    d.actions.contains(&Action::Demote {
        mode: DemoteMode::Graceful,
    })
}
fn clears(d: &Decision) -> bool {
    d.actions.contains(&Action::ClearFailover {
        version: crate::dcs::Version::from_int(7),
    })
}
#[test]
fn leader_demotes_gracefully_for_an_eligible_candidate() {
    let c = with_failover(cluster(Some("a")), Some("a"), Some("b"));
    let mut l = local(Some(PgRole::Primary));
    l.peers = vec![
        peer("b", PgRole::Replica, 1000),
        peer("c", PgRole::Replica, 1000),
    ];
    let d = run(&ok(c), &l);
    assert!(is_graceful(&d), "{d:?}");
    assert_eq!(d.actions[0], Action::RenewLock);
}
#[test]
fn leader_demotes_for_switchover_to_any_member() {
    let c = with_failover(cluster(Some("a")), Some("a"), None);
    let mut l = local(Some(PgRole::Primary));
    l.peers = vec![peer("c", PgRole::Replica, 900)];
    assert!(is_graceful(&run(&ok(c), &l)));
}
#[test]
fn failover_request_without_leader_field_is_honoured_by_the_leader() {
    let c = with_failover(cluster(Some("a")), None, Some("b"));
    let mut l = local(Some(PgRole::Primary));
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    assert!(is_graceful(&run(&ok(c), &l)));
}
#[test]
fn leader_clears_a_request_no_candidate_can_serve() {
    let c = with_failover(cluster(Some("a")), Some("a"), Some("b"));
    let mut l = local(Some(PgRole::Primary));
    // b unreachable, c eligible but not the named candidate.
    l.peers = vec![
        PeerStatus {
            name: "b".into(),
            reply: None,
        },
        peer("c", PgRole::Replica, 1000),
    ];
    let d = run(&ok(c.clone()), &l);
    assert!(!is_graceful(&d) && clears(&d), "{d:?}");
    // b tagged nofailover
    let mut nb = peer("b", PgRole::Replica, 1000);
    nb.reply.as_mut().unwrap().tags.nofailover = true;
    l.peers = vec![nb];
    let d = run(&ok(c.clone()), &l);
    assert!(!is_graceful(&d) && clears(&d), "{d:?}");
    // b too far behind
    l.pg.lsn = Some(10 << 20);
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    let d = run(&ok(c), &l);
    assert!(!is_graceful(&d) && clears(&d), "{d:?}");
}
#[test]
fn leader_clears_requests_naming_another_leader_or_itself() {
    let mut l = local(Some(PgRole::Primary));
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    let d = run(
        &ok(with_failover(cluster(Some("a")), Some("c"), Some("b"))),
        &l,
    );
    assert!(clears(&d) && !is_graceful(&d));
    let d = run(&ok(with_failover(cluster(Some("a")), None, Some("a"))), &l);
    assert!(clears(&d) && !is_graceful(&d));
}
#[test]
fn scheduled_switchover_waits_fires_and_expires() {
    let mut c = with_failover(cluster(Some("a")), Some("a"), Some("b"));
    c.failover.as_mut().unwrap().value.scheduled_at = Some("2030-01-01T00:00:00+00:00".into());
    let t = iso8601::parse("2030-01-01T00:00:00Z").unwrap();
    let mut l = local(Some(PgRole::Primary));
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    l.switchover.now_unix = t - 60.0;
    let d = run(&ok(c.clone()), &l);
    assert!(!is_graceful(&d) && !clears(&d), "waits: {d:?}");
    l.switchover.now_unix = t + 1.0;
    assert!(is_graceful(&run(&ok(c.clone()), &l)), "due");
    // loop_wait 10: more than 15 s late is dropped
    l.switchover.now_unix = t + 16.0;
    let d = run(&ok(c.clone()), &l);
    assert!(clears(&d) && !is_graceful(&d), "overdue: {d:?}");
    assert_eq!(
        switchover::seconds_until_due(&c.failover.as_ref().unwrap().value, t - 5.0),
        Some(5.0)
    );
}
#[test]
fn candidate_takes_the_lock_once_it_has_the_old_leaders_last_wal() {
    let mut c = with_failover(cluster(None), Some("b"), Some("a"));
    c.status.optime = Some(2000);
    let mut l = local(Some(PgRole::Replica));
    l.peers = vec![peer("c", PgRole::Replica, 3000)];
    let d = run(&ok(c.clone()), &l);
    assert!(d.actions.is_empty(), "waits for WAL: {d:?}");
    l.pg.lsn = Some(2000);
    let d = run(&ok(c), &l);
    assert_eq!(d.actions, vec![Action::AcquireLock], "{d:?}");
}
#[test]
fn others_stand_back_while_the_candidate_can_take_over() {
    let mut c = with_failover(cluster(None), Some("b"), Some("c"));
    c.status.optime = Some(1000);
    let mut l = local(Some(PgRole::Replica));
    l.pg.lsn = Some(5000); // even ahead of the candidate
    l.peers = vec![peer("c", PgRole::Replica, 1000)];
    assert!(run(&ok(c.clone()), &l).actions.is_empty());
    // candidate unreachable: ordinary race without the old leader
    l.peers = vec![
        PeerStatus {
            name: "c".into(),
            reply: None,
        },
        peer("b", PgRole::Replica, 9000),
    ];
    assert_eq!(run(&ok(c), &l).actions, vec![Action::AcquireLock]);
}
#[test]
fn switchover_to_any_excludes_the_old_leader_and_ignores_the_lag_limit() {
    let mut c = with_failover(cluster(None), Some("b"), None);
    c.status.optime = Some(1000);
    let mut l = local(Some(PgRole::Replica));
    l.pg.lsn = Some(1000);
    l.peers = vec![
        peer("b", PgRole::Replica, 1200),
        peer("c", PgRole::Replica, 900),
    ];
    assert_eq!(run(&ok(c), &l).actions, vec![Action::AcquireLock]);
}
#[test]
fn old_leader_races_only_when_no_one_else_can() {
    let mut c = with_failover(cluster(None), Some("a"), None);
    c.status.optime = Some(1000);
    let mut l = local(Some(PgRole::Replica));
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    assert!(run(&ok(c.clone()), &l).actions.is_empty());
    l.peers = vec![peer("b", PgRole::Replica, 500)]; // b lacks the final WAL
    assert_eq!(run(&ok(c), &l).actions, vec![Action::AcquireLock]);
}
#[test]
fn race_winner_clears_the_request_when_promoting() {
    let c = with_failover(cluster(Some("a")), Some("b"), Some("a"));
    let d = run(&ok(c), &local(Some(PgRole::Replica)));
    assert_eq!(
        d.actions,
        vec![
            Action::RenewLock,
            Action::Promote,
            Action::ClearFailover {
                version: crate::dcs::Version::from_int(7),
            }
        ]
    );
}
#[test]
fn gracefully_demoted_primary_waits_then_follows_without_rewind() {
    let now = Instant::now();
    let mut l = local(None);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    l.rewind.enabled = true;
    l.switchover.demoted_gracefully_at = Some(now);
    let d = decide(
        &ok(with_failover(cluster(None), Some("a"), Some("b"))),
        &l,
        now,
    );
    assert!(d.actions.is_empty(), "waits for the new leader: {d:?}");
    let d = decide(&ok(cluster(Some("b"))), &l, now);
    assert!(
        matches!(&d.actions[..], [Action::StartReplica { upstream: Some(u) }] if u.name == "b"),
        "{d:?}"
    );
    // After ttl the ordinary rules (rewind) apply again.
    let later = now + Duration::from_secs(31);
    let d = decide(&ok(cluster(Some("b"))), &l, later);
    assert!(matches!(&d.actions[..], [Action::Rewind { .. }]), "{d:?}");
}

// --- pause mode (docs/ha.md §11) ---

fn paused(role: Option<PgRole>) -> LocalView {
    LocalView {
        paused: true,
        ..local(role)
    }
}

fn no_start_stop(d: &Decision) {
    for a in &d.actions {
        assert!(
            !matches!(
                a,
                Action::Promote
                    | Action::Demote { .. }
                    | Action::StartPrimary
                    | Action::StartReplica { .. }
                    | Action::Bootstrap
                    | Action::Clone { .. }
                    | Action::CloneWithoutLeader
                    | Action::Reinitialize { .. }
                    | Action::Rewind { .. }
                    | Action::Fatal { .. }
            ),
            "paused, but {a}: {d:?}"
        );
    }
    assert!(d.reason.starts_with("paused"), "{}", d.reason);
}

#[test]
fn paused_leader_primary_renews() {
    let d = run(&ok(cluster(Some("a"))), &paused(Some(PgRole::Primary)));
    assert_eq!(d.actions, vec![Action::RenewLock]);
    no_start_stop(&d);
}

#[test]
fn paused_lock_holder_replica_releases_instead_of_promoting() {
    // Demoted by hand: the lock goes, nothing is promoted.
    let d = run(&ok(cluster(Some("a"))), &paused(Some(PgRole::Replica)));
    assert_eq!(d.actions, vec![Action::ReleaseLock]);
    no_start_stop(&d);
}

#[test]
fn paused_crashed_leader_releases_the_lock_and_does_not_restart() {
    let mut l = paused(None);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.actions, vec![Action::ReleaseLock]);
    no_start_stop(&d);
}

#[test]
fn paused_stopped_replica_is_not_started() {
    for leader in [Some("b"), None] {
        let d = run(&ok(cluster(leader)), &paused(None));
        assert!(d.actions.is_empty(), "{d:?}");
        no_start_stop(&d);
    }
}

#[test]
fn paused_replica_without_leader_does_not_race() {
    let d = run(&ok(cluster(None)), &paused(Some(PgRole::Replica)));
    assert!(d.actions.is_empty(), "{d:?}");
    no_start_stop(&d);
}

#[test]
fn paused_primary_without_leader_takes_the_lock() {
    let d = run(&ok(cluster(None)), &paused(Some(PgRole::Primary)));
    assert_eq!(d.actions, vec![Action::AcquireLock]);
    no_start_stop(&d);
}

#[test]
fn paused_primary_under_another_leader_warns_but_does_not_demote() {
    let d = run(&ok(cluster(Some("b"))), &paused(Some(PgRole::Primary)));
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("not demoting"), "{}", d.reason);
    no_start_stop(&d);
}

#[test]
fn paused_replica_still_follows_the_leader() {
    let mut l = paused(Some(PgRole::Replica));
    l.pg.following = Some("c".into());
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(
        d.actions,
        vec![Action::Follow {
            upstream: up("b", 5433)
        }]
    );
}

#[test]
fn paused_sysid_mismatch_only_warns() {
    let mut c = cluster(Some("b"));
    c.initialize = Some("7999".into());
    let d = run(&ok(c.clone()), &paused(Some(PgRole::Replica)));
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("WARNING"), "{}", d.reason);
    no_start_stop(&d);
    // The lock holder lets its lock go.
    c.leader = cluster(Some("a")).leader;
    let d = run(&ok(c), &paused(Some(PgRole::Primary)));
    assert_eq!(d.actions, vec![Action::ReleaseLock]);
    no_start_stop(&d);
}

#[test]
fn paused_empty_data_dir_is_neither_bootstrapped_nor_cloned() {
    for leader in [None, Some("b")] {
        let mut c = cluster(leader);
        if leader.is_none() {
            c.initialize = None;
        }
        let l = LocalView {
            paused: true,
            ..empty_local()
        };
        let d = run(&ok(c), &l);
        assert!(d.actions.is_empty(), "{d:?}");
        no_start_stop(&d);
    }
    let l = LocalView {
        paused: true,
        ..empty_local()
    };
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.actions, vec![Action::ReleaseLock]);
}

#[test]
fn paused_former_primary_is_not_rewound() {
    let mut l = paused(None);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    l.rewind = RewindView {
        enabled: true,
        remove_on_failure: true,
        remove_on_diverged: true,
        failed: false,
    };
    let d = run(&ok(cluster(Some("b"))), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    no_start_stop(&d);
}

#[test]
fn paused_dcs_failure_and_lapsed_lease_stop_nothing() {
    let now = Instant::now();
    let mut l = paused(Some(PgRole::Primary));
    l.lease_deadline = Some(now - Duration::from_secs(2));
    let d = decide(&DcsView::Failed(DcsError::Unreachable("x".into())), &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
    no_start_stop(&d);
    l.lease_deadline = None;
    let d = decide(&DcsView::Failed(DcsError::Unreachable("x".into())), &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
    // A lapsed lease with the DCS back: the lock is still mine, renew it.
    l.lease_deadline = Some(now - Duration::from_secs(2));
    let d = decide(&ok(cluster(Some("a"))), &l, now);
    assert_eq!(d.actions, vec![Action::RenewLock]);
}

#[test]
fn resume_returns_to_normal_rules() {
    // The same facts without pause: the crashed leader restarts, the lone
    // replica races.
    let mut l = local(None);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.actions, vec![Action::RenewLock, Action::StartPrimary]);
    let d = run(&ok(cluster(None)), &local(Some(PgRole::Replica)));
    assert_eq!(d.actions, vec![Action::AcquireLock]);
}

// --- pause mode: manual switchover / failover (docs/ha.md §11, §6) ---

#[test]
fn paused_leader_hands_over_only_to_a_named_candidate() {
    let mut l = paused(Some(PgRole::Primary));
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    let d = run(
        &ok(with_failover(cluster(Some("a")), Some("a"), Some("b"))),
        &l,
    );
    assert!(is_graceful(&d), "{d:?}");
    assert!(d.reason.starts_with("paused"), "{}", d.reason);
    // Without a candidate: cleared, no demotion.
    let d = run(&ok(with_failover(cluster(Some("a")), Some("a"), None)), &l);
    assert!(!is_graceful(&d) && clears(&d), "{d:?}");
    // Scheduled: cleared, no demotion.
    let mut c = with_failover(cluster(Some("a")), Some("a"), Some("b"));
    c.failover.as_mut().unwrap().value.scheduled_at = Some("2099-01-01T00:00:00+00:00".into());
    let d = run(&ok(c), &l);
    assert!(!is_graceful(&d) && clears(&d), "{d:?}");
}

#[test]
fn paused_candidate_takes_the_free_lock_and_promotes() {
    let c = with_failover(cluster(None), None, Some("a"));
    let d = run(&ok(c.clone()), &paused(Some(PgRole::Replica)));
    assert_eq!(d.actions, vec![Action::AcquireLock]);
    let mut won = c;
    won.leader = cluster(Some("a")).leader;
    let d = run(&ok(won), &paused(Some(PgRole::Replica)));
    assert_eq!(
        d.actions,
        vec![
            Action::RenewLock,
            Action::Promote,
            Action::ClearFailover {
                version: crate::dcs::Version::from_int(7),
            }
        ]
    );
}

#[test]
fn paused_non_candidate_does_not_race_for_a_manual_failover() {
    let c = with_failover(cluster(None), None, Some("b"));
    let mut l = paused(Some(PgRole::Replica));
    l.peers = vec![PeerStatus {
        name: "b".into(),
        reply: None,
    }];
    let d = run(&ok(c), &l);
    assert!(d.actions.is_empty(), "{d:?}");
}

#[test]
fn paused_old_primary_rejoins_after_a_manual_switchover() {
    let now = Instant::now();
    let mut l = paused(None);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    l.switchover.demoted_gracefully_at = Some(now);
    let d = decide(&ok(cluster(Some("b"))), &l, now);
    assert_eq!(
        d.actions,
        vec![Action::StartReplica {
            upstream: Some(up("b", 5433))
        }]
    );
}

// --- watchdog (docs/ha.md §12) ---

fn wd_failed() -> WatchdogState {
    WatchdogState::Failed("cannot open watchdog device /dev/watchdog".into())
}

fn with_wd(mut l: LocalView, w: WatchdogState) -> LocalView {
    l.watchdog = w;
    l
}

#[test]
fn watchdog_is_armed_after_renewal_while_leading() {
    let c = ok(cluster(Some("a")));
    let l = with_wd(local(Some(PgRole::Primary)), WatchdogState::Ready);
    assert_eq!(
        run(&c, &l).actions,
        [Action::RenewLock, Action::ActivateWatchdog]
    );
    // Armed already, or not used: nothing more.
    for w in [WatchdogState::Active, WatchdogState::Off] {
        let l = with_wd(local(Some(PgRole::Primary)), w);
        assert_eq!(run(&c, &l).actions, [Action::RenewLock]);
    }
}

#[test]
fn watchdog_is_armed_before_promotion() {
    let c = ok(cluster(Some("a")));
    let l = with_wd(local(Some(PgRole::Replica)), WatchdogState::Ready);
    assert_eq!(
        run(&c, &l).actions,
        [Action::RenewLock, Action::ActivateWatchdog, Action::Promote]
    );
    let l = with_wd(local(Some(PgRole::Replica)), WatchdogState::Off);
    assert_eq!(run(&c, &l).actions, [Action::RenewLock, Action::Promote]);
}

#[test]
fn watchdog_is_armed_before_restarting_as_primary() {
    let mut l = with_wd(local(None), WatchdogState::Ready);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    assert_eq!(
        run(&ok(cluster(Some("a"))), &l).actions,
        [
            Action::RenewLock,
            Action::ActivateWatchdog,
            Action::StartPrimary
        ]
    );
}

#[test]
fn watchdog_is_armed_before_taking_the_lock_after_bootstrap() {
    let mut l = with_wd(local(Some(PgRole::Primary)), WatchdogState::Ready);
    l.outcome = Some(JobOutcome::Succeeded(JobKind::Bootstrap));
    let c = Cluster {
        initialize: Some(String::new()),
        ..Default::default()
    };
    assert_eq!(
        run(&ok(c), &l).actions,
        [
            Action::CompleteBootstrap {
                sysid: SYSID.into()
            },
            Action::ActivateWatchdog,
            Action::AcquireLock
        ]
    );
}

#[test]
fn watchdog_is_armed_before_taking_the_lock_in_a_race() {
    let c = ok(cluster(None));
    for role in [PgRole::Replica, PgRole::Primary] {
        let l = with_wd(local(Some(role)), WatchdogState::Ready);
        assert_eq!(
            run(&c, &l).actions,
            [Action::ActivateWatchdog, Action::AcquireLock],
            "{role:?}"
        );
        let l = with_wd(local(Some(role)), WatchdogState::Active);
        assert_eq!(run(&c, &l).actions, [Action::AcquireLock], "{role:?}");
    }
    // The named failover candidate too.
    let c = ok(with_failover(cluster(None), None, Some("a")));
    let l = with_wd(local(Some(PgRole::Replica)), WatchdogState::Ready);
    assert_eq!(
        run(&c, &l).actions,
        [Action::ActivateWatchdog, Action::AcquireLock]
    );
}

#[test]
fn required_watchdog_unusable_lock_holder_replica_releases_instead_of_promoting() {
    let l = with_wd(local(Some(PgRole::Replica)), wd_failed());
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.actions, [Action::ReleaseLock], "{d:?}");
    assert!(
        d.reason.contains("watchdog is required but unusable"),
        "{d:?}"
    );
}

#[test]
fn required_watchdog_unusable_primary_demotes_and_releases() {
    let l = with_wd(local(Some(PgRole::Primary)), wd_failed());
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(
        d.actions,
        [
            Action::Demote {
                mode: DemoteMode::ImmediateNoLock
            },
            Action::ReleaseLock
        ],
        "{d:?}"
    );
}

#[test]
fn required_watchdog_unusable_lock_holder_with_pg_down_releases() {
    let l = with_wd(local(None), wd_failed());
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.actions, [Action::ReleaseLock], "{d:?}");
}

#[test]
fn required_watchdog_unusable_replica_does_not_race() {
    let l = with_wd(local(Some(PgRole::Replica)), wd_failed());
    let d = run(&ok(cluster(None)), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(
        d.reason
            .starts_with("not racing: the watchdog is required but unusable (cannot open"),
        "{d:?}"
    );
    // Even when named as the failover candidate.
    let c = with_failover(cluster(None), None, Some("a"));
    assert!(run(&ok(c), &l).actions.is_empty());
}

#[test]
fn required_watchdog_unusable_primary_without_leader_demotes() {
    let l = with_wd(local(Some(PgRole::Primary)), wd_failed());
    let d = run(&ok(cluster(None)), &l);
    assert_eq!(
        d.actions,
        [Action::Demote {
            mode: DemoteMode::ImmediateNoLock
        }],
        "{d:?}"
    );
}

#[test]
fn required_watchdog_unusable_does_not_bootstrap() {
    let l = with_wd(empty_local(), wd_failed());
    let d = run(&ok(Cluster::default()), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.starts_with("not bootstrapping"), "{d:?}");
    // Automatic without a device: it bootstraps as usual.
    let l = with_wd(empty_local(), WatchdogState::Off);
    assert_eq!(
        run(&ok(Cluster::default()), &l).actions,
        [Action::TakeInitialize, Action::Bootstrap]
    );
    // Usable: armed before claiming initialize, so a node that cannot arm
    // it finds out before it creates a cluster it could not lead.
    let l = with_wd(empty_local(), WatchdogState::Ready);
    assert_eq!(
        run(&ok(Cluster::default()), &l).actions,
        [
            Action::ActivateWatchdog,
            Action::TakeInitialize,
            Action::Bootstrap
        ]
    );
}

#[test]
fn peer_with_failed_watchdog_neither_blocks_the_race_nor_takes_a_switchover() {
    let mut l = local(Some(PgRole::Replica));
    let mut p = peer("b", PgRole::Replica, 5000);
    if let Some(r) = p.reply.as_mut() {
        r.watchdog_failed = true;
    }
    l.peers = vec![p.clone()];
    assert_eq!(run(&ok(cluster(None)), &l).actions, [Action::AcquireLock]);
    // Leader side: the only candidate cannot be promoted, the request is cleared.
    let c = with_failover(cluster(Some("a")), Some("a"), Some("b"));
    let mut l = local(Some(PgRole::Primary));
    l.peers = vec![p];
    let d = run(&ok(c), &l);
    assert!(!is_graceful(&d) && clears(&d), "{d:?}");
}

#[test]
fn paused_leaves_the_watchdog_alone() {
    let c = ok(cluster(Some("a")));
    let l = with_wd(paused(Some(PgRole::Primary)), WatchdogState::Ready);
    assert_eq!(run(&c, &l).actions, [Action::RenewLock]);
    let l = with_wd(paused(Some(PgRole::Primary)), wd_failed());
    let d = run(&c, &l);
    assert_eq!(d.actions, [Action::RenewLock]);
    no_start_stop(&d);
}

// --- primary_start_timeout (docs/ha.md §8.1) ---

fn crashed_primary(timeout_s: u64) -> LocalView {
    let mut l = local(None);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    l.primary_start_timeout = Duration::from_secs(timeout_s);
    l
}

#[test]
fn crashed_primary_with_zero_start_timeout_fails_over_to_a_healthy_replica() {
    let mut l = crashed_primary(0);
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.actions, vec![Action::ReleaseLock], "{}", d.reason);
}

#[test]
fn crashed_primary_with_zero_start_timeout_restarts_without_a_candidate() {
    let c = cluster(Some("a"));
    let mut behind_tl = peer("c", PgRole::Replica, 1000);
    if let Some(r) = behind_tl.reply.as_mut() {
        r.timeline = Some(1);
    }
    let mut lagging = peer("b", PgRole::Replica, 0);
    let mut nofailover = peer("c", PgRole::Replica, 1000);
    if let Some(r) = nofailover.reply.as_mut() {
        r.tags.nofailover = true;
    }
    let mut stopped = peer("b", PgRole::Replica, 1000);
    if let Some(r) = stopped.reply.as_mut() {
        r.running = false;
    }
    let mut c_lag = c.clone();
    c_lag.status.optime = Some(10 << 20);
    let mut c_tl = c.clone();
    c_tl.history = Some(vec![crate::dcs::HistoryLine {
        timeline: 1,
        lsn: 0,
        reason: String::new(),
        timestamp: None,
        new_leader: Some("a".into()),
    }]);
    let cases: Vec<(Cluster, Vec<PeerStatus>)> = vec![
        (c.clone(), vec![]),
        (
            c.clone(),
            vec![PeerStatus {
                name: "b".into(),
                reply: None,
            }],
        ),
        (c.clone(), vec![nofailover]),
        (c.clone(), vec![stopped]),
        (c.clone(), vec![peer("b", PgRole::Primary, 1000)]),
        (
            c_lag,
            vec![{
                lagging.name = "b".into();
                lagging
            }],
        ),
        (c_tl, vec![behind_tl]),
    ];
    for (cl, peers) in cases {
        let mut l = crashed_primary(0);
        l.peers = peers.clone();
        let d = run(&ok(cl), &l);
        assert_eq!(
            d.actions,
            vec![Action::RenewLock, Action::StartPrimary],
            "{peers:?}: {}",
            d.reason
        );
    }
}

#[test]
fn crashed_primary_with_a_start_timeout_restarts_first() {
    let mut l = crashed_primary(300);
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.actions, vec![Action::RenewLock, Action::StartPrimary]);
}

// --- Losing the DCS: read-only (docs/ha.md §9.6) ---

#[test]
fn dcs_down_stopped_former_primary_starts_read_only() {
    // The fence stopped it (or it crashed) while the DCS is unreachable.
    let mut l = local(None);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    let d = run(&dcs_down(), &l);
    assert_eq!(d.actions, vec![START_READ_ONLY], "{}", d.reason);
    // Even with a lease left: never as a primary without the DCS.
    l.lease_deadline = Some(Instant::now() + Duration::from_secs(20));
    assert_eq!(run(&dcs_down(), &l).actions, vec![START_READ_ONLY]);
    // Started read-only before (pg_control says replica now): again.
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: false,
    };
    l.rejoin_pending = true;
    assert_eq!(run(&dcs_down(), &l).actions, vec![START_READ_ONLY]);
    // A job runs (the start itself): nothing.
    l.busy = Some(JobKind::Start);
    assert!(run(&dcs_down(), &l).actions.is_empty());
}

#[test]
fn dcs_down_stopped_replica_stays_stopped() {
    // As in Patroni: nothing starts a replica without the DCS.
    let d = run(&dcs_down(), &local(None));
    assert!(d.actions.is_empty(), "{d:?}");
    let mut empty = empty_local();
    empty.rejoin_pending = true;
    assert!(run(&dcs_down(), &empty).actions.is_empty());
}

#[test]
fn dcs_down_read_only_former_primary_is_left_running() {
    let mut l = local(Some(PgRole::Replica));
    l.rejoin_pending = true;
    assert!(run(&dcs_down(), &l).actions.is_empty());
}

#[test]
fn dcs_back_former_primary_rejoins_through_rewind() {
    // Ran read-only without the DCS; b took over meanwhile.
    let mut l = local(Some(PgRole::Replica));
    l.rejoin_pending = true;
    l.rewind.enabled = true;
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(d.actions, vec![DEMOTE_OFFLINE], "{}", d.reason);
    // Stopped now: pg_control says "shut down in recovery", the flag still
    // makes it a former primary, so pg_rewind runs.
    let mut stopped = local(None);
    stopped.rejoin_pending = true;
    stopped.rewind.enabled = true;
    assert_eq!(
        run(&ok(cluster(Some("b"))), &stopped).actions,
        vec![Action::Rewind {
            from: up("b", 5433)
        }]
    );
    stopped.rewind = RewindView {
        remove_on_diverged: true,
        ..RewindView::default()
    };
    assert_eq!(
        run(&ok(cluster(Some("b"))), &stopped).actions,
        vec![Action::Reinitialize {
            from: up("b", 5433)
        }]
    );
}

#[test]
fn dcs_back_former_primary_without_rewind_follows() {
    let mut l = local(Some(PgRole::Replica));
    l.rejoin_pending = true;
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(
        d.actions,
        vec![Action::Follow {
            upstream: up("b", 5433)
        }]
    );
}

#[test]
fn dcs_back_lock_still_mine_promotes_the_read_only_primary() {
    let mut l = local(Some(PgRole::Replica));
    l.rejoin_pending = true;
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.actions, vec![Action::RenewLock, Action::Promote]);
}

#[test]
fn primary_start_longer_than_the_timeout_fails_over_to_a_candidate() {
    let mut l = crashed_primary(60);
    l.busy = Some(JobKind::Start);
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    let c = ok(cluster(Some("a")));
    // Within the timeout: keep the lock and wait.
    l.starting_primary_for = Some(Duration::from_secs(59));
    assert_eq!(run(&c, &l).actions, vec![Action::RenewLock]);
    // Past it: stop the start, then release the lock.
    l.starting_primary_for = Some(Duration::from_secs(60));
    let d = run(&c, &l);
    assert_eq!(
        d.actions,
        vec![
            Action::Demote {
                mode: DemoteMode::ImmediateNoLock
            },
            Action::ReleaseLock
        ],
        "{}",
        d.reason
    );
    // No candidate: keep waiting, as Patroni does.
    l.peers = vec![PeerStatus {
        name: "b".into(),
        reply: None,
    }];
    assert_eq!(run(&c, &l).actions, vec![Action::RenewLock]);
    // Not the lock holder, or not a start as primary: the usual rule.
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    assert!(run(&ok(cluster(Some("b"))), &l).actions.is_empty());
    l.starting_primary_for = None;
    assert_eq!(run(&c, &l).actions, vec![Action::RenewLock]);
}
