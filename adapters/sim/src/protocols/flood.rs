//! The flood plug-in: sites of one group flooding updates (SPEC.md §8) under the
//! simulator.
//!
//! Every node is a site `n1..nN` (or the scenario's names) of the group `g`, mastered by
//! `n1` unless `(:master NODE)` says otherwise; data on port 7000, clients on 7001. The
//! workload floods updates through the client port (`binary SIZE`), from random sites at
//! random times; each update's bytes name it (`u<K>` padded to its size), so what an
//! export command receives can be checked against what was flooded. Export runs are
//! effects: the simulator draws their latency, failures and hangs (`(:effects …)`); a
//! run that succeeds is the plug-in's export command, which records what it read.
//!
//! Checked after every step:
//! - no site exports an update twice — in one life or across restarts (a restarted
//!   site takes streams from where they stood when it rejoined);
//! - every exported update holds exactly the bytes flooded under its name;
//! - no site stores more than `data-storage-max`;
//! - no site reports updates lost (`purged`) while their origin, running the same
//!   incarnation, still stores one of them.
//!
//! Predicates: `all-exported` (every update flooded by a site has been exported, or
//! reported lost, at every other running site responsible for it — and every site is
//! responsible for every update flooded after it adopted its first topology in its
//! current life, however it took the stream), `gaps-reported`
//! (some site found updates missing and said so), `topology-everywhere` (every running
//! site holds a topology of every running site, and it is k-connected).
//!
//! `flood-canary` runs sites with a planted bug (an update pulled after it already
//! arrived is exported again): a sweep must catch it.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use flotilla_core::flood::bundle::{self, BundleItem, LostReason};
use flotilla_core::flood::config::FloodConfig;
use flotilla_core::flood::topology;
use flotilla_core::flood::{
    Flood, FloodEffect, FloodEffectValue, FloodEvent, FloodSettings, StreamKey,
};
use flotilla_core::line::parse_reply;
use flotilla_core::sexpr::{Node, SexprError};
use flotilla_core::{ClientId, EffectError, Instant, Rng};

use crate::protocol::{NodeSpec, Observation, ObservationOf, ParseCtx, Protocol, Workload};
use crate::world::{Status, World};

/// The client port every simulated site listens on.
pub const CLIENT_PORT: u16 = 7001;

/// Updates generated per run.
#[derive(Clone, Debug, PartialEq)]
pub struct FloodWorkload {
    /// How many.
    pub updates: u32,
    /// Bytes each.
    pub bytes: usize,
    /// Flooded at uniform random times in `[from, to]`.
    pub from: Duration,
    /// See `from`.
    pub to: Duration,
    /// Origins to draw from (all sites when empty).
    pub origins: Vec<usize>,
}

/// An update's name: origin, incarnation, sequence number.
type UpdateId = (String, u64, u64);

/// Ranges of sequence numbers a site reported lost, per stream (origin, incarnation).
type LostRanges = BTreeMap<(String, u64), Vec<(u64, u64)>>;

/// The flood protocol as the simulator sees it.
#[derive(Clone, Debug)]
pub struct FloodProtocol {
    canary: bool,
    /// Settings written as a configuration file's group and local parameters.
    group_params: BTreeMap<String, String>,
    local_params: BTreeMap<String, String>,
    master: usize,
    export: bool,
    workload: Option<FloodWorkload>,
    // Per-run records.
    names: Vec<String>,
    storage_max: u64,
    connectivity: u32,
    /// Client stream → workload number of the update it sent.
    sent: BTreeMap<ClientId, u32>,
    /// Updates flooded: name → workload number.
    flooded: BTreeMap<UpdateId, u32>,
    /// When each update was flooded, and when it last reached a site for the first time.
    timing: BTreeMap<UpdateId, (Instant, Instant)>,
    /// What each site exported, over all its lives.
    exported: Vec<BTreeSet<UpdateId>>,
    /// Per update, how many sites exported it (a fast path for `all-exported`).
    export_count: BTreeMap<UpdateId, usize>,
    /// What each site reported lost: (group-less) stream → ranges.
    lost: Vec<LostRanges>,
    /// When each site adopted its first topology in its current life.
    rejoined: Vec<Option<Instant>>,
    missing_reported: u64,
    violation: Option<String>,
}

impl Default for FloodProtocol {
    fn default() -> Self {
        FloodProtocol {
            canary: false,
            group_params: BTreeMap::new(),
            local_params: BTreeMap::new(),
            master: 0,
            export: true,
            workload: None,
            names: Vec::new(),
            storage_max: 16 << 20,
            connectivity: 2,
            sent: BTreeMap::new(),
            flooded: BTreeMap::new(),
            timing: BTreeMap::new(),
            exported: Vec::new(),
            export_count: BTreeMap::new(),
            lost: Vec::new(),
            rejoined: Vec::new(),
            missing_reported: 0,
            violation: None,
        }
    }
}

fn err(n: &Node, msg: impl Into<String>) -> SexprError {
    SexprError::new(n.pos, msg.into())
}

fn one(form: &Node) -> Result<&Node, SexprError> {
    match form.args() {
        [v] => Ok(v),
        _ => Err(err(
            form,
            format!("({}) takes one value", form.head().unwrap_or("?")),
        )),
    }
}

/// The workload number an update's bytes carry.
fn number_of(data: &[u8]) -> Option<u32> {
    let digits: Vec<u8> = data
        .strip_prefix(b"u")?
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

impl FloodProtocol {
    /// Sites with the planted bug (protocol `flood-canary`).
    pub fn canary() -> Self {
        FloodProtocol {
            canary: true,
            ..Self::default()
        }
    }

    /// Updates flooded so far in this run.
    pub fn flooded(&self) -> usize {
        self.flooded.len()
    }

    /// Updates site `node` exported so far (over all its lives).
    pub fn exported_by(&self, node: usize) -> usize {
        self.exported.get(node).map_or(0, BTreeSet::len)
    }

    /// Sites found updates missing this many times.
    pub fn missing_reported(&self) -> u64 {
        self.missing_reported
    }

    /// For every update flooded, how long it took to reach the last site it reached
    /// (virtual time from the origin's acknowledgement to the last first delivery).
    pub fn spread_times(&self) -> Vec<Duration> {
        self.timing
            .values()
            .map(|(flooded, last)| last.saturating_duration_since(*flooded))
            .collect()
    }

    fn configure_flood(&mut self, form: &Node, ctx: &ParseCtx) -> Result<(), SexprError> {
        const GROUP: &[&str] = &[
            "connectivity",
            "ping-period",
            "bandwidth-period",
            "estimates-period",
            "join-period",
            "update-period",
            "digest-period",
            "flooding",
        ];
        const LOCAL: &[&str] = &[
            "data-storage-max",
            "log-purge-period",
            "site-purge-period",
            "export-timeout",
            "export-bundle-max",
        ];
        for item in form.args() {
            let Some(head) = item.head() else {
                return Err(err(item, "expected (:setting value)"));
            };
            match head {
                "master" => self.master = ctx.node(one(item)?)?,
                "export" => {
                    self.export = match one(item)?.text()?.as_str() {
                        "true" | "on" => true,
                        "false" | "off" => false,
                        _ => return Err(err(item, "expected true or false")),
                    }
                }
                h if GROUP.contains(&h) => {
                    self.group_params.insert(h.to_string(), one(item)?.text()?);
                }
                h if LOCAL.contains(&h) => {
                    self.local_params.insert(h.to_string(), one(item)?.text()?);
                }
                other => {
                    return Err(err(
                        item,
                        format!(
                            "unknown flood setting :{other} (known: master, export, {}, {})",
                            GROUP.join(", "),
                            LOCAL.join(", ")
                        ),
                    ));
                }
            }
        }
        // Validate the way a daemon would: the whole file, parsed.
        let names: Vec<String> = (0..ctx.nodes)
            .map(|i| ctx.names.get(i).cloned().unwrap_or(format!("n{}", i + 1)))
            .collect();
        let cfg = FloodConfig::parse(&self.config_text(&names))
            .map_err(|e| err(form, format!("in the flood settings: {e}")))?;
        self.storage_max = cfg.local.data_storage_max;
        self.connectivity = cfg.groups[0].connectivity;
        Ok(())
    }

    fn configure_workload(&mut self, form: &Node, ctx: &ParseCtx) -> Result<(), SexprError> {
        let mut w = FloodWorkload {
            updates: 0,
            bytes: 100,
            from: Duration::from_secs(1),
            to: Duration::from_secs(5),
            origins: Vec::new(),
        };
        for item in form.args() {
            match item.head() {
                Some("updates") => w.updates = one(item)?.int_in(0, 1_000_000)? as u32,
                Some("bytes") => {
                    w.bytes = one(item)?.int_in(8, flotilla_core::flood::MAX_UPDATE_BYTES as i64)?
                        as usize
                }
                Some("from") => w.from = one(item)?.duration()?,
                Some("to") => w.to = one(item)?.duration()?,
                Some("origins") => {
                    for n in item.args() {
                        w.origins.push(ctx.node(n)?);
                    }
                }
                _ => {
                    return Err(err(
                        item,
                        "expected (:updates N), (:bytes B), (:from T), (:to T) or (:origins NODE...)",
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

    /// The configuration file every site reads.
    fn config_text(&self, names: &[String]) -> String {
        let mut text = String::new();
        for (i, name) in names.iter().enumerate() {
            let ip = crate::world::node_addr(i).ip();
            text.push_str(&format!(
                "(:site-define (:site-name {name}) (:inet-address {ip}) (:client-port {CLIENT_PORT}) (:data-port {}))\n",
                crate::world::PORT
            ));
        }
        let master = names.get(self.master).cloned().unwrap_or_default();
        text.push_str(&format!(
            "(:group-define (:group-name g) (:master-site {master})"
        ));
        for name in names {
            text.push_str(&format!(" (:site {name})"));
        }
        // Simulation-friendly defaults; the scenario's settings replace them.
        let mut group: BTreeMap<&str, String> = [
            ("ping-period", "1"),
            ("bandwidth-period", "10"),
            ("estimates-period", "2"),
            ("join-period", "2"),
            ("update-period", "60"),
            ("digest-period", "0.2"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
        for (k, v) in &self.group_params {
            group.insert(k, v.clone());
        }
        for (k, v) in group {
            text.push_str(&format!(" (:{k} {v})"));
        }
        text.push_str(")\n(:local");
        if self.export {
            text.push_str(" (:export-command \"simulated\")");
        }
        let mut local: BTreeMap<&str, String> =
            [("log-purge-period", "30"), ("site-purge-period", "600")]
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect();
        for (k, v) in &self.local_params {
            local.insert(k, v.clone());
        }
        for (k, v) in local {
            text.push_str(&format!(" (:{k} {v})"));
        }
        text.push_str(")\n");
        text
    }

    fn violate(&mut self, msg: String) {
        if self.violation.is_none() {
            self.violation = Some(msg);
        }
    }

    fn on_reply(&mut self, now: Instant, client: ClientId, line: &str) {
        let Some((250, text)) = parse_reply(line) else {
            return;
        };
        // "flooded to g as ORIGIN INCARNATION SEQ (N bytes)"
        let Some(rest) = text.strip_prefix("flooded to g as ") else {
            return;
        };
        let w: Vec<&str> = rest.split(' ').collect();
        let (Some(k), [origin, inc, seq, ..]) = (self.sent.get(&client).copied(), w.as_slice())
        else {
            return;
        };
        let (Ok(inc), Ok(seq)) = (u64::from_str_radix(inc, 16), seq.parse::<u64>()) else {
            return;
        };
        let id = (origin.to_string(), inc, seq);
        self.timing.insert(id.clone(), (now, now));
        self.flooded.insert(id, k);
    }

    fn responsible(&self, world: &World<Flood>, node: usize, id: &UpdateId) -> bool {
        let Some(m) = world.node(node).machine() else {
            return false;
        };
        // Flooded after this site took part in the group: it must have it, or say it
        // lost it, whatever it made of the stream's first marks.
        if let (Some(joined), Some((flooded, _))) = (self.rejoined[node], self.timing.get(id))
            && *flooded >= joined
        {
            return true;
        }
        let key = StreamKey {
            origin: id.0.clone(),
            incarnation: id.1,
        };
        match m.stream_marks("g", &key) {
            Some(marks) => id.2 >= marks.base,
            // Not heard of the stream yet: it must hear of it.
            None => true,
        }
    }

    fn reported_lost(&self, node: usize, id: &UpdateId) -> bool {
        self.lost[node]
            .get(&(id.0.clone(), id.1))
            .is_some_and(|r| r.iter().any(|&(a, b)| a <= id.2 && id.2 <= b))
    }

    /// Updates flooded after site `node` adopted its first topology in its current life
    /// that it has neither exported nor reported lost, with how long after that each was
    /// flooded (empty while it has no topology).
    pub fn unaccounted_since_rejoin(
        &self,
        _world: &World<Flood>,
        node: usize,
    ) -> Vec<((String, u64, u64), Duration)> {
        let Some(joined) = self.rejoined.get(node).copied().flatten() else {
            return Vec::new();
        };
        self.flooded
            .keys()
            .filter(|id| self.names.get(node) != Some(&id.0))
            .filter_map(|id| {
                let (flooded, _) = self.timing.get(id)?;
                (*flooded >= joined
                    && !self.exported[node].contains(id)
                    && !self.reported_lost(node, id))
                .then(|| (id.clone(), flooded.saturating_duration_since(joined)))
            })
            .collect()
    }

    fn all_exported(&self, world: &World<Flood>) -> bool {
        let others = world.len().saturating_sub(1);
        for id in self.flooded.keys() {
            // Every other site exported it: nothing to look at.
            if self.export_count.get(id).copied().unwrap_or(0) >= others {
                continue;
            }
            for (i, n) in world.nodes().iter().enumerate() {
                if n.status() != Status::Up || self.names.get(i) == Some(&id.0) {
                    continue;
                }
                if !self.exported[i].contains(id)
                    && !self.reported_lost(i, id)
                    && self.responsible(world, i, id)
                {
                    return false;
                }
            }
        }
        true
    }

    /// A site said updates were purged everywhere: their origin, if it still runs the
    /// incarnation that flooded them, must not hold any of them.
    fn check_purge(
        &mut self,
        world: &World<Flood>,
        node: usize,
        origin: &str,
        incarnation: u64,
        from: u64,
        to: u64,
    ) {
        let Some(o) = self.names.iter().position(|n| n == origin) else {
            return;
        };
        let Some(m) = world.node(o).machine() else {
            return;
        };
        let key = StreamKey {
            origin: origin.to_string(),
            incarnation,
        };
        if m.incarnation() == incarnation && m.held_between("g", &key, from, to) > 0 {
            let msg = format!(
                "{} reported {origin} {incarnation:016x} {from}..={to} lost (purged), but \
                 {origin} still stores {} of them",
                self.names[node],
                m.held_between("g", &key, from, to)
            );
            self.violate(msg);
        }
    }

    fn topology_everywhere(&self, world: &World<Flood>) -> bool {
        let running: BTreeSet<&str> = world
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, n)| n.status() == Status::Up)
            .map(|(i, _)| self.names[i].as_str())
            .collect();
        world
            .nodes()
            .iter()
            .filter(|n| n.status() == Status::Up)
            .filter_map(|n| n.machine())
            .all(|m| {
                let Some(t) = m.topology("g") else {
                    return false;
                };
                let members: BTreeSet<&str> = t.members.iter().map(String::as_str).collect();
                if !running.iter().all(|r| members.contains(r)) {
                    return false;
                }
                let index: BTreeMap<&str, u32> = t
                    .members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m.as_str(), i as u32))
                    .collect();
                let edges = t
                    .links
                    .iter()
                    .map(|(a, b, _)| (index[a.as_str()], index[b.as_str()]))
                    .collect();
                let k = topology::target_connectivity(t.members.len(), self.connectivity);
                topology::is_k_connected(t.members.len(), &edges, k)
            })
    }
}

impl Protocol for FloodProtocol {
    type Machine = Flood;

    fn name(&self) -> &'static str {
        if self.canary { "flood-canary" } else { "flood" }
    }

    fn configure(&mut self, form: &Node, ctx: &ParseCtx) -> Result<bool, SexprError> {
        match form.head() {
            Some("flood") => self.configure_flood(form, ctx).map(|_| true),
            Some("workload") => self.configure_workload(form, ctx).map(|_| true),
            _ => Ok(false),
        }
    }

    fn workload(&self, nodes: usize, _end: Instant, rng: &mut Rng) -> Vec<(Instant, Workload)> {
        let Some(w) = &self.workload else {
            return Vec::new();
        };
        let span = w.to.saturating_sub(w.from);
        let mut out = Vec::new();
        for k in 0..w.updates {
            let node = if w.origins.is_empty() {
                rng.below(nodes as u64) as usize
            } else {
                w.origins[rng.below(w.origins.len() as u64) as usize]
            };
            let t = Instant::ZERO + w.from + rng.duration_between(Duration::ZERO, span);
            let mut data = format!("u{k}-").into_bytes();
            data.resize(w.bytes.max(data.len()), b'x');
            let mut msg = format!("binary {} g\n", data.len()).into_bytes();
            msg.extend_from_slice(&data);
            out.push((t, Workload::Open { node, client: k }));
            out.push((
                t,
                Workload::Send {
                    client: k,
                    data: Bytes::from(msg),
                },
            ));
            out.push((t + Duration::from_secs(1), Workload::Close { client: k }));
        }
        out
    }

    fn predicates(&self) -> &'static [&'static str] {
        &["all-exported", "gaps-reported", "topology-everywhere"]
    }

    fn build(&mut self, node: &NodeSpec<'_>, rng: Rng, now: Instant) -> Flood {
        let n = node.addrs.len();
        if self.names.len() != n {
            self.names = (0..n).map(|i| format!("n{}", i + 1)).collect();
            self.exported = vec![BTreeSet::new(); n];
            self.lost = vec![BTreeMap::new(); n];
            self.rejoined = vec![None; n];
        }
        self.rejoined[node.index] = None;
        self.names[node.index] = node.name.to_string();
        let names = self.names.clone();
        let cfg = FloodConfig::parse(&self.config_text(&names))
            .expect("the flood settings were validated when the scenario was read");
        let mut s = FloodSettings::from_config(&cfg, node.name, &mut |_| None)
            .expect("every simulated site has an address");
        s.canary_duplicate_export = self.canary;
        Flood::new(s, now, rng)
    }

    fn observe(&mut self, world: &World<Flood>, obs: ObservationOf<'_, Self>) {
        match obs {
            Observation::FromClient { client, data, .. } => {
                if let Some(nl) = data.iter().position(|&b| b == b'\n')
                    && let Some(k) = number_of(&data[nl + 1..])
                {
                    self.sent.insert(client, k);
                }
            }
            Observation::ToClient { client, data, .. } => {
                for line in String::from_utf8_lossy(data).lines() {
                    self.on_reply(world.now(), client, line);
                }
            }
            Observation::Event { node, event } => match event {
                FloodEvent::Lost {
                    origin,
                    incarnation,
                    from,
                    to,
                    reason,
                    ..
                } => {
                    if *reason == LostReason::Purged {
                        self.check_purge(world, node, origin, *incarnation, *from, *to);
                    }
                    self.lost[node]
                        .entry((origin.clone(), *incarnation))
                        .or_default()
                        .push((*from, *to));
                }
                FloodEvent::Topology { .. } if self.rejoined[node].is_none() => {
                    self.rejoined[node] = Some(world.now());
                }
                FloodEvent::Missing { .. } => self.missing_reported += 1,
                FloodEvent::Delivered {
                    origin,
                    incarnation,
                    seq,
                    ..
                } => {
                    if let Some(t) = self.timing.get_mut(&(origin.clone(), *incarnation, *seq)) {
                        t.1 = t.1.max(world.now());
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// The export command: reads the bundle and records what it holds.
    fn effect(
        &mut self,
        _world: &World<Flood>,
        node: usize,
        effect: &FloodEffect,
    ) -> Result<FloodEffectValue, EffectError> {
        let FloodEffect::Export { bundle, .. } = effect else {
            return Err(EffectError::Unsupported);
        };
        let items = bundle::decode(bundle).map_err(|e| {
            let msg = format!(
                "{}: an export bundle that does not decode: {e}",
                self.names[node]
            );
            self.violate(msg.clone());
            EffectError::Failed(msg)
        })?;
        for item in items {
            let BundleItem::Update {
                origin,
                incarnation,
                seq,
                data,
                ..
            } = item
            else {
                continue;
            };
            let id = (origin, incarnation, seq);
            if let Some(&k) = self.flooded.get(&id)
                && number_of(&data) != Some(k)
            {
                let msg = format!(
                    "{} exported {id:?} with the bytes of another update",
                    self.names[node]
                );
                self.violate(msg);
            }
            if self.exported[node].insert(id.clone()) {
                *self.export_count.entry(id).or_default() += 1;
            } else {
                let msg = format!("{} exported {id:?} twice", self.names[node]);
                self.violate(msg);
            }
        }
        Ok(FloodEffectValue::Exported)
    }

    fn check(&mut self, world: &World<Flood>, touched: Option<usize>) -> Result<(), String> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        let nodes: Vec<usize> = match touched {
            Some(i) => vec![i],
            None => (0..world.len()).collect(),
        };
        for i in nodes {
            if let Some(m) = world.node(i).machine()
                && m.stored_bytes() > self.storage_max
            {
                return Err(format!(
                    "{} stores {} bytes, past data-storage-max {}",
                    self.names[i],
                    m.stored_bytes(),
                    self.storage_max
                ));
            }
        }
        Ok(())
    }

    fn predicate(&self, name: &str, world: &World<Flood>) -> bool {
        match name {
            "all-exported" => self.all_exported(world),
            "gaps-reported" => self.missing_reported > 0,
            "topology-everywhere" => self.topology_everywhere(world),
            _ => false,
        }
    }
}
