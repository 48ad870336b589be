//! Every ship message decoder: first byte picks the message kind, the rest is payload.
#![no_main]

use bytes::Bytes;
use flotilla_core::ship::msg::{FAMILY, ShipMsg};
use flotilla_core::wire::Kind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let kind = Kind(u16::from(FAMILY) << 8 | u16::from(k % 16));
    if let Ok(msg) = ShipMsg::decode_payload(kind, &Bytes::copy_from_slice(rest)) {
        // What decodes re-encodes to something that decodes to the same message.
        let again = ShipMsg::decode(&msg.to_frame()).expect("re-encoded message decodes");
        assert_eq!(format!("{again:?}"), format!("{msg:?}"));
    }
});
