//! Long operations built from the pieces above, run as the current user
//! (pgpilot runs as the PostgreSQL OS user; nothing here switches users).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::process::Command;

use super::binaries::Binaries;
use super::command;
use super::datadir;
use super::error::{PgError, PgResult};
use crate::config::InitdbOption;

/// `bootstrap.initdb` options pgpilot sets itself or that would break it.
pub const FORBIDDEN_INITDB_OPTIONS: &[&str] =
    &["pgdata", "nosync", "pwfile", "sync-only", "version"];

pub use crate::config::FORBIDDEN_BASEBACKUP_OPTIONS;

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn option_args(
    what: &str,
    flag: Option<&str>,
    valued: Option<(&str, String)>,
    forbidden: &[&str],
) -> PgResult<String> {
    let name = flag
        .or(valued.as_ref().map(|(k, _)| *k))
        .unwrap_or_default();
    let name = name.trim_start_matches('-');
    if name.is_empty() || forbidden.contains(&name) {
        return Err(PgError::InvalidOption(format!(
            "{name:?} option for {what} is not allowed"
        )));
    }
    Ok(match valued {
        Some((_, v)) => format!("--{name}={v}"),
        None => format!("--{name}"),
    })
}

/// `bootstrap.initdb` entries as initdb arguments; forbidden ones rejected.
pub fn initdb_args(options: &[InitdbOption]) -> PgResult<Vec<String>> {
    let mut args = Vec::new();
    for o in options {
        match o {
            InitdbOption::Flag(f) => args.push(option_args(
                "initdb",
                Some(f),
                None,
                FORBIDDEN_INITDB_OPTIONS,
            )?),
            InitdbOption::Valued(map) => {
                for (k, v) in map {
                    args.push(option_args(
                        "initdb",
                        None,
                        Some((k, value_text(v))),
                        FORBIDDEN_INITDB_OPTIONS,
                    )?);
                }
            }
        }
    }
    Ok(args)
}

/// `postgresql.rewind` options pgpilot sets itself or that would make
/// pg_rewind do nothing.
pub const FORBIDDEN_REWIND_OPTIONS: &[&str] = &[
    "target-pgdata",
    "source-pgdata",
    "source-server",
    "dry-run",
    "write-recovery-conf",
    "version",
    "help",
];

/// `postgresql.basebackup` (a list of flags / `{option: value}`, or a map)
/// as pg_basebackup arguments; forbidden ones rejected.
pub fn basebackup_args(options: &serde_json::Value) -> PgResult<Vec<String>> {
    tool_args("pg_basebackup", options, FORBIDDEN_BASEBACKUP_OPTIONS)
}

/// `postgresql.rewind` (same forms as `basebackup`) as pg_rewind arguments.
pub fn rewind_args(options: &serde_json::Value) -> PgResult<Vec<String>> {
    tool_args("pg_rewind", options, FORBIDDEN_REWIND_OPTIONS)
}

fn tool_args(what: &str, options: &serde_json::Value, forbidden: &[&str]) -> PgResult<Vec<String>> {
    let mut args = Vec::new();
    let push_map = |map: &serde_json::Map<String, serde_json::Value>, args: &mut Vec<String>| {
        for (k, v) in map {
            args.push(option_args(
                what,
                None,
                Some((k, value_text(v))),
                forbidden,
            )?);
        }
        Ok::<_, PgError>(())
    };
    match options {
        serde_json::Value::Null => {}
        serde_json::Value::Object(map) => push_map(map, &mut args)?,
        serde_json::Value::Array(items) => {
            for item in items {
                match item {
                    serde_json::Value::String(f) => {
                        args.push(option_args(what, Some(f), None, forbidden)?)
                    }
                    serde_json::Value::Object(map) => push_map(map, &mut args)?,
                    other => {
                        return Err(PgError::InvalidOption(format!("{what} option {other}")));
                    }
                }
            }
        }
        other => {
            return Err(PgError::InvalidOption(format!("{what} options {other}")));
        }
    }
    Ok(args)
}

/// Deletes a file when dropped (the initdb password file).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn write_pwfile(password: &str) -> PgResult<RemoveOnDrop> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!("pgpilot-pwfile-{}-{nanos}", std::process::id()));
    let guard = RemoveOnDrop(path.clone());
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| PgError::io(format!("create {}", path.display()), e))?;
    f.write_all(password.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .map_err(|e| PgError::io(format!("write {}", path.display()), e))?;
    Ok(guard)
}

/// Runs `initdb -D <data_dir> --username=<superuser> [--pwfile=..] <options>`.
/// The password goes through a 0600 temporary file removed afterwards.
pub async fn initdb(
    bins: &Binaries,
    data_dir: &Path,
    options: &[InitdbOption],
    superuser: &str,
    superuser_password: Option<&str>,
) -> PgResult<()> {
    let extra = initdb_args(options)?;
    if !datadir::is_empty(data_dir)
        .map_err(|e| PgError::io(format!("inspect {}", data_dir.display()), e))?
    {
        return Err(PgError::InvalidOption(format!(
            "initdb: data directory {} is not empty",
            data_dir.display()
        )));
    }
    let pwfile = superuser_password.map(write_pwfile).transpose()?;
    let mut cmd = Command::new(bins.initdb());
    cmd.arg("-D")
        .arg(data_dir)
        .arg(format!("--username={superuser}"));
    if let Some(pw) = &pwfile {
        cmd.arg(format!("--pwfile={}", pw.0.display()));
    }
    cmd.args(extra);
    command::run(cmd).await?;
    Ok(())
}

/// Where pg_basebackup copies from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasebackupSource {
    /// A libpq connection string (host, port, user, TLS settings:
    /// [`super::conninfo::connection_string`]).
    pub conninfo: String,
    /// Handed to pg_basebackup as `PGPASSFILE`.
    pub passfile: Option<PathBuf>,
}

/// `pg_basebackup -D <data_dir> -X stream -c fast --dbname=<conninfo> <extra>`
/// (Patroni passes the source as `--dbname` too, which carries the TLS
/// settings).
///
/// The target must be missing or empty: callers move an old directory aside
/// ([`datadir::move_aside`]) first, since nothing here deletes existing data.
/// On failure, a directory that did not exist before this call is removed
/// (pg_basebackup normally cleans up itself; this covers it being killed);
/// a pre-existing empty directory is left in place.
pub async fn basebackup(
    bins: &Binaries,
    data_dir: &Path,
    source: &BasebackupSource,
    extra: &[String],
) -> PgResult<()> {
    let existed = data_dir.exists();
    if !datadir::is_empty(data_dir)
        .map_err(|e| PgError::io(format!("inspect {}", data_dir.display()), e))?
    {
        return Err(PgError::InvalidOption(format!(
            "pg_basebackup: data directory {} is not empty",
            data_dir.display()
        )));
    }
    let mut cmd = Command::new(bins.pg_basebackup());
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-X", "stream", "-c", "fast"])
        .arg(format!("--dbname={}", source.conninfo))
        .arg("--no-password")
        .args(extra);
    if let Some(p) = &source.passfile {
        cmd.env("PGPASSFILE", p);
    }
    let result = command::run(cmd).await.map(|_| ());
    if result.is_err()
        && !existed
        && data_dir.exists()
        && let Err(e) = fs::remove_dir_all(data_dir)
    {
        tracing::warn!(dir = %data_dir.display(), error = %e, "could not remove partial basebackup");
    }
    result
}

/// Crash recovery of a data directory in single-user mode, ending in a clean
/// shutdown, that keeps every WAL segment: `archive_status` is emptied and
/// the server runs with `archive_mode=on archive_command=false`, so its
/// checkpoints may not recycle segments (as Patroni's
/// `ensure_clean_shutdown`). pg_rewind needs the target's WAL back to the
/// last common checkpoint; the crash recovery pg_rewind would run itself
/// may remove it.
///
/// `cmdline_params` are the ones the postmaster gets on its command line
/// ([`super::postmaster::server_args`]): without them the recovery's
/// closing checkpoint would record, say, `wal_log_hints = off`.
pub async fn single_user_recovery(
    bins: &Binaries,
    data_dir: &Path,
    config_file: &Path,
    cmdline_params: &[(String, String)],
) -> PgResult<String> {
    let status_dir = data_dir.join("pg_wal").join("archive_status");
    if let Ok(entries) = fs::read_dir(&status_dir) {
        for e in entries.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
    let mut cmd = Command::new(bins.postgres());
    // `--single` must come first; the database name last.
    cmd.arg("--single")
        .arg("-F")
        .args(super::postmaster::server_args(
            data_dir,
            config_file,
            cmdline_params,
        ))
        .args(["-c", "archive_mode=on", "-c", "archive_command=false"])
        .arg("template1");
    let out = command::run(cmd).await?;
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    Ok(text)
}

/// `pg_rewind -D <data_dir> --source-server=<conninfo> <extra>` with
/// `PGPASSFILE`. PostgreSQL 15's pg_rewind first runs crash recovery in
/// single-user mode when the target was not shut down cleanly. Returns the
/// tool's output (its progress goes to stderr).
///
/// `--config-file` points the `postgres` that pg_rewind itself may run
/// (for `--restore-target-wal`) at our configuration file. Its own crash
/// recovery never runs: [`single_user_recovery`] has done it first, with
/// the command-line parameters pg_rewind could not pass.
pub async fn rewind(
    bins: &Binaries,
    data_dir: &Path,
    config_file: &Path,
    source_server: &str,
    passfile: Option<&Path>,
    extra: &[String],
) -> PgResult<String> {
    let mut cmd = Command::new(bins.pg_rewind());
    cmd.arg("-D")
        .arg(data_dir)
        .arg(format!("--config-file={}", config_file.display()))
        .arg(format!("--source-server={source_server}"))
        .args(extra);
    if let Some(p) = passfile {
        cmd.env("PGPASSFILE", p);
    }
    let out = command::run(cmd).await?;
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: serde_json::Value) -> Vec<InitdbOption> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn initdb_options() {
        let args = initdb_args(&opts(
            json!(["data-checksums", {"encoding": "UTF8"}, {"locale": "C.UTF-8"}]),
        ))
        .unwrap();
        assert_eq!(
            args,
            ["--data-checksums", "--encoding=UTF8", "--locale=C.UTF-8"]
        );
        for bad in [
            json!(["nosync"]),
            json!([{"pgdata": "/x"}]),
            json!(["--pwfile"]),
            json!([""]),
        ] {
            let err = initdb_args(&opts(bad.clone())).unwrap_err();
            assert!(matches!(err, PgError::InvalidOption(_)), "{bad}");
        }
    }

    #[test]
    fn basebackup_options() {
        let args =
            basebackup_args(&json!(["verbose", {"max-rate": "100M"}, {"checkpoint": "fast"}]))
                .unwrap();
        assert_eq!(args, ["--verbose", "--max-rate=100M", "--checkpoint=fast"]);
        assert_eq!(
            basebackup_args(&json!({"label": "x"})).unwrap(),
            ["--label=x"]
        );
        assert!(basebackup_args(&json!(null)).unwrap().is_empty());
        assert!(basebackup_args(&json!([{"host": "x"}])).is_err());
        assert!(basebackup_args(&json!(["wal-method"])).is_err());
    }

    #[test]
    fn rewind_options() {
        assert_eq!(
            rewind_args(&json!(["restore-target-wal", {"config-file": "/x.conf"}])).unwrap(),
            ["--restore-target-wal", "--config-file=/x.conf"]
        );
        assert!(rewind_args(&json!(["dry-run"])).is_err());
        assert!(rewind_args(&json!({"source-server": "x"})).is_err());
    }

    #[tokio::test]
    async fn initdb_rejects_bad_options_before_running() {
        let bins = Binaries::new(Some("/nonexistent".into()));
        let err = initdb(
            &bins,
            Path::new("/nonexistent/x"),
            &opts(json!(["nosync"])),
            "postgres",
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, PgError::InvalidOption(_)));
    }

    #[tokio::test]
    async fn pwfile_is_private_and_removed() {
        let g = write_pwfile("s3cret").unwrap();
        let path = g.0.clone();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "s3cret\n");
        drop(g);
        assert!(!path.exists());
    }
}
