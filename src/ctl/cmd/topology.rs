//! `pgpilotctl topology`: the members of one or more clusters as a
//! replication tree.

use std::io::Write;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, watch_every};
use crate::ctl::list;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cluster names (default: `scope` from the config file).
    #[arg(value_name = "CLUSTER")]
    pub clusters: Vec<String>,
    /// Repeat every 2 seconds until interrupted.
    #[arg(short = 'W')]
    pub watch_default: bool,
    /// Repeat every SECONDS until interrupted.
    #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
    pub watch: Option<f64>,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        clusters,
        watch_default,
        watch,
    } = a;
    let ctxs = super::list::contexts(conn, cfg, clusters)?;
    let every = watch_every(*watch, *watch_default)?;
    loop {
        for ctx in &ctxs {
            let cluster = ctx.cluster().await?;
            let rows = list::topology_rows(&cluster, &ctx.scope);
            let title = list::title(&cluster, &ctx.scope);
            print!("{}", list::render_rows(&rows, &title, false));
            print!("{}", list::footer(&cluster));
        }
        let Some(every) = every else { break };
        std::io::stdout().flush().ok();
        tokio::time::sleep(every).await;
    }
    Ok(())
}
