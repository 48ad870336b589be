//! Service groups after a heal (SPEC.md §10.7), under the simulator: the `services-heal`
//! scenario, checked after every step by the groups plug-in (one port table per place,
//! each daemon's own checks, and what every agent hears on its stream).

use flotilla_sim::protocols::groups::GroupsProtocol;
use flotilla_sim::scenarios::builtin;
use flotilla_sim::{Scenario, sweep};

fn scenario(name: &str) -> Scenario<GroupsProtocol> {
    Scenario::parse(builtin(name).unwrap(), GroupsProtocol::default(), None).unwrap()
}

/// Both sides hand out the same ports, from a range too small for every service: after
/// the heal an agent whose service keeps its port hears no other, a loser moves once
/// with its barrier, and the services left without a port get the ones x1 and x2 free.
#[test]
fn services_heal_moves_only_losers_once_and_fills_freed_ports() {
    let scn = scenario("services-heal");
    let mut sim = scn.sim(1, false);
    sim.run();
    assert!(sim.report().passed(), "{}", sim.report());
    let ports: Vec<_> = (0..6)
        .filter_map(|i| sim.world().node(i).machine())
        .map(|m| m.b().services().ports())
        .collect();
    assert!(ports.iter().all(|p| *p == ports[0]), "{ports:?}");
    assert!(ports[0].contains_key("k"), "{ports:?}");
    let r = sweep(&scn, 0..40);
    assert!(r.passed(), "{r}");
}
