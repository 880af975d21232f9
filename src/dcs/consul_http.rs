//! Consul's HTTP API as the Consul backend speaks it (docs/dcs.md,
//! "Consul (`ConsulDcs`)"): one reqwest client, the agent's base URL, the
//! ACL token and datacenter on every request, and Consul's answers sorted
//! into the trait's two error classes. rs-consul has no sessions, so the
//! backend speaks the API itself.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::{DcsError, DcsResult};
use crate::config::consul::{Consistency, Consul};

/// The agent's answer: status, `X-Consul-Index`, body.
pub(crate) struct Reply {
    pub status: u16,
    pub index: Option<u64>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, `Other` if it is not.
    pub fn json<T: for<'de> Deserialize<'de>>(&self, what: &str) -> DcsResult<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| DcsError::Other(format!("consul {what}: unexpected answer: {e}")))
    }
}

/// One KV entry of `GET /v1/kv/...` (fields as Consul names them).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KvEntry {
    pub key: String,
    /// Base64; `null` for an empty value.
    #[serde(default)]
    pub value: Option<String>,
    pub modify_index: u64,
    #[serde(default)]
    pub session: Option<String>,
}

impl KvEntry {
    /// The value's bytes (empty for `null`); `None` if not base64.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match &self.value {
            None => Some(Vec::new()),
            Some(v) => base64::engine::general_purpose::STANDARD.decode(v).ok(),
        }
    }
}

/// What cannot be built from the `consul` section.
#[derive(Debug, thiserror::Error)]
pub enum ConsulSetupError {
    #[error("consul: the agent's address is not a URL with a host")]
    Address,
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("consul: HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// How to reach the agent, from the `consul` section.
#[derive(Clone)]
pub struct ConsulSettings {
    pub(crate) base: String,
    pub(crate) token: Option<String>,
    pub(crate) dc: Option<String>,
    pub(crate) consistency: Consistency,
    /// Agent check IDs every session is tied to.
    pub(crate) checks: Vec<String>,
    /// With `register_service: true`: the member's service.
    pub(crate) service: Option<super::consul_service::ServiceSettings>,
    pub(crate) client: reqwest::Client,
}

impl std::fmt::Debug for ConsulSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulSettings")
            .field("base", &self.base)
            .field("dc", &self.dc)
            .field("consistency", &self.consistency)
            .field("checks", &self.checks)
            .finish_non_exhaustive()
    }
}

impl ConsulSettings {
    /// The section as the configuration gives it. With https, the agent's
    /// certificate is checked against `cacert` (else the system's CAs)
    /// unless `verify: false`; `cert` (with `key`) is presented.
    pub fn from_config(c: &Consul) -> Result<ConsulSettings, ConsulSetupError> {
        let base = c.base_url().ok_or(ConsulSetupError::Address)?;
        // reqwest is built without a provider of its own (Cargo.toml).
        crate::tls::install_provider();
        let mut builder = reqwest::Client::builder();
        if base.starts_with("https://") {
            use crate::tls::ServerCheck;
            let check = if c.verify == Some(false) {
                ServerCheck::None
            } else {
                match &c.cacert {
                    Some(path) => ServerCheck::Full(crate::tls::load_roots("consul.cacert", path)?),
                    None => ServerCheck::Full(crate::tls::system_roots()?),
                }
            };
            let identity = c
                .cert
                .as_deref()
                .map(|cert| ("consul", cert, c.key.as_deref(), None));
            builder =
                builder.tls_backend_preconfigured(crate::tls::client_config(check, identity)?);
        }
        Ok(ConsulSettings {
            base,
            token: c.token.clone(),
            dc: c.dc.clone(),
            consistency: c.consistency(),
            checks: c.checks.clone().unwrap_or_default(),
            service: super::consul_service::ServiceSettings::from_config(c),
            client: builder.build()?,
        })
    }

    /// Plain http to `base` (`http://host:port`), no token: tests.
    pub fn plain(base: &str) -> ConsulSettings {
        crate::tls::install_provider();
        ConsulSettings {
            base: base.trim_end_matches('/').to_owned(),
            token: None,
            dc: None,
            consistency: Consistency::Default,
            checks: Vec::new(),
            service: None,
            client: reqwest::Client::new(),
        }
    }

    /// The same with an ACL token (`X-Consul-Token`).
    pub fn with_token(mut self, token: String) -> ConsulSettings {
        self.token = Some(token);
        self
    }

    /// The same registering the member's service (`register_service`).
    pub fn with_service(
        mut self,
        service: super::consul_service::ServiceSettings,
    ) -> ConsulSettings {
        self.service = Some(service);
        self
    }

    /// `GET|PUT|DELETE <base><path>?<query>` with the token and `dc`, given
    /// up after `timeout`. Transport failures and no answer in time are
    /// `Unreachable`; the status is the caller's to read.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> DcsResult<Reply> {
        let mut url = url::Url::parse(&self.base)
            .map_err(|e| DcsError::Other(format!("consul: bad address {}: {e}", self.base)))?;
        url.set_path(path);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
            if let Some(dc) = &self.dc {
                q.append_pair("dc", dc);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut req = self.client.request(method, url).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| DcsError::Unreachable(format!("consul {path}: {e}")))?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp
            .bytes()
            .await
            .map_err(|e| DcsError::Unreachable(format!("consul {path}: {e}")))?
            .to_vec();
        Ok(Reply {
            status,
            index,
            body,
        })
    }
}

/// The path of KV key `key` (`/v1/kv/<key>`), each segment escaped.
pub(crate) fn kv_path(key: &str) -> String {
    escaped_path("/v1/kv", key)
}

/// `<base>/<rest>`, each segment of `rest` escaped (`/` kept, as Patroni's
/// `quote` keeps it in a service ID).
pub(crate) fn escaped_path(base: &str, rest: &str) -> String {
    let mut out = String::from(base);
    for seg in rest.split('/') {
        out.push('/');
        out.push_str(
            &url::form_urlencoded::byte_serialize(seg.as_bytes())
                .collect::<String>()
                .replace('+', "%20"),
        );
    }
    out
}

/// An answer that is not the one expected, in the trait's two classes:
/// refusals (ACL, bad request, a session TTL out of bounds) are `Other`;
/// what says Consul cannot serve now (no cluster leader, rate limits, any
/// other server error) is `Unreachable`.
pub(crate) fn unexpected(what: &str, r: &Reply) -> DcsError {
    let body = r.text();
    let msg = format!("consul {what}: {} {}", r.status, body.trim());
    match r.status {
        500 if body.starts_with("Invalid Session TTL") => DcsError::Other(msg),
        400..=428 | 430..=499 => DcsError::Other(msg),
        _ => DcsError::Unreachable(msg),
    }
}

/// Whether a refusal says the session is gone (KV `acquire`: 500 `invalid
/// session`; a transaction's errors name it too).
pub(crate) fn says_invalid_session(r: &Reply) -> bool {
    r.text().contains("invalid session")
}

/// A transaction's KV operation, as `/v1/txn` takes it.
pub(crate) fn txn_op(
    verb: &str,
    key: &str,
    value: Option<&str>,
    index: Option<u64>,
    session: Option<&str>,
) -> Value {
    let mut kv = serde_json::json!({ "Verb": verb, "Key": key });
    if let Some(v) = value {
        kv["Value"] = Value::String(base64::engine::general_purpose::STANDARD.encode(v));
    }
    if let Some(i) = index {
        kv["Index"] = Value::from(i);
    }
    if let Some(s) = session {
        kv["Session"] = Value::String(s.to_owned());
    }
    serde_json::json!({ "KV": kv })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            index: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn errors_in_two_classes() {
        let other = |s, b| matches!(unexpected("x", &reply(s, b)), DcsError::Other(_));
        assert!(other(403, "Permission denied"));
        assert!(other(400, "bad"));
        assert!(other(
            500,
            "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"
        ));
        assert!(!other(500, "No cluster leader"));
        assert!(!other(429, "rate limited"));
        assert!(!other(503, ""));
    }

    #[test]
    fn kv_paths_escape_segments() {
        assert_eq!(kv_path("service/b/leader"), "/v1/kv/service/b/leader");
        assert_eq!(
            kv_path("service/b/members/a b"),
            "/v1/kv/service/b/members/a%20b"
        );
        assert_eq!(
            kv_path("service/b/members/x?y"),
            "/v1/kv/service/b/members/x%3Fy"
        );
        assert_eq!(kv_path("service/b/"), "/v1/kv/service/b/");
    }

    #[test]
    fn null_value_is_empty() {
        let e: KvEntry =
            serde_json::from_str(r#"{"Key":"k","Value":null,"ModifyIndex":3}"#).unwrap();
        assert_eq!(e.bytes(), Some(Vec::new()));
        let e: KvEntry =
            serde_json::from_str(r#"{"Key":"k","Value":"aGk=","ModifyIndex":3,"Session":"s"}"#)
                .unwrap();
        assert_eq!(e.bytes(), Some(b"hi".to_vec()));
        assert_eq!(e.session.as_deref(), Some("s"));
    }
}
