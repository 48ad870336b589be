//! Client groups and service groups (SPEC.md §10) as users run them: `flotilla groupd`
//! processes on loopback, clients on their TCP port and Unix socket speaking the line
//! protocol, the `flotilla group …` and `flotilla service …` commands, `kill -9`, a
//! thousand clients on one daemon, and the limits past their edge.
//!
//! Every wait is bounded and polls; nothing here measures time.

// Tests drive processes: they need threads, sleeps and the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_tests::process::{Daemon, LIMIT, Running, free_addr, run, wait_until};

/// One client connection, blocking, with a read timeout.
struct Client {
    r: BufReader<Box<dyn Read + Send>>,
    w: Box<dyn Write + Send>,
    /// Notices read while waiting for replies.
    notices: Vec<String>,
}

impl Client {
    fn tcp(addr: SocketAddr) -> Client {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let w = s.try_clone().unwrap();
        Client {
            r: BufReader::new(Box::new(s)),
            w: Box::new(w),
            notices: Vec::new(),
        }
    }

    fn unix(path: &Path) -> Client {
        let s = UnixStream::connect(path).expect("connect to the socket");
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let w = s.try_clone().unwrap();
        Client {
            r: BufReader::new(Box::new(s)),
            w: Box::new(w),
            notices: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// The next line; empty at the end of the stream.
    fn line(&mut self) -> String {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(_) => l.trim_end_matches('\n').to_string(),
            Err(e) => panic!("no line within {LIMIT:?}: {e}"),
        }
    }

    /// The final line of the next reply; notices on the way are kept.
    fn reply(&mut self) -> String {
        loop {
            let l = self.line();
            if l.starts_with('6') {
                self.notices.push(l);
            } else if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return l;
            }
        }
    }

    fn request(&mut self, line: &str) -> String {
        self.send(line);
        self.reply()
    }

    /// The next notice starting with `prefix` (kept ones first); others are kept.
    fn notice(&mut self, prefix: &str) -> String {
        if let Some(k) = self.notices.iter().position(|n| n.starts_with(prefix)) {
            return self.notices.remove(k);
        }
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "the daemon closed the connection");
            if l.starts_with(prefix) {
                return l;
            }
            self.notices.push(l);
        }
    }
}

/// Waits until the daemon at `addr` answers `members` with `n` members.
fn wait_members(addr: SocketAddr, n: usize) {
    wait_until(&format!("{addr} to see {n} daemons"), LIMIT, || {
        let mut c = Client::tcp(addr);
        let r = c.request("members");
        (r == format!("250 {n} members")).then_some(())
    });
}

/// Three daemons joined through the first; `extra_a` for the first only, `extra` for all.
fn three(extra_a: &[&str], extra: &[&str]) -> (Vec<Daemon>, Vec<SocketAddr>) {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let mut first: Vec<String> = extra_a.iter().map(|s| s.to_string()).collect();
    first.extend(extra.iter().map(|s| s.to_string()));
    let a = Daemon::groupd("a", addrs[0], &first);
    let mut join = vec!["--join".to_string(), addrs[0].to_string()];
    join.extend(extra.iter().map(|s| s.to_string()));
    let b = Daemon::groupd("b", addrs[1], &join);
    let c = Daemon::groupd("c", addrs[2], &join);
    for &x in &addrs {
        wait_members(x, 3);
    }
    (vec![a, b, c], addrs)
}

fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "flotilla-groups-{}-{name}.sock",
        std::process::id()
    ))
}

/// (sender, view, seq, text) of a `600` line.
fn message(l: &str) -> (String, String, String, String) {
    let mut w = l.splitn(6, ' ');
    let _code = w.next();
    let _group = w.next();
    let sender = w.next().unwrap().to_string();
    let view = w.next().unwrap().to_string();
    let seq = w.next().unwrap().to_string();
    (sender, view, seq, w.next().unwrap_or("").to_string())
}

#[test]
fn three_daemons_deliver_one_order_everywhere_and_clients_hear_of_a_crash() {
    let sock = socket_path("order");
    let extra = ["--socket", sock.to_str().unwrap()];
    let (mut daemons, addrs) = three(&extra, &[]);
    // Two members on each daemon; one of a's through the Unix socket.
    let mut members: Vec<Client> = Vec::new();
    for (i, &addr) in addrs.iter().enumerate() {
        for k in 0..2 {
            let mut c = if i == 0 && k == 1 {
                Client::unix(&sock)
            } else {
                Client::tcp(addr)
            };
            assert_eq!(c.request(&format!("name m{i}{k}")), format!("250 m{i}{k}"));
            assert_eq!(c.request("join chat"), "250 joined chat");
            members.push(c);
        }
    }
    // Every daemon's senders at once, requests pipelined.
    const EACH: usize = 40;
    let senders: Vec<std::thread::JoinHandle<()>> = addrs
        .iter()
        .enumerate()
        .map(|(i, &addr)| {
            std::thread::spawn(move || {
                let mut s = Client::tcp(addr);
                for k in 0..EACH {
                    s.send(&format!("send chat from {i} number {k}"));
                }
                for _ in 0..EACH {
                    assert_eq!(s.reply(), "250 sent");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let mut seen: Vec<Vec<(String, String, String, String)>> = Vec::new();
    for c in &mut members {
        let got: Vec<_> = (0..3 * EACH)
            .map(|_| message(&c.notice("600 chat ")))
            .collect();
        seen.push(got);
    }
    for s in &seen[1..] {
        assert_eq!(s, &seen[0], "every member delivers one order");
    }
    // FIFO per sender, and nothing twice.
    for i in 0..3 {
        let mine: Vec<&String> = seen[0]
            .iter()
            .filter(|m| m.3.starts_with(&format!("from {i} ")))
            .map(|m| &m.3)
            .collect();
        let want: Vec<String> = (0..EACH).map(|k| format!("from {i} number {k}")).collect();
        assert_eq!(mine.iter().map(|s| s.as_str()).collect::<Vec<_>>(), want);
    }
    let places: BTreeSet<(String, String)> =
        seen[0].iter().map(|m| (m.1.clone(), m.2.clone())).collect();
    assert_eq!(places.len(), 3 * EACH);

    // kill -9 c: the members on a and b are told, with the network as the cause.
    daemons[2].kill();
    for c in members.iter_mut().take(4) {
        let n = loop {
            let n = c.notice("610 chat ");
            if n.contains(" network ") {
                break n;
            }
        };
        assert!(n.contains(" network 4 "), "{n}");
        assert!(!n.contains("@c"), "{n}");
    }
    // The group carries on among the survivors.
    let mut s = Client::tcp(addrs[1]);
    assert_eq!(s.request("send chat after the crash"), "250 sent");
    for c in members.iter_mut().take(4) {
        let m = c.notice("600 chat ");
        assert!(m.ends_with(" after the crash"), "{m}");
    }
    // Stopped on purpose, a daemon removes its socket file.
    assert!(sock.exists());
    let term = std::process::Command::new("kill")
        .args(["-TERM", &daemons[0].pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(daemons[0].wait_exit(LIMIT).is_some_and(|s| s.success()));
    assert!(
        !sock.exists(),
        "the socket file is removed when the daemon stops: {}",
        daemons[0].stderr()
    );
}

#[test]
fn the_commands_watch_send_bind_resolve_and_release() {
    let (daemons, addrs) = three(&[], &["--ports", "7100-7101"]);
    let at = |i: usize| addrs[i].to_string();
    let watch = Running::spawn(&["group", "watch", "news", "--daemon", &at(0)]);
    let json = Running::spawn(&["group", "watch", "news", "--daemon", &at(2), "--json"]);
    // Both joined once the members list has two.
    wait_until("two watchers", LIMIT, || {
        let mut c = Client::tcp(addrs[1]);
        let r = c.request("members news");
        (r == "250 2 members").then_some(())
    });
    run(
        &["group", "send", "news", "hello, world", "--daemon", &at(1)],
        Duration::ZERO,
    )
    .expect_success("group send");
    run(
        &[
            "group",
            "send",
            "--fifo",
            "news",
            "fifo hello",
            "--daemon",
            &at(1),
        ],
        Duration::ZERO,
    )
    .expect_success("group send --fifo");
    let members = run(
        &["group", "members", "news", "--daemon", &at(1)],
        Duration::ZERO,
    )
    .expect_success("group members");
    assert!(
        members.stdout.contains("@a\n") && members.stdout.contains("@c\n"),
        "{members:?}"
    );

    // A service bound on b resolves from a; a second agent on b is refused.
    let bind = Running::spawn(&["service", "bind", "web", "--daemon", &at(1)]);
    let port = wait_until("the bind to print its port", LIMIT, || {
        let mut c = Client::tcp(addrs[0]);
        let r = c.request("resolve b web");
        r.strip_prefix("250 ").map(str::to_string)
    });
    assert!(
        port == "127.0.0.1:7100" || port == "127.0.0.1:7101",
        "{port}"
    );
    let r = run(
        &["service", "resolve", "b:web", "--daemon", &at(2)],
        Duration::ZERO,
    )
    .expect_success("service resolve");
    assert_eq!(r.stdout.trim(), port);
    let second = run(
        &["service", "bind", "web", "--daemon", &at(1)],
        Duration::ZERO,
    );
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(
        second
            .stderr
            .contains("web is already bound on b (one agent per node per service)"),
        "{second:?}"
    );
    // Another node's agent of web shares its port; another service gets the other one;
    // a third service finds none left.
    let bind_c = Running::spawn(&["service", "bind", "web", "--daemon", &at(2)]);
    let db = Running::spawn(&["service", "bind", "db", "--daemon", &at(0)]);
    wait_until("db bound", LIMIT, || {
        let mut c = Client::tcp(addrs[1]);
        let r = c.request("resolve a:db");
        r.starts_with("250 ").then_some(())
    });
    let none = run(
        &["service", "bind", "mail", "--daemon", &at(0)],
        Duration::ZERO,
    );
    assert_eq!(none.status.code(), Some(1));
    assert!(
        none.stderr
            .contains("no free cluster port in 7100-7101: mail not bound"),
        "{none:?}"
    );
    let list = run(&["service", "list", "--daemon", &at(2)], Duration::ZERO)
        .expect_success("service list");
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with("web ") && l.ends_with(" b,c")),
        "{list:?}"
    );
    // A release from another shell ends the bind command, which exits 0.
    run(
        &["service", "release", "web", "--daemon", &at(1)],
        Duration::ZERO,
    )
    .expect_success("service release");
    let bound = bind.finish(LIMIT);
    assert!(bound.status.success(), "{bound:?}");
    let first = bound.stdout.lines().next().unwrap();
    assert_eq!(format!("127.0.0.1:{first}"), port);
    assert!(
        bound.stdout.contains("start web "),
        "barrier notices shown: {bound:?}"
    );
    let gone = run(
        &["service", "resolve", "b", "web", "--daemon", &at(0)],
        Duration::ZERO,
    );
    assert_eq!(gone.status.code(), Some(1));
    assert!(gone.stderr.contains("web is not bound on b"), "{gone:?}");
    drop(bind_c);
    drop(db);

    // The watchers saw the message and the changes, plain and as JSON.
    drop(daemons);
    let w = watch.finish(LIMIT);
    assert!(w.stdout.contains(" hello, world\n"), "{w:?}");
    assert!(
        w.stdout
            .lines()
            .any(|l| l.starts_with("message news ") && l.contains("@b "))
    );
    let j = json.finish(LIMIT);
    assert!(j.stdout.contains("\"type\":\"message\""), "{j:?}");
    assert!(j.stdout.contains("\"payload\":\"hello, world\""), "{j:?}");
    assert!(
        w.stdout.lines().any(|l| l.starts_with("fifo-message news ")
            && l.contains("@b ")
            && l.ends_with(" fifo hello")),
        "{w:?}"
    );
    assert!(
        j.stdout.lines().any(
            |l| l.contains("\"delivery\":\"fifo\"") && l.contains("\"payload\":\"fifo hello\"")
        ),
        "{j:?}"
    );
}

#[test]
fn a_thousand_clients_on_one_daemon_each_get_the_message() {
    let addr = free_addr();
    let _d = Daemon::groupd("solo", addr, &[] as &[&str]);
    const N: usize = 1000;
    let mut clients: Vec<Client> = (0..N).map(|_| Client::tcp(addr)).collect();
    for c in &mut clients {
        c.send("join crowd");
    }
    for c in &mut clients {
        assert_eq!(c.reply(), "250 joined crowd");
    }
    let mut s = Client::tcp(addr);
    assert_eq!(s.request("members crowd"), format!("250 {N} members"));
    assert_eq!(s.request("send crowd to all"), "250 sent");
    for c in &mut clients {
        let m = c.notice("600 crowd ");
        assert!(m.ends_with(" to all"), "{m}");
    }
    // Each heard the whole list once (at its own join), then each later join as one
    // short line, not the whole list again.
    for c in &clients {
        let whole: Vec<&String> = c.notices.iter().filter(|n| n.starts_with("610 ")).collect();
        assert_eq!(whole.len(), 1);
        let at_join: usize = whole[0].split(' ').nth(5).unwrap().parse().unwrap();
        let deltas = c.notices.iter().filter(|n| n.starts_with("611 ")).count();
        assert_eq!(at_join + deltas, N);
    }
}

#[test]
fn limits_are_refused_clearly_at_and_past_their_edge() {
    let addr = free_addr();
    let _d = Daemon::groupd("edge", addr, &["--client-buffer", "1048576"]);
    let mut c = Client::tcp(addr);
    assert_eq!(c.request("join g"), "250 joined g");
    // A message of 65,536 bytes goes; one byte more is refused, the connection kept.
    let edge = "x".repeat(65_536);
    assert_eq!(c.request(&format!("send g {edge}")), "250 sent");
    let m = c.notice("600 g ");
    assert!(m.ends_with(&edge));
    let r = c.request(&format!("send g {edge}y"));
    assert!(r.starts_with("552 message of 65537 bytes"), "{r}");
    // The same edge in FIFO mode.
    assert_eq!(c.request(&format!("fsend g {edge}")), "250 sent");
    let m = c.notice("601 g ");
    assert!(m.ends_with(&edge));
    let r = c.request(&format!("fsend g {edge}y"));
    assert!(r.starts_with("552 message of 65537 bytes"), "{r}");
    // Escaped, the largest message still fits a line.
    let binary = "\\xff".repeat(65_536);
    assert_eq!(c.request(&format!("send g {binary}")), "250 sent");
    let m = c.notice("600 g ");
    assert!(m.ends_with(&binary));
    // A line past the limit closes the connection with a reason.
    let mut long = Client::tcp(addr);
    long.send(&"z".repeat(300_000));
    let r = long.line();
    assert!(r.starts_with("500 line longer than"), "{r}");
    assert_eq!(long.line(), "", "closed");
    // Groups per connection.
    let mut many = Client::tcp(addr);
    for k in 0..256 {
        many.send(&format!("join g{k}"));
    }
    for _ in 0..256 {
        assert!(many.reply().starts_with("250 joined"));
    }
    let r = many.request("join one-more");
    assert!(r.starts_with("452 at most 256 groups"), "{r}");
    // A client that stops reading is closed once a mebibyte waits for it, after a
    // notice; the others carry on.
    let mut slow = Client::tcp(addr);
    assert_eq!(slow.request("join flood"), "250 joined flood");
    let mut fast = Client::tcp(addr);
    assert_eq!(fast.request("join flood"), "250 joined flood");
    const FLOOD: usize = 200;
    let sender = std::thread::spawn(move || {
        let mut s = Client::tcp(addr);
        let big = "b".repeat(60_000);
        for _ in 0..FLOOD {
            s.send(&format!("send flood {big}"));
        }
        s.send("send flood end");
        for _ in 0..=FLOOD {
            assert_eq!(s.reply(), "250 sent");
        }
    });
    let mut n = 0;
    while !fast.notice("600 flood ").ends_with(" end") {
        n += 1;
    }
    assert_eq!(n, FLOOD, "the client that keeps up gets every message");
    sender.join().unwrap();
    // Only now does the slow one read: what was in flight, the notice, the end.
    let mut text = Vec::new();
    let _ = slow.r.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("\n699 closing: this client fell too far behind"),
        "{} bytes read, tail {:?}",
        text.len(),
        &text[text.len().saturating_sub(200)..]
    );
    assert!(
        text.len() < 60_000 * FLOOD / 2,
        "closed long before the end"
    );
    assert_eq!(fast.request("members flood"), "250 1 members");
}

impl Client {
    /// Bytes as they are (a `bsend` line and its body).
    fn raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// The next `602`/`603` notice of a client that asked for `binary`, with the bytes
    /// after it; the lines before it are kept as notices.
    fn binary_message(&mut self) -> (String, Vec<u8>) {
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "the daemon closed the connection");
            if l.starts_with("602 ") || l.starts_with("603 ") {
                let size: usize = l.rsplit(' ').next().unwrap().parse().unwrap();
                let mut body = vec![0; size];
                self.r.read_exact(&mut body).expect("the message's bytes");
                return (l, body);
            }
            self.notices.push(l);
        }
    }
}

/// The binary client path through real daemons (SPEC.md §10.6): `bsend` of every byte
/// value up to 65,536 bytes reaches a binary member on another daemon as it is and a
/// text member escaped; one byte more, or a SIZE that is not a number, is refused and
/// the connection closed (its bytes cannot be read as requests), and the daemon serves
/// on.
#[test]
fn binary_messages_pass_at_their_edge_and_are_refused_past_it() {
    let (_d, addrs) = three(&[], &[]);
    let mut bin = Client::tcp(addrs[1]);
    assert!(bin.request("binary").starts_with("250 binary"));
    assert_eq!(bin.request("join g"), "250 joined g");
    let mut text = Client::tcp(addrs[2]);
    assert_eq!(text.request("join g"), "250 joined g");
    let mut sender = Client::tcp(addrs[0]);
    let edge: Vec<u8> = (0..65_536u32).map(|k| (k % 256) as u8).collect();
    for (verb, code) in [("bsend", "602"), ("bfsend", "603")] {
        let mut req = format!("{verb} g {}\n", edge.len()).into_bytes();
        req.extend_from_slice(&edge);
        sender.raw(&req);
        assert_eq!(sender.reply(), "250 sent");
        let (line, body) = bin.binary_message();
        assert!(line.starts_with(&format!("{code} g ")), "{line}");
        assert!(line.ends_with(" 65536"), "{line}");
        assert_eq!(body, edge, "{verb}: the bytes as they were sent");
        let escaped = text.notice(if code == "602" { "600 g " } else { "601 g " });
        let (_, _, _, t) = message(&escaped);
        assert_eq!(flotilla_core::line::unescape(&t).unwrap(), edge);
    }
    for bad in ["bsend g 65537", "bsend g 12x", "bfsend g"] {
        let mut c = Client::tcp(addrs[0]);
        c.raw(format!("{bad}\nsend g not a request\n").as_bytes());
        let r = c.line();
        assert!(r.starts_with("552 ") || r.starts_with("501 "), "{bad}: {r}");
        assert_eq!(c.line(), "", "{bad}: closed");
    }
    // Nothing of the refused ones went out, and the daemon still serves.
    sender.raw(b"bsend g 3\nend");
    assert_eq!(sender.reply(), "250 sent");
    assert_eq!(bin.binary_message().1, b"end");
}

#[test]
fn the_membership_budget_is_refused_past_its_edge_and_freed_by_a_crash() {
    let (mut daemons, addrs) = three(&[], &["--max-memberships", "4"]);
    let mut on_c: Vec<Client> = (0..2).map(|_| Client::tcp(addrs[2])).collect();
    for c in &mut on_c {
        assert_eq!(c.request("join g"), "250 joined g");
    }
    let mut on_a: Vec<Client> = (0..2).map(|_| Client::tcp(addrs[0])).collect();
    assert_eq!(on_a[0].request("join g"), "250 joined g");
    assert_eq!(on_a[1].request("bind web"), "250 7000", "at the edge");
    let mut late = Client::tcp(addrs[1]);
    wait_until("b to hold the four", LIMIT, || {
        let members = late.request("members g") == "250 3 members";
        let services = late.request("services") == "250 1 services";
        (members && services).then_some(())
    });
    let r = late.request("join g");
    assert!(r.starts_with("452 the cluster holds 4 memberships"), "{r}");
    let r = late.request("bind db");
    assert!(r.starts_with("452 "), "{r}");
    // c's two members go with c: room again.
    daemons[2].kill();
    let r = wait_until("room after the crash", LIMIT, || {
        let r = late.request("join g");
        r.starts_with("250").then_some(r)
    });
    assert_eq!(r, "250 joined g");
}

#[test]
fn the_sequencer_killed_mid_stream_loses_and_reorders_nothing() {
    let (mut daemons, addrs) = three(&[], &[]);
    // a has the least name: it orders. Members on b and c; the sender on b.
    let mut members: Vec<Client> = [addrs[1], addrs[2]]
        .iter()
        .map(|a| Client::tcp(*a))
        .collect();
    for m in &mut members {
        assert_eq!(m.request("join stream"), "250 joined stream");
    }
    const N: usize = 2000;
    let at = addrs[1];
    let sender = std::thread::spawn(move || {
        let mut s = Client::tcp(at);
        for k in 0..N {
            s.send(&format!("send stream m{k}"));
            if k % 20 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for _ in 0..N {
            assert_eq!(s.reply(), "250 sent");
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    daemons[0].kill();
    sender.join().unwrap();
    let got: Vec<Vec<String>> = members
        .iter_mut()
        .map(|m| {
            (0..N)
                .map(|_| message(&m.notice("600 stream ")).3)
                .collect()
        })
        .collect();
    assert_eq!(got[0], got[1], "one order at both survivors");
    let want: Vec<String> = (0..N).map(|k| format!("m{k}")).collect();
    assert_eq!(got[0], want, "every message once, in the sender's order");
}

/// The cheaper FIFO mode with real processes: senders on b and c pipeline `fsend`s
/// while a (a member daemon, and the agreed order's sequencer) is killed with `kill -9`
/// in the middle: the members on b and c get every message of both senders once, each
/// sender's in the order sent, as `601` lines numbered upwards within a view.
#[test]
fn fifo_senders_keep_their_order_through_a_kill() {
    let (mut daemons, addrs) = three(&[], &[]);
    let mut members: Vec<Client> = addrs.iter().map(|a| Client::tcp(*a)).collect();
    for m in &mut members {
        assert_eq!(m.request("join fifo"), "250 joined fifo");
    }
    const N: usize = 1000;
    let senders: Vec<_> = [(1, "b"), (2, "c")]
        .into_iter()
        .map(|(i, d)| {
            let at = addrs[i];
            std::thread::spawn(move || {
                let mut s = Client::tcp(at);
                assert_eq!(s.request(&format!("name s{d}")), format!("250 s{d}"));
                for k in 0..N {
                    s.send(&format!("fsend fifo {d}{k}"));
                    if k % 20 == 0 {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                for _ in 0..N {
                    assert_eq!(s.reply(), "250 sent");
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    daemons[0].kill();
    for s in senders {
        s.join().unwrap();
    }
    for m in &mut members[1..] {
        let mut per: std::collections::BTreeMap<String, Vec<(String, u64, String)>> =
            Default::default();
        for _ in 0..2 * N {
            let (sender, view, seq, text) = message(&m.notice("601 fifo "));
            per.entry(sender)
                .or_default()
                .push((view, seq.parse().unwrap(), text));
        }
        for d in ["b", "c"] {
            let got = &per[&format!("s{d}@{d}")];
            let texts: Vec<&str> = got.iter().map(|(_, _, t)| t.as_str()).collect();
            let want: Vec<String> = (0..N).map(|k| format!("{d}{k}")).collect();
            assert_eq!(texts, want, "{d}'s messages: each once, in order");
            // Numbered 1, 2, 3 … within each view.
            for w in got.windows(2) {
                if w[0].0 == w[1].0 {
                    assert_eq!(w[1].1, w[0].1 + 1, "{w:?}");
                }
            }
        }
    }
}

/// The FIFO sender's own daemon killed with `kill -9` mid-stream: the members on the two
/// survivors, which pass to the next view together, end with the same messages of it —
/// the same prefix of what was sent, in order, none twice (virtual synchrony over FIFO
/// messages; the origin's copies that reached only one survivor are given to the other
/// in the flush).
#[test]
fn a_fifo_origin_killed_mid_stream_leaves_the_survivors_with_one_prefix() {
    let (mut daemons, addrs) = three(&[], &[]);
    let mut members: Vec<Client> = [addrs[0], addrs[2]]
        .iter()
        .map(|a| Client::tcp(*a))
        .collect();
    for m in &mut members {
        assert_eq!(m.request("join cut"), "250 joined cut");
    }
    // A member on b too, so that b's end changes the group and the survivors' members
    // hear of it (`610 … network`).
    let mut on_b = Client::tcp(addrs[1]);
    assert_eq!(on_b.request("join cut"), "250 joined cut");
    const N: usize = 50_000;
    let at = addrs[1];
    // The sender writes as fast as it can; its daemon dies under it.
    let sender = std::thread::spawn(move || {
        let Client { mut r, mut w, .. } = Client::tcp(at);
        // Its replies are read as they come: a client that reads none is, rightly, read
        // from no more once its replies back up.
        let replies = std::thread::spawn(move || {
            let mut l = String::new();
            while r.read_line(&mut l).is_ok_and(|n| n > 0) {
                l.clear();
            }
        });
        for k in 0..N {
            if w.write_all(format!("fsend cut m{k}\n").as_bytes()).is_err() {
                break;
            }
        }
        drop(w);
        let _ = replies.join();
    });
    // Wait until a good part of it arrived at a (past the origin's window, so its
    // acknowledgements have been going round), then kill b.
    let mut early = Vec::new();
    while early.len() < 3000 {
        early.push(message(&members[0].notice("601 cut ")).3);
    }
    daemons[1].kill();
    let _ = sender.join();
    // Each survivor hears that b is gone; what it got of b before that is its prefix.
    let got: Vec<Vec<String>> = members
        .iter_mut()
        .map(|m| {
            let mut texts = Vec::new();
            loop {
                let l = m.line();
                assert!(!l.is_empty(), "the daemon closed the connection");
                if l.starts_with("601 cut ") {
                    texts.push(message(&l).3);
                } else if l.starts_with("610 cut ") && l.contains(" network ") {
                    break;
                }
            }
            texts
        })
        .collect();
    let mut a = early;
    a.extend(got[0].iter().cloned());
    assert_eq!(a, got[1], "one prefix at both survivors");
    let want: Vec<String> = (0..a.len()).map(|k| format!("m{k}")).collect();
    assert_eq!(a, want, "in order, none missing or twice");
    assert!(a.len() < N, "b was killed before it sent everything");
}

/// The groups view the daemon is in, from `members` of a group nobody is in.
fn view_of(c: &mut Client) -> String {
    c.send("members nosuch");
    let mut view = String::new();
    loop {
        let l = c.line();
        if l.starts_with('6') {
            c.notices.push(l);
            continue;
        }
        if let Some(r) = l.strip_prefix("250-group nosuch view ") {
            view = r.split(' ').next().unwrap_or("").to_string();
        }
        if l.len() < 4 || l.as_bytes()[3] != b'-' {
            return view;
        }
    }
}

/// `kill -STOP` or `-CONT` on a daemon (a partition of one, then its heal).
fn signal(d: &Daemon, sig: &str) {
    let s = std::process::Command::new("kill")
        .args([sig, &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(s.success(), "kill {sig}");
}

/// Service barriers and ports after a heal, with real daemons (finding 6 of issue 16):
/// `done` takes only the id of the barrier that waits; two services handed the only
/// port on the two sides of a partition (b stopped, then resumed) leave the younger
/// without one (`624 … 0`), and it gets the port as soon as the older one's agent
/// releases it, announced with `624` and resolvable, with no view change in between.
#[test]
fn done_takes_only_the_current_barrier_and_a_freed_port_goes_to_a_service_without_one() {
    let addrs: Vec<SocketAddr> = (0..2).map(|_| free_addr()).collect();
    let ports = ["--ports", "7100-7100"];
    let a = Daemon::groupd("a", addrs[0], &ports);
    let join = ["--join", &addrs[0].to_string(), "--ports", "7100-7100"];
    let b = Daemon::groupd("b", addrs[1], &join);
    for &x in &addrs {
        wait_members(x, 2);
    }
    // b's agent of `old` takes the only port; its barrier begins.
    let mut old = Client::tcp(addrs[1]);
    assert_eq!(old.request("bind old"), "250 7100");
    let start = old.notice("621 old start ");
    let event = start.split(' ').nth(3).unwrap().to_string();
    assert!(start.ends_with(" 7100 1 b"), "{start}");
    // Bogus, stale and future ids are refused; the current one is taken.
    let (v, n) = event.rsplit_once(':').unwrap();
    let future = format!("{v}:{}", n.parse::<u64>().unwrap() + 7);
    for bad in ["bogus", "0.a:1", future.as_str()] {
        assert_eq!(
            old.request(&format!("done old {bad}")),
            format!("450 {bad} is not the barrier of old that waits ({event}): not done")
        );
    }
    assert_eq!(
        old.request(&format!("done old {event}")),
        format!("250 done old {event}")
    );
    assert_eq!(
        old.notice("622 old finish "),
        format!("622 old finish {event}")
    );
    assert_eq!(
        old.request("done old"),
        "450 no recovery barrier of old is waiting"
    );

    // b stops: a goes on alone and hands the port to `young`.
    signal(&b, "-STOP");
    wait_members(addrs[0], 1);
    let mut young = Client::tcp(addrs[0]);
    assert_eq!(young.request("bind young"), "250 7100");
    assert!(young.notice("621 young start ").ends_with(" 7100 1 a"));
    // b comes back: the sides merge, old (handed out first) keeps 7100, young has none.
    signal(&b, "-CONT");
    for &x in &addrs {
        wait_members(x, 2);
    }
    assert_eq!(young.notice("624 young "), "624 young moved 0");
    let start = young.notice("621 young start ");
    assert!(start.ends_with(" 0 1 a"), "{start}");
    let mut probe = Client::tcp(addrs[1]);
    let r = wait_until("the heal to settle at b", LIMIT, || {
        let r = probe.request("resolve a young");
        r.starts_with("451 young has no port: none").then_some(r)
    });
    assert!(r.contains("7100-7100"), "{r}");
    assert_eq!(
        probe.request("resolve b old"),
        format!("250 {}:7100", addrs[1].ip())
    );
    assert!(
        !old.notices.iter().any(|n| n.starts_with("624")),
        "old kept its port: {:?}",
        old.notices
    );
    let view = view_of(&mut young);
    // old's agent releases: young gets 7100 at once, in the same view.
    assert_eq!(old.request("release old"), "250 released old");
    assert_eq!(young.notice("624 young "), "624 young moved 7100");
    let r = wait_until("young to resolve", LIMIT, || {
        let r = probe.request("resolve a young");
        r.starts_with("250 ").then_some(r)
    });
    assert_eq!(r, format!("250 {}:7100", addrs[0].ip()));
    assert_eq!(view_of(&mut young), view, "no view change meanwhile");
    drop(a);
}
