//! The ship machine: one type for the mothership (no parent) and every daughtership
//! (SPEC.md §5.3–5.6).
//!
//! A ship serves clients on a line protocol, keeps a versioned copy of the configuration
//! (the root decides every change; deltas flow down), and brokers connections: an accept
//! waits at the ship its client spoke to, which tells its parent which keys its subtree
//! holds; a connect that cannot match locally climbs until a ship whose subtree holds the
//! key (the lowest common ancestor), then descends to the holder. The holder reserves
//! the accept and sends an offer back along the recorded route; the connect's ship
//! confirms (its client gets the acceptor's address) or declines (its client is gone),
//! and the confirmation releases the acceptor's reply. Every request has a deadline and
//! ends with exactly one final reply; long waits send `100` progress lines.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use thiserror::Error;

use super::command::{BadRequest, HELP, Request, parse_request};
use super::msg::{ConfigOp, ConfigOutcome, FAMILY, MAX_DELTAS, MAX_SUBTREE, ShipMsg, Ticket};
pub use super::store::{StoreBatch, Stored};
use super::tree::{Change, ConfigError, ConfigTree, MAX_CONFIG_BYTES};
use crate::compose::Part;
use crate::line::{LineBuffer, reply};
use crate::machine::{
    ClientId, EffectError, EffectId, Input, InputOf, Machine, Outbox, Output, PeerAddr, Timers,
    debug_check,
};
use crate::rng::Rng;
use crate::time::{Clock, Instant};
use crate::wire::{DecodeError, Reader, Writer};
use snapshots::{Receiving, SnapshotCache};

/// Timing knobs. Defaults suit a LAN; the simulator shrinks them.
#[derive(Clone, Debug, PartialEq)]
pub struct ShipTimings {
    /// Child → parent Hello period while the parent answers.
    pub keepalive: Duration,
    /// Silence after which the parent is considered lost.
    pub parent_timeout: Duration,
    /// Silence after which a child is forgotten.
    pub child_timeout: Duration,
    /// Resend period of an unanswered request step.
    pub retry: Duration,
    /// Period of `100` progress lines to a waiting client.
    pub progress: Duration,
    /// First reconnect delay after the parent is lost.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Deadline of accept and connect requests that name none.
    pub default_timeout: Duration,
    /// Deadline of `set` and `claim` requests.
    pub config_timeout: Duration,
    /// An accept with less than this left is not offered to remote connects, so the
    /// confirmation has time to come back (and to be asked for again if it is lost).
    /// Should be several `retry` periods.
    pub offer_margin: Duration,
}

impl Default for ShipTimings {
    fn default() -> Self {
        ShipTimings {
            keepalive: Duration::from_millis(500),
            parent_timeout: Duration::from_secs(2),
            child_timeout: Duration::from_secs(3),
            retry: Duration::from_millis(250),
            progress: Duration::from_secs(1),
            backoff_min: Duration::from_millis(100),
            // Jittered ±50 %: a daughtership tries its parent again at least every 750 ms,
            // so it is back within a second of its parent's return.
            backoff_max: Duration::from_millis(500),
            default_timeout: DEFAULT_CONNECT_TIMEOUT,
            config_timeout: Duration::from_secs(10),
            offer_margin: Duration::from_secs(1),
        }
    }
}

/// Capacity bounds; past them requests are refused with `503`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShipLimits {
    /// Client streams.
    pub max_clients: usize,
    /// Requests in progress at this ship, routed ones included.
    pub max_requests: usize,
    /// Changes kept to catch children up without a snapshot.
    pub delta_log: usize,
    /// Longest request line.
    pub max_line: usize,
    /// Largest configuration, in bytes of its encoded form: a change past it is refused
    /// (`507`). At most [`super::tree::MAX_CONFIG_BYTES`].
    pub max_config_bytes: usize,
    /// How long a client may leave a line unfinished (bytes sent, no newline) before it
    /// is told so and closed.
    pub partial_line_timeout: Duration,
}

impl Default for ShipLimits {
    fn default() -> Self {
        ShipLimits {
            max_config_bytes: super::tree::MAX_CONFIG_BYTES,
            partial_line_timeout: Duration::from_secs(30),
            max_clients: 10_000,
            max_requests: 100_000,
            delta_log: 4096,
            max_line: 4096,
        }
    }
}

/// How a ship is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct ShipConfig {
    /// This ship's address (what its children and the simulator call it).
    pub listen: PeerAddr,
    /// The parent, or `None` for the mothership (the root).
    pub parent: Option<PeerAddr>,
    /// The configuration (read by the root; daughterships copy their parent's).
    pub tree: ConfigTree,
    /// Route unmatched connects through the hierarchy. `false` reproduces the seed's
    /// daughtership behaviour: pending connections are not shared.
    pub escalate: bool,
    /// Give every request a deadline. `false` reproduces the seed's unbounded waits.
    pub deadlines: bool,
    /// Root only: a change is acknowledged, and passed to children, only after the
    /// embedding program has stored it — the ship asks for [`ShipEffect::Store`] and
    /// waits for its outcome — so a restarted mothership loses nothing it acknowledged
    /// (restart it with `restore`).
    pub durable: bool,
    /// Root only: start from a stored copy instead of `tree` (same epoch, same version),
    /// so daughterships resume by version.
    pub restore: Option<Stored>,
    /// Timing knobs.
    pub timings: ShipTimings,
    /// Capacity bounds.
    pub limits: ShipLimits,
    /// A planted bug, for the simulator's `ship-canary` only: now and then the ship hands
    /// out a connection id it already used. Never set it otherwise.
    #[doc(hidden)]
    pub canary_reuse_conn_ids: bool,
}

/// Commands from the embedding program. A ship takes none today: everything reaches it
/// through its client port, its peers, and the outcomes of its effects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShipCommand {}

/// What a ship asks its driver to do (SPEC.md §5.3).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShipEffect {
    /// Root with `durable`: add this batch of changes (and, the first time, the copy they
    /// start from) to what is stored, durably, and succeed once it is on disk. Until then
    /// the changes it holds are neither acknowledged nor passed on. The ship asks for one
    /// store at a time (changes that arrive meanwhile go together into the next: one
    /// write for many); a batch retried after a failure or a timeout holds every change
    /// not yet confirmed, so applying it twice is harmless ([`Stored::apply`] skips what
    /// it has). A runner must apply batches in the order asked.
    Store(StoreBatch),
}

impl ShipConfig {
    /// A mothership serving `tree`.
    pub fn mothership(listen: PeerAddr, tree: ConfigTree) -> Self {
        ShipConfig {
            listen,
            parent: None,
            tree,
            escalate: true,
            deadlines: true,
            durable: false,
            restore: None,
            timings: ShipTimings::default(),
            limits: ShipLimits::default(),
            canary_reuse_conn_ids: false,
        }
    }

    /// A daughtership of `parent`.
    pub fn daughtership(listen: PeerAddr, parent: PeerAddr) -> Self {
        ShipConfig {
            parent: Some(parent),
            ..ShipConfig::mothership(listen, ConfigTree::default())
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ShipConfigError {
    /// The ship would be its own parent.
    #[error("a ship cannot be its own parent ({0})")]
    OwnParent(PeerAddr),
    /// A timing knob is zero or inconsistent.
    #[error("timing {0} is invalid")]
    Timing(&'static str),
    /// The configuration is already larger than the limit set for it, or the limit is
    /// past [`super::tree::MAX_CONFIG_BYTES`].
    #[error("the configuration is {size} bytes, more than its limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// What a ship tells its embedding program.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShipEvent {
    /// A full copy of the configuration arrived from the parent.
    Synced {
        /// Root epoch.
        epoch: u64,
        /// Version.
        version: u64,
    },
    /// Root with `durable`: a store failed or timed out; it is retried after a pause,
    /// and the changes it held wait (their clients get `504` if their deadline passes).
    StoreFailed {
        /// The highest version the store held.
        version: u64,
        /// Why it failed.
        error: String,
    },
    /// A change was applied (at the root: decided, and stored if `durable`).
    Changed {
        /// The change's version.
        version: u64,
    },
    /// The parent stopped answering, or has not answered since the ship started (said
    /// once, until it answers); the ship keeps serving what it has and keeps trying.
    ParentLost,
    /// The parent answers again after `ParentLost` (said once).
    ParentRestored,
    /// The parent refused this ship (a second root, or a cycle). Fatal for a daemon.
    Refused {
        /// Why.
        reason: String,
    },
    /// A child attached.
    ChildJoined(PeerAddr),
    /// A child went silent and was forgotten.
    ChildLost(PeerAddr),
    /// This ship matched a pair (it held the accept).
    Matched {
        /// Rendezvous key.
        key: String,
        /// Connection id.
        conn: String,
    },
}

/// Why an input was refused. State is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ShipError {
    /// A frame did not decode.
    #[error("bad ship message from {from}: {error}")]
    Decode {
        /// Sender.
        from: PeerAddr,
        /// Why.
        error: DecodeError,
    },
    /// A frame of another protocol family.
    #[error("frame of family {0:#04x} is not a ship message")]
    WrongFamily(u8),
    /// A message that only a parent or child may send, from neither.
    #[error("{kind} from {from}, which is neither parent nor child")]
    UnknownPeer {
        /// Sender.
        from: PeerAddr,
        /// Message kind.
        kind: &'static str,
    },
    /// Bytes for a client the ship does not know.
    #[error("unknown client {0}")]
    UnknownClient(ClientId),
    /// A client opened twice.
    #[error("client {0} is already open")]
    DuplicateClient(ClientId),
    /// An effect outcome the ship was not waiting for.
    #[error("no effect {0} is in flight")]
    UnknownEffect(EffectId),
}

/// Counters for operators and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShipStats {
    /// Frames sent to the parent.
    pub to_parent: u64,
    /// Frames sent to children.
    pub to_children: u64,
    /// Pairs matched with both halves at this ship.
    pub local_matches: u64,
    /// Pairs matched with the connect from elsewhere.
    pub remote_matches: u64,
    /// Requests that expired.
    pub expired: u64,
    /// Changes applied.
    pub changes_applied: u64,
    /// Snapshots installed.
    pub snapshots: u64,
    /// Snapshot pieces sent to children.
    pub snapshot_pieces: u64,
    /// Snapshots received whole that did not decode (dropped, pulled again).
    pub bad_snapshots: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Hop {
    Here,
    Parent,
    Child(PeerAddr),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Hello,
    ParentDead,
    Child(PeerAddr),
    Req(Ticket),
    Deadline(Ticket),
    Route(Ticket),
    Reserve(Ticket),
    Forget(Ticket),
    StoreRetry,
    /// A client's unfinished line has waited too long.
    PartialLine(ClientId),
}

/// Who waits for a decision at the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    /// A client of the root itself, waiting as the local request of the same ticket;
    /// `set` replies `version=N`, `claim` the node.
    Local { is_set: bool },
    /// A child that forwarded the request.
    Child(PeerAddr),
}

#[derive(Debug)]
struct Staged {
    version: u64,
    change: Change,
    ticket: Ticket,
    waiter: Waiter,
    text: String,
}

/// Root with `durable`: the store in flight, one at a time.
#[derive(Debug, Default)]
struct StoreState {
    /// The store in flight.
    inflight: Option<Inflight>,
    /// Stores that failed in a row; each doubles the pause before the next try.
    failures: u32,
    /// Effect ids handed out so far.
    next_id: u64,
    /// The store holds this epoch's copy (restored from it, or a batch with the copy
    /// succeeded); until then every batch brings the copy.
    based: bool,
    /// Refusals of daughterships' tickets not yet stored.
    refusals: Vec<(Ticket, ConfigOutcome)>,
}

#[derive(Debug, Clone, Copy)]
struct Inflight {
    id: EffectId,
    /// The highest version the batch holds.
    version: u64,
    /// How many of `refusals` it holds.
    refusals: usize,
    /// It brings the epoch's copy.
    based: bool,
}

/// Root with `durable`: what the staged changes will do to the tree once applied, so
/// that later decisions are checked against it without copying the tree.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Overlay {
    /// The newest staged value of each parameter a staged change sets.
    values: BTreeMap<(String, String), String>,
    /// Nodes a staged change claims.
    claims: BTreeSet<String>,
    /// Bytes the staged changes add to the tree, all told.
    growth: isize,
}

impl Overlay {
    fn from_staged<'a>(tree: &ConfigTree, staged: impl Iterator<Item = &'a Change>) -> Self {
        let mut o = Overlay::default();
        for c in staged {
            o.stage(tree, c);
        }
        o
    }

    /// Bytes `change` would add on top of the tree and what is staged.
    fn growth_of(&self, tree: &ConfigTree, change: &Change) -> isize {
        match change {
            Change::Set { node, key, value } => {
                match self.values.get(&(node.clone(), key.clone())) {
                    Some(old) => value.len() as isize - old.len() as isize,
                    None => tree.growth(change),
                }
            }
            Change::Claim { node, .. } if self.claims.contains(node) => 0,
            Change::Claim { .. } => tree.growth(change),
        }
    }

    fn stage(&mut self, tree: &ConfigTree, change: &Change) {
        self.growth += self.growth_of(tree, change);
        match change {
            Change::Set { node, key, value } => {
                self.values
                    .insert((node.clone(), key.clone()), value.clone());
            }
            Change::Claim { node, .. } => {
                self.claims.insert(node.clone());
            }
        }
    }
}

#[derive(Debug)]
struct ParentLink {
    addr: PeerAddr,
    up: bool,
    heard: bool,
    /// `ParentLost` was said and `ParentRestored` not yet: each is said once.
    lost_reported: bool,
    backoff: Duration,
    refused: Option<String>,
    last_pull: Option<Instant>,
}

#[derive(Debug)]
struct ChildLink {
    ship: u64,
    epoch: u64,
    version: u64,
    summary_seq: u64,
    keys: BTreeSet<String>,
    subtree: Vec<u64>,
    /// The snapshot it is pulling, and how much it holds.
    receiving: Option<(u64, u64, u64)>,
}

#[derive(Debug)]
struct ClientConn {
    lines: LineBuffer,
    pending: Option<Ticket>,
    /// Said `quit` while a request was pending: closed once it is answered.
    quitting: bool,
}

#[derive(Debug)]
struct Reservation {
    connect: Ticket,
    conn: String,
    /// The connect may take the offer until then (offers carry the time left)...
    window_end: Instant,
    /// ...and a confirmation sent by then is waited for until here (never past the
    /// accept's own deadline).
    expires: Instant,
}

#[derive(Debug)]
enum ReqKind {
    Accept {
        key: String,
        advertise: String,
        reservation: Option<Reservation>,
    },
    Connect {
        key: String,
    },
    Config {
        op: ConfigOp,
        applied: Option<(u64, String)>,
    },
}

#[derive(Debug)]
struct LocalReq {
    client: ClientId,
    deadline: Instant,
    started: Instant,
    next_progress: Instant,
    kind: ReqKind,
}

#[derive(Debug)]
struct Route {
    from: Hop,
    to: Option<Hop>,
    key: String,
    client: String,
    deadline: Instant,
    held: Option<Ticket>,
    excluded: Option<PeerAddr>,
    /// An offer came back through here: the route is fixed until it expires, so the
    /// confirmation (or a repeated offer) follows the same path.
    offered: bool,
}

/// The ship machine. See the module docs.
#[derive(Debug)]
pub struct Ship {
    cfg: ShipConfig,
    id: u64,
    clock: Clock,
    rng: Rng,
    outbox: Outbox<ShipEvent, ShipEffect>,
    timers: Timers<Timer>,
    epoch: u64,
    version: u64,
    tree: ConfigTree,
    log: VecDeque<Change>,
    log_first: u64,
    /// Root with `durable`: decided changes waiting to be stored, oldest first, and the
    /// tree with them applied (what later decisions are validated against).
    staged: VecDeque<Staged>,
    overlay: Overlay,
    store: StoreState,
    parent: Option<ParentLink>,
    children: BTreeMap<PeerAddr, ChildLink>,
    /// Snapshots encoded for children to pull.
    snapshots: Vec<SnapshotCache>,
    /// A snapshot being received from the parent.
    receiving: Option<Receiving>,
    clients: BTreeMap<ClientId, ClientConn>,
    next_seq: u64,
    next_conn: u64,
    reqs: BTreeMap<Ticket, LocalReq>,
    accepts: BTreeMap<String, Vec<Ticket>>,
    routes: BTreeMap<Ticket, Route>,
    /// Tickets of routes still looking for an accept (not yet offered or held here), by
    /// key, so an arriving accept or summary looks only at the connects it could serve;
    /// matched routes that linger for repeated offers are not in it.
    open_by_key: BTreeMap<String, BTreeSet<Ticket>>,
    config_routes: BTreeMap<Ticket, PeerAddr>,
    finished: BTreeMap<Ticket, Option<String>>,
    decided: BTreeMap<Ticket, ConfigOutcome>,
    summary_dirty: bool,
    summary_sent: BTreeSet<String>,
    summary_seq: u64,
    stats: ShipStats,
}

/// Deadline of accept and connect requests that name none (the ship's default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn ttl_ms(deadline: Instant, now: Instant) -> u64 {
    if deadline == Instant::MAX {
        return u64::MAX;
    }
    (deadline - now).as_millis().min(u128::from(u64::MAX - 1)) as u64
}

fn deadline_from_ttl(now: Instant, ttl: u64) -> Instant {
    if ttl == u64::MAX {
        Instant::MAX
    } else {
        now + Duration::from_millis(ttl)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Ship {
    /// A ship starting at `now`. Its id (also the root epoch, and the prefix of the
    /// connection ids it hands out) is drawn from `rng`, so a restart is a new identity.
    pub fn new(cfg: ShipConfig, now: Instant, mut rng: Rng) -> Result<Self, ShipConfigError> {
        if cfg.parent == Some(cfg.listen) {
            return Err(ShipConfigError::OwnParent(cfg.listen));
        }
        let t = &cfg.timings;
        for (name, d) in [
            ("keepalive", t.keepalive),
            ("retry", t.retry),
            ("progress", t.progress),
            ("backoff_min", t.backoff_min),
            ("default_timeout", t.default_timeout),
            ("config_timeout", t.config_timeout),
        ] {
            if d.is_zero() {
                return Err(ShipConfigError::Timing(name));
            }
        }
        if t.parent_timeout <= t.keepalive {
            return Err(ShipConfigError::Timing("parent_timeout"));
        }
        if t.child_timeout <= t.keepalive {
            return Err(ShipConfigError::Timing("child_timeout"));
        }
        if t.backoff_max < t.backoff_min {
            return Err(ShipConfigError::Timing("backoff_max"));
        }
        let limit = cfg
            .limits
            .max_config_bytes
            .min(super::tree::MAX_CONFIG_BYTES);
        let size = cfg.restore.as_ref().map_or(&cfg.tree, |st| &st.tree).size();
        if cfg.parent.is_none() && size > limit {
            return Err(ShipConfigError::TooLarge { size, limit });
        }
        let id = rng.next_u64() | 1;
        let mut clock = Clock::default();
        clock.advance(now);
        let mut timers = Timers::default();
        let (epoch, version, tree, parent) = match cfg.parent {
            None => match &cfg.restore {
                Some(st) => (st.epoch, st.version, st.tree.clone(), None),
                None => (id, 0, cfg.tree.clone(), None),
            },
            Some(addr) => {
                timers.set(Timer::Hello, now);
                timers.set(Timer::ParentDead, now + cfg.timings.parent_timeout);
                let link = ParentLink {
                    addr,
                    up: false,
                    heard: false,
                    lost_reported: false,
                    backoff: cfg.timings.backoff_min,
                    refused: None,
                    last_pull: None,
                };
                (0, 0, ConfigTree::default(), Some(link))
            }
        };
        let mut ship = Ship {
            id,
            clock,
            rng,
            outbox: Outbox::default(),
            timers,
            epoch,
            version,
            tree,
            log: VecDeque::new(),
            log_first: version + 1,
            staged: VecDeque::new(),
            overlay: Overlay::default(),
            store: StoreState {
                based: !cfg.durable || cfg.restore.is_some(),
                ..StoreState::default()
            },
            parent,
            children: BTreeMap::new(),
            snapshots: Vec::new(),
            receiving: None,
            clients: BTreeMap::new(),
            next_seq: 0,
            next_conn: 0,
            reqs: BTreeMap::new(),
            accepts: BTreeMap::new(),
            routes: BTreeMap::new(),
            open_by_key: BTreeMap::new(),
            config_routes: BTreeMap::new(),
            finished: BTreeMap::new(),
            decided: BTreeMap::new(),
            summary_dirty: false,
            summary_sent: BTreeSet::new(),
            summary_seq: 0,
            stats: ShipStats::default(),
            cfg,
        };
        if let Some(st) = ship
            .cfg
            .restore
            .clone()
            .filter(|_| ship.cfg.parent.is_none())
        {
            for (ticket, outcome) in st.decided {
                ship.decided.insert(ticket, outcome);
                let forget = now + ship.cfg.timings.config_timeout * 2;
                ship.timers.set(Timer::Forget(ticket), forget);
            }
        }
        Ok(ship)
    }

    // ----- getters -------------------------------------------------------------------

    /// This ship's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True for the mothership.
    pub fn is_root(&self) -> bool {
        self.cfg.parent.is_none()
    }

    /// Epoch of the configuration copy (the root's id; 0 before the first snapshot).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Version of the configuration copy.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The configuration copy.
    pub fn tree(&self) -> &ConfigTree {
        &self.tree
    }

    /// True when there is no parent or the parent answers.
    pub fn parent_up(&self) -> bool {
        self.parent.as_ref().is_none_or(|p| p.up)
    }

    /// Why the parent refused this ship, if it did.
    pub fn refused(&self) -> Option<&str> {
        self.parent.as_ref().and_then(|p| p.refused.as_deref())
    }

    /// Attached children.
    pub fn children(&self) -> impl Iterator<Item = PeerAddr> + '_ {
        self.children.keys().copied()
    }

    /// Client requests waiting for their final reply.
    pub fn pending_requests(&self) -> usize {
        self.reqs.len()
    }

    /// Connect requests routed through (or parked at) this ship.
    pub fn routes(&self) -> usize {
        self.routes.len()
    }

    /// Counters.
    pub fn stats(&self) -> &ShipStats {
        &self.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &ShipConfig {
        &self.cfg
    }

    // ----- plumbing ------------------------------------------------------------------

    fn send(&mut self, hop: Hop, msg: &ShipMsg) {
        match hop {
            Hop::Here => debug_assert!(false, "send to self"),
            Hop::Parent => {
                if let Some(p) = &self.parent {
                    self.stats.to_parent += 1;
                    self.outbox.transmit(p.addr, msg.to_frame());
                }
            }
            Hop::Child(addr) => {
                self.stats.to_children += 1;
                self.outbox.transmit(addr, msg.to_frame());
            }
        }
    }

    fn reply(&mut self, client: ClientId, code: u16, text: &str) {
        if self.clients.contains_key(&client) {
            self.outbox.to_client(client, reply(code, text));
        }
    }

    fn finish_client(&mut self, client: ClientId, code: u16, text: &str) {
        self.reply(client, code, text);
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        c.pending = None;
        if c.quitting {
            self.outbox.to_client(client, reply(200, "bye"));
            self.outbox.close_client(client);
            self.clients.remove(&client);
            self.timers.cancel(&Timer::PartialLine(client));
        }
    }

    fn hop_of(&self, from: PeerAddr) -> Option<Hop> {
        if self.parent.as_ref().is_some_and(|p| p.addr == from) {
            Some(Hop::Parent)
        } else if self.children.contains_key(&from) {
            Some(Hop::Child(from))
        } else {
            None
        }
    }

    fn new_ticket(&mut self) -> Ticket {
        self.next_seq += 1;
        Ticket {
            origin: self.id,
            seq: self.next_seq,
        }
    }

    fn deadline_for(&self, now: Instant, asked: Option<Duration>, default: Duration) -> Instant {
        if self.cfg.deadlines {
            now + asked.unwrap_or(default)
        } else {
            Instant::MAX
        }
    }

    fn busy(&self) -> bool {
        self.reqs.len() + self.routes.len() >= self.cfg.limits.max_requests
    }
}

fn config_error_code(e: &ConfigError) -> u16 {
    match e {
        ConfigError::NoSuchPath(_) => 404,
        ConfigError::HostNotSettable(_) => 403,
        ConfigError::NoFreeNode(_) => 409,
        ConfigError::Limit(_) | ConfigError::TooLarge { .. } => 507,
        _ => 400,
    }
}

fn msg_name(m: &ShipMsg) -> &'static str {
    match m {
        ShipMsg::Hello { .. } => "Hello",
        ShipMsg::Beat { .. } => "Beat",
        ShipMsg::SnapshotChunk { .. } => "SnapshotChunk",
        ShipMsg::Deltas { .. } => "Deltas",
        ShipMsg::Refuse { .. } => "Refuse",
        ShipMsg::Summary { .. } => "Summary",
        ShipMsg::ConfigReq { .. } => "ConfigReq",
        ShipMsg::ConfigResp { .. } => "ConfigResp",
        ShipMsg::Connect { .. } => "Connect",
        ShipMsg::Offer { .. } => "Offer",
        ShipMsg::Confirm { .. } => "Confirm",
        ShipMsg::Decline { .. } => "Decline",
        ShipMsg::Cancel { .. } => "Cancel",
        ShipMsg::NotHere { .. } => "NotHere",
    }
}

impl Machine for Ship {
    type Command = ShipCommand;
    type Event = ShipEvent;
    type Error = ShipError;
    type Effect = ShipEffect;
    type EffectValue = ();

    fn handle(&mut self, now: Instant, input: InputOf<Self>) -> Result<(), ShipError> {
        let result = self.on_input(now, input);
        self.flush_summary();
        debug_check(self);
        result
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.advance(now);
        while let Some(t) = self.timers.pop_due(now) {
            self.on_timer(now, t);
        }
        self.flush_summary();
        debug_assert!(self.poll_timeout().is_none_or(|t| t > now));
        debug_check(self);
    }

    fn poll_output(&mut self) -> Option<Output<ShipEvent, ShipEffect>> {
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.check_consistency()
    }
}

impl Part for Ship {
    fn owns_family(&self, family: u8) -> bool {
        family == FAMILY
    }
}

impl Ship {
    fn on_input(&mut self, now: Instant, input: InputOf<Self>) -> Result<(), ShipError> {
        let now = self.clock.advance(now);
        match input {
            Input::Frame { from, frame } => {
                if frame.kind.family() != FAMILY {
                    return Err(ShipError::WrongFamily(frame.kind.family()));
                }
                let msg =
                    ShipMsg::decode(&frame).map_err(|error| ShipError::Decode { from, error })?;
                match self.hop_of(from) {
                    // A Hello always comes from a would-be child; from our own parent it
                    // means a cycle, which on_hello refuses.
                    Some(Hop::Parent) if !matches!(msg, ShipMsg::Hello { .. }) => {
                        self.on_parent_msg(now, msg);
                        Ok(())
                    }
                    _ => self.on_child_msg(now, from, msg),
                }
            }
            Input::ClientOpened { client: c, .. } => {
                if self.clients.contains_key(&c) {
                    return Err(ShipError::DuplicateClient(c));
                }
                if self.clients.len() >= self.cfg.limits.max_clients {
                    self.outbox.to_client(c, reply(503, "too many clients"));
                    self.outbox.close_client(c);
                    return Ok(());
                }
                self.clients.insert(
                    c,
                    ClientConn {
                        lines: LineBuffer::new(self.cfg.limits.max_line),
                        pending: None,
                        quitting: false,
                    },
                );
                Ok(())
            }
            Input::ClientData(c, data) => {
                if !self.clients.contains_key(&c) {
                    return Err(ShipError::UnknownClient(c));
                }
                self.on_client_data(now, c, &data);
                Ok(())
            }
            Input::ClientClosed(c) => {
                self.drop_client(now, c);
                Ok(())
            }
            Input::Command(c) => match c {},
            Input::EffectDone { id, outcome } => self.on_store_done(now, id, outcome),
        }
    }
}

/// Encodes a line for a ship client port (used by tests and the simulator).
pub fn request_line(line: &str) -> Bytes {
    Bytes::from(format!("{line}\n"))
}

mod broker;
mod checks;
mod decisions;
mod hierarchy;
mod requests;
mod snapshots;
mod timers;

#[cfg(test)]
mod tests;
