//! The network model: what happens to a datagram between two nodes.
//!
//! Every directed link has [`LinkParams`] (the defaults, or a per-link override). A frame
//! is first judged by the *rules* (partition groups and one-way blocks: pass or drop), then
//! by the random parameters drawn from the network's own RNG stream: loss (uniform, or
//! bursty: a two-state Gilbert–Elliott model per link), a delay of `latency` plus an
//! exponential tail of mean `jitter`, an occasional extra reordering delay, byte
//! corruption, and duplication (the copy gets its own delay and corruption).

use core::fmt;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use flotilla_core::Rng;

/// Random behaviour of one directed link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkParams {
    /// Minimum one-way delay.
    pub latency: Duration,
    /// Mean of the exponential tail added to `latency`; reordering emerges from it.
    pub jitter: Duration,
    /// Probability a frame is lost.
    pub loss: f64,
    /// Probability a frame is delivered twice.
    pub duplicate: f64,
    /// Probability a frame is held back by an extra delay, uniform in `0..=reorder_delay`.
    pub reorder: f64,
    /// Upper bound of the extra reordering delay.
    pub reorder_delay: Duration,
    /// Probability one random byte of a frame is flipped.
    pub corrupt: f64,
    /// Bursty loss (Gilbert–Elliott): per frame, the probability that a link in its good
    /// state turns bad. 0 turns bursts off.
    pub burst_enter: f64,
    /// Per frame, the probability that a bad link turns good again (the mean burst is
    /// `1 / burst_exit` frames).
    pub burst_exit: f64,
    /// Loss probability while a link is bad (`loss` applies while it is good).
    pub burst_loss: f64,
}

impl Default for LinkParams {
    /// A quiet LAN: 1 ms latency, 0.5 ms mean jitter, no faults.
    fn default() -> Self {
        LinkParams {
            latency: Duration::from_millis(1),
            jitter: Duration::from_micros(500),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
            corrupt: 0.0,
            burst_enter: 0.0,
            burst_exit: 0.5,
            burst_loss: 1.0,
        }
    }
}

/// Why a frame was not delivered.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The two nodes are in different partition groups.
    Partition,
    /// The directed link is blocked.
    Blocked,
    /// Random loss.
    Lost,
    /// Loss while the link was in a burst.
    Burst,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Partition => "partition",
            DropReason::Blocked => "blocked",
            DropReason::Lost => "lost",
            DropReason::Burst => "lost in a burst",
        })
    }
}

/// One copy of a frame on its way.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// One-way delay.
    pub delay: Duration,
    /// Flip the byte at this index (modulo the frame length), if any.
    pub corrupt_at: Option<u64>,
}

/// What the network does with one frame: dropped, or up to two copies.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not delivered.
    Drop(DropReason),
    /// Delivered once, or twice when the second copy is present.
    Deliver(Delivery, Option<Delivery>),
}

/// Counters of what the network did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames offered to the network.
    pub sent: u64,
    /// Dropped by a partition.
    pub partitioned: u64,
    /// Dropped by a one-way block.
    pub blocked: u64,
    /// Lost at random (uniform loss and bursts).
    pub lost: u64,
    /// Of those, lost while their link was in a burst.
    pub burst_lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Copies given an extra reordering delay.
    pub reordered: u64,
    /// Copies with a flipped byte.
    pub corrupted: u64,
}

/// The network between `n` nodes.
#[derive(Clone, Debug)]
pub struct Network {
    defaults: LinkParams,
    overrides: BTreeMap<(usize, usize), LinkParams>,
    /// Partition group of each node; `None` when not partitioned.
    groups: Option<Vec<u32>>,
    blocked: BTreeSet<(usize, usize)>,
    /// Links in the bad state of the bursty-loss model.
    bursting: BTreeSet<(usize, usize)>,
    rng: Rng,
    stats: NetStats,
}

impl Network {
    /// A healed network with `defaults` on every link, drawing from `rng`.
    pub fn new(defaults: LinkParams, rng: Rng) -> Self {
        Network {
            defaults,
            overrides: BTreeMap::new(),
            groups: None,
            blocked: BTreeSet::new(),
            bursting: BTreeSet::new(),
            rng,
            stats: NetStats::default(),
        }
    }

    /// Parameters on the link `from -> to`.
    pub fn params(&self, from: usize, to: usize) -> &LinkParams {
        self.overrides.get(&(from, to)).unwrap_or(&self.defaults)
    }

    /// The defaults.
    pub fn defaults(&self) -> &LinkParams {
        &self.defaults
    }

    /// Replaces the defaults (links with an override keep theirs).
    pub fn set_defaults(&mut self, p: LinkParams) {
        self.defaults = p;
    }

    /// Overrides the directed link `from -> to`.
    pub fn set_link(&mut self, from: usize, to: usize, p: LinkParams) {
        self.overrides.insert((from, to), p);
    }

    /// Removes an override so the link follows the defaults again.
    pub fn clear_link(&mut self, from: usize, to: usize) {
        self.overrides.remove(&(from, to));
    }

    /// Splits the `n` nodes into `groups`; nodes not named are each alone.
    pub fn partition(&mut self, n: usize, groups: &[Vec<usize>]) {
        let mut g: Vec<u32> = (0..n).map(|i| (groups.len() + i) as u32).collect();
        for (k, members) in groups.iter().enumerate() {
            for &i in members {
                if i < n {
                    g[i] = k as u32;
                }
            }
        }
        self.groups = Some(g);
    }

    /// Removes the partition and every one-way block.
    pub fn heal(&mut self) {
        self.groups = None;
        self.blocked.clear();
    }

    /// Blocks (or unblocks) the directed link `from -> to`.
    pub fn block(&mut self, from: usize, to: usize, blocked: bool) {
        if blocked {
            self.blocked.insert((from, to));
        } else {
            self.blocked.remove(&(from, to));
        }
    }

    /// Why the rules stop `from -> to`, if they do. Random loss is not a rule.
    pub fn rule(&self, from: usize, to: usize) -> Option<DropReason> {
        if let Some(g) = &self.groups
            && g.get(from) != g.get(to)
        {
            return Some(DropReason::Partition);
        }
        if !self.blocked.is_empty() && self.blocked.contains(&(from, to)) {
            return Some(DropReason::Blocked);
        }
        None
    }

    /// True when the rules let `from -> to` through (it may still lose frames at random).
    pub fn passes(&self, from: usize, to: usize) -> bool {
        self.rule(from, to).is_none()
    }

    /// Decides the fate of one frame on `from -> to`.
    pub fn route(&mut self, from: usize, to: usize) -> Verdict {
        self.stats.sent += 1;
        if let Some(why) = self.rule(from, to) {
            match why {
                DropReason::Partition => self.stats.partitioned += 1,
                DropReason::Blocked => self.stats.blocked += 1,
                DropReason::Lost | DropReason::Burst => {}
            }
            return Verdict::Drop(why);
        }
        let p = *self.params(from, to);
        if self.in_burst(from, to, &p) {
            if self.rng.chance(p.burst_loss) {
                self.stats.lost += 1;
                self.stats.burst_lost += 1;
                return Verdict::Drop(DropReason::Burst);
            }
        } else if self.rng.chance(p.loss) {
            self.stats.lost += 1;
            return Verdict::Drop(DropReason::Lost);
        }
        let first = self.copy(&p);
        let second = if self.rng.chance(p.duplicate) {
            self.stats.duplicated += 1;
            Some(self.copy(&p))
        } else {
            None
        };
        Verdict::Deliver(first, second)
    }

    /// Steps the link's two-state loss model and says whether it is bad for this frame.
    /// Draws nothing when bursts are off, so other runs keep their random sequence.
    fn in_burst(&mut self, from: usize, to: usize, p: &LinkParams) -> bool {
        let key = (from, to);
        let bad = self.bursting.contains(&key);
        if !bad && p.burst_enter <= 0.0 {
            return false;
        }
        let now_bad = if bad {
            !self.rng.chance(p.burst_exit)
        } else {
            self.rng.chance(p.burst_enter)
        };
        if now_bad {
            self.bursting.insert(key);
        } else {
            self.bursting.remove(&key);
        }
        now_bad
    }

    fn copy(&mut self, p: &LinkParams) -> Delivery {
        let mut delay = p.latency;
        if !p.jitter.is_zero() {
            delay += self.rng.exponential(p.jitter);
        }
        if self.rng.chance(p.reorder) {
            self.stats.reordered += 1;
            delay += self.rng.duration_between(Duration::ZERO, p.reorder_delay);
        }
        let corrupt_at = if self.rng.chance(p.corrupt) {
            self.stats.corrupted += 1;
            Some(self.rng.next_u64())
        } else {
            None
        };
        Delivery { delay, corrupt_at }
    }

    /// Counters so far.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// What the rules cut, e.g. `{n1} {n2 n3}; n2 -> n3 blocked`, or `None` when every
    /// link passes.
    pub fn describe_rules(&self, names: &[String]) -> Option<String> {
        let name = |i: usize| names.get(i).map_or("?", String::as_str);
        let mut parts = Vec::new();
        if self.groups.is_some() {
            parts.push(self.describe_partition(names));
        }
        for (a, b) in &self.blocked {
            parts.push(format!("{} -> {} blocked", name(*a), name(*b)));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// A description of the partition for traces, e.g. `{n1} {n2 n3}`.
    pub fn describe_partition(&self, names: &[String]) -> String {
        let Some(g) = &self.groups else {
            return "none".to_string();
        };
        let mut by_group: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, k) in g.iter().enumerate() {
            by_group.entry(*k).or_default().push(i);
        }
        let parts: Vec<String> = by_group
            .values()
            .map(|members| {
                let names: Vec<&str> = members
                    .iter()
                    .map(|i| names.get(*i).map_or("?", String::as_str))
                    .collect();
                format!("{{{}}}", names.join(" "))
            })
            .collect();
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(p: LinkParams) -> Network {
        Network::new(p, Rng::from_seed(7))
    }

    #[test]
    fn partitioned_link_never_delivers() {
        let mut n = net(LinkParams::default());
        n.partition(3, &[vec![0], vec![1, 2]]);
        for _ in 0..1000 {
            assert_eq!(n.route(0, 1), Verdict::Drop(DropReason::Partition));
            assert_eq!(n.route(2, 0), Verdict::Drop(DropReason::Partition));
            assert!(matches!(n.route(1, 2), Verdict::Deliver(..)));
        }
        let names: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        assert_eq!(n.describe_partition(&names), "{n1} {n2 n3}");
        n.heal();
        assert!(matches!(n.route(0, 1), Verdict::Deliver(..)));
    }

    #[test]
    fn unnamed_nodes_are_isolated() {
        let mut n = net(LinkParams::default());
        n.partition(3, &[vec![0, 1]]);
        assert!(n.passes(0, 1));
        assert!(!n.passes(0, 2) && !n.passes(2, 1));
    }

    #[test]
    fn one_way_block() {
        let mut n = net(LinkParams::default());
        n.block(0, 1, true);
        assert_eq!(n.route(0, 1), Verdict::Drop(DropReason::Blocked));
        assert!(matches!(n.route(1, 0), Verdict::Deliver(..)));
        n.block(0, 1, false);
        assert!(matches!(n.route(0, 1), Verdict::Deliver(..)));
    }

    #[test]
    fn total_loss_delivers_nothing() {
        let mut n = net(LinkParams {
            loss: 1.0,
            ..LinkParams::default()
        });
        for _ in 0..1000 {
            assert_eq!(n.route(0, 1), Verdict::Drop(DropReason::Lost));
        }
        assert_eq!(n.stats().lost, 1000);
    }

    /// Bursty loss clusters: with a 1 % chance of entering a burst and a 20 % chance of
    /// leaving it (mean burst five frames), losses come in runs, while the long-run loss
    /// rate stays near enter / (enter + exit) ≈ 4.8 %.
    #[test]
    fn bursty_loss_comes_in_runs() {
        let mut n = net(LinkParams {
            burst_enter: 0.01,
            burst_exit: 0.2,
            burst_loss: 1.0,
            ..LinkParams::default()
        });
        let lost: Vec<bool> = (0..100_000)
            .map(|_| matches!(n.route(0, 1), Verdict::Drop(DropReason::Burst)))
            .collect();
        let total = lost.iter().filter(|l| **l).count();
        assert!((3_800..5_800).contains(&total), "{total}");
        // Given a loss, the next frame is lost far more often than the average rate.
        let pairs = lost.windows(2).filter(|w| w[0]).count();
        let runs = lost.windows(2).filter(|w| w[0] && w[1]).count();
        assert!(runs as f64 / pairs as f64 > 0.7, "{runs}/{pairs}");
        assert_eq!(n.stats().burst_lost, total as u64);
    }

    #[test]
    fn certain_duplication_yields_two_copies() {
        let mut n = net(LinkParams {
            duplicate: 1.0,
            ..LinkParams::default()
        });
        for _ in 0..100 {
            assert!(matches!(n.route(0, 1), Verdict::Deliver(_, Some(_))));
        }
    }

    #[test]
    fn delay_is_latency_plus_tail_and_overrides_apply() {
        let p = LinkParams {
            latency: Duration::from_millis(5),
            jitter: Duration::from_millis(2),
            ..LinkParams::default()
        };
        let mut n = net(p);
        n.set_link(
            0,
            1,
            LinkParams {
                latency: Duration::from_millis(100),
                jitter: Duration::ZERO,
                ..p
            },
        );
        let mut total = Duration::ZERO;
        for _ in 0..2000 {
            let Verdict::Deliver(c, None) = n.route(1, 0) else {
                panic!("no faults configured")
            };
            assert!(c.delay >= Duration::from_millis(5));
            total += c.delay;
        }
        // The mean is latency + jitter; 2000 samples land well within 10 %.
        let mean = total / 2000;
        assert!(mean > Duration::from_micros(6_300) && mean < Duration::from_micros(7_700));
        assert_eq!(
            n.route(0, 1),
            Verdict::Deliver(
                Delivery {
                    delay: Duration::from_millis(100),
                    corrupt_at: None
                },
                None
            )
        );
        n.clear_link(0, 1);
        assert_eq!(n.params(0, 1), &p);
    }
}
