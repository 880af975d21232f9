//! The long procedures the PostgresSupervisor runs in the background:
//! bootstrap, clone, reinitialize, start, promote. Each takes what it needs
//! by value, so it runs while the actor keeps answering status questions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{Config, Credentials, DynamicConfig, SlotKind};
use crate::ha::Upstream;
use crate::ha::logical_slots::{LeaderCatalogXmin, PrimarySlot};
use crate::ha::rewind::{RewindReport, RewindStep, RewindTool};
use crate::ha::slots::{ExistingSlot, SlotRequest};
use crate::postgres::session::Prepared;
use crate::postgres::{
    Binaries, ConnParams, PgError, PgResult, PgpassEntry, Postmaster, RecoveryParams, StopMode,
    conf, conninfo, datadir, ops, params, query,
};
use crate::sync;

/// Everything a job needs to know, owned.
#[derive(Clone)]
pub struct JobEnv {
    pub cfg: Arc<Config>,
    pub dynamic: DynamicConfig,
    pub bins: Binaries,
    pub data_dir: PathBuf,
    pub config_dir: PathBuf,
    /// `hot_standby_feedback` forced on: this node holds (or passes on the
    /// feedback of) permanent logical slots
    /// ([`crate::ha::slots::enforce_hot_standby_feedback`]).
    pub hot_standby_feedback: bool,
    /// `synchronous_standby_names` as the sync rules set it
    /// (docs/replication-modes.md §3); `None`: the configured parameter.
    pub standby_names: Option<String>,
    /// The value the previous daemon left in the managed postgresql.conf
    /// (docs/replication-modes.md, "A daemon restart keeps the list"):
    /// while a synchronous mode is on it stands for `standby_names` until
    /// the sync rules set one, so a rewrite of the configuration before
    /// then does not make commits asynchronous under a `sync` key that
    /// still names a standby.
    pub inherited_standby_names: Option<String>,
}

impl JobEnv {
    pub fn pg_ctl_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.postgresql.pg_ctl_timeout.max(1))
    }

    /// Where the postmaster's own output goes: beside the data directory,
    /// never inside it (it would be copied by pg_basebackup).
    pub fn log_path(&self) -> PathBuf {
        let name = self
            .data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "postgresql".to_owned());
        self.data_dir
            .parent()
            .unwrap_or(Path::new("/tmp"))
            .join(format!("{name}.log"))
    }

    pub fn parameters(&self) -> std::collections::BTreeMap<String, String> {
        let mut values = params::effective_parameters(&self.cfg, &self.dynamic).values;
        // Over any configured value, as Patroni's `enforce_hot_standby_feedback`.
        if self.hot_standby_feedback {
            values.insert("hot_standby_feedback".to_owned(), "on".to_owned());
        }
        // pgpilot manages it while a synchronous mode is on, never the user.
        if let Some(v) = self.managed_standby_names() {
            values.insert("synchronous_standby_names".to_owned(), v.to_owned());
        }
        values
    }

    /// `synchronous_standby_names` as pgpilot manages it: what the sync
    /// rules set, else (a synchronous mode on) what the previous daemon
    /// left; `None` gives it to the configured parameter.
    pub fn managed_standby_names(&self) -> Option<&str> {
        self.standby_names.as_deref().or_else(|| {
            self.inherited_standby_names
                .as_deref()
                .filter(|_| self.dynamic.sync.enabled())
        })
    }

    /// Log what the parameter rules adjusted; called when the configuration
    /// changes, not on every use.
    pub fn log_parameter_warnings(&self) {
        for w in params::effective_parameters(&self.cfg, &self.dynamic).warnings {
            warn!(event = crate::events::PARAMETER_ADJUSTED, warning = %w);
        }
    }

    /// How pgpilot connects to its own PostgreSQL: the first unix socket
    /// directory if there is one, else the first listen address.
    pub fn local_conn(&self) -> ConnParams {
        let pg = &self.cfg.postgresql;
        let (addrs, port) = pg
            .listen_parts()
            .unwrap_or_else(|| (vec!["127.0.0.1".to_owned()], 5432));
        let socket = self
            .parameters()
            .get("unix_socket_directories")
            .and_then(|d| {
                d.split(',')
                    .map(str::trim)
                    .find(|d| d.starts_with('/'))
                    .map(str::to_owned)
            });
        let host = socket.unwrap_or_else(|| match addrs[0].as_str() {
            "*" | "0.0.0.0" | "" => "127.0.0.1".to_owned(),
            "::" => "::1".to_owned(),
            a => a.to_owned(),
        });
        let su = &pg.authentication.superuser;
        let mut c = ConnParams::new(
            host,
            port,
            su.username.clone().unwrap_or_else(|| "postgres".to_owned()),
        );
        c.password = su.password.clone();
        c.dbname = pg.database.clone();
        // Patroni's local connection takes the superuser section whole,
        // its libpq settings included (unused over a unix socket).
        c.libpq = conninfo::Conninfo::settings(su);
        c
    }

    /// `postgresql.pgpass`, else `~/pgpass`, made absolute as Patroni
    /// makes it (`os.path.abspath`): `primary_conninfo` names it as
    /// `passfile`, and the walreceiver runs in the data directory.
    pub fn pgpass_path(&self) -> PathBuf {
        match &self.cfg.postgresql.pgpass {
            Some(p) => super::postgres_supervisor::absolute(p),
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"))
                .join("pgpass"),
        }
    }

    /// pgpass with wildcard entries for the replication and superuser
    /// credentials, so any upstream works.
    pub fn write_pgpass(&self) -> PgResult<PathBuf> {
        let auth = &self.cfg.postgresql.authentication;
        let mut entries = Vec::new();
        for c in [&auth.replication, &auth.superuser]
            .into_iter()
            .chain(auth.rewind.as_ref())
        {
            if let (Some(u), Some(p)) = (&c.username, &c.password) {
                entries.push(PgpassEntry {
                    host: "*".into(),
                    port: "*".into(),
                    database: "*".into(),
                    user: u.clone(),
                    password: p.clone(),
                });
            }
        }
        let path = self.pgpass_path();
        datadir::write_pgpass(&path, &entries)
            .map_err(|e| PgError::io(format!("write {}", path.display()), e))?;
        Ok(path)
    }

    /// The replication section, its user defaulting to `replicator`.
    pub fn replication_credentials(&self) -> Credentials {
        let mut c = self.cfg.postgresql.authentication.replication.clone();
        c.username.get_or_insert_with(|| "replicator".to_owned());
        c
    }

    /// `upstream`'s PostgreSQL, database `postgresql.database`.
    pub fn target<'a>(&'a self, upstream: &'a Upstream) -> conninfo::Target<'a> {
        conninfo::Target {
            host: &upstream.host,
            port: upstream.port,
            dbname: &self.cfg.postgresql.database,
        }
    }

    /// The local server's version as `server_version_num` counts it
    /// (major × 10000), which decides the libpq keywords written
    /// ([`conninfo`]): from `PG_VERSION` in the data directory, else from
    /// the binaries' Debian directory (`/usr/lib/postgresql/<major>/bin`),
    /// else PostgreSQL 15, the version pgpilot is tested with.
    pub fn version_num(&self) -> u32 {
        let pg_version = std::fs::read_to_string(self.data_dir.join("PG_VERSION")).ok();
        version_num_of(pg_version.as_deref(), self.bins.bin_dir.as_deref())
    }

    fn recovery_for(&self, upstream: Option<&Upstream>) -> PgResult<RecoveryParams> {
        // `nostream`: a standby fed by restore_command only (docs/operations.md, "Tags").
        let upstream = upstream.filter(|_| !self.cfg.tags.nostream);
        // The remote of a standby cluster with neither host nor port
        // (docs/ha.md §16): fed by `restore_command` alone.
        let stream_from = upstream.filter(|u| !(u.remote && u.port == 0));
        let primary_conninfo = match stream_from {
            None => String::new(),
            Some(u) => {
                let passfile = self.write_pgpass()?;
                conninfo::primary_conninfo(
                    &self.replication_credentials(),
                    self.target(u),
                    &passfile,
                    &self.cfg.name,
                    self.version_num(),
                )
            }
        };
        let standby = self.dynamic.standby_cluster.as_ref();
        let primary_slot_name = match stream_from {
            // The remote's slot is the section's, or none (Patroni's
            // `no_replication_slot`).
            Some(u) if u.remote => standby.and_then(|s| s.primary_slot_name.clone()),
            Some(_) if self.dynamic.use_slots => Some(conf::slot_name(&self.cfg.name)),
            _ => None,
        };
        let mut standby_cluster = Vec::new();
        if let Some(s) = standby {
            // Every standby of a standby cluster restores from the archive
            // (Patroni's `_get_node_to_follow`); the delay is the standby
            // leader's alone (its `RemoteMember`).
            let remote = upstream.is_some_and(|u| u.remote);
            for (name, value) in [
                ("restore_command", s.restore_command.as_ref()),
                (
                    "archive_cleanup_command",
                    s.archive_cleanup_command.as_ref(),
                ),
                (
                    "recovery_min_apply_delay",
                    s.recovery_min_apply_delay.as_ref().filter(|_| remote),
                ),
            ] {
                if let Some(v) = value {
                    standby_cluster.push((name, v.clone()));
                }
            }
        }
        Ok(RecoveryParams {
            primary_conninfo,
            primary_slot_name,
            standby_cluster,
        })
    }

    /// The `pg_hba` lines pgpilot writes: the local `postgresql.pg_hba`,
    /// else the dynamic one (as Patroni merges them: local keys win).
    pub fn hba_lines(&self) -> Vec<String> {
        if self.cfg.postgresql.pg_hba.is_empty() {
            self.dynamic.pg_hba()
        } else {
            self.cfg.postgresql.pg_hba.clone()
        }
    }

    /// Write postgresql.conf (+ pg_hba.conf, standby.signal). `standby` =
    /// `Some(upstream or None)` for a standby, `None` for a primary.
    ///
    /// The command-line parameters are in the file too, with the values
    /// the command line gives them (as Patroni writes them). At a reload
    /// PostgreSQL compares every postmaster-context value the files set
    /// with the running one, whatever set the running one: left out of
    /// this file, they would be read from `postgresql.base.conf`, where
    /// initdb wrote `max_connections = 100`, and a cluster configured with
    /// any other value would report a pending restart after every reload.
    /// Written here, a file value differs from the running one exactly
    /// when a restart is due. The command line still wins over
    /// `ALTER SYSTEM`.
    pub fn write_config(&self, standby: Option<Option<&Upstream>>) -> PgResult<PathBuf> {
        let params = self.parameters();
        let recovery = standby.map(|u| self.recovery_for(u)).transpose()?;
        let custom = self.cfg.postgresql.custom_conf.as_deref().map(Path::new);
        let hba = self.hba_lines();
        let files = datadir::ConfigFiles {
            data_dir: &self.data_dir,
            config_dir: &self.config_dir,
            custom_conf: custom,
            params: &params,
            hba_lines: (!hba.is_empty()).then_some(hba.as_slice()),
            recovery: recovery.as_ref(),
        };
        datadir::write_config_files(&files).map_err(|e| {
            PgError::io(
                format!("write configuration in {}", self.config_dir.display()),
                e,
            )
        })
    }
}

/// [`JobEnv::version_num`] from the content of `PG_VERSION` and the
/// binaries' directory.
fn version_num_of(pg_version: Option<&str>, bin_dir: Option<&Path>) -> u32 {
    let from_data = pg_version.and_then(|v| v.trim().parse::<u32>().ok());
    let from_bins = || {
        bin_dir
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
    };
    from_data.or_else(from_bins).unwrap_or(15) * 10_000
}

/// Start PostgreSQL and wait until it accepts connections.
pub async fn start(env: &JobEnv, standby: Option<Option<&Upstream>>) -> PgResult<Postmaster> {
    start_within(env, standby, env.pg_ctl_timeout()).await
}

/// Set to `true` by the supervisor: the start of a primary is to give up
/// (`primary_start_timeout`, docs/ha.md §8.1).
pub type StartCancel = tokio::sync::watch::Receiver<bool>;

/// [`start`] as a primary, which gives up when `cancel` turns `true`: the
/// postmaster it started is stopped (immediate) before the start fails, so
/// the caller may release the leader key once the job has ended. A start
/// that got ready as the cancel came is stopped too.
pub async fn start_primary(env: &JobEnv, mut cancel: StartCancel) -> PgResult<Postmaster> {
    let mut pm = spawn_postmaster(env, None)?;
    let conn = env.local_conn();
    let cancelled = async {
        // A dropped sender is no cancel: wait forever then.
        if cancel.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let gave_up = || {
        PgError::io(
            "start as primary",
            std::io::Error::other("cancelled: primary_start_timeout passed"),
        )
    };
    let ready = tokio::select! {
        r = pm.wait_ready(&conn, env.pg_ctl_timeout()) => r.map(drop),
        () = cancelled => Err(gave_up()),
    };
    let ready = match ready {
        Ok(()) if *cancel.borrow() => Err(gave_up()),
        r => r,
    };
    match ready {
        Ok(()) => Ok(pm),
        Err(e) => {
            // A fencing stop, as the daemon's immediate demotion: SIGKILL
            // of the process group when it does not act in time.
            let grace = crate::fence::KILL_GRACE.min(env.pg_ctl_timeout());
            let _ = pm.stop(StopMode::Immediate, grace).await;
            Err(e)
        }
    }
}

fn spawn_postmaster(env: &JobEnv, standby: Option<Option<&Upstream>>) -> PgResult<Postmaster> {
    let conf_file = env.write_config(standby)?;
    let params = env.parameters();
    let pm = Postmaster::start(
        &env.bins,
        &env.data_dir,
        &conf_file,
        &params::command_line_parameters(&params),
        &env.log_path(),
    )?;
    info!(
        event = crate::events::POSTGRES_STARTED,
        pid = pm.pid(),
        standby = standby.is_some()
    );
    Ok(pm)
}

/// [`start`], giving PostgreSQL `timeout` to accept connections; after it
/// the postmaster is stopped (immediate) and the start fails.
pub async fn start_within(
    env: &JobEnv,
    standby: Option<Option<&Upstream>>,
    timeout: Duration,
) -> PgResult<Postmaster> {
    let mut pm = spawn_postmaster(env, standby)?;
    match pm.wait_ready(&env.local_conn(), timeout).await {
        Ok(_) => Ok(pm),
        Err(e) => {
            let _ = pm.stop(StopMode::Immediate, env.pg_ctl_timeout()).await;
            Err(e)
        }
    }
}

fn create_parent(dir: &Path) -> PgResult<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| PgError::io(format!("create {}", parent.display()), e))?;
    }
    Ok(())
}

/// initdb, configure, start, create roles, run post_init. On failure the
/// postmaster is stopped and the data directory moved aside, never deleted.
pub async fn bootstrap(env: &JobEnv) -> PgResult<Postmaster> {
    let mut started: Option<Postmaster> = None;
    let result = bootstrap_steps(env, &mut started).await;
    match result {
        Ok(()) => started.ok_or_else(|| PgError::parse("bootstrap", "postmaster handle lost")),
        Err(e) => {
            if let Some(mut pm) = started {
                let _ = pm.stop(StopMode::Immediate, env.pg_ctl_timeout()).await;
            }
            if !datadir::is_empty(&env.data_dir).unwrap_or(true) {
                match datadir::move_aside(&env.data_dir) {
                    Ok(p) => {
                        warn!(event = crate::events::DATA_DIR_MOVED_ASIDE, to = %p.display(), "after a failed bootstrap")
                    }
                    Err(err) => warn!(event = crate::events::DATA_DIR_MOVE_FAILED, error = %err),
                }
            }
            Err(e)
        }
    }
}

async fn bootstrap_steps(env: &JobEnv, started: &mut Option<Postmaster>) -> PgResult<()> {
    let boot = env.cfg.bootstrap.clone().unwrap_or_default();
    let pg = &env.cfg.postgresql;
    let su = &pg.authentication.superuser;
    let su_name = su.username.clone().unwrap_or_else(|| "postgres".to_owned());
    create_parent(&env.data_dir)?;
    if !super::replica_methods::custom_bootstrap(env).await? {
        ops::initdb(
            &env.bins,
            &env.data_dir,
            &boot.initdb,
            &su_name,
            su.password.as_deref(),
        )
        .await?;
        info!(event = crate::events::INITDB_DONE, data_dir = %env.data_dir.display());
    }
    if env.hba_lines().is_empty() && !boot.pg_hba.is_empty() {
        append_hba(&env.config_dir, &boot.pg_hba)?;
    }
    let pm = start(env, None).await?;
    *started = Some(pm);
    let mut client = query::connect(&env.local_conn(), env.pg_ctl_timeout()).await?;
    if let Some(p) = su.password.as_deref() {
        query::create_or_update_role(
            &mut client,
            &su_name,
            Some(p),
            &["SUPERUSER".to_owned()],
            false,
        )
        .await?;
    }
    let repl = &pg.authentication.replication;
    if let Some(u) = repl.username.as_deref() {
        query::create_or_update_role(&mut client, u, repl.password.as_deref(), &[], true).await?;
    }
    if let Some(rw) = &pg.authentication.rewind
        && let Some(u) = rw.username.as_deref()
        && u != su_name
    {
        // What pg_rewind needs from a non-superuser (PostgreSQL 11+).
        query::create_or_update_role(&mut client, u, rw.password.as_deref(), &[], false).await?;
        let role = query::quote_ident(u);
        client
            .batch_execute(&format!(
                "GRANT EXECUTE ON function pg_catalog.pg_ls_dir(text, boolean, boolean) TO {role};
                 GRANT EXECUTE ON function pg_catalog.pg_stat_file(text, boolean) TO {role};
                 GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text) TO {role};
                 GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO {role};"
            ))
            .await
            .map_err(|e| PgError::query("grant pg_rewind functions", e))?;
    }
    for (name, user) in &boot.users {
        query::create_or_update_role(
            &mut client,
            name,
            user.password.as_deref(),
            &user.options,
            false,
        )
        .await?;
    }
    if let Some(script) = &boot.post_init {
        run_post_init(env, script, &su_name).await?;
    }
    Ok(())
}

fn append_hba(config_dir: &Path, lines: &[String]) -> PgResult<()> {
    let path = config_dir.join(datadir::PG_HBA_CONF);
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    if !text.ends_with('\n') && !text.is_empty() {
        text.push('\n');
    }
    text.push_str("\n# bootstrap.pg_hba (pgpilot)\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    datadir::write_atomic(&path, text.as_bytes())
        .map_err(|e| PgError::io(format!("write {}", path.display()), e))
}

/// `post_init URL` with PGPASSFILE set (docs/operations.md, "Starting a cluster").
async fn run_post_init(env: &JobEnv, script: &str, su_name: &str) -> PgResult<()> {
    let passfile = env.write_pgpass()?;
    let conn = env.local_conn();
    // Patroni's argument: the local superuser connection as a libpq keyword
    // string, the superuser section's TLS settings with it.
    let mut superuser = env.cfg.postgresql.authentication.superuser.clone();
    superuser.username = Some(su_name.to_owned());
    let url = conninfo::connection_string(
        &superuser,
        conninfo::Target {
            host: &conn.host,
            port: conn.port,
            dbname: &conn.dbname,
        },
        env.version_num(),
    );
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("{script} \"$1\""))
        .arg("post_init")
        .arg(&url)
        .env("PGPASSFILE", &passfile)
        .env(
            "PGOPTIONS",
            "-c synchronous_commit=local -c statement_timeout=0",
        );
    info!(event = crate::events::POST_INIT, script = %script);
    crate::postgres::command::run(cmd).await.map(|_| ())
}

/// Create the replica with the replica methods (`basebackup` by default)
/// from `from`, then start as its standby.
pub async fn clone(env: &JobEnv, from: &Upstream) -> PgResult<Postmaster> {
    create_parent(&env.data_dir)?;
    super::replica_methods::create_replica(env, Some(from)).await?;
    start(env, Some(Some(from))).await
}

/// Create the replica with a `no_leader` method (the cluster has no
/// leader), then start as a standby without upstream.
pub async fn clone_without_leader(env: &JobEnv) -> PgResult<Postmaster> {
    create_parent(&env.data_dir)?;
    super::replica_methods::create_replica(env, None).await?;
    start(env, Some(None)).await
}

/// Stop whatever runs (immediate), move the data directory aside, clone
/// again with the replica methods and start. With `remove_old` the
/// moved-aside copy is deleted once the new one runs (`POST
/// /reinitialize`), together with those of earlier rebuilds that were
/// cancelled before they got there (`leftovers`, shared with the
/// supervisor); otherwise it is kept (the HA loop's rebuilds after a failed
/// or impossible rewind). A postmaster left by a cancelled job is found
/// through `postmaster.pid` and stopped too.
pub async fn reinitialize(
    env: &JobEnv,
    running: Option<Postmaster>,
    from: &Upstream,
    remove_old: bool,
    leftovers: &std::sync::Mutex<Vec<PathBuf>>,
) -> PgResult<Postmaster> {
    if let Some(mut pm) = running.or_else(|| Postmaster::adopt(&env.data_dir)) {
        pm.stop(StopMode::Immediate, env.pg_ctl_timeout()).await?;
    }
    if !datadir::is_empty(&env.data_dir).map_err(|e| PgError::io("inspect data directory", e))? {
        let to = datadir::move_aside(&env.data_dir)
            .map_err(|e| PgError::io("move data directory aside", e))?;
        warn!(event = crate::events::DATA_DIR_MOVED_ASIDE, to = %to.display(), "rebuilding from the leader");
        if remove_old {
            sync::lock(leftovers).push(to);
        }
    }
    let pm = clone(env, from).await?;
    if remove_old {
        let old: Vec<PathBuf> = std::mem::take(&mut *sync::lock(leftovers));
        for dir in old {
            let shown = dir.display().to_string();
            match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await {
                Ok(Ok(())) => info!(event = crate::events::OLD_DATA_DIR_REMOVED, dir = %shown),
                Ok(Err(e)) => {
                    warn!(event = crate::events::OLD_DATA_DIR_REMOVE_FAILED, dir = %shown, error = %e)
                }
                Err(e) => {
                    warn!(event = crate::events::OLD_DATA_DIR_REMOVE_FAILED, dir = %shown, error = %e)
                }
            }
        }
    }
    Ok(pm)
}

/// `pg_reload_conf()` on the running server.
pub async fn reload(env: &JobEnv) -> PgResult<()> {
    let client =
        query::connect(&env.local_conn(), env.dynamic.timing.local_query_timeout()).await?;
    query::reload(&client).await
}

/// Promote the standby, CHECKPOINT (so pg_control carries the new
/// timeline, which pg_rewind on a former primary reads), and drop the
/// recovery settings from the config.
pub async fn promote(env: &JobEnv) -> PgResult<()> {
    let client = query::connect(&env.local_conn(), env.pg_ctl_timeout()).await?;
    let wait = i32::try_from(env.pg_ctl_timeout().as_secs()).unwrap_or(60);
    if !query::promote(&client, wait).await? {
        return Err(PgError::parse("pg_promote", "did not finish in time"));
    }
    match query::checkpoint(&client).await {
        Ok(()) => info!(event = crate::events::CHECKPOINT_AFTER_PROMOTE),
        // The promotion stands; a former primary's rewind waits for (or
        // its job reports) the missing checkpoint.
        Err(e) => warn!(event = crate::events::CHECKPOINT_AFTER_PROMOTE_FAILED, error = %e),
    }
    env.write_config(None)?;
    Ok(())
}

/// What a rewind job's step reports when it fails: the raw facts, which
/// `ha::rewind` classifies (retry, or failed for good).
fn not_run(step: RewindStep) -> impl FnOnce(PgError) -> RewindReport {
    move |e| RewindReport::NotRun {
        step,
        error: e.to_string(),
    }
}

/// pg_rewind failed: ask whether the leader still answers as a primary and
/// whether pg_control still allows a rewind (Patroni's
/// `check_leader_is_not_in_recovery` and `can_rewind` after a failure), so
/// `ha::rewind` can tell a failure of the source from one of this data
/// directory (docs/ha.md §8.2).
async fn after_failed_rewind(env: &JobEnv, leader: &ConnParams, e: PgError) -> RewindReport {
    let leader_primary = match query::connect(leader, Duration::from_secs(3)).await {
        Ok(client) => client
            .query_one("SELECT NOT pg_catalog.pg_is_in_recovery()", &[])
            .await
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false),
        Err(_) => false,
    };
    if leader_primary {
        return tool_failed(RewindTool::PgRewind)(e);
    }
    let rewindable = crate::postgres::controldata::read(&env.bins, &env.data_dir)
        .await
        .is_ok_and(|cd| cd.wal_log_hints || cd.data_checksums);
    RewindReport::LeaderGone {
        error: e.to_string(),
        rewindable,
    }
}

/// A tool of the rewind job failed: its exit status and stderr tail.
fn tool_failed(tool: RewindTool) -> impl FnOnce(PgError) -> RewindReport {
    move |e| {
        let (status, stderr) = match &e {
            PgError::CommandFailed { status, stderr, .. } => (Some(status.clone()), stderr.clone()),
            _ => (None, Vec::new()),
        };
        RewindReport::ToolFailed {
            tool,
            status,
            stderr,
            error: e.to_string(),
        }
    }
}

impl JobEnv {
    /// The section pg_rewind connects with: `authentication.rewind` if it
    /// names a user, else the superuser's (user defaulting to `postgres`);
    /// its libpq settings go with it (docs/configuration.md,
    /// "postgresql.authentication: libpq settings").
    fn rewind_credentials(&self) -> Credentials {
        let auth = &self.cfg.postgresql.authentication;
        match auth.rewind.as_ref().filter(|c| c.username.is_some()) {
            Some(c) => c.clone(),
            None => {
                let mut c = auth.superuser.clone();
                c.username.get_or_insert_with(|| "postgres".to_owned());
                c
            }
        }
    }
}

/// Wait until the leader is a primary whose last checkpoint is on its
/// current timeline (Patroni's `check_leader_has_run_checkpoint`):
/// before that its pg_control still names the old timeline and pg_rewind
/// would wrongly find nothing to do.
async fn wait_leader_checkpoint(env: &JobEnv, conn: &ConnParams) -> PgResult<()> {
    let deadline = tokio::time::Instant::now() + env.pg_ctl_timeout();
    loop {
        let client = query::connect(conn, Duration::from_secs(3)).await?;
        let done: bool = client
            .query_one(
                "SELECT NOT pg_catalog.pg_is_in_recovery() AND ('x' || pg_catalog.substr(\
                 pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::int \
                 = timeline_id FROM pg_catalog.pg_control_checkpoint()",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .map_err(|e| PgError::query("leader checkpoint check", e))?;
        if done {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PgError::parse(
                "leader checkpoint check",
                "the leader has not run a checkpoint since its promotion",
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// pg_rewind this former primary from `from`, then start as its replica.
///
/// A failure is reported as it happened ([`RewindReport`]); what it means
/// is `ha::rewind`'s to say (docs/ha.md §8.2).
pub async fn rewind(env: &JobEnv, from: &Upstream) -> Result<Postmaster, RewindReport> {
    let cd = crate::postgres::controldata::read(&env.bins, &env.data_dir)
        .await
        .map_err(not_run(RewindStep::ControlData))?;
    if !cd.wal_log_hints && !cd.data_checksums {
        return Err(RewindReport::NoWalLogHints);
    }
    let passfile = env.write_pgpass().map_err(not_run(RewindStep::Prepare))?;
    let credentials = env.rewind_credentials();
    let leader = ConnParams::to_target(&credentials, env.target(from));
    wait_leader_checkpoint(env, &leader)
        .await
        .map_err(not_run(RewindStep::LeaderCheckpoint))?;
    let extra = match &env.cfg.postgresql.rewind {
        Some(v) => ops::rewind_args(v).map_err(|e| RewindReport::BadOptions(e.to_string()))?,
        None => Vec::new(),
    };
    // Crash recovery reads postgresql.conf, written here with the current
    // parameters as a primary; the command-line ones (wal_log_hints above
    // all) are not in the file and go on its command line.
    let conf_file = env
        .write_config(None)
        .map_err(not_run(RewindStep::Prepare))?;
    if !cd.state.is_clean_shutdown() {
        // Done here rather than inside pg_rewind, which cannot be told to
        // keep the WAL segments it needs to find the last common checkpoint.
        info!(
            event = crate::events::REWIND_CRASH_RECOVERY,
            "single-user crash recovery before pg_rewind"
        );
        let cmdline = params::command_line_parameters(&env.parameters());
        let out = ops::single_user_recovery(&env.bins, &env.data_dir, &conf_file, &cmdline)
            .await
            .map_err(tool_failed(RewindTool::CrashRecovery))?;
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            tracing::debug!(event = crate::events::REWIND_OUTPUT, line = %line);
        }
    }
    let source =
        conninfo::rewind_source(&credentials, env.target(from), &passfile, env.version_num());
    info!(event = crate::events::REWIND, from = %from.name, "running pg_rewind");
    let out = ops::rewind(
        &env.bins,
        &env.data_dir,
        &conf_file,
        &source,
        Some(passfile.as_path()),
        &extra,
    )
    .await;
    let out = match out {
        Ok(out) => out,
        Err(e) => return Err(after_failed_rewind(env, &leader, e).await),
    };
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        info!(event = crate::events::REWIND_OUTPUT, line = %line);
    }
    info!(event = crate::events::REWIND_DONE, from = %from.name);
    start(env, Some(Some(from)))
        .await
        .map_err(|e| RewindReport::StartFailed(e.to_string()))
}

/// What a slot sync found besides the positions to publish.
#[derive(Debug, Default)]
pub struct SlotSyncOutcome {
    /// `status.slots` (see [`SlotRequest::published`]).
    pub published: BTreeMap<String, u64>,
    /// Logical slots to copy from the leader: missing here, or whose
    /// advance showed the copy is unusable
    /// ([`crate::ha::logical_slots::recopy_after_advance_error`]).
    pub copy: Vec<String>,
    /// Of those, the ones missing here.
    pub missing: Vec<String>,
    /// `catalog_xmin` of each logical slot on this node.
    pub logical_catalog_xmin: BTreeMap<String, Option<u32>>,
}

/// Bring the slots in line with `req` (see [`crate::ha::slots`]): drop the
/// unexpected ones that are not in use (an active one is retried next
/// cycle), create the missing ones, advance those a replica follows.
/// Returns what the leader publishes in `status.slots` and what a replica
/// still has to copy.
///
/// `pg` is the supervisor's long-lived status connection (no session per
/// cycle) with its prepared statements; logical slots of other databases
/// need their own. A sync that changes nothing costs one round trip.
pub async fn sync_slots(
    env: &JobEnv,
    pg: &Prepared,
    req: &SlotRequest,
) -> PgResult<SlotSyncOutcome> {
    let client: &tokio_postgres::Client = &pg.client;
    let (replay, existing, xmins) = existing_slots(pg).await?;
    // Only a replica advances slots, and never beyond what it replayed.
    let replay = if req.i_lead { None } else { replay };
    let plan = req.plan(&existing, replay);
    // Whether a statement below may have changed the slots: only then are
    // they read again for what the leader publishes.
    let changed = !plan.drop.is_empty() || !plan.create.is_empty() || !plan.advance.is_empty();
    let mut copy = plan.copy.clone();
    for slot in &plan.drop {
        if slot.active {
            info!(event = crate::events::SLOT_DROP_DEFERRED, slot = %slot.name, "slot is in use; retrying next cycle");
            continue;
        }
        // A logical slot can only be dropped from its own database.
        let result = match (slot.kind, &slot.database) {
            (SlotKind::Logical, Some(db)) if *db != env.local_conn().dbname => {
                match connect_to(env, db).await {
                    Ok(c) => query::drop_slot(&c, &slot.name).await,
                    Err(e) => Err(e),
                }
            }
            _ => query::drop_slot(client, &slot.name).await,
        };
        match result {
            Ok(true) => {
                info!(event = crate::events::SLOT_DROPPED, slot = %slot.name, kind = ?slot.kind)
            }
            Ok(false) => {}
            Err(e) => warn!(event = crate::events::SLOT_DROP_FAILED, slot = %slot.name, error = %e),
        }
    }
    for slot in &plan.create {
        let result = match (slot.kind, &slot.database, &slot.plugin) {
            (SlotKind::Physical, _, _) => {
                query::create_physical_slot_if_missing(client, &slot.name).await
            }
            (SlotKind::Logical, Some(db), Some(plugin)) if req.i_lead => {
                match connect_to(env, db).await {
                    Ok(c) => query::create_logical_slot_if_missing(&c, &slot.name, plugin).await,
                    Err(e) => Err(e),
                }
            }
            (SlotKind::Logical, _, _) => Ok(false),
        };
        match result {
            Ok(true) => {
                info!(event = crate::events::SLOT_CREATED, slot = %slot.name, kind = ?slot.kind)
            }
            Ok(false) => {}
            Err(e) => {
                warn!(event = crate::events::SLOT_CREATE_FAILED, slot = %slot.name, error = %e)
            }
        }
    }
    for (name, lsn) in &plan.advance {
        // A logical slot can only be advanced from its own database.
        let logical = existing
            .iter()
            .find(|s| s.name == *name && s.kind == SlotKind::Logical);
        let db = logical
            .and_then(|s| s.database.as_deref())
            .filter(|db| *db != env.local_conn().dbname);
        let result = match db {
            Some(db) => match connect_to(env, db).await {
                Ok(c) => query::advance_slot(&c, name, *lsn).await,
                Err(e) => Err(e),
            },
            None => query::advance_slot(client, name, *lsn).await,
        };
        match result {
            Ok(()) => {
                tracing::debug!(event = crate::events::SLOT_ADVANCED, slot = %name, lsn = %crate::ha::lsn::format(*lsn))
            }
            Err(e) => {
                warn!(event = crate::events::SLOT_ADVANCE_FAILED, slot = %name, error = %e);
                if logical.is_some()
                    && crate::ha::logical_slots::recopy_after_advance_error(e.sqlstate())
                    && !copy.contains(name)
                {
                    copy.push(name.clone());
                }
            }
        }
    }
    // A copy whose WAL this replica never had (taken while the leader's
    // slot started before this replica's clone) is copied again.
    let logical: Vec<String> = req
        .expected
        .iter()
        .filter(|w| w.kind == SlotKind::Logical)
        .filter(|w| {
            existing
                .iter()
                .any(|h| h.name == w.name && h.kind == SlotKind::Logical)
        })
        .map(|w| w.name.clone())
        .collect();
    if !req.i_lead && !logical.is_empty() {
        let oldest = query::oldest_wal(client).await?;
        for name in crate::ha::logical_slots::undecodable(&logical, &existing, oldest) {
            if !copy.contains(&name) {
                copy.push(name);
            }
        }
    }
    if !copy.is_empty() {
        tracing::debug!(event = crate::events::SLOT_COPY_PENDING, slots = ?copy);
    }
    let (now, logical_catalog_xmin) = if changed {
        let (_, now, xmins) = existing_slots(pg).await?;
        (now, xmins)
    } else {
        (existing, xmins)
    };
    Ok(SlotSyncOutcome {
        published: req.published(&now),
        copy,
        missing: plan.copy,
        logical_catalog_xmin,
    })
}

/// How far this server replayed, the slots PostgreSQL has, and the
/// `catalog_xmin` of the logical ones.
async fn existing_slots(
    pg: &Prepared,
) -> PgResult<(
    Option<u64>,
    Vec<ExistingSlot>,
    BTreeMap<String, Option<u32>>,
)> {
    let (replay, rows) = query::list_slots(&pg.client, &pg.slots).await?;
    let xmins = rows
        .iter()
        .filter(|r| r.logical)
        .map(|r| (r.name.clone(), r.catalog_xmin))
        .collect();
    let slots = rows
        .into_iter()
        .map(|r| ExistingSlot {
            name: r.name,
            kind: if r.logical {
                SlotKind::Logical
            } else {
                SlotKind::Physical
            },
            database: r.database,
            plugin: r.plugin,
            active: r.active,
            restart_lsn: r.restart_lsn,
            confirmed_flush_lsn: r.confirmed_flush_lsn,
            has_xmin: r.has_xmin,
            lost: r.lost,
        })
        .collect();
    Ok((replay, slots, xmins))
}

/// A connection to the leader with the rewind credentials, as Patroni's
/// slot copy uses (they may read files of the data directory).
async fn connect_leader(env: &JobEnv, leader: &Upstream) -> PgResult<tokio_postgres::Client> {
    // With the rewind section's TLS settings (docs/configuration.md §6.1).
    let conn = ConnParams::to_target(&env.rewind_credentials(), env.target(leader));
    query::connect(&conn, env.dynamic.timing.local_query_timeout()).await
}

/// Read the leader's logical slots `names` with their state files and keep
/// those `req` expects here (docs/ha.md §13.1).
pub async fn read_leader_slots(
    env: &JobEnv,
    req: &SlotRequest,
    names: &[String],
) -> PgResult<Vec<PrimarySlot>> {
    let Some(leader) = &req.leader else {
        return Ok(Vec::new());
    };
    let client = connect_leader(env, leader).await?;
    let rows = query::leader_logical_slots(&client, names).await?;
    let sel = crate::ha::logical_slots::select_copies(&req.expected, rows);
    for name in &sel.mismatched {
        warn!(event = crate::events::SLOT_COPY_MISMATCH, slot = %name, leader = %leader.name,
              "the leader's slot differs from the configuration; not copied");
    }
    Ok(sel.copy)
}

/// Ask the leader how far the `catalog_xmin` of the physical slot this
/// replica's WAL comes through and of the pending logical slots are (Patroni's
/// `check_logical_slots_readiness`).
pub async fn leader_catalog_xmin(
    env: &JobEnv,
    req: &SlotRequest,
    ask: &[String],
) -> PgResult<Option<LeaderCatalogXmin>> {
    let (Some(leader), Some(mine)) = (&req.leader, &req.slot_on_primary) else {
        return Ok(None);
    };
    let client = connect_leader(env, leader).await?;
    Ok(Some(
        match query::leader_catalog_xmins(&client, mine, ask).await? {
            None => LeaderCatalogXmin::NoPhysicalSlot,
            Some((physical, logical)) => LeaderCatalogXmin::Known { physical, logical },
        },
    ))
}

/// Write the copied slots' state files (PostgreSQL stopped). A slot that
/// cannot be written is logged and left out; PostgreSQL starts anyway.
pub fn write_copied_slots(env: &JobEnv, slots: &[PrimarySlot]) -> Vec<String> {
    let mut written = Vec::new();
    for s in slots {
        match crate::postgres::replslot::write_slot_state(&env.data_dir, &s.name, &s.state) {
            Ok(()) => {
                info!(event = crate::events::SLOT_COPIED, slot = %s.name,
                      confirmed_flush_lsn = ?s.confirmed_flush_lsn.map(crate::ha::lsn::format),
                      catalog_xmin = ?s.catalog_xmin);
                written.push(s.name.clone());
            }
            Err(e) => warn!(event = crate::events::SLOT_COPY_FAILED, slot = %s.name, error = %e),
        }
    }
    written
}

async fn connect_to(env: &JobEnv, dbname: &str) -> PgResult<tokio_postgres::Client> {
    let mut conn = env.local_conn();
    conn.dbname = dbname.to_owned();
    query::connect(&conn, env.dynamic.timing.local_query_timeout()).await
}

#[cfg(test)]
mod tests {
    use super::super::postgres_supervisor::absolute;
    use super::*;
    use std::path::Path;

    #[test]
    fn version_from_pg_version_else_the_debian_bin_dir_else_15() {
        let debian = Path::new("/usr/lib/postgresql/16/bin");
        assert_eq!(version_num_of(Some("17\n"), Some(debian)), 170_000);
        assert_eq!(version_num_of(None, Some(debian)), 160_000);
        assert_eq!(
            version_num_of(Some("junk"), Some(Path::new("/opt/pg/bin"))),
            150_000
        );
        assert_eq!(version_num_of(None, None), 150_000);
    }

    #[test]
    fn a_relative_pgpass_is_made_absolute_as_patroni_does() {
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(absolute("run/pgpass"), cwd.join("run/pgpass"));
        assert_eq!(
            absolute("/var/lib/pgpass"),
            std::path::Path::new("/var/lib/pgpass")
        );
    }

    fn env(local_hsf: &str, forced: bool) -> JobEnv {
        let yaml = format!(
            r#"
name: node1
scope: demo
restapi: {{listen: "127.0.0.1:8008", connect_address: "127.0.0.1:8008"}}
postgresql:
  listen: "127.0.0.1:5433"
  connect_address: "127.0.0.1:5433"
  data_dir: /data/pg
  authentication: {{replication: {{username: rep, password: x}}}}
  parameters: {{hot_standby_feedback: "{local_hsf}"}}
"#
        );
        let cfg: Config = serde_yaml_ng::from_str(&yaml).expect("config");
        let dynamic = DynamicConfig::from_json(&serde_json::Value::Null).expect("dynamic config");
        JobEnv {
            bins: Binaries::from_config(&cfg.postgresql),
            cfg: Arc::new(cfg),
            dynamic,
            data_dir: "/data/pg".into(),
            config_dir: "/data/pg".into(),
            standby_names: None,
            inherited_standby_names: None,
            hot_standby_feedback: forced,
        }
    }

    #[test]
    fn the_remote_of_a_standby_cluster_is_cloned_with_the_sections_methods() {
        let mut e = env("off", false);
        Arc::make_mut(&mut e.cfg).postgresql.create_replica_methods = vec!["wal_e".into()];
        let remote = crate::ha::standby_cluster::remote_upstream(Some(("10.0.0.9".into(), 5432)));
        let member = Upstream {
            remote: false,
            ..remote.clone()
        };
        let methods = |e: &JobEnv, u: &Upstream| {
            super::super::replica_methods::methods_for(e, Some(u)).to_vec()
        };
        e.dynamic = DynamicConfig::from_json(&serde_json::json!({
            "standby_cluster": {"host": "10.0.0.9", "create_replica_methods": ["wal_g", "basebackup"]}
        }))
        .expect("dynamic config");
        assert_eq!(methods(&e, &remote), ["wal_g", "basebackup"]);
        // A member is cloned with the local list.
        assert_eq!(methods(&e, &member), ["wal_e"]);
        // No list in the section: basebackup, whatever the local list says.
        e.dynamic = DynamicConfig::from_json(&serde_json::json!({
            "standby_cluster": {"host": "10.0.0.9"}
        }))
        .expect("dynamic config");
        assert_eq!(methods(&e, &remote), ["basebackup"]);
    }

    fn names(e: &JobEnv) -> Option<String> {
        e.parameters().get("synchronous_standby_names").cloned()
    }

    fn sync_on(e: &mut JobEnv) {
        e.dynamic = DynamicConfig::from_json(&serde_json::json!({"synchronous_mode": true}))
            .expect("dynamic config");
    }

    /// docs/replication-modes.md, "A daemon restart keeps the list": the
    /// value inherited from the previous daemon holds while a synchronous
    /// mode is on and the rules set nothing yet; what they set wins.
    #[test]
    fn inherited_standby_names_hold_until_the_rules_set_them() {
        let mut e = env("off", false);
        e.inherited_standby_names = Some("node2".to_owned());
        // Mode off: the configured parameter (none here).
        assert_eq!(names(&e), None);
        sync_on(&mut e);
        assert_eq!(names(&e).as_deref(), Some("node2"));
        e.standby_names = Some(String::new());
        assert_eq!(names(&e).as_deref(), Some(""));
        e.standby_names = Some("node3".to_owned());
        assert_eq!(names(&e).as_deref(), Some("node3"));
        assert_eq!(e.managed_standby_names(), Some("node3"));
    }

    #[test]
    fn forced_hot_standby_feedback_beats_the_configured_value() {
        let hsf = |e: &JobEnv| e.parameters().get("hot_standby_feedback").cloned();
        assert_eq!(hsf(&env("off", true)).as_deref(), Some("on"));
        assert_eq!(hsf(&env("off", false)).as_deref(), Some("off"));
    }
}
