//! systemd's notification protocol (`sd_notify`), without libsystemd.
//!
//! With `Type=notify` the unit waits for `READY=1`; with `WatchdogSec=` systemd
//! kills the daemon when `WATCHDOG=1` stops arriving (the fence, outside the
//! daemon's tree, still stops PostgreSQL before the lease ends). pgpilot sends `WATCHDOG=1` after every HA
//! cycle that finished, so a hung loop is caught even when the process is
//! alive. Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

/// The socket systemd gave us, if any.
fn socket_from_env() -> Option<String> {
    std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Send `state` (e.g. `READY=1`) to systemd. `Ok(false)` outside systemd.
pub fn notify(state: &str) -> io::Result<bool> {
    match socket_from_env() {
        Some(addr) => send_to(&addr, state).map(|()| true),
        None => Ok(false),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("pgpilot-sdn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        send_to(path.to_str().unwrap(), "WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        std::fs::remove_dir_all(&dir).unwrap();
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
}
