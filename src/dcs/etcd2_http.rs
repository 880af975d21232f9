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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::DcsError;

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
}

fn parse_endpoint(s: &str) -> Result<Endpoint, DcsError> {
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|e| DcsError::Other(format!("etcd endpoint {s:?}: {e}")))?;
    if url.scheme() != "http" {
        return Err(DcsError::Other(format!(
            "etcd endpoint {s}: only http is supported for the v2 API"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| DcsError::Other(format!("etcd endpoint {s:?}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(Endpoint {
        host,
        port: url.port().unwrap_or(2379),
    })
}

/// The members to ask, and which one answered last.
pub(crate) struct Http {
    endpoints: Vec<Endpoint>,
    /// Bad endpoints, reported by every call (a configuration error).
    invalid: Option<DcsError>,
    current: AtomicUsize,
}

impl Http {
    pub fn new(endpoints: &[String]) -> Http {
        let mut parsed = Vec::new();
        let mut invalid = None;
        for e in endpoints {
            match parse_endpoint(e) {
                Ok(p) => parsed.push(p),
                Err(err) => invalid = Some(err),
            }
        }
        if parsed.is_empty() && invalid.is_none() {
            invalid = Some(DcsError::Other("no etcd endpoints configured".into()));
        }
        Http {
            endpoints: parsed,
            invalid,
            current: AtomicUsize::new(0),
        }
    }

    /// Send one request to `path_and_query` (already encoded), the form
    /// `body` for a PUT, and read the whole answer, by `deadline`. A member
    /// that refuses the connection is skipped for the next, while time
    /// remains; once a request is sent it is not sent again.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<String>,
        deadline: Instant,
        user_timeout: Duration,
    ) -> Result<Reply, DcsError> {
        if let Some(e) = &self.invalid {
            return Err(e.clone());
        }
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last = DcsError::Unreachable("no etcd endpoint".into());
        for k in 0..n {
            let i = (first + k) % n;
            let ep = &self.endpoints[i];
            let stream = match tokio::time::timeout_at(
                deadline,
                open_socket(&ep.host, ep.port, user_timeout),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(host = %ep.host, port = ep.port, error = %e, "etcd endpoint unreachable");
                    last = DcsError::Unreachable(format!("etcd {}:{}: {e}", ep.host, ep.port));
                    continue;
                }
                Err(_) => {
                    return Err(DcsError::Unreachable(format!(
                        "etcd {}:{}: no connection before the deadline",
                        ep.host, ep.port
                    )));
                }
            };
            self.current.store(i, Ordering::Relaxed);
            let host = format!("{}:{}", ep.host, ep.port);
            let exchange = exchange(stream, &host, method, path_and_query, body);
            return match tokio::time::timeout_at(deadline, exchange).await {
                Ok(Ok((status, index, bytes))) => interpret(status, index, &bytes),
                Ok(Err(e)) => Err(DcsError::Unreachable(format!("etcd {host}: {e}"))),
                // The future, the connection and its socket are dropped
                // here: whatever was still queued is reset away.
                Err(_) => Err(DcsError::Unreachable(format!(
                    "etcd {host}: no answer before the deadline"
                ))),
            };
        }
        // Every member refused the connection: the next call starts at
        // the one after the first tried.
        self.current.store((first + 1) % n, Ordering::Relaxed);
        Err(last)
    }
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
    stream: TcpStream,
    host: &str,
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

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:2379").unwrap(),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 2379
            }
        );
        assert_eq!(parse_endpoint("h").unwrap().port, 2379);
        assert_eq!(parse_endpoint("[::1]:1").unwrap().host, "::1");
        assert!(
            matches!(parse_endpoint("https://h:1"), Err(DcsError::Other(m)) if m.contains("http"))
        );
        assert!(matches!(Http::new(&[]).invalid, Some(DcsError::Other(_))));
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
