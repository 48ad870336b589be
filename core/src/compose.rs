//! Several machines in one node (SPEC.md §1.3).
//!
//! A daemon that hosts more than one protocol — membership, client groups and service
//! groups side by side — runs one [`Pair`] (nest them for three or more: `Pair<A,
//! Pair<B, C>>`). A pair is itself a [`Machine`], so every driver and the simulator run
//! it unchanged. It routes:
//!
//! - **frames by protocol family** (the kind's high byte): each part says which families
//!   it owns ([`Part::owns_family`]);
//! - **client streams by listener**: clients accepted on the listeners given to
//!   [`Pair::with_listeners_of_a`] belong to `a`, all others to `b`; a stream stays with
//!   the machine that owns it until it closes;
//! - **commands, events and effects** wrapped in [`Either`], effect ids interleaved so
//!   the two machines' ids never collide;
//! - **time**: the deadline is the earlier of the two.
//!
//! Events of one part can feed the other synchronously, inside the core, through a
//! [`Link`] (a membership change telling client groups, say) instead of a round trip
//! through the embedding program.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::machine::{
    ClientId, EffectId, EffectRequest, Input, InputOf, ListenerId, Machine, Output, OutputOf,
    debug_check,
};
use crate::time::Instant;

/// One of two things: the first part's or the second's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Either<A, B> {
    /// The first part's.
    A(A),
    /// The second part's.
    B(B),
}

/// A machine that can be a part of a [`Pair`].
pub trait Part: Machine {
    /// Whether frames of protocol `family` (the high byte of a frame's kind) are this
    /// machine's.
    fn owns_family(&self, family: u8) -> bool;
}

/// How one part's events reach the other inside the core.
pub trait Link<A: Machine, B: Machine> {
    /// Sees every event `a` emits, with `b` at hand (feed it commands with
    /// `b.handle(now, Input::Command(…))`). Returns the event if it should still reach
    /// the embedding program.
    fn on_a_event(&mut self, now: Instant, event: A::Event, b: &mut B) -> Option<A::Event> {
        let _ = (now, b);
        Some(event)
    }

    /// The same for `b`'s events.
    fn on_b_event(&mut self, now: Instant, event: B::Event, a: &mut A) -> Option<B::Event> {
        let _ = (now, a);
        Some(event)
    }
}

/// A link that passes every event out and feeds nothing across.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLink;

impl<A: Machine, B: Machine> Link<A, B> for NoLink {}

/// Why a pair refused an input. State is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PairError<EA, EB> {
    /// The first part refused it.
    #[error(transparent)]
    A(EA),
    /// The second part refused it.
    #[error(transparent)]
    B(EB),
    /// A frame of a family neither part owns.
    #[error("no machine here owns frames of family {0:#04x}")]
    UnknownFamily(u8),
    /// Bytes or a close for a client that was never opened here.
    #[error("unknown client {0}")]
    UnknownClient(ClientId),
    /// A client opened twice.
    #[error("client {0} is already open")]
    DuplicateClient(ClientId),
    /// An effect outcome whose value belongs to the other part than its id says.
    #[error("the outcome of effect {0} does not match the machine that asked for it")]
    EffectMismatch(EffectId),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// Two machines run as one. See the module docs.
#[derive(Debug)]
pub struct Pair<A, B, L = NoLink> {
    a: A,
    b: B,
    link: L,
    a_listeners: BTreeSet<ListenerId>,
    owners: BTreeMap<ClientId, Side>,
    now: Instant,
}

impl<A: Part, B: Part> Pair<A, B, NoLink> {
    /// `a` and `b` side by side; every client goes to `b` until
    /// [`with_listeners_of_a`](Pair::with_listeners_of_a) says otherwise.
    pub fn new(a: A, b: B) -> Self {
        Pair::linked(a, b, NoLink)
    }
}

impl<A: Part, B: Part, L: Link<A, B>> Pair<A, B, L> {
    /// `a` and `b` with `link` carrying events across.
    pub fn linked(a: A, b: B, link: L) -> Self {
        Pair {
            a,
            b,
            link,
            a_listeners: BTreeSet::new(),
            owners: BTreeMap::new(),
            now: Instant::ZERO,
        }
    }

    /// Clients accepted on these listeners belong to `a`.
    pub fn with_listeners_of_a(mut self, listeners: impl IntoIterator<Item = ListenerId>) -> Self {
        self.a_listeners.extend(listeners);
        self
    }

    /// The first part.
    pub fn a(&self) -> &A {
        &self.a
    }

    /// The second part.
    pub fn b(&self) -> &B {
        &self.b
    }

    /// The link.
    pub fn link(&self) -> &L {
        &self.link
    }

    /// Which part owns `client`, if it is open.
    pub fn owner_of(&self, client: ClientId) -> Option<Either<(), ()>> {
        self.owners.get(&client).map(|s| match s {
            Side::A => Either::A(()),
            Side::B => Either::B(()),
        })
    }

    fn client_side(&self, client: ClientId) -> Result<Side, PairError<A::Error, B::Error>> {
        self.owners
            .get(&client)
            .copied()
            .ok_or(PairError::UnknownClient(client))
    }

    fn feed_a(
        &mut self,
        now: Instant,
        input: InputOf<A>,
    ) -> Result<(), PairError<A::Error, B::Error>> {
        self.a.handle(now, input).map_err(PairError::A)
    }

    fn feed_b(
        &mut self,
        now: Instant,
        input: InputOf<B>,
    ) -> Result<(), PairError<A::Error, B::Error>> {
        self.b.handle(now, input).map_err(PairError::B)
    }

    fn route(
        &mut self,
        now: Instant,
        input: InputOf<Self>,
    ) -> Result<(), PairError<A::Error, B::Error>> {
        match input {
            Input::Frame { from, frame } => {
                let family = frame.kind.family();
                if self.a.owns_family(family) {
                    self.feed_a(now, Input::Frame { from, frame })
                } else if self.b.owns_family(family) {
                    self.feed_b(now, Input::Frame { from, frame })
                } else {
                    Err(PairError::UnknownFamily(family))
                }
            }
            Input::ClientOpened { client, origin } => {
                if self.owners.contains_key(&client) {
                    return Err(PairError::DuplicateClient(client));
                }
                let side = if self.a_listeners.contains(&origin.listener) {
                    Side::A
                } else {
                    Side::B
                };
                match side {
                    Side::A => self.feed_a(now, Input::ClientOpened { client, origin })?,
                    Side::B => self.feed_b(now, Input::ClientOpened { client, origin })?,
                }
                self.owners.insert(client, side);
                Ok(())
            }
            Input::ClientData(client, data) => match self.client_side(client)? {
                Side::A => self.feed_a(now, Input::ClientData(client, data)),
                Side::B => self.feed_b(now, Input::ClientData(client, data)),
            },
            Input::ClientClosed(client) => {
                let side = self.client_side(client)?;
                self.owners.remove(&client);
                match side {
                    Side::A => self.feed_a(now, Input::ClientClosed(client)),
                    Side::B => self.feed_b(now, Input::ClientClosed(client)),
                }
            }
            Input::Command(Either::A(c)) => self.feed_a(now, Input::Command(c)),
            Input::Command(Either::B(c)) => self.feed_b(now, Input::Command(c)),
            Input::EffectDone { id, outcome } => {
                let inner = EffectId(id.0 >> 1);
                let from_a = id.0 & 1 == 0;
                match (from_a, outcome) {
                    (true, Ok(Either::A(v))) => self.feed_a(
                        now,
                        Input::EffectDone {
                            id: inner,
                            outcome: Ok(v),
                        },
                    ),
                    (false, Ok(Either::B(v))) => self.feed_b(
                        now,
                        Input::EffectDone {
                            id: inner,
                            outcome: Ok(v),
                        },
                    ),
                    (true, Err(e)) => self.feed_a(
                        now,
                        Input::EffectDone {
                            id: inner,
                            outcome: Err(e),
                        },
                    ),
                    (false, Err(e)) => self.feed_b(
                        now,
                        Input::EffectDone {
                            id: inner,
                            outcome: Err(e),
                        },
                    ),
                    _ => Err(PairError::EffectMismatch(id)),
                }
            }
        }
    }
}

/// Effect ids of the first part are even, of the second odd.
fn wrap_effect<F, G>(
    req: EffectRequest<F>,
    side: Side,
    wrap: impl FnOnce(F) -> G,
) -> EffectRequest<G> {
    debug_assert!(
        req.id.0 < 1 << 63,
        "effect ids must leave room for the pair's bit"
    );
    let bit = match side {
        Side::A => 0,
        Side::B => 1,
    };
    EffectRequest {
        id: EffectId(req.id.0 << 1 | bit),
        effect: wrap(req.effect),
        timeout: req.timeout,
    }
}

impl<A: Part, B: Part, L: Link<A, B>> Machine for Pair<A, B, L> {
    type Command = Either<A::Command, B::Command>;
    type Event = Either<A::Event, B::Event>;
    type Error = PairError<A::Error, B::Error>;
    type Effect = Either<A::Effect, B::Effect>;
    type EffectValue = Either<A::EffectValue, B::EffectValue>;

    fn handle(&mut self, now: Instant, input: InputOf<Self>) -> Result<(), Self::Error> {
        self.now = self.now.max(now);
        let result = self.route(now, input);
        debug_check(self);
        result
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.a.poll_timeout().is_some_and(|t| t <= now) {
            self.a.handle_timeout(now);
        }
        if self.b.poll_timeout().is_some_and(|t| t <= now) {
            self.b.handle_timeout(now);
        }
        debug_check(self);
    }

    fn poll_output(&mut self) -> Option<OutputOf<Self>> {
        loop {
            if let Some(out) = self.a.poll_output() {
                match out {
                    Output::Event(e) => {
                        if let Some(e) = self.link.on_a_event(self.now, e, &mut self.b) {
                            return Some(Output::Event(Either::A(e)));
                        }
                    }
                    Output::Transmit(t) => return Some(Output::Transmit(t)),
                    Output::ToClient(c, d) => return Some(Output::ToClient(c, d)),
                    Output::CloseClient(c) => return Some(Output::CloseClient(c)),
                    Output::Effect(req) => {
                        return Some(Output::Effect(wrap_effect(req, Side::A, Either::A)));
                    }
                }
                continue;
            }
            let out = self.b.poll_output()?;
            match out {
                Output::Event(e) => {
                    if let Some(e) = self.link.on_b_event(self.now, e, &mut self.a) {
                        return Some(Output::Event(Either::B(e)));
                    }
                }
                Output::Transmit(t) => return Some(Output::Transmit(t)),
                Output::ToClient(c, d) => return Some(Output::ToClient(c, d)),
                Output::CloseClient(c) => return Some(Output::CloseClient(c)),
                Output::Effect(req) => {
                    return Some(Output::Effect(wrap_effect(req, Side::B, Either::B)));
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.a.poll_timeout(), self.b.poll_timeout()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.a.check_invariants().map_err(|e| format!("a: {e}"))?;
        self.b.check_invariants().map_err(|e| format!("b: {e}"))?;
        Ok(())
    }
}

impl<A: Part, B: Part, L: Link<A, B>> Part for Pair<A, B, L> {
    fn owns_family(&self, family: u8) -> bool {
        self.a.owns_family(family) || self.b.owns_family(family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{ClientOrigin, EffectError, Outbox, PeerAddr};
    use crate::wire::{Frame, Kind};
    use bytes::Bytes;

    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    #[error("refused {0}")]
    struct No(&'static str);

    /// Owns family `fam`; reports what it sees as events; a command `n` asks for effect
    /// `n` (with its own id `n`); wakes at `wake`.
    struct Toy {
        fam: u8,
        name: &'static str,
        wake: Option<Instant>,
        out: Outbox<String, u32>,
    }

    impl Toy {
        fn new(fam: u8, name: &'static str, wake: Option<Instant>) -> Self {
            Toy {
                fam,
                name,
                wake,
                out: Outbox::default(),
            }
        }
    }

    impl Machine for Toy {
        type Command = u32;
        type Event = String;
        type Error = No;
        type Effect = u32;
        type EffectValue = u32;

        fn handle(&mut self, _now: Instant, input: InputOf<Self>) -> Result<(), No> {
            let seen = match input {
                Input::Frame { frame, .. } => format!("frame {}", frame.kind),
                Input::ClientOpened { client, .. } => format!("open {client}"),
                Input::ClientData(c, _) => format!("data {c}"),
                Input::ClientClosed(c) => format!("close {c}"),
                Input::Command(0) => return Err(No(self.name)),
                Input::Command(n) => {
                    self.out.effect(EffectId(u64::from(n)), n, None);
                    format!("command {n}")
                }
                Input::EffectDone { id, outcome } => format!("effect {} {outcome:?}", id.0),
            };
            self.out.event(format!("{} {seen}", self.name));
            Ok(())
        }

        fn handle_timeout(&mut self, now: Instant) {
            if self.wake.is_some_and(|w| w <= now) {
                self.wake = None;
                self.out.event(format!("{} woke", self.name));
            }
        }

        fn poll_output(&mut self) -> Option<Output<String, u32>> {
            self.out.pop()
        }

        fn poll_timeout(&self) -> Option<Instant> {
            self.wake
        }

        fn check_invariants(&self) -> Result<(), String> {
            Ok(())
        }
    }

    impl Part for Toy {
        fn owns_family(&self, family: u8) -> bool {
            family == self.fam
        }
    }

    fn drain<M: Machine>(m: &mut M) -> Vec<OutputOf<M>> {
        std::iter::from_fn(|| m.poll_output()).collect()
    }

    fn events<M: Machine<Event = Either<String, String>>>(m: &mut M) -> Vec<String> {
        drain(m)
            .into_iter()
            .filter_map(|o| match o {
                Output::Event(Either::A(e) | Either::B(e)) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn peer() -> PeerAddr {
        PeerAddr::from(([10, 0, 0, 1], 1))
    }

    fn frame(family: u8) -> Input<Either<u32, u32>, Either<u32, u32>> {
        Input::Frame {
            from: peer(),
            frame: Frame::new(Kind(u16::from(family) << 8 | 1), Bytes::new()),
        }
    }

    #[test]
    fn frames_go_by_family_clients_by_listener() {
        let mut p = Pair::new(Toy::new(1, "a", None), Toy::new(2, "b", None))
            .with_listeners_of_a([ListenerId(7)]);
        let t = Instant::ZERO;
        p.handle(t, frame(1)).unwrap();
        p.handle(t, frame(2)).unwrap();
        assert_eq!(events(&mut p), ["a frame 0x0101", "b frame 0x0201"]);
        assert_eq!(p.handle(t, frame(3)), Err(PairError::UnknownFamily(3)));

        let open = |c, l| Input::ClientOpened {
            client: ClientId(c),
            origin: ClientOrigin::unix(ListenerId(l)),
        };
        // Drained after every input, as the convention asks.
        let mut seen = Vec::new();
        for input in [
            open(1, 7),
            open(2, 0),
            Input::ClientData(ClientId(1), Bytes::new()),
            Input::ClientClosed(ClientId(2)),
        ] {
            p.handle(t, input).unwrap();
            seen.extend(events(&mut p));
        }
        assert_eq!(seen, ["a open c1", "b open c2", "a data c1", "b close c2"]);
        assert_eq!(p.owner_of(ClientId(1)), Some(Either::A(())));
        assert_eq!(
            p.owner_of(ClientId(2)),
            None,
            "closed clients are forgotten"
        );
        assert_eq!(
            p.handle(t, Input::ClientData(ClientId(2), Bytes::new())),
            Err(PairError::UnknownClient(ClientId(2)))
        );
        assert_eq!(
            p.handle(t, open(1, 0)),
            Err(PairError::DuplicateClient(ClientId(1)))
        );
    }

    #[test]
    fn commands_errors_and_effects_are_wrapped_and_routed_back() {
        let mut p = Pair::new(Toy::new(1, "a", None), Toy::new(2, "b", None));
        let t = Instant::ZERO;
        assert_eq!(
            p.handle(t, Input::Command(Either::B(0))),
            Err(PairError::B(No("b")))
        );
        p.handle(t, Input::Command(Either::A(5))).unwrap();
        p.handle(t, Input::Command(Either::B(5))).unwrap();
        let effects: Vec<(EffectId, Either<u32, u32>)> = drain(&mut p)
            .into_iter()
            .filter_map(|o| match o {
                Output::Effect(r) => Some((r.id, r.effect)),
                _ => None,
            })
            .collect();
        // Both asked for their own effect 5; the pair keeps the ids apart.
        assert_eq!(
            effects,
            [(EffectId(10), Either::A(5)), (EffectId(11), Either::B(5))]
        );
        p.handle(
            t,
            Input::EffectDone {
                id: EffectId(11),
                outcome: Ok(Either::B(50)),
            },
        )
        .unwrap();
        assert_eq!(events(&mut p), ["b effect 5 Ok(50)"]);
        p.handle(
            t,
            Input::EffectDone {
                id: EffectId(10),
                outcome: Err(EffectError::Overloaded),
            },
        )
        .unwrap();
        assert_eq!(events(&mut p), ["a effect 5 Err(Overloaded)"]);
        // A value of the wrong part is refused, not delivered.
        assert_eq!(
            p.handle(
                t,
                Input::EffectDone {
                    id: EffectId(10),
                    outcome: Ok(Either::B(1)),
                },
            ),
            Err(PairError::EffectMismatch(EffectId(10)))
        );
    }

    #[test]
    fn the_earlier_deadline_wins_and_only_due_parts_run() {
        let (ta, tb) = (Instant::from_secs(2), Instant::from_secs(1));
        let mut p = Pair::new(Toy::new(1, "a", Some(ta)), Toy::new(2, "b", Some(tb)));
        assert_eq!(p.poll_timeout(), Some(tb));
        p.handle_timeout(tb);
        assert_eq!(events(&mut p), ["b woke"]);
        assert_eq!(p.poll_timeout(), Some(ta));
        p.handle_timeout(ta);
        assert_eq!(events(&mut p), ["a woke"]);
        assert_eq!(p.poll_timeout(), None);
    }

    /// A link turns a's events into commands for b, inside the core, and decides what the
    /// program still sees.
    #[test]
    fn a_link_feeds_one_part_from_the_other() {
        struct Forward;
        impl Link<Toy, Toy> for Forward {
            fn on_a_event(&mut self, now: Instant, event: String, b: &mut Toy) -> Option<String> {
                if event == "a command 3" {
                    b.handle(now, Input::Command(7)).unwrap();
                    return None;
                }
                Some(event)
            }
        }
        let mut p = Pair::linked(Toy::new(1, "a", None), Toy::new(2, "b", None), Forward);
        p.handle(Instant::ZERO, Input::Command(Either::A(3)))
            .unwrap();
        let out = drain(&mut p);
        let events: Vec<&Either<String, String>> = out
            .iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(events, [&Either::B("b command 7".to_string())]);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Effect(r) if r.id == EffectId(15) && r.effect == Either::B(7)
        )));
    }
}
