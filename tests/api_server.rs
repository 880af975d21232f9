//! The REST API over real HTTP: fake actors and an in-test DCS behind the
//! real server, checked with reqwest.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use pgpilot::api::{ApiContext, serve_listener};
use pgpilot::config::Tags;
use pgpilot::dcs::{
    Cluster, Dcs, DcsError, DcsResult, Expiry, Leader, LeaderHold, MemberData, Status, Version,
    WatchEvent,
};
use pgpilot::ha::{DataDir, PgFacts, PgRole};
use pgpilot::messages::board::PgBoard;
use pgpilot::messages::config::{ReloadConfig, ReloadError};
use pgpilot::messages::elector::{FailsafeHeartbeat, HaState, SyncDuty, Wake};
use pgpilot::messages::supervisor::{GetPgStatus, PgOp, PgOpOutcome, PgState, PgStatus};
use reqwest::{Method, StatusCode};
use serde_json::Value;

// ---- fakes -----------------------------------------------------------------

/// Answers `SyncDuty` (the HA state is read from a fixed `HaState`).
struct FakeElector;
impl Actor for FakeElector {
    type Context = Context<Self>;
}
impl Handler<SyncDuty> for FakeElector {
    type Result = bool;
    fn handle(&mut self, _: SyncDuty, _: &mut Context<Self>) -> bool {
        false
    }
}

/// Records the leaders `POST /failsafe` reported.
struct HeartbeatSink(Arc<Mutex<Vec<String>>>);
impl Actor for HeartbeatSink {
    type Context = Context<Self>;
}
impl Handler<FailsafeHeartbeat> for HeartbeatSink {
    type Result = ();
    fn handle(&mut self, m: FailsafeHeartbeat, _: &mut Context<Self>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", m.name, m.conn_url));
    }
}

/// Swallows wake-ups of the HA loop.
struct WakeSink;
impl Actor for WakeSink {
    type Context = Context<Self>;
}
impl Handler<Wake> for WakeSink {
    type Result = ();
    fn handle(&mut self, _: Wake, _: &mut Context<Self>) {}
}

/// Answers after `delay` (zero: at once).
struct FakeSupervisor {
    status: PgStatus,
    delay: Duration,
}
impl Actor for FakeSupervisor {
    type Context = Context<Self>;
}
impl Handler<GetPgStatus> for FakeSupervisor {
    type Result = ResponseFuture<PgStatus>;
    fn handle(&mut self, _: GetPgStatus, _: &mut Context<Self>) -> Self::Result {
        let (s, d) = (self.status.clone(), self.delay);
        Box::pin(async move {
            if !d.is_zero() {
                actix::clock::sleep(d).await;
            }
            s
        })
    }
}

impl Handler<PgOp> for FakeSupervisor {
    type Result = MessageResult<PgOp>;
    fn handle(&mut self, op: PgOp, _: &mut Context<Self>) -> Self::Result {
        MessageResult(match op {
            PgOp::Restart(_) => PgOpOutcome::Restarted,
            PgOp::ScheduleRestart { .. } => PgOpOutcome::RestartScheduled,
            PgOp::CancelScheduledRestart => PgOpOutcome::NoScheduledRestart,
            PgOp::Reinitialize { .. } => PgOpOutcome::ReinitializeStarted,
        })
    }
}

struct FakeConfigManager(Arc<Mutex<u32>>);
impl Actor for FakeConfigManager {
    type Context = Context<Self>;
}
impl Handler<ReloadConfig> for FakeConfigManager {
    type Result = Result<(), ReloadError>;
    fn handle(&mut self, _: ReloadConfig, _: &mut Context<Self>) -> Self::Result {
        *self.0.lock().unwrap() += 1;
        Ok(())
    }
}

/// Only `load_cluster` is used by the API; `None` = the store is down.
struct TestDcs(Mutex<Option<Cluster>>);

fn unused<T: Send + 'static>() -> BoxFuture<'static, DcsResult<T>> {
    async { Err(DcsError::Other("not used by the API".into())) }.boxed()
}

impl Dcs for TestDcs {
    fn set_timing(&self, _: Duration, _: Duration) {}
    fn load_cluster(&self) -> BoxFuture<'_, DcsResult<Cluster>> {
        let c = self.0.lock().unwrap().clone();
        async move { c.ok_or_else(|| DcsError::Unreachable("down".into())) }.boxed()
    }
    fn touch_member(&self, _: &MemberData) -> BoxFuture<'_, DcsResult<()>> {
        unused()
    }
    fn attempt_to_acquire_leader(&self) -> BoxFuture<'_, DcsResult<LeaderHold>> {
        unused()
    }
    fn update_leader(&self, _: &Leader) -> BoxFuture<'_, DcsResult<LeaderHold>> {
        unused()
    }
    fn keep_alive(&self) -> BoxFuture<'_, DcsResult<Option<Expiry>>> {
        unused()
    }
    fn delete_leader(&self) -> BoxFuture<'_, DcsResult<bool>> {
        unused()
    }
    fn write_status(&self, _: &Status) -> BoxFuture<'_, DcsResult<()>> {
        unused()
    }
    fn initialize(&self, _: bool, _: &str) -> BoxFuture<'_, DcsResult<bool>> {
        unused()
    }
    fn cancel_initialization(&self) -> BoxFuture<'_, DcsResult<()>> {
        unused()
    }
    fn set_config_value(&self, _: &str, _: Option<&Version>) -> BoxFuture<'_, DcsResult<bool>> {
        unused()
    }
    fn set_failover_value(&self, _: &str, _: Option<&Version>) -> BoxFuture<'_, DcsResult<bool>> {
        unused()
    }
    fn set_history_value(&self, _: &str) -> BoxFuture<'_, DcsResult<bool>> {
        unused()
    }
    fn set_failsafe_value(&self, _: &str) -> BoxFuture<'_, DcsResult<bool>> {
        unused()
    }
    fn set_sync_state_value(
        &self,
        _: &str,
        _: Option<&pgpilot::dcs::Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        unused()
    }
    fn delete_sync_state(&self, _: &pgpilot::dcs::Version) -> BoxFuture<'_, DcsResult<bool>> {
        unused()
    }
    fn delete_cluster(&self) -> BoxFuture<'_, DcsResult<()>> {
        unused()
    }
    fn release_session(&self) -> BoxFuture<'_, DcsResult<()>> {
        unused()
    }
    fn watch(&self) -> BoxStream<'static, WatchEvent> {
        futures_util::stream::empty().boxed()
    }
}

// ---- fixtures --------------------------------------------------------------

fn kv(k: &str, v: &str) -> (String, String, i64, i64) {
    (k.to_owned(), v.to_owned(), 5, 0)
}

fn cluster() -> Cluster {
    Cluster::from_kvs(vec![
        kv("leader", "n1"),
        kv("status", r#"{"optime":50331808}"#),
        kv("config", r#"{"ttl":30,"loop_wait":10}"#),
        kv(
            "history",
            r#"[[1,25165984,"no recovery target specified","2024-01-01T00:00:00+00:00","n1"]]"#,
        ),
        kv(
            "members/n1",
            r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.4","xlog_location":50331808,"timeline":2}"#,
        ),
        kv(
            "members/n2",
            r#"{"conn_url":"postgres://127.0.0.2:5433/postgres","api_url":"http://127.0.0.2:8008/patroni","state":"running","role":"replica","version":"4.1.4","xlog_location":50331000,"receive_lsn":50331000,"replay_lsn":50330000,"replication_state":"streaming","timeline":2}"#,
        ),
    ])
}

fn ha(name: &str, is_leader: bool) -> HaState {
    HaState {
        name: name.into(),
        scope: "batman".into(),
        tags: Tags::default(),
        cluster: Some(Arc::new(cluster())),
        is_leader,
        dcs_last_seen: Some(SystemTime::now()),
        ttl_secs: 30.0,
        loop_wait_secs: 10.0,
        maximum_lag_on_failover: 1 << 20,
        next_cycle_due: Some(Instant::now()),
        failsafe_mode: false,
        failsafe_active: false,
        failsafe: None,
        watchdog_failed: false,
        lease_deadline: None,
        fence_dir: None,
    }
}

fn pg(role: PgRole) -> PgStatus {
    let replica = role == PgRole::Replica;
    PgStatus {
        state: PgState::Running,
        facts: PgFacts {
            running: true,
            role: Some(role),
            lsn: Some(50331808),
            timeline: Some(2),
            following: None,
        },
        data_dir: DataDir::Initialized {
            sysid: "7000000000000000001".into(),
            was_primary: !replica,
        },
        busy: None,
        starting_primary_since: None,
        outcome: None,
        server_version: Some(150018),
        postmaster_start_time: Some("2024-08-28 19:39:26.352526+00:00".into()),
        receive_lsn: replica.then_some(50331000),
        replay_lsn: replica.then_some(50330000),
        replayed_timestamp: None,
        replay_paused: false,
        replication_state: replica.then(|| "streaming".to_owned()),
        replication: vec![],
        synchronous_standby_names: None,
        pending_restart: Default::default(),
        scheduled_restart: None,
        follows_remote: false,
    }
}

struct Node {
    base: String,
    /// What the supervisor would publish (nothing unless a test does).
    pg_board: Arc<PgBoard>,
    dcs: Arc<TestDcs>,
    reloads: Arc<Mutex<u32>>,
    heartbeats: Arc<Mutex<Vec<String>>>,
}

fn start_node(ha: HaState, status: PgStatus, pg_delay: Duration) -> Node {
    let dcs = Arc::new(TestDcs(Mutex::new(Some(cluster()))));
    let reloads = Arc::new(Mutex::new(0));
    let heartbeats = Arc::new(Mutex::new(Vec::new()));
    let pg_board = Arc::new(PgBoard::default());
    let supervisor = FakeSupervisor {
        status,
        delay: pg_delay,
    }
    .start();
    let ctx = ApiContext {
        ha: Arc::new(ha),
        // Unpublished unless a test publishes: then the fake supervisor is
        // not asked.
        pg_board: pg_board.clone(),
        sync_duty: FakeElector.start().recipient(),
        supervisor: supervisor.clone().recipient(),
        pg_ops: supervisor.recipient(),
        config_manager: FakeConfigManager(reloads.clone()).start().recipient(),
        failsafe: HeartbeatSink(heartbeats.clone()).start().recipient(),
        dcs: dcs.clone(),
        wake: WakeSink.start().recipient(),
        peers: pgpilot::peer_client::PeerClient::plain(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_listener(listener, ctx).unwrap();
    actix_web::rt::spawn(server);
    Node {
        base: format!("http://127.0.0.1:{port}"),
        pg_board,
        dcs,
        reloads,
        heartbeats,
    }
}

fn client() -> reqwest::Client {
    pgpilot::tls::install_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn code(c: &reqwest::Client, method: Method, url: String) -> StatusCode {
    c.request(method, url).send().await.unwrap().status()
}

async fn get_json(c: &reqwest::Client, url: String) -> (StatusCode, Option<String>, Value) {
    let r = c.get(url).send().await.unwrap();
    let st = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (st, ct, r.json().await.unwrap())
}

// ---- tests -----------------------------------------------------------------

#[actix_web::test]
async fn health_checks_by_role() {
    let leader = start_node(ha("n1", true), pg(PgRole::Primary), Duration::ZERO);
    let replica = start_node(ha("n2", false), pg(PgRole::Replica), Duration::ZERO);
    let c = client();
    for (path, on_leader, on_replica) in [
        ("/", 200, 503),
        ("/primary", 200, 503),
        ("/master", 200, 503),
        ("/read-write", 200, 503),
        ("/leader", 200, 503),
        ("/replica", 503, 200),
        ("/replica?lag=100", 503, 503),
        ("/replica?lag=16MB", 503, 200),
        ("/replica?replication_state=streaming", 503, 200),
        ("/replica?tag_zone=a", 503, 503),
        ("/read-only", 200, 200),
        ("/async", 503, 200),
        ("/sync", 503, 503),
        ("/health", 200, 200),
        ("/standby-leader", 503, 503),
        ("/nonsense", 503, 503),
    ] {
        let l = code(&c, Method::GET, format!("{}{path}", leader.base)).await;
        let r = code(&c, Method::GET, format!("{}{path}", replica.base)).await;
        assert_eq!(
            (l.as_u16(), r.as_u16()),
            (on_leader, on_replica),
            "GET {path}"
        );
    }

    // Health replies carry the status document.
    let (st, ct, doc) = get_json(&c, format!("{}/replica", replica.base)).await;
    assert_eq!(st, 200);
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(doc["role"], "replica");
    let (st, _, doc) = get_json(&c, format!("{}/replica", leader.base)).await;
    assert_eq!(st, 503);
    assert_eq!(doc["role"], "primary");

    // HEAD and OPTIONS: the dispatcher's code, no body.
    for m in [Method::HEAD, Method::OPTIONS] {
        let r = c
            .request(m.clone(), format!("{}/primary", leader.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{m} /primary");
        assert!(r.bytes().await.unwrap().is_empty());
        assert_eq!(
            code(&c, m.clone(), format!("{}/primary", replica.base)).await,
            503
        );
        assert_eq!(
            code(&c, m.clone(), format!("{}/replica", replica.base)).await,
            200
        );
        // Own GET handlers do not apply to HEAD: the dispatcher says 503.
        assert_eq!(
            code(&c, m.clone(), format!("{}/patroni", leader.base)).await,
            503
        );
        assert_eq!(
            code(&c, m.clone(), format!("{}/liveness", leader.base)).await,
            503
        );
    }

    // Liveness / readiness: status line only.
    for (node, path, want) in [
        (&leader, "/liveness", 200),
        (&replica, "/liveness", 200),
        (&leader, "/readiness", 200),
        (&replica, "/readiness", 200),
        (&replica, "/readiness?lag=10", 503),
        (&replica, "/readiness?lag=1000&mode=write", 200),
    ] {
        let r = c.get(format!("{}{path}", node.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{path}");
        assert!(r.bytes().await.unwrap().is_empty(), "{path}");
    }
}

/// Routes go by the first segment of the raw path, as Patroni's
/// `do_<METHOD>_<segment>`: anything after it, and leading slashes, do not
/// matter; a percent-encoded name or a longer segment is another path,
/// which falls through to a health check; a method a family does not serve
/// gets 501.
#[actix_web::test]
async fn routes_by_first_raw_segment() {
    let replica = start_node(ha("n2", false), pg(PgRole::Replica), Duration::ZERO);
    let c = client();
    for (path, want, document) in [
        ("/patroni", 200, true),
        ("/patroni/more/segments", 200, true),
        ("//patroni", 200, true),
        ("/patroni?x=1", 200, true),
        // Health checks (a replica is not a primary: 503, with the document).
        ("/patronix", 503, true),
        ("/%70atroni", 503, true),
        ("/liveness/x", 200, false),
    ] {
        let r = c
            .get(format!("{}{path}", replica.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "GET {path}");
        let body = r.bytes().await.unwrap();
        if document {
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["role"], "replica", "GET {path}");
        } else {
            assert!(body.is_empty(), "GET {path}");
        }
    }
    for (m, path) in [
        (Method::POST, "/patroni"),
        (Method::PUT, "/reload"),
        (Method::DELETE, "/failover"),
        (Method::PATCH, "/restart"),
    ] {
        let r = c
            .request(m.clone(), format!("{}{path}", replica.base))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 501, "{m} {path}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains(&format!("Unsupported method ('{m}')")),
            "{m} {path}: {body}"
        );
    }
}

#[actix_web::test]
async fn patroni_document() {
    let leader = start_node(ha("n1", true), pg(PgRole::Primary), Duration::ZERO);
    let replica = start_node(ha("n2", false), pg(PgRole::Replica), Duration::ZERO);
    let c = client();

    let (st, ct, d) = get_json(&c, format!("{}/patroni", leader.base)).await;
    assert_eq!(st, 200);
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(d["state"], "running");
    assert_eq!(d["role"], "primary");
    assert_eq!(d["server_version"], 150018);
    assert_eq!(d["xlog"]["location"], 50331808);
    assert_eq!(d["timeline"], 2);
    assert_eq!(
        d["postmaster_start_time"],
        "2024-08-28 19:39:26.352526+00:00"
    );
    assert_eq!(d["database_system_identifier"], "7000000000000000001");
    assert!(d["dcs_last_seen"].as_u64().unwrap() > 1_700_000_000);
    assert!(d.get("cluster_unlocked").is_none());
    assert_eq!(d["patroni"]["scope"], "batman");
    assert_eq!(d["patroni"]["name"], "n1");
    assert_eq!(d["patroni"]["version"], pgpilot::PATRONI_COMPAT_VERSION);

    // Always 200, whatever the role.
    let (st, _, d) = get_json(&c, format!("{}/patroni", replica.base)).await;
    assert_eq!(st, 200);
    assert_eq!(d["role"], "replica");
    assert_eq!(d["replication_state"], "streaming");
    assert_eq!(d["xlog"]["received_location"], 50331000);
    assert_eq!(d["xlog"]["replayed_location"], 50330000);
    assert_eq!(d["xlog"]["replayed_timestamp"], Value::Null);
    assert_eq!(d["xlog"]["paused"], false);
}

/// A health check reads the status the supervisor published while it is
/// fresh (docs/rest-api.md, "Health checks and PostgreSQL"): the slow
/// supervisor, which would say replica, is not asked.
#[actix_web::test]
async fn a_fresh_published_status_answers_without_asking_the_supervisor() {
    let node = start_node(ha("n1", true), pg(PgRole::Replica), Duration::from_secs(10));
    let c = client();
    // Sent "in the future": fresh for the whole request however slow the
    // test machine, so the check cannot race the 20 ms window.
    let sent = Instant::now() + Duration::from_secs(30);
    let primary = pg(PgRole::Primary);
    node.pg_board.publish(sent, primary.clone(), primary);
    let t0 = Instant::now();
    let (st, _, d) = get_json(&c, format!("{}/patroni", node.base)).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(st, 200);
    assert_eq!(d["role"], "primary", "{d}");
    assert_eq!(
        code(&c, Method::GET, format!("{}/primary", node.base)).await,
        200
    );
    // Cleared (a change in the supervisor): asked again, and late.
    node.pg_board.clear();
    let (_, _, d) = get_json(&c, format!("{}/patroni", node.base)).await;
    assert_eq!(d["state"], "unknown", "{d}");
}

#[actix_web::test]
async fn slow_supervisor_does_not_hang_checks() {
    let node = start_node(ha("n1", true), pg(PgRole::Primary), Duration::from_secs(10));
    let c = client();
    let t0 = Instant::now();
    let (st, _, d) = get_json(&c, format!("{}/patroni", node.base)).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(st, 200);
    assert_eq!(d["state"], "unknown");
    // Lock held: still the primary for HAProxy; PG unknown: not healthy.
    assert_eq!(
        code(&c, Method::GET, format!("{}/primary", node.base)).await,
        200
    );
    assert_eq!(
        code(&c, Method::GET, format!("{}/health", node.base)).await,
        503
    );
}

#[actix_web::test]
async fn cluster_history_config() {
    let node = start_node(ha("n2", false), pg(PgRole::Replica), Duration::ZERO);
    let c = client();

    let (st, ct, j) = get_json(&c, format!("{}/cluster", node.base)).await;
    assert_eq!(st, 200);
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(j["scope"], "batman");
    let m = j["members"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0]["name"], "n1");
    assert_eq!(m[0]["role"], "leader");
    assert_eq!(m[0]["host"], "127.0.0.1");
    assert_eq!(m[0]["port"], 5432);
    assert_eq!(m[1]["name"], "n2");
    assert_eq!(m[1]["role"], "replica");
    assert_eq!(m[1]["state"], "streaming");
    assert_eq!(m[1]["lsn"], "0/2FFFD78");
    assert_eq!(m[1]["lag"], 808);
    assert_eq!(m[1]["replay_lag"], 1808);

    let (st, _, h) = get_json(&c, format!("{}/history", node.base)).await;
    assert_eq!(st, 200);
    assert_eq!(h[0][0], 1);
    assert_eq!(h[0][4], "n1");

    let (st, _, cfg) = get_json(&c, format!("{}/config", node.base)).await;
    assert_eq!(st, 200);
    assert_eq!(cfg["ttl"], 30);

    // No config key: 502. DCS down: 503.
    *node.dcs.0.lock().unwrap() = Some(Cluster::default());
    assert_eq!(
        code(&c, Method::GET, format!("{}/config", node.base)).await,
        502
    );
    let (st, _, h) = get_json(&c, format!("{}/history", node.base)).await;
    assert_eq!((st.as_u16(), h), (200, serde_json::json!([])));
    *node.dcs.0.lock().unwrap() = None;
    for p in ["/cluster", "/history", "/config"] {
        assert_eq!(
            code(&c, Method::GET, format!("{}{p}", node.base)).await,
            503,
            "{p}"
        );
    }
}

#[actix_web::test]
async fn unsafe_methods() {
    let node = start_node(ha("n1", true), pg(PgRole::Primary), Duration::ZERO);
    let c = client();

    let r = c
        .post(format!("{}/reload", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.unwrap(), "reload scheduled");
    assert_eq!(*node.reloads.lock().unwrap(), 1);

    // PATCH/PUT /config are implemented: a bad body is refused before the
    // DCS is touched, and a failed write (this DCS refuses writes) is 502.
    for (m, body, code) in [
        (Method::PATCH, "nope", 400),
        (Method::PUT, r#"{"ttl": "x"}"#, 400),
        (Method::PATCH, r#"{"loop_wait": 5}"#, 502),
        (Method::PUT, r#"{"loop_wait": 5}"#, 502),
    ] {
        let r = c
            .request(m.clone(), format!("{}/config", node.base))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), code, "{m} {body}");
    }

    for (m, p) in [(Method::POST, "/nonsense"), (Method::DELETE, "/nonsense")] {
        let r = c
            .request(m.clone(), format!("{}{p}", node.base))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 501, "{m} {p}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/html"), "{ct}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains("Server does not support this operation"),
            "{body}"
        );
    }
}

#[actix_web::test]
async fn failsafe_endpoints() {
    let c = client();
    let body = r#"{"name":"n1","conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","slots":{}}"#;
    let post = |base: &str| {
        c.post(format!("{base}/failsafe"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // failsafe_mode off: 502, nothing reported, GET has no map.
    let off = start_node(ha("n2", false), pg(PgRole::Replica), Duration::ZERO);
    assert_eq!(post(&off.base).await.unwrap().status(), 502);
    assert!(off.heartbeats.lock().unwrap().is_empty());
    assert_eq!(
        code(&c, Method::GET, format!("{}/failsafe", off.base)).await,
        502
    );

    // A replica accepts and reports its WAL position.
    let mut h = ha("n2", false);
    h.failsafe_mode = true;
    h.failsafe = Some(
        [
            ("n1".to_owned(), "http://127.0.0.1:8008/patroni".to_owned()),
            ("n2".to_owned(), "http://127.0.0.2:8008/patroni".to_owned()),
        ]
        .into(),
    );
    let replica = start_node(h.clone(), pg(PgRole::Replica), Duration::ZERO);
    let r = post(&replica.base).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["lsn"].to_str().unwrap(), "50331808");
    assert_eq!(r.text().await.unwrap(), "Accepted");
    assert_eq!(
        *replica.heartbeats.lock().unwrap(),
        ["n1 postgres://127.0.0.1:5432/postgres"]
    );
    let (st, _, map) = get_json(&c, format!("{}/failsafe", replica.base)).await;
    assert_eq!(st, 200);
    assert_eq!(map["n2"], "http://127.0.0.2:8008/patroni");
    // Not JSON: refused.
    let r = c
        .post(format!("{}/failsafe", replica.base))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A running primary refuses: there can be only one leader.
    let primary = start_node(h, pg(PgRole::Primary), Duration::ZERO);
    let r = post(&primary.base).await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), "Running as a leader");
    assert!(primary.heartbeats.lock().unwrap().is_empty());
}

#[actix_web::test]
async fn restart_and_reinitialize_routes() {
    let leader = start_node(ha("n1", true), pg(PgRole::Primary), Duration::ZERO);
    let replica = start_node(ha("n2", false), pg(PgRole::Replica), Duration::ZERO);
    let c = client();
    let call = |m: Method, url: String, body: &'static str| {
        let c = c.clone();
        async move {
            let r = c.request(m, url).body(body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Reinitialize: refused on the leader, started on a replica.
    assert_eq!(
        call(Method::POST, format!("{}/reinitialize", leader.base), "").await,
        (503, "I am the leader, can not reinitialize".into())
    );
    assert_eq!(
        call(
            Method::POST,
            format!("{}/reinitialize", replica.base),
            r#"{"force": true}"#
        )
        .await,
        (200, "reinitialize started".into())
    );
    // Restart: conditions checked against the node's state.
    assert_eq!(
        call(
            Method::POST,
            format!("{}/restart", replica.base),
            r#"{"role": "primary"}"#
        )
        .await,
        (503, "restart conditions are not satisfied".into())
    );
    assert_eq!(
        call(
            Method::POST,
            format!("{}/restart", replica.base),
            r#"{"restart_pending": true}"#
        )
        .await,
        (503, "restart conditions are not satisfied".into())
    );
    assert_eq!(
        call(
            Method::POST,
            format!("{}/restart", leader.base),
            r#"{"role": "primary"}"#
        )
        .await,
        (200, "restarted successfully".into())
    );
    assert_eq!(
        call(
            Method::POST,
            format!("{}/restart", leader.base),
            r#"{"schedule": "2099-01-01T00:00:00+00:00"}"#
        )
        .await,
        (202, "Restart scheduled".into())
    );
    assert_eq!(
        call(
            Method::POST,
            format!("{}/restart", leader.base),
            r#"{"schedule": "2099-01-01T00:00:00"}"#
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(Method::DELETE, format!("{}/restart", leader.base), "").await,
        (404, "no restarts are scheduled".into())
    );
}

/// `?lag=` read as Patroni reads it (`parse_int(value, 'B')`): a replica
/// 2 MiB behind the leader's position is lagging for `1.5MB`, and for the
/// integer, exponent and hex forms of the same limit; not for `2.5MB`.
/// (Before, `1.5MB` did not parse and meant "no limit": 200.)
#[actix_web::test]
async fn lag_limit_in_every_patroni_form() {
    let mut behind = pg(PgRole::Replica);
    // status.optime is 50331808; replayed and received 2 MiB behind it.
    behind.replay_lsn = Some(50331808 - (2 << 20));
    behind.receive_lsn = behind.replay_lsn;
    let replica = start_node(ha("n2", false), behind, Duration::ZERO);
    let c = client();
    for (lag, want) in [
        ("1.5MB", 503),
        ("1572864", 503),
        ("1.5e3kB", 503),
        ("0x180000", 503),
        ("2.5MB", 200),
        ("0.5e1MB", 200),
        ("", 200),
        ("bogus", 200), // unparsable: no limit, as in Patroni (and a warning)
    ] {
        for path in ["/replica", "/read-only", "/asynchronous"] {
            let url = format!("{}{path}?lag={lag}", replica.base);
            assert_eq!(
                code(&c, Method::GET, url).await.as_u16(),
                want,
                "{path}?lag={lag}"
            );
        }
    }
    // /readiness: the same parser, `maximum_lag_on_failover` (1 MiB) without it.
    for (q, want) in [("", 503), ("?lag=1.5MB", 503), ("?lag=2.5MB", 200)] {
        let url = format!("{}/readiness{q}", replica.base);
        assert_eq!(
            code(&c, Method::GET, url).await.as_u16(),
            want,
            "/readiness{q}"
        );
    }
}

/// Sends `head` on a new connection and reads until the server closes it
/// (or `within` passes): what came back and when the connection ended.
async fn send_and_wait_close(
    port: u16,
    head: &str,
    within: Duration,
) -> (String, Option<Duration>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t0 = Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((t0 + within).into(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&got).into(), Some(t0.elapsed()));
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), None),
        }
    }
}

fn port_of(n: &Node) -> u16 {
    n.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// A client that declares a body and never sends it, or sends half a
/// head, or nothing at all, is cut off within the arrival bound (5 s);
/// many of them at once do not keep health checks from being answered.
/// (Before, a missing body held its connection forever.)
#[actix_web::test]
async fn slow_clients_are_cut_off() {
    let node = start_node(ha("n1", true), pg(PgRole::Primary), Duration::ZERO);
    let port = port_of(&node);
    let bound = pgpilot::api::server::REQUEST_ARRIVAL_TIMEOUT;
    let within = bound * 2 + Duration::from_secs(3);
    let heads = [
        "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
        "PATCH /config HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"a\"",
        "POST /switchover HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        "GET /patroni HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: x\r\n",
        "",
    ];
    let mut held = Vec::new();
    for i in 0..120 {
        let head = heads[i % heads.len()];
        held.push(tokio::spawn(send_and_wait_close(port, head, within)));
    }
    // Health checks are answered meanwhile, at once.
    let c = client();
    let t = Instant::now();
    assert_eq!(
        code(&c, Method::GET, format!("{}/health", node.base)).await,
        200
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "health check waited {:?}",
        t.elapsed()
    );
    let mut closed = 0;
    for (i, h) in held.into_iter().enumerate() {
        let (reply, ended) = h.await.unwrap();
        let head = heads[i % heads.len()];
        let ended = ended.unwrap_or_else(|| {
            panic!("connection {i} ({head:?}) still open after {within:?}; got {reply:?}")
        });
        if head.starts_with("GET /patroni") {
            // Answered without reading the body, then closed.
            assert!(reply.starts_with("HTTP/1.1 200"), "{head:?}: {reply:?}");
        } else if head.starts_with("POST /reload") || head.starts_with("PATCH") {
            assert!(reply.starts_with("HTTP/1.1 408"), "{head:?}: {reply:?}");
            assert!(
                ended >= bound - Duration::from_millis(500),
                "{head:?} cut at {ended:?}"
            );
        }
        closed += 1;
    }
    assert_eq!(closed, 120);
}

/// `CONNECT` gets 501 and its connection closes at once; before, it was
/// held forever (the rest of the stream was taken for its body).
#[actix_web::test]
async fn connect_does_not_hold_the_connection() {
    let node = start_node(ha("n1", true), pg(PgRole::Primary), Duration::ZERO);
    let port = port_of(&node);
    let (reply, ended) = send_and_wait_close(
        port,
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(ended.is_some(), "CONNECT connection still open: {reply:?}");
    assert!(reply.starts_with("HTTP/1.1 501"), "{reply:?}");
}
