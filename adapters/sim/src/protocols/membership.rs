//! The membership plug-in: daemons keeping an agreed view (SPEC.md §9) under the
//! simulator.
//!
//! Every node is a daemon named as the node, listening at the node's address. By default
//! the cluster is formed by joins: every daemon but the first is started with `--join`
//! naming the first (`(:join-seed NODE)` picks another); `(:configured true)` instead
//! lists every node in the configuration, as a file would.
//!
//! Checked after every step:
//! - **one identifier, one member list**: two daemons that installed the same view id
//!   (at any time) installed the same members;
//! - **identifiers only grow**: each daemon's installed view ids increase (within one
//!   life of the daemon);
//! - **one view at a time**: a coordinator commits a view only if no other member's
//!   last acknowledgement delivered anywhere was of a higher proposal of another
//!   coordinator (one given since means the member was counted into two views).
//!
//! Predicates: `agreed` (in every set of running daemons that can all reach each other
//! and nothing else, every daemon holds the same view, and its members are exactly that
//! set), `one-primary` (agreed, and at most one of those views is primary), `all-in`
//! (every running daemon holds one view of all running daemons). The worst time from a
//! daemon's crash to the last running daemon holding a view without it is recorded.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use flotilla_core::membership::{
    ClusterConfig, MemberMsg, Membership, MembershipCommand, MembershipEvent, MembershipSettings,
    Timing, View, ViewId,
};
use flotilla_core::sexpr::{Node, SexprError};
use flotilla_core::{Instant, Rng};

use crate::protocol::{CommandOf, NodeSpec, Observation, ObservationOf, ParseCtx, Protocol};
use crate::world::{Status, World};

/// The membership protocol as the simulator sees it.
#[derive(Clone, Debug, Default)]
pub struct MembershipProtocol {
    canary: bool,
    configured: bool,
    seed: usize,
    timing: Timing,
    names: Vec<String>,
    /// Node index by name.
    index: BTreeMap<String, usize>,
    /// Every view id installed anywhere, with its members.
    ids: BTreeMap<ViewId, Vec<String>>,
    /// Each node's last installed view id and the life it was installed in.
    last: Vec<Option<(u64, ViewId)>>,
    /// When each crashed node went down, until every running daemon left it out.
    down_since: BTreeMap<usize, Instant>,
    /// Crashed nodes whose convergence was recorded (until they restart).
    noted: BTreeSet<usize>,
    /// Crashed nodes some running daemon already left out (until they restart).
    first_noted: BTreeSet<usize>,
    /// Nodes seen running at least once.
    ran: BTreeSet<usize>,
    /// A view was installed since the last check: crashes need looking at again.
    dirty: bool,
    /// Crash to the first running daemon's view without it (the coordinator's commit).
    detections: Vec<Duration>,
    /// Crash to the last running daemon's view without it.
    convergences: Vec<Duration>,
    views_installed: u64,
    /// The last acknowledgement each node was seen to deliver: its life (incarnation)
    /// and the proposal it acknowledged.
    last_ack: BTreeMap<usize, (u64, ViewId)>,
    violation: Option<String>,
}

/// The predicate `all-in`, for any machine that holds a membership (`view_of`): every
/// node of `up` is in one view whose members are exactly `up`.
pub(crate) fn all_in_one_view<M>(
    world: &World<M>,
    up: &[usize],
    view_of: impl Fn(&M) -> &View,
) -> bool {
    let want: BTreeSet<&str> = up.iter().map(|&i| world.name(i)).collect();
    let views: Vec<&View> = up
        .iter()
        .filter_map(|&i| world.node(i).machine())
        .map(view_of)
        .collect();
    views.windows(2).all(|w| w[0].id == w[1].id)
        && views
            .first()
            .is_some_and(|v| v.names().collect::<BTreeSet<_>>() == want)
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

/// Reads `(:heartbeat D)`-style timing settings into `t`; false if `item` is not one.
fn timing_setting(t: &mut Timing, item: &Node) -> Result<bool, SexprError> {
    let slot = match item.head() {
        Some("heartbeat") => &mut t.heartbeat,
        Some("suspect-after") => &mut t.suspect_after,
        Some("verify-for") => &mut t.verify_for,
        Some("retry") => &mut t.retry,
        Some("ack-timeout") => &mut t.ack_timeout,
        Some("commit-timeout") => &mut t.commit_timeout,
        Some("hello") => &mut t.hello,
        _ => return Ok(false),
    };
    let d = one(item)?.duration()?;
    if d.is_zero() {
        return Err(err(item, "a timing must be more than zero"));
    }
    *slot = d;
    Ok(true)
}

impl MembershipProtocol {
    /// Daemons with the planted bug (protocol `membership-canary`).
    pub fn canary() -> Self {
        MembershipProtocol {
            canary: true,
            ..Self::default()
        }
    }

    /// The worst time seen from a crash to the first running daemon installing a view
    /// without it (failure detection).
    pub fn worst_detection(&self) -> Option<Duration> {
        self.detections.iter().max().copied()
    }

    /// Every detection time seen.
    pub fn detections(&self) -> &[Duration] {
        &self.detections
    }

    /// The worst time seen from a crash to the last running daemon installing a view
    /// without it (view convergence).
    pub fn worst_convergence(&self) -> Option<Duration> {
        self.convergences.iter().max().copied()
    }

    /// Every convergence time seen.
    pub fn convergences(&self) -> &[Duration] {
        &self.convergences
    }

    /// Views installed in the run, all daemons together.
    pub fn views_installed(&self) -> u64 {
        self.views_installed
    }

    fn config_for(&self, addrs: &[flotilla_core::PeerAddr], names: &[String]) -> ClusterConfig {
        ClusterConfig {
            version: 0,
            daemons: if self.configured {
                names.iter().cloned().zip(addrs.iter().copied()).collect()
            } else {
                Vec::new()
            },
            timing: self.timing.clone(),
            removed: Vec::new(),
        }
    }

    fn violate(&mut self, msg: String) {
        if self.violation.is_none() {
            self.violation = Some(msg);
        }
    }

    /// Running daemons that take part (not stopped after leaving or a refusal).
    fn running(world: &World<Membership>) -> Vec<usize> {
        world
            .nodes()
            .iter()
            .enumerate()
            .filter(|(_, n)| n.status() == Status::Up)
            .filter(|(_, n)| n.machine().is_some_and(Membership::active))
            .map(|(i, _)| i)
            .collect()
    }

    /// Sets of running daemons that can all reach each other (both ways), or `None` when
    /// reachability is not a partition (one-way blocks): agreement is then not asked.
    fn components(world: &World<Membership>) -> Option<Vec<Vec<usize>>> {
        let up = Self::running(world);
        let net = world.network();
        let mut comps: Vec<Vec<usize>> = Vec::new();
        for &i in &up {
            match comps
                .iter_mut()
                .find(|c| net.passes(c[0], i) && net.passes(i, c[0]))
            {
                Some(c) => c.push(i),
                None => comps.push(vec![i]),
            }
        }
        for c in &comps {
            for &a in c {
                for &b in c {
                    if !net.passes(a, b) {
                        return None;
                    }
                }
            }
        }
        Some(comps)
    }

    fn agreed(&self, world: &World<Membership>) -> bool {
        let Some(comps) = Self::components(world) else {
            return false;
        };
        comps.iter().all(|c| {
            let want: BTreeSet<&str> = c.iter().map(|&i| world.name(i)).collect();
            let views: Vec<_> = c
                .iter()
                .filter_map(|&i| world.node(i).machine())
                .map(|m| m.view())
                .collect();
            views.windows(2).all(|w| w[0].id == w[1].id)
                && views
                    .first()
                    .is_some_and(|v| v.names().collect::<BTreeSet<_>>() == want)
        })
    }

    fn one_primary(&self, world: &World<Membership>) -> bool {
        if !self.agreed(world) {
            return false;
        }
        let primaries: BTreeSet<ViewId> = Self::running(world)
            .into_iter()
            .filter_map(|i| world.node(i).machine())
            .filter(|m| m.view().primary)
            .map(|m| m.view().id.clone())
            .collect();
        primaries.len() <= 1
    }

    fn all_in(&self, world: &World<Membership>) -> bool {
        all_in_one_view(world, &Self::running(world), Membership::view)
    }
}

impl Protocol for MembershipProtocol {
    type Machine = Membership;

    fn name(&self) -> &'static str {
        if self.canary {
            "membership-canary"
        } else {
            "membership"
        }
    }

    fn configure(&mut self, form: &Node, ctx: &ParseCtx) -> Result<bool, SexprError> {
        if form.head() != Some("membership") {
            return Ok(false);
        }
        for item in form.args() {
            if timing_setting(&mut self.timing, item)? {
                continue;
            }
            match item.head() {
                Some("configured") => {
                    self.configured = match one(item)?.text()?.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(err(item, "expected true or false")),
                    }
                }
                Some("join-seed") => self.seed = ctx.node(one(item)?)?,
                _ => {
                    return Err(err(
                        item,
                        "expected (:configured BOOL), (:join-seed NODE) or a timing: (:heartbeat D) (:suspect-after D) (:verify-for D) (:retry D) (:ack-timeout D) (:commit-timeout D) (:hello D)",
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
        match form.head() {
            Some("leave") => Ok(Some((ctx.node(one(form)?)?, MembershipCommand::Leave))),
            Some("reload") => {
                let [node, settings @ ..] = form.args() else {
                    return Err(err(
                        form,
                        "expected (:reload NODE (:daemons NODE...) TIMING...)",
                    ));
                };
                let at = ctx.node(node)?;
                let mut timing = self.timing.clone();
                let mut daemons = Vec::new();
                for item in settings {
                    if timing_setting(&mut timing, item)? {
                        continue;
                    }
                    match item.head() {
                        Some("daemons") => {
                            for n in item.args() {
                                let i = ctx.node(n)?;
                                let name =
                                    ctx.names.get(i).cloned().unwrap_or(format!("n{}", i + 1));
                                daemons.push((name, crate::world::node_addr(i)));
                            }
                        }
                        _ => return Err(err(item, "expected (:daemons NODE...) or a timing")),
                    }
                }
                let config = ClusterConfig {
                    version: 0,
                    daemons,
                    timing,
                    removed: Vec::new(),
                };
                Ok(Some((at, MembershipCommand::Reload(config))))
            }
            _ => Ok(None),
        }
    }

    fn predicates(&self) -> &'static [&'static str] {
        &["agreed", "one-primary", "all-in"]
    }

    fn describe(&self, frame: &flotilla_core::wire::Frame) -> Option<String> {
        let names = |v: &View| v.names().collect::<Vec<_>>().join(" ");
        Some(match MemberMsg::decode(frame).ok()? {
            MemberMsg::Propose { view, .. } => format!("propose {} {{{}}}", view.id, names(&view)),
            MemberMsg::Ack { id, .. } => format!("ack {id}"),
            MemberMsg::Nack { id, higher } => format!("nack {id} held by {higher}"),
            MemberMsg::Commit { view, .. } => format!(
                "commit {} {{{}}}{}",
                view.id,
                names(&view),
                if view.primary { " primary" } else { "" }
            ),
            MemberMsg::ViewState { view, .. } => {
                format!("view-state {} {{{}}}", view.id, names(&view))
            }
            MemberMsg::Hello { view, .. } => format!("hello {view}"),
            MemberMsg::Heartbeat { .. } => return None,
            other => format!("{other:?}")
                .split([' ', '{', '('])
                .next()?
                .to_lowercase(),
        })
    }

    fn build(&mut self, node: &NodeSpec<'_>, rng: Rng, now: Instant) -> Membership {
        let n = node.addrs.len();
        if self.names.len() != n {
            self.names = (0..n).map(|i| format!("n{}", i + 1)).collect();
            self.index = (0..n).map(|i| (self.names[i].clone(), i)).collect();
            self.last = vec![None; n];
        }
        self.index.remove(&self.names[node.index]);
        self.names[node.index] = node.name.to_string();
        self.index.insert(node.name.to_string(), node.index);
        let names = self.names.clone();
        let mut s = MembershipSettings::new(node.name, node.addr);
        s.config = self.config_for(node.addrs, &names);
        if !self.configured && node.index != self.seed {
            s.join = vec![node.addrs[self.seed]];
        }
        s.canary_install_early = self.canary;
        self.down_since.remove(&node.index);
        self.noted.remove(&node.index);
        self.first_noted.remove(&node.index);
        Membership::new(s, now, rng)
    }

    fn observe(&mut self, world: &World<Membership>, obs: ObservationOf<'_, Self>) {
        if let Observation::Delivered {
            from,
            frame,
            accepted: true,
            ..
        } = obs
        {
            if let Ok(MemberMsg::Ack { id, from: m, .. }) = MemberMsg::decode(frame) {
                self.last_ack.insert(from, (m.incarnation, id));
            }
            return;
        }
        let Observation::Event {
            node,
            event: MembershipEvent::ViewInstalled { view, .. },
        } = obs
        else {
            return;
        };
        self.views_installed += 1;
        self.dirty = true;
        let members: Vec<String> = view.names().map(str::to_string).collect();
        if !self.ids.contains_key(&view.id) && view.id.coordinator == world.name(node) {
            // The commit. An acknowledgement promises the coordinator that the member
            // takes part in no other proposal until this commit (or its release, or the
            // end of its wait for it, past which the coordinator no longer counts it):
            // a member whose last acknowledgement went to another proposal was counted
            // into two views at once (the merge race of seed 511, found by mutation
            // work, fixed by the promise).
            for m in view
                .members
                .iter()
                .filter(|m| m.name != view.id.coordinator)
            {
                let Some(&q) = self.index.get(&m.name) else {
                    continue;
                };
                if let Some((life, acked)) = self.last_ack.get(&q)
                    && *life == m.incarnation
                    && *acked > view.id
                    && acked.coordinator != view.id.coordinator
                {
                    let msg = format!(
                        "{} committed view {} counting {}, whose last acknowledgement was \
                         of proposal {acked}",
                        world.name(node),
                        view.id,
                        m.name
                    );
                    self.violate(msg);
                }
            }
        }
        if let Some(before) = self.ids.get(&view.id) {
            if *before != members {
                let msg = format!(
                    "view {} installed with two member lists: {before:?} and, at {}, {members:?}",
                    view.id,
                    world.name(node)
                );
                self.violate(msg);
            }
        } else {
            self.ids.insert(view.id.clone(), members);
        }
        // Agreement: a view is installed only once every member of it acknowledged it,
        // so every member still in the life the view names has seen it (a view with a
        // member that never agreed — committed one acknowledgement short, say — is
        // caught here, at its first install).
        for m in view.members.iter().filter(|m| m.name != world.name(node)) {
            let Some(&q) = self.index.get(&m.name) else {
                continue;
            };
            let Some(mq) = world.node(q).machine() else {
                continue;
            };
            if mq.me().incarnation == m.incarnation && *mq.highest_seen() < view.id {
                let msg = format!(
                    "{} installed view {} with {}, which never acknowledged it (it has seen \
                     no view above {})",
                    world.name(node),
                    view.id,
                    m.name,
                    mq.highest_seen()
                );
                self.violate(msg);
            }
        }
        let life = world.node(node).incarnation();
        if let Some((l, prev)) = &self.last[node]
            && *l == life
            && view.id <= *prev
        {
            let msg = format!(
                "{} installed view {} after {prev}: view ids must grow",
                world.name(node),
                view.id
            );
            self.violate(msg);
        }
        self.last[node] = Some((life, view.id.clone()));
    }

    fn check(&mut self, world: &World<Membership>, touched: Option<usize>) -> Result<(), String> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        // Crash times change only with a fault (no node touched) or a view installed:
        // other steps skip the scan, which is what keeps a thousand daemons affordable.
        if touched.is_some() && !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        let now = world.now();
        for (i, n) in world.nodes().iter().enumerate() {
            // Only a daemon that ran can crash (nodes not yet started count as crashed).
            if n.status() == Status::Crashed && !self.noted.contains(&i) && self.ran.contains(&i) {
                self.down_since.entry(i).or_insert(now);
            }
            if n.status() != Status::Crashed {
                self.ran.insert(i);
            }
        }
        let up = Self::running(world);
        let pending: Vec<(usize, Instant)> =
            self.down_since.iter().map(|(i, t)| (*i, *t)).collect();
        for (i, since) in pending {
            if world.node(i).status() != Status::Crashed {
                self.down_since.remove(&i);
                continue;
            }
            let name = world.name(i);
            let knows = |u: &usize| {
                world
                    .node(*u)
                    .machine()
                    .is_some_and(|m| !m.view().contains(name))
            };
            if !self.first_noted.contains(&i) && up.iter().any(knows) {
                self.first_noted.insert(i);
                self.detections.push(now.saturating_duration_since(since));
            }
            if up.iter().all(knows) {
                self.convergences.push(now.saturating_duration_since(since));
                self.down_since.remove(&i);
                self.noted.insert(i);
            }
        }
        Ok(())
    }

    fn predicate(&self, name: &str, world: &World<Membership>) -> bool {
        match name {
            "agreed" => self.agreed(world),
            "one-primary" => self.one_primary(world),
            "all-in" => self.all_in(world),
            _ => false,
        }
    }
}
