//! Service groups (seed 004; SPEC.md §10.7): the replicated table of cluster ports and
//! recovery barriers. Every daemon runs the same steps on the same items in the same
//! order (the groups' agreed order), so every daemon holds the same table at the same
//! place; nothing here is decided by one daemon alone.
//!
//! A service `S` is the hidden group `#svc:S`: binding is joining it, releasing or
//! disconnecting is leaving it. Its control messages (`claim`, `done`) are messages of
//! that group sent by daemons.

use std::collections::{BTreeMap, BTreeSet};

use crate::membership::view::ViewId;

/// The hidden group of service `s`.
pub fn service_group(s: &str) -> String {
    format!("#svc:{s}")
}

/// The service whose hidden group is `g`.
pub fn service_of(g: &str) -> Option<&str> {
    g.strip_prefix("#svc:")
}

/// Services waiting for a port whose range is remembered, at most.
const MAX_RANGES: usize = 100_000;

/// The sender name daemons use for control messages.
pub const CONTROL_SENDER: &str = "#daemon";

/// A place in the agreed order: where a port was handed out, or a barrier began.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The view.
    pub view: ViewId,
    /// The item's number there (0: the view's start).
    pub seq: u64,
}

impl core::fmt::Display for Place {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.view, self.seq)
    }
}

/// A port held by a service, and when it was first handed out (older wins a conflict).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The port.
    pub port: u16,
    /// Where it was handed out.
    pub since: Place,
    /// The range it came from (a move after a conflict stays in it).
    pub range: (u16, u16),
}

/// A recovery barrier: members are the nodes hosting the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Barrier {
    /// Its name (the place of the change that began it).
    pub event: String,
    /// The nodes that must say done.
    pub members: BTreeSet<String>,
    /// Those that did.
    pub done: BTreeSet<String>,
}

/// What a step changed, for the layer that tells clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The service got (or changed) its port.
    Port {
        /// The service.
        service: String,
        /// The port.
        port: u16,
    },
    /// The service has members and no free port was left for it.
    Exhausted(String),
    /// The service's last member left: its port is free.
    Freed(String),
    /// A barrier began.
    Begun(String),
    /// Every member said done.
    Finished {
        /// The service.
        service: String,
        /// The barrier.
        event: String,
    },
}

/// The replicated service table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Services {
    lo: u16,
    hi: u16,
    /// The nodes hosting each service's members (services with members only).
    nodes: BTreeMap<String, BTreeSet<String>>,
    held: BTreeMap<String, Held>,
    by_port: BTreeMap<u16, String>,
    barriers: BTreeMap<String, Barrier>,
    /// Services that had members when the view began and wait for a claim.
    awaiting: BTreeSet<String>,
    /// The range a service without a port takes it from (the binding daemon's).
    ranges: BTreeMap<String, (u16, u16)>,
    /// Planted bug (canary): a conflict after a heal goes to the service of this daemon's
    /// own agent.
    canary: bool,
}

/// A control message of a service group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// A daemon says what port it told its members (0: none) and since when, and the
    /// range it hands ports from.
    Claim {
        /// The port.
        port: u16,
        /// Where it was handed out.
        since: Place,
        /// The claiming daemon's range.
        range: (u16, u16),
    },
    /// Sent just before a daemon's agent joins: the range to hand the service's port
    /// from if it has none (so daemons configured with different ranges still agree).
    Range(u16, u16),
    /// A node's member finished recovery for this barrier.
    Done(String),
}

impl Control {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Control::Claim { port, since, range } => format!(
                "claim {port} {} {} {:x} {} {} {}",
                since.view.epoch,
                since.view.coordinator,
                since.view.incarnation,
                since.seq,
                range.0,
                range.1
            )
            .into_bytes(),
            Control::Range(lo, hi) => format!("range {lo} {hi}").into_bytes(),
            Control::Done(e) => format!("done {e}").into_bytes(),
        }
    }

    /// Reads a control message; `None` for anything else (ignored and counted).
    pub fn decode(b: &[u8]) -> Option<Control> {
        let s = core::str::from_utf8(b).ok()?;
        let mut w = s.split(' ');
        let c = match w.next()? {
            "claim" => Control::Claim {
                port: w.next()?.parse().ok()?,
                since: Place {
                    view: ViewId {
                        epoch: w.next()?.parse().ok()?,
                        coordinator: w.next()?.to_string(),
                        incarnation: u64::from_str_radix(w.next()?, 16).ok()?,
                    },
                    seq: w.next()?.parse().ok()?,
                },
                range: valid_range(w.next()?.parse().ok()?, w.next()?.parse().ok()?)?,
            },
            "range" => {
                let (lo, hi) = valid_range(w.next()?.parse().ok()?, w.next()?.parse().ok()?)?;
                Control::Range(lo, hi)
            }
            "done" => Control::Done(w.next()?.to_string()),
            _ => return None,
        };
        w.next().is_none().then_some(c)
    }
}

fn valid_range(lo: u16, hi: u16) -> Option<(u16, u16)> {
    (lo > 0 && lo <= hi).then_some((lo, hi))
}

impl Services {
    /// Ports `lo..=hi`.
    pub fn new(lo: u16, hi: u16, canary: bool) -> Self {
        Services {
            lo,
            hi,
            canary,
            ..Services::default()
        }
    }

    /// The range.
    pub fn range(&self) -> (u16, u16) {
        (self.lo, self.hi)
    }

    /// The port of `s`, if it has one.
    pub fn port(&self, s: &str) -> Option<&Held> {
        self.held.get(s)
    }

    /// The nodes hosting `s`.
    pub fn nodes(&self, s: &str) -> Option<&BTreeSet<String>> {
        self.nodes.get(s)
    }

    /// Every service with members: (name, port, nodes).
    pub fn list(&self) -> impl Iterator<Item = (&String, Option<u16>, &BTreeSet<String>)> {
        self.nodes
            .iter()
            .map(|(s, n)| (s, self.held.get(s).map(|h| h.port), n))
    }

    /// The port table (service → port), for checks that compare daemons.
    pub fn ports(&self) -> BTreeMap<String, u16> {
        self.held.iter().map(|(s, h)| (s.clone(), h.port)).collect()
    }

    /// The barrier of `s` still waiting, if any.
    pub fn barrier(&self, s: &str) -> Option<&Barrier> {
        self.barriers.get(s)
    }

    /// Every barrier still waiting.
    pub fn barriers(&self) -> impl Iterator<Item = (&String, &Barrier)> {
        self.barriers.iter()
    }

    /// The range `s` takes a port from: the binding daemon's, else the one it held.
    fn range_of(&self, s: &str) -> (u16, u16) {
        self.ranges
            .get(s)
            .copied()
            .or_else(|| self.held.get(s).map(|h| h.range))
            .unwrap_or((self.lo, self.hi))
    }

    fn free_port(&self, range: (u16, u16)) -> Option<u16> {
        (range.0..=range.1).find(|p| !self.by_port.contains_key(p))
    }

    /// The range the binding daemon hands ports from, for `s` if it has no port yet.
    pub fn range_for(&mut self, s: &str, range: (u16, u16)) {
        // Bounded: one entry per service bound, and at most this many waiting.
        if !self.held.contains_key(s) && self.ranges.len() < MAX_RANGES {
            self.ranges.insert(s.to_string(), range);
        }
    }

    fn give(&mut self, s: &str, port: u16, since: Place, range: (u16, u16)) {
        self.ranges.remove(s);
        if let Some(old) = self.held.remove(s) {
            self.by_port.remove(&old.port);
        }
        self.by_port.insert(port, s.to_string());
        self.held.insert(s.to_string(), Held { port, since, range });
    }

    fn take(&mut self, s: &str) {
        if let Some(old) = self.held.remove(s) {
            self.by_port.remove(&old.port);
        }
    }

    /// A view change finished: the table starts again from the claims every daemon
    /// sends for its own members (daemons coming from different views held different
    /// tables). The membership of every service follows at once (the view's start,
    /// place 0); those services wait for a claim instead of taking a new port.
    pub fn reset(&mut self) {
        self.nodes.clear();
        self.held.clear();
        self.by_port.clear();
        self.barriers.clear();
        self.awaiting.clear();
        self.ranges.clear();
    }

    /// The nodes hosting `s` are now `nodes` (from the group's agreed membership), at
    /// `place`.
    pub fn members(&mut self, s: &str, nodes: BTreeSet<String>, place: &Place) -> Vec<Change> {
        let mut out = Vec::new();
        if nodes.is_empty() {
            self.nodes.remove(s);
            self.barriers.remove(s);
            self.awaiting.remove(s);
            self.ranges.remove(s);
            if self.held.contains_key(s) {
                self.take(s);
                out.push(Change::Freed(s.to_string()));
            }
            return out;
        }
        if place.seq == 0 {
            self.awaiting.insert(s.to_string());
        }
        let changed = self.nodes.get(s) != Some(&nodes);
        self.nodes.insert(s.to_string(), nodes.clone());
        let waiting = self.awaiting.contains(s);
        if !self.held.contains_key(s) && !waiting {
            self.fresh(s, place, &mut out);
        }
        if changed {
            self.barriers.insert(
                s.to_string(),
                Barrier {
                    event: place.to_string(),
                    members: nodes,
                    done: BTreeSet::new(),
                },
            );
            if !waiting {
                out.push(Change::Begun(s.to_string()));
            }
        }
        out
    }

    /// A daemon's claim for `s`, at `place`.
    pub fn claim(
        &mut self,
        s: &str,
        (port, since, range): (u16, Place, (u16, u16)),
        place: &Place,
        mine: bool,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        if !self.awaiting.remove(s) {
            // No members, settled by an earlier claim (first claim wins), or not in
            // question.
            return out;
        }
        self.ranges.insert(s.to_string(), range);
        // The port was agreed once; the range only matters for a new one.
        let usable = port != 0;
        let holder = self.by_port.get(&port).cloned();
        match holder {
            _ if !usable => self.fresh(s, place, &mut out),
            None => {
                self.give(s, port, since, range);
                out.push(Change::Port {
                    service: s.to_string(),
                    port,
                });
            }
            Some(other) => {
                let theirs = self.held[&other].since.clone();
                // Planted bug (canary): a daemon favours the service its own agent holds,
                // so daemons decide one conflict differently.
                let older = if self.canary && mine {
                    true
                } else {
                    since < theirs
                };
                if older {
                    // The older binding keeps the port; the younger moves (within
                    // its own range).
                    let theirs_range = self.held[&other].range;
                    self.take(&other);
                    self.ranges.insert(other.clone(), theirs_range);
                    self.give(s, port, since, range);
                    out.push(Change::Port {
                        service: s.to_string(),
                        port,
                    });
                    self.fresh(&other, place, &mut out);
                } else {
                    self.fresh(s, place, &mut out);
                }
            }
        }
        if self.barriers.contains_key(s) {
            out.push(Change::Begun(s.to_string()));
        }
        out
    }

    fn fresh(&mut self, s: &str, place: &Place, out: &mut Vec<Change>) {
        let range = self.range_of(s);
        match self.free_port(range) {
            Some(p) => {
                self.give(s, p, place.clone(), range);
                out.push(Change::Port {
                    service: s.to_string(),
                    port: p,
                });
            }
            None => out.push(Change::Exhausted(s.to_string())),
        }
    }

    /// `node` said done for `event` of `s`.
    pub fn done(&mut self, s: &str, event: &str, node: &str) -> Vec<Change> {
        let Some(b) = self.barriers.get_mut(s) else {
            return Vec::new();
        };
        if b.event != event || !b.members.contains(node) {
            return Vec::new();
        }
        b.done.insert(node.to_string());
        if b.done.len() < b.members.len() {
            return Vec::new();
        }
        self.barriers.remove(s);
        vec![Change::Finished {
            service: s.to_string(),
            event: event.to_string(),
        }]
    }

    /// Consistency: ports in range, one service per port, indexes agree, held ports and
    /// barriers only for services with members.
    pub fn check(&self) -> Result<(), String> {
        if self.by_port.len() != self.held.len() {
            return Err(format!(
                "{} services hold ports but {} ports are taken",
                self.held.len(),
                self.by_port.len()
            ));
        }
        for (s, h) in &self.held {
            if h.port == 0 {
                return Err(format!("{s} holds port 0"));
            }
            if self.by_port.get(&h.port) != Some(s) {
                return Err(format!("port {} is held by {s} and someone else", h.port));
            }
            if !self.nodes.contains_key(s) {
                return Err(format!("{s} holds a port without members"));
            }
            if self.awaiting.contains(s) {
                return Err(format!("{s} holds a port and still waits for a claim"));
            }
        }
        for (s, b) in &self.barriers {
            if self.nodes.get(s) != Some(&b.members) {
                return Err(format!("the barrier of {s} waits for other members"));
            }
            if !b.done.is_subset(&b.members) || b.done.len() == b.members.len() {
                return Err(format!("the barrier of {s} is finished but kept"));
            }
        }
        if !self.awaiting.iter().all(|s| self.nodes.contains_key(s)) {
            return Err("a service without members waits for a claim".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(epoch: u64, seq: u64) -> Place {
        Place {
            view: ViewId {
                epoch,
                coordinator: "a".into(),
                incarnation: 1,
            },
            seq,
        }
    }

    fn nodes(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ports_are_handed_out_freed_and_run_out() {
        let mut s = Services::new(7000, 7001, false);
        let c = s.members("web", nodes(&["a"]), &place(1, 1));
        assert!(c.contains(&Change::Port {
            service: "web".into(),
            port: 7000
        }));
        s.members("db", nodes(&["b"]), &place(1, 2));
        assert_eq!(s.port("db").unwrap().port, 7001);
        let c = s.members("mail", nodes(&["a"]), &place(1, 3));
        assert!(c.contains(&Change::Exhausted("mail".into())));
        assert!(s.port("mail").is_none());
        s.members("mail", nodes(&[]), &place(1, 4));
        let c = s.members("web", nodes(&[]), &place(1, 5));
        assert_eq!(c, vec![Change::Freed("web".into())]);
        s.members("mail", nodes(&["c"]), &place(1, 6));
        assert_eq!(s.port("mail").unwrap().port, 7000);
        s.check().unwrap();
    }

    #[test]
    fn after_a_heal_the_older_binding_keeps_the_port() {
        // Two sides each handed out 7000: web (older) and db.
        let mut s = Services::new(7000, 7009, false);
        s.reset();
        s.members("db", nodes(&["b"]), &place(5, 0));
        s.members("web", nodes(&["a"]), &place(5, 0));
        assert!(s.port("db").is_none(), "no port before a claim");
        s.claim("db", (7000, place(4, 9), (7000, 7009)), &place(5, 1), false);
        assert_eq!(s.port("db").unwrap().port, 7000);
        let c = s.claim(
            "web",
            (7000, place(3, 2), (7000, 7009)),
            &place(5, 2),
            false,
        );
        assert_eq!(s.port("web").unwrap().port, 7000);
        assert_eq!(s.port("db").unwrap().port, 7001);
        assert!(c.contains(&Change::Port {
            service: "db".into(),
            port: 7001
        }));
        // A later claim for a settled service changes nothing.
        assert!(
            s.claim(
                "web",
                (7005, place(1, 1), (7000, 7009)),
                &place(5, 3),
                false
            )
            .is_empty()
        );
        s.check().unwrap();
    }

    #[test]
    fn the_canary_decides_a_conflict_by_who_asks() {
        let run = |mine: bool| {
            let mut s = Services::new(7000, 7009, true);
            s.members("web", nodes(&["a"]), &place(5, 0));
            s.members("db", nodes(&["b"]), &place(5, 0));
            s.claim(
                "web",
                (7000, place(3, 2), (7000, 7009)),
                &place(5, 1),
                false,
            );
            s.claim("db", (7000, place(4, 9), (7000, 7009)), &place(5, 2), mine);
            s.check().unwrap();
            s.ports()
        };
        assert_ne!(run(true), run(false), "two daemons, two tables");
    }

    #[test]
    fn a_barrier_finishes_when_every_member_is_done() {
        let mut s = Services::new(7000, 7009, false);
        s.members("web", nodes(&["a", "b"]), &place(1, 1));
        let ev = s.barrier("web").unwrap().event.clone();
        assert_eq!(ev, "1.a:1");
        assert!(s.done("web", &ev, "a").is_empty());
        assert!(s.done("web", "0.a:0", "b").is_empty(), "stale barrier");
        assert!(s.done("web", &ev, "z").is_empty(), "not a member");
        assert_eq!(
            s.done("web", &ev, "b"),
            vec![Change::Finished {
                service: "web".into(),
                event: ev
            }]
        );
        assert!(s.barrier("web").is_none());
        // A change supersedes a barrier in progress.
        s.members("web", nodes(&["a"]), &place(1, 2));
        s.members("web", nodes(&["a", "c"]), &place(1, 3));
        assert_eq!(s.barrier("web").unwrap().event, "1.a:3");
        s.check().unwrap();
    }

    /// One view of agreed steps: the services with members at its start (each with
    /// its nodes), the claims in the order delivered (service, port, age), then later
    /// steps: (service, nodes) membership changes and dones.
    type Round = (
        Vec<(u8, Vec<u8>)>,
        Vec<(u8, u16, u64)>,
        Vec<(u8, Vec<u8>, u8)>,
    );

    fn round() -> impl proptest::strategy::Strategy<Value = Round> {
        use proptest::prelude::*;
        let nodes = || proptest::collection::vec(0u8..4, 1..3);
        (
            proptest::collection::vec((0u8..4, nodes()), 0..4),
            proptest::collection::vec(
                (0u8..4, prop_oneof![Just(0u16), 7000u16..7003], 0u64..20),
                0..6,
            ),
            proptest::collection::vec(
                (0u8..4, proptest::collection::vec(0u8..4, 0..3), 0u8..4),
                0..6,
            ),
        )
    }

    /// Runs the rounds on two daemons that differ only in which services their own
    /// agents hold; returns both tables after every step.
    fn run_rounds(rounds: &[Round], canary: bool) -> Result<(), String> {
        let mut a = Services::new(7000, 7003, canary);
        let mut b = Services::new(7000, 7003, false);
        let name = |k: &u8| format!("s{k}");
        let set = |n: &[u8]| {
            n.iter()
                .map(|k| format!("n{k}"))
                .collect::<BTreeSet<String>>()
        };
        for (epoch, (start, claims, later)) in rounds.iter().enumerate() {
            let epoch = epoch as u64 + 1;
            a.reset();
            b.reset();
            for (s, n) in start {
                a.members(&name(s), set(n), &place(epoch, 0));
                b.members(&name(s), set(n), &place(epoch, 0));
            }
            let mut seq = 0;
            for (s, p, age) in claims {
                seq += 1;
                let c = (*p, place(0, *age), (7000, 7003));
                a.claim(&name(s), c.clone(), &place(epoch, seq), true);
                b.claim(&name(s), c, &place(epoch, seq), false);
                a.check()?;
                if a.ports() != b.ports() {
                    return Err(format!("{:?} and {:?}", a.ports(), b.ports()));
                }
            }
            for (s, n, done) in later {
                seq += 1;
                a.members(&name(s), set(n), &place(epoch, seq));
                b.members(&name(s), set(n), &place(epoch, seq));
                let ev = a
                    .barrier(&name(s))
                    .map(|x| x.event.clone())
                    .unwrap_or_default();
                a.done(&name(s), &ev, &format!("n{done}"));
                b.done(&name(s), &ev, &format!("n{done}"));
                a.check()?;
                if a.ports() != b.ports() {
                    return Err(format!("{:?} and {:?}", a.ports(), b.ports()));
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        /// Any sequence of agreed steps keeps one service per port, and two daemons that
        /// take the same steps hold the same table, whatever their own agents are.
        #[test]
        fn the_same_steps_give_the_same_table(rounds in proptest::collection::vec(round(), 1..5)) {
            proptest::prop_assert!(run_rounds(&rounds, false).is_ok(), "{:?}", run_rounds(&rounds, false));
        }
    }

    /// The same property fails with the canary's planted bug: it can fail.
    #[test]
    fn the_table_property_catches_the_canary() {
        let rounds: Vec<Round> = vec![(
            vec![(1, vec![1]), (2, vec![2])],
            vec![(1, 7000, 3), (2, 7000, 9)],
            vec![],
        )];
        assert!(run_rounds(&rounds, false).is_ok());
        assert!(run_rounds(&rounds, true).is_err());
    }

    #[test]
    fn control_messages_round_trip_and_junk_is_ignored() {
        for c in [
            Control::Claim {
                port: 7003,
                since: place(9, 4),
                range: (7000, 7099),
            },
            Control::Range(100, 200),
            Control::Done("9.a:4".into()),
        ] {
            assert_eq!(Control::decode(&c.encode()), Some(c));
        }
        for junk in [
            &b"claim"[..],
            b"claim x 1 a 1 2 1 2",
            b"claim 1 1 a 1 2 5 4",
            b"range 0 3",
            b"done",
            b"done a b",
            b"\xff",
            b"",
        ] {
            assert_eq!(Control::decode(junk), None);
        }
    }
}
