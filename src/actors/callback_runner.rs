//! The CallbackRunner: will run the user's `on_*` scripts. For now it records
//! each event in the log with the script that would run.

use actix::prelude::*;
use tracing::info;

use crate::config::Callbacks;
use crate::messages::callbacks::{CallbackAction, CallbackEvent};

pub struct CallbackRunner {
    callbacks: Callbacks,
    scope: String,
}

impl CallbackRunner {
    pub fn new(callbacks: Callbacks, scope: String) -> CallbackRunner {
        CallbackRunner { callbacks, scope }
    }

    fn script(&self, action: CallbackAction) -> Option<&str> {
        match action {
            CallbackAction::OnStart => self.callbacks.on_start.as_deref(),
            CallbackAction::OnStop => self.callbacks.on_stop.as_deref(),
            CallbackAction::OnRestart => self.callbacks.on_restart.as_deref(),
            CallbackAction::OnReload => self.callbacks.on_reload.as_deref(),
            CallbackAction::OnRoleChange => self.callbacks.on_role_change.as_deref(),
        }
    }
}

impl Actor for CallbackRunner {
    type Context = Context<Self>;
}

impl Handler<CallbackEvent> for CallbackRunner {
    type Result = ();
    fn handle(&mut self, ev: CallbackEvent, _ctx: &mut Context<Self>) {
        info!(
            event = "callback",
            action = ev.action.as_str(),
            role = %ev.role,
            scope = %self.scope,
            script = ?self.script(ev.action),
            "callback event (scripts are not run yet)"
        );
    }
}
