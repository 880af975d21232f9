//! Helpers shared by integration tests (`mod support;` in each test file).
#![allow(dead_code)]

pub mod cluster;
pub mod consul_emulator;
pub mod ctl;
pub mod dns;
pub mod etcd;
pub mod exhibitor;
pub mod families;
pub mod patronictl;
pub mod ports;
pub mod proxy;
pub mod sync_faults;
pub mod tls;
pub mod writer;
pub mod zookeeper;

use std::time::Duration;

pub use ports::free_port;

/// The last panic's message and place in this test process, kept by the
/// hook [`remember_panics`] installs.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Keep each panic's message (the default hook still prints it), so that
/// a failing test can repeat it after the node logs it dumps: CI shows
/// only the tail of a long failure output, and the reason must be in it.
pub fn remember_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = format!(
                "{}{}",
                info.payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_owned()),
                info.location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default()
            );
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = Some(text);
            }
            default(info);
        }));
    });
}

/// The message [`remember_panics`] kept, if any.
pub fn last_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|l| l.clone())
}

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
