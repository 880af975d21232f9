//! Messages handled by the `CallbackRunner`.

use actix::Message;

/// Patroni's callback actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackAction {
    OnStart,
    OnStop,
    OnRestart,
    OnReload,
    OnRoleChange,
}

impl CallbackAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackAction::OnStart => "on_start",
            CallbackAction::OnStop => "on_stop",
            CallbackAction::OnRestart => "on_restart",
            CallbackAction::OnReload => "on_reload",
            CallbackAction::OnRoleChange => "on_role_change",
        }
    }
}

/// Something happened that a callback may be configured for.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct CallbackEvent {
    pub action: CallbackAction,
    /// `primary`, `replica`, ...
    pub role: String,
}

impl CallbackEvent {
    pub fn new(action: CallbackAction, role: impl Into<String>) -> CallbackEvent {
        CallbackEvent {
            action,
            role: role.into(),
        }
    }
}
