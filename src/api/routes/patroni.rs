//! `GET /patroni`: this node's status document.

use actix_web::{HttpResponse, web};

use crate::api::reply::{json_reply, starting};
use crate::api::state::Shared;
use crate::api::status;

pub(crate) async fn get(shared: web::Data<Shared>) -> HttpResponse {
    match shared.states().await {
        Some((ha, pg)) => json_reply(200, &status::status_document(&ha, &pg)),
        None => starting(),
    }
}
