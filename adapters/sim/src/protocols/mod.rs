//! The protocol plug-ins shipped with the simulator, one module each.

pub mod agents;
pub mod flood;
pub mod groups;
pub mod heartbeat;
pub mod membership;
pub mod pair;
pub mod ship;
pub mod vip;
