//! Where updates wait: to be exported here, and to be pulled by neighbours — within
//! `data-storage-max`, never past it — and the export pipeline that empties it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::super::bundle::{self, BundleItem, LostReason};
use super::super::config::ExportFormat;
use super::{EffectError, Flood, FloodEffect, FloodEffectValue, FloodEvent, StreamKey, Timer};
use crate::machine::EffectId;
use crate::time::Instant;

/// What one stored update costs beyond its bytes, so that a flood of empty updates is
/// bounded too.
pub(super) const ENTRY_OVERHEAD: u64 = 64;

/// Names one stored update.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EntryKey {
    pub(super) group: String,
    pub(super) stream: StreamKey,
    pub(super) seq: u64,
}

#[derive(Clone, Debug)]
struct Entry {
    data: Bytes,
    arrived: Instant,
    /// Exported here (or not to be: this site's own updates): kept only so neighbours
    /// can pull it, and first to go when storage is full.
    kept: bool,
}

/// An export run in flight — or, with a state file, staged: waiting for a stored state
/// that names its updates as in a run before the command may see them.
#[derive(Clone, Debug)]
pub(super) struct InFlight {
    /// The export effect (`None` while staged).
    id: Option<EffectId>,
    pub(super) keys: BTreeSet<EntryKey>,
    pub(super) lost: usize,
    /// While staged: the bundle, its update count, and the first state serial that
    /// holds the run.
    staged: Option<(Bytes, usize, u64)>,
}

/// What storage had to drop to take a new update.
#[derive(Clone, Debug, Default)]
pub(super) struct Dropped {
    /// Kept updates (already exported here).
    pub(super) kept: u64,
    /// Updates not yet exported: lost here.
    pub(super) unexported: Vec<EntryKey>,
}

/// Why an update could not be stored.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum NoRoom {
    /// Larger than all of storage.
    TooLarge,
    /// Everything else is in an export run in flight.
    Busy,
}

#[derive(Debug)]
pub(super) struct Store {
    max: u64,
    bytes: u64,
    entries: BTreeMap<EntryKey, Entry>,
    /// Kept entries by arrival: evicted and purged oldest first.
    kept: BTreeSet<(Instant, EntryKey)>,
    /// Entries waiting to be exported, by arrival: the export order.
    waiting: BTreeSet<(Instant, EntryKey)>,
    pub(super) in_flight: Option<InFlight>,
    /// Lost ranges waiting to be told to the export command.
    pub(super) lost: VecDeque<BundleItem>,
    /// Export failures in a row.
    failures: u32,
}

impl Store {
    pub(super) fn new(max: u64) -> Self {
        Store {
            max,
            bytes: 0,
            entries: BTreeMap::new(),
            kept: BTreeSet::new(),
            waiting: BTreeSet::new(),
            in_flight: None,
            lost: VecDeque::new(),
            failures: 0,
        }
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn export_in_flight(&self) -> Option<EffectId> {
        self.in_flight.as_ref().and_then(|f| f.id)
    }

    /// Updates waiting to be exported, in arrival order, and their bytes.
    pub(super) fn waiting(&self) -> impl Iterator<Item = (&EntryKey, &Bytes)> {
        self.waiting.iter().map(|(_, k)| (k, &self.entries[k].data))
    }

    /// Whether an update is in the export run in flight (or staged).
    pub(super) fn in_run(&self, key: &EntryKey) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|f| f.keys.contains(key))
    }

    /// The oldest sequence number of a stream still held.
    pub(super) fn first_held(&self, group: &str, stream: &StreamKey) -> Option<u64> {
        self.held(group, stream, 1, u64::MAX).next().map(|(s, _)| s)
    }

    /// Held updates of a stream within `from..=to`, in order.
    pub(super) fn held<'a>(
        &'a self,
        group: &str,
        stream: &StreamKey,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = (u64, &'a Bytes)> + 'a {
        let lo = EntryKey {
            group: group.to_string(),
            stream: stream.clone(),
            seq: from,
        };
        let hi = EntryKey {
            group: group.to_string(),
            stream: stream.clone(),
            seq: to,
        };
        self.entries.range(lo..=hi).map(|(k, e)| (k.seq, &e.data))
    }

    fn size(data: &Bytes) -> u64 {
        data.len() as u64 + ENTRY_OVERHEAD
    }

    /// Stores an update, dropping others if it does not fit: first kept ones (already
    /// exported here, held for neighbours), oldest first; then ones waiting to be
    /// exported, oldest first — never ones in an export run in flight.
    pub(super) fn insert(
        &mut self,
        key: EntryKey,
        data: Bytes,
        kept: bool,
        now: Instant,
    ) -> Result<Dropped, NoRoom> {
        let size = Self::size(&data);
        if size > self.max {
            return Err(NoRoom::TooLarge);
        }
        let mut dropped = Dropped::default();
        while self.bytes + size > self.max {
            if let Some((_, k)) = self.kept.first().cloned() {
                self.remove(&k);
                dropped.kept += 1;
                continue;
            }
            let busy = self.in_flight.as_ref().map(|f| &f.keys);
            let victim = self
                .waiting
                .iter()
                .find(|(_, k)| busy.is_none_or(|b| !b.contains(k)))
                .map(|(_, k)| k.clone());
            match victim {
                Some(k) => {
                    self.remove(&k);
                    dropped.unexported.push(k);
                }
                None => return Err(NoRoom::Busy),
            }
        }
        self.bytes += size;
        if kept {
            self.kept.insert((now, key.clone()));
        } else {
            self.waiting.insert((now, key.clone()));
        }
        self.entries.insert(
            key,
            Entry {
                data,
                arrived: now,
                kept,
            },
        );
        Ok(dropped)
    }

    fn remove(&mut self, key: &EntryKey) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= Self::size(&e.data);
            let k = (e.arrived, key.clone());
            if e.kept {
                self.kept.remove(&k);
            } else {
                self.waiting.remove(&k);
            }
        }
    }

    /// Moves a waiting entry to the kept ones (it was exported, or dropped for want of
    /// an export command).
    fn keep(&mut self, key: &EntryKey) {
        if let Some(e) = self.entries.get_mut(key)
            && !e.kept
        {
            e.kept = true;
            self.waiting.remove(&(e.arrived, key.clone()));
            self.kept.insert((e.arrived, key.clone()));
        }
    }

    /// The planted bug of the canary: an entry exported already waits to be exported
    /// again.
    pub(super) fn unkeep(&mut self, key: &EntryKey) {
        if let Some(e) = self.entries.get_mut(key)
            && e.kept
        {
            e.kept = false;
            self.kept.remove(&(e.arrived, key.clone()));
            self.waiting.insert((e.arrived, key.clone()));
        }
    }

    /// Removes kept entries that arrived at or before `before`; how many.
    pub(super) fn purge(&mut self, before: Instant) -> u64 {
        let mut n = 0;
        while let Some((t, k)) = self.kept.first().cloned() {
            if t > before {
                break;
            }
            self.remove(&k);
            n += 1;
        }
        n
    }

    /// When the oldest kept entry arrived.
    pub(super) fn oldest_kept(&self) -> Option<Instant> {
        self.kept.first().map(|(t, _)| *t)
    }

    /// Queues a lost range for the export command, merged with the last one when they
    /// touch; false if the queue is full.
    pub(super) fn push_lost(&mut self, item: BundleItem, max: usize) -> bool {
        if let (
            Some(BundleItem::Lost {
                group: g0,
                origin: o0,
                incarnation: i0,
                to: t0,
                reason: r0,
                ..
            }),
            BundleItem::Lost {
                group,
                origin,
                incarnation,
                from,
                to,
                reason,
            },
        ) = (self.lost.back_mut(), &item)
            && (&**g0, &**o0, *i0, *r0) == (group.as_str(), origin.as_str(), *incarnation, *reason)
            && *t0 + 1 == *from
        {
            *t0 = *to;
            return true;
        }
        if self.lost.len() >= max {
            return false;
        }
        self.lost.push_back(item);
        true
    }

    pub(super) fn check(&self) -> Result<(), String> {
        let total: u64 = self.entries.values().map(|e| Self::size(&e.data)).sum();
        if total != self.bytes {
            return Err(format!(
                "storage counts {} bytes but holds {total}",
                self.bytes
            ));
        }
        if self.bytes > self.max {
            return Err(format!(
                "storage holds {} bytes, past data-storage-max {}",
                self.bytes, self.max
            ));
        }
        if self.kept.len() + self.waiting.len() != self.entries.len() {
            return Err("storage's kept and waiting indexes do not cover its entries".into());
        }
        let kept = self.entries.values().filter(|e| e.kept).count();
        if kept != self.kept.len() {
            return Err(format!(
                "storage holds {kept} kept updates but indexes {}",
                self.kept.len()
            ));
        }
        // Entry by entry only while small: this runs after every step in the simulator,
        // and the counts above already tie the indexes to the entries.
        if self.entries.len() <= 32 {
            for (k, e) in &self.entries {
                let set = if e.kept { &self.kept } else { &self.waiting };
                if !set.contains(&(e.arrived, k.clone())) {
                    return Err(format!("stored update {k:?} is missing from its index"));
                }
            }
        }
        if let Some(f) = &self.in_flight {
            for k in &f.keys {
                if self.entries.get(k).is_none_or(|e| e.kept) {
                    return Err(format!("update {k:?} is in an export run but not waiting"));
                }
            }
            if f.lost > self.lost.len() {
                return Err("an export run holds more lost ranges than are queued".into());
            }
        }
        Ok(())
    }
}

impl Flood {
    /// Stores an arrived (or originated) update; reports what storage had to drop.
    pub(super) fn store_update(
        &mut self,
        now: Instant,
        key: EntryKey,
        data: Bytes,
        kept: bool,
    ) -> Result<(), super::store::NoRoom> {
        let dropped = self.store.insert(key, data, kept, now)?;
        self.stats.dropped_kept += dropped.kept;
        for k in dropped.unexported {
            self.stats.dropped_unexported += 1;
            self.report_lost(&k.group, &k.stream, k.seq, k.seq, LostReason::Storage);
        }
        self.arm_purge(now);
        Ok(())
    }

    /// Tells the application (event, export command, `gaps`) that updates will not be
    /// exported here.
    pub(super) fn report_lost(
        &mut self,
        group: &str,
        stream: &StreamKey,
        from: u64,
        to: u64,
        reason: LostReason,
    ) {
        self.outbox.event(FloodEvent::Lost {
            group: group.to_string(),
            origin: stream.origin.clone(),
            incarnation: stream.incarnation,
            from,
            to,
            reason,
        });
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

    pub(super) fn arm_purge(&mut self, now: Instant) {
        match self.store.oldest_kept() {
            Some(t) => {
                let at = (t + self.cfg.local.log_purge_period).max(now);
                if self.timers.get(&Timer::Purge) != Some(at) {
                    self.timers.set(Timer::Purge, at);
                }
            }
            None => self.timers.cancel(&Timer::Purge),
        }
    }

    pub(super) fn on_purge(&mut self, now: Instant) {
        let before = now.saturating_sub(self.cfg.local.log_purge_period);
        self.stats.purged += self.store.purge(before);
        self.arm_purge(now);
    }

    /// Starts an export run if none is in flight and none is waiting out a failure (nor
    /// the daemon stopping without draining).
    pub(super) fn pump_export(&mut self, now: Instant) {
        if self.store.in_flight.is_some()
            || self.timers.contains(&Timer::ExportRetry)
            || self.stopping == Some(false)
        {
            return;
        }
        if self.cfg.local.export_command.is_none() {
            // The seed: "If no export command is specified, data is simply dropped."
            let keys: Vec<EntryKey> = self.store.waiting.iter().map(|(_, k)| k.clone()).collect();
            self.stats.export_dropped += keys.len() as u64;
            for k in &keys {
                self.store.keep(k);
            }
            self.store.lost.clear();
            self.arm_purge(now);
            return;
        }
        let max = self.cfg.local.export_bundle_max;
        let mut items: Vec<BundleItem> = self.store.lost.iter().cloned().collect();
        let lost = items.len();
        let mut keys = BTreeSet::new();
        let mut size = 0u64;
        for (_, k) in &self.store.waiting {
            let data = &self.store.entries[k].data;
            if !keys.is_empty() && size + data.len() as u64 > max {
                break;
            }
            size += data.len() as u64;
            keys.insert(k.clone());
            items.push(BundleItem::Update {
                group: k.group.clone(),
                origin: k.stream.origin.clone(),
                incarnation: k.stream.incarnation,
                seq: k.seq,
                data: data.clone(),
            });
        }
        if items.is_empty() {
            return;
        }
        let format: ExportFormat = self.cfg.local.export_format;
        let updates = keys.len();
        let bundle = bundle::encode(&items, format);
        if let Some(serial) = self.durable_serial_for_run() {
            // The state file must name these as in a run before the command sees them:
            // after a crash they are in doubt, never offered again.
            self.store.in_flight = Some(InFlight {
                id: None,
                keys,
                lost,
                staged: Some((bundle, updates, serial)),
            });
            self.store_state(now);
            return;
        }
        let id = self.effect_id();
        self.store.in_flight = Some(InFlight {
            id: Some(id),
            keys,
            lost,
            staged: None,
        });
        let timeout = self.cfg.local.export_timeout;
        self.outbox
            .effect(id, FloodEffect::Export { bundle, updates }, Some(timeout));
    }

    /// Starts the staged export run once a state holding it (`serial` or later) is
    /// stored.
    pub(super) fn start_staged_run(&mut self, stored: u64) {
        let Some(run) = self.store.in_flight.as_mut() else {
            return;
        };
        let Some((_, _, serial)) = &run.staged else {
            return;
        };
        if *serial > stored {
            return;
        }
        let (bundle, updates, _) = run.staged.take().expect("checked");
        let id = EffectId(self.next_effect);
        self.next_effect += 1;
        let run = self.store.in_flight.as_mut().expect("checked");
        run.id = Some(id);
        let timeout = self.cfg.local.export_timeout;
        self.outbox
            .effect(id, FloodEffect::Export { bundle, updates }, Some(timeout));
    }

    /// The state serial a staged run waits for, if any.
    pub(super) fn staged_run_needs(&self) -> Option<u64> {
        self.store
            .in_flight
            .as_ref()
            .and_then(|f| f.staged.as_ref())
            .map(|s| s.2)
    }

    /// Forgets a run that was staged or whose effect was dropped (the daemon stops):
    /// its updates wait again, as after a failed run.
    pub(super) fn abandon_export_run(&mut self, only_staged: bool) {
        if self
            .store
            .in_flight
            .as_ref()
            .is_some_and(|f| !only_staged || f.id.is_none())
        {
            self.store.in_flight = None;
        }
    }

    pub(super) fn on_export_done(
        &mut self,
        now: Instant,
        outcome: Result<FloodEffectValue, EffectError>,
    ) {
        let Some(run) = self.store.in_flight.take() else {
            return;
        };
        match outcome {
            Ok(_) => {
                self.store.failures = 0;
                self.stats.export_runs += 1;
                self.stats.exported += run.keys.len() as u64;
                for k in &run.keys {
                    self.store.keep(k);
                }
                for _ in 0..run.lost {
                    self.store.lost.pop_front();
                }
                self.arm_purge(now);
                self.pump_export(now);
            }
            Err(e) => {
                match e {
                    EffectError::TimedOut(_) => self.stats.export_timeouts += 1,
                    _ => self.stats.export_failures += 1,
                }
                self.outbox.event(FloodEvent::ExportFailed {
                    error: e.to_string(),
                });
                self.store.failures = self.store.failures.saturating_add(1);
                let l = &self.cfg.limits;
                let pause = l
                    .export_retry_min
                    .saturating_mul(1 << (self.store.failures - 1).min(16))
                    .min(l.export_retry_max);
                self.timers.set(Timer::ExportRetry, now + pause);
            }
        }
    }
}

/// How long an export run waits after `failures` in a row (for SPEC and tests).
#[cfg(test)]
pub(super) fn backoff(
    min: core::time::Duration,
    max: core::time::Duration,
    failures: u32,
) -> core::time::Duration {
    min.saturating_mul(1 << (failures - 1).min(16)).min(max)
}
