//! The etcd v2 backend (docs/dcs.md, "etcd v2 (`Etcd2Dcs`)"): Patroni's
//! `etcd` section, its keys and values under `/v2/keys`, key for key.
//!
//! v2 has no leases: every key that must die with its node carries its own
//! TTL, and the node renews each one by writing it. What stands for a session
//! is the leader key's `createdIndex`: it is fixed when the key is created
//! (create-only, by this process), kept by every renewal, and never handed
//! out again by etcd. So "the key is under a session of this process" is
//! "its `createdIndex` is one this process created (or inherited from the
//! daemon before it on this data directory)", and no process can renew,
//! take or delete another's key on the name alone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use super::etcd_conn::EtcdSettings;
use super::etcd2_http::{
    COMPARE_FAILED, EtcdError, Http, KEY_NOT_FOUND, Method, NODE_EXISTS, Node, Reply, encode_path,
    form,
};
use super::{
    Cluster, Dcs, DcsError, DcsResult, Expiry, Leader, LeaderHold, MemberData, SessionId, Status,
    Version, WatchEvent, keys,
};

/// How much later than its TTL etcd may drop a key: the v2 store expires
/// keys on the etcd leader's SYNC ticks, every 500 ms, through raft.
const EXPIRY_TOLERANCE: Duration = Duration::from_millis(1500);

/// How many of its own leader keys' `createdIndex` a process remembers.
const SESSIONS_KEPT: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Timing {
    ttl: Duration,
    retry_timeout: Duration,
}

impl Timing {
    /// The TTL sent to etcd: whole seconds, rounded up, at least 1.
    fn ttl_secs(&self) -> u64 {
        let s = self.ttl.as_secs() + u64::from(self.ttl.subsec_nanos() > 0);
        s.max(1)
    }

    /// What etcd guarantees for a key whose TTL was set by a request sent
    /// at `sent` and answered at `answered`.
    fn expiry(&self, sent: Instant, answered: Instant) -> Expiry {
        let ttl = Duration::from_secs(self.ttl_secs());
        Expiry {
            earliest: sent + ttl,
            latest: answered + ttl + EXPIRY_TOLERANCE,
        }
    }
}

/// The leader key this process created, as last written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    created: u64,
    modified: u64,
}

/// The member key as this process last wrote it.
#[derive(Debug, Clone)]
struct MemberWritten {
    value: String,
    modified: u64,
    ttl_secs: u64,
}

#[derive(Debug, Default)]
struct State {
    leader: Option<Held>,
    /// `createdIndex` of every leader key this process created, newest last.
    created: VecDeque<u64>,
    /// Sessions (a leader key's `createdIndex`) of the daemon before this one.
    inherited: Vec<u64>,
    member: Option<MemberWritten>,
}

impl State {
    fn ours(&self, created: u64) -> bool {
        self.created.contains(&created) || self.inherited.contains(&created)
    }

    fn created_leader(&mut self, held: Held) {
        self.leader = Some(held);
        if !self.created.contains(&held.created) {
            self.created.push_back(held.created);
            while self.created.len() > SESSIONS_KEPT {
                self.created.pop_front();
            }
        }
    }
}

pub(super) struct Inner {
    http: Http,
    /// The watch's own member rotation (its connections are its own anyway:
    /// one per request).
    pub(super) watch_http: Http,
    pub(super) prefix: String,
    name: String,
    timing: Mutex<Timing>,
    state: Mutex<State>,
}

/// A Patroni-compatible store on etcd's v2 API. Contacts nothing until the
/// first call.
pub struct Etcd2Dcs {
    inner: Arc<Inner>,
}

impl Etcd2Dcs {
    /// Plain `http` endpoints, no credentials.
    pub fn new(
        endpoints: Vec<String>,
        prefix: String,
        member_name: String,
        ttl: Duration,
        retry_timeout: Duration,
    ) -> Etcd2Dcs {
        Etcd2Dcs::with_settings(
            EtcdSettings::plain(endpoints, None),
            prefix,
            member_name,
            ttl,
            retry_timeout,
        )
    }

    /// The endpoints, TLS and credentials of an `etcd` section
    /// ([`EtcdSettings::from_config`], which read the TLS files).
    pub fn with_settings(
        settings: EtcdSettings,
        prefix: String,
        member_name: String,
        ttl: Duration,
        retry_timeout: Duration,
    ) -> Etcd2Dcs {
        Etcd2Dcs {
            inner: Arc::new(Inner {
                http: Http::new(&settings),
                watch_http: Http::new(&settings),
                prefix,
                name: member_name,
                timing: Mutex::new(Timing { ttl, retry_timeout }),
                state: Mutex::new(State::default()),
            }),
        }
    }
}

impl Etcd2Dcs {
    /// The endpoints requests go to now: with `srv`, those its records
    /// gave once asked (for diagnostics and tests).
    pub fn endpoints_in_use(&self) -> Vec<String> {
        self.inner.http.endpoints_in_use()
    }

    /// What etcd refuses us, asked once at start as Patroni's daemon does
    /// (it exits on a failed authentication at start): its certificate or
    /// ours, the user or the password, each named. `None` when it answered,
    /// and when no endpoint answered (the daemon then starts and retries).
    pub async fn refused_at_start(&self) -> Option<String> {
        let rt = self.inner.retry_timeout();
        self.inner
            .http
            .refused(
                &self.inner.prefix_path(&[("quorum", "true")]),
                tokio::time::Instant::now() + rt,
                rt,
            )
            .await
    }
}

fn refused(what: &str, e: &EtcdError) -> DcsError {
    DcsError::Other(format!(
        "{what}: etcd refused: {} ({}){}",
        e.message,
        e.code,
        e.cause
            .as_deref()
            .map(|c| format!(" {c}"))
            .unwrap_or_default()
    ))
}

fn node_of(what: &str, reply: super::etcd2_http::Answer) -> DcsResult<Node> {
    reply
        .node
        .ok_or_else(|| DcsError::Other(format!("{what}: etcd answered without a node")))
}

/// A write that only moved a key's TTL (a renewal: `refresh`, or a
/// compare-and-swap writing the value it found, as Patroni renews its
/// leader key): nothing a reader needs to re-read for.
pub(super) fn is_renewal(a: &super::etcd2_http::Answer) -> bool {
    matches!(a.action.as_str(), "set" | "update" | "compareAndSwap")
        && a.prev_node
            .as_ref()
            .and_then(|p| p.value.as_ref())
            .is_some()
        && a.prev_node.as_ref().and_then(|p| p.value.as_ref())
            == a.node.as_ref().and_then(|n| n.value.as_ref())
}

impl Inner {
    fn timing(&self) -> Timing {
        *crate::sync::lock(&self.timing)
    }

    /// The current `retry_timeout`.
    pub(super) fn retry_timeout(&self) -> Duration {
        self.timing().retry_timeout
    }

    /// `/v2/keys<prefix>` with `query`, for the watch.
    pub(super) fn prefix_path(&self, query: &[(&str, &str)]) -> String {
        self.path("", query)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// `/v2/keys<prefix>/<rel>` (`rel` empty: the prefix itself), encoded,
    /// with `query`.
    fn path(&self, rel: &str, query: &[(&str, &str)]) -> String {
        let key = if rel.is_empty() {
            self.prefix.clone()
        } else {
            keys::path(&self.prefix, rel)
        };
        let mut p = format!("/v2/keys{}", encode_path(&key));
        if !query.is_empty() {
            p.push('?');
            p.push_str(&form(query));
        }
        p
    }

    /// One request by `deadline`.
    async fn req(
        &self,
        method: Method,
        rel: &str,
        query: &[(&str, &str)],
        body: Option<&[(&str, &str)]>,
        deadline: tokio::time::Instant,
    ) -> DcsResult<Reply> {
        let t = self.timing();
        self.http
            .request(
                method,
                &self.path(rel, query),
                body.map(form),
                deadline,
                t.retry_timeout,
            )
            .await
    }

    /// Run one call by `retry_timeout`; every request it makes shares the
    /// deadline.
    async fn bounded<T, F, Fut>(&self, what: &str, op: F) -> DcsResult<T>
    where
        F: FnOnce(tokio::time::Instant) -> Fut,
        Fut: std::future::Future<Output = DcsResult<T>>,
    {
        let rt = self.timing().retry_timeout;
        let deadline = tokio::time::Instant::now() + rt;
        let r = match tokio::time::timeout_at(deadline, op(deadline)).await {
            Ok(r) => r,
            Err(_) => Err(DcsError::Unreachable(format!(
                "{what}: no answer within {rt:?}"
            ))),
        };
        if let Err(e) = &r {
            tracing::debug!(op = what, error = %e, "etcd v2 call failed");
        }
        r
    }

    /// The key `rel` as a linearizable read (through the raft leader)
    /// finds it; `None` when absent.
    async fn get(&self, rel: &str, deadline: tokio::time::Instant) -> DcsResult<Option<Node>> {
        match self
            .req(Method::Get, rel, &[("quorum", "true")], None, deadline)
            .await?
        {
            Reply::Ok(a, _) => Ok(a.node),
            Reply::Refused(e) if e.code == KEY_NOT_FOUND => Ok(None),
            Reply::Refused(e) => Err(refused(rel, &e)),
        }
    }

    /// A write whose condition may fail: `Ok(None)` when etcd refused it
    /// for the condition (a lost compare, a key absent or present).
    async fn put_if(
        &self,
        rel: &str,
        form: &[(&str, &str)],
        deadline: tokio::time::Instant,
    ) -> DcsResult<Option<Node>> {
        match self
            .req(Method::Put, rel, &[], Some(form), deadline)
            .await?
        {
            Reply::Ok(a, _) => node_of(rel, a).map(Some),
            Reply::Refused(e) if matches!(e.code, COMPARE_FAILED | KEY_NOT_FOUND | NODE_EXISTS) => {
                Ok(None)
            }
            Reply::Refused(e) => Err(refused(rel, &e)),
        }
    }

    /// A plain write of `value`.
    async fn put(&self, rel: &str, value: &str, deadline: tokio::time::Instant) -> DcsResult<()> {
        match self
            .req(Method::Put, rel, &[], Some(&[("value", value)]), deadline)
            .await?
        {
            Reply::Ok(..) => Ok(()),
            Reply::Refused(e) => Err(refused(rel, &e)),
        }
    }

    /// A delete, conditional on `query`; `false` when the condition failed
    /// or the key is absent.
    async fn delete_if(
        &self,
        rel: &str,
        query: &[(&str, &str)],
        deadline: tokio::time::Instant,
    ) -> DcsResult<bool> {
        match self.req(Method::Delete, rel, query, None, deadline).await? {
            Reply::Ok(..) => Ok(true),
            Reply::Refused(e) if matches!(e.code, COMPARE_FAILED | KEY_NOT_FOUND) => Ok(false),
            Reply::Refused(e) => Err(refused(rel, &e)),
        }
    }

    /// Create the leader key (create-only) with this process's name.
    async fn acquire(&self, deadline: tokio::time::Instant) -> DcsResult<LeaderHold> {
        let t = self.timing();
        let ttl = t.ttl_secs().to_string();
        let sent = Instant::now();
        let form = [
            ("value", self.name.as_str()),
            ("ttl", ttl.as_str()),
            ("prevExist", "false"),
        ];
        match self.put_if(keys::LEADER, &form, deadline).await? {
            Some(n) => {
                let expiry = t.expiry(sent, Instant::now());
                self.state().created_leader(Held {
                    created: n.created_index,
                    modified: n.modified_index,
                });
                Ok(LeaderHold::Held { expiry })
            }
            None => Ok(LeaderHold::Lost),
        }
    }

    /// Renew the TTL of the leader key created at `created`, expected at
    /// `modified`. A key found moved on but still that key (a renewal of
    /// ours given up on that landed late) is renewed at its new index, once.
    /// `None`: the key is gone or is another key.
    async fn refresh_leader(
        &self,
        created: u64,
        mut modified: u64,
        deadline: tokio::time::Instant,
    ) -> DcsResult<Option<Expiry>> {
        let t = self.timing();
        let ttl = t.ttl_secs().to_string();
        for attempt in 0..2 {
            let sent = Instant::now();
            let index = modified.to_string();
            let form = [
                ("refresh", "true"),
                ("ttl", ttl.as_str()),
                ("prevIndex", index.as_str()),
            ];
            if let Some(n) = self.put_if(keys::LEADER, &form, deadline).await?
                && n.created_index == created
            {
                let expiry = t.expiry(sent, Instant::now());
                self.state().leader = Some(Held {
                    created,
                    modified: n.modified_index,
                });
                return Ok(Some(expiry));
            }
            if attempt == 1 {
                break;
            }
            match self.get(keys::LEADER, deadline).await? {
                Some(n) if n.created_index == created && n.value.as_deref() == Some(&self.name) => {
                    modified = n.modified_index;
                }
                _ => break,
            }
        }
        let mut st = self.state();
        if st.leader.is_some_and(|h| h.created == created) {
            st.leader = None;
        }
        Ok(None)
    }

    async fn update_leader(
        &self,
        leader: &Leader,
        deadline: tokio::time::Instant,
    ) -> DcsResult<LeaderHold> {
        let Some(created) = leader
            .version
            .as_int()
            .and_then(|v| u64::try_from(v).ok())
            .filter(|_| leader.name == self.name)
        else {
            return Ok(LeaderHold::Lost);
        };
        let (known, mine, inherited) = {
            let st = self.state();
            (
                st.leader.filter(|h| h.created == created),
                st.created.contains(&created),
                st.inherited.contains(&created),
            )
        };
        let held = |e: Option<Expiry>| match e {
            Some(expiry) => LeaderHold::Held { expiry },
            None => LeaderHold::Lost,
        };
        if let Some(h) = known {
            return self
                .refresh_leader(created, h.modified, deadline)
                .await
                .map(held);
        }
        if !mine && !inherited {
            return Ok(LeaderHold::Lost);
        }
        let Some(n) = self.get(keys::LEADER, deadline).await? else {
            return Ok(LeaderHold::Lost);
        };
        if n.created_index != created || n.value.as_deref() != Some(&self.name) {
            return Ok(LeaderHold::Lost);
        }
        if mine {
            return self
                .refresh_leader(created, n.modified_index, deadline)
                .await
                .map(held);
        }
        // The previous daemon's key: moved onto a key of this process, by a
        // delete conditional on its index, then a create-only write. Its
        // predecessor's late requests then find another key. Between the
        // two, the key is absent for one round trip.
        let index = n.modified_index.to_string();
        if !self
            .delete_if(keys::LEADER, &[("prevIndex", &index)], deadline)
            .await?
        {
            return Ok(LeaderHold::Lost);
        }
        self.state().inherited.retain(|c| *c != created);
        self.acquire(deadline).await
    }

    /// Delete the leader key if a key of this process: `true` if deleted.
    async fn delete_leader(&self, deadline: tokio::time::Instant) -> DcsResult<bool> {
        let (known, any) = {
            let st = self.state();
            (
                st.leader,
                !st.created.is_empty() || !st.inherited.is_empty(),
            )
        };
        if let Some(h) = known {
            let index = h.modified.to_string();
            if self
                .delete_if(keys::LEADER, &[("prevIndex", &index)], deadline)
                .await?
            {
                self.state().leader = None;
                return Ok(true);
            }
        }
        if !any {
            return Ok(false);
        }
        let Some(n) = self.get(keys::LEADER, deadline).await? else {
            self.state().leader = None;
            return Ok(false);
        };
        if !self.state().ours(n.created_index) {
            return Ok(false);
        }
        let index = n.modified_index.to_string();
        let deleted = self
            .delete_if(keys::LEADER, &[("prevIndex", &index)], deadline)
            .await?;
        if deleted {
            let mut st = self.state();
            st.leader = None;
            st.inherited.retain(|c| *c != n.created_index);
        }
        Ok(deleted)
    }

    /// Renew the member key's TTL at the index we wrote it at; `None` when
    /// it is gone or was rewritten by someone else.
    async fn refresh_member(
        &self,
        m: &MemberWritten,
        deadline: tokio::time::Instant,
    ) -> DcsResult<Option<Expiry>> {
        let t = self.timing();
        let ttl = t.ttl_secs().to_string();
        let index = m.modified.to_string();
        let sent = Instant::now();
        let form = [
            ("refresh", "true"),
            ("ttl", ttl.as_str()),
            ("prevIndex", index.as_str()),
        ];
        let rel = keys::member(&self.name);
        let r = self.put_if(&rel, &form, deadline).await?;
        let mut st = self.state();
        match r {
            Some(n) => {
                let expiry = t.expiry(sent, Instant::now());
                st.member = Some(MemberWritten {
                    modified: n.modified_index,
                    ..m.clone()
                });
                Ok(Some(expiry))
            }
            None => {
                st.member = None;
                Ok(None)
            }
        }
    }

    async fn touch_member(&self, value: String, deadline: tokio::time::Instant) -> DcsResult<()> {
        let t = self.timing();
        let written = self.state().member.clone();
        // Unchanged: a refresh renews the TTL without a watch event. Every
        // call asks etcd (one request), so that it reports what etcd holds.
        if let Some(m) = written.filter(|m| m.value == value && m.ttl_secs == t.ttl_secs())
            && self.refresh_member(&m, deadline).await?.is_some()
        {
            return Ok(());
        }
        let ttl = t.ttl_secs().to_string();
        let rel = keys::member(&self.name);
        match self
            .req(
                Method::Put,
                &rel,
                &[],
                Some(&[("value", value.as_str()), ("ttl", ttl.as_str())]),
                deadline,
            )
            .await?
        {
            Reply::Ok(a, _) => {
                let n = node_of(&rel, a)?;
                self.state().member = Some(MemberWritten {
                    value,
                    modified: n.modified_index,
                    ttl_secs: t.ttl_secs(),
                });
                Ok(())
            }
            Reply::Refused(e) => Err(refused(&rel, &e)),
        }
    }

    async fn keep_alive(&self, deadline: tokio::time::Instant) -> DcsResult<Option<Expiry>> {
        let (leader, member) = {
            let st = self.state();
            (st.leader, st.member.clone())
        };
        let member = match member {
            Some(m) => self.refresh_member(&m, deadline).await?,
            None => None,
        };
        match leader {
            Some(h) => self.refresh_leader(h.created, h.modified, deadline).await,
            None => Ok(member),
        }
    }

    async fn load(&self, deadline: tokio::time::Instant) -> DcsResult<Cluster> {
        let node = match self
            .req(
                Method::Get,
                "",
                &[("recursive", "true"), ("quorum", "true")],
                None,
                deadline,
            )
            .await?
        {
            Reply::Ok(a, _) => a.node.unwrap_or_default(),
            // No key under the prefix yet: etcd's own "Key not found", never
            // an HTTP 404 of something else (etcd2_http::interpret).
            Reply::Refused(e) if e.code == KEY_NOT_FOUND => return Ok(Cluster::default()),
            Reply::Refused(e) => return Err(refused("load_cluster", &e)),
        };
        Ok(self.cluster_from(&node))
    }

    /// The cluster the prefix directory `node` holds.
    fn cluster_from(&self, node: &Node) -> Cluster {
        let base = format!("{}/", self.prefix);
        let rows = node.leaves().into_iter().filter_map(|n| {
            let rel = n.key.strip_prefix(&base)?.to_owned();
            let value = n.value.clone().unwrap_or_default();
            if rel == keys::LEADER {
                let created = i64::try_from(n.created_index).ok()?;
                Some((
                    rel,
                    value,
                    Version::from_int(created),
                    Some(SessionId::from_int(created)),
                ))
            } else {
                let modified = i64::try_from(n.modified_index).ok()?;
                Some((rel, value, Version::from_int(modified), None))
            }
        });
        let cluster = Cluster::from_rows(rows);
        // What the read shows of our own leader key: its current index,
        // for the next renewal's compare.
        if let Some(n) = node
            .leaves()
            .into_iter()
            .find(|n| n.key == keys::path(&self.prefix, keys::LEADER))
        {
            let mut st = self.state();
            if let Some(h) = st.leader.as_mut().filter(|h| h.created == n.created_index) {
                h.modified = h.modified.max(n.modified_index);
            }
        }
        cluster
    }

    /// A write conditional on `version` (`prevIndex`), or without one only
    /// if the key is absent (`absent_only`) or unconditionally.
    async fn cas(
        &self,
        rel: &str,
        value: &str,
        version: Option<&Version>,
        absent_only: bool,
        deadline: tokio::time::Instant,
    ) -> DcsResult<bool> {
        match version {
            Some(v) => {
                // etcd reads `prevIndex=0` as no condition: a version it
                // did not hand out never matches.
                let Some(index) = v.as_int().filter(|i| *i > 0) else {
                    return Ok(false);
                };
                let index = index.to_string();
                let form = [("value", value), ("prevIndex", index.as_str())];
                Ok(self.put_if(rel, &form, deadline).await?.is_some())
            }
            None if absent_only => {
                let form = [("value", value), ("prevExist", "false")];
                Ok(self.put_if(rel, &form, deadline).await?.is_some())
            }
            None => self.put(rel, value, deadline).await.map(|()| true),
        }
    }
}

impl Dcs for Etcd2Dcs {
    fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        // No session to drop: every later write carries the new TTL, and a
        // member key written with the old one is rewritten by the next
        // touch_member.
        *crate::sync::lock(&self.inner.timing) = Timing { ttl, retry_timeout };
    }

    fn load_cluster(&self) -> BoxFuture<'_, DcsResult<Cluster>> {
        let i = &self.inner;
        i.bounded("load_cluster", |dl| i.load(dl)).boxed()
    }

    fn touch_member(&self, data: &MemberData) -> BoxFuture<'_, DcsResult<()>> {
        let i = &self.inner;
        let value = data.to_json();
        i.bounded("touch_member", |dl| i.touch_member(value, dl))
            .boxed()
    }

    fn attempt_to_acquire_leader(&self) -> BoxFuture<'_, DcsResult<LeaderHold>> {
        let i = &self.inner;
        i.bounded("attempt_to_acquire_leader", |dl| i.acquire(dl))
            .boxed()
    }

    fn update_leader(&self, leader: &Leader) -> BoxFuture<'_, DcsResult<LeaderHold>> {
        let i = &self.inner;
        let leader = leader.clone();
        async move {
            i.bounded("update_leader", |dl| i.update_leader(&leader, dl))
                .await
        }
        .boxed()
    }

    fn keep_alive(&self) -> BoxFuture<'_, DcsResult<Option<Expiry>>> {
        let i = &self.inner;
        i.bounded("keep_alive", |dl| i.keep_alive(dl)).boxed()
    }

    fn session(&self) -> Option<SessionId> {
        let st = self.inner.state();
        st.leader
            .map(|h| h.created)
            .or_else(|| st.created.back().copied())
            .and_then(|c| i64::try_from(c).ok())
            .map(SessionId::from_int)
    }

    fn holds_session(&self, id: &SessionId) -> bool {
        id.as_int()
            .and_then(|c| u64::try_from(c).ok())
            .is_some_and(|c| self.inner.state().ours(c))
    }

    fn inherit_session(&self, id: &SessionId) {
        if let Some(c) = id.as_int().and_then(|c| u64::try_from(c).ok()) {
            let mut st = self.inner.state();
            if !st.ours(c) {
                st.inherited.push(c);
            }
        }
    }

    fn delete_leader(&self) -> BoxFuture<'_, DcsResult<bool>> {
        let i = &self.inner;
        i.bounded("delete_leader", |dl| i.delete_leader(dl)).boxed()
    }

    fn write_status(&self, status: &Status) -> BoxFuture<'_, DcsResult<()>> {
        let i = &self.inner;
        let value = status.to_json();
        async move {
            i.bounded("write_status", |dl| i.put(keys::STATUS, &value, dl))
                .await
        }
        .boxed()
    }

    fn initialize(&self, create: bool, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        let i = &self.inner;
        let value = value.to_owned();
        async move {
            i.bounded("initialize", |dl| {
                i.cas(keys::INITIALIZE, &value, None, create, dl)
            })
            .await
        }
        .boxed()
    }

    fn cancel_initialization(&self) -> BoxFuture<'_, DcsResult<()>> {
        let i = &self.inner;
        i.bounded("cancel_initialization", move |dl| async move {
            i.delete_if(keys::INITIALIZE, &[], dl).await.map(|_| ())
        })
        .boxed()
    }

    fn set_config_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        let i = &self.inner;
        let (value, version) = (value.to_owned(), version.cloned());
        async move {
            i.bounded("set_config_value", |dl| {
                i.cas(keys::CONFIG, &value, version.as_ref(), false, dl)
            })
            .await
        }
        .boxed()
    }

    fn set_failover_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        let i = &self.inner;
        let (value, version) = (value.to_owned(), version.cloned());
        async move {
            i.bounded("set_failover_value", |dl| {
                i.cas(keys::FAILOVER, &value, version.as_ref(), false, dl)
            })
            .await
        }
        .boxed()
    }

    fn set_history_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        let i = &self.inner;
        let value = value.to_owned();
        async move {
            i.bounded("set_history_value", |dl| {
                i.cas(keys::HISTORY, &value, None, false, dl)
            })
            .await
        }
        .boxed()
    }

    fn set_failsafe_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        let i = &self.inner;
        let value = value.to_owned();
        async move {
            i.bounded("set_failsafe_value", |dl| {
                i.cas(keys::FAILSAFE, &value, None, false, dl)
            })
            .await
        }
        .boxed()
    }

    fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        let i = &self.inner;
        let (value, version) = (value.to_owned(), version.cloned());
        async move {
            i.bounded("set_sync_state_value", |dl| {
                i.cas(keys::SYNC, &value, version.as_ref(), true, dl)
            })
            .await
        }
        .boxed()
    }

    fn delete_sync_state(&self, version: &Version) -> BoxFuture<'_, DcsResult<bool>> {
        let i = &self.inner;
        let index = version.as_int().filter(|v| *v > 0);
        i.bounded("delete_sync_state", move |dl| async move {
            let Some(index) = index else {
                return Ok(false);
            };
            let index = index.to_string();
            i.delete_if(keys::SYNC, &[("prevIndex", &index)], dl).await
        })
        .boxed()
    }

    fn delete_cluster(&self) -> BoxFuture<'_, DcsResult<()>> {
        let i = &self.inner;
        i.bounded("delete_cluster", move |dl| async move {
            i.delete_if("", &[("recursive", "true")], dl).await?;
            let mut st = i.state();
            st.leader = None;
            st.member = None;
            Ok(())
        })
        .boxed()
    }

    fn release_session(&self) -> BoxFuture<'_, DcsResult<()>> {
        let i = &self.inner;
        i.bounded("release_session", move |dl| async move {
            i.delete_leader(dl).await?;
            let member = i.state().member.take();
            if let Some(m) = member {
                let index = m.modified.to_string();
                i.delete_if(&keys::member(&i.name), &[("prevIndex", &index)], dl)
                    .await?;
            }
            Ok(())
        })
        .boxed()
    }

    fn watch(&self) -> BoxStream<'static, WatchEvent> {
        super::etcd2_watch::watch(self.inner.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::super::etcd2_http::Answer;
    use super::*;

    fn dcs() -> Etcd2Dcs {
        Etcd2Dcs::new(
            vec!["127.0.0.1:1".into()],
            "/service/b".into(),
            "n1".into(),
            Duration::from_millis(2500),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn ttl_is_whole_seconds_rounded_up_and_expiry_counts_from_the_send() {
        let t = Timing {
            ttl: Duration::from_millis(2500),
            retry_timeout: Duration::from_secs(1),
        };
        assert_eq!(t.ttl_secs(), 3);
        let zero = Timing {
            ttl: Duration::ZERO,
            ..t
        };
        assert_eq!(zero.ttl_secs(), 1);
        let sent = Instant::now();
        let answered = sent + Duration::from_millis(200);
        let e = t.expiry(sent, answered);
        assert_eq!(e.earliest, sent + Duration::from_secs(3));
        assert_eq!(
            e.latest,
            answered + Duration::from_secs(3) + EXPIRY_TOLERANCE
        );
    }

    fn answer(json: &str) -> Answer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_ttl_renewals_are_not_reported() {
        // A refresh, and Patroni's renewal (a compare-and-swap of the same
        // value): nothing to re-read.
        assert!(is_renewal(&answer(
            r#"{"action":"compareAndSwap","node":{"key":"/l","value":"a"},"prevNode":{"key":"/l","value":"a"}}"#
        )));
        assert!(is_renewal(&answer(
            r#"{"action":"update","node":{"key":"/l","value":"a"},"prevNode":{"key":"/l","value":"a"}}"#
        )));
        // A new value, a creation, a delete, an expiry: reported.
        assert!(!is_renewal(&answer(
            r#"{"action":"set","node":{"key":"/l","value":"b"},"prevNode":{"key":"/l","value":"a"}}"#
        )));
        assert!(!is_renewal(&answer(
            r#"{"action":"create","node":{"key":"/l","value":"a"}}"#
        )));
        assert!(!is_renewal(&answer(
            r#"{"action":"expire","node":{"key":"/l"},"prevNode":{"key":"/l","value":"a"}}"#
        )));
        assert!(!is_renewal(&answer(
            r#"{"action":"delete","node":{"key":"/l"},"prevNode":{"key":"/l","value":"a"}}"#
        )));
    }

    #[test]
    fn the_leader_keys_version_and_session_are_its_created_index() {
        let d = dcs();
        let a = answer(
            r#"{"action":"get","node":{"key":"/service/b","dir":true,"nodes":[
                {"key":"/service/b/leader","value":"n1","modifiedIndex":40,"createdIndex":31},
                {"key":"/service/b/config","value":"{\"ttl\":30}","modifiedIndex":7,"createdIndex":5},
                {"key":"/service/b/members","dir":true,"nodes":[
                    {"key":"/service/b/members/n1","value":"{\"role\":\"primary\"}","modifiedIndex":39,"createdIndex":2},
                    {"key":"/service/b/members/n2/x","value":"{}","modifiedIndex":3,"createdIndex":3}]}]}}"#,
        );
        let cl = d.inner.cluster_from(a.node.as_ref().unwrap());
        let l = cl.leader.as_ref().unwrap();
        assert_eq!(l.name, "n1");
        assert_eq!(l.version, Version::from_int(31));
        assert_eq!(l.session, Some(SessionId::from_int(31)));
        assert_eq!(cl.config.as_ref().unwrap().version, Version::from_int(7));
        let m = cl.member("n1").unwrap();
        assert_eq!(
            (m.version.clone(), m.session.clone()),
            (Version::from_int(39), None)
        );
        assert_eq!(cl.members.len(), 1, "members/n2/x is not a member");
        // Not created by this process: not its session.
        assert!(!d.holds_session(&SessionId::from_int(31)));
    }

    #[test]
    fn sessions_are_created_or_inherited_leader_keys() {
        let d = dcs();
        assert_eq!(d.session(), None);
        d.inner.state().created_leader(Held {
            created: 10,
            modified: 10,
        });
        assert_eq!(d.session(), Some(SessionId::from_int(10)));
        assert!(d.holds_session(&SessionId::from_int(10)));
        d.inherit_session(&SessionId::from_int(4));
        assert!(d.holds_session(&SessionId::from_int(4)));
        assert!(!d.holds_session(&SessionId::from_int(5)));
        assert!(!d.holds_session(&SessionId::from_text("10")));
        // Only the last few are kept.
        for c in 11..30 {
            d.inner.state().created_leader(Held {
                created: c,
                modified: c,
            });
        }
        assert!(!d.holds_session(&SessionId::from_int(10)));
        assert!(d.holds_session(&SessionId::from_int(29)));
    }
}
