//! Why the watchdog could not be probed, armed, kept alive or disarmed. The
//! messages name the device and the request; they reach the log and, for a
//! `required` watchdog, `GET /patroni` (`watchdog_failed`).

use std::path::PathBuf;
use std::sync::Arc;

use nix::errno::Errno;

use crate::config::TimingError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WatchdogError {
    /// `watchdog.safety_margin` and the timing give no usable timeout.
    #[error(transparent)]
    Timing(#[from] TimingError),
    /// The device is missing or not writable (the probe, nothing opened).
    #[error("watchdog device {} is not usable: {errno}", path.display())]
    NotUsable {
        path: PathBuf,
        #[source]
        errno: Errno,
    },
    #[error("cannot open watchdog device {}: {error}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        error: Arc<std::io::Error>,
    },
    /// It opened but refused `WDIOC_GETSUPPORT` (a regular file: `ENOTTY`).
    #[error("{} is not a usable watchdog device (WDIOC_GETSUPPORT: {})", path.display(), describe(*errno))]
    NotAWatchdog { path: PathBuf, errno: Errno },
    /// A call that needs the device open, made while it is closed.
    #[error("{device} is not open")]
    NotOpen { device: String },
    #[error("timeout {secs} s is too long")]
    TimeoutTooLong { secs: u64 },
    /// The driver refused a request.
    #[error("{request} on {device}: {}", describe(*errno))]
    Ioctl {
        request: Request,
        device: String,
        errno: Errno,
    },
    #[error("{device} reports a timeout of {timeout} s")]
    BadTimeout { device: String, timeout: i64 },
    #[error("keepalive write to {device}: {error}")]
    KeepaliveWrite {
        device: String,
        #[source]
        error: Arc<std::io::Error>,
    },
    #[error("magic close of {device}: {error}")]
    MagicClose {
        device: String,
        #[source]
        error: Arc<std::io::Error>,
    },
    /// The device would not fire before the next keepalive is due.
    #[error("the device's timeout ({actual} s) is shorter than loop_wait ({loop_wait} s)")]
    ShorterThanLoopWait { actual: u64, loop_wait: f64 },
    /// The device would fire too late: after another node may take the lease.
    #[error(
        "the device's timeout ({actual} s) is longer than ttl - safety_margin ({want} s): it would not reset the machine before another node may take the lease"
    )]
    LongerThanWanted { actual: u64, want: u64 },
}

/// A watchdog ioctl request, as the errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    SetTimeout(u64),
    GetTimeout,
    Keepalive,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::SetTimeout(secs) => write!(f, "WDIOC_SETTIMEOUT {secs} s"),
            Request::GetTimeout => f.write_str("WDIOC_GETTIMEOUT"),
            Request::Keepalive => f.write_str("WDIOC_KEEPALIVE"),
        }
    }
}

/// `ENOTTY (Inappropriate ioctl for device)`.
fn describe(e: Errno) -> String {
    let text = std::io::Error::from(e).to_string();
    let text = text
        .split(" (os error")
        .next()
        .unwrap_or_default()
        .to_owned();
    format!("{e:?} ({text})")
}
