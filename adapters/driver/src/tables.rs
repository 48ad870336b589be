//! The driver's pure parts (no I/O here), tested on their own: time conversion, the
//! stream frame reader, the first-byte sniff, client id allocation, statistics, and the
//! two routing tables (peer links and client streams) with their overload policies.
//! Nothing here opens a socket, spawns, or reads a clock: callers pass instants and queue
//! handles in.

use core::time::Duration;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

use flotilla_core::time::{Instant, duration_nanos};
use flotilla_core::wire::{FRAME_MAGIC, Frame, FrameError, Limits, split_frame};
use flotilla_core::{ClientId, Lane, PeerAddr};

/// Converts between the runtime's monotonic clock and the core's [`Instant`].
///
/// The origin is taken once, when a driver binds, so the core sees small numbers starting
/// near zero. Reading the clock stays the adapter's job; this only does arithmetic.
#[derive(Clone, Copy, Debug)]
pub struct Epoch {
    origin: std::time::Instant,
}

impl Epoch {
    /// An epoch whose [`Instant::ZERO`] is `origin`.
    pub fn new(origin: std::time::Instant) -> Self {
        Epoch { origin }
    }

    /// The core instant for `t`; times before the origin map to zero.
    pub fn instant(&self, t: std::time::Instant) -> Instant {
        Instant::from_nanos(duration_nanos(t.saturating_duration_since(self.origin)))
    }

    /// The runtime instant to wake at for `deadline`, or `None` for "never" (a deadline
    /// too far away to represent is treated as never).
    pub fn deadline(&self, deadline: Instant) -> Option<std::time::Instant> {
        if deadline == Instant::MAX {
            return None;
        }
        self.origin
            .checked_add(Duration::from_nanos(deadline.as_nanos()))
    }
}

/// Reassembles frames from a byte stream.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    limits: Limits,
}

impl FrameReader {
    /// An empty reader.
    pub fn new(limits: Limits) -> Self {
        Self::with_buffered(BytesMut::new(), limits)
    }

    /// A reader that starts with bytes already read (the sniffed prefix).
    pub fn with_buffered(buf: BytesMut, limits: Limits) -> Self {
        FrameReader { buf, limits }
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The buffer to read into directly, with at least `reserve` bytes of spare room.
    pub fn read_buf(&mut self, reserve: usize) -> &mut BytesMut {
        self.buf.reserve(reserve);
        &mut self.buf
    }

    /// The next complete frame, `Ok(None)` until one is in. An error means the stream is
    /// unusable: frames have no resynchronisation marker, so the caller closes it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        split_frame(&mut self.buf, &self.limits)
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// What an accepted connection on the peer port carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// Frames from another node.
    Peer,
    /// A line-protocol client.
    Client,
}

/// Classifies a connection by its first byte: [`FRAME_MAGIC`] is not printable ASCII, so
/// no text client starts with it.
pub fn sniff(first: u8) -> StreamKind {
    if first == FRAME_MAGIC {
        StreamKind::Peer
    } else {
        StreamKind::Client
    }
}

/// Hands out client ids, increasing from 1, to every acceptor of one driver.
#[derive(Debug)]
pub struct ClientIds {
    next: AtomicU64,
}

impl Default for ClientIds {
    fn default() -> Self {
        ClientIds {
            next: AtomicU64::new(1),
        }
    }
}

impl ClientIds {
    /// The next unused id.
    pub fn allocate(&self) -> ClientId {
        ClientId(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// A driver counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Frames handed to the machine.
    FramesIn,
    /// Frames handed to the operating system.
    FramesOut,
    /// Frames dropped: a full peer queue, a failed dial, a failed datagram send.
    FramesDropped,
    /// Datagrams or streams that did not decode as frames.
    DecodeErrors,
    /// Inputs the machine refused.
    HandleErrors,
    /// TCP dials that failed.
    DialFailures,
    /// Client streams accepted.
    ClientsOpened,
    /// Clients closed because they did not read fast enough.
    SlowClients,
    /// Clients refused because `max_clients` were open.
    ClientsRefused,
    /// Effects that produced a value.
    EffectsDone,
    /// Effects that failed (including those refused as overloaded).
    EffectsFailed,
    /// Effects that ran out of time.
    EffectsTimedOut,
}

/// Number of [`Stat`] variants; `EffectsTimedOut` must stay the last one.
const STATS: usize = Stat::EffectsTimedOut as usize + 1;

/// Counters shared between a driver's tasks; read them with [`Counters::snapshot`].
#[derive(Debug, Default)]
pub struct Counters {
    values: [AtomicU64; STATS],
}

impl Counters {
    /// Adds `n` to `stat`.
    pub fn add(&self, stat: Stat, n: u64) {
        self.values[stat as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to `stat`.
    pub fn bump(&self, stat: Stat) {
        self.add(stat, 1);
    }

    /// The current values.
    pub fn snapshot(&self) -> DriverStats {
        let v = |s: Stat| self.values[s as usize].load(Ordering::Relaxed);
        DriverStats {
            frames_in: v(Stat::FramesIn),
            frames_out: v(Stat::FramesOut),
            frames_dropped: v(Stat::FramesDropped),
            decode_errors: v(Stat::DecodeErrors),
            handle_errors: v(Stat::HandleErrors),
            dial_failures: v(Stat::DialFailures),
            clients_opened: v(Stat::ClientsOpened),
            slow_clients: v(Stat::SlowClients),
            clients_refused: v(Stat::ClientsRefused),
            effects_done: v(Stat::EffectsDone),
            effects_failed: v(Stat::EffectsFailed),
            effects_timed_out: v(Stat::EffectsTimedOut),
        }
    }
}

/// A copy of a driver's counters. See [`Stat`] for what each one counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// See [`Stat::FramesIn`].
    pub frames_in: u64,
    /// See [`Stat::FramesOut`].
    pub frames_out: u64,
    /// See [`Stat::FramesDropped`].
    pub frames_dropped: u64,
    /// See [`Stat::DecodeErrors`].
    pub decode_errors: u64,
    /// See [`Stat::HandleErrors`].
    pub handle_errors: u64,
    /// See [`Stat::DialFailures`].
    pub dial_failures: u64,
    /// See [`Stat::ClientsOpened`].
    pub clients_opened: u64,
    /// See [`Stat::SlowClients`].
    pub slow_clients: u64,
    /// See [`Stat::ClientsRefused`].
    pub clients_refused: u64,
    /// See [`Stat::EffectsDone`].
    pub effects_done: u64,
    /// See [`Stat::EffectsFailed`].
    pub effects_failed: u64,
    /// See [`Stat::EffectsTimedOut`].
    pub effects_timed_out: u64,
}

/// The result of offering an item to a bounded queue without waiting.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Queued.
    Accepted,
    /// The queue is full; the item comes back.
    Full(T),
    /// The consumer is gone; the item comes back.
    Closed(T),
}

/// The sending end of a bounded queue, as the routing tables see it. Adapters implement
/// it for their channel type (a `try_send`).
pub trait Outlet<T> {
    /// Queues `item` if there is room, never waiting.
    fn offer(&self, item: T) -> Offer<T>;

    /// How many more items it takes now (for backpressure); unbounded by default.
    fn room(&self) -> usize {
        usize::MAX
    }
}

/// What a peer link's queue was asked to carry.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkSend {
    /// Queued on the existing link.
    Queued,
    /// The link's queue was full: the frame is dropped (peer delivery is best effort).
    Dropped,
    /// No usable link: the caller dials and queues the frame on the new one.
    NoLink(Frame),
}

/// TCP links by peer listen address: at most one used for sending per peer.
///
/// A link exists from the moment a dial starts (its queue holds frames until the
/// connection is up, which is how "one dial in flight per address" falls out) or a hello
/// is accepted, until its connection task reports it lost. Each link carries the id of its
/// connection, so a late loss report from a replaced connection removes nothing.
#[derive(Debug)]
pub struct PeerLinks<O> {
    links: BTreeMap<LinkKey, (u64, O)>,
}

/// A link is one lane to one peer: each has its own connection and queue.
pub type LinkKey = (PeerAddr, Lane);

impl<O> Default for PeerLinks<O> {
    fn default() -> Self {
        PeerLinks {
            links: BTreeMap::new(),
        }
    }
}

impl<O: Outlet<Frame>> PeerLinks<O> {
    /// Queues `frame` for `to`. A link whose connection ended is forgotten at once, so
    /// the frame redials instead of waiting for the loss report.
    pub fn send(&mut self, to: LinkKey, frame: Frame) -> LinkSend {
        let Some((_, outlet)) = self.links.get(&to) else {
            return LinkSend::NoLink(frame);
        };
        match outlet.offer(frame) {
            Offer::Accepted => LinkSend::Queued,
            Offer::Full(_) => LinkSend::Dropped,
            Offer::Closed(frame) => {
                self.links.remove(&to);
                LinkSend::NoLink(frame)
            }
        }
    }

    /// Makes connection `conn` the link to `peer`, replacing any older one: the newest
    /// connection is the one most likely alive (the peer may have restarted). A replaced
    /// connection keeps delivering what it reads. Returns whether a link was replaced.
    pub fn insert(&mut self, peer: LinkKey, conn: u64, outlet: O) -> bool {
        self.links.insert(peer, (conn, outlet)).is_some()
    }

    /// Connection `conn` to `peer` ended; forgets it if it is still the link.
    pub fn lost(&mut self, peer: LinkKey, conn: u64) -> bool {
        if self.links.get(&peer).is_some_and(|(c, _)| *c == conn) {
            self.links.remove(&peer);
            true
        } else {
            false
        }
    }

    /// Free slots in the queue of the link to `peer`, if there is a link.
    pub fn room(&self, peer: LinkKey) -> Option<usize> {
        self.links.get(&peer).map(|(_, o)| o.room())
    }

    /// Whether a link to `peer` exists (connected or dialing).
    pub fn contains(&self, peer: LinkKey) -> bool {
        self.links.contains_key(&peer)
    }

    /// Number of links.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// True when there are no links.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// What a client writer task is asked to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientWrite {
    /// Write these bytes.
    Data(Bytes),
    /// Close the stream (everything queued before has been written).
    Close,
}

/// What happened to a write or close for a client.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientSend {
    /// Queued for the client's writer.
    Queued,
    /// The client is unknown, already closing, or its connection already ended (its
    /// close is on the way): nothing to do.
    Ignored,
    /// The client's queue was full: it is forgotten (its guard dropped, which ends its
    /// connection) and the caller must feed `ClientClosed` to the machine.
    Evicted,
}

#[derive(Debug)]
struct ClientEntry<O, G> {
    outlet: O,
    closing: bool,
    _guard: G,
}

/// Open client streams. `G` is whatever ends a client's connection when dropped (a
/// cancellation handle), so forgetting a client closes it.
#[derive(Debug)]
pub struct ClientTable<O, G> {
    clients: BTreeMap<ClientId, ClientEntry<O, G>>,
}

impl<O, G> Default for ClientTable<O, G> {
    fn default() -> Self {
        ClientTable {
            clients: BTreeMap::new(),
        }
    }
}

impl<O: Outlet<ClientWrite>, G> ClientTable<O, G> {
    /// Registers a new client.
    pub fn opened(&mut self, id: ClientId, outlet: O, guard: G) {
        self.clients.insert(
            id,
            ClientEntry {
                outlet,
                closing: false,
                _guard: guard,
            },
        );
    }

    /// Queues bytes for a client. A client that does not drain its queue is evicted
    /// rather than allowed to hold the machine's output back.
    pub fn write(&mut self, id: ClientId, data: Bytes) -> ClientSend {
        self.offer(id, ClientWrite::Data(data))
    }

    /// Asks for a close after the queued bytes. If even the close does not fit, the
    /// client is evicted at once.
    pub fn close(&mut self, id: ClientId) -> ClientSend {
        let sent = self.offer(id, ClientWrite::Close);
        if sent == ClientSend::Queued
            && let Some(e) = self.clients.get_mut(&id)
        {
            e.closing = true;
        }
        sent
    }

    fn offer(&mut self, id: ClientId, w: ClientWrite) -> ClientSend {
        let Some(entry) = self.clients.get(&id) else {
            return ClientSend::Ignored;
        };
        if entry.closing {
            return ClientSend::Ignored;
        }
        match entry.outlet.offer(w) {
            Offer::Accepted => ClientSend::Queued,
            Offer::Closed(_) => ClientSend::Ignored,
            Offer::Full(_) => {
                self.clients.remove(&id);
                ClientSend::Evicted
            }
        }
    }

    /// The client's connection ended. Returns true if the machine still knew it and must
    /// be fed `ClientClosed`; false if it was already evicted.
    pub fn gone(&mut self, id: ClientId) -> bool {
        self.clients.remove(&id).is_some()
    }

    /// Whether the machine still knows `id` (it was opened and not yet reported closed).
    pub fn contains(&self, id: ClientId) -> bool {
        self.clients.contains_key(&id)
    }

    /// Number of open clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True when no client is open.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::wire::{Kind, transport};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A queue of fixed capacity that can be closed, standing in for a channel.
    #[derive(Clone)]
    struct Q<T>(Rc<RefCell<(Vec<T>, usize, bool)>>);

    impl<T> Q<T> {
        fn new(cap: usize) -> Self {
            Q(Rc::new(RefCell::new((Vec::new(), cap, false))))
        }
        fn close(&self) {
            self.0.borrow_mut().2 = true;
        }
        fn len(&self) -> usize {
            self.0.borrow().0.len()
        }
    }

    impl<T> Outlet<T> for Q<T> {
        fn offer(&self, item: T) -> Offer<T> {
            let mut q = self.0.borrow_mut();
            if q.2 {
                Offer::Closed(item)
            } else if q.0.len() >= q.1 {
                Offer::Full(item)
            } else {
                q.0.push(item);
                Offer::Accepted
            }
        }
    }

    fn frame(n: u8) -> Frame {
        Frame::new(Kind(0x7700), Bytes::from(vec![n]))
    }

    fn addr(port: u16) -> PeerAddr {
        PeerAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn reader_reassembles_frames_split_anywhere() {
        let mut wire = BytesMut::new();
        transport::encode_hello(addr(7), Lane::Control).encode(&mut wire);
        frame(1).encode(&mut wire);
        let mut r = FrameReader::with_buffered(BytesMut::from(&wire[..1]), Limits::default());
        assert_eq!(r.next_frame(), Ok(None));
        let mut got = Vec::new();
        for b in &wire[1..] {
            r.extend(&[*b]);
            while let Some(f) = r.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(r.buffered(), 0);
        assert_eq!(
            transport::decode_hello(&got[0]),
            Ok((addr(7), Lane::Control))
        );
        assert_eq!(got[1], frame(1));
    }

    #[test]
    fn reader_reports_garbage() {
        let mut r = FrameReader::new(Limits::default());
        r.read_buf(16).extend_from_slice(b"GET / HTTP/1.0");
        assert_eq!(r.next_frame(), Err(FrameError::BadMagic(b'G')));
    }

    #[test]
    fn sniff_tells_frames_from_text() {
        assert_eq!(sniff(FRAME_MAGIC), StreamKind::Peer);
        assert_eq!(sniff(b'h'), StreamKind::Client);
        assert_eq!(sniff(b'\n'), StreamKind::Client);
    }

    #[test]
    fn client_ids_increase() {
        let ids = ClientIds::default();
        assert_eq!(ids.allocate(), ClientId(1));
        assert_eq!(ids.allocate(), ClientId(2));
    }

    #[test]
    fn counters_snapshot() {
        let c = Counters::default();
        c.bump(Stat::FramesIn);
        c.add(Stat::FramesDropped, 3);
        c.bump(Stat::SlowClients);
        let s = c.snapshot();
        assert_eq!((s.frames_in, s.frames_dropped, s.slow_clients), (1, 3, 1));
        assert_eq!(s.frames_out, 0);
    }

    #[test]
    fn links_queue_drop_and_redial() {
        let mut links = PeerLinks::default();
        assert_eq!(links.send(data(1), frame(1)), LinkSend::NoLink(frame(1)));
        let q = Q::new(1);
        assert!(!links.insert(data(1), 10, q.clone()));
        assert_eq!(links.send(data(1), frame(2)), LinkSend::Queued);
        assert_eq!(links.send(data(1), frame(3)), LinkSend::Dropped);
        assert_eq!(q.len(), 1);
        // A newer connection replaces the link; the old one's loss is then ignored.
        let q2 = Q::new(4);
        assert!(links.insert(data(1), 11, q2.clone()));
        assert!(!links.lost(data(1), 10));
        assert_eq!(links.send(data(1), frame(4)), LinkSend::Queued);
        // A closed queue is forgotten at once so the frame can redial.
        q2.close();
        assert_eq!(links.send(data(1), frame(5)), LinkSend::NoLink(frame(5)));
        assert!(!links.contains(data(1)));
        assert!(!links.lost(data(1), 11));
        links.insert(data(1), 12, Q::new(1));
        assert!(links.lost(data(1), 12));
        assert!(links.is_empty());
        // The lanes of one peer are separate links: a full data queue leaves the
        // control lane free, and one lane's loss leaves the other.
        links.insert(data(1), 13, Q::new(0));
        assert_eq!(links.send(data(1), frame(6)), LinkSend::Dropped);
        let control = (addr(1), Lane::Control);
        assert_eq!(links.send(control, frame(7)), LinkSend::NoLink(frame(7)));
        links.insert(control, 14, Q::new(1));
        assert_eq!(links.send(control, frame(8)), LinkSend::Queued);
        assert!(links.lost(data(1), 13));
        assert!(links.contains(control) && links.len() == 1);
    }

    fn data(port: u16) -> LinkKey {
        (addr(port), Lane::Data)
    }

    #[test]
    fn slow_clients_are_evicted_and_close_is_once() {
        let mut t: ClientTable<Q<ClientWrite>, ()> = ClientTable::default();
        let q = Q::new(2);
        t.opened(ClientId(1), q.clone(), ());
        assert_eq!(
            t.write(ClientId(1), Bytes::from_static(b"a")),
            ClientSend::Queued
        );
        assert_eq!(
            t.write(ClientId(1), Bytes::from_static(b"b")),
            ClientSend::Queued
        );
        assert_eq!(
            t.write(ClientId(1), Bytes::from_static(b"c")),
            ClientSend::Evicted
        );
        assert_eq!(
            t.write(ClientId(1), Bytes::from_static(b"d")),
            ClientSend::Ignored
        );
        // Its connection task reports the end later: the machine already knows.
        assert!(!t.gone(ClientId(1)));

        t.opened(ClientId(2), Q::new(4), ());
        assert_eq!(t.close(ClientId(2)), ClientSend::Queued);
        assert_eq!(
            t.write(ClientId(2), Bytes::from_static(b"x")),
            ClientSend::Ignored
        );
        assert_eq!(t.close(ClientId(2)), ClientSend::Ignored);
        assert!(t.gone(ClientId(2)));
        assert!(t.is_empty());
    }
}
