//! The state of the emulated Consul: the KV store, sessions, lock delays,
//! the agent's services and checks, and the raft index every write takes.
//! One lock over all of it (one Consul server: every read is consistent).
//!
//! Each rule cites the Consul documentation it comes from; where the
//! documentation is silent, Consul's own behaviour (its state store) is
//! followed and said so.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::duration;

/// Settings of the emulated agent (Consul's agent configuration).
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// `session_ttl_min`: the smallest session TTL accepted (Consul: 10 s
    /// by default; tests lower it as an operator can).
    pub session_ttl_min: Duration,
    /// When a session not renewed is invalidated, as a multiple of its
    /// TTL. Consul documents "between TTL and 2 × TTL" and invalidates at
    /// 2 × TTL (its `SessionTTLMultiplier`); 1.0 gives the earliest
    /// instant the documentation allows.
    pub ttl_multiplier: f64,
    pub node_name: String,
    pub datacenter: String,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            session_ttl_min: Duration::from_secs(10),
            ttl_multiplier: 2.0,
            node_name: "consul-emulator".into(),
            datacenter: "dc1".into(),
        }
    }
}

/// The largest session TTL Consul accepts: 24 h.
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(86_400);
/// Consul caps a session's lock-delay at 60 s.
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
/// Consul's default lock-delay, 15 s.
pub const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
/// The check every session gets when `Checks` is not given.
pub const SERF_HEALTH: &str = "serfHealth";

#[derive(Debug, Clone)]
pub struct Entry {
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    pub flags: u64,
    pub value: Vec<u8>,
    pub session: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Release,
    Delete,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    pub checks: Vec<String>,
    pub behavior: Behavior,
    /// The TTL as given (Consul keeps the string); `None`: no TTL.
    pub ttl_text: Option<String>,
    pub ttl: Option<Duration>,
    pub lock_delay: Duration,
    pub create_index: u64,
    pub modify_index: u64,
    /// When the session is invalidated without a renewal.
    pub deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub id: String,
    pub name: String,
    pub service_id: Option<String>,
    pub status: CheckStatus,
    pub output: String,
    /// An HTTP check's URL, probed every `interval`.
    pub http: Option<String>,
    pub interval: Option<Duration>,
    pub tls_server_name: Option<String>,
    pub tls_skip_verify: bool,
    /// A TTL check: critical when not updated within it.
    pub ttl: Option<Duration>,
    pub ttl_deadline: Option<Instant>,
    pub deregister_critical_after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub enable_tag_override: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

/// An error Consul answers with an HTTP status and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub body: String,
}

impl ApiError {
    pub fn new(status: u16, body: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: body.into(),
        }
    }
}

/// What a KV PUT asks, from its query parameters.
#[derive(Debug, Clone, Default)]
pub struct PutArgs {
    pub flags: Option<u64>,
    pub cas: Option<u64>,
    pub acquire: Option<String>,
    pub release: Option<String>,
}

#[derive(Debug, Default)]
pub struct State {
    /// The raft index: every write takes the next one.
    pub index: u64,
    pub kv: BTreeMap<String, Entry>,
    /// Deleted keys and the index of their deletion: a recursive read's
    /// index covers deletions under its prefix (Consul's tombstones).
    pub tombstones: BTreeMap<String, u64>,
    /// The last index of any KV write (Consul's `kvs` table index).
    pub kv_index: u64,
    pub sessions: HashMap<String, Session>,
    pub lock_delays: HashMap<String, Instant>,
    pub services: BTreeMap<String, Service>,
    pub checks: BTreeMap<String, Check>,
    pub uuid_seq: u64,
}

pub fn now() -> Instant {
    Instant::now()
}

impl State {
    pub fn new() -> State {
        let mut s = State::default();
        // The agent's own node health, always passing: the default check of
        // every session (Consul's gossip failure detector).
        s.checks.insert(
            SERF_HEALTH.into(),
            Check {
                id: SERF_HEALTH.into(),
                name: "Serf Health Status".into(),
                service_id: None,
                status: CheckStatus::Passing,
                output: "Agent alive and reachable".into(),
                http: None,
                interval: None,
                tls_server_name: None,
                tls_skip_verify: false,
                ttl: None,
                ttl_deadline: None,
                deregister_critical_after: None,
            },
        );
        s.index = 1;
        s
    }

    fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    fn new_uuid(&mut self) -> String {
        self.uuid_seq += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let a = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
        let b = self.uuid_seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            a as u16,
            (b >> 48) as u16,
            b & 0xffff_ffff_ffff
        )
    }

    // ---- KV ---------------------------------------------------------------

    /// A single key's read: its entry, and the index a blocking query on it
    /// compares (docs "Blocking Queries": X-Consul-Index). Consul answers the
    /// key's `ModifyIndex` when it exists, the KV table's index when not.
    pub fn kv_get(&self, key: &str) -> (u64, Option<&Entry>) {
        match self.kv.get(key) {
            Some(e) => (e.modify_index, Some(e)),
            None => (self.kv_index.max(1), None),
        }
    }

    /// A recursive read: every key under `prefix`, and the largest
    /// `ModifyIndex` among them or among keys deleted under it (docs: "the
    /// returned X-Consul-Index corresponds to the latest ModifyIndex within
    /// the prefix"); the KV table's index when nothing ever lived there.
    pub fn kv_list(&self, prefix: &str) -> (u64, Vec<(&String, &Entry)>) {
        let entries: Vec<(&String, &Entry)> = self
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .collect();
        let mut idx = entries
            .iter()
            .map(|(_, e)| e.modify_index)
            .max()
            .unwrap_or(0);
        for (_, &t) in self
            .tombstones
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            idx = idx.max(t);
        }
        if idx == 0 {
            idx = self.kv_index;
        }
        (idx.max(1), entries)
    }

    /// `PUT /v1/kv/<key>`. `acquire` wins over `release`, which wins over
    /// `cas` (Consul's HTTP handler sets the operation in that order, so a
    /// `cas` beside `acquire` is not compared). `Ok(false)`: the write was
    /// refused (cas mismatch, lock held, lock-delay, release of a lock not
    /// held); nothing changed.
    pub fn kv_put(&mut self, key: &str, value: Vec<u8>, args: &PutArgs) -> Result<bool, ApiError> {
        let flags = args.flags.unwrap_or(0);
        if let Some(sid) = &args.acquire {
            // docs "Sessions": lock-delay blocks acquisition of a lock
            // released by an invalidated session for that long.
            if let Some(&until) = self.lock_delays.get(key)
                && until > now()
            {
                return Ok(false);
            }
            return self.kv_lock(key, value, flags, sid);
        }
        if let Some(sid) = &args.release {
            return Ok(self.kv_unlock(key, value, flags, sid));
        }
        if let Some(cas) = args.cas {
            // docs "KV Store": cas=0 puts only if the key does not exist;
            // otherwise only if the index matches the key's ModifyIndex.
            let ok = match self.kv.get(key) {
                None => cas == 0,
                Some(e) => cas != 0 && e.modify_index == cas,
            };
            if !ok {
                return Ok(false);
            }
        }
        self.kv_set(key, value, flags);
        Ok(true)
    }

    /// A plain set: keeps the key's session (a value written over a held
    /// lock leaves it held, as Consul's state store does).
    fn kv_set(&mut self, key: &str, value: Vec<u8>, flags: u64) {
        let idx = self.next_index();
        let entry = match self.kv.get(key) {
            Some(e) => Entry {
                create_index: e.create_index,
                modify_index: idx,
                lock_index: e.lock_index,
                flags,
                value,
                session: e.session.clone(),
            },
            None => Entry {
                create_index: idx,
                modify_index: idx,
                lock_index: 0,
                flags,
                value,
                session: None,
            },
        };
        self.store(key, entry, idx);
    }

    fn store(&mut self, key: &str, entry: Entry, idx: u64) {
        self.kv.insert(key.to_owned(), entry);
        self.tombstones.remove(key);
        self.kv_index = idx;
    }

    /// `acquire=<session>`: the session must exist (else Consul answers 500
    /// `invalid session "<id>"`); a key locked by another session is
    /// refused; a new holder increments `LockIndex`; the holder itself may
    /// write again (LockIndex unchanged).
    fn kv_lock(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        sid: &str,
    ) -> Result<bool, ApiError> {
        if sid.is_empty() {
            return Err(ApiError::new(500, "missing session"));
        }
        if !self.sessions.contains_key(sid) {
            return Err(ApiError::new(500, format!("invalid session {sid:?}")));
        }
        let (create_index, lock_index) = match self.kv.get(key) {
            Some(e) if e.session.as_deref() == Some(sid) => (Some(e.create_index), e.lock_index),
            Some(e) if e.session.is_some() => return Ok(false),
            Some(e) => (Some(e.create_index), e.lock_index + 1),
            None => (None, 1),
        };
        let idx = self.next_index();
        let entry = Entry {
            create_index: create_index.unwrap_or(idx),
            modify_index: idx,
            lock_index,
            flags,
            value,
            session: Some(sid.to_owned()),
        };
        self.store(key, entry, idx);
        Ok(true)
    }

    /// `release=<session>`: only the holder releases (writing the value);
    /// anything else is `false`.
    fn kv_unlock(&mut self, key: &str, value: Vec<u8>, flags: u64, sid: &str) -> bool {
        let Some(e) = self.kv.get(key) else {
            return false;
        };
        if e.session.as_deref() != Some(sid) {
            return false;
        }
        let (create_index, lock_index) = (e.create_index, e.lock_index);
        let idx = self.next_index();
        let entry = Entry {
            create_index,
            modify_index: idx,
            lock_index,
            flags,
            value,
            session: None,
        };
        self.store(key, entry, idx);
        true
    }

    /// `DELETE /v1/kv/<key>[?recurse][&cas=<index>]`. With `cas`, the key
    /// is deleted only at that ModifyIndex; a missing key answers `true`
    /// (Consul's state store: nothing to delete). A held lock does not
    /// protect a key from deletion.
    pub fn kv_delete(&mut self, key: &str, recurse: bool, cas: Option<u64>) -> bool {
        if let Some(cas) = cas {
            match self.kv.get(key) {
                None => return true,
                Some(e) if e.modify_index != cas => return false,
                Some(_) => {}
            }
        }
        let keys: Vec<String> = if recurse {
            self.kv
                .range(key.to_owned()..)
                .take_while(|(k, _)| k.starts_with(key))
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            self.kv
                .contains_key(key)
                .then(|| key.to_owned())
                .into_iter()
                .collect()
        };
        let idx = self.next_index();
        for k in keys {
            self.kv.remove(&k);
            self.tombstones.insert(k, idx);
        }
        // A delete of nothing still takes an index (a raft entry).
        self.kv_index = idx;
        true
    }

    /// An entry as `GET /v1/kv` shows it: `Value` base64, `null` when
    /// empty; `Session` only while held.
    pub fn entry_json(key: &str, e: &Entry, with_value: bool) -> Value {
        let mut v = json!({
            "LockIndex": e.lock_index,
            "Key": key,
            "Flags": e.flags,
            "Value": if with_value && !e.value.is_empty() {
                Value::String(base64::engine::general_purpose::STANDARD.encode(&e.value))
            } else {
                Value::Null
            },
            "CreateIndex": e.create_index,
            "ModifyIndex": e.modify_index,
        });
        if let Some(s) = &e.session {
            v["Session"] = Value::String(s.clone());
        }
        v
    }

    // ---- sessions -----------------------------------------------------------

    /// `PUT /v1/session/create`. Field names are matched case-insensitively
    /// (Consul decodes JSON that way; python-consul sends `ttl`, `behavior`,
    /// `lockdelay`, `checks` in lower case).
    pub fn session_create(
        &mut self,
        body: &Value,
        cfg: &EmulatorConfig,
    ) -> Result<String, ApiError> {
        let field = |name: &str| -> Option<&Value> {
            body.as_object()?
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let behavior = match field("Behavior").and_then(Value::as_str).unwrap_or("") {
            "" | "release" => Behavior::Release,
            "delete" => Behavior::Delete,
            other => {
                return Err(ApiError::new(
                    500,
                    format!("Invalid Behavior setting '{other}'"),
                ));
            }
        };
        let ttl_text = field("TTL")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let ttl = match ttl_text {
            None => None,
            Some(t) => {
                let d = duration::parse(t).ok_or_else(|| {
                    ApiError::new(500, format!("Invalid Session TTL '{t}': bad duration"))
                })?;
                // docs "Session HTTP API": TTL between session_ttl_min
                // (10 s by default) and 86400 s.
                if d != Duration::ZERO && (d < cfg.session_ttl_min || d > SESSION_TTL_MAX) {
                    return Err(ApiError::new(
                        500,
                        format!(
                            "Invalid Session TTL '{}', must be between [{}={}]",
                            d.as_nanos(),
                            duration::format(cfg.session_ttl_min),
                            duration::format(SESSION_TTL_MAX)
                        ),
                    ));
                }
                (d != Duration::ZERO).then_some(d)
            }
        };
        let lock_delay = match field("LockDelay") {
            None | Some(Value::Null) => DEFAULT_LOCK_DELAY,
            Some(Value::String(s)) => duration::parse(s).ok_or_else(|| {
                ApiError::new(400, format!("Request decode failed: bad LockDelay {s:?}"))
            })?,
            // A bare number: seconds below 1000, nanoseconds above
            // (Consul's `fixupLockDelay`).
            Some(Value::Number(n)) => {
                let f = n.as_f64().unwrap_or(0.0);
                if f < 1000.0 {
                    Duration::from_secs_f64(f.max(0.0))
                } else {
                    Duration::from_nanos(f as u64)
                }
            }
            Some(other) => {
                return Err(ApiError::new(
                    400,
                    format!("Request decode failed: LockDelay {other}"),
                ));
            }
        }
        .min(MAX_LOCK_DELAY);
        // docs: Checks defaults to ["serfHealth"]; an explicit empty list
        // attaches none.
        let checks: Vec<String> = match field("Checks").or_else(|| field("NodeChecks")) {
            None | Some(Value::Null) => vec![SERF_HEALTH.into()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
            Some(_) => return Err(ApiError::new(400, "Request decode failed: Checks")),
        };
        // docs "Sessions": a session cannot be created with a check that is
        // missing or critical.
        for c in &checks {
            match self.checks.get(c) {
                None => {
                    return Err(ApiError::new(
                        500,
                        format!("Missing check '{c}' registration"),
                    ));
                }
                Some(ch) if ch.status == CheckStatus::Critical => {
                    return Err(ApiError::new(
                        500,
                        format!("Check '{c}' is in critical state"),
                    ));
                }
                Some(_) => {}
            }
        }
        let node = field("Node")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(&cfg.node_name)
            .to_owned();
        if node != cfg.node_name {
            return Err(ApiError::new(
                500,
                format!("Missing node registration '{node}'"),
            ));
        }
        let id = self.new_uuid();
        let idx = self.next_index();
        let session = Session {
            id: id.clone(),
            name: field("Name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            node,
            checks,
            behavior,
            ttl_text: ttl.map(|_| ttl_text.unwrap_or("").to_owned()),
            ttl,
            lock_delay,
            create_index: idx,
            modify_index: idx,
            deadline: ttl.map(|t| now() + t.mul_f64(cfg.ttl_multiplier)),
        };
        self.sessions.insert(id.clone(), session);
        Ok(id)
    }

    /// `PUT /v1/session/renew/<id>`: the timer starts again (a full
    /// `ttl × multiplier` from now); 404 for a session that is gone.
    pub fn session_renew(&mut self, id: &str, cfg: &EmulatorConfig) -> Result<Value, ApiError> {
        let Some(s) = self.sessions.get_mut(id) else {
            return Err(ApiError::new(404, format!("Session id '{id}' not found")));
        };
        if let Some(t) = s.ttl {
            s.deadline = Some(now() + t.mul_f64(cfg.ttl_multiplier));
        }
        Ok(Self::session_json(s))
    }

    /// Invalidate a session (destroyed, expired, or one of its checks went
    /// critical or away): its locks are released (`release`) or its keys
    /// deleted (`delete`), and each of those keys cannot be acquired for the
    /// session's lock-delay. Returns whether it existed.
    pub fn session_invalidate(&mut self, id: &str) -> bool {
        let Some(s) = self.sessions.remove(id) else {
            return false;
        };
        let held: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, e)| e.session.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        let idx = self.next_index();
        let until = now() + s.lock_delay;
        for k in held {
            match s.behavior {
                Behavior::Release => {
                    if let Some(e) = self.kv.get_mut(&k) {
                        e.session = None;
                        e.modify_index = idx;
                    }
                }
                Behavior::Delete => {
                    self.kv.remove(&k);
                    self.tombstones.insert(k.clone(), idx);
                }
            }
            self.kv_index = idx;
            if s.lock_delay > Duration::ZERO {
                self.lock_delays.insert(k, until);
            }
        }
        true
    }

    /// Sessions whose timer ran out, and sessions on a check that is
    /// critical or gone: invalidated. Returns whether anything changed.
    pub fn expire(&mut self) -> bool {
        let t = now();
        for c in self.checks.values_mut() {
            if let Some(d) = c.ttl_deadline
                && d <= t
                && c.status != CheckStatus::Critical
            {
                c.status = CheckStatus::Critical;
                c.output = "TTL expired".into();
            }
        }
        let dead: Vec<String> = self
            .sessions
            .values()
            .filter(|s| {
                s.deadline.is_some_and(|d| d <= t)
                    || s.checks.iter().any(|c| {
                        self.checks
                            .get(c)
                            .is_none_or(|ch| ch.status == CheckStatus::Critical)
                    })
            })
            .map(|s| s.id.clone())
            .collect();
        let changed = !dead.is_empty();
        for id in dead {
            self.session_invalidate(&id);
        }
        changed
    }

    /// The earliest instant something times out (a session or a TTL check).
    pub fn next_deadline(&self) -> Option<Instant> {
        let s = self.sessions.values().filter_map(|s| s.deadline);
        let c = self
            .checks
            .values()
            .filter(|c| c.status != CheckStatus::Critical)
            .filter_map(|c| c.ttl_deadline);
        s.chain(c).min()
    }

    /// A leader election gives every session a fresh timer (docs
    /// "Sessions": the TTL is renewed on leader failover); what a restarted
    /// single server does.
    pub fn reset_session_timers(&mut self, cfg: &EmulatorConfig) {
        let t = now();
        for s in self.sessions.values_mut() {
            if let Some(ttl) = s.ttl {
                s.deadline = Some(t + ttl.mul_f64(cfg.ttl_multiplier));
            }
        }
    }

    pub fn session_json(s: &Session) -> Value {
        json!({
            "ID": s.id,
            "Name": s.name,
            "Node": s.node,
            "Checks": s.checks,
            "NodeChecks": s.checks,
            "ServiceChecks": Value::Null,
            "LockDelay": u64::try_from(s.lock_delay.as_nanos()).unwrap_or(u64::MAX),
            "Behavior": match s.behavior { Behavior::Release => "release", Behavior::Delete => "delete" },
            "TTL": s.ttl_text.clone().unwrap_or_default(),
            "CreateIndex": s.create_index,
            "ModifyIndex": s.modify_index,
        })
    }

    // ---- transactions -------------------------------------------------------

    /// `PUT /v1/txn` with KV operations only: every operation applies, in
    /// order, or none does (docs "Transaction HTTP API"). `Ok` holds the
    /// results, `Err` the errors (HTTP 409).
    pub fn txn(&mut self, ops: &[Value]) -> Result<Vec<Value>, Vec<Value>> {
        let saved = (
            self.index,
            self.kv.clone(),
            self.tombstones.clone(),
            self.kv_index,
        );
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let kv = ci_field(op, "KV").cloned().unwrap_or(Value::Null);
            match self.txn_op(&kv) {
                Ok(Some(r)) => results.push(json!({ "KV": r })),
                Ok(None) => {}
                Err(what) => errors.push(json!({ "OpIndex": i, "What": what })),
            }
        }
        if errors.is_empty() {
            Ok(results)
        } else {
            (self.index, self.kv, self.tombstones, self.kv_index) = saved;
            Err(errors)
        }
    }

    fn txn_op(&mut self, kv: &Value) -> Result<Option<Value>, String> {
        let verb = ci_field(kv, "Verb").and_then(Value::as_str).unwrap_or("");
        let key = ci_field(kv, "Key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let value = match ci_field(kv, "Value").and_then(Value::as_str) {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("bad value: {e}"))?,
            None => Vec::new(),
        };
        let flags = ci_field(kv, "Flags").and_then(Value::as_u64).unwrap_or(0);
        let index = ci_field(kv, "Index").and_then(Value::as_u64).unwrap_or(0);
        let session = ci_field(kv, "Session")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let meta = |s: &State| s.kv.get(&key).map(|e| State::entry_json(&key, e, false));
        match verb {
            "set" => {
                self.kv_set(&key, value, flags);
                Ok(meta(self))
            }
            "cas" => {
                let ok = match self.kv.get(&key) {
                    None => index == 0,
                    Some(e) => index != 0 && e.modify_index == index,
                };
                if !ok {
                    return Err(format!("failed to set key {key:?}, index is stale"));
                }
                self.kv_set(&key, value, flags);
                Ok(meta(self))
            }
            "lock" => match self.kv_lock(&key, value, flags, &session) {
                Ok(true) => Ok(meta(self)),
                Ok(false) => Err(format!("failed to lock key {key:?}, lock is already held")),
                Err(e) => Err(e.body),
            },
            "unlock" => {
                if self.kv_unlock(&key, value, flags, &session) {
                    Ok(meta(self))
                } else {
                    Err(format!(
                        "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                    ))
                }
            }
            "get" => match self.kv.get(&key) {
                Some(e) => Ok(Some(State::entry_json(&key, e, true))),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            "check-index" => match self.kv.get(&key) {
                Some(e) if e.modify_index == index => Ok(None),
                Some(_) => Err(format!(
                    "current modify index {index} for key {key:?} doesn't match"
                )),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            "check-session" => match self.kv.get(&key) {
                Some(e) if e.session.as_deref() == Some(session.as_str()) => Ok(None),
                Some(_) => Err(format!(
                    "failed session check for key {key:?}, current session does not match {session:?}"
                )),
                None => Err(format!("key {key:?} doesn't exist")),
            },
            "check-not-exists" => match self.kv.get(&key) {
                None => Ok(None),
                Some(_) => Err(format!("key {key:?} exists")),
            },
            "delete" => {
                self.kv_delete(&key, false, None);
                Ok(None)
            }
            "delete-tree" => {
                self.kv_delete(&key, true, None);
                Ok(None)
            }
            "delete-cas" => {
                if self.kv_delete(&key, false, Some(index)) {
                    Ok(None)
                } else {
                    Err(format!("failed to delete key {key:?}, index is stale"))
                }
            }
            other => Err(format!("unknown KV verb {other:?}")),
        }
    }
}

/// A field of a JSON object, its name matched case-insensitively (Go's
/// JSON decoding, which Consul uses).
pub fn ci_field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}
