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
//!
//! Idle cost (docs/dcs.md, "etcd v2 (`Etcd2Dcs`)": its Expiry and Reads): the HA loop's
//! reads come from etcd v3's watch-fed view (`etcd_view`) while the watch
//! vouches for it, and the leader key is refreshed once per `ttl / 4` (the
//! leader's keep-alive), not at every cycle too: a cycle's `update_leader`
//! sends nothing when the last refresh is that recent and the view shows
//! the key still ours. The deadline it reports is that refresh's: at least
//! three quarters of `ttl` ahead, room for a failed refresh and its retry.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use super::etcd_conn::EtcdSettings;
use super::etcd_view::{Change, Row, View};
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
    /// What etcd guarantees after the last write or refresh it answered,
    /// and when that request was sent.
    renewed: Option<Renewed>,
}

/// The last answered write or refresh of a key's TTL.
#[derive(Debug, Clone, Copy)]
struct Renewed {
    sent: Instant,
    expiry: Expiry,
}

/// Whether a key whose TTL was last set by a request sent at `last_sent`
/// must be refreshed at `now`: when that was `ttl / 4` ago or more (or
/// never), as etcd v3's lease (docs/dcs.md, "Idle cost"). A key refreshed
/// less than `ttl / 4` ago keeps at least three quarters of its TTL, so a
/// refresh skipped now still leaves room for a retry that fails
/// (`retry_timeout`) before it could lapse.
fn refresh_due(last_sent: Option<Instant>, now: Instant, ttl: Duration) -> bool {
    last_sent.is_none_or(|s| now.saturating_duration_since(s) >= ttl / 4)
}

#[derive(Debug, Default)]
struct State {
    leader: Option<Held>,
    /// The last answered creation or refresh of the leader key `leader`.
    leader_renewed: Option<(u64, Renewed)>,
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
    /// Held while the leader key is refreshed: the leader's keep-alive and
    /// a cycle's `update_leader` fall due together once in a while (their
    /// periods, ttl/4 and loop_wait, meet), and two refreshes sent at once
    /// with the same `prevIndex` cost a lost compare, a read and a third
    /// refresh. Serialized, the second finds the first's renewal.
    renewing: tokio::sync::Mutex<()>,
    /// The last read of the prefix kept current by the watch
    /// (`etcd_view`, as etcd v3's; docs/dcs.md, "etcd v2 (`Etcd2Dcs`)").
    view: Mutex<View>,
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
                renewing: tokio::sync::Mutex::new(()),
                view: Mutex::new(View::default()),
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

/// What a watch event did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Put,
    Delete,
}

/// The kind of change of an event's action (etcd v2's `store` actions).
fn change_of(a: &super::etcd2_http::Answer) -> Option<ChangeKind> {
    match a.action.as_str() {
        "set" | "update" | "create" | "compareAndSwap" => Some(ChangeKind::Put),
        "delete" | "expire" | "compareAndDelete" => Some(ChangeKind::Delete),
        _ => None,
    }
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

    pub(super) fn view(&self) -> std::sync::MutexGuard<'_, View> {
        crate::sync::lock(&self.view)
    }

    /// How recently the watch must have heard from etcd for the view to
    /// count: its poll period, and `retry_timeout` for the probe after a
    /// poll that saw nothing (etcd2_watch).
    pub(super) fn watch_fresh_within(&self) -> Duration {
        let rt = self.retry_timeout();
        super::etcd2_watch::poll_period(rt) + rt
    }

    /// The view shows our member key holding `value`.
    fn view_shows_our_member(&self, value: &str) -> bool {
        let fresh = self.watch_fresh_within();
        let view = self.view();
        view.cached_key(&keys::member(&self.name), Instant::now(), fresh)
            .flatten()
            .is_some_and(|(v, _, _)| v == value)
    }

    /// The view shows the leader key created at `created` with our name.
    fn view_shows_our_leader(&self, created: u64) -> bool {
        let fresh = self.watch_fresh_within();
        let view = self.view();
        view.cached_key(keys::LEADER, Instant::now(), fresh)
            .flatten()
            .is_some_and(|(value, _, c)| {
                value == self.name && u64::try_from(c).is_ok_and(|c| c == created)
            })
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
        // A refresh moves only a TTL (and the key's modifiedIndex, which
        // only member versions show and nobody compares): the view stays.
        let refresh = body.is_some_and(|b| b.contains(&("refresh", "true")));
        let r = self
            .http
            .request(
                method,
                &self.path(rel, query),
                body.map(form),
                deadline,
                t.retry_timeout,
            )
            .await;
        if r.is_err() {
            // Whatever the failed request did or not, and whatever we
            // missed meanwhile: the next read asks etcd.
            self.view().invalidate();
        } else if method != Method::Get && !refresh {
            // As etcd v3's writes: the last read no longer counts, so our
            // own acknowledged write shows in the next one.
            self.view().wrote();
        }
        r
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
            // A call given up on may have left a request in flight: the
            // next read asks etcd.
            self.view().invalidate();
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
                let mut st = self.state();
                st.created_leader(Held {
                    created: n.created_index,
                    modified: n.modified_index,
                });
                st.leader_renewed = Some((n.created_index, Renewed { sent, expiry }));
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
                let mut st = self.state();
                st.leader = Some(Held {
                    created,
                    modified: n.modified_index,
                });
                st.leader_renewed = Some((created, Renewed { sent, expiry }));
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
        // Taken before the state is read: a refresh that held it before us
        // left the key's current index there (or found it gone).
        let _renewing = self.renewing.lock().await;
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
            // Renewed less than ttl/4 ago (by the leader's keep-alive, which
            // refreshes every ttl/4: docs/ha.md §9) and the watch vouches
            // that the key is still that one: the hold rests on that
            // renewal, as on etcd v3 (docs/dcs.md, "Idle cost").
            if let Some(expiry) = self.recent_leader_renewal(created)
                && self.view_shows_our_leader(created)
            {
                return Ok(LeaderHold::Held { expiry });
            }
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

    /// What etcd guarantees after the last refresh of the leader key
    /// created at `created`, if no new one is due ([`refresh_due`]).
    fn recent_leader_renewal(&self, created: u64) -> Option<Expiry> {
        let ttl = self.timing().ttl;
        match self.state().leader_renewed {
            Some((c, r)) if c == created && !refresh_due(Some(r.sent), Instant::now(), ttl) => {
                Some(r.expiry)
            }
            _ => None,
        }
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
                    renewed: Some(Renewed { sent, expiry }),
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
        // Unchanged: a refresh renews the TTL without a watch event, once
        // per ttl/4 as etcd v3's lease (docs/dcs.md, "Idle cost"): sooner,
        // nothing is sent while the view shows the key holding what we
        // wrote (a deletion or another write of it would have reached the
        // view). A short loop_wait thus costs no refresh per cycle.
        if let Some(m) = written.filter(|m| m.value == value && m.ttl_secs == t.ttl_secs()) {
            if m.renewed
                .is_some_and(|r| !refresh_due(Some(r.sent), Instant::now(), t.ttl))
                && self.view_shows_our_member(&value)
            {
                return Ok(());
            }
            if self.refresh_member(&m, deadline).await?.is_some() {
                return Ok(());
            }
        }
        let ttl = t.ttl_secs().to_string();
        let rel = keys::member(&self.name);
        let sent = Instant::now();
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
                    renewed: Some(Renewed {
                        sent,
                        expiry: t.expiry(sent, Instant::now()),
                    }),
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
        // Holding the leader key, this is the leader's keep-alive: the
        // member key is refreshed by every cycle's touch_member, and here
        // only when due, so a slow cycle does not cost it either. Without
        // it, the member key is all there is to keep alive: refreshed. The
        // leader key is refreshed each time: the keep-alive's period
        // (ttl/4) is what spaces its renewals, and update_leader skips its
        // own after a recent one.
        let ttl = self.timing().ttl;
        let member = match member {
            Some(m) => match m.renewed {
                Some(r) if leader.is_some() && !refresh_due(Some(r.sent), Instant::now(), ttl) => {
                    Some(r.expiry)
                }
                _ => self.refresh_member(&m, deadline).await?,
            },
            None => None,
        };
        let Some(h) = leader else {
            return Ok(member);
        };
        let _renewing = self.renewing.lock().await;
        // A cycle's refresh that held the lock before us: its index.
        let modified = self
            .state()
            .leader
            .filter(|l| l.created == h.created)
            .map_or(h.modified, |l| l.modified);
        self.refresh_leader(h.created, modified, deadline).await
    }

    /// `use_view`: answer from the view while the watch vouches for it
    /// (the HA loop's read); `false` always reads etcd (the REST API).
    async fn load(&self, use_view: bool, deadline: tokio::time::Instant) -> DcsResult<Cluster> {
        let fresh = self.watch_fresh_within();
        let ticket = {
            let view = self.view();
            let now = Instant::now();
            if use_view && let Some(rows) = view.cached(now, fresh) {
                return Ok(self.cluster_of(rows));
            }
            view.ticket(now, fresh)
        };
        let (node, index) = match self
            .req(
                Method::Get,
                "",
                &[("recursive", "true"), ("quorum", "true")],
                None,
                deadline,
            )
            .await?
        {
            Reply::Ok(a, index) => (a.node.unwrap_or_default(), index),
            // No key under the prefix yet: etcd's own "Key not found", never
            // an HTTP 404 of something else (etcd2_http::interpret).
            Reply::Refused(e) if e.code == KEY_NOT_FOUND => (Node::default(), e.index),
            Reply::Refused(e) => return Err(refused("load_cluster", &e)),
        };
        let rows = self.rows_of(&node);
        // The answer is the store at `X-Etcd-Index` (one read under the
        // v2 store's lock): events after it reach the view.
        match index.and_then(|i| i64::try_from(i).ok()) {
            Some(i) => self.view().store(ticket, i, rows.clone()),
            None => self.view().wrote(),
        }
        Ok(self.cluster_of(rows))
    }

    /// The rows of the prefix directory `node` (etcd_view's form): the
    /// relative key, the value, `modifiedIndex`, and as the session the
    /// leader key's `createdIndex` (0 for other keys).
    fn rows_of(&self, node: &Node) -> Vec<Row> {
        let base = format!("{}/", self.prefix);
        node.leaves()
            .into_iter()
            .filter_map(|n| {
                let rel = n.key.strip_prefix(&base)?.to_owned();
                let modified = i64::try_from(n.modified_index).ok()?;
                let created = if rel == keys::LEADER {
                    i64::try_from(n.created_index).ok()?
                } else {
                    0
                };
                Some((rel, n.value.clone().unwrap_or_default(), modified, created))
            })
            .collect()
    }

    /// The cluster `rows` hold: the leader key's version and session are
    /// its `createdIndex`, every other key's version its `modifiedIndex`.
    fn cluster_of(&self, rows: Vec<Row>) -> Cluster {
        // What the rows show of our own leader key: its current index, for
        // the next renewal's compare.
        if let Some((_, _, modified, created)) = rows.iter().find(|r| r.0 == keys::LEADER) {
            let mut st = self.state();
            if let Some(h) = st
                .leader
                .as_mut()
                .filter(|h| i64::try_from(h.created).is_ok_and(|c| c == *created))
            {
                h.modified = h.modified.max(u64::try_from(*modified).unwrap_or(0));
            }
        }
        Cluster::from_rows(rows.into_iter().map(|(rel, value, modified, created)| {
            if rel == keys::LEADER {
                (
                    rel,
                    value,
                    Version::from_int(created),
                    Some(SessionId::from_int(created)),
                )
            } else {
                (rel, value, Version::from_int(modified), None)
            }
        }))
    }

    /// The cluster the prefix directory `node` holds.
    #[cfg(test)]
    fn cluster_from(&self, node: &Node) -> Cluster {
        self.cluster_of(self.rows_of(node))
    }

    /// Apply a watch event to the view: a key written or deleted is a
    /// change of that key at the event's `modifiedIndex` (newer than what
    /// the view holds, or ignored); one the view cannot follow key by key
    /// (a directory, a write without a value, an action it does not know)
    /// drops the view.
    pub(super) fn watched_change(&self, answer: &super::etcd2_http::Answer) {
        let Some(node) = answer.node.as_ref() else {
            return;
        };
        let base = format!("{}/", self.prefix);
        let rel = node.key.strip_prefix(&base);
        let modified = i64::try_from(node.modified_index).ok();
        let mut view = self.view();
        match (rel, modified, change_of(answer)) {
            (Some(rel), Some(rev), Some(ChangeKind::Put)) if !node.dir => {
                let Some(value) = node.value.as_deref() else {
                    view.wrote();
                    return;
                };
                let lease = if rel == keys::LEADER {
                    i64::try_from(node.created_index).unwrap_or(0)
                } else {
                    0
                };
                let change = Change::Put {
                    value,
                    mod_rev: rev,
                    lease,
                };
                view.changed(rel, change, false);
            }
            (Some(rel), Some(rev), Some(ChangeKind::Delete)) if !node.dir => {
                view.changed(rel, Change::Delete { rev }, false);
            }
            _ => view.wrote(),
        }
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
        i.bounded("load_cluster", |dl| i.load(true, dl)).boxed()
    }

    fn load_cluster_fresh(&self) -> BoxFuture<'_, DcsResult<Cluster>> {
        let i = &self.inner;
        i.bounded("load_cluster_fresh", |dl| i.load(false, dl))
            .boxed()
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
    fn a_key_is_refreshed_once_per_quarter_ttl() {
        let ttl = Duration::from_secs(30);
        let now = Instant::now();
        assert!(refresh_due(None, now, ttl), "never refreshed");
        let sent = now - Duration::from_millis(7_499);
        assert!(!refresh_due(Some(sent), now, ttl), "7.5 s not yet passed");
        let sent = now - Duration::from_millis(7_500);
        assert!(refresh_due(Some(sent), now, ttl), "ttl/4 passed");
        // A send time after `now` (clock read before the send): not due.
        assert!(!refresh_due(Some(now + Duration::from_secs(1)), now, ttl));
    }

    /// The view takes the watch's events key by key: another process's
    /// leader key, a renewal of ours, a deletion, and drops itself for a
    /// change it cannot follow (a directory).
    #[test]
    fn the_view_follows_the_watch_and_vouches_for_our_leader_key() {
        let d = dcs();
        let i = &d.inner;
        let now = Instant::now();
        let fresh = i.watch_fresh_within();
        i.view().watch_opened(now);
        let t = i.view().ticket(now, fresh);
        let read = answer(
            r#"{"action":"get","node":{"key":"/service/b","dir":true,"nodes":[
                {"key":"/service/b/leader","value":"n1","modifiedIndex":40,"createdIndex":31},
                {"key":"/service/b/members","dir":true,"nodes":[
                    {"key":"/service/b/members/n1","value":"{}","modifiedIndex":39,"createdIndex":2}]}]}}"#,
        );
        let rows = i.rows_of(read.node.as_ref().unwrap());
        i.view().store(t, 40, rows);
        assert!(i.view_shows_our_leader(31));
        assert!(i.view_shows_our_member("{}"));
        assert!(!i.view_shows_our_member("{\"role\":\"replica\"}"));
        assert!(!i.view_shows_our_leader(32), "another createdIndex");
        // Our refresh: the same key at a new modifiedIndex.
        i.watched_change(&answer(
            r#"{"action":"update","node":{"key":"/service/b/leader","value":"n1","modifiedIndex":41,"createdIndex":31},"prevNode":{"key":"/service/b/leader","value":"n1","modifiedIndex":40,"createdIndex":31}}"#,
        ));
        assert!(i.view_shows_our_leader(31));
        // An older event arriving late changes nothing.
        i.watched_change(&answer(
            r#"{"action":"expire","node":{"key":"/service/b/leader","modifiedIndex":35,"createdIndex":31}}"#,
        ));
        assert!(i.view_shows_our_leader(31));
        // Deleted, then created by another process of our name.
        i.watched_change(&answer(
            r#"{"action":"delete","node":{"key":"/service/b/leader","modifiedIndex":42,"createdIndex":31}}"#,
        ));
        assert!(!i.view_shows_our_leader(31));
        i.watched_change(&answer(
            r#"{"action":"create","node":{"key":"/service/b/leader","value":"n1","modifiedIndex":43,"createdIndex":43}}"#,
        ));
        assert!(!i.view_shows_our_leader(31));
        let cl = i.cluster_of(i.view().cached(now, fresh).expect("cached"));
        let l = cl.leader.as_ref().expect("leader");
        assert_eq!(l.version, Version::from_int(43), "the createdIndex");
        assert_eq!(l.session, Some(SessionId::from_int(43)));
        assert!(cl.member("n1").is_some());
        // A directory deleted: the view cannot follow it key by key.
        i.watched_change(&answer(
            r#"{"action":"delete","node":{"key":"/service/b/members","dir":true,"modifiedIndex":44,"createdIndex":2}}"#,
        ));
        assert!(i.view().cached(now, fresh).is_none());
        assert!(!i.view_shows_our_member("{}"), "no view, no word");
    }

    /// update_leader's skip rests on a refresh of that very key, sent less
    /// than ttl/4 ago; its expiry is that refresh's.
    #[test]
    fn a_recent_refresh_of_that_key_is_what_a_hold_rests_on() {
        let d = dcs(); // ttl 2.5 s: a refresh is due after 625 ms
        let i = &d.inner;
        let sent = Instant::now();
        let expiry = i.timing().expiry(sent, sent);
        i.state().leader_renewed = Some((31, Renewed { sent, expiry }));
        assert_eq!(i.recent_leader_renewal(31), Some(expiry));
        assert_eq!(i.recent_leader_renewal(32), None, "another key");
        let old = sent - Duration::from_millis(700);
        i.state().leader_renewed = Some((
            31,
            Renewed {
                sent: old,
                expiry: i.timing().expiry(old, old),
            },
        ));
        assert_eq!(i.recent_leader_renewal(31), None, "due again");
    }

    #[test]
    fn no_view_without_an_open_watch() {
        let d = dcs();
        let i = &d.inner;
        let now = Instant::now();
        let fresh = i.watch_fresh_within();
        let t = i.view().ticket(now, fresh);
        i.view().store(t, 40, Vec::new());
        assert!(i.view().cached(now, fresh).is_none());
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
