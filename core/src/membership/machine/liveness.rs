//! Liveness: heartbeats between ring neighbours, suspicions reported to the coordinator
//! and checked by it, greetings to daemons outside the view, and joining.

use std::collections::BTreeSet;

use super::super::msg::MemberMsg;
use super::super::view::{self, Member, ViewId};
use super::{
    HELLO_FANOUT, INDIRECT, MAX_ABSENT, Membership, MembershipEvent, PendingReport, REPORT_TRIES,
    Timer, Verify,
};
use crate::machine::PeerAddr;
use crate::time::Instant;

impl Membership {
    /// Recomputes the ring neighbours for the installed view; new ones count as heard
    /// now (they get a full `suspect_after` to show up).
    pub(super) fn reset_neighbours(&mut self, now: Instant) {
        self.neighbours = view::neighbours(&self.view, &self.me.name)
            .into_iter()
            .cloned()
            .collect();
        let names: BTreeSet<String> = self.neighbours.iter().map(|m| m.name.clone()).collect();
        self.heard.retain(|n, _| names.contains(n));
        for n in &names {
            self.heard.entry(n.clone()).or_insert(now);
        }
        self.suspects.retain(|n| names.contains(n));
    }

    pub(super) fn on_heartbeat_timer(&mut self, now: Instant) {
        let period = self.timing().heartbeat;
        if self.leaving {
            self.timers.set(Timer::Heartbeat, now + period);
            return;
        }
        let frame = MemberMsg::Heartbeat {
            view: self.view.id.clone(),
            from: self.me.clone(),
        }
        .to_frame();
        let targets: Vec<PeerAddr> = self.neighbours.iter().map(|m| m.addr).collect();
        for to in targets {
            self.stats.heartbeats += 1;
            self.send_frame(to, frame.clone());
        }
        self.check_neighbours(now);
        self.timers.set(Timer::Heartbeat, now + period);
    }

    /// Suspects the neighbours not heard of for `suspect_after`, and tells the
    /// coordinator (or, being it, checks them).
    fn check_neighbours(&mut self, now: Instant) {
        let limit = self.timing().suspect_after;
        let mut fresh = Vec::new();
        for (n, t) in &self.heard {
            if now.saturating_duration_since(*t) >= limit && !self.suspects.contains(n) {
                fresh.push(n.clone());
            }
        }
        if fresh.is_empty() {
            return;
        }
        self.stats.suspicions += fresh.len() as u64;
        self.suspects.extend(fresh);
        self.report_suspects(now);
    }

    /// Sends the current suspicions to the coordinator (as this daemon sees it: its own
    /// suspects do not count), or checks them itself if it is that coordinator.
    pub(super) fn report_suspects(&mut self, now: Instant) {
        let mut down = self.unreachable.clone();
        down.extend(self.suspects.iter().cloned());
        let coordinator = view::coordinator(&self.view, &down)
            .cloned()
            .unwrap_or_else(|| self.me.clone());
        let suspects: Vec<String> = self.suspects.iter().cloned().collect();
        if coordinator.name == self.me.name {
            for s in suspects {
                self.verify(now, &s);
            }
            return;
        }
        self.report = Some(PendingReport {
            to: coordinator.name.clone(),
            suspects: suspects.clone(),
            tries: 1,
        });
        let msg = MemberMsg::Report {
            view: self.view.id.clone(),
            suspects,
        };
        self.send(coordinator.addr, &msg);
        self.timers
            .set(Timer::ReportRetry, now + self.timing().retry);
    }

    pub(super) fn on_report_retry(&mut self, now: Instant) {
        let Some(r) = self.report.clone() else {
            return;
        };
        if r.tries >= REPORT_TRIES {
            // The coordinator does not answer: is it there at all (directly, and through
            // others, around a bad link)?
            self.report = None;
            self.verify(now, &r.to);
            return;
        }
        if let Some(addr) = self.addr_of(&r.to) {
            let msg = MemberMsg::Report {
                view: self.view.id.clone(),
                suspects: r.suspects.clone(),
            };
            self.send(addr, &msg);
        }
        if let Some(p) = &mut self.report {
            p.tries += 1;
        }
        self.timers
            .set(Timer::ReportRetry, now + self.timing().retry);
    }

    pub(super) fn on_heartbeat(&mut self, now: Instant, their: ViewId, from: Member) {
        if !self.view.contains(&from.name) {
            // A daemon that still counts this one as its neighbour: a view to merge.
            self.on_hello(now, their, from);
            return;
        }
        if let Some(t) = self.heard.get_mut(&from.name) {
            *t = now;
        }
        if self.suspects.remove(&from.name) {
            self.stats.refuted += 1;
        }
        if their > self.view.id {
            self.ask_view(now, from.addr);
        }
    }

    /// Asks a daemon for its view (at most once per retry period).
    pub(super) fn ask_view(&mut self, now: Instant, to: PeerAddr) {
        let retry = self.timing().retry;
        if self
            .last_view_req
            .is_some_and(|t| now.saturating_duration_since(t) < retry)
        {
            return;
        }
        self.last_view_req = Some(now);
        let msg = MemberMsg::ViewReq {
            from: self.me.clone(),
        };
        self.send(to, &msg);
    }

    /// A report of suspicions: acknowledged, and each suspect checked here.
    pub(super) fn on_report(&mut self, now: Instant, from: PeerAddr, suspects: Vec<String>) {
        let ack = MemberMsg::ReportAck {
            view: self.view.id.clone(),
        };
        self.send(from, &ack);
        for s in suspects {
            if s != self.me.name && self.view.contains(&s) {
                self.verify(now, &s);
            }
        }
    }

    /// Tries to reach `name` directly, every retry period for `verify_for`; what stays
    /// silent is held unreachable.
    pub(super) fn verify(&mut self, now: Instant, name: &str) {
        if self.verifying.contains_key(name) || self.unreachable.contains(name) {
            return;
        }
        if !self.view.contains(name) {
            return;
        }
        let nonce = self.nonce();
        let until = now + self.timing().verify_for;
        self.verifying
            .insert(name.to_string(), Verify { nonce, until });
        self.probe(name, nonce);
        self.timers
            .set(Timer::Verify(name.to_string()), now + self.timing().retry);
    }

    /// Probes `name` directly and through a few other members (around a bad link).
    fn probe(&mut self, name: &str, nonce: u64) {
        let Some(target) = self.view.member(name).cloned() else {
            return;
        };
        self.send(target.addr, &MemberMsg::Probe { nonce });
        let mut helpers: Vec<PeerAddr> = self
            .view
            .members
            .iter()
            .filter(|m| m.name != name && m.name != self.me.name)
            .filter(|m| {
                !self.unreachable.contains(&m.name) && !self.verifying.contains_key(&m.name)
            })
            .map(|m| m.addr)
            .collect();
        let msg = MemberMsg::ProbeFor { nonce, target };
        let frame = msg.to_frame();
        for _ in 0..INDIRECT.min(helpers.len()) {
            let k = self.rng.below(helpers.len() as u64) as usize;
            let to = helpers.swap_remove(k);
            self.send_frame(to, frame.clone());
        }
    }

    pub(super) fn on_verify_timer(&mut self, now: Instant, name: &str) {
        let Some(v) = self.verifying.get(name).cloned() else {
            return;
        };
        if now >= v.until {
            self.verifying.remove(name);
            // This daemon's own evidence wins over its probes' silence: a neighbour it
            // heard from lately is alive, whatever a bursty link to it lost since.
            let suspect_after = self.timing().suspect_after;
            let heard_lately = self
                .heard
                .get(name)
                .is_some_and(|t| now.saturating_duration_since(*t) < suspect_after)
                && !self.suspects.contains(name);
            if heard_lately {
                self.stats.refuted += 1;
                return;
            }
            self.node_down(now, name);
            return;
        }
        self.probe(name, v.nonce);
        let next = (now + self.timing().retry).min(v.until);
        self.timers.set(Timer::Verify(name.to_string()), next);
    }

    /// A member could not be reached, directly or through others, for `verify_for`: it
    /// is held unreachable. A proposal waiting for it starts again without it; if it was
    /// the coordinator, whoever can hear this daemon chooses the next one.
    pub(super) fn node_down(&mut self, now: Instant, name: &str) {
        let was_coordinator = self.coordinator().name == name;
        self.unreachable.insert(name.to_string());
        if self
            .proposing
            .as_ref()
            .is_some_and(|p| p.view.contains(name) && !p.acks.contains_key(name))
        {
            self.abandon_proposal();
        }
        if self.is_coordinator() {
            self.changes_pending(now);
        } else if was_coordinator {
            self.start_gather(now);
        } else {
            self.report_suspects(now);
        }
    }

    pub(super) fn on_probe_ack(&mut self, now: Instant, nonce: u64, from: Member) {
        let Some(v) = self.verifying.get(&from.name) else {
            return;
        };
        if v.nonce != nonce {
            return;
        }
        self.verifying.remove(&from.name);
        self.timers.cancel(&Timer::Verify(from.name.clone()));
        let current = self.view.member(&from.name).map(|m| m.incarnation);
        if current == Some(from.incarnation) {
            self.stats.refuted += 1;
            // The coordinator answers after all: tell it again what this daemon suspects.
            if from.name == self.coordinator().name && !self.suspects.is_empty() {
                self.report_suspects(now);
            }
        } else {
            // Someone else answers at that name: the member restarted. The old one is
            // gone; the new one joins.
            self.unreachable.insert(from.name.clone());
            self.joins.insert(from.name.clone(), from);
            self.changes_pending(now);
        }
    }

    pub(super) fn on_hello_timer(&mut self, now: Instant) {
        let period = self.timing().hello;
        if self.leaving {
            return;
        }
        let mut targets: Vec<PeerAddr> = self
            .absent
            .iter()
            .filter(|(n, _)| !self.view.contains(n))
            .map(|(_, a)| *a)
            .collect();
        // A few at random each period, so a large absent list costs little.
        while targets.len() > HELLO_FANOUT {
            let k = self.rng.below(targets.len() as u64) as usize;
            targets.swap_remove(k);
        }
        let msg = MemberMsg::Hello {
            view: self.view.id.clone(),
            from: self.me.clone(),
            size: self.view.members.len() as u32,
        };
        let frame = msg.to_frame();
        for to in targets {
            self.send_frame(to, frame.clone());
        }
        let jitter = self.jitter(period / 4);
        self.timers.set(Timer::Hello, now + period + jitter);
    }

    /// A daemon outside this view made itself known: its view is asked for and merged
    /// (by the coordinator), or, if it already counts this daemon in a later view, this
    /// daemon catches up.
    pub(super) fn on_hello(&mut self, now: Instant, their: ViewId, from: Member) {
        if from.name == self.me.name || self.leaving {
            return;
        }
        if self.view.contains(&from.name) {
            if their > self.view.id {
                self.ask_view(now, from.addr);
            }
            return;
        }
        if self.is_coordinator() {
            let again = self.timing().retry * 4;
            let due = self
                .merge_asked
                .get(&from.addr)
                .is_none_or(|t| now.saturating_duration_since(*t) >= again);
            if due
                && (self.merge_asked.len() < MAX_ABSENT
                    || self.merge_asked.contains_key(&from.addr))
            {
                self.merge_asked.insert(from.addr, now);
                let msg = MemberMsg::ViewReq {
                    from: self.me.clone(),
                };
                self.send(from.addr, &msg);
            }
        } else {
            // The coordinator merges; pass the greeting on.
            let c = self.coordinator().addr;
            let msg = MemberMsg::Hello {
                view: their,
                from,
                size: 0,
            };
            self.send(c, &msg);
        }
    }

    pub(super) fn remember_absent(&mut self, m: &Member) {
        if m.name != self.me.name
            && (self.absent.len() < MAX_ABSENT || self.absent.contains_key(&m.name))
        {
            self.absent.insert(m.name.clone(), m.addr);
        }
    }

    /// While alone, asks the seeds and the listed daemons to let this daemon in.
    pub(super) fn on_join_timer(&mut self, now: Instant) {
        if self.view.members.len() > 1 || self.leaving {
            return;
        }
        let mut targets: Vec<PeerAddr> = self.seeds.clone();
        targets.extend(self.absent.values().copied());
        targets.sort();
        targets.dedup();
        let msg = MemberMsg::Join {
            member: self.me.clone(),
        };
        let frame = msg.to_frame();
        for to in targets {
            self.send_frame(to, frame.clone());
        }
        let wait = self.join_backoff;
        let jitter = self.jitter(wait / 2);
        self.timers.set(Timer::Join, now + wait + jitter);
        self.join_backoff = (wait * 2).min(self.timing().hello / 4);
    }

    /// Starts asking to join now, quickly at first.
    pub(super) fn start_joining(&mut self, now: Instant) {
        self.join_backoff = self.timing().retry * 4;
        self.timers.set(Timer::Join, now);
    }

    /// A daemon asks to join: the coordinator takes it into the next view, after making
    /// sure its name is not held by another running daemon; anyone else passes it on.
    pub(super) fn on_join(&mut self, now: Instant, member: Member) {
        if self.leaving {
            return;
        }
        if member.name == self.me.name {
            if member.incarnation != self.me.incarnation {
                let reason = format!(
                    "the name {} is taken by a running daemon at {}",
                    member.name, self.me.addr
                );
                self.send(member.addr, &MemberMsg::Refuse { reason });
            }
            return;
        }
        if self.cfg.removed.contains(&member.name) {
            let reason = format!(
                "{} was removed from the cluster's configuration by a reload",
                member.name
            );
            self.send(member.addr, &MemberMsg::Refuse { reason });
            return;
        }
        if !self.is_coordinator() {
            let c = self.coordinator().addr;
            self.send(c, &MemberMsg::Join { member });
            return;
        }
        match self.view.member(&member.name).cloned() {
            Some(old) if old.incarnation == member.incarnation => {
                // Already in: it missed the commit.
                let msg = MemberMsg::ViewState {
                    view: self.view.clone(),
                    config: self.cfg.clone(),
                };
                self.send(member.addr, &msg);
            }
            Some(old) if old.addr != member.addr && !self.unreachable.contains(&old.name) => {
                // Two daemons claim one name: the running one keeps it.
                self.verify(now, &old.name);
                let reason = format!(
                    "the name {} is taken by a running daemon at {}",
                    member.name, old.addr
                );
                self.send(member.addr, &MemberMsg::Refuse { reason });
            }
            None if self.view.members.len() + self.joins.len() + self.merge.len()
                >= super::super::msg::MAX_MEMBERS
                && !self.joins.contains_key(&member.name) =>
            {
                // A view holds at most MAX_MEMBERS (one frame): past it, a clear no.
                let reason = format!(
                    "the cluster is full: a view holds at most {} daemons",
                    super::super::msg::MAX_MEMBERS
                );
                self.send(member.addr, &MemberMsg::Refuse { reason });
            }
            _ => {
                self.joins.insert(member.name.clone(), member);
                self.changes_pending(now);
            }
        }
    }

    /// Whether `addr` is a daemon this one knows: a member, a seed, a listed or absent
    /// daemon (only those may refuse it).
    pub(super) fn knows_addr(&self, addr: PeerAddr) -> bool {
        self.view.members.iter().any(|m| m.addr == addr)
            || self.seeds.contains(&addr)
            || self.absent.values().any(|a| *a == addr)
            || self.cfg.daemons.iter().any(|(_, a)| *a == addr)
    }

    pub(super) fn on_refuse(&mut self, reason: String) {
        self.outbox.event(MembershipEvent::Refused { reason });
        self.stop();
    }

    pub(super) fn on_leave(&mut self, now: Instant, member: Member) {
        if !self.view.contains(&member.name) || member.name == self.me.name {
            return;
        }
        if self.coordinator().name == member.name {
            // The coordinator itself leaves: the next one takes over.
            self.unreachable.insert(member.name.clone());
        }
        if self.is_coordinator() {
            self.leaves.insert(member.name);
            self.changes_pending(now);
        } else {
            let c = self.coordinator().addr;
            self.send(c, &MemberMsg::Leave { member });
        }
    }

    /// Leaves on purpose: the coordinator is told (and every neighbour, in case it is
    /// gone); the daemon is out at the next view.
    pub(super) fn leave(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        self.leaving = true;
        if self.view.members.len() <= 1 {
            self.outbox.event(MembershipEvent::Left);
            self.stop();
            return;
        }
        let msg = MemberMsg::Leave {
            member: self.me.clone(),
        };
        let frame = msg.to_frame();
        let mut targets: Vec<PeerAddr> = self.neighbours.iter().map(|m| m.addr).collect();
        targets.push(self.coordinator().addr);
        if self.is_coordinator() {
            // The next coordinator takes over and proposes the view without this one.
            let mut down = self.unreachable.clone();
            down.insert(self.me.name.clone());
            if let Some(next) = view::coordinator(&self.view, &down) {
                targets.push(next.addr);
            }
        }
        targets.sort();
        targets.dedup();
        for to in targets {
            self.send_frame(to, frame.clone());
        }
        // Out once the others have moved on; it says nothing more meanwhile.
        let wait = self.timing().ack_timeout * 2;
        self.timers.set(Timer::LeaveDeadline, now + wait);
    }
}
