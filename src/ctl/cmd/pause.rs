//! `pgpilotctl pause`: put the cluster in maintenance mode.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, leader_first, loop_wait, paused};
use crate::dcs::Cluster;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    /// Wait until every member reports the pause.
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args { cluster, wait } = a;
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    pause_resume(&ctx, true, *wait).await?;
    Ok(())
}

/// `PATCH /config` to the leader first, then the other members, until one
/// answers; bails with the last failure.
pub(crate) async fn patch_config(
    ctx: &Ctx,
    cluster: &Cluster,
    patch: &Value,
) -> anyhow::Result<Value> {
    let order = leader_first(cluster);
    let mut last = anyhow::anyhow!("cluster {} has no members", ctx.scope);
    for m in order {
        match ctx
            .request(m, reqwest::Method::PATCH, "config", Some(patch))
            .await
        {
            Ok((200, body)) => return Ok(serde_json::from_str(&body).unwrap_or(Value::Null)),
            Ok((code, body)) => {
                bail!(
                    "member {}: PATCH /config answered {code}: {}",
                    m.name,
                    body.trim()
                )
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

pub(crate) async fn pause_resume(ctx: &Ctx, pause: bool, wait: bool) -> anyhow::Result<()> {
    let cluster = ctx.cluster().await?;
    if paused(&cluster) == pause {
        bail!(
            "cluster {} is {}",
            ctx.scope,
            if pause {
                "already paused"
            } else {
                "not paused"
            }
        );
    }
    let patch = json!({ "pause": if pause { Value::Bool(true) } else { Value::Null } });
    patch_config(ctx, &cluster, &patch).await?;
    if wait {
        let deadline = Instant::now() + Duration::from_secs(loop_wait(&cluster) + 30);
        eprint!(
            "Waiting for the cluster to {}",
            if pause { "pause" } else { "resume" }
        );
        loop {
            let c = ctx.cluster().await?;
            let pending: Vec<&str> = c
                .members
                .iter()
                .filter(|m| !m.data.api_url.is_empty() && m.data.pause != pause)
                .map(|m| m.name.as_str())
                .collect();
            if pending.is_empty() {
                eprintln!();
                break;
            }
            if Instant::now() > deadline {
                eprintln!();
                bail!(
                    "members not reporting the change yet: {}",
                    pending.join(", ")
                );
            }
            eprint!(".");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    if pause {
        println!("Success: cluster management is paused");
    } else {
        println!("Success: cluster management is resumed");
    }
    Ok(())
}
