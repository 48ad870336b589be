//! One client-groups daemon ("b", so that "a" orders every view holding both; now and
//! then "a" itself) fed an arbitrary sequence of views, peer messages (well-formed ones
//! built from the input, many aimed at what the daemon just sent: flush requests for its
//! flush view, flush states, starts, orders, acks, nacks, submits; its own frames played
//! back; raw payloads), client joins, leaves and sends (some with bad names or oversized
//! payloads) and time advances: it must never panic, every frame it sends must decode,
//! and it must stay consistent (`check_invariants`) after every input.
#![no_main]

use core::net::SocketAddr;
use core::time::Duration;

use bytes::Bytes;
use flotilla_core::Instant;
use flotilla_core::groups::msg::{FAMILY, MAX_PAYLOAD};
use flotilla_core::groups::{GroupMsg, Groups, GroupsCommand, GroupsSettings, Item, MsgId, What};
use flotilla_core::machine::{Input, Machine, Output};
use flotilla_core::membership::{Member, View, ViewId};
use flotilla_core::wire::{Frame, Kind};
use libfuzzer_sys::fuzz_target;

/// Inputs handled per run at most.
const MAX_OPS: usize = 256;
/// Orders only ever come from a view's sequencer. When true, orders for a view the
/// daemon orders itself are left out. The machine now refuses orders from anyone but the
/// sequencer (input `KPb3Cg==` found that it did not), so forged ones are fed too.
const HONEST_ORDERS_ONLY: bool = false;
/// Things the daemon sent that are remembered (to answer or replay).
const MAX_SENT: usize = 64;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const GROUPS: [&str; 3] = ["g", "h", "#k"];
const CLIENTS: [&str; 3] = ["#x#b", "#y#b", "#z#c"];
const BAD: [&str; 4] = [
    "",
    "a b",
    "\u{7f}",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4901 + i as u16))
}

fn push<T>(v: &mut Vec<T>, x: T) {
    if v.len() >= MAX_SENT {
        v.remove(0);
    }
    v.push(x);
}

fn pick<T: Clone>(v: &[T], k: u8) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        Some(v[usize::from(k) % v.len()].clone())
    }
}

/// Reads bytes of the body in turn; past its end, zeros.
struct Body<'a> {
    b: &'a [u8],
    at: usize,
}

impl Body<'_> {
    fn u8(&mut self) -> u8 {
        let v = self.b.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        v
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u8())
    }
    fn rest(&self) -> &[u8] {
        &self.b[self.at.min(self.b.len())..]
    }
}

/// What the fuzzer's peers know of what the daemon sent.
#[derive(Default)]
struct Seen {
    /// Views the daemon asked flush states for (it is their sequencer).
    flush_reqs: Vec<ViewId>,
    /// Views the daemon answered a flush request for, with the view it came from.
    flush_states: Vec<(ViewId, ViewId)>,
    /// Views the daemon started (as sequencer).
    starts: Vec<ViewId>,
    /// Items it submitted or ordered.
    items: Vec<Item>,
    /// Highest order number it sent.
    top_order: u64,
    /// Highest FIFO number it sent.
    top_fifo: u64,
    frames: Vec<Frame>,
}

impl Seen {
    fn note(&mut self, frame: Frame) {
        match GroupMsg::decode(&frame) {
            Ok(GroupMsg::FlushReq { view }) => push(&mut self.flush_reqs, view),
            Ok(GroupMsg::FlushState { view, old, .. }) => push(&mut self.flush_states, (view, old)),
            Ok(GroupMsg::Start { view, .. }) => push(&mut self.starts, view),
            Ok(GroupMsg::Submit { items, .. }) => {
                items.into_iter().for_each(|i| push(&mut self.items, i))
            }
            Ok(GroupMsg::Order { seq, items, .. }) => {
                self.top_order = self
                    .top_order
                    .max(seq.saturating_add(items.len() as u64 - 1));
                items.into_iter().for_each(|i| push(&mut self.items, i));
            }
            Ok(GroupMsg::FifoData { fseq, items, .. }) => {
                self.top_fifo = self
                    .top_fifo
                    .max(fseq.saturating_add(items.len() as u64 - 1));
                items.into_iter().for_each(|i| push(&mut self.items, i));
            }
            Ok(
                GroupMsg::Ack { .. }
                | GroupMsg::Nack { .. }
                | GroupMsg::FifoAck { .. }
                | GroupMsg::FifoNack { .. }
                | GroupMsg::FifoStable { .. },
            ) => {}
            Err(e) => panic!("the daemon sent a frame that does not decode: {e}"),
        }
        push(&mut self.frames, frame);
    }
}

struct World {
    g: Groups,
    /// Index of the daemon under test in `NAMES`.
    me: usize,
    inc: [u64; NAMES.len()],
    /// Highest epoch handed to the daemon.
    epoch: u64,
    /// Views handed to the daemon.
    views: Vec<View>,
    /// Next lseq per peer origin.
    lseq: [u64; NAMES.len()],
}

impl World {
    fn member(&self, i: usize) -> Member {
        let i = i % NAMES.len();
        Member {
            name: NAMES[i].to_string(),
            incarnation: self.inc[i],
            addr: addr(i),
        }
    }

    /// A view of the daemon and the peers picked by `mask`.
    fn view(&mut self, arg: u8, b: &mut Body<'_>) -> View {
        let mask = b.u8();
        let members: Vec<Member> = (0..NAMES.len())
            .filter(|i| *i == self.me || mask & (1 << i) != 0)
            .map(|i| self.member(i))
            .collect();
        let epoch = match (arg >> 4) % 8 {
            // Mostly growing; sometimes a jump, an equal or an older one.
            0..=4 => self.epoch + 1,
            5 => self.epoch + 1 + b.u64() % 8,
            6 => self.epoch,
            _ => self.epoch.saturating_sub(1 + b.u64() % 3),
        };
        self.epoch = self.epoch.max(epoch);
        let coord = if arg & 8 == 0 {
            members[0].clone()
        } else {
            self.member(usize::from(b.u8()))
        };
        View {
            id: ViewId {
                epoch,
                coordinator: coord.name,
                incarnation: coord.incarnation,
            },
            primary: arg & 4 != 0,
            basis: members.iter().map(|m| m.name.clone()).collect(),
            config_version: 0,
            members,
        }
    }

    /// A view id the daemon knows (its own, its flush's, one handed to it) or a stray one.
    fn id(&self, k: u8, b: &mut Body<'_>) -> ViewId {
        match k % 4 {
            0 | 1 => self.g.view().id.clone(),
            2 => pick(&self.views, b.u8()).map_or_else(|| self.g.view().id.clone(), |v| v.id),
            _ => {
                let c = usize::from(b.u8()) % NAMES.len();
                ViewId {
                    epoch: b.u64() % (self.epoch + 2),
                    coordinator: NAMES[c].to_string(),
                    incarnation: self.inc[c],
                }
            }
        }
    }

    /// A batch of one to three plausible items.
    fn items(&mut self, b: &mut Body<'_>, seen: &Seen) -> Vec<Item> {
        let n = 1 + usize::from(b.u8() % 3);
        (0..n).map(|_| self.item(b.u8(), b, seen)).collect()
    }

    /// A plausible item: a peer's (or the daemon's own) next one, or one seen.
    fn item(&mut self, k: u8, b: &mut Body<'_>, seen: &Seen) -> Item {
        if k & 3 == 3
            && let Some(it) = pick(&seen.items, b.u8())
        {
            return it;
        }
        let o = usize::from(b.u8()) % NAMES.len();
        let lseq = if k & 4 == 0 {
            self.lseq[o] += 1;
            self.lseq[o]
        } else {
            b.u64() % 8
        };
        let group = GROUPS[usize::from(b.u8()) % GROUPS.len()].to_string();
        let who = CLIENTS[usize::from(b.u8()) % CLIENTS.len()].to_string();
        let what = match b.u8() % 4 {
            0 => What::Join { client: who },
            1 => What::Leave { client: who },
            _ => What::Data {
                sender: who,
                payload: Bytes::copy_from_slice(&b.rest()[..b.rest().len().min(8)]),
            },
        };
        Item {
            id: MsgId {
                origin: NAMES[o].to_string(),
                incarnation: self.inc[o],
                lseq,
            },
            group,
            what,
        }
    }

    fn numbered(&mut self, n: u8, base: u64, b: &mut Body<'_>, seen: &Seen) -> Vec<(u64, Item)> {
        (0..u64::from(n % 5))
            .map(|i| {
                let k = b.u8();
                (base + i + u64::from(k >> 6), self.item(k, b, seen))
            })
            .collect()
    }

    /// Whether the daemon itself orders in `view` (no honest peer sends it orders there:
    /// see the note at `HONEST_ORDERS_ONLY`).
    fn orders_in(&self, view: &ViewId) -> bool {
        let me = NAMES[self.me];
        if *view == self.g.view().id {
            return self.g.view().members[0].name == me;
        }
        self.views
            .iter()
            .any(|v| v.id == *view && v.members[0].name == me)
    }

    fn name(&self, k: u8) -> String {
        if k % 16 == 0 {
            BAD[usize::from(k >> 4) % BAD.len()].to_string()
        } else {
            CLIENTS[usize::from(k) % CLIENTS.len()].to_string()
        }
    }

    fn group(&self, k: u8) -> String {
        if k % 16 == 0 {
            BAD[usize::from(k >> 4) % BAD.len()].to_string()
        } else {
            GROUPS[usize::from(k) % GROUPS.len()].to_string()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let me = if mode & 1 == 0 { 1 } else { 0 };
    let inc = [1, 2, 3, 4];
    let mut now = Instant::ZERO;
    let member = Member {
        name: NAMES[me].to_string(),
        incarnation: inc[me],
        addr: addr(me),
    };
    let g = Groups::new(
        GroupsSettings {
            me: member,
            canary_deliver_early: false,
        },
        now,
    );
    let mut w = World {
        g,
        me,
        inc,
        epoch: 0,
        views: Vec::new(),
        lseq: [0; NAMES.len()],
    };
    let mut seen = Seen::default();
    let mut ops = 0;
    loop {
        drain(&mut w.g, &mut seen, me);
        if rest.len() < 3 || ops >= MAX_OPS {
            break;
        }
        ops += 1;
        let (op, arg, len) = (rest[0], rest[1], usize::from(rest[2]));
        let body = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[(3 + len).min(rest.len())..];
        let mut b = Body { b: body, at: 0 };
        // A little time passes before every input; timers that came due fire first.
        now += Duration::from_millis(u64::from(op >> 5) * 7);
        if w.g.poll_timeout().is_some_and(|t| t <= now) {
            w.g.handle_timeout(now);
            if let Some(t) = w.g.poll_timeout() {
                assert!(t > now, "a timer at or before now after handle_timeout");
            }
            drain(&mut w.g, &mut seen, me);
        }
        // The peer a message comes from: mostly the sequencer of the daemon's view (or
        // of its latest view), else anyone.
        let p = match arg & 3 {
            0 => usize::from(arg >> 2) % NAMES.len(),
            1 => pick(&w.views, 0xff).map_or(0, |v| {
                NAMES
                    .iter()
                    .position(|n| *n == v.members[0].name)
                    .unwrap_or(0)
            }),
            _ => NAMES
                .iter()
                .position(|n| *n == w.g.view().members[0].name)
                .unwrap_or(0),
        };
        let from = addr(p);
        let msg = match op % 16 {
            0 | 1 => {
                let v = w.view(arg, &mut b);
                push(&mut w.views, v.clone());
                let _ = w.g.handle(now, Input::Command(GroupsCommand::View(v)));
                None
            }
            2 => {
                // A new sequencer asks for the daemon's state.
                let view = pick(&w.views, b.u8()).map_or_else(|| w.id(arg, &mut b), |v| v.id);
                let seqr = pick(&w.views, 0xff).map_or(p, |v| {
                    NAMES
                        .iter()
                        .position(|n| *n == v.members[0].name)
                        .unwrap_or(p)
                });
                let _ = w.g.handle(
                    now,
                    Input::Frame {
                        from: addr(seqr),
                        frame: GroupMsg::FlushReq { view }.to_frame(),
                    },
                );
                None
            }
            3 => {
                // A member answers the daemon's flush request.
                let view = pick(&seen.flush_reqs, b.u8()).unwrap_or_else(|| w.id(arg >> 2, &mut b));
                let old = if arg & 0x40 == 0 {
                    w.g.view().id.clone()
                } else {
                    w.id(b.u8(), &mut b)
                };
                let upto = match b.u8() % 4 {
                    0 => 0,
                    1 => seen.top_order,
                    _ => b.u64() % 8,
                };
                let n = b.u8();
                let held = w.numbered(n, upto.saturating_sub(2) + 1, &mut b, &seen);
                let locals = (0..b.u8() % 3)
                    .map(|i| (GROUPS[usize::from(i)].to_string(), CLIENTS[2].to_string()))
                    .collect();
                let q = 1 + usize::from(b.u8()) % (NAMES.len() - 1);
                let q = (me + q) % NAMES.len();
                let fifo = (0..b.u8() % 3)
                    .map(|_| {
                        let o = NAMES[usize::from(b.u8()) % NAMES.len()].to_string();
                        let upto = b.u64() % 8;
                        let n = b.u8();
                        (o, upto, w.numbered(n, 1, &mut b, &seen))
                    })
                    .collect();
                Some((
                    addr(q),
                    GroupMsg::FlushState {
                        view,
                        old,
                        upto,
                        held,
                        locals,
                        from: NAMES[q].to_string(),
                        fifo,
                    },
                ))
            }
            4 => {
                // The sequencer of a view starts it.
                let (view, seqr) = match pick(&w.views, b.u8()) {
                    Some(v) if arg & 0x80 == 0 => {
                        let s = NAMES
                            .iter()
                            .position(|n| *n == v.members[0].name)
                            .unwrap_or(0);
                        (v.id, s)
                    }
                    _ => (w.id(arg >> 2, &mut b), p),
                };
                let nf = b.u8() % 3;
                let mut fills = Vec::new();
                for i in 0..nf {
                    let old = if i == 0 {
                        w.g.view().id.clone()
                    } else {
                        w.id(b.u8(), &mut b)
                    };
                    let hi = match b.u8() % 3 {
                        0 => seen.top_order,
                        _ => b.u64() % 10,
                    };
                    let n = b.u8();
                    let items = w.numbered(n, hi.saturating_sub(3) + 1, &mut b, &seen);
                    fills.push((old, hi, items));
                }
                let table = (0..b.u8() % 4)
                    .map(|_| {
                        let k = b.u8();
                        (
                            GROUPS[usize::from(k) % GROUPS.len()].to_string(),
                            CLIENTS[usize::from(k >> 2) % CLIENTS.len()].to_string(),
                            NAMES[usize::from(k >> 4) % NAMES.len()].to_string(),
                        )
                    })
                    .collect();
                let fifo = (0..b.u8() % 3)
                    .map(|_| {
                        let old = w.g.view().id.clone();
                        let o = NAMES[usize::from(b.u8()) % NAMES.len()].to_string();
                        let hi = b.u64() % 8;
                        let n = b.u8();
                        (old, o, hi, w.numbered(n, 1, &mut b, &seen))
                    })
                    .collect();
                Some((
                    addr(seqr),
                    GroupMsg::Start {
                        view,
                        fills,
                        table,
                        fifo,
                    },
                ))
            }
            5 | 6 => {
                // An order from the sequencer, near what is delivered.
                let view = w.id(arg >> 2, &mut b);
                let seq = match b.u8() % 4 {
                    0 => seen.top_order + 1,
                    1 => seen.top_order,
                    _ => b.u64() % 16,
                };
                let stable = match b.u8() % 3 {
                    0 => 0,
                    1 => seq.saturating_sub(1),
                    _ => b.u64() % 16,
                };
                let items = w.items(&mut b, &seen);
                seen.top_order = seen
                    .top_order
                    .max(seq.saturating_add(items.len() as u64 - 1));
                if HONEST_ORDERS_ONLY && w.orders_in(&view) {
                    None
                } else {
                    Some((
                        from,
                        GroupMsg::Order {
                            view,
                            seq,
                            stable,
                            items,
                        },
                    ))
                }
            }
            7 => {
                let view = w.id(arg >> 2, &mut b);
                let upto = if b.u8() % 2 == 0 {
                    seen.top_order
                } else {
                    b.u64() % 16
                };
                Some((from, GroupMsg::Ack { view, upto }))
            }
            8 => {
                // A gap request, or the FIFO mode's messages from a peer.
                let view = w.id(arg >> 2, &mut b);
                let n = match b.u8() % 3 {
                    0 => seen.top_fifo + 1,
                    1 => seen.top_fifo,
                    _ => b.u64() % 16,
                };
                match b.u8() % 5 {
                    0 => Some((from, GroupMsg::Nack { view, from: n })),
                    1 => Some((from, GroupMsg::FifoAck { view, upto: n })),
                    2 => Some((from, GroupMsg::FifoNack { view, from: n })),
                    3 => Some((from, GroupMsg::FifoStable { view, upto: n })),
                    _ => {
                        // Mostly from the item's own origin, as the protocol has it.
                        let items = w.items(&mut b, &seen);
                        let o = NAMES
                            .iter()
                            .position(|x| *x == items[0].id.origin)
                            .unwrap_or(0);
                        let at = if arg & 0x40 == 0 { addr(o) } else { from };
                        Some((
                            at,
                            GroupMsg::FifoData {
                                view,
                                fseq: n,
                                stable: b.u64() % 8,
                                items,
                            },
                        ))
                    }
                }
            }
            9 => {
                let view = w.id(arg >> 2, &mut b);
                let items = w.items(&mut b, &seen);
                let floor = if b.u8() % 2 == 0 {
                    items[0].id.lseq
                } else {
                    b.u64() % 8
                };
                let o = NAMES
                    .iter()
                    .position(|n| *n == items[0].id.origin)
                    .unwrap_or(0);
                Some((addr(o), GroupMsg::Submit { view, floor, items }))
            }
            10 => {
                // What the daemon sent, back from a peer.
                if let Some(frame) = pick(&seen.frames, b.u8()) {
                    let own_order = matches!(GroupMsg::decode(&frame), Ok(GroupMsg::Order { view, .. }) if w.orders_in(&view));
                    if !(HONEST_ORDERS_ONLY && own_order) {
                        let _ = w.g.handle(now, Input::Frame { from, frame });
                    }
                }
                None
            }
            11 => {
                // A raw payload, of this family or (rarely) another.
                let fam = if arg & 0xc0 == 0xc0 {
                    arg & 0x0f
                } else {
                    FAMILY
                };
                let kind = Kind(u16::from(fam) << 8 | u16::from(b.u8() % 14));
                let frame = Frame::new(kind, Bytes::copy_from_slice(b.rest()));
                let _ = w.g.handle(now, Input::Frame { from, frame });
                None
            }
            12 | 13 => {
                let group = w.group(b.u8());
                let cmd = match arg % 4 {
                    0 => GroupsCommand::Join {
                        group,
                        client: w.name(b.u8()),
                    },
                    1 => GroupsCommand::Leave {
                        group,
                        client: w.name(b.u8()),
                    },
                    2 => GroupsCommand::SendFifo {
                        group,
                        sender: w.name(b.u8()),
                        payload: Bytes::copy_from_slice(b.rest()),
                    },
                    _ => {
                        let sender = w.name(b.u8());
                        let payload = if b.u8() == 0xff {
                            Bytes::from(vec![0u8; MAX_PAYLOAD + 1 + usize::from(b.u8())])
                        } else {
                            Bytes::copy_from_slice(b.rest())
                        };
                        GroupsCommand::Send {
                            group,
                            sender,
                            payload,
                        }
                    }
                };
                let _ = w.g.handle(now, Input::Command(cmd));
                None
            }
            _ => {
                // Time passes: up to the next deadline, or a jump of up to ~2.5 s.
                now = match (arg & 1, w.g.poll_timeout()) {
                    (0, Some(t)) if t > now => t,
                    _ => now + Duration::from_millis(u64::from(arg) * 10),
                };
                w.g.handle_timeout(now);
                if let Some(t) = w.g.poll_timeout() {
                    assert!(t > now, "a timer at or before now after handle_timeout");
                }
                None
            }
        };
        if let Some((from, msg)) = msg {
            let _ = w.g.handle(
                now,
                Input::Frame {
                    from,
                    frame: msg.to_frame(),
                },
            );
        }
    }
});

/// Drains what the last input produced, remembering what was sent, and checks the
/// daemon's consistency.
fn drain(g: &mut Groups, seen: &mut Seen, me: usize) {
    while let Some(out) = g.poll_output() {
        if let Output::Transmit(t) = out {
            assert_ne!(t.to, addr(me), "the daemon sent a frame to itself");
            seen.note(t.frame);
        }
    }
    if let Err(e) = g.check_invariants() {
        panic!("inconsistent after an input: {e}");
    }
}
