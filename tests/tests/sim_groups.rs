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

/// Issue 16, finding 1: 900 clients join one group on three daemons whose loops take
/// time per input and per notice. Served in the drivers' order (control lane first) no
/// daemon leaves the view; served in arrival order — the drivers before lanes — every
/// seed excludes some daemon, so the simulator catches that starvation.
#[test]
fn a_join_storm_excludes_nobody_when_membership_goes_first() {
    swept("groups-join-storm", 0..4);
    let r = sweep(&scenario("groups-join-storm-fifo"), 0..4);
    assert_eq!(
        r.failing_seeds(),
        [0, 1, 2, 3],
        "arrival order must starve membership: {r}"
    );
    assert!(r.failures[0].to_string().contains("all-in"), "{r}");
}

/// Issue 16, finding 2: 10 % loss over TCP streams turns into delay, not loss; paced
/// repeats keep resends under 1 per message and every message is delivered. One seed
/// here (25 s in a debug build); the sweep below is on demand.
#[test]
fn stream_loss_is_delay_and_repeats_stay_paced() {
    swept("groups-stream-loss", 0..1);
}

/// The same over 20 seeds (`cargo test --release -p flotilla-tests --test sim_groups --
/// --ignored`, or `flotilla sim groups-stream-loss --seeds 0..20`).
#[test]
#[ignore = "a 20-seed sweep: minutes in a debug build; run on demand"]
fn stream_loss_sweep() {
    swept("groups-stream-loss", 0..20);
}

/// Issue 16: one daemon of five cut off for 3.3 s and for 2.5 s under 20 % loss: every
/// flush finishes within 2 s of its daemon learning the view. With the kernel's TCP
/// alone — data connections riding out the cut at their backed-off retransmission, a
/// lost SYN tried again after 1 s — flushes waited up to 3 s after a heal, as real
/// processes did (BENCHMARKS.md), and the simulator catches it.
#[test]
fn flushes_finish_promptly_after_a_cut_under_twenty_percent_loss() {
    swept("groups-cut-flush", 0..4);
    let with_fix = builtin("groups-cut-flush").unwrap();
    let kernel_alone = with_fix.replace(
        "(:queue 4096))",
        "(:queue 4096) (:data-stall 120s) (:syn-retry 1s))",
    );
    assert_ne!(
        kernel_alone, with_fix,
        "the scenario's stream settings moved"
    );
    let scn = Scenario::parse(&kernel_alone, GroupsProtocol::default(), None).unwrap();
    let r = sweep(&scn, 0..8);
    // Seeds 3, 4, 6 and 7 failed before members told the sequencer their state at once
    // (issue 18); 4 and 6 still do: the kernel's waits alone are longer than the bound.
    assert!(r.failing_seeds().len() >= 2, "{r}");
    assert!(
        r.failures
            .iter()
            .all(|f| f.to_string().contains("flushes-prompt")),
        "{r}"
    );
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

/// Faults drawn per seed (messages only; the thousand-seed sweep is services-swarm,
/// which carries messages too).
#[test]
fn swarm_faults() {
    swept("groups-swarm", 0..200);
}

/// Messages and service groups under faults drawn per seed, over a thousand seeds, with
/// agents binding, saying done and disconnecting: daemons that delivered the same items
/// hold the same port table at every step; after the faults every service has its port
/// and every recovery barrier finished.
///
/// Seeds 149 and 611 once brought a disconnected agent back: the table a flush installs
/// was built from what each daemon said of its own clients before the flush's fills were
/// delivered, so a leave in the fill was undone. It is now built as of after the fills.
///
/// In `cargo test`: those seeds, seed 928 (unsettled 6 s after the faults while repeats
/// backed off to 3.2 s), and 150 more; the thousand on demand (`-- --ignored`).
#[test]
fn services_and_messages_under_swarm_faults() {
    swept("services-swarm", 149..150);
    swept("services-swarm", 611..612);
    swept("services-swarm", 928..929);
    swept("services-swarm", 0..150);
}

/// The thousand-seed sweep of `services-swarm` (minutes in a test build).
#[test]
#[ignore = "a thousand seeds: run on demand"]
fn services_and_messages_under_swarm_faults_over_a_thousand_seeds() {
    swept("services-swarm", 0..1000);
}

/// Both sides of a partition hand out ports; after the heal, one table, one service per
/// port, and every barrier finished.
#[test]
fn services_bound_on_both_sides_of_a_partition_agree_after_the_heal() {
    let scn = scenario("services-partition");
    let mut sim = scn.sim(3, false);
    sim.run();
    assert!(sim.report().passed(), "{}", sim.report());
    let ports: Vec<_> = (0..6)
        .filter_map(|i| sim.world().node(i).machine())
        .map(|m| m.b().services().ports())
        .collect();
    assert!(!ports[0].is_empty(), "services were bound");
    assert!(ports.iter().all(|p| *p == ports[0]), "{ports:?}");
    swept("services-partition", 0..40);
}

/// The planted bug (a conflict after a heal decided by each daemon for its own agent)
/// is caught by the port-table check on some seeds, and the same runs pass without it.
#[test]
fn the_services_canary_is_caught() {
    let text = builtin("services-canary").unwrap();
    let canary = Scenario::parse(text, GroupsProtocol::canary_ports(), None).unwrap();
    let r = sweep(&canary, 0..20);
    assert!(!r.failures.is_empty(), "{r}");
    assert!(
        r.failures[0].to_string().contains("port tables differ"),
        "{r}"
    );
    let fixed = text.replace("(:protocol services-canary)", "(:protocol groups)");
    let r = sweep(
        &Scenario::parse(&fixed, GroupsProtocol::default(), None).unwrap(),
        0..20,
    );
    assert!(r.passed(), "{r}");
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

/// FIFO-mode messages under 10 % loss: every message delivered at every daemon, once,
/// each origin's in the order it sent them (the plug-in checks order after every step).
#[test]
fn fifo_messages_under_loss_are_delivered_once_in_each_senders_order() {
    let scn = scenario("groups-fifo-loss");
    let mut sim = scn.sim(1, false);
    sim.run();
    assert!(sim.report().passed(), "{}", sim.report());
    assert_eq!(sim.protocol().sent(), 300);
    assert_eq!(sim.protocol().deliveries(), 300 * 5);
    swept("groups-fifo-loss", 0..20);
}

/// Agreed and FIFO messages mixed while a daemon and the sequencer crash and the
/// daemons split and heal: FIFO order, nothing twice, virtual synchrony over both kinds.
#[test]
fn fifo_and_agreed_messages_keep_virtual_synchrony_through_crashes_and_a_partition() {
    swept("groups-fifo", 0..40);
}

/// The planted bug (delivery past a gap) with FIFO-mode messages only: caught by the
/// FIFO checks on some seeds, and the same runs pass without it.
#[test]
fn the_fifo_canary_is_caught() {
    let text = builtin("groups-fifo-canary").unwrap();
    let canary = Scenario::parse(text, GroupsProtocol::canary(), None).unwrap();
    let r = sweep(&canary, 0..10);
    assert!(r.failures.len() >= 5, "{r}");
    assert!(r.failures[0].to_string().contains("FIFO"), "{r}");
    let fixed = text.replace("(:protocol groups-canary)", "(:protocol groups)");
    let r = sweep(
        &Scenario::parse(&fixed, GroupsProtocol::default(), None).unwrap(),
        0..10,
    );
    assert!(r.passed(), "{r}");
}
