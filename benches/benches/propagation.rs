//! Configuration propagation through three levels on loopback (BENCHMARKS.md
//! "Propagation"): a mothership, a daughtership, and a granddaughtership, each run by the
//! tokio driver in this process over real TCP sockets. One iteration is the time from
//! `set` at the mothership to the grandchild applying the change.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_core::Rng;
use flotilla_core::ship::tree::ConfigTree;
use flotilla_core::ship::{Ship, ShipConfig, ShipEvent};
use flotilla_tokio::ship_client::ShipClient;
use flotilla_tokio::{Driver, DriverConfig, NodeHandle};

async fn start(
    cfg: impl FnOnce(std::net::SocketAddr) -> ShipConfig,
    seed: u64,
) -> NodeHandle<Ship> {
    let d = Driver::bind(DriverConfig::tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let me = d.local_addrs().peer();
    let ship = Ship::new(cfg(me), d.now(), Rng::from_seed(seed)).unwrap();
    d.start(ship)
}

/// Events nobody reads would fill the driver's bounded channel and stall the ship.
fn drain(node: &mut NodeHandle<Ship>) {
    let mut events = node.take_events().expect("events not taken yet");
    tokio::spawn(async move { while events.recv().await.is_some() {} });
}

async fn changed(node: &mut NodeHandle<Ship>) -> u64 {
    loop {
        if let Some(ShipEvent::Changed { version }) = node.next_event().await {
            return version;
        }
    }
}

fn propagation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (root, _mid, mut leaf, mut client) = rt.block_on(async {
        let mut root = start(|a| ShipConfig::mothership(a, ConfigTree::default()), 1).await;
        drain(&mut root);
        let ra = root.local_addrs().peer();
        let mut mid = start(|a| ShipConfig::daughtership(a, ra), 2).await;
        drain(&mut mid);
        let ma = mid.local_addrs().peer();
        let mut leaf = start(|a| ShipConfig::daughtership(a, ma), 3).await;
        // Wait until the grandchild holds a copy.
        loop {
            match leaf.next_event().await {
                Some(ShipEvent::Synced { .. }) => break,
                Some(_) => {}
                None => panic!("leaf stopped"),
            }
        }
        let client = ShipClient::connect(&ra.to_string()).await.unwrap();
        (root, mid, leaf, client)
    });
    let mut g = c.benchmark_group("propagation");
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(10));
    let mut n = 0u64;
    g.bench_function("set_at_root_to_applied_at_grandchild", |b| {
        b.iter(|| {
            rt.block_on(async {
                n += 1;
                let v = client.set("bench", &n.to_string()).await.unwrap();
                while changed(&mut leaf).await < v {}
            })
        })
    });
    g.finish();
    drop(root);
}

criterion_group!(benches, propagation);
criterion_main!(benches);
