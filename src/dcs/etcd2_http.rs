//! etcd's v2 keys API over HTTP/1.1 (docs/dcs.md, "etcd v2 (`Etcd2Dcs`)"): requests,
//! answers and how their failures map onto the two error classes.
//!
//! One TCP connection per request, opened, used and dropped inside the
//! call's deadline, so that a request given up on cannot take effect later
//! (docs/dcs.md, "Abandoned requests"): the socket has `SO_LINGER` 0 (dropping
//! it resets the connection and discards what is still queued) and
//! `TCP_USER_TIMEOUT` = `retry_timeout`, as etcd_conn.rs does for v3.
//! reqwest cannot set `SO_LINGER`, and its pool would keep the connection of
//! an abandoned request open, so the exchange is hyper's one-connection
//! client, driven inside the call's own future.
//!
//! `https` endpoints: TLS (tokio-rustls, ring) over that same socket, with
//! the section's `cacert`, `cert` and `key` (`etcd_tls`, ALPN `http/1.1`).
//! `username`/`password`: HTTP Basic authentication on every request, as
//! Patroni's client sends them (etcd's v2 auth, not v3's RBAC: v2 has no
//! tokens). A TLS failure, or etcd refusing the user (v2 error 110), is a
//! [`Failure::Refusal`] naming the setting: a configuration error, never an
//! outage.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::DcsError;
use super::etcd_conn::{ConnectError, EtcdSettings, SrvSettings};
use super::etcd_tls::{EtcdTls, rustls_error};

/// etcd v2's error codes that pgpilot acts on (etcd's `error/error.go`).
pub(crate) const KEY_NOT_FOUND: u32 = 100;
pub(crate) const COMPARE_FAILED: u32 = 101;
pub(crate) const NODE_EXISTS: u32 = 105;
pub(crate) const EVENT_INDEX_CLEARED: u32 = 401;
/// "Raft Internal Error" and "During Leader Election": the cluster cannot
/// answer now, as Patroni's `EtcdRaftInternal` and
/// `EtcdLeaderElectionInProgress`.
const RAFT_INTERNAL: u32 = 300;
const LEADER_ELECTION: u32 = 301;
/// "The request requires user authentication" (HTTP 401): no user, an
/// unknown one, a wrong password, or a user without rights on the key.
const UNAUTHORIZED: u32 = 110;

/// One key or directory of an answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Node {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub dir: bool,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default, rename = "modifiedIndex")]
    pub modified_index: u64,
    #[serde(default, rename = "createdIndex")]
    pub created_index: u64,
}

impl Node {
    /// Every key (not directory) at or below this node, depth first.
    pub fn leaves(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(n) = stack.pop() {
            if n.dir {
                stack.extend(n.nodes.iter());
            } else {
                out.push(n);
            }
        }
        out
    }
}

/// A successful answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Answer {
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub node: Option<Node>,
    #[serde(default, rename = "prevNode")]
    pub prev_node: Option<Node>,
}

/// An error etcd answered in its own JSON form.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EtcdError {
    #[serde(rename = "errorCode")]
    pub code: u32,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub index: Option<u64>,
}

/// What one request came back with.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The answer, and the store's index when it was given
    /// (`X-Etcd-Index`), the point a watch continues from.
    Ok(Answer, Option<u64>),
    /// etcd refused with one of its codes; the caller decides what each
    /// means for its call (a lost compare, a missing key).
    Refused(EtcdError),
}

/// An HTTP method the keys API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Put,
    Delete,
}

/// One etcd member's address, from an endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
    https: bool,
}

impl Endpoint {
    fn name(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// The `Host` header.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn parse_endpoint(s: &str) -> Result<Endpoint, DcsError> {
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|e| DcsError::Other(format!("etcd endpoint {s:?}: {e}")))?;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(DcsError::Other(format!(
                "etcd endpoint {s}: scheme {other:?} (http or https)"
            )));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| DcsError::Other(format!("etcd endpoint {s:?}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(Endpoint {
        host,
        port: url.port().unwrap_or(2379),
        https,
    })
}

/// Why a request got no answer to act on. A refusal says what to fix (a
/// TLS file, the user or password) and is what stops a start
/// ([`Http::refused`]); as a [`DcsError`] it is `Other`, never
/// `Unreachable`.
#[derive(Debug)]
pub(crate) enum Failure {
    Unreachable(String),
    Refusal(String),
    Other(DcsError),
}

impl From<Failure> for DcsError {
    fn from(f: Failure) -> DcsError {
        match f {
            Failure::Unreachable(m) => DcsError::Unreachable(m),
            Failure::Refusal(m) => DcsError::Other(m),
            Failure::Other(e) => e,
        }
    }
}

/// The user and the `Authorization` header sent with every request.
struct Auth {
    user: String,
    header: String,
}

/// The members to ask, and which one answered last.
pub(crate) struct Http {
    /// The endpoints configured (`host`, `hosts`, `url`, `proxy`).
    configured: Vec<Endpoint>,
    /// The endpoints in use: with `srv`, those its records gave (else the
    /// configured ones); without, the configured ones.
    endpoints: Mutex<Vec<Endpoint>>,
    /// DNS SRV discovery (`srv`, `srv_suffix`; `etcd_srv`).
    srv: Option<SrvSettings>,
    /// The SRV names must be asked before the next request: at first, and
    /// again after no endpoint answered, as Patroni's
    /// `AbstractEtcdClientWithFailover` refreshes its machines from SRV
    /// then. Not at every request: v2 opens a connection per request, and
    /// six DNS questions each would cost more than the request.
    resolve_srv: AtomicBool,
    /// Bad endpoints, reported by every call (a configuration error).
    invalid: Option<DcsError>,
    current: AtomicUsize,
    tls: Option<Arc<EtcdTls>>,
    auth: Option<Auth>,
}

impl Http {
    /// The endpoints, TLS, credentials and SRV name of `settings`.
    pub fn new(settings: &EtcdSettings) -> Http {
        let mut parsed = Vec::new();
        let mut invalid = None;
        for e in &settings.endpoints {
            match parse_endpoint(e) {
                Ok(p) if p.https && settings.tls.is_none() => {
                    invalid = Some(DcsError::Other(format!(
                        "etcd endpoint {e}: https without TLS settings"
                    )));
                }
                Ok(p) => parsed.push(p),
                Err(err) => invalid = Some(err),
            }
        }
        if parsed.is_empty() && invalid.is_none() && settings.srv.is_none() {
            invalid = Some(DcsError::Other("no etcd endpoints configured".into()));
        }
        let auth = settings.credentials.as_ref().map(|(user, password)| Auth {
            user: user.clone(),
            header: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
        });
        Http {
            endpoints: Mutex::new(parsed.clone()),
            configured: parsed,
            srv: settings.srv.clone(),
            resolve_srv: AtomicBool::new(settings.srv.is_some()),
            invalid,
            current: AtomicUsize::new(0),
            tls: settings.tls.clone(),
            auth,
        }
    }

    /// Send one request to `path_and_query` (already encoded), the form
    /// `body` for a PUT, and read the whole answer, by `deadline`. A member
    /// that refuses the connection (or its TLS handshake fails) is skipped
    /// for the next, while time remains; once a request is sent it is not
    /// sent again.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
        deadline: Instant,
        user_timeout: Duration,
    ) -> Result<Reply, DcsError> {
        self.request_typed(method, path_and_query, body, deadline, user_timeout)
            .await
            .map_err(DcsError::from)
    }

    /// What etcd refuses us at start (Patroni's daemon stops on a failed
    /// authentication at start): a TLS failure or the user and password,
    /// asked with a read of `path_and_query`. `None` when it answered, and
    /// when no endpoint answered (the daemon then starts and retries).
    pub async fn refused(
        &self,
        path_and_query: &str,
        deadline: Instant,
        user_timeout: Duration,
    ) -> Option<String> {
        match self
            .request_typed(Method::Get, path_and_query, None, deadline, user_timeout)
            .await
        {
            Err(Failure::Refusal(m)) => Some(m),
            Err(Failure::Other(e)) if self.invalid.is_some() => Some(e.to_string()),
            _ => None,
        }
    }

    async fn request_typed(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
        deadline: Instant,
        user_timeout: Duration,
    ) -> Result<Reply, Failure> {
        if let Some(e) = &self.invalid {
            return Err(Failure::Other(e.clone()));
        }
        let endpoints = self.endpoints_now(deadline, user_timeout).await?;
        let n = endpoints.len();
        if n == 0 {
            return Err(Failure::Other(DcsError::Other(
                "no etcd endpoints configured".into(),
            )));
        }
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last = Failure::Unreachable("no etcd endpoint".into());
        let mut refusal = None;
        for k in 0..n {
            let i = (first + k) % n;
            let ep = &endpoints[i];
            let stream =
                match tokio::time::timeout_at(deadline, self.connect(ep, user_timeout)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(f)) => {
                        tracing::debug!(endpoint = %ep.name(), error = ?f, "etcd endpoint failed");
                        match f {
                            Failure::Refusal(_) => refusal = Some(f),
                            f => last = f,
                        }
                        continue;
                    }
                    Err(_) => {
                        self.srv_again();
                        return Err(refusal.unwrap_or_else(|| {
                            Failure::Unreachable(format!(
                                "etcd {}: no connection before the deadline",
                                ep.name()
                            ))
                        }));
                    }
                };
            self.current.store(i, Ordering::Relaxed);
            let name = ep.name();
            let authority = ep.authority();
            let exchange = exchange(
                stream,
                &authority,
                self.auth.as_ref().map(|a| a.header.as_str()),
                method,
                path_and_query,
                body,
            );
            return match tokio::time::timeout_at(deadline, exchange).await {
                Ok(Ok((status, index, bytes))) => match interpret(status, index, &bytes) {
                    Ok(Reply::Refused(e)) if e.code == UNAUTHORIZED => {
                        Err(Failure::Refusal(self.unauthorized(&name, &e)))
                    }
                    Ok(r) => Ok(r),
                    Err(e) => Err(Failure::Other(e)),
                },
                // With TLS 1.3 the server refuses a client certificate
                // after the handshake: its alert ends the exchange.
                Ok(Err(e)) => Err(match (self.tls.as_deref(), tls_error_in(&e)) {
                    (Some(tls), Some(r)) => {
                        Failure::Refusal(format!("etcd {name}: {}", tls.describe(&ep.host, r)))
                    }
                    _ => Failure::Unreachable(format!("etcd {name}: {e}")),
                }),
                // The future, the connection and its socket are dropped
                // here: whatever was still queued is reset away.
                Err(_) => Err(Failure::Unreachable(format!(
                    "etcd {name}: no answer before the deadline"
                ))),
            };
        }
        // Every member refused the connection: the next call starts at
        // the one after the first tried, and asks the SRV names again.
        self.current.store((first + 1) % n, Ordering::Relaxed);
        self.srv_again();
        Err(refusal.unwrap_or(last))
    }

    /// No endpoint answered: with `srv`, the next request asks its names
    /// again (the records may have moved to other members).
    fn srv_again(&self) {
        if self.srv.is_some() {
            self.resolve_srv.store(true, Ordering::Relaxed);
        }
    }

    /// The endpoints in use (for diagnostics and tests).
    pub fn endpoints_in_use(&self) -> Vec<String> {
        crate::sync::lock(&self.endpoints)
            .iter()
            .map(Endpoint::name)
            .collect()
    }

    /// The endpoints to try, asking the SRV names first when due
    /// (`resolve_srv`), within the call's deadline. Records found replace
    /// the endpoints in use; none found fall back to the configured ones,
    /// or, with none configured, fail as `etcd_srv::resolve` says (a
    /// refusal naming `etcd.srv` and the names asked, or an outage), and
    /// the next request asks again.
    async fn endpoints_now(
        &self,
        deadline: Instant,
        retry_timeout: Duration,
    ) -> Result<Vec<Endpoint>, Failure> {
        let Some(srv) = self
            .srv
            .as_ref()
            .filter(|_| self.resolve_srv.load(Ordering::Relaxed))
        else {
            return Ok(crate::sync::lock(&self.endpoints).clone());
        };
        let configured = !self.configured.is_empty();
        let asked = super::etcd_srv::resolve("etcd", srv, configured, retry_timeout);
        let found = match tokio::time::timeout_at(deadline, asked).await {
            Ok(Ok(found)) => found,
            Ok(Err(ConnectError::Refusal(m))) => return Err(Failure::Refusal(m)),
            Ok(Err(ConnectError::Unreachable(m))) => return Err(Failure::Unreachable(m)),
            Ok(Err(ConnectError::Other(m))) => return Err(Failure::Other(DcsError::Other(m))),
            Err(_) => {
                return Err(Failure::Unreachable(format!(
                    "etcd.srv: no answer for {} before the deadline",
                    srv.name
                )));
            }
        };
        let want = match found {
            Some(urls) => {
                let mut eps = Vec::new();
                for u in &urls {
                    match parse_endpoint(u) {
                        // https records (`_etcd-client-ssl`) use the
                        // section's TLS settings, made whenever `srv` is
                        // set (`EtcdSettings::from_config`).
                        Ok(p) if p.https && self.tls.is_none() => {
                            tracing::warn!(endpoint = %u, "etcd.srv: https endpoint without TLS settings, skipped");
                        }
                        Ok(p) => eps.push(p),
                        Err(e) => {
                            tracing::warn!(endpoint = %u, error = %e, "etcd.srv: bad endpoint, skipped")
                        }
                    }
                }
                if eps.is_empty() {
                    self.configured.clone()
                } else {
                    eps
                }
            }
            None => self.configured.clone(),
        };
        self.resolve_srv.store(false, Ordering::Relaxed);
        let mut cur = crate::sync::lock(&self.endpoints);
        if *cur != want {
            tracing::info!(srv = %srv.name, endpoints = ?want.iter().map(Endpoint::name).collect::<Vec<_>>(), "etcd endpoints from DNS SRV");
            *cur = want;
            self.current.store(0, Ordering::Relaxed);
        }
        if cur.is_empty() {
            // Records that gave no usable endpoint, nothing configured.
            self.resolve_srv.store(true, Ordering::Relaxed);
        }
        Ok(cur.clone())
    }

    /// A TCP connection to `ep`, with TLS over it for `https`.
    async fn connect(&self, ep: &Endpoint, user_timeout: Duration) -> Result<Box<dyn Io>, Failure> {
        let stream = open_socket(&ep.host, ep.port, user_timeout)
            .await
            .map_err(|e| Failure::Unreachable(format!("etcd {}: {e}", ep.name())))?;
        if !ep.https {
            return Ok(Box::new(stream));
        }
        let Some(tls) = &self.tls else {
            return Err(Failure::Other(DcsError::Other(format!(
                "etcd endpoint {}: https without TLS settings",
                ep.name()
            ))));
        };
        let server = ServerName::try_from(ep.host.clone()).map_err(|e| {
            Failure::Other(DcsError::Other(format!("etcd endpoint {}: {e}", ep.name())))
        })?;
        match tokio_rustls::TlsConnector::from(tls.http1_config())
            .connect(server, stream)
            .await
        {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(match rustls_error(&e) {
                Some(r) => {
                    Failure::Refusal(format!("etcd {}: {}", ep.name(), tls.describe(&ep.host, r)))
                }
                None => Failure::Unreachable(format!("etcd {}: TLS handshake: {e}", ep.name())),
            }),
        }
    }

    /// etcd's 110 in words, naming the settings.
    fn unauthorized(&self, endpoint: &str, e: &EtcdError) -> String {
        match &self.auth {
            Some(a) => format!(
                "etcd {endpoint}: authentication as user {:?} failed: {} (etcd.username, etcd.password)",
                a.user, e.message
            ),
            None => format!(
                "etcd {endpoint}: etcd asks for a user and password ({}): set etcd.username and etcd.password",
                e.message
            ),
        }
    }
}

/// A byte stream under one HTTP/1.1 exchange: plain TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The rustls error somewhere under `e`, if any.
fn tls_error_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = c.downcast_ref::<std::io::Error>().and_then(rustls_error) {
            return Some(r);
        }
        cur = c.source();
    }
    None
}

/// One TCP connection with the options of the module doc.
async fn open_socket(host: &str, port: u16, user_timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(&stream);
    sock.set_linger(Some(Duration::ZERO))?;
    sock.set_tcp_user_timeout(Some(user_timeout))?;
    Ok(stream)
}

/// The failures of one exchange, all of them "no answer".
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
    #[error("connection closed before the answer")]
    Closed,
}

/// Send one request on `stream` and read the whole answer. The connection
/// is driven here, not in a task of its own: dropping this future drops the
/// socket.
async fn exchange(
    stream: Box<dyn Io>,
    host: &str,
    authorization: Option<&str>,
    method: Method,
    path_and_query: &str,
    body: Option<String>,
) -> Result<(u16, Option<u64>, Bytes), ExchangeError> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let method = match method {
        Method::Get => hyper::Method::GET,
        Method::Put => hyper::Method::PUT,
        Method::Delete => hyper::Method::DELETE,
    };
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(hyper::header::HOST, host);
    if let Some(a) = authorization {
        req = req.header(hyper::header::AUTHORIZATION, a);
    }
    if body.is_some() {
        req = req.header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let talk = async move {
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("x-etcd-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok::<_, ExchangeError>((status, index, bytes))
    };
    tokio::pin!(conn);
    tokio::pin!(talk);
    tokio::select! {
        r = &mut talk => r,
        r = &mut conn => {
            r?;
            // The connection ended; the answer may be complete in `talk`
            // already.
            match tokio::time::timeout(Duration::ZERO, &mut talk).await {
                Ok(r) => r,
                Err(_) => Err(ExchangeError::Closed),
            }
        }
    }
}

/// An HTTP answer as etcd meant it.
pub(crate) fn interpret(status: u16, index: Option<u64>, body: &[u8]) -> Result<Reply, DcsError> {
    if (200..300).contains(&status) {
        return serde_json::from_slice::<Answer>(body)
            .map(|a| Reply::Ok(a, index))
            .map_err(|e| DcsError::Other(format!("etcd answered {status} with bad JSON: {e}")));
    }
    if let Ok(err) = serde_json::from_slice::<EtcdError>(body) {
        return match err.code {
            RAFT_INTERNAL | LEADER_ELECTION => Err(DcsError::Unreachable(format!(
                "etcd: {} ({})",
                err.message, err.code
            ))),
            _ => Ok(Reply::Refused(err)),
        };
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)])
        .trim()
        .to_owned();
    // Not etcd's own error: a proxy, a member without the v2 API. Never
    // read as "no such key": the cluster would look empty.
    match status {
        500..=599 => Err(DcsError::Unreachable(format!(
            "etcd answered {status}: {text}"
        ))),
        404 => Err(DcsError::Other(format!(
            "etcd answered 404 without an etcd error ({text}): is the v2 API enabled (etcd --enable-v2)?"
        ))),
        _ => Err(DcsError::Other(format!("etcd answered {status}: {text}"))),
    }
}

/// `s` with every byte but the unreserved ones and `/` percent-encoded, for
/// a key path.
pub(crate) fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `k=v&...`, form-encoded.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoints: &[&str], credentials: Option<(&str, &str)>) -> EtcdSettings {
        EtcdSettings::plain(
            endpoints.iter().map(|e| (*e).to_owned()).collect(),
            credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
        )
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379").unwrap(),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 2379,
                https: false,
            }
        );
        assert_eq!(parse_endpoint("h").unwrap().port, 2379);
        assert_eq!(parse_endpoint("[::1]:1").unwrap().host, "::1");
        assert_eq!(parse_endpoint("[::1]:1").unwrap().authority(), "[::1]:1");
        let tls = parse_endpoint("https://h:1").unwrap();
        assert!(tls.https);
        assert_eq!(tls.name(), "https://h:1");
        assert!(
            matches!(parse_endpoint("ftp://h:1"), Err(DcsError::Other(m)) if m.contains("http or https"))
        );
        assert!(matches!(
            Http::new(&settings(&[], None)).invalid,
            Some(DcsError::Other(_))
        ));
        // https needs the section's TLS settings (built when an endpoint is
        // https: EtcdSettings::from_config).
        assert!(matches!(
            Http::new(&settings(&["https://h:1"], None)).invalid,
            Some(DcsError::Other(m)) if m.contains("https without TLS")
        ));
    }

    #[test]
    fn credentials_are_sent_as_basic_auth_and_a_refusal_names_the_user() {
        let h = Http::new(&settings(&["h:1"], Some(("pg", "pass:word"))));
        let a = h.auth.as_ref().expect("credentials");
        // base64("pg:pass:word"), as urllib3's make_headers(basic_auth=...).
        assert_eq!(a.header, "Basic cGc6cGFzczp3b3Jk");
        let e = EtcdError {
            code: UNAUTHORIZED,
            message: "The request requires user authentication".into(),
            cause: Some("Insufficient credentials".into()),
            index: Some(0),
        };
        let m = h.unauthorized("http://h:1", &e);
        assert!(m.contains("\"pg\"") && m.contains("etcd.password"), "{m}");
        let none = Http::new(&settings(&["h:1"], None));
        assert!(none.auth.is_none());
        let m = none.unauthorized("http://h:1", &e);
        assert!(m.contains("set etcd.username"), "{m}");
        // As a DcsError a refusal is a configuration error, not an outage.
        assert!(matches!(
            DcsError::from(Failure::Refusal(m)),
            DcsError::Other(_)
        ));
    }

    #[test]
    fn answers_map_to_outcomes_and_error_classes() {
        let ok = interpret(200, None, br#"{"action":"get","node":{"key":"/a","value":"x","modifiedIndex":7,"createdIndex":5}}"#).unwrap();
        match ok {
            Reply::Ok(a, _) => {
                let n = a.node.unwrap();
                assert_eq!((n.modified_index, n.created_index), (7, 5));
                assert_eq!(n.value.as_deref(), Some("x"));
            }
            Reply::Refused(e) => panic!("{e:?}"),
        }
        let missing = interpret(
            404,
            None,
            br#"{"errorCode":100,"message":"Key not found","cause":"/a","index":9}"#,
        )
        .unwrap();
        assert!(matches!(
            missing,
            Reply::Refused(EtcdError {
                code: KEY_NOT_FOUND,
                index: Some(9),
                ..
            })
        ));
        let lost = interpret(
            412,
            None,
            br#"{"errorCode":101,"message":"Compare failed","cause":"[1 != 2]","index":9}"#,
        )
        .unwrap();
        assert!(matches!(
            lost,
            Reply::Refused(EtcdError {
                code: COMPARE_FAILED,
                ..
            })
        ));
        // The cluster cannot answer: unreachable, as a timeout.
        assert!(matches!(
            interpret(
                500,
                None,
                br#"{"errorCode":300,"message":"Raft Internal Error"}"#
            ),
            Err(DcsError::Unreachable(_))
        ));
        assert!(matches!(
            interpret(503, None, b"no leader"),
            Err(DcsError::Unreachable(_))
        ));
        // A member without the v2 API: never "no such key" (an empty
        // cluster a node would bootstrap over).
        assert!(matches!(
            interpret(404, None, b"404 page not found\n"),
            Err(DcsError::Other(m)) if m.contains("--enable-v2")
        ));
        assert!(matches!(
            interpret(200, None, b"not json"),
            Err(DcsError::Other(_))
        ));
    }

    #[test]
    fn leaves_flatten_directories() {
        let a: Answer = serde_json::from_str(
            r#"{"action":"get","node":{"key":"/s/b","dir":true,"nodes":[
                {"key":"/s/b/leader","value":"n1","modifiedIndex":3,"createdIndex":3},
                {"key":"/s/b/members","dir":true,"nodes":[
                    {"key":"/s/b/members/n1","value":"{}","modifiedIndex":2,"createdIndex":2}]}]}}"#,
        )
        .unwrap();
        let mut keys: Vec<&str> = a
            .node
            .as_ref()
            .unwrap()
            .leaves()
            .iter()
            .map(|n| n.key.as_str())
            .collect();
        keys.sort();
        assert_eq!(keys, ["/s/b/leader", "/s/b/members/n1"]);
    }

    #[test]
    fn paths_and_forms_are_encoded() {
        assert_eq!(
            encode_path("/service/b/members/a b"),
            "/service/b/members/a%20b"
        );
        assert_eq!(encode_path("/x/ü"), "/x/%C3%BC");
        assert_eq!(
            form(&[("value", "a&b c"), ("ttl", "30")]),
            "value=a%26b+c&ttl=30"
        );
    }
}
