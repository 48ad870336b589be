//! Several membership machines wired together by hand: a FIFO of frames between them
//! (one millisecond on every link, so frames arrive in the order they were sent), a
//! virtual clock that steps to the earliest frame or timer, and links that can be cut.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;

use super::{Membership, MembershipCommand, MembershipError, MembershipEvent, MembershipSettings};
use crate::machine::{ClientId, ClientOrigin, Input, ListenerId, Machine, Output};
use crate::membership::msg::{ClusterConfig, MemberMsg};
use crate::membership::view::{Member, View};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::Frame;

/// Every link's delay.
const LATENCY: Duration = Duration::from_millis(1);
/// Steps a run may take before the harness gives up (a livelock).
const MAX_STEPS: u64 = 2_000_000;

const NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4800 + i as u16))
}

struct Node {
    m: Membership,
    /// Events, with when they came out.
    events: Vec<(Instant, MembershipEvent)>,
    /// Bytes written to clients, in order.
    to_client: Vec<(ClientId, Bytes)>,
    closed: Vec<ClientId>,
}

impl Node {
    fn views(&self) -> impl Iterator<Item = (Instant, &View)> {
        self.events.iter().filter_map(|(t, e)| match e {
            MembershipEvent::ViewInstalled { view, .. } => Some((*t, view)),
            _ => None,
        })
    }

    fn refusals(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                MembershipEvent::Refused { reason } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Everything written to `client`, as text.
    fn client_text(&self, client: ClientId) -> String {
        let bytes: Vec<u8> = self
            .to_client
            .iter()
            .filter(|(c, _)| *c == client)
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        String::from_utf8(bytes).expect("replies are UTF-8")
    }
}

struct Net {
    now: Instant,
    nodes: Vec<Node>,
    /// (delivery time, from, to, frame): times never decrease along the queue.
    queue: VecDeque<(Instant, SocketAddr, SocketAddr, Frame)>,
    /// Nodes whose frames are all dropped, both ways.
    isolated: BTreeSet<usize>,
    steps: u64,
}

impl Net {
    fn new() -> Self {
        Net {
            now: Instant::ZERO,
            nodes: Vec::new(),
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            steps: 0,
        }
    }

    /// Starts a daemon now.
    fn add(&mut self, s: MembershipSettings) -> usize {
        let i = self.nodes.len();
        let m = Membership::new(s, self.now, Rng::from_seed(0x5eed + i as u64));
        self.nodes.push(Node {
            m,
            events: Vec::new(),
            to_client: Vec::new(),
            closed: Vec::new(),
        });
        self.drain(i);
        i
    }

    fn index_of(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.m.me().addr == a)
    }

    fn m(&self, i: usize) -> &Membership {
        &self.nodes[i].m
    }

    fn drain(&mut self, i: usize) {
        let from = self.nodes[i].m.me().addr;
        while let Some(out) = self.nodes[i].m.poll_output() {
            match out {
                Output::Transmit(t) => {
                    assert_ne!(t.to, from, "node {i} sent a frame to itself");
                    let to = self.index_of(t.to);
                    let dropped =
                        self.isolated.contains(&i) || to.is_none_or(|j| self.isolated.contains(&j));
                    if !dropped {
                        self.queue
                            .push_back((self.now + LATENCY, from, t.to, t.frame));
                    }
                }
                Output::ToClient(c, b) => self.nodes[i].to_client.push((c, b)),
                Output::CloseClient(c) => self.nodes[i].closed.push(c),
                Output::Event(e) => self.nodes[i].events.push((self.now, e)),
                Output::Effect(e) => match e.effect {},
            }
        }
        if let Err(e) = self.nodes[i].m.check_invariants() {
            panic!("node {i} is inconsistent: {e}");
        }
    }

    /// Feeds one input to node `i` now.
    fn handle(&mut self, i: usize, input: Input<MembershipCommand>) -> Result<(), MembershipError> {
        let r = self.nodes[i].m.handle(self.now, input);
        self.drain(i);
        r
    }

    fn next_time(&self) -> Option<Instant> {
        let frame = self.queue.front().map(|q| q.0);
        let timer = self.nodes.iter().filter_map(|n| n.m.poll_timeout()).min();
        match (frame, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs until `done` holds (the instant it first holds) or `deadline` passes (`None`;
    /// the clock is then at the deadline).
    fn run_until(&mut self, deadline: Instant, done: impl Fn(&Net) -> bool) -> Option<Instant> {
        loop {
            if done(self) {
                return Some(self.now);
            }
            match self.next_time() {
                Some(t) if t <= deadline => self.now = self.now.max(t),
                _ => {
                    self.now = self.now.max(deadline);
                    return None;
                }
            }
            self.steps += 1;
            assert!(
                self.steps < MAX_STEPS,
                "no end to the work at {:?}",
                self.now
            );
            while self.queue.front().is_some_and(|q| q.0 <= self.now) {
                let (_, from, to, frame) = self.queue.pop_front().expect("checked");
                let Some(j) = self.index_of(to) else { continue };
                if self.isolated.contains(&j) {
                    continue;
                }
                // A frame refused by the machine (a bad one) is its business: the harness
                // only sends what machines sent.
                let _ = self.handle(j, Input::Frame { from, frame });
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i]
                    .m
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    self.nodes[i].m.handle_timeout(self.now);
                    self.drain(i);
                    if let Some(t) = self.nodes[i].m.poll_timeout() {
                        assert!(t > self.now, "node {i} left a timer at or before now");
                    }
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until, |_| false);
    }

    /// Whether nodes `idx` all hold one view whose members are exactly they.
    fn agree(&self, idx: &[usize]) -> bool {
        let want: BTreeSet<&str> = idx.iter().map(|&i| self.m(i).me().name.as_str()).collect();
        let v = self.m(idx[0]).view();
        let have: BTreeSet<&str> = v.names().collect();
        have == want
            && v.members.len() == idx.len()
            && idx
                .iter()
                .all(|&i| self.m(i).view() == v && self.m(i).active())
            && idx
                .iter()
                .all(|&i| v.member(&self.m(i).me().name) == Some(self.m(i).me()))
    }
}

/// Three daemons, the second and third joining through the first.
fn three_by_join() -> Net {
    three_by_join_with(MembershipSettings::new(NAMES[0], addr(0)))
}

/// Three daemons, the first started with `first`, the others joining through it.
fn three_by_join_with(first: MembershipSettings) -> Net {
    let mut net = Net::new();
    net.add(first);
    for (i, name) in NAMES.iter().enumerate().skip(1) {
        let mut s = MembershipSettings::new(name, addr(i));
        s.join = vec![addr(0)];
        net.add(s);
    }
    net
}

/// Three daemons formed by join, run until they agree (within 2 s).
fn formed() -> Net {
    let mut net = three_by_join();
    net.run_until(Instant::from_secs(2), |n| n.agree(&[0, 1, 2]))
        .expect("three daemons formed by join agree within 2 s");
    net
}

fn listing_three() -> ClusterConfig {
    ClusterConfig {
        daemons: (0..3).map(|i| (NAMES[i].to_string(), addr(i))).collect(),
        ..ClusterConfig::default()
    }
}

/// The three daemons of `listing_three`, each started with it, run until they agree
/// (within 3 s).
fn listed_three_formed() -> Net {
    let mut net = Net::new();
    for (i, name) in NAMES.iter().enumerate() {
        let mut s = MembershipSettings::new(name, addr(i));
        s.config = listing_three();
        net.add(s);
    }
    net.run_until(Instant::from_secs(3), |n| n.agree(&[0, 1, 2]))
        .expect("three listed daemons agree within 3 s");
    net
}

fn origin() -> ClientOrigin {
    ClientOrigin::tcp(ListenerId(0), "127.0.0.1:40000".parse().unwrap(), addr(0))
}

/// (a) Joins form one view of three within 2 s; the first daemon starts primary.
#[test]
fn three_daemons_formed_by_join_agree_within_two_seconds() {
    let mut net = three_by_join();
    let at = net
        .run_until(Instant::from_secs(2), |n| n.agree(&[0, 1, 2]))
        .unwrap_or_else(|| {
            let views: Vec<String> = (0..3).map(|i| format!("{:?}", net.m(i).view())).collect();
            panic!("no agreed view of 3 within 2 s:\n{}", views.join("\n"))
        });
    assert!(at <= Instant::from_secs(2));
    let v = net.m(0).view().clone();
    assert_eq!(v.names().collect::<Vec<_>>(), NAMES);
    assert!(v.id.epoch > 0, "an agreed view is not a daemon's first");
    assert!(v.primary, "the view of the whole cluster is primary: {v:?}");

    let (t0, first) = net.nodes[0]
        .views()
        .next()
        .expect("the first daemon installs a view");
    assert_eq!(t0, Instant::ZERO);
    assert!(
        first.primary,
        "the first daemon's first view is primary: {first:?}"
    );
    assert_eq!(first.names().collect::<Vec<_>>(), ["alpha"]);
    // The joiners do not start primary: they do not know the cluster's basis yet.
    for (i, name) in NAMES.iter().enumerate().skip(1) {
        let (_, first) = net.nodes[i]
            .views()
            .next()
            .expect("every daemon installs a view");
        assert!(!first.primary, "{name} starts primary: {first:?}");
        // Every daemon's last installed view is the agreed one (events say so too).
        assert_eq!(net.nodes[i].views().last().map(|(_, v)| v), Some(&v));
    }
    // A few more seconds change nothing: the view is stable.
    let views_before: Vec<u64> = (0..3).map(|i| net.m(i).stats().views).collect();
    net.run_for(Duration::from_secs(3));
    assert!(net.agree(&[0, 1, 2]));
    assert_eq!(net.m(0).view(), &v);
    let views_after: Vec<u64> = (0..3).map(|i| net.m(i).stats().views).collect();
    assert_eq!(
        views_before, views_after,
        "views changed in a quiet cluster"
    );
}

/// (b) A daemon whose frames are all dropped is out of the others' view within 1 s.
#[test]
fn a_silent_daemon_is_excluded_within_one_second() {
    for silent in [2, 0] {
        let mut net = formed();
        let t0 = net.now;
        net.isolated.insert(silent);
        let rest: Vec<usize> = (0..3).filter(|&i| i != silent).collect();
        let at = net.run_until(t0 + Duration::from_secs(1), |n| n.agree(&rest));
        let Some(at) = at else {
            let views: Vec<String> = rest
                .iter()
                .map(|&i| format!("{:?}", net.m(i).view()))
                .collect();
            panic!(
                "{} still in the others' views 1 s after going silent:\n{}",
                NAMES[silent],
                views.join("\n")
            );
        };
        assert!(at - t0 <= Duration::from_secs(1));
        let v = net.m(rest[0]).view();
        assert!(!v.contains(NAMES[silent]));
        // Two of the three hold a majority of the last primary view's basis.
        assert!(v.primary, "two of three remain primary: {v:?}");
        // The left-out daemon's departure is reported as such.
        let last = net.nodes[rest[0]]
            .events
            .iter()
            .rev()
            .find_map(|(_, e)| match e {
                MembershipEvent::ViewInstalled { left, .. } => Some(left.clone()),
                _ => None,
            });
        assert_eq!(last, Some(vec![NAMES[silent].to_string()]));
    }
}

/// (c) A second daemon with a running one's name (another address) is refused, and
/// the running one keeps its place.
#[test]
fn a_second_daemon_with_a_taken_name_is_refused() {
    // Joining through the coordinator, and through a member that passes the join on.
    for seed in [0, 2] {
        let mut net = formed();
        let before = net.m(0).view().clone();
        let original = net.m(1).me().clone();
        let mut s = MembershipSettings::new("bravo", addr(7));
        s.join = vec![addr(seed)];
        let impostor = net.add(s);
        assert_ne!(net.m(impostor).me().incarnation, original.incarnation);
        let t0 = net.now;
        net.run_until(t0 + Duration::from_secs(1), |n| {
            !n.nodes[impostor].refusals().is_empty()
        })
        .expect("the impostor is refused within 1 s");
        let reasons = net.nodes[impostor].refusals();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].contains("bravo"),
            "the reason names the name: {:?}",
            reasons[0]
        );
        assert!(net.m(impostor).stopped());
        net.run_for(Duration::from_secs(2));
        // The running bravo is still in, at its address and incarnation, with no view
        // change on account of the impostor.
        assert!(net.agree(&[0, 1, 2]), "{:?}", net.m(0).view());
        assert_eq!(net.m(0).view().member("bravo"), Some(&original));
        assert_eq!(net.m(0).view(), &before);
        assert!(net.nodes[1].refusals().is_empty());
    }
}

/// (d) A daemon that leaves gets `Left`, and the others install a view without it within
/// 300 ms (a member leaving, and the coordinator itself).
#[test]
fn a_leaving_daemon_is_out_within_300ms() {
    for leaver in [2, 0] {
        let mut net = formed();
        let t0 = net.now;
        net.handle(leaver, Input::Command(MembershipCommand::Leave))
            .unwrap();
        assert!(!net.m(leaver).active());
        let rest: Vec<usize> = (0..3).filter(|&i| i != leaver).collect();
        let at = net.run_until(t0 + Duration::from_millis(300), |n| n.agree(&rest));
        let Some(at) = at else {
            let views: Vec<String> = rest
                .iter()
                .map(|&i| format!("{:?}", net.m(i).view()))
                .collect();
            panic!(
                "{} still in after 300 ms:\n{}",
                NAMES[leaver],
                views.join("\n")
            );
        };
        assert!(at - t0 <= Duration::from_millis(300));
        net.run_for(Duration::from_secs(2));
        let left: Vec<Instant> = net.nodes[leaver]
            .events
            .iter()
            .filter(|(_, e)| *e == MembershipEvent::Left)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            left.len(),
            1,
            "one Left event: {:?}",
            net.nodes[leaver].events
        );
        assert!(net.m(leaver).stopped());
        // The others stay together and do not take the leaver back.
        assert!(net.agree(&rest));
        assert!(!net.m(rest[0]).view().contains(NAMES[leaver]));
        assert!(net.nodes[leaver].refusals().is_empty());
    }
}

/// (e) The client port: `members`, lines past the limit, `help`, unknown commands.
#[test]
fn the_client_line_protocol_answers() {
    let mut s = MembershipSettings::new(NAMES[0], addr(0));
    s.max_line = 64;
    let mut net = three_by_join_with(s);
    net.run_until(Instant::from_secs(2), |n| n.agree(&[0, 1, 2]))
        .expect("formed");
    let send = |net: &mut Net, c: u64, text: &str| {
        net.handle(
            0,
            Input::ClientData(ClientId(c), Bytes::copy_from_slice(text.as_bytes())),
        )
    };

    // members
    let c1 = ClientId(1);
    net.handle(
        0,
        Input::ClientOpened {
            client: c1,
            origin: origin(),
        },
    )
    .unwrap();
    send(&mut net, 1, "members\r\n").unwrap();
    let v = net.m(0).view().clone();
    let mut want = vec![format!(
        "250-view {} alpha primary members=3 config=0 incarnation={:016x}",
        v.id.epoch, v.id.incarnation
    )];
    for m in &v.members {
        want.push(format!(
            "250-{} {} incarnation={:016x}",
            m.name, m.addr, m.incarnation
        ));
    }
    want.push("250 3 members".to_string());
    let got = net.nodes[0].client_text(c1);
    assert_eq!(got.lines().collect::<Vec<_>>(), want, "{got:?}");
    assert!(got.ends_with('\n'));
    assert!(got.contains("250-bravo 127.0.0.1:4801 incarnation="));

    // Arguments where none are taken; a command in upper case.
    net.nodes[0].to_client.clear();
    send(&mut net, 1, "members now\n").unwrap();
    assert_eq!(
        net.nodes[0].client_text(c1),
        "501 members takes no arguments\n"
    );
    net.nodes[0].to_client.clear();
    send(&mut net, 1, "MEMBERS\n").unwrap();
    assert_eq!(
        net.nodes[0].client_text(c1).lines().last(),
        Some("250 3 members")
    );

    // help
    net.nodes[0].to_client.clear();
    send(&mut net, 1, "help\n").unwrap();
    let help = net.nodes[0].client_text(c1);
    let lines: Vec<&str> = help.lines().collect();
    assert!(lines.len() >= 6, "{help:?}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("214-")),
        "{help:?}"
    );
    assert_eq!(lines.last(), Some(&"214 end of help"));
    for cmd in ["members", "reload", "leave", "quit", "help"] {
        assert!(
            lines.iter().any(|l| l[4..].starts_with(cmd)),
            "help names {cmd}: {help:?}"
        );
    }

    // An unknown command, and an empty line (ignored).
    net.nodes[0].to_client.clear();
    send(&mut net, 1, "\nfrobnicate\n").unwrap();
    assert_eq!(
        net.nodes[0].client_text(c1),
        "500 unknown command 'frobnicate' (try help)\n"
    );
    assert!(net.nodes[0].closed.is_empty());

    // A line past the limit, ended: an error, then the stream is closed.
    let c2 = ClientId(2);
    net.handle(
        0,
        Input::ClientOpened {
            client: c2,
            origin: origin(),
        },
    )
    .unwrap();
    send(&mut net, 2, &format!("{}\n", "x".repeat(100))).unwrap();
    assert_eq!(
        net.nodes[0].client_text(c2),
        "500 line longer than 64 bytes\n"
    );
    assert_eq!(net.nodes[0].closed, [c2]);
    assert_eq!(
        send(&mut net, 2, "members\n"),
        Err(MembershipError::UnknownClient(c2)),
        "a closed client is forgotten"
    );

    // A line past the limit with no end yet, in pieces.
    let c3 = ClientId(3);
    net.handle(
        0,
        Input::ClientOpened {
            client: c3,
            origin: origin(),
        },
    )
    .unwrap();
    send(&mut net, 3, &"y".repeat(40)).unwrap();
    assert_eq!(net.nodes[0].client_text(c3), "");
    send(&mut net, 3, &"y".repeat(40)).unwrap();
    assert_eq!(
        net.nodes[0].client_text(c3),
        "500 line longer than 64 bytes\n"
    );
    assert_eq!(net.nodes[0].closed, [c2, c3]);

    // quit; and the first client was answered throughout, with nothing unasked.
    send(&mut net, 1, "quit\n").unwrap();
    assert!(net.nodes[0].client_text(c1).ends_with("221 bye\n"));
    assert_eq!(net.nodes[0].closed, [c2, c3, c1]);
    assert!(net.agree(&[0, 1, 2]));
}

/// (f) A reload that drops a listed daemon costs one view change, and the dropped one is
/// refused.
#[test]
fn a_reload_removing_a_daemon_is_one_view_change() {
    // At the coordinator, and at a member that passes it on.
    for at in [0, 1] {
        let mut net = listed_three_formed();
        assert!(net.m(0).view().primary);
        assert_eq!(net.m(0).view().config_version, 0);
        net.run_for(Duration::from_millis(500));
        let views_before: Vec<usize> = (0..3).map(|i| net.nodes[i].views().count()).collect();
        let t0 = net.now;

        let reloaded = ClusterConfig {
            daemons: (0..2).map(|i| (NAMES[i].to_string(), addr(i))).collect(),
            ..ClusterConfig::default()
        };
        net.handle(
            at,
            Input::Command(MembershipCommand::Reload(reloaded.clone())),
        )
        .unwrap();
        net.run_until(t0 + Duration::from_secs(1), |n| n.agree(&[0, 1]))
            .expect("the two remaining daemons agree within 1 s");
        net.run_for(Duration::from_secs(2));

        assert!(net.agree(&[0, 1]));
        let v = net.m(0).view();
        assert_eq!(v.names().collect::<Vec<_>>(), ["alpha", "bravo"]);
        assert_eq!(v.config_version, 1);
        assert!(v.primary, "both listed daemons are in: {v:?}");
        assert_eq!(v.basis, ["alpha", "bravo"]);
        for i in 0..2 {
            let cfg = net.m(i).config();
            assert_eq!(cfg.version, 1);
            assert_eq!(cfg.daemons, reloaded.daemons);
            assert_eq!(cfg.removed, ["charlie"]);
            assert_eq!(
                net.nodes[i].views().count(),
                views_before[i] + 1,
                "{} installed one view for the reload: {:?}",
                NAMES[i],
                net.nodes[i]
                    .views()
                    .skip(views_before[i])
                    .collect::<Vec<_>>()
            );
        }
        let reasons = net.nodes[2].refusals();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("reload"), "{reasons:?}");
        assert!(net.m(2).stopped());
        assert!(net.nodes[0].refusals().is_empty() && net.nodes[1].refusals().is_empty());
    }
}

/// Found by the `membership_machine` fuzz target: a command after the daemon stopped
/// (left, or was refused) arms protocol timers on a stopped machine.
#[test]
fn commands_after_stopping_change_nothing() {
    let mut net = Net::new();
    net.add(MembershipSettings::new("alpha", addr(0)));
    net.handle(0, Input::Command(MembershipCommand::Leave))
        .unwrap();
    assert!(net.m(0).stopped());
    assert!(
        net.nodes[0]
            .events
            .iter()
            .any(|(_, e)| *e == MembershipEvent::Left)
    );
    let before = net.m(0).view().clone();
    net.handle(
        0,
        Input::Command(MembershipCommand::Reload(listing_three())),
    )
    .unwrap();
    net.run_for(Duration::from_secs(2));
    assert!(net.m(0).stopped());
    assert_eq!(net.m(0).view(), &before);
    assert!(net.queue.is_empty());
}

/// Found by the `membership_machine` fuzz target: a stopped daemon's timers return early
/// in `on_timer`, so a client's unfinished-line timer is popped and never handled (the
/// client is neither closed nor timed again).
#[test]
fn a_stopped_daemon_still_times_out_unfinished_lines() {
    let mut net = formed();
    let c = ClientId(9);
    net.handle(
        2,
        Input::ClientOpened {
            client: c,
            origin: origin(),
        },
    )
    .unwrap();
    net.handle(2, Input::ClientData(c, Bytes::from_static(b"memb")))
        .unwrap();
    net.handle(2, Input::Command(MembershipCommand::Leave))
        .unwrap();
    net.run_for(Duration::from_secs(40));
    assert!(net.m(2).stopped());
    assert!(net.nodes[2].client_text(c).starts_with("421 "));
    assert_eq!(net.nodes[2].closed, [c]);
}

/// A member name from the wire must be a daemon name: a name with a line break (which
/// would forge reply lines in `members`) is refused as a bad frame, and never gets in.
#[test]
fn a_peer_name_cannot_forge_client_reply_lines() {
    let mut net = Net::new();
    net.add(MembershipSettings::new("alpha", addr(0)));
    let evil = Member {
        name: "mallory\n250 0 members".to_string(),
        incarnation: 7,
        addr: addr(9),
    };
    let join = MemberMsg::Join {
        member: evil.clone(),
    }
    .to_frame();
    let err = net
        .handle(
            0,
            Input::Frame {
                from: addr(9),
                frame: join,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("name"), "{err}");
    net.run_for(Duration::from_millis(500));
    assert!(net.m(0).proposing.is_none());
    assert_eq!(net.m(0).view().members.len(), 1);
    assert_eq!(net.m(0).stats().bad_frames, 1);
}

/// A view holds at most 4,096 daemons: the joins that would fill it are taken, the next
/// one is refused with the reason, not left waiting.
#[test]
fn a_join_past_the_member_limit_is_refused() {
    let mut net = Net::new();
    net.add(MembershipSettings::new("alpha", addr(0)));
    let max = crate::membership::msg::MAX_MEMBERS;
    let joiner = |k: usize| Member {
        name: format!("d{k}"),
        incarnation: k as u64 + 1,
        addr: SocketAddr::from(([10, 1, (k >> 8) as u8, k as u8], 9000)),
    };
    // alpha itself plus max - 1 joiners fill a view.
    for k in 0..max - 1 {
        let frame = MemberMsg::Join { member: joiner(k) }.to_frame();
        net.nodes[0]
            .m
            .handle(
                net.now,
                Input::Frame {
                    from: joiner(k).addr,
                    frame,
                },
            )
            .unwrap();
    }
    assert_eq!(net.m(0).joins.len(), max - 1);
    let last = joiner(max);
    let frame = MemberMsg::Join {
        member: last.clone(),
    }
    .to_frame();
    net.nodes[0]
        .m
        .handle(
            net.now,
            Input::Frame {
                from: last.addr,
                frame,
            },
        )
        .unwrap();
    assert_eq!(
        net.m(0).joins.len(),
        max - 1,
        "the join past the limit was taken"
    );
    let refusal = std::iter::from_fn(|| net.nodes[0].m.poll_output()).find_map(|o| match o {
        Output::Transmit(t) if t.to == last.addr => MemberMsg::decode(&t.frame).ok(),
        _ => None,
    });
    match refusal {
        Some(MemberMsg::Refuse { reason }) => assert!(reason.contains("full"), "{reason}"),
        other => panic!("no refusal: {other:?}"),
    }
}

/// The harness itself: frames to and from a cut node go nowhere.
#[test]
fn the_harness_drops_frames_of_isolated_nodes() {
    let mut net = three_by_join();
    net.isolated.insert(0);
    net.run_for(Duration::from_secs(2));
    assert!(!net.agree(&[0, 1, 2]));
    assert_eq!(net.m(0).view().members.len(), 1);
    assert!(net.queue.iter().all(|q| q.1 != addr(0) && q.2 != addr(0)));
}

mod agreement;
mod epochs;
mod frames;
mod gather;
mod promise;

/// A coordinator that is leaving proposes nothing more, even when a change comes while
/// it waits to be let go (here another member leaves at the same time): the next
/// coordinator proposes the views without them.
#[test]
fn a_leaving_coordinator_proposes_nothing_more() {
    let mut net = formed();
    assert_eq!(net.m(0).view().id.coordinator, NAMES[0]);
    let proposals = net.m(0).stats().proposals;
    for leaver in [0, 1] {
        net.handle(leaver, Input::Command(MembershipCommand::Leave))
            .unwrap();
    }
    net.run_for(Duration::from_secs(3));
    assert_eq!(
        net.m(0).stats().proposals,
        proposals,
        "the leaving coordinator proposed"
    );
    assert!(net.m(0).stopped() && net.m(1).stopped(), "both were let go");
    let v = net.m(2).view();
    assert_eq!(v.names().collect::<Vec<_>>(), [NAMES[2]], "{v:?}");
}

/// A partition that heals merges the two sides again: each side remembers the members it
/// lost and greets them (SPEC §9.2), also where joins formed the cluster and no
/// configuration lists anyone.
#[test]
fn a_healed_partition_merges_back_into_one_view() {
    for cut in [0, 2] {
        let mut net = formed();
        net.isolated.insert(cut);
        let rest: Vec<usize> = (0..3).filter(|i| *i != cut).collect();
        net.run_until(Instant::from_secs(6), |n| n.agree(&rest))
            .expect("the other two go on without the one cut off");
        net.isolated.clear();
        let healed = net.now;
        let at = net
            .run_until(healed + Duration::from_secs(3), |n| n.agree(&[0, 1, 2]))
            .unwrap_or_else(|| panic!("daemon {cut}: no merged view 3 s after the heal"));
        assert!(at > healed);
    }
}

/// The check fires on a member of the view (this daemon too) remembered as absent
/// (greeted as a stranger).
#[test]
fn the_check_fires_on_a_member_remembered_as_absent() {
    let mut net = formed();
    net.run_for(Duration::from_millis(10));
    assert!(net.m(0).check().is_ok());
    let m = &mut net.nodes[0].m;
    m.absent.insert(NAMES[1].to_string(), addr(1));
    let e = m.check().expect_err("a member remembered as absent");
    assert!(e.contains("bravo is in view"), "{e}");
    m.absent.clear();
    m.absent.insert(NAMES[0].to_string(), addr(0));
    let e = m.check().expect_err("itself remembered as absent");
    assert!(e.contains("alpha is in view"), "{e}");
}

/// A reload that lists a daemon not running makes every member remember it, so it is
/// greeted and merged when it starts: and only it (never a member of the view).
#[test]
fn a_reload_listing_a_daemon_not_running_has_it_greeted() {
    let mut net = formed();
    let mut four = listing_three();
    four.daemons.push(("delta".to_string(), addr(3)));
    net.handle(0, Input::Command(MembershipCommand::Reload(four)))
        .unwrap();
    net.run_until(Instant::from_secs(5), |n| {
        (0..3).all(|i| n.m(i).config().daemons.len() == 4)
    })
    .expect("the reload reaches every member");
    for i in 0..3 {
        let absent: Vec<&String> = net.m(i).absent.keys().collect();
        assert_eq!(absent, ["delta"], "daemon {i} remembers {absent:?}");
    }
}

/// Once formed, nobody asks to join any more, no report of suspects is pending (there
/// are none), and a quiet cluster sends heartbeats and nothing else.
#[test]
fn a_formed_cluster_is_quiet_but_for_heartbeats() {
    let mut net = formed();
    for i in 0..3 {
        let m = net.m(i);
        assert!(
            !m.timers.contains(&super::Timer::Join),
            "daemon {i} still joining"
        );
        assert!(m.report.is_none(), "daemon {i} reports {:?}", m.report);
    }
    let before: Vec<(u64, u64)> = (0..3)
        .map(|i| (net.m(i).stats().frames_sent, net.m(i).stats().heartbeats))
        .collect();
    net.run_for(Duration::from_secs(2));
    for (i, (frames, beats)) in before.into_iter().enumerate() {
        let s = net.m(i).stats();
        assert!(s.heartbeats > beats, "daemon {i} sent no heartbeat");
        assert_eq!(
            s.frames_sent - frames,
            s.heartbeats - beats,
            "daemon {i} sent more than heartbeats"
        );
    }
}

/// The coordinator falls silent: the next one (bravo) proposes the view of the two that
/// are left within about a second and a half.
#[test]
fn a_failed_coordinator_is_replaced_by_the_next() {
    let mut net = formed();
    assert!(net.m(0).is_coordinator());
    let cut = net.now;
    net.isolated.insert(0);
    net.run_until(cut + Duration::from_millis(1500), |n| n.agree(&[1, 2]))
        .expect("bravo and charlie agree within 1.5 s of losing the coordinator");
    assert_eq!(net.m(1).view().id.coordinator, NAMES[1]);
}

/// The coordinator and the next in line fail together: a member that is not next in
/// line either gathers who can still hear it, and the least name of those elected forms
/// the view of the two left — neither is ever left in a view of its own.
#[test]
fn a_gather_forms_the_view_when_the_next_coordinator_is_gone_too() {
    let mut net = formed();
    let mut s = MembershipSettings::new("delta", addr(3));
    s.join = vec![addr(0)];
    net.add(s);
    net.run_until(Instant::from_secs(4), |n| n.agree(&[0, 1, 2, 3]))
        .expect("delta joins within 2 s");
    let cut = net.now;
    let installed: Vec<usize> = (0..4).map(|i| net.nodes[i].views().count()).collect();
    net.isolated.extend([0, 1]);
    net.run_until(cut + Duration::from_secs(2), |n| n.agree(&[2, 3]))
        .expect("charlie and delta agree within 2 s of losing alpha and bravo");
    assert!(
        net.m(2).stats().gathers + net.m(3).stats().gathers >= 1,
        "nobody gathered"
    );
    for i in [2, 3] {
        let alone: Vec<String> = net.nodes[i]
            .views()
            .skip(installed[i])
            .filter(|(_, v)| v.members.len() < 2)
            .map(|(_, v)| v.id.to_string())
            .collect();
        assert!(alone.is_empty(), "daemon {i} was left alone in {alone:?}");
    }
}

/// In a large view a daemon watches only its neighbours on the ring (`watch_count` each
/// way, 7 in a view of 32): when the coordinator and the seven names after it fail
/// together, nobody left watches both the coordinator and the next in line. Those that
/// watched the coordinator gather who can hear them and elect the least name, which
/// proposes the view of the 24 left — without the gather nobody would.
#[test]
fn a_gather_elects_a_coordinator_when_the_next_in_line_are_all_gone() {
    let names: Vec<String> = (0..32).map(|i| format!("d{i:02}")).collect();
    let mut net = Net::new();
    for (i, name) in names.iter().enumerate() {
        let mut s = MembershipSettings::new(name, addr(i));
        if i > 0 {
            s.join = vec![addr(0)];
        }
        net.add(s);
    }
    let all: Vec<usize> = (0..names.len()).collect();
    net.run_until(Instant::from_secs(10), |n| n.agree(&all))
        .expect("32 daemons formed by join agree within 10 s");
    assert_eq!(crate::membership::view::watch_count(32), 7);
    let cut = net.now;
    net.isolated.extend(0..8);
    let rest: Vec<usize> = (8..names.len()).collect();
    net.run_until(cut + Duration::from_secs(4), |n| n.agree(&rest))
        .expect("the 24 left agree within 4 s");
    let gathers: u64 = rest.iter().map(|&i| net.m(i).stats().gathers).sum();
    assert!(gathers >= 1, "nobody gathered");
    assert_eq!(net.m(8).view().id.coordinator, names[8]);
}

/// A daemon removed by a reload stays removed through later reloads that do not list it
/// either (its joins are still refused), and is removed no longer once a reload lists it
/// again.
#[test]
fn a_removed_daemon_stays_removed_until_a_reload_lists_it_again() {
    let mut net = listed_three_formed();
    let two = ClusterConfig {
        daemons: (0..2).map(|i| (NAMES[i].to_string(), addr(i))).collect(),
        ..ClusterConfig::default()
    };
    let reload = |net: &mut Net, cfg: &ClusterConfig, version: u64| {
        net.handle(0, Input::Command(MembershipCommand::Reload(cfg.clone())))
            .unwrap();
        net.run_until(net.now + Duration::from_secs(2), |n| {
            n.m(0).config().version == version
        })
        .expect("the reload is applied within 2 s");
        net.m(0).config().removed.clone()
    };
    assert_eq!(reload(&mut net, &two, 1), ["charlie"]);
    assert_eq!(
        reload(&mut net, &two, 2),
        ["charlie"],
        "forgotten at the next reload"
    );
    assert!(reload(&mut net, &listing_three(), 3).is_empty());
}
