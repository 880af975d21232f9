//! The HTTP client this node uses to talk to the other members' REST APIs
//! (leader race, failsafe, switchover checks). Built from the configuration
//! and rebuilt on every reload by whoever holds it: the elector owns one,
//! the REST API shares a [`PeerClient`] with the updater that follows
//! reloads. No process-global client: each holder is handed its own.

use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tracing::warn;

use crate::config::Config;

/// A client that sends `restapi.authentication` (Patroni: `ctl.authentication`
/// first), so unsafe requests such as `POST /failsafe` pass the others'
/// checks, and speaks HTTPS as Patroni's daemon does
/// (`crate::tls::peer_client_config`).
pub fn build(cfg: &Config) -> reqwest::Client {
    crate::tls::install_provider();
    let creds = cfg
        .ctl
        .as_ref()
        .and_then(|c| c.authentication.as_ref())
        .or(cfg.restapi.authentication.as_ref())
        .and_then(|a| Some((a.username.clone()?, a.password.clone().unwrap_or_default())));
    let mut builder = reqwest::Client::builder();
    if let Some((u, p)) = creds {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(mut v) = reqwest::header::HeaderValue::from_str(&format!(
            "Basic {}",
            B64.encode(format!("{u}:{p}"))
        )) {
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        builder = builder.default_headers(headers);
    }
    match crate::tls::peer_client_config(cfg) {
        Ok(tls) => builder = builder.tls_backend_preconfigured(tls),
        Err(e) => warn!(event = crate::events::PEER_TLS_CONFIG_FAILED, error = %e,
                        "calls to https members will not present a client certificate"),
    }
    builder.build().unwrap_or_else(|e| {
        warn!(event = crate::events::PEER_CLIENT_FAILED, error = %e);
        reqwest::Client::new()
    })
}

/// A peer client shared between its users and the one that rebuilds it on
/// reload; cheap to clone (clones share the client).
#[derive(Debug, Clone)]
pub struct PeerClient(Arc<RwLock<reqwest::Client>>);

impl PeerClient {
    pub fn new(cfg: &Config) -> PeerClient {
        PeerClient(Arc::new(RwLock::new(build(cfg))))
    }

    /// A client without credentials or client certificate (tests, and an
    /// API served without a configuration).
    pub fn plain() -> PeerClient {
        crate::tls::install_provider();
        PeerClient(Arc::new(RwLock::new(reqwest::Client::new())))
    }

    /// Rebuild from a reloaded configuration; every clone sees the new one.
    pub fn update(&self, cfg: &Config) {
        // A poisoned lock only means a writer panicked between two whole
        // values: the client in it is still a complete one.
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = build(cfg);
    }

    /// The current client (reqwest clients are handles: cloning is cheap).
    pub fn get(&self) -> reqwest::Client {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
