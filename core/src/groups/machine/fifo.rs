//! The cheaper FIFO mode (SPEC.md §10.1): a message sent this way skips the sequencer.
//!
//! **In a view.** The origin numbers its FIFO messages per view (`fseq`, from 1; its own
//! counter, apart from the agreed `lseq`), delivers each to its own clients at once and
//! sends one copy to every other member. A member delivers each origin's messages in
//! `fseq` order, holds what arrives past a gap and asks the origin for the gap, and
//! acknowledges per origin (after [`super::ACK_STRIDE`] items or [`super::ACK_BYTES`]
//! bytes, and every [`super::ACK_EVERY`]). The origin keeps what not every member has
//! acknowledged, sends it again to a member whose acknowledgement stands still, and
//! says how far every member has it (`stable`), so members forget what they held.
//!
//! **Between views.** No FIFO message is sent while a flush runs (they wait, and go in
//! the new view). Each member's flush state says, per origin, the last item it
//! delivered and the items it holds; the start finishes every origin of every previous
//! view up to the highest number any member coming from it delivered. A member holds
//! every item it delivered until the origin said every member has it, so the start can
//! always carry what the lowest member lacks. Nothing is sent again in the next view,
//! so nothing comes twice.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{
    ACK_BYTES, ACK_STRIDE, BatchKind, GroupMsg, Groups, GroupsError, GroupsEvent, Item,
    MAX_PAYLOAD, MAX_PENDING, RESEND_BURST, Tails, To, gap_due, payload_len,
};
use crate::backoff::Backoff;
use crate::groups::msg::{FifoFill, FifoState, MsgId, What, valid_group};
use crate::machine::PeerAddr;
use crate::membership::view::ViewId;
use crate::time::Instant;

/// One origin's FIFO items sent beyond what every member has, at most (later ones wait).
pub const FIFO_WINDOW: u64 = 512;
/// One origin's FIFO payload bytes beyond what every member has, at most (an item alone
/// may pass it), and less in large views: all origins together stay within
/// [`FIFO_BUDGET`] so a flush state carries them in one frame.
pub const FIFO_LOG_BYTES: usize = 256 * 1024;
/// Unstable FIFO payload bytes of all origins of a view together, in the usual case.
const FIFO_BUDGET: usize = 4 * 1024 * 1024;

/// What one member has of another origin's FIFO items in the view.
#[derive(Debug, Default)]
struct Inbound {
    delivered: u64,
    /// Every member delivered up to here (said by the origin; never above `delivered`).
    stable: u64,
    /// Delivered items not known stable: what a flush may need from this member.
    held: BTreeMap<u64, Item>,
    /// Items past a gap.
    ahead: BTreeMap<u64, Item>,
    last_ack: u64,
    unacked_bytes: usize,
    /// While items wait past a gap: where delivery stopped, and when to ask again.
    gap: Option<(u64, Backoff)>,
}

/// The FIFO state of one daemon in its current view.
#[derive(Debug)]
pub(super) struct FifoView {
    /// The number of this daemon's next FIFO item.
    next: u64,
    /// This daemon's items not every member has acknowledged, and their payload bytes.
    log: BTreeMap<u64, Item>,
    log_bytes: usize,
    /// Each other member's acknowledgement of this daemon's items (a member stuck below
    /// the last item lost the tail: it is sent again, paced).
    acks: BTreeMap<String, u64>,
    tails: Tails,
    /// Every member has this daemon's items up to here; `announced` is what it said.
    stable: u64,
    announced: u64,
    /// Per other origin of the view.
    from: BTreeMap<String, Inbound>,
}

impl Default for FifoView {
    fn default() -> Self {
        FifoView {
            next: 1,
            log: BTreeMap::new(),
            log_bytes: 0,
            acks: BTreeMap::new(),
            tails: Tails::default(),
            stable: 0,
            announced: 0,
            from: BTreeMap::new(),
        }
    }
}

/// How a start finishes every origin's FIFO items of every previous view: per (view,
/// origin), up to the highest number a member coming from the view delivered, with the
/// items above the lowest such member's (members that name no item of an origin
/// delivered none of it).
pub(super) fn fills<'a>(
    states: impl Iterator<Item = (&'a ViewId, &'a [FifoState])>,
) -> Vec<FifoFill> {
    /// What the members coming from one view said of one origin.
    struct Said {
        naming: usize,
        lo: u64,
        hi: u64,
        items: BTreeMap<u64, Item>,
    }
    let mut members: BTreeMap<&ViewId, usize> = BTreeMap::new();
    let mut per: BTreeMap<(ViewId, String), Said> = BTreeMap::new();
    for (old, fifo) in states {
        *members.entry(old).or_default() += 1;
        for (origin, upto, held) in fifo {
            let e = per.entry((old.clone(), origin.clone())).or_insert(Said {
                naming: 0,
                lo: u64::MAX,
                hi: 0,
                items: BTreeMap::new(),
            });
            e.naming += 1;
            e.lo = e.lo.min(*upto);
            e.hi = e.hi.max(*upto);
            for (k, it) in held {
                e.items.insert(*k, it.clone());
            }
        }
    }
    per.into_iter()
        .map(|((old, origin), said)| {
            // A member that names no item of the origin delivered none.
            let lo = if said.naming < members.get(&old).copied().unwrap_or(0) {
                0
            } else {
                said.lo
            };
            let hi = said.hi;
            let items = said
                .items
                .into_iter()
                .filter(|(k, _)| *k > lo && *k <= hi)
                .collect();
            (old, origin, hi, items)
        })
        .collect()
}

impl Groups {
    /// A client's FIFO message: sent at once when it can be, else kept in order.
    pub(super) fn submit_fifo(
        &mut self,
        group: String,
        sender: String,
        payload: Bytes,
    ) -> Result<(), GroupsError> {
        if !valid_group(&group) {
            return Err(GroupsError::BadName(group));
        }
        if !valid_group(&sender) {
            return Err(GroupsError::BadName(sender));
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(GroupsError::TooLarge(payload.len()));
        }
        if self.pending() >= MAX_PENDING {
            return Err(GroupsError::Busy);
        }
        let id = MsgId {
            origin: self.me.name.clone(),
            incarnation: self.me.incarnation,
            lseq: 0,
        };
        let what = What::Data { sender, payload };
        self.fifo_pending.push_back(Item { id, group, what });
        self.fifo_send_ready();
        Ok(())
    }

    /// Payload bytes this daemon may have unstable in the view.
    fn fifo_window_bytes(&self) -> usize {
        (FIFO_BUDGET / self.view.members.len().max(1)).min(FIFO_LOG_BYTES)
    }

    fn fifo_room(&self, next: &Item) -> bool {
        let f = &self.fifo;
        f.next - 1 - f.stable < FIFO_WINDOW
            && (f.log.is_empty() || f.log_bytes + payload_len(next) <= self.fifo_window_bytes())
    }

    /// Sends waiting FIFO messages while no flush runs and the window has room.
    pub(super) fn fifo_send_ready(&mut self) {
        while self.flush.is_none() {
            let Some(next) = self.fifo_pending.front() else {
                break;
            };
            if !self.fifo_room(next) {
                break;
            }
            let Some(mut item) = self.fifo_pending.pop_front() else {
                break;
            };
            let fseq = self.fifo.next;
            self.fifo.next += 1;
            item.id.lseq = fseq;
            self.fifo.log_bytes += payload_len(&item);
            self.fifo.log.insert(fseq, item.clone());
            let stable = self.fifo.stable;
            self.batch_item(BatchKind::Fifo, To::Members, (fseq, stable), item.clone());
            self.fifo_emit(item);
        }
        self.fifo_stabilise();
    }

    /// Tells the embedding program a FIFO item was delivered here.
    fn fifo_emit(&mut self, item: Item) {
        self.stats.fifo_delivered += 1;
        if let What::Data { sender, payload } = item.what {
            self.outbox.event(GroupsEvent::FifoDelivered {
                view: self.view.id.clone(),
                id: item.id,
                group: item.group,
                sender,
                payload,
            });
        }
    }

    /// The origin's stable point from the acknowledgements (every other member's least).
    fn fifo_stabilise(&mut self) {
        let f = &mut self.fifo;
        let stable = self
            .view
            .members
            .iter()
            .filter(|m| m.name != self.me.name)
            .map(|m| f.acks.get(&m.name).copied().unwrap_or(0))
            .min()
            .unwrap_or(f.next - 1);
        if stable > f.stable {
            f.stable = stable;
            f.log = f.log.split_off(&(stable + 1));
            f.log_bytes = f.log.values().map(payload_len).sum();
        }
    }

    pub(super) fn on_fifo_data(
        &mut self,
        from: PeerAddr,
        view: &ViewId,
        fseq: u64,
        stable: u64,
        item: Item,
    ) -> Result<(), GroupsError> {
        if !matches!(item.what, What::Data { .. }) {
            return Err(GroupsError::Decode(
                crate::wire::DecodeError::InvalidValue {
                    field: "fifo item",
                    value: 0,
                },
            ));
        }
        if *view != self.view.id || self.flush.is_some() || fseq == 0 {
            return Ok(());
        }
        // Only the origin itself sends its items, as the member the view names.
        let origin = match self.view.member(&item.id.origin) {
            Some(m)
                if m.addr == from
                    && m.incarnation == item.id.incarnation
                    && m.name != self.me.name =>
            {
                m.name.clone()
            }
            _ => return Ok(()),
        };
        let canary = self.canary;
        // Keyed by the name already taken: a second copy only for an origin's first item.
        if !self.fifo.from.contains_key(&origin) {
            self.fifo.from.insert(origin.clone(), Inbound::default());
        }
        let Some(inb) = self.fifo.from.get_mut(&origin) else {
            return Ok(());
        };
        inb.note_stable(stable);
        if fseq <= inb.delivered {
            return Ok(());
        }
        let mut out = Vec::new();
        if fseq == inb.delivered + 1 || canary {
            out.push(inb.deliver(fseq, item));
            while let Some(it) = inb.ahead.remove(&(inb.delivered + 1)) {
                let k = inb.delivered + 1;
                out.push(inb.deliver(k, it));
            }
            inb.ahead = inb.ahead.split_off(&(inb.delivered + 1));
        } else if inb.ahead.len() < (2 * FIFO_WINDOW) as usize {
            inb.ahead.insert(fseq, item);
        }
        let due = inb.delivered - inb.last_ack >= ACK_STRIDE
            || (inb.delivered > inb.last_ack && inb.unacked_bytes >= ACK_BYTES);
        for it in out {
            self.fifo_emit(it);
        }
        if due {
            self.fifo_ack(&origin);
        }
        Ok(())
    }

    /// Tells an origin how far this member delivered its FIFO items.
    fn fifo_ack(&mut self, origin: &str) {
        let Some(to) = self.view.member(origin).map(|m| m.addr) else {
            return;
        };
        let Some(inb) = self.fifo.from.get_mut(origin) else {
            return;
        };
        inb.last_ack = inb.delivered;
        inb.unacked_bytes = 0;
        let msg = GroupMsg::FifoAck {
            view: self.view.id.clone(),
            upto: inb.delivered,
        };
        self.send(to, &msg);
    }

    pub(super) fn on_fifo_ack(&mut self, from: &str, view: &ViewId, upto: u64) {
        if *view != self.view.id || self.flush.is_some() || self.view.member(from).is_none() {
            return;
        }
        let sent = self.fifo.next - 1;
        let a = self.fifo.acks.entry(from.to_string()).or_insert(0);
        *a = (*a).max(upto.min(sent));
        self.fifo_stabilise();
        self.fifo_send_ready();
    }

    pub(super) fn on_fifo_nack(&mut self, to: PeerAddr, view: &ViewId, from: u64) {
        if *view != self.view.id || !self.view.members.iter().any(|m| m.addr == to) {
            return;
        }
        let items: Vec<(u64, Item)> = self
            .fifo
            .log
            .range(from..)
            .take(RESEND_BURST)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let stable = self.fifo.stable;
        for (fseq, item) in items {
            self.stats.fifo_resent += 1;
            self.batch_item(BatchKind::Fifo, To::One(to), (fseq, stable), item);
        }
    }

    pub(super) fn on_fifo_stable(&mut self, from: PeerAddr, view: &ViewId, upto: u64) {
        if *view != self.view.id || self.flush.is_some() {
            return;
        }
        let Some(origin) = self.view.members.iter().find(|m| m.addr == from) else {
            return;
        };
        if let Some(inb) = self.fifo.from.get_mut(&origin.name) {
            inb.note_stable(upto);
        }
    }

    /// Every retry period: ask origins for gaps, and send what waits for room.
    pub(super) fn fifo_on_retry(&mut self, now: Instant) {
        let view = &self.view;
        let gaps: Vec<(PeerAddr, u64)> = self
            .fifo
            .from
            .iter_mut()
            .filter_map(|(o, inb)| {
                let due = gap_due(&mut inb.gap, !inb.ahead.is_empty(), inb.delivered, now);
                due.then(|| Some((view.member(o)?.addr, inb.delivered + 1)))?
            })
            .collect();
        for (to, from) in gaps {
            let msg = GroupMsg::FifoNack {
                view: self.view.id.clone(),
                from,
            };
            self.send(to, &msg);
        }
        self.fifo_send_ready();
    }

    /// Every acknowledgement period: acknowledge what is not, send tails again to members
    /// stuck below them, and say how far every member has this daemon's items.
    pub(super) fn fifo_on_ack_timer(&mut self, now: Instant) {
        let due: Vec<String> = self
            .fifo
            .from
            .iter()
            .filter(|(_, i)| i.delivered != i.last_ack || i.delivered > i.stable)
            .map(|(o, _)| o.clone())
            .collect();
        for o in due {
            self.fifo_ack(&o);
        }
        let last = self.fifo.next - 1;
        let f = &mut self.fifo;
        let stuck = f
            .tails
            .stuck(now, (&self.view, &self.me.name), &f.acks, last);
        let view = self.view.id.clone();
        for (to, from) in stuck {
            self.on_fifo_nack(to, &view, from);
        }
        if self.fifo.stable > self.fifo.announced {
            self.fifo.announced = self.fifo.stable;
            let frame = GroupMsg::FifoStable {
                view,
                upto: self.fifo.stable,
            }
            .to_frame();
            let targets: Vec<PeerAddr> = self.view.members.iter().map(|m| m.addr).collect();
            for to in targets {
                self.send_frame(to, frame.clone());
            }
        }
    }

    /// What this daemon says of FIFO items in its flush state: per origin (itself
    /// included) the last delivered and the items held.
    pub(super) fn fifo_state(&self) -> Vec<FifoState> {
        let mut out = Vec::new();
        if self.fifo.next > 1 {
            let log = self
                .fifo
                .log
                .iter()
                .map(|(k, it)| (*k, it.clone()))
                .collect();
            out.push((self.me.name.clone(), self.fifo.next - 1, log));
        }
        for (o, inb) in &self.fifo.from {
            if inb.delivered > 0 {
                let held = inb.held.iter().map(|(k, it)| (*k, it.clone())).collect();
                out.push((o.clone(), inb.delivered, held));
            }
        }
        out
    }

    /// Finishes the FIFO items of the view being left as the start says, then forgets
    /// the view's FIFO state.
    pub(super) fn fifo_finish(&mut self, old: &ViewId, fills: Vec<FifoFill>) {
        let mut out = Vec::new();
        for (view, origin, hi, items) in fills {
            if view != *old || origin == self.me.name {
                continue;
            }
            let inb = self.fifo.from.entry(origin).or_default();
            let mut items: BTreeMap<u64, Item> = items.into_iter().collect();
            items.extend(std::mem::take(&mut inb.ahead));
            while inb.delivered < hi {
                let k = inb.delivered + 1;
                let Some(it) = items.remove(&k) else {
                    break;
                };
                out.push(inb.deliver(k, it));
            }
        }
        for it in out {
            self.fifo_emit(it);
        }
        self.fifo = FifoView::default();
    }

    pub(super) fn fifo_check(&self) -> Result<(), String> {
        let f = &self.fifo;
        if f.log.keys().any(|k| *k <= f.stable || *k >= f.next) {
            return Err("the FIFO log holds items outside (stable, next)".into());
        }
        if f.log_bytes != f.log.values().map(payload_len).sum::<usize>() {
            return Err("the FIFO log's byte count is off".into());
        }
        if f.next - 1 - f.stable > FIFO_WINDOW || f.log_bytes > FIFO_LOG_BYTES + MAX_PAYLOAD {
            return Err(format!(
                "{} FIFO items ({} bytes) unstable",
                f.next - 1 - f.stable,
                f.log_bytes
            ));
        }
        if self.fifo_pending.len() > MAX_PENDING {
            return Err("too many FIFO messages waiting".into());
        }
        // A FIFO message waits only while a flush runs or the window is full.
        if let Some(next) = self.fifo_pending.front()
            && self.flush.is_none()
            && self.fifo_room(next)
        {
            return Err("a FIFO message waits though it could be sent".into());
        }
        for (o, inb) in &f.from {
            if self.view.member(o).is_none() || *o == self.me.name {
                return Err(format!("FIFO state for {o}, not another member"));
            }
            if inb.stable > inb.delivered
                || inb
                    .held
                    .keys()
                    .any(|k| *k <= inb.stable || *k > inb.delivered)
            {
                return Err(format!(
                    "FIFO items of {o} held outside (stable, delivered]"
                ));
            }
            if !self.canary
                && inb
                    .ahead
                    .keys()
                    .next()
                    .is_some_and(|k| *k <= inb.delivered + 1)
            {
                return Err(format!("a FIFO item of {o} waits though it is next"));
            }
        }
        Ok(())
    }
}

impl Inbound {
    /// The origin says every member has its items up to `stable`.
    fn note_stable(&mut self, stable: u64) {
        let stable = stable.min(self.delivered);
        if stable > self.stable {
            self.stable = stable;
            self.held = self.held.split_off(&(stable + 1));
        }
    }

    fn deliver(&mut self, fseq: u64, item: Item) -> Item {
        self.delivered = fseq;
        self.unacked_bytes += payload_len(&item);
        self.held.insert(fseq, item.clone());
        item
    }
}

// Beside the machine's own file, but declared here so that it reaches the FIFO state's
// fields as well as the machine's.
#[cfg(test)]
#[path = "check_tests.rs"]
mod check_tests;
