//! `flotilla daughtership`: a ship that copies its configuration from a parent (the
//! mothership or another daughtership) and then serves clients and its own daughterships
//! just as a mothership would, brokering connections across the hierarchy. It keeps
//! serving from its copy while the parent is away.

use std::process::ExitCode;

use flotilla_core::ship::ShipConfig;

use crate::Outcome;
use crate::daemon::{EXIT_CONFIG, fail};
use crate::ship_daemon::{self, DaemonOpts};
use crate::state_file::StateFile;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The parent ship (mothership or daughtership).
    #[arg(long, env = "CRMOTHERSHIP", value_name = "HOST:PORT")]
    parent: Option<String>,
    /// Address for child daughterships and clients (one port serves both). The parent
    /// knows this ship by it, so use one the parent can reach.
    #[arg(
        long,
        env = "CRDAUGHTERSHIP",
        default_value = "127.0.0.1:10001",
        value_name = "HOST:PORT"
    )]
    listen: String,
    #[command(flatten)]
    daemon: DaemonOpts,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let Some(parent_text) = args.parent else {
        return Ok(fail(
            EXIT_CONFIG,
            "no parent ship: pass --parent HOST:PORT or set CRMOTHERSHIP",
        ));
    };
    let (parent, listen) = match (
        ship_daemon::resolve(&parent_text).await,
        ship_daemon::resolve(&args.listen).await,
    ) {
        (Ok(p), Ok(l)) => (p, l),
        (Err(e), _) | (_, Err(e)) => return Ok(fail(EXIT_CONFIG, e)),
    };
    if parent == listen {
        return Ok(fail(
            EXIT_CONFIG,
            format_args!(
                "the parent {parent_text} is this daughtership's own listen address; \
                 a ship cannot be its own parent"
            ),
        ));
    }
    let code: ExitCode = ship_daemon::run(
        listen,
        |me| {
            let mut cfg = ShipConfig::daughtership(me, parent);
            args.daemon.apply(&mut cfg);
            cfg
        },
        |me| format!("daughtership listening on {me} (parent {parent})"),
        StateFile::none(),
    )
    .await;
    Ok(code)
}
