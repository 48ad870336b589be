//! Configuration hierarchy and connection brokering: motherships and daughterships
//! (seed 000; SPEC.md §5).

pub mod client;
pub mod command;
pub mod machine;
pub mod msg;
pub mod store;
pub mod tree;

pub use machine::{
    Ship, ShipCommand, ShipConfig, ShipEffect, ShipError, ShipEvent, ShipLimits, ShipTimings,
    StoreBatch, Stored,
};
