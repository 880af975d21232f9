//! `pgpilotctl history`: the `history` key as patronictl prints it.

use serde_json::{Map, Value};

use crate::dcs::HistoryLine;

pub const HEADERS: [&str; 5] = ["TL", "LSN", "Reason", "Timestamp", "New Leader"];

/// One JSON object per line, keyed by the column titles (patronictl's
/// `-f json`).
pub fn rows(history: &[HistoryLine]) -> Vec<Value> {
    history
        .iter()
        .map(|h| {
            let mut m = Map::new();
            m.insert("TL".into(), Value::from(h.timeline));
            m.insert("LSN".into(), Value::from(h.lsn));
            m.insert("Reason".into(), Value::from(h.reason.clone()));
            m.insert(
                "Timestamp".into(),
                h.timestamp.clone().map(Value::from).unwrap_or(Value::Null),
            );
            m.insert(
                "New Leader".into(),
                h.new_leader.clone().map(Value::from).unwrap_or(Value::Null),
            );
            Value::Object(m)
        })
        .collect()
}

/// Text cells for the table / tsv output.
pub fn cells(history: &[HistoryLine]) -> Vec<Vec<String>> {
    history
        .iter()
        .map(|h| {
            vec![
                h.timeline.to_string(),
                h.lsn.to_string(),
                h.reason.clone(),
                h.timestamp.clone().unwrap_or_default(),
                h.new_leader.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rows_use_column_titles() {
        let h = vec![HistoryLine {
            timeline: 1,
            lsn: 50331808,
            reason: "no recovery target specified".into(),
            timestamp: Some("2026-01-01T00:00:00+00:00".into()),
            new_leader: Some("node1".into()),
        }];
        let r = rows(&h);
        assert_eq!(r[0]["TL"], 1);
        assert_eq!(r[0]["New Leader"], "node1");
        assert_eq!(cells(&h)[0][1], "50331808");
    }
}
