//! The postmaster process: started directly (not through pg_ctl) as our
//! child in its own process group, or adopted from `postmaster.pid` when the
//! daemon restarts beside a running server.
//!
//! The handle never kills PostgreSQL on drop: a daemon restart must leave
//! the database running.

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::binaries::Binaries;
use super::datadir::read_postmaster_pid;
use super::error::{PgError, PgResult, STDERR_TAIL_LINES, last_lines};
use super::query::{self, ConnParams};

/// PostgreSQL's shutdown modes and the signal each one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM: wait for sessions to end.
    Smart,
    /// SIGINT: abort sessions, checkpoint, exit.
    Fast,
    /// SIGQUIT: exit at once; crash recovery on next start.
    Immediate,
}

impl StopMode {
    pub fn signal(self) -> Signal {
        match self {
            StopMode::Smart => Signal::SIGTERM,
            StopMode::Fast => Signal::SIGINT,
            StopMode::Immediate => Signal::SIGQUIT,
        }
    }
}

/// How [`Postmaster::stop`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// It was not running.
    NotRunning,
    /// It exited on the requested signal within the timeout.
    Exited,
    /// The timeout passed; the process group was SIGKILLed.
    Killed,
}

#[derive(Debug)]
pub struct Postmaster {
    pid: i32,
    data_dir: PathBuf,
    log_path: Option<PathBuf>,
    /// `Some` when we spawned it; `None` when adopted.
    child: Option<Child>,
    exit: Option<ExitStatus>,
}

/// The arguments every `postgres` invocation of a data directory takes:
/// the data directory, the configuration file and the command-line
/// parameters. One list for the postmaster and for single-user crash
/// recovery, because the checkpoint that ends a recovery records some of
/// these in `pg_control` (`wal_log_hints` among them, which pg_rewind
/// reads back): a recovery run without them would leave a data directory
/// that pg_rewind refuses.
pub fn server_args(
    data_dir: &Path,
    config_file: &Path,
    cmdline_params: &[(String, String)],
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["-D".into(), data_dir.into()];
    args.push(format!("--config-file={}", config_file.display()).into());
    args.extend(
        cmdline_params
            .iter()
            .map(|(name, value)| format!("--{name}={value}").into()),
    );
    args
}

impl Postmaster {
    /// Spawns `postgres -D <data_dir> --config-file=<config_file>
    /// --name=value...` in its own process group with stdout/stderr appended
    /// to `log_path`. Returns as soon as the process exists; use
    /// [`Postmaster::wait_ready`] to wait for connections.
    pub fn start(
        bins: &Binaries,
        data_dir: &Path,
        config_file: &Path,
        cmdline_params: &[(String, String)],
        log_path: &Path,
    ) -> PgResult<Postmaster> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log_path)
            .map_err(|e| PgError::io(format!("open log {}", log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| PgError::io("duplicate log handle", e))?;
        let mut cmd = Command::new(bins.postgres());
        cmd.args(server_args(data_dir, config_file, cmdline_params));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .process_group(0)
            .kill_on_drop(false);
        let command = super::command::describe(&cmd);
        let child = cmd
            .spawn()
            .map_err(|source| PgError::Spawn { command, source })?;
        let pid = child.id().map(|p| p as i32).ok_or_else(|| {
            PgError::io("postmaster pid", std::io::Error::other("exited at once"))
        })?;
        Ok(Postmaster {
            pid,
            data_dir: data_dir.to_owned(),
            log_path: Some(log_path.to_owned()),
            child: Some(child),
            exit: None,
        })
    }

    /// A handle on the postmaster already running on `data_dir`: its
    /// postmaster.pid names a live process whose command line is a
    /// `postgres`/`postmaster` binary and whose data directory is ours.
    pub fn adopt(data_dir: &Path) -> Option<Postmaster> {
        let pidfile = read_postmaster_pid(data_dir)?;
        if !same_path(&pidfile.data_dir, data_dir) {
            return None;
        }
        if !(pid_exists(pidfile.pid) && is_postmaster_cmdline(pidfile.pid)) {
            return None;
        }
        Some(Postmaster {
            pid: pidfile.pid,
            data_dir: data_dir.to_owned(),
            log_path: None,
            child: None,
            exit: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether we spawned it (as opposed to adopting it).
    pub fn is_child(&self) -> bool {
        self.child.is_some()
    }

    /// Exit status, known only for our own child once it was reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// Whether the postmaster still runs. Our child is checked with
    /// `try_wait` (which also reaps it: `kill(pid, 0)` succeeds on a zombie);
    /// an adopted one with `kill(pid, 0)` plus its command line, so a reused
    /// pid is not mistaken for it.
    pub fn is_alive(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(None) => true,
                Ok(Some(status)) => {
                    self.exit = Some(status);
                    false
                }
                Err(_) => pid_exists(self.pid),
            },
            None => pid_exists(self.pid) && is_postmaster_cmdline(self.pid),
        }
    }

    /// Sends `sig` to the postmaster only.
    pub fn signal(&self, sig: Signal) -> PgResult<()> {
        match signal::kill(Pid::from_raw(self.pid), sig) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(source) => Err(PgError::Signal {
                context: format!("send {sig} to postmaster {}", self.pid),
                source,
            }),
        }
    }

    /// SIGKILL to the postmaster's process group, or to the postmaster
    /// alone when it does not lead its own group — never to ours — and to
    /// every child of the postmaster with its own group: PostgreSQL's
    /// backends and auxiliary processes call `setsid()`, so the postmaster's
    /// group does not reach them. The postmaster is stopped first so it
    /// forks nothing new meanwhile (SIGKILL works on a stopped process).
    pub fn kill_group(&self) -> PgResult<()> {
        let pid = Pid::from_raw(self.pid);
        let _ = signal::kill(pid, Signal::SIGSTOP);
        for child in children_of(self.pid) {
            let cpid = Pid::from_raw(child);
            if nix::unistd::getpgid(Some(cpid)) == Ok(cpid) {
                let _ = signal::killpg(cpid, Signal::SIGKILL);
            }
            let _ = signal::kill(cpid, Signal::SIGKILL);
        }
        let res = match nix::unistd::getpgid(Some(pid)) {
            Ok(pgid) if pgid == pid => signal::killpg(pgid, Signal::SIGKILL),
            Ok(_) => signal::kill(pid, Signal::SIGKILL),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(source) => Err(PgError::Signal {
                context: format!("SIGKILL postmaster group {}", self.pid),
                source,
            }),
        }
    }

    /// Polls until the postmaster is gone or `timeout` passes; true if gone.
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shuts down with `mode`, waits up to `timeout`, then SIGKILLs the
    /// process group and waits a little more.
    pub async fn stop(&mut self, mode: StopMode, timeout: Duration) -> PgResult<StopOutcome> {
        if !self.is_alive() {
            return Ok(StopOutcome::NotRunning);
        }
        self.signal(mode.signal())?;
        if self.wait_exit(timeout).await {
            return Ok(StopOutcome::Exited);
        }
        tracing::warn!(
            pid = self.pid,
            ?mode,
            ?timeout,
            "postmaster did not stop in time; killing its process group"
        );
        self.kill_group()?;
        if self.wait_exit(Duration::from_secs(10)).await {
            Ok(StopOutcome::Killed)
        } else {
            Err(PgError::Timeout {
                what: format!("postmaster {} still alive after SIGKILL", self.pid),
                after: timeout + Duration::from_secs(10),
            })
        }
    }

    /// Connects with `params` until it works, failing early (with the last
    /// lines of the server log) if the postmaster exits meanwhile.
    pub async fn wait_ready(
        &mut self,
        params: &ConnParams,
        timeout: Duration,
    ) -> PgResult<tokio_postgres::Client> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_alive() {
                let stderr = self
                    .log_path
                    .as_ref()
                    .and_then(|p| fs::read_to_string(p).ok())
                    .map(|t| last_lines(&t, STDERR_TAIL_LINES))
                    .unwrap_or_default();
                return Err(PgError::CommandFailed {
                    command: format!("postgres -D {}", self.data_dir.display()),
                    status: self
                        .exit
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "exited".to_owned()),
                    stderr,
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match query::connect(params, left.min(Duration::from_secs(2))).await {
                Ok(client) => return Ok(client),
                Err(e) if Instant::now() >= deadline => {
                    return Err(PgError::Timeout {
                        what: format!("waiting for postgres to accept connections ({e})"),
                        after: timeout,
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// The processes whose parent is `pid` (from `/proc/<pid>/stat`).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn pid_exists(pid: i32) -> bool {
    // EPERM means it exists but belongs to someone else.
    matches!(
        signal::kill(Pid::from_raw(pid), None),
        Ok(()) | Err(Errno::EPERM)
    )
}

/// argv[0] of the postmaster is the `postgres` (or legacy `postmaster`)
/// binary; backends rewrite theirs to `postgres: ...`.
fn is_postmaster_cmdline(pid: i32) -> bool {
    let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv0 = raw.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    let base = argv0.rsplit('/').next().unwrap_or_default();
    base == "postgres" || base == "postmaster"
}

fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    canon(a) == canon(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_signals() {
        assert_eq!(StopMode::Smart.signal(), Signal::SIGTERM);
        assert_eq!(StopMode::Fast.signal(), Signal::SIGINT);
        assert_eq!(StopMode::Immediate.signal(), Signal::SIGQUIT);
    }

    #[test]
    fn server_args_carry_every_command_line_parameter() {
        let params = vec![
            ("wal_log_hints".to_owned(), "on".to_owned()),
            ("max_connections".to_owned(), "100".to_owned()),
        ];
        let args = server_args(Path::new("data"), Path::new("/etc/pg.conf"), &params);
        let args: Vec<_> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-D",
                "data",
                "--config-file=/etc/pg.conf",
                "--wal_log_hints=on",
                "--max_connections=100"
            ]
        );
    }

    #[test]
    fn own_process_is_not_a_postmaster() {
        assert!(pid_exists(std::process::id() as i32));
        assert!(!is_postmaster_cmdline(std::process::id() as i32));
        assert!(Postmaster::adopt(Path::new("/nonexistent/pgpilot")).is_none());
    }

    /// A stand-in child that ignores nothing: stop() sends SIGINT and it
    /// exits; the group kill path is covered with a shell ignoring SIGINT.
    #[tokio::test]
    async fn stop_escalates_to_sigkill() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap '' INT; sleep 30"]).process_group(0);
        let child = cmd.spawn().unwrap();
        let mut pm = Postmaster {
            pid: child.id().unwrap() as i32,
            data_dir: PathBuf::from("/nonexistent"),
            log_path: None,
            child: Some(child),
            exit: None,
        };
        assert!(pm.is_alive());
        // Give sh time to install the trap.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let out = pm
            .stop(StopMode::Fast, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(out, StopOutcome::Killed);
        assert!(!pm.is_alive());
        assert_eq!(
            pm.stop(StopMode::Fast, Duration::from_secs(1))
                .await
                .unwrap(),
            StopOutcome::NotRunning
        );
    }
}
