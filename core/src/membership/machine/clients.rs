//! The client side of the daemon's port: `members`, `stats`, `reload`, `leave`, `help`, `quit`
//! (SPEC.md §9.6).

use core::time::Duration;

use bytes::Bytes;

use super::{Client, Membership, MembershipError, MembershipEvent, Timer};
use crate::line::{LineBuffer, reply, reply_lines};
use crate::machine::{ClientId, ClientOrigin};
use crate::time::Instant;

/// A client that leaves a line unfinished this long is closed.
const PARTIAL_LINE: Duration = Duration::from_secs(30);

const HELP: &[&str] = &[
    "members     the view this daemon holds: its id, primary or not, every member",
    "stats       this daemon's counters, one 'name value' per line",
    "reload      read the configuration file again and apply it to the cluster",
    "leave       take this daemon out of the cluster; it stops once out",
    "quit        close this connection",
    "help        this summary",
];

impl Membership {
    pub(super) fn on_client_opened(&mut self, client: ClientId, _origin: ClientOrigin) {
        self.clients.insert(
            client,
            Client {
                lines: LineBuffer::new(self.max_line),
            },
        );
    }

    fn say(&mut self, client: ClientId, code: u16, text: &str) {
        self.outbox.to_client(client, reply(code, text));
    }

    pub(super) fn on_client_data(
        &mut self,
        now: Instant,
        client: ClientId,
        data: &Bytes,
    ) -> Result<(), MembershipError> {
        let Some(c) = self.clients.get_mut(&client) else {
            return Err(MembershipError::UnknownClient(client));
        };
        c.lines.push(data);
        loop {
            let Some(c) = self.clients.get_mut(&client) else {
                return Ok(());
            };
            match c.lines.next_line() {
                Ok(Some(line)) => self.on_line(now, client, &line),
                Ok(None) => break,
                Err(e) => {
                    self.say(client, 500, &e.to_string());
                    self.outbox.close_client(client);
                    self.clients.remove(&client);
                    self.reload_waiting.retain(|w| *w != client);
                    self.timers.cancel(&Timer::PartialLine(client));
                    return Ok(());
                }
            }
        }
        let pending = self.clients.get(&client).map_or(0, |c| c.lines.pending());
        if pending > 0 {
            self.timers
                .set(Timer::PartialLine(client), now + PARTIAL_LINE);
        } else {
            self.timers.cancel(&Timer::PartialLine(client));
        }
        Ok(())
    }

    /// Answers every client waiting for a reload.
    pub(super) fn answer_reload(&mut self, code: u16, text: &str) {
        for c in std::mem::take(&mut self.reload_waiting) {
            if self.clients.contains_key(&c) {
                self.say(c, code, text);
            }
        }
    }

    pub(super) fn on_partial_line(&mut self, client: ClientId) {
        if self.clients.remove(&client).is_some() {
            self.reload_waiting.retain(|w| *w != client);
            self.say(
                client,
                421,
                "line left unfinished for 30s: closing the connection",
            );
            self.outbox.close_client(client);
        }
    }

    fn on_line(&mut self, now: Instant, client: ClientId, line: &str) {
        let mut words = line.split_whitespace();
        let Some(cmd) = words.next() else {
            return;
        };
        let cmd = cmd.to_ascii_lowercase();
        if words.next().is_some() && cmd != "help" {
            self.say(client, 501, &format!("{cmd} takes no arguments"));
            return;
        }
        match cmd.as_str() {
            "members" => {
                let v = &self.view;
                // The whole id, incarnation included: a restarted daemon's first view
                // is `0 NAME` in every life, told apart by the incarnation.
                let mut lines = vec![format!(
                    "view {} {} {} members={} config={} incarnation={:016x}",
                    v.id.epoch,
                    v.id.coordinator,
                    if v.primary { "primary" } else { "non-primary" },
                    v.members.len(),
                    v.config_version,
                    v.id.incarnation
                )];
                lines.extend(
                    v.members.iter().map(|m| {
                        format!("{} {} incarnation={:016x}", m.name, m.addr, m.incarnation)
                    }),
                );
                lines.push(format!("{} members", v.members.len()));
                let bytes = reply_lines(250, lines.iter().map(String::as_str));
                self.outbox.to_client(client, bytes);
            }
            "stats" => {
                let st = &self.stats;
                let lines = [
                    format!("views {}", st.views),
                    format!("proposals {}", st.proposals),
                    format!("suspicions {}", st.suspicions),
                    format!("refuted {}", st.refuted),
                    format!("gathers {}", st.gathers),
                    format!("heartbeats {}", st.heartbeats),
                    format!("frames_sent {}", st.frames_sent),
                    format!("bytes_sent {}", st.bytes_sent),
                    format!("bad_frames {}", st.bad_frames),
                    format!("neighbours {}", self.neighbours.len()),
                    "end of stats".to_string(),
                ];
                let bytes = reply_lines(250, lines.iter().map(String::as_str));
                self.outbox.to_client(client, bytes);
            }
            "reload" => {
                // Answered when the embedding program has read the file (or failed to).
                if !self.reload_waiting.contains(&client) {
                    self.reload_waiting.push(client);
                }
                self.outbox.event(MembershipEvent::ReloadRequested);
            }
            "leave" if self.stopped => {
                self.say(client, 451, "this daemon is already out of the cluster");
            }
            "leave" => {
                self.say(client, 250, "leaving the cluster");
                self.leave(now);
            }
            "help" => {
                let mut lines: Vec<&str> = HELP.to_vec();
                lines.push("end of help");
                self.outbox.to_client(client, reply_lines(214, lines));
            }
            "quit" => {
                self.say(client, 221, "bye");
                self.outbox.close_client(client);
                self.clients.remove(&client);
                self.reload_waiting.retain(|w| *w != client);
                self.timers.cancel(&Timer::PartialLine(client));
            }
            other => {
                let shown: String = other.chars().take(32).collect();
                self.say(
                    client,
                    500,
                    &format!("unknown command '{shown}' (try help)"),
                );
            }
        }
    }
}
