//! The cluster as one read of the DCS shows it (docs/dcs.md, "Key layout"), parsed
//! into types. Parsing is lenient where Patroni's readers are lenient.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::member::Member;
use super::sync_key::SyncState;
use super::version::{SessionId, Version};

/// A value together with the version a compare-and-swap must name.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

/// The holder of the leader key.
#[derive(Debug, Clone, PartialEq)]
pub struct Leader {
    pub name: String,
    /// The key's version: what `update_leader` compares and swaps on.
    pub version: Version,
    /// The session the key is attached to (`None`: none, as a key written
    /// by hand may be).
    pub session: Option<SessionId>,
}

/// The `status` key: the leader's last published WAL position.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optime: Option<u64>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub slots: serde_json::Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retain_slots: Vec<String>,
}

impl Status {
    /// Accept the JSON object form and the bare-integer form.
    pub fn parse(raw: &str) -> Option<Status> {
        let v: Value = serde_json::from_str(raw.trim()).ok()?;
        match v {
            Value::Number(n) => Some(Status {
                optime: n.as_u64(),
                ..Status::default()
            }),
            Value::Object(_) => serde_json::from_value(v).ok(),
            _ => None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// A switchover/failover request. The DCS field is `member`; `{}` means none.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Failover {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
}

impl Failover {
    /// JSON object or legacy `leader:candidate` string. `None` = no request.
    pub fn parse(raw: &str) -> Option<Failover> {
        let f = match serde_json::from_str::<Failover>(raw) {
            Ok(f) => f,
            Err(_) => {
                let (l, c) = raw.split_once(':')?;
                Failover {
                    leader: (!l.is_empty()).then(|| l.to_owned()),
                    member: (!c.is_empty()).then(|| c.to_owned()),
                    scheduled_at: None,
                }
            }
        };
        (f.leader.is_some() || f.member.is_some()).then_some(f)
    }
}

/// One `history` line: `[timeline, lsn, reason, timestamp, new_leader]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryLine {
    pub timeline: u64,
    pub lsn: u64,
    pub reason: String,
    pub timestamp: Option<String>,
    pub new_leader: Option<String>,
}

impl HistoryLine {
    pub fn parse_all(raw: &str) -> Option<Vec<HistoryLine>> {
        let v: Vec<Vec<Value>> = serde_json::from_str(raw).ok()?;
        Some(
            v.into_iter()
                .filter_map(|row| {
                    Some(HistoryLine {
                        timeline: row.first()?.as_u64()?,
                        lsn: row.get(1)?.as_u64()?,
                        reason: row.get(2)?.as_str().unwrap_or_default().to_owned(),
                        timestamp: row.get(3).and_then(Value::as_str).map(str::to_owned),
                        new_leader: row.get(4).and_then(Value::as_str).map(str::to_owned),
                    })
                })
                .collect(),
        )
    }

    pub fn to_json_value(&self) -> Value {
        let mut row = vec![
            Value::from(self.timeline),
            Value::from(self.lsn),
            Value::from(self.reason.clone()),
        ];
        if let Some(t) = &self.timestamp {
            row.push(Value::from(t.clone()));
            if let Some(l) = &self.new_leader {
                row.push(Value::from(l.clone()));
            }
        }
        Value::Array(row)
    }
}

/// Everything one read of the cluster prefix returned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cluster {
    /// `None` = key absent; `Some("")` = bootstrap in progress.
    pub initialize: Option<String>,
    /// The raw `config` JSON, if present and an object.
    pub config: Option<Versioned<Value>>,
    pub leader: Option<Leader>,
    /// Members sorted by name.
    pub members: Vec<Member>,
    pub failover: Option<Versioned<Failover>>,
    pub status: Status,
    pub history: Option<Vec<HistoryLine>>,
    /// The `failsafe` key: `{member name: api_url}`; `None` if absent or not
    /// a JSON object (garbage disables the failsafe checks, as in Patroni).
    pub failsafe: Option<BTreeMap<String, String>>,
    /// The `sync` key (docs/replication-modes.md §2); `None` if absent. A
    /// value Patroni would not read is an empty state at the key's
    /// version, so a compare-and-swap can still replace it.
    pub sync: Option<Versioned<SyncState>>,
}

impl Cluster {
    /// Build a cluster from `(relative key, value, mod revision, lease)`
    /// rows as etcd (and the in-memory store) return them: lease 0 is none.
    pub fn from_kvs<I>(rows: I) -> Cluster
    where
        I: IntoIterator<Item = (String, String, i64, i64)>,
    {
        Cluster::from_rows(rows.into_iter().map(|(k, v, rev, lease)| {
            (
                k,
                v,
                Version::from_int(rev),
                SessionId::from_etcd_lease(lease),
            )
        }))
    }

    /// Build a cluster from `(relative key, value, version, session)` rows
    /// as any backend's prefix read returns them.
    pub fn from_rows<I>(rows: I) -> Cluster
    where
        I: IntoIterator<Item = (String, String, Version, Option<SessionId>)>,
    {
        let mut c = Cluster::default();
        let mut optime_leader: Option<u64> = None;
        let mut status: Option<Status> = None;
        for (key, value, version, session) in rows {
            match key.as_str() {
                super::keys::INITIALIZE => c.initialize = Some(value),
                super::keys::CONFIG => {
                    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&value) {
                        c.config = Some(Versioned { value: v, version });
                    }
                }
                super::keys::LEADER => {
                    if !value.is_empty() {
                        c.leader = Some(Leader {
                            name: value,
                            version,
                            session,
                        })
                    }
                }
                super::keys::STATUS => status = Status::parse(&value),
                super::keys::OPTIME_LEADER => optime_leader = value.trim().parse().ok(),
                super::keys::FAILOVER => {
                    c.failover = Failover::parse(&value).map(|f| Versioned { value: f, version })
                }
                super::keys::HISTORY => c.history = HistoryLine::parse_all(&value),
                super::keys::FAILSAFE => c.failsafe = parse_failsafe(&value),
                super::keys::SYNC => {
                    c.sync = Some(Versioned {
                        value: SyncState::parse(&value),
                        version,
                    })
                }
                k => {
                    if let Some(name) = k.strip_prefix(super::keys::MEMBERS)
                        && !name.is_empty()
                        && !name.contains('/')
                    {
                        c.members.push(Member {
                            name: name.to_owned(),
                            data: super::member::MemberData::parse(&value),
                            version,
                            session,
                        });
                    }
                }
            }
        }
        c.status = status.unwrap_or_default();
        if c.status.optime.is_none() {
            c.status.optime = optime_leader;
        }
        c.members.sort_by(|a, b| a.name.cmp(&b.name));
        c
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn leader_name(&self) -> Option<&str> {
        self.leader.as_ref().map(|l| l.name.as_str())
    }

    /// The leader's member record, if both the lock and the record exist.
    pub fn leader_member(&self) -> Option<&Member> {
        self.leader_name().and_then(|n| self.member(n))
    }

    /// The `sync` key's state, empty when the key is absent.
    pub fn sync_state(&self) -> SyncState {
        self.sync
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default()
    }

    /// The version a compare-and-swap of the `sync` key names (`None`:
    /// the key is absent, the write creates it).
    pub fn sync_version(&self) -> Option<&Version> {
        self.sync.as_ref().map(|s| &s.version)
    }

    /// `synchronous_mode` of the `config` key, read as Patroni's
    /// `global_config` reads it: `quorum` (any case), else a boolean; a
    /// missing or unreadable key is off.
    pub fn synchronous_mode(&self) -> crate::config::SyncMode {
        use crate::config::SyncMode;
        if self.is_standby_cluster() {
            // Patroni's `is_synchronous_mode`: never in a standby cluster.
            return SyncMode::Off;
        }
        match self
            .config
            .as_ref()
            .and_then(|c| c.value.get("synchronous_mode"))
        {
            Some(Value::String(s)) if s.eq_ignore_ascii_case("quorum") => SyncMode::Quorum,
            Some(v) if crate::config::json_truthy(v) => SyncMode::On,
            _ => SyncMode::Off,
        }
    }

    /// The `config` key makes this a standby cluster (docs/ha.md §16):
    /// what `/cluster`, `/patroni`, the health checks and `list` show for
    /// its leader.
    pub fn is_standby_cluster(&self) -> bool {
        self.config.as_ref().is_some_and(|c| {
            matches!(
                crate::config::standby_cluster::from_json(c.value.get("standby_cluster")),
                Ok(Some(_))
            )
        })
    }

    /// `sync_standby` or `quorum_standby` when a synchronous mode is on
    /// and the `sync` key lists `name` as a standby (docs/replication-modes.md
    /// §2): what `/cluster`, `/patroni` and `list` show for it.
    pub fn sync_role(&self, name: &str) -> Option<&'static str> {
        use crate::config::SyncMode;
        let mode = self.synchronous_mode();
        if mode == SyncMode::Off || !self.sync_state().matches(name, false) {
            return None;
        }
        Some(if mode == SyncMode::Quorum {
            "quorum_standby"
        } else {
            "sync_standby"
        })
    }

    /// Cluster timeline from `history`: last line's timeline + 1; `[]` = 1.
    pub fn timeline(&self) -> Option<u64> {
        self.history
            .as_ref()
            .map(|h| h.last().map_or(1, |l| l.timeline + 1))
    }
}

/// The `failsafe` value: a JSON object; entries whose value is not a string
/// are skipped.
pub fn parse_failsafe(raw: &str) -> Option<BTreeMap<String, String>> {
    match serde_json::from_str::<Value>(raw).ok()? {
        Value::Object(m) => Some(
            m.into_iter()
                .filter_map(|(k, v)| v.as_str().map(|u| (k, u.to_owned())))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &str, v: &str) -> (String, String, i64, i64) {
        (k.to_owned(), v.to_owned(), 7, 0)
    }

    #[test]
    fn parses_a_cluster() {
        let c = Cluster::from_kvs(vec![
            row("initialize", "7000000000000000001"),
            row("config", r#"{"ttl":30}"#),
            row("leader", "b"),
            row("members/b", r#"{"role":"primary"}"#),
            row("members/a", r#"{"role":"replica"}"#),
            row("members/a/x", r#"{"role":"replica"}"#),
            row("status", r#"{"optime":123}"#),
            row("failover", "{}"),
            row(
                "history",
                r#"[[1,100,"no recovery target specified","2024-01-01T00:00:00+00:00","b"]]"#,
            ),
        ]);
        assert_eq!(c.initialize.as_deref(), Some("7000000000000000001"));
        assert_eq!(c.leader_name(), Some("b"));
        assert_eq!(
            c.members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(c.status.optime, Some(123));
        assert!(c.failover.is_none(), "{{}} is no request");
        assert_eq!(c.timeline(), Some(2));
        assert!(c.leader_member().is_some_and(|m| m.data.is_primary_role()));
    }

    #[test]
    fn failsafe_key() {
        let c = Cluster::from_kvs(vec![row(
            "failsafe",
            r#"{"a":"http://a:8008/patroni","b":"http://b:8008/patroni","x":1}"#,
        )]);
        let f = c.failsafe.unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f["a"], "http://a:8008/patroni");
        assert!(
            Cluster::from_kvs(vec![row("failsafe", "[]")])
                .failsafe
                .is_none()
        );
        assert!(
            Cluster::from_kvs(vec![row("failsafe", "junk")])
                .failsafe
                .is_none()
        );
        assert!(Cluster::default().failsafe.is_none());
    }

    #[test]
    fn sync_key() {
        let c = Cluster::from_kvs(vec![row(
            "sync",
            r#"{"leader":"a","quorum":0,"sync_standby":"b"}"#,
        )]);
        assert!(c.sync_state().matches("b", false));
        assert_eq!(c.sync_version(), Some(&Version::from_int(7)));
        // Garbage is an empty state, but its version is kept for the CAS.
        let c = Cluster::from_kvs(vec![row("sync", "junk")]);
        assert!(c.sync_state().is_empty());
        assert!(c.sync_version().is_some());
        assert!(Cluster::default().sync_version().is_none());
    }

    #[test]
    fn sync_roles_follow_the_mode_and_the_key() {
        let key = row("sync", r#"{"leader":"a","quorum":0,"sync_standby":"b"}"#);
        for (config, want) in [
            (r#"{"synchronous_mode":true}"#, Some("sync_standby")),
            (r#"{"synchronous_mode":"on"}"#, Some("sync_standby")),
            (r#"{"synchronous_mode":"Quorum"}"#, Some("quorum_standby")),
            (r#"{"synchronous_mode":false}"#, None),
            (r#"{}"#, None),
        ] {
            let c = Cluster::from_kvs(vec![row("config", config), key.clone()]);
            assert_eq!(c.sync_role("b"), want, "{config}");
            assert_eq!(c.sync_role("a"), None, "the leader is no standby");
            assert_eq!(c.sync_role("c"), None);
        }
    }

    #[test]
    fn status_fallbacks() {
        let c = Cluster::from_kvs(vec![row("status", "42")]);
        assert_eq!(c.status.optime, Some(42));
        let c = Cluster::from_kvs(vec![row("optime/leader", "43")]);
        assert_eq!(c.status.optime, Some(43));
    }

    #[test]
    fn non_object_config_is_missing() {
        let c = Cluster::from_kvs(vec![row("config", "[]")]);
        assert!(c.config.is_none());
    }

    #[test]
    fn legacy_failover_string() {
        let f = Failover::parse("a:b").unwrap();
        assert_eq!(f.leader.as_deref(), Some("a"));
        assert_eq!(f.member.as_deref(), Some("b"));
    }

    #[test]
    fn history_round_trip() {
        let raw = r#"[[1,100,"r","2024-01-01T00:00:00+00:00","b"],[2,200,"x"]]"#;
        let h = HistoryLine::parse_all(raw).unwrap();
        assert_eq!(h.len(), 2);
        let back: Vec<Value> = h.iter().map(HistoryLine::to_json_value).collect();
        assert_eq!(serde_json::to_string(&back).unwrap(), raw);
    }
}
