//! Daemon membership under the simulator (SPEC.md §9). After every step the plug-in
//! checks that one view id names one member list and that each daemon's view ids only
//! grow (`flotilla_sim::protocols::membership`); the scenarios' expectations check
//! agreement inside connected components, one primary, and nobody reachable excluded.

use std::time::Duration;

use flotilla_sim::protocols::membership::MembershipProtocol;
use flotilla_sim::scenarios::builtin;
use flotilla_sim::{Scenario, sweep};

fn scenario(name: &str) -> Scenario<MembershipProtocol> {
    Scenario::parse(builtin(name).unwrap(), MembershipProtocol::default(), None).unwrap()
}

fn swept(name: &str, seeds: std::ops::Range<u64>) {
    let r = sweep(&scenario(name), seeds);
    assert!(r.passed(), "{r}");
}

/// One crash, a restart under the same name, the coordinator's crash, a majority's,
/// restarts found again by greetings. Every crash is out of every survivor's view within
/// 1 s of virtual time (the design bound), on every seed.
#[test]
fn crashes_of_one_the_coordinator_and_a_majority() {
    let scn = scenario("membership-crash");
    let mut worst_detection = Duration::ZERO;
    let mut worst_convergence = Duration::ZERO;
    let mut seen = 0;
    for seed in 0..20 {
        let mut sim = scn.sim(seed, false);
        sim.run();
        assert!(sim.report().passed(), "seed {seed}: {}", sim.report());
        let p = sim.protocol();
        seen += p.convergences().len();
        worst_detection = worst_detection.max(p.worst_detection().unwrap());
        worst_convergence = worst_convergence.max(p.worst_convergence().unwrap());
    }
    println!(
        "membership-crash, 20 seeds, {seen} crashes: worst detection {worst_detection:?}, \
         worst convergence {worst_convergence:?}"
    );
    assert!(seen >= 20 * 4, "{seen} crashes recorded");
    assert!(
        worst_convergence < Duration::from_secs(1),
        "{worst_convergence:?}"
    );
}

/// Two sides, a heal, three sides, a heal: one view per side, one primary, one merged
/// view after each heal.
///
/// The heals are where two coordinators merge the same daemons; the checker's "one view
/// at a time" (no member counted into two committed views) caught that on 53 of 300
/// seeds before acknowledgements were promises (TESTING.md).
#[test]
fn partitions_into_two_and_three_sides_then_heal() {
    swept("membership-partition", 0..20);
}

/// The merge race over many seeds: three thousand of the partition scenario and of the
/// swarm, every step checked for a member counted into two views. About two minutes of
/// CPU in a release build; on demand:
/// `cargo test --release -p flotilla-tests --test sim_membership -- --ignored`.
#[test]
#[ignore = "thousands of seeds: run on demand"]
fn no_member_is_counted_into_two_views_over_thousands_of_seeds() {
    swept("membership-partition", 0..3000);
    swept("membership-swarm", 0..3000);
}

/// A 2|3 split healed three times, links as TCP connections (`membership-heal`): one
/// merged view of all five within 1.5 s of the network returning, every time, on every
/// seed. Finding 7 of issue 16 (2.2–3.7 s with real processes), reproduced: what was
/// queued across the cut waits for the sender's backed-off retransmission, so the
/// second heal (after 3.3 s cut) did not merge even within 3.5 s on any of 50 seeds.
/// Fixed by the control lane's stall rule (SPEC §7.1, §6.3): the drivers give up a
/// control connection unanswered for 500 ms and dial afresh, so after a heal frames
/// cross one round trip after the next frame instead of at the backed-off
/// retransmission; merged within 0.07–1.16 s of each heal on seeds 0..50.
#[test]
fn a_healed_partition_merges_within_one_and_a_half_seconds() {
    swept("membership-heal", 0..50);
}

/// The same heals over datagram links (no retransmission backoff): the machine's part
/// of a merge (greeting, view request, proposal, commit) fits in 1.5 s on every seed.
#[test]
fn a_healed_partition_merges_within_one_and_a_half_seconds_over_datagrams() {
    let text = builtin("membership-heal").unwrap();
    let datagrams = text.replace("(:stream (:mbit 1000) (:queue 4096))", "");
    assert_ne!(
        datagrams, text,
        "membership-heal no longer runs over streams"
    );
    let scn = Scenario::parse(&datagrams, MembershipProtocol::default(), None).unwrap();
    let r = sweep(&scn, 0..50);
    assert!(r.passed(), "{r}");
}

/// `name` cut to `secs` seconds of simulated time.
fn shortened(name: &str, secs: u64) -> Scenario<MembershipProtocol> {
    let text = builtin(name)
        .unwrap()
        .replace("(:duration 60s)", &format!("(:duration {secs}s)"));
    assert_ne!(text, builtin(name).unwrap(), "{name} no longer lasts 60 s");
    Scenario::parse(&text, MembershipProtocol::default(), None).unwrap()
}

/// Uniform loss of one frame in ten: nobody reachable is ever excluded, over 250
/// seeds of 15 s each (a thousand full minutes: `loss_over_a_thousand_full_minutes`).
#[test]
fn ten_percent_loss_excludes_nobody() {
    let r = sweep(&shortened("membership-loss", 15), 0..250);
    assert!(r.passed(), "{r}");
}

/// Bursty loss averaging one frame in ten, 250 seeds of 15 s.
#[test]
fn bursty_loss_excludes_nobody() {
    let r = sweep(&shortened("membership-bursty", 15), 0..250);
    assert!(r.passed(), "{r}");
}

/// The scenarios as shipped (a minute of loss per seed), 1,000 seeds of each: about
/// seven minutes of CPU in a test build; run on demand:
/// `cargo test --release -p flotilla-tests --test sim_membership -- --ignored`, or
/// `flotilla sim membership-loss --seeds 0..1000` (and `membership-bursty`).
#[test]
#[ignore = "a thousand full minutes of each kind of loss: run on demand"]
fn loss_over_a_thousand_full_minutes() {
    swept("membership-loss", 0..1000);
    swept("membership-bursty", 0..1000);
}

/// A hundred daemons join through one at once: one agreed view of all of them.
#[test]
fn a_hundred_daemons_join_at_once() {
    swept("membership-join-storm", 0..2);
}

/// Reloads that remove a daemon, change timings and list it again; a leave that is out
/// at once.
#[test]
fn reload_adds_and_removes_daemons() {
    swept("membership-reload", 0..20);
}

/// Faults drawn per seed, then one agreed primary view.
#[test]
fn swarm_faults_end_in_one_view() {
    swept("membership-swarm", 0..30);
}

/// The planted bug (a member installs a proposal early, one member short) is caught on
/// every seed of a sweep, and the same scenario passes without it.
#[test]
fn the_canary_is_caught() {
    let text = builtin("membership-canary").unwrap();
    let canary = Scenario::parse(text, MembershipProtocol::canary(), None).unwrap();
    let r = sweep(&canary, 0..10);
    assert_eq!(r.failures.len(), 10, "{r}");
    // Installed early, before every member acknowledged: the agreement check sees a
    // member that never did, or the view shows up with two member lists.
    assert!(
        r.failures.iter().all(|f| {
            let f = f.to_string();
            f.contains("two member lists") || f.contains("never acknowledged it")
        }),
        "{r}"
    );
    let fixed = text.replace("(:protocol membership-canary)", "(:protocol membership)");
    let honest = Scenario::parse(&fixed, MembershipProtocol::default(), None).unwrap();
    let r = sweep(&honest, 0..10);
    assert!(r.passed(), "{r}");
}
