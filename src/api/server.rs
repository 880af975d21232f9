//! The HTTP server: its limits, TLS, and the application: the middlewares
//! (extra headers, access checks, request preparation) around the routes
//! of `api::routes`, which answer from the actors' state (`api::state`)
//! and the DCS.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use actix_web::{App, web};

use crate::api::auth::{self, AccessPolicy};
use crate::api::listener::{self, ApiServer, Limits};
use crate::api::state::Shared;
use crate::api::{headers, request, routes};
use crate::dcs::Dcs;
use crate::messages::board::{HaView, PgBoard};
use crate::messages::config::ReloadConfig;
use crate::messages::elector::{FailsafeHeartbeat, SyncDuty, Wake};
use crate::messages::supervisor::{GetPgStatus, PgOp};
use crate::peer_client::PeerClient;
use crate::tls::ServerTls;

/// How long a request may take to arrive: its head (actix-web's
/// `client_request_timeout`, answered 408), then its body again (answered
/// 408, connection closed). A client that declares a body and never sends
/// it cannot hold a connection longer. Health checks, peers and patronictl
/// send a request in one go, far inside this.
pub const REQUEST_ARRIVAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle keep-alive connection stays open between requests.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Open connections at most: beyond it new connections wait in the listen
/// backlog until one closes, so a flood of clients cannot exhaust the
/// daemon's file descriptors (1024 by default). With the timeouts above
/// every slot frees within seconds of its client stalling.
pub const MAX_CONNECTIONS: usize = 512;

/// The server's limits (src/api/listener.rs serves them on one thread).
const LIMITS: Limits = Limits {
    keep_alive: KEEP_ALIVE,
    request_timeout: REQUEST_ARRIVAL_TIMEOUT,
    disconnect_timeout: Duration::from_secs(1),
    max_connections: MAX_CONNECTIONS,
    threads: HTTP_THREADS,
};

/// Threads serving HTTP. Two keep a burst of health checks on both cores
/// of a small machine (one thread measured ~12k req/s with 50 clients, two
/// ~30k); idle, they cost nothing (src/api/listener.rs).
const HTTP_THREADS: usize = 2;

/// What the API needs from the rest of the daemon.
pub struct ApiContext {
    /// The HA loop's state (the elector's board: src/actors/ha_board.rs).
    pub ha: Arc<dyn HaView>,
    /// PostgreSQL's status as the supervisor last read it for a request;
    /// asked of `supervisor` when it is not fresh.
    pub pg_board: Arc<PgBoard>,
    pub supervisor: Recipient<GetPgStatus>,
    pub config_manager: Recipient<ReloadConfig>,
    /// Where `POST /failsafe` reports a live leader.
    pub failsafe: Recipient<FailsafeHeartbeat>,
    /// `POST`/`DELETE /restart`, `POST /reinitialize`.
    pub pg_ops: Recipient<PgOp>,
    /// Releases a synchronous standby's duty around `POST /restart`.
    pub sync_duty: Recipient<SyncDuty>,
    pub dcs: Arc<dyn Dcs>,
    /// Wakes the HA loop (switchover requests).
    pub wake: Recipient<Wake>,
    /// Asks the other members for their state (switchover checks).
    pub peers: PeerClient,
}

/// Bind `listen` (`host:port`; `:port` = all IPv4 interfaces) and build the
/// server on a thread of its own, no signal handling of its own. Call inside
/// an actix `System`; the returned [`ApiServer`] resolves only if that
/// thread ends.
pub fn serve(listen: &str, ctx: ApiContext) -> std::io::Result<ApiServer> {
    serve_with_access(listen, ctx, AccessPolicy::open())
}

/// [`serve`] with the access checks of the unsafe endpoints (src/api/auth.rs).
pub fn serve_with_access(
    listen: &str,
    ctx: ApiContext,
    access: AccessPolicy,
) -> std::io::Result<ApiServer> {
    serve_tls(listen, ctx, access, None)
}

/// [`serve_with_access`], over HTTPS when `tls` is given.
pub fn serve_tls(
    listen: &str,
    ctx: ApiContext,
    access: AccessPolicy,
    tls: Option<ServerTls>,
) -> std::io::Result<ApiServer> {
    let addr = if listen.starts_with(':') {
        format!("0.0.0.0{listen}")
    } else {
        listen.to_owned()
    };
    serve_listener_tls(TcpListener::bind(addr)?, ctx, access, tls)
}

/// [`serve`] on an already bound listener (tests bind port 0 and read the
/// port back).
pub fn serve_listener(listener: TcpListener, ctx: ApiContext) -> std::io::Result<ApiServer> {
    serve_listener_with_access(listener, ctx, AccessPolicy::open())
}

/// [`serve_listener`] with the access checks of the unsafe endpoints.
pub fn serve_listener_with_access(
    listener: TcpListener,
    ctx: ApiContext,
    access: AccessPolicy,
) -> std::io::Result<ApiServer> {
    serve_listener_tls(listener, ctx, access, None)
}

/// Set on a connection whose TLS client presented a certificate (verified
/// by the handshake against `restapi.cafile`).
#[derive(Debug, Clone, Copy)]
pub struct ClientCertificate;

/// [`serve_listener_with_access`], over HTTPS when `tls` is given.
pub fn serve_listener_tls(
    listener: TcpListener,
    ctx: ApiContext,
    access: AccessPolicy,
    tls: Option<ServerTls>,
) -> std::io::Result<ApiServer> {
    access.attach_dcs(ctx.dcs.clone());
    let shared = Arc::new(Shared::new(ctx));
    let app = move || {
        App::new()
            .app_data(web::Data::from(shared.clone()))
            .app_data(web::Data::new(access.clone()))
            .configure(routes::configure)
            .default_service(web::to(routes::health::fallthrough))
            // Innermost first: the body is read after the access checks.
            .wrap(actix_web::middleware::from_fn(request::prepare))
            .wrap(actix_web::middleware::from_fn(auth::access_check))
            .wrap(actix_web::middleware::from_fn(headers::add_extra_headers))
    };
    let config = match tls {
        Some(tls) => Some(tls.server_config().map_err(std::io::Error::other)?),
        None => None,
    };
    listener::spawn(listener, app, config, note_client_certificate, LIMITS)
}

/// Marks a TLS connection whose client presented a certificate.
fn note_client_certificate(tls: &listener::TlsStream, ext: &mut actix_web::dev::Extensions) {
    if tls
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty())
    {
        ext.insert(ClientCertificate);
    }
}
