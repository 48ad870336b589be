//! The simulator: one virtual clock, one totally ordered event queue, N nodes.
//!
//! Each step pops the earliest event, converts global time to the node's local time,
//! feeds the machine (`handle` or `handle_timeout`), drains its outputs (transmits go
//! through the network model and become future deliveries; effects go through the
//! effect model and become future outcomes), re-arms its timer from `poll_timeout`, then
//! runs the checks: the machine's own `check_invariants` and the protocol's. Nothing
//! sleeps: time jumps to the next event.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use flotilla_core::rng::derive_seed;
use flotilla_core::turns::Source as InputSource;
use flotilla_core::wire::{Frame, Limits, decode_frame};
use flotilla_core::{
    ClientId, ClientOrigin, EffectError, EffectId, EffectRequest, Input, Instant, Lane, ListenerId,
    Machine, Output, Rng, Transmit,
};

use crate::check::{Expectation, Outcome, Report, SimStats, Source, Verdict, Window};
use crate::clock::LocalClock;
use crate::cpu::{CpuParams, NodeCpu};
use crate::effects::{EffectParams, EffectPatch, Fate};
use crate::network::{Delivery, LinkParams, Network, Verdict as NetVerdict};
use crate::protocol::{CommandOf, EffectOf, NodeSpec, Observation, Protocol};
use crate::stream::{StreamKey, StreamParams, StreamVerdict, Streams};
use crate::timeline::{MarkKind, SpanKind, Timeline};
use crate::trace::{Tag, Trace};
use crate::world::{
    ClientEnd, ClientRecord, NodeName, SimNode, Status, World, node_addr_port, node_index,
};

/// Label of the network's random stream.
pub const LABEL_NETWORK: u64 = 0x6E65_7477_6F72_6B00;
/// Label of the faults' random stream.
pub const LABEL_FAULTS: u64 = 0x6661_756C_7473_0000;
/// Base label of node streams; node `i` uses `LABEL_NODE + i`.
pub const LABEL_NODE: u64 = 0x6E6F_6465_0000_0000;
/// Label of the effects' random stream.
pub const LABEL_EFFECTS: u64 = 0x6566_6665_6374_7300;
/// Label of the stream link model's random stream (its own, so datagram runs keep theirs).
pub const LABEL_STREAMS: u64 = 0x7374_7265_616D_7300;

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
    /// Probability a good link turns bad (bursty loss).
    pub burst_enter: Option<f64>,
    /// Probability a bad link turns good.
    pub burst_exit: Option<f64>,
    /// Loss probability while bad.
    pub burst_loss: Option<f64>,
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
            burst_enter: self.burst_enter.unwrap_or(base.burst_enter),
            burst_exit: self.burst_exit.unwrap_or(base.burst_exit),
            burst_loss: self.burst_loss.unwrap_or(base.burst_loss),
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
    /// Change how effects behave from now on.
    Effects(EffectPatch),
    /// Feed a command to a node's machine.
    Command(usize, C),
    /// Open a client stream on a node's listener.
    ClientOpen(usize, ClientId, ListenerId),
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
            | Action::ClientOpen(n, _, _)
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
    /// Their names; empty for the defaults `n1`, `n2`…
    pub names: Vec<String>,
    /// The master seed.
    pub seed: u64,
    /// Virtual time at which the run ends.
    pub end: Instant,
    /// Default link parameters.
    pub network: LinkParams,
    /// How effects behave.
    pub effects: EffectParams,
    /// Record a text trace.
    pub trace: bool,
    /// Record a timeline for drawing.
    pub timeline: bool,
    /// Frame decoding limits.
    pub limits: Limits,
    /// Where the scenario came from (for replay commands).
    pub source: Source,
    /// The scenario's name.
    pub name: String,
    /// Links as TCP streams (SPEC.md §6.3) instead of datagrams, when set.
    pub stream: Option<StreamParams>,
    /// What each input costs its node, when set; otherwise inputs take no time.
    pub cpu: Option<CpuParams>,
}

impl Default for SimConfig {
    /// Three nodes, seed 0, 30 s, a quiet LAN, no trace.
    fn default() -> Self {
        SimConfig {
            nodes: 3,
            names: Vec::new(),
            seed: 0,
            end: Instant::from_secs(30),
            network: LinkParams::default(),
            effects: EffectParams::default(),
            trace: false,
            timeline: false,
            limits: Limits::default(),
            source: Source::Named("custom".to_string()),
            name: "custom".to_string(),
            stream: None,
            cpu: None,
        }
    }
}

#[derive(Debug)]
enum Event {
    Start(usize),
    Deliver {
        to: usize,
        from: usize,
        lane: Lane,
        incarnation: u64,
        bytes: Bytes,
        /// The frame's place in the timeline, if one is recorded.
        drawn: Option<usize>,
    },
    /// An effect finishes (key into the pending effects).
    Effect(u64),
    Timer {
        node: usize,
        generation: u64,
    },
    Action(usize),
    /// A busy node is free again: it takes its next waiting input.
    Wake(usize),
    ExpectOpen(usize),
    ExpectClose(usize),
    End,
}

/// An effect on its way to its outcome.
struct PendingEffect<F> {
    node: usize,
    incarnation: u64,
    id: EffectId,
    effect: F,
    fate: Fate,
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
    timeline: Option<Timeline>,
    stats: SimStats,
    config: SimConfig,
    effect_params: EffectParams,
    effects_rng: Rng,
    effects: BTreeMap<u64, PendingEffect<EffectOf<P>>>,
    next_effect: u64,
    finished: bool,
    timer_progress: Outcome,
    invariants: Outcome,
    next_client: u64,
    client_nodes: BTreeMap<ClientId, usize>,
    swarm: Option<String>,
    /// The stream link model and its random stream, when links are streams.
    streams: Option<(Streams, Rng)>,
    /// Frames waiting on a cut stream: bytes, receiver's incarnation, timeline place.
    stalled: BTreeMap<StreamKey, VecDeque<(Bytes, u64, Option<usize>)>>,
    /// Each node's loop, when inputs cost time.
    cpu: Vec<NodeCpu<Event>>,
    /// Outputs drained since the current input began (its cost depends on them).
    outputs: u64,
}

impl<P: Protocol> Sim<P> {
    /// A world of `config.nodes` nodes running `protocol`'s machines. Nodes start at
    /// time 0, before anything scheduled for 0 s.
    pub fn new(protocol: P, config: SimConfig) -> Self {
        let addrs: Vec<_> = (0..config.nodes)
            .map(|i| node_addr_port(i, protocol.port(i)))
            .collect();
        let names: Vec<String> = (0..config.nodes)
            .map(|i| {
                config
                    .names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| NodeName(i).to_string())
            })
            .collect();
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
        let streams = config.stream.map(|p| {
            let rng = Rng::from_seed(derive_seed(config.seed, LABEL_STREAMS));
            (Streams::new(p), rng)
        });
        let cpu = (0..config.nodes).map(|_| NodeCpu::default()).collect();
        let mut queue = crate::queue::Queue::default();
        // Nodes start first, so that everything scheduled for 0 s sees them running.
        for i in 0..config.nodes {
            queue.push(Instant::ZERO, Event::Start(i));
        }
        queue.push(config.end, Event::End);
        Sim {
            timeline: config
                .timeline
                .then(|| Timeline::new(&config.name, config.seed, names.clone())),
            world: World {
                nodes,
                addrs,
                names,
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
            effect_params: config.effects,
            effects_rng: Rng::from_seed(derive_seed(config.seed, LABEL_EFFECTS)),
            effects: BTreeMap::new(),
            next_effect: 0,
            config,
            finished: false,
            timer_progress: Outcome::Pending,
            invariants: Outcome::Pending,
            next_client: 1,
            client_nodes: BTreeMap::new(),
            swarm: None,
            streams,
            stalled: BTreeMap::new(),
            cpu,
            outputs: 0,
        }
    }

    /// Records the fault parameters a swarm drew for this run, for the report.
    pub fn set_swarm(&mut self, banner: String) {
        if self.trace.enabled() {
            self.trace
                .line(Instant::ZERO, format_args!("-- swarm {banner}"));
        }
        self.swarm = Some(banner);
    }

    /// Schedules `action` at `at`, after anything already scheduled for that instant.
    pub fn schedule(&mut self, at: Instant, action: Action<CommandOf<P>>) {
        if let Action::ClientOpen(node, c, _) = &action {
            self.client_nodes.insert(*c, *node);
            self.next_client = self.next_client.max(c.0 + 1);
        }
        self.actions.push(action);
        self.queue.push(at, Event::Action(self.actions.len() - 1));
    }

    /// Schedules opening a client stream on `node` at `at`; returns its id (unique in
    /// this run).
    pub fn open_client(&mut self, at: Instant, node: usize) -> ClientId {
        self.open_client_on(at, node, ListenerId(0))
    }

    /// Schedules opening a client stream on `node`'s `listener` at `at`; returns its id.
    pub fn open_client_on(&mut self, at: Instant, node: usize, listener: ListenerId) -> ClientId {
        let c = ClientId(self.next_client);
        self.schedule(at, Action::ClientOpen(node, c, listener));
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

    /// The timeline so far, if one is recorded ([`SimConfig::timeline`]), with every
    /// verdict decided so far marked.
    pub fn timeline(&self) -> Option<Timeline> {
        let mut t = self.timeline.clone()?;
        t.end = self.world.now;
        for v in self.report().verdicts {
            match v.outcome {
                Outcome::Fail(at, why) => t.verdict(at, false, format!("FAIL {}: {why}", v.check)),
                Outcome::Pass(at) if at < self.world.now || self.finished => {
                    t.verdict(at, true, format!("PASS {}", v.check));
                }
                _ => {}
            }
        }
        Some(t)
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
            streams: self.streams.as_ref().map(|(s, _)| s.stats().clone()),
            swarm: self.swarm.clone(),
        }
    }

    /// Runs one event: at once, or — when inputs cost time and its node is busy — once
    /// the node is free, in the order the drivers' policy picks.
    fn step(&mut self, ev: Event) {
        let Some(cpu) = self.config.cpu else {
            return self.process(ev);
        };
        let Some(ev) = self.gate(ev) else { return };
        let input = self.input_of(&ev);
        self.outputs = 0;
        self.process(ev);
        if let Some((i, source)) = input {
            self.charge(i, source, &cpu);
        }
    }

    /// The node and source of an input event, if it is one (`None` source: a timer).
    fn input_of(&self, ev: &Event) -> Option<(usize, Option<InputSource>)> {
        match ev {
            Event::Deliver { to, lane, .. } => Some((
                *to,
                Some(match lane {
                    Lane::Control => InputSource::Control,
                    Lane::Data => InputSource::Peers,
                }),
            )),
            Event::Effect(key) => self
                .effects
                .get(key)
                .map(|e| (e.node, Some(InputSource::Local))),
            Event::Timer { node, generation } => {
                (*generation == self.world.nodes[*node].timer_gen).then_some((*node, None))
            }
            Event::Action(k) => {
                let a = &self.actions[*k];
                let source = match a {
                    Action::Command(..) => InputSource::Local,
                    _ => InputSource::Clients,
                };
                a.input_node().map(|n| (n, Some(source)))
            }
            _ => None,
        }
    }

    /// Lets an input through if its node is free; otherwise queues it for the node's next
    /// wake-up. A wake-up yields the node's next waiting input (an overdue timer first).
    fn gate(&mut self, ev: Event) -> Option<Event> {
        let now = self.world.now;
        if let Event::Wake(i) = ev {
            let order = self.config.cpu.map(|c| c.order).unwrap_or_default();
            let cpu = &mut self.cpu[i];
            cpu.wake_queued = false;
            if let Some(generation) = cpu.timer_due.take() {
                return Some(Event::Timer {
                    node: i,
                    generation,
                });
            }
            let (_, arrived, ev) = cpu.next(order)?;
            let waited = now.saturating_duration_since(arrived);
            self.stats.longest_wait = self.stats.longest_wait.max(waited);
            return Some(ev);
        }
        let Some((i, source)) = self.input_of(&ev) else {
            return Some(ev);
        };
        if self.world.nodes[i].status != Status::Up || !self.cpu[i].must_wait(now) {
            return Some(ev);
        }
        match (source, &ev) {
            (None, Event::Timer { generation, .. }) => self.cpu[i].timer_due = Some(*generation),
            (Some(s), _) => self.cpu[i].wait(s, now, ev),
            (None, _) => return Some(ev),
        }
        self.wake_later(i);
        None
    }

    /// Charges node `i` for the input just handled, and wakes it when it is free if
    /// anything waits.
    fn charge(&mut self, i: usize, source: Option<InputSource>, cpu: &CpuParams) {
        let now = self.world.now;
        let c = &mut self.cpu[i];
        c.busy_until = now + cpu.cost(source, self.outputs);
        if c.waiting() > 0 || c.timer_due.is_some() {
            self.wake_later(i);
        }
    }

    fn wake_later(&mut self, i: usize) {
        let c = &mut self.cpu[i];
        if !c.wake_queued {
            c.wake_queued = true;
            let at = c.busy_until.max(self.world.now);
            self.queue.push(at, Event::Wake(i));
        }
    }

    fn process(&mut self, ev: Event) {
        let now = self.world.now;
        let touched = match ev {
            Event::Wake(_) => return,
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
                lane,
                incarnation,
                bytes,
                drawn,
            } => {
                self.stats.events += 1;
                let node = &self.world.nodes[to];
                if node.status == Status::Paused {
                    self.hold(
                        to,
                        Event::Deliver {
                            to,
                            from,
                            lane,
                            incarnation,
                            bytes,
                            drawn,
                        },
                    );
                    return;
                }
                if node.machine.is_none() || node.incarnation != incarnation {
                    self.stats.dropped_crashed += 1;
                    self.trace.hash(now, to as u64, Tag::Dropped);
                    if self.trace.enabled() {
                        let (t, f) = (self.world.name(to), self.world.name(from));
                        let line =
                            format!("{t} <- {f} ({} B) dropped: receiver crashed", bytes.len());
                        self.trace.line(now, format_args!("{line}"));
                    }
                    if let (Some(tl), Some(k)) = (&mut self.timeline, drawn) {
                        tl.arrive(k, now, Some("receiver crashed".to_string()));
                    }
                    return;
                }
                if let (Some(tl), Some(k)) = (&mut self.timeline, drawn) {
                    tl.arrive(k, now, None);
                }
                self.deliver(to, from, &bytes);
                Some(to)
            }
            Event::Effect(key) => {
                self.stats.events += 1;
                let Some(node) = self.effects.get(&key).map(|e| e.node) else {
                    return;
                };
                if self.world.nodes[node].status == Status::Paused {
                    self.hold(node, Event::Effect(key));
                    return;
                }
                let pending = self.effects.remove(&key).expect("checked above");
                self.finish_effect(pending)
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
        if self.invariants != Outcome::Pending {
            if self.active_expects > 0 {
                self.evaluate_expectations();
            }
            return;
        }
        // The machines' own consistency first: a broken index explains a broken
        // protocol invariant better than the other way round.
        let machines = match touched {
            Some(i) => i..i + 1,
            None => 0..self.world.nodes.len(),
        };
        let mut broken = None;
        for i in machines {
            if let Some(m) = self.world.nodes[i].machine.as_ref()
                && let Err(why) = m.check_invariants()
            {
                broken = Some(format!("{}: {why}", self.world.name(i)));
                break;
            }
        }
        let broken = match broken {
            Some(b) => Some(b),
            None => self.protocol.check(&self.world, touched).err(),
        };
        if let Some(why) = broken {
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
            name: &self.world.names[i],
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
            let line = format!(
                "{} start (incarnation {incarnation}, local {local})",
                self.world.name(i)
            );
            self.trace.line(now, format_args!("{line}"));
        }
        if let Some(tl) = &mut self.timeline {
            tl.end_span(i, SpanKind::Crashed, now);
            if incarnation > 0 {
                tl.mark(
                    now,
                    Some(i),
                    MarkKind::Fault,
                    format!("restart (incarnation {incarnation})"),
                );
            }
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
                    let (t, f, n) = (self.world.name(to), self.world.name(from), bytes.len());
                    let line = format!("{t} <- {f} undecodable ({n} B): {e}");
                    self.trace.line(now, format_args!("{line}"));
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
            let (t, f) = (self.world.name(to), self.world.name(from));
            let line = format!(
                "{t} <- {f} frame {} ({} B){verdict}",
                frame.kind,
                bytes.len()
            );
            self.trace.line(now, format_args!("{line}"));
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
            let line = format!("{} timer (local {local})", self.world.name(i));
            self.trace.line(now, format_args!("{line}"));
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
                    self.world.name(i)
                ),
            );
            self.trace.hash(now, i as u64, Tag::Check);
            if self.trace.enabled() {
                let line = format!("-- timer-progress violated by {}", self.world.name(i));
                self.trace.line(now, format_args!("{line}"));
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
        loop {
            let Some(out) = self.world.nodes[i]
                .machine
                .as_mut()
                .and_then(|m| m.poll_output())
            else {
                break;
            };
            self.outputs += 1;
            match out {
                Output::Transmit(t) => self.transmit(i, t),
                Output::ToClient(c, data) => self.write_to_client(i, c, data),
                Output::CloseClient(c) => self.machine_closes_client(i, c),
                Output::Event(e) => {
                    let now = self.world.now;
                    self.trace.hash(now, i as u64, Tag::Event);
                    self.trace.hasher().debug(&e);
                    if self.trace.enabled() {
                        let line = format!("{} event {e:?}", self.world.name(i));
                        self.trace.line(now, format_args!("{line}"));
                    }
                    if let Some(tl) = &mut self.timeline {
                        tl.mark(now, Some(i), MarkKind::Event, format!("{e:?}"));
                    }
                    self.protocol
                        .observe(&self.world, Observation::Event { node: i, event: &e });
                }
                Output::Effect(req) => self.start_effect(i, req),
            }
        }
    }

    /// Draws an effect's latency and fate, and schedules its outcome.
    fn start_effect(&mut self, i: usize, req: EffectRequest<EffectOf<P>>) {
        let now = self.world.now;
        self.stats.effects += 1;
        let limit = req.timeout.unwrap_or(self.effect_params.timeout);
        let (delay, fate) = self.effect_params.draw(&mut self.effects_rng, limit);
        self.trace.hash(now, i as u64, Tag::Effect);
        self.trace.hasher().word(req.id.0);
        self.trace.hasher().debug(&req.effect);
        if self.trace.enabled() {
            let line = format!(
                "{} effect {} {:?} ({fate:?} after {delay:?})",
                self.world.name(i),
                req.id,
                req.effect
            );
            self.trace.line(now, format_args!("{line}"));
        }
        if let Some(tl) = &mut self.timeline {
            tl.mark(
                now,
                Some(i),
                MarkKind::Effect,
                format!("effect {} {:?}", req.id, req.effect),
            );
        }
        self.next_effect += 1;
        let key = self.next_effect;
        self.effects.insert(
            key,
            PendingEffect {
                node: i,
                incarnation: self.world.nodes[i].incarnation,
                id: req.id,
                effect: req.effect,
                fate,
            },
        );
        self.queue.push(now + delay, Event::Effect(key));
    }

    /// An effect's time came: lost if its node crashed meanwhile, else carried out (by
    /// the plug-in), failed or timed out as drawn, and its outcome fed to the machine.
    fn finish_effect(&mut self, e: PendingEffect<EffectOf<P>>) -> Option<usize> {
        let now = self.world.now;
        let i = e.node;
        let node = &self.world.nodes[i];
        if node.machine.is_none() || node.incarnation != e.incarnation {
            self.stats.effects_lost += 1;
            self.trace.hash(now, i as u64, Tag::Dropped);
            if self.trace.enabled() {
                let line = format!(
                    "{} effect {} lost: its node crashed",
                    self.world.name(i),
                    e.id
                );
                self.trace.line(now, format_args!("{line}"));
            }
            return None;
        }
        let outcome = match e.fate {
            Fate::Run => self.protocol.effect(&self.world, i, &e.effect),
            Fate::Fail => Err(EffectError::Failed("simulated failure".to_string())),
            Fate::TimedOut(limit) => Err(EffectError::TimedOut(limit)),
        };
        if outcome.is_err() {
            self.stats.effects_failed += 1;
        }
        self.trace.hash(now, i as u64, Tag::EffectDone);
        self.trace.hasher().word(e.id.0);
        self.trace.hasher().debug(&outcome);
        if self.trace.enabled() {
            let line = format!("{} effect {} done: {outcome:?}", self.world.name(i), e.id);
            self.trace.line(now, format_args!("{line}"));
        }
        if let Some(tl) = &mut self.timeline {
            let text = format!("effect {} done: {outcome:?}", e.id);
            tl.mark(now, Some(i), MarkKind::Effect, text);
        }
        self.protocol.observe(
            &self.world,
            Observation::EffectDone {
                node: i,
                id: e.id,
                outcome: &outcome,
            },
        );
        self.feed(i, Input::EffectDone { id: e.id, outcome });
        Some(i)
    }

    fn transmit(&mut self, from: usize, t: Transmit) {
        let now = self.world.now;
        let Some(to) = node_index(t.to, self.world.nodes.len()) else {
            self.stats.unknown_destination += 1;
            self.trace.hash(now, from as u64, Tag::Dropped);
            if self.trace.enabled() {
                let line = format!(
                    "{} -> {} frame {} dropped: no such node",
                    self.world.name(from),
                    t.to,
                    t.frame.kind
                );
                self.trace.line(now, format_args!("{line}"));
            }
            return;
        };
        let bytes = t.frame.to_bytes();
        self.trace.hash(now, from as u64, Tag::Send);
        self.trace.hasher().word(to as u64);
        self.trace.hasher().bytes(&bytes);
        if self.streams.is_some() {
            return self.transmit_stream(from, to, t.lane, &t.frame, bytes);
        }
        let verdict = self.world.network.route(from, to);
        if self.trace.enabled() {
            self.trace_send(from, to, &t.frame, bytes.len(), &verdict);
        }
        let label = t.frame.kind.to_string();
        let lane = t.lane;
        match verdict {
            NetVerdict::Drop(why) => {
                if let Some(tl) = &mut self.timeline {
                    tl.send(from, to, now, label, Some(why.to_string()));
                }
            }
            NetVerdict::Deliver(a, b) => {
                let drawn = self
                    .timeline
                    .as_mut()
                    .and_then(|tl| tl.send(from, to, now, label.clone(), None));
                self.send_copy((from, to, lane), &bytes, a, drawn);
                if let Some(b) = b {
                    let drawn = self
                        .timeline
                        .as_mut()
                        .and_then(|tl| tl.send(from, to, now, format!("{label} (copy)"), None));
                    self.send_copy((from, to, lane), &bytes, b, drawn);
                }
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
        let what = self
            .protocol
            .describe(frame)
            .map_or(String::new(), |d| format!(" {d}"));
        let line = format!(
            "{} -> {} frame {}{what} ({len} B){fate}",
            self.world.name(from),
            self.world.name(to),
            frame.kind
        );
        self.trace.line(self.world.now, format_args!("{line}"));
    }

    fn send_copy(
        &mut self,
        (from, to, lane): StreamKey,
        bytes: &Bytes,
        d: Delivery,
        drawn: Option<usize>,
    ) {
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
                lane,
                incarnation,
                bytes,
                drawn,
            },
        );
    }

    /// Sends a frame through the stream model: it arrives in order, late if segments
    /// were lost, waits while its link is cut, or is dropped at a full queue.
    fn transmit_stream(&mut self, from: usize, to: usize, lane: Lane, frame: &Frame, bytes: Bytes) {
        let now = self.world.now;
        let key = (from, to, lane);
        let cut = !self.world.network.passes(from, to);
        let p = *self.world.network.params(from, to);
        let Some((streams, rng)) = &mut self.streams else {
            return;
        };
        let verdict = streams.send(key, now, bytes.len(), (cut, p.latency, p.loss), rng);
        if self.trace.enabled() {
            let fate = match verdict {
                StreamVerdict::Arrive(t) => format!(" arrives {t}"),
                StreamVerdict::Stall => " waits: link cut".to_string(),
                StreamVerdict::QueueFull => " dropped: queue full".to_string(),
                StreamVerdict::Doomed => " dropped: connection given up".to_string(),
            };
            let line = format!(
                "{} -> {} {lane} frame {} ({} B){fate}",
                self.world.name(from),
                self.world.name(to),
                frame.kind,
                bytes.len()
            );
            self.trace.line(now, format_args!("{line}"));
        }
        let label = frame.kind.to_string();
        match verdict {
            StreamVerdict::Arrive(at) => {
                let drawn = self
                    .timeline
                    .as_mut()
                    .and_then(|tl| tl.send(from, to, now, label, None));
                self.deliver_at(key, at, bytes, self.world.nodes[to].incarnation, drawn);
            }
            StreamVerdict::Stall => {
                let drawn = self
                    .timeline
                    .as_mut()
                    .and_then(|tl| tl.send(from, to, now, label, None));
                let incarnation = self.world.nodes[to].incarnation;
                self.stalled
                    .entry(key)
                    .or_default()
                    .push_back((bytes, incarnation, drawn));
            }
            StreamVerdict::QueueFull | StreamVerdict::Doomed => {
                self.trace.hash(now, from as u64, Tag::Dropped);
                let why = match verdict {
                    StreamVerdict::Doomed => "connection given up",
                    _ => "queue full",
                };
                if let Some(tl) = &mut self.timeline {
                    tl.send(from, to, now, label, Some(why.to_string()));
                }
            }
        }
    }

    fn deliver_at(
        &mut self,
        (from, to, lane): StreamKey,
        at: Instant,
        bytes: Bytes,
        incarnation: u64,
        drawn: Option<usize>,
    ) {
        self.queue.push(
            at,
            Event::Deliver {
                to,
                from,
                lane,
                incarnation,
                bytes,
                drawn,
            },
        );
    }

    /// The rules changed: streams whose link passes again resume their waiting frames at
    /// the sender's next (backed-off) retransmission.
    fn resume_streams(&mut self) {
        let Some((streams, _)) = &self.streams else {
            return;
        };
        let now = self.world.now;
        let keys: Vec<StreamKey> = streams
            .stalled_keys()
            .into_iter()
            .filter(|(a, b, _)| self.world.network.passes(*a, *b))
            .collect();
        for key in keys {
            let p = *self.world.network.params(key.0, key.1);
            let Some((streams, rng)) = &mut self.streams else {
                return;
            };
            let Some(resumed) = streams.resume(key, now) else {
                continue;
            };
            let mut waiting = self.stalled.remove(&key).unwrap_or_default();
            let n = resumed.dropped;
            if n > 0 {
                // Dropped with a connection (or dial) given up while the link was cut (§6.3).
                for _ in 0..n {
                    self.trace.hash(now, key.0 as u64, Tag::Dropped);
                }
                if self.trace.enabled() {
                    let line = format!(
                        "{} -> {} {} stream given up: {n} waiting frames dropped",
                        self.world.name(key.0),
                        self.world.name(key.1),
                        key.2
                    );
                    self.trace.line(now, format_args!("{line}"));
                }
                waiting.drain(..n.min(waiting.len()));
            }
            let Some(at) = resumed.at else {
                continue;
            };
            let mut arrivals = Vec::with_capacity(waiting.len());
            for (bytes, incarnation, drawn) in waiting {
                let t = streams.send_resumed(key, at, bytes.len(), (p.latency, p.loss), rng);
                arrivals.push((t, bytes, incarnation, drawn));
            }
            for (t, bytes, incarnation, drawn) in arrivals {
                self.deliver_at(key, t, bytes, incarnation, drawn);
            }
        }
    }

    fn write_to_client(&mut self, i: usize, c: ClientId, data: Bytes) {
        let now = self.world.now;
        self.trace.hash(now, i as u64, Tag::ToClient);
        self.trace.hasher().word(c.0);
        self.trace.hasher().bytes(&data);
        if self.trace.enabled() {
            let line = format!(
                "{} -> {c} {:?}",
                self.world.name(i),
                String::from_utf8_lossy(&data)
            );
            self.trace.line(now, format_args!("{line}"));
        }
        if let Some(tl) = &mut self.timeline {
            let text = format!("-> {c} {:?}", String::from_utf8_lossy(&data));
            tl.mark(now, Some(i), MarkKind::Client, text);
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
            let line = format!("{} closes {c}", self.world.name(i));
            self.trace.line(now, format_args!("{line}"));
        }
        match self.world.clients.get_mut(&c) {
            Some(r) if r.node == i && r.is_open() => r.ended = Some((now, ClientEnd::ByMachine)),
            _ => self.stats.client_dropped += 1,
        }
        self.protocol
            .observe(&self.world, Observation::CloseClient { node: i, client: c });
    }

    /// Feeds a client, command or effect input to a live node's machine.
    fn feed(
        &mut self,
        i: usize,
        input: Input<CommandOf<P>, crate::protocol::EffectValueOf<P>>,
    ) -> bool {
        let local = self.advance_local(i);
        let Some(m) = self.world.nodes[i].machine.as_mut() else {
            return false;
        };
        let result = m.handle(local, input);
        if let Err(e) = &result {
            self.stats.refused += 1;
            self.trace.hash(self.world.now, i as u64, Tag::Refused);
            if self.trace.enabled() {
                let line = format!("{} refused input: {e}", self.world.name(i));
                self.trace.line(self.world.now, format_args!("{line}"));
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

    /// Writes `-- TEXT` to the trace and marks it on the timeline (on `node`'s lane, or
    /// across the run).
    fn fault(&mut self, node: Option<usize>, text: String) {
        if self.trace.enabled() {
            self.trace.line(self.world.now, format_args!("-- {text}"));
        }
        if let Some(tl) = &mut self.timeline {
            tl.mark(self.world.now, node, MarkKind::Fault, text);
        }
    }

    /// The partition or blocks changed: the trace says how, and the timeline's band
    /// follows what the network now cuts.
    fn rules_changed(&mut self, text: String) {
        self.resume_streams();
        if self.trace.enabled() {
            self.trace.line(self.world.now, format_args!("-- {text}"));
        }
        if let Some(tl) = &mut self.timeline {
            let cut = self.world.network.describe_rules(&self.world.names);
            tl.recut(self.world.now, cut);
        }
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
                let d = self.world.network.describe_partition(&self.world.names);
                self.rules_changed(format!("partition {d}"));
                None
            }
            Action::Heal => {
                self.world.network.heal();
                self.rules_changed("heal".to_string());
                None
            }
            Action::Block(a, b) | Action::Unblock(a, b) => {
                let block = matches!(self.actions[k], Action::Block(..));
                self.world.network.block(a, b, block);
                let verb = if block { "block" } else { "unblock" };
                let text = format!("{verb} {} -> {}", self.world.name(a), self.world.name(b));
                self.rules_changed(text);
                None
            }
            Action::Network(patch) => {
                let p = patch.apply(*self.world.network.defaults());
                self.world.network.set_defaults(p);
                if self.trace.enabled() {
                    self.trace.line(now, format_args!("-- network {p:?}"));
                }
                None
            }
            Action::Link(a, b, patch) => {
                let p = patch.apply(*self.world.network.params(a, b));
                self.world.network.set_link(a, b, p);
                if self.trace.enabled() {
                    let line = format!(
                        "-- link {} -> {} {p:?}",
                        self.world.name(a),
                        self.world.name(b)
                    );
                    self.trace.line(now, format_args!("{line}"));
                }
                None
            }
            Action::Effects(patch) => {
                self.effect_params = patch.apply(self.effect_params);
                let p = self.effect_params;
                self.fault(None, format!("effects {p:?}"));
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
                    let line = format!("-- restart {}", self.world.name(i));
                    self.trace.line(now, format_args!("{line}"));
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
                    if let Some(tl) = &mut self.timeline {
                        tl.begin_span(i, SpanKind::Paused, now);
                    }
                }
                let text = format!("pause {}", self.world.name(i));
                self.fault(Some(i), text);
                None
            }
            Action::Resume(t) => {
                let i = self.pick(t, Status::Paused)?;
                if self.world.nodes[i].status != Status::Paused {
                    return None;
                }
                self.world.nodes[i].status = Status::Up;
                let held = core::mem::take(&mut self.held[i]);
                if let Some(tl) = &mut self.timeline {
                    tl.end_span(i, SpanKind::Paused, now);
                }
                let text = format!("resume {} ({} held events)", self.world.name(i), held.len());
                self.fault(Some(i), text);
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
                let text = format!(
                    "skew {} local {local} drift {drift} ppm",
                    self.world.name(node)
                );
                self.fault(Some(node), text);
                None
            }
            Action::Command(i, cmd) => {
                if self.world.nodes[i].machine.is_none() {
                    return Some(i);
                }
                if self.trace.enabled() {
                    let line = format!("{} command {cmd:?}", self.world.name(i));
                    self.trace.line(now, format_args!("{line}"));
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
            Action::ClientOpen(i, c, listener) => {
                let node = &self.world.nodes[i];
                let live = node.machine.is_some();
                self.world.clients.insert(
                    c,
                    ClientRecord {
                        node: i,
                        listener,
                        incarnation: node.incarnation,
                        received: Vec::new(),
                        ended: (!live).then_some((now, ClientEnd::Refused)),
                    },
                );
                if self.trace.enabled() {
                    let how = if live { "" } else { " refused: node is down" };
                    let line = format!("{} accepts {c} on {listener}{how}", self.world.name(i));
                    self.trace.line(now, format_args!("{line}"));
                }
                if let Some(tl) = &mut self.timeline {
                    tl.mark(
                        now,
                        Some(i),
                        MarkKind::Client,
                        format!("{c} opens on {listener}"),
                    );
                }
                if live {
                    self.feed(
                        i,
                        Input::ClientOpened {
                            client: c,
                            origin: sim_client_origin(c, listener),
                        },
                    );
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
                    let line = format!(
                        "{} <- {c} {:?}{}",
                        self.world.name(i),
                        String::from_utf8_lossy(&data),
                        if open { "" } else { " dropped: closed" }
                    );
                    self.trace.line(now, format_args!("{line}"));
                }
                if let Some(tl) = &mut self.timeline {
                    let text = format!("{c} -> {:?}", String::from_utf8_lossy(&data));
                    tl.mark(now, Some(i), MarkKind::Client, text);
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
                    let line = format!("{} <- {c} closed", self.world.name(i));
                    self.trace.line(now, format_args!("{line}"));
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
        self.cpu[i].clear(now);
        // Its connections close: whatever waited on them, either way, is gone.
        let gone: Vec<StreamKey> = self
            .stalled
            .keys()
            .filter(|(a, b, _)| *a == i || *b == i)
            .copied()
            .collect();
        for key in gone {
            self.stats.dropped_crashed += self.stalled.remove(&key).map_or(0, |q| q.len() as u64);
            if let Some((streams, _)) = &mut self.streams {
                streams.reset(key);
            }
        }
        let dropped = self.held[i].len() as u64;
        self.held[i].clear();
        self.stats.dropped_crashed += dropped;
        for r in self.world.clients.values_mut() {
            if r.node == i && r.is_open() {
                r.ended = Some((now, ClientEnd::NodeCrashed));
            }
        }
        if let Some(tl) = &mut self.timeline {
            tl.end_span(i, SpanKind::Paused, now);
            tl.begin_span(i, SpanKind::Crashed, now);
        }
        let text = format!("crash {}", self.world.name(i));
        self.fault(Some(i), text);
    }
}

/// A simulated client runs on its node's host: a loopback peer, so it is "on the same
/// machine" for protocols that care (a flood daemon's `terminate`).
fn sim_client_origin(c: ClientId, listener: ListenerId) -> ClientOrigin {
    let port = 1024 + (c.0 % 60_000) as u16;
    ClientOrigin::tcp(
        listener,
        core::net::SocketAddr::from(([127, 0, 0, 1], port)),
        core::net::SocketAddr::from(([127, 0, 0, 1], 7000 + listener.0)),
    )
}
