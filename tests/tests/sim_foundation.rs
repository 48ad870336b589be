//! The simulator's foundation, with small test machines (SPEC.md §6): the effect model
//! (latency, failures, hangs, loss on crash, held while paused), named nodes with many
//! ports, client listeners, machine invariants checked after every step, bursty loss, and
//! timelines.

use core::time::Duration;
use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_core::wire::{Frame, Kind};
use flotilla_core::{
    EffectError, EffectId, Input, InputOf, Instant, Machine, Outbox, Output, PeerAddr, Rng, Timers,
};
use flotilla_sim::protocol::ObservationOf;
use flotilla_sim::timeline::{MarkKind, SpanKind};
use flotilla_sim::world::World;
use flotilla_sim::{Observation, Protocol, Scenario};

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

/// Asks for an effect `Write(k)` every 100 ms, one at a time, and records each outcome.
/// Every 250 ms it sends a frame to port 2001 of the next node. Its invariant breaks if a
/// client writes `break`.
struct Tick {
    next: u64,
    inflight: Option<EffectId>,
    timers: Timers<u8>,
    out: Outbox<String, u64>,
    peer: PeerAddr,
    broken: bool,
}

impl Machine for Tick {
    type Command = ();
    type Event = String;
    type Error = Never;
    type Effect = u64;
    type EffectValue = u64;

    fn handle(&mut self, _now: Instant, input: InputOf<Self>) -> Result<(), Never> {
        match input {
            Input::EffectDone { id, outcome } => {
                assert_eq!(Some(id), self.inflight, "an outcome for what was asked");
                self.inflight = None;
                self.out.event(match outcome {
                    Ok(v) => format!("done {} -> {v}", id.0),
                    Err(EffectError::TimedOut(d)) => format!("timeout {} {d:?}", id.0),
                    Err(e) => format!("failed {}: {e}", id.0),
                });
            }
            Input::Frame { from, frame } => {
                self.out.event(format!("frame {} from {from}", frame.kind));
            }
            Input::ClientOpened { client, origin } => {
                self.out.event(format!("{client} on {}", origin.listener));
            }
            Input::ClientData(_, data) => self.broken |= &data[..] == b"break\n",
            _ => {}
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(k) = self.timers.pop_due(now) {
            match k {
                0 => {
                    if self.inflight.is_none() {
                        self.next += 1;
                        let id = EffectId(self.next);
                        self.inflight = Some(id);
                        self.out
                            .effect(id, self.next, Some(Duration::from_millis(500)));
                    }
                    self.timers.set(0, now + Duration::from_millis(100));
                }
                _ => {
                    let f = Frame::new(Kind(0x7E01), Bytes::from_static(b"hi"));
                    self.out.transmit(self.peer, f);
                    self.timers.set(1, now + Duration::from_millis(250));
                }
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output<String, u64>> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn check_invariants(&self) -> Result<(), String> {
        if self.broken {
            return Err("a client broke me".into());
        }
        Ok(())
    }
}

#[derive(Clone, Default)]
struct TickProtocol {
    /// What each node's "disk" holds: effects carried out, which survive crashes.
    done: BTreeMap<usize, Vec<u64>>,
    events: Vec<(Instant, usize, String)>,
    outcomes: u64,
}

impl Protocol for TickProtocol {
    type Machine = Tick;

    fn name(&self) -> &'static str {
        "tick"
    }

    fn port(&self, _node: usize) -> u16 {
        2001
    }

    fn build(&mut self, node: &flotilla_sim::NodeSpec<'_>, _rng: Rng, now: Instant) -> Tick {
        let mut timers = Timers::default();
        timers.set(0, now);
        timers.set(1, now);
        let next = (node.index + 1) % node.addrs.len();
        Tick {
            next: 0,
            inflight: None,
            timers,
            out: Outbox::default(),
            peer: node.addrs[next],
            broken: false,
        }
    }

    fn effect(&mut self, _w: &World<Tick>, node: usize, effect: &u64) -> Result<u64, EffectError> {
        self.done.entry(node).or_default().push(*effect);
        Ok(effect * 2)
    }

    fn observe(&mut self, world: &World<Tick>, obs: ObservationOf<'_, Self>) {
        match obs {
            Observation::Event { node, event } => {
                self.events.push((world.now(), node, event.clone()));
            }
            Observation::EffectDone { .. } => self.outcomes += 1,
            _ => {}
        }
    }

    fn predicate(&self, _name: &str, _world: &World<Tick>) -> bool {
        true
    }
}

fn tick(text: &str) -> Scenario<TickProtocol> {
    Scenario::parse(text, TickProtocol::default(), None).unwrap()
}

/// Effects take their drawn latency, are carried out by the plug-in, and their outcomes
/// reach the machine; failures and hangs come back typed.
#[test]
fn effects_have_latency_failures_and_hangs() {
    let scn = tick(
        "(:scenario fx (:protocol tick) (:nodes 2) (:duration 20s)
           (:effects (:latency 30ms) (:jitter 10ms) (:fail 0.2) (:hang 0.1)))",
    );
    let mut sim = scn.sim(4, false);
    sim.run();
    assert!(sim.report().passed(), "{}", sim.report());
    let p = sim.protocol();
    let evs: Vec<&str> = p.events.iter().map(|(_, _, e)| e.as_str()).collect();
    let done = evs.iter().filter(|e| e.starts_with("done")).count();
    let failed = evs.iter().filter(|e| e.starts_with("failed")).count();
    let timeouts = evs.iter().filter(|e| e.starts_with("timeout")).count();
    assert!(
        done > 50 && failed > 5 && timeouts > 2,
        "{done} {failed} {timeouts}"
    );
    assert!(
        evs.iter()
            .filter(|e| e.starts_with("timeout"))
            .all(|e| e.ends_with(" 500ms"))
    );
    assert!(
        evs.iter()
            .filter(|e| e.starts_with("failed"))
            .all(|e| e.ends_with(": simulated failure"))
    );
    // The plug-in carried out exactly the effects that came back done, and its answer
    // (twice the effect) reached the machine.
    let carried: usize = p.done.values().map(Vec::len).sum();
    assert_eq!(carried, done);
    assert!(evs.contains(&"done 1 -> 2"), "{evs:?}");
    let st = sim.stats();
    assert_eq!(st.effects_failed as usize, failed + timeouts, "{st:?}");
    assert_eq!(st.effects_lost, 0);
}

/// An effect in flight when its node crashes is lost: no outcome arrives, not even after
/// the restart, and nothing is carried out.
#[test]
fn a_crash_loses_the_effects_in_flight() {
    // One effect every 100 ms taking 90 ms: at 10.05 s one is in flight.
    let scn = tick(
        "(:scenario fx (:protocol tick) (:nodes 1) (:duration 12s)
           (:effects (:latency 90ms))
           (:at 10050ms (:crash n1))
           (:at 11s (:restart n1)))",
    );
    let mut sim = scn.sim(1, false);
    sim.run();
    let st = sim.stats().clone();
    assert_eq!(st.effects_lost, 1, "{st:?}");
    let p = sim.protocol();
    // Every effect asked for either came back or was lost (the last may still be out).
    assert!(st.effects - p.outcomes - st.effects_lost <= 1, "{st:?}");
    assert!(
        !p.done[&0].contains(&101),
        "the lost effect was not carried out"
    );
    assert!(p.done[&0].contains(&100));
}

/// A paused node's effect outcomes wait until it resumes, like its frames.
#[test]
fn effect_outcomes_wait_for_a_paused_node() {
    // Effect 11 is asked at 1.0 s and would finish at 1.05 s; the node is paused at
    // 1.02 s and resumed at 2 s.
    let scn = tick(
        "(:scenario fx (:protocol tick) (:nodes 1) (:duration 3s)
           (:effects (:latency 50ms))
           (:at 1020ms (:pause n1))
           (:at 2s (:resume n1)))",
    );
    let mut sim = scn.sim(1, false);
    sim.run();
    let evs = &sim.protocol().events;
    let at = |text: &str| evs.iter().find(|(_, _, e)| e == text).map(|(t, _, _)| *t);
    assert_eq!(at("done 10 -> 20"), Some(Instant::from_millis(950)));
    assert_eq!(at("done 11 -> 22"), Some(Instant::from_secs(2)), "{evs:?}");
    assert!(sim.stats().held > 0);
}

/// Nodes may be named; every port of a node's address reaches it, and a node is known by
/// the port its protocol gives (here 2001); clients come in on the listener the scenario
/// names.
#[test]
fn named_nodes_many_ports_and_listeners() {
    let scn = tick(
        "(:scenario names (:protocol tick) (:nodes master inferno) (:duration 2s)
           (:at 1s (:client-open inferno c 3) (:crash master)))",
    );
    let mut sim = scn.sim_with(1, true, false);
    sim.run();
    let trace = sim.trace_text();
    assert!(trace.contains("inferno <- master frame 0x7e01"), "{trace}");
    assert!(trace.contains("-- crash master"), "{trace}");
    let evs = &sim.protocol().events;
    assert!(
        evs.iter()
            .any(|(_, n, e)| *n == 1 && e == "frame 0x7e01 from 10.0.0.1:2001"),
        "{evs:?}"
    );
    assert!(
        evs.iter()
            .any(|(_, n, e)| *n == 1 && e == "c1 on listener 3"),
        "{evs:?}"
    );
    assert_eq!(sim.world().name(0), "master");
    assert_eq!(sim.world().index_of("inferno"), Some(1));
    // A name that looks like nK is refused, with its position.
    let e = Scenario::parse(
        "(:scenario x (:protocol tick) (:nodes a n2) (:duration 1s))",
        TickProtocol::default(),
        None,
    )
    .unwrap_err();
    assert!(e.message.contains("reserved"), "{e}");
}

/// The simulator runs every machine's own `check_invariants` after every step: a machine
/// that breaks its own consistency fails the run at that step, naming the node, even when
/// the protocol's checks see nothing wrong.
#[test]
fn a_machine_that_breaks_its_own_invariants_fails_the_run() {
    let scn = tick(
        "(:scenario inv (:protocol tick) (:nodes 2) (:duration 3s)
           (:at 1500ms (:client-open n2 c) (:client-send c \"break\\n\")))",
    );
    let r = scn.sim(1, false).run_to_report();
    let f = r.first_failure().expect("the broken machine is caught");
    assert_eq!(f.check, "invariants");
    assert_eq!(f.at, Instant::from_millis(1500));
    assert_eq!(f.message, "n2: a client broke me");
}

/// Bursty loss is a link setting in scenario files too, and it loses frames in runs.
#[test]
fn bursty_loss_from_a_scenario_file() {
    let scn = tick(
        "(:scenario burst (:protocol tick) (:nodes 2) (:duration 60s)
           (:network (:burst-enter 0.05) (:burst-exit 0.3) (:burst-loss 1)))",
    );
    let r = scn.sim(2, false).run_to_report();
    assert!(
        r.net.burst_lost > 0 && r.net.lost == r.net.burst_lost,
        "{:?}",
        r.net
    );
    let e = Scenario::parse(
        "(:scenario x (:protocol tick) (:nodes 1) (:duration 1s) (:network (:burst-enter 2)))",
        TickProtocol::default(),
        None,
    )
    .unwrap_err();
    assert!(e.message.contains("between 0 and 1"), "{e}");
}

/// A recorded timeline holds what happened: every frame (delivered or dropped), the crash
/// as a span, the partition as a cut, and the verdicts; it draws as SVG.
#[test]
fn a_timeline_records_frames_faults_and_verdicts() {
    let scn = tick(
        "(:scenario draw (:protocol tick) (:nodes 3) (:duration 4s)
           (:at 1s (:partition (n1) (n2 n3)))
           (:at 2s (:heal) (:crash n3))
           (:at 3s (:restart n3)))",
    );
    let mut sim = scn.sim_with(5, false, true);
    sim.run();
    let t = sim.timeline().expect("recorded");
    let sent = sim.world().network().stats().sent;
    assert_eq!(
        t.messages.len() as u64 + t.messages_omitted,
        sent + sim.world().network().stats().duplicated
    );
    assert!(
        t.messages
            .iter()
            .any(|m| m.dropped.as_deref() == Some("partition"))
    );
    assert!(
        t.messages
            .iter()
            .any(|m| m.dropped.is_none() && m.arrived.is_some())
    );
    assert_eq!(t.cuts.len(), 1);
    assert_eq!(t.cuts[0].from, Instant::from_secs(1));
    assert_eq!(t.cuts[0].to, Some(Instant::from_secs(2)));
    let crash = t
        .spans
        .iter()
        .find(|s| s.kind == SpanKind::Crashed)
        .expect("a crash span");
    assert_eq!(
        (crash.node, crash.from, crash.to),
        (2, Instant::from_secs(2), Some(Instant::from_secs(3)))
    );
    assert!(
        t.marks
            .iter()
            .any(|m| m.kind == MarkKind::Pass && m.text.contains("invariants"))
    );
    assert!(t.marks.iter().any(|m| m.kind == MarkKind::Effect));
    let svg = flotilla_sim::svg::render_svg(&t);
    assert!(svg.starts_with("<svg"));
    assert_eq!(svg.matches("class=\"msg").count(), t.messages.len());
    // Not recorded unless asked for.
    assert!(scn.sim(5, false).timeline().is_none());
}
