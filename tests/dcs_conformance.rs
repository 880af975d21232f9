//! One DCS conformance suite, written once over a node factory and run
//! against the in-memory store, a real etcd, a real ZooKeeper, the Consul
//! emulator (tests/support/consul_emulator) and, when `CONSUL_HTTP_ADDR`
//! names one, a real Consul agent.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use pgpilot::dcs::consul::{ConsulDcs, ConsulSettings};
use pgpilot::dcs::etcd::{EtcdDcs, EtcdSettings};
use pgpilot::dcs::etcd2::Etcd2Dcs;
use pgpilot::dcs::memory::{MemoryDcs, MemoryStore};
use pgpilot::dcs::zookeeper::{ZkSettings, ZooKeeperDcs};
use pgpilot::dcs::{Dcs, DcsError, LeaderHold, MemberData, Status, Version, WatchEvent};
use support::consul_emulator::ConsulEmulator;
use support::etcd::{EtcdCluster, EtcdOptions, EtcdServer, EtcdTlsFiles};
use support::eventually;
use support::zookeeper::{ZkEnsemble, ZkServer};

/// Makes a node of the cluster under test, given its member name.
type NodeFactory = Box<dyn Fn(&str) -> Box<dyn Dcs> + Send + Sync>;

/// How a case takes the store away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// The server is gone (process stopped; the memory store switched off).
    Stop,
    /// The server is there but answers nothing (SIGSTOP of the test's own
    /// etcd; the memory store switched off).
    Freeze,
}

/// Takes the store away (`true`) or brings it back (`false`).
type OutageControl = Box<dyn Fn(Outage, bool) + Send + Sync>;

/// One backend under test, as its factory made it: nodes (by member name)
/// that share one cluster prefix of one store, and the store's outages.
/// The store lives as long as this.
struct Backend {
    ttl: Duration,
    retry_timeout: Duration,
    make: NodeFactory,
    outage: OutageControl,
}

impl Backend {
    fn node(&self, name: &str) -> Box<dyn Dcs> {
        (self.make)(name)
    }

    fn outage(&self, kind: Outage, down: bool) {
        (self.outage)(kind, down)
    }
}

const PREFIX: &str = "/service/conformance";

/// The in-memory backend's factory.
fn memory_backend() -> Backend {
    let store = MemoryStore::new();
    let ttl = Duration::from_secs(10);
    let retry_timeout = Duration::from_secs(3);
    let s = store.clone();
    Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| {
            Box::new(MemoryDcs::new(
                s.clone(),
                PREFIX.into(),
                name.into(),
                ttl,
                retry_timeout,
            ))
        }),
        // A store switched off is both: nothing answers.
        outage: Box::new(move |_, down| store.set_reachable(!down)),
    }
}

/// The etcd v2 backend's factory: an etcd of its own, v2 API enabled.
fn etcd2_backend() -> Backend {
    let server = EtcdServer::start();
    let ttl = Duration::from_secs(2);
    let retry_timeout = Duration::from_secs(1);
    let ep = server.endpoint();
    let server = Mutex::new(server);
    Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| {
            Box::new(Etcd2Dcs::new(
                vec![ep.clone()],
                PREFIX.into(),
                name.into(),
                ttl,
                retry_timeout,
            ))
        }),
        outage: Box::new(move |kind, down| {
            let mut server = server.lock().unwrap_or_else(|e| e.into_inner());
            match (kind, down) {
                (Outage::Stop, true) => server.stop(),
                (Outage::Stop, false) => server.restart(),
                (Outage::Freeze, true) => server.pause(),
                (Outage::Freeze, false) => server.resume(),
            }
        }),
    }
}

/// The etcd backend's factory: an etcd of its own.
fn etcd_backend() -> Backend {
    etcd_backend_ttl(Duration::from_secs(2))
}

fn etcd_backend_ttl(ttl: Duration) -> Backend {
    let server = EtcdServer::start();
    let retry_timeout = Duration::from_secs(1);
    let ep = server.endpoint();
    let server = Mutex::new(server);
    Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| {
            Box::new(EtcdDcs::new(
                vec![ep.clone()],
                None,
                PREFIX.into(),
                name.into(),
                ttl,
                retry_timeout,
            ))
        }),
        outage: Box::new(move |kind, down| {
            let mut server = server.lock().unwrap_or_else(|e| e.into_inner());
            match (kind, down) {
                (Outage::Stop, true) => server.stop(),
                (Outage::Stop, false) => server.restart(),
                (Outage::Freeze, true) => server.pause(),
                (Outage::Freeze, false) => server.resume(),
            }
        }),
    }
}

/// A directory removed when dropped (test certificates).
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new(what: &str) -> ScratchDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        ScratchDir(std::env::temp_dir().join(format!(
            "pgpilot-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        )))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The settings of an `etcd3` section written as YAML (the daemon's path:
/// TLS files read, endpoints and credentials chosen as from a file).
fn etcd_settings(yaml: &str) -> EtcdSettings {
    let section: pgpilot::config::Etcd = serde_yaml_ng::from_str(yaml).expect("etcd3 section");
    EtcdSettings::from_config("etcd3", &section).expect("etcd3 settings")
}

/// The settings of an `etcd` (v2 API) section written as YAML.
fn etcd2_settings(yaml: &str) -> EtcdSettings {
    let section: pgpilot::config::Etcd = serde_yaml_ng::from_str(yaml).expect("etcd section");
    EtcdSettings::from_config("etcd", &section).expect("etcd settings")
}

/// Which of etcd's APIs a backend speaks.
#[derive(Clone, Copy)]
enum Api {
    V3,
    V2,
}

/// An etcd of its own started with `options`, its nodes made with the
/// settings of `yaml` (the section, without endpoints: `hosts` is added).
/// `keep` lives as long as the backend (certificates).
fn etcd_backend_with(
    options: EtcdOptions,
    yaml: &str,
    setup: impl FnOnce(&EtcdServer),
    keep: Option<ScratchDir>,
) -> Backend {
    etcd_backend_on(Api::V3, options, yaml, setup, keep)
}

fn etcd_backend_on(
    api: Api,
    options: EtcdOptions,
    yaml: &str,
    setup: impl FnOnce(&EtcdServer),
    keep: Option<ScratchDir>,
) -> Backend {
    let server = EtcdServer::start_with(options);
    setup(&server);
    let ttl = Duration::from_secs(2);
    let retry_timeout = Duration::from_secs(1);
    let section = format!("hosts: [{}]\n{yaml}", server.endpoint());
    let settings = match api {
        Api::V3 => etcd_settings(&section),
        Api::V2 => etcd2_settings(&section),
    };
    let server = Mutex::new(server);
    Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| -> Box<dyn Dcs> {
            match api {
                Api::V3 => Box::new(EtcdDcs::with_settings(
                    settings.clone(),
                    PREFIX.into(),
                    name.into(),
                    ttl,
                    retry_timeout,
                )),
                Api::V2 => Box::new(Etcd2Dcs::with_settings(
                    settings.clone(),
                    PREFIX.into(),
                    name.into(),
                    ttl,
                    retry_timeout,
                )),
            }
        }),
        outage: Box::new(move |kind, down| {
            let _held = &keep;
            let mut server = server.lock().unwrap_or_else(|e| e.into_inner());
            match (kind, down) {
                (Outage::Stop, true) => server.stop(),
                (Outage::Stop, false) => server.restart(),
                (Outage::Freeze, true) => server.pause(),
                (Outage::Freeze, false) => server.resume(),
            }
        }),
    }
}

/// Test certificates in a scratch dir, and etcd's TLS files from them.
fn etcd_certs() -> (ScratchDir, support::tls::Certs, EtcdTlsFiles) {
    let dir = ScratchDir::new("etcd-certs");
    let certs = support::tls::make_certs(&dir.0);
    let files = EtcdTlsFiles {
        cert: certs.server_cert.clone(),
        key: certs.server_key.clone(),
        ca: certs.ca.clone(),
    };
    (dir, certs, files)
}

/// etcd over HTTPS demanding client certificates (`--client-cert-auth`);
/// the nodes trust the test CA (`cacert`) and present the client
/// certificate (`cert`, `key`).
fn etcd_tls_backend() -> Backend {
    etcd_tls_backend_on(Api::V3)
}

/// The same on the v2 API (Patroni's `etcd` section).
fn etcd2_tls_backend() -> Backend {
    etcd_tls_backend_on(Api::V2)
}

fn etcd_tls_backend_on(api: Api) -> Backend {
    let (dir, certs, files) = etcd_certs();
    let yaml = format!(
        "protocol: https\ncacert: {}\ncert: {}\nkey: {}\n",
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    let options = EtcdOptions {
        tls: Some(files),
        client_cert_auth: true,
        ..EtcdOptions::default()
    };
    etcd_backend_on(api, options, &yaml, |_| {}, Some(dir))
}

const ETCD_USER: &str = "pg";
const ETCD_PASSWORD: &str = "pg-Secret";

/// etcd with RBAC on: the nodes authenticate as a user whose role may read
/// and write `/service/`; tokens unused for 2 s lapse (`--auth-token-ttl`),
/// so the cases' pauses make the client refresh its token.
fn etcd_auth_backend() -> Backend {
    let options = EtcdOptions {
        auth_token_ttl: Some(2),
        ..EtcdOptions::default()
    };
    let yaml = format!("username: {ETCD_USER}\npassword: {ETCD_PASSWORD}\n");
    etcd_backend_with(
        options,
        &yaml,
        |s| s.enable_auth("root-Secret", ETCD_USER, ETCD_PASSWORD),
        None,
    )
}

/// etcd's v2 authentication on: the nodes send a user (HTTP Basic) whose
/// role may read and write `/service/*`; the guest role has no rights left.
fn etcd2_auth_backend() -> Backend {
    let yaml = format!("username: {ETCD_USER}\npassword: {ETCD_PASSWORD}\n");
    etcd_backend_on(
        Api::V2,
        EtcdOptions::default(),
        &yaml,
        |s| s.enable_v2_auth("root-Secret", ETCD_USER, ETCD_PASSWORD),
        None,
    )
}

/// A 3-member etcd cluster; the nodes know every member (`hosts`), in
/// order. No outage of the whole cluster (the single server's cases cover
/// those); `etcd_cluster::member_in_use_killed_every_call_answers` kills
/// members.
fn etcd_cluster_backend() -> Backend {
    let cluster = EtcdCluster::start(3);
    let ttl = Duration::from_secs(2);
    let retry_timeout = Duration::from_secs(1);
    let settings = EtcdSettings::plain(cluster.endpoints(), None);
    Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| {
            Box::new(EtcdDcs::with_settings(
                settings.clone(),
                PREFIX.into(),
                name.into(),
                ttl,
                retry_timeout,
            ))
        }),
        outage: Box::new(move |_, _| {
            let _held = &cluster;
            panic!("no whole-cluster outage in these cases")
        }),
    }
}

/// The Consul backend's factory: an emulator of its own, configured (as an
/// operator configures an agent) to accept the short session TTLs of the
/// cases: `ttl` 4 s asks for sessions of 2 s, invalidated by 4 s.
fn consul_backend() -> Backend {
    let emulator = ConsulEmulator::with_session_ttl_min(Duration::from_millis(500));
    let ttl = Duration::from_secs(4);
    let retry_timeout = Duration::from_secs(1);
    let url = emulator.url();
    let emulator = Mutex::new(emulator);
    Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| {
            Box::new(ConsulDcs::new(
                ConsulSettings::plain(&url),
                PREFIX,
                name.into(),
                ttl,
                retry_timeout,
            ))
        }),
        outage: Box::new(move |kind, down| {
            let mut e = emulator.lock().unwrap_or_else(|e| e.into_inner());
            match (kind, down) {
                (Outage::Stop, true) => e.stop(),
                (Outage::Stop, false) => e.resume(),
                (Outage::Freeze, true) => e.freeze(),
                (Outage::Freeze, false) => e.thaw(),
            }
        }),
    }
}

/// A real Consul agent at `CONSUL_HTTP_ADDR` (`host:port` or a URL), a
/// prefix of its own per backend; `None` without one. Consul's default
/// `session_ttl_min` is 10 s, so `ttl` is 20 s. No outages: the agent is
/// not the test's to stop.
fn real_consul_backend() -> Option<Backend> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let addr = std::env::var("CONSUL_HTTP_ADDR").ok()?;
    let url = if addr.contains("://") {
        addr
    } else {
        format!("http://{addr}")
    };
    let prefix = format!(
        "/pgpilot-conformance/{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let ttl = Duration::from_secs(20);
    let retry_timeout = Duration::from_secs(3);
    Some(Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| {
            let mut settings = ConsulSettings::plain(&url);
            if let Ok(token) = std::env::var("CONSUL_HTTP_TOKEN") {
                settings = settings.with_token(token);
            }
            Box::new(ConsulDcs::new(
                settings,
                &prefix,
                name.into(),
                ttl,
                retry_timeout,
            ))
        }),
        outage: Box::new(|_, _| {}),
    })
}

/// At most this many ZooKeeper servers (JVMs) at once: started together on
/// a small shared machine, their first answers take longer than the 1 s
/// `retry_timeout` the cases use.
const ZK_AT_ONCE: usize = 2;

/// A slot among the [`ZK_AT_ONCE`]; released when dropped.
struct ZkSlot;

static ZK_SLOTS: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

impl ZkSlot {
    fn take() -> ZkSlot {
        let (m, cv) = &ZK_SLOTS;
        let mut n = m.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= ZK_AT_ONCE {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        ZkSlot
    }
}

impl Drop for ZkSlot {
    fn drop(&mut self) {
        let (m, cv) = &ZK_SLOTS;
        *m.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cv.notify_one();
    }
}

/// The ZooKeeper backend's factory: a standalone server of its own (tick
/// 500 ms: session timeouts of 1 to 10 s are granted as asked).
fn zookeeper_backend() -> Backend {
    zookeeper_backend_ttl(Duration::from_secs(2))
}

/// For the outage cases: a session that outlives the seven calls the case
/// makes while the server is away (the client concludes its session lost
/// 1.4 timeouts after its last answer, and then rightly answers `None`,
/// not `Unreachable`, from `keep_alive`).
fn zookeeper_backend_long() -> Backend {
    zookeeper_backend_ttl(Duration::from_secs(10))
}

fn zk_settings(server: String) -> ZkSettings {
    ZkSettings {
        servers: vec![server],
        acls: Vec::new(),
        auth: Vec::new(),
        tls: None,
    }
}

/// A fresh server's first requests (session, create, multi-read) run
/// through its JVM's cold code and, on a loaded machine, can take longer than
/// a case's `retry_timeout`: made once here, with a long deadline, on a
/// thread and runtime of their own (the factory runs inside the case's).
fn zk_warm_up(server: &ZkServer) {
    zk_warm_up_with(zk_settings(server.server()));
}

fn zk_warm_up_with(settings: ZkSettings) {
    let warm = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let long = Duration::from_secs(20);
            let n = ZooKeeperDcs::new(settings, "/warm-up".into(), "w".into(), long, long);
            n.touch_member(&member("replica")).await?;
            n.attempt_to_acquire_leader().await?;
            n.set_config_value("{}", None).await?;
            n.load_cluster_fresh().await?;
            n.delete_cluster().await?;
            n.release_session().await
        })
    });
    warm.join()
        .expect("warm-up thread")
        .expect("zookeeper warm-up");
}

/// A 3-server ensemble (three JVMs: it takes all the slots); nodes know
/// every server. No outage of the whole ensemble (the single server's cases
/// cover those); `zookeeper_ensemble::one_member_down_keeps_the_session`
/// takes members away one at a time.
fn zookeeper_ensemble_backend() -> Backend {
    let slots: Vec<ZkSlot> = (0..ZK_AT_ONCE).map(|_| ZkSlot::take()).collect();
    let ensemble = ZkEnsemble::start(3, 500);
    for m in &ensemble.members {
        zk_warm_up(m);
    }
    let (ttl, retry_timeout) = (Duration::from_secs(2), Duration::from_secs(1));
    let settings = ZkSettings {
        servers: ensemble.servers(),
        acls: Vec::new(),
        auth: Vec::new(),
        tls: None,
    };
    Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| {
            Box::new(ZooKeeperDcs::new(
                settings.clone(),
                PREFIX.into(),
                name.into(),
                ttl,
                retry_timeout,
            ))
        }),
        outage: Box::new(move |_, _| {
            let _held = (&ensemble, &slots);
            panic!("no whole-ensemble outage in these cases")
        }),
    }
}

/// The settings of a `zookeeper` section written as YAML (TLS files read
/// as the daemon reads them).
fn zk_settings_yaml(yaml: &str) -> ZkSettings {
    pgpilot::tls::install_provider();
    let section: pgpilot::config::zookeeper::ZooKeeper =
        serde_yaml_ng::from_str(yaml).expect("zookeeper section");
    ZkSettings::from_config(&section).expect("zookeeper settings")
}

/// ZooKeeper's TLS client port, demanding a client certificate of the
/// test CA; the nodes connect with `use_ssl`, `cacert`, `cert` and `key`.
/// No outages (the plain server's cases cover those).
fn zookeeper_tls_backend() -> Backend {
    let slot = ZkSlot::take();
    let dir = ScratchDir::new("zk-certs");
    let certs = support::tls::make_certs(&dir.0);
    let server = ZkServer::start_tls(500, &certs.server_cert, &certs.server_key, &certs.ca);
    let settings = zk_settings_yaml(&format!(
        "hosts: [{}]\nuse_ssl: true\ncacert: {}\ncert: {}\nkey: {}\n",
        server.secure_server(),
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    ));
    zk_warm_up_with(settings.clone());
    // Twice the plain server's: every new session costs a TLS handshake
    // (ECDSA on the server's JVM), which on a loaded machine took more
    // than a second.
    let (ttl, retry_timeout) = (Duration::from_secs(4), Duration::from_secs(2));
    Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| {
            Box::new(ZooKeeperDcs::new(
                settings.clone(),
                PREFIX.into(),
                name.into(),
                ttl,
                retry_timeout,
            ))
        }),
        outage: Box::new(move |_, _| {
            let _held = (&server, &dir, &slot);
            panic!("no outage in the TLS cases")
        }),
    }
}

/// Nodes on a server the caller runs (no outages).
fn zookeeper_backend_on(server: &ZkServer) -> Backend {
    let (ttl, retry_timeout) = (Duration::from_secs(2), Duration::from_secs(1));
    let settings = zk_settings(server.server());
    Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| {
            Box::new(ZooKeeperDcs::new(
                settings.clone(),
                PREFIX.into(),
                name.into(),
                ttl,
                retry_timeout,
            ))
        }),
        outage: Box::new(|_, _| panic!("no outage on a server the caller runs")),
    }
}

fn zookeeper_backend_ttl(ttl: Duration) -> Backend {
    let slot = ZkSlot::take();
    let server = ZkServer::start(500);
    zk_warm_up(&server);
    let retry_timeout = Duration::from_secs(1);
    let settings = zk_settings(server.server());
    let server = Mutex::new(server);
    Backend {
        ttl,
        retry_timeout,
        make: Box::new(move |name| {
            Box::new(ZooKeeperDcs::new(
                settings.clone(),
                PREFIX.into(),
                name.into(),
                ttl,
                retry_timeout,
            ))
        }),
        outage: Box::new(move |kind, down| {
            let _slot = &slot;
            let mut server = server.lock().unwrap_or_else(|e| e.into_inner());
            match (kind, down) {
                (Outage::Stop, true) => server.stop(),
                (Outage::Stop, false) => server.restart(),
                (Outage::Freeze, true) => server.pause(),
                (Outage::Freeze, false) => server.resume(),
            }
        }),
    }
}

fn member(role: &str) -> MemberData {
    MemberData {
        conn_url: "postgres://127.0.0.1:5432/postgres".into(),
        api_url: "http://127.0.0.1:8008/patroni".into(),
        state: "running".into(),
        role: role.into(),
        version: "4.1.4".into(),
        ..MemberData::default()
    }
}

// ---------------------------------------------------------------- the suite

async fn acquire_is_exclusive(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    assert!(!c.attempt_to_acquire_leader().await.unwrap().is_held());
    assert!(
        !a.attempt_to_acquire_leader().await.unwrap().is_held(),
        "create-only even for the holder"
    );
    let cl = c.load_cluster().await.unwrap();
    assert_eq!(cl.leader_name(), Some("a"));
}

async fn update_leader_only_for_holder(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let leader = a.load_cluster().await.unwrap().leader.unwrap();
    assert!(a.update_leader(&leader).await.unwrap().is_held());
    assert!(!c.update_leader(&leader).await.unwrap().is_held());
    // Refreshing does not rewrite the key (no watch storm).
    let again = a.load_cluster().await.unwrap().leader.unwrap();
    assert_eq!(again.version, leader.version);
    assert_eq!(again.name, "a");
    // Gone => false.
    a.delete_leader().await.unwrap();
    assert!(!a.update_leader(&leader).await.unwrap().is_held());
}

async fn delete_leader_only_own(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    // A second process with a's name (docs/ha.md §3.4), with a session of
    // its own.
    let twin = b.node("a");
    twin.touch_member(&MemberData::default()).await.unwrap();
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let leader = c.load_cluster().await.unwrap().leader.unwrap();
    let session = leader.session.expect("the leader key's session");
    assert!(a.holds_session(&session));
    assert!(!twin.holds_session(&session) && !c.holds_session(&session));
    assert!(!c.delete_leader().await.unwrap(), "not c's key");
    assert!(
        !twin.delete_leader().await.unwrap(),
        "my name, not my session"
    );
    assert_eq!(c.load_cluster().await.unwrap().leader_name(), Some("a"));
    assert!(a.delete_leader().await.unwrap());
    assert!(c.load_cluster().await.unwrap().leader.is_none());
    assert!(!a.delete_leader().await.unwrap(), "already gone");
    assert!(c.attempt_to_acquire_leader().await.unwrap().is_held());
}

/// Several clients race for the leader key at once, round after round:
/// exactly one wins each round, and the others' update_leader and
/// delete_leader, sent at the same time, neither take nor remove it.
async fn concurrent_acquire_has_one_winner(b: &Backend) {
    let names = ["n0", "n1", "n2", "n3", "n4"];
    let nodes: Vec<Box<dyn Dcs>> = names.iter().map(|n| b.node(n)).collect();
    let mut versions = Vec::new();
    for round in 0..4 {
        let results =
            futures_util::future::join_all(nodes.iter().map(|n| n.attempt_to_acquire_leader()))
                .await;
        let winners: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_ref().unwrap().is_held())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let w = winners[0];
        let leader = nodes[w].load_cluster_fresh().await.unwrap().leader.unwrap();
        assert_eq!(leader.name, names[w]);
        // Every loser tries to renew the winner's key as read, and to
        // delete it, all at once with the winner's own renewal.
        let losers = nodes.iter().enumerate().filter(|(i, _)| *i != w);
        let tries = losers.map(|(_, n)| {
            let leader = leader.clone();
            async move {
                let held = n.update_leader(&leader).await.unwrap().is_held();
                n.delete_leader().await.unwrap();
                held
            }
        });
        let (stolen, own) = tokio::join!(
            futures_util::future::join_all(tries),
            nodes[w].update_leader(&leader)
        );
        assert!(stolen.iter().all(|h| !h), "round {round}: a loser held it");
        assert!(own.unwrap().is_held(), "round {round}: the winner lost it");
        let after = nodes[w].load_cluster_fresh().await.unwrap().leader.unwrap();
        assert_eq!(after, leader, "round {round}: the key moved");
        assert!(
            !versions.contains(&after.version),
            "round {round}: a version came back"
        );
        versions.push(after.version);
        nodes[w].delete_leader().await.unwrap();
        assert!(
            nodes[w]
                .load_cluster_fresh()
                .await
                .unwrap()
                .leader
                .is_none()
        );
    }
}

/// `update_leader` compares and swaps on the key as the caller read it: a
/// read from before the key was taken again (a new version) loses.
async fn update_leader_compares_the_version_given(b: &Backend) {
    let a = b.node("a");
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let first = a.load_cluster_fresh().await.unwrap().leader.unwrap();
    a.delete_leader().await.unwrap();
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let second = a.load_cluster_fresh().await.unwrap().leader.unwrap();
    assert_ne!(first.version, second.version);
    assert_eq!(
        a.update_leader(&first).await.unwrap(),
        LeaderHold::Lost,
        "a stale version"
    );
    assert!(a.update_leader(&second).await.unwrap().is_held());
    let foreign = pgpilot::dcs::Leader {
        version: Version::from_text("not a version of this store"),
        ..second.clone()
    };
    assert_eq!(a.update_leader(&foreign).await.unwrap(), LeaderHold::Lost);
    // Nothing of that wrote the key.
    assert_eq!(
        a.load_cluster_fresh().await.unwrap().leader.unwrap(),
        second
    );
}

/// Two processes with one member name (a duplicate daemon, or a restarted
/// one while its predecessor's session lives): the second never renews,
/// re-takes or deletes the first one's leader key, whatever the name says
/// (issue 14 §2); and a late delete by the first never removes a key the
/// second took afterwards.
async fn same_name_never_touches_anothers_leader_key(b: &Backend) {
    let (first, second) = (b.node("a"), b.node("a"));
    first.touch_member(&member("primary")).await.unwrap();
    assert!(first.attempt_to_acquire_leader().await.unwrap().is_held());
    let held = second.load_cluster_fresh().await.unwrap().leader.unwrap();
    assert_eq!(held.name, "a");
    // Without a session of its own, then with one.
    for round in 0..2 {
        assert_eq!(
            second.update_leader(&held).await.unwrap(),
            LeaderHold::Lost,
            "round {round}: update_leader on the name alone"
        );
        second.delete_leader().await.unwrap();
        assert!(!second.attempt_to_acquire_leader().await.unwrap().is_held());
        let now = second.load_cluster_fresh().await.unwrap().leader.unwrap();
        assert_eq!(now, held, "round {round}: the first one's key changed");
        second.touch_member(&member("uninitialized")).await.unwrap();
    }
    assert!(first.update_leader(&held).await.unwrap().is_held());
    // The first one lets go; the second takes the key; the first one's
    // delete, late, leaves it alone.
    first.delete_leader().await.unwrap();
    assert!(second.attempt_to_acquire_leader().await.unwrap().is_held());
    let taken = first.load_cluster_fresh().await.unwrap().leader.unwrap();
    first.delete_leader().await.unwrap();
    assert_eq!(
        first.update_leader(&taken).await.unwrap(),
        LeaderHold::Lost,
        "the first one on the second one's key"
    );
    assert_eq!(
        second.load_cluster_fresh().await.unwrap().leader,
        Some(taken.clone())
    );
    assert!(second.update_leader(&taken).await.unwrap().is_held());
}

/// A daemon restarted on the same data directory inherits its
/// predecessor's session (from the node's own disk) and keeps the leader
/// key: `update_leader` moves it onto the new session, conditional on its
/// version and the inherited session. Another process of that name, which
/// inherited nothing, still cannot touch it.
async fn restarted_daemon_keeps_the_key_of_its_inherited_session(b: &Backend) {
    let (old, restarted, stranger) = (b.node("a"), b.node("a"), b.node("a"));
    old.touch_member(&member("primary")).await.unwrap();
    assert!(old.attempt_to_acquire_leader().await.unwrap().is_held());
    let inherited = old.session().expect("the holder has a session");
    let held = restarted
        .load_cluster_fresh()
        .await
        .unwrap()
        .leader
        .unwrap();
    assert_eq!(
        stranger.update_leader(&held).await.unwrap(),
        LeaderHold::Lost,
        "no inherited session: the name alone counts for nothing"
    );
    restarted.inherit_session(&inherited);
    assert!(restarted.update_leader(&held).await.unwrap().is_held());
    let moved = restarted
        .load_cluster_fresh()
        .await
        .unwrap()
        .leader
        .unwrap();
    assert_eq!(moved.name, "a");
    assert_eq!(
        moved.session,
        restarted.session(),
        "the key is on the new session"
    );
    assert_ne!(moved.session, Some(inherited));
    assert!(restarted.update_leader(&moved).await.unwrap().is_held());
    // The predecessor's late requests no longer touch it.
    assert_eq!(old.update_leader(&moved).await.unwrap(), LeaderHold::Lost);
    old.delete_leader().await.unwrap();
    assert_eq!(
        restarted.load_cluster_fresh().await.unwrap().leader,
        Some(moved)
    );
}

/// A holder that goes silent: the watch of another node reports the leader
/// key's expiry (no missed deletion).
async fn watch_reports_leader_expiry(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    let mut w = c.watch();
    wait_watch_ready(&*a, &mut w, b.retry_timeout * 5).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let got = tokio::time::timeout(b.ttl * 3, async {
        while let Some(ev) = w.next().await {
            if ev == WatchEvent::Leader && c.load_cluster_fresh().await.ok()?.leader.is_none() {
                return Some(());
            }
        }
        None
    })
    .await;
    assert_eq!(got, Ok(Some(())), "no Leader event for the expiry");
    drop(w);
}

async fn keys_expire_after_ttl(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    a.touch_member(&member("primary")).await.unwrap();
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let cl = c.load_cluster().await.unwrap();
    assert_eq!(cl.leader_name(), Some("a"));
    assert!(cl.member("a").is_some());
    let start = tokio::time::Instant::now();
    // Not renewed: both keys go once the lease lapses.
    eventually(
        b.ttl + Duration::from_secs(4),
        "leader+member expiry",
        || async {
            let cl = c.load_cluster().await.unwrap();
            (cl.leader.is_none() && cl.member("a").is_none()).then_some(())
        },
    )
    .await;
    assert!(
        start.elapsed() + Duration::from_millis(500) >= b.ttl,
        "expired too early: {:?}",
        start.elapsed()
    );
    // The holder notices, and its next write grants a fresh lease.
    let stale = pgpilot::dcs::Leader {
        name: "a".into(),
        version: Version::from_int(0),
        session: None,
    };
    assert!(!a.update_leader(&stale).await.unwrap().is_held());
    a.touch_member(&member("replica")).await.unwrap();
    let cl = c.load_cluster().await.unwrap();
    assert_eq!(cl.member("a").unwrap().data.role, "replica");
}

async fn renewal_keeps_keys(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    a.touch_member(&member("primary")).await.unwrap();
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let leader = a.load_cluster().await.unwrap().leader.unwrap();
    let until = tokio::time::Instant::now() + b.ttl * 2;
    while tokio::time::Instant::now() < until {
        assert!(a.update_leader(&leader).await.unwrap().is_held());
        a.touch_member(&member("primary")).await.unwrap();
        // Pacing: renewals spaced as a holder spaces them is the scenario.
        tokio::time::sleep(b.ttl / 4).await;
    }
    let cl = c.load_cluster().await.unwrap();
    assert_eq!(cl.leader_name(), Some("a"));
    assert!(cl.member("a").is_some());
}

/// `keep_alive` alone keeps the session (and the leader key on it) alive,
/// writes nothing, and never creates a session: none before the first
/// write, none after the session expired.
async fn keep_alive_keeps_keys_without_writing(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    assert!(a.keep_alive().await.unwrap().is_none(), "no session yet");
    a.touch_member(&member("primary")).await.unwrap();
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let before = c.load_cluster().await.unwrap();
    let until = tokio::time::Instant::now() + b.ttl * 2;
    while tokio::time::Instant::now() < until {
        assert!(a.keep_alive().await.unwrap().is_some());
        // Pacing: keep-alives spaced as a holder spaces them is the scenario.
        tokio::time::sleep(b.ttl / 4).await;
    }
    let cl = c.load_cluster().await.unwrap();
    assert_eq!(cl.leader_name(), Some("a"));
    assert_eq!(
        cl.leader.as_ref().unwrap().version,
        before.leader.as_ref().unwrap().version,
        "a keep-alive writes no key"
    );
    assert!(cl.member("a").is_some());
    // Stop: the keys lapse, and a keep-alive does not bring a session back.
    eventually(b.ttl + Duration::from_secs(4), "expiry", || async {
        let cl = c.load_cluster().await.unwrap();
        (cl.leader.is_none() && cl.member("a").is_none()).then_some(())
    })
    .await;
    assert!(a.keep_alive().await.unwrap().is_none(), "the lease is gone");
    assert!(a.keep_alive().await.unwrap().is_none());
    assert!(c.load_cluster().await.unwrap().leader.is_none());
}

async fn release_session_drops_keys_at_once(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    a.touch_member(&member("primary")).await.unwrap();
    c.touch_member(&member("replica")).await.unwrap();
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    a.release_session().await.unwrap();
    let cl = c.load_cluster().await.unwrap();
    assert!(cl.leader.is_none());
    assert!(cl.member("a").is_none());
    assert!(cl.member("c").is_some(), "other sessions untouched");
    // The node can come back with a new session.
    a.touch_member(&member("replica")).await.unwrap();
    assert!(c.load_cluster().await.unwrap().member("a").is_some());
}

async fn ttl_change_moves_keys_to_new_session(b: &Backend) {
    let a = b.node("a");
    a.touch_member(&member("primary")).await.unwrap();
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let before = a.load_cluster().await.unwrap();
    let s0 = before.leader.as_ref().unwrap().session.clone();
    a.set_timing(b.ttl + Duration::from_secs(1), b.retry_timeout);
    a.touch_member(&member("primary")).await.unwrap();
    assert!(
        a.update_leader(before.leader.as_ref().unwrap())
            .await
            .unwrap()
            .is_held()
    );
    let after = a.load_cluster().await.unwrap();
    let s1 = after.leader.as_ref().unwrap().session.clone();
    assert_ne!(s0, s1);
    assert_eq!(after.member("a").unwrap().session, s1);
    assert_eq!(after.leader_name(), Some("a"));
}

async fn initialize_create_only_then_overwrite(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    assert!(a.initialize(true, "").await.unwrap());
    assert!(!c.initialize(true, "").await.unwrap());
    assert_eq!(
        c.load_cluster().await.unwrap().initialize.as_deref(),
        Some("")
    );
    assert!(a.initialize(false, "7000000000000000001").await.unwrap());
    assert_eq!(
        c.load_cluster().await.unwrap().initialize.as_deref(),
        Some("7000000000000000001")
    );
    a.cancel_initialization().await.unwrap();
    assert!(c.load_cluster().await.unwrap().initialize.is_none());
}

async fn config_cas(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    assert!(a.set_config_value(r#"{"ttl":30}"#, None).await.unwrap());
    let v1 = c.load_cluster().await.unwrap().config.unwrap().version;
    assert!(
        a.set_config_value(r#"{"ttl":31}"#, Some(&v1))
            .await
            .unwrap()
    );
    // c still holds v1: stale.
    assert!(
        !c.set_config_value(r#"{"ttl":99}"#, Some(&v1))
            .await
            .unwrap()
    );
    let cfg = c.load_cluster().await.unwrap().config.unwrap();
    assert_eq!(cfg.value["ttl"], 31);
    assert!(
        c.set_config_value(r#"{"ttl":32}"#, Some(&cfg.version))
            .await
            .unwrap()
    );
    let cfg2 = c.load_cluster().await.unwrap().config.unwrap();
    assert_eq!(cfg2.value["ttl"], 32);
    assert_ne!(cfg2.version, cfg.version, "a write moves the version");
}

async fn failover_cas(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    assert!(
        a.set_failover_value(r#"{"leader":"a","member":"c"}"#, None)
            .await
            .unwrap()
    );
    let f = c.load_cluster().await.unwrap().failover.unwrap();
    assert_eq!(f.value.member.as_deref(), Some("c"));
    assert!(
        a.set_failover_value(r#"{"leader":"a","member":"x"}"#, Some(&f.version))
            .await
            .unwrap()
    );
    // c still holds the first version: stale, nothing written.
    assert!(!c.set_failover_value("{}", Some(&f.version)).await.unwrap());
    let f2 = c.load_cluster().await.unwrap().failover.unwrap();
    assert_eq!(f2.value.member.as_deref(), Some("x"));
    assert_ne!(f2.version, f.version);
    assert!(c.set_failover_value("{}", Some(&f2.version)).await.unwrap());
    assert!(
        c.load_cluster().await.unwrap().failover.is_none(),
        "{{}} = none"
    );
}

/// `sync` (docs/replication-modes.md §2): created only if absent, then
/// replaced and deleted only at the version read; a stale version writes
/// and deletes nothing.
async fn sync_key_cas(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    assert!(c.load_cluster().await.unwrap().sync.is_none());
    let v1 = r#"{"leader":"a","quorum":0,"sync_standby":null}"#;
    assert!(a.set_sync_state_value(v1, None).await.unwrap());
    // Absent was the condition: a second create loses.
    assert!(!c.set_sync_state_value(v1, None).await.unwrap());
    let s = c.load_cluster().await.unwrap().sync.unwrap();
    assert_eq!(s.value.leader.as_deref(), Some("a"));
    assert!(s.value.voters().is_empty());
    let v2 = r#"{"leader":"a","quorum":0,"sync_standby":"c"}"#;
    assert!(a.set_sync_state_value(v2, Some(&s.version)).await.unwrap());
    // c still holds the first version: stale, nothing written or deleted.
    assert!(!c.set_sync_state_value(v1, Some(&s.version)).await.unwrap());
    assert!(!c.delete_sync_state(&s.version).await.unwrap());
    let s2 = c.load_cluster().await.unwrap().sync.unwrap();
    assert!(s2.value.matches("c", false));
    assert_ne!(s2.version, s.version);
    assert!(c.delete_sync_state(&s2.version).await.unwrap());
    assert!(c.load_cluster().await.unwrap().sync.is_none());
    // Gone: deleting again at that version does nothing.
    assert!(!a.delete_sync_state(&s2.version).await.unwrap());
}

/// `failsafe` is written as given and read back as a map; the last write wins.
async fn failsafe_key(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    assert!(c.load_cluster().await.unwrap().failsafe.is_none());
    assert!(
        a.set_failsafe_value(r#"{"a":"http://127.0.0.1:8008/patroni"}"#)
            .await
            .unwrap()
    );
    let f = c.load_cluster().await.unwrap().failsafe.unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f["a"], "http://127.0.0.1:8008/patroni");
    assert!(
        a.set_failsafe_value(
            r#"{"a":"http://127.0.0.1:8008/patroni","c":"http://127.0.0.1:8009/patroni"}"#
        )
        .await
        .unwrap()
    );
    let f = c.load_cluster().await.unwrap().failsafe.unwrap();
    assert_eq!(f.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "c"]);
    // Not tied to a session: it outlives its writer's lease.
    a.release_session().await.unwrap();
    assert!(c.load_cluster().await.unwrap().failsafe.is_some());
}

async fn load_cluster_parses_everything(b: &Backend) {
    load_cluster_parses(b, true).await
}

/// `load_cluster_parses_everything`; `shared_session`: the leader and
/// member keys of a node are on one session (every store but etcd v2, whose
/// keys each carry their own TTL: the leader key's session is the key's own,
/// a member key has none).
async fn load_cluster_parses(b: &Backend, shared_session: bool) {
    let (a, c) = (b.node("a"), b.node("c"));
    a.touch_member(&member("primary")).await.unwrap();
    c.touch_member(&member("replica")).await.unwrap();
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    assert!(a.initialize(true, "7000000000000000001").await.unwrap());
    assert!(
        a.set_config_value(r#"{"loop_wait":10}"#, None)
            .await
            .unwrap()
    );
    let mut st = Status {
        optime: Some(67108960),
        ..Status::default()
    };
    st.slots.insert("c".into(), 67108960.into());
    a.write_status(&st).await.unwrap();
    assert!(
        a.set_history_value(
            r#"[[1,25165984,"no recovery target specified","2024-01-01T00:00:00+00:00","a"]]"#
        )
        .await
        .unwrap()
    );
    let cl = c.load_cluster().await.unwrap();
    assert_eq!(
        cl.members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    let lm = cl.leader_member().expect("leader member");
    assert!(lm.data.is_primary_role());
    let l = cl.leader.as_ref().unwrap();
    assert!(l.session.is_some(), "leader key carries a session");
    if shared_session {
        assert_eq!(l.session, lm.session, "leader and member share the lease");
    } else {
        assert_eq!(lm.session, None, "a member key has no session");
    }
    assert_ne!(cl.member("c").unwrap().session, l.session);
    assert_eq!(cl.initialize.as_deref(), Some("7000000000000000001"));
    assert_eq!(cl.config.as_ref().unwrap().value["loop_wait"], 10);
    assert_eq!(cl.status.optime, Some(67108960));
    assert_eq!(cl.status.slots["c"], 67108960);
    assert_eq!(cl.timeline(), Some(2));
    // delete_cluster wipes the prefix (sessions stay, keys go).
    a.delete_cluster().await.unwrap();
    let cl = c.load_cluster().await.unwrap();
    assert!(cl.members.is_empty() && cl.leader.is_none() && cl.config.is_none());
}

async fn watch_reports_leader_deletion(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let mut w = c.watch();
    wait_watch_ready(&*a, &mut w, b.retry_timeout * 5).await;
    a.delete_leader().await.unwrap();
    let got = tokio::time::timeout(b.retry_timeout * 5, async {
        while let Some(ev) = w.next().await {
            if ev == WatchEvent::Leader {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "no Leader event after delete");
}

/// With a watch open, even one nobody reads any more, reads still see every
/// change (a backend may answer reads from what its watch told it:
/// docs/dcs.md, "Idle cost"): another node's once the watch could hear of
/// it, our own at once.
async fn reads_with_a_watch_see_changes(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    let mut w = c.watch();
    wait_watch_ready(&*a, &mut w, b.retry_timeout * 5).await;
    let within = b.retry_timeout * 5;
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    for _ in 0..2 {
        // The second read may come from a cache; it must still be true.
        eventually(within, "c to see a's leader key", || async {
            (c.load_cluster().await.ok()?.leader_name() == Some("a")).then_some(())
        })
        .await;
    }
    a.delete_leader().await.unwrap();
    for _ in 0..2 {
        eventually(within, "c to see the leader key go", || async {
            c.load_cluster().await.ok()?.leader.is_none().then_some(())
        })
        .await;
    }
    assert!(
        c.set_config_value(r#"{"ttl":30}"#, None).await.unwrap(),
        "config written"
    );
    assert_eq!(
        c.load_cluster()
            .await
            .unwrap()
            .config
            .map(|v| v.value["ttl"].clone()),
        Some(30.into()),
        "our own write shows at once"
    );
    assert!(c.attempt_to_acquire_leader().await.unwrap().is_held());
    assert_eq!(c.load_cluster().await.unwrap().leader_name(), Some("c"));
    assert!(
        c.update_leader(&c.load_cluster().await.unwrap().leader.unwrap())
            .await
            .unwrap()
            .is_held()
    );
    drop(w);
}

/// A fresh read sees another client's write as soon as that write returns,
/// even while the reader's watch-vouched view is valid (what the REST API
/// serves: `GET /config` right after `pgpilotctl edit-config`).
async fn fresh_read_sees_another_clients_write_at_once(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    let mut w = c.watch();
    wait_watch_ready(&*a, &mut w, b.retry_timeout * 5).await;
    for ttl in [31, 32, 33] {
        // Two plain reads first, so a backend that caches has a view.
        let _ = c.load_cluster().await.unwrap();
        let _ = c.load_cluster().await.unwrap();
        assert!(
            a.set_config_value(&format!(r#"{{"ttl":{ttl}}}"#), None)
                .await
                .unwrap(),
            "config written"
        );
        let seen = c
            .load_cluster_fresh()
            .await
            .unwrap()
            .config
            .map(|v| v.value["ttl"].clone());
        assert_eq!(seen, Some(ttl.into()), "fresh read right after the write");
    }
    drop(w);
}

/// A reader whose view follows its watch ends where a fresh read is, after
/// a burst of changes by others (puts, deletes, lease-bound keys, the same
/// key written again) interleaved with its own reads and writes: no late
/// event undoes a newer value, no change is missed.
async fn cached_view_converges_after_a_burst(b: &Backend) {
    let (a, x, c) = (b.node("a"), b.node("x"), b.node("c"));
    let mut w = c.watch();
    wait_watch_ready(&*a, &mut w, b.retry_timeout * 5).await;
    let _ = c.load_cluster().await.unwrap();
    for round in 0..6u32 {
        a.touch_member(&member(if round % 2 == 0 { "primary" } else { "replica" }))
            .await
            .unwrap();
        assert!(
            a.set_config_value(&format!(r#"{{"ttl":{}}}"#, 30 + round), None)
                .await
                .unwrap()
        );
        let _ = c.load_cluster().await.unwrap();
        if round % 2 == 0 {
            assert!(x.attempt_to_acquire_leader().await.unwrap().is_held());
            x.touch_member(&member("replica")).await.unwrap();
        } else {
            x.delete_leader().await.unwrap();
            x.release_session().await.unwrap();
        }
        c.touch_member(&member("replica")).await.unwrap();
        let _ = c.load_cluster().await.unwrap();
        assert!(
            c.set_failover_value(&format!(r#"{{"leader":"a","member":"m{round}"}}"#), None)
                .await
                .unwrap()
        );
    }
    // The fresh read by another client: c's own would refresh c's view.
    let r = b.node("r");
    let within = b.retry_timeout * 5;
    eventually(within, "c's view to equal a fresh read", || async {
        let view = c.load_cluster().await.ok()?;
        let fresh = r.load_cluster_fresh().await.ok()?;
        (fresh == view).then_some(())
    })
    .await;
    let view = c.load_cluster().await.unwrap();
    assert_eq!(view.leader, None, "x released its leader key");
    assert_eq!(
        view.members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "c"],
        "x's member key went with its lease"
    );
    assert_eq!(view.config.map(|v| v.value["ttl"].clone()), Some(35.into()));
    drop(w);
}

/// The leader's deadline, the `expiry.earliest` `update_leader` reports
/// (perhaps resting on an earlier renewal), never outlives the key in the
/// store, and the store drops the key by the `expiry.latest` it reported
/// once the holder goes silent.
async fn hold_deadline_is_what_the_store_keeps(b: &Backend) {
    let (a, c) = (b.node("a"), b.node("c"));
    // A watch on the holder, so its view can vouch and a call may rest on
    // an earlier renewal.
    let mut w = a.watch();
    wait_watch_ready(&*c, &mut w, b.retry_timeout * 5).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let leader = c.load_cluster_fresh().await.unwrap().leader.unwrap();
    // The holder's own read, as its HA loop makes one each cycle.
    assert_eq!(a.load_cluster().await.unwrap().leader_name(), Some("a"));
    let mut renewed = Vec::new();
    for i in 0..3 {
        if i > 0 {
            // Spaced within the renewal period, so later calls may rest on
            // the first renewal: a hold that claimed its own call time
            // would outlive the key by the spacing.
            tokio::time::sleep(b.ttl / 10).await;
            // (At ttl 6 s: 0.6 s apart, more than etcd's 0.5 s expiry
            // granularity, within the 1.5 s renewal period.)
        }
        match a.update_leader(&leader).await.unwrap() {
            LeaderHold::Held { expiry } => {
                assert!(expiry.earliest <= expiry.latest, "{expiry:?}");
                renewed.push((on_test_clock(expiry.earliest), on_test_clock(expiry.latest)));
            }
            LeaderHold::Lost => panic!("the holder lost its key"),
        }
    }
    let deadline = renewed.iter().map(|e| e.0).max().unwrap();
    let gone_by = renewed.iter().map(|e| e.1).max().unwrap();
    let now = tokio::time::Instant::now;
    // The holder goes silent: the key holds until its deadline...
    while now() + Duration::from_millis(100) < deadline {
        let cl = c.load_cluster_fresh().await.unwrap();
        assert!(
            cl.leader_name() == Some("a") || now() >= deadline,
            "the key went {:?} before the holder's deadline",
            deadline.saturating_duration_since(now())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and goes by the latest expiry the backend guaranteed (its stated
    // tolerance included), give or take one poll of this loop.
    let poll = Duration::from_millis(300);
    eventually(
        gone_by.saturating_duration_since(now()) + poll,
        "the store to drop the silent holder's key",
        || async {
            c.load_cluster_fresh()
                .await
                .ok()?
                .leader
                .is_none()
                .then_some(())
        },
    )
    .await;
    drop(w);
}

/// `at`, on the process clock the backends report expiries on, as an
/// instant of tokio's clock, which the tests wait on (the memory runs pause
/// it, so the two part ways there).
fn on_test_clock(at: std::time::Instant) -> tokio::time::Instant {
    tokio::time::Instant::now() + at.saturating_duration_since(std::time::Instant::now())
}

/// The watch reports `Lost` during an outage and works again afterwards.
async fn watch_survives_outage(b: &Backend, kind: Outage) {
    let outage = |down| b.outage(kind, down);
    let (a, c) = (b.node("a"), b.node("c"));
    let mut w = c.watch();
    wait_watch_ready(&*a, &mut w, b.retry_timeout * 5).await;
    outage(true);
    let lost = tokio::time::timeout(b.retry_timeout * 5, async {
        loop {
            match w.next().await {
                Some(WatchEvent::Lost(_)) => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(lost, Ok(true), "no Lost event during the outage");
    outage(false);
    // What is asserted is that it works again, not how fast: a store
    // resumed on a loaded machine re-elects itself and the client
    // reconnects with backoff, so the bound is generous.
    assert!(
        eventually(b.retry_timeout * 30, "store back", || async {
            a.attempt_to_acquire_leader()
                .await
                .ok()
                .map(|h| h.is_held())
        })
        .await
    );
    // Keep changing the leader key until the re-established watch sees it.
    let deadline = tokio::time::Instant::now() + b.retry_timeout * 10;
    let got = loop {
        a.delete_leader().await.ok();
        let _ = a.attempt_to_acquire_leader().await;
        let seen = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(ev) = w.next().await {
                if ev == WatchEvent::Leader {
                    return true;
                }
            }
            false
        })
        .await;
        if seen == Ok(true) || tokio::time::Instant::now() >= deadline {
            break seen;
        }
    };
    assert_eq!(got, Ok(true), "watch did not recover after the outage");
}

/// Poke an unrelated key until the watch reports it (watches may be set up
/// lazily on first poll).
async fn wait_watch_ready(
    a: &dyn Dcs,
    w: &mut futures_util::stream::BoxStream<'static, WatchEvent>,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        a.set_history_value("[]").await.unwrap();
        if let Ok(Some(WatchEvent::Other)) =
            tokio::time::timeout(Duration::from_millis(300), w.next()).await
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch never reported a change"
        );
    }
}

/// With the store away (stopped, or frozen: SIGSTOP of the test's own
/// etcd), every call is answered within its deadline (`retry_timeout`, plus
/// scheduling slack) with `Unreachable`: never a hang, never a success
/// after the deadline. The read is `load_cluster_fresh`: `load_cluster`
/// may answer from the watch-fed view until the watch's probe declares it
/// stale (docs/dcs.md, "Idle cost"), so whether it fails right away depends
/// on whether the watch was heard from before the outage, a race this case
/// must not hang on.
async fn unreachable_within_retry_timeout(b: &Backend, kind: Outage) {
    let outage = |down| b.outage(kind, down);
    let a = b.node("a");
    a.touch_member(&member("primary")).await.unwrap();
    assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
    let leader = a.load_cluster().await.unwrap().leader.unwrap();
    outage(true);
    let bound = b.retry_timeout + Duration::from_millis(1500);
    for (what, r) in [
        (
            "load_cluster_fresh",
            time(a.load_cluster_fresh())
                .await
                .map(|(r, t)| (r.map(|_| ()), t)),
        ),
        (
            "update_leader",
            time(a.update_leader(&leader))
                .await
                .map(|(r, t)| (r.map(|_| ()), t)),
        ),
        (
            "touch_member",
            time(a.touch_member(&member("primary"))).await,
        ),
        (
            "set_config_value",
            time(a.set_config_value("{}", None))
                .await
                .map(|(r, t)| (r.map(|_| ()), t)),
        ),
        (
            "keep_alive",
            time(a.keep_alive()).await.map(|(r, t)| (r.map(|_| ()), t)),
        ),
        (
            "attempt_to_acquire_leader",
            time(a.attempt_to_acquire_leader())
                .await
                .map(|(r, t)| (r.map(|_| ()), t)),
        ),
        (
            "delete_leader",
            time(a.delete_leader())
                .await
                .map(|(r, t)| (r.map(|_| ()), t)),
        ),
    ] {
        let (r, elapsed) =
            r.unwrap_or_else(|| panic!("{what} did not return within {:?}", bound * 3));
        assert!(
            matches!(r, Err(DcsError::Unreachable(_))),
            "{what}: expected Unreachable, got {r:?}"
        );
        assert!(elapsed <= bound, "{what} took {elapsed:?} (> {bound:?})");
    }
    outage(false);
    // The backend reconnects by itself.
    eventually(b.retry_timeout * 10, "reconnect after outage", || async {
        a.load_cluster().await.ok().map(|_| ())
    })
    .await;
}

async fn time<T>(f: impl std::future::Future<Output = T>) -> Option<(T, Duration)> {
    let t0 = std::time::Instant::now();
    // Generous outer cap so a hang fails the test instead of blocking it.
    let r = tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .ok()?;
    Some((r, t0.elapsed()))
}

// --------------------------------------------------- every backend, once

/// The cases every backend runs, listed once: `all_cases!(#[test
/// attribute] factory)` makes one test per case in the calling module.
macro_rules! all_cases {
    (#[$attr:meta] $backend:path) => {
        all_cases!(@cases #[$attr] $backend;
            acquire_is_exclusive,
            update_leader_only_for_holder,
            delete_leader_only_own,
            concurrent_acquire_has_one_winner,
            update_leader_compares_the_version_given,
            same_name_never_touches_anothers_leader_key,
            restarted_daemon_keeps_the_key_of_its_inherited_session,
            keys_expire_after_ttl,
            renewal_keeps_keys,
            keep_alive_keeps_keys_without_writing,
            release_session_drops_keys_at_once,
            ttl_change_moves_keys_to_new_session,
            initialize_create_only_then_overwrite,
            config_cas,
            failover_cas,
            failsafe_key,
            sync_key_cas,
            load_cluster_parses_everything,
            watch_reports_leader_deletion,
            watch_reports_leader_expiry,
            reads_with_a_watch_see_changes,
            fresh_read_sees_another_clients_write_at_once,
            cached_view_converges_after_a_burst,
            hold_deadline_is_what_the_store_keeps,
        );
        all_cases!(@outages #[$attr] $backend;
            unreachable_when_stopped = unreachable_within_retry_timeout(Stop),
            unreachable_when_frozen = unreachable_within_retry_timeout(Freeze),
            watch_survives_stop = watch_survives_outage(Stop),
            watch_survives_freeze = watch_survives_outage(Freeze),
        );
    };
    (@cases #[$attr:meta] $backend:path; $($case:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $case() {
                super::$case(&$backend()).await;
            }
        )*
    };
    (@outages #[$attr:meta] $backend:path; $($name:ident = $case:ident($kind:ident)),* $(,)?) => {
        $(
            #[$attr]
            async fn $name() {
                super::$case(&$backend(), Outage::$kind).await;
            }
        )*
    };
}

mod memory {
    use super::*;

    all_cases!(
        #[tokio::test(start_paused = true)]
        memory_backend
    );
}

mod etcd {
    use super::*;

    all_cases!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        etcd_backend
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hold_deadline_is_what_the_store_keeps_at_a_longer_ttl() {
        // A longer ttl than the others: the spacing of the calls must
        // exceed etcd's expiry granularity for the check to bite.
        let b = etcd_backend_ttl(Duration::from_secs(6));
        super::hold_deadline_is_what_the_store_keeps(&b).await;
    }

    /// Watch messages etcd has received (its Prometheus counter): the
    /// watch's creation and every progress request.
    async fn watch_messages(server: &EtcdServer) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", server.client_port()))
            .await
            .expect("etcd metrics");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .expect("metrics request");
        let mut body = String::new();
        s.read_to_string(&mut body).await.expect("metrics");
        body.lines()
            .filter(|l| {
                l.starts_with("grpc_server_msg_received_total")
                    && l.contains("grpc_method=\"Watch\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// A node whose own renewals the watch's server answers sends that
    /// watch no progress requests; silent, the watch probes its server
    /// again (docs/dcs.md, "Idle cost").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renewals_answered_by_the_watchs_server_put_its_probe_off() {
        let server = EtcdServer::start();
        // Probe period: 2 s of silence (the minimum), answered within 1 s.
        let (ttl, rt) = (Duration::from_secs(4), Duration::from_secs(1));
        let a = EtcdDcs::new(
            vec![server.endpoint()],
            None,
            PREFIX.into(),
            "a".into(),
            ttl,
            rt,
        );
        a.touch_member(&member("replica")).await.expect("touch");
        let mut w = a.watch();
        tokio::spawn(async move { while w.next().await.is_some() {} });
        eventually(Duration::from_secs(10), "watch created", || async {
            (watch_messages(&server).await >= 1).then_some(())
        })
        .await;
        let before = watch_messages(&server).await;
        // A renewal is due every ttl / 4 = 1 s: touch more often than that
        // for four probe periods.
        let until = tokio::time::Instant::now() + Duration::from_secs(8);
        while tokio::time::Instant::now() < until {
            a.touch_member(&member("replica")).await.expect("touch");
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let renewing = watch_messages(&server).await - before;
        assert_eq!(
            renewing, 0,
            "progress requests while the server answered renewals"
        );
        // Silent for four probe periods: the watch asks for progress.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let silent = watch_messages(&server).await - before;
        assert!(silent >= 2, "{silent} progress requests in 8 s of silence");
    }

    /// The backend must not need etcd at construction, and must start
    /// working once etcd appears.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starts_before_etcd() {
        let b = etcd_backend();
        b.outage(Outage::Stop, true);
        let a = b.node("a");
        let r = a.load_cluster().await;
        assert!(matches!(r, Err(DcsError::Unreachable(_))), "{r:?}");
        b.outage(Outage::Stop, false);
        eventually(Duration::from_secs(10), "first success", || async {
            a.touch_member(&member("replica")).await.ok()
        })
        .await;
    }
}

/// etcd's v2 API: every case but two, which assume one session carries
/// a node's leader and member keys. v2 keys each carry their own TTL: a
/// `ttl` change needs no new session (each later write carries the new
/// TTL), and the member key has no session. `load_cluster_parses_everything`
/// runs with that difference; `ttl_change_keeps_the_leader_key` replaces
/// `ttl_change_moves_keys_to_new_session`.
mod etcd2 {
    use super::*;

    all_cases!(@cases #[tokio::test(flavor = "multi_thread", worker_threads = 2)] etcd2_backend;
        acquire_is_exclusive,
        update_leader_only_for_holder,
        delete_leader_only_own,
        concurrent_acquire_has_one_winner,
        update_leader_compares_the_version_given,
        same_name_never_touches_anothers_leader_key,
        restarted_daemon_keeps_the_key_of_its_inherited_session,
        keys_expire_after_ttl,
        renewal_keeps_keys,
        keep_alive_keeps_keys_without_writing,
        release_session_drops_keys_at_once,
        initialize_create_only_then_overwrite,
        config_cas,
        failover_cas,
        failsafe_key,
        sync_key_cas,
        watch_reports_leader_deletion,
        watch_reports_leader_expiry,
        reads_with_a_watch_see_changes,
        fresh_read_sees_another_clients_write_at_once,
        cached_view_converges_after_a_burst,
        hold_deadline_is_what_the_store_keeps,
    );
    all_cases!(@outages #[tokio::test(flavor = "multi_thread", worker_threads = 2)] etcd2_backend;
        unreachable_when_stopped = unreachable_within_retry_timeout(Stop),
        unreachable_when_frozen = unreachable_within_retry_timeout(Freeze),
        watch_survives_stop = watch_survives_outage(Stop),
        watch_survives_freeze = watch_survives_outage(Freeze),
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_cluster_parses_everything() {
        super::load_cluster_parses(&etcd2_backend(), false).await;
    }

    /// A `ttl` change: the holder keeps its leader key (same session, same
    /// version), its next renewal and member write carry the new TTL, and
    /// the key then outlives the old TTL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ttl_change_keeps_the_leader_key() {
        let b = etcd2_backend();
        let (a, c) = (b.node("a"), b.node("c"));
        a.touch_member(&member("primary")).await.unwrap();
        assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
        let before = c.load_cluster_fresh().await.unwrap().leader.unwrap();
        let longer = b.ttl * 3;
        a.set_timing(longer, b.retry_timeout);
        a.touch_member(&member("primary")).await.unwrap();
        assert!(a.update_leader(&before).await.unwrap().is_held());
        tokio::time::sleep(b.ttl + Duration::from_secs(1)).await;
        let after = c.load_cluster_fresh().await.unwrap();
        assert_eq!(after.leader.as_ref(), Some(&before), "the same key");
        assert!(
            after.member("a").is_some(),
            "the member key took the new TTL"
        );
    }

    /// An etcd without the v2 API (etcd 3.4's default) answers a plain 404:
    /// every read is an error naming `--enable-v2`, never an empty cluster a
    /// node would bootstrap over, and nothing is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn etcd_without_v2_is_an_error_not_an_empty_cluster() {
        let server = EtcdServer::start_v3_only();
        let a = Etcd2Dcs::new(
            vec![server.endpoint()],
            PREFIX.into(),
            "a".into(),
            Duration::from_secs(2),
            Duration::from_secs(1),
        );
        for r in [a.load_cluster().await, a.load_cluster_fresh().await] {
            assert!(
                matches!(&r, Err(DcsError::Other(m)) if m.contains("--enable-v2")),
                "{r:?}"
            );
        }
        let r = a.initialize(true, "").await;
        assert!(matches!(r, Err(DcsError::Other(_))), "{r:?}");
        let r = a.attempt_to_acquire_leader().await;
        assert!(matches!(r, Err(DcsError::Other(_))), "{r:?}");
    }

    /// Idle cost (docs/dcs.md, "etcd v2 (`Etcd2Dcs`)"): with the watch open,
    /// an `update_leader` right after a refresh rests on it (the same
    /// deadline: nothing was sent), and a reader's view follows another
    /// client's write; the key deleted behind the holder's back makes its
    /// next `update_leader` `Lost` once the watch delivered the deletion.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_the_watch_open_a_recent_refresh_holds_and_a_deletion_loses() {
        let server = EtcdServer::start();
        let node = |name: &str| {
            Etcd2Dcs::new(
                vec![server.endpoint()],
                PREFIX.into(),
                name.into(),
                Duration::from_secs(20),
                Duration::from_secs(2),
            )
        };
        let a = node("a");
        let mut watch = a.watch();
        // The watch is open once it reported its start.
        tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("the watch starts")
            .expect("an event");
        let drain = tokio::spawn(async move { while watch.next().await.is_some() {} });
        assert!(matches!(
            a.attempt_to_acquire_leader().await.expect("acquire"),
            LeaderHold::Held { .. }
        ));
        let leader = eventually(Duration::from_secs(5), "a's key in a's view", || async {
            a.load_cluster().await.ok().and_then(|c| c.leader)
        })
        .await;
        assert!(a.keep_alive().await.expect("keep-alive").is_some());
        // Two holds in a row: the second rests on the first's refresh (or
        // the keep-alive's) while the view, read again here, vouches.
        eventually(
            Duration::from_secs(5),
            "a hold resting on a refresh",
            || async {
                a.load_cluster().await.ok()?;
                let Ok(LeaderHold::Held { expiry: e1 }) = a.update_leader(&leader).await else {
                    return None;
                };
                let Ok(LeaderHold::Held { expiry: e2 }) = a.update_leader(&leader).await else {
                    return None;
                };
                (e1.earliest == e2.earliest).then_some(())
            },
        )
        .await;
        // Another client deletes the key: a's next hold is lost.
        let b = node("b");
        assert!(b.load_cluster().await.expect("read").leader.is_some());
        let r = std::process::Command::new("curl")
            .args(["-sf", "-X", "DELETE"])
            .arg(format!("{}/v2/keys{PREFIX}/leader", server.endpoint()))
            .output()
            .expect("curl");
        assert!(r.status.success(), "{r:?}");
        eventually(Duration::from_secs(5), "a's hold lost", || async {
            matches!(a.update_leader(&leader).await, Ok(LeaderHold::Lost)).then_some(())
        })
        .await;
        drain.abort();
    }

    /// The backend needs no etcd at construction, and works once etcd
    /// appears.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starts_before_etcd() {
        let b = etcd2_backend();
        b.outage(Outage::Stop, true);
        let a = b.node("a");
        let r = a.load_cluster().await;
        assert!(matches!(r, Err(DcsError::Unreachable(_))), "{r:?}");
        b.outage(Outage::Stop, false);
        eventually(Duration::from_secs(10), "first success", || async {
            a.touch_member(&member("replica")).await.ok()
        })
        .await;
    }
}

/// ZooKeeper: every case but four, which assume a holder goes silent by
/// making no call. A ZooKeeper client pings its session in the background
/// (kazoo does the same for Patroni), so a process that makes no call but
/// lives keeps its session and its keys; they lapse when the process or
/// its connection goes. Not applicable, for that reason:
/// `keys_expire_after_ttl`, `keep_alive_keeps_keys_without_writing`,
/// `watch_reports_leader_expiry` and `hold_deadline_is_what_the_store_keeps`.
/// `holder_cut_off_loses_its_keys_within_its_expiry` below checks the same
/// promises with the holder's connection cut instead.
mod zookeeper {
    use super::*;
    use support::proxy::TcpProxy;

    all_cases!(@cases #[tokio::test(flavor = "multi_thread", worker_threads = 2)] zookeeper_backend;
        acquire_is_exclusive,
        update_leader_only_for_holder,
        delete_leader_only_own,
        concurrent_acquire_has_one_winner,
        update_leader_compares_the_version_given,
        same_name_never_touches_anothers_leader_key,
        restarted_daemon_keeps_the_key_of_its_inherited_session,
        renewal_keeps_keys,
        release_session_drops_keys_at_once,
        ttl_change_moves_keys_to_new_session,
        initialize_create_only_then_overwrite,
        config_cas,
        failover_cas,
        failsafe_key,
        sync_key_cas,
        load_cluster_parses_everything,
        watch_reports_leader_deletion,
        reads_with_a_watch_see_changes,
        fresh_read_sees_another_clients_write_at_once,
        cached_view_converges_after_a_burst,
    );
    all_cases!(@outages #[tokio::test(flavor = "multi_thread", worker_threads = 2)] zookeeper_backend_long;
        unreachable_when_stopped = unreachable_within_retry_timeout(Stop),
        unreachable_when_frozen = unreachable_within_retry_timeout(Freeze),
        watch_survives_stop = watch_survives_outage(Stop),
        watch_survives_freeze = watch_survives_outage(Freeze),
    );

    /// The holder's connection is cut (its process alive): its keys stay
    /// until the `earliest` every renewal reported, are gone by the
    /// `latest`, another node's watch reports it, and the holder's
    /// `keep_alive` no longer claims a session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn holder_cut_off_loses_its_keys_within_its_expiry() {
        let _slot = ZkSlot::take();
        let server = ZkServer::start(500);
        zk_warm_up(&server);
        let proxy = TcpProxy::start(server.server().parse().expect("address"));
        let ttl = Duration::from_secs(4);
        let retry = Duration::from_secs(1);
        let node = |name: &str, via: String| {
            ZooKeeperDcs::new(zk_settings(via), PREFIX.into(), name.into(), ttl, retry)
        };
        let (a, c) = (node("a", proxy.addr()), node("c", server.server()));
        a.touch_member(&member("primary")).await.unwrap();
        assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
        let leader = c.load_cluster_fresh().await.unwrap().leader.unwrap();
        let mut w = c.watch();
        wait_watch_ready(&c, &mut w, retry * 5).await;
        let (mut deadline, mut gone_by) = (None, None);
        for _ in 0..3 {
            match a.update_leader(&leader).await.unwrap() {
                LeaderHold::Held { expiry } => {
                    deadline = deadline.max(Some(on_test_clock(expiry.earliest)));
                    gone_by = gone_by.max(Some(on_test_clock(expiry.latest)));
                }
                LeaderHold::Lost => panic!("the holder lost its key"),
            }
            tokio::time::sleep(ttl / 10).await;
        }
        let (deadline, gone_by) = (deadline.unwrap(), gone_by.unwrap());
        proxy.cut();
        let now = tokio::time::Instant::now;
        while now() + Duration::from_millis(100) < deadline {
            let cl = c.load_cluster_fresh().await.unwrap();
            assert!(
                cl.leader_name() == Some("a") || now() >= deadline,
                "the key went {:?} before the holder's deadline",
                deadline.saturating_duration_since(now())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seen = tokio::time::timeout(
            gone_by.saturating_duration_since(now()) + Duration::from_millis(300),
            async {
                while let Some(ev) = w.next().await {
                    if ev == WatchEvent::Leader {
                        let cl = c.load_cluster_fresh().await.ok()?;
                        if cl.leader.is_none() && cl.member("a").is_none() {
                            return Some(());
                        }
                    }
                }
                None
            },
        )
        .await;
        assert_eq!(
            seen,
            Ok(Some(())),
            "leader and member keys not gone by the latest expiry"
        );
        eventually(ttl * 2, "the holder to know its session gone", || async {
            match a.keep_alive().await {
                Ok(None) | Err(DcsError::Unreachable(_)) => Some(()),
                Ok(Some(_)) | Err(_) => None,
            }
        })
        .await;
        proxy.heal();
        // Back: the holder's next write makes a new session.
        eventually(retry * 10, "a new session", || async {
            a.touch_member(&member("replica")).await.ok()
        })
        .await;
        assert!(a.keep_alive().await.unwrap().is_some());
        assert_ne!(a.session(), leader.session);
    }

    /// Znodes another tool wrote with values pgpilot cannot read (bytes
    /// that are not UTF-8, JSON that is not an object): the read succeeds,
    /// those keys count as absent (logged, naming the znode), the others
    /// are read, and an unreadable leader znode is still never taken over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreadable_znodes_are_absent_and_never_taken() {
        let _slot = ZkSlot::take();
        let server = ZkServer::start(500);
        zk_warm_up(&server);
        let b = zookeeper_backend_on(&server);
        let (a, c) = (b.node("a"), b.node("c"));
        a.touch_member(&member("replica")).await.unwrap();
        let raw = zookeeper_client::Client::connect(&server.server())
            .await
            .expect("raw client");
        let opts = zookeeper_client::CreateMode::Persistent
            .with_acls(zookeeper_client::Acls::anyone_all());
        for (key, value) in [
            ("leader", &b"\xff\xfe"[..]),
            ("config", &b"[1, 2]"[..]),
            ("failover", &b"\xc3\x28"[..]),
        ] {
            raw.create(&format!("{PREFIX}/{key}"), value, &opts)
                .await
                .unwrap_or_else(|e| panic!("create {key}: {e}"));
        }
        let cl = c.load_cluster_fresh().await.expect("the read succeeds");
        assert!(cl.leader.is_none(), "{:?}", cl.leader);
        assert!(cl.config.is_none() && cl.failover.is_none(), "{cl:?}");
        assert!(cl.member("a").is_some(), "the readable keys are read");
        assert!(
            !c.attempt_to_acquire_leader().await.unwrap().is_held(),
            "an unreadable leader znode is still someone's"
        );
    }

    /// The backend needs no ZooKeeper at construction and starts working
    /// once it appears; a granted timeout other than ttl is what the
    /// expiry counts (ttl 30 s, the server grants at most 20 ticks = 10 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starts_before_zookeeper_and_counts_the_granted_timeout() {
        let _slot = ZkSlot::take();
        let mut server = ZkServer::start(500);
        server.stop();
        let ttl = Duration::from_secs(30);
        let a = ZooKeeperDcs::new(
            zk_settings(server.server()),
            PREFIX.into(),
            "a".into(),
            ttl,
            Duration::from_secs(1),
        );
        let r = a.load_cluster().await;
        assert!(matches!(r, Err(DcsError::Unreachable(_))), "{r:?}");
        server.restart();
        eventually(Duration::from_secs(10), "first success", || async {
            a.touch_member(&member("replica")).await.ok()
        })
        .await;
        let hold = a.attempt_to_acquire_leader().await.unwrap();
        let answered = std::time::Instant::now();
        let LeaderHold::Held { expiry } = hold else {
            panic!("not held: {hold:?}");
        };
        assert!(
            expiry.earliest <= answered + Duration::from_secs(10),
            "expiry counts the requested ttl, not the granted 10 s: {:?}",
            expiry.earliest - answered
        );
    }
}

/// The cases on a 3-server ensemble, the nodes knowing every server (those
/// about writes, reads, compare-and-swap, sessions and watches; the outage
/// cases run on the single server).
/// ZooKeeper over TLS (`use_ssl`) with a client certificate.
mod zookeeper_tls {
    use super::*;

    all_cases!(@cases #[tokio::test(flavor = "multi_thread", worker_threads = 2)] zookeeper_tls_backend;
        acquire_is_exclusive,
        renewal_keeps_keys,
        config_cas,
        watch_reports_leader_deletion,
    );

    /// The secure port takes only TLS with a certificate of its CA: a node
    /// without `use_ssl`, or presenting a certificate of another CA, gets
    /// no session (an error, within `retry_timeout`); the right one does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_and_the_client_certificate_are_required() {
        let _slot = ZkSlot::take();
        let dir = ScratchDir::new("zk-certs");
        let certs = support::tls::make_certs(&dir.0);
        let server = ZkServer::start_tls(500, &certs.server_cert, &certs.server_key, &certs.ca);
        let node = |settings: ZkSettings| {
            ZooKeeperDcs::new(
                settings,
                PREFIX.into(),
                "a".into(),
                Duration::from_secs(4),
                Duration::from_secs(2),
            )
        };
        let base = format!(
            "hosts: [{}]\ncacert: {}\n",
            server.secure_server(),
            certs.ca.display()
        );
        let plain = node(zk_settings_yaml(&base));
        assert!(
            plain.load_cluster_fresh().await.is_err(),
            "plain on the TLS port"
        );
        let rogue = node(zk_settings_yaml(&format!(
            "{base}use_ssl: true\ncert: {}\nkey: {}\n",
            certs.rogue_cert.display(),
            certs.rogue_key.display()
        )));
        assert!(
            rogue.load_cluster_fresh().await.is_err(),
            "a rogue certificate"
        );
        let good = zk_settings_yaml(&format!(
            "{base}use_ssl: true\ncert: {}\nkey: {}\n",
            certs.client_cert.display(),
            certs.client_key.display()
        ));
        zk_warm_up_with(good.clone());
        let good = node(good);
        good.touch_member(&member("replica"))
            .await
            .expect("member over TLS");
        let c = good.load_cluster_fresh().await.expect("read over TLS");
        assert!(c.member("a").is_some());
        good.release_session().await.expect("release");
    }

    /// A key that does not match its certificate, and an encrypted key
    /// without `key_password`, are named at start.
    #[test]
    fn bad_files_are_named() {
        let dir = ScratchDir::new("zk-certs");
        let certs = support::tls::make_certs(&dir.0);
        let section = |extra: String| -> pgpilot::config::zookeeper::ZooKeeper {
            serde_yaml_ng::from_str(&format!(
                "hosts: [127.0.0.1:1]\nuse_ssl: true\ncacert: {}\ncert: {}\n{extra}",
                certs.ca.display(),
                certs.server_cert.display()
            ))
            .expect("section")
        };
        let m = ZkSettings::from_config(&section(format!("key: {}\n", certs.client_key.display())))
            .expect_err("mismatch")
            .to_string();
        assert!(
            m.contains("zookeeper.key") && m.contains("does not match"),
            "{m}"
        );
        let m = ZkSettings::from_config(&section(format!(
            "key: {}\n",
            certs.server_key_encrypted.display()
        )))
        .expect_err("no password")
        .to_string();
        assert!(m.contains("zookeeper.key_password"), "{m}");
        ZkSettings::from_config(&section(format!(
            "key: {}\nkey_password: {}\n",
            certs.server_key_encrypted.display(),
            support::tls::KEY_PASSWORD
        )))
        .expect("the encrypted key with its password");
    }
}

mod zookeeper_ensemble {
    use super::*;

    all_cases!(@cases #[tokio::test(flavor = "multi_thread", worker_threads = 2)] zookeeper_ensemble_backend;
        concurrent_acquire_has_one_winner,
        same_name_never_touches_anothers_leader_key,
        restarted_daemon_keeps_the_key_of_its_inherited_session,
        ttl_change_moves_keys_to_new_session,
        load_cluster_parses_everything,
        fresh_read_sees_another_clients_write_at_once,
        cached_view_converges_after_a_burst,
    );

    /// One member of the ensemble at a time killed (kill -9) and brought
    /// back: the holder's session survives each (it reconnects to another
    /// member within its timeout), its leader key stays at the same
    /// version on the same session, and every renewal is `Held`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_member_down_keeps_the_session() {
        let _slots: Vec<ZkSlot> = (0..ZK_AT_ONCE).map(|_| ZkSlot::take()).collect();
        let mut ensemble = ZkEnsemble::start(3, 500);
        for m in &ensemble.members {
            zk_warm_up(m);
        }
        let settings = ZkSettings {
            servers: ensemble.servers(),
            acls: Vec::new(),
            auth: Vec::new(),
            tls: None,
        };
        let ttl = Duration::from_secs(6);
        let node = |name: &str| {
            ZooKeeperDcs::new(
                settings.clone(),
                PREFIX.into(),
                name.into(),
                ttl,
                Duration::from_secs(2),
            )
        };
        let (a, c) = (node("a"), node("c"));
        a.touch_member(&member("primary")).await.unwrap();
        assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
        let leader = c.load_cluster_fresh().await.unwrap().leader.unwrap();
        let session = a.session();
        for i in 0..3 {
            ensemble.members[i].kill();
            // Renew through the loss as a holder does, every ttl / 4.
            let until = tokio::time::Instant::now() + ttl;
            while tokio::time::Instant::now() < until {
                let hold = eventually(ttl / 2, "a renewal answered", || async {
                    a.update_leader(&leader).await.ok()
                })
                .await;
                assert!(hold.is_held(), "member {i} down: the holder lost its key");
                tokio::time::sleep(ttl / 4).await;
            }
            assert_eq!(a.session(), session, "member {i} down: a new session");
            let cl = c.load_cluster_fresh().await.unwrap();
            assert_eq!(
                cl.leader.as_ref(),
                Some(&leader),
                "member {i} down: the key moved"
            );
            ensemble.members[i].restart();
        }
    }
}

/// The cases over HTTPS with client certificates (`--client-cert-auth`).
mod etcd_tls {
    use super::*;

    all_cases!(@cases #[tokio::test(flavor = "multi_thread", worker_threads = 2)] etcd_tls_backend;
        acquire_is_exclusive,
        concurrent_acquire_has_one_winner,
        renewal_keeps_keys,
        keep_alive_keeps_keys_without_writing,
        config_cas,
        watch_reports_leader_deletion,
        reads_with_a_watch_see_changes,
    );
    all_cases!(@outages #[tokio::test(flavor = "multi_thread", worker_threads = 2)] etcd_tls_backend;
        unreachable_when_frozen = unreachable_within_retry_timeout(Freeze),
        watch_survives_stop = watch_survives_outage(Stop),
    );
}

/// The cases with etcd's RBAC on, as a user of limited rights; tokens
/// lapse after 2 s unused and are refreshed.
mod etcd_auth {
    use super::*;

    all_cases!(@cases #[tokio::test(flavor = "multi_thread", worker_threads = 2)] etcd_auth_backend;
        acquire_is_exclusive,
        renewal_keeps_keys,
        keep_alive_keeps_keys_without_writing,
        config_cas,
        reads_with_a_watch_see_changes,
        release_session_drops_keys_at_once,
    );
    all_cases!(@outages #[tokio::test(flavor = "multi_thread", worker_threads = 2)] etcd_auth_backend;
        watch_survives_stop = watch_survives_outage(Stop),
    );

    /// A token etcd dropped (unused longer than `--auth-token-ttl`, etcd's
    /// "invalid auth token") is refreshed: the next call of every kind
    /// answers without an error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_token_is_refreshed() {
        let b = etcd_auth_backend();
        let (a, c) = (b.node("a"), b.node("c"));
        for round in 0..2 {
            // Both clients authenticated (first round) or idle past the
            // token's 2 s, and the leases (ttl 2 s) gone with it.
            a.touch_member(&member("primary")).await.unwrap();
            assert!(
                a.attempt_to_acquire_leader().await.unwrap().is_held(),
                "round {round}"
            );
            assert!(c.set_config_value(r#"{"ttl":30}"#, None).await.unwrap());
            let cl = c.load_cluster_fresh().await.unwrap();
            assert_eq!(cl.leader_name(), Some("a"), "round {round}");
            assert!(cl.member("a").is_some(), "round {round}");
            // Idle past the token's life: the scenario, not a wait.
            tokio::time::sleep(Duration::from_secs(4)).await;
            assert_eq!(
                c.load_cluster_fresh().await.unwrap().leader,
                None,
                "round {round}: the lease lapsed"
            );
        }
    }
}

/// etcd's v2 API over HTTPS with client certificates.
mod etcd2_tls {
    use super::*;

    all_cases!(@cases #[tokio::test(flavor = "multi_thread", worker_threads = 2)] etcd2_tls_backend;
        acquire_is_exclusive,
        renewal_keeps_keys,
        config_cas,
        watch_reports_leader_deletion,
        reads_with_a_watch_see_changes,
    );
    all_cases!(@outages #[tokio::test(flavor = "multi_thread", worker_threads = 2)] etcd2_tls_backend;
        watch_survives_stop = watch_survives_outage(Stop),
    );
}

/// etcd's v2 API with v2 authentication, as a user of limited rights.
mod etcd2_auth {
    use super::*;

    all_cases!(@cases #[tokio::test(flavor = "multi_thread", worker_threads = 2)] etcd2_auth_backend;
        acquire_is_exclusive,
        renewal_keeps_keys,
        config_cas,
        reads_with_a_watch_see_changes,
        release_session_drops_keys_at_once,
    );
}

/// The cases on a 3-member etcd cluster, the nodes knowing every member.
/// The v2 API with its endpoints from DNS SRV records only (`etcd.srv`),
/// served by a fake name server (tests/support/dns.rs) pointing at a real
/// etcd started with `--enable-v2`.
mod etcd2_srv {
    use super::*;
    use support::dns::FakeNameServer;

    const DOMAIN: &str = "srv.test";
    const CLIENT: &str = "_etcd-client._tcp.srv.test";

    /// A v2 node whose `etcd` section has `srv` alone, asking `ns`.
    fn node(ns: &FakeNameServer, name: &str) -> Etcd2Dcs {
        let mut settings = etcd2_settings(&format!("srv: {DOMAIN}\n"));
        assert!(settings.endpoints.is_empty(), "srv alone");
        if let Some(srv) = settings.srv.as_mut() {
            srv.nameserver = Some(ns.addr);
        }
        Etcd2Dcs::with_settings(
            settings,
            PREFIX.into(),
            name.into(),
            Duration::from_secs(10),
            Duration::from_secs(3),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_reads_and_writes_through_the_srv_endpoints() {
        let server = EtcdServer::start();
        let ns = FakeNameServer::start().await;
        ns.set(CLIENT, &[(server.client_port(), "127.0.0.1")]);
        let a = node(&ns, "a");
        assert_eq!(a.refused_at_start().await, None);
        assert_eq!(a.endpoints_in_use(), [server.endpoint()]);
        a.touch_member(&MemberData::default()).await.expect("touch");
        assert!(matches!(
            a.attempt_to_acquire_leader().await.expect("acquire"),
            LeaderHold::Held { .. }
        ));
        let cl = a.load_cluster().await.expect("load");
        assert_eq!(cl.leader.as_ref().map(|l| l.name.as_str()), Some("a"));
        assert!(cl.member("a").is_some());
        // A node on the configured endpoint sees the same keys: the writes
        // reached the etcd the records name.
        let reader = Etcd2Dcs::new(
            vec![server.endpoint()],
            PREFIX.into(),
            "r".into(),
            Duration::from_secs(10),
            Duration::from_secs(3),
        );
        let cl = reader.load_cluster().await.expect("load");
        assert_eq!(cl.leader.as_ref().map(|l| l.name.as_str()), Some("a"));
        assert!(cl.member("a").is_some());
    }

    /// Records naming a member that does not answer: the call fails as an
    /// outage, and the next one asks the names again, finding the records
    /// moved to a member that answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_endpoint_answering_asks_the_names_again() {
        let server = EtcdServer::start();
        let ns = FakeNameServer::start().await;
        let dead = support::free_port();
        ns.set(CLIENT, &[(dead, "127.0.0.1")]);
        let a = node(&ns, "a");
        assert!(matches!(
            a.load_cluster().await,
            Err(DcsError::Unreachable(_))
        ));
        assert_eq!(a.endpoints_in_use(), [format!("http://127.0.0.1:{dead}")]);
        ns.set(CLIENT, &[(server.client_port(), "127.0.0.1")]);
        a.load_cluster()
            .await
            .expect("load after the records moved");
        assert_eq!(a.endpoints_in_use(), [server.endpoint()]);
        a.touch_member(&MemberData::default()).await.expect("touch");
        // While the member answers, the names are not asked again: records
        // pointing elsewhere now change nothing.
        ns.set(CLIENT, &[(dead, "127.0.0.1")]);
        a.load_cluster().await.expect("load on the same member");
        assert_eq!(a.endpoints_in_use(), [server.endpoint()]);
    }

    /// No records for any name, nothing configured: a refusal at start
    /// naming the key and every name asked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_records_is_a_refusal_naming_etcd_srv() {
        let ns = FakeNameServer::start().await;
        let a = node(&ns, "a");
        let m = a.refused_at_start().await.expect("refused");
        assert!(
            m.contains("etcd.srv:")
                && m.contains("_etcd-client-ssl._tcp.srv.test")
                && m.contains("_etcd._tcp.srv.test")
                && m.contains("_etcd-server._tcp.srv.test")
                && m.contains("no SRV records"),
            "{m}"
        );
        assert!(matches!(a.load_cluster().await, Err(DcsError::Other(_))));
    }
}

mod etcd_cluster {
    use super::*;

    all_cases!(@cases #[tokio::test(flavor = "multi_thread", worker_threads = 2)] etcd_cluster_backend;
        concurrent_acquire_has_one_winner,
        same_name_never_touches_anothers_leader_key,
        renewal_keeps_keys,
        load_cluster_parses_everything,
        fresh_read_sees_another_clients_write_at_once,
        cached_view_converges_after_a_burst,
    );

    /// The member a holder is connected to is killed (kill -9), one after
    /// the other: every call right after the kill answers within
    /// `retry_timeout` (the call moves to another member), the holder's
    /// lease and leader key survive, every renewal is `Held`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn member_in_use_killed_every_call_answers() {
        let mut cluster = EtcdCluster::start(3);
        let endpoints = cluster.endpoints();
        let ttl = Duration::from_secs(6);
        // An etcd leader election (the killed member may be the raft
        // leader) takes one to two seconds; Patroni's default is 10 s.
        let retry_timeout = Duration::from_secs(4);
        let node = |name: &str| {
            EtcdDcs::with_settings(
                EtcdSettings::plain(endpoints.clone(), None),
                PREFIX.into(),
                name.into(),
                ttl,
                retry_timeout,
            )
        };
        let (a, c) = (node("a"), node("c"));
        a.touch_member(&member("primary")).await.unwrap();
        assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
        let leader = c.load_cluster_fresh().await.unwrap().leader.unwrap();
        let lease = a.lease_id();
        for round in 0..3 {
            let in_use = a.endpoint_in_use().expect("connected");
            let m = endpoints
                .iter()
                .position(|e| *e == in_use)
                .expect("a configured endpoint");
            cluster.members[m].kill();
            let until = tokio::time::Instant::now() + ttl;
            while tokio::time::Instant::now() < until {
                let started = tokio::time::Instant::now();
                let hold = a.update_leader(&leader).await;
                assert!(
                    matches!(hold, Ok(ref h) if h.is_held()),
                    "round {round}, member {m} down: {hold:?}"
                );
                a.touch_member(&member("primary")).await.unwrap();
                let cl = a.load_cluster().await.unwrap();
                assert_eq!(cl.leader.as_ref(), Some(&leader), "round {round}");
                assert!(started.elapsed() <= retry_timeout * 3, "round {round}");
                // Pacing: renewals spaced as a holder spaces them.
                tokio::time::sleep(ttl / 4).await;
            }
            assert_ne!(
                a.endpoint_in_use(),
                Some(in_use.clone()),
                "round {round}: still on the killed member"
            );
            assert_eq!(a.lease_id(), lease, "round {round}: a new lease");
            cluster.members[m].restart();
        }
        let cl = c.load_cluster_fresh().await.unwrap();
        assert_eq!(cl.leader.as_ref(), Some(&leader));
    }
}

/// etcd refusing us, or a TLS file that cannot be used: each error names
/// the setting, the file and the failure; the daemon stops at start
/// without touching its data directory.
mod etcd_refusals {
    use super::*;

    /// What a node made with the section `yaml` (endpoint added) is told
    /// when it connects to `server`.
    async fn refusal(server: &EtcdServer, yaml: &str) -> Option<String> {
        let settings = etcd_settings(&format!("hosts: [{}]\n{yaml}", server.endpoint()));
        let node = EtcdDcs::with_settings(
            settings,
            PREFIX.into(),
            "a".into(),
            Duration::from_secs(10),
            Duration::from_secs(3),
        );
        node.refused_at_start().await
    }

    fn tls_server(files: EtcdTlsFiles) -> EtcdServer {
        EtcdServer::start_with(EtcdOptions {
            tls: Some(files),
            client_cert_auth: true,
            ..EtcdOptions::default()
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_refusals_name_the_setting_and_the_file() {
        let (_dir, certs, files) = etcd_certs();
        let server = tls_server(files);
        let client = format!(
            "cert: {}\nkey: {}\n",
            certs.client_cert.display(),
            certs.client_key.display()
        );
        // The right files: no refusal.
        let good = format!("protocol: https\ncacert: {}\n{client}", certs.ca.display());
        assert_eq!(refusal(&server, &good).await, None);

        // A CA that did not sign etcd's certificate.
        let rogue_ca = certs.dir.join("rogue-ca.crt");
        let m = refusal(
            &server,
            &format!("protocol: https\ncacert: {}\n{client}", rogue_ca.display()),
        )
        .await
        .expect("unknown CA refused");
        assert!(
            m.contains("etcd3.cacert")
                && m.contains(&rogue_ca.display().to_string())
                && m.contains("not signed"),
            "{m}"
        );

        // No client certificate, etcd asking for one.
        let m = refusal(
            &server,
            &format!("protocol: https\ncacert: {}\n", certs.ca.display()),
        )
        .await
        .expect("no client certificate refused");
        assert!(m.contains("etcd3.cert") && m.contains("etcd3.key"), "{m}");

        // A client certificate of another CA.
        let m = refusal(
            &server,
            &format!(
                "protocol: https\ncacert: {}\ncert: {}\nkey: {}\n",
                certs.ca.display(),
                certs.rogue_cert.display(),
                certs.rogue_key.display()
            ),
        )
        .await
        .expect("rogue client certificate refused");
        assert!(
            m.contains("etcd3.cert") && m.contains(&certs.rogue_cert.display().to_string()),
            "{m}"
        );
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_named() {
        let (_dir, certs, _) = etcd_certs();
        let section: pgpilot::config::Etcd = serde_yaml_ng::from_str(&format!(
            "host: 127.0.0.1:1\nprotocol: https\ncacert: {}\ncert: {}\nkey: {}\n",
            certs.ca.display(),
            certs.client_cert.display(),
            certs.server_key.display()
        ))
        .expect("section");
        let e = EtcdSettings::from_config("etcd3", &section).expect_err("mismatch refused");
        let m = e.to_string();
        assert!(
            m.contains("etcd3.key")
                && m.contains(&certs.server_key.display().to_string())
                && m.contains("does not match"),
            "{m}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_password_is_refused_an_absent_etcd_is_not() {
        let server = EtcdServer::start();
        server.enable_auth("root-Secret", ETCD_USER, ETCD_PASSWORD);
        let good = format!("username: {ETCD_USER}\npassword: {ETCD_PASSWORD}\n");
        assert_eq!(refusal(&server, &good).await, None);
        let m = refusal(&server, &format!("username: {ETCD_USER}\npassword: nope\n"))
            .await
            .expect("wrong password refused");
        assert!(
            m.contains("authentication as user \"pg\" failed") && m.contains("password"),
            "{m}"
        );
        // Nobody answering is no refusal: the daemon starts and retries.
        let port = support::free_port();
        let settings = EtcdSettings::plain(vec![format!("http://127.0.0.1:{port}")], None);
        let node = EtcdDcs::with_settings(
            settings,
            PREFIX.into(),
            "a".into(),
            Duration::from_secs(10),
            Duration::from_secs(1),
        );
        assert_eq!(node.refused_at_start().await, None);
    }

    /// What a v2 node made with the `etcd` section `yaml` (endpoint added)
    /// is told at start by `server`.
    async fn refusal_v2(server: &EtcdServer, yaml: &str) -> Option<String> {
        let settings = etcd2_settings(&format!("hosts: [{}]\n{yaml}", server.endpoint()));
        let node = Etcd2Dcs::with_settings(
            settings,
            PREFIX.into(),
            "a".into(),
            Duration::from_secs(10),
            Duration::from_secs(3),
        );
        node.refused_at_start().await
    }

    /// The v2 API over TLS: the same refusals, naming `etcd.*`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn v2_tls_refusals_name_the_setting_and_the_file() {
        let (_dir, certs, files) = etcd_certs();
        let server = tls_server(files);
        let client = format!(
            "cert: {}\nkey: {}\n",
            certs.client_cert.display(),
            certs.client_key.display()
        );
        let good = format!("protocol: https\ncacert: {}\n{client}", certs.ca.display());
        assert_eq!(refusal_v2(&server, &good).await, None);
        let rogue_ca = certs.dir.join("rogue-ca.crt");
        let m = refusal_v2(
            &server,
            &format!("protocol: https\ncacert: {}\n{client}", rogue_ca.display()),
        )
        .await
        .expect("unknown CA refused");
        assert!(
            m.contains("etcd.cacert")
                && m.contains(&rogue_ca.display().to_string())
                && m.contains("not signed"),
            "{m}"
        );
        let m = refusal_v2(
            &server,
            &format!(
                "protocol: https\ncacert: {}\ncert: {}\nkey: {}\n",
                certs.ca.display(),
                certs.rogue_cert.display(),
                certs.rogue_key.display()
            ),
        )
        .await
        .expect("rogue client certificate refused");
        assert!(
            m.contains("etcd.cert") && m.contains(&certs.rogue_cert.display().to_string()),
            "{m}"
        );
    }

    /// v2 authentication: a wrong password and no user at all are refused,
    /// naming the settings; the right one is not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn v2_a_wrong_password_is_refused() {
        let server = EtcdServer::start();
        server.enable_v2_auth("root-Secret", ETCD_USER, ETCD_PASSWORD);
        let good = format!("username: {ETCD_USER}\npassword: {ETCD_PASSWORD}\n");
        assert_eq!(refusal_v2(&server, &good).await, None);
        let m = refusal_v2(&server, &format!("username: {ETCD_USER}\npassword: nope\n"))
            .await
            .expect("wrong password refused");
        assert!(
            m.contains("authentication as user \"pg\" failed") && m.contains("etcd.password"),
            "{m}"
        );
        let m = refusal_v2(&server, "").await.expect("no user refused");
        assert!(m.contains("set etcd.username"), "{m}");
    }

    /// The daemon with `etcd3` (written into the demo configuration) exits
    /// 1 at start with `expect` in its log, the data directory untouched.
    fn daemon_refuses(etcd3: &str, expect: &[&str]) {
        daemon_refuses_with("etcd3", etcd3, expect);
    }

    /// The same with the section `section` (`etcd3` or `etcd`) in place of
    /// the demo's `etcd3`.
    fn daemon_refuses_with(section: &str, body: &str, expect: &[&str]) {
        use std::os::unix::process::CommandExt;
        let dir = ScratchDir::new("etcd-refusal");
        std::fs::create_dir_all(&dir.0).expect("scratch dir");
        let data = dir.0.join("data");
        let api = support::free_port();
        let text = include_str!("../conf/postgres0.yml")
            .replace("data/postgresql0", &data.display().to_string())
            .replace("127.0.0.1:8008", &format!("127.0.0.1:{api}"))
            .replace(
                "etcd3:\n  host: 127.0.0.1:2379\n",
                &format!("{section}:\n{body}"),
            );
        let path = dir.0.join("node.yml");
        std::fs::write(&path, text).expect("config");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgpilot"));
        cmd.arg(&path).env_remove("PATRONI_CONFIGURATION");
        if nix::unistd::Uid::effective().is_root() {
            let u = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("postgres user");
            cmd.gid(u.gid.as_raw()).uid(u.uid.as_raw());
            let _ = nix::unistd::chown(&dir.0, Some(u.uid), Some(u.gid));
        }
        let out = cmd.output().expect("run the daemon");
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{log}");
        for e in expect {
            assert!(log.contains(e), "{e:?} not in {log}");
        }
        assert!(!data.exists(), "data directory created: {log}");
    }

    #[test]
    fn the_daemon_stops_at_start_on_a_wrong_password() {
        let server = EtcdServer::start();
        server.enable_auth("root-Secret", ETCD_USER, ETCD_PASSWORD);
        daemon_refuses(
            &format!(
                "  hosts: {}\n  username: {ETCD_USER}\n  password: wrong\n",
                server.endpoint()
            ),
            &["authentication as user", "failed"],
        );
    }

    #[test]
    fn the_daemon_on_v2_stops_at_start_on_a_wrong_password() {
        let server = EtcdServer::start();
        server.enable_v2_auth("root-Secret", ETCD_USER, ETCD_PASSWORD);
        daemon_refuses_with(
            "etcd",
            &format!(
                "  hosts: {}\n  username: {ETCD_USER}\n  password: wrong\n",
                server.endpoint()
            ),
            &["authentication as user", "failed", "etcd.password"],
        );
    }

    #[test]
    fn the_daemon_stops_at_start_on_an_unusable_tls_file() {
        let (_dir, certs, _) = etcd_certs();
        daemon_refuses(
            &format!(
                "  host: 127.0.0.1:1\n  protocol: https\n  cacert: {}\n  cert: {}\n  key: {}\n",
                certs.ca.display(),
                certs.client_cert.display(),
                certs.server_key.display()
            ),
            &["etcd3.key", "does not match"],
        );
    }
}

/// Consul, on the emulator: every case.
mod consul {
    use super::*;

    all_cases!(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        consul_backend
    );
}

/// Consul, on a real agent when `CONSUL_HTTP_ADDR` names one: every case
/// but the outages. Without it each case says it is skipped; it passes
/// nothing then.
mod consul_real {
    use super::*;

    macro_rules! real_cases {
        ($($case:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(b) = real_consul_backend() else {
                        eprintln!("skipped: CONSUL_HTTP_ADDR not set");
                        return;
                    };
                    super::$case(&b).await;
                    let _ = b.node("cleanup").delete_cluster().await;
                }
            )*
        };
    }

    real_cases!(
        acquire_is_exclusive,
        update_leader_only_for_holder,
        delete_leader_only_own,
        concurrent_acquire_has_one_winner,
        update_leader_compares_the_version_given,
        same_name_never_touches_anothers_leader_key,
        restarted_daemon_keeps_the_key_of_its_inherited_session,
        keys_expire_after_ttl,
        renewal_keeps_keys,
        keep_alive_keeps_keys_without_writing,
        release_session_drops_keys_at_once,
        ttl_change_moves_keys_to_new_session,
        initialize_create_only_then_overwrite,
        config_cas,
        failover_cas,
        failsafe_key,
        sync_key_cas,
        load_cluster_parses_everything,
        watch_reports_leader_deletion,
        watch_reports_leader_expiry,
        reads_with_a_watch_see_changes,
        fresh_read_sees_another_clients_write_at_once,
        cached_view_converges_after_a_burst,
        hold_deadline_is_what_the_store_keeps,
    );
}
