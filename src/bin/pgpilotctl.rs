//! pgpilotctl: the operator's command-line tool (patronictl's habits).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use pgpilot::config::Etcd;
use pgpilot::ctl::list;
use pgpilot::dcs::etcd::EtcdDcs;
use pgpilot::dcs::{Dcs, keys};

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
    /// DCS to use instead of the config file's, e.g. etcd3://127.0.0.1:2379.
    #[arg(short = 'd', long = "dcs-url")]
    dcs_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the members of a cluster.
    List {
        /// Cluster name (default: `scope` from the config file).
        cluster: Option<String>,
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Pretty,
    Json,
    Yaml,
}

/// The parts of a daemon config the CLI needs; everything else is ignored.
#[derive(Default, Deserialize)]
struct CtlConfig {
    scope: Option<String>,
    namespace: Option<String>,
    #[serde(alias = "etcd")]
    etcd3: Option<Etcd>,
}

fn load_ctl_config(path: Option<&PathBuf>) -> anyhow::Result<CtlConfig> {
    let Some(path) = path else {
        return Ok(CtlConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn endpoints(cli: &Cli, cfg: &CtlConfig) -> anyhow::Result<Vec<String>> {
    if let Some(url) = &cli.dcs_url {
        let rest = url
            .strip_prefix("etcd3://")
            .or_else(|| url.strip_prefix("etcd://"))
            .with_context(|| format!("--dcs-url {url}: only etcd3://host:port is supported"))?;
        return Ok(rest.split(',').map(|h| format!("http://{h}")).collect());
    }
    match &cfg.etcd3 {
        Some(e) if !e.endpoints().is_empty() => Ok(e.endpoints()),
        _ => bail!(
            "no DCS given: pass -c CONFIG with an etcd3 section, or --dcs-url etcd3://host:port"
        ),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = load_ctl_config(cli.config.as_ref())?;
    let endpoints = endpoints(&cli, &cfg)?;
    match &cli.command {
        Command::List { cluster, format } => {
            let scope = cluster
                .clone()
                .or_else(|| cfg.scope.clone())
                .context("no cluster name: give one or set `scope` in the config file")?;
            let namespace = cfg
                .namespace
                .clone()
                .unwrap_or_else(|| "/service".to_owned());
            let dcs: Arc<dyn Dcs> = Arc::new(EtcdDcs::new(
                endpoints.clone(),
                None,
                keys::cluster_prefix(&namespace, &scope),
                "pgpilotctl".to_owned(),
                Duration::from_secs(30),
                Duration::from_secs(10),
            ));
            let cluster = dcs
                .load_cluster()
                .await
                .with_context(|| format!("reading cluster {scope} from {}", endpoints.join(",")))?;
            match format {
                Format::Pretty => print!("{}", list::render_table(&cluster, &scope)),
                Format::Json => {
                    println!("{}", serde_json::to_string(&list::rows(&cluster, &scope))?)
                }
                Format::Yaml => print!(
                    "{}",
                    serde_yaml_ng::to_string(&list::rows(&cluster, &scope))?
                ),
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
