//! The client side of group daemons wired together by hand: clients are streams that
//! write request lines and collect what the daemon writes back; frames between daemons
//! go through a FIFO that can cut pairs apart (a partition); views are installed by the
//! test as membership would.

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::{Forward, FrontCommand, FrontEvent, FrontSettings, GroupsFront};
use crate::groups::GroupsSettings;
use crate::machine::{ClientId, ClientOrigin, Input, ListenerId, Machine, Output};
use crate::membership::view::{Member, View, ViewId};
use crate::time::Instant;
use crate::wire::Frame;

const MAX_STEPS: u64 = 100_000;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1 + i as u8], 4803))
}

fn member(i: usize) -> Member {
    Member {
        name: ((b'a' + i as u8) as char).to_string(),
        incarnation: 100 + i as u64,
        addr: addr(i),
    }
}

fn view(epoch: u64, nodes: &[usize]) -> View {
    let members: Vec<Member> = nodes.iter().map(|&i| member(i)).collect();
    View {
        id: ViewId {
            epoch,
            coordinator: members[0].name.clone(),
            incarnation: members[0].incarnation,
        },
        basis: members.iter().map(|m| m.name.clone()).collect(),
        primary: true,
        config_version: 0,
        members,
    }
}

struct Net {
    now: Instant,
    nodes: Vec<GroupsFront>,
    queue: VecDeque<(usize, usize, Frame)>,
    cut: BTreeSet<(usize, usize)>,
    /// What each client read: (node, client) → text.
    read: BTreeMap<(usize, u64), String>,
    /// The same bytes as they came (a `binary` client's are not all text).
    raw: BTreeMap<(usize, u64), Vec<u8>>,
    closed: BTreeSet<(usize, u64)>,
    events: Vec<(usize, FrontEvent)>,
    steps: u64,
}

impl Net {
    fn new(n: usize, ports: (u16, u16)) -> Self {
        Net::with_ranges(&vec![ports; n])
    }

    /// One daemon per range, each configured with its own.
    fn with_ranges(ranges: &[(u16, u16)]) -> Self {
        let n = ranges.len();
        let nodes = (0..n)
            .map(|i| {
                let mut s = FrontSettings::new(GroupsSettings {
                    me: member(i),
                    canary_deliver_early: false,
                });
                s.ports = ranges[i];
                GroupsFront::new(s, Instant::ZERO)
            })
            .collect();
        let mut net = Net {
            now: Instant::ZERO,
            nodes,
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            read: BTreeMap::new(),
            raw: BTreeMap::new(),
            closed: BTreeSet::new(),
            events: Vec::new(),
            steps: 0,
        };
        let all: Vec<usize> = (0..n).collect();
        net.install(&view(1, &all), &all);
        net.settle();
        net
    }

    fn drain(&mut self, i: usize) {
        while let Some(o) = self.nodes[i].poll_output() {
            match o {
                Output::Transmit(t) => {
                    let to = (0..self.nodes.len())
                        .find(|&k| addr(k) == t.to)
                        .expect("frames go to daemons");
                    if !self.cut.contains(&(i, to)) {
                        self.queue.push_back((i, to, t.frame));
                    }
                }
                Output::ToClient(c, b) => {
                    assert!(!self.closed.contains(&(i, c.0)), "bytes after a close");
                    self.raw.entry((i, c.0)).or_default().extend_from_slice(&b);
                    self.read
                        .entry((i, c.0))
                        .or_default()
                        .push_str(&String::from_utf8_lossy(&b));
                }
                Output::CloseClient(c) => {
                    self.closed.insert((i, c.0));
                }
                Output::Event(e) => self.events.push((i, e)),
                Output::Effect(_) => unreachable!("no effects"),
            }
        }
        if let Err(e) = self.nodes[i].check_invariants() {
            panic!("node {i} inconsistent: {e}");
        }
    }

    fn install(&mut self, v: &View, to: &[usize]) {
        for &i in to {
            self.nodes[i]
                .handle(self.now, Input::Command(FrontCommand::View(v.clone())))
                .unwrap();
            self.drain(i);
        }
    }

    fn open(&mut self, i: usize, c: u64) {
        let origin = ClientOrigin::unix(ListenerId(0));
        self.nodes[i]
            .handle(
                self.now,
                Input::ClientOpened {
                    client: ClientId(c),
                    origin,
                },
            )
            .unwrap();
        self.drain(i);
    }

    fn line(&mut self, i: usize, c: u64, text: &str) {
        let data = Bytes::from(format!("{text}\n"));
        self.nodes[i]
            .handle(self.now, Input::ClientData(ClientId(c), data))
            .unwrap();
        self.drain(i);
    }

    /// Bytes from client `c`, as they are.
    fn data(&mut self, i: usize, c: u64, data: &[u8]) {
        self.nodes[i]
            .handle(
                self.now,
                Input::ClientData(ClientId(c), Bytes::copy_from_slice(data)),
            )
            .unwrap();
        self.drain(i);
    }

    /// What client `c` read, as a binary client reads it: each line, and after a
    /// `602`/`603` line the SIZE bytes that follow it.
    fn records(&self, i: usize, c: u64) -> Vec<(String, Option<Vec<u8>>)> {
        let mut rest: &[u8] = self.raw.get(&(i, c)).map_or(&[], Vec::as_slice);
        let mut out = Vec::new();
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let line = String::from_utf8(rest[..nl].to_vec()).expect("lines are text");
            rest = &rest[nl + 1..];
            let body = if line.starts_with("602 ") || line.starts_with("603 ") {
                let size: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
                let (b, r) = rest.split_at(size);
                rest = r;
                Some(b.to_vec())
            } else {
                None
            };
            out.push((line, body));
        }
        assert!(rest.is_empty(), "a partial line or body is left");
        out
    }

    fn close(&mut self, i: usize, c: u64) {
        self.nodes[i]
            .handle(self.now, Input::ClientClosed(ClientId(c)))
            .unwrap();
        self.closed.insert((i, c));
        self.drain(i);
    }

    fn step(&mut self) {
        self.steps += 1;
        assert!(self.steps < MAX_STEPS, "the run did not settle");
        if let Some((from, to, frame)) = self.queue.pop_front() {
            let _ = self.nodes[to].handle(
                self.now,
                Input::Frame {
                    from: addr(from),
                    frame,
                },
            );
            self.drain(to);
            return;
        }
        let next = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
        self.now = self.now.max(next.expect("machines have timers"));
        for i in 0..self.nodes.len() {
            self.nodes[i].handle_timeout(self.now);
            self.drain(i);
        }
    }

    /// Runs until nothing is pending or flushing anywhere, and no frame is on its way.
    fn settle(&mut self) {
        let quiet = |n: &Net| {
            n.queue.is_empty()
                && n.nodes
                    .iter()
                    .all(|f| f.groups().pending() == 0 && !f.groups().flushing())
        };
        // Two timer rounds past quiet let acknowledgements and stability settle.
        while !quiet(self) {
            self.step();
        }
        for _ in 0..3 {
            self.step();
        }
        while !quiet(self) {
            self.step();
        }
    }

    fn text(&self, i: usize, c: u64) -> &str {
        self.read.get(&(i, c)).map_or("", String::as_str)
    }

    fn lines(&self, i: usize, c: u64, prefix: &str) -> Vec<String> {
        self.text(i, c)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn members_of_three_daemons_see_one_order_and_every_membership_change() {
    let mut net = Net::new(3, (7000, 7009));
    for i in 0..3 {
        net.open(i, 1);
        net.line(i, 1, &format!("name app{i}"));
        net.line(i, 1, "join g");
        // Pipelined: answered only after the join, in request order.
        net.line(i, 1, &format!("send g hello from {i}"));
    }
    net.settle();
    for i in 0..3 {
        let t = net.text(i, 1).to_string();
        let joined = t.find("250 joined g").expect("join answered");
        let sent = t.find("250 sent").expect("send answered");
        assert!(joined < sent, "replies in request order:\n{t}");
        assert!(t.starts_with(&format!("250 app{i}\n")));
    }
    // Everyone has the same sequence of messages (those sent after it joined).
    let msgs: Vec<Vec<String>> = (0..3).map(|i| net.lines(i, 1, "600 ")).collect();
    let last = &msgs[2];
    for m in &msgs {
        assert!(
            last.ends_with(m) || m.ends_with(last),
            "one order: {msgs:?}"
        );
    }
    for i in 0..3 {
        net.line(i, 1, &format!("send g round two {i}"));
    }
    net.settle();
    let tails: Vec<Vec<String>> = (0..3)
        .map(|i| net.lines(i, 1, "600 ").into_iter().rev().take(3).collect())
        .collect();
    assert_eq!(tails[0], tails[1]);
    assert_eq!(tails[1], tails[2]);
    assert!(
        tails[0]
            .iter()
            .any(|l| l.contains("app1@b") && l.ends_with("round two 1"))
    );
    // The joiner's notice names every member with its daemon; the others hear who came.
    let whole: Vec<String> = (0..3).flat_map(|i| net.lines(i, 1, "610 g ")).collect();
    assert_eq!(whole.len(), 3, "one whole list per joiner: {whole:?}");
    assert!(
        whole
            .iter()
            .any(|l| l.contains(" join 3 app0@a app1@b app2@c")),
        "{whole:?}"
    );
    let deltas: Vec<String> = (0..3).flat_map(|i| net.lines(i, 1, "611 g ")).collect();
    assert_eq!(
        deltas.len(),
        3,
        "the first joiner hears of two, the second of one: {deltas:?}"
    );
    // A client that disconnects is gone with that cause.
    net.close(1, 1);
    net.settle();
    let v = net.lines(0, 1, "611 g ");
    assert!(v.last().unwrap().ends_with(" disconnect 2 app1@b"), "{v:?}");
    // A leave is answered after its notice, which the leaver gets too.
    net.line(2, 1, "leave g");
    net.settle();
    let t = net.text(2, 1);
    let notice = t.rfind("610 g").unwrap();
    assert!(t[notice..].contains("leave 1 app0@a"));
    assert!(t.ends_with("250 left g\n"), "{t}");
    // members GROUP and groups answer from the agreed table.
    net.line(0, 1, "members g");
    assert!(net.text(0, 1).ends_with("250-app0@a\n250 1 members\n"));
    net.line(0, 1, "groups");
    assert!(net.text(0, 1).ends_with("250-g 1\n250 1 groups\n"));
}

#[test]
fn a_message_reaches_each_daemon_once_and_every_local_member() {
    let mut net = Net::new(2, (7000, 7009));
    for c in 1..=3 {
        net.open(1, c);
        net.line(1, c, "join g");
    }
    net.settle();
    net.open(0, 9);
    net.line(0, 9, "send g bytes\\x00\\xff\\\\ and spaces  ");
    net.settle();
    for c in 1..=3 {
        let m = net.lines(1, c, "600 g ");
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].starts_with("600 g c9@a "));
        assert!(m[0].ends_with(" bytes\\x00\\xff\\\\ and spaces  "));
    }
    assert_eq!(
        net.text(0, 9),
        "250 sent\n",
        "a sender that is no member gets no copy"
    );
    assert_eq!(
        net.nodes[1].groups().stats().delivered,
        net.nodes[0].groups().stats().delivered
    );
}

#[test]
fn bad_requests_are_refused_and_a_client_may_not_take_a_name_in_use() {
    let mut net = Net::new(1, (7000, 7009));
    net.open(0, 1);
    net.open(0, 2);
    net.line(0, 1, "name x");
    net.line(0, 2, "name x");
    net.line(0, 2, "name c7");
    net.line(0, 2, "join #svc:web");
    net.line(0, 2, "frob");
    net.line(0, 2, "send g \\q");
    net.line(0, 2, "leave g");
    net.line(0, 2, "done web");
    net.line(0, 2, "help");
    let t = net.text(0, 2);
    for code in [
        "450 x is taken",
        "501 names c<digits>",
        "501 group names starting",
        "500 unknown",
        "501 bad escape",
        "450 not a member of g",
        "450 this connection is not web's agent",
        "214 end of help",
    ] {
        assert!(t.contains(code), "{code} missing in:\n{t}");
    }
    // A line past the limit closes the connection with a reason.
    let long = "x".repeat(super::MAX_REQUEST_LINE + 10);
    net.line(0, 2, &long);
    assert!(net.closed.contains(&(0, 2)));
    assert!(net.text(0, 2).contains("500 line longer than"));
    // quit
    net.line(0, 1, "quit");
    assert!(net.text(0, 1).ends_with("221 bye\n"));
    assert!(net.closed.contains(&(0, 1)));
    assert_eq!(net.nodes[0].clients(), 0);
}

#[test]
fn daemon_lines_are_forwarded_in_order() {
    let mut net = Net::new(1, (7000, 7009));
    net.open(0, 1);
    net.line(0, 1, "members");
    net.line(0, 1, "stats");
    net.close(0, 1);
    let fw: Vec<&Forward> = net
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            FrontEvent::Forward { what, .. } => Some(what),
            _ => None,
        })
        .collect();
    assert!(matches!(fw[0], Forward::Open(_)));
    assert_eq!(fw[1], &Forward::Line(Bytes::from_static(b"members\n")));
    assert_eq!(fw[2], &Forward::Line(Bytes::from_static(b"stats\n")));
    assert_eq!(fw[3], &Forward::Close);
}

#[test]
fn services_get_one_port_per_service_one_agent_per_node_and_resolve_everywhere() {
    let mut net = Net::new(3, (7000, 7001));
    net.open(0, 1);
    net.line(0, 1, "bind web");
    net.open(1, 1);
    net.line(1, 1, "bind web");
    net.open(1, 2);
    net.line(1, 2, "bind db");
    net.settle();
    assert!(
        net.text(0, 1).starts_with("250 7000\n"),
        "{}",
        net.text(0, 1)
    );
    assert!(net.text(1, 1).starts_with("250 7000\n"));
    assert!(net.text(1, 2).starts_with("250 7001\n"));
    // One agent per node per service.
    net.open(1, 3);
    net.line(1, 3, "bind web");
    assert!(
        net.text(1, 3)
            .contains("450 web is already bound on b (one agent per node per service)")
    );
    // Out of ports.
    net.line(1, 3, "bind mail");
    net.settle();
    assert!(
        net.text(1, 3)
            .contains("452 no free cluster port in 7000-7001: mail not bound")
    );
    // Resolve from a third daemon.
    net.open(2, 1);
    net.line(2, 1, "resolve b:web");
    net.line(2, 1, "resolve a db");
    net.line(2, 1, "resolve zz web");
    net.line(2, 1, "services");
    let t = net.text(2, 1);
    assert!(t.contains("250 127.0.0.2:7000\n"), "{t}");
    assert!(t.contains("450 db is not bound on a"));
    assert!(t.contains("450 no daemon zz in the view"));
    assert!(
        t.contains("250-db 7001 b\n250-web 7000 a,b\n250 2 services\n"),
        "{t}"
    );
    // Every daemon holds the same table.
    let tables: Vec<_> = net.nodes.iter().map(|n| n.services().ports()).collect();
    assert_eq!(tables[0], tables[1]);
    assert_eq!(tables[1], tables[2]);
    // A release from another connection of the node: the holder is told.
    net.line(1, 3, "release db");
    net.settle();
    assert!(net.text(1, 3).ends_with("250 released db\n"));
    assert!(net.text(1, 2).contains("625 db released\n"));
    // The port is free again once the last member left.
    net.line(2, 1, "bind mail");
    net.settle();
    assert_eq!(
        net.lines(2, 1, "250 70").last().map(String::as_str),
        Some("250 7001"),
        "{}",
        net.text(2, 1)
    );
    // Disconnecting releases too.
    net.close(2, 1);
    net.settle();
    assert!(net.nodes[0].services().port("mail").is_none());
}

#[test]
fn a_barrier_runs_stop_start_done_finish_and_reports_who_is_late() {
    let mut net = Net::new(2, (7000, 7009));
    net.open(0, 1);
    net.line(0, 1, "bind web");
    net.settle();
    net.line(0, 1, "done web");
    net.settle();
    let t = net.text(0, 1).to_string();
    assert!(t.contains("620 web stop 1.a:"), "{t}");
    assert!(t.contains("621 web start 1.a:"));
    assert!(t.contains(" 7000 1 a\n"));
    assert!(t.contains("622 web finish"), "{t}");
    // A second node's agent starts a new barrier for both; only a says done.
    net.open(1, 1);
    net.line(1, 1, "bind web");
    net.settle();
    net.line(0, 1, "done web");
    // Ten seconds later, the one not done is reported to both.
    let until = net.now + core::time::Duration::from_secs(11);
    while net.now < until {
        net.step();
    }
    assert!(
        net.text(0, 1).contains("623 web waiting"),
        "{}",
        net.text(0, 1)
    );
    let starts = net.lines(0, 1, "621 web start ");
    let event = starts
        .last()
        .unwrap()
        .split(' ')
        .nth(3)
        .unwrap()
        .to_string();
    assert_eq!(
        net.lines(0, 1, "623 web waiting"),
        vec![format!("623 web waiting {event} b")],
        "once, naming b only"
    );
    assert!(net.events.iter().any(|(_, e)| matches!(e, FrontEvent::BarrierWaiting { missing, .. } if missing == &vec!["b".to_string()])));
    net.line(1, 1, "done web");
    net.settle();
    assert!(net.lines(0, 1, "622 web finish").len() == 2);
    // Each barrier is told once: a's agent saw two, b's one.
    assert_eq!(net.lines(0, 1, "620 web stop").len(), 2);
    assert_eq!(net.lines(0, 1, "621 web start").len(), 2);
    assert_eq!(net.lines(1, 1, "620 web stop").len(), 1);
    assert!(net.lines(1, 1, "622 web finish").len() == 1);
}

/// Two daemons cut apart, each alone in its view, with ports `range`: `a`'s agent binds
/// `old` first, then (a view later) `b`'s binds `young`; both get the first port.
fn apart_old_then_young(range: (u16, u16)) -> Net {
    let mut net = Net::new(2, range);
    net.cut = [(0, 1), (1, 0)].into_iter().collect();
    net.install(&view(2, &[0]), &[0]);
    net.install(&view(2, &[1]), &[1]);
    net.settle();
    net.open(0, 1);
    net.line(0, 1, "bind old");
    net.settle();
    net.install(&view(3, &[1]), &[1]);
    net.settle();
    net.open(1, 1);
    net.line(1, 1, "bind young");
    net.settle();
    net
}

#[test]
fn after_a_heal_two_services_on_one_port_are_told_apart_by_age() {
    // Apart: each side hands out 7000, a's first.
    let mut net = apart_old_then_young((7000, 7009));
    assert!(net.text(0, 1).starts_with("250 7000"));
    assert!(net.text(1, 1).starts_with("250 7000"));
    // Healed.
    net.cut.clear();
    net.install(&view(4, &[0, 1]), &[0, 1]);
    net.settle();
    let a = net.nodes[0].services().ports();
    let b = net.nodes[1].services().ports();
    assert_eq!(a, b, "one table");
    assert_eq!(a["old"], 7000, "the older binding keeps its port");
    assert_eq!(a["young"], 7001);
    assert!(
        net.text(1, 1).contains("624 young moved 7001\n"),
        "{}",
        net.text(1, 1)
    );
    assert!(!net.text(0, 1).contains("624"));
    assert!(
        net.events
            .iter()
            .any(|(i, e)| *i == 1 && matches!(e, FrontEvent::PortMoved { port: 7001, .. }))
    );
}

/// The event of the last `621` the client read.
fn last_start(net: &Net, i: usize, c: u64, s: &str) -> String {
    let starts = net.lines(i, c, &format!("621 {s} start "));
    let last = starts.last().expect("a barrier started");
    last.split(' ').nth(3).unwrap().to_string()
}

#[test]
fn done_takes_only_the_barrier_that_waits() {
    let mut net = Net::new(2, (7000, 7009));
    net.open(0, 1);
    net.line(0, 1, "bind web");
    net.open(1, 1);
    net.line(1, 1, "bind web");
    net.settle();
    let event = last_start(&net, 0, 1, "web");
    assert_eq!(event, last_start(&net, 1, 1, "web"));
    // Bogus, stale and future ids are refused, and change nothing.
    let future = {
        let (v, n) = event.rsplit_once(':').unwrap();
        format!("{v}:{}", n.parse::<u64>().unwrap() + 5)
    };
    for bad in ["bogus", "0.a:0", "1.a:1", future.as_str()] {
        net.line(0, 1, &format!("done web {bad}"));
        let t = net.text(0, 1);
        assert!(
            t.ends_with(&format!(
                "450 {bad} is not the barrier of web that waits ({event}): not done\n"
            )),
            "{bad}: {t}"
        );
    }
    net.settle();
    assert!(
        net.nodes[0]
            .services()
            .barrier("web")
            .unwrap()
            .done
            .is_empty()
    );
    // The right one is taken, by id or by default; the barrier finishes.
    net.line(0, 1, &format!("done web {event}"));
    assert!(net.text(0, 1).ends_with(&format!("250 done web {event}\n")));
    net.line(1, 1, "done web");
    assert!(net.text(1, 1).ends_with(&format!("250 done web {event}\n")));
    net.settle();
    assert_eq!(net.lines(0, 1, "622 web finish").len(), 1);
    assert_eq!(net.lines(1, 1, &format!("622 web finish {event}")).len(), 1);
    // With no barrier waiting, any done is refused.
    net.line(0, 1, &format!("done web {event}"));
    assert!(
        net.text(0, 1)
            .ends_with("450 no recovery barrier of web is waiting\n")
    );
    net.line(0, 1, "done web");
    assert!(
        net.text(0, 1)
            .ends_with("450 no recovery barrier of web is waiting\n")
    );
    // Another connection is not the agent.
    net.open(0, 2);
    net.line(0, 2, "done web");
    assert!(
        net.text(0, 2)
            .contains("450 this connection is not web's agent on a")
    );
}

/// Two sides hand out the only port; after the heal the younger service has none (`624
/// … 0`). When the older one's agent goes, the port is handed over at once (`624`),
/// with no view change, and resolves.
#[test]
fn a_service_left_without_a_port_gets_the_first_that_frees() {
    let mut net = apart_old_then_young((7000, 7000));
    net.cut.clear();
    net.install(&view(4, &[0, 1]), &[0, 1]);
    net.settle();
    assert_eq!(net.nodes[0].services().ports()["old"], 7000);
    assert!(net.nodes[1].services().port("young").is_none());
    assert!(
        net.text(1, 1)
            .ends_with("624 young moved 0\n620 young stop 4.a:0\n621 young start 4.a:0 0 1 b\n"),
        "{}",
        net.text(1, 1)
    );
    net.open(0, 2);
    net.line(0, 2, "resolve b young");
    assert!(
        net.text(0, 2)
            .ends_with("451 young has no port: none of 7000-7000 is free (it gets the first that frees): try again\n"),
        "{}",
        net.text(0, 2)
    );
    // old's agent goes: young gets 7000 at once, in the same view.
    let at = net.nodes[1].groups().view().id.clone();
    net.close(0, 1);
    net.settle();
    assert_eq!(net.nodes[1].groups().view().id, at, "no view change");
    assert_eq!(net.nodes[0].services().ports()["young"], 7000);
    assert_eq!(net.nodes[1].services().ports()["young"], 7000);
    assert!(
        net.text(1, 1).ends_with("624 young moved 7000\n"),
        "{}",
        net.text(1, 1)
    );
    assert!(
        net.events
            .iter()
            .any(|(i, e)| *i == 1 && matches!(e, FrontEvent::PortMoved { port: 7000, .. }))
    );
    net.line(0, 2, "resolve b young");
    assert!(net.text(0, 2).ends_with("250 127.0.0.2:7000\n"));
    // The agent's done for the barrier it was told of still finishes it.
    let event = last_start(&net, 1, 1, "young");
    net.line(1, 1, &format!("done young {event}"));
    net.settle();
    assert!(
        net.text(1, 1)
            .contains(&format!("622 young finish {event}"))
    );
}

/// After a heal an agent whose service keeps its port hears no other port: services
/// that had no conflict keep theirs; only the younger of two holding one port moves,
/// once, with its barrier naming the new port.
#[test]
fn after_a_heal_only_the_loser_moves_and_only_once() {
    let mut net = Net::new(2, (7000, 7003));
    // Before the split: k on both.
    net.open(0, 1);
    net.line(0, 1, "bind k");
    net.open(1, 1);
    net.line(1, 1, "bind k");
    net.settle();
    net.cut = [(0, 1), (1, 0)].into_iter().collect();
    net.install(&view(2, &[0]), &[0]);
    net.install(&view(2, &[1]), &[1]);
    net.settle();
    // a: x (7001), y (7002); b (its places younger): z (7001), w (7002).
    for (i, c, s) in [(0, 2, "x"), (0, 3, "y"), (1, 2, "z"), (1, 3, "w")] {
        net.open(i, c);
        net.line(i, c, &format!("bind {s}"));
        net.settle();
    }
    net.install(&view(3, &[1]), &[1]);
    net.settle();
    net.cut.clear();
    net.install(&view(4, &[0, 1]), &[0, 1]);
    net.settle();
    let t = net.nodes[0].services().ports();
    assert_eq!(t, net.nodes[1].services().ports());
    assert_eq!((t["k"], t["x"], t["y"]), (7000, 7001, 7002));
    // Both losers free: the first by name (w) takes 7003, z has none.
    assert_eq!(t["w"], 7003, "{t:?}");
    assert!(!t.contains_key("z"), "{t:?}");
    for (i, c) in [(0, 1), (0, 2), (0, 3), (1, 1)] {
        let text = net.text(i, c);
        assert!(!text.contains("624"), "{i}/{c} kept its port: {text}");
    }
    // Each loser told once, with the barrier naming what it was told.
    let z = "624 z moved 0\n620 z stop 4.a:0\n621 z start 4.a:0 0 1 b\n";
    assert!(net.text(1, 2).ends_with(z), "{}", net.text(1, 2));
    let w = "624 w moved 7003\n620 w stop 4.a:0\n621 w start 4.a:0 7003 1 b\n";
    assert!(net.text(1, 3).ends_with(w), "{}", net.text(1, 3));
    assert_eq!(net.lines(1, 3, "624").len(), 1);
}

#[test]
fn daemons_configured_with_different_ranges_still_agree_on_every_port() {
    let mut net = Net::with_ranges(&[(7000, 7009), (8000, 8009)]);
    net.open(1, 1);
    net.line(1, 1, "bind web");
    net.open(0, 1);
    net.line(0, 1, "bind db");
    net.settle();
    net.open(0, 2);
    net.line(0, 2, "bind web");
    net.settle();
    assert!(
        net.text(1, 1).starts_with("250 8000\n"),
        "{}",
        net.text(1, 1)
    );
    assert!(net.text(0, 1).starts_with("250 7000\n"));
    assert!(
        net.text(0, 2).starts_with("250 8000\n"),
        "the port web already has"
    );
    let a = net.nodes[0].services().ports();
    assert_eq!(a, net.nodes[1].services().ports());
    // And after a view change, from the claims.
    net.install(&view(2, &[0, 1]), &[0, 1]);
    net.settle();
    assert_eq!(a, net.nodes[0].services().ports());
    assert_eq!(a, net.nodes[1].services().ports());
}

#[test]
fn a_sender_past_the_pending_bound_is_held_not_refused() {
    let mut net = Net::new(2, (7000, 7009));
    net.open(0, 1);
    net.line(0, 1, "join g");
    net.settle();
    net.open(1, 1);
    // More than the groups machine takes at once, pipelined, before any frame moves.
    let n = super::super::MAX_PENDING + 100;
    let mut burst = String::new();
    for k in 0..n {
        burst.push_str(&format!("send g m{k}\n"));
    }
    net.nodes[1]
        .handle(net.now, Input::ClientData(ClientId(1), Bytes::from(burst)))
        .unwrap();
    net.drain(1);
    let sent = net.lines(1, 1, "250 sent").len();
    assert_eq!(sent, super::super::MAX_PENDING, "the rest wait for room");
    assert!(!net.text(1, 1).contains("451"));
    net.settle();
    assert_eq!(net.lines(1, 1, "250 sent").len(), n);
    let got = net.lines(0, 1, "600 g ");
    assert_eq!(got.len(), n, "every message delivered, once");
    for (k, l) in got.iter().enumerate() {
        assert!(l.ends_with(&format!(" m{k}")), "in order: {l}");
    }
}

/// The same for FIFO sends: the origin sends its window at once and keeps up to the
/// pending bound; past that the connection waits, and everything arrives, in order.
#[test]
fn a_fifo_sender_past_its_window_and_the_pending_bound_is_held_not_refused() {
    use crate::groups::FIFO_WINDOW;
    let mut net = Net::new(2, (7000, 7009));
    net.open(0, 1);
    net.line(0, 1, "join g");
    net.settle();
    net.open(1, 1);
    let taken = FIFO_WINDOW as usize + super::super::MAX_PENDING;
    let n = taken + 100;
    let mut burst = String::new();
    for k in 0..n {
        burst.push_str(&format!("fsend g m{k}\n"));
    }
    net.nodes[1]
        .handle(net.now, Input::ClientData(ClientId(1), Bytes::from(burst)))
        .unwrap();
    net.drain(1);
    assert_eq!(
        net.lines(1, 1, "250 sent").len(),
        taken,
        "the rest wait for room"
    );
    assert!(!net.text(1, 1).contains("451"));
    net.settle();
    assert_eq!(net.lines(1, 1, "250 sent").len(), n);
    let got = net.lines(0, 1, "601 g ");
    assert_eq!(got.len(), n, "every message delivered, once");
    for (k, l) in got.iter().enumerate() {
        assert!(l.ends_with(&format!(" m{k}")), "in order: {l}");
    }
}

#[test]
fn past_the_cluster_membership_budget_joins_and_binds_are_refused() {
    let mut net = Net::new(2, (7000, 7009));
    for n in &mut net.nodes {
        n.max_memberships = 3;
    }
    for c in 1..=3 {
        net.open(0, c);
        net.line(0, c, "join g");
    }
    net.settle();
    net.open(1, 1);
    net.line(1, 1, "join h");
    net.line(1, 1, "bind web");
    let t = net.text(1, 1);
    assert!(
        t.contains("452 the cluster holds 3 memberships, the most it takes"),
        "{t}"
    );
    assert_eq!(t.matches("452 ").count(), 2, "{t}");
    // A leave makes room.
    net.line(0, 3, "leave g");
    net.settle();
    net.line(1, 1, "join h");
    net.settle();
    assert!(
        net.text(1, 1).ends_with("250 joined h\n"),
        "{}",
        net.text(1, 1)
    );
}

/// `fsend`: every member on every daemon reads each sender's FIFO messages as `601`
/// lines in the order sent, once; the sender (not a member) gets `250 sent` for each;
/// the text comes back as sent, escapes and all.
#[test]
fn fifo_sends_reach_every_member_in_each_senders_order() {
    let mut net = Net::new(3, (7000, 7009));
    for i in 0..3 {
        net.open(i, 1);
        net.line(i, 1, &format!("name app{i}"));
        net.line(i, 1, "join g");
    }
    net.settle();
    for i in 0..3 {
        net.open(i, 2);
        for k in 0..20 {
            net.line(i, 2, &format!("fsend g s{i} m{k:02}\\x00\\n"));
        }
    }
    net.settle();
    for i in 0..3 {
        let acks = net.lines(i, 2, "250 sent");
        assert_eq!(acks.len(), 20, "{}", net.text(i, 2));
        let got = net.lines(i, 1, "601 g ");
        assert_eq!(got.len(), 60, "{got:?}");
        assert!(net.lines(i, 1, "600 ").is_empty(), "no agreed delivery");
        for (j, d) in ["a", "b", "c"].iter().enumerate() {
            let mine: Vec<&String> = got
                .iter()
                .filter(|l| l.contains(&format!("@{d} ")))
                .collect();
            assert_eq!(mine.len(), 20);
            for (k, l) in mine.iter().enumerate() {
                // 601 GROUP SENDER@DAEMON VIEW FSEQ TEXT
                let w: Vec<&str> = l.splitn(6, ' ').collect();
                assert_eq!(w[4], (k + 1).to_string(), "{l}");
                assert_eq!(w[5], format!("s{j} m{k:02}\\x00\\n"), "{l}");
            }
        }
    }
    // A sender that names a group of the daemons' own is refused.
    net.line(0, 2, "fsend #svc:web x");
    net.settle();
    assert!(net.text(0, 2).contains("501 "), "{}", net.text(0, 2));
}

/// A view change while this daemon has the most items on their way: its claims wait for
/// room instead of being lost (a lost claim left the service without a port for the
/// whole view), and go before the requests held for room.
#[test]
fn claims_wait_for_room_after_a_view_change() {
    let mut net = Net::new(2, (7000, 7009));
    net.open(1, 1);
    net.line(1, 1, "bind web");
    net.settle();
    assert_eq!(net.nodes[1].services().ports()["web"], 7000);
    // b's submits are lost: its items pile up to the bound.
    net.cut = [(1, 0)].into_iter().collect();
    net.open(1, 2);
    let n = super::super::MAX_PENDING + 10;
    let burst: String = (0..n).map(|k| format!("send g m{k}\n")).collect();
    net.nodes[1]
        .handle(net.now, Input::ClientData(ClientId(2), Bytes::from(burst)))
        .unwrap();
    net.drain(1);
    assert_eq!(net.nodes[1].groups().pending(), super::super::MAX_PENDING);
    net.cut.clear();
    net.install(&view(2, &[0, 1]), &[0, 1]);
    while net.nodes[1].groups().flushing() {
        net.step();
    }
    assert_eq!(net.nodes[1].held_claims.len(), 1, "no room for the claim");
    assert!(net.nodes[1].services().settling());
    net.settle();
    for i in 0..2 {
        assert_eq!(net.nodes[i].services().ports()["web"], 7000, "node {i}");
    }
    assert!(net.nodes[1].held_claims.is_empty());
    assert_eq!(net.lines(1, 2, "250 sent").len(), n);
    // The check catches claims held while there is room.
    net.nodes[1]
        .held_claims
        .push(("web".into(), super::Control::Range(7000, 7009)));
    let e = net.nodes[1].check_invariants().unwrap_err();
    assert!(e.contains("claims held for room"), "{e}");
}

/// An agent whose connection waits (here for room, its sends past the bound) still
/// hears of a barrier that begins meanwhile, and can finish it once its requests go.
#[test]
fn an_agent_waiting_for_room_still_hears_of_a_barrier() {
    let mut net = Net::new(2, (7000, 7009));
    net.open(1, 1);
    net.line(1, 1, "bind web");
    net.settle();
    net.cut = [(1, 0)].into_iter().collect();
    let n = super::super::MAX_PENDING + 10;
    let burst: String = (0..n).map(|k| format!("send g m{k}\n")).collect();
    net.nodes[1]
        .handle(net.now, Input::ClientData(ClientId(1), Bytes::from(burst)))
        .unwrap();
    net.drain(1);
    // a's agent joins: a barrier for a and b begins at b while b's agent waits.
    net.open(0, 1);
    net.line(0, 1, "bind web");
    for _ in 0..50 {
        net.step();
    }
    let starts = net.lines(1, 1, "621 web start ");
    assert_eq!(starts.len(), 2, "{}", net.text(1, 1));
    assert!(starts[1].ends_with(" 7000 2 a b"), "{starts:?}");
    let event = last_start(&net, 1, 1, "web");
    net.cut.clear();
    net.line(1, 1, &format!("done web {event}"));
    net.line(0, 1, &format!("done web {event}"));
    net.settle();
    assert!(
        net.text(1, 1).contains(&format!("250 done web {event}\n")),
        "{}",
        net.text(1, 1)
    );
    assert_eq!(net.lines(0, 1, &format!("622 web finish {event}")).len(), 1);
}

/// One daemon alone, given client requests; `every`: how many inputs go between drains
/// of its outbox (1: after each, as the tests above do).
fn one_daemon_run(ops: &[(u64, u8)], every: usize) -> BTreeMap<(usize, u64), String> {
    let mut net = Net::new(1, (7000, 7009));
    for c in 1..=4 {
        net.open(0, c);
    }
    let mut gone = BTreeSet::new();
    for (k, &(c, op)) in ops.iter().enumerate() {
        let input = match op {
            0 => "join a",
            1 => "join b",
            2 => "leave a",
            3 => "send a x",
            4 => "send b y",
            5 => "members a",
            _ => {
                // Closes the client (every later request of its is from a new one).
                gone.insert(c);
                net.nodes[0]
                    .handle(net.now, Input::ClientClosed(ClientId(c)))
                    .unwrap();
                net.closed.insert((0, c));
                continue;
            }
        };
        if gone.contains(&c) {
            continue;
        }
        let data = Bytes::from(format!("{input}\n"));
        net.nodes[0]
            .handle(net.now, Input::ClientData(ClientId(c), data))
            .unwrap();
        if (k + 1) % every == 0 {
            net.drain(0);
        }
    }
    net.drain(0);
    net.settle();
    // What a client that went away could have read before it did is not compared: its
    // bytes are for nobody (the harness still checks none come after its close).
    net.read.retain(|(_, c), _| !gone.contains(c));
    net.read
}

proptest::proptest! {
    /// Whether the outbox is drained after every input or after a batch of them (as
    /// the driver does with client input), every client reads the same bytes: lines
    /// written once for a group's members (deliveries, `611`) keep their place among
    /// each member's own lines, start where it joined and end where it left.
    #[test]
    fn every_client_reads_the_same_however_inputs_are_batched(
        ops in proptest::collection::vec((1u64..=4, 0u8..7), 1..80),
        every in 2usize..12,
    ) {
        let one_by_one = one_daemon_run(&ops, 1);
        let batched = one_daemon_run(&ops, every);
        proptest::prop_assert_eq!(one_by_one, batched);
    }
}

/// The front's check sees output kept for a client that is closed, and a fan-out whose
/// member starts past its lines or is no member.
#[test]
fn the_check_catches_output_for_a_closed_client_and_a_broken_fan_out() {
    let mut net = Net::new(1, (7000, 7009));
    net.open(0, 1);
    net.line(0, 1, "join a");
    net.settle();
    let n = &mut net.nodes[0];
    n.out
        .insert(ClientId(99), bytes::BytesMut::from(&b"lost\n"[..]));
    let e = n.check_invariants().unwrap_err();
    assert!(e.contains("closed"), "{e}");
    n.out.clear();
    n.fan_out("a", "600 a x", None);
    assert!(n.check_invariants().is_ok());
    n.fanout.as_mut().unwrap().from.insert(ClientId(1), 1_000);
    let e = n.check_invariants().unwrap_err();
    assert!(e.contains("fan-out of a"), "{e}");
    n.fanout.as_mut().unwrap().from.clear();
    n.fanout.as_mut().unwrap().from.insert(ClientId(7), 0);
    let e = n.check_invariants().unwrap_err();
    assert!(e.contains("a member: false"), "{e}");
}

// ----- binary messages: `bsend`, `bfsend`, `binary` (SPEC.md §10.6) -----

/// Every byte value, and the line breaks a text line cannot hold as they are.
fn awkward_bytes() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend_from_slice(b"\n\r\n\\x00 end");
    v
}

/// A `bsend` message reaches a member that asked for `binary` as `602 … SIZE` and its
/// bytes as they are, and a text member as the usual escaped `600` line; `bfsend` the
/// same as `603`/`601`. Membership notices stay lines for both, in their places.
#[test]
fn a_binary_message_reaches_binary_members_as_it_is_and_text_members_escaped() {
    let mut net = Net::new(2, (7000, 7009));
    net.open(0, 1);
    net.line(0, 1, "binary");
    net.line(0, 1, "join g");
    net.open(1, 2);
    net.line(1, 2, "join g");
    net.settle();
    let payload = awkward_bytes();
    let mut req = format!("bsend g {}\n", payload.len()).into_bytes();
    req.extend_from_slice(&payload);
    req.extend_from_slice(format!("bfsend g {}\n", 3).as_bytes());
    req.extend_from_slice(b"a\nb");
    req.extend_from_slice(b"send g plain\n");
    net.data(1, 2, &req);
    net.settle();
    // The binary member: 250 binary, the join, the messages with their bytes.
    let recs = net.records(0, 1);
    assert!(recs[0].0.starts_with("250 binary"), "{recs:?}");
    let msgs: Vec<&(String, Option<Vec<u8>>)> =
        recs.iter().filter(|(l, _)| l.starts_with("60")).collect();
    assert_eq!(msgs.len(), 3, "{recs:?}");
    assert!(msgs[0].0.starts_with("602 g c2@b "), "{}", msgs[0].0);
    assert!(msgs[0].0.ends_with(&format!(" {}", payload.len())));
    assert_eq!(msgs[0].1.as_deref(), Some(payload.as_slice()));
    // Agreed and FIFO messages have no order between them; each arrives once.
    let fifo = msgs
        .iter()
        .find(|(l, _)| l.starts_with("603 g c2@b "))
        .expect("603");
    assert_eq!(fifo.1.as_deref(), Some(&b"a\nb"[..]));
    let plain = msgs
        .iter()
        .find(|(l, b)| l.starts_with("602 ") && b.as_deref() == Some(b"plain"))
        .expect("a text send reaches a binary member as 602 too");
    assert!(plain.0.ends_with(" 5"));
    assert!(
        recs.iter().any(|(l, _)| l.starts_with("611 g ")),
        "{recs:?}"
    );
    // The text member: escaped lines, which unescape to the same bytes.
    let text = net.lines(1, 2, "600 g c2@b ");
    assert_eq!(text.len(), 2, "{text:?}");
    let escaped = text[0].splitn(6, ' ').nth(5).unwrap();
    assert_eq!(crate::line::unescape(escaped).unwrap(), payload);
    assert_eq!(net.lines(1, 2, "601 g c2@b ").len(), 1);
    assert_eq!(net.text(1, 2).matches("250 sent").count(), 3);
}

/// The bytes of a `bsend` may come a few at a time; the line waits for all of them,
/// and the next request after them is read as a line. A body left unfinished is
/// closed like an unfinished line.
#[test]
fn a_binary_body_arriving_in_pieces_is_taken_whole_and_an_unfinished_one_closes() {
    let mut net = Net::new(1, (7000, 7009));
    net.open(0, 1);
    net.line(0, 1, "binary");
    net.line(0, 1, "join g");
    net.settle();
    let mut req = b"bsend g 10\n0123".to_vec();
    req.extend_from_slice(b"\n6789\n");
    req.extend_from_slice(b"groups\n");
    for b in &req {
        net.data(0, 1, &[*b]);
    }
    net.settle();
    let recs = net.records(0, 1);
    let msg = recs
        .iter()
        .find(|(l, _)| l.starts_with("602 "))
        .expect("602");
    assert_eq!(msg.1.as_deref(), Some(&b"0123\n6789\n"[..]));
    assert!(recs.iter().any(|(l, _)| l == "250 1 groups"), "{recs:?}");
    // Half a body, then silence: closed after the partial-line bound.
    net.data(0, 1, b"bsend g 100\nonly this");
    for _ in 0..40 {
        net.now += core::time::Duration::from_secs(1);
        net.nodes[0].handle_timeout(net.now);
        net.drain(0);
    }
    assert!(net.closed.contains(&(0, 1)));
    assert!(net.text(0, 1).contains("421 "), "{}", net.text(0, 1));
}

/// `bsend` takes up to 65,536 bytes; a larger SIZE, a SIZE that is not a number or
/// none are refused and close the connection (the bytes that follow cannot be read as
/// requests); a bad group with a good SIZE is refused after its bytes, and the
/// connection goes on. Nothing of a refused message is sent.
#[test]
fn binary_sends_at_the_size_bound_pass_and_past_it_are_refused_and_closed() {
    use crate::groups::msg::MAX_PAYLOAD;
    let mut net = Net::new(1, (7000, 7009));
    net.open(0, 1);
    net.line(0, 1, "binary");
    net.line(0, 1, "join g");
    net.settle();
    let mut req = format!("bsend g {MAX_PAYLOAD}\n").into_bytes();
    req.extend(std::iter::repeat_n(b'x', MAX_PAYLOAD));
    net.data(0, 1, &req);
    net.settle();
    let recs = net.records(0, 1);
    let msg = recs
        .iter()
        .find(|(l, _)| l.starts_with("602 "))
        .expect("602");
    assert_eq!(msg.1.as_ref().map(Vec::len), Some(MAX_PAYLOAD));
    let bad: [(&str, &str); 3] = [
        ("bsend g 65537", "552 "),
        ("bsend g 12x", "501 "),
        ("bfsend g", "501 "),
    ];
    for (k, (line, code)) in bad.iter().enumerate() {
        let c = 10 + k as u64;
        net.open(0, c);
        net.data(0, c, format!("{line}\nabc").as_bytes());
        assert!(net.closed.contains(&(0, c)), "{line}");
        assert!(
            net.text(0, c).starts_with(code),
            "{line}: {}",
            net.text(0, c)
        );
    }
    // A bad group: its three bytes (a line break among them) are skipped, then refused.
    net.open(0, 20);
    net.data(0, 20, b"bsend #svc:x 3\na\nbgroups\n");
    assert!(!net.closed.contains(&(0, 20)));
    let t = net.text(0, 20).to_string();
    assert!(t.starts_with("501 group names starting with '#'"), "{t}");
    assert!(t.ends_with("250 1 groups\n"), "{t}");
    net.settle();
    let count = net
        .records(0, 1)
        .iter()
        .filter(|(l, _)| l.starts_with("602 "))
        .count();
    assert_eq!(count, 1, "nothing of a refused message was sent");
}

/// What was written to a member before it asked for `binary` stays text; what comes
/// after is binary, in order.
#[test]
fn asking_for_binary_changes_only_what_comes_after() {
    let mut net = Net::new(1, (7000, 7009));
    net.open(0, 1);
    net.line(0, 1, "join g");
    net.open(0, 2);
    // One input: a message, the switch, another message.
    net.data(0, 1, b"send g before\nbinary\nsend g after\n");
    net.settle();
    let recs = net.records(0, 1);
    let msgs: Vec<&(String, Option<Vec<u8>>)> =
        recs.iter().filter(|(l, _)| l.starts_with("60")).collect();
    assert_eq!(msgs.len(), 2, "{recs:?}");
    assert!(msgs[0].0.starts_with("600 ") && msgs[0].0.ends_with(" before"));
    assert!(msgs[1].0.starts_with("602 ") && msgs[1].0.ends_with(" 5"));
    assert_eq!(msgs[1].1.as_deref(), Some(&b"after"[..]));
}

/// A message to several members of a group on one daemon is written once: members with
/// nothing else waiting get the same bytes (one buffer, shared), not a copy each.
#[test]
fn members_with_nothing_else_waiting_share_one_copy_of_a_message() {
    let mut net = Net::new(1, (7000, 7009));
    for c in 1..=3 {
        net.open(0, c);
        net.line(0, c, "join g");
    }
    net.settle();
    let mut req = b"bsend g 10240\n".to_vec();
    req.extend(std::iter::repeat_n(b'm', 10_240));
    let node = &mut net.nodes[0];
    node.handle(net.now, Input::ClientData(ClientId(1), Bytes::from(req)))
        .unwrap();
    let mut writes: BTreeMap<u64, Vec<Bytes>> = BTreeMap::new();
    while let Some(o) = node.poll_output() {
        if let Output::ToClient(c, b) = o {
            writes.entry(c.0).or_default().push(b);
        }
    }
    // The sender's own reply waits in its output, so its copy is its own; the two other
    // members' writes are one shared buffer.
    let message_of = |c: u64| -> Bytes {
        let w = &writes[&c];
        let m = w
            .iter()
            .find(|b| b.windows(4).any(|x| x == b"600 "))
            .unwrap();
        m.clone()
    };
    let (m2, m3) = (message_of(2), message_of(3));
    assert_eq!(m2, m3);
    assert!(m2.len() > 10_240, "the escaped message: {} bytes", m2.len());
    assert_eq!(m2.as_ptr(), m3.as_ptr(), "one buffer for both members");
    let m1 = message_of(1);
    assert!(m1.windows(8).any(|x| x == b"250 sent"));
}
