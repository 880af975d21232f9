//! The actors of the daemon. Each owns one concern; they talk only through
//! the typed messages in [`crate::messages`] (and, read-only, the boards
//! the REST API reads: [`crate::messages::board`]).

pub mod callback_runner;
pub mod config_manager;
pub mod dcs_watcher;
pub mod failsafe;
pub mod ha_board;
pub mod history_writer;
pub mod leader_elector;
pub mod member_record;
pub mod peers;
pub mod pg_callbacks;
pub mod postgres_jobs;
pub mod postgres_supervisor;
pub mod replica_methods;
pub mod switchover;
pub mod sync_steps;
