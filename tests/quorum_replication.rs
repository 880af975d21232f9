//! Quorum commit against real PostgreSQL (docs/replication-modes.md §5):
//! three nodes with `synchronous_mode: quorum`. The primary runs
//! `ANY 1 (both replicas)` and publishes `quorum: 1` over both in the
//! `sync` key; PostgreSQL reports both `quorum`; `/quorum` answers 200 on
//! them, and `pgpilotctl list` as Patroni's patronictl show them as
//! `Quorum Standby`. A kill -9 of the primary while a writer gets commits
//! acknowledged promotes a replica that gathered the votes, with every
//! acknowledged write; the new primary takes the key over and ends with
//! the other replica as its only voter.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::cluster::{ClusterOptions, TestCluster, Timing};
use support::eventually;
use support::sync_faults::SyncMode;
use support::writer::{spawn_writer, values_on, wait_for_writes};

const BOOT: Duration = Duration::from_secs(90);
const APPLY: Duration = Duration::from_secs(30);

/// The `sync` key as stored, read from etcd's JSON gateway: the REST API
/// shows the roles, not the `quorum`.
async fn sync_key(c: &TestCluster) -> Option<Value> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = format!("/it/{}/sync", c.scope);
    let body: Value = reqwest::Client::new()
        .post(format!("{}/v3/kv/range", c.etcd.endpoint()))
        .json(&json!({ "key": b64.encode(key) }))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let raw = b64.decode(body["kvs"][0]["value"].as_str()?).ok()?;
    serde_json::from_slice(&raw).ok()
}

async fn show(c: &TestCluster, i: usize, name: &str) -> Option<String> {
    let client = c.sql(i).await.ok()?;
    let row = client.query_one(&format!("SHOW {name}"), &[]).await.ok()?;
    Some(row.get(0))
}

/// `sync_state` of each standby in node `i`'s `pg_stat_replication`.
async fn sync_states(c: &TestCluster, i: usize) -> Option<Vec<(String, String)>> {
    let client = c.sql(i).await.ok()?;
    let rows = client
        .query(
            "SELECT application_name, sync_state::text FROM pg_stat_replication ORDER BY 1",
            &[],
        )
        .await
        .ok()?;
    Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The members `/cluster` shows as `quorum_standby`, sorted.
async fn quorum_standbys(c: &TestCluster, i: usize) -> Option<Vec<String>> {
    let cl = c.get_json(i, "/cluster").await?;
    let mut names: Vec<String> = cl["members"]
        .as_array()?
        .iter()
        .filter(|m| m["role"] == "quorum_standby")
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    Some(names)
}

/// The key says `leader`, `quorum` over exactly `voters`.
async fn key_is(c: &TestCluster, leader: &str, quorum: u64, voters: &[&str]) -> Option<()> {
    let k = sync_key(c).await?;
    (k["leader"] == leader && k["quorum"] == quorum && k["sync_standby"] == voters.join(","))
        .then_some(())
}

/// (member, role) of `list -f json` rows, sorted.
fn list_roles(rows: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["Member"].as_str().unwrap_or_default().to_owned(),
                r["Role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn roles_expected(leader: &str, r1: &str, r2: &str) -> Vec<(String, String)> {
    let mut v = vec![
        (leader.to_owned(), "Leader".to_owned()),
        (r1.to_owned(), "Quorum Standby".to_owned()),
        (r2.to_owned(), "Quorum Standby".to_owned()),
    ];
    v.sort();
    v
}

/// Patroni 4.1.5's `patronictl list -f json`.
fn patronictl_list(c: &TestCluster) -> Vec<Value> {
    support::patronictl::list_json(c, &support::patronictl::config(c, ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_commit_failover_keeps_every_acknowledged_write() {
    let mut c = TestCluster::with_dcs(3, Timing::default(), &[("synchronous_mode", "quorum")]);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let replicas: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
    let (r1, r2) = (
        c.nodes[replicas[0]].name.clone(),
        c.nodes[replicas[1]].name.clone(),
    );
    let pname = c.nodes[primary].name.clone();

    // Both replicas stream: ANY 1 of them, and a quorum of 1 of them.
    eventually(
        APPLY,
        "the sync key: quorum 1 over both replicas",
        || async { key_is(&c, &pname, 1, &[&r1, &r2]).await },
    )
    .await;
    // The key and the parameter change in separate steps (the resolver's
    // order), so the parameter may follow the key by a cycle.
    let want = format!("ANY 1 ({r1},{r2})");
    eventually(
        APPLY,
        "synchronous_standby_names: ANY 1 over both",
        || async {
            (show(&c, primary, "synchronous_standby_names")
                .await
                .as_deref()
                == Some(want.as_str()))
            .then_some(())
        },
    )
    .await;
    eventually(APPLY, "PostgreSQL reports both standbys quorum", || async {
        let states = sync_states(&c, primary).await?;
        (states == vec![(r1.clone(), "quorum".into()), (r2.clone(), "quorum".into())]).then_some(())
    })
    .await;
    eventually(APPLY, "/quorum 200 on both replicas only", || async {
        let codes = (
            c.http_code(replicas[0], "/quorum").await,
            c.http_code(replicas[1], "/quorum").await,
            c.http_code(replicas[0], "/read-only-quorum").await,
            c.http_code(replicas[0], "/async").await,
            c.http_code(primary, "/quorum").await,
            c.http_code(primary, "/read-only-quorum").await,
        );
        (codes == (200, 200, 200, 503, 503, 200)).then_some(())
    })
    .await;
    assert_eq!(
        quorum_standbys(&c, primary).await,
        Some(vec![r1.clone(), r2.clone()])
    );
    // `pgpilotctl list` and Patroni's own patronictl read the same roles.
    let ours: Vec<Value> =
        serde_json::from_str(&support::ctl::ok(&c, &["list", "-f", "json"])).expect("list json");
    assert_eq!(list_roles(&ours), roles_expected(&pname, &r1, &r2));
    assert_eq!(
        list_roles(&patronictl_list(&c)),
        roles_expected(&pname, &r1, &r2)
    );

    // A writer gets commits acknowledged; kill -9 of the primary.
    let stop = Arc::new(AtomicBool::new(false));
    let ports = c.nodes.iter().map(|n| n.pg_port).collect();
    let writer = spawn_writer(ports, stop.clone());
    wait_for_writes(&c, primary, 20, Duration::from_secs(30)).await;
    c.kill_node(primary).await;
    let new_primary = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await.filter(|&p| p != primary)
    })
    .await;
    assert!(replicas.contains(&new_primary));
    wait_for_writes(&c, new_primary, 20, Duration::from_secs(60)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = writer.await.expect("writer");
    let have = values_on(&c, new_primary).await;
    let missing: Vec<i64> = acked
        .iter()
        .filter(|(v, _)| !have.contains(v))
        .map(|(v, _)| *v)
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing on the new primary: {missing:?}",
        missing.len()
    );
    assert!(
        acked.iter().any(|(_, i)| *i == primary),
        "the old primary acknowledged no write"
    );

    // The new primary takes the key over (the old primary a voter for a
    // cycle), then drops the dead one: the other replica is its only
    // voter, quorum 0, ANY 1 of it.
    let other = *replicas
        .iter()
        .find(|&&i| i != new_primary)
        .expect("two replicas");
    let (nname, oname) = (
        c.nodes[new_primary].name.clone(),
        c.nodes[other].name.clone(),
    );
    eventually(
        APPLY,
        "the new primary's key: quorum 0 over the other",
        || async { key_is(&c, &nname, 0, &[&oname]).await },
    )
    .await;
    eventually(APPLY, "synchronous_standby_names ANY 1 (other)", || async {
        (show(&c, new_primary, "synchronous_standby_names").await? == format!("ANY 1 ({oname})"))
            .then_some(())
    })
    .await;
    assert_eq!(c.http_code(other, "/quorum").await, 200);

    // Back to `synchronous_mode: true` on the running cluster: the key is
    // emptied first, then FIRST 1 of the other replica, which enters the
    // key once PostgreSQL reports it `sync`.
    let resp = reqwest::Client::new()
        .patch(c.nodes[new_primary].api("/config"))
        .json(&json!({"synchronous_mode": true}))
        .send()
        .await
        .expect("PATCH /config");
    assert_eq!(resp.status().as_u16(), 200);
    eventually(APPLY, "the other replica as sync standby", || async {
        key_is(&c, &nname, 0, &[&oname]).await?;
        let states = sync_states(&c, new_primary).await?;
        (show(&c, new_primary, "synchronous_standby_names").await? == oname
            && states == vec![(oname.clone(), "sync".into())])
        .then_some(())
    })
    .await;
    eventually(APPLY, "/sync 200 on it", || async {
        (c.http_code(other, "/sync").await == 200).then_some(())
    })
    .await;
}

/// docs/replication-modes.md §5: the primary and one replica killed
/// together. With `ANY 1` an acknowledged commit may be only on the dead
/// replica: the one left has no vote but its own, below the quorum of 1,
/// and stays a replica; once the other is back one of the two gathers the
/// votes and leads, with the acknowledged row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_promotion_without_the_votes() {
    let mut c = TestCluster::with_dcs(3, Timing::default(), &[("synchronous_mode", "quorum")]);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let replicas: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
    let (r1, r2) = (
        c.nodes[replicas[0]].name.clone(),
        c.nodes[replicas[1]].name.clone(),
    );
    let pname = c.nodes[primary].name.clone();
    eventually(
        APPLY,
        "the sync key: quorum 1 over both replicas",
        || async { key_is(&c, &pname, 1, &[&r1, &r2]).await },
    )
    .await;
    c.sql(primary)
        .await
        .expect("connect to the primary")
        .execute("INSERT INTO t(v) VALUES (1)", &[])
        .await
        .expect("insert acknowledged");

    let (gone, left) = (replicas[1], replicas[0]);
    c.kill_node(primary).await;
    c.kill_node(gone).await;
    c.during_cycles(
        &[left],
        15,
        Duration::from_secs(90),
        "the replica without the votes stays one",
        || async {
            assert_ne!(
                c.http_code(left, "/primary").await,
                200,
                "a replica without the votes was promoted"
            );
        },
    )
    .await;
    let log = c.nodes[left].log();
    assert!(
        log.contains("not racing: quorum commit needs 1 votes"),
        "no refusal to race in the log:\n{log}"
    );

    c.start(gone);
    let new_primary = eventually(BOOT, "a replica with the votes leads", || async {
        c.primary().await.filter(|&p| p != primary)
    })
    .await;
    let have = values_on(&c, new_primary).await;
    assert!(
        have.contains(&1),
        "the acknowledged row is on the new primary"
    );
}

/// docs/replication-modes.md §5: a switchover without a candidate under
/// write load goes to a replica with the votes, loses no acknowledged
/// write, and the old primary, back as a replica, is a voter again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_load_keeps_every_acknowledged_write() {
    let mut c = TestCluster::with_dcs(3, Timing::default(), &[("synchronous_mode", "quorum")]);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let replicas: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
    let (r1, r2) = (
        c.nodes[replicas[0]].name.clone(),
        c.nodes[replicas[1]].name.clone(),
    );
    let pname = c.nodes[primary].name.clone();
    eventually(
        APPLY,
        "the sync key: quorum 1 over both replicas",
        || async { key_is(&c, &pname, 1, &[&r1, &r2]).await },
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let ports = c.nodes.iter().map(|n| n.pg_port).collect();
    let writer = spawn_writer(ports, stop.clone());
    wait_for_writes(&c, primary, 20, Duration::from_secs(30)).await;
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("client")
        .post(c.nodes[primary].api("/switchover"))
        .json(&json!({ "leader": pname }))
        .send()
        .await
        .expect("POST /switchover");
    let code = resp.status().as_u16();
    assert_eq!(code, 200, "{}", resp.text().await.unwrap_or_default());
    let new_primary = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await.filter(|&p| p != primary)
    })
    .await;
    assert!(replicas.contains(&new_primary));
    wait_for_writes(&c, new_primary, 20, Duration::from_secs(60)).await;
    stop.store(true, Ordering::SeqCst);
    let acked = writer.await.expect("writer");
    let have = values_on(&c, new_primary).await;
    let missing: Vec<i64> = acked
        .iter()
        .filter(|(v, _)| !have.contains(v))
        .map(|(v, _)| *v)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing: {missing:?}"
    );

    // The old primary streams again and is one of the two voters.
    let nname = c.nodes[new_primary].name.clone();
    let mut others: Vec<String> = (0..3)
        .filter(|&i| i != new_primary)
        .map(|i| c.nodes[i].name.clone())
        .collect();
    others.sort();
    eventually(
        BOOT,
        "quorum 1 over the old primary and the other",
        || async { key_is(&c, &nname, 1, &[&others[0], &others[1]]).await },
    )
    .await;
}

/// Whether an insert on node `i` is acknowledged within 3 s (measured by
/// the client: `statement_timeout` does not cover the wait at commit).
async fn commits(c: &TestCluster, i: usize) -> bool {
    static NEXT: AtomicI64 = AtomicI64::new(1_000_000);
    let v = NEXT.fetch_add(1, Ordering::SeqCst);
    let insert = async {
        let client = c.sql(i).await.ok()?;
        client
            .execute("INSERT INTO t(v) VALUES ($1)", &[&v])
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), insert).await,
        Ok(Some(_))
    )
}

/// docs/replication-modes.md §5, quorum and strict: a dead voter leaves
/// the list and the key (the other one stays, commits go on); with both
/// gone the list keeps the last voter and commits wait, until it is back.
/// Then, on the same cluster, the fault sequence of docs/replication-modes.md §7
/// (`support::sync_faults`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_strict_drops_a_dead_voter_then_blocks_commits() {
    let opts = ClusterOptions {
        extra_dcs: vec![
            ("synchronous_mode".to_owned(), "quorum".to_owned()),
            ("synchronous_mode_strict".to_owned(), "true".to_owned()),
        ],
        dcs_proxies: true,
        ..ClusterOptions::default()
    };
    let mut c = TestCluster::with_options(3, Timing::default(), opts);
    c.start_all();
    let primary = c.wait_healthy(BOOT).await;
    c.create_table_t(primary).await;
    let replicas: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
    let (r1, r2) = (
        c.nodes[replicas[0]].name.clone(),
        c.nodes[replicas[1]].name.clone(),
    );
    let pname = c.nodes[primary].name.clone();
    eventually(
        APPLY,
        "the sync key: quorum 1 over both replicas",
        || async { key_is(&c, &pname, 1, &[&r1, &r2]).await },
    )
    .await;

    c.kill_node(replicas[1]).await;
    eventually(
        APPLY,
        "the dead voter dropped: quorum 0 over the other",
        || async {
            key_is(&c, &pname, 0, &[&r1]).await?;
            (show(&c, primary, "synchronous_standby_names").await? == format!("ANY 1 ({r1})"))
                .then_some(())
        },
    )
    .await;
    assert!(commits(&c, primary).await, "commits with one voter");

    c.kill_node(replicas[0]).await;
    eventually(APPLY, "commits wait without a standby", || async {
        (!commits(&c, primary).await).then_some(())
    })
    .await;
    assert_eq!(
        show(&c, primary, "synchronous_standby_names").await,
        Some(format!("ANY 1 ({r1})")),
        "strict mode must not drop the list"
    );
    assert_eq!(c.primary().await, Some(primary));

    c.start(replicas[0]);
    eventually(BOOT, "commits go on once the voter is back", || async {
        commits(&c, primary).await.then_some(())
    })
    .await;

    c.start(replicas[1]);
    support::sync_faults::run(&mut c, SyncMode::QuorumStrict).await;
}
