//! `flotilla sim`: run shipped or user-written simulator scenarios (SPEC.md §6).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use flotilla_sim::cli::{Io, SimArgs, parse_seed_range};

use crate::Outcome;

/// Arguments of `flotilla sim`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A built-in scenario (see --list).
    #[arg(conflicts_with = "file", required_unless_present_any = ["file", "list"])]
    scenario: Option<String>,
    /// A scenario file of your own.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Run one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a range of seeds: A..B (B excluded) or A..=B. Prints the failing seeds with
    /// their replay commands and a summary (a progress line on a terminal).
    #[arg(long, value_name = "A..B", value_parser = parse_seed_range)]
    seeds: Option<(u64, u64)>,
    /// Print every event of every run.
    #[arg(long)]
    trace: bool,
    /// In a sweep, print every seed's verdicts, not only the failing ones.
    #[arg(long)]
    verbose: bool,
    /// Draw the run as an SVG timeline (one lane per node, messages as arrows, faults
    /// shaded, verdicts marked) into FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "seeds")]
    svg: Option<PathBuf>,
    /// Draw the run as a self-contained HTML page into FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "seeds")]
    html: Option<PathBuf>,
    /// List the built-in scenarios.
    #[arg(long)]
    list: bool,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let sim_args = SimArgs {
        scenario: args.scenario,
        file: args.file,
        seed: args.seed,
        seeds: args.seeds,
        trace: args.trace,
        verbose: args.verbose,
        svg: args.svg,
        html: args.html,
        list: args.list,
    };
    // The simulator is single-threaded and CPU-bound: run it off the async workers.
    let code = tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = std::io::LineWriter::new(stdout.lock());
        let stderr = std::io::stderr();
        let mut err = stderr.lock();
        let progress: Option<&mut dyn std::io::Write> = if std::io::stderr().is_terminal() {
            Some(&mut err)
        } else {
            None
        };
        flotilla_sim::cli::run_with(
            &sim_args,
            &mut Io {
                out: &mut out,
                progress,
            },
        )
    })
    .await??;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
