//! One test per synchronous replication rule (docs/replication-modes.md
//! §3, §4): the picking, the confirmation, the order of the steps, and
//! who may take the leader key.

use std::time::{Duration, Instant};

use super::sync::{Candidates, ReplicaRow, SyncFacts, SyncStep, SyncTracker};
use super::sync_names::{STRICT_PLACEHOLDER, parse_standby_names};
use super::view::PeerReply;
use super::*;
use crate::config::{SyncConfig, SyncMode, Tags};
use crate::dcs::{
    Cluster, Failover, Leader, Member, MemberData, SessionId, SyncState, Version, Versioned,
};

const SYSID: &str = "7000000000000000001";

pub(super) fn member(name: &str, role: &str, port: u16) -> Member {
    Member {
        name: name.to_owned(),
        data: MemberData {
            conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
            api_url: format!("http://127.0.0.1:{}/patroni", port + 1000),
            state: "running".into(),
            role: role.into(),
            ..Default::default()
        },
        version: Version::from_int(1),
        session: Some(SessionId::from_int(1)),
    }
}

/// a, b, c, d; `leader` holds the lock; `sync` is the key's value.
pub(super) fn cluster(leader: Option<&str>, sync: Option<&str>) -> Cluster {
    let role = |n: &str| {
        if leader == Some(n) {
            "primary"
        } else {
            "replica"
        }
    };
    Cluster {
        initialize: Some(SYSID.into()),
        leader: leader.map(|l| Leader {
            name: l.into(),
            version: Version::from_int(1),
            session: Some(SessionId::from_int(1)),
        }),
        members: ["a", "b", "c", "d"]
            .iter()
            .zip(5432..)
            .map(|(n, p)| member(n, role(n), p))
            .collect(),
        sync: sync.map(|s| Versioned {
            value: SyncState::parse(s),
            version: Version::from_int(9),
        }),
        ..Default::default()
    }
}

pub(super) fn on() -> SyncConfig {
    SyncConfig {
        mode: SyncMode::On,
        ..SyncConfig::default()
    }
}

pub(super) fn strict() -> SyncConfig {
    SyncConfig {
        strict: true,
        ..on()
    }
}

pub(super) fn row(name: &str, state: &str, lsn: u64) -> ReplicaRow {
    ReplicaRow {
        name: name.into(),
        sync_state: state.into(),
        lsn: Some(lsn),
    }
}

pub(super) fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub(super) fn key(leader: &str, standbys: &[&str]) -> String {
    SyncState::to_json(leader, &names(standbys), 0)
}

/// The candidates with `ssn` in force, the tracker having seen it at
/// `mark` and now at `lsn`.
pub(super) fn pick(
    cfg: &SyncConfig,
    c: &Cluster,
    ssn: &str,
    mark: u64,
    rows: &[ReplicaRow],
    lsn: u64,
) -> Candidates {
    let mut t = SyncTracker::default();
    t.observe(ssn, mark);
    sync::candidates(cfg, "a", c, rows, lsn, &mut t)
}

fn plan(cfg: &SyncConfig, c: &Cluster, ssn: &str, cand: &Candidates) -> Vec<SyncStep> {
    let n = parse_standby_names(ssn).unwrap_or_default();
    sync::primary_plan(cfg, "a", c, &n, cand).steps
}

pub(super) fn write(standbys: &[&str], version: Option<i64>) -> SyncStep {
    SyncStep::WriteKey {
        standbys: names(standbys),
        quorum: 0,
        version: version.map(Version::from_int),
    }
}

pub(super) fn set(value: &str) -> SyncStep {
    SyncStep::SetNames {
        value: Some(value.into()),
    }
}

// --- picking (Patroni's current_state) ---

#[test]
fn picks_by_sync_priority_then_sync_state_then_position() {
    let mut c = cluster(Some("a"), None);
    c.members[3].data.tags.sync_priority = Some(5);
    let cfg = SyncConfig {
        node_count: 2,
        ..on()
    };
    let rows = [
        row("b", "async", 300),
        row("c", "sync", 100),
        row("d", "async", 50),
    ];
    let got = pick(&cfg, &c, "", 0, &rows, 300);
    assert_eq!(got.active, names(&["d", "c"]));
    // Same priority: `sync` first even if behind, then position.
    let c = cluster(Some("a"), None);
    let got = pick(&cfg, &c, "", 0, &rows, 300);
    assert_eq!(got.active, names(&["c", "b"]));
}

#[test]
fn nosync_stopped_me_and_unknown_are_never_picked() {
    let mut c = cluster(Some("a"), None);
    c.members[1].data.tags.nosync = true;
    c.members[2].data.tags.sync_priority = Some(0);
    c.members[3].data.state = "stopped".into();
    let cfg = SyncConfig {
        node_count: 5,
        ..on()
    };
    let rows = [
        row("a", "async", 1),
        row("b", "async", 1),
        row("c", "async", 1),
        row("d", "async", 1),
        row("x", "async", 1),
        ReplicaRow {
            name: "d".into(),
            sync_state: "async".into(),
            lsn: None,
        },
    ];
    assert!(pick(&cfg, &c, "", 0, &rows, 1).active.is_empty());
}

#[test]
fn nofailover_members_come_last() {
    let mut c = cluster(Some("a"), None);
    c.members[1].data.tags.nofailover = true;
    let rows = [row("b", "sync", 500), row("c", "async", 100)];
    assert_eq!(pick(&on(), &c, "", 0, &rows, 500).active, names(&["c"]));
}

#[test]
fn a_standby_meant_to_cascade_is_not_picked() {
    let mut c = cluster(Some("a"), None);
    c.members[2].data.tags.replicatefrom = Some("b".into());
    let cfg = SyncConfig {
        node_count: 3,
        ..on()
    };
    let rows = [row("b", "async", 10), row("c", "async", 10)];
    assert_eq!(pick(&cfg, &c, "", 0, &rows, 10).active, names(&["b"]));
}

#[test]
fn maximum_lag_on_syncnode_skips_a_lagging_standby() {
    let c = cluster(Some("a"), None);
    let cfg = SyncConfig {
        maximum_lag_on_syncnode: 1000,
        ..on()
    };
    // b is sync but 5000 behind the most advanced standby: c is picked.
    let rows = [row("b", "sync", 1000), row("c", "async", 6000)];
    assert_eq!(pick(&cfg, &c, "b", 0, &rows, 6000).active, names(&["c"]));
    // Alone, a standby is measured against the primary.
    let rows = [row("b", "sync", 1000)];
    assert!(pick(&cfg, &c, "b", 0, &rows, 6000).active.is_empty());
    assert_eq!(
        pick(&on(), &c, "b", 0, &rows, 6000).active,
        names(&["b"]),
        "no limit by default"
    );
}

// --- confirmation (Patroni's _ready_replicas) ---

#[test]
fn a_standby_is_confirmed_only_once_sync_and_caught_up() {
    let c = cluster(Some("a"), Some(&key("a", &[])));
    // Listed, `sync`, but behind the primary's position at the change.
    let rows = [row("b", "sync", 900)];
    assert!(pick(&on(), &c, "b", 1000, &rows, 1000).confirmed.is_empty());
    // Caught up: confirmed.
    let rows = [row("b", "sync", 1000)];
    assert_eq!(
        pick(&on(), &c, "b", 1000, &rows, 1000).confirmed,
        names(&["b"])
    );
    // Not `sync` (potential, async): never.
    let rows = [row("b", "potential", 1000)];
    assert!(pick(&on(), &c, "b", 1000, &rows, 1000).confirmed.is_empty());
    // Not in synchronous_standby_names: never.
    let rows = [row("b", "sync", 1000)];
    assert!(pick(&on(), &c, "c", 1000, &rows, 1000).confirmed.is_empty());
    // Already in the key: confirmed without the position check.
    let c = cluster(Some("a"), Some(&key("a", &["b"])));
    let rows = [row("b", "sync", 900)];
    assert_eq!(
        pick(&on(), &c, "b", 1000, &rows, 1000).confirmed,
        names(&["b"])
    );
}

#[test]
fn a_changed_list_forgets_readiness_of_dropped_names() {
    let c = cluster(Some("a"), Some(&key("a", &[])));
    let mut t = SyncTracker::default();
    t.observe("b", 100);
    let rows = [row("b", "sync", 100)];
    let got = sync::candidates(&on(), "a", &c, &rows, 100, &mut t);
    assert_eq!(got.confirmed, names(&["b"]));
    // The list moves away and back: b must catch up with the new mark.
    t.observe("c", 500);
    t.observe("b", 500);
    let got = sync::candidates(&on(), "a", &c, &rows, 500, &mut t);
    assert!(got.confirmed.is_empty());
}

// --- the order of the steps (docs/replication-modes.md §3) ---

#[test]
fn enabling_writes_an_empty_key_first() {
    let c = cluster(Some("a"), None);
    let cand = Candidates {
        active: names(&["b"]),
        confirmed: vec![],
    };
    assert_eq!(plan(&on(), &c, "", &cand), vec![write(&[], None), set("b")]);
    // A key another leader wrote is taken over with nobody in it.
    let c = cluster(Some("a"), Some(&key("x", &["b"])));
    assert_eq!(
        plan(&on(), &c, "", &cand),
        vec![write(&[], Some(9)), set("b")]
    );
}

#[test]
fn a_new_standby_is_listed_in_postgres_before_the_key() {
    let c = cluster(Some("a"), Some(&key("a", &[])));
    // Picked but not confirmed: only synchronous_standby_names.
    let cand = Candidates {
        active: names(&["b"]),
        confirmed: vec![],
    };
    assert_eq!(plan(&on(), &c, "", &cand), vec![set("b")]);
    assert!(
        plan(&on(), &c, "b", &cand).is_empty(),
        "waits for PostgreSQL"
    );
    // PostgreSQL confirms it: now the key.
    let cand = Candidates {
        active: names(&["b"]),
        confirmed: names(&["b"]),
    };
    assert_eq!(plan(&on(), &c, "b", &cand), vec![write(&["b"], Some(9))]);
    // Steady state: nothing.
    let c = cluster(Some("a"), Some(&key("a", &["b"])));
    assert!(plan(&on(), &c, "b", &cand).is_empty());
}

#[test]
fn a_removed_standby_leaves_the_key_before_postgres() {
    // b was synchronous; it stopped streaming, c is picked instead.
    let c = cluster(Some("a"), Some(&key("a", &["b"])));
    let cand = Candidates {
        active: names(&["c"]),
        confirmed: vec![],
    };
    let steps = plan(&on(), &c, "b", &cand);
    assert_eq!(steps, vec![write(&[], Some(9)), set("c")]);
    // Two synchronous, one leaves: the key keeps the other.
    let cfg = SyncConfig {
        node_count: 2,
        ..on()
    };
    let c = cluster(Some("a"), Some(&key("a", &["b", "c"])));
    let cand = Candidates {
        active: names(&["c", "d"]),
        confirmed: names(&["c"]),
    };
    assert_eq!(
        plan(&cfg, &c, "FIRST 2 (b,c)", &cand),
        vec![write(&["c"], Some(9)), set("FIRST 2 (c,d)")]
    );
}

#[test]
fn more_standbys_are_all_required() {
    let cfg = SyncConfig {
        node_count: 2,
        ..on()
    };
    let c = cluster(Some("a"), Some(&key("a", &[])));
    let cand = Candidates {
        active: names(&["c", "b"]),
        confirmed: vec![],
    };
    assert_eq!(plan(&cfg, &c, "", &cand), vec![set("FIRST 2 (b,c)")]);
    // PostgreSQL's own spelling of the same list is no change.
    assert!(plan(&cfg, &c, "2 (c, b)", &cand).is_empty());
}

#[test]
fn changing_synchronous_node_count_keeps_the_order() {
    // 2 -> 1: c leaves the key before synchronous_standby_names drops it.
    let one = on();
    let c = cluster(Some("a"), Some(&key("a", &["b", "c"])));
    let rows = [row("b", "sync", 100), row("c", "sync", 100)];
    let cand = pick(&one, &c, "FIRST 2 (b,c)", 100, &rows, 100);
    assert_eq!(cand.active, names(&["b"]));
    assert_eq!(
        plan(&one, &c, "FIRST 2 (b,c)", &cand),
        vec![write(&["b"], Some(9)), set("b")]
    );
    // 1 -> 2: c is required by PostgreSQL first, listed once confirmed.
    let two = SyncConfig {
        node_count: 2,
        ..on()
    };
    let c = cluster(Some("a"), Some(&key("a", &["b"])));
    let rows = [row("b", "sync", 100), row("c", "async", 100)];
    let cand = pick(&two, &c, "b", 100, &rows, 100);
    assert_eq!(cand.confirmed, names(&["b"]));
    assert_eq!(plan(&two, &c, "b", &cand), vec![set("FIRST 2 (b,c)")]);
    let rows = [row("b", "sync", 200), row("c", "sync", 200)];
    let cand = pick(&two, &c, "FIRST 2 (b,c)", 200, &rows, 200);
    assert_eq!(
        plan(&two, &c, "FIRST 2 (b,c)", &cand),
        vec![write(&["b", "c"], Some(9))]
    );
    // More wanted than there are standbys: all of them, all required.
    let five = SyncConfig {
        node_count: 5,
        ..on()
    };
    let cand = pick(&five, &c, "FIRST 2 (b,c)", 200, &rows, 200);
    assert_eq!(cand.active.len(), 2);
    assert!(plan(&five, &c, "FIRST 2 (b,c)", &cand).contains(&write(&["b", "c"], Some(9))));
}

#[test]
fn strict_mode_without_a_standby_keeps_commits_waiting() {
    // The key lists b: keep requiring b.
    let c = cluster(Some("a"), Some(&key("a", &["b"])));
    assert!(plan(&strict(), &c, "b", &Candidates::default()).is_empty());
    assert_eq!(
        plan(&strict(), &c, "", &Candidates::default()),
        vec![set("b")]
    );
    // Nobody listed: the placeholder, which no standby matches.
    let c = cluster(Some("a"), Some(&key("a", &[])));
    assert_eq!(
        plan(&strict(), &c, "", &Candidates::default()),
        vec![set(STRICT_PLACEHOLDER)]
    );
}

#[test]
fn non_strict_mode_without_a_standby_goes_asynchronous() {
    // The key lists b: it leaves the key first, then the list empties.
    let c = cluster(Some("a"), Some(&key("a", &["b"])));
    assert_eq!(
        plan(&on(), &c, "b", &Candidates::default()),
        vec![write(&[], Some(9)), set("")]
    );
    let c = cluster(Some("a"), Some(&key("a", &[])));
    assert_eq!(plan(&on(), &c, "b", &Candidates::default()), vec![set("")]);
}

#[test]
fn turning_synchronous_mode_off_deletes_the_key_first() {
    let off = SyncConfig::default();
    let c = cluster(Some("a"), Some(&key("a", &["b"])));
    assert_eq!(
        plan(&off, &c, "b", &Candidates::default()),
        vec![
            SyncStep::DeleteKey {
                version: Version::from_int(9)
            },
            SyncStep::SetNames { value: None }
        ]
    );
    // No key: nothing to order (the elector gives the list back).
    let c = cluster(Some("a"), None);
    assert!(plan(&off, &c, "b", &Candidates::default()).is_empty());
}

#[test]
fn before_promoting_the_key_is_taken() {
    let c = cluster(None, Some(&key("a", &["b", "c"])));
    let p = sync::prepromote_plan(&on(), "b", &c);
    assert_eq!(p.steps, vec![write(&[], Some(9)), set("")]);
    // Strict: the others it listed stay required.
    let p = sync::prepromote_plan(&strict(), "b", &c);
    assert_eq!(
        p.steps,
        vec![write(&["a", "c"], Some(9)), set("FIRST 2 (a,c)")]
    );
    let c = cluster(None, Some(&key("b", &[])));
    let p = sync::prepromote_plan(&strict(), "b", &c);
    assert_eq!(p.steps, vec![write(&[], Some(9)), set(STRICT_PLACEHOLDER)]);
    assert!(
        sync::prepromote_plan(&SyncConfig::default(), "b", &c)
            .steps
            .is_empty()
    );
}

// --- the decision (docs/replication-modes.md §4) ---

/// `ha::tests`' local view, named and with a sync configuration.
pub(super) fn local(name: &str, role: Option<PgRole>, cfg: SyncConfig) -> LocalView {
    LocalView {
        name: name.into(),
        sync: cfg,
        ..super::tests::local(role)
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

pub(super) fn run(c: Cluster, l: &LocalView) -> Decision {
    decide(&DcsView::Ok(c), l, Instant::now())
}

#[test]
fn only_a_listed_standby_races_for_the_leader_key() {
    let c = cluster(None, Some(&key("a", &["b"])));
    // c is ahead of b, but not listed: it stays out, b takes the lock.
    let mut l = local("c", Some(PgRole::Replica), on());
    l.peers = vec![peer("b", PgRole::Replica, 900)];
    let d = run(c.clone(), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("sync key"), "{}", d.reason);
    let mut l = local("b", Some(PgRole::Replica), on());
    l.peers = vec![peer("c", PgRole::Replica, 2000)];
    assert_eq!(run(c.clone(), &l).actions, vec![Action::AcquireLock]);
    // Synchronous mode off: the ordinary race (c is ahead).
    let l = LocalView {
        sync: SyncConfig::default(),
        ..l
    };
    assert!(run(c, &l).actions.is_empty());
}

#[test]
fn no_listed_standby_reachable_means_no_primary() {
    // The key lists b, which is gone; c and d stay replicas.
    let c = cluster(None, Some(&key("a", &["b"])));
    for me in ["c", "d"] {
        let mut l = local(me, Some(PgRole::Replica), on());
        l.peers = vec![PeerStatus {
            name: "b".into(),
            reply: None,
        }];
        assert!(run(c.clone(), &l).actions.is_empty());
    }
}

#[test]
fn an_empty_key_leaves_the_ordinary_race() {
    let c = cluster(None, Some("{}"));
    let l = local("c", Some(PgRole::Replica), on());
    assert_eq!(run(c, &l).actions, vec![Action::AcquireLock]);
}

#[test]
fn the_former_leader_being_ahead_does_not_stop_the_sync_standby() {
    let c = cluster(None, Some(&key("a", &["b"])));
    let mut l = local("b", Some(PgRole::Replica), on());
    l.peers = vec![peer("a", PgRole::Replica, 5000)];
    assert_eq!(run(c, &l).actions, vec![Action::AcquireLock]);
}

#[test]
fn a_manual_failover_may_name_an_asynchronous_member() {
    let mut c = cluster(None, Some(&key("a", &["b"])));
    c.failover = Some(Versioned {
        value: Failover {
            leader: None,
            member: Some("c".into()),
            scheduled_at: None,
        },
        version: Version::from_int(7),
    });
    let l = local("c", Some(PgRole::Replica), on());
    assert_eq!(run(c, &l).actions, vec![Action::AcquireLock]);
}

#[test]
fn a_switchover_goes_only_to_a_synchronous_standby() {
    let mut c = cluster(Some("a"), Some(&key("a", &["b"])));
    c.failover = Some(Versioned {
        value: Failover {
            leader: Some("a".into()),
            member: None,
            scheduled_at: None,
        },
        version: Version::from_int(7),
    });
    let mut l = local("a", Some(PgRole::Primary), on());
    l.peers = vec![peer("c", PgRole::Replica, 1000)];
    let d = run(c.clone(), &l);
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::ClearFailover { .. })),
        "only c, asynchronous, answers: {d:?}"
    );
    l.peers.push(peer("b", PgRole::Replica, 1000));
    let d = run(c, &l);
    assert!(
        d.actions.contains(&Action::Demote {
            mode: DemoteMode::Graceful
        }),
        "{d:?}"
    );
}

#[test]
fn a_crashed_primary_fails_over_only_to_a_synchronous_standby() {
    let c = cluster(Some("a"), Some(&key("a", &["b"])));
    let mut l = local("a", None, on());
    l.data_dir = DataDir::Initialized {
        sysid: SYSID.into(),
        was_primary: true,
    };
    l.primary_start_timeout = Duration::ZERO;
    l.peers = vec![peer("c", PgRole::Replica, 1000)];
    assert_eq!(
        run(c.clone(), &l).actions,
        vec![Action::RenewLock, Action::StartPrimary]
    );
    l.peers.push(peer("b", PgRole::Replica, 1000));
    assert_eq!(run(c, &l).actions, vec![Action::ReleaseLock]);
}

#[test]
fn the_primary_runs_the_sync_steps_after_renewing() {
    let c = cluster(Some("a"), Some(&key("a", &[])));
    let mut l = local("a", Some(PgRole::Primary), on());
    l.sync_facts = SyncFacts {
        names: parse_standby_names("b").unwrap_or_default(),
        candidates: Candidates {
            active: names(&["b"]),
            confirmed: names(&["b"]),
        },
    };
    let d = run(c, &l);
    assert_eq!(d.actions[0], Action::RenewLock);
    assert_eq!(
        d.actions.last(),
        Some(&Action::Sync(write(&["b"], Some(9)))),
        "{d:?}"
    );
}

#[test]
fn the_key_is_taken_before_the_promotion() {
    let c = cluster(Some("b"), Some(&key("a", &["b"])));
    let l = local("b", Some(PgRole::Replica), on());
    let d = run(c, &l);
    let promote = d.actions.iter().position(|a| *a == Action::Promote);
    let write = d
        .actions
        .iter()
        .position(|a| matches!(a, Action::Sync(SyncStep::WriteKey { .. })));
    assert!(
        matches!((write, promote), (Some(w), Some(p)) if w < p),
        "{d:?}"
    );
}

#[test]
fn paused_primary_still_manages_synchronous_replication() {
    // Patroni runs process_sync_replication in pause too: the standbys
    // still change, only starts, stops and promotions are the operator's.
    let c = cluster(Some("a"), Some(&key("a", &[])));
    let mut l = local("a", Some(PgRole::Primary), on());
    l.paused = true;
    l.sync_facts = SyncFacts {
        names: parse_standby_names("b").unwrap_or_default(),
        candidates: Candidates {
            active: names(&["b"]),
            confirmed: names(&["b"]),
        },
    };
    let d = run(c, &l);
    assert!(
        d.actions.contains(&Action::Sync(write(&["b"], Some(9)))),
        "{d:?}"
    );
}

#[test]
fn nosync_on_every_replica() {
    let mut c = cluster(Some("a"), Some(&key("a", &[])));
    for m in c.members.iter_mut().skip(1) {
        m.data.tags.nosync = true;
    }
    let rows = [
        row("b", "async", 1),
        row("c", "async", 1),
        row("d", "async", 1),
    ];
    let cand = pick(&on(), &c, "", 0, &rows, 1);
    assert!(cand.active.is_empty());
    // Non-strict: asynchronous, the key lists nobody.
    assert!(plan(&on(), &c, "", &cand).is_empty());
    // Strict: commits wait (Patroni's documented behaviour).
    assert_eq!(
        plan(&strict(), &c, "", &cand),
        vec![set(STRICT_PLACEHOLDER)]
    );
    // And nobody may take over from the leader.
    for n in ["b", "c", "d"] {
        assert!(!sync::may_take_over(&on(), &c, n));
    }
}

#[test]
fn a_restart_releases_the_duty_only_of_a_possible_sync_standby() {
    use super::sync::restart_releases_duty;
    let on = SyncConfig {
        mode: SyncMode::On,
        ..SyncConfig::default()
    };
    assert!(restart_releases_duty(&on, false, false));
    assert!(!restart_releases_duty(&on, true, false), "nosync");
    assert!(!restart_releases_duty(&on, false, true), "the leader");
    assert!(!restart_releases_duty(&SyncConfig::default(), false, false));
}
