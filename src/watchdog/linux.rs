//! The Linux watchdog API (`Documentation/watchdog/watchdog-api.rst`):
//! opening `/dev/watchdog` arms it, `WDIOC_KEEPALIVE` (or any write) resets
//! the countdown, `WDIOC_SETTIMEOUT`/`WDIOC_GETTIMEOUT` set and read it in
//! seconds, and writing the magic character `V` before closing disarms it
//! (drivers built with `nowayout` ignore that and reset the machine anyway).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::libc::c_int;
use nix::unistd::{AccessFlags, access};

use super::error::{Request, WatchdogError};
use super::ioctl::{self, WatchdogInfo};

/// The driver accepts `WDIOC_SETTIMEOUT`.
const WDIOF_SETTIMEOUT: u32 = 0x0080;
/// The driver supports `WDIOC_KEEPALIVE`.
const WDIOF_KEEPALIVEPING: u32 = 0x8000;

/// `/dev/watchdog` or another device of the Linux watchdog API.
pub struct LinuxWatchdog {
    path: PathBuf,
    file: Option<File>,
    info: WatchdogInfo,
}

impl LinuxWatchdog {
    pub fn new(path: impl AsRef<Path>) -> LinuxWatchdog {
        LinuxWatchdog {
            path: path.as_ref().to_owned(),
            file: None,
            info: WatchdogInfo::default(),
        }
    }

    fn fd(&self) -> Result<BorrowedFd<'_>, WatchdogError> {
        self.file
            .as_ref()
            .map(AsFd::as_fd)
            .ok_or_else(|| WatchdogError::NotOpen {
                device: self.path.display().to_string(),
            })
    }

    fn ioctl_error(&self, request: Request, errno: nix::errno::Errno) -> WatchdogError {
        use super::WatchdogDevice;
        WatchdogError::Ioctl {
            request,
            device: self.describe(),
            errno,
        }
    }

    fn identity(&self) -> String {
        let end = self
            .info
            .identity
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.info.identity.len());
        String::from_utf8_lossy(&self.info.identity[..end]).into_owned()
    }
}

impl super::WatchdogDevice for LinuxWatchdog {
    fn describe(&self) -> String {
        let id = self.identity();
        if id.is_empty() {
            self.path.display().to_string()
        } else {
            format!("{} ({id})", self.path.display())
        }
    }

    fn probe(&self) -> Result<(), WatchdogError> {
        access(&self.path, AccessFlags::W_OK).map_err(|errno| WatchdogError::NotUsable {
            path: self.path.clone(),
            errno,
        })
    }

    fn open(&mut self) -> Result<(), WatchdogError> {
        if self.file.is_some() {
            return Ok(());
        }
        let mut file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| WatchdogError::Open {
                path: self.path.clone(),
                error: e.into(),
            })?;
        let info = match ioctl::get_support(file.as_fd()) {
            Ok(info) => info,
            Err(errno) => {
                // Not a watchdog (a regular file gives ENOTTY): close without
                // writing to it. A character device that refuses the call may
                // still be an armed watchdog: disarm it as well as we can.
                let is_chardev = file
                    .metadata()
                    .is_ok_and(|m| m.file_type().is_char_device());
                if is_chardev {
                    let _ = file.write_all(b"V");
                }
                return Err(WatchdogError::NotAWatchdog {
                    path: self.path.clone(),
                    errno,
                });
            }
        };
        self.info = info;
        self.file = Some(file);
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.file.is_some()
    }

    fn can_set_timeout(&self) -> bool {
        self.info.options & WDIOF_SETTIMEOUT != 0
    }

    fn set_timeout(&mut self, secs: u64) -> Result<(), WatchdogError> {
        let fd = self.fd()?;
        let t = c_int::try_from(secs).map_err(|_| WatchdogError::TimeoutTooLong { secs })?;
        ioctl::set_timeout(fd, t)
            .map_err(|errno| self.ioctl_error(Request::SetTimeout(secs), errno))
    }

    fn get_timeout(&mut self) -> Result<u64, WatchdogError> {
        let fd = self.fd()?;
        let t =
            ioctl::get_timeout(fd).map_err(|errno| self.ioctl_error(Request::GetTimeout, errno))?;
        u64::try_from(t).map_err(|_| WatchdogError::BadTimeout {
            device: self.describe(),
            timeout: t.into(),
        })
    }

    fn keepalive(&mut self) -> Result<(), WatchdogError> {
        let fd = self.fd()?;
        if self.info.options & WDIOF_KEEPALIVEPING != 0 {
            return ioctl::keepalive(fd)
                .map_err(|errno| self.ioctl_error(Request::Keepalive, errno));
        }
        // Every driver takes a write as a keepalive.
        let device = self.describe();
        let Some(file) = self.file.as_mut() else {
            return Err(WatchdogError::NotOpen { device });
        };
        file.write_all(b"1")
            .map_err(|e| WatchdogError::KeepaliveWrite {
                device,
                error: e.into(),
            })
    }

    fn close(&mut self) -> Result<(), WatchdogError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let r = file.write_all(b"V").map_err(|e| WatchdogError::MagicClose {
            device: self.describe(),
            error: e.into(),
        });
        drop(file);
        r
    }
}
