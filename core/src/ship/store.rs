//! What a durable mothership stores (SPEC.md §5.3): a copy of the configuration and the
//! batches of changes decided since, as one append-only state file. The machine asks for
//! batches ([`StoreBatch`]); the runner appends each as a record and syncs once per batch,
//! so the cost of a change does not grow with the configuration's size; now and then the
//! runner rewrites the file as one fresh copy (compaction). Everything here is pure:
//! encoding, decoding and applying; the binary does the file I/O.
//!
//! ```text
//! state file = "FLSHIP\0\x02"  copy  record*
//! copy       = epoch u64  version u64  tree (§5.4)  decisions
//! record     = length u32  crc32c u32  payload[length]
//! payload    = epoch u64  first u64  count u32  change*  decisions
//! decisions  = count u32  (origin u64  seq u64  outcome)*
//! ```
//!
//! A record cut short or damaged (a crash in the middle of an append) ends the log: what
//! came before it stands. Format 1 files (`FLSHIP\0\x01`, a copy and nothing after) are
//! still read.

use bytes::Bytes;
use thiserror::Error;

use super::msg::{ConfigOutcome, Ticket, get_ticket, put_ticket};
use super::tree::{Change, ConfigTree};
use crate::wire::{DecodeError, Reader, Writer, crc32c};

/// Most decisions on daughterships' tickets a stored copy keeps (the newest). They exist
/// so that a request retried across a restart is answered rather than applied twice, and
/// a retry comes within seconds.
pub const MAX_DECIDED: usize = 100_000;

/// First bytes of a state file in the current format (2: a copy, then records).
pub const STATE_MAGIC: &[u8; 8] = b"FLSHIP\x00\x02";
/// First bytes of a format 1 state file (a copy alone).
const STATE_MAGIC_V1: &[u8; 8] = b"FLSHIP\x00\x01";

/// A stored configuration copy: what a restarted mothership starts from
/// ([`super::ShipConfig::restore`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Root epoch.
    pub epoch: u64,
    /// Version.
    pub version: u64,
    /// The whole tree at that version.
    pub tree: ConfigTree,
    /// Recent decisions on requests from daughterships, oldest first, so that a request
    /// retried across a restart of the mothership is answered, not applied twice.
    pub decided: Vec<(Ticket, ConfigOutcome)>,
}

/// One store a durable mothership asks for: changes `first..first + changes.len()` of
/// epoch `epoch`, the decisions made with them, and — for the first store of an epoch —
/// the copy they start from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreBatch {
    /// Root epoch.
    pub epoch: u64,
    /// Version of the first change.
    pub first: u64,
    /// The changes, in version order.
    pub changes: Vec<Change>,
    /// Decisions on daughterships' tickets made since the last batch.
    pub decided: Vec<(Ticket, ConfigOutcome)>,
    /// The copy to start from (at version `first - 1`), replacing whatever is stored:
    /// present in a fresh mothership's first batch.
    pub base: Option<Box<Stored>>,
}

/// Why a batch does not fit what is stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The batch is of another epoch than the stored copy and brings no copy of its own.
    #[error("batch of epoch {batch:016x} for a stored copy of epoch {stored:016x}")]
    Epoch {
        /// The batch's epoch.
        batch: u64,
        /// The stored copy's.
        stored: u64,
    },
    /// The batch starts past the stored version: changes in between are missing.
    #[error("batch starts at version {first}, but the stored copy is at version {stored}")]
    Gap {
        /// The batch's first version.
        first: u64,
        /// The stored version.
        stored: u64,
    },
}

fn put_decisions(w: &mut Writer, decided: &[(Ticket, ConfigOutcome)]) {
    w.count(decided.len());
    for (t, o) in decided {
        put_ticket(w, *t);
        o.encode(w);
    }
}

fn get_decisions(r: &mut Reader<'_>) -> Result<Vec<(Ticket, ConfigOutcome)>, DecodeError> {
    let n = r.count("decisions", 1 << 20, 19)?;
    let mut decided = Vec::with_capacity(n);
    for _ in 0..n {
        decided.push((get_ticket(r)?, ConfigOutcome::decode(r)?));
    }
    Ok(decided)
}

impl Stored {
    fn put(&self, w: &mut Writer) {
        w.u64(self.epoch).u64(self.version);
        self.tree.encode(w);
        put_decisions(w, &self.decided);
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let epoch = r.u64()?;
        let version = r.u64()?;
        let tree = ConfigTree::decode(r)?;
        let decided = get_decisions(r)?;
        Ok(Stored {
            epoch,
            version,
            tree,
            decided,
        })
    }

    /// The copy as a whole state file (format 2, no records yet): what a compaction
    /// writes.
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new();
        for b in STATE_MAGIC {
            w.u8(*b);
        }
        self.put(&mut w);
        w.finish()
    }

    /// Reads a state file: the copy, then every whole, undamaged record after it, applied
    /// in order (records that repeat versions already held are skipped; a record that
    /// does not fit ends the log, as a damaged one does). Format 1 files are read too.
    pub fn decode(bytes: &Bytes) -> Result<Self, DecodeError> {
        Ok(Self::decode_log(bytes)?.0)
    }

    /// Like [`Stored::decode`], also saying how many bytes of the file hold the copy and
    /// the records that were used: a writer appends after them (and cuts what follows,
    /// a torn record).
    pub fn decode_log(bytes: &Bytes) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader::new(bytes);
        let mut magic = [0u8; 8];
        for b in &mut magic {
            *b = r.u8()?;
        }
        let v1 = &magic == STATE_MAGIC_V1;
        if !v1 && &magic != STATE_MAGIC {
            return Err(DecodeError::InvalidValue {
                field: "state file header",
                value: u64::from_be_bytes(magic),
            });
        }
        let mut stored = Stored::get(&mut r)?;
        if v1 {
            r.finish()?;
            return Ok((stored, bytes.len()));
        }
        let mut good = bytes.len() - r.remaining();
        while let Some(batch) = next_record(bytes, &mut good) {
            if stored.apply(&batch).is_err() {
                break;
            }
        }
        Ok((stored, good))
    }

    /// Adds a batch: its copy first if it brings one, then every change not yet held, in
    /// order, and its decisions (keeping at least the newest [`MAX_DECIDED`], trimmed a
    /// quarter at a time). Changes already held (a retried batch) are skipped. State is
    /// unchanged on error.
    pub fn apply(&mut self, batch: &StoreBatch) -> Result<(), StoreError> {
        let base = batch.base.as_deref();
        let (epoch, version) = match base {
            Some(b) => (b.epoch, b.version),
            None => (self.epoch, self.version),
        };
        if batch.epoch != epoch {
            return Err(StoreError::Epoch {
                batch: batch.epoch,
                stored: epoch,
            });
        }
        if batch.first > version + 1 {
            return Err(StoreError::Gap {
                first: batch.first,
                stored: version,
            });
        }
        if let Some(b) = base {
            *self = b.clone();
        }
        for (i, change) in batch.changes.iter().enumerate() {
            if batch.first + i as u64 == self.version + 1 {
                self.tree.apply(change);
                self.version += 1;
            }
        }
        self.decided.extend(batch.decided.iter().cloned());
        // Trimmed a quarter at a time, so a full list does not shift on every batch.
        if self.decided.len() > MAX_DECIDED + MAX_DECIDED / 4 {
            let extra = self.decided.len() - MAX_DECIDED;
            self.decided.drain(..extra);
        }
        Ok(())
    }
}

impl StoreBatch {
    /// The batch as one record of a state file (length, checksum, payload).
    pub fn encode_record(&self) -> Bytes {
        let mut w = Writer::new();
        w.u64(self.epoch).u64(self.first).count(self.changes.len());
        for c in &self.changes {
            c.encode(&mut w);
        }
        put_decisions(&mut w, &self.decided);
        let payload = w.finish();
        let mut out = Writer::new();
        out.u32(payload.len() as u32).u32(crc32c(&payload));
        for b in payload.iter() {
            out.u8(*b);
        }
        out.finish()
    }

    /// Bytes the batch's changes add to a record (for deciding when to compact).
    pub fn size(&self) -> usize {
        24 + self.changes.iter().map(Change::size).sum::<usize>() + 40 * self.decided.len()
    }
}

/// The record at `*at`, if it is whole and undamaged; moves `*at` past it.
fn next_record(bytes: &Bytes, at: &mut usize) -> Option<StoreBatch> {
    let rest = bytes.get(*at..)?;
    if rest.len() < 8 {
        return None;
    }
    let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(rest[4..8].try_into().ok()?);
    let payload = rest.get(8..8 + len)?;
    if crc32c(payload) != crc {
        return None;
    }
    let payload = bytes.slice(*at + 8..*at + 8 + len);
    let mut r = Reader::new(&payload);
    let epoch = r.u64().ok()?;
    let first = r.u64().ok()?;
    let n = r.count("changes", 1 << 24, 9).ok()?;
    let mut changes = Vec::with_capacity(n);
    for _ in 0..n {
        changes.push(Change::decode(&mut r).ok()?);
    }
    let decided = get_decisions(&mut r).ok()?;
    r.finish().ok()?;
    *at += 8 + len;
    Some(StoreBatch {
        epoch,
        first,
        changes,
        decided,
        base: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str) -> Change {
        Change::Set {
            node: String::new(),
            key: key.into(),
            value: value.into(),
        }
    }

    fn base() -> Stored {
        Stored {
            epoch: 7,
            version: 3,
            tree: ConfigTree::parse("(:param a 1) (:node n (:dynamic))").unwrap(),
            decided: vec![(
                Ticket { origin: 1, seq: 2 },
                ConfigOutcome::Applied {
                    version: 3,
                    text: "n".into(),
                },
            )],
        }
    }

    fn batch(first: u64, changes: Vec<Change>) -> StoreBatch {
        StoreBatch {
            epoch: 7,
            first,
            changes,
            decided: vec![(
                Ticket {
                    origin: 9,
                    seq: first,
                },
                ConfigOutcome::Refused {
                    code: 409,
                    text: "no".into(),
                },
            )],
            base: None,
        }
    }

    #[test]
    fn a_copy_and_its_records_round_trip() {
        let mut file = base().encode().to_vec();
        let b1 = batch(4, vec![set("a", "2"), set("b", "x")]);
        let b2 = batch(6, vec![set("a", "3")]);
        file.extend_from_slice(&b1.encode_record());
        file.extend_from_slice(&b2.encode_record());
        let (st, used) = Stored::decode_log(&Bytes::from(file.clone())).unwrap();
        assert_eq!(used, file.len());
        assert_eq!((st.epoch, st.version), (7, 6));
        assert_eq!(st.tree.get("a").unwrap(), "3");
        assert_eq!(st.tree.get("b").unwrap(), "x");
        assert_eq!(st.decided.len(), 3);
        let mut expect = base();
        expect.apply(&b1).unwrap();
        expect.apply(&b2).unwrap();
        assert_eq!(st, expect);
    }

    /// A crash in the middle of an append leaves a torn record: the log ends before it,
    /// and everything before it stands.
    #[test]
    fn a_torn_or_damaged_record_ends_the_log() {
        let mut file = base().encode().to_vec();
        file.extend_from_slice(&batch(4, vec![set("a", "2")]).encode_record());
        let whole = file.len();
        let second = batch(5, vec![set("a", "3")]).encode_record();
        for cut in [1, 7, second.len() - 1] {
            let mut torn = file.clone();
            torn.extend_from_slice(&second[..cut]);
            let (st, used) = Stored::decode_log(&Bytes::from(torn)).unwrap();
            assert_eq!((st.version, used), (4, whole), "cut at {cut}");
        }
        let mut damaged = file.clone();
        let mut bad = second.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        damaged.extend_from_slice(&bad);
        assert_eq!(Stored::decode(&Bytes::from(damaged)).unwrap().version, 4);
    }

    /// A retried batch repeats versions already held: they are skipped, never applied
    /// twice; a batch past a gap, or of another epoch, is refused and changes nothing.
    #[test]
    fn retries_are_harmless_and_gaps_refused() {
        let mut st = base();
        st.apply(&batch(4, vec![set("a", "2")])).unwrap();
        st.apply(&batch(4, vec![set("a", "2"), set("a", "5")]))
            .unwrap();
        assert_eq!(
            (st.version, st.tree.get("a").unwrap()),
            (5, "5".to_string())
        );
        let before = st.clone();
        assert_eq!(
            st.apply(&batch(9, vec![set("a", "9")])),
            Err(StoreError::Gap {
                first: 9,
                stored: 5
            })
        );
        let mut other = batch(6, vec![]);
        other.epoch = 8;
        assert!(matches!(st.apply(&other), Err(StoreError::Epoch { .. })));
        assert_eq!(st, before);
        // A batch bringing its own copy replaces what is stored.
        let mut fresh = batch(11, vec![set("z", "1")]);
        fresh.epoch = 8;
        fresh.base = Some(Box::new(Stored {
            epoch: 8,
            version: 10,
            tree: ConfigTree::default(),
            decided: vec![],
        }));
        st.apply(&fresh).unwrap();
        assert_eq!((st.epoch, st.version), (8, 11));
        assert!(st.tree.get("a").is_err());
    }

    #[test]
    fn format_1_files_are_still_read_and_bad_headers_refused() {
        let b = base();
        let mut w = Writer::new();
        for x in STATE_MAGIC_V1 {
            w.u8(*x);
        }
        b.put(&mut w);
        assert_eq!(Stored::decode(&w.finish()), Ok(b));
        assert!(Stored::decode(&Bytes::from_static(b"(:param a 1)")).is_err());
    }
}
