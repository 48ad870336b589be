//! What `flotilla mothership` and `flotilla daughtership` share: resolving `HOST:PORT`,
//! binding, and running a ship until Ctrl-C or SIGTERM while logging its events.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use std::process::ExitCode;

use flotilla_core::Rng;
use flotilla_core::ship::{Ship, ShipConfig, ShipEvent};
use flotilla_tokio::{Driver, DriverConfig};
use tracing::{debug, info, warn};

use crate::daemon::{self, EXIT_CONFIG, fail};
use crate::state_file::StateFile;

/// Resolves `HOST:PORT`, preferring an IPv4 address when the name has both (so
/// `localhost` meets a ship listening on 127.0.0.1).
pub(crate) async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| format!("{addr} resolves to no address"))
}

/// Settings every ship daemon takes.
#[derive(clap::Args, Debug)]
pub(crate) struct DaemonOpts {
    /// Close a client that leaves a line unfinished (bytes, no newline) this long, with
    /// `408` saying so.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = crate::ship_cli::parse_secs)]
    line_timeout: Duration,
}

impl DaemonOpts {
    /// Puts these settings into a ship's configuration.
    pub(crate) fn apply(&self, cfg: &mut ShipConfig) {
        cfg.limits.partial_line_timeout = self.line_timeout;
    }
}

/// Binds `listen`, builds the ship with `make` (given the address actually bound), prints
/// the ready line that `ready` makes from it, and serves until a signal or a refusal.
pub(crate) async fn run(
    listen: SocketAddr,
    make: impl FnOnce(SocketAddr) -> ShipConfig,
    ready: impl FnOnce(SocketAddr) -> String,
    store: StateFile,
) -> ExitCode {
    let mut config = DriverConfig::tcp(listen);
    let (cap, limit) = daemon::cap_clients(&mut config, |cap| {
        format!("503 too many connections ({cap} open, the most this ship holds): try again later")
    });
    let driver = match Driver::bind(config).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return fail(
                1,
                format_args!(
                    "cannot listen on {listen}: {e}: another ship already serves there (a hierarchy has exactly one mothership; start a daughtership to join it)"
                ),
            );
        }
        Err(e) => return fail(1, format_args!("cannot listen on {listen}: {e}")),
    };
    let me = driver.local_addrs().peer();
    if me.ip().is_unspecified() {
        warn!(
            %me,
            "listening on an unspecified address: this ship introduces itself to its parent \
             by it; prefer an address others can reach"
        );
    }
    let cfg = make(me);
    let parent = cfg.parent;
    let ship = match Ship::new(cfg, driver.now(), Rng::from_seed(crate::random_seed())) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    info!(
        id = format_args!("{:016x}", ship.id()),
        %me,
        clients = cap,
        descriptor_limit = limit,
        "ship started"
    );
    // Only a durable mothership asks for stores; the state file's writer runs them on a
    // thread of its own, off the ship's loop.
    let mut node = driver.start_with(ship, store);
    println!("{}", ready(me));
    // Whoever waits for the ready line may be reading a pipe.
    let _ = std::io::stdout().flush();

    // Pinned once, so a signal between two turns of the loop is not missed.
    let stop = daemon::stop_signal();
    tokio::pin!(stop);
    let code = loop {
        tokio::select! {
            ev = node.next_event() => match ev {
                Some(ShipEvent::Refused { reason }) => {
                    break fail(1, format_args!("refused by parent: {reason}"));
                }
                Some(ev) => log_event(ev, parent),
                None => break fail(1, "the ship stopped unexpectedly"),
            },
            r = &mut stop => match r {
                Ok(why) => {
                    info!("{why}");
                    break ExitCode::SUCCESS;
                }
                Err(e) => break fail(1, e),
            },
        }
    };
    let stats = node.stats();
    let ship = node.shutdown().await;
    info!(?stats, ship = ?ship.stats(), "ship stopped");
    code
}

fn log_event(ev: ShipEvent, parent: Option<SocketAddr>) {
    let parent = parent.map(|p| p.to_string()).unwrap_or_default();
    match ev {
        ShipEvent::Synced { epoch, version } => {
            info!(%parent, epoch = format_args!("{epoch:016x}"), version, "synced with parent");
        }
        ShipEvent::Changed { version } => info!(version, "configuration changed"),
        ShipEvent::ParentLost => warn!(
            %parent,
            "parent unreachable: serving from the local copy (if any) and retrying"
        ),
        ShipEvent::ParentRestored => info!(%parent, "parent answers again"),
        ShipEvent::ChildJoined(child) => info!(%child, "daughtership joined"),
        ShipEvent::ChildLost(child) => warn!(%child, "daughtership lost"),
        ShipEvent::Matched { key, conn } => info!(%key, %conn, "connection brokered"),
        ShipEvent::StoreFailed { version, error } => warn!(
            version,
            %error,
            "storing a change failed: nothing is acknowledged until a retry succeeds"
        ),
        other => debug!(event = ?other, "ship event"),
    }
}
