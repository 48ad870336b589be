//! The client side of a ship: request lines in, replies out (SPEC.md §5.1).

use super::*;

impl Ship {
    // ----- client side ---------------------------------------------------------------

    pub(super) fn on_client_data(&mut self, now: Instant, client: ClientId, data: &[u8]) {
        let Some(conn) = self.clients.get_mut(&client) else {
            return;
        };
        if conn.quitting {
            return; // closing once its pending request is answered
        }
        conn.lines.push(data);
        self.read_lines(now, client);
        // A line begun and not finished holds the connection: it may wait only so long.
        match self.clients.get(&client) {
            Some(c) if c.lines.pending() > 0 => {
                if !self.timers.contains(&Timer::PartialLine(client)) {
                    let at = now + self.cfg.limits.partial_line_timeout;
                    self.timers.set(Timer::PartialLine(client), at);
                }
            }
            _ => self.timers.cancel(&Timer::PartialLine(client)),
        }
    }

    /// A client's line stayed unfinished for `partial_line_timeout`: it is told so and
    /// closed, so an idle half-line cannot hold a connection forever.
    pub(super) fn on_partial_line(&mut self, now: Instant, client: ClientId) {
        let unfinished = self.clients.get(&client).map(|c| c.lines.pending());
        if unfinished.unwrap_or(0) == 0 {
            return;
        }
        let secs = self.cfg.limits.partial_line_timeout.as_secs_f64();
        let text = format!("line not finished within {secs:.1}s: closing the connection");
        self.reply(client, 408, &text);
        self.outbox.close_client(client);
        self.drop_client(now, client);
    }

    fn read_lines(&mut self, now: Instant, client: ClientId) {
        loop {
            let Some(conn) = self.clients.get_mut(&client) else {
                return;
            };
            let line = match conn.lines.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => return,
                Err(e) => {
                    self.reply(client, 400, &e.to_string());
                    self.outbox.close_client(client);
                    self.drop_client(now, client);
                    return;
                }
            };
            let pending = conn.pending.is_some();
            match parse_request(&line) {
                Ok(Request::Quit) if pending => {
                    // The pending request is answered first; then bye.
                    conn.quitting = true;
                    return;
                }
                Ok(Request::Quit) => {
                    self.reply(client, 200, "bye");
                    self.outbox.close_client(client);
                    self.drop_client(now, client);
                    return;
                }
                Ok(_) | Err(_) if pending => {
                    self.reply(
                        client,
                        409,
                        "busy: a request on this connection is waiting for its reply",
                    );
                }
                Ok(req) => self.on_request(now, client, req),
                Err(BadRequest { code, text }) => self.reply(client, code, &text),
            }
        }
    }

    pub(super) fn on_request(&mut self, now: Instant, client: ClientId, req: Request) {
        match req {
            Request::Quit => unreachable!("handled by the caller"),
            Request::Help => self.reply(client, 200, HELP),
            Request::Status => {
                let text = format!(
                    "role={} id={:016x} epoch={:016x} version={} parent={} children={} pending={} routes={}",
                    if self.is_root() {
                        "mothership"
                    } else {
                        "daughtership"
                    },
                    self.id,
                    self.epoch,
                    self.version,
                    match &self.parent {
                        None => "none",
                        Some(p) if p.refused.is_some() => "refused",
                        Some(p) if p.up => "up",
                        Some(_) => "lost",
                    },
                    self.children.len(),
                    self.reqs.len(),
                    self.routes.len(),
                );
                self.reply(client, 200, &text);
            }
            Request::Get { path } => {
                if self.epoch == 0 {
                    self.reply(client, 503, "not yet synchronised with the mothership");
                    return;
                }
                match self.tree.get(&path) {
                    Ok(v) => self.reply(client, 200, &v),
                    Err(e) => self.reply(client, 404, &e.to_string()),
                }
            }
            Request::Set { path, value } => {
                if self.epoch == 0 {
                    self.reply(client, 503, "not yet synchronised with the mothership");
                    return;
                }
                if let Err(e) = self.tree.prepare_set(&path, &value) {
                    let code = config_error_code(&e);
                    self.reply(client, code, &e.to_string());
                    return;
                }
                self.start_config(now, client, ConfigOp::Set { path, value });
            }
            Request::Claim { pattern, host } => {
                let host = host.unwrap_or_else(|| format!("client-{:x}-{}", self.id, client.0));
                self.start_config(now, client, ConfigOp::Claim { pattern, host });
            }
            Request::Accept {
                key,
                advertise,
                timeout,
            } => {
                if self.busy() {
                    self.reply(client, 503, "too many requests in progress");
                    return;
                }
                let ticket = self.new_ticket();
                let deadline = self.deadline_for(now, timeout, self.cfg.timings.default_timeout);
                self.add_req(
                    now,
                    client,
                    ticket,
                    deadline,
                    ReqKind::Accept {
                        key: key.clone(),
                        advertise,
                        reservation: None,
                    },
                );
                self.accepts.entry(key.clone()).or_default().push(ticket);
                self.summary_dirty = true;
                self.reevaluate_key(now, &key);
            }
            Request::Connect { key, timeout, name } => {
                if self.busy() {
                    self.reply(client, 503, "too many requests in progress");
                    return;
                }
                let ticket = self.new_ticket();
                let deadline = self.deadline_for(now, timeout, self.cfg.timings.default_timeout);
                self.add_req(
                    now,
                    client,
                    ticket,
                    deadline,
                    ReqKind::Connect { key: key.clone() },
                );
                let client_name = name.unwrap_or_else(|| format!("{}/{}", self.cfg.listen, client));
                self.insert_route(
                    ticket,
                    Route {
                        from: Hop::Here,
                        to: None,
                        key,
                        client: client_name,
                        deadline,
                        held: None,
                        excluded: None,
                        offered: false,
                    },
                );
                self.route_connect(now, ticket);
            }
        }
    }

    pub(super) fn add_req(
        &mut self,
        now: Instant,
        client: ClientId,
        ticket: Ticket,
        deadline: Instant,
        kind: ReqKind,
    ) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.pending = Some(ticket);
        }
        let next_progress = now + self.cfg.timings.progress;
        self.reqs.insert(
            ticket,
            LocalReq {
                client,
                deadline,
                started: now,
                next_progress,
                kind,
            },
        );
        if deadline != Instant::MAX {
            self.timers.set(Timer::Deadline(ticket), deadline);
        }
        self.timers.set(
            Timer::Req(ticket),
            now + self.cfg.timings.retry.min(self.cfg.timings.progress),
        );
    }

    pub(super) fn remove_req(&mut self, ticket: Ticket) -> Option<LocalReq> {
        let req = self.reqs.remove(&ticket)?;
        self.timers.cancel(&Timer::Deadline(ticket));
        self.timers.cancel(&Timer::Req(ticket));
        if let ReqKind::Accept { key, .. } = &req.kind {
            if let Some(list) = self.accepts.get_mut(key) {
                list.retain(|t| *t != ticket);
                if list.is_empty() {
                    self.accepts.remove(key);
                }
            }
            self.timers.cancel(&Timer::Reserve(ticket));
            self.summary_dirty = true;
        }
        if let Some(c) = self.clients.get_mut(&req.client)
            && c.pending == Some(ticket)
        {
            c.pending = None;
        }
        Some(req)
    }

    pub(super) fn drop_client(&mut self, now: Instant, client: ClientId) {
        let Some(conn) = self.clients.remove(&client) else {
            return;
        };
        self.timers.cancel(&Timer::PartialLine(client));
        let Some(ticket) = conn.pending else { return };
        // Withdraw: no match may be made with a client that is gone.
        let Some(req) = self.remove_req(ticket) else {
            return;
        };
        match req.kind {
            ReqKind::Connect { .. } => self.end_connect(now, ticket, None),
            ReqKind::Accept {
                reservation: Some(r),
                ..
            } => {
                // An offer for this accept is out; the connect's ship will confirm or
                // decline it, and either way finds no accept here any more.
                self.drop_route(r.connect);
            }
            _ => {}
        }
    }
}
