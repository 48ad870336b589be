//! Daemon-to-daemon messages of client groups (family 0x05; SPEC.md §10.4).

use bytes::Bytes;

use crate::membership::msg::{get_id, get_name, put_id};
use crate::membership::view::ViewId;
use crate::wire::{DecodeError, Frame, Kind, Reader, Writer};

/// The protocol family of every groups frame.
pub const FAMILY: u8 = 0x05;

const fn kind(n: u8) -> Kind {
    Kind(((FAMILY as u16) << 8) | n as u16)
}

// 0x01 (one submitted item), 0x02 (one ordered item) and 0x08 (one FIFO item) were the
// single-item forms of the batches 0x0c, 0x0d and 0x0e; they are no longer spoken.
const SUBMIT: Kind = kind(0x0c);
const ORDER: Kind = kind(0x0d);
const ACK: Kind = kind(0x03);
const NACK: Kind = kind(0x04);
const FLUSH_REQ: Kind = kind(0x05);
const FLUSH_STATE: Kind = kind(0x06);
const START: Kind = kind(0x07);
const FIFO_DATA: Kind = kind(0x0e);
const FIFO_ACK: Kind = kind(0x09);
const FIFO_NACK: Kind = kind(0x0a);
const FIFO_STABLE: Kind = kind(0x0b);

/// Longest group or client name.
pub const MAX_NAME: usize = 64;
/// Most items in one batch (`Submit`, `Order`, `FifoData`).
pub const MAX_BATCH: usize = 1024;
/// Payload bytes a batch takes before it is closed (one more item may pass it): a batch
/// is formed from what is queued in one turn, so this bounds a frame, not a wait.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Largest message body. Small enough that the items a flush carries fit one frame
/// (see `machine::LOG_BYTES`).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Most items in one list (flush states and starts, group tables).
pub const MAX_ITEMS: usize = 65_536;
/// Entries of a group table or of a daemon's own memberships in one message, at most:
/// a view change carries the whole table in one `Start` (SPEC.md §10.3), so a cluster
/// holds at most this many memberships (the client side refuses joins past
/// [`crate::groups::front::MAX_MEMBERSHIPS`], well below it). Such a frame needs a
/// payload limit of about 16 MiB ([`GROUPS_FRAME_LIMIT`]).
pub const MAX_TABLE: usize = 400_000;
/// The frame payload limit a group daemon's driver needs for the largest table.
pub const GROUPS_FRAME_LIMIT: u32 = 16 * 1024 * 1024;

/// A message's identity: the daemon life that took it and its number there.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId {
    /// The daemon that took it from its client.
    pub origin: String,
    /// That daemon's incarnation.
    pub incarnation: u64,
    /// Its number among the origin's messages.
    pub lseq: u64,
}

/// What gets a place in a group's total order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// A message to a group.
    Data {
        /// The sender (a client name, `#CLIENT#DAEMON`).
        sender: String,
        /// The bytes.
        payload: Bytes,
    },
    /// A client joins the group.
    Join {
        /// The client.
        client: String,
    },
    /// A client leaves the group.
    Leave {
        /// The client.
        client: String,
    },
    /// A client's connection to its daemon closed: it leaves every group it was in (one
    /// item per group), told apart from a leave so members see the cause.
    Gone {
        /// The client.
        client: String,
    },
}

/// One ordered item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Its identity.
    pub id: MsgId,
    /// The group.
    pub group: String,
    /// What it is.
    pub what: What,
}

/// Numbered items: `(seq, item)`.
pub type Numbered = Vec<(u64, Item)>;

/// How to finish one previous view: its id, the last number everyone coming from it
/// delivers, and the items above the lowest such member's.
pub type Fill = (ViewId, u64, Numbered);

/// What a member holds of one origin's FIFO items in its previous view: the origin, the
/// last of its items delivered here, and the delivered items not known stable.
pub type FifoState = (String, u64, Numbered);

/// How to finish one origin's FIFO items of one previous view: the view, the origin, the
/// last number everyone coming from the view delivers, and the items above the lowest
/// such member's.
pub type FifoFill = (ViewId, String, u64, Numbered);

/// Every groups message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupMsg {
    /// To the sequencer: order these items in `view` (one batch: what the sender had
    /// queued at once, in `lseq` order).
    Submit {
        /// The sender's view.
        view: ViewId,
        /// The lowest `lseq` the sender has not yet seen delivered (everything below
        /// was ordered: the sequencer starts this origin there).
        floor: u64,
        /// The items, 1 to [`MAX_BATCH`].
        items: Vec<Item>,
    },
    /// From the sequencer: items numbered `seq`, `seq + 1`, … of `view` (also a resend).
    Order {
        /// The view.
        view: ViewId,
        /// The first item's number in the view, from 1.
        seq: u64,
        /// Every member holds items up to this number (they may be forgotten).
        stable: u64,
        /// The items, 1 to [`MAX_BATCH`], numbered from `seq` on.
        items: Vec<Item>,
    },
    /// To the sequencer: items up to `upto` delivered here.
    Ack {
        /// The view.
        view: ViewId,
        /// The highest number delivered.
        upto: u64,
    },
    /// To the sequencer: send again from `from`.
    Nack {
        /// The view.
        view: ViewId,
        /// The first number missing.
        from: u64,
    },
    /// From a new view's sequencer: say what you delivered in your previous view.
    FlushReq {
        /// The new view.
        view: ViewId,
    },
    /// A member's answer.
    FlushState {
        /// The new view.
        view: ViewId,
        /// The member's previous view.
        old: ViewId,
        /// Items up to this number of `old` delivered.
        upto: u64,
        /// Items of `old` the member holds that not every member may have: `(seq, item)`.
        held: Numbered,
        /// The member's own clients' groups: `(group, client)`.
        locals: Vec<(String, String)>,
        /// The member's name.
        from: String,
        /// Per origin of FIFO items in `old` (itself included): what it delivered and
        /// holds.
        fifo: Vec<FifoState>,
    },
    /// From the sequencer: finish your previous view with these items, then start the
    /// new view with this group table.
    Start {
        /// The new view.
        view: ViewId,
        /// Per previous view: up to which number everyone coming from it delivers, and
        /// the items above the lowest such member's.
        fills: Vec<Fill>,
        /// Every group's members at the start: `(group, client, daemon)`.
        table: Vec<(String, String, String)>,
        /// Per previous view and origin: how to finish its FIFO items.
        fifo: Vec<FifoFill>,
    },
    /// From a FIFO items' origin to every member: its items numbered `fseq`, `fseq + 1`,
    /// … of `view` (numbered per origin and view from 1; also a resend). Each is a
    /// message.
    FifoData {
        /// The view.
        view: ViewId,
        /// The first item's number among the origin's FIFO items of the view.
        fseq: u64,
        /// Every member delivered the origin's items up to this number.
        stable: u64,
        /// The items, 1 to [`MAX_BATCH`] (each `id.lseq` is its number).
        items: Vec<Item>,
    },
    /// To a FIFO origin: its items up to `upto` delivered here.
    FifoAck {
        /// The view.
        view: ViewId,
        /// The highest number delivered.
        upto: u64,
    },
    /// To a FIFO origin: send your items again from `from`.
    FifoNack {
        /// The view.
        view: ViewId,
        /// The first number missing.
        from: u64,
    },
    /// From a FIFO origin: every member delivered its items up to `upto` (they may be
    /// forgotten).
    FifoStable {
        /// The view.
        view: ViewId,
        /// The stable point.
        upto: u64,
    },
}

fn put_item(w: &mut Writer, it: &Item) {
    w.str(&it.id.origin)
        .u64(it.id.incarnation)
        .u64(it.id.lseq)
        .str(&it.group);
    match &it.what {
        What::Data { sender, payload } => {
            w.u8(0).str(sender).bytes(payload);
        }
        What::Join { client } => {
            w.u8(1).str(client);
        }
        What::Leave { client } => {
            w.u8(2).str(client);
        }
        What::Gone { client } => {
            w.u8(3).str(client);
        }
    }
}

/// A group or client name: 1 to 64 bytes of printable ASCII without spaces.
pub fn valid_group(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_graphic())
}

fn get_label(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    let s = r.str(field, MAX_NAME)?;
    if !valid_group(&s) {
        return Err(DecodeError::InvalidValue {
            field,
            value: s.len() as u64,
        });
    }
    Ok(s)
}

fn get_item(r: &mut Reader<'_>) -> Result<Item, DecodeError> {
    let id = MsgId {
        origin: get_name(r)?,
        incarnation: r.u64()?,
        lseq: r.u64()?,
    };
    let group = get_label(r, "group")?;
    let what = match r.u8()? {
        0 => What::Data {
            sender: get_label(r, "sender")?,
            payload: r.bytes("payload", MAX_PAYLOAD)?,
        },
        1 => What::Join {
            client: get_label(r, "client")?,
        },
        2 => What::Leave {
            client: get_label(r, "client")?,
        },
        3 => What::Gone {
            client: get_label(r, "client")?,
        },
        v => {
            return Err(DecodeError::InvalidValue {
                field: "item",
                value: u64::from(v),
            });
        }
    };
    Ok(Item { id, group, what })
}

fn put_items(w: &mut Writer, items: &[(u64, Item)]) {
    w.count(items.len());
    for (s, it) in items {
        w.u64(*s);
        put_item(w, it);
    }
}

fn put_batch(w: &mut Writer, items: &[Item]) {
    w.count(items.len());
    for it in items {
        put_item(w, it);
    }
}

/// A batch: 1 to [`MAX_BATCH`] items, numbered from `first` on when numbered (the last
/// number must not overflow).
fn get_batch(r: &mut Reader<'_>, first: Option<u64>) -> Result<Vec<Item>, DecodeError> {
    let n = r.count("batch", MAX_BATCH, 30)?;
    let last = first.map(|f| f.checked_add(n as u64));
    if n == 0 || last == Some(None) {
        return Err(DecodeError::InvalidValue {
            field: "batch",
            value: n as u64,
        });
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(get_item(r)?);
    }
    Ok(v)
}

fn get_items(r: &mut Reader<'_>) -> Result<Vec<(u64, Item)>, DecodeError> {
    let n = r.count("items", MAX_ITEMS, 30)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push((r.u64()?, get_item(r)?));
    }
    Ok(v)
}

impl GroupMsg {
    /// Encodes into a frame.
    pub fn to_frame(&self) -> Frame {
        let mut w = Writer::new();
        let k = match self {
            GroupMsg::Submit { view, floor, items } => {
                put_id(&mut w, view);
                w.u64(*floor);
                put_batch(&mut w, items);
                SUBMIT
            }
            GroupMsg::Order {
                view,
                seq,
                stable,
                items,
            } => {
                put_id(&mut w, view);
                w.u64(*seq).u64(*stable);
                put_batch(&mut w, items);
                ORDER
            }
            GroupMsg::Ack { view, upto } => {
                put_id(&mut w, view);
                w.u64(*upto);
                ACK
            }
            GroupMsg::Nack { view, from } => {
                put_id(&mut w, view);
                w.u64(*from);
                NACK
            }
            GroupMsg::FlushReq { view } => {
                put_id(&mut w, view);
                FLUSH_REQ
            }
            GroupMsg::FlushState {
                view,
                old,
                upto,
                held,
                locals,
                from,
                fifo,
            } => {
                put_id(&mut w, view);
                put_id(&mut w, old);
                w.u64(*upto);
                put_items(&mut w, held);
                w.count(locals.len());
                for (g, c) in locals {
                    w.str(g).str(c);
                }
                w.str(from);
                w.count(fifo.len());
                for (origin, upto, held) in fifo {
                    w.str(origin).u64(*upto);
                    put_items(&mut w, held);
                }
                FLUSH_STATE
            }
            GroupMsg::Start {
                view,
                fills,
                table,
                fifo,
            } => {
                put_id(&mut w, view);
                w.count(fills.len());
                for (old, upto, items) in fills {
                    put_id(&mut w, old);
                    w.u64(*upto);
                    put_items(&mut w, items);
                }
                w.count(table.len());
                for (g, c, d) in table {
                    w.str(g).str(c).str(d);
                }
                w.count(fifo.len());
                for (old, origin, upto, items) in fifo {
                    put_id(&mut w, old);
                    w.str(origin).u64(*upto);
                    put_items(&mut w, items);
                }
                START
            }
            GroupMsg::FifoData {
                view,
                fseq,
                stable,
                items,
            } => {
                put_id(&mut w, view);
                w.u64(*fseq).u64(*stable);
                put_batch(&mut w, items);
                FIFO_DATA
            }
            GroupMsg::FifoAck { view, upto } => {
                put_id(&mut w, view);
                w.u64(*upto);
                FIFO_ACK
            }
            GroupMsg::FifoNack { view, from } => {
                put_id(&mut w, view);
                w.u64(*from);
                FIFO_NACK
            }
            GroupMsg::FifoStable { view, upto } => {
                put_id(&mut w, view);
                w.u64(*upto);
                FIFO_STABLE
            }
        };
        Frame::new(k, w.finish())
    }

    /// Decodes a frame of this family.
    pub fn decode(frame: &Frame) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(&frame.payload);
        let r = &mut reader;
        let msg = match frame.kind {
            SUBMIT => GroupMsg::Submit {
                view: get_id(r)?,
                floor: r.u64()?,
                items: get_batch(r, None)?,
            },
            ORDER => {
                let (view, seq, stable) = (get_id(r)?, r.u64()?, r.u64()?);
                GroupMsg::Order {
                    view,
                    seq,
                    stable,
                    items: get_batch(r, Some(seq))?,
                }
            }
            ACK => GroupMsg::Ack {
                view: get_id(r)?,
                upto: r.u64()?,
            },
            NACK => GroupMsg::Nack {
                view: get_id(r)?,
                from: r.u64()?,
            },
            FLUSH_REQ => GroupMsg::FlushReq { view: get_id(r)? },
            FLUSH_STATE => {
                let view = get_id(r)?;
                let old = get_id(r)?;
                let upto = r.u64()?;
                let held = get_items(r)?;
                let n = r.count("locals", MAX_TABLE, 10)?;
                let mut locals = Vec::with_capacity(n);
                for _ in 0..n {
                    locals.push((get_label(r, "group")?, get_label(r, "client")?));
                }
                let from = get_name(r)?;
                let n = r.count("fifo", MAX_ITEMS, 13)?;
                let mut fifo = Vec::with_capacity(n);
                for _ in 0..n {
                    fifo.push((get_name(r)?, r.u64()?, get_items(r)?));
                }
                GroupMsg::FlushState {
                    view,
                    old,
                    upto,
                    held,
                    locals,
                    from,
                    fifo,
                }
            }
            START => {
                let view = get_id(r)?;
                let n = r.count("fills", MAX_ITEMS, 30)?;
                let mut fills = Vec::with_capacity(n);
                for _ in 0..n {
                    fills.push((get_id(r)?, r.u64()?, get_items(r)?));
                }
                let n = r.count("table", MAX_TABLE, 15)?;
                let mut table = Vec::with_capacity(n);
                for _ in 0..n {
                    table.push((
                        get_label(r, "group")?,
                        get_label(r, "client")?,
                        get_name(r)?,
                    ));
                }
                let n = r.count("fifo fills", MAX_ITEMS, 30)?;
                let mut fifo = Vec::with_capacity(n);
                for _ in 0..n {
                    fifo.push((get_id(r)?, get_name(r)?, r.u64()?, get_items(r)?));
                }
                GroupMsg::Start {
                    view,
                    fills,
                    table,
                    fifo,
                }
            }
            FIFO_DATA => {
                let (view, fseq, stable) = (get_id(r)?, r.u64()?, r.u64()?);
                GroupMsg::FifoData {
                    view,
                    fseq,
                    stable,
                    items: get_batch(r, Some(fseq))?,
                }
            }
            FIFO_ACK => GroupMsg::FifoAck {
                view: get_id(r)?,
                upto: r.u64()?,
            },
            FIFO_NACK => GroupMsg::FifoNack {
                view: get_id(r)?,
                from: r.u64()?,
            },
            FIFO_STABLE => GroupMsg::FifoStable {
                view: get_id(r)?,
                upto: r.u64()?,
            },
            k => return Err(DecodeError::UnknownKind(k)),
        };
        reader.finish()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn label() -> impl Strategy<Value = String> {
        "[a-z#0-9]{1,12}"
    }

    fn id() -> impl Strategy<Value = ViewId> {
        (any::<u64>(), "[a-z0-9]{1,8}", any::<u64>()).prop_map(
            |(epoch, coordinator, incarnation)| ViewId {
                epoch,
                coordinator,
                incarnation,
            },
        )
    }

    fn item() -> impl Strategy<Value = Item> {
        (
            "[a-z0-9]{1,8}",
            any::<u64>(),
            any::<u64>(),
            label(),
            0u8..4,
            label(),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(origin, incarnation, lseq, group, k, who, bytes)| Item {
                id: MsgId {
                    origin,
                    incarnation,
                    lseq,
                },
                group,
                what: match k {
                    0 => What::Data {
                        sender: who,
                        payload: Bytes::from(bytes),
                    },
                    1 => What::Join { client: who },
                    2 => What::Leave { client: who },
                    _ => What::Gone { client: who },
                },
            })
    }

    fn batch() -> impl Strategy<Value = Vec<Item>> {
        proptest::collection::vec(item(), 1..5)
    }

    fn msg() -> impl Strategy<Value = GroupMsg> {
        prop_oneof![
            (id(), any::<u64>(), batch()).prop_map(|(view, floor, items)| GroupMsg::Submit {
                view,
                floor,
                items
            }),
            (id(), 0..u64::MAX / 2, any::<u64>(), batch()).prop_map(
                |(view, seq, stable, items)| GroupMsg::Order {
                    view,
                    seq,
                    stable,
                    items,
                }
            ),
            (id(), any::<u64>()).prop_map(|(view, upto)| GroupMsg::Ack { view, upto }),
            (id(), any::<u64>()).prop_map(|(view, from)| GroupMsg::Nack { view, from }),
            id().prop_map(|view| GroupMsg::FlushReq { view }),
            (
                id(),
                id(),
                any::<u64>(),
                proptest::collection::vec((any::<u64>(), item()), 0..4),
                proptest::collection::vec((label(), label()), 0..4),
                "[a-z0-9]{1,8}",
                proptest::collection::vec(
                    (
                        "[a-z0-9]{1,8}",
                        any::<u64>(),
                        proptest::collection::vec((any::<u64>(), item()), 0..3)
                    ),
                    0..3
                ),
            )
                .prop_map(|(view, old, upto, held, locals, from, fifo)| {
                    GroupMsg::FlushState {
                        view,
                        old,
                        upto,
                        held,
                        locals,
                        from,
                        fifo,
                    }
                }),
            (
                id(),
                proptest::collection::vec(
                    (
                        id(),
                        any::<u64>(),
                        proptest::collection::vec((any::<u64>(), item()), 0..3)
                    ),
                    0..3
                ),
                proptest::collection::vec((label(), label(), "[a-z0-9]{1,8}"), 0..4),
                proptest::collection::vec(
                    (
                        id(),
                        "[a-z0-9]{1,8}",
                        any::<u64>(),
                        proptest::collection::vec((any::<u64>(), item()), 0..3)
                    ),
                    0..3
                ),
            )
                .prop_map(|(view, fills, table, fifo)| GroupMsg::Start {
                    view,
                    fills,
                    table,
                    fifo,
                }),
            (id(), 0..u64::MAX / 2, any::<u64>(), batch()).prop_map(
                |(view, fseq, stable, items)| GroupMsg::FifoData {
                    view,
                    fseq,
                    stable,
                    items,
                }
            ),
            (id(), any::<u64>()).prop_map(|(view, upto)| GroupMsg::FifoAck { view, upto }),
            (id(), any::<u64>()).prop_map(|(view, from)| GroupMsg::FifoNack { view, from }),
            (id(), any::<u64>()).prop_map(|(view, upto)| GroupMsg::FifoStable { view, upto }),
        ]
    }

    fn one_order(seq: u64, n: usize) -> GroupMsg {
        let view = ViewId {
            epoch: 1,
            coordinator: "a".into(),
            incarnation: 1,
        };
        let it = Item {
            id: MsgId {
                origin: "a".into(),
                incarnation: 1,
                lseq: 1,
            },
            group: "g".into(),
            what: What::Join { client: "c".into() },
        };
        GroupMsg::Order {
            view,
            seq,
            stable: 0,
            items: vec![it; n],
        }
    }

    #[test]
    fn a_batch_is_one_to_max_batch_items_whose_numbers_fit() {
        let full = one_order(1, MAX_BATCH);
        assert_eq!(GroupMsg::decode(&full.to_frame()).unwrap(), full);
        for bad in [
            one_order(1, 0),
            one_order(1, MAX_BATCH + 1),
            one_order(u64::MAX - 1, 2),
        ] {
            let e = GroupMsg::decode(&bad.to_frame()).unwrap_err();
            assert!(
                matches!(
                    e,
                    DecodeError::InvalidValue { field: "batch", .. }
                        | DecodeError::TooLong { field: "batch", .. }
                ),
                "{e:?}"
            );
        }
        // The last number may be u64::MAX - 1 (seq + n does not overflow).
        let edge = one_order(u64::MAX - 2, 2);
        assert_eq!(GroupMsg::decode(&edge.to_frame()).unwrap(), edge);
    }

    #[test]
    fn a_start_carries_a_table_far_past_a_mebibyte() {
        let view = ViewId {
            epoch: 9,
            coordinator: "a".into(),
            incarnation: 1,
        };
        let table: Vec<(String, String, String)> = (0..MAX_TABLE)
            .map(|k| {
                (
                    format!("group-{k}"),
                    format!("c{k}"),
                    "daemon-b".to_string(),
                )
            })
            .collect();
        let m = GroupMsg::Start {
            view,
            fills: Vec::new(),
            table,
            fifo: Vec::new(),
        };
        let f = m.to_frame();
        assert!(f.payload.len() > 1 << 20, "past the default frame limit");
        assert!(
            f.payload.len() < GROUPS_FRAME_LIMIT as usize,
            "{}",
            f.payload.len()
        );
        assert_eq!(GroupMsg::decode(&f).unwrap(), m);
    }

    proptest! {
        #[test]
        fn every_message_round_trips(m in msg()) {
            prop_assert_eq!(GroupMsg::decode(&m.to_frame()).unwrap(), m);
        }

        #[test]
        fn arbitrary_payloads_never_panic(k in 1u8..16, bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = GroupMsg::decode(&Frame::new(kind(k), Bytes::from(bytes)));
        }
    }
}
