//! The ship machine fed an arbitrary sequence of peer frames, client bytes, client opens
//! and closes, store outcomes, and timer firings: it must never panic, must keep its timer
//! promise, and must stay consistent (`check_invariants`) after every input.
#![no_main]

use bytes::Bytes;
use flotilla_core::machine::{
    ClientId, ClientOrigin, EffectError, EffectId, Input, ListenerId, Machine, PeerAddr,
};
use flotilla_core::ship::msg::FAMILY;
use flotilla_core::ship::tree::ConfigTree;
use flotilla_core::ship::{Ship, ShipConfig};
use flotilla_core::wire::{Frame, Kind};
use flotilla_core::{Instant, Rng};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let me = PeerAddr::from(([10, 0, 0, 1], 1));
    let parent = PeerAddr::from(([10, 0, 0, 2], 1));
    let child = PeerAddr::from(([10, 0, 0, 3], 1));
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut cfg = if mode & 1 == 0 {
        ShipConfig::mothership(
            me,
            ConfigTree::parse("(:node a (:dynamic)) (:param p 1)").unwrap(),
        )
    } else {
        ShipConfig::daughtership(me, parent)
    };
    cfg.durable = mode & 2 != 0;
    let mut ship = Ship::new(cfg, Instant::ZERO, Rng::from_seed(u64::from(mode))).unwrap();
    let mut now = Instant::ZERO;
    while rest.len() >= 3 {
        let (op, arg, len) = (rest[0], rest[1], usize::from(rest[2]));
        let body = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[(3 + len).min(rest.len())..];
        now = now + std::time::Duration::from_millis(u64::from(arg) * 7);
        let client = ClientId(u64::from(arg % 4));
        let input = match op % 6 {
            0 => Input::Frame {
                from: if arg & 1 == 0 { parent } else { child },
                frame: Frame::new(
                    Kind(u16::from(FAMILY) << 8 | u16::from(op >> 4)),
                    Bytes::copy_from_slice(body),
                ),
            },
            1 => Input::ClientOpened {
                client,
                origin: ClientOrigin::unix(ListenerId(0)),
            },
            2 => Input::ClientData(client, Bytes::copy_from_slice(body)),
            3 => Input::ClientClosed(client),
            4 => Input::EffectDone {
                id: EffectId(u64::from(arg >> 2)),
                outcome: if arg & 1 == 0 {
                    Ok(())
                } else {
                    Err(EffectError::Failed("disk".into()))
                },
            },
            _ => {
                ship.handle_timeout(now);
                if let Some(t) = ship.poll_timeout() {
                    assert!(t > now);
                }
                while ship.poll_output().is_some() {}
                continue;
            }
        };
        let _ = ship.handle(now, input);
        while ship.poll_output().is_some() {}
        if let Err(e) = ship.check_invariants() {
            panic!("inconsistent after an input: {e}");
        }
    }
});
