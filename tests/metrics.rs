//! `GET /metrics` on a real 3-node cluster: promtool reads every node's
//! answer, and a real Prometheus (Debian's package) scrapes the cluster
//! through a crash failover: before it exactly one node reports
//! `patroni_primary 1`, after it exactly one other node does, and the
//! killed node's target is down; pgpilot's own metrics come along: the
//! lease and fence gauges (the primary's lease has time left within ttl
//! and its fence is armed, the replicas hold neither), the promotion
//! counted as a failover, the DCS latency histogram, and every family the
//! Grafana dashboard in `conf/` queries.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::cluster::{TestCluster, Timing};
use support::{eventually, free_port};

const BOOT: Duration = Duration::from_secs(120);
const FAILOVER: Duration = Duration::from_secs(60);
const SCRAPE: Duration = Duration::from_secs(30);

/// The lint complaints Patroni's own names cause: these three gauges of
/// WAL positions are typed `counter` without a `_total` suffix. Renaming
/// them would break the dashboards and alerts written for Patroni.
const PATRONI_NAMED_COUNTERS: [&str; 3] = [
    "patroni_xlog_location",
    "patroni_xlog_received_location",
    "patroni_xlog_replayed_location",
];

/// `promtool check metrics` on `text`: parse errors fail the test; lint
/// complaints other than [`PATRONI_NAMED_COUNTERS`]' suffix fail it too.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not installed (scripts/test installs the prometheus package)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool: 0 clean, 3 lint problems only, anything else a failure to
    // parse.
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(3)),
        "promtool could not read /metrics ({code:?}): {said}\n{text}"
    );
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            PATRONI_NAMED_COUNTERS.iter().any(
                |m| line.trim() == format!("{m} counter metrics should have \"_total\" suffix")
            ),
            "promtool: {line}\n{text}"
        );
    }
}

/// The value of the one sample of `name` in `text` (`name{...} value`).
fn sample(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The families a `/metrics` answer declares (`# TYPE` lines).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

async fn metrics_text(c: &TestCluster, i: usize) -> Option<String> {
    reqwest::get(c.nodes[i].api("/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The lease and fence as node `i` reports them: on the primary the lease
/// has time left, at most ttl, and a live fence holds an armed order whose
/// fencing point comes before the lease's end; a replica holds neither.
/// `None` while that is not (yet) so: the fence acknowledges an order
/// within its poll, after the cycle that armed it.
async fn lease_and_fence_hold(c: &TestCluster, i: usize, primary: bool) -> Option<()> {
    let text = metrics_text(c, i).await?;
    let ttl = sample(&text, "pgpilot_lease_ttl_seconds")?;
    let lease = sample(&text, "pgpilot_lease_seconds_left")?;
    let armed = sample(&text, "pgpilot_fence_armed")?;
    let fence = sample(&text, "pgpilot_fence_seconds_left")?;
    let ok = if primary {
        ttl == c.timing.ttl as f64
            && lease > 0.0
            && lease <= ttl
            && armed == 1.0
            && fence > 0.0
            && fence < lease
    } else {
        lease == 0.0 && armed == 0.0 && fence == 0.0
    };
    ok.then_some(())
}

/// Prometheus in the foreground, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(root: &Path, targets: &[u16]) -> Prometheus {
        let port = free_port();
        let list: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let cfg = root.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
                 scrape_configs:\n  - job_name: pgpilot\n    static_configs:\n      \
                 - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .expect("write prometheus.yml");
        let check = Command::new("promtool")
            .args(["check", "config"])
            .arg(&cfg)
            .output()
            .expect("promtool");
        assert!(
            check.status.success(),
            "promtool check config: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        let log = std::fs::File::create(root.join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("prometheus not installed (scripts/test installs it)");
        Prometheus { child, port }
    }

    /// An instant query: `(instance, value)` of each series.
    async fn query(&self, q: &str) -> Option<Vec<(String, String)>> {
        let v: Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("query={}", q.replace(' ', "+")))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let series = v["data"]["result"].as_array()?;
        Some(
            series
                .iter()
                .map(|s| {
                    (
                        s["metric"]["instance"].as_str().unwrap_or("").to_owned(),
                        s["value"][1].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect(),
        )
    }

    /// The sum of `instance`'s series of `q` (0 when it has none).
    async fn sum_at(&self, q: &str, instance: &str) -> Option<f64> {
        Some(
            self.query(q)
                .await?
                .into_iter()
                .filter(|(i, _)| i == instance)
                .filter_map(|(_, v)| v.parse::<f64>().ok())
                .sum(),
        )
    }

    /// The instances whose latest sample of `q` reads `value`.
    async fn instances_at(&self, q: &str, value: &str) -> Option<Vec<String>> {
        let mut hits: Vec<String> = self
            .query(q)
            .await?
            .into_iter()
            .filter(|(_, v)| v == value)
            .map(|(i, _)| i)
            .collect();
        hits.sort();
        Some(hits)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_cluster_through_a_failover() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.api_port).collect();
    let instance = |i: usize| format!("127.0.0.1:{}", ports[i]);

    // Each node's answer: Prometheus' content type, promtool reads it.
    for i in 0..3 {
        let r = reqwest::get(c.nodes[i].api("/metrics"))
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200);
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        let text = r.text().await.expect("body");
        let want = if i == p { "1" } else { "0" };
        assert!(
            text.lines()
                .any(|l| l.starts_with("patroni_primary{") && l.ends_with(&format!(" {want}"))),
            "node {i}: patroni_primary should be {want}\n{text}"
        );
        promtool_check(&text);
    }

    // The lease as each node holds it, the fence as it answers.
    for i in 0..3 {
        let what = format!("node {i}'s lease and fence gauges (primary: {})", i == p);
        eventually(SCRAPE, &what, || lease_and_fence_hold(&c, i, i == p)).await;
    }

    let prom = Prometheus::start(&c.root, &ports);
    eventually(
        SCRAPE,
        "Prometheus scrapes all three nodes, one of them primary",
        || async {
            let up = prom.instances_at("up", "1").await?;
            let primary = prom.instances_at("patroni_primary", "1").await?;
            let replicas = prom.instances_at("patroni_replica", "1").await?;
            let streaming = prom.instances_at("patroni_postgres_streaming", "1").await?;
            (up.len() == 3
                && primary == [instance(p)]
                && replicas.len() == 2
                && streaming.len() == 2)
                .then_some(())
        },
    )
    .await;

    // kill -9 of the primary's daemon and PostgreSQL: another node turns
    // primary in Prometheus, the killed one goes down.
    c.kill_node(p).await;
    let np = eventually(FAILOVER, "a new primary", || async { c.primary().await }).await;
    assert_ne!(np, p);
    eventually(
        SCRAPE,
        "Prometheus sees the new primary and the dead target",
        || async {
            let primary = prom.instances_at("patroni_primary", "1").await?;
            let down = prom.instances_at("up", "0").await?;
            let timeline = prom.instances_at("patroni_postgres_timeline", "2").await?;
            (primary == [instance(np)] && down == [instance(p)] && timeline.contains(&instance(np)))
                .then_some(())
        },
    )
    .await;

    // pgpilot's own counters: the new primary counted taking the lock,
    // and Prometheus has the series.
    let took_lock = prom
        .query(&format!(
            "pgpilot_events_total{{event=\"{}\"}}",
            pgpilot::events::LOCK_ACQUIRED
        ))
        .await
        .expect("query pgpilot_events_total");
    assert!(
        took_lock
            .iter()
            .any(|(i, v)| *i == instance(np) && v.parse::<f64>().is_ok_and(|n| n >= 1.0)),
        "{took_lock:?}"
    );

    // The new primary's own view of the failover: one promotion, caused by
    // the lapsed lease (no failover key), that succeeded; a decision of
    // that kind; its lease and fence; its DCS calls timed.
    eventually(
        SCRAPE,
        "Prometheus has the new primary's promotion, decision and DCS latency",
        || async {
            let new_primary = instance(np);
            let at = |q: &'static str| prom.sum_at(q, &new_primary);
            let promoted =
                at(r#"pgpilot_promotions_total{cause="failover",outcome="succeeded"}"#).await?;
            let other = at(r#"pgpilot_promotions_total{cause!="failover"}"#).await?;
            let decided = at(r#"pgpilot_ha_decisions_total{kind="promote"}"#).await?;
            let renewals =
                at(r#"pgpilot_dcs_request_duration_seconds_count{operation="update_leader"}"#)
                    .await?;
            (promoted == 1.0 && other == 0.0 && decided >= 1.0 && renewals >= 1.0).then_some(())
        },
    )
    .await;
    let survivors: Vec<usize> = (0..3).filter(|i| *i != p).collect();
    for &i in &survivors {
        let what = format!("node {i}'s lease and fence after the failover");
        eventually(SCRAPE, &what, || lease_and_fence_hold(&c, i, i == np)).await;
    }

    // Every family the dashboard queries is one the live nodes expose.
    let mut live = BTreeSet::new();
    for &i in &survivors {
        let text = metrics_text(&c, i).await.expect("GET /metrics");
        promtool_check(&text);
        live.extend(families(&text));
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/grafana-dashboard.json"),
        )
        .expect("conf/grafana-dashboard.json"),
    )
    .expect("the dashboard is JSON");
    let queried = pgpilot::api::metric_families::dashboard_families(&dashboard, &live);
    let missing: Vec<&String> = queried.difference(&live).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries families no node exposes: {missing:?}"
    );
}
