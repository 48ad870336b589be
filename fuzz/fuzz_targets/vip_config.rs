//! The VIP agent's configuration file (SPEC.md §11.6): arbitrary bytes give a
//! configuration or an error with a place, never a panic.
#![no_main]

use flotilla_core::vip::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = config::parse_bytes(data) {
        assert!(!c.nodes.is_empty());
        assert!(c.vips.iter().all(|v| !v.addresses.is_empty()));
        let _ = c.digest();
    }
});
