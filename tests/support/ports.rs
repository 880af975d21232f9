//! Loopback ports for the servers tests start. Its own file because the
//! standalone Consul emulator (examples/consul-emulator.rs) includes it
//! with the emulator's module, which names `super::free_port`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A free loopback port for a server a test starts, below the kernel's
/// ephemeral range. A port from that range (what binding port 0 gives) can
/// be taken, between the pick and the server's bind, as the source port of
/// any outgoing connection (the daemons' long-lived etcd connections among
/// them), and the server then cannot bind it for as long as that
/// connection lives. Ports below the range are never taken that way.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FLOOR: u32 = 10_000;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&l| l > FLOOR + 1000)
        .unwrap_or(32_768);
    let span = low - FLOOR;
    // Test binaries running at the same time start at different places.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let start = std::process::id().wrapping_mul(7919).wrapping_add(nanos) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FLOOR + (start + n * 7) % span;
        let port = u16::try_from(port).expect("port below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {low}");
}
