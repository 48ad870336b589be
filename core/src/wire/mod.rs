//! Node-to-node wire format: the frame envelope and the payload codec every protocol
//! shares.
//!
//! A frame is a fixed 10-byte header, an optional authentication tag, and the payload
//! (SPEC.md §2). Decoding works on [`bytes::Bytes`] and hands out slices of the input, so
//! a payload is never copied; every length is checked against [`Limits`] before anything
//! is allocated.

mod codec;
mod frame;
pub mod transport;

pub use codec::{Reader, Writer};
pub use frame::{
    CRC_LEN, FLAG_CRC, FRAME_MAGIC, FRAME_VERSION, Frame, FrameError, HEADER_LEN, Kind, Limits,
    crc32c, decode_frame, frame_crc, split_frame,
};

use thiserror::Error;

/// Why a payload could not be decoded. Returned for bad network input; the machine that
/// received it leaves its state unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload ended before a field of `needed` bytes; `have` were left.
    #[error("payload truncated: needed {needed} more bytes, {have} left")]
    Truncated {
        /// Bytes the field needed.
        needed: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// Bytes were left over after the last field.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
    /// A length prefix exceeded the bound for its field.
    #[error("field {field} is {len} long, more than the {max} allowed")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// The length announced.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A string field was not UTF-8.
    #[error("field {0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A field held a value outside its domain (an unknown tag, an impossible flag).
    #[error("field {field} has invalid value {value}")]
    InvalidValue {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// The frame's kind is not one this machine speaks.
    #[error("unknown message kind {0}")]
    UnknownKind(Kind),
}
