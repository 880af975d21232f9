//! The Patroni-compatible REST API (shared/spec/rest-api.md): pure
//! document and status-code builders, and the actix-web server that feeds
//! them from the actors and the DCS.

pub mod cluster;
pub mod health;
pub mod server;
pub mod status;
pub mod switchover;

pub use cluster::{cluster_json, format_lsn, history_json};
pub use health::{health_status, liveness_status, parse_size, readiness_status};
pub use server::{ApiContext, serve, serve_listener};
pub use status::status_document;
