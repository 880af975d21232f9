//! The modes against a recording double, and the Linux driver against paths
//! that are not watchdogs (this machine has no `/dev/watchdog`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::ha::{PgFacts, PgRole};

/// What the double saw, shared with the test.
#[derive(Debug, Default)]
struct Log {
    calls: Vec<String>,
}

/// A watchdog device double: `present` = probe and open work; `settable`:
/// it takes a new timeout; `fixed`: the timeout it reports otherwise.
struct Fake {
    log: Arc<Mutex<Log>>,
    present: bool,
    settable: bool,
    timeout: u64,
    open: bool,
}

impl Fake {
    fn new(present: bool) -> (Fake, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        (
            Fake {
                log: log.clone(),
                present,
                settable: true,
                timeout: 60,
                open: false,
            },
            log,
        )
    }
    fn note(&self, s: String) {
        self.log.lock().unwrap().calls.push(s);
    }
}

/// The fake's missing device: `ENODEV`.
fn no_such_device() -> WatchdogError {
    WatchdogError::NotUsable {
        path: "fake".into(),
        errno: nix::errno::Errno::ENODEV,
    }
}

impl WatchdogDevice for Fake {
    fn describe(&self) -> String {
        "fake".into()
    }
    fn probe(&self) -> Result<(), WatchdogError> {
        if self.present {
            Ok(())
        } else {
            Err(no_such_device())
        }
    }
    fn open(&mut self) -> Result<(), WatchdogError> {
        self.note("open".into());
        if !self.present {
            return Err(no_such_device());
        }
        self.open = true;
        Ok(())
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn can_set_timeout(&self) -> bool {
        self.settable
    }
    fn set_timeout(&mut self, secs: u64) -> Result<(), WatchdogError> {
        self.note(format!("set_timeout {secs}"));
        self.timeout = secs;
        Ok(())
    }
    fn get_timeout(&mut self) -> Result<u64, WatchdogError> {
        Ok(self.timeout)
    }
    fn keepalive(&mut self) -> Result<(), WatchdogError> {
        self.note("keepalive".into());
        Ok(())
    }
    fn close(&mut self) -> Result<(), WatchdogError> {
        self.note("close".into());
        self.open = false;
        Ok(())
    }
}

fn timing(ttl: u64, loop_wait: u64) -> Timing {
    Timing {
        ttl: Duration::from_secs(ttl),
        loop_wait: Duration::from_secs(loop_wait),
        retry_timeout: Duration::from_secs(10),
    }
}

fn section(margin: Option<i64>) -> WatchdogSection {
    WatchdogSection {
        safety_margin: margin,
        ..WatchdogSection::default()
    }
}

fn calls(log: &Arc<Mutex<Log>>) -> Vec<String> {
    std::mem::take(&mut log.lock().unwrap().calls)
}

#[test]
fn required_arms_with_ttl_minus_margin_keeps_alive_and_magic_closes() {
    let (dev, log) = Fake::new(true);
    let mut w = Watchdog::new(WatchdogMode::Required, section(None), Box::new(dev));
    let t = timing(30, 10);
    assert_eq!(w.state(&t), WatchdogState::Ready);
    w.activate(&t).unwrap();
    assert_eq!(w.state(&t), WatchdogState::Active);
    assert_eq!(calls(&log), ["open", "set_timeout 25"]);
    w.apply(WatchdogOrder::Keepalive, &t);
    w.apply(WatchdogOrder::Keep, &t);
    assert_eq!(calls(&log), ["keepalive"]);
    // A longer ttl from the dynamic configuration follows at the next
    // keepalive, once.
    w.keepalive(&timing(40, 10));
    assert_eq!(calls(&log), ["keepalive", "set_timeout 35"]);
    w.keepalive(&timing(40, 10));
    assert_eq!(calls(&log), ["keepalive"]);
    w.apply(WatchdogOrder::Disable, &t);
    assert_eq!(calls(&log), ["close"]);
    assert_eq!(w.state(&t), WatchdogState::Ready);
    // Disabling twice closes once.
    w.disable();
    assert!(calls(&log).is_empty());
}

#[test]
fn margin_minus_one_is_half_the_ttl() {
    let (dev, log) = Fake::new(true);
    let mut w = Watchdog::new(WatchdogMode::Automatic, section(Some(-1)), Box::new(dev));
    w.activate(&timing(30, 10)).unwrap();
    assert_eq!(calls(&log), ["open", "set_timeout 15"]);
}

#[test]
fn required_without_device_is_failed_and_refuses_activation() {
    let (dev, log) = Fake::new(false);
    let mut w = Watchdog::new(WatchdogMode::Required, section(None), Box::new(dev));
    let t = timing(30, 10);
    assert!(matches!(w.state(&t), WatchdogState::Failed(why) if why.contains("No such device")));
    assert!(w.is_failed(&t));
    assert!(w.activate(&t).is_err());
    assert!(w.is_failed(&t));
    assert_eq!(calls(&log), ["open"]);
}

#[test]
fn required_with_unsafe_timing_is_failed_without_touching_the_device() {
    let (dev, log) = Fake::new(true);
    let mut w = Watchdog::new(WatchdogMode::Required, section(Some(25)), Box::new(dev));
    let t = timing(30, 10);
    let WatchdogState::Failed(why) = w.state(&t) else {
        panic!("not failed")
    };
    assert!(why.contains("must be at least loop_wait"), "{why}");
    assert!(w.activate(&t).is_err());
    assert!(calls(&log).is_empty());
}

#[test]
fn required_device_whose_timeout_cannot_be_set_safely_is_refused_and_disarmed() {
    let (mut dev, log) = Fake::new(true);
    dev.settable = false;
    dev.timeout = 60;
    let mut w = Watchdog::new(WatchdogMode::Required, section(None), Box::new(dev));
    let t = timing(30, 10);
    let e = w.activate(&t).unwrap_err();
    assert!(
        matches!(
            e,
            WatchdogError::LongerThanWanted {
                actual: 60,
                want: 25
            }
        ),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("longer than ttl - safety_margin (25 s)"), "{e}");
    assert_eq!(calls(&log), ["open", "close"]);
    // Sticky: not retried every cycle while the lock is held.
    assert!(matches!(w.state(&t), WatchdogState::Failed(_)));
    assert!(w.activate(&t).is_err());
    assert!(calls(&log).is_empty());
    // A reload forgets it.
    let cfg = config_with("watchdog:\n  mode: required\n  device: /nonexistent/watchdog\n");
    w.reconfigure(&cfg, &t);
    assert!(
        matches!(w.state(&t), WatchdogState::Failed(why) if why.contains("/nonexistent/watchdog"))
    );
}

fn config_with(extra: &str) -> Config {
    use crate::config::load::tests::{POSTGRES0, TempDir, env};
    let d = TempDir::new("wd");
    let p = d.write("c.yml", &format!("{POSTGRES0}{extra}"));
    crate::config::load(Some(&p), &env(&[])).unwrap().config
}

#[test]
fn automatic_without_device_warns_once_and_leads_without() {
    let (dev, log) = Fake::new(false);
    let mut w = Watchdog::new(WatchdogMode::Automatic, section(None), Box::new(dev));
    let t = timing(30, 10);
    assert_eq!(w.state(&t), WatchdogState::Ready);
    w.activate(&t).unwrap();
    assert_eq!(w.state(&t), WatchdogState::Off);
    assert!(!w.is_failed(&t));
    w.activate(&t).unwrap();
    assert_eq!(calls(&log), ["open"], "tried once");
}

#[test]
fn automatic_keeps_an_unsafe_device_with_a_warning() {
    let (mut dev, _log) = Fake::new(true);
    dev.settable = false;
    let mut w = Watchdog::new(WatchdogMode::Automatic, section(None), Box::new(dev));
    w.activate(&timing(30, 10)).unwrap();
    assert_eq!(w.state(&timing(30, 10)), WatchdogState::Active);
}

#[test]
fn device_timeout_shorter_than_loop_wait_is_refused() {
    let (mut dev, log) = Fake::new(true);
    dev.settable = false;
    dev.timeout = 5;
    let mut w = Watchdog::new(WatchdogMode::Required, section(None), Box::new(dev));
    let e = w.activate(&timing(30, 10)).unwrap_err();
    assert!(
        matches!(e, WatchdogError::ShorterThanLoopWait { actual: 5, .. }),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("shorter than loop_wait"), "{e}");
    assert_eq!(calls(&log), ["open", "close"]);
}

#[test]
fn off_never_touches_the_device() {
    let (dev, log) = Fake::new(true);
    let mut w = Watchdog::new(WatchdogMode::Off, section(None), Box::new(dev));
    let t = timing(30, 10);
    assert_eq!(w.state(&t), WatchdogState::Off);
    w.activate(&t).unwrap();
    w.keepalive(&t);
    w.disable();
    assert!(calls(&log).is_empty());
}

#[test]
fn timing_turning_unsafe_while_armed_disarms() {
    let (dev, log) = Fake::new(true);
    let mut w = Watchdog::new(WatchdogMode::Required, section(None), Box::new(dev));
    w.activate(&timing(30, 10)).unwrap();
    calls(&log);
    // ttl 12, margin 5: 7 < loop_wait 10.
    w.keepalive(&timing(12, 10));
    assert_eq!(calls(&log), ["keepalive", "close"]);
    assert!(w.is_failed(&timing(12, 10)));
    // A safe timing again: usable again.
    assert_eq!(w.state(&timing(30, 10)), WatchdogState::Ready);
}

fn pg(role: Option<PgRole>) -> PgFacts {
    PgFacts {
        running: role.is_some(),
        role,
        ..PgFacts::default()
    }
}

#[test]
fn end_of_cycle_orders() {
    use WatchdogOrder::*;
    let primary = pg(Some(PgRole::Primary));
    let replica = pg(Some(PgRole::Replica));
    let down = pg(None);
    // (pg, demoted, paused, renewed, holds_lock, busy) -> order
    let rows: [(&PgFacts, bool, bool, bool, bool, bool, WatchdogOrder); 9] = [
        (&primary, false, false, true, true, false, Keepalive),
        // Lease not renewed this cycle: let it count down.
        (&primary, false, false, false, true, false, Keep),
        (&primary, false, false, false, false, false, Keep),
        // Demoted (PostgreSQL stopped) or paused: the safe point.
        (&primary, true, false, true, true, false, Disable),
        (&primary, false, true, true, true, false, Disable),
        // Lock held while promoting: the watchdog armed before the promotion stays alive.
        (&replica, false, false, true, true, true, Keepalive),
        (&replica, false, false, false, false, false, Disable),
        (&down, false, false, false, false, false, Disable),
        // A job may be making it a primary: no change.
        (&replica, false, false, false, false, true, Keep),
    ];
    for (i, (pg, demoted, paused, renewed, holds_lock, busy, want)) in rows.into_iter().enumerate()
    {
        let f = CycleFacts {
            demoted,
            paused,
            renewed,
            holds_lock,
            busy,
            bootstrapping: false,
        };
        assert_eq!(order(pg, f), want, "row {i}");
    }
    // Bootstrapping (PostgreSQL down, or up as primary, no lock yet): kept alive.
    let f = CycleFacts {
        bootstrapping: true,
        busy: true,
        ..CycleFacts::default()
    };
    assert_eq!(order(&down, f), Keepalive);
    assert_eq!(order(&primary, f), Keepalive);
    // A failed bootstrap (no job, nothing running): disarmed.
    assert_eq!(order(&down, CycleFacts::default()), Disable);
}

// --- the Linux driver, without a watchdog device ---

#[test]
fn linux_driver_refuses_a_regular_file_and_leaves_it_alone() {
    let dir = std::env::temp_dir().join(format!("pgpilot-wd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("not-a-watchdog");
    std::fs::write(&path, "keep me").unwrap();
    let mut dev = LinuxWatchdog::new(&path);
    // Writable, so the cheap probe passes; the ioctl tells the truth.
    dev.probe().unwrap();
    let e = dev.open().unwrap_err();
    assert!(
        matches!(&e, WatchdogError::NotAWatchdog { errno: nix::errno::Errno::ENOTTY, path: p } if *p == path),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("is not a usable watchdog device")
            && e.contains("WDIOC_GETSUPPORT")
            && e.contains("Inappropriate ioctl for device"),
        "{e}"
    );
    assert!(!dev.is_open());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");

    // Through the modes: required fails with that reason, automatic goes on.
    let section = WatchdogSection {
        device: Some(path.display().to_string()),
        ..WatchdogSection::default()
    };
    let t = timing(30, 10);
    let mut w = Watchdog::new(
        WatchdogMode::Required,
        section.clone(),
        Box::new(LinuxWatchdog::new(&path)),
    );
    let e = w.activate(&t).unwrap_err().to_string();
    assert!(e.contains("Inappropriate ioctl for device"), "{e}");
    assert!(
        matches!(w.state(&t), WatchdogState::Failed(why) if why.contains("not a usable watchdog"))
    );
    let mut w = Watchdog::new(
        WatchdogMode::Automatic,
        section,
        Box::new(LinuxWatchdog::new(&path)),
    );
    w.activate(&t).unwrap();
    assert_eq!(w.state(&t), WatchdogState::Off);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn linux_driver_missing_device() {
    let mut dev = LinuxWatchdog::new("/nonexistent/watchdog");
    let e = dev.probe().unwrap_err().to_string();
    assert!(e.contains("/nonexistent/watchdog is not usable"), "{e}");
    let e = dev.open().unwrap_err().to_string();
    assert!(
        e.contains("cannot open watchdog device /nonexistent/watchdog"),
        "{e}"
    );
    assert!(dev.keepalive().is_err());
    dev.close().unwrap();
}

#[test]
fn linux_driver_character_device_that_is_not_a_watchdog() {
    let mut dev = LinuxWatchdog::new("/dev/null");
    let e = dev.open().unwrap_err().to_string();
    assert!(e.contains("Inappropriate ioctl for device"), "{e}");
    assert!(!dev.is_open());
}
