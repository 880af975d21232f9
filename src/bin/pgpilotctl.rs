//! pgpilotctl: the operator's command-line tool (patronictl's habits). It
//! reads the cluster from the DCS and acts through the REST API of the
//! leader or of the named members. This file parses the command line; the
//! commands are in `pgpilot::ctl::cmd`, one per file.

// The lint gate of src/lib.rs; no ioctl here, so unsafe is forbidden outright.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(rustdoc::broken_intra_doc_links)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use pgpilot::ctl::cmd;
use pgpilot::ctl::context::Connect;

#[derive(Parser)]
#[command(
    name = "pgpilotctl",
    version,
    about = "Manage a pgpilot (or Patroni) cluster"
)]
struct Cli {
    /// Configuration file (the daemon's YAML works).
    #[arg(short = 'c', long = "config-file", env = "PATRONICTL_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// DCS to use instead of the config file's (see `help` below).
    #[arg(
        short = 'd',
        long = "dcs-url",
        visible_alias = "dcs",
        env = "DCS_URL",
        help = "DCS to use instead of the config file's: \
                [etcd|etcd3|consul|zookeeper|exhibitor://]host[:port][/namespace]"
    )]
    dcs_url: Option<String>,
    /// Citus group: the keys of `/<namespace>/<scope>/<group>` (Patroni's
    /// layout for a Citus cluster's groups).
    #[arg(long = "group", global = true, value_name = "GROUP")]
    group: Option<u32>,
    /// Do not check the certificates of https members (like `ctl.insecure`).
    #[arg(short = 'k', long = "insecure", global = true)]
    insecure: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the members of one or more clusters.
    List(cmd::list::Args),
    /// The members as a replication tree.
    Topology(cmd::topology::Args),
    /// The timeline history of the cluster.
    History(cmd::history::Args),
    /// Print the dynamic configuration (the DCS `config` key) as YAML.
    ShowConfig(cmd::show_config::Args),
    /// Change the dynamic configuration (PATCH /config on the leader).
    EditConfig(cmd::edit_config::Args),
    /// Put the cluster in maintenance mode.
    Pause(cmd::pause::Args),
    /// Leave maintenance mode.
    Resume(cmd::resume::Args),
    /// Hand the leader role to a healthy replica.
    Switchover(cmd::switchover::Args),
    /// Demote the cluster to a standby cluster of a remote PostgreSQL.
    DemoteCluster(cmd::demote_cluster::Args),
    /// Promote a standby cluster: make it run standalone.
    PromoteCluster(cmd::promote_cluster::Args),
    /// Make a given member the leader, even without a healthy leader.
    Failover(cmd::failover::Args),
    /// Restart PostgreSQL on members (all members when none is named).
    Restart(cmd::restart::Args),
    /// Reload the configuration of members (all members when none is named).
    Reload(cmd::reload::Args),
    /// Cancel scheduled actions: `flush [CLUSTER] switchover` or
    /// `flush [CLUSTER [MEMBER...]] restart [--role ROLE]` (the selected
    /// members' scheduled restarts, every member's by default).
    Flush(cmd::flush::Args),
    /// Run SQL on a member (default: the leader) and print the result.
    Query(cmd::query::Args),
    /// Rebuild replicas from the leader (POST /reinitialize).
    Reinit(cmd::reinit::Args),
    /// Delete the whole cluster from the DCS (asks for the cluster name,
    /// "Yes I am aware" and, if there is a leader, its name).
    Remove(cmd::remove::Args),
    /// Print the connection string of the primary or a replica.
    Dsn(cmd::dsn::Args),
    /// The version of pgpilotctl, and of the members' daemons and PostgreSQL.
    Version(cmd::version::Args),
    /// Print a shell completion script, e.g. `pgpilotctl completion bash`
    /// (docs/cli.md says where to put it).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (`pgpilotctl.1`, `pgpilotctl-<command>.1`) into DIR
    /// (scripts/package).
    #[command(hide = true)]
    ManPages { dir: PathBuf },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The daemon's layers: the file (or directory), then PATRONI_*
    // variables, or PATRONI_CONFIGURATION alone.
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let cfg = pgpilot::config::load_client(cli.config.as_deref(), &env)
        .context("reading the configuration")?;
    let conn = Connect {
        dcs_url: cli.dcs_url.clone(),
        insecure: cli.insecure,
        group: cli.group,
    };
    match &cli.command {
        Command::List(a) => cmd::list::run(&conn, &cfg, a).await,
        Command::Topology(a) => cmd::topology::run(&conn, &cfg, a).await,
        Command::History(a) => cmd::history::run(&conn, &cfg, a).await,
        Command::ShowConfig(a) => cmd::show_config::run(&conn, &cfg, a).await,
        Command::EditConfig(a) => cmd::edit_config::run(&conn, &cfg, a).await,
        Command::Pause(a) => cmd::pause::run(&conn, &cfg, a).await,
        Command::Resume(a) => cmd::resume::run(&conn, &cfg, a).await,
        Command::Switchover(a) => cmd::switchover::run(&conn, &cfg, a).await,
        Command::DemoteCluster(a) => cmd::demote_cluster::run(&conn, &cfg, a).await,
        Command::PromoteCluster(a) => cmd::promote_cluster::run(&conn, &cfg, a).await,
        Command::Failover(a) => cmd::failover::run(&conn, &cfg, a).await,
        Command::Restart(a) => cmd::restart::run(&conn, &cfg, a).await,
        Command::Reload(a) => cmd::reload::run(&conn, &cfg, a).await,
        Command::Flush(a) => cmd::flush::run(&conn, &cfg, a).await,
        Command::Query(a) => cmd::query::run(&conn, &cfg, a).await,
        Command::Reinit(a) => cmd::reinit::run(&conn, &cfg, a).await,
        Command::Remove(a) => cmd::remove::run(&conn, &cfg, a).await,
        Command::Dsn(a) => cmd::dsn::run(&conn, &cfg, a).await,
        Command::Version(a) => cmd::version::run(&conn, &cfg, a).await,
        // Answered in main, before any configuration is read.
        Command::Completion { .. } | Command::ManPages { .. } => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::ManPages { dir } = &cli.command {
        let cmd = <Cli as clap::CommandFactory>::command();
        return match pgpilot::cli_docs::write_man_pages(cmd, dir) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: writing the man pages into {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Completion { shell } = cli.command {
        // Needs neither a configuration nor a DCS.
        // Generated into memory: clap_complete panics on a failed write
        // (`| head`), we report it.
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "pgpilotctl", &mut script);
        let mut out = std::io::stdout().lock();
        return match out.write_all(&script).and_then(|()| out.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: writing the completion script: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
