//! The ship plug-in: motherships and daughterships (SPEC.md §5) under the simulator.
//!
//! It builds a hierarchy from `(:ship (:parents …))`, reads every client request and
//! reply on the wire, and checks after every step that
//! - every request gets at most one final reply, and gets it by its deadline (judged in
//!   the origin ship's own clock) unless its client or ship went away;
//! - no connection id is handed out twice, and both halves of a match name the same key;
//! - copies of the configuration at the same `(epoch, version)` are identical, and a
//!   ship's version never goes backwards within an epoch (no change lost or applied
//!   twice).
//!
//! - with a durable mothership, its stored copy holds every version a client was told
//!   was applied: after a restart from it, the root's version is never below one (nothing
//!   acknowledged is lost).
//!
//! Predicates for `(:expect …)`: `all-answered`, `pairs-matched`, `config-converged`,
//! `consistent` (every connect told it matched has its acceptor told the same).
//! `(:workload …)` generates many clients from the run's seed. The store effect of a
//! durable mothership writes to a "disk" kept here, which survives the node's crash.
//!
//! `ship-canary` runs the same checks over ships with a planted bug (now and then a ship
//! hands out a connection id it already used): a sweep must catch it.

use core::time::Duration;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use flotilla_core::line::parse_reply;
use flotilla_core::sexpr::{Node, SexprError};
use flotilla_core::ship::command::{Request, parse_request};
use flotilla_core::ship::tree::ConfigTree;
use flotilla_core::ship::{Ship, ShipCommand, ShipConfig, ShipEffect, ShipTimings, Stored};
use flotilla_core::wire::Writer;
use flotilla_core::{ClientId, EffectError, Instant, Rng};

use crate::protocol::{NodeSpec, Observation, ObservationOf, ParseCtx, Protocol, Workload};
use crate::world::{Status, World};

/// Client traffic generated per seed.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSpec {
    /// Accept/connect pairs on keys `pair-K`, each half on a random ship.
    pub pairs: u32,
    /// Connects on keys `lonely-K` that no accept will ever match (they must expire).
    pub lonely: u32,
    /// `set wl-pK vK` requests (global parameters) on random ships.
    pub sets: u32,
    /// `claim PATTERN` requests on random ships.
    pub claims: u32,
    /// The pattern claims use.
    pub claim_pattern: String,
    /// Requests are issued at uniform random times in `[from, to]`.
    pub from: Duration,
    /// See `from`.
    pub to: Duration,
    /// Timeout of every accept and connect.
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Accept(String),
    Connect(String),
    Config,
    Immediate,
}

#[derive(Clone, Debug)]
struct Req {
    node: usize,
    /// The node's life the request was made in: a restart forgets it.
    incarnation: u64,
    kind: Kind,
    issued: Instant,
    deadline: Option<Instant>,
}

/// One node's pauses in its current life, in its own clock.
#[derive(Clone, Debug, Default)]
struct Pauses {
    /// When the current pause began, if the node is paused now.
    since: Option<Instant>,
    /// The life these belong to.
    life: u64,
    /// Pauses that ended: `(began, ended)`.
    spans: Vec<(Instant, Instant)>,
}

#[derive(Clone, Debug, Default)]
struct ConnUse {
    key: Option<String>,
    accepts: u32,
    connects: u32,
}

/// The ship protocol as the simulator sees it.
#[derive(Clone, Debug)]
pub struct ShipProtocol {
    /// Run ships with the planted bug (protocol `ship-canary`).
    canary: bool,
    /// The disk says a store succeeded without keeping it (see [`ShipProtocol::lying_disk`]).
    lying_disk: bool,
    parents: BTreeMap<usize, Option<usize>>,
    escalate: bool,
    deadlines: bool,
    durable: bool,
    /// Nodes that run as the seed's ships did: no escalation, no deadlines.
    legacy: BTreeSet<usize>,
    timings: ShipTimings,
    config: ConfigTree,
    workload: Option<WorkloadSpec>,
    // Per-run records.
    waiting: BTreeMap<ClientId, VecDeque<Req>>,
    partial: BTreeMap<ClientId, Vec<u8>>,
    finals: BTreeMap<ClientId, Vec<(Kind, u16, String)>>,
    by_deadline: BTreeSet<(Instant, ClientId)>,
    conns: BTreeMap<String, ConnUse>,
    copies: BTreeMap<(u64, u64), u64>,
    seen: Vec<Option<(u64, u64, u64)>>,
    acked_versions: BTreeSet<u64>,
    accept_clients: BTreeMap<String, Vec<ClientId>>,
    /// What each durable root stored: its "disk", which survives crashes.
    stored: BTreeMap<usize, Stored>,
    violation: Option<String>,
    /// Per node, its pauses: a ship frozen across a deadline answers late, which is the
    /// pause's doing, not the protocol's.
    paused: Vec<Pauses>,
    root_frames: u64,
    matches: u64,
}

impl Default for ShipProtocol {
    /// Every ship a child of `n1`; LAN timings scaled for quick simulations.
    fn default() -> Self {
        ShipProtocol {
            canary: false,
            lying_disk: false,
            parents: BTreeMap::new(),
            escalate: true,
            deadlines: true,
            durable: false,
            legacy: BTreeSet::new(),
            timings: ShipTimings {
                keepalive: Duration::from_millis(100),
                parent_timeout: Duration::from_millis(500),
                child_timeout: Duration::from_millis(700),
                retry: Duration::from_millis(50),
                progress: Duration::from_millis(500),
                backoff_min: Duration::from_millis(20),
                backoff_max: Duration::from_millis(500),
                default_timeout: Duration::from_secs(5),
                config_timeout: Duration::from_secs(3),
                offer_margin: Duration::from_millis(300),
            },
            config: ConfigTree::default(),
            workload: None,
            waiting: BTreeMap::new(),
            partial: BTreeMap::new(),
            finals: BTreeMap::new(),
            by_deadline: BTreeSet::new(),
            conns: BTreeMap::new(),
            copies: BTreeMap::new(),
            seen: Vec::new(),
            acked_versions: BTreeSet::new(),
            accept_clients: BTreeMap::new(),
            stored: BTreeMap::new(),
            violation: None,
            paused: Vec::new(),
            root_frames: 0,
            matches: 0,
        }
    }
}

fn err(n: &Node, msg: impl Into<String>) -> SexprError {
    SexprError::new(n.pos, msg)
}

fn one(form: &Node) -> Result<&Node, SexprError> {
    match form.args() {
        [x] => Ok(x),
        _ => Err(err(
            form,
            format!("({}) takes one value", form.head().unwrap_or("?")),
        )),
    }
}

fn bool_of(n: &Node) -> Result<bool, SexprError> {
    match n.text()?.as_str() {
        "true" | "on" | "yes" => Ok(true),
        "false" | "off" | "no" => Ok(false),
        _ => Err(err(n, "expected true or false")),
    }
}

fn digest(tree: &ConfigTree) -> u64 {
    let mut w = Writer::new();
    tree.encode(&mut w);
    let bytes = w.finish();
    // FNV-1a: only equality matters here.
    flotilla_core::fnv::fnv1a(bytes.iter().copied())
}

impl ShipProtocol {
    /// The plug-in for `ship-canary`: ships with a planted bug, the same checks.
    pub fn canary() -> Self {
        ShipProtocol {
            canary: true,
            ..ShipProtocol::default()
        }
    }

    /// This plug-in with a disk that answers every store `Ok` but keeps none of them: a
    /// durable root restarts from nothing. It exists to show that the check "nothing
    /// acknowledged is lost" fires; a correct ship cannot pass a run with it.
    pub fn lying_disk(mut self) -> Self {
        self.lying_disk = true;
        self
    }

    /// The parent of node `i` in this scenario (`None` for the root).
    pub fn parent_of(&self, i: usize) -> Option<usize> {
        match self.parents.get(&i) {
            Some(p) => *p,
            None if i == 0 => None,
            None => Some(0),
        }
    }

    /// Frames delivered to root ships so far in this run.
    pub fn root_frames(&self) -> u64 {
        self.root_frames
    }

    /// Pairs matched so far in this run.
    pub fn matches(&self) -> u64 {
        self.matches
    }

    /// Final replies received by `client`, in order: `(code, text)`.
    pub fn finals_of(&self, client: ClientId) -> Vec<(u16, String)> {
        self.finals
            .get(&client)
            .map(|v| v.iter().map(|(_, c, t)| (*c, t.clone())).collect())
            .unwrap_or_default()
    }

    fn configure_ship(&mut self, form: &Node, ctx: &ParseCtx) -> Result<(), SexprError> {
        for item in form.args() {
            match item.head() {
                Some("parents") => {
                    for pair in item.args() {
                        match pair.as_list() {
                            Some([c, p]) => {
                                let (c, p) = (ctx.node(c)?, ctx.node(p)?);
                                self.parents.insert(c, Some(p));
                            }
                            Some([c]) => {
                                self.parents.insert(ctx.node(c)?, None);
                            }
                            _ => return Err(err(pair, "expected (CHILD PARENT) or (ROOT)")),
                        }
                    }
                }
                Some("escalate") => self.escalate = bool_of(one(item)?)?,
                Some("deadlines") => self.deadlines = bool_of(one(item)?)?,
                Some("durable") => self.durable = bool_of(one(item)?)?,
                Some("legacy") => {
                    for n in item.args() {
                        self.legacy.insert(ctx.node(n)?);
                    }
                }
                Some("config") => {
                    let text = one(item)?.text()?;
                    self.config = ConfigTree::parse(&text)
                        .map_err(|e| err(item, format!("in the configuration text at {e}")))?;
                }
                Some("bulk") => self.add_bulk(item)?,
                Some(name) => {
                    let d = one(item)?.duration()?;
                    let t = &mut self.timings;
                    let slot = match name {
                        "keepalive" => &mut t.keepalive,
                        "parent-timeout" => &mut t.parent_timeout,
                        "child-timeout" => &mut t.child_timeout,
                        "retry" => &mut t.retry,
                        "progress" => &mut t.progress,
                        "backoff-min" => &mut t.backoff_min,
                        "backoff-max" => &mut t.backoff_max,
                        "default-timeout" => &mut t.default_timeout,
                        "config-timeout" => &mut t.config_timeout,
                        "offer-margin" => &mut t.offer_margin,
                        other => return Err(err(item, format!("unknown ship setting :{other}"))),
                    };
                    *slot = d;
                }
                None => return Err(err(item, "expected (:setting value)")),
            }
        }
        // Validate the timings the way the machine will.
        let probe = ShipConfig {
            timings: self.timings.clone(),
            ..ShipConfig::mothership(crate::world::node_addr(0), ConfigTree::default())
        };
        Ship::new(probe, Instant::ZERO, Rng::from_seed(0)).map_err(|e| err(form, e.to_string()))?;
        Ok(())
    }

    /// `(:bulk N BYTES)`: N global parameters `bulk-K` of BYTES bytes each join the root's
    /// configuration, to grow it past one frame (and up to the size limit).
    fn add_bulk(&mut self, item: &Node) -> Result<(), SexprError> {
        let [n, bytes] = item.args() else {
            return Err(err(item, "expected (:bulk COUNT BYTES)"));
        };
        let (n, bytes) = (n.int_in(0, 1 << 20)?, bytes.int_in(1, 1 << 20)?);
        let value = "b".repeat(bytes as usize);
        for k in 0..n {
            let change = self
                .config
                .prepare_set(&format!("bulk-{k}"), &value)
                .map_err(|e| err(item, e.to_string()))?;
            if self.config.size() as isize + self.config.growth(&change)
                > flotilla_core::ship::tree::MAX_CONFIG_BYTES as isize
            {
                return Err(err(item, "the configuration would pass its size limit"));
            }
            self.config.apply(&change);
        }
        Ok(())
    }

    fn configure_workload(&mut self, form: &Node) -> Result<(), SexprError> {
        let mut w = WorkloadSpec {
            pairs: 0,
            lonely: 0,
            sets: 0,
            claims: 0,
            claim_pattern: "*".to_string(),
            from: Duration::from_secs(1),
            to: Duration::from_secs(2),
            timeout: self.timings.default_timeout,
        };
        for item in form.args() {
            let count = || one(item)?.int_in(0, 100_000).map(|v| v as u32);
            match item.head() {
                Some("pairs") => w.pairs = count()?,
                Some("lonely") => w.lonely = count()?,
                Some("sets") => w.sets = count()?,
                Some("claims") => w.claims = count()?,
                Some("claim-pattern") => w.claim_pattern = one(item)?.text()?,
                Some("from") => w.from = one(item)?.duration()?,
                Some("to") => w.to = one(item)?.duration()?,
                Some("timeout") => w.timeout = one(item)?.duration()?,
                _ => {
                    return Err(err(
                        item,
                        "expected (:pairs N), (:lonely N), (:sets N), (:claims N), (:claim-pattern P), (:from T), (:to T) or (:timeout D)",
                    ));
                }
            }
        }
        if w.to < w.from {
            return Err(err(form, "(:to T) is before (:from T)"));
        }
        self.workload = Some(w);
        Ok(())
    }

    fn violate(&mut self, msg: String) {
        if self.violation.is_none() {
            self.violation = Some(msg);
        }
    }

    fn on_request(&mut self, world: &World<Ship>, node: usize, client: ClientId, line: &str) {
        let now = world.local_now(node);
        let t = &self.timings;
        let (kind, timeout) = match parse_request(line) {
            Ok(Request::Accept { key, timeout, .. }) => (
                Kind::Accept(key),
                Some(timeout.unwrap_or(t.default_timeout)),
            ),
            Ok(Request::Connect { key, timeout, .. }) => (
                Kind::Connect(key),
                Some(timeout.unwrap_or(t.default_timeout)),
            ),
            Ok(Request::Set { .. } | Request::Claim { .. }) => {
                (Kind::Config, Some(t.config_timeout))
            }
            _ => (Kind::Immediate, None),
        };
        if let Kind::Accept(key) = &kind {
            self.accept_clients
                .entry(key.clone())
                .or_default()
                .push(client);
        }
        let deadline = if self.deadlines && !self.legacy.contains(&node) {
            timeout.map(|d| now + d)
        } else {
            None
        };
        if let Some(d) = deadline {
            self.by_deadline.insert((d, client));
        }
        self.waiting.entry(client).or_default().push_back(Req {
            node,
            incarnation: world.node(node).incarnation(),
            kind,
            issued: now,
            deadline,
        });
    }

    fn on_reply(&mut self, world: &World<Ship>, node: usize, client: ClientId, line: &str) {
        let Some((code, text)) = parse_reply(line) else {
            self.violate(format!(
                "{} sent {client} a line that is not a reply: {line:?}",
                world.name(node)
            ));
            return;
        };
        if code < 200 {
            return;
        }
        let Some(req) = self.waiting.get_mut(&client).and_then(|q| q.pop_front()) else {
            self.violate(format!(
                "{} sent {client} a final reply with no request waiting: {line:?}",
                world.name(node)
            ));
            return;
        };
        let now = world.local_now(node);
        if let Some(d) = req.deadline {
            self.by_deadline.remove(&(d, client));
            // Answered as soon as it resumed from a pause that spanned the deadline.
            let frozen = self.paused.get(node).is_some_and(|p| {
                p.spans
                    .iter()
                    .any(|&(a, b)| a <= d && d <= b && now <= b + Duration::from_millis(1))
            });
            if now > d && !frozen {
                self.violate(format!(
                    "{} answered {client} at {now}, after its deadline {d}: {line:?}",
                    world.name(node)
                ));
            }
        }
        let conn = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("conn="))
            .map(str::to_string);
        if code == 200 {
            match (&req.kind, conn) {
                (Kind::Accept(key), Some(c)) | (Kind::Connect(key), Some(c)) => {
                    let u = self.conns.entry(c.clone()).or_default();
                    match &req.kind {
                        Kind::Accept(_) => u.accepts += 1,
                        _ => u.connects += 1,
                    }
                    let key_mismatch = u.key.as_ref().is_some_and(|k| k != key);
                    u.key.get_or_insert_with(|| key.clone());
                    if u.accepts > 1 || u.connects > 1 {
                        self.violate(format!("connection id {c} was handed out twice"));
                    } else if key_mismatch {
                        self.violate(format!("connection id {c} matched two different keys"));
                    } else if u.accepts == 1 && u.connects == 1 {
                        self.matches += 1;
                    }
                }
                (Kind::Accept(k) | Kind::Connect(k), None) => {
                    self.violate(format!("a 200 for {k} without a connection id: {line:?}"));
                }
                (Kind::Config, _) => {
                    if let Some(v) = text.strip_prefix("version=").and_then(|v| v.parse().ok()) {
                        self.acked_versions.insert(v);
                    }
                }
                _ => {}
            }
        }
        self.finals
            .entry(client)
            .or_default()
            .push((req.kind, code, text.to_string()));
    }

    fn client_gone(&mut self, client: ClientId) {
        if let Some(q) = self.waiting.remove(&client) {
            for r in q {
                if let Some(d) = r.deadline {
                    self.by_deadline.remove(&(d, client));
                }
            }
        }
    }

    fn check_copy(&mut self, world: &World<Ship>, i: usize) -> Result<(), String> {
        let node = world.node(i);
        let Some(ship) = node.machine() else {
            return Ok(());
        };
        let (epoch, version) = (ship.epoch(), ship.version());
        if epoch == 0 {
            return Ok(());
        }
        let inc = node.incarnation();
        if let Some((pinc, pepoch, pversion)) = self.seen[i] {
            if pinc == inc && pepoch == epoch && version == pversion {
                return Ok(());
            }
            if pinc == inc && pepoch == epoch && version < pversion {
                return Err(format!(
                    "{} went back from version {pversion} to {version} in one epoch",
                    world.name(i)
                ));
            }
        }
        self.seen[i] = Some((inc, epoch, version));
        let d = digest(ship.tree());
        match self.copies.get(&(epoch, version)) {
            Some(&other) if other != d => Err(format!(
                "{} holds a different configuration at epoch {epoch:016x} version {version} than another ship: a change was lost or applied twice",
                world.name(i)
            )),
            Some(_) => Ok(()),
            None => {
                self.copies.insert((epoch, version), d);
                Ok(())
            }
        }
    }

    /// Every connect told `200 … conn=C` has an acceptor told `200 conn=C`, unless the
    /// acceptor was told the match is in doubt (naming C), or its client or ship went
    /// away before an answer could reach it.
    fn consistent(&self, world: &World<Ship>) -> bool {
        self.conns.iter().all(|(conn, u)| {
            u.connects == u.accepts
                || (u.connects == 1
                    && u.accepts == 0
                    && u.key.as_ref().is_some_and(|k| {
                        self.accept_clients.get(k).is_some_and(|cs| {
                            cs.iter()
                                .any(|c| match self.finals.get(c).and_then(|f| f.last()) {
                                    // The acceptor was told the match is in doubt, with its id.
                                    Some((_, 408, text)) => {
                                        text.contains("in doubt")
                                            && text.contains(&format!("conn={conn}"))
                                    }
                                    Some(_) => false,
                                    // Or its client or ship went away before an answer.
                                    None => world.clients().get(c).is_none_or(|r| !r.is_open()),
                                })
                        })
                    }))
        })
    }

    /// Notes when each node is paused and resumed (in its own clock), for
    /// `on_reply`'s judgement of late answers.
    fn track_pauses(&mut self, world: &World<Ship>) {
        if self.paused.len() < world.len() {
            self.paused.resize(world.len(), Pauses::default());
        }
        for (i, n) in world.nodes().iter().enumerate() {
            let p = &mut self.paused[i];
            if p.life != n.incarnation() {
                *p = Pauses {
                    life: n.incarnation(),
                    ..Pauses::default()
                };
            }
            match (n.status(), p.since) {
                (Status::Paused, None) => p.since = Some(world.local_now(i)),
                (Status::Up, Some(began)) => {
                    p.spans.push((began, world.local_now(i)));
                    p.since = None;
                }
                _ => {}
            }
        }
    }

    /// A durable root, however often it restarted from its disk, holds every version a
    /// client was told was applied (`200 version=N`).
    fn check_nothing_acknowledged_lost(&self, world: &World<Ship>) -> Result<(), String> {
        let Some(&acked) = self.acked_versions.last() else {
            return Ok(());
        };
        for (i, n) in world.nodes().iter().enumerate() {
            if let Some(root) = n.machine().filter(|m| m.is_root())
                && root.version() < acked
            {
                return Err(format!(
                    "{} (incarnation {}) is at version {} but version {acked} was acknowledged: an acknowledged change was lost",
                    world.name(i),
                    n.incarnation(),
                    root.version()
                ));
            }
        }
        Ok(())
    }

    fn all_answered(&self, world: &World<Ship>) -> bool {
        self.waiting.iter().all(|(c, q)| {
            q.is_empty()
                || world.clients().get(c).is_none_or(|r| !r.is_open())
                || q.iter().all(|r| {
                    let n = world.node(r.node);
                    n.machine().is_none() || n.incarnation() != r.incarnation
                })
        })
    }
}

impl Protocol for ShipProtocol {
    type Machine = Ship;

    fn name(&self) -> &'static str {
        if self.canary { "ship-canary" } else { "ship" }
    }

    fn configure(&mut self, form: &Node, ctx: &ParseCtx) -> Result<bool, SexprError> {
        match form.head() {
            Some("ship") => self.configure_ship(form, ctx).map(|_| true),
            Some("workload") => self.configure_workload(form).map(|_| true),
            _ => Ok(false),
        }
    }

    fn parse_action(
        &self,
        _form: &Node,
        _ctx: &ParseCtx,
    ) -> Result<Option<(usize, ShipCommand)>, SexprError> {
        Ok(None)
    }

    fn workload(&self, nodes: usize, _end: Instant, rng: &mut Rng) -> Vec<(Instant, Workload)> {
        let Some(w) = &self.workload else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut next = 0u32;
        let span = w.to.saturating_sub(w.from);
        let at =
            |rng: &mut Rng| Instant::ZERO + w.from + rng.duration_between(Duration::ZERO, span);
        let mut request =
            |out: &mut Vec<(Instant, Workload)>, t: Instant, node: usize, line: String| {
                next += 1;
                out.push((t, Workload::Open { node, client: next }));
                out.push((
                    t,
                    Workload::Send {
                        client: next,
                        data: Bytes::from(line + "\n"),
                    },
                ));
            };
        let n = nodes as u64;
        let secs = w.timeout.as_secs_f64();
        for k in 0..w.pairs {
            let (a, c) = (rng.below(n) as usize, rng.below(n) as usize);
            let (ta, tc) = (at(rng), at(rng));
            request(
                &mut out,
                ta,
                a,
                format!("accept pair-{k} 10.9.{}.{}:7000 {secs}", k / 250, k % 250),
            );
            request(
                &mut out,
                tc,
                c,
                format!("connect pair-{k} {secs} client-{k}"),
            );
        }
        for k in 0..w.lonely {
            let (c, t) = (rng.below(n) as usize, at(rng));
            request(&mut out, t, c, format!("connect lonely-{k} {secs}"));
        }
        for k in 0..w.sets {
            let (s, t) = (rng.below(n) as usize, at(rng));
            request(&mut out, t, s, format!("set wl-p{k} v{k}"));
        }
        for k in 0..w.claims {
            let (s, t) = (rng.below(n) as usize, at(rng));
            request(
                &mut out,
                t,
                s,
                format!("claim {} host-{k}", w.claim_pattern),
            );
        }
        out.sort_by_key(|(t, _)| *t);
        out
    }

    fn predicates(&self) -> &'static [&'static str] {
        &[
            "all-answered",
            "pairs-matched",
            "config-converged",
            "consistent",
        ]
    }

    fn build(&mut self, node: &NodeSpec<'_>, rng: Rng, now: Instant) -> Ship {
        if self.seen.len() < node.addrs.len() {
            self.seen.resize(node.addrs.len(), None);
        }
        self.seen[node.index] = None;
        let mut cfg = match self.parent_of(node.index) {
            None => ShipConfig::mothership(node.addr, self.config.clone()),
            Some(p) => ShipConfig::daughtership(node.addr, node.addrs[p]),
        };
        let legacy = self.legacy.contains(&node.index);
        cfg.escalate = self.escalate && !legacy;
        cfg.deadlines = self.deadlines && !legacy;
        cfg.durable = self.durable;
        if cfg.parent.is_none() {
            cfg.restore = self.stored.get(&node.index).cloned();
        }
        cfg.timings = self.timings.clone();
        cfg.canary_reuse_conn_ids = self.canary;
        Ship::new(cfg, now, rng).expect("ship settings were validated when the scenario was read")
    }

    fn observe(&mut self, world: &World<Ship>, obs: ObservationOf<'_, Self>) {
        match obs {
            Observation::FromClient { node, client, data } => {
                let text = String::from_utf8_lossy(data).into_owned();
                for line in text.lines() {
                    self.on_request(world, node, client, line);
                }
            }
            Observation::ToClient { node, client, data } => {
                let buf = self.partial.entry(client).or_default();
                buf.extend_from_slice(data);
                let mut lines = Vec::new();
                while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    lines.push(String::from_utf8_lossy(&line[..nl]).into_owned());
                }
                for line in lines {
                    self.on_reply(world, node, client, &line);
                }
            }
            Observation::CloseClient { client, .. } => self.client_gone(client),
            Observation::Delivered { node, .. } if self.parent_of(node).is_none() => {
                self.root_frames += 1;
            }
            _ => {}
        }
    }

    /// The root's disk: a batch is appended whole (the runner appends one record and
    /// syncs) and survives the node's crash; it applies to what is stored as the state
    /// file's reader applies it. Latency, failures and hangs were drawn by the simulator
    /// before this is called.
    fn effect(
        &mut self,
        _world: &World<Ship>,
        node: usize,
        effect: &ShipEffect,
    ) -> Result<(), EffectError> {
        let ShipEffect::Store(batch) = effect else {
            return Err(EffectError::Unsupported);
        };
        if self.lying_disk {
            return Ok(());
        }
        // In place, as the daemon's writer does: `apply` leaves the copy as it was on error.
        let st = match (self.stored.entry(node), &batch.base) {
            (Entry::Occupied(st), _) => st.into_mut(),
            (Entry::Vacant(v), Some(base)) => v.insert((**base).clone()),
            (Entry::Vacant(_), None) => {
                return Err(EffectError::Failed("nothing stored to append to".into()));
            }
        };
        st.apply(batch)
            .map_err(|e| EffectError::Failed(e.to_string()))
    }

    fn check(&mut self, world: &World<Ship>, touched: Option<usize>) -> Result<(), String> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        if self.durable {
            self.check_nothing_acknowledged_lost(world)?;
        }
        self.track_pauses(world);
        if self.seen.len() < world.len() {
            self.seen.resize(world.len(), None);
        }
        match touched {
            Some(i) => self.check_copy(world, i)?,
            None => {
                for i in 0..world.len() {
                    self.check_copy(world, i)?;
                }
            }
        }
        // Deadlines: a request whose ship's timers have run past its deadline (in that
        // ship's own clock) must have had its final reply. A paused ship runs no timers,
        // so it is judged once it resumes and its overdue timers have fired.
        let horizon = world.nodes().iter().map(|n| n.last_timeout()).max();
        let due: Vec<(Instant, ClientId)> = self
            .by_deadline
            .iter()
            .take_while(|(d, _)| horizon.is_some_and(|h| *d < h))
            .copied()
            .collect();
        for (d, c) in due {
            let Some(req) = self.waiting.get(&c).and_then(|q| q.front()) else {
                self.by_deadline.remove(&(d, c));
                continue;
            };
            let node = world.node(req.node);
            let open = world.clients().get(&c).is_some_and(|r| r.is_open());
            if !open || node.machine().is_none() || node.incarnation() != req.incarnation {
                // The client or its ship went away: nobody is waiting any more.
                self.client_gone(c);
                continue;
            }
            if node.last_timeout() > d {
                return Err(format!(
                    "{c} on {} asked at {} and got no final reply by its deadline {d}",
                    world.name(req.node),
                    req.issued
                ));
            }
        }
        Ok(())
    }

    fn predicate(&self, name: &str, world: &World<Ship>) -> bool {
        match name {
            "all-answered" => self.all_answered(world),
            "consistent" => self.consistent(world),
            "pairs-matched" => {
                let ours = |k: &str| k.starts_with("pair-") || k.starts_with("lonely-");
                self.consistent(world)
                    && self
                        .finals
                        .values()
                        .flatten()
                        .all(|(kind, code, _)| match kind {
                            Kind::Accept(k) | Kind::Connect(k) if k.starts_with("pair-") => {
                                *code == 200
                            }
                            Kind::Connect(k) if k.starts_with("lonely-") => *code == 408,
                            _ => true,
                        })
                    && self.waiting.values().flatten().all(|r| match &r.kind {
                        Kind::Accept(k) | Kind::Connect(k) => !ours(k),
                        _ => true,
                    })
            }
            "config-converged" => {
                let live: Vec<&Ship> = world
                    .nodes()
                    .iter()
                    .filter(|n| n.status() == Status::Up)
                    .filter_map(|n| n.machine())
                    .collect();
                let Some(root) = live.iter().find(|s| s.is_root()) else {
                    return false;
                };
                let acked = self.acked_versions.last().copied().unwrap_or(0);
                root.version() >= acked
                    && live
                        .iter()
                        .all(|s| s.epoch() == root.epoch() && s.version() == root.version())
            }
            _ => false,
        }
    }
}
