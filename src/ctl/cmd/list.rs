//! `pgpilotctl list`: list the members of a cluster.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, Format};
use crate::ctl::{list, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster name (default: `scope` from the config file).
    pub cluster: Option<String>,
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

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        cluster,
        extended,
        timestamp,
        watch_default,
        watch,
        format,
    } = a;
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let every = match (watch, watch_default) {
        (Some(s), _) if *s > 0.0 => Some(Duration::from_secs_f64(*s)),
        (Some(s), _) => bail!("--watch {s}: expected a positive number of seconds"),
        (None, true) => Some(Duration::from_secs(2)),
        (None, false) => None,
    };
    loop {
        if *timestamp {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            println!("{} UTC", crate::ctl::time::format_utc(now));
        }
        print_list(&ctx, *extended, *format).await?;
        let Some(every) = every else { break };
        std::io::stdout().flush().ok();
        tokio::time::sleep(every).await;
    }
    Ok(())
}

async fn print_list(ctx: &Ctx, extended: bool, format: Format) -> anyhow::Result<()> {
    let cluster = ctx.cluster().await?;
    let rows = list::rows(&cluster, &ctx.scope);
    match format {
        Format::Pretty => {
            let title = list::title(&cluster, &ctx.scope);
            print!("{}", list::render_rows(&rows, &title, extended));
            print!("{}", list::footer(&cluster));
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
