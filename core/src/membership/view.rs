//! Views and the pure rules every daemon applies to them the same way (SPEC.md §9):
//! who monitors whom, who coordinates, and whether a view is primary.

use core::fmt;
use core::net::SocketAddr;
use std::collections::BTreeSet;

/// One daemon: its name, the incarnation it started with (new at every start, so a
/// restarted daemon is never taken for its earlier self), and where it listens.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// The daemon's name, unique in a cluster.
    pub name: String,
    /// Random per start.
    pub incarnation: u64,
    /// Where it meets peers and clients.
    pub addr: SocketAddr,
}

/// A view's identifier: views are ordered by epoch, then by coordinator name and
/// incarnation. Only the named coordinator, in that life, proposes a view under its
/// name, and never twice with one epoch, so an identifier names one member list (a
/// restarted coordinator that counts epochs from the start again does not reuse one).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ViewId {
    /// Grows with every view proposed anywhere the proposer has heard of.
    pub epoch: u64,
    /// The daemon that proposed it.
    pub coordinator: String,
    /// That daemon's incarnation.
    pub incarnation: u64,
}

impl fmt::Display for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.coordinator)
    }
}

/// An installed view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// Its identifier.
    pub id: ViewId,
    /// Its members, by name.
    pub members: Vec<Member>,
    /// Whether it holds a majority of its basis (a primary component).
    pub primary: bool,
    /// The names a view must hold a majority of to be primary: the configured daemons
    /// when the configuration lists any, else the members of the last primary view.
    pub basis: Vec<String>,
    /// The configuration version the members run with.
    pub config_version: u64,
}

impl View {
    /// A daemon alone, primary only if it holds a majority of `basis` (the first daemon
    /// of a cluster formed by flags has itself as basis; one that is joining does not
    /// know the cluster's yet, and is not primary).
    pub fn alone(me: &Member, config_version: u64, basis: Vec<String>) -> Self {
        let members = vec![me.clone()];
        let primary = is_primary(&members, &basis);
        View {
            id: ViewId {
                epoch: 0,
                coordinator: me.name.clone(),
                incarnation: me.incarnation,
            },
            members,
            primary,
            basis,
            config_version,
        }
    }

    /// Whether `name` is a member.
    pub fn contains(&self, name: &str) -> bool {
        self.members
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .is_ok()
    }

    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.members[i])
    }

    /// Member names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.name.as_str())
    }
}

/// Sorts members by name and keeps one per name (the later incarnation given wins).
pub fn normalise(members: &mut Vec<Member>) {
    members.sort_by(|a, b| a.name.cmp(&b.name));
    members.dedup_by(|later, earlier| {
        if later.name == earlier.name {
            *earlier = later.clone();
            true
        } else {
            false
        }
    });
}

/// Whether `members` hold a strict majority of `basis`.
pub fn is_primary(members: &[Member], basis: &[String]) -> bool {
    if basis.is_empty() {
        return false;
    }
    let names: BTreeSet<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let held = basis.iter().filter(|b| names.contains(b.as_str())).count();
    2 * held > basis.len()
}

/// FNV-1a through MurmurHash3's 64-bit finaliser: a fixed hash, so that every daemon
/// orders the ring the same way whatever the names look like. FNV-1a alone keeps names
/// that differ only at their end (a rack's, `rack2-n17`) close together, so a rack's
/// members watched each other and a rack that lost power was found a few members per
/// view change; the finaliser mixes every input bit into every output bit.
fn ring_key(name: &str) -> (u64, &str) {
    (mix(crate::fnv::fnv1a(name.bytes())), name)
}

/// MurmurHash3's `fmix64`.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether the members are sorted by name, without two of one name.
pub fn is_sorted(v: &View) -> bool {
    v.members.windows(2).all(|w| w[0].name < w[1].name)
}

/// How many ring neighbours on each side a daemon watches in a view of `n`:
/// 2 + ⌈log₂ n⌉ (so the load per daemon grows as log n), at most n − 1 in all.
pub fn watch_count(n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let log = usize::BITS - (n - 1).leading_zeros();
    2 + log as usize
}

/// The members `me` exchanges heartbeats with in `view`: its `watch_count` successors and
/// predecessors on the ring (all the others in a small view). The relation is symmetric.
pub fn neighbours<'a>(view: &'a View, me: &str) -> Vec<&'a Member> {
    let n = view.members.len();
    let mut ring: Vec<&Member> = view.members.iter().collect();
    ring.sort_by(|a, b| ring_key(&a.name).cmp(&ring_key(&b.name)));
    let Some(at) = ring.iter().position(|m| m.name == me) else {
        return Vec::new();
    };
    let k = watch_count(n);
    if 2 * k >= n - 1 {
        return ring.into_iter().filter(|m| m.name != me).collect();
    }
    let mut out: Vec<&Member> = Vec::with_capacity(2 * k);
    for d in 1..=k {
        out.push(ring[(at + d) % n]);
        out.push(ring[(at + n - d) % n]);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// The coordinator of `view` as a daemon sees it: the member with the least name among
/// those it does not hold `down`.
pub fn coordinator<'a>(view: &'a View, down: &BTreeSet<String>) -> Option<&'a Member> {
    view.members.iter().find(|m| !down.contains(&m.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(name: &str) -> Member {
        Member {
            name: name.to_string(),
            incarnation: 1,
            addr: SocketAddr::from(([127, 0, 0, 1], 4803)),
        }
    }

    fn view(n: usize) -> View {
        let mut members: Vec<Member> = (0..n).map(|i| member(&format!("d{i:04}"))).collect();
        normalise(&mut members);
        View {
            id: ViewId {
                epoch: 1,
                coordinator: "d0000".into(),
                incarnation: 1,
            },
            primary: true,
            basis: members.iter().map(|m| m.name.clone()).collect(),
            members,
            config_version: 0,
        }
    }

    /// A view id reads `EPOCH.COORDINATOR`: the `E.C` of the client protocol's lines
    /// (SPEC.md §10.2).
    #[test]
    fn a_view_id_reads_epoch_dot_coordinator() {
        let id = ViewId {
            epoch: 12,
            coordinator: "alpha".into(),
            incarnation: 99,
        };
        assert_eq!(id.to_string(), "12.alpha");
    }

    /// Sorted means strictly by name: out of order, or two of one name, is not.
    #[test]
    fn is_sorted_wants_names_strictly_ascending() {
        let mut v = view(3);
        assert!(is_sorted(&v));
        v.members.swap(0, 1);
        assert!(!is_sorted(&v));
        let mut v = view(3);
        v.members[1].name = v.members[0].name.clone();
        assert!(!is_sorted(&v), "two of one name");
    }

    /// The ring is ordered by the names' FNV-1a hash, then by name: a daemon watches
    /// exactly its hash-order neighbours. (Whether those are spread beyond a rack is
    /// another matter: names that differ only at their end hash close together, see
    /// TESTING.md.)
    #[test]
    fn the_ring_is_ordered_by_the_names_hash() {
        let v = view(64);
        let k = watch_count(64);
        let mut ring: Vec<&str> = v.members.iter().map(|m| m.name.as_str()).collect();
        ring.sort_by_key(|n| (mix(crate::fnv::fnv1a(n.bytes())), *n));
        for me in ["d0000", "d0031", "d0063"] {
            let at = ring.iter().position(|n| *n == me).unwrap();
            let mut want: Vec<&str> = (1..=k)
                .flat_map(|d| [ring[(at + d) % 64], ring[(at + 64 - d) % 64]])
                .collect();
            want.sort_unstable();
            want.dedup();
            let got: Vec<&str> = neighbours(&v, me).iter().map(|m| m.name.as_str()).collect();
            assert_eq!(got, want, "{me}");
        }
    }

    /// MurmurHash3's `fmix64` on known values (0 stays 0; the published constants).
    #[test]
    fn the_finaliser_mixes_as_published() {
        assert_eq!(mix(0), 0);
        assert_eq!(mix(1), 0xb456_bcfc_34c2_cb2c);
        assert_ne!(mix(2) >> 32, mix(3) >> 32, "neighbouring inputs spread");
    }

    /// Four racks of 64 daemons named `rackR-nNN`: every daemon is watched by at least
    /// one daemon of another rack, so a rack that loses power is seen from outside it
    /// at once.
    #[test]
    fn every_member_of_a_rack_is_watched_from_outside_it() {
        let names: Vec<String> = (0..4)
            .flat_map(|r| (0..64).map(move |n| format!("rack{r}-n{n:02}")))
            .collect();
        let mut members: Vec<Member> = names.iter().map(|n| member(n)).collect();
        normalise(&mut members);
        let v = View {
            id: ViewId {
                epoch: 1,
                coordinator: members[0].name.clone(),
                incarnation: 1,
            },
            basis: Vec::new(),
            primary: false,
            config_version: 0,
            members,
        };
        let rack = |n: &str| n.split('-').next().unwrap_or("").to_string();
        let mut watched_from_outside: BTreeSet<String> = BTreeSet::new();
        for m in &v.members {
            for n in neighbours(&v, &m.name) {
                if rack(&n.name) != rack(&m.name) {
                    watched_from_outside.insert(n.name.clone());
                }
            }
        }
        let inside_only: Vec<&String> = names
            .iter()
            .filter(|n| !watched_from_outside.contains(*n))
            .collect();
        assert!(
            inside_only.is_empty(),
            "{} daemons watched only by their own rack: {inside_only:?}",
            inside_only.len()
        );
    }

    #[test]
    fn watch_counts_grow_as_log_n() {
        let got: Vec<usize> = [1, 2, 3, 5, 10, 100, 1000, 4096]
            .iter()
            .map(|&n| watch_count(n))
            .collect();
        assert_eq!(got, [0, 3, 4, 5, 6, 9, 12, 14]);
    }

    #[test]
    fn small_views_watch_everyone() {
        let v = view(5);
        assert_eq!(neighbours(&v, "d0002").len(), 4);
    }

    proptest! {
        /// Neighbours are symmetric, never include oneself, and number at most 2k.
        #[test]
        fn neighbourhoods_are_symmetric(n in 2usize..300, pick in 0usize..300) {
            let v = view(n);
            let me = &v.members[pick % n].name;
            let mine = neighbours(&v, me);
            prop_assert!(mine.len() <= 2 * watch_count(n));
            prop_assert!(mine.len() >= (2 * watch_count(n)).min(n - 1));
            for m in mine {
                prop_assert_ne!(&m.name, me);
                prop_assert!(neighbours(&v, &m.name).iter().any(|x| &x.name == me));
            }
        }

        /// A strict majority of the basis, and never two disjoint sets at once.
        #[test]
        fn two_disjoint_parts_are_never_both_primary(n in 1usize..40, side in proptest::collection::vec(any::<bool>(), 40)) {
            let v = view(n);
            let part = |want: bool| -> Vec<Member> {
                v.members.iter().enumerate().filter(|(i, _)| side[*i] == want).map(|(_, m)| m.clone()).collect()
            };
            prop_assert!(!(is_primary(&part(true), &v.basis) && is_primary(&part(false), &v.basis)));
        }
    }

    #[test]
    fn the_coordinator_is_the_least_name_not_down() {
        let v = view(4);
        let down: BTreeSet<String> = ["d0000".to_string()].into();
        assert_eq!(coordinator(&v, &BTreeSet::new()).unwrap().name, "d0000");
        assert_eq!(coordinator(&v, &down).unwrap().name, "d0001");
    }

    #[test]
    fn normalise_keeps_the_latest_incarnation() {
        let mut a = member("a");
        a.incarnation = 2;
        let mut m = vec![member("b"), member("a"), a.clone()];
        normalise(&mut m);
        assert_eq!(m, [a, member("b")]);
    }
}
