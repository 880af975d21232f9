//! The lease and fence gauges of `GET /metrics` (docs/rest-api.md, "GET
//! /metrics"): what an operator needs to see before a primary is fenced
//! or loses its lock. Read at scrape time: the lease as the HA core holds
//! it (`HaState::lease_deadline`) and the fence as its own last answer
//! (`ack.json`) and its record of firings (`fired.json`) say; the route
//! reads the files, this module only turns the facts into gauges.

use std::fmt::Write;
use std::time::{Duration, Instant};

use crate::fence::{ACK_FRESH, Ack, Fired};

/// The families this module renders, in order.
pub const NAMES: [&str; 6] = [
    "pgpilot_lease_ttl_seconds",
    "pgpilot_lease_seconds_left",
    "pgpilot_fence_armed",
    "pgpilot_fence_seconds_left",
    "pgpilot_fence_fired_total",
    "pgpilot_fence_last_fired_timestamp_seconds",
];

/// The facts, as of one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LeaseFacts {
    /// The ttl in force.
    pub ttl_secs: f64,
    /// Seconds until the lease surely ends as the HA core holds it; 0
    /// without a lease (or once it lapsed).
    pub lease_left: f64,
    /// A live fence acknowledged an armed, unpaused order.
    pub fence_armed: bool,
    /// Seconds until that order's fencing point, as the fence holds it; 0
    /// when not armed.
    pub fence_left: f64,
    pub fired: Fired,
}

impl LeaseFacts {
    /// From the HA core's deadline at `now`, and the fence's answer at
    /// `now_ms` (`CLOCK_BOOTTIME`, the fence's clock). An answer older than
    /// [`ACK_FRESH`] is no live fence, as for the HA loop
    /// (`fence::ack_confirms`).
    pub fn new(
        ttl: Duration,
        lease_deadline: Option<Instant>,
        now: Instant,
        ack: Option<&Ack>,
        now_ms: u64,
        fired: Option<Fired>,
    ) -> LeaseFacts {
        let armed = ack.filter(|a| {
            a.armed
                && !a.paused
                && now_ms.saturating_sub(a.polled_ms) <= ACK_FRESH.as_millis() as u64
        });
        LeaseFacts {
            ttl_secs: ttl.as_secs_f64(),
            lease_left: lease_deadline
                .map_or(0.0, |d| d.saturating_duration_since(now).as_secs_f64()),
            fence_armed: armed.is_some(),
            fence_left: armed.map_or(0.0, |a| {
                Duration::from_millis(a.deadline_ms.saturating_sub(now_ms)).as_secs_f64()
            }),
            fired: fired.unwrap_or_default(),
        }
    }
}

/// The gauges of `facts`, each sample with `labels` (`{scope="...",name="..."}`).
pub fn render(facts: &LeaseFacts, labels: &str) -> String {
    let mut out = String::with_capacity(1024);
    let mut metric = |name: &str, help: &str, kind: &str, value: String| {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{labels} {value}");
    };
    let secs = |s: f64| format!("{s:.3}");
    metric(
        NAMES[0],
        "The leader lease's ttl in force (dynamic configuration), in seconds.",
        "gauge",
        secs(facts.ttl_secs),
    );
    metric(
        NAMES[1],
        "Seconds until this node's leader lease surely ends, as its HA loop holds it (counted from the send time of the renewal the DCS answered); 0 without a lease.",
        "gauge",
        secs(facts.lease_left),
    );
    metric(
        NAMES[2],
        "Value is 1 if a live fence acknowledged an armed order: it stops PostgreSQL at its fencing point unless the lease is renewed; 0 otherwise.",
        "gauge",
        u8::from(facts.fence_armed).to_string(),
    );
    metric(
        NAMES[3],
        "Seconds until the fence's fencing point (the lease's end minus its margin), as the fence's last acknowledgement holds it; 0 when not armed.",
        "gauge",
        secs(facts.fence_left),
    );
    metric(
        NAMES[4],
        "Times a fence stopped PostgreSQL in this data directory (its fired.json).",
        "counter",
        facts.fired.count.to_string(),
    );
    metric(
        NAMES[5],
        "Unix time of the fence's last firing in this data directory, 0 if never.",
        "gauge",
        secs(facts.fired.last_unix),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(armed: bool, paused: bool, deadline_ms: u64, polled_ms: u64) -> Ack {
        Ack {
            armed,
            paused,
            deadline_ms,
            polled_ms,
            pid: 1,
        }
    }

    #[test]
    fn a_leader_with_a_live_armed_fence() {
        let now = Instant::now();
        let f = LeaseFacts::new(
            Duration::from_secs(30),
            Some(now + Duration::from_millis(27_500)),
            now,
            Some(&ack(true, false, 126_000, 99_800)),
            100_000,
            None,
        );
        assert_eq!(f.ttl_secs, 30.0);
        assert_eq!(f.lease_left, 27.5);
        assert!(f.fence_armed);
        assert_eq!(f.fence_left, 26.0);
        let text = render(&f, r#"{scope="b",name="n1"}"#);
        for line in [
            "pgpilot_lease_ttl_seconds{scope=\"b\",name=\"n1\"} 30.000\n",
            "pgpilot_lease_seconds_left{scope=\"b\",name=\"n1\"} 27.500\n",
            "pgpilot_fence_armed{scope=\"b\",name=\"n1\"} 1\n",
            "pgpilot_fence_seconds_left{scope=\"b\",name=\"n1\"} 26.000\n",
            "pgpilot_fence_fired_total{scope=\"b\",name=\"n1\"} 0\n",
            "# TYPE pgpilot_fence_fired_total counter\n",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert_eq!(types, NAMES);
    }

    #[test]
    fn no_lease_a_stale_paused_or_disarmed_fence_and_a_past_firing() {
        let now = Instant::now();
        // A lapsed lease reads 0, never negative.
        let lapsed = LeaseFacts::new(
            Duration::from_secs(30),
            Some(now),
            now + Duration::from_secs(1),
            None,
            0,
            None,
        );
        assert_eq!((lapsed.lease_left, lapsed.fence_armed), (0.0, false));
        let fence =
            |a: Ack| LeaseFacts::new(Duration::from_secs(30), None, now, Some(&a), 100_000, None);
        // An answer older than ACK_FRESH: the fence may be dead.
        let stale = fence(ack(true, false, 120_000, 100_000 - 1_501));
        assert!(!stale.fence_armed);
        assert_eq!(stale.fence_left, 0.0);
        assert!(!fence(ack(true, true, 120_000, 100_000)).fence_armed);
        assert!(!fence(ack(false, false, 120_000, 100_000)).fence_armed);
        // Past its fencing point: armed, nothing left.
        let due = fence(ack(true, false, 99_000, 99_900));
        assert!(due.fence_armed);
        assert_eq!(due.fence_left, 0.0);

        let fired = LeaseFacts::new(
            Duration::from_secs(30),
            None,
            now,
            None,
            0,
            Some(Fired {
                count: 2,
                last_unix: 1_796_469_709.25,
            }),
        );
        let text = render(&fired, "{}");
        assert!(text.contains("pgpilot_fence_fired_total{} 2\n"), "{text}");
        assert!(
            text.contains("pgpilot_fence_last_fired_timestamp_seconds{} 1796469709.250\n"),
            "{text}"
        );
    }
}
