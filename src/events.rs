//! The catalog of logged event names: every `event = ...` field the daemon
//! logs names one of these constants (`event = crate::events::LOCK_ACQUIRED`),
//! and the tests that look for an event use the same constant: a renamed
//! event then breaks the build instead of turning a test's "this never
//! happened" check into one that can no longer fail.
//!
//! The values are part of the interface: they appear in the logs and as
//! the `event` label of the `pgpilot_events_total` counter
//! (`src/telemetry.rs`), so they never change once released. [`ALL`] lists
//! them; a unit test checks they are unique and snake_case, and
//! `tests/doc_citations.rs` that no site under `src/` spells an event name
//! as a string literal.

// ---- Daemon: start, signals, systemd, shutdown ----

/// The daemon started: its name, scope, DCS endpoints and REST address.
pub const STARTING: &str = "starting";
/// The daemon could not start; it exits with status 1.
pub const STARTUP_FAILED: &str = "startup_failed";
/// At start: a node of this name answers at its member key's `api_url`;
/// the daemon exits (ERROR, `severity=CRITICAL`, Patroni's message).
pub const DUPLICATE_NAME: &str = "duplicate_name";
/// The duplicate-name check at start was skipped (the DCS cannot be read, or a debug test seam).
pub const UNIQUE_NAME_UNCHECKED: &str = "unique_name_unchecked";
/// A signal (SIGTERM, SIGINT or SIGHUP) arrived.
pub const SIGNAL: &str = "signal";
/// A notification was sent to systemd (`READY=1` at start, logged at info; `RELOADING=1`, `READY=1` and `STOPPING=1` around a reload or a stop, at debug).
pub const SD_NOTIFY: &str = "sd_notify";
/// A notification to systemd could not be sent.
pub const SD_NOTIFY_FAILED: &str = "sd_notify_failed";
/// The daemon is shutting down (PostgreSQL stopped, or left running when paused).
pub const SHUTDOWN: &str = "shutdown";
/// Unrecoverable: the daemon stops; PostgreSQL and the data directory stay as they are.
pub const FATAL: &str = "fatal";
/// The PostgreSQL supervisor did not answer; the HA cycle is abandoned.
pub const SUPERVISOR_UNAVAILABLE: &str = "supervisor_unavailable";
/// A debug build's test seam stalled the HA cycle.
pub const DEBUG_STALL: &str = "debug_stall";

// ---- HA loop: decisions, actions, leader key ----

/// One per HA cycle: the decision taken and why.
pub const DECISION: &str = "decision";
/// A line Patroni logs before its cycle summary, in its words: `Lock
/// owner: X; I am Y`, a peer ahead or of higher priority in the race.
pub const CYCLE_NOTE: &str = "cycle_note";
/// An action of the HA cycle failed; the rest of the cycle's actions are skipped.
pub const ACTION_FAILED: &str = "action_failed";
/// A PostgreSQL job reported its outcome to the HA loop.
pub const JOB_FINISHED: &str = "job_finished";
/// This node took the leader key.
pub const LOCK_ACQUIRED: &str = "lock_acquired";
/// This node gave the leader key up.
pub const LOCK_RELEASED: &str = "lock_released";
/// A release found no leader key under this process's session (none, or a
/// key of this node's name another process holds): nothing was deleted.
pub const LOCK_NOT_MINE: &str = "lock_not_mine";
/// The leader key is no longer this node's (its update was refused).
pub const LOCK_LOST: &str = "lock_lost";
/// Another node took the leader key first.
pub const LOCK_LOST_RACE: &str = "lock_lost_race";
/// The leader key could not be given up at shutdown.
pub const LOCK_RELEASE_FAILED: &str = "lock_release_failed";
/// This node won the race for the initialize key and bootstraps the cluster.
pub const INITIALIZE_TAKEN: &str = "initialize_taken";
/// Another node holds the initialize key and bootstraps the cluster.
pub const INITIALIZE_LOST: &str = "initialize_lost";
/// A failed bootstrap gave the initialize key back.
pub const INITIALIZE_RELEASED: &str = "initialize_released";
/// The bootstrapped cluster's system identifier was written to the initialize key.
pub const BOOTSTRAP_PUBLISHED: &str = "bootstrap_published";
/// PostgreSQL is being promoted.
pub const PROMOTE: &str = "promote";
/// PostgreSQL is being demoted (stopped so it accepts no more writes, or a graceful switchover).
pub const DEMOTE: &str = "demote";
/// PostgreSQL is (re)configured to follow a leader.
pub const FOLLOW: &str = "follow";
/// The failover key was deleted once its switchover took place.
pub const FAILOVER_KEY_CLEARED: &str = "failover_key_cleared";
/// The failover key changed meanwhile and was left in place.
pub const FAILOVER_KEY_CHANGED: &str = "failover_key_changed";
/// The failover key could not be deleted.
pub const FAILOVER_KEY_CLEAR_FAILED: &str = "failover_key_clear_failed";
/// The leader's status key (`/status`: LSN, slots) could not be written.
pub const STATUS_WRITE_FAILED: &str = "status_write_failed";
/// This node's member key could not be written.
pub const MEMBER_UPDATE_FAILED: &str = "member_update_failed";

// ---- Failsafe mode ----

/// The leader wrote the `sync` key (its standbys; docs/replication-modes.md).
pub const SYNC_KEY_WRITTEN: &str = "sync_key_written";
/// The leader deleted the `sync` key (synchronous mode turned off).
pub const SYNC_KEY_DELETED: &str = "sync_key_deleted";
/// A write of the `sync` key lost its compare-and-swap or failed.
pub const SYNC_KEY_WRITE_FAILED: &str = "sync_key_write_failed";
/// `synchronous_standby_names` was set (its new value) and reloaded.
pub const SYNC_STANDBY_NAMES_SET: &str = "sync_standby_names_set";
/// `synchronous_standby_names` could not be set.
pub const SYNC_STANDBY_NAMES_FAILED: &str = "sync_standby_names_failed";
/// A synchronous standby shutting down asked the primary to release it
/// (`released`: the sync key no longer lists it).
pub const SYNC_DUTY_RELEASE: &str = "sync_duty_release";

/// Failsafe mode turned on or off (`active`).
pub const FAILSAFE_MODE_ACTIVE: &str = "failsafe_mode_active";
/// A leader without DCS access confirmed it runs; this node does not race for the key.
pub const FAILSAFE_HEARTBEAT: &str = "failsafe_heartbeat";
/// The leader wrote the failsafe key (the members it knows).
pub const FAILSAFE_WRITTEN: &str = "failsafe_written";
/// The failsafe key could not be written.
pub const FAILSAFE_WRITE_FAILED: &str = "failsafe_write_failed";
/// A member's `api_url` cannot be used for the failsafe check.
pub const FAILSAFE_BAD_API_URL: &str = "failsafe_bad_api_url";
/// A member acknowledged the failsafe heartbeat.
pub const FAILSAFE_ACK: &str = "failsafe_ack";
/// A member refused the failsafe heartbeat.
pub const FAILSAFE_REFUSED: &str = "failsafe_refused";
/// A member could not be reached for the failsafe heartbeat.
pub const FAILSAFE_UNREACHABLE: &str = "failsafe_unreachable";

// ---- DCS: sessions, leases, watches ----

/// The DCS could not be read this cycle; the next cycle retries.
pub const DCS_UNREACHABLE: &str = "dcs_unreachable";
/// A daemon found the DCS session its predecessor on this data directory
/// held, and counts it as its own (docs/dcs.md, "A restarted daemon").
pub const SESSION_INHERITED: &str = "session_inherited";
/// The DCS session could not be released at shutdown.
pub const SESSION_RELEASE_FAILED: &str = "session_release_failed";
/// The file that keeps the DCS session across restarts could not be written.
pub const SESSION_FILE_FAILED: &str = "session_file_failed";
/// The lease is gone; the next cycle decides.
pub const LEASE_KEEPALIVE_LOST: &str = "lease_keepalive_lost";
/// A lease keepalive failed; it is retried.
pub const LEASE_KEEPALIVE_FAILED: &str = "lease_keepalive_failed";
/// ZooKeeper granted a session timeout other than `ttl` (both logged, once):
/// the lease and the fence use the granted one.
pub const DCS_SESSION_TIMEOUT_NEGOTIATED: &str = "dcs_session_timeout_negotiated";
/// Consul's agent refused or did not answer the member's service
/// registration (`register_service`); sent again at the next cycle.
pub const DCS_SERVICE_REGISTRATION_FAILED: &str = "dcs_service_registration_failed";
/// A DCS value pgpilot cannot read (another tool wrote it): named, ignored.
pub const DCS_VALUE_UNREADABLE: &str = "dcs_value_unreadable";
/// Exhibitor listed other ZooKeeper servers (old and new logged): the
/// sessions move onto them (docs/dcs.md, "Exhibitor").
pub const EXHIBITOR_SERVERS_CHANGED: &str = "exhibitor_servers_changed";
/// No Exhibitor host gave a server list; asked again shortly.
pub const EXHIBITOR_UNREACHABLE: &str = "exhibitor_unreachable";
/// The node's ZooKeeper session moved onto Exhibitor's new server list.
pub const EXHIBITOR_SESSION_MOVED: &str = "exhibitor_session_moved";
/// The session could not be moved onto the new list: it stays on its old
/// servers (tried once per list).
pub const EXHIBITOR_REATTACH_FAILED: &str = "exhibitor_reattach_failed";
/// The DCS watch broke; the watcher stops and a new one starts.
pub const WATCH_LOST: &str = "watch_lost";
/// The DCS watch stream ended.
pub const WATCH_ENDED: &str = "watch_ended";
/// The timeline history was written to the history key.
pub const HISTORY_WRITTEN: &str = "history_written";
/// The timeline history could not be written to the history key.
pub const HISTORY_WRITE_FAILED: &str = "history_write_failed";
/// A timeline history file could not be read.
pub const HISTORY_UNREADABLE: &str = "history_unreadable";

// ---- Configuration: local file and dynamic config ----

/// The configuration file holds something ignored or suspicious (one per warning).
pub const CONFIG_WARNING: &str = "config_warning";
/// The configuration was reloaded (`changed` says whether it differs).
pub const CONFIG_RELOADED: &str = "config_reloaded";
/// A reload (SIGHUP or `POST /reload`) found a configuration it cannot use.
pub const CONFIG_RELOAD_FAILED: &str = "config_reload_failed";
/// A reload changed name or scope, which need a restart; the rest applies.
pub const CONFIG_RELOAD_PARTIAL: &str = "config_reload_partial";
/// A SIGHUP reload was refused (the new configuration cannot be used).
pub const RELOAD_REFUSED: &str = "reload_refused";
/// A SIGHUP reload could not reach the configuration manager.
pub const RELOAD_FAILED: &str = "reload_failed";
/// `ttl`, `loop_wait` or `retry_timeout` changed in the dynamic config.
pub const TIMING_CHANGED: &str = "timing_changed";
/// The dynamic config's timing breaks a rule and runs adjusted (WARN, one
/// per adjustment, Patroni's wording).
pub const TIMING_ADJUSTED: &str = "timing_adjusted";
/// The dynamic config in the DCS cannot be used; the previous one is kept.
pub const BAD_DYNAMIC_CONFIG: &str = "bad_dynamic_config";
/// The dynamic config was saved to `patroni.dynamic.json`.
pub const DYNAMIC_CONFIG_SAVED: &str = "dynamic_config_saved";
/// The dynamic config could not be saved to `patroni.dynamic.json`.
pub const DYNAMIC_CONFIG_SAVE_FAILED: &str = "dynamic_config_save_failed";
/// A `PATCH`/`PUT /config` wrote the dynamic config.
pub const DYNAMIC_CONFIG_WRITTEN: &str = "dynamic_config_written";
/// A `PATCH`/`PUT /config` was refused.
pub const DYNAMIC_CONFIG_REFUSED: &str = "dynamic_config_refused";
/// The leader wrote a lost or invalid config key back from its own copy.
pub const CONFIG_RESTORED: &str = "config_restored";
/// The config key could not be restored from the local copy.
pub const CONFIG_RESTORE_FAILED: &str = "config_restore_failed";
/// A PostgreSQL parameter was adjusted to a value this node can run with.
pub const PARAMETER_ADJUSTED: &str = "parameter_adjusted";

// ---- PostgreSQL: process, status, restarts ----

/// PostgreSQL was started (`standby` says as what).
pub const POSTGRES_STARTED: &str = "postgres_started";
/// PostgreSQL was stopped.
pub const POSTGRES_STOPPED: &str = "postgres_stopped";
/// The postmaster exited without being asked to.
pub const POSTGRES_EXITED: &str = "postgres_exited";
/// A PostgreSQL already running in the data directory was taken over.
pub const POSTGRES_ADOPTED: &str = "postgres_adopted";
/// The start as primary was given up.
pub const START_CANCELLED: &str = "start_cancelled";
/// postgresql.conf was rewritten and reloaded.
pub const CONFIG_APPLIED: &str = "config_applied";
/// postgresql.conf could not be rewritten or reloaded.
pub const CONFIG_APPLY_FAILED: &str = "config_apply_failed";
/// The status connection to PostgreSQL was opened.
pub const STATUS_SESSION_OPENED: &str = "status_session_opened";
/// The status connection to PostgreSQL could not be opened.
pub const STATUS_CONNECT_FAILED: &str = "status_connect_failed";
/// The status query failed; PostgreSQL's state is unknown this time.
pub const STATUS_QUERY_FAILED: &str = "status_query_failed";
/// The query for parameters pending a restart failed.
pub const PENDING_RESTART_QUERY_FAILED: &str = "pending_restart_query_failed";
/// The checkpoint after a promotion ran.
pub const CHECKPOINT_AFTER_PROMOTE: &str = "checkpoint_after_promote";
/// The checkpoint after a promotion failed; the promotion stands.
pub const CHECKPOINT_AFTER_PROMOTE_FAILED: &str = "checkpoint_after_promote_failed";
/// The checkpoint before a switchover's stop ran.
pub const CHECKPOINT_BEFORE_SWITCHOVER: &str = "checkpoint_before_switchover";
/// The checkpoint before a switchover's stop failed.
pub const CHECKPOINT_BEFORE_SWITCHOVER_FAILED: &str = "checkpoint_before_switchover_failed";
/// PostgreSQL is being restarted.
pub const RESTART: &str = "restart";
/// A restart of PostgreSQL failed.
pub const RESTART_FAILED: &str = "restart_failed";
/// A `POST /restart` was refused: its conditions are not met.
pub const RESTART_REFUSED: &str = "restart_refused";
/// A restart was scheduled.
pub const RESTART_SCHEDULED: &str = "restart_scheduled";
/// A scheduled restart's time came.
pub const SCHEDULED_RESTART_DUE: &str = "scheduled_restart_due";
/// A scheduled restart ran.
pub const SCHEDULED_RESTART_DONE: &str = "scheduled_restart_done";
/// A scheduled restart was dropped (too late, or its conditions are not met).
pub const SCHEDULED_RESTART_DROPPED: &str = "scheduled_restart_dropped";
/// A scheduled restart was deleted.
pub const SCHEDULED_RESTART_DELETED: &str = "scheduled_restart_deleted";

// ---- PostgreSQL jobs: bootstrap, replicas, rewind ----

/// The supervisor started a PostgreSQL job.
pub const JOB_STARTED: &str = "job_started";
/// A PostgreSQL job failed.
pub const JOB_FAILED: &str = "job_failed";
/// A running PostgreSQL job was cancelled.
pub const JOB_CANCELLED: &str = "job_cancelled";
/// initdb created the cluster.
pub const INITDB_DONE: &str = "initdb_done";
/// The `post_init` script runs after a bootstrap.
pub const POST_INIT: &str = "post_init";
/// A custom bootstrap method started.
pub const BOOTSTRAP_METHOD_STARTED: &str = "bootstrap_method_started";
/// A custom bootstrap method created the cluster.
pub const BOOTSTRAP_METHOD_DONE: &str = "bootstrap_method_done";
/// A custom bootstrap's `recovery_conf` was ignored (not supported).
pub const BOOTSTRAP_RECOVERY_CONF_IGNORED: &str = "bootstrap_recovery_conf_ignored";
/// A replica creation method (basebackup or a custom one) started.
pub const REPLICA_METHOD_STARTED: &str = "replica_method_started";
/// A replica creation method filled the data directory.
pub const REPLICA_CREATED: &str = "replica_created";
/// A replica creation method failed; the next one is tried.
pub const REPLICA_METHOD_FAILED: &str = "replica_method_failed";
/// One line of a bootstrap or replica method's output.
pub const METHOD_OUTPUT: &str = "method_output";
/// A reinitialize (rebuild from the leader) was requested.
pub const REINITIALIZE_REQUESTED: &str = "reinitialize_requested";
/// The data directory was moved aside before a rebuild.
pub const DATA_DIR_MOVED_ASIDE: &str = "data_dir_moved_aside";
/// The data directory could not be moved aside after a failed bootstrap.
pub const DATA_DIR_MOVE_FAILED: &str = "data_dir_move_failed";
/// What a failed replica method left in the data directory was removed.
pub const DATA_DIR_REMOVED: &str = "data_dir_removed";
/// A moved-aside data directory was removed once the new one ran.
pub const OLD_DATA_DIR_REMOVED: &str = "old_data_dir_removed";
/// A moved-aside data directory could not be removed.
pub const OLD_DATA_DIR_REMOVE_FAILED: &str = "old_data_dir_remove_failed";
/// pg_rewind is running.
pub const REWIND: &str = "rewind";
/// One line of pg_rewind's (or its crash recovery's) output.
pub const REWIND_OUTPUT: &str = "rewind_output";
/// pg_rewind finished.
pub const REWIND_DONE: &str = "rewind_done";
/// A crash recovery run before pg_rewind (the cluster was not shut down
/// cleanly).
pub const REWIND_CRASH_RECOVERY: &str = "rewind_crash_recovery";

// ---- Replication slots ----

/// A replication slot was created.
pub const SLOT_CREATED: &str = "slot_created";
/// A replication slot could not be created.
pub const SLOT_CREATE_FAILED: &str = "slot_create_failed";
/// A replication slot was dropped.
pub const SLOT_DROPPED: &str = "slot_dropped";
/// A replication slot could not be dropped.
pub const SLOT_DROP_FAILED: &str = "slot_drop_failed";
/// A slot to drop is in use; the next cycle retries.
pub const SLOT_DROP_DEFERRED: &str = "slot_drop_deferred";
/// A replica's copy of a slot was advanced.
pub const SLOT_ADVANCED: &str = "slot_advanced";
/// A replica's copy of a slot could not be advanced.
pub const SLOT_ADVANCE_FAILED: &str = "slot_advance_failed";
/// Slots still to be copied from the leader.
pub const SLOT_COPY_PENDING: &str = "slot_copy_pending";
/// Logical slots read from the leader are being copied: PostgreSQL is
/// restarted with their state files (docs/ha.md §13.1).
pub const SLOT_COPY: &str = "slot_copy";
/// A logical slot's state file was written into `pg_replslot`.
pub const SLOT_COPIED: &str = "slot_copied";
/// Reading or writing a logical slot for a copy failed.
pub const SLOT_COPY_FAILED: &str = "slot_copy_failed";
/// The leader's slot of an expected name has another kind, database or
/// plugin: not copied.
pub const SLOT_COPY_MISMATCH: &str = "slot_copy_mismatch";
/// A copied logical slot is safe to use after a failover (its catalog rows
/// are protected on the leader).
pub const LOGICAL_SLOT_READY: &str = "logical_slot_ready";
/// The readiness of copied logical slots cannot be checked (no physical
/// slot on the leader, or no `catalog_xmin` on it: feedback is off).
pub const LOGICAL_SLOT_CHECK_FAILED: &str = "logical_slot_check_failed";
/// Promoted while copied logical slots were not known to be safe.
pub const LOGICAL_SLOTS_UNSAFE: &str = "logical_slots_unsafe";
/// `hot_standby_feedback` is forced on (or no longer) for logical slots.
pub const HOT_STANDBY_FEEDBACK_FORCED: &str = "hot_standby_feedback_forced";
/// The slot synchronisation of this cycle failed.
pub const SLOT_SYNC_FAILED: &str = "slot_sync_failed";

// ---- Fence and watchdog ----

/// The fence's heartbeat changed (armed or paused).
pub const FENCE: &str = "fence";
/// The fence process was launched.
pub const FENCE_STARTED: &str = "fence_started";
/// A restarted daemon found its fence still running and kept it.
pub const FENCE_ADOPTED: &str = "fence_adopted";
/// The fence process exited when told to.
pub const FENCE_EXITED: &str = "fence_exited";
/// The fence did not exit in time and was killed.
pub const FENCE_KILLED: &str = "fence_killed";
/// The fence's launcher exited with an error.
pub const FENCE_LAUNCH_FAILED: &str = "fence_launch_failed";
/// The fence process could not be started.
pub const FENCE_SPAWN_FAILED: &str = "fence_spawn_failed";
/// The fence's heartbeat file could not be written.
pub const FENCE_WRITE_FAILED: &str = "fence_write_failed";
/// The watchdog was armed.
pub const WATCHDOG_ACTIVATED: &str = "watchdog_activated";
/// The watchdog could not be armed; with `mode: required` this node will not lead.
pub const WATCHDOG_ACTIVATION_FAILED: &str = "watchdog_activation_failed";
/// The watchdog device could not be used.
pub const WATCHDOG_UNAVAILABLE: &str = "watchdog_unavailable";
/// The watchdog's timeout is not safe for the timing.
pub const WATCHDOG_UNSAFE_TIMEOUT: &str = "watchdog_unsafe_timeout";
/// The timing leaves the watchdog no safe timeout; it is disarmed.
pub const WATCHDOG_TIMING_UNSAFE: &str = "watchdog_timing_unsafe";
/// The watchdog's timeout was changed.
pub const WATCHDOG_TIMEOUT_CHANGED: &str = "watchdog_timeout_changed";
/// A watchdog keepalive failed.
pub const WATCHDOG_KEEPALIVE_FAILED: &str = "watchdog_keepalive_failed";
/// The watchdog was disarmed.
pub const WATCHDOG_DISABLED: &str = "watchdog_disabled";
/// The watchdog device could not be closed.
pub const WATCHDOG_CLOSE_FAILED: &str = "watchdog_close_failed";
/// The watchdog's mode or device changed in the configuration.
pub const WATCHDOG_RECONFIGURED: &str = "watchdog_reconfigured";

// ---- REST API ----

/// The REST API server stopped with an error.
pub const API_SERVER_FAILED: &str = "api_server_failed";
/// The REST listener could not accept a connection; it backs off.
pub const API_ACCEPT_FAILED: &str = "api_accept_failed";
/// A REST connection ended with an error.
pub const API_CONNECTION_ENDED: &str = "api_connection_ended";
/// A request body did not arrive in time.
pub const API_REQUEST_TIMEOUT: &str = "api_request_timeout";
/// A REST request was refused (authentication, allowlist, size).
pub const API_ACCESS_REFUSED: &str = "api_access_refused";
/// A health check's `lag` parameter could not be parsed.
pub const API_LAG_UNPARSABLE: &str = "api_lag_unparsable";
/// The REST API serves a reloaded certificate.
pub const API_CERTIFICATE_RELOADED: &str = "api_certificate_reloaded";
/// A reloaded certificate could not be used; the running one is kept.
pub const API_TLS_RELOAD_FAILED: &str = "api_tls_reload_failed";
/// An `allowlist` entry cannot be parsed and is ignored.
pub const ALLOWLIST_ENTRY_IGNORED: &str = "allowlist_entry_ignored";
/// The members for `allowlist_include_members` could not be read.
pub const ALLOWLIST_MEMBERS_UNAVAILABLE: &str = "allowlist_members_unavailable";
/// A member's host for `allowlist_include_members` could not be resolved.
pub const ALLOWLIST_MEMBER_UNRESOLVED: &str = "allowlist_member_unresolved";
/// A switchover or failover was requested.
pub const SWITCHOVER_REQUESTED: &str = "switchover_requested";
/// A switchover or failover request was refused.
pub const SWITCHOVER_REFUSED: &str = "switchover_refused";
/// A scheduled switchover was deleted.
pub const SCHEDULED_SWITCHOVER_DELETED: &str = "scheduled_switchover_deleted";
/// The client TLS settings for peers' REST APIs could not be used.
pub const PEER_TLS_CONFIG_FAILED: &str = "peer_tls_config_failed";
/// The HTTP client for peers' REST APIs could not be built; a default one is used.
pub const PEER_CLIENT_FAILED: &str = "peer_client_failed";

// ---- Callbacks ----

/// The callback scripts changed in the configuration.
pub const CALLBACKS_CHANGED: &str = "callbacks_changed";
/// No callback script for this action.
pub const CALLBACK_NOT_CONFIGURED: &str = "callback_not_configured";
/// A user callback script started.
pub const CALLBACK_STARTED: &str = "callback_started";
/// A user callback script exited.
pub const CALLBACK_FINISHED: &str = "callback_finished";
/// A user callback script exited with an error or a signal.
pub const CALLBACK_FAILED: &str = "callback_failed";
/// A user callback script ran out of time and was killed.
pub const CALLBACK_TIMED_OUT: &str = "callback_timed_out";
/// A user callback script was stopped: a newer event of the same action arrived.
pub const CALLBACK_TERMINATED: &str = "callback_terminated";
/// A user callback script could not be started.
pub const CALLBACK_SPAWN_FAILED: &str = "callback_spawn_failed";

// ---- Telemetry ----

/// The metrics could not be encoded for `/metrics`.
pub const METRICS_ENCODE_FAILED: &str = "metrics_encode_failed";
/// A metric family could not be registered (a clash of names: a bug); it
/// is missing from `/metrics`.
pub const METRICS_REGISTRATION_FAILED: &str = "metrics_registration_failed";

/// Every event name of the catalog, in the order above.
pub const ALL: &[&str] = &[
    // Daemon: start, signals, systemd, shutdown
    STARTING,
    STARTUP_FAILED,
    DUPLICATE_NAME,
    UNIQUE_NAME_UNCHECKED,
    SIGNAL,
    SD_NOTIFY,
    SD_NOTIFY_FAILED,
    SHUTDOWN,
    FATAL,
    SUPERVISOR_UNAVAILABLE,
    DEBUG_STALL,
    // HA loop: decisions, actions, leader key
    DECISION,
    CYCLE_NOTE,
    ACTION_FAILED,
    JOB_FINISHED,
    LOCK_ACQUIRED,
    LOCK_RELEASED,
    LOCK_NOT_MINE,
    LOCK_LOST,
    LOCK_LOST_RACE,
    LOCK_RELEASE_FAILED,
    INITIALIZE_TAKEN,
    INITIALIZE_LOST,
    INITIALIZE_RELEASED,
    BOOTSTRAP_PUBLISHED,
    PROMOTE,
    DEMOTE,
    FOLLOW,
    FAILOVER_KEY_CLEARED,
    FAILOVER_KEY_CHANGED,
    FAILOVER_KEY_CLEAR_FAILED,
    STATUS_WRITE_FAILED,
    MEMBER_UPDATE_FAILED,
    // Synchronous replication
    SYNC_KEY_WRITTEN,
    SYNC_KEY_DELETED,
    SYNC_KEY_WRITE_FAILED,
    SYNC_STANDBY_NAMES_SET,
    SYNC_STANDBY_NAMES_FAILED,
    SYNC_DUTY_RELEASE,
    // Failsafe mode
    FAILSAFE_MODE_ACTIVE,
    FAILSAFE_HEARTBEAT,
    FAILSAFE_WRITTEN,
    FAILSAFE_WRITE_FAILED,
    FAILSAFE_BAD_API_URL,
    FAILSAFE_ACK,
    FAILSAFE_REFUSED,
    FAILSAFE_UNREACHABLE,
    // DCS: sessions, leases, watches
    DCS_UNREACHABLE,
    SESSION_INHERITED,
    SESSION_RELEASE_FAILED,
    DCS_SESSION_TIMEOUT_NEGOTIATED,
    DCS_SERVICE_REGISTRATION_FAILED,
    DCS_VALUE_UNREADABLE,
    EXHIBITOR_SERVERS_CHANGED,
    EXHIBITOR_UNREACHABLE,
    EXHIBITOR_SESSION_MOVED,
    EXHIBITOR_REATTACH_FAILED,
    SESSION_FILE_FAILED,
    LEASE_KEEPALIVE_LOST,
    LEASE_KEEPALIVE_FAILED,
    WATCH_LOST,
    WATCH_ENDED,
    HISTORY_WRITTEN,
    HISTORY_WRITE_FAILED,
    HISTORY_UNREADABLE,
    // Configuration: local file and dynamic config
    CONFIG_WARNING,
    CONFIG_RELOADED,
    CONFIG_RELOAD_FAILED,
    CONFIG_RELOAD_PARTIAL,
    RELOAD_REFUSED,
    RELOAD_FAILED,
    TIMING_CHANGED,
    TIMING_ADJUSTED,
    BAD_DYNAMIC_CONFIG,
    DYNAMIC_CONFIG_SAVED,
    DYNAMIC_CONFIG_SAVE_FAILED,
    DYNAMIC_CONFIG_WRITTEN,
    DYNAMIC_CONFIG_REFUSED,
    CONFIG_RESTORED,
    CONFIG_RESTORE_FAILED,
    PARAMETER_ADJUSTED,
    // PostgreSQL: process, status, restarts
    POSTGRES_STARTED,
    POSTGRES_STOPPED,
    POSTGRES_EXITED,
    POSTGRES_ADOPTED,
    START_CANCELLED,
    CONFIG_APPLIED,
    CONFIG_APPLY_FAILED,
    STATUS_SESSION_OPENED,
    STATUS_CONNECT_FAILED,
    STATUS_QUERY_FAILED,
    PENDING_RESTART_QUERY_FAILED,
    CHECKPOINT_AFTER_PROMOTE,
    CHECKPOINT_AFTER_PROMOTE_FAILED,
    CHECKPOINT_BEFORE_SWITCHOVER,
    CHECKPOINT_BEFORE_SWITCHOVER_FAILED,
    RESTART,
    RESTART_FAILED,
    RESTART_REFUSED,
    RESTART_SCHEDULED,
    SCHEDULED_RESTART_DUE,
    SCHEDULED_RESTART_DONE,
    SCHEDULED_RESTART_DROPPED,
    SCHEDULED_RESTART_DELETED,
    // PostgreSQL jobs: bootstrap, replicas, rewind
    JOB_STARTED,
    JOB_FAILED,
    JOB_CANCELLED,
    INITDB_DONE,
    POST_INIT,
    BOOTSTRAP_METHOD_STARTED,
    BOOTSTRAP_METHOD_DONE,
    BOOTSTRAP_RECOVERY_CONF_IGNORED,
    REPLICA_METHOD_STARTED,
    REPLICA_CREATED,
    REPLICA_METHOD_FAILED,
    METHOD_OUTPUT,
    REINITIALIZE_REQUESTED,
    DATA_DIR_MOVED_ASIDE,
    DATA_DIR_MOVE_FAILED,
    DATA_DIR_REMOVED,
    OLD_DATA_DIR_REMOVED,
    OLD_DATA_DIR_REMOVE_FAILED,
    REWIND,
    REWIND_OUTPUT,
    REWIND_DONE,
    REWIND_CRASH_RECOVERY,
    // Replication slots
    SLOT_CREATED,
    SLOT_CREATE_FAILED,
    SLOT_DROPPED,
    SLOT_DROP_FAILED,
    SLOT_DROP_DEFERRED,
    SLOT_ADVANCED,
    SLOT_ADVANCE_FAILED,
    SLOT_COPY_PENDING,
    SLOT_COPY,
    SLOT_COPIED,
    SLOT_COPY_FAILED,
    SLOT_COPY_MISMATCH,
    LOGICAL_SLOT_READY,
    LOGICAL_SLOT_CHECK_FAILED,
    LOGICAL_SLOTS_UNSAFE,
    HOT_STANDBY_FEEDBACK_FORCED,
    SLOT_SYNC_FAILED,
    // Fence and watchdog
    FENCE,
    FENCE_STARTED,
    FENCE_ADOPTED,
    FENCE_EXITED,
    FENCE_KILLED,
    FENCE_LAUNCH_FAILED,
    FENCE_SPAWN_FAILED,
    FENCE_WRITE_FAILED,
    WATCHDOG_ACTIVATED,
    WATCHDOG_ACTIVATION_FAILED,
    WATCHDOG_UNAVAILABLE,
    WATCHDOG_UNSAFE_TIMEOUT,
    WATCHDOG_TIMING_UNSAFE,
    WATCHDOG_TIMEOUT_CHANGED,
    WATCHDOG_KEEPALIVE_FAILED,
    WATCHDOG_DISABLED,
    WATCHDOG_CLOSE_FAILED,
    WATCHDOG_RECONFIGURED,
    // REST API
    API_SERVER_FAILED,
    API_ACCEPT_FAILED,
    API_CONNECTION_ENDED,
    API_REQUEST_TIMEOUT,
    API_ACCESS_REFUSED,
    API_LAG_UNPARSABLE,
    API_CERTIFICATE_RELOADED,
    API_TLS_RELOAD_FAILED,
    ALLOWLIST_ENTRY_IGNORED,
    ALLOWLIST_MEMBERS_UNAVAILABLE,
    ALLOWLIST_MEMBER_UNRESOLVED,
    SWITCHOVER_REQUESTED,
    SWITCHOVER_REFUSED,
    SCHEDULED_SWITCHOVER_DELETED,
    PEER_TLS_CONFIG_FAILED,
    PEER_CLIENT_FAILED,
    // Callbacks
    CALLBACKS_CHANGED,
    CALLBACK_NOT_CONFIGURED,
    CALLBACK_STARTED,
    CALLBACK_FINISHED,
    CALLBACK_FAILED,
    CALLBACK_TIMED_OUT,
    CALLBACK_TERMINATED,
    CALLBACK_SPAWN_FAILED,
    // Telemetry
    METRICS_ENCODE_FAILED,
    METRICS_REGISTRATION_FAILED,
];

#[cfg(test)]
mod tests {
    use super::ALL;
    use std::collections::HashSet;

    /// Two constants with one value would count two different happenings
    /// in one metric series, and a test could match the wrong one.
    #[test]
    fn names_are_unique() {
        let mut seen = HashSet::new();
        for name in ALL {
            assert!(
                seen.insert(*name),
                "event name {name:?} appears twice in the catalog"
            );
        }
    }

    /// snake_case: what logs, tests and the metric label have always used.
    #[test]
    fn names_are_snake_case() {
        for name in ALL {
            let ok = !name.is_empty()
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && !name.ends_with('_')
                && !name.contains("__")
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            assert!(ok, "event name {name:?} is not snake_case");
        }
    }
}
