//! The shapes of the REST API's replies: JSON documents, Patroni's plain
//! texts (sent as `text/html`, as Patroni does), bare status codes, and
//! Python's `send_error` page for framework errors.

use actix_web::HttpResponse;
use actix_web::http::{Method, StatusCode};
use serde_json::Value;

/// `v` as compact JSON (what `Value`'s `Display` writes). Written straight
/// into a byte buffer: `to_string` goes through `fmt::Write`, which was 7 %
/// of a health check's CPU under load (docs/rest-api.md, "Health checks and
/// PostgreSQL").
pub(crate) fn json_reply(code: u16, v: &Value) -> HttpResponse {
    HttpResponse::build(http_status(code))
        .content_type("application/json")
        .body(serde_json::to_vec(v).unwrap_or_else(|_| v.to_string().into_bytes()))
}

pub(crate) fn text_reply(code: u16, text: &str) -> HttpResponse {
    HttpResponse::build(http_status(code))
        .content_type("text/html")
        .body(text.to_owned())
}

pub(crate) fn status_only(code: u16) -> HttpResponse {
    HttpResponse::build(http_status(code)).finish()
}

fn http_status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Python's `send_error` page, which is what Patroni sends for framework
/// errors; patronictl looks for the explanation text of a 501.
pub(crate) fn error_page(code: u16, message: &str) -> HttpResponse {
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

pub(crate) fn not_implemented(m: &Method) -> HttpResponse {
    error_page(501, &format!("Unsupported method ('{}')", m.as_str()))
}
