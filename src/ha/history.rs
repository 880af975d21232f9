//! The `history` key (docs/dcs.md, "history") from a timeline history file.
//!
//! Pure: the elector reads `pg_wal/<TL>.history` and the clock, this module
//! turns them into the key's lines, as Patroni's `update_cluster_history`.

use crate::dcs::HistoryLine;
use crate::ha::lsn;

/// `pg_wal/<TL>.history` name of a timeline.
pub fn file_name(timeline: u64) -> String {
    format!("{timeline:08X}.history")
}

/// The lines of a timeline history file: `parentTLI<tab>switchpoint<tab>reason`.
/// Comments and malformed lines are skipped.
pub fn parse_file(text: &str) -> Vec<HistoryLine> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut parts = line.splitn(3, char::is_whitespace);
            let timeline = parts.next()?.trim().parse().ok()?;
            let lsn = lsn::parse(parts.next()?.trim())?;
            let reason = parts.next().unwrap_or_default().trim().to_owned();
            Some(HistoryLine {
                timeline,
                lsn,
                reason,
                timestamp: None,
                new_leader: None,
            })
        })
        .collect()
}

/// The new value of the key for a primary on `timeline`: the file's lines,
/// each keeping the timestamp and leader an existing line for the same
/// parent timeline had, and the newest one (parent `timeline - 1`) stamped
/// with `timestamp` and `me` unless the key already names someone for it.
/// `max_lines > 0` keeps only the newest `max_lines` lines.
pub fn build(
    file: Vec<HistoryLine>,
    existing: &[HistoryLine],
    timeline: u64,
    timestamp: &str,
    me: &str,
    max_lines: usize,
) -> Vec<HistoryLine> {
    let mut lines: Vec<HistoryLine> = file
        .into_iter()
        .map(|mut l| {
            if let Some(old) = existing.iter().find(|o| o.timeline == l.timeline) {
                l.timestamp = old.timestamp.clone();
                l.new_leader = old.new_leader.clone();
            }
            l
        })
        .collect();
    if let Some(last) = lines.last_mut()
        && last.timeline + 1 == timeline
        && last.new_leader.is_none()
    {
        last.timestamp = Some(timestamp.to_owned());
        last.new_leader = Some(me.to_owned());
    }
    if max_lines > 0 && lines.len() > max_lines {
        lines.drain(..lines.len() - max_lines);
    }
    lines
}

/// The key's JSON text (compact, as Patroni writes it).
pub fn to_json(lines: &[HistoryLine]) -> String {
    serde_json::Value::Array(lines.iter().map(HistoryLine::to_json_value).collect()).to_string()
}

/// ISO 8601 with a time zone (UTC), e.g. `2026-11-26T13:54:44.123456+00:00`.
pub fn iso8601_utc(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let utc = super::iso8601::Utc::from_unix(d.as_secs());
    format!("{}.{:06}+00:00", utc.format('T'), d.subsec_micros())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    const FILE: &str = "1\t0/3000060\tno recovery target specified\n\n2\t0/5000148\tno recovery target specified\n";

    #[test]
    fn parses_a_history_file() {
        let l = parse_file(FILE);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].timeline, l[0].lsn), (1, 0x3000060));
        assert_eq!(l[1].reason, "no recovery target specified");
        assert_eq!(file_name(3), "00000003.history");
        assert_eq!(file_name(26), "0000001A.history");
        assert!(parse_file("# comment\nbogus line\n").is_empty());
    }

    #[test]
    fn newest_line_gets_time_and_leader_older_ones_are_kept() {
        let existing = vec![HistoryLine {
            timeline: 1,
            lsn: 0x3000060,
            reason: "no recovery target specified".into(),
            timestamp: Some("2026-01-01T00:00:00+00:00".into()),
            new_leader: Some("node1".into()),
        }];
        let lines = build(parse_file(FILE), &existing, 3, "T", "node2", 0);
        assert_eq!(lines[0].new_leader.as_deref(), Some("node1"));
        assert_eq!(
            lines[0].timestamp.as_deref(),
            Some("2026-01-01T00:00:00+00:00")
        );
        assert_eq!(lines[1].new_leader.as_deref(), Some("node2"));
        assert_eq!(lines[1].timestamp.as_deref(), Some("T"));
        assert_eq!(
            to_json(&lines),
            r#"[[1,50331744,"no recovery target specified","2026-01-01T00:00:00+00:00","node1"],[2,83886408,"no recovery target specified","T","node2"]]"#
        );
        assert_eq!(build(parse_file(FILE), &[], 3, "T", "n", 1).len(), 1);
    }

    #[test]
    fn iso8601() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_250);
        assert_eq!(iso8601_utc(t), "2023-11-14T22:13:20.250000+00:00");
    }
}
