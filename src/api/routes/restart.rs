//! `POST /restart` and `DELETE /restart` (docs/rest-api.md, "POST /restart, DELETE /restart"), and how the
//! supervisor's outcomes of the operations the API asks for become replies.

use std::time::Duration;

use actix_web::{HttpResponse, web};

use crate::api::reply::text_reply;
use crate::api::request::RequestBody;
use crate::api::routes::reload::RELOAD_TIMEOUT;
use crate::api::state::{ASK_TIMEOUT, Shared};
use crate::api::{restart, status};
use crate::messages::elector::SyncDuty;
use crate::messages::restart::unmet_condition;
use crate::messages::supervisor::{PgOp, PgOpOutcome};

/// How long `POST /restart` waits beyond its start timeout for PostgreSQL
/// to stop and start again.
const RESTART_GRACE: Duration = Duration::from_secs(120);

/// `POST /restart`: schedule it, or restart now, synchronously, if the
/// conditions of the body hold.
pub(crate) async fn post(
    shared: web::Data<Shared>,
    body: web::ReqData<RequestBody>,
) -> HttpResponse {
    let (ha, pg) = shared.states().await;
    let req = match restart::parse_request(
        &body.0,
        status::paused(&ha),
        crate::ha::iso8601::now_unix(),
    ) {
        Ok(r) => r,
        Err((code, text)) => return text_reply(code, &text),
    };
    if let Some((at_unix, schedule)) = req.schedule {
        let op = PgOp::ScheduleRestart {
            at_unix,
            schedule,
            options: req.options,
        };
        // The supervisor reads PostgreSQL's start time first.
        return pg_op(&shared, op, RELOAD_TIMEOUT).await;
    }
    if let Some(why) = unmet_condition(&req.options, &pg) {
        tracing::info!(event = crate::events::RESTART_REFUSED, reason = why);
        return text_reply(503, "restart conditions are not satisfied");
    }
    // Without `timeout` the start may take `primary_start_timeout`, which
    // only the supervisor knows: wait long (Patroni's call has no limit).
    let wait = req.options.timeout.unwrap_or(Duration::from_secs(3600)) + RESTART_GRACE;
    // docs/replication-modes.md §3: a synchronous standby asks the primary
    // to release it first and stays `nosync` while it restarts (Patroni's
    // `while_not_sync_standby`); nothing to do for any other node.
    let released = shared
        .ctx
        .sync_duty
        .send(SyncDuty::Release)
        .await
        .unwrap_or(false);
    let reply = pg_op(&shared, PgOp::Restart(req.options), wait).await;
    if released {
        shared.ctx.sync_duty.do_send(SyncDuty::Resume);
    }
    reply
}

/// `DELETE /restart`: cancel the scheduled restart.
pub(crate) async fn delete(shared: web::Data<Shared>) -> HttpResponse {
    pg_op(&shared, PgOp::CancelScheduledRestart, ASK_TIMEOUT).await
}

/// Ask the supervisor for an operation and reply with its outcome.
pub(crate) async fn pg_op(shared: &Shared, op: PgOp, wait: Duration) -> HttpResponse {
    match shared.ctx.pg_ops.send(op).timeout(wait).await {
        Ok(outcome) => text_reply(pg_op_status(&outcome), &outcome.to_string()),
        Err(e) => text_reply(503, &format!("no answer from the supervisor: {e}")),
    }
}

/// The HTTP status of an operation's outcome, as Patroni answers it.
fn pg_op_status(o: &PgOpOutcome) -> u16 {
    match o {
        PgOpOutcome::Restarted
        | PgOpOutcome::ScheduledRestartDeleted
        | PgOpOutcome::ReinitializeStarted => 200,
        PgOpOutcome::RestartScheduled => 202,
        PgOpOutcome::NoScheduledRestart => 404,
        PgOpOutcome::AlreadyScheduled => 409,
        PgOpOutcome::RestartFailed
        | PgOpOutcome::RestartCancelled
        | PgOpOutcome::InProgress(_)
        | PgOpOutcome::NotRunning => 503,
    }
}
