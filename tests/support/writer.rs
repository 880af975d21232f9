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
