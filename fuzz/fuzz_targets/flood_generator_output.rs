//! The reader of a `topology-generator` command's output: any text and any site names
//! give edges between two distinct named sites, or an error naming a line, never a panic.
#![no_main]

use flotilla_core::flood::topology::decode_generator_output;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line names the sites (a few words, so that the output can hit them); the
    // rest is what the command printed.
    let (first, output) = text.split_once('\n').unwrap_or((text, ""));
    let names: Vec<String> = first
        .split_whitespace()
        .take(8)
        .map(str::to_owned)
        .collect();
    match decode_generator_output(output, &names) {
        Ok(edges) => {
            for &(a, b) in &edges {
                assert!(a < b && (b as usize) < names.len(), "edge ({a}, {b})");
                assert_ne!(
                    names[a as usize], names[b as usize],
                    "a loop under two names"
                );
            }
        }
        Err(e) => {
            let lines = output.lines().count().max(1);
            assert!(e.line() >= 1 && e.line() as usize <= lines, "{e}");
        }
    }
});
