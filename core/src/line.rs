//! Line framing for client ports a person can use with telnet (SPEC.md §1.5).
//!
//! Requests are lines ending in `\n` (a `\r` before it is dropped); replies are lines that
//! start with a three-digit code: `1xx` progress (more follows), `2xx` success, `4xx` the
//! request was wrong, `5xx` the server could not do it. A reply of several lines writes
//! `CODE-text` on every line but the last, which is `CODE text` (as SMTP does). `6xx` lines
//! are notices the server sends unasked (a group message, a membership change), between
//! or among replies. A line longer than the limit is an error, reported once; the buffer
//! never grows past the limit.
//!
//! [`ReplyReader`] is the client side of the convention, shared by every client library.

use std::collections::VecDeque;

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
    /// Bytes at the front of `buf` already searched for a newline without finding one: a
    /// long line arriving in many reads is searched once, not once per read.
    searched: usize,
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
            searched: 0,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete line without its terminator, `Ok(None)` if none is complete yet.
    /// After an error the buffer is cleared: the caller is expected to close the stream.
    pub fn next_line(&mut self) -> Result<Option<String>, LineError> {
        let from = self.searched.min(self.buf.len());
        let Some(nl) = find_byte(&self.buf[from..], b'\n') else {
            self.searched = self.buf.len();
            if self.buf.len() > self.max {
                self.clear();
                return Err(LineError::TooLong(self.max));
            }
            return Ok(None);
        };
        let nl = from + nl;
        self.searched = 0;
        if nl > self.max {
            self.clear();
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
                self.clear();
                Err(LineError::NotUtf8)
            }
        }
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.searched = 0;
    }

    /// Bytes buffered but not yet returned.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The bytes buffered, for a caller that frames part of the stream itself (a body of
    /// a given size, or one ended by a marker line) and then [`consume`](Self::consume)s.
    pub fn peek(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the first `n` buffered bytes (all of them if fewer are held) as they are,
    /// without copying: a body of a size the stream announced.
    pub fn take(&mut self, n: usize) -> Bytes {
        let n = n.min(self.buf.len());
        self.searched = self.searched.saturating_sub(n);
        self.buf.split_to(n).freeze()
    }

    /// Drops the first `n` buffered bytes (all of them if fewer are held).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.advance(n);
        self.searched = self.searched.saturating_sub(n);
    }
}

/// Writes bytes as text that fits on one line (SPEC.md §10.6): printable UTF-8 as it
/// is; a backslash as `\\`; newline, carriage return and tab as `\n`, `\r`, `\t`; every
/// other byte (control bytes, bytes that are not UTF-8) as `\xHH`. [`unescape`] undoes it.
pub fn escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len());
    let mut rest = data;
    while !rest.is_empty() {
        // Runs of printable ASCII other than a backslash (most text) go as they are, at
        // once; what is left is taken a character (or a bad byte) at a time.
        let plain = plain_run(rest);
        let (run, tail) = rest.split_at(plain);
        out.push_str(core::str::from_utf8(run).unwrap_or_default());
        rest = tail;
        let Some(&b) = rest.first() else {
            break;
        };
        let len = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        let ch = rest
            .get(..len)
            .and_then(|c| core::str::from_utf8(c).ok())
            .and_then(|c| c.chars().next());
        match ch {
            Some('\\') => out.push_str("\\\\"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some(c) if !c.is_control() => {
                out.push(c);
                rest = &rest[len..];
                continue;
            }
            // A control character (each of its bytes) or a byte that does not start a
            // character: a byte at a time, so a bad sequence is escaped byte by byte.
            Some(c) => {
                for b in &rest[..c.len_utf8()] {
                    push_hex(&mut out, *b);
                }
                rest = &rest[c.len_utf8()..];
                continue;
            }
            None => push_hex(&mut out, b),
        }
        rest = &rest[1..];
    }
    out
}

// Eight bytes at a time (SWAR): client lines carry messages of up to 64 KiB, and a
// byte-at-a-time scan for a newline or a byte to escape was a large part of a daemon's
// time at 10 KiB messages.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Some byte of `w` is below `n` (for `n` ≤ 0x80, and bytes of `w` below 0x80).
fn has_less(w: u64, n: u8) -> bool {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0
}

/// Some byte of `w` is zero.
fn has_zero(w: u64) -> bool {
    w.wrapping_sub(ONES) & !w & HIGHS != 0
}

fn word(c: &[u8]) -> u64 {
    u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
}

/// Where `byte` first occurs in `data`.
fn find_byte(data: &[u8], byte: u8) -> Option<usize> {
    let pattern = ONES * u64::from(byte);
    let mut at = 0;
    for c in data.chunks_exact(8) {
        if has_zero(word(c) ^ pattern) {
            break;
        }
        at += 8;
    }
    data[at..].iter().position(|&b| b == byte).map(|k| at + k)
}

/// How many bytes at the start of `data` are printable ASCII other than a backslash (what
/// [`escape`] copies as it is).
fn plain_run(data: &[u8]) -> usize {
    let mut at = 0;
    for c in data.chunks_exact(8) {
        let w = word(c);
        if w & HIGHS != 0
            || has_less(w, 0x20)
            || has_zero(w ^ (ONES * 0x7f))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
        {
            break;
        }
        at += 8;
    }
    let tail = data[at..]
        .iter()
        .position(|&b| !(0x20..0x7f).contains(&b) || b == b'\\')
        .unwrap_or(data.len() - at);
    at + tail
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
}

/// Why escaped text could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad escape at byte {at}: use \\\\, \\n, \\r, \\t or \\xHH")]
pub struct EscapeError {
    /// Where the bad escape starts.
    pub at: usize,
}

/// Reads text written by [`escape`] back into bytes. A backslash followed by anything but
/// `\`, `n`, `r`, `t` or `x` and two hex digits is an error (so a typo is not silently
/// taken as data).
pub fn unescape(text: &str) -> Result<Vec<u8>, EscapeError> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            // Up to the next backslash, at once.
            let run = find_byte(&b[i..], b'\\').unwrap_or(b.len() - i);
            out.extend_from_slice(&b[i..i + run]);
            i += run;
            continue;
        }
        let bad = EscapeError { at: i };
        match b.get(i + 1) {
            Some(b'\\') => out.push(b'\\'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'x') => {
                let hex = b.get(i + 2..i + 4).ok_or(bad.clone())?;
                let hex = core::str::from_utf8(hex).map_err(|_| bad.clone())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad)?);
                i += 4;
                continue;
            }
            _ => return Err(bad),
        }
        i += 2;
    }
    Ok(out)
}

/// A reply line: `code text\n`.
pub fn reply(code: u16, text: &str) -> Bytes {
    debug_assert!((100..700).contains(&code), "reply code {code} out of range");
    debug_assert!(!text.contains('\n'), "reply text must be one line");
    Bytes::from(format!("{code} {text}\n"))
}

/// The lines of a multi-line reply: `CODE-text` for all but the last, `CODE text` last.
pub fn reply_lines<'a>(code: u16, lines: impl IntoIterator<Item = &'a str>) -> Bytes {
    let lines: Vec<&str> = lines.into_iter().collect();
    let mut out = String::new();
    for (k, l) in lines.iter().enumerate() {
        debug_assert!(!l.contains('\n'), "reply text must be one line");
        let sep = if k + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{sep}{l}\n"));
    }
    if lines.is_empty() {
        out.push_str(&format!("{code} \n"));
    }
    Bytes::from(out)
}

/// Splits a final reply line into its code and text; `None` if it does not start with a
/// three-digit code followed by a space or the end of the line.
pub fn parse_reply(line: &str) -> Option<(u16, &str)> {
    match parse_reply_line(line)? {
        (code, false, text) => Some((code, text)),
        (_, true, _) => None,
    }
}

/// Splits any reply line into `(code, more, text)`: `more` is true for a `CODE-text`
/// line that another line of the same reply follows.
pub fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let line = line.trim_end_matches(['\r', '\n']);
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = &line[3..];
    let (more, text) = match rest.as_bytes().first() {
        Some(b' ') => (false, &rest[1..]),
        Some(b'-') => (true, &rest[1..]),
        None => (false, ""),
        Some(_) => return None,
    };
    Some((code.parse().ok()?, more, text))
}

/// Why a request did not succeed, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error code.
    #[error("{text} ({code})")]
    Refused {
        /// Reply code.
        code: u16,
        /// The server's reason.
        text: String,
    },
    /// The server sent something that is not a reply line.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An argument would not fit on a request line.
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
}

/// One typed request: the line to send and how to read its final `2xx` text. Client
/// libraries send [`Call::line`], feed replies to a [`ReplyReader`], and hand the final
/// text to [`Call::finish`]; everything but the I/O is here, shared by every runtime.
pub struct Call<T> {
    line: String,
    finish: fn(&str) -> Result<T, ClientError>,
}

impl<T> core::fmt::Debug for Call<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Call").field("line", &self.line).finish()
    }
}

/// The final reply's text, as it came.
pub fn text(t: &str) -> Result<String, ClientError> {
    Ok(t.to_string())
}

impl<T> Call<T> {
    /// A request of `line` (newline included) whose final text `finish` reads.
    pub fn new(line: String, finish: fn(&str) -> Result<T, ClientError>) -> Self {
        debug_assert!(line.ends_with('\n'), "a request line ends with its newline");
        Call { line, finish }
    }

    /// The request line, newline included.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Reads the final reply's text into the typed result.
    pub fn finish(&self, text: &str) -> Result<T, ClientError> {
        (self.finish)(text)
    }
}

impl Call<String> {
    /// A raw request line (without its newline); the result is the final reply's text.
    pub fn raw(line: &str) -> Result<Self, ClientError> {
        if line.contains(['\n', '\r']) {
            return Err(ClientError::Invalid("request line"));
        }
        Ok(Call::new(format!("{line}\n"), text))
    }
}

/// A line the server sent unasked (`6xx`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Its code, 600 to 699.
    pub code: u16,
    /// Its text.
    pub text: String,
    /// For a code the reader was told carries bytes ([`ReplyReader::sized_notices`]):
    /// the bytes that followed the line, as they came.
    pub body: Option<Bytes>,
}

impl Notice {
    /// A notice of one line.
    pub fn line(code: u16, text: impl Into<String>) -> Self {
        Notice {
            code,
            text: text.into(),
            body: None,
        }
    }
}

/// One step of a reply, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A `1xx` progress line.
    Progress(String),
    /// A `6xx` notice, which belongs to no request.
    Notice(Notice),
    /// The final reply: `Ok(text)` for `2xx` (the lines of a multi-line reply joined
    /// with `\n`), the refusal otherwise.
    Done(Result<String, ClientError>),
}

/// Collects a server's lines into reply steps.
#[derive(Debug)]
pub struct ReplyReader {
    lines: LineBuffer,
    /// Lines of a multi-line reply read so far, with their code.
    partial: Option<(u16, Vec<String>)>,
    /// Most lines one multi-line reply may have.
    max_reply_lines: usize,
    queued: VecDeque<Step>,
    /// Notice codes whose line ends with a size, followed by that many bytes.
    sized: Vec<u16>,
    /// Such a notice read, waiting for its bytes: code, text, size.
    body: Option<(u16, String, usize)>,
}

/// The largest body a sized notice may announce.
pub const MAX_NOTICE_BODY: usize = 1024 * 1024;

impl Default for ReplyReader {
    fn default() -> Self {
        ReplyReader {
            lines: LineBuffer::new(1024 * 1024),
            partial: None,
            max_reply_lines: 100_000,
            queued: VecDeque::new(),
            sized: Vec::new(),
            body: None,
        }
    }
}

impl ReplyReader {
    /// Appends bytes from the server.
    pub fn push(&mut self, data: &[u8]) {
        self.lines.push(data);
    }

    /// Notices of these codes end with a size (their last word) and are followed by
    /// that many bytes, taken as they are into [`Notice::body`] (the group daemon's
    /// `602`/`603`, SPEC.md §10.6). A size that is not a number, or past
    /// [`MAX_NOTICE_BODY`], is a protocol error.
    pub fn sized_notices(&mut self, codes: &[u16]) {
        self.sized = codes.to_vec();
    }

    /// The next step, if a whole one is in.
    pub fn next_step(&mut self) -> Option<Step> {
        if let Some(s) = self.queued.pop_front() {
            return Some(s);
        }
        if let Some((_, _, size)) = &self.body {
            if self.lines.pending() < *size {
                return None;
            }
            let (code, text, size) = self.body.take()?;
            let body = self.lines.take(size);
            return Some(Step::Notice(Notice {
                code,
                text,
                body: Some(body),
            }));
        }
        loop {
            let line = match self.lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => return None,
                Err(e) => return Some(Step::Done(Err(ClientError::Protocol(e.to_string())))),
            };
            let Some((code, more, text)) = parse_reply_line(&line) else {
                self.partial = None;
                return Some(Step::Done(Err(ClientError::Protocol(format!(
                    "not a reply line: {}",
                    line.chars().take(80).collect::<String>()
                )))));
            };
            if self.sized.contains(&code) {
                let size = text.rsplit(' ').next().and_then(|n| {
                    let n: usize = n.parse().ok()?;
                    (n <= MAX_NOTICE_BODY).then_some(n)
                });
                let Some(size) = size else {
                    return Some(Step::Done(Err(ClientError::Protocol(format!(
                        "notice {code} without a size of at most {MAX_NOTICE_BODY} bytes: {}",
                        line.chars().take(80).collect::<String>()
                    )))));
                };
                self.body = Some((code, text.to_string(), size));
                return self.next_step();
            }
            if (600..700).contains(&code) {
                return Some(Step::Notice(Notice::line(code, text)));
            }
            if (100..200).contains(&code) {
                return Some(Step::Progress(text.to_string()));
            }
            let mut lines = match self.partial.take() {
                Some((c, lines)) if c == code => lines,
                Some((c, _)) => {
                    return Some(Step::Done(Err(ClientError::Protocol(format!(
                        "a reply begun with code {c} went on with code {code}"
                    )))));
                }
                None => Vec::new(),
            };
            lines.push(text.to_string());
            if more {
                if lines.len() >= self.max_reply_lines {
                    return Some(Step::Done(Err(ClientError::Protocol(format!(
                        "a reply of more than {} lines",
                        self.max_reply_lines
                    )))));
                }
                self.partial = Some((code, lines));
                continue;
            }
            let text = lines.join("\n");
            return Some(Step::Done(if (200..300).contains(&code) {
                Ok(text)
            } else {
                Err(ClientError::Refused { code, text })
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escape_keeps_text_readable_and_unescape_refuses_typos() {
        assert_eq!(escape(b"hello world"), "hello world");
        assert_eq!(escape("h\u{e9}llo".as_bytes()), "h\u{e9}llo");
        assert_eq!(escape(b"a\\b\nc\x00\xff"), "a\\\\b\\nc\\x00\\xff");
        assert_eq!(
            unescape("a\\\\b\\nc\\x00\\xff").unwrap(),
            b"a\\b\nc\x00\xff"
        );
        assert_eq!(unescape("a\\q"), Err(EscapeError { at: 1 }));
        assert_eq!(unescape("tail\\"), Err(EscapeError { at: 4 }));
        assert_eq!(unescape("\\x4"), Err(EscapeError { at: 0 }));
        assert_eq!(unescape("\\xzz"), Err(EscapeError { at: 0 }));
    }

    /// `escape` as it was first written, a character at a time: the fast one must write
    /// exactly the same text (the wire format does not change).
    fn escape_by_chars(data: &[u8]) -> String {
        let mut out = String::new();
        for chunk in data.utf8_chunks() {
            for ch in chunk.valid().chars() {
                match ch {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => {
                        let mut buf = [0u8; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            out.push_str(&format!("\\x{b:02x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        out
    }

    /// The eight-bytes-at-a-time scans find what byte-at-a-time ones find.
    fn scans_agree(data: &[u8], byte: u8) -> Result<(), TestCaseError> {
        prop_assert_eq!(find_byte(data, byte), data.iter().position(|&b| b == byte));
        let plain = data
            .iter()
            .position(|&b| !(0x20..0x7f).contains(&b) || b == b'\\')
            .unwrap_or(data.len());
        prop_assert_eq!(plain_run(data), plain);
        Ok(())
    }

    /// Bytes that are mostly text, with the characters and bad sequences escaping cares
    /// about mixed in.
    fn texty() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            "[ -~]{0,12}".prop_map(String::into_bytes),
            "\\PC{0,4}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..4),
            Just(vec![0xe2, 0x82]),
            Just("\u{85}\u{9f}\u{7f}\\\n\r\t".as_bytes().to_vec()),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn escape_writes_what_the_character_at_a_time_escape_wrote(data in texty()) {
            prop_assert_eq!(escape(&data), escape_by_chars(&data));
        }

        #[test]
        fn the_scans_agree_with_byte_at_a_time_ones(data in proptest::collection::vec(any::<u8>(), 0..80), byte in any::<u8>()) {
            scans_agree(&data, byte)?;
        }

        #[test]
        fn the_scans_agree_on_text(data in texty(), byte in prop_oneof![Just(b'\n'), Just(b'\\'), any::<u8>()]) {
            scans_agree(&data, byte)?;
        }

        #[test]
        fn escape_matches_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(escape(&data), escape_by_chars(&data));
        }

        #[test]
        fn a_line_fed_in_pieces_comes_out_whole(line in "[ -~]{0,300}", cuts in proptest::collection::vec(0usize..300, 0..8)) {
            let mut b = LineBuffer::new(400);
            let whole = format!("{line}\nnext\n");
            let mut at = 0;
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut got = Vec::new();
            for c in cuts.into_iter().chain([whole.len()]) {
                let c = c.min(whole.len()).max(at);
                b.push(&whole.as_bytes()[at..c]);
                at = c;
                while let Some(l) = b.next_line().unwrap() {
                    got.push(l);
                }
            }
            prop_assert_eq!(got, vec![line, "next".to_string()]);
        }
        #[test]
        fn escape_round_trips_and_stays_on_one_line(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let text = escape(&data);
            prop_assert!(!text.contains(['\n', '\r']));
            prop_assert!(!text.chars().any(char::is_control));
            prop_assert_eq!(unescape(&text).unwrap(), data);
        }
    }

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
    fn raw_access_then_lines() {
        let mut b = LineBuffer::new(16);
        b.push(b"abc\xffdef\n");
        assert_eq!(b.peek(), b"abc\xffdef\n");
        b.consume(4);
        assert_eq!(b.next_line().unwrap().as_deref(), Some("def"));
        b.push(b"xy");
        b.consume(10);
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
    fn multi_line_replies_and_notices() {
        assert_eq!(
            &reply_lines(250, ["a", "b", "c"])[..],
            b"250-a\n250-b\n250 c\n"
        );
        let mut r = ReplyReader::default();
        r.push(b"100 wait\n250-a\n601 hello\n250-b\n250 c\n500-x\n");
        assert_eq!(r.next_step(), Some(Step::Progress("wait".into())));
        assert_eq!(
            r.next_step(),
            Some(Step::Notice(Notice::line(601, "hello")))
        );
        assert_eq!(r.next_step(), Some(Step::Done(Ok("a\nb\nc".into()))));
        assert_eq!(r.next_step(), None);
        r.push(b"501 y\n");
        assert!(matches!(
            r.next_step(),
            Some(Step::Done(Err(ClientError::Protocol(_))))
        ));
        assert_eq!(parse_reply("250-a"), None);
        assert_eq!(parse_reply_line("250-a"), Some((250, true, "a")));
    }

    /// A sized notice's bytes are taken as they are, however they arrive, and the
    /// reading goes on with the line after them; a bad size is a protocol error.
    #[test]
    fn sized_notices_carry_their_bytes() {
        let stream = b"602 g a@n 1.n 1 5\nab\n\x00c601 x\n250 ok\n602 g a@n 1.n 2 0\n";
        for chunk in [1, 3, stream.len()] {
            let mut r = ReplyReader::default();
            r.sized_notices(&[602, 603]);
            let mut steps = Vec::new();
            for piece in stream.chunks(chunk) {
                r.push(piece);
                while let Some(s) = r.next_step() {
                    steps.push(s);
                }
            }
            let sized = |text: &str, body: &[u8]| {
                Step::Notice(Notice {
                    code: 602,
                    text: text.into(),
                    body: Some(Bytes::copy_from_slice(body)),
                })
            };
            assert_eq!(
                steps,
                vec![
                    sized("g a@n 1.n 1 5", b"ab\n\x00c"),
                    Step::Notice(Notice::line(601, "x")),
                    Step::Done(Ok("ok".into())),
                    sized("g a@n 1.n 2 0", b""),
                ],
                "chunks of {chunk}"
            );
        }
        for bad in ["602 g a@n 1.n 1 x\n", "603 g a@n 1.n 1 1048577\n"] {
            let mut r = ReplyReader::default();
            r.sized_notices(&[602, 603]);
            r.push(bad.as_bytes());
            assert!(
                matches!(
                    r.next_step(),
                    Some(Step::Done(Err(ClientError::Protocol(_))))
                ),
                "{bad}"
            );
        }
        // A reader not told of the codes reads them as lines.
        let mut r = ReplyReader::default();
        r.push(b"602 g a@n 1.n 1 5\n");
        assert_eq!(
            r.next_step(),
            Some(Step::Notice(Notice::line(602, "g a@n 1.n 1 5")))
        );
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
