//! The plug-in trait through which a protocol joins the simulator.
//!
//! The simulator knows nothing about any protocol: it moves frames, fires timers,
//! injects faults, runs effects and opens client streams for any [`Machine`]. A
//! [`Protocol`] adds the rest: how to build the machine for a node, what its effects do,
//! what to remember of what happened, which safety invariants must hold after every step
//! (beyond each machine's own `check_invariants`, which the simulator always runs), which
//! named predicates liveness expectations may ask for, and which extra scenario forms it
//! understands.
//!
//! A protocol value is configured once from the scenario file and then cloned for every
//! run (every seed), so it can carry its per-run records in plain fields.

use core::fmt;

use bytes::Bytes;
use flotilla_core::sexpr::{Node, SexprError, Value};
use flotilla_core::wire::Frame;
use flotilla_core::{ClientId, EffectError, EffectId, Instant, Machine, PeerAddr, Rng};

use crate::world::{PORT, World};

/// Commands of the protocol's machine.
pub type CommandOf<P> = <<P as Protocol>::Machine as Machine>::Command;
/// Events of the protocol's machine.
pub type EventOf<P> = <<P as Protocol>::Machine as Machine>::Event;
/// Effects of the protocol's machine.
pub type EffectOf<P> = <<P as Protocol>::Machine as Machine>::Effect;
/// What the protocol's machine's effects produce.
pub type EffectValueOf<P> = <<P as Protocol>::Machine as Machine>::EffectValue;
/// An observation of the protocol's machine.
pub type ObservationOf<'a, P> = Observation<'a, CommandOf<P>, EventOf<P>, EffectValueOf<P>>;

/// Who a machine is being built for.
#[derive(Clone, Copy, Debug)]
pub struct NodeSpec<'a> {
    /// Node index, from 0 (`n1` is 0).
    pub index: usize,
    /// The node's name (`n1`, or the scenario's name for it).
    pub name: &'a str,
    /// The node's own address.
    pub addr: PeerAddr,
    /// Every node's address, by index (including this one).
    pub addrs: &'a [PeerAddr],
    /// 0 for the first start, then one more for each restart.
    pub incarnation: u64,
}

/// Something a protocol may want to record; see [`Protocol::observe`].
#[derive(Debug)]
pub enum Observation<'a, C, E, V> {
    /// A frame decoded and was fed to `node`'s machine, which accepted it (`Ok`) or
    /// refused it (`Err`, state unchanged).
    Delivered {
        /// The receiver.
        node: usize,
        /// The sender.
        from: usize,
        /// The frame as decoded (after any corruption).
        frame: &'a Frame,
        /// Whether `handle` returned `Ok`.
        accepted: bool,
    },
    /// A scheduled command was fed to `node`'s machine.
    Command {
        /// The node.
        node: usize,
        /// The command.
        command: &'a C,
        /// Whether `handle` returned `Ok`.
        accepted: bool,
    },
    /// The machine emitted an event.
    Event {
        /// The node.
        node: usize,
        /// The event.
        event: &'a E,
    },
    /// The machine wrote to a client stream.
    ToClient {
        /// The node.
        node: usize,
        /// The stream.
        client: ClientId,
        /// The bytes.
        data: &'a Bytes,
    },
    /// A client sent bytes to `node`, observed just before the machine sees them.
    FromClient {
        /// The node.
        node: usize,
        /// The stream.
        client: ClientId,
        /// The bytes.
        data: &'a Bytes,
    },
    /// The machine closed a client stream.
    CloseClient {
        /// The node.
        node: usize,
        /// The stream.
        client: ClientId,
    },
    /// An effect's outcome was fed to `node`'s machine.
    EffectDone {
        /// The node.
        node: usize,
        /// The effect's id.
        id: EffectId,
        /// Its outcome.
        outcome: &'a Result<V, EffectError>,
    },
}

/// One step of a protocol-generated client workload (see [`Protocol::workload`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Open stream number `client` (the protocol's own numbering) on `node`.
    Open {
        /// The node.
        node: usize,
        /// The protocol's number for the stream.
        client: u32,
    },
    /// Send bytes on a stream opened earlier.
    Send {
        /// The protocol's number for the stream.
        client: u32,
        /// The bytes.
        data: Bytes,
    },
    /// Close a stream from the client side.
    Close {
        /// The protocol's number for the stream.
        client: u32,
    },
}

/// Context for parsing protocol-specific scenario forms.
#[derive(Clone, Debug)]
pub struct ParseCtx {
    /// Number of nodes in the scenario.
    pub nodes: usize,
    /// Their names, when the scenario gave them (`(:nodes master inferno …)`).
    pub names: Vec<String>,
}

impl ParseCtx {
    /// Reads a node, by its name or as `n1` to `nN`, as a 0-based index.
    pub fn node(&self, n: &Node) -> Result<usize, SexprError> {
        let bad = || {
            let named = if self.names.is_empty() {
                String::new()
            } else {
                format!(" or one of {}", self.names.join(" "))
            };
            SexprError::new(
                n.pos,
                format!("expected a node name n1..n{}{named}, found {n}", self.nodes),
            )
        };
        let Value::Symbol(s) = &n.value else {
            return Err(bad());
        };
        if let Some(i) = self.names.iter().position(|x| x == s) {
            return Ok(i);
        }
        let k: usize = s
            .strip_prefix('n')
            .and_then(|d| d.parse().ok())
            .ok_or_else(bad)?;
        if k == 0 || k > self.nodes {
            return Err(bad());
        }
        Ok(k - 1)
    }
}

/// A protocol's contribution to the simulator. Only [`name`](Protocol::name),
/// [`build`](Protocol::build) and [`predicate`](Protocol::predicate) are required.
pub trait Protocol: Clone {
    /// The machine every node runs.
    type Machine: Machine<
            Command: Clone + fmt::Debug,
            Event: fmt::Debug,
            Effect: fmt::Debug,
            EffectValue: fmt::Debug,
        >;

    /// The name in `(:protocol NAME)`.
    fn name(&self) -> &'static str;

    /// Reads one top-level scenario form the simulator does not know, such as
    /// `(:heartbeat (:interval 200ms))`. Returns `Ok(false)` if the form is not this
    /// protocol's, so the simulator can report it as unknown.
    fn configure(&mut self, form: &Node, ctx: &ParseCtx) -> Result<bool, SexprError> {
        let _ = (form, ctx);
        Ok(false)
    }

    /// Reads one action inside `(:at TIME ...)` that the simulator does not know, as a
    /// command for one node's machine. `Ok(None)`: not this protocol's.
    fn parse_action(
        &self,
        form: &Node,
        ctx: &ParseCtx,
    ) -> Result<Option<(usize, CommandOf<Self>)>, SexprError> {
        let _ = (form, ctx);
        Ok(None)
    }

    /// Client traffic for one run, drawn from `rng` (derived from the run's seed), for
    /// workloads too large to write out as `(:client-…)` actions: a list of
    /// `(time, step)`; opens must come before sends on the same stream. Default: none.
    fn workload(&self, nodes: usize, end: Instant, rng: &mut Rng) -> Vec<(Instant, Workload)> {
        let _ = (nodes, end, rng);
        Vec::new()
    }

    /// Commands for one run, drawn from `rng` (derived from the run's seed): a list of
    /// `(time, node, command)`, for workloads too large to write out as actions (messages
    /// sent by a node's clients, say). Default: none.
    fn commands(
        &self,
        nodes: usize,
        end: Instant,
        rng: &mut Rng,
    ) -> Vec<(Instant, usize, CommandOf<Self>)> {
        let _ = (nodes, end, rng);
        Vec::new()
    }

    /// The port node `node` is known by (the source of its frames, what others send
    /// to). Any port of a node's address reaches it. Default: 7000.
    fn port(&self, node: usize) -> u16 {
        let _ = node;
        PORT
    }

    /// A short reading of a frame for `--trace` (its message and the fields that
    /// matter when reading a run), or `None` to show its kind only. Default: `None`.
    fn describe(&self, frame: &Frame) -> Option<String> {
        let _ = frame;
        None
    }

    /// The predicate names `(:expect NAME ...)` may use.
    fn predicates(&self) -> &'static [&'static str] {
        &[]
    }

    /// Builds the machine for a node that starts or restarts, at local time `now`, with
    /// a seeded generator derived from (master seed, node, incarnation). Records kept per
    /// node should be reset here: the previous life's state is gone.
    fn build(&mut self, node: &NodeSpec<'_>, rng: Rng, now: Instant) -> Self::Machine;

    /// Sees a delivery or an output, right after it happened.
    fn observe(&mut self, world: &World<Self::Machine>, obs: ObservationOf<'_, Self>) {
        let _ = (world, obs);
    }

    /// Carries out an effect of node `node` that the simulator let succeed (it drew its
    /// latency, failures and hangs already): the protocol's model of the outside world —
    /// a disk that survives the node's crash, a command's output — lives here. The
    /// result is what the machine hears. Default: nothing can be done (`Unsupported`).
    fn effect(
        &mut self,
        world: &World<Self::Machine>,
        node: usize,
        effect: &EffectOf<Self>,
    ) -> Result<EffectValueOf<Self>, EffectError> {
        let _ = (world, node, effect);
        Err(EffectError::Unsupported)
    }

    /// Safety invariants, run after every step. `touched` is the node whose machine just
    /// ran, or `None` after a step that may have changed anything (a fault); a protocol
    /// whose invariants are per node may check only that one. The error says what broke.
    fn check(
        &mut self,
        world: &World<Self::Machine>,
        touched: Option<usize>,
    ) -> Result<(), String> {
        let _ = (world, touched);
        Ok(())
    }

    /// Evaluates the named predicate (one of [`predicates`](Protocol::predicates)) now.
    fn predicate(&self, name: &str, world: &World<Self::Machine>) -> bool;
}
