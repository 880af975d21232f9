//! `pgpilotctl query`: run SQL on a member (default: the leader) and print the result.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, Format, Role, pick_member, print_values, watch_every};
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
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// User (default: the config's superuser, else postgres).
    #[arg(short = 'U', long = "username")]
    pub username: Option<String>,
    /// Ask for the password (on the terminal without echo, else the
    /// first line of stdin).
    #[arg(long = "password")]
    pub password: bool,
    #[arg(short = 'd', long = "dbname", default_value = "postgres")]
    pub dbname: String,
    #[arg(long = "format", value_enum, default_value = "tsv")]
    pub format: Format,
    /// The column delimiter of `--format tsv`.
    #[arg(long = "delimiter", default_value = "\t")]
    pub delimiter: String,
    /// Run again every 2 seconds until interrupted.
    #[arg(short = 'W')]
    pub watch_default: bool,
    /// Run again every SECONDS until interrupted.
    #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
    pub watch: Option<f64>,
}

/// `Password: ` on stderr, the answer from stdin; the terminal's echo is
/// off while it is typed (`stty -echo`), as patronictl's hidden prompt.
fn prompt_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        // stty acts on its stdin, the terminal; without it the password
        // shows, which is no reason to refuse.
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    eprint!("Password: ");
    std::io::stderr().flush().ok();
    if tty {
        stty("-echo");
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if tty {
        stty("echo");
        eprintln!();
    }
    read.context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        cluster,
        role,
        member,
        command,
        file,
        username,
        password: ask_password,
        dbname,
        format,
        delimiter,
        watch_default,
        watch,
    } = a;
    let sql = match (command, file) {
        (Some(c), _) => c.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => bail!("query: give the SQL with --command or --file"),
    };
    let every = watch_every(*watch, *watch_default)?;
    let typed = if *ask_password {
        Some(prompt_password()?)
    } else {
        None
    };
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let c = ctx.cluster().await?;
    let m = pick_member(&c, &ctx.scope, *role, member.as_deref())?;
    let su = cfg.superuser();
    let user = username
        .clone()
        .or_else(|| su.and_then(|s| s.username.clone()))
        .unwrap_or_else(|| "postgres".to_owned());
    let password = typed
        .or_else(|| std::env::var("PGPASSWORD").ok())
        .or_else(|| {
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
    // patronictl reads the cluster once and queries the same member again.
    loop {
        let (headers, rows) =
            run_query(&m, &user, password.as_deref(), libpq.clone(), dbname, &sql).await?;
        if matches!(format, Format::Tsv) {
            print!("{}", delimited(&headers, &rows, delimiter));
        } else {
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
        }
        let Some(every) = every else { break };
        std::io::Write::flush(&mut std::io::stdout()).ok();
        tokio::time::sleep(every).await;
    }
    Ok(())
}

/// patronictl's tsv: the header line, then each row, fields joined by
/// `delimiter` (`\t` by default; a literal `\t` typed on the command line
/// is a tab too).
fn delimited(headers: &[String], rows: &[Vec<String>], delimiter: &str) -> String {
    let d = if delimiter == "\\t" { "\t" } else { delimiter };
    let mut out = String::new();
    for line in std::iter::once(headers).chain(rows.iter().map(Vec::as_slice)) {
        out.push_str(&line.join(d));
        out.push('\n');
    }
    out
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

#[cfg(test)]
mod tests {
    use super::delimited;

    #[test]
    fn delimiters() {
        let h = vec!["a".to_owned(), "b".to_owned()];
        let r = vec![vec!["1".to_owned(), "2".to_owned()]];
        assert_eq!(delimited(&h, &r, "\t"), "a\tb\n1\t2\n");
        assert_eq!(delimited(&h, &r, "\\t"), "a\tb\n1\t2\n");
        assert_eq!(delimited(&h, &r, ";"), "a;b\n1;2\n");
    }
}
