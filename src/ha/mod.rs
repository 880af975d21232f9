//! High-availability protocol: what this node should do, pure.
//!
//! Nothing here performs I/O or reads the clock (clippy's
//! `disallowed_methods`, configured in clippy.toml, is denied here: the
//! time comes in as a value). [`decide`] maps the cluster view, the local
//! facts and the time to a [`Decision`]; [`Node`] keeps the state between
//! cycles and keep-alives and says what each action's result means. The
//! `LeaderElector` actor and the simulation gather the facts, feed them to
//! a `Node` and carry out what comes back. Every row of the decision table
//! (docs/ha.md §2) has a unit test in `tests.rs`, the node's rules in
//! `node_tests.rs`.
#![deny(clippy::disallowed_methods)]

mod action;
pub mod config_restore;
mod cycle;
pub mod data_dir;
mod decide;
pub mod fence;
pub mod history;
pub mod iso8601;
pub mod lease;
pub mod logical_slots;
pub mod lsn;
mod node;
mod pause;
pub mod peers;
pub mod quorum;
pub mod quorum_plan;
mod rejoin;
pub mod rewind;
pub mod slots;
pub mod standby_cluster;
pub mod summary;
pub mod switchover;
pub mod sync;
pub mod sync_names;
mod view;
mod watchdog;

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests;

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod sync_tests;

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod quorum_plan_tests;

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod summary_tests;

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod standby_cluster_tests;

pub use action::{Action, Decision, DemoteMode, Upstream};
pub use cycle::{ActionResult, ActionStep, Next};
pub use decide::decide;
pub(crate) use decide::{clone_source, upstream_of};
pub use node::{CycleEnd, EndFacts, Node, ShutdownPlan, next_cycle_due};
pub use switchover::SwitchoverView;
pub use view::{
    DataDir, DcsView, JobKind, JobOutcome, LocalView, PeerReply, PeerStatus, PgFacts, PgRole,
    RewindView, WatchdogState,
};
pub use view::{FailsafeAck, FailsafeView, LeaderHeartbeat};
