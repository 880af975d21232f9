//! `pgpilotctl resume`: leave maintenance mode.

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args { cluster, wait } = a;
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    super::pause::pause_resume(&ctx, false, *wait).await?;
    Ok(())
}
