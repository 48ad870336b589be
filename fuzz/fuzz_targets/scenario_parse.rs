//! Simulator scenario files (SPEC.md §6): any text gives a scenario or an error with a
//! line and column, for every protocol plug-in, never a panic.
#![no_main]

use flotilla_sim::cli::PROTOCOLS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for p in PROTOCOLS {
        if let Err(e) = (p.check)(text) {
            assert!(e.pos.line >= 1);
        }
    }
});
