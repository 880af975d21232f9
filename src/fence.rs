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
//! keeps counting through a suspend, like the lease in etcd. It restarts at
//! every boot, so an order carries the kernel's `boot_id` and an order from
//! another boot counts for nothing.
//!
//! The fence shares nothing with its daemon's fate: it is started through a
//! short-lived launcher (`pgpilot fence --detach`) and calls `setsid()`, so
//! once the launcher exits it is neither a descendant of the daemon (it is
//! re-parented to init or the nearest subreaper) nor in its process group or
//! session. Freezing the daemon's pid, its process group or every process
//! found by walking its descendants leaves the fence running, and killing
//! the daemon does not kill it. A restarted daemon finds it through
//! `fence.pid` (checked against `/proc/<pid>/cmdline`) and adopts it.
//!
//! What it may stop ([`may_stop`]): the postmaster its order names, or,
//! while no newer daemon has written, any postmaster of the data directory
//! (the daemon whose lease is ending started it after its last order). A
//! postmaster that a newer daemon runs is never touched by an older
//! daemon's order.

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
/// How often a fence of this directory stopped PostgreSQL, and when last
/// ([`Fired`]); written by the fence when it does, read by `/metrics`.
pub const FIRED: &str = "fired.json";
/// How often the fence reads the heartbeat when no deadline is near. An
/// armed fence also wakes exactly at its deadline (`next_wake`), so this
/// period is not part of the fencing delay: it only bounds how stale the
/// acknowledgement gets and how fast a new order is confirmed. Each wake
/// costs a file read and an `ack.json` rewrite, which was most of an idle
/// primary's CPU at 100 ms.
pub const POLL: Duration = Duration::from_millis(500);
/// How long an immediate shutdown gets before the process group is killed
/// (a SIGSTOPped postmaster never acts on SIGQUIT, but dies to SIGKILL). A
/// healthy postmaster and its backends are gone within milliseconds of
/// SIGQUIT; this bounds the unhealthy case and is part of the fencing
/// margin (`Timing::fence_margin`).
pub const KILL_GRACE: Duration = Duration::from_millis(400);
/// The fence rewrites `ack.json` at least this often (in practice at
/// every [`POLL`]).
pub const ACK_EVERY: Duration = Duration::from_millis(450);
/// An acknowledgement older than this does not count: the fence may be
/// dead or stopped. Three polls, so a fence woken late on a loaded host is
/// not taken for a dead one; a daemon that trusts a fence which died since
/// still stops PostgreSQL itself at the fencing point.
pub const ACK_FRESH: Duration = Duration::from_millis(1500);
/// A launched fence writes `fence.pid` within milliseconds; no second one
/// is launched before this has passed.
const LAUNCH_GRACE: Duration = Duration::from_secs(2);
/// On a clean shutdown the fence exits within one [`POLL`]; after this it
/// is killed, so that nothing is left running.
pub const EXIT_WAIT: Duration = Duration::from_secs(2);

/// One daemon process: its pid and the `CLOCK_BOOTTIME` ms at which it
/// created its fence client (a pid alone may be reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DaemonId {
    pub pid: u32,
    pub started_ms: u64,
}

/// The daemon's order, as written in the heartbeat file. Fields missing
/// from a file (written by an older release) take their default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
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
    /// The writer's pid (also in `daemon`; kept for fences of earlier
    /// releases, which read only this).
    pub daemon_pid: u32,
    /// The daemon that wrote this file last.
    pub daemon: DaemonId,
    /// The daemon whose lease `deadline_ms` belongs to: the writer of the
    /// last `Arm`. A later writer that differs is a newer daemon.
    pub armed_by: DaemonId,
    /// `/proc/sys/kernel/random/boot_id` of the writer: `CLOCK_BOOTTIME`
    /// and pids mean nothing across a reboot. Empty from older releases.
    pub boot_id: String,
    /// Clean shutdown: the fence exits.
    pub exit: bool,
}

/// The running postmaster, as `postmaster.pid` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostmasterId {
    pub pid: i32,
    pub start: u64,
}

/// Why the fence may stop the postmaster that runs at the fencing point,
/// or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The postmaster the order names.
    Named,
    /// Another one, but no daemon has written since the one whose lease is
    /// ending armed the order: that daemon started it (a restart) and may
    /// run it as a primary.
    StartedByArmer,
    /// Another one, and a newer daemon (this pid) has written since: it is
    /// that daemon's PostgreSQL, which an older order must never hit.
    NewerDaemon(u32),
}

impl Target {
    pub fn may_stop(self) -> bool {
        !matches!(self, Target::NewerDaemon(_))
    }
}

/// Which postmaster an armed order lets the fence stop (see the module
/// documentation): the named one always; any other only while the daemon
/// that armed the order is still the last writer.
pub fn may_stop(hb: &Heartbeat, running: PostmasterId) -> Target {
    if running.pid == hb.postmaster_pid && running.start == hb.postmaster_start {
        Target::Named
    } else if hb.daemon == hb.armed_by {
        Target::StartedByArmer
    } else {
        Target::NewerDaemon(hb.daemon.pid)
    }
}

/// Does this order count on this machine now? One from another boot does
/// not (its clock and pids are another boot's).
pub fn same_boot(hb: &Heartbeat, boot_id: &str) -> bool {
    hb.boot_id.is_empty() || hb.boot_id == boot_id
}

/// The kernel's id of this boot (empty if unreadable).
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
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

/// `ack.json` as written: the answer and a checksum of it. The fence
/// rewrites the file in place (see [`AckWriter`]), so a reader may catch a
/// write half done: the checksum tells. Fences of earlier releases wrote
/// no checksum, by rename, which a reader never sees half done.
#[derive(Debug, Serialize, Deserialize)]
struct AckFile {
    #[serde(flatten)]
    ack: Ack,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sum: Option<u64>,
}

/// The fixed length of `ack.json`: every rewrite covers the whole file.
const ACK_LEN: usize = 192;

/// FNV-1a, 64 bits: enough to tell a torn write from a whole one.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The file's bytes for `ack`: JSON with its checksum, padded with spaces
/// to [`ACK_LEN`].
fn ack_bytes(ack: &Ack) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(ack).map_err(io::Error::other)?;
    let file = AckFile {
        ack: ack.clone(),
        sum: Some(fnv1a(&body)),
    };
    let mut out = serde_json::to_vec(&file).map_err(io::Error::other)?;
    if out.len() >= ACK_LEN {
        return Err(io::Error::other("acknowledgement longer than its file"));
    }
    out.resize(ACK_LEN - 1, b' ');
    out.push(b'\n');
    Ok(out)
}

/// What `ack.json` says; `None` when it is missing, unreadable, or caught
/// half rewritten (its checksum does not match).
pub fn read_ack(dir: &Path) -> Option<Ack> {
    let text = fs::read(dir.join(ACK)).ok()?;
    let file: AckFile = serde_json::from_slice(&text).ok()?;
    match file.sum {
        Some(sum) if sum != fnv1a(&serde_json::to_vec(&file.ack).ok()?) => None,
        _ => Some(file.ack),
    }
}

/// The fence's side of `ack.json`, rewritten at every poll. A new file and
/// a rename each time (which a reader never sees half done) cost four
/// system calls, the rename the dearest: most of an idle primary's fence
/// CPU. Here one positioned write of the whole fixed-length file, on a
/// descriptor kept open; the checksum makes a torn read count as no
/// acknowledgement, which only makes the daemon more careful for a cycle
/// (it stops PostgreSQL itself at the fencing point). No fsync: both
/// processes share the page cache, and after a crash an ack means nothing.
pub struct AckWriter {
    path: PathBuf,
    file: Option<(fs::File, u64)>,
}

impl AckWriter {
    pub fn new(dir: &Path) -> AckWriter {
        AckWriter {
            path: dir.join(ACK),
            file: None,
        }
    }

    pub fn write(&mut self, ack: &Ack) -> io::Result<()> {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let bytes = ack_bytes(ack)?;
        // Reopen when the file was removed or replaced (its inode changed):
        // writing to an unlinked file would answer no one.
        let current = fs::metadata(&self.path).ok().map(|m| m.ino());
        if self.file.as_ref().map(|(_, ino)| Some(*ino)) != Some(current) {
            let f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?;
            f.set_len(ACK_LEN as u64)?;
            let ino = f.metadata()?.ino();
            self.file = Some((f, ino));
        }
        let Some((f, _)) = &self.file else {
            return Err(io::Error::other("no acknowledgement file"));
        };
        f.write_all_at(&bytes, 0)
    }
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

/// The fence's record of its firings in this directory: kept across fence
/// processes (each reads it before adding one), so that a daemon back
/// from a freeze, or a new one, shows that PostgreSQL was stopped under it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Fired {
    /// How many times a fence stopped (or killed) a postmaster here.
    pub count: u64,
    /// Wall clock of the last one, seconds since the Unix epoch.
    pub last_unix: f64,
}

/// What `fired.json` says; `None` when the fence never fired here (or the
/// file is unreadable).
pub fn read_fired(dir: &Path) -> Option<Fired> {
    serde_json::from_slice(&fs::read(dir.join(FIRED)).ok()?).ok()
}

/// One firing more in `fired.json` (atomically replaced: a reader sees the
/// old record or the new one).
fn record_fired(dir: &Path) -> io::Result<()> {
    let before = read_fired(dir).unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let fired = Fired {
        count: before.count + 1,
        last_unix: now.as_secs_f64(),
    };
    let body = serde_json::to_vec(&fired).map_err(io::Error::other)?;
    crate::atomic_file::write_replace(&dir.join(FIRED), &body)
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
    // No fsync: an order means nothing after a crash of the machine (it
    // carries the boot id), and both processes share the page cache.
    crate::atomic_file::write_replace(&dir.join(HEARTBEAT), &body)
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

/// The daemon's handle on its fence: adopts a running one, launches one
/// when needed, writes the orders.
#[derive(Debug)]
pub struct FenceClient {
    dir: PathBuf,
    data_dir: PathBuf,
    exe: PathBuf,
    orphan_after: Duration,
    /// This daemon, as written into every heartbeat.
    me: DaemonId,
    boot_id: String,
    /// The launcher of the last fence started (it exits at once; reaped
    /// here), and when it was started.
    launcher: Option<Child>,
    launched_at: Option<Instant>,
    pid: Option<i32>,
    last: Heartbeat,
    /// The fencing point of the last `Arm` order, as an `Instant`.
    armed_at: Option<Instant>,
}

impl FenceClient {
    /// Adopts a live fence of a previous daemon, if any; the last order it
    /// holds stays in force until this daemon writes a new one, but only
    /// for the postmaster that order names: the heartbeat is rewritten at
    /// once with this daemon as its writer, before this daemon can start a
    /// PostgreSQL of its own, so an older daemon's order never reaches one
    /// ([`may_stop`]).
    pub fn new(data_dir: &Path, orphan_after: Duration) -> FenceClient {
        let dir = state_dir(data_dir);
        let pid = live_fence_pid(&dir);
        if let Some(pid) = pid {
            tracing::info!(event = crate::events::FENCE_ADOPTED, pid, dir = %dir.display(), "a fence from a previous daemon runs; adopting it");
        }
        let boot_id = boot_id();
        let last = read_heartbeat(&dir)
            .filter(|hb| same_boot(hb, &boot_id))
            .unwrap_or_default();
        let mut client = FenceClient {
            last,
            dir,
            data_dir: data_dir.to_owned(),
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("pgpilot")),
            orphan_after,
            me: DaemonId {
                pid: std::process::id(),
                started_ms: boottime_ms(),
            },
            boot_id,
            launcher: None,
            launched_at: None,
            pid,
            armed_at: None,
        };
        let mut claim = client.last.clone();
        claim.exit = false;
        client.write(claim);
        client
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

    /// Whether a fence may run for this directory. Only two can: one a
    /// previous daemon left (found by [`FenceClient::new`]) and one this
    /// daemon launched; with neither, no file is looked at (an idle
    /// replica's cycle then opens nothing: issue 12 §5).
    fn may_be_running(&self) -> bool {
        (self.pid.is_some() || self.launched_at.is_some()) && live_fence_pid(&self.dir).is_some()
    }

    /// Carry out one cycle's order. Errors are logged: a missing fence
    /// weakens protection but must not stop the HA loop.
    /// `paused`: pause mode is on, and the fence does nothing whatever the
    /// deadline (docs/ha.md §11).
    pub fn apply(&mut self, order: FenceOrder, margin: Duration, paused: bool) {
        let mut hb = self.last.clone();
        match order {
            FenceOrder::Arm(deadline) => {
                let at = deadline.checked_sub(margin).unwrap_or(deadline);
                let pm = read_postmaster_pid(&self.data_dir);
                hb.armed = true;
                hb.deadline_ms = instant_to_boottime_ms(at);
                hb.armed_by = self.me;
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
            tracing::info!(event = crate::events::FENCE, paused);
        }
        hb.paused = paused;
        hb.exit = false;
        if hb.armed != self.last.armed {
            tracing::info!(event = crate::events::FENCE, armed = hb.armed);
        }
        // Nothing to tell anyone: disarmed before and now, the same pause
        // flag, and no fence runs to read the heartbeat (one that runs
        // needs it as the daemon's sign of life). A replica then writes no
        // file and no fsync each cycle (issue 12 §5, idle CPU). An order
        // that arms, or a fence found running, writes as before.
        let quiet = !hb.armed
            && !self.last.armed
            && !self.last.exit
            && hb.paused == self.last.paused
            && self.last.written_ms != 0;
        if quiet && !self.may_be_running() {
            return;
        }
        self.write(hb);
        if self.last.armed {
            self.ensure_running();
        }
    }

    /// A lease keep-alive moved the deadline: re-arm with it, but only a
    /// fence this daemon's HA cycle armed last (for a PostgreSQL it saw
    /// answering as primary); a disarmed or paused fence, or one holding a
    /// previous daemon's order, stays as it is. Never moves the fencing
    /// point back.
    pub fn extend(&mut self, deadline: Instant, margin: Duration) {
        if !self.last.armed || self.last.paused || self.last.armed_by != self.me {
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

    /// Clean shutdown (PostgreSQL already stopped, or left running in
    /// pause mode, where the fence does nothing anyway): the fence exits.
    /// Returns the fence to wait for ([`Exiting::wait`]).
    pub fn shutdown(&mut self) -> Option<Exiting> {
        let hb = Heartbeat {
            exit: true,
            ..Heartbeat::default()
        };
        self.write(hb);
        self.reap_launcher();
        let pid = live_fence_pid(&self.dir).or(self.pid)?;
        Some(Exiting {
            dir: self.dir.clone(),
            pid,
        })
    }

    fn write(&mut self, mut hb: Heartbeat) {
        hb.written_ms = boottime_ms();
        hb.daemon_pid = self.me.pid;
        hb.daemon = self.me;
        hb.boot_id.clone_from(&self.boot_id);
        if let Err(e) = fs::create_dir_all(&self.dir).and_then(|()| write_heartbeat(&self.dir, &hb))
        {
            tracing::warn!(event = crate::events::FENCE_WRITE_FAILED, dir = %self.dir.display(), error = %e);
        }
        self.last = hb;
    }

    /// Reaps an exited launcher (it exits as soon as the fence is
    /// started), logging a failed one.
    fn reap_launcher(&mut self) {
        if let Some(child) = &mut self.launcher
            && let Ok(Some(status)) = child.try_wait()
        {
            if !status.success() {
                tracing::warn!(event = crate::events::FENCE_LAUNCH_FAILED, status = %status, log = %self.dir.join(LOG).display());
            }
            self.launcher = None;
        }
    }

    /// Start a fence unless one runs or was launched less than
    /// [`LAUNCH_GRACE`] ago. It runs detached from this daemon (see the
    /// module documentation), so the only handle on it is `fence.pid`.
    fn ensure_running(&mut self) {
        self.reap_launcher();
        if self.pid.is_some_and(|pid| is_fence_process(pid, &self.dir)) {
            return;
        }
        self.pid = live_fence_pid(&self.dir);
        if self.pid.is_some()
            || self
                .launched_at
                .is_some_and(|at| at.elapsed() < LAUNCH_GRACE)
        {
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
            .arg("--detach")
            .args(fence_args(&self.dir, &self.data_dir, self.orphan_after))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        match cmd.spawn() {
            Ok(child) => {
                tracing::info!(event = crate::events::FENCE_STARTED, launcher = child.id(), dir = %self.dir.display());
                self.launcher = Some(child);
                self.launched_at = Some(Instant::now());
            }
            Err(e) => tracing::error!(event = crate::events::FENCE_SPAWN_FAILED, error = %e),
        }
    }
}

/// The arguments of `pgpilot fence` after the subcommand.
fn fence_args(dir: &Path, data_dir: &Path, orphan_after: Duration) -> Vec<std::ffi::OsString> {
    vec![
        "--state-dir".into(),
        dir.into(),
        "--data-dir".into(),
        data_dir.into(),
        "--orphan-after".into(),
        orphan_after.as_secs().to_string().into(),
    ]
}

/// A fence told to exit on a clean shutdown.
#[derive(Debug)]
pub struct Exiting {
    dir: PathBuf,
    pid: i32,
}

impl Exiting {
    /// Waits up to `within` for the fence to exit, then kills it if it is
    /// still this directory's fence (e.g. stopped by a signal): after a
    /// clean shutdown nothing is left running. PostgreSQL is stopped
    /// already (or deliberately left running in pause mode, where the
    /// fence does nothing), so the fence has nothing left to guard.
    pub async fn wait(self, within: Duration) {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if !is_fence_process(self.pid, &self.dir) {
                tracing::info!(event = crate::events::FENCE_EXITED, pid = self.pid);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if is_fence_process(self.pid, &self.dir) {
            tracing::warn!(
                event = crate::events::FENCE_KILLED,
                pid = self.pid,
                "the fence did not exit in time"
            );
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }
}

/// `pgpilot fence --detach`: start the fence proper and return at once, so
/// that it is re-parented away from the daemon's tree when this launcher
/// exits. Its output goes where this process's goes (the fence log).
pub fn launch(dir: &Path, data_dir: &Path, orphan_after: Duration) -> io::Result<u32> {
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg("fence")
        .args(fence_args(dir, data_dir, orphan_after))
        .stdin(Stdio::null())
        .spawn()?;
    Ok(child.id())
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
    // Its own session and process group: no signal to the daemon's group
    // or session reaches it. Fails only for a group leader (started by
    // hand from an interactive shell), which is fine as it is.
    if let Err(e) = nix::unistd::setsid() {
        log(&format!("setsid: {e} (keeping the current session)"));
    }
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
    let boot = boot_id();
    log(&format!(
        "started for {} (orphan after {}s)",
        data_dir.display(),
        orphan_after.as_secs()
    ));
    let mut fenced_deadline: Option<u64> = None;
    let mut was_armed = None;
    let mut acked: Option<Ack> = None;
    let mut ack_file = AckWriter::new(dir);
    let mut wake = POLL;
    loop {
        std::thread::sleep(wake);
        // An order from another boot means nothing here.
        let hb = read_heartbeat(dir).filter(|hb| same_boot(hb, &boot));
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
                match ack_file.write(&ack) {
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
                if fence(data_dir, hb, now)
                    && let Err(e) = record_fired(dir)
                {
                    log(&format!("cannot write {FIRED}: {e}"));
                }
            }
        }
        wake = next_wake(hb.as_ref(), fenced_deadline, boottime_ms());
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

/// How long the fence sleeps before it next reads the heartbeat: one
/// [`POLL`], or less when the order it holds falls due sooner, so that it
/// acts at the deadline itself rather than up to a poll later. An order
/// already carried out, paused or disarmed waits a whole poll.
fn next_wake(hb: Option<&Heartbeat>, fenced_deadline: Option<u64>, now_ms: u64) -> Duration {
    match hb {
        Some(hb) if hb.armed && !hb.paused && fenced_deadline != Some(hb.deadline_ms) => {
            let until = Duration::from_millis(hb.deadline_ms.saturating_sub(now_ms));
            // At least a millisecond: never a busy loop.
            until.clamp(Duration::from_millis(1), POLL)
        }
        _ => POLL,
    }
}

/// Stop the postmaster of `data_dir` at once, if the order may reach it
/// ([`may_stop`]): SIGQUIT (immediate shutdown), then SIGKILL of its
/// process group after [`KILL_GRACE`]. Returns whether it went for a
/// postmaster (whatever the signals achieved).
fn fence(data_dir: &Path, hb: &Heartbeat, now: u64) -> bool {
    let late = now.saturating_sub(hb.deadline_ms);
    let Some((pm, pidfile)) = Postmaster::adopt(data_dir).zip(read_postmaster_pid(data_dir)) else {
        log(&format!(
            "deadline passed {late} ms ago with no heartbeat since; PostgreSQL is not running"
        ));
        return false;
    };
    let target = may_stop(
        hb,
        PostmasterId {
            pid: pidfile.pid,
            start: pidfile.start_epoch,
        },
    );
    let why = match target {
        Target::Named => String::new(),
        Target::StartedByArmer => format!(
            ", started after the last order by daemon {}, whose lease this is",
            hb.armed_by.pid
        ),
        Target::NewerDaemon(pid) => {
            log(&format!(
                "deadline passed {late} ms ago, but postmaster {} is not the one the order of daemon {} names \
                 (postmaster {}) and daemon {pid}, newer, runs it: leaving it alone",
                pidfile.pid, hb.armed_by.pid, hb.postmaster_pid
            ));
            return false;
        }
    };
    log(&format!(
        "deadline passed {late} ms ago with no heartbeat since: stopping PostgreSQL (postmaster {}{why}) with an immediate shutdown",
        pm.pid(),
    ));
    let mut pm = pm;
    if let Err(e) = pm.signal(Signal::SIGQUIT) {
        log(&format!("SIGQUIT failed: {e}"));
    }
    let until = Instant::now() + KILL_GRACE;
    while Instant::now() < until {
        if !pm.is_alive() {
            log("PostgreSQL stopped");
            return true;
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
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_armed_fence_wakes_at_its_deadline() {
        let hb = Heartbeat {
            armed: true,
            deadline_ms: 10_000,
            ..Heartbeat::default()
        };
        // Far from the deadline: a whole poll.
        assert_eq!(next_wake(Some(&hb), None, 1_000), POLL);
        // Within a poll of it: exactly until it.
        assert_eq!(
            next_wake(Some(&hb), None, 9_800),
            Duration::from_millis(200)
        );
        // Due or past and not yet carried out: at once (1 ms, no busy loop).
        assert_eq!(next_wake(Some(&hb), None, 10_000), Duration::from_millis(1));
        // Carried out, paused, disarmed or no order: a whole poll.
        assert_eq!(next_wake(Some(&hb), Some(10_000), 10_050), POLL);
        let paused = Heartbeat {
            paused: true,
            ..hb.clone()
        };
        assert_eq!(next_wake(Some(&paused), None, 9_900), POLL);
        let disarmed = Heartbeat {
            armed: false,
            ..hb.clone()
        };
        assert_eq!(next_wake(Some(&disarmed), None, 9_900), POLL);
        assert_eq!(next_wake(None, None, 9_900), POLL);
    }

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
        let fresh = ACK_FRESH.as_millis() as u64;
        assert_eq!(ack_confirms(&ack, &hb, 5_900), Some(0));
        assert_eq!(ack_confirms(&ack, &hb, 5_000 + fresh), Some(0));
        // Silent for more than ACK_FRESH: maybe dead or stopped.
        assert_eq!(ack_confirms(&ack, &hb, 5_001 + fresh), None);
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
        let mut w = AckWriter::new(&dir);
        w.write(&ack).unwrap();
        assert_eq!(read_ack(&dir), Some(ack.clone()));
        let later = Ack {
            polled_ms: 123_456_789,
            ..ack.clone()
        };
        w.write(&later).unwrap();
        assert_eq!(read_ack(&dir), Some(later.clone()));
        assert_eq!(fs::metadata(dir.join(ACK)).unwrap().len(), ACK_LEN as u64);
        // A torn rewrite (new digits over old ones) does not count.
        let mut torn = ack_bytes(&later).unwrap();
        let old = ack_bytes(&ack).unwrap();
        let cut = String::from_utf8_lossy(&torn).find("polled_ms").unwrap() + 13;
        torn[cut..].copy_from_slice(&old[cut..]);
        fs::write(dir.join(ACK), &torn).unwrap();
        assert_eq!(read_ack(&dir), None);
        // An earlier release's file (no checksum) still reads.
        fs::write(dir.join(ACK), serde_json::to_vec(&ack).unwrap()).unwrap();
        assert_eq!(read_ack(&dir), Some(ack.clone()));
        // Replaced behind the writer's back: it writes the new file.
        fs::remove_file(dir.join(ACK)).unwrap();
        w.write(&later).unwrap();
        assert_eq!(read_ack(&dir), Some(later));
        assert_eq!(live_fence_pid(&dir), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn old_order() -> Heartbeat {
        let a = DaemonId {
            pid: 4242,
            started_ms: 17,
        };
        Heartbeat {
            armed: true,
            deadline_ms: 10_000,
            postmaster_pid: 100,
            postmaster_start: 1_700_000_000,
            daemon_pid: a.pid,
            daemon: a,
            armed_by: a,
            boot_id: boot_id(),
            ..Heartbeat::default()
        }
    }

    #[test]
    fn the_fence_stops_the_named_postmaster_whoever_writes_now() {
        let hb = old_order();
        let named = PostmasterId {
            pid: 100,
            start: 1_700_000_000,
        };
        assert_eq!(may_stop(&hb, named), Target::Named);
        // A newer daemon adopted that postmaster and keeps the order
        // (it has not renewed the lease yet): still stopped.
        let kept = Heartbeat {
            daemon: DaemonId {
                pid: 5000,
                started_ms: 90,
            },
            ..hb
        };
        assert_eq!(may_stop(&kept, named), Target::Named);
    }

    #[test]
    fn another_postmaster_is_stopped_only_while_the_arming_daemon_writes_last() {
        let hb = old_order();
        // Same pid, another start: a restart, not the named postmaster.
        let restarted = PostmasterId {
            pid: 100,
            start: 1_700_000_050,
        };
        let other = PostmasterId {
            pid: 333,
            start: 1_700_000_060,
        };
        // The arming daemon restarted PostgreSQL and froze or died before
        // its next order: its lease is the one ending.
        assert_eq!(may_stop(&hb, restarted), Target::StartedByArmer);
        assert_eq!(may_stop(&hb, other), Target::StartedByArmer);
        assert!(Target::StartedByArmer.may_stop());
        // A newer daemon wrote since: whatever else runs is its own.
        let newer = Heartbeat {
            daemon: DaemonId {
                pid: 5000,
                started_ms: 90,
            },
            ..hb.clone()
        };
        assert_eq!(may_stop(&newer, other), Target::NewerDaemon(5000));
        assert!(!may_stop(&newer, restarted).may_stop());
        // The same pid in a new process is a newer daemon too.
        let reused = Heartbeat {
            daemon: DaemonId {
                pid: 4242,
                started_ms: 99,
            },
            ..hb
        };
        assert_eq!(may_stop(&reused, other), Target::NewerDaemon(4242));
    }

    #[test]
    fn an_order_from_another_boot_counts_for_nothing() {
        let hb = old_order();
        assert!(same_boot(&hb, &hb.boot_id.clone()));
        assert!(!same_boot(&hb, "another-boot"));
        // Written by a release without boot_id: taken as it is.
        let old = Heartbeat {
            boot_id: String::new(),
            ..hb
        };
        assert!(same_boot(&old, "another-boot"));
    }

    #[test]
    fn a_heartbeat_of_an_older_release_still_reads() {
        let text = br#"{"armed":true,"deadline_ms":5,"postmaster_pid":7,"postmaster_start":9,
            "paused":false,"written_ms":3,"daemon_pid":11,"exit":false}"#;
        let hb: Heartbeat = serde_json::from_slice(text).unwrap();
        assert!(hb.armed);
        assert_eq!(hb.daemon_pid, 11);
        // No writer or armer recorded: both default, so the older
        // daemon counts as the one that armed it.
        assert_eq!(hb.daemon, hb.armed_by);
    }

    #[test]
    fn a_new_daemon_claims_the_heartbeat_and_leaves_an_older_order_alone() {
        let root = std::env::temp_dir().join(format!("pgpilot-fence-claim-{}", std::process::id()));
        let data_dir = root.join("data");
        let dir = state_dir(&data_dir);
        fs::create_dir_all(&dir).unwrap();
        write_heartbeat(&dir, &old_order()).unwrap();
        let mut client = FenceClient::new(&data_dir, Duration::from_secs(60));
        // Arming launches a fence: not from this test binary.
        client.exe = PathBuf::from("/bin/true");
        let hb = read_heartbeat(&dir).unwrap();
        let me = std::process::id();
        // The claim is written at once: same order, this daemon as writer.
        assert_eq!(hb.daemon.pid, me);
        assert_eq!(hb.daemon_pid, me);
        assert_eq!(hb.armed_by, old_order().armed_by);
        assert!(hb.armed && hb.deadline_ms == 10_000 && !hb.exit);
        // A keep-alive of this daemon does not move the older order.
        client.extend(
            Instant::now() + Duration::from_secs(30),
            Duration::from_secs(1),
        );
        assert_eq!(read_heartbeat(&dir).unwrap().deadline_ms, 10_000);
        // Its own order does, and names it as the armer.
        client.apply(
            FenceOrder::Arm(Instant::now() + Duration::from_secs(30)),
            Duration::from_secs(1),
            false,
        );
        let hb = read_heartbeat(&dir).unwrap();
        assert_eq!(hb.armed_by, hb.daemon);
        assert!(hb.deadline_ms > 10_000);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_disarmed_node_without_a_fence_does_not_rewrite_the_heartbeat() {
        let root = std::env::temp_dir().join(format!("pgpilot-fence-quiet-{}", std::process::id()));
        let data_dir = root.join("data");
        let dir = state_dir(&data_dir);
        let mut client = FenceClient::new(&data_dir, Duration::from_secs(60));
        client.exe = PathBuf::from("/bin/true");
        client.apply(FenceOrder::Disarm, Duration::from_secs(1), false);
        let first = read_heartbeat(&dir).unwrap();
        assert!(!first.armed && first.written_ms != 0);
        std::thread::sleep(Duration::from_millis(5)); // boottime ms must be able to move
        for _ in 0..3 {
            client.apply(FenceOrder::Disarm, Duration::from_secs(1), false);
            client.apply(FenceOrder::Keep, Duration::from_secs(1), false);
        }
        assert_eq!(read_heartbeat(&dir).unwrap(), first, "nothing rewritten");
        // A change of the pause flag is written, and so is an order that arms.
        client.apply(FenceOrder::Keep, Duration::from_secs(1), true);
        assert!(read_heartbeat(&dir).unwrap().paused);
        client.apply(
            FenceOrder::Arm(Instant::now() + Duration::from_secs(30)),
            Duration::from_secs(1),
            true,
        );
        assert!(read_heartbeat(&dir).unwrap().armed);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn firings_add_up_across_fence_processes() {
        let dir = std::env::temp_dir().join(format!("pgpilot-fence-fired-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(read_fired(&dir), None, "never fired");
        record_fired(&dir).unwrap();
        let first = read_fired(&dir).unwrap();
        assert_eq!(first.count, 1);
        assert!(first.last_unix > 1.7e9, "{first:?}");
        // A later fence (another process) reads the record and adds to it.
        record_fired(&dir).unwrap();
        let second = read_fired(&dir).unwrap();
        assert_eq!(second.count, 2);
        assert!(second.last_unix >= first.last_unix);
        fs::remove_dir_all(&dir).unwrap();
    }
}
