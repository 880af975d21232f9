//! One long-lived connection to the local server for the supervisor's
//! status questions and slot sync, so that neither a status question (the
//! HA loop's, every REST health check's) nor an idle minute opens a
//! PostgreSQL session: each would fork a backend. Patroni keeps one
//! connection per purpose too.
//!
//! Freshness: an asker of [`LocalSession::snapshot`] gets the result of a
//! query that *started after it asked*, never an older one, so a role, a
//! state or a WAL position is as fresh as Patroni's query per request.
//! Askers that arrive while a query runs share the next one: one query
//! answers any number of concurrent health checks.
//!
//! The connection is opened when first needed and reopened after it broke
//! (a restart of PostgreSQL ends it); a query that fails on a closed
//! connection is retried once on a new one, so a restart the supervisor
//! itself made never reads as "not answering".

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_postgres::{Client, Statement};

use super::error::{PgError, PgResult};
use super::query::{self, ConnParams, PgSnapshot, SnapshotKind};
use crate::sync;

/// Why a snapshot is missing: PostgreSQL did not take a connection (still
/// starting, or gone), or took it and did not answer the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    Connect(String),
    Query(String),
}

type Published = (u64, Arc<Result<PgSnapshot, SnapshotError>>);

/// A cheap handle (clone it freely); the connection and its query task
/// end with the last handle.
#[derive(Clone)]
pub struct LocalSession {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where to connect and how long to wait; updated by each asker (the
    /// configuration can change), applied at the next connect.
    target: Mutex<(ConnParams, Duration)>,
    live: tokio::sync::Mutex<Option<Live>>,
    /// Snapshot queries started so far.
    started: AtomicU64,
    /// The query task is running.
    spawned: AtomicBool,
    wake: Arc<Notify>,
    results: watch::Sender<Published>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The query task holds a weak reference: let it see it is alone.
        self.wake.notify_one();
    }
}

#[derive(Clone)]
struct Live {
    params: ConnParams,
    client: Arc<Client>,
    full: Statement,
    light: Statement,
    prepared: Prepared,
}

/// The connection with the statements the supervisor repeats every few
/// cycles, prepared once per connection: an unprepared statement costs a
/// Parse round trip (and a Close) each time, a prepared one only its
/// Bind/Execute. What an idle node does per minute is mostly these round
/// trips (docs/dcs.md, "Idle cost").
#[derive(Clone)]
pub struct Prepared {
    pub client: Arc<Client>,
    /// [`query::list_slots`].
    pub slots: Statement,
    /// [`query::restart_settings`].
    pub settings: Statement,
}

impl LocalSession {
    pub fn new(params: ConnParams, timeout: Duration) -> LocalSession {
        let (results, _) =
            watch::channel((0, Arc::new(Err(SnapshotError::Connect(String::new())))));
        LocalSession {
            inner: Arc::new(Inner {
                target: Mutex::new((params, timeout)),
                live: tokio::sync::Mutex::new(None),
                started: AtomicU64::new(0),
                spawned: AtomicBool::new(false),
                wake: Arc::new(Notify::new()),
                results,
            }),
        }
    }

    /// Connect to `params` from now on (the current connection is replaced
    /// at its next use if they differ).
    pub fn retarget(&self, params: ConnParams, timeout: Duration) {
        *sync::lock(&self.inner.target) = (params, timeout);
    }

    /// A full state snapshot ([`SnapshotKind::Full`], the HA loop's), from
    /// its own query.
    pub async fn snapshot_full(&self) -> Result<PgSnapshot, SnapshotError> {
        self.inner.query(SnapshotKind::Full).await
    }

    /// A light state snapshot ([`SnapshotKind::Light`]) from a query started
    /// after this call, shared with concurrent askers (see the module
    /// documentation).
    pub async fn snapshot(&self) -> Result<PgSnapshot, SnapshotError> {
        if !self.inner.spawned.swap(true, Ordering::SeqCst) {
            tokio::spawn(query_task(
                Arc::downgrade(&self.inner),
                self.inner.wake.clone(),
            ));
        }
        let mut rx = self.inner.results.subscribe();
        let asked_after = self.inner.started.load(Ordering::SeqCst);
        self.inner.wake.notify_one();
        match rx.wait_for(|(n, _)| *n > asked_after).await {
            Ok(r) => r.1.as_ref().clone(),
            Err(_) => Err(SnapshotError::Query("status session closed".into())),
        }
    }

    /// The connection, opened if needed, for other statements (slot sync,
    /// pending-restart settings). Statements on it are pipelined with the
    /// snapshot queries.
    pub async fn client(&self) -> PgResult<Arc<Client>> {
        Ok(self.inner.live().await?.client)
    }

    /// The connection, opened if needed, with its prepared statements.
    pub async fn prepared(&self) -> PgResult<Prepared> {
        Ok(self.inner.live().await?.prepared)
    }

    /// Drop the connection (a statement on it failed or hung): the next
    /// use opens a new one.
    pub async fn reset(&self) {
        *self.inner.live.lock().await = None;
    }
}

impl Inner {
    async fn live(&self) -> PgResult<Live> {
        let (params, timeout) = sync::lock(&self.target).clone();
        let mut live = self.live.lock().await;
        if let Some(l) = live.as_ref()
            && !l.client.is_closed()
            && l.params == params
        {
            return Ok(l.clone());
        }
        *live = None;
        let client = query::connect(&params, timeout).await?;
        // Concurrent requests on one connection are pipelined: one round
        // trip for the four.
        let (full, light, slots, settings) = tokio::try_join!(
            query::prepare_snapshot(&client, SnapshotKind::Full),
            query::prepare_snapshot(&client, SnapshotKind::Light),
            query::prepare_list_slots(&client),
            query::prepare_restart_settings(&client),
        )?;
        tracing::debug!(event = crate::events::STATUS_SESSION_OPENED, host = %params.host, port = params.port);
        let client = Arc::new(client);
        let l = Live {
            params,
            client: client.clone(),
            full,
            light,
            prepared: Prepared {
                client,
                slots,
                settings,
            },
        };
        *live = Some(l.clone());
        Ok(l)
    }

    async fn query_once(&self, kind: SnapshotKind) -> Result<PgSnapshot, (SnapshotError, bool)> {
        let timeout = sync::lock(&self.target).1;
        let l = self
            .live()
            .await
            .map_err(|e| (SnapshotError::Connect(e.to_string()), false))?;
        let stmt = match kind {
            SnapshotKind::Full => &l.full,
            SnapshotKind::Light => &l.light,
        };
        match tokio::time::timeout(timeout, query::snapshot_prepared(&l.client, stmt)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => {
                let closed = l.client.is_closed();
                self.forget(&l).await;
                Err((SnapshotError::Query(e.to_string()), closed))
            }
            Err(_) => {
                // A query that hangs leaves the connection unusable.
                self.forget(&l).await;
                let e = PgError::Timeout {
                    what: "read server state".into(),
                    after: timeout,
                };
                Err((SnapshotError::Query(e.to_string()), false))
            }
        }
    }

    /// Drop `l` unless it was replaced meanwhile.
    async fn forget(&self, l: &Live) {
        let mut live = self.live.lock().await;
        if live
            .as_ref()
            .is_some_and(|cur| Arc::ptr_eq(&cur.client, &l.client))
        {
            *live = None;
        }
    }

    async fn query(&self, kind: SnapshotKind) -> Result<PgSnapshot, SnapshotError> {
        match self.query_once(kind).await {
            Ok(s) => Ok(s),
            // The connection had ended (PostgreSQL restarted): once more
            // on a new one.
            Err((_, true)) => self.query_once(kind).await.map_err(|(e, _)| e),
            Err((e, false)) => Err(e),
        }
    }
}

/// Runs one snapshot query per wake-up; wake-ups while a query runs fold
/// into one more query after it.
async fn query_task(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let n = inner.started.fetch_add(1, Ordering::SeqCst) + 1;
        let r = inner.query(SnapshotKind::Light).await;
        inner.results.send_replace((n, Arc::new(r)));
    }
}
