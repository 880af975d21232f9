//! A stand-in Exhibitor for integration tests: it answers
//! `GET /exhibitor/v1/cluster/list` with `{"servers": [...], "port": N}`,
//! the answer changeable mid-test ([`ExhibitorServer::set`]). Exhibitor
//! itself is archived and cannot be installed; this is the one endpoint
//! Patroni (and pgpilot) ask of it. Every other path is a 404.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::free_port;

pub struct ExhibitorServer {
    port: u16,
    answer: Arc<Mutex<String>>,
    requests: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn body(servers: &[String], zk_port: u16) -> String {
    serde_json::json!({"servers": servers, "port": zk_port}).to_string()
}

impl ExhibitorServer {
    /// Listen on `127.0.0.1:<free port>`, listing `servers` (host names)
    /// with client port `zk_port`.
    pub fn start(servers: &[String], zk_port: u16) -> ExhibitorServer {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the Exhibitor stand-in");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let answer = Arc::new(Mutex::new(body(servers, zk_port)));
        let requests = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (answer, requests, stop) = (answer.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let text = answer.lock().map(|a| a.clone()).unwrap_or_default();
                            if serve(conn, &text) {
                                requests.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        ExhibitorServer {
            port,
            answer,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Answer with `servers` and `zk_port` from now on.
    pub fn set(&self, servers: &[String], zk_port: u16) {
        if let Ok(mut a) = self.answer.lock() {
            *a = body(servers, zk_port);
        }
    }

    /// How many cluster lists it served.
    pub fn requests(&self) -> u32 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Answer one request; `true` if it was the cluster list.
fn serve(mut conn: TcpStream, answer: &str) -> bool {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&req);
    let listed = line.starts_with("GET /exhibitor/v1/cluster/list ");
    let (status, text) = if listed {
        ("200 OK", answer)
    } else {
        ("404 Not Found", "")
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    listed
}

impl Drop for ExhibitorServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
