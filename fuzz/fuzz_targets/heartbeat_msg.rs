//! The heartbeat beat decoder.
#![no_main]

use bytes::Bytes;
use flotilla_core::heartbeat::{KIND_BEAT, decode_beat};
use flotilla_core::wire::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_beat(&Frame::new(KIND_BEAT, Bytes::copy_from_slice(data)));
});
