//! The VIP agents' messages (SPEC.md §11.3): arbitrary bytes never panic, and what reads
//! back re-encodes to the same message.
#![no_main]

use flotilla_core::vip::VipMsg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = VipMsg::decode(data) {
        let again = m.encode();
        assert_eq!(
            VipMsg::decode(again.as_bytes()).expect("re-encoded message reads"),
            m
        );
    }
});
