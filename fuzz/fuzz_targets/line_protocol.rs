//! Client line framing and request parsing: arbitrary bytes in arbitrary chunks.
#![no_main]

use flotilla_core::line::{LineBuffer, parse_reply};
use flotilla_core::ship::command::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut lines = LineBuffer::new(256);
    for piece in rest.chunks(usize::from(chunk).max(1)) {
        lines.push(piece);
        loop {
            match lines.next_line() {
                Ok(Some(line)) => {
                    if let Err(e) = parse_request(&line) {
                        assert!((400..500).contains(&e.code));
                    }
                    let _ = parse_reply(&line);
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        assert!(lines.pending() <= 256 + piece.len());
    }
});
