//! The heartbeat plug-in: builds [`Heartbeat`] machines, checks that no node reports a
//! peer up without a recent beat, and offers the `converged` predicate.
//!
//! The plug-in is generic over [`HeartbeatMachine`] so that a deliberately broken variant
//! (see [`crate::canary`]) can be run through the very same checks.

use core::marker::PhantomData;
use core::time::Duration;

use flotilla_core::heartbeat::{
    Heartbeat, HeartbeatCommand, HeartbeatConfig, HeartbeatConfigError, HeartbeatEvent, decode_beat,
};
use flotilla_core::sexpr::{Node, SexprError};
use flotilla_core::{Instant, Machine, NoEffect, PeerAddr, Rng};

use crate::protocol::{NodeSpec, Observation, ObservationOf, ParseCtx, Protocol};
use crate::world::World;

/// A machine the heartbeat plug-in can drive and judge.
pub trait HeartbeatMachine:
    Machine<
        Command = HeartbeatCommand,
        Event = HeartbeatEvent,
        Effect = NoEffect,
        EffectValue = NoEffect,
    > + Sized
{
    /// The protocol name scenarios use for this machine in `(:protocol NAME)`.
    const NAME: &'static str;

    /// Builds a machine, as [`Heartbeat::new`] does.
    fn create(
        config: HeartbeatConfig,
        now: Instant,
        rng: Rng,
    ) -> Result<Self, HeartbeatConfigError>;

    /// Whether the machine currently reports `peer` up.
    fn reports_up(&self, peer: PeerAddr) -> bool;
}

impl HeartbeatMachine for Heartbeat {
    const NAME: &'static str = "heartbeat";

    fn create(
        config: HeartbeatConfig,
        now: Instant,
        rng: Rng,
    ) -> Result<Self, HeartbeatConfigError> {
        Heartbeat::new(config, now, rng)
    }

    fn reports_up(&self, peer: PeerAddr) -> bool {
        self.is_up(peer)
    }
}

/// The newest beat a node accepted from one peer, and when (in the receiver's local time).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FreshBeat {
    /// The sender's incarnation.
    pub incarnation: u64,
    /// Its sequence number.
    pub seq: u64,
    /// Receiver's local time of delivery.
    pub at: Instant,
}

/// The heartbeat protocol as the simulator sees it.
#[derive(Debug)]
pub struct HeartbeatProtocol<M = Heartbeat> {
    interval: Duration,
    timeout: Duration,
    jitter: f64,
    /// `fresh[i][j]`: the newest beat node `i` accepted from node `j` in `i`'s current
    /// life, if any.
    fresh: Vec<Vec<Option<FreshBeat>>>,
    events: Vec<(Instant, usize, HeartbeatEvent)>,
    _machine: PhantomData<fn() -> M>,
}

// Derived Clone would demand `M: Clone`, which machines need not be.
impl<M> Clone for HeartbeatProtocol<M> {
    fn clone(&self) -> Self {
        HeartbeatProtocol {
            interval: self.interval,
            timeout: self.timeout,
            jitter: self.jitter,
            fresh: self.fresh.clone(),
            events: self.events.clone(),
            _machine: PhantomData,
        }
    }
}

impl<M: HeartbeatMachine> Default for HeartbeatProtocol<M> {
    /// The core's LAN defaults: 200 ms interval, 1 s timeout, 10 % jitter.
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(1), 0.1)
            .expect("the LAN defaults are valid")
    }
}

fn probe_addr() -> PeerAddr {
    PeerAddr::from(([127, 0, 0, 1], 1))
}

impl<M: HeartbeatMachine> HeartbeatProtocol<M> {
    /// A plug-in with these settings, validated as the machine would.
    pub fn new(
        interval: Duration,
        timeout: Duration,
        jitter: f64,
    ) -> Result<Self, HeartbeatConfigError> {
        let config = HeartbeatConfig {
            me: probe_addr(),
            peers: Vec::new(),
            interval,
            timeout,
            jitter,
        };
        M::create(config, Instant::ZERO, Rng::from_seed(0))?;
        Ok(HeartbeatProtocol {
            interval,
            timeout,
            jitter,
            fresh: Vec::new(),
            events: Vec::new(),
            _machine: PhantomData,
        })
    }

    /// The beat interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The timeout after which a silent peer is down.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Every event the machines emitted: (global time, node, event).
    pub fn events(&self) -> &[(Instant, usize, HeartbeatEvent)] {
        &self.events
    }

    /// The newest beat node `i` accepted from node `j` in `i`'s current life.
    pub fn fresh(&self, i: usize, j: usize) -> Option<FreshBeat> {
        self.fresh.get(i)?.get(j).copied().flatten()
    }

    /// Whether every live node's view of each peer matches the truth: the peer is up and
    /// not paused, and the link from the peer to the node passes.
    pub fn converged(&self, world: &World<M>) -> bool {
        world.nodes().iter().enumerate().all(|(i, node)| {
            let Some(m) = node.machine().filter(|_| node.is_live()) else {
                return true;
            };
            (0..world.len()).filter(|&j| j != i).all(|j| {
                let truth = world.node(j).is_live() && world.network().passes(j, i);
                m.reports_up(world.addrs()[j]) == truth
            })
        })
    }

    fn check_node(&self, world: &World<M>, i: usize) -> Result<(), String> {
        let node = world.node(i);
        let Some(m) = node.machine() else {
            return Ok(());
        };
        // Judged in node i's own clock, at the last time its timers ran: a peer may stay
        // up until the machine's expiry timer has had its chance, and skew cannot excuse
        // anything because both times are read from the same local clock.
        let timers_ran = node.last_timeout();
        for j in (0..world.len()).filter(|&j| j != i) {
            if !m.reports_up(world.addrs()[j]) {
                continue;
            }
            match self.fresh(i, j) {
                Some(b) if b.at + self.timeout > timers_ran => {}
                Some(b) => {
                    return Err(format!(
                        "up-needs-recent-beat: {} reports {} up, but its newest beat arrived \
                         at local {} and timers ran at local {} (timeout {:?})",
                        world.name(i),
                        world.name(j),
                        b.at,
                        timers_ran,
                        self.timeout
                    ));
                }
                None => {
                    return Err(format!(
                        "up-needs-recent-beat: {} reports {} up without ever receiving a beat \
                         from it",
                        world.name(i),
                        world.name(j)
                    ));
                }
            }
        }
        Ok(())
    }
}

fn setting<T>(
    form: &Node,
    name: &str,
    read: impl Fn(&Node) -> Result<T, SexprError>,
) -> Result<Option<T>, SexprError> {
    for f in form.args() {
        if f.head() == Some(name) {
            let [value] = f.args() else {
                return Err(SexprError::new(
                    f.pos,
                    format!("(:{name} ...) takes one value"),
                ));
            };
            return read(value).map(Some);
        }
    }
    Ok(None)
}

impl<M: HeartbeatMachine> Protocol for HeartbeatProtocol<M> {
    type Machine = M;

    fn name(&self) -> &'static str {
        M::NAME
    }

    /// `(:heartbeat (:interval D) (:timeout D) (:jitter F))`, each optional.
    fn configure(&mut self, form: &Node, _ctx: &ParseCtx) -> Result<bool, SexprError> {
        if form.head() != Some("heartbeat") {
            return Ok(false);
        }
        for f in form.args() {
            match f.head() {
                Some("interval" | "timeout" | "jitter") => {}
                _ => {
                    return Err(SexprError::new(
                        f.pos,
                        format!("unknown heartbeat setting {f} (use :interval, :timeout, :jitter)"),
                    ));
                }
            }
        }
        let interval = setting(form, "interval", Node::duration)?.unwrap_or(self.interval);
        let timeout = setting(form, "timeout", Node::duration)?.unwrap_or(self.timeout);
        let jitter = setting(form, "jitter", Node::number)?.unwrap_or(self.jitter);
        *self = Self::new(interval, timeout, jitter)
            .map_err(|e| SexprError::new(form.pos, e.to_string()))?;
        Ok(true)
    }

    /// `(:add-peer NODE PEER)` and `(:remove-peer NODE PEER)`.
    fn parse_action(
        &self,
        form: &Node,
        ctx: &ParseCtx,
    ) -> Result<Option<(usize, HeartbeatCommand)>, SexprError> {
        let make: fn(PeerAddr) -> HeartbeatCommand = match form.head() {
            Some("add-peer") => HeartbeatCommand::AddPeer,
            Some("remove-peer") => HeartbeatCommand::RemovePeer,
            _ => return Ok(None),
        };
        let [node, peer] = form.args() else {
            return Err(SexprError::new(
                form.pos,
                format!("{form} takes a node and a peer"),
            ));
        };
        let node = ctx.node(node)?;
        let peer = ctx.node(peer)?;
        Ok(Some((node, make(crate::world::node_addr(peer)))))
    }

    fn predicates(&self) -> &'static [&'static str] {
        &["converged"]
    }

    fn build(&mut self, node: &NodeSpec<'_>, rng: Rng, now: Instant) -> M {
        if self.fresh.len() < node.addrs.len() {
            self.fresh.resize(node.addrs.len(), Vec::new());
        }
        self.fresh[node.index] = vec![None; node.addrs.len()];
        let config = HeartbeatConfig {
            me: node.addr,
            peers: node.addrs.to_vec(),
            interval: self.interval,
            timeout: self.timeout,
            jitter: self.jitter,
        };
        M::create(config, now, rng).expect("settings were validated when configured")
    }

    fn observe(&mut self, world: &World<M>, obs: ObservationOf<'_, Self>) {
        match obs {
            Observation::Delivered {
                node,
                from,
                frame,
                accepted: true,
            } => {
                let Ok((incarnation, seq)) = decode_beat(frame) else {
                    return;
                };
                // The same freshness rule the protocol defines: a new incarnation, or a
                // higher sequence number within one.
                let slot = &mut self.fresh[node][from];
                if slot.is_none_or(|b| b.incarnation != incarnation || seq > b.seq) {
                    *slot = Some(FreshBeat {
                        incarnation,
                        seq,
                        at: world.node(node).last_local(),
                    });
                }
            }
            Observation::Command {
                node,
                command: HeartbeatCommand::AddPeer(p) | HeartbeatCommand::RemovePeer(p),
                accepted: true,
            } => {
                // Either way the machine starts from nothing for that peer.
                if let Some(j) = crate::world::node_index(*p, world.len()) {
                    self.fresh[node][j] = None;
                }
            }
            Observation::Event { node, event } => {
                self.events.push((world.now(), node, event.clone()));
            }
            _ => {}
        }
    }

    fn check(&mut self, world: &World<M>, touched: Option<usize>) -> Result<(), String> {
        match touched {
            Some(i) => self.check_node(world, i),
            None => (0..world.len()).try_for_each(|i| self.check_node(world, i)),
        }
    }

    fn predicate(&self, name: &str, world: &World<M>) -> bool {
        match name {
            "converged" => self.converged(world),
            _ => false,
        }
    }
}
