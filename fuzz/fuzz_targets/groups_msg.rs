//! Every client-groups message decoder: the first byte picks the message kind, the rest
//! is the payload. What decodes must re-encode to a frame that decodes to the same
//! message.
#![no_main]

use bytes::Bytes;
use flotilla_core::groups::GroupMsg;
use flotilla_core::groups::msg::FAMILY;
use flotilla_core::wire::{Frame, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    // Kinds 0x01..=0x0b are defined (0x08..=0x0b the FIFO mode's); a few past them check
    // that unknown kinds are refused.
    let kind = Kind(u16::from(FAMILY) << 8 | u16::from(k % 14));
    let frame = Frame::new(kind, Bytes::copy_from_slice(rest));
    if let Ok(msg) = GroupMsg::decode(&frame) {
        let encoded = msg.to_frame();
        assert_eq!(encoded.kind, frame.kind, "re-encoded with another kind");
        let again = GroupMsg::decode(&encoded).expect("re-encoded message decodes");
        assert_eq!(again, msg);
    }
});
