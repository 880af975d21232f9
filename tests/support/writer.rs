//! A client that keeps writing while nodes fail, and what it proves.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::cluster::{TestCluster, sql_at};

/// Inserts `v = 1, 2, ...` into `t(v)` every 50 ms, into whichever node
/// accepts writes (trying the last one that did first), and records every
/// acknowledged value with the index of the node that acknowledged it.
pub fn spawn_writer(
    ports: Vec<u16>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(i64, usize)>> {
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut clients: Vec<Option<tokio_postgres::Client>> = ports.iter().map(|_| None).collect();
        let mut last = 0;
        let mut v = 0i64;
        while !stop.load(Ordering::SeqCst) {
            v += 1;
            for k in 0..ports.len() {
                let i = (last + k) % ports.len();
                if clients[i].as_ref().is_none_or(|c| c.is_closed()) {
                    clients[i] = sql_at(ports[i]).await.ok();
                }
                let Some(client) = &clients[i] else { continue };
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&v];
                let insert = client.execute("INSERT INTO t(v) VALUES ($1)", &params);
                match tokio::time::timeout(Duration::from_secs(2), insert).await {
                    Ok(Ok(_)) => {
                        acked.push((v, i));
                        last = i;
                        break;
                    }
                    Ok(Err(_)) => {}
                    Err(_) => clients[i] = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        acked
    })
}

/// Every value in `t` on node `i`.
pub async fn values_on(c: &TestCluster, i: usize) -> BTreeSet<i64> {
    let client = c.sql(i).await.expect("connect");
    client
        .query("SELECT v FROM t", &[])
        .await
        .expect("select")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Wait until node `i` (the primary) holds `n` more rows in `t` than at the
/// call: the writer is getting writes acknowledged there.
pub async fn wait_for_writes(c: &TestCluster, i: usize, n: i64, within: Duration) {
    let count = || async {
        let client = c.sql(i).await.ok()?;
        let row = client.query_one("SELECT count(*) FROM t", &[]).await.ok()?;
        Some(row.get::<_, i64>(0))
    };
    let start = super::eventually(within, "a row count of t", count).await;
    super::eventually(
        within,
        &format!("{n} more writes acknowledged by node {i}"),
        || async { count().await.filter(|&now| now >= start + n) },
    )
    .await;
}

/// One write the [`TimedWriter`] got acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub value: i64,
    /// Index of the node that acknowledged it.
    pub node: usize,
    pub at: std::time::Instant,
}

/// [`spawn_writer`]'s loop, its acknowledgements readable while it runs
/// and timed, for a test that runs several faults under one writer.
pub struct TimedWriter {
    acks: Arc<std::sync::Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl TimedWriter {
    pub fn start(c: &TestCluster) -> TimedWriter {
        let ports: Vec<u16> = c.nodes.iter().map(|n| n.pg_port).collect();
        let acks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acks.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut clients: Vec<Option<tokio_postgres::Client>> =
                ports.iter().map(|_| None).collect();
            let mut last = 0;
            let mut v = 0i64;
            while !s.load(Ordering::SeqCst) {
                v += 1;
                for k in 0..ports.len() {
                    let i = (last + k) % ports.len();
                    if clients[i].as_ref().is_none_or(|c| c.is_closed()) {
                        clients[i] = sql_at(ports[i]).await.ok();
                    }
                    let Some(client) = &clients[i] else { continue };
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&v];
                    let insert = client.execute("INSERT INTO t(v) VALUES ($1)", &params);
                    match tokio::time::timeout(Duration::from_secs(2), insert).await {
                        Ok(Ok(_)) => {
                            a.lock().expect("acks").push(Ack {
                                value: v,
                                node: i,
                                at: std::time::Instant::now(),
                            });
                            last = i;
                            break;
                        }
                        Ok(Err(_)) => {}
                        Err(_) => clients[i] = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        TimedWriter { acks, stop, task }
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().expect("acks").clone()
    }

    /// The first write node `i` acknowledged after `t`.
    pub fn first_of_after(&self, i: usize, t: std::time::Instant) -> Option<Ack> {
        self.acks().into_iter().find(|a| a.node == i && a.at > t)
    }

    /// The longest time without an acknowledged write between `from` and
    /// the last acknowledgement.
    pub fn longest_gap_since(&self, from: std::time::Instant) -> Duration {
        let mut prev = from;
        let mut gap = Duration::ZERO;
        for a in self.acks().iter().filter(|a| a.at >= from) {
            gap = gap.max(a.at.saturating_duration_since(prev));
            prev = a.at;
        }
        gap
    }

    /// Every acknowledged write so far is on node `i`: panics naming the
    /// missing ones. Returns how many were checked.
    pub async fn assert_none_missing_on(&self, c: &TestCluster, i: usize, what: &str) -> usize {
        let acks = self.acks();
        let have = values_on(c, i).await;
        let missing: Vec<i64> = acks
            .iter()
            .filter(|a| !have.contains(&a.value))
            .map(|a| a.value)
            .collect();
        assert!(
            missing.is_empty(),
            "{what}: {} acknowledged writes missing on node {i}: {missing:?}",
            missing.len()
        );
        acks.len()
    }

    pub async fn finish(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.acks.lock().expect("acks").clone()
    }
}
