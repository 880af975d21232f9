//! The etcd v2 backend's watch (docs/dcs.md, "etcd v2 (`Etcd2Dcs`)"): long polls of the
//! prefix with `wait=true&recursive=true&waitIndex=`, each abandoned after a
//! probe period and sent again from the same index, so that no change is
//! missed between two polls (etcd keeps the last 1000 events).

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::WatchEvent;
use super::etcd::classify_rel_key;
use super::etcd2::Inner;
use super::etcd2_http::{EVENT_INDEX_CLEARED, Method, Reply};

/// How long one long poll waits for an event before the watch checks that
/// etcd still answers: `2 × retry_timeout`, at least 2 s (as the v3 watch's
/// probe period).
pub(super) fn poll_period(retry_timeout: Duration) -> Duration {
    (retry_timeout * 2).max(Duration::from_secs(2))
}

/// The pause before a broken watch is made again.
fn backoff(retry_timeout: Duration) -> Duration {
    (retry_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

pub(super) fn watch(inner: Arc<Inner>) -> BoxStream<'static, WatchEvent> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        tokio::select! {
            () = run(&inner, &tx) => {}
            () = tx.closed() => {}
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (ev, rx))
    }))
}

/// The event a change of the absolute key `key` is.
fn classify(prefix: &str, key: &str) -> WatchEvent {
    match key.strip_prefix(prefix).and_then(|k| k.strip_prefix('/')) {
        Some(rel) => classify_rel_key(rel),
        None => WatchEvent::Other,
    }
}

/// Watch until the receiver is gone (the caller's `select!` ends it).
async fn run(inner: &Inner, tx: &mpsc::Sender<WatchEvent>) {
    loop {
        let rt = inner.retry_timeout();
        if let Err(reason) = watch_once(inner, tx).await {
            if tx.send(WatchEvent::Lost(reason)).await.is_err() {
                return;
            }
            tokio::time::sleep(backoff(rt)).await;
        }
    }
}

/// Learn where to start from, then poll from there until something
/// breaks. `Ok`: etcd no longer holds the events since our index (start
/// again at once); `Err`: the watch is lost.
async fn watch_once(inner: &Inner, tx: &mpsc::Sender<WatchEvent>) -> Result<(), String> {
    let rt = inner.retry_timeout();
    let start = inner
        .watch_http
        .request(
            Method::Get,
            &inner.prefix_path(&[]),
            None,
            Instant::now() + rt,
            rt,
        )
        .await
        .map_err(|e| e.to_string())?;
    let index = match start {
        Reply::Ok(_, index) => index,
        Reply::Refused(e) => e.index,
    }
    .ok_or("etcd gave no index to watch from")?;
    // From here every change after `index` reaches the view: a read
    // answered at `index` or later may be kept (etcd_view). Closed again
    // whichever way this function ends, the task's abort included.
    inner.view().watch_opened(std::time::Instant::now());
    let _open = WatchOpen(inner);
    // Readers read again: anything before `index` is in what they read.
    tx.send(WatchEvent::Other)
        .await
        .map_err(|e| e.to_string())?;
    let mut wait_index = index + 1;
    loop {
        let rt = inner.retry_timeout();
        let deadline = Instant::now() + poll_period(rt);
        let wait = wait_index.to_string();
        let path = inner.prefix_path(&[
            ("wait", "true"),
            ("recursive", "true"),
            ("waitIndex", &wait),
        ]);
        match inner
            .watch_http
            .request(Method::Get, &path, None, deadline, rt)
            .await
        {
            Ok(Reply::Ok(answer, _)) => {
                inner.view().watch_heard(std::time::Instant::now());
                let Some(node) = answer.node.as_ref() else {
                    continue;
                };
                wait_index = node.modified_index.max(wait_index - 1) + 1;
                // Renewals too: they move the key's modifiedIndex.
                inner.watched_change(&answer);
                if super::etcd2::is_renewal(&answer) {
                    continue;
                }
                let ev = classify(&inner.prefix, &node.key);
                tx.send(ev).await.map_err(|e| e.to_string())?;
            }
            Ok(Reply::Refused(e)) if e.code == EVENT_INDEX_CLEARED => return Ok(()),
            Ok(Reply::Refused(e)) => return Err(format!("etcd refused the watch: {}", e.message)),
            Err(e) if Instant::now() >= deadline => {
                // No event within the period: etcd must still answer a
                // plain request within retry_timeout, or the watch is lost
                // (a frozen member keeps a long poll open forever).
                let probe = inner
                    .watch_http
                    .request(Method::Get, "/version", None, Instant::now() + rt, rt)
                    .await;
                if let Err(p) = probe {
                    return Err(format!("no event ({e}), and etcd does not answer: {p}"));
                }
                // etcd answers, and no event came since `wait_index`: the
                // view is as current as a read would be.
                inner.view().watch_heard(std::time::Instant::now());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// An open watch, as the view counts them (`watch_opened`); closed when
/// dropped.
struct WatchOpen<'a>(&'a Inner);

impl Drop for WatchOpen<'_> {
    fn drop(&mut self) {
        self.0.view().watch_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_events() {
        let p = "/service/b";
        assert_eq!(classify(p, "/service/b/leader"), WatchEvent::Leader);
        assert_eq!(classify(p, "/service/b/config"), WatchEvent::Config);
        assert_eq!(classify(p, "/service/b/optime/leader"), WatchEvent::Status);
        assert_eq!(classify(p, "/service/b/members/a"), WatchEvent::Other);
        assert_eq!(classify(p, "/service/b"), WatchEvent::Other);
    }

    #[test]
    fn periods() {
        assert_eq!(
            poll_period(Duration::from_millis(500)),
            Duration::from_secs(2)
        );
        assert_eq!(
            poll_period(Duration::from_secs(10)),
            Duration::from_secs(20)
        );
        assert_eq!(backoff(Duration::from_secs(10)), Duration::from_secs(2));
        assert_eq!(
            backoff(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }
}
