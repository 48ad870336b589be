//! The VIP agent of one node (SPEC.md §11.4): a client of the node's `groupd` that keeps
//! the replicated [`Table`], adds and removes its node's addresses through effects,
//! runs health checks and hooks, and takes the application's intents.
//!
//! The agent reaches its group through its embedding program: [`VipCommand::GroupView`]
//! and [`VipCommand::GroupMessage`] in, [`VipEvent::Send`] out (a line to send to the
//! group in agreed order). `flotilla vipd` does it over the group client; the simulator
//! wires it straight to the node's group daemon.

pub mod control;

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use thiserror::Error;

use super::config::{VipAddress, VipConfig};
use super::msg::{Facts, Place, VipMsg, VipMsgError};
use super::table::{Outcome, Table};
use crate::machine::ClientId;
use crate::machine::{
    EffectError, EffectId, Input, InputOf, Machine, Outbox, Output, OutputOf, Timers, debug_check,
};
use crate::time::{Clock, Instant};

/// The client name every agent uses on its `groupd`: a member `vipd@NODE` of the group
/// is NODE's agent.
pub const AGENT_CLIENT: &str = "vipd";

/// What the embedding program tells the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VipCommand {
    /// The group's members changed at `at` (the whole list, `(client, daemon)`).
    GroupView {
        /// The place of the change.
        at: Place,
        /// Every member.
        members: Vec<(String, String)>,
    },
    /// A message of the group, delivered at `at`.
    GroupMessage {
        /// Its place.
        at: Place,
        /// The sending client.
        client: String,
        /// Its daemon.
        daemon: String,
        /// The bytes.
        payload: Bytes,
    },
    /// The connection to `groupd` is gone: the agent holds nothing until it is back in
    /// the group.
    Detached,
    /// The application allows this node to hold VIPs, or not.
    SetEligible(bool),
    /// The application sets a VIP's preferred node (`None`: the file's again).
    Prefer {
        /// The VIP.
        vip: String,
        /// The node.
        node: Option<String>,
    },
    /// The application moves a VIP to a node now; [`VipEvent::MoveDone`] answers.
    /// Tokens with the top bit set are the control connections' ([`control::CONTROL_TOKEN`]).
    Move {
        /// The VIP.
        vip: String,
        /// The node.
        node: String,
        /// The caller's number for the request.
        token: u64,
    },
}

/// What the agent did to its node's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalChange {
    /// The addresses were added.
    Acquired,
    /// They were removed.
    Released,
    /// Adding them failed (they are removed again; the node may not take the VIP until
    /// the retry time passed).
    AddFailed,
    /// Removing them failed: the node is fenced (holds nothing new) until a retry works.
    RemoveFailed,
}

/// What the agent tells the embedding program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VipEvent {
    /// Join the agents' group as client [`AGENT_CLIENT`] (emitted once, at the first
    /// timeout: the embedding program joins, and joins again after it reconnects).
    Join {
        /// The group.
        group: String,
    },
    /// Send this line to the group, in agreed order.
    Send(String),
    /// A VIP's holder changed in the table.
    Holder {
        /// The VIP.
        vip: String,
        /// The new holder.
        holder: Option<String>,
        /// Where in the order.
        at: Place,
    },
    /// A move this node's application asked for is done, or cannot be.
    MoveDone {
        /// The caller's number.
        token: u64,
        /// The VIP.
        vip: String,
        /// The holder now, or why not.
        result: Result<String, String>,
    },
    /// This node's addresses changed.
    Local {
        /// The VIP.
        vip: String,
        /// What happened.
        change: LocalChange,
    },
    /// A member reads another configuration file: it holds nothing and does not vote.
    ConfigMismatch {
        /// The member.
        node: String,
    },
}

/// Something only the outside world can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VipEffect {
    /// Add the VIP's addresses to this node.
    Add {
        /// The VIP.
        vip: String,
        /// Its addresses.
        addresses: Vec<VipAddress>,
    },
    /// Remove them.
    Remove {
        /// The VIP.
        vip: String,
        /// Its addresses.
        addresses: Vec<VipAddress>,
    },
    /// Announce them (gratuitous ARP, unsolicited neighbour advertisements): `count`
    /// times, `interval` apart.
    Announce {
        /// The VIP.
        vip: String,
        /// Its addresses.
        addresses: Vec<VipAddress>,
        /// How many.
        count: u32,
        /// Between two.
        interval: Duration,
    },
    /// Run a health check (success: the command exited 0 in time).
    Check {
        /// Its name.
        name: String,
        /// The command.
        command: String,
    },
    /// Run the notify hook.
    Notify {
        /// The command.
        command: String,
        /// `acquire` or `release`.
        event: &'static str,
        /// The VIP.
        vip: String,
        /// The holder before (on acquire) or this node (on release).
        old: Option<String>,
        /// This node (on acquire) or the next holder if known (on release).
        new: Option<String>,
    },
}

/// Why the agent refused an input.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VipError {
    /// No such VIP in the configuration.
    #[error("no VIP {0} in the configuration")]
    UnknownVip(String),
    /// No such node in the configuration.
    #[error("no node {0} in the configuration (nodes: {1})")]
    UnknownNode(String, String),
    /// The agent is not in its group yet (or lost it).
    #[error("not in the group yet: the agent is not connected to its groupd or its join is not in")]
    NotInGroup,
    /// A group message that does not parse.
    #[error("bad message from {from}: {error}")]
    BadMessage {
        /// Its sender.
        from: String,
        /// Why.
        error: VipMsgError,
    },
    /// A move token with the control connections' bit set.
    #[error("move token {0:#x} has the top bit set, which control connections use")]
    ReservedToken(u64),
    /// This input is not for this machine (peer frames).
    #[error("the VIP agent takes no {0}")]
    Unsupported(&'static str),
}

/// What this node's addresses of one VIP are doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// Not here.
    Absent,
    /// Being added.
    Adding,
    /// Here.
    Held,
    /// Being removed.
    Removing,
    /// A remove failed; tried again after the retry time.
    RemoveFailed,
}

impl LocalChange {
    /// The word watchers see.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalChange::Acquired => "acquired",
            LocalChange::Released => "released",
            LocalChange::AddFailed => "add-failed",
            LocalChange::RemoveFailed => "remove-failed",
        }
    }
}

impl Local {
    /// The word status shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Local::Absent => "absent",
            Local::Adding => "adding",
            Local::Held => "held",
            Local::Removing => "removing",
            Local::RemoveFailed => "remove-failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Work {
    Add(usize),
    Remove(usize),
    Check(usize),
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Start,
    Check(usize),
    RetryRemove(usize),
    Unfail(usize),
    Refresh(usize),
}

#[derive(Clone, Debug, Default)]
struct CheckState {
    seen: bool,
    passing: bool,
    streak: u32,
    running: bool,
}

/// One row of [`VipStatus`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipRow {
    /// The VIP.
    pub name: String,
    /// Its addresses.
    pub addresses: Vec<String>,
    /// Its holder.
    pub holder: Option<String>,
    /// Whether the holder said it added the addresses.
    pub acquired: bool,
    /// Where the holder was granted it.
    pub since: Option<Place>,
    /// Nodes still removing it.
    pub releasing: Vec<String>,
    /// Its preferred node.
    pub prefer: Option<String>,
    /// This node's addresses of it.
    pub local: Local,
}

/// Everything `flotilla vip status` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipStatus {
    /// This node.
    pub node: String,
    /// The generation (the last change of the group).
    pub generation: Option<Place>,
    /// The agents in the group.
    pub members: Vec<String>,
    /// Whether this component holds VIPs.
    pub primary: bool,
    /// Whether every member's state is in.
    pub settled: bool,
    /// This node's facts.
    pub facts: Facts,
    /// Every VIP.
    pub vips: Vec<VipRow>,
}

/// The agent.
#[derive(Debug)]
pub struct VipAgent {
    node: String,
    table: Table,
    attached: bool,
    joined: bool,
    local: Vec<Local>,
    effects: BTreeMap<EffectId, Work>,
    next_effect: u64,
    eligible: bool,
    checks: Vec<CheckState>,
    remove_failed: BTreeSet<usize>,
    add_failed: BTreeSet<usize>,
    published: Option<Facts>,
    last_holder: Vec<Option<String>>,
    timers: Timers<Timer>,
    outbox: Outbox<VipEvent, VipEffect>,
    clock: Clock,
    clients: BTreeMap<ClientId, control::Control>,
    move_waiters: BTreeMap<u64, ClientId>,
    next_token: u64,
}

impl VipAgent {
    /// The agent of `node` (its daemon's name), starting at `now`. Health checks run at
    /// once; until its first success a check counts as failing.
    pub fn new(node: &str, cfg: VipConfig, now: Instant) -> Self {
        let n = cfg.vips.len();
        let mut a = VipAgent {
            node: node.to_string(),
            checks: vec![CheckState::default(); cfg.health.len()],
            table: Table::new(cfg),
            attached: false,
            joined: false,
            local: vec![Local::Absent; n],
            effects: BTreeMap::new(),
            next_effect: 0,
            eligible: true,
            remove_failed: BTreeSet::new(),
            add_failed: BTreeSet::new(),
            published: None,
            last_holder: vec![None; n],
            timers: Timers::default(),
            outbox: Outbox::default(),
            clock: Clock::default(),
            clients: BTreeMap::new(),
            move_waiters: BTreeMap::new(),
            next_token: 0,
        };
        a.clock.advance(now);
        // The join goes out from the first timeout, not from here: a driver (or a pair)
        // learns the time from its first input, and the join must carry it.
        a.timers.set(Timer::Start, now);
        for i in 0..a.checks.len() {
            a.timers.set(Timer::Check(i), now);
        }
        a
    }

    /// The replicated table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The canary (SPEC.md §11.5): grants a VIP moved away before the release is in.
    pub fn set_canary_acquire_early(&mut self, on: bool) {
        self.table.canary_acquire_early = on;
    }

    /// This node's addresses of VIP `i`.
    pub fn local(&self, i: usize) -> Local {
        self.local[i]
    }

    /// This node's facts as the others see them.
    pub fn facts(&self) -> Facts {
        Facts {
            eligible: self.eligible,
            healthy: self.checks.iter().all(|c| c.passing),
            fenced: !self.remove_failed.is_empty(),
            failed: self.add_failed.iter().map(|&i| i as u16).collect(),
        }
    }

    /// What `flotilla vip status` shows.
    pub fn status(&self) -> VipStatus {
        let cfg = self.table.config();
        VipStatus {
            node: self.node.clone(),
            generation: self.table.generation().cloned(),
            // Detached, the table's last members are history, not a view.
            members: match self.attached {
                true => self.table.members().iter().cloned().collect(),
                false => Vec::new(),
            },
            primary: self.joined && self.table.primary(),
            settled: self.joined && self.table.settled(),
            facts: self.facts(),
            vips: cfg
                .vips
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let e = &self.table.entries()[i];
                    VipRow {
                        name: v.name.clone(),
                        addresses: v.addresses.iter().map(|a| a.to_string()).collect(),
                        holder: e.holder.clone(),
                        acquired: e.acquired,
                        since: e.since.clone(),
                        releasing: e.releasing.iter().cloned().collect(),
                        prefer: self.table.preference(i).map(str::to_string),
                        local: self.local[i],
                    }
                })
                .collect(),
        }
    }

    fn effect(&mut self, work: Work, effect: VipEffect, timeout: Option<Duration>) {
        let id = EffectId(self.next_effect);
        self.next_effect += 1;
        self.effects.insert(id, work);
        self.outbox.effect(id, effect, timeout);
    }

    fn send(&mut self, msg: VipMsg) {
        self.outbox.event(VipEvent::Send(msg.encode()));
    }

    /// Whether this node should have VIP `i`'s addresses now.
    fn wants(&self, i: usize) -> bool {
        self.attached
            && self.joined
            && self.table.primary()
            && !self.add_failed.contains(&i)
            && self.table.entries()[i].holder.as_deref() == Some(self.node.as_str())
    }

    fn on_input(&mut self, now: Instant, input: InputOf<Self>) -> Result<(), VipError> {
        match input {
            Input::Command(c) => self.on_command(c)?,
            Input::EffectDone { id, outcome } => self.on_effect(now, id, outcome),
            Input::Frame { .. } => return Err(VipError::Unsupported("peer frames")),
            // Control connections (SPEC.md §11.7): the adapter gives the agent only its
            // local socket's listener, whose file permissions decide who may connect.
            Input::ClientOpened { client, .. } => self.control_open(client),
            Input::ClientData(client, data) => self.control_data(client, &data),
            Input::ClientClosed(client) => self.control_closed(client),
        }
        self.sync();
        Ok(())
    }

    fn vip_index(&self, vip: &str) -> Result<usize, VipError> {
        self.table
            .index(vip)
            .ok_or_else(|| VipError::UnknownVip(vip.to_string()))
    }

    fn known_node(&self, node: &str) -> Result<(), VipError> {
        let cfg = self.table.config();
        if cfg.nodes.iter().any(|n| n == node) {
            Ok(())
        } else {
            Err(VipError::UnknownNode(node.to_string(), cfg.nodes.join(" ")))
        }
    }

    fn on_command(&mut self, c: VipCommand) -> Result<(), VipError> {
        match c {
            VipCommand::GroupView { at, members } => {
                let nodes: BTreeSet<String> = members
                    .into_iter()
                    .filter(|(client, _)| client == AGENT_CLIENT)
                    .map(|(_, daemon)| daemon)
                    .collect();
                self.attached = true;
                self.joined = nodes.contains(&self.node);
                let outcomes = self.table.on_view(at.clone(), nodes);
                self.report(outcomes);
                self.published = None;
                if self.joined {
                    let facts = self.facts();
                    let holds = (0..self.local.len())
                        .filter(|&i| self.local[i] != Local::Absent)
                        .map(|i| i as u16)
                        .collect();
                    self.send(VipMsg::State {
                        generation: at,
                        digest: self.table.config().digest(),
                        facts: facts.clone(),
                        holds,
                        prefs: self.table.prefs().clone(),
                    });
                    self.published = Some(facts);
                }
            }
            VipCommand::GroupMessage {
                at,
                client,
                daemon,
                payload,
            } => {
                if client != AGENT_CLIENT {
                    return Ok(());
                }
                let msg = VipMsg::decode(&payload).map_err(|error| VipError::BadMessage {
                    from: format!("{client}@{daemon}"),
                    error,
                })?;
                let outcomes = self.table.on_msg(&at, &daemon, msg);
                self.report(outcomes);
            }
            VipCommand::Detached => {
                self.attached = false;
                self.joined = false;
                self.published = None;
            }
            VipCommand::SetEligible(on) => self.eligible = on,
            VipCommand::Prefer { vip, node } => {
                self.vip_index(&vip)?;
                if let Some(n) = &node {
                    self.known_node(n)?;
                }
                let generation = self.generation()?;
                self.send(VipMsg::Prefer {
                    generation,
                    vip,
                    node,
                });
            }
            VipCommand::Move { vip, node, token } => {
                if token & control::CONTROL_TOKEN != 0 {
                    return Err(VipError::ReservedToken(token));
                }
                self.vip_index(&vip)?;
                self.known_node(&node)?;
                let generation = self.generation()?;
                self.send(VipMsg::Move {
                    generation,
                    vip,
                    node,
                    token,
                });
            }
        }
        Ok(())
    }

    fn generation(&self) -> Result<Place, VipError> {
        match (self.joined, self.table.generation()) {
            (true, Some(g)) => Ok(g.clone()),
            _ => Err(VipError::NotInGroup),
        }
    }

    fn report(&mut self, outcomes: Vec<Outcome>) {
        for o in outcomes {
            match o {
                Outcome::Holder { vip, holder, at } => {
                    if let (Some(h), Ok(i)) = (&holder, self.vip_index(&vip)) {
                        self.last_holder[i] = Some(h.clone());
                    }
                    let e = VipEvent::Holder { vip, holder, at };
                    self.control_notice(&e);
                    self.outbox.event(e);
                }
                Outcome::Move {
                    by,
                    token,
                    vip,
                    result,
                } => {
                    if by == self.node && token & control::CONTROL_TOKEN != 0 {
                        self.control_move_done(token, &vip, &result);
                    } else if by == self.node {
                        self.outbox.event(VipEvent::MoveDone { token, vip, result });
                    }
                }
                Outcome::Mismatch { node } => self.outbox.event(VipEvent::ConfigMismatch { node }),
            }
        }
    }

    fn on_effect(&mut self, now: Instant, id: EffectId, outcome: Result<(), EffectError>) {
        let Some(work) = self.effects.remove(&id) else {
            return;
        };
        let retry = self.table.config().timing.retry;
        match work {
            Work::Add(i) => {
                debug_assert_eq!(self.local[i], Local::Adding);
                let vip = self.table.config().vips[i].name.clone();
                self.local[i] = Local::Held;
                match outcome {
                    Ok(()) if self.wants(i) => {
                        self.acquired(now, i);
                    }
                    Ok(()) => {}
                    Err(_) => {
                        // Whatever part was added goes again; the others may take it.
                        self.add_failed.insert(i);
                        self.timers.set(Timer::Unfail(i), now + retry);
                        self.event_local(i, LocalChange::AddFailed);
                        if let Ok(generation) = self.generation() {
                            self.send(VipMsg::AddFailed { generation, vip });
                        }
                    }
                }
            }
            Work::Remove(i) => {
                debug_assert_eq!(self.local[i], Local::Removing);
                let vip = self.table.config().vips[i].name.clone();
                match outcome {
                    Ok(()) => {
                        self.local[i] = Local::Absent;
                        self.remove_failed.remove(&i);
                        self.timers.cancel(&Timer::Refresh(i));
                        self.event_local(i, LocalChange::Released);
                        self.hook(
                            "release",
                            i,
                            Some(self.node.clone()),
                            self.table.entries()[i].holder.clone(),
                        );
                        if let Ok(generation) = self.generation() {
                            self.send(VipMsg::Released { generation, vip });
                        }
                    }
                    Err(_) => {
                        self.local[i] = Local::RemoveFailed;
                        self.remove_failed.insert(i);
                        self.timers.set(Timer::RetryRemove(i), now + retry);
                        self.event_local(i, LocalChange::RemoveFailed);
                        if let Ok(generation) = self.generation() {
                            self.send(VipMsg::RemoveFailed { generation, vip });
                        }
                    }
                }
            }
            Work::Check(c) => {
                let (rise, fall, interval) = {
                    let h = &self.table.config().health[c];
                    (h.rise, h.fall, h.interval)
                };
                let s = &mut self.checks[c];
                s.running = false;
                let ok = outcome.is_ok();
                if !s.seen {
                    // The first result decides at once.
                    s.seen = true;
                    s.passing = ok;
                    s.streak = 0;
                } else if ok == s.passing {
                    s.streak = 0;
                } else {
                    s.streak += 1;
                    if s.streak >= if ok { rise } else { fall } {
                        s.passing = ok;
                        s.streak = 0;
                    }
                }
                self.timers.set(Timer::Check(c), now + interval);
            }
            Work::Other => {}
        }
    }

    fn acquired(&mut self, now: Instant, i: usize) {
        let cfg = self.table.config();
        let spec = &cfg.vips[i];
        let (vip, addresses) = (spec.name.clone(), spec.addresses.clone());
        let announce = cfg.announce.clone();
        self.event_local(i, LocalChange::Acquired);
        if announce.count > 0 {
            self.effect(
                Work::Other,
                VipEffect::Announce {
                    vip: vip.clone(),
                    addresses,
                    count: announce.count,
                    interval: announce.interval,
                },
                None,
            );
        }
        if !announce.refresh.is_zero() {
            self.timers.set(Timer::Refresh(i), now + announce.refresh);
        }
        let old = self.last_holder[i].clone().filter(|h| *h != self.node);
        self.hook("acquire", i, old, Some(self.node.clone()));
        if let Ok(generation) = self.generation() {
            self.send(VipMsg::Acquired { generation, vip });
        }
    }

    fn hook(&mut self, event: &'static str, i: usize, old: Option<String>, new: Option<String>) {
        if let Some(command) = self.table.config().notify.clone() {
            let vip = self.table.config().vips[i].name.clone();
            self.effect(
                Work::Other,
                VipEffect::Notify {
                    command,
                    event,
                    vip,
                    old,
                    new,
                },
                None,
            );
        }
    }

    fn event_local(&mut self, i: usize, change: LocalChange) {
        let vip = self.table.config().vips[i].name.clone();
        let e = VipEvent::Local { vip, change };
        self.control_notice(&e);
        self.outbox.event(e);
    }

    /// Brings this node's addresses and facts in line with the table.
    fn sync(&mut self) {
        let timeout = Some(self.table.config().timing.change_timeout);
        for i in 0..self.local.len() {
            let want = self.wants(i);
            let spec = &self.table.config().vips[i];
            let (vip, addresses) = (spec.name.clone(), spec.addresses.clone());
            match self.local[i] {
                // New addresses only once the group settled (the table's holders are
                // decisions then, not memories).
                Local::Absent if want && self.table.settled() => {
                    self.local[i] = Local::Adding;
                    self.effect(Work::Add(i), VipEffect::Add { vip, addresses }, timeout);
                }
                Local::Held if !want => {
                    self.local[i] = Local::Removing;
                    self.timers.cancel(&Timer::Refresh(i));
                    self.effect(
                        Work::Remove(i),
                        VipEffect::Remove { vip, addresses },
                        timeout,
                    );
                }
                _ => {}
            }
        }
        if self.joined && self.published.is_some() {
            let facts = self.facts();
            if self.published.as_ref() != Some(&facts) {
                let generation = self.table.generation().expect("joined").clone();
                self.send(VipMsg::Facts {
                    generation,
                    facts: facts.clone(),
                });
                self.published = Some(facts);
            }
        }
    }

    fn on_timer(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::Start => {
                let group = self.table.config().group.clone();
                self.outbox.event(VipEvent::Join { group });
            }
            Timer::Check(c) => {
                let h = self.table.config().health[c].clone();
                self.checks[c].running = true;
                self.effect(
                    Work::Check(c),
                    VipEffect::Check {
                        name: h.name,
                        command: h.command,
                    },
                    Some(h.timeout),
                );
            }
            Timer::RetryRemove(i) => {
                if self.local[i] == Local::RemoveFailed {
                    let spec = &self.table.config().vips[i];
                    let (vip, addresses) = (spec.name.clone(), spec.addresses.clone());
                    self.local[i] = Local::Removing;
                    let timeout = Some(self.table.config().timing.change_timeout);
                    self.effect(
                        Work::Remove(i),
                        VipEffect::Remove { vip, addresses },
                        timeout,
                    );
                }
            }
            Timer::Unfail(i) => {
                self.add_failed.remove(&i);
            }
            Timer::Refresh(i) => {
                if self.local[i] == Local::Held {
                    let cfg = self.table.config();
                    let spec = &cfg.vips[i];
                    let (vip, addresses, every) = (
                        spec.name.clone(),
                        spec.addresses.clone(),
                        cfg.announce.refresh,
                    );
                    self.effect(
                        Work::Other,
                        VipEffect::Announce {
                            vip,
                            addresses,
                            count: 1,
                            interval: Duration::ZERO,
                        },
                        None,
                    );
                    self.timers.set(Timer::Refresh(i), now + every);
                }
            }
        }
    }

    /// Breaks the agent on purpose, for the test that shows its check fires.
    #[cfg(test)]
    pub(crate) fn corrupt(&mut self, how: u8) {
        match how {
            0 => self.local[0] = Local::Adding,
            1 => self.local[0] = Local::RemoveFailed,
            2 => {
                self.timers.cancel(&Timer::Check(0));
            }
            3 => {
                self.add_failed.insert(0);
            }
            4 => self.local[0] = Local::Held,
            5 => self.table.entries_mut()[0].acquired = true,
            _ => {
                self.control_open(ClientId(7));
                self.clients.get_mut(&ClientId(7)).expect("opened").waiting =
                    Some(control::CONTROL_TOKEN);
            }
        }
    }
}

impl crate::compose::Part for VipAgent {
    /// The agent has no frames of its own: it speaks through its group.
    fn owns_family(&self, _family: u8) -> bool {
        false
    }
}

impl Machine for VipAgent {
    type Command = VipCommand;
    type Event = VipEvent;
    type Error = VipError;
    type Effect = VipEffect;
    type EffectValue = ();

    fn handle(&mut self, now: Instant, input: InputOf<Self>) -> Result<(), VipError> {
        let now = self.clock.advance(now);
        let r = self.on_input(now, input);
        debug_check(self);
        r
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.advance(now);
        let mut fired = false;
        while let Some(t) = self.timers.pop_due(now) {
            self.on_timer(now, t);
            fired = true;
        }
        if fired {
            self.sync();
        }
        debug_assert!(self.poll_timeout().is_none_or(|t| t > now));
        debug_check(self);
    }

    fn poll_output(&mut self) -> Option<OutputOf<Self>> {
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.table.check()?;
        self.control_check()?;
        self.timers.check()?;
        let mut in_flight: BTreeMap<&Work, usize> = BTreeMap::new();
        for w in self.effects.values() {
            *in_flight.entry(w).or_default() += 1;
        }
        for (i, l) in self.local.iter().enumerate() {
            let name = &self.table.config().vips[i].name;
            let adds = in_flight.get(&Work::Add(i)).copied().unwrap_or(0);
            let removes = in_flight.get(&Work::Remove(i)).copied().unwrap_or(0);
            let (want_adds, want_removes) = match l {
                Local::Adding => (1, 0),
                Local::Removing => (0, 1),
                _ => (0, 0),
            };
            if (adds, removes) != (want_adds, want_removes) {
                return Err(format!(
                    "{name}: {} with {adds} adds and {removes} removes in flight",
                    l.as_str()
                ));
            }
            if (*l == Local::RemoveFailed) != self.timers.contains(&Timer::RetryRemove(i)) {
                return Err(format!(
                    "{name}: a failed remove without its retry, or a retry without one"
                ));
            }
            if (*l == Local::RemoveFailed) && !self.remove_failed.contains(&i) {
                return Err(format!(
                    "{name}: a failed remove that does not fence this node"
                ));
            }
            if *l == Local::Held && !self.wants(i) {
                return Err(format!(
                    "{name}: held here, but this node should not hold it"
                ));
            }
        }
        for &i in &self.add_failed {
            if !self.timers.contains(&Timer::Unfail(i)) {
                return Err("a failed add that is never retried".into());
            }
        }
        for (c, s) in self.checks.iter().enumerate() {
            let running = in_flight.get(&Work::Check(c)).copied().unwrap_or(0);
            if s.running != (running == 1) || running > 1 {
                return Err(format!(
                    "health check {c}: running {} with {running} in flight",
                    s.running
                ));
            }
            if s.running == self.timers.contains(&Timer::Check(c)) {
                return Err(format!(
                    "health check {c}: neither running nor due (or both)"
                ));
            }
        }
        Ok(())
    }
}

/// Drains an agent's outputs (tests and simple drivers).
pub fn drain(a: &mut VipAgent) -> Vec<Output<VipEvent, VipEffect>> {
    let mut v = Vec::new();
    while let Some(o) = a.poll_output() {
        v.push(o);
    }
    v
}
