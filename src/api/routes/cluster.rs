//! `GET /cluster` and `GET /history`, read afresh from the DCS.

use actix_web::{HttpResponse, web};

use crate::api::cluster;
use crate::api::reply::{error_page, json_reply};
use crate::api::state::Shared;

pub(crate) async fn get_cluster(shared: web::Data<Shared>) -> HttpResponse {
    match shared.load_cluster().await {
        Some(c) => json_reply(200, &cluster::cluster_json(&c, &shared.ha().scope)),
        None => error_page(503, "Service Unavailable"),
    }
}

pub(crate) async fn get_history(shared: web::Data<Shared>) -> HttpResponse {
    match shared.load_cluster().await {
        Some(c) => json_reply(200, &cluster::history_json(&c)),
        None => error_page(503, "Service Unavailable"),
    }
}
