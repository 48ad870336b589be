//! The data plane: flooding along spanning trees (or plainly), digests, pulls, and what
//! a site reports missing and lost.

use bytes::Bytes;
use core::time::Duration;

use super::super::bundle::LostReason;
use super::super::msg::{DigestEntry, FloodMsg, MAX_ENTRIES, MAX_RANGES, StartEntry};
use super::super::topology;
use super::store::{EntryKey, NoRoom};
use super::{
    ADOPT_ROUNDS, FULL_EVERY, Flood, FloodError, FloodEvent, HISTORY_GRAIN_PER_PERIOD,
    JOIN_MARGIN_DEFAULT, JOIN_MARGIN_MAX, JOIN_MARGIN_MIN, KEEPALIVE_ROUNDS, PULL_BATCH,
    PULL_TRIES, Stream, StreamKey, Timer, is_tree,
};
use crate::machine::PeerAddr;
use crate::time::Instant;

/// Longest an answer to one pull may be, in bytes of updates.
const PULL_ANSWER_BYTES: usize = 4 << 20;
/// Longest wait between two pulls from an origin that does not answer.
const ORIGIN_PULL_MAX_WAIT: Duration = Duration::from_secs(30);

impl Flood {
    /// Floods `data` from this site to `group`; its sequence number.
    pub(super) fn flood(
        &mut self,
        now: Instant,
        group: Option<&str>,
        data: Bytes,
    ) -> Result<u64, FloodError> {
        let name = self.resolve_group(group)?;
        let max = self.cfg.limits.reader.max_update;
        if data.len() > max {
            return Err(FloodError::TooLarge {
                size: data.len(),
                max,
            });
        }
        let key = StreamKey {
            origin: self.cfg.me.name.clone(),
            incarnation: self.incarnation,
        };
        let g = self.groups.get_mut(&name).expect("resolved");
        let seq = g.next_seq;
        let entry = EntryKey {
            group: name.clone(),
            stream: key.clone(),
            seq,
        };
        match self.store_update(now, entry, data.clone(), true) {
            Ok(()) => {}
            Err(NoRoom::TooLarge) | Err(NoRoom::Busy) => {
                return Err(FloodError::LargerThanStorage {
                    size: data.len(),
                    max: self.cfg.local.data_storage_max,
                });
            }
        }
        let g = self.groups.get_mut(&name).expect("resolved");
        g.next_seq += 1;
        g.streams
            .entry(key.clone())
            .or_insert_with(|| Stream::new(1, now))
            .arrive(seq);
        self.note_known(now, &name, &key);
        self.stats.originated += 1;
        self.forward(now, &name, &key, seq, &data, None, false);
        // Storing it may have dropped updates waiting for export: say so now.
        self.pump_export(now);
        Ok(seq)
    }

    /// Computes (once per topology) this site's spanning-tree children for updates from
    /// `origin`; false when the origin is not in the topology (then updates go to every
    /// neighbour).
    fn ensure_children(&mut self, name: &str, origin: &str) -> bool {
        let Some(g) = self.groups.get_mut(name) else {
            return false;
        };
        if g.children.contains_key(origin) {
            return true;
        }
        let Some(t) = g.topo.as_ref() else {
            return false;
        };
        let (Some(&root), Some(&me)) = (t.index.get(origin), t.index.get(&self.cfg.me.name)) else {
            return false;
        };
        let parents = topology::shortest_path_tree(t.members.len(), &t.links, root);
        let kids: Vec<String> = parents
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == Some(me))
            .map(|(i, _)| t.members[i].name.clone())
            .collect();
        g.children.insert(origin.to_string(), kids);
        true
    }

    /// Sends an update on: along the tree in tree mode, to every neighbour in plain mode
    /// — never back to `from`, never to a neighbour classified down (it pulls on its
    /// return), and for an update that arrived by pull, only to neighbours whose digests
    /// do not show it.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        now: Instant,
        name: &str,
        key: &StreamKey,
        seq: u64,
        data: &Bytes,
        from: Option<&str>,
        pulled: bool,
    ) {
        let Some(g) = self.groups.get(name) else {
            return;
        };
        let tree = is_tree(g.def.flooding) && self.ensure_children(name, &key.origin);
        let g = &self.groups[name];
        let targets: Box<dyn Iterator<Item = &String>> = if tree {
            Box::new(g.children[&key.origin].iter())
        } else {
            Box::new(g.neighbours.keys())
        };
        let targets: Vec<PeerAddr> = targets
            .filter(|t| Some(t.as_str()) != from && **t != key.origin)
            .filter(|t| self.is_up(now, g, t))
            .filter(|t| {
                !pulled
                    || g.neighbours
                        .get(*t)
                        .and_then(|n| n.marks.get(key))
                        .is_none_or(|&(_, through)| through < seq)
            })
            .filter_map(|t| self.addr_of(t))
            .collect();
        if targets.is_empty() {
            return;
        }
        let frame = FloodMsg::Update {
            group: name.to_string(),
            origin: key.origin.clone(),
            incarnation: key.incarnation,
            seq,
            data: data.clone(),
            pulled: false,
        }
        .to_frame();
        for to in targets {
            self.stats.payloads_sent += 1;
            self.send_frame(to, frame.clone());
        }
    }

    fn heard_in_group(&mut self, now: Instant, name: &str, sender: Option<&str>) {
        if let (Some(s), Some(g)) = (sender, self.groups.get_mut(name))
            && let Some(n) = g.neighbours.get_mut(s)
        {
            n.heard = Some(now);
        }
    }

    /// Whether the group is still in its first window (see `Group::fresh`): closes it
    /// for good, settling the streams taken in it, once its time is up or every
    /// neighbour has answered.
    fn in_first_window(&mut self, now: Instant, name: &str) -> bool {
        let Some(g) = self.groups.get_mut(name) else {
            return false;
        };
        if !g.fresh {
            return false;
        }
        let Some(until) = g.adopt_until else {
            // No topology yet: still starting.
            return true;
        };
        let answered = g.neighbours.values().all(|n| n.got_full && n.got_start);
        if now < until && !answered {
            return true;
        }
        g.fresh = false;
        self.settle_first_window(now, name, answered);
        false
    }

    /// The first window closed: each stream taken in it is lowered to the latest start
    /// a neighbour named for it — at or before the first update flooded after this site
    /// joined — so that nothing flooded since is skipped; what is then missing is pulled
    /// like any gap. A stream no neighbour knew when this site joined, with every
    /// neighbour having answered, began later: it is taken from its first update.
    fn settle_first_window(&mut self, now: Instant, name: &str, answered: bool) {
        let max_above = self.cfg.limits.max_above;
        let g = self.groups.get_mut(name).expect("checked by the caller");
        let starts = core::mem::take(&mut g.starts);
        let taken: Vec<StreamKey> = g
            .streams
            .iter()
            .filter(|(_, s)| s.provisional)
            .map(|(k, _)| k.clone())
            .collect();
        for key in taken {
            let s = self.stream_mut(name, &key);
            s.provisional = false;
            match starts.get(&key).copied() {
                Some(start) if start < s.base => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {
                        s.lower_base(start);
                    } else {
                        // Too far behind to wait for them: said so, not skipped.
                        let to = s.base - 1;
                        self.stats.lost += to - start + 1;
                        self.report_lost(name, &key, start, to, LostReason::Behind);
                    }
                }
                Some(_) => {}
                None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {
                        s.lower_base(1);
                    } else {
                        let to = s.base - 1;
                        self.stats.lost += to;
                        self.report_lost(name, &key, 1, to, LostReason::Behind);
                    }
                }
                None => {}
            }
            self.watch_missing(now, name, &key, None);
        }
        self.pump_export(now);
    }

    /// How far apart a stream's `history` entries are at least, and how long they are
    /// kept.
    fn history_spans(&self, name: &str) -> (Duration, Duration) {
        let p = self.groups[name].def.digest_period;
        (
            p / HISTORY_GRAIN_PER_PERIOD,
            p * (ADOPT_ROUNDS + 2) + JOIN_MARGIN_MAX * 2,
        )
    }

    /// Records a stream's `known` in its history.
    fn note_known(&mut self, now: Instant, name: &str, key: &StreamKey) {
        let (grain, horizon) = self.history_spans(name);
        if let Some(s) = self
            .groups
            .get_mut(name)
            .and_then(|g| g.streams.get_mut(key))
        {
            s.note_known(now, grain, horizon);
        }
    }

    /// Makes room for one more stream by forgetting the one idle longest.
    fn room_for_stream(&mut self, name: &str) {
        let max = self.cfg.limits.max_streams;
        let me = self.cfg.me.name.clone();
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        while g.streams.len() >= max {
            let idlest = g
                .streams
                .iter()
                .filter(|(k, _)| k.origin != me)
                .min_by_key(|(_, s)| s.touched)
                .map(|(k, _)| k.clone());
            let Some(k) = idlest else {
                break;
            };
            g.streams.remove(&k);
            self.timers.cancel(&Timer::Pull(name.to_string(), k));
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_update(
        &mut self,
        now: Instant,
        sender: Option<&str>,
        name: &str,
        key: StreamKey,
        seq: u64,
        data: Bytes,
        pulled: bool,
    ) -> Result<(), FloodError> {
        if !self.groups.contains_key(name) {
            return Err(self.no_group(name));
        }
        let max = self.cfg.limits.reader.max_update;
        if data.len() > max {
            return Err(FloodError::TooLarge {
                size: data.len(),
                max,
            });
        }
        self.heard_in_group(now, name, sender);
        if key.origin == self.cfg.me.name {
            self.stats.duplicates += 1;
            return Ok(());
        }
        if !self.groups[name].streams.contains_key(&key) {
            self.room_for_stream(name);
            let fresh = self.in_first_window(now, name);
            let g = self.groups.get_mut(name).expect("checked");
            // Outside the first window the stream began while this site ran: it is
            // taken from its first update (what came before this one is missing).
            // Inside it, the neighbours' answers say where to take it from.
            let mut s = Stream::new(if fresh { seq } else { 1 }, now);
            s.provisional = fresh;
            g.streams.insert(key.clone(), s);
        }
        let g = self.groups.get_mut(name).expect("checked");
        let s = g.streams.get_mut(&key).expect("inserted");
        s.touched = now;
        if s.has(seq) {
            self.stats.duplicates += 1;
            if pulled && self.cfg.canary_duplicate_export {
                // The canary's planted bug: a pulled copy is exported again.
                self.store.unkeep(&EntryKey {
                    group: name.to_string(),
                    stream: key,
                    seq,
                });
                self.pump_export(now);
            }
            return Ok(());
        }
        let was_missing = seq <= s.reported;
        // Out-of-order arrivals are remembered within a bound: past it, the oldest
        // missing range is given up (this site fell too far behind to wait for it).
        let max_above = self.cfg.limits.max_above;
        while seq > self.stream_mut(name, &key).through + 1
            && self.stream_mut(name, &key).above.len() >= max_above
        {
            let (a, b) = self.stream_mut(name, &key).missing_ranges(1)[0];
            self.declare_lost(name, &key, a, b, LostReason::Behind);
            self.pump_export(now);
        }
        let entry = EntryKey {
            group: name.to_string(),
            stream: key.clone(),
            seq,
        };
        if self.store_update(now, entry, data.clone(), false).is_err() {
            // No room even after dropping: this update is lost here, and said so.
            let s = self
                .groups
                .get_mut(name)
                .expect("checked")
                .streams
                .get_mut(&key)
                .expect("inserted");
            s.arrive(seq);
            self.note_known(now, name, &key);
            self.stats.dropped_unexported += 1;
            self.report_lost(name, &key, seq, seq, LostReason::Storage);
            self.watch_missing(now, name, &key, sender);
            self.pump_export(now);
            return Ok(());
        }
        self.stream_mut(name, &key).arrive(seq);
        self.note_known(now, name, &key);
        self.watch_missing(now, name, &key, sender);
        self.stats.delivered += 1;
        if was_missing {
            self.stats.recovered += 1;
        }
        self.outbox.event(FloodEvent::Delivered {
            group: name.to_string(),
            origin: key.origin.clone(),
            incarnation: key.incarnation,
            seq,
        });
        self.forward(now, name, &key, seq, &data, sender, pulled);
        self.pump_export(now);
        Ok(())
    }

    /// Keeps a stream's pull timer armed exactly while it misses updates: first after a
    /// delay that gives pushed copies their chance.
    fn watch_missing(&mut self, now: Instant, name: &str, key: &StreamKey, from: Option<&str>) {
        let delay = self.pull_delay(from.unwrap_or(""));
        let timer = Timer::Pull(name.to_string(), key.clone());
        let s = self.stream_mut(name, key);
        if s.is_missing_any() {
            // Everything the pull in flight asked for has come: ask for the rest now
            // rather than at the pull's timeout.
            let answered = s.pull.as_ref().is_some_and(|p| s.through >= p.last);
            if answered {
                s.pull = None;
                self.timers.set(timer, now);
            } else if !self.timers.contains(&timer) {
                self.timers.set(timer, now + delay);
            }
        } else {
            s.pull = None;
            self.timers.cancel(&timer);
        }
    }

    /// This site's marks for a stream: the oldest it holds and how far it has all.
    fn marks(&self, name: &str, key: &StreamKey, s: &Stream) -> (u64, u64) {
        let low = self
            .store
            .first_held(name, key)
            .unwrap_or(s.through + 1)
            .clamp(s.base.min(s.through + 1), s.through + 1);
        (low, s.through)
    }

    pub(super) fn on_digest_timer(&mut self, now: Instant, name: &str) {
        if !self.groups.contains_key(name) {
            return;
        }
        self.in_first_window(now, name);
        let g = &self.groups[name];
        let period = g.def.digest_period;
        let full_round = g.rounds.is_multiple_of(FULL_EVERY);
        let neighbours: Vec<String> = g.neighbours.keys().cloned().collect();
        let marks = self.all_marks(name);
        for n in neighbours {
            self.send_digest(now, name, &n, full_round, &marks);
        }
        let g = self.groups.get_mut(name).expect("exists");
        g.rounds = g.rounds.wrapping_add(1);
        self.timers
            .set(Timer::Digest(name.to_string()), now + period);
    }

    /// This site's marks for every stream of a group.
    pub(super) fn all_marks(&self, name: &str) -> Vec<(StreamKey, (u64, u64))> {
        self.groups[name]
            .streams
            .iter()
            .map(|(k, s)| (k.clone(), self.marks(name, k, s)))
            .collect()
    }

    /// Sends one neighbour the marks that changed since it last heard (all of them when
    /// `full`, when it asked, or the first time), or an empty digest as a keepalive.
    pub(super) fn send_digest(
        &mut self,
        now: Instant,
        name: &str,
        to: &str,
        full: bool,
        marks: &[(StreamKey, (u64, u64))],
    ) {
        let Some(addr) = self.addr_of(to) else {
            return;
        };
        let g = &self.groups[name];
        let Some(n) = g.neighbours.get(to) else {
            return;
        };
        let full = full || n.wants_full || n.last_digest.is_none();
        let mut entries = Vec::new();
        for (key, marks) in marks {
            if entries.len() == MAX_ENTRIES {
                break;
            }
            if full || n.sent.get(key) != Some(marks) {
                entries.push(DigestEntry {
                    origin: key.origin.clone(),
                    incarnation: key.incarnation,
                    low: marks.0,
                    through: marks.1,
                });
            }
        }
        let keepalive = g.def.digest_period * KEEPALIVE_ROUNDS;
        let want_full = g.fresh && g.adopt_until.is_some() && !(n.got_full && n.got_start);
        let joined_us = match (want_full, g.joined) {
            (true, Some(t)) => {
                u64::try_from(now.saturating_duration_since(t).as_micros()).unwrap_or(u64::MAX)
            }
            _ => 0,
        };
        let due = n
            .last_digest
            .is_none_or(|t| now.saturating_duration_since(t) >= keepalive);
        if entries.is_empty() && !due && !want_full {
            return;
        }
        let n = self
            .groups
            .get_mut(name)
            .and_then(|g| g.neighbours.get_mut(to))
            .expect("exists");
        for e in &entries {
            let k = StreamKey {
                origin: e.origin.clone(),
                incarnation: e.incarnation,
            };
            n.sent.insert(k, (e.low, e.through));
        }
        n.last_digest = Some(now);
        n.wants_full = false;
        self.stats.digests_sent += 1;
        let msg = FloodMsg::Digest {
            group: name.to_string(),
            full,
            want_full,
            joined_us,
            entries,
        };
        self.send(addr, &msg);
    }

    pub(super) fn on_digest(
        &mut self,
        now: Instant,
        sender: Option<&str>,
        name: &str,
        full: bool,
        want_full: Option<u64>,
        entries: Vec<DigestEntry>,
    ) -> Result<(), FloodError> {
        if !self.groups.contains_key(name) {
            return Err(self.no_group(name));
        }
        let Some(sender) = sender.map(str::to_string) else {
            return Ok(());
        };
        if !self.groups[name].neighbours.contains_key(&sender) {
            return Ok(());
        }
        self.heard_in_group(now, name, Some(&sender));
        if let Some(joined_us) = want_full {
            self.send_starts(now, name, &sender, joined_us);
            let marks = self.all_marks(name);
            self.send_digest(now, name, &sender, true, &marks);
        }
        let me = self.cfg.me.name.clone();
        for e in entries {
            if e.origin == me {
                continue;
            }
            let key = StreamKey {
                origin: e.origin,
                incarnation: e.incarnation,
            };
            if !self.groups[name].streams.contains_key(&key) {
                self.room_for_stream(name);
            }
            let max_streams = self.cfg.limits.max_streams;
            let fresh = self.in_first_window(now, name);
            let g = self.groups.get_mut(name).expect("checked");
            let n = g.neighbours.get_mut(&sender).expect("checked");
            if n.marks.len() < max_streams || n.marks.contains_key(&key) {
                n.marks.insert(key.clone(), (e.low, e.through));
            }
            let s = g.streams.entry(key.clone()).or_insert_with(|| {
                // A site in its first window takes streams from their next update on
                // for now (the neighbours' answers lower that when the window closes);
                // one that has run a while takes a stream it first hears of from its
                // first update: it began while this site ran.
                let base = if fresh { e.through + 1 } else { 1 };
                let mut s = Stream::new(base, now);
                s.provisional = fresh;
                s
            });
            s.touched = now;
            s.known = s.known.max(e.through);
            self.note_known(now, name, &key);
            self.watch_missing(now, name, &key, Some(&sender));
        }
        // The first window ends once every neighbour has shown everything it knows and
        // where each stream stood when this site joined.
        let g = self.groups.get_mut(name).expect("checked");
        if full && let Some(n) = g.neighbours.get_mut(&sender) {
            n.got_full = true;
        }
        self.in_first_window(now, name);
        Ok(())
    }

    /// Tells a neighbour that just joined (`joined_us` ago) where each stream this site
    /// knew of then stood: one past the highest sequence number known at that time, less
    /// a margin for the time its request took — so at or before the first update
    /// flooded after it joined. Sent even when empty: it is the answer.
    fn send_starts(&mut self, now: Instant, name: &str, to: &str, joined_us: u64) {
        let Some(addr) = self.addr_of(to) else {
            return;
        };
        let margin = self
            .sites
            .get(to)
            .and_then(|s| s.rtt)
            .map_or(JOIN_MARGIN_DEFAULT, |r| {
                (r * 2).clamp(JOIN_MARGIN_MIN, JOIN_MARGIN_MAX)
            });
        let since = now
            .saturating_sub(Duration::from_micros(joined_us))
            .saturating_sub(margin);
        let entries: Vec<StartEntry> = self.groups[name]
            .streams
            .iter()
            .filter(|(k, _)| k.origin != to)
            .filter_map(|(k, s)| {
                Some(StartEntry {
                    origin: k.origin.clone(),
                    incarnation: k.incarnation,
                    start: s.known_at(since)? + 1,
                })
            })
            .collect();
        let mut chunks: Vec<&[StartEntry]> = entries.chunks(MAX_ENTRIES).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for chunk in chunks {
            let msg = FloodMsg::Starts {
                group: name.to_string(),
                entries: chunk.to_vec(),
            };
            self.send(addr, &msg);
        }
    }

    /// A neighbour's answer to this site's first request: remembered, per stream, until
    /// the first window closes.
    pub(super) fn on_starts(
        &mut self,
        now: Instant,
        sender: Option<&str>,
        name: &str,
        entries: Vec<StartEntry>,
    ) -> Result<(), FloodError> {
        if !self.groups.contains_key(name) {
            return Err(self.no_group(name));
        }
        let Some(sender) = sender else {
            return Ok(());
        };
        if !self.groups[name].neighbours.contains_key(sender) {
            return Ok(());
        }
        self.heard_in_group(now, name, Some(sender));
        if !self.in_first_window(now, name) {
            return Ok(());
        }
        let me = self.cfg.me.name.clone();
        let max_streams = self.cfg.limits.max_streams;
        let g = self.groups.get_mut(name).expect("checked");
        for e in entries {
            if e.origin == me {
                continue;
            }
            let key = StreamKey {
                origin: e.origin,
                incarnation: e.incarnation,
            };
            if g.starts.len() < max_streams || g.starts.contains_key(&key) {
                let at = g.starts.entry(key).or_insert(e.start);
                *at = (*at).max(e.start);
            }
        }
        if let Some(n) = g.neighbours.get_mut(sender) {
            n.got_start = true;
        }
        self.in_first_window(now, name);
        Ok(())
    }

    /// How long to wait for a pushed copy before pulling from `site`.
    fn pull_delay(&self, site: &str) -> Duration {
        let rtt = self
            .sites
            .get(site)
            .and_then(|s| s.rtt)
            .unwrap_or(Duration::from_millis(25));
        (rtt * 2).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    /// How long to wait for the answer to a pull before asking again.
    fn pull_timeout(&self, site: &str) -> Duration {
        let rtt = self
            .sites
            .get(site)
            .and_then(|s| s.rtt)
            .unwrap_or(Duration::from_millis(50));
        (rtt * 4).clamp(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// Pulls what is missing from a neighbour that holds it. When no neighbour that is
    /// up holds it but some have passed it, only the origin can tell whether it is gone:
    /// it is asked (and is the one pulled from), and what it no longer stores — by its
    /// own digest or its answer — is reported lost. A neighbour's word is never enough:
    /// it may have passed the updates without ever holding them (it joined after them,
    /// or dropped or lost them itself).
    pub(super) fn on_pull_timer(&mut self, now: Instant, name: &str, key: &StreamKey) {
        loop {
            let Some(s) = self.groups.get(name).and_then(|g| g.streams.get(key)) else {
                return;
            };
            if !s.is_missing_any() {
                let s = self.stream_mut(name, key);
                s.pull = None;
                return;
            }
            let ranges = s.missing_ranges(MAX_RANGES);
            let first = ranges[0].0;
            // Say once what digests showed missing (pushes had their chance).
            let reported = s.reported;
            for &(a, b) in &ranges {
                if b > reported {
                    let from = a.max(reported + 1);
                    self.stats.missing += b - from + 1;
                    self.outbox.event(FloodEvent::Missing {
                        group: name.to_string(),
                        origin: key.origin.clone(),
                        incarnation: key.incarnation,
                        from,
                        to: b,
                    });
                }
            }
            let last = ranges.last().map(|r| r.1).unwrap_or(first);
            let s = self.stream_mut(name, key);
            s.reported = s.reported.max(last);
            let tried = s.pull.clone();
            let g = &self.groups[name];
            // Who holds `first`, fastest first.
            let mut holders: Vec<(Duration, String)> = g
                .neighbours
                .iter()
                .filter(|(n, _)| self.is_up(now, g, n))
                .filter_map(|(n, nb)| {
                    let &(low, through) = nb.marks.get(key)?;
                    (low <= first && first <= through).then(|| {
                        let rtt = self
                            .sites
                            .get(n)
                            .and_then(|s| s.rtt)
                            .unwrap_or(Duration::MAX);
                        (rtt, n.clone())
                    })
                })
                .collect();
            holders.sort();
            if holders.is_empty() {
                // Neighbours that are up and have passed `first` but no longer hold it:
                // nobody can send it; what lies below the oldest they hold is lost.
                let lows: Vec<u64> = g
                    .neighbours
                    .iter()
                    .filter(|(n, _)| self.is_up(now, g, n))
                    .filter_map(|(_, nb)| nb.marks.get(key))
                    .filter(|&&(_, through)| through >= first)
                    .map(|&(low, _)| low)
                    .collect();
                let Some(&lowest) = lows.iter().min() else {
                    // Nobody up knows more: wait for digests.
                    let wait = self.pull_timeout("");
                    self.timers
                        .set(Timer::Pull(name.to_string(), key.clone()), now + wait);
                    return;
                };
                // The origin's own marks, if it is a neighbour that is up, are its log.
                let origin_marks = g
                    .neighbours
                    .get(&key.origin)
                    .filter(|_| self.is_up(now, g, &key.origin))
                    .and_then(|n| n.marks.get(key))
                    .copied();
                let gone_to = match (origin_marks, self.addr_of(&key.origin)) {
                    (Some((low, through)), _) if through >= first && low > first => {
                        Some((low - 1).min(ranges[0].1))
                    }
                    // No address for the origin any more: nobody else to ask.
                    (_, None) => Some((lowest - 1).min(ranges[0].1)),
                    _ => None,
                };
                if let Some(to) = gone_to {
                    self.declare_lost(name, key, first, to, LostReason::Purged);
                    self.pump_export(now);
                    continue;
                }
                self.pull_from_origin(now, name, key, &ranges, tried.as_ref());
                return;
            }
            let attempt = match &tried {
                Some(p) if p.first == first => p.attempts + 1,
                _ => 1,
            };
            let pick = ((attempt - 1) / PULL_TRIES) as usize % holders.len();
            let who = holders[pick].1.clone();
            let Some(addr) = self.addr_of(&who) else {
                return;
            };
            let their_through = g.neighbours[&who].marks[key].1;
            let mut budget = PULL_BATCH;
            let mut ask = Vec::new();
            for (a, b) in ranges {
                if a > their_through || budget == 0 {
                    break;
                }
                let b = b.min(their_through).min(a + budget - 1);
                budget -= b - a + 1;
                ask.push((a, b));
            }
            let wait = self.pull_timeout(&who);
            let last = ask.last().map_or(first, |r| r.1);
            let s = self.stream_mut(name, key);
            s.pull = Some(super::Pull {
                from: who,
                first,
                last,
                attempts: attempt,
            });
            self.stats.pulls_sent += 1;
            let msg = FloodMsg::Pull {
                group: name.to_string(),
                origin: key.origin.clone(),
                incarnation: key.incarnation,
                ranges: ask,
            };
            self.send(addr, &msg);
            self.timers
                .set(Timer::Pull(name.to_string(), key.clone()), now + wait);
            return;
        }
    }

    /// Asks the origin itself for the first missing updates of its stream (it is not a
    /// neighbour holding them): again after the pull timeout, longer with each try, for
    /// as long as it does not answer.
    fn pull_from_origin(
        &mut self,
        now: Instant,
        name: &str,
        key: &StreamKey,
        ranges: &[(u64, u64)],
        tried: Option<&super::Pull>,
    ) {
        let Some(addr) = self.addr_of(&key.origin) else {
            return;
        };
        let first = ranges[0].0;
        let attempt = match tried {
            Some(p) if p.first == first && p.from == key.origin => p.attempts.saturating_add(1),
            _ => 1,
        };
        let mut budget = PULL_BATCH;
        let mut ask = Vec::new();
        for &(a, b) in ranges {
            if budget == 0 {
                break;
            }
            let b = b.min(a + budget - 1);
            budget -= b - a + 1;
            ask.push((a, b));
        }
        let last = ask.last().map_or(first, |r| r.1);
        let wait = self
            .pull_timeout(&key.origin)
            .saturating_mul(attempt.min(16))
            .min(ORIGIN_PULL_MAX_WAIT);
        let s = self.stream_mut(name, key);
        s.pull = Some(super::Pull {
            from: key.origin.clone(),
            first,
            last,
            attempts: attempt,
        });
        self.stats.pulls_sent += 1;
        let msg = FloodMsg::Pull {
            group: name.to_string(),
            origin: key.origin.clone(),
            incarnation: key.incarnation,
            ranges: ask,
        };
        self.send(addr, &msg);
        self.timers
            .set(Timer::Pull(name.to_string(), key.clone()), now + wait);
    }

    fn stream_mut(&mut self, name: &str, key: &StreamKey) -> &mut Stream {
        self.groups
            .get_mut(name)
            .and_then(|g| g.streams.get_mut(key))
            .expect("the stream exists")
    }

    /// Updates `from..=to` (the first missing ones) will not arrive: the stream moves
    /// past them and the application is told.
    fn declare_lost(&mut self, name: &str, key: &StreamKey, from: u64, to: u64, why: LostReason) {
        let s = self.stream_mut(name, key);
        debug_assert_eq!(
            from,
            s.through + 1,
            "lost ranges start at the first missing"
        );
        let arrived = s.above.range(from..=to).count() as u64;
        s.above = s.above.split_off(&(to + 1));
        s.through = to;
        while s.above.remove(&(s.through + 1)) {
            s.through += 1;
        }
        s.known = s.known.max(s.through);
        s.reported = s.reported.max(s.through);
        self.stats.lost += (to - from + 1) - arrived;
        self.report_lost(name, key, from, to, why);
    }

    /// Answers a pull with what is held (up to a budget) and names what is not.
    pub(super) fn on_pull(
        &mut self,
        from: PeerAddr,
        name: &str,
        key: &StreamKey,
        ranges: &[(u64, u64)],
    ) {
        if !self.groups.contains_key(name) {
            return;
        }
        let mut sent_bytes = 0usize;
        let mut sent = 0u64;
        let mut evicted: Vec<(u64, u64)> = Vec::new();
        let mut frames = Vec::new();
        'ranges: for &(a, b) in ranges {
            let mut next = a;
            for (seq, data) in self.store.held(name, key, a, b) {
                if sent >= PULL_BATCH || sent_bytes + data.len() > PULL_ANSWER_BYTES {
                    // The rest is left for the next pull: neither sent nor said missing.
                    break 'ranges;
                }
                if seq > next {
                    evicted.push((next, seq - 1));
                }
                next = seq + 1;
                sent += 1;
                sent_bytes += data.len();
                frames.push(
                    FloodMsg::Update {
                        group: name.to_string(),
                        origin: key.origin.clone(),
                        incarnation: key.incarnation,
                        seq,
                        data: data.clone(),
                        pulled: true,
                    }
                    .to_frame(),
                );
            }
            if next <= b {
                evicted.push((next, b));
            }
        }
        for f in frames {
            self.stats.payloads_sent += 1;
            self.stats.payloads_pulled += 1;
            self.send_frame(from, f);
        }
        if !evicted.is_empty() {
            evicted.truncate(MAX_RANGES);
            let msg = FloodMsg::Evicted {
                group: name.to_string(),
                origin: key.origin.clone(),
                incarnation: key.incarnation,
                ranges: evicted,
            };
            self.send(from, &msg);
        }
    }

    /// A neighbour no longer holds what was asked: its marks are raised past it, and the
    /// pull goes elsewhere (or to the origin) at once. The origin no longer holding what
    /// it was asked is final: those updates are reported lost.
    pub(super) fn on_evicted(
        &mut self,
        now: Instant,
        sender: Option<&str>,
        name: &str,
        key: &StreamKey,
        ranges: &[(u64, u64)],
    ) {
        let Some(sender) = sender else {
            return;
        };
        if sender == key.origin {
            self.origin_evicted(now, name, key, ranges);
        }
        if let Some(n) = self
            .groups
            .get_mut(name)
            .and_then(|g| g.neighbours.get_mut(sender))
            && let Some((low, through)) = n.marks.get_mut(key)
        {
            for &(a, b) in ranges {
                if a <= *low && *low <= b {
                    *low = (b + 1).min(*through + 1);
                }
            }
        }
        let asked_here = self
            .groups
            .get(name)
            .and_then(|g| g.streams.get(key))
            .and_then(|s| s.pull.as_ref())
            .is_some_and(|p| p.from == sender);
        if asked_here {
            self.on_pull_timer(now, name, key);
        }
    }

    /// The origin says it no longer stores updates it was asked for: those at the front
    /// of what is missing (within what was asked of it) are lost.
    fn origin_evicted(&mut self, now: Instant, name: &str, key: &StreamKey, ranges: &[(u64, u64)]) {
        let Some(s) = self.groups.get(name).and_then(|g| g.streams.get(key)) else {
            return;
        };
        let Some(last) = s
            .pull
            .as_ref()
            .filter(|p| p.from == key.origin)
            .map(|p| p.last)
        else {
            return;
        };
        for &(a, b) in ranges {
            let b = b.min(last);
            let next = self.stream_mut(name, key).through + 1;
            if a <= next && next <= b {
                self.declare_lost(name, key, next, b, LostReason::Purged);
            }
        }
        self.pump_export(now);
    }
}
