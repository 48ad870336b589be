//! Three heartbeat nodes on loopback, over UDP and over TCP: they see each other up, see a
//! stopped node down, and see it up again after it restarts on the same port.

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_core::Rng;
use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig, HeartbeatEvent};
use flotilla_smol::{Driver, DriverConfig, NodeHandle};
use smol::Timer;
use smol::future;

const LIVENESS: Duration = Duration::from_secs(10);

/// `fut`'s output, or `None` after `limit`.
async fn timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::after(limit).await;
        None
    })
    .await
}

fn config(tcp: bool, addr: SocketAddr) -> DriverConfig {
    if tcp {
        DriverConfig::tcp(addr)
    } else {
        DriverConfig::udp(addr)
    }
}

fn machine(driver: &Driver, peers: &[SocketAddr], seed: u64) -> Heartbeat {
    let me = driver.local_addrs().peer;
    let mut cfg = HeartbeatConfig::lan(me, peers.to_vec());
    cfg.interval = Duration::from_millis(50);
    cfg.timeout = Duration::from_millis(300);
    Heartbeat::new(cfg, driver.now(), Rng::from_seed(seed)).unwrap()
}

/// Waits until `node` has reported every `(peer, up)` pair in `want` as its latest state.
async fn expect(node: &mut NodeHandle<Heartbeat>, want: &[(SocketAddr, bool)]) {
    let mut pending: Vec<(SocketAddr, bool)> = want.to_vec();
    let me = node.local_addrs().peer;
    let waited = timeout(LIVENESS, async {
        while !pending.is_empty() {
            let ev = node.next_event().await.expect("node stopped");
            let (peer, up) = match ev {
                HeartbeatEvent::PeerUp { peer, .. }
                | HeartbeatEvent::PeerRestarted { peer, .. } => (peer, true),
                HeartbeatEvent::PeerDown { peer } => (peer, false),
            };
            pending.retain(|w| *w != (peer, up));
        }
    })
    .await;
    assert!(waited.is_some(), "{me} still waits for {pending:?}");
}

async fn three_nodes(tcp: bool) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    // Bind all three first: each machine must know the others' ports.
    let mut drivers = Vec::new();
    for _ in 0..3 {
        drivers.push(Driver::bind(config(tcp, any)).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = drivers.iter().map(|d| d.local_addrs().peer).collect();
    let mut nodes: Vec<NodeHandle<Heartbeat>> = drivers
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let m = machine(&d, &addrs, i as u64 + 1);
            d.start(m)
        })
        .collect();

    for (i, node) in nodes.iter_mut().enumerate() {
        let others: Vec<_> = (0..3)
            .filter(|j| *j != i)
            .map(|j| (addrs[j], true))
            .collect();
        expect(node, &others).await;
    }

    let third = nodes.pop().unwrap();
    let old = third.shutdown().await;
    for node in &mut nodes {
        expect(node, &[(addrs[2], false)]).await;
    }

    // Same port, new incarnation.
    let d = Driver::bind(config(tcp, addrs[2])).await.unwrap();
    assert_eq!(d.local_addrs().peer, addrs[2]);
    let m = machine(&d, &addrs, 99);
    assert_ne!(m.incarnation(), old.incarnation());
    let mut third = d.start(m);
    for node in &mut nodes {
        expect(node, &[(addrs[2], true)]).await;
    }
    expect(&mut third, &[(addrs[0], true), (addrs[1], true)]).await;

    for node in nodes {
        let s = node.stats();
        assert!(s.frames_in > 0 && s.frames_out > 0, "{s:?}");
        assert_eq!(s.decode_errors, 0, "{s:?}");
        node.shutdown().await;
    }
    third.shutdown().await;
}

#[test]
fn three_nodes_over_udp() {
    smol::block_on(three_nodes(false));
}

#[test]
fn three_nodes_over_tcp() {
    smol::block_on(three_nodes(true));
}
