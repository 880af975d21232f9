//! Dynamic configuration against real etcd and PostgreSQL 15: PATCH/PUT
//! /config, changes applied on every node (reload or pending restart), the
//! heartbeat following `loop_wait`, SIGHUP / POST /reload with a broken
//! file, and the leader restoring a lost `config` key from
//! `patroni.dynamic.json`.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgpilot::events;
use serde_json::{Value, json};
use support::cluster::{TestCluster, Timing, has_event};
use support::eventually;

const BOOT: Duration = Duration::from_secs(90);
/// Generous bound for "within one loop_wait" on a loaded machine.
const APPLY: Duration = Duration::from_secs(20);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn send(method: &str, url: &str, body: &str) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = http()
        .request(m, url)
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn config_key(c: &TestCluster) -> String {
    format!("/it/{}/config", c.scope)
}

/// The raw `config` key as etcd holds it.
async fn etcd_config(c: &TestCluster) -> Option<Vec<u8>> {
    let mut client = etcd_client::Client::connect([c.etcd.endpoint()], None)
        .await
        .expect("etcd");
    let r = client.get(config_key(c), None).await.expect("etcd get");
    r.kvs().first().map(|kv| kv.value().to_vec())
}

async fn etcd_delete_config(c: &TestCluster) {
    let mut client = etcd_client::Client::connect([c.etcd.endpoint()], None)
        .await
        .expect("etcd");
    client
        .delete(config_key(c), None)
        .await
        .expect("etcd delete");
}

async fn show(c: &TestCluster, i: usize, name: &str) -> Option<String> {
    let client = c.sql(i).await.ok()?;
    let row = client.query_one(&format!("SHOW {name}"), &[]).await.ok()?;
    Some(row.get(0))
}

async fn get_config(c: &TestCluster, i: usize) -> Value {
    let (code, text) = send("GET", &c.nodes[i].api("/config"), "").await;
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_put_reload_and_pending_restart() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    let replica = (0..3).find(|i| *i != primary).unwrap();
    let api = |i: usize, p: &str| c.nodes[i].api(p);

    // --- bad bodies: 400 naming the field, the DCS value byte for byte unchanged
    let before_raw = etcd_config(&c).await.expect("config key");
    let (_, before_text) = send("GET", &api(replica, "/config"), "").await;
    for (method, body, needle) in [
        ("PATCH", "not json", "invalid JSON"),
        ("PATCH", "[1, 2]", "JSON object"),
        ("PATCH", "42", "JSON object"),
        ("PATCH", r#"{"ttl": "abc"}"#, "ttl"),
        ("PATCH", r#"{"postgresql": 5}"#, "postgresql"),
        (
            "PATCH",
            r#"{"postgresql": {"use_slots": "sometimes"}}"#,
            "postgresql.use_slots",
        ),
        (
            "PATCH",
            r#"{"postgresql": {"parameters": {"max_connections": 1}}}"#,
            "postgresql.parameters.max_connections",
        ),
        ("PUT", r#"{"loop_wait": "soon"}"#, "loop_wait"),
        ("PUT", "[]", "JSON object"),
    ] {
        let (code, text) = send(method, &api(replica, "/config"), body).await;
        assert_eq!(code, 400, "{method} {body}: {text}");
        assert!(text.contains(needle), "{method} {body}: {text}");
    }
    assert_eq!(etcd_config(&c).await.unwrap(), before_raw);
    let (_, after_text) = send("GET", &api(primary, "/config"), "").await;
    assert_eq!(after_text, before_text);

    // --- a reload-context parameter: applied everywhere, no restart
    let mut start_times = Vec::new();
    for i in 0..3 {
        start_times.push(c.status(i).await.unwrap()["postmaster_start_time"].clone());
    }
    let (code, text) = send(
        "PATCH",
        &api(replica, "/config"),
        r#"{"postgresql": {"parameters": {"work_mem": "12MB"}}}"#,
    )
    .await;
    assert_eq!(code, 200, "{text}");
    let new: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(new["postgresql"]["parameters"]["work_mem"], "12MB");
    assert_eq!(new["postgresql"]["use_slots"], true, "merged, not replaced");
    for (i, started) in start_times.iter().enumerate() {
        eventually(APPLY, "work_mem applied by reload", || async {
            (show(&c, i, "work_mem").await.as_deref() == Some("12MB")).then_some(())
        })
        .await;
        let st = c.status(i).await.unwrap();
        assert_eq!(&st["postmaster_start_time"], started, "node {i} restarted");
        assert!(st.get("pending_restart").is_none(), "{st}");
    }

    // --- null removes a parameter
    let (code, _) = send(
        "PATCH",
        &api(primary, "/config"),
        r#"{"postgresql": {"parameters": {"work_mem": null}}}"#,
    )
    .await;
    assert_eq!(code, 200);
    let cfg = get_config(&c, replica).await;
    assert!(
        cfg["postgresql"]["parameters"].get("work_mem").is_none(),
        "{cfg}"
    );
    for i in 0..3 {
        eventually(APPLY, "work_mem back to the default", || async {
            (show(&c, i, "work_mem").await.as_deref() == Some("4MB")).then_some(())
        })
        .await;
    }

    // --- a postmaster parameter: pending restart on every node
    let (code, _) = send(
        "PATCH",
        &api(primary, "/config"),
        r#"{"postgresql": {"parameters": {"max_connections": 150}}}"#,
    )
    .await;
    assert_eq!(code, 200);
    for i in 0..3 {
        let st = eventually(APPLY, "pending_restart in /patroni", || async {
            c.status(i)
                .await
                .filter(|s| s["pending_restart"] == json!(true))
        })
        .await;
        let reason = &st["pending_restart_reason"]["max_connections"];
        assert_eq!(reason["old_value"], "100", "{st}");
        assert_eq!(reason["new_value"], "150", "{st}");
        assert_eq!(show(&c, i, "max_connections").await.as_deref(), Some("100"));
    }
    let cluster = eventually(APPLY, "pending_restart in /cluster", || async {
        let (code, text) = send("GET", &api(primary, "/cluster"), "").await;
        let v: Value = serde_json::from_str(&text).ok()?;
        let members = v["members"].as_array()?;
        (code == 200
            && members.len() == 3
            && members.iter().all(|m| m["pending_restart"] == json!(true)))
        .then_some(v)
    })
    .await;
    assert!(cluster.get("pause").is_none());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgpilotctl"))
        .arg("-c")
        .arg(&c.nodes[0].config_path)
        .args(["list", "--format", "json"])
        .output()
        .expect("run pgpilotctl");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json list");
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["Pending restart"] == "*"), "{rows:?}");

    // A restart (here: PostgreSQL stopped under the daemon, which starts it
    // again) applies the value and clears the flag.
    let pm = c.nodes[replica].postmaster_pid().expect("postmaster pid");
    kill(Pid::from_raw(pm), Signal::SIGINT).unwrap();
    eventually(
        BOOT,
        "replica restarted with the new max_connections",
        || async {
            let st = c.status(replica).await?;
            (st["state"] == "running"
                && st.get("pending_restart").is_none()
                && show(&c, replica, "max_connections").await.as_deref() == Some("150"))
            .then_some(())
        },
    )
    .await;

    // POST /restart on the other replica: conditions, then a restart that
    // applies the value and clears the flag.
    let other = (0..3).find(|i| *i != primary && *i != replica).unwrap();
    let before = c.status(other).await.unwrap()["postmaster_start_time"].clone();
    let (code, text) = send("POST", &api(other, "/restart"), r#"{"role": "primary"}"#).await;
    assert_eq!(
        (code, text.as_str()),
        (503, "restart conditions are not satisfied")
    );
    let (code, text) = send("POST", &api(other, "/restart"), r#"{"bogus": 1}"#).await;
    assert_eq!(code, 400, "{text}");
    let (code, text) = send(
        "POST",
        &api(other, "/restart"),
        r#"{"role": "replica", "restart_pending": true}"#,
    )
    .await;
    assert_eq!((code, text.as_str()), (200, "restarted successfully"));
    assert_eq!(
        show(&c, other, "max_connections").await.as_deref(),
        Some("150")
    );
    let st = eventually(APPLY, "restarted replica streams, flag cleared", || async {
        let st = c.status(other).await?;
        (st["replication_state"] == "streaming" && st.get("pending_restart").is_none())
            .then_some(st)
    })
    .await;
    assert_ne!(st["postmaster_start_time"], before);
    let (code, text) = send(
        "POST",
        &api(other, "/restart"),
        r#"{"restart_pending": true}"#,
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (503, "restart conditions are not satisfied")
    );

    // --- pause is stored and exposed (no behaviour yet)
    let (code, _) = send("PATCH", &api(replica, "/config"), r#"{"pause": true}"#).await;
    assert_eq!(code, 200);
    eventually(
        APPLY,
        "pause in /patroni, /cluster and member keys",
        || async {
            let st = c.status(replica).await?;
            let (_, text) = send("GET", &api(primary, "/cluster"), "").await;
            let cl: Value = serde_json::from_str(&text).ok()?;
            let mut client = etcd_client::Client::connect([c.etcd.endpoint()], None)
                .await
                .ok()?;
            let key = format!("/it/{}/members/{}", c.scope, c.nodes[replica].name);
            let r = client.get(key, None).await.ok()?;
            let member: Value = serde_json::from_slice(r.kvs().first()?.value()).ok()?;
            (st["pause"] == json!(true)
                && cl["pause"] == json!(true)
                && member["pause"] == json!(true))
            .then_some(())
        },
    )
    .await;
    let (code, _) = send("PATCH", &api(replica, "/config"), r#"{"pause": null}"#).await;
    assert_eq!(code, 200);

    // --- concurrent PATCHes of different keys from two clients all survive
    for round in 0..4 {
        let (ua, ub) = (api(primary, "/config"), api(replica, "/config"));
        let ba = format!(r#"{{"postgresql": {{"parameters": {{"test.a_{round}": "x"}}}}}}"#);
        let bb = format!(r#"{{"postgresql": {{"parameters": {{"test.b_{round}": "y"}}}}}}"#);
        let (a, b) = (send("PATCH", &ua, &ba), send("PATCH", &ub, &bb));
        let ((ca, ta), (cb, tb)) = futures_util::future::join(a, b).await;
        assert_eq!((ca, cb), (200, 200), "{ta} / {tb}");
    }
    let cfg = get_config(&c, primary).await;
    for round in 0..4 {
        let p = &cfg["postgresql"]["parameters"];
        assert_eq!(p[format!("test.a_{round}")], "x", "{cfg}");
        assert_eq!(p[format!("test.b_{round}")], "y", "{cfg}");
    }

    // --- PUT replaces the whole document
    let mut doc = cfg.clone();
    doc["postgresql"]["parameters"] = json!({"max_connections": 150, "work_mem": "6MB"});
    doc["maximum_lag_on_failover"] = json!(2097152);
    let (code, text) = send("PUT", &api(replica, "/config"), &doc.to_string()).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), doc);
    assert_eq!(get_config(&c, primary).await, doc);
    assert_eq!(
        serde_json::from_slice::<Value>(&etcd_config(&c).await.unwrap()).unwrap(),
        doc
    );
    for i in 0..3 {
        eventually(APPLY, "PUT applied", || async {
            (show(&c, i, "work_mem").await.as_deref() == Some("6MB")).then_some(())
        })
        .await;
    }

    // --- loop_wait: the HA loop's cadence follows it on every node
    let cycles = |i: usize| c.nodes[i].cycles();
    let window = Duration::from_secs(8);
    let before: Vec<usize> = (0..3).map(cycles).collect();
    // A fixed wall-clock window is the measurement itself: cycles per window.
    tokio::time::sleep(window).await;
    let fast: Vec<usize> = (0..3).map(|i| cycles(i) - before[i]).collect();
    let (code, _) = send("PATCH", &api(primary, "/config"), r#"{"loop_wait": 2}"#).await;
    assert_eq!(code, 200);
    // Each node runs two cycles after it logged the change, so the one it
    // had already scheduled at the old cadence is behind us.
    for i in 0..3 {
        eventually(APPLY, "two cycles after timing_changed", || async {
            let log = c.nodes[i].log();
            let lines: Vec<&str> = log.lines().collect();
            let at = lines
                .iter()
                .position(|l| has_event(l, events::TIMING_CHANGED))?;
            let after = lines[at..]
                .iter()
                .filter(|l| has_event(l, events::DECISION))
                .count();
            (after >= 2).then_some(())
        })
        .await;
    }
    let before: Vec<usize> = (0..3).map(cycles).collect();
    let started = Instant::now();
    // The measurement window again.
    tokio::time::sleep(window).await;
    let slow: Vec<usize> = (0..3).map(|i| cycles(i) - before[i]).collect();
    assert!(started.elapsed() < window * 2);
    for (f, s) in fast.iter().zip(&slow) {
        assert!(*f >= 5, "loop_wait 1: {fast:?} cycles in {window:?}");
        assert!(
            *s >= 2 && s * 10 <= f * 7,
            "loop_wait 2: {slow:?} vs loop_wait 1: {fast:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_restores_a_lost_config_key_replicas_do_not() {
    let mut c = TestCluster::new(2, Timing::default());
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    let replica = 1 - primary;
    let file = |i: usize| c.nodes[i].data_dir().join("patroni.dynamic.json");

    // The leader keeps a copy of the applied config, mode 0600.
    let saved = eventually(APPLY, "patroni.dynamic.json on the leader", || async {
        let text = std::fs::read_to_string(file(primary)).ok()?;
        serde_json::from_str::<Value>(&text).ok()
    })
    .await;
    let stored: Value = serde_json::from_slice(&etcd_config(&c).await.unwrap()).unwrap();
    assert_eq!(saved, stored);
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(file(primary)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // A change is dumped again.
    let (code, _) = send(
        "PATCH",
        &c.nodes[replica].api("/config"),
        r#"{"postgresql": {"parameters": {"work_mem": "5MB"}}}"#,
    )
    .await;
    assert_eq!(code, 200);
    let saved = eventually(APPLY, "dump after a change", || async {
        let text = std::fs::read_to_string(file(primary)).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        (v["postgresql"]["parameters"]["work_mem"] == "5MB").then_some(v)
    })
    .await;

    // Only the replica has a copy: deleting the key leaves it missing.
    std::fs::remove_file(file(primary)).unwrap();
    let put_copy = |i: usize| {
        let p = file(i);
        std::fs::write(&p, saved.to_string()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&p, Some(meta.uid()), Some(meta.gid())).unwrap();
    };
    put_copy(replica);
    etcd_delete_config(&c).await;
    // Five timed cycles of each node see the key missing, plus the one
    // the deletion itself wakes (a config key event).
    c.during_cycles(
        &[primary, replica],
        6,
        Duration::from_secs(30),
        "the key left missing",
        || async {
            assert_eq!(etcd_config(&c).await, None, "the replica must not restore");
        },
    )
    .await;
    assert_eq!(etcd_config(&c).await, None, "the replica must not restore");
    assert!(!c.nodes[replica].logged(events::CONFIG_RESTORED));
    // Nodes keep the last good config meanwhile.
    assert_eq!(show(&c, replica, "work_mem").await.as_deref(), Some("5MB"));

    // The leader restores it from its own copy.
    put_copy(primary);
    let restored = eventually(APPLY, "config key restored by the leader", || async {
        let raw = etcd_config(&c).await?;
        serde_json::from_slice::<Value>(&raw).ok()
    })
    .await;
    assert_eq!(restored, saved);
    eventually(APPLY, "restore logged by the leader", || async {
        c.nodes[primary]
            .logged(events::CONFIG_RESTORED)
            .then_some(())
    })
    .await;

    // An invalid value is replaced as well.
    let mut client = etcd_client::Client::connect([c.etcd.endpoint()], None)
        .await
        .unwrap();
    client
        .put(config_key(&c), r#"{"ttl": "garbage"}"#, None)
        .await
        .unwrap();
    eventually(APPLY, "invalid config key replaced", || async {
        let raw = etcd_config(&c).await?;
        (serde_json::from_slice::<Value>(&raw).ok()? == saved).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_yaml_keeps_the_running_config() {
    let mut c = TestCluster::new(1, Timing::default());
    c.start_all();
    c.wait_healthy(BOOT).await;
    let path = c.nodes[0].config_path.clone();
    let good = std::fs::read_to_string(&path).unwrap();

    // Broken YAML on SIGHUP: logged with the line, daemon keeps running.
    let broken = format!("{good}  bad: [unclosed\n");
    std::fs::write(&path, &broken).unwrap();
    c.signal(0, Signal::SIGHUP);
    eventually(APPLY, "reload failure logged", || async {
        c.nodes[0]
            .logged(events::CONFIG_RELOAD_FAILED)
            .then_some(())
    })
    .await;
    let log = c.nodes[0].log();
    let line = log
        .lines()
        .find(|l| has_event(l, events::CONFIG_RELOAD_FAILED))
        .unwrap();
    assert!(line.contains("line"), "{line}");
    // POST /reload answers with the error too.
    let (code, text) = send("POST", &c.nodes[0].api("/reload"), "").await;
    assert_eq!(code, 500, "{text}");
    assert!(text.contains("line"), "{text}");
    // Two HA cycles later.
    c.during_cycles(
        &[0],
        2,
        Duration::from_secs(20),
        "still running",
        || async {},
    )
    .await;
    assert_eq!(c.nodes[0].exited(), None, "the daemon must keep running");
    let st = c.status(0).await.expect("status");
    assert_eq!(st["role"], "primary");

    // A good file with a changed local parameter and a new tag is applied
    // by reload.
    let fixed = good.replace(
        "    shared_buffers: 16MB\n",
        "    shared_buffers: 16MB\n    work_mem: 7MB\n",
    ) + "tags:\n  nosync: true\n";
    assert_ne!(fixed, good);
    std::fs::write(&path, &fixed).unwrap();
    let (code, text) = send("POST", &c.nodes[0].api("/reload"), "").await;
    assert_eq!(code, 202, "{text}");
    eventually(APPLY, "local work_mem applied", || async {
        (show(&c, 0, "work_mem").await.as_deref() == Some("7MB")).then_some(())
    })
    .await;
    eventually(APPLY, "new tag in /patroni", || async {
        (c.status(0).await?["tags"]["nosync"] == json!(true)).then_some(())
    })
    .await;
}

/// docs/configuration.md §9.3: postgresql.base.conf (or custom_conf) <
/// postgresql.conf (our parameters) < postgresql.auto.conf (`ALTER SYSTEM`) <
/// the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_layers_precedence() {
    let mut c = TestCluster::new(1, Timing::default());
    let path = c.nodes[0].config_path.clone();
    let yaml = std::fs::read_to_string(&path).unwrap();
    let with_local = yaml.replace(
        "    max_connections: 30\n",
        "    max_connections: 30\n    random_page_cost: 2.5\n    cpu_tuple_cost: 0.02\n",
    );
    assert_ne!(with_local, yaml);
    std::fs::write(&path, &with_local).unwrap();
    c.start_all();
    c.wait_healthy(BOOT).await;
    let data = c.nodes[0].data_dir();
    let conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    assert!(conf.contains("include 'postgresql.base.conf'"), "{conf}");
    // The command-line parameters are in the file too, with the command
    // line's values (the local 30 is ignored: cluster-wide), so that
    // initdb's value in postgresql.base.conf never reads as a change.
    assert!(
        conf.contains("max_connections = '100'"),
        "command-line parameters in the file, as on the command line: {conf}"
    );

    // (1) the base file, (2) our postgresql.conf over it.
    let base = data.join("postgresql.base.conf");
    let mut text = std::fs::read_to_string(&base).unwrap();
    text.push_str("seq_page_cost = 1.5\nrandom_page_cost = 3.0\n");
    std::fs::write(&base, text).unwrap();
    // (3) ALTER SYSTEM over postgresql.conf; (4) the command line over all.
    let client = c.sql(0).await.unwrap();
    for sql in [
        "ALTER SYSTEM SET cpu_tuple_cost = 0.03",
        "ALTER SYSTEM SET max_connections = 50",
        "SELECT pg_reload_conf()",
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    drop(client);
    let expect = [
        ("seq_page_cost", "1.5"),
        ("random_page_cost", "2.5"),
        ("cpu_tuple_cost", "0.03"),
        ("max_connections", "100"),
    ];
    eventually(APPLY, "layers after reload", || async {
        for (name, want) in expect {
            if show(&c, 0, name).await.as_deref() != Some(want) {
                return None;
            }
        }
        Some(())
    })
    .await;
    // ALTER SYSTEM max_connections waits for a restart, which the command
    // line then overrides.
    let pm = c.nodes[0].postmaster_pid().unwrap();
    kill(Pid::from_raw(pm), Signal::SIGINT).unwrap();
    eventually(BOOT, "restarted", || async {
        (c.nodes[0].postmaster_pid().is_some_and(|p| p != pm)
            && show(&c, 0, "max_connections").await.is_some())
        .then_some(())
    })
    .await;
    for (name, want) in expect {
        assert_eq!(show(&c, 0, name).await.as_deref(), Some(want), "{name}");
    }

    // custom_conf replaces postgresql.base.conf as the base.
    let custom = c.nodes[0].dir.join("custom.conf");
    std::fs::write(&custom, "seq_page_cost = 1.7\n").unwrap();
    let meta = std::fs::metadata(&base).unwrap();
    use std::os::unix::fs::MetadataExt;
    std::os::unix::fs::chown(&custom, Some(meta.uid()), Some(meta.gid())).unwrap();
    let with_custom = with_local.replace(
        "  pg_ctl_timeout: 30\n",
        &format!(
            "  pg_ctl_timeout: 30\n  custom_conf: {}\n",
            custom.display()
        ),
    );
    assert_ne!(with_custom, with_local);
    std::fs::write(&path, &with_custom).unwrap();
    let (code, text) = send("POST", &c.nodes[0].api("/reload"), "").await;
    assert_eq!(code, 202, "{text}");
    eventually(APPLY, "custom_conf applied", || async {
        (show(&c, 0, "seq_page_cost").await.as_deref() == Some("1.7")).then_some(())
    })
    .await;
    assert_eq!(
        show(&c, 0, "random_page_cost").await.as_deref(),
        Some("2.5")
    );
}
