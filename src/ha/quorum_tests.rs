//! The resolver's rules, one test per case of Patroni's
//! `tests/test_quorum.py` (the same states and the same expected steps,
//! so pgpilot and Patroni move a mixed cluster alike). Each check also
//! replays the steps as if interrupted after the first one (the rest must
//! follow), and, as Patroni's harness does, tries the intermediate states
//! with any part of the standbys gone and any number confirmed: none may
//! be refused.

use std::collections::BTreeSet;

use super::*;

/// Each character a member name.
fn set(names: &str) -> NameSet {
    names.chars().map(|c| c.to_string()).collect()
}

#[allow(clippy::too_many_arguments)]
fn inp(
    leader: &str,
    quorum: u32,
    voters: &str,
    numsync: u32,
    sync: &str,
    numsync_confirmed: u32,
    active: &str,
    sync_wanted: u32,
    leader_wanted: &str,
) -> QuorumInput {
    QuorumInput {
        leader: leader.into(),
        quorum,
        voters: set(voters),
        numsync,
        sync: set(sync),
        numsync_confirmed,
        active: set(active),
        sync_wanted,
        leader_wanted: leader_wanted.into(),
    }
}

type Exp<'a> = (&'a str, &'a str, u32, &'a str);

fn kind(k: &str) -> TransitionKind {
    match k {
        "sync" => TransitionKind::Sync,
        "quorum" => TransitionKind::Quorum,
        _ => TransitionKind::Restart,
    }
}

/// As spelled: Patroni's expected sets compare case-sensitively.
fn spelled(s: &NameSet) -> BTreeSet<String> {
    s.names().into_iter().collect()
}

fn same(t: &Transition, e: &Exp) -> bool {
    t.kind == kind(e.0)
        && t.leader == e.1
        && t.num == e.2
        && spelled(&t.names) == spelled(&set(e.3))
}

fn apply(state: &mut QuorumInput, kind: TransitionKind, num: u32, names: NameSet) {
    if kind == TransitionKind::Sync {
        state.numsync = num;
        state.sync = names;
    } else {
        state.quorum = num;
        state.voters = names;
    }
}

fn subsets(s: &NameSet) -> Vec<NameSet> {
    let names = s.names();
    (0..1u32 << names.len())
        .map(|mask| {
            names
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| n.as_str())
                .collect()
        })
        .collect()
}

/// Patroni's `check_state_transitions`.
#[derive(Default)]
struct Harness {
    nesting: u32,
    failures: Vec<String>,
}

impl Harness {
    fn check(&mut self, input: QuorumInput, expected: &[Exp]) {
        self.nesting += 1;
        let start = input.clone();
        let result = resolve(&input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert!(
            result.len() == expected.len() && result.iter().zip(expected).all(|(t, e)| same(t, e)),
            "{input:?}\n got {result:?}\n expected {expected:?}"
        );
        // Interrupted after the first step: the rest follows.
        let mut kwargs = input.clone();
        if let Some(first) = result.first()
            && first.kind != TransitionKind::Restart
            && kwargs.leader == first.leader
        {
            apply(&mut kwargs, first.kind, first.num, first.names.clone());
            self.check(kwargs.clone(), &expected[1..]);
        }
        self.nesting -= 1;
        let (active, sync) = (spelled(&start.active), spelled(&start.sync));
        if self.nesting > 0 || !(active.is_superset(&sync) && active.len() > sync.len()) {
            return;
        }
        // Standbys coming and going in the middle of a change that has a
        // safety margin: any state on the way must resolve.
        let mut state = start.clone();
        for e in expected {
            if kind(e.0) == TransitionKind::Restart || e.1 != state.leader {
                return;
            }
            apply(&mut state, kind(e.0), e.2, set(e.3));
        }
        let margin = i64::from(state.quorum) + i64::from(state.numsync)
            - state.voters.union(&state.sync).len() as i64;
        if margin == 0 {
            return;
        }
        let mut state = kwargs;
        for e in expected {
            apply(&mut state, kind(e.0), e.2, set(e.3));
            for a in subsets(&start.sync) {
                for c in 0..=a.len() as u32 {
                    state.active = a.clone();
                    state.numsync_confirmed = c;
                    if let Err(err) = resolve(&state) {
                        self.failures.push(format!("{state:?}: {err}"));
                    }
                    if !state.voters.is_empty() {
                        let mut no_voters = state.clone();
                        no_voters.voters = NameSet::default();
                        no_voters.quorum = 0;
                        if let Err(err) = resolve(&no_voters) {
                            self.failures.push(format!("{no_voters:?}: {err}"));
                        }
                    }
                }
            }
        }
    }

    fn finish(self) {
        assert!(self.failures.is_empty(), "{:#?}", self.failures);
    }
}

#[test]
fn patroni_1111() {
    let mut h = Harness::default();
    h.check(
        inp("a", 0, "", 0, "", 0, "b", 2, "a"),
        &[("sync", "a", 1, "b"), ("restart", "a", 0, "")],
    );
    h.check(
        inp("a", 0, "", 1, "b", 1, "b", 2, "a"),
        &[("quorum", "a", 0, "b")],
    );
    h.check(
        inp("a", 0, "", 0, "", 0, "bcde", 2, "a"),
        &[("sync", "a", 2, "bcde"), ("restart", "a", 0, "")],
    );
    h.check(
        inp("a", 0, "", 2, "bcde", 1, "bcde", 2, "a"),
        &[("quorum", "a", 3, "bcde")],
    );
    h.finish();
}

#[test]
fn patroni_1222() {
    let mut h = Harness::default();
    h.check(inp("a", 0, "b", 1, "b", 1, "b", 2, "a"), &[]);
    h.check(
        inp("a", 0, "b", 1, "b", 1, "BC", 1, "a"),
        &[("quorum", "a", 1, "bC"), ("sync", "a", 1, "bC")],
    );
    h.check(
        inp("a", 0, "b", 1, "b", 1, "bc", 2, "a"),
        &[("sync", "a", 2, "bc"), ("quorum", "a", 1, "bc")],
    );
    h.check(
        inp("a", 1, "bc", 2, "bc", 2, "bc", 2, "a"),
        &[("quorum", "a", 0, "bc")],
    );
    h.check(
        inp("a", 0, "b", 1, "b", 1, "BCdE", 2, "a"),
        &[
            ("sync", "a", 2, "bC"),
            ("quorum", "a", 3, "bCdE"),
            ("sync", "a", 2, "bCdE"),
        ],
    );
    h.check(
        inp("a", 3, "bcde", 2, "bcde", 3, "bcde", 2, "a"),
        &[("quorum", "a", 2, "bcde")],
    );
    h.check(
        inp("a", 0, "b", 1, "b", 0, "", 1, "a"),
        &[("quorum", "a", 0, ""), ("sync", "a", 0, "")],
    );
    h.check(
        inp("a", 0, "b", 1, "b", 0, "c", 1, "a"),
        &[
            ("quorum", "a", 0, ""),
            ("sync", "a", 1, "c"),
            ("restart", "a", 0, ""),
        ],
    );
    h.check(
        inp("a", 0, "", 1, "c", 1, "c", 1, "a"),
        &[("quorum", "a", 0, "c")],
    );
    h.finish();
}

#[test]
fn patroni_1233() {
    let mut h = Harness::default();
    h.check(
        inp("a", 0, "b", 2, "bc", 1, "b", 2, "a"),
        &[("sync", "a", 1, "b")],
    );
    h.check(
        inp("a", 0, "b", 2, "bc", 1, "bc", 2, "a"),
        &[("quorum", "a", 1, "bc")],
    );
    h.check(
        inp("a", 0, "b", 2, "bc", 1, "bcd", 2, "a"),
        &[("quorum", "a", 2, "bcd"), ("sync", "a", 2, "bcd")],
    );
    h.check(
        inp("a", 2, "bcd", 2, "bcd", 3, "bcd", 2, "a"),
        &[("quorum", "a", 1, "bcd")],
    );
    h.check(
        inp("a", 0, "b", 2, "bc", 1, "bc", 1, "a"),
        &[("quorum", "a", 1, "bc"), ("sync", "a", 1, "bc")],
    );
    h.finish();
}

#[test]
fn patroni_2322() {
    let mut h = Harness::default();
    h.check(
        inp("a", 1, "bc", 1, "b", 1, "b", 1, "a"),
        &[("quorum", "a", 0, "b")],
    );
    h.check(
        inp("a", 1, "bc", 1, "b", 1, "bc", 1, "a"),
        &[("sync", "a", 1, "bc")],
    );
    h.check(
        inp("a", 1, "bc", 1, "b", 1, "bcd", 1, "a"),
        &[
            ("sync", "a", 1, "bc"),
            ("quorum", "a", 2, "bcd"),
            ("sync", "a", 1, "bcd"),
        ],
    );
    h.check(
        inp("a", 1, "bc", 1, "b", 1, "bc", 2, "a"),
        &[("sync", "a", 2, "bc")],
    );
    h.check(
        inp("a", 1, "bc", 2, "bc", 2, "bc", 2, "a"),
        &[("quorum", "a", 0, "bc")],
    );
    h.finish();
}

#[test]
fn patroni_3535() {
    let mut h = Harness::default();
    h.check(
        inp("a", 2, "bcde", 2, "bcde", 2, "bc", 2, "a"),
        &[("sync", "a", 2, "bc"), ("quorum", "a", 0, "bc")],
    );
    h.check(
        inp("a", 2, "bcde", 2, "bcde", 3, "bcd", 2, "a"),
        &[("sync", "a", 2, "bcd"), ("quorum", "a", 1, "bcd")],
    );
    h.check(
        inp("a", 2, "bcde", 2, "bcde", 2, "bc", 1, "a"),
        &[
            ("sync", "a", 2, "bc"),
            ("quorum", "a", 1, "bc"),
            ("sync", "a", 1, "bc"),
        ],
    );
    h.check(
        inp("a", 1, "bcde", 3, "bcde", 2, "bc", 1, "a"),
        &[
            ("sync", "a", 3, "bcd"),
            ("quorum", "a", 1, "bc"),
            ("sync", "a", 1, "bc"),
        ],
    );
    h.check(
        inp("a", 2, "bcde", 2, "bcde", 2, "bcde", 3, "a"),
        &[("sync", "a", 3, "bcde")],
    );
    h.check(
        inp("a", 2, "bcde", 3, "bcde", 3, "bcde", 3, "a"),
        &[("quorum", "a", 1, "bcde")],
    );
    h.check(
        inp("a", 2, "bcde", 2, "bcde", 2, "bcdef", 1, "a"),
        &[("quorum", "a", 4, "bcdef"), ("sync", "a", 1, "bcdef")],
    );
    h.check(
        inp("a", 2, "bcde", 2, "bcde", 2, "bcd", 3, "a"),
        &[("sync", "a", 3, "bcd"), ("quorum", "a", 1, "bcd")],
    );
    h.finish();
}

#[test]
fn patroni_remove_nosync_node() {
    let mut h = Harness::default();
    h.check(
        inp("a", 0, "bc", 2, "bc", 1, "b", 2, "a"),
        &[("quorum", "a", 0, "b"), ("sync", "a", 1, "b")],
    );
    h.finish();
}

#[test]
fn patroni_swap_sync_node() {
    let mut h = Harness::default();
    h.check(
        inp("a", 0, "bc", 2, "bc", 1, "bd", 2, "a"),
        &[
            ("quorum", "a", 0, "b"),
            ("sync", "a", 2, "bd"),
            ("quorum", "a", 1, "bd"),
        ],
    );
    h.finish();
}

#[test]
fn patroni_promotion() {
    let mut h = Harness::default();
    h.check(
        inp("a", 2, "bcd", 0, "", 0, "", 1, "c"),
        &[("sync", "a", 1, "abd"), ("quorum", "c", 2, "abd")],
    );
    h.check(
        inp("c", 2, "abd", 1, "abd", 0, "b", 1, "c"),
        &[("sync", "c", 1, "b"), ("quorum", "c", 0, "b")],
    );
    h.check(
        inp("c", 2, "abd", 1, "abd", 0, "", 1, "c"),
        &[("quorum", "c", 0, ""), ("sync", "c", 0, "")],
    );
    h.finish();
}

#[test]
fn patroni_nonsync_promotion() {
    let mut h = Harness::default();
    h.check(
        inp("a", 1, "bc", 0, "", 0, "", 1, "d"),
        &[("sync", "a", 2, "abc"), ("quorum", "d", 1, "abc")],
    );
    h.check(
        inp("d", 1, "abc", 2, "abc", 0, "bc", 1, "d"),
        &[
            ("sync", "d", 2, "bc"),
            ("quorum", "d", 1, "bc"),
            ("sync", "d", 1, "bc"),
        ],
    );
    h.check(
        inp("d", 1, "abc", 2, "abc", 0, "", 1, "d"),
        &[("quorum", "d", 0, ""), ("sync", "d", 0, "")],
    );
    h.finish();
}

#[test]
fn patroni_sync_high_quorum_low_safety_margin_high() {
    let mut h = Harness::default();
    h.check(
        inp("a", 2, "bcdef", 4, "bcdef", 3, "bcdef", 2, "a"),
        &[("quorum", "a", 3, "bcdef"), ("sync", "a", 2, "bcdef")],
    );
    h.finish();
}

#[test]
fn patroni_remove_nodes_with_decreasing_sync() {
    let mut h = Harness::default();
    h.check(
        inp("a", 1, "bcdef", 4, "bcdef", 2, "bcd", 2, "a"),
        &[
            ("sync", "a", 4, "bcde"),
            ("quorum", "a", 1, "bcd"),
            ("sync", "a", 2, "bcd"),
        ],
    );
    h.check(
        inp("a", 1, "bcdef", 4, "bcde", 2, "bcdg", 2, "a"),
        &[
            ("quorum", "a", 1, "bcd"),
            ("sync", "a", 3, "bcd"),
            ("quorum", "a", 2, "bcdg"),
            ("sync", "a", 2, "bcdg"),
        ],
    );
    h.check(
        inp("a", 1, "bcdef", 4, "bcde", 2, "bcdf", 2, "a"),
        &[
            ("sync", "a", 4, "bcdf"),
            ("quorum", "a", 2, "bcdf"),
            ("sync", "a", 2, "bcdf"),
        ],
    );
    h.check(
        inp("a", 1, "bcdef", 4, "bcde", 2, "bcde", 2, "a"),
        &[("quorum", "a", 2, "bcde"), ("sync", "a", 2, "bcde")],
    );
    h.check(
        inp("a", 1, "bcdef", 4, "bcde", 2, "cd", 1, "a"),
        &[("quorum", "a", 1, "cd"), ("sync", "a", 1, "cd")],
    );
    h.finish();
}

#[test]
fn patroni_empty_ssn() {
    let mut h = Harness::default();
    h.check(
        inp("a", 1, "bc", 1, "", 0, "", 1, "c"),
        &[("sync", "a", 1, "ab"), ("quorum", "c", 1, "ab")],
    );
    h.check(
        inp("c", 1, "ab", 1, "ab", 0, "b", 1, "c"),
        &[("sync", "c", 1, "b"), ("quorum", "c", 0, "b")],
    );
    h.finish();
}

/// Patroni's `test_invalid_states`: an unsafe state (the sets do not
/// overlap) and one somebody else changed are both brought back to the
/// key matching what PostgreSQL runs with.
#[test]
fn patroni_invalid_states() {
    let unsafe_state = inp("a", 0, "bc", 1, "bc", 1, "bc", 1, "a");
    assert!(matches!(
        Resolver::new(&unsafe_state).check_invariants(),
        Err(QuorumError::NoOverlap { .. })
    ));
    let got = resolve(&unsafe_state).expect("resolves");
    assert_eq!(got.len(), 1);
    assert!(same(&got[0], &("quorum", "a", 1, "bc")));

    let mismatched = inp("a", 1, "bc", 2, "bd", 1, "bd", 1, "a");
    assert!(matches!(
        Resolver::new(&mismatched).check_invariants(),
        Err(QuorumError::Mismatched { .. })
    ));
    let got = resolve(&mismatched).expect("resolves");
    assert_eq!(got.len(), 2);
    assert!(same(&got[0], &("quorum", "a", 1, "bd")));
    assert!(same(&got[1], &("sync", "a", 1, "bd")));
}

/// Patroni's `test_quorum_update`: a negative quorum, or one as large as
/// the voters, is refused.
#[test]
fn patroni_quorum_update_range() {
    let mut r = Resolver::new(&inp("a", 1, "bc", 1, "bc", 1, "bc", 1, "a"));
    assert!(r.quorum_update(-1, NameSet::default(), None, true).is_err());
    assert!(r.quorum_update(1, NameSet::default(), None, true).is_err());
}

/// Patroni's `test_sync_update`: a negative numsync, or one above the
/// names listed, is refused.
#[test]
fn patroni_sync_update_range() {
    let mut r = Resolver::new(&inp("a", 1, "bc", 1, "bc", 1, "bc", 1, "a"));
    assert!(r.sync_update(-1, NameSet::default()).is_err());
    assert!(r.sync_update(1, NameSet::default()).is_err());
}

/// Names compare case-insensitively and keep the spelling last given.
#[test]
fn name_sets_ignore_case() {
    let a = set("bC");
    assert_eq!(a, set("Bc"));
    assert!(a.contains("c"));
    assert_eq!(a.union(&set("B")).names(), ["B", "C"]);
    assert_eq!(set("Bc").and(&set("bd")).names(), ["b"]);
    assert_eq!(a.minus(&set("c")).names(), ["b"]);
    // numsync above the names listed reads as all of them.
    let got = resolve(&inp("a", 0, "b", 3, "b", 1, "b", 1, "a")).expect("resolves");
    assert!(got.is_empty(), "{got:?}");
}
