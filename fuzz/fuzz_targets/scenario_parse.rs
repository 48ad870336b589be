//! Simulator scenario files (SPEC.md §6): any text gives a scenario or an error with a
//! line and column, for every protocol plug-in, never a panic.
#![no_main]

use flotilla_sim::Scenario;
use flotilla_sim::protocols::heartbeat::HeartbeatProtocol;
use flotilla_sim::protocols::ship::ShipProtocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = Scenario::parse(text, <HeartbeatProtocol>::default(), None) {
        assert!(e.pos.line >= 1);
    }
    if let Err(e) = Scenario::parse(text, ShipProtocol::default(), None) {
        assert!(e.pos.line >= 1);
    }
});
