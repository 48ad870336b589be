//! The VIP plug-in (SPEC.md §11.5): every node runs its group daemon and its VIP agent in
//! one machine (`flotilla_core::vip::VipNode`); the agents meet in their group and share
//! the VIPs out. The plug-in keeps the global truth the agents cannot see — the
//! addresses each node really has, changed when an add or remove effect succeeds, and
//! gone with a node that crashes (its host is down) — and checks it after every step.
//!
//! `(:vip (:vips N) (:witness NODE) (:partition primary|all) (:sticky on|off)
//! (:balance place|rebalance|off) (:grace D) (:steady-after T))`: N VIPs (default 3;
//! `v0`, `v1`, …); NODE votes and holds none; `grace` (default 2s) is how long two nodes
//! that are not in one generation of the group may both have one VIP (a side that lost
//! its majority learns it only when its daemon gives up on the others), or two that
//! just merged; `steady-after`: from T on, no address may change (no move without
//! cause); `load`: N client messages sent through the daemons' group `load` from random
//! nodes between 1 s and the end. Actions: `(:vip-move NODE VIP TARGET)`, `(:vip-prefer NODE VIP TARGET)`,
//! `(:vip-eligible NODE on|off)` (NODE's application asks).
//!
//! Checked after every step: **one holder** — two running nodes that have one VIP at
//! once are a violation when they were in one generation of the group as it began
//! (release before acquire failed), or after `grace` (the other cases), except across
//! components in `(:partition all)`; a node that could not remove its address (it is
//! fenced, and retries) and a paused node (it cannot act) are allowed for. **Steady**:
//! no address changes after `steady-after`. **No lost line**: the groups machine refused
//! none of the agents' lines. Predicate `vips-up`: every VIP's addresses are on exactly
//! one running node (what the network sees). Predicate `vips-held`: every VIP is on exactly one running
//! node, the one every running agent's settled table names.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use flotilla_core::compose::Either;
use flotilla_core::groups::GroupsCommand;
use flotilla_core::groups::front::FrontCommand;
use flotilla_core::sexpr::{Node, SexprError};
use flotilla_core::vip::config::{Balance, PartitionMode, VipAddress, VipConfig, VipSpec};
use flotilla_core::vip::{AgentLink, Local, VipAgent, VipCommand, VipEffect, VipNode};
use flotilla_core::{EffectError, Instant, Rng};

use crate::protocol::{CommandOf, EffectOf, EffectValueOf, NodeSpec, ParseCtx, Protocol};
use crate::world::{Status, World};

/// Two nodes with one VIP: since when, and since when they are in one generation.
#[derive(Clone, Debug)]
struct Dual {
    since: Instant,
    together: Option<Instant>,
}

/// The VIP protocol as the simulator sees it.
#[derive(Clone, Debug)]
pub struct VipProtocol {
    canary: bool,
    vips: usize,
    witness: Option<usize>,
    partition: PartitionMode,
    sticky: bool,
    balance: Balance,
    grace: Duration,
    steady_after: Option<Instant>,
    /// Client messages sent through the daemons' groups during the run (another group).
    load: u64,
    names: Vec<String>,
    /// The global truth: the VIPs (by index) each node has.
    has: Vec<BTreeSet<usize>>,
    duals: BTreeMap<(usize, usize, usize), Dual>,
    /// Address changes (adds and removes that succeeded), all nodes together.
    changes: u64,
    violation: Option<String>,
}

impl Default for VipProtocol {
    fn default() -> Self {
        VipProtocol {
            canary: false,
            vips: 3,
            witness: None,
            partition: PartitionMode::Primary,
            sticky: true,
            balance: Balance::Place,
            grace: Duration::from_secs(2),
            steady_after: None,
            load: 0,
            names: Vec::new(),
            has: Vec::new(),
            duals: BTreeMap::new(),
            changes: 0,
            violation: None,
        }
    }
}

fn err(n: &Node, msg: impl Into<String>) -> SexprError {
    SexprError::new(n.pos, msg.into())
}

impl VipProtocol {
    /// Agents with the planted bug (protocol `vip-canary`): a VIP moved away is granted
    /// to its next holder before the old holder's release is in the order.
    pub fn canary() -> Self {
        VipProtocol {
            canary: true,
            ..Self::default()
        }
    }

    /// Address changes so far (adds and removes that succeeded).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    fn config(&self) -> VipConfig {
        let nodes: Vec<&str> = self
            .names
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != self.witness)
            .map(|(_, n)| n.as_str())
            .collect();
        let specs = (0..self.vips)
            .map(|i| VipSpec {
                name: format!("v{i}"),
                addresses: vec![VipAddress {
                    ip: format!("10.200.{}.{}", i / 250, i % 250 + 1)
                        .parse()
                        .expect("an address"),
                    prefix: 16,
                    interface: "eth0".into(),
                }],
                nodes: Vec::new(),
                prefer: None,
            })
            .collect();
        let mut c = VipConfig::new(&nodes, specs);
        c.witness = self.witness.map(|w| self.names[w].clone());
        c.partition = self.partition;
        c.sticky = self.sticky;
        c.balance = self.balance;
        c.announce.count = 1;
        c.timing.retry = Duration::from_millis(500);
        c.timing.change_timeout = Duration::from_secs(1);
        c
    }

    fn violate(&mut self, msg: String) {
        if self.violation.is_none() {
            self.violation = Some(msg);
        }
    }

    fn agent(world: &World<VipNode>, i: usize) -> Option<&VipAgent> {
        let n = world.node(i);
        if n.status() == Status::Crashed {
            return None;
        }
        n.machine().map(|m| m.b())
    }

    fn index(&self, vip: &str) -> Option<usize> {
        vip.strip_prefix('v')?
            .parse()
            .ok()
            .filter(|&i| i < self.vips)
    }
}

impl Protocol for VipProtocol {
    type Machine = VipNode;

    fn name(&self) -> &'static str {
        if self.canary { "vip-canary" } else { "vip" }
    }

    fn configure(&mut self, form: &Node, ctx: &ParseCtx) -> Result<bool, SexprError> {
        if form.head() != Some("vip") {
            return Ok(false);
        }
        for item in form.args() {
            let [one] = item.args() else {
                return Err(err(item, "expected (:SETTING VALUE)"));
            };
            match item.head() {
                Some("vips") => self.vips = one.int_in(1, 256)? as usize,
                Some("witness") => self.witness = Some(ctx.node(one)?),
                Some("partition") => {
                    self.partition = match one.text()?.as_str() {
                        "primary" => PartitionMode::Primary,
                        "all" => PartitionMode::All,
                        _ => return Err(err(one, "partition is primary or all")),
                    }
                }
                Some("sticky") => self.sticky = one.text()? == "on",
                Some("balance") => {
                    self.balance = match one.text()?.as_str() {
                        "place" => Balance::Place,
                        "rebalance" => Balance::Rebalance,
                        "off" => Balance::Off,
                        _ => return Err(err(one, "balance is place, rebalance or off")),
                    }
                }
                Some("grace") => self.grace = one.duration()?,
                Some("steady-after") => self.steady_after = Some(Instant::ZERO + one.duration()?),
                Some("load") => self.load = one.int_in(0, 1_000_000)? as u64,
                _ => {
                    return Err(err(
                        item,
                        "expected (:vips N), (:witness NODE), (:partition primary|all), \
                         (:sticky on|off), (:balance place|rebalance|off), (:grace D), \
                         (:steady-after T) or (:load N)",
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
        let name = |n: &Node| -> Result<String, SexprError> {
            let i = ctx.node(n)?;
            Ok(ctx
                .names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("n{}", i + 1)))
        };
        let cmd = match (form.head(), form.args()) {
            (Some("vip-move"), [node, vip, target]) => (
                ctx.node(node)?,
                VipCommand::Move {
                    vip: vip.text()?,
                    node: name(target)?,
                    token: u64::from(form.pos.line) * 1000 + u64::from(form.pos.col),
                },
            ),
            (Some("vip-prefer"), [node, vip, target]) => (
                ctx.node(node)?,
                VipCommand::Prefer {
                    vip: vip.text()?,
                    node: Some(name(target)?),
                },
            ),
            (Some("vip-eligible"), [node, on]) => {
                (ctx.node(node)?, VipCommand::SetEligible(on.text()? == "on"))
            }
            (Some(v @ ("vip-move" | "vip-prefer" | "vip-eligible")), _) => {
                return Err(err(
                    form,
                    format!("(:{v} …) takes a node and its arguments"),
                ));
            }
            _ => return Ok(None),
        };
        Ok(Some((cmd.0, Either::B(cmd.1))))
    }

    fn commands(
        &self,
        nodes: usize,
        end: Instant,
        rng: &mut Rng,
    ) -> Vec<(Instant, usize, CommandOf<Self>)> {
        let from = Instant::from_secs(1);
        let span = end.saturating_duration_since(from);
        let mut out: Vec<(Instant, usize, CommandOf<Self>)> = (0..self.load)
            .map(|k| {
                let t = from + rng.duration_between(Duration::ZERO, span);
                let n = rng.below(nodes as u64) as usize;
                let cmd = GroupsCommand::Send {
                    group: "load".into(),
                    sender: format!("load{}", n + 1),
                    payload: Bytes::from(format!("m{k}")),
                };
                (t, n, Either::A(Either::B(FrontCommand::Groups(cmd))))
            })
            .collect();
        out.sort_by_key(|(t, _, _)| *t);
        out
    }

    fn predicates(&self) -> &'static [&'static str] {
        &["vips-held", "vips-up"]
    }

    fn build(&mut self, node: &NodeSpec<'_>, rng: Rng, now: Instant) -> VipNode {
        let n = node.addrs.len();
        if self.has.len() != n {
            self.has = vec![BTreeSet::new(); n];
            if self.names.len() != n {
                self.names = (0..n).map(|i| format!("n{}", i + 1)).collect();
            }
        }
        self.names[node.index] = node.name.to_string();
        // A restarted node is a host that came back: it has no VIP address.
        self.has[node.index].clear();
        let daemon = super::groups::group_daemon(node, rng, now, false, |_| {});
        let mut agent = VipAgent::new(node.name, self.config(), now);
        agent.set_canary_acquire_early(self.canary);
        VipNode::linked(daemon, agent, AgentLink::default())
    }

    fn effect(
        &mut self,
        world: &World<VipNode>,
        node: usize,
        effect: &EffectOf<Self>,
    ) -> Result<EffectValueOf<Self>, EffectError> {
        let Either::B(e) = effect else {
            return Err(EffectError::Unsupported);
        };
        match e {
            VipEffect::Add { vip, .. } | VipEffect::Remove { vip, .. } => {
                let Some(i) = self.index(vip) else {
                    return Err(EffectError::Failed(format!("no VIP {vip}")));
                };
                let changed = if matches!(e, VipEffect::Add { .. }) {
                    self.has[node].insert(i)
                } else {
                    self.has[node].remove(&i)
                };
                if changed {
                    self.changes += 1;
                    if let Some(t) = self.steady_after
                        && world.now() >= t
                    {
                        self.violate(format!(
                            "steady: {} {} v{i} at {:?} without cause",
                            world.name(node),
                            if matches!(e, VipEffect::Add { .. }) {
                                "added"
                            } else {
                                "removed"
                            },
                            world.now()
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(Either::B(()))
    }

    fn check(&mut self, world: &World<VipNode>, _touched: Option<usize>) -> Result<(), String> {
        let now = world.now();
        for i in 0..world.len() {
            if world.node(i).status() == Status::Crashed {
                self.has[i].clear();
            }
            if let Some(m) = world.node(i).machine()
                && world.node(i).status() != Status::Crashed
            {
                let refused = m.link().refused;
                if refused > 0 {
                    self.violate(format!(
                        "{}: {refused} agent lines refused by the groups machine",
                        world.name(i)
                    ));
                }
            }
        }
        // Pairs of running nodes that have one VIP.
        let mut seen = BTreeSet::new();
        for v in 0..self.vips {
            let holders: Vec<usize> = (0..world.len())
                .filter(|&n| self.has[n].contains(&v))
                .filter(|&n| world.node(n).status() == Status::Up)
                .filter(|&n| {
                    // A node that could not remove its address keeps it, knowingly.
                    Self::agent(world, n).is_some_and(|a| {
                        !(a.local(v) == Local::RemoveFailed
                            || (a.facts().fenced && a.local(v) == Local::Removing))
                    })
                })
                .collect();
            for (k, &x) in holders.iter().enumerate() {
                for &y in &holders[k + 1..] {
                    let (ax, ay) = (
                        Self::agent(world, x).expect("up"),
                        Self::agent(world, y).expect("up"),
                    );
                    let together = ax.table().generation().is_some()
                        && ax.table().generation() == ay.table().generation();
                    let d = self.duals.entry((v, x, y)).or_insert(Dual {
                        since: now,
                        together: together.then_some(now),
                    });
                    if together && d.together.is_none() {
                        d.together = Some(now);
                    }
                    if !together {
                        d.together = None;
                    }
                    seen.insert((v, x, y));
                    let (since, tog) = (d.since, d.together);
                    let what =
                        format!("v{v} is on {} and {} at once", world.name(x), world.name(y));
                    if tog == Some(since) && since == now {
                        self.violate(format!(
                            "one holder: {what}, in one generation of the group at {now:?} (acquired before the release)"
                        ));
                    } else if let Some(t) = tog {
                        if now.saturating_duration_since(t) > self.grace {
                            self.violate(format!("one holder: {what} since {since:?}, in one generation for longer than {:?}", self.grace));
                        }
                    } else if self.partition == PartitionMode::Primary
                        && now.saturating_duration_since(since) > self.grace
                    {
                        self.violate(format!("one holder: {what} since {since:?}, across components for longer than {:?}", self.grace));
                    }
                }
            }
        }
        self.duals.retain(|k, _| seen.contains(k));
        match &self.violation {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }

    fn predicate(&self, name: &str, world: &World<VipNode>) -> bool {
        let holders = |v: usize| -> Vec<usize> {
            (0..world.len())
                .filter(|&n| world.node(n).status() == Status::Up && self.has[n].contains(&v))
                .collect()
        };
        match name {
            // What the network sees: every VIP's addresses on exactly one running node.
            "vips-up" => (0..self.vips).all(|v| holders(v).len() == 1),
            "vips-held" => (0..self.vips).all(|v| {
                let on = holders(v);
                on.len() == 1
                    && (0..world.len())
                        .filter_map(|n| Self::agent(world, n))
                        .all(|a| {
                            a.table().settled()
                                && a.table().entries()[v].holder.as_deref()
                                    == Some(world.name(on[0]))
                        })
            }),
            _ => false,
        }
    }
}
