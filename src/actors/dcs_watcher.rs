//! The DcsWatcher: turns the DCS watch into wake-ups of the HA loop, so a
//! vanished leader key is noticed at once instead of at the next
//! `loop_wait` tick.

use std::sync::Arc;

use actix::prelude::*;
use tracing::debug;

use crate::dcs::{Dcs, WatchEvent};
use crate::messages::elector::Wake;

pub struct DcsWatcher {
    dcs: Arc<dyn Dcs>,
    wake: Recipient<Wake>,
}

impl DcsWatcher {
    pub fn new(dcs: Arc<dyn Dcs>, wake: Recipient<Wake>) -> DcsWatcher {
        DcsWatcher { dcs, wake }
    }
}

impl Actor for DcsWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(self.dcs.watch());
    }
}

impl StreamHandler<WatchEvent> for DcsWatcher {
    fn handle(&mut self, event: WatchEvent, _ctx: &mut Context<Self>) {
        let reason = match event {
            WatchEvent::Leader => "leader key changed",
            WatchEvent::Config => "config key changed",
            WatchEvent::Failover => "failover key changed",
            WatchEvent::Status | WatchEvent::Other => return,
            WatchEvent::Lost(why) => {
                debug!(event = crate::events::WATCH_LOST, reason = %why);
                return;
            }
        };
        self.wake.do_send(Wake(reason));
    }

    /// The watch stream never ends by design; if it does, keep the actor
    /// alive: the HA loop still polls every `loop_wait`.
    fn finished(&mut self, _ctx: &mut Context<Self>) {
        debug!(event = crate::events::WATCH_ENDED);
    }
}
