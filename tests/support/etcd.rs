//! A throw-away single-node etcd for integration tests.
//!
//! `EtcdServer::start()` runs the `etcd` binary on free loopback ports in a
//! fresh temp dir and waits (with a deadline) until `/health` says true. A
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
    /// Serves the v2 keys API too (`--enable-v2`).
    v2: bool,
    child: Option<Child>,
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
        EtcdServer::start_with(true)
    }

    /// An etcd that serves only v3, as etcd 3.4 does by default: the v2
    /// keys API answers a plain-text 404.
    pub fn start_v3_only() -> EtcdServer {
        EtcdServer::start_with(false)
    }

    fn start_with(v2: bool) -> EtcdServer {
        // reqwest has no built-in rustls provider (see pgpilot::tls).
        pgpilot::tls::install_provider();
        // A port picked here may be taken before etcd binds it; try again.
        let mut last_err = String::new();
        for _ in 0..3 {
            let dir = unique_dir();
            std::fs::create_dir_all(&dir).expect("create etcd temp dir");
            let mut s = EtcdServer {
                dir,
                client_port: free_port(),
                peer_port: free_port(),
                v2,
                child: None,
            };
            match s.spawn_and_wait() {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("etcd did not start: {last_err}");
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.out"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("etcd")
            .args(["--name", "t", "--logger=zap"])
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
            .arg(format!("--initial-cluster=t={peer}"))
            .args(["--initial-cluster-state", "new"])
            // The v2 keys API too, for the etcd v2 backend's tests (etcd
            // 3.4 serves it only when asked; v3 clients are unaffected).
            .arg(format!("--enable-v2={}", self.v2))
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
            if healthy(self.client_port) {
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

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
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
