//! # flotilla-sim
//!
//! A deterministic simulator that runs N copies of any [`flotilla_core::Machine`] on one
//! virtual clock, through a modelled network (latency, jitter, uniform and bursty loss,
//! duplication, reordering, corruption, partitions), modelled effects (latency, failures,
//! hangs, loss on crash) and node faults (crash, restart, pause, clock skew), checking
//! every machine's own invariants and the protocol's after every step and its liveness
//! expectations within their windows. One master seed fixes the whole run — including,
//! for swarm scenarios, the faults themselves; every failure names its seed and the
//! command that replays it, and a run can be drawn as a timeline.
//!
//! ```text
//! scenario file ──parse──▶ Scenario<P> ──Sim::from_scenario(seed)──▶ Sim<P> ──run──▶ Report
//!                                        └──────────── sweep(seeds) ───────────────▶ SweepReport
//! ```
//!
//! A protocol joins through the [`Protocol`] trait; [`protocols::heartbeat`] is the
//! first. The format of scenario files is documented in SPEC.md §6.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod canary;
pub mod check;
pub mod cli;
pub mod clock;
pub mod cpu;
pub mod effects;
pub mod network;
pub mod protocol;
pub mod protocols;
pub mod queue;
pub mod scenario;
pub mod scenarios;
pub mod sim;
pub mod stream;
pub mod svg;
pub mod swarm;
pub mod sweep;
pub mod timeline;
pub mod trace;
pub mod world;

pub use check::{Expectation, Failure, Outcome, Report, Source, Verdict, Window};
pub use cpu::{CpuParams, InputOrder};
pub use effects::{EffectParams, EffectPatch};
pub use network::{LinkParams, Network};
pub use protocol::{NodeSpec, Observation, ParseCtx, Protocol, Workload};
pub use scenario::Scenario;
pub use sim::{Action, LinkPatch, Sim, SimConfig, Target};
pub use stream::{StreamParams, StreamStats};
pub use sweep::{SweepReport, sweep};
pub use timeline::Timeline;
pub use world::{Status, World};
