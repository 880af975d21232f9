//! Restoring the `config` key (docs/ha.md §3.3): when it is missing or does not
//! validate, the leader writes it back from the copy it keeps in its data
//! directory (`patroni.dynamic.json`). Replicas never write it: only the
//! leader's copy is known to be the configuration the cluster ran with.

use super::action::Action;
use super::view::LocalView;
use crate::config::DynamicConfig;
use crate::dcs::Cluster;

/// [`Action::RestoreConfig`] when the `config` key is missing or invalid and
/// a backup exists; called only for the leader running as primary.
pub(super) fn config_restore(cluster: &Cluster, local: &LocalView) -> Option<Action> {
    if !local.config_backup {
        return None;
    }
    let valid = cluster
        .config
        .as_ref()
        .is_some_and(|c| DynamicConfig::from_json(&c.value).is_ok());
    (!valid).then_some(Action::RestoreConfig)
}

/// Whether a cycle looks for `patroni.dynamic.json` on disk: only when the
/// key could be restored from it, i.e. the leader key is mine and the
/// `config` key is missing or does not validate.
pub fn backup_wanted(cluster: &Cluster, me: &str) -> bool {
    cluster.leader_name() == Some(me)
        && cluster
            .config
            .as_ref()
            .is_none_or(|c| DynamicConfig::from_json(&c.value).is_err())
}

/// Whether the leader saves the dynamic configuration it applied
/// (`applied`) to `patroni.dynamic.json` now: it holds a lease and the
/// leader key, the `config` key holds what it applied, and that differs
/// from what it saved last (`saved`).
pub fn save_due(
    holds_lease: bool,
    cluster: &Cluster,
    me: &str,
    applied: &serde_json::Value,
    saved: Option<&serde_json::Value>,
) -> bool {
    holds_lease
        && cluster.leader_name() == Some(me)
        && cluster.config.as_ref().is_some_and(|c| &c.value == applied)
        && saved != Some(applied)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;
    use crate::config::{Tags, Timing};
    use crate::dcs::{Leader, Member, MemberData, Versioned};
    use crate::ha::{DataDir, DcsView, FailsafeView, PgFacts, PgRole, decide};

    fn cluster(config: Option<serde_json::Value>) -> Cluster {
        let member = |name: &str, role: &str, port: u16| Member {
            name: name.into(),
            data: MemberData {
                conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
                api_url: format!("http://127.0.0.1:{}/patroni", port + 1000),
                state: "running".into(),
                role: role.into(),
                ..Default::default()
            },
            version: crate::dcs::Version::from_int(1),
            session: Some(crate::dcs::SessionId::from_int(1)),
        };
        Cluster {
            initialize: Some("7".into()),
            leader: Some(Leader {
                name: "a".into(),
                version: crate::dcs::Version::from_int(1),
                session: Some(crate::dcs::SessionId::from_int(1)),
            }),
            members: vec![member("a", "primary", 5432), member("b", "replica", 5433)],
            config: config.map(|value| Versioned {
                value,
                version: crate::dcs::Version::from_int(3),
            }),
            ..Default::default()
        }
    }

    fn local(name: &str, role: PgRole, backup: bool) -> LocalView {
        LocalView {
            name: name.into(),
            tags: Tags::default(),
            timing: Timing {
                ttl: Duration::from_secs(30),
                loop_wait: Duration::from_secs(10),
                retry_timeout: Duration::from_secs(10),
            },
            maximum_lag_on_failover: 1 << 20,
            sync: Default::default(),
            sync_facts: Default::default(),
            primary_start_timeout: std::time::Duration::from_secs(300),
            rejoin_pending: false,
            starting_primary_for: None,
            can_bootstrap: true,
            data_dir: DataDir::Initialized {
                sysid: "7".into(),
                was_primary: role == PgRole::Primary,
            },
            pg: PgFacts {
                running: true,
                role: Some(role),
                lsn: Some(1000),
                timeline: Some(1),
                following: (role == PgRole::Replica).then(|| "a".to_owned()),
            },
            busy: None,
            outcome: None,
            lease_deadline: Some(Instant::now() + Duration::from_secs(20)),
            fence_armed: None,
            peers: Vec::new(),
            leader_key_foreign: false,
            failsafe: FailsafeView::default(),
            config_backup: backup,
            rewind: Default::default(),
            can_clone_without_leader: false,
            switchover: Default::default(),
            paused: false,
            watchdog: Default::default(),
            standby_cluster: None,
        }
    }

    fn restores(c: Cluster, l: &LocalView) -> bool {
        decide(&DcsView::Ok(c), l, Instant::now())
            .actions
            .contains(&Action::RestoreConfig)
    }

    #[test]
    fn leader_restores_missing_or_invalid_config() {
        let leader = local("a", PgRole::Primary, true);
        assert!(restores(cluster(None), &leader));
        assert!(restores(cluster(Some(json!({"ttl": "x"}))), &leader));
        let d = decide(&DcsView::Ok(cluster(None)), &leader, Instant::now());
        assert_eq!(d.actions, [Action::RenewLock, Action::RestoreConfig]);
    }

    #[test]
    fn nothing_to_restore() {
        // A valid key stays; without a backup there is nothing to write.
        assert!(!restores(
            cluster(Some(json!({"ttl": 30}))),
            &local("a", PgRole::Primary, true)
        ));
        assert!(!restores(
            cluster(None),
            &local("a", PgRole::Primary, false)
        ));
    }

    #[test]
    fn replicas_never_restore() {
        assert!(!restores(cluster(None), &local("b", PgRole::Replica, true)));
    }

    #[test]
    fn the_backup_is_looked_for_only_when_the_leader_could_restore_it() {
        let good = cluster(Some(json!({"ttl": 30})));
        assert!(!backup_wanted(&good, "a"), "key valid");
        assert!(backup_wanted(&cluster(None), "a"), "key missing");
        assert!(!backup_wanted(&cluster(None), "b"), "not the leader");
    }

    #[test]
    fn the_leader_saves_the_applied_configuration_once() {
        let v = json!({"ttl": 30});
        let c = cluster(Some(v.clone()));
        assert!(save_due(true, &c, "a", &v, None));
        assert!(!save_due(true, &c, "a", &v, Some(&v)), "saved already");
        assert!(save_due(true, &c, "a", &v, Some(&json!({}))), "changed");
        assert!(!save_due(false, &c, "a", &v, None), "no lease");
        assert!(!save_due(true, &c, "b", &v, None), "not the leader");
        let other = json!({"ttl": 20});
        assert!(!save_due(true, &c, "a", &other, None), "not applied yet");
        assert!(!save_due(true, &cluster(None), "a", &v, None), "no key");
    }
}
