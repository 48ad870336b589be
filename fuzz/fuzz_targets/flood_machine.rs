//! A flood site fed an arbitrary sequence of peer messages (well-formed ones built from
//! the input, and raw payloads), client bytes, client opens and closes, effect outcomes
//! and timer firings: it must never panic, must keep its timer promise, must stay within
//! its storage bound, and must stay consistent (`check_invariants`) after every input.
#![no_main]

use bytes::Bytes;
use flotilla_core::flood::config::FloodConfig;
use flotilla_core::flood::msg::{DigestEntry, FAMILY, FloodMsg, StartEntry};
use flotilla_core::flood::{Flood, FloodEffectValue, FloodSettings};
use flotilla_core::machine::{
    ClientId, ClientOrigin, EffectError, EffectId, Input, ListenerId, Machine, PeerAddr,
};
use flotilla_core::wire::{Frame, Kind};
use flotilla_core::{Instant, Rng};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = "
(:site-define (:site-name a) (:inet-address 10.0.0.1) (:client-port 7001) (:data-port 7000))
(:site-define (:site-name b) (:inet-address 10.0.0.2) (:client-port 7001) (:data-port 7000))
(:site-define (:site-name c) (:inet-address 10.0.0.3) (:client-port 7001) (:data-port 7000))
(:group-define (:group-name g) (:site a) (:site b) (:site c) (:master-site a) (:digest-period 0.1))
(:local (:export-command cat) (:data-storage-max 4096) (:log-purge-period 5))
";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let cfg = FloodConfig::parse(CONFIG).unwrap();
    let me = ["a", "b", "c"][usize::from(mode % 3)];
    let settings = FloodSettings::from_config(&cfg, me, &mut |_| None).unwrap();
    let sites = settings.sites.clone();
    let mut m = Flood::new(settings, Instant::ZERO, Rng::from_seed(u64::from(mode)));
    let mut now = Instant::ZERO;
    let names = ["a", "b", "c"];
    while rest.len() >= 3 {
        let (op, arg, len) = (rest[0], rest[1], usize::from(rest[2]));
        let body = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[(3 + len).min(rest.len())..];
        now = now + std::time::Duration::from_millis(u64::from(arg) * 7);
        let from: PeerAddr = sites[usize::from(arg % 3)].data;
        let origin = names[usize::from(arg >> 6) % 3].to_string();
        let n = |i: usize| u64::from(*body.get(i).unwrap_or(&1)).max(1);
        let client = ClientId(u64::from(arg % 4));
        let msg = match op % 13 {
            0 => None,
            1 => Some(FloodMsg::Update {
                group: "g".into(),
                origin,
                incarnation: u64::from(arg % 2),
                seq: n(0),
                data: Bytes::copy_from_slice(body),
                pulled: arg & 1 == 1,
            }),
            2 => Some(FloodMsg::Digest {
                group: "g".into(),
                full: arg & 1 == 1,
                want_full: arg & 2 == 2,
                joined_us: u64::from(arg) * 10_000,
                entries: body
                    .chunks(2)
                    .map(|c| {
                        let through = u64::from(c[0]);
                        DigestEntry {
                            origin: names[usize::from(c[0]) % 3].to_string(),
                            incarnation: u64::from(c[0] % 2),
                            low: (u64::from(*c.get(1).unwrap_or(&1))).clamp(1, through + 1),
                            through,
                        }
                    })
                    .collect(),
            }),
            3 => Some(FloodMsg::Pull {
                group: "g".into(),
                origin,
                incarnation: u64::from(arg % 2),
                ranges: vec![(n(0), n(0) + n(1))],
            }),
            4 => Some(FloodMsg::Evicted {
                group: "g".into(),
                origin,
                incarnation: u64::from(arg % 2),
                ranges: vec![(n(0), n(0) + n(1))],
            }),
            5 => Some(FloodMsg::Topology {
                group: "g".into(),
                master_incarnation: u64::from(arg),
                version: n(0),
                members: sites.clone(),
                links: if arg & 1 == 0 {
                    vec![(0, 1, 5), (1, 2, 5), (0, 2, 9)]
                } else {
                    vec![(0, 1, 5)]
                },
            }),
            6 => {
                let _ = m.handle(
                    now,
                    Input::ClientOpened {
                        client,
                        origin: ClientOrigin::tcp(
                            ListenerId(1),
                            "127.0.0.1:9".parse().unwrap(),
                            "127.0.0.1:7001".parse().unwrap(),
                        ),
                    },
                );
                None
            }
            7 => {
                let _ = m.handle(now, Input::ClientData(client, Bytes::copy_from_slice(body)));
                None
            }
            8 => {
                let _ = m.handle(now, Input::ClientClosed(client));
                None
            }
            9 => {
                let outcome = match arg % 3 {
                    0 => Ok(FloodEffectValue::Exported),
                    1 => Err(EffectError::Failed("exit 1".into())),
                    _ => Ok(FloodEffectValue::Generated(
                        String::from_utf8_lossy(body).into_owned(),
                    )),
                };
                let _ = m.handle(
                    now,
                    Input::EffectDone {
                        id: EffectId(u64::from(arg >> 2)),
                        outcome,
                    },
                );
                None
            }
            10 => {
                let frame = Frame::new(
                    Kind(u16::from(FAMILY) << 8 | u16::from(arg % 16)),
                    Bytes::copy_from_slice(body),
                );
                let _ = m.handle(now, Input::Frame { from, frame });
                None
            }
            11 => Some(FloodMsg::Starts {
                group: "g".into(),
                entries: body
                    .iter()
                    .map(|&b| StartEntry {
                        origin: names[usize::from(b) % 3].to_string(),
                        incarnation: u64::from(b % 2),
                        start: u64::from(b).max(1),
                    })
                    .collect(),
            }),
            _ => {
                m.handle_timeout(now);
                if let Some(t) = m.poll_timeout() {
                    assert!(t > now, "a timer at or before now after handle_timeout");
                }
                None
            }
        };
        if let Some(msg) = msg {
            let _ = m.handle(
                now,
                Input::Frame {
                    from,
                    frame: msg.to_frame(),
                },
            );
        }
        while m.poll_output().is_some() {}
        assert!(m.stored_bytes() <= 4096);
        if let Err(e) = m.check_invariants() {
            panic!("inconsistent after an input: {e}");
        }
    }
});
