//! Two machines in one node (SPEC.md §1.3), end to end: a heartbeat and a ship side by
//! side in every node, under the simulator (with the pair's invariants after every step)
//! and under tokio on real sockets (the `pair` example, run as a user would).

use std::process::Command;
use std::time::Duration;

use flotilla_sim::protocols::pair::PairProtocol;
use flotilla_sim::scenarios::builtin;
use flotilla_sim::{Scenario, sweep};
use flotilla_tests::process::{LIMIT, example, wait_until};

#[test]
fn a_heartbeat_and_a_ship_share_every_node_in_the_simulator() {
    let scn = Scenario::parse(builtin("pair-heartbeat-ship").unwrap(), PairProtocol, None).unwrap();
    let r = sweep(&scn, 0..16);
    assert!(r.passed(), "{r}");
    // Both parts really ran: the client's set reached the ship, the heartbeat saw the cut.
    let mut sim = scn.sim_with(2, true, false);
    sim.run();
    let trace = sim.trace_text();
    assert!(trace.contains("n3 -> c1 \"200 version=1\\n\""), "{trace}");
    assert!(trace.contains("n3 event A(PeerDown"), "{trace}");
    assert!(trace.contains("n1 event B(ChildJoined"), "{trace}");
}

#[test]
fn a_heartbeat_and_a_ship_share_every_node_under_tokio() {
    let bin = example("flotilla-tokio", "pair");
    let mut child = Command::new(&bin)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the pair example");
    let status = wait_until(
        "the pair example to finish",
        LIMIT + Duration::from_secs(15),
        || child.try_wait().expect("wait"),
    );
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("reads mode=slow"), "{out}");
    assert!(out.contains(" down"), "{out}");
}
