//! # flotilla-core
//!
//! Pure protocol machines for cluster coordination. Nothing here opens a socket, starts a
//! thread, reads a clock, or draws ambient randomness: time is an argument ([`Instant`]),
//! randomness is a seeded [`Rng`] the caller passes in, and every machine is driven the
//! same way (the [`Machine`] trait; SPEC.md §1):
//!
//! ```text
//! loop {
//!     machine.handle(now, input)?;        // a peer frame, client bytes, or a command
//!     // or, when the deadline came:  machine.handle_timeout(now);
//!     while let Some(out) = machine.poll_output() {
//!         // Transmit → send the frame; ToClient / CloseClient → client stream; Event → app
//!     }
//!     let deadline = machine.poll_timeout();  // sleep until then, or until input
//! }
//! ```
//!
//! The adapters `flotilla-tokio`, `flotilla-smol` and the simulator `flotilla-sim` are
//! such loops; `examples/std_udp.rs` is one with nothing but the standard library.
//!
//! Bad input from a peer, a client or a file is answered with a typed error and leaves
//! the machine unchanged. A panic is always a bug in this crate.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod drive;
pub mod heartbeat;
pub mod line;
pub mod machine;
pub mod rng;
pub mod sexpr;
pub mod ship;
pub mod time;
pub mod wire;

pub use machine::{ClientId, Input, Machine, Outbox, Output, PeerAddr, Timers, Transmit};
pub use rng::Rng;
pub use time::{Clock, Instant};
