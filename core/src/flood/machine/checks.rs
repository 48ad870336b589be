//! The machine's own consistency (`check_invariants`, SPEC.md §1.4).

use super::{Flood, Timer};

impl Flood {
    pub(super) fn check(&self) -> Result<(), String> {
        self.store.check()?;
        if self.durable.is_none() && self.staged_run_needs().is_some() {
            return Err("an export run waits for a state file this site does not keep".into());
        }
        self.timers.check()?;
        for (addr, name) in &self.by_addr {
            match self.sites.get(name) {
                Some(s) if s.info.data == *addr => {}
                _ => return Err(format!("address {addr} names {name}, which is not there")),
            }
        }
        for (name, s) in &self.sites {
            if self.by_addr.get(&s.info.data) != Some(name) {
                return Err(format!("site {name} is not indexed by its address"));
            }
        }
        let me = &self.cfg.me.name;
        for (name, g) in &self.groups {
            if let Some(t) = &g.topo {
                let Some(&mine) = t.index.get(me) else {
                    return Err(format!("{name}: the topology does not hold this site"));
                };
                // Every link touching this site names a neighbour, and there are as many
                // such links as neighbours (links are unique).
                let mut touching = 0;
                for &(a, b) in t.links.keys() {
                    let other = match (a == mine, b == mine) {
                        (true, _) => b,
                        (_, true) => a,
                        _ => continue,
                    };
                    touching += 1;
                    if !t.neighbours.contains(&t.members[other as usize].name) {
                        return Err(format!("{name}: a link to a site that is not a neighbour"));
                    }
                }
                if touching != t.neighbours.len() || !g.neighbours.keys().eq(t.neighbours.iter()) {
                    return Err(format!("{name}: neighbours disagree with the topology"));
                }
            } else if !g.neighbours.is_empty() {
                return Err(format!("{name}: neighbours without a topology"));
            }
            if g.streams.len() > self.cfg.limits.max_streams.max(1) + 1 {
                return Err(format!(
                    "{name}: {} streams, past the limit",
                    g.streams.len()
                ));
            }
            if !g.fresh && !g.starts.is_empty() {
                return Err(format!(
                    "{name}: starts remembered after the first window closed"
                ));
            }
            // What a neighbour is believed to hold of a stream is a range its digest
            // could have said (the decoder refuses any other), and an eviction only
            // moves its start up to past what it still has.
            for (nb, n) in &g.neighbours {
                if let Some((k, m)) = n
                    .marks
                    .iter()
                    .find(|(_, (low, through))| *low == 0 || *low > through.saturating_add(1))
                {
                    return Err(format!(
                        "{name}: neighbour {nb}'s marks {m:?} of stream {k:?} are no range"
                    ));
                }
            }
            for (k, s) in &g.streams {
                if s.provisional && !g.fresh {
                    return Err(format!(
                        "{name}: stream {k:?} still waits for the first window to settle it, \
                         which has closed"
                    ));
                }
                let bad = s.base == 0
                    || s.through + 1 < s.base
                    || s.known < s.through
                    || s.above.first().is_some_and(|&a| a <= s.through + 1)
                    || s.above.last().is_some_and(|&a| a > s.known)
                    || s.above.len() > self.cfg.limits.max_above;
                if bad {
                    return Err(format!("{name}: stream {k:?} has inconsistent marks {s:?}"));
                }
                if s.is_missing_any()
                    && !self.timers.contains(&Timer::Pull(name.clone(), k.clone()))
                {
                    return Err(format!(
                        "{name}: stream {k:?} misses updates but nothing will fetch them"
                    ));
                }
                if k.origin == *me
                    && k.incarnation == self.incarnation
                    && s.through + 1 != g.next_seq
                {
                    return Err(format!("{name}: this site's own stream is not contiguous"));
                }
            }
        }
        for t in self.timers.keys() {
            let ok = match t {
                Timer::Join(g)
                | Timer::Update(g)
                | Timer::Recompute(g)
                | Timer::Ping(g)
                | Timer::Bandwidth(g)
                | Timer::Estimates(g)
                | Timer::Digest(g) => self.groups.contains_key(g),
                Timer::Pull(g, k) => self
                    .groups
                    .get(g)
                    .is_some_and(|g| g.streams.contains_key(k)),
                Timer::PartialLine(c) => self.clients.contains_key(c),
                Timer::Purge | Timer::SitePurge => true,
                Timer::ExportRetry => self.store.export_in_flight().is_none(),
                Timer::State => self.durable.is_some(),
            };
            if !ok {
                return Err(format!("timer {t:?} names something that is gone"));
            }
        }
        for (c, client) in &self.clients {
            if client.reader.pending() > 0 && !self.timers.contains(&Timer::PartialLine(*c)) {
                return Err(format!("client {c} left input unfinished with no timeout"));
            }
        }
        if self.pings.len() > super::MAX_PROBES || self.probes.len() > super::MAX_PROBES {
            return Err("more probes remembered than the limit".into());
        }
        Ok(())
    }
}
