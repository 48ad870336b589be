//! `membership-cost`: what daemon membership costs and how fast it reacts, in the
//! simulator (SPEC.md §9), against cluster size: frames and bytes each daemon sends per
//! second at steady state, and for a crashed member and then a crashed coordinator the
//! time until the first survivor, and then every survivor, holds a view without it
//! (failure detection, view convergence). Default timings; 1 ms ± 1 ms links. Results in
//! BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p flotilla-benches --bin membership-cost [-- 10 100 1000]
//! ```

use core::time::Duration;

use flotilla_core::Instant;
use flotilla_sim::Scenario;
use flotilla_sim::protocols::membership::MembershipProtocol;

struct Run {
    formed: Duration,
    frames_per_sec: f64,
    bytes_per_sec: f64,
    detections: Vec<Duration>,
    convergences: Vec<Duration>,
}

/// Steady state is measured over this window, once every daemon is in.
const WINDOW: (u64, u64) = (20, 30);

fn run(n: usize, seed: u64) -> Run {
    // n1 coordinates (the least name); the member crashed first is the last one.
    let text = format!(
        "(:scenario membership-cost (:protocol membership) (:nodes {n}) (:duration 40s)
           (:network (:latency 1ms) (:jitter 1ms))
           (:at 31s (:crash n{n}))
           (:at 35s (:crash n1))
           (:expect all-in (:within 0s 20s))
           (:expect agreed (:within 35s 40s)))"
    );
    let scn = Scenario::parse(&text, MembershipProtocol::default(), None).expect("scenario");
    let mut sim = scn.sim(seed, false);
    let mut formed = None;
    let mut t = Instant::ZERO;
    while t < Instant::from_secs(WINDOW.0) {
        t += Duration::from_millis(10);
        sim.run_until(t);
        if formed.is_none()
            && (0..n).all(|i| sim.machine(i).is_some_and(|m| m.view().members.len() == n))
        {
            formed = Some(t.saturating_duration_since(Instant::ZERO));
        }
    }
    let totals = |sim: &flotilla_sim::Sim<MembershipProtocol>| -> (u64, u64) {
        (0..n)
            .filter_map(|i| sim.machine(i))
            .map(|m| (m.stats().frames_sent, m.stats().bytes_sent))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let before = totals(&sim);
    sim.run_until(Instant::from_secs(WINDOW.1));
    let after = totals(&sim);
    sim.run();
    assert!(sim.report().passed(), "{n} daemons: {}", sim.report());
    let secs = (WINDOW.1 - WINDOW.0) as f64;
    let p = sim.protocol();
    Run {
        formed: formed.expect("every daemon in"),
        frames_per_sec: (after.0 - before.0) as f64 / n as f64 / secs,
        bytes_per_sec: (after.1 - before.1) as f64 / n as f64 / secs,
        detections: p.detections().to_vec(),
        convergences: p.convergences().to_vec(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
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
    let seeds = 3;
    println!(
        "| daemons | formed by joins in | frames / daemon / s | bytes / daemon / s | member crash: detection | member crash: convergence | coordinator crash: detection | coordinator crash: convergence |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let runs: Vec<Run> = (1..=seeds).map(|s| run(n, s)).collect();
        let worst = |f: &dyn Fn(&Run) -> Duration| runs.iter().map(f).max().unwrap();
        let mean = |f: &dyn Fn(&Run) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
        println!(
            "| {n} | {} | {:.1} | {:.0} | {} | {} | {} | {} |",
            ms(worst(&|r| r.formed)),
            mean(&|r| r.frames_per_sec),
            mean(&|r| r.bytes_per_sec),
            ms(worst(&|r| r.detections[0])),
            ms(worst(&|r| r.convergences[0])),
            ms(worst(&|r| r.detections[1])),
            ms(worst(&|r| r.convergences[1])),
        );
    }
    println!("\n(worst of {seeds} seeds for times; mean of {seeds} seeds for load)");
}
