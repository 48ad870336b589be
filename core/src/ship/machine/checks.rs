//! The ship's own consistency (`Machine::check_invariants`): every index agrees with what
//! it indexes, every waiting thing has its timer, versions add up. Run after every input in
//! debug builds and after every simulator step.

use super::*;

impl Ship {
    pub(super) fn check_consistency(&self) -> Result<(), String> {
        self.timers.check()?;
        self.check_versions()?;
        self.check_store()?;
        self.check_requests()?;
        self.check_routes()?;
        self.check_timer_targets()?;
        self.check_hierarchy()?;
        self.check_snapshots()?;
        Ok(())
    }

    fn check_versions(&self) -> Result<(), String> {
        if self.log_first + self.log.len() as u64 != self.version + 1 {
            return Err(format!(
                "delta log covers {}..{} but the version is {}",
                self.log_first,
                self.log_first + self.log.len() as u64,
                self.version
            ));
        }
        if self.log.len() > self.cfg.limits.delta_log {
            return Err(format!(
                "delta log holds {} changes, over its limit {}",
                self.log.len(),
                self.cfg.limits.delta_log
            ));
        }
        if self.epoch == 0 && (self.version != 0 || self.is_root()) {
            return Err("epoch 0 (unsynchronised) on a root or with a version".to_string());
        }
        Ok(())
    }

    fn check_store(&self) -> Result<(), String> {
        for (k, st) in self.staged.iter().enumerate() {
            if st.version != self.version + 1 + k as u64 {
                return Err(format!(
                    "staged change {k} has version {}, expected {}",
                    st.version,
                    self.version + 1 + k as u64
                ));
            }
        }
        if self.overlay != Overlay::from_staged(&self.tree, self.staged.iter().map(|st| &st.change))
        {
            return Err("the overlay does not match the staged changes".to_string());
        }
        if !self.staged.is_empty() && !self.cfg.durable {
            return Err("changes staged on a ship that stores nothing".to_string());
        }
        // Refusals wait for a store only at a durable root, and only those it decided for
        // other ships (its own clients' requests are never retried after a restart).
        if !self.store.refusals.is_empty() && !self.cfg.durable {
            return Err("refusals kept for a store on a ship that stores nothing".to_string());
        }
        if let Some((t, _)) = self
            .store
            .refusals
            .iter()
            .find(|(t, _)| t.origin == self.id)
        {
            return Err(format!(
                "a refusal of its own request {t:?} kept for a store"
            ));
        }
        match self.store.inflight.map(|f| f.version) {
            Some(v) => {
                let (first, last) = match (self.staged.front(), self.staged.back()) {
                    (Some(f), Some(l)) => (f.version, l.version),
                    _ => {
                        return Err(format!(
                            "a store of version {v} is in flight, nothing staged"
                        ));
                    }
                };
                if v < first || v > last {
                    return Err(format!(
                        "the store in flight holds version {v}, outside the staged {first}..={last}"
                    ));
                }
            }
            None => {
                if !self.staged.is_empty() && !self.timers.contains(&Timer::StoreRetry) {
                    return Err("changes are staged but no store is in flight or due".to_string());
                }
            }
        }
        Ok(())
    }

    fn check_requests(&self) -> Result<(), String> {
        for (t, r) in &self.reqs {
            if !self.timers.contains(&Timer::Req(*t)) {
                return Err(format!("request {t:?} has no retry timer"));
            }
            if r.deadline != Instant::MAX
                && self.timers.get(&Timer::Deadline(*t)) != Some(r.deadline)
            {
                return Err(format!("request {t:?} has no timer for its deadline"));
            }
            if self.clients.get(&r.client).and_then(|c| c.pending) != Some(*t) {
                return Err(format!(
                    "request {t:?} is not the pending request of its client {}",
                    r.client
                ));
            }
            match &r.kind {
                ReqKind::Accept {
                    key, reservation, ..
                } => {
                    if !self.accepts.get(key).is_some_and(|l| l.contains(t)) {
                        return Err(format!("accept {t:?} on {key} is not indexed"));
                    }
                    if let Some(res) = reservation {
                        if self.routes.get(&res.connect).and_then(|rt| rt.held) != Some(*t) {
                            return Err(format!(
                                "accept {t:?} is reserved for {:?}, whose route does not hold it",
                                res.connect
                            ));
                        }
                        if !self.timers.contains(&Timer::Reserve(*t)) {
                            return Err(format!("reserved accept {t:?} has no reservation timer"));
                        }
                        // Between an offer and its confirm: the connect may take the
                        // offer only while the confirm can still come back, never past
                        // the accept's own deadline; and the connection id is this
                        // ship's, the one the offer carries and the confirm must name.
                        if res.window_end > res.expires || res.expires > r.deadline {
                            return Err(format!(
                                "accept {t:?}'s offer window ends at {:?} and its wait at {:?}, \
                                 past each other or the accept's deadline {:?}",
                                res.window_end, res.expires, r.deadline
                            ));
                        }
                        if !res.conn.starts_with(&format!("{:016x}-", self.id)) {
                            return Err(format!(
                                "accept {t:?} is reserved under connection id {}, not one of ours",
                                res.conn
                            ));
                        }
                    }
                }
                ReqKind::Connect { key } => {
                    match self.routes.get(t) {
                        Some(rt) if rt.from == Hop::Here && rt.key == *key => {}
                        _ => return Err(format!("connect {t:?} has no route of its own")),
                    }
                    // A connect remembered as ended (confirmed or given up) no longer
                    // waits: a repeated offer would be answered from the memory.
                    if self.finished.contains_key(t) {
                        return Err(format!("connect {t:?} waits but is remembered as ended"));
                    }
                }
                ReqKind::Config { .. } => {}
            }
        }
        // How a connect ended is remembered only by its own ship, the one that answers a
        // repeated offer from the memory (`on_offer`); a relay never reads one.
        if let Some(t) = self.finished.keys().find(|t| t.origin != self.id) {
            return Err(format!(
                "remembers how {t:?}, a connect of another ship, ended"
            ));
        }
        for (key, list) in &self.accepts {
            if list.is_empty() {
                return Err(format!("an empty accept list is kept for {key}"));
            }
            for t in list {
                match self.reqs.get(t).map(|r| &r.kind) {
                    Some(ReqKind::Accept { key: k, .. }) if k == key => {}
                    _ => {
                        return Err(format!(
                            "accept index for {key} names {t:?}, not its accept"
                        ));
                    }
                }
            }
        }
        for (c, conn) in &self.clients {
            if conn.quitting && conn.pending.is_none() {
                return Err(format!("client {c} quits with nothing pending but is kept"));
            }
            if let Some(t) = conn.pending
                && self.reqs.get(&t).is_none_or(|r| r.client != *c)
            {
                return Err(format!(
                    "client {c} waits for {t:?}, which is not its request"
                ));
            }
        }
        for st in &self.staged {
            if let Waiter::Local { .. } = st.waiter
                && let Some(r) = self.reqs.get(&st.ticket)
                && !matches!(r.kind, ReqKind::Config { .. })
            {
                return Err(format!(
                    "staged change {:?} waits on a non-config request",
                    st.ticket
                ));
            }
        }
        Ok(())
    }

    fn check_routes(&self) -> Result<(), String> {
        for (t, r) in &self.routes {
            let open = r.held.is_none() && !r.offered;
            let indexed = self.open_by_key.get(&r.key).is_some_and(|s| s.contains(t));
            if open != indexed {
                return Err(format!(
                    "route {t:?} on {} is {} but {} in the open index",
                    r.key,
                    if open { "open" } else { "matched" },
                    if indexed { "is" } else { "is not" }
                ));
            }
            if r.from == Hop::Here {
                if !matches!(
                    self.reqs.get(t).map(|q| &q.kind),
                    Some(ReqKind::Connect { .. })
                ) {
                    return Err(format!("route {t:?} starts here without a connect request"));
                }
            } else if r.held.is_none() && !self.timers.contains(&Timer::Route(*t)) {
                return Err(format!("route {t:?} from elsewhere has no expiry"));
            }
            if let Some(a) = r.held {
                match self.reqs.get(&a).map(|q| &q.kind) {
                    Some(ReqKind::Accept {
                        reservation: Some(res),
                        ..
                    }) if res.connect == *t => {}
                    _ => {
                        return Err(format!(
                            "route {t:?} holds accept {a:?}, which is not reserved for it"
                        ));
                    }
                }
            }
        }
        for (key, set) in &self.open_by_key {
            if set.is_empty() {
                return Err(format!("an empty open-route set is kept for {key}"));
            }
            for t in set {
                if self.routes.get(t).is_none_or(|r| r.key != *key) {
                    return Err(format!("open index for {key} names {t:?}, not its route"));
                }
            }
        }
        Ok(())
    }

    /// Every timer names something that still exists.
    fn check_timer_targets(&self) -> Result<(), String> {
        for key in self.timers.keys() {
            let ok = match key {
                Timer::Hello | Timer::ParentDead => self.parent.is_some(),
                Timer::Child(a) => self.children.contains_key(a),
                Timer::Req(t) | Timer::Deadline(t) => self.reqs.contains_key(t),
                Timer::Reserve(t) => matches!(
                    self.reqs.get(t).map(|r| &r.kind),
                    Some(ReqKind::Accept {
                        reservation: Some(_),
                        ..
                    })
                ),
                Timer::Route(t) => self.routes.contains_key(t),
                Timer::Forget(_) => true,
                Timer::StoreRetry => self.store.inflight.is_none() && !self.staged.is_empty(),
                Timer::PartialLine(c) => self.clients.get(c).is_some_and(|c| c.lines.pending() > 0),
            };
            if !ok {
                return Err(format!("timer {key:?} names nothing that exists"));
            }
        }
        Ok(())
    }

    fn check_hierarchy(&self) -> Result<(), String> {
        if self.parent.is_some() != self.cfg.parent.is_some() {
            return Err("the parent link disagrees with the configuration".to_string());
        }
        if self.parent.is_some() && !self.timers.contains(&Timer::Hello) {
            return Err("a daughtership without its hello timer".to_string());
        }
        for a in self.children.keys() {
            if !self.timers.contains(&Timer::Child(*a)) {
                return Err(format!("child {a} has no expiry timer"));
            }
        }
        if self.summary_dirty {
            return Err("an interest summary change was not flushed".to_string());
        }
        Ok(())
    }
}
