//! Flooding between sites over a computed topology (seed 002, floodd; SPEC.md §8).
//!
//! A daemon per site floods updates to every site of its groups. The group's master site
//! computes a topology of chosen connectivity from measured round-trip times and
//! bandwidth and distributes it; each update travels once along a spanning tree of that
//! topology while the other links carry short digests, and a site pulls what a digest
//! shows it missed, reporting what it could not recover.

pub mod bundle;
pub mod command;
pub mod config;
pub mod machine;
pub mod msg;
pub mod state;
pub mod topology;

pub use machine::{
    Flood, FloodCommand, FloodEffect, FloodEffectValue, FloodError, FloodEvent, FloodLimits,
    FloodSettings, FloodStats, SettingsError, StreamKey, StreamMarks, TopologyView,
};

/// The largest update a client may flood (`data` or `binary`), in bytes: an update and
/// its header fit in one frame (SPEC.md §2.1).
pub const MAX_UPDATE_BYTES: usize = 960 * 1024;
