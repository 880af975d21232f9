//! The dynamic (cluster-wide) configuration stored in the DCS `config` key
//! and in `bootstrap.dcs` (docs/configuration.md §9).
//!
//! Timing values are seconds, integers or decimals; they are adjusted as
//! Patroni adjusts them, with pgpilot's own minimums (`super::timing`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::{ConfigError, ORIGIN_DYNAMIC};
use super::schema::parse_bool;
use super::timing::{adjusted_timing, seconds};
use super::types::{
    DynamicConfig, SlotKind, SlotMatcher, SlotSpec, SlotsConfig, SyncConfig, SyncMode, Timing,
};

pub const DEFAULT_MAXIMUM_LAG_ON_FAILOVER: u64 = 1_048_576;
/// `member_slots_ttl` default: 30 minutes.
pub const DEFAULT_MEMBER_SLOTS_TTL: u64 = 1800;
/// Patroni's default `primary_start_timeout`, seconds.
pub const DEFAULT_PRIMARY_START_TIMEOUT: u64 = 300;

impl DynamicConfig {
    /// Patroni's defaults (docs/configuration.md §9), with `raw` an empty object.
    pub fn defaults() -> DynamicConfig {
        DynamicConfig {
            timing: Timing::default(),
            maximum_lag_on_failover: DEFAULT_MAXIMUM_LAG_ON_FAILOVER,
            use_slots: true,
            slots: SlotsConfig {
                member_slots_ttl: DEFAULT_MEMBER_SLOTS_TTL,
                ..SlotsConfig::default()
            },
            use_pg_rewind: false,
            parameters: BTreeMap::new(),
            pause: false,
            failsafe_mode: false,
            primary_start_timeout: DEFAULT_PRIMARY_START_TIMEOUT,
            sync: SyncConfig::default(),
            standby_cluster: None,
            raw: Value::Object(Default::default()),
        }
    }

    /// Parse and check the JSON of the DCS `config` key (or `bootstrap.dcs`).
    /// `null` gives the defaults. All problems are reported at once; keys
    /// are relative to the document (`ttl`, `postgresql.use_slots`).
    pub fn from_json(v: &Value) -> Result<DynamicConfig, ConfigError> {
        let mut cfg = DynamicConfig::defaults();
        cfg.raw = v.clone();
        let obj = match v {
            Value::Null => return Ok(cfg),
            Value::Object(o) => o,
            other => {
                return Err(ConfigError::key(
                    ORIGIN_DYNAMIC,
                    "",
                    format!("expected a mapping, got {other}"),
                ));
            }
        };
        let mut errors = Vec::new();
        match adjusted_timing(v) {
            Ok(t) => cfg.timing = t.timing,
            Err(e) => errors.push(e),
        }
        let mut take = |r: Result<(), ConfigError>| {
            if let Err(e) = r {
                errors.push(e);
            }
        };
        take(
            opt_uint(
                obj.get("maximum_lag_on_failover"),
                "maximum_lag_on_failover",
            )
            .map(|n| {
                if let Some(n) = n {
                    cfg.maximum_lag_on_failover = n;
                }
            }),
        );
        take(opt_bool(obj.get("pause"), "pause").map(|b| cfg.pause = b.unwrap_or(false)));
        take(
            opt_bool(obj.get("failsafe_mode"), "failsafe_mode")
                .map(|b| cfg.failsafe_mode = b.unwrap_or(false)),
        );
        match obj.get("postgresql") {
            None | Some(Value::Null) => {}
            Some(Value::Object(pg)) => {
                take(
                    opt_bool(pg.get("use_slots"), "postgresql.use_slots")
                        .map(|b| cfg.use_slots = b.unwrap_or(true)),
                );
                take(
                    opt_bool(pg.get("use_pg_rewind"), "postgresql.use_pg_rewind")
                        .map(|b| cfg.use_pg_rewind = b.unwrap_or(false)),
                );
                take(hba_lines(pg.get("pg_hba")).map(drop));
                match pg.get("parameters") {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(p)) => {
                        cfg.parameters = p.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                    }
                    Some(other) => take(Err(bad("postgresql.parameters", "a mapping", other))),
                }
            }
            Some(other) => take(Err(bad("postgresql", "a mapping", other))),
        }
        // Keys pgpilot does not act on yet are still range-checked, as
        // `patroni --validate-config` does.
        for key in [
            "max_timelines_history",
            "primary_stop_timeout",
            "master_stop_timeout",
        ] {
            take(opt_uint(obj.get(key), key).map(drop));
        }
        // Patroni's `global_config.primary_start_timeout`: the new name
        // when present (even if null: then the default), else the old one.
        let start_key = if obj.contains_key("primary_start_timeout") {
            "primary_start_timeout"
        } else {
            "master_start_timeout"
        };
        for key in ["primary_start_timeout", "master_start_timeout"] {
            take(opt_uint(obj.get(key), key).map(|n| {
                if key == start_key {
                    cfg.primary_start_timeout = n.unwrap_or(DEFAULT_PRIMARY_START_TIMEOUT);
                }
            }));
        }
        take(slots_from_json(obj).map(|slots| cfg.slots = slots));
        take(sync_from_json(obj).map(|sync| cfg.sync = sync));
        take(
            super::standby_cluster::from_json(obj.get("standby_cluster"))
                .map(|sc| cfg.standby_cluster = sc),
        );
        if cfg.standby_cluster.is_some() {
            // Patroni's `is_synchronous_mode`: never in a standby cluster.
            cfg.sync.mode = SyncMode::Off;
        }
        take(opt_bool(obj.get("check_timeline"), "check_timeline").map(drop));
        match ConfigError::combine(errors) {
            None => Ok(cfg),
            Some(e) => Err(e),
        }
    }
}

impl DynamicConfig {
    /// How the timing in force differs from the one written in `raw`, one
    /// warning each, in Patroni's words (`super::timing`); empty when it
    /// does not.
    pub fn timing_adjustments(&self) -> Vec<String> {
        adjusted_timing(&self.raw)
            .map(|a| a.adjustments)
            .unwrap_or_default()
    }

    /// The dynamic `postgresql.pg_hba` lines (empty when unset). Patroni
    /// reads them from the DCS like any `postgresql` key, and a local
    /// `postgresql.pg_hba` takes precedence (its sample `postgres0.yml`
    /// puts them in `bootstrap.dcs.postgresql`). Checked by
    /// [`DynamicConfig::from_json`], so a malformed value reads as unset.
    pub fn pg_hba(&self) -> Vec<String> {
        hba_lines(self.raw.pointer("/postgresql/pg_hba")).unwrap_or_default()
    }
}

/// The synchronous replication keys (docs/replication-modes.md §1), checked
/// as Patroni's validator checks them: `synchronous_mode` a boolean or
/// `quorum` (any case), `synchronous_mode_strict` a boolean,
/// `synchronous_node_count` an integer >= 1, `maximum_lag_on_syncnode` an
/// integer (a size with a unit too; <= 0 is no limit). Every bad key is
/// reported, naming it, so a PATCH with one is refused as a whole and the
/// DCS keeps what it had.
fn sync_from_json(obj: &serde_json::Map<String, Value>) -> Result<SyncConfig, ConfigError> {
    let mut cfg = SyncConfig::default();
    let mut errors = Vec::new();
    match obj.get("synchronous_mode") {
        Some(Value::String(s)) if s.eq_ignore_ascii_case("quorum") => cfg.mode = SyncMode::Quorum,
        v => match opt_bool(v, "synchronous_mode") {
            Ok(Some(true)) => cfg.mode = SyncMode::On,
            Ok(_) => {}
            Err(_) => errors.push(bad(
                "synchronous_mode",
                "on, off or quorum",
                v.unwrap_or(&Value::Null),
            )),
        },
    }
    match opt_bool(
        obj.get("synchronous_mode_strict"),
        "synchronous_mode_strict",
    ) {
        Ok(b) => cfg.strict = b.unwrap_or(false),
        Err(e) => errors.push(e),
    }
    match opt_uint(obj.get("synchronous_node_count"), "synchronous_node_count") {
        Ok(Some(0)) => errors.push(ConfigError::key(
            ORIGIN_DYNAMIC,
            "synchronous_node_count",
            "must be at least 1",
        )),
        Ok(Some(n)) => match u32::try_from(n) {
            Ok(n) => cfg.node_count = n,
            Err(_) => errors.push(ConfigError::key(
                ORIGIN_DYNAMIC,
                "synchronous_node_count",
                format!("{n} is too large"),
            )),
        },
        Ok(None) => {}
        Err(e) => errors.push(e),
    }
    match opt_int(
        obj.get("maximum_lag_on_syncnode"),
        "maximum_lag_on_syncnode",
    ) {
        Ok(n) => cfg.maximum_lag_on_syncnode = n.unwrap_or(-1),
        Err(e) => errors.push(e),
    }
    match ConfigError::combine(errors) {
        None => Ok(cfg),
        Some(e) => Err(e),
    }
}

/// `postgresql.pg_hba`: a list of strings, one pg_hba.conf line each.
fn hba_lines(v: Option<&Value>) -> Result<Vec<String>, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|l| match l {
                Value::String(s) => Ok(s.clone()),
                other => Err(bad("postgresql.pg_hba", "a list of strings", other)),
            })
            .collect(),
        Some(other) => Err(bad("postgresql.pg_hba", "a list of strings", other)),
    }
}

/// Python's truthiness of a JSON value: `null`, `false`, `0`, `""`, `[]`
/// and `{}` are false. Patroni's slot rules test values this way.
fn python_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// `slots` (or its aliases), `ignore_slots` and `member_slots_ttl`.
/// Patroni reads `permanent_replication_slots`, then `permanent_slots`, then
/// `slots`, taking the first that is set. A slot's value may be empty
/// (physical), `{type: physical}` or `{type: logical, database, plugin}`;
/// `cluster_type: standby` slots are for standby clusters and skipped.
fn slots_from_json(obj: &serde_json::Map<String, Value>) -> Result<SlotsConfig, ConfigError> {
    let mut errors = Vec::new();
    let mut out = SlotsConfig {
        member_slots_ttl: DEFAULT_MEMBER_SLOTS_TTL,
        ..SlotsConfig::default()
    };
    match obj.get("member_slots_ttl").filter(|v| !v.is_null()) {
        None => {}
        Some(v) => match seconds(v) {
            Some(s) => out.member_slots_ttl = s as u64,
            None => errors.push(bad("member_slots_ttl", "a number of seconds", v)),
        },
    }
    let (key, slots) = ["permanent_replication_slots", "permanent_slots", "slots"]
        .into_iter()
        .find_map(|k| obj.get(k).filter(|v| !python_falsy(v)).map(|v| (k, v)))
        .unwrap_or(("slots", &Value::Null));
    match slots {
        Value::Null => {}
        Value::Object(map) => {
            for (name, value) in map {
                let at = format!("{key}.{name}");
                if !valid_slot_name(name) {
                    errors.push(ConfigError::key(
                        ORIGIN_DYNAMIC,
                        &at,
                        "slot names must match ^[a-z0-9_]{1,63}$",
                    ));
                    continue;
                }
                let field = |f: &str| {
                    value
                        .get(f)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                };
                // Patroni: `value if value else {'type': 'physical'}`, so
                // any falsy value (`0`, `null`, `{}`, `""`) is a physical slot.
                if python_falsy(value) {
                    out.permanent.push(SlotSpec::physical(name.clone()));
                    continue;
                }
                if !value.is_object() {
                    errors.push(bad(&at, "a mapping", value));
                    continue;
                }
                if field("cluster_type").as_deref() == Some("standby") {
                    continue;
                }
                // Without a `type`, a slot naming both a database and a
                // plugin is logical (Patroni's rule), any other physical.
                let implied = match (field("database"), field("plugin")) {
                    (Some(_), Some(_)) => "logical",
                    _ => "physical",
                };
                match field("type").as_deref().unwrap_or(implied) {
                    "physical" => out.permanent.push(SlotSpec::physical(name.clone())),
                    "logical" => match (field("database"), field("plugin")) {
                        (Some(database), Some(plugin)) => out.permanent.push(SlotSpec {
                            name: name.clone(),
                            kind: SlotKind::Logical,
                            database: Some(database),
                            plugin: Some(plugin),
                        }),
                        _ => errors.push(ConfigError::key(
                            ORIGIN_DYNAMIC,
                            &at,
                            "a logical slot needs database and plugin",
                        )),
                    },
                    other => errors.push(ConfigError::key(
                        ORIGIN_DYNAMIC,
                        format!("{at}.type"),
                        format!("expected physical or logical, got {other:?}"),
                    )),
                }
            }
        }
        other => errors.push(bad(key, "a mapping", other)),
    }
    match obj.get("ignore_slots") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let Value::Object(m) = item else {
                    errors.push(bad(&format!("ignore_slots[{i}]"), "a mapping", item));
                    continue;
                };
                let field = |f: &str| m.get(f).and_then(Value::as_str).map(str::to_owned);
                let kind = match field("type").as_deref() {
                    None => None,
                    Some("physical") => Some(SlotKind::Physical),
                    Some("logical") => Some(SlotKind::Logical),
                    Some(other) => {
                        errors.push(ConfigError::key(
                            ORIGIN_DYNAMIC,
                            format!("ignore_slots[{i}].type"),
                            format!("expected physical or logical, got {other:?}"),
                        ));
                        continue;
                    }
                };
                out.ignore.push(SlotMatcher {
                    name: field("name"),
                    kind,
                    database: field("database"),
                    plugin: field("plugin"),
                });
            }
        }
        Some(other) => errors.push(bad("ignore_slots", "a list", other)),
    }
    match ConfigError::combine(errors) {
        None => Ok(out),
        Some(e) => Err(e),
    }
}

/// Permanent slot names (docs/operations.md, "Replication slots"): `^[a-z0-9_]{1,63}$`.
pub fn valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

fn bad(key: &str, expected: &str, got: &Value) -> ConfigError {
    ConfigError::key(
        ORIGIN_DYNAMIC,
        key,
        format!("expected {expected}, got {got}"),
    )
}

/// A Patroni boolean: JSON bool, 0/1, or `on/off/true/false/yes/no/1/0`.
pub(crate) fn json_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => parse_bool(s),
        _ => None,
    }
}

fn opt_bool(v: Option<&Value>, key: &str) -> Result<Option<bool>, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(x) => json_bool(x)
            .map(Some)
            .ok_or_else(|| bad(key, "a boolean (on/off/true/false/yes/no/1/0)", x)),
    }
}

/// A size in bytes: integer, or a string with an optional PG unit
/// (`B`, `kB`, `MB`, `GB`, `TB`).
fn int_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => super::units::parse_size(s),
        _ => None,
    }
}

fn opt_int(v: Option<&Value>, key: &str) -> Result<Option<i64>, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(x) => int_value(x)
            .map(Some)
            .ok_or_else(|| bad(key, "an integer", x)),
    }
}

fn opt_uint(v: Option<&Value>, key: &str) -> Result<Option<u64>, ConfigError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(x) => int_value(x)
            .and_then(|n| u64::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(key, "a non-negative integer", x)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn defaults() {
        let d = DynamicConfig::defaults();
        assert_eq!(d.timing.ttl, Duration::from_secs(30));
        assert_eq!(d.timing.loop_wait, Duration::from_secs(10));
        assert_eq!(d.timing.retry_timeout, Duration::from_secs(10));
        assert_eq!(d.maximum_lag_on_failover, 1_048_576);
        assert!(d.use_slots && !d.use_pg_rewind && !d.pause);
        assert_eq!(
            DynamicConfig::from_json(&Value::Null).unwrap().timing,
            d.timing
        );
    }

    #[test]
    fn parses_patroni_document() {
        let v = json!({
            "ttl": 30, "loop_wait": 10, "retry_timeout": 10,
            "maximum_lag_on_failover": 1048576,
            "postgresql": {"use_pg_rewind": true, "use_slots": "off",
                           "parameters": {"max_connections": 100}},
            "synchronous_mode": "quorum", "pause": "yes", "custom": [1]
        });
        let d = DynamicConfig::from_json(&v).unwrap();
        assert!(d.use_pg_rewind && !d.use_slots && d.pause);
        assert_eq!(d.parameters["max_connections"], json!(100));
        assert_eq!(d.raw, v);
    }

    /// Patroni's sample `postgres0.yml` keeps `pg_hba` in
    /// `bootstrap.dcs.postgresql`.
    #[test]
    fn pg_hba_lines_from_the_dcs() {
        let lines = json!(["host all all 0.0.0.0/0 md5", "local all all peer"]);
        let d = DynamicConfig::from_json(&json!({"postgresql": {"pg_hba": lines}})).unwrap();
        assert_eq!(
            d.pg_hba(),
            ["host all all 0.0.0.0/0 md5", "local all all peer"]
        );
        assert!(DynamicConfig::defaults().pg_hba().is_empty());
        for bad in [json!("host all all 0.0.0.0/0 md5"), json!(["ok", 1])] {
            let e = DynamicConfig::from_json(&json!({"postgresql": {"pg_hba": bad}}))
                .unwrap_err()
                .to_string();
            assert!(e.contains("postgresql.pg_hba"), "{e}");
            assert!(e.contains("a list of strings"), "{e}");
        }
    }

    #[test]
    fn short_decimal_timing() {
        let d =
            DynamicConfig::from_json(&json!({"ttl": 5, "loop_wait": 0.5, "retry_timeout": "1.0"}))
                .unwrap();
        assert_eq!(d.timing.loop_wait, Duration::from_millis(500));
        assert_eq!(d.timing.retry_timeout, Duration::from_secs(1));
        assert_eq!(d.timing.ttl, Duration::from_secs(5));
        assert!(d.timing_adjustments().is_empty());
        let t =
            super::super::timing_from_json(&json!({"ttl": "2min", "loop_wait": "500ms"})).unwrap();
        assert_eq!(t.ttl, Duration::from_secs(120));
        assert_eq!(t.loop_wait, Duration::from_millis(500));
    }

    /// Patroni adjusts timing that breaks `loop_wait + 2*retry_timeout <=
    /// ttl` instead of refusing it (docs/configuration.md §9); `raw` keeps
    /// what was written.
    #[test]
    fn impossible_timing_is_adjusted_not_refused() {
        let v = json!({"ttl": 20, "loop_wait": 10, "retry_timeout": 10});
        let d = DynamicConfig::from_json(&v).unwrap();
        assert_eq!(d.timing.ttl, Duration::from_secs(20));
        assert_eq!(d.timing.loop_wait, Duration::from_secs(1));
        assert_eq!(d.timing.retry_timeout, Duration::from_secs(9));
        assert_eq!(d.raw, v);
        let notes = d.timing_adjustments();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("Adjusting loop_wait from 10 to 1 and retry_timeout from 10 to 9"),
            "{notes:?}"
        );
    }

    #[test]
    fn fencing_margin_must_leave_a_cycle() {
        // 8 + 2*1 <= 10 passes the lease rule, but 10 - 1 s of margin = 9
        // does not exceed 8 + 1: loop_wait is lowered.
        let d = DynamicConfig::from_json(&json!({"ttl": 10, "loop_wait": 8, "retry_timeout": 1}))
            .unwrap();
        assert_eq!(d.timing.loop_wait, Duration::from_millis(7900));
        assert!(d.timing.fence_room().is_ok());
        assert!(d.timing_adjustments()[0].contains("fencing margin"));
        // The margin is 1 s whatever the ttl.
        for ttl in [5, 6, 15, 20, 60] {
            let t =
                DynamicConfig::from_json(&json!({"ttl": ttl, "loop_wait": 1, "retry_timeout": 2}))
                    .unwrap()
                    .timing;
            assert_eq!(t.fence_margin(), Duration::from_secs(1), "ttl {ttl}");
        }
        assert!(DynamicConfig::defaults().timing.fence_room().is_ok());
    }

    #[test]
    fn ttl_down_to_five_seconds() {
        // ttl 5 with loop_wait 1 + 2 * retry_timeout 2 = 5: as written.
        let t = DynamicConfig::from_json(&json!({"ttl": 5, "loop_wait": 1, "retry_timeout": 2}))
            .unwrap()
            .timing;
        assert_eq!(t.ttl, Duration::from_secs(5));
        assert_eq!(t.keepalive_interval(), Duration::from_millis(1250));
        // ttl 5 with loop_wait 2 + 2 * 2 = 6 > 5: loop_wait lowered to 1.
        let t = DynamicConfig::from_json(&json!({"ttl": 5, "loop_wait": 2, "retry_timeout": 2}))
            .unwrap()
            .timing;
        assert_eq!(t.loop_wait, Duration::from_secs(1));
        // Below 5 s: raised to 5 s, as Patroni raises a ttl under 20.
        for ttl in [json!(4.9), json!(3), json!("2s")] {
            let d = DynamicConfig::from_json(
                &json!({"ttl": ttl, "loop_wait": 0.5, "retry_timeout": 1}),
            )
            .unwrap();
            assert_eq!(d.timing.ttl, Duration::from_secs(5), "{ttl}");
            assert!(
                d.timing_adjustments()[0].contains("can't be smaller than 5, adjusting..."),
                "{:?}",
                d.timing_adjustments()
            );
        }
    }

    #[test]
    fn minimums_and_types() {
        let e = DynamicConfig::from_json(
            &json!({"ttl": "x", "loop_wait": false, "retry_timeout": "1 fortnight"}),
        )
        .unwrap_err();
        let keys: Vec<_> = e.errors().iter().filter_map(|e| e.key_path()).collect();
        assert_eq!(keys, ["ttl", "loop_wait", "retry_timeout"]);
        let e = DynamicConfig::from_json(&json!({"maximum_lag_on_failover": "x"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dynamic configuration: maximum_lag_on_failover: expected a non-negative integer, got \"x\""
        );
        let e = DynamicConfig::from_json(&json!({"maximum_lag_on_failover": -1})).unwrap_err();
        assert_eq!(e.key_path(), Some("maximum_lag_on_failover"));
        assert_eq!(
            DynamicConfig::from_json(&json!({"maximum_lag_on_failover": "1MB"}))
                .unwrap()
                .maximum_lag_on_failover,
            1 << 20
        );
        let e = DynamicConfig::from_json(&json!({"synchronous_node_count": 0})).unwrap_err();
        assert_eq!(e.key_path(), Some("synchronous_node_count"));
        let e = DynamicConfig::from_json(&json!({"synchronous_mode": "sometimes"})).unwrap_err();
        assert_eq!(e.key_path(), Some("synchronous_mode"));
        assert!(DynamicConfig::from_json(&json!([1])).is_err());
    }

    #[test]
    fn synchronous_replication_keys() {
        let d = DynamicConfig::defaults();
        assert_eq!(d.sync.mode, SyncMode::Off);
        assert_eq!((d.sync.wanted(), d.sync.min_nodes()), (1, 0));
        assert_eq!(d.sync.maximum_lag_on_syncnode, -1);
        // Patroni's spellings: booleans in any of its forms, `quorum` in
        // any case.
        for (v, mode) in [
            (json!(true), SyncMode::On),
            (json!("on"), SyncMode::On),
            (json!("yes"), SyncMode::On),
            (json!(1), SyncMode::On),
            (json!("off"), SyncMode::Off),
            (json!(false), SyncMode::Off),
            (json!("Quorum"), SyncMode::Quorum),
            (json!("quorum"), SyncMode::Quorum),
        ] {
            let d = DynamicConfig::from_json(&json!({"synchronous_mode": v})).unwrap();
            assert_eq!(d.sync.mode, mode, "{v}");
        }
        let d = DynamicConfig::from_json(&json!({
            "synchronous_mode": true, "synchronous_mode_strict": "on",
            "synchronous_node_count": 2, "maximum_lag_on_syncnode": "16MB"
        }))
        .unwrap();
        assert!(d.sync.strict);
        assert_eq!(d.sync.wanted(), 2);
        assert_eq!(d.sync.min_nodes(), 1);
        assert_eq!(d.sync.maximum_lag_on_syncnode, 16 << 20);
        // Bad values name their key; all of them are reported.
        let e = DynamicConfig::from_json(&json!({"synchronous_mode": "maybe"})).unwrap_err();
        assert_eq!(e.key_path(), Some("synchronous_mode"));
        assert!(e.to_string().contains("maybe"), "{e}");
        let e = DynamicConfig::from_json(&json!({
            "synchronous_mode_strict": "perhaps", "synchronous_node_count": -1
        }))
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("synchronous_mode_strict") && text.contains("synchronous_node_count"),
            "{text}"
        );
        let e = DynamicConfig::from_json(&json!({"maximum_lag_on_syncnode": "lots"})).unwrap_err();
        assert_eq!(e.key_path(), Some("maximum_lag_on_syncnode"));
    }

    #[test]
    fn permanent_and_ignored_slots() {
        let d = DynamicConfig::from_json(&json!({
            "permanent_slots": {
                "keep_me": null,
                "phys": {"type": "physical"},
                "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"},
                "remote": {"type": "physical", "cluster_type": "standby"}
            },
            "slots": {"shadowed": null},
            "ignore_slots": [{"name": "ext"}, {"type": "logical", "plugin": "wal2json"}],
            "member_slots_ttl": "10min"
        }))
        .unwrap();
        let names: Vec<_> = d.slots.permanent.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["cdc", "keep_me", "phys"]);
        assert_eq!(d.slots.permanent[0].kind, SlotKind::Logical);
        assert_eq!(d.slots.permanent[0].plugin.as_deref(), Some("pgoutput"));
        assert_eq!(d.slots.ignore.len(), 2);
        assert_eq!(d.slots.ignore[1].kind, Some(SlotKind::Logical));
        assert_eq!(d.slots.member_slots_ttl, 600);
        assert_eq!(DynamicConfig::defaults().slots.member_slots_ttl, 1800);

        // Patroni's rules (issue 14 §6): any falsy value is a physical slot;
        // without a `type`, database + plugin make a logical one.
        let d = DynamicConfig::from_json(&json!({
            "slots": {"z": 0, "f": false, "e": "", "o": {}, "n": null,
                      "implied": {"database": "app", "plugin": "test_decoding"},
                      "half": {"database": "app"}}
        }))
        .unwrap();
        let kinds: Vec<_> = d
            .slots
            .permanent
            .iter()
            .map(|s| (s.name.as_str(), s.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("e", SlotKind::Physical),
                ("f", SlotKind::Physical),
                ("half", SlotKind::Physical),
                ("implied", SlotKind::Logical),
                ("n", SlotKind::Physical),
                ("o", SlotKind::Physical),
                ("z", SlotKind::Physical),
            ]
        );
        // A falsy `permanent_slots` falls through to `slots`, as Python's `or`.
        let d =
            DynamicConfig::from_json(&json!({"permanent_slots": 0, "slots": {"s": 0}})).unwrap();
        assert_eq!(d.slots.permanent.len(), 1);

        let e = DynamicConfig::from_json(&json!({
            "slots": {"Bad-Name": null, "l": {"type": "logical"}, "x": {"type": "weird"}, "t": 1},
            "ignore_slots": {"name": "a"}
        }))
        .unwrap_err();
        let keys: Vec<_> = e.errors().iter().filter_map(|e| e.key_path()).collect();
        assert_eq!(
            keys,
            [
                "slots.Bad-Name",
                "slots.l",
                "slots.t",
                "slots.x.type",
                "ignore_slots"
            ]
        );
    }

    #[test]
    fn bool_spellings() {
        for (s, want) in [
            (json!("on"), true),
            (json!("off"), false),
            (json!("true"), true),
            (json!("false"), false),
            (json!("yes"), true),
            (json!("no"), false),
            (json!("1"), true),
            (json!("0"), false),
            (json!(1), true),
            (json!(0), false),
            (json!(true), true),
            (json!(false), false),
        ] {
            let d = DynamicConfig::from_json(&json!({"pause": s, "postgresql": {"use_slots": s}}))
                .unwrap();
            assert_eq!(d.pause, want, "{s}");
            assert_eq!(d.use_slots, want, "{s}");
        }
        let e = DynamicConfig::from_json(&json!({"pause": "maybe"})).unwrap_err();
        assert_eq!(e.key_path(), Some("pause"));
    }

    #[test]
    fn primary_start_timeout_and_its_old_name() {
        let t = |v: Value| DynamicConfig::from_json(&v).unwrap().primary_start_timeout;
        assert_eq!(t(json!({})), 300);
        assert_eq!(t(json!({"primary_start_timeout": 0})), 0);
        assert_eq!(t(json!({"master_start_timeout": 20})), 20);
        // The new name wins whenever it is there, as in Patroni.
        assert_eq!(
            t(json!({"primary_start_timeout": 5, "master_start_timeout": 20})),
            5
        );
        assert_eq!(
            t(json!({"primary_start_timeout": null, "master_start_timeout": 20})),
            300
        );
        let e = DynamicConfig::from_json(&json!({"master_start_timeout": -1})).unwrap_err();
        assert_eq!(e.key_path(), Some("master_start_timeout"));
    }

    #[test]
    fn failsafe_mode() {
        assert!(!DynamicConfig::defaults().failsafe_mode);
        assert!(!DynamicConfig::from_json(&json!({})).unwrap().failsafe_mode);
        for (v, want) in [
            (json!(true), true),
            (json!("on"), true),
            (json!("yes"), true),
            (json!(1), true),
            (json!(false), false),
            (json!("off"), false),
            (Value::Null, false),
        ] {
            let d = DynamicConfig::from_json(&json!({ "failsafe_mode": v })).unwrap();
            assert_eq!(d.failsafe_mode, want, "{v}");
        }
        let e = DynamicConfig::from_json(&json!({"failsafe_mode": "sometimes"})).unwrap_err();
        assert_eq!(e.key_path(), Some("failsafe_mode"));
    }
}
