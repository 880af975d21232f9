//! Typed messages between the actors, grouped by the actor that receives
//! them. No actor reaches into another's state: it asks with one of these.
//! The one exception is read-only: the REST API reads the state the elector
//! and the supervisor publish on their boards ([`board`]).

pub mod board;
pub mod callbacks;
pub mod config;
pub mod elector;
pub mod restart;
pub mod supervisor;
