//! `pgpilotctl failover`: make a given member the leader, even without a healthy leader.

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    #[arg(long)]
    pub candidate: Option<String>,
    #[arg(long)]
    pub force: bool,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        cluster,
        candidate,
        force,
    } = a;
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    super::switchover::switchover(&ctx, true, None, candidate.as_deref(), None, *force).await?;
    Ok(())
}
