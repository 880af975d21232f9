//! `ttl`, `loop_wait` and `retry_timeout` of a dynamic configuration
//! (docs/configuration.md, "Timing: adjusted, not refused"): read, then
//! adjusted as Patroni's `Config._validate_and_adjust_timeouts` adjusts
//! them, never refused for their values.
//!
//! The document keeps what the user wrote (the DCS `config` key, a PATCH);
//! the adjusted [`Timing`] is what the node runs with, and every adjustment
//! is reported as a warning in Patroni's words. The steps, in order:
//!
//! 1. A value under pgpilot's minimum is raised to it (`ttl` 5 s, `loop_wait`
//!    0.1 s, `retry_timeout` 0.5 s; Patroni's are 20, 1 and 3: pgpilot
//!    accepts shorter leases, since the leader also renews its lease on its
//!    own schedule and the fence stops a cut-off primary 1 s before it can
//!    end).
//! 2. `loop_wait + 2 * retry_timeout <= ttl` (Patroni's rule): otherwise
//!    `loop_wait` is lowered to `ttl - 2 * retry_timeout`; when that is under
//!    1 s (or under the `loop_wait` written, if smaller), `loop_wait` becomes
//!    that floor and `retry_timeout` `(ttl - floor) // 2` whole seconds.
//!    With whole numbers at or above Patroni's minimums this gives exactly
//!    Patroni's values.
//! 3. `loop_wait + retry_timeout < ttl - 1` (pgpilot's fencing rule,
//!    [`Timing::fence_room`]): otherwise `loop_wait` is lowered to
//!    `ttl - 1 - retry_timeout - 0.1`. After step 2 this only happens with a
//!    `retry_timeout` of about 1 s or less, so the result stays above 2.9 s.
//!
//! All arithmetic is in whole milliseconds, so the rules hold exactly for
//! the durations built from the results.

use std::time::Duration;

use serde_json::Value;

use super::error::{ConfigError, ORIGIN_DYNAMIC};
use super::types::Timing;

/// Smallest `ttl` in force, seconds. Below it the fixed 1 s fencing margin,
/// the fence's reaction and etcd's 500 ms expiry tick take too large a share
/// of the lease, and one slow etcd answer costs it.
pub const MIN_TTL: f64 = 5.0;
/// Smallest `loop_wait` in force, seconds.
pub const MIN_LOOP_WAIT: f64 = 0.1;
/// Smallest `retry_timeout` in force, seconds.
pub const MIN_RETRY_TIMEOUT: f64 = 0.5;

/// Patroni's smallest `loop_wait`, the one its rule falls back to.
const PATRONI_LOOP_WAIT_FLOOR_MS: i64 = 1000;
/// What the fencing step leaves between one cycle and `ttl - margin`: the
/// rule is strict, and a tenth of a second keeps the numbers readable.
const FENCE_STEP_MS: i64 = 100;

/// The timing in force and the warnings saying how it differs from what
/// was written (empty when it does not).
#[derive(Debug, Clone, PartialEq)]
pub struct AdjustedTiming {
    pub timing: Timing,
    pub adjustments: Vec<String>,
}

/// The timing in force for a dynamic configuration document: defaults
/// filled in, then adjusted (see the module comment). `Err` only when a
/// value is not a number of seconds.
pub fn adjusted_timing(v: &Value) -> Result<AdjustedTiming, ConfigError> {
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    let mut errors = Vec::new();
    let mut adjustments = Vec::new();
    let mut ms = |key: &str, default: f64, min: f64| {
        let written = match get(key) {
            None => default,
            Some(x) => match seconds(x) {
                Some(s) => s,
                None => {
                    errors.push(ConfigError::key(
                        ORIGIN_DYNAMIC,
                        key,
                        format!("expected a number of seconds, got {x}"),
                    ));
                    default
                }
            },
        };
        let written = to_ms(written);
        let min = to_ms(min);
        if written < min {
            adjustments.push(format!(
                "{key}={} can't be smaller than {}, adjusting...",
                show(written),
                show(min)
            ));
            min
        } else {
            written
        }
    };
    let ttl = ms("ttl", 30.0, MIN_TTL);
    let mut loop_wait = ms("loop_wait", 10.0, MIN_LOOP_WAIT);
    let mut retry_timeout = ms("retry_timeout", 10.0, MIN_RETRY_TIMEOUT);
    if let Some(e) = ConfigError::combine(errors) {
        return Err(e);
    }

    if loop_wait + 2 * retry_timeout > ttl {
        let floor = loop_wait.min(PATRONI_LOOP_WAIT_FLOOR_MS);
        if floor + 2 * retry_timeout > ttl {
            // Patroni: `(ttl - min_loop_wait) // 2`, whole seconds.
            let new_retry = (ttl - floor) / 2 / 1000 * 1000;
            adjustments.push(format!(
                "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl={}. \
                 Adjusting loop_wait from {} to {} and retry_timeout from {} to {}",
                show(ttl),
                show(loop_wait),
                show(floor),
                show(retry_timeout),
                show(new_retry)
            ));
            loop_wait = floor;
            retry_timeout = new_retry;
        } else {
            let new_wait = ttl - 2 * retry_timeout;
            adjustments.push(format!(
                "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl={} and \
                 retry_timeout={}. Adjusting loop_wait from {} to {}",
                show(ttl),
                show(retry_timeout),
                show(loop_wait),
                show(new_wait)
            ));
            loop_wait = new_wait;
        }
    }

    let margin = i64::try_from(super::types::FENCE_MARGIN.as_millis()).unwrap_or(1000);
    if loop_wait + retry_timeout >= ttl - margin {
        let new_wait = ttl - margin - retry_timeout - FENCE_STEP_MS;
        adjustments.push(format!(
            "Violated the rule \"loop_wait + retry_timeout < ttl - {}\" (the fencing margin), \
             where ttl={} and retry_timeout={}. Adjusting loop_wait from {} to {}",
            show(margin),
            show(ttl),
            show(retry_timeout),
            show(loop_wait),
            show(new_wait)
        ));
        loop_wait = new_wait;
    }

    let timing = Timing {
        ttl: duration(ttl),
        loop_wait: duration(loop_wait),
        retry_timeout: duration(retry_timeout),
    };
    // Backstop: the steps above always leave room (module comment); a
    // bug in them must not start a leader that would fence itself.
    if loop_wait < to_ms(MIN_LOOP_WAIT) || retry_timeout < to_ms(MIN_RETRY_TIMEOUT) {
        return Err(ConfigError::key(
            ORIGIN_DYNAMIC,
            "ttl",
            format!(
                "no usable timing: ttl {}, loop_wait {}, retry_timeout {}",
                show(ttl),
                show(loop_wait),
                show(retry_timeout)
            ),
        ));
    }
    timing
        .fence_room()
        .map_err(|why| ConfigError::key(ORIGIN_DYNAMIC, "ttl", why.to_string()))?;
    Ok(AdjustedTiming {
        timing,
        adjustments,
    })
}

/// [`adjusted_timing`] without the warnings.
pub fn timing_from_json(v: &Value) -> Result<Timing, ConfigError> {
    adjusted_timing(v).map(|a| a.timing)
}

/// The largest value taken, in milliseconds (about 31,700 years): the
/// sums of the rules stay far from overflowing.
const MAX_MS: f64 = 1e15;

/// Seconds to whole milliseconds, rounded; huge values are capped at
/// [`MAX_MS`].
fn to_ms(secs: f64) -> i64 {
    (secs * 1000.0).round().min(MAX_MS) as i64
}

fn duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Milliseconds as seconds, `10` or `7.9` (no trailing zeros).
fn show(ms: i64) -> String {
    (ms as f64 / 1000.0).to_string()
}

/// Seconds from a number or a string with an optional unit
/// (`ms`, `s`, `min`, `h`, `d`).
pub(crate) fn seconds(v: &Value) -> Option<f64> {
    let s = match v {
        Value::Number(n) => return n.as_f64().filter(|f| f.is_finite() && *f >= 0.0),
        Value::String(s) => s.trim(),
        _ => return None,
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    Some(n * factor).filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    fn in_force(v: Value) -> (f64, f64, f64, Vec<String>) {
        let a = adjusted_timing(&v).unwrap();
        (
            secs(a.timing.ttl),
            secs(a.timing.loop_wait),
            secs(a.timing.retry_timeout),
            a.adjustments,
        )
    }

    #[test]
    fn defaults_and_fitting_values_are_kept() {
        let (ttl, lw, rt, notes) = in_force(json!({}));
        assert_eq!((ttl, lw, rt), (30.0, 10.0, 10.0));
        assert!(notes.is_empty());
        let (ttl, lw, rt, notes) = in_force(json!({"ttl": 5, "loop_wait": 1, "retry_timeout": 2}));
        assert_eq!((ttl, lw, rt), (5.0, 1.0, 2.0));
        assert!(notes.is_empty(), "{notes:?}");
        let (_, lw, rt, _) = in_force(json!({"ttl": "2min", "loop_wait": "500ms"}));
        assert_eq!((lw, rt), (0.5, 10.0));
    }

    /// Patroni's rule, first branch: `loop_wait` lowered, `retry_timeout` kept.
    #[test]
    fn loop_wait_is_lowered_to_fit() {
        let (ttl, lw, rt, notes) =
            in_force(json!({"ttl": 25, "loop_wait": 10, "retry_timeout": 10}));
        assert_eq!((ttl, lw, rt), (25.0, 5.0, 10.0));
        assert_eq!(
            notes,
            [
                "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=25 and \
                 retry_timeout=10. Adjusting loop_wait from 10 to 5"
            ]
        );
    }

    /// Patroni's rule, second branch: the issue's `ttl: 20` with
    /// `retry_timeout: 10` gives `loop_wait: 1, retry_timeout: 9`.
    #[test]
    fn retry_timeout_is_lowered_when_loop_wait_1_does_not_fit() {
        let (ttl, lw, rt, notes) =
            in_force(json!({"ttl": 20, "loop_wait": 10, "retry_timeout": 10}));
        assert_eq!((ttl, lw, rt), (20.0, 1.0, 9.0));
        assert_eq!(
            notes,
            [
                "Violated the rule \"loop_wait + 2*retry_timeout <= ttl\", where ttl=20. \
                 Adjusting loop_wait from 10 to 1 and retry_timeout from 10 to 9"
            ]
        );
        // Odd remainder: (ttl - 1) // 2.
        let (_, lw, rt, _) = in_force(json!({"ttl": 8, "loop_wait": 2, "retry_timeout": 5}));
        assert_eq!((lw, rt), (1.0, 3.0));
        // A written loop_wait under 1 s stays the floor.
        let (_, lw, rt, _) = in_force(json!({"ttl": 5, "loop_wait": 0.5, "retry_timeout": 2.4}));
        assert_eq!((lw, rt), (0.5, 2.0));
    }

    /// Patroni's results for whole numbers at or above its minimums.
    #[test]
    fn same_values_as_patroni() {
        fn patroni(ttl: i64, lw: i64, rt: i64) -> (i64, i64) {
            if 1 + 2 * rt > ttl {
                (1, (ttl - 1) / 2)
            } else if lw + 2 * rt > ttl {
                (ttl - 2 * rt, rt)
            } else {
                (lw, rt)
            }
        }
        for ttl in [20, 21, 30, 45, 60] {
            for lw in [1, 2, 5, 10, 20] {
                for rt in [3, 5, 9, 10, 15, 30] {
                    let (_, got_lw, got_rt, _) =
                        in_force(json!({"ttl": ttl, "loop_wait": lw, "retry_timeout": rt}));
                    let (want_lw, want_rt) = patroni(ttl, lw, rt);
                    assert_eq!(
                        (got_lw, got_rt),
                        (want_lw as f64, want_rt as f64),
                        "ttl {ttl} loop_wait {lw} retry_timeout {rt}"
                    );
                }
            }
        }
    }

    #[test]
    fn values_under_the_minimums_are_raised() {
        let (ttl, lw, rt, notes) =
            in_force(json!({"ttl": 3, "loop_wait": 0.05, "retry_timeout": 0.2}));
        assert_eq!((ttl, lw, rt), (5.0, 0.1, 0.5));
        assert_eq!(
            notes,
            [
                "ttl=3 can't be smaller than 5, adjusting...",
                "loop_wait=0.05 can't be smaller than 0.1, adjusting...",
                "retry_timeout=0.2 can't be smaller than 0.5, adjusting...",
            ]
        );
    }

    /// pgpilot's own rule: one cycle must fit in `ttl - 1`.
    #[test]
    fn fencing_rule_lowers_loop_wait() {
        let (ttl, lw, rt, notes) = in_force(json!({"ttl": 10, "loop_wait": 8, "retry_timeout": 1}));
        assert_eq!((ttl, lw, rt), (10.0, 7.9, 1.0));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("fencing margin"), "{}", notes[0]);
        assert!(notes[0].contains("from 8 to 7.9"), "{}", notes[0]);
    }

    /// Whatever the numbers, the result satisfies every rule.
    #[test]
    fn every_result_is_usable() {
        for ttl in [0.0, 1.0, 5.0, 5.5, 6.0, 7.3, 10.0, 20.0, 31.7, 100.0] {
            for lw in [0.0, 0.1, 0.5, 1.0, 3.3, 10.0, 50.0] {
                for rt in [0.0, 0.5, 1.0, 1.2, 2.0, 9.9, 10.0, 60.0] {
                    let v = json!({"ttl": ttl, "loop_wait": lw, "retry_timeout": rt});
                    let t = adjusted_timing(&v).unwrap().timing;
                    assert!(t.loop_wait + 2 * t.retry_timeout <= t.ttl, "{v}: {t:?}");
                    assert!(t.fence_room().is_ok(), "{v}: {t:?}");
                    assert!(secs(t.loop_wait) >= MIN_LOOP_WAIT, "{v}: {t:?}");
                    assert!(secs(t.retry_timeout) >= MIN_RETRY_TIMEOUT, "{v}: {t:?}");
                    assert!(secs(t.ttl) >= MIN_TTL, "{v}: {t:?}");
                }
            }
        }
    }

    /// Values from outside (a PATCH) never overflow the arithmetic.
    #[test]
    fn huge_values_are_capped() {
        let (ttl, lw, rt, _) =
            in_force(json!({"ttl": 1e300, "loop_wait": 1e300, "retry_timeout": 1e300}));
        assert_eq!(ttl, 1e12);
        assert!(lw + 2.0 * rt <= ttl, "{lw} {rt}");
    }

    #[test]
    fn only_non_numbers_are_errors() {
        let e = adjusted_timing(&json!({"ttl": "soon", "loop_wait": [1], "retry_timeout": 2}))
            .unwrap_err();
        let keys: Vec<_> = e.errors().iter().filter_map(|e| e.key_path()).collect();
        assert_eq!(keys, ["ttl", "loop_wait"]);
    }
}
