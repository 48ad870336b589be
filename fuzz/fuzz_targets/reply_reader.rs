//! The client side of the ship line protocol: arbitrary reply bytes, in arbitrary chunks.
#![no_main]

use flotilla_core::ship::client::{ReplyReader, Step, parse_accepted, parse_connected};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut r = ReplyReader::default();
    for piece in rest.chunks(usize::from(chunk).max(1)) {
        r.push(piece);
        while let Some(step) = r.next_step() {
            if let Step::Done(Ok(text)) = step {
                let _ = parse_connected(&text);
                let _ = parse_accepted(&text);
            }
        }
    }
});
