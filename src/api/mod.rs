//! The Patroni-compatible REST API (docs/rest-api.md): pure
//! document and status-code builders, the routes (one file per family,
//! under `routes/`) and the actix-web server that feeds them from the
//! actors and the DCS.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod headers;
pub mod health;
pub mod lag;
pub mod lease_metrics;
pub mod listener;
pub mod metric_families;
pub mod metrics;
pub mod reinit;
mod reply;
mod request;
pub mod restart;
mod routes;
pub mod server;
mod state;
pub mod status;
pub mod switchover;

pub use auth::AccessPolicy;
pub use cluster::{cluster_json, format_lsn, history_json};
pub use health::{health_status, liveness_status, parse_size, readiness_status};
pub use server::{
    ApiContext, serve, serve_listener, serve_listener_with_access, serve_with_access,
};
pub use status::status_document;
