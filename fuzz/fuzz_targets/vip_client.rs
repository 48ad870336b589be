//! The VIP client library's side of the control lines (SPEC.md §11.7): arbitrary agent
//! bytes, in arbitrary chunks, read into replies and notices; every final reply read as
//! a status and every notice as a watch notice: a typed error or a value, never a panic.
#![no_main]

use flotilla_core::line::{ReplyReader, Step};
use flotilla_driver::vip_client::{VipNotice, parse_notice, parse_status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut r = ReplyReader::default();
    for piece in rest.chunks(usize::from(chunk).max(1)) {
        r.push(piece);
        while let Some(step) = r.next_step() {
            match step {
                Step::Notice(n) => {
                    if let Ok(typed) = parse_notice(&n) {
                        // 610 and 611 never read as another notice, nor the reverse.
                        let known = matches!(n.code, 610 | 611);
                        assert_eq!(!matches!(typed, VipNotice::Other { .. }), known, "{n:?}");
                    }
                }
                Step::Done(Ok(text)) => {
                    if let Ok(s) = parse_status(&text) {
                        assert!(!s.node.is_empty());
                    }
                }
                Step::Done(Err(_)) | Step::Progress(_) => {}
            }
        }
    }
});
