//! `pgpilotctl`: the operator's CLI. Pure rendering lives here; the binary
//! in `src/bin/pgpilotctl.rs` only parses arguments and does the I/O.

pub mod edit;
pub mod history;
pub mod list;
pub mod table;
pub mod time;
