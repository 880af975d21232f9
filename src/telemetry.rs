//! pgpilot's own metrics (docs/rest-api.md, "GET /metrics"): one counter
//! per logged event, kept by a tracing layer, so that every event the
//! daemon logs (`event = events::LOCK_ACQUIRED`, a name from the catalog in
//! `src/events.rs`) is also counted, whatever the log level lets through,
//! without a second call at each site.
//!
//! The layer sees only pgpilot's own events (target `pgpilot`): the
//! libraries' trace events stay disabled at their callsites, so counting
//! costs nothing on their hot paths.

use std::sync::LazyLock;

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The registry of pgpilot's own metrics (Patroni's are rendered from the
/// status document, src/api/metrics.rs).
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// `pgpilot_events_total{event}`.
static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let events = IntCounterVec::new(
        Opts::new(
            "pgpilot_events_total",
            "Events pgpilot logged since it started, by event name (docs/architecture.md, events).",
        ),
        &["event"],
    )
    .expect("a valid metric definition");
    // Registering a fresh collector in a fresh registry cannot clash.
    let _ = REGISTRY.register(Box::new(events.clone()));
    events
});

/// The tracing layer that counts events by their `event` field.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventCounter;

impl<S: Subscriber> Layer<S> for EventCounter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        event.record(&mut CountEventField);
    }
}

/// Counts the value of a field named `event`.
struct CountEventField;

impl Visit for CountEventField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "event" {
            count(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "event" {
            count(&format!("{value:?}"));
        }
    }
}

/// Count one `event` (the layer does; tests may too).
pub fn count(event: &str) {
    EVENTS.with_label_values(&[event]).inc();
}

/// How many times `event` was counted.
pub fn event_count(event: &str) -> u64 {
    EVENTS.with_label_values(&[event]).get()
}

/// pgpilot's metrics in Prometheus' text format (0.0.4), `# HELP` and
/// `# TYPE` before each family.
pub fn render() -> String {
    // Touch the counter family so that it is registered before the first
    // event (an empty family renders nothing).
    LazyLock::force(&EVENTS);
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&REGISTRY.gather(), &mut out) {
        tracing::warn!(event = crate::events::METRICS_ENCODE_FAILED, error = %e);
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    // Test-only names, kept out of the catalog (`crate::events::ALL`): the
    // counter counts whatever name a site logs, catalogued or not.
    const TEST_EVENT: &str = "telemetry_test_event";
    const TEST_OTHER: &str = "telemetry_test_other";

    #[test]
    fn every_event_is_counted_by_name() {
        let subscriber = tracing_subscriber::registry().with(EventCounter);
        let before = event_count(TEST_EVENT);
        let other = event_count(TEST_OTHER);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(event = TEST_EVENT, detail = 1);
            tracing::debug!(event = TEST_EVENT);
            tracing::warn!(event = TEST_OTHER, "with a message");
            tracing::info!("no event field: not counted");
        });
        assert_eq!(event_count(TEST_EVENT), before + 2);
        assert_eq!(event_count(TEST_OTHER), other + 1);
        let text = render();
        assert!(
            text.contains("# TYPE pgpilot_events_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "pgpilot_events_total{{event=\"{TEST_EVENT}\"}} {}\n",
                before + 2
            )),
            "{text}"
        );
    }
}
