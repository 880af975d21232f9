//! The daemon speaks systemd's notification protocol (docs/operations.md,
//! "systemd"): `READY=1` once it runs, `WATCHDOG=1` after every HA cycle
//! with `WATCHDOG_USEC=` set to ttl + loop_wait (WatchdogSec=),
//! `RELOADING=1` + `MONOTONIC_USEC=` then `READY=1` around a SIGHUP reload
//! (Type=notify-reload), `STOPPING=1` at a SIGTERM.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::cluster::{TestCluster, Timing};

/// Datagrams until `done` says so or `within` passes; returns them all.
fn receive_until(
    sock: &UnixDatagram,
    within: Duration,
    got: &mut Vec<String>,
    done: impl Fn(&[String]) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        if done(got) {
            return true;
        }
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    done(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_reports_ready_reload_stop_and_pings_the_watchdog_every_cycle() {
    let mut c = TestCluster::new(1, Timing::default());
    let path = c.root.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    // The daemon runs as the PostgreSQL user.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let addr = path.display().to_string();
    // WatchdogSec=30 as systemd passes it; the daemon asks for ttl +
    // loop_wait (6 + 1 s) instead.
    c.start_with_env(
        0,
        &[
            ("NOTIFY_SOCKET", addr.as_str()),
            ("WATCHDOG_USEC", "30000000"),
        ],
    );

    let mut got = Vec::new();
    let pings = |g: &[String]| g.iter().filter(|m| m.ends_with("WATCHDOG=1")).count();
    let started = receive_until(&sock, Duration::from_secs(60), &mut got, |g| {
        g.iter().any(|m| m == "READY=1") && pings(g) >= 3
    });
    assert!(started, "no READY=1 and 3 pings in 60 s: {got:?}");
    let asked: Vec<&String> = got
        .iter()
        .filter(|m| m.starts_with("WATCHDOG_USEC="))
        .collect();
    assert_eq!(
        asked,
        ["WATCHDOG_USEC=7000000\nWATCHDOG=1"],
        "the timeout is asked for once, with the first ping"
    );

    // SIGHUP: RELOADING=1 with the time, then READY=1.
    got.clear();
    c.signal(0, Signal::SIGHUP);
    let reloaded = receive_until(&sock, Duration::from_secs(20), &mut got, |g| {
        g.iter()
            .position(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC="))
            .is_some_and(|i| g[i + 1..].iter().any(|m| m == "READY=1"))
    });
    assert!(
        reloaded,
        "no RELOADING=1 then READY=1 after SIGHUP: {got:?}"
    );

    // SIGTERM: STOPPING=1.
    got.clear();
    c.signal(0, Signal::SIGTERM);
    let stopping = receive_until(&sock, Duration::from_secs(20), &mut got, |g| {
        g.iter().any(|m| m == "STOPPING=1")
    });
    assert!(stopping, "no STOPPING=1 after SIGTERM: {got:?}");
    assert_eq!(c.wait_exit(0, Duration::from_secs(30)).await, 0);
}
