//! Agreement: the coordinator's two-phase view change, the gather that finds a new
//! coordinator when the old one is unreachable, merges, joins, leaves and reloads.

use std::collections::BTreeSet;

use super::super::msg::{ClusterConfig, MemberMsg};
use super::super::view::{self, Member, View, ViewId};
use super::{
    Ack, Awaiting, Gathering, MAX_EXTENSIONS, Membership, MembershipEvent, Proposing, Timer,
    names_not_in,
};
use crate::machine::PeerAddr;
use crate::time::Instant;

impl Membership {
    /// Something the next view must reflect has happened: the coordinator proposes soon
    /// (one retry period, so that changes arriving together make one view); anyone else
    /// passes what it knows on.
    pub(super) fn changes_pending(&mut self, now: Instant) {
        if !self.is_coordinator() {
            self.report_suspects(now);
            return;
        }
        if self.proposing.is_none() && !self.timers.contains(&Timer::Propose) {
            self.timers.set(Timer::Propose, now + self.timing().retry);
        }
    }

    /// The view the coordinator would propose now: the installed members that are
    /// reachable and staying, the joiners and the merged daemons.
    fn next_members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self
            .view
            .members
            .iter()
            .filter(|m| !self.unreachable.contains(&m.name) && !self.leaves.contains(&m.name))
            .filter(|m| {
                self.pending_config
                    .as_ref()
                    .is_none_or(|c| !c.removed.contains(&m.name))
            })
            .cloned()
            .collect();
        members.extend(self.merge.values().cloned());
        members.extend(self.joins.values().cloned());
        // This daemon's own entry wins over anything merged under its name.
        members.retain(|m| m.name != self.me.name);
        members.push(self.me.clone());
        view::normalise(&mut members);
        members.truncate(super::super::msg::MAX_MEMBERS);
        members
    }

    fn changes_wanted(&self) -> bool {
        let next = self.next_members();
        next != self.view.members || self.pending_config.is_some()
    }

    /// Proposes the next view, if this daemon coordinates and something changed.
    pub(super) fn propose(&mut self, now: Instant) {
        self.timers.cancel(&Timer::Propose);
        if self.leaving
            || self.proposing.is_some()
            || !self.is_coordinator()
            || !self.changes_wanted()
        {
            return;
        }
        if self.awaiting.is_some() {
            // Its acknowledgement of another coordinator's proposal is a promise to
            // take part in nothing else until that commit or the end of the wait for it
            // (SPEC §9.4): counting itself into a proposal of its own would break it.
            self.timers.set(Timer::Propose, now + self.timing().retry);
            return;
        }
        self.max_epoch = self
            .max_epoch
            .max(self.highest.epoch)
            .max(self.view.id.epoch);
        // Above every epoch heard. The last epoch of all is only ever heard in a forged
        // frame: past it, this daemon proposes nothing.
        let Some(epoch) = self.max_epoch.checked_add(1) else {
            return;
        };
        let id = ViewId {
            epoch,
            coordinator: self.me.name.clone(),
            incarnation: self.me.incarnation,
        };
        self.max_epoch = id.epoch;
        self.highest = id.clone();
        let config = self.pending_config.clone();
        let view = View {
            id,
            members: self.next_members(),
            primary: false,
            basis: Vec::new(),
            config_version: config.as_ref().map_or(self.cfg.version, |c| c.version),
        };
        let mut acks = std::collections::BTreeMap::new();
        acks.insert(
            self.me.name.clone(),
            Ack {
                last: self.last_primary.0.clone(),
                basis: self.last_primary.1.clone(),
                at: now,
            },
        );
        self.stats.proposals += 1;
        self.proposing = Some(Proposing {
            view: view.clone(),
            config: config.clone(),
            acks,
            asked: std::collections::BTreeMap::new(),
            deadline: now + self.timing().ack_timeout,
            extensions: 0,
        });
        self.send_proposal(now);
        if self.proposal_complete(now) {
            self.commit(now);
        } else {
            self.timers
                .set(Timer::ProposeRetry, now + self.timing().retry);
        }
    }

    /// Sends the proposal to every member whose acknowledgement does not hold (never
    /// came, or came too long ago to count: the member acknowledges again, and so
    /// renews its promise).
    fn send_proposal(&mut self, now: Instant) {
        let commit_timeout = self.timing().commit_timeout;
        let me = self.me.name.clone();
        let Some(p) = &mut self.proposing else {
            return;
        };
        let frame = MemberMsg::Propose {
            view: p.view.clone(),
            config: p.config.clone(),
        }
        .to_frame();
        let mut targets: Vec<PeerAddr> = Vec::new();
        for m in &p.view.members {
            if !p.holds(&m.name, &me, now, commit_timeout) {
                p.asked.entry(m.name.clone()).or_insert(now);
                targets.push(m.addr);
            }
        }
        for to in targets {
            self.send_frame(to, frame.clone());
        }
    }

    /// Every member's acknowledgement holds.
    fn proposal_complete(&self, now: Instant) -> bool {
        let commit_timeout = self.timing().commit_timeout;
        self.proposing.as_ref().is_some_and(|p| {
            p.view
                .members
                .iter()
                .all(|m| p.holds(&m.name, &self.me.name, now, commit_timeout))
        })
    }

    pub(super) fn on_propose_retry(&mut self, now: Instant) {
        let Some(p) = &self.proposing else {
            return;
        };
        if now < p.deadline {
            self.send_proposal(now);
            self.timers
                .set(Timer::ProposeRetry, now + self.timing().retry);
            return;
        }
        let commit_timeout = self.timing().commit_timeout;
        let silent: Vec<String> = p
            .view
            .members
            .iter()
            .filter(|m| !p.holds(&m.name, &self.me.name, now, commit_timeout))
            .map(|m| m.name.clone())
            .collect();
        if p.extensions < MAX_EXTENSIONS {
            // Silent members of the installed view are checked (directly and through
            // others) before they are left out: a bad link is not a failure. Those that
            // cannot be reached end the proposal (`node_down`); meanwhile it goes on.
            let extra = self.timing().verify_for + self.timing().retry;
            if let Some(p) = &mut self.proposing {
                p.extensions += 1;
                p.deadline = now + extra;
            }
            for s in &silent {
                if self.view.contains(s) {
                    self.verify(now, s);
                }
            }
            if self.proposing.is_some() {
                self.send_proposal(now);
                self.timers
                    .set(Timer::ProposeRetry, now + self.timing().retry);
            }
            return;
        }
        // Still silent though reachable (or newcomers that never answered): left out.
        self.abandon_proposal();
        for s in silent {
            self.joins.remove(&s);
            self.merge.remove(&s);
            self.unreachable.insert(s);
        }
        self.propose(now);
    }

    /// A proposal from a coordinator: acknowledged if it is the highest seen and this
    /// daemon has promised no other coordinator's proposal, refused otherwise.
    pub(super) fn on_propose(
        &mut self,
        now: Instant,
        proposal: View,
        config: Option<ClusterConfig>,
    ) {
        let Some(coord) = proposal.member(&proposal.id.coordinator).map(|m| m.addr) else {
            return;
        };
        if !proposal.contains(&self.me.name) || self.leaving {
            return;
        }
        if proposal.id.coordinator == self.me.name {
            // Under this daemon's own name: its own proposal come back, one of an
            // earlier life, or a forgery. A daemon acknowledges only others' proposals
            // (taking its own as another's would hold it to itself).
            return;
        }
        if proposal.member(&self.me.name).map(|m| m.incarnation) != Some(self.me.incarnation) {
            // A proposal for an earlier life of this daemon: it asks to join as it is
            // now (silence would have the coordinator wait for a life that is gone, and
            // hold the members that acknowledged meanwhile).
            let msg = MemberMsg::Join {
                member: self.me.clone(),
            };
            self.send(coord, &msg);
            return;
        }
        self.max_epoch = self.max_epoch.max(proposal.id.epoch);
        if proposal.id <= self.view.id || proposal.id < self.highest {
            let msg = MemberMsg::Nack {
                id: proposal.id,
                higher: self.highest.clone().max(self.view.id.clone()),
            };
            self.send(coord, &msg);
            return;
        }
        if let Some(a) = &self.awaiting
            && a.view.id.coordinator != proposal.id.coordinator
        {
            // This daemon acknowledged another coordinator's proposal, which may be
            // committed yet: acknowledging this one too would count it into two views
            // at once (both could be committed, each thinking it has it). It refuses
            // until that commit comes, the coordinator gives its proposal up, or the
            // wait for the commit ends; its refusal names the proposal it is held by
            // (below this one, which tells the two kinds of refusal apart).
            let msg = MemberMsg::Nack {
                id: proposal.id,
                higher: a.view.id.clone(),
            };
            self.send(coord, &msg);
            return;
        }
        if proposal.id > self.highest {
            self.highest = proposal.id.clone();
            // A higher proposal than this daemon's own: it gives way.
            self.abandon_proposal();
        }
        let mut early = false;
        if self.canary && proposal.members.len() > 2 {
            // The planted bug: install the proposal at once, one other member short.
            let mut v = proposal.clone();
            if let Some(k) = v.members.iter().rposition(|m| m.name != self.me.name) {
                v.members.remove(k);
                self.install(now, v, config.clone());
                early = true;
            }
        }
        if !early {
            self.awaiting = Some(Awaiting {
                view: proposal.clone(),
            });
            self.timers
                .set(Timer::CommitWait, now + self.timing().commit_timeout);
        }
        let msg = MemberMsg::Ack {
            id: proposal.id,
            from: self.me.clone(),
            last_primary: self.last_primary.0.clone(),
            basis: self.last_primary.1.clone(),
        };
        self.send(coord, &msg);
    }

    pub(super) fn on_ack(
        &mut self,
        now: Instant,
        id: ViewId,
        from: Member,
        last: ViewId,
        basis: Vec<String>,
    ) {
        let current = self.proposing.as_ref().is_some_and(|p| p.view.id == id);
        if !current {
            if id.coordinator == self.me.name
                && id.incarnation == self.me.incarnation
                && id > self.view.id
            {
                // An acknowledgement of a proposal this daemon gave up (it came after
                // the releases went out): the member is released now.
                let msg = MemberMsg::Nack {
                    id: id.clone(),
                    higher: id,
                };
                self.send(from.addr, &msg);
            }
            return;
        }
        let Some(p) = &mut self.proposing else {
            return;
        };
        if p.view.member(&from.name).map(|m| m.incarnation) != Some(from.incarnation) {
            return;
        }
        // The promise began when the member was asked (the first copy of this round
        // sent to it), or later: counting from there holds even if this daemon was
        // paused before it got to the acknowledgement.
        let at = p
            .asked
            .remove(&from.name)
            .or_else(|| p.acks.get(&from.name).map(|a| a.at))
            .unwrap_or(now);
        p.acks.insert(from.name, Ack { last, basis, at });
        if self.proposal_complete(now) {
            self.commit(now);
        }
    }

    /// Gives up the proposal in flight, if any, and releases the members that
    /// acknowledged it from their promise (a `Nack` of its own id from its
    /// coordinator), so that they may take another coordinator's proposal at once
    /// rather than at the end of their commit wait.
    pub(super) fn abandon_proposal(&mut self) {
        let Some(p) = self.proposing.take() else {
            return;
        };
        self.timers.cancel(&Timer::ProposeRetry);
        let frame = MemberMsg::Nack {
            id: p.view.id.clone(),
            higher: p.view.id.clone(),
        }
        .to_frame();
        let acked: Vec<PeerAddr> = p
            .view
            .members
            .iter()
            .filter(|m| m.name != self.me.name && p.acks.contains_key(&m.name))
            .map(|m| m.addr)
            .collect();
        for to in acked {
            self.send_frame(to, frame.clone());
        }
    }

    /// A refusal of this daemon's proposal, or a coordinator's release of the proposal
    /// this daemon acknowledged.
    pub(super) fn on_nack(&mut self, now: Instant, from: PeerAddr, id: ViewId, higher: ViewId) {
        let released = self.awaiting.as_ref().is_some_and(|a| {
            a.view.id == id && a.view.member(&id.coordinator).map(|c| c.addr) == Some(from)
        });
        if released {
            self.awaiting = None;
            self.timers.cancel(&Timer::CommitWait);
            return;
        }
        self.max_epoch = self.max_epoch.max(higher.epoch);
        let Some(p) = &self.proposing else {
            return;
        };
        if p.view.id != id {
            return;
        }
        if higher < id {
            // The member is held by its acknowledgement of a lower proposal of another
            // coordinator, not committed yet: this one stays, and is sent again until
            // the member is free (that coordinator gives its proposal up when it hears
            // this higher one, or commits it; or the member's wait for the commit
            // ends).
            return;
        }
        self.abandon_proposal();
        if self.unreachable.contains(&higher.coordinator)
            || higher.coordinator.as_str() >= self.me.name.as_str()
        {
            // The higher proposal's coordinator is gone, or it gives way to this daemon
            // (the least name coordinates a merged view): outbid it.
            self.propose(now);
        } else {
            // A lesser name coordinates: it is given the time of a proposal to take this
            // daemon in, after which this one tries again if nothing came of it.
            self.timers
                .set(Timer::Propose, now + self.timing().ack_timeout);
        }
    }

    /// Every member acknowledged: decide whether the view is primary, install it, and
    /// tell everyone.
    fn commit(&mut self, now: Instant) {
        let Some(p) = self.proposing.take() else {
            return;
        };
        // Agreement rests on this: every member acknowledged the proposal, so none will
        // acknowledge a lower one, and a view committed here is the view everyone in it
        // installs (SPEC §9.4). Asserted here, not only tested by the caller — and
        // restated rather than calling `proposal_complete`, so that a bug in that test
        // (planted bug 1 in TESTING.md) still meets this one.
        let commit_timeout = self.timing().commit_timeout;
        debug_assert!(
            p.view
                .members
                .iter()
                .all(|m| p.holds(&m.name, &self.me.name, now, commit_timeout)),
            "committing {} without every member's acknowledgement",
            p.view.id
        );
        self.timers.cancel(&Timer::ProposeRetry);
        let mut v = p.view;
        let config = p.config;
        let configured: Vec<String> = config
            .as_ref()
            .unwrap_or(&self.cfg)
            .daemons
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        // The newest basis any member knows (dynamic voting), or the configured daemons.
        // Members that never were in a primary view know none; if none does, this is the
        // cluster's first agreed view and it is its own basis.
        let newest = p
            .acks
            .values()
            .filter(|a| !a.basis.is_empty())
            .max_by(|a, b| a.last.cmp(&b.last))
            .map(|a| a.basis.clone())
            .unwrap_or_else(|| v.names().map(str::to_string).collect());
        let basis = if configured.is_empty() {
            newest
        } else {
            configured.clone()
        };
        v.primary = view::is_primary(&v.members, &basis);
        v.basis = if v.primary && configured.is_empty() {
            v.names().map(str::to_string).collect()
        } else {
            basis
        };
        let frame = MemberMsg::Commit {
            view: v.clone(),
            config: config.clone(),
        }
        .to_frame();
        let targets: Vec<PeerAddr> = v.members.iter().map(|m| m.addr).collect();
        for to in targets {
            self.send_frame(to, frame.clone());
        }
        // Daemons a reload removed are told so.
        if let Some(c) = &config {
            let removed: Vec<PeerAddr> = self
                .view
                .members
                .iter()
                .filter(|m| c.removed.contains(&m.name))
                .map(|m| m.addr)
                .collect();
            for to in removed {
                let reason = "removed from the cluster's configuration by a reload".to_string();
                self.send(to, &MemberMsg::Refuse { reason });
            }
        }
        self.install(now, v, config);
        // Whatever came in meanwhile goes into the next view.
        if self.changes_wanted() {
            self.changes_pending(now);
        }
    }

    pub(super) fn on_commit(&mut self, now: Instant, v: View, config: Option<ClusterConfig>) {
        if v.id <= self.view.id
            || v.member(&self.me.name).map(|m| m.incarnation) != Some(self.me.incarnation)
        {
            return;
        }
        self.install(now, v, config);
    }

    /// Installs a view: neighbours, coordinator state and what is remembered of absent
    /// daemons all follow it.
    pub(super) fn install(&mut self, now: Instant, v: View, config: Option<ClusterConfig>) {
        debug_assert!(view::is_sorted(&v), "view {} is not sorted by name", v.id);
        let joined = names_not_in(&v, &self.view);
        let left = names_not_in(&self.view, &v);
        let gone: Vec<_> = self
            .view
            .members
            .iter()
            .filter(|m| !v.contains(&m.name))
            .cloned()
            .collect();
        for m in &gone {
            self.remember_absent(m);
        }
        for m in &v.members {
            self.absent.remove(&m.name);
        }
        if let Some(c) = config
            && c.version >= self.cfg.version
        {
            for (n, a) in &c.daemons {
                if !v.contains(n) && *n != self.me.name {
                    self.absent.insert(n.clone(), *a);
                }
            }
            for n in &c.removed {
                self.absent.remove(n);
            }
            self.cfg = c;
        }
        self.max_epoch = self.max_epoch.max(v.id.epoch);
        if v.id > self.highest {
            self.highest = v.id.clone();
        }
        if v.primary {
            self.last_primary = (v.id.clone(), v.basis.clone());
        }
        self.view = v;
        self.stats.views += 1;
        // A new view starts with a clean slate: what was unreachable is out of it, or
        // answered its proposal.
        self.unreachable.clear();
        self.verifying.clear();
        let stale: Vec<Timer> = self
            .timers
            .keys()
            .filter(|t| matches!(t, Timer::Verify(_)))
            .cloned()
            .collect();
        for t in stale {
            self.timers.cancel(&t);
        }
        self.joins.retain(|n, _| !self.view.contains(n));
        self.merge.clear();
        self.merge_asked.clear();
        self.leaves.retain(|n| self.view.contains(n));
        if self
            .pending_config
            .as_ref()
            .is_some_and(|c| c.version <= self.cfg.version)
        {
            self.pending_config = None;
        }
        if self
            .awaiting
            .as_ref()
            .is_some_and(|a| a.view.id <= self.view.id)
        {
            self.awaiting = None;
            self.timers.cancel(&Timer::CommitWait);
        }
        if self
            .proposing
            .as_ref()
            .is_some_and(|p| p.view.id <= self.view.id)
        {
            self.abandon_proposal();
        }
        self.gathering = None;
        self.timers.cancel(&Timer::Gather);
        self.report = None;
        self.timers.cancel(&Timer::ReportRetry);
        self.reset_neighbours(now);
        if self.view.members.len() > 1 {
            self.timers.cancel(&Timer::Join);
        }
        let view = self.view.clone();
        self.outbox
            .event(MembershipEvent::ViewInstalled { view, joined, left });
        if !self.suspects.is_empty() {
            self.report_suspects(now);
        }
    }

    /// A proposal acknowledged here was never committed: is its coordinator still
    /// there?
    pub(super) fn on_commit_wait(&mut self, now: Instant) {
        let Some(a) = self.awaiting.take() else {
            return;
        };
        self.verify(now, &a.view.id.coordinator);
    }

    /// Asks every member who can hear this daemon; the least name among those who answer
    /// proposes them.
    pub(super) fn start_gather(&mut self, now: Instant) {
        if self.gathering.is_some() {
            return;
        }
        self.stats.gathers += 1;
        let nonce = self.nonce();
        let until = now + self.timing().ack_timeout;
        self.gathering = Some(Gathering {
            nonce,
            until,
            here: std::collections::BTreeMap::new(),
            epoch: self.max_epoch.max(self.highest.epoch),
        });
        self.send_gather();
        self.timers.set(Timer::Gather, now + self.timing().retry);
    }

    fn send_gather(&mut self) {
        let Some(g) = &self.gathering else {
            return;
        };
        let frame = MemberMsg::Gather {
            nonce: g.nonce,
            view: self.view.id.clone(),
        }
        .to_frame();
        let targets: Vec<PeerAddr> = self
            .view
            .members
            .iter()
            .filter(|m| m.name != self.me.name && !g.here.contains_key(&m.name))
            .map(|m| m.addr)
            .collect();
        for to in targets {
            self.send_frame(to, frame.clone());
        }
    }

    pub(super) fn on_here(&mut self, nonce: u64, from: Member, their: ViewId) {
        let Some(g) = &mut self.gathering else {
            return;
        };
        if g.nonce != nonce
            || self.view.member(&from.name).map(|m| m.incarnation) != Some(from.incarnation)
        {
            return;
        }
        g.epoch = g.epoch.max(their.epoch);
        g.here.insert(from.name.clone(), from);
    }

    pub(super) fn on_gather_timer(&mut self, now: Instant) {
        let Some(g) = &self.gathering else {
            return;
        };
        if now < g.until {
            self.send_gather();
            self.timers.set(Timer::Gather, now + self.timing().retry);
            return;
        }
        let g = self.gathering.take().expect("checked");
        self.max_epoch = self.max_epoch.max(g.epoch);
        let mut reached: Vec<Member> = g.here.into_values().collect();
        reached.push(self.me.clone());
        view::normalise(&mut reached);
        let least = reached[0].clone();
        if least.name == self.me.name {
            self.on_elect(now, reached, self.max_epoch);
        } else {
            let msg = MemberMsg::Elect {
                members: reached,
                epoch: self.max_epoch,
            };
            self.send(least.addr, &msg);
        }
    }

    /// A gather chose this daemon: it holds unreachable what the gather did not reach,
    /// and proposes.
    pub(super) fn on_elect(&mut self, now: Instant, members: Vec<Member>, epoch: u64) {
        if !members.iter().any(|m| m.name == self.me.name) {
            return;
        }
        self.max_epoch = self.max_epoch.max(epoch);
        let reached: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
        let gone: Vec<String> = self
            .view
            .names()
            .filter(|n| !reached.contains(n) && *n != self.me.name)
            .map(str::to_string)
            .collect();
        // What the gather did not reach is checked from here before it is left out (the
        // gatherer may only have had bad links); what cannot be reached ends up
        // unreachable and this daemon, the least name left, proposes.
        for n in &gone {
            self.verify(now, n);
        }
        if gone.is_empty() {
            self.changes_pending(now);
        }
    }

    /// A view sent in answer: this daemon catches up (it missed a commit), learns it was
    /// left out (and joins again), or, coordinating, merges a foreign view it asked for.
    pub(super) fn on_view_state(
        &mut self,
        now: Instant,
        from: PeerAddr,
        v: View,
        config: ClusterConfig,
    ) {
        let mine = v.member(&self.me.name).map(|m| m.incarnation) == Some(self.me.incarnation);
        if mine {
            if v.id > self.view.id {
                self.install(now, v, Some(config));
            }
            return;
        }
        if self.merge_asked.remove(&from).is_some() {
            if self.is_coordinator() {
                for m in v.members {
                    if !self.view.contains(&m.name) && m.name != self.me.name {
                        self.merge.insert(m.name.clone(), m);
                    }
                }
                self.changes_pending(now);
            }
            return;
        }
        // A proposal above that view, with this daemon in it, acknowledged and not yet
        // committed (its promise holds it), or its own in flight: it is being taken in.
        let taken_in = self.awaiting.as_ref().is_some_and(|a| a.view.id > v.id)
            || self.proposing.as_ref().is_some_and(|p| p.view.id > v.id);
        if v.id > self.view.id && self.view.contains_any_of(&v) && !taken_in {
            if self.leaving {
                // Out, as asked.
                self.outbox.event(MembershipEvent::Left);
                self.stop();
                return;
            }
            // The cluster went on without this daemon: it starts again alone (with an
            // epoch past that view's, not primary) and asks to join.
            for m in &v.members {
                let m = m.clone();
                self.remember_absent(&m);
            }
            let mut alone = View::alone(&self.me, self.cfg.version, self.last_primary.1.clone());
            self.max_epoch = self.max_epoch.max(v.id.epoch);
            alone.id = ViewId {
                epoch: self.max_epoch.saturating_add(1),
                coordinator: self.me.name.clone(),
                incarnation: self.me.incarnation,
            };
            self.max_epoch = self.max_epoch.saturating_add(1);
            self.highest = alone.id.clone();
            self.install(now, alone, None);
            self.start_joining(now);
        }
    }

    /// A configuration read again (here, or passed on by a member): the coordinator
    /// applies it; anyone else passes it on.
    pub(super) fn on_reload(&mut self, now: Instant, mut config: ClusterConfig) {
        if !self.is_coordinator() {
            let c = self.coordinator().addr;
            self.send(c, &MemberMsg::Reload { config });
            return;
        }
        let base = self.pending_config.as_ref().unwrap_or(&self.cfg);
        let listed: BTreeSet<&str> = config.daemons.iter().map(|(n, _)| n.as_str()).collect();
        let mut removed: BTreeSet<String> = base
            .removed
            .iter()
            .filter(|n| !listed.contains(n.as_str()))
            .cloned()
            .collect();
        removed.extend(
            base.daemons
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| !listed.contains(n.as_str())),
        );
        removed.remove(&self.me.name);
        config.removed = removed.into_iter().collect();
        config.version = base.version + 1;
        self.pending_config = Some(config);
        self.changes_pending(now);
    }
}

impl View {
    /// Whether the two views share a member.
    fn contains_any_of(&self, other: &View) -> bool {
        other.names().any(|n| self.contains(n))
    }
}
