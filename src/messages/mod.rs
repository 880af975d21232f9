//! Typed messages between the actors, grouped by the actor that receives
//! them. No actor reaches into another's state: it asks with one of these.

pub mod callbacks;
pub mod config;
pub mod elector;
pub mod restart;
pub mod supervisor;
