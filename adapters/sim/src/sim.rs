//! The simulator: one virtual clock, one totally ordered event queue, N nodes.
//!
//! Each step pops the earliest event, converts global time to the node's local time,
//! feeds the machine (`handle` or `handle_timeout`), drains its outputs (transmits go
//! through the network model and become future deliveries), re-arms its timer from
//! `poll_timeout`, then runs the checks. Nothing sleeps: time jumps to the next event.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use flotilla_core::rng::derive_seed;
use flotilla_core::wire::{Frame, Limits, decode_frame};
use flotilla_core::{ClientId, Input, Instant, Machine, Output, Rng, Transmit};

use crate::check::{Expectation, Outcome, Report, SimStats, Source, Verdict, Window};
use crate::clock::LocalClock;
use crate::network::{Delivery, LinkParams, Network, Verdict as NetVerdict};
use crate::protocol::{CommandOf, NodeSpec, Observation, Protocol};
use crate::trace::{Tag, Trace};
use crate::world::{
    ClientEnd, ClientRecord, NodeName, SimNode, Status, World, node_addr, node_index,
};

/// Label of the network's random stream.
pub const LABEL_NETWORK: u64 = 0x6E65_7477_6F72_6B00;
/// Label of the faults' random stream.
pub const LABEL_FAULTS: u64 = 0x6661_756C_7473_0000;
/// Base label of node streams; node `i` uses `LABEL_NODE + i`.
pub const LABEL_NODE: u64 = 0x6E6F_6465_0000_0000;

/// The seed of node `index`'s machine in its `incarnation`-th life. It depends on nothing
/// else, so adding nodes or faults does not change any other node's randomness.
pub fn machine_seed(master: u64, index: usize, incarnation: u64) -> u64 {
    derive_seed(derive_seed(master, LABEL_NODE + index as u64), incarnation)
}

/// Which node a fault applies to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This node (0-based index).
    Node(usize),
    /// A node drawn from the faults' random stream among those the fault applies to
    /// (up nodes for crash and pause, crashed for restart, paused for resume).
    Random,
}

/// A change to link parameters; `None` fields keep their value.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct LinkPatch {
    /// Minimum one-way delay.
    pub latency: Option<Duration>,
    /// Mean of the exponential tail.
    pub jitter: Option<Duration>,
    /// Loss probability.
    pub loss: Option<f64>,
    /// Duplication probability.
    pub duplicate: Option<f64>,
    /// Reordering probability.
    pub reorder: Option<f64>,
    /// Largest extra reordering delay.
    pub reorder_delay: Option<Duration>,
    /// Corruption probability.
    pub corrupt: Option<f64>,
}

impl LinkPatch {
    /// `base` with this patch applied.
    pub fn apply(&self, base: LinkParams) -> LinkParams {
        LinkParams {
            latency: self.latency.unwrap_or(base.latency),
            jitter: self.jitter.unwrap_or(base.jitter),
            loss: self.loss.unwrap_or(base.loss),
            duplicate: self.duplicate.unwrap_or(base.duplicate),
            reorder: self.reorder.unwrap_or(base.reorder),
            reorder_delay: self.reorder_delay.unwrap_or(base.reorder_delay),
            corrupt: self.corrupt.unwrap_or(base.corrupt),
        }
    }
}

/// Something scheduled to happen at a virtual time.
#[derive(Clone, Debug, PartialEq)]
pub enum Action<C> {
    /// Split the nodes into groups (unnamed nodes are each alone); only links within a
    /// group pass.
    Partition(Vec<Vec<usize>>),
    /// Remove the partition and every one-way block.
    Heal,
    /// Block the directed link `from -> to`.
    Block(usize, usize),
    /// Unblock the directed link `from -> to`.
    Unblock(usize, usize),
    /// Change the default link parameters.
    Network(LinkPatch),
    /// Change the parameters of the directed link `from -> to`.
    Link(usize, usize, LinkPatch),
    /// Drop the node's machine and state, its in-flight deliveries and client streams.
    Crash(Target),
    /// Start a fresh machine (next incarnation); an up or paused node is crashed first.
    Restart(Target),
    /// Stop processing the node's events; they are held until it resumes.
    Pause(Target),
    /// Process the held events, in order, and carry on.
    Resume(Target),
    /// Change a node's clock: `offset` is local − global in nanoseconds (`None` keeps the
    /// current one), `drift_ppm` the rate error (`None` keeps it).
    Skew {
        /// The node.
        node: usize,
        /// New offset, nanoseconds.
        offset: Option<i64>,
        /// New drift, parts per million.
        drift_ppm: Option<i64>,
    },
    /// Feed a command to a node's machine.
    Command(usize, C),
    /// Open a client stream on a node.
    ClientOpen(usize, ClientId),
    /// Send bytes on a client stream (opened on the given node).
    ClientSend(usize, ClientId, Bytes),
    /// Close a client stream from the client's side.
    ClientClose(usize, ClientId),
}

impl<C> Action<C> {
    /// The node whose machine this action feeds, if any: such actions wait while it is
    /// paused.
    fn input_node(&self) -> Option<usize> {
        match self {
            Action::Command(n, _)
            | Action::ClientOpen(n, _)
            | Action::ClientSend(n, _, _)
            | Action::ClientClose(n, _) => Some(*n),
            _ => None,
        }
    }
}

/// How a simulation is set up.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// The master seed.
    pub seed: u64,
    /// Virtual time at which the run ends.
    pub end: Instant,
    /// Default link parameters.
    pub network: LinkParams,
    /// Record a text trace.
    pub trace: bool,
    /// Frame decoding limits.
    pub limits: Limits,
    /// Where the scenario came from (for replay commands).
    pub source: Source,
    /// The scenario's name.
    pub name: String,
}

impl Default for SimConfig {
    /// Three nodes, seed 0, 30 s, a quiet LAN, no trace.
    fn default() -> Self {
        SimConfig {
            nodes: 3,
            seed: 0,
            end: Instant::from_secs(30),
            network: LinkParams::default(),
            trace: false,
            limits: Limits::default(),
            source: Source::Named("custom".to_string()),
            name: "custom".to_string(),
        }
    }
}

#[derive(Debug)]
enum Event {
    Start(usize),
    Deliver {
        to: usize,
        from: usize,
        incarnation: u64,
        bytes: Bytes,
    },
    Timer {
        node: usize,
        generation: u64,
    },
    Action(usize),
    ExpectOpen(usize),
    ExpectClose(usize),
    End,
}

struct ExpectState {
    exp: Expectation,
    active: bool,
    outcome: Outcome,
}

/// A deterministic simulation of `P`'s machines.
pub struct Sim<P: Protocol> {
    world: World<P::Machine>,
    protocol: P,
    queue: crate::queue::Queue<Event>,
    held: Vec<VecDeque<Event>>,
    actions: Vec<Action<CommandOf<P>>>,
    expects: Vec<ExpectState>,
    active_expects: usize,
    faults_rng: Rng,
    trace: Trace,
    stats: SimStats,
    config: SimConfig,
    finished: bool,
    timer_progress: Outcome,
    invariants: Outcome,
    next_client: u64,
    client_nodes: BTreeMap<ClientId, usize>,
}

impl<P: Protocol> Sim<P> {
    /// A world of `config.nodes` nodes running `protocol`'s machines. Nodes start at
    /// time 0, before anything scheduled for 0 s.
    pub fn new(protocol: P, config: SimConfig) -> Self {
        let addrs: Vec<_> = (0..config.nodes).map(node_addr).collect();
        let nodes = addrs
            .iter()
            .map(|&addr| SimNode {
                addr,
                machine: None,
                status: Status::Crashed,
                incarnation: 0,
                clock: LocalClock::default(),
                last_local: Instant::ZERO,
                last_timeout: Instant::ZERO,
                armed: None,
                timer_gen: 0,
            })
            .collect();
        let network = Network::new(
            config.network,
            Rng::from_seed(derive_seed(config.seed, LABEL_NETWORK)),
        );
        let mut queue = crate::queue::Queue::default();
        // Nodes start first, so that everything scheduled for 0 s sees them running.
        for i in 0..config.nodes {
            queue.push(Instant::ZERO, Event::Start(i));
        }
        queue.push(config.end, Event::End);
        Sim {
            world: World {
                nodes,
                addrs,
                network,
                clients: BTreeMap::new(),
                now: Instant::ZERO,
            },
            protocol,
            queue,
            held: (0..config.nodes).map(|_| VecDeque::new()).collect(),
            actions: Vec::new(),
            expects: Vec::new(),
            active_expects: 0,
            faults_rng: Rng::from_seed(derive_seed(config.seed, LABEL_FAULTS)),
            trace: Trace::new(config.trace),
            stats: SimStats::default(),
            config,
            finished: false,
            timer_progress: Outcome::Pending,
            invariants: Outcome::Pending,
            next_client: 1,
            client_nodes: BTreeMap::new(),
        }
    }

    /// Schedules `action` at `at`, after anything already scheduled for that instant.
    pub fn schedule(&mut self, at: Instant, action: Action<CommandOf<P>>) {
        if let Action::ClientOpen(node, c) = &action {
            self.client_nodes.insert(*c, *node);
            self.next_client = self.next_client.max(c.0 + 1);
        }
        self.actions.push(action);
        self.queue.push(at, Event::Action(self.actions.len() - 1));
    }

    /// Schedules opening a client stream on `node` at `at`; returns its id (unique in
    /// this run).
    pub fn open_client(&mut self, at: Instant, node: usize) -> ClientId {
        let c = ClientId(self.next_client);
        self.schedule(at, Action::ClientOpen(node, c));
        c
    }

    /// Schedules sending `data` on `client` at `at`.
    ///
    /// # Panics
    /// If `client` was not opened with [`Sim::open_client`] or a scheduled `ClientOpen`.
    pub fn send_client(&mut self, at: Instant, client: ClientId, data: impl Into<Bytes>) {
        let node = self.client_nodes[&client];
        self.schedule(at, Action::ClientSend(node, client, data.into()));
    }

    /// Schedules closing `client` at `at`.
    ///
    /// # Panics
    /// If `client` was never opened.
    pub fn close_client(&mut self, at: Instant, client: ClientId) {
        let node = self.client_nodes[&client];
        self.schedule(at, Action::ClientClose(node, client));
    }

    /// Adds a liveness expectation.
    pub fn expect(&mut self, exp: Expectation) {
        let k = self.expects.len();
        let (open, close) = match exp.window {
            Window::Within(a, b) => (a, Some(b)),
            Window::AlwaysFrom(a) => (a, None),
        };
        self.expects.push(ExpectState {
            exp,
            active: false,
            outcome: Outcome::Pending,
        });
        self.queue.push(open, Event::ExpectOpen(k));
        if let Some(close) = close {
            self.queue.push(close, Event::ExpectClose(k));
        }
    }

    /// The world (nodes, network, clients).
    pub fn world(&self) -> &World<P::Machine> {
        &self.world
    }

    /// Mutable access to the network, e.g. to change parameters between `run_until`
    /// calls in a test.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.world.network
    }

    /// The protocol plug-in with its records.
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// Node `i`'s machine, unless crashed.
    pub fn machine(&self, i: usize) -> Option<&P::Machine> {
        self.world.nodes[i].machine.as_ref()
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.world.now
    }

    /// The text trace so far (empty unless enabled).
    pub fn trace_text(&self) -> &str {
        self.trace.text()
    }

    /// The fingerprint of every event so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.fingerprint()
    }

    /// Counters so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// True once the end of the run was reached (or a timer-progress violation stopped it).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Runs to the end; returns the number of events processed by this call.
    pub fn run(&mut self) -> u64 {
        self.run_until(Instant::MAX)
    }

    /// Runs every event due at or before `until` (stopping early at the end of the run);
    /// returns the number of events processed.
    pub fn run_until(&mut self, until: Instant) -> u64 {
        let before = self.stats.events;
        while !self.finished {
            match self.queue.peek_time() {
                Some(t) if t <= until => {}
                _ => break,
            }
            let Some((t, ev)) = self.queue.pop() else {
                break;
            };
            self.world.now = t;
            self.step(ev);
        }
        if !self.finished && until != Instant::MAX && until > self.world.now {
            self.world.now = until;
        }
        self.stats.events - before
    }

    /// Runs to the end and reports every verdict.
    pub fn run_to_report(mut self) -> Report {
        self.run();
        self.report()
    }

    /// The verdicts so far; checks still open are decided as of now if the run ended.
    pub fn report(&self) -> Report {
        let end_outcome = |o: &Outcome| match o {
            Outcome::Pending if self.finished => Outcome::Pass(self.world.now),
            o => o.clone(),
        };
        let mut verdicts = vec![
            Verdict {
                check: "timer-progress".to_string(),
                outcome: end_outcome(&self.timer_progress),
            },
            Verdict {
                check: "invariants".to_string(),
                outcome: end_outcome(&self.invariants),
            },
        ];
        verdicts.extend(self.expects.iter().map(|e| Verdict {
            check: e.exp.to_string(),
            outcome: e.outcome.clone(),
        }));
        Report {
            scenario: self.config.name.clone(),
            seed: self.config.seed,
            replay: self.config.source.replay(self.config.seed),
            verdicts,
            trace_hash: self.trace.fingerprint(),
            end: self.world.now,
            stats: self.stats.clone(),
            net: self.world.network.stats().clone(),
        }
    }

    fn step(&mut self, ev: Event) {
        let now = self.world.now;
        let touched = match ev {
            Event::Start(i) => {
                self.stats.events += 1;
                self.trace.hash(now, i as u64, Tag::Start);
                if self.world.nodes[i].machine.is_none()
                    && self.world.nodes[i].status == Status::Crashed
                    && self.world.nodes[i].incarnation == 0
                {
                    self.boot(i);
                }
                Some(i)
            }
            Event::Deliver {
                to,
                from,
                incarnation,
                bytes,
            } => {
                self.stats.events += 1;
                let node = &self.world.nodes[to];
                if node.status == Status::Paused {
                    self.hold(
                        to,
                        Event::Deliver {
                            to,
                            from,
                            incarnation,
                            bytes,
                        },
                    );
                    return;
                }
                if node.machine.is_none() || node.incarnation != incarnation {
                    self.stats.dropped_crashed += 1;
                    self.trace.hash(now, to as u64, Tag::Dropped);
                    if self.trace.enabled() {
                        self.trace.line(
                            now,
                            format_args!(
                                "{} <- {} ({} B) dropped: receiver crashed",
                                NodeName(to),
                                NodeName(from),
                                bytes.len()
                            ),
                        );
                    }
                    return;
                }
                self.deliver(to, from, &bytes);
                Some(to)
            }
            Event::Timer { node, generation } => {
                if generation != self.world.nodes[node].timer_gen {
                    self.stats.stale_timers += 1;
                    return;
                }
                self.stats.events += 1;
                self.fire_timer(node);
                Some(node)
            }
            Event::Action(k) => {
                self.stats.events += 1;
                if let Some(n) = self.actions[k].input_node()
                    && self.world.nodes[n].status == Status::Paused
                {
                    self.hold(n, Event::Action(k));
                    return;
                }
                self.trace.hash(now, k as u64, Tag::Action);
                self.apply(k)
            }
            Event::ExpectOpen(k) => {
                if self.expects[k].outcome == Outcome::Pending {
                    self.expects[k].active = true;
                    self.active_expects += 1;
                }
                self.evaluate_expectations();
                return;
            }
            Event::ExpectClose(k) => {
                self.evaluate_expectations();
                let e = &mut self.expects[k];
                if e.outcome == Outcome::Pending {
                    e.outcome =
                        Outcome::Fail(now, format!("{} never held in the window", e.exp.predicate));
                    self.close_expectation(k);
                }
                return;
            }
            Event::End => {
                self.finish();
                return;
            }
        };
        self.after_step(touched);
    }

    fn after_step(&mut self, touched: Option<usize>) {
        if self.invariants == Outcome::Pending
            && let Err(why) = self.protocol.check(&self.world, touched)
        {
            self.invariants = Outcome::Fail(self.world.now, why);
            self.trace_check_failure();
        }
        if self.active_expects > 0 {
            self.evaluate_expectations();
        }
    }

    fn trace_check_failure(&mut self) {
        self.trace.hash(self.world.now, u64::MAX, Tag::Check);
        if self.trace.enabled()
            && let Outcome::Fail(_, why) = &self.invariants
        {
            let line = format!("-- invariant violated: {why}");
            self.trace.line(self.world.now, format_args!("{line}"));
        }
    }

    fn evaluate_expectations(&mut self) {
        let now = self.world.now;
        for k in 0..self.expects.len() {
            if !self.expects[k].active {
                continue;
            }
            let holds = self
                .protocol
                .predicate(&self.expects[k].exp.predicate, &self.world);
            let e = &mut self.expects[k];
            match e.exp.window {
                Window::Within(..) if holds => {
                    e.outcome = Outcome::Pass(now);
                    self.close_expectation(k);
                }
                Window::AlwaysFrom(_) if !holds => {
                    e.outcome = Outcome::Fail(now, format!("{} stopped holding", e.exp.predicate));
                    self.close_expectation(k);
                }
                _ => {}
            }
        }
    }

    fn close_expectation(&mut self, k: usize) {
        let e = &mut self.expects[k];
        if e.active {
            e.active = false;
            self.active_expects -= 1;
        }
        self.trace.hash(self.world.now, k as u64, Tag::Check);
        if self.trace.enabled() {
            let line = format!(
                "-- check {}",
                Verdict {
                    check: e.exp.to_string(),
                    outcome: e.outcome.clone()
                }
            );
            self.trace.line(self.world.now, format_args!("{line}"));
        }
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let now = self.world.now;
        for k in 0..self.expects.len() {
            if self.expects[k].outcome != Outcome::Pending {
                continue;
            }
            let holds = self
                .protocol
                .predicate(&self.expects[k].exp.predicate, &self.world);
            let e = &mut self.expects[k];
            e.outcome = match e.exp.window {
                Window::Within(..) if holds => Outcome::Pass(now),
                Window::Within(..) => Outcome::Fail(
                    now,
                    format!("{} never held before the run ended", e.exp.predicate),
                ),
                Window::AlwaysFrom(from) if e.active && holds => Outcome::Pass(from),
                Window::AlwaysFrom(_) if e.active => {
                    Outcome::Fail(now, format!("{} stopped holding", e.exp.predicate))
                }
                Window::AlwaysFrom(_) => {
                    Outcome::Fail(now, "the run ended before the window opened".to_string())
                }
            };
            self.close_expectation(k);
        }
        if self.trace.enabled() {
            self.trace.line(now, format_args!("-- end of run"));
        }
    }

    fn hold(&mut self, node: usize, ev: Event) {
        self.stats.held += 1;
        self.held[node].push_back(ev);
    }

    /// Local time for node `i` now, never behind what its machine already saw.
    fn advance_local(&mut self, i: usize) -> Instant {
        let n = &mut self.world.nodes[i];
        let local = n.clock.local(self.world.now).max(n.last_local);
        n.last_local = local;
        local
    }

    fn boot(&mut self, i: usize) {
        let now = self.world.now;
        let local = self.world.nodes[i].clock.local(now);
        let incarnation = self.world.nodes[i].incarnation;
        let rng = Rng::from_seed(machine_seed(self.config.seed, i, incarnation));
        let spec = NodeSpec {
            index: i,
            addr: self.world.addrs[i],
            addrs: &self.world.addrs,
            incarnation,
        };
        let machine = self.protocol.build(&spec, rng, local);
        let n = &mut self.world.nodes[i];
        n.machine = Some(machine);
        n.status = Status::Up;
        n.last_local = local;
        n.last_timeout = local;
        n.armed = None;
        n.timer_gen += 1;
        if self.trace.enabled() {
            self.trace.line(
                now,
                format_args!(
                    "{} start (incarnation {incarnation}, local {local})",
                    NodeName(i)
                ),
            );
        }
        self.drain(i);
        self.rearm(i);
    }

    fn deliver(&mut self, to: usize, from: usize, bytes: &Bytes) {
        let now = self.world.now;
        let frame = match decode_frame(bytes, &self.config.limits) {
            Ok(f) => f,
            Err(e) => {
                self.stats.decode_failures += 1;
                self.trace.hash(now, to as u64, Tag::DecodeFailed);
                self.trace.hasher().bytes(bytes);
                if self.trace.enabled() {
                    self.trace.line(
                        now,
                        format_args!(
                            "{} <- {} undecodable ({} B): {e}",
                            NodeName(to),
                            NodeName(from),
                            bytes.len()
                        ),
                    );
                }
                return;
            }
        };
        self.stats.delivered += 1;
        self.trace.hash(now, to as u64, Tag::Deliver);
        self.trace.hasher().word(from as u64);
        self.trace.hasher().bytes(bytes);
        let local = self.advance_local(to);
        let input = Input::Frame {
            from: self.world.addrs[from],
            frame: frame.clone(),
        };
        let Some(m) = self.world.nodes[to].machine.as_mut() else {
            return;
        };
        let result = m.handle(local, input);
        if self.trace.enabled() {
            let verdict = match &result {
                Ok(()) => String::new(),
                Err(e) => format!(" refused: {e}"),
            };
            self.trace.line(
                now,
                format_args!(
                    "{} <- {} frame {} ({} B){verdict}",
                    NodeName(to),
                    NodeName(from),
                    frame.kind,
                    bytes.len()
                ),
            );
        }
        if result.is_err() {
            self.stats.refused += 1;
            self.trace.hash(now, to as u64, Tag::Refused);
        }
        self.protocol.observe(
            &self.world,
            Observation::Delivered {
                node: to,
                from,
                frame: &frame,
                accepted: result.is_ok(),
            },
        );
        self.drain(to);
        self.rearm(to);
    }

    fn fire_timer(&mut self, i: usize) {
        let now = self.world.now;
        let local = self.advance_local(i);
        self.trace.hash(now, i as u64, Tag::Timer);
        let n = &mut self.world.nodes[i];
        n.armed = None;
        n.last_timeout = local;
        let Some(m) = n.machine.as_mut() else { return };
        m.handle_timeout(local);
        let next = m.poll_timeout();
        if self.trace.enabled() {
            self.trace
                .line(now, format_args!("{} timer (local {local})", NodeName(i)));
        }
        self.drain(i);
        if let Some(next) = next
            && next <= local
        {
            // A machine that keeps asking for "now" would spin any real driver; stop
            // here rather than loop, and say which node and when.
            self.timer_progress = Outcome::Fail(
                now,
                format!(
                    "{}: after handle_timeout({local}) poll_timeout() returned {next}, \
                     not later than now",
                    NodeName(i)
                ),
            );
            self.trace.hash(now, i as u64, Tag::Check);
            if self.trace.enabled() {
                self.trace.line(
                    now,
                    format_args!("-- timer-progress violated by {}", NodeName(i)),
                );
            }
            self.finish();
            return;
        }
        self.rearm(i);
    }

    /// Queues a timer event if the machine's deadline changed. The old event, if any,
    /// becomes stale through the generation number instead of being removed.
    fn rearm(&mut self, i: usize) {
        let now = self.world.now;
        let n = &mut self.world.nodes[i];
        let Some(m) = n.machine.as_ref() else { return };
        if n.status != Status::Up {
            return;
        }
        let deadline = m.poll_timeout();
        if deadline == n.armed {
            return;
        }
        n.armed = deadline;
        n.timer_gen += 1;
        if let Some(d) = deadline {
            let at = n.clock.global_at(d, now);
            if at != Instant::MAX {
                let generation = n.timer_gen;
                self.queue.push(
                    at,
                    Event::Timer {
                        node: i,
                        generation,
                    },
                );
            }
        }
    }

    fn drain(&mut self, i: usize) {
        let mut reactions = Vec::new();
        loop {
            let Some(out) = self.world.nodes[i]
                .machine
                .as_mut()
                .and_then(|m| m.poll_output())
            else {
                break;
            };
            match out {
                Output::Transmit(t) => self.transmit(i, t),
                Output::ToClient(c, data) => self.write_to_client(i, c, data),
                Output::CloseClient(c) => self.machine_closes_client(i, c),
                Output::Event(e) => {
                    let now = self.world.now;
                    self.trace.hash(now, i as u64, Tag::Event);
                    self.trace.hasher().debug(&e);
                    if self.trace.enabled() {
                        self.trace
                            .line(now, format_args!("{} event {e:?}", NodeName(i)));
                    }
                    self.protocol
                        .observe(&self.world, Observation::Event { node: i, event: &e });
                    if let Some(cmd) = self.protocol.react(i, &e) {
                        reactions.push(cmd);
                    }
                }
            }
        }
        // What the protocol's embedding program does at once in answer to an event (for
        // example, report that a write is stored), after the drain, as a real driver would.
        for cmd in reactions {
            if self.trace.enabled() {
                self.trace.line(
                    self.world.now,
                    format_args!("{} command {cmd:?}", NodeName(i)),
                );
            }
            self.trace.hasher().debug(&cmd);
            self.feed(i, Input::Command(cmd));
        }
    }

    fn transmit(&mut self, from: usize, t: Transmit) {
        let now = self.world.now;
        let Some(to) = node_index(t.to, self.world.nodes.len()) else {
            self.stats.unknown_destination += 1;
            self.trace.hash(now, from as u64, Tag::Dropped);
            if self.trace.enabled() {
                self.trace.line(
                    now,
                    format_args!(
                        "{} -> {} frame {} dropped: no such node",
                        NodeName(from),
                        t.to,
                        t.frame.kind
                    ),
                );
            }
            return;
        };
        let bytes = t.frame.to_bytes();
        self.trace.hash(now, from as u64, Tag::Send);
        self.trace.hasher().word(to as u64);
        self.trace.hasher().bytes(&bytes);
        let verdict = self.world.network.route(from, to);
        if self.trace.enabled() {
            self.trace_send(from, to, &t.frame, bytes.len(), &verdict);
        }
        if let NetVerdict::Deliver(a, b) = verdict {
            self.send_copy(from, to, &bytes, a);
            if let Some(b) = b {
                self.send_copy(from, to, &bytes, b);
            }
        }
    }

    fn trace_send(&mut self, from: usize, to: usize, frame: &Frame, len: usize, v: &NetVerdict) {
        let fate = match v {
            NetVerdict::Drop(why) => format!(" dropped: {why}"),
            NetVerdict::Deliver(a, b) => {
                let mut s = format!(" +{:?}", a.delay);
                if a.corrupt_at.is_some() {
                    s.push_str(" corrupted");
                }
                if let Some(b) = b {
                    s.push_str(&format!(", duplicate +{:?}", b.delay));
                    if b.corrupt_at.is_some() {
                        s.push_str(" corrupted");
                    }
                }
                s
            }
        };
        self.trace.line(
            self.world.now,
            format_args!(
                "{} -> {} frame {} ({len} B){fate}",
                NodeName(from),
                NodeName(to),
                frame.kind
            ),
        );
    }

    fn send_copy(&mut self, from: usize, to: usize, bytes: &Bytes, d: Delivery) {
        let bytes = match d.corrupt_at {
            Some(r) if !bytes.is_empty() => {
                let mut v = bytes.to_vec();
                let at = (r % v.len() as u64) as usize;
                // Never XOR with zero: the byte must actually change.
                v[at] ^= ((r >> 56) as u8).max(1);
                Bytes::from(v)
            }
            _ => bytes.clone(),
        };
        let incarnation = self.world.nodes[to].incarnation;
        self.queue.push(
            self.world.now + d.delay,
            Event::Deliver {
                to,
                from,
                incarnation,
                bytes,
            },
        );
    }

    fn write_to_client(&mut self, i: usize, c: ClientId, data: Bytes) {
        let now = self.world.now;
        self.trace.hash(now, i as u64, Tag::ToClient);
        self.trace.hasher().word(c.0);
        self.trace.hasher().bytes(&data);
        if self.trace.enabled() {
            self.trace.line(
                now,
                format_args!(
                    "{} -> {c} {:?}",
                    NodeName(i),
                    String::from_utf8_lossy(&data)
                ),
            );
        }
        match self.world.clients.get_mut(&c) {
            Some(r) if r.node == i && r.is_open() => r.received.push(data.clone()),
            _ => self.stats.client_dropped += 1,
        }
        self.protocol.observe(
            &self.world,
            Observation::ToClient {
                node: i,
                client: c,
                data: &data,
            },
        );
    }

    fn machine_closes_client(&mut self, i: usize, c: ClientId) {
        let now = self.world.now;
        self.trace.hash(now, i as u64, Tag::CloseClient);
        self.trace.hasher().word(c.0);
        if self.trace.enabled() {
            self.trace
                .line(now, format_args!("{} closes {c}", NodeName(i)));
        }
        match self.world.clients.get_mut(&c) {
            Some(r) if r.node == i && r.is_open() => r.ended = Some((now, ClientEnd::ByMachine)),
            _ => self.stats.client_dropped += 1,
        }
        self.protocol
            .observe(&self.world, Observation::CloseClient { node: i, client: c });
    }

    /// Feeds a client or command input to a live node's machine.
    fn feed(&mut self, i: usize, input: Input<CommandOf<P>>) -> bool {
        let local = self.advance_local(i);
        let Some(m) = self.world.nodes[i].machine.as_mut() else {
            return false;
        };
        let result = m.handle(local, input);
        if let Err(e) = &result {
            self.stats.refused += 1;
            self.trace.hash(self.world.now, i as u64, Tag::Refused);
            if self.trace.enabled() {
                self.trace.line(
                    self.world.now,
                    format_args!("{} refused input: {e}", NodeName(i)),
                );
            }
        }
        self.drain(i);
        self.rearm(i);
        result.is_ok()
    }

    fn pick(&mut self, target: Target, want: Status) -> Option<usize> {
        match target {
            Target::Node(i) => Some(i),
            Target::Random => {
                let candidates: Vec<usize> = (0..self.world.nodes.len())
                    .filter(|&i| self.world.nodes[i].status == want)
                    .collect();
                if candidates.is_empty() {
                    return None;
                }
                let k = self.faults_rng.below(candidates.len() as u64) as usize;
                Some(candidates[k])
            }
        }
    }

    fn fault_line(&mut self, args: core::fmt::Arguments<'_>) {
        self.trace.line(self.world.now, format_args!("-- {args}"));
    }

    /// Applies action `k`; returns the node it touched, or `None` if it may have changed
    /// anything.
    fn apply(&mut self, k: usize) -> Option<usize> {
        let now = self.world.now;
        let n = self.world.nodes.len();
        let action = self.actions[k].clone();
        match action {
            Action::Partition(groups) => {
                self.world.network.partition(n, &groups);
                if self.trace.enabled() {
                    let d = self.world.network.describe_partition();
                    self.fault_line(format_args!("partition {d}"));
                }
                None
            }
            Action::Heal => {
                self.world.network.heal();
                if self.trace.enabled() {
                    self.fault_line(format_args!("heal"));
                }
                None
            }
            Action::Block(a, b) | Action::Unblock(a, b) => {
                let block = matches!(self.actions[k], Action::Block(..));
                self.world.network.block(a, b, block);
                if self.trace.enabled() {
                    let verb = if block { "block" } else { "unblock" };
                    self.fault_line(format_args!("{verb} {} -> {}", NodeName(a), NodeName(b)));
                }
                None
            }
            Action::Network(patch) => {
                let p = patch.apply(*self.world.network.defaults());
                self.world.network.set_defaults(p);
                if self.trace.enabled() {
                    self.fault_line(format_args!("network {p:?}"));
                }
                None
            }
            Action::Link(a, b, patch) => {
                let p = patch.apply(*self.world.network.params(a, b));
                self.world.network.set_link(a, b, p);
                if self.trace.enabled() {
                    self.fault_line(format_args!(
                        "link {} -> {} {p:?}",
                        NodeName(a),
                        NodeName(b)
                    ));
                }
                None
            }
            Action::Crash(t) => {
                let i = self.pick(t, Status::Up)?;
                self.crash(i);
                None
            }
            Action::Restart(t) => {
                let i = self.pick(t, Status::Crashed)?;
                if self.world.nodes[i].machine.is_some() {
                    self.crash(i);
                }
                self.world.nodes[i].incarnation += 1;
                if self.trace.enabled() {
                    self.fault_line(format_args!("restart {}", NodeName(i)));
                }
                self.boot(i);
                None
            }
            Action::Pause(t) => {
                let i = self.pick(t, Status::Up)?;
                let node = &mut self.world.nodes[i];
                if node.status == Status::Up {
                    node.status = Status::Paused;
                    // Timers are re-armed from poll_timeout on resume.
                    node.timer_gen += 1;
                    node.armed = None;
                }
                if self.trace.enabled() {
                    self.fault_line(format_args!("pause {}", NodeName(i)));
                }
                None
            }
            Action::Resume(t) => {
                let i = self.pick(t, Status::Paused)?;
                if self.world.nodes[i].status != Status::Paused {
                    return None;
                }
                self.world.nodes[i].status = Status::Up;
                let held = core::mem::take(&mut self.held[i]);
                if self.trace.enabled() {
                    self.fault_line(format_args!(
                        "resume {} ({} held events)",
                        NodeName(i),
                        held.len()
                    ));
                }
                for ev in held {
                    self.queue.push(now, ev);
                }
                self.rearm(i);
                None
            }
            Action::Skew {
                node,
                offset,
                drift_ppm,
            } => {
                let clock = &mut self.world.nodes[node].clock;
                clock.set(now, offset, drift_ppm);
                let local = clock.local(now);
                let drift = clock.drift_ppm();
                // The queued timer was converted with the old model.
                self.world.nodes[node].armed = None;
                self.rearm(node);
                if self.trace.enabled() {
                    self.fault_line(format_args!(
                        "skew {} local {local} drift {drift} ppm",
                        NodeName(node)
                    ));
                }
                None
            }
            Action::Command(i, cmd) => {
                if self.world.nodes[i].machine.is_none() {
                    return Some(i);
                }
                if self.trace.enabled() {
                    self.trace
                        .line(now, format_args!("{} command {cmd:?}", NodeName(i)));
                }
                self.trace.hasher().debug(&cmd);
                let accepted = self.feed(i, Input::Command(cmd.clone()));
                self.protocol.observe(
                    &self.world,
                    Observation::Command {
                        node: i,
                        command: &cmd,
                        accepted,
                    },
                );
                Some(i)
            }
            Action::ClientOpen(i, c) => {
                let node = &self.world.nodes[i];
                let live = node.machine.is_some();
                self.world.clients.insert(
                    c,
                    ClientRecord {
                        node: i,
                        incarnation: node.incarnation,
                        received: Vec::new(),
                        ended: (!live).then_some((now, ClientEnd::Refused)),
                    },
                );
                if self.trace.enabled() {
                    let how = if live { "" } else { " refused: node is down" };
                    self.trace
                        .line(now, format_args!("{} accepts {c}{how}", NodeName(i)));
                }
                if live {
                    self.feed(i, Input::ClientOpened(c));
                }
                Some(i)
            }
            Action::ClientSend(i, c, data) => {
                self.trace.hasher().bytes(&data);
                let open = self
                    .world
                    .clients
                    .get(&c)
                    .is_some_and(ClientRecord::is_open);
                if self.trace.enabled() {
                    self.trace.line(
                        now,
                        format_args!(
                            "{} <- {c} {:?}{}",
                            NodeName(i),
                            String::from_utf8_lossy(&data),
                            if open { "" } else { " dropped: closed" }
                        ),
                    );
                }
                if open {
                    self.protocol.observe(
                        &self.world,
                        Observation::FromClient {
                            node: i,
                            client: c,
                            data: &data,
                        },
                    );
                    self.feed(i, Input::ClientData(c, data));
                } else {
                    self.stats.client_dropped += 1;
                }
                Some(i)
            }
            Action::ClientClose(i, c) => {
                let Some(r) = self.world.clients.get_mut(&c).filter(|r| r.is_open()) else {
                    self.stats.client_dropped += 1;
                    return Some(i);
                };
                r.ended = Some((now, ClientEnd::ByClient));
                if self.trace.enabled() {
                    self.trace
                        .line(now, format_args!("{} <- {c} closed", NodeName(i)));
                }
                self.feed(i, Input::ClientClosed(c));
                Some(i)
            }
        }
    }

    fn crash(&mut self, i: usize) {
        let now = self.world.now;
        let node = &mut self.world.nodes[i];
        if node.machine.is_none() {
            return;
        }
        node.machine = None;
        node.status = Status::Crashed;
        node.timer_gen += 1;
        node.armed = None;
        let dropped = self.held[i].len() as u64;
        self.held[i].clear();
        self.stats.dropped_crashed += dropped;
        for r in self.world.clients.values_mut() {
            if r.node == i && r.is_open() {
                r.ended = Some((now, ClientEnd::NodeCrashed));
            }
        }
        if self.trace.enabled() {
            self.fault_line(format_args!("crash {}", NodeName(i)));
        }
    }
}
