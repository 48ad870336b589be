//! The flood daemon's machine: one per site (SPEC.md §8).
//!
//! It belongs to the groups its configuration names. In each group the master collects
//! joins and estimates and distributes the topology; every site measures round trips and
//! bandwidth, floods what its clients hand in along a spanning tree of the topology
//! (or, in the seed's plain mode, to every neighbour), exchanges digests with its
//! neighbours, pulls what they show it missed, and hands what arrives to the export
//! command in bundles.

mod checks;
mod clients;
mod data;
mod durable;
mod sites;
mod store;
#[cfg(test)]
mod tests;

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use thiserror::Error;

use super::bundle::LostReason;
use super::command::{ClientReader, ReaderLimits};
use super::config::{FloodConfig, FloodMode, GroupDef, LocalDef, SiteDef};
use super::msg::{FloodMsg, MAX_GROUP_SITES, SiteInfo};
use super::state::FloodState;
use crate::machine::{
    ClientId, ClientOrigin, EffectError, EffectId, Input, Machine, Outbox, OutputOf, PeerAddr,
    Timers, debug_check,
};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::Frame;

use self::store::Store;

/// Limits and timings that are not in the configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloodLimits {
    /// Client-port line and update limits.
    pub reader: ReaderLimits,
    /// A client that leaves a line (or a body) unfinished this long is closed.
    pub partial_line_timeout: Duration,
    /// Streams a group tracks at most (origins × incarnations); the idlest go first.
    pub max_streams: usize,
    /// Out-of-order sequence numbers a stream remembers at most.
    pub max_above: usize,
    /// First pause after a failed export; doubles up to `export_retry_max`.
    pub export_retry_min: Duration,
    /// Longest pause between export attempts.
    pub export_retry_max: Duration,
    /// Longest a topology-generator command may run.
    pub generator_timeout: Duration,
    /// Lost ranges waiting for the export command at most (older ones are counted and
    /// dropped).
    pub max_lost_records: usize,
}

impl Default for FloodLimits {
    fn default() -> Self {
        FloodLimits {
            reader: ReaderLimits::default(),
            partial_line_timeout: Duration::from_secs(30),
            max_streams: 8192,
            max_above: 65_536,
            export_retry_min: Duration::from_secs(1),
            export_retry_max: Duration::from_secs(60),
            generator_timeout: Duration::from_secs(30),
            max_lost_records: 10_000,
        }
    }
}

/// Everything a site's machine is built from: the configuration file, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct FloodSettings {
    /// This site.
    pub me: SiteInfo,
    /// Every site the file defines whose address is known (this one included).
    pub sites: Vec<SiteInfo>,
    /// The groups this site is in.
    pub groups: Vec<GroupDef>,
    /// Local parameters.
    pub local: LocalDef,
    /// Limits.
    pub limits: FloodLimits,
    /// Planted bug for the simulator's canary: an update pulled again after it was
    /// delivered is exported again.
    #[doc(hidden)]
    pub canary_duplicate_export: bool,
    /// Keep a state file (`flotilla floodd --state`): the machine asks for
    /// [`FloodEffect::Store`] before every export run and whenever what must survive a
    /// crash changed.
    pub durable: bool,
    /// The state to resume from (the state file, read at start); taken by
    /// [`Flood::new`].
    pub restore: Option<FloodState>,
}

/// Why a configuration cannot run as the named site.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SettingsError {
    /// No `site-define` has this name.
    #[error("no site named {0} is defined (sites: {1})")]
    NoSuchSite(String, String),
    /// The site is in no group: it would have nothing to do.
    #[error("site {0} is in no group: add it to a group with (:site {0})")]
    NoGroup(String),
    /// An address that must be known is not.
    #[error("site {0}: hostname {1} does not resolve; give the site an (:inet-address ...)")]
    Unresolved(String, String),
}

impl FloodSettings {
    /// Resolves `cfg` for the site named `me`. `resolve` turns a site's hostname into an
    /// address (the caller's I/O); a site with an `inet-address` is not resolved. Sites
    /// that do not resolve are left out (they can still join), except this site and the
    /// masters of its groups, which are needed.
    pub fn from_config(
        cfg: &FloodConfig,
        me: &str,
        resolve: &mut dyn FnMut(&SiteDef) -> Option<IpAddr>,
    ) -> Result<Self, SettingsError> {
        let Some(mine) = cfg.site(me) else {
            let names: Vec<&str> = cfg.sites.iter().map(|s| s.name.as_str()).collect();
            return Err(SettingsError::NoSuchSite(me.to_string(), names.join(", ")));
        };
        let groups: Vec<GroupDef> = cfg.groups_of(me).cloned().collect();
        if groups.is_empty() {
            return Err(SettingsError::NoGroup(me.to_string()));
        }
        let needed: BTreeSet<&str> = groups
            .iter()
            .map(|g| g.master.as_str())
            .chain([mine.name.as_str()])
            .collect();
        let mut sites = Vec::new();
        for s in &cfg.sites {
            let ip = s.inet_address.or_else(|| resolve(s));
            match ip {
                Some(ip) => sites.push(SiteInfo {
                    name: s.name.clone(),
                    data: SocketAddr::new(ip, s.data_port),
                    client_port: s.client_port,
                    position: s.latitude.zip(s.longitude),
                }),
                None if needed.contains(s.name.as_str()) => {
                    return Err(SettingsError::Unresolved(
                        s.name.clone(),
                        s.hostname.clone().unwrap_or_default(),
                    ));
                }
                None => {}
            }
        }
        let me = sites
            .iter()
            .find(|s| s.name == mine.name)
            .cloned()
            .expect("this site was resolved above");
        Ok(FloodSettings {
            me,
            sites,
            groups,
            local: cfg.local.clone(),
            limits: FloodLimits::default(),
            canary_duplicate_export: false,
            durable: false,
            restore: None,
        })
    }
}

/// Commands from the embedding program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloodCommand {
    /// Floods `data` to `group` (the only group when `None`).
    Flood {
        /// Group.
        group: Option<String>,
        /// The update.
        data: Bytes,
    },
    /// The daemon is about to stop: let the export run in flight finish and, with
    /// `drain` (no state file), export everything waiting first; [`FloodEvent::Stopped`]
    /// says when it may stop. No new run starts without `drain`.
    Stop {
        /// Export everything waiting before saying `Stopped`.
        drain: bool,
    },
}

/// Why an input was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FloodError {
    /// A frame that does not decode.
    #[error("bad frame: {0}")]
    Decode(#[from] crate::wire::DecodeError),
    /// A frame of another protocol.
    #[error("not a flood frame (kind {0})")]
    Family(crate::wire::Kind),
    /// A group this site is not in.
    #[error("no group {0} here (this site is in: {1})")]
    NoSuchGroup(String, String),
    /// No group named where one must be.
    #[error("this site is in several groups ({0}): name one")]
    GroupNeeded(String),
    /// An update past the limit.
    #[error("an update of {size} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An update larger than the whole storage.
    #[error("an update of {size} bytes does not fit in data-storage-max ({max} bytes)")]
    LargerThanStorage {
        /// Its size.
        size: usize,
        /// `data-storage-max`.
        max: u64,
    },
    /// A client id the machine does not know.
    #[error("unknown client {0}")]
    UnknownClient(ClientId),
    /// An effect outcome nobody asked for.
    #[error("unknown effect {0}")]
    UnknownEffect(EffectId),
}

/// What the machine tells the embedding program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloodEvent {
    /// An update reached this site for the first time.
    Delivered {
        /// Group.
        group: String,
        /// Origin.
        origin: String,
        /// Incarnation.
        incarnation: u64,
        /// Sequence number.
        seq: u64,
    },
    /// Digests show updates this site does not have; it is fetching them.
    Missing {
        /// Group.
        group: String,
        /// Origin.
        origin: String,
        /// Incarnation.
        incarnation: u64,
        /// First missing.
        from: u64,
        /// Last missing.
        to: u64,
    },
    /// Updates that will not be exported here.
    Lost {
        /// Group.
        group: String,
        /// Origin.
        origin: String,
        /// Incarnation.
        incarnation: u64,
        /// First lost.
        from: u64,
        /// Last lost.
        to: u64,
        /// Why.
        reason: LostReason,
    },
    /// A new topology was adopted (or, at the master, computed).
    Topology {
        /// Group.
        group: String,
        /// Version.
        version: u64,
        /// Members.
        members: usize,
        /// Links.
        links: usize,
    },
    /// The master added a site that asked to join.
    Joined {
        /// Group.
        group: String,
        /// Site.
        site: String,
    },
    /// A site unheard of for `site-purge-period` was dropped.
    Purged {
        /// Site.
        site: String,
    },
    /// The topology-generator command failed; the built-in generator was used.
    GeneratorFailed {
        /// Group.
        group: String,
        /// Why.
        error: String,
    },
    /// An export run failed (it will be retried).
    ExportFailed {
        /// Why.
        error: String,
    },
    /// A client on this host asked the daemon to stop.
    Terminate,
    /// After [`FloodCommand::Stop`]: the export pipeline is quiet, the daemon may stop.
    Stopped,
    /// Storing the state file failed (it is retried; export runs wait for it).
    StoreFailed {
        /// Why.
        error: String,
    },
}

/// Effects the machine asks its driver for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloodEffect {
    /// Run the export command with `bundle` on its standard input.
    Export {
        /// What the command reads.
        bundle: Bytes,
        /// Updates in it.
        updates: usize,
    },
    /// Run the topology-generator command with `input` on its standard input and give
    /// back its standard output.
    Generate {
        /// Group.
        group: String,
        /// The command (`topology-generator`).
        command: String,
        /// What it reads (SPEC.md §8.4).
        input: String,
    },
    /// Write `state` as the state file, whole and durably (replacing the one there).
    /// Serials increase; a store older than one already written must not replace it.
    Store {
        /// The file's bytes (`flotilla_core::flood::state`).
        state: Bytes,
        /// Its serial.
        serial: u64,
    },
}

/// What a successful effect produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloodEffectValue {
    /// The export command exited 0.
    Exported,
    /// The generator's standard output.
    Generated(String),
    /// The state file was stored.
    Stored,
}

/// Counters, as `statistics` shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FloodStats {
    /// Updates this site's clients flooded.
    pub originated: u64,
    /// Updates received for the first time.
    pub delivered: u64,
    /// Copies received of updates already here.
    pub duplicates: u64,
    /// Update frames sent (payload transmissions), pushed and pulled.
    pub payloads_sent: u64,
    /// Of those, sent in answer to pulls.
    pub payloads_pulled: u64,
    /// Digests sent.
    pub digests_sent: u64,
    /// Pulls sent.
    pub pulls_sent: u64,
    /// Updates found missing by digests.
    pub missing: u64,
    /// Of those, fetched from a neighbour.
    pub recovered: u64,
    /// Updates reported lost (never to be exported here).
    pub lost: u64,
    /// Updates handed to the export command (exit 0).
    pub exported: u64,
    /// Export runs that succeeded.
    pub export_runs: u64,
    /// Export runs that failed (non-zero exit, could not start).
    pub export_failures: u64,
    /// Export runs killed at `export-timeout`.
    pub export_timeouts: u64,
    /// Updates dropped for want of an export command.
    pub export_dropped: u64,
    /// Updates dropped from storage that were only kept for neighbours.
    pub dropped_kept: u64,
    /// Updates dropped from storage before they were exported.
    pub dropped_unexported: u64,
    /// Updates purged after `log-purge-period`.
    pub purged: u64,
    /// Lost ranges that could not be written to the export command (too many queued).
    pub lost_records_dropped: u64,
    /// Topologies computed (master) or adopted.
    pub topologies: u64,
    /// Topology-generator runs that failed or gave an unusable topology.
    pub generator_failures: u64,
    /// Frames refused (not decodable, or not for a group here).
    pub bad_frames: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Join(String),
    Update(String),
    Recompute(String),
    Ping(String),
    Bandwidth(String),
    Estimates(String),
    Digest(String),
    Pull(String, StreamKey),
    Purge,
    SitePurge,
    ExportRetry,
    PartialLine(ClientId),
    State,
}

/// A stream of updates: an origin site and the incarnation it started with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKey {
    /// Origin site.
    pub origin: String,
    /// Its incarnation.
    pub incarnation: u64,
}

/// What this site knows of one site.
#[derive(Clone, Debug)]
struct Site {
    info: SiteInfo,
    /// Last frame from it (or when it became known).
    heard: Instant,
    /// Smoothed round trip.
    rtt: Option<Duration>,
    /// Last bandwidth estimate, bytes per second.
    bandwidth: Option<u64>,
}

/// A topology as adopted.
#[derive(Clone, Debug)]
struct Topo {
    master_incarnation: u64,
    version: u64,
    members: Vec<SiteInfo>,
    index: BTreeMap<String, u32>,
    links: BTreeMap<(u32, u32), u64>,
    /// This site's neighbours (names).
    neighbours: BTreeSet<String>,
}

/// One neighbour as this site sees it in one group.
#[derive(Clone, Debug, Default)]
struct Neighbour {
    /// Last frame in this group from it (`None`: not yet).
    heard: Option<Instant>,
    /// Its marks per stream, from its digests.
    marks: BTreeMap<StreamKey, (u64, u64)>,
    /// Marks last sent to it per stream.
    sent: BTreeMap<StreamKey, (u64, u64)>,
    /// When a digest last went to it.
    last_digest: Option<Instant>,
    /// It asked for a full digest.
    wants_full: bool,
    /// A full digest from it has arrived.
    got_full: bool,
    /// Its answer to this site's first request (`Starts`) has arrived.
    got_start: bool,
}

/// What this site knows of one stream.
#[derive(Clone, Debug)]
struct Stream {
    /// The first sequence number this site is responsible for.
    base: u64,
    /// Everything in `base..=through` has arrived (or was reported lost).
    through: u64,
    /// Arrived beyond `through + 1`.
    above: BTreeSet<u64>,
    /// The highest sequence number known to exist.
    known: u64,
    /// Taken during this site's first window (from the marks or the update it first
    /// heard): when the window closes, `base` is lowered to where the neighbours say
    /// the stream stood when this site joined.
    provisional: bool,
    /// When `known` reached a value: each `(t, v)` says v was known to exist at t, so
    /// everything up to v was flooded before t. Kept for a while (the oldest beyond
    /// that as a floor), at most one per grain, to tell a site that just joined where
    /// the stream stood then.
    history: VecDeque<(Instant, u64)>,
    /// Missing sequence numbers already reported (as `Missing`) up to here.
    reported: u64,
    /// The pull in flight: whom, the first and last sequence numbers asked, attempts so
    /// far.
    pull: Option<Pull>,
    /// Last time anything about this stream arrived.
    touched: Instant,
}

impl Stream {
    fn new(base: u64, now: Instant) -> Self {
        Stream {
            base,
            through: base - 1,
            above: BTreeSet::new(),
            known: base - 1,
            provisional: false,
            history: VecDeque::from([(now, base - 1)]),
            reported: base - 1,
            pull: None,
            touched: now,
        }
    }

    /// Records in `history` that `known` holds at `now`: a new entry, or the latest one
    /// moved up when the one before it is younger than `grain` (so entries stay a grain
    /// apart; a lookup between them falls back to the earlier, which is still true).
    fn note_known(&mut self, now: Instant, grain: Duration, horizon: Duration) {
        let h = &mut self.history;
        if h.back().is_some_and(|&(_, v)| v >= self.known) {
            return;
        }
        let n = h.len();
        let close = n >= 2 && now.saturating_duration_since(h[n - 2].0) < grain;
        match h.back_mut() {
            Some(last) if close => *last = (now, self.known),
            _ => h.push_back((now, self.known)),
        }
        let old = now.saturating_sub(horizon);
        while h.len() >= 2 && h[1].0 <= old {
            h.pop_front();
        }
        // Past the cap, resolution goes from the old end (a lookup there is earlier,
        // still true).
        while h.len() > HISTORY_MAX {
            h.remove(1);
        }
    }

    /// The highest sequence number known to exist at `t`, as far as `history` tells.
    fn known_at(&self, t: Instant) -> Option<u64> {
        self.history
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map(|&(_, v)| v)
    }

    /// Takes the stream from `to` (below `base`) on: what arrived from `base` on is
    /// remembered as out of order, and `to..base` is missing.
    fn lower_base(&mut self, to: u64) {
        debug_assert!(to >= 1 && to < self.base);
        self.above.extend(self.base..=self.through);
        self.base = to;
        self.through = to - 1;
        self.reported = self.through;
        // Nothing to catch up: everything in `above` is at or past the old base, above
        // `to` (a catch-up loop here never ran; the mutation run showed it).
        debug_assert!(self.above.first().is_none_or(|&a| a > to));
    }

    fn has(&self, seq: u64) -> bool {
        seq < self.base || seq <= self.through || self.above.contains(&seq)
    }

    fn is_missing_any(&self) -> bool {
        self.known > self.through && (self.known - self.through) as usize > self.above.len()
    }

    /// Marks `seq` arrived; keeps `through` contiguous.
    fn arrive(&mut self, seq: u64) {
        self.known = self.known.max(seq);
        if seq == self.through + 1 {
            self.through = seq;
            while self.above.remove(&(self.through + 1)) {
                self.through += 1;
            }
        } else if seq > self.through {
            self.above.insert(seq);
        }
    }

    /// The missing sequence numbers, as inclusive ranges, at most `max` of them.
    fn missing_ranges(&self, max: usize) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut next = self.through + 1;
        for &a in self.above.iter().chain([self.known + 1].iter()) {
            if out.len() == max {
                break;
            }
            if a > next {
                out.push((next, a - 1));
            }
            next = next.max(a + 1);
        }
        out
    }
}

/// A pull in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pull {
    /// Asked of this neighbour.
    from: String,
    /// The first sequence number asked.
    first: u64,
    /// The last one asked.
    last: u64,
    /// Pulls of `first` so far.
    attempts: u32,
}

/// One group as this site sees it.
#[derive(Clone, Debug)]
struct Group {
    def: GroupDef,
    is_master: bool,
    /// At the master: who is in the group, and when each last asked to join.
    members: BTreeMap<String, Instant>,
    topo: Option<Topo>,
    /// At the master: the next version to hand out.
    next_version: u64,
    /// At the master: a generator run in flight.
    generating: Option<EffectId>,
    /// At the master: link measurements `(reporter, measured) → (rtt, bandwidth)`.
    estimates: BTreeMap<(String, String), (Duration, Option<u64>)>,
    neighbours: BTreeMap<String, Neighbour>,
    streams: BTreeMap<StreamKey, Stream>,
    /// Set from the first topology until every neighbour has sent a full digest (or
    /// [`ADOPT_ROUNDS`] digest rounds passed): streams first heard of meanwhile are taken
    /// from their next update on, since a site that just started is not responsible for
    /// what was flooded before it. Never set again.
    adopt_until: Option<Instant>,
    /// Whether the site is still in that first window (from its start; it closes once
    /// `adopt_until` passes or every neighbour has answered).
    fresh: bool,
    /// When this site adopted its first topology of the group.
    joined: Option<Instant>,
    /// In the first window: per stream, the latest start a neighbour named (each is at
    /// or before the first update flooded after this site joined).
    starts: BTreeMap<StreamKey, u64>,
    /// Spanning-tree children of this site per origin, for the current topology.
    children: BTreeMap<String, Vec<String>>,
    /// This site's own stream in this group: the next sequence number.
    next_seq: u64,
    /// The latest lost ranges, for `gaps`.
    lost_log: VecDeque<(StreamKey, u64, u64, LostReason)>,
    /// Digest rounds since the last full digest.
    rounds: u32,
}

/// A client of the client port.
#[derive(Debug)]
struct Client {
    origin: ClientOrigin,
    reader: ClientReader,
}

/// The flood machine of one site.
#[derive(Debug)]
pub struct Flood {
    cfg: FloodSettings,
    incarnation: u64,
    rng: Rng,
    sites: BTreeMap<String, Site>,
    by_addr: BTreeMap<PeerAddr, String>,
    groups: BTreeMap<String, Group>,
    store: Store,
    clients: BTreeMap<ClientId, Client>,
    timers: Timers<Timer>,
    outbox: Outbox<FloodEvent, FloodEffect>,
    /// Round-trip probes in flight: nonce → (site, sent).
    pings: BTreeMap<u64, (String, Instant)>,
    /// Bandwidth probes in flight: nonce → (site, sent, bytes).
    probes: BTreeMap<u64, (String, Instant, usize)>,
    next_nonce: u64,
    next_effect: u64,
    stats: FloodStats,
    /// Replies to the client being read, written once when its bytes are handled.
    batch: Option<(ClientId, bytes::BytesMut)>,
    /// With a state file: what is stored of it.
    durable: Option<durable::Durable>,
    /// Asked to stop (draining or not).
    stopping: Option<bool>,
    /// `Stopped` was said.
    stopped: bool,
}

/// Most probes of each kind remembered at once (unanswered ones are forgotten first).
const MAX_PROBES: usize = 256;
/// Bytes of a bandwidth probe.
const PROBE_BYTES: usize = 64 << 10;
/// A master waits this long after a join before recomputing, so that sites starting
/// together make one topology, not one each.
const RECOMPUTE_SETTLE: Duration = Duration::from_millis(500);
/// Digest rounds between full digests (the rest carry only what changed).
const FULL_EVERY: u32 = 8;
/// Digest rounds of silence after which a digest goes anyway, as a keepalive.
const KEEPALIVE_ROUNDS: u32 = 4;
/// Digest rounds of silence after which a neighbour is classified down.
const DOWN_ROUNDS: u32 = 12;
/// Digest rounds after a site's first topology at most during which streams it hears
/// of are taken from their next update on (it ends sooner once every neighbour has sent
/// a full digest).
const ADOPT_ROUNDS: u32 = 20;
/// Entries of a stream's `history` at most.
const HISTORY_MAX: usize = 256;
/// A stream's `history` entries are at least this many to a digest period apart.
const HISTORY_GRAIN_PER_PERIOD: u32 = 8;
/// How far back a neighbour looks for where streams stood when a site joined, beyond the
/// time the site says it joined: the round trip to it, doubled, within these bounds (and
/// the default while it is not measured).
const JOIN_MARGIN_MIN: Duration = Duration::from_millis(20);
const JOIN_MARGIN_MAX: Duration = Duration::from_secs(1);
const JOIN_MARGIN_DEFAULT: Duration = Duration::from_millis(250);
/// Sequence numbers asked per pull.
const PULL_BATCH: u64 = 256;
/// Pulls of the same sequence number before the next neighbour is asked.
const PULL_TRIES: u32 = 3;

impl Flood {
    /// A site's machine at `now`. `rng` draws its incarnation, probe targets, and the
    /// master's random topology cycles.
    pub fn new(mut cfg: FloodSettings, now: Instant, mut rng: Rng) -> Self {
        let restore = cfg.restore.take();
        let incarnation = rng.next_u64() | 1;
        let mut sites = BTreeMap::new();
        let mut by_addr = BTreeMap::new();
        for s in &cfg.sites {
            by_addr.insert(s.data, s.name.clone());
            sites.insert(
                s.name.clone(),
                Site {
                    info: s.clone(),
                    heard: now,
                    rtt: None,
                    bandwidth: None,
                },
            );
        }
        let mut groups = BTreeMap::new();
        for def in &cfg.groups {
            let is_master = def.master == cfg.me.name;
            let members = if is_master {
                def.sites
                    .iter()
                    .filter(|s| sites.contains_key(*s))
                    .map(|s| (s.clone(), now))
                    .collect()
            } else {
                BTreeMap::new()
            };
            groups.insert(
                def.name.clone(),
                Group {
                    def: def.clone(),
                    is_master,
                    members,
                    topo: None,
                    next_version: 1,
                    generating: None,
                    estimates: BTreeMap::new(),
                    neighbours: BTreeMap::new(),
                    streams: BTreeMap::new(),
                    adopt_until: None,
                    fresh: true,
                    joined: None,
                    starts: BTreeMap::new(),
                    children: BTreeMap::new(),
                    next_seq: 1,
                    lost_log: VecDeque::new(),
                    rounds: 0,
                },
            );
        }
        let store = Store::new(cfg.local.data_storage_max);
        let mut f = Flood {
            cfg,
            incarnation,
            rng,
            sites,
            by_addr,
            groups,
            store,
            clients: BTreeMap::new(),
            timers: Timers::default(),
            outbox: Outbox::default(),
            pings: BTreeMap::new(),
            probes: BTreeMap::new(),
            next_nonce: 1,
            next_effect: 1,
            stats: FloodStats::default(),
            batch: None,
            durable: None,
            stopping: None,
            stopped: false,
        };
        let names: Vec<String> = f.groups.keys().cloned().collect();
        for g in names {
            f.start_group(now, &g);
        }
        f.arm_site_purge(now);
        if f.cfg.durable {
            f.durable = Some(durable::Durable::new());
            f.timers.set(Timer::State, now + durable::STATE_PERIOD);
        }
        if let Some(state) = restore {
            f.restore(now, state);
        }
        debug_check(&f);
        f
    }

    /// This site's name.
    pub fn name(&self) -> &str {
        &self.cfg.me.name
    }

    /// This site's stream incarnation (new at every start).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &FloodSettings {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &FloodStats {
        &self.stats
    }

    /// Bytes of updates held now (never more than `data-storage-max`).
    pub fn stored_bytes(&self) -> u64 {
        self.store.bytes()
    }

    /// Names of the groups this site is in.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    /// The adopted topology of `group`: version, members, and links by name with cost.
    pub fn topology(&self, group: &str) -> Option<TopologyView> {
        let t = self.groups.get(group)?.topo.as_ref()?;
        Some(TopologyView {
            version: t.version,
            master_incarnation: t.master_incarnation,
            members: t.members.iter().map(|m| m.name.clone()).collect(),
            links: t
                .links
                .iter()
                .map(|(&(a, b), &c)| {
                    (
                        t.members[a as usize].name.clone(),
                        t.members[b as usize].name.clone(),
                        c,
                    )
                })
                .collect(),
        })
    }

    /// Whether this site has `seq` of the stream (or is not responsible for it), and the
    /// first sequence number it is responsible for.
    pub fn stream_marks(&self, group: &str, stream: &StreamKey) -> Option<StreamMarks> {
        let s = self.groups.get(group)?.streams.get(stream)?;
        Some(StreamMarks {
            base: s.base,
            through: s.through,
            known: s.known,
            above: s.above.len(),
        })
    }

    /// How many updates of a stream within `from..=to` this site stores now.
    pub fn held_between(&self, group: &str, stream: &StreamKey, from: u64, to: u64) -> usize {
        self.store.held(group, stream, from, to).count()
    }

    /// Whether this site counts `site` as a neighbour that is up in `group`.
    pub fn neighbour_up(&self, now: Instant, group: &str, site: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| g.neighbours.contains_key(site) && self.is_up(now, g, site))
    }

    fn resolve_group(&self, group: Option<&str>) -> Result<String, FloodError> {
        let names = || self.groups.keys().cloned().collect::<Vec<_>>().join(", ");
        match group {
            Some(g) if self.groups.contains_key(g) => Ok(g.to_string()),
            Some(g) => Err(FloodError::NoSuchGroup(g.to_string(), names())),
            None if self.groups.len() == 1 => {
                Ok(self.groups.keys().next().cloned().unwrap_or_default())
            }
            None => Err(FloodError::GroupNeeded(names())),
        }
    }

    fn send(&mut self, to: PeerAddr, msg: &FloodMsg) {
        self.outbox.transmit(to, msg.to_frame());
    }

    fn send_frame(&mut self, to: PeerAddr, frame: Frame) {
        self.outbox.transmit(to, frame);
    }

    fn addr_of(&self, site: &str) -> Option<PeerAddr> {
        self.sites.get(site).map(|s| s.info.data)
    }

    fn effect_id(&mut self) -> EffectId {
        let id = EffectId(self.next_effect);
        self.next_effect += 1;
        id
    }

    fn nonce(&mut self) -> u64 {
        self.next_nonce += 1;
        self.next_nonce
    }

    /// Learns (or refreshes) a site's address and details.
    fn learn_site(&mut self, now: Instant, info: &SiteInfo) {
        if info.name == self.cfg.me.name {
            return;
        }
        match self.sites.get_mut(&info.name) {
            Some(s) if s.info == *info => {}
            Some(s) => {
                self.by_addr.remove(&s.info.data);
                s.info = info.clone();
                // Another site may have had this address before; it is this one's now.
                if let Some(old) = self.by_addr.insert(info.data, info.name.clone())
                    && old != info.name
                {
                    self.sites.remove(&old);
                }
            }
            None => {
                if self.sites.len() >= MAX_GROUP_SITES * 2 {
                    return;
                }
                if let Some(old) = self.by_addr.insert(info.data, info.name.clone())
                    && old != info.name
                {
                    self.sites.remove(&old);
                }
                self.sites.insert(
                    info.name.clone(),
                    Site {
                        info: info.clone(),
                        heard: now,
                        rtt: None,
                        bandwidth: None,
                    },
                );
            }
        }
    }

    fn is_up(&self, now: Instant, g: &Group, site: &str) -> bool {
        let Some(n) = g.neighbours.get(site) else {
            return false;
        };
        let down_after = g.def.digest_period * DOWN_ROUNDS;
        match n.heard {
            Some(t) => now.saturating_duration_since(t) < down_after,
            // Not heard yet since the topology came: up until proven otherwise.
            None => true,
        }
    }

    fn on_frame(&mut self, now: Instant, from: PeerAddr, frame: &Frame) -> Result<(), FloodError> {
        if (frame.kind.0 >> 8) as u8 != super::msg::FAMILY {
            return Err(FloodError::Family(frame.kind));
        }
        let msg = FloodMsg::decode(frame)?;
        let sender = self.by_addr.get(&from).cloned();
        if let Some(name) = &sender
            && let Some(s) = self.sites.get_mut(name)
        {
            s.heard = now;
        }
        match msg {
            FloodMsg::Join {
                group,
                site,
                relayed,
            } => self.on_join(now, from, &group, site, relayed),
            FloodMsg::Topology {
                group,
                master_incarnation,
                version,
                members,
                links,
            } => self.on_topology(
                now,
                sender.as_deref(),
                &group,
                master_incarnation,
                version,
                members,
                links,
            ),
            FloodMsg::Ping { nonce } => {
                self.send(from, &FloodMsg::Pong { nonce });
                Ok(())
            }
            FloodMsg::Pong { nonce } => {
                self.on_pong(now, nonce);
                Ok(())
            }
            FloodMsg::BwProbe { nonce, .. } => {
                self.send(from, &FloodMsg::BwAck { nonce });
                Ok(())
            }
            FloodMsg::BwAck { nonce } => {
                self.on_bw_ack(now, nonce);
                Ok(())
            }
            FloodMsg::Estimates { group, entries } => {
                self.on_estimates(sender.as_deref(), &group, entries);
                Ok(())
            }
            FloodMsg::Update {
                group,
                origin,
                incarnation,
                seq,
                data,
                pulled,
            } => {
                let key = StreamKey {
                    origin,
                    incarnation,
                };
                self.on_update(now, sender.as_deref(), &group, key, seq, data, pulled)
            }
            FloodMsg::Digest {
                group,
                full,
                want_full,
                joined_us,
                entries,
            } => self.on_digest(
                now,
                sender.as_deref(),
                &group,
                full,
                want_full.then_some(joined_us),
                entries,
            ),
            FloodMsg::Starts { group, entries } => {
                self.on_starts(now, sender.as_deref(), &group, entries)
            }
            FloodMsg::Pull {
                group,
                origin,
                incarnation,
                ranges,
            } => {
                let key = StreamKey {
                    origin,
                    incarnation,
                };
                self.on_pull(from, &group, &key, &ranges);
                Ok(())
            }
            FloodMsg::Evicted {
                group,
                origin,
                incarnation,
                ranges,
            } => {
                let key = StreamKey {
                    origin,
                    incarnation,
                };
                self.on_evicted(now, sender.as_deref(), &group, &key, &ranges);
                Ok(())
            }
        }
    }

    fn on_timer(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::Join(g) => self.on_join_timer(now, &g),
            Timer::Update(g) => self.on_update_timer(now, &g),
            Timer::Recompute(g) => self.recompute(now, &g),
            Timer::Ping(g) => self.on_ping_timer(now, &g),
            Timer::Bandwidth(g) => self.on_bandwidth_timer(now, &g),
            Timer::Estimates(g) => self.on_estimates_timer(now, &g),
            Timer::Digest(g) => self.on_digest_timer(now, &g),
            Timer::Pull(g, s) => self.on_pull_timer(now, &g, &s),
            Timer::Purge => self.on_purge(now),
            Timer::SitePurge => self.on_site_purge(now),
            Timer::ExportRetry => self.pump_export(now),
            Timer::PartialLine(c) => self.on_partial_line(c),
            Timer::State => self.on_state_timer(now),
        }
    }

    fn on_effect(
        &mut self,
        now: Instant,
        id: EffectId,
        outcome: Result<FloodEffectValue, EffectError>,
    ) -> Result<(), FloodError> {
        if self.store.export_in_flight() == Some(id) {
            self.on_export_done(now, outcome);
            return Ok(());
        }
        if self
            .durable
            .as_ref()
            .is_some_and(|d| d.store_in_flight() == Some(id))
        {
            self.on_store_done(now, outcome);
            return Ok(());
        }
        let group = self
            .groups
            .iter()
            .find(|(_, g)| g.generating == Some(id))
            .map(|(n, _)| n.clone());
        match group {
            Some(g) => {
                self.on_generated(now, &g, outcome);
                Ok(())
            }
            None => Err(FloodError::UnknownEffect(id)),
        }
    }
}

/// A group's topology as the embedding program sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyView {
    /// Version (within the master's incarnation).
    pub version: u64,
    /// The master's incarnation.
    pub master_incarnation: u64,
    /// Members, by name.
    pub members: Vec<String>,
    /// Links by name, with their cost in microseconds.
    pub links: Vec<(String, String, u64)>,
}

/// A stream's marks at one site.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct StreamMarks {
    /// First sequence number the site is responsible for.
    pub base: u64,
    /// Everything up to here arrived or was reported lost.
    pub through: u64,
    /// Highest known to exist.
    pub known: u64,
    /// Arrived out of order beyond `through`.
    pub above: usize,
}

impl Machine for Flood {
    type Command = FloodCommand;
    type Event = FloodEvent;
    type Error = FloodError;
    type Effect = FloodEffect;
    type EffectValue = FloodEffectValue;

    fn handle(
        &mut self,
        now: Instant,
        input: Input<FloodCommand, FloodEffectValue>,
    ) -> Result<(), FloodError> {
        let r = match input {
            Input::Frame { from, frame } => {
                let r = self.on_frame(now, from, &frame);
                if r.is_err() {
                    self.stats.bad_frames += 1;
                }
                r
            }
            Input::ClientOpened { client, origin } => {
                self.on_client_opened(client, origin);
                Ok(())
            }
            Input::ClientData(c, data) => self.on_client_data(now, c, &data),
            Input::ClientClosed(c) => {
                self.clients.remove(&c);
                self.timers.cancel(&Timer::PartialLine(c));
                Ok(())
            }
            Input::Command(FloodCommand::Flood { group, data }) => {
                self.flood(now, group.as_deref(), data).map(|_| ())
            }
            Input::Command(FloodCommand::Stop { drain }) => {
                self.on_stop(now, drain);
                Ok(())
            }
            Input::EffectDone { id, outcome } => self.on_effect(now, id, outcome),
        };
        self.check_stopped();
        debug_check(self);
        r
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_due(now) {
            self.on_timer(now, t);
        }
        self.check_stopped();
        debug_check(self);
    }

    fn poll_output(&mut self) -> Option<OutputOf<Self>> {
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.check()
    }
}

/// Whether `mode` pushes payloads along a spanning tree.
fn is_tree(mode: FloodMode) -> bool {
    mode == FloodMode::Tree
}
