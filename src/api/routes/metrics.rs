//! `GET /metrics`: Patroni's metrics in Prometheus' text format
//! (src/api/metrics.rs renders them from the status document), then
//! pgpilot's own (src/telemetry.rs).

use actix_web::{HttpResponse, web};

use crate::api::reply::starting;
use crate::api::state::Shared;
use crate::api::{metrics, status};
use crate::telemetry;

/// Prometheus' text exposition format. Patroni sends a bare `text/plain`;
/// the version parameter is what Prometheus 3 needs to take the scrape
/// without a fallback protocol configured.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn get(shared: web::Data<Shared>) -> HttpResponse {
    match shared.states().await {
        Some((ha, pg)) => HttpResponse::Ok()
            .content_type(CONTENT_TYPE)
            .body(metrics::render(&status::status_document(&ha, &pg)) + &telemetry::render()),
        None => starting(),
    }
}
