//! `flotilla`: the command-line front end. Each subcommand lives in its own module with an
//! `Args` struct and an async `run`; adding one means a new file and one line in
//! [`Command`].
//!
//! Results go to stdout; logs go to stderr, filtered by `RUST_LOG` (default `info` for the
//! daemons, `warn` for everything else).
//!
//! Ship commands (SPEC.md §5): `mothership` and `daughtership` run the daemons; `broker`,
//! `config` and `status` are clients of the ship named by `--ship` or `CRMOTHERSHIP`
//! (default `127.0.0.1:10000`). Client commands exit 1 with `error: …` on stderr when the
//! request fails; the daemons exit 2 on a configuration error and 1 when refused by
//! their parent.
//!
//! Flood commands (seed 002): `floodd` runs a site's flood daemon; `flood` is a client of
//! the daemon named by `--daemon` or `FLOODD` (default `127.0.0.1:2000`).
//!
//! Membership commands (seeds 001 and 004): `groupd` runs a group daemon; `members` asks
//! the one named by `--daemon` or `GROUPD` (default `127.0.0.1:4803`) for its view;
//! `group` and `service` are clients of the same daemon's groups and services (SPEC.md
//! §10.6).
//!
//! VIP commands (seed 003): `vipd` runs a node's VIP agent, a client of its `groupd`;
//! `vip` is the application's client of the agent's control socket, named by `--socket`
//! or `VIPD_SOCKET` (default `/run/flotilla/vipd.sock`) (SPEC.md §11.7–11.8).

use std::error::Error;
use std::hash::BuildHasher;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod broker;
mod config;
mod daemon;
mod daughtership;
mod demo;
mod flood_cli;
mod flood_runner;
mod floodd;
mod group_cli;
mod groupd;
mod heartbeat;
mod members;
mod mothership;
mod ship_cli;
mod ship_daemon;
mod sim;
mod state_file;
mod status;
mod vip_cli;
mod vip_net;
mod vipd;

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
    /// Run the root ship: serve a configuration file and broker connections.
    Mothership(mothership::Args),
    /// Run a ship that copies its parent's configuration and serves as the parent would.
    Daughtership(daughtership::Args),
    /// Rendezvous through the ships: `accept` a key as a server, `connect` to it as a client.
    #[command(subcommand_required = true)]
    Broker(broker::Args),
    /// Read or change the configuration through a ship: `get`, `set`, `claim`.
    #[command(subcommand_required = true)]
    Config(config::Args),
    /// Print a ship's status line.
    Status(status::Args),
    /// Run the flood daemon of one site (seed 002) until `terminate`, Ctrl-C or SIGTERM.
    Floodd(floodd::Args),
    /// Ask a flood daemon: `stats`, `topology`, `groups`, or `send` an update to flood.
    #[command(subcommand_required = true)]
    Flood(flood_cli::Args),
    /// Run the group daemon: one agreed view of which daemons are up (seeds 001, 004).
    Groupd(groupd::Args),
    /// Print the view a group daemon holds: its id, primary or not, every member.
    Members(members::Args),
    /// Client groups at a group daemon: `join`, `watch`, `send`, `members`, `list`.
    #[command(subcommand_required = true)]
    Group(group_cli::GroupArgs),
    /// Services at a group daemon: `bind` (and hold), `release`, `resolve`, `list`.
    #[command(subcommand_required = true)]
    Service(group_cli::ServiceArgs),
    /// Run the VIP agent of this node (seed 003): a client of the local groupd that
    /// holds, moves and announces virtual IP addresses.
    Vipd(vipd::Args),
    /// Ask or steer the local VIP agent: `status`, `eligible`, `prefer`, `move`, `watch`.
    #[command(subcommand_required = true)]
    Vip(vip_cli::Args),
    /// Run simulator scenarios: built-in (`--list`) or your own (`--file`), by seed.
    Sim(sim::Args),
}

/// The daemons' allocator (see Cargo.toml for why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Mothership(_)
        | Command::Daughtership(_)
        | Command::Floodd(_)
        | Command::Groupd(_)
        | Command::Vipd(_) => "info",
        _ => "warn",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
            Command::Mothership(args) => mothership::run(args).await,
            Command::Daughtership(args) => daughtership::run(args).await,
            Command::Broker(args) => broker::run(args).await,
            Command::Config(args) => config::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Floodd(args) => floodd::run(args).await,
            Command::Flood(args) => flood_cli::run(args).await,
            Command::Groupd(args) => groupd::run(args).await,
            Command::Members(args) => members::run(args).await,
            Command::Group(args) => group_cli::run_group(args).await,
            Command::Service(args) => group_cli::run_service(args).await,
            Command::Vipd(args) => vipd::run(args).await,
            Command::Vip(args) => vip_cli::run(args).await,
            Command::Sim(args) => sim::run(args).await,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
