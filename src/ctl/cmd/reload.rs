//! `pgpilotctl reload`: reload the configuration of members (all members when none is named).

use super::members::{RestartExtras, per_member};
use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, Role, split_cluster_members};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `[CLUSTER] [MEMBER...]`: the cluster name may be left out when it
    /// is the config file's `scope`.
    #[arg(value_name = "CLUSTER|MEMBER")]
    pub args: Vec<String>,
    /// Only members with this role.
    #[arg(short = 'r', long = "role", value_enum)]
    pub role: Option<Role>,
    #[arg(long)]
    pub force: bool,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args { args, role, force } = a;
    let (cluster, members) = split_cluster_members(cfg, args);
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    per_member(
        &ctx,
        members,
        "reload",
        *role,
        false,
        *force,
        RestartExtras::default(),
    )
    .await?;
    Ok(())
}
