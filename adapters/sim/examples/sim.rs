//! Runs `flotilla sim` from the library, for trying scenarios before the `flotilla`
//! binary wires it in: `cargo run -p flotilla-sim --example sim -- heartbeat-partition --seed 3 --trace`.

use std::path::PathBuf;

use flotilla_sim::cli::{SimArgs, parse_seed_range, run};

fn main() {
    let mut args = SimArgs::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => args.list = true,
            "--trace" => args.trace = true,
            "--file" => args.file = it.next().map(PathBuf::from),
            "--seed" => args.seed = it.next().and_then(|s| s.parse().ok()),
            "--seeds" => args.seeds = it.next().and_then(|s| parse_seed_range(&s).ok()),
            name => args.scenario = Some(name.to_string()),
        }
    }
    let code = run(&args, &mut std::io::stdout().lock()).expect("stdout");
    std::process::exit(code);
}
