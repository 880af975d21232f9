//! Everything pgpilot does to and with the local PostgreSQL server: the
//! programs, the files it owns, the postmaster process and SQL.
//!
//! Library code runs as the PostgreSQL OS user and never switches users.

pub mod binaries;
pub mod command;
pub mod conf;
pub mod conninfo;
pub mod controldata;
pub mod datadir;
pub mod describe;
pub mod dsn;
pub mod error;
pub mod lsn;
pub mod ops;
pub mod params;
pub mod postmaster;
pub mod query;
pub mod replslot;
pub mod session;
pub mod settings_gate;
pub mod tls_client;

pub use binaries::Binaries;
pub use conf::{PgpassEntry, RecoveryParams};
pub use controldata::{ControlData, DbState};
pub use error::{PgError, PgResult};
pub use postmaster::{Postmaster, StopMode, StopOutcome};
pub use query::{ConnParams, PgSnapshot, SnapshotKind};
pub use session::{LocalSession, SnapshotError};
