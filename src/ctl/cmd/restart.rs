//! `pgpilotctl restart`: restart PostgreSQL on members (all members when none is named).

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
    /// Restart one member of those selected, at random.
    #[arg(long = "any")]
    pub any: bool,
    /// Only members waiting for a restart to apply settings.
    #[arg(short = 'p', long = "pending")]
    pub pending: bool,
    /// Schedule the restart: ISO 8601 (a time without a zone is UTC),
    /// or `now`.
    #[arg(long)]
    pub scheduled: Option<String>,
    /// Restart only members running a PostgreSQL older than this
    /// (`X.Y` or `X.Y.Z`).
    #[arg(long = "pg-version")]
    pub pg_version: Option<String>,
    /// Fail the restart if PostgreSQL is not up within this (`30`,
    /// `30s`, `2min`); on the leader a failover follows.
    #[arg(long)]
    pub timeout: Option<String>,
    #[arg(long)]
    pub force: bool,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        args,
        role,
        any,
        pending,
        scheduled,
        pg_version,
        timeout,
        force,
    } = a;
    let (cluster, members) = split_cluster_members(cfg, args);
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let extras = RestartExtras {
        scheduled: scheduled.clone(),
        pg_version: pg_version.clone(),
        timeout: timeout.clone(),
        any: *any,
    };
    per_member(&ctx, members, "restart", *role, *pending, *force, extras).await?;
    Ok(())
}
