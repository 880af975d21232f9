//! `pgpilotctl query`: run SQL on a member (default: the leader) and print the result.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, Format, Role, pick_member, print_values};
use crate::dcs::Member;
use crate::postgres::conninfo::Conninfo;
use crate::postgres::{ConnParams, query};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    #[arg(short = 'r', long = "role", value_enum)]
    pub role: Option<Role>,
    #[arg(short = 'm', long = "member")]
    pub member: Option<String>,
    /// The SQL to run.
    #[arg(short = 'c', long = "command", conflicts_with = "file")]
    pub command: Option<String>,
    /// A file with the SQL to run.
    #[arg(long = "file")]
    pub file: Option<PathBuf>,
    /// User (default: the config's superuser, else postgres).
    #[arg(short = 'U', long = "username")]
    pub username: Option<String>,
    #[arg(short = 'd', long = "dbname", default_value = "postgres")]
    pub dbname: String,
    #[arg(long = "format", value_enum, default_value = "tsv")]
    pub format: Format,
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        cluster,
        role,
        member,
        command,
        file,
        username,
        dbname,
        format,
    } = a;
    let sql = match (command, file) {
        (Some(c), _) => c.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => bail!("query: give the SQL with --command or --file"),
    };
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let c = ctx.cluster().await?;
    let m = pick_member(&c, &ctx.scope, *role, member.as_deref())?;
    let su = cfg.superuser();
    let user = username
        .clone()
        .or_else(|| su.and_then(|s| s.username.clone()))
        .unwrap_or_else(|| "postgres".to_owned());
    let password = std::env::var("PGPASSWORD").ok().or_else(|| {
        su.filter(|s| s.username.as_deref() == Some(user.as_str()))
            .and_then(|s| s.password.clone())
    });
    // The superuser section's libpq settings (TLS, client certificate) go
    // with its user, as its password does; another user gets libpq's
    // defaults (docs/configuration.md, "postgresql.authentication: libpq
    // settings").
    let libpq = su
        .filter(|s| s.username.as_deref() == Some(user.as_str()))
        .map(Conninfo::settings)
        .unwrap_or_default();
    let (headers, rows) = run_query(&m, &user, password.as_deref(), libpq, dbname, &sql).await?;
    let json = Value::Array(
        rows.iter()
            .map(|r| {
                Value::Object(
                    headers
                        .iter()
                        .cloned()
                        .zip(r.iter().cloned().map(Value::from))
                        .collect(),
                )
            })
            .collect(),
    );
    print_values(*format, &headers, &rows, &json);
    Ok(())
}

/// Run `sql` on member `m` (simple query protocol, every value as text);
/// the column names and rows of the last result set.
async fn run_query(
    m: &Member,
    user: &str,
    password: Option<&str>,
    libpq: Conninfo,
    dbname: &str,
    sql: &str,
) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let (host, port) = m
        .data
        .conn_host_port()
        .with_context(|| format!("member {} has no usable conn_url", m.name))?;
    let mut params = ConnParams::new(host.clone(), port, user);
    params.password = password.map(str::to_owned);
    params.dbname = dbname.to_owned();
    params.application_name = "Patroni ctl".to_owned();
    params.libpq = libpq;
    let client = query::connect(&params, Duration::from_secs(10))
        .await
        .with_context(|| format!("member {}: connecting to {host}:{port}", m.name))?;
    let msgs = client
        .simple_query(sql)
        .await
        .with_context(|| format!("member {}: query failed", m.name))?;
    let mut headers = Vec::new();
    let mut rows = Vec::new();
    for msg in msgs {
        match msg {
            tokio_postgres::SimpleQueryMessage::RowDescription(cols) => {
                headers = cols.iter().map(|c| c.name().to_owned()).collect();
                rows.clear();
            }
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                if headers.is_empty() {
                    headers = r.columns().iter().map(|c| c.name().to_owned()).collect();
                }
                rows.push(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("").to_owned())
                        .collect(),
                );
            }
            _ => {}
        }
    }
    Ok((headers, rows))
}
