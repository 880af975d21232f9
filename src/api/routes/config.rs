//! `GET`, `PATCH` and `PUT /config`: the dynamic configuration in the DCS.

use actix_web::{HttpResponse, web};
use serde_json::Value;

use crate::api::config;
use crate::api::reply::{error_page, json_reply, text_reply};
use crate::api::request::RequestBody;
use crate::api::state::Shared;

pub(crate) async fn get(shared: web::Data<Shared>) -> HttpResponse {
    match shared.load_cluster().await {
        Some(c) => match c.config {
            Some(cfg) if cfg.value.is_object() => json_reply(200, &cfg.value),
            _ => error_page(502, "Bad Gateway"),
        },
        None => error_page(503, "Service Unavailable"),
    }
}

pub(crate) async fn patch(
    shared: web::Data<Shared>,
    body: web::ReqData<RequestBody>,
) -> HttpResponse {
    config_write(
        config::patch_config(shared.ctx.dcs.as_ref(), &body.0).await,
        "PATCH",
    )
}

pub(crate) async fn put(
    shared: web::Data<Shared>,
    body: web::ReqData<RequestBody>,
) -> HttpResponse {
    config_write(
        config::put_config(shared.ctx.dcs.as_ref(), &body.0).await,
        "PUT",
    )
}

/// The answer to `PATCH`/`PUT /config`: 200 with the new document, or the
/// error's status with a message naming the field.
fn config_write(r: Result<Value, config::ConfigWriteError>, method: &str) -> HttpResponse {
    match r {
        Ok(v) => {
            tracing::info!(event = crate::events::DYNAMIC_CONFIG_WRITTEN, method, config = %v);
            json_reply(200, &v)
        }
        Err(e) => {
            tracing::warn!(event = crate::events::DYNAMIC_CONFIG_REFUSED, method, status = e.status(), error = %e.message());
            text_reply(e.status(), &e.message())
        }
    }
}
