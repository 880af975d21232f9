//! In-memory backend with the etcd backend's semantics, for unit tests and
//! simulations.
//!
//! One [`MemoryStore`] plays the etcd cluster; several [`MemoryDcs`] nodes
//! share it through an `Arc`. Revisions grow globally as in etcd, leases
//! expire by tokio time (so `tokio::time::pause` drives them), watches are fed
//! by a broadcast channel, and [`MemoryStore::set_reachable`] simulates an
//! outage.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::etcd::{classify_rel_key, lease_ttl_secs};
use super::{
    Cluster, Dcs, DcsError, DcsResult, Expiry, Leader, LeaderHold, MemberData, Status, Version,
    WatchEvent, keys,
};
use crate::sync;

#[derive(Debug, Clone)]
struct Entry {
    value: String,
    create_revision: i64,
    mod_revision: i64,
    /// 0 = no lease.
    lease: i64,
}

#[derive(Debug, Clone, Copy)]
struct LeaseInfo {
    ttl: Duration,
    deadline: Instant,
}

#[derive(Debug)]
struct State {
    revision: i64,
    next_lease: i64,
    kvs: BTreeMap<String, Entry>,
    leases: HashMap<i64, LeaseInfo>,
}

#[derive(Debug, Clone)]
enum Msg {
    /// A key (full path) was written or deleted.
    Changed(String),
    /// The store became unreachable.
    Outage,
}

/// The shared "cluster" of the in-memory backend.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    tx: broadcast::Sender<Msg>,
    reachable: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Arc<MemoryStore> {
        let (tx, _) = broadcast::channel(1024);
        Arc::new(MemoryStore {
            state: Mutex::new(State {
                revision: 1,
                next_lease: 0x1000,
                kvs: BTreeMap::new(),
                leases: HashMap::new(),
            }),
            tx,
            reachable: AtomicBool::new(true),
        })
    }

    /// `false`: every call of every node fails with `Unreachable` (leases
    /// keep running down, as on a real server the client cannot reach).
    pub fn set_reachable(&self, reachable: bool) {
        let was = self.reachable.swap(reachable, Ordering::SeqCst);
        if was && !reachable {
            let _ = self.tx.send(Msg::Outage);
        }
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::SeqCst)
    }

    /// The current revision (last write's revision).
    pub fn revision(&self) -> i64 {
        sync::lock(&self.state).revision
    }

    /// Run `f` on the state after expiring due leases; broadcast every key
    /// the expiry or `f` changed.
    fn with_state<T>(
        &self,
        f: impl FnOnce(&mut State, &mut Vec<String>) -> DcsResult<T>,
    ) -> DcsResult<T> {
        if !self.is_reachable() {
            return Err(DcsError::Unreachable("memory store switched off".into()));
        }
        let mut changed = Vec::new();
        let r = {
            let mut st = sync::lock(&self.state);
            st.expire(Instant::now(), &mut changed);
            f(&mut st, &mut changed)
        };
        for k in changed {
            let _ = self.tx.send(Msg::Changed(k));
        }
        r
    }

    /// Expire due leases now (the watch calls this at lease deadlines so
    /// expiries are seen without other traffic).
    fn expire_now(&self) {
        let mut changed = Vec::new();
        sync::lock(&self.state).expire(Instant::now(), &mut changed);
        for k in changed {
            let _ = self.tx.send(Msg::Changed(k));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let st = sync::lock(&self.state);
        st.leases.values().map(|l| l.deadline).min()
    }
}

impl State {
    fn expire(&mut self, now: Instant, changed: &mut Vec<String>) {
        let dead: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.revoke(id, changed);
        }
    }

    fn revoke(&mut self, id: i64, changed: &mut Vec<String>) -> bool {
        if self.leases.remove(&id).is_none() {
            return false;
        }
        let keys: Vec<String> = self
            .kvs
            .iter()
            .filter(|(_, e)| e.lease == id)
            .map(|(k, _)| k.clone())
            .collect();
        if !keys.is_empty() {
            self.revision += 1;
        }
        for k in keys {
            self.kvs.remove(&k);
            changed.push(k);
        }
        true
    }

    fn grant(&mut self, ttl: Duration) -> i64 {
        self.next_lease += 1;
        let id = self.next_lease;
        self.leases.insert(
            id,
            LeaseInfo {
                ttl,
                deadline: Instant::now() + ttl,
            },
        );
        id
    }

    fn keepalive(&mut self, id: i64) -> bool {
        match self.leases.get_mut(&id) {
            Some(l) => {
                l.deadline = Instant::now() + l.ttl;
                true
            }
            None => false,
        }
    }

    fn put(&mut self, key: &str, value: &str, lease: i64, changed: &mut Vec<String>) {
        self.revision += 1;
        let rev = self.revision;
        let create_revision = self.kvs.get(key).map_or(rev, |e| e.create_revision);
        self.kvs.insert(
            key.to_owned(),
            Entry {
                value: value.to_owned(),
                create_revision,
                mod_revision: rev,
                lease,
            },
        );
        changed.push(key.to_owned());
    }

    fn delete(&mut self, key: &str, changed: &mut Vec<String>) -> bool {
        if self.kvs.remove(key).is_some() {
            self.revision += 1;
            changed.push(key.to_owned());
            true
        } else {
            false
        }
    }

    fn mod_revision(&self, key: &str) -> i64 {
        self.kvs.get(key).map_or(0, |e| e.mod_revision)
    }

    /// When lease `id` ends unless renewed, on the process clock the HA
    /// code uses (the store runs on tokio's, which tests pause): exactly
    /// known here, so `earliest` and `latest` are the same instant.
    fn expiry(&self, id: i64) -> Option<Expiry> {
        let l = self.leases.get(&id)?;
        let at = std::time::Instant::now() + l.deadline.saturating_duration_since(Instant::now());
        Some(Expiry {
            earliest: at,
            latest: at,
        })
    }
}

/// One node's view of a [`MemoryStore`], implementing [`Dcs`].
pub struct MemoryDcs {
    store: Arc<MemoryStore>,
    prefix: String,
    member_name: String,
    timing: Mutex<(Duration, Duration)>,
    lease: Mutex<Option<i64>>,
    /// Leases this node dropped on a ttl change (as the etcd backend's).
    retired: Mutex<Vec<i64>>,
}

impl MemoryDcs {
    pub fn new(
        store: Arc<MemoryStore>,
        prefix: String,
        member_name: String,
        ttl: Duration,
        retry_timeout: Duration,
    ) -> MemoryDcs {
        MemoryDcs {
            store,
            prefix: prefix.trim_end_matches('/').to_owned(),
            member_name,
            timing: Mutex::new((ttl, retry_timeout)),
            lease: Mutex::new(None),
            retired: Mutex::new(Vec::new()),
        }
    }

    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }

    /// The lease currently held (for tests).
    pub fn lease_id(&self) -> Option<i64> {
        *sync::lock(&self.lease)
    }

    fn key(&self, rel: &str) -> String {
        keys::path(&self.prefix, rel)
    }

    fn lease_ttl(&self) -> Duration {
        Duration::from_secs(lease_ttl_secs(sync::lock(&self.timing).0) as u64)
    }

    /// One keepalive of our lease, granting a new one if we have none or it
    /// is gone (etcd: lease-not-found => grant and retry).
    fn keepalive(&self, st: &mut State) -> i64 {
        let mut l = sync::lock(&self.lease);
        if let Some(id) = *l
            && st.keepalive(id)
        {
            return id;
        }
        let id = st.grant(self.lease_ttl());
        *l = Some(id);
        id
    }

    fn op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Self, &mut State, &mut Vec<String>) -> DcsResult<T> + Send + 'static,
    ) -> BoxFuture<'_, DcsResult<T>> {
        async move { self.store.with_state(|st, ch| f(self, st, ch)) }.boxed()
    }

    /// Every lease of this node: the current one and the retired ones.
    fn own_leases(&self) -> Vec<i64> {
        let mut ours: Vec<i64> = sync::lock(&self.lease).iter().copied().collect();
        ours.extend(sync::lock(&self.retired).iter().copied());
        ours
    }

    fn cas_put(
        &self,
        rel: &'static str,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        let value = value.to_owned();
        let version = version.map(|v| v.as_int());
        self.op(move |me, st, ch| {
            let key = me.key(rel);
            // As etcd: a version not handed out never matches, a missing
            // key is at revision 0.
            if let Some(v) = version
                && Some(st.mod_revision(&key)) != v
            {
                return Ok(false);
            }
            st.put(&key, &value, 0, ch);
            Ok(true)
        })
    }
}

impl Dcs for MemoryDcs {
    fn session(&self) -> Option<crate::dcs::SessionId> {
        (*sync::lock(&self.lease)).map(crate::dcs::SessionId::from_int)
    }

    fn holds_session(&self, id: &crate::dcs::SessionId) -> bool {
        id.as_int().is_some_and(|n| self.own_leases().contains(&n))
    }

    fn inherit_session(&self, id: &crate::dcs::SessionId) {
        if let Some(n) = id.as_int() {
            let mut retired = sync::lock(&self.retired);
            if !retired.contains(&n) {
                retired.push(n);
            }
        }
    }

    fn set_timing(&self, ttl: Duration, retry_timeout: Duration) {
        let mut t = sync::lock(&self.timing);
        if lease_ttl_secs(t.0) != lease_ttl_secs(ttl)
            && let Some(old) = sync::lock(&self.lease).take()
        {
            sync::lock(&self.retired).push(old);
        }
        *t = (ttl, retry_timeout);
    }

    fn load_cluster(&self) -> BoxFuture<'_, DcsResult<Cluster>> {
        self.op(|me, st, _| {
            let dir = format!("{}/", me.prefix);
            let rows: Vec<_> = st
                .kvs
                .range(dir.clone()..)
                .take_while(|(k, _)| k.starts_with(&dir))
                .map(|(k, e)| {
                    (
                        k[dir.len()..].to_owned(),
                        e.value.clone(),
                        e.mod_revision,
                        e.lease,
                    )
                })
                .collect();
            Ok(Cluster::from_kvs(rows))
        })
    }

    fn touch_member(&self, data: &MemberData) -> BoxFuture<'_, DcsResult<()>> {
        let value = data.to_json();
        self.op(move |me, st, ch| {
            let lease = me.keepalive(st);
            let key = me.key(&keys::member(&me.member_name));
            let same = st
                .kvs
                .get(&key)
                .is_some_and(|e| e.value == value && e.lease == lease);
            if !same {
                st.put(&key, &value, lease, ch);
            }
            Ok(())
        })
    }

    fn attempt_to_acquire_leader(&self) -> BoxFuture<'_, DcsResult<LeaderHold>> {
        self.op(|me, st, ch| {
            // Renewed first, as the etcd backend does.
            let lease = me.keepalive(st);
            let key = me.key(keys::LEADER);
            if st.kvs.contains_key(&key) {
                return Ok(LeaderHold::Lost);
            }
            st.put(&key, &me.member_name, lease, ch);
            Ok(hold(st, lease))
        })
    }

    fn update_leader(&self, leader: &Leader) -> BoxFuture<'_, DcsResult<LeaderHold>> {
        let version = leader.version.as_int();
        self.op(move |me, st, ch| {
            let lease = me.keepalive(st);
            let key = me.key(keys::LEADER);
            let retired = sync::lock(&me.retired).clone();
            // A compare on the version given and on a lease of ours, never
            // on the name alone (docs/dcs.md, "leader").
            match st.kvs.get(&key) {
                Some(e) if Some(e.mod_revision) == version && e.lease == lease => {
                    Ok(hold(st, lease))
                }
                Some(e) if Some(e.mod_revision) == version && retired.contains(&e.lease) => {
                    st.put(&key, &me.member_name, lease, ch);
                    Ok(hold(st, lease))
                }
                _ => Ok(LeaderHold::Lost),
            }
        })
    }

    fn keep_alive(&self) -> BoxFuture<'_, DcsResult<Option<Expiry>>> {
        self.op(|me, st, _| {
            let mut l = sync::lock(&me.lease);
            match *l {
                Some(id) if st.keepalive(id) => Ok(st.expiry(id)),
                Some(_) => {
                    *l = None;
                    Ok(None)
                }
                None => Ok(None),
            }
        })
    }

    fn delete_leader(&self) -> BoxFuture<'_, DcsResult<bool>> {
        let ours = self.own_leases();
        self.op(move |me, st, ch| {
            let key = me.key(keys::LEADER);
            let mine = st.kvs.get(&key).is_some_and(|e| ours.contains(&e.lease));
            if mine {
                st.delete(&key, ch);
            }
            Ok(mine)
        })
    }

    fn write_status(&self, status: &Status) -> BoxFuture<'_, DcsResult<()>> {
        let value = status.to_json();
        self.op(move |me, st, ch| {
            st.put(&me.key(keys::STATUS), &value, 0, ch);
            Ok(())
        })
    }

    fn initialize(&self, create: bool, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        let value = value.to_owned();
        self.op(move |me, st, ch| {
            let key = me.key(keys::INITIALIZE);
            if create && st.kvs.contains_key(&key) {
                return Ok(false);
            }
            st.put(&key, &value, 0, ch);
            Ok(true)
        })
    }

    fn cancel_initialization(&self) -> BoxFuture<'_, DcsResult<()>> {
        self.op(|me, st, ch| {
            st.delete(&me.key(keys::INITIALIZE), ch);
            Ok(())
        })
    }

    fn set_config_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        self.cas_put(keys::CONFIG, value, version)
    }

    fn set_failover_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        self.cas_put(keys::FAILOVER, value, version)
    }

    fn set_history_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        self.cas_put(keys::HISTORY, value, None)
    }

    fn set_failsafe_value(&self, value: &str) -> BoxFuture<'_, DcsResult<bool>> {
        self.cas_put(keys::FAILSAFE, value, None)
    }

    fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<&Version>,
    ) -> BoxFuture<'_, DcsResult<bool>> {
        let value = value.to_owned();
        let version = version.map(|v| v.as_int());
        self.op(move |me, st, ch| {
            let key = me.key(keys::SYNC);
            // As etcd: no version = the key must be absent (revision 0).
            let want = version.unwrap_or(Some(0));
            if Some(st.mod_revision(&key)) != want {
                return Ok(false);
            }
            st.put(&key, &value, 0, ch);
            Ok(true)
        })
    }

    fn delete_sync_state(&self, version: &Version) -> BoxFuture<'_, DcsResult<bool>> {
        let version = version.as_int();
        self.op(move |me, st, ch| {
            let key = me.key(keys::SYNC);
            if version.is_none_or(|v| v == 0 || st.mod_revision(&key) != v) {
                return Ok(false);
            }
            Ok(st.delete(&key, ch))
        })
    }

    fn delete_cluster(&self) -> BoxFuture<'_, DcsResult<()>> {
        self.op(|me, st, ch| {
            let dir = format!("{}/", me.prefix);
            let doomed: Vec<String> = st
                .kvs
                .range(dir.clone()..)
                .take_while(|(k, _)| k.starts_with(&dir))
                .map(|(k, _)| k.clone())
                .collect();
            if !doomed.is_empty() {
                st.revision += 1;
            }
            for k in doomed {
                st.kvs.remove(&k);
                ch.push(k);
            }
            Ok(())
        })
    }

    fn release_session(&self) -> BoxFuture<'_, DcsResult<()>> {
        self.op(|me, st, ch| {
            if let Some(id) = sync::lock(&me.lease).take() {
                st.revoke(id, ch);
            }
            for id in sync::lock(&me.retired).drain(..) {
                st.revoke(id, ch);
            }
            Ok(())
        })
    }

    fn watch(&self) -> BoxStream<'static, WatchEvent> {
        // Subscribe now, so changes made right after `watch()` are seen.
        let rx = self.store.tx.subscribe();
        let store = self.store.clone();
        let dir = format!("{}/", self.prefix);
        futures_util::stream::unfold((rx, store, dir), |(mut rx, store, dir)| async move {
            loop {
                let deadline = store.next_deadline();
                let msg = tokio::select! {
                    m = rx.recv() => m,
                    _ = sleep_until_opt(deadline) => {
                        store.expire_now();
                        continue;
                    }
                };
                let ev = match msg {
                    Ok(Msg::Changed(k)) => match k.strip_prefix(&dir) {
                        Some(rel) => classify_rel_key(rel),
                        None => continue,
                    },
                    Ok(Msg::Outage) => WatchEvent::Lost("memory store switched off".into()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        WatchEvent::Lost(format!("watch lagged by {n} events"))
                    }
                    // The store owns the sender and we hold the store.
                    Err(broadcast::error::RecvError::Closed) => {
                        futures_util::future::pending::<()>().await;
                        continue;
                    }
                };
                return Some((ev, (rx, store, dir)));
            }
        })
        .boxed()
    }
}

/// `Held` with the store's expiry of `lease`, which was just renewed or
/// granted (so it exists).
fn hold(st: &State, lease: i64) -> LeaderHold {
    match st.expiry(lease) {
        Some(expiry) => LeaderHold::Held { expiry },
        None => LeaderHold::Lost,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => futures_util::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(store: &Arc<MemoryStore>, name: &str) -> MemoryDcs {
        MemoryDcs::new(
            store.clone(),
            "/service/t".into(),
            name.into(),
            Duration::from_secs(30),
            Duration::from_secs(10),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn leases_expire_on_tokio_time() {
        let store = MemoryStore::new();
        let a = node(&store, "a");
        a.touch_member(&MemberData::default()).await.unwrap();
        assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(a.load_cluster().await.unwrap().leader_name(), Some("a"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let c = a.load_cluster().await.unwrap();
        assert!(c.leader.is_none() && c.members.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn watch_sees_expiry_without_other_traffic() {
        let store = MemoryStore::new();
        let a = node(&store, "a");
        assert!(a.attempt_to_acquire_leader().await.unwrap().is_held());
        let mut w = a.watch();
        assert_eq!(w.next().await, Some(WatchEvent::Leader));
    }

    #[tokio::test]
    async fn revisions_are_global() {
        let store = MemoryStore::new();
        let a = node(&store, "a");
        let r0 = store.revision();
        a.set_config_value("{}", None).await.unwrap();
        a.write_status(&Status::default()).await.unwrap();
        assert_eq!(store.revision(), r0 + 2);
        let c = a.load_cluster().await.unwrap();
        assert_eq!(c.config.unwrap().version, Version::from_int(r0 + 1));
    }

    #[tokio::test]
    async fn ttl_change_regrants() {
        let store = MemoryStore::new();
        let a = node(&store, "a");
        a.touch_member(&MemberData::default()).await.unwrap();
        let l1 = a.lease_id().unwrap();
        a.set_timing(Duration::from_secs(20), Duration::from_secs(10));
        assert_eq!(a.lease_id(), None);
        a.touch_member(&MemberData::default()).await.unwrap();
        let l2 = a.lease_id().unwrap();
        assert_ne!(l1, l2);
        let c = a.load_cluster().await.unwrap();
        assert_eq!(
            c.member("a").unwrap().session,
            Some(crate::dcs::SessionId::from_int(l2))
        );
    }
}
