//! The client-groups plug-in: membership and client groups side by side in every node
//! (`flotilla_core::groups::GroupDaemon`, SPEC.md §10) under the simulator.
//!
//! Every node is a group daemon named as the node; the first starts alone and the
//! others join it. `(:groups (:messages N) (:from T) (:to T) (:group G))` has one client
//! on every node join group `G` (default `g`) just before `from`, and N messages sent to
//! it from random nodes at random times in `[from, to]` (payloads `m0`, `m1`, …).
//! Actions: `(:send NODE)` one more message.
//!
//! Checked after every step:
//! - **one place, one message**: an item's (view, number) names one message everywhere;
//! - **order**: each daemon delivers in increasing (view, number) within one life, and no
//!   message twice;
//! - **virtual synchrony**: daemons that pass from one view to the same next view
//!   delivered the same messages in the former (compared as count and digest of the
//!   message ids).
//!
//! Predicates: `quiet` (no daemon has a message on its way or a flush running),
//! `all-delivered` (every message sent by a daemon that never crashed was delivered by
//! every daemon that never crashed: for runs without partitions).

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

use crate::protocol::{CommandOf, NodeSpec, Observation, ObservationOf, ParseCtx, Protocol};
use crate::world::{Status, World};

/// A node's life number, the last place it delivered, and what it delivered in it.
type Life = (u64, Option<(ViewId, u64)>, BTreeSet<MsgId>);

/// The client-groups protocol as the simulator sees it.
#[derive(Clone, Debug, Default)]
pub struct GroupsProtocol {
    canary: bool,
    messages: u64,
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
    /// Payload → the node it was sent from.
    sent: BTreeMap<Bytes, usize>,
    violation: Option<String>,
}

fn err(n: &Node, msg: impl Into<String>) -> SexprError {
    SexprError::new(n.pos, msg.into())
}

fn digest(id: &MsgId) -> u64 {
    // FNV-1a over the id's parts: order-independent once xor-ed together.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id
        .origin
        .bytes()
        .chain(id.incarnation.to_le_bytes())
        .chain(id.lseq.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
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
        } else {
            "groups"
        }
    }

    fn configure(&mut self, form: &Node, _ctx: &ParseCtx) -> Result<bool, SexprError> {
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
                _ => {
                    return Err(err(
                        item,
                        "expected (:messages N), (:from T), (:to T) or (:group NAME)",
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
            (Some("send"), [node]) => {
                let at = ctx.node(node)?;
                let cmd = GroupsCommand::Send {
                    group: self.group(),
                    sender: format!("#c#n{}", at + 1),
                    payload: Bytes::from(format!(
                        "a{}-{}",
                        at + 1,
                        node.pos.line * 1000 + node.pos.col
                    )),
                };
                Ok(Some((at, Either::B(FrontCommand::Groups(cmd)))))
            }
            (Some("send"), _) => Err(err(form, "expected (:send NODE)")),
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
            out.push((
                t,
                n,
                Either::B(FrontCommand::Groups(GroupsCommand::Send {
                    group: self.group(),
                    sender: format!("#c#n{}", n + 1),
                    payload: Bytes::from(format!("m{k}")),
                })),
            ));
        }
        out.sort_by_key(|(t, _, _)| *t);
        out
    }

    fn predicates(&self) -> &'static [&'static str] {
        &["quiet", "all-delivered"]
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
        let mut s = MembershipSettings::new(node.name, node.addr);
        if node.index != 0 {
            s.join = vec![node.addrs[0]];
        }
        let m = Membership::new(s, now, rng);
        let mut settings = FrontSettings::new(GroupsSettings {
            me: m.me().clone(),
            canary_deliver_early: self.canary,
        });
        settings.report_groups = true;
        let g = GroupsFront::new(settings, now);
        GroupDaemon::linked(m, g, MembershipLink)
    }

    fn observe(&mut self, world: &World<GroupDaemon>, obs: ObservationOf<'_, Self>) {
        match obs {
            Observation::Command {
                node,
                command: Either::B(FrontCommand::Groups(GroupsCommand::Send { payload, .. })),
                accepted: true,
            } => {
                self.sent.insert(payload.clone(), node);
            }
            Observation::Event {
                node,
                event: Either::B(FrontEvent::Groups(ev)),
            } => self.on_event(world, node, ev),
            _ => {}
        }
    }

    fn check(&mut self, world: &World<GroupDaemon>, _touched: Option<usize>) -> Result<(), String> {
        for (i, n) in world.nodes().iter().enumerate() {
            if n.status() == Status::Crashed && self.last.get(i).is_some_and(|l| l.0 > 0) {
                self.crashed.insert(i);
            }
        }
        match &self.violation {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
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
            "all-delivered" => {
                let steady: Vec<usize> = up
                    .into_iter()
                    .filter(|i| !self.crashed.contains(i))
                    .collect();
                self.sent
                    .iter()
                    .filter(|(_, from)| !self.crashed.contains(from))
                    .all(|(p, _)| steady.iter().all(|&i| self.got[i].contains(p)))
            }
            _ => false,
        }
    }
}

impl GroupsProtocol {
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
            GroupsEvent::Closed { old, new, .. } => {
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
        let e = self
            .per_view
            .entry((node, life, view.clone()))
            .or_insert((0, 0));
        e.0 += 1;
        e.1 ^= digest(id);
    }
}
