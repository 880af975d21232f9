//! HAProxy in front of a real 3-node cluster, configured from
//! `conf/haproxy.cfg` (the same `GET /primary` and `GET /replica` checks,
//! with this cluster's ports and fast check intervals): the primary port
//! reaches the leader, the replica port only replicas, before and after a
//! switchover.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::cluster::{TestCluster, Timing, sql_at};
use support::eventually;
use support::free_port;

const BOOT: Duration = Duration::from_secs(120);
const SWITCH: Duration = Duration::from_secs(60);

/// `conf/haproxy.cfg` for this cluster: its listen ports replaced
/// (5000 primary, 5001 replicas, 7000 stats), each block's server lines
/// replaced by one line per node (PostgreSQL port, `check port` = REST
/// port), and the check interval cut from 1s to 200ms. Everything else,
/// the health checks in particular, is the shipped file.
fn haproxy_config(c: &TestCluster, primary: u16, replicas: u16, stats: u16) -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/haproxy.cfg"))
            .expect("read conf/haproxy.cfg");
    let mut out = String::new();
    let mut servers_written = false;
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed.starts_with("listen ") {
            servers_written = false;
        }
        if trimmed.starts_with("server ") {
            if !servers_written {
                for n in &c.nodes {
                    out.push_str(&format!(
                        "{indent}server {} 127.0.0.1:{} maxconn 100 check port {}\n",
                        n.name, n.pg_port, n.api_port
                    ));
                }
                servers_written = true;
            }
            continue;
        }
        let line = line
            .replace("bind 127.0.0.1:5000", &format!("bind 127.0.0.1:{primary}"))
            .replace("bind 127.0.0.1:5001", &format!("bind 127.0.0.1:{replicas}"))
            .replace("bind 127.0.0.1:7000", &format!("bind 127.0.0.1:{stats}"))
            .replace(" inter 1s ", " inter 200ms ");
        out.push_str(&line);
        out.push('\n');
    }
    for (what, want) in [
        ("primary port", format!("bind 127.0.0.1:{primary}")),
        ("replica port", format!("bind 127.0.0.1:{replicas}")),
        ("primary check", "option httpchk GET /primary".to_owned()),
        ("replica check", "option httpchk GET /replica".to_owned()),
        ("expected status", "http-check expect status 200".to_owned()),
        ("fast checks", "inter 200ms".to_owned()),
    ] {
        assert!(out.contains(&want), "{what}: no `{want}` in\n{out}");
    }
    out
}

/// HAProxy in the foreground (`-db`), killed when dropped.
struct HaProxy(Child);

impl HaProxy {
    fn start(cfg: &Path, log: &Path) -> HaProxy {
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(cfg)
            .output()
            .expect("haproxy not installed (scripts/test installs it)");
        assert!(
            check.status.success(),
            "haproxy -c refused the generated configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = std::fs::File::create(log).expect("haproxy log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        HaProxy(child)
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Through `port`: `(pg_is_in_recovery(), the server's own port)`, `None`
/// when the connection or the query fails (HAProxy has no server up, or
/// closed the session on a check failure).
async fn through(port: u16) -> Option<(bool, u16)> {
    let client = sql_at(port).await.ok()?;
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('port')::int4",
            &[],
        )
        .await
        .ok()?;
    Some((row.get(0), row.get::<_, i32>(1) as u16))
}

/// Wait until the primary port reaches node `leader` (not in recovery) and
/// the replica port reaches every other node and only them (in recovery),
/// over consecutive connections.
async fn wait_routing(c: &TestCluster, primary: u16, replicas: u16, leader: usize) {
    let want_primary = c.nodes[leader].pg_port;
    let want_replicas: BTreeSet<u16> = c
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, n)| n.pg_port)
        .collect();
    eventually(
        SWITCH,
        &format!(
            "HAProxy routes the primary port to {}",
            c.nodes[leader].name
        ),
        || async {
            // Three in a row, so one lucky connection before a check
            // marks the old server down does not count.
            for _ in 0..3 {
                if through(primary).await? != (false, want_primary) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    eventually(
        SWITCH,
        "HAProxy routes the replica port to the replicas, round robin",
        || async {
            let mut seen = BTreeSet::new();
            for _ in 0..6 {
                let (in_recovery, port) = through(replicas).await?;
                if !in_recovery || !want_replicas.contains(&port) {
                    return None;
                }
                seen.insert(port);
            }
            (seen == want_replicas).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_follows_the_leader() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;

    let (primary, replicas, stats) = (free_port(), free_port(), free_port());
    let cfg = c.root.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(&c, primary, replicas, stats)).expect("write cfg");
    let _haproxy = HaProxy::start(&cfg, &c.root.join("haproxy.log"));

    // Primary port: the leader, writable; replica port: the replicas.
    wait_routing(&c, primary, replicas, p).await;
    let client = sql_at(primary)
        .await
        .expect("connect through the primary port");
    client
        .batch_execute(
            "CREATE TABLE through_haproxy(v int); INSERT INTO through_haproxy VALUES (1)",
        )
        .await
        .expect("write through the primary port");

    // Switchover over REST; HAProxy follows within its checks.
    let candidate = (p + 1) % 3;
    let r = reqwest::Client::new()
        .post(c.nodes[p].api("/switchover"))
        .json(&json!({"leader": c.nodes[p].name, "candidate": c.nodes[candidate].name}))
        .send()
        .await
        .expect("POST /switchover");
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.text().await.unwrap_or_default()
    );
    wait_routing(&c, primary, replicas, candidate).await;
    assert_eq!(c.primary().await, Some(candidate));

    // The row written before the switchover, read through both ports.
    let client = sql_at(primary)
        .await
        .expect("connect through the primary port");
    client
        .batch_execute("INSERT INTO through_haproxy VALUES (2)")
        .await
        .expect("write through the primary port after the switchover");
    let n: i64 = client
        .query_one("SELECT count(*) FROM through_haproxy", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 2);
    eventually(SWITCH, "the replica port reads both rows", || async {
        let client = sql_at(replicas).await.ok()?;
        let row = client
            .query_one("SELECT count(*) FROM through_haproxy", &[])
            .await
            .ok()?;
        (row.get::<_, i64>(0) == 2).then_some(())
    })
    .await;
}
