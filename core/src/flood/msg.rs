//! Site-to-site messages of the flood daemon (protocol family 0x03; SPEC.md §8.5).
//!
//! Sites name each other by site name; a frame's sender is the data address the driver
//! identified it by (the transport hello, SPEC.md §2.3). Updates are named by their
//! stream — the origin site and the incarnation it started with — and a sequence number
//! within it.

use core::net::SocketAddr;

use bytes::Bytes;

use super::MAX_UPDATE_BYTES;
use crate::wire::{DecodeError, Frame, Kind, Reader, Writer};

/// Protocol family byte of flood frames.
pub const FAMILY: u8 = 0x03;

const fn kind(n: u8) -> Kind {
    Kind((FAMILY as u16) << 8 | n as u16)
}

const JOIN: Kind = kind(0x01);
const TOPOLOGY: Kind = kind(0x02);
const PING: Kind = kind(0x03);
const PONG: Kind = kind(0x04);
const BW_PROBE: Kind = kind(0x05);
const BW_ACK: Kind = kind(0x06);
const ESTIMATES: Kind = kind(0x07);
const UPDATE: Kind = kind(0x08);
const DIGEST: Kind = kind(0x09);
const PULL: Kind = kind(0x0a);
const EVICTED: Kind = kind(0x0b);
const STARTS: Kind = kind(0x0c);

/// Longest site or group name (SPEC.md §8.2).
pub const MAX_NAME: usize = 64;
/// Most sites a group may hold (and a topology list).
pub const MAX_GROUP_SITES: usize = 4096;
/// Most links a topology may list.
pub const MAX_LINKS: usize = 65_536;
/// Most entries in one digest or estimates message.
pub const MAX_ENTRIES: usize = 4096;
/// Most ranges one pull or eviction notice names.
pub const MAX_RANGES: usize = 256;
/// Largest bandwidth probe.
pub const MAX_PROBE_BYTES: usize = 256 << 10;

/// Who a site is, as sites tell each other: its name, the address its daemons listen on
/// for data, the port its clients use on the same host, and where it is on Earth.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteInfo {
    /// Site name.
    pub name: String,
    /// Data address (`inet-address` or the resolved `hostname`, with `data-port`).
    pub data: SocketAddr,
    /// Client port on the same host.
    pub client_port: u16,
    /// Latitude and longitude in degrees, if configured.
    pub position: Option<(f64, f64)>,
}

impl SiteInfo {
    /// The address clients reach this site at.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::new(self.data.ip(), self.client_port)
    }
}

/// One stream's marks in a digest: the sender holds `low..` and has delivered everything
/// up to `through`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestEntry {
    /// Origin site.
    pub origin: String,
    /// The origin's incarnation.
    pub incarnation: u64,
    /// The oldest sequence number the sender still holds (`through + 1` if none).
    pub low: u64,
    /// Every sequence number up to this one has reached the sender (or was before its
    /// time, or reported lost).
    pub through: u64,
}

/// Where a site that just joined should take one stream from: the first sequence number
/// the answering neighbour had not heard of when the asker joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartEntry {
    /// Origin site.
    pub origin: String,
    /// The origin's incarnation.
    pub incarnation: u64,
    /// The first sequence number flooded after the asker joined, or earlier (≥ 1).
    pub start: u64,
}

/// One link's measurement in an estimates message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EstimateEntry {
    /// The site measured.
    pub site: String,
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u64,
    /// Bandwidth, bytes per second (0: not measured).
    pub bandwidth: u64,
}

/// Every flood message.
#[derive(Clone, Debug, PartialEq)]
pub enum FloodMsg {
    /// Non-master → master, every `join-period`: "I am in this group".
    Join {
        /// Group.
        group: String,
        /// The joining site.
        site: SiteInfo,
        /// Whether a site other than the master passed it on (passed on at most once).
        relayed: bool,
    },
    /// Master → members: the group's members and links.
    Topology {
        /// Group.
        group: String,
        /// The master's incarnation: a restarted master starts its versions again.
        master_incarnation: u64,
        /// Version within the incarnation.
        version: u64,
        /// Every member.
        members: Vec<SiteInfo>,
        /// Links between members (indexes into `members`, a < b) and their costs in
        /// microseconds, from which every site computes the same spanning trees.
        links: Vec<(u32, u32, u64)>,
    },
    /// A round-trip probe.
    Ping {
        /// Echoed.
        nonce: u64,
    },
    /// Its answer.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// A bandwidth probe: `padding` is sent only to be timed.
    BwProbe {
        /// Echoed.
        nonce: u64,
        /// Filler.
        padding: Bytes,
    },
    /// Its answer.
    BwAck {
        /// The probe's nonce.
        nonce: u64,
    },
    /// Site → master, every `estimates-period`: what it measured.
    Estimates {
        /// Group.
        group: String,
        /// Measurements.
        entries: Vec<EstimateEntry>,
    },
    /// An update, pushed along the spanning tree or sent in answer to a pull.
    Update {
        /// Group.
        group: String,
        /// Origin site.
        origin: String,
        /// The origin's incarnation.
        incarnation: u64,
        /// Sequence number in the stream, from 1.
        seq: u64,
        /// The data.
        data: Bytes,
        /// Sent in answer to a pull (not forwarded along the tree blindly).
        pulled: bool,
    },
    /// Neighbour → neighbour, every `digest-period` when something changed (and as a
    /// keepalive): the marks of the streams the sender knows.
    Digest {
        /// Group.
        group: String,
        /// Every stream the sender knows is listed (not only what changed).
        full: bool,
        /// The sender has just joined: answer with where each stream stood when it
        /// joined ([`FloodMsg::Starts`]) and a full digest.
        want_full: bool,
        /// With `want_full`: how long ago, in microseconds, the sender adopted its first
        /// topology (0 otherwise).
        joined_us: u64,
        /// Marks.
        entries: Vec<DigestEntry>,
    },
    /// Neighbour → a site that just joined, in answer to `want_full`: per stream the
    /// answering site knew of then, where the asker should take it from.
    Starts {
        /// Group.
        group: String,
        /// Streams.
        entries: Vec<StartEntry>,
    },
    /// Please send these sequence numbers of a stream.
    Pull {
        /// Group.
        group: String,
        /// Origin site.
        origin: String,
        /// Incarnation.
        incarnation: u64,
        /// Inclusive ranges.
        ranges: Vec<(u64, u64)>,
    },
    /// The answer for what was asked and is not held here.
    Evicted {
        /// Group.
        group: String,
        /// Origin site.
        origin: String,
        /// Incarnation.
        incarnation: u64,
        /// Inclusive ranges not held.
        ranges: Vec<(u64, u64)>,
    },
}

fn put_site(w: &mut Writer, s: &SiteInfo) {
    w.str(&s.name).addr(s.data).u16(s.client_port);
    match s.position {
        Some((lat, long)) => w.bool(true).u64(lat.to_bits()).u64(long.to_bits()),
        None => w.bool(false),
    };
}

fn get_name(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    let s = r.str(field, MAX_NAME)?;
    if s.is_empty() {
        return Err(DecodeError::InvalidValue { field, value: 0 });
    }
    Ok(s)
}

fn get_site(r: &mut Reader<'_>) -> Result<SiteInfo, DecodeError> {
    let name = get_name(r, "site name")?;
    let data = r.addr()?;
    let client_port = r.u16()?;
    let position = if r.bool("position")? {
        let lat = f64::from_bits(r.u64()?);
        let long = f64::from_bits(r.u64()?);
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&long) {
            return Err(DecodeError::InvalidValue {
                field: "position",
                value: lat.to_bits(),
            });
        }
        Some((lat, long))
    } else {
        None
    };
    Ok(SiteInfo {
        name,
        data,
        client_port,
        position,
    })
}

fn put_ranges(w: &mut Writer, ranges: &[(u64, u64)]) {
    w.count(ranges.len());
    for (a, b) in ranges {
        w.u64(*a).u64(*b);
    }
}

fn get_ranges(r: &mut Reader<'_>) -> Result<Vec<(u64, u64)>, DecodeError> {
    let n = r.count("ranges", MAX_RANGES, 16)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (a, b) = (r.u64()?, r.u64()?);
        if a == 0 || a > b {
            return Err(DecodeError::InvalidValue {
                field: "range",
                value: a,
            });
        }
        out.push((a, b));
    }
    Ok(out)
}

impl FloodMsg {
    /// Encodes into a frame.
    pub fn to_frame(&self) -> Frame {
        let mut w = Writer::new();
        let k = match self {
            FloodMsg::Join {
                group,
                site,
                relayed,
            } => {
                w.str(group);
                put_site(&mut w, site);
                w.bool(*relayed);
                JOIN
            }
            FloodMsg::Topology {
                group,
                master_incarnation,
                version,
                members,
                links,
            } => {
                w.str(group).u64(*master_incarnation).u64(*version);
                w.count(members.len());
                for m in members {
                    put_site(&mut w, m);
                }
                w.count(links.len());
                for (a, b, c) in links {
                    w.u32(*a).u32(*b).u64(*c);
                }
                TOPOLOGY
            }
            FloodMsg::Ping { nonce } => {
                w.u64(*nonce);
                PING
            }
            FloodMsg::Pong { nonce } => {
                w.u64(*nonce);
                PONG
            }
            FloodMsg::BwProbe { nonce, padding } => {
                w.u64(*nonce).bytes(padding);
                BW_PROBE
            }
            FloodMsg::BwAck { nonce } => {
                w.u64(*nonce);
                BW_ACK
            }
            FloodMsg::Estimates { group, entries } => {
                w.str(group).count(entries.len());
                for e in entries {
                    w.str(&e.site).u64(e.rtt_us).u64(e.bandwidth);
                }
                ESTIMATES
            }
            FloodMsg::Update {
                group,
                origin,
                incarnation,
                seq,
                data,
                pulled,
            } => {
                w.str(group)
                    .str(origin)
                    .u64(*incarnation)
                    .u64(*seq)
                    .bool(*pulled)
                    .bytes(data);
                UPDATE
            }
            FloodMsg::Digest {
                group,
                full,
                want_full,
                joined_us,
                entries,
            } => {
                w.str(group)
                    .bool(*full)
                    .bool(*want_full)
                    .u64(*joined_us)
                    .count(entries.len());
                for e in entries {
                    w.str(&e.origin)
                        .u64(e.incarnation)
                        .u64(e.low)
                        .u64(e.through);
                }
                DIGEST
            }
            FloodMsg::Starts { group, entries } => {
                w.str(group).count(entries.len());
                for e in entries {
                    w.str(&e.origin).u64(e.incarnation).u64(e.start);
                }
                STARTS
            }
            FloodMsg::Pull {
                group,
                origin,
                incarnation,
                ranges,
            } => {
                w.str(group).str(origin).u64(*incarnation);
                put_ranges(&mut w, ranges);
                PULL
            }
            FloodMsg::Evicted {
                group,
                origin,
                incarnation,
                ranges,
            } => {
                w.str(group).str(origin).u64(*incarnation);
                put_ranges(&mut w, ranges);
                EVICTED
            }
        };
        Frame::new(k, w.finish())
    }

    /// Decodes a frame of this family.
    pub fn decode(frame: &Frame) -> Result<Self, DecodeError> {
        let mut r = Reader::new(&frame.payload);
        let r = &mut r;
        let msg = match frame.kind {
            JOIN => FloodMsg::Join {
                group: get_name(r, "group")?,
                site: get_site(r)?,
                relayed: r.bool("relayed")?,
            },
            TOPOLOGY => {
                let group = get_name(r, "group")?;
                let master_incarnation = r.u64()?;
                let version = r.u64()?;
                let n = r.count("members", MAX_GROUP_SITES, 12)?;
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push(get_site(r)?);
                }
                let l = r.count("links", MAX_LINKS, 16)?;
                let mut links = Vec::with_capacity(l);
                for _ in 0..l {
                    let (a, b, c) = (r.u32()?, r.u32()?, r.u64()?);
                    if a >= b || b as usize >= n {
                        return Err(DecodeError::InvalidValue {
                            field: "link",
                            value: u64::from(b),
                        });
                    }
                    links.push((a, b, c));
                }
                FloodMsg::Topology {
                    group,
                    master_incarnation,
                    version,
                    members,
                    links,
                }
            }
            PING => FloodMsg::Ping { nonce: r.u64()? },
            PONG => FloodMsg::Pong { nonce: r.u64()? },
            BW_PROBE => FloodMsg::BwProbe {
                nonce: r.u64()?,
                padding: r.bytes("padding", MAX_PROBE_BYTES)?,
            },
            BW_ACK => FloodMsg::BwAck { nonce: r.u64()? },
            ESTIMATES => {
                let group = get_name(r, "group")?;
                let n = r.count("estimates", MAX_ENTRIES, 21)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(EstimateEntry {
                        site: get_name(r, "site name")?,
                        rtt_us: r.u64()?,
                        bandwidth: r.u64()?,
                    });
                }
                FloodMsg::Estimates { group, entries }
            }
            UPDATE => {
                let group = get_name(r, "group")?;
                let origin = get_name(r, "origin")?;
                let incarnation = r.u64()?;
                let seq = r.u64()?;
                if seq == 0 {
                    return Err(DecodeError::InvalidValue {
                        field: "seq",
                        value: 0,
                    });
                }
                let pulled = r.bool("pulled")?;
                let data = r.bytes("data", MAX_UPDATE_BYTES)?;
                FloodMsg::Update {
                    group,
                    origin,
                    incarnation,
                    seq,
                    data,
                    pulled,
                }
            }
            DIGEST => {
                let group = get_name(r, "group")?;
                let full = r.bool("full")?;
                let want_full = r.bool("want_full")?;
                let joined_us = r.u64()?;
                let n = r.count("digest", MAX_ENTRIES, 29)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let e = DigestEntry {
                        origin: get_name(r, "origin")?,
                        incarnation: r.u64()?,
                        low: r.u64()?,
                        through: r.u64()?,
                    };
                    if e.low == 0 || e.low > e.through.saturating_add(1) {
                        return Err(DecodeError::InvalidValue {
                            field: "digest low",
                            value: e.low,
                        });
                    }
                    entries.push(e);
                }
                FloodMsg::Digest {
                    group,
                    full,
                    want_full,
                    joined_us,
                    entries,
                }
            }
            STARTS => {
                let group = get_name(r, "group")?;
                let n = r.count("starts", MAX_ENTRIES, 21)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let e = StartEntry {
                        origin: get_name(r, "origin")?,
                        incarnation: r.u64()?,
                        start: r.u64()?,
                    };
                    if e.start == 0 {
                        return Err(DecodeError::InvalidValue {
                            field: "start",
                            value: 0,
                        });
                    }
                    entries.push(e);
                }
                FloodMsg::Starts { group, entries }
            }
            PULL => FloodMsg::Pull {
                group: get_name(r, "group")?,
                origin: get_name(r, "origin")?,
                incarnation: r.u64()?,
                ranges: get_ranges(r)?,
            },
            EVICTED => FloodMsg::Evicted {
                group: get_name(r, "group")?,
                origin: get_name(r, "origin")?,
                incarnation: r.u64()?,
                ranges: get_ranges(r)?,
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        match r.remaining() {
            0 => Ok(msg),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9_.-]{1,12}"
    }

    fn site() -> impl Strategy<Value = SiteInfo> {
        (
            name(),
            any::<[u8; 4]>(),
            1u16..,
            any::<u16>(),
            proptest::option::of((-90i32..=90, -180i32..=180)),
        )
            .prop_map(|(name, ip, port, client_port, pos)| SiteInfo {
                name,
                data: SocketAddr::from((ip, port)),
                client_port,
                position: pos.map(|(a, b)| (f64::from(a) / 2.0, f64::from(b) / 2.0)),
            })
    }

    fn ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
        proptest::collection::vec((1u64..1000, 0u64..1000), 0..5)
            .prop_map(|v| v.into_iter().map(|(a, d)| (a, a + d)).collect())
    }

    fn msg() -> impl Strategy<Value = FloodMsg> {
        prop_oneof![
            (name(), site(), any::<bool>()).prop_map(|(group, site, relayed)| FloodMsg::Join {
                group,
                site,
                relayed
            }),
            (
                name(),
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(site(), 2..6),
                any::<u64>()
            )
                .prop_map(|(group, mi, v, members, c)| FloodMsg::Topology {
                    group,
                    master_incarnation: mi,
                    version: v,
                    links: (1..members.len() as u32).map(|b| (0, b, c)).collect(),
                    members,
                }),
            any::<u64>().prop_map(|nonce| FloodMsg::Ping { nonce }),
            any::<u64>().prop_map(|nonce| FloodMsg::Pong { nonce }),
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(nonce, p)| {
                FloodMsg::BwProbe {
                    nonce,
                    padding: Bytes::from(p),
                }
            }),
            any::<u64>().prop_map(|nonce| FloodMsg::BwAck { nonce }),
            (
                name(),
                proptest::collection::vec((name(), any::<u64>(), any::<u64>()), 0..4)
            )
                .prop_map(|(group, e)| FloodMsg::Estimates {
                    group,
                    entries: e
                        .into_iter()
                        .map(|(site, rtt_us, bandwidth)| EstimateEntry {
                            site,
                            rtt_us,
                            bandwidth
                        })
                        .collect(),
                }),
            (
                name(),
                name(),
                any::<u64>(),
                1u64..,
                proptest::collection::vec(any::<u8>(), 0..64),
                any::<bool>()
            )
                .prop_map(|(group, origin, incarnation, seq, d, pulled)| {
                    FloodMsg::Update {
                        group,
                        origin,
                        incarnation,
                        seq,
                        data: Bytes::from(d),
                        pulled,
                    }
                }),
            (
                name(),
                any::<bool>(),
                any::<bool>(),
                any::<u64>(),
                proptest::collection::vec((name(), any::<u64>(), 0u64..100, 1u64..100), 0..4)
            )
                .prop_map(|(group, full, want_full, joined_us, e)| FloodMsg::Digest {
                    group,
                    full,
                    want_full,
                    joined_us,
                    entries: e
                        .into_iter()
                        .map(|(origin, incarnation, t, l)| DigestEntry {
                            origin,
                            incarnation,
                            low: l.min(t + 1),
                            through: t,
                        })
                        .collect(),
                }),
            (
                name(),
                proptest::collection::vec((name(), any::<u64>(), 1u64..), 0..4)
            )
                .prop_map(|(group, e)| FloodMsg::Starts {
                    group,
                    entries: e
                        .into_iter()
                        .map(|(origin, incarnation, start)| StartEntry {
                            origin,
                            incarnation,
                            start
                        })
                        .collect(),
                }),
            (name(), name(), any::<u64>(), ranges()).prop_map(
                |(group, origin, incarnation, ranges)| {
                    FloodMsg::Pull {
                        group,
                        origin,
                        incarnation,
                        ranges,
                    }
                }
            ),
            (name(), name(), any::<u64>(), ranges()).prop_map(
                |(group, origin, incarnation, ranges)| {
                    FloodMsg::Evicted {
                        group,
                        origin,
                        incarnation,
                        ranges,
                    }
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(m in msg()) {
            prop_assert_eq!(FloodMsg::decode(&m.to_frame()), Ok(m));
        }

        #[test]
        fn arbitrary_payloads_never_panic(k in 0u8..16, p in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = FloodMsg::decode(&Frame::new(kind(k), Bytes::from(p)));
        }
    }

    #[test]
    fn bad_values_are_refused() {
        let update = FloodMsg::Update {
            group: "g".into(),
            origin: "o".into(),
            incarnation: 1,
            seq: 1,
            data: Bytes::new(),
            pulled: false,
        };
        let mut f = update.to_frame();
        // seq 0 is never used: streams count from 1.
        let mut p = f.payload.to_vec();
        let seq_at = 4 + 1 + 4 + 1 + 8;
        p[seq_at..seq_at + 8].copy_from_slice(&0u64.to_be_bytes());
        f.payload = Bytes::from(p);
        assert!(FloodMsg::decode(&f).is_err());
        let pull = FloodMsg::Pull {
            group: "g".into(),
            origin: "o".into(),
            incarnation: 1,
            ranges: vec![(5, 4)],
        };
        assert!(FloodMsg::decode(&pull.to_frame()).is_err());
        let topo = FloodMsg::Topology {
            group: "g".into(),
            master_incarnation: 1,
            version: 1,
            members: vec![],
            links: vec![(0, 1, 5)],
        };
        assert!(FloodMsg::decode(&topo.to_frame()).is_err());
        // Streams count from 1: a start of 0 names nothing.
        let starts = FloodMsg::Starts {
            group: "g".into(),
            entries: vec![StartEntry {
                origin: "o".into(),
                incarnation: 1,
                start: 0,
            }],
        };
        assert!(FloodMsg::decode(&starts.to_frame()).is_err());
    }
}
