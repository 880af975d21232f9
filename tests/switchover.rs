//! Switchover and manual failover against real etcd and PostgreSQL 15:
//! nothing acknowledged is lost, the old primary streams again without
//! rewind or basebackup, every refusal answers the documented code, and a
//! scheduled switchover fires at its time or is cancelled.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgpilot::events;
use serde_json::{Value, json};
use support::cluster::{TestCluster, Timing, has_event};
use support::eventually;
use support::writer::{spawn_writer, values_on, wait_for_writes};

const BOOT: Duration = Duration::from_secs(120);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("client")
}

async fn call(
    c: &TestCluster,
    i: usize,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, String) {
    let resp = http()
        .request(method, c.nodes[i].api(path))
        .json(&body)
        .send()
        .await
        .expect("request");
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap_or_default())
}

async fn post(c: &TestCluster, i: usize, path: &str, body: Value) -> (u16, String) {
    call(c, i, reqwest::Method::POST, path, body).await
}

/// The sum of the samples of `series` (`name{labels` as written, the
/// labels after `scope` and `name`) in node `i`'s `/metrics`.
async fn metric(c: &TestCluster, i: usize, series: &str) -> f64 {
    let text = http()
        .get(c.nodes[i].api("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .unwrap_or_default();
    let (name, labels) = series.split_once('{').unwrap_or((series, ""));
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Wait until `new` is the only primary and `old` streams from it.
async fn wait_rejoined(c: &TestCluster, old: usize, new: usize) {
    eventually(
        Duration::from_secs(60),
        "the old primary streams from the new one",
        || async {
            (c.primary().await == Some(new) && c.is_streaming_replica(old).await).then_some(())
        },
    )
    .await;
}

/// The node's log since byte `from` (its length before the switchover)
/// shows neither pg_rewind nor a basebackup: replicas were cloned once at
/// the start, which is not what is checked.
fn assert_no_rebuild(c: &TestCluster, i: usize, from: usize) {
    let log = c.nodes[i].log().get(from..).unwrap_or_default().to_owned();
    assert!(
        !log.contains("running pg_rewind"),
        "old primary was rewound:\n{log}"
    );
    assert!(
        !has_event(&log, events::REPLICA_METHOD_STARTED),
        "old primary was rebuilt:\n{log}"
    );
}

/// Switchover to a named candidate under a 50 ms writer, then to any
/// member, then a manual failover to a named candidate: no write any node
/// acknowledged is missing on the final primary, and each old primary
/// streams again without rewind or basebackup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchovers_and_failover_lose_no_acknowledged_write() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let p0 = c.wait_healthy(BOOT).await;
    c.create_table_t(p0).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(c.nodes.iter().map(|n| n.pg_port).collect(), stop.clone());
    wait_for_writes(&c, p0, 20, Duration::from_secs(30)).await;

    // 1. Named candidate.
    let cand = (p0 + 1) % 3;
    let mark = c.nodes[p0].log().len();
    let (code, text) = post(
        &c,
        p0,
        "/switchover",
        json!({"leader": c.nodes[p0].name, "candidate": c.nodes[cand].name}),
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (
            200,
            format!("Successfully switched over to \"{}\"", c.nodes[cand].name).as_str()
        )
    );
    wait_rejoined(&c, p0, cand).await;
    assert_no_rebuild(&c, p0, mark);
    c.wait_healthy(BOOT).await;
    wait_for_writes(&c, cand, 20, Duration::from_secs(30)).await;

    // 2. Any member.
    let p1 = cand;
    let mark = c.nodes[p1].log().len();
    let (code, text) = post(&c, p1, "/switchover", json!({"leader": c.nodes[p1].name})).await;
    assert_eq!(code, 200, "{text}");
    let p2 = eventually(Duration::from_secs(30), "a new primary", || async {
        c.primary().await.filter(|&p| p != p1)
    })
    .await;
    assert!(text.contains(&c.nodes[p2].name), "{text}");
    wait_rejoined(&c, p1, p2).await;
    assert_no_rebuild(&c, p1, mark);
    c.wait_healthy(BOOT).await;
    wait_for_writes(&c, p2, 20, Duration::from_secs(30)).await;

    // 3. Manual failover to a named candidate (sent to a replica: any
    // member takes the request).
    let target = (0..3).find(|&i| i != p2 && i != p1).unwrap_or(p1);
    let mark = c.nodes[p2].log().len();
    let (code, text) = post(
        &c,
        p1,
        "/failover",
        json!({"candidate": c.nodes[target].name}),
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (
            200,
            format!("Successfully failed over to \"{}\"", c.nodes[target].name).as_str()
        )
    );
    wait_rejoined(&c, p2, target).await;
    assert_no_rebuild(&c, p2, mark);
    let healthy = c.wait_healthy(BOOT).await;
    assert_eq!(healthy, target);
    wait_for_writes(&c, target, 10, Duration::from_secs(30)).await;

    stop.store(true, Ordering::SeqCst);
    let acked = writer.await.expect("writer");
    let on_final = values_on(&c, target).await;
    let lost: Vec<i64> = acked
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| !on_final.contains(v))
        .collect();
    let by_node: BTreeMap<usize, usize> = acked.iter().fold(BTreeMap::new(), |mut m, (_, i)| {
        *m.entry(*i).or_default() += 1;
        m
    });
    eprintln!("{} writes acknowledged, by node {by_node:?}", acked.len());
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(by_node.len() == 3, "every primary took writes: {by_node:?}");
    let failover = c.get_json(target, "/cluster").await.expect("cluster");
    assert!(failover.get("scheduled_switchover").is_none(), "{failover}");

    // Each new primary counted its promotion under the request's kind
    // (docs/rest-api.md, "GET /metrics"), each old one its graceful
    // demotion.
    for (node, cause) in [
        (cand, "switchover"),
        (p2, "switchover"),
        (target, "manual_failover"),
    ] {
        let ok = format!(r#"pgpilot_promotions_total{{cause="{cause}",outcome="succeeded"}}"#);
        assert_eq!(metric(&c, node, &ok).await, 1.0, "node {node}: {ok}");
        assert_eq!(
            metric(&c, node, "pgpilot_promotions_total{").await,
            1.0,
            "node {node} promoted once"
        );
    }
    for old in [p0, p1] {
        let graceful = r#"pgpilot_demotions_total{mode="graceful"}"#;
        assert!(
            metric(&c, old, graceful).await >= 1.0,
            "node {old}: {graceful}"
        );
    }
}

fn iso(unix: u64) -> String {
    pgpilot::ha::iso8601::Utc::from_unix(unix).to_iso8601()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Each refusal answers its code and text; a scheduled switchover fires at
/// its time; another one is cancelled by `DELETE /switchover` and never
/// fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_scheduled_switchovers() {
    let mut c = TestCluster::new(2, Timing::default());
    let mut extra = BTreeMap::new();
    extra.insert("tags", "{nofailover: true}");
    let nf = c.add_node("node2", &extra);
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let r = 1 - p;
    let (leader, replica, nofail) = (
        c.nodes[p].name.clone(),
        c.nodes[r].name.clone(),
        c.nodes[nf].name.clone(),
    );

    let cases = [
        (
            json!({"leader": leader, "candidate": "nosuch"}),
            412,
            "candidate does not exists".to_owned(),
        ),
        (
            json!({"leader": leader, "candidate": leader}),
            400,
            "Switchover target and source are the same".into(),
        ),
        (
            json!({"leader": leader, "candidate": nofail}),
            412,
            "switchover is not possible: no good candidates have been found".into(),
        ),
        (
            json!({"leader": leader, "scheduled_at": "2001-01-01T00:00:00+00:00"}),
            422,
            "Cannot schedule switchover in the past".into(),
        ),
        (
            json!({"leader": replica}),
            412,
            "leader name does not match".into(),
        ),
        (
            json!({"candidate": replica}),
            400,
            "Switchover could be performed only from a specific leader".into(),
        ),
    ];
    for (body, code, text) in cases {
        assert_eq!(
            post(&c, p, "/switchover", body.clone()).await,
            (code, text),
            "{body}"
        );
    }
    assert_eq!(
        post(&c, r, "/failover", json!({})).await,
        (
            400,
            "Failover could be performed only to a specific candidate".into()
        )
    );
    assert_eq!(
        call(&c, p, reqwest::Method::DELETE, "/switchover", json!({})).await,
        (404, "no switchover is scheduled".into())
    );
    assert_eq!(c.primary().await, Some(p), "refusals changed nothing");

    // Scheduled, then cancelled before its time.
    let at = now_unix() + 8;
    let (code, text) = post(
        &c,
        r,
        "/switchover",
        json!({"leader": leader, "candidate": replica, "scheduled_at": iso(at)}),
    )
    .await;
    assert_eq!((code, text.as_str()), (202, "Switchover scheduled"));
    let (code, text) = post(
        &c,
        p,
        "/switchover",
        json!({"leader": leader, "candidate": replica}),
    )
    .await;
    assert_eq!(code, 412, "another one is pending: {text}");
    assert_eq!(
        call(&c, p, reqwest::Method::DELETE, "/switchover", json!({})).await,
        (200, "scheduled switchover deleted".into())
    );
    while now_unix() < at + 3 {
        assert_eq!(c.primary().await, Some(p), "a cancelled switchover fired");
        // Poll interval: the window is the schedule's wall-clock time.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Scheduled, and it fires at its time.
    let at = now_unix() + 6;
    let (code, _) = post(
        &c,
        p,
        "/switchover",
        json!({"leader": leader, "candidate": replica, "scheduled_at": iso(at)}),
    )
    .await;
    assert_eq!(code, 202);
    let mark = c.nodes[p].log().len();
    let before = c.get_json(p, "/cluster").await.expect("cluster");
    assert!(before.get("scheduled_switchover").is_some(), "{before}");
    while now_unix() + 1 < at {
        assert_eq!(c.primary().await, Some(p), "fired before its time");
        // Poll interval: the window is the schedule's wall-clock time.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually(
        Duration::from_secs(20),
        "the scheduled switchover",
        || async { (c.primary().await == Some(r)).then_some(()) },
    )
    .await;
    assert!(now_unix() >= at, "fired early");
    wait_rejoined(&c, p, r).await;
    assert_no_rebuild(&c, p, mark);
}
