//! The simulator with machines other than heartbeat: client streams (the line-protocol
//! port the next protocols need), unknown destinations, and the timer-progress contract.

use core::fmt;

use bytes::Bytes;
use flotilla_core::wire::{Frame, Kind};
use flotilla_core::{Input, InputOf, Instant, Machine, NoEffect, Outbox, Output, PeerAddr, Rng};
use flotilla_sim::world::{ClientEnd, World};
use flotilla_sim::{Action, NodeSpec, Outcome, Protocol, Sim, SimConfig, Target};

#[derive(Debug)]
struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

/// Greets each client, echoes its lines in upper case, closes on `bye`, and on `ping`
/// sends a frame to every peer (and one to an address that is no node).
struct Greeter {
    peers: Vec<PeerAddr>,
    out: Outbox<String>,
}

const KIND_PING: Kind = Kind(0x7F01);

impl Machine for Greeter {
    type Command = ();
    type Event = String;
    type Error = Never;
    type Effect = NoEffect;
    type EffectValue = NoEffect;

    fn handle(&mut self, _now: Instant, input: InputOf<Self>) -> Result<(), Never> {
        match input {
            Input::ClientOpened { client: c, .. } => {
                self.out.to_client(c, Bytes::from_static(b"hello\n"))
            }
            Input::ClientData(c, data) => match &data[..] {
                b"bye\n" => self.out.close_client(c),
                b"ping\n" => {
                    for p in &self.peers {
                        self.out
                            .transmit(*p, Frame::new(KIND_PING, Bytes::from_static(b"!")));
                    }
                    let nowhere = PeerAddr::from(([192, 0, 2, 1], 7000));
                    self.out
                        .transmit(nowhere, Frame::new(KIND_PING, Bytes::new()));
                }
                _ => self
                    .out
                    .to_client(c, Bytes::from(data.to_ascii_uppercase())),
            },
            Input::ClientClosed(c) => self.out.event(format!("{c} closed")),
            Input::Frame { from, frame } => self.out.event(format!("{} from {from}", frame.kind)),
            Input::Command(()) | Input::EffectDone { .. } => {}
        }
        Ok(())
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Option<Output<String>> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn check_invariants(&self) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Clone, Default)]
struct GreeterProtocol {
    pings: Vec<(usize, String)>,
}

impl Protocol for GreeterProtocol {
    type Machine = Greeter;

    fn name(&self) -> &'static str {
        "greeter"
    }

    fn build(&mut self, node: &NodeSpec<'_>, _rng: Rng, _now: Instant) -> Greeter {
        Greeter {
            peers: node
                .addrs
                .iter()
                .copied()
                .filter(|a| *a != node.addr)
                .collect(),
            out: Outbox::default(),
        }
    }

    fn observe(
        &mut self,
        _world: &World<Greeter>,
        obs: flotilla_sim::Observation<'_, (), String, NoEffect>,
    ) {
        if let flotilla_sim::Observation::Event { node, event } = obs {
            self.pings.push((node, event.clone()));
        }
    }

    fn predicate(&self, _name: &str, _world: &World<Greeter>) -> bool {
        true
    }
}

fn greeter_sim(nodes: usize) -> Sim<GreeterProtocol> {
    Sim::new(
        GreeterProtocol::default(),
        SimConfig {
            nodes,
            seed: 1,
            end: Instant::from_secs(10),
            ..SimConfig::default()
        },
    )
}

fn ms(m: u64) -> Instant {
    Instant::from_millis(m)
}

#[test]
fn client_streams_carry_bytes_both_ways_and_outputs_are_captured() {
    let mut s = greeter_sim(2);
    let c = s.open_client(ms(1000), 0);
    s.send_client(ms(2000), c, "abc\n");
    s.send_client(ms(2500), c, "ping\n");
    s.send_client(ms(3000), c, "bye\n");
    s.send_client(ms(4000), c, "too late\n");
    let other = s.open_client(ms(1000), 1);
    assert_ne!(c, other);
    s.close_client(ms(1500), other);
    s.run();
    let rec = &s.world().clients()[&c];
    assert_eq!(rec.received_bytes(), b"hello\nABC\n");
    assert_eq!(rec.ended, Some((ms(3000), ClientEnd::ByMachine)));
    assert_eq!(
        s.world().clients()[&other].ended,
        Some((ms(1500), ClientEnd::ByClient))
    );
    assert_eq!(s.stats().client_dropped, 1);
    // The ping reached n2; the frame to 192.0.2.1 was dropped and counted.
    assert_eq!(s.stats().unknown_destination, 1);
    let p = s.protocol();
    assert!(
        p.pings
            .contains(&(1, "0x7f01 from 10.0.0.1:7000".to_string()))
    );
    assert!(p.pings.contains(&(1, "c2 closed".to_string())));
    assert!(s.report().passed());
}

#[test]
fn a_crash_closes_the_nodes_client_streams() {
    let mut s = greeter_sim(2);
    let c = s.open_client(ms(1000), 1);
    s.schedule(ms(2000), Action::Crash(Target::Node(1)));
    s.send_client(ms(3000), c, "anyone?\n");
    let refused = s.open_client(ms(3500), 1);
    s.run();
    assert_eq!(
        s.world().clients()[&c].ended,
        Some((ms(2000), ClientEnd::NodeCrashed))
    );
    assert_eq!(
        s.world().clients()[&refused].ended,
        Some((ms(3500), ClientEnd::Refused))
    );
    assert_eq!(s.stats().client_dropped, 1);
}

#[test]
fn client_input_to_a_paused_node_waits_for_the_resume() {
    let mut s = greeter_sim(3);
    s.schedule(ms(500), Action::Pause(Target::Node(2)));
    let c = s.open_client(ms(1000), 2);
    s.send_client(ms(1100), c, "x\n");
    s.schedule(ms(2000), Action::Resume(Target::Node(2)));
    s.run_until(ms(1500));
    assert!(!s.world().clients().contains_key(&c));
    s.run_until(ms(2000));
    assert_eq!(s.world().clients()[&c].received_bytes(), b"hello\nX\n");
}

/// Breaks the timer contract: after `handle_timeout` it still asks for the same instant.
struct Spin;

impl Machine for Spin {
    type Command = ();
    type Event = ();
    type Error = Never;
    type Effect = NoEffect;
    type EffectValue = NoEffect;

    fn handle(&mut self, _now: Instant, _input: InputOf<Self>) -> Result<(), Never> {
        Ok(())
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Option<Output<()>> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(Instant::from_millis(500))
    }

    fn check_invariants(&self) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Clone)]
struct SpinProtocol;

impl Protocol for SpinProtocol {
    type Machine = Spin;

    fn name(&self) -> &'static str {
        "spin"
    }

    fn build(&mut self, _node: &NodeSpec<'_>, _rng: Rng, _now: Instant) -> Spin {
        Spin
    }

    fn predicate(&self, _name: &str, _world: &World<Spin>) -> bool {
        true
    }
}

#[test]
fn timer_progress_violations_name_the_node_and_time() {
    let mut s = Sim::new(
        SpinProtocol,
        SimConfig {
            nodes: 2,
            seed: 42,
            ..SimConfig::default()
        },
    );
    let events = s.run();
    assert!(events < 10, "the simulator must not spin ({events} events)");
    let r = s.report();
    let f = r.first_failure().unwrap();
    assert_eq!(f.check, "timer-progress");
    assert_eq!(f.at, ms(500));
    assert!(
        f.message.starts_with("n1: after handle_timeout(0.500000s)"),
        "{f}"
    );
    assert!(f.to_string().contains("seed 42"));
    assert_eq!(f.replay, "flotilla sim custom --seed 42 --trace");
    assert!(matches!(r.verdicts[1].outcome, Outcome::Pass(_)));
}
