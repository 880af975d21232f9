//! A standby cluster (docs/ha.md §16) against real etcd and PostgreSQL: a
//! second cluster whose `bootstrap.dcs` has Patroni's `standby_cluster`
//! section bootstraps by cloning the first cluster's primary, its leader
//! runs as `standby_leader` and streams from it, its replica streams from
//! the standby leader, nothing of it takes writes, a killed standby leader
//! is replaced by the replica (which then streams from the remote),
//! `pgpilotctl promote-cluster` makes it a primary cluster and
//! `demote-cluster` a standby cluster again.

mod support;

use std::time::Duration;

use support::cluster::{TestCluster, Timing};
use support::eventually;

const BOOT: Duration = Duration::from_secs(120);
const APPLY: Duration = Duration::from_secs(60);

/// Both clusters' timing: a short lease, a cycle a second.
const TIMING: Timing = Timing {
    ttl: 10,
    loop_wait: 1,
    retry_timeout: 3,
};

/// The source (remote) cluster: one running node, its primary's index,
/// table `t` created.
async fn source_cluster() -> (TestCluster, usize) {
    let mut source = TestCluster::new(1, TIMING);
    source.start_all();
    let p = source.wait_healthy(BOOT).await;
    source.create_table_t(p).await;
    (source, p)
}

/// `role` of node `i`'s `GET /patroni`.
async fn role(c: &TestCluster, i: usize) -> Option<String> {
    Some(c.status(i).await?["role"].as_str()?.to_owned())
}

/// The node of `c` whose role is `standby_leader`, with every other
/// node a streaming replica.
async fn standby_leader(c: &TestCluster) -> Option<usize> {
    let mut leader = None;
    for i in 0..c.nodes.len() {
        match role(c, i).await?.as_str() {
            "standby_leader" if leader.is_none() => leader = Some(i),
            "replica" if c.is_streaming_replica(i).await => {}
            _ => return None,
        }
    }
    leader
}

/// Whether `v` is in `t` on node `i` of `c`.
async fn has_row(c: &TestCluster, i: usize, v: i64) -> bool {
    let Ok(db) = c.sql(i).await else { return false };
    db.query_opt("SELECT 1 FROM t WHERE v = $1", &[&v])
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Node `i` of `c` runs as the standby leader, takes no write, and, rewound
/// onto the remote (`source`'s node `p`), streams from it again: row `v`
/// written there arrives.
async fn demoted(c: &TestCluster, i: usize, source: &TestCluster, p: usize, v: i64) {
    assert_eq!(role(c, i).await.as_deref(), Some("standby_leader"));
    assert_eq!(c.http_code(i, "/primary").await, 503);
    let refused = c
        .sql(i)
        .await
        .expect("connect")
        .execute("INSERT INTO t VALUES (4)", &[])
        .await;
    assert!(refused.is_err(), "the demoted cluster took a write");
    insert(source, p, v).await;
    replicated(c, &[i], v).await;
}

/// Node `i` of `c` runs callback `what` (`<action> <role>`) within
/// [`APPLY`].
async fn called(c: &TestCluster, i: usize, what: &str) {
    let line = format!("{what} {}", c.scope);
    eventually(APPLY, &format!("node {i} calls {what}"), || async {
        callbacks(c, i).contains(&line).then_some(())
    })
    .await;
}

/// The callbacks node `i` ran, a line each: `<action> <role> <scope>`.
fn callbacks(c: &TestCluster, i: usize) -> Vec<String> {
    std::fs::read_to_string(c.nodes[i].dir.join("callbacks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `primary_conninfo` of node `i`'s PostgreSQL.
async fn conninfo(c: &TestCluster, i: usize) -> String {
    c.sql(i)
        .await
        .expect("connect")
        .query_one("SELECT current_setting('primary_conninfo')", &[])
        .await
        .expect("primary_conninfo")
        .get::<_, String>(0)
}

async fn insert(c: &TestCluster, i: usize, v: i64) {
    c.sql(i)
        .await
        .expect("connect to the primary")
        .execute("INSERT INTO t VALUES ($1)", &[&v])
        .await
        .expect("insert on the primary");
}

/// Nodes `live` of `c` get row `v` within [`APPLY`].
async fn replicated(c: &TestCluster, live: &[usize], v: i64) {
    eventually(APPLY, &format!("row {v} on nodes {live:?}"), || async {
        for &i in live {
            if !has_row(c, i, v).await {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_cluster_follows_the_remote_fails_over_is_promoted_and_demoted() {
    let (source, p) = source_cluster().await;
    insert(&source, p, 1).await;

    let section = format!(
        "{{host: 127.0.0.1, port: {}, recovery_min_apply_delay: '0'}}",
        source.nodes[p].pg_port
    );
    let mut sc = TestCluster::with_dcs(2, TIMING, &[("standby_cluster", section.as_str())]);
    // Callbacks name the standby leader's role (Patroni's).
    let script = sc.write_script(
        "append-args.sh",
        "#!/bin/sh\nf=$1\nshift\necho \"$@\" >> \"$f\"\n",
    );
    for i in 0..2 {
        let cmd = format!(
            "{} {}",
            script.display(),
            sc.nodes[i].dir.join("callbacks.log").display()
        );
        sc.add_to_section(
            i,
            "postgresql",
            &format!("callbacks:\n  on_start: {cmd}\n  on_role_change: {cmd}"),
        );
    }
    sc.start_all();
    let leader = eventually(BOOT, "a standby leader and a streaming replica", || {
        standby_leader(&sc)
    })
    .await;
    replicated(&sc, &[0, 1], 1).await;
    // Patroni's own patronictl reads it as Patroni's standby cluster.
    let yml = support::patronictl::config(&sc, "");
    let rows = support::patronictl::list_json(&sc, &yml);
    let role_of = |name: &str| {
        rows.iter()
            .find(|r| r["Member"] == name)
            .map(|r| r["Role"].clone())
    };
    assert_eq!(
        role_of(&sc.nodes[leader].name),
        Some("Standby Leader".into()),
        "{rows:?}"
    );
    assert_eq!(role_of(&sc.nodes[1 - leader].name), Some("Replica".into()));

    called(&sc, leader, "on_start standby_leader").await;
    called(&sc, 1 - leader, "on_start replica").await;

    // The health checks of a standby leader (Patroni's API); the API's
    // view of the lock and the config key follows the cycle.
    eventually(APPLY, "/standby-leader answers 200", || async {
        (sc.http_code(leader, "/standby-leader").await == 200).then_some(())
    })
    .await;
    assert_eq!(sc.http_code(leader, "/leader").await, 200);
    assert_eq!(sc.http_code(leader, "/primary").await, 503);
    assert_eq!(sc.http_code(leader, "/replica").await, 503);
    let other = 1 - leader;
    assert_eq!(sc.http_code(other, "/replica").await, 200);
    assert_eq!(sc.http_code(other, "/standby-leader").await, 503);
    // It streams from the remote, the replica from it.
    let remote_port = format!("port={}", source.nodes[p].pg_port);
    assert!(conninfo(&sc, leader).await.contains(&remote_port));
    assert!(
        conninfo(&sc, other)
            .await
            .contains(&format!("port={}", sc.nodes[leader].pg_port))
    );
    // Nothing of it takes writes.
    for i in 0..2 {
        let err = sc
            .sql(i)
            .await
            .expect("connect")
            .execute("INSERT INTO t VALUES (100)", &[])
            .await;
        assert!(err.is_err(), "node {i} of the standby cluster took a write");
    }
    assert!(
        sc.nodes[leader]
            .log()
            .contains("the standby leader with the lock"),
        "Patroni's words for the standby leader's cycle"
    );

    // The standby leader dies: the replica takes the lock and streams
    // from the remote; nobody promotes.
    sc.kill_node(leader).await;
    eventually(APPLY, "the replica becomes the standby leader", || async {
        (role(&sc, other).await.as_deref() == Some("standby_leader")).then_some(())
    })
    .await;
    called(&sc, other, "on_role_change standby_leader").await;
    insert(&source, p, 2).await;
    replicated(&sc, &[other], 2).await;
    assert!(conninfo(&sc, other).await.contains(&remote_port));
    assert_eq!(sc.http_code(other, "/primary").await, 503);

    // Removing the section makes it a normal cluster: it promotes
    // (Patroni's `promote-cluster`, a PATCH of the section to null).
    let out = support::ctl::ok(&sc, &["promote-cluster", "--force"]);
    assert!(out.contains("cluster is successfully promoted"), "{out}");
    eventually(APPLY, "the former standby leader is a primary", || async {
        (role(&sc, other).await.as_deref() == Some("primary")
            && sc.http_code(other, "/primary").await == 200)
            .then_some(())
    })
    .await;
    called(&sc, other, "on_role_change primary").await;
    insert(&sc, other, 3).await;
    assert!(has_row(&sc, other, 3).await);
    // The source never saw it: two clusters now.
    assert!(!has_row(&source, p, 3).await);

    // And back, with Patroni's own `demote-cluster`: the primary stops,
    // is rewound onto the remote and streams from it; nothing of the
    // cluster takes writes. Then promoted by patronictl, demoted by
    // pgpilotctl.
    let port = source.nodes[p].pg_port.to_string();
    let demote = [
        "demote-cluster",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--force",
    ];
    let out = support::patronictl::ok(&sc, &yml, &demote);
    assert!(out.contains("cluster is successfully demoted"), "{out}");
    demoted(&sc, other, &source, p, 5).await;
    assert_eq!(
        sc.nodes[other].event_count(pgpilot::events::REWIND),
        1,
        "rewound onto the remote"
    );
    let out = support::patronictl::ok(&sc, &yml, &["promote-cluster", "--force"]);
    assert!(out.contains("cluster is successfully promoted"), "{out}");
    eventually(APPLY, "promoted again", || async {
        (role(&sc, other).await.as_deref() == Some("primary")).then_some(())
    })
    .await;
    let out = support::ctl::ok(&sc, &demote);
    assert!(out.contains("cluster is successfully demoted"), "{out}");
    demoted(&sc, other, &source, p, 6).await;
    assert_eq!(sc.nodes[other].event_count(pgpilot::events::REWIND), 2);
    let out = support::ctl::run(&sc, &["demote-cluster", "--host", "x", "--force"], "", &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in the required state"),
        "{out:?}"
    );
}

/// A standby cluster fed by `restore_command` alone (no `host`, no `port`):
/// the bootstrap winner clones the remote with the section's
/// `create_replica_methods` (here a script around `pg_basebackup`, as a
/// backup tool would restore one), runs as the standby leader in archive
/// recovery, and replays what the source archives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_cluster_fed_by_the_archive_alone() {
    let (source, p) = source_cluster().await;
    // Archive into a directory the daemons' user creates (the test root is
    // theirs), through the dynamic configuration and a restart.
    let archive = source.root.join("archive");
    let archive_command = format!(
        "mkdir -p {0} && test ! -f {0}/%f && cp %p {0}/%f",
        archive.display()
    );
    let body = serde_json::json!({"postgresql": {"parameters": {
        "archive_mode": "on", "archive_command": archive_command}}});
    let client = reqwest::Client::new();
    let r = client
        .patch(source.nodes[p].api("/config"))
        .body(body.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("PATCH /config");
    assert_eq!(r.status().as_u16(), 200);
    eventually(APPLY, "archive_mode on after a restart", || async {
        let _ = client
            .post(source.nodes[p].api("/restart"))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        let db = source.sql(p).await.ok()?;
        let row = db.query_one("SHOW archive_mode", &[]).await.ok()?;
        (row.get::<_, String>(0) == "on").then_some(())
    })
    .await;
    insert(&source, p, 1).await;

    let clone = format!(
        "#!/bin/sh\nfor a in \"$@\"; do case $a in --datadir=*) d=${{a#--datadir=}};; esac; done\n\
         PGPASSWORD={pw} exec /usr/lib/postgresql/15/bin/pg_basebackup -h 127.0.0.1 -p {port} \
         -U postgres -D \"$d\" -X fetch\n",
        pw = support::cluster::SUPERUSER_PASSWORD,
        port = source.nodes[p].pg_port,
    );
    let section = format!(
        "{{restore_command: 'cp {}/%f %p', create_replica_methods: [copy]}}",
        archive.display()
    );
    let mut sc = TestCluster::with_dcs(1, TIMING, &[("standby_cluster", section.as_str())]);
    let script = sc.write_script("clone-from-source.sh", &clone);
    sc.add_to_section(
        0,
        "postgresql",
        &format!("copy:\n  command: {}", script.display()),
    );
    sc.start_all();
    eventually(BOOT, "the standby leader, in archive recovery", || async {
        let s = sc.status(0).await?;
        (s["role"] == "standby_leader" && s["state"] == "running").then_some(())
    })
    .await;
    // The API's view of the lock and the config key follows the cycle.
    eventually(APPLY, "/standby-leader answers 200", || async {
        (sc.http_code(0, "/standby-leader").await == 200).then_some(())
    })
    .await;
    assert_eq!(sc.http_code(0, "/primary").await, 503);
    assert_eq!(conninfo(&sc, 0).await, "", "nothing to stream from");
    assert!(
        sc.nodes[0]
            .log()
            .contains("event=\"replica_created\" method=copy"),
        "cloned by the section's method"
    );
    // A row the source archives arrives.
    insert(&source, p, 2).await;
    source
        .sql(p)
        .await
        .expect("connect")
        .batch_execute("SELECT pg_switch_wal()")
        .await
        .expect("switch WAL");
    replicated(&sc, &[0], 2).await;
}
