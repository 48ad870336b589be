//! What a site keeps across a stop or a crash (`--state`, SPEC.md §8.8): the state it
//! asks to have stored, and how a restarted site resumes from it; and stopping — the
//! export run in flight finished (and, without a state file, everything waiting
//! exported) before the daemon exits.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::super::bundle::{BundleItem, LostReason};
use super::super::state::{FloodState, GroupState, LostRange, StreamState, WaitingUpdate};
use super::store::EntryKey;
use super::{
    EffectError, Flood, FloodEffect, FloodEffectValue, FloodEvent, Stream, StreamKey, Timer,
};
use crate::machine::EffectId;
use crate::time::Instant;

/// How often a site with a state file looks whether what must survive changed.
pub(super) const STATE_PERIOD: Duration = Duration::from_secs(1);
/// A store still going after this is given up (and retried).
const STORE_TIMEOUT: Duration = Duration::from_secs(30);
/// First pause after a failed store; doubles up to `STORE_RETRY_MAX`.
const STORE_RETRY_MIN: Duration = Duration::from_secs(1);
const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

/// The state file as the machine sees it.
#[derive(Debug)]
pub(super) struct Durable {
    /// The serial of the next state taken.
    next_serial: u64,
    /// The store in flight and the serial of its state.
    in_flight: Option<(EffectId, u64)>,
    /// The latest serial stored.
    stored: u64,
    /// Stores failed in a row.
    failures: u32,
    /// What the last state taken held, in brief (see `Flood::fingerprint`).
    written: Vec<u64>,
}

impl Durable {
    pub(super) fn new() -> Self {
        Durable {
            next_serial: 1,
            in_flight: None,
            stored: 0,
            failures: 0,
            written: Vec::new(),
        }
    }

    pub(super) fn store_in_flight(&self) -> Option<EffectId> {
        self.in_flight.map(|f| f.0)
    }
}

/// `above` as inclusive ranges.
fn ranges(set: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &q in set {
        match out.last_mut() {
            Some(r) if r.1 + 1 == q => r.1 = q,
            _ => out.push((q, q)),
        }
    }
    out
}

impl Flood {
    /// With a state file, the serial a new export run must wait for.
    pub(super) fn durable_serial_for_run(&self) -> Option<u64> {
        self.durable.as_ref().map(|d| d.next_serial)
    }

    /// A brief of everything the state file holds, to tell whether it changed.
    fn fingerprint(&self) -> Vec<u64> {
        let s = &self.stats;
        let mut marks = 0u64;
        for g in self.groups.values() {
            for st in g.streams.values() {
                marks = marks
                    .wrapping_mul(31)
                    .wrapping_add(st.base ^ st.through.rotate_left(17));
            }
        }
        vec![
            s.delivered,
            s.lost,
            s.exported,
            s.export_dropped,
            s.dropped_kept,
            s.dropped_unexported,
            s.export_runs,
            self.store.bytes(),
            self.store.lost.len() as u64,
            self.store
                .in_flight
                .as_ref()
                .map_or(0, |f| f.keys.len() as u64 + 1),
            marks,
        ]
    }

    /// Asks for the current state to be stored, unless a store is in flight (its end
    /// looks again).
    pub(super) fn store_state(&mut self, _now: Instant) {
        let Some(d) = &self.durable else {
            return;
        };
        if d.in_flight.is_some() {
            return;
        }
        let state = self.snapshot().encode();
        let fingerprint = self.fingerprint();
        let id = self.effect_id();
        let d = self.durable.as_mut().expect("checked");
        let serial = d.next_serial;
        d.next_serial += 1;
        d.in_flight = Some((id, serial));
        d.written = fingerprint;
        self.outbox.effect(
            id,
            FloodEffect::Store { state, serial },
            Some(STORE_TIMEOUT),
        );
    }

    /// Every `STATE_PERIOD`: stores the state if it changed (or a staged run waits).
    pub(super) fn on_state_timer(&mut self, now: Instant) {
        let Some(d) = &self.durable else {
            return;
        };
        self.timers.set(Timer::State, now + STATE_PERIOD);
        if d.in_flight.is_some() {
            return;
        }
        let needed = self.staged_run_needs().is_some_and(|s| s > d.stored);
        if needed || d.written != self.fingerprint() {
            self.store_state(now);
        }
    }

    /// A store finished: a staged run it holds may start; a failure is retried.
    pub(super) fn on_store_done(
        &mut self,
        now: Instant,
        outcome: Result<FloodEffectValue, EffectError>,
    ) {
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        let Some((_, serial)) = d.in_flight.take() else {
            return;
        };
        match outcome {
            Ok(_) => {
                d.failures = 0;
                d.stored = d.stored.max(serial);
                let stored = d.stored;
                self.start_staged_run(stored);
                if self.staged_run_needs().is_some_and(|s| s > stored) {
                    self.store_state(now);
                }
            }
            Err(e) => {
                d.failures = d.failures.saturating_add(1);
                // The state taken was not stored: the next look stores it again.
                d.written.clear();
                let pause = STORE_RETRY_MIN
                    .saturating_mul(1 << (d.failures - 1).min(16))
                    .min(STORE_RETRY_MAX);
                self.outbox.event(FloodEvent::StoreFailed {
                    error: e.to_string(),
                });
                self.timers.set(Timer::State, now + pause);
            }
        }
    }

    /// What the state file holds now: every stream of another site, the updates
    /// waiting for export (those in a run marked), the lost ranges waiting for it.
    pub(super) fn snapshot(&self) -> FloodState {
        let me = &self.cfg.me.name;
        let mut groups: BTreeMap<&str, GroupState> = self
            .groups
            .iter()
            .map(|(name, g)| {
                let streams = g
                    .streams
                    .iter()
                    .filter(|(k, _)| k.origin != *me)
                    .map(|(k, s)| StreamState {
                        origin: k.origin.clone(),
                        incarnation: k.incarnation,
                        base: s.base,
                        through: s.through,
                        above: ranges(&s.above),
                    })
                    .collect();
                (
                    name.as_str(),
                    GroupState {
                        name: name.clone(),
                        streams,
                        ..GroupState::default()
                    },
                )
            })
            .collect();
        for (k, data) in self.store.waiting() {
            if let Some(g) = groups.get_mut(k.group.as_str())
                && k.stream.origin != *me
            {
                g.waiting.push(WaitingUpdate {
                    origin: k.stream.origin.clone(),
                    incarnation: k.stream.incarnation,
                    seq: k.seq,
                    in_run: self.store.in_run(k),
                    data: data.clone(),
                });
            }
        }
        for item in &self.store.lost {
            if let BundleItem::Lost {
                group,
                origin,
                incarnation,
                from,
                to,
                reason,
            } = item
                && let Some(g) = groups.get_mut(group.as_str())
            {
                g.lost.push(LostRange {
                    origin: origin.clone(),
                    incarnation: *incarnation,
                    from: *from,
                    to: *to,
                    reason: *reason,
                });
            }
        }
        FloodState {
            site: me.clone(),
            groups: groups.into_values().collect(),
        }
    }

    /// Resumes from a stored state: every stream where it stood (no first window for
    /// its groups: nothing to adopt afresh), the waiting updates waiting again, and the
    /// lost ranges queued. Updates that were in an export run are in doubt — the run
    /// may have completed — and are reported lost (`interrupted`), never offered again.
    pub(super) fn restore(&mut self, now: Instant, state: FloodState) {
        if state.site != self.cfg.me.name {
            return;
        }
        let max_above = self.cfg.limits.max_above;
        let max_streams = self.cfg.limits.max_streams;
        let me = self.cfg.me.name.clone();
        let mut pending = false;
        for gs in state.groups {
            let Some(g) = self.groups.get_mut(&gs.name) else {
                continue;
            };
            g.fresh = false;
            for ss in gs.streams {
                if ss.origin == me || g.streams.len() >= max_streams {
                    continue;
                }
                let mut s = Stream::new(ss.base, now);
                s.through = ss.through;
                s.reported = ss.through;
                'ranges: for (a, b) in ss.above {
                    for q in a..=b {
                        // Past the bound (a state written with other limits), the rest
                        // is taken as never arrived: pulled again.
                        if s.above.len() >= max_above {
                            break 'ranges;
                        }
                        s.above.insert(q);
                    }
                }
                s.known = s.above.last().copied().unwrap_or(s.through).max(s.through);
                s.history.clear();
                s.history.push_back((now, s.known));
                let key = StreamKey {
                    origin: ss.origin,
                    incarnation: ss.incarnation,
                };
                g.streams.insert(key, s);
            }
            // In doubt: contiguous runs per stream, reported as one range each.
            let mut doubt: BTreeMap<StreamKey, Vec<u64>> = BTreeMap::new();
            for u in gs.waiting {
                let key = StreamKey {
                    origin: u.origin,
                    incarnation: u.incarnation,
                };
                let held = self.groups[&gs.name]
                    .streams
                    .get(&key)
                    .is_some_and(|s| s.has(u.seq));
                if u.in_run {
                    doubt.entry(key).or_default().push(u.seq);
                    continue;
                }
                let entry = EntryKey {
                    group: gs.name.clone(),
                    stream: key.clone(),
                    seq: u.seq,
                };
                if !held || self.held_between(&gs.name, &key, u.seq, u.seq) > 0 {
                    // A stream left out above (past the stream limit): it is taken
                    // afresh, and its update pulled again.
                    continue;
                }
                if self.store_update(now, entry, u.data, false).is_err() {
                    self.stats.dropped_unexported += 1;
                    self.report_lost(&gs.name, &key, u.seq, u.seq, LostReason::Storage);
                }
                pending = true;
            }
            for (key, mut seqs) in doubt {
                seqs.sort_unstable();
                let mut i = 0;
                while i < seqs.len() {
                    let mut j = i;
                    while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
                        j += 1;
                    }
                    self.stats.lost += (j - i + 1) as u64;
                    self.report_lost(&gs.name, &key, seqs[i], seqs[j], LostReason::Interrupted);
                    pending = true;
                    i = j + 1;
                }
            }
            for l in gs.lost {
                let key = StreamKey {
                    origin: l.origin,
                    incarnation: l.incarnation,
                };
                self.report_lost_again(&gs.name, &key, l.from, l.to, l.reason);
                pending = true;
            }
        }
        if pending {
            // Exported from the first turn on (not from here: nothing runs before the
            // machine is started).
            self.timers.set(Timer::ExportRetry, now);
        }
    }

    /// Queues a lost range read back from the state file (already counted and told
    /// before the restart): for the export command and `gaps`.
    fn report_lost_again(
        &mut self,
        group: &str,
        stream: &StreamKey,
        from: u64,
        to: u64,
        reason: LostReason,
    ) {
        if let Some(g) = self.groups.get_mut(group) {
            g.lost_log.push_back((stream.clone(), from, to, reason));
            while g.lost_log.len() > 100 {
                g.lost_log.pop_front();
            }
        }
        if self.cfg.local.export_command.is_some() {
            let item = BundleItem::Lost {
                group: group.to_string(),
                origin: stream.origin.clone(),
                incarnation: stream.incarnation,
                from,
                to,
                reason,
            };
            if !self.store.push_lost(item, self.cfg.limits.max_lost_records) {
                self.stats.lost_records_dropped += 1;
            }
        }
    }

    /// Asked to stop: `drain` (no state file) exports everything waiting first; with a
    /// state file only the run in flight is let finish (a staged one is put back).
    pub(super) fn on_stop(&mut self, now: Instant, drain: bool) {
        self.stopping = Some(drain);
        if !drain {
            self.abandon_export_run(true);
        }
        self.pump_export(now);
    }

    /// Says `Stopped` once, when the export pipeline is quiet enough to stop: no run in
    /// flight, and when draining nothing waiting either (or the command failing, or none).
    pub(super) fn check_stopped(&mut self) {
        let Some(drain) = self.stopping else {
            return;
        };
        if self.stopped || self.store.in_flight.is_some() {
            return;
        }
        let drained = self.store.waiting().next().is_none() && self.store.lost.is_empty();
        let stuck =
            self.timers.contains(&Timer::ExportRetry) || self.cfg.local.export_command.is_none();
        if !drain || drained || stuck {
            self.stopped = true;
            self.outbox.event(FloodEvent::Stopped);
        }
    }

    /// The state to write as the daemon exits (after its driver stopped): a run whose
    /// command was killed unfinished is not in doubt — it failed, and its updates wait
    /// again, as after an export timeout.
    pub fn final_state(&mut self) -> Bytes {
        self.abandon_export_run(false);
        self.snapshot().encode()
    }

    /// Updates still waiting for the export command, as ranges per stream
    /// `(group, stream, from, to)`, and how many lost ranges wait too — what a daemon
    /// without a state file loses as it exits, to say so.
    pub fn unexported(&self) -> (Vec<(String, StreamKey, u64, u64)>, usize) {
        let mut out: Vec<(String, StreamKey, u64, u64)> = Vec::new();
        let mut keys: Vec<&EntryKey> = self.store.waiting().map(|(k, _)| k).collect();
        keys.sort();
        for k in keys {
            match out.last_mut() {
                Some((g, s, _, to)) if *g == k.group && *s == k.stream && *to + 1 == k.seq => {
                    *to = k.seq;
                }
                _ => out.push((k.group.clone(), k.stream.clone(), k.seq, k.seq)),
            }
        }
        (out, self.store.lost.len())
    }
}
