//! `pgpilotctl dsn`: print the connection string of the primary or a replica.

use anyhow::Context;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, Role, pick_member};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    #[arg(short = 'r', long = "role", value_enum)]
    pub role: Option<Role>,
    #[arg(short = 'm', long = "member")]
    pub member: Option<String>,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        cluster,
        role,
        member,
    } = a;
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let cluster = ctx.cluster().await?;
    let m = pick_member(&cluster, &ctx.scope, *role, member.as_deref())?;
    let (host, port) = m
        .data
        .conn_host_port()
        .with_context(|| format!("member {} has no usable conn_url", m.name))?;
    println!("host={host} port={port}");
    Ok(())
}
