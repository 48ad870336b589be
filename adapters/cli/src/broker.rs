//! `flotilla broker accept|connect`: rendezvous through the ship hierarchy. A server
//! registers `accept KEY --advertise ADDR` at any ship, a client asks `connect KEY` at any
//! ship; both return once they are matched, or fail when their timeout passes.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use flotilla_core::ship::machine::DEFAULT_CONNECT_TIMEOUT;

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
    /// Wait for a client to connect to KEY; prints `conn=ID client=NAME` once matched.
    Accept {
        /// Rendezvous key.
        key: String,
        /// Where the client should connect (told to it as is).
        #[arg(long, value_name = "HOST:PORT")]
        advertise: String,
        /// Give up after this many seconds (default 30); exits 1 naming the key.
        #[arg(long, value_name = "SECS", value_parser = ship_cli::parse_secs)]
        timeout: Option<Duration>,
    },
    /// Find the server that accepts KEY; prints its advertised address once matched (and
    /// `conn=ID` on stderr).
    Connect {
        /// Rendezvous key.
        key: String,
        /// Give up after this many seconds (default 30); exits 1 naming the key.
        #[arg(long, value_name = "SECS", value_parser = ship_cli::parse_secs)]
        timeout: Option<Duration>,
        /// This client's name, told to the acceptor.
        #[arg(long)]
        name: Option<String>,
    },
}

pub(crate) async fn run(args: Args) -> Outcome {
    let ship = args.ship.ship.as_str();
    let mut client = match ship_cli::connect(ship).await {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    client.on_progress(|text| tracing::debug!(%text, "waiting"));
    let code = match args.command {
        Command::Accept {
            key,
            advertise,
            timeout,
        } => {
            let limit = timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT) + GRACE;
            let what = format!("accept {key}");
            let req = client.accept(&key, &advertise, timeout);
            match ship_cli::ask(ship, &what, limit, req).await {
                Ok(a) => {
                    println!("conn={} client={}", a.conn, a.client);
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        Command::Connect { key, timeout, name } => {
            let limit = timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT) + GRACE;
            let what = format!("connect {key}");
            let req = client.connect_key(&key, timeout, name.as_deref());
            match ship_cli::ask(ship, &what, limit, req).await {
                Ok(c) => {
                    println!("{}", c.acceptor);
                    eprintln!("conn={}", c.conn);
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
    };
    Ok(code)
}
