//! Consul backend (docs/dcs.md, "Consul (`ConsulDcs`)"): Patroni's layout
//! in Consul's KV store under `<namespace>/<scope>/` (no leading slash, as
//! Patroni writes it), `leader` and `members/<name>` held by this node's
//! session (`behavior: delete`, TTL `ttl / 2` as Patroni asks), every other
//! key plain.
//!
//! Invariants:
//! * The session is made lazily by the first call that needs one, never by
//!   `keep_alive`. Consul keeps a session at least its TTL after the server
//!   handled a renewal and invalidates it by twice the TTL: every
//!   [`Expiry`] counts `earliest` from the send time of a create or renewal
//!   the agent answered plus the TTL, `latest` from its answer plus twice
//!   the TTL.
//! * A `Version` is the key's `ModifyIndex` (Consul's raft index: never
//!   reused). Compares are done by Consul: `cas=<ModifyIndex>` on a put,
//!   `check-index` / `check-session` / `check-not-exists` in a transaction.
//! * The leader key is touched only in a transaction that checks its
//!   session is one of this process's (current, retired at a `ttl` change,
//!   inherited).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use reqwest::Method;
use serde_json::{Value, json};

pub use super::consul_http::{ConsulSettings, ConsulSetupError};
use super::consul_http::{
    KvEntry, Reply, escaped_path, kv_path, says_invalid_session, txn_op, unexpected,
};
pub use super::consul_service::ServiceSettings;
use super::consul_service::{ServiceAction, action, service_id};
use super::keys;
use super::version::{Expiry, SessionId, Version};
use super::{
    Cluster, Dcs, DcsError, DcsResult, Leader, LeaderHold, MemberData, Status, WatchEvent,
};

/// Patroni's session lock-delay (`lock_delay=0.001`): a key released by an
/// invalidated session may be taken again at once. The old holder's fence
/// runs on its own clock, at the `earliest` of its expiry, before Consul
/// can invalidate the session.
const LOCK_DELAY: &str = "0.001s";

/// This node's session: its id, TTL, and the last renewal Consul answered.
#[derive(Clone)]
struct Session {
    id: String,
    ttl: Duration,
    sent: Instant,
    answered: Instant,
}

impl Session {
    fn expiry(&self) -> Expiry {
        expiry_of(self.sent, self.answered, self.ttl)
    }
}

/// Consul keeps a session at least `ttl` after it handled the renewal (not
/// before `sent`), and invalidates it by `2 × ttl` after (docs/dcs.md,
/// "Versions, sessions and expiry").
fn expiry_of(sent: Instant, answered: Instant, ttl: Duration) -> Expiry {
    Expiry {
        earliest: sent + ttl,
        latest: answered + ttl * 2,
    }
}

/// The session TTL asked for `ttl`: half of it, as Patroni asks (Consul
/// may keep a session up to twice its TTL).
fn session_ttl(ttl: Duration) -> Duration {
    ttl / 2
}

/// Consul's form of a TTL: seconds, fractions kept (`"7.5s"`).
fn ttl_text(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[derive(Default)]
struct State {
    current: Option<Session>,
    /// Sessions dropped at a `ttl` change: the leader key may still be on
    /// one until `update_leader` moves it. Nobody renews them, so Consul
    /// drops them within twice their TTL.
    retired: Vec<String>,
    /// Sessions a previous daemon on this data directory held.
    inherited: Vec<String>,
    /// A leader acquisition was given up on (no answer within
    /// `retry_timeout`): it may still take effect, so the next one first
    /// deletes a leader key on the current session.
    abandoned_acquire: bool,
}

struct Timing {
    ttl: Duration,
    retry_timeout: Duration,
}

struct Inner {
    settings: ConsulSettings,
    /// `<namespace>/<scope>` without the leading slash.
    base: String,
    name: String,
    /// Patroni's session name: `<scope>-<name>`.
    session_name: String,
    scope: String,
    /// The service registration last sent and answered (`register_service`):
    /// sent again only when it changes, or after a failure.
    registered: Mutex<Option<Value>>,
    timing: Mutex<Timing>,
    state: Mutex<State>,
    /// Serialises session creation: one session per node, never two.
    creating: tokio::sync::Mutex<()>,
}

/// The Consul DCS of one node.
pub struct ConsulDcs {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConsulDcs {
    /// Contacts nothing: the session is made by the first call needing it,
    /// so the daemon starts (and retries) while Consul is down. `prefix`
    /// is the cluster prefix (`/<namespace>/<scope>`).
    pub fn new(
        settings: ConsulSettings,
        prefix: &str,
        name: String,
        ttl: Duration,
        retry_timeout: Duration,
    ) -> ConsulDcs {
        let base = prefix.trim_start_matches('/').to_owned();
        let scope = base.rsplit('/').next().unwrap_or("").to_owned();
        ConsulDcs {
            inner: Arc::new(Inner {
                settings,
                base,
                session_name: format!("{scope}-{name}"),
                scope,
                registered: Mutex::new(None),
                name,
                timing: Mutex::new(Timing { ttl, retry_timeout }),
                state: Mutex::new(State::default()),
                creating: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl Inner {
    fn retry_timeout(&self) -> Duration {
        lock(&self.timing).retry_timeout
    }

    fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.base)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> DcsResult<Reply> {
        self.settings
            .send(method, path, query, body, self.retry_timeout())
            .await
    }

    fn current(&self) -> Option<Session> {
        lock(&self.state).current.clone()
    }

    /// Forget the current session if it is still `id` (Consul said it is
    /// gone: its keys went with it).
    fn drop_session(&self, id: &str) {
        let mut st = lock(&self.state);
        if st.current.as_ref().is_some_and(|s| s.id == id) {
            st.current = None;
        }
    }

    fn is_mine(&self, id: &str) -> bool {
        let st = lock(&self.state);
        st.current.as_ref().is_some_and(|s| s.id == id)
            || st.retired.iter().any(|s| s == id)
            || st.inherited.iter().any(|s| s == id)
    }

    /// The session, made if there is none. `true` with it: made by this
    /// call (its expiry is fresh).
    async fn session(&self) -> DcsResult<(Session, bool)> {
        if let Some(s) = self.current() {
            return Ok((s, false));
        }
        let _one = self.creating.lock().await;
        if let Some(s) = self.current() {
            return Ok((s, false));
        }
        let ttl = session_ttl(lock(&self.timing).ttl);
        let body = json!({
            "Name": self.session_name,
            "Checks": self.settings.checks,
            "LockDelay": LOCK_DELAY,
            "Behavior": "delete",
            "TTL": ttl_text(ttl),
        });
        let sent = Instant::now();
        let r = self
            .send(
                Method::PUT,
                "/v1/session/create",
                &[],
                Some(body.to_string().into_bytes()),
            )
            .await?;
        if r.status != 200 {
            let e = unexpected("session create", &r);
            return Err(match e {
                DcsError::Other(m) if m.contains("Invalid Session TTL") => {
                    DcsError::Other(format!(
                        "{m} (pgpilot asks for ttl / 2 = {}, as Patroni does: raise ttl, or lower the agent's session_ttl_min)",
                        ttl_text(ttl)
                    ))
                }
                e => e,
            });
        }
        let id = r
            .json::<Value>("session create")?
            .get("ID")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| DcsError::Other("consul session create: no ID".into()))?;
        let s = Session {
            id,
            ttl,
            sent,
            answered: Instant::now(),
        };
        lock(&self.state).current = Some(s.clone());
        Ok((s, true))
    }

    /// Renew `s` once. `None`: Consul no longer has it (dropped here).
    async fn renew(&self, s: &Session) -> DcsResult<Option<Session>> {
        let sent = Instant::now();
        let r = self
            .send(
                Method::PUT,
                &format!("/v1/session/renew/{}", s.id),
                &[],
                None,
            )
            .await?;
        match r.status {
            200 => {
                let renewed = Session {
                    sent,
                    answered: Instant::now(),
                    ..s.clone()
                };
                let mut st = lock(&self.state);
                if st.current.as_ref().is_some_and(|c| c.id == s.id) {
                    st.current = Some(renewed.clone());
                }
                Ok(Some(renewed))
            }
            404 => {
                self.drop_session(&s.id);
                Ok(None)
            }
            _ => Err(unexpected("session renew", &r)),
        }
    }

    /// A live session, renewed by this call (or made by it): what the
    /// leader's calls count their expiry from.
    async fn renewed_session(&self) -> DcsResult<Session> {
        let (s, made) = self.session().await?;
        if made {
            return Ok(s);
        }
        match self.renew(&s).await? {
            Some(s) => Ok(s),
            None => Ok(self.session().await?.0),
        }
    }

    /// `PUT /v1/txn`: `Ok(true)` applied, `Ok(false)` a check or lock
    /// failed (409); nothing was written then.
    async fn txn(&self, ops: Vec<Value>) -> DcsResult<(bool, Reply)> {
        let r = self
            .send(
                Method::PUT,
                "/v1/txn",
                &[],
                Some(Value::Array(ops).to_string().into_bytes()),
            )
            .await?;
        match r.status {
            200 => Ok((true, r)),
            409 => Ok((false, r)),
            _ => Err(unexpected("txn", &r)),
        }
    }

    /// `PUT` of a KV key with `query`; Consul's `true`/`false`.
    async fn put(&self, rel: &str, value: &str, query: &[(&str, String)]) -> DcsResult<bool> {
        let r = self
            .send(
                Method::PUT,
                &kv_path(&self.key(rel)),
                query,
                Some(value.as_bytes().to_vec()),
            )
            .await?;
        if r.status != 200 {
            return Err(unexpected(rel, &r));
        }
        r.json::<bool>(rel)
    }

    async fn delete(&self, rel: &str, query: &[(&str, String)]) -> DcsResult<()> {
        let r = self
            .send(Method::DELETE, &kv_path(&self.key(rel)), query, None)
            .await?;
        if r.status != 200 {
            return Err(unexpected(rel, &r));
        }
        Ok(())
    }

    /// One key's entry, `None` if absent.
    async fn get(&self, rel: &str) -> DcsResult<Option<KvEntry>> {
        let r = self
            .send(Method::GET, &kv_path(&self.key(rel)), &[], None)
            .await?;
        match r.status {
            200 => Ok(r.json::<Vec<KvEntry>>(rel)?.into_iter().next()),
            404 => Ok(None),
            _ => Err(unexpected(rel, &r)),
        }
    }

    /// Every key under `<base>/`, in one read.
    async fn read_cluster(&self, fresh: bool) -> DcsResult<Cluster> {
        let mut query = vec![("recurse", String::new())];
        let mode = if fresh {
            crate::config::consul::Consistency::Consistent
        } else {
            self.settings.consistency
        };
        if let Some(flag) = mode.flag() {
            query.push((flag, String::new()));
        }
        let r = self
            .send(Method::GET, &kv_path(&self.key("")), &query, None)
            .await?;
        let entries = match r.status {
            200 => r.json::<Vec<KvEntry>>("load_cluster")?,
            404 => return Ok(Cluster::default()),
            _ => return Err(unexpected("load_cluster", &r)),
        };
        Ok(Cluster::from_rows(self.rows(entries)))
    }

    /// Entries as `Cluster::from_rows` takes them; values that are not
    /// UTF-8 are logged and read as absent.
    fn rows(&self, entries: Vec<KvEntry>) -> Vec<(String, String, Version, Option<SessionId>)> {
        let prefix = format!("{}/", self.base);
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            let Some(rel) = e.key.strip_prefix(&prefix) else {
                continue;
            };
            match e.bytes().map(String::from_utf8) {
                Some(Ok(value)) => rows.push((
                    rel.to_owned(),
                    value,
                    Version::from_int(i64::try_from(e.modify_index).unwrap_or(i64::MAX)),
                    e.session.as_deref().map(SessionId::from_text),
                )),
                _ => tracing::warn!(
                    event = crate::events::DCS_VALUE_UNREADABLE,
                    key = %e.key,
                    "Consul value is not UTF-8; ignored"
                ),
            }
        }
        rows
    }

    async fn touch_member(&self, data: &MemberData) -> DcsResult<()> {
        let (mut s, made) = self.session().await?;
        // Renewed here when its last renewal is half its TTL old: a node
        // that is not the leader renews nowhere else.
        if !made && s.sent + s.ttl / 2 <= Instant::now() {
            s = match self.renew(&s).await? {
                Some(s) => s,
                None => self.session().await?.0,
            };
        }
        let rel = keys::member(&self.name);
        let value = data.to_json();
        match self.get(&rel).await? {
            // Mine and unchanged: nothing to write.
            Some(e)
                if e.session.as_deref() == Some(s.id.as_str())
                    && e.bytes().as_deref() == Some(value.as_bytes()) =>
            {
                self.update_service(data, s.ttl).await;
                return Ok(());
            }
            // Mine, another value: rewritten below.
            Some(e) if e.session.as_deref() == Some(s.id.as_str()) => {}
            // On another session (a retired one of mine, a predecessor's,
            // a namesake's): re-created on mine, as Patroni does.
            Some(_) => self.delete(&rel, &[]).await?,
            None => {}
        }
        let r = self
            .send(
                Method::PUT,
                &kv_path(&self.key(&rel)),
                &[("acquire", s.id.clone())],
                Some(value.into_bytes()),
            )
            .await?;
        match r.status {
            // `false`: another session took it meanwhile; left alone.
            200 => {
                self.update_service(data, s.ttl).await;
                Ok(())
            }
            500 if says_invalid_session(&r) => {
                self.drop_session(&s.id);
                Err(DcsError::Unreachable(format!(
                    "consul: session {} gone while writing the member key",
                    s.id
                )))
            }
            _ => Err(unexpected("member", &r)),
        }
    }

    /// Register, re-tag or deregister this member's service
    /// (`register_service`), as Patroni does after its member write. A
    /// failure is logged and does not fail the member write: the next call
    /// sends the registration again.
    async fn update_service(&self, data: &MemberData, session_ttl: Duration) {
        let Some(settings) = &self.settings.service else {
            return;
        };
        let id = service_id(&self.scope, &self.name);
        let (path, body) = match action(settings, &self.scope, &self.name, data, session_ttl) {
            ServiceAction::None => return,
            ServiceAction::Register(body) => {
                if lock(&self.registered).as_ref() == Some(&body) {
                    return;
                }
                ("/v1/agent/service/register".to_owned(), Some(body))
            }
            ServiceAction::Deregister => {
                if lock(&self.registered).is_none() {
                    return;
                }
                (escaped_path("/v1/agent/service/deregister", &id), None)
            }
        };
        let sent = body.as_ref().map(|b| b.to_string().into_bytes());
        match self.send(Method::PUT, &path, &[], sent).await {
            Ok(r) if r.status == 200 || (body.is_none() && r.status == 404) => {
                *lock(&self.registered) = body;
            }
            Ok(r) => {
                *lock(&self.registered) = None;
                tracing::warn!(event = crate::events::DCS_SERVICE_REGISTRATION_FAILED, service = %id, error = %unexpected("service", &r), "Consul service registration failed");
            }
            Err(e) => {
                *lock(&self.registered) = None;
                tracing::warn!(event = crate::events::DCS_SERVICE_REGISTRATION_FAILED, service = %id, error = %e, "Consul service registration failed");
            }
        }
    }

    async fn attempt_to_acquire_leader(&self) -> DcsResult<LeaderHold> {
        let mut s = self.renewed_session().await?;
        let key = self.key(keys::LEADER);
        if lock(&self.state).abandoned_acquire {
            self.txn(vec![
                txn_op("check-session", &key, None, None, Some(&s.id)),
                txn_op("delete", &key, None, None, None),
            ])
            .await?;
            lock(&self.state).abandoned_acquire = false;
        }
        for _ in 0..2 {
            // Create-only: a key that exists (anyone's, even mine) loses.
            let (ok, r) = self
                .txn(vec![
                    txn_op("check-not-exists", &key, None, None, None),
                    txn_op("lock", &key, Some(&self.name), None, Some(&s.id)),
                ])
                .await?;
            if ok {
                return Ok(LeaderHold::Held { expiry: s.expiry() });
            }
            if !says_invalid_session(&r) {
                return Ok(LeaderHold::Lost);
            }
            // The session went between the renewal and the lock.
            self.drop_session(&s.id);
            s = self.session().await?.0;
        }
        Ok(LeaderHold::Lost)
    }

    async fn update_leader(&self, leader: &Leader) -> DcsResult<LeaderHold> {
        let Some(want) = leader
            .version
            .as_int()
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v > 0)
        else {
            return Ok(LeaderHold::Lost);
        };
        let Some(held_by) = leader.session.as_ref().and_then(|s| s.as_text()) else {
            return Ok(LeaderHold::Lost);
        };
        if !self.is_mine(held_by) {
            return Ok(LeaderHold::Lost);
        }
        let key = self.key(keys::LEADER);
        let current = self.current();
        if current.as_ref().is_some_and(|c| c.id == held_by) {
            let Some(c) = current else {
                return Ok(LeaderHold::Lost);
            };
            // The renewal first: the hold counts from its send time.
            let Some(s) = self.renew(&c).await? else {
                return Ok(LeaderHold::Lost);
            };
            let (ok, _) = self
                .txn(vec![
                    txn_op("check-index", &key, None, Some(want), None),
                    txn_op("check-session", &key, None, None, Some(&s.id)),
                ])
                .await?;
            return Ok(if ok {
                LeaderHold::Held { expiry: s.expiry() }
            } else {
                LeaderHold::Lost
            });
        }
        // On a session of mine I retired or inherited: moved onto the
        // current one, at the version read and on that session, in one
        // transaction.
        let s = self.renewed_session().await?;
        let (ok, _) = self
            .txn(vec![
                txn_op("check-index", &key, None, Some(want), None),
                txn_op("check-session", &key, None, None, Some(held_by)),
                txn_op("unlock", &key, Some(&self.name), None, Some(held_by)),
                txn_op("lock", &key, Some(&self.name), None, Some(&s.id)),
            ])
            .await?;
        if !ok {
            return Ok(LeaderHold::Lost);
        }
        lock(&self.state).retired.retain(|r| r != held_by);
        Ok(LeaderHold::Held { expiry: s.expiry() })
    }

    async fn keep_alive(&self) -> DcsResult<Option<Expiry>> {
        let Some(s) = self.current() else {
            return Ok(None);
        };
        Ok(self.renew(&s).await?.map(|s| s.expiry()))
    }

    async fn delete_leader(&self) -> DcsResult<bool> {
        let mine: Vec<String> = {
            let st = lock(&self.state);
            st.current
                .iter()
                .map(|s| s.id.clone())
                .chain(st.retired.iter().cloned())
                .chain(st.inherited.iter().cloned())
                .collect()
        };
        let key = self.key(keys::LEADER);
        for id in mine {
            let (ok, _) = self
                .txn(vec![
                    txn_op("check-session", &key, None, None, Some(&id)),
                    txn_op("delete", &key, None, None, None),
                ])
                .await?;
            if ok {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `key` at `version` only; `false`: the compare lost (gone, changed,
    /// a version not of this store).
    async fn compare_and_set(&self, rel: &str, value: &str, version: &Version) -> DcsResult<bool> {
        match version
            .as_int()
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v > 0)
        {
            Some(v) => self.put(rel, value, &[("cas", v.to_string())]).await,
            None => Ok(false),
        }
    }

    async fn release_session(&self) -> DcsResult<()> {
        // A clean stop deregisters the member's service.
        if self.settings.service.is_some() && lock(&self.registered).take().is_some() {
            let path = escaped_path(
                "/v1/agent/service/deregister",
                &service_id(&self.scope, &self.name),
            );
            let r = self.send(Method::PUT, &path, &[], None).await?;
            if r.status != 200 && r.status != 404 {
                return Err(unexpected("service deregister", &r));
            }
        }
        let ids: Vec<String> = {
            let mut st = lock(&self.state);
            st.current
                .take()
                .map(|s| s.id)
                .into_iter()
                .chain(std::mem::take(&mut st.retired))
                .collect()
        };
        for id in ids {
            let r = self
                .send(Method::PUT, &format!("/v1/session/destroy/{id}"), &[], None)
                .await?;
            if r.status != 200 {
                return Err(unexpected("session destroy", &r));
            }
        }
        Ok(())
    }
}

/// Run `f` within `retry_timeout` (`super::bounded`).
fn bounded<'a, T: Send + 'a>(
    inner: &Arc<Inner>,
    what: &'static str,
    f: impl std::future::Future<Output = DcsResult<T>> + Send + 'a,
) -> BoxFuture<'a, DcsResult<T>> {
    super::bounded(inner.retry_timeout(), "consul", what, f)
}

/// Which [`WatchEvent`] a change of `rel` (relative to the prefix) is.
fn event_of(rel: &str) -> WatchEvent {
    match rel {
        keys::LEADER => WatchEvent::Leader,
        keys::CONFIG => WatchEvent::Config,
        keys::STATUS | keys::OPTIME_LEADER => WatchEvent::Status,
        keys::FAILOVER => WatchEvent::Failover,
        _ => WatchEvent::Other,
    }
}

/// The keys whose `ModifyIndex` differs between two reads (added, changed
/// or gone), relative to the prefix.
fn changed_keys(
    old: &std::collections::BTreeMap<String, u64>,
    new: &std::collections::BTreeMap<String, u64>,
) -> Vec<String> {
    let mut out: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    out
}

/// How long a blocking read of the watch waits: `2 × retry_timeout`, at
/// least 2 s. A frozen agent is noticed when the read gets no answer within
/// that, Consul's jitter (wait / 16) and `retry_timeout`.
fn watch_wait(retry: Duration) -> Duration {
    (retry * 2).max(Duration::from_secs(2))
}

/// The watch: blocking recursive reads of the prefix (`index`/`wait`), each
/// answer compared with the previous one key by key.
async fn run_watch(
    settings: ConsulSettings,
    base: String,
    retry: Duration,
    tx: tokio::sync::mpsc::Sender<WatchEvent>,
) {
    let prefix = format!("{base}/");
    let path = kv_path(&prefix);
    let wait = watch_wait(retry);
    let mut index: u64 = 0;
    let mut known: Option<std::collections::BTreeMap<String, u64>> = None;
    loop {
        let query = [
            ("recurse", String::new()),
            ("index", index.to_string()),
            ("wait", format!("{}ms", wait.as_millis())),
        ];
        let limit = wait + wait / 16 + retry;
        let answer = tokio::select! {
            r = settings.send(Method::GET, &path, &query, None, limit) => r,
            () = tx.closed() => return,
        };
        let entries = match answer {
            Ok(r) if r.status == 200 || r.status == 404 => {
                let new_index = r.index.unwrap_or(0);
                // docs "Blocking Queries": an index that went backwards
                // starts over.
                index = if new_index < index { 0 } else { new_index };
                if r.status == 404 {
                    Ok(Vec::new())
                } else {
                    r.json::<Vec<KvEntry>>("watch")
                }
            }
            Ok(r) => Err(unexpected("watch", &r)),
            Err(e) => Err(e),
        };
        let entries = match entries {
            Ok(e) => e,
            Err(e) => {
                known = None;
                index = 0;
                if tx.send(WatchEvent::Lost(e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(
                    (retry / 4).clamp(Duration::from_millis(100), Duration::from_secs(2)),
                )
                .await;
                continue;
            }
        };
        let now: std::collections::BTreeMap<String, u64> = entries
            .into_iter()
            .filter_map(|e| Some((e.key.strip_prefix(&prefix)?.to_owned(), e.modify_index)))
            .collect();
        let events: Vec<WatchEvent> = match &known {
            // (Re)established: what changed while away is not reported.
            None => vec![WatchEvent::Other],
            Some(old) => changed_keys(old, &now)
                .iter()
                .map(|k| event_of(k))
                .collect(),
        };
        known = Some(now);
        for ev in events {
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }
}

impl Dcs for ConsulDcs {
    fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        let changed = {
            let mut t = lock(&self.inner.timing);
            let changed = t.ttl != ttl;
            t.ttl = ttl;
            t.retry_timeout = retry_timeout;
            changed
        };
        if changed {
            // A session's TTL is fixed at its creation: the next call
            // makes one of the new length.
            let mut st = lock(&self.inner.state);
            if let Some(s) = st.current.take() {
                st.retired.push(s.id);
            }
        }
    }

    fn load_cluster(&self) -> BoxFuture<'_, DcsResult<Cluster>> {
        bounded(&self.inner, "load_cluster", self.inner.read_cluster(false))
    }

    fn load_cluster_fresh(&self) -> BoxFuture<'_, DcsResult<Cluster>> {
        bounded(&self.inner, "load_cluster", self.inner.read_cluster(true))
    }

    fn touch_member(&self, data: &MemberData) -> BoxFuture<'_, DcsResult<()>> {
        let data = data.clone();
        let inner = &self.inner;
        bounded(inner, "touch_member", async move {
            inner.touch_member(&data).await
        })
    }

    fn attempt_to_acquire_leader(&self) -> BoxFuture<'_, DcsResult<LeaderHold>> {
        let inner = &self.inner;
        let attempt = bounded(inner, "leader", inner.attempt_to_acquire_leader());
        async move {
            let r = attempt.await;
            if matches!(r, Err(DcsError::Unreachable(_))) {
                lock(&inner.state).abandoned_acquire = true;
            }
            r
        }
        .boxed()
    }

    fn update_leader(&self, leader: &Leader) -> BoxFuture<'_, DcsResult<LeaderHold>> {
        let leader = leader.clone();
        let inner = &self.inner;
        bounded(inner, "leader", async move {
            inner.update_leader(&leader).await
        })
    }

    fn keep_alive(&self) -> BoxFuture<'_, DcsResult<Option<Expiry>>> {
        bounded(&self.inner, "keep_alive", self.inner.keep_alive())
    }

    fn session(&self) -> Option<SessionId> {
        self.inner.current().map(|s| SessionId::from_text(&s.id))
    }

    fn holds_session(&self, id: &SessionId) -> bool {
        id.as_text().is_some_and(|s| self.inner.is_mine(s))
    }

    fn inherit_session(&self, id: &SessionId) {
        if let Some(s) = id.as_text() {
            let mut st = lock(&self.inner.state);
            if !st.inherited.iter().any(|i| i == s) {
                st.inherited.push(s.to_owned());
            }
        }
    }

    fn delete_leader(&self) -> BoxFuture<'_, DcsResult<bool>> {
        bounded(&self.inner, "leader", self.inner.delete_leader())
    }

    fn write_status(&self, status: &Status) -> BoxFuture<'_, DcsResult<()>> {
        let v = status.to_json();
        let inner = &self.inner;
        bounded(inner, "status", async move {
            inner.put(keys::STATUS, &v, &[]).await.map(|_| ())
        })
    }

    fn initialize(&self, create: bool, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        let v = value.to_owned();
        let inner = &self.inner;
        bounded(inner, "initialize", async move {
            if create {
                inner
                    .put(keys::INITIALIZE, &v, &[("cas", "0".into())])
                    .await
            } else {
                inner.put(keys::INITIALIZE, &v, &[]).await.map(|_| true)
            }
        })
    }

    fn cancel_initialization(&self) -> BoxFuture<'_, DcsResult<()>> {
        let inner = &self.inner;
        bounded(inner, "initialize", async move {
            inner.delete(keys::INITIALIZE, &[]).await
        })
    }

    fn set_config_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        self.set_versioned(keys::CONFIG, value, version)
    }

    fn set_failover_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        self.set_versioned(keys::FAILOVER, value, version)
    }

    fn set_history_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        self.set_versioned(keys::HISTORY, value, None)
    }

    fn set_failsafe_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        self.set_versioned(keys::FAILSAFE, value, None)
    }

    fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        let v = value.to_owned();
        let version = version.cloned();
        let inner = &self.inner;
        bounded(inner, "sync", async move {
            match version {
                Some(ver) => inner.compare_and_set(keys::SYNC, &v, &ver).await,
                None => inner.put(keys::SYNC, &v, &[("cas", "0".into())]).await,
            }
        })
    }

    fn delete_sync_state(&self, version: &Version) -> BoxFuture<'_, DcsResult<bool>> {
        let version = version.clone();
        let inner = &self.inner;
        bounded(inner, "sync", async move {
            let Some(v) = version
                .as_int()
                .and_then(|v| u64::try_from(v).ok())
                .filter(|v| *v > 0)
            else {
                return Ok(false);
            };
            // Consul's `DELETE ?cas=` answers true for a key already gone;
            // a transaction's check-index does not.
            let key = inner.key(keys::SYNC);
            let (ok, _) = inner
                .txn(vec![
                    txn_op("check-index", &key, None, Some(v), None),
                    txn_op("delete", &key, None, None, None),
                ])
                .await?;
            Ok(ok)
        })
    }

    fn delete_cluster(&self) -> BoxFuture<'_, DcsResult<()>> {
        let inner = &self.inner;
        bounded(inner, "delete_cluster", async move {
            inner.delete("", &[("recurse", String::new())]).await
        })
    }

    fn release_session(&self) -> BoxFuture<'_, DcsResult<()>> {
        bounded(&self.inner, "release_session", self.inner.release_session())
    }

    fn watch(&self) -> BoxStream<'static, WatchEvent> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(run_watch(
            self.inner.settings.clone(),
            self.inner.base.clone(),
            self.inner.retry_timeout(),
            tx,
        ));
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|ev| (ev, rx))
        }))
    }
}

impl ConsulDcs {
    fn set_versioned(
        &self,
        key: &'static str,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        let v = value.to_owned();
        let version = version.cloned();
        let inner = &self.inner;
        bounded(inner, key, async move {
            match version {
                Some(ver) => inner.compare_and_set(key, &v, &ver).await,
                None => inner.put(key, &v, &[]).await.map(|_| true),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ttl_is_half_of_ttl_as_patroni_asks() {
        assert_eq!(
            session_ttl(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(ttl_text(Duration::from_secs(15)), "15s");
        assert_eq!(ttl_text(Duration::from_millis(7500)), "7.5s");
    }

    #[test]
    fn expiry_counts_ttl_from_the_send_and_twice_from_the_answer() {
        let sent = Instant::now();
        let answered = sent + Duration::from_millis(200);
        let e = expiry_of(sent, answered, Duration::from_secs(10));
        assert_eq!(e.earliest, sent + Duration::from_secs(10));
        assert_eq!(e.latest, answered + Duration::from_secs(20));
    }

    #[test]
    fn events_by_key() {
        assert_eq!(event_of("leader"), WatchEvent::Leader);
        assert_eq!(event_of("config"), WatchEvent::Config);
        assert_eq!(event_of("status"), WatchEvent::Status);
        assert_eq!(event_of("optime/leader"), WatchEvent::Status);
        assert_eq!(event_of("failover"), WatchEvent::Failover);
        assert_eq!(event_of("members/a"), WatchEvent::Other);
    }

    #[test]
    fn changed_keys_cover_added_changed_and_gone() {
        let m = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(k, i)| ((*k).to_owned(), *i))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let old = m(&[("leader", 5), ("config", 3), ("members/a", 7)]);
        let new = m(&[("leader", 9), ("config", 3), ("status", 10)]);
        let mut got = changed_keys(&old, &new);
        got.sort();
        assert_eq!(got, ["leader", "members/a", "status"]);
    }

    #[test]
    fn watch_waits_twice_retry_timeout_at_least_two_seconds() {
        assert_eq!(watch_wait(Duration::from_secs(10)), Duration::from_secs(20));
        assert_eq!(
            watch_wait(Duration::from_millis(500)),
            Duration::from_secs(2)
        );
    }
}
