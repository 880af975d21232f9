//! `standby_cluster` of the dynamic configuration (docs/ha.md §16): the
//! remote PostgreSQL a standby cluster replicates from, checked as Patroni's
//! validator checks it.

use serde_json::Value;

use super::error::{ConfigError, ORIGIN_DYNAMIC};
use super::types::StandbyCluster;

/// The section as written, or `None` when the cluster is not a standby
/// cluster. As in Patroni (`global_config.is_standby_cluster`), a section
/// makes one only when one of `host`, `port`, `restore_command` is set
/// (truthy): `standby_cluster: {}` or `null` is a normal cluster, which is
/// how `patronictl edit-config` promotes a standby cluster. Every bad field
/// is reported, named, so a PATCH with one changes nothing.
pub fn from_json(v: Option<&Value>) -> Result<Option<StandbyCluster>, ConfigError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(other) => {
            return Err(ConfigError::key(
                ORIGIN_DYNAMIC,
                "standby_cluster",
                format!("expected a mapping, got {other}"),
            ));
        }
    };
    let mut errors = Vec::new();
    let mut text = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(ConfigError::key(
                ORIGIN_DYNAMIC,
                format!("standby_cluster.{key}"),
                format!("expected a string, got {other}"),
            ));
            None
        }
    };
    let mut sc = StandbyCluster {
        host: text("host").filter(|h| !h.is_empty()),
        port: None,
        primary_slot_name: text("primary_slot_name").filter(|s| !s.is_empty()),
        create_replica_methods: Vec::new(),
        restore_command: text("restore_command").filter(|s| !s.is_empty()),
        archive_cleanup_command: text("archive_cleanup_command").filter(|s| !s.is_empty()),
        recovery_min_apply_delay: text("recovery_min_apply_delay").filter(|s| !s.is_empty()),
    };
    match obj.get("port") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_u64().and_then(|n| u16::try_from(n).ok()) {
            Some(p) if p > 0 => sc.port = Some(p),
            _ => errors.push(ConfigError::key(
                ORIGIN_DYNAMIC,
                "standby_cluster.port",
                format!("expected an integer from 1 to 65535, got {v}"),
            )),
        },
    }
    match obj.get("create_replica_methods") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => sc.create_replica_methods.push(s.clone()),
                    other => errors.push(ConfigError::key(
                        ORIGIN_DYNAMIC,
                        "standby_cluster.create_replica_methods",
                        format!("expected a list of strings, got {other} in it"),
                    )),
                }
            }
        }
        Some(other) => errors.push(ConfigError::key(
            ORIGIN_DYNAMIC,
            "standby_cluster.create_replica_methods",
            format!("expected a list of strings, got {other}"),
        )),
    }
    if let Some(slot) = &sc.primary_slot_name
        && !super::dynamic::valid_slot_name(slot)
    {
        errors.push(ConfigError::key(
            ORIGIN_DYNAMIC,
            "standby_cluster.primary_slot_name",
            format!(
                "{slot:?} is not a valid slot name (lower-case letters, digits, _; at most 63)"
            ),
        ));
    }
    if let Some(e) = ConfigError::combine(errors) {
        return Err(e);
    }
    Ok((sc.host.is_some() || sc.port.is_some() || sc.restore_command.is_some()).then_some(sc))
}

impl StandbyCluster {
    /// Where the standby leader streams from: `host` (which may list
    /// several, comma-separated, as libpq takes them), else the local
    /// socket directory's default, as libpq's own default would be; `port`
    /// else 5432. `None` when the section names neither (a cluster fed by
    /// `restore_command` alone).
    pub fn stream_address(&self) -> Option<(String, u16)> {
        if self.host.is_none() && self.port.is_none() {
            return None;
        }
        Some((
            self.host.clone().unwrap_or_default(),
            self.port.unwrap_or(5432),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_section_with_host_port_or_restore_command_makes_a_standby_cluster() {
        let sc = from_json(Some(&json!({"host": "10.0.0.1", "port": 5433,
            "primary_slot_name": "standby_a", "create_replica_methods": ["basebackup"],
            "restore_command": "cp /a/%f %p", "archive_cleanup_command": "true",
            "recovery_min_apply_delay": "5min"})))
        .unwrap()
        .unwrap();
        assert_eq!(sc.host.as_deref(), Some("10.0.0.1"));
        assert_eq!(sc.port, Some(5433));
        assert_eq!(sc.primary_slot_name.as_deref(), Some("standby_a"));
        assert_eq!(sc.create_replica_methods, vec!["basebackup".to_owned()]);
        assert_eq!(sc.recovery_min_apply_delay.as_deref(), Some("5min"));
        assert_eq!(sc.stream_address(), Some(("10.0.0.1".to_owned(), 5433)));
        let only_restore = from_json(Some(&json!({"restore_command": "cp /a/%f %p"})))
            .unwrap()
            .unwrap();
        assert_eq!(only_restore.stream_address(), None);
        let only_port = from_json(Some(&json!({"port": 6000}))).unwrap().unwrap();
        assert_eq!(only_port.stream_address(), Some((String::new(), 6000)));
    }

    #[test]
    fn an_empty_or_null_section_is_a_normal_cluster() {
        assert_eq!(from_json(None).unwrap(), None);
        assert_eq!(from_json(Some(&Value::Null)).unwrap(), None);
        assert_eq!(from_json(Some(&json!({}))).unwrap(), None);
        // Patroni's truthiness: empty strings do not count.
        assert_eq!(
            from_json(Some(&json!({"host": "", "primary_slot_name": "x"}))).unwrap(),
            None
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let e = from_json(Some(&json!({"host": 5, "port": 70000,
            "create_replica_methods": "basebackup", "primary_slot_name": "Bad-Name"})))
        .unwrap_err()
        .to_string();
        for key in [
            "standby_cluster.host",
            "standby_cluster.port",
            "standby_cluster.create_replica_methods",
            "standby_cluster.primary_slot_name",
        ] {
            assert!(e.contains(key), "{key} missing from {e}");
        }
        let e = from_json(Some(&json!("10.0.0.1"))).unwrap_err().to_string();
        assert!(
            e.contains("standby_cluster") && e.contains("mapping"),
            "{e}"
        );
        let e = from_json(Some(&json!({"port": "5432"})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("standby_cluster.port"), "{e}");
    }
}
