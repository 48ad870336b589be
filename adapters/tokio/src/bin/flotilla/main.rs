//! `flotilla`: the command-line front end. Each subcommand lives in its own module with an
//! `Args` struct and an async `run`; adding one means a new file and one line in
//! [`Command`].
//!
//! Results go to stdout; logs go to stderr, filtered by `RUST_LOG` (default `warn`).

use std::error::Error;
use std::hash::BuildHasher;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod demo;
mod heartbeat;

/// What a subcommand returns: an exit code, or an error to print.
type Outcome = Result<ExitCode, Box<dyn Error>>;

#[derive(Parser, Debug)]
#[command(name = "flotilla", version, about = "Cluster coordination toolkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a few heartbeat nodes in this process and show them detect a failure and a restart.
    Demo(demo::Args),
    /// Run one heartbeat node until Ctrl-C, printing peers going up and down.
    Heartbeat(heartbeat::Args),
}

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flotilla: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Heartbeat(args) => heartbeat::run(args).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flotilla: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A seed that differs on every run, so a restarted node gets a new incarnation. The
/// standard library's hasher keys are random per process; no clock is read.
fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0x666c_6f74_696c_6c61_u64)
}
