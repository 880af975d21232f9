//! The status document of `GET /patroni` (docs/rest-api.md, "GET /patroni: the
//! status document"), also the body of every health-check reply. Pure: built
//! from the elector's and the supervisor's answers only.

use std::time::UNIX_EPOCH;

use serde_json::{Map, Value, json};

use crate::api::cluster::cluster_paused;
use crate::ha::{DataDir, PgRole};
use crate::messages::elector::HaState;
use crate::messages::supervisor::{PgState, PgStatus};

/// PostgreSQL answered the supervisor's status query (its role is known).
pub(crate) fn answering(pg: &PgStatus) -> bool {
    pg.facts.role.is_some()
}

/// The `state` field: the supervisor's state, except that a postmaster that
/// runs but did not answer is `unknown`, as Patroni reports it.
pub(crate) fn state_str(pg: &PgStatus) -> &'static str {
    if pg.state == PgState::Running && !answering(pg) {
        PgState::Unknown.as_str()
    } else {
        pg.state.as_str()
    }
}

/// The `role` field: what PostgreSQL says when it answers, otherwise what
/// the data directory says it last was.
pub(crate) fn role_str(pg: &PgStatus) -> &'static str {
    pg.role_str()
}

/// The cluster is paused, as far as this node's last DCS view knows.
pub(crate) fn paused(ha: &HaState) -> bool {
    ha.cluster.as_deref().is_some_and(cluster_paused)
}

/// Effective tags as a JSON object (boolean tags that are false are absent).
pub(crate) fn tags_json(ha: &HaState) -> Map<String, Value> {
    match serde_json::to_value(&ha.tags) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The `/patroni` document with Patroni's field names. Unknown fields are
/// omitted; only `xlog.replayed_timestamp` may be `null`.
pub fn status_document(ha: &HaState, pg: &PgStatus) -> Value {
    let mut d = Map::new();
    d.insert("state".into(), json!(state_str(pg)));
    if answering(pg)
        && let Some(t) = &pg.postmaster_start_time
    {
        d.insert("postmaster_start_time".into(), json!(t));
    }
    d.insert("role".into(), json!(role_str(pg)));
    if answering(pg) {
        if let Some(v) = pg.server_version {
            d.insert("server_version".into(), json!(v));
        }
        match pg.facts.role {
            Some(PgRole::Primary) => {
                if let Some(lsn) = pg.facts.lsn {
                    d.insert("xlog".into(), json!({ "location": lsn }));
                }
            }
            _ => {
                let mut x = Map::new();
                if let Some(r) = pg.receive_lsn.or(pg.replay_lsn) {
                    x.insert("received_location".into(), json!(r));
                }
                if let Some(r) = pg.replay_lsn {
                    x.insert("replayed_location".into(), json!(r));
                }
                x.insert(
                    "replayed_timestamp".into(),
                    pg.replayed_timestamp
                        .as_ref()
                        .map_or(Value::Null, |t| json!(t)),
                );
                x.insert("paused".into(), json!(pg.replay_paused));
                d.insert("xlog".into(), Value::Object(x));
            }
        }
        if let Some(tl) = pg.facts.timeline {
            d.insert("timeline".into(), json!(tl));
        }
        if pg.facts.role == Some(PgRole::Replica)
            && let Some(s) = &pg.replication_state
        {
            d.insert("replication_state".into(), json!(s));
        }
        if !pg.replication.is_empty() {
            d.insert("replication".into(), json!(pg.replication));
        }
        // Patroni: `sync_standby` (or `quorum_standby`) for a replica the
        // sync key lists while a synchronous mode is on.
        if pg.facts.role == Some(PgRole::Replica)
            && let Some(role) = ha.cluster.as_ref().and_then(|c| c.sync_role(&ha.name))
        {
            d.insert(role.into(), json!(true));
        }
    }
    if paused(ha) {
        d.insert("pause".into(), json!(true));
    }
    if answering(pg) && !pg.pending_restart.is_empty() {
        d.insert("pending_restart".into(), json!(true));
        d.insert("pending_restart_reason".into(), json!(pg.pending_restart));
    }
    if let Some(Value::Object(sr)) = &pg.scheduled_restart {
        let mut sr = sr.clone();
        sr.remove("postmaster_start_time");
        d.insert("scheduled_restart".into(), Value::Object(sr));
    }
    if ha.cluster.as_ref().is_none_or(|c| c.leader.is_none()) {
        d.insert("cluster_unlocked".into(), json!(true));
    }
    if ha.failsafe_active {
        d.insert("failsafe_mode_is_active".into(), json!(true));
    }
    if ha.watchdog_failed {
        d.insert("watchdog_failed".into(), json!(true));
    }
    // Patroni starts from 0 before the first successful read; keep the key.
    let last_seen = ha
        .dcs_last_seen
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    d.insert("dcs_last_seen".into(), json!(last_seen));
    let tags = tags_json(ha);
    if !tags.is_empty() {
        d.insert("tags".into(), Value::Object(tags));
    }
    if let DataDir::Initialized { sysid, .. } = &pg.data_dir
        && !sysid.is_empty()
    {
        d.insert("database_system_identifier".into(), json!(sysid));
    }
    d.insert(
        "patroni".into(),
        json!({
            "version": crate::PATRONI_COMPAT_VERSION,
            "scope": ha.scope,
            "name": ha.name,
        }),
    );
    Value::Object(d)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::Tags;
    use crate::dcs::Cluster;
    use crate::ha::PgFacts;
    use crate::messages::supervisor::ReplicationRow;

    pub(crate) fn row(k: &str, v: &str) -> (String, String, i64, i64) {
        (k.to_owned(), v.to_owned(), 1, 0)
    }

    /// A cluster whose leader is `leader` (none when empty).
    pub(crate) fn cluster(leader: &str, optime: Option<u64>) -> Cluster {
        let mut rows = vec![];
        if !leader.is_empty() {
            rows.push(row("leader", leader));
        }
        if let Some(o) = optime {
            rows.push(row("status", &format!(r#"{{"optime":{o}}}"#)));
        }
        Cluster::from_kvs(rows)
    }

    pub(crate) fn ha(is_leader: bool) -> HaState {
        HaState {
            name: "n1".into(),
            scope: "batman".into(),
            tags: Tags::default(),
            cluster: Some(cluster(if is_leader { "n1" } else { "n2" }, Some(1000)).into()),
            is_leader,
            dcs_last_seen: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            ttl_secs: 30.0,
            loop_wait_secs: 10.0,
            maximum_lag_on_failover: 1_048_576,
            next_cycle_due: None,
            failsafe_mode: false,
            failsafe_active: false,
            failsafe: None,
            watchdog_failed: false,
            lease_deadline: None,
            fence_dir: None,
        }
    }

    fn base(role: Option<PgRole>) -> PgStatus {
        PgStatus {
            state: PgState::Running,
            facts: PgFacts {
                running: true,
                role,
                lsn: Some(1000),
                timeline: Some(2),
                following: None,
            },
            data_dir: DataDir::Initialized {
                sysid: "7000000000000000001".into(),
                was_primary: role == Some(PgRole::Primary),
            },
            busy: None,
            starting_primary_since: None,
            outcome: None,
            server_version: Some(150018),
            postmaster_start_time: Some("2024-08-28 19:39:26.352526+00:00".into()),
            receive_lsn: None,
            replay_lsn: None,
            replayed_timestamp: None,
            replay_paused: false,
            replication_state: None,
            replication: vec![],
            synchronous_standby_names: None,
            pending_restart: Default::default(),
            scheduled_restart: None,
            follows_remote: false,
        }
    }

    pub(crate) fn primary() -> PgStatus {
        base(Some(PgRole::Primary))
    }

    pub(crate) fn replica() -> PgStatus {
        PgStatus {
            receive_lsn: Some(1000),
            replay_lsn: Some(900),
            replication_state: Some("streaming".into()),
            ..base(Some(PgRole::Replica))
        }
    }

    pub(crate) fn down(state: PgState, data_dir: DataDir) -> PgStatus {
        PgStatus {
            state,
            facts: PgFacts::default(),
            data_dir,
            ..base(None)
        }
    }

    #[test]
    fn primary_document() {
        let mut pg = primary();
        pg.replication = vec![ReplicationRow {
            usename: "replicator".into(),
            application_name: "n2".into(),
            client_addr: Some("10.0.0.2".into()),
            state: "streaming".into(),
            sync_state: "async".into(),
            sync_priority: 0,
            flush_lsn: None,
        }];
        let d = status_document(&ha(true), &pg);
        assert_eq!(
            d,
            json!({
                "state": "running",
                "postmaster_start_time": "2024-08-28 19:39:26.352526+00:00",
                "role": "primary",
                "server_version": 150018,
                "xlog": {"location": 1000},
                "timeline": 2,
                "replication": [{
                    "usename": "replicator", "application_name": "n2",
                    "client_addr": "10.0.0.2", "state": "streaming",
                    "sync_state": "async", "sync_priority": 0
                }],
                "dcs_last_seen": 1_700_000_000u64,
                "database_system_identifier": "7000000000000000001",
                "patroni": {"version": crate::PATRONI_COMPAT_VERSION, "scope": "batman", "name": "n1"}
            })
        );
    }

    #[test]
    fn replica_document() {
        let d = status_document(&ha(false), &replica());
        assert_eq!(d["role"], "replica");
        assert_eq!(
            d["xlog"],
            json!({"received_location": 1000, "replayed_location": 900,
                   "replayed_timestamp": null, "paused": false})
        );
        assert_eq!(d["replication_state"], "streaming");
        assert!(d.get("replication").is_none());
        assert!(d.get("cluster_unlocked").is_none());
        assert!(d.get("tags").is_none());
        assert!(d.get("pause").is_none());
    }

    #[test]
    fn replica_received_falls_back_to_replayed() {
        let mut pg = replica();
        pg.receive_lsn = None;
        pg.replayed_timestamp = Some("2024-08-28 19:40:00+00:00".into());
        pg.replay_paused = true;
        let d = status_document(&ha(false), &pg);
        assert_eq!(d["xlog"]["received_location"], 900);
        assert_eq!(d["xlog"]["replayed_timestamp"], "2024-08-28 19:40:00+00:00");
        assert_eq!(d["xlog"]["paused"], true);
    }

    #[test]
    fn running_but_not_answering_is_unknown() {
        let mut pg = down(
            PgState::Running,
            DataDir::Initialized {
                sysid: "7000000000000000001".into(),
                was_primary: true,
            },
        );
        pg.facts.running = true;
        let d = status_document(&ha(true), &pg);
        assert_eq!(d["state"], "unknown");
        assert_eq!(d["role"], "primary");
        for k in [
            "xlog",
            "timeline",
            "server_version",
            "postmaster_start_time",
            "replication_state",
        ] {
            assert!(d.get(k).is_none(), "{k}");
        }
        assert_eq!(d["database_system_identifier"], "7000000000000000001");
    }

    #[test]
    fn stopped_roles() {
        let d = status_document(&ha(false), &down(PgState::Stopped, DataDir::Empty));
        assert_eq!(d["state"], "stopped");
        assert_eq!(d["role"], "uninitialized");
        assert!(d.get("database_system_identifier").is_none());
        let dd = DataDir::Initialized {
            sysid: "1".into(),
            was_primary: false,
        };
        let d = status_document(&ha(false), &down(PgState::Crashed, dd));
        assert_eq!(d["state"], "crashed");
        assert_eq!(d["role"], "replica");
    }

    #[test]
    fn cluster_unlocked_pause_tags_and_last_seen() {
        let mut h = ha(false);
        h.cluster = Some(cluster("", None).into());
        assert_eq!(status_document(&h, &replica())["cluster_unlocked"], true);
        h.cluster = None;
        h.dcs_last_seen = None;
        let d = status_document(&h, &replica());
        assert_eq!(d["cluster_unlocked"], true);
        assert_eq!(d["dcs_last_seen"], 0);
        assert!(d.get("failsafe_mode_is_active").is_none());
        h.failsafe_active = true;
        assert_eq!(
            status_document(&h, &replica())["failsafe_mode_is_active"],
            true
        );

        let mut h = ha(false);
        h.cluster = Some(
            Cluster::from_kvs(vec![
                row("leader", "n2"),
                row("config", r#"{"pause":true}"#),
            ])
            .into(),
        );
        h.tags.nofailover = true;
        h.tags.other.insert("zone".into(), json!("a"));
        h.dcs_last_seen = Some(SystemTime::UNIX_EPOCH + Duration::from_millis(5_500));
        let d = status_document(&h, &replica());
        assert_eq!(d["pause"], true);
        assert_eq!(d["tags"], json!({"nofailover": true, "zone": "a"}));
        assert_eq!(d["dcs_last_seen"], 5);
    }

    #[test]
    fn watchdog_failed_only_when_true() {
        let mut h = ha(false);
        assert!(
            status_document(&h, &replica())
                .get("watchdog_failed")
                .is_none()
        );
        h.watchdog_failed = true;
        assert_eq!(status_document(&h, &replica())["watchdog_failed"], true);
        // The switchover check reads it back as a limitation.
        let d = status_document(&h, &replica());
        assert_eq!(
            crate::api::switchover::limitation(Some(&d)),
            Some("not watchdog capable")
        );
    }
}
