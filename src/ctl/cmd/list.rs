//! `pgpilotctl list`: list the members of one or more clusters.

use std::io::Write;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, Format, watch_every};
use crate::ctl::{list, table};
use crate::dcs::Cluster;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster names (default: `scope` from the config file), listed in
    /// turn as patronictl does.
    #[arg(value_name = "CLUSTER")]
    pub clusters: Vec<String>,
    /// Always show the Pending restart and Tags columns.
    #[arg(short = 'e', long = "extended")]
    pub extended: bool,
    /// Print the time (UTC) before the output.
    #[arg(short = 't', long = "timestamp")]
    pub timestamp: bool,
    /// Repeat every 2 seconds until interrupted.
    #[arg(short = 'W')]
    pub watch_default: bool,
    /// Repeat every SECONDS until interrupted.
    #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
    pub watch: Option<f64>,
    #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
    pub format: Format,
}

/// One context per cluster named (the config file's `scope` when none).
pub fn contexts(
    conn: &Connect,
    cfg: &ClientConfig,
    clusters: &[String],
) -> anyhow::Result<Vec<Ctx>> {
    if clusters.is_empty() {
        return Ok(vec![Ctx::new(conn, cfg, None)?]);
    }
    clusters
        .iter()
        .map(|c| Ctx::new(conn, cfg, Some(c)))
        .collect()
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        clusters,
        extended,
        timestamp,
        watch_default,
        watch,
        format,
    } = a;
    let ctxs = contexts(conn, cfg, clusters)?;
    let every = watch_every(*watch, *watch_default)?;
    loop {
        if *timestamp {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            println!("{} UTC", crate::ctl::time::format_utc(now));
        }
        for ctx in &ctxs {
            let cluster = ctx.cluster().await?;
            print_cluster(&cluster, &ctx.scope, *extended, *format)?;
        }
        let Some(every) = every else { break };
        std::io::stdout().flush().ok();
        tokio::time::sleep(every).await;
    }
    Ok(())
}

/// The cluster in `format`, as `list` prints it (also `remove -f`).
pub fn print_cluster(
    cluster: &Cluster,
    scope: &str,
    extended: bool,
    format: Format,
) -> anyhow::Result<()> {
    let rows = list::rows(cluster, scope);
    match format {
        Format::Pretty => {
            let title = list::title(cluster, scope);
            print!("{}", list::render_rows(&rows, &title, extended));
            print!("{}", list::footer(cluster));
        }
        Format::Json => println!("{}", serde_json::to_string(&rows)?),
        Format::Yaml => print!("{}", serde_yaml_ng::to_string(&rows)?),
        Format::Tsv => {
            let (h, c) = list::cells(&rows, extended, true);
            print!("{}", table::tsv(&h, &c));
        }
    }
    Ok(())
}
