//! `groups-loopback`: client groups through running `flotilla groupd` daemons, measured
//! from the client protocol (SPEC.md §10.6). Used by `benches/groups-vs-cpg.sh`; results
//! in BENCHMARKS.md. Two modes, each printing one line of `key=value` fields:
//!
//! `tput`: agreed-order throughput and latency. One receiving client on each daemon
//! named joins a fresh group; one more client, on the first daemon, sends N messages of
//! SIZE bytes as fast as the protocol allows: `send` lines pipelined, at most WINDOW of
//! them unanswered and at most CREDIT taken but not yet delivered at the sender's own
//! daemon (past its `MAX_PENDING` = 1,024 the daemon holds a sender's requests until
//! there is room; a `451 busy`, which older daemons sent, is sent again after a
//! millisecond). `--rate R` paces the sends instead, for the
//! latency of a lighter load. Each payload carries its number and the time of its first
//! attempt, so every `600` notice gives a latency. msgs/s runs from the first send until
//! the last message reached every receiver. It checks the order too: every receiver must
//! see all N messages once each, in the same sequence of (view, seq) — else it says
//! `ok=0` and exits non-zero. `--fifo` sends with `fsend` (the cheaper FIFO mode) and
//! reads `601` notices instead; with one sender its order is the same check.
//! `--binary` takes the binary client path (SPEC.md §10.6): `bsend GROUP SIZE` (or
//! `bfsend`) and the bytes as they are; receivers ask for `binary` and read `602`/`603`
//! lines and the bytes after them.
//!
//! `idle`: what an idle client costs a daemon. Opens CLIENTS connections to the daemon
//! named; each joins a group of its own (`--request join`) or asks `groups` once
//! (`--request groups`), and then stays silent. The daemon's resident memory (VmRSS of
//! `--pid`; of `--peer-pids` too, the other daemons) is read before and after; then, with
//! every client still connected, the daemon must answer `members`, `groups`, and carry
//! 100 messages from a sender to a member.
//!
//! ```text
//! groups-loopback tput --messages 20000 --size 100 [--window 256] [--credit 1000]
//!                      [--rate R] [--fifo] [--binary] [--timeout 120] SENDER-DAEMON OTHER-DAEMON...
//! groups-loopback idle --clients 10000 --pid PID [--peer-pids PID,PID]
//!                      [--request join|groups] [--timeout 120] DAEMON
//! ```

// A load generator: threads, sockets and the clock are what it is for.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn usage() -> String {
    "usage: groups-loopback tput --messages N --size BYTES [--window W] [--credit C] \
     [--rate MSGS/S] [--fifo] [--binary] [--timeout SECS] SENDER-DAEMON OTHER-DAEMON...\n       \
     groups-loopback idle --clients N --pid PID [--peer-pids PID,PID] \
     [--request join|groups] [--timeout SECS] DAEMON"
        .into()
}

/// Nanoseconds since the first call: one clock for every thread of this process.
fn now_ns() -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    let t0 = *T0.get_or_init(Instant::now);
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(s)
}

/// Connects from a source address of 127.0.0.0/8 picked by `k`, for a daemon on
/// loopback: ten thousand connections from one source address to one port make
/// `connect` slow (the kernel looks long for a free ephemeral port among the open ones
/// and those in TIME_WAIT), which would be the client's cost, not the daemon's.
fn connect_from(
    rt: &tokio::runtime::Runtime,
    k: usize,
    addr: SocketAddr,
) -> Result<TcpStream, String> {
    if !addr.ip().is_loopback() || !addr.is_ipv4() {
        return connect(addr);
    }
    let ip = std::net::Ipv4Addr::new(127, 77, (k / 200 % 250) as u8, (k % 200 + 2) as u8);
    let s = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(ip.into(), 0))?;
            tokio::time::timeout(Duration::from_secs(5), sock.connect(addr))
                .await
                .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "connect timed out"))?
        })
        .and_then(|s| s.into_std())
        .map_err(|e| format!("{addr} from {ip}: {e}"))?;
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(s)
}

/// Reads one line (without its newline) into `line`, waiting past read timeouts until
/// `deadline`. A line cut by a timeout is continued, not lost.
fn read_line<R: BufRead>(r: &mut R, line: &mut Vec<u8>, deadline: Instant) -> Result<(), String> {
    line.clear();
    loop {
        match r.read_until(b'\n', line) {
            Ok(0) => return Err("the daemon closed the connection".into()),
            Ok(_) if line.ends_with(b"\n") => {
                line.pop();
                return Ok(());
            }
            Ok(_) => return Err("the daemon closed the connection mid-line".into()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() >= deadline {
                    return Err("timed out".into());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Reads lines until a reply's final line (`CODE text`, not a `6xx` notice) and returns
/// it; notices and the lines of a multi-line reply before it are counted in `skipped`.
fn final_reply<R: BufRead>(
    r: &mut R,
    line: &mut Vec<u8>,
    deadline: Instant,
    skipped: &mut usize,
) -> Result<String, String> {
    loop {
        read_line(r, line, deadline)?;
        let notice = line.first() == Some(&b'6');
        if !notice && line.get(3) == Some(&b' ') {
            return Ok(String::from_utf8_lossy(line).into_owned());
        }
        *skipped += 1;
    }
}

// ---------------------------------------------------------------- tput

struct Tput {
    messages: usize,
    size: usize,
    window: usize,
    credit: usize,
    /// Messages per second; 0: as fast as the protocol allows.
    rate: f64,
    /// `fsend` and `601` (FIFO mode) instead of `send` and `600`.
    fifo: bool,
    /// The binary client path (SPEC.md §10.6): `bsend GROUP SIZE` and the bytes, and
    /// receivers that asked for `binary` read `602`/`603` and the bytes that follow.
    binary: bool,
    timeout: Duration,
    addrs: Vec<SocketAddr>,
}

/// What one receiver saw.
#[derive(Default)]
struct Seen {
    /// Views in the order first seen.
    views: Vec<String>,
    /// (index in `views`, seq, message number), in the order delivered.
    order: Vec<(usize, u64, u32)>,
    /// Latency of each delivery (first attempt to receipt).
    lat_ns: Vec<u64>,
    last_ns: u64,
    /// Messages seen more than once, and notices of another size.
    duplicates: usize,
    malformed: usize,
}

/// The payload: `NUMBER.TIME.` then `x` up to `size` bytes (nothing needs escaping).
fn payload(id: u32, t_ns: u64, size: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let _ = write!(out, "{id:08}.{t_ns:016}.");
    let have = out.len() - start;
    out.resize(start + size.max(have), b'x');
}

/// Reads a `600 GROUP SENDER VIEW SEQ TEXT` notice (or a `601`, the same shape), or the
/// binary form `602 GROUP SENDER VIEW SEQ SIZE` with `body` the bytes that followed:
/// (view, seq, number, first attempt).
fn parse_600<'a>(
    line: &'a [u8],
    body: Option<&'a [u8]>,
    size: usize,
) -> Option<(&'a [u8], u64, u32, u64)> {
    let mut f = line.splitn(6, |b| *b == b' ');
    let (_, _, _) = (f.next()?, f.next()?, f.next()?);
    let view = f.next()?;
    let seq = std::str::from_utf8(f.next()?).ok()?.parse().ok()?;
    let text = match body {
        Some(b) => b,
        None => f.next()?,
    };
    if text.len() != size || text.get(8) != Some(&b'.') || text.get(25) != Some(&b'.') {
        return None;
    }
    let id = std::str::from_utf8(&text[..8]).ok()?.parse().ok()?;
    let t = std::str::from_utf8(&text[9..25]).ok()?.parse().ok()?;
    Some((view, seq, id, t))
}

/// Reads exactly `n` bytes into `body`, waiting past read timeouts until `deadline`.
fn read_body<R: BufRead>(
    r: &mut R,
    n: usize,
    body: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), String> {
    body.clear();
    while body.len() < n {
        let have = match r.fill_buf() {
            Ok([]) => return Err("the daemon closed the connection mid-message".into()),
            Ok(b) => b,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() >= deadline {
                    return Err("timed out".into());
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        let k = have.len().min(n - body.len());
        body.extend_from_slice(&have[..k]);
        r.consume(k);
    }
    Ok(())
}

fn receive(
    addr: SocketAddr,
    group: &str,
    o: &Tput,
    ready: &mpsc::Sender<Result<(), String>>,
    deliveries: Option<Events>,
    deadline: Instant,
) -> Result<Seen, String> {
    let s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::with_capacity(1 << 20, s);
    let mut line = Vec::with_capacity(o.size * 2 + 128);
    let mut body = Vec::with_capacity(o.size);
    let mut skipped = 0;
    if o.binary {
        w.write_all(b"binary\n").map_err(|e| e.to_string())?;
        let answer = final_reply(&mut r, &mut line, deadline, &mut skipped)?;
        if !answer.starts_with("250 binary") {
            return Err(format!("{addr}: binary: {answer}"));
        }
    }
    w.write_all(format!("join {group}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let answer = final_reply(&mut r, &mut line, deadline, &mut skipped)?;
    if answer != format!("250 joined {group}") {
        return Err(format!("{addr}: join {group}: {answer}"));
    }
    let _ = ready.send(Ok(()));
    let mut seen = Seen::default();
    let mut got = vec![false; o.messages];
    let mut count = 0;
    while count < o.messages {
        read_line(&mut r, &mut line, deadline).map_err(|e| {
            format!(
                "{addr}: {e} after {count} of {} messages (last line {:?})",
                o.messages,
                String::from_utf8_lossy(&line[..line.len().min(120)])
            )
        })?;
        let t = now_ns();
        if line.starts_with(b"699") {
            return Err(format!(
                "{addr}: evicted after {count} messages: {}",
                String::from_utf8_lossy(&line)
            ));
        }
        let binary = line.starts_with(b"602 ") || line.starts_with(b"603 ");
        if binary {
            let size = std::str::from_utf8(line.rsplit(|b| *b == b' ').next().unwrap_or(b""))
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("{addr}: a {} line without its size", line[0]))?;
            read_body(&mut r, size, &mut body, deadline).map_err(|e| format!("{addr}: {e}"))?;
        }
        let want: &[u8] = match (o.fifo, o.binary) {
            (false, false) => b"600 ",
            (true, false) => b"601 ",
            (false, true) => b"602 ",
            (true, true) => b"603 ",
        };
        if !line.starts_with(want) {
            continue;
        }
        let Some((view, seq, id, sent)) = parse_600(&line, binary.then_some(&body[..]), o.size)
        else {
            seen.malformed += 1;
            continue;
        };
        let v = match seen.views.iter().position(|x| x.as_bytes() == view) {
            Some(i) => i,
            None => {
                seen.views.push(String::from_utf8_lossy(view).into_owned());
                seen.views.len() - 1
            }
        };
        seen.order.push((v, seq, id));
        let Some(g) = got.get_mut(id as usize) else {
            seen.malformed += 1;
            continue;
        };
        if *g {
            seen.duplicates += 1;
            continue;
        }
        *g = true;
        count += 1;
        seen.lat_ns.push(t.saturating_sub(sent));
        seen.last_ns = t;
        if let Some(d) = &deliveries {
            let _ = d.send(Ok(Event::Delivered));
        }
    }
    Ok(seen)
}

/// What the sender waits for: a reply to one of its requests (the message's number, and
/// whether it was taken), or a delivery at the receiver on its own daemon.
enum Event {
    Reply(u32, bool),
    Delivered,
}

/// Where a sender's events go (an error stops it).
type Events = mpsc::Sender<Result<Event, String>>;

struct Sent {
    first_ns: u64,
    accepted_ns: u64,
    busy: u64,
}

/// Sends every message. With `credit` > 0 it also keeps at most `credit` messages taken
/// and not yet delivered at its own daemon (below the daemon's bound, `MAX_PENDING`), as
/// a client that watches its own messages come back would; with 0, only `451 busy`
/// slows it down.
fn send_all(
    addr: SocketAddr,
    group: &str,
    o: &Tput,
    ev_tx: Events,
    events: mpsc::Receiver<Result<Event, String>>,
    deadline: Instant,
) -> Result<Sent, String> {
    let s = connect(addr)?;
    let rs = s.try_clone().map_err(|e| e.to_string())?;
    rs.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    // Replies come in the order of the requests: the reader learns each one's number
    // from `ids` and tells the writer how it went.
    let (ids, ids_rx) = mpsc::channel::<u32>();
    let replies = thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 16, rs);
        let mut line = Vec::new();
        let mut skipped = 0;
        while let Ok(id) = ids_rx.recv() {
            let ev = match final_reply(&mut r, &mut line, deadline, &mut skipped) {
                Ok(l) if l == "250 sent" => Ok(Event::Reply(id, true)),
                Ok(l) if l.starts_with("451 ") => Ok(Event::Reply(id, false)),
                Ok(l) => Err(format!("send refused: {l}")),
                Err(e) => Err(format!("reading replies: {e}")),
            };
            let stop = ev.is_err();
            if ev_tx.send(ev).is_err() || stop {
                return;
            }
        }
    });
    let mut w = BufWriter::with_capacity(1 << 20, s);
    let n = o.messages;
    let mut first_try = vec![0u64; n];
    let mut again: VecDeque<u32> = VecDeque::new();
    let (mut next, mut in_flight, mut accepted, mut busy) = (0usize, 0usize, 0usize, 0u64);
    let mut delivered = 0usize;
    let credit = if o.credit == 0 { usize::MAX } else { o.credit };
    let mut line = Vec::with_capacity(o.size + group.len() + 16);
    let first_ns = now_ns();
    // With a rate, message i is due at first_ns + i / rate.
    let due = |i: usize| first_ns + (i as f64 * 1e9 / o.rate) as u64;
    let paced = o.rate > 0.0;
    let io = |e: std::io::Error| format!("writing requests: {e}");
    while accepted < n {
        let mut wrote = false;
        while in_flight < o.window && in_flight + accepted - delivered.min(accepted) < credit {
            let id = match again.pop_front() {
                Some(id) => id,
                None if next < n && !(paced && due(next) > now_ns()) => {
                    next += 1;
                    u32::try_from(next - 1).map_err(|e| e.to_string())?
                }
                None => break,
            };
            let t = &mut first_try[id as usize];
            if *t == 0 {
                *t = now_ns().max(1);
            }
            line.clear();
            if o.binary {
                // The size, then the bytes as they are.
                let verb = if o.fifo { "bfsend" } else { "bsend" };
                let _ = writeln!(line, "{verb} {group} {}", o.size);
                payload(id, *t, o.size, &mut line);
            } else {
                line.extend_from_slice(if o.fifo { b"fsend " } else { b"send " });
                line.extend_from_slice(group.as_bytes());
                line.push(b' ');
                payload(id, *t, o.size, &mut line);
                line.push(b'\n');
            }
            ids.send(id).map_err(|_| "the reply reader stopped")?;
            w.write_all(&line).map_err(io)?;
            in_flight += 1;
            wrote = true;
        }
        if wrote {
            w.flush().map_err(io)?;
        }
        let mut wait = deadline.saturating_duration_since(Instant::now());
        if paced && next < n {
            wait = wait.min(Duration::from_nanos(due(next).saturating_sub(now_ns())));
        }
        let first = match events.recv_timeout(wait) {
            Ok(ev) => ev,
            Err(_) if Instant::now() < deadline => continue,
            Err(_) => return Err(format!("{accepted} of {n} sends taken before the deadline")),
        };
        let mut refused = false;
        for ev in std::iter::once(first).chain(events.try_iter()) {
            let (id, ok) = match ev? {
                Event::Reply(id, ok) => (id, ok),
                Event::Delivered => {
                    delivered += 1;
                    continue;
                }
            };
            in_flight -= 1;
            if ok {
                accepted += 1;
            } else {
                busy += 1;
                refused = true;
                again.push_back(id);
            }
        }
        if refused {
            // The daemon holds MAX_PENDING messages not yet delivered: let it order them.
            thread::sleep(Duration::from_millis(1));
        }
    }
    let accepted_ns = now_ns();
    drop(ids);
    let _ = replies.join();
    Ok(Sent {
        first_ns,
        accepted_ns,
        busy,
    })
}

/// The value at quantile `q` of sorted `v` (nearest rank), in milliseconds.
fn pct_ms(v: &[u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64 / 1e6
}

fn tput(o: &Tput) -> Result<bool, String> {
    let group = format!("bench-{}-{}-{}", std::process::id(), o.size, now_ns());
    let deadline = Instant::now() + o.timeout;
    let (ready_tx, ready) = mpsc::channel();
    let (ev_tx, events) = mpsc::channel();
    let receivers: Vec<_> = o
        .addrs
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let (ready_tx, group) = (ready_tx.clone(), group.clone());
            // The receiver on the sender's daemon tells it of every delivery.
            let deliveries = (i == 0).then(|| ev_tx.clone());
            let o = Tput {
                addrs: Vec::new(),
                ..*o
            };
            thread::spawn(move || {
                let r = receive(a, &group, &o, &ready_tx, deliveries.clone(), deadline);
                if let Err(e) = &r {
                    let _ = ready_tx.send(Err(e.clone()));
                    // The sender waits for this receiver's deliveries: stop it too.
                    if let Some(d) = deliveries {
                        let _ = d.send(Err(format!("the receiver on the sender's daemon: {e}")));
                    }
                }
                r
            })
        })
        .collect();
    drop(ready_tx);
    for _ in &o.addrs {
        ready
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "a receiver did not join within 30 s".to_string())??;
    }
    let sent = match send_all(o.addrs[0], &group, o, ev_tx, events, deadline) {
        Ok(s) => s,
        Err(e) => {
            println!(
                "mode=tput daemons={} size={} messages={} ok=0",
                o.addrs.len(),
                o.size,
                o.messages
            );
            return Err(e);
        }
    };
    let seen: Vec<Result<Seen, String>> = receivers
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("a receiver panicked".into()))
        })
        .collect();
    let mut errors: Vec<String> = Vec::new();
    let mut ok_seen: Vec<&Seen> = Vec::new();
    for (a, s) in o.addrs.iter().zip(&seen) {
        match s {
            Ok(s) => {
                if s.duplicates + s.malformed > 0 {
                    errors.push(format!(
                        "{a}: {} duplicates, {} malformed",
                        s.duplicates, s.malformed
                    ));
                }
                ok_seen.push(s);
            }
            Err(e) => errors.push(e.clone()),
        }
    }
    // Every receiver: the same sequence of (view, seq) and of messages.
    let order = |s: &Seen| -> Vec<(String, u64, u32)> {
        s.order
            .iter()
            .map(|(v, q, id)| (s.views[*v].clone(), *q, *id))
            .collect()
    };
    if let Some(first) = ok_seen.first() {
        let want = order(first);
        for (i, s) in ok_seen.iter().enumerate().skip(1) {
            let got = order(s);
            if got != want {
                let at = want.iter().zip(&got).position(|(a, b)| a != b);
                errors.push(format!(
                    "receiver {i} saw another order than receiver 0 (first difference at {at:?})"
                ));
            }
        }
        // Within a view, numbers only grow.
        if want
            .windows(2)
            .any(|p| p[0].0 == p[1].0 && p[0].1 >= p[1].1)
        {
            errors.push("seq numbers not increasing within a view".into());
        }
    }
    let mut lat: Vec<u64> = ok_seen
        .iter()
        .flat_map(|s| s.lat_ns.iter().copied())
        .collect();
    lat.sort_unstable();
    let last = ok_seen.iter().map(|s| s.last_ns).max().unwrap_or(0);
    let secs = last.saturating_sub(sent.first_ns) as f64 / 1e9;
    let views: Vec<&str> = ok_seen
        .first()
        .map(|s| s.views.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let ok = errors.is_empty() && ok_seen.len() == o.addrs.len();
    println!(
        "mode=tput delivery={} framing={} daemons={} size={} messages={} window={} credit={} rate={} msgs_per_s={:.0} mb_per_s={:.2} \
         total_s={:.3} accepted_s={:.3} busy={} lat_p50_ms={:.2} lat_p90_ms={:.2} \
         lat_p99_ms={:.2} lat_max_ms={:.2} lat_avg_ms={:.2} views={} ok={}",
        if o.fifo { "fifo" } else { "agreed" },
        if o.binary { "binary" } else { "text" },
        o.addrs.len(),
        o.size,
        o.messages,
        o.window,
        o.credit,
        o.rate,
        o.messages as f64 / secs,
        (o.messages * o.size) as f64 / secs / 1e6,
        secs,
        sent.accepted_ns.saturating_sub(sent.first_ns) as f64 / 1e9,
        sent.busy,
        pct_ms(&lat, 0.50),
        pct_ms(&lat, 0.90),
        pct_ms(&lat, 0.99),
        pct_ms(&lat, 1.0),
        lat.iter().map(|l| *l as f64).sum::<f64>() / lat.len().max(1) as f64 / 1e6,
        views.join(","),
        u8::from(ok)
    );
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(ok)
}

// ---------------------------------------------------------------- idle

#[derive(Clone, Copy, PartialEq)]
enum IdleRequest {
    Join,
    Groups,
}

struct Idle {
    clients: usize,
    pid: u32,
    peer_pids: Vec<u32>,
    request: IdleRequest,
    timeout: Duration,
    addr: SocketAddr,
}

/// A process's resident set (VmRSS), in KiB.
fn vm_rss_kb(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{path}: no VmRSS"))
}

/// Sends `req` on `s` and reads the final reply (a fresh reader per request: an idle
/// client holds one descriptor and no buffer).
fn ask(s: &TcpStream, req: &str, deadline: Instant) -> Result<(String, usize), String> {
    (&*s)
        .write_all(format!("{req}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    answer(s, deadline)
}

fn answer(s: &TcpStream, deadline: Instant) -> Result<(String, usize), String> {
    let mut r = BufReader::with_capacity(4096, s);
    let (mut line, mut skipped) = (Vec::new(), 0);
    let l = final_reply(&mut r, &mut line, deadline, &mut skipped)?;
    Ok((l, skipped))
}

/// Opens the idle clients, a batch at a time: the batch's requests first, then their
/// replies; those refused as busy ask again.
fn open_idle(
    rt: &tokio::runtime::Runtime,
    o: &Idle,
    tag: &str,
    deadline: Instant,
) -> Result<(Vec<TcpStream>, u64), String> {
    // Below the daemon's listen backlog (128 here): a burst past it loses SYNs, and each
    // lost one costs its client a second.
    const BATCH: usize = 100;
    let mut all = Vec::with_capacity(o.clients);
    let mut busy = 0;
    while all.len() < o.clients {
        let n = BATCH.min(o.clients - all.len());
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let s = connect_from(rt, all.len() + batch.len(), o.addr)?;
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .map_err(|e| e.to_string())?;
            batch.push(s);
        }
        let req = |i: usize| match o.request {
            IdleRequest::Join => format!("join idle-{tag}-{i}"),
            IdleRequest::Groups => "groups".to_string(),
        };
        let mut todo: Vec<usize> = (0..n).collect();
        while !todo.is_empty() {
            for &k in &todo {
                (&batch[k])
                    .write_all(format!("{}\n", req(all.len() + k)).as_bytes())
                    .map_err(|e| format!("client {}: {e}", all.len() + k))?;
            }
            let mut again = Vec::new();
            for &k in &todo {
                let (l, _) = answer(&batch[k], deadline)
                    .map_err(|e| format!("client {}: {e}", all.len() + k))?;
                let good = match o.request {
                    IdleRequest::Join => l.starts_with("250 joined "),
                    IdleRequest::Groups => l.starts_with("250 ") && l.ends_with(" groups"),
                };
                if good {
                    continue;
                }
                if l.starts_with("451 ") {
                    busy += 1;
                    again.push(k);
                } else {
                    return Err(format!("client {}: {l}", all.len() + k));
                }
            }
            if !again.is_empty() {
                thread::sleep(Duration::from_millis(5));
            }
            todo = again;
        }
        all.extend(batch);
    }
    Ok((all, busy))
}

fn idle(o: &Idle) -> Result<bool, String> {
    let deadline = Instant::now() + o.timeout;
    let tag = format!("{}-{}", std::process::id(), now_ns());
    let rss =
        |pids: &[u32]| -> Result<Vec<u64>, String> { pids.iter().map(|p| vm_rss_kb(*p)).collect() };
    let before = vm_rss_kb(o.pid)?;
    let peers_before = rss(&o.peer_pids)?;
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (clients, busy) = open_idle(&rt, o, &tag, deadline)?;
    let open_s = t0.elapsed().as_secs_f64();
    // Let the daemons settle (acknowledgements, the replicated group table).
    thread::sleep(Duration::from_secs(2));
    let after = vm_rss_kb(o.pid)?;
    let peers_after = rss(&o.peer_pids)?;
    let mut errors = Vec::new();

    // With every idle client connected: the daemon's view, the group list, and messages.
    let probe = connect(o.addr)?;
    probe
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let (members, lines) = ask(&probe, "members", deadline)?;
    let members_ms = t.elapsed().as_secs_f64() * 1e3;
    if !members.starts_with("250 ") || !members.ends_with(" members") {
        errors.push(format!("members: {members}"));
    }
    let daemons = lines.saturating_sub(1);
    let t = Instant::now();
    let (groups, _) = ask(&probe, "groups", deadline)?;
    let groups_ms = t.elapsed().as_secs_f64() * 1e3;
    let listed: usize = groups
        .strip_prefix("250 ")
        .and_then(|g| g.strip_suffix(" groups")?.parse().ok())
        .unwrap_or(0);
    if o.request == IdleRequest::Join && listed < o.clients {
        errors.push(format!("groups lists {listed} groups, not {}", o.clients));
    }
    const PROBES: usize = 100;
    let group = format!("probe-{tag}");
    let member = connect(o.addr)?;
    member
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let (j, _) = ask(&member, &format!("join {group}"), deadline)?;
    if j != format!("250 joined {group}") {
        errors.push(format!("join {group}: {j}"));
    }
    let t = Instant::now();
    let mut reqs = String::new();
    for i in 0..PROBES {
        reqs.push_str(&format!("send {group} probe {i}\n"));
    }
    (&probe)
        .write_all(reqs.as_bytes())
        .map_err(|e| e.to_string())?;
    {
        let mut r = BufReader::new(&probe);
        let mut line = Vec::new();
        let mut skipped = 0;
        for _ in 0..PROBES {
            let l = final_reply(&mut r, &mut line, deadline, &mut skipped)?;
            if l != "250 sent" {
                errors.push(format!("probe send: {l}"));
                break;
            }
        }
    }
    let mut delivered = 0;
    {
        let mut r = BufReader::new(&member);
        let mut line = Vec::new();
        while delivered < PROBES {
            if let Err(e) = read_line(&mut r, &mut line, deadline) {
                errors.push(format!("probe member: {e} after {delivered} messages"));
                break;
            }
            if line.starts_with(b"600 ") {
                let want = format!(" probe {delivered}");
                if !line.ends_with(want.as_bytes()) {
                    errors.push(format!(
                        "probe member: {:?} out of order",
                        String::from_utf8_lossy(&line)
                    ));
                    break;
                }
                delivered += 1;
            }
        }
    }
    let probe_ms = t.elapsed().as_secs_f64() * 1e3;
    let connected = clients.len();
    drop(clients);
    thread::sleep(Duration::from_secs(2));
    let closed = vm_rss_kb(o.pid)?;
    let (_, lines) = ask(&probe, "members", deadline)?;
    if lines.saturating_sub(1) != daemons {
        errors.push("the daemon's view changed while the clients closed".into());
    }
    let per_client = (after.saturating_sub(before) * 1024) as f64 / connected as f64;
    let peer_delta: Vec<String> = peers_before
        .iter()
        .zip(&peers_after)
        .map(|(b, a)| (i128::from(*a) - i128::from(*b)).to_string())
        .collect();
    let ok = errors.is_empty();
    println!(
        "mode=idle request={} clients={connected} open_s={open_s:.2} busy={busy} \
         rss_before_kb={before} rss_after_kb={after} bytes_per_client={per_client:.0} \
         peer_rss_delta_kb={} members_ms={members_ms:.2} daemons={daemons} \
         groups_ms={groups_ms:.1} groups_listed={listed} probe_delivered={delivered}/{PROBES} \
         probe_ms={probe_ms:.1} rss_after_close_kb={closed} ok={}",
        match o.request {
            IdleRequest::Join => "join",
            IdleRequest::Groups => "groups",
        },
        if peer_delta.is_empty() {
            "none".to_string()
        } else {
            peer_delta.join(",")
        },
        u8::from(ok)
    );
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(ok)
}

// ---------------------------------------------------------------- main

fn num<T: std::str::FromStr>(v: Option<String>, what: &str) -> Result<T, String> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{what} wants a number\n{}", usage()))
}

fn run() -> Result<bool, String> {
    now_ns();
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or_else(usage)?;
    let (mut messages, mut size, mut window, mut timeout) =
        (20_000usize, 100usize, 256usize, 120u64);
    let (mut credit, mut rate, mut fifo, mut binary) = (1000usize, 0f64, false, false);
    let (mut clients, mut pid, mut peer_pids) = (10_000usize, 0u32, Vec::new());
    let mut request = IdleRequest::Join;
    let mut addrs = Vec::<SocketAddr>::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--messages" => messages = num(args.next(), "--messages")?,
            "--size" => size = num(args.next(), "--size")?,
            "--window" => window = num(args.next(), "--window")?,
            "--credit" => credit = num(args.next(), "--credit")?,
            "--rate" => rate = num(args.next(), "--rate")?,
            "--fifo" => fifo = true,
            "--binary" => binary = true,
            "--timeout" => timeout = num(args.next(), "--timeout")?,
            "--clients" => clients = num(args.next(), "--clients")?,
            "--pid" => pid = num(args.next(), "--pid")?,
            "--peer-pids" => {
                let v = args.next().unwrap_or_default();
                peer_pids = v
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| p.parse().map_err(|e| format!("--peer-pids {p}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--request" => {
                request = match args.next().as_deref() {
                    Some("join") => IdleRequest::Join,
                    Some("groups") => IdleRequest::Groups,
                    _ => return Err(usage()),
                }
            }
            _ => addrs.push(a.parse().map_err(|e| format!("{a}: {e}\n{}", usage()))?),
        }
    }
    let timeout = Duration::from_secs(timeout);
    match mode.as_str() {
        "tput" => {
            if addrs.is_empty() || messages == 0 || window == 0 || size < 32 {
                return Err(format!(
                    "tput: a daemon, messages, window and size >= 32\n{}",
                    usage()
                ));
            }
            if messages > 99_999_999 {
                return Err("at most 99,999,999 messages".into());
            }
            tput(&Tput {
                messages,
                size,
                window,
                credit,
                rate,
                fifo,
                binary,
                timeout,
                addrs,
            })
        }
        "idle" => {
            if addrs.len() != 1 || pid == 0 || clients == 0 {
                return Err(format!(
                    "idle: one daemon, --pid and --clients\n{}",
                    usage()
                ));
            }
            idle(&Idle {
                clients,
                pid,
                peer_pids,
                request,
                timeout,
                addr: addrs[0],
            })
        }
        _ => Err(usage()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
