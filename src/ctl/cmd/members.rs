//! What `restart` and `reload` share: the members a command names or
//! selects, and one POST to each, reported as patronictl does.

use anyhow::bail;
use serde_json::{Value, json};

use crate::ctl::context::{Ctx, Role, confirm, loop_wait, member_of, paused, role_matches};
use crate::ctl::list;
use crate::dcs::Member;

/// What `restart` adds to its body (docs/rest-api.md, "POST /restart, DELETE /restart").
#[derive(Default)]
pub struct RestartExtras {
    pub scheduled: Option<String>,
    pub pg_version: Option<String>,
    pub timeout: Option<String>,
    /// `--any`: one member of those selected, at random.
    pub any: bool,
}

/// One of `n` (> 0) at random, for `restart --any` (patronictl shuffles
/// and takes the first). std's `RandomState` is seeded from the OS per
/// process: enough to spread restarts, no crate needed.
pub fn random_index(n: usize) -> usize {
    use std::hash::BuildHasher;
    let r = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    usize::try_from(r % n.max(1) as u64).unwrap_or(0)
}

/// POST `endpoint` to each named member (all when none), reporting each.
pub async fn per_member(
    ctx: &Ctx,
    names: &[String],
    endpoint: &str,
    role: Option<Role>,
    pending: bool,
    force: bool,
    extras: RestartExtras,
) -> anyhow::Result<()> {
    let cluster = ctx.cluster().await?;
    let members: Vec<Member> = if names.is_empty() {
        cluster.members.clone()
    } else {
        names
            .iter()
            .map(|n| member_of(&cluster, &ctx.scope, n))
            .collect::<anyhow::Result<_>>()?
    };
    let leader = cluster.leader_name();
    let mut members: Vec<Member> = members
        .into_iter()
        .filter(|m| role_matches(role, Some(m.name.as_str()) == leader))
        .filter(|m| !pending || m.data.pending_restart)
        .collect();
    if extras.any && !members.is_empty() {
        let one = members.swap_remove(random_index(members.len()));
        members = vec![one];
    }
    if members.is_empty() {
        bail!(
            "no member of cluster {} matches (names, --role{})",
            ctx.scope,
            if pending { ", --pending" } else { "" }
        );
    }
    let mut body = serde_json::Map::new();
    if pending {
        body.insert("restart_pending".into(), json!(true));
    }
    if let Some(v) = &extras.pg_version {
        body.insert("postgres_version".into(), json!(v));
    }
    if let Some(t) = &extras.timeout {
        body.insert("timeout".into(), json!(t));
    }
    let schedule = match extras.scheduled.as_deref() {
        None | Some("now") => None,
        Some(_) if paused(&cluster) => bail!("can't schedule restart in the paused state"),
        Some(t) => Some(crate::ctl::time::with_timezone(t)),
    };
    if let Some(t) = &schedule {
        body.insert("schedule".into(), json!(t));
    }
    let body = Value::Object(body);
    print!("{}", list::render_table(&cluster, &ctx.scope));
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    if !force {
        confirm(&format!(
            "Are you sure you want to {endpoint} members {}?",
            names.join(", ")
        ))?;
    }
    if schedule.is_some() && force {
        // patronictl: --force replaces a restart already scheduled.
        for m in members
            .iter()
            .filter(|m| m.data.scheduled_restart.is_some())
        {
            ctx.request(m, reqwest::Method::DELETE, "restart", None)
                .await?;
        }
    }
    let wait = loop_wait(&cluster);
    post_each(ctx, &members, endpoint, &body, |name, code, body| {
        matches!(code, 200 | 202).then(|| {
            let what = if endpoint == "reload" && code == 202 {
                format!("reload request received, will be processed within {wait} seconds")
            } else {
                body.trim().to_owned()
            };
            format!("Success: {endpoint} on member {name}: {what}")
        })
    })
    .await
}

/// POST `endpoint` to each member in turn, printing one line per member, as
/// patronictl does; `success` turns a member's reply into its success line,
/// or `None` when it is a failure. Fails naming every member that did not
/// succeed.
pub async fn post_each(
    ctx: &Ctx,
    members: &[Member],
    endpoint: &str,
    body: &serde_json::Value,
    success: impl Fn(&str, u16, &str) -> Option<String>,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for m in members {
        match ctx
            .request(m, reqwest::Method::POST, endpoint, Some(body))
            .await
        {
            Ok((code, text)) => match success(&m.name, code, &text) {
                Some(line) => println!("{line}"),
                None => {
                    println!(
                        "Failed: {endpoint} for member {}, status code={code}, ({})",
                        m.name,
                        text.trim()
                    );
                    failed.push(m.name.clone());
                }
            },
            Err(e) => {
                println!("Failed: {endpoint} for member {}: {e:#}", m.name);
                failed.push(m.name.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("{endpoint} failed on {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::random_index;

    #[test]
    fn random_index_is_in_range() {
        for n in 1..20 {
            assert!(random_index(n) < n);
        }
        assert_eq!(random_index(1), 0);
    }
}
