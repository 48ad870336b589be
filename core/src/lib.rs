//! # flotilla-core
//!
//! Pure protocol machines for cluster coordination. Nothing here opens a socket, starts a
//! thread, reads a clock, or draws ambient randomness: time is an argument ([`Instant`]),
//! randomness is a seeded [`Rng`] the caller passes in, and every machine is driven the
//! same way (the [`Machine`] trait; SPEC.md §1):
//!
//! ```text
//! loop {
//!     machine.handle(now, input)?;  // a peer frame, client bytes, a command, an effect's outcome
//!     // or, when the deadline came:  machine.handle_timeout(now);
//!     while let Some(out) = machine.poll_output() {
//!         // Transmit → send the frame; ToClient / CloseClient → client stream;
//!         // Event → app; Effect → run it off the loop, feed back EffectDone
//!     }
//!     let deadline = machine.poll_timeout();  // sleep until then, or until input
//! }
//! ```
//!
//! The drivers `flotilla-tokio` and `flotilla-smol` (one driver written once in
//! `flotilla-driver`) and the simulator `flotilla-sim` are such loops;
//! `examples/std_udp.rs` is one with nothing but the standard library. Several machines
//! run in one node as a [`compose::Pair`].
//!
//! Bad input from a peer, a client or a file is answered with a typed error and leaves
//! the machine unchanged. A panic is always a bug in this crate.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod compose;
pub mod flood;
pub mod fnv;
pub mod groups;
pub mod heartbeat;
pub mod line;
pub mod machine;
pub mod membership;
pub mod rng;
pub mod sexpr;
pub mod ship;
pub mod time;
pub mod turns;
pub mod vip;
pub mod wire;

pub use machine::{
    ClientId, ClientOrigin, ClientRemote, EffectError, EffectId, EffectRequest, Input, InputOf,
    Lane, ListenerId, Machine, NoEffect, Outbox, Output, OutputOf, PeerAddr, Timers, Transmit,
    debug_check,
};
pub use rng::Rng;
pub use time::{Clock, Instant};
