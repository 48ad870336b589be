//! Connection tasks: listeners, the first-byte sniff, client streams, peer streams (with
//! the transport hello), and dials. Each is generic over the runtime's stream halves, so
//! TCP and Unix-domain connections run the same code.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use flotilla_core::wire::{Frame, Limits, transport};
use flotilla_core::{ClientId, ClientOrigin, Lane, PeerAddr};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::config::{Carries, ListenAddr, Listener};
use crate::runtime::{ReadHalf, Runtime, TcpAccepted, WriteHalf, timeout};
use crate::tables::{
    ClientIds, ClientWrite, Counters, FrameReader, Offer, Outlet, Stat, StreamKind, sniff,
};

/// Bytes read per call on a stream.
const READ_CHUNK: usize = 16 * 1024;
/// What one read of a client stream takes at most: clients send short lines, and each
/// connection keeps this buffer for its whole life (10,000 idle clients, 40 MiB).
const CLIENT_READ_CHUNK: usize = 4 * 1024;
/// How long a client evicted as too slow is given to take its notice (it still has
/// what was in flight to read first).
const SLOW_NOTICE_WAIT: Duration = Duration::from_secs(10);

/// A bounded channel as the core's routing tables see it.
pub(crate) struct Tx<T>(pub(crate) mpsc::Sender<T>);

impl<T> Outlet<T> for Tx<T> {
    fn offer(&self, item: T) -> Offer<T> {
        match self.0.try_send(item) {
            Ok(()) => Offer::Accepted,
            Err(mpsc::error::TrySendError::Full(t)) => Offer::Full(t),
            Err(mpsc::error::TrySendError::Closed(t)) => Offer::Closed(t),
        }
    }

    fn room(&self) -> usize {
        self.0.capacity()
    }
}

/// A client's write queue, bounded in writes by the channel and in bytes here: bytes
/// queued and not yet written to the socket. A burst of many small writes to a client
/// that reads is fine; a client that lets megabytes pile up is too slow.
pub(crate) struct ClientTx {
    pub(crate) tx: mpsc::Sender<ClientWrite>,
    pub(crate) queued: Arc<AtomicUsize>,
    pub(crate) max_bytes: usize,
}

impl Outlet<ClientWrite> for ClientTx {
    fn offer(&self, item: ClientWrite) -> Offer<ClientWrite> {
        let len = match &item {
            ClientWrite::Data(b) => b.len(),
            ClientWrite::Close => 0,
        };
        let now = self.queued.load(Ordering::Relaxed);
        // One write always goes to a client that has nothing queued, however large.
        if now > 0 && now + len > self.max_bytes {
            return Offer::Full(item);
        }
        match self.tx.try_send(item) {
            Ok(()) => {
                self.queued.fetch_add(len, Ordering::Relaxed);
                Offer::Accepted
            }
            Err(mpsc::error::TrySendError::Full(t)) => Offer::Full(t),
            Err(mpsc::error::TrySendError::Closed(t)) => Offer::Closed(t),
        }
    }

    fn room(&self) -> usize {
        self.tx.capacity()
    }
}

/// What connection tasks tell the machine's task.
pub(crate) enum Inbound {
    Frame {
        from: PeerAddr,
        frame: Frame,
    },
    PeerConnected {
        peer: PeerAddr,
        lane: Lane,
        conn: u64,
        tx: mpsc::Sender<Frame>,
    },
    PeerLost {
        peer: PeerAddr,
        lane: Lane,
        conn: u64,
    },
    ClientOpened {
        id: ClientId,
        origin: ClientOrigin,
        tx: ClientTx,
        kill: oneshot::Sender<()>,
    },
    ClientData(ClientId, Bytes),
    ClientGone(ClientId),
}

/// What every task of one node needs.
pub(crate) struct Shared<R: Runtime> {
    pub(crate) rt: R,
    /// Client input (opens, bytes, closes).
    pub(crate) inbound: mpsc::Sender<Inbound>,
    /// What peer connections read, one queue per lane (indexed by [`Lane::index`]): the
    /// node's loop serves the control queue first (`flotilla_core::turns`).
    pub(crate) from_peers: [mpsc::Sender<Inbound>; 2],
    pub(crate) stats: Arc<Counters>,
    pub(crate) ids: ClientIds,
    pub(crate) conns: AtomicU64,
    pub(crate) limits: Limits,
    pub(crate) peer_queue: usize,
    pub(crate) client_queue: usize,
    pub(crate) client_bytes: usize,
    pub(crate) connect_timeout: Duration,
    /// The control lane's stall bound ([`crate::DriverConfig::control_stall`]).
    pub(crate) control_stall: Duration,
    /// The data lane's bound on unacknowledged bytes ([`crate::DriverConfig::data_stall`]).
    pub(crate) data_stall: Duration,
    /// When each peer was last heard on the control lane, on any of its connections:
    /// the two ends of a pair may each send on the connection the other dialled, so a
    /// connection we write on can be silent by design while the peer is well.
    pub(crate) heard: Mutex<BTreeMap<PeerAddr, std::time::Instant>>,
    pub(crate) me: Option<SocketAddr>,
    pub(crate) stop: watch::Receiver<()>,
    /// Every task holds a clone; the node's shutdown waits until all are dropped.
    pub(crate) alive: Mutex<Option<mpsc::Sender<()>>>,
    pub(crate) open_clients: AtomicUsize,
    pub(crate) max_clients: usize,
    pub(crate) refusal: Bytes,
    pub(crate) slow_notice: Bytes,
    /// True while peer links are congested: client streams are not read then
    /// (`crate::congestion`).
    pub(crate) hold_clients: watch::Receiver<bool>,
}

impl<R: Runtime> Shared<R> {
    /// Spawns a task that ends when the node stops, so no socket outlives its node. Once
    /// the node is stopping, nothing new is spawned.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let Some(alive) = self.alive.lock().ok().and_then(|a| a.clone()) else {
            return;
        };
        let mut stop = self.stop.clone();
        drop(self.rt.spawn(async move {
            let _alive = alive;
            tokio::select! {
                () = fut => {}
                _ = stop.changed() => {}
            }
        }));
    }

    /// The node is stopping: tasks spawned from now on never start.
    pub(crate) fn stopping(&self) {
        if let Ok(mut a) = self.alive.lock() {
            a.take();
        }
    }

    /// The queue for what arrives on `lane`.
    pub(crate) fn lane_inbound(&self, lane: Lane) -> &mpsc::Sender<Inbound> {
        &self.from_peers[lane.index()]
    }

    pub(crate) fn next_conn(&self) -> u64 {
        self.conns.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn heard_at(&self, peer: PeerAddr) -> Option<std::time::Instant> {
        self.heard.lock().ok().and_then(|h| h.get(&peer).copied())
    }

    fn hear(&self, peer: PeerAddr, now: std::time::Instant) {
        if let Ok(mut h) = self.heard.lock() {
            h.insert(peer, now);
        }
    }
}

/// A bound listener, before its accept loop starts.
pub(crate) enum Bound<R: Runtime> {
    Tcp {
        listener: Listener,
        socket: R::TcpListener,
    },
    Unix {
        listener: Listener,
        socket: R::UnixListener,
        path: PathBuf,
    },
}

impl<R: Runtime> Bound<R> {
    pub(crate) async fn bind(rt: &R, l: &Listener) -> io::Result<Self> {
        match &l.addr {
            ListenAddr::Tcp(a) => Ok(Bound::Tcp {
                listener: l.clone(),
                socket: rt.tcp_bind(*a).await?,
            }),
            ListenAddr::Unix(path) => {
                let socket = match rt.unix_bind(path) {
                    Ok(s) => s,
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                        // A socket file left by a process that died: replace it. One that
                        // a live process answers on stays, and binding fails.
                        if rt.unix_connect(path).await.is_ok() {
                            return Err(e);
                        }
                        std::fs::remove_file(path)?;
                        rt.unix_bind(path)?
                    }
                    Err(e) => return Err(e),
                };
                Ok(Bound::Unix {
                    listener: l.clone(),
                    socket,
                    path: path.clone(),
                })
            }
        }
    }

    pub(crate) fn local_addr(&self, rt: &R) -> io::Result<ListenAddr> {
        match self {
            Bound::Tcp { socket, .. } => rt.tcp_local_addr(socket).map(ListenAddr::Tcp),
            Bound::Unix { path, .. } => Ok(ListenAddr::Unix(path.clone())),
        }
    }

    pub(crate) fn unix_path(&self) -> Option<PathBuf> {
        match self {
            Bound::Unix { path, .. } => Some(path.clone()),
            Bound::Tcp { .. } => None,
        }
    }

    /// Starts the accept loop.
    pub(crate) fn serve(self, shared: &Arc<Shared<R>>) {
        match self {
            Bound::Tcp { listener, socket } => {
                shared.spawn(tcp_accept_loop(shared.clone(), socket, listener))
            }
            Bound::Unix {
                listener, socket, ..
            } => shared.spawn(unix_accept_loop(shared.clone(), socket, listener)),
        }
    }
}

async fn tcp_accept_loop<R: Runtime>(shared: Arc<Shared<R>>, socket: R::TcpListener, l: Listener) {
    loop {
        match shared.rt.tcp_accept(&socket).await {
            Ok(TcpAccepted {
                read,
                write,
                peer,
                local,
            }) => {
                let origin = ClientOrigin::tcp(l.id, peer, local);
                shared.spawn(serve(shared.clone(), read, write, l.carries, origin));
            }
            Err(e) => accept_failed(&shared, &e).await,
        }
    }
}

async fn unix_accept_loop<R: Runtime>(
    shared: Arc<Shared<R>>,
    socket: R::UnixListener,
    l: Listener,
) {
    loop {
        match shared.rt.unix_accept(&socket).await {
            Ok((read, write)) => {
                let origin = ClientOrigin::unix(l.id);
                shared.spawn(serve(shared.clone(), read, write, l.carries, origin));
            }
            Err(e) => accept_failed(&shared, &e).await,
        }
    }
}

/// Typically out of file descriptors: pause rather than spin.
async fn accept_failed<R: Runtime>(shared: &Shared<R>, e: &io::Error) {
    warn!(error = %e, "accept failed");
    let at = shared.rt.now() + Duration::from_millis(100);
    shared.rt.sleep_until(at).await;
}

/// How long a connection that arrives at the client cap on a listener that carries both
/// kinds may take to show its first byte: a peer's hello comes at once, so peers still get
/// in while clients are refused, and an idle one is refused without holding on.
const SNIFF_AT_CAP: Duration = Duration::from_millis(250);

/// Serves one accepted connection: as a client, as a peer, or as whichever its first byte
/// says. A connection that may be a client takes a client slot before anything is read,
/// so connections that never send count against the cap and the next one is told why
/// instead of every client hanging on a full descriptor table.
async fn serve<R: Runtime, Rd: ReadHalf, Wr: WriteHalf>(
    shared: Arc<Shared<R>>,
    mut rd: Rd,
    wr: Wr,
    carries: Carries,
    origin: ClientOrigin,
) {
    if carries == Carries::Peers {
        return accept_peer(shared, rd, wr, origin, BytesMut::new()).await;
    }
    let slot = ClientSlot::take(&shared);
    if carries == Carries::Clients {
        return match slot {
            Some(slot) => client_stream(&shared, slot, rd, wr, origin, None).await,
            None => refuse(&shared, wr, &origin).await,
        };
    }
    let mut buf = vec![0u8; READ_CHUNK];
    let read = rd.read(&mut buf);
    let n = if slot.is_some() {
        read.await
    } else {
        timeout(&shared.rt, SNIFF_AT_CAP, read)
            .await
            .unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()))
    };
    let n = match n {
        Ok(n) if n > 0 => n,
        Ok(_) => return,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            return refuse(&shared, wr, &origin).await;
        }
        Err(_) => return,
    };
    let kind = sniff(buf[0]);
    let first = Bytes::copy_from_slice(&buf[..n]);
    // Freed before the connection's long await: an idle client should not keep it.
    drop(buf);
    match (kind, slot) {
        (StreamKind::Client, Some(slot)) => {
            client_stream(&shared, slot, rd, wr, origin, Some(first)).await;
        }
        (StreamKind::Client, None) => refuse(&shared, wr, &origin).await,
        (StreamKind::Peer, slot) => {
            // Peers do not count against the client cap.
            drop(slot);
            let first = BytesMut::from(&first[..]);
            accept_peer(shared.clone(), rd, wr, origin, first).await;
        }
    }
}

/// Tells a client past the cap why, and closes.
async fn refuse<R: Runtime, Wr: WriteHalf>(shared: &Shared<R>, mut wr: Wr, origin: &ClientOrigin) {
    shared.stats.bump(Stat::ClientsRefused);
    debug!(remote = ?origin.remote, "client refused: too many open");
    let _ = wr.write_all(&shared.refusal).await;
    let _ = wr.shutdown().await;
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

async fn accept_peer<R: Runtime, Rd: ReadHalf, Wr: WriteHalf>(
    shared: Arc<Shared<R>>,
    mut rd: Rd,
    wr: Wr,
    origin: ClientOrigin,
    buf: BytesMut,
) {
    let mut reader = FrameReader::with_buffered(buf, shared.limits);
    let hello = timeout(
        &shared.rt,
        shared.connect_timeout,
        read_hello(&mut rd, &mut reader),
    )
    .await
    .unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()));
    let (peer, lane) = match hello {
        Ok(p) => p,
        Err(e) => {
            if e.kind() == io::ErrorKind::InvalidData {
                shared.stats.bump(Stat::DecodeErrors);
            }
            debug!(remote = ?origin.remote, error = %e, "peer stream without a valid hello closed");
            return;
        }
    };
    let conn = shared.next_conn();
    let (tx, rx) = mpsc::channel(shared.peer_queue);
    let connected = Inbound::PeerConnected {
        peer,
        lane,
        conn,
        tx,
    };
    if shared.lane_inbound(lane).send(connected).await.is_err() {
        return;
    }
    let link = Link { peer, lane, conn };
    peer_stream(shared, rd, wr, link, rx, reader, None).await;
}

/// A data-lane connection is given up by the kernel once what it wrote has gone
/// unacknowledged for `data_stall` (SPEC §7.1): across a partition its retransmissions
/// back off, and after the heal nothing would cross until the next one. The control lane
/// has its own, sharper rule (`pump_peer`).
fn limit_stall<R: Runtime, Wr: WriteHalf>(
    shared: &Shared<R>,
    wr: &Wr,
    (peer, lane): (PeerAddr, Lane),
) {
    if lane == Lane::Data
        && let Err(e) = wr.limit_unacknowledged(shared.data_stall)
    {
        debug!(%peer, error = %e, "could not bound a data connection's unacknowledged bytes");
    }
}

async fn read_more<Rd: ReadHalf>(rd: &mut Rd, reader: &mut FrameReader) -> io::Result<usize> {
    let mut chunk = vec![0u8; READ_CHUNK];
    let n = rd.read(&mut chunk).await?;
    reader.extend(&chunk[..n]);
    Ok(n)
}

async fn read_hello<Rd: ReadHalf>(
    rd: &mut Rd,
    reader: &mut FrameReader,
) -> io::Result<(PeerAddr, Lane)> {
    loop {
        match reader.next_frame().map_err(invalid)? {
            Some(f) => return transport::decode_hello(&f).map_err(invalid),
            None => {
                if read_more(rd, reader).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
}

/// One connection to a peer: who, which lane, and the driver's number for it.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Link {
    pub(crate) peer: PeerAddr,
    pub(crate) lane: Lane,
    pub(crate) conn: u64,
}

pub(crate) async fn dial<R: Runtime>(
    shared: Arc<Shared<R>>,
    link: Link,
    mut rx: mpsc::Receiver<Frame>,
) {
    let Link { peer, lane, conn } = link;
    // A control dial that is not through within the stall bound is given up (its frames
    // dropped and counted): the next frame dials afresh (SPEC §7.1). A data dial keeps
    // its frames until `connect_timeout`.
    let wait = match lane {
        Lane::Control => shared.connect_timeout.min(shared.control_stall),
        Lane::Data => shared.connect_timeout,
    };
    let (rd, wr) = match dial_racing(&shared, peer, wait).await {
        Ok(s) => s,
        Err(e) => {
            shared.stats.bump(Stat::DialFailures);
            let dropped = discard(&mut rx);
            shared.stats.add(Stat::FramesDropped, dropped);
            debug!(%peer, error = %e, dropped, "dial failed");
            let lost = Inbound::PeerLost { peer, lane, conn };
            let _ = shared.lane_inbound(lane).send(lost).await;
            return;
        }
    };
    let Some(me) = shared.me else {
        return;
    };
    // The hello goes first so the acceptor can name this stream by our listen address.
    let hello = transport::encode_hello(me, lane).to_bytes();
    let reader = FrameReader::new(shared.limits);
    peer_stream(shared, rd, wr, link, rx, reader, Some(hello)).await;
}

/// How soon a dial tries again with a fresh SYN while its earlier attempts go on. The
/// kernel alone sends its SYN again only after 1 s (then 3 s, 7 s): at 20 % loss a
/// third of dials lose the SYN or its answer, and a flush waited a second for each.
const DIAL_AGAIN: Duration = Duration::from_millis(250);

/// Connects to `peer` within `bound`, starting a fresh attempt every [`DIAL_AGAIN`]
/// beside those still waiting (an answer may be slow rather than lost: the first
/// connection made wins, the others close as they finish). An attempt refused outright
/// ends the dial at once.
async fn dial_racing<R: Runtime>(
    shared: &Arc<Shared<R>>,
    peer: PeerAddr,
    bound: Duration,
) -> io::Result<(R::TcpRead, R::TcpWrite)> {
    let deadline = shared.rt.now() + bound;
    let attempts = (bound.as_millis() / DIAL_AGAIN.as_millis()).max(1) as usize + 1;
    let (tx, mut rx) = mpsc::channel(attempts);
    let mut next = shared.rt.now();
    loop {
        let now = shared.rt.now();
        if now >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if now >= next {
            let (s, tx) = (shared.clone(), tx.clone());
            let left = deadline - now;
            shared.spawn(async move {
                let r = timeout(&s.rt, left, s.rt.tcp_connect(peer))
                    .await
                    .unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()));
                // A connection made after the dial ended is dropped (closed) here.
                let _ = tx.send(r).await;
            });
            next = now + DIAL_AGAIN;
        }
        tokio::select! {
            r = rx.recv() => match r {
                Some(Ok(conn)) => return Ok(conn),
                Some(Err(e)) if e.kind() != io::ErrorKind::TimedOut => return Err(e),
                _ => {}
            },
            () = shared.rt.sleep_until(next.min(deadline)) => {}
        }
    }
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

async fn peer_stream<R: Runtime, Rd: ReadHalf, Wr: WriteHalf>(
    shared: Arc<Shared<R>>,
    mut rd: Rd,
    mut wr: Wr,
    link: Link,
    mut rx: mpsc::Receiver<Frame>,
    mut reader: FrameReader,
    greeting: Option<Bytes>,
) {
    let Link { peer, lane, conn } = link;
    limit_stall(&shared, &wr, (peer, lane));
    let ended = pump_peer(
        &shared,
        &mut rd,
        &mut wr,
        (peer, lane),
        &mut rx,
        &mut reader,
        greeting,
    )
    .await;
    let dropped = discard(&mut rx);
    shared.stats.add(Stat::FramesDropped, dropped);
    match ended {
        Ok(()) => debug!(%peer, %lane, conn, "peer stream ended"),
        Err(e) => debug!(%peer, %lane, conn, error = %e, "peer stream failed"),
    }
    let lost = Inbound::PeerLost { peer, lane, conn };
    let _ = shared.lane_inbound(lane).send(lost).await;
}

async fn pump_peer<R: Runtime, Rd: ReadHalf, Wr: WriteHalf>(
    shared: &Shared<R>,
    rd: &mut Rd,
    wr: &mut Wr,
    (peer, lane): (PeerAddr, Lane),
    rx: &mut mpsc::Receiver<Frame>,
    reader: &mut FrameReader,
    greeting: Option<Bytes>,
) -> io::Result<()> {
    let inbound = shared.lane_inbound(lane);
    if let Some(g) = greeting {
        wr.write_all(&g).await?;
    }
    let mut out = BytesMut::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut sending = true;
    // The control lane's stall rule (SPEC §7.1): the first write the peer has not been
    // heard from since. Data lanes carry group traffic whose queued frames matter and
    // keep TCP's own retransmission.
    let stall = (lane == Lane::Control).then_some(shared.control_stall);
    let mut unanswered: Option<std::time::Instant> = None;
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
            if inbound.send(input).await.is_err() {
                return Ok(());
            }
        }
        let deadline = match (stall, unanswered) {
            (Some(bound), Some(w)) => Some(w + bound),
            _ => None,
        };
        // Far enough never to fire while no deadline is set (the branch is then off).
        let wake = deadline.unwrap_or_else(|| shared.rt.now() + Duration::from_secs(3600));
        tokio::select! {
            r = rd.read(&mut chunk) => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                if stall.is_some() {
                    shared.hear(peer, shared.rt.now());
                }
                reader.extend(&chunk[..n]);
            }
            () = shared.rt.sleep_until(wake), if deadline.is_some() => {
                let now = shared.rt.now();
                match stall_check(unanswered, shared.heard_at(peer), now, shared.control_stall) {
                    Stall::Stalled => return Err(stalled()),
                    Stall::Answered => unanswered = None,
                    Stall::Waiting => {}
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
                    match stall {
                        None => wr.write_all(&out).await?,
                        Some(bound) => {
                            let now = shared.rt.now();
                            if unanswered.is_none_or(|w| {
                                stall_check(Some(w), shared.heard_at(peer), now, bound)
                                    == Stall::Answered
                            }) {
                                unanswered = Some(now);
                            }
                            // A control write the socket does not take within the bound
                            // (its send buffer full of unacknowledged bytes) is a stall too.
                            timeout(&shared.rt, bound, wr.write_all(&out))
                                .await
                                .unwrap_or_else(|| Err(stalled()))?;
                        }
                    }
                    shared.stats.add(Stat::FramesOut, n);
                }
                // A newer connection replaced this one as the link; keep reading.
                None => sending = false,
            },
        }
    }
}

/// Where a control connection stands under the stall rule (SPEC §7.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Stall {
    /// Nothing written is waiting for the peer, or the peer has been heard since the
    /// first write that was: the connection makes progress.
    Answered,
    /// Writes wait for the peer, not yet for the whole bound.
    Waiting,
    /// Writes have waited the whole bound with nothing heard from the peer: the
    /// connection is closed, its queue dropped and counted, and the next frame redials.
    Stalled,
}

/// The stall rule as a pure function: `unanswered` is the first write since the peer was
/// last `heard` (on any of its control connections).
fn stall_check(
    unanswered: Option<std::time::Instant>,
    heard: Option<std::time::Instant>,
    now: std::time::Instant,
    bound: Duration,
) -> Stall {
    let Some(w) = unanswered else {
        return Stall::Answered;
    };
    if heard.is_some_and(|h| h >= w) {
        Stall::Answered
    } else if now.saturating_duration_since(w) >= bound {
        Stall::Stalled
    } else {
        Stall::Waiting
    }
}

fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "control lane stalled")
}

/// One of the `max_clients` places; given back when the stream ends, however it ends.
struct ClientSlot<'a>(&'a AtomicUsize);

impl<'a> ClientSlot<'a> {
    fn take<R: Runtime>(shared: &'a Shared<R>) -> Option<Self> {
        let open = &shared.open_clients;
        if open.fetch_add(1, Ordering::Relaxed) >= shared.max_clients {
            open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ClientSlot(open))
    }
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn client_stream<R: Runtime, Rd: ReadHalf, Wr: WriteHalf>(
    shared: &Shared<R>,
    _slot: ClientSlot<'_>,
    rd: Rd,
    mut wr: Wr,
    origin: ClientOrigin,
    first: Option<Bytes>,
) {
    let id = shared.ids.allocate();
    let (tx, rx) = mpsc::channel(shared.client_queue);
    let queued = Arc::new(AtomicUsize::new(0));
    let tx = ClientTx {
        tx,
        queued: queued.clone(),
        max_bytes: shared.client_bytes,
    };
    let (kill, killed) = oneshot::channel();
    let opened = Inbound::ClientOpened {
        id,
        origin,
        tx,
        kill,
    };
    if shared.inbound.send(opened).await.is_err() {
        return;
    }
    let ended = tokio::select! {
        r = pump_client(shared, rd, &mut wr, id, (rx, &queued), first) => Some(r),
        // Evicted: the machine already knows, and dropping the stream closes it.
        _ = killed => None,
    };
    let Some(ended) = ended else {
        if !shared.slow_notice.is_empty() {
            // Best effort: a client too slow to read may not take even this.
            let write = wr.write_all(&shared.slow_notice);
            let _ = crate::runtime::timeout(&shared.rt, SLOW_NOTICE_WAIT, write).await;
        }
        return;
    };
    if let Err(e) = ended {
        debug!(client = %id, error = %e, "client stream failed");
    }
    let _ = shared.inbound.send(Inbound::ClientGone(id)).await;
}

async fn pump_client<R: Runtime, Rd: ReadHalf, Wr: WriteHalf>(
    shared: &Shared<R>,
    mut rd: Rd,
    wr: &mut Wr,
    id: ClientId,
    (mut rx, queued): (mpsc::Receiver<ClientWrite>, &AtomicUsize),
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
    let mut chunk = vec![0u8; CLIENT_READ_CHUNK];
    // A client that sends requests back to back without reading the replies is not read
    // from while half its reply queue is full: it slows down instead of filling the
    // queue and being closed.
    let room = (shared.client_queue / 2).max(1);
    let mut hold = shared.hold_clients.clone();
    loop {
        let held = *hold.borrow_and_update();
        tokio::select! {
            r = rd.read(&mut chunk), if rx.len() < room && !held => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                let data = Inbound::ClientData(id, Bytes::copy_from_slice(&chunk[..n]));
                if shared.inbound.send(data).await.is_err() {
                    return Ok(());
                }
            }
            w = rx.recv() => match w {
                Some(ClientWrite::Data(b)) => {
                    // Whatever else is queued already goes in the same write: a member
                    // of a busy group gets a notice per message, and one write (and one
                    // segment) per notice was most of a receiving daemon's time.
                    let (batch, close) = coalesce(b, &mut rx);
                    wr.write_all(&batch).await?;
                    queued.fetch_sub(batch.len(), Ordering::Relaxed);
                    if close {
                        wr.shutdown().await?;
                        return Ok(());
                    }
                }
                Some(ClientWrite::Close) | None => {
                    wr.shutdown().await?;
                    return Ok(());
                }
            },
            // Peers drained (or the node stopped): look again.
            r = hold.changed(), if held => {
                if r.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Bytes gathered into one client write at most.
const COALESCE_BYTES: usize = 64 * 1024;

/// `first` and the writes queued behind it, up to [`COALESCE_BYTES`], as one buffer; and
/// whether a close came among them (everything before it is written first).
fn coalesce(first: Bytes, rx: &mut mpsc::Receiver<ClientWrite>) -> (Bytes, bool) {
    if rx.is_empty() || first.len() >= COALESCE_BYTES {
        return (first, false);
    }
    let mut buf = BytesMut::with_capacity(COALESCE_BYTES.min(first.len() * 8).max(4096));
    buf.extend_from_slice(&first);
    while buf.len() < COALESCE_BYTES {
        match rx.try_recv() {
            Ok(ClientWrite::Data(b)) => buf.extend_from_slice(&b),
            Ok(ClientWrite::Close) => return (buf.freeze(), true),
            Err(_) => break,
        }
    }
    (buf.freeze(), false)
}

/// Whether `path` names a Unix socket someone answers on (used by clients that pick TCP
/// or Unix by the address's form).
pub(crate) fn looks_like_path(addr: &str) -> Option<&Path> {
    if let Some(p) = addr.strip_prefix("unix:") {
        return Some(Path::new(p));
    }
    (addr.starts_with('/') || addr.starts_with("./")).then(|| Path::new(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(items: Vec<ClientWrite>) -> mpsc::Receiver<ClientWrite> {
        let (tx, rx) = mpsc::channel(items.len().max(1));
        for it in items {
            assert!(tx.try_send(it).is_ok(), "room");
        }
        rx
    }

    fn data(s: &str) -> ClientWrite {
        ClientWrite::Data(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn a_control_connection_stalls_only_after_the_bound_with_nothing_heard() {
        // Any instant will do: the rule only compares it with others.
        #[allow(clippy::disallowed_methods)]
        let t0 = std::time::Instant::now();
        let ms = Duration::from_millis;
        let b = ms(500);
        // Nothing written: never stalled, whatever was heard.
        assert_eq!(stall_check(None, None, t0 + ms(9000), b), Stall::Answered);
        // Written, nothing heard: waiting until the bound, stalled from it on.
        assert_eq!(stall_check(Some(t0), None, t0 + ms(499), b), Stall::Waiting);
        assert_eq!(stall_check(Some(t0), None, t0 + b, b), Stall::Stalled);
        // Heard only before the write: the same.
        let before = Some(t0 - ms(1));
        assert_eq!(
            stall_check(Some(t0), before, t0 + ms(600), b),
            Stall::Stalled
        );
        // Heard since the write (on any connection of that peer): progress, however long.
        let since = Some(t0 + ms(10));
        assert_eq!(
            stall_check(Some(t0), since, t0 + ms(5000), b),
            Stall::Answered
        );
    }

    #[test]
    fn queued_writes_go_out_together_in_order_and_a_close_ends_them() {
        let mut rx = queue(vec![]);
        assert_eq!(
            coalesce(Bytes::from_static(b"a\n"), &mut rx),
            (Bytes::from_static(b"a\n"), false)
        );
        let mut rx = queue(vec![
            data("b\n"),
            data("c\n"),
            ClientWrite::Close,
            data("d\n"),
        ]);
        let (batch, close) = coalesce(Bytes::from_static(b"a\n"), &mut rx);
        assert_eq!((&batch[..], close), (&b"a\nb\nc\n"[..], true));
        // Past the bound the rest waits for the next write, nothing lost.
        let line = "x".repeat(40 * 1024);
        let mut rx = queue(vec![data(&line), data("tail")]);
        let (batch, close) = coalesce(Bytes::from(line.clone()), &mut rx);
        assert_eq!((batch.len(), close), (80 * 1024, false));
        assert!(matches!(rx.try_recv(), Ok(ClientWrite::Data(b)) if &b[..] == b"tail"));
    }
}
