//! A standby cluster (docs/ha.md §16): the same decision table, with the
//! leader a *standby leader* that streams from a remote PostgreSQL and
//! never promotes.
//!
//! The table decides as for any cluster; [`adapt`] then rewrites the few
//! orders that would make a primary, as Patroni branches on
//! `is_standby_cluster()` at the same points:
//!
//! * `Bootstrap` (the bootstrap race won) clones the remote instead of
//!   running initdb (Patroni's `bootstrap_standby_leader`);
//! * `Promote` (I hold the lock and run as a replica) becomes following the
//!   remote, or nothing when I already do (`enforce_follow_remote_member`);
//! * `StartPrimary`, and a read-only start of the lock holder or of a node
//!   of a leaderless cluster, start as a standby of the remote (`recover`);
//! * a lock holder running as a primary (the section was just added: a
//!   "demote-cluster") stops; started again it is a former primary, and
//!   `StartPrimary` is a pg_rewind from the remote (with `use_pg_rewind`)
//!   or a start as the remote's standby;
//! * no watchdog is armed and no synchronous replication is run: no
//!   PostgreSQL of the cluster takes writes.
//!
//! Everything else (the race, failover of the standby leader to the
//! healthiest replica, replicas following the lock holder, pause, the
//! fence, which only ever arms for a primary) is the table's own.

use super::action::{Action, Decision, DemoteMode, Upstream};
use super::view::{DcsView, LocalView};

/// The remote of a standby cluster as the table's orders name it: `host`
/// and `port` of the `standby_cluster` section, `port` 0 when it names
/// neither (fed by `restore_command` alone: nothing to stream from, cloned
/// only by the section's `create_replica_methods`). The name changes with
/// the address, so a changed section makes the standby leader follow the
/// new one.
pub fn remote_upstream(address: Option<(String, u16)>) -> Upstream {
    let (host, port) = address.unwrap_or_default();
    Upstream {
        name: format!("remote {host}:{port}"),
        host,
        port,
        remote: true,
    }
}

/// `d`, the table's decision, for a standby cluster; unchanged in a normal
/// cluster or when the DCS could not be read (no view of the cluster: the
/// table's read-only starts follow nobody, as everywhere).
pub fn adapt(d: Decision, dcs: &DcsView, local: &LocalView) -> Decision {
    let (Some(remote), DcsView::Ok(cluster)) = (&local.standby_cluster, dcs) else {
        return d;
    };
    let i_lead = cluster.leader_name() == Some(local.name.as_str());
    if i_lead
        && !local.paused
        && local.busy.is_none()
        && local.pg.is_primary()
        && d.actions.contains(&Action::RenewLock)
        && !d.actions.iter().any(|a| matches!(a, Action::Demote { .. }))
    {
        // Stopped, it is a former primary the lock holder starts again:
        // `StartPrimary` below, rewound onto the remote first.
        return Decision::new(
            vec![
                Action::RenewLock,
                Action::Demote {
                    mode: DemoteMode::Offline,
                },
            ],
            format!(
                "this is a standby cluster and I run as a primary: stopping to restart as the standby leader of {}",
                remote.name
            ),
        );
    }
    let follows_remote = local.pg.following.as_deref() == Some(remote.name.as_str());
    let leaderless = cluster.leader_name().is_none() && !local.paused;
    let Decision {
        actions: ordered,
        mut reason,
        summary,
        notes,
    } = d;
    let mut actions = Vec::with_capacity(ordered.len());
    for a in ordered {
        match a {
            Action::Bootstrap => {
                actions.push(Action::BootstrapStandby {
                    from: remote.clone(),
                });
                reason = format!(
                    "no cluster yet: racing to bootstrap a standby cluster of {}",
                    remote.name
                );
            }
            Action::Promote => {
                if !follows_remote {
                    actions.push(Action::Follow {
                        upstream: remote.clone(),
                    });
                }
                reason = format!(
                    "I hold the lock of a standby cluster: the standby leader, following {}",
                    remote.name
                );
            }
            // A former primary (a demote-cluster, or a primary crashed
            // before the section came): its WAL may have left the remote's
            // history, so it is rewound onto the remote when it may be
            // (Patroni's `_handle_rewind_or_reinitialize` with the remote
            // as leader); pg_rewind finds nothing to do when it has not.
            Action::StartPrimary if local.rewind.enabled && remote.port != 0 => {
                actions.push(Action::Rewind {
                    from: remote.clone(),
                });
                reason = format!(
                    "I hold the lock of a standby cluster and last ran as a primary: running pg_rewind from {}",
                    remote.name
                );
            }
            Action::StartPrimary => {
                actions.push(Action::StartReplica {
                    upstream: Some(remote.clone()),
                });
                reason = format!(
                    "PostgreSQL is down and I hold the lock of a standby cluster: starting as a standby of {}",
                    remote.name
                );
            }
            Action::StartReplica { upstream: None } if i_lead || leaderless => {
                actions.push(Action::StartReplica {
                    upstream: Some(remote.clone()),
                });
                reason = format!(
                    "PostgreSQL is down in a standby cluster: starting as a standby of {}",
                    remote.name
                );
            }
            Action::ActivateWatchdog | Action::Sync(_) => {}
            other => actions.push(other),
        }
    }
    Decision {
        actions,
        reason,
        summary,
        notes,
    }
}

/// Patroni's words for a standby cluster's cycle where they differ from a
/// normal cluster's (`process_healthy_cluster`, `recover`); `None` where
/// they do not.
pub fn summary(d: &Decision, dcs: &DcsView, local: &LocalView) -> Option<String> {
    let (Some(remote), DcsView::Ok(cluster)) = (&local.standby_cluster, dcs) else {
        return None;
    };
    let me = local.name.as_str();
    let leader = cluster.leader_name();
    let i_lead = leader == Some(me);
    let has = |f: &dyn Fn(&Action) -> bool| d.actions.iter().any(f);
    if has(&|a| matches!(a, Action::BootstrapStandby { .. })) {
        return Some("trying to bootstrap a new standby leader".into());
    }
    if local.busy.is_some()
        || !local.pg.running && !has(&|a| matches!(a, Action::StartReplica { .. }))
    {
        return None;
    }
    if has(&|a| matches!(a, Action::Demote { .. })) && i_lead {
        return Some("demoting to a standby cluster".into());
    }
    if has(&|a| matches!(a, Action::StartReplica { .. })) {
        return Some(if i_lead {
            "starting as a standby leader because i had the session lock".into()
        } else {
            "trying to follow a remote member because standby cluster is unhealthy".into()
        });
    }
    if has(&|a| *a == Action::AcquireLock) {
        return Some("promoted self to a standby leader by acquiring session lock".into());
    }
    if i_lead && local.pg.is_replica() {
        let follows = local.pg.following.as_deref() == Some(remote.name.as_str());
        return Some(
            if follows && !has(&|a| matches!(a, Action::Follow { .. })) {
                format!("no action. I am ({me}), the standby leader with the lock")
            } else {
                "promoted self to a standby leader because i had the session lock".into()
            },
        );
    }
    match leader {
        Some(l)
            if !i_lead
                && local.pg.is_replica()
                && !has(&|a| matches!(a, Action::Demote { .. })) =>
        {
            Some(format!(
                "no action. I am ({me}), a secondary, and following a standby leader ({l})"
            ))
        }
        _ => None,
    }
}
