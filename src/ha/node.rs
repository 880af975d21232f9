//! `ha::Node`: the stateful half of the HA protocol, pure (docs/ha.md §3).
//!
//! In the style of raft-rs's `RawNode`: the caller feeds in events and the
//! time, and carries out what comes back. [`decide`](super::decide) answers
//! one cycle's question; the node keeps what lives between cycles and
//! keep-alives: the lease (deadline, epoch, the HA loop's confirmation,
//! `ha::lease`), failsafe confirmations standing in for it, the last
//! graceful step-down, the members seen since start, a failsafe leader's
//! heartbeat, the slots kept for vanished members, the last published
//! status. It performs no I/O and never reads the clock: every method that
//! needs the time takes it as `now`.
//!
//! A cycle, as the `LeaderElector` and the simulation drive it:
//!
//! 1. [`Node::start_cycle`] when the cycle starts gathering facts;
//! 2. [`Node::peers_to_ask`] and [`Node::failsafe_to_confirm`] once the DCS
//!    read and PostgreSQL's status are in: whom to ask before deciding;
//! 3. [`Node::decide`] with the gathered facts;
//! 4. for each action, in order: carry it out and report it with
//!    [`Node::action_done`], until it says to stop;
//! 5. [`Node::finish_cycle`] (or [`Node::abandon_cycle`] when no facts could
//!    be gathered): the fence's and the watchdog's orders come out.
//!
//! Between cycles: [`Node::tick`] says when to send a keep-alive,
//! [`Node::keepalive_answered`] takes its answer, [`Node::heartbeat`] a
//! failsafe leader's `POST /failsafe`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::cycle::{ActionResult, ActionStep, Cycle};
use super::lease::{self, Confirmation, KeepaliveAnswer, KeepaliveOutcome, KeepaliveTicket, Lease};
use super::peers::{Peer, peers_to_ask, remember_members};
use super::rewind::RewindState;
use super::slots::{ReplicaSlotGate, RetainedSlots, SlotRequest};
use super::{Action, DcsView, Decision, JobKind, LeaderHeartbeat, LocalView, PgFacts, decide};
use crate::config::Timing;
use crate::dcs::{Cluster, Status};
use crate::fence::FenceOrder;
use crate::watchdog::{CycleFacts, WatchdogOrder};

/// What a finished cycle tells its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleEnd {
    /// The fence's order (docs/ha.md §9.5).
    pub fence: FenceOrder,
    /// The watchdog's order (docs/ha.md §12).
    pub watchdog: WatchdogOrder,
    /// Decide again at once.
    pub rerun_now: bool,
    /// Stop the daemon with this reason.
    pub fatal: Option<String>,
    /// Failsafe mode became active (`Some(true)`) or ended (`Some(false)`).
    pub failsafe_changed: Option<bool>,
}

/// What a cycle's end knows about this node.
#[derive(Debug, Clone, Copy)]
pub struct EndFacts<'a> {
    /// PostgreSQL as the cycle found it.
    pub pg: &'a PgFacts,
    /// The supervisor job running when the cycle started.
    pub busy: Option<JobKind>,
    pub paused: bool,
    /// The cluster as the cycle read it; `None` if the read failed.
    pub cluster: Option<&'a Cluster>,
}

/// What to do on shutdown (docs/ha.md §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPlan {
    /// Paused: disarm the watchdog, leave PostgreSQL running and the leader
    /// key and the session in place (the lease lapses after ttl unless a
    /// restarted daemon takes over first); the fence exits.
    LeaveRunning,
    /// Stop PostgreSQL (fast); once it is down the fence exits and the
    /// watchdog is disarmed (a failed stop leaves the watchdog armed).
    /// Then delete the leader key if `release_lock` (a lease is held), and
    /// release the session.
    Stop { release_lock: bool },
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Node {
    name: String,
    lease: Lease,
    /// The deadline the last keep-alive gave the current lease, so a slow
    /// cycle decides on it rather than on the deadline it started with;
    /// void once the lease epoch moves.
    keepalive_deadline: Option<Instant>,
    /// Running as primary on failsafe confirmations until then.
    failsafe_until: Option<Instant>,
    /// When this node last stepped down for a switchover.
    demoted_gracefully_at: Option<Instant>,
    /// A former primary runs read-only since it lost the DCS and has not
    /// rejoined yet (docs/ha.md §9.6, `ha::rejoin`).
    rejoin_pending: bool,
    /// A rewind failed for good: stay stopped until an operator acts
    /// (docs/ha.md §8.2, `ha::rewind`).
    rewind: RewindState,
    /// Every member seen in the DCS since start (name -> api_url): a
    /// leader race asks them too (docs/ha.md §3.1).
    seen_members: BTreeMap<String, String>,
    /// The `failsafe` key of the last successful DCS read.
    failsafe_last_known: Option<BTreeMap<String, String>>,
    /// The last `POST /failsafe` a leader sent this node.
    heartbeat: Option<LeaderHeartbeat>,
    /// Slots of vanished members kept for `member_slots_ttl`.
    retained_slots: RetainedSlots,
    /// When a replica's slot sync is worth its queries (docs/ha.md §13).
    replica_slots: ReplicaSlotGate,
    /// The status this node last published.
    last_status: Option<Status>,
    /// The reason of the last decision, so a steady state is logged once.
    last_reason: Option<String>,
    /// The cycle in flight.
    cycle: Option<Cycle>,
    /// Which standbys caught up since `synchronous_standby_names` last
    /// changed (docs/replication-modes.md §3).
    sync_tracker: super::sync::SyncTracker,
}

impl Node {
    /// A node named `name`, holding nothing.
    pub fn new(name: &str) -> Node {
        Node {
            name: name.to_owned(),
            lease: Lease::default(),
            keepalive_deadline: None,
            failsafe_until: None,
            demoted_gracefully_at: None,
            rejoin_pending: false,
            rewind: RewindState::default(),
            seen_members: BTreeMap::new(),
            failsafe_last_known: None,
            heartbeat: None,
            retained_slots: RetainedSlots::default(),
            replica_slots: ReplicaSlotGate::default(),
            last_status: None,
            last_reason: None,
            cycle: None,
            sync_tracker: Default::default(),
        }
    }

    /// The primary's synchronous replication facts this cycle
    /// (docs/replication-modes.md §3): `names` is the value PostgreSQL runs
    /// with, `rows` its `pg_stat_replication`, `primary_lsn` its flush
    /// position; which standbys caught up is kept between cycles.
    pub fn sync_facts(
        &mut self,
        cfg: &crate::config::SyncConfig,
        cluster: &Cluster,
        rows: &[super::sync::ReplicaRow],
        names: &str,
        primary_lsn: u64,
    ) -> super::sync::SyncFacts {
        let names = self.sync_tracker.observe(names, primary_lsn).clone();
        let candidates = super::sync::candidates(
            cfg,
            &self.name,
            cluster,
            rows,
            primary_lsn,
            &mut self.sync_tracker,
        );
        super::sync::SyncFacts { names, candidates }
    }

    // ------------------------------------------------------------ queries

    /// Until when this node's lease surely holds, if it holds one.
    pub fn lease_deadline(&self) -> Option<Instant> {
        self.lease.deadline()
    }

    /// This node counts itself the leader at `now`: it holds a lease, or
    /// failsafe confirmations stand in for one.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.lease.held_at(now) || self.failsafe_until.is_some_and(|d| d > now)
    }

    /// Primary: running on failsafe confirmations; replica: a leader sent
    /// `POST /failsafe` less than `ttl` ago.
    pub fn failsafe_active(&self, now: Instant, ttl: Duration) -> bool {
        self.failsafe_until.is_some_and(|d| d > now)
            || self
                .heartbeat
                .as_ref()
                .is_some_and(|h| now.saturating_duration_since(h.at) < ttl)
    }

    /// A rewind failed and nothing replaced the data directory or started
    /// PostgreSQL since (docs/ha.md §8.2).
    pub fn rewind_failed(&self) -> bool {
        self.rewind.failed()
    }

    /// The `failsafe` key of the last successful DCS read.
    pub fn failsafe_last_known(&self) -> Option<&BTreeMap<String, String>> {
        self.failsafe_last_known.as_ref()
    }

    /// The status this node last published.
    pub fn last_status(&self) -> Option<&Status> {
        self.last_status.as_ref()
    }

    /// Whether this replica's slot sync of `req` is due this cycle: its
    /// plan or its replay position moved, or a recheck is due
    /// ([`ReplicaSlotGate`]).
    pub fn replica_slots_due(
        &self,
        req: &SlotRequest,
        replay_lsn: Option<u64>,
        now: Instant,
    ) -> bool {
        self.replica_slots.due(req, replay_lsn, now)
    }

    /// How this replica's slot sync went: `Some(req)` went through, `None`
    /// failed or was not a replica's (the next one is due at once).
    pub fn replica_slots_synced(
        &mut self,
        req: Option<SlotRequest>,
        replay_lsn: Option<u64>,
        now: Instant,
    ) {
        match req {
            Some(req) => self.replica_slots.synced(req, replay_lsn, now),
            None => self.replica_slots.reset(),
        }
    }

    /// The decision repeats the last one in a steady state (nothing to do,
    /// or only renewing the lock): not worth an INFO line per cycle.
    pub fn is_repeat(&self, decision: &Decision) -> bool {
        let steady = decision.actions.is_empty() || decision.actions == [Action::RenewLock];
        steady && self.last_reason.as_deref() == Some(decision.reason.as_str())
    }

    /// What to do on shutdown when `paused` (docs/ha.md §14).
    pub fn shutdown(&self, paused: bool) -> ShutdownPlan {
        if paused {
            ShutdownPlan::LeaveRunning
        } else {
            ShutdownPlan::Stop {
                release_lock: self.lease.deadline().is_some(),
            }
        }
    }

    // ------------------------------------------------- between the cycles

    /// The keep-alive tick (every ttl/4): a keep-alive to send now, if
    /// `ha::lease` allows one (docs/ha.md §9.2).
    pub fn tick(&mut self, now: Instant, paused: bool, timing: &Timing) -> Option<KeepaliveTicket> {
        self.lease.keepalive(now, paused, timing)
    }

    /// The store's answer to the keep-alive of `ticket`. `Extended`: re-arm
    /// the fence with the new deadline.
    pub fn keepalive_answered(
        &mut self,
        ticket: KeepaliveTicket,
        answer: KeepaliveAnswer,
        timing: &Timing,
    ) -> KeepaliveOutcome {
        let outcome = self.lease.keepalive_answered(ticket, answer, timing);
        if let KeepaliveOutcome::Extended(d) = outcome {
            self.keepalive_deadline = Some(d);
        }
        outcome
    }

    /// A leader's `POST /failsafe` (docs/ha.md §10.2). Returns whether it is
    /// news: another leader, or the first in `ttl`.
    pub fn heartbeat(&mut self, hb: LeaderHeartbeat, ttl: Duration) -> bool {
        let known = self
            .heartbeat
            .as_ref()
            .is_some_and(|h| h.name == hb.name && hb.at.saturating_duration_since(h.at) < ttl);
        self.heartbeat = Some(hb);
        !known
    }

    // ------------------------------------------------------------ a cycle

    /// A cycle starts gathering its facts at `now`.
    pub fn start_cycle(&mut self, now: Instant) {
        self.cycle = Some(Cycle::new(
            Some(now),
            self.lease.deadline(),
            self.failsafe_until,
        ));
    }

    /// The cycle in flight. A caller that skipped `start_cycle` gets one
    /// with no start time: it starts with the lease as it stands, and
    /// cannot confirm the lease for the keep-alive.
    fn cycle(&mut self) -> &mut Cycle {
        let (lease, failsafe) = (self.lease.deadline(), self.failsafe_until);
        self.cycle
            .get_or_insert_with(|| Cycle::new(None, lease, failsafe))
    }

    /// The peers to ask before deciding (docs/ha.md §3.1).
    pub fn peers_to_ask(&self, cluster: &Cluster, pg: &PgFacts, failsafe_mode: bool) -> Vec<Peer> {
        peers_to_ask(cluster, pg, &self.name, failsafe_mode, &self.seen_members)
    }

    /// The members to ask at `now` to confirm this primary while the DCS
    /// cannot be read (docs/ha.md §10.1): the last known `failsafe` key,
    /// when failsafe mode is on, PostgreSQL runs as primary and the key
    /// lists this node. `None`: nobody to ask.
    pub fn failsafe_to_confirm(
        &mut self,
        view: &DcsView,
        pg: &PgFacts,
        failsafe_mode: bool,
        now: Instant,
    ) -> Option<BTreeMap<String, String>> {
        self.cycle().confirm_started = Some(now);
        let known = self.failsafe_known(view)?;
        (matches!(view, DcsView::Failed(_))
            && failsafe_mode
            && pg.is_primary()
            && known.contains_key(&self.name))
        .then_some(known)
    }

    fn failsafe_known(&self, view: &DcsView) -> Option<BTreeMap<String, String>> {
        match view {
            DcsView::Ok(c) => c.failsafe.clone(),
            DcsView::Failed(_) => self.failsafe_last_known.clone(),
        }
    }

    /// Decide at `now` on `view` and `local`. The node supplies what it
    /// keeps: the lease deadline (the newest a keep-alive gave this lease
    /// while the cycle gathered, or failsafe confirmations standing in for
    /// it), the failsafe leader's heartbeat, the last known `failsafe` key,
    /// the last graceful step-down, whether a former primary still has
    /// to rejoin (docs/ha.md §9.6) and whether a rewind failed (docs/ha.md
    /// §8.2: `local.outcome`, a rewind's raw report, is classified here);
    /// `local`'s values for these are ignored. A lease that lapsed by `now`
    /// is carried on as none. A rewind that just failed for good is shown
    /// first (`ShowRewindFailed`).
    pub fn decide(&mut self, view: &DcsView, mut local: LocalView, now: Instant) -> Decision {
        let newly_failed = self.rewind.observe(local.busy, local.outcome.as_ref());
        local.rewind.failed = self.rewind.failed();
        local.failsafe.heartbeat = self.heartbeat.clone();
        local.failsafe.last_known = self.failsafe_known(view);
        local.switchover.demoted_gracefully_at = self.demoted_gracefully_at;
        local.rejoin_pending = self.rejoin_pending;
        let keepalive = self.keepalive_deadline;
        let cycle = self.cycle();
        // A keep-alive may have extended the lease while this cycle waited
        // (a slow DCS answer, a slow PostgreSQL): decide on the newest.
        cycle.lease = lease::with_keepalive(cycle.lease, keepalive);
        // Failsafe confirmations stand in for the lease while they last.
        local.lease_deadline = cycle.lease.max(cycle.failsafe_at_start);
        let mut decision = decide(view, &local, now);
        if newly_failed {
            decision.actions.insert(0, Action::ShowRewindFailed);
        }
        cycle.lease = lease::after_decision(cycle.lease, now);
        cycle.reason = Some(decision.reason.clone());
        self.rejoin_pending =
            super::rejoin::rejoin_pending_after(self.rejoin_pending, view, &local, &decision);
        decision
    }

    /// The slot names the lock holder keeps and publishes as
    /// `retain_slots` (`member_slots_ttl`, docs/ha.md §13): none unless
    /// slots are used and the leader key is mine.
    pub fn retain_slots(
        &mut self,
        cluster: Option<&Cluster>,
        use_slots: bool,
        member_slots_ttl: Duration,
        now: Instant,
    ) -> Vec<String> {
        match cluster {
            Some(c) if use_slots && c.leader_name() == Some(self.name.as_str()) => self
                .retained_slots
                .observe(c, &self.name, now, member_slots_ttl),
            _ => Vec::new(),
        }
    }

    /// The result of one action of the decision (see [`ActionResult`]).
    pub fn action_done(
        &mut self,
        action: &Action,
        result: ActionResult,
        ttl: Duration,
    ) -> ActionStep {
        if result == ActionResult::Done {
            self.rewind.action_started(action);
        }
        self.cycle().action_done(action, result, ttl)
    }

    /// A status was published in this cycle.
    pub fn status_written(&mut self, status: Status) {
        self.cycle().status_written = Some(status);
    }

    /// The cycle ends at `now`: fold it into the node and say what the
    /// fence and the watchdog are to do.
    pub fn finish_cycle(&mut self, end: EndFacts<'_>, now: Instant) -> CycleEnd {
        let c = self
            .cycle
            .take()
            .unwrap_or_else(|| Cycle::new(None, self.lease.deadline(), self.failsafe_until));
        let pg = end.pg;
        // The lease the cycle vouches for arms the fence and the watchdog;
        // failsafe confirmations vouch as well as a renewal.
        let vouched =
            lease::vouched(c.lease, c.lease_at_start, c.lock_renewed).max(c.failsafe_until);
        let fence = super::fence::fence_order(pg, c.demoted, vouched);
        let watchdog = crate::watchdog::order(
            pg,
            CycleFacts {
                demoted: c.demoted || c.demoted_gracefully,
                paused: end.paused,
                renewed: vouched.is_some(),
                holds_lock: c.lease.is_some(),
                busy: end.busy.is_some(),
                bootstrapping: end.busy == Some(JobKind::Bootstrap) || c.bootstrap_started,
            },
        );
        // The HA loop vouches for this leader: the keep-alive may extend
        // its lease for a while (docs/ha.md §9.2).
        let confirmation = if c.demoted || !pg.is_primary() || c.lease.is_none() {
            Confirmation::Revoked
        } else if let (true, Some(started)) = (c.lock_renewed, c.started) {
            Confirmation::Confirmed(started)
        } else {
            Confirmation::Unchanged
        };
        let failsafe_changed = self.fold(&c, confirmation);
        if c.demoted_gracefully {
            self.demoted_gracefully_at = Some(now);
        } else if pg.role.is_some() {
            self.demoted_gracefully_at = None;
        }
        if let Some(cluster) = end.cluster {
            remember_members(&mut self.seen_members, cluster);
            self.failsafe_last_known = cluster.failsafe.clone();
        }
        CycleEnd {
            fence,
            watchdog,
            rerun_now: c.rerun_now,
            fatal: c.fatal,
            failsafe_changed,
        }
    }

    /// The cycle ends without facts (PostgreSQL's status could not be
    /// had): the lease stays as it was, failsafe confirmations end, the
    /// fence and the watchdog get no order. Returns whether failsafe mode
    /// ended.
    pub fn abandon_cycle(&mut self) -> Option<bool> {
        let started = self.cycle.take();
        let c = Cycle::new(
            None,
            started.map_or(self.lease.deadline(), |c| c.lease_at_start),
            None,
        );
        self.fold(&c, Confirmation::Unchanged)
    }

    /// Fold a finished cycle's lease, failsafe state, reason and status
    /// into the node; returns the failsafe change, if any.
    fn fold(&mut self, c: &Cycle, confirmation: Confirmation) -> Option<bool> {
        // A keep-alive may have moved the deadline while the cycle ran; a
        // cycle that dropped the lease wins, and keep-alive deadlines given
        // to the old lease no longer count.
        if self.lease.cycle_finished(c.lease, confirmation) {
            self.keepalive_deadline = None;
        }
        let changed = (c.failsafe_until.is_some() != self.failsafe_until.is_some())
            .then_some(c.failsafe_until.is_some());
        self.failsafe_until = c.failsafe_until;
        if let Some(r) = &c.reason {
            self.last_reason = Some(r.clone());
        }
        if let Some(s) = &c.status_written {
            self.last_status = Some(s.clone());
        }
        changed
    }
}

/// When the next cycle is due: `loop_wait` after the last one started, or
/// earlier when a scheduled switchover falls due `switchover_in` from
/// `now` (it runs at its time, not up to `loop_wait` late). It may have
/// passed already: then the next cycle starts at once.
pub fn next_cycle_due(
    started: Instant,
    now: Instant,
    loop_wait: Duration,
    switchover_in: Option<Duration>,
) -> Instant {
    let due = started + loop_wait;
    switchover_in.map_or(due, |s| due.min(now + s))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
#[path = "node_tests.rs"]
mod tests;
