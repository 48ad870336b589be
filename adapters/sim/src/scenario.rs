//! Scenario files: S-expressions read with the core's reader, so every error carries a
//! line and column. The format is documented in SPEC.md §6.

use core::time::Duration;
use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_core::rng::derive_seed;
use flotilla_core::sexpr::{self, Node, SexprError, Value};
use flotilla_core::{ClientId, Instant, ListenerId, Rng};

use crate::check::{Expectation, Source, Window};
use crate::cpu::{CpuParams, InputOrder};
use crate::effects::{EffectParams, EffectPatch};
use crate::network::LinkParams;
use crate::protocol::{CommandOf, ParseCtx, Protocol, Workload};
use crate::sim::{Action, LinkPatch, Sim, SimConfig, Target};
use crate::stream::StreamParams;
use crate::swarm::SwarmSpec;

/// Most nodes a scenario may ask for.
pub const MAX_NODES: usize = 4096;

/// A parsed scenario for protocol `P`: everything but the seed.
#[derive(Clone)]
pub struct Scenario<P: Protocol> {
    /// The name after `:scenario`.
    pub name: String,
    /// The protocol plug-in, configured by the scenario's protocol forms.
    pub protocol: P,
    /// Number of nodes.
    pub nodes: usize,
    /// Their names, if the scenario named them.
    pub names: Vec<String>,
    /// Length of the run.
    pub duration: Duration,
    /// The seed used when none is given on the command line.
    pub seed: u64,
    /// Default link parameters.
    pub network: LinkParams,
    /// How effects behave.
    pub effects: EffectParams,
    /// Links as TCP streams, if the scenario says so.
    pub stream: Option<StreamParams>,
    /// What inputs cost, if the scenario says so.
    pub cpu: Option<CpuParams>,
    /// Faults drawn per seed, if the scenario asks for them.
    pub swarm: Option<SwarmSpec>,
    /// Initial per-link overrides `(from, to, patch)`.
    pub links: Vec<(usize, usize, LinkPatch)>,
    /// Timed actions, in file order.
    pub actions: Vec<(Instant, Action<CommandOf<P>>)>,
    /// Liveness expectations, in file order.
    pub expectations: Vec<Expectation>,
    /// Where it came from, for replay commands.
    pub source: Source,
}

impl<P: Protocol> core::fmt::Debug for Scenario<P> {
    // Written by hand so that protocols need not be Debug.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("protocol", &self.protocol.name())
            .field("nodes", &self.nodes)
            .field("duration", &self.duration)
            .field("actions", &self.actions.len())
            .field("expectations", &self.expectations)
            .finish_non_exhaustive()
    }
}

fn err(n: &Node, msg: impl Into<String>) -> SexprError {
    SexprError::new(n.pos, msg)
}

/// The single `(:scenario NAME ...)` form of a file.
fn scenario_form(text: &str) -> Result<Node, SexprError> {
    let mut forms = sexpr::parse(text)?.into_iter();
    let Some(form) = forms.next() else {
        return Err(SexprError::new(
            sexpr::Pos { line: 1, col: 1 },
            "empty file: expected (:scenario NAME ...)",
        ));
    };
    if form.head() != Some("scenario") {
        return Err(err(&form, "expected (:scenario NAME ...)"));
    }
    if let Some(extra) = forms.next() {
        return Err(err(&extra, "only one (:scenario ...) form per file"));
    }
    Ok(form)
}

fn find<'a>(form: &'a Node, head: &str) -> Option<&'a Node> {
    form.args().iter().find(|f| f.head() == Some(head))
}

fn one_arg(form: &Node) -> Result<&Node, SexprError> {
    match form.args() {
        [v] => Ok(v),
        _ => Err(err(form, format!("{form} takes exactly one value"))),
    }
}

/// The protocol a scenario file names in `(:protocol NAME)`, and where, so the caller
/// can pick the plug-in before parsing the rest.
pub fn protocol_name(text: &str) -> Result<(String, sexpr::Pos), SexprError> {
    let form = scenario_form(text)?;
    let p = find(&form, "protocol").ok_or_else(|| err(&form, "missing (:protocol NAME)"))?;
    let v = one_arg(p)?;
    Ok((v.text()?, v.pos))
}

fn probability(n: &Node) -> Result<f64, SexprError> {
    let p = n.number()?;
    if !(0.0..=1.0).contains(&p) {
        return Err(err(n, format!("probability {p} is not between 0 and 1")));
    }
    Ok(p)
}

/// A duration that may be negative (`-50ms`), in nanoseconds.
fn signed_nanos(n: &Node) -> Result<i64, SexprError> {
    let (negative, magnitude) = match &n.value {
        Value::Symbol(s) if s.starts_with('-') => (
            true,
            Node {
                value: sexpr::parse(&s[1..])
                    .ok()
                    .and_then(|v| v.into_iter().next())
                    .map_or(Value::Symbol(s.clone()), |v| v.value),
                pos: n.pos,
                raw: None,
            },
        ),
        Value::Int(i) if *i < 0 => (
            true,
            Node {
                value: Value::Int(-i),
                pos: n.pos,
                raw: None,
            },
        ),
        Value::Float(f) if *f < 0.0 => (
            true,
            Node {
                value: Value::Float(-f),
                pos: n.pos,
                raw: None,
            },
        ),
        _ => (false, n.clone()),
    };
    let d = magnitude.duration()?;
    let ns = i64::try_from(d.as_nanos()).map_err(|_| err(n, "offset out of range"))?;
    Ok(if negative { -ns } else { ns })
}

fn link_patch(forms: &[Node]) -> Result<LinkPatch, SexprError> {
    let mut p = LinkPatch::default();
    for f in forms {
        let v = one_arg(f)?;
        match f.head() {
            Some("latency") => p.latency = Some(v.duration()?),
            Some("jitter") => p.jitter = Some(v.duration()?),
            Some("reorder-delay") => p.reorder_delay = Some(v.duration()?),
            Some("loss") => p.loss = Some(probability(v)?),
            Some("duplicate") => p.duplicate = Some(probability(v)?),
            Some("reorder") => p.reorder = Some(probability(v)?),
            Some("corrupt") => p.corrupt = Some(probability(v)?),
            Some("burst-enter") => p.burst_enter = Some(probability(v)?),
            Some("burst-exit") => p.burst_exit = Some(probability(v)?),
            Some("burst-loss") => p.burst_loss = Some(probability(v)?),
            _ => {
                return Err(err(
                    f,
                    format!(
                        "unknown network setting {f} (use :latency :jitter :loss :duplicate \
                         :reorder :reorder-delay :corrupt :burst-enter :burst-exit :burst-loss)"
                    ),
                ));
            }
        }
    }
    Ok(p)
}

fn stream_params(forms: &[Node]) -> Result<StreamParams, SexprError> {
    let mut p = StreamParams::default();
    for f in forms {
        let v = one_arg(f)?;
        match f.head() {
            Some("mbit") => p.bandwidth = v.int_in(1, 1_000_000)? as u64 * 125_000,
            Some("queue") => p.queue = v.int_in(1, 1 << 24)? as usize,
            Some("min-rto") => p.min_rto = v.duration()?,
            Some("max-rto") => p.max_rto = v.duration()?,
            Some("control-stall") => p.control_stall = v.duration()?,
            Some("data-stall") => p.data_stall = v.duration()?,
            Some("syn-retry") => p.syn_retry = v.duration()?,
            Some("dial-timeout") => p.dial_timeout = v.duration()?,
            _ => {
                return Err(err(
                    f,
                    format!(
                        "unknown stream setting {f} (use :mbit :queue :min-rto :max-rto :control-stall :data-stall :syn-retry :dial-timeout)"
                    ),
                ));
            }
        }
    }
    if p.min_rto.is_zero() || p.max_rto < p.min_rto {
        return Err(SexprError::new(
            forms.first().map(|f| f.pos).unwrap_or_default(),
            "stream needs 0 < min-rto <= max-rto",
        ));
    }
    Ok(p)
}

fn cpu_params(forms: &[Node]) -> Result<CpuParams, SexprError> {
    let mut p = CpuParams::default();
    for f in forms {
        let v = one_arg(f)?;
        match f.head() {
            Some("frame") => p.frame = v.duration()?,
            Some("client") => p.client = v.duration()?,
            Some("local") => p.local = v.duration()?,
            Some("timer") => p.timer = v.duration()?,
            Some("output") => p.output = v.duration()?,
            Some("order") => {
                p.order = match v.text()?.as_str() {
                    "turns" => InputOrder::Turns,
                    "fifo" => InputOrder::Fifo,
                    _ => return Err(err(v, "expected turns or fifo")),
                }
            }
            _ => {
                return Err(err(
                    f,
                    format!(
                        "unknown cpu setting {f} (use :frame :client :local :timer :output :order)"
                    ),
                ));
            }
        }
    }
    Ok(p)
}

fn effect_patch(forms: &[Node]) -> Result<EffectPatch, SexprError> {
    let mut p = EffectPatch::default();
    for f in forms {
        let v = one_arg(f)?;
        match f.head() {
            Some("latency") => p.latency = Some(v.duration()?),
            Some("jitter") => p.jitter = Some(v.duration()?),
            Some("timeout") => p.timeout = Some(v.duration()?),
            Some("fail") => p.fail = Some(probability(v)?),
            Some("hang") => p.hang = Some(probability(v)?),
            _ => {
                return Err(err(
                    f,
                    format!(
                        "unknown effects setting {f} (use :latency :jitter :fail :hang :timeout)"
                    ),
                ));
            }
        }
    }
    Ok(p)
}

/// Reads `(:nodes N)` or `(:nodes NAME NAME …)`: a count, or names (which may not look
/// like `nK`, so a node never has two meanings).
fn nodes_form(f: &Node) -> Result<(usize, Vec<String>), SexprError> {
    match f.args() {
        [n] if matches!(n.value, Value::Int(_)) => {
            Ok((n.int_in(1, MAX_NODES as i64)? as usize, Vec::new()))
        }
        [] => Err(err(
            f,
            "(:nodes N) or (:nodes NAME…) needs a count or names",
        )),
        names => {
            if names.len() > MAX_NODES {
                return Err(err(f, format!("at most {MAX_NODES} nodes")));
            }
            let mut out: Vec<String> = Vec::new();
            for n in names {
                let name = n.text()?;
                let numbered = name
                    .strip_prefix('n')
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
                if numbered || name == "random" {
                    return Err(err(
                        n,
                        format!("node name {name} is reserved (n1…nN, random)"),
                    ));
                }
                if out.contains(&name) {
                    return Err(err(n, format!("node {name} is named twice")));
                }
                out.push(name);
            }
            Ok((out.len(), out))
        }
    }
}

struct Parser<'a, P: Protocol> {
    protocol: &'a P,
    ctx: ParseCtx,
    duration: Duration,
    clients: BTreeMap<String, (usize, ClientId)>,
    next_client: u64,
}

impl<P: Protocol> Parser<'_, P> {
    fn time(&self, n: &Node) -> Result<Instant, SexprError> {
        let d = n.duration()?;
        if d > self.duration {
            return Err(err(
                n,
                format!("{d:?} is after the end of the run ({:?})", self.duration),
            ));
        }
        Ok(Instant::ZERO + d)
    }

    fn target(&self, form: &Node) -> Result<Target, SexprError> {
        let v = one_arg(form)?;
        if matches!(&v.value, Value::Symbol(s) if s == "random") {
            return Ok(Target::Random);
        }
        self.ctx.node(v).map(Target::Node)
    }

    fn pair(&self, form: &Node) -> Result<(usize, usize), SexprError> {
        match form.args() {
            [a, b, ..] => Ok((self.ctx.node(a)?, self.ctx.node(b)?)),
            _ => Err(err(form, format!("{form} needs two nodes"))),
        }
    }

    fn client(&self, n: &Node) -> Result<(usize, ClientId), SexprError> {
        let name = n.text()?;
        self.clients.get(&name).copied().ok_or_else(|| {
            err(
                n,
                format!("client {name} was not opened earlier in the file"),
            )
        })
    }

    fn action(&mut self, f: &Node) -> Result<Action<CommandOf<P>>, SexprError> {
        Ok(match f.head() {
            Some("partition") => {
                if f.args().is_empty() {
                    return Err(err(
                        f,
                        "(:partition (n1 ...) (n2 ...)) needs at least one group",
                    ));
                }
                let mut groups = Vec::new();
                for g in f.args() {
                    let members = g.as_list().ok_or_else(|| {
                        err(g, "a partition group is a list of nodes, like (n1 n2)")
                    })?;
                    groups.push(
                        members
                            .iter()
                            .map(|m| self.ctx.node(m))
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
                Action::Partition(groups)
            }
            Some("heal") => Action::Heal,
            Some("block") => {
                let (a, b) = self.pair(f)?;
                Action::Block(a, b)
            }
            Some("unblock") => {
                let (a, b) = self.pair(f)?;
                Action::Unblock(a, b)
            }
            Some("network") => Action::Network(link_patch(f.args())?),
            Some("effects") => Action::Effects(effect_patch(f.args())?),
            Some("link") => {
                let (a, b) = self.pair(f)?;
                Action::Link(a, b, link_patch(&f.args()[2..])?)
            }
            Some("crash") => Action::Crash(self.target(f)?),
            Some("restart") => Action::Restart(self.target(f)?),
            Some("pause") => Action::Pause(self.target(f)?),
            Some("resume") => Action::Resume(self.target(f)?),
            Some("skew") => {
                let [node, rest @ ..] = f.args() else {
                    return Err(err(f, "(:skew NODE (:offset D) (:drift PPM)) needs a node"));
                };
                let node = self.ctx.node(node)?;
                let (mut offset, mut drift_ppm) = (None, None);
                for s in rest {
                    let v = one_arg(s)?;
                    match s.head() {
                        Some("offset") => offset = Some(signed_nanos(v)?),
                        Some("drift") => {
                            let m = crate::clock::MAX_DRIFT_PPM;
                            drift_ppm = Some(v.int_in(-m, m)?);
                        }
                        _ => {
                            return Err(err(
                                s,
                                format!("unknown skew setting {s} (use :offset, :drift)"),
                            ));
                        }
                    }
                }
                Action::Skew {
                    node,
                    offset,
                    drift_ppm,
                }
            }
            Some("client-open") => {
                let (node, name, listener) = match f.args() {
                    [node, name] => (node, name, ListenerId(0)),
                    [node, name, l] => (node, name, ListenerId(l.int_in(0, 65_535)? as u16)),
                    _ => return Err(err(f, "(:client-open NODE NAME [LISTENER])")),
                };
                let node = self.ctx.node(node)?;
                let id = ClientId(self.next_client);
                self.next_client += 1;
                self.clients.insert(name.text()?, (node, id));
                Action::ClientOpen(node, id, listener)
            }
            Some("client-send") => {
                let [name, data] = f.args() else {
                    return Err(err(f, "(:client-send NAME \"TEXT\")"));
                };
                let (node, id) = self.client(name)?;
                Action::ClientSend(node, id, Bytes::from(data.text()?))
            }
            Some("client-close") => {
                let [name] = f.args() else {
                    return Err(err(f, "(:client-close NAME)"));
                };
                let (node, id) = self.client(name)?;
                Action::ClientClose(node, id)
            }
            _ => match self.protocol.parse_action(f, &self.ctx)? {
                Some((node, cmd)) => Action::Command(node, cmd),
                None => {
                    return Err(err(
                        f,
                        format!("unknown action {f} for protocol {}", self.protocol.name()),
                    ));
                }
            },
        })
    }

    fn expectation(&self, f: &Node) -> Result<Expectation, SexprError> {
        let [pred, window] = f.args() else {
            return Err(err(
                f,
                "(:expect PREDICATE (:within FROM TO)) or (:expect PREDICATE (:always-from T))",
            ));
        };
        let predicate = pred.text()?;
        if !self.protocol.predicates().contains(&predicate.as_str()) {
            return Err(err(
                pred,
                format!(
                    "unknown predicate '{predicate}' (protocol {} has: {})",
                    self.protocol.name(),
                    self.protocol.predicates().join(", ")
                ),
            ));
        }
        let window = match (window.head(), window.args()) {
            (Some("within"), [a, b]) => {
                let (a, b) = (self.time(a)?, self.time(b)?);
                if b < a {
                    return Err(err(window, "the window ends before it starts"));
                }
                Window::Within(a, b)
            }
            (Some("always-from"), [a]) => Window::AlwaysFrom(self.time(a)?),
            _ => {
                return Err(err(
                    window,
                    "expected (:within FROM TO) or (:always-from T)",
                ));
            }
        };
        Ok(Expectation { predicate, window })
    }
}

/// Label of the random stream protocol workloads are drawn from.
const WORKLOAD_STREAM: u64 = 0x776f_726b_6c6f_6164;
/// The stream of a run's protocol commands (`Protocol::commands`).
const COMMANDS_STREAM: u64 = 0x636f_6d6d_616e_6473;
/// Label of the random stream swarm faults are drawn from.
const SWARM_STREAM: u64 = 0x7377_6172_6d00_0000;

impl<P: Protocol> Scenario<P> {
    /// Parses `text` for `protocol` (whose name must match the file's `(:protocol NAME)`).
    /// `source` decides the replay command; `None` means "by the scenario's name".
    pub fn parse(text: &str, mut protocol: P, source: Option<Source>) -> Result<Self, SexprError> {
        let form = scenario_form(text)?;
        let [name_node, body @ ..] = form.args() else {
            return Err(err(&form, "expected (:scenario NAME ...)"));
        };
        let name = name_node.text()?;
        let p = find(&form, "protocol").ok_or_else(|| err(&form, "missing (:protocol NAME)"))?;
        let pname = one_arg(p)?.text()?;
        if pname != protocol.name() {
            return Err(err(
                p,
                format!(
                    "this scenario is for protocol {pname}, not {}",
                    protocol.name()
                ),
            ));
        }
        let (nodes, names) = match find(&form, "nodes") {
            Some(f) => nodes_form(f)?,
            None => return Err(err(&form, "missing (:nodes N)")),
        };
        let duration = match find(&form, "duration") {
            Some(f) => one_arg(f)?.duration()?,
            None => return Err(err(&form, "missing (:duration D)")),
        };
        let mut scn = Scenario {
            name: name.clone(),
            protocol: protocol.clone(),
            nodes,
            names: names.clone(),
            duration,
            seed: 0,
            network: LinkParams::default(),
            effects: EffectParams::default(),
            stream: None,
            cpu: None,
            swarm: None,
            links: Vec::new(),
            actions: Vec::new(),
            expectations: Vec::new(),
            source: source.unwrap_or(Source::Named(name)),
        };
        let mut parser = Parser {
            protocol: &protocol,
            ctx: ParseCtx { nodes, names },
            duration,
            clients: BTreeMap::new(),
            next_client: 1,
        };
        let mut protocol_forms = Vec::new();
        for f in body {
            match f.head() {
                Some("protocol" | "nodes" | "duration") => {}
                Some("seed") => scn.seed = one_arg(f)?.int_in(0, i64::MAX)? as u64,
                Some("network") => scn.network = link_patch(f.args())?.apply(scn.network),
                Some("effects") => scn.effects = effect_patch(f.args())?.apply(scn.effects),
                Some("stream") => scn.stream = Some(stream_params(f.args())?),
                Some("cpu") => scn.cpu = Some(cpu_params(f.args())?),
                Some("swarm") => scn.swarm = Some(SwarmSpec::parse(f)?),
                Some("link") => {
                    let (a, b) = parser.pair(f)?;
                    scn.links.push((a, b, link_patch(&f.args()[2..])?));
                }
                Some("at") => {
                    let [t, actions @ ..] = f.args() else {
                        return Err(err(f, "(:at TIME ACTION...) needs a time"));
                    };
                    if actions.is_empty() {
                        return Err(err(f, "(:at TIME ACTION...) needs at least one action"));
                    }
                    let t = parser.time(t)?;
                    for a in actions {
                        let a = parser.action(a)?;
                        scn.actions.push((t, a));
                    }
                }
                Some("expect") => scn.expectations.push(parser.expectation(f)?),
                _ => protocol_forms.push(f),
            }
        }
        let ctx = parser.ctx.clone();
        for f in protocol_forms {
            if !protocol.configure(f, &ctx)? {
                return Err(err(f, format!("unknown form {f}")));
            }
        }
        scn.protocol = protocol;
        Ok(scn)
    }

    /// A simulator for one seed, with every action and expectation scheduled.
    pub fn sim(&self, seed: u64, trace: bool) -> Sim<P> {
        self.sim_with(seed, trace, false)
    }

    /// Like [`Scenario::sim`], also recording a timeline to draw when `timeline` is set.
    pub fn sim_with(&self, seed: u64, trace: bool, timeline: bool) -> Sim<P> {
        let drawn = self.swarm.as_ref().map(|s| {
            let mut rng = Rng::from_seed(derive_seed(seed, SWARM_STREAM));
            s.draw::<CommandOf<P>>(&mut rng, self.nodes, self.duration, self.network)
        });
        let config = SimConfig {
            nodes: self.nodes,
            names: self.names.clone(),
            seed,
            end: Instant::ZERO + self.duration,
            network: drawn.as_ref().map_or(self.network, |d| d.network),
            effects: self.effects,
            stream: self.stream,
            cpu: self.cpu,
            trace,
            timeline,
            source: self.source.clone(),
            name: self.name.clone(),
            ..SimConfig::default()
        };
        let mut sim = Sim::new(self.protocol.clone(), config);
        if let Some(d) = drawn {
            sim.set_swarm(d.banner);
            for (t, a) in d.actions {
                sim.schedule(t, a);
            }
        }
        for &(a, b, patch) in &self.links {
            let p = patch.apply(*sim.world().network().params(a, b));
            sim.network_mut().set_link(a, b, p);
        }
        for (t, a) in &self.actions {
            sim.schedule(*t, a.clone());
        }
        for e in &self.expectations {
            sim.expect(e.clone());
        }
        // A stream of its own, so protocols without commands draw what they always did.
        let mut crng = Rng::from_seed(derive_seed(seed, COMMANDS_STREAM));
        for (t, node, cmd) in
            self.protocol
                .commands(self.nodes, Instant::ZERO + self.duration, &mut crng)
        {
            sim.schedule(t, Action::Command(node, cmd));
        }
        let mut rng = Rng::from_seed(derive_seed(seed, WORKLOAD_STREAM));
        let mut streams = BTreeMap::new();
        for (t, w) in self
            .protocol
            .workload(self.nodes, Instant::ZERO + self.duration, &mut rng)
        {
            match w {
                Workload::Open { node, client } => {
                    streams.insert(client, sim.open_client(t, node));
                }
                Workload::Send { client, data } => {
                    if let Some(&c) = streams.get(&client) {
                        sim.send_client(t, c, data);
                    }
                }
                Workload::Close { client } => {
                    if let Some(&c) = streams.get(&client) {
                        sim.close_client(t, c);
                    }
                }
            }
        }
        sim
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::heartbeat::HeartbeatProtocol;

    fn parse(text: &str) -> Result<Scenario<HeartbeatProtocol>, SexprError> {
        Scenario::parse(text, <HeartbeatProtocol>::default(), None)
    }

    #[test]
    fn reads_every_form() {
        let s = parse(
            r#"(:scenario all (:protocol heartbeat) (:nodes 3) (:duration 20s) (:seed 9)
                 (:network (:latency 2ms) (:jitter 3ms) (:loss 0.01) (:reorder-delay 5ms))
                 (:link n1 n2 (:latency 40ms))
                 (:heartbeat (:interval 100ms) (:timeout 600ms))
                 (:at 1s (:partition (n1) (n2 n3)) (:block n2 n3))
                 (:at 2s (:heal) (:unblock n2 n3) (:network (:loss 0.5)) (:link n3 n1 (:corrupt 1)))
                 (:at 3s (:crash n3) (:restart random) (:pause n2) (:resume n2))
                 (:at 0s (:skew n2 (:offset -50ms) (:drift 200)))
                 (:at 4s (:client-open n1 c) (:client-send c "hi\n") (:client-close c))
                 (:at 5s (:remove-peer n1 n2) (:add-peer n1 n2))
                 (:expect converged (:within 5s 8s))
                 (:expect converged (:always-from 15s)))"#,
        )
        .unwrap();
        assert_eq!((s.name.as_str(), s.nodes, s.seed), ("all", 3, 9));
        assert_eq!(s.network.latency, Duration::from_millis(2));
        assert_eq!(s.network.reorder_delay, Duration::from_millis(5));
        assert_eq!(s.protocol.interval(), Duration::from_millis(100));
        assert_eq!(s.actions.len(), 16);
        assert!(s.actions.contains(&(
            Instant::ZERO,
            Action::Skew {
                node: 1,
                offset: Some(-50_000_000),
                drift_ppm: Some(200)
            }
        )));
        assert_eq!(s.expectations.len(), 2);
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = parse("(:scenario x (:protocol heartbeat)\n  (:nodes 3) (:duration 5s)\n  (:at 1s (:crash n4)))")
            .unwrap_err();
        assert_eq!(e.to_string(), "3:19: expected a node name n1..n3, found n4");
        let e = parse("(:scenario x (:protocol heartbeat) (:nodes 3)\n (:duration 5s) (:at 1s (:heal))\n (:expect converged (:within 1s 2s)").unwrap_err();
        assert_eq!(e.to_string(), "3:2: list opened here is never closed");
        let e = parse("(:scenario x (:protocol heartbeat) (:nodes 3) (:duration 5s)\n (:expect nope (:within 1s 2s)))").unwrap_err();
        assert_eq!(
            e.to_string(),
            "2:11: unknown predicate 'nope' (protocol heartbeat has: converged)"
        );
        let e = parse(
            "(:scenario x (:protocol heartbeat) (:nodes 3) (:duration 5s)\n (:at 9s (:heal)))",
        )
        .unwrap_err();
        assert_eq!(e.pos.line, 2);
        let e = parse("(:scenario x (:protocol heartbeat) (:nodes 3) (:duration 5s)\n (:heartbeat (:timeout 10ms)))").unwrap_err();
        assert_eq!(e.pos.line, 2);
        let e = parse("(:scenario x (:protocol gossip) (:nodes 3) (:duration 5s))").unwrap_err();
        assert!(e.message.contains("protocol gossip"));
        let e =
            parse("(:scenario x (:protocol heartbeat) (:nodes 3) (:duration 5s) (:teleport n1))")
                .unwrap_err();
        assert!(e.message.contains("unknown form"));
    }
}
