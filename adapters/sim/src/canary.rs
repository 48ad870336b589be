//! A deliberately broken heartbeat, kept to prove that the simulator finds bugs.
//!
//! [`StickyHeartbeat`] behaves like the real machine except that a beat it has already
//! seen (a network duplicate, or a reordered older beat) makes the peer "sticky": when the
//! peer's expiry comes, the machine swallows the `PeerDown`, re-arms the expiry as if a
//! new beat had come, and keeps the peer up — until a genuinely new beat clears the mark.
//! If the last thing a link carries before it goes silent (partition, crash, pause) is
//! such a copy, the peer is reported up forever and no `PeerDown` is ever emitted. The
//! bug is in the machine's behaviour (its timers, its state and its events), not in a
//! getter. Duplication is random, so only some seeds expose it: a seed sweep must catch it
//! while the correct machine passes the same sweep. Registered as `heartbeat-canary`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use flotilla_core::heartbeat::{
    Heartbeat, HeartbeatConfig, HeartbeatConfigError, HeartbeatError, HeartbeatEvent, decode_beat,
    encode_beat,
};
use flotilla_core::{Input, InputOf, Instant, Machine, NoEffect, Output, PeerAddr, Rng};

use crate::protocols::heartbeat::{HeartbeatMachine, HeartbeatProtocol};

/// The canary protocol: the heartbeat plug-in running the broken machine.
pub type CanaryProtocol = HeartbeatProtocol<StickyHeartbeat>;

/// A heartbeat that wrongly takes a repeated beat as proof of life for good.
#[derive(Debug)]
pub struct StickyHeartbeat {
    inner: Heartbeat,
    /// The newest beat passed to the inner machine, per peer: (incarnation, seq).
    newest: BTreeMap<PeerAddr, (u64, u64)>,
    /// Peers whose last beat was a repeat.
    sticky: BTreeSet<PeerAddr>,
    /// The inner machine's outputs, with the swallowed ones removed.
    out: VecDeque<Output<HeartbeatEvent>>,
}

impl StickyHeartbeat {
    /// Moves the inner machine's outputs out, keeping sticky peers up: their `PeerDown`
    /// is swallowed and a made-up beat re-arms them (its `PeerUp` swallowed too).
    fn collect(&mut self, now: Instant) {
        let mut revive = Vec::new();
        while let Some(o) = self.inner.poll_output() {
            match o {
                Output::Event(HeartbeatEvent::PeerDown { peer }) if self.sticky.contains(&peer) => {
                    revive.push(peer);
                }
                Output::Event(HeartbeatEvent::PeerUp { peer, .. }) if revive.contains(&peer) => {}
                o => self.out.push_back(o),
            }
        }
        for peer in revive {
            let Some(&(inc, seq)) = self.newest.get(&peer) else {
                continue;
            };
            // The planted bug: a beat nobody sent.
            self.newest.insert(peer, (inc, seq + 1));
            let fake = Input::Frame {
                from: peer,
                frame: encode_beat(inc, seq + 1),
            };
            let _ = self.inner.handle(now, fake);
            while let Some(o) = self.inner.poll_output() {
                if !matches!(o, Output::Event(HeartbeatEvent::PeerUp { .. })) {
                    self.out.push_back(o);
                }
            }
        }
    }
}

impl Machine for StickyHeartbeat {
    type Command = <Heartbeat as Machine>::Command;
    type Event = HeartbeatEvent;
    type Error = HeartbeatError;
    type Effect = NoEffect;
    type EffectValue = NoEffect;

    fn handle(&mut self, now: Instant, input: InputOf<Self>) -> Result<(), HeartbeatError> {
        if let Input::Frame { from, frame } = &input
            && let Ok((inc, seq)) = decode_beat(frame)
        {
            match self.newest.get(from) {
                Some(&(i, s)) if i == inc && seq <= s => {
                    self.sticky.insert(*from);
                }
                _ => {
                    self.newest.insert(*from, (inc, seq));
                    self.sticky.remove(from);
                }
            }
        }
        let r = self.inner.handle(now, input);
        self.collect(now);
        r
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        self.collect(now);
    }

    fn poll_output(&mut self) -> Option<Output<HeartbeatEvent>> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn check_invariants(&self) -> Result<(), String> {
        self.inner.check_invariants()
    }
}

impl HeartbeatMachine for StickyHeartbeat {
    const NAME: &'static str = "heartbeat-canary";

    fn create(
        config: HeartbeatConfig,
        now: Instant,
        rng: Rng,
    ) -> Result<Self, HeartbeatConfigError> {
        Ok(StickyHeartbeat {
            inner: Heartbeat::new(config, now, rng)?,
            newest: BTreeMap::new(),
            sticky: BTreeSet::new(),
            out: VecDeque::new(),
        })
    }

    fn reports_up(&self, peer: PeerAddr) -> bool {
        self.inner.is_up(peer)
    }
}
