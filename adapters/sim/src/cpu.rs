//! The processing model: a node is one event loop that takes time per input.
//!
//! With no `(:cpu ...)` form a node handles every input the instant it arrives, as
//! before. With one, each input costs its kind's time plus a time per output it
//! produced (a notice written to a client, a frame sent), and inputs that arrive while
//! the node is busy wait for it. A node flooded with client work therefore runs its
//! timers late and reads its peers late, as a real daemon does. Which waiting input goes
//! next follows the drivers' own policy ([`flotilla_core::turns`]): overdue timers first,
//! then the control lane, then the other sources in turn. `(:order fifo)` serves inputs
//! in arrival order instead — one queue for everything, as the drivers did before they
//! had lanes — so a scenario can show what that did.

use core::time::Duration;
use std::collections::VecDeque;

use flotilla_core::Instant;
use flotilla_core::turns::{Source, Turns};

/// How waiting inputs are served.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum InputOrder {
    /// The drivers' policy: control lane first, then the other sources in turn.
    #[default]
    Turns,
    /// Arrival order, whatever the source.
    Fifo,
}

/// Costs of one node's inputs (`(:cpu ...)` in a scenario).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct CpuParams {
    /// Handling one frame from a peer.
    pub frame: Duration,
    /// Handling one client open, chunk of bytes or close.
    pub client: Duration,
    /// Handling a command or an effect's outcome.
    pub local: Duration,
    /// Handling a timer.
    pub timer: Duration,
    /// Each output the input produced.
    pub output: Duration,
    /// Which waiting input goes next.
    pub order: InputOrder,
}

impl CpuParams {
    /// The cost of an input from `source` (`None`: a timer) that produced `outputs`.
    pub fn cost(&self, source: Option<Source>, outputs: u64) -> Duration {
        let base = match source {
            None => self.timer,
            Some(Source::Control | Source::Peers) => self.frame,
            Some(Source::Clients) => self.client,
            Some(Source::Local) => self.local,
        };
        base + self.output * u32::try_from(outputs).unwrap_or(u32::MAX)
    }
}

/// One node's loop: when it is free, and what waits for it.
#[derive(Debug)]
pub struct NodeCpu<E> {
    /// The node is busy until then.
    pub busy_until: Instant,
    /// A wake-up is queued for `busy_until`.
    pub wake_queued: bool,
    /// The timer came due while the node was busy (its generation).
    pub timer_due: Option<u64>,
    queues: [VecDeque<(u64, Instant, E)>; 4],
    arrivals: u64,
    turns: Turns,
}

impl<E> Default for NodeCpu<E> {
    fn default() -> Self {
        NodeCpu {
            busy_until: Instant::ZERO,
            wake_queued: false,
            timer_due: None,
            queues: Default::default(),
            arrivals: 0,
            turns: Turns::new(),
        }
    }
}

fn slot(s: Source) -> usize {
    match s {
        Source::Control => 0,
        Source::Peers => 1,
        Source::Clients => 2,
        Source::Local => 3,
    }
}

const SOURCES: [Source; 4] = [
    Source::Control,
    Source::Peers,
    Source::Clients,
    Source::Local,
];

impl<E> NodeCpu<E> {
    /// True when an input arriving at `now` must wait.
    pub fn must_wait(&self, now: Instant) -> bool {
        self.busy_until > now || self.waiting() > 0
    }

    /// Queues an input from `source` that arrived at `now`.
    pub fn wait(&mut self, source: Source, now: Instant, e: E) {
        self.arrivals += 1;
        self.queues[slot(source)].push_back((self.arrivals, now, e));
    }

    /// Inputs waiting.
    pub fn waiting(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// The next waiting input by `order`, with its arrival time.
    pub fn next(&mut self, order: InputOrder) -> Option<(Source, Instant, E)> {
        let source = match order {
            InputOrder::Turns => {
                let q = &self.queues;
                self.turns.next(|s| !q[slot(s)].is_empty())?
            }
            InputOrder::Fifo => *SOURCES
                .iter()
                .filter(|s| !self.queues[slot(**s)].is_empty())
                .min_by_key(|s| self.queues[slot(**s)].front().map(|(k, _, _)| *k))?,
        };
        let (_, at, e) = self.queues[slot(source)].pop_front()?;
        Some((source, at, e))
    }

    /// Forgets everything waiting (the node crashed).
    pub fn clear(&mut self, now: Instant) {
        for q in &mut self.queues {
            q.clear();
        }
        self.busy_until = now;
        self.timer_due = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_serve_control_first_fifo_serves_arrival_order() {
        let t = Instant::ZERO;
        let mut c: NodeCpu<&str> = NodeCpu::default();
        c.wait(Source::Clients, t, "c1");
        c.wait(Source::Clients, t, "c2");
        c.wait(Source::Control, t, "hb");
        c.wait(Source::Peers, t, "p1");
        assert!(c.must_wait(t));
        assert_eq!(c.next(InputOrder::Turns), Some((Source::Control, t, "hb")));
        assert_eq!(c.next(InputOrder::Turns), Some((Source::Peers, t, "p1")));
        assert_eq!(c.next(InputOrder::Turns), Some((Source::Clients, t, "c1")));
        let mut f: NodeCpu<&str> = NodeCpu::default();
        f.wait(Source::Clients, t, "c1");
        f.wait(Source::Control, t, "hb");
        assert_eq!(f.next(InputOrder::Fifo), Some((Source::Clients, t, "c1")));
        assert_eq!(f.next(InputOrder::Fifo), Some((Source::Control, t, "hb")));
        assert_eq!(f.next(InputOrder::Fifo), None);
        assert!(!f.must_wait(t));
    }

    #[test]
    fn cost_adds_outputs() {
        let p = CpuParams {
            client: Duration::from_micros(10),
            output: Duration::from_micros(2),
            ..CpuParams::default()
        };
        assert_eq!(p.cost(Some(Source::Clients), 5), Duration::from_micros(20));
        assert_eq!(p.cost(None, 0), Duration::ZERO);
    }
}
