//! `restapi.http_extra_headers` and `restapi.https_extra_headers`: header
//! name → value added to every response, as Patroni does; the https ones
//! only on an HTTPS listener, after the http ones (a name in both: the
//! https value wins). A configured header replaces one of the same name
//! the API would send.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, web};

use crate::api::AccessPolicy;
use crate::config::RestApi;
use crate::sync;

/// Why a configured header cannot be sent. Validation reports the same
/// (`crate::config::headers::problem`) with the key's line, so a running
/// daemon only ever skips what a reload slipped past it.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("{0}")]
    Refused(String),
    #[error("{name:?}: {source}")]
    Name {
        name: String,
        #[source]
        source: actix_web::http::header::InvalidHeaderName,
    },
    #[error("{name}: {source}")]
    Value {
        name: String,
        #[source]
        source: actix_web::http::header::InvalidHeaderValue,
    },
}

/// One configured header, checked (`crate::config::headers::problem`)
/// and built.
pub fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), HeaderError> {
    if let Some(p) = crate::config::headers::problem(name, value) {
        return Err(HeaderError::Refused(p));
    }
    let n = HeaderName::from_bytes(name.as_bytes()).map_err(|source| HeaderError::Name {
        name: name.to_owned(),
        source,
    })?;
    let v = HeaderValue::from_str(value).map_err(|source| HeaderError::Value {
        name: name.to_owned(),
        source,
    })?;
    Ok((n, v))
}

fn parse_all(map: Option<&BTreeMap<String, String>>) -> Vec<(HeaderName, HeaderValue)> {
    // Validation refuses a configuration with a bad entry; skip it here.
    map.into_iter()
        .flatten()
        .filter_map(|(n, v)| parse_header(n, v).ok())
        .collect()
}

#[derive(Debug, Default)]
struct Lists {
    http: Vec<(HeaderName, HeaderValue)>,
    https: Vec<(HeaderName, HeaderValue)>,
}

/// The configured headers; cheap to clone, swapped by a reload.
#[derive(Debug, Clone, Default)]
pub struct ExtraHeaders(Arc<RwLock<Lists>>);

impl ExtraHeaders {
    pub fn from_restapi(r: &RestApi) -> ExtraHeaders {
        let h = ExtraHeaders::default();
        h.update(r);
        h
    }

    pub fn update(&self, r: &RestApi) {
        let new = Lists {
            http: parse_all(r.http_extra_headers.as_ref()),
            https: parse_all(r.https_extra_headers.as_ref()),
        };
        *sync::write(&self.0) = new;
    }

    /// The headers of a response on a plain (`secure` false) or HTTPS
    /// listener, in the order they apply.
    pub fn for_listener(&self, secure: bool) -> Vec<(HeaderName, HeaderValue)> {
        let lists = sync::read(&self.0);
        let mut all = lists.http.clone();
        if secure {
            all.extend(lists.https.iter().cloned());
        }
        all
    }
}

/// The middleware, outermost (refusals of the access check carry the
/// headers too): reads the [`ExtraHeaders`] of the app's [`AccessPolicy`].
pub async fn add_extra_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let secure = req.conn_data::<crate::api::listener::OverTls>().is_some();
    let headers = req
        .app_data::<web::Data<AccessPolicy>>()
        .map(|p| p.extra_headers().for_listener(secure))
        .unwrap_or_default();
    let mut res = next.call(req).await?;
    for (n, v) in headers {
        res.headers_mut().insert(n, v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{App, HttpResponse, test as atest};

    fn restapi(http: &[(&str, &str)], https: &[(&str, &str)]) -> RestApi {
        let map = |l: &[(&str, &str)]| {
            (!l.is_empty()).then(|| {
                l.iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        let mut r: RestApi = serde_json::from_value(serde_json::json!({
            "listen": ":8008", "connect_address": "h:8008"
        }))
        .unwrap();
        r.http_extra_headers = map(http);
        r.https_extra_headers = map(https);
        r
    }

    #[test]
    fn names_and_values_are_checked() {
        assert!(parse_header("X-Frame-Options", "SAMEORIGIN").is_ok());
        assert!(parse_header("Strict-Transport-Security", "max-age=31536000").is_ok());
        let e = parse_header("Bad Name", "x").unwrap_err().to_string();
        assert!(e.contains("not a valid HTTP header name"), "{e}");
        assert!(parse_header("", "x").is_err());
        let e = parse_header("X-A", "line\nbreak").unwrap_err().to_string();
        assert!(e.contains("not a valid HTTP header value"), "{e}");
        assert!(parse_header("X-A", "caf\u{e9}").is_err());
        let e = parse_header("Content-Length", "1").unwrap_err().to_string();
        assert!(e.contains("the server manages this header"), "{e}");
        let r = restapi(&[("X-A", "1"), ("Bad:", "2")], &[]);
        assert_eq!(
            crate::config::headers::check(r.http_extra_headers.as_ref()).len(),
            1
        );
        assert!(crate::config::headers::check(None).is_empty());
    }

    /// The configuration's check accepts exactly what the HTTP types do
    /// (after it: names not reserved, values ASCII).
    #[test]
    fn config_check_agrees_with_the_http_types() {
        for b in 0u8..=255 {
            let c = char::from(b).to_string();
            let name = format!("X{c}");
            let http_ok = HeaderName::from_bytes(name.as_bytes()).is_ok();
            assert_eq!(
                crate::config::headers::problem(&name, "v").is_none(),
                http_ok && name.is_ascii(),
                "name {name:?}"
            );
            let value = format!("a{c}b");
            let http_ok = HeaderValue::from_str(&value).is_ok() && value.is_ascii();
            assert_eq!(
                crate::config::headers::problem("X-A", &value).is_none(),
                http_ok,
                "value {value:?}"
            );
        }
    }

    #[test]
    fn https_headers_only_on_https_after_the_http_ones() {
        let h = ExtraHeaders::from_restapi(&restapi(
            &[("X-Both", "http"), ("X-Http", "1")],
            &[
                ("X-Both", "https"),
                ("Strict-Transport-Security", "max-age=1"),
            ],
        ));
        let names = |v: Vec<(HeaderName, HeaderValue)>| {
            v.into_iter()
                .map(|(n, v)| format!("{n}={}", v.to_str().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(h.for_listener(false)), ["x-both=http", "x-http=1"]);
        assert_eq!(
            names(h.for_listener(true)),
            [
                "x-both=http",
                "x-http=1",
                "strict-transport-security=max-age=1",
                "x-both=https"
            ]
        );
        // A reload replaces them.
        h.update(&restapi(&[], &[]));
        assert!(h.for_listener(true).is_empty());
    }

    #[actix_web::test]
    async fn middleware_adds_them_to_every_response() {
        let policy = AccessPolicy::from_restapi(&restapi(
            &[("X-Frame-Options", "DENY"), ("Content-Type", "text/x-test")],
            &[("Strict-Transport-Security", "max-age=1")],
        ));
        let app = atest::init_service(
            App::new()
                .app_data(web::Data::new(policy.clone()))
                .wrap(actix_web::middleware::from_fn(add_extra_headers))
                .default_service(web::to(|| async {
                    HttpResponse::ServiceUnavailable()
                        .content_type("application/json")
                        .body("{}")
                })),
        )
        .await;
        let r =
            atest::call_service(&app, atest::TestRequest::get().uri("/health").to_request()).await;
        assert_eq!(r.status().as_u16(), 503);
        assert_eq!(r.headers().get("x-frame-options").unwrap(), "DENY");
        assert_eq!(r.headers().get("content-type").unwrap(), "text/x-test");
        // Plain HTTP: no https ones.
        assert!(r.headers().get("strict-transport-security").is_none());
        // Reloaded.
        policy.update(&restapi(&[("X-New", "1")], &[]));
        let r = atest::call_service(&app, atest::TestRequest::get().uri("/").to_request()).await;
        assert_eq!(r.headers().get("x-new").unwrap(), "1");
        assert!(r.headers().get("x-frame-options").is_none());
    }
}
