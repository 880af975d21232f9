//! Access control of the REST API's unsafe endpoints (docs/rest-api.md, "Access
//! control"), as an actix-web middleware, so every POST/PUT/PATCH/DELETE route
//! gets it, including ones added later. Order of the checks, as Patroni's:
//!
//! 1. `restapi.allowlist` (IPs, CIDRs, host names resolved when the
//!    configuration is loaded) and, with `restapi.allowlist_include_members`,
//!    the hosts of the members' `api_url` (read from the DCS
//!    when a request is not allowed otherwise; not for `POST /failsafe`): a
//!    client outside them gets **403** `Access is denied`;
//! 2. over HTTPS with `verify_client` `optional` or `required`: the client
//!    must have presented a certificate (checked by the handshake against
//!    `restapi.cafile`), else **403** `Access is denied`;
//! 3. `restapi.authentication`: HTTP Basic must match, else **401** with
//!    `WWW-Authenticate: Basic realm="Patroni"`.
//!
//! GET, HEAD and OPTIONS are never checked (health checks stay open).
//! Credentials are compared, never logged: a refusal logs the method, path
//! and peer address only. Request bodies are limited to [`BODY_LIMIT`]
//! (larger ones: 413).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, OnceLock, RwLock};

use actix::prelude::*;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ipnet::IpNet;
use subtle::ConstantTimeEq;
use tracing::warn;

use crate::api::headers::ExtraHeaders;
use crate::config::RestApi;
use crate::dcs::{Cluster, Dcs};
use crate::messages::config::ConfigChanged;
use crate::sync;

/// The largest request body accepted (JSON documents of a few hundred
/// bytes in practice).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Parse `10.0.0.0/8`, `::1`, `192.168.1.5`, or resolve a host name (all
/// its addresses). Unusable entries are reported and skipped.
///
/// Host bits may be set (`10.1.2.3/8` is `10.0.0.0/8`), as Python's
/// `ip_network(value, strict=False)` in Patroni.
fn parse_entry(entry: &str) -> Result<Vec<IpNet>, String> {
    let entry = entry.trim();
    if entry.contains('/') {
        let net: IpNet = entry
            .parse()
            .map_err(|e| format!("{entry}: not a network ({e})"))?;
        return Ok(vec![net]);
    }
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return Ok(vec![IpNet::from(addr)]);
    }
    let addrs: Vec<SocketAddr> = (entry, 0)
        .to_socket_addrs()
        .map_err(|e| format!("{entry}: {e}"))?
        .collect();
    Ok(addrs.into_iter().map(|a| IpNet::from(a.ip())).collect())
}

/// Whether `net` holds `ip`; an IPv4 client may show up as `::ffff:a.b.c.d`
/// on a dual-stack socket, and then counts as its IPv4 address.
fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    let ip = match (net, ip) {
        (IpNet::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        _ => ip,
    };
    net.contains(&ip)
}

/// The rules in force, rebuilt from `restapi` on every configuration change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rules {
    /// `user:password`, as the decoded Basic credentials must read.
    credentials: Option<Vec<u8>>,
    /// `None`: no allowlist (everyone may try).
    allowlist: Option<Vec<IpNet>>,
    /// HTTPS with `verify_client` optional/required: unsafe requests need a
    /// client certificate.
    client_cert: bool,
    /// `allowlist_include_members`: the members' hosts are allowed too (and
    /// an empty `allowlist` then allows only them).
    include_members: bool,
}

impl Rules {
    fn from_restapi(r: &RestApi) -> Rules {
        let credentials = r.authentication.as_ref().and_then(|a| {
            a.username
                .as_ref()
                .map(|u| format!("{u}:{}", a.password.as_deref().unwrap_or_default()).into_bytes())
        });
        let allowlist = r.allowlist.as_ref().filter(|l| !l.is_empty()).map(|l| {
            l.iter()
                .flat_map(|e| {
                    parse_entry(e).unwrap_or_else(|err| {
                        warn!(event = crate::events::ALLOWLIST_ENTRY_IGNORED, error = %err);
                        Vec::new()
                    })
                })
                .collect()
        });
        Rules {
            credentials,
            allowlist,
            client_cert: crate::tls::client_cert_required_for_unsafe(r),
            include_members: r.allowlist_include_members.unwrap_or(false),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 403 `Access is denied`.
    NotAllowed,
    /// 401 `no auth header received`.
    NoCredentials,
    /// 401 `not authenticated`.
    WrongCredentials,
}

/// The API's access policy; cheap to clone, shared with the updater.
#[derive(Clone, Default)]
pub struct AccessPolicy {
    rules: Arc<RwLock<Rules>>,
    /// Where the members' addresses are read (`allowlist_include_members`).
    dcs: Arc<OnceLock<Arc<dyn Dcs>>>,
    /// The members' addresses as last read, and when: refused clients
    /// cannot make every request a DCS read.
    members_cache: Arc<std::sync::Mutex<Option<MemberIps>>>,
    /// `restapi.http(s)_extra_headers`, reloaded with the rules
    /// (src/api/headers.rs).
    headers: ExtraHeaders,
}

/// The members' addresses and when they were read.
type MemberIps = (std::time::Instant, Vec<IpAddr>);

/// How long the members' addresses read for the allowlist are reused.
const MEMBERS_CACHE: std::time::Duration = std::time::Duration::from_secs(2);

impl std::fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// The host part of a URL (`http://h:8008/patroni`, `postgres://[::1]:5432/db`),
/// lowercased and without brackets, as Python's `urlparse(url).hostname`
/// that Patroni uses.
fn url_host(url: &str) -> Option<String> {
    match url::Url::parse(url).ok()?.host()? {
        url::Host::Domain(d) => (!d.is_empty()).then(|| d.to_ascii_lowercase()),
        url::Host::Ipv4(a) => Some(a.to_string()),
        url::Host::Ipv6(a) => Some(a.to_string()),
    }
}

/// The hosts of every member's `api_url`: its REST API's address, from
/// which it calls the others (Patroni's `__members_ips`). Not `conn_url`:
/// PostgreSQL's address says nothing about who may call the REST API.
pub(crate) fn member_hosts(cluster: &Cluster) -> Vec<String> {
    let mut hosts: Vec<String> = cluster
        .members
        .iter()
        .filter_map(|m| url_host(&m.data.api_url))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

fn unsafe_method(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

impl AccessPolicy {
    /// No allowlist, no authentication (tests, and a config without them).
    pub fn open() -> AccessPolicy {
        AccessPolicy::default()
    }

    pub fn from_restapi(r: &RestApi) -> AccessPolicy {
        AccessPolicy {
            rules: Arc::new(RwLock::new(Rules::from_restapi(r))),
            dcs: Arc::default(),
            members_cache: Arc::default(),
            headers: ExtraHeaders::from_restapi(r),
        }
    }

    /// The extra response headers.
    pub fn extra_headers(&self) -> &ExtraHeaders {
        &self.headers
    }

    /// New rules and extra headers (a reload).
    pub fn update(&self, r: &RestApi) {
        self.headers.update(r);
        let new = Rules::from_restapi(r);
        let mut rules = sync::write(&self.rules);
        *rules = new;
    }

    /// Where `allowlist_include_members` reads the members (the server
    /// attaches its DCS; without one only `allowlist` counts).
    pub fn attach_dcs(&self, dcs: Arc<dyn Dcs>) {
        let _ = self.dcs.set(dcs);
    }

    fn include_members(&self) -> bool {
        sync::read(&self.rules).include_members
    }

    /// The members' addresses, resolved now (no DCS or a failed read:
    /// none).
    async fn member_ips(&self) -> Vec<IpAddr> {
        let Some(dcs) = self.dcs.get() else {
            return Vec::new();
        };
        if let Some((at, ips)) = &*sync::lock(&self.members_cache)
            && at.elapsed() < MEMBERS_CACHE
        {
            return ips.clone();
        }
        let cluster = match dcs.load_cluster_fresh().await {
            Ok(c) => c,
            Err(e) => {
                warn!(event = crate::events::ALLOWLIST_MEMBERS_UNAVAILABLE, error = %e);
                return Vec::new();
            }
        };
        let mut ips = Vec::new();
        for host in member_hosts(&cluster) {
            match host.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => match tokio::net::lookup_host((host.as_str(), 0)).await {
                    Ok(addrs) => ips.extend(addrs.map(|a| a.ip())),
                    Err(e) => {
                        warn!(event = crate::events::ALLOWLIST_MEMBER_UNRESOLVED, host = %host, error = %e)
                    }
                },
            }
        }
        ips
    }

    /// The access check of one request (`None`: let it through).
    pub fn check(
        &self,
        method: &Method,
        peer: Option<IpAddr>,
        authorization: Option<&HeaderValue>,
    ) -> Option<Refusal> {
        self.check_request(method, peer, true, authorization, &[])
    }

    /// [`check`](Self::check), also allowing `members` when
    /// `allowlist_include_members` is on.
    pub fn check_with_members(
        &self,
        method: &Method,
        peer: Option<IpAddr>,
        authorization: Option<&HeaderValue>,
        members: &[IpAddr],
    ) -> Option<Refusal> {
        self.check_request(method, peer, true, authorization, members)
    }

    /// The whole check: `client_cert`, the TLS client presented a
    /// (verified) certificate; `members`, the members' addresses when
    /// `allowlist_include_members` is on.
    pub fn check_request(
        &self,
        method: &Method,
        peer: Option<IpAddr>,
        client_cert: bool,
        authorization: Option<&HeaderValue>,
        members: &[IpAddr],
    ) -> Option<Refusal> {
        if !unsafe_method(method) {
            return None;
        }
        let rules = sync::read(&self.rules);
        if rules.allowlist.is_some() || rules.include_members {
            let listed = |ip: IpAddr| {
                rules
                    .allowlist
                    .iter()
                    .flatten()
                    .any(|n| net_contains(n, ip))
            };
            let member = |ip: IpAddr| {
                let ip = match ip {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                    v4 => v4,
                };
                rules.include_members && members.contains(&ip)
            };
            if !peer.is_some_and(|ip| listed(ip) || member(ip)) {
                return Some(Refusal::NotAllowed);
            }
        }
        if rules.client_cert && !client_cert {
            return Some(Refusal::NotAllowed);
        }
        let expected = rules.credentials.as_ref()?;
        let Some(header) = authorization else {
            return Some(Refusal::NoCredentials);
        };
        let given = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| B64.decode(b.trim()).ok());
        match given {
            Some(g) if constant_time_eq(&g, expected) => None,
            _ => Some(Refusal::WrongCredentials),
        }
    }
}

/// Equal bytes, in a time that does not depend on where they differ
/// (only on the lengths, which are not secret enough to matter here).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn refusal_response(r: Refusal) -> HttpResponse {
    match r {
        Refusal::NotAllowed => HttpResponse::Forbidden()
            .content_type("text/html")
            .body("Access is denied"),
        Refusal::NoCredentials | Refusal::WrongCredentials => HttpResponse::Unauthorized()
            .insert_header((WWW_AUTHENTICATE, "Basic realm=\"Patroni\""))
            .content_type("text/html")
            .body(if r == Refusal::NoCredentials {
                "no auth header received"
            } else {
                "not authenticated"
            }),
    }
}

/// The middleware: `App::new().app_data(web::Data::new(policy))
/// .wrap(from_fn(access_check))`.
pub async fn access_check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, Error> {
    let client_cert = req
        .conn_data::<crate::api::server::ClientCertificate>()
        .is_some();
    let policy = req.app_data::<web::Data<AccessPolicy>>().cloned();
    let peer = req.peer_addr().map(|a| a.ip());
    let mut refusal = policy.as_ref().and_then(|p| {
        p.check_request(
            req.method(),
            peer,
            client_cert,
            req.headers().get(AUTHORIZATION),
            &[],
        )
    });
    // Not in `allowlist`: maybe a member (never for `POST /failsafe`,
    // whose senders are checked by the allowlist alone, as in Patroni).
    if refusal == Some(Refusal::NotAllowed)
        && let Some(p) = &policy
        && p.include_members()
        && req.path().trim_start_matches('/').split('/').next() != Some("failsafe")
    {
        let members = p.member_ips().await;
        refusal = p.check_request(
            req.method(),
            peer,
            client_cert,
            req.headers().get(AUTHORIZATION),
            &members,
        );
    }
    match refusal {
        Some(r) => {
            warn!(event = crate::events::API_ACCESS_REFUSED, reason = ?r, method = %req.method(),
                  path = %req.path(), peer = ?req.peer_addr().map(|a| a.ip()));
            Ok(req.into_response(refusal_response(r)))
        }
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

/// Keeps an [`AccessPolicy`] in line with the configuration (subscribe it
/// to the ConfigManager): new credentials or allowlist apply on reload.
pub struct AccessPolicyUpdater(pub AccessPolicy);

impl Actor for AccessPolicyUpdater {
    type Context = Context<Self>;
}

impl Handler<ConfigChanged> for AccessPolicyUpdater {
    type Result = ();
    fn handle(&mut self, ConfigChanged(cfg): ConfigChanged, _ctx: &mut Context<Self>) {
        self.0.update(&cfg.restapi);
    }
}

/// Keeps the REST API's certificate and client verification, and the peer
/// client the API calls other members with, in line with the configuration
/// (subscribe it to the ConfigManager). Files that fail to load keep what
/// runs.
pub struct TlsUpdater(
    pub Option<crate::tls::ServerTls>,
    pub crate::peer_client::PeerClient,
);

impl Actor for TlsUpdater {
    type Context = Context<Self>;
}

impl Handler<ConfigChanged> for TlsUpdater {
    type Result = ();
    fn handle(&mut self, ConfigChanged(cfg): ConfigChanged, _ctx: &mut Context<Self>) {
        self.1.update(&cfg);
        let Some(tls) = &self.0 else {
            return;
        };
        match tls.reload(&cfg.restapi) {
            Ok(true) => tracing::info!(event = crate::events::API_CERTIFICATE_RELOADED),
            Ok(false) => {}
            Err(e) => tracing::error!(event = crate::events::API_TLS_RELOAD_FAILED, error = %e,
                                      "keeping the running certificate and client verification"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Credentials;

    fn restapi(auth: bool, allow: Option<Vec<&str>>) -> RestApi {
        let mut r: RestApi = serde_json::from_value(serde_json::json!({
            "listen": "127.0.0.1:8008", "connect_address": "127.0.0.1:8008"
        }))
        .unwrap();
        if auth {
            r.authentication = Some(Credentials {
                username: Some("admin".into()),
                password: Some("s3cret".into()),
                ..Credentials::default()
            });
        }
        r.allowlist = allow.map(|l| l.into_iter().map(str::to_owned).collect());
        r
    }

    fn basic(s: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Basic {}", B64.encode(s))).unwrap()
    }

    #[test]
    fn client_certificate_for_unsafe_methods_over_https() {
        let mut r = restapi(true, Some(vec!["10.0.0.0/8"]));
        r.certfile = Some("/etc/ssl/api.pem".into());
        r.verify_client = Some("optional".into());
        let p = AccessPolicy::from_restapi(&r);
        let ip = Some("10.1.2.3".parse().unwrap());
        let ok = basic("admin:s3cret");
        // GET stays open without a certificate.
        assert_eq!(p.check_request(&Method::GET, ip, false, None, &[]), None);
        // Order: allowlist, certificate, credentials.
        let outside = Some("192.168.0.1".parse().unwrap());
        assert_eq!(
            p.check_request(&Method::POST, outside, true, Some(&ok), &[]),
            Some(Refusal::NotAllowed)
        );
        assert_eq!(
            p.check_request(&Method::POST, ip, false, Some(&ok), &[]),
            Some(Refusal::NotAllowed)
        );
        assert_eq!(
            p.check_request(&Method::POST, ip, true, None, &[]),
            Some(Refusal::NoCredentials)
        );
        assert_eq!(
            p.check_request(&Method::POST, ip, true, Some(&ok), &[]),
            None
        );
        // verify_client none, or plain HTTP: no certificate needed.
        r.verify_client = Some("none".into());
        p.update(&r);
        assert_eq!(
            p.check_request(&Method::POST, ip, false, Some(&ok), &[]),
            None
        );
        r.verify_client = Some("required".into());
        r.certfile = None;
        p.update(&r);
        assert_eq!(
            p.check_request(&Method::POST, ip, false, Some(&ok), &[]),
            None
        );
    }

    #[test]
    fn basic_auth_on_unsafe_methods_only() {
        let p = AccessPolicy::from_restapi(&restapi(true, None));
        let ip = Some("10.1.2.3".parse().unwrap());
        assert_eq!(p.check(&Method::GET, ip, None), None);
        assert_eq!(p.check(&Method::HEAD, ip, None), None);
        assert_eq!(
            p.check(&Method::POST, ip, None),
            Some(Refusal::NoCredentials)
        );
        for m in [Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(
                p.check(&m, ip, Some(&basic("admin:wrong"))),
                Some(Refusal::WrongCredentials)
            );
        }
        assert_eq!(
            p.check(&Method::POST, ip, Some(&basic("admin:s3cret2"))),
            Some(Refusal::WrongCredentials)
        );
        assert_eq!(
            p.check(
                &Method::POST,
                ip,
                Some(&HeaderValue::from_static("Bearer x"))
            ),
            Some(Refusal::WrongCredentials)
        );
        assert_eq!(
            p.check(&Method::POST, ip, Some(&basic("admin:s3cret"))),
            None
        );
        assert_eq!(
            AccessPolicy::open().check(&Method::POST, ip, None),
            None,
            "no authentication configured"
        );
    }

    #[test]
    fn allowlist_comes_first() {
        let p = AccessPolicy::from_restapi(&restapi(true, Some(vec!["10.0.0.0/8", "::1"])));
        let inside: IpAddr = "10.200.0.1".parse().unwrap();
        let outside: IpAddr = "192.168.0.1".parse().unwrap();
        assert_eq!(
            p.check(&Method::POST, Some(outside), Some(&basic("admin:s3cret"))),
            Some(Refusal::NotAllowed)
        );
        assert_eq!(
            p.check(&Method::POST, Some(inside), None),
            Some(Refusal::NoCredentials)
        );
        assert_eq!(
            p.check(
                &Method::POST,
                Some("::1".parse().unwrap()),
                Some(&basic("admin:s3cret"))
            ),
            None
        );
        assert_eq!(
            p.check(
                &Method::POST,
                Some("::ffff:10.0.0.7".parse().unwrap()),
                Some(&basic("admin:s3cret"))
            ),
            None
        );
        assert_eq!(p.check(&Method::GET, Some(outside), None), None);
        assert_eq!(
            p.check(&Method::POST, None, None),
            Some(Refusal::NotAllowed)
        );
    }

    #[actix_web::test]
    async fn middleware_guards_every_unsafe_route_and_limits_bodies() {
        use actix_web::{App, test};
        let policy = AccessPolicy::from_restapi(&restapi(true, Some(vec!["127.0.0.0/8"])));
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(policy.clone()))
                .app_data(web::PayloadConfig::new(BODY_LIMIT))
                .wrap(actix_web::middleware::from_fn(access_check))
                .default_service(web::to(|body: web::Bytes| async move {
                    HttpResponse::Ok().body(format!("{} bytes", body.len()))
                })),
        )
        .await;
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let call = |req: test::TestRequest| {
            let app = &app;
            async move { test::call_service(app, req.to_request()).await }
        };
        let r = call(test::TestRequest::get().uri("/patroni").peer_addr(remote)).await;
        assert_eq!(r.status().as_u16(), 200);
        let r = call(test::TestRequest::post().uri("/anything").peer_addr(remote)).await;
        assert_eq!(r.status().as_u16(), 403);
        assert_eq!(test::read_body(r).await, "Access is denied");
        let r = call(test::TestRequest::patch().uri("/config").peer_addr(local)).await;
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(
            r.headers().get(WWW_AUTHENTICATE).unwrap(),
            "Basic realm=\"Patroni\""
        );
        let ok = |req: test::TestRequest| {
            req.peer_addr(local)
                .insert_header((AUTHORIZATION, basic("admin:s3cret")))
        };
        let r = call(ok(test::TestRequest::put().uri("/config")).set_payload("{}")).await;
        assert_eq!(r.status().as_u16(), 200);
        let r = call(
            ok(test::TestRequest::post().uri("/reload")).set_payload(vec![b'x'; BODY_LIMIT + 1]),
        )
        .await;
        assert_eq!(r.status().as_u16(), 413);

        // A reload with new credentials applies at once.
        let mut cfg: crate::config::Config = serde_yaml_ng::from_str(
            "name: a\nscope: s\nrestapi: {listen: ':8008', connect_address: '10.0.0.1:8008', \
             authentication: {username: admin, password: other}}\n\
             postgresql: {listen: ':5432', connect_address: '10.0.0.1:5432', data_dir: /d, \
             authentication: {replication: {username: r}}}\n",
        )
        .unwrap();
        cfg.restapi.allowlist = None;
        policy.update(&cfg.restapi);
        let r = call(ok(test::TestRequest::delete().uri("/switchover"))).await;
        assert_eq!(r.status().as_u16(), 401);
        let r = call(
            test::TestRequest::delete()
                .uri("/switchover")
                .peer_addr(remote)
                .insert_header((AUTHORIZATION, basic("admin:other"))),
        )
        .await;
        assert_eq!(r.status().as_u16(), 200);
    }

    #[test]
    fn members_on_top_of_the_allowlist() {
        let mut r = restapi(false, Some(vec!["10.0.0.0/8"]));
        r.allowlist_include_members = Some(true);
        let p = AccessPolicy::from_restapi(&r);
        let member: IpAddr = "192.0.2.7".parse().unwrap();
        let stranger: IpAddr = "192.0.2.8".parse().unwrap();
        let listed: IpAddr = "10.1.1.1".parse().unwrap();
        assert_eq!(
            p.check(&Method::POST, Some(member), None),
            Some(Refusal::NotAllowed)
        );
        let members = [member];
        assert_eq!(
            p.check_with_members(&Method::POST, Some(member), None, &members),
            None
        );
        assert_eq!(
            p.check_with_members(
                &Method::POST,
                Some("::ffff:192.0.2.7".parse().unwrap()),
                None,
                &members
            ),
            None
        );
        assert_eq!(
            p.check_with_members(&Method::POST, Some(stranger), None, &members),
            Some(Refusal::NotAllowed)
        );
        assert_eq!(
            p.check_with_members(&Method::POST, Some(listed), None, &members),
            None
        );
        // Without an allowlist, members only; switched off, the members
        // list counts for nothing.
        let mut r = restapi(false, None);
        r.allowlist_include_members = Some(true);
        let only = AccessPolicy::from_restapi(&r);
        assert_eq!(
            only.check_with_members(&Method::POST, Some(stranger), None, &members),
            Some(Refusal::NotAllowed)
        );
        assert_eq!(
            only.check_with_members(&Method::POST, Some(member), None, &members),
            None
        );
        let mut r = restapi(false, Some(vec!["10.0.0.0/8"]));
        r.allowlist_include_members = Some(false);
        let off = AccessPolicy::from_restapi(&r);
        assert_eq!(
            off.check_with_members(&Method::POST, Some(member), None, &members),
            Some(Refusal::NotAllowed)
        );
    }

    #[actix_web::test]
    async fn middleware_asks_the_dcs_for_members() {
        use crate::dcs::MemberData;
        use crate::dcs::memory::{MemoryDcs, MemoryStore};
        use actix_web::{App, test};
        use std::time::Duration;
        let dcs = MemoryDcs::new(
            MemoryStore::new(),
            "/service/s".into(),
            "m1".into(),
            Duration::from_secs(30),
            Duration::from_secs(10),
        );
        dcs.touch_member(&MemberData {
            api_url: "http://127.0.0.1:8008/patroni".into(),
            conn_url: "postgres://127.0.0.2:5432/postgres".into(),
            ..MemberData::default()
        })
        .await
        .unwrap();
        let mut r = restapi(false, Some(vec!["10.0.0.0/8"]));
        r.allowlist_include_members = Some(true);
        let policy = AccessPolicy::from_restapi(&r);
        policy.attach_dcs(Arc::new(dcs));
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(policy))
                .wrap(actix_web::middleware::from_fn(access_check))
                .default_service(web::to(|| async { HttpResponse::Ok().finish() })),
        )
        .await;
        let post = |path: &str, peer: &str| {
            test::TestRequest::post()
                .uri(path)
                .peer_addr(peer.parse().unwrap())
                .to_request()
        };
        let code = |r: ServiceResponse| r.status().as_u16();
        assert_eq!(
            code(test::call_service(&app, post("/restart", "127.0.0.1:1")).await),
            200
        );
        // The host of its conn_url only: not a member's REST address.
        assert_eq!(
            code(test::call_service(&app, post("/restart", "127.0.0.2:1")).await),
            403
        );
        assert_eq!(
            code(test::call_service(&app, post("/restart", "10.9.9.9:1")).await),
            200
        );
        assert_eq!(
            code(test::call_service(&app, post("/restart", "192.0.2.1:1")).await),
            403
        );
        assert_eq!(
            code(test::call_service(&app, post("/failsafe", "127.0.0.1:1")).await),
            403
        );
    }

    #[test]
    fn member_hosts_from_urls() {
        let c = Cluster::from_kvs(vec![
            (
                "members/a".to_owned(),
                r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://node-a:8008/patroni"}"#.to_owned(),
                1,
                0,
            ),
            (
                "members/b".to_owned(),
                r#"{"conn_url":"postgres://[fd00::2]:5432/postgres","api_url":"https://user@10.0.0.2/patroni"}"#.to_owned(),
                1,
                0,
            ),
        ]);
        // api_url hosts only, as Patroni: the conn_url hosts (10.0.0.1,
        // fd00::2) are not the members' REST addresses.
        assert_eq!(member_hosts(&c), vec!["10.0.0.2", "node-a"]);
        assert_eq!(url_host("http://Node-B:8008").as_deref(), Some("node-b"));
        assert_eq!(
            url_host("postgres://u:p%40ss@[::1]:5432/db?x=1").as_deref(),
            Some("::1")
        );
        assert_eq!(
            url_host("postgres://u@db.example:5432").as_deref(),
            Some("db.example")
        );
        assert_eq!(url_host("no url"), None);
        assert_eq!(url_host("unix:/run/pg"), None);
    }

    #[test]
    fn entries_parse() {
        assert!(parse_entry("10.0.0.0/33").is_err());
        assert!(parse_entry("10.0.0.0/x").is_err());
        assert!(parse_entry("nonsense/8").is_err());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net = parse_entry("10.1.2.3/8").unwrap();
        assert!(net_contains(&net[0], ip("10.200.0.1")), "host bits ignored");
        assert!(!net_contains(&net[0], ip("11.0.0.1")));
        assert!(net_contains(&net[0], ip("::ffff:10.0.0.1")), "mapped IPv4");
        assert!(!net_contains(&net[0], ip("fe80::1")));
        let v6 = parse_entry("fe80::/10").unwrap();
        assert!(net_contains(&v6[0], ip("fe80::1")));
        assert!(!net_contains(&v6[0], ip("10.0.0.1")));
        let one = parse_entry(" 192.168.1.5 ").unwrap();
        assert!(net_contains(&one[0], ip("192.168.1.5")));
        assert!(!net_contains(&one[0], ip("192.168.1.6")));
        assert!(net_contains(
            &parse_entry("0.0.0.0/0").unwrap()[0],
            ip("8.8.8.8")
        ));
        assert!(parse_entry("fe80::/10").is_ok());
        assert_eq!(parse_entry("localhost").map(|v| !v.is_empty()), Ok(true));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
