//! Line framing for client ports a person can use with telnet (SPEC.md §5.1).
//!
//! Requests are lines ending in `\n` (a `\r` before it is dropped); replies are lines that
//! start with a three-digit code: `1xx` progress (more follows), `2xx` success, `4xx` the
//! request was wrong, `5xx` the server could not do it. A line longer than the limit is
//! an error, reported once; the buffer never grows past the limit.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Longest request line accepted, in bytes, by default.
pub const DEFAULT_MAX_LINE: usize = 4096;

/// Why a client's bytes could not be framed into lines.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LineError {
    /// No newline within the limit.
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    /// The line is not UTF-8.
    #[error("line is not valid UTF-8")]
    NotUtf8,
}

/// Accumulates a client's bytes and yields complete lines.
#[derive(Debug)]
pub struct LineBuffer {
    buf: BytesMut,
    max: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer::new(DEFAULT_MAX_LINE)
    }
}

impl LineBuffer {
    /// A buffer that refuses lines longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        LineBuffer {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete line without its terminator, `Ok(None)` if none is complete yet.
    /// After an error the buffer is cleared: the caller is expected to close the stream.
    pub fn next_line(&mut self) -> Result<Option<String>, LineError> {
        let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
            if self.buf.len() > self.max {
                self.buf.clear();
                return Err(LineError::TooLong(self.max));
            }
            return Ok(None);
        };
        if nl > self.max {
            self.buf.clear();
            return Err(LineError::TooLong(self.max));
        }
        let mut line = self.buf.split_to(nl);
        self.buf.advance(1);
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        match String::from_utf8(line.to_vec()) {
            Ok(s) => Ok(Some(s)),
            Err(_) => {
                self.buf.clear();
                Err(LineError::NotUtf8)
            }
        }
    }

    /// Bytes buffered but not yet returned.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// A reply line: `code text\n`.
pub fn reply(code: u16, text: &str) -> Bytes {
    debug_assert!((100..600).contains(&code), "reply code {code} out of range");
    debug_assert!(!text.contains('\n'), "reply text must be one line");
    Bytes::from(format!("{code} {text}\n"))
}

/// Splits a reply line into its code and text; `None` if it does not start with a
/// three-digit code followed by a space or the end of the line.
pub fn parse_reply(line: &str) -> Option<(u16, &str)> {
    let line = line.trim_end_matches(['\r', '\n']);
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = &line[3..];
    let text = match rest.strip_prefix(' ') {
        Some(t) => t,
        None if rest.is_empty() => "",
        None => return None,
    };
    Some((code.parse().ok()?, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_lines_and_strips_cr() {
        let mut b = LineBuffer::new(16);
        b.push(b"get a\r\nset b 1\nparti");
        assert_eq!(b.next_line().unwrap().as_deref(), Some("get a"));
        assert_eq!(b.next_line().unwrap().as_deref(), Some("set b 1"));
        assert_eq!(b.next_line().unwrap(), None);
        b.push(b"al\n");
        assert_eq!(b.next_line().unwrap().as_deref(), Some("partial"));
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn long_lines_and_bad_utf8_are_errors() {
        let mut b = LineBuffer::new(4);
        b.push(b"abcdefgh");
        assert_eq!(b.next_line(), Err(LineError::TooLong(4)));
        assert_eq!(b.pending(), 0);
        b.push(b"\xff\n");
        assert_eq!(b.next_line(), Err(LineError::NotUtf8));
    }

    #[test]
    fn replies_round_trip() {
        assert_eq!(&reply(200, "ok")[..], b"200 ok\n");
        assert_eq!(
            parse_reply("408 connect k expired\r\n"),
            Some((408, "connect k expired"))
        );
        assert_eq!(parse_reply("200"), Some((200, "")));
        assert_eq!(parse_reply("20x nope"), None);
        assert_eq!(parse_reply("2000 nope"), None);
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_lines(lines in proptest::collection::vec("[a-z 0-9]{0,20}", 0..10), chunk in 1usize..7) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let mut b = LineBuffer::new(64);
            let mut got = Vec::new();
            for piece in text.as_bytes().chunks(chunk) {
                b.push(piece);
                while let Some(l) = b.next_line().unwrap() {
                    got.push(l);
                }
            }
            prop_assert_eq!(got, lines);
        }

        #[test]
        fn buffer_never_exceeds_limit_plus_chunk(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = LineBuffer::new(32);
            for piece in data.chunks(16) {
                b.push(piece);
                while let Ok(Some(_)) = b.next_line() {}
                prop_assert!(b.pending() <= 32 + 16);
            }
        }
    }
}
