//! pgpilot: a high-availability supervisor for PostgreSQL, drop-in
//! compatible with Patroni.
//!
//! The policy lives in [`ha::decide`], a pure function of the cluster view
//! and the local state. The actors in [`actors`] gather those facts and carry
//! out the decided actions against the DCS ([`dcs`]) and the PostgreSQL child
//! ([`postgres`]).

pub mod actors;
pub mod api;
pub mod atomic_file;
pub mod config;
pub mod ctl;
pub mod dcs;
pub mod fence;
pub mod ha;
pub mod logging;
pub mod messages;
pub mod peer_client;
pub mod postgres;
pub mod sd_notify;
pub mod tls;
pub mod watchdog;

/// The version published in member keys and `/patroni`. Peers branch on it
/// (dcs-layout.md §2.1), so it claims the Patroni release whose behaviour
/// pgpilot follows.
pub const PATRONI_COMPAT_VERSION: &str = "4.1.4";
