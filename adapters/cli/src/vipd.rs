//! `flotilla vipd`: the VIP agent of one node (seed 003; SPEC.md §11.8). It runs the
//! core's `VipAgent` under the driver, as a client of the node's `groupd` (as Wackamole
//! is a Spread client): the group's views and agreed messages go in, the agent's lines
//! go out with `send`. Its effects are run here: addresses added and removed over
//! netlink, gratuitous ARP and unsolicited NA, health-check commands and the notify
//! hook. Applications steer it on a Unix socket (`--socket`) whose file mode decides who
//! may (`flotilla vip …`, no root needed).
//!
//! **The lease.** A holder must let go of its addresses before the others may take them.
//! They take them once membership has removed this node's daemon (suspect-after plus
//! verify-for, 0.9 s by default). So vipd asks its `groupd` something every `lease / 2`
//! and, if no answer comes within `--lease` (default 400 ms), treats the daemon as gone:
//! the agent is `Detached` (it removes every address), the connection is dropped, and
//! vipd connects again and rejoins. A `groupd` that is stopped (SIGSTOP) or wedged thus
//! costs its node the VIPs, never a second holder — if the lease is shorter than the
//! cluster's detection time, which `--lease` must respect.
//!
//! At start every configured address found on this node is removed (it holds nothing
//! until the group says so); on SIGTERM or Ctrl-C the agent is detached, its addresses
//! removed, and vipd leaves its group before it exits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_core::vip::agent::{AGENT_CLIENT, LocalChange, VipAgent, VipCommand, VipEvent};
use flotilla_core::vip::config::{self as vip_config, MAX_CONFIG_BYTES, VipAddress, VipConfig};
use flotilla_core::vip::msg::Place;
use flotilla_core::vip::node::MemberList;
use flotilla_core::vip::{VipEffect, agent::control::MAX_CONTROL_CLIENTS};
use flotilla_core::{EffectError, ListenerId};
use flotilla_tokio::group_client::{Cause, Delivery, GroupClient, GroupNotice, MAX_LISTED};
use flotilla_tokio::{Carries, Driver, DriverConfig, EffectRunner, ListenAddr, PeerTransport};
use rtnetlink::Handle;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, error, info, warn};

use crate::Outcome;
use crate::daemon::{self, EXIT_CONFIG, fail};
use crate::flood_runner::{SHELL, describe, run as run_command, shown};
use crate::vip_net;

/// The control socket's listener.
const CONTROL: ListenerId = ListenerId(0);

/// Where the control socket is when `--socket` is not given.
pub(crate) const DEFAULT_SOCKET: &str = "/run/flotilla/vipd.sock";

/// How long to wait before connecting to `groupd` again.
const RECONNECT: Duration = Duration::from_millis(200);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The configuration file: (:cluster …), (:vip …) forms and the optional
    /// (:announce …), (:health …), (:notify …), (:timing …). Errors are reported as
    /// FILE:LINE:COL and exit with status 2 (1 with --check).
    #[arg(long, value_name = "FILE", required_unless_present = "check")]
    config: Option<PathBuf>,
    /// Check FILE and exit: print a summary and exit 0 if it is valid (and names --node,
    /// when given), else print the error and exit 1.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check: Option<PathBuf>,
    /// This node: its groupd's --name. Default: this machine's host name.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// The node's group daemon: HOST:PORT, or the path of its Unix socket.
    #[arg(long, value_name = "ADDR", env = "GROUPD", default_value = crate::groupd::DEFAULT_ADDR)]
    groupd: String,
    /// The control socket applications use (`flotilla vip …`).
    #[arg(long, value_name = "PATH", env = "VIPD_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The control socket's file mode, in octal: who may steer the VIPs. 660 lets the
    /// socket's group in; 666 everyone on the machine.
    #[arg(long, value_name = "MODE", default_value = "660", value_parser = parse_mode)]
    socket_mode: u32,
    /// Milliseconds without an answer from groupd after which its node lets go of its
    /// VIPs (see the lease above); keep it below the cluster's detection time.
    #[arg(long, value_name = "MS", default_value_t = 400, value_parser = clap::value_parser!(u64).range(20..=60_000))]
    lease: u64,
    /// Seconds a VIP's address lives on the interface unless renewed; vipd renews it a
    /// third of that apart while it holds the VIP, so a vipd killed with -9 (or stopped)
    /// leaves its addresses behind at most this long. 0: addresses are permanent.
    #[arg(long, value_name = "SECS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=86_400))]
    address_lifetime: u32,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?}: expected an octal file mode such as 660"))
}

pub(crate) async fn run(args: Args) -> Outcome {
    let checking = args.check.is_some();
    let bad = if checking { 1 } else { EXIT_CONFIG };
    let Some(path) = args.check.clone().or_else(|| args.config.clone()) else {
        return Ok(fail(bad, "--config FILE is required"));
    };
    let cfg = match read_config(&path) {
        Ok(c) => c,
        Err(e) => return Ok(fail(bad, e)),
    };
    // A check asks about the file; about a node only when one is named.
    let node = match checking {
        true => args.node.clone(),
        false => args.node.clone().or_else(crate::floodd::host_name),
    };
    if let Some(n) = &node
        && !cfg.voters().any(|v| v == n)
    {
        return Ok(fail(
            bad,
            format_args!(
                "{}: node {n} is neither one of its nodes ({}) nor its witness: pass --node NAME",
                path.display(),
                cfg.nodes.join(" ")
            ),
        ));
    }
    if checking {
        println!("{}", summary(&cfg));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(node) = node else {
        return Ok(fail(
            EXIT_CONFIG,
            "cannot tell which node this is: pass --node NAME",
        ));
    };
    let handle = match vip_net::netlink() {
        Ok(h) => h,
        Err(e) => return Ok(fail(1, e)),
    };
    // Whatever a previous life left (a kill -9) is not this node's until the group says
    // so: the agent starts holding nothing.
    for a in cfg.vips.iter().flat_map(|v| &v.addresses) {
        if let Err(e) = vip_net::remove(&handle, a).await {
            return Ok(fail(1, format_args!("at start, before joining: {e}")));
        }
    }
    Ok(serve(args, cfg, node, handle).await)
}

fn read_config(path: &Path) -> Result<VipConfig, String> {
    let bytes = daemon::read_config_file(path, MAX_CONFIG_BYTES, "a VIP configuration")?;
    vip_config::parse_bytes(&bytes).map_err(|e| format!("{}:{e}", path.display()))
}

/// `ok: …` for `--check`.
fn summary(cfg: &VipConfig) -> String {
    let addresses: usize = cfg.vips.iter().map(|v| v.addresses.len()).sum();
    format!(
        "ok: {} VIPs ({addresses} addresses) on nodes {}{}, group {}, digest {:016x}",
        cfg.vips.len(),
        cfg.nodes.join(" "),
        cfg.witness
            .as_deref()
            .map(|w| format!(" with witness {w}"))
            .unwrap_or_default(),
        cfg.group,
        cfg.digest()
    )
}

async fn serve(args: Args, cfg: VipConfig, node: String, handle: Handle) -> ExitCode {
    let socket = args.socket.clone();
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        return fail(1, format_args!("cannot make {}: {e}", dir.display()));
    }
    let mut config = DriverConfig::new(PeerTransport::None).with_listener(
        CONTROL,
        ListenAddr::Unix(socket.clone()),
        Carries::Clients,
    );
    // The agent refuses past its own cap with a reason; the driver's is only the backstop.
    config.max_clients = MAX_CONTROL_CLIENTS * 2;
    // Health checks run beside address changes: one slow check must not delay a move.
    config.effect_concurrency = 8 + cfg.health.len();
    let driver = match Driver::bind(config).await {
        Ok(d) => d,
        Err(e) => {
            return fail(
                1,
                format_args!(
                    "cannot listen on {}: {e}: is another vipd running there?",
                    socket.display()
                ),
            );
        }
    };
    if let Err(e) = set_mode(&socket, args.socket_mode) {
        return fail(1, e);
    }
    let (lapse_tx, mut lapses) = mpsc::unbounded_channel();
    let runner = VipRunner {
        handle,
        node: Arc::from(node.as_str()),
        lifetime: (args.address_lifetime > 0).then_some(args.address_lifetime),
        renewals: Arc::default(),
        lapsed: lapse_tx,
    };
    let agent = VipAgent::new(&node, cfg.clone(), driver.now());
    let mut agent = driver.start_with(agent, runner);
    info!(
        node,
        groupd = args.groupd,
        socket = %socket.display(),
        group = cfg.group,
        vips = cfg.vips.len(),
        lease_ms = args.lease,
        "vipd started"
    );
    println!(
        "vipd {node} serving {} VIPs of group {}; control socket {}",
        cfg.vips.len(),
        cfg.group,
        socket.display()
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());

    let lease = Duration::from_millis(args.lease);
    let mut link = GroupLink::new(args.groupd.clone(), node.clone(), lease);
    let stop = daemon::stop_signal();
    tokio::pin!(stop);
    let mut probe = tokio::time::interval(lease / 2);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut held: BTreeSet<String> = BTreeSet::new();
    let why = loop {
        tokio::select! {
            ev = agent.next_event() => {
                let Some(ev) = ev else { break "the agent stopped".to_string() };
                if let Some(cmd) = link.on_agent_event(ev, &mut held).await {
                    command(&agent, cmd).await;
                }
            }
            n = link.next_notice(), if link.connected() => {
                for cmd in link.on_notice(n) {
                    command(&agent, cmd).await;
                }
            }
            Some(vip) = lapses.recv() => {
                let why = format!("the addresses of {vip} outlived their lifetime unrenewed (was vipd stopped?)");
                command(&agent, link.detach(&why)).await;
            }
            _ = probe.tick() => {
                for cmd in link.tick().await {
                    command(&agent, cmd).await;
                }
            }
            s = &mut stop => break match s {
                Ok(why) => why.to_string(),
                Err(e) => e,
            },
        }
    };
    info!(why, "vipd stopping: removing its addresses");
    command(&agent, VipCommand::Detached).await;
    // The removes run as effects: wait for each held VIP's release, at most
    // change-timeout and a second more.
    let limit = cfg.timing.change_timeout + Duration::from_secs(1);
    let drained = tokio::time::timeout(limit, async {
        while !held.is_empty() {
            match agent.next_event().await {
                Some(VipEvent::Local { vip, change }) => {
                    log_local(&vip, change);
                    if matches!(change, LocalChange::Released) {
                        held.remove(&vip);
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    if drained.is_err() {
        error!(
            vips = held.iter().cloned().collect::<Vec<_>>().join(","),
            "could not remove these VIPs' addresses before exiting"
        );
    }
    link.quit().await;
    drop(agent.shutdown().await);
    let _ = std::fs::remove_file(&socket);
    if held.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))
}

async fn command(agent: &flotilla_tokio::NodeHandle<VipAgent>, cmd: VipCommand) {
    if let Err(e) = agent.command(cmd).await {
        warn!(error = %e, "the agent refused an input");
    }
}

fn log_local(vip: &str, change: LocalChange) {
    match change {
        LocalChange::Acquired => info!(vip, "acquired: the addresses are up here"),
        LocalChange::Released => info!(vip, "released: the addresses are gone from here"),
        LocalChange::AddFailed => warn!(
            vip,
            "could not add the addresses: another node takes the VIP"
        ),
        LocalChange::RemoveFailed => {
            error!(
                vip,
                "could not remove the addresses: this node is fenced until it can"
            )
        }
    }
}

/// The agent's connection to its `groupd`: joins the agents' group as `vipd`, keeps the
/// group's member list (a `611` names one member, the agent wants them all), and holds
/// the lease.
struct GroupLink {
    addr: String,
    node: String,
    lease: Duration,
    client: Option<GroupClient>,
    /// The group, once the agent asked to join it.
    group: Option<String>,
    members: MemberList,
    /// A connection was lost and not yet made again: said once.
    lost: bool,
}

impl GroupLink {
    fn new(addr: String, node: String, lease: Duration) -> Self {
        GroupLink {
            addr,
            node,
            lease,
            client: None,
            group: None,
            members: MemberList::default(),
            lost: false,
        }
    }

    fn connected(&self) -> bool {
        self.client.is_some()
    }

    async fn next_notice(&mut self) -> Result<GroupNotice, String> {
        match self.client.as_mut() {
            Some(c) => c.next_notice().await.map_err(|e| e.to_string()),
            None => std::future::pending().await,
        }
    }

    /// The connection is gone (or the lease ran out): the agent lets go of everything.
    fn detach(&mut self, why: &str) -> VipCommand {
        if self.client.take().is_some() || !self.lost {
            warn!(
                groupd = self.addr,
                why, "lost groupd: releasing every VIP until back in the group"
            );
        }
        self.lost = true;
        self.members.clear();
        VipCommand::Detached
    }

    /// Connects and joins, each step under the lease.
    async fn connect(&mut self) -> Result<(), String> {
        let group = self.group.clone().ok_or("no group yet")?;
        let steps = async {
            let mut c = GroupClient::connect(&self.addr)
                .await
                .map_err(|e| e.to_string())?;
            c.set_name(AGENT_CLIENT)
                .await
                .map_err(|e| match e.to_string() {
                    e if e.contains("taken") => {
                        format!("{e}: another vipd serves this node through this groupd")
                    }
                    e => e,
                })?;
            c.join(&group).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(c)
        };
        let c = tokio::time::timeout(self.lease * 4, steps)
            .await
            .map_err(|_| "no answer".to_string())??;
        info!(
            groupd = self.addr,
            group,
            node = self.node,
            "joined the agents' group"
        );
        self.client = Some(c);
        self.lost = false;
        Ok(())
    }

    /// A request under the lease; a late or failed one detaches.
    async fn probe(&mut self) -> Vec<VipCommand> {
        let Some(c) = self.client.as_mut() else {
            return Vec::new();
        };
        match tokio::time::timeout(self.lease, c.groups()).await {
            Ok(Ok(_)) => Vec::new(),
            Ok(Err(e)) => vec![self.detach(&e.to_string())],
            Err(_) => vec![self.detach("groupd did not answer within the lease")],
        }
    }

    async fn tick(&mut self) -> Vec<VipCommand> {
        if self.client.is_some() {
            return self.probe().await;
        }
        if self.group.is_none() {
            return Vec::new();
        }
        match self.connect().await {
            Ok(()) => Vec::new(),
            Err(e) => {
                debug!(groupd = self.addr, error = e, "cannot reach groupd yet");
                if !self.lost {
                    warn!(
                        groupd = self.addr,
                        error = e,
                        "cannot reach groupd: trying again"
                    );
                    self.lost = true;
                }
                tokio::time::sleep(RECONNECT).await;
                Vec::new()
            }
        }
    }

    async fn on_agent_event(
        &mut self,
        ev: VipEvent,
        held: &mut BTreeSet<String>,
    ) -> Option<VipCommand> {
        match ev {
            VipEvent::Join { group } => {
                self.group = Some(group);
                if let Err(e) = self.connect().await {
                    warn!(
                        groupd = self.addr,
                        error = e,
                        "cannot join through groupd yet: trying again"
                    );
                    self.lost = true;
                }
                None
            }
            VipEvent::Send(line) => {
                let (Some(c), Some(g)) = (self.client.as_mut(), self.group.as_deref()) else {
                    // Not in the group: the agent holds nothing and says its state again
                    // at the next view.
                    return None;
                };
                match tokio::time::timeout(self.lease, c.send(g, line.as_bytes())).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(self.detach(&format!("send failed: {e}"))),
                    Err(_) => Some(self.detach("groupd did not take a message within the lease")),
                }
            }
            VipEvent::Holder { vip, holder, at } => {
                info!(vip, holder = holder.as_deref().unwrap_or("-"), at = %at, "holder");
                None
            }
            VipEvent::Local { vip, change } => {
                log_local(&vip, change);
                match change {
                    LocalChange::Acquired => {
                        held.insert(vip);
                    }
                    LocalChange::Released => {
                        held.remove(&vip);
                    }
                    LocalChange::AddFailed | LocalChange::RemoveFailed => {}
                }
                None
            }
            VipEvent::MoveDone { token, vip, result } => {
                debug!(token, vip, ?result, "move answered");
                None
            }
            VipEvent::ConfigMismatch { node } => {
                error!(
                    node,
                    "this node reads another VIP configuration: it holds nothing and does not vote"
                );
                None
            }
        }
    }

    fn at(view: &flotilla_tokio::group_client::ViewId, seq: u64) -> Place {
        Place::new(view.epoch, &view.coordinator, seq)
    }

    fn on_notice(&mut self, n: Result<GroupNotice, String>) -> Vec<VipCommand> {
        let n = match n {
            Ok(n) => n,
            Err(e) => return vec![self.detach(&e)],
        };
        let ours = |g: &str| self.group.as_deref() == Some(g);
        match n {
            GroupNotice::View {
                group,
                view,
                seq,
                count,
                members,
                ..
            } if ours(&group) => {
                if count > members.len() {
                    warn!(
                        count,
                        listed = MAX_LISTED,
                        "the group has more members than a notice lists"
                    );
                }
                self.members.replace(members);
                let me = (AGENT_CLIENT.to_string(), self.node.clone());
                if count == self.members.len() && !self.members.iter().any(|m| *m == me) {
                    // This connection is a member, yet no member is this node's agent:
                    // the daemon is named otherwise, and the agent would hold nothing.
                    let listed: Vec<String> = self
                        .members
                        .iter()
                        .map(|(c, d)| format!("{c}@{d}"))
                        .collect();
                    error!(
                        node = self.node,
                        groupd = self.addr,
                        members = listed.join(","),
                        "this groupd does not name its node {}: --node must be its --name",
                        self.node
                    );
                }
                vec![self.view(&view, seq)]
            }
            GroupNotice::Change {
                group,
                view,
                seq,
                cause,
                member,
                ..
            } if ours(&group) => {
                match cause {
                    Cause::Join => {
                        self.members.joined(member);
                    }
                    Cause::Leave | Cause::Disconnect | Cause::Network => {
                        self.members.left(&member);
                    }
                }
                vec![self.view(&view, seq)]
            }
            GroupNotice::Message {
                group,
                sender,
                daemon,
                view,
                seq,
                payload,
                delivery: Delivery::Agreed,
            } if ours(&group) => vec![VipCommand::GroupMessage {
                at: Self::at(&view, seq),
                client: sender,
                daemon,
                payload: Bytes::from(payload),
            }],
            GroupNotice::Closing(why) => vec![self.detach(&format!("groupd closed: {why}"))],
            _ => Vec::new(),
        }
    }

    fn view(&self, view: &flotilla_tokio::group_client::ViewId, seq: u64) -> VipCommand {
        self.members.view(Self::at(view, seq))
    }

    async fn quit(&mut self) {
        if let Some(mut c) = self.client.take() {
            let _ = tokio::time::timeout(self.lease, c.quit()).await;
        }
    }
}

/// Runs the agent's effects on this host.
#[derive(Clone)]
struct VipRunner {
    handle: Handle,
    node: Arc<str>,
    /// Seconds an address lives unless renewed (`--address-lifetime`).
    lifetime: Option<u32>,
    /// The task renewing each held VIP's addresses.
    renewals: Arc<Mutex<BTreeMap<String, AbortHandle>>>,
    /// Where a renewal that came too late says so.
    lapsed: mpsc::UnboundedSender<String>,
}

/// Renews `addresses` a third of their lifetime apart. A renewal that comes after the
/// lifetime ran out (vipd was stopped, or starved) does not bring the address back —
/// another node may hold the VIP by now — but reports the lapse: vipd then leaves the
/// group and joins again, so the group decides afresh.
async fn renew(
    handle: Handle,
    vip: String,
    addresses: Vec<VipAddress>,
    secs: u32,
    lapsed: mpsc::UnboundedSender<String>,
) {
    let lifetime = Duration::from_secs(u64::from(secs));
    let mut expires = tokio::time::Instant::now() + lifetime;
    loop {
        tokio::time::sleep(lifetime / 3).await;
        let asked = tokio::time::Instant::now();
        if asked >= expires {
            let _ = lapsed.send(vip);
            return;
        }
        let mut renewed = true;
        for a in &addresses {
            if let Err(e) = vip_net::add(&handle, a, Some(secs)).await {
                warn!(vip, error = e, "cannot renew an address");
                renewed = false;
            }
        }
        if renewed {
            expires = asked + lifetime;
        }
    }
}

impl VipRunner {
    async fn add(&self, vip: &str, addresses: &[VipAddress]) -> Result<(), EffectError> {
        for (i, a) in addresses.iter().enumerate() {
            if let Err(e) = vip_net::add(&self.handle, a, self.lifetime).await {
                // All or none: what was added is taken off again.
                for done in &addresses[..i] {
                    let _ = vip_net::remove(&self.handle, done).await;
                }
                return Err(EffectError::Failed(e));
            }
        }
        if let Some(secs) = self.lifetime {
            let renew = tokio::spawn(renew(
                self.handle.clone(),
                vip.to_string(),
                addresses.to_vec(),
                secs,
                self.lapsed.clone(),
            ));
            if let Some(old) = self
                .renewals()
                .insert(vip.to_string(), renew.abort_handle())
            {
                old.abort();
            }
        }
        Ok(())
    }

    fn renewals(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AbortHandle>> {
        // A panic elsewhere cannot leave the map half-changed: take it as it is.
        self.renewals.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn remove(&self, vip: &str, addresses: &[VipAddress]) -> Result<(), EffectError> {
        // The renewals stop first: one already handed to the netlink socket is ahead of
        // the removal in its queue, never after it.
        if let Some(renew) = self.renewals().remove(vip) {
            renew.abort();
        }
        let mut failed = None;
        for a in addresses {
            if let Err(e) = vip_net::remove(&self.handle, a).await {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), |e| Err(EffectError::Failed(e)))
    }

    async fn shell(&self, command: &str, args: &[&str], what: String) -> Result<(), EffectError> {
        let mut cmd = Command::new(SHELL);
        // `$0` is the command's name in messages; the rest are its arguments.
        cmd.arg("-c")
            .arg(format!("{command} \"$@\""))
            .arg("vipd")
            .args(args)
            .env("VIPD_NODE", &*self.node)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (status, _) = run_command(cmd, Bytes::new(), 0, &what, "/").await?;
        if status.success() {
            Ok(())
        } else {
            Err(EffectError::Failed(format!("{what} {}", describe(status))))
        }
    }
}

impl EffectRunner<VipEffect, ()> for VipRunner {
    fn run(
        &self,
        effect: VipEffect,
    ) -> impl Future<Output = Result<(), EffectError>> + Send + 'static {
        let me = self.clone();
        async move {
            match effect {
                VipEffect::Add { vip, addresses } => me.add(&vip, &addresses).await,
                VipEffect::Remove { vip, addresses } => me.remove(&vip, &addresses).await,
                VipEffect::Announce {
                    addresses,
                    count,
                    interval,
                    ..
                } => vip_net::announce(&addresses, count, interval)
                    .await
                    .map_err(EffectError::Failed),
                VipEffect::Check { name, command } => {
                    let what = format!("health check {name} ({})", shown(&command));
                    me.shell(&command, &[], what).await
                }
                VipEffect::Notify {
                    command,
                    event,
                    vip,
                    old,
                    new,
                } => {
                    let what = format!("the notify hook {}", shown(&command));
                    let old = old.as_deref().unwrap_or("-");
                    let new = new.as_deref().unwrap_or("-");
                    let r = me.shell(&command, &[event, &vip, old, new], what).await;
                    if let Err(e) = &r {
                        warn!(vip, event, error = %e, "the notify hook failed");
                    }
                    r
                }
            }
        }
    }
}
