//! The flood daemon (seed 002) as a user runs it: `flotilla floodd` processes on loopback
//! from configuration files in the seed's format, clients on their client ports (raw
//! lines, as telnet would send them, and `flotilla flood`), export commands writing
//! files, and the daemons killed, restarted and stopped.
//!
//! Every wait is bounded and polls; nothing asserts how long anything took.

// Tests drive processes: they need threads, sleeps and the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use flotilla_core::flood::MAX_UPDATE_BYTES;
use flotilla_core::flood::bundle::{self, BundleItem};
use flotilla_tests::process::{Daemon, LIMIT, command, flotilla, free_addr, run, wait_until};

/// A directory of its own for one test: removed when the test passes, kept (with the
/// configuration files and exports) when it fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("flotilla-flood-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One site of a test cluster: where it listens, its file, and where it exports.
struct Site {
    name: &'static str,
    data: SocketAddr,
    client: SocketAddr,
    conf: PathBuf,
    out: PathBuf,
}

/// Writes one configuration file per site, each with its own `(:local …)`: the sites and
/// the group are the same in all of them (`a` the master), with the short periods a test
/// wants.
fn sites(dir: &Path, locals: &[(&'static str, String)]) -> Vec<Site> {
    let sites: Vec<Site> = locals
        .iter()
        .map(|(name, _)| Site {
            name,
            data: free_addr(),
            client: free_addr(),
            conf: dir.join(format!("{name}.conf")),
            out: dir.join(format!("{name}.out")),
        })
        .collect();
    let mut common = String::from(";; a test cluster on loopback\n");
    for s in &sites {
        common.push_str(&format!(
            "(:site-define (:site-name {}) (:inet-address 127.0.0.1)\n  (:client-port {}) (:data-port {}))\n",
            s.name,
            s.client.port(),
            s.data.port()
        ));
    }
    common.push_str("(:group-define (:group-name g) (:master-site a)");
    for s in &sites {
        common.push_str(&format!(" (:site {})", s.name));
    }
    common.push_str(
        "\n  (:ping-period 0.5) (:estimates-period 1) (:join-period 1) (:update-period 30)\n  \
         (:digest-period 0.1))\n",
    );
    for (s, (_, local)) in sites.iter().zip(locals) {
        std::fs::write(&s.conf, format!("{common}(:local {local})\n")).unwrap();
    }
    sites
}

/// An export command that appends each bundle to `DIR/SITE.out` (`$FLOOD_SITE` names the
/// site), bounded so that a site under test gives up in time.
fn appending(dir: &Path) -> String {
    format!(
        "(:export-command \"cat >> {}/$FLOOD_SITE.out\") (:export-timeout 5)",
        dir.display()
    )
}

fn start(s: &Site) -> Daemon {
    Daemon::floodd(&s.conf, s.name, s.data)
}

/// A raw client-port connection, as telnet would make.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    /// Connects and reads the greeting.
    fn connect(addr: SocketAddr) -> (Client, String) {
        let w = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
        w.set_read_timeout(Some(LIMIT)).unwrap();
        w.set_nodelay(true).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        let mut c = Client { w, r };
        let greeting = c.line().expect("greeting");
        (c, greeting)
    }

    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("send");
    }

    /// Every line of the next reply: `CODE-text` lines up to the `CODE text` one.
    fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .line()
                .unwrap_or_else(|| panic!("closed after {lines:?}"));
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    fn ask(&mut self, request: &str) -> Vec<String> {
        self.send(format!("{request}\n").as_bytes());
        self.reply()
    }

    /// Whether the daemon closes the connection (within [`LIMIT`]) without saying
    /// anything more.
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        match self.r.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

/// One request on a new connection.
fn ask(addr: SocketAddr, request: &str) -> Vec<String> {
    let (mut c, _) = Client::connect(addr);
    c.ask(request)
}

/// A counter from `statistics`.
fn stat(addr: SocketAddr, name: &str) -> u64 {
    let prefix = format!("211-{name} ");
    ask(addr, "statistics")
        .iter()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
        .unwrap_or_else(|| panic!("no {name} in statistics"))
}

/// An update as the daemon that took it names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Update {
    origin: String,
    incarnation: u64,
    seq: u64,
    data: Vec<u8>,
}

/// Reads `flooded to g as ORIGIN INCARNATION SEQ (N bytes)`, as a reply or as
/// `flotilla flood send` prints it.
fn flooded(text: &str, data: &[u8]) -> Update {
    let text = text.strip_prefix("250 ").unwrap_or(text).trim_end();
    let w: Vec<&str> = text.split(' ').collect();
    assert_eq!(w[..4], ["flooded", "to", "g", "as"], "{text}");
    assert_eq!(w[7], format!("({}", data.len()), "{text}");
    Update {
        origin: w[4].to_string(),
        incarnation: u64::from_str_radix(w[5], 16).unwrap(),
        seq: w[6].parse().unwrap(),
        data: data.to_vec(),
    }
}

/// The updates in a site's export file; `None` while it is absent or a bundle is being
/// appended.
fn exported(out: &Path) -> Option<Vec<Update>> {
    let bytes = std::fs::read(out).ok()?;
    let items = bundle::decode(&Bytes::from(bytes)).ok()?;
    Some(
        items
            .into_iter()
            .filter_map(|i| match i {
                BundleItem::Update {
                    origin,
                    incarnation,
                    seq,
                    data,
                    ..
                } => Some(Update {
                    origin,
                    incarnation,
                    seq,
                    data: data.to_vec(),
                }),
                BundleItem::Lost { .. } => None,
            })
            .collect(),
    )
}

/// Waits until `s` has exported every one of `want`.
fn wait_exported(s: &Site, want: &[&Update]) {
    wait_until(
        &format!("{} to export {} updates", s.name, want.len()),
        LIMIT,
        || {
            let got = exported(&s.out)?;
            want.iter()
                .all(|u| {
                    got.iter().any(|g| {
                        (&g.origin, g.incarnation, g.seq) == (&u.origin, u.incarnation, u.seq)
                    })
                })
                .then_some(())
        },
    );
}

/// Every update a site exported is one of `flooded`, from another site, byte for byte,
/// and none was exported twice.
fn check_exports(s: &Site, flooded: &[Update]) -> Vec<Update> {
    let got = exported(&s.out).unwrap_or_default();
    let mut seen = BTreeMap::new();
    for u in &got {
        assert_ne!(u.origin, s.name, "{} exported its own update {u:?}", s.name);
        let key = (u.origin.clone(), u.incarnation, u.seq);
        assert!(
            seen.insert(key.clone(), ()).is_none(),
            "{} exported {key:?} twice",
            s.name
        );
        let sent = flooded
            .iter()
            .find(|f| (&f.origin, f.incarnation, f.seq) == (&u.origin, u.incarnation, u.seq))
            .unwrap_or_else(|| panic!("{} exported {key:?}, which nobody flooded", s.name));
        assert!(sent.data == u.data, "{} exported {key:?} changed", s.name);
    }
    got
}

/// The topology a site has: `(version, members, links)`.
fn topology(addr: SocketAddr) -> Option<(u64, usize, usize)> {
    let (mut c, _) = Client::connect(addr);
    let lines = c.ask("topology");
    let head: Vec<&str> = lines.first()?.split(' ').collect();
    let ["250-group", "g", "version", v, "master", "a", "members", m] = head.as_slice() else {
        return None;
    };
    let links = lines.len() - 2;
    assert_eq!(lines.last()?, &format!("250 {links} links"));
    Some((v.parse().ok()?, m.parse().ok()?, links))
}

/// Waits until every site in `live` has the same topology of `members` sites, connected
/// (at least `members - 1` links).
fn wait_converged(live: &[&Site], members: usize) {
    wait_until(
        &format!("{members} sites to share a topology"),
        LIMIT,
        || {
            let seen: Vec<_> = live.iter().map(|s| topology(s.client)).collect();
            let first = seen.first().copied().flatten()?;
            (first.1 == members && first.2 + 1 >= members && seen.iter().all(|t| *t == Some(first)))
                .then_some(())
        },
    );
}

/// Processes whose command line is exactly `argv` (zombies have none, so they do not
/// count).
fn processes(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .count()
}

/// Three daemons flood to each other through client ports and `flotilla flood`, answer
/// every command, keep their limits, go on without one killed with kill -9, and stop on
/// `terminate` and SIGTERM with status 0.
#[test]
fn three_daemons_flood_answer_and_survive_a_crash() {
    let dir = TempDir::new("three");
    let local = appending(&dir);
    let s = sites(
        &dir,
        &[("a", local.clone()), ("b", local.clone()), ("c", local)],
    );
    let (a, b, c) = (&s[0], &s[1], &s[2]);
    let mut da = start(a);
    let mut db = start(b);
    let mut dc = start(c);
    wait_converged(&[a, b, c], 3);
    let mut sent: Vec<Update> = Vec::new();

    // `data` as a person types it: CRLF line ends, a stuffed dot on lines that begin
    // with one, an empty line, and a single dot to end.
    let (mut ca, greeting) = Client::connect(a.client);
    assert_eq!(greeting, "220 floodd a ready (help lists the commands)");
    ca.send(b"data\r\n");
    assert_eq!(ca.reply()[0].get(..4), Some("354 "));
    ca.send(b"line one\r\n..starts with a dot\r\n...two dots\r\n\r\nlast\r\n.\r\n");
    let reply = ca.reply();
    sent.push(flooded(
        &reply[0],
        b"line one\n.starts with a dot\n..two dots\n\nlast\n",
    ));
    // `binary` takes anything: NUL, a line holding a single dot, 0xff, CRLF.
    let (mut cb, _) = Client::connect(b.client);
    let raw = b"\x00bin\n.\n\xff\r\n.\r\nend".to_vec();
    cb.send(format!("binary {} g\n", raw.len()).as_bytes());
    cb.send(&raw);
    sent.push(flooded(&cb.reply()[0], &raw));
    // The same through `flotilla flood send`, FLOODD naming the daemon.
    let text = dir.join("text");
    std::fs::write(&text, b".dot first\nplain\n..\n").unwrap();
    let mut cmd = command(&["flood", "send", "g"]);
    cmd.arg(&text).env("FLOODD", c.client.to_string());
    let out = finish(cmd);
    sent.push(flooded(&out, b".dot first\nplain\n..\n"));
    let bin = dir.join("bin");
    let bytes: Vec<u8> = (0..=255u8).chain(*b"\n.\n\r\n").collect();
    std::fs::write(&bin, &bytes).unwrap();
    let mut cmd = command(&[
        "flood",
        "--daemon",
        &a.client.to_string(),
        "send",
        "--binary",
        "g",
    ]);
    cmd.arg(&bin);
    sent.push(flooded(&finish(cmd), &bytes));

    for site in [a, b, c] {
        let theirs: Vec<&Update> = sent.iter().filter(|u| u.origin != site.name).collect();
        wait_exported(site, &theirs);
        check_exports(site, &sent);
    }

    // What each command answers, first and last lines exactly.
    let a_member = format!(
        "250-a {} client={} neighbour up master",
        a.data,
        a.client.port()
    );
    assert_eq!(
        cb.ask("groups"),
        ["250-g master=a members=3 mode=tree", "250 1 groups"]
    );
    for request in ["group", "group g"] {
        let lines = cb.ask(request);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0], a_member);
        assert_eq!(
            lines[1],
            format!("250-b {} client={} self", b.data, b.client.port())
        );
        assert_eq!(lines[3], "250 3 sites in g");
    }
    let stats = cb.ask("statistics");
    assert_eq!(stats[0], "211-site b");
    assert_eq!(
        stats.last().unwrap(),
        &format!("211 {} values", stats.len() - 1)
    );
    assert!(stats.contains(&"211-originated 1".to_string()), "{stats:?}");
    let topo = cb.ask("topology g");
    assert!(
        topo[0].starts_with("250-group g version ") && topo[0].ends_with(" master a members 3")
    );
    assert_eq!(
        topo.last().unwrap(),
        &format!("250 {} links", topo.len() - 2)
    );
    assert!(topo.len() - 2 >= 2, "{topo:?}");

    // Bad commands are refused and the connection goes on.
    assert_eq!(
        cb.ask("frobnicate"),
        ["500 unknown command 'frobnicate' (try help)"]
    );
    assert_eq!(
        cb.ask("group nosuch"),
        ["501 no group nosuch here (this site is in: g)"]
    );
    assert_eq!(
        cb.ask("binary abc"),
        ["501 binary: size 'abc' is not a number of bytes"]
    );
    assert_eq!(cb.ask("groups").last().unwrap(), "250 1 groups");

    // Limits. A command line of exactly 4096 bytes is read (and is no command); one byte
    // more ends the connection.
    let (mut cc, _) = Client::connect(c.client);
    let long = "x".repeat(4096);
    assert_eq!(
        cc.ask(&long),
        [format!("500 unknown command '{}' (try help)", &long[..32])]
    );
    assert_eq!(cc.ask("groups").last().unwrap(), "250 1 groups");
    assert_eq!(
        cc.ask(&"x".repeat(4097)),
        ["500 request line longer than 4096 bytes"]
    );
    assert!(cc.closed());
    // The largest update is flooded and exported; one byte more ends the connection.
    let (mut cc, _) = Client::connect(c.client);
    let big: Vec<u8> = (0..MAX_UPDATE_BYTES).map(|i| (i % 251) as u8).collect();
    cc.send(format!("binary {MAX_UPDATE_BYTES}\n").as_bytes());
    cc.send(&big);
    sent.push(flooded(&cc.reply()[0], &big));
    assert_eq!(
        cc.ask(&format!("binary {}", MAX_UPDATE_BYTES + 1)),
        [format!(
            "552 an update of {} bytes is larger than the limit of {MAX_UPDATE_BYTES} bytes",
            MAX_UPDATE_BYTES + 1
        )]
    );
    assert!(cc.closed());
    // A `data` body past the limit is read to its end and refused; the connection goes
    // on.
    let (mut cc, _) = Client::connect(c.client);
    cc.send(b"data\n");
    assert_eq!(cc.reply()[0].get(..4), Some("354 "));
    let line = [b'y'; 1023];
    let lines = MAX_UPDATE_BYTES / 1024 + 1;
    for _ in 0..lines {
        cc.send(&line);
        cc.send(b"\n");
    }
    cc.send(b".\n");
    assert_eq!(
        cc.reply(),
        [format!(
            "552 an update of {} bytes is larger than the limit of {MAX_UPDATE_BYTES} bytes",
            lines * 1024
        )]
    );
    assert_eq!(cc.ask("groups").last().unwrap(), "250 1 groups");
    let largest = sent.last().unwrap();
    wait_exported(a, &[largest]);
    wait_exported(b, &[largest]);

    // `flotilla flood` as a person uses it, JSON included.
    let daemon = a.client.to_string();
    let out = finish(command(&["flood", "--daemon", &daemon, "stats", "--json"]));
    let json = parse_json(&out).unwrap_or_else(|e| panic!("stats --json: {e}: {out}"));
    assert_eq!(json.get("site"), Some(&Json::Str("a".into())));
    let values = json.get("values").expect("values");
    assert_eq!(values.get("originated"), Some(&Json::Num(2.0)), "{out}");
    assert!(
        matches!(values.get("incarnation"), Some(Json::Str(_))),
        "{out}"
    );
    let Some(Json::Arr(groups)) = json.get("groups") else {
        panic!("{out}")
    };
    assert_eq!(groups[0].get("name"), Some(&Json::Str("g".into())));
    let out = finish(command(&[
        "flood", "--daemon", &daemon, "topology", "--json",
    ]));
    let json = parse_json(&out).unwrap_or_else(|e| panic!("topology --json: {e}: {out}"));
    assert_eq!(json.get("master"), Some(&Json::Str("a".into())));
    let Some(Json::Arr(members)) = json.get("members") else {
        panic!("{out}")
    };
    assert_eq!(members.len(), 3, "{out}");
    let Some(Json::Arr(links)) = json.get("links") else {
        panic!("{out}")
    };
    assert!(
        links.len() >= 2 && links[0].get("cost_us").is_some(),
        "{out}"
    );
    let out = finish(command(&["flood", "--daemon", &daemon, "groups"]));
    assert_eq!(out, "g master=a members=3 mode=tree\n");
    let out = finish(command(&["flood", "--daemon", &daemon, "topology"]));
    assert!(
        out.starts_with("group g version ") && out.contains(" master a members 3\n"),
        "{out}"
    );
    let failed = run(
        &["flood", "--daemon", &daemon, "topology", "nosuch"],
        Duration::ZERO,
    );
    assert_eq!(failed.status.code(), Some(1), "{failed:#?}");
    assert_eq!(
        failed.stderr,
        "error: no group nosuch here (this site is in: g)\n"
    );
    let nobody = free_addr().to_string();
    let failed = run(&["flood", "--daemon", &nobody, "stats"], Duration::ZERO);
    assert_eq!(failed.status.code(), Some(1), "{failed:#?}");
    assert!(
        failed
            .stderr
            .starts_with(&format!("error: cannot reach floodd at {nobody}: ")),
        "{failed:#?}"
    );

    // kill -9 one daemon: the other two go on flooding to each other.
    dc.kill();
    let (mut ca, _) = Client::connect(a.client);
    let (mut cb, _) = Client::connect(b.client);
    for (client, text) in [(&mut ca, "from a, c down"), (&mut cb, "from b, c down")] {
        let data = format!("{text}\n");
        client.send(format!("binary {}\n{data}", data.len()).as_bytes());
        sent.push(flooded(&client.reply()[0], data.as_bytes()));
    }
    wait_exported(a, &[&sent[sent.len() - 1]]);
    wait_exported(b, &[&sent[sent.len() - 2]]);
    for site in [a, b] {
        check_exports(site, &sent);
    }

    // `terminate` from this host stops a daemon with status 0; so does SIGTERM.
    assert_eq!(cb.ask("terminate"), ["221 terminating"]);
    let status = db.wait_exit(LIMIT).expect("b to exit after terminate");
    assert!(status.success(), "{status:?}; stderr:\n{}", db.stderr());
    let killed = Command::new("kill")
        .args(["-TERM", &da.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = da.wait_exit(LIMIT).expect("a to exit after SIGTERM");
    assert!(status.success(), "{status:?}; stderr:\n{}", da.stderr());
}

/// A daemon killed with kill -9 and started again exports what comes next, and nothing
/// it exported before its crash, however long it then runs beside its neighbours.
#[test]
fn a_restarted_daemon_exports_nothing_twice() {
    let dir = TempDir::new("restart");
    let local = appending(&dir);
    let s = sites(
        &dir,
        &[("a", local.clone()), ("b", local.clone()), ("c", local)],
    );
    let (a, b, c) = (&s[0], &s[1], &s[2]);
    let _da = start(a);
    let _db = start(b);
    let mut dc = start(c);
    wait_converged(&[a, b, c], 3);
    let mut sent = Vec::new();
    let (mut ca, _) = Client::connect(a.client);
    let (mut cb, _) = Client::connect(b.client);
    for (from_a, text) in [(true, "a1"), (false, "b1"), (true, "a2")] {
        let client = if from_a { &mut ca } else { &mut cb };
        let data = format!("{text}\n");
        client.send(format!("binary {}\n{data}", data.len()).as_bytes());
        sent.push(flooded(&client.reply()[0], data.as_bytes()));
    }
    wait_exported(c, &sent.iter().collect::<Vec<_>>());
    dc.kill();
    let before = exported(&c.out).expect("c's exports");
    // Flooded while c is down: c is not responsible for it when it comes back.
    cb.send(b"binary 9\nb, c down");
    sent.push(flooded(&cb.reply()[0], b"b, c down"));
    wait_exported(a, &[&sent[sent.len() - 1]]);
    // Without a state file a site restarted within the join margin (at most 1 s) of
    // having exported updates may take them again (SPEC.md §8.8, limits): restart after
    // it. `pending_exports_survive_sigterm_kill_and_sighup` restarts at once with one.
    std::thread::sleep(Duration::from_millis(1200));
    let _dc = start(c);
    wait_converged(&[a, b, c], 3);
    ca.send(b"data\nafter the restart\n.\n");
    assert_eq!(ca.reply()[0].get(..4), Some("354 "));
    sent.push(flooded(&ca.reply()[0], b"after the restart\n"));
    wait_exported(c, &[&sent[sent.len() - 1]]);
    // Give digests time (full ones included) to show c what was flooded before it came
    // back: it must not fetch and export that again.
    let rounds = stat(c.client, "digests-sent") + 10;
    wait_until("c to exchange more digests", LIMIT, || {
        (stat(c.client, "digests-sent") >= rounds).then_some(())
    });
    let after = check_exports(c, &sent);
    assert_eq!(after[..before.len()], before[..]);
    for site in [a, b] {
        check_exports(site, &sent);
    }
}

/// An export command that fails is retried and counted while another site exports; one
/// that hangs is killed at `export-timeout` with everything it started.
#[test]
fn failing_and_hanging_export_commands() {
    let dir = TempDir::new("failing");
    // Unique to this run, so that the processes counted are this test's own. The shell
    // stays as the parent of `sleep` (it has more to do after it), so killing only the
    // shell would leave the sleep behind.
    let nap = format!("100.{}", std::process::id());
    let s = sites(
        &dir,
        &[
            ("a", appending(&dir)),
            ("b", "(:export-command \"exit 1\")".to_string()),
            (
                "c",
                format!("(:export-command \"sleep {nap}; exit 0\") (:export-timeout 1)"),
            ),
        ],
    );
    let (a, b, c) = (&s[0], &s[1], &s[2]);
    let _da = start(a);
    let _db = start(b);
    let mut dc = start(c);
    wait_converged(&[a, b, c], 3);
    let mut sent = Vec::new();
    for site in [a, b] {
        let data = format!("from {}\n", site.name);
        let mut cmd = command(&[
            "flood",
            "--daemon",
            &site.client.to_string(),
            "send",
            "--binary",
        ]);
        cmd.stdin(std::process::Stdio::piped());
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn flotilla flood send");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(data.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        sent.push(flooded(
            &String::from_utf8_lossy(&out.stdout),
            data.as_bytes(),
        ));
    }
    wait_exported(a, &[&sent[1]]);
    check_exports(a, &sent);
    wait_until("b's export to fail twice", LIMIT, || {
        (stat(b.client, "export-failures") >= 2).then_some(())
    });
    assert_eq!(stat(b.client, "exported"), 0);
    wait_until("c's export to time out twice", LIMIT, || {
        (stat(c.client, "export-timeouts") >= 2).then_some(())
    });
    // Each run was killed with its sleep; the next starts after a pause.
    wait_until("the timed-out sleeps to be gone", LIMIT, || {
        (processes(&["sleep", &nap]) == 0).then_some(())
    });
    assert!(dc.stderr().contains("timed out"), "{}", dc.stderr());
    assert_eq!(ask(c.client, "terminate"), ["221 terminating"]);
    let status = dc.wait_exit(LIMIT).expect("c to exit after terminate");
    assert!(status.success(), "{status:?}");
    wait_until("no sleep of c's left after it stopped", LIMIT, || {
        (processes(&["sleep", &nap]) == 0).then_some(())
    });
}

/// Past the client cap (below the descriptor limit) a client reads why and is closed.
#[test]
fn past_the_client_cap_a_client_is_told_why() {
    let dir = TempDir::new("cap");
    let s = sites(&dir, &[("a", String::new())]);
    let a = &s[0];
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n 100 && exec \"{}\" floodd --site a --config \"{}\"",
            flotilla().display(),
            a.conf.display()
        ))
        .env_remove("RUST_LOG");
    let _d = Daemon::start(cmd, a.data);
    // 100 descriptors less max(64, 100/8) leaves 36 clients.
    let mut held = Vec::new();
    for _ in 0..36 {
        let (c, greeting) = Client::connect(a.client);
        assert_eq!(greeting, "220 floodd a ready (help lists the commands)");
        held.push(c);
    }
    let (mut refused, line) = Client::connect(a.client);
    assert_eq!(
        line,
        "421 too many connections (36 open, the most this daemon holds): try again later"
    );
    assert!(refused.closed());
    assert_eq!(held[0].ask("groups").last().unwrap(), "250 1 groups");
}

/// `--check` on the seed's own example, on a broken file, and what a daemon does with a
/// file it cannot run.
#[test]
fn configuration_checks_and_errors() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/floodd-seed.conf");
    let seed = seed.to_str().unwrap();
    // valhalla and inferno need not resolve here: warnings, and the file is valid.
    let out = run(
        &["floodd", "--config", seed, "--check", "--site", "inferno"],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "ok: 2 sites, 1 groups\n");
    let out = run(
        &["floodd", "--config", seed, "--check", "--site", "nosuch"],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(
        out.stderr
            .contains("error: no site named nosuch is defined (sites: master, inferno)")
    );

    let dir = TempDir::new("check");
    let broken = dir.join("broken.conf");
    std::fs::write(
        &broken,
        "(:site-define (:site-name a) (:inet-address 127.0.0.1)\n  (:client-port x) (:data-port 2))",
    )
    .unwrap();
    let broken = broken.to_str().unwrap();
    let out = run(&["floodd", "--config", broken, "--check"], Duration::ZERO);
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(
        out.stderr.starts_with(&format!("error: {broken}:2:17: ")),
        "{out:#?}"
    );
    let out = run(
        &["floodd", "--config", broken, "--site", "a"],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stderr.starts_with(&format!("error: {broken}:2:17: ")),
        "{out:#?}"
    );

    // Sites with addresses and no host names: no host name can pick one.
    let s = sites(&dir, &[("a", String::new()), ("b", String::new())]);
    let conf = s[0].conf.to_str().unwrap();
    let out = run(&["floodd", "--config", conf, "--check"], Duration::ZERO);
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "ok: 2 sites, 1 groups\n");
    let out = run(&["floodd", "--config", conf], Duration::ZERO);
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("(sites: a, b): pass --site NAME"),
        "{out:#?}"
    );

    // A file of exactly the limit (a valid one, padded with a comment) is read; one byte
    // more is refused.
    let max = flotilla_core::flood::config::MAX_CONFIG_FILE_BYTES;
    let mut text = std::fs::read(&s[0].conf).unwrap();
    text.extend_from_slice(b";");
    text.resize(max, b'x');
    let edge = dir.join("edge.conf");
    std::fs::write(&edge, &text).unwrap();
    let out = run(
        &["floodd", "--config", edge.to_str().unwrap(), "--check"],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    let huge = dir.join("huge.conf");
    text.push(b'x');
    std::fs::write(&huge, &text).unwrap();
    let out = run(
        &["floodd", "--config", huge.to_str().unwrap(), "--check"],
        Duration::ZERO,
    );
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("larger than 4194304 bytes"), "{out:#?}");
}

/// Runs a prepared `flotilla` command to its end and returns its standard output.
fn finish(mut cmd: Command) -> String {
    let out = cmd.output().expect("run flotilla");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ----- a JSON reader just large enough to check what `--json` writes ----------------

#[derive(Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// The whole of `text` as one JSON value (surrounding white space allowed).
fn parse_json(text: &str) -> Result<Json, String> {
    let mut p = JsonReader {
        s: text.as_bytes(),
        at: 0,
    };
    let v = p.value()?;
    p.space();
    if p.at != p.s.len() {
        return Err(format!("trailing bytes at {}", p.at));
    }
    Ok(v)
}

struct JsonReader<'a> {
    s: &'a [u8],
    at: usize,
}

impl JsonReader<'_> {
    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b" \t\r\n".contains(b)) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.space();
        if self.s.get(self.at) == Some(&b) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", b as char, self.at))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.space();
        match self.s.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut fields = Vec::new();
                self.space();
                if self.s.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.space();
                    let Json::Str(k) = self.value()? else {
                        return Err(format!("a key that is not a string at {}", self.at));
                    };
                    self.eat(b':')?;
                    fields.push((k, self.value()?));
                    self.space();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.at)),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.s.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.space();
                    match self.s.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.at)),
                    }
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') if self.s[self.at..].starts_with(b"true") => {
                self.at += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.at..].starts_with(b"false") => {
                self.at += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.at..].starts_with(b"null") => {
                self.at += 4;
                Ok(Json::Null)
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while self
                    .s
                    .get(self.at)
                    .is_some_and(|b| b"+-.eE0123456789".contains(b))
                {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.at]).unwrap();
                let leading_zero = text.trim_start_matches('-').len() > 1
                    && text.trim_start_matches('-').starts_with('0')
                    && !text.trim_start_matches('-').starts_with("0.");
                if leading_zero {
                    return Err(format!("a number with a leading zero: {text}"));
                }
                text.parse()
                    .map(Json::Num)
                    .map_err(|_| format!("bad number {text}"))
            }
            _ => Err(format!("no value at {}", self.at)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let Some(&b) = self.s.get(self.at) else {
                return Err("an unterminated string".into());
            };
            self.at += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = *self.s.get(self.at).ok_or("a cut escape")?;
                    self.at += 1;
                    out.push(match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = self.s.get(self.at..self.at + 4).ok_or("a cut \\u")?;
                            self.at += 4;
                            let n = u32::from_str_radix(std::str::from_utf8(hex).unwrap(), 16)
                                .map_err(|_| "a bad \\u")?;
                            char::from_u32(n).ok_or("a \\u that is no character")?
                        }
                        _ => return Err(format!("a bad escape at {}", self.at)),
                    });
                }
                b if b < 0x20 => return Err(format!("a raw control byte at {}", self.at)),
                _ => {
                    // Copy the whole UTF-8 sequence this byte begins.
                    let start = self.at - 1;
                    while self.s.get(self.at).is_some_and(|b| b & 0xc0 == 0x80) {
                        self.at += 1;
                    }
                    out.push_str(
                        std::str::from_utf8(&self.s[start..self.at]).map_err(|e| e.to_string())?,
                    );
                }
            }
        }
    }
}

#[test]
fn the_json_reader_reads_what_it_should_and_refuses_the_rest() {
    assert_eq!(
        parse_json(r#" {"a": [1, -2.5e3, "x\"\n\u00e9é"], "b": {}, "c": [true, false, null]} "#),
        Ok(Json::Obj(vec![
            (
                "a".into(),
                Json::Arr(vec![
                    Json::Num(1.0),
                    Json::Num(-2500.0),
                    Json::Str("x\"\néé".into())
                ])
            ),
            ("b".into(), Json::Obj(vec![])),
            (
                "c".into(),
                Json::Arr(vec![Json::Bool(true), Json::Bool(false), Json::Null])
            ),
        ]))
    );
    for bad in [
        "{",
        "[1,]",
        "{\"a\" 1}",
        "\"\u{1}\"",
        "01",
        "{} x",
        "\"\\q\"",
    ] {
        assert!(parse_json(bad).is_err(), "{bad}");
    }
}

/// Floods `n` updates of `size` bytes through one connection with `binary`; the replies.
fn flood_binary(addr: SocketAddr, n: usize, size: usize) -> Vec<Vec<String>> {
    let (mut c, _) = Client::connect(addr);
    (0..n)
        .map(|k| {
            let mut msg = format!("binary {size}\n").into_bytes();
            let mut data = format!("update {k} ").into_bytes();
            data.resize(size, b'.');
            msg.extend_from_slice(&data);
            c.send(&msg);
            c.reply()
        })
        .collect()
}

/// `data-storage-max` with real daemons: a site whose export command always fails keeps
/// no more than its bound, drops the oldest waiting updates and says so (`gaps`,
/// `statistics`); at the origin an update of exactly the room there is taken and one
/// byte more is refused, the connection staying usable.
#[test]
fn storage_stays_within_data_storage_max() {
    let dir = TempDir::new("storage");
    // Each stored update costs its bytes and 64: room for six of 1,000 bytes.
    let max = 6 * (1000 + 64);
    let s = sites(
        &dir,
        &[
            ("a", "(:data-storage-max 2064)".to_string()),
            (
                "b",
                format!("(:export-command \"exit 1\") (:data-storage-max {max})"),
            ),
        ],
    );
    let (a, b) = (&s[0], &s[1]);
    let _da = start(a);
    let _db = start(b);
    wait_converged(&[a, b], 2);
    // At the origin: exactly the room (2,064 - 64 bytes) fits, a byte more does not.
    let replies = flood_binary(a.client, 1, 2000);
    assert!(replies[0][0].starts_with("250 flooded"), "{replies:?}");
    let (mut c, _) = Client::connect(a.client);
    let mut msg = b"binary 2001\n".to_vec();
    msg.extend_from_slice(&[b'x'; 2001]);
    c.send(&msg);
    assert_eq!(
        c.reply(),
        ["552 an update of 2001 bytes does not fit in data-storage-max (2064 bytes)"]
    );
    assert_eq!(c.ask("groups")[1], "250 1 groups");
    // Twenty more, 1,000 bytes each, reach b one after the other.
    for r in flood_binary(a.client, 20, 1000) {
        assert!(r[0].starts_with("250 flooded"), "{r:?}");
    }
    wait_until("b to have received all 21", LIMIT, || {
        (stat(b.client, "delivered") == 21).then_some(())
    });
    let held = stat(b.client, "storage-bytes");
    assert!(held <= max as u64, "b holds {held} bytes, past {max}");
    let dropped = stat(b.client, "dropped-unexported");
    assert!(dropped >= 15, "dropped {dropped}");
    assert_eq!(
        stat(b.client, "lost"),
        0,
        "drops are counted apart from gaps"
    );
    let gaps = ask(b.client, "gaps");
    assert!(
        gaps.iter()
            .any(|l| l.starts_with("250-lost a ") && l.ends_with(" storage")),
        "{gaps:?}"
    );
}

/// A `topology-generator` command decides the links: the master runs it, reads its
/// output, and every site adopts that topology. One that fails leaves the master on the
/// built-in generator, counted.
#[test]
fn a_topology_generator_command_decides_the_links() {
    let dir = TempDir::new("generator");
    let s = sites(
        &dir,
        &[
            ("a", String::new()),
            ("b", String::new()),
            ("c", String::new()),
        ],
    );
    // A chain a - b - c, whatever the input (which it reads, as a generator should).
    let chain =
        "(:topology-generator \"cat > /dev/null; printf 'a b\\\\n# a comment\\\\nb c\\\\n'\")";
    let conf = std::fs::read_to_string(&s[0].conf).unwrap();
    std::fs::write(
        &s[0].conf,
        conf.replace(
            "(:digest-period 0.1))",
            &format!("(:digest-period 0.1) {chain})"),
        ),
    )
    .unwrap();
    let daemons: Vec<Daemon> = s.iter().map(start).collect();
    wait_until("the chain everywhere", LIMIT, || {
        s.iter()
            .all(|site| {
                let lines = ask(site.client, "topology");
                lines.len() == 4
                    && lines[1] == "250-a b cost=100000us"
                    && lines[2].starts_with("250-b c ")
            })
            .then_some(())
    });
    assert_eq!(stat(s[0].client, "generator-failures"), 0);
    drop(daemons);
    // A generator that fails: the built-in one is used, and the failure counted.
    let conf = std::fs::read_to_string(&s[0].conf).unwrap();
    std::fs::write(
        &s[0].conf,
        conf.replace(chain, "(:topology-generator \"exit 3\")"),
    )
    .unwrap();
    let _daemons: Vec<Daemon> = s.iter().map(start).collect();
    wait_converged(&[&s[0], &s[1], &s[2]], 3);
    assert!(stat(s[0].client, "generator-failures") >= 1);
}

/// A client that sends 20,000 updates back to back, without waiting for replies, is
/// slowed to the pace of the peer links rather than having its updates refused or lost:
/// each gets `250 flooded`, every other site exports them all, and none is lost. How
/// many a site *found missing* for a while (a digest ahead of its pushed copy by more
/// than the pull delay, 20 ms here, then pulled) depends on timing, so it is not
/// asserted: a CI run on a 2-core machine once found 21 missing at c (all recovered,
/// none lost), and a loaded machine did once before; whether a late push or a frame
/// dropped at b's full relay queue caused it was not determined (see the notes of
/// 2026-11-30).
#[test]
fn a_pipelining_client_is_slowed_not_dropped() {
    let dir = TempDir::new("pipeline");
    let s = sites(
        &dir,
        &[
            ("a", String::new()),
            ("b", "(:export-command \"cat > /dev/null\")".to_string()),
            ("c", "(:export-command \"cat > /dev/null\")".to_string()),
        ],
    );
    let _daemons: Vec<Daemon> = s.iter().map(start).collect();
    wait_converged(&[&s[0], &s[1], &s[2]], 3);
    let n = 20_000;
    let (c, _) = Client::connect(s[0].client);
    let Client { w, mut r } = c;
    let writer = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, w);
        for k in 0..n {
            let mut msg = b"binary 64\n".to_vec();
            let mut data = format!("pipelined {k} ").into_bytes();
            data.resize(64, b'.');
            msg.extend_from_slice(&data);
            w.write_all(&msg).unwrap();
        }
        w.flush().unwrap();
        w
    });
    let mut line = String::new();
    for k in 0..n {
        line.clear();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "closed after {k} replies"
        );
        assert!(line.starts_with("250 flooded"), "reply {k}: {line}");
    }
    drop(writer.join().unwrap());
    // 20,000 exports take about 14 s on a quiet 2-core machine: room for a busy one.
    for site in &s[1..] {
        wait_until("every update exported", 4 * LIMIT, || {
            (stat(site.client, "exported") == n).then_some(())
        });
        assert_eq!(stat(site.client, "lost"), 0, "{}", site.name);
    }
}

/// Lost ranges a site's export command was told of: `(origin, from, to, reason)`.
fn exported_lost(out: &Path) -> Vec<(String, u64, u64, String)> {
    let bytes = std::fs::read(out).unwrap_or_default();
    bundle::decode(&Bytes::from(bytes))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| match i {
            BundleItem::Lost {
                origin,
                from,
                to,
                reason,
                ..
            } => Some((origin, from, to, reason.as_str().to_string())),
            BundleItem::Update { .. } => None,
        })
        .collect()
}

/// Sends `signal` (`-TERM`, `-HUP`) to a daemon.
fn signal(d: &Daemon, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &d.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Floods `n` numbered updates from `site` in one chunk; what the daemon named them.
fn flood_numbered(site: &Site, n: usize) -> Vec<Update> {
    let (mut c, _) = Client::connect(site.client);
    let mut chunk = Vec::new();
    let data: Vec<String> = (0..n).map(|i| format!("update {i}\n")).collect();
    for d in &data {
        chunk.extend_from_slice(format!("binary {}\n{d}", d.len()).as_bytes());
    }
    c.send(&chunk);
    data.iter()
        .map(|d| flooded(&c.reply()[0], d.as_bytes()))
        .collect()
}

/// Whether every one of `sent` was exported by `s`, or told to its export command as
/// lost with `reason` (any reason if `None`); and none twice.
fn exported_or_lost(s: &Site, sent: &[Update], reason: Option<&str>) -> Option<()> {
    let got = exported(&s.out)?;
    let lost = exported_lost(&s.out);
    let mut told = 0;
    for u in sent {
        let n = got
            .iter()
            .filter(|g| (&g.origin, g.incarnation, g.seq) == (&u.origin, u.incarnation, u.seq))
            .count();
        assert!(n <= 1, "{} exported {u:?} {n} times", s.name);
        let in_lost = lost.iter().any(|(o, a, b, r)| {
            *o == u.origin && (*a..=*b).contains(&u.seq) && reason.is_none_or(|w| r == w)
        });
        if n == 1 || in_lost {
            told += 1;
        }
    }
    (told == sent.len()).then_some(())
}

/// Finding 4 of issue 16: updates accepted and waiting for the export command are not
/// lost silently when the daemon stops. Without a state file SIGTERM exports what waits
/// before exiting, and logs as lost what it could not; with `--state` what waits is
/// written down and exported after the restart — after SIGTERM and after kill -9. SIGHUP
/// is logged and ignored.
#[test]
fn pending_exports_survive_sigterm_kill_and_sighup() {
    let dir = TempDir::new("pending");
    let gate = dir.join("open");
    // b's command fails until the gate exists, and is slow when it works: updates wait.
    let gated = format!(
        "(:export-command \"test -e {} && sleep 0.3 && cat >> {}/$FLOOD_SITE.out\") \
         (:export-timeout 5)",
        gate.display(),
        dir.display()
    );
    let s = sites(&dir, &[("a", appending(&dir)), ("b", gated)]);
    let (a, b) = (&s[0], &s[1]);
    let state = dir.join("b.state");
    let start_b = |with_state: bool| {
        let mut cmd = command(&["floodd", "--site", "b"]);
        cmd.arg("--config").arg(&b.conf);
        if with_state {
            cmd.arg("--state").arg(&state);
        }
        Daemon::start(cmd, b.data)
    };
    let _da = start(a);
    let received = |n: u64| move || (stat(b.client, "delivered") >= n).then_some(());

    // SIGHUP: logged, ignored; the daemon goes on answering.
    let mut db = start_b(false);
    wait_converged(&[a, b], 2);
    signal(&db, "-HUP");
    wait_until("b to log the SIGHUP", LIMIT, || {
        db.stderr().contains("SIGHUP ignored").then_some(())
    });
    assert!(db.running(), "SIGHUP stopped floodd: {}", db.stderr());
    assert_eq!(ask(b.client, "topology")[0].get(..4), Some("250-"));

    // No state file, the command failing: SIGTERM logs every waiting update as lost.
    let first = flood_numbered(a, 50);
    wait_until("b to take 50 updates", LIMIT, received(50));
    signal(&db, "-TERM");
    let status = db.wait_exit(LIMIT).expect("b to exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    let log = db.stderr();
    let (from, to) = (first[0].seq, first[49].seq);
    assert!(
        log.contains("the daemon stopped before they were exported")
            && log.contains(&format!("from={from} to={to}")),
        "b did not log updates {from}..={to} as lost:\n{log}"
    );

    // No state file, the command working but slow: SIGTERM drains what waits first.
    std::fs::write(&gate, b"").unwrap();
    let mut db = start_b(false);
    wait_converged(&[a, b], 2);
    let second = flood_numbered(a, 50);
    wait_until("b to take 50 more", LIMIT, received(50));
    signal(&db, "-TERM");
    assert!(db.wait_exit(LIMIT).expect("b to exit").success());
    assert!(
        exported_or_lost(b, &second, Some("none")).is_some(),
        "SIGTERM lost waiting updates: {}",
        db.stderr()
    );

    // With a state file, the command failing: SIGTERM keeps what waits, the restart
    // (gate open) exports it.
    std::fs::remove_file(&gate).unwrap();
    let mut db = start_b(true);
    wait_converged(&[a, b], 2);
    let third = flood_numbered(a, 100);
    wait_until("b to take 100 updates", LIMIT, received(100));
    signal(&db, "-TERM");
    assert!(db.wait_exit(LIMIT).expect("b to exit").success());
    assert!(
        db.stderr().contains("state file written"),
        "{}",
        db.stderr()
    );
    std::fs::write(&gate, b"").unwrap();
    let mut db = start_b(true);
    wait_until("b to say it resumed", LIMIT, || {
        db.stderr()
            .contains("resumed from the state file")
            .then_some(())
    });
    wait_until("b to export what waited across SIGTERM", LIMIT, || {
        exported_or_lost(b, &third, Some("none"))
    });
    signal(&db, "-TERM");
    assert!(db.wait_exit(LIMIT).expect("b to exit").success());

    // With a state file, kill -9 while updates wait: each is exported after the
    // restart, or — if a run was in flight, which may have completed — told lost as
    // interrupted. Never silently gone.
    std::fs::remove_file(&gate).unwrap();
    let mut db = start_b(true);
    wait_converged(&[a, b], 2);
    let fourth = flood_numbered(a, 100);
    wait_until("b to take 100 more", LIMIT, received(100));
    // The state is stored each second while it changes.
    let stored = std::fs::metadata(&state).unwrap().modified().unwrap();
    wait_until("b to store its state", LIMIT, || {
        (std::fs::metadata(&state).ok()?.modified().ok()? > stored).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    db.kill();
    std::fs::write(&gate, b"").unwrap();
    let _db = start_b(true);
    wait_until(
        "b to export or report what waited across kill -9",
        LIMIT,
        || exported_or_lost(b, &fourth, Some("interrupted")),
    );
    check_exports(b, &[first, second, third, fourth].concat());
}

/// Finding 3 of issue 16: a site restarted after being down got none of what was
/// flooded in the first moments after it answered again, and said nothing of it. Here
/// `c` is killed with kill -9, stays down, comes back, and updates are flooded from the
/// master and from `b` as soon as `c` answers `topology`: `c` exports each of them or
/// tells its export command it lost it, and the survivors export everything from each
/// other (nothing declared lost that its origin still holds).
fn restarted_site_trials(trials: usize, down: Duration, name: &str) {
    let dir = TempDir::new(name);
    let s = sites(
        &dir,
        &[
            ("a", appending(&dir)),
            ("b", appending(&dir)),
            ("c", appending(&dir)),
        ],
    );
    let (a, b, c) = (&s[0], &s[1], &s[2]);
    let (_da, _db) = (start(a), start(b));
    let mut dc = start(c);
    wait_converged(&[a, b, c], 3);
    let mut to_b = Vec::new();
    let mut to_a = Vec::new();
    for trial in 0..trials {
        dc.kill();
        to_b.extend(flood_numbered(a, 20));
        std::thread::sleep(down);
        dc = start(c);
        wait_until("c to answer topology", LIMIT, || topology(c.client));
        let from_a = flood_numbered(a, 50);
        let from_b = flood_numbered(b, 50);
        let after: Vec<Update> = from_a.iter().chain(&from_b).cloned().collect();
        wait_until(
            &format!("trial {trial}: c to export, or report lost, all 100 updates"),
            LIMIT,
            || exported_or_lost(c, &after, None),
        );
        to_b.extend(from_a);
        to_a.extend(from_b);
        wait_exported(b, &to_b.iter().collect::<Vec<_>>());
        wait_exported(a, &to_a.iter().collect::<Vec<_>>());
        for survivor in [a, b] {
            let lost = exported_lost(&survivor.out);
            assert!(
                lost.is_empty(),
                "trial {trial}: {} was told of lost updates {lost:?}",
                survivor.name
            );
        }
        // Silently skipped would have been the bug; told lost is allowed, but say so.
        let lost = exported_lost(&c.out);
        if !lost.is_empty() {
            eprintln!("trial {trial}: c was told of lost ranges {lost:?}");
        }
    }
    check_exports(a, &to_a);
    check_exports(b, &to_b);
}

#[test]
fn a_restarted_site_misses_nothing_silently() {
    restarted_site_trials(1, Duration::from_secs(4), "restart");
}

/// The acceptance run: 20 trials of 10 s down (`FLOTILLA_TRIALS`, `FLOTILLA_DOWN`).
#[test]
#[ignore = "long: about 20 × 12 s; run on demand"]
fn a_restarted_site_misses_nothing_silently_over_many_trials() {
    let trials = flotilla_tests::process::env_or("FLOTILLA_TRIALS", 20);
    let down = flotilla_tests::process::env_or("FLOTILLA_DOWN", 10);
    restarted_site_trials(trials, Duration::from_secs(down), "restart-many");
}
