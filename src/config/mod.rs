//! Configuration: the YAML file, environment overrides, validation, and the
//! dynamic (DCS) layer.

pub mod dynamic;
pub mod types;

pub use types::*;
