//! `flood-cost`: what flooding costs and how fast it spreads, in the simulator (SPEC.md
//! §8.1), for flotilla's tree flooding and the seed's plain flooding side by side on the
//! same scenario: payload transmissions per delivered update against the n − 1 optimum,
//! and the time for an update to reach every site against the topology's diameter.
//! Results in BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p flotilla-benches --bin flood-cost [-- 10 100 1000]
//! ```

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use flotilla_core::flood::topology;
use flotilla_sim::Scenario;
use flotilla_sim::protocols::flood::FloodProtocol;

/// One-way latency of every link, fixed, so that hops convert to time exactly.
const HOP: Duration = Duration::from_millis(5);

struct Run {
    payloads_per_update: f64,
    digests_per_site_second: f64,
    pulls: u64,
    median: Duration,
    worst: Duration,
    diameter: u32,
}

fn run(n: usize, mode: &str, updates: u32) -> Run {
    // The topology is computed at start (links of unknown cost: every spanning tree is
    // one of fewest hops); updates come once every site has it.
    let text = format!(
        "(:scenario flood-cost (:protocol flood) (:nodes {n}) (:duration 14s)
           (:network (:latency {}ms) (:jitter 0ms))
           (:flood (:connectivity 3) (:flooding {mode}) (:digest-period 200ms)
                   (:ping-period 5) (:update-period 600))
           (:workload (:updates {updates}) (:bytes 100) (:from 4s) (:to 8s))
           (:expect all-exported (:always-from 13s)))",
        HOP.as_millis()
    );
    let scn = Scenario::parse(&text, FloodProtocol::default(), None).expect("scenario");
    let mut sim = scn.sim(1, false);
    sim.run();
    assert!(sim.report().passed(), "{}", sim.report());
    let machines: Vec<_> = (0..n).filter_map(|i| sim.machine(i)).collect();
    let payloads: u64 = machines.iter().map(|m| m.stats().payloads_sent).sum();
    let digests: u64 = machines.iter().map(|m| m.stats().digests_sent).sum();
    let pulls: u64 = machines.iter().map(|m| m.stats().pulls_sent).sum();
    let flooded = sim.protocol().flooded() as f64;
    let t = machines[0].topology("g").expect("a topology");
    let index: BTreeMap<&str, u32> = t
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i as u32))
        .collect();
    let edges: BTreeSet<(u32, u32)> = t
        .links
        .iter()
        .map(|(a, b, _)| (index[a.as_str()], index[b.as_str()]))
        .collect();
    let mut spread = sim.protocol().spread_times();
    spread.sort();
    Run {
        payloads_per_update: payloads as f64 / (flooded * (n as f64 - 1.0)),
        digests_per_site_second: digests as f64 / n as f64 / 14.0,
        pulls,
        median: spread[spread.len() / 2],
        worst: *spread.last().expect("updates"),
        diameter: topology::diameter(n, &edges).expect("connected"),
    }
}

fn main() {
    let sizes: Vec<usize> = {
        let args: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if args.is_empty() {
            vec![10, 100, 1000]
        } else {
            args
        }
    };
    println!(
        "| sites | mode | payloads per update per site (optimum 1.00) | digests per site per second | pulls | diameter (hops) | spread: median | spread: worst | diameter × hop latency |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        for mode in ["tree", "plain"] {
            let updates = if n >= 1000 { 50 } else { 200 };
            let r = run(n, mode, updates);
            println!(
                "| {n} | {mode} | {:.3} | {:.2} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
                r.payloads_per_update,
                r.digests_per_site_second,
                r.pulls,
                r.diameter,
                r.median.as_secs_f64() * 1e3,
                r.worst.as_secs_f64() * 1e3,
                (HOP * r.diameter).as_secs_f64() * 1e3
            );
        }
    }
}
