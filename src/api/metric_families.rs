//! Which metric families `GET /metrics` exposes, and which ones a Grafana
//! dashboard queries: the check that the dashboard in `conf/` asks only
//! for what pgpilot serves (docs/rest-api.md, "GET /metrics";
//! docs/operations.md, "Monitoring").

use std::collections::BTreeSet;

use serde_json::{Value, json};

/// Every family `/metrics` can expose: Patroni's (with those shown only
/// while PostgreSQL answers with its version), the lease and fence gauges,
/// and pgpilot's registry.
pub fn all() -> BTreeSet<String> {
    let doc = json!({"state": "running", "role": "primary", "server_version": 150000,
                     "patroni": {"version": crate::PATRONI_COMPAT_VERSION}});
    let mut all: BTreeSet<String> = super::metrics::render(&doc)
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    all.extend(super::lease_metrics::NAMES.map(str::to_owned));
    all.extend(crate::telemetry::FAMILIES.map(str::to_owned));
    all
}

/// The series names of pgpilot's and Patroni's families an expression
/// names (`patroni_...`, `pgpilot_...`), as written.
pub fn series_in(expr: &str) -> Vec<String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(start) = ["patroni_", "pgpilot_"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        // A name only where an identifier starts (not inside `my_patroni_x`).
        let starts_word = !rest[..start].chars().next_back().is_some_and(is_name_char);
        let end = rest[start..]
            .find(|c: char| !is_name_char(c))
            .map_or(rest.len(), |e| start + e);
        if starts_word {
            out.push(rest[start..end].to_owned());
        }
        rest = &rest[end..];
    }
    out
}

/// The family a series belongs to: a histogram's `_bucket`, `_sum` and
/// `_count` series are its family's, when `families` has it.
pub fn family_of(series: &str, families: &BTreeSet<String>) -> String {
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| series.strip_suffix(*s))
        .find(|base| families.contains(*base))
        .unwrap_or(series)
        .to_owned()
}

/// Every query string of a Grafana dashboard: the panels' targets (rows'
/// nested panels too), the template variables' queries and the
/// annotations'.
pub fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The families a dashboard queries.
pub fn dashboard_families(dashboard: &Value, families: &BTreeSet<String>) -> BTreeSet<String> {
    dashboard_queries(dashboard)
        .iter()
        .flat_map(|q| series_in(q))
        .map(|s| family_of(&s, families))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_promql() {
        assert_eq!(
            series_in(
                r#"histogram_quantile(0.99, sum by (le) (rate(pgpilot_dcs_request_duration_seconds_bucket{scope="$scope"}[5m]))) - my_patroni_x + patroni_primary"#
            ),
            [
                "pgpilot_dcs_request_duration_seconds_bucket",
                "patroni_primary"
            ]
        );
        let families = all();
        assert!(families.contains("patroni_postgres_streaming"));
        assert!(families.contains("pgpilot_lease_seconds_left"));
        assert_eq!(
            family_of("pgpilot_dcs_request_duration_seconds_bucket", &families),
            "pgpilot_dcs_request_duration_seconds"
        );
        assert_eq!(
            family_of("pgpilot_ha_cycle_duration_seconds_count", &families),
            "pgpilot_ha_cycle_duration_seconds"
        );
        // Not a histogram: the name stands.
        assert_eq!(family_of("pgpilot_x_count", &families), "pgpilot_x_count");
    }

    /// conf/grafana-dashboard.json is JSON Grafana imports (a title, a
    /// uid, panels with targets) and queries only families `/metrics`
    /// exposes, among them the lease, fence, DCS and HA-loop ones.
    #[test]
    fn the_dashboard_queries_only_what_metrics_exposes() {
        let text = include_str!("../../conf/grafana-dashboard.json");
        let dashboard: Value = serde_json::from_str(text).expect("valid JSON");
        assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(
            panels
                .iter()
                .filter(|p| p["type"] != "row")
                .all(|p| p["targets"].as_array().is_some_and(|t| !t.is_empty())),
            "every panel queries something"
        );
        let families = all();
        let queried = dashboard_families(&dashboard, &families);
        let unknown: Vec<&String> = queried.difference(&families).collect();
        assert!(unknown.is_empty(), "not exposed by /metrics: {unknown:?}");
        for wanted in [
            "pgpilot_lease_seconds_left",
            "pgpilot_fence_seconds_left",
            "pgpilot_fence_armed",
            "pgpilot_fence_fired_total",
            "pgpilot_dcs_request_duration_seconds",
            "pgpilot_dcs_errors_total",
            "pgpilot_ha_decisions_total",
            "pgpilot_promotions_total",
            "pgpilot_jobs_total",
            "patroni_primary",
        ] {
            assert!(queried.contains(wanted), "the dashboard shows no {wanted}");
        }
    }
}
