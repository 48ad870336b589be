//! The group daemon's client side: arbitrary bytes from two clients, in arbitrary chunks,
//! into one daemon's groups front (requests read, refused or answered; the machine's own
//! checks after every input), and each line through the request parser and the service
//! control decoder.
#![no_main]

use std::net::SocketAddr;

use bytes::Bytes;
use flotilla_core::groups::GroupsSettings;
use flotilla_core::groups::front::services::Control;
use flotilla_core::groups::front::{FrontSettings, GroupsFront, parse_request};
use flotilla_core::membership::view::Member;
use flotilla_core::{ClientId, ClientOrigin, Input, Instant, ListenerId, Machine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    for line in rest.split(|b| *b == b'\n') {
        let _ = Control::decode(line);
        if let Ok(text) = std::str::from_utf8(line) {
            if let Err(r) = parse_request(text) {
                assert!((500..600).contains(&r.code));
            }
        }
    }
    let me = Member {
        name: "a".into(),
        incarnation: 1,
        addr: SocketAddr::from(([127, 0, 0, 1], 4803)),
    };
    let mut s = FrontSettings::new(GroupsSettings {
        me,
        canary_deliver_early: false,
    });
    s.ports = (7000, 7002);
    let mut f = GroupsFront::new(s, Instant::ZERO);
    let mut now = Instant::ZERO;
    for c in 0..2u64 {
        let origin = ClientOrigin::unix(ListenerId(0));
        f.handle(
            now,
            Input::ClientOpened {
                client: ClientId(c),
                origin,
            },
        )
        .unwrap();
    }
    for (k, piece) in rest.chunks(usize::from(chunk).max(1)).enumerate() {
        let c = ClientId(k as u64 % 2);
        now = now + core::time::Duration::from_millis(10);
        let _ = f.handle(now, Input::ClientData(c, Bytes::copy_from_slice(piece)));
        f.handle_timeout(now);
        while f.poll_output().is_some() {}
        f.check_invariants().unwrap();
    }
    for c in 0..2u64 {
        let _ = f.handle(now, Input::ClientClosed(ClientId(c)));
    }
    f.handle_timeout(now + core::time::Duration::from_secs(60));
    while f.poll_output().is_some() {}
    f.check_invariants().unwrap();
    assert_eq!(f.clients(), 0);
});
