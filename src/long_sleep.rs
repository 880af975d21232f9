//! The daemon's long idle sleeps (until the next HA cycle, the next lease
//! keep-alive, the watch's next progress probe) on a timerfd of their own:
//! one wake-up at the deadline.
//!
//! Why not `tokio::time::sleep`: tokio's timer wheel files a deadline
//! seconds away in a coarse slot (64 ms wide for 1–4 s, 4 s wide beyond),
//! wakes the thread when that slot begins and files the deadline again in a
//! finer one. An idle daemon sleeping `loop_wait` woke two times (at
//! `loop_wait: 1`) or three (at 10) per cycle instead of once, and a
//! wake-up is a good part of what an idle cycle costs (docs/operations.md,
//! "Footprint beside Patroni"). A timerfd armed for the whole wait wakes
//! the thread once. Should the timerfd not be available, tokio's sleep
//! stands in.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// `TimerFd` as tokio's `AsyncFd` takes it.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Sleep for `wait` (monotonic clock, as `Instant`). Cancel by dropping the
/// future: the timerfd is closed with it.
pub async fn sleep(wait: Duration) {
    // A zero one-shot disarms a timerfd: nothing to wait for anyway.
    if wait.is_zero() {
        return;
    }
    match armed(wait) {
        Ok(fd) => {
            if expired(&fd).await.is_ok() {
                return;
            }
            // A failed wait (it should not happen) falls back to tokio's
            // sleep for the whole period: late, never early.
            tokio::time::sleep(wait).await;
        }
        Err(_) => tokio::time::sleep(wait).await,
    }
}

fn armed(wait: Duration) -> std::io::Result<AsyncFd<Fd>> {
    let fd = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )?;
    fd.set(
        Expiration::OneShot(TimeSpec::from_duration(wait)),
        TimerSetTimeFlags::empty(),
    )?;
    // tokio deprecates this constructor (for `register_with_interest`, an
    // unsafe fn, which the crate's lint gate keeps to src/watchdog/ioctl.rs)
    // because a bare `AsRawFd` does not promise that the descriptor outlives
    // its registration. Here it does: `Fd` owns the timerfd (an `OwnedFd`
    // inside nix's `TimerFd`) and the `AsyncFd` owns `Fd`; its drop
    // deregisters before it drops `Fd`, which then closes the descriptor.
    #[allow(deprecated)]
    AsyncFd::with_interest(Fd(fd), Interest::READABLE)
}

/// Until the timerfd has fired (its counter read).
async fn expired(fd: &AsyncFd<Fd>) -> std::io::Result<()> {
    loop {
        let mut ready = fd.readable().await?;
        let mut count = [0u8; 8];
        match nix::unistd::read(ready.get_inner().0.as_fd(), &mut count) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn wakes_at_the_deadline_not_before() {
        for ms in [0, 30, 120] {
            let wait = Duration::from_millis(ms);
            let t0 = Instant::now();
            sleep(wait).await;
            let took = t0.elapsed();
            assert!(took >= wait, "{ms} ms: woke after {took:?}");
            assert!(took < wait + Duration::from_secs(1), "{ms} ms: {took:?}");
        }
    }

    #[tokio::test]
    async fn dropping_it_cancels() {
        let slept = tokio::time::timeout(Duration::from_millis(30), sleep(Duration::from_secs(60)));
        assert!(slept.await.is_err(), "a 60 s sleep ended within 30 ms");
    }
}
