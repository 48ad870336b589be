//! `flotilla status`: one ship's status line (role, id, epoch, version, parent link,
//! children, pending requests, routes).

use std::process::ExitCode;
use std::time::Duration;

use crate::Outcome;
use crate::ship_cli::{self, ShipOpt};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    ship: ShipOpt,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let ship = args.ship.ship.as_str();
    let mut client = match ship_cli::connect(ship).await {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let limit = Duration::from_secs(10);
    Ok(
        match ship_cli::ask(ship, "status", limit, client.status()).await {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    )
}
