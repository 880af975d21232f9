//! One `pgpilotctl` command per file: its arguments (`Args`, parsed by
//! the binary) and what it does (`run`).

pub mod demote_cluster;
pub mod dsn;
pub mod edit_config;
pub mod failover;
pub mod flush;
pub mod history;
pub mod list;
pub mod members;
pub mod pause;
pub mod promote_cluster;
pub mod query;
pub mod reinit;
pub mod reload;
pub mod remove;
pub mod restart;
pub mod resume;
pub mod show_config;
pub mod switchover;
pub mod topology;
pub mod version;
