//! Effects: what a machine asks the outside world to do, run off its loop.
//!
//! The embedding program supplies an [`EffectRunner`] — the code that writes a file, runs
//! a command or adds an address — and the driver runs at most `effect_concurrency` of them
//! at once, each under a time limit, feeding every outcome back to the machine as
//! `Input::EffectDone`. A runner that fails returns the failure; one that outlives its
//! limit is dropped and reported as `TimedOut`; one that panics is reported as `Failed`.
//! The machine hears exactly one outcome per request while the node runs.

use core::future::Future;
use std::collections::VecDeque;

use flotilla_core::{EffectError, EffectRequest};

/// Runs a machine's effects. `F` is the machine's effect type, `V` what a success
/// produces.
///
/// Closures `Fn(F) -> impl Future<Output = Result<V, EffectError>>` are runners.
pub trait EffectRunner<F, V>: Send + Sync + 'static {
    /// Starts `effect`. The future runs on its own task, off the machine's loop.
    fn run(&self, effect: F) -> impl Future<Output = Result<V, EffectError>> + Send + 'static;
}

impl<F, V, Fut, C> EffectRunner<F, V> for C
where
    C: Fn(F) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<V, EffectError>> + Send + 'static,
{
    fn run(&self, effect: F) -> impl Future<Output = Result<V, EffectError>> + Send + 'static {
        self(effect)
    }
}

/// The runner used by `Driver::start`: it runs nothing, answering every effect
/// `Unsupported` at once. Machines without effects never call it; a machine with effects
/// started this way hears a clear refusal for each.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRunner;

impl<F: Send + 'static, V: Send + 'static> EffectRunner<F, V> for NoRunner {
    #[allow(clippy::manual_async_fn)]
    fn run(&self, effect: F) -> impl Future<Output = Result<V, EffectError>> + Send + 'static {
        drop(effect);
        async move { Err(EffectError::Unsupported) }
    }
}

/// Effects waiting for a free slot, and how many run.
#[derive(Debug)]
pub(crate) struct EffectQueue<F> {
    running: usize,
    concurrency: usize,
    capacity: usize,
    waiting: VecDeque<EffectRequest<F>>,
}

/// What to do with an effect the machine just asked for.
pub(crate) enum Admit<F> {
    /// Start it now.
    Start(EffectRequest<F>),
    /// It waits for a slot.
    Queued,
    /// The queue is full: answer `Overloaded` at once.
    Refuse(EffectRequest<F>),
}

impl<F> EffectQueue<F> {
    pub(crate) fn new(concurrency: usize, capacity: usize) -> Self {
        EffectQueue {
            running: 0,
            concurrency: concurrency.max(1),
            capacity,
            waiting: VecDeque::new(),
        }
    }

    pub(crate) fn admit(&mut self, req: EffectRequest<F>) -> Admit<F> {
        if self.running < self.concurrency {
            self.running += 1;
            Admit::Start(req)
        } else if self.waiting.len() < self.capacity {
            self.waiting.push_back(req);
            Admit::Queued
        } else {
            Admit::Refuse(req)
        }
    }

    /// One effect finished; the next waiting one, if any, takes its slot.
    pub(crate) fn finished(&mut self) -> Option<EffectRequest<F>> {
        debug_assert!(self.running > 0, "an effect finished that never started");
        match self.waiting.pop_front() {
            Some(next) => Some(next),
            None => {
                self.running = self.running.saturating_sub(1);
                None
            }
        }
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.concurrency
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::EffectId;

    fn req(i: u64) -> EffectRequest<u64> {
        EffectRequest {
            id: EffectId(i),
            effect: i,
            timeout: None,
        }
    }

    #[test]
    fn bounded_concurrency_then_queue_then_refusal() {
        let mut q = EffectQueue::new(2, 1);
        assert!(matches!(q.admit(req(1)), Admit::Start(_)));
        assert!(matches!(q.admit(req(2)), Admit::Start(_)));
        assert!(matches!(q.admit(req(3)), Admit::Queued));
        assert!(matches!(q.admit(req(4)), Admit::Refuse(r) if r.id == EffectId(4)));
        // A finished effect hands its slot to the oldest waiting one.
        assert_eq!(q.finished().map(|r| r.id), Some(EffectId(3)));
        assert_eq!(q.finished().map(|r| r.id), None);
        assert_eq!(q.finished().map(|r| r.id), None);
        assert!(matches!(q.admit(req(5)), Admit::Start(_)));
    }
}
