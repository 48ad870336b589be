//! The frame envelope: datagram decoding and stream splitting never panic, never
//! over-read, and whatever decodes re-encodes to the same bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use flotilla_core::wire::{Limits, decode_frame, split_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_payload: 4096 };
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(frame) = decode_frame(&bytes, &limits) {
        assert_eq!(frame.to_bytes(), bytes);
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = split_frame(&mut buf, &limits) {
        assert!(frame.payload.len() <= 4096);
    }
});
