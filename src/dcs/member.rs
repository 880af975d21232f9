//! The JSON record each node keeps under `members/<name>`
//! (docs/dcs.md, "`members/<name>`"), and the pieces of it other nodes rely on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::types::Tags;

/// What a member publishes about itself. Field names are Patroni's; optional
/// fields are omitted rather than written as `null`, as Patroni does.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MemberData {
    #[serde(default)]
    pub conn_url: String,
    #[serde(default)]
    pub api_url: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlog_location: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u64>,
    #[serde(default, skip_serializing_if = "tags_empty")]
    pub tags: Tags,
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending_restart: bool,
    /// `{param: {old_value, new_value}}` for the settings only a restart
    /// applies (Patroni 3.3+).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending_restart_reason: BTreeMap<String, PendingChange>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub pause: bool,
    /// Leader only: `Some(false)` while its post-promote CHECKPOINT has not
    /// finished (replicas delay pg_rewind meanwhile); omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_after_promote: Option<bool>,
    /// A restart scheduled through `POST /restart`: `{schedule, filters...,
    /// postmaster_start_time}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_restart: Option<serde_json::Value>,
}

/// A setting PostgreSQL runs with (`old_value`) that differs from the
/// configured one (`new_value`) until the next restart.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PendingChange {
    pub old_value: String,
    pub new_value: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn tags_empty(t: &Tags) -> bool {
    *t == Tags::default()
}

impl MemberData {
    /// Parse a stored value. A value that is not a JSON object reads as an
    /// empty record, as in Patroni (docs/dcs.md, "`members/<name>`"); the
    /// legacy `postgres://host:port/db?application_name=<api_url>` form is
    /// understood.
    pub fn parse(raw: &str) -> MemberData {
        if let Ok(m) = serde_json::from_str::<MemberData>(raw) {
            return m;
        }
        if let Some((conn, query)) = raw.split_once('?')
            && raw.starts_with("postgres://")
        {
            let api = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("application_name="))
                .unwrap_or_default();
            return MemberData {
                conn_url: conn.to_owned(),
                api_url: api.to_owned(),
                ..MemberData::default()
            };
        }
        MemberData::default()
    }

    /// Compact JSON, as Patroni writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// `role` accepts the pre-4.0 `master` as `primary`.
    pub fn is_primary_role(&self) -> bool {
        self.role == "primary" || self.role == "master"
    }

    /// Host and port of `conn_url` (`postgres://host:port/db`, port 5432
    /// when absent), read by the `url` crate: userinfo, IPv6 brackets and
    /// query strings (the legacy `?application_name=http://...` form) are
    /// its business.
    pub fn conn_host_port(&self) -> Option<(String, u16)> {
        let url = url::Url::parse(&self.conn_url).ok()?;
        let host = match url.host()? {
            url::Host::Domain(d) => d.to_owned(),
            url::Host::Ipv4(a) => a.to_string(),
            url::Host::Ipv6(a) => a.to_string(),
        };
        Some((host, url.port().unwrap_or(5432)))
    }
}

/// A member as seen in the DCS: its name, record and the key's version.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub data: MemberData,
    /// The key's version (opaque: docs/dcs.md, "Versions, sessions and
    /// expiry").
    pub version: super::Version,
    /// The session the key is attached to, if any.
    pub session: Option<super::SessionId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_compact() {
        let m = MemberData {
            conn_url: "postgres://10.0.0.2:5432/postgres".into(),
            api_url: "http://10.0.0.2:8008/patroni".into(),
            state: "running".into(),
            role: "replica".into(),
            version: "4.1.4".into(),
            xlog_location: Some(50331808),
            timeline: Some(3),
            ..Default::default()
        };
        let j = m.to_json();
        assert!(!j.contains(' '));
        assert!(!j.contains("null"));
        assert!(!j.contains("tags"));
        assert_eq!(MemberData::parse(&j), m);
    }

    #[test]
    fn garbage_reads_as_empty() {
        assert_eq!(MemberData::parse("[1,2]"), MemberData::default());
        assert_eq!(MemberData::parse("nope"), MemberData::default());
    }

    #[test]
    fn legacy_form() {
        let m = MemberData::parse(
            "postgres://u:p@10.0.0.1:5433/postgres?application_name=http://10.0.0.1:8008/patroni",
        );
        assert_eq!(m.api_url, "http://10.0.0.1:8008/patroni");
        assert_eq!(m.conn_host_port(), Some(("10.0.0.1".into(), 5433)));
    }

    #[test]
    fn master_is_primary() {
        let m = MemberData::parse(r#"{"role":"master"}"#);
        assert!(m.is_primary_role());
    }

    #[test]
    fn ipv6_conn_url() {
        let m = MemberData {
            conn_url: "postgres://[::1]:5433/postgres".into(),
            ..Default::default()
        };
        assert_eq!(m.conn_host_port(), Some(("::1".into(), 5433)));
        let at = |conn_url: &str| {
            MemberData {
                conn_url: conn_url.into(),
                ..Default::default()
            }
            .conn_host_port()
        };
        assert_eq!(at("postgres://db-1/postgres"), Some(("db-1".into(), 5432)));
        assert_eq!(
            at("postgresql://u:p%40s@db-1:6432/x?sslmode=require"),
            Some(("db-1".into(), 6432))
        );
        assert_eq!(at("postgres://h:99999/x"), None);
        assert_eq!(at("not a url"), None);
    }
}
