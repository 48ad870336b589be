//! The mothership's state file decoder (`flotilla mothership --state FILE`): a copy
//! followed by checksummed records (format 2), or a copy alone (format 1).
#![no_main]

use bytes::Bytes;
use flotilla_core::ship::Stored;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Give the fuzzer the header for free (the first byte picks the format), so it
    // explores the copy and the records.
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let mut bytes = if pick & 1 == 0 {
        b"FLSHIP\x00\x02".to_vec()
    } else {
        b"FLSHIP\x00\x01".to_vec()
    };
    bytes.extend_from_slice(body);
    let bytes = Bytes::from(bytes);
    if let Ok((st, used)) = Stored::decode_log(&bytes) {
        // A writer cuts the file at `used` and appends: what it cut to reads the same.
        assert!(used <= bytes.len());
        assert_eq!(Stored::decode(&bytes.slice(..used)), Ok(st.clone()));
        assert_eq!(Stored::decode(&st.encode()), Ok(st));
    }
});
