//! Daemons as separate hosts under real packet loss (issue 16): one network namespace
//! per `flotilla groupd`, on a bridge, every host dropping a share of what it sends
//! (nftables `numgen random`). Clients reach their daemon through its Unix socket.
//!
//! The short run is part of `cargo test`; it skips, saying why, where namespaces cannot
//! be made (not root, no `ip` or `nft`). The long runs are on demand:
//! `cargo test --release -p flotilla-tests --test netns_loss -- --ignored --nocapture`
//! (`FLOTILLA_LOSS`, `FLOTILLA_SECONDS`, `FLOTILLA_DAEMONS`, `FLOTILLA_GAP_MS`,
//! `FLOTILLA_EVERY_MS`, `FLOTILLA_DOWN_MS`, `FLOTILLA_LOG_DIR` (keep each daemon's log),
//! `FLOTILLA_UPDATES`, `FLOTILLA_PURGE`, `FLOTILLA_PIPELINE=1` change them). They print the
//! figures BENCHMARKS.md quotes; nothing here asserts a time.

// Tests drive processes: they need threads, sleeps and the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flotilla_tests::netns::Netns;
use flotilla_tests::process::{Daemon, LIMIT, env_or, flotilla, wait_until};

/// The port every daemon listens on, in its own namespace.
const PORT: u16 = 7400;

/// A line client on a daemon's Unix socket.
struct Client {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Client {
    fn connect(path: &PathBuf) -> Client {
        let s = UnixStream::connect(path).expect("connect to the daemon's socket");
        s.set_read_timeout(Some(LIMIT)).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// The next line; `None` at the end or after the read timeout.
    fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim_end_matches('\n').to_string()),
        }
    }

    /// The final line of the next reply (notices on the way are skipped).
    fn request(&mut self, line: &str) -> Vec<String> {
        self.send(line);
        let mut lines = Vec::new();
        loop {
            let l = self.line().expect("a reply");
            if l.starts_with('6') {
                continue;
            }
            let last = l.len() < 4 || l.as_bytes()[3] != b'-';
            lines.push(l);
            if last {
                return lines;
            }
        }
    }
}

/// A counter from membership's `stats`.
fn stat(c: &mut Client, name: &str) -> u64 {
    let prefix = format!("250-{name} ");
    c.request("stats")
        .iter()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in stats"))
}

/// The number after `key` in a daemon's last log lines (its stats at exit).
fn logged(text: &str, key: &str) -> u64 {
    text.rfind(key)
        .and_then(|at| {
            text[at + key.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Every number after `key` in a daemon's log, in order.
fn logged_all(text: &str, key: &str) -> Vec<u64> {
    text.match_indices(key)
        .filter_map(|(at, _)| {
            text[at + key.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// One cluster of daemons in namespaces.
struct Cluster {
    net: Netns,
    daemons: Vec<Daemon>,
    sockets: Vec<PathBuf>,
}

impl Cluster {
    /// `n` daemons, joined through the first, `n` members in one view; `None` (and why,
    /// printed) where namespaces cannot be made.
    fn start(n: usize, test: &str) -> Option<Cluster> {
        let net = match Netns::new(n, 0) {
            Ok(net) => net,
            Err(e) => {
                eprintln!("SKIPPED {test}: {e}");
                return None;
            }
        };
        let sockets: Vec<PathBuf> = (0..n)
            .map(|i| {
                std::env::temp_dir().join(format!(
                    "flotilla-netns-{}-{test}-{i}.sock",
                    std::process::id()
                ))
            })
            .collect();
        let mut daemons = Vec::new();
        for (i, socket) in sockets.iter().enumerate() {
            let mut cmd = net.command(i, flotilla());
            let listen = net.addr(i, PORT);
            cmd.args(["groupd", "--name", &format!("d{i}")])
                .arg("--listen")
                .arg(listen.to_string())
                .arg("--socket")
                .arg(socket);
            if i > 0 {
                cmd.arg("--join").arg(net.addr(0, PORT).to_string());
            }
            daemons.push(Daemon::start(cmd, listen));
        }
        let cluster = Cluster {
            net,
            daemons,
            sockets,
        };
        for i in 0..n {
            wait_until(&format!("d{i} to see {n} daemons"), LIMIT, || {
                let mut c = cluster.client(i);
                let r = c.request("members");
                (r.last()? == &format!("250 {n} members")).then_some(())
            });
        }
        Some(cluster)
    }

    fn client(&self, i: usize) -> Client {
        Client::connect(&self.sockets[i])
    }

    /// Stops every daemon with SIGTERM; what each logged.
    fn stop(mut self) -> Vec<String> {
        let _ = self.net.set_loss(0);
        self.daemons
            .iter_mut()
            .map(|d| {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &d.pid().to_string()])
                    .status();
                d.wait_exit(LIMIT);
                d.stderr()
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
    }
}

/// What one run measured.
struct Run {
    messages: usize,
    latencies: Vec<Duration>,
    resends: u64,
    dropped: u64,
    view_changes: u64,
    /// How long each flush took at each daemon (from its `flush finished` lines).
    flushes: Vec<Duration>,
    /// After each heal (with churn): how long until every daemon listed all of them
    /// (polled every 20 ms), or `None` if not before the next cut.
    merges: Vec<Option<Duration>>,
}

/// The wall clock, to set the test's cuts beside the daemons' log lines.
fn wall() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let k = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[k]
}

impl Run {
    fn print(&self, what: &str) {
        let mut l = self.latencies.clone();
        l.sort();
        println!(
            "{what}: {} messages, send to last delivery p50 {:?} p99 {:?} max {:?}; \
             resends per message {:.3}; frames dropped {}; view changes {}",
            self.messages,
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            l.last().copied().unwrap_or_default(),
            self.resends as f64 / self.messages.max(1) as f64,
            self.dropped,
            self.view_changes,
        );
        if !self.merges.is_empty() {
            let mut m: Vec<Duration> = self.merges.iter().flatten().copied().collect();
            m.sort();
            println!(
                "{what}: {} heals, merged view after p50 {:?} max {:?}, {} not merged before the next cut",
                self.merges.len(),
                percentile(&m, 0.5),
                m.last().copied().unwrap_or_default(),
                self.merges.len() - m.len(),
            );
        }
        if !self.flushes.is_empty() {
            let mut f = self.flushes.clone();
            f.sort();
            println!(
                "{what}: {} flushes, p50 {:?} p99 {:?} max {:?}",
                f.len(),
                percentile(&f, 0.5),
                percentile(&f, 0.99),
                f.last().copied().unwrap_or_default(),
            );
        }
    }
}

/// View changes made during a run: the last daemon is cut off from the others (both
/// ways) for `down`, then healed, every `every`. It sends nothing, and its member's
/// deliveries are not checked (it is in a view of its own while cut off).
#[derive(Clone, Copy)]
struct Churn {
    every: Duration,
    down: Duration,
}

/// `n` daemons, a member of group `g` on each, `loss` percent loss on every link, and
/// from every daemon one sender alternating agreed (`send`) and FIFO (`fsend`) messages
/// every `gap` for `each` messages. Checks that every member delivers every message
/// once, agreed ones in one order, FIFO ones in each sender's order, and that no view
/// changed.
fn groups_under_loss(
    n: usize,
    loss: u32,
    each: usize,
    gap: Duration,
    churn: Option<Churn>,
    test: &str,
) -> Option<Run> {
    let cluster = Cluster::start(n, test)?;
    // With churn the last daemon neither sends nor is checked.
    let checked = if churn.is_some() { n - 1 } else { n };
    let mut members = Vec::new();
    for i in 0..n {
        let mut c = cluster.client(i);
        assert_eq!(c.request(&format!("name m{i}")), [format!("250 m{i}")]);
        assert_eq!(c.request("join g"), ["250 joined g"]);
        members.push(c);
    }
    let views_before: Vec<u64> = (0..n)
        .map(|i| stat(&mut cluster.client(i), "views"))
        .collect();
    cluster.net.set_loss(loss).expect("loss");
    let total = checked * each;
    let sent_at: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    // Readers: every member's notices with when they came.
    let readers: Vec<thread::JoinHandle<Vec<(String, Instant)>>> = members
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            thread::spawn(move || {
                let mut got = Vec::new();
                // The unchecked member reads until its connection closes (at the end).
                let want = if i < checked { total } else { usize::MAX };
                while got.len() < want {
                    let Some(l) = c.line() else { break };
                    if l.starts_with("600 g ") || l.starts_with("601 g ") {
                        got.push((l, Instant::now()));
                    }
                }
                got
            })
        })
        .collect();
    let senders: Vec<thread::JoinHandle<()>> = (0..checked)
        .map(|i| {
            let mut c = cluster.client(i);
            let sent_at = sent_at.clone();
            thread::spawn(move || {
                for k in 0..each {
                    let (verb, text) = if k % 2 == 0 {
                        ("send", format!("a d{i} {k}"))
                    } else {
                        ("fsend", format!("f d{i} {k}"))
                    };
                    sent_at.lock().unwrap().insert(text.clone(), Instant::now());
                    assert_eq!(c.request(&format!("{verb} g {text}")), ["250 sent"]);
                    thread::sleep(gap);
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    let mut merges = Vec::new();
    if let Some(c) = churn {
        let others: Vec<usize> = (0..n - 1).collect();
        let up = c.every.saturating_sub(c.down);
        thread::sleep(up);
        while !senders.iter().all(|s| s.is_finished()) {
            eprintln!("{test}: cut at {:?}", wall());
            cluster.net.cut(n - 1, &others, loss).expect("cut");
            for &j in &others {
                cluster.net.cut(j, &[n - 1], loss).expect("cut");
            }
            thread::sleep(c.down);
            cluster.net.set_loss(loss).expect("heal");
            eprintln!("{test}: healed at {:?}", wall());
            // Heal to merged view: every daemon lists all n again.
            let healed = Instant::now();
            let merged = loop {
                let all = (0..n).all(|i| {
                    cluster.client(i).request("members").last() == Some(&format!("250 {n} members"))
                });
                if all {
                    break Some(healed.elapsed());
                }
                if healed.elapsed() >= up {
                    break None;
                }
                thread::sleep(Duration::from_millis(20));
            };
            eprintln!("{test}: merged view {merged:?} after the heal");
            merges.push(merged);
            thread::sleep(up.saturating_sub(healed.elapsed()));
        }
    }
    for s in senders {
        s.join().unwrap();
    }
    eprintln!("{test}: sent in {:?}", t0.elapsed());
    let mut readers = readers;
    let unchecked = readers.split_off(checked);
    let got: Vec<Vec<(String, Instant)>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    eprintln!("{test}: delivered in {:?}", t0.elapsed());
    let views_after: Vec<u64> = (0..n)
        .map(|i| stat(&mut cluster.client(i), "views"))
        .collect();
    let logs = cluster.stop();
    eprintln!("{test}: stopped in {:?}", t0.elapsed());
    if let Ok(dir) = std::env::var("FLOTILLA_LOG_DIR") {
        for (i, l) in logs.iter().enumerate() {
            std::fs::write(PathBuf::from(&dir).join(format!("{test}-d{i}.log")), l)
                .expect("write a daemon's log");
        }
    }
    for r in unchecked {
        r.join().unwrap();
    }

    // Every message once at every member; one agreed order; each sender's FIFO order.
    let text = |l: &str| l.splitn(6, ' ').nth(5).unwrap_or("").to_string();
    let mut last: BTreeMap<String, Instant> = BTreeMap::new();
    let mut agreed_orders = Vec::new();
    for (m, lines) in got.iter().enumerate() {
        assert_eq!(
            lines.len(),
            total,
            "member m{m} delivered {} of {total} messages under {loss}% loss",
            lines.len()
        );
        let mut seen = std::collections::BTreeSet::new();
        let mut next_fifo = vec![1usize; checked];
        let mut agreed = Vec::new();
        for (l, at) in lines {
            let t = text(l);
            assert!(seen.insert(t.clone()), "m{m} delivered {t} twice");
            let w: Vec<&str> = t.split(' ').collect();
            let (from, k): (usize, usize) = (w[1][1..].parse().unwrap(), w[2].parse().unwrap());
            if w[0] == "f" {
                assert_eq!(
                    k, next_fifo[from],
                    "m{m}: d{from}'s FIFO messages out of order"
                );
                next_fifo[from] += 2;
            } else {
                agreed.push(t.clone());
            }
            let e = last.entry(t).or_insert(*at);
            *e = (*e).max(*at);
        }
        agreed_orders.push(agreed);
    }
    for o in &agreed_orders[1..] {
        assert_eq!(
            o, &agreed_orders[0],
            "members delivered agreed messages in different orders"
        );
    }
    let sent_at = sent_at.lock().unwrap();
    let latencies = last
        .iter()
        .map(|(t, at)| at.saturating_duration_since(sent_at[t]))
        .collect();
    let view_changes = views_after
        .iter()
        .zip(&views_before)
        .map(|(a, b)| a - b)
        .sum();
    Some(Run {
        messages: total,
        latencies,
        resends: logs
            .iter()
            .map(|l| logged(l, " resent: ") + logged(l, "fifo_resent: "))
            .sum(),
        dropped: logs.iter().map(|l| logged(l, "frames_dropped: ")).sum(),
        view_changes,
        merges,
        flushes: logs
            .iter()
            .flat_map(|l| logged_all(l, "took_ms="))
            .map(Duration::from_millis)
            .collect(),
    })
}

/// Three daemons, 10% loss for a few seconds: no view change, every message delivered,
/// resends bounded (findings 1–2 of issue 16, short).
#[test]
fn three_daemons_under_ten_percent_loss_deliver_everything_without_a_view_change() {
    let Some(run) = groups_under_loss(3, 10, 150, Duration::from_millis(20), None, "short") else {
        return;
    };
    run.print("3 daemons, 10% loss");
    assert_eq!(run.view_changes, 0, "a view changed under 10% loss");
    assert!(
        (run.resends as f64) < 1.5 * run.messages as f64,
        "{} resends for {} messages",
        run.resends,
        run.messages
    );
}

/// The acceptance run: five daemons (`FLOTILLA_DAEMONS`), 10% loss (`FLOTILLA_LOSS`)
/// for three minutes (`FLOTILLA_SECONDS`), one message every 10 ms from each daemon
/// (`FLOTILLA_GAP_MS`).
#[test]
#[ignore = "minutes long: run on demand (see the file's header)"]
fn long_loss_run() {
    let n = env_or("FLOTILLA_DAEMONS", 5);
    let loss = env_or("FLOTILLA_LOSS", 10);
    let seconds: u64 = env_or("FLOTILLA_SECONDS", 180);
    let gap_ms: u64 = env_or("FLOTILLA_GAP_MS", 10).max(1);
    let gap = Duration::from_millis(gap_ms);
    let each = (seconds * 1000 / gap_ms) as usize;
    let Some(run) = groups_under_loss(n, loss, each, gap, None, "long") else {
        return;
    };
    run.print(&format!("{n} daemons, {loss}% loss, {seconds} s"));
    assert_eq!(run.view_changes, 0, "a view changed under {loss}% loss");
}

/// Flushes under loss (issue 16): four daemons send under `FLOTILLA_LOSS` (10%) loss
/// while a fifth is cut off for `FLOTILLA_DOWN_MS` (3 s) every `FLOTILLA_EVERY_MS`
/// (15 s), so every cycle is two view changes and a flush at each daemon for each.
/// Every message reaches every member that stays in the primary view, once, in order;
/// prints the flush times.
#[test]
#[ignore = "minutes long: run on demand (see the file's header)"]
fn long_loss_run_with_view_changes() {
    let n = env_or("FLOTILLA_DAEMONS", 5);
    let loss = env_or("FLOTILLA_LOSS", 10);
    let seconds: u64 = env_or("FLOTILLA_SECONDS", 180);
    let gap_ms: u64 = env_or("FLOTILLA_GAP_MS", 10).max(1);
    let churn = Churn {
        every: Duration::from_millis(env_or("FLOTILLA_EVERY_MS", 15_000)),
        down: Duration::from_millis(env_or("FLOTILLA_DOWN_MS", 3_000)),
    };
    let each = (seconds * 1000 / gap_ms) as usize;
    let gap = Duration::from_millis(gap_ms);
    let Some(run) = groups_under_loss(n, loss, each, gap, Some(churn), "churn-long") else {
        return;
    };
    run.print(&format!(
        "{n} daemons, {loss}% loss, {seconds} s, one cut off {:?} every {:?}",
        churn.down, churn.every
    ));
    assert!(run.view_changes > 0, "the cuts changed no view");
}

/// The same, short: three daemons, 10% loss, the third cut off twice.
#[test]
fn flushes_finish_under_loss_while_a_daemon_is_cut_off_and_back() {
    let churn = Churn {
        every: Duration::from_secs(6),
        down: Duration::from_secs(2),
    };
    let gap = Duration::from_millis(20);
    let Some(run) = groups_under_loss(3, 10, 500, gap, Some(churn), "churn") else {
        return;
    };
    run.print("3 daemons, 10% loss, one cut off 2 s every 6 s");
    assert!(run.view_changes > 0, "the cuts changed no view");
    assert!(!run.flushes.is_empty(), "no flush logged");
}

/// The updates in a flood export file: `(origin, seq)` of each, lost ranges apart.
fn flood_exports(path: &std::path::Path) -> (Vec<(String, u64)>, u64) {
    use flotilla_core::flood::bundle::{self, BundleItem};
    let bytes = std::fs::read(path).unwrap_or_default();
    let Ok(items) = bundle::decode(&bytes::Bytes::from(bytes)) else {
        return (Vec::new(), 0);
    };
    let mut lost = 0;
    let mut got = Vec::new();
    for i in items {
        match i {
            BundleItem::Update { origin, seq, .. } => got.push((origin, seq)),
            BundleItem::Lost { from, to, .. } => lost += to - from + 1,
        }
    }
    (got, lost)
}

/// `n` flood sites in namespaces (site 0 the master), `loss` percent loss on every
/// link, `count` updates flooded from site 0 one client at a time. Every other site
/// must export every update exactly once (none lost: storage keeps them all); returns
/// the tail — from the last update taken to the last site exporting everything.
fn flood_under_loss(n: usize, loss: u32, count: usize, test: &str) -> Option<Duration> {
    let net = match Netns::new(n, 0) {
        Ok(net) => net,
        Err(e) => {
            eprintln!("SKIPPED {test}: {e}");
            return None;
        }
    };
    let dir = std::env::temp_dir().join(format!("flotilla-netns-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (client_port, data_port) = (7500, 7501);
    let mut conf = String::new();
    for i in 0..n {
        conf.push_str(&format!(
            "(:site-define (:site-name s{i}) (:inet-address {}) (:client-port {client_port}) \
             (:data-port {data_port}))\n",
            net.ip(i)
        ));
    }
    conf.push_str("(:group-define (:group-name g) (:master-site s0) (:connectivity 2)");
    for i in 0..n {
        conf.push_str(&format!(" (:site s{i})"));
    }
    conf.push_str(
        " (:ping-period 0.5) (:estimates-period 1) (:join-period 1) (:digest-period 0.1))\n",
    );
    // `FLOTILLA_PURGE`: the sites' `log-purge-period` in seconds (issue 16 lost updates
    // at 30 % loss with 30).
    let purge: u64 = env_or("FLOTILLA_PURGE", 3600);
    conf.push_str(&format!(
        "(:local (:export-command \"cat >> {}/$FLOOD_SITE.out\") (:log-purge-period {purge}))\n",
        dir.display()
    ));
    let path = dir.join("flood.conf");
    std::fs::write(&path, conf).unwrap();
    let mut daemons = Vec::new();
    for i in 0..n {
        let mut cmd = net.command(i, flotilla());
        cmd.args(["floodd", "--site", &format!("s{i}")])
            .arg("--config")
            .arg(&path);
        daemons.push(Daemon::start(cmd, net.addr(i, data_port)));
    }
    let ask = |i: usize, args: &[&str], input: &[u8]| -> String {
        let mut cmd = net.command(i, flotilla());
        cmd.args(["flood", "--daemon", &net.addr(i, client_port).to_string()])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("flotilla flood");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    for i in 0..n {
        wait_until(&format!("s{i} to hold a topology of {n}"), LIMIT, || {
            ask(i, &["topology"], b"")
                .contains(&format!("members {n}"))
                .then_some(())
        });
    }
    net.set_loss(loss).expect("loss");
    if env_or("FLOTILLA_PIPELINE", 0) == 1 {
        // Issue 16's load: every update on one client connection, as fast as the site
        // takes them (bash's /dev/tcp inside s0's namespace; the answers read meanwhile).
        let answers = dir.join("answers");
        let script = format!(
            "exec 3<>/dev/tcp/{ip}/{client_port}; cat <&3 > {a} & \
             for k in $(seq 0 {last}); do p=\"update $k\"; printf 'binary %d g\\n%s' ${{#p}} \"$p\" >&3; done; \
             while [ $(grep -c '^250 flooded' {a}) -lt {count} ]; do sleep 0.05; done; exec 3>&-",
            ip = net.ip(0),
            a = answers.display(),
            last = count - 1,
        );
        let started = Instant::now();
        let st = net
            .command(0, std::path::Path::new("/bin/bash"))
            .args(["-c", &script])
            .status()
            .expect("bash");
        assert!(st.success(), "the pipelined sender failed");
        println!(
            "{count} updates taken by s0 in {:?} on one connection",
            started.elapsed()
        );
    } else {
        for k in 0..count {
            let out = ask(
                0,
                &["send", "--binary", "g"],
                format!("update {k}").as_bytes(),
            );
            assert!(out.starts_with("flooded to g"), "{out}");
        }
    }
    let taken = Instant::now();
    let want: std::collections::BTreeSet<u64> = (1..=count as u64).collect();
    let done = |i: usize| {
        let (got, lost) = flood_exports(&dir.join(format!("s{i}.out")));
        assert_eq!(lost, 0, "s{i} reported updates lost under {loss}% loss");
        let seqs: std::collections::BTreeSet<u64> = got.iter().map(|g| g.1).collect();
        assert_eq!(seqs.len(), got.len(), "s{i} exported an update twice");
        seqs == want
    };
    wait_until(
        &format!("every site to export {count} updates under {loss}% loss"),
        Duration::from_secs(300),
        || (1..n).all(done).then_some(()),
    );
    let tail = taken.elapsed();
    drop(daemons);
    let _ = std::fs::remove_dir_all(&dir);
    Some(tail)
}

/// Finding 5 of issue 16, short: three sites, 10% loss, every update exported at every
/// site, none lost or twice.
#[test]
fn three_flood_sites_under_ten_percent_loss_export_everything() {
    if let Some(tail) = flood_under_loss(3, 10, 100, "flood-short") {
        println!("3 flood sites, 10% loss, 100 updates: tail {tail:?}");
    }
}

/// The flood tail at 0, 10 and 30% loss (five sites, `FLOTILLA_UPDATES`, default 500).
#[test]
#[ignore = "a minute or more: run on demand (see the file's header)"]
fn flood_tail_at_0_10_30_percent_loss() {
    let count = env_or("FLOTILLA_UPDATES", 500);
    for loss in [0, 10, 30] {
        let Some(tail) = flood_under_loss(5, loss, count, &format!("flood-{loss}")) else {
            return;
        };
        println!("5 flood sites, {loss}% loss, {count} updates: tail {tail:?}");
    }
}
