//! The group daemon's configuration file: any bytes give a configuration or an error with
//! a line and column, never a panic; and what parses renders to a file that parses to the
//! same daemons and timings (the version and removed list are not in the file).
#![no_main]

use std::collections::BTreeSet;

use flotilla_core::membership::config_file::{self, check_timing, valid_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = match config_file::parse_bytes(data) {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(e.pos.line >= 1 && e.pos.col >= 1, "{e}");
            return;
        }
    };
    assert_eq!(cfg.version, 0);
    assert!(cfg.removed.is_empty());
    let names: BTreeSet<&str> = cfg.daemons.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), cfg.daemons.len(), "daemon names are unique");
    assert!(names.iter().all(|n| valid_name(n)), "{names:?}");
    let addrs: BTreeSet<_> = cfg.daemons.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        addrs.len(),
        cfg.daemons.len(),
        "daemon addresses are unique"
    );
    assert!(check_timing(&cfg.timing).is_ok(), "{:?}", cfg.timing);
    let text = config_file::render(&cfg);
    let again = match config_file::parse(&text) {
        Ok(again) => again,
        Err(e) => panic!("the rendered file does not parse: {e}\n{text}"),
    };
    assert_eq!(
        again.daemons, cfg.daemons,
        "daemons differ after render:\n{text}"
    );
    assert_eq!(
        again.timing, cfg.timing,
        "timings differ after render:\n{text}"
    );
});
