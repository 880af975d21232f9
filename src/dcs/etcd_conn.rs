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
//!   user (the watch) still holds it open.
//!
//! Bytes etcd's host has already acknowledged cannot be recalled; see the
//! docs for what that leaves (delays inside the network or a frozen etcd).

use std::time::Duration;

use etcd_client::{Channel, Client, ConnectOptions};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;
use tonic::transport::Endpoint;

use super::DcsError;

/// Connect to the first of `endpoints`, starting at `first` and going round,
/// that answers within `connect_timeout`. Returns the client and the index of
/// the endpoint it is connected to.
pub(crate) async fn connect(
    endpoints: &[String],
    first: usize,
    options: ConnectOptions,
    connect_timeout: Duration,
    retry_timeout: Duration,
) -> Result<(Client, usize), DcsError> {
    if endpoints.is_empty() {
        return Err(DcsError::Other("no etcd endpoints configured".into()));
    }
    let mut last = None;
    for k in 0..endpoints.len() {
        let i = (first + k) % endpoints.len();
        match connect_one(
            &endpoints[i],
            options.clone(),
            connect_timeout,
            retry_timeout,
        )
        .await
        {
            Ok(c) => return Ok((c, i)),
            Err(e) => {
                tracing::debug!(endpoint = %endpoints[i], error = %e, "etcd endpoint unreachable");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| DcsError::Unreachable("no etcd endpoint".into())))
}

/// `http://host:port` for an endpoint given with or without a scheme.
fn endpoint_url(endpoint: &str) -> Result<String, DcsError> {
    if endpoint.starts_with("https://") {
        return Err(DcsError::Other(format!(
            "etcd endpoint {endpoint}: https is not supported (use http)"
        )));
    }
    if endpoint.starts_with("http://") {
        Ok(endpoint.to_owned())
    } else {
        Ok(format!("http://{endpoint}"))
    }
}

async fn connect_one(
    endpoint: &str,
    options: ConnectOptions,
    connect_timeout: Duration,
    retry_timeout: Duration,
) -> Result<Client, DcsError> {
    let url = endpoint_url(endpoint)?;
    let ep = Endpoint::from_shared(url)
        .map_err(|e| DcsError::Other(format!("etcd endpoint {endpoint}: {e}")))?
        .connect_timeout(connect_timeout);
    let connector = tower::service_fn(move |uri: Uri| open_socket(uri, retry_timeout));
    let channel = ep
        .connect_with_connector(connector)
        .await
        .map_err(|e| DcsError::Unreachable(format!("etcd endpoint {endpoint}: {e}")))?;
    Client::from_channel(Channel::Tonic(channel), Some(options))
        .await
        .map_err(|e| super::etcd::classify(&e))
}

/// One TCP connection to `uri`'s host and port with the options above.
async fn open_socket(uri: Uri, retry_timeout: Duration) -> std::io::Result<TokioIo<TcpStream>> {
    let host = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .ok_or_else(|| std::io::Error::other(format!("no host in {uri}")))?;
    let port = uri.port_u16().unwrap_or(2379);
    let stream = TcpStream::connect((host.as_str(), port)).await?;
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(&stream);
    sock.set_linger(Some(Duration::ZERO))?;
    sock.set_tcp_user_timeout(Some(retry_timeout))?;
    Ok(TokioIo::new(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            endpoint_url("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(endpoint_url("http://h:1").unwrap(), "http://h:1");
        assert!(
            matches!(endpoint_url("https://h:1"), Err(DcsError::Other(m)) if m.contains("https"))
        );
    }
}
