//! The data plane: flooding along spanning trees (or plainly), digests, pulls, and what
//! a site reports missing and lost.

use bytes::Bytes;
use core::time::Duration;

use super::super::bundle::LostReason;
use super::super::msg::{DigestEntry, FloodMsg, MAX_ENTRIES, MAX_RANGES};
use super::super::topology;
use super::store::{EntryKey, NoRoom};
use super::{
    FULL_EVERY, Flood, FloodError, FloodEvent, Group, KEEPALIVE_ROUNDS, PULL_BATCH, PULL_TRIES,
    Stream, StreamKey, Timer, is_tree,
};
use crate::machine::PeerAddr;
use crate::time::Instant;

/// Longest an answer to one pull may be, in bytes of updates.
const PULL_ANSWER_BYTES: usize = 4 << 20;

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

    /// Whether the group is still in its first window (see `Group::fresh`); closes it
    /// for good once its time is up.
    fn in_adopt_window(g: &mut Group, now: Instant) -> bool {
        if g.fresh && g.adopt_until.is_some_and(|t| now >= t) {
            g.fresh = false;
        }
        g.fresh && g.adopt_until.is_some()
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
            let g = self.groups.get_mut(name).expect("checked");
            let mut s = Stream::new(seq, now);
            // Outside the first rounds the stream is new while this site runs: the
            // first digest may show older updates its neighbours still hold.
            s.history_open = !Self::in_adopt_window(g, now) && seq > 1;
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
            self.stats.dropped_unexported += 1;
            self.report_lost(name, &key, seq, seq, LostReason::Storage);
            self.watch_missing(now, name, &key, sender);
            self.pump_export(now);
            return Ok(());
        }
        self.stream_mut(name, &key).arrive(seq);
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
        let Some(g) = self.groups.get(name) else {
            return;
        };
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
    fn all_marks(&self, name: &str) -> Vec<(StreamKey, (u64, u64))> {
        self.groups[name]
            .streams
            .iter()
            .map(|(k, s)| (k.clone(), self.marks(name, k, s)))
            .collect()
    }

    /// Sends one neighbour the marks that changed since it last heard (all of them when
    /// `full`, when it asked, or the first time), or an empty digest as a keepalive.
    fn send_digest(
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
        let want_full = g.fresh && g.adopt_until.is_some_and(|t| now < t) && !n.got_full;
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
        want_full: bool,
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
        if want_full {
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
            let (max_streams, max_above) = (self.cfg.limits.max_streams, self.cfg.limits.max_above);
            let g = self.groups.get_mut(name).expect("checked");
            let n = g.neighbours.get_mut(&sender).expect("checked");
            if n.marks.len() < max_streams || n.marks.contains_key(&key) {
                n.marks.insert(key.clone(), (e.low, e.through));
            }
            let fresh = Self::in_adopt_window(g, now);
            let s = g.streams.entry(key.clone()).or_insert_with(|| {
                // A site that just started takes streams from their next update on; one
                // that has run a while takes what its neighbours still hold.
                let base = if fresh { e.through + 1 } else { e.low };
                Stream::new(base.max(1), now)
            });
            if s.history_open {
                s.history_open = false;
                // The stream was first seen mid-way while this site ran: take also what
                // the neighbour still holds from before (within the out-of-order bound).
                let arrived = s.through + 1 - s.base;
                if e.low < s.base && arrived as usize + s.above.len() <= max_above {
                    s.above.extend(s.base..=s.through);
                    s.base = e.low;
                    s.through = e.low - 1;
                    s.reported = s.through;
                    while s.above.remove(&(s.through + 1)) {
                        s.through += 1;
                    }
                }
            }
            s.touched = now;
            s.known = s.known.max(e.through);
            self.watch_missing(now, name, &key, Some(&sender));
        }
        // The first window ends once every neighbour has shown everything it knows.
        let g = self.groups.get_mut(name).expect("checked");
        if full && let Some(n) = g.neighbours.get_mut(&sender) {
            n.got_full = true;
        }
        if g.fresh && g.neighbours.values().all(|n| n.got_full) {
            g.fresh = false;
        }
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

    /// Pulls what is missing from a neighbour that holds it; what no neighbour holds any
    /// more is reported lost.
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
                let to = (lowest - 1).min(ranges[0].1);
                self.declare_lost(name, key, first, to, LostReason::Purged);
                self.pump_export(now);
                continue;
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
    /// pull goes elsewhere (or the updates are reported lost) at once.
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
        let Some(n) = self
            .groups
            .get_mut(name)
            .and_then(|g| g.neighbours.get_mut(sender))
        else {
            return;
        };
        if let Some((low, through)) = n.marks.get_mut(key) {
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
}
