//! The client library's side of the group daemon's protocol: arbitrary server bytes, in
//! arbitrary chunks, read into replies and notices (the binary `602`/`603` with the bytes
//! after them), and every notice into a typed one.
#![no_main]

use flotilla_core::line::{ReplyReader, Step};
use flotilla_driver::group_client::GroupNotice;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut r = ReplyReader::default();
    // As a group client reads: 602/603 carry their bytes.
    r.sized_notices(&[602, 603]);
    for piece in rest.chunks(usize::from(chunk).max(1)) {
        r.push(piece);
        while let Some(step) = r.next_step() {
            if let Step::Notice(n) = step {
                if let Ok(typed) = GroupNotice::parse(&n) {
                    // A known code never reads as an unknown notice, nor the reverse.
                    let known = matches!(n.code, 600..=603 | 610 | 611 | 620..=625 | 699);
                    assert_eq!(matches!(typed, GroupNotice::Other { .. }), !known, "{n:?}");
                }
            }
        }
    }
});
