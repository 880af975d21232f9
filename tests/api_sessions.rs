//! The REST API against a real primary and replica: status requests and
//! idle HA cycles open no PostgreSQL session (the supervisor keeps one
//! connection), answers come from a query at most 20 ms old, and a really
//! lagging replica is judged by `?lag=` in Patroni's forms.

mod support;

use std::time::Duration;

use pgpilot::events;
use serde_json::Value;
use support::cluster::{TestCluster, Timing};
use support::eventually;

const BOOT: Duration = Duration::from_secs(90);

/// Sessions ever opened to any database of this server
/// (`pg_stat_database.sessions`), read on an already open connection.
async fn sessions(c: &tokio_postgres::Client) -> i64 {
    c.query_one(
        "SELECT pg_catalog.sum(sessions)::int8 FROM pg_catalog.pg_stat_database",
        &[],
    )
    .await
    .expect("read pg_stat_database")
    .get(0)
}

fn dcs_last_seen(s: &Value) -> i64 {
    s["dcs_last_seen"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_requests_open_no_sessions_and_lag_uses_patronis_parser() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let r = 1 - p;
    let sql = [c.sql(0).await.unwrap(), c.sql(1).await.unwrap()];

    // Settle: the counters no longer move over two HA cycles (each
    // daemon's own connection, opened at start, has been counted).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = [-1, -1];
    loop {
        let t0 = dcs_last_seen(&c.status(p).await.unwrap_or_default());
        eventually(Duration::from_secs(10), "two HA cycles", || async {
            (dcs_last_seen(&c.status(p).await?) >= t0 + 2).then_some(())
        })
        .await;
        let now = [sessions(&sql[0]).await, sessions(&sql[1]).await];
        if now == last {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "session counters keep moving while idle: {last:?} -> {now:?}"
        );
        last = now;
    }
    let before = [sessions(&sql[0]).await, sessions(&sql[1]).await];

    // 100 status requests on each node, of every kind.
    let http = reqwest::Client::new();
    for i in 0..100 {
        for node in [p, r] {
            let path = ["/patroni", "/health", "/replica", "/", "/readiness"][i % 5];
            let resp = http.get(c.nodes[node].api(path)).send().await.unwrap();
            assert!(matches!(resp.status().as_u16(), 200 | 503));
        }
    }
    // ... and three idle HA cycles on both (dcs_last_seen moves each cycle).
    for node in [p, r] {
        let t0 = dcs_last_seen(&c.status(node).await.unwrap());
        eventually(Duration::from_secs(15), "three HA cycles", || async {
            (dcs_last_seen(&c.status(node).await?) >= t0 + 3).then_some(())
        })
        .await;
    }
    let after = [sessions(&sql[0]).await, sessions(&sql[1]).await];
    assert_eq!(
        after, before,
        "PostgreSQL sessions opened by 200 status requests and 3 idle cycles (node 0, node 1)"
    );

    // Fresh: an answer comes from a query sent at most 20 ms before its
    // request (docs/rest-api.md, "Health checks and PostgreSQL"), so paused
    // replay shows in every answer to a request sent 20 ms after the pause.
    sql[r]
        .batch_execute("SELECT pg_catalog.pg_wal_replay_pause()")
        .await
        .unwrap();
    let paused_at = std::time::Instant::now();
    loop {
        let sent = std::time::Instant::now();
        let s = c.status(r).await.unwrap();
        if s["xlog"]["paused"] == true {
            break;
        }
        let after = sent.duration_since(paused_at);
        assert!(
            after < Duration::from_millis(20),
            "a request sent {after:?} after the pause does not show it: {s}"
        );
    }

    // A replica really behind: WAL received but not replayed.
    sql[p]
        .batch_execute(
            "CREATE TABLE lag_t AS SELECT pg_catalog.repeat('x', 1000) AS v \
             FROM pg_catalog.generate_series(1, 4000)",
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "replica 2 MB behind", || async {
        let s = c.status(r).await?;
        let recv = s["xlog"]["received_location"].as_i64()?;
        let replay = s["xlog"]["replayed_location"].as_i64()?;
        (recv - replay > 2 << 20).then_some(())
    })
    .await;
    for (q, want) in [
        ("/replica?lag=1.5MB", 503),
        ("/replica?lag=1.5e3kB", 503),
        ("/replica?lag=0x180000", 503),
        ("/replica?lag=1GB", 200),
        ("/replica?lag=0.5GB", 200),
        ("/replica?lag=nonsense", 200),
        ("/readiness?lag=1.5MB", 503),
    ] {
        assert_eq!(c.http_code(r, q).await, want, "{q}");
    }
    sql[r]
        .batch_execute("SELECT pg_catalog.pg_wal_replay_resume()")
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "replica caught up", || async {
        (c.http_code(r, "/replica?lag=1.5MB").await == 200).then_some(())
    })
    .await;
    assert!(
        c.nodes[r].logged(events::API_LAG_UNPARSABLE),
        "an unparsable lag is logged"
    );
}
