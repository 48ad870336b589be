//! The driver, run under every runtime: each test body is written once, generic over
//! `flotilla_driver::Runtime`, and run under tokio and under smol (SPEC.md §7). The test
//! machine is `flotilla_tests::echo::Echo`.

// Tests wait on real sockets and compare what arrives; they read the clock through the
// runtime like the driver does.
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flotilla_core::flood::config::FloodConfig;
use flotilla_core::flood::{Flood, FloodSettings, MAX_UPDATE_BYTES};
use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig, HeartbeatEvent};
use flotilla_core::line::ClientError;
use flotilla_core::ship::tree::ConfigTree;
use flotilla_core::ship::{Ship, ShipConfig, ShipEvent};
use flotilla_core::wire::{Frame, Kind, Limits, decode_frame, split_frame, transport};
use flotilla_core::{ClientRemote, EffectError, ListenerId, Rng};
use flotilla_driver::client::{Error, LineClient};
use flotilla_driver::flood_client::{FloodClient, GroupSummary};
use flotilla_driver::group_client::{Cause, Delivery, GroupClient, GroupNotice};
use flotilla_driver::ship_client::ShipClient;
use flotilla_driver::{
    Carries, CommandError, Driver, DriverConfig, ListenAddr, NodeHandle, PeerTransport, ReadHalf,
    Runtime, WriteHalf, timeout,
};
use flotilla_tests::echo::{Echo, EchoCommand, EchoError, Seen};

/// Generous: only a broken driver comes near it.
const LIVENESS: Duration = Duration::from_secs(15);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn within<R: Runtime, T>(rt: &R, what: &str, fut: impl Future<Output = T>) -> T {
    match timeout(rt, LIVENESS, fut).await {
        Some(v) => v,
        None => panic!("{what}: nothing within {LIVENESS:?}"),
    }
}

async fn sleep<R: Runtime>(rt: &R, d: Duration) {
    rt.sleep_until(rt.now() + d).await;
}

async fn read_exact<Rd: ReadHalf>(rd: &mut Rd, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while got.len() < n {
        let k = rd.read(&mut buf).await.expect("read");
        assert_ne!(k, 0, "stream ended after {} of {n} bytes", got.len());
        got.extend_from_slice(&buf[..k]);
    }
    got
}

/// Reads until the end of the stream (or a reset, which also ends it).
async fn read_to_end<Rd: ReadHalf>(rd: &mut Rd) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
}

async fn event<R: Runtime>(node: &mut NodeHandle<Echo, R>) -> Seen {
    let rt = R::default();
    within(&rt, "event", node.next_event())
        .await
        .expect("node stopped")
}

/// The test runner for Echo's effects: `ok X` succeeds with X, `fail X` fails with X,
/// `slow MS` succeeds after MS milliseconds, `hang` never ends, `panic` panics. It keeps
/// the most effects it saw running at once.
#[derive(Clone)]
struct Runner<R: Runtime> {
    rt: R,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl<R: Runtime> Runner<R> {
    fn new(rt: &R) -> Self {
        Runner {
            rt: rt.clone(),
            running: Arc::default(),
            most: Arc::default(),
        }
    }

    fn run(
        &self,
    ) -> impl Fn(
        String,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<String, EffectError>> + Send>>
    + Send
    + Sync
    + 'static {
        let this = self.clone();
        move |what: String| {
            let this = this.clone();
            Box::pin(async move {
                let now = this.running.fetch_add(1, Ordering::SeqCst) + 1;
                this.most.fetch_max(now, Ordering::SeqCst);
                struct Done(Arc<AtomicUsize>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _done = Done(this.running.clone());
                let mut w = what.splitn(2, ' ');
                match (w.next(), w.next()) {
                    (Some("ok"), Some(x)) => Ok(x.to_string()),
                    (Some("fail"), Some(x)) => Err(EffectError::Failed(x.to_string())),
                    (Some("slow"), Some(ms)) => {
                        sleep(&this.rt, Duration::from_millis(ms.parse().unwrap())).await;
                        Ok(format!("slept {ms}"))
                    }
                    (Some("hang"), None) => std::future::pending().await,
                    (Some("panic"), None) => panic!("the runner panics on purpose"),
                    _ => Err(EffectError::Failed(format!("no such effect: {what}"))),
                }
            })
        }
    }
}

fn start<R: Runtime>(driver: Driver<R>, runner: &Runner<R>) -> NodeHandle<Echo, R> {
    driver.start_with(Echo::default(), runner.run())
}

/// Sends `line`, expects it back upper-cased, then quits and expects the server to close.
async fn echo_and_quit<R: Runtime>(rt: &R, addr: SocketAddr, line: &str) {
    let (mut rd, mut wr) = rt.tcp_connect(addr).await.unwrap();
    wr.write_all(line.as_bytes()).await.unwrap();
    let got = within(rt, "echo", read_exact(&mut rd, line.len())).await;
    assert_eq!(got, line.to_ascii_uppercase().as_bytes());
    wr.write_all(b"quit\n").await.unwrap();
    let rest = within(rt, "close after quit", read_to_end(&mut rd)).await;
    assert!(rest.is_empty(), "unexpected bytes after quit: {rest:?}");
}

// ----- streams and listeners ---------------------------------------------------------

async fn clients_and_peers_share_a_port<R: Runtime>(rt: R) {
    let driver = Driver::<R>::bind(DriverConfig::tcp(any()).with_client_listen(any()))
        .await
        .unwrap();
    let local = driver.local_addrs().clone();
    let mut node = start(driver, &Runner::new(&rt));

    // The client-only port (listener 1).
    echo_and_quit(&rt, local.client().unwrap(), "hello there\n").await;
    let Seen::Opened(c1, origin) = event(&mut node).await else {
        panic!("expected an open");
    };
    assert_eq!(origin.listener, ListenerId(1));
    assert!(origin.is_same_host());
    assert_eq!(event(&mut node).await, Seen::Closed(c1));

    // The peer port (listener 0): text is a client, told apart by its first byte.
    echo_and_quit(&rt, local.peer(), "abc\n").await;
    let Seen::Opened(c2, origin) = event(&mut node).await else {
        panic!("expected an open");
    };
    assert_eq!(origin.listener, ListenerId(0));
    assert!(matches!(origin.remote, ClientRemote::Tcp { .. }));
    assert_eq!(event(&mut node).await, Seen::Closed(c2));

    // The peer port: a frame stream, named by its hello, answered on the same stream.
    let me: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ping = Frame::new(Kind(0x7701), Bytes::from_static(b"ping"));
    let (mut rd, mut wr) = rt.tcp_connect(local.peer()).await.unwrap();
    let mut wire = transport::encode_hello(me, flotilla_core::Lane::Data)
        .to_bytes()
        .to_vec();
    wire.extend_from_slice(&ping.to_bytes());
    wr.write_all(&wire).await.unwrap();
    assert_eq!(event(&mut node).await, Seen::Frame(me, ping.clone()));
    let back = within(&rt, "reflected frame", async {
        let mut buf = BytesMut::new();
        loop {
            if let Some(f) = split_frame(&mut buf, &Limits::default()).unwrap() {
                return f;
            }
            let chunk = read_exact(&mut rd, 1).await;
            buf.extend_from_slice(&chunk);
        }
    })
    .await;
    assert_eq!(back, ping);

    // A stream that does not decode is closed, not passed in.
    let (mut rd, mut wr) = rt.tcp_connect(local.peer()).await.unwrap();
    wr.write_all(&[0xF1, 9, 0, 0, 0, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    within(&rt, "bad stream closed", read_to_end(&mut rd)).await;

    let stats = node.stats();
    assert_eq!(stats.clients_opened, 2);
    assert_eq!(stats.frames_in, 1);
    assert_eq!(stats.decode_errors, 1);
    node.shutdown().await;
}

async fn bad_datagrams_are_counted_not_delivered<R: Runtime>(rt: R) {
    let driver = Driver::<R>::bind(DriverConfig::udp(any())).await.unwrap();
    let addr = driver.local_addrs().peer();
    let mut node = start(driver, &Runner::new(&rt));
    let sock = rt.udp_bind(any()).await.unwrap();
    rt.udp_try_send_to(&sock, b"not a frame", addr).unwrap();
    let ping = Frame::new(Kind(0x7701), Bytes::from_static(b"ping"));
    rt.udp_try_send_to(&sock, &ping.to_bytes(), addr).unwrap();
    // Only the good datagram reaches the machine, and its reply comes back.
    let from = rt.udp_local_addr(&sock).unwrap();
    assert_eq!(event(&mut node).await, Seen::Frame(from, ping.clone()));
    let mut buf = vec![0u8; 2048];
    let (n, _) = within(&rt, "reply datagram", rt.udp_recv_from(&sock, &mut buf))
        .await
        .unwrap();
    let back = decode_frame(&Bytes::copy_from_slice(&buf[..n]), &Limits::default()).unwrap();
    assert_eq!(back, ping);
    let stats = node.stats();
    assert_eq!((stats.decode_errors, stats.frames_in), (1, 1));
    node.shutdown().await;
}

async fn a_client_that_does_not_read_is_closed<R: Runtime>(rt: R) {
    let mut config = DriverConfig::tcp(any()).with_client_listen(any());
    config.client_queue = 4;
    let driver = Driver::<R>::bind(config).await.unwrap();
    let addr = driver.local_addrs().client().unwrap();
    let mut node = start(driver, &Runner::new(&rt));
    let (mut rd, mut wr) = rt.tcp_connect(addr).await.unwrap();
    wr.write_all(b"flood\n").await.unwrap();
    let Seen::Opened(c, _) = event(&mut node).await else {
        panic!("expected an open")
    };
    assert_eq!(event(&mut node).await, Seen::Closed(c));
    assert_eq!(node.stats().slow_clients, 1);
    // The connection is closed: reading ends (with EOF or a reset) well before 16 MiB.
    let sink = within(&rt, "closed", read_to_end(&mut rd)).await;
    assert!(sink.len() < 256 * 64 * 1024);
    node.shutdown().await;
}

fn temp_socket(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flotilla-drivers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// A Unix socket listener next to a TCP one: its clients say which listener they came
/// in on, a socket file left by a dead process is replaced, and the file is removed at
/// shutdown.
async fn unix_socket_clients<R: Runtime>(rt: R) {
    let path = temp_socket(&format!("unix-{}.sock", std::any::type_name::<R>().len()));
    // A stale socket file: bound, then its listener gone.
    drop(rt.unix_bind(&path).unwrap());
    assert!(path.exists());
    let config = DriverConfig::tcp(any()).with_listener(
        ListenerId(2),
        ListenAddr::Unix(path.clone()),
        Carries::Clients,
    );
    let driver = Driver::<R>::bind(config).await.unwrap();
    assert_eq!(
        driver.local_addrs().listener(ListenerId(2)),
        Some(&ListenAddr::Unix(path.clone()))
    );
    let mut node = start(driver, &Runner::new(&rt));

    let mut c = LineClient::<R>::connect(path.to_str().unwrap())
        .await
        .unwrap();
    let Seen::Opened(_, origin) = event(&mut node).await else {
        panic!("expected an open")
    };
    assert_eq!(origin.listener, ListenerId(2));
    assert_eq!(origin.remote, ClientRemote::Unix);
    assert!(origin.is_same_host());
    let text = within(&rt, "multi", c.request("multi")).await.unwrap();
    assert_eq!(text, "a\nb\nc");

    // A second driver on the same live socket is refused.
    let again = DriverConfig::new(flotilla_driver::PeerTransport::None).with_listener(
        ListenerId(2),
        ListenAddr::Unix(path.clone()),
        Carries::Clients,
    );
    let err = Driver::<R>::bind(again).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

    node.shutdown().await;
    assert!(!path.exists(), "the socket file is removed at shutdown");
}

/// Notices sent unasked are kept in order, also while a request waits for its reply.
async fn line_clients_get_notices_and_multi_line_replies<R: Runtime>(rt: R) {
    let driver = Driver::<R>::bind(DriverConfig::tcp(any())).await.unwrap();
    let addr = driver.local_addrs().peer();
    let node = start(driver, &Runner::new(&rt));
    let mut c = LineClient::<R>::connect(&addr.to_string()).await.unwrap();
    assert_eq!(
        within(&rt, "multi", c.request("multi")).await.unwrap(),
        "a\nb\nc"
    );
    assert_eq!(
        within(&rt, "notice", c.request("notice 3")).await.unwrap(),
        "sent 3"
    );
    assert_eq!(c.unread_notices(), 3);
    for k in 0..3 {
        let n = within(&rt, "next notice", c.next_notice()).await.unwrap();
        assert_eq!((n.code, n.text), (601, format!("n-{k}")));
    }
    // A reply with no request pending is a protocol error, not a notice.
    let (mut rd, mut wr) = rt.tcp_connect(addr).await.unwrap();
    wr.write_all(b"x\n").await.unwrap();
    assert_eq!(within(&rt, "echo", read_exact(&mut rd, 2)).await, b"X\n");
    node.shutdown().await;
}

/// Past `max_clients` a client is told why and closed; others are unaffected, and a freed
/// slot is usable again.
async fn past_the_client_cap_a_client_is_told_why<R: Runtime>(rt: R) {
    let mut config = DriverConfig::tcp(any());
    config.max_clients = 2;
    let driver = Driver::<R>::bind(config).await.unwrap();
    let addr = driver.local_addrs().peer();
    let mut node = start(driver, &Runner::new(&rt));
    let mut held = Vec::new();
    for k in 0..2 {
        let (mut rd, mut wr) = rt.tcp_connect(addr).await.unwrap();
        wr.write_all(format!("c{k}\n").as_bytes()).await.unwrap();
        assert_eq!(
            within(&rt, "echo", read_exact(&mut rd, 3)).await,
            format!("C{k}\n").as_bytes()
        );
        held.push((rd, wr));
    }
    let (mut rd, mut wr) = rt.tcp_connect(addr).await.unwrap();
    let _ = wr.write_all(b"hello\n").await;
    let refusal = within(&rt, "refusal", read_to_end(&mut rd)).await;
    assert_eq!(
        String::from_utf8_lossy(&refusal),
        "503 too many connections: try again later\n"
    );
    assert_eq!(node.stats().clients_refused, 1);
    // Free a slot: a new client gets in.
    drop(held.pop());
    let mut opened = 0;
    while opened < 2 {
        if let Seen::Opened(..) = event(&mut node).await {
            opened += 1;
        }
    }
    within(&rt, "slot freed", async {
        loop {
            if let Seen::Closed(_) = event(&mut node).await {
                break;
            }
        }
    })
    .await;
    echo_and_quit(&rt, addr, "again\n").await;
    node.shutdown().await;
}

// ----- effects and commands ------------------------------------------------------------

async fn request_on<R: Runtime>(c: &mut LineClient<R>, line: &str) -> String {
    let rt = R::default();
    match within(&rt, line, c.request(line)).await {
        Ok(t) => format!("ok: {t}"),
        Err(Error::Server(ClientError::Refused { code, text })) => format!("{code}: {text}"),
        Err(e) => panic!("{line}: {e}"),
    }
}

/// Effects run off the machine's loop, at most `effect_concurrency` at once, each under a
/// time limit; failures, timeouts, a full queue and a panicking runner all come back as
/// typed outcomes.
async fn effects_run_off_the_loop_bounded_and_timed<R: Runtime>(rt: R) {
    let mut config = DriverConfig::tcp(any());
    config.effect_concurrency = 2;
    config.effect_queue = 2;
    config.effect_timeout = Duration::from_millis(400);
    let driver = Driver::<R>::bind(config).await.unwrap();
    let addr = driver.local_addrs().peer();
    let runner = Runner::new(&rt);
    let node = start(driver, &runner);
    let mut c = LineClient::<R>::connect(&addr.to_string()).await.unwrap();

    assert_eq!(request_on(&mut c, "effect ok 42").await, "ok: ok 42");
    assert_eq!(
        request_on(&mut c, "effect fail disk full").await,
        "500: err disk full"
    );
    assert_eq!(
        request_on(&mut c, "effect panic").await,
        "500: err the effect's task ended without an outcome (its runner panicked)"
    );

    // A hung effect does not hold the loop: other clients are served meanwhile, and the
    // hung one times out.
    let (mut rd, mut wr) = rt.tcp_connect(addr).await.unwrap();
    wr.write_all(b"effect hang\n").await.unwrap();
    sleep(&rt, Duration::from_millis(50)).await;
    echo_and_quit(&rt, addr, "still here\n").await;
    let timed_out = within(&rt, "timeout", read_exact(&mut rd, 30)).await;
    assert!(
        String::from_utf8_lossy(&timed_out).starts_with("500 err timed out after 400ms"),
        "{}",
        String::from_utf8_lossy(&timed_out)
    );

    // Five at once: two run, two wait, the fifth is refused at once as overloaded.
    let (mut rd, mut wr) = rt.tcp_connect(addr).await.unwrap();
    wr.write_all("effect slow 150\n".repeat(5).as_bytes())
        .await
        .unwrap();
    let mut lines = String::new();
    while lines.lines().count() < 5 {
        let chunk = within(&rt, "burst", read_exact(&mut rd, 1)).await;
        lines.push_str(&String::from_utf8_lossy(&chunk));
    }
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(
        lines[0], "500 err too many effects waiting to run",
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| **l == "200 ok slept 150").count(),
        4,
        "{lines:?}"
    );
    assert_eq!(
        runner.most.load(Ordering::SeqCst),
        2,
        "never more than two at once"
    );

    let s = node.stats();
    assert_eq!((s.effects_done, s.effects_timed_out), (5, 1), "{s:?}");
    assert_eq!(s.effects_failed, 3, "{s:?}");
    node.shutdown().await;
}

/// A command the machine refuses comes back to the program as the machine's typed error;
/// an accepted one is `Ok`.
async fn refused_commands_reach_the_program_typed<R: Runtime>(rt: R) {
    let driver = Driver::<R>::bind(DriverConfig::tcp(any())).await.unwrap();
    let mut node = start(driver, &Runner::new(&rt));
    assert_eq!(
        node.command(EchoCommand::Refuse).await,
        Err(CommandError::Refused(EchoError::Refused))
    );
    assert_eq!(node.command(EchoCommand::Say("hi".into())).await, Ok(()));
    assert_eq!(event(&mut node).await, Seen::Said("hi".into()));
    let commander = node.commander();
    node.shutdown().await;
    assert_eq!(
        commander.command(EchoCommand::Say("late".into())).await,
        Err(CommandError::Stopped)
    );
}

// ----- heartbeats over UDP and TCP -----------------------------------------------------

fn heartbeat<R: Runtime>(driver: &Driver<R>, peers: &[SocketAddr], seed: u64) -> Heartbeat {
    let me = driver.local_addrs().peer();
    let mut cfg = HeartbeatConfig::lan(me, peers.to_vec());
    cfg.interval = Duration::from_millis(50);
    cfg.timeout = Duration::from_millis(300);
    Heartbeat::new(cfg, driver.now(), Rng::from_seed(seed)).unwrap()
}

/// Waits until `node` has reported every `(peer, up)` pair in `want` as its latest state.
async fn expect_peers<R: Runtime>(
    node: &mut NodeHandle<Heartbeat, R>,
    want: &[(SocketAddr, bool)],
) {
    let rt = R::default();
    let mut pending: Vec<(SocketAddr, bool)> = want.to_vec();
    let me = node.local_addrs().peer();
    let waited = timeout(&rt, LIVENESS, async {
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

/// Three heartbeat nodes see each other up, see a stopped one down, and see it up again
/// when it restarts on the same port with a new incarnation.
async fn three_heartbeat_nodes<R: Runtime>(tcp: bool) {
    let config = |a: SocketAddr| {
        if tcp {
            DriverConfig::tcp(a)
        } else {
            DriverConfig::udp(a)
        }
    };
    let mut drivers = Vec::new();
    for _ in 0..3 {
        drivers.push(Driver::<R>::bind(config(any())).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = drivers.iter().map(|d| d.local_addrs().peer()).collect();
    let mut nodes: Vec<NodeHandle<Heartbeat, R>> = drivers
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let m = heartbeat(&d, &addrs, i as u64 + 1);
            d.start(m)
        })
        .collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        let others: Vec<_> = (0..3)
            .filter(|j| *j != i)
            .map(|j| (addrs[j], true))
            .collect();
        expect_peers(node, &others).await;
    }
    let third = nodes.pop().unwrap();
    let old = third.shutdown().await;
    for node in &mut nodes {
        expect_peers(node, &[(addrs[2], false)]).await;
    }
    // Same port, new incarnation.
    let d = Driver::<R>::bind(config(addrs[2])).await.unwrap();
    assert_eq!(d.local_addrs().peer(), addrs[2]);
    let m = heartbeat(&d, &addrs, 99);
    assert_ne!(m.incarnation(), old.incarnation());
    let mut third = d.start(m);
    for node in &mut nodes {
        expect_peers(node, &[(addrs[2], true)]).await;
    }
    expect_peers(&mut third, &[(addrs[0], true), (addrs[1], true)]).await;
    for node in nodes {
        let s = node.stats();
        assert!(s.frames_in > 0 && s.frames_out > 0, "{s:?}");
        assert_eq!(s.decode_errors, 0, "{s:?}");
        node.shutdown().await;
    }
    third.shutdown().await;
}

async fn three_heartbeat_nodes_over_udp<R: Runtime>(_rt: R) {
    three_heartbeat_nodes::<R>(false).await;
}

async fn three_heartbeat_nodes_over_tcp<R: Runtime>(_rt: R) {
    three_heartbeat_nodes::<R>(true).await;
}

// ----- the ship client against in-process ships ---------------------------------------

const CONFIG: &str = "(:param mode fast)
(:node db (:host db1.example) (:param port 5432))
(:node render (:param port 7000) (:node r1 (:dynamic)) (:node r2 (:dynamic)))";

/// Starts a ship on a free port; a daughtership is returned once it holds a snapshot.
async fn ship<R: Runtime>(
    parent: Option<SocketAddr>,
    seed: u64,
) -> (NodeHandle<Ship, R>, SocketAddr) {
    let rt = R::default();
    let driver = Driver::<R>::bind(DriverConfig::tcp(any()))
        .await
        .expect("bind");
    let me = driver.local_addrs().peer();
    let cfg = match parent {
        None => ShipConfig::mothership(me, ConfigTree::parse(CONFIG).expect("config")),
        Some(p) => ShipConfig::daughtership(me, p),
    };
    let machine = Ship::new(cfg, driver.now(), Rng::from_seed(seed)).expect("ship");
    let mut node = driver.start(machine);
    if parent.is_some() {
        within(&rt, "daughtership synced", async {
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

fn refused_code(e: &Error) -> Option<u16> {
    match e {
        Error::Server(ClientError::Refused { code, .. }) => Some(*code),
        _ => None,
    }
}

async fn ship_client_get_set_claim_through_a_daughtership<R: Runtime>(rt: R) {
    let (m, m_addr) = ship::<R>(None, 1).await;
    let (d, d_addr) = ship::<R>(Some(m_addr), 2).await;
    let mut at_d = ShipClient::<R>::connect(&d_addr.to_string())
        .await
        .expect("connect d");
    let mut at_m = ShipClient::<R>::connect(&m_addr.to_string())
        .await
        .expect("connect m");
    assert_eq!(at_d.get("mode").await.unwrap(), "fast");
    assert_eq!(at_d.get("db/port").await.unwrap(), "5432");
    assert_eq!(at_d.get("db/host").await.unwrap(), "db1.example");
    let v = within(&rt, "set", at_d.set("render/port", "7001"))
        .await
        .expect("set");
    assert!(v >= 1, "version {v}");
    // Read-your-writes at the daughtership, and the root decided it.
    assert_eq!(at_d.get("render/port").await.unwrap(), "7001");
    assert_eq!(at_m.get("render/port").await.unwrap(), "7001");
    let node = within(&rt, "claim", at_d.claim("render/*", Some("h1")))
        .await
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
    assert!(matches!(e, Error::Server(ClientError::Invalid(_))), "{e}");
    d.shutdown().await;
    m.shutdown().await;
}

async fn ship_client_accept_and_connect_meet_across_daughterships<R: Runtime>(rt: R) {
    let (m, m_addr) = ship::<R>(None, 11).await;
    let (a, a_addr) = ship::<R>(Some(m_addr), 12).await;
    let (b, b_addr) = ship::<R>(Some(m_addr), 13).await;
    let mut acceptor = ShipClient::<R>::connect(&a_addr.to_string())
        .await
        .expect("connect a");
    let accepting = rt.spawn(async move {
        acceptor
            .accept("svc", "127.0.0.1:7777", Some(Duration::from_secs(10)))
            .await
    });
    let mut connector = ShipClient::<R>::connect(&b_addr.to_string())
        .await
        .expect("connect b");
    let connected = within(
        &rt,
        "connect",
        connector.connect_key("svc", Some(Duration::from_secs(10)), Some("bob")),
    )
    .await
    .expect("connect");
    let accepted = within(&rt, "accept", accepting).await.expect("accept");
    assert_eq!(connected.acceptor, "127.0.0.1:7777");
    assert_eq!(connected.conn, accepted.conn);
    assert_eq!(accepted.client, "bob");
    b.shutdown().await;
    a.shutdown().await;
    m.shutdown().await;
}

async fn ship_client_an_unmatched_connect_expires_naming_its_key<R: Runtime>(rt: R) {
    let (m, m_addr) = ship::<R>(None, 21).await;
    let mut c = ShipClient::<R>::connect(&m_addr.to_string())
        .await
        .expect("connect");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    c.on_progress(move |t| log.lock().unwrap().push(t.to_string()));
    let e = within(
        &rt,
        "connect",
        c.connect_key("lonely", Some(Duration::from_millis(300)), None),
    )
    .await
    .unwrap_err();
    assert_eq!(refused_code(&e), Some(408), "{e}");
    assert!(e.to_string().contains("lonely"), "{e}");
    // Progress lines, if any came, were passed on rather than taken for the reply.
    assert!(seen.lock().unwrap().iter().all(|t| !t.is_empty()));
    m.shutdown().await;
}

async fn ship_client_a_closed_ship_is_an_io_error<R: Runtime>(rt: R) {
    let (m, m_addr) = ship::<R>(None, 31).await;
    let addr = m_addr.to_string();
    let mut c = ShipClient::<R>::connect(&addr).await.expect("connect");
    let pending = rt.spawn(async move { c.connect_key("gone", None, None).await });
    // Make sure the request is in before the ship goes away.
    let mut probe = ShipClient::<R>::connect(&addr).await.expect("probe");
    within(&rt, "request pending", async {
        while !probe.status().await.unwrap().contains("pending=1") {
            sleep(&rt, Duration::from_millis(20)).await;
        }
    })
    .await;
    m.shutdown().await;
    let e = within(&rt, "answered", pending).await.unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e}");
    assert!(ShipClient::<R>::connect(&addr).await.is_err());
}

/// The connect climbs to the mothership first; the accept that arrives afterwards at the
/// same daughtership must still find it (SPEC.md §5.5: local accepts re-route).
async fn ship_client_a_waiting_connect_meets_a_later_accept<R: Runtime>(rt: R) {
    let (m, m_addr) = ship::<R>(None, 41).await;
    let (d, d_addr) = ship::<R>(Some(m_addr), 42).await;
    let addr = d_addr.to_string();
    let mut connector = ShipClient::<R>::connect(&addr).await.expect("connect");
    let connecting = rt.spawn(async move {
        connector
            .connect_key("late", Some(Duration::from_secs(10)), Some("eve"))
            .await
    });
    let mut probe = ShipClient::<R>::connect(&addr).await.expect("probe");
    within(&rt, "connect pending", async {
        while !probe.status().await.unwrap().contains("pending=1 ") {
            sleep(&rt, Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut acceptor = ShipClient::<R>::connect(&addr).await.expect("connect");
    let accepted = within(
        &rt,
        "accept",
        acceptor.accept("late", "127.0.0.1:7", Some(Duration::from_secs(10))),
    )
    .await
    .expect("accept");
    let connected = within(&rt, "connect", connecting).await.expect("connect");
    assert_eq!(connected.acceptor, "127.0.0.1:7");
    assert_eq!(connected.conn, accepted.conn);
    assert_eq!(accepted.client, "eve");
    d.shutdown().await;
    m.shutdown().await;
}

// ----- the flood client ----------------------------------------------------------------

/// Three flood sites in this process, `s0` the master, each with a data port (peers) and
/// a client port bound first so that the configuration names the ports they got. Returns
/// each node with its client address.
async fn flood_sites<R: Runtime>() -> Vec<(NodeHandle<Flood, R>, SocketAddr)> {
    let mut drivers = Vec::new();
    for _ in 0..3 {
        let config = DriverConfig::new(PeerTransport::Tcp)
            .with_listener(ListenerId(0), ListenAddr::Tcp(any()), Carries::Peers)
            .with_listener(ListenerId(1), ListenAddr::Tcp(any()), Carries::Clients);
        drivers.push(Driver::<R>::bind(config).await.expect("bind"));
    }
    let port = |d: &Driver<R>, id| d.local_addrs().tcp(ListenerId(id)).expect("tcp").port();
    let mut text = String::new();
    for (i, d) in drivers.iter().enumerate() {
        text.push_str(&format!(
            "(:site-define (:site-name s{i}) (:inet-address 127.0.0.1) (:client-port {}) \
             (:data-port {}))\n",
            port(d, 1),
            port(d, 0)
        ));
    }
    text.push_str(
        "(:group-define (:group-name g) (:site s0) (:site s1) (:site s2) (:master-site s0) \
         (:ping-period 0.2) (:digest-period 0.1))",
    );
    let cfg = FloodConfig::parse(&text).expect("configuration");
    drivers
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let settings = FloodSettings::from_config(&cfg, &format!("s{i}"), &mut |_| None)
                .expect("settings");
            let client = d.local_addrs().tcp(ListenerId(1)).expect("client port");
            let machine = Flood::new(settings, d.now(), Rng::from_seed(60 + i as u64));
            // No export command: what arrives is dropped, and no effect is asked for.
            let mut node = d.start(machine);
            drop(node.take_events());
            (node, client)
        })
        .collect()
}

/// Every request of the flood client against real daemons: floods both ways, reads
/// back, refusals typed, the limit kept, and `nearest_confirmed` probed then cached.
async fn flood_client_floods_and_reads_back<R: Runtime>(rt: R) {
    let sites = flood_sites::<R>().await;
    let mut c = FloodClient::<R>::connect(&sites[0].1.to_string())
        .await
        .expect("connect");
    assert!(
        c.greeting().starts_with("floodd s0 ready"),
        "{}",
        c.greeting()
    );
    let topo = within(&rt, "a topology of three", async {
        loop {
            match c.topology(None).await {
                Ok(t) if t.members == 3 => break t,
                Ok(_) => {}
                Err(e) => assert_eq!(refused_code(&e), Some(451), "{e}"),
            }
            sleep(&rt, Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!((topo.group.as_str(), topo.master.as_str()), ("g", "s0"));
    assert!(topo.links.len() >= 2, "{topo:?}");
    assert_eq!(
        c.groups().await.expect("groups"),
        [GroupSummary {
            name: "g".into(),
            master: "s0".into(),
            members: 3,
            mode: "tree".into()
        }]
    );
    let members = c.group(None).await.expect("group");
    assert_eq!(members.len(), 3, "{members:?}");
    assert_eq!(
        (
            members[0].site.as_str(),
            members[0].role.as_str(),
            members[0].master
        ),
        ("s0", "self", true)
    );
    assert_eq!(members[0].client, Some(sites[0].1));
    let e = c.group(Some("nosuch")).await.unwrap_err();
    assert_eq!(refused_code(&e), Some(501), "{e}");
    assert!(matches!(
        c.group(Some("two words")).await,
        Err(Error::Server(ClientError::Invalid(_)))
    ));

    let one = c.data(None, b"one\n.two\n").await.expect("data");
    assert_eq!((one.origin.as_str(), one.seq, one.bytes), ("s0", 1, 9));
    let two = c.binary(Some("g"), b"\x00\n.\n\xff").await.expect("binary");
    assert_eq!(
        (two.seq, two.bytes, two.incarnation),
        (2, 5, one.incarnation)
    );
    // Past the limit `data` is refused, typed, and the connection goes on.
    let e = c
        .data(None, &vec![b'x'; MAX_UPDATE_BYTES + 1])
        .await
        .unwrap_err();
    assert_eq!(refused_code(&e), Some(552), "{e}");
    assert_eq!(c.groups().await.expect("groups").len(), 1);

    let mut c1 = FloodClient::<R>::connect(&sites[1].1.to_string())
        .await
        .expect("connect s1");
    let stats = within(&rt, "s1 to have both updates", async {
        loop {
            let stats = c1.statistics().await.expect("statistics");
            if stats.contains(&("delivered".to_string(), "2".to_string())) {
                break stats;
            }
            sleep(&rt, Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(stats[0], ("site".to_string(), "s1".to_string()));
    assert!(c1.gaps(None).await.expect("gaps").is_empty());

    let nearest = c.nearest().await.expect("nearest");
    assert_eq!(nearest.len(), 3, "{nearest:?}");
    assert_eq!(
        (nearest[0].site.as_str(), nearest[0].addr, nearest[0].rtt),
        ("s0", sites[0].1, Some(Duration::ZERO))
    );
    let best = c.nearest_confirmed(3).await.expect("nearest_confirmed");
    assert!(
        nearest
            .iter()
            .any(|n| n.site == best.site && n.addr == best.addr),
        "{best:?}"
    );
    assert!(best.rtt.is_some());
    // Cached: the same answer, the probe's own measurement included.
    assert_eq!(c.nearest_confirmed(3).await.expect("cached"), best);

    c.quit().await.expect("quit");
    assert!(matches!(c.groups().await, Err(Error::Io(_))));
    let mut c2 = FloodClient::<R>::connect(&sites[2].1.to_string())
        .await
        .expect("connect s2");
    c2.terminate().await.expect("terminate from this host");
    for (node, _) in sites {
        node.shutdown().await;
    }
}

// ----- run every body under every runtime ----------------------------------------------

fn on_tokio<F: Future<Output = ()>>(body: impl FnOnce(flotilla_tokio::Tokio) -> F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(body(flotilla_tokio::Tokio));
}

// ----- the group client --------------------------------------------------------------

/// Two group daemons (membership, groups, services) in this process on loopback, the
/// second joined through the first. Returns each node with its address.
async fn group_daemons<R: Runtime>(
    rt: &R,
) -> Vec<(
    NodeHandle<flotilla_core::groups::GroupDaemon, R>,
    SocketAddr,
)> {
    use flotilla_core::groups::front::{FrontSettings, GroupsFront};
    use flotilla_core::groups::{GroupDaemon, GroupsSettings, MembershipLink};
    use flotilla_core::membership::{Membership, MembershipSettings};
    let mut out: Vec<(NodeHandle<GroupDaemon, R>, SocketAddr)> = Vec::new();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let d = Driver::<R>::bind(DriverConfig::tcp(any()))
            .await
            .expect("bind");
        let addr = d.local_addrs().peer();
        let mut s = MembershipSettings::new(name, addr);
        if let Some((_, first)) = out.first() {
            s.join = vec![*first];
        }
        let m = Membership::new(s, d.now(), Rng::from_seed(90 + i as u64));
        let mut fs = FrontSettings::new(GroupsSettings {
            me: m.me().clone(),
            canary_deliver_early: false,
        });
        fs.ports = (7300, 7309);
        let g = GroupsFront::new(fs, d.now());
        let mut node = d.start(GroupDaemon::linked(m, g, MembershipLink));
        drop(node.take_events());
        out.push((node, addr));
    }
    let at = out[1].1.to_string();
    within(rt, "two daemons in one view", async {
        loop {
            let mut c = GroupClient::<R>::connect(&at).await.expect("connect");
            if c.daemon_view().await.is_ok_and(|v| v.members.len() == 2) {
                break;
            }
            sleep(rt, Duration::from_millis(50)).await;
        }
    })
    .await;
    out
}

/// Every request of the group client against real daemons: names, joins, messages in
/// order with their notices, members, services bound, resolved, recovered and released,
/// refusals typed.
async fn group_client_groups_and_services<R: Runtime>(rt: R) {
    let daemons = group_daemons(&rt).await;
    let (a, b) = (daemons[0].1.to_string(), daemons[1].1.to_string());
    let mut alice = GroupClient::<R>::connect(&a).await.expect("connect");
    let mut bob = GroupClient::<R>::connect(&b).await.expect("connect");
    assert_eq!(alice.set_name("alice").await.unwrap(), "alice");
    bob.set_name("bob").await.unwrap();
    alice.join("chat").await.unwrap();
    bob.join("chat").await.unwrap();
    // Alice's first notice is her own join (the whole list), then bob's arrival.
    match alice.next_notice().await.unwrap() {
        GroupNotice::View { cause, members, .. } => {
            assert_eq!(cause, Cause::Join);
            assert_eq!(members, vec![("alice".to_string(), "a".to_string())]);
        }
        other => panic!("{other:?}"),
    }
    match alice.next_notice().await.unwrap() {
        GroupNotice::Change {
            cause,
            count,
            member,
            ..
        } => {
            assert_eq!((cause, count), (Cause::Join, 2));
            assert_eq!(member, ("bob".to_string(), "b".to_string()));
        }
        other => panic!("{other:?}"),
    }
    let payload = b"any bytes: \x00\n\xff";
    bob.send("chat", payload).await.unwrap();
    alice.send("chat", b"second").await.unwrap();
    let mut got = Vec::new();
    for c in [&mut alice, &mut bob] {
        let mut mine = Vec::new();
        while mine.len() < 2 {
            if let GroupNotice::Message {
                sender,
                daemon,
                view,
                seq,
                payload,
                ..
            } = within(&rt, "a message", c.next_notice()).await.unwrap()
            {
                mine.push((sender, daemon, view, seq, payload));
            }
        }
        got.push(mine);
    }
    assert_eq!(got[0], got[1], "one order at both daemons");
    assert!(
        got[0]
            .iter()
            .any(|m| m.0 == "bob" && m.1 == "b" && m.4 == payload)
    );
    // The cheaper FIFO mode: each sender's messages in its order, read as Fifo.
    for k in 0..5u8 {
        bob.send_fifo("chat", &[b'f', k]).await.unwrap();
    }
    for c in [&mut alice, &mut bob] {
        let mut fifo = Vec::new();
        while fifo.len() < 5 {
            if let GroupNotice::Message {
                sender,
                seq,
                payload,
                delivery,
                ..
            } = within(&rt, "a FIFO message", c.next_notice())
                .await
                .unwrap()
            {
                assert_eq!(delivery, Delivery::Fifo);
                assert_eq!(sender, "bob");
                fifo.push((seq, payload));
            }
        }
        let want: Vec<Vec<u8>> = (0..5u8).map(|k| vec![b'f', k]).collect();
        let payloads: Vec<Vec<u8>> = fifo.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(payloads, want, "in bob's order");
        assert!(
            fifo.windows(2).all(|w| w[0].0 < w[1].0),
            "numbered upwards: {fifo:?}"
        );
    }
    let m = bob.members("chat").await.unwrap();
    assert_eq!(m.members.len(), 2);
    assert_eq!(bob.groups().await.unwrap(), vec![("chat".to_string(), 2)]);
    assert_eq!(alice.daemon_view().await.unwrap().members.len(), 2);
    let e = alice.leave("nothing").await.unwrap_err();
    assert_eq!(refused_code(&e), Some(450), "{e}");
    let e = alice.send("#svc:x", b"no").await.unwrap_err();
    assert!(matches!(e, Error::Server(_)), "{e}");

    // Services: one port per service, resolved from the other daemon, one agent per node.
    let mut agent = GroupClient::<R>::connect(&b).await.expect("connect");
    let port = within(&rt, "bind", agent.bind("web")).await.unwrap();
    assert!((7300..=7309).contains(&port));
    let addr = alice.resolve("b", "web").await.unwrap();
    assert_eq!(addr.port(), port);
    let e = bob.bind("web").await.unwrap_err();
    assert_eq!(refused_code(&e), Some(450), "{e}");
    let s = alice.services().await.unwrap();
    assert_eq!(
        (s[0].name.as_str(), s[0].port, s[0].nodes.clone()),
        ("web", port, vec!["b".to_string()])
    );
    let event = loop {
        if let GroupNotice::Start {
            event,
            port: p,
            nodes,
            ..
        } = agent.next_notice().await.unwrap()
        {
            assert_eq!((p, nodes), (port, vec!["b".to_string()]));
            break event;
        }
    };
    assert_eq!(agent.done("web", Some(&event)).await.unwrap(), event);
    loop {
        if let GroupNotice::Finish { event: e, .. } =
            within(&rt, "the barrier to finish", agent.next_notice())
                .await
                .unwrap()
        {
            assert_eq!(e, event);
            break;
        }
    }
    bob.release("web").await.unwrap();
    loop {
        if let GroupNotice::Released { service } =
            within(&rt, "the agent told of the release", agent.next_notice())
                .await
                .unwrap()
        {
            assert_eq!(service, "web");
            break;
        }
    }
    let e = alice.resolve("b", "web").await.unwrap_err();
    assert_eq!(refused_code(&e), Some(450), "{e}");
    for (node, _) in daemons {
        node.shutdown().await;
    }
}

fn on_smol<F: Future<Output = ()>>(body: impl FnOnce(flotilla_smol::Smol) -> F) {
    smol::block_on(body(flotilla_smol::Smol));
}

macro_rules! on_every_runtime {
    ($($name:ident),* $(,)?) => {
        mod tokio_runtime {
            $( #[test] fn $name() { super::on_tokio(super::$name::<flotilla_tokio::Tokio>) } )*
        }
        mod smol_runtime {
            $( #[test] fn $name() { super::on_smol(super::$name::<flotilla_smol::Smol>) } )*
        }
    };
}

on_every_runtime!(
    clients_and_peers_share_a_port,
    bad_datagrams_are_counted_not_delivered,
    a_client_that_does_not_read_is_closed,
    unix_socket_clients,
    line_clients_get_notices_and_multi_line_replies,
    past_the_client_cap_a_client_is_told_why,
    effects_run_off_the_loop_bounded_and_timed,
    refused_commands_reach_the_program_typed,
    three_heartbeat_nodes_over_udp,
    three_heartbeat_nodes_over_tcp,
    ship_client_get_set_claim_through_a_daughtership,
    ship_client_accept_and_connect_meet_across_daughterships,
    ship_client_an_unmatched_connect_expires_naming_its_key,
    ship_client_a_closed_ship_is_an_io_error,
    ship_client_a_waiting_connect_meets_a_later_accept,
    flood_client_floods_and_reads_back,
    group_client_groups_and_services,
);
