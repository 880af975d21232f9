//! `POST /switchover`, `POST /failover` and `DELETE /switchover`.

use actix_web::{HttpResponse, web};

use crate::api::reply::{error_page, text_reply};
use crate::api::request::RequestBody;
use crate::api::state::Shared;
use crate::api::switchover::{self, Kind};

pub(crate) async fn post_switchover(
    shared: web::Data<Shared>,
    body: web::ReqData<RequestBody>,
) -> HttpResponse {
    post(&shared, Kind::Switchover, &body.0).await
}

pub(crate) async fn post_failover(
    shared: web::Data<Shared>,
    body: web::ReqData<RequestBody>,
) -> HttpResponse {
    post(&shared, Kind::Failover, &body.0).await
}

async fn post(shared: &Shared, kind: Kind, body: &[u8]) -> HttpResponse {
    let loop_wait = shared.ha().loop_wait_secs;
    let (code, text) = switchover::post(
        kind,
        body,
        shared.ctx.dcs.as_ref(),
        &shared.ctx.peers.get(),
        &shared.ctx.wake,
        loop_wait,
    )
    .await;
    text_reply(code, &text)
}

/// `DELETE /switchover`: cancel a scheduled switchover.
pub(crate) async fn delete(shared: web::Data<Shared>) -> HttpResponse {
    match switchover::delete(shared.ctx.dcs.as_ref()).await {
        Some((code, text)) => text_reply(code, &text),
        None => error_page(409, "Conflict"),
    }
}
