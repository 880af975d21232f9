//! The primary's side of failsafe mode (docs/ha.md §10.1): with the DCS gone,
//! ask every other member listed in the `failsafe` key over REST whether it
//! accepts this node as the leader (`POST /failsafe`).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::ha::FailsafeAck;

/// Per-request deadline of `POST /failsafe`; one retry after a transport
/// error (Patroni: 2 s, 1 retry).
pub const POST_TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPTS: usize = 2;

/// `<scheme>://<host:port>/<endpoint>` from a member's `api_url`, whatever
/// path it has.
pub fn endpoint_url(api_url: &str, endpoint: &str) -> Option<String> {
    let (scheme, rest) = api_url.split_once("://")?;
    let netloc = rest.split(['/', '?', '#']).next()?;
    (!netloc.is_empty()).then(|| format!("{scheme}://{netloc}/{endpoint}"))
}

/// The body a primary sends: who it is and where to stream from.
pub fn heartbeat_body(name: &str, conn_url: &str, api_url: &str) -> Value {
    json!({
        "name": name,
        "conn_url": conn_url,
        "api_url": api_url,
        "slots": {},
    })
}

/// `POST /failsafe` to every member of `members` except `me`, in parallel.
/// A member accepted iff it answered 200 with the body `Accepted`.
pub async fn confirm_members(
    http: &reqwest::Client,
    members: &BTreeMap<String, String>,
    me: &str,
    body: &Value,
) -> Vec<FailsafeAck> {
    join_all(members.iter().filter(|(name, _)| name.as_str() != me).map(
        |(name, api_url)| async move {
            let accepted = match endpoint_url(api_url, "failsafe") {
                Some(url) => post_once_retried(http, name, &url, body).await,
                None => {
                    warn!(event = crate::events::FAILSAFE_BAD_API_URL, member = %name, api_url = %api_url);
                    false
                }
            };
            FailsafeAck {
                name: name.clone(),
                accepted,
            }
        },
    ))
    .await
}

async fn post_once_retried(http: &reqwest::Client, name: &str, url: &str, body: &Value) -> bool {
    for attempt in 1..=ATTEMPTS {
        match http.post(url).timeout(POST_TIMEOUT).json(body).send().await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                let lsn = resp
                    .headers()
                    .get("lsn")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let text = resp.text().await.unwrap_or_default();
                let accepted = code == 200 && text == "Accepted";
                if accepted {
                    tracing::debug!(event = crate::events::FAILSAFE_ACK, member = %name, lsn = ?lsn);
                } else {
                    info!(event = crate::events::FAILSAFE_REFUSED, member = %name, code, answer = %text);
                }
                return accepted;
            }
            Err(e) => {
                warn!(event = crate::events::FAILSAFE_UNREACHABLE, member = %name, attempt, error = %e);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        assert_eq!(
            endpoint_url("http://10.0.0.1:8008/patroni", "failsafe").as_deref(),
            Some("http://10.0.0.1:8008/failsafe")
        );
        assert_eq!(
            endpoint_url("https://h:8443", "failsafe").as_deref(),
            Some("https://h:8443/failsafe")
        );
        assert_eq!(endpoint_url("garbage", "failsafe"), None);
        assert_eq!(endpoint_url("http:///x", "failsafe"), None);
    }

    #[test]
    fn body_has_patroni_fields() {
        let b = heartbeat_body("a", "postgres://h:5432/postgres", "http://h:8008/patroni");
        for k in ["name", "conn_url", "api_url", "slots"] {
            assert!(b.get(k).is_some(), "{k}");
        }
    }
}
