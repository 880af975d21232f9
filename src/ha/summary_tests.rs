//! Patroni's words for a cycle (`ha::summary`), one test per message,
//! each through `decide` so the words follow the decision taken.

use std::time::{Duration, Instant};

use super::tests::{cluster, empty_local, local, ok, peer, run};
use super::*;
use crate::config::Tags;
use crate::dcs::DcsError;

fn failed() -> DcsView {
    DcsView::Failed(DcsError::Unreachable("x".into()))
}

#[test]
fn leader_with_the_lock() {
    let d = run(&ok(cluster(Some("a"))), &local(Some(PgRole::Primary)));
    assert_eq!(d.summary, "no action. I am (a), the leader with the lock");
    assert_eq!(d.notes, ["Lock owner: a; I am a"]);
}

#[test]
fn secondary_following_a_leader() {
    let d = run(&ok(cluster(Some("b"))), &local(Some(PgRole::Replica)));
    assert_eq!(
        d.summary,
        "no action. I am (a), a secondary, and following a leader (b)"
    );
    assert_eq!(d.notes, ["Lock owner: b; I am a"]);
}

#[test]
fn paused_summaries_start_with_pause() {
    let mut l = local(Some(PgRole::Primary));
    l.paused = true;
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(
        d.summary,
        "PAUSE: no action. I am (a), the leader with the lock"
    );
}

#[test]
fn race_won_as_a_replica_promoted_self_by_acquiring_the_lock() {
    let d = run(&ok(cluster(None)), &local(Some(PgRole::Replica)));
    assert!(d.actions.contains(&Action::AcquireLock), "{d:?}");
    assert_eq!(
        d.summary,
        "promoted self to leader by acquiring session lock"
    );
    assert!(d.notes.is_empty(), "no Lock owner line in a race: {d:?}");
}

#[test]
fn lock_held_as_a_replica_promoted_self_because_i_had_the_lock() {
    let d = run(&ok(cluster(Some("a"))), &local(Some(PgRole::Replica)));
    assert!(d.actions.contains(&Action::Promote), "{d:?}");
    assert_eq!(
        d.summary,
        "promoted self to leader because I had the session lock"
    );
}

#[test]
fn nofailover_replica_without_leader_is_not_allowed_to_promote() {
    let mut l = local(Some(PgRole::Replica));
    l.tags = Tags {
        nofailover: true,
        ..Tags::default()
    };
    let d = run(&ok(cluster(None)), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert_eq!(
        d.summary,
        "following a different leader because I am not allowed to promote"
    );
    let mut l = local(Some(PgRole::Primary));
    l.tags.nofailover = true;
    let d = run(&ok(cluster(None)), &l);
    assert_eq!(
        d.summary,
        "demoting self because I am not allowed to become primary"
    );
}

#[test]
fn a_peer_ahead_is_named_with_patronis_words() {
    let mut l = local(Some(PgRole::Replica));
    l.peers = vec![peer("b", PgRole::Replica, 2000)];
    let d = run(&ok(cluster(None)), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert_eq!(d.notes, ["Wal position of b is ahead of my wal position"]);
    assert_eq!(
        d.summary,
        "following a different leader because i am not the healthiest node"
    );
}

#[test]
fn a_peer_of_higher_priority_at_the_same_position() {
    let mut l = local(Some(PgRole::Replica));
    let mut b = peer("b", PgRole::Replica, 1000);
    if let Some(r) = b.reply.as_mut() {
        r.tags.failover_priority = Some(5);
    }
    l.peers = vec![b];
    let d = run(&ok(cluster(None)), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert_eq!(
        d.notes,
        ["b has equally tolerable WAL position and priority 5, while this node has priority 1"]
    );
}

#[test]
fn primary_without_the_lock_demotes_self() {
    let d = run(&ok(cluster(Some("b"))), &local(Some(PgRole::Primary)));
    assert_eq!(
        d.summary,
        "demoting self because I do not have the lock and I was a leader"
    );
}

#[test]
fn dcs_lost_demoted_self_or_not_accessible() {
    let mut l = local(Some(PgRole::Primary));
    l.lease_deadline = None;
    let d = run(&failed(), &l);
    assert!(!d.actions.is_empty(), "{d:?}");
    assert_eq!(
        d.summary,
        "demoted self because DCS is not accessible and I was a leader"
    );
    let d = run(&failed(), &local(Some(PgRole::Replica)));
    assert_eq!(d.summary, "DCS is not accessible");
    assert!(d.notes.is_empty());
}

#[test]
fn lapsed_lease_is_a_failed_lock_update() {
    let now = Instant::now();
    let mut l = local(Some(PgRole::Primary));
    l.lease_deadline = now.checked_sub(Duration::from_secs(1));
    let d = decide(&ok(cluster(Some("a"))), &l, now);
    assert_eq!(
        d.summary,
        "demoted self because failed to update leader lock in DCS"
    );
}

#[test]
fn bootstrap_and_clone_summaries() {
    let d = run(&ok(crate::dcs::Cluster::default()), &empty_local());
    assert_eq!(d.summary, "trying to bootstrap a new cluster");
    let d = run(&ok(cluster(Some("b"))), &empty_local());
    assert_eq!(d.summary, "trying to bootstrap from leader 'b'");
    let mut l = empty_local();
    l.can_bootstrap = false;
    let d = run(&ok(crate::dcs::Cluster::default()), &l);
    assert_eq!(d.summary, "waiting for leader to bootstrap");
}

#[test]
fn busy_jobs_and_the_lock_holder_during_them() {
    let mut l = local(None);
    l.busy = Some(JobKind::Start);
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.summary, "updated leader lock during starting");
    l.busy = Some(JobKind::Clone);
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(d.summary, "bootstrap from leader in progress");
}

#[test]
fn stopped_postgres_starts_with_patronis_words_and_lock_owner() {
    let mut l = local(None);
    l.data_dir = DataDir::Initialized {
        sysid: "7000000000000000001".into(),
        was_primary: false,
    };
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(d.summary, "starting as a secondary");
    assert_eq!(d.notes, ["Lock owner: b; I am a"]);
    let d = run(&ok(cluster(None)), &l);
    assert_eq!(d.notes, ["Lock owner: None; I am a"]);
    let mut l = local(None);
    l.data_dir = DataDir::Initialized {
        sysid: "7000000000000000001".into(),
        was_primary: true,
    };
    let d = run(&ok(cluster(Some("a"))), &l);
    assert_eq!(d.summary, "starting primary after failure");
}

#[test]
fn switchover_demotes_myself() {
    let mut c = cluster(Some("a"));
    c.failover = Some(crate::dcs::Versioned {
        value: crate::dcs::Failover {
            leader: Some("a".into()),
            member: Some("b".into()),
            scheduled_at: None,
        },
        version: crate::dcs::Version::from_int(7),
    });
    let mut l = local(Some(PgRole::Primary));
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    let d = run(&ok(c), &l);
    assert_eq!(d.summary, "switchover: demoting myself");
}

#[test]
fn decisions_patroni_has_no_words_for_keep_pgpilots_reason() {
    // A primary serving on its lease without the DCS (docs/ha.md §9.3).
    let now = Instant::now();
    let mut l = local(Some(PgRole::Primary));
    l.lease_deadline = Some(now + Duration::from_secs(25));
    l.timing.loop_wait = Duration::from_secs(2);
    l.timing.retry_timeout = Duration::from_secs(3);
    let d = decide(&failed(), &l, now);
    assert!(d.actions.is_empty(), "{d:?}");
    assert_eq!(d.summary, d.reason);
}

#[test]
fn paused_without_leader_no_action() {
    let mut l = local(Some(PgRole::Replica));
    l.paused = true;
    let d = run(&ok(cluster(None)), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert_eq!(d.summary, "PAUSE: no action. I am (a)");
    let mut l = local(Some(PgRole::Primary));
    l.paused = true;
    let d = run(&ok(cluster(Some("b"))), &l);
    assert_eq!(d.summary, "PAUSE: continue to run as primary without lock");
}
