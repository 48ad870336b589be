//! What the export command reads on its standard input (SPEC.md §8.7).
//!
//! Several updates (and reports of updates that can no longer arrive) go to one run of
//! the command. In the framed format (the default) each is a header line and, for an
//! update, its bytes exactly as flooded:
//!
//! ```text
//! update GROUP ORIGIN INCARNATION SEQ LENGTH\n
//! <LENGTH bytes>\n
//! lost GROUP ORIGIN INCARNATION FROM TO REASON\n
//! ```
//!
//! `INCARNATION` is 16 hexadecimal digits; `REASON` is `purged` (no neighbour still held
//! them when this site asked), `storage` (dropped here: `data-storage-max` was full) or
//! `behind` (this site fell further behind the stream than it keeps track of) or
//! `interrupted` (they were in an export run when the daemon stopped without warning: the
//! run may have completed, so they are not offered again).
//! In the raw format (`(:export-format raw)`) the command reads only the updates' bytes,
//! one after the other, as floodd's export commands did.

use bytes::{BufMut, Bytes, BytesMut};

use super::config::ExportFormat;

/// Why updates were reported lost.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LostReason {
    /// No neighbour held them any more (purged after `log-purge-period`, or dropped).
    Purged,
    /// This site dropped them before exporting: its storage was full.
    Storage,
    /// This site fell so far behind the stream (more out-of-order arrivals than it
    /// remembers) that it gave up waiting for them.
    Behind,
    /// They were in an export run when the daemon stopped without warning (a crash,
    /// kill -9); restarted from its state file, it does not offer them again, since the
    /// run may have completed.
    Interrupted,
}

impl LostReason {
    /// Every reason.
    pub const ALL: [LostReason; 4] = [
        LostReason::Purged,
        LostReason::Storage,
        LostReason::Behind,
        LostReason::Interrupted,
    ];

    /// The word in a bundle, in `gaps` and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            LostReason::Purged => "purged",
            LostReason::Storage => "storage",
            LostReason::Behind => "behind",
            LostReason::Interrupted => "interrupted",
        }
    }
}

/// One item of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleItem {
    /// An update.
    Update {
        /// Group.
        group: String,
        /// Origin site.
        origin: String,
        /// The origin's incarnation.
        incarnation: u64,
        /// Sequence number.
        seq: u64,
        /// The bytes flooded.
        data: Bytes,
    },
    /// Updates `from..=to` of a stream will not be exported here.
    Lost {
        /// Group.
        group: String,
        /// Origin site.
        origin: String,
        /// The origin's incarnation.
        incarnation: u64,
        /// First lost.
        from: u64,
        /// Last lost.
        to: u64,
        /// Why.
        reason: LostReason,
    },
}

/// Writes items as the export command reads them.
pub fn encode(items: &[BundleItem], format: ExportFormat) -> Bytes {
    let mut out = BytesMut::new();
    for item in items {
        match (item, format) {
            (BundleItem::Update { data, .. }, ExportFormat::Raw) => out.put_slice(data),
            (BundleItem::Lost { .. }, ExportFormat::Raw) => {}
            (
                BundleItem::Update {
                    group,
                    origin,
                    incarnation,
                    seq,
                    data,
                },
                ExportFormat::Framed,
            ) => {
                let head = format!(
                    "update {group} {origin} {incarnation:016x} {seq} {}\n",
                    data.len()
                );
                out.put_slice(head.as_bytes());
                out.put_slice(data);
                out.put_u8(b'\n');
            }
            (
                BundleItem::Lost {
                    group,
                    origin,
                    incarnation,
                    from,
                    to,
                    reason,
                },
                ExportFormat::Framed,
            ) => {
                let line = format!(
                    "lost {group} {origin} {incarnation:016x} {from} {to} {}\n",
                    reason.as_str()
                );
                out.put_slice(line.as_bytes());
            }
        }
    }
    out.freeze()
}

/// Reads a framed bundle back (for tests, the simulator, and as the reference reader).
pub fn decode(bytes: &Bytes) -> Result<Vec<BundleItem>, String> {
    let mut items = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let nl = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("byte {at}: a header line without its newline"))?;
        let line = std::str::from_utf8(&bytes[at..at + nl])
            .map_err(|_| format!("byte {at}: a header line that is not text"))?;
        at += nl + 1;
        let w: Vec<&str> = line.split(' ').collect();
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("bad number {s:?} in {line:?}"))
        };
        let inc = |s: &str| {
            u64::from_str_radix(s, 16).map_err(|_| format!("bad incarnation {s:?} in {line:?}"))
        };
        match w.as_slice() {
            ["update", group, origin, incarnation, seq, len] => {
                let len = usize::try_from(num(len)?).map_err(|e| e.to_string())?;
                let end = at
                    .checked_add(len)
                    .filter(|e| *e < bytes.len() && bytes[*e] == b'\n')
                    .ok_or_else(|| format!("an update of {len} bytes cut short: {line:?}"))?;
                items.push(BundleItem::Update {
                    group: group.to_string(),
                    origin: origin.to_string(),
                    incarnation: inc(incarnation)?,
                    seq: num(seq)?,
                    data: bytes.slice(at..end),
                });
                at = end + 1;
            }
            ["lost", group, origin, incarnation, from, to, reason] => {
                let reason = match *reason {
                    "purged" => LostReason::Purged,
                    "storage" => LostReason::Storage,
                    "behind" => LostReason::Behind,
                    "interrupted" => LostReason::Interrupted,
                    other => return Err(format!("unknown reason {other:?}")),
                };
                items.push(BundleItem::Lost {
                    group: group.to_string(),
                    origin: origin.to_string(),
                    incarnation: inc(incarnation)?,
                    from: num(from)?,
                    to: num(to)?,
                    reason,
                });
            }
            _ => return Err(format!("not a bundle line: {line:?}")),
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn framed_bundles_round_trip(datas in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6), lost in any::<bool>()) {
            let mut items: Vec<BundleItem> = datas.iter().enumerate().map(|(i, d)| BundleItem::Update {
                group: "g".into(),
                origin: format!("s{i}"),
                incarnation: 0xabc,
                seq: i as u64 + 1,
                data: Bytes::from(d.clone()),
            }).collect();
            if lost {
                items.push(BundleItem::Lost { group: "g".into(), origin: "s".into(), incarnation: 7, from: 3, to: 9, reason: LostReason::Storage });
            }
            let bytes = encode(&items, ExportFormat::Framed);
            prop_assert_eq!(decode(&bytes), Ok(items.clone()));
            let raw = encode(&items, ExportFormat::Raw);
            prop_assert_eq!(raw.to_vec(), datas.concat());
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&Bytes::from(b));
        }
    }

    #[test]
    fn every_reason_reads_back() {
        for reason in LostReason::ALL {
            let item = BundleItem::Lost {
                group: "g".into(),
                origin: "o".into(),
                incarnation: 1,
                from: 1,
                to: 2,
                reason,
            };
            let bytes = encode(core::slice::from_ref(&item), ExportFormat::Framed);
            assert_eq!(decode(&bytes), Ok(vec![item]), "{}", reason.as_str());
        }
    }

    #[test]
    fn the_framed_format_as_written() {
        let items = [
            BundleItem::Update {
                group: "mirror-1".into(),
                origin: "master".into(),
                incarnation: 0x1f,
                seq: 4,
                data: Bytes::from_static(b"hello\n.\n"),
            },
            BundleItem::Lost {
                group: "mirror-1".into(),
                origin: "inferno".into(),
                incarnation: 2,
                from: 5,
                to: 6,
                reason: LostReason::Purged,
            },
        ];
        assert_eq!(
            encode(&items, ExportFormat::Framed),
            Bytes::from_static(
                b"update mirror-1 master 000000000000001f 4 8\nhello\n.\n\nlost mirror-1 inferno 0000000000000002 5 6 purged\n"
            )
        );
    }
}
