//! One request line of the group daemon's client protocol (SPEC.md §10.6), read into a
//! typed request or a refusal with its reply code. Pure: the fuzz target
//! `groups_client` feeds it arbitrary lines.

use crate::line::unescape;
use crate::membership::config_file::valid_name;

use super::super::msg::{MAX_PAYLOAD, valid_group};

/// A request a client may make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `name NAME`: this connection's client name.
    Name(String),
    /// `join GROUP`.
    Join(String),
    /// `leave GROUP`.
    Leave(String),
    /// `send GROUP TEXT` (agreed order) or `fsend GROUP TEXT` (FIFO per sender): the
    /// text unescaped.
    Send {
        /// The group.
        group: String,
        /// The bytes.
        payload: Vec<u8>,
        /// Sent in the cheaper FIFO mode (`fsend`).
        fifo: bool,
    },
    /// `bsend GROUP SIZE` (agreed order) or `bfsend GROUP SIZE` (FIFO): exactly SIZE
    /// bytes follow the line, taken as they are (no escaping, not scanned).
    SendSized {
        /// The group.
        group: String,
        /// The message's size, at most [`MAX_PAYLOAD`].
        size: usize,
        /// Sent in the FIFO mode (`bfsend`).
        fifo: bool,
    },
    /// `binary`: from now on messages reach this connection as `602`/`603` notices
    /// followed by their bytes as they are, instead of escaped `600`/`601` lines.
    Binary,
    /// `members GROUP`.
    Members(String),
    /// `groups`.
    Groups,
    /// `bind SERVICE`.
    Bind(String),
    /// `release SERVICE`.
    Release(String),
    /// `resolve NODE SERVICE` or `resolve NODE:SERVICE`.
    Resolve {
        /// The node (a daemon's name).
        node: String,
        /// The service.
        service: String,
    },
    /// `services`.
    Services,
    /// `done SERVICE [EVENT]`.
    Done {
        /// The service.
        service: String,
        /// The barrier; the current one if not given.
        event: Option<String>,
    },
    /// `members`, `stats`, `reload` or `leave` without an argument: the daemon's own
    /// requests, answered by membership.
    Daemon,
    /// `help`.
    Help,
    /// `quit`.
    Quit,
}

/// A request refused before it did anything: the reply code and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 500 (unknown command) or 501 (bad arguments), or 552 (a message too large).
    pub code: u16,
    /// Why.
    pub text: String,
    /// The connection must close after the reply: a `bsend` line without a size it
    /// takes leaves bytes of unknown length in the stream, and nothing after them could
    /// be read as requests.
    pub close: bool,
    /// Bytes that follow the line and belong to it (a refused `bsend` of a good size):
    /// the reader discards them before the next request.
    pub skip: usize,
}

fn refuse(code: u16, text: impl Into<String>) -> Refusal {
    Refusal {
        code,
        text: text.into(),
        close: false,
        skip: 0,
    }
}

/// `bsend GROUP SIZE` / `bfsend GROUP SIZE`. Without a size it takes, the refusal
/// closes the connection; with one, a bad group is refused after its bytes are skipped.
fn sized_send(cmd: &str, args: &[&str]) -> Result<Request, Refusal> {
    let fatal = |mut r: Refusal| {
        r.close = true;
        r
    };
    let [g, size] = args else {
        return Err(fatal(refuse(501, format!("usage: {cmd} GROUP SIZE"))));
    };
    let size: usize = match size.parse() {
        Ok(n) if size.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => {
            return Err(fatal(refuse(
                501,
                format!(
                    "{cmd}: SIZE is a number of bytes, not '{}'",
                    size.escape_debug()
                ),
            )));
        }
    };
    if size > MAX_PAYLOAD {
        return Err(fatal(refuse(
            552,
            format!("message of {size} bytes: at most {MAX_PAYLOAD}"),
        )));
    }
    let group = group(Some(g), cmd).map_err(|mut r| {
        r.skip = size;
        r
    })?;
    Ok(Request::SendSized {
        group,
        size,
        fifo: cmd == "bfsend",
    })
}

/// Groups whose name starts with this are the daemons' own (service groups).
const RESERVED: char = '#';

fn group(arg: Option<&str>, cmd: &str) -> Result<String, Refusal> {
    let Some(g) = arg else {
        return Err(refuse(501, format!("usage: {cmd} GROUP")));
    };
    if !valid_group(g) {
        return Err(refuse(
            501,
            "a group name is 1 to 64 printable characters without spaces",
        ));
    }
    if g.starts_with(RESERVED) {
        return Err(refuse(
            501,
            format!("group names starting with '{RESERVED}' are the daemons' own"),
        ));
    }
    Ok(g.to_string())
}

fn label(arg: Option<&str>, usage: &str, what: &str) -> Result<String, Refusal> {
    let Some(s) = arg else {
        return Err(refuse(501, format!("usage: {usage}")));
    };
    if !valid_name(s) {
        return Err(refuse(
            501,
            format!("a {what} is 1 to 64 letters, digits, '.', '_' or '-'"),
        ));
    }
    Ok(s.to_string())
}

/// Reads one line. `Ok(None)` for a blank line (ignored, as telnet users send them).
pub fn parse_request(line: &str) -> Result<Option<Request>, Refusal> {
    let trimmed = line.trim_start_matches(' ');
    let (cmd, rest) = match trimmed.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (trimmed, ""),
    };
    if cmd.trim().is_empty() {
        return Ok(None);
    }
    let cmd = cmd.to_ascii_lowercase();
    if cmd == "send" || cmd == "fsend" {
        // The text is everything after one space: spaces inside it are data.
        let (g, text) = match rest.split_once(' ') {
            Some((g, t)) => (g, t),
            None => (rest, ""),
        };
        let group = group((!g.is_empty()).then_some(g), &cmd)?;
        let payload = unescape(text).map_err(|e| refuse(501, e.to_string()))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(refuse(
                552,
                format!("message of {} bytes: at most {MAX_PAYLOAD}", payload.len()),
            ));
        }
        let fifo = cmd == "fsend";
        return Ok(Some(Request::Send {
            group,
            payload,
            fifo,
        }));
    }
    let args: Vec<&str> = rest.split_whitespace().collect();
    let most = |n: usize| -> Result<(), Refusal> {
        if args.len() > n {
            Err(refuse(501, format!("too many arguments to {cmd}")))
        } else {
            Ok(())
        }
    };
    let first = args.first().copied();
    let req = match cmd.as_str() {
        "bsend" | "bfsend" => sized_send(&cmd, &args)?,
        "binary" => {
            most(0)?;
            Request::Binary
        }
        "name" => {
            most(1)?;
            Request::Name(label(first, "name NAME", "client name")?)
        }
        "join" => {
            most(1)?;
            Request::Join(group(first, "join")?)
        }
        "leave" if args.is_empty() => Request::Daemon,
        "leave" => {
            most(1)?;
            Request::Leave(group(first, "leave")?)
        }
        "members" if args.is_empty() => Request::Daemon,
        "members" => {
            most(1)?;
            Request::Members(group(first, "members")?)
        }
        "groups" => {
            most(0)?;
            Request::Groups
        }
        "bind" => {
            most(1)?;
            Request::Bind(label(first, "bind SERVICE", "service name")?)
        }
        "release" => {
            most(1)?;
            Request::Release(label(first, "release SERVICE", "service name")?)
        }
        "resolve" => {
            most(2)?;
            let usage = "resolve NODE SERVICE (or NODE:SERVICE)";
            let (node, service) = match args.as_slice() {
                [one] => match one.split_once(':') {
                    Some((n, s)) => (Some(n), Some(s)),
                    None => (Some(*one), None),
                },
                [n, s] => (Some(*n), Some(*s)),
                _ => (None, None),
            };
            Request::Resolve {
                node: label(node, usage, "node name")?,
                service: label(service, usage, "service name")?,
            }
        }
        "services" => {
            most(0)?;
            Request::Services
        }
        "done" => {
            most(2)?;
            let service = label(first, "done SERVICE [EVENT]", "service name")?;
            let event = args.get(1).map(|e| e.to_string());
            if event.as_ref().is_some_and(|e| e.len() > 200) {
                return Err(refuse(501, "no barrier has so long a name"));
            }
            Request::Done { service, event }
        }
        "stats" | "reload" => {
            most(0)?;
            Request::Daemon
        }
        "help" => Request::Help,
        "quit" => {
            most(0)?;
            Request::Quit
        }
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(refuse(500, format!("unknown command '{shown}' (try help)")));
        }
    };
    Ok(Some(req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(line: &str) -> Request {
        parse_request(line).unwrap().unwrap()
    }

    fn code(line: &str) -> u16 {
        parse_request(line).unwrap_err().code
    }

    #[test]
    fn binary_requests_read_and_say_what_follows_a_refusal() {
        assert_eq!(
            ok("bsend g 10"),
            Request::SendSized {
                group: "g".into(),
                size: 10,
                fifo: false
            }
        );
        assert_eq!(
            ok("BFSEND g 65536"),
            Request::SendSized {
                group: "g".into(),
                size: 65_536,
                fifo: true
            }
        );
        assert_eq!(ok("binary"), Request::Binary);
        assert_eq!(code("binary now"), 501);
        let r = |l: &str| parse_request(l).unwrap_err();
        // No size it takes: the bytes that follow are of unknown length, so it closes.
        for (line, code) in [
            ("bsend g 65537", 552),
            ("bsend g 1x", 501),
            ("bsend g +1", 501),
            ("bsend g", 501),
            ("bsend g 1 2", 501),
        ] {
            let e = r(line);
            assert_eq!((e.code, e.close, e.skip), (code, true, 0), "{line}");
        }
        // A good size and a bad group: its bytes are skipped, the connection stays.
        let e = r("bsend #svc:x 3");
        assert_eq!((e.code, e.close, e.skip), (501, false, 3));
        assert_eq!(r("send #svc:x a").skip, 0);
    }

    #[test]
    fn every_request_reads() {
        assert_eq!(ok("join g"), Request::Join("g".into()));
        assert_eq!(ok("JOIN g"), Request::Join("g".into()));
        assert_eq!(ok("leave g"), Request::Leave("g".into()));
        assert_eq!(ok("leave"), Request::Daemon);
        assert_eq!(ok("members"), Request::Daemon);
        assert_eq!(ok("members g"), Request::Members("g".into()));
        assert_eq!(
            ok("send g  two  spaces\\n"),
            Request::Send {
                group: "g".into(),
                payload: b" two  spaces\n".to_vec(),
                fifo: false,
            }
        );
        assert_eq!(
            ok("FSEND g a b"),
            Request::Send {
                group: "g".into(),
                payload: b"a b".to_vec(),
                fifo: true,
            }
        );
        assert_eq!(
            ok("send g"),
            Request::Send {
                group: "g".into(),
                payload: vec![],
                fifo: false,
            }
        );
        assert_eq!(ok("bind web"), Request::Bind("web".into()));
        assert_eq!(
            ok("resolve n1:web"),
            Request::Resolve {
                node: "n1".into(),
                service: "web".into()
            }
        );
        assert_eq!(ok("resolve n1 web"), ok("resolve n1:web"));
        assert_eq!(
            ok("done web 3.a:7"),
            Request::Done {
                service: "web".into(),
                event: Some("3.a:7".into())
            }
        );
        assert_eq!(parse_request("   ").unwrap(), None);
        assert_eq!(ok("stats"), Request::Daemon);
    }

    #[test]
    fn bad_requests_get_their_codes() {
        assert_eq!(code("frobnicate"), 500);
        assert_eq!(code("join"), 501);
        assert_eq!(code("join #svc:web"), 501);
        assert_eq!(code("join a b"), 501);
        assert_eq!(code("send"), 501);
        assert_eq!(code("send g bad\\q"), 501);
        assert_eq!(code("fsend"), 501);
        assert_eq!(code("fsend #svc:web x"), 501);
        assert_eq!(code("bind we/b"), 501);
        assert_eq!(code("resolve n1"), 501);
        assert_eq!(code("name a@b"), 501);
        assert_eq!(code("stats now"), 501);
        let big = format!("send g {}", "x".repeat(MAX_PAYLOAD + 1));
        assert_eq!(code(&big), 552);
        let edge = format!("send g {}", "x".repeat(MAX_PAYLOAD));
        assert!(parse_request(&edge).is_ok());
        assert_eq!(code(&format!("f{big}")), 552);
        assert!(parse_request(&format!("f{edge}")).is_ok());
    }

    proptest! {
        #[test]
        fn no_line_panics(line in "\\PC{0,80}") {
            let _ = parse_request(&line);
        }

        #[test]
        fn a_sent_payload_comes_back(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let line = format!("send g {}", crate::line::escape(&payload));
            let fifo = format!("f{line}");
            prop_assert_eq!(ok(&fifo), Request::Send { group: "g".into(), payload: payload.clone(), fifo: true });
            prop_assert_eq!(ok(&line), Request::Send { group: "g".into(), payload, fifo: false });
        }
    }
}
