//! `POST /reinitialize`: rebuild this replica's data directory.

use actix_web::{HttpResponse, web};

use crate::api::reinit;
use crate::api::reply::text_reply;
use crate::api::request::RequestBody;
use crate::api::routes::restart::pg_op;
use crate::api::state::{ASK_TIMEOUT, Shared};
use crate::messages::supervisor::PgOp;

/// Refused on the leader and without one (503 with Patroni's texts);
/// otherwise the rebuild starts and the reply comes at once (200
/// `reinitialize started`).
pub(crate) async fn post(
    shared: web::Data<Shared>,
    body: web::ReqData<RequestBody>,
) -> HttpResponse {
    let (force, from_leader) = reinit::parse_body(&body.0);
    let ha = shared.ha();
    let Some(cluster) = shared.load_cluster().await else {
        return text_reply(503, "DCS is not accessible, can not reinitialize");
    };
    match reinit::source(&cluster, &ha.name, from_leader) {
        Ok(from) => pg_op(&shared, PgOp::Reinitialize { from, force }, ASK_TIMEOUT).await,
        Err(why) => text_reply(503, &why.to_string()),
    }
}
