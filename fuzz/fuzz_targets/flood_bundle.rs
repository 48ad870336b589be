//! The reference reader of export bundles (what an export command reads): arbitrary
//! bytes never panic, and what reads back re-encodes to the same bytes.
#![no_main]

use bytes::Bytes;
use flotilla_core::flood::bundle;
use flotilla_core::flood::config::ExportFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(items) = bundle::decode(&bytes) {
        let again = bundle::encode(&items, ExportFormat::Framed);
        assert_eq!(
            bundle::decode(&again).expect("re-encoded bundle reads"),
            items
        );
    }
});
