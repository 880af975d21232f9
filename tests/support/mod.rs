//! Helpers shared by integration tests (`mod support;` in each test file).
#![allow(dead_code)]

pub mod cluster;
pub mod consul_emulator;
pub mod ctl;
pub mod dns;
pub mod etcd;
pub mod exhibitor;
pub mod families;
pub mod ports;
pub mod proxy;
pub mod sync_faults;
pub mod tls;
pub mod writer;
pub mod zookeeper;

use std::time::Duration;

pub use ports::free_port;

/// Poll `f` until it returns `Some`, or panic after `within` with `what`.
/// Uses tokio time, so it also works under `tokio::time::pause`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
