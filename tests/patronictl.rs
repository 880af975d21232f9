//! Patroni's own `patronictl` (4.1.5, from PyPI) against a real 3-node
//! pgpilot cluster (etcd, PostgreSQL 15): it reads the DCS itself and talks
//! to the daemons' REST API, so every command here checks that the DCS keys,
//! the REST fields, status codes and texts are what Patroni's tool expects.
//! Each result is compared with the cluster's real state (REST, etcd).
//!
//! `scripts/test` installs patronictl into `/opt/patroni`
//! (`scripts/lib.sh`, `ensure_patronictl`); `PATRONICTL` names another
//! binary. A missing binary fails the test: it is not skipped.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::cluster::{TestCluster, Timing};
use support::eventually;

const BOOT: Duration = Duration::from_secs(120);
const SWITCH: Duration = Duration::from_secs(60);
const API_USER: &str = "admin";
const API_PASSWORD: &str = "ctl-Pa55";

/// A 3-node cluster whose REST API wants Basic auth for unsafe requests, and
/// a patronictl configuration for it (scope, namespace, etcd3 hosts and the
/// REST credentials, which patronictl takes from `restapi.authentication`).
fn cluster() -> (TestCluster, PathBuf) {
    let mut c = TestCluster::new(3, Timing::default());
    for i in 0..3 {
        c.add_to_section(
            i,
            "restapi",
            &format!("authentication:\n  username: {API_USER}\n  password: {API_PASSWORD}"),
        );
    }
    let yml = support::patronictl::config(
        &c,
        &format!(
            "restapi:\n  authentication:\n    username: {API_USER}\n    password: {API_PASSWORD}\n"
        ),
    );
    c.start_all();
    (c, yml)
}

fn patronictl(c: &TestCluster, yml: &Path, args: &[&str]) -> Output {
    support::patronictl::run(c, yml, args)
}

fn ok(c: &TestCluster, yml: &Path, args: &[&str]) -> String {
    support::patronictl::ok(c, yml, args)
}

fn list_json(c: &TestCluster, yml: &Path) -> Vec<Value> {
    support::patronictl::list_json(c, yml)
}

fn leader_of(rows: &[Value]) -> Option<String> {
    let leaders: Vec<&Value> = rows.iter().filter(|r| r["Role"] == "Leader").collect();
    (leaders.len() == 1).then(|| leaders[0]["Member"].as_str().unwrap_or("").to_owned())
}

/// `0/4045F88` as a number.
fn lsn(v: &Value) -> Option<u64> {
    let (hi, lo) = v.as_str()?.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The cluster as its daemons see it, compared row by row with
/// `patronictl list -f json`: members, roles, states, timelines, hosts.
/// `None` while they disagree (the DCS lags the daemons by up to a cycle).
async fn list_matches_cluster(c: &TestCluster, yml: &Path) -> Option<Vec<Value>> {
    let rows = list_json(c, yml);
    if rows.len() != c.nodes.len() {
        return None;
    }
    let leader = c.primary().await?;
    for (i, n) in c.nodes.iter().enumerate() {
        let row = rows.iter().find(|r| r["Member"] == n.name.as_str())?;
        let s = c.status(i).await?;
        assert_eq!(row["Cluster"], c.scope.as_str(), "{row}");
        assert_eq!(row["Host"], format!("127.0.0.1:{}", n.pg_port), "{row}");
        let (role, state) = if i == leader {
            ("Leader", s["state"].clone())
        } else {
            ("Replica", s["replication_state"].clone())
        };
        if row["Role"] != role || row["State"] != state || row["TL"] != s["timeline"] {
            return None;
        }
        if i != leader && (lsn(&row["Receive LSN"])? < lsn(&row["Replay LSN"])?) {
            // Patroni publishes max(flushed, written) as the receive LSN.
            return None;
        }
    }
    Some(rows)
}

async fn healthy_list(c: &TestCluster, yml: &Path) -> Vec<Value> {
    c.wait_healthy(BOOT).await;
    eventually(SWITCH, "patronictl list matches the cluster", || {
        list_matches_cluster(c, yml)
    })
    .await
}

/// The `config` key as etcd holds it.
async fn dcs_config(c: &TestCluster) -> Value {
    let mut client = etcd_client::Client::connect([c.etcd.endpoint()], None)
        .await
        .expect("etcd");
    let r = client
        .get(format!("/it/{}/config", c.scope), None)
        .await
        .expect("etcd get");
    let kv = r.kvs().first().expect("config key");
    serde_json::from_slice(kv.value()).expect("config key is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patronictl_against_a_pgpilot_cluster() {
    support::patronictl::bin();
    let (c, yml) = cluster();
    let p = c.wait_healthy(BOOT).await;
    let leader = c.nodes[p].name.clone();

    // list -f json agrees with every daemon; two streaming replicas.
    let rows = healthy_list(&c, &yml).await;
    assert_eq!(
        leader_of(&rows).as_deref(),
        Some(leader.as_str()),
        "{rows:?}"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r["Role"] == "Replica" && r["State"] == "streaming")
            .count(),
        2,
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["TL"] == 1), "{rows:?}");
    assert!(
        rows.iter().all(|r| r.get("Pending restart").is_none()),
        "{rows:?}"
    );

    // The table: header with the system identifier, every member.
    let sysid = c.status(p).await.expect("status")["database_system_identifier"]
        .as_str()
        .expect("sysid")
        .to_owned();
    let table = ok(&c, &yml, &["list"]);
    assert!(
        table.starts_with(&format!("+ Cluster: {} ({sysid}) ", c.scope)),
        "{table}"
    );
    assert!(!table.contains("Maintenance mode"), "{table}");

    // topology: the leader at the root, both replicas under it.
    let topo = ok(&c, &yml, &["topology"]);
    assert!(topo.contains(&format!("| {leader} ")), "{topo}");
    assert_eq!(topo.matches("| + ").count(), 2, "{topo}");

    // show-config: the same document as the DCS key and GET /config.
    let shown: Value = serde_yaml_ng::from_str(&ok(&c, &yml, &["show-config"])).expect("YAML");
    assert_eq!(shown, dcs_config(&c).await);
    assert_eq!(Some(&shown), c.get_json(p, "/config").await.as_ref());
    assert_eq!(shown["ttl"], 6, "{shown}");

    // edit-config --set (patronictl writes the key itself, CAS on its
    // version): the DCS key and every node's GET /config show it.
    let out = ok(
        &c,
        &yml,
        &[
            "edit-config",
            "--set",
            "loop_wait=2",
            "-p",
            "work_mem=8MB",
            "--force",
        ],
    );
    assert!(out.contains("+loop_wait: 2"), "{out}");
    let cfg = dcs_config(&c).await;
    assert_eq!(cfg["loop_wait"], 2, "{cfg}");
    assert_eq!(cfg["postgresql"]["parameters"]["work_mem"], "8MB", "{cfg}");
    assert_eq!(cfg["ttl"], 6, "other keys kept: {cfg}");
    for i in 0..3 {
        let got = c.get_json(i, "/config").await.expect("GET /config");
        assert_eq!(got, cfg, "node{i}");
    }
    // The daemons apply it: work_mem reaches PostgreSQL without a restart.
    eventually(SWITCH, "work_mem = 8MB on every node", || async {
        for i in 0..3 {
            let row = c
                .sql(i)
                .await
                .ok()?
                .query_one("SHOW work_mem", &[])
                .await
                .ok()?;
            if row.get::<_, String>(0) != "8MB" {
                return None;
            }
        }
        Some(())
    })
    .await;

    // pause --wait / resume --wait: every daemon reports it when they return.
    let out = ok(&c, &yml, &["pause", "--wait"]);
    assert!(
        out.contains("Success: cluster management is paused"),
        "{out}"
    );
    for i in 0..3 {
        assert_eq!(c.status(i).await.expect("status")["pause"], true, "node{i}");
    }
    assert!(ok(&c, &yml, &["list"]).contains("Maintenance mode: on"));
    let out = ok(&c, &yml, &["resume", "--wait"]);
    assert!(
        out.contains("Success: cluster management is resumed"),
        "{out}"
    );
    for i in 0..3 {
        let s = c.status(i).await.expect("status");
        assert!(
            s.get("pause").is_none() || s["pause"] == false,
            "node{i}: {s}"
        );
    }
    assert!(!ok(&c, &yml, &["list"]).contains("Maintenance mode"));

    // switchover to a named candidate.
    let candidate = c.nodes[(p + 1) % 3].name.clone();
    let out = ok(
        &c,
        &yml,
        &[
            "switchover",
            "--leader",
            &leader,
            "--candidate",
            &candidate,
            "--force",
        ],
    );
    assert!(
        out.contains(&format!("Successfully switched over to \"{candidate}\"")),
        "{out}"
    );
    let rows = healthy_list(&c, &yml).await;
    assert_eq!(
        leader_of(&rows).as_deref(),
        Some(candidate.as_str()),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["TL"] == 2), "{rows:?}");
    // A promoted replica has no restart pending (its file lost the recovery
    // parameters, which PostgreSQL marks pending_restart).
    assert!(
        rows.iter().all(|r| r.get("Pending restart").is_none()),
        "{rows:?}"
    );
    let wide = ok(&c, &yml, &["list", "-e", "-f", "json"]);
    let wide: Vec<Value> = serde_json::from_str(&wide).expect("list -e JSON");
    assert!(
        wide.iter()
            .all(|r| r["Pending restart"] == "" || r["Pending restart"].is_null()),
        "{wide:?}"
    );

    // history: the switch from timeline 1, to the candidate.
    let h = eventually(SWITCH, "history has an entry", || {
        let out = ok(&c, &yml, &["history", "-f", "json"]);
        let h: Vec<Value> = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        async move { (!h.is_empty()).then_some(h) }
    })
    .await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["TL"], 1, "{h:?}");
    assert_eq!(h[0]["New Leader"], candidate.as_str(), "{h:?}");
    assert!(h[0]["LSN"].as_u64().is_some_and(|l| l > 0), "{h:?}");
    let table = ok(&c, &yml, &["history"]);
    assert!(table.contains(&candidate), "{table}");

    // failover to the third node.
    let target = c.nodes[(p + 2) % 3].name.clone();
    let out = ok(&c, &yml, &["failover", "--candidate", &target, "--force"]);
    assert!(
        out.contains(&format!("Successfully failed over to \"{target}\"")),
        "{out}"
    );
    let rows = healthy_list(&c, &yml).await;
    assert_eq!(
        leader_of(&rows).as_deref(),
        Some(target.as_str()),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["TL"] == 3), "{rows:?}");

    // A switchover scheduled an hour ahead: shown under list (from the
    // `failover` key), then cancelled with flush (DELETE /switchover).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let at = format!(
        "{}+00:00",
        pgpilot::ctl::time::format_utc(now + 3600).replace(' ', "T")
    );
    let out = ok(
        &c,
        &yml,
        &[
            "switchover",
            "--leader",
            &target,
            "--candidate",
            &leader,
            "--scheduled",
            &at,
            "--force",
        ],
    );
    assert!(out.contains("Switchover scheduled"), "{out}");
    let table = ok(&c, &yml, &["list"]);
    assert!(table.contains("Switchover scheduled at:"), "{table}");
    assert!(table.contains(&format!("from: {target}")), "{table}");
    assert!(table.contains(&format!("to: {leader}")), "{table}");
    let out = ok(&c, &yml, &["flush", &c.scope, "switchover", "--force"]);
    assert!(out.starts_with("Success: "), "{out}");
    assert!(!ok(&c, &yml, &["list"]).contains("Switchover scheduled"));
    let out = ok(&c, &yml, &["flush", &c.scope, "switchover", "--force"]);
    assert!(out.contains("No pending scheduled switchover"), "{out}");

    // The promoted node's postgresql.conf no longer sets the recovery
    // parameters: once PostgreSQL re-reads it (here for a dynamic change) it
    // marks them pending_restart. Patroni ignores those, and so must we.
    let t = c
        .nodes
        .iter()
        .position(|n| n.name == target)
        .expect("target");
    ok(&c, &yml, &["edit-config", "-p", "work_mem=16MB", "--force"]);
    eventually(
        SWITCH,
        "PostgreSQL marks a recovery parameter pending",
        || async {
            let rows = c
                .sql(t)
                .await
                .ok()?
                .query("SELECT name FROM pg_settings WHERE pending_restart", &[])
                .await
                .ok()?;
            rows.iter()
                .any(|r| r.get::<_, String>(0).starts_with("recovery_target"))
                .then_some(())
        },
    )
    .await;
    // Three cycles of member keys: never a pending restart.
    c.during_cycles(
        &[t],
        3,
        Duration::from_secs(30),
        "no pending restart",
        || async {
            let wide: Vec<Value> =
                serde_json::from_str(&ok(&c, &yml, &["list", "-e", "-f", "json"])).expect("JSON");
            assert!(
                wide.iter()
                    .all(|r| r["Pending restart"] == "" || r["Pending restart"].is_null()),
                "{wide:?}"
            );
            let s = c.status(t).await.expect("status");
            assert!(s.get("pending_restart").is_none(), "{s}");
        },
    )
    .await;

    // restart of one replica: its postmaster starts anew.
    let r = (p + 1) % 3;
    let name = c.nodes[r].name.clone();
    let started = c.status(r).await.expect("status")["postmaster_start_time"].clone();
    let out = ok(&c, &yml, &["restart", &c.scope, &name, "--force"]);
    assert!(
        out.contains(&format!("Success: restart on member {name}")),
        "{out}"
    );
    eventually(SWITCH, "a new postmaster start time", || async {
        let now = c.status(r).await?["postmaster_start_time"].clone();
        (now.is_string() && now != started).then_some(())
    })
    .await;
    // The restarted replica streams again, and its receive LSN is not behind
    // its replay LSN: after a restart PostgreSQL's flushed position
    // (pg_last_wal_receive_lsn) stays at the segment start until new WAL
    // arrives; Patroni publishes max(flushed, written), and so must we.
    eventually(SWITCH, "the restarted replica streams in list", || {
        let rows = list_json(&c, &yml);
        let name = name.clone();
        async move {
            let row = rows.into_iter().find(|r| r["Member"] == name.as_str())?;
            (row["State"] == "streaming" && lsn(&row["Receive LSN"]).is_some()).then_some(())
        }
    })
    .await;
    eventually(
        Duration::from_secs(6),
        "the restarted replica's receive LSN >= its replay LSN",
        || {
            let rows = list_json(&c, &yml);
            let name = name.clone();
            async move {
                let row = rows.into_iter().find(|r| r["Member"] == name.as_str())?;
                (lsn(&row["Receive LSN"])? >= lsn(&row["Replay LSN"])?).then_some(())
            }
        },
    )
    .await;
    healthy_list(&c, &yml).await;

    // reload of every member: 202, "will be processed within 2 seconds".
    let out = ok(&c, &yml, &["reload", &c.scope, "--force"]);
    for n in &c.nodes {
        assert!(
            out.contains(&format!(
                "Reload request received for member {} and will be processed within 2 seconds",
                n.name
            )),
            "{out}"
        );
    }

    // version: each member's Patroni and PostgreSQL versions over REST.
    let out = ok(&c, &yml, &["version", &c.scope]);
    assert!(out.contains("patronictl version 4.1.5"), "{out}");
    assert_eq!(
        out.matches(": Patroni 4.1.5 PostgreSQL 15.").count(),
        3,
        "{out}"
    );

    // Nothing broke: one leader (the failover target), two streaming replicas.
    let rows = healthy_list(&c, &yml).await;
    assert_eq!(
        leader_of(&rows).as_deref(),
        Some(target.as_str()),
        "{rows:?}"
    );
}

/// `patronictl reinit`: the leader is refused by patronictl itself, a
/// replica is rebuilt from the leader through `POST /reinitialize` and
/// streams again, and the leader does not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patronictl_reinit() {
    support::patronictl::bin();
    let (c, yml) = cluster();
    let p = c.wait_healthy(BOOT).await;
    healthy_list(&c, &yml).await;
    let r = (p + 1) % 3;
    let name = c.nodes[r].name.clone();

    // patronictl offers only replicas.
    let out = patronictl(&c, &yml, &["reinit", &c.scope, &c.nodes[p].name, "--force"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No replica among provided members"), "{err}");

    // A file in the replica's data directory: gone once the directory is
    // rebuilt from the leader.
    let marker = c.nodes[r].data_dir().join("reinit-marker");
    std::fs::write(&marker, "before reinit").expect("marker");
    let started = c.status(r).await.expect("status")["postmaster_start_time"].clone();

    // reinit --wait: POST /reinitialize, then GET /patroni until the state
    // is no longer "creating replica". patronictl exits 0 even on failure,
    // so its words are checked.
    let out = ok(&c, &yml, &["reinit", &c.scope, &name, "--force", "--wait"]);
    assert!(
        out.contains(&format!("Success: reinitialize for member {name}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Reinitialize is completed on: {name}")),
        "{out}"
    );
    assert!(!marker.exists(), "the data directory was not rebuilt");
    eventually(
        SWITCH,
        "a new postmaster on the rebuilt replica",
        || async {
            let now = c.status(r).await?["postmaster_start_time"].clone();
            (now.is_string() && now != started).then_some(())
        },
    )
    .await;

    let rows = healthy_list(&c, &yml).await;
    assert_eq!(
        leader_of(&rows).as_deref(),
        Some(c.nodes[p].name.as_str()),
        "{rows:?}"
    );
    let row = rows
        .iter()
        .find(|row| row["Member"] == name.as_str())
        .expect("reinitialized member in list");
    assert_eq!(row["State"], "streaming", "{row}");
}
