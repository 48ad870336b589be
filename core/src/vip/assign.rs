//! Who should hold each VIP: a pure function of what every agent knows at one place in
//! the agreed order (SPEC.md §11.2), so every agent computes the same answer.

use std::collections::{BTreeMap, BTreeSet};

use super::config::{Balance, VipConfig};

/// What the assignment is computed from.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The configuration.
    pub cfg: &'a VipConfig,
    /// Whether this component may hold VIPs at all.
    pub primary: bool,
    /// The nodes that may hold VIPs now: members of the component, eligible, healthy,
    /// not fenced, reading the same configuration (the witness never is).
    pub eligible: &'a BTreeSet<String>,
    /// Per node, the VIPs (by index) it failed to add and may not take yet.
    pub failed: &'a BTreeMap<String, BTreeSet<u16>>,
    /// Per VIP, its holder now (or the node it is being released by, for none).
    pub current: &'a [Option<String>],
    /// Per VIP, its preferred node (the application's, else the file's).
    pub prefer: &'a [Option<String>],
    /// Per VIP, a move the application asked for and that is not finished.
    pub forced: &'a [Option<String>],
}

impl Inputs<'_> {
    /// The nodes that may hold VIP `i`.
    pub fn allowed(&self, i: usize) -> impl Iterator<Item = &String> + '_ {
        let spec = &self.cfg.vips[i];
        self.eligible.iter().filter(move |n| {
            self.cfg.may_hold(spec, n)
                && !self.failed.get(*n).is_some_and(|f| f.contains(&(i as u16)))
        })
    }

    fn may(&self, i: usize, node: &str) -> bool {
        self.allowed(i).any(|n| n == node)
    }
}

/// Per VIP, the node that should hold it (`None`: nobody may).
///
/// 1. Nothing in a component that is not primary.
/// 2. A move the application asked for, to a node that may hold the VIP, wins.
/// 3. A holder that may still hold its VIP keeps it when the configuration is sticky,
///    or when the VIP has no preferred node that may hold it, or when it is that node.
/// 4. The rest go to their preferred node if it may hold them, else (balance `place` or
///    `rebalance`) to the node that may hold them with the fewest VIPs so far (ties: the
///    least name), or (balance `off`) the least name; in index order.
/// 5. With `rebalance`, one VIP kept by rule 3 (and not on its preferred node, where
///    rule 4 would put it back) moves from a node that holds at least two more than
///    another node that may hold it (the first such VIP in index order): one move per
///    decision, since every move is a short outage.
pub fn assign(inp: &Inputs<'_>) -> Vec<Option<String>> {
    let n = inp.cfg.vips.len();
    let mut out: Vec<Option<String>> = vec![None; n];
    if !inp.primary {
        return out;
    }
    let mut load: BTreeMap<String, usize> = inp.eligible.iter().map(|e| (e.clone(), 0)).collect();
    let mut kept = vec![false; n];
    for i in 0..n {
        if let Some(f) = &inp.forced[i]
            && inp.may(i, f)
        {
            out[i] = Some(f.clone());
        } else if let Some(c) = &inp.current[i]
            && inp.may(i, c)
        {
            let pref_ok = inp.prefer[i].as_ref().filter(|p| inp.may(i, p));
            if inp.cfg.sticky || pref_ok.is_none_or(|p| p == c) {
                out[i] = Some(c.clone());
                kept[i] = true;
            }
        }
        if let Some(o) = &out[i] {
            *load.entry(o.clone()).or_default() += 1;
        }
    }
    for (i, slot) in out.iter_mut().enumerate() {
        if slot.is_some() {
            continue;
        }
        let pick = match inp.prefer[i].as_ref().filter(|p| inp.may(i, p)) {
            Some(p) => Some(p.clone()),
            None => match inp.cfg.balance {
                Balance::Off => inp.allowed(i).next().cloned(),
                Balance::Place | Balance::Rebalance => inp
                    .allowed(i)
                    .min_by_key(|c| (load.get(*c).copied().unwrap_or(0), c.as_str()))
                    .cloned(),
            },
        };
        if let Some(p) = &pick {
            *load.entry(p.clone()).or_default() += 1;
        }
        *slot = pick;
    }
    if inp.cfg.balance == Balance::Rebalance {
        for i in 0..n {
            // A VIP on its preferred node stays: moved away, it would be placed back.
            let on_preference = inp.prefer[i].is_some() && inp.prefer[i] == out[i];
            if !kept[i] || on_preference {
                continue;
            }
            let from = out[i].clone().expect("kept VIPs have a holder");
            let from_load = load[&from];
            let to = inp
                .allowed(i)
                .filter(|c| load.get(*c).copied().unwrap_or(0) + 2 <= from_load)
                .min_by_key(|c| (load.get(*c).copied().unwrap_or(0), c.as_str()))
                .cloned();
            if let Some(to) = to {
                out[i] = Some(to);
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vip::config::{VipAddress, VipSpec};
    use proptest::prelude::*;

    fn cfg(nodes: &[&str], vips: usize) -> VipConfig {
        let specs = (0..vips)
            .map(|i| VipSpec {
                name: format!("v{i}"),
                addresses: vec![VipAddress {
                    ip: format!("10.0.0.{}", i + 1).parse().unwrap(),
                    prefix: 24,
                    interface: "eth0".into(),
                }],
                nodes: Vec::new(),
                prefer: None,
            })
            .collect();
        VipConfig::new(nodes, specs)
    }

    #[derive(Debug)]
    struct World {
        cfg: VipConfig,
        primary: bool,
        eligible: BTreeSet<String>,
        failed: BTreeMap<String, BTreeSet<u16>>,
        current: Vec<Option<String>>,
        prefer: Vec<Option<String>>,
        forced: Vec<Option<String>>,
    }

    impl World {
        fn new(cfg: VipConfig, eligible: &[&str]) -> Self {
            let n = cfg.vips.len();
            World {
                cfg,
                primary: true,
                eligible: eligible.iter().map(|s| s.to_string()).collect(),
                failed: BTreeMap::new(),
                current: vec![None; n],
                prefer: vec![None; n],
                forced: vec![None; n],
            }
        }
        fn run(&self) -> Vec<Option<String>> {
            assign(&Inputs {
                cfg: &self.cfg,
                primary: self.primary,
                eligible: &self.eligible,
                failed: &self.failed,
                current: &self.current,
                prefer: &self.prefer,
                forced: &self.forced,
            })
        }
    }

    fn names(v: &[Option<String>]) -> Vec<&str> {
        v.iter().map(|o| o.as_deref().unwrap_or("-")).collect()
    }

    #[test]
    fn vips_spread_over_the_eligible_nodes() {
        let w = World::new(cfg(&["a", "b", "c"], 5), &["a", "b", "c"]);
        assert_eq!(names(&w.run()), ["a", "b", "c", "a", "b"]);
    }

    #[test]
    fn a_component_that_is_not_primary_holds_nothing() {
        let mut w = World::new(cfg(&["a", "b"], 2), &["a"]);
        w.primary = false;
        w.current[0] = Some("a".into());
        assert_eq!(names(&w.run()), ["-", "-"]);
    }

    #[test]
    fn holders_are_sticky_unless_configured_otherwise() {
        let mut w = World::new(cfg(&["a", "b"], 1), &["a", "b"]);
        w.prefer[0] = Some("a".into());
        w.current[0] = Some("b".into());
        assert_eq!(
            names(&w.run()),
            ["b"],
            "the preferred node came back: no move"
        );
        w.cfg.sticky = false;
        assert_eq!(
            names(&w.run()),
            ["a"],
            "not sticky: back to the preferred node"
        );
        w.eligible.remove("a");
        assert_eq!(names(&w.run()), ["b"], "the preferred node may not hold it");
    }

    #[test]
    fn a_move_wins_when_its_target_may_hold_the_vip() {
        let mut w = World::new(cfg(&["a", "b"], 1), &["a", "b"]);
        w.current[0] = Some("a".into());
        w.forced[0] = Some("b".into());
        assert_eq!(names(&w.run()), ["b"]);
        w.failed.insert("b".into(), [0].into());
        assert_eq!(
            names(&w.run()),
            ["a"],
            "b failed to add it: the move cannot happen"
        );
    }

    #[test]
    fn a_vip_goes_only_to_the_nodes_it_names() {
        let mut c = cfg(&["a", "b", "c"], 1);
        c.vips[0].nodes = vec!["c".into()];
        let mut w = World::new(c, &["a", "b", "c"]);
        assert_eq!(names(&w.run()), ["c"]);
        w.eligible.remove("c");
        assert_eq!(names(&w.run()), ["-"]);
    }

    #[test]
    fn rebalance_moves_one_vip_per_decision() {
        let mut c = cfg(&["a", "b"], 4);
        c.balance = Balance::Rebalance;
        let mut w = World::new(c, &["a", "b"]);
        w.current = vec![Some("a".into()); 4];
        assert_eq!(names(&w.run()), ["b", "a", "a", "a"]);
        w.current[0] = Some("b".into());
        assert_eq!(names(&w.run()), ["b", "b", "a", "a"]);
        w.current[1] = Some("b".into());
        assert_eq!(
            names(&w.run()),
            ["b", "b", "a", "a"],
            "balanced: nothing moves"
        );
        w.cfg.balance = Balance::Place;
        w.current = vec![Some("a".into()); 4];
        assert_eq!(
            names(&w.run()),
            ["a", "a", "a", "a"],
            "place never moves a held VIP"
        );
    }

    #[test]
    fn rebalance_may_move_a_vip_kept_away_from_its_preference() {
        // Mutation survivor (`is_some() && ==` turned `||`): a preference held elsewhere
        // is not "on its preferred node"; such a VIP is the first to move.
        let mut c = cfg(&["a", "b", "c"], 2);
        c.balance = Balance::Rebalance;
        let mut w = World::new(c, &["a", "b", "c"]);
        w.current = vec![Some("a".into()), Some("a".into())];
        w.prefer[0] = Some("c".into());
        let placed = w.run();
        let out = names(&placed);
        assert_eq!(out[1], "a", "the VIP without a preference stays: {out:?}");
        assert_ne!(
            out[0], "a",
            "the one kept away from its preference moves: {out:?}"
        );
    }

    fn world() -> impl Strategy<Value = World> {
        let nodes = ["a", "b", "c", "d"];
        (
            1usize..6,
            proptest::collection::vec(any::<bool>(), 4),
            proptest::collection::vec(0usize..5, 6),
            proptest::collection::vec(0usize..5, 6),
            proptest::collection::vec(0usize..5, 6),
            any::<bool>(),
            0u8..3,
            any::<bool>(),
        )
            .prop_map(move |(n, elig, cur, pre, frc, sticky, bal, primary)| {
                let mut c = cfg(&nodes, n);
                c.sticky = sticky;
                c.balance = [Balance::Place, Balance::Rebalance, Balance::Off][bal as usize];
                let pick = |k: usize| nodes.get(k).map(|s| s.to_string());
                let mut w = World::new(c, &[]);
                w.eligible = nodes
                    .iter()
                    .zip(&elig)
                    .filter(|(_, e)| **e)
                    .map(|(n, _)| n.to_string())
                    .collect();
                w.current = cur[..n].iter().map(|&k| pick(k)).collect();
                w.prefer = pre[..n].iter().map(|&k| pick(k)).collect();
                w.forced = frc[..n].iter().map(|&k| pick(k)).collect();
                w.primary = primary;
                w
            })
    }

    proptest! {
        /// Every VIP gets a holder that may hold it, whenever one exists in a primary
        /// component, and never otherwise.
        #[test]
        fn every_vip_is_held_by_a_node_that_may_hold_it(w in world()) {
            let out = w.run();
            for (i, o) in out.iter().enumerate() {
                let inp = Inputs { cfg: &w.cfg, primary: w.primary, eligible: &w.eligible, failed: &w.failed, current: &w.current, prefer: &w.prefer, forced: &w.forced };
                let any = inp.allowed(i).next().is_some();
                match o {
                    Some(h) => prop_assert!(w.primary && inp.may(i, h)),
                    None => prop_assert!(!w.primary || !any),
                }
            }
        }

        /// No move without cause, no flapping: played as the table plays it — a holder
        /// that should not hold first releases (its VIP has no holder for a step), then
        /// the VIP is placed — the assignment comes to rest, and only `rebalance` takes
        /// more than the one step of releasing and placing.
        #[test]
        fn the_assignment_comes_to_rest(w in world()) {
            let mut w = w;
            w.forced = vec![None; w.current.len()];
            let mut steps = 0;
            loop {
                let next = w.run();
                let mut moved = false;
                for (i, want) in next.into_iter().enumerate() {
                    if w.current[i] != want {
                        moved = true;
                        // Release first, place at the next decision.
                        w.current[i] = if w.current[i].is_some() { None } else { want };
                    }
                }
                if !moved { break; }
                steps += 1;
                prop_assert!(steps <= 16, "still moving after 16 decisions: flapping");
            }
            if w.cfg.balance != Balance::Rebalance {
                prop_assert!(steps <= 2, "{} decisions to rest without rebalancing", steps);
            }
        }

        /// With `place` and `rebalance`, VIPs that go to new holders are spread: no
        /// node gets two more than another that could have taken it.
        #[test]
        fn placement_is_balanced(w in world()) {
            let mut w = w;
            w.current = vec![None; w.current.len()];
            w.forced = vec![None; w.current.len()];
            w.prefer = vec![None; w.current.len()];
            prop_assume!(w.cfg.balance != Balance::Off);
            let out = w.run();
            let mut load: BTreeMap<&str, usize> = w.eligible.iter().map(|e| (e.as_str(), 0)).collect();
            for h in out.iter().flatten() { *load.get_mut(h.as_str()).unwrap() += 1; }
            if w.primary && !w.eligible.is_empty() {
                let max = load.values().max().unwrap();
                let min = load.values().min().unwrap();
                prop_assert!(max - min <= 1, "{:?}", load);
            }
        }
    }
}
