//! Permanent logical slots on replicas (docs/ha.md §13, "Logical slots on
//! replicas"), against real etcd and PostgreSQL 15: the replicas that may
//! become primary copy the leader's logical slot and advance it to what its
//! consumer confirmed; after a kill -9 of the primary the consumer goes on
//! on the new primary with no change lost or repeated. A member cascading
//! from a replica holds one too; a `nofailover` member holds none.

mod support;

use std::time::Duration;

use pgpilot::events;
use support::cluster::TestCluster;
use support::cluster::Timing;
use support::eventually;

const BOOT: Duration = Duration::from_secs(120);
const SLOT: &str = "logical1";

/// Give the cluster `wal_level: logical` from its bootstrap (a logical
/// slot needs it, and it is cluster-wide, so it goes into `bootstrap.dcs`).
fn bootstrap_wal_level_logical(c: &TestCluster) {
    for n in &c.nodes {
        let text = std::fs::read_to_string(&n.config_path).expect("read config");
        let at = "      use_pg_rewind: true\n";
        assert!(text.contains(at), "bootstrap.dcs.postgresql in the config");
        let text = text.replacen(
            at,
            &format!("{at}      parameters:\n        wal_level: logical\n"),
            1,
        );
        std::fs::write(&n.config_path, text).expect("write config");
    }
}

/// `confirmed_flush_lsn` of the logical slot on node `i`, as a byte
/// position (`None`: no such slot, or unreachable).
async fn confirmed(c: &TestCluster, i: usize) -> Option<i64> {
    c.sql(i)
        .await
        .ok()?
        .query_opt(
            "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots
              WHERE slot_name = $1 AND slot_type = 'logical'",
            &[&SLOT],
        )
        .await
        .ok()??
        .get(0)
}

async fn setting(c: &TestCluster, i: usize, name: &str) -> Option<String> {
    c.sql(i)
        .await
        .ok()?
        .query_one("SELECT current_setting($1)", &[&name])
        .await
        .ok()
        .map(|r| r.get(0))
}

/// The values inserted into `t` that the slot's consumer reads (and
/// confirms) on node `i`, in order.
async fn consume(c: &TestCluster, i: usize) -> Vec<i64> {
    let rows = c
        .sql(i)
        .await
        .expect("connect")
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL)",
            &[&SLOT],
        )
        .await
        .expect("pg_logical_slot_get_changes");
    rows.iter()
        .filter_map(|r| {
            let data: String = r.get(0);
            let v = data.split_once("table public.t: INSERT: v[bigint]:")?.1;
            v.trim().parse().ok()
        })
        .collect()
}

async fn insert(c: &TestCluster, i: usize, values: std::ops::RangeInclusive<i64>) {
    let client = c.sql(i).await.expect("connect");
    for v in values {
        client
            .execute("INSERT INTO t(v) VALUES ($1)", &[&v])
            .await
            .expect("insert");
    }
}

async fn has_row(c: &TestCluster, i: usize, v: i64) -> bool {
    let Ok(client) = c.sql(i).await else {
        return false;
    };
    matches!(
        client
            .query_opt("SELECT 1 FROM t WHERE v = $1", &[&v])
            .await,
        Ok(Some(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_consumer_continues_on_the_new_primary_without_loss_or_repeat() {
    let slots = format!("{{{SLOT}: {{type: logical, database: postgres, plugin: test_decoding}}}}");
    let mut c = TestCluster::with_dcs(2, Timing::default(), &[("slots", slots.as_str())]);
    // node2 cascades from node1: it may become primary and streams from
    // the primary through node1, so it holds the slot too.
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("tags", "{replicatefrom: node1}");
    c.add_node("node2", &extra);
    let mut extra = std::collections::BTreeMap::new();
    extra.insert("tags", "{nofailover: true}");
    let nofailover = c.add_node("node3", &extra);
    bootstrap_wal_level_logical(&c);
    c.start(0);
    assert_eq!(c.wait_healthy(BOOT).await, 0);
    for i in 1..4 {
        c.start(i);
    }
    let p = c.wait_healthy(BOOT).await;
    assert_eq!(p, 0);
    let reps = [1, 2];

    eventually(
        Duration::from_secs(30),
        "the slot on the primary",
        || async { confirmed(&c, p).await },
    )
    .await;
    // The replicas hold a copy; hot_standby_feedback is forced on where a
    // copy lives, not on the nofailover member.
    for &i in &reps {
        eventually(
            Duration::from_secs(60),
            "the slot copied to a replica",
            || async { confirmed(&c, i).await },
        )
        .await;
        eventually(
            Duration::from_secs(30),
            "hot_standby_feedback on a replica with a logical slot",
            || async { (setting(&c, i, "hot_standby_feedback").await? == "on").then_some(()) },
        )
        .await;
        assert!(
            c.nodes[i].logged(events::SLOT_COPIED),
            "node{i} logged no copy"
        );
    }

    // The consumer reads and confirms rows 1..=6; rows 7..=11 come after
    // its confirmed point.
    //
    // A copy decodes from the slot's restart_lsn, and the replicas have
    // WAL only from their clone on, later than where the slot was created.
    // The restart_lsn moves at the running-transactions records a consumer
    // decodes past (a checkpoint logs one), one step per call, as a
    // consumer's progress moves it in a running cluster. A copy taken
    // before cannot be advanced to a later confirmed point (its WAL is not
    // there) and is copied anew.
    c.create_table_t(p).await;
    insert(&c, p, 1..=5).await;
    let primary = c.sql(p).await.expect("connect");
    primary
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint");
    let redo: i64 = primary
        .query_one(
            "SELECT (redo_lsn - '0/0'::pg_lsn)::bigint FROM pg_control_checkpoint()",
            &[],
        )
        .await
        .expect("redo_lsn")
        .get(0);
    assert_eq!(consume(&c, p).await, (1..=5).collect::<Vec<_>>());
    assert!(consume(&c, p).await.is_empty());
    let restart: i64 = primary
        .query_one(
            "SELECT (restart_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots
              WHERE slot_name = $1",
            &[&SLOT],
        )
        .await
        .expect("restart_lsn")
        .get(0);
    assert!(
        restart >= redo,
        "restart_lsn {restart} before the checkpoint {redo}"
    );
    insert(&c, p, 6..=6).await;
    assert_eq!(consume(&c, p).await, [6]);
    let point = confirmed(&c, p).await.expect("slot on the primary");
    insert(&c, p, 7..=11).await;
    for &i in &reps {
        eventually(
            Duration::from_secs(30),
            "the replica advanced its copy to the confirmed point",
            || async { (confirmed(&c, i).await? >= point).then_some(()) },
        )
        .await;
        eventually(Duration::from_secs(30), "row 11 replicated", || async {
            has_row(&c, i, 11).await.then_some(())
        })
        .await;
    }
    // Never past it: the changes after it are still to be read.
    for &i in &reps {
        let at = confirmed(&c, i).await.expect("copy on the replica");
        assert!(
            at <= confirmed(&c, p).await.expect("slot on the primary"),
            "node{i} advanced past the consumer"
        );
    }
    // A copy restarts PostgreSQL: the first one, and one more for a copy
    // taken while the leader's slot started before the clone; never one
    // per cycle.
    for &i in &reps {
        let copies = c.nodes[i].event_count(events::SLOT_COPY);
        assert!((1..=3).contains(&copies), "node{i} copied {copies} times");
    }
    assert!(
        confirmed(&c, nofailover).await.is_none(),
        "the nofailover member holds the logical slot"
    );
    assert!(!c.nodes[nofailover].logged(events::SLOT_COPY));
    assert_eq!(
        setting(&c, nofailover, "hot_standby_feedback")
            .await
            .as_deref(),
        Some("off")
    );

    c.kill_node(p).await;
    let np = eventually(Duration::from_secs(60), "a new primary", || async {
        c.primary().await
    })
    .await;
    assert!(reps.contains(&np), "node{np} was promoted");
    // The consumer goes on from where it confirmed: exactly 7..=11.
    // GET /primary may answer just before the promotion finished.
    eventually(Duration::from_secs(30), "the promotion done", || async {
        let row = c
            .sql(np)
            .await
            .ok()?
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .ok()?;
        (!row.get::<_, bool>(0)).then_some(())
    })
    .await;
    assert!(
        confirmed(&c, np).await.is_some(),
        "the slot on the new primary"
    );
    assert_eq!(consume(&c, np).await, (7..=11).collect::<Vec<_>>());
}
