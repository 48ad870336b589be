//! `flotilla sim`: run shipped or user-written simulator scenarios (SPEC.md §6).

use std::path::PathBuf;
use std::process::ExitCode;

use flotilla_sim::cli::{SimArgs, parse_seed_range};

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
    /// Run a range of seeds: A..B (B excluded) or A..=B.
    #[arg(long, value_name = "A..B", value_parser = parse_seed_range)]
    seeds: Option<(u64, u64)>,
    /// Print every event of every run.
    #[arg(long)]
    trace: bool,
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
        list: args.list,
    };
    // The simulator is single-threaded and CPU-bound: run it off the async workers.
    let code = tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        flotilla_sim::cli::run(&sim_args, &mut out)
    })
    .await??;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
