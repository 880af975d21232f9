//! pgpilot: the daemon. One runs beside each PostgreSQL server.

// The lint gate of src/lib.rs; no ioctl here, so unsafe is forbidden outright.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(rustdoc::broken_intra_doc_links)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use actix::prelude::*;
use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use pgpilot::actors::callback_runner::{CallbackRunner, callback_timeout};
use pgpilot::actors::config_manager::ConfigManager;
use pgpilot::actors::dcs_watcher::DcsWatcher;
use pgpilot::actors::leader_elector::{ElectorLinks, LeaderElector};
use pgpilot::actors::postgres_supervisor::PostgresSupervisor;
use pgpilot::api::auth::{AccessPolicy, AccessPolicyUpdater, TlsUpdater};
use pgpilot::api::server::{ApiContext, serve_tls};
use pgpilot::config::{Config, ConfigError, DynamicConfig};
use pgpilot::dcs::Dcs;
use pgpilot::dcs::consul::{ConsulDcs, ConsulSettings};
use pgpilot::dcs::etcd::{EtcdDcs, EtcdSettings};
use pgpilot::dcs::exhibitor::{EnsembleProvider, ExhibitorSettings};
use pgpilot::dcs::zookeeper::{ZkSettings, ZooKeeperDcs};
use pgpilot::logging::{self, LogFormat};
use pgpilot::messages::config::{ReloadConfig, ReloadError};
use pgpilot::messages::elector::Shutdown;

#[derive(Parser)]
#[command(
    name = "pgpilot",
    version,
    about = "High-availability supervisor for PostgreSQL (Patroni-compatible)"
)]
struct Cli {
    /// Configuration file or directory of *.yml files. Without it the
    /// configuration comes from PATRONI_CONFIGURATION or PATRONI_* variables.
    /// With --generate-sample-config or --generate-config: the file to
    /// write (standard output without it).
    config: Option<PathBuf>,
    /// Check the configuration and exit: 0 if valid, 1 if not.
    #[arg(long, alias = "validate-config")]
    validate: bool,
    /// Write a sample configuration for this host and its PostgreSQL
    /// version (Patroni's --generate-sample-config); PATRONI_* variables
    /// are merged in; values to fill in read '#FIXME'.
    #[arg(long, conflicts_with_all = ["validate", "generate_config"])]
    generate_sample_config: bool,
    /// Write a configuration read from the running local PostgreSQL
    /// (Patroni's --generate-config): its settings, pg_hba.conf, data and
    /// program directories. Connects as a superuser.
    #[arg(long, conflicts_with = "validate")]
    generate_config: bool,
    /// With --generate-config: the server's connection string
    /// (`host=... port=... user=...` or a postgresql:// URI); without it
    /// libpq's PG* variables and defaults.
    #[arg(long, requires = "generate_config")]
    dsn: Option<String>,
    /// Print a completion script for the shell (scripts/package).
    #[arg(long, value_enum, hide = true)]
    completion: Option<clap_complete::Shell>,
    /// Write the man page pgpilot.1 into DIR (scripts/package).
    #[arg(long, value_name = "DIR", hide = true)]
    man_pages: Option<PathBuf>,
    /// Overrides the configuration's `log.type`.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// The fence process the daemon starts beside itself (internal).
    #[command(hide = true)]
    Fence {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        /// Exit when no daemon has written for this long (seconds) and
        /// PostgreSQL is not running.
        #[arg(long, default_value_t = 300)]
        orphan_after: u64,
        /// Start the fence in the background and return at once, so that it
        /// leaves the daemon's process tree (src/fence.rs).
        #[arg(long)]
        detach: bool,
    },
}

fn env_map() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// What validation checks beyond the configuration itself: the TLS files
/// (REST API, etcd, ZooKeeper).
const FILE_CHECKS: &[pgpilot::config::FileCheck] = &[
    pgpilot::tls::check_files,
    pgpilot::dcs::etcd_tls::check_files,
    pgpilot::dcs::zookeeper_tls::check_files,
];

fn load(path: Option<&PathBuf>) -> Result<(Config, Vec<String>), ConfigError> {
    let env = env_map();
    match path {
        Some(p) => pgpilot::config::validate_file_with(p, &env, FILE_CHECKS),
        None => {
            let loaded = pgpilot::config::load(None, &env)?;
            let mut warnings = loaded.warnings;
            warnings.extend(pgpilot::config::validate_with(&loaded.config, FILE_CHECKS)?);
            Ok((loaded.config, warnings))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    pgpilot::tls::install_provider();
    if let Some(Sub::Fence {
        state_dir,
        data_dir,
        orphan_after,
        detach,
    }) = &cli.command
    {
        let orphan_after = std::time::Duration::from_secs(*orphan_after);
        if *detach {
            return match pgpilot::fence::launch(state_dir, data_dir, orphan_after) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fence: cannot start: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        return match pgpilot::fence::run(state_dir, data_dir, orphan_after) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fence: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(code) = documents(&cli) {
        return code;
    }
    if cli.validate {
        return match load(cli.config.as_ref()) {
            Ok((_, warnings)) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if nix::unistd::geteuid().is_root() {
        eprintln!(
            "error: pgpilot must not run as root: PostgreSQL refuses to, and the data directory must belong to \
             the user that runs it. Start it as that user, e.g. `runuser -u postgres -- pgpilot CONFIG`."
        );
        return ExitCode::FAILURE;
    }
    let (cfg, warnings) = match load(cli.config.as_ref()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_warnings = match logging::init(cli.log_format, &cfg.log) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for w in log_warnings {
        warn!(event = pgpilot::events::CONFIG_WARNING, "{w}");
    }
    for w in warnings {
        warn!(event = pgpilot::events::CONFIG_WARNING, "{w}");
    }
    let system = System::new();
    let code = system.block_on(async move {
        match run(cfg, cli.config).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(event = pgpilot::events::STARTUP_FAILED, error = %format!("{e:#}"));
                1
            }
        }
    });
    if code != 0 {
        return ExitCode::from(code);
    }
    match system.run_with_code() {
        Ok(0) => ExitCode::SUCCESS,
        Ok(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The options that write a document and exit (a configuration, a
/// completion script, man pages); `None` when none was given.
fn documents(cli: &Cli) -> Option<ExitCode> {
    // The error with its causes (tokio-postgres says only "error
    // connecting to server"; the refused connection is its source).
    let fail = |what: &str, e: &dyn std::error::Error| {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            let c_text = c.to_string();
            if !text.contains(&c_text) {
                text = format!("{text}: {c_text}");
            }
            cause = c.source();
        }
        eprintln!("error: {what}: {text}");
        Some(ExitCode::FAILURE)
    };
    if let Some(shell) = cli.completion {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let script = pgpilot::cli_docs::completion(shell, &mut cmd);
        return match write_output(None, &script) {
            Ok(()) => Some(ExitCode::SUCCESS),
            Err(e) => fail("writing the completion script", &e),
        };
    }
    if let Some(dir) = &cli.man_pages {
        let cmd = <Cli as clap::CommandFactory>::command();
        return match pgpilot::cli_docs::write_man_pages(cmd, dir) {
            Ok(_) => Some(ExitCode::SUCCESS),
            Err(e) => fail(&format!("writing the man page into {}", dir.display()), &e),
        };
    }
    if !cli.generate_sample_config && !cli.generate_config {
        return None;
    }
    let env = env_map();
    let host = pgpilot::postgres::describe::host_address();
    let template = pgpilot::config::generate::template(&host, &env);
    let doc = if cli.generate_sample_config {
        let pg = |k: &str| {
            template
                .pointer(&format!("/postgresql/{k}"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let major = match pgpilot::postgres::describe::postgres_major(
            pg("bin_dir").as_deref(),
            pg("bin_name/postgres").as_deref(),
        ) {
            Ok(m) => m,
            Err(e) => return fail("--generate-sample-config", &e),
        };
        pgpilot::config::generate::sample(template, major)
    } else {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return fail("starting the runtime", &e),
        };
        let server = rt.block_on(pgpilot::postgres::describe::running_server(
            cli.dsn.as_deref(),
            &env,
            &template,
        ));
        match server {
            Ok(server) => pgpilot::config::generate::from_running(template, &server),
            Err(e) => return fail("--generate-config", &e),
        }
    };
    let text = pgpilot::config::generate::render(&doc);
    match write_output(cli.config.as_deref(), text.as_bytes()) {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(e) => fail("writing the configuration", &e),
    }
}

/// `bytes` to the file `path` (its directory created; mode 0600, as it may
/// hold passwords), or to standard output. A closed pipe (`| head`) is no
/// error.
fn write_output(path: Option<&std::path::Path>, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match path {
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)?;
            f.write_all(bytes)
        }
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(bytes).and_then(|()| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            }
        }
    }
}

/// Patroni's `ensure_unique_name` (`pgpilot::unique_name`), before any
/// actor runs or anything is written: a node of this name that answers at
/// its member key's `api_url` stops this start.
async fn refuse_a_running_namesake(cfg: &Config, dcs: &dyn Dcs) -> anyhow::Result<()> {
    use pgpilot::unique_name::{Verdict, check, refusal};
    // Test seam, debug builds only: tests/cluster_core.rs starts a
    // duplicate past this check to show that the DCS client alone never
    // touches another process's leader key (issue 14 §2, "independently").
    #[cfg(debug_assertions)]
    if std::env::var_os("PGPILOT_TEST_SKIP_NAME_CHECK").is_some() {
        warn!(
            event = pgpilot::events::UNIQUE_NAME_UNCHECKED,
            "test seam: starting without the duplicate-name check"
        );
        return Ok(());
    }
    let client = pgpilot::peer_client::build(cfg);
    match check(dcs, &cfg.name, &client).await {
        Verdict::Unique => Ok(()),
        Verdict::Unchecked(e) => {
            warn!(event = pgpilot::events::UNIQUE_NAME_UNCHECKED, error = %e, "the DCS cannot be read: starting without checking that no other node of this name runs");
            Ok(())
        }
        Verdict::Running { url } => {
            let msg = refusal(&cfg.name);
            tracing::error!(event = pgpilot::events::DUPLICATE_NAME, severity = "CRITICAL", name = %cfg.name, probed = %url, "{msg}");
            Err(anyhow::anyhow!(msg))
        }
    }
}

/// The store of the first DCS section in Patroni's order
/// (docs/configuration.md §4; validation refused a first one pgpilot does
/// not support and warned about the others): the backend, the servers it
/// names for the start line, and the section's name.
async fn open_dcs(
    cfg: &Config,
    dynamic: &DynamicConfig,
) -> anyhow::Result<(Arc<dyn Dcs>, Vec<String>, &'static str)> {
    let (ttl, retry) = (dynamic.timing.ttl, dynamic.timing.retry_timeout);
    let section = cfg.dcs_sections().first().copied().unwrap_or("etcd3");
    let missing = || {
        anyhow::anyhow!(
            "no DCS section (consul, etcd3, etcd, exhibitor or zookeeper) in the configuration"
        )
    };
    let (dcs, servers): (Arc<dyn Dcs>, Vec<String>) = match section {
        "consul" => {
            let c = cfg.consul.as_ref().ok_or_else(missing)?;
            let settings = ConsulSettings::from_config(c)?;
            let base = c.base_url().unwrap_or_default();
            let dcs = Arc::new(ConsulDcs::new(
                settings,
                &cfg.cluster_prefix(),
                cfg.name.clone(),
                ttl,
                retry,
            ));
            (dcs, vec![base])
        }
        "etcd" => {
            let e = cfg.etcd.as_ref().ok_or_else(missing)?;
            // TLS files read here, a bad one stops the start (as etcd3 below).
            let settings = EtcdSettings::from_config("etcd", e)?;
            let servers = settings.endpoints.clone();
            let dcs = pgpilot::dcs::etcd2::Etcd2Dcs::with_settings(
                settings,
                cfg.cluster_prefix(),
                cfg.name.clone(),
                ttl,
                retry,
            );
            // As Patroni: etcd refusing our certificate, its own, the user
            // or the password stops the start; etcd not answering does not.
            if let Some(refusal) = dcs.refused_at_start().await {
                anyhow::bail!(refusal);
            }
            (Arc::new(dcs), servers)
        }
        "exhibitor" => {
            // ZooKeeper with the servers Exhibitor lists (docs/dcs.md, "Exhibitor").
            let x = cfg.exhibitor.as_ref().ok_or_else(missing)?;
            let settings = ExhibitorSettings::from_config(x)
                .context("exhibitor.port: Exhibitor's HTTP port is required")?;
            let exhibitors = settings
                .hosts
                .iter()
                .map(|h| format!("exhibitor http://{h}:{}", settings.port))
                .collect();
            let dcs = Arc::new(ZooKeeperDcs::with_exhibitor(
                ZkSettings::from_config(&x.zookeeper(&[]))?,
                EnsembleProvider::new(settings),
                cfg.cluster_prefix(),
                cfg.name.clone(),
                ttl,
                retry,
            ));
            (dcs, exhibitors)
        }
        "zookeeper" => {
            let z = cfg.zookeeper.as_ref().ok_or_else(missing)?;
            let dcs = Arc::new(ZooKeeperDcs::new(
                ZkSettings::from_config(z)?,
                cfg.cluster_prefix(),
                cfg.name.clone(),
                ttl,
                retry,
            ));
            (dcs, z.servers())
        }
        _ => {
            let etcd = cfg.etcd3.as_ref().ok_or_else(missing)?;
            // TLS files are read here, before anything else: a bad one stops
            // the start, naming it (docs/configuration.md §4).
            let settings = EtcdSettings::from_config("etcd3", etcd)?;
            let servers = settings.endpoints.clone();
            let dcs = EtcdDcs::with_settings(
                settings,
                cfg.cluster_prefix(),
                cfg.name.clone(),
                ttl,
                retry,
            );
            // As Patroni's authenticate_on_start: etcd refusing us (its
            // certificate, ours, the user or password) stops the start before
            // the data directory is looked at; etcd not answering does not.
            if let Some(refusal) = dcs.refused_at_start().await {
                anyhow::bail!(refusal);
            }
            (Arc::new(dcs), servers)
        }
    };
    Ok((dcs, servers, section))
}

/// Start the actors and the API; returns once everything runs.
async fn run(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let dynamic = match cfg
        .bootstrap
        .as_ref()
        .map(|b| &b.dcs)
        .filter(|v| v.is_object())
    {
        Some(v) => {
            DynamicConfig::from_json(v).map_err(|e| anyhow::anyhow!("bootstrap.dcs: {e}"))?
        }
        None => DynamicConfig::defaults(),
    };
    let (dcs, servers, section) = open_dcs(&cfg, &dynamic).await?;
    info!(event = pgpilot::events::STARTING, name = %cfg.name, scope = %cfg.scope, dcs_section = section, dcs = ?servers, api = %cfg.restapi.listen, https = cfg.restapi.certfile.is_some());
    refuse_a_running_namesake(&cfg, dcs.as_ref()).await?;

    let cfg = Arc::new(cfg);
    let callbacks = CallbackRunner::new(cfg.postgresql.callbacks.clone(), cfg.scope.clone())
        .with_timeout(callback_timeout(dynamic.timing.ttl))
        .start();
    let mut supervisor_addr = None;
    let mut boards = None;
    let elector = LeaderElector::create(|ctx| {
        let sup = PostgresSupervisor::new(cfg.clone(), dynamic.clone(), ctx.address().recipient())
            .with_callbacks(callbacks.clone().recipient())
            .with_sync_duty(ctx.address().recipient());
        let pg_board = sup.pg_board();
        let sup = sup.start();
        supervisor_addr = Some(sup.clone());
        let elector = LeaderElector::new(
            cfg.clone(),
            dynamic.clone(),
            ElectorLinks {
                dcs: dcs.clone(),
                get_pg: sup.clone().recipient(),
                run_job: sup.clone().recipient(),
                follow: sup.clone().recipient(),
                stop_pg: sup.clone().recipient(),
                stop_gracefully: sup.clone().recipient(),
                sync_slots: sup.clone().recipient(),
                show_rewind_failed: sup.clone().recipient(),
                set_standby_names: sup.clone().recipient(),
                dynamic_changed: sup.clone().recipient(),
                callbacks: callbacks.clone().recipient(),
            },
        );
        boards = Some((elector.board(), pg_board));
        elector
    });
    let supervisor = supervisor_addr.context("supervisor not started")?;
    let (ha_board, pg_board) = boards.context("elector not created")?;
    DcsWatcher::new(dcs.clone(), elector.clone().recipient()).start();

    let reload_path = path.clone();
    let https = cfg.restapi.certfile.is_some();
    let mut manager = ConfigManager::new(
        (*cfg).clone(),
        Box::new(move || {
            let (c, _) = load(reload_path.as_ref())?;
            // The listener and the api_url in the member key follow the
            // scheme chosen at start.
            if c.restapi.certfile.is_some() != https {
                return Err(ReloadError::NeedsRestart {
                    key: "restapi.certfile",
                    change: "switching the REST API between HTTP and HTTPS",
                });
            }
            Ok(c)
        }),
    );
    manager.subscribe(supervisor.clone().recipient());
    manager.subscribe(elector.clone().recipient());
    manager.subscribe(callbacks.clone().recipient());
    manager.subscribe_reloads(supervisor.clone().recipient());

    let access = AccessPolicy::from_restapi(&cfg.restapi);
    manager.subscribe(AccessPolicyUpdater(access.clone()).start().recipient());
    let tls = pgpilot::tls::ServerTls::from_restapi(&cfg.restapi).map_err(anyhow::Error::msg)?;
    let peers = pgpilot::peer_client::PeerClient::new(&cfg);
    manager.subscribe(TlsUpdater(tls.clone(), peers.clone()).start().recipient());
    manager.subscribe(logging::LogReloader.start().recipient());
    let manager = manager.start();

    let server = serve_tls(
        &cfg.restapi.listen,
        ApiContext {
            ha: ha_board,
            pg_board,
            supervisor: supervisor.clone().recipient(),
            config_manager: manager.clone().recipient(),
            failsafe: elector.clone().recipient(),
            pg_ops: supervisor.clone().recipient(),
            sync_duty: elector.clone().recipient(),
            dcs: dcs.clone(),
            wake: elector.clone().recipient(),
            peers,
        },
        access,
        tls,
    )
    .with_context(|| format!("cannot listen on {} (restapi.listen)", cfg.restapi.listen))?;
    actix::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(event = pgpilot::events::API_SERVER_FAILED, error = %e);
        }
    });

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // systemd (docs/operations.md, "systemd"): STOPPING=1 as the clean stop
    // begins; a SIGHUP reload between RELOADING=1 and READY=1
    // (Type=notify-reload).
    let systemd = pgpilot::sd_notify::Notifier::from_env();
    actix::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    info!(event = pgpilot::events::SIGNAL, signal = "SIGTERM");
                    systemd.send_logged(pgpilot::sd_notify::STOPPING);
                    elector.do_send(Shutdown);
                }
                _ = int.recv() => {
                    info!(event = pgpilot::events::SIGNAL, signal = "SIGINT");
                    systemd.send_logged(pgpilot::sd_notify::STOPPING);
                    elector.do_send(Shutdown);
                }
                _ = hup.recv() => {
                    info!(event = pgpilot::events::SIGNAL, signal = "SIGHUP");
                    match systemd.around_reload(manager.send(ReloadConfig)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => warn!(event = pgpilot::events::RELOAD_REFUSED, error = %e),
                        Err(e) => warn!(event = pgpilot::events::RELOAD_FAILED, error = %e),
                    }
                }
            }
        }
    });
    // systemd (Type=notify): the actors and the API are up.
    match pgpilot::sd_notify::notify(pgpilot::sd_notify::READY) {
        Ok(true) => info!(event = pgpilot::events::SD_NOTIFY, state = "READY=1"),
        Ok(false) => {}
        Err(e) => warn!(event = pgpilot::events::SD_NOTIFY_FAILED, error = %e),
    }
    Ok(())
}
