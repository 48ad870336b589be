//! Virtual IPs moved for real (issue 18): three nodes and a client, each in its own
//! network namespace on one bridge, every node running `flotilla groupd` and
//! `flotilla vipd`; the client pings the VIP every 10 ms while the holder is killed
//! (-9, both processes), stopped (SIGSTOP), moved by an unprivileged user, and cut off
//! by nftables. After each, exactly one node has the VIP's address — read from the
//! kernel with `ip addr` — and the client reaches it.
//!
//! It is part of `cargo test`; it skips, saying why, where namespaces cannot be made
//! (not root, no `ip`, `nft` or `ping`). It prints the outage and the lost pings of each
//! event; it asserts no time but generous liveness bounds. The comparison with
//! keepalived is `benches/vip-vs-keepalived.sh` (BENCHMARKS.md).

// Tests drive processes: they need threads, sleeps and the clock.
#![allow(clippy::disallowed_methods)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_tests::netns::Netns;
use flotilla_tests::process::{Daemon, LIMIT, flotilla, wait_until};

const PORT: u16 = 4803;
const NODES: usize = 3;
const CLIENT: usize = 3;

/// One cluster: the namespaces, each node's groupd and vipd, their sockets.
struct Vips {
    net: Netns,
    dir: PathBuf,
    vip: IpAddr,
    groupd: Vec<Option<Daemon>>,
    vipd: Vec<Option<Daemon>>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A command's standard output followed by its standard error.
fn both(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]))
}

impl Vips {
    fn start(test: &str) -> Option<Vips> {
        if sh(&["sh", "-c", "command -v ping"]).stdout.is_empty() {
            eprintln!("SKIPPED {test}: no ping here (apt-get install iputils-ping)");
            return None;
        }
        let net = match Netns::new(NODES + 1, 0) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("SKIPPED {test}: {e}");
                return None;
            }
        };
        let dir = std::env::temp_dir().join(format!("flotilla-vip-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The sockets' directory lets the unprivileged user through, and n1's vipd (run
        // as nobody) make its socket there.
        sh(&["chmod", "1777", dir.to_str().unwrap()]);
        let vip = match net.ip(199) {
            IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(v.octets())),
            v6 => v6,
        };
        let config = dir.join("vip.conf");
        std::fs::write(
            &config,
            format!(
                "(:cluster (:group vip) (:nodes n0 n1 n2))\n\
                 (:vip (:name web) (:address {vip}/24 eth0) (:prefer n0))\n\
                 (:announce (:count 3) (:interval 50ms))\n\
                 (:notify \"echo $VIPD_NODE >> {}/notify-$VIPD_NODE.log\")\n",
                dir.display()
            ),
        )
        .unwrap();
        let mut v = Vips {
            net,
            dir,
            vip,
            groupd: (0..NODES).map(|_| None).collect(),
            vipd: (0..NODES).map(|_| None).collect(),
        };
        for i in 0..NODES {
            v.start_groupd(i);
        }
        wait_until("three daemons in one view", LIMIT, || {
            let out = v.flotilla_in(0, &["members", "--daemon", &v.gsock(0)]);
            out.contains("members=3").then_some(())
        });
        for i in 0..NODES {
            v.start_vipd(i);
        }
        Some(v)
    }

    fn gsock(&self, i: usize) -> String {
        self.dir.join(format!("n{i}.g")).display().to_string()
    }

    fn vsock(&self, i: usize) -> String {
        self.dir.join(format!("n{i}.v")).display().to_string()
    }

    fn start_groupd(&mut self, i: usize) {
        let listen = self.net.addr(i, PORT);
        let mut cmd = self.net.command(i, flotilla());
        cmd.args(["groupd", "--name", &format!("n{i}")])
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--socket")
            .arg(self.gsock(i));
        for j in 0..NODES {
            if j != i {
                cmd.arg("--join").arg(self.net.addr(j, PORT).to_string());
            }
        }
        self.groupd[i] = Some(Daemon::start(cmd, listen));
    }

    fn start_vipd(&mut self, i: usize) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.net.host(i)]);
        if i == 1 {
            // n1's vipd runs as nobody with CAP_NET_ADMIN and CAP_NET_RAW and nothing
            // else: all it needs.
            cmd.args([
                "setpriv",
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
            ])
            .args(["--inh-caps", "-all,+net_admin,+net_raw"])
            .args(["--ambient-caps", "+net_admin,+net_raw"]);
        }
        cmd.arg(flotilla());
        // n2's socket is closed to other users: the unprivileged check below uses it.
        let mode = if i == 2 { "600" } else { "666" };
        cmd.args(["vipd", "--node", &format!("n{i}")])
            .arg("--config")
            .arg(self.dir.join("vip.conf"))
            // nobody cannot open root's groupd socket: n1 reaches its groupd over TCP.
            .arg("--groupd")
            .arg(match i {
                1 => self.net.addr(i, PORT).to_string(),
                _ => self.gsock(i),
            })
            .args(["--socket", &self.vsock(i)])
            .args(["--socket-mode", mode]);
        let none = SocketAddr::from(([0, 0, 0, 0], 0));
        self.vipd[i] = Some(Daemon::start_ready(
            cmd,
            none,
            &[&format!("vipd n{i} serving")],
        ));
    }

    /// `flotilla ARGS` inside node `i`'s namespace, its stdout and stderr.
    fn flotilla_in(&self, i: usize, args: &[&str]) -> String {
        let out = self
            .net
            .command(i, flotilla())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run flotilla");
        both(&out)
    }

    /// `flotilla vip ARGS` on node `i` as user nobody.
    fn vip_as_nobody(&self, i: usize, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", self.net.host(i)])
            .args([
                "setpriv",
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
            ])
            .arg(flotilla())
            .args(["vip", "--socket", &self.vsock(i)])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run flotilla vip");
        (out.status.success(), both(&out))
    }

    /// Whether node `i`'s kernel has the VIP's address.
    fn has_vip(&self, i: usize) -> bool {
        let out = sh(&["ip", "-n", self.net.host(i), "-br", "addr", "show", "eth0"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {}/24", self.vip))
    }

    fn holders(&self) -> Vec<usize> {
        (0..NODES).filter(|&i| self.has_vip(i)).collect()
    }

    /// Waits until exactly one node of `among` has the address and no other node has
    /// it; that node.
    fn one_holder(&self, what: &str, among: &[usize], limit: Duration) -> usize {
        wait_until(what, limit, || match self.holders().as_slice() {
            [h] if among.contains(h) => Some(*h),
            _ => None,
        })
    }

    /// Pings the VIP from the client every 10 ms for `secs` seconds while `event` runs
    /// (after one second); what the client saw.
    fn pinged(&self, secs: u32, event: impl FnOnce()) -> Pings {
        let ping = Command::new("ip")
            .args(["netns", "exec", self.net.host(CLIENT)])
            .args(["ping", "-D", "-n", "-O", "-i", "0.01", "-W", "1", "-w"])
            .arg(secs.to_string())
            .arg(self.vip.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ping");
        thread::sleep(Duration::from_secs(1));
        let t0 = now_secs();
        event();
        let out = ping.wait_with_output().expect("ping output");
        Pings::read(&String::from_utf8_lossy(&out.stdout), t0)
    }

    fn signal(&self, sig: &str, i: usize) {
        for d in [&self.groupd[i], &self.vipd[i]].into_iter().flatten() {
            sh(&["kill", sig, &d.pid().to_string()]);
        }
    }
}

impl Drop for Vips {
    fn drop(&mut self) {
        // Stopped processes must be let go before they are killed and reaped.
        for i in 0..NODES {
            self.signal("-CONT", i);
        }
        self.vipd.clear();
        self.groupd.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the client's pings showed around an event at `t0`.
#[derive(Debug)]
struct Pings {
    sent: usize,
    answered: usize,
    /// The longest time without an answer.
    longest_gap: f64,
    /// From the event to the first answer after it.
    first_after: Option<f64>,
}

impl Pings {
    fn read(out: &str, t0: f64) -> Pings {
        let times: Vec<f64> = out
            .lines()
            .filter(|l| l.contains("bytes from"))
            .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
            .collect();
        let sent = out
            .lines()
            .find_map(|l| l.split(" packets transmitted").next()?.parse().ok())
            .unwrap_or(0);
        let longest_gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        Pings {
            sent,
            answered: times.len(),
            longest_gap,
            first_after: times.iter().find(|&&t| t > t0).map(|t| t - t0),
        }
    }

    fn lost(&self) -> usize {
        self.sent.saturating_sub(self.answered)
    }

    fn say(&self, what: &str) {
        eprintln!(
            "{what}: {} of {} pings lost, longest silence {:.0} ms, first answer {:.0} ms after the event",
            self.lost(),
            self.sent,
            self.longest_gap * 1000.0,
            self.first_after.unwrap_or(f64::NAN) * 1000.0
        );
    }
}

#[test]
fn a_vip_follows_crashes_stops_moves_and_partitions_in_namespaces() {
    let Some(mut v) = Vips::start("vip-e2e") else {
        return;
    };
    let first = v.one_holder("the VIP on its preferred node", &[0], LIMIT);
    assert_eq!(first, 0);
    // The notify hook ran on the acquire, with the event, the VIP and the holders.
    // (Each node's own file: n1's vipd runs as another user.)
    let notified = |node: &str| {
        std::fs::read_to_string(v.dir.join(format!("notify-{node}.log"))).unwrap_or_default()
    };
    wait_until("the acquire hook", LIMIT, || {
        notified("n0").contains("n0 acquire web").then_some(())
    });

    // The application, not root, reads and steers; a socket of mode 600 keeps it out.
    wait_until("n1's agent to see n0 hold the VIP", LIMIT, || {
        let (ok, status) = v.vip_as_nobody(1, &["status"]);
        (ok && status.contains("web") && status.contains("held by n0")).then_some(())
    });
    let (ok, refused) = v.vip_as_nobody(2, &["status"]);
    assert!(!ok && refused.contains("ermission denied"), "{refused}");

    // A forced move, under pings every 10 ms.
    let mut answer = (false, String::new());
    let pings = v.pinged(2, || answer = v.vip_as_nobody(1, &["move", "web", "n1"]));
    assert!(
        answer.0 && answer.1.contains("moved web to n1"),
        "{}",
        answer.1
    );
    assert_eq!(v.holders(), [1], "the move is done when it says so");
    wait_until("the release and acquire hooks", LIMIT, || {
        (notified("n0").contains("n0 release web") && notified("n1").contains("n1 acquire web"))
            .then_some(())
    });
    assert!(pings.answered > 0);
    pings.say("forced move n0 -> n1");

    // kill -9 of the holder's vipd alone: its groupd sees the client go and the others
    // take the VIP at once; the address it left expires by its kernel lifetime.
    let mut victim = v.vipd[1].take().unwrap();
    let pings = v.pinged(3, || victim.kill());
    pings.say("kill -9 of the holder's vipd");
    let after_vipd = v.one_holder("the VIP off the node whose vipd died", &[0, 2], LIMIT);
    v.start_vipd(1);
    // kill -9 of the holder's groupd alone: its vipd removes the address at once, and
    // joins again by itself when groupd is back.
    let mut victim = v.groupd[after_vipd].take().unwrap();
    let pings = v.pinged(3, || victim.kill());
    pings.say("kill -9 of the holder's groupd");
    let others: Vec<usize> = (0..NODES).filter(|&i| i != after_vipd).collect();
    let moved = v.one_holder("the VIP off the node whose groupd died", &others, LIMIT);
    v.start_groupd(after_vipd);
    let back = v.vsock(after_vipd);
    wait_until("the vipd back in its group", LIMIT, || {
        let out = v.flotilla_in(after_vipd, &["vip", "--socket", &back, "status"]);
        out.contains("members n0,n1,n2").then_some(())
    });
    assert_eq!(v.holders(), [moved]);
    // Back to the start: n1 holds the VIP.
    let (ok, out) = v.vip_as_nobody(1, &["move", "web", "n1"]);
    assert!(ok, "{out}");

    // The holder crashes: its cable pulled and its groupd and vipd killed with -9 (its
    // kernel would go on answering for the address otherwise).
    let pings = v.pinged(3, || {
        v.net.plug(1, false).unwrap();
        v.signal("-KILL", 1);
    });
    pings.say("crash of the holder (cable pulled, kill -9 of groupd and vipd)");
    let second = v.one_holder("a survivor holds the VIP", &[0, 2], LIMIT);
    assert!(
        pings.first_after.is_some(),
        "the VIP never answered again: {pings:?}"
    );
    v.groupd[1] = None;
    v.vipd[1] = None;
    // Back with the address it had: the kernel's lifetime has removed it.
    wait_until("the crashed node's address expired", LIMIT, || {
        (!v.has_vip(1)).then_some(())
    });
    v.net.plug(1, true).unwrap();
    v.start_groupd(1);
    v.start_vipd(1);
    thread::sleep(Duration::from_secs(2));
    assert_eq!(
        v.holders(),
        [second],
        "a node coming back takes nothing (sticky)"
    );

    // SIGSTOP of the holder: the others take over; the stopped node's address expires
    // by its kernel lifetime, and it holds nothing once it runs again.
    // Its kernel answers for the address until the lifetime runs out, and the new
    // holder's announcements take the client over: no outage is expected.
    let pings = v.pinged(3, || v.signal("-STOP", second));
    pings.say("SIGSTOP of the holder (groupd and vipd)");
    let others: Vec<usize> = (0..NODES).filter(|&i| i != second).collect();
    let third = v.one_holder("the VIP off the stopped node", &others, LIMIT);
    v.signal("-CONT", second);
    thread::sleep(Duration::from_secs(2));
    assert_eq!(v.holders(), [third], "the resumed node gave the VIP up");

    // A partition: the holder is cut from the other two; only the majority holds.
    let rest: Vec<usize> = (0..NODES).filter(|&i| i != third).collect();
    v.net.cut(third, &rest, 0).unwrap();
    for &i in &rest {
        v.net.cut(i, &[third], 0).unwrap();
    }
    let fourth = v.one_holder("the majority holds the VIP", &rest, LIMIT);
    v.net.set_loss(0).unwrap();
    thread::sleep(Duration::from_secs(3));
    assert_eq!(v.holders(), [fourth], "after the heal one node holds it");
    let (ok, status) = v.vip_as_nobody(third, &["status", "--json"]);
    if third != 2 {
        assert!(ok, "{status}");
        assert!(
            status.contains(&format!("\"holder\":\"n{fourth}\"")),
            "{status}"
        );
    }
}
