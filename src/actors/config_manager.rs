//! The ConfigManager: owns the local configuration and re-reads it on
//! SIGHUP or `POST /reload`. A file that fails to load or validate leaves the
//! running configuration untouched.

use std::sync::Arc;

use actix::prelude::*;
use tracing::{error, info};

use crate::config::Config;
use crate::messages::config::{ConfigChanged, GetConfig, ReloadConfig};

/// Reads and validates the configuration from wherever it came from (file,
/// directory, environment); errors name the file, key and line.
pub type Loader = Box<dyn Fn() -> Result<Config, String>>;

pub struct ConfigManager {
    current: Arc<Config>,
    loader: Loader,
    subscribers: Vec<Recipient<ConfigChanged>>,
}

impl ConfigManager {
    pub fn new(current: Config, loader: Loader) -> ConfigManager {
        ConfigManager {
            current: Arc::new(current),
            loader,
            subscribers: Vec::new(),
        }
    }

    pub fn subscribe(&mut self, r: Recipient<ConfigChanged>) {
        self.subscribers.push(r);
    }
}

impl Actor for ConfigManager {
    type Context = Context<Self>;
}

impl Handler<GetConfig> for ConfigManager {
    type Result = MessageResult<GetConfig>;
    fn handle(&mut self, _msg: GetConfig, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.current.clone())
    }
}

impl Handler<ReloadConfig> for ConfigManager {
    type Result = Result<(), String>;
    fn handle(&mut self, _msg: ReloadConfig, _ctx: &mut Context<Self>) -> Self::Result {
        match (self.loader)() {
            Ok(new) => {
                if *self.current == new {
                    info!(event = "config_reloaded", changed = false);
                    return Ok(());
                }
                let new = Arc::new(new);
                self.current = new.clone();
                info!(event = "config_reloaded", changed = true);
                for s in &self.subscribers {
                    s.do_send(ConfigChanged(new.clone()));
                }
                Ok(())
            }
            Err(e) => {
                error!(event = "config_reload_failed", error = %e, "keeping the running configuration");
                Err(e)
            }
        }
    }
}
