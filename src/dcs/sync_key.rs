//! The `sync` key: the synchronous replication state the leader publishes
//! (docs/dcs.md, "`sync`"; docs/replication-modes.md §2), in Patroni's
//! format, `{"leader":"a","quorum":0,"sync_standby":"b,c"}`, so patronictl
//! and Patroni members of a mixed cluster read it.
//!
//! Names compare case-insensitively, as PostgreSQL compares
//! `synchronous_standby_names` with `application_name`.

use serde_json::Value;

/// One read of the `sync` key. Patroni's `SyncState`: lenient, anything
/// that is not an object with a `leader` reads as empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncState {
    /// The primary that wrote the key; `None`: the key is empty (no
    /// synchronous replication in force).
    pub leader: Option<String>,
    /// The standbys, comma-separated as stored (`None`: none).
    pub sync_standby: Option<String>,
    /// Quorum mode: how many of the other members (`leader` and
    /// `sync_standby`) a node of that set must see in a race; 0 otherwise
    /// and whenever `leader` is missing.
    pub quorum: u32,
}

impl SyncState {
    /// Patroni's `SyncState.from_node`: JSON object with string `leader`
    /// and `sync_standby`, integer `quorum` (as a number or a string);
    /// anything else is the empty state.
    pub fn parse(raw: &str) -> SyncState {
        let Ok(Value::Object(o)) = serde_json::from_str::<Value>(raw.trim()) else {
            return SyncState::default();
        };
        let text = |k: &str| match o.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let leader = text("leader");
        let quorum = match o.get("quorum") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        // Patroni reads a `quorum` it cannot parse as no state at all.
        let quorum = match (o.get("quorum"), quorum) {
            (Some(Value::Null) | None, _) => Some(0),
            (Some(_), q) => q.and_then(|q| u32::try_from(q).ok()),
        };
        let Some(quorum) = quorum else {
            return SyncState::default();
        };
        SyncState {
            quorum: if leader.is_some() { quorum } else { 0 },
            sync_standby: text("sync_standby"),
            leader,
        }
    }

    /// The value Patroni's `write_sync_state` stores: keys in this order,
    /// no spaces, standbys sorted and comma-joined, `null` when none.
    pub fn to_json(leader: &str, standbys: &[String], quorum: u32) -> String {
        let mut names: Vec<&str> = standbys.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let standby = if names.is_empty() {
            Value::Null
        } else {
            Value::from(names.join(","))
        };
        format!(
            "{{\"leader\":{},\"quorum\":{quorum},\"sync_standby\":{}}}",
            Value::from(leader),
            standby
        )
    }

    /// No leader: nothing is promised about any standby.
    pub fn is_empty(&self) -> bool {
        self.leader.is_none()
    }

    /// The standbys listed, empty when the state is empty.
    pub fn voters(&self) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        self.sync_standby
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The leader and the standbys; empty when the state is empty.
    pub fn members(&self) -> Vec<String> {
        let mut all: Vec<String> = self.leader.iter().cloned().collect();
        all.extend(self.voters());
        all
    }

    /// `name` is a listed standby (or, with `check_leader`, the leader).
    pub fn matches(&self, name: &str, check_leader: bool) -> bool {
        !name.is_empty()
            && (self.voters().iter().any(|v| v.eq_ignore_ascii_case(name))
                || (check_leader && self.leader_matches(name)))
    }

    /// `name` is the leader that wrote the state.
    pub fn leader_matches(&self, name: &str) -> bool {
        self.leader
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_patronis_forms() {
        let s = SyncState::parse(r#"{"leader":"a","quorum":0,"sync_standby":"b,c"}"#);
        assert_eq!(s.leader.as_deref(), Some("a"));
        assert_eq!(s.voters(), ["b", "c"]);
        assert_eq!(s.members(), ["a", "b", "c"]);
        assert_eq!(s.quorum, 0);
        let s = SyncState::parse(r#"{"leader":"a","quorum":"1","sync_standby":" b , ,C "}"#);
        assert_eq!(s.quorum, 1);
        assert_eq!(s.voters(), ["b", "C"]);
        // Older Patroni wrote no quorum; a null standby list is none.
        let s = SyncState::parse(r#"{"leader":"a","sync_standby":null}"#);
        assert!(!s.is_empty());
        assert!(s.voters().is_empty());
        for junk in ["", "{", "[]", "{}", "null", r#"{"sync_standby":"b"}"#] {
            let s = SyncState::parse(junk);
            assert!(s.is_empty(), "{junk}");
            assert!(s.voters().is_empty() && s.members().is_empty(), "{junk}");
        }
        // A quorum Patroni cannot read makes the whole state empty.
        assert!(SyncState::parse(r#"{"leader":"a","quorum":"x"}"#).is_empty());
        // No leader: the quorum is 0.
        assert_eq!(SyncState::parse(r#"{"quorum":2}"#).quorum, 0);
    }

    #[test]
    fn matching_is_case_insensitive() {
        let s = SyncState::parse(r#"{"leader":"foo","sync_standby":"bar,zoo"}"#);
        assert!(!s.matches("foo", false));
        assert!(s.matches("fOo", true));
        assert!(s.matches("Bar", false));
        assert!(s.matches("zoO", false));
        assert!(!s.matches("baz", true));
        assert!(!s.matches("", true));
        assert!(!SyncState::default().matches("foo", true));
    }

    #[test]
    fn writes_patronis_format() {
        assert_eq!(
            SyncState::to_json("a", &["c".into(), "b".into()], 0),
            r#"{"leader":"a","quorum":0,"sync_standby":"b,c"}"#
        );
        assert_eq!(
            SyncState::to_json("a", &[], 0),
            r#"{"leader":"a","quorum":0,"sync_standby":null}"#
        );
        let back = SyncState::parse(&SyncState::to_json("a\"x", &["b".into()], 1));
        assert_eq!(back.leader.as_deref(), Some("a\"x"));
        assert_eq!(back.quorum, 1);
    }
}
