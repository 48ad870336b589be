//! The one driving convention every protocol machine follows (SPEC.md §1).
//!
//! A machine is a plain value. The driver (tokio, smol, the simulator, or your own loop):
//!
//! 1. feeds it with [`Machine::handle`] — a frame from a peer, bytes or open/close events
//!    from a client stream, a typed command from the embedding program, or the outcome of
//!    an effect it asked for — or with [`Machine::handle_timeout`] when the deadline it
//!    asked for has come;
//! 2. then drains [`Machine::poll_output`] until it returns `None`: frames to send to
//!    peers, bytes to write to (or close) client streams, events for the program, and
//!    effects to run, in the order the machine produced them;
//! 3. then reads [`Machine::poll_timeout`] and arranges to call `handle_timeout` at (or
//!    after) that instant.
//!
//! Time enters only through `handle*` and never goes backwards. `handle_timeout` is safe
//! to call early or twice (it does nothing). After `handle_timeout(now)` the next deadline
//! is `None` or strictly later than `now`, so a driver can never spin. Bad input from the
//! network or a client returns a typed error and leaves the machine as it was; a panic
//! means a bug in the machine.
//!
//! **Effects.** A machine that needs the outside world to *do* something — store a
//! change, run a command, add an address — emits [`Output::Effect`] with an
//! [`EffectId`] of its choosing, and later receives [`Input::EffectDone`] with the same
//! id and the outcome: a value, a typed failure, or a timeout ([`EffectError`]). The
//! driver runs effects off the machine's loop through a runner the embedding program
//! supplies, so the core never names a file, a process or a socket option. A machine
//! that needs none sets both effect types to [`NoEffect`], which has no values.

use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use thiserror::Error;

use crate::time::Instant;
use crate::wire::Frame;

/// Where a peer is reached. The core treats it as an opaque identity; adapters map it to
/// sockets and the simulator to its nodes.
pub type PeerAddr = SocketAddr;

/// A client stream (a connection to a line-protocol port), numbered by the driver.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// One of a driver's listeners, numbered by the embedding program (a flood daemon's
/// client port and data port, a group daemon's TCP port and Unix socket).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ListenerId(pub u16);

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listener {}", self.0)
    }
}

/// The far end of a client stream.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum ClientRemote {
    /// A TCP connection: the client's address, and the local address it reached.
    Tcp {
        /// The client's address.
        peer: SocketAddr,
        /// The address of this host that the client connected to.
        local: SocketAddr,
    },
    /// A Unix-domain socket: always a process on this host.
    Unix,
}

/// Where a client stream came from: which listener, and who is at the other end.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct ClientOrigin {
    /// The listener it was accepted on.
    pub listener: ListenerId,
    /// The other end.
    pub remote: ClientRemote,
}

impl ClientOrigin {
    /// A client of a Unix-domain socket listener.
    pub fn unix(listener: ListenerId) -> Self {
        ClientOrigin {
            listener,
            remote: ClientRemote::Unix,
        }
    }

    /// A TCP client at `peer` that reached `local`.
    pub fn tcp(listener: ListenerId, peer: SocketAddr, local: SocketAddr) -> Self {
        ClientOrigin {
            listener,
            remote: ClientRemote::Tcp { peer, local },
        }
    }

    /// True when the client runs on this host: a Unix socket, a loopback address, or a
    /// connection from one of this host's addresses to itself.
    pub fn is_same_host(&self) -> bool {
        match self.remote {
            ClientRemote::Unix => true,
            ClientRemote::Tcp { peer, local } => peer.ip().is_loopback() || peer.ip() == local.ip(),
        }
    }
}

/// Names one effect a machine asked for. The machine picks ids; they must be unique among
/// its effects in flight.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EffectId(pub u64);

impl fmt::Display for EffectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// An effect the machine asks its driver to run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct EffectRequest<F> {
    /// Echoed in the outcome.
    pub id: EffectId,
    /// What to do; the embedding program's runner knows how.
    pub effect: F,
    /// The longest the driver lets it run before reporting [`EffectError::TimedOut`];
    /// `None` takes the driver's default limit. Either way there is a limit.
    pub timeout: Option<Duration>,
}

/// Why an effect did not produce a value.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EffectError {
    /// The runner tried and failed; the text says why (for logs).
    #[error("{0}")]
    Failed(String),
    /// The time limit passed first. Whatever the effect did may or may not have happened.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// The driver's queue of effects waiting to run was full; nothing was done.
    #[error("too many effects waiting to run")]
    Overloaded,
    /// No runner for this kind of effect; nothing was done.
    #[error("no runner for this effect")]
    Unsupported,
}

/// The effect type of machines that need none: it has no values, so such a machine can
/// never emit [`Output::Effect`] and never receives a value in [`Input::EffectDone`].
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum NoEffect {}

/// Everything that can enter a machine, apart from the passage of time. `C` is the
/// machine's command type, `V` the value its effects produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<C, V = NoEffect> {
    /// A frame from a peer. Envelope errors were rejected by the driver; the payload is
    /// the machine's to decode.
    Frame {
        /// The sender.
        from: PeerAddr,
        /// The frame.
        frame: Frame,
    },
    /// A client stream was accepted.
    ClientOpened {
        /// The driver's number for it.
        client: ClientId,
        /// Which listener, and who is at the other end.
        origin: ClientOrigin,
    },
    /// Bytes arrived on a client stream, in order, in chunks of any size.
    ClientData(ClientId, Bytes),
    /// A client stream closed (either end). The machine forgets it and withdraws whatever
    /// the client had pending.
    ClientClosed(ClientId),
    /// A command from the embedding program.
    Command(C),
    /// The outcome of an effect the machine asked for. Exactly one arrives per request,
    /// unless the node stops first (a crash loses effects in flight).
    EffectDone {
        /// The request's id.
        id: EffectId,
        /// A value, or why there is none.
        outcome: Result<V, EffectError>,
    },
}

/// A frame for a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// The destination.
    pub to: PeerAddr,
    /// The frame to send.
    pub frame: Frame,
    /// Which of the peer link's two lanes carries it (SPEC.md §7.1).
    pub lane: Lane,
}

/// The two lanes of a link to a peer. A driver keeps them apart end to end — a separate
/// connection (so a lost segment of bulk traffic never blocks a heartbeat behind it) and
/// a separate place in its input queue (so a frame of membership is handled before client
/// work that arrived earlier) — so that the traffic that decides who is alive is never
/// queued behind the traffic it protects.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub enum Lane {
    /// Small, rare frames that liveness depends on: heartbeats, suspicions, view
    /// proposals, acknowledgements and commits, flush control.
    Control,
    /// Everything else: client messages, bulk state, floods.
    #[default]
    Data,
}

impl Lane {
    /// Both lanes, control first.
    pub const ALL: [Lane; 2] = [Lane::Control, Lane::Data];

    /// The lane's index (control 0, data 1), for per-lane tables.
    pub fn index(self) -> usize {
        match self {
            Lane::Control => 0,
            Lane::Data => 1,
        }
    }

    /// The lane's wire byte in the transport hello (SPEC.md §2.3).
    pub fn to_byte(self) -> u8 {
        self.index() as u8
    }

    /// The lane a hello's byte names, if any.
    pub fn from_byte(b: u8) -> Option<Lane> {
        match b {
            0 => Some(Lane::Control),
            1 => Some(Lane::Data),
            _ => None,
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lane::Control => "control",
            Lane::Data => "data",
        })
    }
}

/// Everything that can leave a machine. `E` is its event type, `F` its effect type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Output<E, F = NoEffect> {
    /// Send a frame to a peer. Delivery is best effort: machines never assume a frame
    /// arrives, arrives once, or arrives in order.
    Transmit(Transmit),
    /// Write bytes to a client stream.
    ToClient(ClientId, Bytes),
    /// Close a client stream once the bytes queued before this are written.
    CloseClient(ClientId),
    /// Tell the embedding program something.
    Event(E),
    /// Run an effect; its outcome comes back as [`Input::EffectDone`].
    Effect(EffectRequest<F>),
}

/// A sans-IO protocol machine. See the module docs for the calling contract.
pub trait Machine {
    /// Typed commands from the embedding program.
    type Command;
    /// Events for the embedding program.
    type Event;
    /// Why an input was refused. The machine's state is unchanged when it is returned.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Effects the machine asks its driver to run ([`NoEffect`] if none).
    type Effect;
    /// What a successful effect produces ([`NoEffect`] if the machine has no effects).
    type EffectValue;

    /// Feeds one input at time `now`.
    fn handle(&mut self, now: Instant, input: InputOf<Self>) -> Result<(), Self::Error>;

    /// Lets timers that are due at `now` fire. Calling early is a no-op.
    fn handle_timeout(&mut self, now: Instant);

    /// The next output, or `None` once drained.
    fn poll_output(&mut self) -> Option<OutputOf<Self>>;

    /// The earliest instant at which `handle_timeout` has work to do.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Checks the machine's own consistency (indexes agree with what they index, every
    /// waiting thing has its timer, counters match their collections). Machines call it
    /// after every input in debug builds ([`debug_check`]); the simulator calls it after
    /// every step. The error says what is broken.
    fn check_invariants(&self) -> Result<(), String>;
}

/// The input type of machine `M`.
pub type InputOf<M> = Input<<M as Machine>::Command, <M as Machine>::EffectValue>;
/// The output type of machine `M`.
pub type OutputOf<M> = Output<<M as Machine>::Event, <M as Machine>::Effect>;

/// Panics if `m`'s invariants do not hold — in debug builds only; release builds skip the
/// check. Machines call it at the end of `handle` and `handle_timeout`.
#[inline]
pub fn debug_check<M: Machine + ?Sized>(m: &M) {
    if cfg!(debug_assertions)
        && let Err(why) = m.check_invariants()
    {
        panic!("machine invariant violated: {why}");
    }
}

/// The ordered queue a machine pushes its outputs onto and the driver drains.
#[derive(Debug)]
pub struct Outbox<E, F = NoEffect> {
    queue: VecDeque<Output<E, F>>,
}

impl<E, F> Default for Outbox<E, F> {
    fn default() -> Self {
        Outbox {
            queue: VecDeque::new(),
        }
    }
}

impl<E, F> Outbox<E, F> {
    /// Queues a frame for `to` on the data lane.
    pub fn transmit(&mut self, to: PeerAddr, frame: Frame) {
        self.transmit_on(Lane::Data, to, frame);
    }

    /// Queues a frame for `to` on `lane`.
    pub fn transmit_on(&mut self, lane: Lane, to: PeerAddr, frame: Frame) {
        self.push_transmit(Transmit { to, frame, lane });
    }

    /// Queues a frame another machine produced, keeping its lane.
    pub fn push_transmit(&mut self, t: Transmit) {
        self.queue.push_back(Output::Transmit(t));
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

    /// Queues an effect request.
    pub fn effect(&mut self, id: EffectId, effect: F, timeout: Option<Duration>) {
        self.queue.push_back(Output::Effect(EffectRequest {
            id,
            effect,
            timeout,
        }));
    }

    /// Takes the oldest output.
    pub fn pop(&mut self) -> Option<Output<E, F>> {
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

    /// Whether `key` is armed.
    pub fn contains(&self, key: &K) -> bool {
        self.by_key.contains_key(key)
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

    /// Armed keys, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.by_key.keys()
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Checks that the two indexes agree (for `check_invariants`).
    pub fn check(&self) -> Result<(), String> {
        if self.by_key.len() != self.by_time.len() {
            return Err(format!(
                "timer indexes disagree: {} keys, {} deadlines",
                self.by_key.len(),
                self.by_time.len()
            ));
        }
        for (t, k) in &self.by_time {
            if self.by_key.get(k) != Some(t) {
                return Err("a timer deadline is not indexed by its key".to_string());
            }
        }
        Ok(())
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
        assert!(t.check().is_ok());
        assert_eq!(t.next(), Some(Instant::from_secs(1)));
        assert_eq!(t.pop_due(Instant::from_millis(500)), None);
        assert_eq!(t.pop_due(Instant::from_secs(5)), Some("b"));
        assert_eq!(t.pop_due(Instant::from_secs(5)), Some("a"));
        assert_eq!(t.pop_due(Instant::from_secs(5)), None);
        t.set("c", Instant::from_secs(9));
        assert!(t.contains(&"c"));
        t.cancel(&"c");
        assert!(t.is_empty());
        assert_eq!(t.next(), None);
    }

    /// The timer wheel's check fires when its two indexes disagree, in count or in a
    /// deadline.
    #[test]
    fn the_timer_check_fires_when_its_indexes_disagree() {
        let mut t = Timers::default();
        t.set("a", Instant::from_secs(1));
        t.set("b", Instant::from_secs(2));
        assert!(t.check().is_ok());
        let mut extra = t.clone();
        extra.by_time.insert((Instant::from_secs(3), "c"));
        let e = extra.check().unwrap_err();
        assert!(e.contains("2 keys, 3 deadlines"), "{e}");
        let mut moved = t.clone();
        moved.by_time.remove(&(Instant::from_secs(2), "b"));
        moved.by_time.insert((Instant::from_secs(5), "b"));
        let e = moved.check().unwrap_err();
        assert!(e.contains("not indexed by its key"), "{e}");
    }

    #[test]
    fn same_host_clients() {
        let l = ListenerId(1);
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(ClientOrigin::unix(l).is_same_host());
        assert!(ClientOrigin::tcp(l, a("127.0.0.1:5000"), a("127.0.0.1:2000")).is_same_host());
        assert!(ClientOrigin::tcp(l, a("10.1.1.1:5000"), a("10.1.1.1:2000")).is_same_host());
        assert!(!ClientOrigin::tcp(l, a("10.1.1.2:5000"), a("10.1.1.1:2000")).is_same_host());
    }
}
