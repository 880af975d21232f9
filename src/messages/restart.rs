//! A restart the REST API asks the supervisor for (docs/rest-api.md, "POST /restart, DELETE /restart"): its
//! options, the conditions it runs under, and what a scheduled restart
//! shows in the member key and in `/patroni`. Pure; shared by the API (which
//! checks the conditions of an immediate restart) and the supervisor (which
//! checks them again when a scheduled one fires).

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::messages::supervisor::PgStatus;

/// What an immediate or scheduled restart carries out and checks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RestartOptions {
    /// Restart only when PostgreSQL runs in this role.
    pub role: Option<String>,
    /// Restart only when the running version is lower (as
    /// `server_version_num`, e.g. 150002 for `15.2`), with the text given.
    pub postgres_version: Option<(u32, String)>,
    /// Restart only when a restart is pending.
    pub restart_pending: bool,
    /// How long the start may take (default `primary_start_timeout`).
    pub timeout: Option<Duration>,
}

/// Why the restart conditions do not hold now (`None`: they do), as
/// Patroni's `restart_matches` logs it.
pub fn unmet_condition(o: &RestartOptions, pg: &PgStatus) -> Option<&'static str> {
    if let Some(role) = &o.role
        && role != pg.role_str()
    {
        return Some("host role mismatch");
    }
    if let Some((want, _)) = o.postgres_version
        && pg.server_version.is_none_or(|running| want <= running)
    {
        return Some("postgres version mismatch");
    }
    if o.restart_pending && pg.pending_restart.is_empty() {
        return Some("pending restart flag is not set");
    }
    None
}

/// The `scheduled_restart` object of `/patroni` and of the member key:
/// `schedule` plus the filters given; the member key also carries the
/// postmaster start time the request was made against.
pub fn scheduled_json(
    schedule: &str,
    o: &RestartOptions,
    postmaster_start_time: Option<&str>,
) -> Value {
    let mut m = Map::new();
    m.insert("schedule".into(), json!(schedule));
    if let Some(r) = &o.role {
        m.insert("role".into(), json!(r));
    }
    if let Some((_, v)) = &o.postgres_version {
        m.insert("postgres_version".into(), json!(v));
    }
    if o.restart_pending {
        m.insert("restart_pending".into(), json!(true));
    }
    if let Some(t) = o.timeout {
        m.insert("timeout".into(), json!(t.as_secs()));
    }
    if let Some(p) = postmaster_start_time {
        m.insert("postmaster_start_time".into(), json!(p));
    }
    Value::Object(m)
}

/// What a scheduled restart does when its timer fires (docs/rest-api.md, "POST /restart, DELETE /restart"):
/// run, or drop it and say why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fire {
    Run,
    Drop(String),
}

/// Decide at fire time: dropped while paused, when more than
/// `1.5 * loop_wait` late, when PostgreSQL was restarted since the request
/// (its start time changed) or when the conditions do not hold.
pub fn at_fire_time(
    at_unix: f64,
    now_unix: f64,
    loop_wait: Duration,
    paused: bool,
    requested_start: Option<&str>,
    o: &RestartOptions,
    pg: &PgStatus,
) -> Fire {
    if paused {
        return Fire::Drop("the cluster is paused".into());
    }
    if now_unix - at_unix > 1.5 * loop_wait.as_secs_f64() {
        return Fire::Drop(format!("{:.0}s late: stale", now_unix - at_unix));
    }
    if let (Some(then), Some(now)) = (requested_start, pg.postmaster_start_time.as_deref())
        && then != now
    {
        return Fire::Drop(format!("postgres restart has already happened at {now}"));
    }
    match unmet_condition(o, pg) {
        Some(why) => Fire::Drop(format!("restart conditions are not satisfied: {why}")),
        None => Fire::Run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::{PgFacts, PgRole};
    use crate::messages::supervisor::PgState;

    fn running(role: PgRole) -> PgStatus {
        PgStatus {
            facts: PgFacts {
                running: true,
                role: Some(role),
                ..PgFacts::default()
            },
            ..PgStatus::unknown(PgState::Running)
        }
    }

    fn primary() -> PgStatus {
        running(PgRole::Primary)
    }

    fn replica() -> PgStatus {
        running(PgRole::Replica)
    }

    const NOW: f64 = 1_900_000_000.0;

    #[test]
    fn conditions() {
        let mut pg = replica();
        pg.server_version = Some(150_018);
        let none = RestartOptions::default();
        assert_eq!(unmet_condition(&none, &pg), None);
        let role = RestartOptions {
            role: Some("primary".into()),
            ..Default::default()
        };
        assert_eq!(unmet_condition(&role, &pg), Some("host role mismatch"));
        assert_eq!(unmet_condition(&role, &primary()), None);
        let newer = |num: u32, v: &str| RestartOptions {
            postgres_version: Some((num, v.into())),
            ..Default::default()
        };
        assert_eq!(unmet_condition(&newer(150_019, "15.19"), &pg), None);
        assert_eq!(
            unmet_condition(&newer(150_018, "15.18"), &pg),
            Some("postgres version mismatch")
        );
        let pending = RestartOptions {
            restart_pending: true,
            ..Default::default()
        };
        assert_eq!(
            unmet_condition(&pending, &pg),
            Some("pending restart flag is not set")
        );
        pg.pending_restart.insert(
            "max_connections".into(),
            crate::dcs::PendingChange {
                old_value: "100".into(),
                new_value: "200".into(),
            },
        );
        assert_eq!(unmet_condition(&pending, &pg), None);
    }

    #[test]
    fn fire_time_rules() {
        let mut pg = replica();
        pg.postmaster_start_time = Some("t1".into());
        let o = RestartOptions::default();
        let lw = Duration::from_secs(10);
        assert_eq!(
            at_fire_time(NOW, NOW, lw, false, Some("t1"), &o, &pg),
            Fire::Run
        );
        assert_eq!(
            at_fire_time(NOW, NOW + 14.0, lw, false, None, &o, &pg),
            Fire::Run
        );
        assert!(matches!(
            at_fire_time(NOW, NOW + 16.0, lw, false, None, &o, &pg),
            Fire::Drop(_)
        ));
        assert!(matches!(
            at_fire_time(NOW, NOW, lw, true, None, &o, &pg),
            Fire::Drop(_)
        ));
        assert!(matches!(
            at_fire_time(NOW, NOW, lw, false, Some("t0"), &o, &pg),
            Fire::Drop(w) if w.contains("already happened")
        ));
        let role = RestartOptions {
            role: Some("primary".into()),
            ..Default::default()
        };
        assert!(matches!(
            at_fire_time(NOW, NOW, lw, false, Some("t1"), &role, &pg),
            Fire::Drop(w) if w.contains("not satisfied")
        ));
    }

    #[test]
    fn scheduled_document() {
        let o = RestartOptions {
            role: Some("replica".into()),
            restart_pending: true,
            ..Default::default()
        };
        assert_eq!(
            scheduled_json("2030-01-01T00:00:00+00:00", &o, None),
            json!({"schedule": "2030-01-01T00:00:00+00:00", "role": "replica", "restart_pending": true})
        );
        assert_eq!(
            scheduled_json("x", &RestartOptions::default(), Some("t"))["postmaster_start_time"],
            "t"
        );
    }
}
