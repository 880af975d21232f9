//! TEMPORARY shim until the config branch lands (replaced on merge).
use super::types::*;
use std::time::Duration;
impl DynamicConfig {
    pub fn defaults() -> DynamicConfig {
        DynamicConfig {
            timing: Timing::default(),
            maximum_lag_on_failover: 1 << 20,
            use_slots: true,
            use_pg_rewind: false,
            parameters: Default::default(),
            pause: false,
            raw: serde_json::json!({}),
        }
    }
    pub fn from_json(v: &serde_json::Value) -> Result<DynamicConfig, String> {
        let mut d = Self::defaults();
        let f = |k: &str, dflt: Duration| {
            v.get(k)
                .and_then(|x| x.as_f64())
                .map(Duration::from_secs_f64)
                .unwrap_or(dflt)
        };
        d.timing = Timing {
            ttl: f("ttl", d.timing.ttl),
            loop_wait: f("loop_wait", d.timing.loop_wait),
            retry_timeout: f("retry_timeout", d.timing.retry_timeout),
        };
        d.raw = v.clone();
        Ok(d)
    }
}
