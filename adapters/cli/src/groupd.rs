//! `flotilla groupd`: the group daemon (seeds 001, 003 and 004; SPEC.md §9–10). Runs this
//! daemon's membership, client groups and service groups (`GroupDaemon`) on one TCP port
//! (`--listen`) that carries both the other daemons' frames and local clients' lines
//! (told apart by their first byte), and on a Unix socket for clients (`--socket`); logs
//! every view change with its cause, reloads its configuration file on SIGHUP or a
//! client's `reload`, and leaves the cluster on SIGTERM or Ctrl-C before it exits.
//!
//! `flotilla groupd --reload` asks the daemon at `--listen` to reload, prints its answer
//! and exits.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use flotilla_core::compose::Either;
use flotilla_core::groups::front::{FrontEvent, FrontSettings, GroupsFront, MAX_MEMBERSHIPS};
use flotilla_core::groups::{GroupDaemon, GroupsSettings, MembershipLink};
use flotilla_core::membership::config_file::{self, MAX_CONFIG_FILE_BYTES, valid_name};
use flotilla_core::membership::{
    ClusterConfig, Membership, MembershipCommand, MembershipEvent, MembershipSettings, View,
};
use flotilla_core::{ListenerId, Rng};
use flotilla_tokio::client::LineClient;
use flotilla_tokio::{Carries, Driver, DriverConfig, ListenAddr};
use tracing::{error, info, warn};

use crate::Outcome;
use crate::daemon::{self, EXIT_CONFIG, fail};
use crate::ship_cli::CONNECT_TIMEOUT;

/// The daemon's address when `--listen` is not given (Spread's port is 4803).
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:4803";

/// How often a daemon still alone after asking to join says so.
const LONELY_WARNING: Duration = Duration::from_secs(5);

/// How long a daemon asked to stop waits to be out of the view before it exits anyway.
const LEAVE_LIMIT: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// This daemon's name: 1 to 64 letters, digits, '.', '_' or '-', unique in the
    /// cluster.
    #[arg(long, value_name = "NAME", required_unless_present = "reload")]
    name: Option<String>,
    /// Where this daemon meets the other daemons and local clients (one TCP port). An
    /// IP address: it is this daemon's identity on the wire. Default: the address the
    /// configuration file lists for --name, else 127.0.0.1:4803.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// A running daemon to join through (any member); may be given several times.
    #[arg(long, value_name = "HOST:PORT")]
    join: Vec<String>,
    /// A configuration file: (:daemon (:name N) (:address IP:PORT)) forms and a
    /// (:timing …) form. Errors are reported as FILE:LINE:COL and exit with status 2.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Ask the daemon at --listen to read its configuration file again and apply it to
    /// the cluster (one view change), print its answer and exit.
    #[arg(long)]
    reload: bool,
    /// A Unix-domain socket for local clients, besides the TCP port (a stale socket file
    /// is replaced; the file is removed when the daemon stops).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Cluster ports handed to services by `bind` (every daemon of a cluster must use the
    /// same range).
    #[arg(long, value_name = "LO-HI", default_value = "7000-7999", value_parser = parse_ports)]
    ports: (u16, u16),
    /// Bytes of messages and notices a client may leave unread before it is closed as
    /// too slow (after a `699` notice), so one stuck reader cannot hold the daemon's
    /// memory.
    #[arg(long, value_name = "BYTES", default_value_t = CLIENT_BYTES, value_parser = clap::value_parser!(u64).range(65_536..=1 << 30))]
    client_buffer: u64,
    /// Memberships (clients in groups, agents in services) the cluster takes; a join or
    /// bind past it is refused with 452. A view change carries them all in one frame, so
    /// the most is 200000.
    #[arg(long, value_name = "N", default_value_t = MAX_MEMBERSHIPS as u64, value_parser = clap::value_parser!(u64).range(1..=MAX_MEMBERSHIPS as u64))]
    max_memberships: u64,
}

/// Reads `LO-HI` (1 ≤ LO ≤ HI ≤ 65535).
fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?}: expected LO-HI, two ports with LO <= HI, such as 7000-7999");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

pub(crate) async fn run(args: Args) -> Outcome {
    if args.reload {
        let addr = args.listen.as_deref().unwrap_or(DEFAULT_ADDR);
        return Ok(ask_reload(addr).await);
    }
    let Some(name) = args.name.clone() else {
        return Ok(fail(EXIT_CONFIG, "--name is required"));
    };
    if !valid_name(&name) {
        return Ok(fail(
            EXIT_CONFIG,
            format_args!("--name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"),
        ));
    }
    let config = match &args.config {
        Some(path) => match read_config(path) {
            Ok(c) => c,
            Err(e) => return Ok(fail(EXIT_CONFIG, e)),
        },
        None => ClusterConfig::default(),
    };
    let listed = config
        .daemons
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a);
    let listen = match (&args.listen, listed) {
        (Some(l), _) => match resolve(l) {
            Ok(a) => a,
            Err(e) => return Ok(fail(EXIT_CONFIG, format_args!("--listen {l}: {e}"))),
        },
        (None, Some(a)) => a,
        (None, None) => DEFAULT_ADDR.parse().expect("a valid default address"),
    };
    if listen.ip().is_unspecified() {
        return Ok(fail(
            EXIT_CONFIG,
            format_args!(
                "--listen {listen}: give this host's own address, not a wildcard: other \
                 daemons reach this one by it"
            ),
        ));
    }
    if let Some(a) = listed
        && a != listen
    {
        return Ok(fail(
            EXIT_CONFIG,
            format_args!(
                "the configuration file lists {name} at {a}, but --listen says {listen}: \
                 change one of them"
            ),
        ));
    }
    let mut join = Vec::new();
    for j in &args.join {
        match resolve(j) {
            Ok(a) => join.push(a),
            Err(e) => return Ok(fail(EXIT_CONFIG, format_args!("--join {j}: {e}"))),
        }
    }
    let mut settings = MembershipSettings::new(&name, listen);
    settings.join = join;
    settings.config = config;
    if let Err(e) = settings.validate() {
        return Ok(fail(EXIT_CONFIG, e));
    }
    let buffer = usize::try_from(args.client_buffer).unwrap_or(usize::MAX);
    let most = usize::try_from(args.max_memberships).unwrap_or(MAX_MEMBERSHIPS);
    Ok(serve(
        settings,
        args.config,
        args.socket,
        (args.ports, buffer, most),
    )
    .await)
}

/// Resolves `HOST:PORT` to one address, IPv4 first.
fn resolve(s: &str) -> Result<SocketAddr, String> {
    let all: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("not a HOST:PORT that resolves ({e})"))?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| "resolves to no address".to_string())
}

/// Reads and parses the file, refusing one past the size limit before reading it all.
fn read_config(path: &Path) -> Result<ClusterConfig, String> {
    let bytes =
        daemon::read_config_file(path, MAX_CONFIG_FILE_BYTES, "a group daemon configuration")?;
    // SexprError displays as LINE:COL: message.
    config_file::parse_bytes(&bytes).map_err(|e| format!("{}:{e}", path.display()))
}

/// `--reload`: one `reload` request to the daemon at `addr`.
async fn ask_reload(addr: &str) -> ExitCode {
    let client = tokio::time::timeout(CONNECT_TIMEOUT, LineClient::connect(addr)).await;
    let mut client = match client {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(1, format_args!("cannot reach groupd at {addr}: {e}")),
        Err(_) => return fail(1, format_args!("cannot reach groupd at {addr}: no answer")),
    };
    match tokio::time::timeout(Duration::from_secs(10), client.request("reload")).await {
        Ok(Ok(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => fail(1, format_args!("groupd at {addr}: {e}")),
        Err(_) => fail(
            1,
            format_args!("groupd at {addr}: no answer to reload in 10s"),
        ),
    }
}

/// Frames queued for one peer at most (several sequencer windows).
const PEER_FRAMES: usize = 4096;
/// Writes queued for one client at most.
const CLIENT_WRITES: usize = 65_536;
/// Bytes queued for one client at most: a client further behind is closed as too slow.
const CLIENT_BYTES: u64 = 8 * 1024 * 1024;

/// The Unix socket listener's number.
const SOCKET: ListenerId = ListenerId(1);

/// What a client too slow to read its notices reads before the daemon closes it.
const SLOW_NOTICE: &[u8] =
    b"\n699 closing: this client fell too far behind reading its messages and notices\n";

async fn serve(
    settings: MembershipSettings,
    config_path: Option<PathBuf>,
    socket: Option<PathBuf>,
    (ports, client_bytes, max_memberships): ((u16, u16), usize, usize),
) -> ExitCode {
    let name = settings.name.clone();
    let listen = settings.addr;
    let mut config = DriverConfig::tcp(listen);
    if let Some(p) = &socket {
        config = config.with_listener(SOCKET, ListenAddr::Unix(p.clone()), Carries::Clients);
    }
    config.slow_notice = bytes::Bytes::from_static(SLOW_NOTICE);
    // A burst (a thousand members joining) is many small writes to every member: count
    // writes generously and bound what a client may let pile up in bytes instead.
    config.client_queue = CLIENT_WRITES;
    // The sequencer sends a window of up to 1,024 orders to every member at once.
    config.peer_queue = PEER_FRAMES;
    // A view change carries the whole group table in one frame.
    config.limits.max_payload = flotilla_core::groups::msg::GROUPS_FRAME_LIMIT;
    config.client_bytes = client_bytes;
    let (cap, limit) = daemon::cap_clients(&mut config, |cap| {
        format!(
            "421 too many connections ({cap} open, the most this daemon holds): try again later"
        )
    });
    let driver = match Driver::bind(config).await {
        Ok(d) => d,
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                ": is another groupd running there?"
            } else {
                ""
            };
            let at = match &socket {
                Some(p) => format!("{listen} and {}", p.display()),
                None => listen.to_string(),
            };
            return fail(
                1,
                format_args!("groupd {name}: cannot listen on {at}: {e}{hint}"),
            );
        }
    };
    let listed = settings.config.daemons.len();
    let joining: Vec<String> = settings.join.iter().map(ToString::to_string).collect();
    let membership = Membership::new(settings, driver.now(), Rng::from_seed(crate::random_seed()));
    let incarnation = membership.me().incarnation;
    let mut front = FrontSettings::new(GroupsSettings {
        me: membership.me().clone(),
        canary_deliver_early: false,
    });
    front.ports = ports;
    front.max_memberships = max_memberships;
    let front = GroupsFront::new(front, driver.now());
    let machine = GroupDaemon::linked(membership, front, MembershipLink);
    info!(
        name = %name,
        incarnation = format_args!("{incarnation:016x}"),
        %listen,
        socket = socket.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        ports = format_args!("{}-{}", ports.0, ports.1),
        listed,
        join = joining.join(","),
        clients_max = cap,
        descriptor_limit = limit,
        "groupd started"
    );
    let mut node = driver.start(machine);
    match &socket {
        Some(p) => println!(
            "groupd {name} listening on {listen} (peers and clients) and {} (clients)",
            p.display()
        ),
        None => println!("groupd {name} listening on {listen} (peers and clients)"),
    }
    // Whoever waits for the ready line may be reading a pipe.
    let _ = std::io::stdout().flush();

    // A daemon that asked to join and is still alone says so (once a while), instead of
    // waiting in silence on a seed that is down or mistyped.
    let mut lonely = tokio::time::interval(LONELY_WARNING);
    lonely.tick().await;
    let mut hangups = hangup_signals();
    let stop = daemon::stop_signal();
    tokio::pin!(stop);
    let mut last: Option<View> = None;
    let code = loop {
        tokio::select! {
            ev = node.next_event() => match ev {
                Some(Either::B(FrontEvent::PortMoved { service, port })) => {
                    warn!(service, port, "a partition healed with this port handed out twice: the younger binding moved");
                }
                Some(Either::B(FrontEvent::BarrierWaiting { service, event, missing })) => {
                    warn!(service, event, missing = missing.join(","), "recovery barrier still waiting for these nodes");
                }
                Some(Either::B(FrontEvent::Flushed { view, took })) => {
                    info!(view = %view, took_ms = took.as_millis() as u64, "flush finished");
                }
                Some(Either::B(_)) => {}
                Some(Either::A(MembershipEvent::ViewInstalled { view, joined, left })) => {
                    log_view(&name, last.as_ref(), &view, &joined, &left);
                    last = Some(view);
                }
                Some(Either::A(MembershipEvent::ReloadRequested)) => {
                    reload(&node, config_path.as_deref(), "a client asked").await;
                }
                Some(Either::A(MembershipEvent::Refused { reason })) => {
                    break fail(1, format_args!("groupd {name} refused by the cluster: {reason}"));
                }
                Some(Either::A(MembershipEvent::Left)) => {
                    info!("left the cluster as asked");
                    break ExitCode::SUCCESS;
                }
                None => break fail(1, "the group daemon stopped unexpectedly"),
            },
            _ = lonely.tick() => {
                if last.as_ref().is_some_and(|v| v.members.len() == 1) && !joining.is_empty() {
                    warn!(join = joining.join(","), "still alone: no daemon has taken this one in yet (still asking)");
                }
            }
            () = next_hangup(&mut hangups) => {
                reload(&node, config_path.as_deref(), "SIGHUP").await;
            }
            r = &mut stop => match r {
                Ok(why) => {
                    info!("{why}: leaving the cluster");
                    leave(&mut node).await;
                    break ExitCode::SUCCESS;
                }
                Err(e) => break fail(1, e),
            },
        }
    };
    let stats = node.stats();
    let machine = node.shutdown().await;
    info!(?stats, membership = ?machine.a().stats(), groups = ?machine.b().groups().stats(), front = ?machine.b().stats(), "groupd stopped");
    code
}

type Node = flotilla_tokio::NodeHandle<GroupDaemon>;

/// Reads the configuration file again and hands it to the machine, which sends it to the
/// coordinator; a file that cannot be read is reported to the clients that asked.
async fn reload(node: &Node, path: Option<&Path>, why: &str) {
    let cmd = match path {
        None => {
            warn!(
                cause = why,
                "reload asked, but this daemon was started without --config"
            );
            MembershipCommand::ReloadRefused(
                "this daemon was started without --config: there is no file to read".into(),
            )
        }
        Some(p) => match read_config(p) {
            Ok(cfg) => {
                info!(cause = why, file = %p.display(), daemons = cfg.daemons.len(), "configuration read again");
                MembershipCommand::Reload(cfg)
            }
            Err(e) => {
                error!(
                    cause = why,
                    "reload failed, the configuration in force is kept: {e}"
                );
                MembershipCommand::ReloadRefused(e)
            }
        },
    };
    if let Err(e) = node.command(Either::A(cmd)).await {
        error!("reload not applied: {e}");
    }
}

/// Leaves on purpose (the others install a view without this daemon at once) and waits
/// for it, at most [`LEAVE_LIMIT`].
async fn leave(node: &mut Node) {
    if node
        .command(Either::A(MembershipCommand::Leave))
        .await
        .is_err()
    {
        return;
    }
    let out = tokio::time::timeout(LEAVE_LIMIT, async {
        while let Some(ev) = node.next_event().await {
            if matches!(ev, Either::A(MembershipEvent::Left)) {
                return;
            }
        }
    })
    .await;
    if out.is_err() {
        warn!("not out of the view within {LEAVE_LIMIT:?}: stopping anyway");
    }
}

/// Logs a view change with its cause at info level.
fn log_view(me: &str, last: Option<&View>, view: &View, joined: &[String], left: &[String]) {
    let mut causes = Vec::new();
    if last.is_none() {
        causes.push("started".to_string());
    }
    let joined: Vec<&str> = joined
        .iter()
        .map(String::as_str)
        .filter(|n| *n != me)
        .collect();
    if !joined.is_empty() {
        causes.push(format!("joined: {}", joined.join(",")));
    }
    if !left.is_empty() {
        causes.push(format!(
            "gone (failed, left or removed): {}",
            left.join(",")
        ));
    }
    if let Some(l) = last {
        // Same name, new incarnation: the daemon restarted between two views.
        let restarted: Vec<&str> = view
            .members
            .iter()
            .filter(|m| {
                l.member(&m.name)
                    .is_some_and(|o| o.incarnation != m.incarnation)
            })
            .map(|m| m.name.as_str())
            .collect();
        if !restarted.is_empty() {
            causes.push(format!(
                "restarted (new incarnation): {}",
                restarted.join(",")
            ));
        }
        if l.config_version != view.config_version {
            causes.push(format!("configuration {} applied", view.config_version));
        }
        if l.primary != view.primary {
            causes.push(if view.primary {
                "now primary (a majority of the last primary view is here)".to_string()
            } else {
                "no longer primary (no majority of the last primary view here)".to_string()
            });
        }
    }
    if causes.is_empty() {
        causes.push("re-agreed".to_string());
    }
    let members: Vec<&str> = view.names().collect();
    info!(
        view = %view.id,
        incarnation = %format_args!("{:016x}", view.id.incarnation),
        primary = view.primary,
        members = members.join(","),
        cause = causes.join("; "),
        "view installed"
    );
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangup_signals() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangup_signals() -> Hangups {}

/// Resolves at the next SIGHUP; never where there is none.
async fn next_hangup(h: &mut Hangups) {
    #[cfg(unix)]
    if let Some(s) = h.as_mut()
        && s.recv().await.is_some()
    {
        return;
    }
    let _ = h;
    std::future::pending::<()>().await;
}
