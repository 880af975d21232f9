//! pgpilot: a high-availability supervisor for PostgreSQL, drop-in
//! compatible with Patroni.
//!
//! The policy lives in [`ha::decide`], a pure function of the cluster view
//! and the local state. The actors in [`actors`] gather those facts and carry
//! out the decided actions against the DCS ([`dcs`]) and the PostgreSQL child
//! ([`postgres`]).

// The lint gate (docs/architecture.md, "Error policy"): no unsafe code
// outside the one module that must call ioctl(2) (src/watchdog/ioctl.rs, which
// says why); no unwrap outside tests, since a panic in the daemon takes the
// HA loop with it; doc links that point at nothing are errors.
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod actors;
pub mod api;
pub mod atomic_file;
pub mod cli_docs;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod dcs;
pub mod events;
pub mod fence;
pub mod ha;
pub mod logging;
pub mod long_sleep;
pub mod messages;
pub mod peer_client;
pub mod postgres;
pub mod sd_notify;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod unique_name;
pub mod watchdog;
pub mod x509_usage;

/// The version published in member keys and `/patroni`. Peers branch on it
/// (docs/dcs.md, "`members/<name>`"), so it claims the Patroni release whose behaviour
/// pgpilot follows.
pub const PATRONI_COMPAT_VERSION: &str = "4.1.5";
