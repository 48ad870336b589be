//! How a driver is set up: its peer transport, its listeners, and every bound.

use core::net::SocketAddr;
use core::time::Duration;
use std::path::PathBuf;

use bytes::Bytes;
use flotilla_core::ListenerId;
use flotilla_core::wire::Limits;

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address; port 0 picks a free port.
    Tcp(SocketAddr),
    /// A Unix-domain socket path. A stale socket file (nobody answers on it) is replaced;
    /// one that a live process answers on is an "address in use" error. The file is
    /// removed when the node shuts down.
    Unix(PathBuf),
}

impl core::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What arrives on a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carries {
    /// Frames from other nodes (each connection starts with the transport hello).
    Peers,
    /// Line-protocol clients.
    Clients,
    /// Both, told apart by each connection's first byte (SPEC.md §2.1).
    Both,
}

/// One listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The embedding program's number for it; clients carry it in `ClientOpened`.
    pub id: ListenerId,
    /// Where.
    pub addr: ListenAddr,
    /// What.
    pub carries: Carries,
}

/// How peers reach this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerTransport {
    /// One datagram carries one frame. The bound address is the node's identity.
    Udp {
        /// Address to bind; port 0 picks a free port.
        bind: SocketAddr,
    },
    /// Frames follow each other on TCP streams. The node's identity (announced in the
    /// hello of every connection it dials) is the bound address of its first TCP
    /// listener that carries peers, so bind an address peers can dial, not `0.0.0.0`.
    Tcp,
    /// No peers: a server of clients only.
    None,
}

/// Everything a driver needs besides the machine.
#[derive(Clone, Debug, PartialEq)]
pub struct DriverConfig {
    /// The peer transport.
    pub peers: PeerTransport,
    /// The listeners, in the order they are bound.
    pub listeners: Vec<Listener>,
    /// Bounds applied while decoding frames.
    pub limits: Limits,
    /// Commands the embedding program may queue before `command` waits.
    pub command_capacity: usize,
    /// Events queued for the embedding program before the driver waits for it to read.
    pub event_capacity: usize,
    /// Inputs queued for the machine before readers wait, per queue: client input, and
    /// frames from peers on each lane.
    pub inbound_capacity: usize,
    /// Frames queued per TCP peer (also while dialing); beyond it frames are dropped.
    pub peer_queue: usize,
    /// Writes queued per client; a client that lets it fill is closed as too slow.
    pub client_queue: usize,
    /// Bytes queued per client and not yet taken by its socket; a client that lets more
    /// pile up is closed as too slow (one write always goes to an empty queue).
    pub client_bytes: usize,
    /// Client connections open at once; one more is answered with `refusal` and closed.
    pub max_clients: usize,
    /// What a client refused at `max_clients` reads before its connection closes.
    pub refusal: Bytes,
    /// What a client closed for being too slow (its write queue full) reads, if it can
    /// take it within ten seconds, before its connection closes; empty: nothing.
    pub slow_notice: Bytes,
    /// Longest wait for a TCP dial, or for a peer's hello after its first byte.
    pub connect_timeout: Duration,
    /// How long a control-lane connection (or dial) may make no progress before it is
    /// closed, its queued frames dropped (counted in `frames_dropped`) and the next frame
    /// dials afresh (SPEC.md §7.1). Without it, frames written across a partition wait
    /// for TCP's backed-off retransmission (0.2, 0.6, 1.4, 3.0, 6.2 s after the cut) and
    /// a dial for SYN retries (1, 3, 7 s), so nothing crosses for seconds after a heal.
    /// 500 ms: five default membership heartbeat periods (100 ms), above
    /// `suspect_after` (400 ms), so membership has suspected a peer before its
    /// connection is given up on, and a frame lost and retransmitted once (200 ms) does
    /// not trip it.
    pub control_stall: Duration,
    /// How long bytes written to a data-lane connection may go unacknowledged by the
    /// peer's TCP before the kernel gives the connection up (`TCP_USER_TIMEOUT`), its
    /// queued frames are dropped (counted) and the next frame dials afresh (SPEC.md
    /// §7.1). Without it a data connection that had frames in flight when a partition
    /// began resumes only at its backed-off retransmission, up to 3 s after a 3 s
    /// partition heals, and a flush waits for it. 1 s: a segment must be lost on three
    /// tries in a row to trip it on a sparse connection (0.2 + 0.4 + 0.8 s), which the
    /// machines' own repeats then recover, as after any dropped frame.
    pub data_stall: Duration,
    /// Effects running at once; more wait in order.
    pub effect_concurrency: usize,
    /// Effects waiting to run; one more fails at once with `EffectError::Overloaded`.
    pub effect_queue: usize,
    /// Time limit of an effect whose request names none.
    pub effect_timeout: Duration,
}

impl DriverConfig {
    /// Defaults around `peers`, with no listener.
    pub fn new(peers: PeerTransport) -> Self {
        DriverConfig {
            peers,
            listeners: Vec::new(),
            limits: Limits::default(),
            command_capacity: 64,
            event_capacity: 256,
            inbound_capacity: 1024,
            peer_queue: 256,
            client_queue: 256,
            client_bytes: 16 * 1024 * 1024,
            max_clients: 100_000,
            refusal: Bytes::from_static(b"503 too many connections: try again later\n"),
            slow_notice: Bytes::new(),
            connect_timeout: Duration::from_secs(5),
            control_stall: Duration::from_millis(500),
            data_stall: Duration::from_secs(1),
            effect_concurrency: 16,
            effect_queue: 1024,
            effect_timeout: Duration::from_secs(30),
        }
    }

    /// Peers over UDP on `bind`.
    pub fn udp(bind: SocketAddr) -> Self {
        Self::new(PeerTransport::Udp { bind })
    }

    /// Peers, and clients told apart by their first byte, over TCP on `listen`
    /// (listener 0).
    pub fn tcp(listen: SocketAddr) -> Self {
        Self::new(PeerTransport::Tcp).with_listener(
            ListenerId(0),
            ListenAddr::Tcp(listen),
            Carries::Both,
        )
    }

    /// Adds a listener.
    pub fn with_listener(mut self, id: ListenerId, addr: ListenAddr, carries: Carries) -> Self {
        self.listeners.push(Listener { id, addr, carries });
        self
    }

    /// Adds a TCP port for clients only, as listener 1.
    pub fn with_client_listen(self, addr: SocketAddr) -> Self {
        self.with_listener(ListenerId(1), ListenAddr::Tcp(addr), Carries::Clients)
    }

    /// Checks what binding cannot: listener ids are distinct, TCP peers have a TCP
    /// listener that carries them.
    pub fn validate(&self) -> Result<(), String> {
        let mut ids: Vec<ListenerId> = self.listeners.iter().map(|l| l.id).collect();
        ids.sort();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("two listeners share an id".to_string());
        }
        if self.peers == PeerTransport::Tcp
            && !self
                .listeners
                .iter()
                .any(|l| matches!(l.addr, ListenAddr::Tcp(_)) && l.carries != Carries::Clients)
        {
            return Err("peers over TCP need a TCP listener that carries peers".to_string());
        }
        Ok(())
    }
}

/// The addresses a driver actually bound (port 0 resolved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAddrs {
    /// The node's identity for other nodes, if it has peers.
    pub peer: Option<SocketAddr>,
    /// Every listener, by id, as bound.
    pub listeners: Vec<(ListenerId, ListenAddr)>,
}

impl LocalAddrs {
    /// Where listener `id` is bound.
    pub fn listener(&self, id: ListenerId) -> Option<&ListenAddr> {
        self.listeners
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| a)
    }

    /// The TCP address of listener `id`, if it is a TCP listener.
    pub fn tcp(&self, id: ListenerId) -> Option<SocketAddr> {
        match self.listener(id)? {
            ListenAddr::Tcp(a) => Some(*a),
            ListenAddr::Unix(_) => None,
        }
    }

    /// The node's identity; panics for a node without peers (a bug in the caller).
    pub fn peer(&self) -> SocketAddr {
        self.peer.expect("this node has no peer transport")
    }

    /// The client-only TCP port added by [`DriverConfig::with_client_listen`].
    pub fn client(&self) -> Option<SocketAddr> {
        self.tcp(ListenerId(1))
    }
}
