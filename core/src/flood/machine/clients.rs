//! The client port: floodd's commands, answered SMTP-style (SPEC.md §8.6).

use bytes::{Bytes, BytesMut};

use super::super::command::{ClientReader, Command, HELP, Request};
use super::{Client, Flood, FloodError, FloodEvent, Timer, is_tree};
use crate::line::{reply, reply_lines};
use crate::machine::{ClientId, ClientOrigin};
use crate::time::Instant;

impl Flood {
    pub(super) fn on_client_opened(&mut self, client: ClientId, origin: ClientOrigin) {
        self.clients.insert(
            client,
            Client {
                origin,
                reader: ClientReader::new(self.cfg.limits.reader),
            },
        );
        let hello = format!(
            "floodd {} ready (help lists the commands)",
            self.cfg.me.name
        );
        self.write(client, reply(220, &hello));
    }

    /// Writes to a client: into the batch of the client whose bytes are being read (one
    /// write per chunk read, however many requests it held), else at once.
    fn write(&mut self, client: ClientId, bytes: Bytes) {
        match &mut self.batch {
            Some((c, buf)) if *c == client => buf.extend_from_slice(&bytes),
            _ => self.outbox.to_client(client, bytes),
        }
    }

    fn flush_batch(&mut self) {
        if let Some((c, buf)) = self.batch.take()
            && !buf.is_empty()
        {
            self.outbox.to_client(c, buf.freeze());
        }
    }

    fn say(&mut self, client: ClientId, code: u16, text: &str) {
        self.write(client, reply(code, text));
    }

    fn say_lines(&mut self, client: ClientId, code: u16, lines: &[String]) {
        self.write(client, reply_lines(code, lines.iter().map(String::as_str)));
    }

    fn close(&mut self, client: ClientId) {
        if self.batch.as_ref().is_some_and(|(c, _)| *c == client) {
            self.flush_batch();
        }
        self.outbox.close_client(client);
        self.clients.remove(&client);
        self.timers.cancel(&Timer::PartialLine(client));
    }

    pub(super) fn on_client_data(
        &mut self,
        now: Instant,
        client: ClientId,
        data: &Bytes,
    ) -> Result<(), FloodError> {
        let Some(c) = self.clients.get_mut(&client) else {
            return Err(FloodError::UnknownClient(client));
        };
        c.reader.push(data);
        self.batch = Some((client, BytesMut::new()));
        self.read_requests(now, client);
        self.flush_batch();
        Ok(())
    }

    fn read_requests(&mut self, now: Instant, client: ClientId) {
        loop {
            let Some(c) = self.clients.get_mut(&client) else {
                return;
            };
            let Some(next) = c.reader.next() else {
                break;
            };
            match next {
                Ok(req) => self.on_request(now, client, req),
                Err(e) => {
                    self.say(client, e.code(), &e.to_string());
                    if e.is_fatal() {
                        self.close(client);
                        return;
                    }
                }
            }
        }
        // An idle timeout on input left unfinished: restarted by every byte that comes.
        let pending = self.clients.get(&client).map_or(0, |c| c.reader.pending());
        let key = Timer::PartialLine(client);
        if pending > 0 {
            self.timers
                .set(key, now + self.cfg.limits.partial_line_timeout);
        } else {
            self.timers.cancel(&key);
        }
    }

    pub(super) fn on_partial_line(&mut self, client: ClientId) {
        if !self.clients.contains_key(&client) {
            return;
        }
        let secs = self.cfg.limits.partial_line_timeout.as_secs_f64();
        let text = format!("input left unfinished for {secs:.1}s: closing the connection");
        self.say(client, 421, &text);
        self.close(client);
    }

    fn group_error(&mut self, client: ClientId, e: &FloodError) {
        let code = match e {
            FloodError::TooLarge { .. } | FloodError::LargerThanStorage { .. } => 552,
            _ => 501,
        };
        self.say(client, code, &e.to_string());
    }

    fn on_request(&mut self, now: Instant, client: ClientId, req: Request) {
        match req {
            Request::DataStarted { .. } => {
                self.say(
                    client,
                    354,
                    "send the data; end it with a line holding a single \".\"",
                );
            }
            Request::Update { group, data, .. } => {
                let bytes = data.len();
                match self.flood(now, group.as_deref(), data) {
                    Ok(seq) => {
                        let g = self.resolve_group(group.as_deref()).unwrap_or_default();
                        let text = format!(
                            "flooded to {g} as {} {:016x} {seq} ({bytes} bytes)",
                            self.cfg.me.name, self.incarnation
                        );
                        self.say(client, 250, &text);
                    }
                    Err(e) => self.group_error(client, &e),
                }
            }
            Request::Command(cmd) => self.on_command(now, client, cmd),
        }
    }

    fn on_command(&mut self, now: Instant, client: ClientId, cmd: Command) {
        match cmd {
            Command::Help => {
                let mut lines: Vec<String> = HELP.iter().map(|l| l.to_string()).collect();
                lines.push("end of help".into());
                self.say_lines(client, 214, &lines);
            }
            Command::Groups => {
                let mut lines: Vec<String> = self
                    .groups
                    .iter()
                    .map(|(name, g)| {
                        let members = g.topo.as_ref().map_or(0, |t| t.members.len());
                        let mode = if is_tree(g.def.flooding) {
                            "tree"
                        } else {
                            "plain"
                        };
                        format!(
                            "{name} master={} members={members} mode={mode}",
                            g.def.master
                        )
                    })
                    .collect();
                lines.push(format!("{} groups", self.groups.len()));
                self.say_lines(client, 250, &lines);
            }
            Command::Group(g) => match self.resolve_group(g.as_deref()) {
                Ok(name) => {
                    let lines = self.group_lines(now, &name);
                    self.say_lines(client, 250, &lines);
                }
                Err(e) => self.group_error(client, &e),
            },
            Command::Statistics => {
                let lines = self.statistics_lines(now);
                self.say_lines(client, 211, &lines);
            }
            Command::Topology(g) => match self.resolve_group(g.as_deref()) {
                Ok(name) => match self.topology(&name) {
                    Some(t) => {
                        let mut lines = vec![format!(
                            "group {name} version {} master {} members {}",
                            t.version,
                            self.groups[&name].def.master,
                            t.members.len()
                        )];
                        lines.extend(
                            t.links
                                .iter()
                                .map(|(a, b, c)| format!("{a} {b} cost={c}us")),
                        );
                        lines.push(format!("{} links", t.links.len()));
                        self.say_lines(client, 250, &lines);
                    }
                    None => {
                        let text = format!(
                            "no topology yet for {name}: waiting for its master {}",
                            self.groups[&name].def.master
                        );
                        self.say(client, 451, &text);
                    }
                },
                Err(e) => self.group_error(client, &e),
            },
            Command::Nearest => {
                let lines = self.nearest_lines();
                self.say_lines(client, 250, &lines);
            }
            Command::Gaps(g) => match self.resolve_group(g.as_deref()) {
                Ok(name) => {
                    let lines = self.gap_lines(&name);
                    self.say_lines(client, 250, &lines);
                }
                Err(e) => self.group_error(client, &e),
            },
            Command::Quit => {
                self.say(client, 221, "bye");
                self.close(client);
            }
            Command::Terminate => {
                let local = self
                    .clients
                    .get(&client)
                    .is_some_and(|c| c.origin.is_same_host());
                if local {
                    self.say(client, 221, "terminating");
                    self.close(client);
                    self.outbox.event(FloodEvent::Terminate);
                } else {
                    self.say(
                        client,
                        530,
                        "terminate is accepted only from a client on the daemon's host",
                    );
                }
            }
        }
    }

    fn group_lines(&self, now: Instant, name: &str) -> Vec<String> {
        let g = &self.groups[name];
        let me = &self.cfg.me.name;
        let members: Vec<String> = match &g.topo {
            Some(t) => t.members.iter().map(|m| m.name.clone()).collect(),
            None if g.is_master => g.members.keys().cloned().collect(),
            None => g.def.sites.clone(),
        };
        let mut lines: Vec<String> = members
            .iter()
            .map(|m| {
                let addr = self
                    .sites
                    .get(m)
                    .map(|s| format!("{} client={}", s.info.data, s.info.client_port))
                    .unwrap_or_else(|| "address unknown".to_string());
                let role = if m == me {
                    "self".to_string()
                } else if g.neighbours.contains_key(m) {
                    let up = if self.is_up(now, g, m) { "up" } else { "down" };
                    format!("neighbour {up}")
                } else {
                    "member".to_string()
                };
                let master = if *m == g.def.master { " master" } else { "" };
                format!("{m} {addr} {role}{master}")
            })
            .collect();
        lines.push(format!("{} sites in {name}", members.len()));
        lines
    }

    fn statistics_lines(&self, now: Instant) -> Vec<String> {
        let s = &self.stats;
        let mut lines = vec![
            format!("site {}", self.cfg.me.name),
            format!("incarnation {:016x}", self.incarnation),
            format!("storage-bytes {}", self.store.bytes()),
            format!("storage-max {}", self.cfg.local.data_storage_max),
            format!("originated {}", s.originated),
            format!("delivered {}", s.delivered),
            format!("duplicates {}", s.duplicates),
            format!("payloads-sent {}", s.payloads_sent),
            format!("payloads-pulled {}", s.payloads_pulled),
            format!("digests-sent {}", s.digests_sent),
            format!("pulls-sent {}", s.pulls_sent),
            format!("missing {}", s.missing),
            format!("recovered {}", s.recovered),
            format!("lost {}", s.lost),
            format!("exported {}", s.exported),
            format!("export-runs {}", s.export_runs),
            format!("export-failures {}", s.export_failures),
            format!("export-timeouts {}", s.export_timeouts),
            format!("export-dropped {}", s.export_dropped),
            format!("dropped-kept {}", s.dropped_kept),
            format!("dropped-unexported {}", s.dropped_unexported),
            format!("purged {}", s.purged),
            format!("topologies {}", s.topologies),
            format!("generator-failures {}", s.generator_failures),
            format!("bad-frames {}", s.bad_frames),
            format!("clients {}", self.clients.len()),
            format!("sites-known {}", self.sites.len()),
        ];
        for (name, g) in &self.groups {
            let up = g
                .neighbours
                .keys()
                .filter(|n| self.is_up(now, g, n))
                .count();
            let open = g.streams.values().filter(|s| s.is_missing_any()).count();
            let version = g.topo.as_ref().map_or(0, |t| t.version);
            lines.push(format!(
                "group {name} version={version} neighbours={}/{} streams={} open-gaps={open}",
                up,
                g.neighbours.len(),
                g.streams.len()
            ));
        }
        lines.push(format!("{} values", lines.len()));
        lines
    }

    /// Every known daemon, nearest first by this site's round-trip estimates (this one
    /// first of all; unmeasured ones last, by name).
    fn nearest_lines(&self) -> Vec<String> {
        let me = &self.cfg.me;
        let mut ranked: Vec<(u8, u128, String, String)> = self
            .sites
            .values()
            .filter(|s| s.info.name != me.name)
            .map(|s| match s.rtt {
                Some(r) => (
                    1,
                    r.as_micros(),
                    s.info.name.clone(),
                    format!(
                        "{} {} rtt={:.3}ms",
                        s.info.name,
                        s.info.client_addr(),
                        r.as_secs_f64() * 1e3
                    ),
                ),
                None => (
                    2,
                    0,
                    s.info.name.clone(),
                    format!("{} {} rtt=unknown", s.info.name, s.info.client_addr()),
                ),
            })
            .collect();
        ranked.sort();
        let mut lines = vec![format!(
            "{} {} rtt=0.000ms (this daemon)",
            me.name,
            me.client_addr()
        )];
        lines.extend(ranked.into_iter().map(|r| r.3));
        lines.push(format!(
            "{} daemons, nearest first by this daemon's round-trip estimates",
            lines.len()
        ));
        lines
    }

    fn gap_lines(&self, name: &str) -> Vec<String> {
        let g = &self.groups[name];
        let mut lines = Vec::new();
        for (k, s) in &g.streams {
            for (a, b) in s.missing_ranges(16) {
                lines.push(format!(
                    "missing {} {:016x} {a} {b}",
                    k.origin, k.incarnation
                ));
            }
        }
        for (k, a, b, why) in &g.lost_log {
            lines.push(format!(
                "lost {} {:016x} {a} {b} {}",
                k.origin,
                k.incarnation,
                why.as_str()
            ));
        }
        lines.push(format!("{} gaps in {name}", lines.len()));
        lines
    }
}
