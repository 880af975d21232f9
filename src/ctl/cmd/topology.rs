//! `pgpilotctl topology`: the members as a replication tree.

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx};
use crate::ctl::list;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args { cluster } = a;
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let cluster = ctx.cluster().await?;
    let rows = list::topology_rows(&cluster, &ctx.scope);
    let title = list::title(&cluster, &ctx.scope);
    print!("{}", list::render_rows(&rows, &title, false));
    print!("{}", list::footer(&cluster));
    Ok(())
}
