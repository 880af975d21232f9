//! A TCP forwarder between one daemon and etcd, so a test can cut that
//! daemon alone off from the DCS while the others keep it.
//!
//! [`TcpProxy::cut`] closes every forwarded connection and closes new
//! ones as they arrive, much as a firewall rule `REJECT --reject-with
//! tcp-reset` does (one of `scripts/bench-partition`'s iptables forms, which tests
//! cannot use: every daemon runs as the same OS user). Both of the proxy's
//! ends are shut down at once, so nothing the daemon sends after the cut
//! reaches the store, then or later, as in a partition (a late ping would
//! renew a ZooKeeper session: docs/dcs.md, "Benchmarks on ZooKeeper"). [`TcpProxy::heal`] lets
//! connections through again. Plain threads, so it works under any runtime.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use super::free_port;

pub struct TcpProxy {
    port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Both ends of every live forwarded connection.
    live: Mutex<Vec<TcpStream>>,
}

impl TcpProxy {
    /// Listen on a free loopback port and forward to `target`.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind proxy port");
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                if s.cut.load(Ordering::SeqCst) {
                    reset(&client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    reset(&client);
                    continue;
                };
                let _ = forward(&s, client, server);
            }
        });
        TcpProxy { port, shared }
    }

    /// `127.0.0.1:<port>`, for the daemon's `etcd3.hosts`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Reset every connection and refuse new ones until [`TcpProxy::heal`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        for s in self.shared.live.lock().expect("proxy lock").drain(..) {
            reset(&s);
        }
    }

    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }
}

/// Close both directions: the daemon's next read or write fails at once,
/// as after a reset.
fn reset(s: &TcpStream) {
    let _ = s.shutdown(Shutdown::Both);
}

fn forward(s: &Arc<Shared>, client: TcpStream, server: TcpStream) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let mut live = s.live.lock().expect("proxy lock");
        live.push(client.try_clone()?);
        live.push(server.try_clone()?);
    }
    for (mut from, mut to) in [(client.try_clone()?, server.try_clone()?), (server, client)] {
        thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    Ok(())
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
