//! `pg_controldata`: what the data directory says about itself when the
//! server is not (or may not be) running.

use std::collections::BTreeMap;
use std::path::Path;

use tokio::process::Command;

use super::binaries::Binaries;
use super::command;
use super::error::{PgError, PgResult};
use super::lsn;

/// `Database cluster state` as printed by PostgreSQL 15.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbState {
    StartingUp,
    InProduction,
    ShutDown,
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    InArchiveRecovery,
    Other(String),
}

impl DbState {
    pub fn parse(text: &str) -> DbState {
        match text.trim() {
            "starting up" => DbState::StartingUp,
            "in production" => DbState::InProduction,
            "shut down" => DbState::ShutDown,
            "shut down in recovery" => DbState::ShutDownInRecovery,
            "shutting down" => DbState::ShuttingDown,
            "in crash recovery" => DbState::InCrashRecovery,
            "in archive recovery" => DbState::InArchiveRecovery,
            other => DbState::Other(other.to_owned()),
        }
    }

    /// Whether the cluster was last running as a primary (not in recovery).
    /// A crashed primary reads `in production`/`in crash recovery`; a standby
    /// reads `in archive recovery`/`shut down in recovery`.
    pub fn was_primary(&self) -> bool {
        matches!(
            self,
            DbState::InProduction
                | DbState::ShutDown
                | DbState::ShuttingDown
                | DbState::InCrashRecovery
        )
    }

    /// Whether the last shutdown was clean (no crash recovery needed).
    pub fn is_clean_shutdown(&self) -> bool {
        matches!(self, DbState::ShutDown | DbState::ShutDownInRecovery)
    }
}

/// The fields of `pg_controldata` pgpilot acts on. `raw` keeps every line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    pub system_identifier: String,
    pub state: DbState,
    /// `Latest checkpoint's TimeLineID`.
    pub timeline: u64,
    /// `Latest checkpoint's PrevTimeLineID`.
    pub prev_timeline: u64,
    pub checkpoint_lsn: u64,
    pub redo_lsn: u64,
    pub min_recovery_end_lsn: u64,
    /// `Min recovery ending loc's timeline`.
    pub min_recovery_end_timeline: u64,
    pub wal_level: String,
    pub wal_log_hints: bool,
    /// `Data page checksum version` is not 0.
    pub data_checksums: bool,
    pub max_connections: u64,
    pub max_worker_processes: u64,
    pub max_wal_senders: u64,
    pub max_prepared_xacts: u64,
    pub max_locks_per_xact: u64,
    pub track_commit_timestamp: bool,
    pub raw: BTreeMap<String, String>,
}

/// Parses `pg_controldata` output (run with `LANG=C`).
pub fn parse(text: &str) -> PgResult<ControlData> {
    let raw: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let get = |k: &str| {
        raw.get(k)
            .map(String::as_str)
            .ok_or_else(|| PgError::parse("pg_controldata output", format!("missing {k:?}")))
    };
    let num = |k: &str| -> PgResult<u64> {
        let v = get(k)?;
        v.parse()
            .map_err(|_| PgError::parse("pg_controldata output", format!("{k}: {v:?}")))
    };
    let lsn_of = |k: &str| -> PgResult<u64> { lsn::parse(get(k)?) };
    let on = |k: &str| -> PgResult<bool> { Ok(get(k)? == "on") };
    Ok(ControlData {
        system_identifier: get("Database system identifier")?.to_owned(),
        state: DbState::parse(get("Database cluster state")?),
        timeline: num("Latest checkpoint's TimeLineID")?,
        prev_timeline: num("Latest checkpoint's PrevTimeLineID")?,
        checkpoint_lsn: lsn_of("Latest checkpoint location")?,
        redo_lsn: lsn_of("Latest checkpoint's REDO location")?,
        min_recovery_end_lsn: lsn_of("Minimum recovery ending location")?,
        min_recovery_end_timeline: num("Min recovery ending loc's timeline")?,
        wal_level: get("wal_level setting")?.to_owned(),
        wal_log_hints: on("wal_log_hints setting")?,
        data_checksums: num("Data page checksum version")? != 0,
        max_connections: num("max_connections setting")?,
        max_worker_processes: num("max_worker_processes setting")?,
        max_wal_senders: num("max_wal_senders setting")?,
        max_prepared_xacts: num("max_prepared_xacts setting")?,
        max_locks_per_xact: num("max_locks_per_xact setting")?,
        track_commit_timestamp: on("track_commit_timestamp setting")?,
        raw,
    })
}

/// Runs `pg_controldata <data_dir>` with `LANG=C`/`LC_ALL=C` (the labels are
/// translated otherwise) and parses it.
pub async fn read(bins: &Binaries, data_dir: &Path) -> PgResult<ControlData> {
    let mut cmd = Command::new(bins.pg_controldata());
    cmd.arg(data_dir).env("LANG", "C").env("LC_ALL", "C");
    let out = command::run(cmd).await?;
    parse(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of PostgreSQL 15.18 `pg_controldata` right after
    /// `initdb -k`, with two values edited to be distinguishable.
    pub const SAMPLE: &str = "\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7712468329944636538
Database cluster state:               in archive recovery
pg_control last modified:             Thu Nov 26 13:16:05 2026
Latest checkpoint location:           0/17414F8
Latest checkpoint's REDO location:    0/17414C0
Latest checkpoint's REDO WAL file:    000000010000000000000001
Latest checkpoint's TimeLineID:       3
Latest checkpoint's PrevTimeLineID:   2
Latest checkpoint's full_page_writes: on
Latest checkpoint's NextXID:          0:724
Latest checkpoint's NextOID:          13572
Latest checkpoint's NextMultiXactId:  1
Latest checkpoint's NextMultiOffset:  0
Latest checkpoint's oldestXID:        716
Latest checkpoint's oldestXID's DB:   1
Latest checkpoint's oldestActiveXID:  0
Latest checkpoint's oldestMultiXid:   1
Latest checkpoint's oldestMulti's DB: 1
Latest checkpoint's oldestCommitTsXid:0
Latest checkpoint's newestCommitTsXid:0
Time of latest checkpoint:            Thu Nov 26 13:16:05 2026
Fake LSN counter for unlogged rels:   0/3E8
Minimum recovery ending location:     1/A0
Min recovery ending loc's timeline:   3
Backup start location:                0/0
Backup end location:                  0/0
End-of-backup record required:        no
wal_level setting:                    replica
wal_log_hints setting:                off
max_connections setting:              100
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
track_commit_timestamp setting:       off
Maximum data alignment:               8
Database block size:                  8192
Blocks per segment of large relation: 131072
WAL block size:                       8192
Bytes per WAL segment:                16777216
Maximum length of identifiers:        64
Maximum columns in an index:          32
Maximum size of a TOAST chunk:        1996
Size of a large-object chunk:         2048
Date/time type storage:               64-bit integers
Float8 argument passing:              by value
Data page checksum version:           1
Mock authentication nonce:            b674cee4dda84677c6921397f48daa4a8e4523a1ff1a3f939967b518eca89a5a
";

    #[test]
    fn parses_real_sample() {
        let c = parse(SAMPLE).unwrap();
        assert_eq!(c.system_identifier, "7712468329944636538");
        assert_eq!(c.state, DbState::InArchiveRecovery);
        assert!(!c.state.was_primary());
        assert_eq!(c.timeline, 3);
        assert_eq!(c.prev_timeline, 2);
        assert_eq!(c.checkpoint_lsn, 0x17414F8);
        assert_eq!(c.redo_lsn, 0x17414C0);
        assert_eq!(c.min_recovery_end_lsn, (1 << 32) | 0xA0);
        assert_eq!(c.min_recovery_end_timeline, 3);
        assert_eq!(c.wal_level, "replica");
        assert!(!c.wal_log_hints);
        assert!(c.data_checksums);
        assert_eq!(c.max_connections, 100);
        assert_eq!(c.max_worker_processes, 8);
        assert_eq!(c.max_wal_senders, 10);
        assert_eq!(c.max_prepared_xacts, 0);
        assert_eq!(c.max_locks_per_xact, 64);
        assert!(!c.track_commit_timestamp);
        assert_eq!(c.raw["Bytes per WAL segment"], "16777216");
        // The "oldestCommitTsXid:0" line has no space after the colon.
        assert_eq!(c.raw["Latest checkpoint's oldestCommitTsXid"], "0");
    }

    #[test]
    fn states() {
        assert_eq!(DbState::parse("shut down"), DbState::ShutDown);
        assert_eq!(
            DbState::parse("shut down in recovery"),
            DbState::ShutDownInRecovery
        );
        assert!(DbState::ShutDown.was_primary());
        assert!(DbState::InProduction.was_primary());
        assert!(DbState::InCrashRecovery.was_primary());
        assert!(!DbState::ShutDownInRecovery.was_primary());
        assert!(DbState::ShutDownInRecovery.is_clean_shutdown());
        assert!(!DbState::InProduction.is_clean_shutdown());
        assert_eq!(DbState::parse("weird"), DbState::Other("weird".into()));
    }

    #[test]
    fn missing_field_is_error() {
        let text = SAMPLE.replace("Database cluster state", "Something else");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("Database cluster state"), "{err}");
    }
}
