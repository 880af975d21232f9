//! Which callback a PostgreSQL life-cycle event calls, as a small pure
//! state machine the PostgresSupervisor feeds (so the rules are unit
//! tested without processes):
//!
//! - a start done by the daemon (bootstrap, clone, rebuild, rewind, plain
//!   start) calls `on_start <role>`, except the first start as a replica
//!   after this node stopped as a primary (a demotion), which calls
//!   `on_role_change replica` (Patroni does the same);
//! - a promotion calls `on_role_change primary`;
//! - a stop of a running PostgreSQL calls `on_stop <role it had>`;
//! - a configuration reload while PostgreSQL runs calls `on_reload <role>`;
//! - a restart (when the daemon gets one) calls `on_restart <role>`;
//! - a start as primary (after a crash, a restart) that fails calls
//!   `on_role_change demoted`: the node no longer serves as primary and
//!   the HA loop releases the lock (Patroni's `post_recover`,
//!   docs/ha.md §8.1); the next replica start is a role change too;
//! - in a standby cluster (docs/ha.md §16) a standby streaming from the
//!   remote is the `standby_leader`: its callbacks name that role, and
//!   following the remote instead of a member (or back) calls
//!   `on_role_change standby_leader` (`replica`), as Patroni's `follow`.

use crate::ha::PgRole;
use crate::messages::callbacks::{CallbackAction, CallbackEvent};

pub fn role_name(role: Option<PgRole>) -> &'static str {
    match role {
        Some(PgRole::Primary) => "primary",
        Some(PgRole::Replica) => "replica",
        None => "unknown",
    }
}

#[derive(Debug, Default, Clone)]
pub struct PgCallbacks {
    /// PostgreSQL's role as last known (set by the jobs, or seen in status).
    role: Option<PgRole>,
    /// As a replica, it streams from a standby cluster's remote: the
    /// standby leader.
    standby_leader: bool,
    /// The last stop was of a primary: the next replica start is a role
    /// change, not a plain start.
    demoted: bool,
}

impl PgCallbacks {
    pub fn role(&self) -> Option<PgRole> {
        self.role
    }

    /// The role a callback names: `role_name`'s, or `standby_leader`.
    fn label(&self) -> &'static str {
        if self.standby_leader && self.role == Some(PgRole::Replica) {
            "standby_leader"
        } else {
            role_name(self.role)
        }
    }

    /// The daemon started PostgreSQL as `role`; `remote`: streaming from a
    /// standby cluster's remote.
    pub fn started(&mut self, role: PgRole, remote: bool) -> CallbackEvent {
        let demoted = std::mem::take(&mut self.demoted);
        self.role = Some(role);
        self.standby_leader = remote;
        if demoted && role == PgRole::Replica {
            CallbackEvent::new(CallbackAction::OnRoleChange, self.label())
        } else {
            CallbackEvent::new(CallbackAction::OnStart, self.label())
        }
    }

    /// A running replica now streams from a standby cluster's remote
    /// (`remote`) or from a member: a role change when that differs from
    /// before.
    pub fn followed(&mut self, remote: bool) -> Option<CallbackEvent> {
        if self.role != Some(PgRole::Replica) || self.standby_leader == remote {
            return None;
        }
        self.standby_leader = remote;
        Some(CallbackEvent::new(
            CallbackAction::OnRoleChange,
            self.label(),
        ))
    }

    pub fn promoted(&mut self) -> CallbackEvent {
        self.role = Some(PgRole::Primary);
        self.standby_leader = false;
        self.demoted = false;
        CallbackEvent::new(CallbackAction::OnRoleChange, "primary")
    }

    pub fn restarted(&mut self) -> CallbackEvent {
        CallbackEvent::new(CallbackAction::OnRestart, self.label())
    }

    /// A running PostgreSQL was stopped by the daemon.
    pub fn stopped(&mut self) -> CallbackEvent {
        let label = self.label();
        let role = self.role.take();
        self.demoted = role == Some(PgRole::Primary);
        CallbackEvent::new(CallbackAction::OnStop, label)
    }

    /// A start of PostgreSQL as `role` failed, leaving it stopped.
    pub fn start_failed(&mut self, role: Option<PgRole>) -> Option<CallbackEvent> {
        self.role = None;
        (role == Some(PgRole::Primary)).then(|| {
            self.demoted = true;
            CallbackEvent::new(CallbackAction::OnRoleChange, "demoted")
        })
    }

    /// PostgreSQL died on its own: no callback (the restart that follows
    /// calls `on_start`).
    pub fn crashed(&mut self) {
        self.role = None;
    }

    /// A status query saw PostgreSQL run as `role` (e.g. one adopted at
    /// daemon start). Never a callback by itself.
    pub fn observed(&mut self, role: Option<PgRole>) {
        if role.is_some() {
            self.role = role;
        }
    }

    pub fn reloaded(&self, running: bool) -> Option<CallbackEvent> {
        running.then(|| CallbackEvent::new(CallbackAction::OnReload, self.label()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(e: CallbackEvent) -> (&'static str, String) {
        (e.action.as_str(), e.role)
    }

    #[test]
    fn start_promote_stop() {
        let mut c = PgCallbacks::default();
        assert_eq!(
            pair(c.started(PgRole::Replica, false)),
            ("on_start", "replica".into())
        );
        assert_eq!(pair(c.promoted()), ("on_role_change", "primary".into()));
        assert_eq!(
            pair(c.reloaded(true).unwrap()),
            ("on_reload", "primary".into())
        );
        assert!(c.reloaded(false).is_none());
        assert_eq!(pair(c.stopped()), ("on_stop", "primary".into()));
    }

    #[test]
    fn the_standby_leader_is_named_and_becoming_it_is_a_role_change() {
        let mut c = PgCallbacks::default();
        assert_eq!(
            pair(c.started(PgRole::Replica, true)),
            ("on_start", "standby_leader".into())
        );
        assert!(c.followed(true).is_none(), "no change");
        assert_eq!(
            pair(c.reloaded(true).unwrap()),
            ("on_reload", "standby_leader".into())
        );
        assert_eq!(
            pair(c.followed(false).unwrap()),
            ("on_role_change", "replica".into())
        );
        assert_eq!(
            pair(c.followed(true).unwrap()),
            ("on_role_change", "standby_leader".into())
        );
        assert_eq!(pair(c.stopped()), ("on_stop", "standby_leader".into()));
        // Promoted (the section removed): a primary.
        c.started(PgRole::Replica, true);
        assert_eq!(pair(c.promoted()), ("on_role_change", "primary".into()));
        assert!(c.followed(true).is_none(), "a primary follows nobody");
        // A demote-cluster: the former primary starts as the standby leader.
        c.stopped();
        assert_eq!(
            pair(c.started(PgRole::Replica, true)),
            ("on_role_change", "standby_leader".into())
        );
    }

    #[test]
    fn failed_primary_start_is_a_demotion() {
        let mut c = PgCallbacks::default();
        let ev = c.start_failed(Some(PgRole::Primary)).map(pair);
        assert_eq!(ev, Some(("on_role_change", "demoted".into())));
        assert_eq!(
            pair(c.started(PgRole::Replica, false)),
            ("on_role_change", "replica".into())
        );
        // A replica that fails to start changes no role.
        assert!(c.start_failed(Some(PgRole::Replica)).is_none());
        assert!(c.start_failed(None).is_none());
    }

    #[test]
    fn replica_start_after_demotion_is_a_role_change_once() {
        let mut c = PgCallbacks::default();
        c.started(PgRole::Primary, false);
        c.stopped();
        assert_eq!(
            pair(c.started(PgRole::Replica, false)),
            ("on_role_change", "replica".into())
        );
        c.stopped();
        assert_eq!(
            pair(c.started(PgRole::Replica, false)),
            ("on_start", "replica".into())
        );
    }

    #[test]
    fn primary_restart_after_stop_is_a_start() {
        let mut c = PgCallbacks::default();
        c.observed(Some(PgRole::Primary));
        assert_eq!(pair(c.stopped()), ("on_stop", "primary".into()));
        assert_eq!(
            pair(c.started(PgRole::Primary, false)),
            ("on_start", "primary".into())
        );
        c.crashed();
        assert_eq!(pair(c.restarted()), ("on_restart", "unknown".into()));
    }
}
