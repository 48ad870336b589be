//! `ShipClient` against real ships run in-process by the tokio driver: a mothership and
//! two daughterships on 127.0.0.1, each on its own port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::Rng;
use flotilla_core::ship::client::ClientError;
use flotilla_core::ship::tree::ConfigTree;
use flotilla_core::ship::{Ship, ShipConfig, ShipEvent};
use flotilla_tokio::ship_client::{Error, ShipClient};
use flotilla_tokio::{Driver, DriverConfig, NodeHandle};
use tokio::time::timeout;

/// Generous: only a broken ship comes near it.
const LIVENESS: Duration = Duration::from_secs(15);

const CONFIG: &str = "(:param mode fast)
(:node db (:host db1.example) (:param port 5432))
(:node render (:param port 7000) (:node r1 (:dynamic)) (:node r2 (:dynamic)))";

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
        timeout(LIVENESS, async {
            loop {
                match node.next_event().await {
                    Some(ShipEvent::Synced { .. }) => break,
                    Some(_) => {}
                    None => panic!("ship stopped before syncing"),
                }
            }
        })
        .await
        .expect("daughtership synced");
    }
    // Nobody reads events from here on: the driver discards them.
    drop(node.take_events());
    (node, me)
}

fn refused_code(e: &Error) -> Option<u16> {
    match e {
        Error::Ship(ClientError::Refused { code, .. }) => Some(*code),
        _ => None,
    }
}

#[tokio::test]
async fn get_set_claim_through_a_daughtership() {
    let (m, m_addr) = ship(None, 1).await;
    let (d, d_addr) = ship(Some(m_addr), 2).await;

    let mut at_d = ShipClient::connect(d_addr).await.expect("connect d");
    let mut at_m = ShipClient::connect(m_addr).await.expect("connect m");
    assert_eq!(at_d.get("mode").await.unwrap(), "fast");
    assert_eq!(at_d.get("db/port").await.unwrap(), "5432");
    assert_eq!(at_d.get("db/host").await.unwrap(), "db1.example");

    let v = timeout(LIVENESS, at_d.set("render/port", "7001"))
        .await
        .expect("set answered")
        .expect("set");
    assert!(v >= 1, "version {v}");
    // Read-your-writes at the daughtership, and the root decided it.
    assert_eq!(at_d.get("render/port").await.unwrap(), "7001");
    assert_eq!(at_m.get("render/port").await.unwrap(), "7001");

    let node = timeout(LIVENESS, at_d.claim("render/*", Some("h1")))
        .await
        .expect("claim answered")
        .expect("claim");
    assert_eq!(node, "render/r1");
    assert_eq!(at_d.get("render/r1/host").await.unwrap(), "h1");
    assert_eq!(at_m.get("render/r1/host").await.unwrap(), "h1");

    let e = at_d.get("nope/nothing").await.unwrap_err();
    assert_eq!(refused_code(&e), Some(404), "{e}");
    // A refusal leaves the connection usable.
    let status = at_d.status().await.unwrap();
    assert!(status.contains("role=daughtership"), "{status}");
    assert!(status.contains("parent=up"), "{status}");
    assert!(at_m.status().await.unwrap().contains("role=mothership"));
    // Invalid arguments never reach the ship.
    let e = at_d.get("two words").await.unwrap_err();
    assert!(matches!(e, Error::Ship(ClientError::Invalid(_))), "{e}");

    d.shutdown().await;
    m.shutdown().await;
}

#[tokio::test]
async fn accept_and_connect_meet_across_daughterships() {
    let (m, m_addr) = ship(None, 11).await;
    let (a, a_addr) = ship(Some(m_addr), 12).await;
    let (b, b_addr) = ship(Some(m_addr), 13).await;

    let mut acceptor = ShipClient::connect(a_addr).await.expect("connect a");
    let accepting = tokio::spawn(async move {
        acceptor
            .accept("svc", "127.0.0.1:7777", Some(Duration::from_secs(10)))
            .await
    });
    let mut connector = ShipClient::connect(b_addr).await.expect("connect b");
    let connected = timeout(
        LIVENESS,
        connector.connect_key("svc", Some(Duration::from_secs(10)), Some("bob")),
    )
    .await
    .expect("connect answered")
    .expect("connect");
    let accepted = timeout(LIVENESS, accepting)
        .await
        .expect("accept answered")
        .expect("accept task")
        .expect("accept");
    assert_eq!(connected.acceptor, "127.0.0.1:7777");
    assert_eq!(connected.conn, accepted.conn);
    assert_eq!(accepted.client, "bob");

    b.shutdown().await;
    a.shutdown().await;
    m.shutdown().await;
}

#[tokio::test]
async fn an_unmatched_connect_expires_naming_its_key() {
    let (m, m_addr) = ship(None, 21).await;
    let mut c = ShipClient::connect(m_addr).await.expect("connect");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    c.on_progress(move |t| log.lock().unwrap().push(t.to_string()));
    let e = timeout(
        LIVENESS,
        c.connect_key("lonely", Some(Duration::from_millis(300)), None),
    )
    .await
    .expect("connect answered")
    .unwrap_err();
    assert_eq!(refused_code(&e), Some(408), "{e}");
    assert!(e.to_string().contains("lonely"), "{e}");
    // Progress lines, if any came, were passed on rather than taken for the reply.
    assert!(seen.lock().unwrap().iter().all(|t| !t.is_empty()));
    m.shutdown().await;
}

#[tokio::test]
async fn a_closed_ship_is_an_io_error() {
    let (m, m_addr) = ship(None, 31).await;
    let mut c = ShipClient::connect(m_addr).await.expect("connect");
    let pending = tokio::spawn(async move { c.connect_key("gone", None, None).await });
    // Make sure the request is in before the ship goes away.
    let mut probe = ShipClient::connect(m_addr).await.expect("probe");
    timeout(LIVENESS, async {
        while !probe.status().await.unwrap().contains("pending=1") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("request pending");
    m.shutdown().await;
    let e = timeout(LIVENESS, pending)
        .await
        .expect("answered")
        .expect("task")
        .unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e}");
    assert!(ShipClient::connect(m_addr).await.is_err());
}

#[tokio::test]
async fn a_waiting_connect_meets_a_later_accept_at_its_own_daughtership() {
    // The connect climbs to the mothership first; the accept that arrives afterwards at
    // the same daughtership must still find it (SPEC.md §5.5: local accepts re-route).
    let (m, m_addr) = ship(None, 41).await;
    let (d, d_addr) = ship(Some(m_addr), 42).await;
    let mut connector = ShipClient::connect(d_addr).await.expect("connect");
    let connecting = tokio::spawn(async move {
        connector
            .connect_key("late", Some(Duration::from_secs(10)), Some("eve"))
            .await
    });
    let mut probe = ShipClient::connect(d_addr).await.expect("probe");
    timeout(LIVENESS, async {
        while !probe.status().await.unwrap().contains("pending=1 ") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("connect pending");
    let mut acceptor = ShipClient::connect(d_addr).await.expect("connect");
    let accepted = timeout(
        LIVENESS,
        acceptor.accept("late", "127.0.0.1:7", Some(Duration::from_secs(10))),
    )
    .await
    .expect("accept answered")
    .expect("accept");
    let connected = timeout(LIVENESS, connecting)
        .await
        .expect("connect answered")
        .expect("task")
        .expect("connect");
    assert_eq!(connected.acceptor, "127.0.0.1:7");
    assert_eq!(connected.conn, accepted.conn);
    assert_eq!(accepted.client, "eve");
    d.shutdown().await;
    m.shutdown().await;
}
