//! The long procedures the PostgresSupervisor runs in the background:
//! bootstrap, clone, reinitialize, start, promote. Each takes what it needs
//! by value, so it runs while the actor keeps answering status questions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{Config, DynamicConfig, SlotKind};
use crate::ha::Upstream;
use crate::ha::slots::{ExistingSlot, SlotRequest};
use crate::postgres::{
    Binaries, ConnParams, PgError, PgResult, PgpassEntry, Postmaster, RecoveryParams, StopMode,
    conf, datadir, ops, params, query,
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
    /// `synchronous_standby_names` as the sync rules set it
    /// (docs/replication-modes.md §3); `None`: the configured parameter.
    pub standby_names: Option<String>,
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
        // pgpilot manages it while a synchronous mode is on, never the user.
        if let Some(v) = &self.standby_names {
            values.insert("synchronous_standby_names".to_owned(), v.clone());
        }
        values
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
        c
    }

    pub fn pgpass_path(&self) -> PathBuf {
        match &self.cfg.postgresql.pgpass {
            Some(p) => PathBuf::from(p),
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

    fn recovery_for(&self, upstream: Option<&Upstream>) -> PgResult<RecoveryParams> {
        let pg = &self.cfg.postgresql;
        // `nostream`: a standby fed by restore_command only (docs/operations.md, "Tags").
        let upstream = upstream.filter(|_| !self.cfg.tags.nostream);
        let primary_conninfo = match upstream {
            None => String::new(),
            Some(u) => {
                let passfile = self.write_pgpass()?;
                conf::primary_conninfo(
                    &u.host,
                    u.port,
                    pg.authentication
                        .replication
                        .username
                        .as_deref()
                        .unwrap_or("replicator"),
                    &passfile,
                    &self.cfg.name,
                    &pg.database,
                )
            }
        };
        Ok(RecoveryParams {
            primary_conninfo,
            primary_slot_name: (upstream.is_some() && self.dynamic.use_slots)
                .then(|| conf::slot_name(&self.cfg.name)),
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
    let host = if conn.host.starts_with('/') {
        format!("?host={}", conn.host)
    } else {
        String::new()
    };
    let url = if host.is_empty() {
        format!(
            "postgres://{su_name}@{}:{}/{}",
            conn.host, conn.port, conn.dbname
        )
    } else {
        format!("postgres://{su_name}@:{}/{}{host}", conn.port, conn.dbname)
    };
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

/// How a rewind job failed.
#[derive(Debug)]
pub enum RewindError {
    /// pg_rewind did not run, or it succeeded and the start after it
    /// failed: the data directory was not damaged, a later cycle may retry.
    Retry(PgError),
    /// pg_rewind ran (or cannot work on this data directory) and failed.
    Failed(PgError),
}

impl std::fmt::Display for RewindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RewindError::Retry(e) => write!(f, "{e}"),
            RewindError::Failed(e) => write!(f, "pg_rewind failed: {e}"),
        }
    }
}

impl JobEnv {
    /// The role pg_rewind connects as: `authentication.rewind` if it names
    /// a user, else the superuser.
    fn rewind_credentials(&self) -> (String, Option<String>) {
        let auth = &self.cfg.postgresql.authentication;
        match auth
            .rewind
            .as_ref()
            .and_then(|c| c.username.clone().map(|u| (u, c)))
        {
            Some((u, c)) => (u, c.password.clone()),
            None => (
                auth.superuser
                    .username
                    .clone()
                    .unwrap_or_else(|| "postgres".to_owned()),
                auth.superuser.password.clone(),
            ),
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
pub async fn rewind(env: &JobEnv, from: &Upstream) -> Result<Postmaster, RewindError> {
    use RewindError::{Failed, Retry};
    let cd = crate::postgres::controldata::read(&env.bins, &env.data_dir)
        .await
        .map_err(Retry)?;
    if !cd.wal_log_hints && !cd.data_checksums {
        return Err(Failed(PgError::InvalidOption(
            "pg_rewind needs wal_log_hints=on or data checksums, and this cluster has neither"
                .into(),
        )));
    }
    let passfile = env.write_pgpass().map_err(Retry)?;
    let (user, password) = env.rewind_credentials();
    let mut leader = ConnParams::new(from.host.clone(), from.port, user.clone());
    leader.password = password;
    leader.dbname = env.cfg.postgresql.database.clone();
    wait_leader_checkpoint(env, &leader).await.map_err(Retry)?;
    let extra = match &env.cfg.postgresql.rewind {
        Some(v) => ops::rewind_args(v).map_err(Failed)?,
        None => Vec::new(),
    };
    // Crash recovery reads postgresql.conf, written here with the current
    // parameters as a primary; the command-line ones (wal_log_hints above
    // all) are not in the file and go on its command line.
    let conf_file = env.write_config(None).map_err(Retry)?;
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
            .map_err(Failed)?;
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            tracing::debug!(event = crate::events::REWIND_OUTPUT, line = %line);
        }
    }
    let source = [
        ("host", from.host.clone()),
        ("port", from.port.to_string()),
        ("user", user),
        ("dbname", env.cfg.postgresql.database.clone()),
        ("passfile", passfile.display().to_string()),
        ("connect_timeout", "5".to_owned()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", conf::conninfo_value(v)))
    .collect::<Vec<_>>()
    .join(" ");
    info!(event = crate::events::REWIND, from = %from.name, "running pg_rewind");
    let out = ops::rewind(
        &env.bins,
        &env.data_dir,
        &conf_file,
        &source,
        Some(passfile.as_path()),
        &extra,
    )
    .await
    .map_err(Failed)?;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        info!(event = crate::events::REWIND_OUTPUT, line = %line);
    }
    info!(event = crate::events::REWIND_DONE, from = %from.name);
    start(env, Some(Some(from))).await.map_err(Retry)
}

/// Bring the slots in line with `req` (see [`crate::ha::slots`]): drop the
/// unexpected ones that are not in use (an active one is retried next
/// cycle), create the missing ones, advance those a replica follows.
/// Returns what the leader publishes in `status.slots` (see
/// [`SlotRequest::published`]).
///
/// `client` is the supervisor's long-lived status connection (no session
/// per cycle); logical slots of other databases need their own.
pub async fn sync_slots(
    env: &JobEnv,
    client: &tokio_postgres::Client,
    req: &SlotRequest,
) -> PgResult<BTreeMap<String, u64>> {
    let existing = existing_slots(client).await?;
    // Only a replica advances slots, and never beyond what it replayed.
    let replay = if req.i_lead {
        None
    } else {
        query::replay_lsn(client).await?
    };
    let plan = req.plan(&existing, replay);
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
        let db = existing
            .iter()
            .find(|s| s.name == *name && s.kind == SlotKind::Logical)
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
            Err(e) => warn!(event = crate::events::SLOT_ADVANCE_FAILED, slot = %name, error = %e),
        }
    }
    if !plan.copy.is_empty() {
        // Copying a logical slot from the primary is not done yet
        // (docs/operations.md, "Replication slots").
        tracing::debug!(event = crate::events::SLOT_COPY_PENDING, slots = ?plan.copy);
    }
    Ok(req.published(&existing_slots(client).await?))
}

async fn existing_slots(client: &tokio_postgres::Client) -> PgResult<Vec<ExistingSlot>> {
    Ok(query::list_slots(client)
        .await?
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
        .collect())
}

async fn connect_to(env: &JobEnv, dbname: &str) -> PgResult<tokio_postgres::Client> {
    let mut conn = env.local_conn();
    conn.dbname = dbname.to_owned();
    query::connect(&conn, env.dynamic.timing.local_query_timeout()).await
}
