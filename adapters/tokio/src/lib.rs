//! # flotilla-tokio
//!
//! Runs any [`flotilla_core::Machine`] over tokio sockets and timers. Nothing here knows a
//! protocol: one task owns the machine and selects over peer frames, client streams, a
//! bounded command channel, shutdown, and one sleep set to `poll_timeout()`; after every
//! input it drains the machine's outputs to sockets, client writers, and a bounded event
//! channel.
//!
//! Binding comes first, so the machine can be built with the address it really got
//! (port 0 works) and with the driver's clock:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig};
//! use flotilla_core::Rng;
//! use flotilla_tokio::{Driver, DriverConfig};
//!
//! let driver = Driver::bind(DriverConfig::udp("127.0.0.1:0".parse()?)).await?;
//! let me = driver.local_addrs().peer;
//! let peers = vec!["127.0.0.1:7002".parse()?];
//! let machine = Heartbeat::new(HeartbeatConfig::lan(me, peers), driver.now(), Rng::from_seed(7))?;
//! let mut node = driver.start(machine);
//! while let Some(event) = node.next_event().await {
//!     println!("{event:?}");
//! }
//! let _machine = node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Every queue is bounded. Peer delivery is best effort: a frame for a peer whose queue is
//! full is dropped and counted. A client that does not read its output is closed. Events
//! are never dropped: the driver waits for the program to take them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ship_client;

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flotilla_core::drive::{
    ClientIds, ClientSend, ClientTable, ClientWrite, Counters, Epoch, FrameReader, LinkSend, Offer,
    Outlet, PeerLinks, Stat, StreamKind, sniff,
};
pub use flotilla_core::drive::{DriverConfig, DriverStats, LocalAddrs, PeerTransport};
use flotilla_core::wire::{Frame, Limits, decode_frame, transport};
use flotilla_core::{ClientId, Input, Instant, Machine, Output, PeerAddr, Transmit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

/// Reads the monotonic clock.
// The one clock read of this crate: the core takes time as an argument, and the driver
// is where it comes from.
#[allow(clippy::disallowed_methods)]
fn clock() -> std::time::Instant {
    std::time::Instant::now()
}

/// Sockets bound, machine not yet running. See the crate docs for the order of calls.
#[derive(Debug)]
pub struct Driver {
    config: DriverConfig,
    peer: PeerSocket,
    clients: Option<TcpListener>,
    local: LocalAddrs,
    epoch: Epoch,
}

#[derive(Debug)]
enum PeerSocket {
    Udp(UdpSocket),
    Tcp(TcpListener),
}

impl Driver {
    /// Binds the peer socket and the client port (if configured). The driver's clock
    /// starts here: [`Driver::now`] is near [`Instant::ZERO`].
    pub async fn bind(config: DriverConfig) -> io::Result<Driver> {
        let epoch = Epoch::new(clock());
        let (peer, peer_addr) = match config.peer {
            PeerTransport::Udp { bind } => {
                let s = UdpSocket::bind(bind).await?;
                let a = s.local_addr()?;
                (PeerSocket::Udp(s), a)
            }
            PeerTransport::Tcp { listen } => {
                let l = TcpListener::bind(listen).await?;
                let a = l.local_addr()?;
                (PeerSocket::Tcp(l), a)
            }
        };
        let clients = match config.client_listen {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let local = LocalAddrs {
            peer: peer_addr,
            client: clients.as_ref().map(|l| l.local_addr()).transpose()?,
        };
        Ok(Driver {
            config,
            peer,
            clients,
            local,
            epoch,
        })
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.local
    }

    /// The driver's current time: pass it to the machine's constructor.
    pub fn now(&self) -> Instant {
        self.epoch.instant(clock())
    }

    /// Spawns the driver task with `machine` and returns its handle. Must be called from
    /// inside a tokio runtime.
    pub fn start<M>(self, machine: M) -> NodeHandle<M>
    where
        M: Machine + Send + 'static,
        M::Command: Send + 'static,
        M::Event: Send + 'static,
    {
        let c = &self.config;
        let (inbound_tx, inbound_rx) = mpsc::channel(c.inbound_capacity.max(1));
        let (cmd_tx, cmd_rx) = mpsc::channel(c.command_capacity.max(1));
        let (ev_tx, ev_rx) = mpsc::channel(c.event_capacity.max(1));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = watch::channel(());
        let stats = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            inbound: inbound_tx,
            stats: stats.clone(),
            ids: ClientIds::default(),
            conns: AtomicU64::new(1),
            limits: c.limits,
            peer_queue: c.peer_queue.max(1),
            client_queue: c.client_queue.max(1),
            connect_timeout: c.connect_timeout,
            me: self.local.peer,
            stop: stop_rx,
        });
        let mut tasks = JoinSet::new();
        let peers = match self.peer {
            PeerSocket::Udp(s) => {
                let s = Arc::new(s);
                tasks.spawn(udp_reader(shared.clone(), s.clone()));
                PeerOut::Udp(s)
            }
            PeerSocket::Tcp(l) => {
                tasks.spawn(accept_loop(shared.clone(), l, true));
                PeerOut::Tcp(PeerLinks::default())
            }
        };
        if let Some(l) = self.clients {
            tasks.spawn(accept_loop(shared.clone(), l, false));
        }
        let node = Node {
            machine,
            epoch: self.epoch,
            shared,
            peers,
            clients: ClientTable::default(),
            events: ev_tx,
            evicted: Vec::new(),
        };
        let task = tokio::spawn(node.run(inbound_rx, cmd_rx, shutdown_rx, stop_tx, tasks));
        NodeHandle {
            commands: cmd_tx,
            events: Some(ev_rx),
            local: self.local,
            epoch: self.epoch,
            stats,
            shutdown: Some(shutdown_tx),
            task,
        }
    }
}

/// A running node. Dropping it stops the node (without waiting); [`NodeHandle::shutdown`]
/// stops it, waits until its sockets are closed, and returns the machine.
#[derive(Debug)]
pub struct NodeHandle<M: Machine> {
    commands: mpsc::Sender<M::Command>,
    events: Option<mpsc::Receiver<M::Event>>,
    local: LocalAddrs,
    epoch: Epoch,
    stats: Arc<Counters>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<M>,
}

impl<M: Machine> NodeHandle<M> {
    /// The addresses the node bound.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.local
    }

    /// The driver's current time, on the clock the machine sees.
    pub fn now(&self) -> Instant {
        self.epoch.instant(clock())
    }

    /// A sender for commands (bounded: `send` waits while the queue is full).
    pub fn commands(&self) -> mpsc::Sender<M::Command> {
        self.commands.clone()
    }

    /// Queues a command, waiting for room. Fails only once the node has stopped.
    pub async fn command(&self, cmd: M::Command) -> Result<(), M::Command> {
        self.commands.send(cmd).await.map_err(|e| e.0)
    }

    /// The next event; `None` once the node stopped or the receiver was taken.
    pub async fn next_event(&mut self) -> Option<M::Event> {
        self.events.as_mut()?.recv().await
    }

    /// Takes the event receiver, to read events from another task. Dropping it tells
    /// the driver nobody listens: events are then discarded.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<M::Event>> {
        self.events.take()
    }

    /// The driver's counters.
    pub fn stats(&self) -> DriverStats {
        self.stats.snapshot()
    }

    /// Stops the node, waits until its listeners and sockets are closed (so the ports can
    /// be bound again), and returns the machine.
    ///
    /// # Panics
    /// If the driver task panicked (a bug in the machine): the panic is resumed here.
    pub async fn shutdown(self) -> M {
        let NodeHandle { shutdown, task, .. } = self;
        if let Some(s) = shutdown {
            let _ = s.send(());
        }
        match task.await {
            Ok(m) => m,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("driver task cancelled: {e}"),
        }
    }
}

/// A tokio channel as the core's routing tables see it.
struct Tx<T>(mpsc::Sender<T>);

impl<T> Outlet<T> for Tx<T> {
    fn offer(&self, item: T) -> Offer<T> {
        match self.0.try_send(item) {
            Ok(()) => Offer::Accepted,
            Err(mpsc::error::TrySendError::Full(t)) => Offer::Full(t),
            Err(mpsc::error::TrySendError::Closed(t)) => Offer::Closed(t),
        }
    }
}

/// What connection tasks tell the machine's task.
enum Inbound {
    Frame {
        from: PeerAddr,
        frame: Frame,
    },
    PeerConnected {
        peer: PeerAddr,
        conn: u64,
        tx: mpsc::Sender<Frame>,
    },
    PeerLost {
        peer: PeerAddr,
        conn: u64,
    },
    ClientOpened {
        id: ClientId,
        tx: mpsc::Sender<ClientWrite>,
        kill: oneshot::Sender<()>,
    },
    ClientData(ClientId, Bytes),
    ClientGone(ClientId),
}

/// What every task of one node needs.
struct Shared {
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<Counters>,
    ids: ClientIds,
    conns: AtomicU64,
    limits: Limits,
    peer_queue: usize,
    client_queue: usize,
    connect_timeout: Duration,
    me: SocketAddr,
    stop: watch::Receiver<()>,
}

impl Shared {
    /// Spawns a connection task that ends when the node stops (the watch sender is
    /// dropped), so no socket outlives its node.
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = fut => {}
                _ = stop.changed() => {}
            }
        });
    }

    fn next_conn(&self) -> u64 {
        self.conns.fetch_add(1, Ordering::Relaxed)
    }
}

enum PeerOut {
    Udp(Arc<UdpSocket>),
    Tcp(PeerLinks<Tx<Frame>>),
}

/// The machine's task.
struct Node<M: Machine> {
    machine: M,
    epoch: Epoch,
    shared: Arc<Shared>,
    peers: PeerOut,
    clients: ClientTable<Tx<ClientWrite>, oneshot::Sender<()>>,
    events: mpsc::Sender<M::Event>,
    evicted: Vec<ClientId>,
}

impl<M: Machine> Node<M> {
    fn now(&self) -> Instant {
        self.epoch.instant(clock())
    }

    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<M::Command>,
        mut shutdown: oneshot::Receiver<()>,
        stop: watch::Sender<()>,
        mut tasks: JoinSet<()>,
    ) -> M {
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        let mut commands_open = true;
        loop {
            // A fresh `now` on every turn, and an overdue deadline fires here rather than
            // through the timer: a runtime that judges expiry by another clock reading, or
            // a sleep starved by the cooperative budget, cannot delay or spin it.
            let now = self.now();
            let deadline = self.machine.poll_timeout();
            if deadline.is_some_and(|d| d <= now) {
                self.machine.handle_timeout(now);
                if self.flush(&mut shutdown).await.is_break() {
                    break;
                }
                continue;
            }
            let wake = deadline.and_then(|d| self.epoch.deadline(d));
            if let Some(at) = wake {
                sleep.as_mut().reset(at.into());
            }
            tokio::select! {
                _ = &mut shutdown => break,
                Some(msg) = inbound.recv() => self.on_inbound(msg),
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(c) => self.feed(Input::Command(c)),
                    None => commands_open = false,
                },
                () = &mut sleep, if wake.is_some() => {}
            }
            if self.flush(&mut shutdown).await.is_break() {
                break;
            }
        }
        drop(stop);
        // Listeners and the UDP reader live in `tasks`: wait until they are dropped, so
        // the caller can bind the same ports again as soon as `shutdown` returns.
        tasks.shutdown().await;
        self.machine
    }

    fn feed(&mut self, input: Input<M::Command>) {
        let now = self.now();
        if let Err(e) = self.machine.handle(now, input) {
            self.shared.stats.bump(Stat::HandleErrors);
            debug!(error = %e, "machine refused input");
        }
    }

    fn on_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Frame { from, frame } => {
                self.shared.stats.bump(Stat::FramesIn);
                self.feed(Input::Frame { from, frame });
            }
            Inbound::PeerConnected { peer, conn, tx } => {
                if let PeerOut::Tcp(links) = &mut self.peers
                    && links.insert(peer, conn, Tx(tx))
                {
                    debug!(%peer, conn, "newer connection replaces the link");
                }
            }
            Inbound::PeerLost { peer, conn } => {
                if let PeerOut::Tcp(links) = &mut self.peers {
                    links.lost(peer, conn);
                }
            }
            Inbound::ClientOpened { id, tx, kill } => {
                self.shared.stats.bump(Stat::ClientsOpened);
                self.clients.opened(id, Tx(tx), kill);
                self.feed(Input::ClientOpened(id));
            }
            Inbound::ClientData(id, data) => {
                // Bytes read before an eviction may still be queued; the machine has
                // already been told the client is gone.
                if self.clients.contains(id) {
                    self.feed(Input::ClientData(id, data));
                }
            }
            Inbound::ClientGone(id) => {
                if self.clients.gone(id) {
                    self.feed(Input::ClientClosed(id));
                }
            }
        }
    }

    /// Drains the machine's outputs; evicted clients are reported back to it, each report
    /// drained in turn. Breaks if shutdown is asked while an event waits for room.
    async fn flush(&mut self, shutdown: &mut oneshot::Receiver<()>) -> ControlFlow<()> {
        loop {
            while let Some(out) = self.machine.poll_output() {
                match out {
                    Output::Transmit(t) => self.transmit(t),
                    Output::ToClient(id, data) => {
                        let sent = self.clients.write(id, data);
                        self.after_client_send(id, sent);
                    }
                    Output::CloseClient(id) => {
                        let sent = self.clients.close(id);
                        self.after_client_send(id, sent);
                    }
                    Output::Event(e) => {
                        tokio::select! {
                            // An error means the program dropped the receiver: nobody
                            // listens, so the event is discarded.
                            _ = self.events.send(e) => {}
                            _ = &mut *shutdown => return ControlFlow::Break(()),
                        }
                    }
                }
            }
            let Some(id) = self.evicted.pop() else {
                return ControlFlow::Continue(());
            };
            self.feed(Input::ClientClosed(id));
        }
    }

    fn after_client_send(&mut self, id: ClientId, sent: ClientSend) {
        if sent == ClientSend::Evicted {
            self.shared.stats.bump(Stat::SlowClients);
            debug!(client = %id, "client queue full: closing a slow consumer");
            self.evicted.push(id);
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let stats = &self.shared.stats;
        match &mut self.peers {
            PeerOut::Udp(sock) => match sock.try_send_to(&t.frame.to_bytes(), t.to) {
                Ok(_) => stats.bump(Stat::FramesOut),
                Err(e) => {
                    stats.bump(Stat::FramesDropped);
                    debug!(peer = %t.to, error = %e, "datagram dropped");
                }
            },
            PeerOut::Tcp(links) => match links.send(t.to, t.frame) {
                LinkSend::Queued => {}
                LinkSend::Dropped => {
                    stats.bump(Stat::FramesDropped);
                    debug!(peer = %t.to, "peer queue full: frame dropped");
                }
                LinkSend::NoLink(frame) => {
                    let conn = self.shared.next_conn();
                    let (tx, rx) = mpsc::channel(self.shared.peer_queue);
                    // A fresh queue always has room for its first frame.
                    let _ = tx.try_send(frame);
                    links.insert(t.to, conn, Tx(tx));
                    self.shared.spawn(dial(self.shared.clone(), t.to, conn, rx));
                }
            },
        }
    }
}

async fn udp_reader(shared: Arc<Shared>, sock: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors can surface here on some systems; the socket stays usable.
                debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let bytes = Bytes::copy_from_slice(&buf[..n]);
        match decode_frame(&bytes, &shared.limits) {
            Ok(frame) if transport::is_transport(&frame) => {
                debug!(%from, kind = %frame.kind, "transport frame ignored over udp");
            }
            Ok(frame) => {
                if shared
                    .inbound
                    .send(Inbound::Frame { from, frame })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                shared.stats.bump(Stat::DecodeErrors);
                debug!(%from, error = %e, "undecodable datagram dropped");
            }
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, sniffing: bool) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let s = shared.clone();
                if sniffing {
                    shared.spawn(sniff_stream(s, stream, remote));
                } else {
                    shared.spawn(client_stream(s, stream, None));
                }
            }
            Err(e) => {
                // Typically out of file descriptors: pause rather than spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn sniff_stream(shared: Arc<Shared>, mut stream: TcpStream, remote: SocketAddr) {
    let mut buf = BytesMut::with_capacity(4096);
    match stream.read_buf(&mut buf).await {
        Ok(n) if n > 0 => {}
        _ => return,
    }
    match sniff(buf[0]) {
        StreamKind::Client => client_stream(shared, stream, Some(buf.freeze())).await,
        StreamKind::Peer => accept_peer(shared, stream, remote, buf).await,
    }
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

async fn accept_peer(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    remote: SocketAddr,
    buf: BytesMut,
) {
    let mut reader = FrameReader::with_buffered(buf, shared.limits);
    let hello = tokio::time::timeout(shared.connect_timeout, read_hello(&mut stream, &mut reader))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
    let peer = match hello {
        Ok(p) => p,
        Err(e) => {
            if e.kind() == io::ErrorKind::InvalidData {
                shared.stats.bump(Stat::DecodeErrors);
            }
            debug!(%remote, error = %e, "peer stream without a valid hello closed");
            return;
        }
    };
    let conn = shared.next_conn();
    let (tx, rx) = mpsc::channel(shared.peer_queue);
    let connected = Inbound::PeerConnected { peer, conn, tx };
    if shared.inbound.send(connected).await.is_err() {
        return;
    }
    peer_stream(shared, stream, peer, conn, rx, reader, None).await;
}

async fn read_hello(stream: &mut TcpStream, reader: &mut FrameReader) -> io::Result<PeerAddr> {
    loop {
        match reader.next_frame().map_err(invalid)? {
            Some(f) => return transport::decode_hello(&f).map_err(invalid),
            None => {
                if stream.read_buf(reader.read_buf(256)).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
}

async fn dial(shared: Arc<Shared>, peer: PeerAddr, conn: u64, mut rx: mpsc::Receiver<Frame>) {
    let connect = tokio::time::timeout(shared.connect_timeout, TcpStream::connect(peer)).await;
    let stream = match connect.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())) {
        Ok(s) => s,
        Err(e) => {
            shared.stats.bump(Stat::DialFailures);
            let dropped = discard(&mut rx);
            shared.stats.add(Stat::FramesDropped, dropped);
            debug!(%peer, error = %e, dropped, "dial failed");
            let _ = shared.inbound.send(Inbound::PeerLost { peer, conn }).await;
            return;
        }
    };
    // The hello goes first so the acceptor can name this stream by our listen address.
    let hello = transport::encode_hello(shared.me).to_bytes();
    let reader = FrameReader::new(shared.limits);
    peer_stream(shared, stream, peer, conn, rx, reader, Some(hello)).await;
}

/// Closes a peer queue and counts what was left in it.
fn discard(rx: &mut mpsc::Receiver<Frame>) -> u64 {
    // Closing first makes the machine's next frame redial instead of queueing here.
    rx.close();
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}

async fn peer_stream(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: PeerAddr,
    conn: u64,
    mut rx: mpsc::Receiver<Frame>,
    mut reader: FrameReader,
    greeting: Option<Bytes>,
) {
    let _ = stream.set_nodelay(true);
    let ended = pump_peer(&shared, &mut stream, peer, &mut rx, &mut reader, greeting).await;
    let dropped = discard(&mut rx);
    shared.stats.add(Stat::FramesDropped, dropped);
    match ended {
        Ok(()) => debug!(%peer, conn, "peer stream ended"),
        Err(e) => debug!(%peer, conn, error = %e, "peer stream failed"),
    }
    let _ = shared.inbound.send(Inbound::PeerLost { peer, conn }).await;
}

async fn pump_peer(
    shared: &Shared,
    stream: &mut TcpStream,
    peer: PeerAddr,
    rx: &mut mpsc::Receiver<Frame>,
    reader: &mut FrameReader,
    greeting: Option<Bytes>,
) -> io::Result<()> {
    let (mut rd, mut wr) = stream.split();
    if let Some(g) = greeting {
        wr.write_all(&g).await?;
    }
    let mut out = BytesMut::new();
    let mut sending = true;
    loop {
        while let Some(frame) = reader.next_frame().map_err(|e| {
            shared.stats.bump(Stat::DecodeErrors);
            invalid(e)
        })? {
            // Only a stream's first frame may be a hello; later transport frames mean
            // nothing to the machine.
            if transport::is_transport(&frame) {
                continue;
            }
            let input = Inbound::Frame { from: peer, frame };
            if shared.inbound.send(input).await.is_err() {
                return Ok(());
            }
        }
        tokio::select! {
            r = rd.read_buf(reader.read_buf(4096)) => {
                if r? == 0 {
                    return Ok(());
                }
            }
            f = rx.recv(), if sending => match f {
                Some(f) => {
                    // Batch what is already queued into one write.
                    out.clear();
                    f.encode(&mut out);
                    let mut n = 1;
                    while n < 64 {
                        let Ok(f) = rx.try_recv() else { break };
                        f.encode(&mut out);
                        n += 1;
                    }
                    wr.write_all(&out).await?;
                    shared.stats.add(Stat::FramesOut, n);
                }
                // A newer connection replaced this one as the link; keep reading.
                None => sending = false,
            },
        }
    }
}

async fn client_stream(shared: Arc<Shared>, stream: TcpStream, first: Option<Bytes>) {
    let id = shared.ids.allocate();
    let (tx, rx) = mpsc::channel(shared.client_queue);
    let (kill, killed) = oneshot::channel();
    let opened = Inbound::ClientOpened { id, tx, kill };
    if shared.inbound.send(opened).await.is_err() {
        return;
    }
    let ended = tokio::select! {
        r = pump_client(&shared, stream, id, rx, first) => r,
        // Evicted: the machine already knows, and dropping the stream closes it.
        _ = killed => return,
    };
    if let Err(e) = ended {
        debug!(client = %id, error = %e, "client stream failed");
    }
    let _ = shared.inbound.send(Inbound::ClientGone(id)).await;
}

async fn pump_client(
    shared: &Shared,
    mut stream: TcpStream,
    id: ClientId,
    mut rx: mpsc::Receiver<ClientWrite>,
    first: Option<Bytes>,
) -> io::Result<()> {
    if let Some(b) = first
        && shared
            .inbound
            .send(Inbound::ClientData(id, b))
            .await
            .is_err()
    {
        return Ok(());
    }
    let (mut rd, mut wr) = stream.split();
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(4096);
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                if r? == 0 {
                    return Ok(());
                }
                let data = Inbound::ClientData(id, buf.split().freeze());
                if shared.inbound.send(data).await.is_err() {
                    return Ok(());
                }
            }
            w = rx.recv() => match w {
                Some(ClientWrite::Data(b)) => wr.write_all(&b).await?,
                Some(ClientWrite::Close) | None => {
                    wr.shutdown().await?;
                    return Ok(());
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lives here rather than in the core, whose code never reads a clock.
    #[test]
    fn epoch_round_trips_and_treats_max_as_never() {
        let origin = clock();
        let e = Epoch::new(origin);
        let later = origin + Duration::from_millis(1500);
        assert_eq!(e.instant(later), Instant::from_millis(1500));
        assert_eq!(e.instant(origin), Instant::ZERO);
        assert_eq!(e.deadline(Instant::from_millis(1500)), Some(later));
        assert_eq!(e.deadline(Instant::MAX), None);
    }
}
