//! Messages handled by the `ConfigManager`.

use std::sync::Arc;

use actix::Message;

use crate::config::{Config, ConfigError};

/// The local configuration in force.
#[derive(Debug, Message)]
#[rtype(result = "Arc<Config>")]
pub struct GetConfig;

/// Re-read the configuration file (SIGHUP, `POST /reload`). A file that
/// fails to load or validate leaves the running configuration in place.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ReloadError>")]
pub struct ReloadConfig;

/// Why a reload left the running configuration in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file (or the environment) does not load or validate; the error
    /// names the file, key and line.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The new configuration changes a setting only a restart applies.
    #[error("{key}: {change} needs a restart")]
    NeedsRestart {
        key: &'static str,
        change: &'static str,
    },
}

/// Sent to subscribers after a successful reload.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ConfigChanged(pub Arc<Config>);

/// Sent to reload subscribers after every successful reload (SIGHUP,
/// `POST /reload`), changed or not: the `on_reload` callback.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ConfigReloaded;
