//! A client for a flood daemon's client port (seed 002; SPEC.md §8): typed requests on a
//! [`LineClient`], written once for every runtime.
//!
//! ```text
//! let mut flood = FloodClient::<Tokio>::connect("127.0.0.1:2000").await?;
//! let sent = flood.data(None, b"an update\n").await?;      // origin, incarnation, seq
//! let stats = flood.statistics().await?;                   // [("delivered", "12"), …]
//! let best = flood.nearest_confirmed(3).await?;            // probed, cached for 60 s
//! ```
//!
//! Replies are read from the text the daemon writes (`flotilla_core::flood::machine`'s
//! client port); a reply that does not have the expected shape is a
//! [`ClientError::Protocol`] error naming the line.

use core::net::SocketAddr;
use std::io;
use std::time::Duration;

use flotilla_core::flood::command::dot_stuff;
use flotilla_core::line::{Call, ClientError, text};

pub use crate::client::Error;
use crate::client::LineClient;
use crate::runtime::{Runtime, timeout};

/// How long a [`FloodClient::nearest_confirmed`] answer is reused before probing again.
pub const NEAREST_CACHE: Duration = Duration::from_secs(60);

/// How long one probe of [`FloodClient::nearest_confirmed`] may take: a daemon that does
/// not accept a connection within it is not the nearest one anyway.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A group as `groups` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSummary {
    /// Its name.
    pub name: String,
    /// Its master site.
    pub master: String,
    /// Members of its current topology (0 before the first one).
    pub members: usize,
    /// How updates travel: `tree` or `plain`.
    pub mode: String,
}

/// One site of a group, as `group` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Site name.
    pub site: String,
    /// Its data address, if the daemon knows it.
    pub data: Option<SocketAddr>,
    /// Its client address, if the daemon knows it.
    pub client: Option<SocketAddr>,
    /// What it is to the asked daemon: `self`, `neighbour up`, `neighbour down` or
    /// `member`.
    pub role: String,
    /// Whether it is the group's master.
    pub master: bool,
}

/// Where an update went: its stream and sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flooded {
    /// The group it was flooded in.
    pub group: String,
    /// The origin site (the daemon asked).
    pub origin: String,
    /// The origin's incarnation.
    pub incarnation: u64,
    /// Its sequence number in that stream.
    pub seq: u64,
    /// Its size as the daemon took it.
    pub bytes: usize,
}

/// One link of a topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// One end.
    pub a: String,
    /// The other end.
    pub b: String,
    /// Its cost in microseconds.
    pub cost_us: u64,
}

/// A group's topology as `topology` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// The group.
    pub group: String,
    /// The topology's version.
    pub version: u64,
    /// The group's master site.
    pub master: String,
    /// How many sites it joins.
    pub members: usize,
    /// Its links.
    pub links: Vec<Link>,
}

/// What a gap is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GapKind {
    /// Seen in digests, being fetched.
    Missing,
    /// Will not be exported here, for the reason given (`purged`, `storage`, `behind`).
    Lost(String),
}

/// Updates `from..=to` of a stream that the daemon does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Missing or lost.
    pub kind: GapKind,
    /// The stream's origin site.
    pub origin: String,
    /// The origin's incarnation.
    pub incarnation: u64,
    /// First sequence number.
    pub from: u64,
    /// Last sequence number.
    pub to: u64,
}

/// A flood daemon and how far it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nearest {
    /// Its site name.
    pub site: String,
    /// Its client address.
    pub addr: SocketAddr,
    /// The round trip: the asked daemon's estimate from [`FloodClient::nearest`] (zero
    /// for itself, `None` when unmeasured), or the time a TCP connect from this client
    /// took, from [`FloodClient::nearest_confirmed`].
    pub rtt: Option<Duration>,
}

/// A connection to one flood daemon's client port.
#[derive(Debug)]
pub struct FloodClient<R: Runtime> {
    line: LineClient<R>,
    greeting: String,
    nearest: Option<(std::time::Instant, Nearest)>,
}

impl<R: Runtime> FloodClient<R> {
    /// Connects to a daemon's client port (`HOST:PORT`, or a Unix-domain socket path) and
    /// reads its `220` greeting. A daemon at its client cap answers with a refusal, which
    /// is the error.
    pub async fn connect(addr: &str) -> Result<Self, Error> {
        let mut line = LineClient::connect(addr).await?;
        // Nothing is sent: the greeting is the reply to the connection itself.
        let greeting = line.exchange(b"").await?;
        Ok(FloodClient {
            line,
            greeting,
            nearest: None,
        })
    }

    /// The greeting's text (`floodd SITE ready …`).
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// The line client underneath, for raw requests.
    pub fn line(&mut self) -> &mut LineClient<R> {
        &mut self.line
    }

    /// Sends one raw request line (without its newline) and returns the text of the
    /// final `2xx` reply.
    pub async fn request(&mut self, line: &str) -> Result<String, Error> {
        self.line.request(line).await
    }

    /// `groups`: the groups of the daemon's site.
    pub async fn groups(&mut self) -> Result<Vec<GroupSummary>, Error> {
        self.line
            .call(Call::new("groups\n".into(), parse_groups))
            .await
    }

    /// `group [GROUP]`: the sites of a group (the daemon's only group when `None`).
    pub async fn group(&mut self, group: Option<&str>) -> Result<Vec<Member>, Error> {
        let line = with_group("group", group)?;
        self.line.call(Call::new(line, parse_members)).await
    }

    /// `data [GROUP]`: floods `data` as lines. The body is dot-stuffed, so lines that
    /// begin with `.` arrive as they were; data that does not end with `\n` gets one, and
    /// a `\r` before a `\n` is dropped (use [`FloodClient::binary`] for exact bytes).
    pub async fn data(&mut self, group: Option<&str>, data: &[u8]) -> Result<Flooded, Error> {
        let line = with_group("data", group)?;
        match self.line.exchange(line.as_bytes()).await {
            Err(Error::Server(ClientError::Refused { code: 354, .. })) => {}
            Err(e) => return Err(e),
            Ok(text) => {
                return Err(ClientError::Protocol(format!(
                    "data: expected 354 before the body, got {}",
                    shown(&text)
                ))
                .into());
            }
        }
        let text = self.line.exchange(&dot_stuff(data)).await?;
        Ok(parse_flooded(&text)?)
    }

    /// `binary SIZE [GROUP]`: floods `data` byte for byte.
    pub async fn binary(&mut self, group: Option<&str>, data: &[u8]) -> Result<Flooded, Error> {
        let head = match group {
            None => format!("binary {}\n", data.len()),
            Some(g) => {
                check_group(g)?;
                format!("binary {} {g}\n", data.len())
            }
        };
        let mut request = Vec::with_capacity(head.len() + data.len());
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(data);
        let text = self.line.exchange(&request).await?;
        Ok(parse_flooded(&text)?)
    }

    /// `statistics`: the daemon's counters as `(name, value)` pairs in the order given
    /// (`site`, `incarnation`, the counters, then one `group` pair per group whose value is
    /// `NAME key=value …`).
    pub async fn statistics(&mut self) -> Result<Vec<(String, String)>, Error> {
        self.line
            .call(Call::new("statistics\n".into(), parse_statistics))
            .await
    }

    /// `topology [GROUP]`: the group's current topology; a `451` refusal while there is
    /// none yet.
    pub async fn topology(&mut self, group: Option<&str>) -> Result<Topology, Error> {
        let line = with_group("topology", group)?;
        self.line.call(Call::new(line, parse_topology)).await
    }

    /// `gaps [GROUP]`: updates the daemon is fetching, and those it reported lost.
    pub async fn gaps(&mut self, group: Option<&str>) -> Result<Vec<Gap>, Error> {
        let line = with_group("gaps", group)?;
        self.line.call(Call::new(line, parse_gaps)).await
    }

    /// `nearest`: every daemon the asked one knows, nearest first by its own round-trip
    /// estimates (itself first of all). A hint: see [`FloodClient::nearest_confirmed`].
    pub async fn nearest(&mut self) -> Result<Vec<Nearest>, Error> {
        self.line
            .call(Call::new("nearest\n".into(), parse_nearest))
            .await
    }

    /// The nearest daemon as this client sees it. The daemon's estimates are measured from
    /// the daemon, not from here, so (as the seed suggests) the first `probe` candidates of
    /// [`FloodClient::nearest`] are probed at once by timing a TCP connect to each one's
    /// client port, and the first to answer wins, its `rtt` the time it took. The answer
    /// is reused for [`NEAREST_CACHE`]; an I/O error of kind `TimedOut` if no candidate
    /// answers within [`PROBE_TIMEOUT`].
    pub async fn nearest_confirmed(&mut self, probe: usize) -> Result<Nearest, Error> {
        let rt = R::default();
        if let Some((at, n)) = &self.nearest
            && rt.now().saturating_duration_since(*at) < NEAREST_CACHE
        {
            return Ok(n.clone());
        }
        let mut candidates = self.nearest().await?;
        candidates.truncate(probe.max(1));
        let best = probe_first(&rt, &candidates).await?;
        self.nearest = Some((rt.now(), best.clone()));
        Ok(best)
    }

    /// `quit`: the daemon says goodbye and closes the connection.
    pub async fn quit(&mut self) -> Result<(), Error> {
        self.line
            .call(Call::new("quit\n".into(), text))
            .await
            .map(drop)
    }

    /// `terminate`: stops the daemon (accepted only from a client on its host).
    pub async fn terminate(&mut self) -> Result<(), Error> {
        self.line
            .call(Call::new("terminate\n".into(), text))
            .await
            .map(drop)
    }
}

/// Connects to every candidate at once; the first connection made names the winner.
async fn probe_first<R: Runtime>(rt: &R, candidates: &[Nearest]) -> Result<Nearest, Error> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(candidates.len().max(1));
    for (i, c) in candidates.iter().enumerate() {
        let (tx, addr, rt2) = (tx.clone(), c.addr, rt.clone());
        // Left to run on once a winner is known: each ends within PROBE_TIMEOUT, and the
        // connection it made is dropped unused.
        drop(rt.spawn(async move {
            let start = rt2.now();
            if let Some(Ok(conn)) = timeout(&rt2, PROBE_TIMEOUT, rt2.tcp_connect(addr)).await {
                let took = rt2.now().saturating_duration_since(start);
                let _ = tx.try_send((i, took));
                drop(conn);
            }
        }));
    }
    drop(tx);
    // Every probe task ends within PROBE_TIMEOUT, and with it its sender; the bound is a
    // second guard.
    match timeout(rt, PROBE_TIMEOUT + Duration::from_secs(1), rx.recv()).await {
        Some(Some((i, took))) => Ok(Nearest {
            rtt: Some(took),
            ..candidates[i].clone()
        }),
        _ => {
            let names: Vec<String> = candidates
                .iter()
                .map(|c| format!("{} {}", c.site, c.addr))
                .collect();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no daemon answered within {:.1}s (probed {})",
                    PROBE_TIMEOUT.as_secs_f64(),
                    names.join(", ")
                ),
            )
            .into())
        }
    }
}

/// A group name must be one word: the daemon checks the rest.
fn check_group(g: &str) -> Result<(), ClientError> {
    if g.is_empty() || g.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ClientError::Invalid("group name"));
    }
    Ok(())
}

fn with_group(command: &str, group: Option<&str>) -> Result<String, ClientError> {
    match group {
        None => Ok(format!("{command}\n")),
        Some(g) => {
            check_group(g)?;
            Ok(format!("{command} {g}\n"))
        }
    }
}

/// At most 80 characters of a reply, for an error message.
fn shown(text: &str) -> String {
    text.chars().take(80).collect()
}

fn bad(what: &str, line: &str) -> ClientError {
    ClientError::Protocol(format!("{what}: unexpected reply line {:?}", shown(line)))
}

/// The reply's lines without its last, which every multi-line reply of the flood port
/// uses for a count ("3 groups", "27 values").
fn body(text: &str) -> impl Iterator<Item = &str> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.pop();
    lines.into_iter()
}

fn number<T: core::str::FromStr>(what: &str, line: &str, word: &str) -> Result<T, ClientError> {
    word.parse().map_err(|_| bad(what, line))
}

fn hex(what: &str, line: &str, word: &str) -> Result<u64, ClientError> {
    u64::from_str_radix(word, 16).map_err(|_| bad(what, line))
}

/// `NAME master=M members=N mode=MODE`
fn parse_groups(text: &str) -> Result<Vec<GroupSummary>, ClientError> {
    body(text)
        .map(|line| {
            let w: Vec<&str> = line.split(' ').collect();
            let [name, master, members, mode] = w.as_slice() else {
                return Err(bad("groups", line));
            };
            let field = |word: &str, key: &str| {
                word.strip_prefix(key)
                    .map(str::to_string)
                    .ok_or_else(|| bad("groups", line))
            };
            Ok(GroupSummary {
                name: name.to_string(),
                master: field(master, "master=")?,
                members: number("groups", line, &field(members, "members=")?)?,
                mode: field(mode, "mode=")?,
            })
        })
        .collect()
}

/// `SITE DATA client=PORT ROLE… [master]`, or `SITE address unknown ROLE… [master]`.
fn parse_members(text: &str) -> Result<Vec<Member>, ClientError> {
    body(text)
        .map(|line| {
            let w: Vec<&str> = line.split(' ').collect();
            let (site, data, client, rest) = match w.as_slice() {
                [site, "address", "unknown", rest @ ..] => (*site, None, None, rest),
                [site, data, client, rest @ ..] => {
                    let data: SocketAddr = number("group", line, data)?;
                    let port: u16 = client
                        .strip_prefix("client=")
                        .ok_or_else(|| bad("group", line))
                        .and_then(|p| number("group", line, p))?;
                    let client = SocketAddr::new(data.ip(), port);
                    (*site, Some(data), Some(client), rest)
                }
                _ => return Err(bad("group", line)),
            };
            let (master, role) = match rest {
                [role @ .., "master"] => (true, role),
                role => (false, role),
            };
            if role.is_empty() {
                return Err(bad("group", line));
            }
            Ok(Member {
                site: site.to_string(),
                data,
                client,
                role: role.join(" "),
                master,
            })
        })
        .collect()
}

/// `flooded to GROUP as ORIGIN INCARNATION SEQ (BYTES bytes)`
fn parse_flooded(text: &str) -> Result<Flooded, ClientError> {
    let w: Vec<&str> = text.split(' ').collect();
    let [
        "flooded",
        "to",
        group,
        "as",
        origin,
        inc,
        seq,
        bytes,
        "bytes)",
    ] = w.as_slice()
    else {
        return Err(bad("flood", text));
    };
    let bytes = bytes.strip_prefix('(').ok_or_else(|| bad("flood", text))?;
    Ok(Flooded {
        group: group.to_string(),
        origin: origin.to_string(),
        incarnation: hex("flood", text, inc)?,
        seq: number("flood", text, seq)?,
        bytes: number("flood", text, bytes)?,
    })
}

/// `NAME VALUE` per line.
fn parse_statistics(text: &str) -> Result<Vec<(String, String)>, ClientError> {
    body(text)
        .map(|line| match line.split_once(' ') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad("statistics", line)),
        })
        .collect()
}

/// `group G version V master M members N`, then `A B cost=Cus` per link.
fn parse_topology(text: &str) -> Result<Topology, ClientError> {
    let mut lines = body(text);
    let head = lines.next().unwrap_or_default();
    let w: Vec<&str> = head.split(' ').collect();
    let [
        "group",
        group,
        "version",
        version,
        "master",
        master,
        "members",
        members,
    ] = w.as_slice()
    else {
        return Err(bad("topology", head));
    };
    let links = lines
        .map(|line| {
            let w: Vec<&str> = line.split(' ').collect();
            let [a, b, cost] = w.as_slice() else {
                return Err(bad("topology", line));
            };
            let cost = cost
                .strip_prefix("cost=")
                .and_then(|c| c.strip_suffix("us"))
                .ok_or_else(|| bad("topology", line))?;
            Ok(Link {
                a: a.to_string(),
                b: b.to_string(),
                cost_us: number("topology", line, cost)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Topology {
        group: group.to_string(),
        version: number("topology", head, version)?,
        master: master.to_string(),
        members: number("topology", head, members)?,
        links,
    })
}

/// `missing ORIGIN INC FROM TO` or `lost ORIGIN INC FROM TO REASON`.
fn parse_gaps(text: &str) -> Result<Vec<Gap>, ClientError> {
    body(text)
        .map(|line| {
            let w: Vec<&str> = line.split(' ').collect();
            let (kind, origin, inc, from, to) = match w.as_slice() {
                ["missing", o, i, f, t] => (GapKind::Missing, o, i, f, t),
                ["lost", o, i, f, t, why] => (GapKind::Lost(why.to_string()), o, i, f, t),
                _ => return Err(bad("gaps", line)),
            };
            Ok(Gap {
                kind,
                origin: origin.to_string(),
                incarnation: hex("gaps", line, inc)?,
                from: number("gaps", line, from)?,
                to: number("gaps", line, to)?,
            })
        })
        .collect()
}

/// `SITE ADDR rtt=Xms [(this daemon)]` or `SITE ADDR rtt=unknown`.
fn parse_nearest(text: &str) -> Result<Vec<Nearest>, ClientError> {
    body(text)
        .map(|line| {
            let mut w = line.splitn(4, ' ');
            let (Some(site), Some(addr), Some(rtt)) = (w.next(), w.next(), w.next()) else {
                return Err(bad("nearest", line));
            };
            let rtt = match rtt
                .strip_prefix("rtt=")
                .ok_or_else(|| bad("nearest", line))?
            {
                "unknown" => None,
                ms => {
                    let ms: f64 = ms
                        .strip_suffix("ms")
                        .ok_or_else(|| bad("nearest", line))
                        .and_then(|m| number("nearest", line, m))?;
                    let d =
                        Duration::try_from_secs_f64(ms / 1e3).map_err(|_| bad("nearest", line))?;
                    Some(d)
                }
            };
            Ok(Nearest {
                site: site.to_string(),
                addr: number("nearest", line, addr)?,
                rtt,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_into_their_types() {
        assert_eq!(
            parse_groups(
                "g1 master=a members=3 mode=tree\ng2 master=b members=0 mode=plain\n2 groups"
            ),
            Ok(vec![
                GroupSummary {
                    name: "g1".into(),
                    master: "a".into(),
                    members: 3,
                    mode: "tree".into()
                },
                GroupSummary {
                    name: "g2".into(),
                    master: "b".into(),
                    members: 0,
                    mode: "plain".into()
                },
            ])
        );
        let members = parse_members(
            "a 127.0.0.1:4001 client=4000 self master\n\
             b 127.0.0.1:4003 client=4002 neighbour up\n\
             c address unknown member\n3 sites in g",
        )
        .unwrap();
        assert_eq!(members[0].client, Some("127.0.0.1:4000".parse().unwrap()));
        assert!(members[0].master && members[0].role == "self");
        assert_eq!(members[1].role, "neighbour up");
        assert!(!members[1].master);
        assert_eq!(
            (members[2].data, members[2].role.as_str()),
            (None, "member")
        );
        assert_eq!(
            parse_flooded("flooded to g as a 00000000000000ff 7 (12 bytes)"),
            Ok(Flooded {
                group: "g".into(),
                origin: "a".into(),
                incarnation: 255,
                seq: 7,
                bytes: 12
            })
        );
        assert_eq!(
            parse_statistics("site a\ndelivered 4\ngroup g version=2 neighbours=2/2\n3 values"),
            Ok(vec![
                ("site".into(), "a".into()),
                ("delivered".into(), "4".into()),
                ("group".into(), "g version=2 neighbours=2/2".into()),
            ])
        );
        let t = parse_topology(
            "group g version 4 master a members 3\na b cost=120us\nb c cost=7us\n2 links",
        )
        .unwrap();
        assert_eq!((t.version, t.members, t.links.len()), (4, 3, 2));
        assert_eq!(t.links[1].cost_us, 7);
        assert_eq!(
            parse_gaps(
                "missing b 0000000000000003 4 9\nlost c 0000000000000005 1 2 purged\n2 gaps in g"
            )
            .unwrap()[1]
                .kind,
            GapKind::Lost("purged".into())
        );
        let n = parse_nearest(
            "a 127.0.0.1:4000 rtt=0.000ms (this daemon)\nb 127.0.0.1:4002 rtt=1.500ms\nc 127.0.0.1:4004 rtt=unknown\n3 daemons, nearest first",
        )
        .unwrap();
        assert_eq!(n[0].rtt, Some(Duration::ZERO));
        assert_eq!(n[1].rtt, Some(Duration::from_micros(1500)));
        assert_eq!(n[2].rtt, None);
    }

    #[test]
    fn malformed_replies_are_protocol_errors() {
        assert!(matches!(
            parse_groups("g1 master=a\n1 groups"),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(parse_flooded("ok"), Err(ClientError::Protocol(_))));
        assert!(matches!(
            parse_topology("0 links"),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            parse_nearest("a b rtt=x\n1 daemons"),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            with_group("group", Some("a b")),
            Err(ClientError::Invalid(_))
        ));
        assert!(matches!(
            with_group("group", Some("")),
            Err(ClientError::Invalid(_))
        ));
        assert_eq!(with_group("group", None), Ok("group\n".into()));
    }
}
