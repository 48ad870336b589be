//! Checks and their verdicts: the timer-progress contract, the protocol's invariants,
//! and liveness expectations, plus how a failure tells you to replay it.

use core::fmt;
use std::path::PathBuf;

use flotilla_core::Instant;

use crate::network::NetStats;
use crate::stream::StreamStats;

/// Where a scenario came from, which decides the replay command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A built-in scenario (or one built in code), replayed by name.
    Named(String),
    /// A scenario file.
    File(PathBuf),
}

impl Source {
    /// The one-line command that replays `seed` with a trace.
    pub fn replay(&self, seed: u64) -> String {
        match self {
            Source::Named(name) => format!("flotilla sim {name} --seed {seed} --trace"),
            Source::File(path) => {
                format!(
                    "flotilla sim --file {} --seed {seed} --trace",
                    path.display()
                )
            }
        }
    }
}

/// When a liveness expectation's predicate must hold.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Window {
    /// At some moment within `[from, to]`.
    Within(Instant, Instant),
    /// After every step from this time until the end of the run.
    AlwaysFrom(Instant),
}

/// A liveness expectation: a named predicate and its window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// The protocol predicate's name.
    pub predicate: String,
    /// When it must hold.
    pub window: Window,
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.window {
            Window::Within(a, b) => write!(f, "{} within [{a}, {b}]", self.predicate),
            Window::AlwaysFrom(a) => write!(f, "{} always from {a}", self.predicate),
        }
    }
}

/// How a check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Satisfied; for a `within` expectation, the time it first held, otherwise the end
    /// of the run.
    Pass(Instant),
    /// Broken at this virtual time, for this reason.
    Fail(Instant, String),
    /// Not decided yet (the run has not reached the window's end).
    Pending,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What was checked, e.g. `invariants` or `converged within [5s, 7s]`.
    pub check: String,
    /// The result.
    pub outcome: Outcome,
}

impl Verdict {
    /// True unless failed.
    pub fn passed(&self) -> bool {
        !matches!(self.outcome, Outcome::Fail(..))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Pass(t) => write!(f, "PASS {} (at {t})", self.check),
            Outcome::Fail(t, why) => write!(f, "FAIL {} at {t}: {why}", self.check),
            Outcome::Pending => write!(f, "PENDING {}", self.check),
        }
    }
}

/// A failed check, with what is needed to reproduce it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The check's name.
    pub check: String,
    /// Virtual time of the failure.
    pub at: Instant,
    /// The seed of the run.
    pub seed: u64,
    /// What went wrong.
    pub message: String,
    /// The command that replays the run with a trace.
    pub replay: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed at {} (seed {}): {}\n  replay: {}",
            self.check, self.at, self.seed, self.message, self.replay
        )
    }
}

/// Counters of what the simulator did, beyond the network's own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events processed (stale timer events are not counted).
    pub events: u64,
    /// Frames fed to machines.
    pub delivered: u64,
    /// Frames whose bytes did not decode (corruption reaching the real decoder).
    pub decode_failures: u64,
    /// Inputs a machine refused with an error (including undecodable payloads).
    pub refused: u64,
    /// Deliveries dropped because the target crashed or restarted meanwhile.
    pub dropped_crashed: u64,
    /// Transmits to an address that is no node.
    pub unknown_destination: u64,
    /// Events held while their node was paused.
    pub held: u64,
    /// Client inputs or outputs for a stream that was closed or unknown.
    pub client_dropped: u64,
    /// Timer events skipped because a newer deadline replaced them.
    pub stale_timers: u64,
    /// Effects machines asked for.
    pub effects: u64,
    /// Effects whose node crashed before they finished (no outcome was fed).
    pub effects_lost: u64,
    /// Effects whose outcome was a failure or a timeout.
    pub effects_failed: u64,
    /// With the processing model: the longest an input waited for its node.
    pub longest_wait: core::time::Duration,
}

/// Everything a run concluded.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The replay command for this seed.
    pub replay: String,
    /// Every check's verdict, in a fixed order: timer progress, invariants, then the
    /// expectations as declared.
    pub verdicts: Vec<Verdict>,
    /// Fingerprint of every event of the run.
    pub trace_hash: u64,
    /// Virtual time reached.
    pub end: Instant,
    /// Simulator counters.
    pub stats: SimStats,
    /// Network counters.
    pub net: NetStats,
    /// Counters of the stream link model, when links were streams.
    pub streams: Option<StreamStats>,
    /// The fault parameters drawn for this seed by `(:swarm …)`, if any.
    pub swarm: Option<String>,
}

impl Report {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(Verdict::passed)
    }

    /// Every failed check, earliest first.
    pub fn failures(&self) -> Vec<Failure> {
        let mut v: Vec<Failure> = self
            .verdicts
            .iter()
            .filter_map(|v| match &v.outcome {
                Outcome::Fail(at, why) => Some(Failure {
                    check: v.check.clone(),
                    at: *at,
                    seed: self.seed,
                    message: why.clone(),
                    replay: self.replay.clone(),
                }),
                _ => None,
            })
            .collect();
        v.sort_by_key(|f| f.at);
        v
    }

    /// The earliest failure, if any.
    pub fn first_failure(&self) -> Option<Failure> {
        self.failures().into_iter().next()
    }
}

impl fmt::Display for Report {
    /// The per-seed block the CLI prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} seed {}: {} ({} events, trace hash {:016x})",
            self.scenario,
            self.seed,
            if self.passed() { "ok" } else { "FAILED" },
            self.stats.events,
            self.trace_hash
        )?;
        if let Some(s) = &self.swarm {
            writeln!(f, "  swarm: {s}")?;
        }
        let s = self.streams.clone().unwrap_or_default();
        let wait = self.stats.longest_wait;
        if self.streams.is_some() || !wait.is_zero() {
            writeln!(
                f,
                "  streams: {} retransmitted, {} dropped at a full queue, {} with a stalled \
                 connection or dial; longest wait for a busy node {wait:?}",
                s.retransmitted, s.queue_full, s.stall_dropped
            )?;
        }
        for v in &self.verdicts {
            writeln!(f, "  {v}")?;
        }
        if !self.passed() {
            writeln!(f, "  replay: {}", self.replay)?;
        }
        Ok(())
    }
}
