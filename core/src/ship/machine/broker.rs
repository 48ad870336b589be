//! Brokering: routing connects to the lowest common ancestor, reserving, offering, confirming (SPEC.md §5.5).

use super::*;

impl Ship {
    // ----- brokering -----------------------------------------------------------------

    pub(super) fn new_conn_id(&mut self) -> String {
        // The canary's planted bug (never set outside the simulator): an id used before.
        let reuse = self.cfg.canary_reuse_conn_ids && self.next_conn > 0 && self.rng.chance(0.2);
        if !reuse {
            self.next_conn += 1;
        }
        format!("{:016x}-{}", self.id, self.next_conn)
    }

    /// The oldest unreserved local accept for `key` with enough time left to be offered
    /// to a connect from elsewhere (`remote`).
    pub(super) fn free_accept(&self, now: Instant, key: &str, remote: bool) -> Option<Ticket> {
        let margin = self.cfg.timings.offer_margin;
        self.accepts.get(key)?.iter().copied().find(|t| {
            self.reqs.get(t).is_some_and(|r| {
                matches!(
                    r.kind,
                    ReqKind::Accept {
                        reservation: None,
                        ..
                    }
                ) && (!remote || r.deadline == Instant::MAX || r.deadline > now + margin)
            })
        })
    }

    pub(super) fn on_connect(
        &mut self,
        now: Instant,
        from: Hop,
        ticket: Ticket,
        key: String,
        ttl: u64,
        client: String,
    ) {
        let deadline = deadline_from_ttl(now, ttl);
        if let Some(r) = self.routes.get_mut(&ticket) {
            if r.from == Hop::Here {
                // Our own connect came back to us: ignore the loop rather than lose
                // track of the client.
                return;
            }
            r.deadline = r.deadline.max(deadline);
            r.from = from;
            if let Some(accept) = r.held {
                // A retry while the offer is out: send the offer again.
                self.resend_offer(now, accept);
                return;
            }
            if r.offered {
                // The holder is already talking to the origin along this route.
                return;
            }
        } else {
            if self.busy() {
                return;
            }
            self.insert_route(
                ticket,
                Route {
                    from,
                    to: None,
                    key,
                    client,
                    deadline,
                    held: None,
                    excluded: None,
                    offered: false,
                },
            );
            let grace = (self.cfg.timings.retry * 4).max(self.cfg.timings.offer_margin * 2);
            self.timers
                .set(Timer::Route(ticket), deadline.saturating_add(grace));
        }
        self.route_connect(now, ticket);
    }

    /// Decides where a connect goes next: a local accept, the child subtree that holds the
    /// key, the parent, back down with NotHere, or parked here until something changes.
    pub(super) fn route_connect(&mut self, now: Instant, ticket: Ticket) {
        let Some(r) = self.routes.get(&ticket) else {
            return;
        };
        if r.held.is_some() || r.offered {
            return;
        }
        if let Some(Hop::Child(c)) = r.to
            && self.children.contains_key(&c)
        {
            // Already sent down: the child knows better than our copy of its summary
            // (which drops the key as soon as the accept is reserved for this very
            // connect). It answers NotHere if the accept is gone.
            let msg = ShipMsg::Connect {
                ticket,
                key: r.key.clone(),
                ttl_ms: ttl_ms(r.deadline, now),
                client: r.client.clone(),
            };
            self.send(Hop::Child(c), &msg);
            return;
        }
        let (from, key, excluded, deadline) = (r.from, r.key.clone(), r.excluded, r.deadline);
        if let Some(accept) = self.free_accept(now, &key, from != Hop::Here) {
            if from == Hop::Here {
                self.local_match(now, ticket, accept);
            } else {
                self.reserve(now, ticket, accept, deadline);
            }
            return;
        }
        let to = if !self.cfg.escalate {
            None
        } else if let Some(child) = self
            .children
            .iter()
            .find(|(a, c)| {
                Some(Hop::Child(**a)) != Some(from)
                    && Some(**a) != excluded
                    && c.keys.contains(&key)
            })
            .map(|(a, _)| *a)
        {
            Some(Hop::Child(child))
        } else if self.parent.is_some() && from != Hop::Parent {
            Some(Hop::Parent)
        } else {
            None
        };
        let r = self.routes.get_mut(&ticket).expect("checked above");
        r.to = to;
        match to {
            Some(hop) => {
                let msg = ShipMsg::Connect {
                    ticket,
                    key,
                    ttl_ms: ttl_ms(r.deadline, now),
                    client: r.client.clone(),
                };
                self.send(hop, &msg);
            }
            None if from == Hop::Parent => {
                // Our summary misled the parent (it changed meanwhile): hand it back.
                self.send(Hop::Parent, &ShipMsg::NotHere { ticket });
                self.drop_route(ticket);
            }
            None => {} // parked here until a summary or accept arrives, or the deadline
        }
    }

    pub(super) fn reevaluate_key(&mut self, now: Instant, key: &str) {
        let Some(tickets) = self.open_by_key.get(key) else {
            return;
        };
        let parked: Vec<Ticket> = tickets
            .iter()
            .filter(|t| {
                // Parked connects, and connects sent up before this subtree held the key:
                // the lowest common ancestor may now be here.
                self.routes.get(t).is_some_and(|r| {
                    matches!(r.to, None | Some(Hop::Parent)) && r.held.is_none() && !r.offered
                })
            })
            .copied()
            .collect();
        for t in parked {
            self.route_connect(now, t);
        }
    }

    pub(super) fn local_match(&mut self, now: Instant, connect: Ticket, accept: Ticket) {
        let conn = self.new_conn_id();
        let Some(route) = self.drop_route(connect) else {
            return;
        };
        self.timers.cancel(&Timer::Route(connect));
        let Some(acc) = self.remove_req(accept) else {
            return;
        };
        let ReqKind::Accept { key, advertise, .. } = acc.kind else {
            unreachable!("accept list holds accepts only");
        };
        if let Some(req) = self.remove_req(connect) {
            self.finish_client(req.client, 200, &format!("{advertise} conn={conn}"));
        }
        self.finish_client(
            acc.client,
            200,
            &format!("conn={conn} client={}", route.client),
        );
        self.remember_finished(now, connect, Some(conn.clone()), route.deadline);
        self.stats.local_matches += 1;
        self.outbox.event(ShipEvent::Matched { key, conn });
    }

    pub(super) fn reserve(
        &mut self,
        now: Instant,
        connect: Ticket,
        accept: Ticket,
        connect_deadline: Instant,
    ) {
        let conn = self.new_conn_id();
        let retry = self.cfg.timings.retry;
        let Some(req) = self.reqs.get_mut(&accept) else {
            return;
        };
        let margin = self.cfg.timings.offer_margin;
        let window_end = connect_deadline.min(req.deadline.saturating_sub(margin));
        let expires = window_end.saturating_add(margin).min(req.deadline);
        if let ReqKind::Accept { reservation, .. } = &mut req.kind {
            *reservation = Some(Reservation {
                connect,
                conn,
                window_end,
                expires,
            });
        }
        self.summary_dirty = true;
        if let Some(r) = self.routes.get_mut(&connect) {
            r.held = Some(accept);
            r.to = Some(Hop::Here);
            let key = r.key.clone();
            self.close_route(connect, &key);
        }
        self.resend_offer(now, accept);
        self.timers.set(Timer::Reserve(accept), now + retry);
    }

    pub(super) fn resend_offer(&mut self, now: Instant, accept: Ticket) {
        let Some(req) = self.reqs.get(&accept) else {
            return;
        };
        let ReqKind::Accept {
            advertise,
            reservation: Some(res),
            ..
        } = &req.kind
        else {
            return;
        };
        let Some(route) = self.routes.get(&res.connect) else {
            return;
        };
        if now >= res.expires {
            return;
        }
        // Past the window the offer is resent with no time left: the connect can no
        // longer take it, but the origin answers again whether it already did, so a lost
        // confirmation is recovered before the reservation runs out.
        let msg = ShipMsg::Offer {
            ticket: res.connect,
            conn: res.conn.clone(),
            acceptor: advertise.clone(),
            ttl_ms: ttl_ms(res.window_end, now),
        };
        let from = route.from;
        if from != Hop::Here {
            self.send(from, &msg);
        }
    }

    pub(super) fn unreserve(&mut self, now: Instant, accept: Ticket) {
        let Some(req) = self.reqs.get_mut(&accept) else {
            return;
        };
        let ReqKind::Accept {
            key, reservation, ..
        } = &mut req.kind
        else {
            return;
        };
        let key = key.clone();
        if let Some(res) = reservation.take() {
            self.timers.cancel(&Timer::Reserve(accept));
            self.drop_route(res.connect);
        }
        self.summary_dirty = true;
        self.reevaluate_key(now, &key);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_offer(
        &mut self,
        now: Instant,
        from: Hop,
        ticket: Ticket,
        conn: String,
        acceptor: String,
        ttl: u64,
    ) {
        let next = match self.routes.get_mut(&ticket) {
            Some(route) => {
                route.to = Some(from);
                route.offered = true;
                let (key, back) = (route.key.clone(), route.from);
                self.close_route(ticket, &key);
                Some(back)
            }
            None if ticket.origin == self.id => {
                // Our connect already finished: answer a repeated offer the same way.
                let answer = match self.finished.get(&ticket) {
                    Some(Some(c)) if *c == conn => ShipMsg::Confirm { ticket, conn },
                    _ => ShipMsg::Decline { ticket, conn },
                };
                self.send(from, &answer);
                return;
            }
            // A ship on the way that lost the route (it restarted) passes the offer on
            // toward the origin by the subtrees its children report, so the origin can
            // still answer it.
            None => self.toward_ship(ticket.origin, from),
        };
        match next {
            Some(Hop::Here) => {}
            Some(hop) => {
                let offer = ShipMsg::Offer {
                    ticket,
                    conn,
                    acceptor,
                    ttl_ms: ttl,
                };
                self.send(hop, &offer);
                return;
            }
            None => return,
        }
        // The connect's own ship: take the offer if the client still waits and the
        // accept's commit window is still open.
        let waiting = self
            .reqs
            .get(&ticket)
            .is_some_and(|r| matches!(r.kind, ReqKind::Connect { .. }));
        if !waiting || ttl == 0 {
            self.send(from, &ShipMsg::Decline { ticket, conn });
            return;
        }
        let req = self.remove_req(ticket).expect("checked above");
        self.finish_client(req.client, 200, &format!("{acceptor} conn={conn}"));
        self.drop_route(ticket);
        self.remember_finished(now, ticket, Some(conn.clone()), req.deadline);
        self.send(from, &ShipMsg::Confirm { ticket, conn });
    }

    pub(super) fn holder_accept(&self, ticket: Ticket, conn: &str) -> Option<Ticket> {
        let accept = self.routes.get(&ticket)?.held?;
        match &self.reqs.get(&accept)?.kind {
            ReqKind::Accept {
                reservation: Some(r),
                ..
            } if r.conn == conn && r.connect == ticket => Some(accept),
            _ => None,
        }
    }

    pub(super) fn on_confirm(&mut self, from: Hop, ticket: Ticket, conn: String) {
        if let Some(accept) = self.holder_accept(ticket, &conn) {
            let route = self.drop_route(ticket).expect("holder has the route");
            let acc = self.remove_req(accept).expect("holder has the accept");
            let ReqKind::Accept { key, .. } = acc.kind else {
                unreachable!("held tickets are accepts");
            };
            self.finish_client(
                acc.client,
                200,
                &format!("conn={conn} client={}", route.client),
            );
            self.stats.remote_matches += 1;
            self.outbox.event(ShipEvent::Matched { key, conn });
            return;
        }
        // The route stays until it expires: if this confirmation is lost, the holder
        // offers again and the repeat must still find its way to the origin.
        if let Some(to) = self.toward_holder(from, ticket, &conn) {
            self.send(to, &ShipMsg::Confirm { ticket, conn });
        }
    }

    pub(super) fn on_decline(&mut self, now: Instant, from: Hop, ticket: Ticket, conn: String) {
        if let Some(accept) = self.holder_accept(ticket, &conn) {
            self.unreserve(now, accept);
            return;
        }
        if let Some(to) = self.toward_holder(from, ticket, &conn) {
            self.send(to, &ShipMsg::Decline { ticket, conn });
        }
    }

    /// Where a confirmation or decline goes next: along the recorded route, or — if this
    /// ship lost it (it restarted mid-match) — toward the holder, whose id prefixes the
    /// connection id.
    pub(super) fn toward_holder(&self, from: Hop, ticket: Ticket, conn: &str) -> Option<Hop> {
        match self.routes.get(&ticket).map(|r| r.to) {
            Some(Some(to @ (Hop::Parent | Hop::Child(_)))) => Some(to),
            Some(_) => None,
            None => {
                let holder = u64::from_str_radix(conn.split('-').next()?, 16).ok()?;
                self.toward_ship(holder, from)
            }
        }
    }

    /// The next hop toward the ship with id `ship`, by the subtrees children report,
    /// never back the way a message came; `None` if it is nowhere reachable from here.
    pub(super) fn toward_ship(&self, ship: u64, from: Hop) -> Option<Hop> {
        if ship == self.id {
            return None;
        }
        if let Some(child) = self
            .children
            .iter()
            .find(|(a, c)| Hop::Child(**a) != from && c.subtree.contains(&ship))
            .map(|(a, _)| *a)
        {
            return Some(Hop::Child(child));
        }
        (self.parent.is_some() && from != Hop::Parent).then_some(Hop::Parent)
    }

    pub(super) fn on_cancel(&mut self, now: Instant, ticket: Ticket) {
        self.end_connect(now, ticket, None);
    }

    /// Ends a connect's route here: releases a reservation it held, passes the cancel on
    /// toward where the connect went, and (at its origin) remembers the outcome.
    pub(super) fn end_connect(&mut self, now: Instant, ticket: Ticket, conn: Option<String>) {
        let Some(route) = self.routes.get(&ticket) else {
            return;
        };
        let (to, held, from, deadline) = (route.to, route.held, route.from, route.deadline);
        if let Some(accept) = held {
            self.unreserve(now, accept);
        } else if let Some(hop @ (Hop::Parent | Hop::Child(_))) = to {
            self.send(hop, &ShipMsg::Cancel { ticket });
        }
        self.drop_route(ticket);
        if from == Hop::Here {
            self.remember_finished(now, ticket, conn, deadline);
        }
    }

    pub(super) fn insert_route(&mut self, ticket: Ticket, route: Route) {
        self.open_by_key
            .entry(route.key.clone())
            .or_default()
            .insert(ticket);
        if let Some(old) = self.routes.insert(ticket, route) {
            debug_assert!(
                false,
                "route for {ticket:?} inserted twice (key {})",
                old.key
            );
        }
    }

    /// The route found its accept (an offer passed, or one is held here): no summary or
    /// new accept needs to look at it again.
    pub(super) fn close_route(&mut self, ticket: Ticket, key: &str) {
        if let Some(set) = self.open_by_key.get_mut(key) {
            set.remove(&ticket);
            if set.is_empty() {
                self.open_by_key.remove(key);
            }
        }
    }

    pub(super) fn drop_route(&mut self, ticket: Ticket) -> Option<Route> {
        self.timers.cancel(&Timer::Route(ticket));
        let route = self.routes.remove(&ticket)?;
        self.close_route(ticket, &route.key);
        Some(route)
    }

    /// Remembers how a connect ended, so repeated offers get the same answer. A holder
    /// may offer (and wait for the answer) until the connect's deadline plus the offer
    /// margin, so the memory lasts past that.
    pub(super) fn remember_finished(
        &mut self,
        now: Instant,
        ticket: Ticket,
        conn: Option<String>,
        deadline: Instant,
    ) {
        let t = &self.cfg.timings;
        let until = deadline
            .min(now + Duration::from_secs(3600))
            .saturating_add(t.offer_margin + t.retry * 4)
            .max(now + t.retry * 40);
        self.finished.insert(ticket, conn);
        self.timers.set(Timer::Forget(ticket), until);
    }
}
