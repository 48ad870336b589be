//! `flotilla vipd` and `flotilla vip` as real processes on loopback (issue 18), without
//! root: the VIP's interface does not exist here, so every add fails, which is itself a
//! path to test (the agent says `add-failed` and nothing is held). What is tested: the
//! configuration check and its limits, the control socket's limits at their edge and
//! past it, its file mode, the commands' output, and a vipd that outlives its groupd
//! (kill -9) and joins again when it is back. Moving addresses for real is
//! `vip_netns.rs`.

// Tests drive processes: they need threads, sleeps and the clock.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_tests::process::{Daemon, LIMIT, command, free_addr, run, wait_until};

struct Control {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Control {
    fn open(path: &Path) -> Control {
        let s = UnixStream::connect(path).expect("connect to vipd's socket");
        s.set_read_timeout(Some(LIMIT)).unwrap();
        Control {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(_) => l.trim_end_matches('\n').to_string(),
            Err(e) => panic!("no line within {LIMIT:?}: {e}"),
        }
    }

    /// Sends `text` as it is and reads one whole reply (its lines).
    fn ask(&mut self, text: &str) -> Vec<String> {
        self.w.write_all(text.as_bytes()).unwrap();
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            let last = l.len() < 4 || l.as_bytes()[3] != b'-';
            lines.push(l);
            if last {
                return lines;
            }
        }
    }
}

struct Node {
    dir: PathBuf,
    groupd_addr: SocketAddr,
    groupd: Option<Daemon>,
    vipd: Option<Daemon>,
}

impl Node {
    fn start(test: &str) -> Node {
        let dir = std::env::temp_dir().join(format!("flotilla-vipp-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("vip.conf"),
            "(:cluster (:group vip) (:nodes g0))\n\
             (:vip (:name web) (:address 10.250.0.50/24 nosuch0))\n\
             (:timing (:retry 100ms))\n",
        )
        .unwrap();
        let mut n = Node {
            dir,
            groupd_addr: free_addr(),
            groupd: None,
            vipd: None,
        };
        n.start_groupd();
        let mut cmd = command(&["vipd", "--node", "g0", "--socket-mode", "600"]);
        cmd.arg("--config")
            .arg(n.dir.join("vip.conf"))
            .arg("--groupd")
            .arg(n.groupd_addr.to_string())
            .arg("--socket")
            .arg(n.socket());
        let none = SocketAddr::from(([0, 0, 0, 0], 0));
        n.vipd = Some(Daemon::start_ready(cmd, none, &["vipd g0 serving 1 VIPs"]));
        n
    }

    fn start_groupd(&mut self) {
        self.groupd = Some(Daemon::groupd("g0", self.groupd_addr, &[] as &[&str]));
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("vipd.sock")
    }

    fn status(&self) -> String {
        let mut c = Control::open(&self.socket());
        assert!(c.line().starts_with("220 flotilla vipd g0 ready"));
        c.ask("status\n").join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.vipd = None;
        self.groupd = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn check_says_ok_or_names_the_error_and_the_limit() {
    let dir = std::env::temp_dir().join(format!("flotilla-vipcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.conf");
    std::fs::write(
        &good,
        "(:cluster (:nodes a b) (:witness w))\n(:vip (:name web) (:address 10.0.0.50/24 eth0))\n",
    )
    .unwrap();
    let out = run(&["vipd", "--check", good.to_str().unwrap()], Duration::ZERO);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("ok: 1 VIPs (1 addresses) on nodes a b with witness w, group vip"),
        "{}",
        out.stdout
    );
    // A node the file does not name.
    let out = run(
        &["vipd", "--check", good.to_str().unwrap(), "--node", "zz"],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("node zz is neither"), "{}", out.stderr);
    // A syntax error names its place; the daemon itself exits 2 on it.
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "(:cluster (:nodes a)\n").unwrap();
    let out = run(&["vipd", "--check", bad.to_str().unwrap()], Duration::ZERO);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("bad.conf:1:1"), "{}", out.stderr);
    let out = run(
        &["vipd", "--config", bad.to_str().unwrap(), "--node", "a"],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    // The size limit: at it, the file is read (and is valid: padding is space); one
    // byte past it, refused before it is parsed.
    let limit = flotilla_core::vip::config::MAX_CONFIG_BYTES;
    let text = std::fs::read_to_string(&good).unwrap();
    let edge = dir.join("edge.conf");
    std::fs::write(&edge, format!("{text}{}", " ".repeat(limit - text.len()))).unwrap();
    let out = run(&["vipd", "--check", edge.to_str().unwrap()], Duration::ZERO);
    assert!(out.status.success(), "{}", out.stderr);
    let past = dir.join("past.conf");
    std::fs::write(
        &past,
        format!("{text}{}", " ".repeat(limit + 1 - text.len())),
    )
    .unwrap();
    let out = run(&["vipd", "--check", past.to_str().unwrap()], Duration::ZERO);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("larger than 1048576 bytes"),
        "{}",
        out.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_control_socket_holds_its_limits_and_its_mode() {
    let node = Node::start("limits");
    // The socket has the mode asked for.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The agent joins its group; the add fails (no such interface), so it says so and
    // holds nothing.
    wait_until("the agent in its group", LIMIT, || {
        let s = node.status();
        (s.contains("members=g0") && s.contains("settled=yes")).then_some(s)
    });
    let mut c = Control::open(&node.socket());
    c.line();
    // A line of exactly 1024 bytes is read; one byte more is refused and closed.
    let edge = format!("{}\n", "x".repeat(1024));
    assert!(c.ask(&edge)[0].starts_with("500 unknown command"));
    let past = format!("{}\n", "x".repeat(1025));
    assert_eq!(c.ask(&past), ["500 line longer than 1024 bytes"]);
    assert_eq!(c.line(), "", "closed after the refusal");
    // 64 connections are served; the 65th is told why and closed.
    let mut open: Vec<Control> = (0..64)
        .map(|_| {
            let mut c = Control::open(&node.socket());
            assert!(c.line().starts_with("220 "));
            c
        })
        .collect();
    let mut extra = Control::open(&node.socket());
    assert_eq!(extra.line(), "421 too many control connections (64)");
    assert_eq!(extra.line(), "");
    // One closes: a new one is served again.
    open.pop();
    wait_until("a free control slot", LIMIT, || {
        let mut c = Control::open(&node.socket());
        c.line().starts_with("220 ").then_some(())
    });
    drop(open);
    // Bad requests get typed refusals, never a hang.
    let mut c = wait_until("the closed connections gone", LIMIT, || {
        let mut c = Control::open(&node.socket());
        c.line().starts_with("220 ").then_some(c)
    });
    assert!(c.ask("move web\n")[0].starts_with("501 "));
    assert!(c.ask("move nosuch g0\n")[0].starts_with("450 "));
    assert!(c.ask("prefer web nobody\n")[0].starts_with("450 "));
    assert!(c.ask("eligible maybe\n")[0].starts_with("501 "));
    let moved = c.ask("move web g0\n");
    assert!(moved[0].starts_with("450 move of web failed"), "{moved:?}");
    // The command line: status as text and JSON, eligible, a failing move's exit.
    let sock = node.socket().display().to_string();
    let out = run(&["vip", "--socket", &sock, "status"], Duration::ZERO);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("web 10.250.0.50/24@nosuch0"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("node g0 generation"), "{}", out.stdout);
    let out = run(
        &["vip", "--socket", &sock, "--json", "status"],
        Duration::ZERO,
    );
    assert!(out.stdout.contains("\"vip\":\"web\""), "{}", out.stdout);
    assert!(out.stdout.contains("\"node\":\"g0\""), "{}", out.stdout);
    let out = run(
        &["vip", "--socket", &sock, "eligible", "off"],
        Duration::ZERO,
    );
    assert_eq!(out.stdout.trim(), "eligible off");
    let out = run(
        &["vip", "--socket", &sock, "move", "web", "g0"],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("move of web failed"), "{}", out.stderr);
    let out = run(
        &["vip", "--socket", "/nonexistent/vipd.sock", "status"],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("cannot reach vipd"), "{}", out.stderr);
}

#[test]
fn vipd_outlives_its_groupd_and_joins_again() {
    let mut node = Node::start("rejoin");
    wait_until("the agent in its group", LIMIT, || {
        node.status().contains("members=g0").then_some(())
    });
    // kill -9 of groupd: the agent is out of its group, and says so.
    node.groupd.as_mut().unwrap().kill();
    wait_until("the agent out of its group", LIMIT, || {
        node.status().contains("members=- primary=no").then_some(())
    });
    assert!(node.vipd.as_mut().unwrap().running());
    // groupd back on the same address: vipd joins again by itself.
    node.start_groupd();
    wait_until("the agent back in its group", LIMIT, || {
        node.status().contains("members=g0").then_some(())
    });
    let log = node.vipd.as_ref().unwrap().stderr();
    assert!(log.contains("lost groupd"), "{log}");
    // SIGTERM: vipd leaves, removes its socket and exits 0.
    let pid = node.vipd.as_ref().unwrap().pid().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = node.vipd.as_mut().unwrap().wait_exit(LIMIT);
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(!node.socket().exists());
}

#[test]
fn a_node_name_its_groupd_does_not_use_is_reported() {
    let dir = std::env::temp_dir().join(format!("flotilla-vipname-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("two.conf");
    std::fs::write(
        &config,
        "(:cluster (:group vip) (:nodes g0 zz))\n\
         (:vip (:name web) (:address 10.250.0.50/24 nosuch0))\n",
    )
    .unwrap();
    let addr = free_addr();
    let _groupd = Daemon::groupd("g0", addr, &[] as &[&str]);
    // zz's agent on g0's daemon: it joins, but the daemon calls its node g0.
    let mut cmd = command(&["vipd", "--node", "zz"]);
    cmd.arg("--config")
        .arg(&config)
        .arg("--groupd")
        .arg(addr.to_string())
        .arg("--socket")
        .arg(dir.join("zz.sock"));
    let none = SocketAddr::from(([0, 0, 0, 0], 0));
    let zz = Daemon::start_ready(cmd, none, &["vipd zz serving"]);
    wait_until("the misnamed node reported", LIMIT, || {
        zz.stderr()
            .contains("this groupd does not name its node zz: --node must be its --name")
            .then_some(())
    });
    drop(zz);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_health_check_makes_the_node_unhealthy_until_it_passes() {
    // The health check runs as a real command every 100 ms: it passes while a file
    // exists. The node's facts (status) follow it both ways.
    let dir = std::env::temp_dir().join(format!("flotilla-viphealth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = dir.join("healthy");
    let config = dir.join("vip.conf");
    std::fs::write(
        &config,
        format!(
            "(:cluster (:group vip) (:nodes g0))\n\
             (:vip (:name web) (:address 10.250.0.50/24 nosuch0))\n\
             (:health (:name flag) (:command \"test -e {}\") (:interval 100ms) (:timeout 1s))\n",
            flag.display()
        ),
    )
    .unwrap();
    let addr = free_addr();
    let _groupd = Daemon::groupd("g0", addr, &[] as &[&str]);
    let socket = dir.join("vipd.sock");
    let mut cmd = command(&["vipd", "--node", "g0"]);
    cmd.arg("--config")
        .arg(&config)
        .arg("--groupd")
        .arg(addr.to_string())
        .arg("--socket")
        .arg(&socket);
    let none = SocketAddr::from(([0, 0, 0, 0], 0));
    let _vipd = Daemon::start_ready(cmd, none, &["vipd g0 serving"]);
    let status = || {
        let mut c = Control::open(&socket);
        c.line();
        c.ask("status\n").join("\n")
    };
    wait_until("unhealthy while the check fails", LIMIT, || {
        status().contains("healthy=no").then_some(())
    });
    std::fs::write(&flag, "").unwrap();
    wait_until("healthy once it passes", LIMIT, || {
        status().contains("healthy=yes").then_some(())
    });
    std::fs::remove_file(&flag).unwrap();
    wait_until("unhealthy again", LIMIT, || {
        status().contains("healthy=no").then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}
