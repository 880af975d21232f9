//! pgpilotctl against a real 3-node cluster (etcd, PostgreSQL 15): output
//! parsed as JSON and checked against the cluster, changes checked through
//! the REST API, refusals exit non-zero and name what they refused.

mod support;

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::cluster::{TestCluster, Timing};
use support::ctl::ok;
use support::eventually;

const BOOT: Duration = Duration::from_secs(120);

/// Run `pgpilotctl -c <node0 config> args...`, feeding `stdin`.
fn ctl(c: &TestCluster, args: &[&str], stdin: &str) -> Output {
    ctl_env(c, args, stdin, &[])
}

fn ctl_env(c: &TestCluster, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    support::ctl::run(c, args, stdin, env)
}

fn list_json(c: &TestCluster) -> Vec<Value> {
    let out = ok(c, &["list", "-f", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("list -f json: {e}: {out}"))
}

fn leader_of(rows: &[Value]) -> Option<String> {
    let leaders: Vec<&Value> = rows.iter().filter(|r| r["Role"] == "Leader").collect();
    (leaders.len() == 1).then(|| leaders[0]["Member"].as_str().unwrap_or("").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgpilotctl_against_a_real_cluster() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let leader = c.nodes[p].name.clone();

    // list -f json: one Leader, two streaming replicas.
    let rows = eventually(
        Duration::from_secs(30),
        "list shows 2 streaming replicas",
        || {
            let rows = list_json(&c);
            let streaming = rows
                .iter()
                .filter(|r| r["Role"] == "Replica" && r["State"] == "streaming")
                .count();
            async move { (streaming == 2).then_some(rows) }
        },
    )
    .await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        leader_of(&rows).as_deref(),
        Some(leader.as_str()),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["Cluster"] == c.scope.as_str()));

    // The table, tsv and topology name every member.
    let table = ok(&c, &["list"]);
    let topo = ok(&c, &["topology"]);
    let tsv = ok(&c, &["list", "-f", "tsv"]);
    for n in &c.nodes {
        assert!(table.contains(&n.name), "{table}");
        assert!(topo.contains(&n.name), "{topo}");
        assert!(tsv.contains(&n.name), "{tsv}");
    }
    assert!(
        table.starts_with(&format!("+ Cluster: {} (", c.scope)),
        "{table}"
    );
    assert!(topo.contains(&format!("| {leader} ")), "{topo}");
    assert_eq!(topo.matches("| + ").count(), 2, "{topo}");

    // show-config: the dynamic configuration as YAML.
    let config = ok(&c, &["show-config"]);
    assert!(config.contains("ttl: 6"), "{config}");

    // edit-config --set loop_wait=2 --force changes GET /config.
    let out = ok(&c, &["edit-config", "--set", "loop_wait=2", "--force"]);
    assert!(out.contains("+ loop_wait: 2"), "{out}");
    let cfg = c.get_json(p, "/config").await.expect("GET /config");
    assert_eq!(cfg["loop_wait"], 2, "{cfg}");

    // Without --force: "n" on stdin refuses and changes nothing, "y" applies.
    let refused = ctl(&c, &["edit-config", "--pg", "work_mem=8MB"], "n\n");
    assert!(!refused.status.success());
    let cfg = c.get_json(p, "/config").await.expect("GET /config");
    assert!(
        cfg["postgresql"]["parameters"]["work_mem"].is_null(),
        "{cfg}"
    );
    let applied = ctl(&c, &["edit-config", "--pg", "work_mem=8MB"], "y\n");
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let cfg = c.get_json(p, "/config").await.expect("GET /config");
    assert_eq!(cfg["postgresql"]["parameters"]["work_mem"], "8MB", "{cfg}");

    // edit-config with $EDITOR (a script editing the file), confirmed.
    let editor = c.root.join("fake-editor");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/^ttl: .*/ttl: 8/' \"$1\"\n").expect("editor");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod editor");
    let out = ctl_env(
        &c,
        &["edit-config"],
        "y\n",
        &[("EDITOR", editor.to_str().expect("utf-8 path"))],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("- ttl: 6") && stdout.contains("+ ttl: 8"),
        "{stdout}"
    );
    let cfg = c.get_json(p, "/config").await.expect("GET /config");
    assert_eq!(cfg["ttl"], 8, "{cfg}");
    assert_eq!(cfg["loop_wait"], 2, "other keys kept: {cfg}");
    // Compare-and-swap: an $EDITOR that itself changes the config over REST
    // before it returns (a concurrent change) makes edit-config refuse; the
    // concurrent change survives and the edit is not written.
    let racer = c.root.join("racing-editor");
    std::fs::write(
        &racer,
        format!(
            "#!/bin/sh\ncurl -sf -X PATCH -H 'Content-Type: application/json' \
             -d '{{\"maximum_lag_on_failover\": 3145728}}' {} >/dev/null || exit 1\n\
             sed -i 's/^ttl: .*/ttl: 10/' \"$1\"\n",
            c.nodes[p].api("/config")
        ),
    )
    .expect("racing editor");
    std::fs::set_permissions(&racer, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod racing editor");
    let out = ctl_env(
        &c,
        &["edit-config"],
        "y\n",
        &[("EDITOR", racer.to_str().expect("utf-8 path"))],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("config changed concurrently, re-run"),
        "{stderr}"
    );
    let cfg = c.get_json(p, "/config").await.expect("GET /config");
    assert_eq!(cfg["maximum_lag_on_failover"], 3145728, "{cfg}");
    assert_eq!(cfg["ttl"], 8, "the refused edit wrote nothing: {cfg}");
    // A value the daemons would refuse is refused before anything is written.
    let out = ctl(&c, &["edit-config", "--set", "ttl=soon", "--force"], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("ttl"), "{stderr}");
    let cfg = c.get_json(p, "/config").await.expect("GET /config");
    assert_eq!(cfg["ttl"], 8, "{cfg}");
    // --apply FILE merges a YAML document.
    let file = c.root.join("change.yaml");
    std::fs::write(&file, "maximum_lag_on_failover: 2097152\n").expect("change file");
    ok(
        &c,
        &[
            "edit-config",
            "--apply",
            file.to_str().expect("utf-8"),
            "--force",
        ],
    );
    let cfg = c.get_json(p, "/config").await.expect("GET /config");
    assert_eq!(cfg["maximum_lag_on_failover"], 2097152, "{cfg}");
    assert_eq!(cfg["ttl"], 8, "{cfg}");
    // As patronictl: --set applies after --apply (a later option wins), and
    // a null in the file deletes the key.
    std::fs::write(&file, "primary_start_timeout: 200\n").expect("change file");
    let path = file.to_str().expect("utf-8");
    let args = [
        "edit-config",
        "--apply",
        path,
        "-s",
        "primary_start_timeout=250",
    ];
    ok(&c, &[&args[..], &["--force"]].concat());
    let cfg = c.get_json(p, "/config").await.expect("GET /config");
    assert_eq!(cfg["primary_start_timeout"], 250, "{cfg}");
    std::fs::write(&file, "primary_start_timeout: null\n").expect("change file");
    ok(&c, &["edit-config", "--apply", path, "--force"]);
    let cfg = c.get_json(p, "/config").await.expect("GET /config");
    assert!(cfg.get("primary_start_timeout").is_none(), "{cfg}");
    assert_eq!(cfg["maximum_lag_on_failover"], 2097152, "{cfg}");

    // query runs SQL on the leader, or on a replica.
    let out = ok(
        &c,
        &[
            "query",
            "-c",
            "SELECT pg_is_in_recovery() AS r, 1 + 1 AS two",
        ],
    );
    assert_eq!(out, "r\ttwo\nf\t2\n");
    let out = ok(
        &c,
        &[
            "query",
            "-r",
            "replica",
            "--format",
            "json",
            "-c",
            "SELECT pg_is_in_recovery() AS r",
        ],
    );
    assert_eq!(out.trim(), r#"[{"r":"t"}]"#);
    let out = ctl(&c, &["query", "-c", "SELECT nosuchcolumn"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchcolumn"));

    // dsn points at the leader's PostgreSQL.
    let dsn = ok(&c, &["dsn"]);
    assert_eq!(
        dsn.trim(),
        format!("host=127.0.0.1 port={}", c.nodes[p].pg_port)
    );

    // reload of every member.
    let out = ok(&c, &["reload", &c.scope, "--force"]);
    assert_eq!(out.matches("Success: reload on member").count(), 3, "{out}");
    let out = ok(&c, &["reload", "--role", "replica", "--force"]);
    assert_eq!(out.matches("Success: reload on member").count(), 2, "{out}");
    assert!(!out.contains(&format!("member {leader}:")), "{out}");

    // patronictl's options (issue 18, "Also"). Several clusters for list.
    let scope = c.scope.clone();
    let out = ok(&c, &["list", &scope, &scope]);
    assert_eq!(out.matches("+ Cluster: ").count(), 2, "{out}");
    // -d with a namespace in its path; --group: a Citus group's keys.
    let port = c.etcd.client_port();
    let rows_at = |url: &str, extra: &[&str]| -> usize {
        let args = [&["-d", url][..], extra, &["list", "-f", "json"][..]].concat();
        let out = ok(&c, &args);
        serde_json::from_str::<Vec<Value>>(&out)
            .unwrap_or_else(|e| panic!("{e}: {out}"))
            .len()
    };
    assert_eq!(rows_at(&format!("etcd3://127.0.0.1:{port}/it"), &[]), 3);
    assert_eq!(rows_at(&format!("etcd3://127.0.0.1:{port}/nosuch"), &[]), 0);
    assert_eq!(
        rows_at(&format!("etcd3://127.0.0.1:{port}/it"), &["--group", "1"]),
        0
    );
    // topology -w: repeats until interrupted.
    let watched = c.root.join("topology-watch.out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgpilotctl"))
        .arg("-c")
        .arg(&c.nodes[0].config_path)
        .args(["topology", "-w", "0.2"])
        .stdout(std::fs::File::create(&watched).expect("watch output"))
        .spawn()
        .expect("spawn topology -w");
    eventually(Duration::from_secs(20), "topology -w repeats", || {
        let n = std::fs::read_to_string(&watched)
            .unwrap_or_default()
            .matches("+ Cluster: ")
            .count();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    // query --delimiter, and --password: the prompt on stderr, the
    // answer read from stdin (the test cluster trusts local TCP
    // connections, so only the prompt and the read are checked here).
    let out = ok(
        &c,
        &["query", "--delimiter", ";", "-c", "SELECT 1 AS a, 2 AS b"],
    );
    assert_eq!(out, "a;b\n1;2\n");
    let args = [
        "query",
        "-U",
        "app",
        "--password",
        "-c",
        "SELECT current_user AS u",
    ];
    let out = ctl(&c, &args, "app-pass\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "u\napp\n");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Password: "));
    // edit-config --replace -q: the file is the whole new configuration,
    // no diff shown.
    let current = ok(&c, &["show-config"]);
    let replaced: String = current
        .lines()
        .filter(|l| !l.starts_with("maximum_lag_on_failover:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, replaced).expect("replace file");
    let out = ok(&c, &["edit-config", "--replace", path, "-q", "--force"]);
    assert_eq!(out, "Configuration changed\n");
    let cfg = c.get_json(p, "/config").await.expect("GET /config");
    assert!(cfg.get("maximum_lag_on_failover").is_none(), "{cfg}");
    assert_eq!(cfg["ttl"], 8, "{cfg}");
    // restart --any schedules one restart (an hour ahead) on one replica;
    // flush restart --role leader finds none, --role replica flushes it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let at = pgpilot::ctl::time::format_utc(now + 3600).replace(' ', "T");
    let out = ok(
        &c,
        &[
            "restart",
            "--any",
            "--role",
            "replica",
            "--scheduled",
            &at,
            "--force",
        ],
    );
    assert_eq!(
        out.matches("Success: restart on member").count(),
        1,
        "{out}"
    );
    assert!(!out.contains(&format!("member {leader}:")), "{out}");
    // The schedule reaches the member key with the member's next cycle.
    eventually(
        Duration::from_secs(30),
        "a scheduled restart in list",
        || {
            let n = list_json(&c)
                .iter()
                .filter(|r| r.get("Scheduled restart").is_some())
                .count();
            async move { (n == 1).then_some(()) }
        },
    )
    .await;
    let out = ctl(
        &c,
        &["flush", &scope, "restart", "--role", "leader", "--force"],
        "",
    );
    assert!(!out.status.success());
    let out = ok(
        &c,
        &["flush", &scope, "restart", "--role", "replica", "--force"],
    );
    assert_eq!(
        out.matches("Success: flush scheduled restart").count(),
        1,
        "{out}"
    );

    // Refusals: unknown candidate, switchover to the leader; nothing changes.
    let out = ctl(&c, &["switchover", "--candidate", "nosuch", "--force"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch"), "{err}");
    let out = ctl(&c, &["switchover", "--candidate", &leader, "--force"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already the leader"));
    let out = ctl(&c, &["reinit", &leader, "--force"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("member {leader} is the leader")),
        "{err}"
    );
    let out = ctl(&c, &["restart", "nosuch", "--force"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    assert_eq!(leader_of(&list_json(&c)).as_deref(), Some(leader.as_str()));

    // switchover --candidate <replica> --force.
    let candidate = c.nodes[(p + 1) % 3].name.clone();
    let out = ok(&c, &["switchover", "--candidate", &candidate, "--force"]);
    assert!(out.contains("Successfully switched over"), "{out}");
    assert!(out.contains("Switchover took "), "how long it took: {out}");
    eventually(Duration::from_secs(60), "candidate leads in list", || {
        let l = leader_of(&list_json(&c));
        let want = candidate.clone();
        async move { (l.as_deref() == Some(want.as_str())).then_some(()) }
    })
    .await;

    // history -f json: one entry, for timeline 1.
    // The new leader writes the history key shortly after its promotion.
    let h = eventually(Duration::from_secs(30), "history has an entry", || {
        let h = ok(&c, &["history", "-f", "json"]);
        let h: Vec<Value> = serde_json::from_str(&h).unwrap_or_else(|e| panic!("{e}: {h}"));
        async move { (!h.is_empty()).then_some(h) }
    })
    .await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["TL"], 1, "{h:?}");
    assert_eq!(h[0]["New Leader"], candidate.as_str(), "{h:?}");

    let v = ok(&c, &["version"]);
    assert!(v.contains("pgpilotctl version"), "{v}");
    assert_eq!(v.matches("Patroni 4.1.5 PostgreSQL").count(), 3, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgpilotctl_pause_failover_restart() {
    let mut c = TestCluster::new(3, Timing::default());
    c.start_all();
    let p = c.wait_healthy(BOOT).await;
    let leader = c.nodes[p].name.clone();

    // pause --wait: every member key shows the pause when it returns.
    let out = ok(&c, &["pause", "--wait"]);
    assert!(out.contains("paused"), "{out}");
    let table = ok(&c, &["list"]);
    assert!(table.contains("Maintenance mode: on"), "{table}");
    let s = c.status(p).await.expect("status");
    assert_eq!(s["pause"], true, "{s}");
    // Pausing twice is refused.
    let again = ctl(&c, &["pause"], "");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already paused"));
    let out = ok(&c, &["resume", "--wait"]);
    assert!(out.contains("resumed"), "{out}");
    assert!(!ok(&c, &["list"]).contains("Maintenance mode"));

    // restart of one replica, confirmed on stdin.
    let replica = (p + 1) % 3;
    let before = c.nodes[replica].postmaster_pid();
    let out = ctl(&c, &["restart", &c.nodes[replica].name.clone()], "y\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Success: restart on member"));
    assert_ne!(c.nodes[replica].postmaster_pid(), before);
    // A missing confirmation restarts nothing.
    let pid = c.nodes[replica].postmaster_pid();
    let out = ctl(&c, &["restart", &c.nodes[replica].name.clone()], "");
    assert!(!out.status.success());
    assert_eq!(c.nodes[replica].postmaster_pid(), pid);
    c.wait_healthy(BOOT).await;

    // failover needs a candidate; with one, it becomes the leader.
    let out = ctl(&c, &["failover", "--force"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("candidate"));
    let candidate = c.nodes[(p + 2) % 3].name.clone();
    let out = ok(&c, &["failover", "--candidate", &candidate, "--force"]);
    assert!(out.contains("failed over"), "{out}");
    eventually(Duration::from_secs(60), "candidate leads in list", || {
        let l = leader_of(&list_json(&c));
        let want = candidate.clone();
        async move { (l.as_deref() == Some(want.as_str())).then_some(()) }
    })
    .await;
    assert_ne!(candidate, leader);
    let dsn = ok(&c, &["dsn", "--role", "replica"]);
    assert!(dsn.starts_with("host=127.0.0.1 port="), "{dsn}");

    // list -t: the time first.
    let out = ok(&c, &["list", "-t"]);
    assert!(out.lines().next().unwrap_or("").ends_with(" UTC"), "{out}");

    // A scheduled switchover, an hour ahead, time given without a zone
    // (read as UTC): accepted and shown under the list.
    c.wait_healthy(BOOT).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let at = pgpilot::ctl::time::format_utc(now + 3600).replace(' ', "T");
    let target = c.nodes[(p + 1) % 3].name.clone();
    let out = ok(
        &c,
        &[
            "switchover",
            "--candidate",
            &target,
            "--scheduled",
            &at,
            "--force",
        ],
    );
    assert!(out.contains("Switchover scheduled"), "{out}");
    let table = ok(&c, &["list"]);
    assert!(table.contains("Switchover scheduled at:"), "{table}");
    assert!(table.contains(&format!("to: {target}")), "{table}");
    // flush switchover cancels it.
    let out = ok(&c, &["flush", &c.scope, "switchover", "--force"]);
    assert!(out.contains("scheduled switchover deleted"), "{out}");
    assert!(!ok(&c, &["list"]).contains("Switchover scheduled"));
    let out = ctl(&c, &["flush", "switchover", "--force"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scheduled switchover"));

    // remove: wrong answers change nothing; with the daemons stopped, the
    // right ones delete the cluster's keys.
    let scope = c.scope.clone();
    let out = ctl(&c, &["remove", &scope], &format!("{scope}\nyes\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Yes I am aware"));
    assert_eq!(list_json(&c).len(), 3);
    for i in 0..3 {
        c.kill_node(i).await;
    }
    let rows = list_json(&c);
    let leader = leader_of(&rows).unwrap_or_default();
    let out = ctl(
        &c,
        &["remove", &scope],
        &format!("{scope}\nYes I am aware\n{leader}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(list_json(&c).len(), 0);
    assert!(ok(&c, &["list"]).contains("(uninitialized)"));
}
