//! `membership-loopback`: five (or N) real `flotilla groupd` daemons on 127.0.0.1, as a
//! user runs them (the first alone, the others `--join` it): their steady-state load read
//! from each daemon's own counters (`stats`: frames and bytes it sent, headers of our
//! framing included, TCP/IP headers not), and for `kill -9` of one daemon (each in turn,
//! the coordinator too) the time until the first survivor, and then every survivor,
//! answers `members` without it — polled every 2 ms over one connection per survivor.
//! Results in BENCHMARKS.md.
//!
//! ```text
//! cargo build --release -p flotilla -p flotilla-benches
//! target/release/membership-loopback [--daemons 5] [--trials 10] [--flotilla target/release/flotilla]
//! ```

// A benchmark drives processes: it needs threads, sleeps and the clock.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

struct Daemon {
    name: String,
    addr: SocketAddr,
    child: Child,
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn start(bin: &str, name: &str, addr: SocketAddr, join: &[SocketAddr]) -> Daemon {
    let mut cmd = Command::new(bin);
    cmd.args(["groupd", "--name", name, "--listen", &addr.to_string()]);
    for j in join {
        cmd.args(["--join", &j.to_string()]);
    }
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flotilla groupd");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("ready line");
    assert!(ready.contains("listening on"), "{name}: {ready:?}");
    Daemon {
        name: name.to_string(),
        addr,
        child,
    }
}

/// One connection to a daemon's client port, for many requests.
struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Option<Conn> {
        let w = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        w.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let _ = w.set_nodelay(true);
        let r = BufReader::new(w.try_clone().ok()?);
        Some(Conn { w, r })
    }

    /// The lines of one reply.
    fn ask(&mut self, line: &str) -> Option<Vec<String>> {
        self.w.write_all(format!("{line}\n").as_bytes()).ok()?;
        let mut out = Vec::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).ok()? == 0 {
                return None;
            }
            let l = l.trim_end().to_string();
            let last = l.as_bytes().get(3) == Some(&b' ');
            out.push(l);
            if last {
                return Some(out);
            }
        }
    }

    fn names(&mut self) -> Option<Vec<String>> {
        let lines = self.ask("members")?;
        Some(
            lines[1..lines.len() - 1]
                .iter()
                .filter_map(|l| l.get(4..)?.split_whitespace().next().map(str::to_string))
                .collect(),
        )
    }

    fn counter(&mut self, name: &str) -> Option<u64> {
        self.ask("stats")?.iter().find_map(|l| {
            let mut w = l.get(4..)?.split_whitespace();
            (w.next()? == name).then(|| w.next()?.parse().ok())?
        })
    }
}

fn wait_all_in(daemons: &[Daemon]) {
    let want = daemons.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = daemons.iter().all(|d| {
            Conn::open(d.addr)
                .and_then(|mut c| c.names())
                .is_some_and(|n| n.len() == want)
        });
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "the cluster did not form");
        sleep(Duration::from_millis(20));
    }
}

fn stat(v: &mut [Duration]) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "{:.0} / {:.0} / {:.0} ms",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    )
}

fn main() {
    let mut n = 5;
    let mut trials = 10;
    let mut bin = "target/release/flotilla".to_string();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for w in args.chunks(2) {
        match (w[0].as_str(), w.get(1)) {
            ("--daemons", Some(v)) => n = v.parse().expect("--daemons N"),
            ("--trials", Some(v)) => trials = v.parse().expect("--trials N"),
            ("--flotilla", Some(v)) => bin = v.clone(),
            _ => panic!("usage: membership-loopback [--daemons N] [--trials N] [--flotilla PATH]"),
        }
    }
    let addrs: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect();
    let mut daemons: Vec<Daemon> = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        let join = if i == 0 { vec![] } else { vec![addrs[0]] };
        daemons.push(start(&bin, &format!("n{}", i + 1), *a, &join));
    }
    wait_all_in(&daemons);

    // Steady state: the daemons' own counters over a window.
    sleep(Duration::from_secs(3));
    let window = Duration::from_secs(10);
    let read = |ds: &[Daemon]| -> Vec<(u64, u64)> {
        ds.iter()
            .map(|d| {
                let mut c = Conn::open(d.addr).expect("connect");
                (
                    c.counter("frames_sent").expect("frames_sent"),
                    c.counter("bytes_sent").expect("bytes_sent"),
                )
            })
            .collect()
    };
    let before = read(&daemons);
    sleep(window);
    let after = read(&daemons);
    let per = |k: usize| -> f64 {
        let sum: u64 = before
            .iter()
            .zip(&after)
            .map(|(b, a)| if k == 0 { a.0 - b.0 } else { a.1 - b.1 })
            .sum();
        sum as f64 / n as f64 / window.as_secs_f64()
    };
    let (frames, bytes) = (per(0), per(1));

    // kill -9, each daemon in turn.
    let mut detect = Vec::new();
    let mut converge = Vec::new();
    for t in 0..trials {
        let v = t % n;
        let name = daemons[v].name.clone();
        let mut conns: Vec<Conn> = (0..n)
            .filter(|&i| i != v)
            .map(|i| Conn::open(addrs[i]).expect("connect"))
            .collect();
        let killed = Instant::now();
        daemons[v].child.kill().expect("kill -9");
        let _ = daemons[v].child.wait();
        let mut first = None;
        let mut out = vec![false; conns.len()];
        while out.iter().any(|o| !o) {
            for (k, c) in conns.iter_mut().enumerate() {
                if !out[k] && c.names().is_some_and(|ns| !ns.contains(&name)) {
                    out[k] = true;
                    first.get_or_insert(killed.elapsed());
                }
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "{name} never left the view"
            );
            sleep(Duration::from_millis(2));
        }
        detect.push(first.expect("detected"));
        converge.push(killed.elapsed());
        let join: Vec<SocketAddr> = (0..n).filter(|&i| i != v).map(|i| addrs[i]).collect();
        daemons[v] = start(&bin, &name, addrs[v], &join);
        wait_all_in(&daemons);
        sleep(Duration::from_millis(500));
    }
    for d in &mut daemons {
        let _ = d.child.kill();
        let _ = d.child.wait();
    }
    println!(
        "| daemons | frames / daemon / s | bytes / daemon / s | kill -9: detection (min / median / max) | kill -9: convergence (min / median / max) | trials |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {n} | {frames:.1} | {bytes:.0} | {} | {} | {trials} |",
        stat(&mut detect),
        stat(&mut converge)
    );
}
