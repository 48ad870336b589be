//! Every flood message decoder: the first byte picks the message kind, the rest is the
//! payload. What decodes must re-encode to the same message.
#![no_main]

use bytes::Bytes;
use flotilla_core::flood::msg::{FAMILY, FloodMsg};
use flotilla_core::wire::{Frame, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let kind = Kind(u16::from(FAMILY) << 8 | u16::from(k % 16));
    let frame = Frame::new(kind, Bytes::copy_from_slice(rest));
    if let Ok(msg) = FloodMsg::decode(&frame) {
        let again = FloodMsg::decode(&msg.to_frame()).expect("re-encoded message decodes");
        assert_eq!(format!("{again:?}"), format!("{msg:?}"));
    }
});
