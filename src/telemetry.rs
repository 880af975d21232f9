//! pgpilot's own metrics (docs/rest-api.md, "GET /metrics"), kept in one
//! registry of tikv's `prometheus` crate and rendered after Patroni's:
//!
//! - one counter per logged event (`pgpilot_events_total{event}`), kept by
//!   a tracing layer, so that every event the daemon logs (`event =
//!   events::LOCK_ACQUIRED`, a name from the catalog in `src/events.rs`) is
//!   also counted, whatever the log level lets through, without a second
//!   call at each site;
//! - the DCS calls' latency and errors ([`dcs`]);
//! - the HA loop's cycles, decisions, actions, jobs and promotions ([`ha`]).
//!
//! The gauges read at scrape time (the lease and the fence) are rendered
//! by `api::lease_metrics`, from the elector's state and the fence's files.
//!
//! Every sample carries Patroni's labels `scope` and `name`, added when
//! rendering ([`render`]), so one dashboard selects Patroni's and
//! pgpilot's metrics of a cluster alike.
//!
//! The event layer sees only pgpilot's own events (target `pgpilot`): the
//! libraries' trace events stay disabled at their callsites, so counting
//! costs nothing on their hot paths.

pub mod dcs;
pub mod ha;

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::proto::LabelPair;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The registry of pgpilot's own metrics (Patroni's are rendered from the
/// status document, src/api/metrics.rs).
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// `pgpilot_events_total{event}`.
pub const EVENTS_TOTAL: &str = "pgpilot_events_total";

/// Every family this registry holds, by name: what the dashboard in
/// `conf/` may query besides Patroni's and the scrape-time gauges (a test
/// checks this list against a render).
pub const FAMILIES: [&str; 10] = [
    EVENTS_TOTAL,
    dcs::REQUEST_DURATION,
    dcs::ERRORS_TOTAL,
    ha::CYCLE_DURATION,
    ha::DECISIONS_TOTAL,
    ha::ACTIONS_TOTAL,
    ha::KEEPALIVES_TOTAL,
    ha::JOBS_TOTAL,
    ha::PROMOTIONS_TOTAL,
    ha::DEMOTIONS_TOTAL,
];

/// `collector`, registered in [`REGISTRY`]. The definitions are constants
/// of this module, so a clash is a bug a unit test catches; it is logged,
/// never a panic.
pub(crate) fn register<C: Collector + Clone + 'static>(collector: C) -> C {
    if let Err(e) = REGISTRY.register(Box::new(collector.clone())) {
        tracing::warn!(event = crate::events::METRICS_REGISTRATION_FAILED, error = %e);
    }
    collector
}

static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                EVENTS_TOTAL,
                "Events pgpilot logged since it started, by event name (docs/architecture.md, events).",
            ),
            &["event"],
        )
        .expect("a valid metric definition"),
    )
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

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_owned());
    l.set_value(value.to_owned());
    l
}

/// pgpilot's metrics in Prometheus' text format (0.0.4), `# HELP` and
/// `# TYPE` before each family, every sample labelled with the cluster's
/// `scope` and the member's `name` (before its own labels, as Patroni's
/// come first in its lines).
pub fn render(scope: &str, name: &str) -> String {
    // Families with no series render nothing: touch each so that it is
    // registered and its fixed series exist before the first event.
    LazyLock::force(&EVENTS);
    dcs::init();
    ha::init();
    let mut families = REGISTRY.gather();
    for family in &mut families {
        for metric in family.mut_metric() {
            let mut labels = vec![label("scope", scope), label("name", name)];
            labels.extend(metric.take_label());
            metric.set_label(labels);
        }
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
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
        let text = render("batman", "n1");
        assert!(
            text.contains("# TYPE pgpilot_events_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "pgpilot_events_total{{scope=\"batman\",name=\"n1\",event=\"{TEST_EVENT}\"}} {}\n",
                before + 2
            )),
            "{text}"
        );
    }

    /// [`FAMILIES`] is what a render holds once every family has a series
    /// (the DCS and HA families are fed one each here).
    #[test]
    fn the_family_list_is_what_renders() {
        dcs::observe("load_cluster", std::time::Duration::from_millis(3), None);
        ha::cycle_finished(std::time::Duration::from_millis(20));
        ha::decided("none");
        ha::action_done("renew_lock", "done");
        let text = render("s", "n");
        let mut rendered: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        rendered.sort_unstable();
        let mut want: Vec<&str> = FAMILIES.to_vec();
        want.sort_unstable();
        assert_eq!(rendered, want, "{text}");
        assert!(
            text.contains(
                "pgpilot_dcs_request_duration_seconds_bucket{scope=\"s\",name=\"n\",operation=\"load_cluster\",le=\"0.005\"}"
            ),
            "{text}"
        );
    }
}
