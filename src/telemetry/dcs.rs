//! The DCS calls of the HA loop as the daemon sees them (docs/rest-api.md,
//! "GET /metrics"): how long each took, and which failed, by the error
//! class the HA rules react to (`DcsError`). Fed by `dcs::metered`, the
//! wrapper around the store the elector and the watcher use.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

use crate::dcs::DcsError;

/// `pgpilot_dcs_request_duration_seconds{operation}` (histogram).
pub const REQUEST_DURATION: &str = "pgpilot_dcs_request_duration_seconds";
/// `pgpilot_dcs_errors_total{operation,class}`.
pub const ERRORS_TOTAL: &str = "pgpilot_dcs_errors_total";

/// From a local etcd's millisecond up to `retry_timeout`'s default (10 s),
/// past which a call is given up as unreachable.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    super::register(
        HistogramVec::new(
            HistogramOpts::new(
                REQUEST_DURATION,
                "Seconds each DCS call of this daemon took, answered or failed, by operation (keep_alive is the lease keep-alive).",
            )
            .buckets(BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("a valid metric definition"),
    )
});

/// The calls every HA cycle or keep-alive of a leader makes: their error
/// series start at 0 (rates and alerts see the first error); the rest
/// appear with their first error.
pub const LOOP_OPERATIONS: [&str; 5] = [
    "load_cluster",
    "touch_member",
    "attempt_to_acquire_leader",
    "update_leader",
    "keep_alive",
];
pub const CLASSES: [&str; 2] = ["unreachable", "other"];

static ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = super::register(
        IntCounterVec::new(
            Opts::new(
                ERRORS_TOTAL,
                "DCS calls that failed, by operation and class (unreachable: no answer within retry_timeout; other: refused or unreadable).",
            ),
            &["operation", "class"],
        )
        .expect("a valid metric definition"),
    );
    for op in LOOP_OPERATIONS {
        for class in CLASSES {
            c.with_label_values(&[op, class]);
        }
    }
    c
});

/// The label of an error's class.
pub fn class(e: &DcsError) -> &'static str {
    match e {
        DcsError::Unreachable(_) => "unreachable",
        DcsError::Other(_) => "other",
    }
}

/// One call of `operation` took `took`; `error` when it failed. A lost
/// compare-and-swap is an answer, not an error.
pub fn observe(operation: &str, took: Duration, error: Option<&DcsError>) {
    DURATION
        .with_label_values(&[operation])
        .observe(took.as_secs_f64());
    if let Some(e) = error {
        ERRORS.with_label_values(&[operation, class(e)]).inc();
    }
}

/// Registers the families (the latency of an operation renders once it
/// was called).
pub(super) fn init() {
    LazyLock::force(&DURATION);
    LazyLock::force(&ERRORS);
}

/// Calls and errors counted for `operation` (tests).
pub fn counts(operation: &str, class: &str) -> (u64, u64) {
    (
        DURATION.with_label_values(&[operation]).get_sample_count(),
        ERRORS.with_label_values(&[operation, class]).get(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_timed_and_errors_counted_by_class() {
        let op = "telemetry_test_op";
        let (calls, unreachable) = counts(op, "unreachable");
        observe(op, Duration::from_millis(2), None);
        observe(
            op,
            Duration::from_secs(10),
            Some(&DcsError::Unreachable("x".into())),
        );
        observe(
            op,
            Duration::from_millis(1),
            Some(&DcsError::Other("y".into())),
        );
        assert_eq!(counts(op, "unreachable"), (calls + 3, unreachable + 1));
        assert_eq!(counts(op, "other").1, 1);
        let text = super::super::render("s", "n");
        assert!(
            text.contains(&format!(
                "pgpilot_dcs_request_duration_seconds_bucket{{scope=\"s\",name=\"n\",operation=\"{op}\",le=\"0.0025\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "pgpilot_dcs_errors_total{{scope=\"s\",name=\"n\",class=\"other\",operation=\"{op}\"}} 1\n"
            )),
            "{text}"
        );
    }
}
