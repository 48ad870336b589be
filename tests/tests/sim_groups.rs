//! Client groups under the simulator (SPEC.md §10): membership and groups side by side
//! in every node. After every step the plug-in checks that one (view, number) names one
//! message, that each daemon delivers in increasing order and never twice, and that
//! daemons passing together from one view to the next delivered the same messages in it
//! (`flotilla_sim::protocols::groups`).

use flotilla_sim::protocols::groups::GroupsProtocol;
use flotilla_sim::scenarios::builtin;
use flotilla_sim::{Scenario, sweep};

fn scenario(name: &str) -> Scenario<GroupsProtocol> {
    Scenario::parse(builtin(name).unwrap(), GroupsProtocol::default(), None).unwrap()
}

fn swept(name: &str, seeds: std::ops::Range<u64>) {
    let r = sweep(&scenario(name), seeds);
    assert!(r.passed(), "{r}");
}

/// 10 % loss: every message delivered at every daemon, once, in one order.
#[test]
fn loss_delivers_everything_once_in_one_order() {
    let scn = scenario("groups-loss");
    let mut sim = scn.sim(1, false);
    sim.run();
    assert!(sim.report().passed(), "{}", sim.report());
    assert_eq!(sim.protocol().sent(), 300);
    assert_eq!(sim.protocol().deliveries(), 300 * 5);
    swept("groups-loss", 0..30);
}

/// A daemon and then the sequencer crash and restart while messages flow.
#[test]
fn crashes_keep_order_and_virtual_synchrony() {
    swept("groups-crash", 0..30);
}

/// Partitions into two and three sides, and heals.
#[test]
fn partitions_and_heals_deliver_nothing_twice() {
    swept("groups-partition", 0..30);
}

/// Faults drawn per seed, over a thousand seeds.
#[test]
fn swarm_faults_over_a_thousand_seeds() {
    swept("groups-swarm", 0..1000);
}

/// Harsh faults on seven daemons; seed 169 excluded a live daemon after the faults until
/// the coordinator began to trust its own recent heartbeats over silent probes.
#[test]
fn harsh_faults_exclude_nobody_alive() {
    swept("groups-heavy", 169..170);
    swept("groups-heavy", 0..40);
}

/// The planted bug (delivery past a gap) is caught on every seed, and the same scenario
/// passes without it.
#[test]
fn the_canary_is_caught() {
    let text = builtin("groups-canary").unwrap();
    let canary = Scenario::parse(text, GroupsProtocol::canary(), None).unwrap();
    let r = sweep(&canary, 0..10);
    assert_eq!(r.failures.len(), 10, "{r}");
    assert!(
        r.failures[0].to_string().contains("virtual synchrony"),
        "{r}"
    );
    let fixed = text.replace("(:protocol groups-canary)", "(:protocol groups)");
    let r = sweep(
        &Scenario::parse(&fixed, GroupsProtocol::default(), None).unwrap(),
        0..10,
    );
    assert!(r.passed(), "{r}");
}
