//! The facts `pgpilot --generate-sample-config` and `--generate-config`
//! gather (docs/configuration.md, "Generating a configuration"): the
//! host's name and address, the local `postgres` program's major version,
//! and what a running server reports (Patroni's
//! `RunningClusterConfigGenerator`). The documents themselves are built by
//! `crate::config::generate`, without I/O.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::binaries::Binaries;
use super::conninfo::Target;
use super::dsn::{DsnError, parse_dsn};
use super::error::PgError;
use super::query::{ConnParams, connect};
use crate::config::Credentials;
use crate::config::generate::{CMDLINE_OPTIONS, Host, NO_VALUE, RunningServer};

/// Why a configuration could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error("Failed to parse DSN string: {0}")]
    Dsn(#[from] DsnError),
    #[error("cannot run {program}: {source}")]
    Program {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the PostgreSQL version from {program}'s answer {answer:?}")]
    Version { program: String, answer: String },
    #[error("Failed to establish PostgreSQL connection: {0}")]
    Connect(#[source] PgError),
    #[error("{0}")]
    Query(#[source] PgError),
    #[error("The provided user does not have superuser privilege")]
    NotSuperuser,
    #[error("Error while reading postmaster.pid file: {0}")]
    PostmasterPid(String),
    #[error("Failed to read {file}: {source}")]
    ConfFile {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// Patroni's `get_address`: the host name, and the first address it
/// resolves to, IPv4 before IPv6; [`NO_VALUE`] for both when that fails.
pub fn host_address() -> Host {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mut addrs: Vec<IpAddr> = match (hostname.as_str(), 0).to_socket_addrs() {
        Ok(a) if !hostname.is_empty() => a.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    };
    addrs.sort_by_key(|a| a.is_ipv6());
    match addrs.first() {
        Some(ip) => Host {
            hostname,
            ip: match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            },
        },
        None => Host {
            hostname: NO_VALUE.to_owned(),
            ip: NO_VALUE.to_owned(),
        },
    }
}

/// The major version (`150000`) of the `postgres` program of `bin_dir`
/// (found as the daemon finds it: `crate::postgres::Binaries`), from its
/// `--version`.
pub fn postgres_major(bin_dir: Option<&str>, bin_name: Option<&str>) -> Result<u32, DescribeError> {
    let program = Binaries::from_bin_dir(bin_dir).path(bin_name.unwrap_or("postgres"));
    let shown = program.display().to_string();
    let out = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .map_err(|source| DescribeError::Program {
            program: shown.clone(),
            source,
        })?;
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    crate::config::generate::version_of_postgres_output(&answer).ok_or(DescribeError::Version {
        program: shown,
        answer,
    })
}

/// libpq's environment variables for the superuser's settings (Patroni's
/// `_AUTH_ALLOWED_PARAMETERS_MAPPING`).
const AUTH_ENV: &[(&str, &str)] = &[
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("sslmode", "PGSSLMODE"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslpassword", ""),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcrl", "PGSSLCRL"),
    ("sslcrldir", "PGSSLCRLDIR"),
    ("gssencmode", "PGGSSENCMODE"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("sslnegotiation", "PGSSLNEGOTIATION"),
];

/// Patroni's `_set_su_params`: each setting from the DSN, else its libpq
/// variable; the user else the template's superuser, else the OS user; the
/// password else the template's, else asked on the terminal (none without
/// one).
fn superuser_params(
    dsn: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
    template: &Value,
) -> BTreeMap<String, String> {
    let mut su = BTreeMap::new();
    for (param, var) in AUTH_ENV {
        let v = dsn
            .get(*param)
            .cloned()
            .or_else(|| env.get(*var).filter(|_| !var.is_empty()).cloned());
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            su.insert((*param).to_owned(), v);
        }
    }
    let from_template = |k: &str| {
        template
            .pointer(&format!("/postgresql/authentication/superuser/{k}"))
            .and_then(Value::as_str)
            .filter(|v| *v != NO_VALUE && !v.is_empty())
            .map(str::to_owned)
    };
    let user = su
        .remove("user")
        .or_else(|| from_template("username"))
        .or_else(os_user)
        .unwrap_or_else(|| "postgres".to_owned());
    su.insert("username".to_owned(), user);
    if !su.contains_key("password")
        && let Some(p) = from_template("password").or_else(ask_password)
    {
        su.insert("password".to_owned(), p);
    }
    su
}

fn os_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// Patroni's `getpass('Please enter the user password:')`, on the
/// terminal with echo off; `None` without a terminal or for an empty
/// answer (the connection is then tried without a password: peer or
/// trust authentication).
fn ask_password() -> Option<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let saved = tcgetattr(&tty).ok()?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&tty, SetArg::TCSANOW, &quiet).ok()?;
    let mut w = &tty;
    let _ = w.write_all(b"Please enter the user password:");
    let _ = w.flush();
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, SetArg::TCSANOW, &saved);
    let _ = w.write_all(b"\n");
    read.ok()?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    (!p.is_empty()).then_some(p)
}

/// Where libpq connects without a host: `PGHOST`, else the socket
/// directory of Debian's servers, else `/tmp`.
fn default_host(env: &BTreeMap<String, String>) -> String {
    if let Some(h) = env.get("PGHOST").filter(|h| !h.is_empty()) {
        return h.clone();
    }
    if Path::new(super::params::DEFAULT_SOCKET_DIR).is_dir() {
        super::params::DEFAULT_SOCKET_DIR.to_owned()
    } else {
        "/tmp".to_owned()
    }
}

/// Patroni's settings query: the values set in a file, on the command line
/// or in the environment, and always the files, the data directory and the
/// command-line parameters.
const SETTINGS_QUERY: &str = "SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings \
     WHERE context <> 'internal' \
     AND source IN ('configuration file', 'command line', 'environment variable') \
     AND category <> 'Write-Ahead Log / Recovery Target' \
     AND setting <> '(disabled)' \
     OR name = ANY($1)";

/// Read a running server for `--generate-config` (Patroni's
/// `_enrich_config_from_running_instance` and
/// `_get_bin_dir_from_running_instance`): connect as a superuser through
/// `dsn` (or libpq's variables and defaults), read the settings, the data
/// directory's `pg_hba.conf`/`pg_ident.conf` and the postmaster's program.
pub async fn running_server(
    dsn: Option<&str>,
    env: &BTreeMap<String, String>,
    template: &Value,
) -> Result<RunningServer, DescribeError> {
    let parsed = match dsn {
        Some(d) => parse_dsn(d)?,
        None => BTreeMap::new(),
    };
    let superuser = superuser_params(&parsed, env, template);
    let host = parsed
        .get("host")
        .cloned()
        .unwrap_or_else(|| default_host(env));
    let port_given = parsed
        .get("port")
        .or_else(|| env.get("PGPORT"))
        .filter(|p| !p.is_empty())
        .cloned();
    let port: u16 = port_given
        .as_deref()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    let dbname = parsed
        .get("dbname")
        .or_else(|| env.get("PGDATABASE"))
        .cloned()
        .unwrap_or_else(|| "postgres".to_owned());
    let mut creds: Credentials =
        serde_json::from_value(serde_json::json!(superuser)).unwrap_or_default();
    if creds.username.is_none() {
        creds.username = superuser.get("username").cloned();
    }
    let mut params = ConnParams::to_target(
        &creds,
        Target {
            host: &host,
            port,
            dbname: &dbname,
        },
    );
    params.application_name = "pgpilot --generate-config".to_owned();
    let client = connect(&params, Duration::from_secs(10))
        .await
        .map_err(DescribeError::Connect)?;
    let q = |e: tokio_postgres::Error| {
        DescribeError::Query(PgError::query("read the server's settings", e))
    };
    let one = |sql: &'static str| {
        let client = &client;
        async move {
            let row = client.query_one(sql, &[]).await.map_err(q)?;
            row.try_get::<_, String>(0).map_err(q)
        }
    };
    let version_num: u32 = one("SHOW server_version_num")
        .await?
        .parse()
        .unwrap_or_default();
    let superuser_flag = one("SELECT pg_catalog.current_setting('is_superuser')").await?;
    if crate::config::parse_bool(&superuser_flag) != Some(true) {
        return Err(DescribeError::NotSuperuser);
    }
    let required: Vec<String> = ["hba_file", "ident_file", "config_file", "data_directory"]
        .iter()
        .chain(CMDLINE_OPTIONS)
        .map(|s| (*s).to_owned())
        .collect();
    let rows = client
        .query(SETTINGS_QUERY, &[&required])
        .await
        .map_err(q)?;
    let mut settings = Vec::with_capacity(rows.len());
    for r in rows {
        settings.push((
            r.try_get::<_, String>(0).map_err(q)?,
            r.try_get::<_, String>(1).map_err(q)?,
        ));
    }
    let setting = |name: &str| {
        settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let data_dir = PathBuf::from(setting("data_directory"));
    let conf_lines =
        |setting_name: &str, file: &str| -> Result<Option<Vec<String>>, DescribeError> {
            let default = data_dir.join(file);
            if Path::new(&setting(setting_name)) != default {
                return Ok(None);
            }
            std::fs::read_to_string(&default)
                .map(|t| Some(t.lines().map(str::to_owned).collect()))
                .map_err(|source| DescribeError::ConfFile {
                    file: default.display().to_string(),
                    source,
                })
        };
    let hba_lines = conf_lines("hba_file", "pg_hba.conf")?;
    let ident_lines = conf_lines("ident_file", "pg_ident.conf")?;
    let bin_dir = postmaster_bin_dir(&data_dir)?;
    Ok(RunningServer {
        version_num,
        settings,
        connect_port: port_given,
        superuser,
        hba_lines,
        ident_lines,
        bin_dir,
    })
}

/// The directory of the running postmaster's program: the pid in the
/// first line of `postmaster.pid`, its `/proc/<pid>/exe`.
fn postmaster_bin_dir(data_dir: &Path) -> Result<String, DescribeError> {
    let pid_file = data_dir.join("postmaster.pid");
    let text = std::fs::read_to_string(&pid_file)
        .map_err(|e| DescribeError::PostmasterPid(format!("{}: {e}", pid_file.display())))?;
    let pid: u32 = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| {
            DescribeError::PostmasterPid(
                "Failed to obtain postmaster pid from postmaster.pid file".into(),
            )
        })?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|_| {
        DescribeError::PostmasterPid("Obtained postmaster pid doesn't exist.".into())
    })?;
    Ok(exe
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn superuser_settings_come_from_the_dsn_then_libpq_variables_then_the_template() {
        let template = serde_json::json!({"postgresql": {"authentication": {"superuser": {
            "username": "tmpl_user", "password": "tmpl_pw"}}}});
        // The DSN wins over PG* variables; `user` is written `username`.
        let su = superuser_params(
            &map(&[("user", "dsn_user"), ("password", "dsn_pw")]),
            &map(&[("PGUSER", "env_user"), ("PGSSLMODE", "require")]),
            &template,
        );
        assert_eq!(
            su,
            map(&[
                ("username", "dsn_user"),
                ("password", "dsn_pw"),
                ("sslmode", "require")
            ])
        );
        // Variables over the template.
        let su = superuser_params(
            &map(&[]),
            &map(&[("PGUSER", "env_user"), ("PGPASSWORD", "env_pw")]),
            &template,
        );
        assert_eq!(su, map(&[("username", "env_user"), ("password", "env_pw")]));
        // The template's, unless it is a placeholder.
        let su = superuser_params(&map(&[]), &map(&[]), &template);
        assert_eq!(
            su,
            map(&[("username", "tmpl_user"), ("password", "tmpl_pw")])
        );
        let placeholder = serde_json::json!({"postgresql": {"authentication": {"superuser": {
            "username": "postgres", "password": NO_VALUE}}}});
        let su = superuser_params(&map(&[("password", "x")]), &map(&[]), &placeholder);
        assert_eq!(su, map(&[("username", "postgres"), ("password", "x")]));
    }

    #[test]
    fn the_postmasters_program_directory() {
        // This test's own process stands in for the postmaster.
        let dir = std::env::temp_dir().join(format!("pgpilot-describe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("postmaster.pid"),
            format!("{}\n{}\n", std::process::id(), dir.display()),
        )
        .unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            postmaster_bin_dir(&dir).unwrap(),
            exe.parent().unwrap().display().to_string()
        );
        std::fs::write(dir.join("postmaster.pid"), "not a pid\n").unwrap();
        assert!(matches!(
            postmaster_bin_dir(&dir),
            Err(DescribeError::PostmasterPid(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            postmaster_bin_dir(&dir),
            Err(DescribeError::PostmasterPid(_))
        ));
    }
}
