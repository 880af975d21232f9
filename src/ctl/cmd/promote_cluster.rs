//! `pgpilotctl promote-cluster`: make a standby cluster run standalone
//! (docs/ha.md §16): the `standby_cluster` section is removed through
//! `PATCH /config`, then the command waits for the leader to run as
//! `primary`.

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    #[arg(long)]
    pub force: bool,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let ctx = Ctx::new(conn, cfg, a.cluster.as_ref())?;
    super::demote_cluster::change_cluster_role(&ctx, a.force, None).await
}
