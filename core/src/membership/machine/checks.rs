//! The machine's own consistency (`check_invariants`, SPEC.md §1.4).

use super::super::view;
use super::{Membership, Timer};

/// Views up to this size have their ring recomputed by the check.
const RING_CHECK_MAX: usize = 128;

impl Membership {
    pub(super) fn check(&self) -> Result<(), String> {
        self.timers.check()?;
        let v = &self.view;
        if v.member(&self.me.name) != Some(&self.me) {
            return Err(format!("view {} does not hold this daemon", v.id));
        }
        // Sortedness is O(n) string comparisons: checked here for modest views, and for
        // every view where it is installed (`install`).
        if v.members.len() <= RING_CHECK_MAX && !view::is_sorted(v) {
            return Err(format!("view {} is not sorted by name", v.id));
        }
        if self.highest < v.id || self.max_epoch < v.id.epoch {
            return Err(format!(
                "the installed view {} is above what this daemon has seen ({}, epoch {})",
                v.id, self.highest, self.max_epoch
            ));
        }
        if self.highest.epoch > self.max_epoch {
            return Err(format!(
                "the highest id {} is above the highest epoch heard ({})",
                self.highest, self.max_epoch
            ));
        }
        if self.last_primary.0 > self.highest {
            return Err(format!(
                "the last primary view {} is above the highest id {}",
                self.last_primary.0, self.highest
            ));
        }
        // The ring is recomputed (hashing every name) only for views of modest size:
        // this check runs after every input, and at a thousand members the full
        // recomputation would cost more than the protocol. Larger views check the
        // neighbours' number and membership.
        if v.members.len() <= RING_CHECK_MAX {
            let expected: Vec<&str> = view::neighbours(v, &self.me.name)
                .into_iter()
                .map(|m| m.name.as_str())
                .collect();
            let mut mine: Vec<&str> = self.neighbours.iter().map(|m| m.name.as_str()).collect();
            mine.sort_unstable();
            let mut want = expected.clone();
            want.sort_unstable();
            if mine != want {
                return Err("neighbours disagree with the view's ring".to_string());
            }
        } else {
            let want = (2 * view::watch_count(v.members.len())).min(v.members.len() - 1);
            if self.neighbours.len() != want
                || self.neighbours.iter().any(|m| v.member(&m.name) != Some(m))
            {
                return Err("neighbours disagree with the view".to_string());
            }
        }
        // Daemons to greet are outside the view (this one included, as it is in it): a
        // member held absent would be greeted as a stranger.
        if let Some((n, _)) = self.absent.iter().find(|(n, _)| v.contains(n)) {
            return Err(format!("{n} is in view {} and remembered as absent", v.id));
        }
        if self.heard.len() != self.neighbours.len() {
            return Err("neighbours and heartbeats heard disagree".to_string());
        }
        if let Some(s) = self.suspects.iter().find(|s| !self.heard.contains_key(*s)) {
            return Err(format!("suspect {s} is not a neighbour"));
        }
        if let Some(p) = &self.proposing {
            if p.view.id <= v.id || p.view.id.coordinator != self.me.name {
                return Err(format!("proposal {} is not above view {}", p.view.id, v.id));
            }
            // A proposal gives way to any higher one it hears of.
            if p.view.id != self.highest {
                return Err(format!(
                    "proposal {} is not the highest id seen ({})",
                    p.view.id, self.highest
                ));
            }
            if p.acks.keys().any(|a| !p.view.contains(a)) {
                return Err("an acknowledgement from outside the proposal".into());
            }
            if !self.timers.contains(&Timer::ProposeRetry) {
                return Err("a proposal with nothing to finish it".into());
            }
        }
        if let Some(a) = &self.awaiting {
            // An acknowledgement is a promise to take part in no other coordinator's
            // view until that commit: this daemon proposes nothing meanwhile.
            if self.proposing.is_some() {
                return Err(format!(
                    "proposing while holding to proposal {} of another coordinator",
                    a.view.id
                ));
            }
            if a.view.id > self.highest {
                return Err("awaiting a commit above the highest id seen".into());
            }
            if a.view.id <= v.id {
                return Err("awaiting a commit of a view not above the installed one".into());
            }
            if !self.timers.contains(&Timer::CommitWait) {
                return Err("awaiting a commit with no timeout".into());
            }
        }
        if self.gathering.is_some() && !self.timers.contains(&Timer::Gather) {
            return Err("a gather with nothing to finish it".into());
        }
        if self.report.is_some() && !self.timers.contains(&Timer::ReportRetry) {
            return Err("a report with nothing to retry it".into());
        }
        for n in self.verifying.keys() {
            if !self.timers.contains(&Timer::Verify(n.clone())) {
                return Err(format!("verifying {n} with no timer"));
            }
        }
        for t in self.timers.keys() {
            let ok = match t {
                Timer::Verify(n) => self.verifying.contains_key(n),
                Timer::PartialLine(c) => self.clients.contains_key(c),
                _ => !self.stopped,
            };
            if !ok {
                return Err(format!("timer {t:?} names something that is gone"));
            }
        }
        for (c, client) in &self.clients {
            if client.lines.pending() > 0 && !self.timers.contains(&Timer::PartialLine(*c)) {
                return Err(format!("client {c} left a line unfinished with no timeout"));
            }
        }
        Ok(())
    }
}
