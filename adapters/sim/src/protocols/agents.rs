//! What service agents hear (SPEC.md §10.6–10.7), checked from their client streams
//! alone: the requests a stream sends and the lines it reads, as a user's agent would.
//!
//! An agent learns its port from its bind's answer (`250 PORT`), from `624 SERVICE moved
//! PORT`, and in every barrier start (`621 SERVICE start EVENT PORT …`). Checked:
//!
//! - a barrier start names the port the agent was last told (never another one);
//! - a move away from a port (`624` from a port other than 0) is announced with the
//!   barrier of the view that decided it, in the same step (`620`/`621` right after);
//! - an agent moves away from a port at most once per view (as named by that barrier):
//!   after a heal, an agent whose service keeps its port is told no other port, and a
//!   service that loses its port moves once, not through other services' ports.
//!
//! Moves from port 0 (a service left without a port gets one that freed) need no
//! barrier.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use flotilla_core::ClientId;

/// A request whose answer changes what the stream is the agent of.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Asked {
    Bind(String),
    Release(String),
    Other,
}

/// One agent binding, as its stream heard it.
#[derive(Clone, Debug, Default)]
struct Agent {
    /// The port last told (0: none).
    port: u16,
    /// Moved away from a port; its barrier has not begun yet.
    moved: Option<u16>,
    /// Views in which the agent moved away from a port (from its barriers' names).
    moved_in: BTreeSet<String>,
}

#[derive(Clone, Debug, Default)]
struct Stream {
    node: String,
    sent: Vec<u8>,
    got: Vec<u8>,
    asked: VecDeque<Asked>,
    agents: BTreeMap<String, Agent>,
}

/// Every client stream's agents.
#[derive(Clone, Debug, Default)]
pub struct Agents {
    streams: BTreeMap<ClientId, Stream>,
}

fn lines(buf: &mut Vec<u8>, data: &[u8]) -> Vec<String> {
    buf.extend_from_slice(data);
    let mut out = Vec::new();
    while let Some(k) = buf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = buf.drain(..=k).collect();
        let text = String::from_utf8_lossy(&line[..k]);
        out.push(text.trim_end_matches('\r').to_string());
    }
    out
}

impl Agents {
    /// Bytes a client sent on `client` (a stream of a daemon called `node`).
    pub fn from_client(&mut self, node: &str, client: ClientId, data: &[u8]) {
        let s = self.streams.entry(client).or_default();
        s.node = node.to_string();
        for line in lines(&mut s.sent, data) {
            let mut w = line.split_whitespace();
            let asked = match (w.next(), w.next()) {
                (None, _) => continue,
                (Some("bind"), Some(svc)) => Asked::Bind(svc.to_string()),
                (Some("release"), Some(svc)) => Asked::Release(svc.to_string()),
                _ => Asked::Other,
            };
            s.asked.push_back(asked);
        }
    }

    /// Bytes the daemon wrote to `client`; the first thing wrong, if any.
    pub fn to_client(&mut self, node: &str, client: ClientId, data: &[u8]) -> Result<(), String> {
        let s = self.streams.entry(client).or_default();
        s.node = node.to_string();
        let mut first = Ok(());
        for line in lines(&mut s.got, data) {
            let r = Self::line(s, &line);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn line(s: &mut Stream, line: &str) -> Result<(), String> {
        let node = s.node.clone();
        let w: Vec<&str> = line.split(' ').collect();
        let code = w[0];
        if code.len() != 3 {
            return Ok(()); // a line of a longer reply (`250-…`)
        }
        if !code.starts_with('6') {
            // The final line of a reply: it answers the oldest request.
            match s.asked.pop_front() {
                Some(Asked::Bind(svc)) => {
                    if let ["250", port] = w[..]
                        && let Ok(port) = port.parse()
                    {
                        let a = Agent {
                            port,
                            ..Agent::default()
                        };
                        s.agents.insert(svc, a);
                    }
                }
                Some(Asked::Release(svc)) if code == "250" => {
                    s.agents.remove(&svc);
                }
                _ => {}
            }
            return Ok(());
        }
        let svc = w.get(1).copied().unwrap_or("");
        let not_agent = || format!("{node}: `{line}` to a stream that is not {svc}'s agent");
        match code {
            "624" => {
                let a = s.agents.get_mut(svc).ok_or_else(not_agent)?;
                let port: u16 = w.get(3).and_then(|p| p.parse().ok()).unwrap_or(0);
                if let Some(from) = a.moved {
                    return Err(format!(
                        "{node}: {svc}'s agent moved from {from} to {} and then to {port} before \
                         the barrier that should announce the first move",
                        a.port
                    ));
                }
                if a.port != 0 {
                    a.moved = Some(a.port);
                }
                a.port = port;
            }
            "621" => {
                let a = s.agents.get_mut(svc).ok_or_else(not_agent)?;
                let event = w.get(3).copied().unwrap_or("");
                let port: u16 = w.get(4).and_then(|p| p.parse().ok()).unwrap_or(u16::MAX);
                if port != a.port {
                    return Err(format!(
                        "{node}: barrier {event} of {svc} names port {port}, but its agent was \
                         told {}",
                        a.port
                    ));
                }
                if let Some(from) = a.moved.take() {
                    let view = event.rsplit_once(':').map_or(event, |(v, _)| v).to_string();
                    if !a.moved_in.insert(view.clone()) {
                        return Err(format!(
                            "{node}: {svc}'s agent moved twice in view {view} (the second time \
                             from {from} to {port})"
                        ));
                    }
                }
            }
            "625" => {
                s.agents.remove(svc);
            }
            _ => {}
        }
        Ok(())
    }

    /// After a step: every move away from a port was announced with its barrier.
    pub fn settled(&self) -> Result<(), String> {
        for s in self.streams.values() {
            for (svc, a) in &s.agents {
                if let Some(from) = a.moved {
                    return Err(format!(
                        "{}: {svc}'s agent was moved from {from} to {} without a barrier",
                        s.node, a.port
                    ));
                }
            }
        }
        Ok(())
    }

    /// A stream is gone.
    pub fn closed(&mut self, client: ClientId) {
        self.streams.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(lines: &[&str]) -> Result<(), String> {
        let mut a = Agents::default();
        let c = ClientId(1);
        a.from_client("n1", c, b"bind web\ndone web\n");
        for l in lines {
            a.to_client("n1", c, format!("{l}\n").as_bytes())?;
        }
        a.settled()
    }

    #[test]
    fn a_move_announced_with_its_barrier_passes() {
        agent(&[
            "250 7000",
            "620 web stop 1.a.1:0",
            "621 web start 1.a.1:0 7000 1 n1",
            "624 web moved 7001",
            "620 web stop 2.a.1:0",
            "621 web start 2.a.1:0 7001 1 n1",
            "250 done web 2.a.1:0",
            "624 web moved 0",
            "620 web stop 3.a.1:0",
            "621 web start 3.a.1:0 0 1 n1",
            "624 web moved 7002",
        ])
        .unwrap();
    }

    #[test]
    fn another_services_port_and_back_is_caught() {
        // The finding: moved to another's port, a barrier with it, then moved back.
        let e = agent(&[
            "250 7000",
            "624 web moved 7001",
            "620 web stop 2.a.1:0",
            "621 web start 2.a.1:0 7001 1 n1",
            "624 web moved 7000",
        ])
        .unwrap_err();
        assert!(e.contains("without a barrier"), "{e}");
        let e = agent(&[
            "250 7000",
            "624 web moved 7001",
            "620 web stop 2.a.1:0",
            "621 web start 2.a.1:0 7001 1 n1",
            "624 web moved 7000",
            "620 web stop 2.a.1:3",
            "621 web start 2.a.1:3 7000 1 n1",
        ])
        .unwrap_err();
        assert!(e.contains("moved twice in view 2.a.1"), "{e}");
        let e = agent(&["250 7000", "624 web moved 7001", "624 web moved 7002"]).unwrap_err();
        assert!(e.contains("before the barrier"), "{e}");
    }

    #[test]
    fn a_barrier_naming_another_port_is_caught() {
        let e = agent(&[
            "250 7000",
            "620 web stop 1.a.1:4",
            "621 web start 1.a.1:4 7003 1 n1",
        ])
        .unwrap_err();
        assert!(e.contains("names port 7003"), "{e}");
        let e = agent(&["250 9", "624 db moved 7001"]).unwrap_err();
        assert!(e.contains("not db's agent"), "{e}");
    }
}
