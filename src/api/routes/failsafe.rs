//! `GET /failsafe` and `POST /failsafe` (docs/rest-api.md, "GET /failsafe, POST /failsafe").

use std::time::Instant;

use actix_web::{HttpResponse, web};
use serde_json::Value;

use crate::api::reply::{error_page, json_reply, text_reply};
use crate::api::request::RequestBody;
use crate::api::state::Shared;
use crate::messages::elector::{FailsafeHeartbeat, HaState};
use crate::messages::supervisor::{PgState, PgStatus};

/// `GET /failsafe`: the `failsafe` key of the last DCS read; 502 if none.
pub(crate) async fn get(shared: web::Data<Shared>) -> HttpResponse {
    match shared.ha().failsafe {
        Some(map) => json_reply(200, &serde_json::json!(map)),
        None => error_page(502, "Bad Gateway"),
    }
}

/// What `POST /failsafe` answers: refused when failsafe mode is off (502)
/// or when this node itself runs as primary (500); otherwise accepted,
/// with this node's WAL position.
pub(crate) enum FailsafeReply {
    Disabled,
    RunningAsLeader,
    Accepted { lsn: Option<u64> },
}

pub(crate) fn failsafe_reply(ha: &HaState, pg: &PgStatus) -> FailsafeReply {
    if !ha.failsafe_mode {
        FailsafeReply::Disabled
    } else if pg.state == PgState::Running && pg.facts.is_primary() {
        FailsafeReply::RunningAsLeader
    } else {
        FailsafeReply::Accepted { lsn: pg.facts.lsn }
    }
}

/// `POST /failsafe` from a leader that cannot reach the DCS: accept it as
/// the live leader for ttl (the elector then does not race).
pub(crate) async fn post(
    shared: web::Data<Shared>,
    body: web::ReqData<RequestBody>,
) -> HttpResponse {
    let (ha, pg) = shared.states().await;
    let reply = failsafe_reply(&ha, &pg);
    if matches!(reply, FailsafeReply::Disabled) {
        return error_page(502, "Bad Gateway");
    }
    let req: Value = match serde_json::from_slice(&body.0) {
        Ok(v @ Value::Object(_)) => v,
        _ => return error_page(400, "Invalid JSON"),
    };
    let field = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or_default();
    if field("name").is_empty() {
        return error_page(400, "Invalid JSON");
    }
    match reply {
        FailsafeReply::Disabled => error_page(502, "Bad Gateway"),
        FailsafeReply::RunningAsLeader => text_reply(500, "Running as a leader"),
        FailsafeReply::Accepted { lsn } => {
            shared.ctx.failsafe.do_send(FailsafeHeartbeat {
                name: field("name").to_owned(),
                conn_url: field("conn_url").to_owned(),
                api_url: field("api_url").to_owned(),
                at: Instant::now(),
            });
            let mut resp = HttpResponse::Ok();
            resp.content_type("text/html");
            if let Some(lsn) = lsn {
                resp.insert_header(("lsn", lsn.to_string()));
            }
            resp.body("Accepted")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::state::unknown_pg;

    #[test]
    fn failsafe_post_rules() {
        use crate::api::status::tests::{ha, primary, replica};
        let mut h = ha(false);
        assert!(matches!(
            failsafe_reply(&h, &replica()),
            FailsafeReply::Disabled
        ));
        h.failsafe_mode = true;
        assert!(matches!(
            failsafe_reply(&h, &primary()),
            FailsafeReply::RunningAsLeader
        ));
        assert!(matches!(
            failsafe_reply(&h, &replica()),
            FailsafeReply::Accepted { lsn: Some(_) }
        ));
        assert!(matches!(
            failsafe_reply(&h, &unknown_pg(None)),
            FailsafeReply::Accepted { lsn: None }
        ));
    }
}
