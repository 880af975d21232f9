//! `GET /metrics`: Patroni's metrics in Prometheus' text format
//! (src/api/metrics.rs renders them from the status document), then
//! pgpilot's lease and fence gauges (src/api/lease_metrics.rs, from the
//! elector's state and the fence's files, read here) and the rest of
//! pgpilot's own (src/telemetry.rs).

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};

use crate::api::lease_metrics::{self, LeaseFacts};
use crate::api::state::Shared;
use crate::api::{metrics, status};
use crate::fence;
use crate::messages::elector::HaState;
use crate::telemetry;

/// Prometheus' text exposition format. Patroni sends a bare `text/plain`;
/// the version parameter is what Prometheus 3 needs to take the scrape
/// without a fallback protocol configured.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn get(shared: web::Data<Shared>) -> HttpResponse {
    let (ha, pg) = shared.states().await;
    let mut body = metrics::render(&status::status_document(&ha, &pg));
    body.push_str(&lease_metrics::render(
        &lease_facts(&ha),
        &metrics::labels(&ha.scope, &ha.name),
    ));
    body.push_str(&telemetry::render(&ha.scope, &ha.name));
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(body)
}

/// The lease as the elector holds it and the fence as its files say: two
/// small reads of `<data_dir>.fence`, per scrape only.
fn lease_facts(ha: &HaState) -> LeaseFacts {
    let dir = ha.fence_dir.as_deref();
    let ack = dir.and_then(fence::read_ack);
    LeaseFacts::new(
        Duration::from_secs_f64(ha.ttl_secs.max(0.0)),
        ha.lease_deadline,
        Instant::now(),
        ack.as_ref(),
        fence::boottime_ms(),
        dir.and_then(fence::read_fired),
    )
}
