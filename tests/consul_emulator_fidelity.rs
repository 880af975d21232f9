//! The Consul emulator (tests/support/consul_emulator) checked against the
//! client it must satisfy besides pgpilot: Patroni 4.1.5 with its consul
//! extra (py-consul). A Patroni cluster bootstraps, fails over after its
//! primary is killed, and switches over, on the emulator alone; the keys
//! and sessions it leaves there are Patroni's layout.
//!
//! Patroni's daemon comes from `PATRONI_DAEMON` (scripts/test sets it from
//! scripts/lib.sh's `ensure_patroni_daemon`), else /opt/patroni-daemon.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use support::cluster::{ClusterOptions, Shape, TestCluster, Timing};
use support::consul_emulator::ConsulEmulator;

const BOOT: Duration = Duration::from_secs(120);
const FAILOVER: Duration = Duration::from_secs(60);

fn patroni_daemon() -> PathBuf {
    let bin = std::env::var_os("PATRONI_DAEMON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/patroni-daemon/bin/patroni"));
    assert!(
        bin.is_file(),
        "Patroni's daemon not found at {} (set PATRONI_DAEMON, or install it: scripts/test \
         does, through scripts/lib.sh's ensure_patroni_daemon, with the consul extra)",
        bin.display()
    );
    bin
}

/// The leader key's value and session, as Patroni wrote it in the emulator.
fn leader_in_store(consul: &ConsulEmulator, scope: &str) -> Option<(String, Option<String>)> {
    let key = format!("it/{scope}/leader");
    consul.with_state(|st| {
        st.kv.get(&key).map(|e| {
            (
                String::from_utf8_lossy(&e.value).into_owned(),
                e.session.clone(),
            )
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_bootstraps_fails_over_and_switches_over_on_the_emulator() {
    let patroni = patroni_daemon();
    // Consul's defaults (session TTL at least 10 s). Patroni raises `ttl`
    // to at least 20 and `retry_timeout` to at least 3, and asks Consul
    // for a session TTL of ttl / 2: 10 s, invalidated by 20 s.
    let consul = ConsulEmulator::start();
    let timing = Timing {
        ttl: 20,
        loop_wait: 1,
        retry_timeout: 3,
    };
    let opts = ClusterOptions {
        shape: Shape::PatroniSample,
        consul: Some(consul.addr()),
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(3, timing, opts);
    c.use_program(patroni);
    for i in 0..3 {
        // Patroni looks its PostgreSQL programs up on PATH without it, and
        // only pg_ctl is on this machine's PATH.
        c.add_to_section(i, "postgresql", "bin_dir: /usr/lib/postgresql/15/bin");
    }
    c.start_all();
    let scope = c.scope.clone();

    // Bootstrap: one primary, two streaming replicas, and Patroni's layout
    // in the store: the leader key held by a `delete` session of
    // TTL ttl / 2, every member key on its node's session.
    let primary = c.wait_healthy(BOOT).await;
    let name = c.nodes[primary].name.clone();
    let (value, session) = leader_in_store(&consul, &scope).expect("a leader key");
    assert_eq!(value, name);
    let session = session.expect("the leader key is held by a session");
    consul.with_state(|st| {
        let s = st
            .sessions
            .get(&session)
            .expect("the leader's session exists");
        assert_eq!(
            s.behavior,
            support::consul_emulator::store::Behavior::Delete
        );
        assert_eq!(s.ttl, Some(Duration::from_secs(10)));
        assert_eq!(s.name, format!("{scope}-{name}"));
        for n in &c.nodes {
            let m = st
                .kv
                .get(&format!("it/{scope}/members/{}", n.name))
                .expect("a member key per node");
            assert!(m.session.is_some(), "member {} without a session", n.name);
        }
        assert!(st.kv.contains_key(&format!("it/{scope}/initialize")));
        assert!(st.kv.contains_key(&format!("it/{scope}/config")));
    });

    // Crash failover: the primary's whole node is killed; its session
    // expires (by 2 × 10 s), the key goes with it, a replica takes over.
    c.kill_node_tree(primary).await;
    let new_primary = support::eventually(FAILOVER, "a new primary", || async {
        let p = c.primary().await?;
        (p != primary).then_some(p)
    })
    .await;
    let new_name = c.nodes[new_primary].name.clone();
    support::eventually(FAILOVER, "the leader key names the new primary", || async {
        let (v, s) = leader_in_store(&consul, &scope)?;
        (v == new_name && s.is_some() && s != Some(session.clone())).then_some(())
    })
    .await;

    // The old node comes back as a replica.
    c.start(primary);
    let healthy = c.wait_healthy(BOOT).await;
    assert_eq!(healthy, new_primary);

    // Switchover to the old primary through Patroni's REST API.
    let resp = reqwest::Client::new()
        .post(c.nodes[new_primary].api("/switchover"))
        .json(&json!({"leader": new_name, "candidate": name}))
        .timeout(FAILOVER)
        .send()
        .await
        .expect("switchover answered");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        c.dump_logs();
    }
    assert!(status.is_success(), "switchover: {status} {text}");
    support::eventually(FAILOVER, "the candidate is primary", || async {
        (c.primary().await? == primary).then_some(())
    })
    .await;
    support::eventually(FAILOVER, "the leader key names the candidate", || async {
        let (v, _) = leader_in_store(&consul, &scope)?;
        (v == name).then_some(())
    })
    .await;
    c.wait_healthy(BOOT).await;

    // Nothing the emulator answered made Patroni's Consul client fail:
    // Patroni logs such failures with their traceback. Tracebacks of its
    // PostgreSQL side (a replication connection refused while pg_rewind
    // stops the server, say) are not the emulator's and are left alone.
    for n in &c.nodes {
        let log = n.log();
        let failures = consul_tracebacks(&log);
        assert!(
            failures.is_empty(),
            "{}'s log shows a Consul client failure:\n{}",
            n.name,
            failures.join("\n")
        );
        for bad in ["ConsulException", "ConsulInternalError", "InvalidSession"] {
            assert!(!log.contains(bad), "{}'s log shows {bad}", n.name);
        }
    }
}

/// The tracebacks in a Patroni log that pass through its Consul client
/// (`patroni/dcs/consul.py` or the `consul` package): each from its
/// `Traceback` line to the next time-stamped log line.
fn consul_tracebacks(log: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in log.lines() {
        let stamped = line.starts_with("20") && line.get(4..5) == Some("-");
        if line.starts_with("Traceback") {
            if let Some(b) = block.take() {
                found.push(b.join("\n"));
            }
            block = Some(vec![line]);
        } else if stamped {
            if let Some(b) = block.take() {
                found.push(b.join("\n"));
            }
        } else if let Some(b) = block.as_mut() {
            b.push(line);
        }
    }
    if let Some(b) = block {
        found.push(b.join("\n"));
    }
    found
        .into_iter()
        .filter(|b| b.contains("/dcs/consul.py") || b.contains("/site-packages/consul/"))
        .collect()
}

#[test]
fn only_tracebacks_through_the_consul_client_count() {
    let log = "2026-12-07 11:52:27,950 ERROR: Can not fetch local timeline\n\
Traceback (most recent call last):\n\
  File \"/x/site-packages/patroni/postgresql/__init__.py\", line 1119, in get_replica_timeline\n\
psycopg2.OperationalError: server closed the connection\n\
2026-12-07 11:52:28,848 INFO: Lock owner: node0; I am node1\n\
2026-12-07 11:52:29,000 ERROR: refresh_session\n\
Traceback (most recent call last):\n\
  File \"/x/site-packages/patroni/dcs/consul.py\", line 300, in refresh_session\n\
consul.base.ConsulException: 500\n";
    let found = consul_tracebacks(log);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("refresh_session"));
}
