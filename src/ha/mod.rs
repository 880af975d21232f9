//! High-availability policy: what this node should do in one cycle.
//!
//! Nothing here performs I/O. [`decide`] maps the cluster view, the local
//! facts and the clock to a [`Decision`]; the `LeaderElector` actor gathers
//! the facts and carries the decision out. Every row of the decision table
//! (docs/ha.md §2) has a unit test in `tests.rs`.

mod action;
mod config_restore;
mod decide;
pub mod history;
pub mod iso8601;
pub mod lease;
pub mod lsn;
mod pause;
pub mod slots;
pub mod switchover;
mod view;
mod watchdog;

#[cfg(test)]
mod tests;

pub use action::{Action, Decision, DemoteMode, Upstream};
pub use decide::decide;
pub(crate) use decide::{clone_source, upstream_of};
pub use switchover::SwitchoverView;
pub use view::{
    DataDir, DcsView, JobKind, JobOutcome, LocalView, PeerReply, PeerStatus, PgFacts, PgRole,
    RewindView, WatchdogState,
};
pub use view::{FailsafeAck, FailsafeView, LeaderHeartbeat};
