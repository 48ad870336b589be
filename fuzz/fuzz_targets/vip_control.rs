//! The VIP agent's control lines (SPEC.md §11.7): arbitrary bytes on a control
//! connection get replies (or a close), never a panic, and leave the agent consistent.
#![no_main]

use bytes::Bytes;
use flotilla_core::vip::VipAgent;
use flotilla_core::vip::config::{VipAddress, VipConfig, VipSpec};
use flotilla_core::{ClientId, ClientOrigin, Input, Instant, ListenerId, Machine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let spec = VipSpec {
        name: "v0".into(),
        addresses: vec![VipAddress {
            ip: "10.9.0.1".parse().unwrap(),
            prefix: 24,
            interface: "eth0".into(),
        }],
        nodes: Vec::new(),
        prefer: None,
    };
    let mut a = VipAgent::new("a", VipConfig::new(&["a", "b"], vec![spec]), Instant::ZERO);
    let origin = ClientOrigin::unix(ListenerId(0));
    a.handle(
        Instant::ZERO,
        Input::ClientOpened {
            client: ClientId(1),
            origin,
        },
    )
    .unwrap();
    for chunk in data.chunks(37) {
        let _ = a.handle(
            Instant::ZERO,
            Input::ClientData(ClientId(1), Bytes::copy_from_slice(chunk)),
        );
        while a.poll_output().is_some() {}
        a.check_invariants().unwrap();
    }
});
