//! Names of logged events (`event = events::LOCK_ACQUIRED`), shared by the
//! emitting site and the tests that look for them: a renamed event then
//! breaks the build instead of turning a test's "this never happened"
//! check into one that can no longer fail.
//!
//! Only the events tests look for are here so far; the other emitting
//! sites still spell their names out, until the whole catalog (with one
//! counter per event) moves here.

/// One per HA cycle: the decision taken and why.
pub const DECISION: &str = "decision";
/// `ttl`, `loop_wait` or `retry_timeout` changed in the dynamic config.
pub const TIMING_CHANGED: &str = "timing_changed";
/// The dynamic config's timing breaks a rule and runs adjusted (WARN, one
/// per adjustment, Patroni's wording).
pub const TIMING_ADJUSTED: &str = "timing_adjusted";
/// At start: a node of this name answers at its member key's `api_url`;
/// the daemon exits (ERROR, `severity=CRITICAL`, Patroni's message).
pub const DUPLICATE_NAME: &str = "duplicate_name";
/// The leader wrote a lost or invalid config key back from its own copy.
pub const CONFIG_RESTORED: &str = "config_restored";
/// A reload (SIGHUP or `POST /reload`) found a configuration it cannot use.
pub const CONFIG_RELOAD_FAILED: &str = "config_reload_failed";
/// This node took the leader key.
pub const LOCK_ACQUIRED: &str = "lock_acquired";
/// This node gave the leader key up.
pub const LOCK_RELEASED: &str = "lock_released";
/// A PostgreSQL already running in the data directory was taken over.
pub const POSTGRES_ADOPTED: &str = "postgres_adopted";
/// pg_rewind is running.
pub const REWIND: &str = "rewind";
/// pg_rewind finished.
pub const REWIND_DONE: &str = "rewind_done";
/// A crash recovery run before pg_rewind (the cluster was not shut down
/// cleanly).
pub const REWIND_CRASH_RECOVERY: &str = "rewind_crash_recovery";
/// A replica creation method (basebackup or a custom one) started.
pub const REPLICA_METHOD_STARTED: &str = "replica_method_started";
/// The data directory was moved aside before a rebuild.
pub const DATA_DIR_MOVED_ASIDE: &str = "data_dir_moved_aside";
/// A moved-aside data directory was removed once the new one ran.
pub const OLD_DATA_DIR_REMOVED: &str = "old_data_dir_removed";
/// The supervisor started a PostgreSQL job.
pub const JOB_STARTED: &str = "job_started";
/// A running PostgreSQL job was cancelled.
pub const JOB_CANCELLED: &str = "job_cancelled";
/// A restarted daemon found its fence still running and kept it.
pub const FENCE_ADOPTED: &str = "fence_adopted";
/// A debug build's test seam stalled the HA cycle.
pub const DEBUG_STALL: &str = "debug_stall";
/// The watchdog device could not be used.
pub const WATCHDOG_UNAVAILABLE: &str = "watchdog_unavailable";
/// A REST request was refused (authentication, allowlist, size).
pub const API_ACCESS_REFUSED: &str = "api_access_refused";
/// A health check's `lag` parameter could not be parsed.
pub const API_LAG_UNPARSABLE: &str = "api_lag_unparsable";
/// The REST API serves a reloaded certificate.
pub const API_CERTIFICATE_RELOADED: &str = "api_certificate_reloaded";
/// The client TLS settings for peers' REST APIs could not be used.
pub const PEER_TLS_CONFIG_FAILED: &str = "peer_tls_config_failed";
/// A user callback script exited.
pub const CALLBACK_FINISHED: &str = "callback_finished";
/// A replica creation method filled the data directory.
pub const REPLICA_CREATED: &str = "replica_created";
/// A replica creation method failed; the next one is tried.
pub const REPLICA_METHOD_FAILED: &str = "replica_method_failed";
/// A custom bootstrap method created the cluster.
pub const BOOTSTRAP_METHOD_DONE: &str = "bootstrap_method_done";
/// initdb created the cluster.
pub const INITDB_DONE: &str = "initdb_done";
/// A daemon found the DCS session its predecessor on this data directory
/// held, and counts it as its own (docs/dcs.md, "A restarted daemon").
pub const SESSION_INHERITED: &str = "session_inherited";
