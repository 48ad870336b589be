//! `ShipClient` against real ships run in-process by the smol driver: a mothership and
//! two daughterships on 127.0.0.1, each on its own port.

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_core::Rng;
use flotilla_core::ship::client::ClientError;
use flotilla_core::ship::tree::ConfigTree;
use flotilla_core::ship::{Ship, ShipConfig, ShipEvent};
use flotilla_smol::ship_client::{Error, ShipClient};
use flotilla_smol::{Driver, DriverConfig, NodeHandle};
use smol::{Timer, future};

/// Generous: only a broken ship comes near it.
const LIVENESS: Duration = Duration::from_secs(15);

const CONFIG: &str = "(:param mode fast)
(:node render (:param port 7000) (:node r1 (:dynamic)) (:node r2 (:dynamic)))";

/// `fut`'s output, or a panic after [`LIVENESS`].
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    future::or(async { Some(fut.await) }, async {
        Timer::after(LIVENESS).await;
        None
    })
    .await
    .unwrap_or_else(|| panic!("{what}: no answer within {LIVENESS:?}"))
}

/// Starts a ship on a free port; a daughtership is returned once it holds a snapshot.
async fn ship(parent: Option<SocketAddr>, seed: u64) -> (NodeHandle<Ship>, SocketAddr) {
    let driver = Driver::bind(DriverConfig::tcp("127.0.0.1:0".parse().unwrap()))
        .await
        .expect("bind");
    let me = driver.local_addrs().peer;
    let cfg = match parent {
        None => ShipConfig::mothership(me, ConfigTree::parse(CONFIG).expect("config")),
        Some(p) => ShipConfig::daughtership(me, p),
    };
    let machine = Ship::new(cfg, driver.now(), Rng::from_seed(seed)).expect("ship");
    let mut node = driver.start(machine);
    if parent.is_some() {
        bounded("sync", async {
            loop {
                match node.next_event().await {
                    Some(ShipEvent::Synced { .. }) => break,
                    Some(_) => {}
                    None => panic!("ship stopped before syncing"),
                }
            }
        })
        .await;
    }
    // Nobody reads events from here on: the driver discards them.
    drop(node.take_events());
    (node, me)
}

#[test]
fn get_set_claim_through_a_daughtership() {
    smol::block_on(async {
        let (m, m_addr) = ship(None, 1).await;
        let (d, d_addr) = ship(Some(m_addr), 2).await;
        let mut at_d = ShipClient::connect(d_addr).await.expect("connect d");
        let mut at_m = ShipClient::connect(m_addr).await.expect("connect m");

        assert_eq!(at_d.get("mode").await.unwrap(), "fast");
        let v = bounded("set", at_d.set("render/port", "7001"))
            .await
            .expect("set");
        assert!(v >= 1, "version {v}");
        assert_eq!(at_d.get("render/port").await.unwrap(), "7001");
        assert_eq!(at_m.get("render/port").await.unwrap(), "7001");
        let node = bounded("claim", at_d.claim("render/*", Some("h1")))
            .await
            .expect("claim");
        assert_eq!(node, "render/r1");
        assert_eq!(at_m.get("render/r1/host").await.unwrap(), "h1");

        let e = at_d.get("nope/nothing").await.unwrap_err();
        assert!(
            matches!(e, Error::Ship(ClientError::Refused { code: 404, .. })),
            "{e}"
        );
        let status = at_d.status().await.unwrap();
        assert!(status.contains("role=daughtership"), "{status}");

        d.shutdown().await;
        m.shutdown().await;
    });
}

#[test]
fn accept_and_connect_meet_across_daughterships() {
    smol::block_on(async {
        let (m, m_addr) = ship(None, 11).await;
        let (a, a_addr) = ship(Some(m_addr), 12).await;
        let (b, b_addr) = ship(Some(m_addr), 13).await;

        let mut acceptor = ShipClient::connect(a_addr).await.expect("connect a");
        let accepting = smol::spawn(async move {
            acceptor
                .accept("svc", "127.0.0.1:7777", Some(Duration::from_secs(10)))
                .await
        });
        let mut connector = ShipClient::connect(b_addr).await.expect("connect b");
        let connected = bounded(
            "connect",
            connector.connect_key("svc", Some(Duration::from_secs(10)), Some("bob")),
        )
        .await
        .expect("connect");
        let accepted = bounded("accept", accepting).await.expect("accept");
        assert_eq!(connected.acceptor, "127.0.0.1:7777");
        assert_eq!(connected.conn, accepted.conn);
        assert_eq!(accepted.client, "bob");

        // An unmatched connect expires with a 408 that names its key.
        let e = bounded(
            "lonely connect",
            connector.connect_key("lonely", Some(Duration::from_millis(300)), None),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, Error::Ship(ClientError::Refused { code: 408, text }) if text.contains("lonely")),
            "{e}"
        );

        b.shutdown().await;
        a.shutdown().await;
        m.shutdown().await;
    });
}
