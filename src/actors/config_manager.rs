//! The ConfigManager: owns the local configuration and re-reads it on
//! SIGHUP or `POST /reload`. A file that fails to load or validate leaves the
//! running configuration untouched.

use std::sync::Arc;

use actix::prelude::*;
use tracing::{error, info};

use crate::config::Config;
use crate::messages::config::{
    ConfigChanged, ConfigReloaded, GetConfig, ReloadConfig, ReloadError,
};

/// Reads and validates the configuration from wherever it came from (file,
/// directory, environment); errors name the file, key and line.
pub type Loader = Box<dyn Fn() -> Result<Config, ReloadError>>;

pub struct ConfigManager {
    current: Arc<Config>,
    loader: Loader,
    subscribers: Vec<Recipient<ConfigChanged>>,
    reload_subscribers: Vec<Recipient<ConfigReloaded>>,
}

impl ConfigManager {
    pub fn new(current: Config, loader: Loader) -> ConfigManager {
        ConfigManager {
            current: Arc::new(current),
            loader,
            subscribers: Vec::new(),
            reload_subscribers: Vec::new(),
        }
    }

    pub fn subscribe(&mut self, r: Recipient<ConfigChanged>) {
        self.subscribers.push(r);
    }

    /// Told after every successful reload, even one that changed nothing.
    pub fn subscribe_reloads(&mut self, r: Recipient<ConfigReloaded>) {
        self.reload_subscribers.push(r);
    }

    fn reloaded(&self) {
        for s in &self.reload_subscribers {
            s.do_send(ConfigReloaded);
        }
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
    type Result = Result<(), ReloadError>;
    fn handle(&mut self, _msg: ReloadConfig, _ctx: &mut Context<Self>) -> Self::Result {
        match (self.loader)() {
            Ok(new) => {
                if *self.current == new {
                    info!(event = crate::events::CONFIG_RELOADED, changed = false);
                    self.reloaded();
                    return Ok(());
                }
                let new = Arc::new(new);
                self.current = new.clone();
                info!(event = crate::events::CONFIG_RELOADED, changed = true);
                for s in &self.subscribers {
                    s.do_send(ConfigChanged(new.clone()));
                }
                self.reloaded();
                Ok(())
            }
            Err(e) => {
                error!(event = crate::events::CONFIG_RELOAD_FAILED, error = %e, "keeping the running configuration");
                Err(e)
            }
        }
    }
}
