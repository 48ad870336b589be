//! The flood master's topology work (SPEC.md §8.4), timed where timing belongs: building
//! a topology of connectivity 3 from great-circle link costs, checking its connectivity
//! and measuring its diameter, at 100 and 1,000 sites.
//!
//! `cargo bench -p flotilla-benches --bench topology`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flotilla_core::Rng;
use flotilla_core::flood::topology::{diameter, generate, is_k_connected, link_cost};

/// Sites spread uniformly over the sphere, repeatably.
fn positions(n: usize, seed: u64) -> Vec<(f64, f64)> {
    let mut rng = Rng::from_seed(seed);
    (0..n)
        .map(|_| {
            let lat = (2.0 * rng.unit() - 1.0).asin().to_degrees();
            (lat, 360.0 * rng.unit() - 180.0)
        })
        .collect()
}

fn topology(c: &mut Criterion) {
    let mut g = c.benchmark_group("topology");
    g.sample_size(10);
    for n in [100usize, 1000] {
        let pos = positions(n, 11);
        let cost =
            |a: u32, b: u32| link_cost(None, None, Some(pos[a as usize]), Some(pos[b as usize]));
        g.bench_with_input(BenchmarkId::new("generate_k3", n), &n, |b, &n| {
            b.iter(|| generate(n, 3, &cost, &mut Rng::from_seed(11)));
        });
        let edges = generate(n, 3, &cost, &mut Rng::from_seed(11));
        g.bench_with_input(BenchmarkId::new("is_k_connected_3", n), &n, |b, &n| {
            b.iter(|| is_k_connected(n, &edges, 3));
        });
        g.bench_with_input(BenchmarkId::new("diameter", n), &n, |b, &n| {
            b.iter(|| diameter(n, &edges));
        });
    }
    g.finish();
}

criterion_group!(benches, topology);
criterion_main!(benches);
