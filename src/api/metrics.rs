//! The body of `GET /metrics` (docs/rest-api.md, "GET /metrics"): Patroni's
//! metrics in Prometheus' text format, with Patroni's names, help texts,
//! types and labels, so that existing dashboards and alerts keep working.
//! Pure: rendered from the status document of `GET /patroni`
//! (`api::status`), as Patroni renders them from the same status.
//!
//! Where the text differs from Patroni's, it is for Prometheus' sake: label
//! values are escaped (Patroni writes a `"` in a member name as is, which
//! breaks the scrape).

use std::fmt::Write;

use serde_json::Value;

use crate::ha::iso8601;

/// Patroni's numeric codes of PostgreSQL states (`PostgresqlState` in
/// patroni/postgresql/misc.py: "Numeric indexes should NEVER change once
/// assigned"). A state outside the table (`unknown`, `rewind failed`)
/// reads -1, as Patroni's does for a state that is not one of these.
pub const POSTGRES_STATES: [(&str, i64); 15] = [
    ("initializing new cluster", 0),
    ("initdb failed", 1),
    ("running custom bootstrap script", 2),
    ("custom bootstrap failed", 3),
    ("creating replica", 4),
    ("running", 5),
    ("starting", 6),
    ("starting after custom bootstrap", 7),
    ("start failed", 8),
    ("restarting", 9),
    ("restart failed", 10),
    ("stopping", 11),
    ("stopped", 12),
    ("stop failed", 13),
    ("crashed", 14),
];

/// The name Patroni's `# Values:` comment gives a state: its enum member
/// in lower case (`initdb`, `custom_bootstrap`, ...), not its text.
const STATE_MEMBER_NAMES: [&str; 15] = [
    "initdb",
    "initdb_failed",
    "custom_bootstrap",
    "custom_bootstrap_failed",
    "creating_replica",
    "running",
    "starting",
    "bootstrap_starting",
    "start_failed",
    "restarting",
    "restart_failed",
    "stopping",
    "stopped",
    "stop_failed",
    "crashed",
];

/// Patroni's code of a `state` text, -1 when it has none.
pub fn state_index(state: &str) -> i64 {
    POSTGRES_STATES
        .iter()
        .find(|(name, _)| *name == state)
        .map_or(-1, |(_, i)| *i)
}

/// `4.1.5` -> `040105`: Patroni's `patroni_version` value (each part
/// zero-padded to two digits, concatenated).
pub fn padded_version(version: &str) -> String {
    version.split('.').map(|p| format!("{p:0>2}")).collect()
}

/// Prometheus' escaping of a label value: `\`, `"` and newlines.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Patroni's labels of every sample: `{scope="...",name="..."}`, escaped.
pub fn labels(scope: &str, name: &str) -> String {
    format!(
        "{{scope=\"{}\",name=\"{}\"}}",
        escape_label(scope),
        escape_label(name)
    )
}

/// Seconds since the epoch of a timestamp field, as Python prints
/// `timedelta.total_seconds()` (always with a fraction: `1733400109.0`);
/// `0` when absent or unreadable, as Patroni's `... if t else 0`.
fn epoch_seconds(v: Option<&Value>) -> String {
    match v.and_then(Value::as_str).map(iso8601::parse) {
        Some(Ok(secs)) if secs.fract() == 0.0 => format!("{secs:.1}"),
        Some(Ok(secs)) => format!("{secs}"),
        _ => "0".to_owned(),
    }
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

/// Render the metrics of the status document `doc` (`GET /patroni`).
pub fn render(doc: &Value) -> String {
    let field = |k: &str| doc.get(k);
    let truthy = |k: &str| {
        field(k).is_some_and(|v| match v {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::Null => false,
            _ => true,
        })
    };
    let xlog = |k: &str| doc.get("xlog").and_then(|x| x.get(k));
    let number = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let state = field("state").and_then(Value::as_str).unwrap_or("");
    let role = field("role").and_then(Value::as_str).unwrap_or("");
    let meta = field("patroni");
    let meta_str = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let labels = labels(meta_str("scope"), meta_str("name"));
    let server_version = number(field("server_version"));

    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, help: &str, kind: &str, value: &dyn std::fmt::Display| {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{labels} {value}");
    };
    metric(
        "patroni_version",
        "Patroni semver without periods.",
        "gauge",
        &padded_version(meta_str("version")),
    );
    metric(
        "patroni_postgres_running",
        "Value is 1 if Postgres is running, 0 otherwise.",
        "gauge",
        &flag(state == "running"),
    );
    metric(
        "patroni_postmaster_start_time",
        "Epoch seconds since Postgres started.",
        "gauge",
        &epoch_seconds(field("postmaster_start_time")),
    );
    metric(
        "patroni_primary",
        "Value is 1 if this node is the leader, 0 otherwise.",
        "gauge",
        &flag(role == "primary"),
    );
    metric(
        "patroni_xlog_location",
        "Current location of the Postgres transaction log, 0 if this node is not the leader.",
        "counter",
        &number(xlog("location")),
    );
    metric(
        "patroni_standby_leader",
        "Value is 1 if this node is the standby_leader, 0 otherwise.",
        "gauge",
        &flag(role == "standby_leader"),
    );
    metric(
        "patroni_replica",
        "Value is 1 if this node is a replica, 0 otherwise.",
        "gauge",
        &flag(role == "replica"),
    );
    metric(
        "patroni_sync_standby",
        "Value is 1 if this node is a sync standby, 0 otherwise.",
        "gauge",
        &flag(truthy("sync_standby")),
    );
    metric(
        "patroni_quorum_standby",
        "Value is 1 if this node is a quorum standby, 0 otherwise.",
        "gauge",
        &flag(truthy("quorum_standby")),
    );
    metric(
        "patroni_xlog_received_location",
        "Current location of the received Postgres transaction log, 0 if this node is not a replica.",
        "counter",
        &number(xlog("received_location")),
    );
    metric(
        "patroni_xlog_replayed_location",
        "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.",
        "counter",
        &number(xlog("replayed_location")),
    );
    metric(
        "patroni_xlog_replayed_timestamp",
        "Current timestamp of the replayed Postgres transaction log, 0 if null.",
        "gauge",
        &epoch_seconds(xlog("replayed_timestamp")),
    );
    metric(
        "patroni_xlog_paused",
        "Value is 1 if the Postgres xlog is paused, 0 otherwise.",
        "gauge",
        &flag(xlog("paused") == Some(&Value::Bool(true))),
    );
    if server_version >= 90600 {
        let replication_state = field("replication_state").and_then(Value::as_str);
        metric(
            "patroni_postgres_streaming",
            "Value is 1 if Postgres is streaming, 0 otherwise.",
            "gauge",
            &flag(replication_state == Some("streaming")),
        );
        metric(
            "patroni_postgres_in_archive_recovery",
            "Value is 1 if Postgres is replicating from archive, 0 otherwise.",
            "gauge",
            &flag(replication_state == Some("in archive recovery")),
        );
    }
    metric(
        "patroni_postgres_server_version",
        "Version of Postgres (if running), 0 otherwise.",
        "gauge",
        &server_version,
    );
    metric(
        "patroni_cluster_unlocked",
        "Value is 1 if the cluster is unlocked, 0 if locked.",
        "gauge",
        &flag(truthy("cluster_unlocked")),
    );
    metric(
        "patroni_failsafe_mode_is_active",
        "Value is 1 if failsafe mode is active, 0 if inactive.",
        "gauge",
        &flag(truthy("failsafe_mode_is_active")),
    );
    metric(
        "patroni_postgres_timeline",
        "Postgres timeline of this node (if running), 0 otherwise.",
        "gauge",
        &number(field("timeline")),
    );
    metric(
        "patroni_dcs_last_seen",
        "Epoch timestamp when DCS was last contacted successfully by Patroni.",
        "gauge",
        &number(field("dcs_last_seen")),
    );
    metric(
        "patroni_pending_restart",
        "Value is 1 if the node needs a restart, 0 otherwise.",
        "gauge",
        &flag(truthy("pending_restart")),
    );
    metric(
        "patroni_is_paused",
        "Value is 1 if auto failover is disabled, 0 otherwise.",
        "gauge",
        &flag(truthy("pause")),
    );
    // The state gauge carries Patroni's legend between HELP and TYPE.
    let legend: Vec<String> = POSTGRES_STATES
        .iter()
        .zip(STATE_MEMBER_NAMES)
        .map(|((_, i), member)| format!("{i}={member}"))
        .collect();
    let _ = writeln!(
        out,
        "# HELP patroni_postgres_state Numeric representation of Postgres state."
    );
    let _ = writeln!(out, "# Values: {}", legend.join(", "));
    let _ = writeln!(out, "# TYPE patroni_postgres_state gauge");
    let _ = writeln!(out, "patroni_postgres_state{labels} {}", state_index(state));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value_of(text: &str, name: &str) -> String {
        let prefix = format!("{name}{{");
        text.lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
            .to_owned()
    }

    #[test]
    fn a_primary_as_patroni_renders_it() {
        let doc = json!({
            "state": "running",
            "postmaster_start_time": "2026-12-05 11:21:49.123456+00:00",
            "role": "primary",
            "server_version": 150018,
            "xlog": {"location": 67_108_960},
            "timeline": 3,
            "dcs_last_seen": 1_733_400_109,
            "patroni": {"version": "4.1.4", "scope": "batman", "name": "postgresql0"}
        });
        let text = render(&doc);
        let labels = r#"{scope="batman",name="postgresql0"}"#;
        assert!(text.contains(&format!("patroni_version{labels} 040104\n")));
        assert!(text.contains("# TYPE patroni_xlog_location counter\n"));
        for (name, want) in [
            ("patroni_postgres_running", "1"),
            ("patroni_postmaster_start_time", "1796469709.123456"),
            ("patroni_primary", "1"),
            ("patroni_replica", "0"),
            ("patroni_xlog_location", "67108960"),
            ("patroni_xlog_received_location", "0"),
            ("patroni_xlog_replayed_timestamp", "0"),
            ("patroni_postgres_streaming", "0"),
            ("patroni_postgres_server_version", "150018"),
            ("patroni_cluster_unlocked", "0"),
            ("patroni_postgres_timeline", "3"),
            ("patroni_dcs_last_seen", "1733400109"),
            ("patroni_pending_restart", "0"),
            ("patroni_is_paused", "0"),
            ("patroni_postgres_state", "5"),
        ] {
            assert_eq!(value_of(&text, name), want, "{name}");
        }
        // Every sample has its HELP and TYPE, in Patroni's order.
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert_eq!(names.len(), 23, "{names:?}");
        assert_eq!(names.first(), Some(&"patroni_version"));
        assert_eq!(names.last(), Some(&"patroni_postgres_state"));
        assert!(text.contains(
            "# Values: 0=initdb, 1=initdb_failed, 2=custom_bootstrap, 3=custom_bootstrap_failed, \
             4=creating_replica, 5=running, 6=starting, 7=bootstrap_starting, 8=start_failed, \
             9=restarting, 10=restart_failed, 11=stopping, 12=stopped, 13=stop_failed, 14=crashed\n"
        ));
    }

    #[test]
    fn a_streaming_replica_and_a_stopped_node() {
        let doc = json!({
            "state": "running",
            "role": "replica",
            "server_version": 150018,
            "xlog": {"received_location": 200, "replayed_location": 100,
                     "replayed_timestamp": "2026-12-05 11:21:49+00:00", "paused": true},
            "replication_state": "streaming",
            "pause": true,
            "pending_restart": true,
            "cluster_unlocked": true,
            "patroni": {"version": "4.1.4", "scope": "a\"b", "name": "n\\1"}
        });
        let text = render(&doc);
        assert!(text.contains(r#"patroni_replica{scope="a\"b",name="n\\1"} 1"#));
        for (name, want) in [
            ("patroni_xlog_received_location", "200"),
            ("patroni_xlog_replayed_location", "100"),
            ("patroni_xlog_replayed_timestamp", "1796469709.0"),
            ("patroni_xlog_paused", "1"),
            ("patroni_postgres_streaming", "1"),
            ("patroni_postgres_in_archive_recovery", "0"),
            ("patroni_is_paused", "1"),
            ("patroni_pending_restart", "1"),
            ("patroni_cluster_unlocked", "1"),
        ] {
            assert_eq!(value_of(&text, name), want, "{name}");
        }

        // Not running: no server version, so no streaming gauges; the
        // state's code, -1 for a state Patroni has no code for.
        let stopped = render(&json!({"state": "stopped", "role": "replica",
                                     "patroni": {"version": "4.1.4"}}));
        assert!(!stopped.contains("patroni_postgres_streaming"));
        assert_eq!(value_of(&stopped, "patroni_postgres_state"), "12");
        assert_eq!(value_of(&stopped, "patroni_postmaster_start_time"), "0");
        assert_eq!(state_index("rewind failed"), -1);
        assert_eq!(state_index("crashed"), 14);
    }

    #[test]
    fn version_padding() {
        assert_eq!(padded_version("4.1.5"), "040105");
        assert_eq!(padded_version("3.0.2"), "030002");
        assert_eq!(padded_version("10.2.11"), "100211");
    }
}
