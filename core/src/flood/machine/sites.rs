//! Groups and sites: joins, the master's topology, round-trip and bandwidth probes,
//! estimates, and forgetting sites that went quiet.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::super::msg::{EstimateEntry, FloodMsg, MAX_GROUP_SITES, SiteInfo};
use super::super::topology::{self, GeneratorLink, GeneratorSite};
use super::{
    ADOPT_ROUNDS, EffectError, Flood, FloodEffect, FloodEffectValue, FloodError, FloodEvent, Group,
    MAX_PROBES, PROBE_BYTES, RECOMPUTE_SETTLE, Timer, Topo,
};
use crate::machine::PeerAddr;
use crate::time::Instant;

static PROBE_PADDING: [u8; PROBE_BYTES] = [0; PROBE_BYTES];

/// Until a site has a topology it asks to join at least this often.
const JOIN_RETRY: Duration = Duration::from_secs(1);

impl Flood {
    /// Arms a group's periodic work at start. Probes start at a random point of their
    /// period so that sites started together do not probe in step.
    pub(super) fn start_group(&mut self, now: Instant, name: &str) {
        let Some(g) = self.groups.get(name) else {
            return;
        };
        let def = g.def.clone();
        if g.is_master {
            self.timers.set(Timer::Recompute(name.to_string()), now);
            self.timers
                .set(Timer::Update(name.to_string()), now + def.update_period);
        } else {
            self.timers.set(Timer::Join(name.to_string()), now);
        }
        let ping = self.rng.duration_between(Duration::ZERO, def.ping_period);
        let bw = self
            .rng
            .duration_between(Duration::ZERO, def.bandwidth_period);
        self.timers.set(Timer::Ping(name.to_string()), now + ping);
        self.timers
            .set(Timer::Bandwidth(name.to_string()), now + bw);
        self.timers.set(
            Timer::Estimates(name.to_string()),
            now + def.estimates_period,
        );
        self.timers
            .set(Timer::Digest(name.to_string()), now + def.digest_period);
    }

    fn me_info(&self) -> SiteInfo {
        self.cfg.me.clone()
    }

    pub(super) fn on_join_timer(&mut self, now: Instant, name: &str) {
        let Some(g) = self.groups.get(name) else {
            return;
        };
        let (master, period, lonely) = (g.def.master.clone(), g.def.join_period, g.topo.is_none());
        let join = FloodMsg::Join {
            group: name.to_string(),
            site: self.me_info(),
            relayed: false,
        }
        .to_frame();
        if let Some(addr) = self.addr_of(&master) {
            self.send_frame(addr, join.clone());
        }
        // Without a topology the master may be down or unreachable from here: ask
        // another member too, which passes the join on (the seed's "or at least one
        // other site"), and ask again soon.
        let mut next = period;
        if lonely {
            let others: Vec<PeerAddr> = self.groups[name]
                .def
                .sites
                .iter()
                .filter(|s| **s != master && **s != self.cfg.me.name)
                .filter_map(|s| self.addr_of(s))
                .collect();
            if !others.is_empty() {
                let k = self.rng.below(others.len() as u64) as usize;
                self.send_frame(others[k], join);
            }
            next = next.min(JOIN_RETRY);
        }
        self.timers.set(Timer::Join(name.to_string()), now + next);
    }

    pub(super) fn on_join(
        &mut self,
        now: Instant,
        _from: PeerAddr,
        name: &str,
        site: SiteInfo,
        relayed: bool,
    ) -> Result<(), FloodError> {
        if !self.groups.contains_key(name) {
            return Err(self.no_group(name));
        }
        if site.name == self.cfg.me.name {
            return Ok(());
        }
        self.learn_site(now, &site);
        if let Some(s) = self.sites.get_mut(&site.name) {
            s.heard = now;
        }
        let master = self.groups[name].def.master.clone();
        let master_addr = self.addr_of(&master);
        let g = self.groups.get_mut(name).expect("checked above");
        if !g.is_master {
            if !relayed && let Some(addr) = master_addr {
                let msg = FloodMsg::Join {
                    group: name.to_string(),
                    site,
                    relayed: true,
                };
                self.send(addr, &msg);
            }
            return Ok(());
        }
        let known = g.members.insert(site.name.clone(), now).is_some();
        if !known {
            if g.members.len() > MAX_GROUP_SITES {
                g.members.remove(&site.name);
                return Ok(());
            }
            self.outbox.event(FloodEvent::Joined {
                group: name.to_string(),
                site: site.name.clone(),
            });
            let key = Timer::Recompute(name.to_string());
            if !self.timers.contains(&key) {
                self.timers.set(key, now + RECOMPUTE_SETTLE);
            }
        } else if let Some(t) = &g.topo
            && t.index.contains_key(&site.name)
        {
            // A member that asks again may have restarted: give it the topology now.
            let frame = topology_frame(name, t);
            self.send_frame(site.data, frame);
        }
        Ok(())
    }

    pub(super) fn no_group(&self, name: &str) -> FloodError {
        let names: Vec<&str> = self.groups.keys().map(String::as_str).collect();
        FloodError::NoSuchGroup(name.to_string(), names.join(", "))
    }

    pub(super) fn on_update_timer(&mut self, now: Instant, name: &str) {
        let Some(g) = self.groups.get(name) else {
            return;
        };
        let period = g.def.update_period;
        self.recompute(now, name);
        self.timers
            .set(Timer::Update(name.to_string()), now + period);
    }

    /// The members a master computes a topology over: every member whose address it
    /// knows, by name.
    fn member_infos(&self, g: &Group) -> Vec<SiteInfo> {
        g.members
            .keys()
            .filter_map(|m| self.sites.get(m).map(|s| s.info.clone()))
            .collect()
    }

    /// The cost of the link between two members, from what was measured (the better of
    /// the two directions), else from their positions.
    fn cost(&self, g: &Group, a: &SiteInfo, b: &SiteInfo) -> u64 {
        let me = self.cfg.me.name.as_str();
        let mut best: Option<(Duration, Option<u64>)> = None;
        let mut consider = |m: Option<(Duration, Option<u64>)>| {
            if let Some(m) = m
                && best.is_none_or(|b| m.0 < b.0)
            {
                best = Some(m);
            }
        };
        consider(g.estimates.get(&(a.name.clone(), b.name.clone())).copied());
        consider(g.estimates.get(&(b.name.clone(), a.name.clone())).copied());
        for (x, y) in [(a, b), (b, a)] {
            if x.name == me
                && let Some(s) = self.sites.get(&y.name)
                && let Some(rtt) = s.rtt
            {
                consider(Some((rtt, s.bandwidth)));
            }
        }
        topology::link_cost(
            best.map(|b| b.0),
            best.and_then(|b| b.1),
            a.position,
            b.position,
        )
    }

    /// The master computes the group's topology: with its `topology-generator` when one
    /// is configured (the result comes back as an effect), else with the built-in one.
    pub(super) fn recompute(&mut self, now: Instant, name: &str) {
        self.timers.cancel(&Timer::Recompute(name.to_string()));
        let Some(g) = self.groups.get(name) else {
            return;
        };
        if !g.is_master {
            return;
        }
        let members = self.member_infos(g);
        if let Some(command) = g.def.topology_generator.clone() {
            if g.generating.is_some() {
                // One run at a time; this change is picked up by the next.
                self.timers
                    .set(Timer::Recompute(name.to_string()), now + RECOMPUTE_SETTLE);
                return;
            }
            let sites: Vec<GeneratorSite> = members
                .iter()
                .map(|m| GeneratorSite {
                    name: m.name.clone(),
                    position: m.position,
                })
                .collect();
            let mut links = Vec::new();
            for (i, a) in members.iter().enumerate() {
                for (j, b) in members.iter().enumerate().skip(i + 1) {
                    let m = g
                        .estimates
                        .get(&(a.name.clone(), b.name.clone()))
                        .or_else(|| g.estimates.get(&(b.name.clone(), a.name.clone())));
                    if let Some(&(rtt, bw)) = m {
                        links.push(GeneratorLink {
                            a: i as u32,
                            b: j as u32,
                            rtt: Some(rtt),
                            bandwidth: bw,
                        });
                    }
                }
            }
            let input = topology::encode_generator_input(name, g.def.connectivity, &sites, &links);
            let id = self.effect_id();
            self.groups.get_mut(name).expect("exists").generating = Some(id);
            let timeout = self.cfg.limits.generator_timeout;
            self.outbox.effect(
                id,
                FloodEffect::Generate {
                    group: name.to_string(),
                    command,
                    input,
                },
                Some(timeout),
            );
            return;
        }
        let edges = self.builtin_edges(name, &members);
        self.install(now, name, members, &edges);
    }

    fn builtin_edges(&mut self, name: &str, members: &[SiteInfo]) -> BTreeSet<topology::Edge> {
        let g = &self.groups[name];
        let k = g.def.connectivity;
        let n = members.len();
        // Costs once, so the generator may ask for them as often as it likes.
        let mut costs = BTreeMap::new();
        for i in 0..n {
            for j in i + 1..n {
                costs.insert((i as u32, j as u32), self.cost(g, &members[i], &members[j]));
            }
        }
        let cost = |a: u32, b: u32| costs[&(a.min(b), a.max(b))];
        topology::generate(n, k, &cost, &mut self.rng)
    }

    pub(super) fn on_generated(
        &mut self,
        now: Instant,
        name: &str,
        outcome: Result<FloodEffectValue, EffectError>,
    ) {
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        g.generating = None;
        let members = self.member_infos(&self.groups[name]);
        let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        let edges = match outcome {
            Ok(FloodEffectValue::Generated(text)) => {
                topology::decode_generator_output(&text, &names)
                    .map_err(|e| e.to_string())
                    .and_then(|edges| {
                        // A topology that leaves a member cut off would lose its updates.
                        if members.len() > 1
                            && topology::components_without(members.len(), &edges, &BTreeSet::new())
                                != 1
                        {
                            Err("its topology leaves some members unconnected".to_string())
                        } else {
                            Ok(edges)
                        }
                    })
            }
            Ok(other) => Err(format!("unexpected effect value {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        let edges = match edges {
            Ok(e) => e,
            Err(error) => {
                self.stats.generator_failures += 1;
                self.outbox.event(FloodEvent::GeneratorFailed {
                    group: name.to_string(),
                    error,
                });
                self.builtin_edges(name, &members)
            }
        };
        self.install(now, name, members, &edges);
    }

    /// The master adopts a topology it computed and sends it to every member.
    fn install(
        &mut self,
        now: Instant,
        name: &str,
        members: Vec<SiteInfo>,
        edges: &BTreeSet<topology::Edge>,
    ) {
        let mut links = Vec::with_capacity(edges.len());
        {
            let g = &self.groups[name];
            for &(a, b) in edges {
                let c = self.cost(g, &members[a as usize], &members[b as usize]);
                links.push((a, b, c));
            }
        }
        let g = self.groups.get_mut(name).expect("exists");
        let version = g.next_version;
        g.next_version += 1;
        let incarnation = self.incarnation;
        self.adopt(now, name, incarnation, version, members, links);
        let Some(t) = &self.groups[name].topo else {
            return;
        };
        let frame = topology_frame(name, t);
        let me = self.cfg.me.name.clone();
        let targets: Vec<PeerAddr> = t
            .members
            .iter()
            .filter(|m| m.name != me)
            .map(|m| m.data)
            .collect();
        for to in targets {
            self.send_frame(to, frame.clone());
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_topology(
        &mut self,
        now: Instant,
        sender: Option<&str>,
        name: &str,
        master_incarnation: u64,
        version: u64,
        members: Vec<SiteInfo>,
        links: Vec<(u32, u32, u64)>,
    ) -> Result<(), FloodError> {
        let Some(g) = self.groups.get(name) else {
            return Err(self.no_group(name));
        };
        // Only the group's master decides; a master never takes one.
        if g.is_master || sender != Some(g.def.master.as_str()) {
            return Ok(());
        }
        if let Some(t) = &g.topo
            && t.master_incarnation == master_incarnation
            && t.version >= version
        {
            return Ok(());
        }
        let names: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
        if names.len() != members.len() || !names.contains(self.cfg.me.name.as_str()) {
            // Not (yet) a member, or a list with a name twice: keep joining.
            return Ok(());
        }
        for m in &members {
            self.learn_site(now, m);
        }
        self.adopt(now, name, master_incarnation, version, members, links);
        Ok(())
    }

    /// Takes a topology as the group's: neighbours, and the spanning trees afresh.
    fn adopt(
        &mut self,
        now: Instant,
        name: &str,
        master_incarnation: u64,
        version: u64,
        members: Vec<SiteInfo>,
        links: Vec<(u32, u32, u64)>,
    ) {
        let me = self.cfg.me.name.clone();
        let index: BTreeMap<String, u32> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i as u32))
            .collect();
        let mine = index.get(&me).copied();
        let mut neighbours = BTreeSet::new();
        let mut link_map = BTreeMap::new();
        for (a, b, c) in links {
            link_map.insert((a, b), c);
            if Some(a) == mine {
                neighbours.insert(members[b as usize].name.clone());
            } else if Some(b) == mine {
                neighbours.insert(members[a as usize].name.clone());
            }
        }
        let g = self.groups.get_mut(name).expect("exists");
        g.neighbours.retain(|n, _| neighbours.contains(n));
        for n in &neighbours {
            g.neighbours.entry(n.clone()).or_default();
        }
        let (count, nlinks) = (members.len(), link_map.len());
        g.topo = Some(Topo {
            master_incarnation,
            version,
            members,
            index,
            links: link_map,
            neighbours,
        });
        g.children.clear();
        let first = g.adopt_until.is_none();
        if first {
            g.adopt_until = Some(now + g.def.digest_period * ADOPT_ROUNDS);
            g.joined = Some(now);
        }
        self.stats.topologies += 1;
        self.outbox.event(FloodEvent::Topology {
            group: name.to_string(),
            version,
            members: count,
            links: nlinks,
        });
        if first {
            // Ask every neighbour at once where the streams stood (not a digest period
            // later): the sooner it asks, the less it takes from before it joined.
            let marks = self.all_marks(name);
            let neighbours: Vec<String> = self.groups[name].neighbours.keys().cloned().collect();
            for n in neighbours {
                self.send_digest(now, name, &n, false, &marks);
            }
        }
    }

    /// A random other member of a group whose address is known.
    fn random_member(&mut self, name: &str) -> Option<(String, PeerAddr)> {
        let g = self.groups.get(name)?;
        let me = &self.cfg.me.name;
        let pool: Vec<(String, PeerAddr)> = match &g.topo {
            Some(t) => t
                .members
                .iter()
                .filter(|m| &m.name != me)
                .map(|m| (m.name.clone(), m.data))
                .collect(),
            None => g
                .def
                .sites
                .iter()
                .filter(|s| *s != me)
                .filter_map(|s| self.addr_of(s).map(|a| (s.clone(), a)))
                .collect(),
        };
        if pool.is_empty() {
            return None;
        }
        let k = self.rng.below(pool.len() as u64) as usize;
        pool.into_iter().nth(k)
    }

    pub(super) fn on_ping_timer(&mut self, now: Instant, name: &str) {
        let Some(period) = self.groups.get(name).map(|g| g.def.ping_period) else {
            return;
        };
        if let Some((site, addr)) = self.random_member(name) {
            let nonce = self.nonce();
            bounded_insert(&mut self.pings, nonce, (site, now));
            self.send(addr, &FloodMsg::Ping { nonce });
        }
        self.timers.set(Timer::Ping(name.to_string()), now + period);
    }

    pub(super) fn on_pong(&mut self, now: Instant, nonce: u64) {
        let Some((site, sent)) = self.pings.remove(&nonce) else {
            return;
        };
        let sample = now.saturating_duration_since(sent);
        if let Some(s) = self.sites.get_mut(&site) {
            // Smoothed as TCP smooths its RTT: one sample moves it a quarter.
            s.rtt = Some(match s.rtt {
                None => sample,
                Some(old) => (old * 3 + sample) / 4,
            });
        }
    }

    pub(super) fn on_bandwidth_timer(&mut self, now: Instant, name: &str) {
        let Some(period) = self.groups.get(name).map(|g| g.def.bandwidth_period) else {
            return;
        };
        if let Some((site, addr)) = self.random_member(name) {
            let nonce = self.nonce();
            bounded_insert(&mut self.probes, nonce, (site, now, PROBE_BYTES));
            let padding = Bytes::from_static(&PROBE_PADDING);
            self.send(addr, &FloodMsg::BwProbe { nonce, padding });
        }
        self.timers
            .set(Timer::Bandwidth(name.to_string()), now + period);
    }

    /// A coarse estimate: the probe's bytes over its round trip less the usual one.
    pub(super) fn on_bw_ack(&mut self, now: Instant, nonce: u64) {
        let Some((site, sent, bytes)) = self.probes.remove(&nonce) else {
            return;
        };
        let Some(s) = self.sites.get_mut(&site) else {
            return;
        };
        let elapsed = now.saturating_duration_since(sent);
        let transfer = elapsed
            .saturating_sub(s.rtt.unwrap_or_default())
            .max(Duration::from_micros(100));
        s.bandwidth = Some((bytes as f64 / transfer.as_secs_f64()) as u64);
    }

    pub(super) fn on_estimates_timer(&mut self, now: Instant, name: &str) {
        let Some(g) = self.groups.get(name) else {
            return;
        };
        let period = g.def.estimates_period;
        if !g.is_master
            && let Some(addr) = self.addr_of(&g.def.master)
        {
            let me = &self.cfg.me.name;
            let candidates: Vec<&String> = match &g.topo {
                Some(t) => t.members.iter().map(|m| &m.name).collect(),
                None => g.def.sites.iter().collect(),
            };
            let entries: Vec<EstimateEntry> = candidates
                .into_iter()
                .filter(|n| *n != me)
                .filter_map(|n| {
                    let s = self.sites.get(n)?;
                    Some(EstimateEntry {
                        site: n.clone(),
                        rtt_us: s.rtt?.as_micros() as u64,
                        bandwidth: s.bandwidth.unwrap_or(0),
                    })
                })
                .take(super::super::msg::MAX_ENTRIES)
                .collect();
            if !entries.is_empty() {
                let msg = FloodMsg::Estimates {
                    group: name.to_string(),
                    entries,
                };
                self.send(addr, &msg);
            }
        }
        self.timers
            .set(Timer::Estimates(name.to_string()), now + period);
    }

    pub(super) fn on_estimates(
        &mut self,
        sender: Option<&str>,
        name: &str,
        entries: Vec<EstimateEntry>,
    ) {
        let Some(sender) = sender else {
            return;
        };
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        if !g.is_master || !g.members.contains_key(sender) {
            return;
        }
        for e in entries {
            if g.members.contains_key(&e.site) {
                let bw = (e.bandwidth > 0).then_some(e.bandwidth);
                g.estimates.insert(
                    (sender.to_string(), e.site),
                    (Duration::from_micros(e.rtt_us), bw),
                );
            }
        }
    }

    pub(super) fn arm_site_purge(&mut self, now: Instant) {
        let every = (self.cfg.local.site_purge_period / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        self.timers.set(Timer::SitePurge, now + every);
    }

    /// Forgets sites unheard of for `site-purge-period`: at a master, members that
    /// stopped asking to join (the topology is then computed without them); anywhere,
    /// sites in no topology of this site's groups. This site and the masters of its
    /// groups are never forgotten (it needs them to join).
    pub(super) fn on_site_purge(&mut self, now: Instant) {
        let limit = self.cfg.local.site_purge_period;
        let quiet = |heard: Instant| now.saturating_duration_since(heard) >= limit;
        let me = self.cfg.me.name.clone();
        let masters: BTreeSet<String> =
            self.groups.values().map(|g| g.def.master.clone()).collect();
        let names: Vec<String> = self.groups.keys().cloned().collect();
        for name in &names {
            let g = &self.groups[name];
            if !g.is_master {
                continue;
            }
            let gone: Vec<String> = g
                .members
                .keys()
                .filter(|m| **m != me)
                .filter(|m| self.sites.get(*m).is_none_or(|s| quiet(s.heard)))
                .cloned()
                .collect();
            if !gone.is_empty() {
                let g = self.groups.get_mut(name).expect("exists");
                for m in &gone {
                    g.members.remove(m);
                    g.estimates.retain(|(a, b), _| a != m && b != m);
                }
                self.recompute(now, name);
            }
        }
        let in_topology: BTreeSet<String> = self
            .groups
            .values()
            .filter_map(|g| g.topo.as_ref())
            .flat_map(|t| t.members.iter().map(|m| m.name.clone()))
            .chain(self.groups.values().flat_map(|g| g.members.keys().cloned()))
            .collect();
        let forget: Vec<String> = self
            .sites
            .iter()
            .filter(|(n, s)| {
                **n != me && !masters.contains(*n) && !in_topology.contains(*n) && quiet(s.heard)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in forget {
            if let Some(s) = self.sites.remove(&n) {
                self.by_addr.remove(&s.info.data);
                self.outbox.event(FloodEvent::Purged { site: n });
            }
        }
        self.arm_site_purge(now);
    }
}

fn topology_frame(name: &str, t: &Topo) -> crate::wire::Frame {
    FloodMsg::Topology {
        group: name.to_string(),
        master_incarnation: t.master_incarnation,
        version: t.version,
        members: t.members.clone(),
        links: t.links.iter().map(|(&(a, b), &c)| (a, b, c)).collect(),
    }
    .to_frame()
}

/// Inserts, forgetting the oldest (smallest nonce) entry past [`MAX_PROBES`].
fn bounded_insert<V>(map: &mut BTreeMap<u64, V>, k: u64, v: V) {
    map.insert(k, v);
    while map.len() > MAX_PROBES {
        map.pop_first();
    }
}
