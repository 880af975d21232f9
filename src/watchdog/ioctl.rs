//! The four ioctl(2) requests of the Linux watchdog API behind safe
//! functions. This is the only module of pgpilot allowed unsafe code
//! (src/lib.rs denies it everywhere else).
//!
//! Why it needs it: reading the driver's capabilities and getting or
//! setting its timeout exist only as ioctl(2) requests (a write is enough
//! for a keepalive, nothing else is), std has no ioctl, and nix's `ioctl_*!`
//! macros generate `unsafe fn`s because the kernel reads and writes memory
//! through the pointer it is given. The unsafety stays here: every function
//! takes a descriptor borrowed from an open file, so it is open for the
//! whole call, and passes a live, exclusively borrowed value of exactly the
//! type the request code encodes (its size is part of the request number).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::libc::c_int;

/// `struct watchdog_info` of `<linux/watchdog.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct WatchdogInfo {
    pub(super) options: u32,
    pub(super) firmware_version: u32,
    pub(super) identity: [u8; 32],
}

mod raw {
    use super::{WatchdogInfo, c_int};
    nix::ioctl_read!(wdioc_getsupport, b'W', 0, WatchdogInfo);
    nix::ioctl_read!(wdioc_keepalive, b'W', 5, c_int);
    nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, c_int);
    nix::ioctl_read!(wdioc_gettimeout, b'W', 7, c_int);
}

/// `WDIOC_GETSUPPORT`: the driver's identity and options. A file that is
/// not a watchdog answers `ENOTTY`.
pub(super) fn get_support(fd: BorrowedFd<'_>) -> nix::Result<WatchdogInfo> {
    let mut info = WatchdogInfo::default();
    // SAFETY: `fd` is open for the call; `info` is a `struct watchdog_info`.
    unsafe { raw::wdioc_getsupport(fd.as_raw_fd(), &mut info) }?;
    Ok(info)
}

/// `WDIOC_SETTIMEOUT`, in seconds. The driver may round it: read it back
/// with [`get_timeout`].
pub(super) fn set_timeout(fd: BorrowedFd<'_>, secs: c_int) -> nix::Result<()> {
    let mut t = secs;
    // SAFETY: `fd` is open for the call; the kernel reads and overwrites `t`.
    unsafe { raw::wdioc_settimeout(fd.as_raw_fd(), &mut t) }.map(|_| ())
}

/// `WDIOC_GETTIMEOUT`, in seconds.
pub(super) fn get_timeout(fd: BorrowedFd<'_>) -> nix::Result<c_int> {
    let mut t: c_int = 0;
    // SAFETY: `fd` is open for the call; the kernel fills in `t`.
    unsafe { raw::wdioc_gettimeout(fd.as_raw_fd(), &mut t) }?;
    Ok(t)
}

/// `WDIOC_KEEPALIVE`: reset the countdown.
pub(super) fn keepalive(fd: BorrowedFd<'_>) -> nix::Result<()> {
    let mut dummy: c_int = 0;
    // SAFETY: `fd` is open for the call; the kernel ignores the argument.
    unsafe { raw::wdioc_keepalive(fd.as_raw_fd(), &mut dummy) }.map(|_| ())
}
