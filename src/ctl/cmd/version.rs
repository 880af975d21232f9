//! `pgpilotctl version`: the version of pgpilotctl, and of the members' daemons and PostgreSQL.

use serde_json::Value;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, member_of};
use crate::dcs::Member;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    pub members: Vec<String>,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args { cluster, members } = a;
    println!("pgpilotctl version {}", env!("CARGO_PKG_VERSION"));
    if cluster.is_none() && cfg.scope.is_none() {
        return Ok(());
    }
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let c = ctx.cluster().await?;
    let targets: Vec<Member> = if members.is_empty() {
        c.members.clone()
    } else {
        members
            .iter()
            .map(|n| member_of(&c, &ctx.scope, n))
            .collect::<anyhow::Result<_>>()?
    };
    for m in &targets {
        match ctx.request(m, reqwest::Method::GET, "patroni", None).await {
            Ok((_, body)) => {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let pv = v["patroni"]["version"].as_str().unwrap_or("?");
                let sv = v["server_version"]
                    .as_u64()
                    .map(pg_version)
                    .unwrap_or_else(|| "?".into());
                println!("{}: Patroni {pv} PostgreSQL {sv}", m.name);
            }
            Err(e) => println!("{}: failed to get version: {e:#}", m.name),
        }
    }
    Ok(())
}

/// `150018` -> `15.18`; `90624` -> `9.6.24`.
fn pg_version(v: u64) -> String {
    if v >= 100000 {
        format!("{}.{}", v / 10000, v % 10000)
    } else {
        format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
    }
}
