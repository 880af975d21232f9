//! `pgpilotctl remove`: delete the whole cluster from the DCS (asks for the cluster name,
//! "Yes I am aware" and, if there is a leader, its name).

use std::io::{BufRead, Write};

use anyhow::{Context, bail};

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: String,
    /// How the cluster is shown before the questions (as `list -f`).
    #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
    pub format: Format,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args { cluster, format } = a;
    let ctx = Ctx::new(conn, cfg, Some(cluster))?;
    let c = ctx.cluster().await?;
    super::list::print_cluster(&c, &ctx.scope, false, *format)?;
    let mut lines = std::io::stdin().lock().lines();
    let mut ask = |q: &str| -> anyhow::Result<String> {
        eprint!("{q}: ");
        std::io::stderr().flush().ok();
        Ok(lines
            .next()
            .transpose()
            .context("reading the answer from stdin")?
            .unwrap_or_default()
            .trim()
            .to_owned())
    };
    if ask("Please confirm the cluster name to remove")? != ctx.scope {
        bail!("aborted: the cluster name does not match {}", ctx.scope);
    }
    if ask(
        "You are about to remove all information in DCS for this cluster, please type: \"Yes I am aware\"",
    )? != "Yes I am aware"
    {
        bail!("aborted: you did not exactly type \"Yes I am aware\"");
    }
    if let Some(l) = c.leader_name()
        && ask("This cluster currently is healthy. Please specify the leader name to continue")?
            != l
    {
        bail!("aborted: you did not specify the current leader of the cluster ({l})");
    }
    ctx.dcs
        .delete_cluster()
        .await
        .with_context(|| format!("deleting cluster {} from the DCS", ctx.scope))?;
    println!("Cluster {} removed from the DCS", ctx.scope);
    Ok(())
}
