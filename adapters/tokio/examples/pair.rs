//! Two machines in one node under tokio (SPEC.md §1.3): three nodes on loopback, each
//! running a heartbeat and a ship side by side in one `Pair`, over one TCP port per node.
//! Frames of both protocols share the port and are routed by family; ship clients use
//! the same port. A `set` at a daughtership reaches the others; a stopped node is seen
//! down by the heartbeats.
//!
//! ```text
//! cargo run -p flotilla-tokio --example pair
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_core::Rng;
use flotilla_core::compose::{Either, Pair};
use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig, HeartbeatEvent};
use flotilla_core::ship::tree::ConfigTree;
use flotilla_core::ship::{Ship, ShipConfig, ShipEvent};
use flotilla_tokio::ship_client::ShipClient;
use flotilla_tokio::{Driver, DriverConfig, NodeHandle};

type Node = NodeHandle<Pair<Heartbeat, Ship>>;

fn pair(
    me: SocketAddr,
    all: &[SocketAddr],
    root: SocketAddr,
    now: flotilla_core::Instant,
    seed: u64,
) -> Pair<Heartbeat, Ship> {
    let mut hb = HeartbeatConfig::lan(me, all.to_vec());
    hb.interval = Duration::from_millis(100);
    hb.timeout = Duration::from_millis(500);
    let ship = if me == root {
        ShipConfig::mothership(me, ConfigTree::parse("(:param mode fast)").expect("valid"))
    } else {
        ShipConfig::daughtership(me, root)
    };
    let rng = Rng::from_seed(seed);
    Pair::new(
        Heartbeat::new(hb, now, rng.fork(1)).expect("valid"),
        Ship::new(ship, now, rng.fork(2)).expect("valid"),
    )
}

/// Waits for a heartbeat event about `peer` matching `want`.
async fn heartbeat_says(node: &mut Node, want: impl Fn(&HeartbeatEvent) -> bool) {
    loop {
        match node.next_event().await {
            Some(Either::A(e)) if want(&e) => return,
            Some(_) => {}
            None => panic!("node stopped"),
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut drivers = Vec::new();
    for _ in 0..3 {
        drivers.push(Driver::bind(DriverConfig::tcp("127.0.0.1:0".parse()?)).await?);
    }
    let addrs: Vec<SocketAddr> = drivers.iter().map(|d| d.local_addrs().peer()).collect();
    let mut nodes: Vec<Node> = drivers
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let m = pair(addrs[i], &addrs, addrs[0], d.now(), i as u64 + 1);
            d.start(m)
        })
        .collect();
    println!("three nodes, each a heartbeat and a ship on one port: {addrs:?}");

    // The ship parts of the daughterships copy the mothership's configuration first.
    for node in &mut nodes[1..] {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match node.next_event().await {
                    Some(Either::B(ShipEvent::Synced { .. })) => return,
                    Some(_) => {}
                    None => panic!("node stopped"),
                }
            }
        })
        .await?;
    }
    // The ship part answers clients on the node's one port.
    let mut at_third = ShipClient::connect(&addrs[2].to_string()).await?;
    let version =
        tokio::time::timeout(Duration::from_secs(10), at_third.set("mode", "slow")).await??;
    let mut at_second = ShipClient::connect(&addrs[1].to_string()).await?;
    println!(
        "set at {} (version {version}); {} reads mode={}",
        addrs[2],
        addrs[1],
        at_second.get("mode").await?
    );

    // The heartbeat part sees a stopped node go down.
    let third = nodes.pop().expect("three nodes");
    third.shutdown().await;
    let gone = addrs[2];
    tokio::time::timeout(
        Duration::from_secs(10),
        heartbeat_says(
            &mut nodes[0],
            |e| matches!(e, HeartbeatEvent::PeerDown { peer } if *peer == gone),
        ),
    )
    .await?;
    println!("{} saw {gone} down", addrs[0]);
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await
}
