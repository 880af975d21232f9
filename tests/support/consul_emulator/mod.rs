//! An emulator of the part of Consul's HTTP API that Patroni and pgpilot
//! use, written from Consul's documentation, for tests: no Consul server
//! can be installed on these machines. One agent that is also the only
//! server (every read consistent), on 127.0.0.1, in a thread of its own
//! (its own runtime, so it serves whatever the test's runtime is doing).
//!
//! Covered: KV (`cas`, `acquire`, `release`, `flags`, `recurse`, `keys`,
//! `raw`, blocking `index`/`wait`), transactions of KV operations
//! (`/v1/txn`), sessions (create, renew, destroy, info, list; TTL,
//! `behavior`, lock-delay, checks), agent services and checks (HTTP checks
//! are probed, TTL checks expire), health and catalog reads of services,
//! `agent/self`, `status/leader`. Not covered: ACLs (tokens are accepted
//! and ignored), several datacenters (`dc` is ignored), prepared queries,
//! events, `DeregisterCriticalServiceAfter` (kept, never acted on), DNS.
//! `tests/consul_emulator.rs` pins each rule with a test.
//!
//! `CONSUL_EMULATOR_LOG=1` prints every request and its status on stderr.
//!
//! The same code runs outside the tests as a program of its own,
//! `examples/consul-emulator.rs` (`cargo build --example consul-emulator`),
//! which `scripts/demo --dcs consul` starts: an emulator, not Consul, and
//! never part of the package. Keep this module free of test-only helpers
//! but `super::free_port` (tests/support/ports.rs, which the example
//! includes too).

pub mod agent;
pub mod duration;
pub mod http;
pub mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

pub use store::{CheckStatus, EmulatorConfig, State};

use http::{Request, Response};
use store::{ApiError, PutArgs};

/// Consul's limit on a KV value: 512 KiB.
const MAX_VALUE: usize = 512 * 1024;
/// A blocking query's default and largest `wait` (docs "Blocking Queries").
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);

struct Shared {
    state: Mutex<State>,
    cfg: EmulatorConfig,
    /// Bumped after every write: blocking queries and the reaper wake on it.
    changed: watch::Sender<u64>,
    /// While set, nothing is answered and nothing expires (a SIGSTOPped
    /// server).
    frozen: watch::Sender<bool>,
    log: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.send_modify(|v| *v += 1);
        r
    }
}

struct Server {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A running emulator; stopped when dropped.
pub struct ConsulEmulator {
    shared: Arc<Shared>,
    port: u16,
    server: Option<Server>,
}

impl ConsulEmulator {
    /// An emulator with Consul's defaults (session TTL at least 10 s).
    pub fn start() -> ConsulEmulator {
        ConsulEmulator::start_with(EmulatorConfig::default())
    }

    /// An emulator with `session_ttl_min` lowered to `min`, as an operator
    /// configures a Consul agent for short TTLs.
    pub fn with_session_ttl_min(min: Duration) -> ConsulEmulator {
        ConsulEmulator::start_with(EmulatorConfig {
            session_ttl_min: min,
            ..EmulatorConfig::default()
        })
    }

    pub fn start_with(cfg: EmulatorConfig) -> ConsulEmulator {
        ConsulEmulator::start_on(super::free_port(), cfg).expect("bind the emulator's port")
    }

    /// An emulator on 127.0.0.1:`port` (the standalone emulator of
    /// examples/consul-emulator.rs: a fixed port, an error when it is taken).
    pub fn start_on(port: u16, cfg: EmulatorConfig) -> std::io::Result<ConsulEmulator> {
        pgpilot::tls::install_provider();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            cfg,
            changed: watch::channel(0).0,
            frozen: watch::channel(false).0,
            log: AtomicBool::new(std::env::var_os("CONSUL_EMULATOR_LOG").is_some()),
        });
        let mut e = ConsulEmulator {
            shared,
            port,
            server: None,
        };
        e.serve()?;
        Ok(e)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Stop serving: the listener and every connection close (a stopped
    /// Consul). The state is kept for [`ConsulEmulator::resume`].
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            if let Some(tx) = s.shutdown.take() {
                let _ = tx.send(());
            }
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Serve again on the same port with the same state, as a restarted
    /// single server: every session's timer starts afresh (docs
    /// "Sessions": TTLs are renewed on a leader election).
    pub fn resume(&mut self) {
        self.serve().expect("bind the emulator's port");
    }

    fn serve(&mut self) -> std::io::Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        self.shared.lock().reset_session_timers(&self.shared.cfg);
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", self.port))?;
        std_listener.set_nonblocking(true)?;
        let (tx, rx) = oneshot::channel();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("consul-emulator".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("emulator runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                    tokio::spawn(reaper(shared.clone()));
                    tokio::spawn(checker(shared.clone()));
                    tokio::select! {
                        _ = accept_loop(listener, shared) => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime ends every connection task: their
                // sockets close.
                drop(rt);
            })?;
        self.server = Some(Server {
            shutdown: Some(tx),
            thread: Some(thread),
        });
        Ok(())
    }

    /// Stop answering and expiring, connections kept open (SIGSTOP).
    pub fn freeze(&self) {
        self.shared.frozen.send_replace(true);
    }

    /// Undo [`ConsulEmulator::freeze`].
    pub fn thaw(&self) {
        self.shared.frozen.send_replace(false);
    }

    /// Look at (or change) the state directly.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        self.shared.write(f)
    }

    /// The value of `key`, if present.
    pub fn value(&self, key: &str) -> Option<String> {
        self.shared
            .lock()
            .kv
            .get(key)
            .map(|e| String::from_utf8_lossy(&e.value).into_owned())
    }
}

impl Drop for ConsulEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let _ = sock.set_nodelay(true);
        tokio::spawn(serve_connection(sock, shared.clone()));
    }
}

async fn serve_connection(sock: TcpStream, shared: Arc<Shared>) {
    let mut conn = BufReader::new(sock);
    while let Ok(Some(req)) = http::read_request(&mut conn).await {
        let mut frozen = shared.frozen.subscribe();
        let _ = frozen.wait_for(|f| !*f).await;
        let resp = handle(&shared, &req).await;
        // A blocking query that ends while frozen is not answered either.
        let _ = frozen.wait_for(|f| !*f).await;
        if shared.log.load(Ordering::Relaxed) {
            let q: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            eprintln!(
                "consul-emulator: {} {}?{} -> {} {}",
                req.method,
                req.path,
                q.join("&"),
                resp.status,
                String::from_utf8_lossy(&resp.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            );
        }
        if http::write_response(&mut conn, &resp, req.keep_alive)
            .await
            .is_err()
            || !req.keep_alive
        {
            return;
        }
    }
}

/// Invalidates sessions when their time comes (and marks TTL checks
/// critical), woken by the earliest deadline or by any write.
async fn reaper(shared: Arc<Shared>) {
    let mut changed = shared.changed.subscribe();
    let mut frozen = shared.frozen.subscribe();
    loop {
        let _ = frozen.wait_for(|f| !*f).await;
        // Expired timers, and sessions on a check that went critical.
        let expired = shared.lock().expire();
        if expired {
            shared.changed.send_modify(|v| *v += 1);
        }
        let next = shared.lock().next_deadline();
        let sleep_until = next.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(1),
            tokio::time::Instant::from_std,
        );
        tokio::select! {
            _ = tokio::time::sleep_until(sleep_until) => {}
            _ = changed.changed() => {}
        }
    }
}

/// Probes HTTP checks every `interval`: 2xx passing, 429 warning, anything
/// else (or no answer within 10 s, Consul's default timeout) critical.
async fn checker(shared: Arc<Shared>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .danger_accept_invalid_certs(true)
        .build()
        .expect("check client");
    let mut next_run: std::collections::HashMap<String, tokio::time::Instant> = Default::default();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if *shared.frozen.borrow() {
            continue;
        }
        let due: Vec<(String, String, Duration)> = {
            let st = shared.lock();
            let now = tokio::time::Instant::now();
            st.checks
                .values()
                .filter_map(|c| Some((c.id.clone(), c.http.clone()?, c.interval?)))
                .filter(|(id, _, _)| next_run.get(id).is_none_or(|t| *t <= now))
                .collect()
        };
        for (id, url, interval) in due {
            next_run.insert(id.clone(), tokio::time::Instant::now() + interval);
            let (client, shared) = (client.clone(), shared.clone());
            tokio::spawn(async move {
                let (status, output) = match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => (
                        CheckStatus::Passing,
                        format!("HTTP GET {url}: {}", r.status()),
                    ),
                    Ok(r) if r.status().as_u16() == 429 => (
                        CheckStatus::Warning,
                        format!("HTTP GET {url}: {}", r.status()),
                    ),
                    Ok(r) => (
                        CheckStatus::Critical,
                        format!("HTTP GET {url}: {}", r.status()),
                    ),
                    Err(e) => (CheckStatus::Critical, format!("HTTP GET {url}: {e}")),
                };
                let _ = shared.write(|st| st.check_update(&id, status, &output));
            });
        }
    }
}

fn bool_resp(b: bool) -> Response {
    Response::json(200, &Value::Bool(b))
}

fn err_resp(e: ApiError) -> Response {
    Response::text(e.status, e.body)
}

fn parse_u64(req: &Request, name: &str) -> Result<Option<u64>, ApiError> {
    match req.param(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::new(400, format!("Invalid {name} index"))),
    }
}

fn json_body(req: &Request) -> Result<Value, ApiError> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::new(400, format!("Request decode failed: {e}")))
}

/// A blocking query (docs "Blocking Queries"): without `index`, answer at
/// once; with it, answer when the result's index exceeds it or when
/// `wait` (default 5 min, at most 10 min, plus up to wait/16 of jitter) has
/// passed. The index is never below 1.
async fn blocking(
    shared: &Shared,
    req: &Request,
    query: impl Fn(&State) -> (u64, Response),
) -> Response {
    let min = match parse_u64(req, "index") {
        Ok(m) => m.unwrap_or(0),
        Err(e) => return err_resp(e),
    };
    let wait = match req.param("wait") {
        None => DEFAULT_WAIT,
        Some(w) => match duration::parse(w) {
            Some(d) => d.min(MAX_WAIT),
            None => return err_resp(ApiError::new(400, format!("Invalid wait time {w:?}"))),
        },
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = (wait / 16).mul_f64(f64::from(nanos % 1000) / 1000.0);
    let deadline = tokio::time::Instant::now() + wait + jitter;
    let mut changed = shared.changed.subscribe();
    loop {
        changed.borrow_and_update();
        let (idx, resp) = query(&shared.lock());
        let idx = idx.max(1);
        if min == 0 || idx > min || tokio::time::Instant::now() >= deadline {
            return resp.with_index(idx);
        }
        if tokio::time::timeout_at(deadline, changed.changed())
            .await
            .is_err()
        {
            let (idx, resp) = query(&shared.lock());
            return resp.with_index(idx.max(1));
        }
    }
}

async fn handle(shared: &Shared, req: &Request) -> Response {
    let cfg = &shared.cfg;
    let path = req.path.as_str();
    let m = req.method.as_str();
    if let Some(key) = path.strip_prefix("/v1/kv/") {
        return match m {
            "GET" => kv_get(shared, req, key).await,
            "PUT" => kv_put(shared, req, key),
            "DELETE" => {
                let cas = match parse_u64(req, "cas") {
                    Ok(c) => c,
                    Err(e) => return err_resp(e),
                };
                let recurse = req.has("recurse");
                bool_resp(shared.write(|st| st.kv_delete(key, recurse, cas)))
            }
            _ => Response::text(405, "method not allowed"),
        };
    }
    if path == "/v1/txn" && m == "PUT" {
        let body = match json_body(req) {
            Ok(b) => b,
            Err(e) => return err_resp(e),
        };
        let ops = body.as_array().cloned().unwrap_or_default();
        if ops.len() > 128 {
            return Response::text(413, "Transaction contains too many operations");
        }
        return match shared.write(|st| st.txn(&ops)) {
            Ok(results) => {
                Response::json(200, &json!({ "Results": results, "Errors": Value::Null }))
            }
            Err(errors) => {
                Response::json(409, &json!({ "Results": Value::Null, "Errors": errors }))
            }
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/session/") {
        let (op, id) = rest.split_once('/').unwrap_or((rest, ""));
        let index = shared.lock().index;
        return match (m, op) {
            ("PUT", "create") => {
                let body = match json_body(req) {
                    Ok(b) => b,
                    Err(e) => return err_resp(e),
                };
                match shared.write(|st| st.session_create(&body, cfg)) {
                    Ok(id) => Response::json(200, &json!({ "ID": id })),
                    Err(e) => err_resp(e),
                }
            }
            ("PUT", "destroy") => bool_resp({
                shared.write(|st| st.session_invalidate(id));
                true
            }),
            ("PUT", "renew") => match shared.write(|st| st.session_renew(id, cfg)) {
                Ok(s) => Response::json(200, &json!([s])),
                Err(e) => err_resp(e),
            },
            ("GET", "info") => {
                let st = shared.lock();
                let v: Vec<Value> = st
                    .sessions
                    .get(id)
                    .map(State::session_json)
                    .into_iter()
                    .collect();
                Response::json(200, &Value::Array(v)).with_index(index)
            }
            ("GET", "list") | ("GET", "node") => {
                let st = shared.lock();
                let v: Vec<Value> = st
                    .sessions
                    .values()
                    .filter(|s| op == "list" || s.node == id)
                    .map(State::session_json)
                    .collect();
                Response::json(200, &Value::Array(v)).with_index(index)
            }
            (_, "create" | "destroy" | "renew") => Response::text(405, "method not allowed"),
            _ => Response::text(404, "not found"),
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/agent/") {
        return agent_route(shared, req, m, rest);
    }
    if let Some(name) = path.strip_prefix("/v1/health/service/") {
        let tag = req.param("tag").map(str::to_owned);
        let passing = req.has("passing");
        let name = name.to_owned();
        return blocking(shared, req, |st| {
            (
                st.index,
                Response::json(200, &st.health_service(&name, tag.as_deref(), passing, cfg)),
            )
        })
        .await;
    }
    if let Some(name) = path.strip_prefix("/v1/catalog/service/") {
        let tag = req.param("tag").map(str::to_owned);
        let name = name.to_owned();
        return blocking(shared, req, |st| {
            (
                st.index,
                Response::json(200, &st.catalog_service(&name, tag.as_deref(), cfg)),
            )
        })
        .await;
    }
    if path == "/v1/catalog/services" {
        return blocking(shared, req, |st| {
            (st.index, Response::json(200, &st.catalog_services()))
        })
        .await;
    }
    if path == "/v1/status/leader" {
        return Response::json(200, &json!("127.0.0.1:8300"));
    }
    Response::text(404, "not found")
}

async fn kv_get(shared: &Shared, req: &Request, key: &str) -> Response {
    let key = key.to_owned();
    if req.has("keys") {
        let sep = req
            .param("separator")
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        return blocking(shared, req, move |st| {
            let (idx, entries) = st.kv_list(&key);
            let mut keys: Vec<String> = Vec::new();
            for (k, _) in entries {
                let shown = match &sep {
                    Some(sep) => match k[key.len()..].find(sep.as_str()) {
                        Some(at) => k[..key.len() + at + sep.len()].to_owned(),
                        None => k.clone(),
                    },
                    None => k.clone(),
                };
                if keys.last() != Some(&shown) {
                    keys.push(shown);
                }
            }
            if keys.is_empty() {
                (idx, Response::text(404, ""))
            } else {
                (idx, Response::json(200, &json!(keys)))
            }
        })
        .await;
    }
    if req.has("recurse") {
        return blocking(shared, req, move |st| {
            let (idx, entries) = st.kv_list(&key);
            if entries.is_empty() {
                return (idx, Response::text(404, ""));
            }
            let v: Vec<Value> = entries
                .iter()
                .map(|(k, e)| State::entry_json(k, e, true))
                .collect();
            (idx, Response::json(200, &Value::Array(v)))
        })
        .await;
    }
    let raw = req.has("raw");
    blocking(shared, req, move |st| {
        let (idx, entry) = st.kv_get(&key);
        match entry {
            None => (idx, Response::text(404, "")),
            Some(e) if raw => (
                idx,
                Response {
                    status: 200,
                    headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                    body: e.value.clone(),
                },
            ),
            Some(e) => (
                idx,
                Response::json(200, &json!([State::entry_json(&key, e, true)])),
            ),
        }
    })
    .await
}

fn kv_put(shared: &Shared, req: &Request, key: &str) -> Response {
    if req.body.len() > MAX_VALUE {
        return Response::text(
            413,
            format!("Request body(truncated) too large, max size: {MAX_VALUE} bytes."),
        );
    }
    let args = (|| -> Result<PutArgs, ApiError> {
        Ok(PutArgs {
            flags: parse_u64(req, "flags")?,
            cas: parse_u64(req, "cas")?,
            acquire: req.param("acquire").map(str::to_owned),
            release: req.param("release").map(str::to_owned),
        })
    })();
    let args = match args {
        Ok(a) => a,
        Err(e) => return err_resp(e),
    };
    let value = req.body.clone();
    match shared.write(|st| st.kv_put(key, value, &args)) {
        Ok(b) => bool_resp(b),
        Err(e) => err_resp(e),
    }
}

fn agent_route(shared: &Shared, req: &Request, m: &str, rest: &str) -> Response {
    let cfg = &shared.cfg;
    let body = || json_body(req);
    let ok = |r: Result<(), ApiError>| match r {
        Ok(()) => Response::text(200, ""),
        Err(e) => err_resp(e),
    };
    match (m, rest) {
        ("GET", "self") => Response::json(
            200,
            &json!({
                "Config": {
                    "Datacenter": cfg.datacenter,
                    "NodeName": cfg.node_name,
                    "NodeID": "00000000-0000-0000-0000-000000000001",
                    "Server": true,
                    "Version": "1.20.0-emulator",
                },
                "Member": { "Name": cfg.node_name, "Addr": "127.0.0.1", "Port": 8301, "Status": 1 },
            }),
        ),
        ("GET", "services") => Response::json(200, &shared.lock().agent_services()),
        ("GET", "checks") => Response::json(200, &shared.lock().agent_checks(cfg)),
        ("PUT", "service/register") => {
            ok(body().and_then(|b| shared.write(|st| st.service_register(&b)).map(|_| ())))
        }
        ("PUT", "check/register") => {
            ok(body().and_then(|b| shared.write(|st| st.check_register(&b)).map(|_| ())))
        }
        _ => {
            if m != "PUT" {
                return Response::text(405, "method not allowed");
            }
            let note = req.param("note").unwrap_or("");
            if let Some(id) = rest.strip_prefix("service/deregister/") {
                ok(shared.write(|st| st.service_deregister(id)))
            } else if let Some(id) = rest.strip_prefix("check/deregister/") {
                ok(shared.write(|st| st.check_deregister(id)))
            } else if let Some(id) = rest.strip_prefix("check/pass/") {
                ok(shared.write(|st| st.check_update(id, CheckStatus::Passing, note)))
            } else if let Some(id) = rest.strip_prefix("check/warn/") {
                ok(shared.write(|st| st.check_update(id, CheckStatus::Warning, note)))
            } else if let Some(id) = rest.strip_prefix("check/fail/") {
                ok(shared.write(|st| st.check_update(id, CheckStatus::Critical, note)))
            } else {
                Response::text(404, "not found")
            }
        }
    }
}
