//! The library side of `flotilla sim`: argument types, the seed-range parser, the table
//! of protocols, and [`run`], which the `flotilla` binary calls.
//!
//! ```text
//! flotilla sim --list
//! flotilla sim heartbeat-partition --seed 7 --trace
//! flotilla sim broker-chaos --seed 3 --svg run.svg      # or --html run.html
//! flotilla sim --file my.scn --seeds 0..1000            # --verbose prints every seed
//! ```
//!
//! Exit codes: 0 when every check passes on every seed, 1 when any fails, 2 when the
//! scenario cannot be loaded (unknown name, unreadable file, or an error in the file,
//! reported as `PATH:LINE:COL: message`) or the arguments do not fit together.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flotilla_core::sexpr::SexprError;

use crate::canary::CanaryProtocol;
use crate::check::{Failure, Source};
use crate::protocol::Protocol;
use crate::protocols::flood::FloodProtocol;
use crate::protocols::groups::GroupsProtocol;
use crate::protocols::heartbeat::HeartbeatProtocol;
use crate::protocols::membership::MembershipProtocol;
use crate::protocols::pair::PairProtocol;
use crate::protocols::ship::ShipProtocol;
use crate::protocols::vip::VipProtocol;
use crate::scenario::{self, Scenario};
use crate::scenarios::{BUILTIN, builtin};

/// One protocol `(:protocol NAME)` may name: how to parse and run scenarios for it.
pub struct Registered {
    /// The name in `(:protocol NAME)`.
    pub name: &'static str,
    /// Parses a scenario for it (to check a file without running it).
    pub check: fn(&str) -> Result<(), SexprError>,
    run: fn(&str, Source, &str, &SimArgs, &mut Io<'_>) -> io::Result<i32>,
}

/// Every protocol the simulator runs: the one place a new protocol registers.
pub static PROTOCOLS: &[Registered] = &[
    Registered {
        name: "heartbeat",
        check: |t| parse_only(t, <HeartbeatProtocol>::default()),
        run: |t, s, l, a, io| go(t, <HeartbeatProtocol>::default(), s, l, a, io),
    },
    Registered {
        name: "heartbeat-canary",
        check: |t| parse_only(t, CanaryProtocol::default()),
        run: |t, s, l, a, io| go(t, CanaryProtocol::default(), s, l, a, io),
    },
    Registered {
        name: "ship",
        check: |t| parse_only(t, ShipProtocol::default()),
        run: |t, s, l, a, io| go(t, ShipProtocol::default(), s, l, a, io),
    },
    Registered {
        name: "heartbeat+ship",
        check: |t| parse_only(t, PairProtocol),
        run: |t, s, l, a, io| go(t, PairProtocol, s, l, a, io),
    },
    Registered {
        name: "ship-canary",
        check: |t| parse_only(t, ShipProtocol::canary()),
        run: |t, s, l, a, io| go(t, ShipProtocol::canary(), s, l, a, io),
    },
    Registered {
        name: "flood",
        check: |t| parse_only(t, FloodProtocol::default()),
        run: |t, s, l, a, io| go(t, FloodProtocol::default(), s, l, a, io),
    },
    Registered {
        name: "membership",
        check: |t| parse_only(t, MembershipProtocol::default()),
        run: |t, s, l, a, io| go(t, MembershipProtocol::default(), s, l, a, io),
    },
    Registered {
        name: "groups",
        check: |t| parse_only(t, GroupsProtocol::default()),
        run: |t, s, l, a, io| go(t, GroupsProtocol::default(), s, l, a, io),
    },
    Registered {
        name: "groups-canary",
        check: |t| parse_only(t, GroupsProtocol::canary()),
        run: |t, s, l, a, io| go(t, GroupsProtocol::canary(), s, l, a, io),
    },
    Registered {
        name: "services-canary",
        check: |t| parse_only(t, GroupsProtocol::canary_ports()),
        run: |t, s, l, a, io| go(t, GroupsProtocol::canary_ports(), s, l, a, io),
    },
    Registered {
        name: "membership-canary",
        check: |t| parse_only(t, MembershipProtocol::canary()),
        run: |t, s, l, a, io| go(t, MembershipProtocol::canary(), s, l, a, io),
    },
    Registered {
        name: "vip",
        check: |t| parse_only(t, VipProtocol::default()),
        run: |t, s, l, a, io| go(t, VipProtocol::default(), s, l, a, io),
    },
    Registered {
        name: "vip-canary",
        check: |t| parse_only(t, VipProtocol::canary()),
        run: |t, s, l, a, io| go(t, VipProtocol::canary(), s, l, a, io),
    },
    Registered {
        name: "flood-canary",
        check: |t| parse_only(t, FloodProtocol::canary()),
        run: |t, s, l, a, io| go(t, FloodProtocol::canary(), s, l, a, io),
    },
];

fn parse_only<P: Protocol>(text: &str, protocol: P) -> Result<(), SexprError> {
    Scenario::parse(text, protocol, None).map(|_| ())
}

/// The registered protocol called `name`.
pub fn protocol(name: &str) -> Option<&'static Registered> {
    PROTOCOLS.iter().find(|p| p.name == name)
}

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
    /// In a sweep, print every seed's verdicts, not only the failing ones.
    pub verbose: bool,
    /// Draw the run as an SVG timeline into this file (one seed only).
    pub svg: Option<PathBuf>,
    /// Draw the run as an HTML page into this file (one seed only).
    pub html: Option<PathBuf>,
    /// List the built-in scenarios and exit.
    pub list: bool,
}

/// Where `run` writes: results, and (when it is a terminal) a sweep's progress line.
pub struct Io<'a> {
    /// Results: verdicts, failures, the summary.
    pub out: &'a mut dyn Write,
    /// The progress line of a sweep, rewritten in place; `None` to print none (not a
    /// terminal).
    pub progress: Option<&'a mut dyn Write>,
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

/// Runs `flotilla sim` with `args`, writing results to `out` (no progress line); returns
/// the exit code.
pub fn run(args: &SimArgs, out: &mut dyn Write) -> io::Result<i32> {
    run_with(
        args,
        &mut Io {
            out,
            progress: None,
        },
    )
}

/// Runs `flotilla sim` with `args`; returns the exit code.
pub fn run_with(args: &SimArgs, io: &mut Io<'_>) -> io::Result<i32> {
    if args.list {
        writeln!(io.out, "built-in scenarios:")?;
        for (name, about, _) in BUILTIN {
            writeln!(io.out, "  {name:<26} {about}")?;
        }
        return Ok(0);
    }
    if (args.svg.is_some() || args.html.is_some()) && args.seeds.is_some() {
        writeln!(
            io.out,
            "--svg and --html draw one run: give --seed N, not --seeds"
        )?;
        return Ok(2);
    }
    let (text, source, label) = match (&args.scenario, &args.file) {
        (Some(name), None) => match builtin(name) {
            Some(text) => (text.to_string(), Source::Named(name.clone()), name.clone()),
            None => {
                writeln!(
                    io.out,
                    "unknown scenario '{name}' (flotilla sim --list shows the built-in ones)"
                )?;
                return Ok(2);
            }
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => (text, Source::File(path.clone()), path.display().to_string()),
            Err(e) => {
                writeln!(io.out, "{}: {e}", path.display())?;
                return Ok(2);
            }
        },
        _ => {
            writeln!(
                io.out,
                "name one built-in scenario or one --file (flotilla sim --list shows the built-in ones)"
            )?;
            return Ok(2);
        }
    };
    let (name, pos) = match scenario::protocol_name(&text) {
        Ok(p) => p,
        Err(e) => return bad_file(io.out, &label, &e),
    };
    match protocol(&name) {
        Some(p) => (p.run)(&text, source, &label, args, io),
        None => {
            let known: Vec<&str> = PROTOCOLS.iter().map(|p| p.name).collect();
            let e = SexprError::new(
                pos,
                format!("unknown protocol '{name}' (known: {})", known.join(", ")),
            );
            bad_file(io.out, &label, &e)
        }
    }
}

fn bad_file(out: &mut dyn Write, label: &str, e: &SexprError) -> io::Result<i32> {
    writeln!(out, "{label}:{e}")?;
    Ok(2)
}

fn draw(path: &Path, what: &str, text: &str, out: &mut dyn Write) -> io::Result<()> {
    std::fs::write(path, text)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    writeln!(out, "{what} written to {}", path.display())
}

fn go<P: Protocol>(
    text: &str,
    protocol: P,
    source: Source,
    label: &str,
    args: &SimArgs,
    io: &mut Io<'_>,
) -> io::Result<i32> {
    let scn = match Scenario::parse(text, protocol, Some(source)) {
        Ok(s) => s,
        Err(e) => return bad_file(io.out, label, &e),
    };
    let seeds = match (args.seeds, args.seed) {
        (Some((a, b)), _) => a..b,
        (None, Some(s)) => s..s + 1,
        (None, None) => scn.seed..scn.seed + 1,
    };
    let runs = seeds.end - seeds.start;
    let sweep = runs > 1;
    let drawing = args.svg.is_some() || args.html.is_some();
    let mut failures: Vec<Failure> = Vec::new();
    for (k, seed) in seeds.clone().enumerate() {
        let mut sim = scn.sim_with(seed, args.trace, drawing);
        sim.run();
        if args.trace {
            io.out.write_all(sim.trace_text().as_bytes())?;
        }
        let report = sim.report();
        let failed = report.first_failure();
        if !sweep || args.verbose || failed.is_some() {
            write!(io.out, "{report}")?;
        }
        if let Some(t) = sim.timeline() {
            if let Some(path) = &args.svg {
                draw(path, "timeline", &crate::svg::render_svg(&t), io.out)?;
            }
            if let Some(path) = &args.html {
                draw(path, "timeline page", &crate::svg::render_html(&t), io.out)?;
            }
        }
        failures.extend(failed);
        if sweep && let Some(p) = io.progress.as_mut() {
            write!(
                p,
                "\r{}: seed {seed} ({}/{runs}), {} failed ",
                scn.name,
                k + 1,
                failures.len()
            )?;
            p.flush()?;
        }
    }
    if sweep {
        if let Some(p) = io.progress.as_mut() {
            // Clear the progress line before the summary.
            write!(p, "\r{:width$}\r", "", width = 60 + scn.name.len())?;
            p.flush()?;
        }
        writeln!(
            io.out,
            "{}: seeds {}..{}: {} passed, {} failed",
            scn.name,
            seeds.start,
            seeds.end,
            runs - failures.len() as u64,
            failures.len()
        )?;
        for f in &failures {
            writeln!(
                io.out,
                "  seed {}: {} at {}: {}",
                f.seed, f.check, f.at, f.message
            )?;
            writeln!(io.out, "    replay: {}", f.replay)?;
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
            let reg = protocol(&p).unwrap_or_else(|| panic!("{name}: protocol {p} not registered"));
            assert!((reg.check)(text).is_ok(), "{name} does not parse");
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
