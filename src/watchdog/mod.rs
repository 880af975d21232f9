//! The hardware (or kernel) watchdog of a primary (docs/ha.md §12).
//!
//! A primary arms the watchdog before it starts accepting writes as the
//! leader and keeps it alive after every lease renewal. If the daemon hangs
//! or loses the lease without managing to stop PostgreSQL, the kernel resets
//! the machine `ttl - safety_margin` seconds after the last keepalive,
//! before another node can take the lease. Disarming (the "magic close":
//! write `V`, then close) happens only at the safe point of a demotion or a
//! shutdown, once PostgreSQL no longer accepts writes, or when pause mode
//! starts.
//!
//! [`WatchdogDevice`] is the driver ([`LinuxWatchdog`] for `/dev/watchdog`,
//! a recording double in the tests); [`Watchdog`] owns one and applies the
//! modes: `off` never touches it, `automatic` uses it when it works and
//! warns once when it does not, `required` makes a node that cannot arm it
//! ineligible to lead ([`WatchdogState::Failed`], `watchdog_failed` in
//! `GET /patroni`). Whether this node may lead is decided by `ha::decide`
//! from [`Watchdog::state`]; this module only does the device I/O.

mod error;
mod ioctl;
mod linux;

use tracing::{error, info, warn};

use crate::config::{Config, Timing, Watchdog as WatchdogSection, WatchdogMode};
pub use crate::ha::WatchdogState;
pub use error::{Request, WatchdogError};
pub use linux::LinuxWatchdog;

/// A watchdog driver. Opening arms it; only [`WatchdogDevice::close`]
/// disarms it, so a daemon that dies with it open gets its machine reset.
pub trait WatchdogDevice: Send {
    /// What the logs call it (`/dev/watchdog (softdog)`).
    fn describe(&self) -> String;
    /// A cheap check that opening may work (Patroni's `is_healthy`: the
    /// device exists and is writable), without arming anything.
    fn probe(&self) -> Result<(), WatchdogError>;
    /// Open and arm. Fails (leaving nothing open) when the path is not a
    /// watchdog.
    fn open(&mut self) -> Result<(), WatchdogError>;
    fn is_open(&self) -> bool;
    /// The driver accepts a new timeout (`WDIOF_SETTIMEOUT`).
    fn can_set_timeout(&self) -> bool;
    fn set_timeout(&mut self, secs: u64) -> Result<(), WatchdogError>;
    fn get_timeout(&mut self) -> Result<u64, WatchdogError>;
    fn keepalive(&mut self) -> Result<(), WatchdogError>;
    /// Disarm (magic close) and close.
    fn close(&mut self) -> Result<(), WatchdogError>;
}

/// The watchdog of this node: its settings, its device and what happened to
/// it. Lives in the `LeaderElector` behind a mutex; every method is quick
/// (a stat or an ioctl).
pub struct Watchdog {
    mode: WatchdogMode,
    section: WatchdogSection,
    device: Box<dyn WatchdogDevice>,
    /// The timeout last asked for (`ttl - safety_margin`), to follow a
    /// changed ttl while armed. The device may round it.
    timeout: Option<u64>,
    /// Why activation failed. Sticky until the configuration is reloaded:
    /// a device that opens but cannot be armed safely would otherwise be
    /// retried, and the lock held, every cycle.
    failed: Option<WatchdogError>,
}

impl Watchdog {
    /// The watchdog `cfg` asks for, on the Linux device it names.
    pub fn from_config(cfg: &Config) -> Watchdog {
        let section = cfg.watchdog.clone().unwrap_or_default();
        let device = LinuxWatchdog::new(section.device());
        Watchdog::new(cfg.watchdog_mode(), section, Box::new(device))
    }

    pub fn new(
        mode: WatchdogMode,
        section: WatchdogSection,
        device: Box<dyn WatchdogDevice>,
    ) -> Watchdog {
        Watchdog {
            mode,
            section,
            device,
            timeout: None,
            failed: None,
        }
    }

    pub fn mode(&self) -> WatchdogMode {
        self.mode
    }

    /// What `decide` needs to know (`LocalView::watchdog`). `required` and
    /// not armed: the timing and the device are checked now, so a device
    /// that appears later (module loaded) makes the node eligible again.
    pub fn state(&self, timing: &Timing) -> WatchdogState {
        if self.device.is_open() {
            return WatchdogState::Active;
        }
        match self.mode {
            WatchdogMode::Off => WatchdogState::Off,
            WatchdogMode::Automatic if self.failed.is_some() => WatchdogState::Off,
            WatchdogMode::Automatic => WatchdogState::Ready,
            WatchdogMode::Required => match &self.failed {
                Some(why) => WatchdogState::Failed(why.to_string()),
                None => match self
                    .section
                    .timeout(timing)
                    .map_err(WatchdogError::from)
                    .and_then(|_| self.device.probe())
                {
                    Ok(()) => WatchdogState::Ready,
                    Err(why) => WatchdogState::Failed(why.to_string()),
                },
            },
        }
    }

    /// `watchdog_failed` of `GET /patroni`: required but unusable.
    pub fn is_failed(&self, timing: &Timing) -> bool {
        matches!(self.state(timing), WatchdogState::Failed(_))
    }

    /// Arm the watchdog before leading. `Err` only in `required` mode: the
    /// node must then not take or keep the leadership. In `automatic` mode a
    /// failure is logged once and the node leads without a watchdog.
    pub fn activate(&mut self, timing: &Timing) -> Result<(), WatchdogError> {
        if self.mode == WatchdogMode::Off || self.device.is_open() {
            return Ok(());
        }
        match (&self.failed, self.mode) {
            (Some(_), WatchdogMode::Automatic) => return Ok(()),
            (Some(why), _) => return Err(why.clone()),
            (None, _) => {}
        }
        match self.try_activate(timing) {
            Ok(actual) => {
                self.failed = None;
                info!(event = crate::events::WATCHDOG_ACTIVATED, device = %self.device.describe(), timeout = actual,
                      "watchdog armed: kept alive with every lease renewal");
                Ok(())
            }
            Err(why) if self.mode == WatchdogMode::Required => {
                error!(event = crate::events::WATCHDOG_ACTIVATION_FAILED, device = %self.device.describe(), error = %why,
                       "watchdog.mode is required: this node will not lead");
                self.failed = Some(why.clone());
                Err(why)
            }
            Err(why) => {
                warn!(event = crate::events::WATCHDOG_UNAVAILABLE, device = %self.device.describe(), error = %why,
                      "watchdog.mode is automatic: continuing without a watchdog");
                self.failed = Some(why);
                Ok(())
            }
        }
    }

    fn try_activate(&mut self, timing: &Timing) -> Result<u64, WatchdogError> {
        let want = self.section.timeout(timing)?;
        self.device.open()?;
        let armed = self.set_timeout(want, timing);
        if armed.is_ok() {
            self.timeout = Some(want);
        } else {
            // Opened but not usable safely: disarm it again.
            if let Err(e) = self.device.close() {
                error!(event = crate::events::WATCHDOG_CLOSE_FAILED, device = %self.device.describe(), error = %e);
            }
        }
        armed
    }

    /// Set (when the driver can) and check the timeout of the open device.
    fn set_timeout(&mut self, want: u64, timing: &Timing) -> Result<u64, WatchdogError> {
        if self.device.can_set_timeout() {
            self.device.set_timeout(want)?;
        }
        let actual = self.device.get_timeout()?;
        if (actual as f64) < timing.loop_wait.as_secs_f64() {
            return Err(WatchdogError::ShorterThanLoopWait {
                actual,
                loop_wait: timing.loop_wait.as_secs_f64(),
            });
        }
        if actual > want {
            let why = WatchdogError::LongerThanWanted { actual, want };
            if self.mode == WatchdogMode::Required {
                return Err(why);
            }
            warn!(event = crate::events::WATCHDOG_UNSAFE_TIMEOUT, device = %self.device.describe(), "{why}");
        }
        Ok(actual)
    }

    /// Reset the countdown (after a lease renewal). Follows a changed ttl or
    /// loop_wait; a timing that no longer allows a safe timeout disarms the
    /// watchdog (and, when it is required, makes the node ineligible).
    pub fn keepalive(&mut self, timing: &Timing) {
        if !self.device.is_open() {
            return;
        }
        if let Err(e) = self.device.keepalive() {
            error!(event = crate::events::WATCHDOG_KEEPALIVE_FAILED, device = %self.device.describe(), error = %e);
        }
        let want = match self.section.timeout(timing) {
            Ok(t) => t,
            Err(why) => {
                // Not sticky: `state` checks the timing every cycle.
                warn!(event = crate::events::WATCHDOG_TIMING_UNSAFE, error = %why, "disarming the watchdog");
                self.disable();
                return;
            }
        };
        if self.timeout != Some(want) && self.device.can_set_timeout() {
            match self.set_timeout(want, timing) {
                Ok(actual) => {
                    info!(
                        event = crate::events::WATCHDOG_TIMEOUT_CHANGED,
                        timeout = actual
                    );
                    self.timeout = Some(want);
                }
                Err(why) => {
                    warn!(event = crate::events::WATCHDOG_TIMING_UNSAFE, error = %why, "disarming the watchdog");
                    self.disable();
                    self.failed = Some(why);
                }
            }
        }
    }

    /// Disarm: magic close. Only at a safe point (PostgreSQL stopped or no
    /// longer primary, or pause mode).
    pub fn disable(&mut self) {
        if !self.device.is_open() {
            return;
        }
        self.timeout = None;
        match self.device.close() {
            Ok(()) => {
                info!(event = crate::events::WATCHDOG_DISABLED, device = %self.device.describe())
            }
            Err(e) => {
                error!(event = crate::events::WATCHDOG_CLOSE_FAILED, device = %self.device.describe(), error = %e)
            }
        }
    }

    /// A reloaded configuration. Changed settings take effect at once: an
    /// armed watchdog is disarmed and armed again with the new ones (or left
    /// disarmed when the new mode is `off`), and a sticky activation failure
    /// is forgotten so the device is tried again.
    pub fn reconfigure(&mut self, cfg: &Config, timing: &Timing) {
        let section = cfg.watchdog.clone().unwrap_or_default();
        let mode = cfg.watchdog_mode();
        if mode == self.mode && section == self.section && self.failed.is_none() {
            return;
        }
        let was_armed = self.device.is_open();
        self.disable();
        if section.device() != self.section.device() {
            self.device = Box::new(LinuxWatchdog::new(section.device()));
        }
        info!(event = crate::events::WATCHDOG_RECONFIGURED, mode = ?mode, device = %section.device());
        self.mode = mode;
        self.section = section;
        self.failed = None;
        if was_armed {
            // The result shows in the next cycle's state.
            let _ = self.activate(timing);
        }
    }
}

/// What the elector does with the watchdog at the end of a cycle, from the
/// same fresh facts as the fence order: keep it alive only for a primary
/// whose lease was renewed (or failsafe-confirmed) in this cycle, disarm it
/// once PostgreSQL is down or a replica without the lock (or paused), and
/// otherwise leave it counting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogOrder {
    Keepalive,
    Disable,
    /// No fresh facts: no keepalive, so it fires unless the next cycle
    /// renews or demotes in time.
    Keep,
}

/// The facts of one cycle an end-of-cycle [`WatchdogOrder`] is made from.
#[derive(Debug, Clone, Copy, Default)]
pub struct CycleFacts {
    /// PostgreSQL was stopped by a demotion in this cycle.
    pub demoted: bool,
    pub paused: bool,
    /// The lease was renewed (or failsafe confirmed) in this cycle.
    pub renewed: bool,
    /// A lease is held at the end of the cycle.
    pub holds_lock: bool,
    /// A supervisor job (promotion, start) may be changing the role.
    pub busy: bool,
    /// This node runs (or just started) the bootstrap of the cluster: the
    /// watchdog armed before it claimed `initialize` stays alive until it
    /// takes the lock.
    pub bootstrapping: bool,
}

/// See [`WatchdogOrder`].
pub fn order(pg: &crate::ha::PgFacts, f: CycleFacts) -> WatchdogOrder {
    let CycleFacts {
        demoted,
        paused,
        renewed,
        holds_lock,
        busy,
        bootstrapping,
    } = f;
    if demoted || paused {
        return WatchdogOrder::Disable;
    }
    if bootstrapping {
        return WatchdogOrder::Keepalive;
    }
    if holds_lock || pg.is_primary() {
        return if renewed {
            WatchdogOrder::Keepalive
        } else {
            WatchdogOrder::Keep
        };
    }
    if !busy && (!pg.running || pg.role == Some(crate::ha::PgRole::Replica)) {
        return WatchdogOrder::Disable;
    }
    WatchdogOrder::Keep
}

impl Watchdog {
    /// Carry out an end-of-cycle [`WatchdogOrder`].
    pub fn apply(&mut self, order: WatchdogOrder, timing: &Timing) {
        match order {
            WatchdogOrder::Keepalive => self.keepalive(timing),
            WatchdogOrder::Disable => self.disable(),
            WatchdogOrder::Keep => {}
        }
    }
}

#[cfg(test)]
mod tests;
