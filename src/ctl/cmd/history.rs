//! `pgpilotctl history`: the timeline history of the cluster.

use serde_json::Value;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, Format, print_values};
use crate::ctl::history;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
    pub format: Format,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args { cluster, format } = a;
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let cluster = ctx.cluster().await?;
    let lines = cluster.history.unwrap_or_default();
    let headers: Vec<String> = history::HEADERS.iter().map(|h| (*h).to_owned()).collect();
    print_values(
        *format,
        &headers,
        &history::cells(&lines),
        &Value::Array(history::rows(&lines)),
    );
    Ok(())
}
