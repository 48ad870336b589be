//! The simulated world as checkers see it: nodes, their clocks and statuses, the network,
//! and client streams.
//!
//! Invariant checks and liveness predicates get a `&World` and judge the machines against
//! the simulator's global truth (who is really up, which links really pass).

use core::fmt;
use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_core::{ClientId, Instant, PeerAddr};

use crate::clock::LocalClock;
use crate::network::Network;

/// The port a node is known by unless its protocol says otherwise
/// ([`crate::Protocol::port`]).
pub const PORT: u16 = 7000;

/// The address of node `index` (0-based) at `port`: `10.x.y.z:port` with `x.y.z` =
/// `index + 1`, so node `n1` is `10.0.0.1`.
pub fn node_addr_port(index: usize, port: u16) -> PeerAddr {
    let k = index + 1;
    PeerAddr::from(([10, (k >> 16) as u8, (k >> 8) as u8, k as u8], port))
}

/// The address of node `index` at the default [`PORT`].
pub fn node_addr(index: usize) -> PeerAddr {
    node_addr_port(index, PORT)
}

/// The node index behind `addr`, if it is one of the first `n` nodes. Every port of a
/// node's address reaches it: a node may listen on as many ports as it likes (a flood
/// daemon's client port and data port).
pub fn node_index(addr: PeerAddr, n: usize) -> Option<usize> {
    let PeerAddr::V4(a) = addr else { return None };
    let [ten, hi, mid, lo] = a.ip().octets();
    if ten != 10 {
        return None;
    }
    let k = (usize::from(hi) << 16) | (usize::from(mid) << 8) | usize::from(lo);
    (1..=n).contains(&k).then(|| k - 1)
}

/// A node's display name: `n1` for index 0.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct NodeName(pub usize);

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0 + 1)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Whether a node processes events.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Running.
    Up,
    /// Frozen: its events are held until it resumes.
    Paused,
    /// Stopped; its machine and state are gone until a restart.
    Crashed,
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode<M> {
    pub(crate) addr: PeerAddr,
    pub(crate) machine: Option<M>,
    pub(crate) status: Status,
    pub(crate) incarnation: u64,
    pub(crate) clock: LocalClock,
    /// Local time last passed to the machine.
    pub(crate) last_local: Instant,
    /// Local time last passed to `handle_timeout`.
    pub(crate) last_timeout: Instant,
    /// The local deadline a timer event is queued for, and that event's generation.
    pub(crate) armed: Option<Instant>,
    pub(crate) timer_gen: u64,
}

impl<M> SimNode<M> {
    /// The node's address.
    pub fn addr(&self) -> PeerAddr {
        self.addr
    }

    /// The machine, unless the node is crashed (or not yet started).
    pub fn machine(&self) -> Option<&M> {
        self.machine.as_ref()
    }

    /// Up, paused or crashed.
    pub fn status(&self) -> Status {
        self.status
    }

    /// True when up (running and not paused).
    pub fn is_live(&self) -> bool {
        self.status == Status::Up && self.machine.is_some()
    }

    /// Starts so far, minus one: 0 for the first life, 1 after the first restart.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The clock model.
    pub fn clock(&self) -> &LocalClock {
        &self.clock
    }

    /// The local time the machine last saw.
    pub fn last_local(&self) -> Instant {
        self.last_local
    }

    /// The local time of the machine's last `handle_timeout`: timers due by then have run.
    pub fn last_timeout(&self) -> Instant {
        self.last_timeout
    }
}

/// Why a client stream ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ClientEnd {
    /// The scenario or test closed it.
    ByClient,
    /// The machine sent `CloseClient`.
    ByMachine,
    /// Its node crashed or restarted.
    NodeCrashed,
    /// Opened on a node that was crashed.
    Refused,
}

/// What the simulator knows about one client stream.
#[derive(Clone, Debug)]
pub struct ClientRecord {
    /// The node it is connected to.
    pub node: usize,
    /// The listener it came in on.
    pub listener: flotilla_core::ListenerId,
    /// That node's incarnation when the stream opened.
    pub incarnation: u64,
    /// Bytes the machine wrote to it, in order, chunk by chunk.
    pub received: Vec<Bytes>,
    /// How it ended, if it has.
    pub ended: Option<(Instant, ClientEnd)>,
}

impl ClientRecord {
    /// Everything received, concatenated.
    pub fn received_bytes(&self) -> Vec<u8> {
        self.received
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect()
    }

    /// True while open.
    pub fn is_open(&self) -> bool {
        self.ended.is_none()
    }
}

/// The nodes, the network and the clients.
#[derive(Debug)]
pub struct World<M> {
    pub(crate) nodes: Vec<SimNode<M>>,
    pub(crate) addrs: Vec<PeerAddr>,
    pub(crate) names: Vec<String>,
    pub(crate) network: Network,
    pub(crate) clients: BTreeMap<ClientId, ClientRecord>,
    pub(crate) now: Instant,
}

impl<M> World<M> {
    /// Virtual (global) time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a world without nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i` (0-based).
    pub fn node(&self, i: usize) -> &SimNode<M> {
        &self.nodes[i]
    }

    /// All nodes, by index.
    pub fn nodes(&self) -> &[SimNode<M>] {
        &self.nodes
    }

    /// Every node's address (its identity for other nodes), by index.
    pub fn addrs(&self) -> &[PeerAddr] {
        &self.addrs
    }

    /// Node `i`'s name: the scenario's, or `n1`, `n2`… by default.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Every node's name, by index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The node a name (or `nK`) stands for.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The network model (partitions, blocks, parameters, counters).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Node `i`'s local time now (what its machine would see if it ran now).
    pub fn local_now(&self, i: usize) -> Instant {
        self.nodes[i].clock.local(self.now)
    }

    /// Every client stream opened so far.
    pub fn clients(&self) -> &BTreeMap<ClientId, ClientRecord> {
        &self.clients
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        assert_eq!(node_addr(0).to_string(), "10.0.0.1:7000");
        assert_eq!(node_addr(299).to_string(), "10.0.1.44:7000");
        for i in [0, 1, 255, 256, 70_000] {
            assert_eq!(node_index(node_addr(i), 70_001), Some(i));
        }
        assert_eq!(node_index(node_addr(3), 3), None);
        assert_eq!(node_index("10.0.0.1:2001".parse().unwrap(), 3), Some(0));
        assert_eq!(node_addr_port(1, 2001).to_string(), "10.0.0.2:2001");
        assert_eq!(node_index("[::1]:7000".parse().unwrap(), 3), None);
    }
}
