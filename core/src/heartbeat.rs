//! The demonstration machine: peers exchange heartbeats and report each other up or down
//! (SPEC.md §3).
//!
//! Every `interval` (± `jitter`) a node sends `Beat { incarnation, seq }` to each
//! configured peer. A peer is up while a beat from it arrived within `timeout`; a beat
//! with a new incarnation means the peer restarted. It is small on purpose: it shows the
//! convention end to end under every driver.

use core::time::Duration;
use std::collections::BTreeMap;

use thiserror::Error;

use crate::compose::Part;
use crate::machine::{
    ClientId, EffectId, Input, InputOf, Machine, NoEffect, Outbox, Output, PeerAddr, Timers,
    debug_check,
};
use crate::rng::Rng;
use crate::time::{Clock, Instant};
use crate::wire::{DecodeError, Frame, Kind, Reader, Writer};

/// Protocol family byte of heartbeat frames.
pub const FAMILY: u8 = 0x01;
/// The one message kind: a beat.
pub const KIND_BEAT: Kind = Kind((FAMILY as u16) << 8 | 0x01);

/// Heartbeat settings.
#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatConfig {
    /// This node's own address (what peers see as the sender).
    pub me: PeerAddr,
    /// Peers to beat to and watch.
    pub peers: Vec<PeerAddr>,
    /// Time between beats. Typical: 100 ms to 1 s.
    pub interval: Duration,
    /// Silence after which a peer is down. Must exceed `interval`; typical 3 to 5 ×.
    pub timeout: Duration,
    /// Fraction (0 to 0.5) by which each interval is randomly stretched or shrunk.
    pub jitter: f64,
}

impl HeartbeatConfig {
    /// Defaults for a LAN: 200 ms beats, 1 s timeout, 10 % jitter.
    pub fn lan(me: PeerAddr, peers: Vec<PeerAddr>) -> Self {
        HeartbeatConfig {
            me,
            peers,
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            jitter: 0.1,
        }
    }
}

/// Configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HeartbeatConfigError {
    /// The interval is zero.
    #[error("heartbeat interval must be positive")]
    ZeroInterval,
    /// Peers would be declared down between two beats.
    #[error("timeout {timeout:?} must exceed the interval {interval:?} with jitter")]
    TimeoutTooShort {
        /// Configured timeout.
        timeout: Duration,
        /// Configured interval.
        interval: Duration,
    },
    /// Jitter outside 0..=0.5.
    #[error("jitter must be between 0 and 0.5")]
    BadJitter,
}

/// Commands from the embedding program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatCommand {
    /// Start watching a peer.
    AddPeer(PeerAddr),
    /// Stop watching a peer (no event is emitted for it afterwards).
    RemovePeer(PeerAddr),
}

/// What the machine reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatEvent {
    /// A beat arrived from a peer that was down (or never seen).
    PeerUp {
        /// The peer.
        peer: PeerAddr,
        /// Its incarnation.
        incarnation: u64,
    },
    /// A peer that was up restarted (new incarnation) without being seen down.
    PeerRestarted {
        /// The peer.
        peer: PeerAddr,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// No beat from a peer within the timeout.
    PeerDown {
        /// The peer.
        peer: PeerAddr,
    },
}

/// Why an input was refused. State is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HeartbeatError {
    /// The payload did not decode.
    #[error("bad heartbeat payload: {0}")]
    Decode(#[from] DecodeError),
    /// A beat from an address that is not a configured peer.
    #[error("beat from unknown peer {0}")]
    UnknownPeer(PeerAddr),
    /// Heartbeat nodes have no client port.
    #[error("heartbeat has no client port (client {0})")]
    NoClientPort(ClientId),
    /// Adding a peer that is already watched, or removing one that is not.
    #[error("peer {0} is already in that state")]
    PeerState(PeerAddr),
    /// The heartbeat asks for no effects, so no outcome can be its.
    #[error("heartbeat runs no effects (outcome for {0})")]
    NoEffects(EffectId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Send,
    Expire(PeerAddr),
}

#[derive(Clone, Debug, Default)]
struct PeerState {
    up: bool,
    incarnation: Option<u64>,
    last_seq: u64,
}

/// Counters for operators and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatStats {
    /// Beats sent.
    pub sent: u64,
    /// Beats accepted.
    pub received: u64,
    /// Beats ignored as old (seq not newer within the incarnation).
    pub stale: u64,
}

/// The heartbeat machine.
#[derive(Debug)]
pub struct Heartbeat {
    config: HeartbeatConfig,
    incarnation: u64,
    seq: u64,
    peers: BTreeMap<PeerAddr, PeerState>,
    timers: Timers<Timer>,
    outbox: Outbox<HeartbeatEvent>,
    clock: Clock,
    rng: Rng,
    stats: HeartbeatStats,
}

/// Encodes a beat payload.
pub fn encode_beat(incarnation: u64, seq: u64) -> Frame {
    let mut w = Writer::new();
    w.u64(incarnation).u64(seq);
    Frame::new(KIND_BEAT, w.finish())
}

/// Decodes a beat frame into `(incarnation, seq)`.
pub fn decode_beat(frame: &Frame) -> Result<(u64, u64), DecodeError> {
    if frame.kind != KIND_BEAT {
        return Err(DecodeError::UnknownKind(frame.kind));
    }
    let mut r = Reader::new(&frame.payload);
    let inc = r.u64()?;
    let seq = r.u64()?;
    r.finish()?;
    Ok((inc, seq))
}

impl Heartbeat {
    /// A machine that starts beating at `now`. The incarnation is drawn from `rng`, so a
    /// restarted node is told apart from its previous life.
    pub fn new(
        config: HeartbeatConfig,
        now: Instant,
        mut rng: Rng,
    ) -> Result<Self, HeartbeatConfigError> {
        if config.interval.is_zero() {
            return Err(HeartbeatConfigError::ZeroInterval);
        }
        if !(0.0..=0.5).contains(&config.jitter) {
            return Err(HeartbeatConfigError::BadJitter);
        }
        if config.timeout <= config.interval.mul_f64(1.0 + config.jitter) {
            return Err(HeartbeatConfigError::TimeoutTooShort {
                timeout: config.timeout,
                interval: config.interval,
            });
        }
        let incarnation = rng.next_u64();
        let peers = config
            .peers
            .iter()
            .filter(|p| **p != config.me)
            .map(|p| (*p, PeerState::default()))
            .collect();
        let mut timers = Timers::default();
        timers.set(Timer::Send, now);
        let mut clock = Clock::default();
        clock.advance(now);
        Ok(Heartbeat {
            config,
            incarnation,
            seq: 0,
            peers,
            timers,
            outbox: Outbox::default(),
            clock,
            rng,
            stats: HeartbeatStats::default(),
        })
    }

    /// Peers currently up.
    pub fn up_peers(&self) -> impl Iterator<Item = PeerAddr> + '_ {
        self.peers.iter().filter(|(_, s)| s.up).map(|(p, _)| *p)
    }

    /// Whether `peer` is up.
    pub fn is_up(&self, peer: PeerAddr) -> bool {
        self.peers.get(&peer).is_some_and(|s| s.up)
    }

    /// Peers watched.
    pub fn peers(&self) -> impl Iterator<Item = PeerAddr> + '_ {
        self.peers.keys().copied()
    }

    /// This node's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Counters.
    pub fn stats(&self) -> &HeartbeatStats {
        &self.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &HeartbeatConfig {
        &self.config
    }

    fn on_beat(
        &mut self,
        now: Instant,
        from: PeerAddr,
        frame: &Frame,
    ) -> Result<(), HeartbeatError> {
        let (inc, seq) = decode_beat(frame)?;
        let timeout = self.config.timeout;
        let state = self
            .peers
            .get_mut(&from)
            .ok_or(HeartbeatError::UnknownPeer(from))?;
        match state.incarnation {
            Some(known) if known == inc && seq <= state.last_seq => {
                // A duplicate or reordered beat says nothing newer.
                self.stats.stale += 1;
                return Ok(());
            }
            Some(known) if known != inc && state.up => {
                self.outbox.event(HeartbeatEvent::PeerRestarted {
                    peer: from,
                    incarnation: inc,
                });
            }
            _ if !state.up => {
                self.outbox.event(HeartbeatEvent::PeerUp {
                    peer: from,
                    incarnation: inc,
                });
            }
            _ => {}
        }
        state.up = true;
        state.incarnation = Some(inc);
        state.last_seq = seq;
        self.stats.received += 1;
        self.timers.set(Timer::Expire(from), now + timeout);
        Ok(())
    }

    fn send_beats(&mut self, now: Instant) {
        self.seq += 1;
        let frame = encode_beat(self.incarnation, self.seq);
        for peer in self.peers.keys() {
            self.outbox.transmit(*peer, frame.clone());
            self.stats.sent += 1;
        }
        let next = self.rng.jitter(self.config.interval, self.config.jitter);
        // A zero-length interval would let the driver spin; the config forbids it and
        // jitter is at most 50 %, so the next send is strictly later.
        debug_assert!(!next.is_zero());
        self.timers.set(Timer::Send, now + next);
    }
}

impl Machine for Heartbeat {
    type Command = HeartbeatCommand;
    type Event = HeartbeatEvent;
    type Error = HeartbeatError;
    type Effect = NoEffect;
    type EffectValue = NoEffect;

    fn handle(&mut self, now: Instant, input: InputOf<Self>) -> Result<(), HeartbeatError> {
        let result = self.on_input(now, input);
        debug_check(self);
        result
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.advance(now);
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Send => self.send_beats(now),
                Timer::Expire(peer) => {
                    if let Some(s) = self.peers.get_mut(&peer) {
                        debug_assert!(s.up, "expiry armed for a peer that is down");
                        s.up = false;
                        self.outbox.event(HeartbeatEvent::PeerDown { peer });
                    }
                }
            }
        }
        debug_assert!(self.poll_timeout().is_none_or(|t| t > now));
        debug_check(self);
    }

    fn poll_output(&mut self) -> Option<Output<HeartbeatEvent>> {
        self.outbox.pop()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// A peer is up exactly when its expiry timer is armed; the send timer is always
    /// armed; no timer names a peer that is not watched.
    fn check_invariants(&self) -> Result<(), String> {
        self.timers.check()?;
        if !self.timers.contains(&Timer::Send) {
            return Err("the send timer is not armed".to_string());
        }
        for (peer, s) in &self.peers {
            if s.up != self.timers.contains(&Timer::Expire(*peer)) {
                return Err(format!(
                    "peer {peer} is {} but its expiry timer is {}armed",
                    if s.up { "up" } else { "down" },
                    if s.up { "not " } else { "" }
                ));
            }
            if s.up && s.incarnation.is_none() {
                return Err(format!("peer {peer} is up without an incarnation"));
            }
        }
        for key in self.timers.keys() {
            if let Timer::Expire(p) = key
                && !self.peers.contains_key(p)
            {
                return Err(format!("expiry timer for {p}, which is not watched"));
            }
        }
        Ok(())
    }
}

impl Part for Heartbeat {
    fn owns_family(&self, family: u8) -> bool {
        family == FAMILY
    }
}

impl Heartbeat {
    fn on_input(&mut self, now: Instant, input: InputOf<Self>) -> Result<(), HeartbeatError> {
        let now = self.clock.advance(now);
        match input {
            Input::Frame { from, frame } => self.on_beat(now, from, &frame),
            Input::ClientOpened { client: c, .. }
            | Input::ClientData(c, _)
            | Input::ClientClosed(c) => Err(HeartbeatError::NoClientPort(c)),
            Input::EffectDone { id, .. } => Err(HeartbeatError::NoEffects(id)),
            Input::Command(HeartbeatCommand::AddPeer(p)) => {
                if p == self.config.me || self.peers.contains_key(&p) {
                    return Err(HeartbeatError::PeerState(p));
                }
                self.peers.insert(p, PeerState::default());
                Ok(())
            }
            Input::Command(HeartbeatCommand::RemovePeer(p)) => {
                self.peers.remove(&p).ok_or(HeartbeatError::PeerState(p))?;
                self.timers.cancel(&Timer::Expire(p));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn addr(i: u8) -> PeerAddr {
        PeerAddr::from(([10, 0, 0, i], 7000))
    }

    fn node(i: u8, n: u8) -> Heartbeat {
        let cfg = HeartbeatConfig::lan(addr(i), (1..=n).map(addr).collect());
        Heartbeat::new(cfg, Instant::ZERO, Rng::from_seed(u64::from(i))).unwrap()
    }

    fn drain(m: &mut Heartbeat) -> Vec<Output<HeartbeatEvent>> {
        std::iter::from_fn(|| m.poll_output()).collect()
    }

    /// The machine's check fed corrupted states: each clause fires.
    #[test]
    fn the_check_fires_on_each_corrupted_state() {
        let fires = |m: &Heartbeat, what: &str| {
            let e = m.check_invariants().expect_err(what);
            assert!(e.contains(what), "expected {what:?}, got {e:?}");
        };
        let fresh = || {
            let mut a = node(1, 3);
            a.handle_timeout(Instant::ZERO);
            assert!(a.check_invariants().is_ok());
            a
        };
        let mut a = fresh();
        a.timers.cancel(&Timer::Send);
        fires(&a, "the send timer is not armed");
        // Up without its expiry timer, and down with one.
        let mut a = fresh();
        let p = a.peers.get_mut(&addr(2)).unwrap();
        p.up = true;
        p.incarnation = Some(1);
        fires(&a, "is up but its expiry timer is not armed");
        let mut a = fresh();
        a.timers.set(Timer::Expire(addr(2)), Instant::from_secs(9));
        fires(&a, "is down but its expiry timer is armed");
        // Up, with its timer, but no incarnation heard.
        let mut a = fresh();
        a.peers.get_mut(&addr(2)).unwrap().up = true;
        a.timers.set(Timer::Expire(addr(2)), Instant::from_secs(9));
        fires(&a, "up without an incarnation");
        // A timer for a peer nobody watches.
        let mut a = fresh();
        a.timers.set(Timer::Expire(addr(9)), Instant::from_secs(9));
        fires(&a, "not watched");
        // (The timer wheel's own check: `machine::tests::the_timer_check_fires_…`.)
    }

    #[test]
    fn beats_go_to_every_peer_but_self() {
        let mut a = node(1, 3);
        a.handle_timeout(Instant::ZERO);
        let to: Vec<PeerAddr> = drain(&mut a)
            .into_iter()
            .filter_map(|o| match o {
                Output::Transmit(t) => Some(t.to),
                _ => None,
            })
            .collect();
        assert_eq!(to, vec![addr(2), addr(3)]);
        assert!(a.poll_timeout().unwrap() > Instant::ZERO);
    }

    #[test]
    fn up_then_down_then_restart() {
        let mut a = node(1, 2);
        let t0 = Instant::from_secs(1);
        let beat = |inc, seq| Input::Frame {
            from: addr(2),
            frame: encode_beat(inc, seq),
        };
        a.handle(t0, beat(7, 1)).unwrap();
        assert!(a.is_up(addr(2)));
        assert_eq!(
            drain(&mut a),
            vec![Output::Event(HeartbeatEvent::PeerUp {
                peer: addr(2),
                incarnation: 7
            })]
        );
        // A duplicate is ignored.
        a.handle(t0, beat(7, 1)).unwrap();
        assert_eq!(a.stats().stale, 1);
        // A new incarnation while up is a restart.
        a.handle(t0, beat(8, 1)).unwrap();
        assert_eq!(
            drain(&mut a),
            vec![Output::Event(HeartbeatEvent::PeerRestarted {
                peer: addr(2),
                incarnation: 8
            })]
        );
        // Silence past the timeout: down, exactly once.
        let late = t0 + Duration::from_secs(1);
        a.handle_timeout(late);
        let events: Vec<_> = drain(&mut a)
            .into_iter()
            .filter(|o| matches!(o, Output::Event(_)))
            .collect();
        assert_eq!(
            events,
            vec![Output::Event(HeartbeatEvent::PeerDown { peer: addr(2) })]
        );
        assert!(!a.is_up(addr(2)));
    }

    #[test]
    fn bad_input_is_refused_without_state_change() {
        let mut a = node(1, 2);
        let bad = Input::Frame {
            from: addr(2),
            frame: Frame::new(KIND_BEAT, bytes::Bytes::from_static(b"short")),
        };
        assert!(matches!(
            a.handle(Instant::ZERO, bad),
            Err(HeartbeatError::Decode(_))
        ));
        let stranger = Input::Frame {
            from: addr(9),
            frame: encode_beat(1, 1),
        };
        assert_eq!(
            a.handle(Instant::ZERO, stranger),
            Err(HeartbeatError::UnknownPeer(addr(9)))
        );
        assert!(!a.is_up(addr(2)));
        assert_eq!(a.stats().received, 0);
    }

    #[test]
    fn config_is_validated() {
        let mut cfg = HeartbeatConfig::lan(addr(1), vec![]);
        cfg.timeout = cfg.interval;
        assert!(matches!(
            Heartbeat::new(cfg, Instant::ZERO, Rng::from_seed(1)),
            Err(HeartbeatConfigError::TimeoutTooShort { .. })
        ));
    }

    proptest! {
        /// Whatever order beats and timeouts arrive in, a fresh beat makes the peer up,
        /// a stale one changes nothing, and after a timeout the peer is up exactly when a
        /// fresh beat arrived within the timeout; the deadline always moves past `now`.
        #[test]
        fn view_matches_last_beat(steps in proptest::collection::vec((0u64..600, any::<bool>(), 0u64..3, 0u64..5), 1..60)) {
            let mut a = node(1, 2);
            let mut now = Instant::ZERO;
            let mut last_fresh: Option<Instant> = None;
            let mut best: Option<(u64, u64)> = None;
            for (dt, beat, inc, seq) in steps {
                now += Duration::from_millis(dt);
                let before = a.is_up(addr(2));
                if beat {
                    a.handle(now, Input::Frame { from: addr(2), frame: encode_beat(inc, seq) }).unwrap();
                    let fresh = match best { Some((i, s)) => i != inc || seq > s, None => true };
                    if fresh {
                        last_fresh = Some(now);
                        best = Some((inc, seq));
                        prop_assert!(a.is_up(addr(2)));
                    } else {
                        prop_assert_eq!(a.is_up(addr(2)), before);
                    }
                } else {
                    a.handle_timeout(now);
                    if let Some(t) = a.poll_timeout() { prop_assert!(t > now); }
                    let expect_up = last_fresh.is_some_and(|t| now < t + a.config().timeout);
                    prop_assert_eq!(a.is_up(addr(2)), expect_up);
                }
                let _ = drain(&mut a);
            }
        }
    }
}
