//! The fence: a small process beside the daemon that stops a primary whose
//! leader lease may be running out while the daemon is frozen or dead.
//!
//! Protocol: the daemon writes `<data_dir>.fence/heartbeat.json` atomically
//! (temporary file + rename) at the end of every HA cycle; the fence reads
//! it every [`POLL`]. A file rather than a socket: nothing to connect or
//! reconnect, a frozen daemon cannot block the fence, the last order
//! survives a restart of either process, and a restarted daemon simply
//! keeps writing the same file.
//!
//! The fence answers through `ack.json` (rewritten whenever the order it
//! holds changes, and at least every [`ACK_EVERY`]): which order it holds
//! and when it last looked. The HA cycle reads it to know that a live fence
//! will stop PostgreSQL at the fencing point, so that a leader cut off from
//! the DCS may serve right up to that point (`LocalView::fence_armed`).
//!
//! Times are milliseconds of `CLOCK_BOOTTIME`, which both processes read
//! alike (a `std::time::Instant` cannot cross a process boundary) and which
//! keeps counting through a suspend, like the lease in etcd.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::postgres::Postmaster;
use crate::postgres::datadir::{read_postmaster_pid, write_atomic};

pub const HEARTBEAT: &str = "heartbeat.json";
pub const ACK: &str = "ack.json";
pub const PIDFILE: &str = "fence.pid";
pub const LOG: &str = "fence.log";
/// How often the fence reads the heartbeat.
pub const POLL: Duration = Duration::from_millis(100);
/// How long an immediate shutdown gets before the process group is killed
/// (a SIGSTOPped postmaster never acts on SIGQUIT, but dies to SIGKILL). A
/// healthy postmaster and its backends are gone within milliseconds of
/// SIGQUIT; this bounds the unhealthy case and is part of the fencing
/// margin (`Timing::fence_margin`).
pub const KILL_GRACE: Duration = Duration::from_millis(400);
/// The fence rewrites `ack.json` at least this often.
pub const ACK_EVERY: Duration = Duration::from_millis(250);
/// An acknowledgement older than this does not count: the fence may be
/// dead or stopped.
pub const ACK_FRESH: Duration = Duration::from_secs(1);

/// The daemon's order, as written in the heartbeat file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Heartbeat {
    /// Stop PostgreSQL once `deadline_ms` passes.
    pub armed: bool,
    /// `CLOCK_BOOTTIME` ms: lease deadline minus the safety margin.
    pub deadline_ms: u64,
    /// The postmaster this order is about (from `postmaster.pid`), with its
    /// start time, so a reused pid is told apart.
    pub postmaster_pid: i32,
    pub postmaster_start: u64,
    /// Pause mode: the fence does nothing.
    pub paused: bool,
    /// `CLOCK_BOOTTIME` ms of the write: the daemon's sign of life.
    pub written_ms: u64,
    pub daemon_pid: u32,
    /// Clean shutdown: the fence exits.
    pub exit: bool,
}

/// The fence's answer: the order it holds, and when it last read the
/// heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Ack {
    pub armed: bool,
    pub paused: bool,
    pub deadline_ms: u64,
    /// `CLOCK_BOOTTIME` ms of the read this answers.
    pub polled_ms: u64,
    pub pid: u32,
}

pub fn read_ack(dir: &Path) -> Option<Ack> {
    let text = fs::read(dir.join(ACK)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Written often: temporary file + rename, without fsync (both processes
/// share the page cache; after a crash the ack means nothing anyway).
fn write_ack(dir: &Path, ack: &Ack) -> io::Result<()> {
    let body = serde_json::to_vec(ack).map_err(io::Error::other)?;
    let tmp = dir.join(format!(".{ACK}.tmp"));
    fs::write(&tmp, body)?;
    fs::rename(tmp, dir.join(ACK))
}

/// Does `ack` confirm the order `hb` (armed, not paused), fresh at
/// `now_ms`? The fence may still hold an earlier deadline than the one just
/// written (it reads every [`POLL`]): that stops PostgreSQL sooner, so it
/// counts too. `Some(ms)`: how much earlier than `hb`'s the fence's
/// deadline is.
pub fn ack_confirms(ack: &Ack, hb: &Heartbeat, now_ms: u64) -> Option<u64> {
    (hb.armed
        && !hb.paused
        && ack.armed
        && !ack.paused
        && ack.deadline_ms <= hb.deadline_ms
        && now_ms.saturating_sub(ack.polled_ms) <= ACK_FRESH.as_millis() as u64)
        .then(|| hb.deadline_ms - ack.deadline_ms)
}

/// `CLOCK_BOOTTIME` now, in milliseconds.
pub fn boottime_ms() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME");
    (ts.tv_sec() as u64) * 1000 + (ts.tv_nsec() as u64) / 1_000_000
}

/// An `Instant` of this process as `CLOCK_BOOTTIME` milliseconds.
pub fn instant_to_boottime_ms(at: Instant) -> u64 {
    let (now_i, now_b) = (Instant::now(), boottime_ms());
    if at >= now_i {
        now_b + (at - now_i).as_millis() as u64
    } else {
        now_b.saturating_sub((now_i - at).as_millis() as u64)
    }
}

/// `<data_dir>.fence`, beside the data directory (like `<data_dir>.log`).
pub fn state_dir(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "postgresql".to_owned());
    data_dir
        .parent()
        .unwrap_or(Path::new("/tmp"))
        .join(format!("{name}.fence"))
}

pub fn read_heartbeat(dir: &Path) -> Option<Heartbeat> {
    let text = fs::read(dir.join(HEARTBEAT)).ok()?;
    serde_json::from_slice(&text).ok()
}

pub fn write_heartbeat(dir: &Path, hb: &Heartbeat) -> io::Result<()> {
    let body = serde_json::to_vec(hb).map_err(io::Error::other)?;
    write_atomic(&dir.join(HEARTBEAT), &body)
}

/// The pid in `fence.pid`, if that process lives and is a fence for `dir`.
pub fn live_fence_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(dir.join(PIDFILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_fence_process(pid, dir).then_some(pid)
}

/// A live process whose command line is `... fence --state-dir <dir> ...`.
fn is_fence_process(pid: i32, dir: &Path) -> bool {
    let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    args.iter().any(|a| a == "fence")
        && args
            .windows(2)
            .any(|w| w[0] == "--state-dir" && Path::new(&w[1]) == dir)
}

// --- the daemon's side ---

/// What the HA cycle tells the fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceOrder {
    /// Stop PostgreSQL at this moment unless a newer order comes.
    Arm(Instant),
    /// PostgreSQL is a replica or stopped: nothing to fence.
    Disarm,
    /// No fresh facts (lease not renewed, PostgreSQL not answering): keep
    /// the last order, only show the daemon is alive.
    Keep,
}

/// The daemon's handle on its fence: adopts a running one, spawns one when
/// needed, writes the orders.
#[derive(Debug)]
pub struct FenceClient {
    dir: PathBuf,
    data_dir: PathBuf,
    exe: PathBuf,
    orphan_after: Duration,
    child: Option<Child>,
    pid: Option<i32>,
    last: Heartbeat,
    /// The fencing point of the last `Arm` order, as an `Instant`.
    armed_at: Option<Instant>,
}

impl FenceClient {
    /// Adopts a live fence of a previous daemon, if any; the last order it
    /// holds stays in force until this daemon writes a new one.
    pub fn new(data_dir: &Path, orphan_after: Duration) -> FenceClient {
        let dir = state_dir(data_dir);
        let pid = live_fence_pid(&dir);
        if let Some(pid) = pid {
            tracing::info!(event = "fence_adopted", pid, dir = %dir.display(), "a fence from a previous daemon runs; adopting it");
        }
        FenceClient {
            last: read_heartbeat(&dir).unwrap_or_default(),
            dir,
            data_dir: data_dir.to_owned(),
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("pgpilot")),
            orphan_after,
            child: None,
            pid,
            armed_at: None,
        }
    }

    /// The fencing point a live fence confirmed it holds (the last order
    /// written, armed and not paused, acknowledged less than [`ACK_FRESH`]
    /// ago by a process that is still a fence for this directory).
    pub fn confirmed_point(&self) -> Option<Instant> {
        let at = self.armed_at?;
        let ack = read_ack(&self.dir)?;
        let earlier = ack_confirms(&ack, &self.last, boottime_ms())?;
        is_fence_process(ack.pid as i32, &self.dir)
            .then(|| at.checked_sub(Duration::from_millis(earlier)))
            .flatten()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Carry out one cycle's order. Errors are logged: a missing fence
    /// weakens protection but must not stop the HA loop.
    /// `paused`: pause mode is on, and the fence does nothing whatever the
    /// deadline (ha-loop.md §13).
    pub fn apply(&mut self, order: FenceOrder, margin: Duration, paused: bool) {
        let mut hb = self.last.clone();
        match order {
            FenceOrder::Arm(deadline) => {
                let at = deadline.checked_sub(margin).unwrap_or(deadline);
                let pm = read_postmaster_pid(&self.data_dir);
                hb.armed = true;
                hb.deadline_ms = instant_to_boottime_ms(at);
                self.armed_at = Some(at);
                hb.postmaster_pid = pm.as_ref().map_or(0, |p| p.pid);
                hb.postmaster_start = pm.as_ref().map_or(0, |p| p.start_epoch);
            }
            FenceOrder::Disarm => {
                hb.armed = false;
                self.armed_at = None;
            }
            FenceOrder::Keep => {}
        }
        if hb.paused != paused {
            tracing::info!(event = "fence", paused);
        }
        hb.paused = paused;
        hb.exit = false;
        if hb.armed != self.last.armed {
            tracing::info!(event = "fence", armed = hb.armed);
        }
        self.write(hb);
        if self.last.armed {
            self.ensure_running();
        }
    }

    /// A lease keep-alive moved the deadline: re-arm with it, but only a
    /// fence the HA cycle armed last (for a PostgreSQL it saw answering as
    /// primary); a disarmed or paused fence stays as it is. Never moves
    /// the fencing point back.
    pub fn extend(&mut self, deadline: Instant, margin: Duration) {
        if !self.last.armed || self.last.paused {
            return;
        }
        let at = deadline.checked_sub(margin).unwrap_or(deadline);
        let ms = instant_to_boottime_ms(at);
        if ms <= self.last.deadline_ms {
            return;
        }
        let mut hb = self.last.clone();
        hb.deadline_ms = ms;
        self.armed_at = Some(at);
        self.write(hb);
    }

    /// Clean shutdown (PostgreSQL already stopped): the fence exits.
    pub fn shutdown(&mut self) {
        let hb = Heartbeat {
            exit: true,
            ..Heartbeat::default()
        };
        self.write(hb);
    }

    fn write(&mut self, mut hb: Heartbeat) {
        hb.written_ms = boottime_ms();
        hb.daemon_pid = std::process::id();
        if let Err(e) = fs::create_dir_all(&self.dir).and_then(|()| write_heartbeat(&self.dir, &hb))
        {
            tracing::warn!(event = "fence_write_failed", dir = %self.dir.display(), error = %e);
        }
        self.last = hb;
    }

    fn alive(&mut self) -> bool {
        if let Some(c) = &mut self.child
            && let Ok(Some(status)) = c.try_wait()
        {
            tracing::warn!(event = "fence_exited", status = %status);
            self.child = None;
            self.pid = None;
        }
        match self.pid {
            Some(pid) => is_fence_process(pid, &self.dir),
            None => false,
        }
    }

    /// Start a fence unless one runs: in its own process group, so a signal
    /// to the daemon (or its group) never reaches it.
    fn ensure_running(&mut self) {
        if self.alive() {
            return;
        }
        if let Some(pid) = live_fence_pid(&self.dir) {
            self.pid = Some(pid);
            return;
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(LOG));
        let (out, err) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
            Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
            Err(_) => (Stdio::null(), Stdio::null()),
        };
        let mut cmd = Command::new(&self.exe);
        cmd.arg("fence")
            .arg("--state-dir")
            .arg(&self.dir)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--orphan-after")
            .arg(self.orphan_after.as_secs().to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        match cmd.spawn() {
            Ok(child) => {
                let pid = child.id() as i32;
                tracing::info!(event = "fence_started", pid, dir = %self.dir.display());
                self.pid = Some(pid);
                self.child = Some(child);
            }
            Err(e) => tracing::error!(event = "fence_spawn_failed", error = %e),
        }
    }
}

// --- the fence process ---

fn log(msg: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "{}.{:03} fence[{}]: {msg}",
        now.as_secs(),
        now.subsec_millis(),
        std::process::id()
    );
}

/// The fence's main loop. Returns when the daemon asked it to exit, when
/// another fence already serves the directory, or when no daemon has
/// written for `orphan_after` and PostgreSQL is not running.
pub fn run(dir: &Path, data_dir: &Path, orphan_after: Duration) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if let Some(other) = live_fence_pid(dir).filter(|p| *p != std::process::id() as i32) {
        log(&format!(
            "fence {other} already runs for this directory; exiting"
        ));
        return Ok(());
    }
    write_atomic(
        &dir.join(PIDFILE),
        std::process::id().to_string().as_bytes(),
    )?;
    let started = boottime_ms();
    log(&format!(
        "started for {} (orphan after {}s)",
        data_dir.display(),
        orphan_after.as_secs()
    ));
    let mut fenced_deadline: Option<u64> = None;
    let mut was_armed = None;
    let mut acked: Option<Ack> = None;
    loop {
        std::thread::sleep(POLL);
        let hb = read_heartbeat(dir);
        let now = boottime_ms();
        if let Some(hb) = &hb {
            let ack = Ack {
                armed: hb.armed,
                paused: hb.paused,
                deadline_ms: hb.deadline_ms,
                polled_ms: now,
                pid: std::process::id(),
            };
            let due = acked.as_ref().is_none_or(|a| {
                (a.armed, a.paused, a.deadline_ms) != (ack.armed, ack.paused, ack.deadline_ms)
                    || now.saturating_sub(a.polled_ms) >= ACK_EVERY.as_millis() as u64
            });
            if due {
                match write_ack(dir, &ack) {
                    Ok(()) => acked = Some(ack),
                    Err(e) => log(&format!("cannot write {ACK}: {e}")),
                }
            }
            if hb.exit {
                log("the daemon shut down cleanly; exiting");
                break;
            }
            if was_armed != Some(hb.armed) {
                log(&format!(
                    "{} (daemon {})",
                    if hb.armed { "armed" } else { "disarmed" },
                    hb.daemon_pid
                ));
                was_armed = Some(hb.armed);
            }
            if hb.armed
                && !hb.paused
                && now >= hb.deadline_ms
                && fenced_deadline != Some(hb.deadline_ms)
            {
                fenced_deadline = Some(hb.deadline_ms);
                fence(data_dir, hb, now);
            }
        }
        let last_word = hb.as_ref().map_or(started, |h| h.written_ms.max(started));
        if now.saturating_sub(last_word) > orphan_after.as_millis() as u64
            && Postmaster::adopt(data_dir).is_none()
        {
            log("no daemon has written for a long time and PostgreSQL is not running; exiting");
            break;
        }
    }
    if live_fence_pid(dir) == Some(std::process::id() as i32) {
        let _ = fs::remove_file(dir.join(PIDFILE));
    }
    Ok(())
}

/// Stop the postmaster of `data_dir` at once: SIGQUIT (immediate
/// shutdown), then SIGKILL of its process group after [`KILL_GRACE`].
fn fence(data_dir: &Path, hb: &Heartbeat, now: u64) {
    let late = now.saturating_sub(hb.deadline_ms);
    let Some(pm) = Postmaster::adopt(data_dir) else {
        log(&format!(
            "deadline passed {late} ms ago with no heartbeat since; PostgreSQL is not running"
        ));
        return;
    };
    let matches = read_postmaster_pid(data_dir)
        .is_some_and(|p| p.pid == hb.postmaster_pid && p.start_epoch == hb.postmaster_start);
    log(&format!(
        "deadline passed {late} ms ago with no heartbeat since: stopping PostgreSQL (postmaster {}{}) with an immediate shutdown",
        pm.pid(),
        if matches {
            ""
        } else {
            ", started after the last heartbeat"
        }
    ));
    let mut pm = pm;
    if let Err(e) = pm.signal(Signal::SIGQUIT) {
        log(&format!("SIGQUIT failed: {e}"));
    }
    let until = Instant::now() + KILL_GRACE;
    while Instant::now() < until {
        if !pm.is_alive() {
            log("PostgreSQL stopped");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    log("PostgreSQL still runs after the grace: SIGKILL to its process group");
    if let Err(e) = pm.kill_group() {
        log(&format!("SIGKILL failed: {e}"));
    }
    // Wake a stopped group, so the kill takes effect at once everywhere.
    let _ = kill(Pid::from_raw(-pm.pid()), Signal::SIGCONT);
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && pm.is_alive() {
        std::thread::sleep(Duration::from_millis(20));
    }
    log(if pm.is_alive() {
        "PostgreSQL still alive after SIGKILL"
    } else {
        "PostgreSQL killed"
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_is_beside_the_data_directory() {
        assert_eq!(
            state_dir(Path::new("/var/lib/pg/data")),
            PathBuf::from("/var/lib/pg/data.fence")
        );
    }

    #[test]
    fn boottime_conversion_round_trips() {
        let now = Instant::now();
        let b = boottime_ms();
        let later = instant_to_boottime_ms(now + Duration::from_secs(5));
        assert!((later as i64 - (b + 5000) as i64).abs() < 50, "{later} {b}");
        let earlier = instant_to_boottime_ms(now - Duration::from_secs(1));
        assert!((earlier as i64 - (b - 1000) as i64).abs() < 50);
    }

    #[test]
    fn ack_confirms_only_a_fresh_answer_to_the_same_armed_order() {
        let hb = Heartbeat {
            armed: true,
            deadline_ms: 10_000,
            ..Heartbeat::default()
        };
        let ack = Ack {
            armed: true,
            deadline_ms: 10_000,
            polled_ms: 5_000,
            ..Ack::default()
        };
        assert_eq!(ack_confirms(&ack, &hb, 5_900), Some(0));
        assert_eq!(ack_confirms(&ack, &hb, 6_000), Some(0));
        // Silent for more than ACK_FRESH: maybe dead or stopped.
        assert_eq!(ack_confirms(&ack, &hb, 6_001), None);
        // Still holding the previous, earlier deadline: it fires sooner.
        let old = Ack {
            deadline_ms: 9_000,
            ..ack.clone()
        };
        assert_eq!(ack_confirms(&old, &hb, 5_100), Some(1_000));
        // Holding a later deadline than the order: it would fire too late.
        let later = Ack {
            deadline_ms: 11_000,
            ..ack.clone()
        };
        assert_eq!(ack_confirms(&later, &hb, 5_100), None);
        // Disarmed or paused on either side.
        let paused = Heartbeat {
            paused: true,
            ..hb.clone()
        };
        assert_eq!(ack_confirms(&ack, &paused, 5_100), None);
        let disarmed = Ack {
            armed: false,
            ..ack.clone()
        };
        assert_eq!(ack_confirms(&disarmed, &hb, 5_100), None);
    }

    #[test]
    fn heartbeat_round_trips_through_the_file() {
        let dir = std::env::temp_dir().join(format!("pgpilot-fence-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let hb = Heartbeat {
            armed: true,
            deadline_ms: 42,
            postmaster_pid: 7,
            postmaster_start: 9,
            ..Heartbeat::default()
        };
        write_heartbeat(&dir, &hb).unwrap();
        assert_eq!(read_heartbeat(&dir), Some(hb));
        let ack = Ack {
            armed: true,
            deadline_ms: 42,
            polled_ms: 7,
            pid: 1,
            paused: false,
        };
        write_ack(&dir, &ack).unwrap();
        assert_eq!(read_ack(&dir), Some(ack));
        assert_eq!(live_fence_pid(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
