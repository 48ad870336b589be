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
use super::tree::{Change, ConfigError, ConfigTree};
use crate::line::{LineBuffer, reply};
use crate::machine::{ClientId, Input, Machine, Outbox, Output, PeerAddr, Timers};
use crate::rng::Rng;
use crate::time::{Clock, Instant};
use crate::wire::{DecodeError, Reader, Writer};

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
            backoff_max: Duration::from_secs(5),
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
}

impl Default for ShipLimits {
    fn default() -> Self {
        ShipLimits {
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
    /// embedding program has stored it — the ship emits [`ShipEvent::Persist`] and waits
    /// for [`ShipCommand::Persisted`] — so a restarted mothership loses nothing it
    /// acknowledged (restart it with `restore`).
    pub durable: bool,
    /// Root only: start from a stored copy instead of `tree` (same epoch, same version),
    /// so daughterships resume by version.
    pub restore: Option<Stored>,
    /// Timing knobs.
    pub timings: ShipTimings,
    /// Capacity bounds.
    pub limits: ShipLimits,
}

/// A stored configuration copy: what [`ShipEvent::Persist`] asks to keep and
/// [`ShipConfig::restore`] starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Root epoch.
    pub epoch: u64,
    /// Version.
    pub version: u64,
    /// The whole tree at that version.
    pub tree: ConfigTree,
    /// Recent decisions on requests from daughterships, so that a request retried across
    /// a restart of the mothership is answered, not applied twice.
    pub decided: Vec<(Ticket, ConfigOutcome)>,
}

/// First bytes of a stored copy ("flotilla ship state", format 1).
const STORED_MAGIC: &[u8; 8] = b"FLSHIP\x00\x01";

impl Stored {
    /// The stored copy as bytes for a state file.
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new();
        for b in STORED_MAGIC {
            w.u8(*b);
        }
        w.u64(self.epoch).u64(self.version);
        self.tree.encode(&mut w);
        w.count(self.decided.len());
        for (t, o) in &self.decided {
            w.u64(t.origin).u64(t.seq);
            match o {
                ConfigOutcome::Applied { version, text } => w.u8(1).u64(*version).str(text),
                ConfigOutcome::Refused { code, text } => w.u8(2).u16(*code).str(text),
            };
        }
        w.finish()
    }

    /// Reads bytes written by [`Stored::encode`].
    pub fn decode(bytes: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        for (i, want) in STORED_MAGIC.iter().enumerate() {
            let got = r.u8()?;
            if got != *want {
                return Err(DecodeError::InvalidValue {
                    field: "state file header",
                    value: i as u64,
                });
            }
        }
        let epoch = r.u64()?;
        let version = r.u64()?;
        let tree = ConfigTree::decode(&mut r)?;
        let n = r.count("decisions", 1 << 20, 19)?;
        let mut decided = Vec::with_capacity(n);
        for _ in 0..n {
            let ticket = Ticket {
                origin: r.u64()?,
                seq: r.u64()?,
            };
            let outcome = match r.u8()? {
                1 => ConfigOutcome::Applied {
                    version: r.u64()?,
                    text: r.str("text", super::tree::MAX_TEXT)?,
                },
                2 => ConfigOutcome::Refused {
                    code: r.u16()?,
                    text: r.str("text", super::tree::MAX_TEXT)?,
                },
                v => {
                    return Err(DecodeError::InvalidValue {
                        field: "decision",
                        value: u64::from(v),
                    });
                }
            };
            decided.push((ticket, outcome));
        }
        r.finish()?;
        Ok(Stored {
            epoch,
            version,
            tree,
            decided,
        })
    }
}

/// Commands from the embedding program.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShipCommand {
    /// Everything up to `version` asked for by [`ShipEvent::Persist`] is stored.
    Persisted {
        /// The highest version stored.
        version: u64,
    },
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
    /// Root with `durable`: store this copy (it includes every change up to `version`),
    /// then send [`ShipCommand::Persisted`]. Until then the changes are neither
    /// acknowledged nor passed on.
    Persist(Stored),
    /// A change was applied (at the root: decided, and stored if `durable`).
    Changed {
        /// The change's version.
        version: u64,
    },
    /// The parent stopped answering; the ship keeps serving what it has.
    ParentLost,
    /// The parent answers again.
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
}

/// Who waits for a decision at the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    /// A client of the root itself; `set` replies `version=N`, `claim` the node.
    Local { client: ClientId, is_set: bool },
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

#[derive(Debug)]
struct ParentLink {
    addr: PeerAddr,
    up: bool,
    heard: bool,
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
}

#[derive(Debug)]
struct ClientConn {
    lines: LineBuffer,
    pending: Option<Ticket>,
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
    outbox: Outbox<ShipEvent>,
    timers: Timers<Timer>,
    epoch: u64,
    version: u64,
    tree: ConfigTree,
    log: VecDeque<Change>,
    log_first: u64,
    /// Root with `durable`: decided changes waiting to be stored, oldest first, and the
    /// tree with them applied (what later decisions are validated against).
    staged: VecDeque<Staged>,
    staged_tree: Option<ConfigTree>,
    parent: Option<ParentLink>,
    children: BTreeMap<PeerAddr, ChildLink>,
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
            staged_tree: None,
            parent,
            children: BTreeMap::new(),
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
        if let Some(c) = self.clients.get_mut(&client) {
            c.pending = None;
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

    // ----- client side ---------------------------------------------------------------

    fn on_client_data(&mut self, now: Instant, client: ClientId, data: &[u8]) {
        let Some(conn) = self.clients.get_mut(&client) else {
            return;
        };
        conn.lines.push(data);
        loop {
            let Some(conn) = self.clients.get_mut(&client) else {
                return;
            };
            let line = match conn.lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    self.reply(client, 400, &e.to_string());
                    self.outbox.close_client(client);
                    self.drop_client(now, client);
                    return;
                }
            };
            let pending = conn.pending.is_some();
            match parse_request(&line) {
                Ok(Request::Quit) => {
                    self.reply(client, 200, "bye");
                    self.outbox.close_client(client);
                    self.drop_client(now, client);
                    return;
                }
                Ok(_) | Err(_) if pending => {
                    self.reply(
                        client,
                        409,
                        "busy: a request on this connection is waiting for its reply",
                    );
                }
                Ok(req) => self.on_request(now, client, req),
                Err(BadRequest { code, text }) => self.reply(client, code, &text),
            }
        }
    }

    fn on_request(&mut self, now: Instant, client: ClientId, req: Request) {
        match req {
            Request::Quit => unreachable!("handled by the caller"),
            Request::Help => self.reply(client, 200, HELP),
            Request::Status => {
                let text = format!(
                    "role={} id={:016x} epoch={:016x} version={} parent={} children={} pending={} routes={}",
                    if self.is_root() {
                        "mothership"
                    } else {
                        "daughtership"
                    },
                    self.id,
                    self.epoch,
                    self.version,
                    match &self.parent {
                        None => "none",
                        Some(p) if p.refused.is_some() => "refused",
                        Some(p) if p.up => "up",
                        Some(_) => "lost",
                    },
                    self.children.len(),
                    self.reqs.len(),
                    self.routes.len(),
                );
                self.reply(client, 200, &text);
            }
            Request::Get { path } => {
                if self.epoch == 0 {
                    self.reply(client, 503, "not yet synchronised with the mothership");
                    return;
                }
                match self.tree.get(&path) {
                    Ok(v) => self.reply(client, 200, &v),
                    Err(e) => self.reply(client, 404, &e.to_string()),
                }
            }
            Request::Set { path, value } => {
                if self.epoch == 0 {
                    self.reply(client, 503, "not yet synchronised with the mothership");
                    return;
                }
                if let Err(e) = self.tree.prepare_set(&path, &value) {
                    let code = config_error_code(&e);
                    self.reply(client, code, &e.to_string());
                    return;
                }
                self.start_config(now, client, ConfigOp::Set { path, value });
            }
            Request::Claim { pattern, host } => {
                let host = host.unwrap_or_else(|| format!("client-{:x}-{}", self.id, client.0));
                self.start_config(now, client, ConfigOp::Claim { pattern, host });
            }
            Request::Accept {
                key,
                advertise,
                timeout,
            } => {
                if self.busy() {
                    self.reply(client, 503, "too many requests in progress");
                    return;
                }
                let ticket = self.new_ticket();
                let deadline = self.deadline_for(now, timeout, self.cfg.timings.default_timeout);
                self.add_req(
                    now,
                    client,
                    ticket,
                    deadline,
                    ReqKind::Accept {
                        key: key.clone(),
                        advertise,
                        reservation: None,
                    },
                );
                self.accepts.entry(key.clone()).or_default().push(ticket);
                self.summary_dirty = true;
                self.reevaluate_key(now, &key);
            }
            Request::Connect { key, timeout, name } => {
                if self.busy() {
                    self.reply(client, 503, "too many requests in progress");
                    return;
                }
                let ticket = self.new_ticket();
                let deadline = self.deadline_for(now, timeout, self.cfg.timings.default_timeout);
                self.add_req(
                    now,
                    client,
                    ticket,
                    deadline,
                    ReqKind::Connect { key: key.clone() },
                );
                let client_name = name.unwrap_or_else(|| format!("{}/{}", self.cfg.listen, client));
                self.insert_route(
                    ticket,
                    Route {
                        from: Hop::Here,
                        to: None,
                        key,
                        client: client_name,
                        deadline,
                        held: None,
                        excluded: None,
                        offered: false,
                    },
                );
                self.route_connect(now, ticket);
            }
        }
    }

    fn add_req(
        &mut self,
        now: Instant,
        client: ClientId,
        ticket: Ticket,
        deadline: Instant,
        kind: ReqKind,
    ) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.pending = Some(ticket);
        }
        let next_progress = now + self.cfg.timings.progress;
        self.reqs.insert(
            ticket,
            LocalReq {
                client,
                deadline,
                started: now,
                next_progress,
                kind,
            },
        );
        if deadline != Instant::MAX {
            self.timers.set(Timer::Deadline(ticket), deadline);
        }
        self.timers.set(
            Timer::Req(ticket),
            now + self.cfg.timings.retry.min(self.cfg.timings.progress),
        );
    }

    fn remove_req(&mut self, ticket: Ticket) -> Option<LocalReq> {
        let req = self.reqs.remove(&ticket)?;
        self.timers.cancel(&Timer::Deadline(ticket));
        self.timers.cancel(&Timer::Req(ticket));
        if let ReqKind::Accept { key, .. } = &req.kind {
            if let Some(list) = self.accepts.get_mut(key) {
                list.retain(|t| *t != ticket);
                if list.is_empty() {
                    self.accepts.remove(key);
                }
            }
            self.timers.cancel(&Timer::Reserve(ticket));
            self.summary_dirty = true;
        }
        if let Some(c) = self.clients.get_mut(&req.client)
            && c.pending == Some(ticket)
        {
            c.pending = None;
        }
        Some(req)
    }

    fn drop_client(&mut self, now: Instant, client: ClientId) {
        let Some(conn) = self.clients.remove(&client) else {
            return;
        };
        let Some(ticket) = conn.pending else { return };
        // Withdraw: no match may be made with a client that is gone.
        let Some(req) = self.remove_req(ticket) else {
            return;
        };
        match req.kind {
            ReqKind::Connect { .. } => self.end_connect(now, ticket, None),
            ReqKind::Accept {
                reservation: Some(r),
                ..
            } => {
                // An offer for this accept is out; the connect's ship will confirm or
                // decline it, and either way finds no accept here any more.
                self.drop_route(r.connect);
            }
            _ => {}
        }
    }

    // ----- configuration -------------------------------------------------------------

    fn start_config(&mut self, now: Instant, client: ClientId, op: ConfigOp) {
        if self.is_root() {
            let ticket = self.new_ticket();
            let is_set = matches!(op, ConfigOp::Set { .. });
            if let Some(c) = self.clients.get_mut(&client) {
                c.pending = Some(ticket);
            }
            self.decide(now, ticket, &op, Waiter::Local { client, is_set });
            return;
        }
        if self.busy() {
            self.reply(client, 503, "too many requests in progress");
            return;
        }
        let ticket = self.new_ticket();
        let deadline = self.deadline_for(now, None, self.cfg.timings.config_timeout);
        self.add_req(
            now,
            client,
            ticket,
            deadline,
            ReqKind::Config {
                op: op.clone(),
                applied: None,
            },
        );
        self.send(
            Hop::Parent,
            &ShipMsg::ConfigReq {
                ticket,
                op,
                ttl_ms: ttl_ms(deadline, now),
            },
        );
    }

    /// Root only: decides a configuration operation once per ticket, and answers the
    /// waiter — at once, or (with `durable`) once the change is stored.
    fn decide(&mut self, now: Instant, ticket: Ticket, op: &ConfigOp, waiter: Waiter) {
        debug_assert!(self.is_root());
        if let Some(o) = self.decided.get(&ticket) {
            let o = o.clone();
            self.answer(ticket, waiter, o);
            return;
        }
        if self.staged.iter().any(|st| st.ticket == ticket) {
            return; // a retry while the change is being stored: answered when it is
        }
        let base = self.staged_tree.as_ref().unwrap_or(&self.tree);
        let prepared = match op {
            ConfigOp::Set { path, value } => base.prepare_set(path, value),
            ConfigOp::Claim { pattern, host } => base.prepare_claim(pattern, host),
        };
        let change = match prepared {
            Ok(change) => change,
            Err(e) => {
                let outcome = ConfigOutcome::Refused {
                    code: config_error_code(&e),
                    text: e.to_string(),
                };
                self.remember_decision(now, ticket, &outcome);
                self.answer(ticket, waiter, outcome);
                return;
            }
        };
        let text = match &change {
            Change::Claim { node, .. } => node.clone(),
            Change::Set { .. } => String::new(),
        };
        if !self.cfg.durable {
            let version = self.apply_change(change);
            self.push_deltas(version);
            let outcome = ConfigOutcome::Applied { version, text };
            self.remember_decision(now, ticket, &outcome);
            self.answer(ticket, waiter, outcome);
            return;
        }
        let version = self.version + self.staged.len() as u64 + 1;
        let mut tree = self.staged_tree.take().unwrap_or_else(|| self.tree.clone());
        tree.apply(&change);
        let staged_decisions = self
            .staged
            .iter()
            .map(|st| (st.ticket, st.version, st.text.clone()))
            .chain([(ticket, version, text.clone())])
            .filter(|(t, _, _)| t.origin != self.id)
            .map(|(t, version, text)| (t, ConfigOutcome::Applied { version, text }));
        let decided = self
            .decided
            .iter()
            .map(|(t, o)| (*t, o.clone()))
            .chain(staged_decisions)
            .collect();
        self.outbox.event(ShipEvent::Persist(Stored {
            epoch: self.epoch,
            version,
            tree: tree.clone(),
            decided,
        }));
        self.staged_tree = Some(tree);
        self.staged.push_back(Staged {
            version,
            change,
            ticket,
            waiter,
            text,
        });
    }

    /// The embedding program stored everything up to `version`: apply, pass on, answer.
    fn on_persisted(&mut self, now: Instant, version: u64) {
        while self.staged.front().is_some_and(|st| st.version <= version) {
            let st = self.staged.pop_front().expect("checked");
            let v = self.apply_change(st.change);
            debug_assert_eq!(v, st.version, "staged changes apply in order");
            self.push_deltas(v);
            let outcome = ConfigOutcome::Applied {
                version: v,
                text: st.text,
            };
            self.remember_decision(now, st.ticket, &outcome);
            self.answer(st.ticket, st.waiter, outcome);
        }
        if self.staged.is_empty() {
            self.staged_tree = None;
        }
    }

    fn remember_decision(&mut self, now: Instant, ticket: Ticket, outcome: &ConfigOutcome) {
        if ticket.origin != self.id {
            // Remember remote decisions so a retried request is answered, not re-applied.
            self.decided.insert(ticket, outcome.clone());
            self.timers.set(
                Timer::Forget(ticket),
                now + self.cfg.timings.config_timeout * 2,
            );
        }
    }

    fn answer(&mut self, ticket: Ticket, waiter: Waiter, outcome: ConfigOutcome) {
        match waiter {
            Waiter::Child(addr) => {
                self.send(Hop::Child(addr), &ShipMsg::ConfigResp { ticket, outcome });
            }
            Waiter::Local { client, is_set } => match outcome {
                ConfigOutcome::Applied { version, text } => {
                    let text = if is_set {
                        format!("version={version}")
                    } else {
                        text
                    };
                    self.finish_client(client, 200, &text);
                }
                ConfigOutcome::Refused { code, text } => self.finish_client(client, code, &text),
            },
        }
    }

    fn apply_change(&mut self, change: Change) -> u64 {
        self.tree.apply(&change);
        self.version += 1;
        self.log.push_back(change);
        if self.log.len() > self.cfg.limits.delta_log {
            self.log.pop_front();
            self.log_first += 1;
        }
        debug_assert_eq!(self.log_first + self.log.len() as u64, self.version + 1);
        self.stats.changes_applied += 1;
        self.outbox.event(ShipEvent::Changed {
            version: self.version,
        });
        self.version
    }

    /// Pushes the changes from `from` on to every child; a child that missed earlier ones
    /// ignores these and catches up through its next Hello.
    fn push_deltas(&mut self, from: u64) {
        if self.children.is_empty() || from < self.log_first {
            return;
        }
        let changes: Vec<Change> = self
            .log
            .iter()
            .skip((from - self.log_first) as usize)
            .cloned()
            .collect();
        let msg = ShipMsg::Deltas {
            epoch: self.epoch,
            first: from,
            changes,
        };
        let kids: Vec<PeerAddr> = self.children.keys().copied().collect();
        for k in kids {
            self.send(Hop::Child(k), &msg);
        }
    }

    fn sync_child(&mut self, addr: PeerAddr) {
        let Some(child) = self.children.get(&addr) else {
            return;
        };
        if self.epoch == 0 {
            return;
        }
        let msg = if child.epoch != self.epoch
            || child.version + 1 < self.log_first
            || child.version > self.version
        {
            ShipMsg::Snapshot {
                epoch: self.epoch,
                version: self.version,
                tree: self.tree.clone(),
            }
        } else if child.version < self.version {
            let skip = (child.version + 1 - self.log_first) as usize;
            ShipMsg::Deltas {
                epoch: self.epoch,
                first: child.version + 1,
                changes: self
                    .log
                    .iter()
                    .skip(skip)
                    .take(MAX_DELTAS)
                    .cloned()
                    .collect(),
            }
        } else {
            return;
        };
        self.send(Hop::Child(addr), &msg);
    }

    /// After the local copy advanced: answer config requests waiting for it.
    fn release_config_waiters(&mut self) {
        let ready: Vec<(Ticket, ClientId, String)> = self
            .reqs
            .iter()
            .filter_map(|(t, r)| match &r.kind {
                ReqKind::Config {
                    op,
                    applied: Some((v, text)),
                } if *v <= self.version => {
                    let text = match op {
                        ConfigOp::Set { .. } => format!("version={v}"),
                        ConfigOp::Claim { .. } => text.clone(),
                    };
                    Some((*t, r.client, text))
                }
                _ => None,
            })
            .collect();
        for (t, client, text) in ready {
            self.remove_req(t);
            self.finish_client(client, 200, &text);
        }
    }

    // ----- parent link ---------------------------------------------------------------

    fn subtree(&self) -> Vec<u64> {
        let mut ids: BTreeSet<u64> = BTreeSet::new();
        ids.insert(self.id);
        for c in self.children.values() {
            ids.extend(c.subtree.iter().copied());
            if ids.len() >= MAX_SUBTREE {
                break;
            }
        }
        ids.into_iter().take(MAX_SUBTREE).collect()
    }

    fn send_hello(&mut self) {
        let msg = ShipMsg::Hello {
            ship: self.id,
            is_root: false,
            epoch: self.epoch,
            version: self.version,
            summary_seq: self.summary_seq,
            subtree: self.subtree(),
        };
        self.send(Hop::Parent, &msg);
    }

    fn on_parent_msg(&mut self, now: Instant, msg: ShipMsg) {
        let keepalive = self.cfg.timings.keepalive;
        let timeout = self.cfg.timings.parent_timeout;
        let retry = self.cfg.timings.retry;
        let Some(p) = self.parent.as_mut() else {
            return;
        };
        if let ShipMsg::Refuse { reason } = msg {
            if p.refused.is_none() {
                p.refused = Some(reason.clone());
                self.outbox.event(ShipEvent::Refused { reason });
            }
            return;
        }
        let restored = !p.up && p.heard;
        p.up = true;
        p.heard = true;
        p.backoff = self.cfg.timings.backoff_min;
        self.timers.set(Timer::ParentDead, now + timeout);
        if self
            .timers
            .get(&Timer::Hello)
            .is_none_or(|t| t > now + keepalive)
        {
            self.timers.set(Timer::Hello, now + keepalive);
        }
        if restored {
            self.outbox.event(ShipEvent::ParentRestored);
            // Requests that were waiting on the parent resume at once.
            let waiting: Vec<Ticket> = self.reqs.keys().copied().collect();
            for t in waiting {
                self.timers.set(Timer::Req(t), now);
            }
        }
        match msg {
            ShipMsg::Beat {
                epoch,
                version,
                summary_seq,
            } => {
                if summary_seq != self.summary_seq && self.cfg.escalate {
                    self.send_summary();
                }
                let behind = epoch != 0 && (epoch != self.epoch || version > self.version);
                let p = self.parent.as_mut().expect("checked above");
                if behind && p.last_pull.is_none_or(|t| now >= t + retry) {
                    p.last_pull = Some(now);
                    self.send_hello();
                }
            }
            ShipMsg::Snapshot {
                epoch,
                version,
                tree,
            } => {
                if epoch == self.epoch && version <= self.version {
                    return;
                }
                self.epoch = epoch;
                self.version = version;
                self.tree = tree;
                self.log.clear();
                self.log_first = version + 1;
                self.stats.snapshots += 1;
                self.outbox.event(ShipEvent::Synced { epoch, version });
                let kids: Vec<PeerAddr> = self.children.keys().copied().collect();
                for k in kids {
                    self.sync_child(k);
                }
                self.release_config_waiters();
            }
            ShipMsg::Deltas {
                epoch,
                first,
                changes,
            } => {
                if epoch != self.epoch {
                    self.send_hello();
                    return;
                }
                let before = self.version;
                for (i, change) in changes.into_iter().enumerate() {
                    let v = first + i as u64;
                    if v <= self.version {
                        continue;
                    }
                    if v != self.version + 1 {
                        self.send_hello();
                        break;
                    }
                    self.apply_change(change);
                }
                if self.version > before {
                    self.push_deltas(before + 1);
                    self.release_config_waiters();
                }
            }
            ShipMsg::ConfigResp { ticket, outcome } => self.on_config_resp(ticket, outcome),
            ShipMsg::Connect {
                ticket,
                key,
                ttl_ms,
                client,
            } => self.on_connect(now, Hop::Parent, ticket, key, ttl_ms, client),
            ShipMsg::Offer {
                ticket,
                conn,
                acceptor,
                ttl_ms,
            } => self.on_offer(now, Hop::Parent, ticket, conn, acceptor, ttl_ms),
            ShipMsg::Confirm { ticket, conn } => self.on_confirm(Hop::Parent, ticket, conn),
            ShipMsg::Decline { ticket, conn } => self.on_decline(now, Hop::Parent, ticket, conn),
            ShipMsg::Cancel { ticket } => self.on_cancel(now, ticket),
            _ => {}
        }
    }

    fn on_config_resp(&mut self, ticket: Ticket, outcome: ConfigOutcome) {
        if let Some(child) = self.config_routes.remove(&ticket) {
            self.send(Hop::Child(child), &ShipMsg::ConfigResp { ticket, outcome });
            return;
        }
        let Some(req) = self.reqs.get_mut(&ticket) else {
            return;
        };
        let ReqKind::Config { applied, .. } = &mut req.kind else {
            return;
        };
        match outcome {
            ConfigOutcome::Applied { version, text } => {
                *applied = Some((version, text));
                self.release_config_waiters();
            }
            ConfigOutcome::Refused { code, text } => {
                let client = req.client;
                self.remove_req(ticket);
                self.finish_client(client, code, &text);
            }
        }
    }

    // ----- children ------------------------------------------------------------------

    fn on_child_msg(
        &mut self,
        now: Instant,
        from: PeerAddr,
        msg: ShipMsg,
    ) -> Result<(), ShipError> {
        if let ShipMsg::Hello {
            ship,
            is_root,
            epoch,
            version,
            summary_seq,
            subtree,
        } = msg
        {
            return {
                self.on_hello(
                    now,
                    from,
                    ship,
                    is_root,
                    epoch,
                    version,
                    summary_seq,
                    subtree,
                );
                Ok(())
            };
        }
        if !self.children.contains_key(&from) {
            return Err(ShipError::UnknownPeer {
                from,
                kind: msg_name(&msg),
            });
        }
        let hop = Hop::Child(from);
        match msg {
            ShipMsg::Summary { seq, keys } => {
                let child = self.children.get_mut(&from).expect("checked");
                if seq > child.summary_seq || (seq == 0 && child.summary_seq == 0) {
                    child.summary_seq = seq;
                    child.keys = keys.into_iter().collect();
                    self.summary_dirty = true;
                    let keys: Vec<String> = child.keys.iter().cloned().collect();
                    for k in keys {
                        self.reevaluate_key(now, &k);
                    }
                }
            }
            ShipMsg::ConfigReq { ticket, op, ttl_ms } => {
                if self.is_root() {
                    self.decide(now, ticket, &op, Waiter::Child(from));
                } else {
                    self.config_routes.insert(ticket, from);
                    self.timers.set(
                        Timer::Forget(ticket),
                        deadline_from_ttl(now, ttl_ms)
                            .min(now + self.cfg.timings.config_timeout * 2),
                    );
                    self.send(Hop::Parent, &ShipMsg::ConfigReq { ticket, op, ttl_ms });
                }
            }
            ShipMsg::Connect {
                ticket,
                key,
                ttl_ms,
                client,
            } => self.on_connect(now, hop, ticket, key, ttl_ms, client),
            ShipMsg::Offer {
                ticket,
                conn,
                acceptor,
                ttl_ms,
            } => self.on_offer(now, hop, ticket, conn, acceptor, ttl_ms),
            ShipMsg::Confirm { ticket, conn } => self.on_confirm(hop, ticket, conn),
            ShipMsg::Decline { ticket, conn } => self.on_decline(now, hop, ticket, conn),
            ShipMsg::Cancel { ticket } => self.on_cancel(now, ticket),
            ShipMsg::NotHere { ticket } => {
                if let Some(r) = self.routes.get_mut(&ticket)
                    && r.to == Some(hop)
                {
                    r.to = None;
                    r.excluded = Some(from);
                    self.route_connect(now, ticket);
                }
            }
            _ => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_hello(
        &mut self,
        now: Instant,
        from: PeerAddr,
        ship: u64,
        is_root: bool,
        epoch: u64,
        version: u64,
        summary_seq: u64,
        subtree: Vec<u64>,
    ) {
        let refuse = if is_root {
            Some(format!(
                "ship {from} is a mothership: a hierarchy has exactly one root"
            ))
        } else if ship == self.id
            || subtree.contains(&self.id)
            || self.parent.as_ref().is_some_and(|p| p.addr == from)
        {
            Some(format!(
                "cycle: {from} is already above {} in the hierarchy",
                self.cfg.listen
            ))
        } else {
            None
        };
        if let Some(reason) = refuse {
            if self.children.remove(&from).is_some() {
                self.timers.cancel(&Timer::Child(from));
                self.summary_dirty = true;
            }
            self.send(Hop::Child(from), &ShipMsg::Refuse { reason });
            return;
        }
        let known_seq = match self.children.get_mut(&from) {
            Some(c) => {
                if c.ship != ship {
                    // The child restarted: what it told us before is void.
                    c.ship = ship;
                    c.summary_seq = 0;
                    c.keys.clear();
                    self.summary_dirty = true;
                }
                c.epoch = epoch;
                c.version = version;
                c.subtree = subtree;
                c.summary_seq
            }
            None => {
                self.children.insert(
                    from,
                    ChildLink {
                        ship,
                        epoch,
                        version,
                        summary_seq: 0,
                        keys: BTreeSet::new(),
                        subtree,
                    },
                );
                self.outbox.event(ShipEvent::ChildJoined(from));
                0
            }
        };
        // The child's summary_seq is compared in the other direction: the Beat echoes
        // the parent's, and the child resends on a mismatch.
        let _ = summary_seq;
        self.timers
            .set(Timer::Child(from), now + self.cfg.timings.child_timeout);
        self.send(
            Hop::Child(from),
            &ShipMsg::Beat {
                epoch: self.epoch,
                version: self.version,
                summary_seq: known_seq,
            },
        );
        self.sync_child(from);
    }

    fn forget_child(&mut self, now: Instant, addr: PeerAddr) {
        if self.children.remove(&addr).is_none() {
            return;
        }
        self.summary_dirty = true;
        self.outbox.event(ShipEvent::ChildLost(addr));
        let rerouted: Vec<Ticket> = self
            .routes
            .iter()
            .filter(|(_, r)| r.to == Some(Hop::Child(addr)))
            .map(|(t, _)| *t)
            .collect();
        for t in rerouted {
            if let Some(r) = self.routes.get_mut(&t) {
                r.to = None;
            }
            self.route_connect(now, t);
        }
        // Connects that came from the lost child are abandoned — unless an offer already
        // went back through here (or was made here): the origin may have taken it, so the
        // route and reservation stay, for the confirmation to come through once the child
        // returns, or for the reservation to end in doubt.
        let orphaned: Vec<Ticket> = self
            .routes
            .iter()
            .filter(|(_, r)| r.from == Hop::Child(addr) && !r.offered && r.held.is_none())
            .map(|(t, _)| *t)
            .collect();
        for t in orphaned {
            self.end_connect(now, t, None);
        }
    }

    // ----- interest summaries --------------------------------------------------------

    fn local_keys(&self) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self
            .accepts
            .iter()
            .filter(|(_, tickets)| {
                tickets.iter().any(|t| {
                    matches!(
                        self.reqs.get(t).map(|r| &r.kind),
                        Some(ReqKind::Accept {
                            reservation: None,
                            ..
                        })
                    )
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for c in self.children.values() {
            keys.extend(c.keys.iter().cloned());
        }
        keys
    }

    fn send_summary(&mut self) {
        let keys: Vec<String> = self.summary_sent.iter().cloned().collect();
        self.send(
            Hop::Parent,
            &ShipMsg::Summary {
                seq: self.summary_seq,
                keys,
            },
        );
    }

    fn flush_summary(&mut self) {
        if !self.summary_dirty {
            return;
        }
        self.summary_dirty = false;
        if self.parent.is_none() || !self.cfg.escalate {
            return;
        }
        let keys = self.local_keys();
        if keys != self.summary_sent {
            self.summary_sent = keys;
            self.summary_seq += 1;
            self.send_summary();
        }
    }

    // ----- brokering -----------------------------------------------------------------

    fn new_conn_id(&mut self) -> String {
        self.next_conn += 1;
        format!("{:016x}-{}", self.id, self.next_conn)
    }

    /// The oldest unreserved local accept for `key` with enough time left to be offered
    /// to a connect from elsewhere (`remote`).
    fn free_accept(&self, now: Instant, key: &str, remote: bool) -> Option<Ticket> {
        let margin = self.cfg.timings.offer_margin;
        self.accepts.get(key)?.iter().copied().find(|t| {
            self.reqs.get(t).is_some_and(|r| {
                matches!(
                    r.kind,
                    ReqKind::Accept {
                        reservation: None,
                        ..
                    }
                ) && (!remote || r.deadline == Instant::MAX || r.deadline > now + margin)
            })
        })
    }

    fn on_connect(
        &mut self,
        now: Instant,
        from: Hop,
        ticket: Ticket,
        key: String,
        ttl: u64,
        client: String,
    ) {
        let deadline = deadline_from_ttl(now, ttl);
        if let Some(r) = self.routes.get_mut(&ticket) {
            if r.from == Hop::Here {
                // Our own connect came back to us: ignore the loop rather than lose
                // track of the client.
                return;
            }
            r.deadline = r.deadline.max(deadline);
            r.from = from;
            if let Some(accept) = r.held {
                // A retry while the offer is out: send the offer again.
                self.resend_offer(now, accept);
                return;
            }
            if r.offered {
                // The holder is already talking to the origin along this route.
                return;
            }
        } else {
            if self.busy() {
                return;
            }
            self.insert_route(
                ticket,
                Route {
                    from,
                    to: None,
                    key,
                    client,
                    deadline,
                    held: None,
                    excluded: None,
                    offered: false,
                },
            );
            let grace = (self.cfg.timings.retry * 4).max(self.cfg.timings.offer_margin * 2);
            self.timers
                .set(Timer::Route(ticket), deadline.saturating_add(grace));
        }
        self.route_connect(now, ticket);
    }

    /// Decides where a connect goes next: a local accept, the child subtree that holds the
    /// key, the parent, back down with NotHere, or parked here until something changes.
    fn route_connect(&mut self, now: Instant, ticket: Ticket) {
        let Some(r) = self.routes.get(&ticket) else {
            return;
        };
        if r.held.is_some() || r.offered {
            return;
        }
        if let Some(Hop::Child(c)) = r.to
            && self.children.contains_key(&c)
        {
            // Already sent down: the child knows better than our copy of its summary
            // (which drops the key as soon as the accept is reserved for this very
            // connect). It answers NotHere if the accept is gone.
            let msg = ShipMsg::Connect {
                ticket,
                key: r.key.clone(),
                ttl_ms: ttl_ms(r.deadline, now),
                client: r.client.clone(),
            };
            self.send(Hop::Child(c), &msg);
            return;
        }
        let (from, key, excluded, deadline) = (r.from, r.key.clone(), r.excluded, r.deadline);
        if let Some(accept) = self.free_accept(now, &key, from != Hop::Here) {
            if from == Hop::Here {
                self.local_match(now, ticket, accept);
            } else {
                self.reserve(now, ticket, accept, deadline);
            }
            return;
        }
        let to = if !self.cfg.escalate {
            None
        } else if let Some(child) = self
            .children
            .iter()
            .find(|(a, c)| {
                Some(Hop::Child(**a)) != Some(from)
                    && Some(**a) != excluded
                    && c.keys.contains(&key)
            })
            .map(|(a, _)| *a)
        {
            Some(Hop::Child(child))
        } else if self.parent.is_some() && from != Hop::Parent {
            Some(Hop::Parent)
        } else {
            None
        };
        let r = self.routes.get_mut(&ticket).expect("checked above");
        r.to = to;
        match to {
            Some(hop) => {
                let msg = ShipMsg::Connect {
                    ticket,
                    key,
                    ttl_ms: ttl_ms(r.deadline, now),
                    client: r.client.clone(),
                };
                self.send(hop, &msg);
            }
            None if from == Hop::Parent => {
                // Our summary misled the parent (it changed meanwhile): hand it back.
                self.send(Hop::Parent, &ShipMsg::NotHere { ticket });
                self.drop_route(ticket);
            }
            None => {} // parked here until a summary or accept arrives, or the deadline
        }
    }

    fn reevaluate_key(&mut self, now: Instant, key: &str) {
        let Some(tickets) = self.open_by_key.get(key) else {
            return;
        };
        let parked: Vec<Ticket> = tickets
            .iter()
            .filter(|t| {
                // Parked connects, and connects sent up before this subtree held the key:
                // the lowest common ancestor may now be here.
                self.routes.get(t).is_some_and(|r| {
                    matches!(r.to, None | Some(Hop::Parent)) && r.held.is_none() && !r.offered
                })
            })
            .copied()
            .collect();
        for t in parked {
            self.route_connect(now, t);
        }
    }

    fn local_match(&mut self, now: Instant, connect: Ticket, accept: Ticket) {
        let conn = self.new_conn_id();
        let Some(route) = self.drop_route(connect) else {
            return;
        };
        self.timers.cancel(&Timer::Route(connect));
        let Some(acc) = self.remove_req(accept) else {
            return;
        };
        let ReqKind::Accept { key, advertise, .. } = acc.kind else {
            unreachable!("accept list holds accepts only");
        };
        if let Some(req) = self.remove_req(connect) {
            self.finish_client(req.client, 200, &format!("{advertise} conn={conn}"));
        }
        self.finish_client(
            acc.client,
            200,
            &format!("conn={conn} client={}", route.client),
        );
        self.remember_finished(now, connect, Some(conn.clone()), route.deadline);
        self.stats.local_matches += 1;
        self.outbox.event(ShipEvent::Matched { key, conn });
    }

    fn reserve(
        &mut self,
        now: Instant,
        connect: Ticket,
        accept: Ticket,
        connect_deadline: Instant,
    ) {
        let conn = self.new_conn_id();
        let retry = self.cfg.timings.retry;
        let Some(req) = self.reqs.get_mut(&accept) else {
            return;
        };
        let margin = self.cfg.timings.offer_margin;
        let window_end = connect_deadline.min(req.deadline.saturating_sub(margin));
        let expires = window_end.saturating_add(margin).min(req.deadline);
        if let ReqKind::Accept { reservation, .. } = &mut req.kind {
            *reservation = Some(Reservation {
                connect,
                conn,
                window_end,
                expires,
            });
        }
        self.summary_dirty = true;
        if let Some(r) = self.routes.get_mut(&connect) {
            r.held = Some(accept);
            r.to = Some(Hop::Here);
            let key = r.key.clone();
            self.close_route(connect, &key);
        }
        self.resend_offer(now, accept);
        self.timers.set(Timer::Reserve(accept), now + retry);
    }

    fn resend_offer(&mut self, now: Instant, accept: Ticket) {
        let Some(req) = self.reqs.get(&accept) else {
            return;
        };
        let ReqKind::Accept {
            advertise,
            reservation: Some(res),
            ..
        } = &req.kind
        else {
            return;
        };
        let Some(route) = self.routes.get(&res.connect) else {
            return;
        };
        if now >= res.expires {
            return;
        }
        // Past the window the offer is resent with no time left: the connect can no
        // longer take it, but the origin answers again whether it already did, so a lost
        // confirmation is recovered before the reservation runs out.
        let msg = ShipMsg::Offer {
            ticket: res.connect,
            conn: res.conn.clone(),
            acceptor: advertise.clone(),
            ttl_ms: ttl_ms(res.window_end, now),
        };
        let from = route.from;
        if from != Hop::Here {
            self.send(from, &msg);
        }
    }

    fn unreserve(&mut self, now: Instant, accept: Ticket) {
        let Some(req) = self.reqs.get_mut(&accept) else {
            return;
        };
        let ReqKind::Accept {
            key, reservation, ..
        } = &mut req.kind
        else {
            return;
        };
        let key = key.clone();
        if let Some(res) = reservation.take() {
            self.timers.cancel(&Timer::Reserve(accept));
            self.drop_route(res.connect);
        }
        self.summary_dirty = true;
        self.reevaluate_key(now, &key);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_offer(
        &mut self,
        now: Instant,
        from: Hop,
        ticket: Ticket,
        conn: String,
        acceptor: String,
        ttl: u64,
    ) {
        let Some(route) = self.routes.get_mut(&ticket) else {
            if ticket.origin == self.id {
                // Our connect already finished: answer a repeated offer the same way.
                let answer = match self.finished.get(&ticket) {
                    Some(Some(c)) if *c == conn => ShipMsg::Confirm { ticket, conn },
                    _ => ShipMsg::Decline { ticket, conn },
                };
                self.send(from, &answer);
            } else if let Some(hop) = self.toward_ship(ticket.origin, from) {
                // A ship on the way that lost the route (it restarted) passes the offer
                // on toward the origin by the subtrees its children report, so the origin
                // can still answer it.
                self.send(
                    hop,
                    &ShipMsg::Offer {
                        ticket,
                        conn,
                        acceptor,
                        ttl_ms: ttl,
                    },
                );
            }
            return;
        };
        route.to = Some(from);
        route.offered = true;
        let key = route.key.clone();
        self.close_route(ticket, &key);
        let route = self.routes.get(&ticket).expect("present above");
        if route.from != Hop::Here {
            let back = route.from;
            self.send(
                back,
                &ShipMsg::Offer {
                    ticket,
                    conn,
                    acceptor,
                    ttl_ms: ttl,
                },
            );
            return;
        }
        // The connect's own ship: take the offer if the client still waits and the
        // accept's commit window is still open.
        let waiting = self
            .reqs
            .get(&ticket)
            .is_some_and(|r| matches!(r.kind, ReqKind::Connect { .. }));
        if !waiting || ttl == 0 {
            self.send(from, &ShipMsg::Decline { ticket, conn });
            return;
        }
        let req = self.remove_req(ticket).expect("checked above");
        self.finish_client(req.client, 200, &format!("{acceptor} conn={conn}"));
        self.drop_route(ticket);
        self.remember_finished(now, ticket, Some(conn.clone()), req.deadline);
        self.send(from, &ShipMsg::Confirm { ticket, conn });
    }

    fn holder_accept(&self, ticket: Ticket, conn: &str) -> Option<Ticket> {
        let accept = self.routes.get(&ticket)?.held?;
        match &self.reqs.get(&accept)?.kind {
            ReqKind::Accept {
                reservation: Some(r),
                ..
            } if r.conn == conn && r.connect == ticket => Some(accept),
            _ => None,
        }
    }

    fn on_confirm(&mut self, from: Hop, ticket: Ticket, conn: String) {
        if let Some(accept) = self.holder_accept(ticket, &conn) {
            let route = self.drop_route(ticket).expect("holder has the route");
            let acc = self.remove_req(accept).expect("holder has the accept");
            let ReqKind::Accept { key, .. } = acc.kind else {
                unreachable!("held tickets are accepts");
            };
            self.finish_client(
                acc.client,
                200,
                &format!("conn={conn} client={}", route.client),
            );
            self.stats.remote_matches += 1;
            self.outbox.event(ShipEvent::Matched { key, conn });
            return;
        }
        // The route stays until it expires: if this confirmation is lost, the holder
        // offers again and the repeat must still find its way to the origin.
        if let Some(to) = self.toward_holder(from, ticket, &conn) {
            self.send(to, &ShipMsg::Confirm { ticket, conn });
        }
    }

    fn on_decline(&mut self, now: Instant, from: Hop, ticket: Ticket, conn: String) {
        if let Some(accept) = self.holder_accept(ticket, &conn) {
            self.unreserve(now, accept);
            return;
        }
        if let Some(to) = self.toward_holder(from, ticket, &conn) {
            self.send(to, &ShipMsg::Decline { ticket, conn });
        }
    }

    /// Where a confirmation or decline goes next: along the recorded route, or — if this
    /// ship lost it (it restarted mid-match) — toward the holder, whose id prefixes the
    /// connection id.
    fn toward_holder(&self, from: Hop, ticket: Ticket, conn: &str) -> Option<Hop> {
        match self.routes.get(&ticket).map(|r| r.to) {
            Some(Some(to @ (Hop::Parent | Hop::Child(_)))) => Some(to),
            Some(_) => None,
            None => {
                let holder = u64::from_str_radix(conn.split('-').next()?, 16).ok()?;
                self.toward_ship(holder, from)
            }
        }
    }

    /// The next hop toward the ship with id `ship`, by the subtrees children report,
    /// never back the way a message came; `None` if it is nowhere reachable from here.
    fn toward_ship(&self, ship: u64, from: Hop) -> Option<Hop> {
        if ship == self.id {
            return None;
        }
        if let Some(child) = self
            .children
            .iter()
            .find(|(a, c)| Hop::Child(**a) != from && c.subtree.contains(&ship))
            .map(|(a, _)| *a)
        {
            return Some(Hop::Child(child));
        }
        (self.parent.is_some() && from != Hop::Parent).then_some(Hop::Parent)
    }

    fn on_cancel(&mut self, now: Instant, ticket: Ticket) {
        self.end_connect(now, ticket, None);
    }

    /// Ends a connect's route here: releases a reservation it held, passes the cancel on
    /// toward where the connect went, and (at its origin) remembers the outcome.
    fn end_connect(&mut self, now: Instant, ticket: Ticket, conn: Option<String>) {
        let Some(route) = self.routes.get(&ticket) else {
            return;
        };
        let (to, held, from, deadline) = (route.to, route.held, route.from, route.deadline);
        if let Some(accept) = held {
            self.unreserve(now, accept);
        } else if let Some(hop @ (Hop::Parent | Hop::Child(_))) = to {
            self.send(hop, &ShipMsg::Cancel { ticket });
        }
        self.drop_route(ticket);
        if from == Hop::Here {
            self.remember_finished(now, ticket, conn, deadline);
        }
    }

    fn insert_route(&mut self, ticket: Ticket, route: Route) {
        self.open_by_key
            .entry(route.key.clone())
            .or_default()
            .insert(ticket);
        if let Some(old) = self.routes.insert(ticket, route) {
            debug_assert!(
                false,
                "route for {ticket:?} inserted twice (key {})",
                old.key
            );
        }
    }

    /// The route found its accept (an offer passed, or one is held here): no summary or
    /// new accept needs to look at it again.
    fn close_route(&mut self, ticket: Ticket, key: &str) {
        if let Some(set) = self.open_by_key.get_mut(key) {
            set.remove(&ticket);
            if set.is_empty() {
                self.open_by_key.remove(key);
            }
        }
    }

    fn drop_route(&mut self, ticket: Ticket) -> Option<Route> {
        self.timers.cancel(&Timer::Route(ticket));
        let route = self.routes.remove(&ticket)?;
        self.close_route(ticket, &route.key);
        Some(route)
    }

    /// Remembers how a connect ended, so repeated offers get the same answer. A holder
    /// may offer (and wait for the answer) until the connect's deadline plus the offer
    /// margin, so the memory lasts past that.
    fn remember_finished(
        &mut self,
        now: Instant,
        ticket: Ticket,
        conn: Option<String>,
        deadline: Instant,
    ) {
        let t = &self.cfg.timings;
        let until = deadline
            .min(now + Duration::from_secs(3600))
            .saturating_add(t.offer_margin + t.retry * 4)
            .max(now + t.retry * 40);
        self.finished.insert(ticket, conn);
        self.timers.set(Timer::Forget(ticket), until);
    }

    // ----- timers --------------------------------------------------------------------

    fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Hello => {
                let Some(p) = self.parent.as_mut() else {
                    return;
                };
                let next = if p.up {
                    self.cfg.timings.keepalive
                } else {
                    let d = p.backoff;
                    p.backoff = (p.backoff * 2).min(self.cfg.timings.backoff_max);
                    self.rng.jitter(d, 0.5).max(Duration::from_millis(1))
                };
                self.send_hello();
                self.timers.set(Timer::Hello, now + next);
            }
            Timer::ParentDead => {
                let Some(p) = self.parent.as_mut() else {
                    return;
                };
                if p.up {
                    p.up = false;
                    p.backoff = self.cfg.timings.backoff_min;
                    self.outbox.event(ShipEvent::ParentLost);
                    self.timers
                        .set(Timer::Hello, now + self.cfg.timings.backoff_min);
                }
            }
            Timer::Child(addr) => self.forget_child(now, addr),
            Timer::Req(ticket) => self.on_req_timer(now, ticket),
            Timer::Deadline(ticket) => self.expire(now, ticket),
            Timer::Route(ticket) => {
                // A route through here outlived its connect: forget it quietly. The origin
                // cancels what it abandons; a holder's reservation has its own expiry.
                // A reservation held here ends by its own timer (confirmed, declined or in
                // doubt), never by the route's.
                if self
                    .routes
                    .get(&ticket)
                    .is_some_and(|r| r.from != Hop::Here && r.held.is_none())
                {
                    self.drop_route(ticket);
                }
            }
            Timer::Reserve(accept) => {
                let Some(LocalReq {
                    kind:
                        ReqKind::Accept {
                            reservation: Some(res),
                            ..
                        },
                    ..
                }) = self.reqs.get(&accept)
                else {
                    return;
                };
                let expires = res.expires;
                if now >= expires {
                    // Neither a confirmation nor a decline came back (a partition, or a
                    // ship on the path died): the connect may have taken the offer. The
                    // accept must not be offered to anyone else, so it ends now, saying so.
                    self.expire(now, accept);
                } else {
                    self.resend_offer(now, accept);
                    let next = (now + self.cfg.timings.retry).min(expires);
                    self.timers.set(
                        Timer::Reserve(accept),
                        next.max(now + Duration::from_nanos(1)),
                    );
                }
            }
            Timer::Forget(ticket) => {
                self.finished.remove(&ticket);
                self.decided.remove(&ticket);
                self.config_routes.remove(&ticket);
            }
        }
    }

    fn on_req_timer(&mut self, now: Instant, ticket: Ticket) {
        let t = self.cfg.timings.clone();
        let parent_up = self.parent_up();
        let Some(req) = self.reqs.get_mut(&ticket) else {
            return;
        };
        if now >= req.next_progress {
            req.next_progress = now + t.progress;
            let waited = secs(now - req.started);
            let (client, text) = match &req.kind {
                ReqKind::Accept { key, .. } => (
                    req.client,
                    format!("waiting for a connect on {key} ({waited})"),
                ),
                ReqKind::Connect { key } => (
                    req.client,
                    format!("waiting for an accept on {key} ({waited})"),
                ),
                ReqKind::Config { .. } => {
                    (req.client, format!("waiting for the mothership ({waited})"))
                }
            };
            let text = if parent_up {
                text
            } else {
                format!("{text}; parent unreachable, retrying")
            };
            self.reply(client, 100, &text);
        }
        let req = self.reqs.get(&ticket).expect("still present");
        let next = req.next_progress.min(now + t.retry);
        match &req.kind {
            ReqKind::Config { op, applied: None } => {
                let msg = ShipMsg::ConfigReq {
                    ticket,
                    op: op.clone(),
                    ttl_ms: ttl_ms(req.deadline, now),
                };
                self.send(Hop::Parent, &msg);
            }
            ReqKind::Config {
                applied: Some(_), ..
            } => {
                // The decision is in; the change itself has not reached us yet: pull.
                self.send_hello();
            }
            // Decide afresh: what the ship knows may have changed since the last try.
            ReqKind::Connect { .. } => self.route_connect(now, ticket),
            ReqKind::Accept { .. } => {}
        }
        if self.reqs.contains_key(&ticket) {
            self.timers.set(Timer::Req(ticket), next);
        }
    }

    fn expire(&mut self, now: Instant, ticket: Ticket) {
        let Some(req) = self.remove_req(ticket) else {
            return;
        };
        self.stats.expired += 1;
        let waited = secs(now - req.started);
        let (code, text) = match &req.kind {
            ReqKind::Accept {
                key, reservation, ..
            } => match reservation {
                Some(r) => {
                    let client = self
                        .drop_route(r.connect)
                        .map(|route| route.client)
                        .unwrap_or_else(|| "?".to_string());
                    (
                        408,
                        format!(
                            "accept {key} expired after {waited}: in doubt: offered to {client} as conn={}, no answer came back",
                            r.conn
                        ),
                    )
                }
                None => (
                    408,
                    format!("accept {key} expired after {waited}: no connect arrived"),
                ),
            },
            ReqKind::Connect { key } => {
                let key = key.clone();
                self.end_connect(now, ticket, None);
                (
                    408,
                    format!("connect {key} expired after {waited}: no acceptor was found"),
                )
            }
            ReqKind::Config { op, .. } => (
                504,
                format!(
                    "{} got no answer from the mothership within {waited}",
                    match op {
                        ConfigOp::Set { path, .. } => format!("set {path}"),
                        ConfigOp::Claim { pattern, .. } => format!("claim {pattern}"),
                    }
                ),
            ),
        };
        self.finish_client(req.client, code, &text);
    }
}

fn config_error_code(e: &ConfigError) -> u16 {
    match e {
        ConfigError::NoSuchPath(_) => 404,
        ConfigError::HostNotSettable(_) => 403,
        ConfigError::NoFreeNode(_) => 409,
        ConfigError::Limit(_) => 507,
        _ => 400,
    }
}

fn msg_name(m: &ShipMsg) -> &'static str {
    match m {
        ShipMsg::Hello { .. } => "Hello",
        ShipMsg::Beat { .. } => "Beat",
        ShipMsg::Snapshot { .. } => "Snapshot",
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

    fn handle(&mut self, now: Instant, input: Input<Self::Command>) -> Result<(), ShipError> {
        let now = self.clock.advance(now);
        let result = match input {
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
            Input::ClientOpened(c) => {
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
            Input::Command(ShipCommand::Persisted { version }) => {
                self.on_persisted(now, version);
                Ok(())
            }
        };
        self.flush_summary();
        result
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.advance(now);
        while let Some(t) = self.timers.pop_due(now) {
            self.on_timer(now, t);
        }
        self.flush_summary();
        debug_assert!(self.poll_timeout().is_none_or(|t| t > now));
    }

    fn poll_output(&mut self) -> Option<Output<ShipEvent>> {
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
}

/// Encodes a line for a ship client port (used by tests and the simulator).
pub fn request_line(line: &str) -> Bytes {
    Bytes::from(format!("{line}\n"))
}

#[cfg(test)]
mod tests;
