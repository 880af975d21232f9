//! The HA loop's metrics (docs/rest-api.md, "GET /metrics"): how long its
//! cycles take, what it decided and did, its lease keep-alives, the
//! PostgreSQL jobs it ran (rewinds among them) and the promotions and
//! demotions, with their cause and outcome. The elector counts; the labels
//! of decisions and actions are the pure core's (`ha::Decision::kind`,
//! `ha::Action::kind`), the cause of a promotion too
//! (`ha::switchover::promotion_cause`).
//!
//! Families with a small fixed label set start with every series at 0, so
//! that `rate()` and alerts see the first one happen.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

use crate::ha::{DemoteMode, JobKind, JobOutcome};

/// `pgpilot_ha_cycle_duration_seconds` (histogram).
pub const CYCLE_DURATION: &str = "pgpilot_ha_cycle_duration_seconds";
/// `pgpilot_ha_decisions_total{kind}`.
pub const DECISIONS_TOTAL: &str = "pgpilot_ha_decisions_total";
/// `pgpilot_ha_actions_total{action,result}`.
pub const ACTIONS_TOTAL: &str = "pgpilot_ha_actions_total";
/// `pgpilot_lease_keepalives_total{outcome}`.
pub const KEEPALIVES_TOTAL: &str = "pgpilot_lease_keepalives_total";
/// `pgpilot_jobs_total{job,outcome}`.
pub const JOBS_TOTAL: &str = "pgpilot_jobs_total";
/// `pgpilot_promotions_total{cause,outcome}`.
pub const PROMOTIONS_TOTAL: &str = "pgpilot_promotions_total";
/// `pgpilot_demotions_total{mode}`.
pub const DEMOTIONS_TOTAL: &str = "pgpilot_demotions_total";

/// The outcomes of a keep-alive: the lease moved, the session is gone, the
/// call failed, or the answer came too late to count (the lease changed
/// meanwhile, or the keep-alive rule no longer allowed it).
pub const KEEPALIVE_OUTCOMES: [&str; 4] = ["extended", "lost", "failed", "ignored"];
/// Every job kind, as labelled.
pub const JOBS: [&str; 7] = [
    "bootstrap",
    "clone",
    "reinitialize",
    "start",
    "stop",
    "promote",
    "rewind",
];
pub const OUTCOMES: [&str; 2] = ["succeeded", "failed"];
/// `ha::switchover::promotion_cause`'s answers.
pub const CAUSES: [&str; 3] = ["failover", "manual_failover", "switchover"];
pub const DEMOTE_MODES: [&str; 3] = ["graceful", "immediate", "offline"];

/// From a cycle over a local store (milliseconds) to one waiting on a
/// store or a PostgreSQL that does not answer (`retry_timeout` and more).
const CYCLE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    super::register(
        IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition"),
    )
}

static CYCLE: LazyLock<Histogram> = LazyLock::new(|| {
    super::register(
        Histogram::with_opts(
            HistogramOpts::new(
                CYCLE_DURATION,
                "Seconds each HA cycle took, from gathering its facts to its last action.",
            )
            .buckets(CYCLE_BUCKETS.to_vec()),
        )
        .expect("a valid metric definition"),
    )
});

static DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        DECISIONS_TOTAL,
        "HA cycles by the kind of their decision: its most consequential action (none: nothing to do).",
        &["kind"],
    )
});

static ACTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        ACTIONS_TOTAL,
        "Actions the HA loop carried out, by action and result (done, refused: a compare-and-swap or race lost, failed).",
        &["action", "result"],
    )
});

static KEEPALIVES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = counter(
        KEEPALIVES_TOTAL,
        "Lease keep-alives the leader sent between cycles, by outcome (extended, lost, failed, ignored).",
        &["outcome"],
    );
    for o in KEEPALIVE_OUTCOMES {
        c.with_label_values(&[o]);
    }
    c
});

static JOBS_DONE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = counter(
        JOBS_TOTAL,
        "PostgreSQL jobs the HA loop ran (bootstrap, clone, reinitialize, start, stop, promote, rewind), by outcome.",
        &["job", "outcome"],
    );
    for j in JOBS {
        for o in OUTCOMES {
            c.with_label_values(&[j, o]);
        }
    }
    c
});

static PROMOTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = counter(
        PROMOTIONS_TOTAL,
        "Promotions of this node, by cause (failover: the leader's lease ran out; manual_failover; switchover) and outcome.",
        &["cause", "outcome"],
    );
    for cause in CAUSES {
        for o in OUTCOMES {
            c.with_label_values(&[cause, o]);
        }
    }
    c
});

static DEMOTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = counter(
        DEMOTIONS_TOTAL,
        "Demotions of this node's primary, by mode (graceful: a switchover; immediate: another node holds the lock; offline: the lease is running out without the DCS).",
        &["mode"],
    );
    for m in DEMOTE_MODES {
        c.with_label_values(&[m]);
    }
    c
});

/// The cause of the promotion whose job runs, until its outcome comes
/// (`JobFinished`, in a later message than the cycle that started it). One
/// per process, like the registry: a daemon runs one promotion at a time.
static PENDING_PROMOTION: Mutex<Option<&'static str>> = Mutex::new(None);

pub(super) fn init() {
    LazyLock::force(&CYCLE);
    LazyLock::force(&DECISIONS);
    LazyLock::force(&ACTIONS);
    LazyLock::force(&KEEPALIVES);
    LazyLock::force(&JOBS_DONE);
    LazyLock::force(&PROMOTIONS);
    LazyLock::force(&DEMOTIONS);
}

/// A cycle ended after `took`.
pub fn cycle_finished(took: Duration) {
    CYCLE.observe(took.as_secs_f64());
}

/// A cycle decided; `kind` is `ha::Decision::kind`.
pub fn decided(kind: &str) {
    DECISIONS.with_label_values(&[kind]).inc();
}

/// An action (`ha::Action::kind`) ended with `result` ([`result_label`]).
pub fn action_done(action: &str, result: &str) {
    ACTIONS.with_label_values(&[action, result]).inc();
}

/// The label of an action's result: `done` (renewals and hand-overs too),
/// `refused`, `failed`.
pub fn result_label(r: &crate::ha::ActionResult) -> &'static str {
    use crate::ha::ActionResult as R;
    match r {
        R::Done | R::Renewed(_) | R::SteppedDown(_) => "done",
        R::Refused => "refused",
        R::Failed(_) => "failed",
    }
}

/// A keep-alive ended with `outcome` (one of [`KEEPALIVE_OUTCOMES`]).
pub fn keepalive(outcome: &'static str) {
    KEEPALIVES.with_label_values(&[outcome]).inc();
}

/// A demotion of `mode` was carried out.
pub fn demoted(mode: DemoteMode) {
    let label = match mode {
        DemoteMode::Graceful => "graceful",
        DemoteMode::ImmediateNoLock => "immediate",
        DemoteMode::Offline => "offline",
    };
    DEMOTIONS.with_label_values(&[label]).inc();
}

/// The promotion job started; `cause` from `ha::switchover::promotion_cause`.
pub fn promotion_started(cause: &'static str) {
    *crate::sync::lock(&PENDING_PROMOTION) = Some(cause);
}

fn job_label(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Bootstrap => "bootstrap",
        JobKind::Clone => "clone",
        JobKind::Reinitialize => "reinitialize",
        JobKind::Start => "start",
        JobKind::Stop => "stop",
        JobKind::Promote => "promote",
        JobKind::Rewind => "rewind",
    }
}

/// A job reported its outcome; a promotion's also counts under the cause
/// it started with (`failover` if none was recorded: a promotion started
/// by a previous daemon).
pub fn job_finished(outcome: &JobOutcome) {
    let (kind, result) = match outcome {
        JobOutcome::Succeeded(k) => (*k, "succeeded"),
        JobOutcome::Failed(k, _) => (*k, "failed"),
        JobOutcome::RewindFailed(_) => (JobKind::Rewind, "failed"),
    };
    JOBS_DONE
        .with_label_values(&[job_label(kind), result])
        .inc();
    if kind == JobKind::Promote {
        let cause = crate::sync::lock(&PENDING_PROMOTION)
            .take()
            .unwrap_or("failover");
        PROMOTIONS.with_label_values(&[cause, result]).inc();
    }
}

/// How many promotions of `cause` ended with `outcome`, and jobs of `job`
/// (tests).
pub fn promotions(cause: &str, outcome: &str) -> u64 {
    PROMOTIONS.with_label_values(&[cause, outcome]).get()
}

pub fn jobs(job: &str, outcome: &str) -> u64 {
    JOBS_DONE.with_label_values(&[job, outcome]).get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promotion_counts_under_its_cause_once_its_job_ends() {
        let before = promotions("switchover", "succeeded");
        let failed = promotions("manual_failover", "failed");
        let jobs_before = jobs("promote", "succeeded");
        promotion_started("switchover");
        job_finished(&JobOutcome::Succeeded(JobKind::Promote));
        promotion_started("manual_failover");
        job_finished(&JobOutcome::Failed(JobKind::Promote, "timeout".into()));
        assert_eq!(promotions("switchover", "succeeded"), before + 1);
        assert_eq!(promotions("manual_failover", "failed"), failed + 1);
        assert_eq!(jobs("promote", "succeeded"), jobs_before + 1);

        let rewinds = jobs("rewind", "failed");
        job_finished(&JobOutcome::RewindFailed(
            crate::ha::rewind::RewindReport::NoWalLogHints,
        ));
        assert_eq!(jobs("rewind", "failed"), rewinds + 1);
    }

    #[test]
    fn fixed_series_render_at_zero_before_anything_happens() {
        let text = super::super::render("s", "n");
        for j in JOBS {
            for o in OUTCOMES {
                let line = format!(
                    "pgpilot_jobs_total{{scope=\"s\",name=\"n\",job=\"{j}\",outcome=\"{o}\"}} "
                );
                assert!(text.contains(&line), "{line} missing:\n{text}");
            }
        }
        for cause in CAUSES {
            assert!(text.contains(&format!("cause=\"{cause}\",outcome=\"failed\"}}")));
        }
        for m in DEMOTE_MODES {
            assert!(text.contains(&format!(
                "pgpilot_demotions_total{{scope=\"s\",name=\"n\",mode=\"{m}\"}}"
            )));
        }
        for o in KEEPALIVE_OUTCOMES {
            assert!(text.contains(&format!("outcome=\"{o}\"}}")));
        }
    }
}
