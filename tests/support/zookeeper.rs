//! A throw-away standalone ZooKeeper for integration tests.
//!
//! `ZkServer::start()` runs Debian's `zookeeper` jar (`ZooKeeperServerMain`)
//! on a free loopback port below the ephemeral range, with its own data dir
//! and `zoo.cfg` in a fresh temp dir, and waits (with a deadline) until it
//! answers `ruok` with `imok`. A missing package is a test failure, not a
//! skip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cluster::TestCluster;
use super::free_port;

const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Debian's jar and the configuration directory its log4j setup lives in;
/// the two netty jars its manifest does not name, which the secure client
/// port (Netty's connection factory) needs.
const CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:\
                         /usr/share/java/netty-codec.jar:/usr/share/java/netty-resolver.jar";
const JAR: &str = "/usr/share/java/zookeeper.jar";

pub struct ZkServer {
    dir: PathBuf,
    /// The loopback address it serves clients on (127.0.0.1 unless the
    /// ensemble was started with [`ZkEnsemble::start_on_loopbacks`]).
    host: [u8; 4],
    port: u16,
    /// The TLS client port ([`ZkServer::start_tls`]).
    secure_port: Option<u16>,
    child: Option<Child>,
    /// A member of an ensemble: ready once it serves as leader or follower.
    in_ensemble: bool,
}

fn unique_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "pgpilot-zk-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// A four-letter-word command's answer ("" when none).
fn four_letters(host: [u8; 4], port: u16, cmd: &[u8]) -> String {
    let addr = SocketAddr::from((host, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(cmd).is_err() {
        return String::new();
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

/// A standalone server answers `imok`; a member of an ensemble serves once
/// `srvr` shows its mode (leader or follower: the quorum is up).
fn ready(host: [u8; 4], port: u16, in_ensemble: bool) -> bool {
    if in_ensemble {
        let srvr = four_letters(host, port, b"srvr");
        srvr.contains("Mode: leader") || srvr.contains("Mode: follower")
    } else {
        four_letters(host, port, b"ruok") == "imok"
    }
}

impl ZkServer {
    /// Start ZooKeeper and wait until it answers. `tick_ms` is its
    /// `tickTime`: the granted session timeouts lie between 2 and 20 ticks.
    pub fn start(tick_ms: u64) -> ZkServer {
        ZkServer::start_with(tick_ms, None)
    }

    /// The same with a TLS client port beside the plain one
    /// (`secureClientPort`, Netty's connection factory): the server presents
    /// `cert` (with `key`, unencrypted PKCS#8) and demands a client
    /// certificate signed by `ca` (`ssl.clientAuth=need`). The plain port
    /// stays for the readiness check (`ruok`).
    pub fn start_tls(tick_ms: u64, cert: &Path, key: &Path, ca: &Path) -> ZkServer {
        ZkServer::start_with(tick_ms, Some((cert, key, ca)))
    }

    fn start_with(tick_ms: u64, tls: Option<(&Path, &Path, &Path)>) -> ZkServer {
        assert!(
            Path::new(JAR).exists(),
            "{JAR} missing: install Debian's `zookeeper` package (scripts/lib.sh ensure_packages)"
        );
        let mut last_err = String::new();
        for _ in 0..3 {
            let dir = unique_dir();
            std::fs::create_dir_all(dir.join("data")).expect("create zookeeper temp dir");
            let port = free_port();
            let mut cfg = format!(
                "tickTime={tick_ms}\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n",
                dir.join("data").display()
            );
            let mut secure_port = None;
            if let Some((cert, key, ca)) = tls {
                // ZooKeeper's PEM key store: the key and the chain in one file.
                let mut pem = std::fs::read_to_string(key).expect("read the server key");
                pem.push_str(&std::fs::read_to_string(cert).expect("read the server cert"));
                let store = dir.join("server.pem");
                std::fs::write(&store, pem).expect("write the key store");
                let sp = free_port();
                cfg.push_str(&format!(
                    "secureClientPort={sp}\nsecureClientPortAddress=127.0.0.1\n\
                     serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
                     ssl.keyStore.location={}\nssl.keyStore.type=PEM\n\
                     ssl.trustStore.location={}\nssl.trustStore.type=PEM\nssl.clientAuth=need\n",
                    store.display(),
                    ca.display()
                ));
                secure_port = Some(sp);
            }
            std::fs::write(dir.join("zoo.cfg"), cfg).expect("write zoo.cfg");
            let mut s = ZkServer {
                dir,
                host: [127, 0, 0, 1],
                port,
                secure_port,
                child: None,
                in_ensemble: false,
            };
            match s.spawn_and_wait() {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("zookeeper did not start: {last_err}");
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.spawn()?;
        self.wait()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("zookeeper.out"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("java")
            .args(["-Xmx128m", "-XX:+UseSerialGC", "-cp", CLASSPATH])
            .arg(format!("-Dzookeeper.log.dir={}", self.dir.display()))
            .arg(if self.in_ensemble {
                "org.apache.zookeeper.server.quorum.QuorumPeerMain"
            } else {
                "org.apache.zookeeper.server.ZooKeeperServerMain"
            })
            .arg(self.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `java` for zookeeper: {e}"));
        self.child = Some(child);
        Ok(())
    }

    fn wait(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if ready(self.host, self.port, self.in_ensemble) {
                return Ok(());
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "zookeeper exited with {st}; see {}",
                    self.dir.join("zookeeper.out").display()
                ));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("zookeeper not ready within {READY_DEADLINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `<address>:<port>`, as the `zookeeper.hosts` setting names it.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host_name(), self.port)
    }

    /// `<address>:<TLS port>` of a server from [`ZkServer::start_tls`].
    pub fn secure_server(&self) -> String {
        let port = self.secure_port.expect("a server started with start_tls");
        format!("{}:{port}", self.host_name())
    }

    /// Client connections it has open, as `srvr` counts them (the `srvr`
    /// query's own included); `None` when it does not answer.
    pub fn connections(&self) -> Option<u32> {
        four_letters(self.host, self.port, b"srvr")
            .lines()
            .find_map(|l| l.strip_prefix("Connections: "))
            .and_then(|n| n.trim().parse().ok())
    }

    /// The loopback address it serves on, e.g. `127.0.0.2`.
    pub fn host_name(&self) -> String {
        let [a, b, c, d] = self.host;
        format!("{a}.{b}.{c}.{d}")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn signal(&self, sig: Signal) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// SIGTERM and reap; data kept for `restart`.
    pub fn stop(&mut self) {
        self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGTERM);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGKILL and reap; data kept for `restart`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and data dir after `stop`/`kill`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "zookeeper is still running");
        if let Err(e) = self.spawn_and_wait() {
            panic!("zookeeper did not restart: {e}");
        }
    }

    /// Freeze the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Undo `pause` (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }
}

/// A ZooKeeper ensemble of `n` servers on loopback, each with its own
/// data dir, `myid` and `zoo.cfg`; started together, ready once every
/// member serves (leader or follower).
pub struct ZkEnsemble {
    pub members: Vec<ZkServer>,
}

impl ZkEnsemble {
    pub fn start(n: usize, tick_ms: u64) -> ZkEnsemble {
        ZkEnsemble::start_with(n, tick_ms, false)
    }

    /// An ensemble whose member `i` serves on `127.0.0.<i+1>`, every member
    /// on the same client port: the shape Exhibitor describes (host names
    /// and one port), which members on one address cannot have.
    pub fn start_on_loopbacks(n: usize, tick_ms: u64) -> ZkEnsemble {
        ZkEnsemble::start_with(n, tick_ms, true)
    }

    fn start_with(n: usize, tick_ms: u64, own_addresses: bool) -> ZkEnsemble {
        assert!(
            Path::new(JAR).exists(),
            "{JAR} missing: install Debian's `zookeeper` package (scripts/lib.sh ensure_packages)"
        );
        let shared_client = free_port();
        let host = |i: usize| -> [u8; 4] {
            if own_addresses {
                [127, 0, 0, u8::try_from(i + 1).expect("a few members")]
            } else {
                [127, 0, 0, 1]
            }
        };
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| {
                let client = if own_addresses {
                    shared_client
                } else {
                    free_port()
                };
                (client, free_port(), free_port())
            })
            .collect();
        let quorum: String = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer, elect))| {
                let [a, b, c, d] = host(i);
                format!("server.{}={a}.{b}.{c}.{d}:{peer}:{elect}\n", i + 1)
            })
            .collect();
        let mut members: Vec<ZkServer> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, _, _))| {
                let dir = unique_dir();
                std::fs::create_dir_all(dir.join("data")).expect("create zookeeper temp dir");
                std::fs::write(dir.join("data/myid"), format!("{}\n", i + 1)).expect("myid");
                let [a, b, c, d] = host(i);
                let cfg = format!(
                    "tickTime={tick_ms}\ninitLimit=20\nsyncLimit=10\ndataDir={}\n\
                     clientPort={client}\nclientPortAddress={a}.{b}.{c}.{d}\n\
                     admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n{quorum}",
                    dir.join("data").display()
                );
                std::fs::write(dir.join("zoo.cfg"), cfg).expect("write zoo.cfg");
                ZkServer {
                    dir,
                    host: host(i),
                    port: *client,
                    secure_port: None,
                    child: None,
                    in_ensemble: true,
                }
            })
            .collect();
        for m in &mut members {
            m.spawn()
                .unwrap_or_else(|e| panic!("zookeeper member: {e}"));
        }
        for m in &mut members {
            m.wait()
                .unwrap_or_else(|e| panic!("zookeeper ensemble: {e}"));
        }
        ZkEnsemble { members }
    }

    /// Every member's `<address>:<port>`.
    pub fn servers(&self) -> Vec<String> {
        self.members.iter().map(ZkServer::server).collect()
    }

    /// The `<address>:<port>` of the members not killed or stopped.
    pub fn running_servers(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(ZkServer::server)
            .collect()
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster as a fresh read of the test's ZooKeeper (its server, or
/// the running members of its ensemble) shows it; `None` only if no read
/// succeeded within 10 s. A read is retried: a reader's session that a
/// loaded machine's JVM is slow to open is not what any test checks.
pub async fn read_cluster(c: &TestCluster) -> Option<pgpilot::dcs::Cluster> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(cl) = read_cluster_once(c).await {
            return Some(cl);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_cluster_once(c: &TestCluster) -> Option<pgpilot::dcs::Cluster> {
    let servers = match (&c.zookeeper, &c.zookeeper_ensemble) {
        (Some(zk), _) => vec![zk.server()],
        (None, Some(e)) => e.running_servers(),
        (None, None) => return None,
    };
    let reader = pgpilot::dcs::zookeeper::ZooKeeperDcs::new(
        pgpilot::dcs::zookeeper::ZkSettings {
            servers,
            acls: Vec::new(),
            auth: Vec::new(),
            tls: None,
        },
        pgpilot::dcs::keys::cluster_prefix("/it/", &c.scope),
        "test-reader".into(),
        Duration::from_secs(10),
        Duration::from_secs(5),
    );
    use pgpilot::dcs::Dcs;
    let cl = reader.load_cluster_fresh().await.ok();
    let _ = reader.release_session().await;
    cl
}
