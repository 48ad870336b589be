//! Client-groups machines on their own and wired together by hand: a FIFO of frames
//! between them (frames arrive in the order they were sent, some may be dropped), and a
//! virtual clock that steps to the earliest timer once no frame is on its way.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;

use super::msg::MAX_PAYLOAD;
use super::{
    Cause, GroupMsg, Groups, GroupsCommand, GroupsError, GroupsEvent, GroupsSettings, Item,
    MAX_PENDING, MsgId, WINDOW, What,
};
use crate::machine::{Input, Machine, Output};
use crate::membership::view::{Member, View, ViewId};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::Frame;

/// Frames handled plus timer rounds a run may take before the harness gives up.
const MAX_STEPS: u64 = 200_000;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5100 + i as u16))
}

pub(super) fn member(name: &str) -> Member {
    let i = usize::from(name.as_bytes()[0] - b'a');
    Member {
        name: name.to_string(),
        incarnation: 10 + i as u64,
        addr: addr(i),
    }
}

/// The view of `names` (sorted), numbered `epoch`, proposed by its least name.
pub(super) fn view(epoch: u64, names: &[&str]) -> View {
    let mut members: Vec<Member> = names.iter().map(|n| member(n)).collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
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

fn machine(name: &str) -> Groups {
    Groups::new(
        GroupsSettings {
            me: member(name),
            canary_deliver_early: false,
        },
        Instant::ZERO,
    )
}

fn send_cmd(sender: &str, payload: &[u8]) -> Input<GroupsCommand, crate::machine::NoEffect> {
    Input::Command(GroupsCommand::Send {
        group: "g".into(),
        sender: sender.into(),
        payload: Bytes::copy_from_slice(payload),
    })
}

/// What a frame carries, for drop rules.
fn decoded(frame: &Frame) -> GroupMsg {
    GroupMsg::decode(frame).expect("every frame a machine sends decodes")
}

/// Decides, per frame (from, to, message), whether the network drops it.
type DropRule = Box<dyn FnMut(usize, usize, &GroupMsg) -> bool>;

struct Node {
    g: Groups,
    addr: SocketAddr,
    events: Vec<GroupsEvent>,
}

impl Node {
    /// Data delivered here: (view, seq, payload), in delivery order.
    fn delivered(&self) -> Vec<(ViewId, u64, Bytes)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                GroupsEvent::Delivered {
                    view, seq, payload, ..
                } => Some((view.clone(), *seq, payload.clone())),
                _ => None,
            })
            .collect()
    }

    fn payloads(&self) -> Vec<Bytes> {
        self.delivered().into_iter().map(|(_, _, p)| p).collect()
    }

    /// Every `Closed` event: (old, new, upto).
    fn closed(&self) -> Vec<(ViewId, ViewId, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                GroupsEvent::Closed { old, new, upto, .. } => {
                    Some((old.clone(), new.clone(), *upto))
                }
                _ => None,
            })
            .collect()
    }

    /// How long each flush took here, by the view it moved to.
    fn flush_times(&self) -> Vec<(ViewId, Duration)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                GroupsEvent::Closed { new, took, .. } => Some((new.clone(), *took)),
                _ => None,
            })
            .collect()
    }
}

struct Net {
    now: Instant,
    nodes: Vec<Node>,
    /// (from, to, frame), in sending order.
    queue: VecDeque<(usize, usize, Frame)>,
    drop: DropRule,
    dropped: u64,
    steps: u64,
}

impl Net {
    fn new(names: &[&str]) -> Self {
        Net {
            now: Instant::ZERO,
            nodes: names
                .iter()
                .map(|n| Node {
                    g: machine(n),
                    addr: member(n).addr,
                    events: Vec::new(),
                })
                .collect(),
            queue: VecDeque::new(),
            drop: Box::new(|_, _, _| false),
            dropped: 0,
            steps: 0,
        }
    }

    fn index_of(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == a)
    }

    /// Moves node `i`'s outputs to the queue and its events to its log; checks it.
    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].g.poll_output() {
            match out {
                Output::Transmit(t) => {
                    let msg = decoded(&t.frame);
                    let Some(to) = self.index_of(t.to) else {
                        panic!("frame to an unknown address {}", t.to);
                    };
                    assert_ne!(to, i, "a machine sent a frame to itself");
                    if (self.drop)(i, to, &msg) {
                        self.dropped += 1;
                    } else {
                        self.queue.push_back((i, to, t.frame));
                    }
                }
                Output::Event(e) => self.nodes[i].events.push(e),
                other => panic!("unexpected output {other:?}"),
            }
        }
        if let Err(e) = self.nodes[i].g.check_invariants() {
            panic!("node {i} inconsistent: {e}");
        }
    }

    fn input(
        &mut self,
        i: usize,
        input: Input<GroupsCommand, crate::machine::NoEffect>,
    ) -> Result<(), GroupsError> {
        let r = self.nodes[i].g.handle(self.now, input);
        self.drain(i);
        r
    }

    /// Hands `v` to every node in `to`.
    fn install(&mut self, v: &View, to: &[usize]) {
        for &i in to {
            self.input(i, Input::Command(GroupsCommand::View(v.clone())))
                .expect("views are accepted");
        }
    }

    /// One step: the next frame, or else the earliest timers.
    fn step(&mut self) {
        self.steps += 1;
        assert!(self.steps < MAX_STEPS, "the run did not settle");
        if let Some((from, to, frame)) = self.queue.pop_front() {
            let from = self.nodes[from].addr;
            let _ = self.nodes[to]
                .g
                .handle(self.now, Input::Frame { from, frame });
            self.drain(to);
            return;
        }
        let next = self
            .nodes
            .iter()
            .filter_map(|n| n.g.poll_timeout())
            .min()
            .expect("machines always have timers");
        self.now = self.now.max(next);
        for i in 0..self.nodes.len() {
            self.nodes[i].g.handle_timeout(self.now);
            self.drain(i);
        }
    }

    /// Steps until `done` holds.
    fn run_until(&mut self, mut done: impl FnMut(&Net) -> bool) {
        while !done(self) {
            self.step();
        }
    }

    /// Steps for `d` of virtual time (and every frame on its way by then).
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end || !self.queue.is_empty() {
            self.step();
        }
    }

    /// Hands on every frame on its way (and those they cause), without moving the clock.
    fn run_frames(&mut self) {
        while !self.queue.is_empty() {
            self.step();
        }
    }

    fn settled(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| !n.g.flushing() && n.g.pending() == 0)
    }
}

// ----- (a) a daemon alone -----

#[test]
fn a_daemon_alone_delivers_its_own_send_at_once() {
    let mut g = machine("a");
    g.handle(Instant::ZERO, send_cmd("#c#a", b"hello"))
        .expect("a good send is taken");
    let outs: Vec<_> = std::iter::from_fn(|| g.poll_output()).collect();
    assert_eq!(outs.len(), 1, "one output, and no frame: {outs:?}");
    match &outs[0] {
        Output::Event(GroupsEvent::Delivered {
            view,
            seq,
            id,
            group,
            sender,
            payload,
        }) => {
            assert_eq!(*view, g.view().id);
            assert_eq!(*seq, 1);
            assert_eq!((id.origin.as_str(), id.incarnation, id.lseq), ("a", 10, 1));
            assert_eq!(group, "g");
            assert_eq!(sender, "#c#a");
            assert_eq!(payload.as_ref(), b"hello");
        }
        other => panic!("expected a delivery, got {other:?}"),
    }
    assert_eq!(g.pending(), 0);
    assert_eq!(g.stats().delivered, 1);
    assert_eq!(g.stats().ordered, 1);
    g.check_invariants().unwrap();
}

/// A view that is not newer than the one in force, or that names another life of this
/// daemon, changes nothing: no flush starts.
#[test]
fn a_stale_view_or_one_of_another_life_is_ignored() {
    let mut net = Net::new(&["a", "b"]);
    let v2 = view(2, &["a", "b"]);
    net.install(&v2, &[0, 1]);
    net.run_until(|n| n.nodes.iter().all(|x| !x.g.flushing()));
    assert_eq!(net.nodes[0].g.view().id, v2.id);
    net.install(&view(1, &["a", "b"]), &[0]);
    assert!(!net.nodes[0].g.flushing(), "a stale view started a flush");
    net.install(&v2, &[0]);
    assert!(
        !net.nodes[0].g.flushing(),
        "the view in force started a flush again"
    );
    let mut other_life = view(3, &["a", "b"]);
    other_life.members[0].incarnation += 1;
    net.install(&other_life, &[0]);
    assert!(
        !net.nodes[0].g.flushing(),
        "a view of another life of this daemon started a flush"
    );
    assert_eq!(net.nodes[0].g.view().id, v2.id);
    // A newer view with this life does.
    net.install(&view(3, &["a", "b"]), &[0]);
    assert!(net.nodes[0].g.flushing());
}

// ----- (b) refusals -----

#[test]
fn bad_names_and_oversized_payloads_are_refused_and_change_nothing() {
    let mut g = machine("a");
    let long = "x".repeat(65);
    let bad_names = ["", "a b", "tab\there", "é", long.as_str()];
    let stats = g.stats().clone();
    for bad in bad_names {
        let cases = [
            (
                GroupsCommand::Join {
                    group: bad.into(),
                    client: "#c#a".into(),
                },
                bad,
            ),
            (
                GroupsCommand::Join {
                    group: "g".into(),
                    client: bad.into(),
                },
                bad,
            ),
            (
                GroupsCommand::Leave {
                    group: bad.into(),
                    client: "#c#a".into(),
                },
                bad,
            ),
            (
                GroupsCommand::Leave {
                    group: "g".into(),
                    client: bad.into(),
                },
                bad,
            ),
            (
                GroupsCommand::Send {
                    group: bad.into(),
                    sender: "#c#a".into(),
                    payload: Bytes::from_static(b"x"),
                },
                bad,
            ),
            (
                GroupsCommand::Send {
                    group: "g".into(),
                    sender: bad.into(),
                    payload: Bytes::from_static(b"x"),
                },
                bad,
            ),
        ];
        for (cmd, name) in cases {
            assert_eq!(
                g.handle(Instant::ZERO, Input::Command(cmd.clone())),
                Err(GroupsError::BadName(name.to_string())),
                "{cmd:?}"
            );
        }
    }
    let big = Bytes::from(vec![7u8; MAX_PAYLOAD + 1]);
    assert_eq!(
        g.handle(
            Instant::ZERO,
            Input::Command(GroupsCommand::Send {
                group: "g".into(),
                sender: "#c#a".into(),
                payload: big,
            })
        ),
        Err(GroupsError::TooLarge(MAX_PAYLOAD + 1))
    );
    // Nothing changed: no output, nothing pending, no member, same counters.
    assert!(g.poll_output().is_none());
    assert_eq!(g.pending(), 0);
    assert!(g.members("g").is_empty());
    assert_eq!(*g.stats(), stats);
    g.check_invariants().unwrap();
    // And no number was used up: the next good message is the first, and the largest
    // allowed payload goes through.
    g.handle(
        Instant::ZERO,
        Input::Command(GroupsCommand::Send {
            group: "g".into(),
            sender: "#c#a".into(),
            payload: Bytes::from(vec![1u8; MAX_PAYLOAD]),
        }),
    )
    .expect("a payload of exactly the limit is taken");
    match g.poll_output() {
        Some(Output::Event(GroupsEvent::Delivered {
            seq, id, payload, ..
        })) => {
            assert_eq!((seq, id.lseq, payload.len()), (1, 1, MAX_PAYLOAD));
        }
        other => panic!("expected a delivery, got {other:?}"),
    }
}

// ----- (c) three daemons, one order -----

#[test]
fn three_daemons_deliver_fifty_sends_in_one_order_despite_losses() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v = view(1, &["a", "b", "c"]);
    net.install(&v, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    for n in &net.nodes {
        assert_eq!(n.g.view().id, v.id);
        assert_eq!(n.closed().len(), 1);
    }
    // From now on the network loses about one frame in eight of every kind.
    let mut rng = Rng::from_seed(7);
    net.drop = Box::new(move |_, _, _| rng.chance(0.125));
    let names = ["a", "b", "c"];
    for (i, n) in names.iter().enumerate() {
        net.input(
            i,
            Input::Command(GroupsCommand::Join {
                group: "g".into(),
                client: format!("#c{n}#{n}"),
            }),
        )
        .unwrap();
    }
    net.run_until(|n| n.settled());
    let mut rng = Rng::from_seed(11);
    let mut sent = Vec::new();
    for k in 0..50 {
        let i = rng.below(3) as usize;
        let payload = format!("m{k:02} from {}", names[i]);
        net.input(
            i,
            send_cmd(&format!("#c{}#{}", names[i], names[i]), payload.as_bytes()),
        )
        .unwrap();
        sent.push(payload);
        // A few frames move between sends.
        for _ in 0..rng.below(6) {
            net.step();
        }
    }
    net.run_until(|n| n.settled() && n.nodes.iter().all(|x| x.payloads().len() >= 50));
    net.run_for(Duration::from_millis(500));
    assert!(net.dropped > 0, "the test meant to lose frames");
    let first = net.nodes[0].payloads();
    assert_eq!(first.len(), 50, "every send delivered once");
    let got: BTreeSet<&[u8]> = first.iter().map(|p| p.as_ref()).collect();
    let want: BTreeSet<&[u8]> = sent.iter().map(|p| p.as_bytes()).collect();
    assert_eq!(got, want);
    for n in &net.nodes {
        assert_eq!(
            n.delivered(),
            net.nodes[0].delivered(),
            "one order everywhere"
        );
        assert_eq!(n.g.pending(), 0);
    }
    // FIFO per sender: each daemon's messages come in the order it sent them.
    for d in names {
        let tail = format!("from {d}");
        let mine: Vec<&Bytes> = first
            .iter()
            .filter(|p| p.ends_with(tail.as_bytes()))
            .collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted, "{d}'s messages out of order");
    }
    let members: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("#c{n}#{n}"), n.to_string()))
        .collect();
    for n in &net.nodes {
        assert_eq!(n.g.members("g"), members);
    }
}

// ----- (d) a view change after losses -----

#[test]
fn a_view_change_finishes_the_old_view_alike_where_orders_were_lost() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    // Orders of v1 to b are lost from now on, and so are b's requests to send again.
    let old = v1.id.clone();
    net.drop = Box::new(move |_, to, m| {
        to == 1 && matches!(m, GroupMsg::Order { view, .. } if *view == old)
            || matches!(m, GroupMsg::Nack { .. })
    });
    for k in 0..4 {
        net.input(0, send_cmd("#x#a", format!("a{k}").as_bytes()))
            .unwrap();
    }
    net.input(2, send_cmd("#x#c", b"c0")).unwrap();
    net.input(1, send_cmd("#x#b", b"b0")).unwrap();
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.nodes[0].payloads().len(), 6, "a ordered all six");
    assert!(net.nodes[1].payloads().is_empty(), "b got none of them yet");
    // c goes: nothing reaches it or comes from it any more.
    let old = v1.id.clone();
    net.drop = Box::new(move |from, to, m| {
        from == 2 || to == 2 || to == 1 && matches!(m, GroupMsg::Order { view, .. } if *view == old)
    });
    let v2 = view(2, &["a", "b"]);
    net.install(&v2, &[0, 1]);
    net.run_until(|n| {
        n.nodes[..2]
            .iter()
            .all(|x| !x.g.flushing() && x.g.pending() == 0)
    });
    net.run_for(Duration::from_millis(300));
    let (ca, cb) = (net.nodes[0].closed(), net.nodes[1].closed());
    let want = (v1.id.clone(), v2.id.clone(), 6);
    assert_eq!(ca.last(), Some(&want));
    assert_eq!(cb.last(), Some(&want));
    let in_v1 = |n: &Node| -> Vec<(u64, Bytes)> {
        n.delivered()
            .into_iter()
            .filter(|(v, _, _)| *v == v1.id)
            .map(|(_, s, p)| (s, p))
            .collect()
    };
    assert_eq!(in_v1(&net.nodes[0]).len(), 6);
    assert_eq!(in_v1(&net.nodes[0]), in_v1(&net.nodes[1]));
    assert_eq!(net.nodes[0].delivered(), net.nodes[1].delivered());
    assert_eq!(net.nodes[1].g.view().id, v2.id);
}

// ----- (e) items not ordered when the view changes -----

#[test]
fn items_not_yet_ordered_are_delivered_once_in_the_new_view() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    net.input(1, send_cmd("#x#b", b"early")).unwrap();
    net.run_until(|n| n.nodes.iter().all(|x| x.payloads().len() == 1));
    // b's submits are lost: its next items wait, submitted again and again.
    net.drop = Box::new(|from, _, m| from == 1 && matches!(m, GroupMsg::Submit { .. }));
    for k in 0..3 {
        net.input(1, send_cmd("#x#b", format!("b{k}").as_bytes()))
            .unwrap();
    }
    net.run_for(Duration::from_millis(200));
    assert_eq!(net.nodes[1].g.pending(), 3);
    assert_eq!(net.nodes[0].payloads().len(), 1);
    // A new view (c gone); submits go through again.
    net.drop = Box::new(|from, to, _| from == 2 || to == 2);
    let v2 = view(2, &["a", "b"]);
    net.install(&v2, &[0, 1]);
    net.run_until(|n| {
        n.nodes[..2]
            .iter()
            .all(|x| !x.g.flushing() && x.g.pending() == 0)
    });
    net.run_for(Duration::from_millis(300));
    for n in &net.nodes[..2] {
        let d = n.delivered();
        let late: Vec<&[u8]> = d
            .iter()
            .filter(|(v, _, _)| *v == v2.id)
            .map(|(_, _, p)| p.as_ref())
            .collect();
        assert_eq!(
            late,
            [&b"b0"[..], b"b1", b"b2"],
            "in the new view, in order"
        );
        assert_eq!(d.len(), 4, "each delivered once: {d:?}");
        let skipped = n
            .events
            .iter()
            .filter(|e| matches!(e, GroupsEvent::Skipped { .. }))
            .count();
        assert_eq!(skipped, 0);
    }
    assert_eq!(net.nodes[0].delivered(), net.nodes[1].delivered());
}

// ----- (e'') a leave ordered in a view the origin did not see through -----

/// b's client leaves; only a delivers the leave (b never hears its order), a goes on
/// alone, then both meet in a new view. b says it still has the client (it never saw
/// its leave delivered), so the new view's table has it, and b submits the leave again.
/// a has seen that item: a message would be skipped there, but a membership change
/// must take effect at every daemon at its new place, or the tables part.
#[test]
fn a_leave_submitted_again_after_a_view_change_takes_effect_everywhere() {
    let mut net = Net::new(&["a", "b"]);
    let v1 = view(1, &["a", "b"]);
    net.install(&v1, &[0, 1]);
    net.run_until(|n| n.settled());
    let join = GroupsCommand::Join {
        group: "g".into(),
        client: "x".into(),
    };
    net.input(1, Input::Command(join)).unwrap();
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    assert_eq!(net.nodes[0].g.members("g"), [("x".into(), "b".into())]);
    net.drop = Box::new(|_, to, m| to == 1 && matches!(m, GroupMsg::Order { .. }));
    let gone = GroupsCommand::Disconnect {
        group: "g".into(),
        client: "x".into(),
    };
    net.input(1, Input::Command(gone)).unwrap();
    net.run_for(Duration::from_millis(200));
    assert!(
        net.nodes[0].g.members("g").is_empty(),
        "a delivered the leave"
    );
    assert_eq!(net.nodes[1].g.members("g").len(), 1, "b did not");
    // a alone, then a and b together (b straight from view 1).
    net.drop = Box::new(|from, to, _| from != to);
    net.install(&view(2, &["a"]), &[0]);
    net.run_for(Duration::from_millis(200));
    net.drop = Box::new(|_, _, _| false);
    net.install(&view(3, &["a", "b"]), &[0, 1]);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    assert!(
        net.nodes[1].g.members("g").is_empty(),
        "b delivered its leave"
    );
    assert_eq!(
        net.nodes[0].g.members("g"),
        net.nodes[1].g.members("g"),
        "one table"
    );
    // Each daemon heard the leave once, at the same place of view 3.
    let leaves = |n: &Node| -> Vec<(ViewId, u64)> {
        n.events
            .iter()
            .filter_map(|e| match e {
                GroupsEvent::GroupView {
                    view,
                    seq,
                    cause: Cause::Disconnect,
                    ..
                } if *seq > 0 && view.epoch == 3 => Some((view.clone(), *seq)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(leaves(&net.nodes[0]).len(), 1);
    assert_eq!(leaves(&net.nodes[0]), leaves(&net.nodes[1]));
    assert!(
        !net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, GroupsEvent::Skipped { .. })),
        "only messages are skipped"
    );
}

// ----- (d') a flush's repeats are paced -----

/// A flush request is small but its answer carries the member's unstable items, and a
/// start carries every fill: repeated every tick towards a member behind a slow link,
/// they stacked copies in its queue (issue 16, finding 2). Both now go again only after
/// a wait without progress that doubles, and the flush still finishes once the member
/// is heard.
#[test]
fn flush_requests_and_starts_go_again_paced_until_answered() {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    // c hears everything but is not heard: a (the sequencer) waits for its state.
    let asks = Rc::new(Cell::new(0u32));
    let counted = asks.clone();
    net.drop = Box::new(move |from, to, m| {
        if to == 2 && matches!(m, GroupMsg::FlushReq { .. }) {
            counted.set(counted.get() + 1);
        }
        from == 2
    });
    let v2 = view(2, &["a", "b", "c"]);
    net.install(&v2, &[0, 1, 2]);
    net.run_for(Duration::from_secs(3));
    assert!(net.nodes[0].g.flushing(), "c's state never arrived");
    // Asked at once and then after 0.1, 0.3, 0.7 and 1.5 s (every 50 ms tick: 60).
    assert!(
        (2..=5).contains(&asks.get()),
        "{} flush requests to c in 3 s",
        asks.get()
    );
    // c is heard again, except its acknowledgements: the start goes again, paced.
    let starts = Rc::new(Cell::new(0u32));
    let starts_to_b = Rc::new(Cell::new(0u32));
    let (counted, counted_b) = (starts.clone(), starts_to_b.clone());
    net.drop = Box::new(move |from, to, m| {
        if to == 2 && matches!(m, GroupMsg::Start { .. }) {
            counted.set(counted.get() + 1);
        }
        if to == 1 && matches!(m, GroupMsg::Start { .. }) {
            counted_b.set(counted_b.get() + 1);
        }
        from == 2 && matches!(m, GroupMsg::Ack { .. })
    });
    net.run_for(Duration::from_secs(3));
    assert!(
        net.nodes.iter().all(|n| !n.g.flushing()),
        "the flush finished once c was heard"
    );
    // The sequencer's flush lasted from the view until c was heard: 3 to 6 s.
    let took: Vec<Duration> = net.nodes[0]
        .flush_times()
        .into_iter()
        .filter(|(v, _)| *v == v2.id)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(took.len(), 1, "{took:?}");
    assert!(
        took[0] > Duration::from_secs(3) && took[0] <= Duration::from_secs(6),
        "{took:?}"
    );
    // Sent once, then after 0.3, 0.9 and 2.1 s (every tick: 60).
    assert!(
        (2..=4).contains(&starts.get()),
        "{} starts to c in 3 s",
        starts.get()
    );
    // b acknowledged the first: only c gets the repeats.
    assert_eq!(starts_to_b.get(), 1, "starts to b");
    // Acknowledgements heard: no more starts, and the view works.
    let counted = starts.clone();
    net.drop = Box::new(move |_, to, m| {
        if to == 2 && matches!(m, GroupMsg::Start { .. }) {
            counted.set(counted.get() + 1);
        }
        false
    });
    // c acknowledges the next repeat (due within the 1.6 s cap).
    net.run_for(Duration::from_secs(2));
    let before = starts.get();
    net.run_for(Duration::from_secs(3));
    assert_eq!(
        starts.get(),
        before,
        "a start acknowledged by all is not sent again"
    );
    net.input(2, send_cmd("#x#c", b"c0")).unwrap();
    net.run_until(|n| n.settled());
    for n in &net.nodes {
        assert_eq!(n.g.view().id, v2.id);
        assert_eq!(n.payloads(), [Bytes::from_static(b"c0")]);
    }
}

/// A submit the sequencer ordered already means its origin has not seen the order: the
/// origin's tail goes again at once (at most once per 400 ms) instead of waiting for the
/// tail's own pace, so under a burst of loss every submit repeat is a second chance.
#[test]
fn a_repeated_submit_brings_its_origin_the_order_at_once() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    // Orders to c are lost; c's first submit is kept (to repeat it by hand), its
    // later ones are lost.
    let orders = Rc::new(RefCell::new(0u32));
    let submit: Rc<RefCell<Option<GroupMsg>>> = Rc::default();
    let (o, sub) = (orders.clone(), submit.clone());
    net.drop = Box::new(move |from, to, m| match m {
        GroupMsg::Order { .. } if to == 2 => {
            *o.borrow_mut() += 1;
            true
        }
        GroupMsg::Submit { .. } if from == 2 => {
            let mut kept = sub.borrow_mut();
            if kept.is_some() {
                return true;
            }
            *kept = Some(m.clone());
            false
        }
        _ => false,
    });
    net.input(2, send_cmd("#x#c", b"c0")).unwrap();
    // Ordered, and sent to c once; then c's tail goes again after 400 ms (and next
    // after 800 ms more).
    net.run_until(|_| *orders.borrow() == 2);
    let repeat = submit.borrow().clone().expect("c submitted");
    let c = net.nodes[2].addr;
    let again = |net: &mut Net, after: Duration| {
        net.run_for(after);
        let before = *orders.borrow();
        net.input(
            0,
            Input::Frame {
                from: c,
                frame: repeat.to_frame(),
            },
        )
        .unwrap();
        *orders.borrow() - before
    };
    assert_eq!(
        again(&mut net, Duration::from_millis(450)),
        1,
        "a repeated submit 450 ms after the tail went brings the order at once"
    );
    assert_eq!(
        again(&mut net, Duration::from_millis(100)),
        0,
        "but not twice within 400 ms"
    );
    net.drop = Box::new(|_, _, _| false);
    net.run_until(|n| n.settled());
    assert_eq!(net.nodes[2].payloads(), [Bytes::from_static(b"c0")]);
}

// ----- (e') the same when the old submits arrive late -----

#[test]
fn submits_of_an_old_view_arriving_late_are_not_ordered_twice() {
    let mut net = Net::new(&["a", "b"]);
    let v1 = view(1, &["a", "b"]);
    net.install(&v1, &[0, 1]);
    net.run_until(|n| n.settled());
    // b sends; before a hears the submit, the view changes at a.
    net.input(1, send_cmd("#x#b", b"late")).unwrap();
    let held: Vec<_> = net.queue.drain(..).collect();
    assert!(
        held.iter()
            .any(|(f, _, fr)| *f == 1 && matches!(decoded(fr), GroupMsg::Submit { .. })),
        "b submitted"
    );
    let v2 = view(2, &["a", "b"]);
    net.install(&v2, &[0, 1]);
    // The old submit arrives after the flush began.
    net.queue.extend(held);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    for n in &net.nodes {
        let d = n.payloads();
        assert_eq!(d, [Bytes::from_static(b"late")], "once");
    }
    assert_eq!(net.nodes[0].delivered(), net.nodes[1].delivered());
}

// ----- the byte bound: what a flush carries fits a frame -----

/// Large messages while one member hears no orders and nobody acknowledges: the
/// sequencer stops ordering past `LOG_BYTES` of unstable payload, and after a view change
/// every `FlushState` and `Start` stays inside a 1 MiB frame; everything is delivered.
#[test]
fn unstable_bytes_are_bounded_so_a_flush_fits_a_frame() {
    use super::machine::LOG_BYTES;
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    let old = v1.id.clone();
    net.drop = Box::new(move |_, to, m| {
        matches!(m, GroupMsg::Ack { .. })
            || to == 2 && matches!(m, GroupMsg::Order { view, .. } if *view == old)
    });
    let big = vec![9u8; MAX_PAYLOAD];
    for k in 0..40 {
        let mut p = big.clone();
        p[0] = k as u8;
        net.input(1, send_cmd("#x#b", &p)).unwrap();
    }
    net.run_for(Duration::from_millis(300));
    let ordered = net.nodes[0].payloads().len();
    assert!(
        ordered * MAX_PAYLOAD <= LOG_BYTES + MAX_PAYLOAD,
        "{ordered} large items ordered past the byte bound"
    );
    assert!(ordered >= 2, "{ordered}: nothing was ordered");
    // A view change with everything: the flush frames stay under a frame's limit.
    let largest = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let seen = largest.clone();
    net.drop = Box::new(move |_, _, m| {
        if matches!(m, GroupMsg::FlushState { .. } | GroupMsg::Start { .. }) {
            seen.set(seen.get().max(m.to_frame().encoded_len()));
        }
        false
    });
    let v2 = view(2, &["a", "b", "c"]);
    net.install(&v2, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    assert!(largest.get() > 0, "no flush frame was seen");
    assert!(
        largest.get() < 1 << 20,
        "a flush frame of {} bytes",
        largest.get()
    );
    for n in &net.nodes {
        assert_eq!(
            n.payloads().len(),
            40,
            "every large message delivered everywhere"
        );
    }
}

// ----- the cheaper FIFO mode -----

fn fsend_cmd(sender: &str, payload: &[u8]) -> Input<GroupsCommand, crate::machine::NoEffect> {
    Input::Command(GroupsCommand::SendFifo {
        group: "g".into(),
        sender: sender.into(),
        payload: Bytes::copy_from_slice(payload),
    })
}

impl Node {
    /// FIFO messages delivered here: (view, origin, number, payload), in delivery order.
    fn fifo(&self) -> Vec<(ViewId, String, u64, Bytes)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                GroupsEvent::FifoDelivered {
                    view, id, payload, ..
                } => Some((view.clone(), id.origin.clone(), id.lseq, payload.clone())),
                _ => None,
            })
            .collect()
    }

    fn fifo_payloads(&self) -> Vec<Bytes> {
        self.fifo().into_iter().map(|(_, _, _, p)| p).collect()
    }
}

/// Each daemon's FIFO messages, in the order `n` delivered them.
fn per_origin(n: &Node, origin: &str) -> Vec<Bytes> {
    n.fifo()
        .into_iter()
        .filter(|(_, o, _, _)| o == origin)
        .map(|(_, _, _, p)| p)
        .collect()
}

#[test]
fn fifo_sends_skip_the_sequencer_and_keep_each_senders_order_despite_losses() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v = view(1, &["a", "b", "c"]);
    net.install(&v, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    let ordered = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let seen = ordered.clone();
    let mut rng = Rng::from_seed(5);
    net.drop = Box::new(move |_, _, m| {
        if matches!(m, GroupMsg::Submit { .. } | GroupMsg::Order { .. }) {
            seen.set(seen.get() + 1);
        }
        rng.chance(0.125)
    });
    let names = ["a", "b", "c"];
    let mut rng = Rng::from_seed(3);
    let mut sent: Vec<Vec<Bytes>> = vec![Vec::new(); 3];
    for k in 0..90 {
        let i = rng.below(3) as usize;
        let p = Bytes::from(format!("f{k:02}"));
        net.input(i, fsend_cmd(&format!("#x#{}", names[i]), &p))
            .unwrap();
        // The origin's own clients have it at once.
        assert_eq!(net.nodes[i].fifo_payloads().last(), Some(&p));
        sent[i].push(p);
        for _ in 0..rng.below(4) {
            net.step();
        }
    }
    net.run_until(|n| n.nodes.iter().all(|x| x.fifo().len() == 90));
    net.run_for(Duration::from_millis(500));
    assert!(net.dropped > 0, "the test meant to lose frames");
    assert_eq!(
        ordered.get(),
        0,
        "a FIFO message went through the sequencer"
    );
    for n in &net.nodes {
        assert_eq!(n.fifo().len(), 90, "each delivered once");
        assert!(n.delivered().is_empty(), "no agreed delivery");
        for (i, o) in names.iter().enumerate() {
            assert_eq!(per_origin(n, o), sent[i], "{o}'s order");
        }
        assert_eq!(n.g.pending(), 0);
    }
}

/// c's FIFO messages reach a only, b's FIFO messages reach nobody but b, and then c is
/// gone: a and b pass to the next view having delivered the same FIFO messages in the
/// former (b gets c's from a's copies), and b's come to a though only b had them.
#[test]
fn a_view_change_finishes_fifo_messages_alike_even_of_an_origin_that_is_gone() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    net.drop = Box::new(|from, to, m| {
        matches!(m, GroupMsg::FifoData { .. } | GroupMsg::FifoNack { .. })
            && (from == 2 && to == 1 || from == 1)
    });
    for k in 0..3 {
        net.input(2, fsend_cmd("#x#c", format!("c{k}").as_bytes()))
            .unwrap();
        net.input(1, fsend_cmd("#x#b", format!("b{k}").as_bytes()))
            .unwrap();
    }
    net.run_for(Duration::from_millis(200));
    assert_eq!(per_origin(&net.nodes[0], "c").len(), 3, "a has c's");
    assert!(
        per_origin(&net.nodes[1], "c").is_empty(),
        "b has none of c's"
    );
    assert!(
        per_origin(&net.nodes[0], "b").is_empty(),
        "a has none of b's"
    );
    net.drop = Box::new(|from, to, _| from == 2 || to == 2);
    let v2 = view(2, &["a", "b"]);
    net.install(&v2, &[0, 1]);
    net.run_until(|n| n.nodes[..2].iter().all(|x| !x.g.flushing()));
    net.run_for(Duration::from_millis(300));
    let in_v1 = |n: &Node| -> BTreeSet<(String, u64, Bytes)> {
        n.fifo()
            .into_iter()
            .filter(|(v, ..)| *v == v1.id)
            .map(|(_, o, k, p)| (o, k, p))
            .collect()
    };
    assert_eq!(in_v1(&net.nodes[0]).len(), 6, "{:?}", net.nodes[0].fifo());
    assert_eq!(in_v1(&net.nodes[0]), in_v1(&net.nodes[1]));
    for n in &net.nodes[..2] {
        assert_eq!(per_origin(n, "c"), ["c0", "c1", "c2"]);
        assert_eq!(per_origin(n, "b"), ["b0", "b1", "b2"]);
        assert_eq!(n.closed().last().map(|c| &c.1), Some(&v2.id));
    }
}

/// A FIFO message taken while a flush runs waits for the new view: it is delivered
/// there, once, everywhere, after the old view's.
#[test]
fn fifo_sends_during_a_flush_go_in_the_new_view() {
    let mut net = Net::new(&["a", "b"]);
    let v1 = view(1, &["a", "b"]);
    net.install(&v1, &[0, 1]);
    net.run_until(|n| n.settled());
    net.input(1, fsend_cmd("#x#b", b"before")).unwrap();
    let v2 = view(2, &["a", "b"]);
    net.install(&v2, &[1]);
    net.input(1, fsend_cmd("#x#b", b"during")).unwrap();
    assert_eq!(
        net.nodes[1].fifo_payloads(),
        ["before"],
        "held while flushing"
    );
    assert_eq!(net.nodes[1].g.pending(), 1);
    net.install(&v2, &[0]);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    for n in &net.nodes {
        let f = n.fifo();
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(
            (f[0].0.clone(), f[0].3.clone()),
            (v1.id.clone(), Bytes::from("before"))
        );
        assert_eq!(
            (f[1].0.clone(), f[1].3.clone()),
            (v2.id.clone(), Bytes::from("during"))
        );
    }
}

/// Without acknowledgements an origin sends at most its window; the rest wait (and
/// past the pending bound the machine says busy); once acknowledgements flow, all go.
#[test]
fn a_fifo_origin_without_acknowledgements_stops_at_its_window() {
    use super::machine::{FIFO_LOG_BYTES, FIFO_WINDOW, MAX_PENDING};
    let mut net = Net::new(&["a", "b"]);
    let v1 = view(1, &["a", "b"]);
    net.install(&v1, &[0, 1]);
    net.run_until(|n| n.settled());
    net.drop = Box::new(|_, _, m| matches!(m, GroupMsg::FifoAck { .. }));
    let mut accepted = 0;
    for k in 0..(FIFO_WINDOW as usize + MAX_PENDING + 10) {
        match net.input(0, fsend_cmd("#x#a", format!("{k}").as_bytes())) {
            Ok(()) => accepted += 1,
            Err(GroupsError::Busy) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(accepted, FIFO_WINDOW as usize + MAX_PENDING);
    net.run_for(Duration::from_millis(300));
    assert_eq!(net.nodes[1].fifo().len(), FIFO_WINDOW as usize);
    net.drop = Box::new(|_, _, _| false);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    let want: Vec<Bytes> = (0..accepted).map(|k| Bytes::from(format!("{k}"))).collect();
    assert_eq!(net.nodes[1].fifo_payloads(), want);
    // Large messages: the bytes bound holds instead.
    net.drop = Box::new(|_, _, m| matches!(m, GroupMsg::FifoAck { .. }));
    let before = net.nodes[1].fifo().len();
    for _ in 0..10 {
        net.input(0, fsend_cmd("#x#a", &vec![1u8; MAX_PAYLOAD]))
            .unwrap();
    }
    net.run_for(Duration::from_millis(300));
    let got = net.nodes[1].fifo().len() - before;
    assert!(
        got >= 1 && got * MAX_PAYLOAD <= FIFO_LOG_BYTES,
        "{got} large ones sent"
    );
}

// ----- (k) the flush's states: the last one starts the view, outsiders count for nothing -----

#[test]
fn the_flush_starts_the_new_view_as_soon_as_the_last_state_is_in() {
    // The last member's state must start the view when it arrives, not at the sequencer's
    // next ask a round later (mutation survivor: `states.len() == members.len()` in
    // `on_flush_state` turned `!=`).
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    let before = net.now;
    let flushes: Vec<u64> = net.nodes.iter().map(|n| n.g.stats().flushes).collect();
    let v2 = view(2, &["a", "b", "c"]);
    net.install(&v2, &[0, 1, 2]);
    // Frames only: no timer may fire.
    while !net.queue.is_empty() {
        net.step();
    }
    assert_eq!(net.now, before, "a timer had to fire for the flush to end");
    for (i, n) in net.nodes.iter().enumerate() {
        assert!(!n.g.flushing(), "node {i} still flushing");
        assert_eq!(
            n.flush_times().last(),
            Some(&(v2.id.clone(), Duration::ZERO)),
            "node {i}"
        );
        // Counted once (the counter operators read for flushes).
        assert_eq!(n.g.stats().flushes, flushes[i] + 1, "node {i}");
    }
}

#[test]
fn a_member_that_installs_the_view_after_the_sequencer_asked_tells_it_at_once() {
    // Issue 18: the sequencer's request reached b and c before they had the view, so
    // they could not answer it; their state must go when they install the view, not
    // when the request is repeated 100 ms later (a VIP failover waited for it).
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    let before = net.now;
    let v2 = view(2, &["a", "b", "c"]);
    net.install(&v2, &[0]);
    while !net.queue.is_empty() {
        net.step();
    }
    assert!(net.nodes[0].g.flushing(), "the sequencer waits for b and c");
    net.install(&v2, &[1, 2]);
    while !net.queue.is_empty() {
        net.step();
    }
    assert_eq!(net.now, before, "a timer had to fire for the flush to end");
    assert!(
        net.nodes.iter().all(|n| !n.g.flushing()),
        "the flush ended on the states b and c sent unasked"
    );
}

#[test]
fn a_flush_state_from_a_daemon_outside_the_new_view_is_ignored() {
    // A state from a daemon that is not in the new view (c, which the view change
    // removed: its address is still known from the old view) must not count toward the
    // flush nor bring its clients into the new view's table (mutation survivor: the test
    // `view != f.view.id || member(from).is_none()` in `on_flush_state` turned `&&`).
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    let tables = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = tables.clone();
    net.drop = Box::new(move |from, to, m| {
        if let GroupMsg::Start { table, .. } = m {
            seen.borrow_mut().push(table.clone());
        }
        from == 2 || to == 2
    });
    let v2 = view(2, &["a", "b"]);
    // a, the sequencer, is flushing; b has not seen the view yet.
    net.install(&v2, &[0]);
    let forged = GroupMsg::FlushState {
        view: v2.id.clone(),
        old: v1.id.clone(),
        upto: 0,
        held: Vec::new(),
        locals: vec![("g".into(), "#ghost#c".into())],
        from: "c".into(),
        fifo: Vec::new(),
    };
    let _ = net.input(
        0,
        Input::Frame {
            from: addr(2),
            frame: forged.to_frame(),
        },
    );
    net.install(&v2, &[1]);
    net.run_until(|n| {
        n.nodes[..2]
            .iter()
            .all(|x| !x.g.flushing() && x.g.pending() == 0)
    });
    let tables = tables.borrow();
    assert!(!tables.is_empty(), "the new view was started");
    for t in tables.iter() {
        assert!(
            t.iter().all(|(_, _, daemon)| daemon != "c"),
            "a start carried the clients of a daemon outside the view: {t:?}"
        );
    }
    assert!(net.nodes[..2].iter().all(|n| n.g.view().id == v2.id));
}

// ----- the sequencer's and the members' bounds, stability marks, and the flush -----

/// An order from a (the sequencer of views of `["a", …]`) to b of a's data item `seq`
/// (its `lseq` too), carrying the stability mark `stable`.
fn order_from_a(v: &View, seq: u64, stable: u64) -> Input<GroupsCommand, crate::machine::NoEffect> {
    order_with(v, seq, stable, Bytes::from(format!("o{seq}")))
}

/// a and b in view 1, settled, nothing on its way.
fn two_settled() -> (Net, View) {
    let mut net = Net::new(&["a", "b"]);
    let v1 = view(1, &["a", "b"]);
    net.install(&v1, &[0, 1]);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    (net, v1)
}

/// The sequencer orders at most `WINDOW` items past the stable point: with nobody's
/// acknowledgement yet, exactly `WINDOW` of `WINDOW + 1` sends are ordered, and the last
/// goes as soon as b's first acknowledgement moves the stable point. (Guards
/// `order_ready`'s window test `> WINDOW` turned into `>=` or `==`: one item fewer.)
#[test]
fn the_sequencer_orders_a_full_window_past_the_stable_point_and_the_next_waits() {
    let (mut net, v1) = two_settled();
    for k in 0..=WINDOW {
        net.input(0, send_cmd("#x#a", format!("m{k}").as_bytes()))
            .unwrap();
    }
    assert_eq!(net.nodes[0].g.delivered(), WINDOW, "a full window ordered");
    assert_eq!(net.nodes[0].g.pending(), 1, "the one past it waits");
    let t = net.now;
    net.run_frames();
    assert_eq!(net.now, t);
    assert_eq!(
        net.nodes[0].g.delivered(),
        WINDOW + 1,
        "ordered at b's first acknowledgement"
    );
    assert_eq!(net.nodes[0].g.pending(), 0);
    net.run_until(|n| n.settled() && n.nodes[1].g.delivered() == WINDOW + 1);
    assert_eq!(net.nodes[1].delivered(), net.nodes[0].delivered());
    assert!(net.nodes[0].delivered().iter().all(|(v, _, _)| *v == v1.id));
}

/// The byte bound lets one more item pass it, and no more: with unstable payload at
/// exactly `LOG_BYTES` the next item is ordered, past it (`LOG_BYTES + 1`) the next
/// waits. (Guards `order_ready`'s `log_bytes > LOG_BYTES` turned into `>=` or `==`.)
#[test]
fn the_sequencer_orders_one_item_past_the_byte_bound_and_no_more() {
    use super::machine::LOG_BYTES;
    assert_eq!(
        3 * MAX_PAYLOAD,
        LOG_BYTES,
        "the test's sizes meet the bound"
    );
    let (mut net, _) = two_settled();
    let big = vec![7u8; MAX_PAYLOAD];
    for _ in 0..3 {
        net.input(0, send_cmd("#x#a", &big)).unwrap();
    }
    net.input(0, send_cmd("#x#a", b"1")).unwrap();
    net.input(0, send_cmd("#x#a", b"2")).unwrap();
    assert_eq!(
        net.nodes[0].g.delivered(),
        4,
        "ordered at LOG_BYTES, not at LOG_BYTES + 1"
    );
    assert_eq!(net.nodes[0].g.pending(), 1);
    net.run_until(|n| n.settled() && n.nodes[1].g.delivered() == 5);
    assert_eq!(net.nodes[1].delivered(), net.nodes[0].delivered());
    assert_eq!(net.nodes[1].payloads()[4].as_ref(), b"2");
}

/// Submits that reach the sequencer out of order wait there for the gap: lseq 2 before
/// lseq 1, and both are ordered the moment 1 arrives, nothing submitted again. (Guards
/// the `*l < exp` that drops only items already ordered from an origin's early ones:
/// with `>` lseq 2 was dropped and came only with the origin's repeat.)
#[test]
fn submits_arriving_out_of_order_are_ordered_as_soon_as_the_gap_fills() {
    let (mut net, _) = two_settled();
    net.input(1, send_cmd("#x#b", b"b0")).unwrap();
    net.input(1, send_cmd("#x#b", b"b1")).unwrap();
    assert_eq!(net.queue.len(), 2);
    assert!(
        net.queue
            .iter()
            .all(|(f, _, fr)| *f == 1 && matches!(decoded(fr), GroupMsg::Submit { .. }))
    );
    net.queue.swap(0, 1);
    let t = net.now;
    net.step();
    assert!(net.nodes[0].payloads().is_empty(), "lseq 2 waits for 1");
    net.step();
    assert_eq!(net.now, t);
    assert_eq!(
        net.nodes[0].payloads(),
        [Bytes::from_static(b"b0"), Bytes::from_static(b"b1")]
    );
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(1000));
    assert_eq!(net.nodes[1].payloads(), net.nodes[0].payloads());
    assert_eq!(net.nodes[1].g.stats().resent, 0, "nothing submitted again");
}

/// The sequencer keeps at most `MAX_PENDING` items of one origin that cannot be ordered
/// yet: a's own items fill the window, b's `MAX_PENDING` sends wait at a and are all
/// ordered once b's acknowledgements free the window, and b's next item (a disconnection,
/// which b never refuses) was dropped there: it comes only with b's repeat. (Guards
/// `on_submit`'s `early.len() < MAX_PENDING`; with `<=` it was kept.)
#[test]
fn the_sequencer_keeps_max_pending_waiting_items_of_an_origin_and_no_more() {
    let (mut net, _) = two_settled();
    let max = MAX_PENDING as u64;
    for k in 0..WINDOW {
        net.input(0, send_cmd("#x#a", format!("a{k}").as_bytes()))
            .unwrap();
    }
    assert_eq!(
        net.nodes[0].g.delivered(),
        WINDOW,
        "a's items fill the window"
    );
    for k in 0..max {
        net.input(1, send_cmd("#x#b", format!("b{k}").as_bytes()))
            .unwrap();
    }
    let gone = GroupsCommand::Disconnect {
        group: "g".into(),
        client: "#y#b".into(),
    };
    net.input(1, Input::Command(gone)).unwrap();
    assert_eq!(net.nodes[1].g.pending(), MAX_PENDING + 1);
    let t = net.now;
    net.run_frames();
    assert_eq!(net.now, t);
    assert_eq!(
        net.nodes[0].g.delivered(),
        WINDOW + max,
        "b's MAX_PENDING waiting items ordered"
    );
    assert_eq!(net.nodes[1].g.pending(), 1, "the one past them was dropped");
    assert_eq!(net.nodes[1].g.stats().resent, 0);
    net.run_until(|n| n.settled());
    assert_eq!(net.nodes[1].g.stats().resent, 1, "it came with b's repeat");
    assert_eq!(net.nodes[0].g.delivered(), WINDOW + max + 1);
    assert_eq!(net.nodes[1].g.delivered(), WINDOW + max + 1);
}

/// A member drops from what it holds for a flush only what an order's stability mark
/// says is stable, and only a mark above the one it has and not above what it
/// delivered: a stale (lower) mark and a mark past a gap change nothing. (Guards
/// `on_order`'s `stable > self.stable && stable <= self.delivered`: `>` as `==` or `<`,
/// or `<=` as `>`, never drop anything; `&&` as `||` takes the mark past the gap.)
#[test]
fn a_member_forgets_only_what_a_stability_mark_it_delivered_up_to_covers() {
    let (mut net, v1) = two_settled();
    for (seq, stable) in [(1, 0), (2, 0), (3, 0), (4, 2), (5, 1), (7, 6)] {
        net.input(1, order_from_a(&v1, seq, stable)).unwrap();
    }
    assert_eq!(net.nodes[1].g.delivered(), 5, "7 waits past the gap");
    // What b holds shows in its answer to a flush request.
    let v2 = view(2, &["a", "b"]);
    net.install(&v2, &[1]);
    net.queue.clear();
    let req = GroupMsg::FlushReq {
        view: v2.id.clone(),
    };
    net.input(
        1,
        Input::Frame {
            from: addr(0),
            frame: req.to_frame(),
        },
    )
    .unwrap();
    let states: Vec<(u64, Vec<u64>)> = net
        .queue
        .iter()
        .filter_map(|(f, _, fr)| match decoded(fr) {
            GroupMsg::FlushState { upto, held, .. } if *f == 1 => {
                Some((upto, held.iter().map(|(s, _)| *s).collect()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(states, [(5, vec![3, 4, 5])]);
}

/// A member keeps at most 2 × `WINDOW` orders past a gap: exactly that many are kept and
/// delivered when the gap fills, the next is dropped (it would come again from the
/// sequencer). (Guards `on_order_item`'s `ahead.len() < (2 * WINDOW) as usize`.)
#[test]
fn a_member_keeps_twice_the_window_of_orders_past_a_gap_and_no_more() {
    let (mut net, v1) = two_settled();
    let edge = 2 * WINDOW;
    // 2, 3, …, edge + 2: one more than the bound.
    for seq in 2..=edge + 2 {
        net.input(1, order_from_a(&v1, seq, 0)).unwrap();
    }
    assert_eq!(net.nodes[1].g.delivered(), 0);
    net.input(1, order_from_a(&v1, 1, 0)).unwrap();
    assert_eq!(
        net.nodes[1].g.delivered(),
        edge + 1,
        "the gap and the 2 × WINDOW orders kept past it, not the one after"
    );
}

/// An order of the view being left that reaches a member while the flush runs is not
/// delivered: the member gave its state, and the flush alone finishes the view, alike
/// everywhere. (Guards `on_order`'s `view != self.view.id || self.flush.is_some()`.)
#[test]
fn an_order_arriving_during_a_flush_is_not_delivered() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    net.input(0, send_cmd("#x#a", b"late")).unwrap();
    // The order to b is held back, the one to c lost; a is gone.
    let to_b: Vec<_> = net
        .queue
        .drain(..)
        .filter(|(_, to, fr)| *to == 1 && matches!(decoded(fr), GroupMsg::Order { .. }))
        .collect();
    assert_eq!(to_b.len(), 1);
    net.drop = Box::new(|from, to, _| from == 0 || to == 0);
    let v2 = view(2, &["b", "c"]);
    net.install(&v2, &[1, 2]);
    assert!(net.nodes[1].g.flushing());
    // It reaches b before c's state does.
    for f in to_b {
        net.queue.push_front(f);
    }
    net.run_until(|n| n.nodes[1..].iter().all(|x| !x.g.flushing()));
    net.run_for(Duration::from_millis(300));
    for n in &net.nodes[1..] {
        assert!(n.payloads().is_empty(), "{:?}", n.payloads());
        assert_eq!(n.closed().last(), Some(&(v1.id.clone(), v2.id.clone(), 0)));
    }
}

/// Views of a, b, c where b has a's incarnation number (incarnations are per daemon, so
/// two daemons may share one).
fn shared(mut v: View) -> View {
    for m in &mut v.members {
        if m.name == "b" {
            m.incarnation = member("a").incarnation;
        }
    }
    v
}

/// a, b (sharing a's incarnation) and c in view 1. b's client x joined, a ordered m1
/// and m2 (delivered everywhere, not stable), then b's leave of x, b's join of y and
/// a's join of z, delivered by a and c but not by b; then view 2 of the same three.
/// Returns the net, both views, and every `Start` sent.
fn flush_with_joins_and_leaves_b_did_not_deliver() -> (Net, View, View, Vec<GroupMsg>) {
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut net = Net::new(&["a", "b", "c"]);
    let mut me = member("b");
    me.incarnation = member("a").incarnation;
    net.nodes[1].g = Groups::new(
        GroupsSettings {
            me,
            canary_deliver_early: false,
        },
        Instant::ZERO,
    );
    let v1 = shared(view(1, &["a", "b", "c"]));
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    let join = |client: &str| {
        Input::Command(GroupsCommand::Join {
            group: "g".into(),
            client: client.into(),
        })
    };
    net.input(1, join("x")).unwrap();
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    // Delivered everywhere, no acknowledgement (frames only): not stable.
    net.input(0, send_cmd("#x#a", b"m1")).unwrap();
    net.input(0, send_cmd("#x#a", b"m2")).unwrap();
    net.run_frames();
    // Orders to b are lost from now on.
    net.drop = Box::new(|_, to, m| to == 1 && matches!(m, GroupMsg::Order { .. }));
    let leave = GroupsCommand::Leave {
        group: "g".into(),
        client: "x".into(),
    };
    net.input(1, Input::Command(leave)).unwrap();
    net.input(1, join("y")).unwrap();
    net.run_frames();
    net.input(0, join("z")).unwrap();
    net.run_frames();
    assert_eq!(net.nodes[0].g.delivered(), 6);
    assert_eq!(net.nodes[2].g.delivered(), 6);
    assert_eq!(net.nodes[1].g.delivered(), 3);
    let starts: Rc<RefCell<Vec<GroupMsg>>> = Rc::default();
    let seen = starts.clone();
    net.drop = Box::new(move |_, _, m| {
        if matches!(m, GroupMsg::Start { .. }) {
            seen.borrow_mut().push(m.clone());
        }
        false
    });
    let v2 = shared(view(2, &["a", "b", "c"]));
    net.install(&v2, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    let starts = starts.borrow().clone();
    (net, v1, v2, starts)
}

/// The new view's table counts each daemon's own joins and leaves that others delivered
/// and it did not (the flush delivers them to it): b's leave of x and join of y, not a's
/// join of z though a has b's incarnation number. (Guards `flush_step`'s
/// `take_while(.. <= hi)` and `it.id.origin != *daemon || Some(it.id.incarnation) !=
/// incarnation`: each mutant leaves x in the table, or gives b a's z.)
#[test]
fn a_flush_table_counts_each_daemons_own_joins_and_leaves_it_had_not_delivered() {
    let (net, v1, v2, _) = flush_with_joins_and_leaves_b_did_not_deliver();
    let want = [
        ("y".to_string(), "b".to_string()),
        ("z".to_string(), "a".to_string()),
    ];
    for n in &net.nodes {
        assert_eq!(n.g.view().id, v2.id);
        assert_eq!(n.g.members("g"), want);
        assert_eq!(n.closed().last(), Some(&(v1.id.clone(), v2.id.clone(), 6)));
    }
}

/// A start carries, per previous view, only the items above the lowest number a member
/// delivered there: 4 to 6 (b delivered up to 3), not 2 and 3 which every member has
/// though they are not stable. (Guards `flush_step`'s `*s > lo && *s <= hi`.)
#[test]
fn a_start_carries_only_the_items_some_member_lacks() {
    let (_, v1, _, starts) = flush_with_joins_and_leaves_b_did_not_deliver();
    assert!(!starts.is_empty(), "no start was seen");
    for st in &starts {
        let GroupMsg::Start { fills, .. } = st else {
            unreachable!()
        };
        let got: Vec<(ViewId, u64, Vec<u64>)> = fills
            .iter()
            .map(|(v, hi, items)| (v.clone(), *hi, items.iter().map(|(s, _)| *s).collect()))
            .collect();
        assert_eq!(got, [(v1.id.clone(), 6, vec![4, 5, 6])]);
    }
}

/// A start repeated after the view began is acknowledged again only when it is for the
/// view the member is in: one of an earlier view gets no answer. (Guards `on_start`'s
/// `view == self.view.id && !self.is_sequencer()` turned `||`: every stale start
/// answered.)
#[test]
fn only_a_repeated_start_of_the_current_view_is_acknowledged_again() {
    let (mut net, v1) = two_settled();
    let v2 = view(2, &["a", "b"]);
    net.install(&v2, &[0, 1]);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    assert!(net.queue.is_empty());
    let start = |v: &View| GroupMsg::Start {
        view: v.id.clone(),
        fills: Vec::new(),
        table: Vec::new(),
        fifo: Vec::new(),
    };
    let from_a = |m: GroupMsg| Input::Frame {
        from: addr(0),
        frame: m.to_frame(),
    };
    let _ = net.input(1, from_a(start(&v1)));
    assert!(
        net.queue.is_empty(),
        "a stale start was answered: {:?}",
        net.queue
    );
    let _ = net.input(1, from_a(start(&v2)));
    let answers: Vec<(usize, usize, GroupMsg)> = net
        .queue
        .iter()
        .map(|(f, t, fr)| (*f, *t, decoded(fr)))
        .collect();
    assert!(
        matches!(&answers[..], [(1, 0, GroupMsg::Ack { view, .. })] if *view == v2.id),
        "{answers:?}"
    );
    assert_eq!(net.nodes[1].g.view().id, v2.id);
}

/// A member that holds orders past a gap when the view changes delivers in the old view
/// only up to where the fills end, never one of those held orders above it: b lost order
/// 3 and holds 4 and 5, c lost 4 and 5, and the sequencer that had them all is gone, so
/// the old view ends at 3 for both. (Guards `on_start`'s `while self.delivered < hi`
/// turned `<=`: b delivers 4 and agreement is lost.)
#[test]
fn orders_held_past_a_gap_are_not_delivered_beyond_the_old_views_end() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    net.drop = Box::new(|_, to, m| match m {
        GroupMsg::Order { seq, .. } => to == 1 && *seq == 3 || to == 2 && *seq >= 4,
        GroupMsg::Nack { .. } => true,
        _ => false,
    });
    for k in 1..=5 {
        net.input(0, send_cmd("#x#a", format!("a{k}").as_bytes()))
            .unwrap();
    }
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.nodes[0].payloads().len(), 5, "a ordered all five");
    assert_eq!(net.nodes[1].payloads().len(), 2, "b stops at its gap");
    assert_eq!(net.nodes[2].payloads().len(), 3, "c got up to 3");
    // a goes, with every order it alone had.
    net.drop = Box::new(|from, to, _| from == 0 || to == 0);
    let v2 = view(2, &["b", "c"]);
    net.install(&v2, &[1, 2]);
    net.run_until(|n| {
        n.nodes[1..]
            .iter()
            .all(|x| !x.g.flushing() && x.g.pending() == 0)
    });
    let want = (v1.id.clone(), v2.id.clone(), 3);
    assert_eq!(net.nodes[1].closed().last(), Some(&want));
    assert_eq!(net.nodes[2].closed().last(), Some(&want));
    assert_eq!(net.nodes[1].delivered(), net.nodes[2].delivered());
    assert_eq!(net.nodes[1].payloads().len(), 3);
}

/// b delivers, in v1, one item from each of `lives` lives of a daemon z that is in no
/// view, then moves to v2; then the sequencer sends z's first item again. Says whether
/// b still knew it (skipped it) or had forgotten z.
fn still_knows_a_departed_origin_after(lives: u64) -> bool {
    let (mut net, v1) = two_settled();
    let item_of_z = |life: u64| Item {
        id: MsgId {
            origin: "z".into(),
            incarnation: life,
            lseq: 1,
        },
        group: "g".into(),
        what: What::Data {
            sender: "#x#z".into(),
            payload: Bytes::from(format!("z{life}")),
        },
    };
    let order = |v: &View, seq: u64, item: Item| Input::Frame {
        from: addr(0),
        frame: GroupMsg::Order {
            view: v.id.clone(),
            seq,
            stable: seq - 1,
            items: vec![item],
        }
        .to_frame(),
    };
    for life in 1..=lives {
        let _ = net.nodes[1]
            .g
            .handle(net.now, order(&v1, life, item_of_z(life)));
    }
    // The acknowledgements are not needed: the sequencer is played by the test.
    while net.nodes[1].g.poll_output().is_some() {}
    let v2 = view(2, &["a", "b"]);
    net.drop = Box::new(|_, _, m| matches!(m, GroupMsg::Ack { .. } | GroupMsg::Nack { .. }));
    net.install(&v2, &[0, 1]);
    net.run_until(|n| n.nodes.iter().all(|x| !x.g.flushing()));
    assert_eq!(net.nodes[1].g.view().id, v2.id);
    net.nodes[1].events.clear();
    let _ = net.input(1, order(&v2, 1, item_of_z(1)));
    let skipped = net.nodes[1]
        .events
        .iter()
        .any(|e| matches!(e, GroupsEvent::Skipped { .. }));
    let delivered = net.nodes[1].payloads() == [Bytes::from("z1")];
    assert!(skipped != delivered, "{:?}", net.nodes[1].events);
    skipped
}

/// What a member remembers of origins gone from the view (to tell a late duplicate from
/// a new item) is bounded at four times the largest view's members: at the bound all is
/// kept, past it the departed are forgotten when the next view starts. (Guards
/// `on_start`'s `seen.len() > 4 * MAX_MEMBERS` turned `==`, `<` or `>=`.)
#[test]
fn the_memory_of_departed_origins_is_kept_up_to_its_bound_and_no_further() {
    let bound = 4 * crate::membership::msg::MAX_MEMBERS as u64;
    assert!(
        still_knows_a_departed_origin_after(bound),
        "forgotten at the bound"
    );
    assert!(
        !still_knows_a_departed_origin_after(bound + 1),
        "kept past the bound"
    );
}

/// A daemon that was the sequencer, whose start was not yet acknowledged by everyone when
/// a newer view with another sequencer began, stops sending that start: it is moot.
/// (Guards `on_start`'s `!self.is_sequencer() || every member acknowledged` turned `&&`:
/// b would send v1's start to c for ever.)
#[test]
fn a_former_sequencer_stops_repeating_its_moot_start() {
    let mut net = Net::new(&["a", "b", "c"]);
    // v1 is b and c, b its sequencer; c's acknowledgements are lost, so b keeps its start.
    net.drop = Box::new(|from, to, m| from == 2 && to == 1 && matches!(m, GroupMsg::Ack { .. }));
    let v1 = view(1, &["b", "c"]);
    net.install(&v1, &[1, 2]);
    net.run_until(|n| n.nodes[1..].iter().all(|x| !x.g.flushing()));
    net.run_for(Duration::from_millis(300));
    // a joins: it is the sequencer of v2.
    let starts_from_b = std::rc::Rc::new(std::cell::Cell::new(0));
    let count = starts_from_b.clone();
    net.drop = Box::new(move |from, _, m| {
        if from == 1 && matches!(m, GroupMsg::Start { .. }) {
            count.set(count.get() + 1);
        }
        false
    });
    let v2 = view(2, &["a", "b", "c"]);
    net.install(&v2, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    assert!(net.nodes.iter().all(|n| n.g.view().id == v2.id));
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        starts_from_b.get(),
        0,
        "b repeated a start of v1 after v2 began"
    );
}

// ----- FIFO mode: acknowledgements, the bound past a gap, stability marks, flush states and fills -----

/// A FIFO item of `origin` in its life `incarnation`, numbered `fseq`, carrying `payload`.
fn fifo_item(origin: &str, incarnation: u64, fseq: u64, payload: &[u8]) -> Item {
    Item {
        id: MsgId {
            origin: origin.into(),
            incarnation,
            lseq: fseq,
        },
        group: "g".into(),
        what: What::Data {
            sender: format!("#x#{origin}"),
            payload: Bytes::copy_from_slice(payload),
        },
    }
}

/// A `FifoData` of view `v` arriving from the address of node `from`: `item` as number
/// `fseq`, with the origin's stability mark `stable`.
fn fifo_data(
    v: &View,
    from: usize,
    fseq: u64,
    stable: u64,
    item: Item,
) -> Input<GroupsCommand, crate::machine::NoEffect> {
    let msg = GroupMsg::FifoData {
        view: v.id.clone(),
        fseq,
        stable,
        items: vec![item],
    };
    Input::Frame {
        from: addr(from),
        frame: msg.to_frame(),
    }
}

/// a's FIFO item `fseq` (payload `f{fseq}`), from a, with no stability mark.
fn fifo_from_a(v: &View, fseq: u64) -> Input<GroupsCommand, crate::machine::NoEffect> {
    let payload = format!("f{fseq}");
    let item = fifo_item("a", member("a").incarnation, fseq, payload.as_bytes());
    fifo_data(v, 0, fseq, 0, item)
}

/// The `upto` of every `FifoAck` on its way; the queue is emptied.
fn take_fifo_acks(net: &mut Net) -> Vec<u64> {
    std::mem::take(&mut net.queue)
        .iter()
        .filter_map(|(_, _, fr)| match decoded(fr) {
            GroupMsg::FifoAck { upto, .. } => Some(upto),
            _ => None,
        })
        .collect()
}

/// What node `i` (not a) says of FIFO items when it answers a's flush request for
/// `next`, which it installs: per origin, how far it has it and the numbers it holds.
fn fifo_flush_state(net: &mut Net, i: usize, next: &View) -> Vec<(String, u64, Vec<u64>)> {
    net.install(next, &[i]);
    net.queue.clear();
    let req = GroupMsg::FlushReq {
        view: next.id.clone(),
    };
    net.input(
        i,
        Input::Frame {
            from: addr(0),
            frame: req.to_frame(),
        },
    )
    .unwrap();
    let mut states: Vec<Vec<(String, u64, Vec<u64>)>> = net
        .queue
        .iter()
        .filter_map(|(f, _, fr)| match decoded(fr) {
            GroupMsg::FlushState { fifo, .. } if *f == i => Some(
                fifo.into_iter()
                    .map(|(o, upto, held)| (o, upto, held.iter().map(|(k, _)| *k).collect()))
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(states.len(), 1, "one answer to the request");
    states.remove(0)
}

/// A member acknowledges an origin's FIFO items at once every `ACK_STRIDE` items counted
/// from its last acknowledgement, or once `ACK_BYTES` payload bytes are unacknowledged,
/// and not before (the rest waits for the acknowledgement timer, which never fires here:
/// the clock does not move). (Guards `on_fifo_data`'s `delivered - last_ack >=
/// ACK_STRIDE || (delivered > last_ack && unacked_bytes >= ACK_BYTES)` in each of its
/// operators, and `deliver`'s `unacked_bytes += …`: without the count the byte bound never
/// fires; the others acknowledge every item, or never at the byte bound.)
#[test]
fn a_member_acknowledges_fifo_items_every_stride_and_at_the_byte_bound() {
    use super::machine::{ACK_BYTES, ACK_STRIDE};
    let (mut net, v1) = two_settled();
    let life = member("a").incarnation;
    let t = net.now;
    for fseq in 1..ACK_STRIDE {
        net.input(1, fifo_from_a(&v1, fseq)).unwrap();
    }
    assert_eq!(take_fifo_acks(&mut net), [0u64; 0], "before the stride");
    net.input(1, fifo_from_a(&v1, ACK_STRIDE)).unwrap();
    assert_eq!(take_fifo_acks(&mut net), [ACK_STRIDE], "at the stride");
    // The next stride counts from that acknowledgement.
    for fseq in ACK_STRIDE + 1..2 * ACK_STRIDE {
        net.input(1, fifo_from_a(&v1, fseq)).unwrap();
    }
    assert_eq!(
        take_fifo_acks(&mut net),
        [0u64; 0],
        "before the second stride"
    );
    net.input(1, fifo_from_a(&v1, 2 * ACK_STRIDE)).unwrap();
    assert_eq!(take_fifo_acks(&mut net), [2 * ACK_STRIDE]);
    // Bytes: one short of the bound waits; the byte that reaches it is acknowledged at
    // once, and so is an item of the bound's size alone.
    let n = 2 * ACK_STRIDE;
    let short = vec![1u8; ACK_BYTES - 1];
    net.input(
        1,
        fifo_data(&v1, 0, n + 1, 0, fifo_item("a", life, n + 1, &short)),
    )
    .unwrap();
    assert_eq!(take_fifo_acks(&mut net), [0u64; 0], "one byte short");
    net.input(
        1,
        fifo_data(&v1, 0, n + 2, 0, fifo_item("a", life, n + 2, b"!")),
    )
    .unwrap();
    assert_eq!(take_fifo_acks(&mut net), [n + 2], "at the byte bound");
    let whole = vec![2u8; ACK_BYTES];
    net.input(
        1,
        fifo_data(&v1, 0, n + 3, 0, fifo_item("a", life, n + 3, &whole)),
    )
    .unwrap();
    assert_eq!(
        take_fifo_acks(&mut net),
        [n + 3],
        "one item of the bound's size"
    );
    assert_eq!(net.now, t);
    assert_eq!(net.nodes[1].fifo().len() as u64, n + 3, "each delivered");
}

/// A member keeps at most 2 × `FIFO_WINDOW` of an origin's FIFO items past a gap:
/// exactly that many are kept and delivered when the gap fills, the next is dropped (the
/// origin sends it again). (Guards `on_fifo_data`'s `ahead.len() < (2 * FIFO_WINDOW) as
/// usize`: `<=` keeps one more, `==`, `>` and `/` none, `+` 514.)
#[test]
fn a_member_keeps_twice_the_fifo_window_past_a_gap_and_no_more() {
    use super::machine::FIFO_WINDOW;
    let (mut net, v1) = two_settled();
    let edge = 2 * FIFO_WINDOW;
    // 2, 3, …, edge + 2: one more than the bound.
    for fseq in 2..=edge + 2 {
        net.input(1, fifo_from_a(&v1, fseq)).unwrap();
    }
    assert!(net.nodes[1].fifo().is_empty(), "all wait for 1");
    net.input(1, fifo_from_a(&v1, 1)).unwrap();
    let got: Vec<u64> = net.nodes[1].fifo().iter().map(|(_, _, k, _)| *k).collect();
    assert_eq!(
        got,
        (1..=edge + 1).collect::<Vec<u64>>(),
        "the gap and the 2 × FIFO_WINDOW items kept past it, not the one after"
    );
}

/// Only the origin itself, in the life the view names, sends its FIFO items: an item of
/// a's sent from c's address, or one of a's earlier life from a's address, is not
/// delivered, and a's own item 1 is, after them. (Guards `on_fifo_data`'s match guard
/// `m.addr == from && m.incarnation == … && m.name != self.me.name`, turned `true` or
/// either `&&` turned `||`: the forged item is delivered as a's 1 and the real one is
/// then skipped as a duplicate.)
#[test]
fn fifo_items_are_taken_only_from_their_origin_in_its_life() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    let life = member("a").incarnation;
    let forged = fifo_item("a", life, 1, b"from c");
    net.input(1, fifo_data(&v1, 2, 1, 0, forged)).unwrap();
    let earlier = fifo_item("a", life - 1, 1, b"earlier life");
    net.input(1, fifo_data(&v1, 0, 1, 0, earlier)).unwrap();
    assert!(net.nodes[1].fifo().is_empty(), "{:?}", net.nodes[1].fifo());
    let real = fifo_item("a", life, 1, b"real");
    net.input(1, fifo_data(&v1, 0, 1, 0, real)).unwrap();
    assert_eq!(per_origin(&net.nodes[1], "a"), ["real"]);
}

/// A FIFO item of the view being left that reaches a member while the flush runs is
/// not delivered: the member gave its state, and the flush alone finishes the view,
/// alike everywhere (here: a's item reached b only, and a is gone). (Guards
/// `on_fifo_data`'s `view != self.view.id || self.flush.is_some() || fseq == 0`, either
/// `||` turned `&&`: b delivers it and c never does.)
#[test]
fn fifo_data_arriving_during_a_flush_is_not_delivered() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    net.input(0, fsend_cmd("#x#a", b"late")).unwrap();
    // The copy to b is held back, the one to c lost; a is gone.
    let to_b: Vec<_> = net
        .queue
        .drain(..)
        .filter(|(_, to, fr)| *to == 1 && matches!(decoded(fr), GroupMsg::FifoData { .. }))
        .collect();
    assert_eq!(to_b.len(), 1);
    net.drop = Box::new(|from, to, _| from == 0 || to == 0);
    let v2 = view(2, &["b", "c"]);
    net.install(&v2, &[1, 2]);
    assert!(net.nodes[1].g.flushing());
    // It reaches b before c's state does.
    for f in to_b {
        net.queue.push_front(f);
    }
    net.run_until(|n| n.nodes[1..].iter().all(|x| !x.g.flushing()));
    net.run_for(Duration::from_millis(300));
    for n in &net.nodes[1..] {
        assert!(per_origin(n, "a").is_empty(), "{:?}", n.fifo());
        assert_eq!(n.closed().last().map(|c| &c.1), Some(&v2.id));
    }
}

/// A member holding FIFO items past a gap when the view changes delivers in the old view
/// only up to where the fills end: b lost a's 2 and holds 3, c lost 3, and a, which had
/// them all, is gone, so a's items end at 2 for both. (Guards `fifo_finish`'s `while
/// inb.delivered < hi` turned `<=`: b delivers 3 too and the two part.)
#[test]
fn fifo_items_held_past_a_gap_are_not_delivered_beyond_the_old_views_end() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b", "c"]);
    net.install(&v1, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    net.drop = Box::new(|_, to, m| match m {
        GroupMsg::FifoData { fseq, .. } => to == 1 && *fseq == 2 || to == 2 && *fseq == 3,
        GroupMsg::FifoNack { .. } => true,
        _ => false,
    });
    for k in 1..=3 {
        net.input(0, fsend_cmd("#x#a", format!("a{k}").as_bytes()))
            .unwrap();
    }
    net.run_for(Duration::from_millis(20));
    assert_eq!(per_origin(&net.nodes[1], "a"), ["a1"], "b stops at its gap");
    assert_eq!(per_origin(&net.nodes[2], "a"), ["a1", "a2"]);
    net.drop = Box::new(|from, to, _| from == 0 || to == 0);
    let v2 = view(2, &["b", "c"]);
    net.install(&v2, &[1, 2]);
    net.run_until(|n| n.nodes[1..].iter().all(|x| !x.g.flushing()));
    net.run_for(Duration::from_millis(300));
    for n in &net.nodes[1..] {
        assert_eq!(per_origin(n, "a"), ["a1", "a2"]);
        assert!(n.fifo().iter().all(|(v, ..)| *v == v1.id));
        assert_eq!(n.closed().last().map(|c| &c.1), Some(&v2.id));
    }
}

/// A member forgets the FIFO items it holds for a flush only when their origin says, in
/// the view, that every member has them: a mark of another view, or one from another
/// member's address, changes nothing; a's own mark of 2 leaves 3 to 5. What it holds
/// shows in its flush state. (Guards `on_fifo_stable` turned `()`, its `view !=
/// self.view.id || …` as `==` or `&&`, its `m.addr == from` as `!=`, and `note_stable`
/// turned `()` or its `stable > self.stable` as `==` or `<`.)
#[test]
fn a_member_forgets_held_fifo_items_only_at_their_origins_mark_in_the_view() {
    let (mut net, v1) = two_settled();
    for fseq in 1..=5 {
        net.input(1, fifo_from_a(&v1, fseq)).unwrap();
    }
    let mark = |v: &ViewId, from: usize, upto: u64| Input::Frame {
        from: addr(from),
        frame: GroupMsg::FifoStable {
            view: v.clone(),
            upto,
        }
        .to_frame(),
    };
    net.input(1, mark(&view(0, &["a", "b"]).id, 0, 4)).unwrap();
    net.input(1, mark(&v1.id, 2, 4)).unwrap();
    net.input(1, mark(&v1.id, 0, 2)).unwrap();
    let v2 = view(2, &["a", "b"]);
    assert_eq!(
        fifo_flush_state(&mut net, 1, &v2),
        [("a".to_string(), 5, vec![3, 4, 5])]
    );
}

/// A flush state names an origin only if the member delivered some of its items: b,
/// which sent nothing and holds a's item 2 past a gap, names nobody (naming a at 0 would
/// say it delivered none, which naming nobody already says). Its own items: how far it
/// sent, and what no acknowledgement made stable. (Guards `fifo_state`'s `next > 1` and
/// `delivered > 0` turned `>=`, and `next - 1` turned `+` or `/`: the state would claim
/// items nobody was sent.)
#[test]
fn a_flush_state_names_what_was_delivered_and_how_far_its_own_items_went() {
    let v2 = view(2, &["a", "b"]);
    let (mut net, v1) = two_settled();
    net.input(1, fifo_from_a(&v1, 2)).unwrap();
    assert_eq!(fifo_flush_state(&mut net, 1, &v2), []);
    // b sends two; its copies to a are lost with the queue (no acknowledgement).
    let (mut net, _) = two_settled();
    net.input(1, fsend_cmd("#x#b", b"b1")).unwrap();
    net.input(1, fsend_cmd("#x#b", b"b2")).unwrap();
    assert_eq!(
        fifo_flush_state(&mut net, 1, &v2),
        [("b".to_string(), 2, vec![1, 2])]
    );
}

/// A start carries, per origin of a previous view, only the FIFO items above the lowest
/// number a member delivered: d's 4 and 5 (b delivered up to 3), not 1 to 3, which every
/// member has though none is stable (no acknowledgement reaches d). (Guards `fills`'s
/// `naming += 1`, `naming < members` as `<=`, and `*k > lo && *k <= hi` with `&&` as `||`
/// or `>` as `>=`: each carries items every member has.)
#[test]
fn a_start_carries_only_the_fifo_items_some_member_lacks() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut net = Net::new(&["a", "b", "c", "d"]);
    let v1 = view(1, &["a", "b", "c", "d"]);
    net.install(&v1, &[0, 1, 2, 3]);
    net.run_until(|n| n.settled());
    // b gets d's 1 to 3, c 1 to 4, a all five.
    net.drop = Box::new(|_, to, m| match m {
        GroupMsg::FifoAck { .. } => true,
        GroupMsg::FifoData { fseq, .. } => to == 1 && *fseq >= 4 || to == 2 && *fseq >= 5,
        _ => false,
    });
    for k in 1..=5 {
        net.input(3, fsend_cmd("#x#d", format!("d{k}").as_bytes()))
            .unwrap();
    }
    net.run_for(Duration::from_millis(300));
    let counts: Vec<usize> = net.nodes[..3]
        .iter()
        .map(|n| per_origin(n, "d").len())
        .collect();
    assert_eq!(counts, [5, 3, 4]);
    let starts: Rc<RefCell<Vec<GroupMsg>>> = Rc::default();
    let seen = starts.clone();
    net.drop = Box::new(move |from, to, m| {
        if matches!(m, GroupMsg::Start { .. }) {
            seen.borrow_mut().push(m.clone());
        }
        from == 3 || to == 3
    });
    let v2 = view(2, &["a", "b", "c"]);
    net.install(&v2, &[0, 1, 2]);
    net.run_until(|n| n.nodes[..3].iter().all(|x| !x.g.flushing()));
    let starts = starts.borrow().clone();
    assert!(!starts.is_empty(), "no start was seen");
    for st in &starts {
        let GroupMsg::Start { fifo, .. } = st else {
            unreachable!()
        };
        let got: Vec<(ViewId, String, u64, Vec<u64>)> = fifo
            .iter()
            .map(|(v, o, hi, items)| {
                let keys = items.iter().map(|(k, _)| *k).collect();
                (v.clone(), o.clone(), *hi, keys)
            })
            .collect();
        assert_eq!(got, [(v1.id.clone(), "d".to_string(), 5, vec![4, 5])]);
    }
    for n in &net.nodes[..3] {
        assert_eq!(per_origin(n, "d"), ["d1", "d2", "d3", "d4", "d5"]);
    }
}

// ----- batches on the wire (SPEC.md §10.3) -----

/// Three settled daemons; nothing on its way.
fn three_settled() -> (Net, View) {
    let mut net = Net::new(&["a", "b", "c"]);
    let v = view(1, &["a", "b", "c"]);
    net.install(&v, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    net.run_for(Duration::from_millis(300));
    (net, v)
}

/// Hands node `i` every input in `inputs` before taking any of its outputs (one turn of a
/// driver), then takes them.
fn one_turn(net: &mut Net, i: usize, inputs: Vec<Input<GroupsCommand, crate::machine::NoEffect>>) {
    for input in inputs {
        net.nodes[i].g.handle(net.now, input).expect("taken");
    }
    net.drain(i);
}

/// How many items each frame on its way from `from` to `to` carries, in order; each
/// must be a batch of `kind` (`Submit` or `Order`).
fn batch_sizes(net: &Net, from: usize, to: usize, kind: &str) -> Vec<usize> {
    on_the_way(net, from, to)
        .iter()
        .map(|m| match m {
            GroupMsg::Submit { items, .. } if kind == "Submit" => items.len(),
            GroupMsg::Order { items, .. } if kind == "Order" => items.len(),
            other => panic!("only {kind} batches expected: {other:?}"),
        })
        .collect()
}

/// The frames on their way from `from` to `to`, decoded, in order.
fn on_the_way(net: &Net, from: usize, to: usize) -> Vec<GroupMsg> {
    net.queue
        .iter()
        .filter(|(f, t, _)| (*f, *t) == (from, to))
        .map(|(_, _, frame)| decoded(frame))
        .collect()
}

/// Sends b takes in one turn reach the sequencer as one submit, which it orders as one
/// frame to each member, numbered one after the other; every daemon delivers them all
/// in that order. One send alone is a batch of one item, sent at once.
#[test]
fn sends_taken_in_one_turn_share_one_submit_and_one_order_frame() {
    let (mut net, v) = three_settled();
    let sends = (0..100)
        .map(|k| send_cmd("#c#b", format!("m{k:03}").as_bytes()))
        .collect();
    one_turn(&mut net, 1, sends);
    match &on_the_way(&net, 1, 0)[..] {
        [GroupMsg::Submit { view, items, .. }] => {
            assert_eq!(*view, v.id);
            let lseqs: Vec<u64> = items.iter().map(|it| it.id.lseq).collect();
            assert_eq!(lseqs, (1..=100).collect::<Vec<u64>>());
        }
        other => panic!("one submit of 100 items expected, got {other:?}"),
    }
    // a takes b's submit: one order to b and one to c.
    let (from, to, frame) = net.queue.pop_front().expect("b's submit");
    assert_eq!((from, to), (1, 0));
    let from = net.nodes[1].addr;
    net.nodes[0]
        .g
        .handle(net.now, Input::Frame { from, frame })
        .unwrap();
    net.drain(0);
    for member in [1, 2] {
        match &on_the_way(&net, 0, member)[..] {
            [GroupMsg::Order { seq, items, .. }] => {
                assert_eq!(items.len(), 100, "to {member}");
                let first = *seq;
                let payloads: Vec<Bytes> = items
                    .iter()
                    .map(|it| match &it.what {
                        What::Data { payload, .. } => payload.clone(),
                        w => panic!("{w:?}"),
                    })
                    .collect();
                let want: Vec<Bytes> = (0..100).map(|k| Bytes::from(format!("m{k:03}"))).collect();
                assert_eq!(payloads, want);
                assert_eq!(net.nodes[0].delivered().first().map(|d| d.1), Some(first));
            }
            other => panic!("one order of 100 items to {member} expected, got {other:?}"),
        }
    }
    net.run_until(|n| n.settled());
    net.run_frames();
    let want: Vec<Bytes> = (0..100).map(|k| Bytes::from(format!("m{k:03}"))).collect();
    for (i, n) in net.nodes.iter().enumerate() {
        assert_eq!(n.payloads(), want, "node {i} {:?}", n.events);
    }
    // Light load: one send is one frame of one item, sent in the same turn.
    one_turn(&mut net, 0, vec![send_cmd("#c#a", b"alone")]);
    for member in [1, 2] {
        match &on_the_way(&net, 0, member)[..] {
            [GroupMsg::Order { items, .. }] => assert_eq!(items.len(), 1),
            other => panic!("one order of one item expected, got {other:?}"),
        }
    }
}

/// A batch closes once it holds `BATCH_BYTES` of payload (the item that passes it is the
/// last), so frames stay small however much one turn takes.
#[test]
fn a_batch_closes_past_its_byte_bound() {
    use super::msg::BATCH_BYTES;
    let (mut net, _) = three_settled();
    let big = vec![b'x'; 20 * 1024];
    let sends = (0..9).map(|_| send_cmd("#c#a", &big)).collect();
    one_turn(&mut net, 0, sends);
    let sizes = batch_sizes(&net, 0, 1, "Order");
    // Four items of 20 KiB pass 64 KiB with the fourth.
    assert_eq!(BATCH_BYTES, 64 * 1024);
    assert_eq!(sizes, vec![4, 4, 1]);
    net.run_until(|n| n.settled());
    net.run_frames();
    for n in &net.nodes {
        assert_eq!(n.payloads().len(), 9);
    }
}

/// A batch being formed leaves before any frame made after it: orders ordered in a
/// turn reach a member before the flush request of a view change in the same turn.
#[test]
fn a_batch_leaves_before_the_frames_made_after_it() {
    let (mut net, _) = three_settled();
    let v2 = view(2, &["a", "b", "c"]);
    one_turn(
        &mut net,
        0,
        vec![
            send_cmd("#c#a", b"one"),
            send_cmd("#c#a", b"two"),
            Input::Command(GroupsCommand::View(v2.clone())),
        ],
    );
    let kinds: Vec<&'static str> = on_the_way(&net, 0, 1)
        .iter()
        .map(|m| match m {
            GroupMsg::Order { items, .. } if items.len() == 2 => "order(2)",
            GroupMsg::FlushReq { .. } => "flush-req",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds.first(), Some(&"order(2)"), "{kinds:?}");
    assert!(kinds.contains(&"flush-req"), "{kinds:?}");
    net.install(&v2, &[1, 2]);
    net.run_until(|n| n.settled());
    net.run_frames();
    for n in &net.nodes {
        assert_eq!(n.payloads(), vec![Bytes::from("one"), Bytes::from("two")]);
    }
}

/// FIFO messages taken in one turn leave as one frame to each member, and resends to a
/// member that lost them go as one batch too.
#[test]
fn fifo_sends_of_one_turn_share_a_frame_and_so_do_their_resends() {
    let (mut net, _) = three_settled();
    // c loses everything b sends it until the resend.
    net.drop =
        Box::new(|from, to, m| from == 1 && to == 2 && matches!(m, GroupMsg::FifoData { .. }));
    let sends = (0..20)
        .map(|k| fsend_cmd("#c#b", format!("f{k:02}").as_bytes()))
        .collect();
    one_turn(&mut net, 1, sends);
    match &on_the_way(&net, 1, 0)[..] {
        [GroupMsg::FifoData { fseq: 1, items, .. }] => assert_eq!(items.len(), 20),
        other => panic!("one FIFO batch of 20 expected, got {other:?}"),
    }
    assert_eq!(net.dropped, 1, "one frame to c, lost");
    net.drop = Box::new(|_, _, _| false);
    let before = net.nodes[1].g.stats().batches;
    net.run_until(|n| n.nodes[2].fifo_payloads().len() == 20);
    assert_eq!(
        net.nodes[1].g.stats().batches - before,
        1,
        "the tail went again as one batch"
    );
    assert_eq!(net.nodes[1].g.stats().fifo_resent, 20);
    let want: Vec<Bytes> = (0..20).map(|k| Bytes::from(format!("f{k:02}"))).collect();
    assert_eq!(per_origin(&net.nodes[2], "b"), want);
}

/// A batch holds at most `MAX_BATCH` items, whatever one turn queues: b's 1,024 sends
/// (its `MAX_PENDING`) and then a disconnection, which is never refused, are two
/// submits, and both decode (a batch of 1,025 would be refused by every peer).
#[test]
fn a_batch_closes_at_max_batch_items() {
    use super::msg::MAX_BATCH;
    let (mut net, _) = three_settled();
    assert_eq!(MAX_BATCH, MAX_PENDING);
    let mut turn: Vec<Input<GroupsCommand, crate::machine::NoEffect>> = (0..MAX_PENDING)
        .map(|k| send_cmd("#c#b", format!("m{k}").as_bytes()))
        .collect();
    turn.push(Input::Command(GroupsCommand::Disconnect {
        group: "g".into(),
        client: "#c#b".into(),
    }));
    one_turn(&mut net, 1, turn);
    let sizes = batch_sizes(&net, 1, 0, "Submit");
    assert_eq!(sizes, vec![MAX_BATCH, 1]);
}

/// A batch that holds exactly `BATCH_BYTES` of payload is full: the next item opens
/// another.
#[test]
fn a_batch_of_exactly_batch_bytes_takes_no_more() {
    let (mut net, _) = three_settled();
    let quarter = vec![b'q'; 16 * 1024];
    let sends = (0..8).map(|_| send_cmd("#c#a", &quarter)).collect();
    one_turn(&mut net, 0, sends);
    let sizes = batch_sizes(&net, 0, 1, "Order");
    assert_eq!(sizes, vec![4, 4]);
}

// ----- tails, gap requests and the acknowledgement bounds of ordered items -----

/// An order from a to b of a's data item `seq` (its `lseq` too) carrying `payload`.
fn order_with(
    v: &View,
    seq: u64,
    stable: u64,
    payload: Bytes,
) -> Input<GroupsCommand, crate::machine::NoEffect> {
    let item = Item {
        id: MsgId {
            origin: "a".into(),
            incarnation: member("a").incarnation,
            lseq: seq,
        },
        group: "g".into(),
        what: What::Data {
            sender: "#x#a".into(),
            payload,
        },
    };
    let msg = GroupMsg::Order {
        view: v.id.clone(),
        seq,
        stable,
        items: vec![item],
    };
    Input::Frame {
        from: addr(0),
        frame: msg.to_frame(),
    }
}

/// The `upto` of every `Ack` on its way; the queue is emptied.
fn take_acks(net: &mut Net) -> Vec<u64> {
    std::mem::take(&mut net.queue)
        .iter()
        .filter_map(|(_, _, fr)| match decoded(fr) {
            GroupMsg::Ack { upto, .. } => Some(upto),
            _ => None,
        })
        .collect()
}

/// A member acknowledges ordered items at once every `ACK_STRIDE` items, or once
/// `ACK_BYTES` payload bytes are unacknowledged, and not before (the clock does not move
/// here, so the acknowledgement timer never fires). (Guards `ACK_BYTES` itself, 32 KiB,
/// and `ack_if_due`.)
#[test]
fn a_member_acknowledges_orders_every_stride_and_at_the_byte_bound() {
    use super::machine::{ACK_BYTES, ACK_STRIDE};
    assert_eq!(ACK_BYTES, 32 * 1024);
    let (mut net, v1) = two_settled();
    let t = net.now;
    for seq in 1..ACK_STRIDE {
        net.input(1, order_from_a(&v1, seq, 0)).unwrap();
    }
    assert_eq!(take_acks(&mut net), [0u64; 0], "before the stride");
    net.input(1, order_from_a(&v1, ACK_STRIDE, 0)).unwrap();
    assert_eq!(take_acks(&mut net), [ACK_STRIDE], "at the stride");
    let n = ACK_STRIDE;
    // 31 items of 1 KiB wait; the 32nd reaches the byte bound.
    for k in 1..32 {
        net.input(1, order_with(&v1, n + k, 0, Bytes::from(vec![7u8; 1024])))
            .unwrap();
    }
    assert_eq!(take_acks(&mut net), [0u64; 0], "one KiB short");
    net.input(1, order_with(&v1, n + 32, 0, Bytes::from(vec![7u8; 1024])))
        .unwrap();
    assert_eq!(take_acks(&mut net), [n + 32], "at the byte bound");
    // One byte short, then the byte that reaches it.
    let short = Bytes::from(vec![1u8; ACK_BYTES - 1]);
    net.input(1, order_with(&v1, n + 33, 0, short)).unwrap();
    assert_eq!(take_acks(&mut net), [0u64; 0], "one byte short");
    net.input(1, order_with(&v1, n + 34, 0, Bytes::from_static(b"!")))
        .unwrap();
    assert_eq!(take_acks(&mut net), [n + 34], "at the byte bound");
    assert_eq!(net.now, t);
    assert_eq!(net.nodes[1].g.delivered(), n + 34);
}

/// b's item `lseq` (for submits injected as if from b).
fn item_of_b(lseq: u64) -> Item {
    Item {
        id: MsgId {
            origin: "b".into(),
            incarnation: member("b").incarnation,
            lseq,
        },
        group: "g".into(),
        what: What::Data {
            sender: "#x#b".into(),
            payload: Bytes::from(format!("b{lseq}")),
        },
    }
}

/// The sequencer sends a member's tail again from the first item it lacks (its
/// acknowledgement + 1, though the log holds older items another member still lacks),
/// never while that member's acknowledgement keeps moving, and, when the member's
/// submit comes again, at once from the same place. Every frame between daemons is lost
/// here: what reaches a is injected. (Guards `Tails::stuck`'s `seen != a || a >= last`
/// and both `a + 1`, in `stuck` and `hurry`.)
#[test]
fn a_members_tail_goes_again_from_the_first_item_it_lacks_and_not_while_it_moves() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let (mut net, v) = three_settled();
    let to_b: Rc<RefCell<Vec<u64>>> = Rc::default();
    let rec = to_b.clone();
    net.drop = Box::new(move |from, to, m| {
        if let (0, 1, GroupMsg::Order { seq, items, .. }) = (from, to, m) {
            rec.borrow_mut().extend(*seq..*seq + items.len() as u64);
        }
        true
    });
    let b = net.nodes[1].addr;
    let inject = |net: &mut Net, msg: GroupMsg| {
        net.input(
            0,
            Input::Frame {
                from: b,
                frame: msg.to_frame(),
            },
        )
        .unwrap();
    };
    let submit = |items: Vec<Item>| GroupMsg::Submit {
        view: v.id.clone(),
        floor: 1,
        items,
    };
    inject(&mut net, submit((1..=10).map(item_of_b).collect()));
    assert_eq!(*to_b.borrow(), (1..=10).collect::<Vec<_>>());
    to_b.borrow_mut().clear();
    // b acknowledges a little more every 250 ms; c never does, so the stable point stays
    // at 0 and the log holds every item.
    for upto in 1..=4 {
        net.run_for(Duration::from_millis(250));
        inject(
            &mut net,
            GroupMsg::Ack {
                view: v.id.clone(),
                upto,
            },
        );
    }
    assert_eq!(
        *to_b.borrow(),
        [0u64; 0],
        "nothing again while b's acknowledgement moves"
    );
    // Stuck at 4: after 400 ms (and the next look, every 100 ms) 5 to 10 go again.
    let resent = net.nodes[0].g.stats().resent;
    net.run_for(Duration::from_millis(600));
    assert_eq!(*to_b.borrow(), (5..=10).collect::<Vec<_>>(), "the tail");
    // Counted: six to b, and c's whole tail (it never acknowledged).
    assert_eq!(net.nodes[0].g.stats().resent - resent, 6 + 10);
    to_b.borrow_mut().clear();
    // The next repeat waits 800 ms; b's submit coming again 400 ms on brings it at once.
    net.run_for(Duration::from_millis(400));
    assert_eq!(*to_b.borrow(), [0u64; 0], "not yet");
    inject(&mut net, submit(vec![item_of_b(1)]));
    assert_eq!(
        *to_b.borrow(),
        (5..=10).collect::<Vec<_>>(),
        "the tail, at the repeated submit"
    );
}

/// A member with items past a gap asks the sequencer for the gap at its next look (every
/// 50 ms), then after 100, 200, 400, 800 ms; once delivery moves and items still wait
/// past a new gap, it asks for that one at once. Nothing from b reaches a (so nobody
/// answers). (Guards `gap_due`.)
#[test]
fn a_gap_is_asked_for_at_once_then_less_often_and_a_new_gap_at_once() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let (mut net, v1) = two_settled();
    let nacks: Rc<RefCell<Vec<u64>>> = Rc::default();
    let rec = nacks.clone();
    net.drop = Box::new(move |from, _, m| {
        if let (1, GroupMsg::Nack { from: f, .. }) = (from, m) {
            rec.borrow_mut().push(*f);
        }
        from == 1
    });
    // Steps until `until` has passed, noting when each gap request left b.
    let watch = |net: &mut Net, until: Duration| {
        let end = net.now + until;
        let mut at = Vec::new();
        while net.now < end {
            let before = nacks.borrow().len();
            net.step();
            for _ in before..nacks.borrow().len() {
                at.push(net.now);
            }
        }
        at
    };
    let t0 = net.now;
    for seq in [1, 3, 6] {
        net.input(1, order_from_a(&v1, seq, 0)).unwrap();
    }
    assert_eq!(net.nodes[1].g.delivered(), 1);
    let at = watch(&mut net, Duration::from_millis(1_700));
    assert!(
        at[0] - t0 <= Duration::from_millis(50),
        "asked at the next look"
    );
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    let ms = Duration::from_millis;
    assert_eq!(gaps, [ms(100), ms(200), ms(400), ms(800)]);
    assert!(nacks.borrow().iter().all(|f| *f == 2));
    // 2 arrives: delivery reaches 3, 6 still waits past the gap at 4.
    nacks.borrow_mut().clear();
    let t1 = net.now;
    net.input(1, order_from_a(&v1, 2, 0)).unwrap();
    assert_eq!(net.nodes[1].g.delivered(), 3);
    let at = watch(&mut net, Duration::from_millis(60));
    assert_eq!(*nacks.borrow(), [4], "the new gap, at once");
    assert!(at[0] - t1 <= Duration::from_millis(50));
}

/// An acknowledgement of the previous view that reaches the sequencer late counts for
/// nothing in the new one, where numbering started again: were it taken, the items a
/// member lacks would be forgotten as stable and never sent to it again. (Guards
/// `on_ack`'s `view != self.view.id || …`.)
#[test]
fn an_acknowledgement_of_the_previous_view_arriving_late_counts_for_nothing() {
    let (mut net, v1) = three_settled();
    let v2 = view(2, &["a", "b", "c"]);
    net.install(&v2, &[0, 1, 2]);
    net.run_until(|n| n.settled());
    net.drop = Box::new(|from, to, m| (from, to) == (0, 1) && matches!(m, GroupMsg::Order { .. }));
    for k in 1..=5u8 {
        net.input(0, send_cmd("#x#a", &[k])).unwrap();
    }
    net.run_frames();
    assert_eq!(net.nodes[1].g.delivered(), 0, "b lost every order");
    let b = net.nodes[1].addr;
    let stale = GroupMsg::Ack {
        view: v1.id.clone(),
        upto: 5,
    };
    net.input(
        0,
        Input::Frame {
            from: b,
            frame: stale.to_frame(),
        },
    )
    .unwrap();
    net.drop = Box::new(|_, _, _| false);
    net.run_for(Duration::from_secs(2));
    let want: Vec<Bytes> = (1..=5u8).map(|k| Bytes::from(vec![k])).collect();
    assert_eq!(
        net.nodes[1].payloads(),
        want,
        "b has them all, from its tail"
    );
}

/// An item of an earlier life of this daemon (same name, another incarnation) delivered
/// here does not settle this life's own pending item of the same number: that one is
/// still submitted until it is delivered. (Guards `deliver`'s `origin == me.name &&
/// incarnation == me.incarnation`.)
#[test]
fn an_item_of_an_earlier_life_does_not_settle_this_lifes_pending_item() {
    let (mut net, v1) = two_settled();
    net.drop = Box::new(|from, _, _| from == 1);
    net.input(1, send_cmd("#x#b", b"mine")).unwrap();
    net.run_frames();
    assert_eq!(net.nodes[1].g.pending(), 1);
    let mut earlier = item_of_b(1);
    earlier.id.incarnation += 1_000;
    let order = GroupMsg::Order {
        view: v1.id.clone(),
        seq: 1,
        stable: 0,
        items: vec![earlier],
    };
    net.input(
        1,
        Input::Frame {
            from: net.nodes[0].addr,
            frame: order.to_frame(),
        },
    )
    .unwrap();
    assert_eq!(
        net.nodes[1].g.delivered(),
        1,
        "the earlier life's item is delivered"
    );
    assert_eq!(net.nodes[1].g.pending(), 1, "and b's own is still pending");
}

/// A daemon whose own items keep being delivered does not submit the rest again: they
/// wait in the sequencer's queue, not lost. Once deliveries stop for the submit pace
/// (400 ms), what is left goes again. (Guards `deliver`'s count of own items delivered,
/// which `on_retry` compares.)
#[test]
fn submits_do_not_go_again_while_the_daemons_own_items_are_being_delivered() {
    let (mut net, v1) = two_settled();
    net.drop = Box::new(|from, _, _| from == 1);
    for k in 1..=5u64 {
        net.input(1, send_cmd("#x#b", format!("b{k}").as_bytes()))
            .unwrap();
    }
    net.run_frames();
    let a = net.nodes[0].addr;
    for seq in 1..=4u64 {
        net.run_for(Duration::from_millis(300));
        let order = GroupMsg::Order {
            view: v1.id.clone(),
            seq,
            stable: 0,
            items: vec![item_of_b(seq)],
        };
        net.input(
            1,
            Input::Frame {
                from: a,
                frame: order.to_frame(),
            },
        )
        .unwrap();
    }
    assert_eq!(net.nodes[1].g.pending(), 1);
    assert_eq!(net.nodes[1].g.stats().resent, 0, "nothing again meanwhile");
    net.run_for(Duration::from_millis(500));
    assert_eq!(
        net.nodes[1].g.stats().resent,
        1,
        "the one left, once stalled"
    );
}

/// An idle daemon's submit pace starts afresh with its next item: a submit that is lost
/// after a quiet spell goes again after the 400 ms wait, not at the next look. (Guards
/// `on_retry`'s `progress || pending.is_empty()`.)
#[test]
fn a_submit_after_a_quiet_spell_goes_again_only_after_the_whole_wait() {
    let (mut net, _) = two_settled();
    net.run_for(Duration::from_secs(2));
    net.drop = Box::new(|from, _, m| from == 1 && matches!(m, GroupMsg::Submit { .. }));
    net.input(1, send_cmd("#x#b", b"late")).unwrap();
    net.run_for(Duration::from_millis(300));
    assert_eq!(net.nodes[1].g.stats().resent, 0, "not yet");
    net.run_for(Duration::from_millis(150));
    assert_eq!(net.nodes[1].g.stats().resent, 1, "after the wait");
}

/// Only the view's sequencer orders: an order reaching a member from another member's
/// address is ignored, the same from the sequencer is delivered. (Guards `on_frame`'s
/// `from == sequencer && !is_sequencer()`.)
#[test]
fn an_order_from_a_member_that_is_not_the_sequencer_is_ignored() {
    let (mut net, v) = three_settled();
    let Input::Frame { frame, .. } = order_from_a(&v, 1, 0) else {
        unreachable!("order_from_a makes a frame")
    };
    let c = net.nodes[2].addr;
    net.input(
        1,
        Input::Frame {
            from: c,
            frame: frame.clone(),
        },
    )
    .unwrap();
    assert_eq!(net.nodes[1].g.delivered(), 0, "from c: ignored");
    let a = net.nodes[0].addr;
    net.input(1, Input::Frame { from: a, frame }).unwrap();
    assert_eq!(net.nodes[1].g.delivered(), 1, "from a: delivered");
}

/// A view with nothing delivered is quiet (no acknowledgements), and a member whose
/// acknowledgement is lost sends it again at its next tick, so the sequencer's stable
/// point moves (the next order carries it). (Guards `on_ack_timer`'s `delivered !=
/// last_ack || delivered > stable`.)
#[test]
fn a_quiet_view_sends_no_acknowledgements_and_a_lost_one_goes_again() {
    use std::cell::Cell;
    use std::rc::Rc;
    let (mut net, _) = two_settled();
    let acks = Rc::new(Cell::new(0u32));
    let counted = acks.clone();
    net.drop = Box::new(move |from, _, m| {
        if from == 1 && matches!(m, GroupMsg::Ack { .. }) {
            counted.set(counted.get() + 1);
            // The first is lost.
            return counted.get() == 1;
        }
        false
    });
    net.run_for(Duration::from_secs(1));
    assert_eq!(acks.get(), 0, "nothing delivered, nothing acknowledged");
    for k in 1..=3u8 {
        net.input(0, send_cmd("#x#a", &[k])).unwrap();
    }
    net.run_frames();
    assert_eq!(net.nodes[1].g.delivered(), 3);
    net.run_for(Duration::from_millis(250));
    assert!(acks.get() >= 2, "the lost acknowledgement went again");
    net.input(0, send_cmd("#x#a", b"next")).unwrap();
    let marks: Vec<u64> = on_the_way(&net, 0, 1)
        .iter()
        .filter_map(|m| match m {
            GroupMsg::Order { stable, .. } => Some(*stable),
            _ => None,
        })
        .collect();
    assert_eq!(marks, [3], "the next order carries the stable point");
}

/// While a flush runs, an acknowledgement reaching the sequencer does not have it order
/// what waits: the old view is frozen, and the waiting item goes in the new view. (Guards
/// the `flush.is_none()` before `order_ready` when an acknowledgement arrives.)
#[test]
fn an_acknowledgement_during_a_flush_orders_nothing_in_the_old_view() {
    let (mut net, v1) = two_settled();
    net.drop = Box::new(|from, to, m| {
        (from, to) == (0, 1) && matches!(m, GroupMsg::Order { .. })
            || from == 1 && matches!(m, GroupMsg::Ack { .. })
    });
    for k in 0..=WINDOW {
        net.input(0, send_cmd("#x#a", format!("m{k}").as_bytes()))
            .unwrap();
    }
    net.run_frames();
    assert_eq!(net.nodes[0].g.stats().ordered, WINDOW, "the window is full");
    let v2 = view(2, &["a", "b"]);
    net.install(&v2, &[0]);
    assert!(net.nodes[0].g.flushing());
    net.queue.clear();
    let ack = GroupMsg::Ack {
        view: v1.id.clone(),
        upto: WINDOW,
    };
    let b = net.nodes[1].addr;
    net.input(
        0,
        Input::Frame {
            from: b,
            frame: ack.to_frame(),
        },
    )
    .unwrap();
    assert_eq!(net.nodes[0].g.stats().ordered, WINDOW, "nothing ordered");
    assert!(
        !on_the_way(&net, 0, 1)
            .iter()
            .any(|m| matches!(m, GroupMsg::Order { .. })),
        "no order in the frozen view"
    );
}

/// A nack is answered only for a member of the view: at once, with what the member
/// lacks; from an address outside the view, with nothing. (Guards the `name_at(from)`
/// before `on_nack`.)
#[test]
fn a_gap_request_is_answered_for_a_member_and_not_for_a_stranger() {
    let mut net = Net::new(&["a", "b", "c"]);
    let v1 = view(1, &["a", "b"]);
    net.install(&v1, &[0, 1]);
    net.run_until(|n| n.nodes[..2].iter().all(|x| !x.g.flushing()));
    // b's acknowledgements are lost, so a keeps every item in its log.
    net.drop = Box::new(|from, _, m| from == 1 && matches!(m, GroupMsg::Ack { .. }));
    for k in 1..=3u8 {
        net.input(0, send_cmd("#x#a", &[k])).unwrap();
    }
    net.run_frames();
    let nack = GroupMsg::Nack {
        view: v1.id.clone(),
        from: 2,
    };
    // A request of another view (b's view before this one) is not served either.
    let stale = GroupMsg::Nack {
        view: ViewId {
            epoch: 0,
            ..v1.id.clone()
        },
        from: 2,
    };
    let b = net.nodes[1].addr;
    net.input(
        0,
        Input::Frame {
            from: b,
            frame: stale.to_frame(),
        },
    )
    .unwrap();
    assert!(
        on_the_way(&net, 0, 1).is_empty(),
        "a request of another view"
    );
    for (who, answered) in [(2, false), (1, true)] {
        let from = net.nodes[who].addr;
        net.input(
            0,
            Input::Frame {
                from,
                frame: nack.to_frame(),
            },
        )
        .unwrap();
        let orders: Vec<usize> = on_the_way(&net, 0, who)
            .iter()
            .filter_map(|m| match m {
                GroupMsg::Order { items, .. } => Some(items.len()),
                _ => None,
            })
            .collect();
        if answered {
            assert_eq!(orders, [2], "items 2 and 3 again, at once");
        } else {
            assert_eq!(orders, [0usize; 0], "nothing to a stranger");
        }
        net.queue.clear();
    }
}

/// A flush state counts only from the address of the member it names, and a start only
/// from the new view's sequencer: the same frames from another member's address change
/// nothing. (Guards the `FlushState` and `Start` guards of `on_frame`.)
#[test]
fn flush_states_and_starts_are_taken_only_from_their_senders() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let (mut net, _) = three_settled();
    let kept: Rc<RefCell<Vec<GroupMsg>>> = Rc::default();
    let k = kept.clone();
    net.drop = Box::new(move |from, to, m| {
        let hold = matches!(m, GroupMsg::FlushState { .. }) && from == 2
            || matches!(m, GroupMsg::Start { .. }) && to == 1;
        if hold {
            k.borrow_mut().push(m.clone());
        }
        hold
    });
    let v2 = view(2, &["a", "b", "c"]);
    net.install(&v2, &[0, 1, 2]);
    net.run_for(Duration::from_millis(300));
    assert!(net.nodes[0].g.flushing(), "c's state is missing");
    let state_of_c = kept.borrow()[0].clone();
    assert!(matches!(&state_of_c, GroupMsg::FlushState { from, .. } if from == "c"));
    let (a, b, c) = (net.nodes[0].addr, net.nodes[1].addr, net.nodes[2].addr);
    let hand = |net: &mut Net, to: usize, from, m: &GroupMsg| {
        net.input(
            to,
            Input::Frame {
                from,
                frame: m.to_frame(),
            },
        )
        .unwrap();
    };
    hand(&mut net, 0, b, &state_of_c);
    assert!(net.nodes[0].g.flushing(), "c's state from b's address");
    hand(&mut net, 0, c, &state_of_c);
    assert!(!net.nodes[0].g.flushing(), "c's state from c");
    net.run_frames();
    assert!(net.nodes[1].g.flushing(), "b's start was lost");
    let start = kept
        .borrow()
        .iter()
        .find(|m| matches!(m, GroupMsg::Start { .. }))
        .cloned()
        .expect("a start to b");
    hand(&mut net, 1, c, &start);
    assert!(net.nodes[1].g.flushing(), "a start from c's address");
    hand(&mut net, 1, a, &start);
    assert!(!net.nodes[1].g.flushing(), "the start from a");
}

/// A frame that does not decode is refused with a typed error and counted; the groups
/// machine claims its own message family (0x05) and no other. (Guards the `bad_frames`
/// count and `owns_family`.)
#[test]
fn a_bad_frame_is_counted_and_the_machine_owns_only_its_family() {
    use crate::compose::Part;
    let mut g = machine("a");
    let junk = Frame::new(crate::wire::Kind(0x057f), Bytes::from_static(b"?"));
    let r = g.handle(
        Instant::ZERO,
        Input::Frame {
            from: addr(1),
            frame: junk,
        },
    );
    assert!(r.is_err());
    assert_eq!(g.stats().bad_frames, 1);
    assert!(g.owns_family(super::msg::FAMILY));
    assert!(!g.owns_family(crate::membership::msg::FAMILY));
    assert!(!g.owns_family(crate::wire::transport::FAMILY));
}
