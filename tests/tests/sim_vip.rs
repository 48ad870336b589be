//! The VIP election under the simulator (SPEC.md §11.5): every node a group daemon with
//! its VIP agent. After every step the plug-in checks, against the addresses each node
//! really has, that no two nodes of one generation of the group hold one VIP, that two
//! of different components do so no longer than the grace (in `partition primary`), and
//! (where asked) that no address changes without cause
//! (`flotilla_sim::protocols::vip`).

use flotilla_sim::protocols::vip::VipProtocol;
use flotilla_sim::scenarios::builtin;
use flotilla_sim::{Scenario, sweep};

fn scenario(name: &str) -> Scenario<VipProtocol> {
    Scenario::parse(builtin(name).unwrap(), VipProtocol::default(), None).unwrap()
}

fn swept(name: &str, seeds: std::ops::Range<u64>) {
    let r = sweep(&scenario(name), seeds);
    assert!(r.passed(), "{r}");
}

/// Holders crash and restart: their VIPs go to the others within the detection time.
#[test]
fn a_crashed_holders_vips_move_to_the_others() {
    let scn = scenario("vip-crash");
    let mut sim = scn.sim(1, false);
    sim.run();
    assert!(sim.report().passed(), "{}", sim.report());
    // Three placed, then each crash moves what the crashed node held (the restarted
    // node's host came back without addresses): changes happened, and were checked.
    assert!(
        sim.protocol().changes() >= 5,
        "{}",
        sim.protocol().changes()
    );
    swept("vip-crash", 0..30);
}

/// A liveness bound in virtual time: with default timings a crashed holder's VIP is up
/// on a survivor within a second (issue 18's goal; a flush waiting 100 ms for a repeated
/// request broke it on half these seeds: planted bug 323).
#[test]
fn a_crashed_holders_vip_is_up_again_within_a_second() {
    swept("vip-failover", 0..60);
}

/// Only a majority holds VIPs; a minority drops its own within the grace.
#[test]
fn only_the_majority_holds_vips_across_partitions() {
    swept("vip-partition", 0..40);
}

/// Two nodes and a witness: either node's crash moves every VIP to the other.
#[test]
fn a_witness_lets_two_nodes_fail_over() {
    swept("vip-witness", 0..30);
    // Without the witness's vote the survivor is one of two: no VIP is held, and the
    // expectation that they are fails.
    let text = builtin("vip-witness").unwrap().replace("(:witness n3)", "");
    let two = text.replace("(:nodes 3)", "(:nodes 2)");
    let r = sweep(
        &Scenario::parse(&two, VipProtocol::default(), None).unwrap(),
        0..4,
    );
    assert_eq!(r.failures.len(), 4, "{r}");
    assert!(r.failures[0].to_string().contains("vips-held"), "{r}");
}

/// The application's moves, preferences and eligibility, with slow, failing and hanging
/// address changes: release before acquire throughout.
#[test]
fn moves_release_before_they_acquire() {
    swept("vip-moves", 0..60);
}

/// No move without cause: 10 % loss and client load, 100 seeds, no address change after
/// the VIPs are placed.
#[test]
fn no_vip_moves_under_loss_and_load() {
    swept("vip-loss", 0..100);
}

/// Faults drawn per seed.
#[test]
fn the_swarm_keeps_one_holder_per_vip() {
    swept("vip-swarm", 0..100);
}

/// The canary (a VIP granted before its release is in the order) is caught by the
/// one-holder check; the same scenario without the bug passes.
#[test]
fn the_canary_is_caught() {
    let text = builtin("vip-canary").unwrap();
    let canary = Scenario::parse(text, VipProtocol::canary(), None).unwrap();
    let r = sweep(&canary, 0..10);
    assert!(r.failures.len() >= 8, "{r}");
    assert!(
        r.failures[0]
            .to_string()
            .contains("acquired before the release"),
        "{r}"
    );
    let fixed = text.replace("(:protocol vip-canary)", "(:protocol vip)");
    let r = sweep(
        &Scenario::parse(&fixed, VipProtocol::default(), None).unwrap(),
        0..10,
    );
    assert!(r.passed(), "{r}");
}
