//! `pgpilotctl reinit`: rebuild replicas from the leader (POST /reinitialize).

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, confirm, member_of, split_cluster_members};
use crate::ctl::list;
use crate::dcs::Member;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `[CLUSTER] MEMBER...`.
    #[arg(value_name = "CLUSTER|MEMBER", required = true)]
    pub args: Vec<String>,
    /// Wait until PostgreSQL runs again on the members.
    #[arg(long)]
    pub wait: bool,
    /// Copy from the leader, not from a `clonefrom` member.
    #[arg(long = "from-leader")]
    pub from_leader: bool,
    /// No confirmation; cancel a job already running there.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        args,
        wait,
        from_leader,
        force,
    } = a;
    let (cluster, names) = split_cluster_members(cfg, args);
    if names.is_empty() {
        bail!("reinit: name the members to reinitialize");
    }
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let c = ctx.cluster().await?;
    let members: Vec<Member> = names
        .iter()
        .map(|n| member_of(&c, &ctx.scope, n))
        .collect::<anyhow::Result<_>>()?;
    if let Some(l) = members
        .iter()
        .find(|m| Some(m.name.as_str()) == c.leader_name())
    {
        bail!(
            "member {} is the leader: only replicas can be reinitialized",
            l.name
        );
    }
    print!("{}", list::render_table(&c, &ctx.scope));
    if !force {
        let list: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        confirm(&format!(
            "Are you sure you want to reinitialize members {}?",
            list.join(", ")
        ))?;
    }
    let mut failed = Vec::new();
    let mut started: Vec<Member> = Vec::new();
    for m in &members {
        let mut body = json!({"force": force, "from_leader": from_leader});
        loop {
            match ctx
                .request(m, reqwest::Method::POST, "reinitialize", Some(&body))
                .await
            {
                Ok((code, text)) if code < 400 => {
                    println!(
                        "Success: reinitialize for member {}: {}",
                        m.name,
                        text.trim()
                    );
                    started.push(m.clone());
                }
                Ok((code, text)) => {
                    println!(
                        "Failed: reinitialize for member {}, status code={code}, ({})",
                        m.name,
                        text.trim()
                    );
                    // patronictl: offer to cancel what runs there.
                    if text.trim_end().ends_with(" already in progress")
                        && body["force"] == false
                        && confirm("Do you want to cancel it and reinitialize anyway?").is_ok()
                    {
                        body["force"] = Value::Bool(true);
                        continue;
                    }
                    failed.push(m.name.clone());
                }
                Err(e) => {
                    println!("Failed: reinitialize for member {}: {e:#}", m.name);
                    failed.push(m.name.clone());
                }
            }
            break;
        }
    }
    if !failed.is_empty() {
        bail!("reinitialize failed on {}", failed.join(", "));
    }
    let members = started;
    if *wait {
        eprint!("Waiting for the replicas to be rebuilt");
        let deadline = Instant::now() + Duration::from_secs(3600);
        let mut pending: Vec<&Member> = members.iter().collect();
        while !pending.is_empty() {
            if Instant::now() > deadline {
                bail!("still reinitializing after an hour");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            eprint!(".");
            let mut still = Vec::new();
            for m in pending {
                // Done once PostgreSQL runs again (a replica that
                // answers); a failed start ends the wait.
                let state = match ctx.request(m, reqwest::Method::GET, "patroni", None).await {
                    Ok((_, body)) => serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["state"].as_str().map(str::to_owned)),
                    Err(_) => None,
                };
                match state.as_deref() {
                    Some("running") => {
                        eprintln!();
                        println!("Reinitialize is completed on: {}", m.name);
                    }
                    Some(s) if ended_down(s) => {
                        eprintln!();
                        bail!("reinitialize of {} ended with PostgreSQL {s}", m.name);
                    }
                    _ => still.push(m),
                }
            }
            pending = still;
        }
        eprintln!();
        println!("Reinitialization finished");
    }
    Ok(())
}

/// A member state that ends the wait as a failure: the rebuild's start
/// failed (`start failed`), PostgreSQL died after it (`crashed`), or, while
/// paused, either of them, which Patroni names `stopped` (docs/ha.md §15).
fn ended_down(state: &str) -> bool {
    matches!(state, "start failed" | "crashed" | "stopped")
}

#[cfg(test)]
mod tests {
    use super::ended_down;

    #[test]
    fn states_that_end_the_wait() {
        for s in ["start failed", "crashed", "stopped"] {
            assert!(ended_down(s), "{s}");
        }
        for s in ["creating replica", "starting", "running", "unknown"] {
            assert!(!ended_down(s), "{s}");
        }
    }
}
