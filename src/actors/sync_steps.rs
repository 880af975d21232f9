//! Carrying out the synchronous replication steps of a decision
//! (docs/replication-modes.md §3): the `sync` key through the DCS, by
//! compare-and-swap, and `synchronous_standby_names` through the
//! PostgresSupervisor. A lost compare is `Refused`, which ends the cycle:
//! the next one plans again from fresh facts, so no step after a failed
//! one runs.

use tracing::{info, warn};

use super::leader_elector::ElectorLinks;
use std::time::Duration;

use super::member_record::{effective_tags, member_data};
use crate::config::{Config, DynamicConfig, SyncConfig};
use crate::dcs::{Cluster, SyncState};
use crate::ha::ActionResult;
use crate::ha::sync::{ReplicaRow, SyncStep};
use crate::messages::supervisor::{GetPgStatus, ReplicationRow, SetStandbyNames};

pub async fn run(links: &ElectorLinks, me: &str, step: &SyncStep) -> ActionResult {
    match step {
        SyncStep::WriteKey {
            standbys,
            quorum,
            version,
        } => {
            let value = SyncState::to_json(me, standbys, *quorum);
            match links
                .dcs
                .set_sync_state_value(&value, version.as_ref())
                .await
            {
                Ok(true) => {
                    info!(event = crate::events::SYNC_KEY_WRITTEN, standbys = ?standbys, quorum);
                    ActionResult::Done
                }
                Ok(false) => {
                    warn!(
                        event = crate::events::SYNC_KEY_WRITE_FAILED,
                        "the sync key changed meanwhile"
                    );
                    ActionResult::Refused
                }
                Err(e) => {
                    warn!(event = crate::events::SYNC_KEY_WRITE_FAILED, error = %e);
                    ActionResult::Failed(e.to_string())
                }
            }
        }
        SyncStep::DeleteKey { version } => match links.dcs.delete_sync_state(version).await {
            Ok(true) => {
                info!(event = crate::events::SYNC_KEY_DELETED);
                ActionResult::Done
            }
            Ok(false) => {
                warn!(
                    event = crate::events::SYNC_KEY_WRITE_FAILED,
                    "the sync key changed meanwhile; not deleted"
                );
                ActionResult::Refused
            }
            Err(e) => {
                warn!(event = crate::events::SYNC_KEY_WRITE_FAILED, error = %e);
                ActionResult::Failed(e.to_string())
            }
        },
        SyncStep::SetNames { value } => set_names(links, value.clone()).await,
    }
}

async fn set_names(links: &ElectorLinks, value: Option<String>) -> ActionResult {
    match links
        .set_standby_names
        .send(SetStandbyNames(value.clone()))
        .await
    {
        Ok(Ok(())) => {
            info!(event = crate::events::SYNC_STANDBY_NAMES_SET, value = ?value);
            ActionResult::Done
        }
        Ok(Err(e)) => {
            warn!(event = crate::events::SYNC_STANDBY_NAMES_FAILED, error = %e);
            ActionResult::Failed(e.to_string())
        }
        Err(e) => {
            warn!(event = crate::events::SYNC_STANDBY_NAMES_FAILED, error = %e);
            ActionResult::Failed(e.to_string())
        }
    }
}

/// What needs no ordering: a node that does not lead runs with no
/// synchronous standbys while a mode is on (Patroni clears them on a start
/// as replica, so a promotion never inherits an old list), and with the
/// configured parameter otherwise; a leading primary with synchronous mode
/// off and no `sync` key left gives the list back to the configured
/// parameter. The supervisor does nothing when the value is already so.
pub async fn settle(
    links: &ElectorLinks,
    cfg: &SyncConfig,
    cluster: &Cluster,
    i_lead: bool,
    primary: bool,
) {
    let value = if !i_lead && !primary {
        cfg.enabled().then(String::new)
    } else if i_lead && primary && !cfg.enabled() && cluster.sync_state().is_empty() {
        None
    } else {
        return;
    };
    if let Ok(Err(e)) = links.set_standby_names.send(SetStandbyNames(value)).await {
        warn!(event = crate::events::SYNC_STANDBY_NAMES_FAILED, error = %e);
    }
}

/// docs/replication-modes.md §3: a standby the sync key lists, shutting
/// down cleanly, first asks the primary to release it (Patroni's
/// `while_not_sync_standby`), so commits do not stall on it: it publishes
/// `nosync` in its member key and waits, at most two `loop_wait`, until the
/// key no longer lists it. A DCS that does not answer ends the wait: this
/// is only a courtesy to the primary.
pub async fn release_duty(links: &ElectorLinks, cfg: &Config, dynamic: &DynamicConfig) {
    if !dynamic.sync.enabled() || cfg.tags.nosync {
        return;
    }
    let listed = |c: &Cluster| {
        c.leader_name()
            .is_some_and(|l| c.sync_state().leader_matches(l))
            && c.sync_state().matches(&cfg.name, false)
    };
    match links.dcs.load_cluster_fresh().await {
        Ok(c) if listed(&c) => {}
        _ => return,
    }
    let Ok(pg) = links
        .get_pg
        .send(GetPgStatus {
            take_outcome: false,
        })
        .await
    else {
        return;
    };
    let mut data = member_data(cfg, &pg, dynamic.pause);
    data.tags = effective_tags(&cfg.tags, true);
    let deadline = tokio::time::Instant::now() + 2 * dynamic.timing.loop_wait;
    info!(
        event = crate::events::SYNC_DUTY_RELEASE,
        released = false,
        "asking the primary to release this synchronous standby before stopping"
    );
    loop {
        if let Err(e) = links.dcs.touch_member(&data).await {
            warn!(event = crate::events::SYNC_DUTY_RELEASE, error = %e);
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        match links.dcs.load_cluster_fresh().await {
            Ok(c) if !listed(&c) => {
                info!(event = crate::events::SYNC_DUTY_RELEASE, released = true);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(event = crate::events::SYNC_DUTY_RELEASE, error = %e);
                return;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(
                event = crate::events::SYNC_DUTY_RELEASE,
                released = false,
                "the primary did not release this standby in time; stopping anyway"
            );
            return;
        }
    }
}

/// `pg_stat_replication` as the sync rules read it.
pub fn replica_rows(rows: &[ReplicationRow]) -> Vec<ReplicaRow> {
    rows.iter()
        .map(|r| ReplicaRow {
            name: r.application_name.clone(),
            sync_state: r.sync_state.clone(),
            lsn: r.flush_lsn,
        })
        .collect()
}
