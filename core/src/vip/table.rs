//! The VIP table every agent keeps alike: a replicated state machine over the agents'
//! group (SPEC.md §11.2). It changes only at places of the group's agreed order — a
//! membership change of the group, or a message — so agents that processed the same
//! places hold the same table.
//!
//! A membership change opens a *generation*: the table forgets what it knew of nodes and
//! waits (it *settles*) until every member's `state` is in the order, then rebuilds
//! holders from what each says it has. So components that merge, each with its own
//! history, agree again from the states alone.
//!
//! Release before acquire: a VIP gets a new holder only when nobody is releasing it,
//! and a node stops releasing only by saying `released` in the order (after its
//! addresses are gone) or by leaving the component.

use std::collections::{BTreeMap, BTreeSet};

use super::assign::{Inputs, assign};
use super::config::{PartitionMode, VipConfig};
use super::msg::{Facts, Place, Preference, VipMsg};

/// One VIP's entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Entry {
    /// The node allowed to have the VIP's addresses (it has them, or is adding them).
    pub holder: Option<String>,
    /// Nodes that must remove the addresses before anyone may take the VIP.
    pub releasing: BTreeSet<String>,
    /// Where the holder was granted the VIP.
    pub since: Option<Place>,
    /// The holder said it added the addresses.
    pub acquired: bool,
}

/// A move the application asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMove {
    /// Where the VIP goes.
    pub node: String,
    /// The node whose application asked.
    pub by: String,
    /// Its number for the request.
    pub token: u64,
}

impl PendingMove {
    /// The answer to its asker.
    fn answer(self, vip: String, result: Result<String, String>) -> Outcome {
        Outcome::Move {
            by: self.by,
            token: self.token,
            vip,
            result,
        }
    }
}

/// Something the table decided that someone outside it waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A move finished (`Ok`: the target added the addresses) or cannot happen.
    Move {
        /// The node whose application asked.
        by: String,
        /// Its number for the request.
        token: u64,
        /// The VIP.
        vip: String,
        /// The holder now, or why not.
        result: Result<String, String>,
    },
    /// A VIP's holder changed (for `watch`).
    Holder {
        /// The VIP.
        vip: String,
        /// The new holder.
        holder: Option<String>,
        /// Where.
        at: Place,
    },
    /// A member reads another configuration: it holds nothing and does not vote.
    Mismatch {
        /// The member.
        node: String,
    },
}

/// What the table knows of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NodeInfo {
    facts: Facts,
    same_config: bool,
}

/// The replicated table.
#[derive(Clone, Debug)]
pub struct Table {
    cfg: VipConfig,
    digest: u64,
    generation: Option<Place>,
    members: BTreeSet<String>,
    awaiting: BTreeSet<String>,
    claims: BTreeMap<String, Vec<u16>>,
    nodes: BTreeMap<String, NodeInfo>,
    entries: Vec<Entry>,
    prefs: BTreeMap<u16, Preference>,
    moves: BTreeMap<u16, PendingMove>,
    /// The canary (SPEC.md §11.5): a VIP moved away is granted to its next holder at
    /// once, before the old holder's release is in the order.
    pub canary_acquire_early: bool,
}

impl Table {
    /// An empty table: no generation yet.
    pub fn new(cfg: VipConfig) -> Self {
        let n = cfg.vips.len();
        Table {
            digest: cfg.digest(),
            cfg,
            generation: None,
            members: BTreeSet::new(),
            awaiting: BTreeSet::new(),
            claims: BTreeMap::new(),
            nodes: BTreeMap::new(),
            entries: vec![Entry::default(); n],
            prefs: BTreeMap::new(),
            moves: BTreeMap::new(),
            canary_acquire_early: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &VipConfig {
        &self.cfg
    }

    /// The current generation.
    pub fn generation(&self) -> Option<&Place> {
        self.generation.as_ref()
    }

    /// The members of the group (nodes).
    pub fn members(&self) -> &BTreeSet<String> {
        &self.members
    }

    /// Whether every member's state is in.
    pub fn settled(&self) -> bool {
        self.generation.is_some() && self.awaiting.is_empty()
    }

    /// Whether this component may hold VIPs: a strict majority of the voters (nodes
    /// and witness) reading this configuration are members, or the configuration says
    /// every component holds.
    pub fn primary(&self) -> bool {
        match self.cfg.partition {
            PartitionMode::All => true,
            PartitionMode::Primary => {
                // Members count from the start of a generation (so a holder keeps its
                // VIPs while the group settles); one known to read another file does
                // not.
                let voters: BTreeSet<&str> = self.cfg.voters().collect();
                let present = self
                    .members
                    .iter()
                    .filter(|m| {
                        voters.contains(m.as_str())
                            && self.nodes.get(*m).is_none_or(|i| i.same_config)
                    })
                    .count();
                present * 2 > voters.len()
            }
        }
    }

    /// The entries, by configuration index.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry of VIP `name`.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        let i = self.index(name)?;
        Some(&self.entries[i])
    }

    /// A member's facts, once its state is in.
    pub fn facts(&self, node: &str) -> Option<&Facts> {
        self.nodes.get(node).map(|i| &i.facts)
    }

    /// The effective preference of VIP `i`: the application's, else the file's.
    pub fn preference(&self, i: usize) -> Option<&str> {
        match self.prefs.get(&(i as u16)) {
            Some(p) => p.node.as_deref(),
            None => self.cfg.vips[i].prefer.as_deref(),
        }
    }

    /// The preferences the application set, for this node's state.
    pub fn prefs(&self) -> &BTreeMap<u16, Preference> {
        &self.prefs
    }

    /// The moves not finished.
    pub fn moves(&self) -> &BTreeMap<u16, PendingMove> {
        &self.moves
    }

    /// The configuration index of VIP `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.cfg.vips.iter().position(|v| v.name == name)
    }

    /// Answers the pending move of VIP `i` if it goes to `node`.
    fn answer_move_to(
        &mut self,
        i: usize,
        node: &str,
        result: Result<String, String>,
    ) -> Option<Outcome> {
        if self.moves.get(&(i as u16)).is_none_or(|m| m.node != node) {
            return None;
        }
        let m = self.moves.remove(&(i as u16))?;
        Some(m.answer(self.cfg.vips[i].name.clone(), result))
    }

    /// The group's membership changed at `at`: a new generation. `members` are the
    /// nodes with an agent in the group.
    pub fn on_view(&mut self, at: Place, members: BTreeSet<String>) -> Vec<Outcome> {
        let mut out = Vec::new();
        for (i, m) in std::mem::take(&mut self.moves) {
            let vip = self.cfg.vips[i as usize].name.clone();
            out.push(m.answer(vip, Err("interrupted: the group changed, try again".into())));
        }
        for (i, e) in self.entries.iter_mut().enumerate() {
            e.releasing.retain(|n| members.contains(n));
            if e.holder.as_ref().is_some_and(|h| !members.contains(h)) {
                e.holder = None;
                e.acquired = false;
                e.since = None;
                out.push(Outcome::Holder {
                    vip: self.cfg.vips[i].name.clone(),
                    holder: None,
                    at: at.clone(),
                });
            }
        }
        self.awaiting = members.clone();
        self.members = members;
        self.claims.clear();
        self.nodes.clear();
        self.generation = Some(at);
        out
    }

    /// A message of the group, from `sender`'s agent, at `at`. Messages of another
    /// generation, from a node that is not a member, or from one whose state is not in
    /// yet are ignored (everyone ignores them alike).
    pub fn on_msg(&mut self, at: &Place, sender: &str, msg: VipMsg) -> Vec<Outcome> {
        let mut out = Vec::new();
        if self.generation.as_ref() != Some(msg.generation()) || !self.members.contains(sender) {
            return out;
        }
        if let VipMsg::State {
            digest,
            facts,
            holds,
            prefs,
            ..
        } = msg
        {
            if !self.awaiting.remove(sender) {
                return out;
            }
            let same_config = digest == self.digest;
            if !same_config {
                out.push(Outcome::Mismatch {
                    node: sender.to_string(),
                });
            }
            let n = self.entries.len() as u16;
            for (i, p) in prefs {
                if i < n && self.prefs.get(&i).is_none_or(|mine| mine.at < p.at) {
                    self.prefs.insert(i, p);
                }
            }
            self.nodes
                .insert(sender.to_string(), NodeInfo { facts, same_config });
            self.claims.insert(
                sender.to_string(),
                holds.into_iter().filter(|&i| i < n).collect(),
            );
            if self.awaiting.is_empty() {
                self.settle(at, &mut out);
            }
            return out;
        }
        if !self.nodes.contains_key(sender) {
            return out;
        }
        match msg {
            VipMsg::State { .. } => unreachable!("handled above"),
            VipMsg::Facts { facts, .. } => {
                self.nodes.get_mut(sender).expect("checked").facts = facts;
            }
            VipMsg::Released { vip, .. } => {
                if let Some(i) = self.index(&vip) {
                    self.entries[i].releasing.remove(sender);
                    // Before the group settles, the claim its state made goes too.
                    if let Some(c) = self.claims.get_mut(sender) {
                        c.retain(|&x| x as usize != i);
                    }
                }
            }
            VipMsg::Acquired { vip, .. } => {
                if let Some(i) = self.index(&vip)
                    && self.entries[i].holder.as_deref() == Some(sender)
                {
                    self.entries[i].acquired = true;
                    out.extend(self.answer_move_to(i, sender, Ok(sender.to_string())));
                }
            }
            VipMsg::AddFailed { vip, .. } => {
                if let Some(i) = self.index(&vip) {
                    let info = self.nodes.get_mut(sender).expect("checked");
                    if !info.facts.failed.contains(&(i as u16)) {
                        info.facts.failed.push(i as u16);
                        info.facts.failed.sort_unstable();
                    }
                    let why = format!("{sender} could not add the addresses");
                    out.extend(self.answer_move_to(i, sender, Err(why)));
                }
            }
            VipMsg::RemoveFailed { vip, .. } => {
                if self.index(&vip).is_some() {
                    self.nodes.get_mut(sender).expect("checked").facts.fenced = true;
                }
            }
            VipMsg::Prefer { vip, node, .. } => {
                if let Some(i) = self.index(&vip) {
                    self.prefs.insert(
                        i as u16,
                        Preference {
                            node,
                            at: at.clone(),
                        },
                    );
                }
            }
            VipMsg::Move {
                vip, node, token, ..
            } => {
                let asked = PendingMove {
                    node: node.clone(),
                    by: sender.to_string(),
                    token,
                };
                let refuse = |why: String| asked.clone().answer(vip.clone(), Err(why));
                let Some(i) = self.index(&vip) else {
                    out.push(refuse(format!("no VIP {vip}")));
                    return out;
                };
                if !self.awaiting.is_empty() {
                    out.push(refuse("the group is changing, try again".into()));
                    return out;
                }
                if let Some(why) = self.why_not(i, &node) {
                    out.push(refuse(why));
                    return out;
                }
                if self.entries[i].holder.as_deref() == Some(&node) && self.entries[i].acquired {
                    out.push(asked.answer(vip, Ok(node)));
                    return out;
                }
                if let Some(old) = self.moves.insert(i as u16, asked) {
                    out.push(
                        old.answer(vip.clone(), Err(format!("superseded by a move to {node}"))),
                    );
                }
                if !self.cfg.sticky {
                    // Without stickiness the VIP would go straight back to its
                    // preferred node: the move makes the target its preference.
                    self.prefs.insert(
                        i as u16,
                        Preference {
                            node: Some(node),
                            at: at.clone(),
                        },
                    );
                }
            }
        }
        if self.settled() {
            self.decide(at, &mut out);
        }
        out
    }

    /// Why `node` may not hold VIP `i` now, if it may not.
    pub fn why_not(&self, i: usize, node: &str) -> Option<String> {
        let spec = &self.cfg.vips[i];
        if !self.cfg.may_hold(spec, node) {
            return Some(format!("{node} may not hold {} (configuration)", spec.name));
        }
        if !self.primary() {
            return Some("this component is not primary: it holds no VIP".into());
        }
        let Some(info) = self.nodes.get(node) else {
            return Some(format!("{node} is not in the group"));
        };
        if !info.same_config {
            return Some(format!("{node} reads another configuration"));
        }
        let f = &info.facts;
        if !f.eligible {
            return Some(format!("{node} is not eligible (eligible off)"));
        }
        if !f.healthy {
            return Some(format!("{node} fails a health check"));
        }
        if f.fenced {
            return Some(format!("{node} could not remove an address (fenced)"));
        }
        if f.failed.contains(&(i as u16)) {
            return Some(format!("{node} could not add {}", spec.name));
        }
        None
    }

    /// Every state is in: holders are rebuilt from what each member says it has.
    fn settle(&mut self, at: &Place, out: &mut Vec<Outcome>) {
        for (i, e) in self.entries.iter_mut().enumerate() {
            let claimers: BTreeSet<&String> = self
                .claims
                .iter()
                .filter(|(_, h)| h.contains(&(i as u16)))
                .map(|(n, _)| n)
                .collect();
            // The claimer to keep: the VIP's preferred node if it claims, else the least
            // name. The others release.
            let pref = match self.prefs.get(&(i as u16)) {
                Some(p) => p.node.as_deref(),
                None => self.cfg.vips[i].prefer.as_deref(),
            };
            let keep = claimers
                .iter()
                .find(|c| Some(c.as_str()) == pref)
                .or(claimers.first())
                .map(|c| (*c).clone());
            let before = e.holder.clone();
            e.releasing = claimers
                .iter()
                .filter(|c| Some(**c) != keep.as_ref())
                .map(|c| (*c).clone())
                .collect();
            // Only what the states say counts (members that merged remember different
            // pasts): a holder's time runs from the settling.
            e.since = keep.as_ref().map(|_| at.clone());
            e.acquired = keep.is_some();
            e.holder = keep;
            if e.holder != before {
                out.push(Outcome::Holder {
                    vip: self.cfg.vips[i].name.clone(),
                    holder: e.holder.clone(),
                    at: at.clone(),
                });
            }
        }
        self.claims.clear();
        self.decide(at, out);
    }

    /// Applies the assignment: holders that should not hold release, and VIPs nobody
    /// releases go to their new holder.
    fn decide(&mut self, at: &Place, out: &mut Vec<Outcome>) {
        let primary = self.primary();
        let eligible: BTreeSet<String> = self
            .nodes
            .iter()
            .filter(|(n, i)| {
                i.same_config
                    && i.facts.eligible
                    && i.facts.healthy
                    && !i.facts.fenced
                    && self.cfg.nodes.contains(n)
            })
            .map(|(n, _)| n.clone())
            .collect();
        let failed: BTreeMap<String, BTreeSet<u16>> = self
            .nodes
            .iter()
            .map(|(n, i)| (n.clone(), i.facts.failed.iter().copied().collect()))
            .collect();
        // Moves that can no longer happen are answered now.
        let mut dead = Vec::new();
        for (&i, m) in &self.moves {
            if let Some(why) = self.why_not(i as usize, &m.node) {
                dead.push((i, why));
            }
        }
        for (i, why) in dead {
            let m = self.moves.remove(&i).expect("listed");
            out.push(m.answer(self.cfg.vips[i as usize].name.clone(), Err(why)));
        }
        let n = self.entries.len();
        let current: Vec<Option<String>> = self.entries.iter().map(|e| e.holder.clone()).collect();
        let prefer: Vec<Option<String>> = (0..n)
            .map(|i| self.preference(i).map(str::to_string))
            .collect();
        let forced: Vec<Option<String>> = (0..n)
            .map(|i| self.moves.get(&(i as u16)).map(|m| m.node.clone()))
            .collect();
        let target = assign(&Inputs {
            cfg: &self.cfg,
            primary,
            eligible: &eligible,
            failed: &failed,
            current: &current,
            prefer: &prefer,
            forced: &forced,
        });
        for (i, want) in target.into_iter().enumerate() {
            let e = &mut self.entries[i];
            let before = e.holder.clone();
            if e.holder.is_some() && e.holder != want {
                let old = e.holder.take().expect("checked");
                e.releasing.insert(old);
                e.acquired = false;
                e.since = None;
            }
            let free = e.releasing.is_empty() || self.canary_acquire_early;
            if e.holder.is_none()
                && free
                && let Some(w) = want
            {
                e.releasing.remove(&w);
                e.holder = Some(w);
                e.since = Some(at.clone());
                e.acquired = false;
            }
            if e.holder != before {
                out.push(Outcome::Holder {
                    vip: self.cfg.vips[i].name.clone(),
                    holder: e.holder.clone(),
                    at: at.clone(),
                });
            }
        }
    }

    /// The table's own consistency (SPEC.md §11.5).
    pub fn check(&self) -> Result<(), String> {
        if self.entries.len() != self.cfg.vips.len() {
            return Err("an entry per VIP".into());
        }
        if !self.awaiting.is_subset(&self.members) {
            return Err("a state is awaited from a node that is not a member".into());
        }
        let known: BTreeSet<&String> = self.nodes.keys().collect();
        let answered: BTreeSet<&String> = self.members.difference(&self.awaiting).collect();
        if known != answered {
            return Err("the nodes known are not the members whose state is in".into());
        }
        if self.generation.is_none() && !self.members.is_empty() {
            return Err("members without a generation".into());
        }
        let primary = self.primary();
        for (i, e) in self.entries.iter().enumerate() {
            let name = &self.cfg.vips[i].name;
            if let Some(h) = &e.holder {
                if e.releasing.contains(h) {
                    return Err(format!("{name}: its holder {h} is also releasing it"));
                }
                if !self.members.contains(h) {
                    return Err(format!("{name}: its holder {h} is not a member"));
                }
                if e.since.is_none() {
                    return Err(format!(
                        "{name}: a holder without the place it was granted at"
                    ));
                }
                if self.settled() {
                    if !primary {
                        return Err(format!(
                            "{name}: held by {h} in a component that is not primary"
                        ));
                    }
                    if let Some(why) = self.why_not(i, h) {
                        return Err(format!("{name}: held by {h}, who may not: {why}"));
                    }
                }
            } else if e.acquired {
                return Err(format!("{name}: acquired without a holder"));
            }
            if !e.releasing.is_subset(&self.members) {
                return Err(format!("{name}: released by a node that is not a member"));
            }
        }
        for (&i, m) in &self.moves {
            if i as usize >= self.entries.len() {
                return Err("a move of an unknown VIP".into());
            }
            if !self.settled() {
                return Err("a move pending while the group settles".into());
            }
            if !self.members.contains(&m.node) {
                return Err(format!("a move to {}, not a member", m.node));
            }
        }
        Ok(())
    }

    /// For tests that show the check fires: breaks the table on purpose.
    #[cfg(test)]
    pub(crate) fn entries_mut(&mut self) -> &mut Vec<Entry> {
        &mut self.entries
    }

    /// For tests that show the check fires.
    #[cfg(test)]
    pub(crate) fn awaiting_mut(&mut self) -> &mut BTreeSet<String> {
        &mut self.awaiting
    }
}
