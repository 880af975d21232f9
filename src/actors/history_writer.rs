//! Publishing the `history` key (docs/dcs.md, "history") after a promotion.
//!
//! The rule (when) is in [`crate::ha::decide`]; this reads the timeline
//! history file of the primary's timeline and writes the key.

use std::path::Path;

use tracing::{info, warn};

use crate::config::{Config, DynamicConfig};
use crate::dcs::{Cluster, Dcs};
use crate::ha::history;
use crate::messages::supervisor::PgStatus;

/// Write `history` from `pg_wal/<TL>.history`, keeping what the existing
/// key says about older timelines. Failures are logged; the next cycle
/// decides again.
pub async fn write(
    cfg: &Config,
    dynamic: &DynamicConfig,
    dcs: &dyn Dcs,
    cluster: &Cluster,
    pg: &PgStatus,
) {
    let Some(tl) = pg.facts.timeline else { return };
    let existing = cluster.history.clone().unwrap_or_default();
    let lines = if tl <= 1 {
        Vec::new()
    } else {
        let path = Path::new(&cfg.postgresql.data_dir)
            .join("pg_wal")
            .join(history::file_name(tl));
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                warn!(event = crate::events::HISTORY_UNREADABLE, path = %path.display(), error = %e);
                return;
            }
        };
        // Patroni stamps the newest line with the file's modification time:
        // when the promotion happened, not when the key was written.
        let when = tokio::fs::metadata(&path)
            .await
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| std::time::SystemTime::now());
        let max = dynamic
            .raw
            .get("max_timelines_history")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        history::build(
            history::parse_file(&text),
            &existing,
            tl,
            &history::iso8601_utc(when),
            &cfg.name,
            usize::try_from(max).unwrap_or(0),
        )
    };
    let value = history::to_json(&lines);
    match dcs.set_history_value(&value).await {
        Ok(_) => info!(event = crate::events::HISTORY_WRITTEN, timeline = tl, history = %value),
        Err(e) => warn!(event = crate::events::HISTORY_WRITE_FAILED, error = %e),
    }
}
