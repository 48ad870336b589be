//! `Echo`: the one test machine the driver conformance tests run under every runtime.
//!
//! Client lines, upper-cased back, except:
//! - `quit` closes the client; `flood` writes far more than any queue holds;
//! - `notice N` sends N unsolicited `601 n-K` lines, then `200 sent N`;
//! - `multi` answers the three-line reply `250-a`, `250-b`, `250 c`;
//! - `effect TEXT` asks for an effect `TEXT` and answers `200 …` or `500 …` with its
//!   outcome (the runner decides what TEXT does).
//!
//! Peer frames come back to their sender. Events report opens (with their origin), closes,
//! frames and effect outcomes. The command `Refuse` is refused with a typed error.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use flotilla_core::compose::Part;
use flotilla_core::line::{LineBuffer, reply, reply_lines};
use flotilla_core::wire::Frame;
use flotilla_core::{
    ClientId, ClientOrigin, EffectId, Input, InputOf, Instant, Machine, Outbox, Output, debug_check,
};

/// What the machine saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A client opened.
    Opened(ClientId, ClientOrigin),
    /// A client closed.
    Closed(ClientId),
    /// A peer frame.
    Frame(SocketAddr, Frame),
    /// An effect finished: its id and `ok TEXT` or `err TEXT`.
    Effect(EffectId, String),
    /// A command was accepted.
    Said(String),
}

/// Commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoCommand {
    /// Accepted: reported as `Seen::Said`.
    Say(String),
    /// Refused with [`EchoError::Refused`].
    Refuse,
}

/// Why Echo refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EchoError {
    /// The `Refuse` command.
    #[error("refused on purpose")]
    Refused,
    /// Bytes for a client never opened.
    #[error("unknown client {0}")]
    UnknownClient(ClientId),
    /// An outcome for an effect not in flight.
    #[error("unknown effect {0}")]
    UnknownEffect(EffectId),
}

/// The test machine.
#[derive(Default)]
pub struct Echo {
    lines: BTreeMap<ClientId, LineBuffer>,
    effects: BTreeMap<EffectId, ClientId>,
    next_effect: u64,
    out: Outbox<Seen, String>,
}

impl Echo {
    fn on_line(&mut self, c: ClientId, line: &str) {
        let mut words = line.splitn(2, ' ');
        match (words.next().unwrap_or(""), words.next()) {
            ("quit", None) => self.out.close_client(c),
            ("flood", None) => {
                for _ in 0..256 {
                    self.out.to_client(c, Bytes::from(vec![b'x'; 64 * 1024]));
                }
            }
            ("notice", Some(n)) => {
                let n: u32 = n.parse().unwrap_or(0);
                for k in 0..n {
                    self.out.to_client(c, reply(601, &format!("n-{k}")));
                }
                self.out.to_client(c, reply(200, &format!("sent {n}")));
            }
            ("multi", None) => self.out.to_client(c, reply_lines(250, ["a", "b", "c"])),
            ("effect", Some(what)) => {
                self.next_effect += 1;
                let id = EffectId(self.next_effect);
                self.effects.insert(id, c);
                self.out.effect(id, what.to_string(), None);
            }
            _ => {
                let mut up = line.to_ascii_uppercase();
                up.push('\n');
                self.out.to_client(c, Bytes::from(up));
            }
        }
    }

    fn on_input(&mut self, input: InputOf<Self>) -> Result<(), EchoError> {
        match input {
            Input::Frame { from, frame } => {
                self.out.transmit(from, frame.clone());
                self.out.event(Seen::Frame(from, frame));
            }
            Input::ClientOpened { client, origin } => {
                self.lines.insert(client, LineBuffer::new(1 << 20));
                self.out.event(Seen::Opened(client, origin));
            }
            Input::ClientData(c, data) => {
                let buf = self.lines.get_mut(&c).ok_or(EchoError::UnknownClient(c))?;
                buf.push(&data);
                let mut lines = Vec::new();
                while let Ok(Some(l)) = buf.next_line() {
                    lines.push(l);
                }
                for l in lines {
                    self.on_line(c, &l);
                }
            }
            Input::ClientClosed(c) => {
                if self.lines.remove(&c).is_some() {
                    self.out.event(Seen::Closed(c));
                }
            }
            Input::Command(EchoCommand::Say(s)) => self.out.event(Seen::Said(s)),
            Input::Command(EchoCommand::Refuse) => return Err(EchoError::Refused),
            Input::EffectDone { id, outcome } => {
                let c = self
                    .effects
                    .remove(&id)
                    .ok_or(EchoError::UnknownEffect(id))?;
                let text = match outcome {
                    Ok(v) => format!("ok {v}"),
                    Err(e) => format!("err {e}"),
                };
                let code = if text.starts_with("ok") { 200 } else { 500 };
                if self.lines.contains_key(&c) {
                    self.out.to_client(c, reply(code, &text));
                }
                self.out.event(Seen::Effect(id, text));
            }
        }
        Ok(())
    }
}

impl Machine for Echo {
    type Command = EchoCommand;
    type Event = Seen;
    type Error = EchoError;
    type Effect = String;
    type EffectValue = String;

    fn handle(&mut self, _now: Instant, input: InputOf<Self>) -> Result<(), EchoError> {
        let r = self.on_input(input);
        debug_check(self);
        r
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Option<Output<Seen, String>> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Every effect in flight belongs to a client that was opened.
    fn check_invariants(&self) -> Result<(), String> {
        if self.effects.len() as u64 > self.next_effect {
            return Err("more effects in flight than ever asked for".into());
        }
        Ok(())
    }
}

impl Part for Echo {
    fn owns_family(&self, family: u8) -> bool {
        family == 0x77
    }
}
