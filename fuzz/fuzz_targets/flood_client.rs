//! The flood client port's reader: arbitrary bytes in arbitrary chunks, small limits.
#![no_main]

use flotilla_core::flood::command::{ClientReader, ReaderLimits, Request};
use libfuzzer_sys::fuzz_target;

const MAX_LINE: usize = 64;
const MAX_UPDATE: usize = 256;

fuzz_target!(|data: &[u8]| {
    // The first four bytes are the chunk sizes, taken in turn, so that the fuzzer can
    // cut a body, a CRLF or a `.` line anywhere.
    if data.len() < 4 {
        return;
    }
    let (sizes, mut rest) = data.split_at(4);
    let mut r = ClientReader::new(ReaderLimits {
        max_line: MAX_LINE,
        max_update: MAX_UPDATE,
    });
    let mut closed = false;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(usize::from(size).clamp(1, rest.len()));
        rest = tail;
        r.push(piece);
        while let Some(x) = r.next() {
            assert!(!closed, "a request after a fatal error");
            match x {
                Ok(Request::Update { data, .. }) => assert!(data.len() <= MAX_UPDATE),
                Ok(_) => {}
                Err(e) => closed |= e.is_fatal(),
            }
        }
        assert!(
            r.pending() <= MAX_LINE + MAX_UPDATE + 2,
            "{} held",
            r.pending()
        );
    }
});
