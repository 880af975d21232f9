//! Health checks: `GET /liveness`, `GET /readiness`, and every request no
//! other route takes (`GET /`, `/primary`, `/replica?lag=...`, any HEAD or
//! OPTIONS), answered by role as Patroni does (docs/rest-api.md, "Health checks (GET/HEAD/OPTIONS)").

use std::collections::BTreeMap;
use std::time::Instant;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::api::reply::{json_reply, not_implemented, status_only};
use crate::api::request::query;
use crate::api::state::Shared;
use crate::api::{health, status};

/// The default service: GET answers a health check with the status
/// document, HEAD and OPTIONS the same without a body, anything else 501.
pub(crate) async fn fallthrough(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let m = req.method();
    if *m == Method::GET {
        check(&shared, req.path(), &query(&req), true).await
    } else if *m == Method::HEAD || *m == Method::OPTIONS {
        check(&shared, req.path(), &query(&req), false).await
    } else {
        not_implemented(m)
    }
}

async fn check(
    shared: &Shared,
    path: &str,
    query: &BTreeMap<String, String>,
    with_body: bool,
) -> HttpResponse {
    let (ha, pg) = shared.states().await;
    let code = health::health_status(path, query, &ha, &pg);
    if with_body {
        json_reply(code, &status::status_document(&ha, &pg))
    } else {
        status_only(code)
    }
}

pub(crate) async fn liveness(shared: web::Data<Shared>) -> HttpResponse {
    let (ha, pg) = shared.states().await;
    status_only(health::liveness_status(&ha, &pg, Instant::now()))
}

pub(crate) async fn readiness(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let (ha, pg) = shared.states().await;
    status_only(health::readiness_status(&query(&req), &ha, &pg))
}
