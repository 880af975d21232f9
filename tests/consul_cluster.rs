//! The core capability on Consul: three daemons with a `consul` section
//! bootstrap one primary and two streaming replicas, lay the keys out as
//! Patroni does (leader and members held by the holder's session; Patroni's
//! patronictl lists them as pgpilotctl does), switch over through
//! pgpilotctl, fail over when the primary is killed (kill -9 of the daemon
//! and the postmaster) and take the old primary back as a replica, with
//! `register_service`; a primary cut off from Consul is fenced before
//! another node takes over; Consul frozen (no failsafe) and stopped
//! (failsafe).
//!
//! On the Consul emulator (tests/support/consul_emulator, its
//! `session_ttl_min` lowered to 1 s as an operator can, for the tests'
//! ttl 6 s), and on a real agent when `CONSUL_HTTP_ADDR` names one (ttl 20
//! s, Consul's default minimum); without it that test says it is skipped.

mod support;

use std::time::Duration;

use pgpilot::dcs::consul::{ConsulDcs, ConsulSettings};
use pgpilot::dcs::{Cluster, Dcs, keys};
use support::cluster::{ClusterOptions, TestCluster, Timing};
use support::consul_emulator::ConsulEmulator;
use support::eventually;
use support::families::{
    ctl_list, failsafe_lists_both, kill_9_failover, outage_demotes_and_nobody_promotes,
    outage_with_failsafe_keeps_writing, roles, switchover_via_ctl, writable,
};

const BOOT: Duration = Duration::from_secs(90);

/// The cluster as a fresh read of the agent shows it.
async fn read(addr: &str, c: &TestCluster) -> Option<Cluster> {
    let reader = ConsulDcs::new(
        ConsulSettings::plain(&format!("http://{addr}")),
        &keys::cluster_prefix("/it/", &c.scope),
        "test-reader".into(),
        Duration::from_secs(20),
        Duration::from_secs(5),
    );
    reader.load_cluster_fresh().await.ok()
}

async fn bootstrap_switchover_failover(addr: String, timing: Timing) {
    let opts = ClusterOptions {
        consul: Some(addr.clone()),
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(3, timing, opts);
    for i in 0..3 {
        c.add_to_section(i, "consul", "register_service: true\nservice_tags: [it]");
    }
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    // register_service: the primary is the one passing instance tagged
    // primary (and master), at its PostgreSQL port.
    eventually(Duration::from_secs(30), "the primary's service", || async {
        (primary_service_port(&addr, &c).await? == c.nodes[primary].pg_port).then_some(())
    })
    .await;

    // Patroni's layout: the leader key names the primary and is held by the
    // session that holds its member key; initialize holds the system
    // identifier; config is there.
    let cl = eventually(
        Duration::from_secs(20),
        "three members in Consul",
        || async {
            let cl = read(&addr, &c).await?;
            (cl.members.len() == 3).then_some(cl)
        },
    )
    .await;
    let leader = cl.leader.as_ref().expect("leader key");
    assert_eq!(leader.name, c.nodes[primary].name);
    assert!(
        leader.session.is_some(),
        "the leader key is held by a session"
    );
    assert_eq!(
        leader.session,
        cl.member(&leader.name).and_then(|m| m.session.clone()),
        "leader and member keys on one session"
    );
    let sysid = c.status(primary).await.expect("status")["database_system_identifier"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(cl.initialize.as_deref(), Some(sysid.as_str()));
    assert!(cl.config.is_some(), "config key");
    assert!(writable(&c, primary).await, "the primary takes writes");

    // pgpilotctl reads the same picture through the file's consul section,
    // and so does Patroni's own patronictl (its consul extra).
    let rows = ctl_list(&c);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let yml = c.root.join("patronictl.yml");
    std::fs::write(
        &yml,
        format!(
            "scope: {}\nnamespace: /it/\nconsul:\n  host: {addr}\n",
            c.scope
        ),
    )
    .expect("write patronictl.yml");
    let patronictl = std::env::var_os("PATRONICTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/opt/patroni/bin/patronictl".into());
    let out = std::process::Command::new(&patronictl)
        .arg("-c")
        .arg(&yml)
        .args(["list", "--format", "json"])
        .env("HOME", &c.root)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {} (scripts/lib.sh ensure_patronictl installs it): {e}",
                patronictl.display()
            )
        });
    assert!(
        out.status.success(),
        "patronictl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("patronictl json list");
    assert_eq!(
        roles(&theirs),
        roles(&rows),
        "patronictl and pgpilotctl disagree"
    );

    // A switchover through pgpilotctl: the candidate leads, the old
    // primary follows it.
    let candidate = (primary + 1) % 3;
    switchover_via_ctl(&c, primary, candidate).await;
    let cl = read(&addr, &c).await.expect("read after the switchover");
    assert_eq!(cl.leader_name(), Some(c.nodes[candidate].name.as_str()));
    let primary = candidate;
    // Re-tagged: the candidate is now the primary's service.
    eventually(
        Duration::from_secs(30),
        "the service follows the switchover",
        || async {
            (primary_service_port(&addr, &c).await? == c.nodes[primary].pg_port).then_some(())
        },
    )
    .await;

    // kill -9 of the primary's daemon and postmaster: Consul invalidates
    // its session by ttl (twice the session TTL of ttl / 2), and a replica
    // takes over.
    let ttl = c.timing.ttl;
    let (new_primary, other) = kill_9_failover(&mut c, primary, ttl, "consul").await;
    let cl = read(&addr, &c).await.expect("read after failover");
    assert_eq!(cl.leader_name(), Some(c.nodes[new_primary].name.as_str()));
    assert!(
        cl.member(&c.nodes[primary].name).is_none(),
        "the killed node's member key went with its session"
    );

    // The killed node comes back and rejoins as a replica.
    c.start(primary);
    eventually(BOOT, "the old primary rejoins as a replica", || async {
        c.is_streaming_replica(primary).await.then_some(())
    })
    .await;
    assert_eq!(c.primary().await, Some(new_primary));

    // A clean stop deregisters the member's service.
    let id = format!("{}/{}", c.scope, c.nodes[other].name);
    assert!(services(&addr).await.contains_key(&id), "{id} registered");
    c.signal(other, nix::sys::signal::Signal::SIGTERM);
    c.wait_exit(other, Duration::from_secs(60)).await;
    assert!(
        !services(&addr).await.contains_key(&id),
        "{id} still registered"
    );
}

/// The port of the one passing instance of the cluster's service tagged
/// `primary` (what `primary.<scope>.service.consul` resolves to).
async fn primary_service_port(addr: &str, c: &TestCluster) -> Option<u16> {
    let url = format!(
        "http://{addr}/v1/health/service/{}?passing&tag=primary",
        c.scope
    );
    let v: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
    let list = v.as_array()?;
    if list.len() != 1 {
        return None;
    }
    let tags = list[0]["Service"]["Tags"].as_array()?;
    assert!(
        tags.iter().any(|t| t == "master") && tags.iter().any(|t| t == "it"),
        "{tags:?}"
    );
    u16::try_from(list[0]["Service"]["Port"].as_u64()?).ok()
}

/// The agent's services, by ID.
async fn services(addr: &str) -> serde_json::Map<String, serde_json::Value> {
    let v: serde_json::Value = reqwest::get(format!("http://{addr}/v1/agent/services"))
        .await
        .expect("agent services")
        .json()
        .await
        .expect("json");
    v.as_object().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_switchover_and_kill_9_failover_on_the_consul_emulator() {
    let consul = ConsulEmulator::with_session_ttl_min(Duration::from_secs(1));
    bootstrap_switchover_failover(consul.addr(), Timing::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_switchover_and_kill_9_failover_on_a_real_consul() {
    let Ok(addr) = std::env::var("CONSUL_HTTP_ADDR") else {
        eprintln!("skipped: CONSUL_HTTP_ADDR not set");
        return;
    };
    let addr = addr
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let timing = Timing {
        ttl: 20,
        loop_wait: 1,
        retry_timeout: 3,
    };
    bootstrap_switchover_failover(addr, timing).await;
}

/// The primary alone cut off from Consul (its connection to the agent
/// reset, the process alive): the agent invalidates its session by ttl
/// after the last renewal. The primary stops taking writes by its fencing
/// point, which rests on `ttl / 2` (the session TTL) counted from a renewal
/// the agent answered, and so before the other node can take the key and
/// promote: never two writable primaries. One cluster again after the cut
/// heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_cut_off_from_consul_is_fenced_before_a_takeover() {
    let consul = ConsulEmulator::with_session_ttl_min(Duration::from_secs(1));
    let opts = ClusterOptions {
        consul: Some(consul.addr()),
        dcs_proxies: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    let old = c.wait_healthy(BOOT).await;
    let other = 1 - old;
    support::families::cut_off_primary_is_replaced(&c, old, other, BOOT).await;
}

/// Consul frozen (no answer, connections open) for 3×ttl without failsafe
/// mode: the primary stops taking writes within ttl, nobody answers
/// `/primary` after ttl, the replica takes no write; once Consul is back
/// there is one primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_frozen_without_failsafe_demotes_and_nobody_promotes() {
    let consul = ConsulEmulator::with_session_ttl_min(Duration::from_secs(1));
    let opts = ClusterOptions {
        consul: Some(consul.addr()),
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    assert!(writable(&c, primary).await, "the primary takes writes");
    consul.freeze();
    outage_demotes_and_nobody_promotes(&c, primary).await;
    consul.thaw();
    c.wait_healthy(BOOT).await;
}

/// Consul stopped for 3×ttl with failsafe mode: the replica confirms the
/// primary over REST, so it keeps taking writes the whole time, and it is
/// still the primary once Consul is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_stopped_with_failsafe_keeps_the_primary_writable() {
    let mut consul = ConsulEmulator::with_session_ttl_min(Duration::from_secs(1));
    let opts = ClusterOptions {
        consul: Some(consul.addr()),
        extra_dcs: vec![("failsafe_mode".into(), "true".into())],
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(2, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    failsafe_lists_both(&c, primary).await;
    assert!(writable(&c, primary).await, "the primary takes writes");
    consul.stop();
    outage_with_failsafe_keeps_writing(&c, primary).await;
    consul.resume();
    let p = c.wait_healthy(BOOT).await;
    assert_eq!(p, primary, "the primary changed");
    assert!(writable(&c, primary).await, "write after Consul returned");
}
