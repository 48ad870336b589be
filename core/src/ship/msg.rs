//! Ship-to-ship messages (protocol family 0x02; SPEC.md §5.4).

use bytes::Bytes;

use super::tree::{Change, MAX_CONFIG_BYTES, MAX_TEXT};
use crate::wire::{DecodeError, Frame, Kind, Reader, Writer};

/// Protocol family byte of ship frames.
pub const FAMILY: u8 = 0x02;

const fn kind(n: u8) -> Kind {
    Kind((FAMILY as u16) << 8 | n as u16)
}

/// Most ship ids a Hello may list for cycle detection.
pub const MAX_SUBTREE: usize = 65_536;
/// Most keys a summary may list.
pub const MAX_KEYS: usize = 1_000_000;
/// Most changes one Deltas message may carry.
pub const MAX_DELTAS: usize = 65_536;
/// Most bytes of changes a parent puts in one Deltas message: with the frame limit
/// (1 MiB) far above, however large the changes.
pub const DELTAS_BYTES: usize = 256 << 10;
/// Bytes of a snapshot per chunk.
pub const CHUNK_BYTES: usize = 256 << 10;
/// Chunks a parent sends per pull: a window of 1 MiB in flight per child.
pub const WINDOW_CHUNKS: u64 = 4;

/// A request's hierarchy-wide identity: the ship it entered at, and that ship's counter.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket {
    /// Id of the ship the client spoke to.
    pub origin: u64,
    /// That ship's request counter.
    pub seq: u64,
}

/// A configuration operation that only the root may decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    /// `set PATH VALUE`.
    Set {
        /// Path.
        path: String,
        /// Value.
        value: String,
    },
    /// `claim PATTERN HOST`.
    Claim {
        /// Node pattern.
        pattern: String,
        /// Claimant host.
        host: String,
    },
}

/// The root's decision on a [`ConfigOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// Applied as `version`; `text` is the reply text (the claimed node for a claim).
    Applied {
        /// Version of the change.
        version: u64,
        /// Reply text.
        text: String,
    },
    /// Refused with a reply code and reason.
    Refused {
        /// Reply code (4xx).
        code: u16,
        /// Reason.
        text: String,
    },
}

/// Every ship-to-ship message.
#[derive(Clone, Debug, PartialEq)]
pub enum ShipMsg {
    /// Child → parent, every keepalive: who I am, what I have.
    Hello {
        /// Sender's ship id.
        ship: u64,
        /// Sender is configured as a root (refused by any parent).
        is_root: bool,
        /// Root epoch of the sender's copy (0: none yet).
        epoch: u64,
        /// Version of the sender's copy.
        version: u64,
        /// Ship ids in the sender's subtree, itself included (cycle detection).
        subtree: Vec<u64>,
        /// A snapshot being received: its epoch, version, and the bytes held so far.
        /// The parent goes on from there (a pull that resumes).
        receiving: Option<(u64, u64, u64)>,
    },
    /// Parent → child: the parent is alive; its copy's epoch and version.
    Beat {
        /// Root epoch (0: the parent has no copy yet).
        epoch: u64,
        /// Version.
        version: u64,
        /// The child's summary sequence the parent holds.
        summary_seq: u64,
    },
    /// Parent → child: a piece of the whole configuration at `(epoch, version)`, which
    /// encodes (§5.4) to `total` bytes; this piece starts at `offset`. A parent sends a
    /// window of pieces per pull; the child pulls on (with `Hello`) from what it holds.
    SnapshotChunk {
        /// Root epoch.
        epoch: u64,
        /// Version of this copy.
        version: u64,
        /// Size of the whole encoded tree.
        total: u64,
        /// Where this piece starts.
        offset: u64,
        /// The piece (at most [`CHUNK_BYTES`]).
        data: Bytes,
        /// The last piece of this window: the child pulls the next at once.
        last: bool,
    },
    /// Parent → child: changes `first..first + changes.len()`.
    Deltas {
        /// Root epoch.
        epoch: u64,
        /// Version of the first change.
        first: u64,
        /// The changes, in order.
        changes: Vec<Change>,
        /// The parent's version: a child still behind it after these pulls on at once.
        latest: u64,
    },
    /// Parent → child: you may not attach here.
    Refuse {
        /// Why, for a person.
        reason: String,
    },
    /// Child → parent: the accept keys pending in the child's subtree.
    Summary {
        /// Increases with every new summary from this child.
        seq: u64,
        /// Keys with at least one pending, unreserved accept.
        keys: Vec<String>,
    },
    /// Toward the root: a configuration change to decide.
    ConfigReq {
        /// Request identity (the root deduplicates by it).
        ticket: Ticket,
        /// What to do.
        op: ConfigOp,
        /// Remaining lifetime in milliseconds.
        ttl_ms: u64,
    },
    /// From the root back toward the origin.
    ConfigResp {
        /// Request identity.
        ticket: Ticket,
        /// Decision.
        outcome: ConfigOutcome,
    },
    /// A connect looking for an accept on `key`.
    Connect {
        /// Request identity.
        ticket: Ticket,
        /// Rendezvous key.
        key: String,
        /// Remaining lifetime in milliseconds.
        ttl_ms: u64,
        /// The connecting client's name, for the acceptor.
        client: String,
    },
    /// Holder → origin: an accept is reserved for this connect.
    Offer {
        /// The connect's identity.
        ticket: Ticket,
        /// Connection id, unique across the hierarchy.
        conn: String,
        /// The acceptor's advertised address.
        acceptor: String,
        /// Milliseconds left in which the connect may still take the offer.
        ttl_ms: u64,
    },
    /// Origin → holder: the connect took the offer; the acceptor may be told.
    Confirm {
        /// The connect's identity.
        ticket: Ticket,
        /// The offered connection id.
        conn: String,
    },
    /// Origin → holder: the connect is gone; release the accept.
    Decline {
        /// The connect's identity.
        ticket: Ticket,
        /// The offered connection id.
        conn: String,
    },
    /// Origin → along the route: the connect ended; forget it.
    Cancel {
        /// The connect's identity.
        ticket: Ticket,
    },
    /// Child → parent: the key's accept is not (or no longer) here.
    NotHere {
        /// The connect's identity.
        ticket: Ticket,
    },
}

const HELLO: Kind = kind(0x01);
const BEAT: Kind = kind(0x02);
const SNAPSHOT_CHUNK: Kind = kind(0x03);
const DELTAS: Kind = kind(0x04);
const REFUSE: Kind = kind(0x05);
const SUMMARY: Kind = kind(0x06);
const CONFIG_REQ: Kind = kind(0x07);
const CONFIG_RESP: Kind = kind(0x08);
const CONNECT: Kind = kind(0x09);
const OFFER: Kind = kind(0x0A);
const CONFIRM: Kind = kind(0x0B);
const DECLINE: Kind = kind(0x0C);
const CANCEL: Kind = kind(0x0D);
const NOT_HERE: Kind = kind(0x0E);

impl ConfigOutcome {
    /// Written as on the wire (`ConfigResp`) and in the state file's decisions: tag 1
    /// `Applied` version u64, text str; tag 2 `Refused` code u16, text str.
    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            ConfigOutcome::Applied { version, text } => w.u8(1).u64(*version).str(text),
            ConfigOutcome::Refused { code, text } => w.u8(2).u16(*code).str(text),
        };
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8()? {
            1 => ConfigOutcome::Applied {
                version: r.u64()?,
                text: r.str("text", MAX_TEXT)?,
            },
            2 => ConfigOutcome::Refused {
                code: r.u16()?,
                text: r.str("text", MAX_TEXT)?,
            },
            v => {
                return Err(DecodeError::InvalidValue {
                    field: "config outcome",
                    value: u64::from(v),
                });
            }
        })
    }
}

pub(crate) fn put_ticket(w: &mut Writer, t: Ticket) {
    w.u64(t.origin).u64(t.seq);
}

pub(crate) fn get_ticket(r: &mut Reader<'_>) -> Result<Ticket, DecodeError> {
    Ok(Ticket {
        origin: r.u64()?,
        seq: r.u64()?,
    })
}

impl ShipMsg {
    /// Encodes into a frame.
    pub fn to_frame(&self) -> Frame {
        let mut w = Writer::new();
        let k = match self {
            ShipMsg::Hello {
                ship,
                is_root,
                epoch,
                version,
                subtree,
                receiving,
            } => {
                w.u64(*ship).bool(*is_root).u64(*epoch).u64(*version);
                w.count(subtree.len());
                for s in subtree {
                    w.u64(*s);
                }
                match receiving {
                    Some((e, v, off)) => w.bool(true).u64(*e).u64(*v).u64(*off),
                    None => w.bool(false),
                };
                HELLO
            }
            ShipMsg::Beat {
                epoch,
                version,
                summary_seq,
            } => {
                w.u64(*epoch).u64(*version).u64(*summary_seq);
                BEAT
            }
            ShipMsg::SnapshotChunk {
                epoch,
                version,
                total,
                offset,
                data,
                last,
            } => {
                w.u64(*epoch).u64(*version).u64(*total).u64(*offset);
                w.bytes(data).bool(*last);
                SNAPSHOT_CHUNK
            }
            ShipMsg::Deltas {
                epoch,
                first,
                changes,
                latest,
            } => {
                w.u64(*epoch).u64(*first).count(changes.len());
                for c in changes {
                    c.encode(&mut w);
                }
                w.u64(*latest);
                DELTAS
            }
            ShipMsg::Refuse { reason } => {
                w.str(reason);
                REFUSE
            }
            ShipMsg::Summary { seq, keys } => {
                w.u64(*seq).count(keys.len());
                for k in keys {
                    w.str(k);
                }
                SUMMARY
            }
            ShipMsg::ConfigReq { ticket, op, ttl_ms } => {
                put_ticket(&mut w, *ticket);
                match op {
                    ConfigOp::Set { path, value } => w.u8(1).str(path).str(value),
                    ConfigOp::Claim { pattern, host } => w.u8(2).str(pattern).str(host),
                };
                w.u64(*ttl_ms);
                CONFIG_REQ
            }
            ShipMsg::ConfigResp { ticket, outcome } => {
                put_ticket(&mut w, *ticket);
                outcome.encode(&mut w);
                CONFIG_RESP
            }
            ShipMsg::Connect {
                ticket,
                key,
                ttl_ms,
                client,
            } => {
                put_ticket(&mut w, *ticket);
                w.str(key).u64(*ttl_ms).str(client);
                CONNECT
            }
            ShipMsg::Offer {
                ticket,
                conn,
                acceptor,
                ttl_ms,
            } => {
                put_ticket(&mut w, *ticket);
                w.str(conn).str(acceptor).u64(*ttl_ms);
                OFFER
            }
            ShipMsg::Confirm { ticket, conn } => {
                put_ticket(&mut w, *ticket);
                w.str(conn);
                CONFIRM
            }
            ShipMsg::Decline { ticket, conn } => {
                put_ticket(&mut w, *ticket);
                w.str(conn);
                DECLINE
            }
            ShipMsg::Cancel { ticket } => {
                put_ticket(&mut w, *ticket);
                CANCEL
            }
            ShipMsg::NotHere { ticket } => {
                put_ticket(&mut w, *ticket);
                NOT_HERE
            }
        };
        Frame::new(k, w.finish())
    }

    /// Decodes a frame of the ship family.
    pub fn decode(frame: &Frame) -> Result<Self, DecodeError> {
        Self::decode_payload(frame.kind, &frame.payload)
    }

    /// Decodes a payload of the given kind.
    pub fn decode_payload(k: Kind, payload: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let r = &mut r;
        let msg = match k {
            HELLO => {
                let ship = r.u64()?;
                let is_root = r.bool("is_root")?;
                let epoch = r.u64()?;
                let version = r.u64()?;
                let n = r.count("subtree", MAX_SUBTREE, 8)?;
                let mut subtree = Vec::with_capacity(n);
                for _ in 0..n {
                    subtree.push(r.u64()?);
                }
                let receiving = if r.bool("receiving")? {
                    Some((r.u64()?, r.u64()?, r.u64()?))
                } else {
                    None
                };
                ShipMsg::Hello {
                    ship,
                    is_root,
                    epoch,
                    version,
                    subtree,
                    receiving,
                }
            }
            BEAT => ShipMsg::Beat {
                epoch: r.u64()?,
                version: r.u64()?,
                summary_seq: r.u64()?,
            },
            SNAPSHOT_CHUNK => {
                let epoch = r.u64()?;
                let version = r.u64()?;
                let total = r.u64()?;
                let offset = r.u64()?;
                let data = r.bytes("snapshot piece", CHUNK_BYTES)?;
                let last = r.bool("last")?;
                let end = offset.checked_add(data.len() as u64);
                if total > MAX_CONFIG_BYTES as u64 {
                    return Err(DecodeError::InvalidValue {
                        field: "snapshot size",
                        value: total,
                    });
                }
                if end.is_none_or(|e| e > total) {
                    return Err(DecodeError::InvalidValue {
                        field: "snapshot piece offset",
                        value: offset,
                    });
                }
                ShipMsg::SnapshotChunk {
                    epoch,
                    version,
                    total,
                    offset,
                    data,
                    last,
                }
            }
            DELTAS => {
                let epoch = r.u64()?;
                let first = r.u64()?;
                let n = r.count("changes", MAX_DELTAS, 9)?;
                let mut changes = Vec::with_capacity(n);
                for _ in 0..n {
                    changes.push(Change::decode(r)?);
                }
                ShipMsg::Deltas {
                    epoch,
                    first,
                    changes,
                    latest: r.u64()?,
                }
            }
            REFUSE => ShipMsg::Refuse {
                reason: r.str("reason", MAX_TEXT)?,
            },
            SUMMARY => {
                let seq = r.u64()?;
                let n = r.count("keys", MAX_KEYS, 4)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(r.str("key", MAX_TEXT)?);
                }
                ShipMsg::Summary { seq, keys }
            }
            CONFIG_REQ => {
                let ticket = get_ticket(r)?;
                let op = match r.u8()? {
                    1 => ConfigOp::Set {
                        path: r.str("path", MAX_TEXT)?,
                        value: r.str("value", MAX_TEXT)?,
                    },
                    2 => ConfigOp::Claim {
                        pattern: r.str("pattern", MAX_TEXT)?,
                        host: r.str("host", MAX_TEXT)?,
                    },
                    v => {
                        return Err(DecodeError::InvalidValue {
                            field: "config op",
                            value: u64::from(v),
                        });
                    }
                };
                ShipMsg::ConfigReq {
                    ticket,
                    op,
                    ttl_ms: r.u64()?,
                }
            }
            CONFIG_RESP => {
                let ticket = get_ticket(r)?;
                let outcome = ConfigOutcome::decode(r)?;
                ShipMsg::ConfigResp { ticket, outcome }
            }
            CONNECT => ShipMsg::Connect {
                ticket: get_ticket(r)?,
                key: r.str("key", MAX_TEXT)?,
                ttl_ms: r.u64()?,
                client: r.str("client", MAX_TEXT)?,
            },
            OFFER => ShipMsg::Offer {
                ticket: get_ticket(r)?,
                conn: r.str("conn", MAX_TEXT)?,
                acceptor: r.str("acceptor", MAX_TEXT)?,
                ttl_ms: r.u64()?,
            },
            CONFIRM => ShipMsg::Confirm {
                ticket: get_ticket(r)?,
                conn: r.str("conn", MAX_TEXT)?,
            },
            DECLINE => ShipMsg::Decline {
                ticket: get_ticket(r)?,
                conn: r.str("conn", MAX_TEXT)?,
            },
            CANCEL => ShipMsg::Cancel {
                ticket: get_ticket(r)?,
            },
            NOT_HERE => ShipMsg::NotHere {
                ticket: get_ticket(r)?,
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        r_finish(r)?;
        Ok(msg)
    }
}

fn r_finish(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    match r.remaining() {
        0 => Ok(()),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_ticket() -> impl Strategy<Value = Ticket> {
        (any::<u64>(), any::<u64>()).prop_map(|(origin, seq)| Ticket { origin, seq })
    }

    fn arb_msg() -> impl Strategy<Value = ShipMsg> {
        let s = || "[a-z0-9/*]{0,12}";
        prop_oneof![
            (
                any::<u64>(),
                any::<bool>(),
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(any::<u64>(), 0..5),
                proptest::option::of((any::<u64>(), any::<u64>(), any::<u64>()))
            )
                .prop_map(|(ship, is_root, epoch, version, subtree, receiving)| {
                    ShipMsg::Hello {
                        ship,
                        is_root,
                        epoch,
                        version,
                        subtree,
                        receiving,
                    }
                }),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(epoch, version, summary_seq)| {
                ShipMsg::Beat {
                    epoch,
                    version,
                    summary_seq,
                }
            }),
            (
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..64),
                0u64..1000,
                any::<bool>()
            )
                .prop_map(|(epoch, data, extra, last)| {
                    ShipMsg::SnapshotChunk {
                        epoch,
                        version: 3,
                        total: 10 + data.len() as u64 + extra,
                        offset: 10,
                        data: Bytes::from(data),
                        last,
                    }
                }),
            (
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec((s(), s()), 0..4),
                any::<u64>()
            )
                .prop_map(|(epoch, first, cs, latest)| ShipMsg::Deltas {
                    epoch,
                    first,
                    changes: cs
                        .into_iter()
                        .map(|(node, host)| Change::Claim { node, host })
                        .collect(),
                    latest,
                }),
            s().prop_map(|reason| ShipMsg::Refuse { reason }),
            (any::<u64>(), proptest::collection::vec(s(), 0..5))
                .prop_map(|(seq, keys)| ShipMsg::Summary { seq, keys }),
            (arb_ticket(), s(), s(), any::<bool>(), any::<u64>()).prop_map(
                |(ticket, a, b, set, ttl_ms)| ShipMsg::ConfigReq {
                    ticket,
                    op: if set {
                        ConfigOp::Set { path: a, value: b }
                    } else {
                        ConfigOp::Claim {
                            pattern: a,
                            host: b,
                        }
                    },
                    ttl_ms,
                }
            ),
            (arb_ticket(), any::<u64>(), s(), any::<bool>()).prop_map(
                |(ticket, version, text, ok)| ShipMsg::ConfigResp {
                    ticket,
                    outcome: if ok {
                        ConfigOutcome::Applied { version, text }
                    } else {
                        ConfigOutcome::Refused { code: 409, text }
                    },
                }
            ),
            (arb_ticket(), s(), any::<u64>(), s()).prop_map(|(ticket, key, ttl_ms, client)| {
                ShipMsg::Connect {
                    ticket,
                    key,
                    ttl_ms,
                    client,
                }
            }),
            (arb_ticket(), s(), s(), any::<u64>()).prop_map(|(ticket, conn, acceptor, ttl_ms)| {
                ShipMsg::Offer {
                    ticket,
                    conn,
                    acceptor,
                    ttl_ms,
                }
            }),
            (arb_ticket(), s()).prop_map(|(ticket, conn)| ShipMsg::Confirm { ticket, conn }),
            (arb_ticket(), s()).prop_map(|(ticket, conn)| ShipMsg::Decline { ticket, conn }),
            arb_ticket().prop_map(|ticket| ShipMsg::Cancel { ticket }),
            arb_ticket().prop_map(|ticket| ShipMsg::NotHere { ticket }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(m in arb_msg()) {
            let f = m.to_frame();
            prop_assert_eq!(f.kind.family(), FAMILY);
            prop_assert_eq!(ShipMsg::decode(&f).unwrap(), m);
        }

        #[test]
        fn arbitrary_payloads_never_panic(k in 0u8..20, data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = ShipMsg::decode_payload(kind(k), &Bytes::from(data));
        }

        #[test]
        fn truncation_is_an_error(m in arb_msg(), cut in 1usize..8) {
            let f = m.to_frame();
            if f.payload.len() >= cut {
                let short = f.payload.slice(..f.payload.len() - cut);
                prop_assert!(ShipMsg::decode_payload(f.kind, &short).is_err());
            }
        }
    }
}
