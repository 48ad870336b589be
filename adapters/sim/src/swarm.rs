//! Swarm testing (SPEC.md §6.1): instead of one fixed set of faults, a scenario gives
//! ranges, and each seed draws its own parameters — loss, bursts, latency, duplication,
//! reordering, corruption, and how many partitions, crashes and pauses happen when —
//! before it runs. A sweep then covers many combinations, as FoundationDB's and
//! TigerBeetle's simulators do. The drawn set is printed with the seed's report.

use core::fmt::Write as _;
use core::time::Duration;

use flotilla_core::sexpr::{Node, SexprError};
use flotilla_core::{Instant, Rng};

use crate::network::LinkParams;
use crate::sim::{Action, Target};

/// An inclusive range to draw a number from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range<T> {
    /// Lowest.
    pub lo: T,
    /// Highest.
    pub hi: T,
}

/// What a scenario's `(:swarm …)` form asks for. Absent parameters are not drawn: the
/// scenario's own settings stand.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SwarmSpec {
    /// Faults happen in this window (default: from 1 s to two thirds of the run).
    pub from: Option<Duration>,
    /// See `from`.
    pub until: Option<Duration>,
    /// Uniform loss probability.
    pub loss: Option<Range<f64>>,
    /// Probability a link enters a loss burst (bursts then last five frames on average
    /// and lose 90 % of what they carry).
    pub burst: Option<Range<f64>>,
    /// Minimum one-way delay.
    pub latency: Option<Range<Duration>>,
    /// Mean exponential tail.
    pub jitter: Option<Range<Duration>>,
    /// Duplication probability.
    pub duplicate: Option<Range<f64>>,
    /// Reordering probability.
    pub reorder: Option<Range<f64>>,
    /// Corruption probability.
    pub corrupt: Option<Range<f64>>,
    /// How many partitions (each healed before the next, and all by `until`).
    pub partitions: Option<Range<u32>>,
    /// How many crashes of a random node (each restarted after a while).
    pub crashes: Option<Range<u32>>,
    /// How many pauses of a random node (each resumed after a while).
    pub pauses: Option<Range<u32>>,
}

fn err(n: &Node, msg: impl Into<String>) -> SexprError {
    SexprError::new(n.pos, msg)
}

fn two(f: &Node) -> Result<(&Node, &Node), SexprError> {
    match f.args() {
        [a, b] => Ok((a, b)),
        _ => Err(err(
            f,
            format!("{f} takes a range: two values, lowest then highest"),
        )),
    }
}

fn prob_range(f: &Node) -> Result<Range<f64>, SexprError> {
    let (a, b) = two(f)?;
    let (lo, hi) = (a.number()?, b.number()?);
    if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || hi < lo {
        return Err(err(f, "a probability range is two numbers 0 ≤ lo ≤ hi ≤ 1"));
    }
    Ok(Range { lo, hi })
}

fn duration_range(f: &Node) -> Result<Range<Duration>, SexprError> {
    let (a, b) = two(f)?;
    let (lo, hi) = (a.duration()?, b.duration()?);
    if hi < lo {
        return Err(err(f, "the range ends before it starts"));
    }
    Ok(Range { lo, hi })
}

fn count_range(f: &Node) -> Result<Range<u32>, SexprError> {
    let (a, b) = two(f)?;
    let (lo, hi) = (a.int_in(0, 1000)? as u32, b.int_in(0, 1000)? as u32);
    if hi < lo {
        return Err(err(f, "the range ends before it starts"));
    }
    Ok(Range { lo, hi })
}

impl SwarmSpec {
    /// Reads `(:swarm SETTING…)`.
    pub fn parse(form: &Node) -> Result<Self, SexprError> {
        let mut s = SwarmSpec::default();
        for f in form.args() {
            match f.head() {
                Some("from") => s.from = Some(one(f)?.duration()?),
                Some("until") => s.until = Some(one(f)?.duration()?),
                Some("loss") => s.loss = Some(prob_range(f)?),
                Some("burst") => s.burst = Some(prob_range(f)?),
                Some("latency") => s.latency = Some(duration_range(f)?),
                Some("jitter") => s.jitter = Some(duration_range(f)?),
                Some("duplicate") => s.duplicate = Some(prob_range(f)?),
                Some("reorder") => s.reorder = Some(prob_range(f)?),
                Some("corrupt") => s.corrupt = Some(prob_range(f)?),
                Some("partitions") => s.partitions = Some(count_range(f)?),
                Some("crashes") => s.crashes = Some(count_range(f)?),
                Some("pauses") => s.pauses = Some(count_range(f)?),
                _ => {
                    return Err(err(
                        f,
                        format!(
                            "unknown swarm setting {f} (use :from :until :loss :burst :latency \
                             :jitter :duplicate :reorder :corrupt :partitions :crashes :pauses)"
                        ),
                    ));
                }
            }
        }
        if let (Some(a), Some(b)) = (s.from, s.until)
            && b < a
        {
            return Err(err(form, "(:until T) is before (:from T)"));
        }
        Ok(s)
    }
}

fn one(f: &Node) -> Result<&Node, SexprError> {
    match f.args() {
        [v] => Ok(v),
        _ => Err(err(f, format!("{f} takes exactly one value"))),
    }
}

/// What one seed drew.
#[derive(Clone, Debug, PartialEq)]
pub struct Drawn<C> {
    /// The default link parameters to run with.
    pub network: LinkParams,
    /// Timed faults to add to the scenario's own actions.
    pub actions: Vec<(Instant, Action<C>)>,
    /// A one-line account, for the report.
    pub banner: String,
}

fn draw_f(rng: &mut Rng, r: Range<f64>) -> f64 {
    r.lo + (r.hi - r.lo) * rng.unit()
}

fn draw_d(rng: &mut Rng, r: Range<Duration>) -> Duration {
    rng.duration_between(r.lo, r.hi)
}

fn draw_n(rng: &mut Rng, r: Range<u32>) -> u32 {
    r.lo + rng.below(u64::from(r.hi - r.lo) + 1) as u32
}

/// Picks `k` random nodes (possibly none) to form one side of a split; the rest form
/// the other side, and now and then a third side is cut off too.
fn random_split(rng: &mut Rng, nodes: usize) -> Vec<Vec<usize>> {
    let mut sides = vec![Vec::new(), Vec::new(), Vec::new()];
    let three = nodes >= 3 && rng.chance(0.3);
    for i in 0..nodes {
        let side = if three {
            rng.below(3) as usize
        } else {
            rng.below(2) as usize
        };
        sides[side].push(i);
    }
    sides.retain(|s| !s.is_empty());
    sides
}

impl SwarmSpec {
    /// Draws this seed's faults for a run of `nodes` nodes lasting `duration`, on top of
    /// the scenario's `network`.
    pub fn draw<C>(
        &self,
        rng: &mut Rng,
        nodes: usize,
        duration: Duration,
        network: LinkParams,
    ) -> Drawn<C> {
        let mut net = network;
        let mut banner = String::new();
        let mut note = |name: &str, v: String| {
            let _ = write!(
                banner,
                "{}{name}={v}",
                if banner.is_empty() { "" } else { " " }
            );
        };
        if let Some(r) = self.loss {
            net.loss = draw_f(rng, r);
            note("loss", format!("{:.3}", net.loss));
        }
        if let Some(r) = self.burst {
            net.burst_enter = draw_f(rng, r);
            net.burst_exit = 0.2;
            net.burst_loss = 0.9;
            note("burst", format!("{:.4}", net.burst_enter));
        }
        if let Some(r) = self.latency {
            net.latency = draw_d(rng, r);
            note("latency", format!("{:?}", net.latency));
        }
        if let Some(r) = self.jitter {
            net.jitter = draw_d(rng, r);
            note("jitter", format!("{:?}", net.jitter));
        }
        if let Some(r) = self.duplicate {
            net.duplicate = draw_f(rng, r);
            note("duplicate", format!("{:.3}", net.duplicate));
        }
        if let Some(r) = self.reorder {
            net.reorder = draw_f(rng, r);
            note("reorder", format!("{:.3}", net.reorder));
        }
        if let Some(r) = self.corrupt {
            net.corrupt = draw_f(rng, r);
            note("corrupt", format!("{:.4}", net.corrupt));
        }
        let from = self.from.unwrap_or(Duration::from_secs(1)).min(duration);
        let until = self.until.unwrap_or(duration * 2 / 3).clamp(from, duration);
        let mut actions = Vec::new();
        let span = until.saturating_sub(from);
        let at = |rng: &mut Rng, lo: Duration, hi: Duration| rng.duration_between(lo, hi.max(lo));
        // Partitions take turns: slot k of `count` holds partition k, healed within it.
        if let Some(r) = self.partitions {
            let count = draw_n(rng, r);
            note("partitions", count.to_string());
            for k in 0..count {
                let slot = span / count.max(1);
                let lo = from + slot * k;
                let start = at(rng, lo, lo + slot / 2);
                let end = at(rng, start + slot / 8, lo + slot);
                actions.push((
                    Instant::ZERO + start,
                    Action::Partition(random_split(rng, nodes)),
                ));
                actions.push((Instant::ZERO + end, Action::Heal));
            }
        }
        for (kind, range) in [("crashes", self.crashes), ("pauses", self.pauses)] {
            let Some(r) = range else { continue };
            let count = draw_n(rng, r);
            note(kind, count.to_string());
            for _ in 0..count {
                let start = at(rng, from, until);
                let end = at(rng, start, (start + span / 4).min(until));
                let (down, up) = if kind == "crashes" {
                    (
                        Action::Crash(Target::Random),
                        Action::Restart(Target::Random),
                    )
                } else {
                    (
                        Action::Pause(Target::Random),
                        Action::Resume(Target::Random),
                    )
                };
                actions.push((Instant::ZERO + start, down));
                actions.push((Instant::ZERO + end, up));
            }
        }
        actions.sort_by_key(|(t, _)| *t);
        if banner.is_empty() {
            banner.push_str("nothing drawn");
        }
        Drawn {
            network: net,
            actions,
            banner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::sexpr;

    fn spec(text: &str) -> SwarmSpec {
        SwarmSpec::parse(&sexpr::parse(text).unwrap()[0]).unwrap()
    }

    #[test]
    fn draws_within_ranges_and_differs_by_seed() {
        let s = spec(
            "(:swarm (:from 2s) (:until 20s) (:loss 0.01 0.1) (:latency 1ms 30ms) \
             (:partitions 1 3) (:crashes 2 2) (:pauses 0 1) (:burst 0 0.02))",
        );
        let mut banners = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let d: Drawn<()> = s.draw(
                &mut Rng::from_seed(seed),
                5,
                Duration::from_secs(30),
                LinkParams::default(),
            );
            assert!((0.01..=0.1).contains(&d.network.loss));
            assert!(d.network.latency >= Duration::from_millis(1));
            assert!(d.network.latency <= Duration::from_millis(30));
            let crashes = d
                .actions
                .iter()
                .filter(|(_, a)| matches!(a, Action::Crash(_)))
                .count();
            assert_eq!(crashes, 2);
            let parts = d
                .actions
                .iter()
                .filter(|(_, a)| matches!(a, Action::Partition(_)))
                .count();
            let heals = d
                .actions
                .iter()
                .filter(|(_, a)| matches!(a, Action::Heal))
                .count();
            assert!((1..=3).contains(&parts) && heals == parts);
            for (t, _) in &d.actions {
                assert!(
                    *t >= Instant::from_secs(2) && *t <= Instant::from_secs(20),
                    "{t}"
                );
            }
            banners.insert(d.banner);
        }
        assert!(banners.len() > 40, "seeds draw different faults");
    }

    #[test]
    fn bad_ranges_are_refused_with_a_position() {
        let bad = |t: &str| SwarmSpec::parse(&sexpr::parse(t).unwrap()[0]).unwrap_err();
        assert!(
            bad("(:swarm (:loss 0.5 0.1))")
                .message
                .contains("0 ≤ lo ≤ hi ≤ 1")
        );
        assert!(bad("(:swarm (:crashes 3))").message.contains("range"));
        assert!(
            bad("(:swarm (:storms 1 2))")
                .message
                .contains("unknown swarm setting")
        );
        assert_eq!(bad("(:swarm\n (:from 5s) (:until 1s))").pos.line, 1);
    }
}
