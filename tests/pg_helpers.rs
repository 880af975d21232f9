//! The postgres module against a real PostgreSQL 15: initdb, config files,
//! start, SQL, basebackup + streaming standby, adopt, stop, controldata.
//!
//! PostgreSQL refuses to run as root. When this test process is root (as in
//! the build sandbox) it prepares a temporary directory owned by `postgres`
//! and then drops to that user for good (setgid + setuid; each integration
//! test file is its own process, and this file has a single test). The
//! library code under test therefore runs exactly as in production: as the
//! PostgreSQL OS user, with no user switching of its own.
//!
//! Missing binaries make the test fail, not skip.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, User};
use pgpilot::config::{Config, Credentials, DynamicConfig, InitdbOption, Timing};
use pgpilot::postgres::conf::{self, PgpassEntry, RecoveryParams};
use pgpilot::postgres::conninfo;
use pgpilot::postgres::datadir::{self, ConfigFiles};
use pgpilot::postgres::ops::{self, BasebackupSource};
use pgpilot::postgres::{
    Binaries, ConnParams, DbState, PgError, Postmaster, StopMode, StopOutcome, controldata, params,
    query,
};
use support::free_port;

const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// SIGKILLs every postmaster group it knows about when the test ends, so a
/// failed assertion does not leave servers behind.
struct Reaper(Vec<i32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

/// Creates the test directory and, when root, hands it to `postgres` and
/// becomes `postgres`.
fn prepare_dir_and_user() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let base = std::env::temp_dir().join(format!("pgpilot-it-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&base).unwrap();
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
    if nix::unistd::geteuid().is_root() {
        let pg = User::from_name("postgres")
            .unwrap()
            .expect("the postgres OS user must exist to run PostgreSQL tests");
        nix::unistd::chown(&base, Some(pg.uid), Some(pg.gid)).unwrap();
        nix::unistd::setgroups(&[pg.gid]).unwrap();
        nix::unistd::setgid(pg.gid).unwrap();
        nix::unistd::setuid(pg.uid).unwrap();
        // SAFETY: single-threaded at this point (no runtime yet, one test).
        unsafe {
            std::env::set_var("HOME", &pg.dir);
            std::env::set_var("USER", "postgres");
        }
    }
    base
}

fn config(name: &str, port: u16, data_dir: &Path, sock: &Path) -> Config {
    let yaml = format!(
        r#"
name: {name}
scope: itest
restapi: {{listen: "127.0.0.1:8008", connect_address: "127.0.0.1:8008"}}
postgresql:
  listen: "127.0.0.1:{port}"
  connect_address: "127.0.0.1:{port}"
  data_dir: {data}
  authentication:
    superuser: {{username: postgres, password: "su pass"}}
    replication: {{username: replicator, password: "re:pl\\ass'w"}}
  parameters:
    unix_socket_directories: {sock}
    shared_buffers: 16MB
"#,
        data = data_dir.display(),
        sock = sock.display()
    );
    serde_yaml_ng::from_str(&yaml).unwrap()
}

fn dynamic() -> DynamicConfig {
    DynamicConfig {
        timing: Timing::default(),
        maximum_lag_on_failover: 1 << 20,
        use_slots: true,
        slots: Default::default(),
        use_pg_rewind: false,
        parameters: BTreeMap::new(),
        pause: false,
        failsafe_mode: false,
        primary_start_timeout: 300,
        sync: Default::default(),
        standby_cluster: None,
        raw: serde_json::json!({}),
    }
}

fn hba() -> Vec<String> {
    vec![
        "local all all trust".to_owned(),
        "host all all 127.0.0.1/32 scram-sha-256".to_owned(),
        "host replication all 127.0.0.1/32 scram-sha-256".to_owned(),
    ]
}

#[test]
fn real_postgres_lifecycle() {
    for prog in ["initdb", "postgres", "pg_controldata", "pg_basebackup"] {
        let p = Path::new(BIN_DIR).join(prog);
        assert!(p.exists(), "PostgreSQL 15 binary missing: {}", p.display());
    }
    let base = prepare_dir_and_user();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario(&base));
    fs::remove_dir_all(&base).unwrap();
}

async fn scenario(base: &Path) {
    let bins = Binaries::new(Some(BIN_DIR.into()));
    let mut reaper = Reaper(Vec::new());
    let sock = base.join("sock");
    fs::create_dir(&sock).unwrap();
    let data1 = base.join("data1");
    let pgpass = base.join("pgpass");
    let (port1, port2) = (free_port(), free_port());
    let repl_user = "replicator";
    let repl_password = "re:pl\\ass'w";

    // initdb: forbidden options refused, real options applied.
    let bad: Vec<InitdbOption> = serde_json::from_value(serde_json::json!(["nosync"])).unwrap();
    assert!(matches!(
        ops::initdb(&bins, &data1, &bad, "postgres", None).await,
        Err(PgError::InvalidOption(_))
    ));
    let options: Vec<InitdbOption> = serde_json::from_value(serde_json::json!([
        "data-checksums",
        {"encoding": "UTF8"},
        {"locale": "C.UTF-8"}
    ]))
    .unwrap();
    ops::initdb(&bins, &data1, &options, "postgres", Some("su pass"))
        .await
        .unwrap();
    assert!(data1.join("PG_VERSION").exists());
    assert!(
        fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| !e
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("pgpilot-pwfile-{}-", std::process::id()))),
        "pwfile left behind"
    );
    let cd = controldata::read(&bins, &data1).await.unwrap();
    assert_eq!(cd.state, DbState::ShutDown);
    assert!(cd.data_checksums);

    // Config files and start.
    let cfg1 = config("node-1", port1, &data1, &sock);
    let eff = params::effective_parameters(&cfg1, &dynamic());
    assert!(eff.warnings.is_empty(), "{:?}", eff.warnings);
    let hba_lines = hba();
    let conf1 = datadir::write_config_files(&ConfigFiles {
        data_dir: &data1,
        config_dir: &data1,
        custom_conf: None,
        params: &eff.values,
        hba_lines: Some(&hba_lines),
        recovery: None,
    })
    .unwrap();
    assert!(data1.join("postgresql.base.conf").exists());
    let cmdline = params::command_line_parameters(&eff.values);
    let mut pm1 =
        Postmaster::start(&bins, &data1, &conf1, &cmdline, &base.join("pg1.log")).unwrap();
    reaper.0.push(pm1.pid());
    assert!(pm1.is_child());
    let local1 = ConnParams::new(sock.display().to_string(), port1, "postgres");
    let mut client = pm1
        .wait_ready(&local1, Duration::from_secs(30))
        .await
        .unwrap();

    let snap = query::snapshot(&client).await.unwrap();
    assert!(!snap.in_recovery);
    assert!(snap.server_version >= 150000, "{}", snap.server_version);
    assert_eq!(snap.timeline, 1);
    assert!(snap.wal_flush_lsn.unwrap() > 0);
    assert_eq!(snap.wal_position(), snap.wal_flush_lsn.unwrap());
    assert!(snap.receive_lsn.is_none() && snap.receiver_state.is_none());
    assert!(
        snap.postmaster_start_time.ends_with("+00:00") && snap.postmaster_start_time.len() == 32,
        "{}",
        snap.postmaster_start_time
    );
    // Command-line parameters are in effect.
    let row = client
        .query_one(
            "SELECT current_setting('cluster_name'), current_setting('wal_log_hints'), current_setting('port')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "itest");
    assert_eq!(row.get::<_, String>(1), "on");
    assert_eq!(row.get::<_, String>(2), port1.to_string());

    // Roles: created, then updated (idempotent); the password with quotes,
    // a backslash and a colon works over TCP.
    for _ in 0..2 {
        query::create_or_update_role(&mut client, repl_user, Some(repl_password), &[], true)
            .await
            .unwrap();
    }
    query::create_or_update_role(
        &mut client,
        "odd\"name",
        Some("x"),
        &["CREATEDB".into()],
        false,
    )
    .await
    .unwrap();
    let r = client
        .query_one(
            "SELECT rolreplication, (SELECT rolcreatedb FROM pg_roles WHERE rolname = 'odd\"name') FROM pg_roles WHERE rolname = $1",
            &[&repl_user],
        )
        .await
        .unwrap();
    assert!(r.get::<_, bool>(0) && r.get::<_, bool>(1));
    let mut tcp = ConnParams::new("127.0.0.1", port1, repl_user);
    tcp.password = Some(repl_password.to_owned());
    query::connect(&tcp, Duration::from_secs(5)).await.unwrap();
    tcp.password = Some("wrong".to_owned());
    assert!(query::connect(&tcp, Duration::from_secs(5)).await.is_err());

    // Slots, checkpoint, reload.
    let slot2 = conf::slot_name("node-2");
    assert_eq!(slot2, "node_2");
    assert!(
        query::create_physical_slot_if_missing(&client, &slot2)
            .await
            .unwrap()
    );
    assert!(
        !query::create_physical_slot_if_missing(&client, &slot2)
            .await
            .unwrap()
    );
    assert!(
        query::create_physical_slot_if_missing(&client, "extra")
            .await
            .unwrap()
    );
    assert!(query::drop_slot(&client, "extra").await.unwrap());
    assert!(!query::drop_slot(&client, "extra").await.unwrap());
    let slots = query::list_physical_slots(&client).await.unwrap();
    assert_eq!(slots.len(), 1);
    assert_eq!(slots[0].name, "node_2");
    assert!(slots[0].restart_lsn.is_some());
    query::checkpoint(&client).await.unwrap();
    query::reload(&client).await.unwrap();

    // A streaming standby from pg_basebackup, authenticating through pgpass.
    datadir::write_pgpass(
        &pgpass,
        &[PgpassEntry {
            host: "*".into(),
            port: "*".into(),
            database: "*".into(),
            user: repl_user.into(),
            password: repl_password.into(),
        }],
    )
    .unwrap();
    let data2 = base.join("data2");
    let source = BasebackupSource {
        conninfo: format!("host=127.0.0.1 port={port1} user={repl_user}"),
        passfile: Some(pgpass.clone()),
    };
    ops::basebackup(&bins, &data2, &source, &[]).await.unwrap();
    // A failed basebackup (wrong port) cleans up the directory it created.
    let data_bad = base.join("data_bad");
    let bad_source = BasebackupSource {
        conninfo: format!("host=127.0.0.1 port={} user={repl_user}", free_port()),
        ..source.clone()
    };
    let err = ops::basebackup(&bins, &data_bad, &bad_source, &[])
        .await
        .unwrap_err();
    assert!(matches!(err, PgError::CommandFailed { .. }), "{err}");
    assert!(!data_bad.exists());

    let cfg2 = config("node-2", port2, &data2, &sock);
    let eff2 = params::effective_parameters(&cfg2, &dynamic());
    let recovery = RecoveryParams {
        primary_conninfo: conninfo::primary_conninfo(
            &Credentials {
                username: Some(repl_user.into()),
                ..Credentials::default()
            },
            conninfo::Target {
                host: "127.0.0.1",
                port: port1,
                dbname: "postgres",
            },
            &pgpass,
            "node-2",
            150_000,
        ),
        primary_slot_name: Some(slot2.clone()),
        standby_cluster: Vec::new(),
    };
    let conf2 = datadir::write_config_files(&ConfigFiles {
        data_dir: &data2,
        config_dir: &data2,
        custom_conf: None,
        params: &eff2.values,
        hba_lines: Some(&hba_lines),
        recovery: Some(&recovery),
    })
    .unwrap();
    assert!(data2.join("standby.signal").exists());
    datadir::ensure_mode_0700(&data2).unwrap();
    let mut pm2 = Postmaster::start(
        &bins,
        &data2,
        &conf2,
        &params::command_line_parameters(&eff2.values),
        &base.join("pg2.log"),
    )
    .unwrap();
    reaper.0.push(pm2.pid());
    let local2 = ConnParams::new(sock.display().to_string(), port2, "postgres");
    let client2 = pm2
        .wait_ready(&local2, Duration::from_secs(30))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let snap2 = loop {
        let s = query::snapshot(&client2).await.unwrap();
        if s.receiver_state.as_deref() == Some("streaming") || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(snap2.in_recovery);
    assert_eq!(
        snap2.receiver_state.as_deref(),
        Some("streaming"),
        "{snap2:?}"
    );
    assert_eq!(snap2.timeline, 1);
    assert!(snap2.replay_lsn.unwrap() > 0);
    assert!(!snap2.replay_paused);
    let snap1 = query::snapshot(&client).await.unwrap();
    assert_eq!(snap1.replication.len(), 1, "{snap1:?}");
    assert_eq!(
        snap1.replication[0].application_name.as_deref(),
        Some("node-2")
    );
    assert_eq!(snap1.replication[0].usename.as_deref(), Some(repl_user));
    assert!(query::list_physical_slots(&client).await.unwrap()[0].active);

    // Restart the standby on an idle primary: PostgreSQL's flushed receive
    // position (pg_last_wal_receive_lsn) then stays at the start of the WAL
    // segment until new WAL arrives; the snapshot's receive LSN includes the
    // receiver's written position, as Patroni's does, so it is not behind
    // replay. Some WAL first, so replay is not at a segment boundary.
    client
        .batch_execute("CREATE TABLE restart_probe(i int)")
        .await
        .unwrap();
    let flush = query::snapshot(&client).await.unwrap().wal_flush_lsn;
    let deadline = Instant::now() + Duration::from_secs(20);
    while query::snapshot(&client2).await.unwrap().replay_lsn < flush {
        assert!(
            Instant::now() < deadline,
            "standby did not replay {flush:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(client2);
    assert_eq!(
        pm2.stop(StopMode::Fast, Duration::from_secs(30))
            .await
            .unwrap(),
        StopOutcome::Exited
    );
    let mut pm2 = Postmaster::start(
        &bins,
        &data2,
        &conf2,
        &params::command_line_parameters(&eff2.values),
        &base.join("pg2.log"),
    )
    .unwrap();
    reaper.0.push(pm2.pid());
    let client2 = pm2
        .wait_ready(&local2, Duration::from_secs(30))
        .await
        .unwrap();
    // Within 2 s of streaming (the receiver's written position starts at
    // 0 for a moment), well before the primary's next WAL (its bgwriter logs
    // a snapshot every 15 s).
    let mut deadline = Instant::now() + Duration::from_secs(20);
    let mut streaming = false;
    let snap2 = loop {
        let s = query::snapshot(&client2).await.unwrap();
        if !streaming && s.receiver_state.as_deref() == Some("streaming") {
            streaming = true;
            deadline = Instant::now() + Duration::from_secs(2);
        }
        let caught_up = s.receive_lsn.unwrap_or(0) >= s.replay_lsn.unwrap_or(u64::MAX);
        if (streaming && caught_up) || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        snap2.receiver_state.as_deref(),
        Some("streaming"),
        "{snap2:?}"
    );
    assert!(snap2.receive_lsn >= snap2.replay_lsn, "{snap2:?}");

    // Stop the standby: clean shutdown in recovery.
    drop(client2);
    assert_eq!(
        pm2.stop(StopMode::Fast, Duration::from_secs(30))
            .await
            .unwrap(),
        StopOutcome::Exited
    );
    let cd2 = controldata::read(&bins, &data2).await.unwrap();
    assert_eq!(cd2.state, DbState::ShutDownInRecovery);
    assert!(!cd2.state.was_primary());
    assert_eq!(cd2.system_identifier, cd.system_identifier);

    // A second handle adopts the running primary from postmaster.pid.
    let pidfile = datadir::read_postmaster_pid(&data1).unwrap();
    assert_eq!(pidfile.pid, pm1.pid());
    assert_eq!(pidfile.port, port1);
    assert_eq!(pidfile.socket_dir.as_deref(), Some(sock.as_path()));
    let mut adopted = Postmaster::adopt(&data1).expect("adopt the running postmaster");
    assert_eq!(adopted.pid(), pm1.pid());
    assert!(!adopted.is_child());
    assert!(adopted.is_alive());
    assert!(
        Postmaster::adopt(&data2).is_none(),
        "stopped server adopted"
    );

    // Fast stop with a session open returns well within the timeout.
    let t = Instant::now();
    assert_eq!(
        pm1.stop(StopMode::Fast, Duration::from_secs(30))
            .await
            .unwrap(),
        StopOutcome::Exited
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(pm1.exit_status().unwrap().success());
    assert!(!adopted.is_alive());
    assert!(datadir::read_postmaster_pid(&data1).is_none());
    assert!(client.simple_query("SELECT 1").await.is_err());

    let cd1 = controldata::read(&bins, &data1).await.unwrap();
    assert_eq!(cd1.state, DbState::ShutDown);
    assert!(cd1.state.was_primary());
    assert!(cd1.wal_log_hints);
    assert_eq!(cd1.timeline, 1);
    assert!(cd1.checkpoint_lsn >= snap.wal_flush_lsn.unwrap());

    // Moving aside never deletes.
    let moved = datadir::move_aside(&data2).unwrap();
    assert!(moved.join("PG_VERSION").exists() && !data2.exists());
    drop(reaper);
}
