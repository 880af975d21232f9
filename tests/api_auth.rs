//! REST API security against a real daemon: Basic auth on the unsafe
//! endpoints (401 + `WWW-Authenticate: Basic realm="Patroni"` without or
//! with wrong credentials), GET endpoints open, bodies limited, and the
//! credentials never in the log.

mod support;

use std::time::Duration;

use pgpilot::events;
use support::cluster::{TestCluster, Timing, has_event};
use support::eventually;

const BOOT: Duration = Duration::from_secs(120);
const PASSWORD: &str = "api-Pa55word";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_endpoints_need_basic_auth() {
    let mut c = TestCluster::new(1, Timing::default());
    c.add_to_section(
        0,
        "restapi",
        &format!("authentication:\n  username: admin\n  password: {PASSWORD}"),
    );
    c.start_all();
    eventually(BOOT, "node0 is primary", || async {
        (c.primary().await == Some(0)).then_some(())
    })
    .await;
    let http = reqwest::Client::new();
    let reload = c.nodes[0].api("/reload");

    let r = http.post(&reload).send().await.expect("POST /reload");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Basic realm=\"Patroni\"")
    );

    let r = http
        .post(&reload)
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(r.status().as_u16(), 401);

    let r = http
        .post(&reload)
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(r.text().await.unwrap(), "reload scheduled");

    // Unknown unsafe paths are checked too (other methods get 401 first).
    let r = http
        .delete(c.nodes[0].api("/switchover"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 401);

    // Health checks and status stay open.
    assert_eq!(c.http_code(0, "/patroni").await, 200);
    assert_eq!(c.http_code(0, "/primary").await, 200);

    // An oversized body is refused before any handler sees it.
    let r = http
        .post(c.nodes[0].api("/failsafe"))
        .basic_auth("admin", Some(PASSWORD))
        .body(vec![b'x'; 128 * 1024])
        .send()
        .await
        .expect("POST big body");
    assert_eq!(r.status().as_u16(), 413);

    let log = c.nodes[0].log();
    assert!(
        has_event(&log, events::API_ACCESS_REFUSED),
        "refusals are logged"
    );
    assert!(!log.contains(PASSWORD), "the password is never logged");
}

/// `allowlist_include_members`: a client on a member's host passes an
/// allowlist that does not list it; without the option it gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_include_members_lets_member_hosts_in() {
    let mut c = TestCluster::new(2, Timing::default());
    c.add_to_section(
        0,
        "restapi",
        "allowlist: ['10.255.0.0/16']\nallowlist_include_members: true",
    );
    c.add_to_section(1, "restapi", "allowlist: ['10.255.0.0/16']");
    c.start_all();
    c.wait_healthy(BOOT).await;
    let http = reqwest::Client::new();
    // Every member's api_url is on 127.0.0.1, where this test runs.
    let r = http
        .post(c.nodes[0].api("/reload"))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(r.status().as_u16(), 202);
    let r = http
        .post(c.nodes[1].api("/reload"))
        .send()
        .await
        .expect("POST /reload");
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(r.text().await.unwrap(), "Access is denied");
    // POST /failsafe is checked against the allowlist alone.
    let r = http
        .post(c.nodes[0].api("/failsafe"))
        .body("{}")
        .send()
        .await
        .expect("POST /failsafe");
    assert_eq!(r.status().as_u16(), 403);
}
