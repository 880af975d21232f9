//! The TCP connections under the etcd client, made so that a request we gave
//! up on can never take effect later (docs/dcs.md, "Abandoned requests").
//!
//! etcd-client's own connector keeps the kernel's defaults: a request still
//! queued when the caller stops waiting stays in the socket's send queue, and
//! the kernel keeps retransmitting it (for minutes) even after the client has
//! closed the socket. Once the path to etcd is back, etcd receives it and
//! acts on it: a keep-alive the node abandoned at its deadline refreshes the
//! lease seconds later (issue 12 §4). Every socket made here therefore has
//! * `SO_LINGER` 0: closing it resets the connection and discards whatever is
//!   still queued, instead of a graceful close that keeps sending it;
//! * `TCP_USER_TIMEOUT` = `retry_timeout`: data unacknowledged that long makes
//!   the kernel drop the connection and its queue, even while some other
//!   user (the watch) still holds it open;
//! * TCP keep-alive ([`keepalive`]): a connection that died silently is
//!   dropped too, though nothing is queued on it (an idle watch's).
//!
//! Bytes etcd's host has already acknowledged cannot be recalled; see the
//! docs for what that leaves (delays inside the network or a frozen etcd).
//!
//! TLS (`https` endpoints) runs over that same socket (tokio-rustls, ring):
//! the TLS stream owns it, so dropping the connection still resets it. The
//! handshake's failures, and etcd's refusal of the client certificate or
//! of the user and password, are reported naming the setting they point at
//! (`etcd_tls`), as [`Refusal`]s: configuration errors, not outages.

use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll};
use std::time::Duration;

use etcd_client::{Channel, Client, ConnectOptions};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;
use tonic::transport::Endpoint;

use super::DcsError;
use super::etcd_tls::{EtcdTls, EtcdTlsError, rustls_error};
use crate::config::Etcd;
use crate::sync;

/// How pgpilot reaches etcd: the endpoints (tried in turn), the RBAC user,
/// and TLS for `https` endpoints. Built from the configuration section
/// ([`EtcdSettings::from_config`]), which reads the TLS files once.
#[derive(Debug, Clone, Default)]
pub struct EtcdSettings {
    /// `http(s)://host:port`, in the order they are tried.
    pub endpoints: Vec<String>,
    /// User and password for etcd's RBAC: the client authenticates on every
    /// new connection and again when etcd says the token expired.
    pub credentials: Option<(String, String)>,
    /// For `https` endpoints.
    pub tls: Option<Arc<EtcdTls>>,
    /// DNS SRV discovery (`srv`, `srv_suffix`): asked at each new
    /// connection; its endpoints, when it has some, come before `endpoints`.
    pub srv: Option<SrvSettings>,
}

/// `srv` and `srv_suffix` of the section (`etcd_srv`).
#[derive(Debug, Clone)]
pub struct SrvSettings {
    /// The domain: `_etcd-client-ssl._tcp.<name>` and so on are asked.
    pub name: String,
    pub suffix: Option<String>,
    /// The name server; `None`: the first of `/etc/resolv.conf`.
    pub nameserver: Option<std::net::SocketAddr>,
}

impl EtcdSettings {
    /// The settings of an `etcd3` (or `etcd`) section named `section`: TLS is
    /// set up when an endpoint is `https`, from `cacert`, `cert` and `key`.
    pub fn from_config(section: &str, e: &Etcd) -> Result<EtcdSettings, EtcdTlsError> {
        let endpoints = e.endpoints();
        // SRV may name https endpoints (`_etcd-client-ssl`): TLS is ready
        // whenever it is used.
        let tls = if e.srv.is_some() || endpoints.iter().any(|e| e.starts_with("https://")) {
            Some(Arc::new(EtcdTls::from_config(section, e)?))
        } else {
            None
        };
        Ok(EtcdSettings {
            endpoints,
            credentials: e.credentials(),
            tls,
            srv: e
                .srv
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|name| SrvSettings {
                    name: name.clone(),
                    suffix: e.srv_suffix.clone(),
                    nameserver: None,
                }),
        })
    }

    /// Plain endpoints, with or without a user (tests, `pgpilotctl --dcs-url`).
    pub fn plain(endpoints: Vec<String>, credentials: Option<(String, String)>) -> EtcdSettings {
        EtcdSettings {
            endpoints,
            credentials,
            tls: None,
            srv: None,
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// No answer (refused, timed out, reset): try again, elsewhere.
    Unreachable(String),
    /// etcd answered and refused us: TLS (its certificate, or ours) or the
    /// user and password. A configuration error; the message names it.
    Refusal(String),
    /// Anything else etcd answered.
    Other(String),
}

impl From<ConnectError> for DcsError {
    fn from(e: ConnectError) -> DcsError {
        match e {
            ConnectError::Unreachable(m) => DcsError::Unreachable(m),
            ConnectError::Refusal(m) | ConnectError::Other(m) => DcsError::Other(m),
        }
    }
}

/// How long one endpoint is given when there are `n`: `retry_timeout`
/// shared among them, at least a second each (Patroni's
/// `_calculate_timeouts`), never more than `retry_timeout`.
pub(crate) fn per_endpoint(retry_timeout: Duration, n: usize) -> Duration {
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    (retry_timeout / n)
        .max(Duration::from_secs(1))
        .min(retry_timeout)
}

/// Connect to the first of the endpoints, starting at `first` and going
/// round, that answers within its share of `retry_timeout`
/// ([`per_endpoint`]). Returns the client and the index of the endpoint it
/// is connected to; else the last endpoint's failure, a refusal first (it
/// says what to fix).
pub(crate) async fn connect(
    settings: &EtcdSettings,
    endpoints: &[String],
    first: usize,
    options: ConnectOptions,
    retry_timeout: Duration,
) -> Result<(Client, usize), ConnectError> {
    if endpoints.is_empty() {
        return Err(ConnectError::Other("no etcd endpoints configured".into()));
    }
    let connect_timeout = per_endpoint(retry_timeout, endpoints.len());
    let mut last = None;
    let mut refusal = None;
    for k in 0..endpoints.len() {
        let i = (first + k) % endpoints.len();
        match connect_one(
            settings,
            &endpoints[i],
            options.clone(),
            connect_timeout,
            retry_timeout,
        )
        .await
        {
            Ok(c) => return Ok((c, i)),
            Err(e) => {
                tracing::debug!(endpoint = %endpoints[i], error = ?e, "etcd endpoint failed");
                match e {
                    ConnectError::Refusal(_) => refusal = Some(e),
                    e => last = Some(e),
                }
            }
        }
    }
    Err(refusal
        .or(last)
        .unwrap_or_else(|| ConnectError::Unreachable("no etcd endpoint".into())))
}

/// `scheme://host:port` for an endpoint given with or without a scheme;
/// `https` needs TLS settings.
fn endpoint_url(endpoint: &str, tls: bool) -> Result<String, ConnectError> {
    if endpoint.starts_with("https://") {
        if !tls {
            return Err(ConnectError::Other(format!(
                "etcd endpoint {endpoint}: https without TLS settings"
            )));
        }
        return Ok(endpoint.to_owned());
    }
    if endpoint.starts_with("http://") {
        Ok(endpoint.to_owned())
    } else {
        Ok(format!("http://{endpoint}"))
    }
}

/// The error and its sources, one line (tonic's transport error says only
/// "transport error" by itself).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

/// The first TLS failure seen on a connection, described (`EtcdTls::describe`).
type TlsFailure = Arc<StdMutex<Option<String>>>;

async fn connect_one(
    settings: &EtcdSettings,
    endpoint: &str,
    options: ConnectOptions,
    connect_timeout: Duration,
    retry_timeout: Duration,
) -> Result<Client, ConnectError> {
    let url = endpoint_url(endpoint, settings.tls.is_some())?;
    let ep = Endpoint::from_shared(url)
        .map_err(|e| ConnectError::Other(format!("etcd endpoint {endpoint}: {e}")))?
        .connect_timeout(connect_timeout);
    let failure: TlsFailure = Arc::default();
    let tls = settings.tls.clone();
    let seen = failure.clone();
    let connector = tower::service_fn(move |uri: Uri| {
        open_socket(uri, retry_timeout, tls.clone(), seen.clone())
    });
    let refused = |failure: &TlsFailure| {
        sync::lock(failure)
            .clone()
            .map(|m| ConnectError::Refusal(format!("etcd endpoint {endpoint}: {m}")))
    };
    let channel = match ep.connect_with_connector(connector).await {
        Ok(c) => c,
        Err(e) => {
            return Err(refused(&failure).unwrap_or_else(|| {
                ConnectError::Unreachable(format!("etcd endpoint {endpoint}: {}", chain(&e)))
            }));
        }
    };
    let with_user = match &settings.credentials {
        Some((u, p)) => options
            .clone()
            .with_user(u.clone(), p.clone())
            .with_auto_token_refresh(true),
        None => options.clone(),
    };
    match Client::from_channel(Channel::Tonic(channel.clone()), Some(with_user)).await {
        Ok(c) => Ok(c),
        Err(e) if settings.credentials.is_some() && auth_not_enabled(&e) => {
            // As Patroni: credentials for an etcd without RBAC are not an
            // error; the requests go without a token.
            tracing::info!(endpoint, "etcd authentication is not enabled");
            Client::from_channel(Channel::Tonic(channel), Some(options))
                .await
                .map_err(|e| connect_failure(endpoint, &e, &failure, None))
        }
        Err(e) => Err(connect_failure(
            endpoint,
            &e,
            &failure,
            settings.credentials.as_ref().map(|(u, _)| u.as_str()),
        )),
    }
}

/// The failure of the first request on a new connection (the
/// authentication, when there is a user): a TLS failure seen on the
/// connection, a refused user, or what the request's error says.
fn connect_failure(
    endpoint: &str,
    e: &etcd_client::Error,
    failure: &TlsFailure,
    user: Option<&str>,
) -> ConnectError {
    if let Some(m) = sync::lock(failure).clone() {
        return ConnectError::Refusal(format!("etcd endpoint {endpoint}: {m}"));
    }
    if let (Some(user), Some(why)) = (user, auth_refused(e)) {
        return ConnectError::Refusal(format!(
            "etcd endpoint {endpoint}: authentication as user {user:?} failed: {why}"
        ));
    }
    match super::etcd::classify(e) {
        DcsError::Unreachable(m) => {
            ConnectError::Unreachable(format!("etcd endpoint {endpoint}: {m}"))
        }
        DcsError::Other(m) => ConnectError::Other(format!("etcd endpoint {endpoint}: {m}")),
    }
}

/// etcd's answer to credentials it does not take (a wrong password, an
/// unknown user), as etcd words it.
fn auth_refused(e: &etcd_client::Error) -> Option<String> {
    match e {
        etcd_client::Error::GRpcStatus(s)
            if s.message().contains("authentication failed")
                || s.message().contains("user name is empty")
                || s.message().contains("user name not found") =>
        {
            Some(s.message().to_owned())
        }
        _ => None,
    }
}

fn auth_not_enabled(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("authentication is not enabled"))
}

/// A byte stream under the HTTP/2 connection: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// TCP keep-alive for a connection to etcd: a probe after `retry_timeout / 2`
/// of silence (at least 1 s, the kernel's unit) and again as often.
///
/// Why: an idle cluster's watch connection carries nothing for minutes, and
/// the watch's progress requests are put off while the same server answers
/// our renewals (`View::answered_by`), so a watch connection that died
/// silently (a middlebox that dropped its state, a host gone without a
/// reset) would otherwise go unnoticed. The probes are answered by etcd's
/// kernel, waking no process on either side; with `TCP_USER_TIMEOUT` set,
/// the kernel drops the connection once a probe has gone unanswered and
/// nothing was heard for `retry_timeout`: within about `retry_timeout` of
/// the last answer (1 s probes: 2 s), the watch then reports it lost.
fn keepalive(retry_timeout: Duration) -> socket2::TcpKeepalive {
    let every = Duration::from_secs((retry_timeout / 2).as_secs().max(1));
    socket2::TcpKeepalive::new()
        .with_time(every)
        .with_interval(every)
        .with_retries(2)
}

/// What every socket to etcd gets (module doc, [`keepalive`]).
fn tune(stream: &TcpStream, retry_timeout: Duration) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    sock.set_linger(Some(Duration::ZERO))?;
    sock.set_tcp_user_timeout(Some(retry_timeout))?;
    sock.set_tcp_keepalive(&keepalive(retry_timeout))
}

/// One TCP connection to `uri`'s host and port with the options above,
/// with TLS over it for an `https` URI.
async fn open_socket(
    uri: Uri,
    retry_timeout: Duration,
    tls: Option<Arc<EtcdTls>>,
    failure: TlsFailure,
) -> std::io::Result<TokioIo<Box<dyn Io>>> {
    let host = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .ok_or_else(|| std::io::Error::other(format!("no host in {uri}")))?;
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(2379);
    let stream = TcpStream::connect((host.as_str(), port)).await?;
    tune(&stream, retry_timeout)?;
    if !https {
        return Ok(TokioIo::new(Box::new(stream)));
    }
    let tls = tls.ok_or_else(|| std::io::Error::other("https without TLS settings"))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host}: {e}"))
    })?;
    let connector = tokio_rustls::TlsConnector::from(tls.config());
    let mut stream = match connector.connect(name, stream).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(r) = rustls_error(&e) {
                *sync::lock(&failure) = Some(tls.describe(&host, r));
            }
            return Err(e);
        }
    };
    // With TLS 1.3 the server checks our certificate after our side of the
    // handshake finished, and refuses it with an alert. Read its first
    // bytes (an HTTP/2 server speaks first: its SETTINGS) before sending
    // anything, so that the refusal is read here, named, rather than lost
    // to the reset its close would send once our requests sit unread in
    // its buffer. (The connection's connect timeout bounds this read.)
    let mut first = vec![0u8; 1024];
    match tokio::io::AsyncReadExt::read(&mut stream, &mut first).await {
        Ok(0) => {
            *sync::lock(&failure) = Some(match &tls.identity_name() {
                Some(id) => format!("TLS: etcd closed the connection after the handshake: did it refuse the client certificate {id}?"),
                None => "TLS: etcd closed the connection after the handshake: does it ask for a client certificate?".to_owned(),
            });
            Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
        }
        Ok(n) => {
            first.truncate(n);
            Ok(TokioIo::new(Box::new(Watched {
                inner: stream,
                first,
                tls,
                host,
                failure,
            })))
        }
        Err(e) => {
            if let Some(r) = rustls_error(&e) {
                *sync::lock(&failure) = Some(tls.describe(&host, r));
            }
            Err(e)
        }
    }
}

/// A TLS stream that records the first TLS failure after the handshake:
/// with TLS 1.3 the server refuses a client certificate only after the
/// client finished its handshake, by an alert the first read returns.
struct Watched<S> {
    inner: S,
    /// What the server sent first, read before the connection was handed
    /// over; served before anything else.
    first: Vec<u8>,
    tls: Arc<EtcdTls>,
    host: String,
    failure: TlsFailure,
}

impl<S> Watched<S> {
    fn note<T>(&self, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r
            && let Some(tls) = rustls_error(e)
        {
            sync::lock(&self.failure).get_or_insert_with(|| self.tls.describe(&self.host, tls));
        }
        r
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.first.is_empty() {
            let n = self.first.len().min(buf.remaining());
            buf.put_slice(&self.first[..n]);
            self.first.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(r)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            endpoint_url("127.0.0.1:2379", false).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(endpoint_url("http://h:1", false).unwrap(), "http://h:1");
        assert_eq!(endpoint_url("https://h:1", true).unwrap(), "https://h:1");
        assert!(
            matches!(endpoint_url("https://h:1", false), Err(ConnectError::Other(m)) if m.contains("https"))
        );
    }

    #[tokio::test]
    async fn sockets_drop_what_is_queued_and_probe_a_silent_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        for (rt, probe) in [(10, 5), (3, 1), (1, 1)] {
            tune(&stream, Duration::from_secs(rt)).unwrap();
            let sock = socket2::SockRef::from(&stream);
            assert_eq!(sock.linger().unwrap(), Some(Duration::ZERO));
            assert_eq!(
                sock.tcp_user_timeout().unwrap(),
                Some(Duration::from_secs(rt))
            );
            assert!(sock.keepalive().unwrap(), "rt {rt}: no keep-alive");
            assert_eq!(
                sock.tcp_keepalive_time().unwrap(),
                Duration::from_secs(probe)
            );
            assert_eq!(
                sock.tcp_keepalive_interval().unwrap(),
                Duration::from_secs(probe)
            );
        }
    }

    #[test]
    fn each_endpoint_gets_its_share_of_retry_timeout_at_least_a_second() {
        let s = Duration::from_secs;
        assert_eq!(per_endpoint(s(10), 1), s(10));
        assert_eq!(per_endpoint(s(9), 3), s(3));
        assert_eq!(per_endpoint(s(2), 3), s(1));
        // Never more than retry_timeout itself.
        assert_eq!(
            per_endpoint(Duration::from_millis(500), 3),
            Duration::from_millis(500)
        );
        assert_eq!(per_endpoint(s(4), 0), s(4));
    }

    #[test]
    fn settings_set_up_tls_only_for_https_endpoints() {
        let e: Etcd =
            serde_yaml_ng::from_str("hosts: [a:1, b:2]\ncacert: /nonexistent\n").expect("section");
        let s = EtcdSettings::from_config("etcd3", &e).expect("no TLS needed");
        assert!(s.tls.is_none());
        let e: Etcd =
            serde_yaml_ng::from_str("hosts: [a:1]\nprotocol: https\ncacert: /nonexistent\n")
                .expect("section");
        let err = EtcdSettings::from_config("etcd3", &e).expect_err("missing CA file");
        assert!(err.to_string().contains("etcd3.cacert"), "{err}");
        assert!(err.to_string().contains("/nonexistent"), "{err}");
    }
}
