//! The transport hello decoder (SPEC.md §2.3).
#![no_main]

use bytes::Bytes;
use flotilla_core::wire::Frame;
use flotilla_core::wire::transport::{KIND_HELLO, decode_hello, encode_hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((addr, lane)) = decode_hello(&Frame::new(KIND_HELLO, Bytes::copy_from_slice(data))) {
        assert_eq!(decode_hello(&encode_hello(addr, lane)), Ok((addr, lane)));
    }
});
