//! The decision table of docs/ha.md §2, as one pure function.

use std::collections::BTreeMap;
use std::time::Instant;

use super::action::{Action, Decision, DemoteMode, Upstream};
use super::switchover::{self, RaceRule};
use super::view::{DataDir, DcsView, JobKind, JobOutcome, LeaderHeartbeat, LocalView, PgRole};
use crate::dcs::{Cluster, Member, MemberData};

/// What this node should do now.
///
/// `now` is compared with `local.lease_deadline` to decide whether a primary
/// that cannot reach the DCS may keep serving until its next chance to renew.
///
/// The decision carries Patroni's words for it too: its `summary` and,
/// first among its `notes`, the `Lock owner` line (`ha::summary`).
pub fn decide(dcs: &DcsView, local: &LocalView, now: Instant) -> Decision {
    let d = keep_foreign_lock(table(dcs, local, now), local);
    let mut d = super::standby_cluster::adapt(d, dcs, local);
    d.summary = match super::standby_cluster::summary(&d, dcs, local) {
        Some(line) => super::summary::paused_prefix(local, line),
        None => super::summary::summary(&d, dcs, local, now),
    };
    if let Some(line) = super::summary::lock_owner(dcs, local) {
        d.notes.insert(0, line);
    }
    d
}

/// A leader key of my name that another process holds under its session
/// (a daemon started with the same `name`, docs/ha.md §3.4) is never
/// released: `ReleaseLock` is dropped from the decision, whatever the
/// table said (an empty data directory, a failed start...). The name on
/// the key is not proof of holding it; the session is.
fn keep_foreign_lock(mut d: Decision, local: &LocalView) -> Decision {
    if !local.leader_key_foreign || !d.actions.contains(&Action::ReleaseLock) {
        return d;
    }
    d.actions.retain(|a| *a != Action::ReleaseLock);
    d.reason = format!(
        "{}; but the leader key of my name is held under another process's session (a daemon with my name?): not releasing it",
        d.reason
    );
    d
}

/// The decision table proper (docs/ha.md §2).
fn table(dcs: &DcsView, local: &LocalView, now: Instant) -> Decision {
    // Paused: the operator is in charge; a lapsed lease or a lost DCS
    // stops nothing (docs/ha.md §11).
    if !local.paused
        && let Some(d) = lease_lapsed(local, now)
    {
        return d;
    }
    let cluster = match dcs {
        DcsView::Ok(c) => c,
        DcsView::Failed(err) if local.paused => {
            return Decision::idle(format!(
                "paused; DCS is not accessible ({err}): doing nothing"
            ));
        }
        DcsView::Failed(err) => return dcs_failed(err, local, now),
    };
    let i_lead = cluster.leader_name() == Some(local.name.as_str());

    if let Some(outcome) = &local.outcome
        && let Some(d) = after_job(outcome, cluster, local)
    {
        return d;
    }
    if let Some(job) = local.busy {
        if i_lead && let Some(d) = primary_start_timed_out(cluster, local) {
            return d;
        }
        return if i_lead {
            Decision::new(
                vec![Action::RenewLock],
                format!("{job:?} in progress; keeping the lock"),
            )
        } else {
            Decision::idle(format!("{job:?} in progress"))
        };
    }
    if local.paused {
        return super::pause::decide_paused(cluster, local, now, i_lead);
    }

    let (sysid, was_primary) = match &local.data_dir {
        DataDir::Empty => return empty_data_dir(cluster, local, i_lead),
        DataDir::Initialized { sysid, was_primary } => (sysid, *was_primary),
        DataDir::Unreadable(why) => {
            return if i_lead {
                Decision::new(
                    vec![Action::ReleaseLock],
                    format!("cannot read my data directory ({why}): releasing the lock"),
                )
            } else {
                Decision::idle(format!(
                    "cannot read pg_control ({why}); leaving the data directory alone"
                ))
            };
        }
    };

    match cluster.initialize.as_deref() {
        Some(init) if !init.is_empty() && init != sysid => {
            return Decision::new(
                vec![Action::Fatal {
                    reason: format!(
                        "data directory has system identifier {sysid} but the cluster's is {init}; refusing to join"
                    ),
                }],
                "system identifier mismatch",
            );
        }
        None if cluster.leader.is_none() => {
            if local.pg.is_replica() {
                return Decision::idle(
                    "cluster has no initialize key and I run as a replica; waiting for a primary",
                );
            }
            return Decision::new(
                vec![Action::CreateInitialize {
                    sysid: sysid.clone(),
                }],
                "existing data directory and no initialize key: claiming the cluster for it",
            );
        }
        _ => {}
    }

    if let Some(d) = switchover::after_graceful_demotion(cluster, local, now, i_lead) {
        return d;
    }
    if !local.pg.running {
        // A former primary that ran read-only without the DCS rejoins as
        // a former primary (docs/ha.md §9.6), whatever pg_control says now.
        return pg_not_running(cluster, local, i_lead, was_primary || local.rejoin_pending);
    }
    if local.pg.role.is_none() {
        return if i_lead {
            leader_pg_not_answering(local, now)
        } else {
            Decision::idle("PostgreSQL is running but not answering yet")
        };
    }

    match cluster.leader_name() {
        None => match live_failsafe_leader(local, now) {
            Some(hb) => follow_failsafe_leader(hb, local),
            None => leader_race(cluster, local),
        },
        Some(_) if i_lead => {
            if let Some(d) = super::watchdog::lock_holder_must_step_down(local) {
                return d;
            }
            if local.pg.is_primary() {
                if let Some(d) = switchover::leader_side(cluster, local) {
                    return d;
                }
                leader_primary(cluster, local, "")
            } else {
                let mut actions = vec![Action::RenewLock];
                actions.extend(super::watchdog::arm(local));
                // docs/replication-modes.md §4: the sync key is mine
                // before PostgreSQL takes writes (a lost compare ends the
                // cycle before the promotion).
                actions.extend(super::sync::actions(super::sync::prepromote_plan(
                    &local.sync,
                    &local.name,
                    cluster,
                )));
                actions.push(Action::Promote);
                actions.extend(switchover::clear_after_win(cluster));
                Decision::new(actions, "I hold the lock and run as a replica: promoting")
            }
        }
        Some(leader) => {
            if local.pg.is_primary() {
                return Decision::new(
                    vec![Action::Demote {
                        mode: DemoteMode::ImmediateNoLock,
                    }],
                    format!("{leader} holds the lock but I run as a primary: demoting"),
                );
            }
            if local.rejoin_pending && (local.rewind.enabled || local.rewind.remove_on_diverged) {
                // docs/ha.md §9.6: my WAL may have left the new leader's
                // history while I ran as a primary without the DCS; stop,
                // and docs/ha.md §8 rewinds (or rebuilds) before following.
                return Decision::new(
                    vec![Action::Demote {
                        mode: DemoteMode::Offline,
                    }],
                    format!(
                        "I ran as a primary before the DCS was lost and {leader} leads now: stopping PostgreSQL to rejoin as a former primary"
                    ),
                );
            }
            follow_leader(cluster, leader, local)
        }
    }
}

/// The leader's PostgreSQL runs as primary: renew the lock and keep the
/// leader's keys (history, failsafe, config) current. `prefix` starts the
/// reason (pause mode says so).
pub(super) fn leader_primary(cluster: &Cluster, local: &LocalView, prefix: &str) -> Decision {
    let mut actions = vec![Action::RenewLock];
    actions.extend(super::watchdog::arm(local));
    let mut reason = "I am the leader with the lock";
    if history_stale(cluster, local) {
        actions.push(Action::WriteHistory);
        reason = "I am the leader on a new timeline: publishing the history";
    }
    if let Some(members) = failsafe_update(cluster, local) {
        actions.push(Action::WriteFailsafe { members });
    }
    actions.extend(super::config_restore::config_restore(cluster, local));
    let plan = super::sync::primary_plan(
        &local.sync,
        &local.name,
        cluster,
        &local.sync_facts.names,
        &local.sync_facts.candidates,
    );
    let reason = if plan.reason.is_empty() {
        reason.to_owned()
    } else {
        format!("{reason}; {}", plan.reason)
    };
    actions.extend(super::sync::actions(plan));
    Decision::new(actions, format!("{prefix}{reason}"))
}

/// A running replica and another node's lock: stream from the right
/// upstream (reload only, never a restart).
pub(super) fn follow_leader(cluster: &Cluster, leader: &str, local: &LocalView) -> Decision {
    match stream_source(cluster, leader, local) {
        Some(up) if local.pg.following.as_deref() != Some(up.name.as_str()) => {
            let reason = if up.name == leader {
                format!("following new leader {leader}")
            } else {
                format!("following {} (replicatefrom), leader {leader}", up.name)
            };
            Decision::new(vec![Action::Follow { upstream: up }], reason)
        }
        Some(up) if up.name != leader => Decision::idle(format!(
            "no action: streaming from {} (replicatefrom), leader {leader}",
            up.name
        )),
        Some(_) => Decision::idle(format!("no action: streaming from leader {leader}")),
        None => Decision::idle(format!("leader {leader} has no member record yet")),
    }
}

/// A failed DCS read (docs/ha.md §9.3, §10.1). The error
/// classes react alike here: `Unreachable` and `Other` both mean "no current
/// view of the cluster" (a lost compare-and-swap is no error but a write's
/// outcome: it ends the cycle in the elector and the next cycle decides on
/// fresh facts). A primary keeps serving when failsafe mode is on
/// and every member of the `failsafe` key confirmed it (none of them will
/// promote); otherwise up to its fencing point when a live fence confirmed
/// it stops PostgreSQL there (the fence takes the last step), else only
/// while its lease surely holds past the next chance to renew; everything
/// else waits.
fn dcs_failed(err: &crate::dcs::DcsError, local: &LocalView, now: Instant) -> Decision {
    if let Some(d) = start_read_only_without_dcs(err, local) {
        return d;
    }
    if !local.pg.is_primary() {
        if let Some(hb) = live_failsafe_leader(local, now) {
            return Decision::idle(format!(
                "DCS is not accessible ({err}); failsafe: leader {} is alive, doing nothing",
                hb.name
            ));
        }
        return Decision::idle(format!("DCS is not accessible ({err}); doing nothing"));
    }
    if let Some(n) = failsafe_confirmed(local) {
        // Failsafe replaces the lease: all members confirmed that none of
        // them will promote while I run.
        return Decision::new(
            vec![Action::StayPrimaryOnFailsafe],
            format!(
                "DCS is not accessible ({err}); failsafe: all {n} other members confirmed, staying primary"
            ),
        );
    }
    // Demote as late as is safe. Until the fencing point (lease deadline
    // minus the safety margin) the lease surely holds: nobody else can be
    // leader, so this node keeps serving, and if the DCS comes back first
    // nothing happens at all.
    let Some(fence_at) = fencing_point(local) else {
        return demote_to_read_only(
            DemoteMode::Offline,
            format!("DCS is not accessible ({err}) and I hold no lease: demoting to read-only"),
        );
    };
    if now >= fence_at {
        // The fence is stopping it already, or failed to: at once.
        return demote_to_read_only(
            DemoteMode::ImmediateNoLock,
            format!(
                "DCS is not accessible ({err}) and the fencing point has passed: stopping PostgreSQL at once, then starting it read-only"
            ),
        );
    }
    let left = fence_at.saturating_duration_since(now).as_secs_f64();
    if let Some(room) = fence_room(local, now) {
        return Decision::idle(format!(
            "DCS is not accessible ({err}); the lease holds for {:.1}s more, staying primary",
            room.as_secs_f64()
        ));
    }
    if fence_takes_last_step(local, fence_at) {
        // The next decision may come too late, but the fence stops
        // PostgreSQL at the fencing point (or earlier) on its own.
        return Decision::idle(format!(
            "DCS is not accessible ({err}); the fence stops PostgreSQL in {left:.1}s unless the lease is renewed first, staying primary until then"
        ));
    }
    // No fence to take the last step: the next decision (within one cycle)
    // may come after the fencing point, so step down now.
    demote_to_read_only(
        DemoteMode::Offline,
        format!(
            "DCS is not accessible ({err}), the lease may expire before the next renewal and no fence is armed: demoting to read-only"
        ),
    )
}

/// A primary that cannot keep serving without the DCS stops (`mode`) and
/// comes back at once as a standby following nobody (Patroni's
/// `demote('offline')`, docs/ha.md §9.6): reads go on, writes cannot, and
/// the standby takes no part in any election until the DCS answers.
fn demote_to_read_only(mode: DemoteMode, reason: String) -> Decision {
    Decision::new(
        vec![
            Action::Demote { mode },
            Action::StartReplica { upstream: None },
        ],
        reason,
    )
}

/// The DCS cannot be read and PostgreSQL is stopped although its data
/// directory last ran as a primary (the fence stopped it at the fencing
/// point, an earlier start read-only failed, it crashed), or it was started
/// read-only without the DCS before: start it read-only, a standby
/// following nobody (docs/ha.md §9.6). Never as a primary: without the DCS
/// nothing says this node may lead. A stopped replica stays stopped, as in
/// Patroni.
fn start_read_only_without_dcs(err: &crate::dcs::DcsError, local: &LocalView) -> Option<Decision> {
    let DataDir::Initialized { was_primary, .. } = local.data_dir else {
        return None;
    };
    (!local.pg.running && local.busy.is_none() && (was_primary || local.rejoin_pending)).then(|| {
        Decision::new(
            vec![Action::StartReplica { upstream: None }],
            format!(
                "DCS is not accessible ({err}) and PostgreSQL, last a primary, is stopped: starting it read-only"
            ),
        )
    })
}

/// `lease_deadline - fence_margin`: from then on this node's PostgreSQL
/// must not accept writes. `None` without a lease.
fn fencing_point(local: &LocalView) -> Option<Instant> {
    local
        .lease_deadline?
        .checked_sub(local.timing.fence_margin())
}

/// The fence process confirmed an order that stops PostgreSQL no later than
/// `fence_at`.
fn fence_takes_last_step(local: &LocalView, fence_at: Instant) -> bool {
    local.fence_armed.is_some_and(|f| f <= fence_at)
}

/// How long the lease surely holds, when the next decision (at most one
/// cycle away) still comes before the fencing point
/// `lease_deadline - fence_margin`; `None` when this node must stop
/// serving now unless the fence takes the last step.
fn fence_room(local: &LocalView, now: Instant) -> Option<std::time::Duration> {
    let deadline = local.lease_deadline?;
    let fence_at = fencing_point(local)?;
    (now + local.timing.cycle_bound() < fence_at).then(|| deadline.saturating_duration_since(now))
}

/// First rule of every cycle: a leader whose lease has run out (the daemon
/// was frozen, or the lease could not be renewed) stops a PostgreSQL that
/// may still accept writes before anything else, since another node may
/// hold the leader key already. The next cycle decides on the new facts.
fn lease_lapsed(local: &LocalView, now: Instant) -> Option<Decision> {
    let deadline = local.lease_deadline?;
    (now >= deadline && local.pg.running && local.pg.role != Some(PgRole::Replica)).then(|| {
        Decision::new(
            vec![Action::Demote {
                mode: DemoteMode::ImmediateNoLock,
            }],
            format!(
                "my leader lease ran out {:.1}s ago while PostgreSQL may accept writes: stopping it at once",
                now.saturating_duration_since(deadline).as_secs_f64()
            ),
        )
    })
}

/// The leader's PostgreSQL runs but did not answer the status query: the
/// lock is not renewed (its health cannot be vouched for) and the fence is
/// not re-armed. While the lease holds past the next cycle it waits for
/// PostgreSQL to answer again; after that it fences PostgreSQL (immediate
/// shutdown, SIGKILL of its process group when it does not react) and
/// releases the lock so a healthy replica takes over.
fn leader_pg_not_answering(local: &LocalView, now: Instant) -> Decision {
    match fence_room(local, now) {
        Some(left) => Decision::idle(format!(
            "PostgreSQL is not answering; not renewing the lock (it holds {:.1}s more)",
            left.as_secs_f64()
        )),
        None => Decision::new(
            vec![
                Action::Demote {
                    mode: DemoteMode::ImmediateNoLock,
                },
                Action::ReleaseLock,
            ],
            "PostgreSQL is not answering and the lease cannot be renewed honestly: fencing it and releasing the lock",
        ),
    }
}

/// The number of other members confirming me, when failsafe mode is on, the
/// last known `failsafe` key lists me and every other member listed there
/// accepted my `POST /failsafe` this cycle. `None` otherwise.
fn failsafe_confirmed(local: &LocalView) -> Option<usize> {
    let fs = &local.failsafe;
    if !fs.enabled {
        return None;
    }
    let members = fs.last_known.as_ref()?;
    if !members.contains_key(&local.name) {
        return None;
    }
    let acks = fs.acks.as_ref()?;
    let mut n = 0;
    for name in members.keys().filter(|n| **n != local.name) {
        if !acks.iter().any(|a| a.name == *name && a.accepted) {
            return None;
        }
        n += 1;
    }
    Some(n)
}

/// The leader that sent me `POST /failsafe` less than ttl ago, if failsafe
/// mode is on and it is not me.
fn live_failsafe_leader(local: &LocalView, now: Instant) -> Option<&LeaderHeartbeat> {
    let hb = local.failsafe.heartbeat.as_ref()?;
    (local.failsafe.enabled
        && hb.name != local.name
        && now.saturating_duration_since(hb.at) < local.timing.ttl)
        .then_some(hb)
}

/// No leader key, but the old leader says over REST it still runs: treat it
/// as the leader (no race) and stream from it.
fn follow_failsafe_leader(hb: &LeaderHeartbeat, local: &LocalView) -> Decision {
    let data = MemberData {
        conn_url: hb.conn_url.clone(),
        ..MemberData::default()
    };
    let Some((host, port)) = data.conn_host_port() else {
        return Decision::idle(format!(
            "no leader key, but failsafe leader {} is alive: not racing",
            hb.name
        ));
    };
    if local.pg.is_replica() && local.pg.following.as_deref() != Some(hb.name.as_str()) {
        return Decision::new(
            vec![Action::Follow {
                upstream: Upstream {
                    name: hb.name.clone(),
                    host,
                    port,
                    remote: false,
                },
            }],
            format!(
                "no leader key, but failsafe leader {} is alive: following it",
                hb.name
            ),
        );
    }
    Decision::idle(format!(
        "no leader key, but failsafe leader {} is alive: not racing",
        hb.name
    ))
}

/// The `failsafe` value the leader should publish (every member with a REST
/// address, me included), when failsafe mode is on and it differs from the
/// DCS's.
fn failsafe_update(cluster: &Cluster, local: &LocalView) -> Option<BTreeMap<String, String>> {
    if !local.failsafe.enabled {
        return None;
    }
    let mut want: BTreeMap<String, String> = cluster
        .members
        .iter()
        .filter(|m| !m.data.api_url.is_empty())
        .map(|m| (m.name.clone(), m.data.api_url.clone()))
        .collect();
    if !local.failsafe.api_url.is_empty() {
        want.insert(local.name.clone(), local.failsafe.api_url.clone());
    }
    (cluster.failsafe.as_ref() != Some(&want)).then_some(want)
}

/// Follow-up of a finished job (docs/ha.md §3.2).
fn after_job(outcome: &JobOutcome, cluster: &Cluster, local: &LocalView) -> Option<Decision> {
    match outcome {
        JobOutcome::Succeeded(JobKind::Bootstrap) => {
            let DataDir::Initialized { sysid, .. } = &local.data_dir else {
                return Some(Decision::new(
                    vec![Action::CancelInitialize],
                    "bootstrap reported success but the data directory is empty",
                ));
            };
            let mut actions = vec![Action::CompleteBootstrap {
                sysid: sysid.clone(),
            }];
            actions.extend(super::watchdog::arm(local));
            actions.push(Action::AcquireLock);
            Some(Decision::new(
                actions,
                "bootstrap finished: publishing the cluster and taking the lock",
            ))
        }
        JobOutcome::Failed(JobKind::Bootstrap, why) => Some(Decision::new(
            vec![Action::CancelInitialize],
            format!("bootstrap failed ({why}): releasing initialize"),
        )),
        JobOutcome::Failed(kind @ (JobKind::Promote | JobKind::Start), why)
            if cluster.leader_name() == Some(&local.name) =>
        {
            // Holding the lock without a working primary would block every
            // failover: let a healthy replica take over instead.
            Some(Decision::new(
                vec![Action::ReleaseLock],
                format!("{kind:?} failed ({why}): releasing the lock"),
            ))
        }
        // A rewind `ha::rewind` calls a retry (the leader unreachable, its
        // post-promote checkpoint not done yet, the start after it failed):
        // nothing was damaged, decide again next cycle.
        JobOutcome::RewindFailed(why) if !local.rewind.failed => Some(Decision::idle(format!(
            "could not rewind yet ({why}); trying again next cycle"
        ))),
        _ => None,
    }
}

/// The leader's `history` key lags its timeline (Patroni's
/// `update_cluster_history`): timeline 1 wants `[]` (written only to clear
/// a non-empty key); timeline N > 1 wants a last line for N-1 carrying the
/// timestamp and the new leader.
fn history_stale(cluster: &Cluster, local: &LocalView) -> bool {
    let Some(tl) = local.pg.timeline else {
        return false;
    };
    let lines = cluster.history.as_deref().unwrap_or_default();
    if tl <= 1 {
        return !lines.is_empty();
    }
    match lines.last() {
        Some(last) => last.timeline + 1 != tl || last.new_leader.is_none(),
        None => true,
    }
}

fn empty_data_dir(cluster: &Cluster, local: &LocalView, i_lead: bool) -> Decision {
    if i_lead {
        return Decision::new(
            vec![Action::ReleaseLock],
            "my data directory is empty: releasing the lock",
        );
    }
    match (cluster.leader_name(), cluster.initialize.as_deref()) {
        (None, None) if local.watchdog.failure().is_some() => {
            super::watchdog::not_bootstrapping(local)
        }
        (None, None) if local.can_bootstrap && local.tags.can_failover() => Decision::new(
            super::watchdog::arm(local)
                .into_iter()
                .chain([Action::TakeInitialize, Action::Bootstrap])
                .collect(),
            "no cluster yet: racing to bootstrap it",
        ),
        (None, None) => Decision::idle("waiting for another node to bootstrap the cluster"),
        (None, Some("")) => Decision::idle("another node is bootstrapping the cluster"),
        (None, Some(i)) if !i.is_empty() && local.can_clone_without_leader => Decision::new(
            vec![Action::CloneWithoutLeader],
            "cluster has no leader: creating a replica with a no_leader method",
        ),
        (None, Some(_)) => Decision::idle("cluster has no leader: cannot create a replica"),
        (Some(leader), _) => match clone_source(cluster, leader, &local.name) {
            Some(from) => Decision::new(
                vec![Action::Clone { from }],
                format!("creating a replica from {leader}'s cluster"),
            ),
            None => Decision::idle(format!("leader {leader} has no usable member record yet")),
        },
    }
}

fn pg_not_running(
    cluster: &Cluster,
    local: &LocalView,
    i_lead: bool,
    was_primary: bool,
) -> Decision {
    let rewind = local.rewind;
    if rewind.failed && i_lead {
        return Decision::new(
            vec![Action::ReleaseLock],
            "pg_rewind failed on this node: releasing the lock",
        );
    }
    if i_lead && let Some(d) = super::watchdog::lock_holder_must_step_down(local) {
        return d;
    }
    if i_lead
        && was_primary
        && local.primary_start_timeout.is_zero()
        && let Some(to) = failover_candidate(cluster, local)
    {
        // docs/ha.md §8.1: the operator prefers a failover to a restart
        // of the crashed primary, and a healthy replica can take over.
        return Decision::new(
            vec![Action::ReleaseLock],
            format!(
                "PostgreSQL is down, primary_start_timeout is 0 and {to} can take over: releasing the lock to fail over"
            ),
        );
    }
    if i_lead {
        return if was_primary {
            let mut actions = vec![Action::RenewLock];
            actions.extend(super::watchdog::arm(local));
            actions.push(Action::StartPrimary);
            Decision::new(
                actions,
                "PostgreSQL is down and I hold the lock: restarting it as primary",
            )
        } else {
            Decision::new(
                vec![Action::RenewLock, Action::StartReplica { upstream: None }],
                "PostgreSQL is down and I hold the lock: starting read-only, promoting next",
            )
        };
    }
    match cluster.leader_name() {
        // Without a leader nothing is rebuilt: there is no source to rebuild
        // from, and this node's data may be the best the cluster has.
        None if rewind.failed => Decision::idle(
            "pg_rewind failed and the cluster has no leader: staying stopped until an operator acts",
        ),
        None => Decision::new(
            vec![Action::StartReplica { upstream: None }],
            "PostgreSQL is down and the cluster has no leader: starting read-only",
        ),
        Some(leader) => match upstream_of(cluster, leader) {
            None => Decision::idle(format!("leader {leader} has no member record yet")),
            Some(up) if rewind.failed => {
                // Either setting allows the rebuild, as in Patroni's
                // `Rewind.execute` (docs/ha.md §8.2).
                let allowed = if rewind.remove_on_failure {
                    Some("remove_data_directory_on_rewind_failure")
                } else if rewind.remove_on_diverged {
                    Some("remove_data_directory_on_diverged_timelines")
                } else {
                    None
                };
                if let Some(setting) = allowed {
                    Decision::new(
                        vec![Action::Reinitialize { from: up }],
                        format!("pg_rewind failed and {setting} is set: rebuilding from {leader}"),
                    )
                } else {
                    Decision::idle(
                        "pg_rewind failed: staying stopped until an operator acts (reinitialize, or set remove_data_directory_on_rewind_failure or remove_data_directory_on_diverged_timelines)",
                    )
                }
            }
            Some(up) if was_primary && rewind.enabled => Decision::new(
                vec![Action::Rewind { from: up }],
                format!("I was a primary and {leader} leads now: running pg_rewind from it"),
            ),
            Some(up) if was_primary && rewind.remove_on_diverged => Decision::new(
                vec![Action::Reinitialize { from: up }],
                format!(
                    "I was a primary and {leader} leads now; use_pg_rewind is off and remove_data_directory_on_diverged_timelines is set: rebuilding from it"
                ),
            ),
            Some(up) => Decision::new(
                vec![Action::StartReplica { upstream: Some(up) }],
                format!("PostgreSQL is down: starting as a replica of {leader}"),
            ),
        },
    }
}

/// The lock holder's start as primary has run for `primary_start_timeout`
/// and a replica can take over (Patroni's `handle_starting_instance`,
/// docs/ha.md §8.1): stop the starting PostgreSQL (the start gives up and
/// the stop waits for it), then release the lock. Without a candidate it
/// keeps waiting, as Patroni does.
fn primary_start_timed_out(cluster: &Cluster, local: &LocalView) -> Option<Decision> {
    let ran = local.starting_primary_for?;
    if ran < local.primary_start_timeout {
        return None;
    }
    let to = failover_candidate(cluster, local)?;
    Some(Decision::new(
        vec![
            Action::Demote {
                mode: DemoteMode::ImmediateNoLock,
            },
            Action::ReleaseLock,
        ],
        format!(
            "PostgreSQL has been starting as primary for {:.0}s (primary_start_timeout {}s) and {to} can take over: stopping it and releasing the lock",
            ran.as_secs_f64(),
            local.primary_start_timeout.as_secs()
        ),
    ))
}

/// A peer that could take over from this lock holder (Patroni's
/// `is_failover_possible`, docs/ha.md §8.1): it answered this cycle, runs
/// as a replica, may be promoted (tags, watchdog), is within
/// `maximum_lag_on_failover` of the last leader position and not behind
/// the cluster's timeline. Peers that did not answer do not count.
///
/// In quorum mode the healthy candidates must also cover the key's
/// `quorum` (docs/replication-modes.md §5), else none would win the race.
pub(super) fn failover_candidate<'a>(cluster: &Cluster, local: &'a LocalView) -> Option<&'a str> {
    let cluster_tl = cluster.timeline();
    let healthy: Vec<&str> = local
        .peers
        .iter()
        .filter_map(|peer| {
            let reply = peer.reply.as_ref()?;
            let lagging = cluster.status.optime.is_some_and(|o| {
                o.saturating_sub(reply.lsn.unwrap_or(0)) > local.maximum_lag_on_failover
            });
            let behind = match (reply.timeline, cluster_tl) {
                (Some(theirs), Some(c)) => theirs < c,
                (None, Some(_)) => true,
                _ => false,
            };
            (reply.running
                && reply.role == PgRole::Replica
                && reply.can_promote()
                && peer.name != local.name
                && super::sync::may_take_over(&local.sync, cluster, &peer.name)
                && !lagging
                && !behind)
                .then_some(peer.name.as_str())
        })
        .collect();
    if !super::quorum_plan::failover_possible(&local.sync, cluster, healthy.len()) {
        return None;
    }
    healthy.first().copied()
}

/// No leader key (docs/ha.md §5).
fn leader_race(cluster: &Cluster, local: &LocalView) -> Decision {
    if !local.tags.can_failover() {
        return if local.pg.is_primary() {
            Decision::new(
                vec![Action::Demote {
                    mode: DemoteMode::ImmediateNoLock,
                }],
                "no leader and I am tagged nofailover: demoting",
            )
        } else {
            Decision::idle("no leader; I am tagged nofailover and do not race")
        };
    }
    if let Some(d) = super::watchdog::may_not_race(local) {
        return d;
    }
    if local.pg.role == Some(PgRole::Primary) {
        let behind =
            matches!((local.pg.timeline, cluster.timeline()), (Some(mine), Some(c)) if mine < c);
        if !behind {
            return Decision::new(
                super::watchdog::then_lock(local),
                "no leader and I run as primary: taking the lock",
            );
        }
        return Decision::new(
            vec![Action::Demote {
                mode: DemoteMode::ImmediateNoLock,
            }],
            "no leader, and my timeline is behind the cluster's: demoting",
        );
    }
    if local.failsafe.enabled
        && let Some(fs) = &cluster.failsafe
        && !fs.is_empty()
        && !fs.contains_key(&local.name)
    {
        return Decision::idle(
            "not racing: failsafe mode is on and the failsafe key does not list me",
        );
    }
    // A standby behind the cluster's timeline never saw the last promotion:
    // its WAL may have left the history the last primary acknowledged
    // (found by the simulation, seeds 9, 84, 308, 415). Patroni makes this
    // optional (`check_timeline`); pgpilot always checks: a failover it
    // refuses costs availability, one it allows here may cost data.
    if let (Some(mine), Some(cluster_tl)) = (local.pg.timeline, cluster.timeline())
        && mine < cluster_tl
    {
        return Decision::idle(format!(
            "not racing: my timeline {mine} is behind the cluster's timeline {cluster_tl}"
        ));
    }
    if let Some(d) = super::sync::race_gate(cluster, local) {
        return d;
    }
    let sync_active = super::sync::active(&local.sync, cluster);
    let sync = cluster.sync_state();
    let (exclude, ignore_lag) = match switchover::race_rule(cluster, local) {
        RaceRule::Decided(d) => return super::watchdog::arm_before_lock(d, local),
        RaceRule::Race {
            exclude,
            ignore_lag,
        } => (exclude, ignore_lag),
    };
    let my_lsn = local.pg.lsn.unwrap_or(0);
    // docs/replication-modes.md §5: in quorum mode the listed members that
    // are not ahead vote for me.
    let quorum_mode = super::quorum_plan::active(&local.sync, cluster);
    let mut votes = super::quorum_plan::Votes::start(cluster, &local.name);
    let mut nodes_ahead = 0;
    // Patroni's words for what the race weighed (`is_healthiest_node`).
    let mut notes: Vec<String> = Vec::new();
    if let Some(optime) = cluster.status.optime.filter(|_| !ignore_lag) {
        let lag = optime.saturating_sub(my_lsn);
        if lag > local.maximum_lag_on_failover {
            return Decision::idle(format!(
                "not racing: {lag} bytes behind the last leader position (limit {})",
                local.maximum_lag_on_failover
            ));
        }
    }
    for peer in &local.peers {
        if exclude.as_deref() == Some(peer.name.as_str()) {
            continue;
        }
        let Some(reply) = &peer.reply else { continue };
        if !reply.can_promote() {
            continue;
        }
        // docs/replication-modes.md §4: with synchronous mode in force only
        // the members the sync key lists are compared.
        if sync_active && !sync.matches(&peer.name, true) {
            continue;
        }
        if reply.running && reply.role == PgRole::Primary {
            return Decision::idle(format!("not racing: {} still runs as a primary", peer.name));
        }
        // A peer on an older timeline cannot be ahead of me, whatever its
        // LSN: WAL past its switch point is not on the cluster's history.
        // Ignoring this deadlocked a correct node behind a diverged one
        // (simulation seed 415).
        // Positions compare as (timeline, LSN): a peer on a newer timeline
        // saw a promotion I did not, even if the history key never recorded
        // it (simulation seed 9), so it is ahead whatever its LSN.
        match (reply.timeline, local.pg.timeline) {
            (Some(theirs_tl), Some(mine_tl)) if theirs_tl < mine_tl => continue,
            (Some(theirs_tl), Some(mine_tl)) if theirs_tl > mine_tl => {
                return Decision::idle(format!(
                    "not racing: {} is on a newer timeline ({theirs_tl} > {mine_tl})",
                    peer.name
                ));
            }
            _ => {}
        }
        let theirs = reply.lsn.unwrap_or(0);
        // The former leader may be ahead with commits it never had
        // acknowledged (Patroni ignores it): every acknowledged one is on
        // the standbys the key lists.
        if theirs > my_lsn && !(sync_active && sync.leader_matches(&peer.name)) {
            notes.push(format!(
                "Wal position of {} is ahead of my wal position",
                peer.name
            ));
            let mut d = Decision::idle(format!(
                "not racing: {} is ahead ({theirs} > {my_lsn})",
                peer.name
            ));
            d.notes = notes;
            return d;
        }
        if theirs > my_lsn {
            nodes_ahead += 1;
            notes.push(format!(
                "Wal position of {} is ahead of my wal position",
                peer.name
            ));
            continue;
        }
        let (mine_p, theirs_p) = (
            local.tags.failover_priority.unwrap_or(1),
            reply.tags.failover_priority.unwrap_or(1),
        );
        if theirs == my_lsn && theirs_p > mine_p {
            notes.push(format!(
                "{} has equally tolerable WAL position and priority {theirs_p}, while this node has priority {mine_p}",
                peer.name
            ));
            let mut d = Decision::idle(format!(
                "not racing: {} is as far as me with a higher failover_priority",
                peer.name
            ));
            d.notes = notes;
            return d;
        }
        if quorum_mode && reply.running && theirs > 0 {
            votes.votes += 1;
        }
    }
    let mut d = if quorum_mode && !votes.enough(cluster, &local.name, nodes_ahead) {
        Decision::idle(format!(
            "not racing: quorum commit needs {} votes of the sync key's members, I have {}",
            votes.needed,
            votes.votes.max(0)
        ))
    } else {
        Decision::new(
            super::watchdog::then_lock(local),
            "no leader and I am the healthiest node: taking the lock",
        )
    };
    d.notes = notes;
    d
}

/// Where a running replica streams from (docs/ha.md §7): its
/// `replicatefrom` member while that one runs, else the leader.
fn stream_source(cluster: &Cluster, leader: &str, local: &LocalView) -> Option<Upstream> {
    super::slots::cascade_source(cluster, &local.name, local.tags.replicatefrom.as_deref())
        .filter(|m| m.name != leader)
        .and_then(upstream)
        .or_else(|| upstream_of(cluster, leader))
}

/// The leader as a streaming source, if its member record says where it is.
pub(crate) fn upstream_of(cluster: &Cluster, name: &str) -> Option<Upstream> {
    cluster.member(name).and_then(upstream)
}

fn upstream(m: &Member) -> Option<Upstream> {
    let (host, port) = m.data.conn_host_port()?;
    Some(Upstream {
        name: m.name.clone(),
        host,
        port,
        remote: false,
    })
}

/// A running member tagged `clonefrom` (not me), else the leader.
pub(crate) fn clone_source(cluster: &Cluster, leader: &str, me: &str) -> Option<Upstream> {
    cluster
        .members
        .iter()
        .filter(|m| m.name != me && m.data.tags.clonefrom && m.data.state == "running")
        .find_map(upstream)
        .or_else(|| upstream_of(cluster, leader))
}
