//! The one driving convention every protocol machine follows (SPEC.md §1).
//!
//! A machine is a plain value. The driver (tokio, smol, the simulator, or your own loop):
//!
//! 1. feeds it with [`Machine::handle`] — a frame from a peer, bytes or open/close events
//!    from a client stream, or a typed command from the embedding program — or with
//!    [`Machine::handle_timeout`] when the deadline it asked for has come;
//! 2. then drains [`Machine::poll_output`] until it returns `None`: frames to send to
//!    peers, bytes to write to (or close) client streams, and events for the program, in
//!    the order the machine produced them;
//! 3. then reads [`Machine::poll_timeout`] and arranges to call `handle_timeout` at (or
//!    after) that instant.
//!
//! Time enters only through `handle*` and never goes backwards. `handle_timeout` is safe
//! to call early or twice (it does nothing). After `handle_timeout(now)` the next deadline
//! is `None` or strictly later than `now`, so a driver can never spin. Bad input from the
//! network or a client returns a typed error and leaves the machine as it was; a panic
//! means a bug in the machine.

use core::fmt;
use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::time::Instant;
use crate::wire::Frame;

/// Where a peer is reached. The core treats it as an opaque identity; adapters map it to
/// sockets and the simulator to its nodes.
pub type PeerAddr = SocketAddr;

/// A client stream (a TCP connection to a line-protocol port), numbered by the driver.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Everything that can enter a machine, apart from the passage of time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<C> {
    /// A frame from a peer. Envelope errors were rejected by the driver; the payload is
    /// the machine's to decode.
    Frame {
        /// The sender.
        from: PeerAddr,
        /// The frame.
        frame: Frame,
    },
    /// A client stream was accepted.
    ClientOpened(ClientId),
    /// Bytes arrived on a client stream, in order, in chunks of any size.
    ClientData(ClientId, Bytes),
    /// A client stream closed (either end). The machine forgets it and withdraws whatever
    /// the client had pending.
    ClientClosed(ClientId),
    /// A command from the embedding program.
    Command(C),
}

/// A frame for a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// The destination.
    pub to: PeerAddr,
    /// The frame to send.
    pub frame: Frame,
}

/// Everything that can leave a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Output<E> {
    /// Send a frame to a peer. Delivery is best effort: machines never assume a frame
    /// arrives, arrives once, or arrives in order.
    Transmit(Transmit),
    /// Write bytes to a client stream.
    ToClient(ClientId, Bytes),
    /// Close a client stream once the bytes queued before this are written.
    CloseClient(ClientId),
    /// Tell the embedding program something.
    Event(E),
}

/// A sans-IO protocol machine. See the module docs for the calling contract.
pub trait Machine {
    /// Typed commands from the embedding program.
    type Command;
    /// Events for the embedding program.
    type Event;
    /// Why an input was refused. The machine's state is unchanged when it is returned.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Feeds one input at time `now`.
    fn handle(&mut self, now: Instant, input: Input<Self::Command>) -> Result<(), Self::Error>;

    /// Lets timers that are due at `now` fire. Calling early is a no-op.
    fn handle_timeout(&mut self, now: Instant);

    /// The next output, or `None` once drained.
    fn poll_output(&mut self) -> Option<Output<Self::Event>>;

    /// The earliest instant at which `handle_timeout` has work to do.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// The ordered queue a machine pushes its outputs onto and the driver drains.
#[derive(Debug)]
pub struct Outbox<E> {
    queue: VecDeque<Output<E>>,
}

impl<E> Default for Outbox<E> {
    fn default() -> Self {
        Outbox {
            queue: VecDeque::new(),
        }
    }
}

impl<E> Outbox<E> {
    /// Queues a frame for `to`.
    pub fn transmit(&mut self, to: PeerAddr, frame: Frame) {
        self.queue
            .push_back(Output::Transmit(Transmit { to, frame }));
    }

    /// Queues bytes for a client.
    pub fn to_client(&mut self, client: ClientId, data: Bytes) {
        self.queue.push_back(Output::ToClient(client, data));
    }

    /// Queues a client close.
    pub fn close_client(&mut self, client: ClientId) {
        self.queue.push_back(Output::CloseClient(client));
    }

    /// Queues an event.
    pub fn event(&mut self, e: E) {
        self.queue.push_back(Output::Event(e));
    }

    /// Takes the oldest output.
    pub fn pop(&mut self) -> Option<Output<E>> {
        self.queue.pop_front()
    }

    /// Outputs waiting to be drained.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when drained.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// A machine's timers: one deadline per key, earliest first.
///
/// Keys name what the timer is for (a per-machine enum, possibly carrying a peer or a
/// request id), so re-arming replaces the old deadline and a stale firing cannot happen.
#[derive(Debug, Clone)]
pub struct Timers<K: Ord + Clone> {
    by_key: BTreeMap<K, Instant>,
    by_time: BTreeSet<(Instant, K)>,
}

impl<K: Ord + Clone> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            by_key: BTreeMap::new(),
            by_time: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> Timers<K> {
    /// Arms (or re-arms) `key` for `at`.
    pub fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// Disarms `key`.
    pub fn cancel(&mut self, key: &K) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_time.remove(&(old, key.clone()));
        }
    }

    /// When `key` fires, if armed.
    pub fn get(&self, key: &K) -> Option<Instant> {
        self.by_key.get(key).copied()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// Disarms and returns the earliest key due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (t, _) = self.by_time.first()?;
        if *t > now {
            return None;
        }
        let (_, key) = self.by_time.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order_and_rearm_replaces() {
        let mut t = Timers::default();
        t.set("a", Instant::from_secs(3));
        t.set("b", Instant::from_secs(1));
        t.set("a", Instant::from_secs(2));
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(Instant::from_secs(1)));
        assert_eq!(t.pop_due(Instant::from_millis(500)), None);
        assert_eq!(t.pop_due(Instant::from_secs(5)), Some("b"));
        assert_eq!(t.pop_due(Instant::from_secs(5)), Some("a"));
        assert_eq!(t.pop_due(Instant::from_secs(5)), None);
        t.set("c", Instant::from_secs(9));
        t.cancel(&"c");
        assert!(t.is_empty());
        assert_eq!(t.next(), None);
    }
}
