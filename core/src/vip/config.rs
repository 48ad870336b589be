//! The VIP agent's configuration file (SPEC.md §11.6), in the project's S-expression
//! syntax. Every node of a cluster reads the same file (the agents compare digests and
//! leave a disagreeing one out, §11.2):
//!
//! ```text
//! (:cluster (:group vip) (:nodes a b) (:witness w) (:partition primary) (:sticky on))
//! (:vip (:name web) (:address 10.0.0.50/24 eth0) (:prefer a))
//! (:vip (:name db) (:address 10.0.0.60/24 eth0) (:address fd00::60/64 eth0))
//! (:announce (:count 5) (:interval 200ms) (:refresh 0s))
//! (:health (:name http) (:command "curl -sf http://127.0.0.1/") (:interval 1s) (:rise 2) (:fall 3))
//! (:notify "/usr/local/bin/vip-notify")
//! ```
//!
//! A `:vip` is the unit that moves: one address, or several that move together (a
//! Wackamole VIF). The core only reads the file; the adapter adds the addresses.

use core::fmt;
use core::net::IpAddr;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use crate::membership::msg::valid_name;
use crate::sexpr::{self, Node, Pos, SexprError};

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// Most VIPs in one cluster.
pub const MAX_VIPS: usize = 256;
/// Most addresses one VIP moves together.
pub const MAX_ADDRESSES: usize = 16;
/// Most nodes (voters, the witness included).
pub const MAX_NODES: usize = 64;
/// Most health checks.
pub const MAX_CHECKS: usize = 16;
/// Longest interface name (Linux's `IFNAMSIZ` less the terminating zero).
pub const MAX_INTERFACE: usize = 15;
/// Longest command (a health check's or the notify hook's).
pub const MAX_COMMAND: usize = 4096;

/// What a component that is not primary does with its VIPs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum PartitionMode {
    /// Only a component holding a strict majority of the voters (nodes and witness)
    /// holds VIPs: never two holders across a partition; a minority holds none.
    #[default]
    Primary,
    /// Every component holds every VIP (Wackamole's behaviour): each side of a partition
    /// serves, so after a split two hosts answer for one address until the heal.
    All,
}

/// How VIPs are spread over the eligible nodes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    /// A VIP that needs a holder goes to the least loaded eligible node (its preference
    /// first); held VIPs stay where they are.
    #[default]
    Place,
    /// As `Place`, and a held VIP moves from a node holding two more than another
    /// eligible node (one move per decision: each move is a short outage).
    Rebalance,
    /// A VIP that needs a holder goes to its preference, else the eligible node with
    /// the least name.
    Off,
}

/// One address of a VIP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VipAddress {
    /// The address.
    pub ip: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The interface it goes on.
    pub interface: String,
}

impl fmt::Display for VipAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.ip, self.prefix, self.interface)
    }
}

/// A VIP: addresses that move together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipSpec {
    /// Its name (what commands and status use).
    pub name: String,
    /// Its addresses (at least one).
    pub addresses: Vec<VipAddress>,
    /// The nodes that may hold it (empty: every node of the cluster).
    pub nodes: Vec<String>,
    /// The node that should hold it when eligible (until the application says otherwise).
    pub prefer: Option<String>,
}

/// How a new holder announces its addresses (gratuitous ARP for IPv4, unsolicited
/// neighbour advertisements for IPv6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    /// Announcements sent on acquiring (0: none).
    pub count: u32,
    /// Between two of them.
    pub interval: Duration,
    /// Announce again this often while holding (zero: never).
    pub refresh: Duration,
}

impl Default for Announce {
    fn default() -> Self {
        Announce {
            count: 5,
            interval: Duration::from_millis(200),
            refresh: Duration::ZERO,
        }
    }
}

/// A health check (keepalived's track script): while it fails, this node holds no VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// Its name (for logs and status).
    pub name: String,
    /// The command the adapter runs (exit status 0: healthy).
    pub command: String,
    /// How often it runs.
    pub interval: Duration,
    /// The longest one run may take (longer: a failure).
    pub timeout: Duration,
    /// Successes in a row that make a failing check pass.
    pub rise: u32,
    /// Failures in a row that make a passing check fail.
    pub fall: u32,
}

/// The agent's timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipTiming {
    /// The longest an address change may take: past it, it counts as failed.
    pub change_timeout: Duration,
    /// After a failed change: how long before trying again (a failed remove) or being
    /// eligible for that VIP again (a failed add).
    pub retry: Duration,
}

impl Default for VipTiming {
    fn default() -> Self {
        VipTiming {
            change_timeout: Duration::from_secs(2),
            retry: Duration::from_secs(5),
        }
    }
}

/// The whole configuration: the same on every node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipConfig {
    /// The group the agents meet in on their `groupd`.
    pub group: String,
    /// The nodes that may hold VIPs (each votes).
    pub nodes: Vec<String>,
    /// A node that votes and never holds a VIP (a third vote for two-node clusters).
    pub witness: Option<String>,
    /// What a component that is not primary does.
    pub partition: PartitionMode,
    /// Whether a holder keeps its VIP when the VIP's preferred node comes back.
    pub sticky: bool,
    /// How VIPs are spread.
    pub balance: Balance,
    /// The VIPs, by name order of the file.
    pub vips: Vec<VipSpec>,
    /// Announcements.
    pub announce: Announce,
    /// Health checks (all must pass).
    pub health: Vec<HealthCheck>,
    /// A command run on every acquire and release (arguments: event, VIP, old holder,
    /// new holder).
    pub notify: Option<String>,
    /// Timings.
    pub timing: VipTiming,
}

impl VipConfig {
    /// A configuration with these nodes and VIPs, everything else by default (tests and
    /// programs that build one in code).
    pub fn new(nodes: &[&str], vips: Vec<VipSpec>) -> Self {
        VipConfig {
            group: "vip".to_string(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            witness: None,
            partition: PartitionMode::Primary,
            sticky: true,
            balance: Balance::Place,
            vips,
            announce: Announce::default(),
            health: Vec::new(),
            notify: None,
            timing: VipTiming::default(),
        }
    }

    /// Every voter: the nodes and the witness.
    pub fn voters(&self) -> impl Iterator<Item = &str> + '_ {
        self.nodes
            .iter()
            .map(String::as_str)
            .chain(self.witness.as_deref())
    }

    /// Whether `node` may hold `vip` by configuration (whatever its health).
    pub fn may_hold(&self, vip: &VipSpec, node: &str) -> bool {
        self.nodes.iter().any(|n| n == node)
            && (vip.nodes.is_empty() || vip.nodes.iter().any(|n| n == node))
    }

    /// The VIP named `name`.
    pub fn vip(&self, name: &str) -> Option<&VipSpec> {
        self.vips.iter().find(|v| v.name == name)
    }

    /// A digest of everything the agents must agree on (FNV-1a over a canonical text),
    /// carried in every agent's state so that one reading another file is noticed.
    pub fn digest(&self) -> u64 {
        let mut text = format!(
            "{}|{:?}|{:?}|{:?}|{}|{:?}",
            self.group, self.nodes, self.witness, self.partition, self.sticky, self.balance
        );
        for v in &self.vips {
            text.push_str(&format!(
                "|{}:{:?}:{:?}:{:?}",
                v.name,
                v.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>(),
                v.nodes,
                v.prefer
            ));
        }
        crate::fnv::fnv1a(text.bytes())
    }
}

/// Reads a configuration file from its bytes (UTF-8, at most [`MAX_CONFIG_BYTES`]).
pub fn parse_bytes(bytes: &[u8]) -> Result<VipConfig, SexprError> {
    parse(sexpr::file_text(bytes, MAX_CONFIG_BYTES)?)
}

/// Reads a configuration file's text.
pub fn parse(text: &str) -> Result<VipConfig, SexprError> {
    let forms = sexpr::parse_with_limit(text, MAX_CONFIG_BYTES)?;
    let mut cfg = VipConfig::new(&[], Vec::new());
    let mut seen: BTreeMap<&str, Pos> = BTreeMap::new();
    let mut cluster_at = None;
    for form in &forms {
        let Some(head) = form.head() else {
            return Err(SexprError::new(
                form.pos,
                format!(
                    "expected a form such as (:vip …), found {}",
                    form.describe()
                ),
            ));
        };
        if matches!(head, "cluster" | "announce" | "notify" | "timing") {
            if let Some(first) = seen.get(head) {
                return Err(SexprError::new(
                    form.pos,
                    format!("a second (:{head} …) form (the first is at {first})"),
                ));
            }
            seen.insert(head, form.pos);
        }
        match head {
            "cluster" => {
                read_cluster(form, &mut cfg)?;
                cluster_at = Some(form.pos);
            }
            "vip" => {
                if cfg.vips.len() >= MAX_VIPS {
                    return Err(SexprError::new(
                        form.pos,
                        format!("too many VIPs: at most {MAX_VIPS}"),
                    ));
                }
                cfg.vips.push(read_vip(form)?);
            }
            "announce" => cfg.announce = read_announce(form)?,
            "health" => {
                if cfg.health.len() >= MAX_CHECKS {
                    return Err(SexprError::new(
                        form.pos,
                        format!("too many health checks: at most {MAX_CHECKS}"),
                    ));
                }
                cfg.health.push(read_health(form)?);
            }
            "notify" => cfg.notify = Some(command(single(form, "notify")?)?),
            "timing" => cfg.timing = read_timing(form)?,
            other => {
                return Err(SexprError::new(
                    form.pos,
                    format!(
                        "unknown form :{other} (use :cluster :vip :announce :health :notify :timing)"
                    ),
                ));
            }
        }
    }
    let Some(cluster_at) = cluster_at else {
        return Err(SexprError::new(
            Pos { line: 1, col: 1 },
            "no (:cluster (:nodes …)) form: which nodes hold the VIPs?",
        ));
    };
    check_whole(&cfg, &forms, cluster_at)?;
    Ok(cfg)
}

/// Checks across forms: names known and unique, no address twice.
fn check_whole(cfg: &VipConfig, forms: &[Node], cluster_at: Pos) -> Result<(), SexprError> {
    let vip_pos: Vec<Pos> = forms
        .iter()
        .filter(|f| f.head() == Some("vip"))
        .map(|f| f.pos)
        .collect();
    let mut names: BTreeMap<&str, Pos> = BTreeMap::new();
    let mut addrs: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for (v, &pos) in cfg.vips.iter().zip(&vip_pos) {
        if let Some(first) = names.insert(&v.name, pos) {
            return Err(SexprError::new(
                pos,
                format!("VIP {} is defined twice (first at {first})", v.name),
            ));
        }
        for a in &v.addresses {
            if let Some(other) = addrs.insert(a.ip, &v.name) {
                return Err(SexprError::new(
                    pos,
                    format!("address {} is in VIP {other} and VIP {}", a.ip, v.name),
                ));
            }
        }
        for n in v.nodes.iter().chain(&v.prefer) {
            if !cfg.nodes.contains(n) {
                return Err(SexprError::new(
                    pos,
                    format!(
                        "VIP {} names node {n}, which is not in (:cluster (:nodes …))",
                        v.name
                    ),
                ));
            }
        }
        if let Some(p) = &v.prefer
            && !v.nodes.is_empty()
            && !v.nodes.contains(p)
        {
            return Err(SexprError::new(
                pos,
                format!("VIP {} prefers {p}, which may not hold it", v.name),
            ));
        }
    }
    if let Some(w) = &cfg.witness
        && cfg.nodes.contains(w)
    {
        return Err(SexprError::new(
            cluster_at,
            format!("{w} is both a node and the witness: a witness holds no VIP"),
        ));
    }
    let mut checks = BTreeSet::new();
    for h in &cfg.health {
        if !checks.insert(&h.name) {
            return Err(SexprError::new(
                cluster_at,
                format!("health check {} is defined twice", h.name),
            ));
        }
    }
    Ok(())
}

fn single<'a>(item: &'a Node, what: &str) -> Result<&'a Node, SexprError> {
    match item.args() {
        [one] => Ok(one),
        _ => Err(SexprError::new(
            item.pos,
            format!("(:{what} …) takes exactly one value"),
        )),
    }
}

fn name(v: &Node, what: &str) -> Result<String, SexprError> {
    let n = v.text()?;
    if !valid_name(&n) {
        return Err(SexprError::new(
            v.pos,
            format!("{what} {n:?}: use 1 to 64 letters, digits, '.', '_' or '-'"),
        ));
    }
    Ok(n)
}

fn switch(v: &Node, what: &str) -> Result<bool, SexprError> {
    match v.text()?.as_str() {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        other => Err(SexprError::new(
            v.pos,
            format!("{what} is on or off, not {other:?}"),
        )),
    }
}

fn command(v: &Node) -> Result<String, SexprError> {
    let c = v.text()?;
    if c.trim().is_empty() || c.len() > MAX_COMMAND || c.contains('\0') {
        return Err(SexprError::new(
            v.pos,
            format!("a command is 1 to {MAX_COMMAND} bytes without NUL"),
        ));
    }
    Ok(c)
}

fn read_cluster(form: &Node, cfg: &mut VipConfig) -> Result<(), SexprError> {
    for item in form.args() {
        match item.head() {
            Some("group") => {
                let v = single(item, "group")?;
                let g = v.text()?;
                if g.is_empty()
                    || g.len() > 64
                    || g.starts_with('#')
                    || !g.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err(SexprError::new(
                        v.pos,
                        "a group is 1 to 64 printable characters without spaces, not starting with #",
                    ));
                }
                cfg.group = g;
            }
            Some("nodes") => {
                if item.args().is_empty() || item.args().len() > MAX_NODES {
                    return Err(SexprError::new(
                        item.pos,
                        format!("(:nodes …) lists 1 to {MAX_NODES} nodes"),
                    ));
                }
                let mut nodes = Vec::new();
                for v in item.args() {
                    let n = name(v, "node")?;
                    if nodes.contains(&n) {
                        return Err(SexprError::new(v.pos, format!("node {n} is listed twice")));
                    }
                    nodes.push(n);
                }
                cfg.nodes = nodes;
            }
            Some("witness") => cfg.witness = Some(name(single(item, "witness")?, "witness")?),
            Some("partition") => {
                let v = single(item, "partition")?;
                cfg.partition = match v.text()?.as_str() {
                    "primary" => PartitionMode::Primary,
                    "all" => PartitionMode::All,
                    other => {
                        return Err(SexprError::new(
                            v.pos,
                            format!("partition is primary or all, not {other:?}"),
                        ));
                    }
                };
            }
            Some("sticky") => cfg.sticky = switch(single(item, "sticky")?, "sticky")?,
            Some("balance") => {
                let v = single(item, "balance")?;
                cfg.balance = match v.text()?.as_str() {
                    "place" | "on" => Balance::Place,
                    "rebalance" => Balance::Rebalance,
                    "off" => Balance::Off,
                    other => {
                        return Err(SexprError::new(
                            v.pos,
                            format!("balance is place, rebalance or off, not {other:?}"),
                        ));
                    }
                };
            }
            _ => {
                return Err(SexprError::new(
                    item.pos,
                    "(:cluster …) takes (:group G) (:nodes N…) (:witness W) (:partition primary|all) \
                     (:sticky on|off) (:balance place|rebalance|off)",
                ));
            }
        }
    }
    if cfg.nodes.is_empty() {
        return Err(SexprError::new(form.pos, "(:cluster …) needs (:nodes N…)"));
    }
    if cfg.nodes.len() + usize::from(cfg.witness.is_some()) > MAX_NODES {
        return Err(SexprError::new(
            form.pos,
            format!("at most {MAX_NODES} voters, the witness included"),
        ));
    }
    Ok(())
}

fn read_address(item: &Node) -> Result<VipAddress, SexprError> {
    let [addr, iface] = item.args() else {
        return Err(SexprError::new(
            item.pos,
            "(:address IP/PREFIX INTERFACE) takes an address and an interface",
        ));
    };
    let text = addr.text()?;
    let (ip, prefix) = text
        .split_once('/')
        .ok_or_else(|| SexprError::new(addr.pos, format!("address {text:?} is not IP/PREFIX")))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| SexprError::new(addr.pos, format!("{ip:?} is not an IP address")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 =
        prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
            SexprError::new(addr.pos, format!("prefix {prefix:?} is not 0..={max}"))
        })?;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(SexprError::new(
            addr.pos,
            format!("{ip} cannot be a virtual address (unspecified, multicast or loopback)"),
        ));
    }
    let interface = iface.text()?;
    if interface.is_empty()
        || interface.len() > MAX_INTERFACE
        || interface == "."
        || interface == ".."
        || !interface
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
    {
        return Err(SexprError::new(
            iface.pos,
            format!(
                "interface {interface:?}: 1 to {MAX_INTERFACE} printable bytes without '/' or ':'"
            ),
        ));
    }
    Ok(VipAddress {
        ip,
        prefix,
        interface,
    })
}

fn read_vip(form: &Node) -> Result<VipSpec, SexprError> {
    let mut spec = VipSpec {
        name: String::new(),
        addresses: Vec::new(),
        nodes: Vec::new(),
        prefer: None,
    };
    for item in form.args() {
        match item.head() {
            Some("name") => spec.name = name(single(item, "name")?, "VIP name")?,
            Some("address") => {
                if spec.addresses.len() >= MAX_ADDRESSES {
                    return Err(SexprError::new(
                        item.pos,
                        format!("a VIP moves at most {MAX_ADDRESSES} addresses"),
                    ));
                }
                spec.addresses.push(read_address(item)?);
            }
            Some("nodes") => {
                for v in item.args() {
                    let n = name(v, "node")?;
                    if !spec.nodes.contains(&n) {
                        spec.nodes.push(n);
                    }
                }
            }
            Some("prefer") => spec.prefer = Some(name(single(item, "prefer")?, "node")?),
            _ => {
                return Err(SexprError::new(
                    item.pos,
                    "(:vip …) takes (:name N) (:address IP/PREFIX IFACE)… (:nodes N…) (:prefer N)",
                ));
            }
        }
    }
    if spec.name.is_empty() {
        return Err(SexprError::new(form.pos, "this VIP has no (:name N)"));
    }
    if spec.addresses.is_empty() {
        return Err(SexprError::new(
            form.pos,
            format!("VIP {} has no (:address IP/PREFIX IFACE)", spec.name),
        ));
    }
    Ok(spec)
}

fn read_announce(form: &Node) -> Result<Announce, SexprError> {
    let mut a = Announce::default();
    for item in form.args() {
        let v = single(item, item.head().unwrap_or("announce"))?;
        match item.head() {
            Some("count") => a.count = v.int_in(0, 100)? as u32,
            Some("interval") => {
                a.interval = bounded(
                    v,
                    "interval",
                    Duration::from_millis(1),
                    Duration::from_secs(60),
                )?
            }
            Some("refresh") => {
                a.refresh = v.duration()?;
                if !a.refresh.is_zero() && a.refresh < Duration::from_millis(100) {
                    return Err(SexprError::new(
                        v.pos,
                        "refresh is 0 (never) or at least 100ms",
                    ));
                }
            }
            _ => {
                return Err(SexprError::new(
                    item.pos,
                    "(:announce …) takes (:count N) (:interval D) (:refresh D)",
                ));
            }
        }
    }
    Ok(a)
}

fn bounded(v: &Node, what: &str, lo: Duration, hi: Duration) -> Result<Duration, SexprError> {
    let d = v.duration()?;
    if !(lo..=hi).contains(&d) {
        return Err(SexprError::new(
            v.pos,
            format!("{what} of {d:?} is outside {lo:?}..={hi:?}"),
        ));
    }
    Ok(d)
}

fn read_health(form: &Node) -> Result<HealthCheck, SexprError> {
    let mut h = HealthCheck {
        name: String::new(),
        command: String::new(),
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(2),
        rise: 1,
        fall: 1,
    };
    for item in form.args() {
        let v = single(item, item.head().unwrap_or("health"))?;
        match item.head() {
            Some("name") => h.name = name(v, "check name")?,
            Some("command") => h.command = command(v)?,
            Some("interval") => {
                h.interval = bounded(
                    v,
                    "interval",
                    Duration::from_millis(10),
                    Duration::from_secs(3600),
                )?
            }
            Some("timeout") => {
                h.timeout = bounded(
                    v,
                    "timeout",
                    Duration::from_millis(10),
                    Duration::from_secs(3600),
                )?
            }
            Some("rise") => h.rise = v.int_in(1, 1000)? as u32,
            Some("fall") => h.fall = v.int_in(1, 1000)? as u32,
            _ => {
                return Err(SexprError::new(
                    item.pos,
                    "(:health …) takes (:name N) (:command C) (:interval D) (:timeout D) (:rise N) (:fall N)",
                ));
            }
        }
    }
    if h.name.is_empty() || h.command.is_empty() {
        return Err(SexprError::new(
            form.pos,
            "a health check needs (:name N) and (:command C)",
        ));
    }
    Ok(h)
}

fn read_timing(form: &Node) -> Result<VipTiming, SexprError> {
    let mut t = VipTiming::default();
    for item in form.args() {
        let v = single(item, item.head().unwrap_or("timing"))?;
        match item.head() {
            Some("change-timeout") => {
                t.change_timeout = bounded(
                    v,
                    "change-timeout",
                    Duration::from_millis(10),
                    Duration::from_secs(600),
                )?
            }
            Some("retry") => {
                t.retry = bounded(
                    v,
                    "retry",
                    Duration::from_millis(10),
                    Duration::from_secs(3600),
                )?
            }
            _ => {
                return Err(SexprError::new(
                    item.pos,
                    "(:timing …) takes (:change-timeout D) (:retry D)",
                ));
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        (:cluster (:group vip) (:nodes a b) (:witness w) (:partition primary) (:sticky on))
        (:vip (:name web) (:address 10.0.0.50/24 eth0) (:prefer a))
        (:vip (:name db) (:address 10.0.0.60/24 eth0) (:address "fd00::60/64" eth0) (:nodes a b))
        (:announce (:count 3) (:interval 100ms) (:refresh 10s))
        (:health (:name http) (:command "curl -sf http://127.0.0.1/") (:interval 1s) (:rise 2) (:fall 3))
        (:notify "/usr/local/bin/vip-notify")
        (:timing (:change-timeout 1s) (:retry 3s))
    "#;

    #[test]
    fn the_example_reads_as_written() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.nodes, ["a", "b"]);
        assert_eq!(c.witness.as_deref(), Some("w"));
        assert_eq!(c.voters().collect::<Vec<_>>(), ["a", "b", "w"]);
        assert_eq!(c.vips.len(), 2);
        assert_eq!(c.vips[0].prefer.as_deref(), Some("a"));
        assert_eq!(c.vips[1].addresses.len(), 2);
        assert_eq!(c.vips[1].addresses[1].to_string(), "fd00::60/64 eth0");
        assert_eq!(c.announce.count, 3);
        assert_eq!(c.announce.refresh, Duration::from_secs(10));
        assert_eq!(c.health[0].fall, 3);
        assert_eq!(c.timing.retry, Duration::from_secs(3));
        assert!(c.may_hold(&c.vips[0], "b"));
        assert!(!c.may_hold(&c.vips[0], "w"), "the witness holds nothing");
    }

    #[test]
    fn bad_files_are_refused_with_their_place() {
        let cases = [
            (
                "(:vip (:name x) (:address 10.0.0.1/24 eth0))",
                "no (:cluster",
            ),
            ("(:cluster (:nodes a a))", "listed twice"),
            (
                "(:cluster (:nodes a) (:witness a))",
                "both a node and the witness",
            ),
            (
                "(:cluster (:nodes a)) (:vip (:name x) (:address 10.0.0.1/33 eth0))",
                "prefix",
            ),
            (
                "(:cluster (:nodes a)) (:vip (:name x) (:address 10.0.0.1 eth0))",
                "not IP/PREFIX",
            ),
            (
                "(:cluster (:nodes a)) (:vip (:name x) (:address 127.0.0.1/8 lo))",
                "loopback",
            ),
            (
                "(:cluster (:nodes a)) (:vip (:name x) (:address 10.0.0.1/24 a/b))",
                "interface",
            ),
            (
                "(:cluster (:nodes a)) (:vip (:name x) (:address 10.0.0.1/24 averyveryverylongname))",
                "interface",
            ),
            ("(:cluster (:nodes a)) (:vip (:name x))", "no (:address"),
            (
                "(:cluster (:nodes a)) (:vip (:name x) (:address 10.0.0.1/24 e) (:prefer z))",
                "not in (:cluster",
            ),
            (
                "(:cluster (:nodes a)) (:vip (:name x) (:address 10.0.0.1/24 e)) (:vip (:name x) (:address 10.0.0.2/24 e))",
                "defined twice",
            ),
            (
                "(:cluster (:nodes a)) (:vip (:name x) (:address 10.0.0.1/24 e)) (:vip (:name y) (:address 10.0.0.1/24 e))",
                "in VIP x and VIP y",
            ),
            ("(:cluster (:nodes a)) (:cluster (:nodes b))", "a second"),
            ("(:cluster (:nodes a) (:partition some))", "primary or all"),
            (
                "(:cluster (:nodes a)) (:health (:name h))",
                "needs (:name N) and (:command C)",
            ),
            (
                "(:cluster (:nodes a)) (:announce (:refresh 1ms))",
                "at least 100ms",
            ),
            ("(:cluster (:nodes a)) (:bogus)", "unknown form"),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.message.contains(want), "{text}: {e}");
            assert!(e.pos.line >= 1);
        }
    }

    #[test]
    fn limits_are_held_at_their_edge() {
        let nodes: Vec<String> = (0..MAX_NODES).map(|i| format!("n{i}")).collect();
        let ok = format!("(:cluster (:nodes {}))", nodes.join(" "));
        assert_eq!(parse(&ok).unwrap().nodes.len(), MAX_NODES);
        let past = format!("(:cluster (:nodes {} extra))", nodes.join(" "));
        assert!(parse(&past).unwrap_err().message.contains("1 to 64 nodes"));
        let with_witness = format!("(:cluster (:nodes {}) (:witness w))", nodes.join(" "));
        assert!(
            parse(&with_witness)
                .unwrap_err()
                .message
                .contains("at most 64 voters")
        );
        let mut vips = String::from("(:cluster (:nodes a))");
        for i in 0..MAX_VIPS {
            vips.push_str(&format!(
                "(:vip (:name v{i}) (:address 10.1.{}.{}/16 e))",
                i / 200,
                i % 200 + 1
            ));
        }
        assert_eq!(parse(&vips).unwrap().vips.len(), MAX_VIPS);
        vips.push_str("(:vip (:name past) (:address 10.2.0.1/16 e))");
        assert!(parse(&vips).unwrap_err().message.contains("too many VIPs"));
        assert!(
            parse_bytes(&vec![b' '; MAX_CONFIG_BYTES + 1])
                .unwrap_err()
                .message
                .contains("exceeds")
        );
    }

    #[test]
    fn the_digest_changes_with_what_agents_must_agree_on() {
        let a = parse(EXAMPLE).unwrap();
        let mut b = a.clone();
        assert_eq!(a.digest(), b.digest());
        b.vips[0].prefer = Some("b".into());
        assert_ne!(a.digest(), b.digest());
        let mut c = a.clone();
        c.announce.count = 9;
        assert_eq!(
            a.digest(),
            c.digest(),
            "announcements are each node's own business"
        );
    }
}
