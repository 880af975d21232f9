//! A DCS with etcd's semantics as the backends use them: keys optionally
//! attached to a lease (one per node), leases expiring `ttl` after their last
//! keepalive, atomic create of the leader key, owner-checked delete. Whether
//! a node can reach it is decided by the caller (outages, partitions).

use std::collections::BTreeMap;

use pgpilot::dcs::{Cluster, Version, keys};

pub struct Entry {
    pub value: String,
    pub version: i64,
    pub lease: i64,
}

#[derive(Default)]
pub struct SimDcs {
    pub kv: BTreeMap<String, Entry>,
    rev: i64,
    next_lease: i64,
    /// lease id -> expiry (virtual ms).
    pub leases: BTreeMap<i64, u64>,
    /// `load` parsed, until the next change of `kv` (parsing every
    /// member's JSON on every read is most of a run's time).
    cache: std::cell::RefCell<Option<Cluster>>,
}

impl SimDcs {
    pub fn load(&self) -> Cluster {
        if let Some(c) = self.cache.borrow().as_ref() {
            return c.clone();
        }
        let c = self.parse();
        *self.cache.borrow_mut() = Some(c.clone());
        c
    }

    fn parse(&self) -> Cluster {
        Cluster::from_kvs(
            self.kv
                .iter()
                .map(|(k, e)| (k.clone(), e.value.clone(), e.version, e.lease)),
        )
    }

    pub fn put(&mut self, key: &str, value: &str, lease: i64) {
        self.rev += 1;
        self.cache.take();
        self.kv.insert(
            key.to_owned(),
            Entry {
                value: value.to_owned(),
                version: self.rev,
                lease,
            },
        );
    }

    /// Compare-and-swap on the version (`None`: create only if absent),
    /// no lease; whether it went through.
    pub fn put_cas(&mut self, key: &str, value: &str, version: Option<&Version>) -> bool {
        let current = self.kv.get(key).map(|e| Version::from_int(e.version));
        if current.as_ref() != version {
            return false;
        }
        self.put(key, value, 0);
        true
    }

    /// Delete `key` if its version is still `version`.
    pub fn delete_cas(&mut self, key: &str, version: &Version) -> bool {
        match self.kv.get(key) {
            Some(e) if Version::from_int(e.version) == *version => self.delete(key),
            _ => false,
        }
    }

    pub fn delete(&mut self, key: &str) -> bool {
        self.cache.take();
        self.kv.remove(key).is_some()
    }

    /// Drop expired leases and their keys; returns the removed keys.
    pub fn expire(&mut self, now: u64) -> Vec<String> {
        let dead: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, exp)| **exp <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut gone = Vec::new();
        for id in dead {
            self.leases.remove(&id);
            let keys: Vec<String> = self
                .kv
                .iter()
                .filter(|(_, e)| e.lease == id)
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                self.cache.take();
                self.kv.remove(&k);
                gone.push(k);
            }
        }
        gone
    }

    pub fn grant(&mut self, now: u64, ttl: u64) -> i64 {
        self.next_lease += 1;
        self.leases.insert(self.next_lease, now + ttl);
        self.next_lease
    }

    /// etcd keepalive: refresh `lease` if alive, else grant a new one.
    pub fn keepalive(&mut self, lease: Option<i64>, now: u64, ttl: u64) -> i64 {
        if let Some(id) = lease
            && let Some(exp) = self.leases.get_mut(&id)
        {
            *exp = now + ttl;
            return id;
        }
        self.grant(now, ttl)
    }

    /// `Dcs::keep_alive`: refresh `lease` if alive; never grants one.
    pub fn renew(&mut self, lease: Option<i64>, now: u64, ttl: u64) -> bool {
        match lease.and_then(|id| self.leases.get_mut(&id)) {
            Some(exp) => {
                *exp = now + ttl;
                true
            }
            None => false,
        }
    }

    /// `ensure_lease`: the lease we hold if alive (no keepalive), else a new one.
    pub fn live_lease(&mut self, lease: Option<i64>, now: u64, ttl: u64) -> i64 {
        match lease {
            Some(id) if self.leases.contains_key(&id) => id,
            _ => self.grant(now, ttl),
        }
    }

    /// After an outage modelled as a quorum loss, etcd's new leader extends
    /// every lease by its ttl.
    pub fn extend_all(&mut self, now: u64, ttl: u64) {
        for exp in self.leases.values_mut() {
            *exp = (*exp).max(now + ttl);
        }
    }

    pub fn leader(&self) -> Option<&str> {
        self.kv
            .get(keys::LEADER)
            .map(|e| e.value.as_str())
            .filter(|v| !v.is_empty())
    }
}
