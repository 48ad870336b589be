//! Configuration changes: decided at the root (stored first when durable), applied everywhere in version order (SPEC.md §5.3).

use super::*;

impl Ship {
    // ----- configuration -------------------------------------------------------------

    pub(super) fn start_config(&mut self, now: Instant, client: ClientId, op: ConfigOp) {
        if self.busy() {
            self.reply(client, 503, "too many requests in progress");
            return;
        }
        let ticket = self.new_ticket();
        let deadline = self.deadline_for(now, None, self.cfg.timings.config_timeout);
        self.add_req(
            now,
            client,
            ticket,
            deadline,
            ReqKind::Config {
                op: op.clone(),
                applied: None,
            },
        );
        if self.is_root() {
            // Decided here; with `durable`, answered once stored (or by the deadline).
            let is_set = matches!(op, ConfigOp::Set { .. });
            self.decide(now, ticket, &op, Waiter::Local { is_set });
            return;
        }
        self.send(
            Hop::Parent,
            &ShipMsg::ConfigReq {
                ticket,
                op,
                ttl_ms: ttl_ms(deadline, now),
            },
        );
    }

    /// Root only: decides a configuration operation once per ticket, and answers the
    /// waiter — at once, or (with `durable`) once the change is stored.
    pub(super) fn decide(&mut self, now: Instant, ticket: Ticket, op: &ConfigOp, waiter: Waiter) {
        debug_assert!(self.is_root());
        if let Some(o) = self.decided.get(&ticket) {
            let o = o.clone();
            self.answer(ticket, waiter, o);
            return;
        }
        if self.staged.iter().any(|st| st.ticket == ticket) {
            return; // a retry while the change is being stored: answered when it is
        }
        let change = match self.prepare(op) {
            Ok(change) => change,
            Err(e) => {
                let outcome = ConfigOutcome::Refused {
                    code: config_error_code(&e),
                    text: e.to_string(),
                };
                self.remember_decision(now, ticket, &outcome);
                if self.cfg.durable && ticket.origin != self.id {
                    self.store.refusals.push((ticket, outcome.clone()));
                }
                self.answer(ticket, waiter, outcome);
                return;
            }
        };
        let text = match &change {
            Change::Claim { node, .. } => node.clone(),
            Change::Set { .. } => String::new(),
        };
        if !self.cfg.durable {
            let version = self.apply_change(change);
            self.push_deltas(version);
            let outcome = ConfigOutcome::Applied { version, text };
            self.remember_decision(now, ticket, &outcome);
            self.answer(ticket, waiter, outcome);
            return;
        }
        let version = self.version + self.staged.len() as u64 + 1;
        self.overlay.stage(&self.tree, &change);
        self.staged.push_back(Staged {
            version,
            change,
            ticket,
            waiter,
            text,
        });
        self.start_store();
    }

    /// Validates `op` against the tree as it will be once everything staged is applied
    /// (the overlay: no copy of the tree is made), and against the size limit.
    fn prepare(&self, op: &ConfigOp) -> Result<Change, ConfigError> {
        let ov = &self.overlay;
        let change = match op {
            ConfigOp::Set { path, value } => self.tree.prepare_set(path, value)?,
            ConfigOp::Claim { pattern, host } => {
                self.tree
                    .prepare_claim_except(pattern, host, |p| ov.claims.contains(p))?
            }
        };
        let size = self.tree.size() as isize + ov.growth + ov.growth_of(&self.tree, &change);
        let limit = self.cfg.limits.max_config_bytes.min(MAX_CONFIG_BYTES);
        if size > limit as isize {
            return Err(ConfigError::TooLarge {
                size: size as usize,
                limit,
            });
        }
        Ok(change)
    }

    /// Root with `durable`: asks for a store of every staged change, unless one is in
    /// flight (what is staged meanwhile goes in the next one: one write for many changes)
    /// or a failed one waits to be retried. A batch holds every change not yet
    /// confirmed, so a retry after a failure or timeout repeats what may have landed:
    /// harmless, as the store skips versions it holds.
    pub(super) fn start_store(&mut self) {
        if self.staged.is_empty()
            || self.store.inflight.is_some()
            || self.timers.contains(&Timer::StoreRetry)
        {
            return;
        }
        let first = self.staged.front().expect("checked").version;
        let last = self.staged.back().expect("checked").version;
        let changes = self.staged.iter().map(|st| st.change.clone()).collect();
        let decided = self
            .staged
            .iter()
            .filter(|st| st.ticket.origin != self.id)
            .map(|st| {
                let outcome = ConfigOutcome::Applied {
                    version: st.version,
                    text: st.text.clone(),
                };
                (st.ticket, outcome)
            })
            .chain(self.store.refusals.iter().cloned())
            .collect();
        // A fresh mothership's store holds nothing of its epoch: the first batch brings
        // the copy the changes start from.
        let base = (!self.store.based).then(|| {
            Box::new(Stored {
                epoch: self.epoch,
                version: self.version,
                tree: self.tree.clone(),
                decided: self.decided.iter().map(|(t, o)| (*t, o.clone())).collect(),
            })
        });
        self.store.next_id += 1;
        let id = EffectId(self.store.next_id);
        self.store.inflight = Some(Inflight {
            id,
            version: last,
            refusals: self.store.refusals.len(),
            based: base.is_some(),
        });
        let batch = StoreBatch {
            epoch: self.epoch,
            first,
            changes,
            decided,
            base,
        };
        // A store that outlasts a client's whole deadline is of no use to that client.
        let limit = Some(self.cfg.timings.config_timeout);
        self.outbox.effect(id, ShipEffect::Store(batch), limit);
    }

    /// The outcome of the store in flight.
    pub(super) fn on_store_done(
        &mut self,
        now: Instant,
        id: EffectId,
        outcome: Result<(), EffectError>,
    ) -> Result<(), ShipError> {
        let Some(inflight) = self.store.inflight.filter(|f| f.id == id) else {
            return Err(ShipError::UnknownEffect(id));
        };
        self.store.inflight = None;
        match outcome {
            Ok(()) => {
                self.store.failures = 0;
                self.store.based |= inflight.based;
                self.store.refusals.drain(..inflight.refusals);
                self.on_persisted(now, inflight.version);
                self.start_store();
            }
            Err(e) => {
                self.store.failures = self.store.failures.saturating_add(1);
                self.outbox.event(ShipEvent::StoreFailed {
                    version: inflight.version,
                    error: e.to_string(),
                });
                let pause = self
                    .cfg
                    .timings
                    .retry
                    .saturating_mul(1 << self.store.failures.min(5))
                    .min(self.cfg.timings.config_timeout / 2)
                    .max(Duration::from_millis(1));
                self.timers.set(Timer::StoreRetry, now + pause);
            }
        }
        Ok(())
    }

    /// Everything up to `version` is stored: apply, pass on, answer.
    pub(super) fn on_persisted(&mut self, now: Instant, version: u64) {
        while self.staged.front().is_some_and(|st| st.version <= version) {
            let st = self.staged.pop_front().expect("checked");
            let v = self.apply_change(st.change);
            debug_assert_eq!(v, st.version, "staged changes apply in order");
            self.push_deltas(v);
            let outcome = ConfigOutcome::Applied {
                version: v,
                text: st.text,
            };
            self.remember_decision(now, st.ticket, &outcome);
            self.answer(st.ticket, st.waiter, outcome);
        }
        // What is still staged, on top of the tree as it now is.
        self.overlay = Overlay::from_staged(&self.tree, self.staged.iter().map(|st| &st.change));
    }

    pub(super) fn remember_decision(
        &mut self,
        now: Instant,
        ticket: Ticket,
        outcome: &ConfigOutcome,
    ) {
        if ticket.origin != self.id {
            // Remember remote decisions so a retried request is answered, not re-applied.
            self.decided.insert(ticket, outcome.clone());
            self.timers.set(
                Timer::Forget(ticket),
                now + self.cfg.timings.config_timeout * 2,
            );
        }
    }

    pub(super) fn answer(&mut self, ticket: Ticket, waiter: Waiter, outcome: ConfigOutcome) {
        match waiter {
            Waiter::Child(addr) => {
                self.send(Hop::Child(addr), &ShipMsg::ConfigResp { ticket, outcome });
            }
            Waiter::Local { is_set } => {
                // The client may have gone, or been told 504 at its deadline.
                let Some(req) = self.remove_req(ticket) else {
                    return;
                };
                match outcome {
                    ConfigOutcome::Applied { version, text } => {
                        let text = if is_set {
                            format!("version={version}")
                        } else {
                            text
                        };
                        self.finish_client(req.client, 200, &text);
                    }
                    ConfigOutcome::Refused { code, text } => {
                        self.finish_client(req.client, code, &text);
                    }
                }
            }
        }
    }

    pub(super) fn apply_change(&mut self, change: Change) -> u64 {
        self.tree.apply(&change);
        self.version += 1;
        self.log.push_back(change);
        if self.log.len() > self.cfg.limits.delta_log {
            self.log.pop_front();
            self.log_first += 1;
        }
        debug_assert_eq!(self.log_first + self.log.len() as u64, self.version + 1);
        self.stats.changes_applied += 1;
        self.outbox.event(ShipEvent::Changed {
            version: self.version,
        });
        self.version
    }

    /// Pushes the changes from `from` on to every child; a child that missed earlier ones
    /// ignores these and catches up through its next Hello.
    pub(super) fn push_deltas(&mut self, from: u64) {
        if self.children.is_empty() || from < self.log_first {
            return;
        }
        let changes: Vec<Change> = self
            .log
            .iter()
            .skip((from - self.log_first) as usize)
            .cloned()
            .collect();
        let msg = ShipMsg::Deltas {
            epoch: self.epoch,
            first: from,
            changes,
            latest: self.version,
        };
        let kids: Vec<PeerAddr> = self.children.keys().copied().collect();
        for k in kids {
            self.send(Hop::Child(k), &msg);
        }
    }

    /// After the local copy advanced: answer config requests waiting for it.
    pub(super) fn release_config_waiters(&mut self) {
        let ready: Vec<(Ticket, ClientId, String)> = self
            .reqs
            .iter()
            .filter_map(|(t, r)| match &r.kind {
                ReqKind::Config {
                    op,
                    applied: Some((v, text)),
                } if *v <= self.version => {
                    let text = match op {
                        ConfigOp::Set { .. } => format!("version={v}"),
                        ConfigOp::Claim { .. } => text.clone(),
                    };
                    Some((*t, r.client, text))
                }
                _ => None,
            })
            .collect();
        for (t, client, text) in ready {
            self.remove_req(t);
            self.finish_client(client, 200, &text);
        }
    }
}
