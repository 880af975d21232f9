//! `GET /patroni`: this node's status document.

use actix_web::{HttpResponse, web};

use crate::api::reply::json_reply;
use crate::api::state::Shared;
use crate::api::status;

pub(crate) async fn get(shared: web::Data<Shared>) -> HttpResponse {
    let (ha, pg) = shared.states().await;
    json_reply(200, &status::status_document(&ha, &pg))
}
