//! systemd's notification protocol (`sd_notify`), without libsystemd
//! (docs/operations.md, "systemd").
//!
//! * `READY=1` once the actors and the REST API run (`Type=notify`);
//! * around a `SIGHUP` reload, `RELOADING=1` with `MONOTONIC_USEC=` (the
//!   time the reload began, on `CLOCK_MONOTONIC`), then `READY=1` once it
//!   is done, refused or not: `Type=notify-reload` (systemd 253+) sends the
//!   `SIGHUP` itself and `systemctl reload` returns at that `READY=1`;
//! * `STOPPING=1` when a `SIGTERM`/`SIGINT` starts the clean stop;
//! * with `WatchdogSec=` (systemd sets `WATCHDOG_USEC`): `WATCHDOG=1` after
//!   every finished HA cycle, so a hung loop is caught even when the process
//!   is alive, and `WATCHDOG_USEC=` set to [`watchdog_timeout`] of the
//!   timing in force, at the first cycle and whenever `ttl` or `loop_wait`
//!   change, so the watchdog follows the cluster's timing rather than a
//!   number written once in the unit.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) nothing is sent; without
//! `WATCHDOG_USEC` no watchdog message is sent.

use std::future::Future;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use crate::config::Timing;

/// The daemon runs (after start, and after a reload).
pub const READY: &str = "READY=1";
/// The clean stop began.
pub const STOPPING: &str = "STOPPING=1";
/// One finished HA cycle.
pub const WATCHDOG: &str = "WATCHDOG=1";

/// The socket systemd gave us, if any.
fn socket_from_env() -> Option<String> {
    std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Send `state` (e.g. `READY=1`) to systemd. `Ok(false)` outside systemd.
pub fn notify(state: &str) -> io::Result<bool> {
    Notifier::from_env().send(state)
}

/// Send one datagram to a notification socket: a path, or an abstract
/// socket name written `@name`.
pub fn send_to(addr: &str, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = addr.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &sa)?;
    } else {
        sock.send_to(state.as_bytes(), Path::new(addr))?;
    }
    Ok(())
}

/// Where notifications go: the `NOTIFY_SOCKET` of the environment, or a
/// given socket (tests).
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    addr: Option<String>,
}

impl Notifier {
    /// The socket systemd named in `NOTIFY_SOCKET`; none outside systemd.
    pub fn from_env() -> Notifier {
        Notifier {
            addr: socket_from_env(),
        }
    }

    /// A given socket (`path` or `@abstract`).
    pub fn to(addr: impl Into<String>) -> Notifier {
        Notifier {
            addr: Some(addr.into()),
        }
    }

    /// Send `state`; `Ok(false)` when there is no socket.
    pub fn send(&self, state: &str) -> io::Result<bool> {
        match &self.addr {
            Some(addr) => send_to(addr, state).map(|()| true),
            None => Ok(false),
        }
    }

    /// Run `reload` between `RELOADING=1` (with the time it began) and
    /// `READY=1`, the sequence `Type=notify-reload` waits for. `READY=1`
    /// follows whatever `reload` returned: a refused reload leaves the
    /// daemon running its previous configuration, ready as before. A
    /// failed notification is logged, never stops the reload.
    pub async fn around_reload<F: Future>(&self, reload: F) -> F::Output {
        let began = match monotonic_now() {
            Ok(t) => reloading(t),
            // Without the clock, systemd 253+ ignores a bare RELOADING=1
            // under notify-reload; older ones take it.
            Err(_) => "RELOADING=1".to_owned(),
        };
        self.send_logged(&began);
        let out = reload.await;
        self.send_logged(READY);
        out
    }

    /// [`Notifier::send`], a failure logged (`sd_notify_failed`), a sent
    /// state logged at debug level.
    pub fn send_logged(&self, state: &str) {
        match self.send(state) {
            Ok(true) => {
                tracing::debug!(event = crate::events::SD_NOTIFY, state = %state.replace('\n', " "))
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(event = crate::events::SD_NOTIFY_FAILED, state = %state.replace('\n', " "), error = %e)
            }
        }
    }
}

/// `RELOADING=1` with the `CLOCK_MONOTONIC` time the reload began, as
/// `Type=notify-reload` requires.
pub fn reloading(began: Duration) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={}", began.as_micros())
}

/// Now on `CLOCK_MONOTONIC`, the clock of `MONOTONIC_USEC`.
pub fn monotonic_now() -> io::Result<Duration> {
    let ts =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_err(io::Error::from)?;
    Ok(Duration::from(ts))
}

/// `WatchdogSec=` as systemd passes it (`WATCHDOG_USEC`), if it is meant for
/// this process (`WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The watchdog timeout the daemon asks systemd for: `ttl + loop_wait`
/// (40 s with Patroni's 30/10/10). Pings come once per cycle; a cycle
/// starts at most `loop_wait` after the previous one ended and its DCS
/// calls are bounded by `retry_timeout`, so the longest regular gap between
/// two pings is `loop_wait + retry_timeout`; validation keeps
/// `ttl >= loop_wait + 2 * retry_timeout`, so this timeout is at least
/// twice that gap: a slow cycle never trips it, and a loop hung for a whole
/// lease and one more cycle does.
pub fn watchdog_timeout(timing: &Timing) -> Duration {
    timing.ttl + timing.loop_wait
}

/// systemd's watchdog as the HA loop keeps it: enabled when systemd set
/// `WATCHDOG_USEC` for this process; remembers the timeout last asked for.
#[derive(Debug, Clone, Default)]
pub struct SystemdWatchdog {
    notifier: Notifier,
    enabled: bool,
    asked: Option<Duration>,
}

impl SystemdWatchdog {
    /// Enabled when systemd set `WATCHDOG_USEC` (`WatchdogSec=` in the unit).
    pub fn from_env() -> SystemdWatchdog {
        SystemdWatchdog {
            notifier: Notifier::from_env(),
            enabled: watchdog_interval().is_some(),
            asked: None,
        }
    }

    /// An enabled watchdog notifying `notifier` (tests).
    pub fn enabled(notifier: Notifier) -> SystemdWatchdog {
        SystemdWatchdog {
            notifier,
            enabled: true,
            asked: None,
        }
    }

    /// The message for a finished cycle under `timing`: `None` when the
    /// watchdog is off; `WATCHDOG=1`, preceded by `WATCHDOG_USEC=` when
    /// [`watchdog_timeout`] differs from the one last asked for.
    pub fn cycle_message(&mut self, timing: &Timing) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let want = watchdog_timeout(timing);
        if self.asked == Some(want) {
            return Some(WATCHDOG.to_owned());
        }
        self.asked = Some(want);
        Some(format!("WATCHDOG_USEC={}\n{WATCHDOG}", want.as_micros()))
    }

    /// A cycle finished: send [`SystemdWatchdog::cycle_message`]. A failed
    /// send is forgotten, so a changed timeout is asked for again.
    pub fn cycle_finished(&mut self, timing: &Timing) {
        let before = self.asked;
        if let Some(msg) = self.cycle_message(timing)
            && let Err(e) = self.notifier.send(&msg)
        {
            self.asked = before;
            tracing::debug!(event = crate::events::SD_NOTIFY_FAILED, error = %e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bound datagram socket in a fresh directory, as systemd's.
    struct Socket {
        dir: std::path::PathBuf,
        sock: UnixDatagram,
    }

    impl Socket {
        fn new(tag: &str) -> Socket {
            let dir =
                std::env::temp_dir().join(format!("pgpilot-sdn-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let sock = UnixDatagram::bind(dir.join("notify")).unwrap();
            sock.set_nonblocking(true).unwrap();
            Socket { dir, sock }
        }
        fn addr(&self) -> String {
            self.dir.join("notify").display().to_string()
        }
        /// Every datagram received so far.
        fn received(&self) -> Vec<String> {
            let mut out = Vec::new();
            let mut buf = [0u8; 256];
            while let Ok(n) = self.sock.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            out
        }
    }

    impl Drop for Socket {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn timing(ttl: u64, loop_wait: u64, retry: u64) -> Timing {
        Timing {
            ttl: Duration::from_secs(ttl),
            loop_wait: Duration::from_secs(loop_wait),
            retry_timeout: Duration::from_secs(retry),
        }
    }

    #[test]
    fn sends_to_a_path_socket() {
        let s = Socket::new("path");
        send_to(&s.addr(), "WATCHDOG=1").unwrap();
        assert_eq!(s.received(), ["WATCHDOG=1"]);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("pgpilot-sdn-test-{}", std::process::id());
        let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&sa).unwrap();
        send_to(&format!("@{name}"), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn missing_socket_is_an_error() {
        assert!(send_to("/nonexistent/pgpilot/notify", "READY=1").is_err());
    }

    #[test]
    fn no_socket_sends_nothing() {
        assert!(!Notifier::default().send(READY).unwrap());
    }

    #[test]
    fn reloading_carries_the_monotonic_time_in_microseconds() {
        assert_eq!(
            reloading(Duration::from_millis(1_500)),
            "RELOADING=1\nMONOTONIC_USEC=1500000"
        );
    }

    #[tokio::test]
    async fn a_reload_is_wrapped_in_reloading_and_ready() {
        let s = Socket::new("reload");
        let n = Notifier::to(s.addr());
        let before = monotonic_now().unwrap();
        // The reload runs between the two messages, and its result is
        // passed through (a refused reload still ends with READY=1).
        let out = n
            .around_reload(async {
                assert_eq!(s.received().len(), 1, "RELOADING=1 before the reload runs");
                Err::<(), &str>("refused")
            })
            .await;
        let after = monotonic_now().unwrap();
        assert_eq!(out, Err("refused"));
        let got = s.received();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0], READY);
        // The first message was consumed inside the reload; check its form
        // on a second reload.
        n.around_reload(async {}).await;
        let got = s.received();
        assert_eq!(got.len(), 2, "{got:?}");
        let usec: u128 = got[0]
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .expect("RELOADING=1 then MONOTONIC_USEC")
            .parse()
            .unwrap();
        assert!(usec >= before.as_micros(), "{usec} < {before:?}");
        assert!(usec <= monotonic_now().unwrap().as_micros());
        assert!(after >= before);
        assert_eq!(got[1], READY);
    }

    #[test]
    fn watchdog_timeout_is_ttl_plus_loop_wait_and_twice_the_longest_gap() {
        assert_eq!(
            watchdog_timeout(&timing(30, 10, 10)),
            Duration::from_secs(40)
        );
        // Any timing validation accepts (ttl >= loop_wait + 2 retry_timeout)
        // gives at least twice the longest gap between two cycles.
        for (ttl, lw, rt) in [(30, 10, 10), (20, 1, 3), (6, 1, 2), (5, 1, 2)] {
            let t = timing(ttl, lw, rt);
            assert!(watchdog_timeout(&t) >= 2 * (t.loop_wait + t.retry_timeout));
        }
    }

    #[test]
    fn watchdog_asks_for_its_timeout_first_and_when_the_timing_changes() {
        let s = Socket::new("wd");
        let mut wd = SystemdWatchdog::enabled(Notifier::to(s.addr()));
        let t = timing(30, 10, 10);
        wd.cycle_finished(&t);
        wd.cycle_finished(&t);
        wd.cycle_finished(&timing(20, 5, 5));
        assert_eq!(
            s.received(),
            [
                "WATCHDOG_USEC=40000000\nWATCHDOG=1",
                "WATCHDOG=1",
                "WATCHDOG_USEC=25000000\nWATCHDOG=1"
            ]
        );
    }

    #[test]
    fn watchdog_off_without_watchdog_usec_and_a_failed_send_is_retried() {
        let mut off = SystemdWatchdog::default();
        assert_eq!(off.cycle_message(&timing(30, 10, 10)), None);
        let mut wd = SystemdWatchdog::enabled(Notifier::to("/nonexistent/pgpilot/notify"));
        wd.cycle_finished(&timing(30, 10, 10));
        assert!(
            wd.cycle_message(&timing(30, 10, 10))
                .unwrap()
                .starts_with("WATCHDOG_USEC=")
        );
    }
}
