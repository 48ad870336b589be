//! What each timer does when it fires.

use super::*;

impl Ship {
    // ----- timers --------------------------------------------------------------------

    pub(super) fn on_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Hello => {
                let Some(p) = self.parent.as_mut() else {
                    return;
                };
                let next = if p.up {
                    self.cfg.timings.keepalive
                } else {
                    let d = p.backoff;
                    p.backoff = (p.backoff * 2).min(self.cfg.timings.backoff_max);
                    self.rng.jitter(d, 0.5).max(Duration::from_millis(1))
                };
                self.send_hello();
                self.timers.set(Timer::Hello, now + next);
            }
            Timer::ParentDead => {
                let Some(p) = self.parent.as_mut() else {
                    return;
                };
                // Said once, whether the parent was up and went silent or never answered
                // at all (a daughtership started while its parent was down).
                if !p.lost_reported {
                    p.lost_reported = true;
                    self.outbox.event(ShipEvent::ParentLost);
                }
                if p.up {
                    p.up = false;
                    p.backoff = self.cfg.timings.backoff_min;
                    self.timers
                        .set(Timer::Hello, now + self.cfg.timings.backoff_min);
                }
            }
            Timer::Child(addr) => self.forget_child(now, addr),
            Timer::Req(ticket) => self.on_req_timer(now, ticket),
            Timer::Deadline(ticket) => self.expire(now, ticket),
            Timer::Route(ticket) => {
                // A route through here outlived its connect: forget it quietly. The origin
                // cancels what it abandons; a holder's reservation has its own expiry.
                // A reservation held here ends by its own timer (confirmed, declined or in
                // doubt), never by the route's.
                if self
                    .routes
                    .get(&ticket)
                    .is_some_and(|r| r.from != Hop::Here && r.held.is_none())
                {
                    self.drop_route(ticket);
                }
            }
            Timer::Reserve(accept) => {
                let Some(LocalReq {
                    kind:
                        ReqKind::Accept {
                            reservation: Some(res),
                            ..
                        },
                    ..
                }) = self.reqs.get(&accept)
                else {
                    return;
                };
                let expires = res.expires;
                if now >= expires {
                    // Neither a confirmation nor a decline came back (a partition, or a
                    // ship on the path died): the connect may have taken the offer. The
                    // accept must not be offered to anyone else, so it ends now, saying so.
                    self.expire(now, accept);
                } else {
                    self.resend_offer(now, accept);
                    let next = (now + self.cfg.timings.retry).min(expires);
                    self.timers.set(
                        Timer::Reserve(accept),
                        next.max(now + Duration::from_nanos(1)),
                    );
                }
            }
            Timer::Forget(ticket) => {
                self.finished.remove(&ticket);
                self.decided.remove(&ticket);
                self.config_routes.remove(&ticket);
            }
            Timer::StoreRetry => self.start_store(),
            Timer::PartialLine(client) => self.on_partial_line(now, client),
        }
    }

    pub(super) fn on_req_timer(&mut self, now: Instant, ticket: Ticket) {
        let t = self.cfg.timings.clone();
        let parent_up = self.parent_up();
        let is_root = self.is_root();
        let Some(req) = self.reqs.get_mut(&ticket) else {
            return;
        };
        if now >= req.next_progress {
            req.next_progress = now + t.progress;
            let waited = secs(now - req.started);
            let (client, text) = match &req.kind {
                ReqKind::Accept { key, .. } => (
                    req.client,
                    format!("waiting for a connect on {key} ({waited})"),
                ),
                ReqKind::Connect { key } => (
                    req.client,
                    format!("waiting for an accept on {key} ({waited})"),
                ),
                ReqKind::Config { .. } if is_root => (
                    req.client,
                    format!("waiting for the change to be stored ({waited})"),
                ),
                ReqKind::Config { .. } => {
                    (req.client, format!("waiting for the mothership ({waited})"))
                }
            };
            let text = if parent_up {
                text
            } else {
                format!("{text}; parent unreachable, retrying")
            };
            self.reply(client, 100, &text);
        }
        let req = self.reqs.get(&ticket).expect("still present");
        let next = req.next_progress.min(now + t.retry);
        match &req.kind {
            ReqKind::Config { op, applied: None } => {
                let msg = ShipMsg::ConfigReq {
                    ticket,
                    op: op.clone(),
                    ttl_ms: ttl_ms(req.deadline, now),
                };
                self.send(Hop::Parent, &msg);
            }
            ReqKind::Config {
                applied: Some(_), ..
            } => {
                // The decision is in; the change itself has not reached us yet: pull.
                self.send_hello();
            }
            // Decide afresh: what the ship knows may have changed since the last try.
            ReqKind::Connect { .. } => self.route_connect(now, ticket),
            ReqKind::Accept { .. } => {}
        }
        if self.reqs.contains_key(&ticket) {
            self.timers.set(Timer::Req(ticket), next);
        }
    }

    pub(super) fn expire(&mut self, now: Instant, ticket: Ticket) {
        let Some(req) = self.remove_req(ticket) else {
            return;
        };
        self.stats.expired += 1;
        let waited = secs(now - req.started);
        let (code, text) = match &req.kind {
            ReqKind::Accept {
                key, reservation, ..
            } => match reservation {
                Some(r) => {
                    let client = self
                        .drop_route(r.connect)
                        .map(|route| route.client)
                        .unwrap_or_else(|| "?".to_string());
                    (
                        408,
                        format!(
                            "accept {key} expired after {waited}: in doubt: offered to {client} as conn={}, no answer came back",
                            r.conn
                        ),
                    )
                }
                None => (
                    408,
                    format!("accept {key} expired after {waited}: no connect arrived"),
                ),
            },
            ReqKind::Connect { key } => {
                let key = key.clone();
                self.end_connect(now, ticket, None);
                (
                    408,
                    format!("connect {key} expired after {waited}: no acceptor was found"),
                )
            }
            ReqKind::Config { op, .. } => {
                let what = match op {
                    ConfigOp::Set { path, .. } => format!("set {path}"),
                    ConfigOp::Claim { pattern, .. } => format!("claim {pattern}"),
                };
                let text = if self.is_root() {
                    format!(
                        "{what} was not stored within {waited}: in doubt, it may still be applied"
                    )
                } else {
                    format!("{what} got no answer from the mothership within {waited}")
                };
                (504, text)
            }
        };
        self.finish_client(req.client, code, &text);
    }
}
