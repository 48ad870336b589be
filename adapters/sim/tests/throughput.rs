//! Prints events per second for the heartbeat protocol with tracing off. Not a timing
//! assertion: run it by hand in release,
//! `cargo test --release -p flotilla-sim --test throughput -- --ignored --nocapture`.

use flotilla_core::Instant;
use flotilla_sim::protocols::heartbeat::HeartbeatProtocol;
use flotilla_sim::{LinkParams, Sim, SimConfig};

#[test]
#[ignore = "prints a throughput figure; run by hand in release"]
#[allow(clippy::disallowed_methods)] // the one place that reads the wall clock
fn heartbeat_events_per_second() {
    let mut sim = Sim::new(
        <HeartbeatProtocol>::default(),
        SimConfig {
            nodes: 10,
            seed: 1,
            end: Instant::from_secs(3_000),
            network: LinkParams {
                loss: 0.01,
                duplicate: 0.01,
                reorder: 0.02,
                ..LinkParams::default()
            },
            ..SimConfig::default()
        },
    );
    let start = std::time::Instant::now();
    let events = sim.run();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{events} events in {secs:.3} s: {:.0} events/s (trace hash {:016x})",
        events as f64 / secs,
        sim.trace_hash()
    );
    assert!(sim.report().passed());
}
