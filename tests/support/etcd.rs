//! A throw-away etcd for integration tests: one node, or a cluster of
//! several ([`EtcdCluster`]); over HTTPS with client certificates
//! ([`EtcdOptions::tls`]); with RBAC ([`EtcdServer::enable_auth`]).
//!
//! `EtcdServer::start()` runs the `etcd` binary on free loopback ports in a
//! fresh temp dir and waits (with a deadline) until `/health` says true
//! (on a plain metrics port of its own: the client port may be HTTPS). A
//! missing binary is a test failure, not a skip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::free_port;

const HEALTH_DEADLINE: Duration = Duration::from_secs(15);

pub struct EtcdServer {
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// Plain HTTP `/health` (`--listen-metrics-urls`).
    health_port: u16,
    /// The member's name and the `--initial-cluster` it starts with.
    name: String,
    initial_cluster: String,
    options: EtcdOptions,
    child: Option<Child>,
}

/// The TLS files of an HTTPS etcd: its certificate and key, and the CA its
/// clients' certificates must chain to.
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// Serve the client port over HTTPS with these files.
    pub tls: Option<EtcdTlsFiles>,
    /// With `tls`: clients must present a certificate signed by its CA
    /// (`--client-cert-auth`).
    pub client_cert_auth: bool,
    /// `--auth-token-ttl` in seconds: how long an unused RBAC token lives.
    pub auth_token_ttl: Option<u32>,
    /// Without the v2 keys API (`--enable-v2=false`, etcd 3.4's default);
    /// the test etcd serves it unless told so.
    pub v3_only: bool,
}

fn unique_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "pgpilot-etcd-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

/// GET /health over plain HTTP/1.0; true iff etcd reports healthy.
fn healthy(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.contains("\"health\":\"true\"")
}

impl EtcdServer {
    /// Start etcd and wait until it is healthy. Panics (fails the test) if
    /// the binary is missing or it does not come up within the deadline.
    pub fn start() -> EtcdServer {
        EtcdServer::start_with(EtcdOptions::default())
    }

    /// An etcd that serves only v3, as etcd 3.4 does by default: the v2
    /// keys API answers a plain-text 404.
    pub fn start_v3_only() -> EtcdServer {
        EtcdServer::start_with(EtcdOptions {
            v3_only: true,
            ..EtcdOptions::default()
        })
    }

    /// [`EtcdServer::start`] with `options`.
    pub fn start_with(options: EtcdOptions) -> EtcdServer {
        // reqwest has no built-in rustls provider (see pgpilot::tls).
        pgpilot::tls::install_provider();
        // A port picked here may be taken before etcd binds it; try again.
        let mut last_err = String::new();
        for _ in 0..3 {
            let mut s = EtcdServer::prepare("t", options.clone());
            s.initial_cluster = format!("t=http://127.0.0.1:{}", s.peer_port);
            match s.spawn_and_wait() {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("etcd did not start: {last_err}");
    }

    /// A member named `name` on fresh ports and dir, not started.
    fn prepare(name: &str, options: EtcdOptions) -> EtcdServer {
        let dir = unique_dir();
        std::fs::create_dir_all(&dir).expect("create etcd temp dir");
        EtcdServer {
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            health_port: free_port(),
            name: name.to_owned(),
            initial_cluster: String::new(),
            options,
            child: None,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The arguments beyond name, data and URLs: TLS and token settings.
    fn extra_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(t) = &self.options.tls {
            a.push(format!("--cert-file={}", t.cert.display()));
            a.push(format!("--key-file={}", t.key.display()));
            a.push(format!("--trusted-ca-file={}", t.ca.display()));
            if self.options.client_cert_auth {
                a.push("--client-cert-auth".into());
            }
        }
        if let Some(ttl) = self.options.auth_token_ttl {
            a.push(format!("--auth-token-ttl={ttl}"));
        }
        a
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let client = format!("{}://127.0.0.1:{}", self.scheme(), self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let metrics = format!("http://127.0.0.1:{}", self.health_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.out"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("etcd")
            .args(["--name", &self.name, "--logger=zap"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg(format!(
                "--log-outputs={}",
                self.dir.join("etcd.log").display()
            ))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .args(["--initial-cluster-state", "new"])
            // The v2 keys API too, for the etcd v2 backend's tests (etcd
            // 3.4 serves it only when asked; v3 clients are unaffected).
            .arg(format!("--enable-v2={}", !self.options.v3_only))
            .arg(format!("--listen-metrics-urls={metrics}"))
            .args(self.extra_args())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run the `etcd` binary (is etcd-server installed?): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + HEALTH_DEADLINE;
        loop {
            if healthy(self.health_port) {
                return Ok(());
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "etcd exited with {st}; see {}",
                    self.log_path().display()
                ));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("etcd not healthy within {HEALTH_DEADLINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http(s)://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client_port)
    }

    /// Run `etcdctl` against this member (as root when auth is on: `user`),
    /// with the test's certificates on an HTTPS member; panics on failure.
    pub fn etcdctl(&self, user: Option<&str>, args: &[&str]) -> String {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--dial-timeout=5s");
        if let Some(t) = &self.options.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()));
            // The server certificate is also a client one (extendedKeyUsage).
            cmd.arg(format!("--cert={}", t.cert.display()));
            cmd.arg(format!("--key={}", t.key.display()));
        }
        if let Some(u) = user {
            cmd.arg(format!("--user={u}"));
        }
        let out = cmd.args(args).output().expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Turn RBAC on: `root` with `root_password`, and `user` with
    /// `password`, whose role may read and write everything under
    /// `/service/`.
    pub fn enable_auth(&self, root_password: &str, user: &str, password: &str) {
        self.etcdctl(None, &["user", "add", &format!("root:{root_password}")]);
        self.etcdctl(None, &["role", "add", "pgpilot"]);
        self.etcdctl(
            None,
            &[
                "role",
                "grant-permission",
                "pgpilot",
                "--prefix=true",
                "readwrite",
                "/service/",
            ],
        );
        self.etcdctl(None, &["user", "add", &format!("{user}:{password}")]);
        self.etcdctl(None, &["user", "grant-role", user, "pgpilot"]);
        self.etcdctl(None, &["auth", "enable"]);
    }

    /// `etcdctl` on the v2 API (`ETCDCTL_API=2`), as `user` (`name:password`).
    pub fn etcdctl_v2(&self, user: Option<&str>, args: &[&str]) -> String {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "2")
            .arg(format!("--endpoints={}", self.endpoint()));
        if let Some(t) = &self.options.tls {
            cmd.arg(format!("--ca-file={}", t.ca.display()));
            cmd.arg(format!("--cert-file={}", t.cert.display()));
            cmd.arg(format!("--key-file={}", t.key.display()));
        }
        if let Some(u) = user {
            cmd.arg(format!("--username={u}"));
        }
        let out = cmd.args(args).output().expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl (v2) {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Turn etcd's v2 authentication on (its own users and roles, not
    /// v3's): `root` with `root_password`, and `user` with `password`,
    /// whose role may read and write `/service/*`; the `guest` role (what a
    /// request without credentials gets) loses its rights on everything.
    pub fn enable_v2_auth(&self, root_password: &str, user: &str, password: &str) {
        let root = format!("root:{root_password}");
        let root = Some(root.as_str());
        self.etcdctl_v2(None, &["user", "add", &format!("root:{root_password}")]);
        self.etcdctl_v2(None, &["auth", "enable"]);
        self.etcdctl_v2(root, &["role", "add", "pgpilot"]);
        self.etcdctl_v2(
            root,
            &[
                "role",
                "grant",
                "pgpilot",
                "-path",
                "/service/*",
                "-readwrite",
            ],
        );
        self.etcdctl_v2(root, &["user", "add", &format!("{user}:{password}")]);
        self.etcdctl_v2(root, &["user", "grant", user, "-roles", "pgpilot"]);
        self.etcdctl_v2(
            root,
            &["role", "revoke", "guest", "-path", "/*", "-readwrite"],
        );
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, sig);
        }
    }

    /// Graceful stop (SIGTERM) and reap. Data is kept for `restart`.
    pub fn stop(&mut self) {
        self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGTERM);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGKILL and reap. Data is kept for `restart`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same ports and data dir after `stop`/`kill`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is still running");
        // The member already exists in the data dir; the flags are ignored
        // apart from the URLs, which stay the same.
        if let Err(e) = self.spawn_and_wait() {
            panic!("etcd did not restart: {e}");
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

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster of etcd members on loopback, started together.
pub struct EtcdCluster {
    pub members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// `n` members, each healthy (which needs a quorum) before this returns.
    pub fn start(n: usize) -> EtcdCluster {
        pgpilot::tls::install_provider();
        let mut members: Vec<EtcdServer> = (0..n)
            .map(|i| EtcdServer::prepare(&format!("m{i}"), EtcdOptions::default()))
            .collect();
        let initial: Vec<String> = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let initial = initial.join(",");
        for m in &mut members {
            m.initial_cluster = initial.clone();
        }
        // Each waits for a quorum to be healthy: spawn every one first.
        std::thread::scope(|s| {
            let handles: Vec<_> = members
                .iter_mut()
                .map(|m| s.spawn(move || m.spawn_and_wait()))
                .collect();
            for h in handles {
                if let Err(e) = h.join().expect("etcd member thread") {
                    panic!("etcd cluster member did not start: {e}");
                }
            }
        });
        EtcdCluster { members }
    }

    /// Every member's client URL, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::endpoint).collect()
    }
}
