//! The heartbeat protocol under the deterministic simulator: partitions, crashes, pauses,
//! clock skew, the network model end to end, determinism, and the canary that proves a
//! seed sweep catches a planted bug.

use core::time::Duration;

use flotilla_core::Instant;
use flotilla_core::heartbeat::{Heartbeat, HeartbeatEvent};
use flotilla_sim::canary::CanaryProtocol;
use flotilla_sim::protocols::heartbeat::HeartbeatProtocol;
use flotilla_sim::scenarios::builtin;
use flotilla_sim::world::node_addr;
use flotilla_sim::{
    Action, Expectation, LinkParams, Outcome, Scenario, Sim, SimConfig, Status, Target, Window,
    sweep,
};

fn partition_scenario() -> Scenario<HeartbeatProtocol> {
    Scenario::parse(
        builtin("heartbeat-partition").unwrap(),
        <HeartbeatProtocol>::default(),
        None,
    )
    .unwrap()
}

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

fn ms(m: u64) -> Instant {
    Instant::from_millis(m)
}

fn sim(nodes: usize, seed: u64, end: Instant) -> Sim<HeartbeatProtocol> {
    Sim::new(
        <HeartbeatProtocol>::default(),
        SimConfig {
            nodes,
            seed,
            end,
            ..SimConfig::default()
        },
    )
}

fn up(s: &Sim<HeartbeatProtocol>, viewer: usize, peer: usize) -> bool {
    s.machine(viewer).unwrap().is_up(node_addr(peer))
}

/// Events `node` emitted within `[from, to]`.
fn events_of(
    s: &Sim<HeartbeatProtocol>,
    node: usize,
    from: Instant,
    to: Instant,
) -> Vec<HeartbeatEvent> {
    s.protocol()
        .events()
        .iter()
        .filter(|(t, n, _)| *n == node && *t >= from && *t <= to)
        .map(|(_, _, e)| e.clone())
        .collect()
}

#[test]
fn partition_is_detected_and_healed_on_a_fixed_seed() {
    let mut s = partition_scenario().sim(7, false);
    s.run_until(ms(4900));
    assert!((0..3).all(|i| (0..3).all(|j| i == j || up(&s, i, j))));
    s.run_until(ms(6500));
    // n1 is alone: it sees nobody and nobody sees it; n2 and n3 still see each other.
    assert!(!up(&s, 0, 1) && !up(&s, 0, 2));
    assert!(!up(&s, 1, 0) && !up(&s, 2, 0));
    assert!(up(&s, 1, 2) && up(&s, 2, 1));
    let downs = events_of(&s, 0, secs(5), ms(6500));
    assert!(downs.contains(&HeartbeatEvent::PeerDown { peer: node_addr(1) }));
    s.run_until(secs(16));
    assert!((0..3).all(|i| (0..3).all(|j| i == j || up(&s, i, j))));
    s.run();
    let report = s.report();
    assert!(report.passed(), "{report}");
    assert_eq!(report.verdicts.len(), 6);
}

#[test]
fn partition_scenario_passes_a_sweep_of_32_seeds() {
    let r = sweep(&partition_scenario(), 0..32);
    assert!(r.passed(), "{r}");
    assert!(r.events > 32 * 1000);
}

#[test]
fn same_seed_same_trace_hash_and_different_seed_differs() {
    let scn = partition_scenario();
    let a = scn.sim(11, false).run_to_report();
    let b = scn.sim(11, false).run_to_report();
    let c = scn.sim(12, false).run_to_report();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.stats, b.stats);
    assert_ne!(a.trace_hash, c.trace_hash);
    // Tracing text on or off changes nothing about the run.
    let mut traced = scn.sim(11, true);
    traced.run();
    assert_eq!(traced.trace_hash(), a.trace_hash);
    let mut again = scn.sim(11, true);
    again.run();
    assert_eq!(traced.trace_text(), again.trace_text());
    assert!(traced.trace_text().contains("-- heal"));
}

#[test]
fn canary_is_caught_by_a_sweep_and_the_real_heartbeat_passes_it() {
    let text = builtin("heartbeat-canary").unwrap();
    let canary = Scenario::parse(text, CanaryProtocol::default(), None).unwrap();
    let broken = sweep(&canary, 0..32);
    assert!(
        !broken.passed(),
        "the planted bug went unnoticed:\n{broken}"
    );
    let first = &broken.failures[0];
    assert_eq!(
        first.replay,
        format!(
            "flotilla sim heartbeat-canary --seed {} --trace",
            first.seed
        )
    );
    assert!(
        first
            .to_string()
            .contains(&format!("(seed {})", first.seed))
    );
    // Duplication is random: not every seed exposes the bug.
    assert!(broken.failures.len() < 32, "{broken}");

    let fixed_text = text.replace("(:protocol heartbeat-canary)", "(:protocol heartbeat)");
    let fixed = Scenario::parse(&fixed_text, <HeartbeatProtocol>::default(), None).unwrap();
    let r = sweep(&fixed, 0..32);
    assert!(r.passed(), "{r}");
}

#[test]
fn crash_drops_state_and_restart_comes_back_as_a_new_incarnation() {
    let mut s = sim(3, 5, secs(10));
    s.schedule(secs(2), Action::Crash(Target::Node(2)));
    s.schedule(secs(5), Action::Restart(Target::Node(2)));
    s.expect(Expectation {
        predicate: "converged".into(),
        window: Window::Within(secs(2), ms(3500)),
    });
    s.expect(Expectation {
        predicate: "converged".into(),
        window: Window::Within(secs(5), ms(5500)),
    });
    s.run_until(ms(1900));
    let first_life = s.machine(2).unwrap().incarnation();
    s.run_until(secs(4));
    assert!(s.machine(2).is_none());
    assert_eq!(s.world().node(2).status(), Status::Crashed);
    assert!(!up(&s, 0, 2) && !up(&s, 1, 2));
    // Beats sent to the dead node are dropped on arrival.
    assert!(s.stats().dropped_crashed > 0);
    s.run_until(secs(6));
    assert_eq!(s.world().node(2).incarnation(), 1);
    let second_life = s.machine(2).unwrap().incarnation();
    assert_ne!(first_life, second_life);
    assert!(up(&s, 0, 2) && up(&s, 1, 2));
    assert!(
        events_of(&s, 0, secs(5), secs(6)).contains(&HeartbeatEvent::PeerUp {
            peer: node_addr(2),
            incarnation: second_life
        })
    );
    s.run();
    let r = s.report();
    assert!(r.passed(), "{r}");
}

#[test]
fn restart_seed_depends_only_on_master_node_and_incarnation() {
    // Adding a fourth node must not change node 0's machine randomness.
    let mut three = sim(3, 9, secs(1));
    let mut four = sim(4, 9, secs(1));
    three.run();
    four.run();
    assert_eq!(
        three.machine(0).unwrap().incarnation(),
        four.machine(0).unwrap().incarnation()
    );
}

#[test]
fn paused_node_holds_its_events_and_catches_up_on_resume() {
    let mut s = sim(3, 3, secs(10));
    s.schedule(secs(2), Action::Pause(Target::Node(1)));
    s.schedule(secs(5), Action::Resume(Target::Node(1)));
    s.expect(Expectation {
        predicate: "converged".into(),
        window: Window::Within(secs(2), ms(3500)),
    });
    s.expect(Expectation {
        predicate: "converged".into(),
        window: Window::Within(secs(5), ms(5500)),
    });
    s.run_until(ms(4500));
    assert_eq!(s.world().node(1).status(), Status::Paused);
    // The others gave up on n2; n2's own view is frozen as it was.
    assert!(!up(&s, 0, 1) && !up(&s, 2, 1));
    assert!(up(&s, 1, 0) && up(&s, 1, 2));
    assert!(s.stats().held > 0);
    let sent_while_paused = s.machine(1).unwrap().stats().sent;
    s.run_until(ms(5500));
    assert!(up(&s, 0, 1) && up(&s, 2, 1));
    assert!(s.machine(1).unwrap().stats().sent > sent_while_paused);
    s.run();
    // The held beats were delivered before n2's overdue timers ran, so it never
    // declared anyone down.
    assert!(
        events_of(&s, 1, Instant::ZERO, secs(10))
            .iter()
            .all(|e| !matches!(e, HeartbeatEvent::PeerDown { .. }))
    );
    let r = s.report();
    assert!(r.passed(), "{r}");
}

#[test]
fn machines_run_on_their_own_skewed_clocks() {
    let mut s = sim(3, 4, secs(20));
    s.schedule(
        Instant::ZERO,
        Action::Skew {
            node: 1,
            offset: Some(250_000_000),
            drift_ppm: Some(100_000),
        },
    );
    s.expect(Expectation {
        predicate: "converged".into(),
        window: Window::AlwaysFrom(secs(1)),
    });
    s.run();
    // 10 % fast: n2's local clock gained 2 s over 20 s, plus its offset.
    assert_eq!(s.world().local_now(1), Instant::from_millis(22_250));
    // So it beat about 10 % more often than n1.
    let (n1, n2) = (
        s.machine(0).unwrap().stats().sent,
        s.machine(1).unwrap().stats().sent,
    );
    assert!(n2 * 100 > n1 * 105, "n1 sent {n1}, n2 sent {n2}");
    let r = s.report();
    assert!(r.passed(), "{r}");
}

#[test]
fn a_clock_stepped_back_freezes_and_its_node_is_declared_down() {
    let mut s = sim(3, 8, secs(10));
    s.schedule(
        secs(3),
        Action::Skew {
            node: 2,
            offset: Some(-2_000_000_000),
            drift_ppm: None,
        },
    );
    s.run_until(ms(4500));
    // n3's clock stands still at 3 s, so it has not beaten for 1.5 s of true time.
    assert_eq!(s.world().local_now(2), secs(3));
    assert!(!up(&s, 0, 2) && !up(&s, 1, 2));
    s.run_until(ms(5500));
    assert!(up(&s, 0, 2) && up(&s, 1, 2));
    s.run();
    assert!(s.report().passed(), "{}", s.report());
}

#[test]
fn partitioned_links_never_deliver() {
    let mut s = sim(4, 2, secs(5));
    s.schedule(
        Instant::ZERO,
        Action::Partition(vec![vec![0, 1], vec![2, 3]]),
    );
    s.run();
    for (i, j) in [(0, 2), (0, 3), (1, 2), (1, 3), (2, 0), (3, 1)] {
        assert!(!up(&s, i, j), "n{} sees n{}", i + 1, j + 1);
        assert!(s.protocol().fresh(i, j).is_none());
    }
    assert!(up(&s, 0, 1) && up(&s, 3, 2));
    assert!(s.report().net.partitioned > 0);
}

#[test]
fn total_loss_delivers_nothing_and_certain_duplication_delivers_twice() {
    let mut lossy = Sim::new(
        <HeartbeatProtocol>::default(),
        SimConfig {
            nodes: 3,
            end: secs(3),
            network: LinkParams {
                loss: 1.0,
                ..LinkParams::default()
            },
            ..SimConfig::default()
        },
    );
    lossy.run();
    assert_eq!(lossy.stats().delivered, 0);
    assert!(lossy.protocol().events().is_empty());

    let mut doubled = Sim::new(
        <HeartbeatProtocol>::default(),
        SimConfig {
            nodes: 2,
            end: secs(3),
            network: LinkParams {
                duplicate: 1.0,
                ..LinkParams::default()
            },
            ..SimConfig::default()
        },
    );
    doubled.run();
    let net = doubled.report().net;
    assert_eq!(net.duplicated, net.sent);
    let delivered = doubled.stats().delivered;
    let in_flight = 2 * net.sent - delivered;
    assert!(in_flight <= 4, "sent {} delivered {delivered}", net.sent);
    // Every second copy is recognised as stale.
    let stale: u64 = (0..2)
        .map(|i| doubled.machine(i).unwrap().stats().stale)
        .sum();
    assert!(stale * 2 + 4 >= delivered, "stale {stale} of {delivered}");
}

#[test]
fn corruption_reaches_the_real_decoders() {
    let mut s = Sim::new(
        <HeartbeatProtocol>::default(),
        SimConfig {
            nodes: 3,
            end: secs(10),
            network: LinkParams {
                corrupt: 1.0,
                ..LinkParams::default()
            },
            ..SimConfig::default()
        },
    );
    s.run();
    // Every copy has a flipped byte: the envelope's checksum (SPEC.md §2.1) catches each
    // one, so no machine ever sees (or refuses) a damaged payload.
    let st = s.stats();
    assert!(st.decode_failures > 0, "{st:?}");
    assert_eq!(st.delivered, 0, "{st:?}");
    assert_eq!(st.refused, 0, "{st:?}");
    assert!(s.report().net.corrupted > 0);
}

#[test]
fn network_parameters_change_mid_run() {
    let mut s = sim(2, 1, secs(8));
    s.schedule(
        secs(2),
        Action::Network(flotilla_sim::LinkPatch {
            loss: Some(1.0),
            ..Default::default()
        }),
    );
    s.schedule(
        secs(5),
        Action::Link(
            0,
            1,
            flotilla_sim::LinkPatch {
                loss: Some(0.0),
                ..Default::default()
            },
        ),
    );
    s.run_until(ms(4000));
    assert!(!up(&s, 0, 1) && !up(&s, 1, 0));
    s.run_until(ms(6000));
    // Only n1 -> n2 was repaired.
    assert!(up(&s, 1, 0) && !up(&s, 0, 1));
    s.schedule(ms(6000), Action::Block(0, 1));
    s.run();
    assert!(!up(&s, 1, 0));
}

#[test]
fn syntax_errors_in_scenarios_name_line_and_column() {
    let text = "(:scenario broken (:protocol heartbeat) (:nodes 3) (:duration 10s)\n  (:network (:loss 2))\n)";
    let e = Scenario::parse(text, <HeartbeatProtocol>::default(), None).unwrap_err();
    assert_eq!(e.to_string(), "2:20: probability 2 is not between 0 and 1");
    let e = Scenario::parse(
        "(:scenario s\n  (:at 1s (:heal)",
        <HeartbeatProtocol>::default(),
        None,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "2:3: list opened here is never closed");
}

#[test]
fn liveness_failures_name_check_seed_time_and_replay() {
    // A timeout of 5 s cannot notice a partition within 2 s.
    let text = builtin("heartbeat-partition")
        .unwrap()
        .replace("(:timeout 1s)", "(:timeout 5s)");
    let scn = Scenario::parse(&text, <HeartbeatProtocol>::default(), None).unwrap();
    let r = scn.sim(3, false).run_to_report();
    let f = r
        .first_failure()
        .expect("the detection window cannot be met");
    assert_eq!(f.check, "converged within [5.000000s, 6.500000s]");
    assert_eq!(f.at, ms(6500));
    assert_eq!(f.seed, 3);
    assert_eq!(
        f.replay,
        "flotilla sim heartbeat-partition --seed 3 --trace"
    );
    assert!(matches!(r.verdicts[1].outcome, Outcome::Pass(_)));
}

#[test]
fn corrupted_frames_are_dropped_at_the_envelope() {
    // Regression: before frames carried a CRC-32C (SPEC.md §2.1), a flipped high byte of
    // a beat's `seq` made every later genuine beat look stale, and the receiver never saw
    // that peer up again (27 of 40 seeds failed `converged`). Now a damaged frame is a
    // decode failure and the protocol never sees it.
    let text = builtin("heartbeat-partition")
        .unwrap()
        .replace("(:reorder 0.02))", "(:reorder 0.02) (:corrupt 0.02))");
    let scn = Scenario::parse(&text, <HeartbeatProtocol>::default(), None).unwrap();
    let r = sweep(&scn, 0..16);
    assert!(r.passed(), "{r}");
    let mut s = scn.sim(6, false);
    s.run();
    assert!(
        s.stats().decode_failures > 0,
        "the corruption model did corrupt"
    );
}

#[test]
fn heartbeat_commands_from_a_scenario_reach_the_machine() {
    let text = "(:scenario cmds (:protocol heartbeat) (:nodes 3) (:duration 6s)
                  (:at 2s (:remove-peer n1 n3))
                  (:at 4s (:add-peer n1 n3)))";
    let scn = Scenario::parse(text, <HeartbeatProtocol>::default(), None).unwrap();
    let mut s = scn.sim(1, false);
    s.run_until(secs(3));
    assert!(!s.machine(0).unwrap().peers().any(|p| p == node_addr(2)));
    s.run();
    assert!(up(&s, 0, 2));
    assert!(s.report().passed());
}

#[test]
fn heartbeat_machine_type_is_the_core_one() {
    fn takes(_: Option<&Heartbeat>) {}
    let s = sim(1, 0, secs(1));
    takes(s.machine(0));
    assert_eq!(
        <HeartbeatProtocol>::default().timeout(),
        Duration::from_secs(1)
    );
}

#[test]
fn frames_in_flight_to_a_previous_incarnation_are_dropped() {
    let mut s = Sim::new(
        <HeartbeatProtocol>::default(),
        SimConfig {
            nodes: 3,
            seed: 6,
            end: secs(4),
            network: LinkParams {
                latency: Duration::from_millis(500),
                jitter: Duration::ZERO,
                ..LinkParams::default()
            },
            ..SimConfig::default()
        },
    );
    s.schedule(secs(2), Action::Crash(Target::Node(2)));
    s.schedule(ms(2100), Action::Restart(Target::Node(2)));
    s.run_until(ms(2450));
    // Beats sent to the first life between 1.6 s and 2 s arrive after the restart and
    // must not reach the new machine; the new life's own beats are still on the way.
    assert!(s.stats().dropped_crashed >= 4, "{:?}", s.stats());
    assert!(!up(&s, 2, 0) && !up(&s, 2, 1));
    // Beats sent after the restart (at most one jittered interval later) get through.
    s.run_until(ms(2900));
    assert!(up(&s, 2, 0) && up(&s, 2, 1));
}
