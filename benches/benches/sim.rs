//! Simulator throughput (BENCHMARKS.md "Simulator"): events processed per second of wall
//! time, tracing off, for the shipped heartbeat and broker scenarios.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_sim::protocols::heartbeat::HeartbeatProtocol;
use flotilla_sim::protocols::ship::ShipProtocol;
use flotilla_sim::scenarios::builtin;
use flotilla_sim::{Protocol, Scenario};

fn bench_scenario<P: Protocol>(
    c: &mut Criterion,
    name: &str,
    label: &str,
    text: &str,
    protocol: P,
) {
    let scn = Scenario::parse(text, protocol, None).unwrap();
    // One run first, to learn how many events a run is (the same for every run of a seed).
    let mut probe = scn.sim(1, false);
    let events = probe.run();
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Elements(events));
    g.sample_size(10);
    g.bench_function(label, |b| {
        b.iter(|| {
            let mut s = scn.sim(1, false);
            assert_eq!(s.run(), events, "{name} is deterministic");
        })
    });
    g.finish();
}

fn sims(c: &mut Criterion) {
    // Ten heartbeat nodes for 60 virtual seconds: a dense, timer- and frame-heavy run.
    let ten = r#"(:scenario ten (:protocol heartbeat) (:nodes 10) (:duration 60s)
        (:network (:latency 1ms) (:jitter 1ms) (:loss 0.01))
        (:heartbeat (:interval 100ms) (:timeout 500ms)))"#;
    bench_scenario(
        c,
        "ten",
        "heartbeat_10_nodes_60s",
        ten,
        <HeartbeatProtocol>::default(),
    );
    bench_scenario(
        c,
        "broker-1000",
        "broker_1000_clients",
        builtin("broker-1000").unwrap(),
        ShipProtocol::default(),
    );
}

criterion_group!(benches, sims);
criterion_main!(benches);
