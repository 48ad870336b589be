//! The agent's control lines (SPEC.md §11.7): what `flotilla vip …` and the client
//! library say to the agent on its local socket, whose file permissions decide who may.
//! One request at a time per connection: a `move` holds the connection's later lines
//! until it is done or cannot be.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{VipAgent, VipEvent};
use crate::line::{LineBuffer, LineError, reply, reply_lines};
use crate::machine::ClientId;
use crate::vip::msg::VipMsg;

/// Longest control line.
pub const MAX_CONTROL_LINE: usize = 1024;
/// Most control connections at once; past it a new one is told `421` and closed.
pub const MAX_CONTROL_CLIENTS: usize = 64;
/// Most lines a connection may have waiting behind a move; past it `421` and closed.
pub const MAX_QUEUED_LINES: usize = 64;
/// Tokens of moves asked on control connections have this bit set, so they never meet
/// the tokens an embedding program picks for its own [`super::VipCommand::Move`]s.
pub const CONTROL_TOKEN: u64 = 1 << 63;

/// One control connection.
#[derive(Debug)]
pub(super) struct Control {
    buf: LineBuffer,
    /// Lines waiting behind a move in progress.
    queued: VecDeque<String>,
    /// The move this connection waits for.
    pub(super) waiting: Option<u64>,
    /// Notices of every change (`watch`).
    pub(super) watching: bool,
}

const HELP: [&str; 8] = [
    "status: every VIP, its holder, since where, and this node",
    "eligible on|off: whether this node may hold VIPs",
    "prefer VIP NODE|*: the node VIP should be on (* for the file's again)",
    "move VIP NODE: moves VIP to NODE now and answers when it is there, or why not",
    "watch: notices of every change, as they happen (610 holder, 611 local)",
    "help: this",
    "quit: closes the connection",
    "end of help",
];

impl VipAgent {
    pub(super) fn control_open(&mut self, client: ClientId) {
        if self.clients.len() >= MAX_CONTROL_CLIENTS {
            self.outbox.to_client(
                client,
                reply(
                    421,
                    &format!("too many control connections ({MAX_CONTROL_CLIENTS})"),
                ),
            );
            self.outbox.close_client(client);
            return;
        }
        self.clients.insert(
            client,
            Control {
                buf: LineBuffer::new(MAX_CONTROL_LINE),
                queued: VecDeque::new(),
                waiting: None,
                watching: false,
            },
        );
        self.outbox.to_client(
            client,
            reply(220, &format!("flotilla vipd {} ready", self.node)),
        );
    }

    pub(super) fn control_closed(&mut self, client: ClientId) {
        if let Some(c) = self.clients.remove(&client)
            && let Some(t) = c.waiting
        {
            self.move_waiters.remove(&t);
        }
    }

    pub(super) fn control_data(&mut self, client: ClientId, data: &Bytes) {
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        c.buf.push(data);
        loop {
            let Some(c) = self.clients.get_mut(&client) else {
                return;
            };
            let line = match c.buf.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    let text = match e {
                        LineError::TooLong(n) => format!("line longer than {n} bytes"),
                        _ => e.to_string(),
                    };
                    self.outbox.to_client(client, reply(500, &text));
                    self.outbox.close_client(client);
                    self.control_closed(client);
                    return;
                }
            };
            if c.waiting.is_some() {
                if c.queued.len() >= MAX_QUEUED_LINES {
                    self.outbox.to_client(
                        client,
                        reply(
                            421,
                            &format!("more than {MAX_QUEUED_LINES} lines waiting behind a move"),
                        ),
                    );
                    self.outbox.close_client(client);
                    self.control_closed(client);
                    return;
                }
                c.queued.push_back(line);
                continue;
            }
            if !self.control_line(client, &line) {
                return;
            }
        }
    }

    /// Runs one request; false when the connection is closed (a `move` leaves it open,
    /// waiting: the lines after it are queued).
    fn control_line(&mut self, client: ClientId, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            [] => return true,
            ["status"] => Some(self.status_reply()),
            ["eligible", on @ ("on" | "off")] => {
                self.eligible = *on == "on";
                Some(reply(250, &format!("eligible {on}")))
            }
            ["prefer", vip, node] => Some(self.control_prefer(vip, node)),
            ["move", vip, node] => self.control_move(client, vip, node),
            ["watch"] => {
                if let Some(c) = self.clients.get_mut(&client) {
                    c.watching = true;
                }
                Some(reply(
                    250,
                    "watching: 610 VIP holder NODE|- at PLACE, 611 VIP local CHANGE",
                ))
            }
            ["help"] => Some(reply_lines(214, HELP)),
            ["quit"] => {
                self.outbox.to_client(client, reply(221, "bye"));
                self.outbox.close_client(client);
                self.control_closed(client);
                return false;
            }
            [
                verb @ ("status" | "eligible" | "prefer" | "move" | "watch" | "help" | "quit"),
                ..,
            ] => Some(reply(
                501,
                &format!("wrong arguments for {verb} (help lists them)"),
            )),
            [other, ..] => Some(reply(
                500,
                &format!(
                    "unknown command {:?} (help lists them)",
                    other.chars().take(32).collect::<String>()
                ),
            )),
        };
        if let Some(a) = answer {
            self.outbox.to_client(client, a);
        }
        true
    }

    fn control_prefer(&mut self, vip: &str, node: &str) -> Bytes {
        if let Err(e) = self.vip_index(vip) {
            return reply(450, &e.to_string());
        }
        let target = (node != "*").then(|| node.to_string());
        if let Some(n) = &target
            && let Err(e) = self.known_node(n)
        {
            return reply(450, &e.to_string());
        }
        match self.generation() {
            Ok(generation) => {
                self.send(VipMsg::Prefer {
                    generation,
                    vip: vip.to_string(),
                    node: target,
                });
                reply(
                    250,
                    &format!(
                        "prefer {vip} {node}: sent, it takes effect at its place in the order"
                    ),
                )
            }
            Err(e) => reply(451, &e.to_string()),
        }
    }

    /// A move: sent, and the connection waits for its outcome (`None`), or refused now.
    fn control_move(&mut self, client: ClientId, vip: &str, node: &str) -> Option<Bytes> {
        if let Err(e) = self.vip_index(vip) {
            return Some(reply(450, &e.to_string()));
        }
        if let Err(e) = self.known_node(node) {
            return Some(reply(450, &e.to_string()));
        }
        let generation = match self.generation() {
            Ok(g) => g,
            Err(e) => return Some(reply(451, &e.to_string())),
        };
        let token = CONTROL_TOKEN | self.next_token;
        self.next_token = (self.next_token + 1) & !CONTROL_TOKEN;
        self.send(VipMsg::Move {
            generation,
            vip: vip.to_string(),
            node: node.to_string(),
            token,
        });
        self.move_waiters.insert(token, client);
        if let Some(c) = self.clients.get_mut(&client) {
            c.waiting = Some(token);
        }
        None
    }

    /// A move's outcome: answers the connection waiting for it and runs what it held.
    pub(super) fn control_move_done(
        &mut self,
        token: u64,
        vip: &str,
        result: &Result<String, String>,
    ) {
        let Some(client) = self.move_waiters.remove(&token) else {
            return;
        };
        let text = match result {
            Ok(n) => reply(250, &format!("moved {vip} to {n}")),
            Err(why) => reply(450, &format!("move of {vip} failed: {why}")),
        };
        self.outbox.to_client(client, text);
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        c.waiting = None;
        while let Some(c) = self.clients.get_mut(&client) {
            if c.waiting.is_some() {
                return;
            }
            let Some(line) = c.queued.pop_front() else {
                return;
            };
            if !self.control_line(client, &line) {
                return;
            }
        }
    }

    /// Notices to watching connections.
    pub(super) fn control_notice(&mut self, event: &VipEvent) {
        let line = match event {
            VipEvent::Holder { vip, holder, at } => {
                format!(
                    "610 {vip} holder {} at {at}\n",
                    holder.as_deref().unwrap_or("-")
                )
            }
            VipEvent::Local { vip, change } => format!("611 {vip} local {}\n", change.as_str()),
            _ => return,
        };
        let watchers: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.watching)
            .map(|(id, _)| *id)
            .collect();
        let bytes = Bytes::from(line);
        for w in watchers {
            self.outbox.to_client(w, bytes.clone());
        }
    }

    fn status_reply(&self) -> Bytes {
        let s = self.status();
        let yn = |b: bool| if b { "yes" } else { "no" };
        let mut lines: Vec<String> = s
            .vips
            .iter()
            .map(|r| {
                format!(
                    "vip {} holder={} acquired={} since={} prefer={} releasing={} local={} addresses={}",
                    r.name,
                    r.holder.as_deref().unwrap_or("-"),
                    yn(r.acquired),
                    r.since.as_ref().map_or("-".to_string(), |p| p.to_string()),
                    r.prefer.as_deref().unwrap_or("-"),
                    if r.releasing.is_empty() { "-".to_string() } else { r.releasing.join(",") },
                    r.local.as_str(),
                    r.addresses.iter().map(|a| a.replace(' ', "@")).collect::<Vec<_>>().join(","),
                )
            })
            .collect();
        lines.push(format!(
            "node {} generation={} members={} primary={} settled={} eligible={} healthy={} fenced={}",
            s.node,
            s.generation.as_ref().map_or("-".to_string(), |p| p.to_string()),
            if s.members.is_empty() { "-".to_string() } else { s.members.join(",") },
            yn(s.primary),
            yn(s.settled),
            yn(s.facts.eligible),
            yn(s.facts.healthy),
            yn(s.facts.fenced),
        ));
        reply_lines(250, lines.iter().map(String::as_str))
    }

    /// Checks of the control side, for `check_invariants`.
    pub(super) fn control_check(&self) -> Result<(), String> {
        if self.clients.len() > MAX_CONTROL_CLIENTS {
            return Err("more control connections than the limit".into());
        }
        for (&t, c) in &self.move_waiters {
            if t & CONTROL_TOKEN == 0 {
                return Err("a control move without the control bit".into());
            }
            if self.clients.get(c).and_then(|c| c.waiting) != Some(t) {
                return Err(format!(
                    "move {t:#x} waited for by a connection that does not wait for it"
                ));
            }
        }
        for (id, c) in &self.clients {
            if let Some(t) = c.waiting
                && self.move_waiters.get(&t) != Some(id)
            {
                return Err(format!("{id} waits for a move nobody will answer"));
            }
            if c.waiting.is_none() && !c.queued.is_empty() {
                return Err(format!("{id} holds lines while waiting for nothing"));
            }
        }
        Ok(())
    }
}
