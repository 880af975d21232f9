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
            let state = if is_leader {
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
                role: if is_leader { "Leader" } else { "Replica" }.to_owned(),
                state,
                timeline: m.data.timeline,
                lag_mb: (!is_leader).then(|| lag_mb(optime, m.data.xlog_location)),
                pending_restart: m.data.pending_restart.then(|| "*".to_owned()),
                tags: serde_json::to_value(&m.data.tags)
                    .ok()
                    .filter(|t| t.as_object().is_some_and(|o| !o.is_empty())),
            }
        })
        .collect()
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

/// The `+ Cluster: name (sysid) ---` table.
pub fn render_table(cluster: &Cluster, scope: &str) -> String {
    let rows = rows(cluster, scope);
    // The "Pending restart" column only when some member has one, as
    // patronictl shows it.
    let pending = rows.iter().any(|r| r.pending_restart.is_some());
    let mut headers = vec!["Member", "Host", "Role", "State", "TL", "Lag in MB"];
    if pending {
        headers.push("Pending restart");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut row = vec![
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
            ];
            if pending {
                row.push(r.pending_restart.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let sep = |title: Option<String>| {
        let mut line: String = widths
            .iter()
            .map(|w| format!("+{}", "-".repeat(w + 2)))
            .collect::<String>()
            + "+";
        if let Some(t) = title {
            let t = format!("+ {t} ");
            if t.len() < line.len() {
                line.replace_range(..t.len(), &t);
            } else {
                line = t;
            }
        }
        line
    };
    let row_line = |vals: &[String]| {
        let mut s = String::new();
        for (i, (v, w)) in vals.iter().zip(widths.iter().copied()).enumerate() {
            // Numbers are right-aligned, as patronictl prints them.
            if i == 4 || i == 5 {
                s += &format!("| {v:>w$} ");
            } else {
                s += &format!("| {v:<w$} ");
            }
        }
        s + "|"
    };
    let sysid = match cluster.initialize.as_deref() {
        None => "uninitialized".to_owned(),
        Some("") => "initializing".to_owned(),
        Some(s) => s.to_owned(),
    };
    let mut out = vec![
        sep(Some(format!("Cluster: {scope} ({sysid})"))),
        row_line(&headers.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()),
        sep(None),
    ];
    out.extend(cells.iter().map(|c| row_line(c)));
    out.push(sep(None));
    out.join("\n") + "\n"
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
            version: 1,
            session: 1,
        };
        Cluster {
            initialize: Some("7000000000000000001".into()),
            leader: Some(Leader {
                name: "a".into(),
                version: 1,
                session: 1,
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
