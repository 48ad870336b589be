//! The library side of `flotilla sim`: argument types, the seed-range parser, and
//! [`run`], which the `flotilla` binary calls.
//!
//! ```text
//! flotilla sim --list
//! flotilla sim heartbeat-partition --seed 7 --trace
//! flotilla sim --file my.scn --seeds 0..1000
//! ```
//!
//! Exit codes: 0 when every check passes on every seed, 1 when any fails, 2 when the
//! scenario cannot be loaded (unknown name, unreadable file, or an error in the file,
//! reported as `PATH:LINE:COL: message`).

use std::io::{self, Write};
use std::path::PathBuf;

use flotilla_core::sexpr::SexprError;

use crate::canary::CanaryProtocol;
use crate::check::{Failure, Source};
use crate::protocol::Protocol;
use crate::protocols::heartbeat::HeartbeatProtocol;
use crate::protocols::ship::ShipProtocol;
use crate::scenario::{self, Scenario};
use crate::scenarios::{BUILTIN, builtin};

/// Protocols a scenario may name in `(:protocol NAME)`.
pub const PROTOCOLS: &[&str] = &["heartbeat", "heartbeat-canary", "ship"];

/// Arguments of `flotilla sim`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimArgs {
    /// A built-in scenario's name.
    pub scenario: Option<String>,
    /// A scenario file.
    pub file: Option<PathBuf>,
    /// One seed to run.
    pub seed: Option<u64>,
    /// A half-open range of seeds to sweep, from [`parse_seed_range`].
    pub seeds: Option<(u64, u64)>,
    /// Print each run's event trace.
    pub trace: bool,
    /// List the built-in scenarios and exit.
    pub list: bool,
}

/// Parses `A..B` (half-open, like a Rust range) or `A..=B` (inclusive) into `(A, B)`
/// with `B` exclusive.
pub fn parse_seed_range(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("expected a seed range like 0..100 or 0..=99, found '{s}'");
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let (inclusive, b) = match b.strip_prefix('=') {
        Some(b) => (true, b),
        None => (false, b),
    };
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    let end = if inclusive {
        b.checked_add(1).ok_or_else(bad)?
    } else {
        b
    };
    if end <= a {
        return Err(format!("the seed range '{s}' is empty"));
    }
    Ok((a, end))
}

/// Runs `flotilla sim` with `args`, writing everything to `out`; returns the exit code.
pub fn run(args: &SimArgs, out: &mut dyn Write) -> io::Result<i32> {
    if args.list {
        writeln!(out, "built-in scenarios:")?;
        for (name, about, _) in BUILTIN {
            writeln!(out, "  {name:<22} {about}")?;
        }
        return Ok(0);
    }
    let (text, source, label) = match (&args.scenario, &args.file) {
        (Some(name), None) => match builtin(name) {
            Some(text) => (text.to_string(), Source::Named(name.clone()), name.clone()),
            None => {
                writeln!(
                    out,
                    "unknown scenario '{name}' (flotilla sim --list shows the built-in ones)"
                )?;
                return Ok(2);
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => (text, Source::File(path.clone()), path.display().to_string()),
            Err(e) => {
                writeln!(out, "{}: {e}", path.display())?;
                return Ok(2);
            }
        },
        _ => {
            writeln!(
                out,
                "name one built-in scenario or one --file (flotilla sim --list shows the built-in ones)"
            )?;
            return Ok(2);
        }
    };
    let protocol = match scenario::protocol_name(&text) {
        Ok(p) => p,
        Err(e) => return bad_file(out, &label, &e),
    };
    match protocol.0.as_str() {
        "heartbeat" => go(
            &text,
            <HeartbeatProtocol>::default(),
            source,
            &label,
            args,
            out,
        ),
        "heartbeat-canary" => go(&text, CanaryProtocol::default(), source, &label, args, out),
        "ship" => go(&text, ShipProtocol::default(), source, &label, args, out),
        other => {
            let e = SexprError::new(
                protocol.1,
                format!(
                    "unknown protocol '{other}' (known: {})",
                    PROTOCOLS.join(", ")
                ),
            );
            bad_file(out, &label, &e)
        }
    }
}

fn bad_file(out: &mut dyn Write, label: &str, e: &SexprError) -> io::Result<i32> {
    writeln!(out, "{label}:{e}")?;
    Ok(2)
}

fn go<P: Protocol>(
    text: &str,
    protocol: P,
    source: Source,
    label: &str,
    args: &SimArgs,
    out: &mut dyn Write,
) -> io::Result<i32> {
    let scn = match Scenario::parse(text, protocol, Some(source)) {
        Ok(s) => s,
        Err(e) => return bad_file(out, label, &e),
    };
    let seeds = match (args.seeds, args.seed) {
        (Some((a, b)), _) => a..b,
        (None, Some(s)) => s..s + 1,
        (None, None) => scn.seed..scn.seed + 1,
    };
    let runs = seeds.end - seeds.start;
    let mut failures: Vec<Failure> = Vec::new();
    for seed in seeds.clone() {
        let mut sim = scn.sim(seed, args.trace);
        sim.run();
        if args.trace {
            out.write_all(sim.trace_text().as_bytes())?;
        }
        let report = sim.report();
        write!(out, "{report}")?;
        failures.extend(report.first_failure());
    }
    if runs > 1 {
        writeln!(
            out,
            "{}: seeds {}..{}: {} passed, {} failed",
            scn.name,
            seeds.start,
            seeds.end,
            runs - failures.len() as u64,
            failures.len()
        )?;
        for f in &failures {
            writeln!(
                out,
                "  seed {}: {} at {}: {}",
                f.seed, f.check, f.at, f.message
            )?;
            writeln!(out, "    replay: {}", f.replay)?;
        }
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges() {
        assert_eq!(parse_seed_range("0..32"), Ok((0, 32)));
        assert_eq!(parse_seed_range("5..=5"), Ok((5, 6)));
        assert!(parse_seed_range("7..7").is_err());
        assert!(parse_seed_range("x..3").is_err());
        assert!(parse_seed_range("12").is_err());
    }

    fn run_to_string(args: &SimArgs) -> (i32, String) {
        let mut out = Vec::new();
        let code = run(args, &mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn list_and_unknown_names() {
        let (code, out) = run_to_string(&SimArgs {
            list: true,
            ..SimArgs::default()
        });
        assert_eq!(code, 0);
        assert!(out.contains("heartbeat-partition"));
        let (code, out) = run_to_string(&SimArgs {
            scenario: Some("nope".into()),
            ..SimArgs::default()
        });
        assert_eq!(code, 2);
        assert!(out.contains("unknown scenario"));
    }

    #[test]
    fn every_builtin_parses() {
        for (name, _, text) in BUILTIN {
            let p = scenario::protocol_name(text).unwrap().0;
            let ok = match p.as_str() {
                "heartbeat" => Scenario::parse(text, <HeartbeatProtocol>::default(), None).is_ok(),
                "heartbeat-canary" => {
                    Scenario::parse(text, CanaryProtocol::default(), None).is_ok()
                }
                "ship" => Scenario::parse(text, ShipProtocol::default(), None).is_ok(),
                _ => false,
            };
            assert!(ok, "{name} does not parse");
        }
    }

    #[test]
    fn a_bad_file_reports_path_line_and_column() {
        let dir = std::env::temp_dir().join(format!("flotilla-sim-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.scn");
        std::fs::write(
            &path,
            "(:scenario bad (:protocol heartbeat) (:nodes 2) (:duration 5s)\n  (:at 1s (:crash n3)))\n",
        )
        .unwrap();
        let (code, out) = run_to_string(&SimArgs {
            file: Some(path.clone()),
            ..SimArgs::default()
        });
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(code, 2);
        assert_eq!(
            out.trim(),
            format!(
                "{}:2:19: expected a node name n1..n2, found n3",
                path.display()
            )
        );
    }

    #[test]
    fn single_seed_prints_verdicts_and_trace() {
        let (code, out) = run_to_string(&SimArgs {
            scenario: Some("heartbeat-partition".into()),
            seed: Some(3),
            trace: true,
            ..SimArgs::default()
        });
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("-- partition {n1} {n2 n3}"), "{out}");
        assert!(out.contains("n1 event PeerDown { peer: 10.0.0.2:7000 }"));
        assert!(out.contains("PASS converged within [5.000000s, 6.500000s]"));
    }

    #[test]
    fn canary_sweep_exits_1_with_replay_commands() {
        let (code, out) = run_to_string(&SimArgs {
            scenario: Some("heartbeat-canary".into()),
            seeds: Some((0, 16)),
            ..SimArgs::default()
        });
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("replay: flotilla sim heartbeat-canary --seed "));
    }
}
