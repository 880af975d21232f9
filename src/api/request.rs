//! What every request goes through before its route (an actix-web
//! middleware, innermost): the lag parameter checked, the body of an
//! unsafe method read within its limits, and the request's body stream held
//! until the reply is sent.

use std::collections::BTreeMap;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, web};
use futures_util::StreamExt;

use crate::api::reply::error_page;
use crate::api::server::REQUEST_ARRIVAL_TIMEOUT;
use crate::api::{auth, health};

/// The body of a POST, PUT, PATCH or DELETE, read before routing (see
/// [`prepare`]); routes of those methods take it as `web::ReqData`.
#[derive(Debug, Clone)]
pub(crate) struct RequestBody(pub(crate) web::Bytes);

/// The middleware. Every unsafe method has its body read first, whatever
/// its path: a body too large gets 413 and one that does not arrive in
/// time 408 before the route is looked at, as before a 501.
pub async fn prepare(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let query = parse_query(req.query_string());
    if let Some(lag) = health::unparsable_lag(&query) {
        tracing::warn!(
            event = crate::events::API_LAG_UNPARSABLE,
            lag,
            path = %req.path(),
            "the lag parameter is neither an integer nor a number with a unit (B, kB, MB, GB, TB); no lag limit applies"
        );
    }
    let m = req.method();
    let unsafe_method =
        *m == Method::POST || *m == Method::PUT || *m == Method::PATCH || *m == Method::DELETE;
    let mut payload = req.take_payload();
    // GET, HEAD, OPTIONS never use a body; CONNECT and other methods get
    // 501. An unread body closes the connection after the reply.
    let resp = if unsafe_method {
        match read_body(&mut payload).await {
            Ok(b) => {
                req.extensions_mut().insert(RequestBody(b));
                next.call(req).await?
            }
            Err(resp) => req.into_response(resp),
        }
    } else {
        next.call(req).await?
    };
    Ok(resp.map_body(|_, body| match body.try_into_bytes() {
        Ok(bytes) => BoxBody::new(HoldingBody {
            len: bytes.len() as u64,
            bytes: Some(bytes),
            _request_body: payload,
        }),
        // Every reply here is built from bytes; anything else goes as is.
        Err(body) => body,
    }))
}

/// The query parameters of a request, as [`parse_query`] reads them.
pub(crate) fn query(req: &actix_web::HttpRequest) -> BTreeMap<String, String> {
    parse_query(req.query_string())
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

/// Reads the request body, at most [`auth::BODY_LIMIT`] bytes, within
/// [`REQUEST_ARRIVAL_TIMEOUT`].
async fn read_body(payload: &mut Payload) -> Result<web::Bytes, HttpResponse> {
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
                event = crate::events::API_REQUEST_TIMEOUT,
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
    _request_body: Payload,
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
}
