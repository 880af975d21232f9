//! Configuration: the YAML file, environment overrides, validation, and the
//! dynamic (DCS) layer.
//!
//! * [`load()`]: file / directory / `PATRONI_CONFIGURATION` + `PATRONI_*`
//!   variables -> [`Config`] (plus warnings for unknown keys);
//! * [`validate()`] / [`validate_file`]: semantic checks (`pgpilot --validate`);
//! * [`DynamicConfig::from_json`]: the DCS `config` key / `bootstrap.dcs`.
//!
//! Every [`ConfigError`] names the file (or variable), key path and line.

pub mod client;
pub mod consul;
pub mod dynamic;
pub mod dynamic_file;
mod env;
pub mod error;
pub mod exhibitor;
pub mod generate;
pub mod headers;
mod lines;
pub mod load;
pub mod patch;
mod schema;
pub mod standby_cluster;
pub mod timing;
mod tree;
pub mod types;
pub mod units;
pub mod validate;
pub mod zookeeper;

pub use client::ClientConfig;
pub use error::{ConfigError, TimingError};
pub use load::{Loaded, load, load_client};
pub use patch::patch_config;
pub use schema::parse_bool;
pub use timing::{
    AdjustedTiming, MIN_LOOP_WAIT, MIN_RETRY_TIMEOUT, MIN_TTL, adjusted_timing, timing_from_json,
};
pub use types::*;
pub use units::parse_size;
pub use validate::{
    FORBIDDEN_BASEBACKUP_OPTIONS, FileCheck, validate, validate_file, validate_file_with,
    validate_with,
};
