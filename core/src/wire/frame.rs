//! The frame envelope (SPEC.md §2.1).
//!
//! ```text
//! offset  size  field
//!      0     1  magic    0xF1: not printable ASCII, so one TCP port can tell frames
//!                        from line-protocol clients by the first byte
//!      1     1  version  1
//!      2     2  kind     message kind, big-endian; high byte = protocol family
//!      4     1  flags    0x01 in version 1 (a checksum follows the tag); other bits reserved
//!      5     1  tag_len  length of the authentication tag (0 until auth lands)
//!      6     4  length   payload length, big-endian
//!     10  tag_len  tag
//!      …     4  crc      CRC-32C of kind (2 bytes) and payload, big-endian
//!      …  length   payload
//! ```
//!
//! The checksum makes a corrupted frame a decode error at the envelope, so no protocol
//! ever acts on a flipped byte (a corrupted sequence number would otherwise poison a
//! peer's state until it restarts).

use core::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// First byte of every frame.
pub const FRAME_MAGIC: u8 = 0xF1;
/// The only version this build speaks.
pub const FRAME_VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 10;
/// Size of the checksum that follows the tag.
pub const CRC_LEN: usize = 4;
/// The flag every version-1 frame carries: a CRC-32C follows the tag.
pub const FLAG_CRC: u8 = 0x01;

/// CRC-32C (Castagnoli) of `data`, for records that want the same check as frames.
///
/// The `crc32c` crate uses the CPU's CRC instruction where there is one (SSE 4.2 on
/// x86-64, the CRC extension on ARMv8; about five times the tables' speed here,
/// BENCHMARKS.md) and tables elsewhere; the tests hold it to an independent table
/// implementation and to the standard's known answers.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// CRC-32C of a frame's kind and payload.
pub fn frame_crc(kind: Kind, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&kind.0.to_be_bytes()), payload)
}

/// A message kind: the high byte names the protocol family, the low byte the message.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind(pub u16);

impl Kind {
    /// The protocol family (high byte).
    pub const fn family(self) -> u8 {
        (self.0 >> 8) as u8
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

/// Bounds applied while decoding, before anything is allocated.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload accepted, in bytes.
    pub max_payload: u32,
}

impl Default for Limits {
    /// 1 MiB: enough for a configuration snapshot, small enough that a hostile length
    /// cannot make a stream reader buffer much.
    fn default() -> Self {
        Limits {
            max_payload: 1 << 20,
        }
    }
}

/// A decoded frame. `payload` and `tag` are slices of the received buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the payload is.
    pub kind: Kind,
    /// Authentication tag; empty in version 1.
    pub tag: Bytes,
    /// The message body, decoded by the protocol that owns `kind`.
    pub payload: Bytes,
    checksum: Checksum,
}

/// A frame's checksum, remembered with the kind, address and length of the payload it
/// covers: a frame sent to many peers (a sequencer's order) is summed once, and a frame
/// whose fields were replaced since is summed again. Never part of equality.
#[derive(Clone, Copy, Default)]
struct Checksum(Option<(Kind, usize, usize, u32)>);

impl Checksum {
    fn of(kind: Kind, payload: &Bytes, crc: u32) -> Self {
        Checksum(Some((kind, payload.as_ptr() as usize, payload.len(), crc)))
    }
}

impl PartialEq for Checksum {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Checksum {}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("..")
    }
}

impl Frame {
    /// A frame with no tag.
    pub fn new(kind: Kind, payload: Bytes) -> Self {
        Frame::tagged(kind, Bytes::new(), payload)
    }

    /// A frame with an authentication tag.
    pub fn tagged(kind: Kind, tag: Bytes, payload: Bytes) -> Self {
        Frame {
            kind,
            tag,
            payload,
            checksum: Checksum::default(),
        }
    }

    /// The same frame with its checksum computed now, for a frame about to be sent,
    /// unchanged, to many peers: each copy's encoding reuses it.
    pub fn summed(mut self) -> Self {
        let crc = frame_crc(self.kind, &self.payload);
        self.checksum = Checksum::of(self.kind, &self.payload, crc);
        self
    }

    /// CRC-32C of the kind and payload (remembered when it still covers them).
    pub fn crc(&self) -> u32 {
        match self.checksum.0 {
            Some((kind, at, len, crc))
                if kind == self.kind
                    && at == self.payload.as_ptr() as usize
                    && len == self.payload.len() =>
            {
                crc
            }
            _ => frame_crc(self.kind, &self.payload),
        }
    }

    /// Size of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.tag.len() + CRC_LEN + self.payload.len()
    }

    /// Appends the header, tag and checksum to `out`; the payload is left to the caller
    /// so that a stream writer can send it from its own buffer without a copy.
    ///
    /// # Panics
    /// If the tag is longer than 255 bytes or the payload longer than `u32::MAX`: both are
    /// bugs in the sender, never network input.
    pub fn encode_header(&self, out: &mut BytesMut) {
        let tag_len = u8::try_from(self.tag.len()).expect("tag longer than 255 bytes");
        let len = u32::try_from(self.payload.len()).expect("payload longer than u32::MAX");
        out.reserve(HEADER_LEN + self.tag.len() + CRC_LEN);
        out.put_u8(FRAME_MAGIC);
        out.put_u8(FRAME_VERSION);
        out.put_u16(self.kind.0);
        out.put_u8(FLAG_CRC);
        out.put_u8(tag_len);
        out.put_u32(len);
        out.put_slice(&self.tag);
        out.put_u32(self.crc());
    }

    /// Appends the whole encoded frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_header(out);
        out.put_slice(&self.payload);
    }

    /// The whole encoded frame as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The input ended inside the header or body.
    #[error("frame truncated: {have} of {needed} bytes")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes present.
        have: usize,
    },
    /// The first byte was not [`FRAME_MAGIC`].
    #[error("not a flotilla frame (first byte {0:#04x})")]
    BadMagic(u8),
    /// A version this build does not speak.
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    /// Flags other than version 1's.
    #[error("unexpected flags {0:#04x} (version 1 frames carry exactly 0x01)")]
    ReservedFlags(u8),
    /// The checksum does not match: the frame was damaged in transit.
    #[error("frame checksum mismatch (kind {kind}): damaged in transit")]
    Checksum {
        /// The kind as received.
        kind: Kind,
    },
    /// The payload is larger than [`Limits::max_payload`].
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// Bytes followed the frame in a datagram.
    #[error("{0} bytes after the frame")]
    TrailingBytes(usize),
}

struct Header {
    kind: Kind,
    tag_len: usize,
    len: usize,
}

fn parse_header(buf: &[u8], limits: &Limits) -> Result<Header, FrameError> {
    if buf.is_empty() {
        return Err(FrameError::Truncated {
            needed: HEADER_LEN,
            have: 0,
        });
    }
    // Check the magic first so that a stream of text fails at once, not after 10 bytes.
    if buf[0] != FRAME_MAGIC {
        return Err(FrameError::BadMagic(buf[0]));
    }
    if buf.len() < HEADER_LEN {
        return Err(FrameError::Truncated {
            needed: HEADER_LEN,
            have: buf.len(),
        });
    }
    if buf[1] != FRAME_VERSION {
        return Err(FrameError::UnsupportedVersion(buf[1]));
    }
    if buf[4] != FLAG_CRC {
        return Err(FrameError::ReservedFlags(buf[4]));
    }
    let len = u32::from_be_bytes([buf[6], buf[7], buf[8], buf[9]]);
    if len > limits.max_payload {
        return Err(FrameError::TooLarge {
            len,
            max: limits.max_payload,
        });
    }
    Ok(Header {
        kind: Kind(u16::from_be_bytes([buf[2], buf[3]])),
        tag_len: usize::from(buf[5]),
        len: len as usize,
    })
}

fn slice_frame(buf: &Bytes, h: &Header) -> Result<Frame, FrameError> {
    let tag_end = HEADER_LEN + h.tag_len;
    let body = tag_end + CRC_LEN;
    let crc = u32::from_be_bytes([
        buf[tag_end],
        buf[tag_end + 1],
        buf[tag_end + 2],
        buf[tag_end + 3],
    ]);
    let payload = buf.slice(body..body + h.len);
    if frame_crc(h.kind, &payload) != crc {
        return Err(FrameError::Checksum { kind: h.kind });
    }
    let checksum = Checksum::of(h.kind, &payload, crc);
    Ok(Frame {
        kind: h.kind,
        tag: buf.slice(HEADER_LEN..tag_end),
        payload,
        checksum,
    })
}

/// Decodes a buffer that holds exactly one frame (a datagram).
pub fn decode_frame(buf: &Bytes, limits: &Limits) -> Result<Frame, FrameError> {
    let h = parse_header(buf, limits)?;
    let total = HEADER_LEN + h.tag_len + CRC_LEN + h.len;
    match buf.len().cmp(&total) {
        core::cmp::Ordering::Less => Err(FrameError::Truncated {
            needed: total,
            have: buf.len(),
        }),
        core::cmp::Ordering::Greater => Err(FrameError::TrailingBytes(buf.len() - total)),
        core::cmp::Ordering::Equal => slice_frame(buf, &h),
    }
}

/// Takes one frame off the front of a stream buffer.
///
/// Returns `Ok(None)` while the frame is incomplete; the buffer is untouched then. The
/// length is checked against `limits` as soon as the header is in, so a hostile peer
/// cannot make the reader wait for (and buffer) more than `max_payload` bytes.
pub fn split_frame(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, FrameError> {
    let h = match parse_header(buf, limits) {
        Ok(h) => h,
        Err(FrameError::Truncated { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let total = HEADER_LEN + h.tag_len + CRC_LEN + h.len;
    if buf.len() < total {
        return Ok(None);
    }
    let bytes = buf.split_to(total).freeze();
    slice_frame(&bytes, &h).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits { max_payload: 4096 }
    }

    /// CRC-32C one byte at a time, from its polynomial: the reference the fast one is
    /// held to.
    fn reference_crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn crc32c_known_answer() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        // RFC 3720, B.4: 32 bytes of zeros, of ones, and counting up.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let up: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&up), 0x46DD_794E);
        assert_eq!(reference_crc32c(b"123456789"), 0xE306_9283);
    }

    proptest! {
        /// The fast checksum agrees with the reference, whole and split as frames split
        /// it (the kind, then the payload).
        #[test]
        fn crc_matches_the_reference(kind in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(crc32c(&data), reference_crc32c(&data));
            let mut whole = kind.to_be_bytes().to_vec();
            whole.extend_from_slice(&data);
            prop_assert_eq!(frame_crc(Kind(kind), &data), reference_crc32c(&whole));
        }
    }

    #[test]
    fn header_layout_is_as_specified() {
        let f = Frame::new(Kind(0x0102), Bytes::from_static(b"abc"));
        let b = f.to_bytes();
        let crc = frame_crc(Kind(0x0102), b"abc").to_be_bytes();
        let mut want = vec![0xF1, 1, 0x01, 0x02, FLAG_CRC, 0, 0, 0, 0, 3];
        want.extend_from_slice(&crc);
        want.extend_from_slice(b"abc");
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn payload_is_not_copied() {
        let f = Frame::new(Kind(1), Bytes::from(vec![7u8; 1000]));
        let b = f.to_bytes();
        let d = decode_frame(&b, &limits()).unwrap();
        // The payload points into the received buffer.
        assert_eq!(d.payload.as_ptr(), b[HEADER_LEN + CRC_LEN..].as_ptr());
    }

    #[test]
    fn rejects_bad_inputs_with_typed_errors() {
        let l = limits();
        let d = |b: &'static [u8]| decode_frame(&Bytes::from_static(b), &l);
        assert_eq!(d(b"GET /"), Err(FrameError::BadMagic(b'G')));
        assert_eq!(
            d(&[0xF1, 2, 0, 0, 1, 0, 0, 0, 0, 0]),
            Err(FrameError::UnsupportedVersion(2))
        );
        assert_eq!(
            d(&[0xF1, 1, 0, 0, 1, 0, 0xFF, 0, 0, 0]),
            Err(FrameError::TooLarge {
                len: 0xFF00_0000,
                max: 4096
            })
        );
        assert_eq!(
            d(&[0xF1, 1, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 9]),
            Err(FrameError::Truncated {
                needed: 16,
                have: 15
            })
        );
        assert_eq!(
            d(&[0xF1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
            Err(FrameError::TrailingBytes(1))
        );
        assert_eq!(
            d(&[0xF1, 1, 0, 0, 4, 0, 0, 0, 0, 0]),
            Err(FrameError::ReservedFlags(4))
        );
        assert_eq!(
            d(&[0xF1, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::ReservedFlags(0))
        );
    }

    #[test]
    fn any_flipped_byte_is_caught() {
        let good = Frame::new(Kind(0x0101), Bytes::from_static(b"sequence-number!")).to_bytes();
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.to_vec();
                bad[i] ^= 1 << bit;
                assert!(
                    decode_frame(&Bytes::from(bad), &limits()).is_err(),
                    "flip of bit {bit} in byte {i} went unnoticed"
                );
            }
        }
    }

    /// A summed frame encodes as an unsummed one does; replacing its payload or kind
    /// afterwards is summed again, not sent with the old checksum.
    #[test]
    fn a_remembered_checksum_is_used_only_while_it_covers_the_frame() {
        let f = Frame::new(Kind(0x0501), Bytes::from_static(b"order"));
        let s = f.clone().summed();
        assert_eq!(s.to_bytes(), f.to_bytes());
        assert_eq!(s, f);
        let mut other = s.clone();
        other.payload = Bytes::from(b"other".to_vec());
        assert_eq!(
            other.to_bytes(),
            Frame::new(Kind(0x0501), Bytes::from_static(b"other")).to_bytes()
        );
        let mut kind = s.clone();
        kind.kind = Kind(0x0502);
        let d = decode_frame(&kind.to_bytes(), &limits()).unwrap();
        assert_eq!(d.kind, Kind(0x0502));
        // A decoded frame remembers the checksum it was checked with.
        let again = decode_frame(&s.to_bytes(), &limits()).unwrap();
        assert_eq!(again.to_bytes(), s.to_bytes());
    }

    #[test]
    fn tag_is_carried_separately_from_payload() {
        let f = Frame::tagged(
            Kind(9),
            Bytes::from_static(b"tag!"),
            Bytes::from_static(b"body"),
        );
        let d = decode_frame(&f.to_bytes(), &limits()).unwrap();
        assert_eq!(d, f);
    }

    #[test]
    fn oversized_length_fails_before_body_arrives() {
        let mut buf = BytesMut::from(&[0xF1, 1, 0, 0, 1, 0, 0, 1, 0, 0][..]);
        assert!(matches!(
            split_frame(&mut buf, &limits()),
            Err(FrameError::TooLarge { .. })
        ));
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..600),
        )
            .prop_map(|(k, t, p)| Frame::tagged(Kind(k), Bytes::from(t), Bytes::from(p)))
    }

    proptest! {
        #[test]
        fn round_trip(f in arb_frame()) {
            let b = f.to_bytes();
            prop_assert_eq!(b.len(), f.encoded_len());
            prop_assert_eq!(decode_frame(&b, &limits()), Ok(f));
        }

        #[test]
        fn stream_splitting_recovers_every_frame(
            frames in proptest::collection::vec(arb_frame(), 0..8),
            chunk in 1usize..64,
        ) {
            let mut wire = BytesMut::new();
            for f in &frames {
                f.encode(&mut wire);
            }
            let wire = wire.freeze();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(f) = split_frame(&mut buf, &limits()).unwrap() {
                    got.push(f);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let b = Bytes::from(data.clone());
            let _ = decode_frame(&b, &limits());
            let mut buf = BytesMut::from(&data[..]);
            let before = buf.len();
            match split_frame(&mut buf, &limits()) {
                Ok(Some(f)) => prop_assert_eq!(before - buf.len(), f.encoded_len()),
                Ok(None) => prop_assert_eq!(buf.len(), before),
                Err(_) => {}
            }
        }
    }
}
