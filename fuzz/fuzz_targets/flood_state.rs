//! A flood daemon's state file (`floodd --state`), as read at start: arbitrary bytes
//! never panic, and a state that reads back re-encodes to one that reads the same.
#![no_main]

use bytes::Bytes;
use flotilla_core::flood::state::FloodState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(state) = FloodState::decode(&bytes) {
        let again = state.encode();
        assert_eq!(
            FloodState::decode(&again).expect("re-encoded state reads"),
            state
        );
    }
});
