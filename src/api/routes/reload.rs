//! `POST /reload`: reread the configuration file.

use std::time::Duration;

use actix_web::{HttpResponse, web};

use crate::api::reply::text_reply;
use crate::api::state::Shared;
use crate::messages::config::ReloadConfig;

/// How long `POST /reload` waits for the configuration manager.
pub(crate) const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn post(shared: web::Data<Shared>) -> HttpResponse {
    match shared
        .ctx
        .config_manager
        .send(ReloadConfig)
        .timeout(RELOAD_TIMEOUT)
        .await
    {
        Ok(Ok(())) => text_reply(202, "reload scheduled"),
        Ok(Err(e)) => text_reply(500, &e.to_string()),
        Err(e) => text_reply(500, &format!("reload failed: {e}")),
    }
}
