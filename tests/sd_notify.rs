//! The daemon speaks systemd's notification protocol: `READY=1` once it runs,
//! `WATCHDOG=1` after every HA cycle (for `Type=notify` + `WatchdogSec=`).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use support::cluster::{TestCluster, Timing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_reports_ready_and_pings_the_watchdog_every_cycle() {
    let mut c = TestCluster::new(1, Timing::default());
    let path = c.root.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    // The daemon runs as the PostgreSQL user.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let addr = path.display().to_string();
    c.start_with_env(0, &[("NOTIFY_SOCKET", addr.as_str())]);

    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut ready, mut pings) = (false, 0);
    let mut buf = [0u8; 256];
    while Instant::now() < deadline && !(ready && pings >= 3) {
        if let Ok(n) = sock.recv(&mut buf) {
            match &buf[..n] {
                b"READY=1" => ready = true,
                b"WATCHDOG=1" => pings += 1,
                _ => {}
            }
        }
    }
    assert!(ready, "no READY=1 from the daemon");
    assert!(pings >= 3, "only {pings} WATCHDOG=1 pings in 60 s");
}
