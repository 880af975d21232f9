//! SQL against the local server through tokio-postgres: connecting, the
//! state snapshot the HA loop needs, and the few administrative statements.

use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::types::PgLsn;
use tokio_postgres::{Client, NoTls, Statement};

use super::conninfo::{Conninfo, Target};
use super::error::{PgError, PgResult};
use super::tls_client::{self, TlsPlan};
use crate::config::Credentials;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnParams {
    /// A unix socket directory (starts with `/`) or a host name/address.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub application_name: String,
    /// The section's libpq settings (TLS, channel binding,
    /// `target_session_attrs`), read as libpq reads them
    /// ([`super::tls_client`]).
    pub libpq: Conninfo,
}

impl ConnParams {
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> Self {
        ConnParams {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            dbname: "postgres".to_owned(),
            application_name: "pgpilot".to_owned(),
            libpq: Conninfo::default(),
        }
    }

    /// A connection to `target` as `auth`'s user (default `postgres`),
    /// with its password and libpq settings.
    pub fn to_target(auth: &Credentials, target: Target<'_>) -> ConnParams {
        let mut c = ConnParams::new(
            target.host,
            target.port,
            auth.username
                .clone()
                .unwrap_or_else(|| "postgres".to_owned()),
        );
        c.password = auth.password.clone();
        c.dbname = target.dbname.to_owned();
        c.libpq = Conninfo::settings(auth);
        c
    }

    fn over_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    fn to_config(&self, timeout: Duration, tls: &TlsPlan) -> PgResult<tokio_postgres::Config> {
        let mut c = tokio_postgres::Config::new();
        if self.over_socket() {
            c.host_path(&self.host);
        } else {
            c.host(&self.host);
        }
        c.port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(&self.application_name)
            .connect_timeout(timeout.max(Duration::from_millis(100)))
            .ssl_mode(tls.mode)
            .ssl_negotiation(tls.negotiation)
            .channel_binding(tls.channel_binding);
        if let Some(p) = &self.password {
            c.password(p);
        }
        match self.libpq.get("target_session_attrs") {
            None | Some("any") => {}
            Some("read-write") => {
                c.target_session_attrs(TargetSessionAttrs::ReadWrite);
            }
            Some("read-only") => {
                c.target_session_attrs(TargetSessionAttrs::ReadOnly);
            }
            Some(other) => {
                return Err(PgError::InvalidOption(format!(
                    "target_session_attrs={other} is not supported on pgpilot's own connections"
                )));
            }
        }
        Ok(c)
    }
}

/// Opens a connection and drives it on a spawned task; TLS as the
/// settings in [`ConnParams::libpq`] say ([`super::tls_client`]).
pub async fn connect(params: &ConnParams, timeout: Duration) -> PgResult<Client> {
    let context = || {
        format!(
            "connect to {}:{} as {}",
            params.host, params.port, params.user
        )
    };
    let tls = tls_client::plan(&params.libpq, params.over_socket())?;
    let config = params.to_config(timeout, &tls)?;
    let result = match tls.connector {
        None => tokio::time::timeout(timeout, config.connect(NoTls))
            .await
            .map(|r| r.map(|(client, conn)| (client, drive(conn)))),
        Some(tls) => tokio::time::timeout(timeout, config.connect(tls))
            .await
            .map(|r| r.map(|(client, conn)| (client, drive(conn)))),
    };
    match result {
        Ok(Ok((client, ()))) => Ok(client),
        Ok(Err(e)) => Err(PgError::query(context(), e)),
        Err(_) => Err(PgError::Timeout {
            what: context(),
            after: timeout,
        }),
    }
}

/// Drives a connection on a spawned task until it closes.
fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
}

/// Retries [`connect`] until it succeeds or `timeout` passes.
pub async fn wait_ready(params: &ConnParams, timeout: Duration) -> PgResult<Client> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match connect(
            params,
            left.clamp(Duration::from_millis(100), Duration::from_secs(2)),
        )
        .await
        {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => {
                return Err(PgError::Timeout {
                    what: format!("waiting for postgres to accept connections ({e})"),
                    after: timeout,
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One row of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRow {
    pub usename: Option<String>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sync_priority: Option<i32>,
    /// `flush_lsn`: how far the standby has flushed (the position the
    /// synchronous standbys are compared by; docs/replication-modes.md §3).
    pub flush_lsn: Option<u64>,
}

/// What the HA loop learns from the server in one round trip (two queries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSnapshot {
    pub in_recovery: bool,
    /// `server_version_num`, e.g. 150018.
    pub server_version: i32,
    /// `2024-08-28 19:39:26.352526+00:00` (UTC).
    pub postmaster_start_time: String,
    /// Primary: from the current WAL file name; replica: the WAL receiver's
    /// `received_tli`, else the last checkpoint's timeline.
    pub timeline: u64,
    /// Primary only: `pg_current_wal_flush_lsn()`.
    pub wal_flush_lsn: Option<u64>,
    /// Replica only: the larger of `pg_last_wal_receive_lsn()` (flushed) and
    /// the WAL receiver's `written_lsn`, as Patroni publishes it. After a
    /// restart the flushed position stays at the segment start until new
    /// WAL arrives, although the receiver has written up to the replay point.
    pub receive_lsn: Option<u64>,
    pub replay_lsn: Option<u64>,
    /// `pg_last_xact_replay_timestamp()` as `YYYY-MM-DD HH:MM:SS.ffffff+00:00`.
    pub last_replay_timestamp: Option<String>,
    pub replay_paused: bool,
    /// Replica only: `streaming` when the WAL receiver streams, else
    /// `in archive recovery`.
    pub receiver_state: Option<String>,
    pub replication: Vec<ReplicationRow>,
    /// `pg_control_system().system_identifier`, as text.
    pub system_identifier: Option<String>,
    /// `synchronous_standby_names` as the server runs it (after its last
    /// reload).
    pub synchronous_standby_names: String,
}

impl PgSnapshot {
    /// The WAL position to publish: flush LSN on a primary, the larger of
    /// received and replayed on a replica.
    pub fn wal_position(&self) -> u64 {
        if self.in_recovery {
            self.receive_lsn
                .unwrap_or(0)
                .max(self.replay_lsn.unwrap_or(0))
        } else {
            self.wal_flush_lsn.unwrap_or(0)
        }
    }
}

const TS_FORMAT: &str = "'YYYY-MM-DD HH24:MI:SS.US'";

/// Which state query: `Full` for the HA loop (also the last checkpoint's
/// and the newest history file's timeline, and the system identifier: file
/// reads in the server), `Light` for the REST API's per-request question,
/// which leaves those three NULL (the supervisor supplies them from the last
/// full read: they change only through its own jobs, or only forward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    Full,
    Light,
}

fn snapshot_sql(kind: SnapshotKind) -> String {
    let (checkpoint_tli, history_tli, sysid) = match kind {
        SnapshotKind::Full => (
            "(SELECT timeline_id FROM pg_catalog.pg_control_checkpoint())::int8",
            "CASE WHEN pg_catalog.pg_is_in_recovery() THEN
         (SELECT pg_catalog.max(('x' || pg_catalog.substr(name, 1, 8))::bit(32)::int8)
            FROM pg_catalog.pg_ls_waldir() WHERE name ~ '^[0-9A-F]{8}[.]history$')
       END",
            "(SELECT system_identifier FROM pg_catalog.pg_control_system())::text",
        ),
        SnapshotKind::Light => ("NULL::int8", "NULL::int8", "NULL::text"),
    };
    format!(
        "SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,
       pg_catalog.current_setting('server_version_num')::int4 AS server_version,
       pg_catalog.to_char(pg_catalog.pg_postmaster_start_time() AT TIME ZONE 'UTC', {TS_FORMAT}) || '+00:00' AS start_time,
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
            ELSE pg_catalog.pg_current_wal_flush_lsn() END AS flush_lsn,
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL
            ELSE ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_flush_lsn()), 1, 8))::bit(32)::int8
       END AS primary_tli,
       GREATEST(pg_catalog.pg_last_wal_receive_lsn(),
                (SELECT written_lsn FROM pg_catalog.pg_stat_wal_receiver LIMIT 1)) AS receive_lsn,
       pg_catalog.pg_last_wal_replay_lsn() AS replay_lsn,
       pg_catalog.to_char(pg_catalog.pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', {TS_FORMAT}) || '+00:00' AS replay_ts,
       CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_is_wal_replay_paused() ELSE false END AS paused,
       (SELECT status FROM pg_catalog.pg_stat_wal_receiver LIMIT 1) AS receiver_status,
       (SELECT received_tli FROM pg_catalog.pg_stat_wal_receiver LIMIT 1)::int8 AS received_tli,
       {checkpoint_tli} AS checkpoint_tli,
       {history_tli} AS history_tli,
       (SELECT pg_catalog.json_agg(r ORDER BY r.application_name)::text
          FROM (SELECT usename::text AS usename, application_name, client_addr::text AS client_addr,
                       state, sync_state, sync_priority, flush_lsn::text AS flush_lsn
                  FROM pg_catalog.pg_stat_replication) r) AS replication,
       pg_catalog.current_setting('synchronous_standby_names') AS ssn,
       {sysid} AS sysid"
    )
}

/// Prepares the statement of [`snapshot_prepared`]: one round trip per
/// snapshot afterwards (an unprepared query costs two).
pub async fn prepare_snapshot(
    client: &Client,
    kind: SnapshotKind,
) -> PgResult<tokio_postgres::Statement> {
    client
        .prepare(snapshot_sql(kind).as_str())
        .await
        .map_err(|e| PgError::query("prepare the server state query", e))
}

/// Reads the server's state (see [`PgSnapshot`]).
pub async fn snapshot(client: &Client) -> PgResult<PgSnapshot> {
    let stmt = prepare_snapshot(client, SnapshotKind::Full).await?;
    snapshot_prepared(client, &stmt).await
}

/// [`snapshot`] with the statement of [`prepare_snapshot`].
pub async fn snapshot_prepared(
    client: &Client,
    stmt: &tokio_postgres::Statement,
) -> PgResult<PgSnapshot> {
    let row = client
        .query_one(stmt, &[])
        .await
        .map_err(|e| PgError::query("read server state", e))?;
    let lsn = |name: &str| -> Option<u64> { row.get::<_, Option<PgLsn>>(name).map(u64::from) };
    let in_recovery: bool = row.get("in_recovery");
    let receiver_status: Option<String> = row.get("receiver_status");
    // A standby's timeline: the newest of what its walreceiver streams, its
    // last restartpoint, and the newest timeline history file it holds (the
    // startup process follows that one with recovery_target_timeline=latest).
    // The walreceiver row vanishes when the upstream dies and a restartpoint
    // can lag minutes behind a timeline switch, so neither alone would do
    // for the race, which bars standbys behind the cluster's timeline.
    let timeline = if in_recovery {
        ["received_tli", "checkpoint_tli", "history_tli"]
            .iter()
            .filter_map(|c| row.get::<_, Option<i64>>(*c))
            .max()
    } else {
        row.get::<_, Option<i64>>("primary_tli")
    }
    .unwrap_or(0) as u64;
    let replication = match row.get::<_, Option<String>>("replication") {
        Some(json) => serde_json::from_str::<Vec<ReplicationJson>>(&json)
            .map_err(|e| PgError::parse("pg_stat_replication", e.to_string()))?
            .into_iter()
            .map(|r| ReplicationRow {
                usename: r.usename,
                application_name: r.application_name,
                client_addr: r.client_addr,
                state: r.state,
                sync_state: r.sync_state,
                sync_priority: r.sync_priority,
                flush_lsn: r.flush_lsn.as_deref().and_then(crate::ha::lsn::parse),
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(PgSnapshot {
        in_recovery,
        server_version: row.get("server_version"),
        postmaster_start_time: row.get("start_time"),
        timeline,
        wal_flush_lsn: lsn("flush_lsn"),
        receive_lsn: lsn("receive_lsn"),
        replay_lsn: lsn("replay_lsn"),
        last_replay_timestamp: row.get("replay_ts"),
        replay_paused: row.get("paused"),
        receiver_state: in_recovery.then(|| {
            if receiver_status.as_deref() == Some("streaming") {
                "streaming".to_owned()
            } else {
                "in archive recovery".to_owned()
            }
        }),
        replication,
        system_identifier: row.get("sysid"),
        synchronous_standby_names: row.get::<_, Option<String>>("ssn").unwrap_or_default(),
    })
}

/// A `pg_stat_replication` row as `json_agg` renders it.
#[derive(serde::Deserialize)]
struct ReplicationJson {
    usename: Option<String>,
    application_name: Option<String>,
    client_addr: Option<String>,
    state: Option<String>,
    sync_state: Option<String>,
    sync_priority: Option<i32>,
    flush_lsn: Option<String>,
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal safe under any `standard_conforming_strings`: quotes
/// doubled, and an `E''` literal with doubled backslashes when needed.
pub fn quote_literal(value: &str) -> String {
    let q = value.replace('\'', "''");
    if q.contains('\\') {
        format!("E'{}'", q.replace('\\', "\\\\"))
    } else {
        format!("'{q}'")
    }
}

/// Role options pass through verbatim (as in Patroni), so they are limited
/// to keywords and numbers: `CREATEDB`, `CONNECTION LIMIT 5`, `NOINHERIT`.
fn check_role_option(opt: &str) -> PgResult<()> {
    let ok = !opt.trim().is_empty()
        && opt
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(PgError::InvalidOption(format!("role option {opt:?}")))
    }
}

/// The CREATE/ALTER ROLE statement (exposed for tests).
pub fn role_statement(
    exists: bool,
    name: &str,
    password: Option<&str>,
    options: &[String],
    replication: bool,
) -> PgResult<String> {
    let mut sql = format!(
        "{} ROLE {} WITH LOGIN",
        if exists { "ALTER" } else { "CREATE" },
        quote_ident(name)
    );
    if replication {
        sql.push_str(" REPLICATION");
    }
    for o in options {
        check_role_option(o)?;
        sql.push(' ');
        sql.push_str(o.trim());
    }
    if let Some(p) = password {
        sql.push_str(" PASSWORD ");
        sql.push_str(&quote_literal(p));
    }
    Ok(sql)
}

/// Creates the login role or brings an existing one up to date. The
/// statement is kept out of the server log (it carries the password) and
/// committed locally (it must not wait for a synchronous standby).
pub async fn create_or_update_role(
    client: &mut Client,
    name: &str,
    password: Option<&str>,
    options: &[String],
    replication: bool,
) -> PgResult<()> {
    let ctx = || format!("create or update role {name:?}");
    let tx = client
        .transaction()
        .await
        .map_err(|e| PgError::query(ctx(), e))?;
    tx.batch_execute("SET LOCAL synchronous_commit = 'local'; SET LOCAL log_statement = 'none'; SET LOCAL log_min_duration_statement = -1")
        .await
        .map_err(|e| PgError::query(ctx(), e))?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .map_err(|e| PgError::query(ctx(), e))?
        .is_some();
    let sql = role_statement(exists, name, password, options, replication)?;
    tx.batch_execute(&sql)
        .await
        .map_err(|e| PgError::query(ctx(), e))?;
    tx.commit().await.map_err(|e| PgError::query(ctx(), e))
}

/// `pg_promote(true, wait_secs)`: true when the promotion completed in time.
pub async fn promote(client: &Client, wait_secs: i32) -> PgResult<bool> {
    client
        .query_one("SELECT pg_catalog.pg_promote(true, $1)", &[&wait_secs])
        .await
        .map(|r| r.get(0))
        .map_err(|e| PgError::query("pg_promote", e))
}

pub async fn checkpoint(client: &Client) -> PgResult<()> {
    client
        .batch_execute("CHECKPOINT")
        .await
        .map_err(|e| PgError::query("CHECKPOINT", e))
}

/// One row of `pg_settings`, as far as the pending-restart check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingRow {
    pub name: String,
    pub setting: String,
    pub unit: Option<String>,
    pub pending_restart: bool,
}

/// The statement of [`restart_settings`]: the settings PostgreSQL says wait
/// for a restart, plus `$1` (the command-line parameters, which a reload
/// never changes).
const RESTART_SETTINGS_SQL: &str = "SELECT name, setting, unit, pending_restart \
     FROM pg_catalog.pg_settings WHERE pending_restart OR name = ANY($1)";

/// Prepares the statement of [`restart_settings`] (see
/// [`crate::postgres::session::Prepared`]).
pub async fn prepare_restart_settings(client: &Client) -> PgResult<Statement> {
    client
        .prepare(RESTART_SETTINGS_SQL)
        .await
        .map_err(|e| PgError::query("prepare the pg_settings query", e))
}

/// The settings PostgreSQL says wait for a restart, plus `names` (the
/// command-line parameters, which a reload never changes); `stmt` from
/// [`prepare_restart_settings`].
pub async fn restart_settings(
    client: &Client,
    stmt: &Statement,
    names: &[&str],
) -> PgResult<Vec<SettingRow>> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let rows = client
        .query(stmt, &[&names])
        .await
        .map_err(|e| PgError::query("read pg_settings", e))?;
    Ok(rows
        .iter()
        .map(|r| SettingRow {
            name: r.get(0),
            setting: r.get::<_, Option<String>>(1).unwrap_or_default(),
            unit: r.get(2),
            pending_restart: r.get(3),
        })
        .collect())
}

/// `pg_reload_conf()`.
pub async fn reload(client: &Client) -> PgResult<()> {
    client
        .query_one("SELECT pg_catalog.pg_reload_conf()", &[])
        .await
        .map(|_| ())
        .map_err(|e| PgError::query("pg_reload_conf", e))
}

fn check_slot_name(name: &str) -> PgResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(PgError::InvalidOption(format!("slot name {name:?}")))
    }
}

/// Creates a physical slot (reserving WAL at once); true if it was created.
pub async fn create_physical_slot_if_missing(client: &Client, name: &str) -> PgResult<bool> {
    check_slot_name(name)?;
    let rows = client
        .query(
            "SELECT pg_catalog.pg_create_physical_replication_slot($1, true)
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)",
            &[&name],
        )
        .await
        .map_err(|e| PgError::query(format!("create slot {name}"), e))?;
    Ok(!rows.is_empty())
}

/// Moves an inactive slot forward to `lsn` (`pg_replication_slot_advance`);
/// on a standby PostgreSQL stops at the replay position.
pub async fn advance_slot(client: &Client, name: &str, lsn: u64) -> PgResult<()> {
    client
        .query_one(
            "SELECT pg_catalog.pg_replication_slot_advance($1, $2)",
            &[&name, &PgLsn::from(lsn)],
        )
        .await
        .map(|_| ())
        .map_err(|e| PgError::query(format!("advance slot {name}"), e))
}

/// Drops a slot if it exists; true if it was dropped. Fails if it is in use.
pub async fn drop_slot(client: &Client, name: &str) -> PgResult<bool> {
    let rows = client
        .query(
            "SELECT pg_catalog.pg_drop_replication_slot(slot_name)
               FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(|e| PgError::query(format!("drop slot {name}"), e))?;
    Ok(!rows.is_empty())
}

/// One physical replication slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub name: String,
    pub active: bool,
    pub restart_lsn: Option<u64>,
}

pub async fn list_physical_slots(client: &Client) -> PgResult<Vec<SlotInfo>> {
    let rows = client
        .query(
            "SELECT slot_name::text, active, restart_lsn FROM pg_catalog.pg_replication_slots
              WHERE slot_type = 'physical' ORDER BY slot_name",
            &[],
        )
        .await
        .map_err(|e| PgError::query("list replication slots", e))?;
    Ok(rows
        .iter()
        .map(|r| SlotInfo {
            name: r.get(0),
            active: r.get(1),
            restart_lsn: r.get::<_, Option<PgLsn>>(2).map(u64::from),
        })
        .collect())
}

/// One row of `pg_replication_slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRow {
    pub name: String,
    pub logical: bool,
    pub database: Option<String>,
    pub plugin: Option<String>,
    pub active: bool,
    pub restart_lsn: Option<u64>,
    /// Logical slots: how far the consumer confirmed.
    pub confirmed_flush_lsn: Option<u64>,
    /// It holds back the xmin horizon (hot standby feedback came through it).
    pub has_xmin: bool,
    /// `wal_status = 'lost'`: the WAL it reserved is gone, it is useless.
    pub lost: bool,
    /// Logical slots: the oldest catalog rows the slot still needs.
    pub catalog_xmin: Option<u32>,
}

/// The statement of [`list_slots`]: one row per slot, or one row of NULL
/// slot columns when there is none, each with `pg_last_wal_replay_lsn()`
/// (a slot sync needs both: one round trip instead of two).
const LIST_SLOTS_SQL: &str = "SELECT pg_catalog.pg_last_wal_replay_lsn(),
        s.slot_name::text, s.slot_type = 'logical', s.database::text, s.plugin::text,
        s.active, s.restart_lsn, s.confirmed_flush_lsn, s.xmin IS NOT NULL,
        s.wal_status IS NOT DISTINCT FROM 'lost', s.catalog_xmin::text
   FROM (SELECT 1) AS one
   LEFT JOIN pg_catalog.pg_replication_slots AS s ON true
  ORDER BY s.slot_name";

/// Prepares the statement of [`list_slots`] (see
/// [`crate::postgres::session::Prepared`]).
pub async fn prepare_list_slots(client: &Client) -> PgResult<Statement> {
    client
        .prepare(LIST_SLOTS_SQL)
        .await
        .map_err(|e| PgError::query("prepare the replication slots query", e))
}

/// Every replication slot, physical and logical, and how far this server
/// has replayed (`pg_last_wal_replay_lsn()`: none on a primary); `stmt`
/// from [`prepare_list_slots`].
pub async fn list_slots(
    client: &Client,
    stmt: &Statement,
) -> PgResult<(Option<u64>, Vec<SlotRow>)> {
    let rows = client
        .query(stmt, &[])
        .await
        .map_err(|e| PgError::query("list replication slots", e))?;
    let replay = rows
        .first()
        .and_then(|r| r.get::<_, Option<PgLsn>>(0))
        .map(u64::from);
    let slots = rows
        .iter()
        .filter_map(|r| {
            Some(SlotRow {
                name: r.get::<_, Option<String>>(1)?,
                logical: r.get(2),
                database: r.get(3),
                plugin: r.get(4),
                active: r.get(5),
                restart_lsn: r.get::<_, Option<PgLsn>>(6).map(u64::from),
                confirmed_flush_lsn: r.get::<_, Option<PgLsn>>(7).map(u64::from),
                has_xmin: r.get(8),
                lost: r.get(9),
                catalog_xmin: xid(r.get(10)),
            })
        })
        .collect();
    Ok((replay, slots))
}

/// An `xid` read as text (tokio-postgres has no `xid` type).
fn xid(text: Option<String>) -> Option<u32> {
    text?.parse().ok()
}

/// Where the oldest WAL segment in `pg_wal` starts (any timeline); none if
/// there is none. Needs a superuser or `pg_monitor`.
pub async fn oldest_wal(client: &Client) -> PgResult<Option<u64>> {
    let rows = client
        .query(
            "SELECT name::text, (SELECT setting::bigint FROM pg_catalog.pg_settings
                                  WHERE name = 'wal_segment_size')
               FROM pg_catalog.pg_ls_waldir()",
            &[],
        )
        .await
        .map_err(|e| PgError::query("list pg_wal", e))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let size: i64 = r.get::<_, Option<i64>>(1)?;
            crate::ha::logical_slots::segment_start(&r.get::<_, String>(0), size.try_into().ok()?)
        })
        .min())
}

/// The leader's logical slots named in `names`, with their state files
/// (`pg_replslot/<name>/state`), for a copy onto a replica
/// (docs/ha.md §13.1). Empty when the server is
/// in recovery: only a primary's slots are copied. Reading the file needs
/// a superuser or `EXECUTE` on `pg_read_binary_file(text)`, as for
/// Patroni's rewind user.
pub async fn leader_logical_slots(
    client: &Client,
    names: &[String],
) -> PgResult<Vec<crate::ha::logical_slots::PrimarySlot>> {
    let rows = client
        .query(
            "SELECT slot_name::text, slot_type = 'logical', datname::text, plugin::text,
                    catalog_xmin::text, confirmed_flush_lsn, restart_lsn,
                    pg_catalog.pg_read_binary_file('pg_replslot/' || slot_name || '/state')
               FROM pg_catalog.pg_get_replication_slots()
               JOIN pg_catalog.pg_database ON datoid = oid
              WHERE NOT pg_catalog.pg_is_in_recovery() AND slot_name = ANY($1)",
            &[&names],
        )
        .await
        .map_err(|e| PgError::query("read logical slots on the leader", e))?;
    Ok(rows
        .iter()
        .map(|r| crate::ha::logical_slots::PrimarySlot {
            name: r.get(0),
            kind: if r.get(1) {
                crate::config::SlotKind::Logical
            } else {
                crate::config::SlotKind::Physical
            },
            database: r.get(2),
            plugin: r.get(3),
            catalog_xmin: xid(r.get(4)),
            confirmed_flush_lsn: r.get::<_, Option<PgLsn>>(5).map(u64::from),
            restart_lsn: r.get::<_, Option<PgLsn>>(6).map(u64::from),
            state: r.get::<_, Option<Vec<u8>>>(7).unwrap_or_default(),
        })
        .collect())
}

/// The leader's `catalog_xmin` of this replica's physical slot `physical`
/// and of the logical slots in `logical` (Patroni's
/// `check_logical_slots_readiness`). `None`: the physical slot is not
/// there (or the server is in recovery).
pub async fn leader_catalog_xmins(
    client: &Client,
    physical: &str,
    logical: &[String],
) -> PgResult<Option<(Option<u32>, std::collections::BTreeMap<String, u32>)>> {
    let mut names: Vec<String> = logical.to_vec();
    names.push(physical.to_owned());
    let rows = client
        .query(
            "SELECT slot_name::text, catalog_xmin::text
               FROM pg_catalog.pg_get_replication_slots()
              WHERE NOT pg_catalog.pg_is_in_recovery() AND slot_name = ANY($1)",
            &[&names],
        )
        .await
        .map_err(|e| PgError::query("read catalog_xmin on the leader", e))?;
    let mut found: std::collections::BTreeMap<String, Option<u32>> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), xid(r.get(1))))
        .collect();
    let Some(phys) = found.remove(physical) else {
        return Ok(None);
    };
    Ok(Some((
        phys,
        found
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect(),
    )))
}

/// Creates a logical slot unless one of that name exists; true if it was
/// created. The client must be connected to the slot's database, on a
/// primary.
pub async fn create_logical_slot_if_missing(
    client: &Client,
    name: &str,
    plugin: &str,
) -> PgResult<bool> {
    check_slot_name(name)?;
    let rows = client
        .query(
            "SELECT pg_catalog.pg_create_logical_replication_slot($1, $2)
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)",
            &[&name, &plugin],
        )
        .await
        .map_err(|e| PgError::query(format!("create logical slot {name}"), e))?;
    Ok(!rows.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\'b"), "E'a\\\\''b'");
    }

    #[test]
    fn role_statements() {
        let s = role_statement(false, "rep\"l", Some("p'w"), &["CREATEDB".into()], true).unwrap();
        assert_eq!(
            s,
            "CREATE ROLE \"rep\"\"l\" WITH LOGIN REPLICATION CREATEDB PASSWORD 'p''w'"
        );
        let s = role_statement(true, "u", None, &[], false).unwrap();
        assert_eq!(s, "ALTER ROLE \"u\" WITH LOGIN");
        assert!(role_statement(true, "u", None, &["SUPERUSER; DROP".into()], false).is_err());
    }

    #[test]
    fn slot_name_check() {
        assert!(check_slot_name("node_1").is_ok());
        assert!(check_slot_name("Node").is_err());
        assert!(check_slot_name("").is_err());
        assert!(check_slot_name(&"a".repeat(64)).is_err());
    }
}
