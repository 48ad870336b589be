//! A client of `flotilla vipd`'s control socket (SPEC.md §11.7): typed requests on a
//! [`LineClient`] — status, eligibility, preferences, moves — and its watch notices read
//! as [`VipNotice`]s; written once for every runtime. The application uses it without
//! root: the socket's file permissions decide who may connect.
//!
//! ```text
//! let mut c = VipClient::<Tokio>::connect("/run/flotilla/vipd.sock").await?;
//! let s = c.status().await?;                    // every VIP, its holder, the view
//! c.move_vip("web", "b").await?;                // returns once b has the addresses
//! c.watch().await?;
//! loop { match c.next_notice().await? { VipNotice::Holder { .. } => …, _ => {} } }
//! ```
//!
//! A reply or notice without the protocol's shape is a [`ClientError::Protocol`] error
//! naming the line, never a panic; a refusal (`450 move of web failed: …`) is
//! [`ClientError::Refused`] with the daemon's reason.

use core::fmt;
use std::path::Path;

use flotilla_core::line::{Call, ClientError, Notice};

pub use crate::client::Error;
use crate::client::LineClient;
use crate::runtime::Runtime;

/// One VIP as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipState {
    /// Its name.
    pub name: String,
    /// The node the table names holder.
    pub holder: Option<String>,
    /// Whether the holder said it has the addresses up.
    pub acquired: bool,
    /// The place in the group's order where the holder was granted it.
    pub since: Option<String>,
    /// Its preferred node.
    pub prefer: Option<String>,
    /// Nodes still removing it.
    pub releasing: Vec<String>,
    /// This node's addresses of it: `absent`, `adding`, `held`, `removing`,
    /// `remove-failed`.
    pub local: String,
    /// Its addresses, `IP/PREFIX@INTERFACE`.
    pub addresses: Vec<String>,
}

/// Everything `status` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipStatus {
    /// The asked agent's node.
    pub node: String,
    /// The generation (the place of the group's last change).
    pub generation: Option<String>,
    /// The agents in the group.
    pub members: Vec<String>,
    /// Whether this component holds VIPs.
    pub primary: bool,
    /// Whether every member's state is in.
    pub settled: bool,
    /// This node's facts.
    pub eligible: bool,
    /// Whether its health checks pass.
    pub healthy: bool,
    /// Whether a failed remove fences it.
    pub fenced: bool,
    /// Every VIP.
    pub vips: Vec<VipState>,
}

/// A notice of `watch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VipNotice {
    /// `610 VIP holder NODE|- at PLACE`: the table's holder changed.
    Holder {
        /// The VIP.
        vip: String,
        /// Its holder now.
        holder: Option<String>,
        /// Where in the order.
        at: String,
    },
    /// `611 VIP local CHANGE`: this node's addresses changed (`acquired`, `released`,
    /// `add-failed`, `remove-failed`).
    Local {
        /// The VIP.
        vip: String,
        /// What happened.
        change: String,
    },
    /// Another notice (`699`, the agent closing, among them).
    Other {
        /// Its code.
        code: u16,
        /// Its text.
        text: String,
    },
}

impl fmt::Display for VipNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VipNotice::Holder { vip, holder, at } => {
                write!(
                    f,
                    "{vip} holder {} at {at}",
                    holder.as_deref().unwrap_or("-")
                )
            }
            VipNotice::Local { vip, change } => write!(f, "{vip} local {change}"),
            VipNotice::Other { code, text } => write!(f, "{code} {text}"),
        }
    }
}

/// A connection to a VIP agent's control socket.
#[derive(Debug)]
pub struct VipClient<R: Runtime> {
    line: LineClient<R>,
    greeting: String,
}

impl<R: Runtime> VipClient<R> {
    /// Connects to the agent's Unix socket and reads its `220` greeting. An agent at its
    /// connection cap answers with a refusal, which is the error.
    pub async fn connect(path: &Path) -> Result<Self, Error> {
        let mut line = LineClient::connect_unix(path).await?;
        let greeting = line.exchange(b"").await?;
        Ok(VipClient { line, greeting })
    }

    /// The greeting's text (`flotilla vipd NODE ready`).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// `status`: every VIP and the agent's view of the group.
    pub async fn status(&mut self) -> Result<VipStatus, Error> {
        self.line
            .call(Call::new("status\n".into(), parse_status))
            .await
    }

    /// `eligible on|off`: lets this node hold VIPs, or moves them away from it.
    pub async fn set_eligible(&mut self, on: bool) -> Result<(), Error> {
        let line = format!("eligible {}\n", if on { "on" } else { "off" });
        self.line.call(Call::new(line, accept)).await
    }

    /// `prefer VIP NODE` (`None`: the file's preference again). Returns once the
    /// preference is sent; it takes effect at its place in the group's order.
    pub async fn prefer(&mut self, vip: &str, node: Option<&str>) -> Result<(), Error> {
        check(vip)?;
        let node = match node {
            Some(n) => {
                check(n)?;
                n
            }
            None => "*",
        };
        let line = format!("prefer {vip} {node}\n");
        self.line.call(Call::new(line, accept)).await
    }

    /// `move VIP NODE`: returns the new holder once it has the addresses up, or the
    /// agent's reason it cannot (`Refused` with code 450).
    pub async fn move_vip(&mut self, vip: &str, node: &str) -> Result<String, Error> {
        check(vip)?;
        check(node)?;
        let line = format!("move {vip} {node}\n");
        self.line.call(Call::new(line, parse_moved)).await
    }

    /// `watch`: from now on every change comes as a notice ([`VipClient::next_notice`]).
    pub async fn watch(&mut self) -> Result<(), Error> {
        self.line.call(Call::new("watch\n".into(), accept)).await
    }

    /// The next notice, in order; waits for one.
    pub async fn next_notice(&mut self) -> Result<VipNotice, Error> {
        let n = self.line.next_notice().await?;
        Ok(parse_notice(&n)?)
    }
}

/// A VIP or node name goes on the line as one word.
fn check(word: &str) -> Result<(), ClientError> {
    if word.is_empty() || word.len() > 64 || !word.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ClientError::Invalid(
            "a VIP or node name is 1 to 64 printable characters without spaces",
        ));
    }
    Ok(())
}

fn accept(_: &str) -> Result<(), ClientError> {
    Ok(())
}

fn bad(what: &str, line: &str) -> ClientError {
    let shown: String = line.chars().take(200).collect();
    ClientError::Protocol(format!("{what}: unexpected line {shown:?}"))
}

/// `moved VIP to NODE`
fn parse_moved(text: &str) -> Result<String, ClientError> {
    match text.split(' ').collect::<Vec<_>>().as_slice() {
        ["moved", _, "to", node] => Ok(node.to_string()),
        _ => Err(bad("move", text)),
    }
}

fn opt(v: &str) -> Option<String> {
    (v != "-").then(|| v.to_string())
}

fn list(v: &str) -> Vec<String> {
    if v == "-" {
        Vec::new()
    } else {
        v.split(',').map(str::to_string).collect()
    }
}

/// The `key=value` words after `head NAME` on one line, in order.
fn fields<'a>(
    what: &str,
    line: &'a str,
    head: &str,
    keys: &[&str],
) -> Result<(&'a str, Vec<&'a str>), ClientError> {
    let mut words = line.split(' ');
    if words.next() != Some(head) {
        return Err(bad(what, line));
    }
    let name = words
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad(what, line))?;
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        let w = words.next().ok_or_else(|| bad(what, line))?;
        let v = w
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .ok_or_else(|| bad(what, line))?;
        values.push(v);
    }
    if words.next().is_some() {
        return Err(bad(what, line));
    }
    Ok((name, values))
}

fn yes(what: &str, line: &str, v: &str) -> Result<bool, ClientError> {
    match v {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(bad(what, line)),
    }
}

/// `vip NAME holder=… acquired=… since=… prefer=… releasing=… local=… addresses=…` per
/// VIP, then `node NAME generation=… members=… primary=… settled=… eligible=… healthy=…
/// fenced=…`.
pub fn parse_status(text: &str) -> Result<VipStatus, ClientError> {
    let what = "status";
    let mut lines: Vec<&str> = text.split('\n').collect();
    let last = lines.pop().unwrap_or_default();
    let node_keys = [
        "generation",
        "members",
        "primary",
        "settled",
        "eligible",
        "healthy",
        "fenced",
    ];
    let (node, n) = fields(what, last, "node", &node_keys)?;
    let vip_keys = [
        "holder",
        "acquired",
        "since",
        "prefer",
        "releasing",
        "local",
        "addresses",
    ];
    let vips = lines
        .iter()
        .map(|l| {
            let (name, v) = fields(what, l, "vip", &vip_keys)?;
            Ok(VipState {
                name: name.to_string(),
                holder: opt(v[0]),
                acquired: yes(what, l, v[1])?,
                since: opt(v[2]),
                prefer: opt(v[3]),
                releasing: list(v[4]),
                local: v[5].to_string(),
                addresses: list(v[6]),
            })
        })
        .collect::<Result<Vec<_>, ClientError>>()?;
    Ok(VipStatus {
        node: node.to_string(),
        generation: opt(n[0]),
        members: list(n[1]),
        primary: yes(what, last, n[2])?,
        settled: yes(what, last, n[3])?,
        eligible: yes(what, last, n[4])?,
        healthy: yes(what, last, n[5])?,
        fenced: yes(what, last, n[6])?,
        vips,
    })
}

/// Reads a watch notice.
pub fn parse_notice(n: &Notice) -> Result<VipNotice, ClientError> {
    let w: Vec<&str> = n.text.split(' ').collect();
    match (n.code, w.as_slice()) {
        (610, [vip, "holder", holder, "at", at]) => Ok(VipNotice::Holder {
            vip: vip.to_string(),
            holder: opt(holder),
            at: at.to_string(),
        }),
        (611, [vip, "local", change]) => Ok(VipNotice::Local {
            vip: vip.to_string(),
            change: change.to_string(),
        }),
        (610 | 611, _) => Err(bad("watch", &n.text)),
        (code, _) => Ok(VipNotice::Other {
            code,
            text: n.text.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reply_reads_into_its_fields() {
        let text = "vip web holder=a acquired=yes since=3/a/7 prefer=- releasing=- local=held addresses=10.0.0.50/24@eth0\n\
                    vip db holder=- acquired=no since=- prefer=b releasing=a,c local=absent addresses=10.0.0.60/24@eth0,fd00::60/64@eth0\n\
                    node a generation=3/a/7 members=a,b,w primary=yes settled=yes eligible=yes healthy=yes fenced=no";
        let s = parse_status(text).unwrap();
        assert_eq!(s.node, "a");
        assert_eq!(s.generation.as_deref(), Some("3/a/7"));
        assert_eq!(s.members, ["a", "b", "w"]);
        assert!(s.primary && s.settled && s.eligible && s.healthy && !s.fenced);
        assert_eq!(s.vips.len(), 2);
        assert_eq!(s.vips[0].holder.as_deref(), Some("a"));
        assert!(s.vips[0].acquired);
        assert_eq!(s.vips[0].local, "held");
        assert_eq!(s.vips[1].holder, None);
        assert_eq!(s.vips[1].prefer.as_deref(), Some("b"));
        assert_eq!(s.vips[1].releasing, ["a", "c"]);
        assert_eq!(s.vips[1].addresses.len(), 2);
    }

    #[test]
    fn a_malformed_status_is_a_protocol_error() {
        for text in [
            "",
            "node a",
            "node a generation=- members=- primary=maybe settled=no eligible=no healthy=no fenced=no",
            "vip web holder=a\nnode a generation=- members=- primary=no settled=no eligible=no healthy=no fenced=no",
            "node a generation=- members=- primary=no settled=no eligible=no healthy=no fenced=no extra=1",
            "node a members=- generation=- primary=no settled=no eligible=no healthy=no fenced=no",
        ] {
            assert!(
                matches!(parse_status(text), Err(ClientError::Protocol(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn watch_notices_read_and_a_bad_one_is_named() {
        let n = |code, text: &str| Notice::line(code, text);
        assert_eq!(
            parse_notice(&n(610, "web holder b at 4/a/2")).unwrap(),
            VipNotice::Holder {
                vip: "web".into(),
                holder: Some("b".into()),
                at: "4/a/2".into()
            }
        );
        assert_eq!(
            parse_notice(&n(610, "web holder - at 4/a/2")).unwrap(),
            VipNotice::Holder {
                vip: "web".into(),
                holder: None,
                at: "4/a/2".into()
            }
        );
        assert_eq!(
            parse_notice(&n(611, "web local acquired")).unwrap(),
            VipNotice::Local {
                vip: "web".into(),
                change: "acquired".into()
            }
        );
        assert!(matches!(
            parse_notice(&n(611, "web acquired")),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            parse_notice(&n(699, "closing")).unwrap(),
            VipNotice::Other { code: 699, .. }
        ));
    }

    #[test]
    fn names_that_would_break_the_line_are_refused_before_sending() {
        assert!(check("web").is_ok());
        for w in ["", "a b", "a\nstatus", &"x".repeat(65)] {
            assert!(check(w).is_err(), "{w:?}");
        }
        assert_eq!(parse_moved("moved web to b").unwrap(), "b");
        assert!(parse_moved("moved web b").is_err());
    }
}
