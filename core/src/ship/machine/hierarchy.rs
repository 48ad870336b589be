//! The parent link, children, and the interest summaries that flow up (SPEC.md §5.3, §5.5).

use super::*;

impl Ship {
    // ----- parent link ---------------------------------------------------------------

    pub(super) fn subtree(&self) -> Vec<u64> {
        let mut ids: BTreeSet<u64> = BTreeSet::new();
        ids.insert(self.id);
        for c in self.children.values() {
            ids.extend(c.subtree.iter().copied());
            if ids.len() >= MAX_SUBTREE {
                break;
            }
        }
        ids.into_iter().take(MAX_SUBTREE).collect()
    }

    pub(super) fn send_hello(&mut self) {
        let msg = ShipMsg::Hello {
            ship: self.id,
            is_root: false,
            epoch: self.epoch,
            version: self.version,
            subtree: self.subtree(),
            receiving: self
                .receiving
                .as_ref()
                .map(|r| (r.epoch, r.version, r.buf.len() as u64)),
        };
        // A Hello is itself a pull: a Beat that finds us behind need not ask again at once.
        let now = self.clock.now();
        if let Some(p) = self.parent.as_mut() {
            p.last_pull = Some(now);
        }
        self.send(Hop::Parent, &msg);
    }

    pub(super) fn on_parent_msg(&mut self, now: Instant, msg: ShipMsg) {
        let keepalive = self.cfg.timings.keepalive;
        let timeout = self.cfg.timings.parent_timeout;
        let retry = self.cfg.timings.retry;
        let Some(p) = self.parent.as_mut() else {
            return;
        };
        if let ShipMsg::Refuse { reason } = msg {
            if p.refused.is_none() {
                p.refused = Some(reason.clone());
                self.outbox.event(ShipEvent::Refused { reason });
            }
            return;
        }
        let restored = p.lost_reported;
        p.lost_reported = false;
        p.up = true;
        p.heard = true;
        p.backoff = self.cfg.timings.backoff_min;
        self.timers.set(Timer::ParentDead, now + timeout);
        if self
            .timers
            .get(&Timer::Hello)
            .is_none_or(|t| t > now + keepalive)
        {
            self.timers.set(Timer::Hello, now + keepalive);
        }
        if restored {
            self.outbox.event(ShipEvent::ParentRestored);
            // Requests that were waiting on the parent resume at once.
            let waiting: Vec<Ticket> = self.reqs.keys().copied().collect();
            for t in waiting {
                self.timers.set(Timer::Req(t), now);
            }
        }
        match msg {
            ShipMsg::Beat {
                epoch,
                version,
                summary_seq,
            } => {
                if summary_seq != self.summary_seq && self.cfg.escalate {
                    self.send_summary();
                }
                let behind = epoch != 0 && (epoch != self.epoch || version > self.version);
                let p = self.parent.as_mut().expect("checked above");
                if behind && p.last_pull.is_none_or(|t| now >= t + retry) {
                    p.last_pull = Some(now);
                    self.send_hello();
                }
            }
            ShipMsg::SnapshotChunk {
                epoch,
                version,
                total,
                offset,
                data,
                last,
            } => self.on_snapshot_chunk(now, epoch, version, total, offset, &data, last),
            ShipMsg::Deltas {
                epoch,
                first,
                changes,
                latest,
            } => {
                if epoch != self.epoch {
                    self.send_hello();
                    return;
                }
                let before = self.version;
                for (i, change) in changes.into_iter().enumerate() {
                    let v = first + i as u64;
                    if v <= self.version {
                        continue;
                    }
                    if v != self.version + 1 {
                        self.send_hello();
                        break;
                    }
                    self.apply_change(change);
                }
                if self.version > before {
                    self.push_deltas(before + 1);
                    self.release_config_waiters();
                }
                if self.version < latest {
                    // The parent holds more than fits one message: pull on at once.
                    self.send_hello();
                }
            }
            ShipMsg::ConfigResp { ticket, outcome } => self.on_config_resp(ticket, outcome),
            ShipMsg::Connect {
                ticket,
                key,
                ttl_ms,
                client,
            } => self.on_connect(now, Hop::Parent, ticket, key, ttl_ms, client),
            ShipMsg::Offer {
                ticket,
                conn,
                acceptor,
                ttl_ms,
            } => self.on_offer(now, Hop::Parent, ticket, conn, acceptor, ttl_ms),
            ShipMsg::Confirm { ticket, conn } => self.on_confirm(Hop::Parent, ticket, conn),
            ShipMsg::Decline { ticket, conn } => self.on_decline(now, Hop::Parent, ticket, conn),
            ShipMsg::Cancel { ticket } => self.on_cancel(now, ticket),
            _ => {}
        }
    }

    pub(super) fn on_config_resp(&mut self, ticket: Ticket, outcome: ConfigOutcome) {
        if let Some(child) = self.config_routes.remove(&ticket) {
            self.send(Hop::Child(child), &ShipMsg::ConfigResp { ticket, outcome });
            return;
        }
        let Some(req) = self.reqs.get_mut(&ticket) else {
            return;
        };
        let ReqKind::Config { applied, .. } = &mut req.kind else {
            return;
        };
        match outcome {
            ConfigOutcome::Applied { version, text } => {
                *applied = Some((version, text));
                self.release_config_waiters();
            }
            ConfigOutcome::Refused { code, text } => {
                let client = req.client;
                self.remove_req(ticket);
                self.finish_client(client, code, &text);
            }
        }
    }

    // ----- children ------------------------------------------------------------------

    pub(super) fn on_child_msg(
        &mut self,
        now: Instant,
        from: PeerAddr,
        msg: ShipMsg,
    ) -> Result<(), ShipError> {
        if let ShipMsg::Hello {
            ship,
            is_root,
            epoch,
            version,
            subtree,
            receiving,
        } = msg
        {
            self.on_hello(now, from, ship, is_root, epoch, version, subtree, receiving);
            return Ok(());
        }
        if !self.children.contains_key(&from) {
            return Err(ShipError::UnknownPeer {
                from,
                kind: msg_name(&msg),
            });
        }
        let hop = Hop::Child(from);
        match msg {
            ShipMsg::Summary { seq, keys } => {
                let child = self.children.get_mut(&from).expect("checked");
                if seq > child.summary_seq || (seq == 0 && child.summary_seq == 0) {
                    child.summary_seq = seq;
                    child.keys = keys.into_iter().collect();
                    self.summary_dirty = true;
                    let keys: Vec<String> = child.keys.iter().cloned().collect();
                    for k in keys {
                        self.reevaluate_key(now, &k);
                    }
                }
            }
            ShipMsg::ConfigReq { ticket, op, ttl_ms } => {
                if self.is_root() {
                    self.decide(now, ticket, &op, Waiter::Child(from));
                } else {
                    self.config_routes.insert(ticket, from);
                    self.timers.set(
                        Timer::Forget(ticket),
                        deadline_from_ttl(now, ttl_ms)
                            .min(now + self.cfg.timings.config_timeout * 2),
                    );
                    self.send(Hop::Parent, &ShipMsg::ConfigReq { ticket, op, ttl_ms });
                }
            }
            ShipMsg::Connect {
                ticket,
                key,
                ttl_ms,
                client,
            } => self.on_connect(now, hop, ticket, key, ttl_ms, client),
            ShipMsg::Offer {
                ticket,
                conn,
                acceptor,
                ttl_ms,
            } => self.on_offer(now, hop, ticket, conn, acceptor, ttl_ms),
            ShipMsg::Confirm { ticket, conn } => self.on_confirm(hop, ticket, conn),
            ShipMsg::Decline { ticket, conn } => self.on_decline(now, hop, ticket, conn),
            ShipMsg::Cancel { ticket } => self.on_cancel(now, ticket),
            ShipMsg::NotHere { ticket } => {
                if let Some(r) = self.routes.get_mut(&ticket)
                    && r.to == Some(hop)
                {
                    r.to = None;
                    r.excluded = Some(from);
                    self.route_connect(now, ticket);
                }
            }
            _ => {}
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_hello(
        &mut self,
        now: Instant,
        from: PeerAddr,
        ship: u64,
        is_root: bool,
        epoch: u64,
        version: u64,
        subtree: Vec<u64>,
        receiving: Option<(u64, u64, u64)>,
    ) {
        let refuse = if is_root {
            Some(format!(
                "ship {from} is a mothership: a hierarchy has exactly one root"
            ))
        } else if ship == self.id
            || subtree.contains(&self.id)
            || self.parent.as_ref().is_some_and(|p| p.addr == from)
        {
            Some(format!(
                "cycle: {from} is already above {} in the hierarchy",
                self.cfg.listen
            ))
        } else {
            None
        };
        if let Some(reason) = refuse {
            if self.children.remove(&from).is_some() {
                self.timers.cancel(&Timer::Child(from));
                self.summary_dirty = true;
            }
            self.send(Hop::Child(from), &ShipMsg::Refuse { reason });
            return;
        }
        let known_seq = match self.children.get_mut(&from) {
            Some(c) => {
                if c.ship != ship {
                    // The child restarted: what it told us before is void.
                    c.ship = ship;
                    c.summary_seq = 0;
                    c.keys.clear();
                    self.summary_dirty = true;
                }
                c.epoch = epoch;
                c.version = version;
                c.subtree = subtree;
                c.receiving = receiving;
                c.summary_seq
            }
            None => {
                self.children.insert(
                    from,
                    ChildLink {
                        ship,
                        epoch,
                        version,
                        summary_seq: 0,
                        keys: BTreeSet::new(),
                        subtree,
                        receiving,
                    },
                );
                self.outbox.event(ShipEvent::ChildJoined(from));
                0
            }
        };
        // The Beat echoes the summary sequence we hold; the child resends its summary on
        // a mismatch, so a lost summary is repaired within one keepalive.
        self.timers
            .set(Timer::Child(from), now + self.cfg.timings.child_timeout);
        self.send(
            Hop::Child(from),
            &ShipMsg::Beat {
                epoch: self.epoch,
                version: self.version,
                summary_seq: known_seq,
            },
        );
        self.sync_child(now, from);
    }

    pub(super) fn forget_child(&mut self, now: Instant, addr: PeerAddr) {
        if self.children.remove(&addr).is_none() {
            return;
        }
        self.summary_dirty = true;
        self.outbox.event(ShipEvent::ChildLost(addr));
        let rerouted: Vec<Ticket> = self
            .routes
            .iter()
            .filter(|(_, r)| r.to == Some(Hop::Child(addr)))
            .map(|(t, _)| *t)
            .collect();
        for t in rerouted {
            if let Some(r) = self.routes.get_mut(&t) {
                r.to = None;
            }
            self.route_connect(now, t);
        }
        // Connects that came from the lost child are abandoned — unless an offer already
        // went back through here (or was made here): the origin may have taken it, so the
        // route and reservation stay, for the confirmation to come through once the child
        // returns, or for the reservation to end in doubt.
        let orphaned: Vec<Ticket> = self
            .routes
            .iter()
            .filter(|(_, r)| r.from == Hop::Child(addr) && !r.offered && r.held.is_none())
            .map(|(t, _)| *t)
            .collect();
        for t in orphaned {
            self.end_connect(now, t, None);
        }
    }

    // ----- interest summaries --------------------------------------------------------

    pub(super) fn local_keys(&self) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self
            .accepts
            .iter()
            .filter(|(_, tickets)| {
                tickets.iter().any(|t| {
                    matches!(
                        self.reqs.get(t).map(|r| &r.kind),
                        Some(ReqKind::Accept {
                            reservation: None,
                            ..
                        })
                    )
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for c in self.children.values() {
            keys.extend(c.keys.iter().cloned());
        }
        keys
    }

    pub(super) fn send_summary(&mut self) {
        let keys: Vec<String> = self.summary_sent.iter().cloned().collect();
        self.send(
            Hop::Parent,
            &ShipMsg::Summary {
                seq: self.summary_seq,
                keys,
            },
        );
    }

    pub(super) fn flush_summary(&mut self) {
        if !self.summary_dirty {
            return;
        }
        self.summary_dirty = false;
        if self.parent.is_none() || !self.cfg.escalate {
            return;
        }
        let keys = self.local_keys();
        if keys != self.summary_sent {
            self.summary_sent = keys;
            self.summary_seq += 1;
            self.send_summary();
        }
    }
}
