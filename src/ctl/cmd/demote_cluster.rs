//! `pgpilotctl demote-cluster`: make the cluster a standby cluster of a
//! remote PostgreSQL (docs/ha.md §16), as Patroni's command does: the
//! `standby_cluster` section is set through `PATCH /config`, then the
//! command waits for the leader to run as `standby_leader`.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Map, Value, json};

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, confirm};
use crate::ctl::list;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    /// Address of the remote node.
    #[arg(long)]
    pub host: Option<String>,
    /// Port of the remote node.
    #[arg(long)]
    pub port: Option<u16>,
    /// Command to restore WAL records from the remote primary.
    #[arg(long)]
    pub restore_command: Option<String>,
    /// Name of the slot on the remote node to use for replication.
    #[arg(long)]
    pub primary_slot_name: Option<String>,
    #[arg(long)]
    pub force: bool,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    if a.host.is_none() && a.port.is_none() && a.restore_command.is_none() {
        bail!("At least --host, --port or --restore-command should be specified");
    }
    let mut section = Map::new();
    for (key, value) in [
        ("host", a.host.clone().map(Value::from)),
        ("port", a.port.map(Value::from)),
        (
            "primary_slot_name",
            a.primary_slot_name.clone().map(Value::from),
        ),
        (
            "restore_command",
            a.restore_command.clone().map(Value::from),
        ),
    ] {
        if let Some(v) = value {
            section.insert(key.into(), v);
        }
    }
    let ctx = Ctx::new(conn, cfg, a.cluster.as_ref())?;
    change_cluster_role(&ctx, a.force, Some(Value::Object(section))).await
}

/// Patroni's `change_cluster_role`: `standby` `Some(section)` demotes,
/// `None` promotes. Refuses a cluster without a leader or already in the
/// wanted state; asks unless `force`; waits until the leader runs in its
/// new role (and, demoting, the old leader runs again), or gives up after
/// five minutes.
pub(crate) async fn change_cluster_role(
    ctx: &Ctx,
    force: bool,
    standby: Option<Value>,
) -> anyhow::Result<()> {
    let demote = standby.is_some();
    let action = if demote { "demot" } else { "promot" };
    let target_role = if demote { "standby_leader" } else { "primary" };
    let cluster = ctx.cluster().await?;
    let Some(leader) = cluster.leader_member().cloned() else {
        bail!("Cluster has no leader, {action}ion is not possible");
    };
    if leader.data.role == target_role {
        bail!("Cluster is already in the required state");
    }
    println!("Current cluster topology");
    print!("{}", list::render_table(&cluster, &ctx.scope));
    if !force {
        confirm(&format!(
            "Are you sure you want to {action}e {} cluster?",
            ctx.scope
        ))?;
    }
    let patch = json!({ "standby_cluster": standby.unwrap_or(Value::Null) });
    if let Err(e) = super::pause::patch_config(ctx, &cluster, &patch).await {
        bail!("Failed to {action}e {} cluster: {e:#}", ctx.scope);
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let c = ctx.cluster().await?;
        let now_leader = c.leader_member();
        let old_running = c
            .member(&leader.name)
            .is_some_and(|m| m.data.state == "running");
        if let Some(l) = now_leader
            && l.data.role == target_role
            && l.data.state == "running"
            && (!demote || old_running)
        {
            println!(
                "{} cluster is successfully {action}ed",
                crate::ctl::time::patroni_timestamp(crate::ctl::time::now_local())
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the {} cluster did not finish being {action}ed within 5 minutes",
                ctx.scope
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
