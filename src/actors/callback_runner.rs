//! The CallbackRunner: runs the user's `postgresql.callbacks` scripts.
//!
//! A script runs as `<script> <action> <role> <scope>`, through
//! `/bin/sh -c '<script> "$@"' sh <action> <role> <scope>`, so the
//! configured string may carry its own arguments (`/usr/local/bin/cb.sh
//! --verbose`) and is split the way a shell splits it. Each run is spawned:
//! the HA loop never waits for a callback.
//!
//! Rules (documented in docs/operations.md):
//! - one run per action at a time: a new event for an action whose previous
//!   run is still going first terminates that run (SIGTERM to its process
//!   group, SIGKILL after [`TERM_GRACE`]) and only then starts;
//!   runs of different actions may overlap;
//! - every run has a deadline, [`callback_timeout`] (the dynamic `ttl`,
//!   at least [`MIN_TIMEOUT`]), after which it is terminated the same way;
//! - the exit status, the duration and the first [`OUTPUT_LIMIT`] bytes of
//!   stdout and stderr are logged (`callback_finished`).

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::config::Callbacks;
use crate::messages::callbacks::{CallbackAction, CallbackEvent};
use crate::messages::config::ConfigChanged;

/// How long a terminated callback gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// The shortest deadline a callback gets, whatever the `ttl`.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a callback's stdout and stderr is logged.
pub const OUTPUT_LIMIT: usize = 4096;

/// A callback's deadline: `ttl` (by then the cluster has acted on whatever
/// the callback reported about), at least [`MIN_TIMEOUT`].
pub fn callback_timeout(ttl: Duration) -> Duration {
    ttl.max(MIN_TIMEOUT)
}

/// One run in flight: how to stop it, and how to know it has stopped.
struct Running {
    cancel: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

pub struct CallbackRunner {
    callbacks: Callbacks,
    scope: String,
    timeout: Duration,
    running: HashMap<CallbackAction, Running>,
}

impl CallbackRunner {
    pub fn new(callbacks: Callbacks, scope: String) -> CallbackRunner {
        CallbackRunner {
            callbacks,
            scope,
            timeout: callback_timeout(crate::config::Timing::default().ttl),
            running: HashMap::new(),
        }
    }

    /// The deadline of every run (see [`callback_timeout`]).
    pub fn with_timeout(mut self, timeout: Duration) -> CallbackRunner {
        self.timeout = timeout;
        self
    }

    fn script(&self, action: CallbackAction) -> Option<&str> {
        match action {
            CallbackAction::OnStart => self.callbacks.on_start.as_deref(),
            CallbackAction::OnStop => self.callbacks.on_stop.as_deref(),
            CallbackAction::OnRestart => self.callbacks.on_restart.as_deref(),
            CallbackAction::OnReload => self.callbacks.on_reload.as_deref(),
            CallbackAction::OnRoleChange => self.callbacks.on_role_change.as_deref(),
        }
        .map(str::trim)
        .filter(|s| !s.is_empty())
    }
}

impl Actor for CallbackRunner {
    type Context = Context<Self>;
}

impl Handler<CallbackEvent> for CallbackRunner {
    type Result = ();
    fn handle(&mut self, ev: CallbackEvent, _ctx: &mut Context<Self>) {
        let Some(script) = self.script(ev.action).map(str::to_owned) else {
            debug!(event = crate::events::CALLBACK_NOT_CONFIGURED, action = ev.action.as_str(), role = %ev.role);
            return;
        };
        let previous = self.running.remove(&ev.action);
        let (cancel, cancelled) = oneshot::channel();
        let run = CallbackRun {
            script,
            action: ev.action,
            role: ev.role,
            scope: self.scope.clone(),
            timeout: self.timeout,
        };
        let done = tokio::task::spawn_local(async move {
            if let Some(prev) = previous {
                // Gone already if it finished: then both calls return at once.
                let _ = prev.cancel.send(());
                let _ = prev.done.await;
            }
            run.run(cancelled).await;
        });
        self.running.insert(ev.action, Running { cancel, done });
    }
}

impl Handler<ConfigChanged> for CallbackRunner {
    type Result = ();
    fn handle(&mut self, ConfigChanged(cfg): ConfigChanged, _ctx: &mut Context<Self>) {
        if cfg.postgresql.callbacks != self.callbacks {
            info!(event = crate::events::CALLBACKS_CHANGED);
            self.callbacks = cfg.postgresql.callbacks.clone();
        }
        if cfg.scope != self.scope {
            self.scope = cfg.scope.clone();
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    Exited(Option<i32>, Option<i32>),
    TimedOut,
    Superseded,
    SpawnFailed(String),
}

/// What a run produced (also what the unit tests look at).
#[derive(Debug, Clone)]
pub struct RunReport {
    pub end: RunEnd,
    pub stdout: String,
    pub stderr: String,
}

/// One callback invocation.
#[derive(Debug, Clone)]
pub struct CallbackRun {
    pub script: String,
    pub action: CallbackAction,
    pub role: String,
    pub scope: String,
    pub timeout: Duration,
}

impl CallbackRun {
    /// Run, wait (bounded), log the result.
    pub async fn run(self, cancelled: oneshot::Receiver<()>) -> RunReport {
        let started = Instant::now();
        info!(event = crate::events::CALLBACK_STARTED, action = self.action.as_str(), role = %self.role,
              scope = %self.scope, script = %self.script);
        let report = self.execute(cancelled).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let (stdout, stderr) = (report.stdout.trim_end(), report.stderr.trim_end());
        match &report.end {
            RunEnd::Exited(Some(0), _) => {
                info!(event = crate::events::CALLBACK_FINISHED, action = self.action.as_str(), role = %self.role,
                      exit_code = 0, elapsed_ms, stdout = %stdout, stderr = %stderr)
            }
            RunEnd::Exited(code, signal) => {
                warn!(event = crate::events::CALLBACK_FAILED, action = self.action.as_str(), role = %self.role,
                      exit_code = ?code, signal = ?signal, elapsed_ms, stdout = %stdout, stderr = %stderr)
            }
            RunEnd::TimedOut => {
                warn!(event = crate::events::CALLBACK_TIMED_OUT, action = self.action.as_str(), role = %self.role,
                      timeout_ms = self.timeout.as_millis() as u64, stdout = %stdout, stderr = %stderr)
            }
            RunEnd::Superseded => {
                info!(event = crate::events::CALLBACK_TERMINATED, action = self.action.as_str(), role = %self.role,
                      elapsed_ms, "a newer event of the same action arrived")
            }
            RunEnd::SpawnFailed(e) => {
                warn!(event = crate::events::CALLBACK_SPAWN_FAILED, action = self.action.as_str(), error = %e)
            }
        }
        report
    }

    async fn execute(&self, mut cancelled: oneshot::Receiver<()>) -> RunReport {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("{} \"$@\"", self.script))
            .arg("sh")
            .arg(self.action.as_str())
            .arg(&self.role)
            .arg(&self.scope)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a termination reaches whatever the
            // script started too.
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return RunReport {
                    end: RunEnd::SpawnFailed(e.to_string()),
                    stdout: String::new(),
                    stderr: String::new(),
                };
            }
        };
        let pgid = child.id().map(|p| Pid::from_raw(p as i32));
        let out = child.stdout.take().map(|s| tokio::spawn(read_limited(s)));
        let err = child.stderr.take().map(|s| tokio::spawn(read_limited(s)));
        let mut cancel_open = true;
        let end = loop {
            tokio::select! {
                status = child.wait() => break exited(status),
                _ = tokio::time::sleep(self.timeout) => {
                    terminate(&mut child, pgid).await;
                    break RunEnd::TimedOut;
                }
                r = &mut cancelled, if cancel_open => {
                    if r.is_ok() {
                        terminate(&mut child, pgid).await;
                        break RunEnd::Superseded;
                    }
                    // The runner forgot this run (it cannot happen while
                    // the actor lives): just wait for it.
                    cancel_open = false;
                }
            }
        };
        // A background grandchild may hold the pipes open: do not wait on it.
        let collect = |h: Option<tokio::task::JoinHandle<String>>| async move {
            match h {
                Some(h) => tokio::time::timeout(Duration::from_secs(1), h)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default(),
                None => String::new(),
            }
        };
        RunReport {
            end,
            stdout: collect(out).await,
            stderr: collect(err).await,
        }
    }
}

fn exited(status: std::io::Result<ExitStatus>) -> RunEnd {
    match status {
        Ok(s) => RunEnd::Exited(s.code(), s.signal()),
        Err(e) => RunEnd::SpawnFailed(e.to_string()),
    }
}

/// SIGTERM to the process group, SIGKILL after [`TERM_GRACE`].
async fn terminate(child: &mut tokio::process::Child, pgid: Option<Pid>) {
    let Some(pgid) = pgid else { return };
    let _ = killpg(pgid, Signal::SIGTERM);
    if tokio::time::timeout(TERM_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // The script is gone; what it started in its group goes with it.
    let _ = killpg(pgid, Signal::SIGKILL);
}

async fn read_limited<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str, timeout: Duration) -> CallbackRun {
        CallbackRun {
            script: script.to_owned(),
            action: CallbackAction::OnRoleChange,
            role: "primary".to_owned(),
            scope: "batman".to_owned(),
            timeout,
        }
    }

    #[tokio::test]
    async fn script_gets_action_role_scope_after_its_own_arguments() {
        let (_tx, rx) = oneshot::channel();
        let r = run("echo first 'two words'", Duration::from_secs(10))
            .run(rx)
            .await;
        assert_eq!(r.end, RunEnd::Exited(Some(0), None));
        assert_eq!(
            r.stdout.trim(),
            "first two words on_role_change primary batman"
        );
    }

    #[tokio::test]
    async fn failure_and_stderr_are_reported() {
        let (_tx, rx) = oneshot::channel();
        let r = run("echo oops >&2; exit 3;", Duration::from_secs(10))
            .run(rx)
            .await;
        assert_eq!(r.end, RunEnd::Exited(Some(3), None));
        assert_eq!(r.stderr.trim(), "oops");
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let dir = std::env::temp_dir().join(format!("pgpilot-cb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("grandchild-survived");
        let _ = std::fs::remove_file(&marker);
        // The grandchild ignores nothing: a group SIGTERM must reach it
        // before it writes the marker.
        let script = format!("(sleep 4; touch {}) & sleep 30; true", marker.display());
        let (_tx, rx) = oneshot::channel();
        let started = Instant::now();
        let r = run(&script, Duration::from_millis(300)).run(rx).await;
        assert_eq!(r.end, RunEnd::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(4));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!marker.exists(), "the script's child outlived the timeout");
    }

    #[tokio::test]
    async fn cancel_terminates_and_sigkill_follows_a_stubborn_script() {
        let (tx, rx) = oneshot::channel();
        let h = tokio::spawn(run("trap '' TERM; sleep 30;", Duration::from_secs(60)).run(rx));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        tx.send(()).unwrap();
        let r = h.await.unwrap();
        assert_eq!(r.end, RunEnd::Superseded);
        assert!(started.elapsed() < TERM_GRACE + Duration::from_secs(2));
    }

    #[test]
    fn timeout_derives_from_ttl() {
        assert_eq!(
            callback_timeout(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(callback_timeout(Duration::from_secs(1)), MIN_TIMEOUT);
    }
}
