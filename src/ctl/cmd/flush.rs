//! `pgpilotctl flush`: cancel scheduled actions: `flush [CLUSTER] switchover` or
//! `flush [CLUSTER [MEMBER...]] restart [--role ROLE]` (the selected
//! members' scheduled restarts, every member's by default).

use anyhow::{Context, bail};

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, Role, confirm, leader_first, member_of, role_matches};
use crate::dcs::Member;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `[CLUSTER [MEMBER...]] switchover|restart`.
    #[arg(value_name = "CLUSTER|MEMBER|TARGET", required = true)]
    pub args: Vec<String>,
    /// `flush restart`: only members with this role.
    #[arg(short = 'r', long = "role", value_enum)]
    pub role: Option<Role>,
    #[arg(long)]
    pub force: bool,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args { args, role, force } = a;
    let (target, rest) = args.split_last().context("flush: give the target")?;
    let (cluster_name, names) = match rest.split_first() {
        Some((c, names)) => (Some(c), names),
        None => (None, rest),
    };
    if target == "restart" {
        let ctx = Ctx::new(conn, cfg, cluster_name)?;
        let cluster = ctx.cluster().await?;
        for n in names {
            member_of(&cluster, &ctx.scope, n)?;
        }
        let leader = cluster.leader_name();
        let members: Vec<&Member> = cluster
            .members
            .iter()
            .filter(|m| names.is_empty() || names.contains(&m.name))
            .filter(|m| role_matches(*role, Some(m.name.as_str()) == leader))
            .filter(|m| m.data.scheduled_restart.is_some())
            .collect();
        if members.is_empty() {
            bail!(
                "cluster {} has no scheduled restart{}",
                ctx.scope,
                if names.is_empty() && role.is_none() {
                    ""
                } else {
                    " on the members selected"
                }
            );
        }
        if !force {
            let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            confirm(&format!(
                "Cancel the scheduled restarts of {}?",
                names.join(", ")
            ))?;
        }
        let mut failed = Vec::new();
        for m in members {
            match ctx
                .request(m, reqwest::Method::DELETE, "restart", None)
                .await
            {
                Ok((200 | 404, text)) => println!(
                    "Success: flush scheduled restart on member {}: {}",
                    m.name,
                    text.trim()
                ),
                Ok((code, text)) => {
                    println!(
                        "Failed: flush scheduled restart for member {}, status code={code}, ({})",
                        m.name,
                        text.trim()
                    );
                    failed.push(m.name.clone());
                }
                Err(e) => {
                    println!(
                        "Failed: flush scheduled restart for member {}: {e:#}",
                        m.name
                    );
                    failed.push(m.name.clone());
                }
            }
        }
        if !failed.is_empty() {
            bail!("flush restart failed on {}", failed.join(", "));
        }
        return Ok(());
    }
    if target != "switchover" {
        bail!("flush {target}: expected `switchover` or `restart`");
    }
    if !names.is_empty() {
        bail!("flush switchover takes no member names");
    }
    let ctx = Ctx::new(conn, cfg, cluster_name)?;
    let cluster = ctx.cluster().await?;
    let Some(f) = &cluster.failover else {
        bail!("cluster {} has no scheduled switchover", ctx.scope);
    };
    if !force {
        confirm(&format!(
            "Cancel the switchover scheduled at {}?",
            f.value.scheduled_at.as_deref().unwrap_or("(now)")
        ))?;
    }
    // Leader first, then the others; stop at the first 200 or 404.
    let order = leader_first(&cluster);
    let mut last = anyhow::anyhow!("cluster {} has no members", ctx.scope);
    let mut done = false;
    for m in order {
        match ctx
            .request(m, reqwest::Method::DELETE, "switchover", None)
            .await
        {
            Ok((200 | 404, body)) => {
                println!("Success: {}", body.trim());
                done = true;
                break;
            }
            Ok((code, body)) => {
                last = anyhow::anyhow!(
                    "member {}: DELETE /switchover answered {code}: {}",
                    m.name,
                    body.trim()
                )
            }
            Err(e) => last = e,
        }
    }
    if !done {
        return Err(last);
    }
    Ok(())
}
