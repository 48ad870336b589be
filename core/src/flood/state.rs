//! A flood daemon's state file (`flotilla floodd --state FILE`, SPEC.md §8.8): what a
//! site must not lose when it stops or crashes — the marks of every stream it knows,
//! the updates waiting for the export command (and which of them were in a run), and
//! the lost ranges waiting to be told to it.
//!
//! ```text
//! file    = "FLFLOOD\x01"  crc32c u32 (of body)  body
//! body    = site str  count u32  group*
//! group   = name str  count u32 stream*  count u32 update*  count u32 lost*
//! stream  = origin str  incarnation u64  base u64  through u64  count u32 (from u64 to u64)*
//! update  = origin str  incarnation u64  seq u64  in-run bool  data bytes
//! lost    = origin str  incarnation u64  from u64  to u64  reason u8
//! ```
//!
//! The daemon writes it whole (a temporary file, synced, renamed over the old one), so a
//! crash leaves one version or the other. Reading checks everything a machine relies on
//! — the checksum, every bound, that marks are ordered, that every waiting update is one
//! its stream's marks say arrived — and refuses anything else with a [`StateError`].

use std::collections::BTreeSet;

use bytes::Bytes;
use thiserror::Error;

use super::MAX_UPDATE_BYTES;
use super::bundle::LostReason;
use super::msg::MAX_NAME;
use crate::wire::{DecodeError, Reader, Writer, crc32c};

/// The first bytes of every state file.
pub const MAGIC: &[u8; 8] = b"FLFLOOD\x01";
/// Groups a state file holds at most (as a configuration file).
pub const MAX_STATE_GROUPS: usize = 256;
/// Streams per group at most.
pub const MAX_STATE_STREAMS: usize = 65_536;
/// Out-of-order ranges per stream at most.
pub const MAX_STATE_RANGES: usize = 65_536;
/// Waiting updates per group at most.
pub const MAX_STATE_UPDATES: usize = 1 << 20;
/// Lost ranges per group at most.
pub const MAX_STATE_LOST: usize = 100_000;

/// Why a state file cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StateError {
    /// It does not begin as a flood state file does.
    #[error("not a flood state file (it does not begin with FLFLOOD and version 1)")]
    BadMagic,
    /// Its checksum does not match its contents.
    #[error("damaged: its checksum does not match")]
    Checksum,
    /// A field does not decode (or lies past a bound).
    #[error("damaged: {0}")]
    Decode(#[from] DecodeError),
    /// It decodes, but says something impossible.
    #[error("inconsistent: {0}")]
    Invalid(String),
}

/// One stream's marks: everything in `base..=through` arrived (or was reported lost),
/// and the `above` ranges beyond it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamState {
    /// Origin site.
    pub origin: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// The first sequence number the site is responsible for (≥ 1).
    pub base: u64,
    /// Everything from `base` up to here arrived (`base - 1`: nothing yet).
    pub through: u64,
    /// Arrived beyond `through + 1`: ordered, disjoint, not touching, inclusive ranges.
    pub above: Vec<(u64, u64)>,
}

impl StreamState {
    /// Whether the marks say `seq` arrived.
    pub fn has(&self, seq: u64) -> bool {
        (self.base..=self.through).contains(&seq)
            || self.above.iter().any(|&(a, b)| a <= seq && seq <= b)
    }
}

/// An update waiting for the export command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingUpdate {
    /// Origin site.
    pub origin: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// Sequence number.
    pub seq: u64,
    /// It was in an export run when the state was written: that run may complete.
    pub in_run: bool,
    /// The update.
    pub data: Bytes,
}

/// A lost range waiting to be told to the export command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostRange {
    /// Origin site.
    pub origin: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// First lost.
    pub from: u64,
    /// Last lost.
    pub to: u64,
    /// Why.
    pub reason: LostReason,
}

/// What a site keeps of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupState {
    /// Group name.
    pub name: String,
    /// Every stream of other sites it knows.
    pub streams: Vec<StreamState>,
    /// Updates waiting for the export command, in arrival order.
    pub waiting: Vec<WaitingUpdate>,
    /// Lost ranges waiting for it.
    pub lost: Vec<LostRange>,
}

/// A site's state file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FloodState {
    /// The site it belongs to.
    pub site: String,
    /// Its groups.
    pub groups: Vec<GroupState>,
}

fn name(r: &mut Reader<'_>, field: &'static str) -> Result<String, StateError> {
    let s = r.str(field, MAX_NAME)?;
    if s.is_empty() {
        return Err(StateError::Invalid(format!("an empty {field}")));
    }
    Ok(s)
}

fn invalid(what: impl Into<String>) -> StateError {
    StateError::Invalid(what.into())
}

impl FloodState {
    /// The file's bytes.
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new();
        w.str(&self.site).count(self.groups.len());
        for g in &self.groups {
            w.str(&g.name).count(g.streams.len());
            for s in &g.streams {
                w.str(&s.origin)
                    .u64(s.incarnation)
                    .u64(s.base)
                    .u64(s.through)
                    .count(s.above.len());
                for (a, b) in &s.above {
                    w.u64(*a).u64(*b);
                }
            }
            w.count(g.waiting.len());
            for u in &g.waiting {
                w.str(&u.origin)
                    .u64(u.incarnation)
                    .u64(u.seq)
                    .bool(u.in_run)
                    .bytes(&u.data);
            }
            w.count(g.lost.len());
            for l in &g.lost {
                let reason = LostReason::ALL
                    .iter()
                    .position(|r| *r == l.reason)
                    .unwrap_or(0) as u8;
                w.str(&l.origin)
                    .u64(l.incarnation)
                    .u64(l.from)
                    .u64(l.to)
                    .u8(reason);
            }
        }
        let body = w.finish();
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        Bytes::from(out)
    }

    /// Reads a state file, refusing anything damaged or inconsistent.
    pub fn decode(bytes: &Bytes) -> Result<Self, StateError> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(StateError::BadMagic);
        }
        let crc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let body = bytes.slice(12..);
        if crc32c(&body) != crc {
            return Err(StateError::Checksum);
        }
        let mut r = Reader::new(&body);
        let r = &mut r;
        let site = name(r, "site")?;
        let n = r.count("groups", MAX_STATE_GROUPS, 13)?;
        let mut groups: Vec<GroupState> = Vec::with_capacity(n);
        for _ in 0..n {
            let g = read_group(r)?;
            if groups.iter().any(|o| o.name == g.name) {
                return Err(invalid(format!("group {} twice", g.name)));
            }
            groups.push(g);
        }
        match r.remaining() {
            0 => Ok(FloodState { site, groups }),
            n => Err(StateError::Decode(DecodeError::TrailingBytes(n))),
        }
    }
}

fn read_group(r: &mut Reader<'_>) -> Result<GroupState, StateError> {
    let gname = name(r, "group")?;
    let n = r.count("streams", MAX_STATE_STREAMS, 33)?;
    let mut streams: Vec<StreamState> = Vec::with_capacity(n);
    let mut keys = BTreeSet::new();
    for _ in 0..n {
        let s = StreamState {
            origin: name(r, "origin")?,
            incarnation: r.u64()?,
            base: r.u64()?,
            through: r.u64()?,
            above: Vec::new(),
        };
        let m = r.count("out-of-order ranges", MAX_STATE_RANGES, 16)?;
        let mut s = s;
        // Ranges start past `through + 1` (which is missing), are ordered and do not
        // touch; all of it below u64::MAX so that `+ 1` never overflows.
        if s.base == 0 || s.through.checked_add(1).is_none_or(|t| t < s.base) {
            return Err(invalid(format!(
                "stream {} {:016x}: base {} and through {} are out of order",
                s.origin, s.incarnation, s.base, s.through
            )));
        }
        let mut next = s.through + 2;
        for _ in 0..m {
            let (a, b) = (r.u64()?, r.u64()?);
            if a < next || b < a || b == u64::MAX {
                return Err(invalid(format!(
                    "stream {} {:016x}: out-of-order range {a}..={b} is not past the last",
                    s.origin, s.incarnation
                )));
            }
            s.above.push((a, b));
            next = b + 2;
        }
        if !keys.insert((s.origin.clone(), s.incarnation)) {
            return Err(invalid(format!(
                "{gname}: stream {} {:016x} twice",
                s.origin, s.incarnation
            )));
        }
        streams.push(s);
    }
    let n = r.count("waiting updates", MAX_STATE_UPDATES, 26)?;
    let mut waiting = Vec::with_capacity(n);
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let u = WaitingUpdate {
            origin: name(r, "origin")?,
            incarnation: r.u64()?,
            seq: r.u64()?,
            in_run: r.bool("in-run")?,
            data: r.bytes("update", MAX_UPDATE_BYTES)?,
        };
        let stream = streams
            .iter()
            .find(|s| s.origin == u.origin && s.incarnation == u.incarnation);
        if !stream.is_some_and(|s| s.has(u.seq)) {
            return Err(invalid(format!(
                "{gname}: waiting update {} {:016x} {} is not one its stream's marks hold",
                u.origin, u.incarnation, u.seq
            )));
        }
        if !seen.insert((u.origin.clone(), u.incarnation, u.seq)) {
            return Err(invalid(format!(
                "{gname}: waiting update {} {:016x} {} twice",
                u.origin, u.incarnation, u.seq
            )));
        }
        waiting.push(u);
    }
    let n = r.count("lost ranges", MAX_STATE_LOST, 30)?;
    let mut lost = Vec::with_capacity(n);
    for _ in 0..n {
        let origin = name(r, "origin")?;
        let incarnation = r.u64()?;
        let (from, to) = (r.u64()?, r.u64()?);
        let code = r.u8()?;
        let reason = *LostReason::ALL
            .get(usize::from(code))
            .ok_or(DecodeError::InvalidValue {
                field: "lost reason",
                value: u64::from(code),
            })?;
        if from == 0 || to < from {
            return Err(invalid(format!(
                "{gname}: lost range {from}..={to} of {origin} is empty"
            )));
        }
        lost.push(LostRange {
            origin,
            incarnation,
            from,
            to,
            reason,
        });
    }
    Ok(GroupState {
        name: gname,
        streams,
        waiting,
        lost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> FloodState {
        FloodState {
            site: "here".into(),
            groups: vec![GroupState {
                name: "g".into(),
                streams: vec![
                    StreamState {
                        origin: "a".into(),
                        incarnation: 7,
                        base: 3,
                        through: 9,
                        above: vec![(11, 12), (20, 20)],
                    },
                    StreamState {
                        origin: "b".into(),
                        incarnation: 1,
                        base: 1,
                        through: 0,
                        above: vec![],
                    },
                ],
                waiting: vec![
                    WaitingUpdate {
                        origin: "a".into(),
                        incarnation: 7,
                        seq: 9,
                        in_run: true,
                        data: Bytes::from_static(b"nine"),
                    },
                    WaitingUpdate {
                        origin: "a".into(),
                        incarnation: 7,
                        seq: 20,
                        in_run: false,
                        data: Bytes::new(),
                    },
                ],
                lost: vec![LostRange {
                    origin: "b".into(),
                    incarnation: 1,
                    from: 1,
                    to: 4,
                    reason: LostReason::Interrupted,
                }],
            }],
        }
    }

    #[test]
    fn a_state_reads_back() {
        let s = sample();
        assert_eq!(FloodState::decode(&s.encode()), Ok(s));
        let empty = FloodState {
            site: "x".into(),
            groups: vec![],
        };
        assert_eq!(FloodState::decode(&empty.encode()), Ok(empty));
    }

    /// Each kind of bad file is refused with its own error.
    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert_eq!(
            FloodState::decode(&Bytes::from_static(b"FLSHIP\0\x02....")),
            Err(StateError::BadMagic)
        );
        assert_eq!(FloodState::decode(&Bytes::new()), Err(StateError::BadMagic));
        let good = sample().encode();
        let mut flipped = good.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            FloodState::decode(&Bytes::from(flipped)),
            Err(StateError::Checksum)
        );
        // A body that is cut short, with a checksum that matches what is left.
        let body = &good[12..good.len() - 3];
        let mut cut = MAGIC.to_vec();
        cut.extend_from_slice(&crc32c(body).to_be_bytes());
        cut.extend_from_slice(body);
        assert!(matches!(
            FloodState::decode(&Bytes::from(cut)),
            Err(StateError::Decode(_))
        ));
        let refused = |f: &dyn Fn(&mut FloodState)| {
            let mut s = sample();
            f(&mut s);
            match FloodState::decode(&s.encode()) {
                Err(StateError::Invalid(m)) => m,
                other => panic!("{other:?}"),
            }
        };
        refused(&|s| s.groups[0].streams[0].base = 0);
        refused(&|s| s.groups[0].streams[0].through = 1);
        refused(&|s| s.groups[0].streams[0].above = vec![(10, 12)]);
        refused(&|s| s.groups[0].streams[0].above = vec![(12, 11)]);
        refused(&|s| s.groups[0].streams[0].above = vec![(11, 12), (13, 14)]);
        refused(&|s| s.groups[0].streams[0].above = vec![(11, u64::MAX)]);
        refused(&|s| {
            s.groups[0].streams[1].origin = "a".into();
            s.groups[0].streams[1].incarnation = 7;
        });
        let m = refused(&|s| s.groups[0].waiting[0].seq = 10);
        assert!(m.contains("marks"), "{m}");
        refused(&|s| s.groups[0].waiting[1].seq = 9);
        refused(&|s| s.groups[0].lost[0].from = 5);
        refused(&|s| s.groups[0].lost[0].from = 0);
        refused(&|s| s.site.clear());
        refused(&|s| {
            let g = s.groups[0].clone();
            s.groups.push(g);
        });
        // An unknown reason is a field that does not decode.
        let mut bytes = sample().encode().to_vec();
        let reason_at = bytes.len() - 1;
        bytes[reason_at] = 9;
        let crc = crc32c(&bytes[12..]);
        bytes[8..12].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            FloodState::decode(&Bytes::from(bytes)),
            Err(StateError::Decode(DecodeError::InvalidValue { .. }))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = FloodState::decode(&Bytes::from(b.clone()));
            // And with a valid head, so the body is read.
            let mut f = MAGIC.to_vec();
            f.extend_from_slice(&crc32c(&b).to_be_bytes());
            f.extend_from_slice(&b);
            let _ = FloodState::decode(&Bytes::from(f));
        }
    }
}
