//! `pgpilotctl list`: the cluster as a table, JSON or YAML, with the columns
//! and values of `patronictl list`.

use serde::Serialize;
use serde_json::Value;

use crate::dcs::{Cluster, Member};

/// One row of the listing. Field names are patronictl's column titles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListRow {
    #[serde(rename = "Cluster")]
    pub cluster: String,
    #[serde(rename = "Member")]
    pub member: String,
    #[serde(rename = "Host")]
    pub host: String,
    #[serde(rename = "Role")]
    pub role: String,
    #[serde(rename = "State")]
    pub state: String,
    #[serde(rename = "TL", skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u64>,
    /// Lag behind the leader's last published position, in whole MB; `None`
    /// for the leader, the string `unknown` when the member has no position.
    #[serde(rename = "Lag in MB", skip_serializing_if = "Option::is_none")]
    pub lag_mb: Option<Value>,
    /// `*` when the member waits for a restart to apply settings.
    #[serde(rename = "Pending restart", skip_serializing_if = "Option::is_none")]
    pub pending_restart: Option<String>,
    /// The member's scheduled restart: `<schedule>[ if version < <v>]`.
    #[serde(rename = "Scheduled restart", skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<String>,
    #[serde(rename = "Tags", skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
}

/// Rows for every member, sorted by name as patronictl sorts them.
pub fn rows(cluster: &Cluster, scope: &str) -> Vec<ListRow> {
    let leader = cluster.leader_name();
    let optime = cluster.status.optime;
    cluster
        .members
        .iter()
        .map(|m| {
            let is_leader = leader == Some(m.name.as_str());
            // A standby leader shows how it replicates, as Patroni's
            // `cluster_as_json` does (docs/ha.md §16).
            let standby_leader = is_leader && cluster.is_standby_cluster();
            let state = if is_leader && !standby_leader {
                m.data.state.clone()
            } else {
                m.data
                    .replication_state
                    .clone()
                    .unwrap_or_else(|| m.data.state.clone())
            };
            ListRow {
                cluster: scope.to_owned(),
                member: m.name.clone(),
                host: host_of(m),
                role: if standby_leader {
                    "Standby Leader"
                } else if is_leader {
                    "Leader"
                } else {
                    match cluster.sync_role(&m.name) {
                        Some("quorum_standby") => "Quorum Standby",
                        Some(_) => "Sync Standby",
                        None => "Replica",
                    }
                }
                .to_owned(),
                state,
                timeline: m.data.timeline,
                lag_mb: (!is_leader).then(|| lag_mb(optime, m.data.xlog_location)),
                pending_restart: m.data.pending_restart.then(|| "*".to_owned()),
                scheduled_restart: m.data.scheduled_restart.as_ref().map(scheduled_text),
                tags: serde_json::to_value(&m.data.tags)
                    .ok()
                    .filter(|t| t.as_object().is_some_and(|o| !o.is_empty())),
            }
        })
        .collect()
}

/// patronictl's cell: the schedule, plus ` if version < X` with a
/// `postgres_version` condition.
fn scheduled_text(v: &Value) -> String {
    let mut out = v["schedule"].as_str().unwrap_or_default().to_owned();
    if let Some(ver) = v.get("postgres_version").and_then(Value::as_str) {
        out += &format!(" if version < {ver}");
    }
    out
}

fn host_of(m: &Member) -> String {
    match m.data.conn_host_port() {
        Some((h, 5432)) => h,
        Some((h, p)) => format!("{h}:{p}"),
        None => String::new(),
    }
}

fn lag_mb(optime: Option<u64>, lsn: Option<u64>) -> Value {
    match lsn {
        None => Value::from("unknown"),
        Some(l) => Value::from(optime.unwrap_or(0).saturating_sub(l) / (1024 * 1024)),
    }
}

/// The title in the table's top border: `Cluster: name (sysid)`.
pub fn title(cluster: &Cluster, scope: &str) -> String {
    let sysid = match cluster.initialize.as_deref() {
        None => "uninitialized".to_owned(),
        Some("") => "initializing".to_owned(),
        Some(s) => s.to_owned(),
    };
    format!("Cluster: {scope} ({sysid})")
}

/// Column titles and text cells of `rows`. "Pending restart", "Scheduled
/// restart" and "Tags" appear when some member has them, or always with `extended` (`-e`).
/// With `with_cluster` the first column is "Cluster" (tsv output).
pub fn cells(
    rows: &[ListRow],
    extended: bool,
    with_cluster: bool,
) -> (Vec<String>, Vec<Vec<String>>) {
    let pending = extended || rows.iter().any(|r| r.pending_restart.is_some());
    let scheduled = extended || rows.iter().any(|r| r.scheduled_restart.is_some());
    let tags = extended || rows.iter().any(|r| r.tags.is_some());
    let mut headers = Vec::new();
    if with_cluster {
        headers.push("Cluster");
    }
    headers.extend(["Member", "Host", "Role", "State", "TL", "Lag in MB"]);
    if pending {
        headers.push("Pending restart");
    }
    if scheduled {
        headers.push("Scheduled restart");
    }
    if tags {
        headers.push("Tags");
    }
    let cells = rows
        .iter()
        .map(|r| {
            let mut row = Vec::new();
            if with_cluster {
                row.push(r.cluster.clone());
            }
            row.extend([
                r.member.clone(),
                r.host.clone(),
                r.role.clone(),
                r.state.clone(),
                r.timeline.map(|t| t.to_string()).unwrap_or_default(),
                match &r.lag_mb {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                },
            ]);
            if pending {
                row.push(r.pending_restart.clone().unwrap_or_default());
            }
            if scheduled {
                row.push(r.scheduled_restart.clone().unwrap_or_default());
            }
            if tags {
                row.push(r.tags.as_ref().map(|t| t.to_string()).unwrap_or_default());
            }
            row
        })
        .collect();
    (headers.into_iter().map(str::to_owned).collect(), cells)
}

/// The `+ Cluster: name (sysid) ---` table of `rows`.
pub fn render_rows(rows: &[ListRow], title: &str, extended: bool) -> String {
    let (headers, cells) = cells(rows, extended, false);
    // TL and Lag in MB are numbers, right-aligned as patronictl prints them.
    super::table::render(Some(title), &headers, &cells, &[4, 5])
}

/// The `+ Cluster: name (sysid) ---` table.
pub fn render_table(cluster: &Cluster, scope: &str) -> String {
    render_rows(&rows(cluster, scope), &title(cluster, scope), false)
}

/// Footer lines patronictl prints under the table.
pub fn footer(cluster: &Cluster) -> String {
    let mut out = String::new();
    let paused = cluster
        .config
        .as_ref()
        .and_then(|c| c.value.get("pause"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if paused {
        out += " Maintenance mode: on\n";
    }
    if let Some(f) = &cluster.failover
        && let Some(at) = &f.value.scheduled_at
    {
        out += &format!(" Switchover scheduled at: {at}\n");
        if let Some(l) = &f.value.leader {
            out += &format!("                    from: {l}\n");
        }
        if let Some(m) = &f.value.member {
            out += &format!("                      to: {m}\n");
        }
    }
    out
}

/// `topology`: the members as a replication tree. Members whose
/// `replicatefrom` tag names another member hang under it; every other
/// replica hangs under the leader. Names are indented with `+ `.
pub fn topology_rows(cluster: &Cluster, scope: &str) -> Vec<ListRow> {
    let all = rows(cluster, scope);
    let leader = cluster.leader_name();
    let parent_of = |name: &str| -> Option<String> {
        if Some(name) == leader {
            return None;
        }
        let m = cluster.member(name)?;
        match m.data.tags.replicatefrom.as_deref() {
            Some(f) if f != name && cluster.member(f).is_some() => Some(f.to_owned()),
            _ => leader
                .filter(|l| cluster.member(l).is_some())
                .map(str::to_owned),
        }
    };
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    fn walk(
        name: &str,
        depth: usize,
        all: &[ListRow],
        parent_of: &dyn Fn(&str) -> Option<String>,
        seen: &mut std::collections::BTreeSet<String>,
        out: &mut Vec<ListRow>,
    ) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        if let Some(r) = all.iter().find(|r| r.member == name) {
            let mut r = r.clone();
            if depth > 0 {
                r.member = format!("{}+ {}", "  ".repeat(depth - 1), r.member);
            }
            out.push(r);
        }
        for child in all
            .iter()
            .filter(|r| parent_of(&r.member).as_deref() == Some(name))
        {
            walk(&child.member, depth + 1, all, parent_of, seen, out);
        }
    }
    // Roots: the leader, then members without a parent (no leader, or a
    // replicatefrom cycle), in name order.
    let mut roots: Vec<String> = leader
        .filter(|l| cluster.member(l).is_some())
        .map(|l| vec![l.to_owned()])
        .unwrap_or_default();
    roots.extend(
        all.iter()
            .filter(|r| parent_of(&r.member).is_none())
            .map(|r| r.member.clone()),
    );
    for r in &roots {
        walk(r, 0, &all, &parent_of, &mut seen, &mut out);
    }
    for r in &all {
        walk(&r.member, 0, &all, &parent_of, &mut seen, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::{Leader, MemberData, Status};

    fn cluster() -> Cluster {
        let m = |name: &str, port: u16, role: &str, lsn: Option<u64>| Member {
            name: name.into(),
            data: MemberData {
                conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
                state: "running".into(),
                role: role.into(),
                xlog_location: lsn,
                replication_state: (role == "replica").then(|| "streaming".to_owned()),
                timeline: Some(1),
                ..Default::default()
            },
            version: crate::dcs::Version::from_int(1),
            session: Some(crate::dcs::SessionId::from_int(1)),
        };
        Cluster {
            initialize: Some("7000000000000000001".into()),
            leader: Some(Leader {
                name: "a".into(),
                version: crate::dcs::Version::from_int(1),
                session: Some(crate::dcs::SessionId::from_int(1)),
            }),
            members: vec![
                m("a", 5432, "primary", Some(50 << 20)),
                m("b", 5433, "replica", Some(48 << 20)),
                m("c", 5434, "replica", None),
            ],
            status: Status {
                optime: Some(50 << 20),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_listed_standby_is_a_sync_standby() {
        let mut c = cluster();
        c.config = Some(crate::dcs::Versioned {
            value: serde_json::json!({"synchronous_mode": true}),
            version: crate::dcs::Version::from_int(1),
        });
        c.sync = Some(crate::dcs::Versioned {
            value: crate::dcs::SyncState::parse(r#"{"leader":"a","sync_standby":"b"}"#),
            version: crate::dcs::Version::from_int(1),
        });
        let r = rows(&c, "batman");
        assert_eq!(r[0].role, "Leader");
        assert_eq!(r[1].role, "Sync Standby");
        assert_eq!(r[2].role, "Replica");
        let j = crate::api::cluster::cluster_json(&c, "batman");
        assert_eq!(j["members"][1]["role"], "sync_standby");
        assert_eq!(j["members"][2]["role"], "replica");
    }

    #[test]
    fn a_standby_clusters_leader_is_the_standby_leader_and_no_sync_standby_exists() {
        let mut c = cluster();
        c.config = Some(crate::dcs::Versioned {
            value: serde_json::json!({"synchronous_mode": true,
                "standby_cluster": {"host": "10.0.0.9", "port": 5432}}),
            version: crate::dcs::Version::from_int(1),
        });
        c.sync = Some(crate::dcs::Versioned {
            value: crate::dcs::SyncState::parse(r#"{"leader":"a","sync_standby":"b"}"#),
            version: crate::dcs::Version::from_int(1),
        });
        c.members[0].data.replication_state = Some("streaming".into());
        let r = rows(&c, "batman");
        assert_eq!(r[0].role, "Standby Leader");
        assert_eq!(r[0].state, "streaming");
        assert_eq!(
            r[1].role, "Replica",
            "no synchronous mode in a standby cluster"
        );
    }

    #[test]
    fn rows_match_patronictl_semantics() {
        let r = rows(&cluster(), "batman");
        assert_eq!(r[0].role, "Leader");
        assert_eq!(r[0].state, "running");
        assert_eq!(r[0].host, "127.0.0.1");
        assert_eq!(r[0].lag_mb, None);
        assert_eq!(r[1].role, "Replica");
        assert_eq!(r[1].state, "streaming");
        assert_eq!(r[1].host, "127.0.0.1:5433");
        assert_eq!(r[1].lag_mb, Some(Value::from(2)));
        assert_eq!(r[2].lag_mb, Some(Value::from("unknown")));
    }

    #[test]
    fn table_has_header_and_rows() {
        let t = render_table(&cluster(), "batman");
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("+ Cluster: batman (7000000000000000001) "));
        assert!(lines[1].contains("| Member |"));
        assert!(lines[3].contains("| a ") && lines[3].contains("Leader"));
        assert_eq!(lines.len(), 7);
        let width = lines[1].len();
        assert!(lines.iter().all(|l| l.len() == width), "{t}");
        assert!(!t.contains("Pending restart"));
    }

    #[test]
    fn extended_shows_pending_and_tags() {
        let c = cluster();
        let t = render_rows(&rows(&c, "batman"), &title(&c, "batman"), true);
        assert!(
            t.contains("| Pending restart | Scheduled restart | Tags |"),
            "{t}"
        );
        let (h, cells) = cells(&rows(&c, "batman"), false, true);
        assert_eq!(h[0], "Cluster");
        assert_eq!(cells[0][0], "batman");
        assert_eq!(h.len(), 7);
        let mut c = cluster();
        c.members[1].data.scheduled_restart = Some(serde_json::json!({
            "schedule": "2030-01-01T00:00:00+00:00", "postgres_version": "15.9"
        }));
        let (h, body) = super::cells(&rows(&c, "batman"), false, false);
        assert_eq!(h.last().map(String::as_str), Some("Scheduled restart"));
        assert_eq!(
            body[1].last().map(String::as_str),
            Some("2030-01-01T00:00:00+00:00 if version < 15.9")
        );
        assert_eq!(body[0].last().map(String::as_str), Some(""));
    }

    #[test]
    fn topology_is_a_tree() {
        let mut c = cluster();
        c.members[2].data.tags.replicatefrom = Some("b".into());
        let t = topology_rows(&c, "batman");
        let names: Vec<&str> = t.iter().map(|r| r.member.as_str()).collect();
        assert_eq!(names, ["a", "+ b", "  + c"]);
        c.leader = None;
        let t = topology_rows(&c, "batman");
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn footer_shows_pause() {
        let mut c = cluster();
        assert_eq!(footer(&c), "");
        c.config = Some(crate::dcs::Versioned {
            value: serde_json::json!({"pause": true}),
            version: crate::dcs::Version::from_int(1),
        });
        assert!(footer(&c).contains("Maintenance mode: on"));
    }

    #[test]
    fn pending_restart_column_only_when_some_member_waits() {
        let mut c = cluster();
        c.members[1].data.pending_restart = true;
        let r = rows(&c, "batman");
        assert_eq!(r[1].pending_restart.as_deref(), Some("*"));
        assert_eq!(r[0].pending_restart, None);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json[1]["Pending restart"], "*");
        assert!(json[0].get("Pending restart").is_none());
        let t = render_table(&c, "batman");
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].contains("| Pending restart |"), "{t}");
        assert!(lines[4].contains("| *               |"), "{t}");
        let width = lines[1].len();
        assert!(lines.iter().all(|l| l.len() == width), "{t}");
    }
}
