//! `pgpilotctl switchover`: hand the leader role to a healthy replica.

use anyhow::{Context, bail};
use serde_json::Value;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, confirm, member_of, paused};
use crate::ctl::list;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    /// The current leader (checked against the leader key).
    #[arg(long, alias = "primary")]
    pub leader: Option<String>,
    /// The member to become leader (default: the best one the leader picks).
    #[arg(long)]
    pub candidate: Option<String>,
    /// When: ISO 8601 with a time zone, or `now`.
    #[arg(long)]
    pub scheduled: Option<String>,
    #[arg(long)]
    pub force: bool,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        cluster,
        leader,
        candidate,
        scheduled,
        force,
    } = a;
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    switchover(
        &ctx,
        false,
        leader.as_deref(),
        candidate.as_deref(),
        scheduled.as_deref(),
        *force,
    )
    .await?;
    Ok(())
}

pub(crate) async fn switchover(
    ctx: &Ctx,
    failover: bool,
    leader: Option<&str>,
    candidate: Option<&str>,
    scheduled: Option<&str>,
    force: bool,
) -> anyhow::Result<()> {
    let action = if failover { "failover" } else { "switchover" };
    let cluster = ctx.cluster().await?;
    let current = cluster.leader_member().cloned();
    if failover && candidate.is_none() {
        bail!(
            "failover needs --candidate: a failover could be performed only to a specific candidate"
        );
    }
    if !failover {
        let Some(cur) = &current else {
            bail!("cluster {} has no leader: use failover", ctx.scope);
        };
        if let Some(l) = leader
            && l != cur.name
        {
            bail!(
                "member {l} is not the leader of cluster {} (the leader is {})",
                ctx.scope,
                cur.name
            );
        }
    }
    if let Some(c) = candidate {
        member_of(&cluster, &ctx.scope, c)
            .with_context(|| format!("{action} candidate {c} refused"))?;
        if current.as_ref().is_some_and(|l| l.name == c) {
            bail!("{action} candidate {c} is already the leader");
        }
    }
    let scheduled_at = match scheduled {
        None | Some("now") => None,
        Some(_) if paused(&cluster) => {
            bail!("can't schedule a {action} while the cluster is paused")
        }
        Some(t) => Some(crate::ctl::time::with_timezone(t)),
    };
    let mut body = serde_json::Map::new();
    if !failover && let Some(cur) = &current {
        body.insert("leader".into(), Value::from(cur.name.clone()));
    }
    if let Some(c) = candidate {
        body.insert("candidate".into(), Value::from(c));
    }
    if let Some(t) = &scheduled_at {
        body.insert("scheduled_at".into(), Value::from(t.clone()));
    }
    print!("{}", list::render_table(&cluster, &ctx.scope));
    if !force {
        let from = current
            .as_ref()
            .map(|l| l.name.as_str())
            .unwrap_or("(no leader)");
        let to = candidate.unwrap_or("the best candidate");
        let when = scheduled_at.as_deref().unwrap_or("now");
        confirm(&format!(
            "Are you sure you want to {action} from {from} to {to} ({when})?"
        ))?;
    }
    // To the leader; a failover without a leader goes to the candidate.
    let target = match (&current, candidate) {
        (Some(l), _) => l.clone(),
        (None, Some(c)) => member_of(&cluster, &ctx.scope, c)?,
        (None, None) => bail!("cluster {} has no leader", ctx.scope),
    };
    let body = Value::Object(body);
    // The daemon answers once the new leader runs (or the request is
    // scheduled): the request's duration is the switchover's.
    let started = std::time::Instant::now();
    let (mut code, mut text) = ctx
        .request(&target, reqwest::Method::POST, action, Some(&body))
        .await?;
    // Older servers without /switchover: patronictl retries as /failover.
    if !failover && code == 501 && text.contains("Server does not support this operation") {
        (code, text) = ctx
            .request(&target, reqwest::Method::POST, "failover", Some(&body))
            .await?;
    }
    match code {
        200 | 202 => {
            let took = started.elapsed();
            println!(
                "{} {}",
                crate::ctl::time::patroni_timestamp(crate::ctl::time::now_local()),
                text.trim()
            );
            if code == 200 {
                println!("{} took {:.1} s", capitalize(action), took.as_secs_f64());
            }
            let after = ctx.cluster().await?;
            print!("{}", list::render_table(&after, &ctx.scope));
            print!("{}", list::footer(&after));
            Ok(())
        }
        _ => bail!(
            "{} failed on member {}, details: {code}, {}",
            capitalize(action),
            target.name,
            text.trim()
        ),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
