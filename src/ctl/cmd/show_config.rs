//! `pgpilotctl show-config`: print the dynamic configuration (the DCS `config` key) as YAML.

use anyhow::Context;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args { cluster } = a;
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let cluster = ctx.cluster().await?;
    let config = cluster
        .config
        .with_context(|| format!("cluster {} has no dynamic configuration", ctx.scope))?;
    print!("{}", serde_yaml_ng::to_string(&config.value)?);
    Ok(())
}
