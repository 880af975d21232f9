//! A simulated PostgreSQL: a data directory holding a WAL as a hash chain
//! (one entry per acknowledged write, so two histories can be compared by
//! one entry), a timeline with the promotion that created it, and a
//! postmaster that is stopped, starting or answering as primary or standby.

use pgpilot::ha::PgRole;
use pgpilot::ha::sync_names::{StandbyNames, parse_standby_names};

/// Bytes of WAL per simulated write.
pub const WRITE_BYTES: u64 = 8192;

#[derive(Clone, Debug)]
pub struct Data {
    pub sysid: u64,
    /// pg_controldata says it last ran as a primary.
    pub was_primary: bool,
    /// `log[i]` = hash of entries `0..=i`.
    pub log: Vec<u64>,
    pub timeline: u64,
    /// The promotion (or bootstrap) that created `timeline` on this lineage.
    pub origin: u64,
}

impl Data {
    pub fn lsn(&self) -> u64 {
        self.log.len() as u64 * WRITE_BYTES
    }

    pub fn append(&mut self, id: u64) {
        let prev = self.log.last().copied().unwrap_or(self.sysid);
        self.log.push(mix(prev ^ id.rotate_left(17)));
    }
}

/// Whether one of `a`, `b` is a prefix of the other.
pub fn compatible(a: &[u64], b: &[u64]) -> bool {
    let n = a.len().min(b.len());
    n == 0 || a[n - 1] == b[n - 1]
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Debug, Default)]
pub struct Pg {
    pub data: Option<Data>,
    pub running: bool,
    /// Accepts queries (start finished).
    pub answering: bool,
    pub primary: bool,
    /// Standby: the member it streams from.
    pub following: Option<String>,
    /// `synchronous_standby_names` as the server runs it (kept in its
    /// configuration across restarts, as the file on disk is).
    pub sync_names: String,
    /// `sync_names` parsed once (it is read every tick).
    pub sync_parsed: StandbyNames,
}

impl Pg {
    pub fn role(&self) -> Option<PgRole> {
        (self.running && self.answering).then_some(if self.primary {
            PgRole::Primary
        } else {
            PgRole::Replica
        })
    }

    pub fn is_primary(&self) -> bool {
        self.role() == Some(PgRole::Primary)
    }

    /// Set `synchronous_standby_names` (a reload).
    pub fn set_sync_names(&mut self, value: &str) {
        if self.sync_names != value {
            self.sync_names = value.to_owned();
            self.sync_parsed = parse_standby_names(value).unwrap_or_default();
        }
    }

    pub fn stop(&mut self) {
        self.running = false;
        self.answering = false;
    }
}
