//! `flotilla mothership`: the root ship. Reads the configuration file (SPEC.md §5.2),
//! serves it to daughterships and line-protocol clients on one TCP port, and brokers
//! connections, until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use flotilla_core::ship::ShipConfig;
use flotilla_core::ship::tree::{ConfigTree, MAX_CONFIG_BYTES};

use crate::Outcome;
use crate::daemon::{EXIT_CONFIG, fail};
use crate::ship_daemon::{self, DaemonOpts};
use crate::state_file::StateFile;
use flotilla_core::sexpr;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The configuration file ((:param …), (:node …), (:host …), (:dynamic)); an empty
    /// file is valid. Errors are reported as FILE:LINE:COL and exit with status 2.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Address for daughterships and clients (one port serves both).
    #[arg(
        long,
        env = "CRMOTHERSHIP",
        default_value = "127.0.0.1:10000",
        value_name = "HOST:PORT"
    )]
    listen: String,
    /// Store every configuration change in FILE before acknowledging it, and start from
    /// FILE when it exists (it then takes precedence over --config; delete it to start
    /// afresh from the configuration file). Without it, changes made with `set` and
    /// `claim` live only in memory.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Refuse changes that would grow the configuration past this many bytes (of its
    /// encoded form); at most, and by default, 64 MiB.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_CONFIG_BYTES,
          value_parser = clap::value_parser!(usize))]
    max_config_bytes: usize,
    #[command(flatten)]
    daemon: DaemonOpts,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let file = args.config.display();
    let bytes = match std::fs::read(&args.config) {
        Ok(b) => b,
        Err(e) => return Ok(fail(EXIT_CONFIG, format_args!("{file}: {e}"))),
    };
    // A binary file, or one in another encoding, is named with the first bad byte's place.
    let tree = match sexpr::utf8(&bytes).and_then(ConfigTree::parse) {
        Ok(t) => t,
        // SexprError displays as LINE:COL: message.
        Err(e) => return Ok(fail(EXIT_CONFIG, format_args!("{file}:{e}"))),
    };
    if args.max_config_bytes > MAX_CONFIG_BYTES || args.max_config_bytes == 0 {
        return Ok(fail(
            EXIT_CONFIG,
            format_args!("--max-config-bytes must be from 1 to {MAX_CONFIG_BYTES}"),
        ));
    }
    let listen = match ship_daemon::resolve(&args.listen).await {
        Ok(a) => a,
        Err(e) => return Ok(fail(EXIT_CONFIG, e)),
    };
    tracing::info!(config = %file, "configuration read");
    // Checked before anything is served: a state file that cannot be written stops the
    // mothership now, not at its first change.
    let (restore, store) = match &args.state {
        Some(path) => match StateFile::open(path) {
            Ok(opened) => opened,
            Err(e) => return Ok(fail(EXIT_CONFIG, e)),
        },
        None => (None, StateFile::none()),
    };
    if let Some(st) = &restore {
        tracing::info!(version = st.version, "starting from the state file");
    }
    let durable = args.state.is_some();
    let code: ExitCode = ship_daemon::run(
        listen,
        |me| {
            let mut cfg = ShipConfig::mothership(me, tree);
            cfg.durable = durable;
            cfg.restore = restore;
            cfg.limits.max_config_bytes = args.max_config_bytes;
            args.daemon.apply(&mut cfg);
            cfg
        },
        |me| format!("mothership listening on {me}"),
        store,
    )
    .await;
    Ok(code)
}
