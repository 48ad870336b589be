//! The flood client port's requests (seed 002; SPEC.md §8): an incremental reader of the
//! bytes one client sends.
//!
//! The port is a line protocol a person can type at with telnet or nc. A request is one
//! line (ended by LF or CRLF) whose first word, in any case, names the command; an empty
//! line asks nothing. Two commands carry an update after their line:
//!
//! * `data [GROUP]` is answered at once (the machine says `354`) and the update follows
//!   as lines ended by a line holding a single `.`, as in SMTP (RFC 5321 §4.5.2): a line
//!   that begins with `.` has that dot removed, and every line adds its content and `\n`
//!   to the update (CRLF reads as LF). [`dot_stuff`] writes such a body.
//! * `binary SIZE [GROUP]` is followed by exactly `SIZE` bytes, taken as they are.
//!
//! [`ClientReader`] takes the stream in chunks of any size and gives back one
//! [`Request`] or [`ReadError`] at a time. What it holds stays bounded whatever a client
//! sends: a command line is refused once it is known to be longer than
//! [`ReaderLimits::max_line`], a `data` body that outgrows [`ReaderLimits::max_update`] is
//! read to its end and thrown away as it streams, and a `binary` size above the limit
//! ends the connection.

use bytes::Bytes;
use thiserror::Error;

use super::MAX_UPDATE_BYTES;
use crate::line::{DEFAULT_MAX_LINE, LineBuffer};

/// Longest group name, in bytes.
const MAX_GROUP_NAME: usize = 64;

/// The `help` reply, one line per command (for [`crate::line::reply_lines`]).
pub const HELP: &[&str] = &[
    "help                    this summary",
    "group [GROUP]           the sites of a group",
    "groups                  the groups of this site",
    "data [GROUP]            flood the lines that follow, up to a line holding a single .",
    "binary SIZE [GROUP]     flood the SIZE bytes after this line",
    "statistics              counters of this daemon",
    "topology [GROUP]        the topology of a group",
    "nearest                 the known daemon nearest to you",
    "gaps [GROUP]            updates seen in digests but never received",
    "quit                    close this connection",
    "terminate               stop the daemon",
];

/// How much a [`ClientReader`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderLimits {
    /// Longest command line, in bytes, not counting its LF or CRLF.
    pub max_line: usize,
    /// Largest update, in bytes, of `data` (after unstuffing) or `binary`.
    pub max_update: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_line: DEFAULT_MAX_LINE,
            max_update: MAX_UPDATE_BYTES,
        }
    }
}

/// A request that carries no update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help`
    Help,
    /// `group [GROUP]`: a group's membership; without a name, the site's only group.
    Group(Option<String>),
    /// `groups`
    Groups,
    /// `statistics`
    Statistics,
    /// `topology [GROUP]`
    Topology(Option<String>),
    /// `nearest`
    Nearest,
    /// `gaps [GROUP]` (a flotilla extension): what this site knows it missed.
    Gaps(Option<String>),
    /// `quit`: close this connection.
    Quit,
    /// `terminate`: stop the daemon.
    Terminate,
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A command without an update.
    Command(Command),
    /// `data` was read: the body follows (the machine answers 354). An [`Request::Update`]
    /// or a [`ReadError::TooLarge`] comes once the body has ended.
    DataStarted {
        /// The group named, if any.
        group: Option<String>,
    },
    /// A whole update: after `data … .` or `binary SIZE`.
    Update {
        /// The group named, if any.
        group: Option<String>,
        /// The update's bytes.
        data: Bytes,
        /// True for `binary`, false for `data`.
        binary: bool,
    },
}

/// Why what a client sent is not a request.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The first word is no command (500).
    #[error("unknown command '{0}' (try help)")]
    UnknownCommand(String),
    /// A command's arguments are wrong (501).
    #[error("{command}: {why}")]
    BadArgument {
        /// The command, in lower case.
        command: &'static str,
        /// For the person at the other end.
        why: String,
    },
    /// The command line is not UTF-8 (500).
    #[error("the request line is not UTF-8 text")]
    NotText,
    /// A command line longer than the limit (500): fatal, since no request boundary can
    /// be trusted after it.
    #[error("request line longer than {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// An update larger than the limit (552). Fatal for `binary`, whose bytes would
    /// otherwise be read as commands; not for `data`, whose body was read to its end.
    #[error("an update of {size} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// Its size: the bytes of a `data` body, or the `binary` size asked for
        /// (`u64::MAX` when that does not fit).
        size: u64,
        /// The limit.
        max: usize,
        /// Whether the connection must close.
        fatal: bool,
    },
}

impl ReadError {
    /// The reply code for it.
    pub fn code(&self) -> u16 {
        match self {
            ReadError::UnknownCommand(_) | ReadError::NotText | ReadError::LineTooLong { .. } => {
                500
            }
            ReadError::BadArgument { .. } => 501,
            ReadError::TooLarge { .. } => 552,
        }
    }

    /// Whether the machine closes the connection after replying; the reader then yields
    /// nothing more.
    pub fn is_fatal(&self) -> bool {
        match self {
            ReadError::LineTooLong { .. } => true,
            ReadError::TooLarge { fatal, .. } => *fatal,
            _ => false,
        }
    }
}

/// A `data` body being read.
#[derive(Debug)]
struct DataBody {
    group: Option<String>,
    /// The update so far; dropped once it is known to be too large.
    kept: Vec<u8>,
    /// The update's size, kept or not.
    size: u64,
    too_large: bool,
    /// The next byte begins a line, where a dot may end or be stuffed.
    line_start: bool,
}

impl DataBody {
    fn add(&mut self, bytes: &[u8], max: usize) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.too_large {
            return;
        }
        if self.size > max as u64 {
            self.too_large = true;
            self.kept = Vec::new();
            return;
        }
        // Vec's own doubling could reserve twice the limit for an update just under it.
        let need = self.kept.len() + bytes.len();
        if need > self.kept.capacity() {
            let cap = self.kept.capacity().saturating_mul(2).min(max).max(need);
            self.kept.reserve_exact(cap - self.kept.len());
        }
        self.kept.extend_from_slice(bytes);
    }

    /// Reads body bytes from `raw` as far as they go; true once the `.` line was read.
    fn read(&mut self, raw: &mut LineBuffer, max: usize) -> bool {
        loop {
            let buf = raw.peek();
            if self.line_start {
                match buf {
                    // Cannot tell yet whether this is the end, a stuffed dot or a line.
                    [] | [b'.'] | [b'.', b'\r'] => return false,
                    [b'.', b'\n', ..] => {
                        raw.consume(2);
                        return true;
                    }
                    [b'.', b'\r', b'\n', ..] => {
                        raw.consume(3);
                        return true;
                    }
                    [b'.', ..] => raw.consume(1),
                    _ => {}
                }
                self.line_start = false;
                continue;
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let end = if nl > 0 && buf[nl - 1] == b'\r' {
                        nl - 1
                    } else {
                        nl
                    };
                    self.add(&buf[..end], max);
                    self.add(b"\n", max);
                    raw.consume(nl + 1);
                    self.line_start = true;
                }
                None => {
                    // A last `\r` may be half of the CRLF that ends the line.
                    let end = buf.len() - usize::from(buf.last() == Some(&b'\r'));
                    self.add(&buf[..end], max);
                    raw.consume(end);
                    return false;
                }
            }
        }
    }

    fn finish(self, max: usize) -> Result<Request, ReadError> {
        if self.too_large {
            return Err(ReadError::TooLarge {
                size: self.size,
                max,
                fatal: false,
            });
        }
        Ok(Request::Update {
            group: self.group,
            data: Bytes::from(self.kept),
            binary: false,
        })
    }
}

#[derive(Debug)]
enum State {
    Command,
    Data(DataBody),
    Binary {
        group: Option<String>,
        body: Vec<u8>,
        remaining: usize,
    },
    /// The body of a refused `binary`, dropped so that it is not read as commands.
    Skip {
        remaining: usize,
    },
    /// After a fatal error.
    Closed,
}

/// Reads one client's stream into requests.
///
/// The machine [`push`](Self::push)es what it read and then calls [`next`](Self::next)
/// until it returns `None`. At that point the reader holds at most
/// `max_line + max_update + 2` bytes of input, whatever was sent; between a push and
/// that point it also holds the chunk pushed.
#[derive(Debug)]
pub struct ClientReader {
    limits: ReaderLimits,
    raw: LineBuffer,
    /// Leading bytes of `raw` already known to hold no newline, so that a line arriving a
    /// byte at a time is not searched again from its start each time.
    scanned: usize,
    state: State,
}

impl Default for ClientReader {
    fn default() -> Self {
        ClientReader::new(ReaderLimits::default())
    }
}

impl ClientReader {
    /// A reader with the given limits.
    pub fn new(limits: ReaderLimits) -> Self {
        ClientReader {
            limits,
            raw: LineBuffer::new(limits.max_line),
            scanned: 0,
            state: State::Command,
        }
    }

    /// Appends bytes the client sent; ignored after a fatal error.
    pub fn push(&mut self, bytes: &[u8]) {
        if !matches!(self.state, State::Closed) {
            self.raw.push(bytes);
        }
    }

    /// The next request, error, or None when more bytes are needed.
    ///
    /// `None` is "not yet", not the end: this is deliberately no `Iterator`, whose
    /// adapters would take the first `None` for the end of the stream. After a fatal
    /// error it is `None` for good.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Request, ReadError>> {
        loop {
            // Taken out so that each arm owns the state and says what comes next.
            match std::mem::replace(&mut self.state, State::Closed) {
                State::Closed => return None,
                State::Command => {
                    self.state = State::Command;
                    let line = match self.command_line()? {
                        Ok(line) => line,
                        Err(e) => {
                            if e.is_fatal() {
                                self.close();
                            }
                            return Some(Err(e));
                        }
                    };
                    if let Some(request) = self.parse(&line) {
                        return Some(request);
                    }
                }
                State::Data(mut body) => {
                    self.scanned = 0;
                    if !body.read(&mut self.raw, self.limits.max_update) {
                        self.state = State::Data(body);
                        return None;
                    }
                    self.state = State::Command;
                    return Some(body.finish(self.limits.max_update));
                }
                State::Binary {
                    group,
                    mut body,
                    mut remaining,
                } => {
                    self.scanned = 0;
                    let n = remaining.min(self.raw.pending());
                    if body.is_empty() && n > 0 {
                        body.reserve_exact(remaining);
                    }
                    body.extend_from_slice(&self.raw.peek()[..n]);
                    self.raw.consume(n);
                    remaining -= n;
                    if remaining > 0 {
                        self.state = State::Binary {
                            group,
                            body,
                            remaining,
                        };
                        return None;
                    }
                    self.state = State::Command;
                    return Some(Ok(Request::Update {
                        group,
                        data: Bytes::from(body),
                        binary: true,
                    }));
                }
                State::Skip { mut remaining } => {
                    self.scanned = 0;
                    let n = remaining.min(self.raw.pending());
                    self.raw.consume(n);
                    remaining -= n;
                    if remaining > 0 {
                        self.state = State::Skip { remaining };
                        return None;
                    }
                    self.state = State::Command;
                }
            }
        }
    }

    /// Bytes held that do not yet make a request (for an idle-timeout on half-sent input).
    pub fn pending(&self) -> usize {
        self.raw.pending()
            + match &self.state {
                State::Data(body) => body.kept.len(),
                State::Binary { body, .. } => body.len(),
                State::Command | State::Skip { .. } | State::Closed => 0,
            }
    }

    /// True inside a data or binary body.
    pub fn in_body(&self) -> bool {
        matches!(
            self.state,
            State::Data(_) | State::Binary { .. } | State::Skip { .. }
        )
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.raw = LineBuffer::new(0);
        self.scanned = 0;
    }

    /// The next command line without its terminator, once it is whole or known to be too
    /// long.
    fn command_line(&mut self) -> Option<Result<String, ReadError>> {
        let max = self.limits.max_line;
        let buf = self.raw.peek();
        // A line within the limit has its newline by here (after a `\r` at worst).
        let window = buf.len().min(max.saturating_add(2));
        let from = self.scanned.min(window);
        let Some(k) = buf[from..window].iter().position(|&b| b == b'\n') else {
            self.scanned = window;
            let too_long = buf.len() > max && (buf.len() > max + 1 || buf[max] != b'\r');
            return too_long.then_some(Err(ReadError::LineTooLong { max }));
        };
        let nl = from + k;
        let end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        if end > max {
            return Some(Err(ReadError::LineTooLong { max }));
        }
        let line = std::str::from_utf8(&buf[..end])
            .map(str::to_owned)
            .map_err(|_| ReadError::NotText);
        self.raw.consume(nl + 1);
        self.scanned = 0;
        Some(line)
    }

    /// Parses a command line; `None` when it asks nothing yet (a blank line, or a
    /// `binary` whose body follows). Sets the state a body needs.
    fn parse(&mut self, line: &str) -> Option<Result<Request, ReadError>> {
        let mut words = line.split_whitespace();
        let word = words.next()?;
        let args: Vec<&str> = words.collect();
        let command = match word.to_ascii_lowercase().as_str() {
            "help" => no_args("help", &args, Command::Help),
            "group" => optional_group("group", &args).map(Command::Group),
            "groups" => no_args("groups", &args, Command::Groups),
            "statistics" => no_args("statistics", &args, Command::Statistics),
            "topology" => optional_group("topology", &args).map(Command::Topology),
            "nearest" => no_args("nearest", &args, Command::Nearest),
            "gaps" => optional_group("gaps", &args).map(Command::Gaps),
            "quit" => no_args("quit", &args, Command::Quit),
            "terminate" => no_args("terminate", &args, Command::Terminate),
            "data" => {
                return Some(optional_group("data", &args).map(|group| {
                    self.state = State::Data(DataBody {
                        group: group.clone(),
                        kept: Vec::new(),
                        size: 0,
                        too_large: false,
                        line_start: true,
                    });
                    Request::DataStarted { group }
                }));
            }
            "binary" => return self.binary(&args),
            _ => Err(ReadError::UnknownCommand(shown(word))),
        };
        Some(command.map(Request::Command))
    }

    /// `None` when the body follows: no request until it is whole.
    fn binary(&mut self, args: &[&str]) -> Option<Result<Request, ReadError>> {
        let usage = || ReadError::BadArgument {
            command: "binary",
            why: "usage: binary SIZE [GROUP]".into(),
        };
        let Some((size, rest)) = args.split_first() else {
            return Some(Err(usage()));
        };
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Some(Err(ReadError::BadArgument {
                command: "binary",
                why: format!("size '{}' is not a number of bytes", shown(size)),
            }));
        }
        let max = self.limits.max_update;
        // Too many digits for u64 is as much too large as any other size above the limit.
        let size = size.parse::<u64>().unwrap_or(u64::MAX);
        let Some(size) = usize::try_from(size).ok().filter(|&s| s <= max) else {
            self.close();
            return Some(Err(ReadError::TooLarge {
                size,
                max,
                fatal: true,
            }));
        };
        let group = match rest {
            [] => Ok(None),
            [group] => group_name("binary", group).map(Some),
            _ => Err(usage()),
        };
        let result = match group {
            // The client sends the bytes whatever the answer: skip them, or they would
            // be read as commands.
            Err(e) => {
                if size > 0 {
                    self.state = State::Skip { remaining: size };
                }
                Err(e)
            }
            Ok(group) if size == 0 => Ok(Request::Update {
                group,
                data: Bytes::new(),
                binary: true,
            }),
            Ok(group) => {
                self.state = State::Binary {
                    group,
                    body: Vec::new(),
                    remaining: size,
                };
                return None;
            }
        };
        Some(result)
    }
}

/// What `dot_stuff` writes for `data`: the body dot-stuffed, each line ended with
/// `"\n"`, and the final `".\n"`.
///
/// Data that does not end in `"\n"` gets one: the reader then yields `data` followed by
/// `"\n"`. A `"\r"` just before a `"\n"` does not survive (CRLF reads as LF); send such
/// data with `binary`.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 3);
    if !data.is_empty() {
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        for line in body.split(|&b| b == b'\n') {
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out.extend_from_slice(b".\n");
    out
}

fn no_args(command: &'static str, args: &[&str], c: Command) -> Result<Command, ReadError> {
    if args.is_empty() {
        Ok(c)
    } else {
        Err(ReadError::BadArgument {
            command,
            why: "takes no arguments".into(),
        })
    }
}

fn optional_group(command: &'static str, args: &[&str]) -> Result<Option<String>, ReadError> {
    match args {
        [] => Ok(None),
        [group] => group_name(command, group).map(Some),
        _ => Err(ReadError::BadArgument {
            command,
            why: format!("usage: {command} [GROUP]"),
        }),
    }
}

fn group_name(command: &'static str, word: &str) -> Result<String, ReadError> {
    let ok = (1..=MAX_GROUP_NAME).contains(&word.len())
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(word.to_owned())
    } else {
        Err(ReadError::BadArgument {
            command,
            why: format!(
                "group name '{}' is not 1 to {MAX_GROUP_NAME} of A-Z a-z 0-9 _ . -",
                shown(word)
            ),
        })
    }
}

/// A client's word as it may appear in a reply line: short, without control characters.
fn shown(word: &str) -> String {
    word.chars()
        .take(32)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Out = Result<Request, ReadError>;

    fn limits(max_line: usize, max_update: usize) -> ReaderLimits {
        ReaderLimits {
            max_line,
            max_update,
        }
    }

    fn drain(r: &mut ClientReader, out: &mut Vec<Out>) {
        while let Some(x) = r.next() {
            out.push(x);
        }
    }

    /// Everything `input` yields, pushed in pieces of the given sizes (cycled).
    fn run_chunked(l: ReaderLimits, input: &[u8], sizes: &[usize]) -> Vec<Out> {
        let mut r = ClientReader::new(l);
        let mut out = Vec::new();
        let mut rest = input;
        for &n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(n.clamp(1, rest.len()));
            r.push(piece);
            drain(&mut r, &mut out);
            rest = tail;
        }
        drain(&mut r, &mut out);
        out
    }

    fn run_with(l: ReaderLimits, input: &[u8]) -> Vec<Out> {
        let whole = run_chunked(l, input, &[usize::MAX]);
        assert_eq!(run_chunked(l, input, &[1]), whole, "fed a byte at a time");
        whole
    }

    fn run(input: &[u8]) -> Vec<Out> {
        run_with(ReaderLimits::default(), input)
    }

    fn cmd(c: Command) -> Out {
        Ok(Request::Command(c))
    }

    fn started(group: Option<&str>) -> Out {
        Ok(Request::DataStarted {
            group: group.map(Into::into),
        })
    }

    fn update(group: Option<&str>, data: &[u8], binary: bool) -> Out {
        Ok(Request::Update {
            group: group.map(Into::into),
            data: Bytes::copy_from_slice(data),
            binary,
        })
    }

    fn code_of(out: &Out) -> Option<u16> {
        out.as_ref().err().map(ReadError::code)
    }

    #[test]
    fn every_command() {
        let g = |s: &str| Some(s.to_string());
        assert_eq!(
            run(
                b"help\ngroup g1\ngroup\ngroups\nstatistics\ntopology a.b-c_d\ntopology\n\
                  nearest\ngaps G\ngaps\nquit\nterminate\n"
            ),
            vec![
                cmd(Command::Help),
                cmd(Command::Group(g("g1"))),
                cmd(Command::Group(None)),
                cmd(Command::Groups),
                cmd(Command::Statistics),
                cmd(Command::Topology(g("a.b-c_d"))),
                cmd(Command::Topology(None)),
                cmd(Command::Nearest),
                cmd(Command::Gaps(g("G"))),
                cmd(Command::Gaps(None)),
                cmd(Command::Quit),
                cmd(Command::Terminate),
            ]
        );
    }

    #[test]
    fn case_crlf_blank_lines() {
        assert_eq!(
            run(b"HELP\r\n\r\n\n   \t \nGrOuP Mixed\r\n  quit  \n"),
            vec![
                cmd(Command::Help),
                cmd(Command::Group(Some("Mixed".into()))),
                cmd(Command::Quit)
            ]
        );
        // The group name keeps its case; only the command word is folded.
        assert_eq!(
            run(b"DATA Mixed\n.\n"),
            vec![started(Some("Mixed")), update(Some("Mixed"), b"", false)]
        );
    }

    #[test]
    fn wrong_commands_and_arguments_leave_the_connection_usable() {
        let out = run(b"frobnicate now\nhelp me\ngroup a b\ndata a b\nquit 1\nhelp\n");
        let codes: Vec<_> = out.iter().map(code_of).collect();
        assert_eq!(
            codes,
            [Some(500), Some(501), Some(501), Some(501), Some(501), None]
        );
        assert_eq!(out[0], Err(ReadError::UnknownCommand("frobnicate".into())));
        assert!(matches!(
            &out[1],
            Err(ReadError::BadArgument {
                command: "help",
                ..
            })
        ));
        assert!(
            out.iter()
                .all(|o| !o.as_ref().is_err_and(ReadError::is_fatal))
        );
        assert_eq!(out[5], cmd(Command::Help));
        // A refused `data` starts no body: the next line is a command.
        assert_eq!(run(b"data a/b\nhelp\n")[1], cmd(Command::Help));
    }

    #[test]
    fn bad_group_names() {
        let long = "g".repeat(65);
        let ok = "g".repeat(64);
        for bad in ["a/b", "é", "a*", "a:b", "\x01", long.as_str()] {
            for c in ["group", "topology", "gaps", "data"] {
                let out = run(format!("{c} {bad}\n").as_bytes());
                assert!(
                    matches!(&out[..], [Err(ReadError::BadArgument { command, .. })] if *command == c),
                    "{c} {bad}: {out:?}"
                );
            }
        }
        assert_eq!(
            run(format!("group {ok}\n").as_bytes()),
            vec![cmd(Command::Group(Some(ok)))]
        );
        // A reply quoting the word stays one clean line.
        let out = run(b"frob\x01\x7f\n");
        assert_eq!(out, vec![Err(ReadError::UnknownCommand("frob??".into()))]);
    }

    #[test]
    fn not_text_is_not_fatal() {
        assert_eq!(
            run(b"help \xff\xfe\nhelp\n"),
            vec![Err(ReadError::NotText), cmd(Command::Help)]
        );
        assert_eq!(ReadError::NotText.code(), 500);
    }

    #[test]
    fn data_unstuffs_dots() {
        let input = b"data g\r\n..\r\n...x\n.y\nplain\r\n\nmid\rcr\n\r\n.\r\nhelp\n";
        assert_eq!(
            run(input),
            vec![
                started(Some("g")),
                update(Some("g"), b".\n..x\ny\nplain\n\nmid\rcr\n\n", false),
                cmd(Command::Help)
            ]
        );
        assert_eq!(
            run(b"data\n.\n"),
            vec![started(None), update(None, b"", false)]
        );
        assert_eq!(
            run(b"data\r\n.\r\n"),
            vec![started(None), update(None, b"", false)]
        );
        // Only a line of a single dot ends the body; `.\r` followed by more is a line.
        assert_eq!(
            run(b"data\n. \n.\rx\n.\n"),
            vec![started(None), update(None, b" \n\rx\n", false)]
        );
    }

    #[test]
    fn data_started_comes_before_the_body() {
        let mut r = ClientReader::default();
        r.push(b"data\nbody");
        assert_eq!(r.next(), Some(started(None)));
        assert_eq!(r.next(), None);
        assert!(r.in_body());
        assert_eq!(r.pending(), 4);
        r.push(b"\n.");
        assert_eq!(r.next(), None);
        r.push(b"\n");
        assert_eq!(r.next(), Some(update(None, b"body\n", false)));
        assert!(!r.in_body());
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn data_split_at_every_boundary() {
        let input: &[u8] =
            b"data g\r\n..a\r\n.\rb\nx\ry\r\n\r\n...\n.\r\nGAPS\nbinary 3\n\n.\nhelp\n";
        let whole = run(input);
        assert_eq!(whole.len(), 5);
        for cut in 0..=input.len() {
            let mut r = ClientReader::default();
            let mut out = Vec::new();
            r.push(&input[..cut]);
            drain(&mut r, &mut out);
            r.push(&input[cut..]);
            drain(&mut r, &mut out);
            assert_eq!(out, whole, "cut at {cut}");
        }
    }

    #[test]
    fn data_at_the_limit_and_over_it() {
        let l = limits(64, 8);
        assert_eq!(
            run_with(l, b"data\n1234567\n.\n"),
            vec![started(None), update(None, b"1234567\n", false)]
        );
        let out = run_with(l, b"data\n12345678\n.\nhelp\n");
        assert_eq!(
            out,
            vec![
                started(None),
                Err(ReadError::TooLarge {
                    size: 9,
                    max: 8,
                    fatal: false
                }),
                cmd(Command::Help)
            ]
        );
        assert_eq!(out[1].as_ref().map_err(ReadError::code), Err(552));
    }

    #[test]
    fn a_huge_body_is_discarded_with_bounded_memory() {
        let l = ReaderLimits::default();
        let bound = l.max_line + l.max_update + 2;
        let mut body = Vec::new();
        let mut lines = 0;
        while body.len() < 5_000_000 {
            body.extend_from_slice(b"..a line of the body\r\n");
            lines += 1;
        }
        // One line far longer than the limit, streamed without a newline for a while.
        body.extend(std::iter::repeat_n(b'x', 5_000_000));
        body.extend_from_slice(b"\n");

        let mut r = ClientReader::new(l);
        let mut out = Vec::new();
        r.push(b"data big\n");
        for piece in body.chunks(64 * 1024) {
            r.push(piece);
            drain(&mut r, &mut out);
            assert!(r.pending() <= bound, "{} held", r.pending());
            assert!(r.in_body());
        }
        r.push(b".\r\nstatistics\n");
        drain(&mut r, &mut out);
        // Each of those lines loses its stuffed dot and its `\r`.
        let want_size = (body.len() - 2 * lines) as u64;
        assert_eq!(
            out,
            vec![
                started(Some("big")),
                Err(ReadError::TooLarge {
                    size: want_size,
                    max: MAX_UPDATE_BYTES,
                    fatal: false
                }),
                cmd(Command::Statistics)
            ]
        );

        // All at once: once drained, nothing of it is held.
        let mut r = ClientReader::new(l);
        r.push(b"data\n");
        r.push(&body);
        let mut out = Vec::new();
        drain(&mut r, &mut out);
        assert!(r.pending() <= bound);
        assert_eq!(out, vec![started(None)]);
    }

    #[test]
    fn binary_takes_exact_bytes() {
        let mut input = b"binary 9 g\n".to_vec();
        input.extend_from_slice(b"a\n.\n\xff\x00\r\nb");
        input.extend_from_slice(b"BINARY 0\nhelp\n");
        assert_eq!(
            run(&input),
            vec![
                update(Some("g"), b"a\n.\n\xff\x00\r\nb", true),
                update(None, b"", true),
                cmd(Command::Help)
            ]
        );
        let mut r = ClientReader::default();
        r.push(b"binary 4\r\nab");
        assert_eq!(r.next(), None);
        assert!(r.in_body());
        assert_eq!(r.pending(), 2);
    }

    #[test]
    fn binary_sizes() {
        let l = limits(64, 16);
        let at_max = [b"binary 16\n".as_slice(), &[b'z'; 16], b"quit\n"].concat();
        assert_eq!(
            run_with(l, &at_max),
            vec![update(None, &[b'z'; 16], true), cmd(Command::Quit)]
        );
        for (line, size) in [
            (b"binary 17\n".as_slice(), 17),
            (b"binary 0000000000000000000000000000000017 g\n", 17),
            (b"binary 99999999999999999999999999999999999\n", u64::MAX),
        ] {
            let mut r = ClientReader::new(l);
            r.push(line);
            r.push(b"help\n");
            let e = r.next().unwrap().unwrap_err();
            assert_eq!(
                e,
                ReadError::TooLarge {
                    size,
                    max: 16,
                    fatal: true
                }
            );
            assert_eq!((e.code(), e.is_fatal()), (552, true));
            assert_eq!(r.next(), None);
            r.push(b"help\n");
            assert_eq!(r.next(), None);
            assert_eq!(r.pending(), 0);
        }
        for bad in ["binary", "binary x", "binary -1", "binary 1e3", "binary +4"] {
            let out = run_with(l, format!("{bad}\nhelp\n").as_bytes());
            assert!(
                matches!(
                    &out[..],
                    [
                        Err(ReadError::BadArgument {
                            command: "binary",
                            ..
                        }),
                        Ok(_)
                    ]
                ),
                "{bad}: {out:?}"
            );
            assert_eq!(code_of(&out[0]), Some(501));
        }
    }

    #[test]
    fn a_refused_binary_skips_its_body() {
        let out = run(b"binary 10 bad/group\nterminate\nhelp\n");
        assert!(matches!(
            &out[..],
            [
                Err(ReadError::BadArgument {
                    command: "binary",
                    ..
                }),
                Ok(_)
            ]
        ));
        assert_eq!(out[1], cmd(Command::Help));
        let out = run(b"binary 3 a b\nxyzquit\n");
        assert_eq!(out[1], cmd(Command::Quit));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn line_length_limit() {
        let l = limits(8, 64);
        assert_eq!(
            run_with(l, b"help    \nhelp    \r\n"),
            vec![cmd(Command::Help), cmd(Command::Help)]
        );
        // Known too long before any newline comes.
        let mut r = ClientReader::new(l);
        r.push(b"help    ");
        assert_eq!(r.next(), None);
        r.push(b"x");
        assert_eq!(r.next(), Some(Err(ReadError::LineTooLong { max: 8 })));
        assert_eq!(r.next(), None);
        assert_eq!(r.pending(), 0);
        r.push(b"\nhelp\n");
        assert_eq!(r.next(), None);
        // A ninth byte that is `\r` may still be the end of a line of eight.
        let mut r = ClientReader::new(l);
        r.push(b"help    \r");
        assert_eq!(r.next(), None);
        r.push(b"\r");
        assert!(r.next().unwrap().unwrap_err().is_fatal());
        let out = run_with(l, b"help     \n");
        assert_eq!(out, vec![Err(ReadError::LineTooLong { max: 8 })]);
        assert_eq!(out[0].as_ref().unwrap_err().code(), 500);

        let d = ReaderLimits::default();
        let exact = format!("help{}\n", " ".repeat(DEFAULT_MAX_LINE - 4));
        assert_eq!(run_with(d, exact.as_bytes()), vec![cmd(Command::Help)]);
        let mut r = ClientReader::new(d);
        r.push(&[b'a'; DEFAULT_MAX_LINE + 1]);
        assert!(r.next().unwrap().unwrap_err().is_fatal());
    }

    #[test]
    fn dot_stuff_examples() {
        assert_eq!(dot_stuff(b""), b".\n");
        assert_eq!(dot_stuff(b"\n"), b"\n.\n");
        assert_eq!(dot_stuff(b"."), b"..\n.\n");
        assert_eq!(dot_stuff(b".a\nb"), b"..a\nb\n.\n");
        assert_eq!(dot_stuff(b"a\n\n..\n"), b"a\n\n...\n.\n");
    }

    /// What `data` delivers of `d`: a last `\n` added, the `\r` of each CRLF dropped.
    fn as_delivered(d: &[u8]) -> Vec<u8> {
        let mut d = d.to_vec();
        if !d.is_empty() && !d.ends_with(b"\n") {
            d.push(b'\n');
        }
        let mut out = Vec::new();
        for (k, &b) in d.iter().enumerate() {
            if !(b == b'\r' && d.get(k + 1) == Some(&b'\n')) {
                out.push(b);
            }
        }
        out
    }

    fn body_byte() -> impl Strategy<Value = u8> {
        prop_oneof![Just(b'.'), Just(b'\n'), Just(b'\r'), any::<u8>()]
    }

    fn input_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(body_byte(), 0..12),
            Just(b"data\n".to_vec()),
            Just(b"data g\r\n".to_vec()),
            Just(b"binary 5\n".to_vec()),
            Just(b"binary 40\n".to_vec()),
            Just(b"binary 5 no/group\n".to_vec()),
            Just(b".\n".to_vec()),
            Just(b".\r\n".to_vec()),
            Just(b"..".to_vec()),
            Just(b"help\n".to_vec()),
            Just(b"0123456789abcdef".to_vec()),
        ]
    }

    proptest! {
        #[test]
        fn data_survives_any_chunking(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    body_byte().prop_filter("no line ends", |b| *b != b'\r' && *b != b'\n'),
                    0..20,
                ),
                0..10,
            ),
            sizes in proptest::collection::vec(1usize..20, 1..20),
        ) {
            let d: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
            let input = [b"data\n".as_slice(), &dot_stuff(&d)].concat();
            prop_assert_eq!(
                run_chunked(ReaderLimits::default(), &input, &sizes),
                vec![started(None), update(None, &d, false)]
            );
        }

        #[test]
        fn dot_stuff_round_trips(d in proptest::collection::vec(body_byte(), 0..200)) {
            let input = [b"data\n".as_slice(), &dot_stuff(&d)].concat();
            prop_assert_eq!(
                run(&input),
                vec![started(None), update(None, &as_delivered(&d), false)]
            );
        }

        #[test]
        fn any_input_is_bounded_and_never_panics(
            pieces in proptest::collection::vec(input_piece(), 0..40),
            sizes in proptest::collection::vec(1usize..40, 1..10),
        ) {
            let l = limits(16, 32);
            let input = pieces.concat();
            let mut r = ClientReader::new(l);
            let mut closed = false;
            let mut rest = input.as_slice();
            for &n in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at(n.min(rest.len()));
                rest = tail;
                r.push(piece);
                while let Some(x) = r.next() {
                    prop_assert!(!closed, "a request after a fatal error");
                    match x {
                        Ok(Request::Update { data, .. }) => prop_assert!(data.len() <= 32),
                        Err(e) => closed |= e.is_fatal(),
                        Ok(_) => {}
                    }
                }
                prop_assert!(r.pending() <= 16 + 32 + 2, "{} held", r.pending());
            }
        }
    }
}
