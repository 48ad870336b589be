//! Service groups (seed 004; SPEC.md §10.7): the replicated table of cluster ports and
//! recovery barriers. Every daemon runs the same steps on the same items in the same
//! order (the groups' agreed order), so every daemon holds the same table at the same
//! place; nothing here is decided by one daemon alone.
//!
//! A service `S` is the hidden group `#svc:S`: binding is joining it, releasing or
//! disconnecting is leaving it. Its control messages (`claim`, `range`, `done`) are
//! messages of that group sent by daemons.
//!
//! After a view change the table starts again and is *settled* from claims: every
//! daemon says, for each service it has an agent of, the port it told that agent and
//! since when. Ports are handed out only once every node that hosted a service at the
//! view's start has claimed (or left), all together, so the outcome does not depend on
//! the order the claims came in: holdings are taken oldest first (a service keeps the
//! oldest port it claims that no older holding of another service took), and the
//! services left without one take the least free port of their range, in name order.

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
    /// Agents were told of it (`620`/`621`): not while the view's ports settle. Only a
    /// barrier that began takes `done`.
    pub begun: bool,
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

/// What a daemon claims for one of its agents after a view change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The port it told its agent (0: none).
    pub port: u16,
    /// Where that port was handed out.
    pub since: Place,
    /// The range the service takes a port from.
    pub range: (u16, u16),
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
    /// The view's ports are settling: services had members at its start and not every
    /// claim is in. No port is handed out meanwhile.
    settling: bool,
    /// Services that had members when the view began, and their nodes that have neither
    /// claimed nor left yet.
    awaiting: BTreeMap<String, BTreeSet<String>>,
    /// The claims of those services, by node.
    claims: BTreeMap<String, BTreeMap<String, Claim>>,
    /// The range a service without a port takes it from (the binding daemon's).
    ranges: BTreeMap<String, (u16, u16)>,
    /// Planted bug (canary): a conflict after a heal goes to the service of this daemon's
    /// own agent.
    canary: bool,
    /// Canary only: services whose claims came with this daemon's own agent.
    mine: BTreeSet<String>,
}

/// A control message of a service group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// A daemon says what port it told its agent (0: none) and since when, and the
    /// range it hands ports from, for the view `view` (sent when the daemon entered it;
    /// a claim delivered in another view is stale and ignored).
    Claim {
        /// The claim.
        claim: Claim,
        /// The view it settles.
        view: ViewId,
    },
    /// Sent just before a daemon's agent joins: the range to hand the service's port
    /// from if it has none (so daemons configured with different ranges still agree).
    Range(u16, u16),
    /// A node's member finished recovery for this barrier.
    Done(String),
}

fn view_id<'a>(w: &mut impl Iterator<Item = &'a str>) -> Option<ViewId> {
    Some(ViewId {
        epoch: w.next()?.parse().ok()?,
        coordinator: w.next()?.to_string(),
        incarnation: u64::from_str_radix(w.next()?, 16).ok()?,
    })
}

impl Control {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Control::Claim { claim, view } => format!(
                "claim {} {} {} {:x} {} {} {} {} {} {:x}",
                claim.port,
                claim.since.view.epoch,
                claim.since.view.coordinator,
                claim.since.view.incarnation,
                claim.since.seq,
                claim.range.0,
                claim.range.1,
                view.epoch,
                view.coordinator,
                view.incarnation,
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
            "claim" => {
                let port = w.next()?.parse().ok()?;
                let since = Place {
                    view: view_id(&mut w)?,
                    seq: w.next()?.parse().ok()?,
                };
                let range = valid_range(w.next()?.parse().ok()?, w.next()?.parse().ok()?)?;
                let view = view_id(&mut w)?;
                Control::Claim {
                    claim: Claim { port, since, range },
                    view,
                }
            }
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

    /// The barrier of `s` still waiting, if any (begun or not).
    pub fn barrier(&self, s: &str) -> Option<&Barrier> {
        self.barriers.get(s)
    }

    /// The barrier of `s` its agents were told of and that waits for them, if any: the
    /// only one `done` is taken for.
    pub fn current_barrier(&self, s: &str) -> Option<&Barrier> {
        self.barriers.get(s).filter(|b| b.begun)
    }

    /// Every barrier still waiting.
    pub fn barriers(&self) -> impl Iterator<Item = (&String, &Barrier)> {
        self.barriers.iter()
    }

    /// The view's ports are settling (not every claim is in yet): no port is handed out.
    pub fn settling(&self) -> bool {
        self.settling
    }

    /// The range `s` takes a port from: the binding daemon's (or the claims'), else the
    /// one it holds, else this daemon's.
    pub fn range_of(&self, s: &str) -> (u16, u16) {
        self.ranges
            .get(s)
            .copied()
            .or_else(|| self.held.get(s).map(|h| h.range))
            .unwrap_or((self.lo, self.hi))
    }

    fn free_port(&self, range: (u16, u16)) -> Option<u16> {
        (range.0..=range.1).find(|p| !self.by_port.contains_key(p))
    }

    /// The range the binding daemon hands ports from, for `s` if it has no members yet
    /// (a service that has them keeps the range it has, port or not).
    pub fn range_for(&mut self, s: &str, range: (u16, u16)) {
        // Bounded: one entry per service bound, and at most this many waiting.
        if !self.nodes.contains_key(s)
            && !self.held.contains_key(s)
            && self.ranges.len() < MAX_RANGES
        {
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
    /// place 0); those services wait for their claims instead of taking a new port.
    pub fn reset(&mut self) {
        self.nodes.clear();
        self.held.clear();
        self.by_port.clear();
        self.barriers.clear();
        self.settling = false;
        self.awaiting.clear();
        self.claims.clear();
        self.ranges.clear();
        self.mine.clear();
    }

    /// The nodes hosting `s` are now `nodes` (from the group's agreed membership), at
    /// `place`.
    pub fn members(&mut self, s: &str, nodes: BTreeSet<String>, place: &Place) -> Vec<Change> {
        let mut out = Vec::new();
        if nodes.is_empty() {
            self.nodes.remove(s);
            self.barriers.remove(s);
            self.awaiting.remove(s);
            self.claims.remove(s);
            self.ranges.remove(s);
            if self.held.contains_key(s) {
                self.take(s);
                out.push(Change::Freed(s.to_string()));
                // A service left without a port takes the one freed.
                self.fill(place, false, &mut out);
            } else if place.seq > 0 {
                self.settle_if_ready(place, &mut out);
            }
            return out;
        }
        if place.seq == 0 {
            // Its nodes claim what they told their agents; until all did, no port.
            self.settling = true;
            self.awaiting.insert(s.to_string(), nodes.clone());
        } else if let Some(w) = self.awaiting.get_mut(s) {
            // A node that left claims nothing more.
            w.retain(|n| nodes.contains(n));
        }
        let changed = self.nodes.get(s) != Some(&nodes);
        self.nodes.insert(s.to_string(), nodes.clone());
        if changed {
            self.barriers.insert(
                s.to_string(),
                Barrier {
                    event: place.to_string(),
                    members: nodes,
                    done: BTreeSet::new(),
                    begun: false,
                },
            );
        }
        if self.settling {
            // The service waits with the others; a node gone may have been the last
            // claim awaited.
            if place.seq > 0 {
                self.settle_if_ready(place, &mut out);
            }
            return out;
        }
        if !self.held.contains_key(s) {
            self.fresh(s, place, &mut out);
        }
        if changed {
            self.begin(s, &mut out);
        }
        out
    }

    /// Node `node`'s claim for `s`, delivered at `place`; `mine`: the claim came with
    /// this daemon's own agent (only the canary looks).
    pub fn claim(
        &mut self,
        s: &str,
        (claim, view): (Claim, &ViewId),
        node: &str,
        (place, mine): (&Place, bool),
    ) -> Vec<Change> {
        let mut out = Vec::new();
        if *view != place.view || !self.settling {
            // Sent for another view (and carried into this one), or nothing settles.
            return out;
        }
        let Some(w) = self.awaiting.get_mut(s) else {
            // No members at the view's start: the service takes a new port.
            return out;
        };
        w.remove(node);
        self.ranges.insert(s.to_string(), claim.range);
        self.claims
            .entry(s.to_string())
            .or_default()
            .insert(node.to_string(), claim);
        if self.canary && mine {
            self.mine.insert(s.to_string());
        }
        self.settle_if_ready(place, &mut out);
        out
    }

    fn settle_if_ready(&mut self, place: &Place, out: &mut Vec<Change>) {
        if self.settling && self.awaiting.values().all(BTreeSet::is_empty) {
            self.settle(place, out);
        }
    }

    /// Every claim is in: ports for every service at once. Holdings (a claim of a port
    /// by a node still hosting the service) are taken oldest first — by the place the
    /// port was handed out, then port, then service — each unless its service already
    /// has a port or its port is taken; the services left take free ports in name
    /// order; then their barriers begin.
    fn settle(&mut self, place: &Place, out: &mut Vec<Change>) {
        self.settling = false;
        self.awaiting.clear();
        let claims = std::mem::take(&mut self.claims);
        let mine = std::mem::take(&mut self.mine);
        // (the canary's own agents' services first, since, port, service, range)
        type Holding<'a> = (bool, &'a Place, u16, &'a String, (u16, u16));
        let mut holdings: Vec<Holding<'_>> = Vec::new();
        for (s, by_node) in &claims {
            let Some(nodes) = self.nodes.get(s) else {
                continue;
            };
            for (n, c) in by_node {
                if c.port != 0 && nodes.contains(n) {
                    // Planted bug (canary): this daemon's own agents' services first.
                    let theirs = !(self.canary && mine.contains(s));
                    holdings.push((theirs, &c.since, c.port, s, c.range));
                }
            }
        }
        holdings.sort();
        for (_, since, port, s, range) in holdings {
            if self.held.contains_key(s) || self.by_port.contains_key(&port) {
                continue;
            }
            self.give(s, port, since.clone(), range);
            out.push(Change::Port {
                service: s.clone(),
                port,
            });
        }
        self.fill(place, true, out);
        let barriers: Vec<String> = self.barriers.keys().cloned().collect();
        for s in barriers {
            self.begin(&s, out);
        }
    }

    /// Services with members and no port take free ports of their ranges, in name
    /// order; `report`: those left without one are reported exhausted.
    fn fill(&mut self, place: &Place, report: bool, out: &mut Vec<Change>) {
        let portless: Vec<String> = self
            .nodes
            .keys()
            .filter(|s| !self.held.contains_key(*s))
            .cloned()
            .collect();
        for s in portless {
            match self.free_port(self.range_of(&s)) {
                Some(_) => self.fresh(&s, place, out),
                None if report => out.push(Change::Exhausted(s)),
                None => {}
            }
        }
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

    fn begin(&mut self, s: &str, out: &mut Vec<Change>) {
        if let Some(b) = self.barriers.get_mut(s) {
            b.begun = true;
            out.push(Change::Begun(s.to_string()));
        }
    }

    /// `node` said done for `event` of `s` (ignored unless it is the barrier that began
    /// and `node` hosts the service).
    pub fn done(&mut self, s: &str, event: &str, node: &str) -> Vec<Change> {
        let Some(b) = self.barriers.get_mut(s) else {
            return Vec::new();
        };
        if !b.begun || b.event != event || !b.members.contains(node) {
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
    /// barriers only for services with members; while the view's ports settle, no port
    /// is held and no barrier began; once settled, no service without a port could take
    /// a free one of its range.
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
            if self.awaiting.contains_key(s) {
                return Err(format!("{s} holds a port and still waits for claims"));
            }
        }
        for (s, b) in &self.barriers {
            if self.nodes.get(s) != Some(&b.members) {
                return Err(format!("the barrier of {s} waits for other members"));
            }
            if !b.done.is_subset(&b.members) || b.done.len() == b.members.len() {
                return Err(format!("the barrier of {s} is finished but kept"));
            }
            if !b.begun && !b.done.is_empty() {
                return Err(format!("the barrier of {s} took done before it began"));
            }
            if self.settling && b.begun {
                return Err(format!("the barrier of {s} began before the ports settled"));
            }
        }
        for (s, w) in &self.awaiting {
            if !self.nodes.get(s).is_some_and(|n| w.is_subset(n)) {
                return Err(format!("{s} waits for claims from nodes it does not have"));
            }
        }
        if !self.claims.keys().all(|s| self.awaiting.contains_key(s)) {
            return Err("claims kept for a service that waits for none".into());
        }
        if self.settling {
            if !self.held.is_empty() {
                return Err("a port was handed out before the ports settled".into());
            }
        } else {
            if !self.awaiting.is_empty() || !self.mine.is_empty() {
                return Err("services wait for claims, but nothing settles".into());
            }
            for s in self.nodes.keys().filter(|s| !self.held.contains_key(*s)) {
                if let Some(p) = self.free_port(self.range_of(s)) {
                    return Err(format!("{s} has no port though {p} of its range is free"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(epoch: u64) -> ViewId {
        ViewId {
            epoch,
            coordinator: "a".into(),
            incarnation: 1,
        }
    }

    fn place(epoch: u64, seq: u64) -> Place {
        Place {
            view: view(epoch),
            seq,
        }
    }

    fn nodes(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    /// A claim of `port` handed out at `since`, for the view of `at`, from the table's
    /// range.
    fn claim(
        s: &mut Services,
        svc: &str,
        node: &str,
        (port, since): (u16, Place),
        at: &Place,
    ) -> Vec<Change> {
        let c = Claim {
            port,
            since,
            range: s.range(),
        };
        s.claim(svc, (c, &at.view), node, (at, false))
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
    fn a_service_without_a_port_takes_the_first_that_frees() {
        // After a heal: three services claim, two ports; the youngest is left at 0.
        let mut s = Services::new(7000, 7001, false);
        s.reset();
        for (svc, n) in [("a", "n1"), ("b", "n2"), ("c", "n3"), ("d", "n4")] {
            s.members(svc, nodes(&[n]), &place(5, 0));
        }
        let at = |k| place(5, k);
        claim(&mut s, "a", "n1", (7000, place(1, 1)), &at(1));
        claim(&mut s, "b", "n2", (7001, place(1, 2)), &at(2));
        claim(&mut s, "c", "n3", (7000, place(2, 1)), &at(3));
        let c = claim(&mut s, "d", "n4", (7001, place(2, 2)), &at(4));
        assert_eq!(s.ports().len(), 2);
        assert!(c.contains(&Change::Exhausted("c".into())));
        assert!(c.contains(&Change::Exhausted("d".into())));
        s.check().unwrap();
        // b leaves: its port goes at once to the first service without one (by name).
        let c = s.members("b", nodes(&[]), &place(5, 5));
        assert_eq!(
            c,
            vec![
                Change::Freed("b".into()),
                Change::Port {
                    service: "c".into(),
                    port: 7001
                }
            ]
        );
        assert_eq!(s.port("c").unwrap().since, place(5, 5));
        s.check().unwrap();
        // a leaves: d gets 7000.
        s.members("a", nodes(&[]), &place(5, 6));
        assert_eq!(s.port("d").unwrap().port, 7000);
        s.check().unwrap();
        // A service gaining a node while without a port stays without one (no new
        // port appears), and its new node is not told of a port.
        let mut s = Services::new(7000, 7000, false);
        s.members("x", nodes(&["n1"]), &place(1, 1));
        let c = s.members("y", nodes(&["n2"]), &place(1, 2));
        assert!(c.contains(&Change::Exhausted("y".into())));
        let c = s.members("y", nodes(&["n2", "n3"]), &place(1, 3));
        assert_eq!(
            c,
            vec![Change::Exhausted("y".into()), Change::Begun("y".into())]
        );
        let c = s.members("x", nodes(&[]), &place(1, 4));
        assert!(c.contains(&Change::Port {
            service: "y".into(),
            port: 7000
        }));
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
        let c = claim(&mut s, "db", "b", (7000, place(4, 9)), &place(5, 1));
        assert!(c.is_empty(), "nothing before every claim is in: {c:?}");
        assert!(s.port("db").is_none());
        let c = claim(&mut s, "web", "a", (7000, place(3, 2)), &place(5, 2));
        assert_eq!(s.port("web").unwrap().port, 7000);
        assert_eq!(s.port("web").unwrap().since, place(3, 2));
        assert_eq!(s.port("db").unwrap().port, 7001);
        assert_eq!(
            c,
            vec![
                Change::Port {
                    service: "web".into(),
                    port: 7000
                },
                Change::Port {
                    service: "db".into(),
                    port: 7001
                },
                Change::Begun("db".into()),
                Change::Begun("web".into()),
            ],
            "each once, then the barriers"
        );
        // A later claim for a settled service changes nothing.
        assert!(claim(&mut s, "web", "a", (7005, place(1, 1)), &place(5, 3)).is_empty());
        s.check().unwrap();
    }

    #[test]
    fn a_new_service_waits_for_the_claims_instead_of_taking_a_claimed_port() {
        // The finding: a service bound while claims were still coming took the port
        // a service not yet claimed held, and was moved again when the claim came.
        let mut s = Services::new(7000, 7009, false);
        s.reset();
        s.members("k", nodes(&["n5"]), &place(2, 0));
        s.range_for("x2", (7000, 7009));
        let c = s.members("x2", nodes(&["n4"]), &place(2, 2));
        assert!(c.is_empty(), "no port while settling: {c:?}");
        assert!(s.ports().is_empty());
        let c = claim(&mut s, "k", "n5", (7000, place(1, 8)), &place(2, 3));
        assert_eq!(s.port("k").unwrap().port, 7000);
        assert_eq!(s.port("x2").unwrap().port, 7001);
        assert!(!c.contains(&Change::Port {
            service: "x2".into(),
            port: 7000
        }));
        s.check().unwrap();
    }

    #[test]
    fn claims_from_another_view_and_nodes_gone_count_for_nothing() {
        let mut s = Services::new(7000, 7009, false);
        s.reset();
        s.members("web", nodes(&["a", "b"]), &place(5, 0));
        // A claim sent for view 4 and carried into 5 is stale.
        let stale = Claim {
            port: 7003,
            since: place(1, 1),
            range: (7000, 7009),
        };
        assert!(
            s.claim("web", (stale, &view(4)), "a", (&place(5, 1), false))
                .is_empty()
        );
        claim(&mut s, "web", "a", (7002, place(3, 1)), &place(5, 2));
        assert!(s.settling(), "b has not claimed");
        // b leaves before claiming: settled with a's claim.
        let c = s.members("web", nodes(&["a"]), &place(5, 3));
        assert!(!s.settling());
        assert_eq!(s.port("web").unwrap().port, 7002, "{c:?}");
        s.check().unwrap();
        // The same, when the service's last node leaves and others still wait.
        let mut s = Services::new(7000, 7009, false);
        s.reset();
        s.members("web", nodes(&["a"]), &place(5, 0));
        s.members("db", nodes(&["b"]), &place(5, 0));
        claim(&mut s, "web", "a", (7002, place(3, 1)), &place(5, 1));
        s.members("db", nodes(&[]), &place(5, 2));
        assert!(!s.settling());
        assert_eq!(s.ports(), [("web".to_string(), 7002)].into());
        s.check().unwrap();
    }

    #[test]
    fn the_canary_decides_a_conflict_by_who_asks() {
        let run = |mine: bool| {
            let mut s = Services::new(7000, 7009, true);
            s.members("web", nodes(&["a"]), &place(5, 0));
            s.members("db", nodes(&["b"]), &place(5, 0));
            let c = |port, since| Claim {
                port,
                since,
                range: (7000, 7009),
            };
            let v = view(5);
            s.claim(
                "web",
                (c(7000, place(3, 2)), &v),
                "a",
                (&place(5, 1), false),
            );
            s.claim("db", (c(7000, place(4, 9)), &v), "b", (&place(5, 2), mine));
            s.check().unwrap();
            s.ports()
        };
        assert_ne!(run(true), run(false), "two daemons, two tables");
    }

    #[test]
    fn a_barrier_finishes_when_every_member_is_done() {
        let mut s = Services::new(7000, 7009, false);
        s.members("web", nodes(&["a", "b"]), &place(1, 1));
        let ev = s.current_barrier("web").unwrap().event.clone();
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
        // While the view's ports settle, the barrier has not begun: no done counts.
        s.reset();
        s.members("web", nodes(&["a"]), &place(2, 0));
        assert!(s.current_barrier("web").is_none());
        assert!(s.done("web", "2.a:0", "a").is_empty());
        assert!(s.barrier("web").unwrap().done.is_empty());
        let c = claim(&mut s, "web", "a", (7000, place(1, 1)), &place(2, 1));
        assert!(c.contains(&Change::Begun("web".into())));
        assert!(!s.done("web", "2.a:0", "a").is_empty());
        s.check().unwrap();
    }

    /// The settling of one view: services with their nodes at its start, and the claims
    /// (service, node, port, age of the port).
    type Heal = (Vec<(u8, Vec<u8>)>, Vec<(u8, u8, u16, u64)>);

    fn heal() -> impl proptest::strategy::Strategy<Value = Heal> {
        use proptest::prelude::*;
        (
            proptest::collection::vec((0u8..5, proptest::collection::vec(0u8..4, 1..3)), 1..5),
            proptest::collection::vec(
                (
                    0u8..5,
                    0u8..4,
                    prop_oneof![Just(0u16), 7000u16..7004],
                    0u64..6,
                ),
                0..12,
            ),
        )
    }

    /// Settles a heal on a range of `ports` ports, claims delivered in the order given
    /// (those of nodes not hosting the service left out, then every node's claim that
    /// is missing sent as port 0); the table, and the changes after each claim. With
    /// `canary`, the daemon has an agent of that service (the planted bug favours it).
    fn settle_heal(
        (start, claims): &Heal,
        order: &[usize],
        ports: u16,
        canary: Option<&str>,
    ) -> Result<(Services, Vec<Vec<Change>>), String> {
        let mut s = Services::new(7000, 7000 + ports - 1, canary.is_some());
        s.reset();
        let (name, node) = (|k: &u8| format!("s{k}"), |k: &u8| format!("n{k}"));
        let hosts = hosts(start);
        for (svc, set) in &hosts {
            s.members(svc, set.clone(), &place(9, 0));
        }
        let mut sent: BTreeSet<(String, String)> = BTreeSet::new();
        let mut all: Vec<(String, String, u16, u64)> = Vec::new();
        for &k in order {
            let (svc, n, port, age) = &claims[k];
            let (svc, n) = (name(svc), node(n));
            if hosts.get(&svc).is_some_and(|h| h.contains(&n))
                && sent.insert((svc.clone(), n.clone()))
            {
                all.push((svc, n, *port, *age));
            }
        }
        for (svc, h) in &hosts {
            for n in h {
                if sent.insert((svc.clone(), n.clone())) {
                    all.push((svc.clone(), n.clone(), 0, 0));
                }
            }
        }
        let mut changes = Vec::new();
        for (k, (svc, n, port, age)) in all.into_iter().enumerate() {
            if !s.settling() {
                return Err("settled before every claim was in".into());
            }
            if !s.ports().is_empty() {
                return Err("a port was handed out before every claim was in".into());
            }
            let since = Place {
                view: view(age),
                // The age orders; the port makes two holdings' places differ.
                seq: u64::from(port),
            };
            let c = Claim {
                port,
                since,
                range: s.range(),
            };
            let at = place(9, k as u64 + 1);
            let mine = canary == Some(svc.as_str());
            changes.push(s.claim(&svc, (c, &at.view), &n, (&at, mine)));
            s.check()?;
        }
        if s.settling() {
            return Err("every claim is in but the ports did not settle".into());
        }
        Ok((s, changes))
    }

    /// The nodes of each service at the view's start (a service listed twice: the last).
    fn hosts(start: &[(u8, Vec<u8>)]) -> BTreeMap<String, BTreeSet<String>> {
        start
            .iter()
            .map(|(svc, n)| {
                (
                    format!("s{svc}"),
                    n.iter().map(|k| format!("n{k}")).collect(),
                )
            })
            .collect()
    }

    /// The claims of one heal, by service: (port, since) per claiming node still there.
    fn holdings((start, claims): &Heal) -> BTreeMap<String, BTreeSet<(u16, Place)>> {
        let mut out: BTreeMap<String, BTreeSet<(u16, Place)>> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        let hosts = hosts(start);
        for (svc, n, port, age) in claims {
            let hosted = hosts
                .get(&format!("s{svc}"))
                .is_some_and(|h| h.contains(&format!("n{n}")));
            if hosted && seen.insert((*svc, *n)) && *port != 0 {
                let since = Place {
                    view: view(*age),
                    seq: u64::from(*port),
                };
                out.entry(format!("s{svc}"))
                    .or_default()
                    .insert((*port, since));
            }
        }
        out
    }

    /// The merge rule on one heal: the same table from the same claims whatever order
    /// they come in (`shuffled`: another order); a service whose port no other service
    /// claims keeps it; a service that moves lost each port it claimed to an older
    /// holding of another service (ties: the lesser name); no port is handed out
    /// before every claim is in, and none stays free while a service has none.
    fn merge_rule_holds(
        h: &Heal,
        shuffled: &[usize],
        ports: u16,
        canary: Option<&str>,
    ) -> Result<(), String> {
        let forward: Vec<usize> = (0..h.1.len()).collect();
        let (a, _) = settle_heal(h, &forward, ports, canary)?;
        let (b, _) = settle_heal(h, shuffled, ports, canary)?;
        // Only a node's first claim counts: compare orders that keep each node's first.
        let firsts = |o: &[usize]| {
            let mut seen = BTreeSet::new();
            o.iter()
                .filter(|&&k| seen.insert((h.1[k].0, h.1[k].1)))
                .map(|&k| h.1[k])
                .collect::<BTreeSet<_>>()
        };
        if firsts(&forward) == firsts(shuffled) && a.ports() != b.ports() {
            return Err(format!(
                "{:?} in one order, {:?} in another",
                a.ports(),
                b.ports()
            ));
        }
        let held = holdings(h);
        let table = a.ports();
        for (svc, hs) in &held {
            let claimed: BTreeSet<u16> = hs.iter().map(|(p, _)| *p).collect();
            let contested = held
                .iter()
                .filter(|(t, _)| *t != svc)
                .any(|(_, o)| o.iter().any(|(p, _)| claimed.contains(p)));
            if claimed.len() == 1 && !contested && table.get(svc) != claimed.first() {
                return Err(format!("{svc} lost its uncontested port: {table:?}"));
            }
            if table.get(svc).is_some_and(|p| claimed.contains(p)) {
                continue;
            }
            for (p, since) in hs {
                let beaten = a.by_port.get(p).is_some_and(|t| {
                    t != svc
                        && held.get(t).is_some_and(|o| {
                            o.iter()
                                .any(|(q, s2)| q == p && (s2, t.as_str()) < (since, svc.as_str()))
                        })
                });
                if !beaten {
                    return Err(format!("{svc} lost {p} to no older holding: {table:?}"));
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        /// The merge rule holds for any heal and any order of its claims.
        #[test]
        fn a_heal_settles_the_same_whatever_the_order_and_only_losers_move(
            h in heal(),
            seed in 0u64..1000,
            ports in 1u16..5,
        ) {
            // A permutation drawn from the seed (Fisher–Yates over a small LCG).
            let mut shuffled: Vec<usize> = (0..h.1.len()).collect();
            let mut x = seed;
            for i in (1..shuffled.len()).rev() {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                shuffled.swap(i, (x >> 33) as usize % (i + 1));
            }
            let r = merge_rule_holds(&h, &shuffled, ports, None);
            proptest::prop_assert!(r.is_ok(), "{:?}", r);
        }
    }

    /// The merge rule can fail: with the canary's planted bug (a daemon favours its own
    /// agent's service) the younger holding keeps the port.
    #[test]
    fn the_merge_rule_catches_the_canary() {
        let h: Heal = (
            vec![(0, vec![0]), (1, vec![1]), (2, vec![2])],
            vec![(1, 1, 7000, 3), (0, 0, 7000, 1), (2, 2, 7001, 2)],
        );
        merge_rule_holds(&h, &[2, 1, 0], 3, None).unwrap();
        let (s, changes) = settle_heal(&h, &[0, 1, 2], 3, None).unwrap();
        // s1 lost 7000 to s0 (older) and 7001 is s2's: s1 moves once, to 7002.
        assert_eq!(s.ports()["s0"], 7000);
        assert_eq!(s.ports()["s2"], 7001);
        assert_eq!(s.ports()["s1"], 7002);
        let s1: Vec<&Change> = changes
            .iter()
            .flatten()
            .filter(|c| matches!(c, Change::Port { service, .. } if service == "s1"))
            .collect();
        assert_eq!(s1.len(), 1, "{changes:?}");
        let e = merge_rule_holds(&h, &[2, 1, 0], 3, Some("s1")).unwrap_err();
        assert!(e.contains("s0 lost 7000 to no older holding"), "{e}");
    }

    #[test]
    fn check_catches_a_corrupted_table() {
        let settled = || {
            let mut s = Services::new(7000, 7001, false);
            s.members("web", nodes(&["a"]), &place(1, 1));
            s.members("db", nodes(&["b"]), &place(1, 2));
            s.members("mail", nodes(&["c"]), &place(1, 3));
            s.check().unwrap();
            s
        };
        let settling = || {
            let mut s = Services::new(7000, 7001, false);
            s.members("web", nodes(&["a", "b"]), &place(2, 0));
            claim(&mut s, "web", "a", (7000, place(1, 1)), &place(2, 1));
            s.check().unwrap();
            assert!(s.settling());
            s
        };
        let broken: Vec<(&str, Services)> = vec![
            ("of its range is free", {
                let mut s = settled();
                s.take("db");
                s.by_port.remove(&7001);
                s
            }),
            ("handed out before", {
                let mut s = settling();
                s.awaiting.remove("web");
                s.claims.remove("web");
                s.give("web", 7000, place(2, 1), (7000, 7001));
                s
            }),
            ("began before", {
                let mut s = settling();
                s.barriers.get_mut("web").unwrap().begun = true;
                s
            }),
            ("done before it began", {
                let mut s = settling();
                s.barriers.get_mut("web").unwrap().done.insert("a".into());
                s
            }),
            ("nodes it does not have", {
                let mut s = settling();
                s.awaiting.get_mut("web").unwrap().insert("zz".into());
                s
            }),
            ("claims kept", {
                let mut s = settled();
                s.claims.insert("web".into(), BTreeMap::new());
                s
            }),
            ("nothing settles", {
                let mut s = settled();
                s.awaiting.insert("mail".into(), BTreeSet::new());
                s
            }),
            ("still waits", {
                let mut s = settled();
                s.settling = true;
                s.awaiting.insert("web".into(), BTreeSet::new());
                s
            }),
        ];
        for (what, s) in broken {
            let e = s.check().expect_err(what);
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    #[test]
    fn control_messages_round_trip_and_junk_is_ignored() {
        for c in [
            Control::Claim {
                claim: Claim {
                    port: 7003,
                    since: place(9, 4),
                    range: (7000, 7099),
                },
                view: view(10),
            },
            Control::Range(100, 200),
            Control::Done("9.a:4".into()),
        ] {
            assert_eq!(Control::decode(&c.encode()), Some(c));
        }
        for junk in [
            &b"claim"[..],
            b"claim x 1 a 1 2 1 2 3 a 1",
            b"claim 1 1 a 1 2 5 4 3 a 1",
            b"claim 1 1 a 1 2 1 2",
            b"claim 1 1 a 1 2 1 2 3 a",
            b"claim 1 1 a 1 2 1 2 3 a 1 9",
            b"range 0 3",
            b"done",
            b"done a b",
            b"\xff",
            b"",
        ] {
            assert_eq!(Control::decode(junk), None, "{junk:?}");
        }
    }
}
