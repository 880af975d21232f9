//! ZooKeeper backend (docs/dcs.md, "ZooKeeper (`ZooKeeperDcs`)"): Patroni's layout znode for
//! znode, `leader` and `members/<name>` ephemeral (owned by this node's
//! session), every other key persistent.
//!
//! Invariants:
//! * The node's session is made lazily, by the first call that needs one,
//!   and never by `keep_alive`. Its timeout is the one the server granted
//!   (ZooKeeper bounds the requested `ttl` by its min/max session timeout):
//!   every [`Expiry`] counts from the send time of a request the server
//!   answered plus that negotiated timeout, never the configured `ttl`.
//! * A `Version` is the znode's `mzxid`: unique in the ensemble and never
//!   reused, unlike the per-node `version`, which a deleted and re-created
//!   znode starts again at 0. Compare-and-swap reads the znode's stat,
//!   compares the `mzxid`, and writes conditional on the znode `version`
//!   that stat showed.
//! * The leader key is touched only when its `ephemeralOwner` is a session
//!   of this process (current, retired at a `ttl` change, or inherited).
//! * With Exhibitor, the node's sessions are detached (a dropped client
//!   does not close its session, so that a session can move to a client on
//!   a new server list) and each is closed explicitly instead, once
//!   nothing holds it, or by `release_session` (`Closer` below).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use zookeeper_client as zk;

use super::exhibitor::EnsembleProvider;
use super::keys;
use super::version::{Expiry, SessionId, Version};
use super::zookeeper_tls::ZkTlsError;
use super::{
    Cluster, Dcs, DcsError, DcsResult, Leader, LeaderHold, MemberData, Status, WatchEvent,
};
use crate::config::zookeeper::AclEntry;

/// How to reach the ensemble and what to present to it.
#[derive(Debug, Clone)]
pub struct ZkSettings {
    /// `host:port` of each server.
    pub servers: Vec<String>,
    /// The ACL of every znode created (empty: world:anyone, all).
    pub acls: Vec<AclEntry>,
    /// `(scheme, credential)` added to every session.
    pub auth: Vec<(String, String)>,
    /// TLS to every server (`use_ssl`; `zookeeper_tls`).
    pub tls: Option<zk::TlsOptions>,
}

impl ZkSettings {
    /// The section as the configuration gives it; with `use_ssl`, its TLS
    /// files read (once, here: a bad one is an error naming it).
    pub fn from_config(c: &crate::config::zookeeper::ZooKeeper) -> Result<ZkSettings, ZkTlsError> {
        Ok(ZkSettings {
            servers: c.servers(),
            acls: c.acls(),
            auth: c.auth(),
            tls: super::zookeeper_tls::options(c)?,
        })
    }
}

/// Connect `connector` to `servers` (`host:port,...`), over TLS when the
/// section asks for it.
async fn dial(
    connector: zk::Connector,
    tls: Option<&zk::TlsOptions>,
    servers: &str,
) -> Result<zk::Client, zk::Error> {
    match tls {
        Some(t) => connector.with_tls(t.clone()).secure_connect(servers).await,
        None => connector.connect(servers).await,
    }
}

/// One session with the ensemble and the timeout the server granted.
#[derive(Clone)]
struct Session {
    client: zk::Client,
    id: i64,
    timeout: Duration,
    /// The servers its client was connected with.
    servers: Vec<String>,
    /// With Exhibitor: the client is detached (dropping it does not close
    /// the session, so that the session can move to a client on a new
    /// list); this closes it once no client of it is left.
    closer: Option<Arc<Closer>>,
}

/// Closes a detached session (Exhibitor) when the last [`Session`] holding
/// it is dropped, unless disarmed: by `release_session`, which closes it
/// itself and waits. A client re-attached to the session shares it.
struct Closer {
    ensemble: Arc<EnsembleProvider>,
    auth: Vec<(String, String)>,
    tls: Option<zk::TlsOptions>,
    ttl: Duration,
    info: zk::SessionInfo,
    armed: std::sync::atomic::AtomicBool,
}

impl Closer {
    /// `true` if it was armed: the caller now closes the session.
    fn disarm(&self) -> bool {
        self.armed.swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        if !self.disarm() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(close_detached(
                self.ensemble.clone(),
                self.auth.clone(),
                self.tls.clone(),
                self.ttl,
                self.info.clone(),
            ));
        }
    }
}

/// Close a detached session: attach a closing (not detached) client to it
/// on the latest list, drop that client (it sends CloseSession) and wait,
/// within one `ttl`, until it is done. A session already gone is no error.
async fn close_detached(
    ensemble: Arc<EnsembleProvider>,
    auth: Vec<(String, String)>,
    tls: Option<zk::TlsOptions>,
    ttl: Duration,
    info: zk::SessionInfo,
) {
    let Some(servers) = ensemble.latest() else {
        return;
    };
    let mut connector = zk::Client::connector()
        .with_session(info)
        .with_session_timeout(ttl);
    for (scheme, cred) in &auth {
        connector = connector.with_auth(scheme, cred.as_bytes());
    }
    let close = async {
        if let Ok(client) = dial(connector, tls.as_ref(), &servers.join(",")).await {
            let mut w = client.state_watcher();
            drop(client);
            while !w.peek_state().is_terminated() {
                w.changed().await;
            }
        }
    };
    let _ = tokio::time::timeout(ttl, close).await;
}

impl Session {
    fn alive(&self) -> bool {
        !self.client.state().is_terminated()
    }

    fn sid(&self) -> SessionId {
        SessionId::from_int(self.id)
    }

    /// What the server keeps for a request sent at `sent` and answered now
    /// (docs/dcs.md, "Versions, sessions and expiry"): it expires the session
    /// one negotiated timeout after it last heard from us, rounded up to its
    /// tick, which is at most half the smallest timeout it grants.
    fn expiry(&self, sent: Instant) -> Expiry {
        expiry_at(sent, Instant::now(), self.timeout)
    }
}

/// How many times a live session is tried on one new Exhibitor list
/// before it stays on its old servers for good (until the next list).
const REATTACH_TRIES: u32 = 3;

/// One new server list a live session was tried on.
#[derive(Debug, Clone)]
struct Reattach {
    servers: Vec<String>,
    attempts: u32,
    at: std::time::Instant,
}

impl Reattach {
    /// Another try is due: fewer than `REATTACH_TRIES` so far, the last
    /// one `retry_timeout` ago or more.
    fn due(&self, retry_timeout: Duration) -> bool {
        self.attempts < REATTACH_TRIES && self.at.elapsed() >= retry_timeout
    }
}

#[derive(Default)]
struct State {
    current: Option<Session>,
    /// Sessions dropped at a `ttl` change, still open so that the keys on
    /// them stay until moved (docs/dcs.md, "Leases and sessions").
    retired: Vec<Session>,
    /// Sessions a previous daemon on this data directory held.
    inherited: Vec<i64>,
    /// Sessions of this process the client concluded lost (no answer for
    /// 1.4 timeouts). The server may still keep one (a server restarted
    /// with its sessions, which start a fresh timeout): a leader key still
    /// on it, at the version the caller read, was never anyone else's, and
    /// `update_leader` moves it as it moves an inherited one.
    lost: Vec<i64>,
    /// `(requested, granted)` last logged, so that a difference is logged once.
    logged_timeout: Option<(Duration, Duration)>,
    /// With Exhibitor: the last server list a live session was tried on,
    /// how many times and when (a failure leaves it on its old list and is
    /// tried again, see `REATTACH_TRIES`).
    reattach_tried: Option<Reattach>,
    /// A leader create was given up on (no answer within `retry_timeout`):
    /// it may still take effect. ZooKeeper cannot cancel a sent request, so
    /// the next acquisition deletes a key it finds on the current session
    /// first: the caller was told it does not hold it.
    abandoned_acquire: bool,
}

struct Timing {
    ttl: Duration,
    retry_timeout: Duration,
}

struct Inner {
    settings: ZkSettings,
    /// With `exhibitor`: where the servers come from (`settings.servers`
    /// is then unused). Each new session, and each new watch session, is
    /// made on the latest list; a live one is moved onto it (docs/dcs.md,
    /// "Exhibitor").
    ensemble: Option<Arc<EnsembleProvider>>,
    prefix: String,
    name: String,
    timing: Mutex<Timing>,
    state: Mutex<State>,
    /// Serialises session creation: one session per node, never two.
    connecting: tokio::sync::Mutex<()>,
}

/// The ZooKeeper DCS of one node.
pub struct ZooKeeperDcs {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The expiry of a session of `timeout` for a request sent at `sent` and
/// answered at `answered`: kept at least one timeout after the server heard
/// the request (not before `sent`), dropped by one timeout and a tick (at
/// most half a timeout) after the answer if nothing follows.
fn expiry_at(sent: Instant, answered: Instant, timeout: Duration) -> Expiry {
    Expiry {
        earliest: sent + timeout,
        latest: answered + timeout + timeout / 2,
    }
}

/// Keep `id` among the lost sessions, the last few only (a key on an older
/// one is long gone: the server expires a session one timeout after it
/// last heard from it).
fn remember_lost(lost: &mut Vec<i64>, id: i64) {
    const KEEP: usize = 4;
    if !lost.contains(&id) {
        lost.push(id);
    }
    if lost.len() > KEEP {
        lost.remove(0);
    }
}

/// Whether a granted session timeout is to be logged: only when it differs
/// from the requested one, and once per `(requested, granted)` pair (a new
/// session granted the same again is not news; a `ttl` change is).
fn first_report_of_granted(
    logged: &mut Option<(Duration, Duration)>,
    requested: Duration,
    granted: Duration,
) -> bool {
    if granted == requested || *logged == Some((requested, granted)) {
        return false;
    }
    *logged = Some((requested, granted));
    true
}

/// ZooKeeper's errors in the trait's two classes: what the server answered
/// as a refusal (auth, ACLs, bad arguments, quotas) is `Other`; anything
/// else (no connection, no answer, a session the client concluded lost, a
/// transport error the client reports as a message) is `Unreachable`.
fn classify(what: &str, e: zk::Error) -> DcsError {
    use zk::Error as E;
    match e {
        E::NoAuth
        | E::AuthFailed
        | E::InvalidAcl
        | E::BadArguments(_)
        | E::NoChildrenForEphemerals
        | E::NotEmpty
        | E::QuotaExceeded
        | E::Unimplemented
        | E::MarshallingError
        | E::UnmarshalError { .. }
        | E::ReconfigDisabled
        | E::NotReadOnly
        | E::NoWatcher
        | E::NoNode
        | E::NodeExists
        | E::BadVersion => DcsError::Other(format!("zookeeper {what}: {e}")),
        e => DcsError::Unreachable(format!("zookeeper {what}: {e}")),
    }
}

fn acl_of(e: &AclEntry) -> zk::Acl {
    let p = &e.perms;
    let mut perm = zk::Permission::NONE;
    for (on, bit) in [
        (p.read, zk::Permission::READ),
        (p.write, zk::Permission::WRITE),
        (p.create, zk::Permission::CREATE),
        (p.delete, zk::Permission::DELETE),
        (p.admin, zk::Permission::ADMIN),
    ] {
        if on {
            perm = perm | bit;
        }
    }
    zk::Acl::new(perm, zk::AuthId::new(&e.scheme, &e.id))
}

impl ZooKeeperDcs {
    /// Contacts nothing: the session is made by the first call needing it,
    /// so the daemon starts (and retries) while ZooKeeper is down.
    pub fn new(
        settings: ZkSettings,
        prefix: String,
        name: String,
        ttl: Duration,
        retry_timeout: Duration,
    ) -> ZooKeeperDcs {
        ZooKeeperDcs::build(settings, None, prefix, name, ttl, retry_timeout)
    }

    /// As [`ZooKeeperDcs::new`], the servers taken from Exhibitor instead
    /// of `settings.servers` (docs/dcs.md, "Exhibitor"). Contacts nothing
    /// either: the first call needing a session starts the polling.
    pub fn with_exhibitor(
        settings: ZkSettings,
        ensemble: Arc<EnsembleProvider>,
        prefix: String,
        name: String,
        ttl: Duration,
        retry_timeout: Duration,
    ) -> ZooKeeperDcs {
        ZooKeeperDcs::build(settings, Some(ensemble), prefix, name, ttl, retry_timeout)
    }

    fn build(
        settings: ZkSettings,
        ensemble: Option<Arc<EnsembleProvider>>,
        prefix: String,
        name: String,
        ttl: Duration,
        retry_timeout: Duration,
    ) -> ZooKeeperDcs {
        ZooKeeperDcs {
            inner: Arc::new(Inner {
                settings,
                ensemble,
                prefix,
                name,
                timing: Mutex::new(Timing { ttl, retry_timeout }),
                state: Mutex::new(State::default()),
                connecting: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl Inner {
    fn retry_timeout(&self) -> Duration {
        lock(&self.timing).retry_timeout
    }

    fn path(&self, key: &str) -> String {
        keys::path(&self.prefix, key)
    }

    fn acls(&self) -> Vec<zk::Acl> {
        self.settings.acls.iter().map(acl_of).collect()
    }

    /// The current session if it is still usable; a terminated one (expired,
    /// closed, refused) is dropped, and its keys with it.
    fn current(&self) -> Option<Session> {
        let mut st = lock(&self.state);
        match &st.current {
            Some(s) if s.alive() => Some(s.clone()),
            Some(s) => {
                let id = s.id;
                st.current = None;
                remember_lost(&mut st.lost, id);
                None
            }
            None => None,
        }
    }

    fn is_mine(&self, owner: i64) -> bool {
        if owner == 0 {
            return false;
        }
        let st = lock(&self.state);
        st.current.as_ref().is_some_and(|s| s.id == owner)
            || st.retired.iter().any(|s| s.id == owner)
            || st.inherited.contains(&owner)
            || st.lost.contains(&owner)
    }

    /// The session, made if there is none. With Exhibitor, a live session
    /// made on another list than the latest is moved onto it first.
    async fn session(&self) -> DcsResult<Session> {
        if let Some(s) = self.current() {
            match self.moved_list(&s) {
                None => return Ok(s),
                Some(new) => return Ok(self.reattach(s, new).await),
            }
        }
        let _one = self.connecting.lock().await;
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let ttl = lock(&self.timing).ttl;
        let servers = servers_of(
            &self.settings,
            self.ensemble.as_ref(),
            self.retry_timeout() / 2,
        )
        .await?;
        let detached = self.ensemble.is_some();
        let client = connect(&self.settings, &servers, ttl, None, detached).await?;
        let closer = self.ensemble.as_ref().map(|e| {
            Arc::new(Closer {
                ensemble: e.clone(),
                auth: self.settings.auth.clone(),
                tls: self.settings.tls.clone(),
                ttl,
                info: client.session().clone(),
                armed: std::sync::atomic::AtomicBool::new(true),
            })
        });
        let s = Session {
            id: client.session_id().0,
            timeout: client.session_timeout(),
            client,
            servers,
            closer,
        };
        let mut st = lock(&self.state);
        if first_report_of_granted(&mut st.logged_timeout, ttl, s.timeout) {
            tracing::warn!(
                event = crate::events::DCS_SESSION_TIMEOUT_NEGOTIATED,
                requested_ms = ttl.as_millis() as u64,
                granted_ms = s.timeout.as_millis() as u64,
                "ZooKeeper granted a session timeout other than ttl; the lease and the fence use the granted one"
            );
        }
        st.current = Some(s.clone());
        Ok(s)
    }

    /// With Exhibitor: the latest list, if `s` was made on another one and
    /// a move onto it is due (`Reattach::due`).
    fn moved_list(&self, s: &Session) -> Option<Vec<String>> {
        let latest = self.ensemble.as_ref()?.latest()?;
        if latest == s.servers {
            return None;
        }
        let due = match &lock(&self.state).reattach_tried {
            Some(r) if r.servers == latest => r.due(self.retry_timeout()),
            _ => true,
        };
        due.then_some(latest)
    }

    /// Move the live session `s` onto `servers` (kazoo's `set_hosts`, done
    /// at once): a detached client attached to the same session on the new
    /// list replaces the old one, which is then dropped without closing
    /// the session. The ephemeral keys stay, being the session's. Each try
    /// within `retry_timeout / 2`, up to `REATTACH_TRIES` per list one
    /// `retry_timeout` apart (a server of the new list can refuse a session
    /// it has not caught up on yet); on failure the session goes on with
    /// its old client.
    async fn reattach(&self, s: Session, servers: Vec<String>) -> Session {
        let _one = self.connecting.lock().await;
        {
            let mut st = lock(&self.state);
            let attempts = match &st.reattach_tried {
                Some(r) if r.servers == servers => r.attempts + 1,
                _ => 1,
            };
            st.reattach_tried = Some(Reattach {
                servers: servers.clone(),
                attempts,
                at: std::time::Instant::now(),
            });
        }
        let ttl = lock(&self.timing).ttl;
        let attempt = tokio::time::timeout(
            self.retry_timeout() / 2,
            connect(
                &self.settings,
                &servers,
                ttl,
                Some(s.client.session().clone()),
                true,
            ),
        )
        .await;
        let client = match attempt {
            Ok(Ok(c)) if c.session_id().0 == s.id => c,
            Ok(Ok(_)) => return s,
            Ok(Err(e)) => {
                tracing::warn!(event = crate::events::EXHIBITOR_REATTACH_FAILED, session = format_args!("{:#x}", s.id), servers = %servers.join(","), error = %e, "the session stays on its servers");
                return s;
            }
            Err(_) => {
                tracing::warn!(event = crate::events::EXHIBITOR_REATTACH_FAILED, session = format_args!("{:#x}", s.id), servers = %servers.join(","), error = "no answer", "the session stays on its servers");
                return s;
            }
        };
        let moved = Session {
            id: s.id,
            timeout: client.session_timeout(),
            client,
            servers,
            closer: s.closer.clone(),
        };
        let mut st = lock(&self.state);
        if st.current.as_ref().is_some_and(|c| c.id == s.id) {
            st.current = Some(moved.clone());
        }
        drop(st);
        tracing::info!(event = crate::events::EXHIBITOR_SESSION_MOVED, session = format_args!("{:#x}", moved.id), servers = %moved.servers.join(","), "the session moved to the new ZooKeeper servers");
        moved
    }

    /// Create `path` (and any missing parent, persistent).
    async fn create(
        &self,
        c: &zk::Client,
        path: &str,
        data: &[u8],
        mode: zk::CreateMode,
    ) -> Result<zk::Stat, zk::Error> {
        let acls = self.acls();
        let acls = if acls.is_empty() {
            zk::Acls::anyone_all()
        } else {
            zk::Acls::new(&acls)
        };
        let opts = mode.with_acls(acls);
        match c.create(path, data, &opts).await {
            Err(zk::Error::NoNode) => {
                if let Some((parent, _)) = path.rsplit_once('/')
                    && !parent.is_empty()
                {
                    match c
                        .mkdir(parent, &zk::CreateMode::Persistent.with_acls(acls))
                        .await
                    {
                        Ok(()) | Err(zk::Error::NodeExists) => {}
                        Err(e) => return Err(e),
                    }
                }
                c.create(path, data, &opts).await.map(|(s, _)| s)
            }
            r => r.map(|(s, _)| s),
        }
    }

    /// Overwrite `key` whatever its version, creating it if absent.
    async fn set_or_create(&self, key: &str, value: &str) -> DcsResult<()> {
        let s = self.session().await?;
        let path = self.path(key);
        match s.client.set_data(&path, value.as_bytes(), None).await {
            Ok(_) => Ok(()),
            Err(zk::Error::NoNode) => {
                match self
                    .create(
                        &s.client,
                        &path,
                        value.as_bytes(),
                        zk::CreateMode::Persistent,
                    )
                    .await
                {
                    Ok(_) => Ok(()),
                    // Created by another client meanwhile: overwrite it.
                    Err(zk::Error::NodeExists) => s
                        .client
                        .set_data(&path, value.as_bytes(), None)
                        .await
                        .map(|_| ())
                        .map_err(|e| classify(key, e)),
                    Err(e) => Err(classify(key, e)),
                }
            }
            Err(e) => Err(classify(key, e)),
        }
    }

    /// Write `key` only if its `mzxid` is still `version`; `false`: the
    /// compare lost (gone, changed, or a version not of this store).
    async fn compare_and_set(&self, key: &str, value: &str, version: &Version) -> DcsResult<bool> {
        let Some(want) = version.as_int() else {
            return Ok(false);
        };
        let s = self.session().await?;
        let path = self.path(key);
        let stat = match s.client.check_stat(&path).await {
            Ok(Some(stat)) => stat,
            Ok(None) => return Ok(false),
            Err(e) => return Err(classify(key, e)),
        };
        if stat.mzxid != want {
            return Ok(false);
        }
        match s
            .client
            .set_data(&path, value.as_bytes(), Some(stat.version))
            .await
        {
            Ok(_) => Ok(true),
            Err(zk::Error::BadVersion | zk::Error::NoNode) => Ok(false),
            Err(e) => Err(classify(key, e)),
        }
    }

    /// Create persistent `key` only if absent; `false`: it exists.
    async fn create_only(&self, key: &str, value: &str) -> DcsResult<bool> {
        let s = self.session().await?;
        match self
            .create(
                &s.client,
                &self.path(key),
                value.as_bytes(),
                zk::CreateMode::Persistent,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(zk::Error::NodeExists) => Ok(false),
            Err(e) => Err(classify(key, e)),
        }
    }

    /// Delete `key` only if its `mzxid` is still `version`; `false`: the
    /// compare lost, nothing deleted.
    async fn compare_and_delete(&self, key: &str, version: &Version) -> DcsResult<bool> {
        let Some(want) = version.as_int() else {
            return Ok(false);
        };
        let s = self.session().await?;
        let path = self.path(key);
        let stat = match s.client.check_stat(&path).await {
            Ok(Some(stat)) => stat,
            Ok(None) => return Ok(false),
            Err(e) => return Err(classify(key, e)),
        };
        if stat.mzxid != want {
            return Ok(false);
        }
        match s.client.delete(&path, Some(stat.version)).await {
            Ok(()) => Ok(true),
            Err(zk::Error::BadVersion | zk::Error::NoNode) => Ok(false),
            Err(e) => Err(classify(key, e)),
        }
    }

    /// Every key of the cluster, one `get_data` each in one multi-read.
    async fn read_cluster(&self, fresh: bool) -> DcsResult<Cluster> {
        let s = self.session().await?;
        let c = &s.client;
        if fresh {
            // A read after `sync` sees every write the quorum committed
            // before it, not only what this server applied.
            match c.sync(&self.prefix).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(classify("sync", e)),
            }
        }
        let top = match c.list_children(&self.prefix).await {
            Ok(v) => v,
            Err(zk::Error::NoNode) => return Ok(Cluster::default()),
            Err(e) => return Err(classify("list", e)),
        };
        let mut rels: Vec<String> = Vec::new();
        for child in &top {
            match child.as_str() {
                "members" => match c.list_children(&self.path("members")).await {
                    Ok(names) => rels.extend(names.into_iter().map(|n| keys::member(&n))),
                    Err(zk::Error::NoNode) => {}
                    Err(e) => return Err(classify("list members", e)),
                },
                "optime" => rels.push(keys::OPTIME_LEADER.to_owned()),
                k => rels.push(k.to_owned()),
            }
        }
        if rels.is_empty() {
            return Ok(Cluster::default());
        }
        let mut reader = c.new_multi_reader();
        for rel in &rels {
            reader
                .add_get_data(&self.path(rel))
                .map_err(|e| classify("read", e))?;
        }
        let results = reader.commit().await.map_err(|e| classify("read", e))?;
        let mut rows = Vec::with_capacity(rels.len());
        for (rel, r) in rels.into_iter().zip(results) {
            match r {
                zk::MultiReadResult::Data { data, stat } => match String::from_utf8(data) {
                    Ok(value) => rows.push((
                        rel,
                        value,
                        Version::from_int(stat.mzxid),
                        (stat.ephemeral_owner != 0)
                            .then(|| SessionId::from_int(stat.ephemeral_owner)),
                    )),
                    // Another tool's bytes: named, and no decision on them.
                    Err(_) => tracing::warn!(
                        event = crate::events::DCS_VALUE_UNREADABLE,
                        znode = %self.path(&rel),
                        "znode value is not UTF-8; ignored"
                    ),
                },
                // Deleted between the listing and the read: absent.
                zk::MultiReadResult::Error {
                    err: zk::Error::NoNode,
                } => {}
                zk::MultiReadResult::Error { err } => return Err(classify(&rel, err)),
                _ => {}
            }
        }
        Ok(Cluster::from_rows(rows))
    }

    async fn touch_member(&self, data: &MemberData) -> DcsResult<()> {
        let s = self.session().await?;
        let path = self.path(&keys::member(&self.name));
        let value = data.to_json();
        match s.client.get_data(&path).await {
            Ok((old, stat)) if stat.ephemeral_owner == s.id => {
                if old != value.as_bytes() {
                    s.client
                        .set_data(&path, value.as_bytes(), None)
                        .await
                        .map_err(|e| classify("member", e))?;
                }
                self.close_retired_without_leader(&s).await;
                return Ok(());
            }
            Ok((_, stat)) => {
                // Another session's (a retired one of mine, or a
                // predecessor's): re-created under mine, as Patroni does.
                match s.client.delete(&path, Some(stat.version)).await {
                    Ok(()) | Err(zk::Error::NoNode) => {}
                    Err(e) => return Err(classify("member", e)),
                }
            }
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(classify("member", e)),
        }
        match self
            .create(
                &s.client,
                &path,
                value.as_bytes(),
                zk::CreateMode::Ephemeral,
            )
            .await
        {
            Ok(_) => {}
            // Another process of my name created it meanwhile: leave it.
            Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(classify("member", e)),
        }
        self.close_retired_without_leader(&s).await;
        Ok(())
    }

    /// Retired sessions are kept only while the leader key is on one of
    /// them; once it is not, they are closed (their member keys go).
    async fn close_retired_without_leader(&self, s: &Session) {
        if lock(&self.state).retired.is_empty() {
            return;
        }
        let owner = match s.client.check_stat(&self.path(keys::LEADER)).await {
            Ok(Some(stat)) => stat.ephemeral_owner,
            Ok(None) => 0,
            Err(_) => return,
        };
        let closing: Vec<Session> = {
            let mut st = lock(&self.state);
            if st.retired.iter().any(|r| r.id == owner) {
                return;
            }
            std::mem::take(&mut st.retired)
        };
        drop(closing);
    }

    async fn attempt_to_acquire_leader(&self) -> DcsResult<LeaderHold> {
        let s = self.session().await?;
        if lock(&self.state).abandoned_acquire {
            let path = self.path(keys::LEADER);
            // Same session, so FIFO: the abandoned create was served before this.
            match s.client.check_stat(&path).await {
                Ok(Some(stat)) if stat.ephemeral_owner == s.id => {
                    match s.client.delete(&path, Some(stat.version)).await {
                        Ok(()) | Err(zk::Error::NoNode | zk::Error::BadVersion) => {}
                        Err(e) => return Err(classify("leader", e)),
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(classify("leader", e)),
            }
            lock(&self.state).abandoned_acquire = false;
        }
        let sent = Instant::now();
        match self
            .create(
                &s.client,
                &self.path(keys::LEADER),
                self.name.as_bytes(),
                zk::CreateMode::Ephemeral,
            )
            .await
        {
            Ok(_) => Ok(LeaderHold::Held {
                expiry: s.expiry(sent),
            }),
            Err(zk::Error::NodeExists) => Ok(LeaderHold::Lost),
            Err(e) => Err(classify("leader", e)),
        }
    }

    async fn update_leader(&self, leader: &Leader) -> DcsResult<LeaderHold> {
        let Some(want) = leader.version.as_int() else {
            return Ok(LeaderHold::Lost);
        };
        let s = self.session().await?;
        let path = self.path(keys::LEADER);
        let sent = Instant::now();
        let stat = match s.client.check_stat(&path).await {
            Ok(Some(stat)) => stat,
            Ok(None) => return Ok(LeaderHold::Lost),
            Err(e) => return Err(classify("leader", e)),
        };
        if stat.mzxid != want {
            return Ok(LeaderHold::Lost);
        }
        if stat.ephemeral_owner == s.id {
            return Ok(LeaderHold::Held {
                expiry: s.expiry(sent),
            });
        }
        if !self.is_mine(stat.ephemeral_owner) {
            return Ok(LeaderHold::Lost);
        }
        // On a session of mine I retired, inherited or lost: moved onto the
        // current one in one multi, conditional on the znode version the
        // stat showed (docs/dcs.md, "ZooKeeper (`ZooKeeperDcs`)": the window this leaves).
        let acls = self.acls();
        let acls = if acls.is_empty() {
            zk::Acls::anyone_all()
        } else {
            zk::Acls::new(&acls)
        };
        let mut w = s.client.new_multi_writer();
        let built = w
            .add_check_version(&path, stat.version)
            .and_then(|()| w.add_delete(&path, Some(stat.version)))
            .and_then(|()| {
                w.add_create(
                    &path,
                    self.name.as_bytes(),
                    &zk::CreateMode::Ephemeral.with_acls(acls),
                )
            });
        built.map_err(|e| classify("leader", e))?;
        match w.commit().await {
            Ok(_) => {
                let retired: Vec<Session> = std::mem::take(&mut lock(&self.state).retired);
                drop(retired);
                Ok(LeaderHold::Held {
                    expiry: s.expiry(sent),
                })
            }
            Err(zk::MultiWriteError::OperationFailed {
                source: zk::Error::BadVersion | zk::Error::NoNode | zk::Error::NodeExists,
                ..
            }) => Ok(LeaderHold::Lost),
            Err(e) => Err(classify("leader", e.into())),
        }
    }

    async fn keep_alive(&self) -> DcsResult<Option<Expiry>> {
        let Some(s) = self.current() else {
            return Ok(None);
        };
        let sent = Instant::now();
        match s.client.check_stat(&self.prefix).await {
            Ok(_) => Ok(Some(s.expiry(sent))),
            Err(zk::Error::SessionExpired) => {
                let mut st = lock(&self.state);
                if st.current.as_ref().is_some_and(|c| c.id == s.id) {
                    st.current = None;
                }
                remember_lost(&mut st.lost, s.id);
                Ok(None)
            }
            Err(e) => Err(classify("keep-alive", e)),
        }
    }

    async fn delete_leader(&self) -> DcsResult<bool> {
        // Without a live session, only a retired or inherited one could
        // own the key; a session is needed to delete it.
        let none_of_mine = {
            let st = lock(&self.state);
            st.retired.is_empty() && st.inherited.is_empty() && st.lost.is_empty()
        };
        let s = match self.current() {
            Some(s) => s,
            None if none_of_mine => return Ok(false),
            None => self.session().await?,
        };
        self.delete_leader_on(&s).await
    }

    async fn delete_leader_on(&self, s: &Session) -> DcsResult<bool> {
        let path = self.path(keys::LEADER);
        let stat = match s.client.check_stat(&path).await {
            Ok(Some(stat)) => stat,
            Ok(None) => return Ok(false),
            Err(e) => return Err(classify("leader", e)),
        };
        if !self.is_mine(stat.ephemeral_owner) {
            return Ok(false);
        }
        match s.client.delete(&path, Some(stat.version)).await {
            Ok(()) => Ok(true),
            Err(zk::Error::NoNode | zk::Error::BadVersion) => Ok(false),
            Err(e) => Err(classify("leader", e)),
        }
    }

    async fn initialize(&self, create: bool, value: &str) -> DcsResult<bool> {
        if !create {
            self.set_or_create(keys::INITIALIZE, value).await?;
            return Ok(true);
        }
        self.create_only(keys::INITIALIZE, value).await
    }

    async fn delete_key(&self, key: &str) -> DcsResult<()> {
        let s = self.session().await?;
        match s.client.delete(&self.path(key), None).await {
            Ok(()) | Err(zk::Error::NoNode) => Ok(()),
            Err(e) => Err(classify(key, e)),
        }
    }

    /// Every znode under the prefix, children first, then the prefix.
    async fn delete_cluster(&self) -> DcsResult<()> {
        let s = self.session().await?;
        let mut order: Vec<String> = Vec::new();
        let mut todo = vec![self.prefix.clone()];
        while let Some(p) = todo.pop() {
            match s.client.list_children(&p).await {
                Ok(children) => todo.extend(children.into_iter().map(|c| format!("{p}/{c}"))),
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(classify("delete_cluster", e)),
            }
            order.push(p);
        }
        for p in order.iter().rev() {
            match s.client.delete(p, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(classify("delete_cluster", e)),
            }
        }
        Ok(())
    }

    /// Close every session of this process, waiting (bounded by the call's
    /// deadline) until the server confirmed each close, so that the
    /// ephemeral keys are gone when this returns.
    async fn release_session(&self) -> DcsResult<()> {
        let sessions: Vec<Session> = {
            let mut st = lock(&self.state);
            let mut v: Vec<Session> = st.current.take().into_iter().collect();
            v.append(&mut st.retired);
            v
        };
        let mut watchers: Vec<zk::StateWatcher> =
            sessions.iter().map(|s| s.client.state_watcher()).collect();
        // Detached sessions (Exhibitor) are closed here, not by the drop.
        let closers: Vec<Arc<Closer>> = sessions
            .iter()
            .filter_map(|s| s.closer.clone())
            .filter(|c| c.disarm())
            .collect();
        drop(sessions);
        for w in &mut watchers {
            while !w.peek_state().is_terminated() {
                w.changed().await;
            }
        }
        for c in closers {
            close_detached(
                c.ensemble.clone(),
                c.auth.clone(),
                c.tls.clone(),
                c.ttl,
                c.info.clone(),
            )
            .await;
        }
        Ok(())
    }
}

/// The servers a new session is made on: the configured ones, or the
/// latest list Exhibitor gave (waiting up to `wait` for the first; none by
/// then is `Unreachable`, so that the daemon goes on without the DCS).
async fn servers_of(
    settings: &ZkSettings,
    ensemble: Option<&Arc<EnsembleProvider>>,
    wait: Duration,
) -> DcsResult<Vec<String>> {
    match ensemble {
        None => Ok(settings.servers.clone()),
        Some(p) => p
            .servers(wait)
            .await
            .map_err(|e| DcsError::Unreachable(format!("exhibitor: {e}"))),
    }
}

/// A new session of `ttl` with `servers`, credentials added; or, given
/// `session`, a client attached to that live session. `detached`: dropping
/// the client does not close the session.
async fn connect(
    settings: &ZkSettings,
    servers: &[String],
    ttl: Duration,
    session: Option<zk::SessionInfo>,
    detached: bool,
) -> DcsResult<zk::Client> {
    if servers.is_empty() {
        return Err(DcsError::Other("zookeeper: no servers configured".into()));
    }
    let mut connector = zk::Client::connector().with_session_timeout(ttl);
    if let Some(info) = session {
        connector = connector.with_session(info);
    }
    if detached {
        connector = connector.with_detached();
    }
    for (scheme, cred) in &settings.auth {
        connector = connector.with_auth(scheme, cred.as_bytes());
    }
    dial(connector, settings.tls.as_ref(), &servers.join(","))
        .await
        .map_err(|e| classify("connect", e))
}

/// Run `f` within `retry_timeout` (`super::bounded`).
fn bounded<'a, T: Send + 'a>(
    inner: &Arc<Inner>,
    what: &'static str,
    f: impl std::future::Future<Output = DcsResult<T>> + Send + 'a,
) -> BoxFuture<'a, DcsResult<T>> {
    super::bounded(inner.retry_timeout(), "zookeeper", what, f)
}

/// Resolves when Exhibitor gave a new server list; never without
/// Exhibitor (or once the provider is gone).
async fn list_changed(lists: &mut Option<tokio::sync::watch::Receiver<Option<Vec<String>>>>) {
    if let Some(rx) = lists
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// Which [`WatchEvent`] a change of `path` (absolute) is.
fn event_of(prefix: &str, path: &str) -> WatchEvent {
    let rel = path
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or("");
    match rel {
        keys::LEADER => WatchEvent::Leader,
        keys::CONFIG => WatchEvent::Config,
        keys::STATUS | keys::OPTIME_LEADER => WatchEvent::Status,
        keys::FAILOVER => WatchEvent::Failover,
        _ => WatchEvent::Other,
    }
}

/// The watch's own session: one recursive persistent watch on the prefix,
/// made again (after a `Lost`) whenever the session breaks.
async fn run_watch(
    settings: ZkSettings,
    ensemble: Option<Arc<EnsembleProvider>>,
    prefix: String,
    ttl: Duration,
    retry: Duration,
    tx: tokio::sync::mpsc::Sender<WatchEvent>,
) {
    loop {
        let attempt = async {
            let servers = servers_of(&settings, ensemble.as_ref(), retry / 2).await?;
            let client = connect(&settings, &servers, ttl, None, false).await?;
            let watcher = client
                .watch(&prefix, zk::AddWatchMode::PersistentRecursive)
                .await
                .map_err(|e| classify("watch", e))?;
            Ok::<_, DcsError>((client, watcher))
        };
        let (client, mut watcher) = match tokio::time::timeout(retry, attempt).await {
            Ok(Ok(cw)) => cw,
            Ok(Err(e)) => {
                if tx.send(WatchEvent::Lost(e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(retry.min(Duration::from_secs(1))).await;
                continue;
            }
            Err(_) => {
                if tx
                    .send(WatchEvent::Lost("zookeeper watch: no answer".into()))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        // Readers read again once the watch is (re)established: what
        // changed while it was away is not reported.
        if tx.send(WatchEvent::Other).await.is_err() {
            return;
        }
        let mut states = client.state_watcher();
        // With Exhibitor: a new server list moves the watch onto it (the
        // watch session holds no key, so it can be made again at will).
        let mut lists = ensemble.as_ref().map(|p| p.subscribe());
        loop {
            let (out, broken) = tokio::select! {
                () = list_changed(&mut lists) => (WatchEvent::Other, true),
                ev = watcher.changed() => match ev.event_type {
                    // Session states come from the state watcher below.
                    zk::EventType::Session => continue,
                    _ => (event_of(&prefix, &ev.path), false),
                },
                st = states.changed() => match st {
                    zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                        (WatchEvent::Other, false)
                    }
                    // Disconnected (or worse): a persistent watch may lose
                    // events across a reconnection (ZOOKEEPER-4698), so the
                    // watch is made again on a new session.
                    st => (WatchEvent::Lost(format!("zookeeper watch: session {st:?}")), true),
                },
                () = tx.closed() => return,
            };
            if tx.send(out).await.is_err() {
                return;
            }
            if broken {
                break;
            }
        }
        drop(client);
    }
}

impl Dcs for ZooKeeperDcs {
    fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        let changed = {
            let mut t = lock(&self.inner.timing);
            let changed = t.ttl != ttl;
            t.ttl = ttl;
            t.retry_timeout = retry_timeout;
            changed
        };
        if changed {
            // A session's timeout is fixed at its creation: the next call
            // makes one of the new length; the old one stays open until
            // the keys on it are moved.
            let mut st = lock(&self.inner.state);
            if let Some(s) = st.current.take() {
                st.retired.push(s);
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
        lock(&self.inner.state).current.as_ref().map(Session::sid)
    }

    fn holds_session(&self, id: &SessionId) -> bool {
        id.as_int().is_some_and(|n| self.inner.is_mine(n))
    }

    fn inherit_session(&self, id: &SessionId) {
        if let Some(n) = id.as_int() {
            let mut st = lock(&self.inner.state);
            if !st.inherited.contains(&n) {
                st.inherited.push(n);
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
            inner.set_or_create(keys::STATUS, &v).await
        })
    }

    fn initialize(&self, create: bool, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        let v = value.to_owned();
        let inner = &self.inner;
        bounded(inner, "initialize", async move {
            inner.initialize(create, &v).await
        })
    }

    fn cancel_initialization(&self) -> BoxFuture<'_, DcsResult<()>> {
        bounded(
            &self.inner,
            "initialize",
            self.inner.delete_key(keys::INITIALIZE),
        )
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
                None => inner.create_only(keys::SYNC, &v).await,
            }
        })
    }

    fn delete_sync_state(&self, version: &Version) -> BoxFuture<'_, DcsResult<bool>> {
        let version = version.clone();
        let inner = &self.inner;
        bounded(inner, "sync", async move {
            inner.compare_and_delete(keys::SYNC, &version).await
        })
    }

    fn delete_cluster(&self) -> BoxFuture<'_, DcsResult<()>> {
        bounded(&self.inner, "delete_cluster", self.inner.delete_cluster())
    }

    fn release_session(&self) -> BoxFuture<'_, DcsResult<()>> {
        bounded(&self.inner, "release_session", self.inner.release_session())
    }

    fn watch(&self) -> BoxStream<'static, WatchEvent> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (ttl, retry) = {
            let t = lock(&self.inner.timing);
            (t.ttl, t.retry_timeout)
        };
        tokio::spawn(run_watch(
            self.inner.settings.clone(),
            self.inner.ensemble.clone(),
            self.inner.prefix.clone(),
            ttl,
            retry,
            tx,
        ));
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|ev| (ev, rx))
        }))
    }
}

impl ZooKeeperDcs {
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
                None => inner.set_or_create(key, &v).await.map(|()| true),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_move_is_tried_again_a_retry_timeout_later_up_to_the_limit() {
        let rt = Duration::from_millis(50);
        let tried = |attempts, ago: Duration| Reattach {
            servers: vec!["h3:2181".into()],
            attempts,
            at: std::time::Instant::now() - ago,
        };
        assert!(!tried(1, Duration::ZERO).due(rt), "not at once");
        assert!(tried(1, rt).due(rt), "again after retry_timeout");
        assert!(tried(REATTACH_TRIES - 1, rt).due(rt));
        assert!(!tried(REATTACH_TRIES, rt * 10).due(rt), "then never");
    }

    #[test]
    fn events_by_key() {
        let p = "/service/b";
        assert_eq!(event_of(p, "/service/b/leader"), WatchEvent::Leader);
        assert_eq!(event_of(p, "/service/b/config"), WatchEvent::Config);
        assert_eq!(event_of(p, "/service/b/status"), WatchEvent::Status);
        assert_eq!(event_of(p, "/service/b/optime/leader"), WatchEvent::Status);
        assert_eq!(event_of(p, "/service/b/failover"), WatchEvent::Failover);
        assert_eq!(event_of(p, "/service/b/members/a"), WatchEvent::Other);
        assert_eq!(event_of(p, "/service/bb/leader"), WatchEvent::Other);
    }

    #[test]
    fn errors_in_two_classes() {
        assert!(matches!(
            classify("x", zk::Error::ConnectionLoss),
            DcsError::Unreachable(_)
        ));
        assert!(matches!(
            classify("x", zk::Error::SessionExpired),
            DcsError::Unreachable(_)
        ));
        assert!(matches!(
            classify("x", zk::Error::NoAuth),
            DcsError::Other(_)
        ));
    }

    #[test]
    fn acl_permissions() {
        let e = AclEntry {
            scheme: "sasl".into(),
            id: "admin".into(),
            perms: crate::config::zookeeper::AclPerms {
                read: true,
                delete: true,
                ..Default::default()
            },
        };
        let acl = acl_of(&e);
        assert_eq!(acl.scheme(), "sasl");
        assert_eq!(acl.id(), "admin");
        assert!(acl.permission().has(zk::Permission::READ));
        assert!(acl.permission().has(zk::Permission::DELETE));
        assert!(!acl.permission().has(zk::Permission::WRITE));
    }

    #[test]
    fn lost_sessions_are_the_last_few() {
        let mut lost = Vec::new();
        for id in [1, 2, 2, 3, 4, 5] {
            remember_lost(&mut lost, id);
        }
        assert_eq!(lost, [2, 3, 4, 5]);
    }

    #[test]
    fn a_granted_timeout_other_than_ttl_is_logged_once() {
        let s = Duration::from_secs;
        let mut logged = None;
        assert!(!first_report_of_granted(&mut logged, s(6), s(6)));
        assert!(first_report_of_granted(&mut logged, s(30), s(20)));
        assert!(!first_report_of_granted(&mut logged, s(30), s(20)), "once");
        assert!(
            first_report_of_granted(&mut logged, s(40), s(20)),
            "a ttl change"
        );
    }

    #[test]
    fn expiry_counts_the_granted_timeout_from_the_send_time() {
        let sent = Instant::now();
        let answered = sent + Duration::from_millis(300);
        let e = expiry_at(sent, answered, Duration::from_secs(4));
        assert_eq!(e.earliest, sent + Duration::from_secs(4));
        assert_eq!(e.latest, answered + Duration::from_secs(6));
    }
}
