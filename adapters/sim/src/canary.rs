//! A deliberately broken heartbeat, kept to prove that the simulator finds bugs.
//!
//! [`StickyHeartbeat`] behaves like the real machine except that a beat it has already
//! seen (a network duplicate, or a reordered older beat) convinces it the peer is alive
//! until the next new beat arrives. If the last thing a link carries before it goes
//! silent (partition, crash, pause) is such a copy, the peer is reported up forever.
//! Duplication is random, so only some seeds expose it: a seed sweep must catch it while
//! the correct machine passes the same sweep. Registered as protocol `heartbeat-canary`.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_core::heartbeat::{
    Heartbeat, HeartbeatCommand, HeartbeatConfig, HeartbeatConfigError, HeartbeatError,
    HeartbeatEvent, decode_beat,
};
use flotilla_core::{Input, Instant, Machine, Output, PeerAddr, Rng};

use crate::protocols::heartbeat::{HeartbeatMachine, HeartbeatProtocol};

/// The canary protocol: the heartbeat plug-in running the broken machine.
pub type CanaryProtocol = HeartbeatProtocol<StickyHeartbeat>;

/// A heartbeat that wrongly keeps a peer up after a repeated beat.
#[derive(Debug)]
pub struct StickyHeartbeat {
    inner: Heartbeat,
    newest: BTreeMap<PeerAddr, (u64, u64)>,
    sticky: BTreeSet<PeerAddr>,
}

impl Machine for StickyHeartbeat {
    type Command = HeartbeatCommand;
    type Event = HeartbeatEvent;
    type Error = HeartbeatError;

    fn handle(
        &mut self,
        now: Instant,
        input: Input<HeartbeatCommand>,
    ) -> Result<(), HeartbeatError> {
        let beat = match &input {
            Input::Frame { from, frame } => decode_beat(frame).ok().map(|b| (*from, b)),
            _ => None,
        };
        self.inner.handle(now, input)?;
        if let Some((from, (inc, seq))) = beat {
            match self.newest.get(&from) {
                Some(&(i, s)) if i == inc && seq <= s => {
                    // The planted bug: an old beat is taken as proof of life.
                    self.sticky.insert(from);
                }
                _ => {
                    self.newest.insert(from, (inc, seq));
                    self.sticky.remove(&from);
                }
            }
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
    }

    fn poll_output(&mut self) -> Option<Output<HeartbeatEvent>> {
        self.inner.poll_output()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
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
        })
    }

    fn reports_up(&self, peer: PeerAddr) -> bool {
        self.inner.is_up(peer) || self.sticky.contains(&peer)
    }
}
