//! The logical topology a group floods over (seed 002; SPEC.md §8): how the group's
//! master site computes it from measured links, the checks any site can run on it, the
//! per-origin spanning tree an update follows, and the text protocol of an external
//! `topology-generator` command.
//!
//! Sites are the indexes `0..n` (the caller maps names to indexes); an [`Edge`] is an
//! unordered pair stored as `(a, b)` with `a < b`. The requirement is that every pair of
//! sites has at least [`target_connectivity`]`(n, k)` internally vertex-disjoint paths,
//! so that any `k − 1` failed sites leave the rest connected and flooding still reaches
//! every live site, while cheap (fast) links are preferred and the diameter stays small.
//! [`generate`] builds such a topology; [`is_k_connected`] checks one, whoever built it.
//!
//! Nothing here reads a clock or ambient randomness: [`generate`] draws from the
//! [`Rng`] it is given, so the same seed, sites and costs give the same topology.
//!
//! # The `topology-generator` protocol
//!
//! A group may name a command that computes its topology instead of [`generate`]. The
//! master site writes this text ([`encode_generator_input`]) on the command's standard
//! input:
//!
//! ```text
//! group NAME
//! connectivity K
//! site NAME LAT LONG      one line per site, in index order
//! site NAME - -           a site whose position is not known
//! link A B RTT_US BW      a measured pair of sites
//! end
//! ```
//!
//! * Words are separated by one space and lines end with `\n`. Group and site names are
//!   written as they are: the configuration allows only letters, digits, `_`, `.` and
//!   `-` in them, so they hold no whitespace and never begin with `#`. Fields are
//!   positional, so a site named `-` is still read right.
//! * `K` is the connectivity configured for the group. A generator should give every
//!   pair of the `n` sites `min(K, n − 1)` internally vertex-disjoint paths.
//! * `LAT` and `LONG` are decimal degrees (north and east positive), as written by Rust's
//!   shortest round-trip formatting (`40.5`, `-74`); `-` for both when unknown.
//! * `A` and `B` are site names. `RTT_US` is the measured round-trip time in whole
//!   microseconds and `BW` the measured bandwidth in bytes per second, each `-` when not
//!   measured. A pair of sites with no `link` line has no measurement.
//! * `end` closes the input.
//!
//! The command prints the topology on its standard output, read by
//! [`decode_generator_output`]: one edge per line, the two site names separated by
//! whitespace (`A B`). Blank lines and lines whose first non-blank character is `#` are
//! ignored, as are spaces around the names; an edge given twice, in either order, is one
//! edge. A line naming anything but two known, distinct sites is an error naming the
//! line (1-based), as is output of more than 1,000,000 lines or more than 524,288
//! distinct edges. Whether the edges give the asked connectivity is for the caller to
//! check with [`is_k_connected`].

use core::cmp::Reverse;
use core::fmt::Write as _;
use core::ops::{ControlFlow, Range};
use core::time::Duration;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use thiserror::Error;

use crate::rng::Rng;

/// An undirected edge between two site indexes, always stored with a < b.
pub type Edge = (u32, u32);

/// The most lines [`decode_generator_output`] reads.
const MAX_GENERATOR_LINES: usize = 1_000_000;
/// The most distinct edges [`decode_generator_output`] accepts: 4096 sites with 256
/// neighbours each, far past any useful flooding topology, and a bound on the memory a
/// misbehaving command can make the master hold.
const MAX_GENERATOR_EDGES: usize = 1 << 19;
/// How much of a name an error quotes.
const MAX_QUOTED_NAME: usize = 64;

/// Bytes moved in a link's cost: a large update's worth, so bandwidth counts beside
/// latency.
const COST_TRANSFER_BYTES: u128 = 64 * 1024;
/// Mean Earth radius (IUGG), kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0088;
/// Two thirds of the speed of light (a fibre's signal speed), kilometres per microsecond.
const SIGNAL_KM_PER_US: f64 = 299_792.458 / 1e6 * 2.0 / 3.0;
/// Added to a distance-based estimate for switching and queueing, microseconds.
const ESTIMATE_OVERHEAD_US: u64 = 1_000;
/// A link about which nothing is known, microseconds.
const UNKNOWN_LINK_US: u64 = 100_000;

/// The connectivity actually asked of a group of n sites: min(k, n-1) (0 for n ≤ 1).
pub fn target_connectivity(n: usize, k: u32) -> u32 {
    if n <= 1 {
        return 0;
    }
    u32::try_from(n - 1).map_or(k, |most| k.min(most))
}

/// Cost of a link in microseconds, lower is better: the RTT plus the time to move 64 KiB
/// at the measured bandwidth; with no measurement, from the great-circle distance between
/// the sites' (latitude, longitude) at 2/3 the speed of light, doubled for a round trip,
/// plus 1 ms; with neither, 100 ms.
///
/// The two measurements stand in independently: an unmeasured RTT is estimated from the
/// positions (or taken as 100 ms when either position is unknown), and an unmeasured
/// bandwidth adds nothing. A bandwidth of 0 counts as 1 byte/s. Positions are in degrees;
/// one that is not finite counts as unknown. The sum saturates at `u64::MAX`.
pub fn link_cost(
    rtt: Option<Duration>,
    bandwidth: Option<u64>,
    a: Option<(f64, f64)>,
    b: Option<(f64, f64)>,
) -> u64 {
    let latency = match rtt {
        Some(rtt) => u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX),
        None => match (known_position(a), known_position(b)) {
            (Some(a), Some(b)) => {
                let one_way = great_circle_km(a, b) / SIGNAL_KM_PER_US;
                // At most half the Earth's circumference, so far inside u64.
                (2.0 * one_way).round() as u64 + ESTIMATE_OVERHEAD_US
            }
            _ => UNKNOWN_LINK_US,
        },
    };
    let transfer = bandwidth.map_or(0, |bw| {
        let us = (COST_TRANSFER_BYTES * 1_000_000).div_ceil(u128::from(bw.max(1)));
        u64::try_from(us).unwrap_or(u64::MAX)
    });
    latency.saturating_add(transfer)
}

fn known_position(p: Option<(f64, f64)>) -> Option<(f64, f64)> {
    p.filter(|(lat, long)| lat.is_finite() && long.is_finite())
}

/// Haversine distance, which stays accurate for nearby sites where the spherical law of
/// cosines loses its digits.
fn great_circle_km((lat1, long1): (f64, f64), (lat2, long2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (long2 - long1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    // Rounding can push h a hair outside [0, 1], where asin has no value.
    2.0 * EARTH_RADIUS_KM * h.clamp(0.0, 1.0).sqrt().asin()
}

fn edge(a: u32, b: u32) -> Edge {
    if a < b { (a, b) } else { (b, a) }
}

/// The number of sites as an index type; indexes past `u32::MAX` cannot be named by an
/// [`Edge`], so such sites do not exist for this module.
fn site_count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Edges as stored (a < b < n, no loops), borrowing when the caller's set already is.
fn clean(n: u32, edges: &BTreeSet<Edge>) -> Cow<'_, BTreeSet<Edge>> {
    if edges.iter().all(|&(a, b)| a < b && b < n) {
        Cow::Borrowed(edges)
    } else {
        Cow::Owned(
            edges
                .iter()
                .filter(|&&(a, b)| a != b && a < n && b < n)
                .map(|&(a, b)| edge(a, b))
                .collect(),
        )
    }
}

/// Computes a topology over n sites in which every pair has at least
/// target_connectivity(n, k) internally vertex-disjoint paths, preferring cheap links and
/// keeping the diameter small.
///
/// `cost(a, b)` is asked only with `a < b`, so an asymmetric function is read as its
/// upper triangle. With `k' = target_connectivity(n, k)`:
///
/// * `k' = 0` (n ≤ 1): no edges. `k' = n − 1`: every pair, the only graph that is
///   `(n−1)`-connected.
/// * `k' = 1`: a minimum spanning tree by cost (Prim from site 0; ties to the lower
///   index).
/// * otherwise `⌊k'/2⌋` Hamiltonian cycles and, for odd `k'`, a near-perfect matching.
///   The first cycle is a nearest-neighbour tour by cost from site 0, so most of a site's
///   links are fast; the others, and the matching, are random (drawn from `rng`), which
///   keeps the diameter logarithmic. Each random cycle and the matching are nudged by
///   random swaps away from pairs that are already linked, so the union is `k'`-regular
///   as a rule (for odd `k'` and odd `n`, one site has `k' + 1` links): for `k = 3` and
///   even `n` a 3-regular graph, over which plain flooding sends `n(k−1)+1` payloads.
///   Where that is not yet `k'`-connected, the cheapest repair edges are added (below).
///
/// The repair walks the pairs [`is_k_connected`] would check. For a pair `(s, t)` with
/// fewer than `k'` disjoint paths, the maximum flow leaves a set `A` of sites reachable
/// from `s` in its residual graph and a set `B` of sites that reach `t`; any new edge
/// from `A` to `B` opens an augmenting path, so the cheapest such edge raises the pair's
/// connectivity by one. Adding edges never lowers a pair's connectivity, so pairs already
/// checked stay good, and the loop ends at the latest at the complete graph.
///
/// Time: O(n²) cost calls for the tour (or the tree), which dominate for large groups,
/// and about `n` unit-capacity flows of up to `k'` augmenting paths for the check. In a
/// release build 4096 sites at `k = 3` take about 0.45 s with great-circle costs computed
/// on every call, 0.07 s with a cheap cost function.
pub fn generate(n: usize, k: u32, cost: &dyn Fn(u32, u32) -> u64, rng: &mut Rng) -> BTreeSet<Edge> {
    let n32 = site_count(n);
    let target = target_connectivity(n32 as usize, k);
    let cost = |a: u32, b: u32| {
        let (a, b) = edge(a, b);
        cost(a, b)
    };
    let mut edges = BTreeSet::new();
    if target == 0 {
        return edges;
    }
    if target == n32 - 1 {
        for a in 0..n32 {
            for b in a + 1..n32 {
                edges.insert((a, b));
            }
        }
        return edges;
    }
    if target == 1 {
        return minimum_spanning_tree(n32, &cost);
    }
    add_cycle(&mut edges, &nearest_neighbour_tour(n32, &cost));
    for _ in 1..target / 2 {
        let cycle = random_cycle(n32, rng, &edges);
        add_cycle(&mut edges, &cycle);
    }
    if target % 2 == 1 {
        random_matching(n32, rng, &mut edges, &cost);
    }
    make_k_connected(n32, target, &mut edges, &cost);
    edges
}

/// Prim's algorithm over the complete graph, O(n²) cost calls and no n² memory.
fn minimum_spanning_tree(n: u32, cost: &impl Fn(u32, u32) -> u64) -> BTreeSet<Edge> {
    let mut edges = BTreeSet::new();
    let mut in_tree = vec![false; n as usize];
    // (cost, parent) of the cheapest link from the tree to each outside site.
    let mut best: Vec<(u64, u32)> = (0..n).map(|v| (cost(0, v), 0)).collect();
    in_tree[0] = true;
    for _ in 1..n {
        let Some(v) = (0..n)
            .filter(|&v| !in_tree[v as usize])
            .min_by_key(|&v| (best[v as usize].0, v))
        else {
            break;
        };
        in_tree[v as usize] = true;
        edges.insert(edge(v, best[v as usize].1));
        for w in 0..n {
            if !in_tree[w as usize] {
                let c = cost(v, w);
                if (c, v) < best[w as usize] {
                    best[w as usize] = (c, v);
                }
            }
        }
    }
    edges
}

/// A tour that always moves to the cheapest site not yet visited (ties to the lower
/// index). Not optimal, but it puts most sites next to near ones in O(n²) cost calls.
fn nearest_neighbour_tour(n: u32, cost: &impl Fn(u32, u32) -> u64) -> Vec<u32> {
    let mut tour = Vec::with_capacity(n as usize);
    let mut left: Vec<u32> = (1..n).collect();
    let mut here = 0;
    tour.push(here);
    while !left.is_empty() {
        let mut pick = 0;
        let mut pick_key = (u64::MAX, u32::MAX);
        for (i, &w) in left.iter().enumerate() {
            let key = (cost(here, w), w);
            if key < pick_key {
                pick_key = key;
                pick = i;
            }
        }
        here = left.swap_remove(pick);
        tour.push(here);
    }
    tour
}

fn add_cycle(edges: &mut BTreeSet<Edge>, order: &[u32]) {
    for (i, &a) in order.iter().enumerate() {
        let b = order[(i + 1) % order.len()];
        if a != b {
            edges.insert(edge(a, b));
        }
    }
}

fn shuffled(n: u32, rng: &mut Rng) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n).collect();
    for i in (1..p.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// A random cyclic order of the sites whose consecutive pairs avoid `taken` where random
/// swaps manage it: a pair already linked would merge with the existing edge and leave
/// its two sites a link short.
fn random_cycle(n: u32, rng: &mut Rng, taken: &BTreeSet<Edge>) -> Vec<u32> {
    let mut p = shuffled(n, rng);
    let len = p.len();
    // Edge i joins positions i and i + 1.
    let clash = |p: &[u32], i: usize| taken.contains(&edge(p[i % len], p[(i + 1) % len]));
    let around = |p: &[u32], x: usize, y: usize| {
        let mut at = [(x + len - 1) % len, x, (y + len - 1) % len, y];
        at.sort_unstable();
        let mut count = 0;
        for (j, &i) in at.iter().enumerate() {
            if (j == 0 || at[j - 1] != i) && clash(p, i) {
                count += 1;
            }
        }
        count
    };
    let mut budget = 32 * len;
    'sweep: loop {
        let bad: Vec<usize> = (0..len).filter(|&i| clash(&p, i)).collect();
        if bad.is_empty() {
            break;
        }
        for i in bad {
            if !clash(&p, i) {
                continue;
            }
            let x = (i + 1) % len;
            loop {
                if budget == 0 {
                    break 'sweep;
                }
                budget -= 1;
                let y = rng.below(len as u64) as usize;
                if y == x {
                    continue;
                }
                let before = around(&p, x, y);
                p.swap(x, y);
                // Strict improvement only, so the sweeps cannot cycle.
                if around(&p, x, y) < before {
                    break;
                }
                p.swap(x, y);
            }
        }
    }
    p
}

/// Pairs the sites at random, avoiding linked pairs as [`random_cycle`] does; with n odd
/// the site left over links to its cheapest site not yet linked to it.
fn random_matching(
    n: u32,
    rng: &mut Rng,
    edges: &mut BTreeSet<Edge>,
    cost: &impl Fn(u32, u32) -> u64,
) {
    let mut p = shuffled(n, rng);
    let len = p.len();
    let pairs = len / 2;
    let clash = |p: &[u32], i: usize| i < pairs && edges.contains(&edge(p[2 * i], p[2 * i + 1]));
    let mut budget = 32 * len;
    'sweep: loop {
        let bad: Vec<usize> = (0..pairs).filter(|&i| clash(&p, i)).collect();
        if bad.is_empty() {
            break;
        }
        for i in bad {
            if !clash(&p, i) {
                continue;
            }
            loop {
                if budget == 0 {
                    break 'sweep;
                }
                budget -= 1;
                let y = rng.below(len as u64) as usize;
                if y / 2 == i {
                    continue;
                }
                let count = |p: &[u32]| usize::from(clash(p, i)) + usize::from(clash(p, y / 2));
                let before = count(&p);
                p.swap(2 * i + 1, y);
                if count(&p) < before {
                    break;
                }
                p.swap(2 * i + 1, y);
            }
        }
    }
    let chosen: Vec<Edge> = (0..pairs)
        .filter(|&i| !clash(&p, i))
        .map(|i| edge(p[2 * i], p[2 * i + 1]))
        .collect();
    edges.extend(chosen);
    if len % 2 == 1 {
        let u = p[len - 1];
        let partner = (0..n)
            .filter(|&w| w != u && !edges.contains(&edge(u, w)))
            .min_by_key(|&w| (cost(u, w), w));
        if let Some(w) = partner {
            edges.insert(edge(u, w));
        }
    }
}

/// Adds the cheapest repair edges until the graph is `k`-connected (see [`generate`]).
fn make_k_connected(n: u32, k: u32, edges: &mut BTreeSet<Edge>, cost: &impl Fn(u32, u32) -> u64) {
    let mut g = Csr::new(n, edges);
    let mut flow = Flow::new(&g);
    // Fixed once: the proof behind either plan holds for any choice of its vertices, so
    // a plan chosen on the first graph stays valid as edges are added.
    let plan = Plan::choose(&g, k);
    let mut verified: BTreeSet<Edge> = BTreeSet::new();
    loop {
        // A repair edge at the hub gives it a neighbour and so new pairs to check; pairs
        // already verified stay good, since adding edges only adds paths.
        let todo: Vec<Edge> = plan
            .pairs(&g)
            .into_iter()
            .filter(|p| !verified.contains(p))
            .collect();
        if todo.is_empty() {
            return;
        }
        for (s, t) in todo {
            // Once linked, the pair no longer needs disjoint paths of its own: the proofs
            // before `Csr` ask only for non-adjacent pairs.
            while !g.adjacent(s, t) && flow.local_connectivity(&g, s, t, k) < k {
                let from = flow.source_side(&g, s, t);
                let to = flow.sink_side(&g, s, t);
                let add = cheapest_between(&g, &from, &to, cost).unwrap_or((s, t));
                edges.insert(add);
                g = Csr::new(n, edges);
                flow = Flow::new(&g);
            }
            verified.insert((s, t));
        }
    }
}

/// The cheapest unlinked pair with one site in `from` and the other in `to`.
fn cheapest_between(
    g: &Csr,
    from: &[u32],
    to: &[u32],
    cost: &impl Fn(u32, u32) -> u64,
) -> Option<Edge> {
    let mut best: Option<(u64, Edge)> = None;
    for &x in from {
        for &y in to {
            if x == y || g.adjacent(x, y) {
                continue;
            }
            let e = edge(x, y);
            let key = (cost(e.0, e.1), e);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
    }
    best.map(|(_, e)| e)
}

/// Whether every pair of the n sites has at least k internally vertex-disjoint paths (the
/// graph is k-vertex-connected; a direct edge counts as one path). k = 0 → true.
///
/// With fewer than two sites there is no pair, so any `k` holds; with `2 ≤ n ≤ k` none
/// does, since two sites have at most `n − 1` such paths. Edges with an end outside
/// `0..n` and loops are ignored, and `(b, a)` reads as `(a, b)`. By Whitney's theorem
/// this is the same as: more than `k` sites, and removing any `k − 1` of them leaves the
/// rest connected. About `n` unit-capacity maximum flows of at most `k` augmenting paths
/// each (see `Plan` in the source for which pairs, and why they suffice).
pub fn is_k_connected(n: usize, edges: &BTreeSet<Edge>, k: u32) -> bool {
    if k == 0 || n <= 1 {
        return true;
    }
    let n = site_count(n);
    if n <= k {
        return false;
    }
    let g = Csr::new(n, &clean(n, edges));
    // A site with fewer than k neighbours is cut off by removing them.
    if (0..n).any(|v| g.degree(v) < k as usize) {
        return false;
    }
    let mut flow = Flow::new(&g);
    Plan::choose(&g, k)
        .pairs(&g)
        .into_iter()
        .all(|(s, t)| flow.local_connectivity(&g, s, t, k) >= k)
}

/// Number of connected components after removing the sites in `removed`.
///
/// Removed indexes outside `0..n` are ignored; removing every site leaves 0.
pub fn components_without(n: usize, edges: &BTreeSet<Edge>, removed: &BTreeSet<u32>) -> usize {
    let n = site_count(n);
    let g = Csr::new(n, &clean(n, edges));
    let mut seen = vec![false; n as usize];
    for &r in removed.range(..n) {
        seen[r as usize] = true;
    }
    let mut count = 0;
    let mut stack = Vec::new();
    for v in 0..n {
        if seen[v as usize] {
            continue;
        }
        count += 1;
        seen[v as usize] = true;
        stack.push(v);
        while let Some(x) = stack.pop() {
            for &w in g.neighbours(x) {
                if !seen[w as usize] {
                    seen[w as usize] = true;
                    stack.push(w);
                }
            }
        }
    }
    count
}

/// Longest shortest path in hops (None if disconnected).
///
/// Fewer than two sites give `Some(0)`. One breadth-first search per site: O(n·m).
pub fn diameter(n: usize, edges: &BTreeSet<Edge>) -> Option<u32> {
    let n = site_count(n);
    if n <= 1 {
        return Some(0);
    }
    let g = Csr::new(n, &clean(n, edges));
    let mut dist = vec![u32::MAX; n as usize];
    let mut queue = Vec::with_capacity(n as usize);
    let mut longest = 0;
    for s in 0..n {
        dist.fill(u32::MAX);
        queue.clear();
        dist[s as usize] = 0;
        queue.push(s);
        let mut head = 0;
        while let Some(&x) = queue.get(head) {
            head += 1;
            for &w in g.neighbours(x) {
                if dist[w as usize] == u32::MAX {
                    dist[w as usize] = dist[x as usize] + 1;
                    queue.push(w);
                }
            }
        }
        if queue.len() < n as usize {
            return None;
        }
        longest = longest.max(dist[queue[queue.len() - 1] as usize]);
    }
    Some(longest)
}

/// The shortest-path tree from `root` by cost (Dijkstra), ties broken deterministically
/// (lower total cost, then fewer hops, then lower parent index): `parent[i]` for every site
/// reachable from root (None for root and for unreachable ones). Every site computing it
/// over the same edges and costs gets the same tree.
///
/// Keys may be given in either order; loops and edges with an end outside `0..n` are
/// ignored, and a root outside `0..n` reaches nothing. Costs are summed without overflow.
pub fn shortest_path_tree(n: usize, edges: &BTreeMap<Edge, u64>, root: u32) -> Vec<Option<u32>> {
    let n = site_count(n);
    let mut parent: Vec<Option<u32>> = vec![None; n as usize];
    if root >= n {
        return parent;
    }
    let mut adj: Vec<Vec<(u32, u64)>> = vec![Vec::new(); n as usize];
    for (&(a, b), &c) in edges {
        if a != b && a < n && b < n {
            adj[a as usize].push((b, c));
            adj[b as usize].push((a, c));
        }
    }
    // (total cost, hops): the label Dijkstra minimises. Adding a link adds one hop, so a
    // site's label is strictly above every label on the way to it, even over zero-cost
    // links; hence every site that can be its parent with the best label is final before
    // it is, and keeping the lowest such parent makes the tree independent of the order
    // in which equal labels leave the heap.
    let mut label: Vec<Option<(u128, u32)>> = vec![None; n as usize];
    let mut done = vec![false; n as usize];
    let mut heap = BinaryHeap::new();
    label[root as usize] = Some((0, 0));
    heap.push(Reverse((0u128, 0u32, root)));
    while let Some(Reverse((d, h, v))) = heap.pop() {
        if done[v as usize] {
            continue;
        }
        done[v as usize] = true;
        for &(w, c) in &adj[v as usize] {
            if done[w as usize] {
                continue;
            }
            let offer = (d + u128::from(c), h + 1);
            match label[w as usize] {
                Some(cur) if offer > cur => {}
                Some(cur) if offer == cur => {
                    if parent[w as usize].is_none_or(|p| v < p) {
                        parent[w as usize] = Some(v);
                    }
                }
                _ => {
                    label[w as usize] = Some(offer);
                    parent[w as usize] = Some(v);
                    heap.push(Reverse((offer.0, offer.1, w)));
                }
            }
        }
    }
    parent
}

// ---------------------------------------------------------------------------------------
// Connectivity checking.
//
// Which pairs to check (`Plan`). A graph G with n > k sites is k-connected iff no set of
// fewer than k sites disconnects it (by Whitney's theorem, the same as k internally
// disjoint paths between every pair). By Menger's theorem, for NON-adjacent s and t the
// most internally disjoint s–t paths, κ(s, t), equals the fewest sites whose removal
// separates them. So every pair below must have κ ≥ k if G is k-connected; what needs
// proof is that these pairs suffice. Let C be a separating set with |C| < k, chosen as
// small as possible.
//
// * Anchors v1..vk (the brief's plan): check κ(vi, u) ≥ k for every i and every u ≠ vi
//   not adjacent to vi (which includes the other anchors). Since |C| < k, some vi is
//   outside C; it lies in one component of G − C, and any u in another component is
//   not adjacent to vi (else they would share a component) and is separated from it by
//   C, so κ(vi, u) ≤ |C| < k: a failing checked pair.
//
// * Hub v (Esfahanian and Hakimi's refinement): check κ(v, u) ≥ k for every u not
//   adjacent to v, and κ(x, y) ≥ k for every non-adjacent pair of neighbours x, y of v.
//   If v ∉ C, the argument above applies with vi = v. If v ∈ C: were all of v's
//   neighbours outside C in one component Y of G − C (or none), then C − {v} would still
//   separate any other component X from the rest (v has no neighbour in X, and Y or v
//   remains on the other side), contradicting minimality. So v has neighbours x and y in
//   two different components; they are not adjacent and C separates them: κ(x, y) < k.
//
// Both proofs hold for any choice of anchors or hub, which is what lets `generate` fix
// the plan once and keep it as edges are added: checks are monotone (adding an edge
// never removes a path), and a pair that became adjacent is no longer required.
//
// The hub plan costs (n − 1 − d) + (non-adjacent neighbour pairs) flows for a hub of
// degree d, about n for a sparse topology; the anchor plan costs Σ (n − 1 − deg vi),
// about k·n, but wins on dense graphs where a hub's neighbour pairs would be ~d²/2.
// `Plan::choose` takes the cheaper by those estimates.
//
// How one pair is checked (`Flow`). κ(s, t) for non-adjacent s, t is a maximum flow in the
// split graph: every site v becomes v_in → v_out with capacity 1, every edge {v, w}
// becomes v_out → w_in and w_out → v_in with capacity 1, the source is s_out and the sink
// t_in. An integral flow of value f decomposes into f paths that each pass through a site
// at most once and share no site (every site admits one unit), so f ≤ κ; and the arcs
// v_in → v_out of a separating set C form a cut of capacity |C|, so f ≤ κ ≤ min cut = f
// by max-flow/min-cut. The search stops after k augmenting paths: only "≥ k" matters.
// ---------------------------------------------------------------------------------------

/// Sorted neighbour lists in one array, with for every arc v→w the index of w→v.
struct Csr {
    start: Vec<usize>,
    nbr: Vec<u32>,
    twin: Vec<usize>,
}

impl Csr {
    /// `edges` must hold a < b < n; their sorted order makes every list sorted: a site's
    /// lower neighbours come from edges (a, v) in order of a, all before its edges (v, b).
    fn new(n: u32, edges: &BTreeSet<Edge>) -> Csr {
        let n = n as usize;
        let mut start = vec![0usize; n + 1];
        for &(a, b) in edges {
            start[a as usize + 1] += 1;
            start[b as usize + 1] += 1;
        }
        for v in 0..n {
            start[v + 1] += start[v];
        }
        let mut fill = start.clone();
        let mut nbr = vec![0u32; start[n]];
        for &(a, b) in edges {
            nbr[fill[a as usize]] = b;
            fill[a as usize] += 1;
            nbr[fill[b as usize]] = a;
            fill[b as usize] += 1;
        }
        // Site w's list begins with its lower neighbours in increasing order, so walking
        // v upwards meets each arc v→w (v < w) in the order of v's place in w's list.
        let mut twin = vec![0usize; nbr.len()];
        let mut lower_seen = vec![0usize; n];
        for v in 0..n {
            for p in start[v]..start[v + 1] {
                let w = nbr[p] as usize;
                if w > v {
                    let q = start[w] + lower_seen[w];
                    lower_seen[w] += 1;
                    twin[p] = q;
                    twin[q] = p;
                }
            }
        }
        Csr { start, nbr, twin }
    }

    fn n(&self) -> usize {
        self.start.len() - 1
    }

    fn arcs(&self, v: u32) -> Range<usize> {
        self.start[v as usize]..self.start[v as usize + 1]
    }

    fn neighbours(&self, v: u32) -> &[u32] {
        &self.nbr[self.arcs(v)]
    }

    fn degree(&self, v: u32) -> usize {
        self.arcs(v).len()
    }

    fn adjacent(&self, a: u32, b: u32) -> bool {
        self.neighbours(a).binary_search(&b).is_ok()
    }
}

/// Which pairs' local connectivity decides k-connectivity (proofs above).
enum Plan {
    Hub(u32),
    Anchors(Vec<u32>),
}

impl Plan {
    fn choose(g: &Csr, k: u32) -> Plan {
        let n = g.n() as u64;
        let hub_cost = |d: u64| (n - 1 - d) + d * d.saturating_sub(1) / 2;
        let Some((hub_estimate, hub)) = (0..g.n() as u32)
            .map(|v| (hub_cost(g.degree(v) as u64), v))
            .min()
        else {
            return Plan::Anchors(Vec::new());
        };
        let mut by_degree: Vec<u32> = (0..g.n() as u32).collect();
        by_degree.sort_by_key(|&v| (Reverse(g.degree(v)), v));
        by_degree.truncate(k as usize);
        let anchor_estimate: u64 = by_degree.iter().map(|&v| n - 1 - g.degree(v) as u64).sum();
        if hub_estimate <= anchor_estimate {
            Plan::Hub(hub)
        } else {
            Plan::Anchors(by_degree)
        }
    }

    /// The non-adjacent pairs to check in `g`, as edges (a < b).
    fn pairs(&self, g: &Csr) -> Vec<Edge> {
        let n = g.n() as u32;
        let mut out = Vec::new();
        let from = |v: u32, out: &mut Vec<Edge>| {
            out.extend(
                (0..n)
                    .filter(|&u| u != v && !g.adjacent(v, u))
                    .map(|u| edge(v, u)),
            );
        };
        match self {
            Plan::Hub(v) => {
                from(*v, &mut out);
                let around = g.neighbours(*v);
                for (i, &x) in around.iter().enumerate() {
                    for &y in &around[i + 1..] {
                        if !g.adjacent(x, y) {
                            out.push((x, y));
                        }
                    }
                }
            }
            Plan::Anchors(anchors) => {
                for &v in anchors {
                    from(v, &mut out);
                }
                // Pairs of anchors come up twice.
                out.sort_unstable();
                out.dedup();
            }
        }
        out
    }
}

/// A state of the split graph: site v's `in` half is 2v, its `out` half 2v + 1.
fn half_in(v: u32) -> u32 {
    2 * v
}

fn half_out(v: u32) -> u32 {
    2 * v + 1
}

fn is_in_half(state: u32) -> bool {
    state & 1 == 0
}

const NO_ARC: usize = usize::MAX;

/// A unit-capacity flow on the split graph of one [`Csr`], with its search buffers kept
/// between pairs so that checking n pairs allocates once.
///
/// Residual arcs, for flow `f`: `v_in → v_out` if no flow passes through v, `v_out → v_in`
/// if it does; `v_out → w_in` if arc v→w carries none, `v_in → w_out` if arc w→v carries
/// some (cancelling it). s_in and t_out are barred, so paths neither re-enter s nor leave
/// t.
struct Flow {
    /// Flow on arc v_out → w_in, by the index of v→w in the Csr.
    on_arc: Vec<bool>,
    set_arcs: Vec<usize>,
    /// Flow on v_in → v_out.
    through: Vec<bool>,
    set_through: Vec<u32>,
    /// `stamp` marks the states of the current search: reached from the source
    /// (`ahead`) or reaching the sink (`behind`).
    ahead: Vec<u32>,
    behind: Vec<u32>,
    stamp: u32,
    /// The state before each forward state, and the Csr arc between them (NO_ARC for a
    /// site's own arc); likewise the state after each backward one.
    pred: Vec<u32>,
    pred_arc: Vec<usize>,
    succ: Vec<u32>,
    succ_arc: Vec<usize>,
    queue_ahead: Vec<u32>,
    queue_behind: Vec<u32>,
}

impl Flow {
    fn new(g: &Csr) -> Flow {
        let states = 2 * g.n();
        Flow {
            on_arc: vec![false; g.nbr.len()],
            set_arcs: Vec::new(),
            through: vec![false; g.n()],
            set_through: Vec::new(),
            ahead: vec![0; states],
            behind: vec![0; states],
            stamp: 0,
            pred: vec![0; states],
            pred_arc: vec![NO_ARC; states],
            succ: vec![0; states],
            succ_arc: vec![NO_ARC; states],
            queue_ahead: Vec::with_capacity(states),
            queue_behind: Vec::with_capacity(states),
        }
    }

    fn clear(&mut self) {
        for &p in &self.set_arcs {
            self.on_arc[p] = false;
        }
        self.set_arcs.clear();
        for &v in &self.set_through {
            self.through[v as usize] = false;
        }
        self.set_through.clear();
    }

    fn next_stamp(&mut self) {
        if self.stamp == u32::MAX {
            self.ahead.fill(0);
            self.behind.fill(0);
            self.stamp = 0;
        }
        self.stamp += 1;
    }

    /// min(k, κ(s, t)) for non-adjacent s ≠ t. When it is below k, the flow left behind is
    /// maximum (for [`Flow::source_side`] and [`Flow::sink_side`]).
    fn local_connectivity(&mut self, g: &Csr, s: u32, t: u32, k: u32) -> u32 {
        self.clear();
        let mut paths = 0;
        while paths < k && self.augment(g, s, t) {
            paths += 1;
        }
        paths
    }

    /// Finds an augmenting path and applies it. The search runs from both ends, a whole
    /// level at a time on the side with the smaller frontier, until the two meet: in an
    /// expander each side then explores about √n states instead of most of the graph,
    /// which is what makes checking ~n pairs cheap. If either side runs out of states
    /// before they meet, that side's whole reachable set misses the other's end, so there
    /// is no augmenting path.
    fn augment(&mut self, g: &Csr, s: u32, t: u32) -> bool {
        self.next_stamp();
        let (source, sink) = (half_out(s), half_in(t));
        let barred = [half_in(s), half_out(t)];
        self.queue_ahead.clear();
        self.queue_behind.clear();
        self.ahead[source as usize] = self.stamp;
        self.queue_ahead.push(source);
        self.behind[sink as usize] = self.stamp;
        self.queue_behind.push(sink);
        let (mut head_ahead, mut head_behind) = (0, 0);
        loop {
            let width_ahead = self.queue_ahead.len() - head_ahead;
            let width_behind = self.queue_behind.len() - head_behind;
            if width_ahead == 0 || width_behind == 0 {
                return false;
            }
            let mut meet = None;
            if width_ahead <= width_behind {
                let end = self.queue_ahead.len();
                while head_ahead < end && meet.is_none() {
                    let x = self.queue_ahead[head_ahead];
                    head_ahead += 1;
                    if let ControlFlow::Break(m) = self.expand_ahead(g, x, barred) {
                        meet = Some(m);
                    }
                }
            } else {
                let end = self.queue_behind.len();
                while head_behind < end && meet.is_none() {
                    let y = self.queue_behind[head_behind];
                    head_behind += 1;
                    if let ControlFlow::Break(m) = self.expand_behind(g, y, barred) {
                        meet = Some(m);
                    }
                }
            }
            if let Some(m) = meet {
                self.apply(source, sink, m);
                return true;
            }
        }
    }

    /// Follows the residual arcs out of `x`; breaks at a state the backward search holds.
    fn expand_ahead(&mut self, g: &Csr, x: u32, barred: [u32; 2]) -> ControlFlow<u32> {
        let v = x / 2;
        if is_in_half(x) {
            if !self.through[v as usize] {
                self.reach_ahead(half_out(v), x, NO_ARC, barred)?;
            }
            for p in g.arcs(v) {
                let back = g.twin[p];
                if self.on_arc[back] {
                    self.reach_ahead(half_out(g.nbr[p]), x, back, barred)?;
                }
            }
        } else {
            if self.through[v as usize] {
                self.reach_ahead(half_in(v), x, NO_ARC, barred)?;
            }
            for p in g.arcs(v) {
                if !self.on_arc[p] {
                    self.reach_ahead(half_in(g.nbr[p]), x, p, barred)?;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Follows the residual arcs into `y` backwards; breaks at a state the forward search
    /// holds.
    fn expand_behind(&mut self, g: &Csr, y: u32, barred: [u32; 2]) -> ControlFlow<u32> {
        let v = y / 2;
        if !is_in_half(y) {
            if !self.through[v as usize] {
                self.reach_behind(half_in(v), y, NO_ARC, barred)?;
            }
            for p in g.arcs(v) {
                if self.on_arc[p] {
                    self.reach_behind(half_in(g.nbr[p]), y, p, barred)?;
                }
            }
        } else {
            if self.through[v as usize] {
                self.reach_behind(half_out(v), y, NO_ARC, barred)?;
            }
            for p in g.arcs(v) {
                let into = g.twin[p];
                if !self.on_arc[into] {
                    self.reach_behind(half_out(g.nbr[p]), y, into, barred)?;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Takes `y` into the forward search from `x`; breaks if the searches meet there.
    fn reach_ahead(&mut self, y: u32, x: u32, arc: usize, barred: [u32; 2]) -> ControlFlow<u32> {
        let i = y as usize;
        if y == barred[0] || y == barred[1] || self.ahead[i] == self.stamp {
            return ControlFlow::Continue(());
        }
        self.ahead[i] = self.stamp;
        self.pred[i] = x;
        self.pred_arc[i] = arc;
        self.queue_ahead.push(y);
        if self.behind[i] == self.stamp {
            return ControlFlow::Break(y);
        }
        ControlFlow::Continue(())
    }

    /// Takes `x` into the backward search as a state before `y`; breaks if the searches
    /// meet there.
    fn reach_behind(&mut self, x: u32, y: u32, arc: usize, barred: [u32; 2]) -> ControlFlow<u32> {
        let i = x as usize;
        if x == barred[0] || x == barred[1] || self.behind[i] == self.stamp {
            return ControlFlow::Continue(());
        }
        self.behind[i] = self.stamp;
        self.succ[i] = y;
        self.succ_arc[i] = arc;
        self.queue_behind.push(x);
        if self.ahead[i] == self.stamp {
            return ControlFlow::Break(x);
        }
        ControlFlow::Continue(())
    }

    fn apply(&mut self, source: u32, sink: u32, meet: u32) {
        let mut y = meet;
        while y != source {
            let x = self.pred[y as usize];
            self.step(x, y, self.pred_arc[y as usize]);
            y = x;
        }
        let mut x = meet;
        while x != sink {
            let y = self.succ[x as usize];
            self.step(x, y, self.succ_arc[x as usize]);
            x = y;
        }
    }

    fn step(&mut self, x: u32, y: u32, arc: usize) {
        if x / 2 == y / 2 {
            let v = x / 2;
            // in → out takes the site's unit; out → in gives it back.
            self.through[v as usize] = is_in_half(x);
            self.set_through.push(v);
        } else {
            // out → in along an arc sends flow; in → out cancels the flow of the arc.
            self.on_arc[arc] = !is_in_half(x);
            self.set_arcs.push(arc);
        }
    }

    /// Sites whose `out` half s_out reaches in the residual graph (after a maximum flow).
    fn source_side(&mut self, g: &Csr, s: u32, t: u32) -> Vec<u32> {
        self.next_stamp();
        let source = half_out(s);
        let barred = [half_in(s), half_out(t)];
        self.queue_ahead.clear();
        self.ahead[source as usize] = self.stamp;
        self.queue_ahead.push(source);
        let mut head = 0;
        // Nothing is marked behind in this stamp, so the search never stops early.
        while let Some(&x) = self.queue_ahead.get(head) {
            head += 1;
            let _ = self.expand_ahead(g, x, barred);
        }
        (0..g.n() as u32)
            .filter(|&v| self.ahead[half_out(v) as usize] == self.stamp)
            .collect()
    }

    /// Sites whose `in` half reaches t_in in the residual graph (after a maximum flow).
    fn sink_side(&mut self, g: &Csr, s: u32, t: u32) -> Vec<u32> {
        self.next_stamp();
        let sink = half_in(t);
        let barred = [half_in(s), half_out(t)];
        self.queue_behind.clear();
        self.behind[sink as usize] = self.stamp;
        self.queue_behind.push(sink);
        let mut head = 0;
        while let Some(&y) = self.queue_behind.get(head) {
            head += 1;
            let _ = self.expand_behind(g, y, barred);
        }
        (0..g.n() as u32)
            .filter(|&v| self.behind[half_in(v) as usize] == self.stamp)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The external generator's text.
// ---------------------------------------------------------------------------------------

/// The input the external `topology-generator` command reads on stdin, and the parser of
/// what it prints: one site of the group, in index order.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorSite {
    /// The site's name (no whitespace, not beginning with `#`).
    pub name: String,
    /// (latitude, longitude) in degrees, if known.
    pub position: Option<(f64, f64)>,
}

/// A measured pair of sites for the `topology-generator` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratorLink {
    /// One site's index.
    pub a: u32,
    /// The other site's index.
    pub b: u32,
    /// Measured round-trip time, if any.
    pub rtt: Option<Duration>,
    /// Measured bandwidth in bytes per second, if any.
    pub bandwidth: Option<u64>,
}

/// Writes the `topology-generator` command's input (format in the module documentation).
///
/// `k` is written as configured. A link whose ends are not both sites, or are the same
/// site, is left out; a position that is not finite is written as unknown; an RTT is
/// written in whole microseconds, rounded down.
pub fn encode_generator_input(
    group: &str,
    k: u32,
    sites: &[GeneratorSite],
    links: &[GeneratorLink],
) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "group {group}");
    let _ = writeln!(out, "connectivity {k}");
    for site in sites {
        match known_position(site.position) {
            Some((lat, long)) => {
                let _ = writeln!(out, "site {} {lat} {long}", site.name);
            }
            None => {
                let _ = writeln!(out, "site {} - -", site.name);
            }
        }
    }
    for link in links {
        let (Some(a), Some(b)) = (sites.get(link.a as usize), sites.get(link.b as usize)) else {
            continue;
        };
        if link.a == link.b {
            continue;
        }
        let rtt = link
            .rtt
            .map_or_else(|| "-".to_owned(), |d| d.as_micros().to_string());
        let bw = link
            .bandwidth
            .map_or_else(|| "-".to_owned(), |b| b.to_string());
        let _ = writeln!(out, "link {} {} {rtt} {bw}", a.name, b.name);
    }
    out.push_str("end\n");
    out
}

/// Why a `topology-generator` command's output is not a topology. Every variant names
/// the 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GeneratorError {
    /// A line that is not blank, not a comment and not two words.
    #[error("line {line}: expected two site names")]
    Malformed {
        /// The line.
        line: u32,
    },
    /// A word that names no site of the group.
    #[error("line {line}: no site named '{name}'")]
    UnknownSite {
        /// The line.
        line: u32,
        /// The word, cut to 64 characters.
        name: String,
    },
    /// An edge from a site to itself.
    #[error("line {line}: an edge from site '{name}' to itself")]
    SelfLoop {
        /// The line.
        line: u32,
        /// The site, cut to 64 characters.
        name: String,
    },
    /// More than 1,000,000 lines.
    #[error("line {line}: more than 1000000 lines")]
    TooManyLines {
        /// The first line past the limit.
        line: u32,
    },
    /// More than 524,288 distinct edges.
    #[error("line {line}: more than 524288 edges")]
    TooManyEdges {
        /// The line of the first edge past the limit.
        line: u32,
    },
}

impl GeneratorError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> u32 {
        match self {
            GeneratorError::Malformed { line }
            | GeneratorError::UnknownSite { line, .. }
            | GeneratorError::SelfLoop { line, .. }
            | GeneratorError::TooManyLines { line }
            | GeneratorError::TooManyEdges { line } => *line,
        }
    }
}

fn quoted(name: &str) -> String {
    name.chars().take(MAX_QUOTED_NAME).collect()
}

/// Reads what the `topology-generator` command printed: edges between the sites
/// `names[i]` (format in the module documentation).
///
/// Names match exactly (case matters); if two sites share a name the first is meant.
/// Lines end with LF or CRLF.
pub fn decode_generator_output(
    text: &str,
    names: &[String],
) -> Result<BTreeSet<Edge>, GeneratorError> {
    let mut index: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, name) in names.iter().enumerate().take(u32::MAX as usize) {
        index.entry(name.as_str()).or_insert(i as u32);
    }
    let mut edges = BTreeSet::new();
    for (i, raw) in text.lines().enumerate() {
        // i < 1,000,001 wherever a line number is used, so it fits.
        let line = (i + 1) as u32;
        if i >= MAX_GENERATOR_LINES {
            return Err(GeneratorError::TooManyLines { line });
        }
        let body = raw.trim();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let mut words = body.split_whitespace();
        let (Some(a), Some(b), None) = (words.next(), words.next(), words.next()) else {
            return Err(GeneratorError::Malformed { line });
        };
        let site = |word: &str| {
            index
                .get(word)
                .copied()
                .ok_or_else(|| GeneratorError::UnknownSite {
                    line,
                    name: quoted(word),
                })
        };
        let (ia, ib) = (site(a)?, site(b)?);
        if ia == ib {
            return Err(GeneratorError::SelfLoop {
                line,
                name: quoted(a),
            });
        }
        if edges.insert(edge(ia, ib)) && edges.len() > MAX_GENERATOR_EDGES {
            return Err(GeneratorError::TooManyEdges { line });
        }
    }
    Ok(edges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, derive_seed, splitmix64};
    use proptest::prelude::*;

    /// A repeatable cost in 1..=spread for each pair (asked with a < b).
    fn random_cost(seed: u64, spread: u64) -> impl Fn(u32, u32) -> u64 {
        move |a, b| {
            let mut s = derive_seed(seed, (u64::from(a) << 32) | u64::from(b));
            splitmix64(&mut s) % spread + 1
        }
    }

    fn random_positions(n: usize, seed: u64) -> Vec<(f64, f64)> {
        let mut rng = Rng::from_seed(seed);
        (0..n)
            .map(|_| {
                // Uniform on the sphere.
                let lat = (2.0 * rng.unit() - 1.0).asin().to_degrees();
                (lat, 360.0 * rng.unit() - 180.0)
            })
            .collect()
    }

    fn random_graph(n: usize, p: f64, seed: u64) -> BTreeSet<Edge> {
        let mut rng = Rng::from_seed(seed);
        let mut edges = BTreeSet::new();
        for a in 0..n as u32 {
            for b in a + 1..n as u32 {
                if rng.chance(p) {
                    edges.insert((a, b));
                }
            }
        }
        edges
    }

    /// Connected after removing the sites in `removed` (a bit mask), by union-find, so as
    /// not to lean on the code under test.
    fn connected_without(n: usize, edges: &BTreeSet<Edge>, removed: u32) -> bool {
        fn root(up: &mut [usize], mut x: usize) -> usize {
            while up[x] != x {
                up[x] = up[up[x]];
                x = up[x];
            }
            x
        }
        let mut up: Vec<usize> = (0..n).collect();
        let gone = |v: u32| removed >> v & 1 == 1;
        for &(a, b) in edges {
            if !gone(a) && !gone(b) {
                let (ra, rb) = (root(&mut up, a as usize), root(&mut up, b as usize));
                up[ra] = rb;
            }
        }
        let mut roots = BTreeSet::new();
        for v in 0..n {
            if !gone(v as u32) {
                roots.insert(root(&mut up, v));
            }
        }
        roots.len() <= 1
    }

    /// Whether s and t are still linked after removing the sites in `removed` (a mask).
    fn linked_without(n: usize, edges: &BTreeSet<Edge>, removed: u32, s: u32, t: u32) -> bool {
        let mut seen = vec![false; n];
        let mut stack = vec![s];
        seen[s as usize] = true;
        while let Some(x) = stack.pop() {
            for &(a, b) in edges {
                let y = if a == x {
                    b
                } else if b == x {
                    a
                } else {
                    continue;
                };
                if removed >> y & 1 == 0 && !seen[y as usize] {
                    seen[y as usize] = true;
                    stack.push(y);
                }
            }
        }
        seen[t as usize]
    }

    /// κ(s, t) by Menger: the fewest other sites whose removal separates s from t
    /// (`u32::MAX` when none does, as for adjacent sites).
    fn brute_local(n: usize, edges: &BTreeSet<Edge>, s: u32, t: u32) -> u32 {
        (0u32..1 << n)
            .filter(|m| m >> s & 1 == 0 && m >> t & 1 == 0)
            .filter(|&m| !linked_without(n, edges, m, s, t))
            .map(u32::count_ones)
            .min()
            .unwrap_or(u32::MAX)
    }

    /// k-connectivity by definition: more than k sites, and no set of fewer than k sites
    /// disconnects the rest (n ≤ 20).
    fn brute_k_connected(n: usize, edges: &BTreeSet<Edge>, k: u32) -> bool {
        if k == 0 || n <= 1 {
            return true;
        }
        if n <= k as usize {
            return false;
        }
        (0u32..1 << n)
            .filter(|m| m.count_ones() < k)
            .all(|m| connected_without(n, edges, m))
    }

    fn degrees(n: usize, edges: &BTreeSet<Edge>) -> Vec<usize> {
        let mut d = vec![0; n];
        for &(a, b) in edges {
            d[a as usize] += 1;
            d[b as usize] += 1;
        }
        d
    }

    #[test]
    fn target_connectivity_examples() {
        assert_eq!(target_connectivity(0, 3), 0);
        assert_eq!(target_connectivity(1, 3), 0);
        assert_eq!(target_connectivity(2, 3), 1);
        assert_eq!(target_connectivity(4, 3), 3);
        assert_eq!(target_connectivity(100, 3), 3);
        assert_eq!(target_connectivity(100, 0), 0);
    }

    #[test]
    fn link_cost_examples() {
        // 10 ms plus 64 KiB at 1 MB/s (65.536 ms).
        let rtt = Some(Duration::from_millis(10));
        assert_eq!(link_cost(rtt, Some(1_000_000), None, None), 75_536);
        assert_eq!(link_cost(rtt, None, None, None), 10_000);
        // 64 KiB at 3 B/s rounds up.
        assert_eq!(
            link_cost(Some(Duration::ZERO), Some(3), None, None),
            21_845_333_334
        );
        assert_eq!(
            link_cost(Some(Duration::ZERO), Some(0), None, None),
            65_536_000_000
        );
        // Measured RTT wins over positions.
        let (a, b) = (Some((0.0, 0.0)), Some((0.0, 180.0)));
        assert_eq!(link_cost(rtt, None, a, b), 10_000);
        // Nothing known.
        assert_eq!(link_cost(None, None, None, None), 100_000);
        assert_eq!(link_cost(None, None, a, None), 100_000);
        assert_eq!(link_cost(None, None, Some((f64::NAN, 0.0)), b), 100_000);
        assert_eq!(link_cost(None, Some(1 << 30), None, None), 100_000 + 62);
        // The same place: the 1 ms allowance only.
        assert_eq!(link_cost(None, None, a, a), 1_000);
        // Antipodes: half the circumference (20,015 km) there and back at 2/3 c.
        let half = std::f64::consts::PI * EARTH_RADIUS_KM;
        let want = (2.0 * half / SIGNAL_KM_PER_US).round() as u64 + 1_000;
        assert_eq!(link_cost(None, None, a, b), want);
        assert!((201_000..201_500).contains(&want), "{want}");
        // A quarter of the equator, either way round; latitude works as longitude does.
        let quarter = link_cost(None, None, a, Some((0.0, 90.0)));
        assert!((101_000..101_300).contains(&quarter), "{quarter}");
        assert_eq!(link_cost(None, None, Some((0.0, 90.0)), a), quarter);
        assert_eq!(link_cost(None, None, a, Some((90.0, 0.0))), quarter);
        // New York to London: about 5,570 km, so about 56.7 ms.
        let ny_london = link_cost(
            None,
            None,
            Some((40.7128, -74.006)),
            Some((51.5074, -0.1278)),
        );
        assert!((56_000..57_500).contains(&ny_london), "{ny_london}");
        // Position estimate plus transfer time.
        assert_eq!(link_cost(None, Some(65_536), a, a), 1_000 + 1_000_000);
        assert_eq!(
            link_cost(Some(Duration::MAX), Some(1), None, None),
            u64::MAX
        );
    }

    #[test]
    fn small_cases() {
        let mut rng = Rng::from_seed(1);
        let cost = random_cost(1, 100);
        for k in 0..4 {
            assert!(generate(0, k, &cost, &mut rng).is_empty());
            assert!(generate(1, k, &cost, &mut rng).is_empty());
        }
        assert!(generate(5, 0, &cost, &mut rng).is_empty());
        assert_eq!(generate(2, 3, &cost, &mut rng), BTreeSet::from([(0, 1)]));
        // k ≥ n − 1: the complete graph.
        assert_eq!(generate(4, 3, &cost, &mut rng).len(), 6);
        assert_eq!(generate(5, 9, &cost, &mut rng).len(), 10);
        // k = 1: a spanning tree, and the cheapest one.
        let line = |a: u32, b: u32| u64::from(b - a) * 10 + u64::from(a);
        let tree = generate(6, 1, &line, &mut rng);
        assert_eq!(tree, (0..5).map(|a| (a, a + 1)).collect());
        // k = 2: one cycle, by nearest neighbours.
        let cycle = generate(6, 2, &line, &mut rng);
        assert_eq!(cycle.len(), 6);
        assert!(degrees(6, &cycle).iter().all(|&d| d == 2));
        assert!(cycle.contains(&(0, 5)));
    }

    #[test]
    fn is_k_connected_examples() {
        let cycle: BTreeSet<Edge> = (0..6).map(|a| edge(a, (a + 1) % 6)).collect();
        assert!(is_k_connected(6, &cycle, 2));
        assert!(!is_k_connected(6, &cycle, 3));
        let complete: BTreeSet<Edge> = (0..5)
            .flat_map(|a| (a + 1..5).map(move |b| (a, b)))
            .collect();
        assert!(is_k_connected(5, &complete, 4));
        assert!(!is_k_connected(5, &complete, 5));
        assert!(is_k_connected(0, &BTreeSet::new(), 3));
        assert!(is_k_connected(1, &BTreeSet::new(), 3));
        assert!(!is_k_connected(2, &BTreeSet::new(), 1));
        assert!(is_k_connected(2, &BTreeSet::from([(0, 1)]), 1));
        assert!(!is_k_connected(2, &BTreeSet::from([(0, 1)]), 2));
        assert!(is_k_connected(7, &BTreeSet::new(), 0));
        // Reversed, looping and out-of-range edges are read leniently.
        let odd = BTreeSet::from([(1, 0), (2, 1), (0, 2), (2, 2), (0, 9)]);
        assert!(is_k_connected(3, &odd, 2));
        // Two triangles sharing one site: connected, but that site is a cut.
        let bowtie = BTreeSet::from([(0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)]);
        assert!(is_k_connected(5, &bowtie, 1));
        assert!(!is_k_connected(5, &bowtie, 2));
        // K_{3,3}: 3-connected, and its hub's neighbours are pairwise non-adjacent.
        let k33: BTreeSet<Edge> = (0..3).flat_map(|a| (3..6).map(move |b| (a, b))).collect();
        assert!(is_k_connected(6, &k33, 3));
        assert!(!is_k_connected(6, &k33, 4));
    }

    #[test]
    fn dense_graphs_use_anchors() {
        // K_{40,40}: a hub would have 780 neighbour pairs to check, anchors about 117.
        let k: BTreeSet<Edge> = (0..40)
            .flat_map(|a| (40..80).map(move |b| (a, b)))
            .collect();
        let g = Csr::new(80, &k);
        assert!(matches!(Plan::choose(&g, 3), Plan::Anchors(_)));
        assert!(is_k_connected(80, &k, 40));
        assert!(!is_k_connected(80, &k, 41));
        let cycle: BTreeSet<Edge> = (0..80).map(|a| edge(a, (a + 1) % 80)).collect();
        assert!(matches!(
            Plan::choose(&Csr::new(80, &cycle), 3),
            Plan::Hub(_)
        ));
    }

    #[test]
    fn components_examples() {
        let path: BTreeSet<Edge> = (0..4).map(|a| (a, a + 1)).collect();
        assert_eq!(components_without(5, &path, &BTreeSet::new()), 1);
        assert_eq!(components_without(5, &path, &BTreeSet::from([2])), 2);
        assert_eq!(components_without(5, &path, &BTreeSet::from([1, 3])), 3);
        assert_eq!(
            components_without(5, &path, &BTreeSet::from([0, 1, 2, 3, 4, 99])),
            0
        );
        assert_eq!(components_without(7, &path, &BTreeSet::from([99])), 3);
        assert_eq!(components_without(0, &path, &BTreeSet::new()), 0);
    }

    #[test]
    fn diameter_examples() {
        let path: BTreeSet<Edge> = (0..4).map(|a| (a, a + 1)).collect();
        assert_eq!(diameter(5, &path), Some(4));
        assert_eq!(diameter(6, &path), None);
        let cycle: BTreeSet<Edge> = (0..7).map(|a| edge(a, (a + 1) % 7)).collect();
        assert_eq!(diameter(7, &cycle), Some(3));
        assert_eq!(diameter(1, &BTreeSet::new()), Some(0));
        assert_eq!(diameter(0, &BTreeSet::new()), Some(0));
        assert_eq!(diameter(2, &BTreeSet::new()), None);
    }

    #[test]
    fn generate_is_repeatable() {
        let cost = random_cost(7, 50);
        for (n, k) in [(30, 3), (31, 4), (40, 5), (25, 1), (12, 2)] {
            let a = generate(n, k, &cost, &mut Rng::from_seed(9));
            let b = generate(n, k, &cost, &mut Rng::from_seed(9));
            assert_eq!(a, b);
        }
        // Other seeds draw other random cycles.
        let a = generate(60, 4, &cost, &mut Rng::from_seed(1));
        let b = generate(60, 4, &cost, &mut Rng::from_seed(2));
        assert_ne!(a, b);
    }

    #[test]
    fn cubic_when_the_random_construction_suffices() {
        let (mut cases, mut regular, mut extra_total) = (0, 0, 0);
        for n in [8usize, 10, 16, 30, 64, 100, 250, 500] {
            for seed in 0..12 {
                let cost = random_cost(seed ^ 0x5eed, 1000);
                let edges = generate(n, 3, &cost, &mut Rng::from_seed(seed));
                assert!(is_k_connected(n, &edges, 3));
                let extra = edges.len() - 3 * n / 2;
                assert!(extra <= 3, "n={n} seed={seed}: {extra} extra edges");
                cases += 1;
                extra_total += extra;
                if extra == 0 {
                    regular += 1;
                    assert!(degrees(n, &edges).iter().all(|&d| d == 3));
                }
            }
        }
        println!("k=3: {regular} of {cases} cubic, {extra_total} extra edges in all");
        assert!(regular * 10 >= cases * 8, "{regular} of {cases}");
        // Odd n: one site carries the extra link.
        for seed in 0..5 {
            let edges = generate(101, 3, &random_cost(seed, 1000), &mut Rng::from_seed(seed));
            assert!(edges.len() - 152 <= 3);
        }
        // Even k: 2k/2 cycles, k-regular as a rule.
        let mut four = 0;
        for seed in 0..10 {
            let edges = generate(200, 4, &random_cost(seed, 1000), &mut Rng::from_seed(seed));
            four += usize::from(edges.len() == 400);
        }
        assert!(four >= 8, "{four} of 10 4-regular");
    }

    #[test]
    fn diameter_stays_small() {
        let n = 1000;
        let pos = random_positions(n, 3);
        let cost =
            |a: u32, b: u32| link_cost(None, None, Some(pos[a as usize]), Some(pos[b as usize]));
        let edges = generate(n, 3, &cost, &mut Rng::from_seed(3));
        assert!(is_k_connected(n, &edges, 3));
        let d = diameter(n, &edges).unwrap();
        println!("n=1000 k=3: {} edges, diameter {d}", edges.len());
        assert!(d <= 20, "diameter {d}");
    }

    #[test]
    fn prefers_fast_links() {
        // Sites in four regions far apart: most links stay inside a region.
        let n = 200;
        let region = |v: u32| v % 4;
        let cost = |a: u32, b: u32| {
            if region(a) == region(b) {
                1_000
            } else {
                80_000
            }
        };
        let edges = generate(n, 3, &cost, &mut Rng::from_seed(5));
        let inside = edges
            .iter()
            .filter(|&&(a, b)| region(a) == region(b))
            .count();
        // The tour's n links all but 4 stay inside; the random matching mostly crosses.
        assert!(inside >= n - 4, "{inside} of {}", edges.len());
    }

    #[test]
    fn generator_input_example() {
        let sites = vec![
            GeneratorSite {
                name: "master".into(),
                position: Some((40.5, -74.0)),
            },
            GeneratorSite {
                name: "inferno".into(),
                position: None,
            },
            GeneratorSite {
                name: "valhalla".into(),
                position: Some((f64::NAN, 1.0)),
            },
        ];
        let links = vec![
            GeneratorLink {
                a: 0,
                b: 1,
                rtt: Some(Duration::from_micros(12_345) + Duration::from_nanos(999)),
                bandwidth: Some(1_000_000),
            },
            GeneratorLink {
                a: 2,
                b: 0,
                rtt: None,
                bandwidth: None,
            },
            GeneratorLink {
                a: 0,
                b: 3,
                rtt: None,
                bandwidth: None,
            },
            GeneratorLink {
                a: 1,
                b: 1,
                rtt: None,
                bandwidth: None,
            },
        ];
        assert_eq!(
            encode_generator_input("mirror-1", 3, &sites, &links),
            "group mirror-1\n\
             connectivity 3\n\
             site master 40.5 -74\n\
             site inferno - -\n\
             site valhalla - -\n\
             link master inferno 12345 1000000\n\
             link valhalla master - -\n\
             end\n"
        );
        assert_eq!(
            encode_generator_input("g", 0, &[], &[]),
            "group g\nconnectivity 0\nend\n"
        );
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn generator_output_examples() {
        let names = names(&["a", "b", "c", "d"]);
        let text = "# a comment\n\na b\r\n  c   a  \n\tb\tc\nb a\n   # indented comment\nd c";
        assert_eq!(
            decode_generator_output(text, &names),
            Ok(BTreeSet::from([(0, 1), (0, 2), (1, 2), (2, 3)]))
        );
        assert_eq!(decode_generator_output("", &names), Ok(BTreeSet::new()));
        assert_eq!(decode_generator_output("\n\n#\n", &[]), Ok(BTreeSet::new()));
        // The first of two equal names is meant.
        let twice = self::names(&["x", "y", "x"]);
        assert_eq!(
            decode_generator_output("y x", &twice),
            Ok(BTreeSet::from([(0, 1)]))
        );
    }

    #[test]
    fn generator_output_errors() {
        let names = names(&["a", "b", "c"]);
        let decode = |t: &str| decode_generator_output(t, &names);
        assert_eq!(
            decode("a b\na\n"),
            Err(GeneratorError::Malformed { line: 2 })
        );
        assert_eq!(decode("a b c"), Err(GeneratorError::Malformed { line: 1 }));
        assert_eq!(
            decode("\n\na b # not a comment"),
            Err(GeneratorError::Malformed { line: 3 })
        );
        assert_eq!(
            decode("a b\n#\nA b"),
            Err(GeneratorError::UnknownSite {
                line: 3,
                name: "A".into()
            })
        );
        let long = "z".repeat(500);
        assert_eq!(
            decode(&format!("a {long}")),
            Err(GeneratorError::UnknownSite {
                line: 1,
                name: "z".repeat(64)
            })
        );
        assert_eq!(
            decode("a b\nb b"),
            Err(GeneratorError::SelfLoop {
                line: 2,
                name: "b".into()
            })
        );
        let e = decode("\n".repeat(1_000_001).as_str()).unwrap_err();
        assert_eq!(e, GeneratorError::TooManyLines { line: 1_000_001 });
        assert_eq!(decode("\n".repeat(1_000_000).as_str()), Ok(BTreeSet::new()));
        for e in [
            GeneratorError::Malformed { line: 7 },
            GeneratorError::UnknownSite {
                line: 7,
                name: "x".into(),
            },
            GeneratorError::SelfLoop {
                line: 7,
                name: "x".into(),
            },
            GeneratorError::TooManyLines { line: 7 },
            GeneratorError::TooManyEdges { line: 7 },
        ] {
            assert_eq!(e.line(), 7);
            assert!(e.to_string().starts_with("line 7: "), "{e}");
        }
    }

    #[test]
    fn generator_output_edge_limit() {
        let many: Vec<String> = (0..1100).map(|i| format!("s{i}")).collect();
        let mut text = String::new();
        let mut lines = 0u32;
        'fill: for a in 0..1100 {
            for b in a + 1..1100 {
                let _ = writeln!(text, "s{a} s{b}");
                lines += 1;
                if lines == MAX_GENERATOR_EDGES as u32 {
                    break 'fill;
                }
            }
        }
        // A repeat is no new edge.
        text.push_str("s1 s0\n");
        assert_eq!(
            decode_generator_output(&text, &many).map(|e| e.len()),
            Ok(MAX_GENERATOR_EDGES)
        );
        text.push_str("s1099 s1098\n");
        assert_eq!(
            decode_generator_output(&text, &many),
            Err(GeneratorError::TooManyEdges {
                line: MAX_GENERATOR_EDGES as u32 + 2
            })
        );
    }

    #[test]
    fn generated_topologies_round_trip_through_the_generator_text() {
        let cost = random_cost(4, 100);
        let edges = generate(20, 3, &cost, &mut Rng::from_seed(4));
        let names: Vec<String> = (0..20).map(|i| format!("site-{i}")).collect();
        let text: String = edges
            .iter()
            .map(|&(a, b)| format!("{} {}\n", names[b as usize], names[a as usize]))
            .collect();
        assert_eq!(decode_generator_output(&text, &names), Ok(edges));
    }

    /// Labels (cost, hops) by Bellman-Ford.
    fn bellman_ford(n: usize, edges: &BTreeMap<Edge, u64>, root: u32) -> Vec<Option<(u128, u32)>> {
        let mut label = vec![None; n];
        label[root as usize] = Some((0u128, 0u32));
        for _ in 0..n {
            for (&(a, b), &c) in edges {
                for (x, y) in [(a, b), (b, a)] {
                    if let Some((d, h)) = label[x as usize] {
                        let offer = (d + u128::from(c), h + 1);
                        if label[y as usize].is_none_or(|cur| offer < cur) {
                            label[y as usize] = Some(offer);
                        }
                    }
                }
            }
        }
        label
    }

    #[test]
    fn shortest_path_tree_examples() {
        // A square with a cheap diagonal path; ties go to fewer hops, then lower parent.
        let edges = BTreeMap::from([
            ((0, 1), 1),
            ((1, 2), 1),
            ((0, 3), 2),
            ((2, 3), 0),
            ((0, 2), 2),
        ]);
        assert_eq!(
            shortest_path_tree(5, &edges, 0),
            vec![None, Some(0), Some(0), Some(0), None]
        );
        assert_eq!(shortest_path_tree(5, &edges, 7), vec![None; 5]);
        // Keys in either order, loops ignored.
        let odd = BTreeMap::from([((1, 0), 5), ((1, 1), 0), ((2, 1), 5), ((0, 9), 1)]);
        assert_eq!(shortest_path_tree(3, &odd, 2), vec![Some(1), Some(2), None]);
        // Huge costs add up without overflow.
        let big = BTreeMap::from([((0, 1), u64::MAX), ((1, 2), u64::MAX), ((0, 2), u64::MAX)]);
        assert_eq!(shortest_path_tree(3, &big, 0), vec![None, Some(0), Some(0)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn generated_topologies_reach_the_target(
            n in 1usize..40,
            k in 1u32..=6,
            spread in prop_oneof![Just(1u64), Just(3), Just(1000), Just(u64::MAX - 1)],
            cost_seed: u64,
            seed: u64,
        ) {
            let cost = random_cost(cost_seed, spread);
            let edges = generate(n, k, &cost, &mut Rng::from_seed(seed));
            let target = target_connectivity(n, k);
            for &(a, b) in &edges {
                prop_assert!(a < b && (b as usize) < n, "edge ({}, {})", a, b);
            }
            prop_assert!(is_k_connected(n, &edges, target));
            if n <= 12 {
                prop_assert!(brute_k_connected(n, &edges, target));
            }
            // Never more than the repairs need: each site has about `target` links.
            if target >= 2 && (target as usize) < n - 1 {
                prop_assert!(edges.len() <= n * target as usize / 2 + n, "{} edges", edges.len());
            }
        }

        #[test]
        fn any_target_minus_one_failures_leave_the_rest_connected(
            n in 2usize..15,
            k in 1u32..=5,
            seed: u64,
        ) {
            let edges = generate(n, k, &random_cost(seed, 100), &mut Rng::from_seed(seed));
            let target = target_connectivity(n, k);
            for mask in 0u32..1 << n {
                if mask.count_ones() + 1 == target {
                    let removed: BTreeSet<u32> =
                        (0..n as u32).filter(|v| mask >> v & 1 == 1).collect();
                    prop_assert_eq!(components_without(n, &edges, &removed), 1);
                }
            }
        }

        #[test]
        fn random_failures_in_larger_groups(n in 40usize..150, k in 2u32..=5, seed: u64) {
            let edges = generate(n, k, &random_cost(seed, 1000), &mut Rng::from_seed(seed));
            let mut rng = Rng::from_seed(seed ^ 1);
            for _ in 0..20 {
                let mut removed = BTreeSet::new();
                while removed.len() + 1 < k as usize {
                    removed.insert(rng.below(n as u64) as u32);
                }
                prop_assert_eq!(components_without(n, &edges, &removed), 1);
            }
        }

        #[test]
        fn is_k_connected_matches_brute_force(
            n in 0usize..=10,
            p in prop_oneof![0.0f64..1.0, 0.6f64..1.0],
            seed: u64,
        ) {
            let edges = random_graph(n, p, seed);
            for k in 0..=7 {
                prop_assert_eq!(
                    is_k_connected(n, &edges, k),
                    brute_k_connected(n, &edges, k),
                    "n={} k={} edges={:?}", n, k, edges
                );
            }
        }

        #[test]
        fn local_connectivity_matches_menger(
            n in 2usize..=9,
            p in 0.1f64..0.9,
            seed: u64,
            k in 1u32..=8,
            pick: (u32, u32),
        ) {
            let n32 = n as u32;
            let s = pick.0 % n32;
            let t = (s + 1 + pick.1 % (n32 - 1)) % n32;
            let mut edges = random_graph(n, p, seed);
            edges.remove(&edge(s, t));
            let g = Csr::new(n32, &edges);
            let mut flow = Flow::new(&g);
            let before = brute_local(n, &edges, s, t);
            let got = flow.local_connectivity(&g, s, t, k);
            prop_assert_eq!(got, before.min(k));
            if got < k {
                // The repair's claim: any new edge from the source side to the sink side
                // adds a disjoint path.
                let from = flow.source_side(&g, s, t);
                let to = flow.sink_side(&g, s, t);
                prop_assert!(from.contains(&s) && to.contains(&t));
                for &x in &from {
                    for &y in &to {
                        if x == y || g.adjacent(x, y) {
                            continue;
                        }
                        let mut more = edges.clone();
                        more.insert(edge(x, y));
                        prop_assert!(brute_local(n, &more, s, t) > before, "edge {}-{}", x, y);
                    }
                }
            }
        }

        #[test]
        fn components_match_union_find(n in 0usize..=12, p in 0.0f64..0.6, seed: u64, mask: u32) {
            let edges = random_graph(n, p, seed);
            let mask = mask & ((1u32 << n) - 1);
            let removed: BTreeSet<u32> = (0..n as u32).filter(|v| mask >> v & 1 == 1).collect();
            prop_assert_eq!(
                components_without(n, &edges, &removed) <= 1,
                connected_without(n, &edges, mask)
            );
        }

        #[test]
        fn shortest_path_tree_is_a_minimal_tree(
            n in 1usize..25,
            p in 0.05f64..0.7,
            seed: u64,
            spread in prop_oneof![Just(1u64), Just(4), Just(1000)],
            root_pick: u32,
        ) {
            let mut rng = Rng::from_seed(seed);
            let edges: BTreeMap<Edge, u64> = random_graph(n, p, seed)
                .into_iter()
                // Zero costs included: ties in cost must fall to hops.
                .map(|e| (e, rng.below(spread)))
                .collect();
            let root = root_pick % n as u32;
            let parent = shortest_path_tree(n, &edges, root);
            prop_assert_eq!(&parent, &shortest_path_tree(n, &edges, root));
            let label = bellman_ford(n, &edges, root);
            let cost_of = |a: u32, b: u32| edges[&edge(a, b)];
            for v in 0..n as u32 {
                let Some(want) = label[v as usize] else {
                    prop_assert_eq!(parent[v as usize], None);
                    continue;
                };
                if v == root {
                    prop_assert_eq!(parent[v as usize], None);
                    continue;
                }
                // Walking up reaches the root, and the path costs the minimum.
                let (mut x, mut total, mut hops) = (v, 0u128, 0u32);
                while x != root {
                    let Some(up) = parent[x as usize] else {
                        return Err(TestCaseError::fail(format!("{x} has no parent")));
                    };
                    total += u128::from(cost_of(up, x));
                    hops += 1;
                    prop_assert!(hops as usize <= n, "a cycle of parents");
                    x = up;
                }
                prop_assert_eq!((total, hops), want);
                // The parent is the lowest site that offers the best label.
                let best_parent = (0..n as u32)
                    .filter(|&u| edges.contains_key(&edge(u, v)) && u != v)
                    .filter(|&u| {
                        label[u as usize]
                            .is_some_and(|(d, h)| (d + u128::from(cost_of(u, v)), h + 1) == want)
                    })
                    .min();
                prop_assert_eq!(parent[v as usize], best_parent);
            }
        }

        #[test]
        fn decode_never_panics(
            text in ".{0,200}",
            list in proptest::collection::vec("[a-c#]{0,2}", 0..5),
        ) {
            match decode_generator_output(&text, &list) {
                Ok(edges) => {
                    for &(a, b) in &edges {
                        prop_assert!(a < b && (b as usize) < list.len());
                    }
                }
                Err(e) => prop_assert!(e.line() >= 1),
            }
        }

        #[test]
        fn decode_reads_edge_lines(
            lines in proptest::collection::vec(
                prop_oneof![
                    (0u32..5, 0u32..5, "[ \t]{0,2}")
                        .prop_map(|(a, b, pad)| format!("{pad}s{a}{pad} s{b}")),
                    Just(String::new()),
                    Just("# s0 s1".to_owned()),
                ],
                0..30,
            ),
        ) {
            let names: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
            let text = lines.join("\n");
            let got = decode_generator_output(&text, &names);
            let mut want = BTreeSet::new();
            let mut first_loop = None;
            for (i, l) in lines.iter().enumerate() {
                if l.trim_start().starts_with('#') {
                    continue;
                }
                let words: Vec<u32> =
                    l.split_whitespace().map(|w| w[1..].parse().unwrap()).collect();
                if let [a, b] = words[..] {
                    if a == b {
                        first_loop = Some(i as u32 + 1);
                        break;
                    }
                    want.insert(edge(a, b));
                }
            }
            match first_loop {
                Some(line) => {
                    let is_loop =
                        matches!(got, Err(GeneratorError::SelfLoop { line: l, .. }) if l == line);
                    prop_assert!(is_loop, "{:?}", got);
                }
                None => prop_assert_eq!(got, Ok(want)),
            }
        }
    }
}
