//! The client-groups machine of one daemon (SPEC.md §10): agreed order through the view's
//! sequencer (the least name of the membership view), virtual synchrony through a flush
//! at every view change.
//!
//! **In a view.** A daemon takes its clients' joins, leaves and messages as *items*,
//! numbers them (`lseq`) and submits them to the sequencer until it sees them ordered.
//! The sequencer orders each origin's items in `lseq` order (so order is also FIFO per
//! sender), gives each the view's next number, and sends it to every member once (one
//! copy per daemon, however many of its clients are in the group). Members deliver in
//! number order, ask again for gaps, and acknowledge what they delivered; items every
//! member has delivered are *stable* and forgotten.
//!
//! **Between views.** When membership installs a new view, every daemon freezes its
//! previous one. The new sequencer asks every member what it delivered there and what it
//! holds that may not be stable (`FlushState`); for each previous view it takes the
//! highest number any member delivered and sends every member the items it lacks up to
//! it (`Start`). So daemons that pass together from one view to the next deliver the same
//! items in the former. The group table of the new view is the union of each member's
//! own clients' groups; items submitted and not delivered are submitted again.
//!
//! **FIFO mode.** Messages sent with `SendFifo` skip the sequencer: their origin sends
//! them to every member itself, and the flush finishes them as it does ordered items
//! (module `fifo`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use core::time::Duration;
use thiserror::Error;

use super::msg::{
    FifoFill, FifoState, Fill, GroupMsg, Item, MAX_PAYLOAD, MsgId, Numbered, What, valid_group,
};
use crate::backoff::Backoff;
use crate::machine::{Input, Machine, NoEffect, Outbox, OutputOf, PeerAddr, Timers, debug_check};
use crate::membership::view::{Member, View, ViewId};
use crate::time::Instant;
use crate::wire::Frame;

mod batch;
mod fifo;

use batch::{Batch, BatchKind, To};

use fifo::FifoView;
pub use fifo::{FIFO_LOG_BYTES, FIFO_WINDOW};

/// Items ordered beyond the stable point at most (the sequencer holds further submits).
pub const WINDOW: u64 = 1024;
/// Payload bytes ordered beyond the stable point at most (one more item may pass it):
/// what a member holds for a flush, and what a start carries per previous view, stays
/// well inside a frame (1 MiB) for merges of up to three previous views.
pub const LOG_BYTES: usize = 192 * 1024;
/// Items a daemon has submitted and not yet seen delivered, at most.
pub const MAX_PENDING: usize = 1024;
/// How often the machine looks at what may need sending again (each repeat has its own
/// pace, `crate::backoff`: this is only the tick that looks).
const RETRY: Duration = Duration::from_millis(50);
/// How often a member acknowledges what it delivered (when nothing else made it).
const ACK_EVERY: Duration = Duration::from_millis(100);
/// A member acknowledges at once after this many items delivered since its last
/// acknowledgement, or this many payload bytes: the sequencer's window (bounded by
/// [`WINDOW`] and [`LOG_BYTES`] beyond the stable point) moves with the traffic instead
/// of once per [`ACK_EVERY`].
pub(super) const ACK_STRIDE: u64 = 64;
pub(super) const ACK_BYTES: usize = 32 * 1024;
/// Items resent for one gap request at most.
const RESEND_BURST: usize = 256;
/// A member's tail, or this daemon's submits, go again only after this long without
/// progress (twice TCP's first retransmission timeout: a segment the kernel retransmits
/// once still arrives first), then after twice as long each time, up to
/// [`RESEND_MAX`] (`crate::backoff`).
const RESEND_FIRST: Duration = Duration::from_millis(400);
const RESEND_MAX: Duration = Duration::from_millis(1600);
/// A gap is asked for again after this long, then twice as long each time.
const NACK_FIRST: Duration = Duration::from_millis(100);
/// A flush asks members that have not answered again after this long without a new
/// answer, then twice as long each time (up to [`RESEND_MAX`]): each answer carries the
/// member's unstable items (up to [`LOG_BYTES`]), so asking every tick over a slow link
/// stacks copies of them in its queue.
const FLUSH_ASK_FIRST: Duration = Duration::from_millis(100);
/// A start goes again to members that have not acknowledged it after this long without a
/// new acknowledgement, then twice as long each time: members acknowledge within
/// [`ACK_EVERY`], and a start carries every fill of the flush.
const START_FIRST: Duration = Duration::from_millis(300);

/// Per member: its acknowledgement when last looked at, and when its tail may be sent
/// again. One mechanism for the sequencer's ordered items and every origin's FIFO items.
#[derive(Debug, Default)]
struct Tails(BTreeMap<String, (u64, Backoff)>);

impl Tails {
    /// The members of `view` other than `me` whose acknowledgement (in `acks`; none is
    /// 0) is below `last` and has not moved for their wait, with the first item they miss.
    fn stuck(
        &mut self,
        now: Instant,
        (view, me): (&View, &str),
        acks: &BTreeMap<String, u64>,
        last: u64,
    ) -> Vec<(PeerAddr, u64)> {
        let mut out = Vec::new();
        for m in view.members.iter().filter(|m| m.name != me) {
            let a = acks.get(&m.name).copied().unwrap_or(0);
            let (seen, wait) = self
                .0
                .entry(m.name.clone())
                .or_insert_with(|| (a, Backoff::new(RESEND_FIRST, RESEND_MAX, now)));
            if *seen != a || a >= last {
                *seen = a;
                wait.progress(now);
            } else if wait.fire(now) {
                out.push((m.addr, a + 1));
            }
        }
        out
    }

    /// `name` showed it misses items at or above its acknowledgement (`acks`, below
    /// `last`): the first it misses, if its tail may go again at once.
    fn hurry(
        &mut self,
        now: Instant,
        name: &str,
        acks: &BTreeMap<String, u64>,
        last: u64,
    ) -> Option<u64> {
        let a = acks.get(name).copied().unwrap_or(0);
        let (seen, wait) = self.0.get_mut(name)?;
        (*seen == a && a < last && wait.hurry(now)).then_some(a + 1)
    }
}

/// Whether to ask for a gap now. `gap` remembers the gap being asked for — how far
/// delivery had got (`at`) and when to ask again; a gap that is new (nothing open, or
/// delivery moved since) is asked for at once.
fn gap_due(gap: &mut Option<(u64, Backoff)>, open: bool, at: u64, now: Instant) -> bool {
    match (open, gap.as_mut()) {
        (false, _) => {
            *gap = None;
            false
        }
        (true, Some((was, b))) if *was == at => b.fire(now),
        (true, _) => {
            *gap = Some((at, Backoff::new(NACK_FIRST, RESEND_MAX, now)));
            true
        }
    }
}

/// What a groups machine is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupsSettings {
    /// This daemon as membership knows it (name, incarnation, address).
    pub me: Member,
    /// Planted bug for the simulator's canary: a member delivers an item as soon as it
    /// arrives, even past a gap.
    #[doc(hidden)]
    pub canary_deliver_early: bool,
}

/// Commands from the embedding program (or, for `View`, from membership through a link).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupsCommand {
    /// Membership installed this view.
    View(View),
    /// A local client joins a group.
    Join {
        /// The group.
        group: String,
        /// The client's name.
        client: String,
    },
    /// A local client leaves a group.
    Leave {
        /// The group.
        group: String,
        /// The client's name.
        client: String,
    },
    /// A local client's connection closed while it was in `group`: it leaves with the
    /// cause `Disconnect`.
    Disconnect {
        /// The group.
        group: String,
        /// The client's name.
        client: String,
    },
    /// A local client (or anyone: senders need not be members) sends to a group.
    Send {
        /// The group.
        group: String,
        /// The sender's name.
        sender: String,
        /// The bytes.
        payload: Bytes,
    },
    /// The same in the cheaper FIFO mode: no sequencer, so no total order; every member
    /// delivers this daemon's FIFO messages in the order it took them (SPEC.md §10.1).
    SendFifo {
        /// The group.
        group: String,
        /// The sender's name.
        sender: String,
        /// The bytes.
        payload: Bytes,
    },
}

impl GroupsCommand {
    /// A client's message: [`GroupsCommand::SendFifo`] when `fifo`, else
    /// [`GroupsCommand::Send`].
    pub fn message(fifo: bool, group: String, sender: String, payload: Bytes) -> Self {
        if fifo {
            GroupsCommand::SendFifo {
                group,
                sender,
                payload,
            }
        } else {
            GroupsCommand::Send {
                group,
                sender,
                payload,
            }
        }
    }
}

/// Why a group's membership changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A client joined.
    Join,
    /// A client left.
    Leave,
    /// A client's connection to its daemon closed.
    Disconnect,
    /// The daemons' view changed (daemons failed, left, joined or merged).
    Network,
}

/// What changed in a group's membership (a member is (client, daemon)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupChange {
    /// This member joined (cause [`Cause::Join`]).
    Joined((String, String)),
    /// This member left (cause [`Cause::Leave`] or [`Cause::Disconnect`]).
    Left((String, String)),
    /// The whole membership, in order, at a view change (cause [`Cause::Network`]).
    Whole(Vec<(String, String)>),
}

/// What the machine tells the embedding program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupsEvent {
    /// An item of a group's total order was delivered here (every daemon delivers every
    /// message once, in one order; its clients in the group receive it).
    Delivered {
        /// The view it was ordered in.
        view: ViewId,
        /// Its number there.
        seq: u64,
        /// Its identity.
        id: MsgId,
        /// The group.
        group: String,
        /// The sender.
        sender: String,
        /// The bytes.
        payload: Bytes,
    },
    /// A FIFO-mode message was delivered here: every daemon delivers one origin's FIFO
    /// messages in the order the origin took them, each once; no order holds between
    /// origins, nor with agreed-order items.
    FifoDelivered {
        /// The view it was sent in.
        view: ViewId,
        /// Its identity (`lseq` is its number among the origin's FIFO messages of the
        /// view, from 1).
        id: MsgId,
        /// The group.
        group: String,
        /// The sender.
        sender: String,
        /// The bytes.
        payload: Bytes,
    },
    /// A message came again in a later view and was not delivered again: its origin was
    /// cut off from the sequencer before it learnt the message was ordered, and sent it
    /// again (this daemon delivered it in an earlier view). Joins and leaves are never
    /// skipped: one that comes again takes effect again at its new place, at every
    /// daemon alike (a [`GroupsEvent::GroupView`] where it changes the group).
    Skipped {
        /// The view it was ordered in again.
        view: ViewId,
        /// Its number there.
        seq: u64,
        /// Its identity.
        id: MsgId,
        /// The group.
        group: String,
        /// The message's bytes: a layer above that keeps
        /// replicated state in a group's messages processes it at this place, so daemons
        /// that delivered it earlier and daemons that deliver it now stay alike.
        payload: Bytes,
    },
    /// A group's membership changed.
    GroupView {
        /// The group.
        group: String,
        /// The daemons' view.
        view: ViewId,
        /// The number of the item that changed it (0: the view's start).
        seq: u64,
        /// What changed: one member for a join or a leave (so a change costs O(log n),
        /// not a copy of an n-member list), the whole list at a view change.
        change: GroupChange,
        /// How many members the group has now.
        count: usize,
        /// Why.
        cause: Cause,
    },
    /// A view was finished: every daemon coming from it with this one delivered its
    /// items up to `upto`.
    Closed {
        /// The finished view.
        old: ViewId,
        /// The view that follows.
        new: ViewId,
        /// The last item of `old` delivered.
        upto: u64,
        /// How long the flush took here: from learning the new view to its start.
        took: Duration,
    },
}

/// Why an input was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum GroupsError {
    /// A frame that does not decode.
    #[error("bad frame: {0}")]
    Decode(#[from] crate::wire::DecodeError),
    /// A group or client name that is not one.
    #[error("bad name {0:?}: 1 to 64 printable characters, no spaces")]
    BadName(String),
    /// A message over the size limit.
    #[error("message of {0} bytes: at most {MAX_PAYLOAD}")]
    TooLarge(usize),
    /// Too many items submitted and not yet delivered.
    #[error("{MAX_PENDING} messages already on their way: try again")]
    Busy,
    /// Client streams go to the client-protocol layer, not here.
    #[error("the groups machine takes no client streams")]
    NoClients,
    /// Effects are not used.
    #[error("the groups machine runs no effects")]
    NoEffects,
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupsStats {
    /// Items delivered.
    pub delivered: u64,
    /// Items ordered as sequencer.
    pub ordered: u64,
    /// Items sent again (submits and orders).
    pub resent: u64,
    /// Flushes finished.
    pub flushes: u64,
    /// Frames refused.
    pub bad_frames: u64,
    /// FIFO-mode messages delivered (own included).
    pub fifo_delivered: u64,
    /// FIFO-mode messages sent again.
    pub fifo_resent: u64,
    /// Batches sent (submits, orders and FIFO items; each one frame to each peer).
    pub batches: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retry,
    Ack,
}

/// The sequencer's side of the active view.
#[derive(Debug, Default)]
struct Sequencer {
    next: u64,
    /// Items ordered and not yet stable, and their payload bytes.
    log: BTreeMap<u64, Item>,
    log_bytes: usize,
    /// Highest number each member acknowledged.
    acks: BTreeMap<String, u64>,
    /// A member stuck below the last item lost the tail: it cannot see a gap, so the
    /// tail is sent again, paced.
    tails: Tails,
    /// Per origin life: the next `lseq` to order, and items that came early.
    expected: BTreeMap<(String, u64), u64>,
    early: BTreeMap<(String, u64), BTreeMap<u64, Item>>,
}

/// What a member said of its previous view.
#[derive(Debug)]
struct State {
    old: ViewId,
    upto: u64,
    held: Numbered,
    locals: Vec<(String, String)>,
    fifo: Vec<FifoState>,
}

/// A flush in progress: the new view, and (at its sequencer) the states collected.
#[derive(Debug)]
struct Flush {
    view: View,
    /// When this daemon learnt the view (how long the flush took is reported).
    since: Instant,
    /// Member → its previous view, delivered up to, items held, its clients' groups, and
    /// its FIFO items.
    states: BTreeMap<String, State>,
    /// When members that have not answered are asked again (the sequencer's pace), and
    /// whether they were asked at all yet (the first ask goes at once).
    asks: Backoff,
    asked: bool,
}

/// The start this daemon sent as a view's sequencer, who acknowledged it, and when it
/// goes again to the others.
#[derive(Debug)]
struct Starting {
    start: GroupMsg,
    acked: BTreeSet<String>,
    repeat: Backoff,
}

/// The client-groups machine of one daemon.
#[derive(Debug)]
pub struct Groups {
    me: Member,
    canary: bool,
    /// The view items are ordered in (frozen while a flush runs).
    view: View,
    delivered: u64,
    stable: u64,
    /// Delivered items not known stable (what a flush may need from this daemon).
    held: BTreeMap<u64, Item>,
    /// Items received past a gap.
    ahead: BTreeMap<u64, Item>,
    /// While items wait past a gap: where delivery stopped, and when to ask again.
    gap: Option<(u64, Backoff)>,
    seq: Option<Sequencer>,
    flush: Option<Flush>,
    /// Own items submitted and not yet delivered: lseq → item.
    pending: BTreeMap<u64, Item>,
    /// Own FIFO messages not yet sent (a flush runs, or the window is full), in order.
    fifo_pending: std::collections::VecDeque<Item>,
    /// FIFO state of the view.
    fifo: FifoView,
    next_lseq: u64,
    /// Every group's members: group → {(client, daemon)}.
    table: BTreeMap<String, BTreeSet<(String, String)>>,
    /// This daemon's clients' groups, as ordered: (group, client).
    locals: BTreeSet<(String, String)>,
    last_ack: u64,
    /// Own items delivered, in all, and the count at the last retry: while the sequencer
    /// keeps ordering this daemon's items, what waits is in its queue, not lost.
    own_delivered: u64,
    own_at_retry: u64,
    /// When pending submits go again if none of them is delivered meanwhile.
    submits: Backoff,
    /// Payload bytes delivered since the last acknowledgement.
    unacked_bytes: usize,
    /// Per origin life, the highest `lseq` delivered here (an origin's items are
    /// delivered in `lseq` order, so anything at or below is a duplicate).
    seen: BTreeMap<(String, u64), u64>,
    /// The start this daemon sent as a view's sequencer: sent again to the others, paced,
    /// until all acknowledged it.
    starting: Option<Starting>,
    /// Items queued to leave together in one frame (module `batch`).
    batch: Option<Batch>,
    timers: Timers<Timer>,
    outbox: Outbox<GroupsEvent, NoEffect>,
    stats: GroupsStats,
}

impl Groups {
    /// A daemon's groups machine, alone in its own view until membership says more.
    pub fn new(s: GroupsSettings, now: Instant) -> Self {
        let view = View::alone(&s.me, 0, Vec::new());
        let mut g = Groups {
            me: s.me,
            canary: s.canary_deliver_early,
            view,
            delivered: 0,
            stable: 0,
            held: BTreeMap::new(),
            ahead: BTreeMap::new(),
            gap: None,
            seq: None,
            flush: None,
            pending: BTreeMap::new(),
            fifo_pending: std::collections::VecDeque::new(),
            fifo: FifoView::default(),
            next_lseq: 1,
            table: BTreeMap::new(),
            locals: BTreeSet::new(),
            last_ack: 0,
            own_delivered: 0,
            own_at_retry: 0,
            submits: Backoff::new(RESEND_FIRST, RESEND_MAX, now),
            unacked_bytes: 0,
            seen: BTreeMap::new(),
            starting: None,
            batch: None,
            timers: Timers::default(),
            outbox: Outbox::default(),
            stats: GroupsStats::default(),
        };
        g.seq = Some(Sequencer {
            next: 1,
            ..Sequencer::default()
        });
        g.timers.set(Timer::Retry, now + RETRY);
        g.timers.set(Timer::Ack, now + ACK_EVERY);
        debug_check(&g);
        g
    }

    /// The view items are ordered in (the previous one while a flush runs).
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Whether a flush to a new view is running.
    pub fn flushing(&self) -> bool {
        self.flush.is_some()
    }

    /// Every group's members: (client, daemon).
    pub fn members(&self, group: &str) -> Vec<(String, String)> {
        self.table
            .get(group)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The last item of the view delivered here.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Items submitted here and not yet delivered (agreed), or not yet sent (FIFO).
    pub fn pending(&self) -> usize {
        self.pending.len() + self.fifo_pending.len()
    }

    /// Counters.
    pub fn stats(&self) -> &GroupsStats {
        &self.stats
    }

    fn sequencer_of(v: &View) -> &Member {
        // Views are sorted by name: the least name orders.
        &v.members[0]
    }

    fn is_sequencer(&self) -> bool {
        Self::sequencer_of(&self.view).name == self.me.name
    }

    fn send(&mut self, to: PeerAddr, msg: &GroupMsg) {
        self.send_frame(to, msg.to_frame());
    }

    /// Sends a frame after the batch being formed, which goes first: frames leave in
    /// the order they were made.
    fn send_frame(&mut self, to: PeerAddr, frame: Frame) {
        self.flush_batch();
        self.transmit(to, frame);
    }

    fn transmit(&mut self, to: PeerAddr, frame: Frame) {
        if to != self.me.addr {
            self.outbox.transmit(to, frame);
        }
    }

    /// Sends the batch being formed now. An embedding machine that drains this one's
    /// outputs after every input with [`Groups::poll_held`] calls this when its own turn
    /// ends; [`Machine::poll_output`] does it by itself once nothing else waits.
    pub fn end_batch(&mut self) {
        self.flush_batch();
    }

    /// The next output, leaving the batch being formed to grow (see [`Groups::end_batch`]).
    pub fn poll_held(&mut self) -> Option<OutputOf<Self>> {
        self.outbox.pop()
    }

    // ----- items from local clients -----

    fn submit_new(&mut self, now: Instant, group: String, what: What) -> Result<(), GroupsError> {
        if !valid_group(&group) {
            return Err(GroupsError::BadName(group));
        }
        // A disconnection is never refused: a lost one would leave a member that is gone
        // in the group for ever. Its count is bounded by the groups a client may join.
        if self.pending() >= MAX_PENDING && !matches!(what, What::Gone { .. }) {
            return Err(GroupsError::Busy);
        }
        let item = Item {
            id: MsgId {
                origin: self.me.name.clone(),
                incarnation: self.me.incarnation,
                lseq: self.next_lseq,
            },
            group,
            what,
        };
        self.next_lseq += 1;
        self.pending.insert(item.id.lseq, item.clone());
        if self.flush.is_none() {
            self.submit(now, item);
        }
        Ok(())
    }

    /// Hands an item to the sequencer (itself, or over the network).
    fn submit(&mut self, now: Instant, item: Item) {
        let view = self.view.id.clone();
        let floor = self.pending.keys().next().copied().unwrap_or(item.id.lseq);
        if self.is_sequencer() {
            self.on_submit(now, view, floor, item);
        } else {
            let to = Self::sequencer_of(&self.view).addr;
            self.batch_item(BatchKind::Submit, To::One(to), (floor, 0), item);
        }
    }

    // ----- the sequencer -----

    fn on_submit(&mut self, now: Instant, view: ViewId, floor: u64, item: Item) {
        if view != self.view.id || self.flush.is_some() || !self.is_sequencer() {
            return;
        }
        let Some(s) = &mut self.seq else {
            return;
        };
        let origin = (item.id.origin.clone(), item.id.incarnation);
        // The origin says where its undelivered items start: everything below was
        // ordered (items are ordered per origin in lseq order).
        let exp = s.expected.entry(origin.clone()).or_insert(floor);
        *exp = (*exp).max(floor.min(item.id.lseq));
        if item.id.lseq < *exp {
            // Ordered already: a resend, so its origin has not seen the order. Its tail
            // goes again now rather than at the tail's pace (at most once per
            // `RESEND_FIRST`): under heavy loss every submit repeat is then a second
            // chance for the order too.
            let last = s.next.saturating_sub(1);
            let origin_addr = self.view.member(&origin.0).map(|m| m.addr);
            if let Some(to) = origin_addr
                && let Some(from) = s.tails.hurry(now, &origin.0, &s.acks, last)
            {
                self.on_nack(to, view, from);
            }
            return;
        }
        let early = s.early.entry(origin.clone()).or_default();
        if early.len() < MAX_PENDING {
            early.insert(item.id.lseq, item);
        }
        self.order_ready(now);
    }

    /// Orders every origin's items that are next in line, within the window.
    fn order_ready(&mut self, now: Instant) {
        loop {
            let Some(s) = &mut self.seq else {
                return;
            };
            if s.next.saturating_sub(self.stable) > WINDOW || s.log_bytes > LOG_BYTES {
                return;
            }
            let mut found = None;
            for (origin, items) in &mut s.early {
                let exp = s.expected.get(origin).copied().unwrap_or(1);
                // Items below what is expected were ordered already.
                while items.first_key_value().is_some_and(|(l, _)| *l < exp) {
                    items.pop_first();
                }
                if let Some(it) = items.remove(&exp) {
                    found = Some((origin.clone(), it));
                    break;
                }
            }
            let Some((origin, item)) = found else {
                return;
            };
            s.expected.insert(origin, item.id.lseq + 1);
            let seq = s.next;
            s.next += 1;
            s.log_bytes += payload_len(&item);
            s.log.insert(seq, item.clone());
            self.stats.ordered += 1;
            let stable = self.stable;
            self.batch_item(BatchKind::Order, To::Members, (seq, stable), item.clone());
            self.on_order_item(now, seq, item);
        }
    }

    fn on_ack(&mut self, from: &str, view: ViewId, upto: u64) {
        if view != self.view.id || !self.is_sequencer() {
            return;
        }
        let delivered = self.delivered;
        let Some(s) = &mut self.seq else {
            return;
        };
        if self.view.member(from).is_none() {
            return;
        }
        let a = s.acks.entry(from.to_string()).or_insert(0);
        *a = (*a).max(upto.min(s.next.saturating_sub(1)));
        let stable = self
            .view
            .members
            .iter()
            .map(|m| {
                if m.name == self.me.name {
                    delivered
                } else {
                    s.acks.get(&m.name).copied().unwrap_or(0)
                }
            })
            .min()
            .unwrap_or(0);
        if stable > self.stable {
            self.stable = stable;
            s.log = s.log.split_off(&(stable + 1));
            s.log_bytes = s.log.values().map(payload_len).sum();
            self.held = self.held.split_off(&(stable + 1));
        }
    }

    /// Members whose acknowledgement did not move for a period while items above it were
    /// ordered get those items again.
    fn resend_tails(&mut self, now: Instant) {
        let Some(s) = &mut self.seq else {
            return;
        };
        let last = s.next.saturating_sub(1);
        let stuck = s
            .tails
            .stuck(now, (&self.view, &self.me.name), &s.acks, last);
        let view = self.view.id.clone();
        for (to, from) in stuck {
            self.on_nack(to, view.clone(), from);
        }
    }

    fn on_nack(&mut self, to: PeerAddr, view: ViewId, from: u64) {
        if view != self.view.id || !self.is_sequencer() {
            return;
        }
        let Some(s) = &self.seq else {
            return;
        };
        let items: Vec<(u64, Item)> = s
            .log
            .range(from..)
            .take(RESEND_BURST)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let stable = self.stable;
        for (seq, item) in items {
            self.stats.resent += 1;
            self.batch_item(BatchKind::Order, To::One(to), (seq, stable), item);
        }
    }

    // ----- members: delivery -----

    fn on_order(&mut self, now: Instant, view: &ViewId, seq: u64, stable: u64, items: Vec<Item>) {
        if *view != self.view.id || self.flush.is_some() {
            return;
        }
        for (k, item) in (seq..).zip(items) {
            self.on_order_item(now, k, item);
        }
        if stable > self.stable && stable <= self.delivered {
            self.stable = stable;
            self.held = self.held.split_off(&(stable + 1));
        }
    }

    fn on_order_item(&mut self, now: Instant, seq: u64, item: Item) {
        if seq <= self.delivered {
            return;
        }
        if seq == self.delivered + 1 || self.canary {
            self.deliver(now, seq, item);
            while let Some(it) = self.ahead.remove(&(self.delivered + 1)) {
                self.deliver(now, self.delivered + 1, it);
            }
            self.ahead = self.ahead.split_off(&(self.delivered + 1));
        } else if self.ahead.len() < (2 * WINDOW) as usize {
            self.ahead.insert(seq, item);
        }
    }

    fn deliver(&mut self, _now: Instant, seq: u64, item: Item) {
        self.delivered = seq;
        self.unacked_bytes += payload_len(&item);
        self.held.insert(seq, item.clone());
        let view = self.view.id.clone();
        if item.id.origin == self.me.name && item.id.incarnation == self.me.incarnation {
            self.pending.remove(&item.id.lseq);
            self.own_delivered += 1;
        }
        let origin = (item.id.origin.clone(), item.id.incarnation);
        if self.seen.get(&origin).is_some_and(|l| *l >= item.id.lseq) {
            // Seen before: a message is not delivered twice. A join or leave takes effect
            // again here, as at every daemon of the view: the table the view started with
            // was built from what each daemon says of its own clients, and the origin,
            // which had not seen this item delivered, still said the old (applying a
            // membership change twice changes nothing more).
            if let What::Data { payload, .. } = item.what {
                self.outbox.event(GroupsEvent::Skipped {
                    view,
                    seq,
                    id: item.id,
                    group: item.group,
                    payload,
                });
                return;
            }
        } else {
            self.seen.insert(origin, item.id.lseq);
            self.stats.delivered += 1;
        }
        let mine = item.id.origin == self.me.name && item.id.incarnation == self.me.incarnation;
        let leave_cause = if matches!(item.what, What::Gone { .. }) {
            Cause::Disconnect
        } else {
            Cause::Leave
        };
        match item.what {
            What::Data { sender, payload } => {
                self.outbox.event(GroupsEvent::Delivered {
                    view,
                    seq,
                    id: item.id,
                    group: item.group,
                    sender,
                    payload,
                });
            }
            What::Join { client } => {
                if mine {
                    self.locals.insert((item.group.clone(), client.clone()));
                }
                let m = (client, item.id.origin);
                if self
                    .table
                    .entry(item.group.clone())
                    .or_default()
                    .insert(m.clone())
                {
                    self.group_view(&item.group, seq, Cause::Join, GroupChange::Joined(m));
                }
            }
            What::Leave { client } | What::Gone { client } => {
                if mine {
                    self.locals.remove(&(item.group.clone(), client.clone()));
                }
                let m = (client, item.id.origin);
                let removed = self
                    .table
                    .get_mut(&item.group)
                    .is_some_and(|s| s.remove(&m));
                if self.table.get(&item.group).is_some_and(BTreeSet::is_empty) {
                    self.table.remove(&item.group);
                }
                if removed {
                    self.group_view(&item.group, seq, leave_cause, GroupChange::Left(m));
                }
            }
        }
    }

    fn group_view(&mut self, group: &str, seq: u64, cause: Cause, change: GroupChange) {
        let count = self.table.get(group).map_or(0, BTreeSet::len);
        self.outbox.event(GroupsEvent::GroupView {
            group: group.to_string(),
            view: self.view.id.clone(),
            seq,
            change,
            count,
            cause,
        });
    }

    // ----- view changes: the flush -----

    fn on_view(&mut self, now: Instant, v: View) {
        let current = self.flush.as_ref().map_or(&self.view.id, |f| &f.view.id);
        if v.id <= *current
            || v.member(&self.me.name).map(|m| m.incarnation) != Some(self.me.incarnation)
        {
            return;
        }
        let seqr = Self::sequencer_of(&v).addr;
        let sequencer = Self::sequencer_of(&v).name == self.me.name;
        self.flush = Some(Flush {
            view: v,
            since: now,
            states: BTreeMap::new(),
            asks: Backoff::new(FLUSH_ASK_FIRST, RESEND_MAX, now),
            asked: false,
        });
        if !sequencer {
            // Told at once, not only when asked: the sequencer's first request may have
            // come before this view was installed here, and its repeat comes only a
            // `FLUSH_ASK_FIRST` later — the whole flush would wait for it.
            let st = self.flush_state();
            self.send(seqr, &st);
        }
        self.flush_step(now);
    }

    /// The new sequencer asks for states (again) and, once it has them all, starts.
    fn flush_step(&mut self, now: Instant) {
        let Some(f) = &self.flush else {
            return;
        };
        let seqr = Self::sequencer_of(&f.view).clone();
        if seqr.name != self.me.name {
            return;
        }
        if !f.states.contains_key(&self.me.name) {
            let mine = self.own_state();
            if let Some(f) = &mut self.flush {
                f.states.insert(self.me.name.clone(), mine);
            }
        }
        let Some(f) = &mut self.flush else {
            return;
        };
        let missing: Vec<PeerAddr> = f
            .view
            .members
            .iter()
            .filter(|m| !f.states.contains_key(&m.name))
            .map(|m| m.addr)
            .collect();
        if !missing.is_empty() {
            // Asked at once, then again only at the flush's pace.
            if f.asked && !f.asks.fire(now) {
                return;
            }
            f.asked = true;
            let frame = GroupMsg::FlushReq {
                view: f.view.id.clone(),
            }
            .to_frame();
            for to in missing {
                self.send_frame(to, frame.clone());
            }
            return;
        }
        let Some(f) = &self.flush else {
            return;
        };
        // Every state is in: per previous view, the highest number delivered there and
        // the items above the lowest.
        let mut per_old: BTreeMap<ViewId, (u64, u64, BTreeMap<u64, Item>)> = BTreeMap::new();
        for st in f.states.values() {
            let e = per_old
                .entry(st.old.clone())
                .or_insert((u64::MAX, 0, BTreeMap::new()));
            e.0 = e.0.min(st.upto);
            e.1 = e.1.max(st.upto);
            for (s, it) in &st.held {
                e.2.insert(*s, it.clone());
            }
        }
        // A member's own clients as they will be once it has delivered the fills: its
        // joins and leaves above what it delivered are applied here, or the table would
        // bring back a client whose leave the fill delivers (or miss one it joins).
        let mut table = Vec::new();
        for (daemon, st) in &f.states {
            let mut mine: BTreeSet<(String, String)> = st.locals.iter().cloned().collect();
            let incarnation = f.view.member(daemon).map(|m| m.incarnation);
            if let Some((_, hi, items)) = per_old.get(&st.old) {
                let above = items.range(st.upto.saturating_add(1)..);
                for (_, it) in above.take_while(|(s, _)| **s <= *hi) {
                    if it.id.origin != *daemon || Some(it.id.incarnation) != incarnation {
                        continue;
                    }
                    let key = |c: &String| (it.group.clone(), c.clone());
                    match &it.what {
                        What::Join { client } => {
                            mine.insert(key(client));
                        }
                        What::Leave { client } | What::Gone { client } => {
                            mine.remove(&key(client));
                        }
                        What::Data { .. } => {}
                    }
                }
            }
            for (g, c) in mine {
                table.push((g, c, daemon.clone()));
            }
        }
        let fills: Vec<Fill> = per_old
            .into_iter()
            .map(|(old, (lo, hi, items))| {
                let items = items
                    .into_iter()
                    .filter(|(s, _)| *s > lo && *s <= hi)
                    .collect();
                (old, hi, items)
            })
            .collect();
        let start = GroupMsg::Start {
            view: f.view.id.clone(),
            fills,
            table,
            fifo: fifo::fills(f.states.values().map(|st| (&st.old, &st.fifo[..]))),
        };
        // Kept to send again until every member acknowledges it.
        self.starting = Some(Starting {
            start: start.clone(),
            acked: BTreeSet::from([self.me.name.clone()]),
            repeat: Backoff::new(START_FIRST, RESEND_MAX, now),
        });
        let frame = start.to_frame();
        let targets: Vec<PeerAddr> = self
            .flush
            .as_ref()
            .map(|f| f.view.members.iter().map(|m| m.addr).collect())
            .unwrap_or_default();
        for to in targets {
            self.send_frame(to, frame.clone());
        }
        if let GroupMsg::Start {
            view,
            fills,
            table,
            fifo,
        } = start
        {
            self.on_start(now, view, fills, table, fifo);
        }
    }

    /// This daemon's answer to a flush request.
    fn flush_state(&self) -> GroupMsg {
        let st = self.own_state();
        GroupMsg::FlushState {
            view: self
                .flush
                .as_ref()
                .map_or(self.view.id.clone(), |f| f.view.id.clone()),
            old: st.old,
            upto: st.upto,
            held: st.held,
            locals: st.locals,
            from: self.me.name.clone(),
            fifo: st.fifo,
        }
    }

    /// What this daemon says of its previous view in a flush.
    fn own_state(&self) -> State {
        State {
            old: self.view.id.clone(),
            upto: self.delivered,
            held: self.held.iter().map(|(s, it)| (*s, it.clone())).collect(),
            locals: self.locals.iter().cloned().collect(),
            fifo: self.fifo_state(),
        }
    }

    fn on_flush_req(&mut self, to: PeerAddr, view: ViewId) {
        if self.flush.as_ref().is_some_and(|f| f.view.id == view) {
            let st = self.flush_state();
            self.send(to, &st);
        }
    }

    fn on_flush_state(&mut self, now: Instant, msg: GroupMsg) {
        let GroupMsg::FlushState {
            view,
            old,
            upto,
            held,
            locals,
            from,
            fifo,
        } = msg
        else {
            return;
        };
        let Some(f) = &mut self.flush else {
            return;
        };
        if f.view.id != view || f.view.member(&from).is_none() {
            return;
        }
        let st = State {
            old,
            upto,
            held,
            locals,
            fifo,
        };
        if f.states.insert(from, st).is_none() {
            // A new answer is progress: the others are asked again a full wait from now.
            f.asks.progress(now);
        }
        if f.states.len() == f.view.members.len() {
            self.flush_step(now);
        }
    }

    fn on_start(
        &mut self,
        now: Instant,
        view: ViewId,
        fills: Vec<Fill>,
        table: Vec<(String, String, String)>,
        fifo: Vec<FifoFill>,
    ) {
        let Some(f) = &self.flush else {
            // Started already: the sequencer did not hear it; say so again.
            if view == self.view.id && !self.is_sequencer() {
                self.send_ack();
            }
            return;
        };
        if f.view.id != view {
            return;
        }
        let new = f.view.clone();
        let took = now.saturating_duration_since(f.since);
        let old = self.view.id.clone();
        // Finish the previous view as everyone coming from it does.
        let mut upto = self.delivered;
        if let Some((_, hi, items)) = fills.into_iter().find(|(o, _, _)| *o == old) {
            let mut items: BTreeMap<u64, Item> = items.into_iter().collect();
            items.extend(std::mem::take(&mut self.ahead));
            while self.delivered < hi {
                let Some(it) = items.remove(&(self.delivered + 1)) else {
                    break;
                };
                self.deliver(now, self.delivered + 1, it);
            }
            upto = self.delivered;
        }
        // FIFO items of the previous view, per origin, the same way.
        self.fifo_finish(&old, fifo);
        self.outbox.event(GroupsEvent::Closed {
            old,
            new: new.id.clone(),
            upto,
            took,
        });
        // The new view, its table, and notices where a group changed.
        let mut fresh: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for (g, c, d) in table {
            fresh.entry(g).or_default().insert((c, d));
        }
        let before = std::mem::replace(&mut self.table, fresh);
        self.view = new;
        self.delivered = 0;
        self.stable = 0;
        self.last_ack = 0;
        self.unacked_bytes = 0;
        self.held.clear();
        self.ahead.clear();
        self.seq = self.is_sequencer().then(|| Sequencer {
            next: 1,
            ..Sequencer::default()
        });
        self.flush = None;
        let everyone = self.view.members.len();
        if !self.is_sequencer()
            || self
                .starting
                .as_ref()
                .is_some_and(|s| s.acked.len() >= everyone)
        {
            // A start sent for an earlier view is moot; one every member has is done.
            self.starting = None;
        }
        // Origins of other views that are gone are forgotten past a bound.
        if self.seen.len() > 4 * super::super::membership::msg::MAX_MEMBERS {
            let keep: BTreeSet<String> = self.view.names().map(str::to_string).collect();
            self.seen.retain(|(o, _), _| keep.contains(o));
        }
        self.stats.flushes += 1;
        let groups: BTreeSet<String> = before.keys().chain(self.table.keys()).cloned().collect();
        // Every group of the old or the new table, changed or not: layers above that keep
        // state of their own per group (service groups) must see the same sequence at
        // every daemon of the new view, whatever table each held before.
        for g in groups {
            let whole = GroupChange::Whole(self.members(&g));
            self.group_view(&g, 0, Cause::Network, whole);
        }
        if !self.is_sequencer() {
            // Delivered is 0 in the new view: this acknowledges the start.
            self.send_ack();
        }
        // What was submitted and not delivered goes again, in lseq order.
        let again: Vec<Item> = self.pending.values().cloned().collect();
        for it in again {
            self.submit(now, it);
        }
        // FIFO messages taken during the flush go out now, in the new view.
        self.fifo_send_ready();
    }

    // ----- timers -----

    fn on_retry(&mut self, now: Instant) {
        // The new view's sequencer drives a flush (asks again, sends the start again);
        // other members answer it.
        if self
            .flush
            .as_ref()
            .is_some_and(|f| Self::sequencer_of(&f.view).name == self.me.name)
        {
            self.flush_step(now);
        }
        if let Some(s) = &mut self.starting
            && s.repeat.fire(now)
        {
            let missing: Vec<PeerAddr> = self
                .view
                .members
                .iter()
                .filter(|m| !s.acked.contains(&m.name) && m.name != self.me.name)
                .map(|m| m.addr)
                .collect();
            let frame = s.start.to_frame();
            for to in missing {
                self.send_frame(to, frame.clone());
            }
        }
        let flushing_here = self.flush.is_some();
        // Submits go again only when none of this daemon's items was delivered since the
        // last retry: the sequencer orders one origin's items in lseq order, so a lost
        // submit stops them all, and progress means what waits is queued there (sending
        // it again while its window is full was most of a busy sender's traffic).
        let progress = self.own_delivered != self.own_at_retry;
        self.own_at_retry = self.own_delivered;
        if progress || self.pending.is_empty() {
            self.submits.progress(now);
        }
        if !flushing_here {
            let due = !self.pending.is_empty() && self.submits.fire(now);
            let burst = if due { RESEND_BURST } else { 0 };
            let again: Vec<Item> = self.pending.values().take(burst).cloned().collect();
            if !self.is_sequencer() {
                self.stats.resent += again.len() as u64;
            }
            for it in again {
                self.submit(now, it);
            }
            let open = !self.ahead.is_empty() && !self.is_sequencer();
            if gap_due(&mut self.gap, open, self.delivered, now) {
                let to = Self::sequencer_of(&self.view).addr;
                let msg = GroupMsg::Nack {
                    view: self.view.id.clone(),
                    from: self.delivered + 1,
                };
                self.send(to, &msg);
            }
            self.order_ready(now);
            self.fifo_on_retry(now);
        }
        self.timers.set(Timer::Retry, now + RETRY);
    }

    fn on_ack_timer(&mut self, now: Instant) {
        if self.is_sequencer() {
            let me = self.me.name.clone();
            let (view, upto) = (self.view.id.clone(), self.delivered);
            self.on_ack(&me, view, upto);
            self.resend_tails(now);
            self.order_ready(now);
        } else if self.delivered != self.last_ack || self.delivered > self.stable {
            self.send_ack();
        }
        if self.flush.is_none() {
            self.fifo_on_ack_timer(now);
        }
        self.timers.set(Timer::Ack, now + ACK_EVERY);
    }

    /// Acknowledges at once when enough was delivered since the last acknowledgement.
    fn ack_if_due(&mut self) {
        if self.is_sequencer() || self.flush.is_some() {
            return;
        }
        let items = self.delivered.saturating_sub(self.last_ack);
        if items >= ACK_STRIDE || (items > 0 && self.unacked_bytes >= ACK_BYTES) {
            self.send_ack();
        }
    }

    /// Tells the sequencer how far this member delivered.
    fn send_ack(&mut self) {
        self.last_ack = self.delivered;
        self.unacked_bytes = 0;
        let to = Self::sequencer_of(&self.view).addr;
        let msg = GroupMsg::Ack {
            view: self.view.id.clone(),
            upto: self.delivered,
        };
        self.send(to, &msg);
    }

    fn on_frame(&mut self, now: Instant, from: PeerAddr, frame: &Frame) -> Result<(), GroupsError> {
        let msg = GroupMsg::decode(frame)?;
        // Only the view's sequencer orders, and only a flush view's sequencer starts it.
        let from_sequencer = from == Self::sequencer_of(&self.view).addr && !self.is_sequencer();
        let from_flusher = self
            .flush
            .as_ref()
            .is_some_and(|f| from == Self::sequencer_of(&f.view).addr);
        match msg {
            GroupMsg::Submit { view, floor, items } => {
                for item in items {
                    self.on_submit(now, view.clone(), floor, item);
                }
            }
            GroupMsg::Order {
                view,
                seq,
                stable,
                items,
            } if from_sequencer => {
                self.on_order(now, &view, seq, stable, items);
                self.ack_if_due();
            }
            GroupMsg::Order { .. } => {}
            GroupMsg::Ack { view, upto } => {
                if let Some(n) = self.name_at(from) {
                    if view == self.view.id
                        && let Some(s) = &mut self.starting
                    {
                        if s.acked.insert(n.clone()) {
                            s.repeat.progress(now);
                        }
                        if s.acked.len() >= self.view.members.len() {
                            self.starting = None;
                        }
                    }
                    self.on_ack(&n, view, upto);
                    // A window freed by this acknowledgement is filled at once, not at
                    // the next timer.
                    if self.is_sequencer() && self.flush.is_none() {
                        self.order_ready(now);
                    }
                }
            }
            GroupMsg::Nack { view, from: f } if self.name_at(from).is_some() => {
                self.on_nack(from, view, f);
            }
            GroupMsg::Nack { .. } => {}
            GroupMsg::FlushReq { view } => self.on_flush_req(from, view),
            // A member answers for itself only.
            m @ GroupMsg::FlushState { .. } if matches!(&m, GroupMsg::FlushState { from: f, .. } if self.name_at(from).as_deref() == Some(f.as_str())) =>
            {
                self.on_flush_state(now, m);
            }
            GroupMsg::FlushState { .. } => {}
            GroupMsg::Start {
                view,
                fills,
                table,
                fifo,
            } if from_flusher || from_sequencer => {
                self.on_start(now, view, fills, table, fifo);
            }
            GroupMsg::Start { .. } => {}
            GroupMsg::FifoData {
                view,
                fseq,
                stable,
                items,
            } => {
                for (k, item) in (fseq..).zip(items) {
                    self.on_fifo_data(from, &view, k, stable, item)?;
                }
            }
            GroupMsg::FifoAck { view, upto } => {
                if let Some(n) = self.name_at(from) {
                    self.on_fifo_ack(&n, &view, upto);
                }
            }
            GroupMsg::FifoNack { view, from: f } => self.on_fifo_nack(from, &view, f),
            GroupMsg::FifoStable { view, upto } => self.on_fifo_stable(from, &view, upto),
        }
        Ok(())
    }

    /// The member (of the view, or of the one being flushed to) at `addr`. Looked up only
    /// for the messages that need a sender's name, not for every order.
    fn name_at(&self, addr: PeerAddr) -> Option<String> {
        self.view
            .members
            .iter()
            .chain(self.flush.iter().flat_map(|f| f.view.members.iter()))
            .find(|m| m.addr == addr)
            .map(|m| m.name.clone())
    }

    fn check(&self) -> Result<(), String> {
        self.timers.check()?;
        if self.view.member(&self.me.name) != Some(&self.me) {
            return Err(format!("view {} does not hold this daemon", self.view.id));
        }
        if self.stable > self.delivered {
            return Err(format!(
                "stable {} above delivered {}",
                self.stable, self.delivered
            ));
        }
        if let Some((k, _)) = self.held.first_key_value()
            && *k <= self.stable
        {
            return Err(format!("item {k} held though stable ({})", self.stable));
        }
        if let Some((k, _)) = self.held.last_key_value()
            && *k > self.delivered
        {
            return Err(format!("item {k} held though not delivered"));
        }
        if let Some((k, _)) = self.ahead.first_key_value()
            && *k <= self.delivered + 1
            && !self.canary
        {
            return Err(format!("item {k} waits though it is next"));
        }
        match (&self.seq, self.is_sequencer()) {
            (Some(s), true) => {
                if s.next <= self.delivered {
                    return Err("the sequencer delivered past what it ordered".into());
                }
                if s.log.keys().any(|k| *k <= self.stable || *k >= s.next) {
                    return Err("the sequencer's log holds items outside (stable, next)".into());
                }
                if s.log_bytes > LOG_BYTES + MAX_PAYLOAD {
                    return Err(format!("{} unstable bytes ordered", s.log_bytes));
                }
            }
            (None, false) => {}
            _ => return Err("sequencer state disagrees with the view".into()),
        }
        if let Some(f) = &self.flush
            && f.view.id <= self.view.id
        {
            return Err("a flush to a view not above the current one".into());
        }
        let forced = self
            .pending
            .values()
            .filter(|it| matches!(it.what, What::Gone { .. }))
            .count();
        if self.pending.len() > MAX_PENDING + forced {
            return Err("too many items pending".into());
        }
        if !self.timers.contains(&Timer::Retry) || !self.timers.contains(&Timer::Ack) {
            return Err("a periodic timer is missing".into());
        }
        self.fifo_check()
    }
}

impl Machine for Groups {
    type Command = GroupsCommand;
    type Event = GroupsEvent;
    type Error = GroupsError;
    type Effect = NoEffect;
    type EffectValue = NoEffect;

    fn handle(
        &mut self,
        now: Instant,
        input: Input<GroupsCommand, NoEffect>,
    ) -> Result<(), GroupsError> {
        let r = match input {
            Input::Frame { from, frame } => {
                let r = self.on_frame(now, from, &frame);
                if r.is_err() {
                    self.stats.bad_frames += 1;
                }
                r
            }
            Input::Command(GroupsCommand::View(v)) => {
                self.on_view(now, v);
                Ok(())
            }
            Input::Command(GroupsCommand::Join { group, client }) => {
                if !valid_group(&client) {
                    return Err(GroupsError::BadName(client));
                }
                self.submit_new(now, group, What::Join { client })
            }
            Input::Command(GroupsCommand::Leave { group, client }) => {
                if !valid_group(&client) {
                    return Err(GroupsError::BadName(client));
                }
                self.submit_new(now, group, What::Leave { client })
            }
            Input::Command(GroupsCommand::Disconnect { group, client }) => {
                if !valid_group(&client) {
                    return Err(GroupsError::BadName(client));
                }
                self.submit_new(now, group, What::Gone { client })
            }
            Input::Command(GroupsCommand::Send {
                group,
                sender,
                payload,
            }) => {
                if !valid_group(&sender) {
                    return Err(GroupsError::BadName(sender));
                }
                if payload.len() > MAX_PAYLOAD {
                    return Err(GroupsError::TooLarge(payload.len()));
                }
                self.submit_new(now, group, What::Data { sender, payload })
            }
            Input::Command(GroupsCommand::SendFifo {
                group,
                sender,
                payload,
            }) => self.submit_fifo(group, sender, payload),
            Input::ClientOpened { .. } | Input::ClientData(..) | Input::ClientClosed(_) => {
                Err(GroupsError::NoClients)
            }
            Input::EffectDone { .. } => Err(GroupsError::NoEffects),
        };
        debug_check(self);
        r
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::Retry => self.on_retry(now),
                Timer::Ack => self.on_ack_timer(now),
            }
        }
        debug_check(self);
    }

    fn poll_output(&mut self) -> Option<OutputOf<Self>> {
        if self.outbox.is_empty() {
            self.flush_batch();
        }
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.check()
    }
}

/// The payload bytes of an item (what the byte bound counts).
fn payload_len(it: &Item) -> usize {
    match &it.what {
        What::Data { payload, .. } => payload.len(),
        _ => 0,
    }
}

impl crate::compose::Part for Groups {
    fn owns_family(&self, family: u8) -> bool {
        family == super::msg::FAMILY
    }
}
