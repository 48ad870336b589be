//! Real hosts on one machine: one network namespace per daemon, their veth ends on a
//! bridge in a hub namespace, and packet loss made by nftables `numgen random` drops
//! on every namespace's way out (this kernel has no netem). Needs root, `ip` and `nft`;
//! [`Netns::new`] says plainly why it cannot run, and the tests that use it skip.
//!
//! Addresses are `10.79.S.(i+1)/24`, S drawn from the process id, and are only ever
//! used inside the namespaces made here (never routed from the root namespace).
//! Everything is removed when the value is dropped, also when a test panics.

// Tests drive processes: they need the clock and sleeps.
#![allow(clippy::disallowed_methods)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};

/// A set of namespaces on one bridge.
pub struct Netns {
    hub: String,
    hosts: Vec<String>,
    subnet: u8,
    made: bool,
}

/// Runs `program args`, an error naming it if it fails.
fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `nft -f -` inside a namespace, with `rules` on its standard input.
fn nft(ns: &str, rules: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(rules.as_bytes())
        .map_err(|e| format!("cannot write to nft: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft in {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// `n` hosts on one bridge, each dropping `loss` percent of what it sends to the
    /// others. `Err` says why namespaces cannot be made here (not root, no `ip` or `nft`).
    pub fn new(n: usize, loss: u32) -> Result<Netns, String> {
        assert!((1..=250).contains(&n));
        let id = std::process::id();
        let subnet = (id % 200) as u8 + 20;
        let tag = format!("{id:x}");
        let mut net = Netns {
            hub: format!("flh-{tag}"),
            hosts: (0..n).map(|i| format!("fl{i}-{tag}")).collect(),
            subnet,
            made: false,
        };
        sh(&["ip", "netns", "add", &net.hub])
            .map_err(|e| format!("network namespaces are not available (root is needed): {e}"))?;
        net.made = true;
        let hub = net.hub.clone();
        sh(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        sh(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let host = net.hosts[i].clone();
            sh(&["ip", "netns", "add", &host])?;
            let port = format!("p{i}");
            sh(&[
                "ip", "link", "add", "eth0", "netns", &host, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            sh(&["ip", "-n", &hub, "link", "set", &port, "master", "br0"])?;
            sh(&["ip", "-n", &hub, "link", "set", &port, "up"])?;
            let addr = format!("{}/24", net.ip(i));
            sh(&["ip", "-n", &host, "addr", "add", &addr, "dev", "eth0"])?;
            sh(&["ip", "-n", &host, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", &host, "link", "set", "lo", "up"])?;
            nft(
                &host,
                "table inet flotilla {\n chain out {\n  type filter hook output priority 0;\n }\n}\n",
            )
            .map_err(|e| format!("nftables is not available: {e}"))?;
        }
        net.set_loss(loss)?;
        Ok(net)
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 79, self.subnet, i as u8 + 1))
    }

    /// Host `i`'s address with `port`.
    pub fn addr(&self, i: usize, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip(i), port)
    }

    /// Host `i`'s namespace name (for `ip -n NAME …`).
    pub fn host(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Host `i`'s cable pulled (`up` false: its bridge port down, so nothing it sends
    /// arrives and nothing reaches it) or plugged back in.
    pub fn plug(&self, i: usize, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        sh(&[
            "ip",
            "-n",
            &self.hub,
            "link",
            "set",
            &format!("p{i}"),
            state,
        ])
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there are none (never: `new` makes at least one).
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// `program` run inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i]]).arg(program);
        cmd
    }

    /// Every host drops `loss` percent of the packets it sends to the others.
    pub fn set_loss(&self, loss: u32) -> Result<(), String> {
        for host in &self.hosts {
            self.rules(host, loss, &[])?;
        }
        Ok(())
    }

    /// Host `i` drops everything it sends to the hosts in `cut` (a partition when done
    /// from both sides) and `loss` percent of the rest.
    pub fn cut(&self, i: usize, cut: &[usize], loss: u32) -> Result<(), String> {
        let ips: Vec<IpAddr> = cut.iter().map(|&j| self.ip(j)).collect();
        self.rules(&self.hosts[i], loss, &ips)
    }

    fn rules(&self, host: &str, loss: u32, cut: &[IpAddr]) -> Result<(), String> {
        // A host's traffic to itself (a client on its own address) is never dropped.
        let mut rules =
            "flush chain inet flotilla out\nadd rule inet flotilla out oifname \"lo\" accept\n"
                .to_string();
        for ip in cut {
            rules.push_str(&format!("add rule inet flotilla out ip daddr {ip} drop\n"));
        }
        if loss > 0 {
            rules.push_str(&format!(
                "add rule inet flotilla out ip daddr 10.79.{}.0/24 numgen random mod 100 < {loss} drop\n",
                self.subnet
            ));
        }
        nft(host, &rules)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.made {
            return;
        }
        for host in &self.hosts {
            let _ = sh(&["ip", "netns", "del", host]);
        }
        let _ = sh(&["ip", "netns", "del", &self.hub]);
    }
}
