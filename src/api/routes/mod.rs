//! The routes of the REST API (docs/rest-api.md, "Summary"), one file per family, as
//! Patroni routes them: by method and the first path segment of the raw
//! path (`do_GET_patroni` answers `/patroni/anything`). A family's methods
//! it does not serve, and every path no family claims, fall through to
//! [`health::fallthrough`]: GET answers a health check, HEAD and OPTIONS
//! the same without a body, other methods 501 (Patroni's behaviour).

pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod failsafe;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod patroni;
pub(crate) mod reinitialize;
pub(crate) mod reload;
pub(crate) mod restart;
pub(crate) mod switchover;

use actix_web::guard::{Guard, GuardContext};
use actix_web::{Resource, Scope, web};

/// Matches requests whose raw path starts with the segment `.0`. The raw
/// path, not actix's matcher: Patroni does not percent-decode the path, nor
/// fold repeated slashes differently than `lstrip('/')` does.
struct FirstSegment(&'static str);

impl Guard for FirstSegment {
    fn check(&self, ctx: &GuardContext<'_>) -> bool {
        first_segment(ctx.head().uri.path()) == self.0
    }
}

fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

/// The family of paths whose first segment is `name`, served by `routes`
/// (built on [`any_path`]); the methods it does not route fall through.
///
/// A scope with the empty prefix matches every path without a regex, then
/// its guard picks the family: the regex of [`any_path`] runs only for the
/// one family a request belongs to, and none for a health check (every
/// family as a `/{tail:.*}` resource cost a regex match each, a dozen per
/// `GET /primary`: a tenth of a health check's CPU, by perf).
fn family(name: &'static str, routes: Resource) -> Scope {
    web::scope("").guard(FirstSegment(name)).service(routes)
}

/// Every path, with the methods its family does not route falling through.
fn any_path() -> Resource {
    web::resource("/{tail:.*}").default_service(web::to(health::fallthrough))
}

/// Register every family (the application's default service must be
/// [`health::fallthrough`] too).
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(family(
        "patroni",
        any_path().route(web::get().to(patroni::get)),
    ))
    .service(family(
        "cluster",
        any_path().route(web::get().to(cluster::get_cluster)),
    ))
    .service(family(
        "history",
        any_path().route(web::get().to(cluster::get_history)),
    ))
    .service(family(
        "config",
        any_path()
            .route(web::get().to(config::get))
            .route(web::patch().to(config::patch))
            .route(web::put().to(config::put)),
    ))
    .service(family(
        "metrics",
        any_path().route(web::get().to(metrics::get)),
    ))
    .service(family(
        "liveness",
        any_path().route(web::get().to(health::liveness)),
    ))
    .service(family(
        "readiness",
        any_path().route(web::get().to(health::readiness)),
    ))
    .service(family(
        "failsafe",
        any_path()
            .route(web::get().to(failsafe::get))
            .route(web::post().to(failsafe::post)),
    ))
    .service(family(
        "reload",
        any_path().route(web::post().to(reload::post)),
    ))
    .service(family(
        "restart",
        any_path()
            .route(web::post().to(restart::post))
            .route(web::delete().to(restart::delete)),
    ))
    .service(family(
        "reinitialize",
        any_path().route(web::post().to(reinitialize::post)),
    ))
    .service(family(
        "switchover",
        any_path()
            .route(web::post().to(switchover::post_switchover))
            .route(web::delete().to(switchover::delete)),
    ))
    .service(family(
        "failover",
        any_path().route(web::post().to(switchover::post_failover)),
    ));
}

#[cfg(test)]
mod tests {
    use super::first_segment;

    #[test]
    fn first_segment_as_patroni_reads_it() {
        assert_eq!(first_segment("/patroni"), "patroni");
        assert_eq!(first_segment("/patroni/x/y"), "patroni");
        assert_eq!(first_segment("//cluster"), "cluster");
        assert_eq!(first_segment("/"), "");
        assert_eq!(first_segment("/%70atroni"), "%70atroni");
    }
}
