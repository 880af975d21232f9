//! Configuration: the YAML file, environment overrides, validation, and the
//! dynamic (DCS) layer.

pub mod dynamic;
#[allow(dead_code)]
mod env;
pub mod error;
#[allow(dead_code)]
mod schema;
#[allow(dead_code)]
mod tree;
pub mod types;

pub use dynamic::{MIN_LOOP_WAIT, MIN_RETRY_TIMEOUT, MIN_TTL, timing_from_json};
pub use error::ConfigError;
pub use schema::parse_bool;
pub use types::*;
