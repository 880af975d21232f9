//! `GET /cluster` and `GET /history` documents (docs/rest-api.md, "GET
//! /cluster" and "GET /history, GET /config"), built from one DCS read. Pure:
//! no I/O, so every field rule is unit-tested here.

use serde_json::{Map, Value, json};

use crate::dcs::Cluster;

/// An LSN as PostgreSQL prints it: `X/X`, upper-case hex, no padding.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Patroni-style boolean reading of a dynamic-config value (`parse_bool`):
/// JSON booleans, non-zero numbers and the strings PostgreSQL accepts.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "on" | "true" | "yes" | "1" | "t" | "y"
        ),
        _ => false,
    }
}

/// The cluster is in maintenance mode: `pause` is set in the `config` key.
pub fn cluster_paused(cluster: &Cluster) -> bool {
    cluster
        .config
        .as_ref()
        .and_then(|c| c.value.get("pause"))
        .is_some_and(truthy)
}

/// The `GET /cluster` document.
pub fn cluster_json(cluster: &Cluster, scope: &str) -> Value {
    let leader = cluster.leader_name();
    let cluster_lsn = cluster.status.optime.unwrap_or(0);
    let mut members: Vec<Value> = Vec::with_capacity(cluster.members.len());
    for m in &cluster.members {
        let d = &m.data;
        let is_leader = Some(m.name.as_str()) == leader;
        let standby_leader = is_leader && cluster.is_standby_cluster();
        let role = if standby_leader {
            "standby_leader"
        } else if is_leader {
            "leader"
        } else {
            cluster.sync_role(&m.name).unwrap_or("replica")
        };
        // Non-leaders (a standby leader too) show how they replicate when
        // they say so.
        let state = if is_leader && !standby_leader {
            d.state.clone()
        } else {
            d.replication_state
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| d.state.clone())
        };
        let mut o = Map::new();
        o.insert("name".into(), json!(m.name));
        o.insert("role".into(), json!(role));
        o.insert("state".into(), json!(state));
        o.insert("api_url".into(), json!(d.api_url));
        if let Some((host, port)) = d.conn_host_port()
            && !host.is_empty()
        {
            o.insert("host".into(), json!(host));
            o.insert("port".into(), json!(port));
        }
        if let Some(tl) = d.timeline {
            o.insert("timeline".into(), json!(tl));
        }
        if d.pending_restart {
            o.insert("pending_restart".into(), json!(true));
            if !d.pending_restart_reason.is_empty() {
                o.insert(
                    "pending_restart_reason".into(),
                    json!(d.pending_restart_reason),
                );
            }
        }
        if let Some(sr) = &d.scheduled_restart {
            o.insert("scheduled_restart".into(), sr.clone());
        }
        if let Ok(tags @ Value::Object(_)) = serde_json::to_value(&d.tags)
            && tags.as_object().is_some_and(|t| !t.is_empty())
        {
            o.insert("tags".into(), tags);
        }
        if !is_leader {
            for (prefix, lsn) in [
                ("receive_", d.receive_lsn),
                ("replay_", d.replay_lsn),
                ("", d.xlog_location),
            ] {
                let (lsn_key, lag_key) = (format!("{prefix}lsn"), format!("{prefix}lag"));
                match lsn.filter(|&l| l != 0) {
                    None => {
                        o.insert(lsn_key, json!("unknown"));
                        o.insert(lag_key, json!("unknown"));
                    }
                    Some(l) => {
                        o.insert(lsn_key, json!(format_lsn(l)));
                        o.insert(lag_key, json!(cluster_lsn.saturating_sub(l)));
                    }
                }
            }
        }
        members.push(Value::Object(o));
    }
    members.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));

    let mut doc = Map::new();
    doc.insert("members".into(), Value::Array(members));
    doc.insert("scope".into(), json!(scope));
    if cluster_paused(cluster) {
        doc.insert("pause".into(), json!(true));
    }
    if let Some(f) = &cluster.failover
        && let Some(at) = &f.value.scheduled_at
    {
        let mut s = Map::new();
        s.insert("at".into(), json!(at));
        if let Some(l) = &f.value.leader {
            s.insert("from".into(), json!(l));
        }
        if let Some(c) = &f.value.member {
            s.insert("to".into(), json!(c));
        }
        doc.insert("scheduled_switchover".into(), Value::Object(s));
    }
    Value::Object(doc)
}

/// The `GET /history` document: the `history` key as an array, `[]` if absent.
pub fn history_json(cluster: &Cluster) -> Value {
    Value::Array(
        cluster
            .history
            .iter()
            .flatten()
            .map(|l| l.to_json_value())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(k: &str, v: &str) -> (String, String, i64, i64) {
        (k.to_owned(), v.to_owned(), 1, 0)
    }

    fn sample() -> Cluster {
        Cluster::from_kvs(vec![
            row("leader", "b"),
            row("status", r#"{"optime":100663296}"#),
            row(
                "members/b",
                r#"{"conn_url":"postgres://10.0.0.2:5432/postgres","api_url":"http://10.0.0.2:8008/patroni","state":"running","role":"primary","version":"4.1.4","xlog_location":100663296,"timeline":3}"#,
            ),
            row(
                "members/a",
                r#"{"conn_url":"postgres://10.0.0.1:5433/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"replica","version":"4.1.4","xlog_location":100663000,"receive_lsn":100663000,"replay_lsn":100662000,"replication_state":"streaming","timeline":3,"tags":{"nofailover":true,"zone":"x"},"pending_restart":true}"#,
            ),
            row(
                "members/c",
                r#"{"conn_url":"postgres://10.0.0.3/postgres","api_url":"http://10.0.0.3:8008/patroni","state":"stopped","role":"replica","version":"4.1.4","xlog_location":200000000}"#,
            ),
        ])
    }

    #[test]
    fn lsn_text() {
        assert_eq!(format_lsn(0), "0/0");
        assert_eq!(format_lsn(100663296), "0/6000000");
        assert_eq!(format_lsn((1 << 32) + 0xAB), "1/AB");
    }

    #[test]
    fn members_sorted_with_roles_and_addresses() {
        let j = cluster_json(&sample(), "batman");
        assert_eq!(j["scope"], "batman");
        let names: Vec<&str> = j["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let a = &j["members"][0];
        let b = &j["members"][1];
        assert_eq!(b["role"], "leader");
        assert_eq!(a["role"], "replica");
        assert_eq!(a["host"], "10.0.0.1");
        assert_eq!(a["port"], 5433);
        assert_eq!(j["members"][2]["port"], 5432, "default port");
        assert_eq!(a["api_url"], "http://10.0.0.1:8008/patroni");
        assert_eq!(a["timeline"], 3);
        assert_eq!(a["pending_restart"], true);
        assert_eq!(a["tags"], json!({"nofailover": true, "zone": "x"}));
        assert!(b.get("tags").is_none());
        assert!(b.get("pending_restart").is_none());
        assert!(j.get("pause").is_none());
        assert!(j.get("scheduled_switchover").is_none());
    }

    #[test]
    fn a_standby_clusters_leader_is_the_standby_leader() {
        let mut c = sample();
        let b = c.members.iter_mut().find(|m| m.name == "b").unwrap();
        b.data.replication_state = Some("streaming".into());
        c.config = Some(crate::dcs::Versioned {
            value: json!({"standby_cluster": {"host": "10.9.9.9", "port": 5432}}),
            version: crate::dcs::Version::from_int(1),
        });
        let j = cluster_json(&c, "s");
        let b = &j["members"][1];
        assert_eq!(b["role"], "standby_leader");
        assert_eq!(b["state"], "streaming", "as a non-leader shows it");
        // An empty section is a normal cluster.
        c.config = Some(crate::dcs::Versioned {
            value: json!({"standby_cluster": {}}),
            version: crate::dcs::Version::from_int(1),
        });
        assert_eq!(cluster_json(&c, "s")["members"][1]["role"], "leader");
    }

    #[test]
    fn state_rule() {
        let j = cluster_json(&sample(), "s");
        assert_eq!(
            j["members"][0]["state"], "streaming",
            "replication_state wins"
        );
        assert_eq!(j["members"][1]["state"], "running", "leader keeps state");
        assert_eq!(j["members"][2]["state"], "stopped");
    }

    #[test]
    fn lsn_and_lag() {
        let j = cluster_json(&sample(), "s");
        let a = &j["members"][0];
        assert_eq!(a["lsn"], "0/5FFFED8");
        assert_eq!(a["lag"], 296);
        assert_eq!(a["receive_lsn"], "0/5FFFED8");
        assert_eq!(a["receive_lag"], 296);
        assert_eq!(a["replay_lsn"], format_lsn(100662000));
        assert_eq!(a["replay_lag"], 1296);
        // the leader has none of them
        let b = &j["members"][1];
        for k in ["lsn", "lag", "receive_lsn", "replay_lag"] {
            assert!(b.get(k).is_none(), "{k}");
        }
        // ahead of status.optime: lag 0; missing values: "unknown"
        let c = &j["members"][2];
        assert_eq!(c["lag"], 0);
        assert_eq!(c["receive_lsn"], "unknown");
        assert_eq!(c["receive_lag"], "unknown");
        assert_eq!(c["replay_lsn"], "unknown");
        assert_eq!(c["replay_lag"], "unknown");
    }

    #[test]
    fn no_leader_means_all_replicas() {
        let mut c = sample();
        c.leader = None;
        let j = cluster_json(&c, "s");
        assert!(
            j["members"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["role"] == "replica")
        );
        assert_eq!(j["members"][1]["lsn"], "0/6000000");
        assert_eq!(j["members"][1]["lag"], 0);
    }

    #[test]
    fn pause_and_scheduled_switchover() {
        let mut rows = vec![
            row("config", r#"{"pause":true}"#),
            row(
                "failover",
                r#"{"leader":"b","member":"a","scheduled_at":"2030-01-01T00:00:00+00:00"}"#,
            ),
        ];
        rows.push(row("members/a", "{}"));
        let c = Cluster::from_kvs(rows);
        let j = cluster_json(&c, "s");
        assert_eq!(j["pause"], true);
        assert_eq!(
            j["scheduled_switchover"],
            json!({"at": "2030-01-01T00:00:00+00:00", "from": "b", "to": "a"})
        );
        // a member without conn_url has no host/port
        assert!(j["members"][0].get("host").is_none());
        // an immediate failover request is not a scheduled switchover
        let c = Cluster::from_kvs(vec![row("failover", r#"{"member":"a"}"#)]);
        assert!(cluster_json(&c, "s").get("scheduled_switchover").is_none());
    }

    #[test]
    fn paused_value_forms() {
        for (v, want) in [
            ("true", true),
            ("false", false),
            (r#""on""#, true),
            (r#""off""#, false),
            ("1", true),
            ("0", false),
            ("null", false),
        ] {
            let c = Cluster::from_kvs(vec![row("config", &format!(r#"{{"pause":{v}}}"#))]);
            assert_eq!(cluster_paused(&c), want, "{v}");
        }
        assert!(!cluster_paused(&Cluster::default()));
    }

    #[test]
    fn history() {
        assert_eq!(history_json(&Cluster::default()), json!([]));
        let c = Cluster::from_kvs(vec![row(
            "history",
            r#"[[1,100,"no recovery target specified","2024-01-01T00:00:00+00:00","b"],[2,200,"x"]]"#,
        )]);
        assert_eq!(
            history_json(&c),
            json!([
                [
                    1,
                    100,
                    "no recovery target specified",
                    "2024-01-01T00:00:00+00:00",
                    "b"
                ],
                [2, 200, "x"]
            ])
        );
        let c = Cluster::from_kvs(vec![row("history", "[]")]);
        assert_eq!(history_json(&c), json!([]));
    }
}
