//! The rules of [`Node`]: one test per rule the elector used to decide
//! itself (docs/ha.md §3.1, §9, §10, §13, §14).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::config::Tags;
use crate::dcs::{DcsError, Failover, Leader, Member, MemberData, Versioned};
use crate::ha::rewind::{RewindReport, RewindStep, RewindTool};
use crate::ha::{
    DataDir, DemoteMode, FailsafeAck, FailsafeView, JobOutcome, Next, PgRole, RewindView,
    SwitchoverView, WatchdogState,
};

const SYSID: &str = "7000000000000000001";

fn timing() -> Timing {
    Timing {
        ttl: Duration::from_secs(30),
        loop_wait: Duration::from_secs(10),
        retry_timeout: Duration::from_secs(10),
    }
}

fn ttl() -> Duration {
    timing().ttl
}

fn member(name: &str) -> Member {
    Member {
        name: name.to_owned(),
        data: MemberData {
            api_url: format!("http://{name}:8008/patroni"),
            conn_url: format!("postgres://{name}:5432/postgres"),
            state: "running".into(),
            role: "replica".into(),
            ..Default::default()
        },
        version: crate::dcs::Version::from_int(1),
        session: Some(crate::dcs::SessionId::from_int(1)),
    }
}

/// A cluster of a, b, c with `leader` holding the lock (if any).
fn cluster(leader: Option<&str>) -> Cluster {
    Cluster {
        initialize: Some(SYSID.into()),
        leader: leader.map(|l| Leader {
            name: l.into(),
            version: crate::dcs::Version::from_int(1),
            session: Some(crate::dcs::SessionId::from_int(1)),
        }),
        members: vec![member("a"), member("b"), member("c")],
        ..Default::default()
    }
}

fn pg(role: Option<PgRole>) -> PgFacts {
    PgFacts {
        running: role.is_some(),
        role,
        lsn: Some(1000),
        timeline: Some(1),
        following: None,
    }
}

fn primary() -> PgFacts {
    pg(Some(PgRole::Primary))
}

fn local(role: Option<PgRole>) -> LocalView {
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
        pg: pg(role),
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

fn end<'a>(pg: &'a PgFacts, cluster: Option<&'a Cluster>) -> EndFacts<'a> {
    EndFacts {
        pg,
        busy: None,
        paused: false,
        cluster,
    }
}

/// A node that took the lock at `t` and renewed it in the same cycle.
fn leader_at(t: Instant) -> Node {
    let mut n = Node::new("a");
    n.start_cycle(t);
    n.action_done(
        &Action::AcquireLock,
        ActionResult::Renewed(t + ttl()),
        ttl(),
    );
    n.action_done(&Action::RenewLock, ActionResult::Renewed(t + ttl()), ttl());
    let c = cluster(Some("a"));
    n.finish_cycle(end(&primary(), Some(&c)), t);
    n
}

// ------------------------------------------------------------ the lease

#[test]
fn a_won_race_holds_the_lease_from_the_send_time_and_decides_again() {
    let t = Instant::now();
    let mut n = Node::new("a");
    n.start_cycle(t);
    let sent = t + Duration::from_millis(5);
    let step = n.action_done(
        &Action::AcquireLock,
        ActionResult::Renewed(sent + ttl()),
        ttl(),
    );
    assert_eq!(step.next, Next::Rerun);
    let e = n.finish_cycle(end(&pg(Some(PgRole::Replica)), None), t);
    assert!(e.rerun_now);
    assert_eq!(n.lease_deadline(), Some(sent + ttl()));
    assert!(n.is_leader(t));
}

#[test]
fn a_lost_race_or_bootstrap_race_decides_again_without_a_lease() {
    let t = Instant::now();
    let mut n = Node::new("a");
    n.start_cycle(t);
    let s = n.action_done(&Action::AcquireLock, ActionResult::Refused, ttl());
    assert_eq!(s.next, Next::Rerun);
    let s = n.action_done(&Action::TakeInitialize, ActionResult::Refused, ttl());
    assert_eq!(s.next, Next::Rerun);
    n.finish_cycle(end(&pg(Some(PgRole::Replica)), None), t);
    assert_eq!(n.lease_deadline(), None);
}

#[test]
fn an_existing_initialize_stops_the_cycle() {
    let mut n = Node::new("a");
    n.start_cycle(Instant::now());
    let a = Action::CreateInitialize {
        sysid: SYSID.into(),
    };
    let s = n.action_done(&a, ActionResult::Refused, ttl());
    assert_eq!(s.next, Next::Stop("initialize exists".into()));
}

#[test]
fn a_renewal_moves_the_deadline_to_the_renewal_it_rests_on() {
    let t = Instant::now();
    let mut n = leader_at(t);
    let later = t + Duration::from_secs(10);
    n.start_cycle(later);
    // The keep-alive's renewal, before this cycle: not this answer's time.
    let rests_on = t + Duration::from_secs(8);
    let s = n.action_done(
        &Action::RenewLock,
        ActionResult::Renewed(rests_on + ttl()),
        ttl(),
    );
    assert_eq!(s.next, Next::Continue);
    assert_eq!(s.watchdog, Some(WatchdogOrder::Keepalive));
    let c = cluster(Some("a"));
    let e = n.finish_cycle(end(&primary(), Some(&c)), later);
    assert_eq!(n.lease_deadline(), Some(rests_on + ttl()));
    assert_eq!(e.fence, FenceOrder::Arm(rests_on + ttl()));
    assert_eq!(e.watchdog, WatchdogOrder::Keepalive);
}

/// docs/ha.md §3.1, `RenewLock` "not mine any more" (Patroni's "failed to
/// update leader lock"): the lease is dropped, the cycle decides again at
/// once, the keep-alive stops, and the next decision demotes.
#[test]
fn refresh_failed_drops_the_lease_and_decides_again() {
    let t = Instant::now();
    let mut n = leader_at(t);
    let later = t + Duration::from_secs(10);
    n.start_cycle(later);
    let d = n.decide(
        &DcsView::Ok(cluster(Some("a"))),
        local(Some(PgRole::Primary)),
        later,
    );
    assert_eq!(d.actions.first(), Some(&Action::RenewLock));
    let s = n.action_done(&Action::RenewLock, ActionResult::Refused, ttl());
    assert_eq!(s.next, Next::Rerun);
    assert_eq!(s.watchdog, None);
    let c = cluster(Some("a"));
    let e = n.finish_cycle(end(&primary(), Some(&c)), later);
    assert!(e.rerun_now);
    assert_eq!(n.lease_deadline(), None);
    assert!(!n.is_leader(later));
    // No fresh word: the fence keeps the last order (it stops PostgreSQL at
    // the old lease's fencing point unless a demotion comes first).
    assert_eq!(e.fence, FenceOrder::Keep);
    assert_eq!(n.tick(later, false, &timing()), None, "no keep-alive");
    // The rerun sees b's key and demotes.
    n.start_cycle(later);
    let d = n.decide(
        &DcsView::Ok(cluster(Some("b"))),
        local(Some(PgRole::Primary)),
        later,
    );
    assert!(
        matches!(d.actions.as_slice(), [Action::Demote { .. }, ..]),
        "{d:?}"
    );
}

#[test]
fn a_failed_renewal_stops_the_cycle_and_the_deadline_stands() {
    let t = Instant::now();
    let mut n = leader_at(t);
    n.start_cycle(t + Duration::from_secs(10));
    let s = n.action_done(
        &Action::RenewLock,
        ActionResult::Failed("timeout".into()),
        ttl(),
    );
    assert_eq!(s.next, Next::Stop("timeout".into()));
    let c = cluster(Some("a"));
    let e = n.finish_cycle(end(&primary(), Some(&c)), t + Duration::from_secs(10));
    assert_eq!(n.lease_deadline(), Some(t + ttl()));
    assert_eq!(e.fence, FenceOrder::Keep, "not renewed: no fresh word");
    assert_eq!(e.watchdog, WatchdogOrder::Keep);
}

#[test]
fn a_released_lock_drops_the_lease_even_if_the_delete_fails() {
    let t = Instant::now();
    let mut n = leader_at(t);
    n.start_cycle(t);
    let s = n.action_done(&Action::ReleaseLock, ActionResult::Done, ttl());
    assert_eq!(s.next, Next::Rerun);
    n.finish_cycle(end(&primary(), None), t);
    assert_eq!(n.lease_deadline(), None);
    let mut n = leader_at(t);
    n.start_cycle(t);
    let s = n.action_done(
        &Action::ReleaseLock,
        ActionResult::Failed("x".into()),
        ttl(),
    );
    assert_eq!(s.next, Next::Stop("x".into()));
    n.finish_cycle(end(&primary(), None), t);
    assert_eq!(n.lease_deadline(), None);
}

/// docs/ha.md §3.1: a release that found no key under this process's
/// session deleted nothing; the lock is not mine either way: no lease,
/// decide again at once (as after a release).
#[test]
fn a_release_with_no_key_of_mine_drops_the_lease_and_reruns() {
    let t = Instant::now();
    let mut n = leader_at(t);
    n.start_cycle(t);
    let s = n.action_done(&Action::ReleaseLock, ActionResult::Refused, ttl());
    assert_eq!(s.next, Next::Rerun);
    let e = n.finish_cycle(end(&primary(), None), t);
    assert!(e.rerun_now);
    assert_eq!(n.lease_deadline(), None);
}

#[test]
fn a_demotion_drops_the_lease_and_disarms_fence_and_watchdog() {
    let t = Instant::now();
    let mut n = leader_at(t);
    n.start_cycle(t);
    let a = Action::Demote {
        mode: DemoteMode::ImmediateNoLock,
    };
    let s = n.action_done(&a, ActionResult::Done, ttl());
    assert_eq!(s.next, Next::Continue);
    assert_eq!(s.watchdog, Some(WatchdogOrder::Disable));
    let e = n.finish_cycle(end(&primary(), None), t);
    assert_eq!(n.lease_deadline(), None);
    assert_eq!(e.fence, FenceOrder::Disarm);
    assert_eq!(e.watchdog, WatchdogOrder::Disable);
    // A failed stop drops the lease too, but proves no demotion.
    let mut n = leader_at(t);
    n.start_cycle(t);
    n.action_done(&a, ActionResult::Failed("busy".into()), ttl());
    let e = n.finish_cycle(end(&primary(), None), t);
    assert_eq!(n.lease_deadline(), None);
    assert_eq!(e.fence, FenceOrder::Keep);
}

#[test]
fn a_graceful_step_down_decides_again_and_is_remembered() {
    let t = Instant::now();
    let mut n = leader_at(t);
    n.start_cycle(t);
    let a = Action::Demote {
        mode: DemoteMode::Graceful,
    };
    let status = Status {
        optime: Some(42),
        ..Status::default()
    };
    let s = n.action_done(&a, ActionResult::SteppedDown(status.clone()), ttl());
    assert_eq!(s.next, Next::Rerun);
    assert_eq!(s.watchdog, Some(WatchdogOrder::Disable));
    let stopped = pg(None);
    let e = n.finish_cycle(end(&stopped, None), t);
    assert!(e.rerun_now);
    assert_eq!(e.watchdog, WatchdogOrder::Disable);
    assert_eq!(n.lease_deadline(), None);
    assert_eq!(n.last_status(), Some(&status));
    assert_eq!(n.demoted_gracefully_at, Some(t));
    // The next decision sees the step-down.
    n.start_cycle(t);
    let mut l = local(None);
    l.switchover.demoted_gracefully_at = None;
    n.decide(&DcsView::Ok(cluster(Some("b"))), l, t);
    // A cycle that saw PostgreSQL answer forgets it.
    let replica = pg(Some(PgRole::Replica));
    n.finish_cycle(end(&replica, None), t + Duration::from_secs(1));
    assert_eq!(n.demoted_gracefully_at, None);
}

#[test]
fn a_lapsed_lease_is_carried_on_as_none() {
    let t = Instant::now();
    let mut n = leader_at(t);
    let late = t + ttl() + Duration::from_secs(1);
    n.start_cycle(late);
    n.decide(
        &DcsView::Ok(cluster(Some("a"))),
        local(Some(PgRole::Primary)),
        late,
    );
    n.finish_cycle(end(&primary(), None), late);
    assert_eq!(n.lease_deadline(), None);
}

#[test]
fn the_decision_sees_the_lease_a_keepalive_gave_during_the_cycle() {
    let t = Instant::now();
    let mut n = leader_at(t);
    let k_at = t + Duration::from_secs(8);
    n.start_cycle(k_at);
    let k = n.tick(k_at, false, &timing()).expect("allowed");
    assert_eq!(
        n.keepalive_answered(
            k,
            KeepaliveAnswer::Alive {
                until: k_at + ttl()
            },
            &timing()
        ),
        KeepaliveOutcome::Extended(k_at + ttl())
    );
    // Decided just past the deadline the cycle started with: the
    // keep-alive's deadline keeps the lease.
    let now = t + ttl() + Duration::from_millis(1);
    let d = n.decide(
        &DcsView::Ok(cluster(Some("a"))),
        local(Some(PgRole::Primary)),
        now,
    );
    assert_eq!(d.actions.first(), Some(&Action::RenewLock), "{d:?}");
    n.finish_cycle(end(&primary(), None), now);
    assert_eq!(n.lease_deadline(), Some(k_at + ttl()));
}

#[test]
fn a_keepalive_only_follows_a_confirmed_lease() {
    let t = Instant::now();
    // Acquired but not renewed: no confirmation yet.
    let mut n = Node::new("a");
    n.start_cycle(t);
    n.action_done(
        &Action::AcquireLock,
        ActionResult::Renewed(t + ttl()),
        ttl(),
    );
    n.finish_cycle(end(&primary(), None), t);
    assert_eq!(n.tick(t, false, &timing()), None);
    let mut n = leader_at(t);
    assert!(n.tick(t, false, &timing()).is_some());
    // PostgreSQL not a primary any more: the confirmation is revoked.
    let mut n = leader_at(t);
    n.start_cycle(t);
    n.action_done(&Action::RenewLock, ActionResult::Renewed(t + ttl()), ttl());
    n.finish_cycle(end(&pg(Some(PgRole::Replica)), None), t);
    assert_eq!(n.tick(t, false, &timing()), None);
}

#[test]
fn a_hold_confirmed_without_a_moved_deadline_still_arms_the_fence() {
    let t = Instant::now();
    let mut n = leader_at(t);
    n.start_cycle(t + Duration::from_secs(1));
    n.action_done(&Action::RenewLock, ActionResult::Renewed(t + ttl()), ttl());
    let e = n.finish_cycle(end(&primary(), None), t + Duration::from_secs(1));
    assert_eq!(e.fence, FenceOrder::Arm(t + ttl()));
}

#[test]
fn an_abandoned_cycle_keeps_the_lease_and_ends_failsafe() {
    let t = Instant::now();
    let mut n = leader_at(t);
    n.failsafe_until = Some(t + ttl());
    n.start_cycle(t);
    assert_eq!(n.abandon_cycle(), Some(false));
    assert_eq!(n.lease_deadline(), Some(t + ttl()));
    assert_eq!(n.failsafe_until, None);
}

#[test]
fn a_fatal_action_ends_the_cycle_and_stops_the_daemon() {
    let t = Instant::now();
    let mut n = Node::new("a");
    n.start_cycle(t);
    let a = Action::Fatal {
        reason: "sysid".into(),
    };
    assert_eq!(
        n.action_done(&a, ActionResult::Done, ttl()).next,
        Next::Fatal("sysid".into())
    );
    let e = n.finish_cycle(end(&pg(None), None), t);
    assert_eq!(e.fatal.as_deref(), Some("sysid"));
}

#[test]
fn a_started_bootstrap_keeps_the_watchdog_alive() {
    let t = Instant::now();
    let mut n = Node::new("a");
    n.start_cycle(t);
    n.action_done(&Action::Bootstrap, ActionResult::Done, ttl());
    let e = n.finish_cycle(end(&pg(None), None), t);
    assert_eq!(e.watchdog, WatchdogOrder::Keepalive);
}

#[test]
fn a_repeated_steady_decision_is_recognised() {
    let t = Instant::now();
    let mut n = leader_at(t);
    n.start_cycle(t);
    let d = n.decide(
        &DcsView::Ok(cluster(Some("a"))),
        local(Some(PgRole::Primary)),
        t,
    );
    assert!(!n.is_repeat(&d), "first time");
    n.finish_cycle(end(&primary(), None), t);
    assert!(n.is_repeat(&d));
}

// ------------------------------------------------------------ failsafe

fn failsafe_key() -> BTreeMap<String, String> {
    ["a", "b"]
        .iter()
        .map(|m| ((*m).to_owned(), format!("http://{m}:8008/patroni")))
        .collect()
}

fn failed() -> DcsView {
    DcsView::Failed(DcsError::Unreachable("test".into()))
}

#[test]
fn failsafe_confirmations_are_asked_of_the_last_known_key() {
    let t = Instant::now();
    let mut n = leader_at(t);
    let mut c = cluster(Some("a"));
    c.failsafe = Some(failsafe_key());
    n.start_cycle(t);
    n.finish_cycle(end(&primary(), Some(&c)), t);
    n.start_cycle(t);
    assert_eq!(
        n.failsafe_to_confirm(&failed(), &primary(), true, t),
        Some(failsafe_key())
    );
    assert_eq!(
        n.failsafe_to_confirm(&failed(), &primary(), false, t),
        None,
        "mode off"
    );
    let r = pg(Some(PgRole::Replica));
    assert_eq!(
        n.failsafe_to_confirm(&failed(), &r, true, t),
        None,
        "not primary"
    );
    let ok = DcsView::Ok(c.clone());
    assert_eq!(
        n.failsafe_to_confirm(&ok, &primary(), true, t),
        None,
        "DCS fine"
    );
    let mut other = Node::new("c");
    other.failsafe_last_known = Some(failsafe_key());
    other.start_cycle(t);
    assert_eq!(
        other.failsafe_to_confirm(&failed(), &primary(), true, t),
        None,
        "not listed"
    );
}

#[test]
fn failsafe_confirmations_stand_in_for_the_lease() {
    let t = Instant::now();
    let mut n = Node::new("a");
    n.failsafe_last_known = Some(failsafe_key());
    n.start_cycle(t);
    let asked = t + Duration::from_millis(100);
    assert!(
        n.failsafe_to_confirm(&failed(), &primary(), true, asked)
            .is_some()
    );
    let mut l = local(Some(PgRole::Primary));
    l.failsafe.enabled = true;
    l.failsafe.acks = Some(vec![FailsafeAck {
        name: "b".into(),
        accepted: true,
    }]);
    let d = n.decide(&failed(), l, asked);
    assert_eq!(d.actions, vec![Action::StayPrimaryOnFailsafe], "{d:?}");
    n.action_done(&Action::StayPrimaryOnFailsafe, ActionResult::Done, ttl());
    let e = n.finish_cycle(end(&primary(), None), asked);
    assert_eq!(e.failsafe_changed, Some(true));
    assert_eq!(e.fence, FenceOrder::Arm(asked + ttl()));
    assert_eq!(e.watchdog, WatchdogOrder::Keepalive);
    assert!(n.is_leader(asked));
    assert!(n.failsafe_active(asked, ttl()));
    // The next cycle decides on them as on a lease: no confirmation this
    // time, but the next decision still comes before the fencing point.
    let later = asked + Duration::from_secs(5);
    n.start_cycle(later);
    let mut l = local(Some(PgRole::Primary));
    l.failsafe.enabled = true;
    let d = n.decide(&failed(), l, later);
    assert!(d.actions.is_empty(), "{d:?}");
    let e = n.finish_cycle(end(&primary(), None), later);
    assert_eq!(e.failsafe_changed, Some(false));
    assert!(!n.is_leader(later));
}

#[test]
fn a_leader_heartbeat_is_news_once_per_leader_and_ttl() {
    let t = Instant::now();
    let mut n = Node::new("b");
    let hb = |name: &str, at| LeaderHeartbeat {
        name: name.into(),
        conn_url: String::new(),
        api_url: String::new(),
        at,
    };
    assert!(n.heartbeat(hb("a", t), ttl()));
    assert!(!n.heartbeat(hb("a", t + Duration::from_secs(5)), ttl()));
    assert!(n.heartbeat(hb("c", t + Duration::from_secs(6)), ttl()));
    assert!(n.heartbeat(hb("c", t + Duration::from_secs(40)), ttl()));
    assert!(n.failsafe_active(t + Duration::from_secs(41), ttl()));
    assert!(!n.failsafe_active(t + Duration::from_secs(71), ttl()));
    assert!(!n.is_leader(t + Duration::from_secs(41)));
}

// ------------------------------------------------------------ peers

fn names(p: &[Peer]) -> Vec<&str> {
    p.iter().map(|p| p.name.as_str()).collect()
}

#[test]
fn a_race_asks_every_known_member_but_me() {
    let mut n = Node::new("a");
    let mut c = cluster(None);
    c.members[1].data.api_url.clear();
    let r = pg(Some(PgRole::Replica));
    assert_eq!(
        names(&n.peers_to_ask(&c, &r, false)),
        ["c"],
        "b has no address"
    );
    // A member seen earlier whose key expired is asked too.
    n.seen_members
        .insert("d".into(), "http://d:8008/patroni".into());
    assert_eq!(names(&n.peers_to_ask(&c, &r, false)), ["c", "d"]);
    // In failsafe mode, the members only the failsafe key lists.
    c.failsafe = Some(
        [("e".to_owned(), "http://e:8008/patroni".to_owned())]
            .into_iter()
            .collect(),
    );
    assert_eq!(names(&n.peers_to_ask(&c, &r, false)), ["c", "d"]);
    assert_eq!(names(&n.peers_to_ask(&c, &r, true)), ["c", "e", "d"]);
}

#[test]
fn peers_are_asked_only_in_a_race_or_a_switchover() {
    let n = Node::new("a");
    let r = pg(Some(PgRole::Replica));
    assert!(n.peers_to_ask(&cluster(Some("b")), &r, false).is_empty());
    assert!(n.peers_to_ask(&cluster(None), &primary(), false).is_empty());
    assert!(
        n.peers_to_ask(&cluster(Some("a")), &primary(), false)
            .is_empty()
    );
    let mut c = cluster(Some("a"));
    c.failover = Some(Versioned {
        value: Failover::default(),
        version: crate::dcs::Version::from_int(1),
    });
    assert_eq!(names(&n.peers_to_ask(&c, &primary(), false)), ["b", "c"]);
    assert!(n.peers_to_ask(&c, &r, false).is_empty(), "not a primary");
}

#[test]
fn a_lock_holder_with_postgres_down_asks_for_failover_candidates() {
    // docs/ha.md §8.1: primary_start_timeout needs to know who could take over.
    let n = Node::new("a");
    let down = pg(None);
    assert_eq!(
        names(&n.peers_to_ask(&cluster(Some("a")), &down, false)),
        ["b", "c"]
    );
    assert!(n.peers_to_ask(&cluster(Some("b")), &down, false).is_empty());
}

#[test]
fn members_seen_in_a_cycle_are_remembered() {
    let t = Instant::now();
    let mut n = Node::new("a");
    n.start_cycle(t);
    let c = cluster(Some("b"));
    n.finish_cycle(end(&pg(Some(PgRole::Replica)), Some(&c)), t);
    let empty = Cluster {
        members: vec![member("a")],
        ..cluster(None)
    };
    let r = pg(Some(PgRole::Replica));
    assert_eq!(names(&n.peers_to_ask(&empty, &r, false)), ["b", "c"]);
}

// ------------------------------------------------------------ slots

#[test]
fn only_the_lock_holder_using_slots_retains_slots() {
    let t = Instant::now();
    let mut n = Node::new("a");
    let ttl = Duration::from_secs(1800);
    let mine = cluster(Some("a"));
    assert!(!n.retain_slots(Some(&mine), true, ttl, t).is_empty());
    assert!(
        n.retain_slots(Some(&mine), false, ttl, t).is_empty(),
        "use_slots off"
    );
    assert!(
        n.retain_slots(Some(&cluster(Some("b"))), true, ttl, t)
            .is_empty()
    );
    assert!(
        n.retain_slots(None, true, ttl, t).is_empty(),
        "DCS read failed"
    );
}

// ------------------------------------------------------------ shutdown

#[test]
fn shutdown_stops_postgres_and_releases_a_held_lock_unless_paused() {
    let t = Instant::now();
    assert_eq!(
        Node::new("a").shutdown(false),
        ShutdownPlan::Stop {
            release_lock: false
        }
    );
    let n = leader_at(t);
    assert_eq!(n.shutdown(false), ShutdownPlan::Stop { release_lock: true });
    assert_eq!(n.shutdown(true), ShutdownPlan::LeaveRunning);
}

// ------------------------------------------------------------ scheduling

#[test]
fn the_next_cycle_is_due_loop_wait_after_the_last_start_or_at_a_switchover() {
    let t = Instant::now();
    let wait = Duration::from_secs(10);
    let now = t + Duration::from_secs(2);
    assert_eq!(next_cycle_due(t, now, wait, None), t + wait);
    let soon = Some(Duration::from_secs(3));
    assert_eq!(
        next_cycle_due(t, now, wait, soon),
        now + Duration::from_secs(3)
    );
    let late = Some(Duration::from_secs(30));
    assert_eq!(next_cycle_due(t, now, wait, late), t + wait);
}

/// docs/ha.md §9.6: a primary demoted to read-only without the DCS keeps
/// counting as a former primary until it rejoined through a rewind.
#[test]
fn a_primary_read_only_without_the_dcs_rejoins_as_a_former_primary() {
    let t = Instant::now();
    let down = DcsView::Failed(DcsError::Unreachable("x".into()));
    let mut n = Node::new("a");
    let step = |n: &mut Node, view: &DcsView, l: LocalView| {
        n.start_cycle(t);
        let d = n.decide(view, l, t);
        n.abandon_cycle();
        d.actions
    };
    // Primary without a lease and without the DCS: read-only.
    let a = step(&mut n, &down, local(Some(PgRole::Primary)));
    assert_eq!(
        a,
        vec![
            Action::Demote {
                mode: DemoteMode::Offline
            },
            Action::StartReplica { upstream: None }
        ]
    );
    assert!(n.rejoin_pending);
    // Running read-only, still without the DCS: stays so.
    assert!(step(&mut n, &down, local(Some(PgRole::Replica))).is_empty());
    assert!(n.rejoin_pending);
    // The DCS is back and b leads: stop, then pg_rewind, which has to wait.
    let mut replica = local(Some(PgRole::Replica));
    replica.rewind.enabled = true;
    let back = DcsView::Ok(cluster(Some("b")));
    let a = step(&mut n, &back, replica);
    assert_eq!(
        a,
        vec![Action::Demote {
            mode: DemoteMode::Offline
        }]
    );
    let mut stopped = local(None);
    stopped.rewind.enabled = true;
    assert!(matches!(
        step(&mut n, &back, stopped.clone())[..],
        [Action::Rewind { .. }]
    ));
    let mut retry = stopped.clone();
    retry.outcome = Some(JobOutcome::RewindFailed(RewindReport::NotRun {
        step: RewindStep::LeaderCheckpoint,
        error: "checkpoint".into(),
    }));
    step(&mut n, &back, retry);
    assert!(n.rejoin_pending, "a rewind that could not run yet keeps it");
    let mut done = local(Some(PgRole::Replica));
    done.outcome = Some(JobOutcome::Succeeded(JobKind::Rewind));
    step(&mut n, &back, done);
    assert!(!n.rejoin_pending);
    // From now on a stopped replica is started as one.
    assert!(matches!(
        step(&mut n, &back, stopped)[..],
        [Action::StartReplica { upstream: Some(_) }]
    ));
}

#[test]
fn a_read_only_primary_that_leads_again_is_no_former_primary() {
    let t = Instant::now();
    let down = DcsView::Failed(DcsError::Unreachable("x".into()));
    let mut n = Node::new("a");
    n.start_cycle(t);
    n.decide(&down, local(Some(PgRole::Primary)), t);
    n.abandon_cycle();
    assert!(n.rejoin_pending);
    // The lock is still mine when the DCS answers: promote, done.
    n.start_cycle(t);
    let d = n.decide(
        &DcsView::Ok(cluster(Some("a"))),
        local(Some(PgRole::Replica)),
        t,
    );
    n.abandon_cycle();
    assert!(d.actions.contains(&Action::Promote), "{d:?}");
    assert!(!n.rejoin_pending);
}

/// docs/ha.md §8.2: a stopped former primary beside leader b.
fn stopped_former_primary(remove_on_failure: bool) -> LocalView {
    let mut l = local(None);
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    l.rewind = RewindView {
        enabled: true,
        remove_on_failure,
        ..Default::default()
    };
    l
}

fn pg_rewind_failed() -> JobOutcome {
    JobOutcome::RewindFailed(RewindReport::ToolFailed {
        tool: RewindTool::PgRewind,
        status: Some("exit status: 1".into()),
        stderr: vec!["pg_rewind: error: could not find previous WAL record".into()],
        error: "pg_rewind failed".into(),
    })
}

fn cycle_actions(n: &mut Node, l: LocalView, t: Instant) -> Vec<Action> {
    n.start_cycle(t);
    let d = n.decide(&DcsView::Ok(cluster(Some("b"))), l, t);
    for a in &d.actions {
        n.action_done(a, ActionResult::Done, ttl());
    }
    n.abandon_cycle();
    d.actions
}

/// The node classifies the rewind job's report and keeps the failure: it
/// is shown once, and the node stays stopped on later cycles, whatever
/// the caller says.
#[test]
fn a_failed_rewind_is_shown_once_and_kept() {
    let t = Instant::now();
    let mut n = Node::new("a");
    let mut l = stopped_former_primary(false);
    l.outcome = Some(pg_rewind_failed());
    assert_eq!(cycle_actions(&mut n, l, t), [Action::ShowRewindFailed]);
    assert!(n.rewind_failed());
    // Later cycles: no outcome; the caller's `failed: false` is ignored.
    let a = cycle_actions(&mut n, stopped_former_primary(false), t);
    assert!(a.is_empty(), "{a:?}");
    assert!(n.rewind_failed());
}

/// A report `ha::rewind` calls a retry leaves nothing behind: the next
/// cycle rewinds again.
#[test]
fn a_rewind_that_could_not_run_is_retried() {
    let t = Instant::now();
    let mut n = Node::new("a");
    let mut l = stopped_former_primary(false);
    l.outcome = Some(JobOutcome::RewindFailed(RewindReport::NotRun {
        step: RewindStep::LeaderCheckpoint,
        error: "leader unreachable".into(),
    }));
    assert!(cycle_actions(&mut n, l, t).is_empty());
    assert!(!n.rewind_failed());
    assert!(matches!(
        cycle_actions(&mut n, stopped_former_primary(false), t)[..],
        [Action::Rewind { .. }]
    ));
}

/// With `remove_data_directory_on_rewind_failure` the failure is shown and
/// the rebuild starts in the same cycle; the rebuild ends the state.
#[test]
fn a_failed_rewind_with_removal_rebuilds_and_the_rebuild_clears_it() {
    let t = Instant::now();
    let mut n = Node::new("a");
    let mut l = stopped_former_primary(true);
    l.outcome = Some(pg_rewind_failed());
    let a = cycle_actions(&mut n, l, t);
    assert!(
        matches!(
            a[..],
            [Action::ShowRewindFailed, Action::Reinitialize { .. }]
        ),
        "{a:?}"
    );
    assert!(!n.rewind_failed(), "the rebuild started");
}

/// A rebuild the node did not decide (`POST /reinitialize`) ends the state
/// once the node sees it run.
#[test]
fn a_rebuild_seen_running_clears_a_failed_rewind() {
    let t = Instant::now();
    let mut n = Node::new("a");
    let mut l = stopped_former_primary(false);
    l.outcome = Some(pg_rewind_failed());
    cycle_actions(&mut n, l, t);
    let mut busy = stopped_former_primary(false);
    busy.busy = Some(JobKind::Reinitialize);
    cycle_actions(&mut n, busy, t);
    assert!(!n.rewind_failed());
}
