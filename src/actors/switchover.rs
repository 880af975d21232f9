//! Graceful demotion for a switchover (docs/ha.md §6.4): the supervisor's
//! part (CHECKPOINT, fast stop, read the shutdown checkpoint's LSN) and the
//! elector's part (publish that LSN as `status.optime`, then delete the
//! leader key).

use tracing::{info, warn};

use super::postgres_jobs::JobEnv;
use crate::dcs::{Dcs, DcsError, Status};
use crate::messages::supervisor::SupervisorError;
use crate::postgres::{Postmaster, StopMode, controldata, query};

/// Supervisor side. The CHECKPOINT first makes the shutdown checkpoint
/// short, so the primary is unavailable for as little time as possible.
/// A fast stop makes the walsenders send everything, the shutdown
/// checkpoint included, to the connected standbys and wait for their
/// confirmation before the postmaster exits. Answers the shutdown
/// checkpoint's LSN from pg_control.
pub async fn stop(env: &JobEnv, pm: Option<Postmaster>) -> Result<u64, SupervisorError> {
    let Some(mut pm) = pm else {
        return Err(SupervisorError::NotRunning);
    };
    let timeout = env.pg_ctl_timeout();
    match query::connect(&env.local_conn(), timeout).await {
        Ok(client) => match query::checkpoint(&client).await {
            Ok(()) => info!(event = crate::events::CHECKPOINT_BEFORE_SWITCHOVER),
            Err(e) => warn!(event = crate::events::CHECKPOINT_BEFORE_SWITCHOVER_FAILED, error = %e),
        },
        Err(e) => warn!(event = crate::events::CHECKPOINT_BEFORE_SWITCHOVER_FAILED, error = %e),
    }
    let outcome = pm.stop(StopMode::Fast, timeout).await?;
    info!(event = crate::events::POSTGRES_STOPPED, mode = "fast", outcome = ?outcome, reason = "switchover");
    let cd = controldata::read(&env.bins, &env.data_dir).await?;
    if !cd.state.is_clean_shutdown() {
        return Err(SupervisorError::UncleanShutdown(format!("{:?}", cd.state)));
    }
    Ok(cd.checkpoint_lsn)
}

/// Elector side, after the stop: publish the final position, then hand
/// the lock over. `Err`: the leader key could not be deleted.
pub async fn hand_over(
    dcs: &dyn Dcs,
    final_lsn: u64,
    last_status: &Option<Status>,
) -> Result<Status, DcsError> {
    let status = Status {
        optime: Some(final_lsn),
        slots: last_status
            .as_ref()
            .map(|s| s.slots.clone())
            .unwrap_or_default(),
        ..Status::default()
    };
    if let Err(e) = dcs.write_status(&status).await {
        // The candidates then compare with the last published position; the
        // standbys still received everything before the stop finished.
        warn!(event = crate::events::STATUS_WRITE_FAILED, error = %e);
    }
    if dcs.delete_leader().await? {
        info!(
            event = crate::events::LOCK_RELEASED,
            reason = "switchover",
            optime = final_lsn
        );
    } else {
        warn!(
            event = crate::events::LOCK_NOT_MINE,
            reason = "switchover",
            "no leader key under my session to hand over"
        );
    }
    Ok(status)
}
