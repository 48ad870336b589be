//! Batches on the wire (SPEC.md §10.4): the items a daemon sends in one turn to the same
//! peers, of one kind and view and (when numbered) numbered one after the other, share one
//! frame: one header, one checksum and one write for many items.
//!
//! A batch is formed from what is queued, never by waiting: it is closed when anything
//! else is sent (so frames leave in the order they were made, as without batches), when
//! it holds [`MAX_BATCH`] items or [`BATCH_BYTES`] of payload, and when the outputs are
//! polled with nothing else waiting (the end of the driver's turn). Under light load a
//! batch is one item and leaves as soon as it would have alone.

use super::{Groups, payload_len};
use crate::groups::msg::{BATCH_BYTES, GroupMsg, Item, MAX_BATCH};
use crate::machine::PeerAddr;
use crate::membership::view::ViewId;

/// What a batch carries.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum BatchKind {
    /// Own items to the sequencer (`Submit`); `first` is the floor.
    Submit,
    /// Ordered items (`Order`); `first` is the first number.
    Order,
    /// Own FIFO items (`FifoData`); `first` is the first number.
    Fifo,
}

/// Where a batch goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum To {
    /// One peer (a submit to the sequencer, a resend to one member).
    One(PeerAddr),
    /// Every member of the view the batch was made in.
    Members,
}

/// Items waiting to leave in one frame.
#[derive(Debug)]
pub(super) struct Batch {
    kind: BatchKind,
    view: ViewId,
    to: To,
    /// The peers it goes to (fixed when it was opened: a view change meanwhile does not
    /// redirect it).
    targets: Vec<PeerAddr>,
    first: u64,
    /// The stable point sent with it: the latest when an item was added.
    stable: u64,
    items: Vec<Item>,
    bytes: usize,
}

impl Batch {
    /// Whether an item numbered `first` (or, for a submit, of any number) may join.
    fn takes(&self, kind: BatchKind, view: &ViewId, to: &To, first: u64) -> bool {
        let numbered_next = kind == BatchKind::Submit
            || self.first.checked_add(self.items.len() as u64) == Some(first);
        self.kind == kind
            && self.to == *to
            && self.view == *view
            && numbered_next
            && self.items.len() < MAX_BATCH
            && self.bytes < BATCH_BYTES
    }
}

impl Groups {
    /// Queues `item` to go to `to` in a batch of `kind` of the current view: `first` is
    /// its number (the origin's floor for a submit), `stable` the stable point to send.
    pub(super) fn batch_item(
        &mut self,
        kind: BatchKind,
        to: To,
        (first, stable): (u64, u64),
        item: Item,
    ) {
        let view = &self.view.id;
        let joins = self
            .batch
            .as_ref()
            .is_some_and(|b| b.takes(kind, view, &to, first));
        if !joins {
            self.flush_batch();
            let targets = match &to {
                To::One(a) => vec![*a],
                To::Members => self.view.members.iter().map(|m| m.addr).collect(),
            };
            self.batch = Some(Batch {
                kind,
                view: self.view.id.clone(),
                to,
                targets,
                first,
                stable,
                items: Vec::new(),
                bytes: 0,
            });
        }
        if let Some(b) = &mut self.batch {
            b.stable = b.stable.max(stable);
            b.bytes += payload_len(&item);
            b.items.push(item);
        }
    }

    /// Sends the batch being formed, if any.
    pub(super) fn flush_batch(&mut self) {
        let Some(b) = self.batch.take() else {
            return;
        };
        let Batch {
            kind,
            view,
            first,
            stable,
            items,
            targets,
            ..
        } = b;
        let msg = match kind {
            BatchKind::Submit => GroupMsg::Submit {
                view,
                floor: first,
                items,
            },
            BatchKind::Order => GroupMsg::Order {
                view,
                seq: first,
                stable,
                items,
            },
            BatchKind::Fifo => GroupMsg::FifoData {
                view,
                fseq: first,
                stable,
                items,
            },
        };
        self.stats.batches += 1;
        // Summed once for every peer it goes to.
        let frame = msg.to_frame().summed();
        for to in targets {
            self.transmit(to, frame.clone());
        }
    }
}
