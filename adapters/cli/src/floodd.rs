//! `flotilla floodd`: the flood daemon of one site (seed 002). Reads the configuration
//! file, works out which site it is, listens on that site's data port (other daemons) and
//! client port (the command line interface), and floods until `terminate`, Ctrl-C or
//! SIGTERM. SIGHUP is logged and ignored: the configuration is read once, at start.
//!
//! Stopping loses nothing unrecorded (SPEC.md §8.8). With `--state FILE` the export run
//! in flight is let finish, and what still waits is written to the file and exported
//! after the restart; a crash leaves the file as last stored (before every export run,
//! and every second while something changed). Without a state file, a stop exports
//! everything waiting first, for at most `export-timeout` and two seconds more, and
//! logs every update it could not as lost.
//!
//! A site's identity on the wire is its data address, so the data port is bound on
//! exactly that address (the driver introduces this daemon to the ones it dials by it);
//! the client port is bound on the same IP address.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use flotilla_core::flood::config::{FloodConfig, MAX_CONFIG_FILE_BYTES, SiteDef};
use flotilla_core::flood::state::FloodState;
use flotilla_core::flood::{Flood, FloodCommand, FloodEvent, FloodSettings, SettingsError};
use flotilla_core::{ListenerId, Rng};
use flotilla_tokio::{Carries, Driver, DriverConfig, ListenAddr, PeerTransport};
use tracing::{debug, error, info, warn};

use crate::Outcome;
use crate::daemon::{self, EXIT_CONFIG, fail};
use crate::flood_runner::{FloodRunner, StateWriter};
use crate::state_file;

/// Listener ids: the data port carries peers, the client port clients.
const DATA: ListenerId = ListenerId(0);
const CLIENTS: ListenerId = ListenerId(1);

/// How long `terminate`'s own reply is given to reach its client before the node stops.
const TERMINATE_GRACE: Duration = Duration::from_millis(250);
/// How much longer than `export-timeout` a stop waits for the export pipeline.
const STOP_SLACK: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The configuration file: (:site-define …), (:group-define …) and (:local …) forms.
    /// Errors are reported as FILE:LINE:COL and exit with status 2 (1 with --check).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The site this daemon is. By default, the site whose hostname is this machine's
    /// host name.
    #[arg(long, value_name = "NAME")]
    site: Option<String>,
    /// Check the file and exit: print `ok: N sites, M groups` and exit 0 if it is valid
    /// (and, when the site is known, runs as that site), else print the error and exit 1.
    /// Host names that do not resolve here are warnings: they may resolve where the file
    /// is used.
    #[arg(long)]
    check: bool,
    /// Keep what must survive a stop or a crash in FILE (SPEC.md §8.8): every stream's
    /// marks, the updates waiting for the export command, the lost ranges not yet told
    /// to it. Read at start (a damaged file stops the daemon with the reason); written
    /// whole before every export run and each second while something changed.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> Outcome {
    let bad = if args.check { 1 } else { EXIT_CONFIG };
    let cfg = match read_config(&args.config) {
        Ok(c) => c,
        Err(e) => return Ok(fail(bad, e)),
    };
    let site = args.site.clone().or_else(|| {
        let host = host_name()?;
        cfg.site_for_host(&host).map(|s| s.name.clone())
    });
    if args.check {
        return Ok(check(&cfg, site.as_deref()));
    }
    let Some(site) = site else {
        let host = host_name().unwrap_or_else(|| "unknown".to_string());
        return Ok(fail(
            EXIT_CONFIG,
            format_args!(
                "cannot tell which site this is: no single site of {} has this host's name \
                 ({host}) as its hostname (sites: {}): pass --site NAME",
                args.config.display(),
                site_names(&cfg)
            ),
        ));
    };
    let mut resolver = Resolver::default();
    let mut settings = match FloodSettings::from_config(&cfg, &site, &mut |s| resolver.resolve(s)) {
        Ok(s) => s,
        Err(e) => return Ok(fail(EXIT_CONFIG, e)),
    };
    let state = match &args.state {
        Some(path) => match open_state(path, &site) {
            Ok(restore) => {
                settings.durable = true;
                settings.restore = restore;
                Some(Arc::new(StateWriter::new(path.clone())))
            }
            Err(e) => return Ok(fail(1, e)),
        },
        None => None,
    };
    for (name, host) in resolver.failed(&cfg) {
        warn!(
            site = name,
            hostname = host,
            "hostname does not resolve: the site is left out until it joins"
        );
    }
    Ok(serve(settings, state).await)
}

/// Reads the state file, if there is one, before anything is served: a file that is
/// damaged, another site's, or in a place that cannot be written stops the daemon with
/// the reason, rather than losing what it holds.
fn open_state(path: &Path, site: &str) -> Result<Option<FloodState>, String> {
    let shown = path.display();
    state_file::check_directory(path)?;
    let state = match std::fs::read(path) {
        Ok(bytes) => {
            let st = FloodState::decode(&Bytes::from(bytes))
                .map_err(|e| format!("{shown}: not a usable flood state file: {e}"))?;
            if st.site != site {
                return Err(format!(
                    "{shown} is the state file of site {}, not of {site}",
                    st.site
                ));
            }
            Some(st)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read the state file {shown}: {e}")),
    };
    state_file::check_writable(path)?;
    Ok(state)
}

/// Reads and parses the file, refusing one past the size limit before reading it all.
fn read_config(path: &Path) -> Result<FloodConfig, String> {
    let bytes = daemon::read_config_file(path, MAX_CONFIG_FILE_BYTES, "a flood configuration")?;
    // SexprError displays as LINE:COL: message.
    FloodConfig::parse_bytes(&bytes).map_err(|e| format!("{}:{e}", path.display()))
}

/// This machine's host name, as the kernel has it.
pub(crate) fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
}

fn site_names(cfg: &FloodConfig) -> String {
    let names: Vec<&str> = cfg.sites.iter().map(|s| s.name.as_str()).collect();
    names.join(", ")
}

/// Resolves site host names (blocking, at startup), remembering each answer so that a
/// name is looked up once, and which names failed.
#[derive(Default)]
struct Resolver {
    answers: BTreeMap<String, (String, Option<IpAddr>)>,
}

impl Resolver {
    fn resolve(&mut self, site: &SiteDef) -> Option<IpAddr> {
        let host = site.hostname.as_deref()?;
        if let Some((_, ip)) = self.answers.get(&site.name) {
            return *ip;
        }
        // The port is only there to make a socket address; the data port is the site's.
        let all: Vec<SocketAddr> = (host, site.data_port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default();
        // IPv4 first, so that a name with both meets daemons listening on IPv4.
        let ip = all
            .iter()
            .find(|a| a.is_ipv4())
            .or(all.first())
            .map(SocketAddr::ip);
        self.answers
            .insert(site.name.clone(), (host.to_string(), ip));
        ip
    }

    /// `(site, hostname)` of every name that did not resolve, in the file's order.
    fn failed<'a>(&'a self, cfg: &'a FloodConfig) -> impl Iterator<Item = (&'a str, &'a str)> {
        cfg.sites
            .iter()
            .filter_map(|s| match self.answers.get(&s.name) {
                Some((host, None)) => Some((s.name.as_str(), host.as_str())),
                _ => None,
            })
    }
}

/// `--check`: the file parsed; resolve every host name (warnings: a name may resolve
/// where the file is used, not here), then the site if one is known. Exit 0 with a
/// summary, or 1 with the error.
fn check(cfg: &FloodConfig, site: Option<&str>) -> ExitCode {
    let mut resolver = Resolver::default();
    for s in cfg.sites.iter().filter(|s| s.inet_address.is_none()) {
        resolver.resolve(s);
    }
    for (name, host) in resolver.failed(cfg) {
        eprintln!("warning: site {name}: hostname {host} does not resolve here");
    }
    match site {
        Some(site) => match FloodSettings::from_config(cfg, site, &mut |s| resolver.resolve(s)) {
            Ok(_) => {}
            Err(e @ SettingsError::Unresolved(..)) => {
                eprintln!("warning: floodd --site {site} would not start here: {e}");
            }
            Err(e) => return fail(1, e),
        },
        None => {
            let host = host_name().unwrap_or_else(|| "unknown".to_string());
            eprintln!(
                "note: no --site, and this host's name ({host}) is no single site's hostname: \
                 the file was checked, not resolved for a site"
            );
        }
    }
    println!("ok: {} sites, {} groups", cfg.sites.len(), cfg.groups.len());
    ExitCode::SUCCESS
}

/// Binds the data and client ports, runs the machine, and logs its events until it is
/// told to stop.
async fn serve(settings: FloodSettings, state: Option<Arc<StateWriter>>) -> ExitCode {
    let me = settings.me.clone();
    let client_addr = me.client_addr();
    let mut config = DriverConfig::new(PeerTransport::Tcp)
        .with_listener(DATA, ListenAddr::Tcp(me.data), Carries::Peers)
        .with_listener(CLIENTS, ListenAddr::Tcp(client_addr), Carries::Clients);
    // One chunk a client sends may hold a thousand small updates, each a frame for every
    // neighbour: queues deep enough for that, so the driver holds clients back while they
    // drain rather than dropping frames (SPEC.md §7).
    config.peer_queue = 8192;
    let (cap, limit) = daemon::cap_clients(&mut config, |cap| {
        format!(
            "421 too many connections ({cap} open, the most this daemon holds): try again later"
        )
    });
    let driver = match Driver::bind(config).await {
        Ok(d) => d,
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                ": is another floodd running there?"
            } else {
                ""
            };
            return fail(
                1,
                format_args!(
                    "site {}: cannot listen on {} (data) and {client_addr} (clients): {e}{hint}",
                    me.name, me.data
                ),
            );
        }
    };
    let data = driver.local_addrs().tcp(DATA).unwrap_or(me.data);
    let clients = driver.local_addrs().tcp(CLIENTS).unwrap_or(client_addr);
    let runner = FloodRunner::new(&settings, state.clone());
    let stop_wait = settings.local.export_timeout + STOP_SLACK;
    let restored = settings.restore.as_ref().map(|st| {
        st.groups
            .iter()
            .map(|g| g.waiting.len() + g.lost.len())
            .sum::<usize>()
    });
    let groups: Vec<String> = settings.groups.iter().map(|g| g.name.clone()).collect();
    let flood = Flood::new(settings, driver.now(), Rng::from_seed(crate::random_seed()));
    info!(
        site = %me.name,
        incarnation = format_args!("{:016x}", flood.incarnation()),
        %data,
        %clients,
        groups = groups.join(","),
        clients_max = cap,
        descriptor_limit = limit,
        "floodd started"
    );
    if let Some(items) = restored {
        info!(items, "resumed from the state file");
    }
    let mut node = driver.start_with(flood, runner);
    println!(
        "floodd {} listening on {data} (data) and {clients} (clients)",
        me.name
    );
    // Whoever waits for the ready line may be reading a pipe.
    let _ = std::io::stdout().flush();

    // Pinned once, so a signal between two turns of the loop is not missed.
    let stop = daemon::stop_signal();
    tokio::pin!(stop);
    let mut hangups = hangups();
    let code = loop {
        tokio::select! {
            ev = node.next_event() => match ev {
                Some(FloodEvent::Terminate) => {
                    info!("terminate asked by a client on this host");
                    // The machine has answered `221 terminating`, but stopping the node
                    // stops its client writers at once: give that one line time to leave.
                    tokio::time::sleep(TERMINATE_GRACE).await;
                    break ExitCode::SUCCESS;
                }
                Some(ev) => log_event(ev),
                None => break fail(1, "the flood daemon stopped unexpectedly"),
            },
            r = &mut stop => match r {
                Ok(why) => {
                    info!("{why}");
                    break ExitCode::SUCCESS;
                }
                Err(e) => break fail(1, e),
            },
            Some(()) = hangups.recv() => {
                warn!(
                    "SIGHUP ignored: floodd reads its configuration only at start; \
                     restart it to apply a change"
                );
            }
        }
    };
    finish_exports(&mut node, state.is_some(), stop_wait).await;
    let stats = node.stats();
    let mut flood = node.shutdown().await;
    match &state {
        Some(w) => match w.store(&flood.final_state(), u64::MAX) {
            Ok(()) => info!("state file written: what waits is exported after the restart"),
            Err(e) => error!(%e, "the state written last stands: what changed since is lost"),
        },
        None => log_unexported(&flood),
    }
    info!(?stats, flood = ?flood.stats(), "floodd stopped");
    code
}

/// Asks the machine to stop exporting (with no state file, to export what waits first)
/// and waits for it to say `Stopped`, for at most `wait`, logging events meanwhile.
async fn finish_exports(
    node: &mut flotilla_tokio::NodeHandle<Flood>,
    durable: bool,
    wait: Duration,
) {
    if node
        .command(FloodCommand::Stop { drain: !durable })
        .await
        .is_err()
    {
        return;
    }
    let waited = tokio::time::timeout(wait, async {
        while let Some(ev) = node.next_event().await {
            match ev {
                FloodEvent::Stopped => return,
                ev => log_event(ev),
            }
        }
    })
    .await;
    if waited.is_err() {
        warn!(
            seconds = wait.as_secs_f64(),
            "the export command did not finish in time: stopping it"
        );
    }
}

/// Without a state file: every update that waits still is lost, and said so, one line
/// per range.
fn log_unexported(flood: &Flood) {
    let (ranges, lost_records) = flood.unexported();
    for (group, stream, from, to) in ranges {
        error!(
            %group,
            origin = %stream.origin,
            incarnation = format_args!("{:016x}", stream.incarnation),
            from,
            to,
            "updates lost: the daemon stopped before they were exported (run it with --state to keep them)"
        );
    }
    if lost_records > 0 {
        error!(
            lost_records,
            "lost ranges not told to the export command: the daemon stopped first"
        );
    }
}

/// SIGHUP, one `()` each; never where there is no such signal. Taking it keeps the
/// default action (exit) from killing the daemon.
fn hangups() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut s) => {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        let _ = tx.try_send(());
                    }
                });
            }
            Err(e) => warn!(%e, "cannot catch SIGHUP: it will stop the daemon"),
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

fn log_event(ev: FloodEvent) {
    match ev {
        FloodEvent::Delivered {
            group,
            origin,
            incarnation,
            seq,
        } => debug!(
            %group,
            %origin,
            incarnation = format_args!("{incarnation:016x}"),
            seq,
            "delivered"
        ),
        FloodEvent::Missing {
            group,
            origin,
            incarnation,
            from,
            to,
        } => warn!(
            %group,
            %origin,
            incarnation = format_args!("{incarnation:016x}"),
            from,
            to,
            "updates missing: fetching them from neighbours"
        ),
        FloodEvent::Lost {
            group,
            origin,
            incarnation,
            from,
            to,
            reason,
        } => warn!(
            %group,
            %origin,
            incarnation = format_args!("{incarnation:016x}"),
            from,
            to,
            reason = reason.as_str(),
            "updates lost: they will not be exported here"
        ),
        FloodEvent::Topology {
            group,
            version,
            members,
            links,
        } => info!(%group, version, members, links, "topology adopted"),
        FloodEvent::Joined { group, site } => info!(%group, %site, "site joined"),
        FloodEvent::Purged { site } => {
            info!(%site, "site forgotten: not heard from for site-purge-period");
        }
        FloodEvent::GeneratorFailed { group, error } => info!(
            %group,
            %error,
            "topology generator failed: the built-in generator was used"
        ),
        FloodEvent::ExportFailed { error } => {
            info!(%error, "export failed: it will be retried");
        }
        FloodEvent::StoreFailed { error } => {
            error!(%error, "state file not written: it will be retried; exports wait for it");
        }
        FloodEvent::Terminate | FloodEvent::Stopped => {}
    }
}
