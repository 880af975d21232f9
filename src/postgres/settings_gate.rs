//! When the HA loop's status reads `pg_settings` for the pending-restart
//! flag (docs/configuration.md §9.2). Pure: the caller passes the time.
//!
//! Patroni reads `pg_settings` once, a second after each reload it sends,
//! and forgets the flag when PostgreSQL starts. Reading it every HA cycle
//! (as pgpilot did) costs a parse, a bind and a close on every cycle for an
//! answer that only a start or a reload can change. The gate reads:
//! - after every PostgreSQL start (a new postmaster start time);
//! - on every cycle for [`SETTLE`] after pgpilot rewrote the configuration
//!   (PostgreSQL applies a SIGHUP asynchronously, so one read right after
//!   the reload may still see the old state);
//! - at least every [`RECHECK`] otherwise, so a reload pgpilot did not send
//!   (an operator's `pg_ctl reload`) shows up too, which Patroni misses.

use std::time::{Duration, Instant};

/// How long after a configuration change every status reads the settings.
pub const SETTLE: Duration = Duration::from_secs(5);

/// The longest a successful read is trusted without a change seen.
pub const RECHECK: Duration = Duration::from_secs(60);

/// The last successful read: what it was read against.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Read {
    start_time: String,
    generation: u64,
    at: Instant,
}

/// Tracks configuration changes and the last read of `pg_settings`.
#[derive(Debug, Clone, Default)]
pub struct SettingsGate {
    /// Bumped by every rewrite of the configuration files.
    generation: u64,
    /// When `generation` last moved.
    changed_at: Option<Instant>,
    last: Option<Read>,
}

impl SettingsGate {
    /// pgpilot rewrote the configuration (and reloads or starts with it).
    pub fn config_changed(&mut self, now: Instant) {
        self.generation = self.generation.wrapping_add(1);
        self.changed_at = Some(now);
    }

    /// Whether a status of the server started at `start_time` reads the
    /// settings now.
    pub fn due(&self, start_time: &str, now: Instant) -> bool {
        let Some(last) = &self.last else { return true };
        let settling = self
            .changed_at
            .is_some_and(|t| now.saturating_duration_since(t) < SETTLE);
        last.start_time != start_time
            || last.generation != self.generation
            || settling
            || now.saturating_duration_since(last.at) >= RECHECK
    }

    /// A read against `start_time` succeeded at `now`, under the
    /// configuration generation `generation` (the one [`Self::generation`]
    /// gave when the read began: a change during the read makes the next
    /// status read again).
    pub fn read(&mut self, start_time: String, generation: u64, now: Instant) {
        self.last = Some(Read {
            start_time,
            generation,
            at: now,
        });
    }

    /// The current configuration generation, to pass back to [`Self::read`].
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_at(g: &mut SettingsGate, start: &str, now: Instant) {
        let gen_ = g.generation();
        g.read(start.to_owned(), gen_, now);
    }

    #[test]
    fn first_status_reads() {
        assert!(SettingsGate::default().due("t0", Instant::now()));
    }

    #[test]
    fn unchanged_server_is_not_read_again_until_the_recheck() {
        let t = Instant::now();
        let mut g = SettingsGate::default();
        read_at(&mut g, "t0", t);
        assert!(!g.due("t0", t + Duration::from_secs(1)));
        assert!(!g.due("t0", t + RECHECK - Duration::from_millis(1)));
        assert!(g.due("t0", t + RECHECK));
    }

    #[test]
    fn a_restart_reads_at_once() {
        let t = Instant::now();
        let mut g = SettingsGate::default();
        read_at(&mut g, "t0", t);
        assert!(g.due("t1", t + Duration::from_secs(1)));
    }

    #[test]
    fn a_config_change_reads_every_status_while_it_settles() {
        let t = Instant::now();
        let mut g = SettingsGate::default();
        read_at(&mut g, "t0", t);
        g.config_changed(t + Duration::from_secs(10));
        assert!(g.due("t0", t + Duration::from_secs(10)));
        // A read right after the reload does not end the settling time:
        // PostgreSQL may not have applied the SIGHUP yet.
        read_at(&mut g, "t0", t + Duration::from_secs(11));
        assert!(g.due("t0", t + Duration::from_secs(12)));
        assert!(g.due(
            "t0",
            t + Duration::from_secs(10) + SETTLE - Duration::from_millis(1)
        ));
        assert!(!g.due("t0", t + Duration::from_secs(10) + SETTLE));
    }

    #[test]
    fn a_change_during_a_read_is_read_again() {
        let t = Instant::now();
        let mut g = SettingsGate::default();
        let before = g.generation();
        g.config_changed(t);
        g.read("t0".into(), before, t + SETTLE + Duration::from_secs(1));
        assert!(g.due("t0", t + SETTLE + Duration::from_secs(2)));
    }
}
