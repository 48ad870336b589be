//! The S-expression reader and the ship configuration file reader: any text gives a tree
//! or an error with a position, never a panic.
#![no_main]

use flotilla_core::sexpr::parse;
use flotilla_core::ship::tree::ConfigTree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(forms) = parse(text) {
            // Printing and re-reading keeps the number of forms.
            let printed: String = forms.iter().map(|f| format!("{f}\n")).collect();
            assert_eq!(parse(&printed).map(|f| f.len()).ok(), Some(forms.len()));
        }
        if let Err(e) = ConfigTree::parse(text) {
            assert!(e.pos.line >= 1);
        }
    }
});
