//! One test per quorum commit rule of the primary, the promotion and the
//! race (docs/replication-modes.md §5), on `sync_tests`' fixtures.

use std::time::Duration;

use super::sync::{Candidates, SyncFacts, SyncStep};
use super::sync_names::{STRICT_PLACEHOLDER, parse_standby_names};
use super::sync_tests::{cluster, local, names, peer, pick, row, run, set};
use super::*;
use crate::config::{SyncConfig, SyncMode};
use crate::dcs::{Cluster, SyncState, Version};

fn quorum() -> SyncConfig {
    SyncConfig {
        mode: SyncMode::Quorum,
        ..SyncConfig::default()
    }
}

fn strict_quorum() -> SyncConfig {
    SyncConfig {
        strict: true,
        ..quorum()
    }
}

fn qkey(leader: &str, standbys: &[&str], q: u32) -> String {
    SyncState::to_json(leader, &names(standbys), q)
}

fn qwrite(standbys: &[&str], q: u32) -> SyncStep {
    SyncStep::WriteKey {
        standbys: names(standbys),
        quorum: q,
        version: Some(Version::from_int(9)),
    }
}

fn cand(active: &[&str], confirmed: &[&str]) -> Candidates {
    Candidates {
        active: names(active),
        confirmed: names(confirmed),
    }
}

fn plan_as(cfg: &SyncConfig, me: &str, c: &Cluster, ssn: &str, cand: &Candidates) -> Vec<SyncStep> {
    let n = parse_standby_names(ssn).unwrap_or_default();
    sync::primary_plan(cfg, me, c, &n, cand).steps
}

fn plan(cfg: &SyncConfig, c: &Cluster, ssn: &str, cand: &Candidates) -> Vec<SyncStep> {
    plan_as(cfg, "a", c, ssn, cand)
}

// --- picking ---

#[test]
fn every_streaming_standby_is_picked_and_confirmed_only_as_quorum() {
    let mut cfg = quorum();
    cfg.maximum_lag_on_syncnode = 100;
    let c = cluster(Some("a"), None);
    // More than synchronous_node_count: all of them (within the lag).
    let rows = [
        row("b", "quorum", 1000),
        row("c", "quorum", 950),
        row("d", "quorum", 10),
    ];
    let got = pick(&cfg, &c, "ANY 1 (b,c,d)", 900, &rows, 1000);
    assert_eq!(got.active, names(&["b", "c"]));
    assert_eq!(got.confirmed, names(&["b", "c"]));
    // Confirmed: caught up with the mark, reported `quorum` (the key does
    // not vouch for anyone in this mode).
    let c = cluster(Some("a"), Some(&qkey("a", &["b", "c"], 1)));
    let rows = [
        row("b", "quorum", 1000),
        row("c", "quorum", 800),
        row("d", "sync", 1000),
    ];
    let got = pick(&quorum(), &c, "ANY 1 (b,c,d)", 900, &rows, 1000);
    // Ordered as Patroni sorts: `sync` before `quorum`.
    assert_eq!(got.active, names(&["d", "b", "c"]));
    assert_eq!(got.confirmed, names(&["b"]));
}

#[test]
fn a_nofailover_standby_is_picked_only_while_too_few_are() {
    let mut c = cluster(Some("a"), None);
    c.members[1].data.tags.nofailover = true; // b
    let rows = [row("b", "quorum", 1000), row("c", "quorum", 1000)];
    let got = pick(&quorum(), &c, "", 0, &rows, 1000);
    assert_eq!(got.active, names(&["c"]));
    let rows = [row("b", "quorum", 1000)];
    let got = pick(&quorum(), &c, "", 0, &rows, 1000);
    assert_eq!(got.active, names(&["b"]));
}

// --- the primary's steps ---

#[test]
fn enabling_writes_the_key_then_lists_every_standby() {
    let c = cluster(Some("a"), None);
    assert_eq!(
        plan(&quorum(), &c, "", &cand(&["b", "c"], &[])),
        vec![
            SyncStep::WriteKey {
                standbys: vec![],
                quorum: 0,
                version: None
            },
            set("ANY 1 (b,c)")
        ]
    );
}

#[test]
fn standbys_enter_the_key_once_one_is_confirmed() {
    let c = cluster(Some("a"), Some(&qkey("a", &[], 0)));
    // Listed, nobody confirmed yet: wait (restart).
    assert!(plan(&quorum(), &c, "ANY 1 (b,c)", &cand(&["b", "c"], &[])).is_empty());
    // One confirmed: both voters, quorum 1 (any one of them and me).
    assert_eq!(
        plan(&quorum(), &c, "ANY 1 (b,c)", &cand(&["b", "c"], &["b"])),
        vec![qwrite(&["b", "c"], 1)]
    );
}

#[test]
fn one_key_write_per_cycle_the_rest_next_cycle() {
    // Patroni's swap case: c gone, d new, two standbys wanted.
    let cfg = SyncConfig {
        node_count: 2,
        ..quorum()
    };
    let c = cluster(Some("a"), Some(&qkey("a", &["b", "c"], 0)));
    assert_eq!(
        plan(&cfg, &c, "ANY 2 (b,c)", &cand(&["b", "d"], &["b"])),
        vec![qwrite(&["b"], 0), set("ANY 2 (b,d)")]
    );
    // Next cycle, from what was written: d enters the key.
    let c = cluster(Some("a"), Some(&qkey("a", &["b"], 0)));
    assert_eq!(
        plan(&cfg, &c, "ANY 2 (b,d)", &cand(&["b", "d"], &["b"])),
        vec![qwrite(&["b", "d"], 1)]
    );
}

#[test]
fn first_becomes_any_when_nothing_else_changes() {
    let c = cluster(Some("a"), Some(&qkey("a", &["b"], 0)));
    assert_eq!(
        plan(&quorum(), &c, "b", &cand(&["b"], &[])),
        vec![set("ANY 1 (b)")]
    );
    // Already ANY: nothing.
    assert!(plan(&quorum(), &c, "ANY 1 (b)", &cand(&["b"], &["b"])).is_empty());
}

#[test]
fn every_standby_gone_the_key_goes_first() {
    let c = cluster(Some("a"), Some(&qkey("a", &["b"], 0)));
    assert_eq!(
        plan(&quorum(), &c, "ANY 1 (b)", &cand(&[], &[])),
        vec![qwrite(&[], 0), set("")]
    );
    // Key already empty: the list is cleared, commits go on.
    let c = cluster(Some("a"), Some(&qkey("a", &[], 0)));
    assert_eq!(
        plan(&quorum(), &c, "ANY 1 (b)", &cand(&[], &[])),
        vec![set("")]
    );
}

#[test]
fn strict_without_standbys_keeps_waiting_on_the_voters() {
    let c = cluster(Some("a"), Some(&qkey("a", &["b", "c"], 1)));
    assert_eq!(
        plan(&strict_quorum(), &c, "ANY 1 (b,c)", &cand(&[], &[])),
        vec![]
    );
    assert_eq!(
        plan(&strict_quorum(), &c, "", &cand(&[], &[])),
        vec![set("ANY 1 (b,c)")]
    );
    let c = cluster(Some("a"), Some(&qkey("a", &[], 0)));
    assert_eq!(
        plan(&strict_quorum(), &c, "", &cand(&[], &[])),
        vec![set(STRICT_PLACEHOLDER)]
    );
}

#[test]
fn after_a_failover_the_old_leader_becomes_a_voter() {
    // c promoted (its list set before promoting); the key still names a.
    let c = cluster(Some("c"), Some(&qkey("a", &["b", "c"], 1)));
    assert_eq!(
        plan_as(&quorum(), "c", &c, "ANY 1 (a,b)", &cand(&["b"], &[])),
        vec![qwrite(&["a", "b"], 1), set("ANY 1 (b)")]
    );
    // Nobody reconnected yet: only the key, they get a cycle.
    assert_eq!(
        plan_as(&quorum(), "c", &c, "ANY 1 (a,b)", &cand(&[], &[])),
        vec![qwrite(&["a", "b"], 1)]
    );
}

#[test]
fn a_state_someone_else_broke_is_repaired_from_postgresql() {
    // Quorum 0 over two voters with ANY 1: a quorum of one could miss
    // the commit. The key is rewritten from the list.
    let c = cluster(Some("a"), Some(&qkey("a", &["b", "c"], 0)));
    assert_eq!(
        plan(
            &quorum(),
            &c,
            "ANY 1 (b,c)",
            &cand(&["b", "c"], &["b", "c"])
        ),
        vec![qwrite(&["b", "c"], 1)]
    );
}

// --- promotion ---

#[test]
fn before_promoting_only_the_list_changes() {
    let c = cluster(None, Some(&qkey("a", &["b", "c"], 1)));
    // A voter: the others, as many as keep the promise.
    let p = sync::prepromote_plan(&quorum(), "c", &c);
    assert_eq!(p.steps, vec![set("ANY 1 (a,b)")]);
    // Not a voter: one more.
    let p = sync::prepromote_plan(&quorum(), "d", &c);
    assert_eq!(p.steps, vec![set("ANY 2 (a,b,c)")]);
    // No key: asynchronous, or the placeholder in strict mode.
    let c = cluster(None, None);
    assert_eq!(
        sync::prepromote_plan(&quorum(), "b", &c).steps,
        vec![set("")]
    );
    assert_eq!(
        sync::prepromote_plan(&strict_quorum(), "b", &c).steps,
        vec![set(STRICT_PLACEHOLDER)]
    );
}

#[test]
fn the_list_is_set_before_the_promotion_and_the_key_is_left() {
    let c = cluster(Some("b"), Some(&qkey("a", &["b", "c"], 1)));
    let d = run(c, &local("b", Some(PgRole::Replica), quorum()));
    let promote = d.actions.iter().position(|a| *a == Action::Promote);
    let names = d
        .actions
        .iter()
        .position(|a| matches!(a, Action::Sync(SyncStep::SetNames { .. })));
    assert!(
        matches!((names, promote), (Some(n), Some(p)) if n < p),
        "{d:?}"
    );
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::Sync(SyncStep::WriteKey { .. }))),
        "{d:?}"
    );
}

// --- the race ---

#[test]
fn a_voter_needs_quorum_votes() {
    // Any 2 of b, c, d have every commit (quorum 1).
    let c = cluster(None, Some(&qkey("a", &["b", "c", "d"], 1)));
    let mut l = local("b", Some(PgRole::Replica), quorum());
    l.peers = vec![PeerStatus {
        name: "c".into(),
        reply: None,
    }];
    let d = run(c.clone(), &l);
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.reason.contains("votes"), "{}", d.reason);
    l.peers.push(peer("d", PgRole::Replica, 900));
    assert_eq!(run(c.clone(), &l).actions, vec![Action::AcquireLock]);
    // A listed peer ahead still stops me.
    l.peers.push(peer("c", PgRole::Replica, 2000));
    assert!(run(c, &l).actions.is_empty());
}

#[test]
fn a_member_the_key_does_not_list_races_with_one_vote_more() {
    let c = cluster(None, Some(&qkey("a", &["b", "c"], 1)));
    let mut l = local("d", Some(PgRole::Replica), quorum());
    l.peers = vec![peer("b", PgRole::Replica, 900)];
    assert!(run(c.clone(), &l).actions.is_empty());
    l.peers.push(peer("c", PgRole::Replica, 900));
    assert_eq!(run(c, &l).actions, vec![Action::AcquireLock]);
}

#[test]
fn the_keys_leader_needs_no_votes_when_nobody_is_ahead() {
    let c = cluster(None, Some(&qkey("b", &["c", "d"], 1)));
    let l = local("b", Some(PgRole::Replica), quorum());
    assert_eq!(run(c, &l).actions, vec![Action::AcquireLock]);
}

#[test]
fn votes_are_not_counted_in_the_other_modes() {
    let c = cluster(None, Some(&qkey("a", &["b", "c", "d"], 1)));
    let l = local("b", Some(PgRole::Replica), super::sync_tests::on());
    assert_eq!(run(c, &l).actions, vec![Action::AcquireLock]);
}

#[test]
fn a_crashed_primary_fails_over_only_when_the_quorum_can_be_reached() {
    let c = cluster(Some("a"), Some(&qkey("a", &["b", "c"], 1)));
    let mut l = local("a", None, quorum());
    l.data_dir = DataDir::Initialized {
        sysid: "7000000000000000001".into(),
        was_primary: true,
    };
    l.primary_start_timeout = Duration::ZERO;
    l.peers = vec![peer("b", PgRole::Replica, 1000)];
    assert_eq!(
        run(c.clone(), &l).actions,
        vec![Action::RenewLock, Action::StartPrimary]
    );
    l.peers.push(peer("c", PgRole::Replica, 1000));
    assert_eq!(run(c, &l).actions, vec![Action::ReleaseLock]);
}

#[test]
fn the_primary_cycle_runs_the_quorum_steps() {
    let c = cluster(Some("a"), Some(&qkey("a", &[], 0)));
    let mut l = local("a", Some(PgRole::Primary), quorum());
    l.sync_facts = SyncFacts {
        names: parse_standby_names("ANY 1 (b,c)").unwrap_or_default(),
        candidates: cand(&["b", "c"], &["c"]),
    };
    let d = run(c, &l);
    assert_eq!(d.actions[0], Action::RenewLock);
    assert_eq!(
        d.actions.last(),
        Some(&Action::Sync(qwrite(&["b", "c"], 1))),
        "{d:?}"
    );
}
