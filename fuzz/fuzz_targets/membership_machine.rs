//! A membership daemon fed an arbitrary sequence of peer messages (well-formed ones built
//! from the input, many of them aimed at what the daemon just sent: its proposal, its
//! probes, its gather; and raw payloads), client opens, bytes and closes, commands and
//! time advances: it must never panic, must keep its timer promise, and must stay
//! consistent (`check_invariants`) after every input.
#![no_main]

use core::net::SocketAddr;
use core::time::Duration;

use bytes::Bytes;
use flotilla_core::machine::{ClientId, ClientOrigin, Input, ListenerId, Machine, Output};
use flotilla_core::membership::msg::FAMILY;
use flotilla_core::membership::{
    ClusterConfig, Member, MemberMsg, Membership, MembershipCommand, MembershipSettings, Timing,
    View, ViewId,
};
use flotilla_core::wire::{Frame, Kind};
use flotilla_core::{Instant, Rng};
use libfuzzer_sys::fuzz_target;

/// Inputs handled per run at most.
const MAX_OPS: usize = 256;
/// Frames the daemon sent that are remembered (to answer or replay).
const MAX_SENT: usize = 64;

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4801 + i as u16))
}

/// What the fuzzer's peers know of what the daemon sent.
#[derive(Default)]
struct Seen {
    proposals: Vec<ViewId>,
    probe_nonces: Vec<u64>,
    gather_nonces: Vec<u64>,
    commits: Vec<View>,
    frames: Vec<Frame>,
}

impl Seen {
    fn note(&mut self, frame: Frame) {
        match MemberMsg::decode(&frame) {
            Ok(MemberMsg::Propose { view, .. }) => push(&mut self.proposals, view.id),
            Ok(MemberMsg::Probe { nonce } | MemberMsg::ProbeFor { nonce, .. }) => {
                push(&mut self.probe_nonces, nonce)
            }
            Ok(MemberMsg::Gather { nonce, .. }) => push(&mut self.gather_nonces, nonce),
            Ok(MemberMsg::Commit { view, .. }) => push(&mut self.commits, view),
            Ok(_) => {}
            Err(e) => panic!("the daemon sent a frame that does not decode: {e}"),
        }
        push(&mut self.frames, frame);
    }
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

struct World {
    m: Membership,
    /// Incarnations the peers currently run with (index 0 is the daemon under test,
    /// whose own incarnation is used when `real_me` is asked for).
    inc: [u64; NAMES.len()],
}

impl World {
    /// Peer `i` as it runs now; for index 0 the daemon itself, or an impostor.
    fn member(&self, i: usize, real_me: bool) -> Member {
        let i = i % NAMES.len();
        if i == 0 && real_me {
            return self.m.me().clone();
        }
        Member {
            name: NAMES[i].to_string(),
            incarnation: self.inc[i],
            addr: addr(i),
        }
    }

    /// Members picked by the bits of `mask`, sorted by name, with the daemon itself in
    /// when `with_me`.
    fn members(&self, mask: u8, with_me: bool) -> Vec<Member> {
        let mut out = Vec::new();
        for i in 0..NAMES.len() {
            if (i == 0 && with_me) || (i > 0 && mask & (1 << i) != 0) {
                out.push(self.member(i, true));
            }
        }
        out
    }

    /// A view id near the daemon's own, picked by `k`.
    fn id(&self, k: u8, b: &mut Body<'_>) -> ViewId {
        let base = self.m.view().id.epoch;
        let epoch = match k % 4 {
            0 => base,
            1 => base + 1 + b.u64() % 4,
            2 => base.saturating_sub(b.u64() % 3),
            _ => b.u64(),
        };
        let c = usize::from(b.u8()) % NAMES.len();
        ViewId {
            epoch,
            coordinator: NAMES[c].to_string(),
            incarnation: self.member(c, true).incarnation,
        }
    }

    fn view(&self, arg: u8, b: &mut Body<'_>) -> View {
        let mut id = self.id(arg >> 4, b);
        let mask = b.u8();
        let members = self.members(mask, arg & 1 == 0);
        // Mostly a coordinator that is in the view (a proposal from outside is dropped).
        if arg & 2 == 0
            && let Some(first) = members.first()
        {
            id.coordinator = first.name.clone();
            id.incarnation = first.incarnation;
        }
        let basis: Vec<String> = match b.u8() % 3 {
            0 => Vec::new(),
            1 => members.iter().map(|m| m.name.clone()).collect(),
            _ => NAMES[..3].iter().map(|n| n.to_string()).collect(),
        };
        View {
            id,
            primary: arg & 4 != 0,
            basis,
            config_version: b.u64() % 3,
            members,
        }
    }

    fn config(&self, b: &mut Body<'_>) -> ClusterConfig {
        let mask = b.u8();
        let daemons = (0..NAMES.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| (NAMES[i].to_string(), addr(i)))
            .collect();
        let timing = match b.u8() % 4 {
            0 => Timing::default(),
            1 => Timing {
                heartbeat: Duration::from_millis(10),
                suspect_after: Duration::from_millis(40),
                verify_for: Duration::from_millis(30),
                retry: Duration::from_millis(5),
                ack_timeout: Duration::from_millis(30),
                commit_timeout: Duration::from_millis(100),
                hello: Duration::from_millis(100),
            },
            // Timings a file would refuse (a peer may still send them).
            2 => Timing {
                heartbeat: Duration::from_micros(1 + b.u64() * 1000),
                suspect_after: Duration::from_micros(1 + b.u64() * 1000),
                verify_for: Duration::from_micros(1 + b.u64() * 1000),
                retry: Duration::from_micros(1 + b.u64() * 1000),
                ack_timeout: Duration::from_micros(1 + b.u64() * 1000),
                commit_timeout: Duration::from_micros(1 + b.u64() * 1000),
                hello: Duration::from_micros(1 + b.u64() * 1000),
            },
            _ => Timing {
                heartbeat: Duration::from_millis(50),
                ..Timing::default()
            },
        };
        let rm = b.u8();
        let removed = (0..NAMES.len())
            .filter(|i| rm & (1 << i) != 0)
            .map(|i| NAMES[i].to_string())
            .collect();
        ClusterConfig {
            version: b.u64() % 4,
            daemons,
            timing,
            removed,
        }
    }
}

fn client_origin() -> ClientOrigin {
    ClientOrigin::tcp(ListenerId(0), "127.0.0.1:40000".parse().unwrap(), addr(0))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut settings = MembershipSettings::new("a", addr(0));
    match mode % 4 {
        // Alone, formed by flags: the first daemon of a cluster.
        0 => {}
        // Joining through a seed.
        1 => settings.join = vec![addr(1)],
        // A file listing three daemons.
        2 => {
            settings.config.daemons = (0..3).map(|i| (NAMES[i].to_string(), addr(i))).collect();
        }
        // Listing three, with fast timings and a short line limit.
        _ => {
            settings.config.daemons = (0..3).map(|i| (NAMES[i].to_string(), addr(i))).collect();
            settings.config.timing = Timing {
                heartbeat: Duration::from_millis(10),
                suspect_after: Duration::from_millis(40),
                verify_for: Duration::from_millis(30),
                retry: Duration::from_millis(5),
                ack_timeout: Duration::from_millis(30),
                commit_timeout: Duration::from_millis(100),
                hello: Duration::from_millis(100),
            };
            settings.max_line = 32;
        }
    }
    let mut now = Instant::ZERO;
    let m = Membership::new(settings, now, Rng::from_seed(u64::from(mode >> 2)));
    let mut w = World {
        m,
        inc: [1, 11, 21, 31, 41],
    };
    let mut seen = Seen::default();
    let mut ops = 0;
    loop {
        drain(&mut w.m, &mut seen);
        if rest.len() < 3 || ops >= MAX_OPS {
            break;
        }
        ops += 1;
        let (op, arg, len) = (rest[0], rest[1], usize::from(rest[2]));
        let body = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[(3 + len).min(rest.len())..];
        let mut b = Body { b: body, at: 0 };
        // A little time passes before every input; timers that came due fire first, as
        // a driver would fire them.
        now += Duration::from_millis(u64::from(op >> 5) * 3);
        if w.m.poll_timeout().is_some_and(|t| t <= now) {
            w.m.handle_timeout(now);
            if let Some(t) = w.m.poll_timeout() {
                assert!(t > now, "a timer at or before now after handle_timeout");
            }
            drain(&mut w.m, &mut seen);
        }
        let p = 1 + usize::from(arg) % (NAMES.len() - 1);
        let from = addr(p);
        let peer = w.member(p, true);
        let msg = match op % 24 {
            0 => Some(MemberMsg::Heartbeat {
                view: w.id(arg >> 4, &mut b),
                from: peer,
            }),
            1 => Some(MemberMsg::Report {
                view: w.id(arg >> 4, &mut b),
                suspects: w
                    .members(b.u8(), arg & 8 != 0)
                    .into_iter()
                    .map(|m| m.name)
                    .collect(),
            }),
            2 => Some(MemberMsg::ReportAck {
                view: w.id(arg >> 4, &mut b),
            }),
            3 => Some(MemberMsg::Probe { nonce: b.u64() }),
            4 => Some(MemberMsg::ProbeFor {
                nonce: b.u64(),
                target: w.member(usize::from(b.u8()), arg & 8 != 0),
            }),
            5 => Some(MemberMsg::ProbeAck {
                nonce: pick(&seen.probe_nonces, b.u8()).unwrap_or(b.u64()),
                from: w.member(usize::from(b.u8()), arg & 8 != 0),
            }),
            6 => Some(MemberMsg::Gather {
                nonce: b.u64(),
                view: w.id(arg >> 4, &mut b),
            }),
            7 => Some(MemberMsg::Here {
                nonce: pick(&seen.gather_nonces, b.u8()).unwrap_or(b.u64()),
                from: peer,
                view: w.id(arg >> 4, &mut b),
            }),
            8 => Some(MemberMsg::Elect {
                members: w.members(b.u8(), arg & 8 == 0),
                epoch: b.u64(),
            }),
            9 => {
                let view = w.view(arg, &mut b);
                let config = (b.u8() % 4 == 0).then(|| w.config(&mut b));
                Some(MemberMsg::Propose { view, config })
            }
            10 => {
                let id = pick(&seen.proposals, b.u8()).unwrap_or_else(|| w.id(arg >> 4, &mut b));
                let last_primary = if arg & 8 == 0 {
                    ViewId::default()
                } else {
                    w.id(arg >> 4, &mut b)
                };
                let basis = w
                    .members(b.u8(), true)
                    .into_iter()
                    .map(|m| m.name)
                    .collect();
                Some(MemberMsg::Ack {
                    id,
                    from: peer,
                    last_primary,
                    basis,
                })
            }
            11 => {
                let id = pick(&seen.proposals, b.u8()).unwrap_or_else(|| w.id(arg >> 4, &mut b));
                Some(MemberMsg::Nack {
                    id,
                    higher: w.id(b.u8(), &mut b),
                })
            }
            12 => {
                let view = w.view(arg, &mut b);
                let config = (b.u8() % 4 == 0).then(|| w.config(&mut b));
                Some(MemberMsg::Commit { view, config })
            }
            13 => {
                // A peer restarts now and then (a new incarnation), then asks to join.
                if arg & 8 != 0 {
                    w.inc[p] += 1;
                }
                Some(MemberMsg::Join {
                    member: w.member(if arg & 16 != 0 { 0 } else { p }, false),
                })
            }
            // Refusals stop the daemon: rarer than the rest.
            14 if arg % 8 == 0 => Some(MemberMsg::Refuse {
                reason: String::from_utf8_lossy(b.rest()).into_owned(),
            }),
            14 => Some(MemberMsg::Leave {
                member: w.member(usize::from(b.u8()), false),
            }),
            15 => Some(MemberMsg::Hello {
                view: w.id(arg >> 4, &mut b),
                from: peer,
                size: u32::from(b.u8()),
            }),
            16 => Some(MemberMsg::ViewReq { from: peer }),
            17 => {
                let view = w.view(arg, &mut b);
                let config = w.config(&mut b);
                Some(MemberMsg::ViewState { view, config })
            }
            18 => Some(MemberMsg::Reload {
                config: w.config(&mut b),
            }),
            19 => {
                // What the daemon sent, back from a peer (a commit echoed, a proposal of
                // its own, a probe of its own...).
                if let Some(frame) = pick(&seen.frames, b.u8()) {
                    let _ = w.m.handle(now, Input::Frame { from, frame });
                } else if let Some(view) = pick(&seen.commits, b.u8()) {
                    let _ = w.m.handle(
                        now,
                        Input::Frame {
                            from,
                            frame: MemberMsg::Commit { view, config: None }.to_frame(),
                        },
                    );
                }
                None
            }
            20 => {
                // A raw payload, of this family or (rarely) another.
                let fam = if arg & 0x80 != 0 && arg & 0x40 != 0 {
                    arg & 0x0f
                } else {
                    FAMILY
                };
                let kind = Kind(u16::from(fam) << 8 | u16::from(b.u8() % 24));
                let frame = Frame::new(kind, Bytes::copy_from_slice(b.rest()));
                let _ = w.m.handle(now, Input::Frame { from, frame });
                None
            }
            21 => {
                let client = ClientId(u64::from(arg % 4));
                let input = match (arg >> 2) % 4 {
                    0 => Input::ClientOpened {
                        client,
                        origin: client_origin(),
                    },
                    1 => Input::ClientClosed(client),
                    2 => {
                        let words = [
                            "members\r\n",
                            "help\n",
                            "reload\n",
                            "quit\n",
                            "members x\n",
                            "nope\n",
                            "\n",
                        ];
                        let word = words[usize::from(b.u8()) % words.len()];
                        Input::ClientData(client, Bytes::from_static(word.as_bytes()))
                    }
                    _ => Input::ClientData(client, Bytes::copy_from_slice(b.rest())),
                };
                let _ = w.m.handle(now, input);
                None
            }
            22 => {
                let cmd = if arg % 8 == 0 {
                    MembershipCommand::Leave
                } else {
                    MembershipCommand::Reload(w.config(&mut b))
                };
                let _ = w.m.handle(now, Input::Command(cmd));
                None
            }
            _ => {
                // Time passes: up to the next deadline, or a jump of up to ~2.5 s.
                now = match (arg & 1, w.m.poll_timeout()) {
                    (0, Some(t)) if t > now => t,
                    _ => now + Duration::from_millis(u64::from(arg) * 10),
                };
                w.m.handle_timeout(now);
                if let Some(t) = w.m.poll_timeout() {
                    assert!(t > now, "a timer at or before now after handle_timeout");
                }
                None
            }
        };
        if let Some(msg) = msg {
            let _ = w.m.handle(
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
fn drain(m: &mut Membership, seen: &mut Seen) {
    while let Some(out) = m.poll_output() {
        if let Output::Transmit(t) = out {
            assert_ne!(t.to, addr(0), "the daemon sent a frame to itself");
            seen.note(t.frame);
        }
    }
    if let Err(e) = m.check_invariants() {
        panic!("inconsistent after an input: {e}");
    }
}
