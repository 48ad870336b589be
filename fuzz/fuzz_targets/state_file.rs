//! The mothership's state file decoder (`flotilla mothership --state FILE`).
#![no_main]

use bytes::Bytes;
use flotilla_core::ship::Stored;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Give the fuzzer the header for free, so it explores the body.
    let mut bytes = b"FLSHIP\x00\x01".to_vec();
    bytes.extend_from_slice(data);
    if let Ok(st) = Stored::decode(&Bytes::from(bytes)) {
        assert_eq!(Stored::decode(&st.encode()), Ok(st));
    }
});
