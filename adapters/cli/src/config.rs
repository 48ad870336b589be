//! `flotilla config get|set|claim`: read and change the configuration through any ship.
//! A daughtership answers `get` from its copy; `set` and `claim` are decided by the
//! mothership and return once the asked ship has applied the change.

use std::process::ExitCode;

use clap::Subcommand;

use flotilla_core::ship::ShipTimings;

use crate::Outcome;
use crate::ship_cli::{self, GRACE, ShipOpt};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    ship: ShipOpt,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a value: NODE/…/KEY a parameter, NODE/…/host a host (`-` while unclaimed),
    /// a node path a one-line summary, a single word a global parameter or top-level node.
    Get {
        /// What to read.
        path: String,
    },
    /// Create or replace a parameter; prints `version=N`, the change's version, once the
    /// asked ship has applied it.
    Set {
        /// NODE/…/KEY, or KEY for a global parameter.
        path: String,
        /// The value (several words are joined with single spaces).
        #[arg(required = true, num_args = 1.., allow_negative_numbers = true)]
        value: Vec<String>,
    },
    /// Claim the first free dynamic node matching a glob (`*`, `?`); prints its path.
    Claim {
        /// Node pattern, e.g. `render/*`.
        pattern: String,
        /// The claimant's host (the ship names the connection if absent).
        #[arg(long)]
        host: Option<String>,
    },
}

pub(crate) async fn run(args: Args) -> Outcome {
    let ship = args.ship.ship.as_str();
    let mut client = match ship_cli::connect(ship).await {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // The ship's own bound on `set` and `claim` (SPEC.md §5.1), plus a margin.
    let limit = ShipTimings::default().config_timeout + GRACE;
    let result = match args.command {
        Command::Get { path } => {
            let what = format!("get {path}");
            ship_cli::ask(ship, &what, limit, client.get(&path)).await
        }
        Command::Set { path, value } => {
            let what = format!("set {path}");
            let value = value.join(" ");
            ship_cli::ask(ship, &what, limit, client.set(&path, &value))
                .await
                .map(|v| format!("version={v}"))
        }
        Command::Claim { pattern, host } => {
            let what = format!("claim {pattern}");
            let req = client.claim(&pattern, host.as_deref());
            ship_cli::ask(ship, &what, limit, req).await
        }
    };
    Ok(match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    })
}
