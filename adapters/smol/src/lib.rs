//! # flotilla-smol
//!
//! Runs any [`flotilla_core::Machine`] over smol sockets and timers, with the same
//! semantics and nearly the same API as `flotilla-tokio`: one task owns the machine and
//! races peer frames, client streams, a bounded command channel, shutdown, and one timer
//! set to `poll_timeout()`; after every input it drains the outputs. The runtime-independent
//! parts (configuration, frame reader, sniffing, routing tables, counters) come from
//! [`flotilla_core::drive`].
//!
//! Tasks run on smol's global executor (`smol::spawn`).
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig};
//! use flotilla_core::Rng;
//! use flotilla_smol::{Driver, DriverConfig};
//!
//! smol::block_on(async {
//!     let driver = Driver::bind(DriverConfig::udp("127.0.0.1:0".parse()?)).await?;
//!     let me = driver.local_addrs().peer;
//!     let peers = vec!["127.0.0.1:7002".parse()?];
//!     let machine = Heartbeat::new(HeartbeatConfig::lan(me, peers), driver.now(), Rng::from_seed(7))?;
//!     let mut node = driver.start(machine);
//!     while let Some(event) = node.next_event().await {
//!         println!("{event:?}");
//!     }
//!     node.shutdown().await;
//!     Ok(())
//! })
//! # }
//! ```

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
use smol::channel::{self, Receiver, Sender, TrySendError};
use smol::future;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::{Async, Task, Timer};
use tracing::{debug, warn};

/// Reads the monotonic clock.
// The one clock read of this crate: the core takes time as an argument, and the driver
// is where it comes from.
#[allow(clippy::disallowed_methods)]
fn clock() -> std::time::Instant {
    std::time::Instant::now()
}

/// Sockets bound, machine not yet running.
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
    // Async<std UdpSocket> rather than smol::net::UdpSocket: it gives the non-blocking
    // `send_to` that lets the machine's task drop a frame instead of waiting.
    Udp(Async<std::net::UdpSocket>),
    Tcp(TcpListener),
}

impl Driver {
    /// Binds the peer socket and the client port (if configured). The driver's clock
    /// starts here: [`Driver::now`] is near [`Instant::ZERO`].
    pub async fn bind(config: DriverConfig) -> io::Result<Driver> {
        let epoch = Epoch::new(clock());
        let (peer, peer_addr) = match config.peer {
            PeerTransport::Udp { bind } => {
                let s = Async::<std::net::UdpSocket>::bind(bind)?;
                let a = s.get_ref().local_addr()?;
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

    /// Spawns the driver task with `machine` on smol's global executor.
    pub fn start<M>(self, machine: M) -> NodeHandle<M>
    where
        M: Machine + Send + 'static,
        M::Command: Send + 'static,
        M::Event: Send + 'static,
    {
        let c = &self.config;
        let (inbound_tx, inbound_rx) = channel::bounded(c.inbound_capacity.max(1));
        let (cmd_tx, cmd_rx) = channel::bounded(c.command_capacity.max(1));
        let (ev_tx, ev_rx) = channel::bounded(c.event_capacity.max(1));
        let (shutdown_tx, shutdown_rx) = channel::bounded(1);
        let (stop_tx, stop_rx) = channel::bounded::<()>(1);
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
        let mut tasks = Vec::new();
        let peers = match self.peer {
            PeerSocket::Udp(s) => {
                let s = Arc::new(s);
                tasks.push(smol::spawn(udp_reader(shared.clone(), s.clone())));
                PeerOut::Udp(s)
            }
            PeerSocket::Tcp(l) => {
                tasks.push(smol::spawn(accept_loop(shared.clone(), l, true)));
                PeerOut::Tcp(PeerLinks::default())
            }
        };
        if let Some(l) = self.clients {
            tasks.push(smol::spawn(accept_loop(shared.clone(), l, false)));
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
        let task = smol::spawn(node.run(inbound_rx, cmd_rx, shutdown_rx, stop_tx, tasks));
        NodeHandle {
            commands: cmd_tx,
            events: Some(ev_rx),
            local: self.local,
            epoch: self.epoch,
            stats,
            shutdown: shutdown_tx,
            task,
        }
    }
}

/// A running node. Dropping it cancels the node; [`NodeHandle::shutdown`] stops it, waits
/// until its sockets are closed, and returns the machine.
#[derive(Debug)]
pub struct NodeHandle<M: Machine> {
    commands: Sender<M::Command>,
    events: Option<Receiver<M::Event>>,
    local: LocalAddrs,
    epoch: Epoch,
    stats: Arc<Counters>,
    shutdown: Sender<()>,
    task: Task<M>,
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
    pub fn commands(&self) -> Sender<M::Command> {
        self.commands.clone()
    }

    /// Queues a command, waiting for room. Fails only once the node has stopped.
    pub async fn command(&self, cmd: M::Command) -> Result<(), M::Command> {
        self.commands.send(cmd).await.map_err(|e| e.0)
    }

    /// The next event; `None` once the node stopped or the receiver was taken.
    pub async fn next_event(&mut self) -> Option<M::Event> {
        self.events.as_mut()?.recv().await.ok()
    }

    /// Takes the event receiver, to read events from another task. Dropping it tells
    /// the driver nobody listens: events are then discarded.
    pub fn take_events(&mut self) -> Option<Receiver<M::Event>> {
        self.events.take()
    }

    /// The driver's counters.
    pub fn stats(&self) -> DriverStats {
        self.stats.snapshot()
    }

    /// Stops the node, waits until its listeners and sockets are closed (so the ports can
    /// be bound again), and returns the machine.
    pub async fn shutdown(self) -> M {
        let _ = self.shutdown.try_send(());
        self.task.await
    }
}

/// An async-channel sender as the core's routing tables see it.
struct Tx<T>(Sender<T>);

impl<T> Outlet<T> for Tx<T> {
    fn offer(&self, item: T) -> Offer<T> {
        match self.0.try_send(item) {
            Ok(()) => Offer::Accepted,
            Err(TrySendError::Full(t)) => Offer::Full(t),
            Err(TrySendError::Closed(t)) => Offer::Closed(t),
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
        tx: Sender<Frame>,
    },
    PeerLost {
        peer: PeerAddr,
        conn: u64,
    },
    ClientOpened {
        id: ClientId,
        tx: Sender<ClientWrite>,
        kill: Sender<()>,
    },
    ClientData(ClientId, Bytes),
    ClientGone(ClientId),
}

/// What every task of one node needs.
struct Shared {
    inbound: Sender<Inbound>,
    stats: Arc<Counters>,
    ids: ClientIds,
    conns: AtomicU64,
    limits: Limits,
    peer_queue: usize,
    client_queue: usize,
    connect_timeout: Duration,
    me: SocketAddr,
    stop: Receiver<()>,
}

impl Shared {
    /// Spawns a connection task that ends when the node stops (the stop sender is
    /// dropped), so no socket outlives its node.
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        smol::spawn(future::or(fut, async move {
            let _ = stop.recv().await;
        }))
        .detach();
    }

    fn next_conn(&self) -> u64 {
        self.conns.fetch_add(1, Ordering::Relaxed)
    }
}

enum PeerOut {
    Udp(Arc<Async<std::net::UdpSocket>>),
    Tcp(PeerLinks<Tx<Frame>>),
}

enum Wake<C> {
    Shutdown,
    Inbound(Inbound),
    Command(Option<C>),
    Timer,
}

/// Waits forever: a branch that is switched off.
async fn never<T>() -> T {
    future::pending().await
}

/// The machine's task.
struct Node<M: Machine> {
    machine: M,
    epoch: Epoch,
    shared: Arc<Shared>,
    peers: PeerOut,
    clients: ClientTable<Tx<ClientWrite>, Sender<()>>,
    events: Sender<M::Event>,
    evicted: Vec<ClientId>,
}

impl<M: Machine> Node<M> {
    fn now(&self) -> Instant {
        self.epoch.instant(clock())
    }

    async fn run(
        mut self,
        inbound: Receiver<Inbound>,
        commands: Receiver<M::Command>,
        shutdown: Receiver<()>,
        stop: Sender<()>,
        tasks: Vec<Task<()>>,
    ) -> M {
        let mut timer = Timer::never();
        let mut commands_open = true;
        loop {
            // A fresh `now` on every turn, and an overdue deadline fires here rather than
            // through the timer, so timer slack can neither delay nor spin it.
            let now = self.now();
            let deadline = self.machine.poll_timeout();
            if deadline.is_some_and(|d| d <= now) {
                self.machine.handle_timeout(now);
                if self.flush(&shutdown).await.is_break() {
                    break;
                }
                continue;
            }
            let wake_at = deadline.and_then(|d| self.epoch.deadline(d));
            if let Some(at) = wake_at {
                timer.set_at(at);
            }
            let stopped = async {
                let _ = shutdown.recv().await;
                Wake::Shutdown
            };
            let input = async {
                match inbound.recv().await {
                    Ok(m) => Wake::Inbound(m),
                    Err(_) => never().await,
                }
            };
            let command = async {
                if commands_open {
                    Wake::Command(commands.recv().await.ok())
                } else {
                    never().await
                }
            };
            let timeout = async {
                if wake_at.is_some() {
                    (&mut timer).await;
                    Wake::Timer
                } else {
                    never().await
                }
            };
            // Shutdown first; the rest in random order so no source starves another.
            let wake = future::or(stopped, future::race(input, future::race(command, timeout)));
            match wake.await {
                Wake::Shutdown => break,
                Wake::Inbound(msg) => self.on_inbound(msg),
                Wake::Command(Some(c)) => self.feed(Input::Command(c)),
                Wake::Command(None) => commands_open = false,
                Wake::Timer => {}
            }
            if self.flush(&shutdown).await.is_break() {
                break;
            }
        }
        drop(stop);
        // Listeners and the UDP reader: wait until they are dropped, so the caller can
        // bind the same ports again as soon as `shutdown` returns.
        for t in tasks {
            t.cancel().await;
        }
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
    async fn flush(&mut self, shutdown: &Receiver<()>) -> ControlFlow<()> {
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
                        let events = &self.events;
                        let delivered = future::or(
                            async {
                                // An error means the program dropped the receiver:
                                // nobody listens, so the event is discarded.
                                let _ = events.send(e).await;
                                true
                            },
                            async {
                                let _ = shutdown.recv().await;
                                false
                            },
                        );
                        if !delivered.await {
                            return ControlFlow::Break(());
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
            PeerOut::Udp(sock) => match sock.get_ref().send_to(&t.frame.to_bytes(), t.to) {
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
                    let (tx, rx) = channel::bounded(self.shared.peer_queue);
                    // A fresh queue always has room for its first frame.
                    let _ = tx.try_send(frame);
                    links.insert(t.to, conn, Tx(tx));
                    self.shared.spawn(dial(self.shared.clone(), t.to, conn, rx));
                }
            },
        }
    }
}

async fn udp_reader(shared: Arc<Shared>, sock: Arc<Async<std::net::UdpSocket>>) {
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
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

/// `fut`, or a timeout error after `limit`.
async fn within<T>(limit: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    future::or(fut, async {
        Timer::after(limit).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await
}

async fn sniff_stream(shared: Arc<Shared>, mut stream: TcpStream, remote: SocketAddr) {
    let mut first = [0u8; 4096];
    let n = match stream.read(&mut first).await {
        Ok(n) if n > 0 => n,
        _ => return,
    };
    match sniff(first[0]) {
        StreamKind::Client => {
            let data = Bytes::copy_from_slice(&first[..n]);
            client_stream(shared, stream, Some(data)).await;
        }
        StreamKind::Peer => accept_peer(shared, stream, remote, BytesMut::from(&first[..n])).await,
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
    let hello = within(shared.connect_timeout, read_hello(&mut stream, &mut reader)).await;
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
    let (tx, rx) = channel::bounded(shared.peer_queue);
    let connected = Inbound::PeerConnected { peer, conn, tx };
    if shared.inbound.send(connected).await.is_err() {
        return;
    }
    peer_stream(shared, stream, peer, conn, rx, reader, None).await;
}

async fn read_hello(stream: &mut TcpStream, reader: &mut FrameReader) -> io::Result<PeerAddr> {
    let mut chunk = [0u8; 256];
    loop {
        match reader.next_frame().map_err(invalid)? {
            Some(f) => return transport::decode_hello(&f).map_err(invalid),
            None => match stream.read(&mut chunk).await? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => reader.extend(&chunk[..n]),
            },
        }
    }
}

async fn dial(shared: Arc<Shared>, peer: PeerAddr, conn: u64, rx: Receiver<Frame>) {
    let stream = match within(shared.connect_timeout, TcpStream::connect(peer)).await {
        Ok(s) => s,
        Err(e) => {
            shared.stats.bump(Stat::DialFailures);
            let dropped = discard(&rx);
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
fn discard(rx: &Receiver<Frame>) -> u64 {
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
    stream: TcpStream,
    peer: PeerAddr,
    conn: u64,
    rx: Receiver<Frame>,
    mut reader: FrameReader,
    greeting: Option<Bytes>,
) {
    let _ = stream.set_nodelay(true);
    let ended = pump_peer(&shared, stream, peer, &rx, &mut reader, greeting).await;
    let dropped = discard(&rx);
    shared.stats.add(Stat::FramesDropped, dropped);
    match ended {
        Ok(()) => debug!(%peer, conn, "peer stream ended"),
        Err(e) => debug!(%peer, conn, error = %e, "peer stream failed"),
    }
    let _ = shared.inbound.send(Inbound::PeerLost { peer, conn }).await;
}

enum PeerStep {
    Read(io::Result<usize>),
    Send(Option<Frame>),
}

async fn pump_peer(
    shared: &Shared,
    stream: TcpStream,
    peer: PeerAddr,
    rx: &Receiver<Frame>,
    reader: &mut FrameReader,
    greeting: Option<Bytes>,
) -> io::Result<()> {
    let mut rd = stream.clone();
    let mut wr = stream;
    if let Some(g) = greeting {
        wr.write_all(&g).await?;
    }
    let mut chunk = vec![0u8; 8192];
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
        let read = async { PeerStep::Read(rd.read(&mut chunk).await) };
        let send = async {
            if sending {
                PeerStep::Send(rx.recv().await.ok())
            } else {
                never().await
            }
        };
        match future::race(read, send).await {
            PeerStep::Read(r) => match r? {
                0 => return Ok(()),
                n => reader.extend(&chunk[..n]),
            },
            PeerStep::Send(Some(f)) => {
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
            PeerStep::Send(None) => sending = false,
        }
    }
}

async fn client_stream(shared: Arc<Shared>, stream: TcpStream, first: Option<Bytes>) {
    let id = shared.ids.allocate();
    let (tx, rx) = channel::bounded(shared.client_queue);
    let (kill, killed) = channel::bounded::<()>(1);
    let opened = Inbound::ClientOpened { id, tx, kill };
    if shared.inbound.send(opened).await.is_err() {
        return;
    }
    let pumped = async { Some(pump_client(&shared, stream, id, rx, first).await) };
    // Evicted when the machine's task drops `kill`: it already knows, and dropping the
    // stream closes it.
    let evicted = async {
        let _ = killed.recv().await;
        None
    };
    let Some(ended) = future::or(pumped, evicted).await else {
        return;
    };
    if let Err(e) = ended {
        debug!(client = %id, error = %e, "client stream failed");
    }
    let _ = shared.inbound.send(Inbound::ClientGone(id)).await;
}

enum ClientStep {
    Read(io::Result<usize>),
    Write(Option<ClientWrite>),
}

async fn pump_client(
    shared: &Shared,
    stream: TcpStream,
    id: ClientId,
    rx: Receiver<ClientWrite>,
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
    let mut rd = stream.clone();
    let mut wr = stream;
    let mut chunk = vec![0u8; 4096];
    loop {
        let read = async { ClientStep::Read(rd.read(&mut chunk).await) };
        let write = async { ClientStep::Write(rx.recv().await.ok()) };
        match future::race(read, write).await {
            ClientStep::Read(r) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                let data = Inbound::ClientData(id, Bytes::copy_from_slice(&chunk[..n]));
                if shared.inbound.send(data).await.is_err() {
                    return Ok(());
                }
            }
            ClientStep::Write(Some(ClientWrite::Data(b))) => wr.write_all(&b).await?,
            ClientStep::Write(Some(ClientWrite::Close) | None) => {
                wr.close().await?;
                return Ok(());
            }
        }
    }
}
