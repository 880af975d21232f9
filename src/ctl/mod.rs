//! `pgpilotctl`: the operator's CLI. The binary (`src/bin/pgpilotctl.rs`)
//! parses the command line; each command is a file of [`cmd`]; what they
//! share is [`context`]; the pure rendering and editing are the other
//! modules here.

pub mod cmd;
pub mod context;
pub mod dcs_url;
pub mod edit;
pub mod history;
pub mod list;
pub mod table;
pub mod time;
