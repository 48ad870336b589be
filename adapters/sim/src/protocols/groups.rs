//! The client-groups plug-in: membership and client groups side by side in every node
//! (`flotilla_core::groups::GroupDaemon`, SPEC.md §10) under the simulator.
//!
//! Every node is a group daemon named as the node; the first starts alone and the
//! others join it. `(:groups (:messages N) (:from T) (:to T) (:group G))` has one client
//! on every node join group `G` (default `g`) just before `from`, and N messages sent to
//! it from random nodes at random times in `[from, to]` (payloads `m0`, `m1`, …);
//! `(:fifo P)` sends each in the cheaper FIFO mode with probability P percent.
//! Actions: `(:send NODE)` one more message, `(:fsend NODE)` one more in FIFO mode.
//!
//! Checked after every step:
//! - **one place, one message**: an item's (view, number) names one message everywhere;
//! - **order**: each daemon delivers in increasing (view, number) within one life, and no
//!   message twice;
//! - **virtual synchrony**: daemons that pass from one view to the same next view
//!   delivered the same messages in the former, agreed and FIFO alike (compared as count
//!   and digest of the message ids);
//! - **FIFO**: a FIFO message's (view, origin, number) names one message everywhere; each
//!   daemon delivers an origin's FIFO messages of a view as 1, 2, 3, … with no gap, and
//!   one origin's FIFO messages, across views, in the order they were sent (so none
//!   twice).
//!
//! Predicates: `quiet` (no daemon has a message on its way or a flush running),
//! `all-delivered` (every message sent by a daemon that never crashed was delivered by
//! every daemon that never crashed: for runs without partitions).
//!
//! Service groups: `(:services (:agents N) (:names K) (:ports LO HI) (:from T) (:to T)
//! (:churn N))` opens N client streams on every node that each bind one of K services
//! (`s0`…) at a random time in `[from, to]` and say `done` every 300 ms from then on;
//! `churn` more streams bind and disconnect again within the window. Checked after every
//! step besides each daemon's own checks (one service per port, ports only for services
//! with members): daemons in one view that delivered the same items hold the same port
//! table; and what every agent hears on its stream ([`super::agents`]): a barrier names
//! the port it was told, and a move away from a port comes once per view, announced with
//! its barrier (after a heal, an agent whose service keeps its port is told no other).
//! Predicates: `services-settled` (every service with members has its port
//! everywhere), `barriers-finished` (no recovery barrier waits anywhere).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use flotilla_core::compose::Either;
use flotilla_core::groups::front::{FrontCommand, FrontEvent, FrontSettings, GroupsFront};
use flotilla_core::groups::{
    GroupDaemon, GroupsCommand, GroupsEvent, GroupsSettings, MembershipLink, MsgId,
};
use flotilla_core::membership::{Membership, MembershipSettings, ViewId};
use flotilla_core::sexpr::{Node, SexprError};
use flotilla_core::{Instant, Rng};

use super::agents::Agents;
use crate::protocol::{
    CommandOf, NodeSpec, Observation, ObservationOf, ParseCtx, Protocol, Workload,
};
use crate::world::{Status, World};

/// A node's life number, the last place it delivered, and what it delivered in it.
type Life = (u64, Option<(ViewId, u64)>, BTreeSet<MsgId>);

/// The service-group workload of a scenario.
#[derive(Clone, Debug)]
struct ServiceLoad {
    agents: u64,
    names: u64,
    ports: (u16, u16),
    from: Instant,
    to: Option<Instant>,
    churn: u64,
}

/// How often a simulated agent says `done`.
const DONE_EVERY: core::time::Duration = core::time::Duration::from_millis(300);

/// The longest a flush may take (`flushes-prompt`): issue 16's worst case under loss.
const FLUSH_BOUND: core::time::Duration = core::time::Duration::from_secs(2);

/// The client-groups protocol as the simulator sees it.
#[derive(Clone, Debug, Default)]
pub struct GroupsProtocol {
    canary: bool,
    canary_ports: bool,
    services: Option<ServiceLoad>,
    messages: u64,
    /// Client streams per node that join the group (a join storm), and on which nodes
    /// (`None`: every node).
    joiners: u64,
    joiners_on: Option<usize>,
    from: Option<Instant>,
    to: Option<Instant>,
    group: Option<String>,
    names: Vec<String>,
    /// (view, number) → message.
    places: BTreeMap<(ViewId, u64), MsgId>,
    /// Per node: its life, the last place delivered, messages delivered in this life.
    last: Vec<Life>,
    /// Per (node, life, view): how many messages delivered there and a digest of them.
    per_view: BTreeMap<(usize, u64, ViewId), (u64, u64)>,
    /// (old view, new view) → (count, digest) of what was delivered in the old one.
    closed: BTreeMap<(ViewId, ViewId), (u64, u64, String)>,
    /// Payloads delivered per node (this life).
    got: Vec<BTreeSet<Bytes>>,
    /// Nodes that crashed at some time.
    crashed: BTreeSet<usize>,
    /// Payload → the node it was sent from, and its place among the run's accepted sends.
    sent: BTreeMap<Bytes, (usize, u64)>,
    /// Percent of the workload's messages sent in FIFO mode.
    fifo: u64,
    /// (view, FIFO id) → the payload delivered under it.
    fifo_places: BTreeMap<(ViewId, MsgId), Bytes>,
    /// (node, life, view, origin, incarnation) → the last FIFO number delivered.
    fifo_last: BTreeMap<(usize, u64, ViewId, String, u64), u64>,
    /// (node, life, origin, incarnation) → the send place of the last FIFO message
    /// delivered from it.
    fifo_order: BTreeMap<(usize, u64, String, u64), u64>,
    /// What service agents heard on their streams.
    agents: Agents,
    /// The longest flush any daemon reported (`GroupsEvent::Closed::took`).
    slowest_flush: core::time::Duration,
    violation: Option<String>,
}

fn err(n: &Node, msg: impl Into<String>) -> SexprError {
    SexprError::new(n.pos, msg.into())
}

fn digest(id: &MsgId, fifo: bool) -> u64 {
    // FNV-1a over the id's parts: order-independent once xor-ed together. A FIFO id is
    // numbered apart from the agreed ones: a tag keeps the two from cancelling out.
    flotilla_core::fnv::fnv1a(
        [u8::from(fifo)]
            .into_iter()
            .chain(id.origin.bytes())
            .chain(id.incarnation.to_le_bytes())
            .chain(id.lseq.to_le_bytes()),
    )
}

/// A simulated node's group daemon, named as the node: the first node starts alone and
/// the others join it; every event of the groups machine is reported (the checkers read
/// them). `tune` adjusts the front's settings. Shared with the VIP plug-in, whose nodes
/// run one under their agents.
pub fn group_daemon(
    node: &NodeSpec<'_>,
    rng: Rng,
    now: Instant,
    canary_deliver_early: bool,
    tune: impl FnOnce(&mut FrontSettings),
) -> GroupDaemon {
    let mut s = MembershipSettings::new(node.name, node.addr);
    if node.index != 0 {
        s.join = vec![node.addrs[0]];
    }
    let m = Membership::new(s, now, rng);
    let mut settings = FrontSettings::new(GroupsSettings {
        me: m.me().clone(),
        canary_deliver_early,
    });
    settings.report_groups = true;
    tune(&mut settings);
    GroupDaemon::linked(m, GroupsFront::new(settings, now), MembershipLink)
}

impl GroupsProtocol {
    /// Daemons with the planted bug (protocol `groups-canary`): a member delivers an item
    /// as soon as it arrives, even past a gap.
    pub fn canary() -> Self {
        GroupsProtocol {
            canary: true,
            ..Self::default()
        }
    }

    /// Daemons with the planted bug of service groups (protocol `services-canary`): a port
    /// handed out on both sides of a partition is kept by both after the heal.
    pub fn canary_ports() -> Self {
        GroupsProtocol {
            canary_ports: true,
            ..Self::default()
        }
    }

    /// Messages delivered in the run, all daemons together.
    pub fn deliveries(&self) -> usize {
        self.got.iter().map(BTreeSet::len).sum()
    }

    /// Messages sent in the run.
    pub fn sent(&self) -> usize {
        self.sent.len()
    }

    fn group(&self) -> String {
        self.group.clone().unwrap_or_else(|| "g".to_string())
    }

    fn violate(&mut self, msg: String) {
        if self.violation.is_none() {
            self.violation = Some(msg);
        }
    }

    fn running(world: &World<GroupDaemon>) -> Vec<usize> {
        (0..world.len())
            .filter(|&i| {
                world.node(i).status() != Status::Crashed && world.node(i).machine().is_some()
            })
            .collect()
    }
}

impl Protocol for GroupsProtocol {
    type Machine = GroupDaemon;

    fn name(&self) -> &'static str {
        if self.canary {
            "groups-canary"
        } else if self.canary_ports {
            "services-canary"
        } else {
            "groups"
        }
    }

    fn configure(&mut self, form: &Node, ctx: &ParseCtx) -> Result<bool, SexprError> {
        if form.head() == Some("services") {
            return self.configure_services(form).map(|()| true);
        }
        if form.head() != Some("groups") {
            return Ok(false);
        }
        for item in form.args() {
            let one = match item.args() {
                [one] => one,
                _ => return Err(err(item, "expected (:SETTING VALUE)")),
            };
            match item.head() {
                Some("messages") => self.messages = one.int_in(0, 1_000_000)? as u64,
                Some("from") => self.from = Some(Instant::ZERO + one.duration()?),
                Some("to") => self.to = Some(Instant::ZERO + one.duration()?),
                Some("group") => self.group = Some(one.text()?),
                Some("fifo") => self.fifo = one.int_in(0, 100)? as u64,
                Some("joiners") => self.joiners = one.int_in(0, 100_000)? as u64,
                Some("joiners-on") => self.joiners_on = Some(ctx.node(one)?),
                _ => {
                    return Err(err(
                        item,
                        "expected (:messages N), (:from T), (:to T), (:group NAME), (:fifo P), \
                         (:joiners N) or (:joiners-on NODE)",
                    ));
                }
            }
        }
        Ok(true)
    }

    fn parse_action(
        &self,
        form: &Node,
        ctx: &ParseCtx,
    ) -> Result<Option<(usize, CommandOf<Self>)>, SexprError> {
        match (form.head(), form.args()) {
            (Some(verb @ ("send" | "fsend")), [node]) => {
                let at = ctx.node(node)?;
                let (group, sender) = (self.group(), format!("#c#n{}", at + 1));
                let payload = Bytes::from(format!(
                    "a{}-{}",
                    at + 1,
                    node.pos.line * 1000 + node.pos.col
                ));
                let cmd = GroupsCommand::message(verb == "fsend", group, sender, payload);
                Ok(Some((at, Either::B(FrontCommand::Groups(cmd)))))
            }
            (Some(verb @ ("send" | "fsend")), _) => {
                Err(err(form, format!("expected (:{verb} NODE)")))
            }
            _ => Ok(None),
        }
    }

    fn commands(
        &self,
        nodes: usize,
        end: Instant,
        rng: &mut Rng,
    ) -> Vec<(Instant, usize, CommandOf<Self>)> {
        let from = self.from.unwrap_or(Instant::from_secs(2));
        let to = self.to.unwrap_or(end).max(from);
        let mut out = Vec::new();
        let join_at = Instant::from_millis(from.as_nanos() / 1_000_000 / 2);
        for n in 0..nodes {
            out.push((
                join_at,
                n,
                Either::B(FrontCommand::Groups(GroupsCommand::Join {
                    group: self.group(),
                    client: format!("#c#n{}", n + 1),
                })),
            ));
        }
        for k in 0..self.messages {
            let n = rng.below(nodes as u64) as usize;
            let span = to.saturating_duration_since(from);
            let t = from + rng.duration_between(core::time::Duration::ZERO, span);
            let (group, sender) = (self.group(), format!("#c#n{}", n + 1));
            let payload = Bytes::from(format!("m{k}"));
            // Drawn only when asked for, so runs without FIFO keep their seeds' faults.
            let fifo = self.fifo > 0 && rng.below(100) < self.fifo;
            let cmd = GroupsCommand::message(fifo, group, sender, payload);
            out.push((t, n, Either::B(FrontCommand::Groups(cmd))));
        }
        out.sort_by_key(|(t, _, _)| *t);
        out
    }

    fn workload(&self, nodes: usize, end: Instant, rng: &mut Rng) -> Vec<(Instant, Workload)> {
        let mut out = self.join_storm(nodes, end, rng);
        let Some(load) = &self.services else {
            return out;
        };
        let to = load.to.unwrap_or(end).max(load.from);
        let span = to.saturating_duration_since(load.from);
        let mut next = out.len() as u32;
        let mut agent = |out: &mut Vec<(Instant, Workload)>,
                         rng: &mut Rng,
                         node: usize,
                         leave: Option<Instant>| {
            let k = next;
            next += 1;
            let open = Instant::ZERO + load.from.saturating_duration_since(Instant::ZERO) / 2;
            out.push((open, Workload::Open { node, client: k }));
            let at = load.from + rng.duration_between(core::time::Duration::ZERO, span);
            let name = rng.below(load.names.max(1));
            out.push((
                at,
                Workload::Send {
                    client: k,
                    data: Bytes::from(format!("bind s{name}\n")),
                },
            ));
            let last = leave.unwrap_or(end);
            let mut t = at + DONE_EVERY;
            while t < last {
                out.push((
                    t,
                    Workload::Send {
                        client: k,
                        data: Bytes::from(format!("done s{name}\n")),
                    },
                ));
                t += DONE_EVERY;
            }
            if let Some(l) = leave {
                out.push((l, Workload::Close { client: k }));
            }
        };
        for node in 0..nodes {
            for _ in 0..load.agents {
                agent(&mut out, rng, node, None);
            }
        }
        for _ in 0..load.churn {
            let node = rng.below(nodes as u64) as usize;
            let leave = load.from + rng.duration_between(core::time::Duration::ZERO, span);
            agent(
                &mut out,
                rng,
                node,
                Some(leave + core::time::Duration::from_millis(500)),
            );
        }
        out.sort_by_key(|(t, w)| (*t, matches!(w, Workload::Close { .. })));
        out
    }

    fn predicates(&self) -> &'static [&'static str] {
        &[
            "quiet",
            "all-delivered",
            "services-settled",
            "barriers-finished",
            "all-in",
            "resends-bounded",
            "flushes-prompt",
        ]
    }

    fn build(&mut self, node: &NodeSpec<'_>, rng: Rng, now: Instant) -> GroupDaemon {
        let n = node.addrs.len();
        if self.last.len() != n {
            self.last = vec![(0, None, BTreeSet::new()); n];
            self.got = vec![BTreeSet::new(); n];
            self.names = (0..n).map(|i| format!("n{}", i + 1)).collect();
        }
        let life = self.last[node.index].0 + 1;
        self.last[node.index] = (life, None, BTreeSet::new());
        self.got[node.index].clear();
        if life > 1 {
            self.crashed.insert(node.index);
        }
        group_daemon(node, rng, now, self.canary, |settings| {
            settings.canary_port_conflicts = self.canary_ports;
            if let Some(load) = &self.services {
                settings.ports = load.ports;
            }
        })
    }

    fn observe(&mut self, world: &World<GroupDaemon>, obs: ObservationOf<'_, Self>) {
        match obs {
            Observation::Command {
                node,
                command:
                    Either::B(FrontCommand::Groups(
                        GroupsCommand::Send { payload, .. }
                        | GroupsCommand::SendFifo { payload, .. },
                    )),
                accepted: true,
            } => {
                let k = self.sent.len() as u64;
                self.sent.insert(payload.clone(), (node, k));
            }
            Observation::Event {
                node,
                event: Either::B(FrontEvent::Groups(ev)),
            } => self.on_event(world, node, ev),
            Observation::FromClient { node, client, data } => {
                self.agents.from_client(world.name(node), client, data);
            }
            Observation::ToClient { node, client, data } => {
                if let Err(e) = self.agents.to_client(world.name(node), client, data) {
                    self.violate(e);
                }
            }
            Observation::CloseClient { client, .. } => self.agents.closed(client),
            _ => {}
        }
    }

    fn check(&mut self, world: &World<GroupDaemon>, _touched: Option<usize>) -> Result<(), String> {
        for (i, n) in world.nodes().iter().enumerate() {
            if n.status() == Status::Crashed && self.last.get(i).is_some_and(|l| l.0 > 0) {
                self.crashed.insert(i);
            }
        }
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        if self.services.is_some() {
            Self::check_port_tables(world)?;
        }
        self.agents.settled()
    }

    fn predicate(&self, name: &str, world: &World<GroupDaemon>) -> bool {
        let up = Self::running(world);
        match name {
            "quiet" => up.iter().all(|&i| {
                world
                    .node(i)
                    .machine()
                    .is_some_and(|p| p.b().groups().pending() == 0 && !p.b().groups().flushing())
            }),
            "services-settled" => up.iter().all(|&i| {
                world.node(i).machine().is_some_and(|p| {
                    let s = p.b().services();
                    s.list().all(|(_, port, _)| port.is_some())
                })
            }),
            "barriers-finished" => up.iter().all(|&i| {
                world
                    .node(i)
                    .machine()
                    .is_some_and(|p| p.b().services().barriers().next().is_none())
            }),
            // Issue 16: at most 1 resend (orders, submits, FIFO data) per message sent,
            // counted over the daemons running now. Every resend over a stream is
            // spurious (a stream loses nothing; a tail stalled behind a retransmission
            // past RESEND_FIRST goes again). Over seeds 0..20 of groups-stream-loss at
            // most 0.5 per message since the stream model finds losses as Linux does
            // (a busy stream's loss costs milliseconds); 0.89–1.87 when every loss cost
            // a 200 ms timeout; several per message with the fixed repeats of before.
            // Real processes at 10 % loss: 0.04 (BENCHMARKS.md).
            "resends-bounded" => {
                let resent: u64 = up
                    .iter()
                    .filter_map(|&i| world.node(i).machine())
                    .map(|p| {
                        let s = p.b().groups().stats();
                        s.resent + s.fifo_resent
                    })
                    .sum();
                resent <= self.sent.len() as u64
            }
            // Issue 16: every flush so far finished within 2 s of its daemon learning the
            // view (the worst the issue allows under loss; p99 should be under 1 s).
            "flushes-prompt" => self.slowest_flush <= FLUSH_BOUND,
            "all-in" => super::membership::all_in_one_view(world, &up, |p| p.a().view()),
            "all-delivered" => {
                let steady: Vec<usize> = up
                    .into_iter()
                    .filter(|i| !self.crashed.contains(i))
                    .collect();
                self.sent
                    .iter()
                    .filter(|(_, (from, _))| !self.crashed.contains(from))
                    .all(|(p, _)| steady.iter().all(|&i| self.got[i].contains(p)))
            }
            _ => false,
        }
    }
}

impl GroupsProtocol {
    /// `joiners` client streams per node (or on `joiners-on`) open at half of `from`
    /// and join the group at random times in `[from, to]`, then stay.
    fn join_storm(&self, nodes: usize, end: Instant, rng: &mut Rng) -> Vec<(Instant, Workload)> {
        let from = self.from.unwrap_or(Instant::from_secs(2));
        let to = self.to.unwrap_or(end).max(from);
        let span = to.saturating_duration_since(from);
        let open = Instant::from_nanos(from.as_nanos() / 2);
        let on: Vec<usize> = match self.joiners_on {
            Some(n) => vec![n],
            None => (0..nodes).collect(),
        };
        let mut out = Vec::new();
        let mut k = 0u32;
        for &node in &on {
            for _ in 0..self.joiners {
                out.push((open, Workload::Open { node, client: k }));
                let at = from + rng.duration_between(core::time::Duration::ZERO, span);
                let data = Bytes::from(format!("join {}\n", self.group()));
                out.push((at, Workload::Send { client: k, data }));
                k += 1;
            }
        }
        out
    }

    fn configure_services(&mut self, form: &Node) -> Result<(), SexprError> {
        let mut load = ServiceLoad {
            agents: 1,
            names: 3,
            ports: (7000, 7999),
            from: Instant::from_secs(2),
            to: None,
            churn: 0,
        };
        for item in form.args() {
            match (item.head(), item.args()) {
                (Some("agents"), [n]) => load.agents = n.int_in(0, 1000)? as u64,
                (Some("names"), [n]) => load.names = n.int_in(1, 1000)? as u64,
                (Some("churn"), [n]) => load.churn = n.int_in(0, 10_000)? as u64,
                (Some("from"), [t]) => load.from = Instant::ZERO + t.duration()?,
                (Some("to"), [t]) => load.to = Some(Instant::ZERO + t.duration()?),
                (Some("ports"), [lo, hi]) => {
                    let lo = lo.int_in(1, 65_535)? as u16;
                    let hi = hi.int_in(i64::from(lo), 65_535)? as u16;
                    load.ports = (lo, hi);
                }
                _ => {
                    return Err(err(
                        item,
                        "expected (:agents N), (:names K), (:ports LO HI), (:from T), (:to T) or (:churn N)",
                    ));
                }
            }
        }
        self.services = Some(load);
        Ok(())
    }

    /// Daemons in one view that delivered the same items hold the same port table.
    fn check_port_tables(world: &World<GroupDaemon>) -> Result<(), String> {
        let mut seen: BTreeMap<(ViewId, u64), (String, BTreeMap<String, u16>)> = BTreeMap::new();
        for i in Self::running(world) {
            let Some(p) = world.node(i).machine() else {
                continue;
            };
            let g = p.b().groups();
            if g.flushing() {
                continue;
            }
            let at = (g.view().id.clone(), g.delivered());
            let table = p.b().services().ports();
            match seen.get(&at) {
                Some((who, t)) if *t != table => {
                    return Err(format!(
                        "port tables differ at {} #{}: {who} has {t:?}, {} has {table:?}",
                        at.0,
                        at.1,
                        world.name(i)
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(at, (world.name(i).to_string(), table));
                }
            }
        }
        Ok(())
    }

    fn on_event(&mut self, world: &World<GroupDaemon>, node: usize, ev: &GroupsEvent) {
        let name = world.name(node).to_string();
        match ev {
            GroupsEvent::Delivered {
                view,
                seq,
                id,
                payload,
                ..
            } => {
                self.on_place(node, &name, view, *seq, id, true);
                self.got[node].insert(payload.clone());
            }
            GroupsEvent::Skipped { view, seq, id, .. } => {
                self.on_place(node, &name, view, *seq, id, false);
            }
            GroupsEvent::FifoDelivered {
                view, id, payload, ..
            } => self.on_fifo(node, &name, view, id, payload),
            GroupsEvent::Closed { old, new, took, .. } => {
                self.slowest_flush = self.slowest_flush.max(*took);
                let life = self.last[node].0;
                let mine = self
                    .per_view
                    .get(&(node, life, old.clone()))
                    .copied()
                    .unwrap_or((0, 0));
                match self.closed.get(&(old.clone(), new.clone())) {
                    Some((c, d, who)) if (*c, *d) != mine => {
                        let msg = format!(
                            "virtual synchrony: passing from {old} to {new}, {who} delivered {c} \
                             messages of {old} and {name} {} (or other ones)",
                            mine.0
                        );
                        self.violate(msg);
                    }
                    Some(_) => {}
                    None => {
                        self.closed
                            .insert((old.clone(), new.clone()), (mine.0, mine.1, name));
                    }
                }
            }
            GroupsEvent::GroupView { .. } => {}
        }
    }

    fn on_place(
        &mut self,
        node: usize,
        name: &str,
        view: &ViewId,
        seq: u64,
        id: &MsgId,
        delivered: bool,
    ) {
        let place = (view.clone(), seq);
        match self.places.get(&place) {
            Some(other) if other != id => {
                let msg = format!("{view} #{seq} is {other:?} at one daemon and {id:?} at {name}");
                self.violate(msg);
            }
            Some(_) => {}
            None => {
                self.places.insert(place.clone(), id.clone());
            }
        }
        let (life, last, seen) = &mut self.last[node];
        let life = *life;
        let mut bad = Vec::new();
        if last.as_ref().is_some_and(|l| *l >= place) {
            bad.push(format!("{name} delivered {view} #{seq} after {last:?}"));
        }
        *last = Some(place);
        if delivered && !seen.insert(id.clone()) {
            bad.push(format!("{name} delivered {id:?} twice"));
        }
        if !delivered && !seen.contains(id) {
            bad.push(format!(
                "{name} skipped {id:?} as a duplicate, never having delivered it"
            ));
        }
        for msg in bad {
            self.violate(msg);
        }
        self.count_in_view((node, life, view), id, false);
    }

    /// One more message processed by `node` (in this life) in `view`, for the
    /// virtual-synchrony check.
    fn count_in_view(&mut self, (node, life, view): (usize, u64, &ViewId), id: &MsgId, fifo: bool) {
        let e = self
            .per_view
            .entry((node, life, view.clone()))
            .or_insert((0, 0));
        e.0 += 1;
        e.1 ^= digest(id, fifo);
    }

    fn on_fifo(&mut self, node: usize, name: &str, view: &ViewId, id: &MsgId, payload: &Bytes) {
        let mut bad = Vec::new();
        let key = (view.clone(), id.clone());
        match self.fifo_places.get(&key) {
            Some(p) if p != payload => bad.push(format!(
                "FIFO {view} {id:?} is {p:?} at one daemon and {payload:?} at {name}"
            )),
            Some(_) => {}
            None => {
                self.fifo_places.insert(key, payload.clone());
            }
        }
        let life = self.last[node].0;
        let origin = (id.origin.clone(), id.incarnation);
        let at = (node, life, view.clone(), origin.0.clone(), origin.1);
        let last = self.fifo_last.insert(at, id.lseq).unwrap_or(0);
        if id.lseq != last + 1 {
            bad.push(format!(
                "FIFO: {name} delivered {}'s #{} of {view} after #{last}",
                id.origin, id.lseq
            ));
        }
        if let Some(&(_, k)) = self.sent.get(payload) {
            let before = self
                .fifo_order
                .insert((node, life, origin.0.clone(), origin.1), k);
            if before.is_some_and(|b| b >= k) {
                bad.push(format!(
                    "FIFO: {name} delivered {}'s {payload:?} after a message sent later (or \
                     the same twice)",
                    id.origin
                ));
            }
        }
        for msg in bad {
            self.violate(msg);
        }
        self.got[node].insert(payload.clone());
        self.count_in_view((node, life, view), id, true);
    }
}
