//! The ship fixes (issue 7), each shown with the `flotilla` binary as a user drives it:
//! values served as written, bad files named with a position, a state file that cannot
//! be written refused at startup, `quit` that waits for its pending reply, advertised
//! addresses checked, unfinished lines closed, a connection cap below the descriptor
//! limit, a parent's absence and return reported, configurations larger than a frame
//! reaching every ship, the size limit at its edge, and parallel writers losing nothing
//! across kill -9.

// Tests drive processes: they need threads, sleeps and the clock.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use flotilla_tests::process::{Daemon, LIMIT, ask, command, flotilla, free_addr, run, wait_until};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flotilla-fixes-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mothership(config: &std::path::Path, extra: &[&str]) -> Daemon {
    let addr = free_addr();
    let mut cmd = command(&["mothership", "--listen", &addr.to_string()]);
    cmd.arg("--config").arg(config).args(extra);
    Daemon::start(cmd, addr)
}

/// Reads replies on one connection until `n` final (non-1xx) lines have come.
fn finals(r: &mut BufReader<TcpStream>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).expect("read") > 0,
            "closed after {out:?}"
        );
        if !line.starts_with('1') {
            out.push(line.trim_end().to_string());
        }
    }
    out
}

fn connect(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
    s.set_read_timeout(Some(LIMIT)).unwrap();
    // `writeln!` writes a request in pieces: without this, Nagle holds each after the
    // first until the server's delayed ack.
    s.set_nodelay(true).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// `(:param b 1.10)` is served as `1.10`, not `1.1`; every other number as written too.
#[test]
fn configuration_values_are_served_as_written() {
    let dir = temp_dir("values");
    let conf = dir.join("ship.conf");
    std::fs::write(
        &conf,
        "(:param b 1.10) (:param c 007) (:param d 1e3) (:param e 1e999999)\n\
         (:param f 123456789012345678901234567890) (:param g -0.50)",
    )
    .unwrap();
    let m = mothership(&conf, &[]);
    for (key, want) in [
        ("b", "1.10"),
        ("c", "007"),
        ("d", "1e3"),
        ("e", "1e999999"),
        ("f", "123456789012345678901234567890"),
        ("g", "-0.50"),
    ] {
        assert_eq!(
            ask(m.addr, &format!("get {key}")).unwrap(),
            format!("200 {want}")
        );
    }
}

/// A binary file is refused naming the line and column of its first bad byte; a
/// byte-order mark at the start is passed over, one elsewhere is named where it is.
#[test]
fn bad_configuration_bytes_are_named_with_a_position() {
    let dir = temp_dir("bytes");
    let bin = dir.join("binary.conf");
    std::fs::write(&bin, b"(:param a 1)\n(:param b \xff\xfe\x00)").unwrap();
    let out = run(
        &[
            "mothership",
            "--listen",
            &free_addr().to_string(),
            "--config",
            bin.to_str().unwrap(),
        ],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stderr.contains(&format!(
            "{}:2:11: byte 0xff is not UTF-8 text",
            bin.display()
        )),
        "{out:#?}"
    );
    let bom = dir.join("bom.conf");
    std::fs::write(&bom, "\u{FEFF}(:param mode fast)").unwrap();
    let m = mothership(&bom, &[]);
    assert_eq!(ask(m.addr, "get mode").unwrap(), "200 fast");
    let stray = dir.join("stray.conf");
    std::fs::write(&stray, "(:param mode\n  fa\u{FEFF}st)").unwrap();
    let out = run(
        &[
            "mothership",
            "--listen",
            &free_addr().to_string(),
            "--config",
            stray.to_str().unwrap(),
        ],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stderr.contains(&format!(
            "{}:2:5: unexpected byte-order mark (U+FEFF)",
            stray.display()
        )),
        "{out:#?}"
    );
}

/// `--state` in a directory that does not exist stops the mothership at startup, with a
/// message, before it serves anything — not at its first `set`.
#[test]
fn a_state_file_that_cannot_be_written_is_refused_at_startup() {
    let dir = temp_dir("state-missing");
    let conf = dir.join("ship.conf");
    std::fs::write(&conf, "(:param mode fast)").unwrap();
    let missing = dir.join("no-such-dir").join("ship.state");
    let addr = free_addr();
    let out = run(
        &[
            "mothership",
            "--listen",
            &addr.to_string(),
            "--config",
            conf.to_str().unwrap(),
            "--state",
            missing.to_str().unwrap(),
        ],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(out.stderr.contains("does not exist"), "{out:#?}");
    assert!(!out.stdout.contains("listening"), "{out:#?}");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}

/// `set` then `quit` in one write to a durable mothership: the set's reply comes first,
/// then `200 bye`, then the close.
#[test]
fn quit_waits_for_a_pending_set() {
    let dir = temp_dir("quit");
    let conf = dir.join("ship.conf");
    std::fs::write(&conf, "(:param mode fast)").unwrap();
    let state = dir.join("ship.state");
    let m = mothership(&conf, &["--state", state.to_str().unwrap()]);
    let (mut s, mut r) = connect(m.addr);
    s.write_all(b"set mode slow\nquit\n").unwrap();
    let mut all = String::new();
    r.read_to_string(&mut all).unwrap();
    assert_eq!(all, "200 version=1\n200 bye\n");
    assert_eq!(ask(m.addr, "get mode").unwrap(), "200 slow");
}

/// An advertised address that is not `HOST:PORT` is refused with why.
#[test]
fn an_accept_with_a_bad_address_is_refused() {
    let dir = temp_dir("accept");
    let conf = dir.join("ship.conf");
    std::fs::write(&conf, "").unwrap();
    let m = mothership(&conf, &[]);
    assert_eq!(
        ask(m.addr, "accept k notanaddr 5").unwrap(),
        "400 invalid address 'notanaddr': expected HOST:PORT"
    );
    assert!(
        ask(m.addr, "accept k host:0 5")
            .unwrap()
            .starts_with("400 invalid address")
    );
    let out = run(
        &[
            "broker",
            "accept",
            "k",
            "--advertise",
            "x y",
            "--ship",
            &m.ship(),
            "--timeout",
            "1",
        ],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
}

/// A client that leaves a line unfinished is told so and closed after `--line-timeout`.
#[test]
fn an_unfinished_line_is_closed_with_a_reason() {
    let dir = temp_dir("partial");
    let conf = dir.join("ship.conf");
    std::fs::write(&conf, "(:param mode fast)").unwrap();
    let m = mothership(&conf, &["--line-timeout", "1"]);
    let (mut s, mut r) = connect(m.addr);
    s.write_all(b"get mo").unwrap();
    let mut all = String::new();
    r.read_to_string(&mut all).unwrap();
    assert_eq!(
        all,
        "408 line not finished within 1.0s: closing the connection\n"
    );
    // A finished line is answered as usual.
    assert_eq!(ask(m.addr, "get mode").unwrap(), "200 fast");
}

/// With a low descriptor limit, idle connections past the cap are told why and closed,
/// while a client already in is served without waiting and a daughtership still joins;
/// once they are gone, new clients are served again.
#[test]
fn past_the_connection_cap_clients_are_refused_not_hung() {
    let dir = temp_dir("cap");
    let conf = dir.join("ship.conf");
    std::fs::write(&conf, "(:param mode fast)").unwrap();
    let addr = free_addr();
    // Descriptor limit 200: the ship holds 200 - 64 = 136 clients.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n 200 && exec \"{}\" mothership --listen {addr} --config \"{}\"",
            flotilla().display(),
            conf.display()
        ))
        .env_remove("CRMOTHERSHIP")
        .env_remove("RUST_LOG");
    let m = Daemon::start(cmd, addr);
    let (mut first, mut first_r) = connect(addr);
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..180 {
        idle.push(TcpStream::connect_timeout(&addr, LIMIT).expect("connect"));
    }
    // Refusals are written at once; give them a moment to arrive, then look without
    // waiting on the connections that were let in (they hear nothing).
    thread::sleep(Duration::from_secs(1));
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let mut buf = String::new();
        if BufReader::new(s.try_clone().unwrap())
            .read_line(&mut buf)
            .is_ok()
            && !buf.is_empty()
        {
            assert_eq!(
                buf,
                "503 too many connections (136 open, the most this ship holds): try again later\n"
            );
            refused += 1;
        }
    }
    // 136 held, the first of them our `first` client: the rest of the 180 are refused.
    assert_eq!(refused, 180 - 135, "refusals");
    first.write_all(b"get mode\n").unwrap();
    assert_eq!(finals(&mut first_r, 1), ["200 fast"]);
    // Peers are not clients: a daughtership still joins while the clients are at the cap.
    let d = Daemon::daughtership(addr);
    d.wait_synced();
    assert_eq!(ask(d.addr, "get mode").unwrap(), "200 fast");
    drop(idle);
    wait_until("a new client to be served", LIMIT, || {
        ask(addr, "get mode").ok().filter(|r| r == "200 fast")
    });
    assert!(m.stderr().contains("clients=136"), "{}", m.stderr());
}

/// A daughtership started before its parent warns once that the parent is unreachable,
/// and says once when it answers; then it serves the configuration.
#[test]
fn a_parents_absence_and_return_are_reported_once() {
    let dir = temp_dir("parent");
    let conf = dir.join("ship.conf");
    std::fs::write(&conf, "(:param mode fast)").unwrap();
    let parent = free_addr();
    let d = Daemon::daughtership(parent);
    wait_until("the unreachable warning", LIMIT, || {
        d.stderr().contains("parent unreachable").then_some(())
    });
    let mut cmd = command(&["mothership", "--listen", &parent.to_string()]);
    cmd.arg("--config").arg(&conf);
    let _m = Daemon::start(cmd, parent);
    d.wait_synced();
    wait_until("the return notice", LIMIT, || {
        d.stderr().contains("parent answers again").then_some(())
    });
    let err = d.stderr();
    assert_eq!(err.matches("parent unreachable").count(), 1, "{err}");
    assert_eq!(err.matches("parent answers again").count(), 1, "{err}");
}

fn big_config(dir: &std::path::Path, params: usize) -> PathBuf {
    let mut text = String::from("(:param mode fast)\n");
    for k in 0..params {
        text.push_str(&format!("(:param big{k} {})\n", "x".repeat(1000)));
    }
    let p = dir.join("big.conf");
    std::fs::write(&p, text).unwrap();
    p
}

/// A 1.2 MB configuration file, then 1,500 sets of 1,000-byte values: far more than one
/// frame. A new daughtership syncs; one killed and restarted syncs again.
#[test]
fn a_configuration_larger_than_a_frame_reaches_new_and_restarted_daughterships() {
    let dir = temp_dir("big");
    let conf = big_config(&dir, 1200);
    assert!(std::fs::metadata(&conf).unwrap().len() > 1_200_000);
    let state = dir.join("ship.state");
    let m = mothership(&conf, &["--state", state.to_str().unwrap()]);
    let (mut s, mut r) = connect(m.addr);
    let value = "v".repeat(1000);
    for k in 0..1500 {
        writeln!(s, "set set{k} {value}").unwrap();
        assert_eq!(finals(&mut r, 1), [format!("200 version={}", k + 1)]);
    }
    let d1 = Daemon::daughtership(m.addr);
    d1.wait_synced();
    assert_eq!(ask(d1.addr, "get set1499").unwrap(), format!("200 {value}"));
    assert_eq!(
        ask(d1.addr, "get big1199").unwrap(),
        format!("200 {}", "x".repeat(1000))
    );
    let addr = d1.addr;
    drop(d1); // kill -9
    let mut cmd = command(&[
        "daughtership",
        "--parent",
        &m.ship(),
        "--listen",
        &addr.to_string(),
    ]);
    cmd.env_remove("CRDAUGHTERSHIP");
    let d2 = Daemon::start(cmd, addr);
    d2.wait_synced();
    assert_eq!(ask(d2.addr, "get set1499").unwrap(), format!("200 {value}"));
}

/// `--max-config-bytes`: a set that fits exactly is taken, one byte more is refused with
/// the sizes; a file already past the limit does not start.
#[test]
fn the_configuration_size_limit_at_its_edge() {
    let dir = temp_dir("limit");
    let conf = dir.join("ship.conf");
    std::fs::write(&conf, "(:param a x)").unwrap();
    // Encoded: count 4 + root node (path 4, host 1, params 4, "a" 5, "x" 5) = 23 bytes.
    // Room for one more parameter "b" with a 10-byte value: 5 + 14 = 19 bytes.
    let m = mothership(&conf, &["--max-config-bytes", "42"]);
    assert_eq!(ask(m.addr, "set b 0123456789").unwrap(), "200 version=1");
    assert_eq!(
        ask(m.addr, "set b 0123456789a").unwrap(),
        "507 the configuration would grow to 43 bytes, past its limit of 42 bytes"
    );
    let out = run(
        &[
            "mothership",
            "--listen",
            &free_addr().to_string(),
            "--config",
            conf.to_str().unwrap(),
            "--max-config-bytes",
            "22",
        ],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("23 bytes, more than its limit of 22"),
        "{out:#?}"
    );
}

/// Eight writers set their own keys as fast as they can on a durable mothership, which
/// is killed -9 and restarted from its state file, three times: after each restart every
/// writer's key holds at least the last value it was told was applied.
#[test]
fn eight_parallel_writers_lose_nothing_across_kill_9() {
    let dir = temp_dir("writers");
    let conf = dir.join("ship.conf");
    std::fs::write(&conf, "(:param mode fast)").unwrap();
    let state = dir.join("ship.state");
    let addr = free_addr();
    let start = || {
        let mut cmd = command(&["mothership", "--listen", &addr.to_string()]);
        cmd.arg("--config").arg(&conf).arg("--state").arg(&state);
        Daemon::start(cmd, addr)
    };
    let mut m = start();
    let acked: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(vec![0; 8]));
    let mut next = [1u64; 8];
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (stop, acked, first) = (stop.clone(), acked.clone(), next[w]);
                thread::spawn(move || {
                    let Ok((mut s, mut r)) = std::panic::catch_unwind(|| connect(addr)) else {
                        return first;
                    };
                    let mut v = first;
                    while !stop.load(Ordering::Relaxed) {
                        if writeln!(s, "set w{w} {v}").is_err() {
                            break;
                        }
                        let mut line = String::new();
                        match r.read_line(&mut line) {
                            Ok(n) if n > 0 && line.starts_with("200 version=") => {
                                acked.lock().unwrap()[w] = v;
                                v += 1;
                            }
                            _ => break,
                        }
                    }
                    v
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(700));
        m.kill();
        stop.store(true, Ordering::Relaxed);
        for (w, h) in writers.into_iter().enumerate() {
            next[w] = h.join().unwrap() + 1;
        }
        m = start();
        let acked = acked.lock().unwrap().clone();
        assert!(
            acked.iter().all(|a| *a > 0),
            "round {round}: every writer got acks: {acked:?}"
        );
        for (w, a) in acked.iter().enumerate() {
            let got = ask(addr, &format!("get w{w}")).unwrap();
            let v: u64 = got
                .strip_prefix("200 ")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("round {round}: w{w}: {got}"));
            assert!(v >= *a, "round {round}: w{w} acknowledged {a}, stored {v}");
        }
    }
}
