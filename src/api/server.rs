//! The HTTP server: routing by method and first path segment, as Patroni
//! does (docs/rest-api.md, "REST API"), over the pure builders of this module.
//!
//! Every request asks the elector and the supervisor at the same time, each
//! with a short deadline, so a busy actor cannot hang a health check or a
//! peer's `GET /patroni` during a leader race. A late answer falls back to
//! the last one received (PostgreSQL then reads as `unknown`).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Recipient;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::Server;
use actix_web::http::{Method, StatusCode};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::StreamExt;
use futures_util::future::join;
use serde_json::Value;

use crate::api::auth::{self, AccessPolicy};
use crate::api::{cluster, config, headers, health, reinit, restart, status, switchover};
use crate::dcs::{Cluster, Dcs};
use crate::ha::PgFacts;
use crate::messages::config::ReloadConfig;
use crate::messages::elector::{FailsafeHeartbeat, GetHaState, HaState, Wake};
use crate::messages::supervisor::{GetPgStatus, PgOp, PgState, PgStatus};
use crate::sync::lock;
use crate::tls::ServerTls;

/// How long a request waits for an actor's answer. Peers give `/patroni`
/// 2 s in a leader race; this leaves room for the reply itself.
const ASK_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long `POST /restart` waits beyond its start timeout for PostgreSQL
/// to stop and start again.
const RESTART_GRACE: Duration = Duration::from_secs(120);

/// How long `POST /reload` waits for the configuration manager.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request may take to arrive: its head (actix-web's
/// `client_request_timeout`, answered 408), then its body again (answered
/// 408, connection closed). A client that declares a body and never sends
/// it cannot hold a connection longer. Health checks, peers and patronictl
/// send a request in one go, far inside this.
pub const REQUEST_ARRIVAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an idle keep-alive connection stays open between requests.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Open connections at most, over all workers: beyond it new connections
/// wait in the listen backlog until one closes, so a flood of clients
/// cannot exhaust the daemon's file descriptors (1024 by default). With the
/// timeouts above every slot frees within seconds of its client stalling.
pub const MAX_CONNECTIONS: usize = 512;

/// HTTP workers (threads). Requests are answered from the elector's and
/// the supervisor's state, so the work per request is small; two workers
/// let a slow TLS handshake or a long `POST /restart` not delay a health
/// check.
const WORKERS: usize = 2;

/// What the API needs from the rest of the daemon.
pub struct ApiContext {
    pub elector: Recipient<GetHaState>,
    pub supervisor: Recipient<GetPgStatus>,
    pub config_manager: Recipient<ReloadConfig>,
    /// Where `POST /failsafe` reports a live leader.
    pub failsafe: Recipient<FailsafeHeartbeat>,
    /// `POST`/`DELETE /restart`, `POST /reinitialize`.
    pub pg_ops: Recipient<PgOp>,
    pub dcs: Arc<dyn Dcs>,
    /// Wakes the HA loop (switchover requests).
    pub wake: Recipient<Wake>,
}

struct Shared {
    ctx: ApiContext,
    last_ha: Mutex<Option<HaState>>,
    last_pg: Mutex<Option<PgStatus>>,
}

/// Bind `listen` (`host:port`; `:port` = all IPv4 interfaces) and build the
/// server: one worker, no signal handling of its own. The caller spawns or
/// awaits the returned [`Server`] (inside an actix `System`).
pub fn serve(listen: &str, ctx: ApiContext) -> std::io::Result<Server> {
    serve_with_access(listen, ctx, AccessPolicy::open())
}

/// [`serve`] with the access checks of the unsafe endpoints (src/api/auth.rs).
pub fn serve_with_access(
    listen: &str,
    ctx: ApiContext,
    access: AccessPolicy,
) -> std::io::Result<Server> {
    serve_tls(listen, ctx, access, None)
}

/// [`serve_with_access`], over HTTPS when `tls` is given.
pub fn serve_tls(
    listen: &str,
    ctx: ApiContext,
    access: AccessPolicy,
    tls: Option<ServerTls>,
) -> std::io::Result<Server> {
    let addr = if listen.starts_with(':') {
        format!("0.0.0.0{listen}")
    } else {
        listen.to_owned()
    };
    serve_listener_tls(TcpListener::bind(addr)?, ctx, access, tls)
}

/// [`serve`] on an already bound listener (tests bind port 0 and read the
/// port back).
pub fn serve_listener(listener: TcpListener, ctx: ApiContext) -> std::io::Result<Server> {
    serve_listener_with_access(listener, ctx, AccessPolicy::open())
}

/// [`serve_listener`] with the access checks of the unsafe endpoints.
pub fn serve_listener_with_access(
    listener: TcpListener,
    ctx: ApiContext,
    access: AccessPolicy,
) -> std::io::Result<Server> {
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
) -> std::io::Result<Server> {
    access.attach_dcs(ctx.dcs.clone());
    let shared = Arc::new(Shared {
        ctx,
        last_ha: Mutex::new(None),
        last_pg: Mutex::new(None),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::from(shared.clone()))
            .app_data(web::Data::new(access.clone()))
            .wrap(actix_web::middleware::from_fn(auth::access_check))
            .wrap(actix_web::middleware::from_fn(headers::add_extra_headers))
            .default_service(web::to(dispatch))
    })
    .workers(WORKERS)
    .max_connections(MAX_CONNECTIONS / WORKERS)
    .client_request_timeout(REQUEST_ARRIVAL_TIMEOUT)
    .client_disconnect_timeout(Duration::from_secs(1))
    .keep_alive(KEEP_ALIVE)
    .disable_signals()
    .on_connect(|conn, ext| {
        type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
        if let Some(tls) = conn.downcast_ref::<Tls>()
            && tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty())
        {
            ext.insert(ClientCertificate);
        }
    });
    let server = match tls {
        Some(tls) => {
            let config = tls.server_config().map_err(std::io::Error::other)?;
            server.listen_rustls_0_23(listener, config)?
        }
        None => server.listen(listener)?,
    };
    Ok(server.run())
}

/// Reads the request body, at most [`auth::BODY_LIMIT`] bytes, within
/// [`REQUEST_ARRIVAL_TIMEOUT`]. Only handlers that use a body call it.
async fn read_body(payload: &mut web::Payload) -> Result<web::Bytes, HttpResponse> {
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| error_page(400, &format!("Bad request body: {e}")))?;
            if body.len() + chunk.len() > auth::BODY_LIMIT {
                return Err(error_page(413, "Payload Too Large"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    match tokio::time::timeout(REQUEST_ARRIVAL_TIMEOUT, read).await {
        Ok(r) => r,
        Err(_) => {
            tracing::info!(
                event = "api_request_timeout",
                "request body did not arrive in time"
            );
            Err(error_page(408, "Request Timeout"))
        }
    }
}

/// A reply body that carries the request's body stream until the reply is
/// sent. Left unread, that stream makes actix-web close the connection after
/// the reply; dropped before, a chunked body would be drained first, for as
/// long as the client cares to trickle it.
struct HoldingBody {
    bytes: Option<web::Bytes>,
    len: u64,
    _request_body: web::Payload,
}

impl MessageBody for HoldingBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<web::Bytes, Self::Error>>> {
        std::task::Poll::Ready(self.get_mut().bytes.take().map(Ok))
    }
}

async fn dispatch(
    req: HttpRequest,
    mut payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let resp = route(req, &mut payload, shared).await;
    resp.map_body(|_, body| match body.try_into_bytes() {
        Ok(bytes) => BoxBody::new(HoldingBody {
            len: bytes.len() as u64,
            bytes: Some(bytes),
            _request_body: payload,
        }),
        // Every reply here is built from bytes; anything else goes as is.
        Err(body) => body,
    })
}

async fn route(
    req: HttpRequest,
    payload: &mut web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let path = req.path().to_owned();
    let segment = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let query = parse_query(req.query_string());
    if let Some(lag) = health::unparsable_lag(&query) {
        tracing::warn!(
            event = crate::events::API_LAG_UNPARSABLE,
            lag,
            path = %path,
            "the lag parameter is neither an integer nor a number with a unit (B, kB, MB, GB, TB); no lag limit applies"
        );
    }
    let m = req.method();
    let unsafe_method =
        *m == Method::POST || *m == Method::PUT || *m == Method::PATCH || *m == Method::DELETE;
    let body = if unsafe_method {
        match read_body(payload).await {
            Ok(b) => b,
            Err(resp) => return resp,
        }
    } else {
        // GET, HEAD, OPTIONS never use a body; CONNECT and other methods
        // get 501. An unread body closes the connection after the reply.
        web::Bytes::new()
    };
    if *m == Method::GET {
        match segment.as_str() {
            "patroni" => get_patroni(&shared).await,
            "cluster" => get_cluster(&shared).await,
            "history" => get_history(&shared).await,
            "config" => get_config(&shared).await,
            "liveness" => get_liveness(&shared).await,
            "readiness" => get_readiness(&shared, &query).await,
            "failsafe" => get_failsafe(&shared).await,
            _ => health_check(&shared, &path, &query, true).await,
        }
    } else if *m == Method::HEAD || *m == Method::OPTIONS {
        health_check(&shared, &path, &query, false).await
    } else if *m == Method::POST && segment == "reload" {
        post_reload(&shared).await
    } else if *m == Method::POST && segment == "failsafe" {
        post_failsafe(&shared, &body).await
    } else if *m == Method::POST && segment == "restart" {
        post_restart(&shared, &body).await
    } else if *m == Method::DELETE && segment == "restart" {
        pg_op(&shared, PgOp::CancelScheduledRestart, ASK_TIMEOUT).await
    } else if *m == Method::POST && segment == "reinitialize" {
        post_reinitialize(&shared, &body).await
    } else if *m == Method::PATCH && segment == "config" {
        config_write(
            config::patch_config(shared.ctx.dcs.as_ref(), &body).await,
            "PATCH",
        )
    } else if *m == Method::PUT && segment == "config" {
        config_write(
            config::put_config(shared.ctx.dcs.as_ref(), &body).await,
            "PUT",
        )
    } else if *m == Method::POST && (segment == "switchover" || segment == "failover") {
        post_switchover(&shared, &segment, &body).await
    } else if *m == Method::DELETE && segment == "switchover" {
        match switchover::delete(shared.ctx.dcs.as_ref()).await {
            Some((code, text)) => text_reply(code, &text),
            None => error_page(409, "Conflict"),
        }
    } else {
        not_implemented(m)
    }
}

/// Query parameters as Python's `parse_qs` gives them to Patroni: the first
/// value of each key, blank values dropped.
fn parse_query(qs: &str) -> BTreeMap<String, String> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(qs)
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        if !v.is_empty() {
            out.entry(k).or_insert(v);
        }
    }
    out
}

impl Shared {
    /// Ask the elector and the supervisor concurrently. `None` only when the
    /// elector has never answered (the node is still starting).
    async fn states(&self) -> Option<(HaState, PgStatus)> {
        let ha = self.ctx.elector.send(GetHaState).timeout(ASK_TIMEOUT);
        let pg = self
            .ctx
            .supervisor
            .send(GetPgStatus {
                take_outcome: false,
            })
            .timeout(ASK_TIMEOUT);
        let (ha, pg) = join(ha, pg).await;
        let ha = match ha {
            Ok(h) => {
                *lock(&self.last_ha) = Some(h.clone());
                h
            }
            Err(e) => {
                tracing::warn!(error = %e, "REST API: no answer from the elector");
                lock(&self.last_ha).clone()?
            }
        };
        let pg = match pg {
            Ok(p) => {
                *lock(&self.last_pg) = Some(p.clone());
                p
            }
            Err(e) => {
                tracing::warn!(error = %e, "REST API: no answer from the supervisor");
                unknown_pg(lock(&self.last_pg).clone())
            }
        };
        Some((ha, pg))
    }

    async fn load_cluster(&self) -> Option<Cluster> {
        match self.ctx.dcs.load_cluster_fresh().await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "REST API: DCS read failed");
                None
            }
        }
    }
}

/// The supervisor did not answer: PostgreSQL's state is unknown now. Keep
/// what does not change quickly (data directory, version).
fn unknown_pg(last: Option<PgStatus>) -> PgStatus {
    let mut pg = last.unwrap_or_else(|| PgStatus::unknown(PgState::Unknown));
    pg.state = PgState::Unknown;
    pg.facts = PgFacts::default();
    pg.outcome = None;
    pg
}

fn json_reply(code: u16, v: &Value) -> HttpResponse {
    HttpResponse::build(http_status(code))
        .content_type("application/json")
        .body(v.to_string())
}

fn text_reply(code: u16, text: &str) -> HttpResponse {
    HttpResponse::build(http_status(code))
        .content_type("text/html")
        .body(text.to_owned())
}

fn status_only(code: u16) -> HttpResponse {
    HttpResponse::build(http_status(code)).finish()
}

fn http_status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Python's `send_error` page, which is what Patroni sends for framework
/// errors; patronictl looks for the explanation text of a 501.
fn error_page(code: u16, message: &str) -> HttpResponse {
    let sc = http_status(code);
    let explain = match code {
        501 => "Server does not support this operation",
        502 => "Invalid responses from another server/proxy",
        503 => "The server cannot process the request due to a high load",
        _ => sc.canonical_reason().unwrap_or(""),
    };
    let body = format!(
        "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta charset=\"utf-8\">\n        \
         <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n        \
         <p>Error code: {code}</p>\n        <p>Message: {message}.</p>\n        \
         <p>Error code explanation: {code} - {explain}.</p>\n    </body>\n</html>\n"
    );
    HttpResponse::build(sc)
        .content_type("text/html;charset=utf-8")
        .body(body)
}

fn not_implemented(m: &Method) -> HttpResponse {
    error_page(501, &format!("Unsupported method ('{}')", m.as_str()))
}

fn starting() -> HttpResponse {
    error_page(503, "Service Unavailable")
}

async fn get_patroni(shared: &Shared) -> HttpResponse {
    match shared.states().await {
        Some((ha, pg)) => json_reply(200, &status::status_document(&ha, &pg)),
        None => starting(),
    }
}

async fn health_check(
    shared: &Shared,
    path: &str,
    query: &BTreeMap<String, String>,
    with_body: bool,
) -> HttpResponse {
    let Some((ha, pg)) = shared.states().await else {
        return if with_body {
            starting()
        } else {
            status_only(503)
        };
    };
    let code = health::health_status(path, query, &ha, &pg);
    if with_body {
        json_reply(code, &status::status_document(&ha, &pg))
    } else {
        status_only(code)
    }
}

async fn get_liveness(shared: &Shared) -> HttpResponse {
    match shared.states().await {
        Some((ha, pg)) => status_only(health::liveness_status(&ha, &pg, Instant::now())),
        None => status_only(503),
    }
}

async fn get_readiness(shared: &Shared, query: &BTreeMap<String, String>) -> HttpResponse {
    match shared.states().await {
        Some((ha, pg)) => status_only(health::readiness_status(query, &ha, &pg)),
        None => status_only(503),
    }
}

async fn get_cluster(shared: &Shared) -> HttpResponse {
    let (c, states) = join(shared.load_cluster(), shared.states()).await;
    match (c, states) {
        (Some(c), Some((ha, _))) => json_reply(200, &cluster::cluster_json(&c, &ha.scope)),
        _ => error_page(503, "Service Unavailable"),
    }
}

async fn get_history(shared: &Shared) -> HttpResponse {
    match shared.load_cluster().await {
        Some(c) => json_reply(200, &cluster::history_json(&c)),
        None => error_page(503, "Service Unavailable"),
    }
}

async fn get_config(shared: &Shared) -> HttpResponse {
    match shared.load_cluster().await {
        Some(c) => match c.config {
            Some(cfg) if cfg.value.is_object() => json_reply(200, &cfg.value),
            _ => error_page(502, "Bad Gateway"),
        },
        None => error_page(503, "Service Unavailable"),
    }
}

/// The answer to `PATCH`/`PUT /config`: 200 with the new document, or the
/// error's status with a message naming the field.
fn config_write(r: Result<Value, config::ConfigWriteError>, method: &str) -> HttpResponse {
    match r {
        Ok(v) => {
            tracing::info!(event = "dynamic_config_written", method, config = %v);
            json_reply(200, &v)
        }
        Err(e) => {
            tracing::warn!(event = "dynamic_config_refused", method, status = e.status(), error = %e.message());
            text_reply(e.status(), &e.message())
        }
    }
}

async fn post_reload(shared: &Shared) -> HttpResponse {
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

/// Ask the supervisor for an operation and reply with its answer.
async fn pg_op(shared: &Shared, op: PgOp, wait: Duration) -> HttpResponse {
    match shared.ctx.pg_ops.send(op).timeout(wait).await {
        Ok((code, text)) => text_reply(code, &text),
        Err(e) => text_reply(503, &format!("no answer from the supervisor: {e}")),
    }
}

/// `POST /restart` (docs/rest-api.md, "POST /restart, DELETE /restart"):
/// schedule it, or restart now, synchronously, if the conditions of the body
/// hold.
async fn post_restart(shared: &Shared, body: &[u8]) -> HttpResponse {
    let Some((ha, pg)) = shared.states().await else {
        return starting();
    };
    let req =
        match restart::parse_request(body, status::paused(&ha), crate::ha::iso8601::now_unix()) {
            Ok(r) => r,
            Err((code, text)) => return text_reply(code, &text),
        };
    if let Some((at_unix, schedule)) = req.schedule {
        let op = PgOp::ScheduleRestart {
            at_unix,
            schedule,
            options: req.options,
        };
        // The supervisor reads PostgreSQL's start time first.
        return pg_op(shared, op, RELOAD_TIMEOUT).await;
    }
    if let Some(why) = restart::unmet_condition(&req.options, &pg) {
        tracing::info!(event = "restart_refused", reason = why);
        return text_reply(503, "restart conditions are not satisfied");
    }
    // Without `timeout` the start may take `primary_start_timeout`, which
    // only the supervisor knows: wait long (Patroni's call has no limit).
    let wait = req.options.timeout.unwrap_or(Duration::from_secs(3600)) + RESTART_GRACE;
    pg_op(shared, PgOp::Restart(req.options), wait).await
}

/// `POST /reinitialize`: refused on the leader and without one (503 with
/// Patroni's texts); otherwise the rebuild starts and the reply comes at
/// once (200 `reinitialize started`).
async fn post_reinitialize(shared: &Shared, body: &[u8]) -> HttpResponse {
    let (force, from_leader) = reinit::parse_body(body);
    let Some((ha, _)) = shared.states().await else {
        return starting();
    };
    let Some(cluster) = shared.load_cluster().await else {
        return text_reply(503, "DCS is not accessible, can not reinitialize");
    };
    match reinit::source(&cluster, &ha.name, from_leader) {
        Ok(from) => pg_op(shared, PgOp::Reinitialize { from, force }, ASK_TIMEOUT).await,
        Err(why) => text_reply(503, &why.to_string()),
    }
}

/// `GET /failsafe`: the `failsafe` key of the last DCS read; 502 if none.
async fn get_failsafe(shared: &Shared) -> HttpResponse {
    match shared.states().await.and_then(|(ha, _)| ha.failsafe) {
        Some(map) => json_reply(200, &serde_json::json!(map)),
        None => error_page(502, "Bad Gateway"),
    }
}

async fn post_switchover(shared: &Shared, segment: &str, body: &[u8]) -> HttpResponse {
    let kind = if segment == "failover" {
        switchover::Kind::Failover
    } else {
        switchover::Kind::Switchover
    };
    let loop_wait = match shared.states().await {
        Some((ha, _)) => ha.loop_wait_secs,
        None => return starting(),
    };
    let (code, text) = switchover::post(
        kind,
        body,
        shared.ctx.dcs.as_ref(),
        &shared.ctx.wake,
        loop_wait,
    )
    .await;
    text_reply(code, &text)
}

/// What `POST /failsafe` answers (docs/rest-api.md, "GET /failsafe, POST
/// /failsafe"): refused when failsafe mode is off (502) or when this node
/// itself runs as primary (500); otherwise accepted, with this node's WAL
/// position.
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
async fn post_failsafe(shared: &Shared, body: &[u8]) -> HttpResponse {
    let Some((ha, pg)) = shared.states().await else {
        return starting();
    };
    let reply = failsafe_reply(&ha, &pg);
    if matches!(reply, FailsafeReply::Disabled) {
        return error_page(502, "Bad Gateway");
    }
    let req: Value = match serde_json::from_slice(body) {
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

    #[test]
    fn query_like_parse_qs() {
        let q = parse_query("lag=16MB&tag_zone=a&tag_zone=b&empty=&x");
        assert_eq!(q.get("lag").map(String::as_str), Some("16MB"));
        assert_eq!(q.get("tag_zone").map(String::as_str), Some("a"));
        assert!(!q.contains_key("empty"));
        assert!(!q.contains_key("x"));
        let q = parse_query("replication_state=in%20archive+recovery");
        assert_eq!(
            q.get("replication_state").map(String::as_str),
            Some("in archive recovery")
        );
        assert!(parse_query("").is_empty());
    }

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

    #[test]
    fn unknown_pg_keeps_slow_facts() {
        let pg = unknown_pg(None);
        assert_eq!(pg.state, PgState::Unknown);
        assert_eq!(status::role_str(&pg), "uninitialized");
    }
}
