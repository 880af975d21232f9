//! A rewind that failed (docs/ha.md §8.2): what the job reports, what it
//! means, and the sticky "rewind failed" state `ha::Node` carries.
//!
//! The rewind job reports how it ended as it saw it ([`RewindReport`]: the
//! step that failed, a tool's exit status and the tail of its stderr), no
//! judgement. [`classify`] says what that means: nothing in the data
//! directory was changed and a later cycle may try again, or pg_rewind ran
//! (or cannot work here) and failed. A failure is sticky
//! ([`RewindState`]): the node stays stopped until an operator acts (a
//! daemon restart, a rebuild), so a failed rewind is never retried in a
//! loop (Patroni's `Rewind.failed`, which only `reset_state` clears).

use std::fmt;

use super::{Action, JobKind, JobOutcome};

/// A step of the rewind job before pg_rewind runs; none of them changes
/// the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindStep {
    /// Reading pg_control (pg_controldata).
    ControlData,
    /// Writing the password file or the configuration it runs with.
    Prepare,
    /// Waiting until the leader checkpointed on its new timeline (Patroni's
    /// `check_leader_has_run_checkpoint`): unreachable, or not done in time.
    LeaderCheckpoint,
}

/// A tool of the rewind job that changes the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindTool {
    /// The single-user crash recovery run before pg_rewind.
    CrashRecovery,
    PgRewind,
}

/// How a rewind job ended short of success, as the job saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewindReport {
    /// A step before pg_rewind failed (`error`: what it said).
    NotRun { step: RewindStep, error: String },
    /// pg_control says the cluster has neither `wal_log_hints` nor data
    /// checksums: pg_rewind cannot work on it.
    NoWalLogHints,
    /// `postgresql.rewind` holds options pg_rewind cannot be given (the
    /// error).
    BadOptions(String),
    /// `tool` ran and failed, or could not be run at all.
    ToolFailed {
        tool: RewindTool,
        /// Its exit status; `None` when it was not started or did not end
        /// (spawn failure, timeout).
        status: Option<String>,
        /// The last lines of its stderr.
        stderr: Vec<String>,
        /// The whole error, for the log.
        error: String,
    },
    /// pg_rewind failed, and right after it the leader did not answer as a
    /// primary: the source may be what failed. `rewindable`: pg_control
    /// still shows `wal_log_hints` or data checksums (a pg_rewind that
    /// failed half-way may have damaged it).
    LeaderGone { error: String, rewindable: bool },
    /// pg_rewind succeeded; the start as a replica after it failed.
    StartFailed(String),
}

/// What a [`RewindReport`] means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The data directory was not damaged: the next cycle decides again
    /// (and rewinds again if the rules of docs/ha.md §8 still say so).
    Retry,
    /// pg_rewind ran and failed, or cannot work on this data directory: the
    /// node stays stopped until an operator acts, or is rebuilt with
    /// `remove_data_directory_on_rewind_failure`.
    Failed,
}

/// What `report` means (docs/ha.md §8.2).
///
/// * A step before pg_rewind failed, or the start after a successful
///   pg_rewind: [`Verdict::Retry`].
/// * pg_rewind failed while the leader stopped answering as a primary:
///   [`Verdict::Retry`] if pg_control still allows a rewind, else
///   [`Verdict::Failed`] (Patroni's `Rewind.execute`).
/// * No `wal_log_hints` and no checksums, invalid `postgresql.rewind`
///   options (both hold until the configuration changes), or the crash
///   recovery or pg_rewind itself failed (whatever it printed; the data
///   directory may be half rewound): [`Verdict::Failed`].
pub fn classify(report: &RewindReport) -> Verdict {
    match report {
        RewindReport::NotRun { .. }
        | RewindReport::StartFailed(_)
        | RewindReport::LeaderGone {
            rewindable: true, ..
        } => Verdict::Retry,
        RewindReport::LeaderGone {
            rewindable: false, ..
        } => Verdict::Failed,
        RewindReport::NoWalLogHints
        | RewindReport::BadOptions(_)
        | RewindReport::ToolFailed { .. } => Verdict::Failed,
    }
}

impl fmt::Display for RewindReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match classify(self) {
            Verdict::Failed => "pg_rewind failed: ",
            Verdict::Retry => "",
        };
        f.write_str(prefix)?;
        match self {
            RewindReport::NotRun { error, .. } | RewindReport::StartFailed(error) => {
                f.write_str(error)
            }
            RewindReport::LeaderGone { error, .. } => {
                write!(f, "{error} (the leader no longer answers as a primary)")
            }
            RewindReport::NoWalLogHints => f.write_str(
                "pg_rewind needs wal_log_hints=on or data checksums, and this cluster has neither",
            ),
            RewindReport::BadOptions(error) | RewindReport::ToolFailed { error, .. } => {
                f.write_str(error)
            }
        }
    }
}

/// The sticky "rewind failed" state of this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewindState {
    failed: bool,
}

impl RewindState {
    /// A rewind failed and nothing has replaced the data directory or
    /// started PostgreSQL since.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Fold in what a cycle found: the job running now (`busy`) and how the
    /// last one ended (`outcome`, reported once). Returns `true` when this
    /// outcome made the state failed (the node then shows it, docs/ha.md
    /// §15).
    ///
    /// * A rewind whose report [`classify`] calls failed sets it.
    /// * A job that replaces the data directory or starts PostgreSQL (any
    ///   job but a rewind or a promotion), running or ended, clears it: a
    ///   `POST /reinitialize` the node did not decide counts too.
    pub fn observe(&mut self, busy: Option<JobKind>, outcome: Option<&JobOutcome>) -> bool {
        let kind = |o: &JobOutcome| match o {
            JobOutcome::Succeeded(k) | JobOutcome::Failed(k, _) => *k,
            JobOutcome::RewindFailed(_) => JobKind::Rewind,
        };
        if busy.into_iter().chain(outcome.map(kind)).any(clears) {
            self.failed = false;
        }
        match outcome {
            Some(JobOutcome::RewindFailed(r)) if classify(r) == Verdict::Failed => {
                let newly = !self.failed;
                self.failed = true;
                newly
            }
            _ => false,
        }
    }

    /// `action` was carried out (its job started): a rebuild or a start
    /// clears the state, as the job would once observed.
    pub fn action_started(&mut self, action: &Action) {
        if matches!(
            action,
            Action::Bootstrap
                | Action::BootstrapStandby { .. }
                | Action::Clone { .. }
                | Action::CloneWithoutLeader
                | Action::Reinitialize { .. }
                | Action::StartPrimary
                | Action::StartReplica { .. }
        ) {
            self.failed = false;
        }
    }
}

/// Whether a job of `kind` replaces the data directory or starts
/// PostgreSQL.
fn clears(kind: JobKind) -> bool {
    !matches!(kind, JobKind::Rewind | JobKind::Promote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::Upstream;

    fn not_run(step: RewindStep) -> RewindReport {
        RewindReport::NotRun {
            step,
            error: "x".into(),
        }
    }

    fn tool(tool: RewindTool) -> RewindReport {
        RewindReport::ToolFailed {
            tool,
            status: Some("exit status: 1".into()),
            stderr: vec!["pg_rewind: error: could not find previous WAL record".into()],
            error: "pg_rewind failed (exit status: 1)".into(),
        }
    }

    #[test]
    fn nothing_changed_means_retry() {
        for step in [
            RewindStep::ControlData,
            RewindStep::Prepare,
            RewindStep::LeaderCheckpoint,
        ] {
            assert_eq!(classify(&not_run(step)), Verdict::Retry, "{step:?}");
        }
        assert_eq!(
            classify(&RewindReport::StartFailed("port taken".into())),
            Verdict::Retry
        );
    }

    #[test]
    fn a_tool_that_ran_and_failed_means_failed() {
        assert_eq!(classify(&tool(RewindTool::PgRewind)), Verdict::Failed);
        assert_eq!(classify(&tool(RewindTool::CrashRecovery)), Verdict::Failed);
        // Not started at all (no binary): failed too, as before.
        let spawn = RewindReport::ToolFailed {
            tool: RewindTool::PgRewind,
            status: None,
            stderr: Vec::new(),
            error: "could not run pg_rewind".into(),
        };
        assert_eq!(classify(&spawn), Verdict::Failed);
    }

    #[test]
    fn pg_rewind_failing_while_the_leader_went_away_is_retried_if_still_rewindable() {
        let gone = |rewindable| RewindReport::LeaderGone {
            error: "pg_rewind: error: connection lost".into(),
            rewindable,
        };
        assert_eq!(classify(&gone(true)), Verdict::Retry);
        // pg_control no longer allows a rewind: a retry cannot help.
        assert_eq!(classify(&gone(false)), Verdict::Failed);
        assert!(
            gone(true)
                .to_string()
                .contains("no longer answers as a primary")
        );
        let mut s = RewindState::default();
        assert!(!s.observe(None, Some(&JobOutcome::RewindFailed(gone(true)))));
        assert!(!s.failed());
    }

    #[test]
    fn a_cluster_or_configuration_that_cannot_rewind_means_failed() {
        assert_eq!(classify(&RewindReport::NoWalLogHints), Verdict::Failed);
        assert_eq!(
            classify(&RewindReport::BadOptions("dry-run".into())),
            Verdict::Failed
        );
    }

    #[test]
    fn the_text_says_pg_rewind_failed_only_when_it_did() {
        assert!(
            tool(RewindTool::PgRewind)
                .to_string()
                .starts_with("pg_rewind failed: ")
        );
        assert_eq!(not_run(RewindStep::LeaderCheckpoint).to_string(), "x");
    }

    #[test]
    fn the_outcome_says_why_for_the_log() {
        let failed = JobOutcome::RewindFailed(tool(RewindTool::PgRewind));
        assert_eq!(
            failed.failure().as_deref(),
            Some("pg_rewind failed: pg_rewind failed (exit status: 1)")
        );
        assert_eq!(JobOutcome::Succeeded(JobKind::Rewind).failure(), None);
    }

    #[test]
    fn a_failure_is_sticky_a_retry_is_not() {
        let mut s = RewindState::default();
        let retry = JobOutcome::RewindFailed(not_run(RewindStep::LeaderCheckpoint));
        assert!(!s.observe(None, Some(&retry)));
        assert!(!s.failed());
        let failed = JobOutcome::RewindFailed(tool(RewindTool::PgRewind));
        assert!(s.observe(None, Some(&failed)), "newly failed: shown");
        assert!(s.failed());
        // Later cycles: no outcome, nothing running: it stays.
        assert!(!s.observe(None, None));
        assert!(s.failed());
    }

    #[test]
    fn a_rebuild_or_a_start_clears_it() {
        let failed = JobOutcome::RewindFailed(tool(RewindTool::PgRewind));
        for kind in [
            JobKind::Reinitialize,
            JobKind::Clone,
            JobKind::Bootstrap,
            JobKind::Start,
        ] {
            let mut s = RewindState::default();
            s.observe(None, Some(&failed));
            s.observe(Some(kind), None);
            assert!(!s.failed(), "{kind:?} running");
            let mut s = RewindState::default();
            s.observe(None, Some(&failed));
            s.observe(None, Some(&JobOutcome::Failed(kind, "x".into())));
            assert!(!s.failed(), "{kind:?} ended");
        }
        // A promotion replaces nothing.
        let mut s = RewindState::default();
        s.observe(None, Some(&failed));
        s.observe(Some(JobKind::Promote), None);
        assert!(s.failed());
    }

    #[test]
    fn starting_a_rebuild_clears_it() {
        let up = Upstream {
            name: "b".into(),
            host: "b".into(),
            port: 5432,
            remote: false,
        };
        let mut s = RewindState::default();
        s.observe(
            None,
            Some(&JobOutcome::RewindFailed(tool(RewindTool::PgRewind))),
        );
        s.action_started(&Action::ReleaseLock);
        s.action_started(&Action::ShowRewindFailed);
        assert!(s.failed());
        s.action_started(&Action::Reinitialize { from: up });
        assert!(!s.failed());
    }
}
