//! The stream link model: what a TCP connection between two drivers does to frames.
//!
//! The datagram model ([`crate::network`]) loses frames; TCP never does while the
//! connection lives — it turns loss into delay. Each directed link carries one stream per
//! [`Lane`], as the drivers keep one connection per lane (SPEC.md §7.1). On a stream:
//!
//! - frames arrive **in order**: one that was lost and retransmitted holds back every
//!   frame behind it (head-of-line blocking);
//! - a lost segment costs a retransmission timeout (`min-rto`, Linux's 200 ms) for each
//!   time it is lost, not a lost frame;
//! - the link has a **bandwidth**: a frame is on the wire for `len / bandwidth`;
//! - the sender's **queue is bounded** as the driver's per-peer queue is: frames sent and
//!   not yet delivered count against it, and a frame past it is dropped and counted, as
//!   the driver drops it (`frames_dropped`);
//! - while the rules cut the link (partition, block), frames wait in the queue; when the
//!   link passes again they resume at the sender's next retransmission, which has backed
//!   off (doubling from `min-rto`, at most `max-rto`) all the while the link was cut.
//!
//! The model keeps no bytes: the simulator holds waiting frames; this decides when each
//! one arrives.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use flotilla_core::{Instant, Lane, Rng};

/// Settings of the stream model (`(:stream ...)` in a scenario).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamParams {
    /// Bytes per second a link carries.
    pub bandwidth: u64,
    /// Frames a sender queues per link and lane before it drops (the driver's
    /// `peer_queue`).
    pub queue: usize,
    /// The first retransmission timeout.
    pub min_rto: Duration,
    /// The longest retransmission timeout.
    pub max_rto: Duration,
}

impl Default for StreamParams {
    /// 1 Gbit/s, 4,096 frames (as `flotilla groupd`), Linux's 200 ms and 120 s.
    fn default() -> Self {
        StreamParams {
            bandwidth: 125_000_000,
            queue: 4096,
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
        }
    }
}

/// One directed stream: `from -> to` on a lane.
pub type StreamKey = (usize, usize, Lane);

#[derive(Clone, Debug, Default)]
struct StreamState {
    /// Arrival times of frames sent and not yet delivered, in order.
    in_flight: VecDeque<Instant>,
    /// Frames waiting while the link is cut.
    stalled: usize,
    /// When the link was cut with frames waiting, if it is.
    stalled_since: Option<Instant>,
    /// When the wire is free for the next frame's bytes.
    wire_free: Instant,
}

/// What the stream model does with one frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StreamVerdict {
    /// It arrives at this instant.
    Arrive(Instant),
    /// The link is cut: the simulator holds it until [`Streams::resume`].
    Stall,
    /// The sender's queue for this link is full: dropped.
    QueueFull,
}

/// Counters of the stream model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Frames dropped at a full queue.
    pub queue_full: u64,
    /// Segments retransmitted after a loss.
    pub retransmitted: u64,
}

/// Every stream of a run.
#[derive(Clone, Debug)]
pub struct Streams {
    params: StreamParams,
    links: BTreeMap<StreamKey, StreamState>,
    stats: StreamStats,
}

impl Streams {
    /// No streams yet.
    pub fn new(params: StreamParams) -> Self {
        Streams {
            params,
            links: BTreeMap::new(),
            stats: StreamStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Frames queued on `key` and not yet delivered at `now` (waiting ones included).
    pub fn occupancy(&mut self, key: StreamKey, now: Instant) -> usize {
        let s = self.links.entry(key).or_default();
        while s.in_flight.front().is_some_and(|t| *t <= now) {
            s.in_flight.pop_front();
        }
        s.in_flight.len() + s.stalled
    }

    /// Decides the fate of a frame of `len` bytes sent on `key` at `now`. `cut` says
    /// whether the rules stop the link now; `latency` is this frame's one-way delay and
    /// `loss` the probability each transmission of it is lost.
    pub fn send(
        &mut self,
        key: StreamKey,
        now: Instant,
        len: usize,
        (cut, latency, loss): (bool, Duration, f64),
        rng: &mut Rng,
    ) -> StreamVerdict {
        if self.occupancy(key, now) >= self.params.queue {
            self.stats.queue_full += 1;
            return StreamVerdict::QueueFull;
        }
        let s = self.links.entry(key).or_default();
        if cut || s.stalled > 0 {
            // Behind a frame that waits, a frame waits too: the stream keeps its order.
            s.stalled += 1;
            s.stalled_since.get_or_insert(now);
            return StreamVerdict::Stall;
        }
        StreamVerdict::Arrive(self.schedule(key, now, len, latency, loss, rng))
    }

    /// The link of `key` passes again at `now`: the instant its waiting frames start
    /// again (the sender's next retransmission). The caller then sends each with
    /// [`Streams::send_resumed`], in order.
    pub fn resume(&mut self, key: StreamKey, now: Instant) -> Option<Instant> {
        let s = self.links.get_mut(&key)?;
        let since = s.stalled_since.take()?;
        s.stalled = 0;
        // Retransmissions went out at since + rto, + 2 rto, + 4 rto… while the link was
        // cut; the first after `now` is the one that gets through.
        let mut rto = self.params.min_rto;
        let mut at = since + rto;
        while at < now {
            rto = (rto * 2).min(self.params.max_rto);
            at += rto;
        }
        Some(at)
    }

    /// Schedules a frame that waited on `key`, resuming at `at`.
    pub fn send_resumed(
        &mut self,
        key: StreamKey,
        at: Instant,
        len: usize,
        (latency, loss): (Duration, f64),
        rng: &mut Rng,
    ) -> Instant {
        self.schedule(key, at, len, latency, loss, rng)
    }

    /// Frames of `key` that were waiting are gone (an end crashed).
    pub fn reset(&mut self, key: StreamKey) {
        self.links.remove(&key);
    }

    /// Every stream key with frames waiting.
    pub fn stalled_keys(&self) -> Vec<StreamKey> {
        self.links
            .iter()
            .filter(|(_, s)| s.stalled > 0)
            .map(|(k, _)| *k)
            .collect()
    }

    fn schedule(
        &mut self,
        key: StreamKey,
        now: Instant,
        len: usize,
        latency: Duration,
        loss: f64,
        rng: &mut Rng,
    ) -> Instant {
        let params = self.params;
        let s = self.links.entry(key).or_default();
        let start = s.wire_free.max(now);
        let on_wire = Duration::from_nanos(
            (len as u64).saturating_mul(1_000_000_000) / params.bandwidth.max(1),
        );
        s.wire_free = start + on_wire;
        let mut arrive = start + on_wire + latency;
        // Each lost transmission costs one `min-rto`: the first retransmission comes
        // after the timeout, and further ones of the same segment are mostly sent early
        // by tail-loss probes and selective acknowledgements while traffic flows. Matched
        // to loss made with nftables drops on these machines: frames every 100 ms at 10 %
        // loss arrive with p99 107 ms and at most 201 ms (BENCHMARKS.md).
        let mut lost = Duration::ZERO;
        while loss > 0.0 && rng.chance(loss.min(0.99)) && lost < params.max_rto {
            self.stats.retransmitted += 1;
            lost += params.min_rto;
        }
        arrive += lost;
        // In order: never before the frame ahead of it.
        if let Some(last) = s.in_flight.back() {
            arrive = arrive.max(*last);
        }
        s.in_flight.push_back(arrive);
        arrive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Lane = Lane::Data;

    /// Bytes take no time on the wire, so arrivals are exact.
    const INSTANT_WIRE: StreamParams = StreamParams {
        bandwidth: u64::MAX,
        queue: 4096,
        min_rto: Duration::from_millis(200),
        max_rto: Duration::from_secs(120),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn at(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn loss_becomes_delay_and_blocks_the_frames_behind() {
        let mut s = Streams::new(StreamParams::default());
        let mut rng = Rng::from_seed(1);
        // Certain loss on the first transmission only is not expressible; use 0.99 of
        // a loss on one frame, then none.
        let first = s.send((0, 1, D), at(0), 100, (false, ms(1), 0.5), &mut rng);
        let StreamVerdict::Arrive(t1) = first else {
            panic!("{first:?}")
        };
        let second = s.send((0, 1, D), at(1), 100, (false, ms(1), 0.0), &mut rng);
        let StreamVerdict::Arrive(t2) = second else {
            panic!("{second:?}")
        };
        assert!(t2 >= t1, "in order: {t2} before {t1}");
        // Over many frames at 50 % loss, some wait at least one RTO.
        let mut late = 0;
        for k in 0..100 {
            let v = s.send((0, 2, D), at(k), 10, (false, ms(1), 0.5), &mut rng);
            if let StreamVerdict::Arrive(t) = v
                && t >= at(k) + ms(200)
            {
                late += 1;
            }
        }
        assert!(late > 30, "{late}");
        assert!(s.stats().retransmitted > 30);
    }

    #[test]
    fn lanes_do_not_block_each_other() {
        let mut s = Streams::new(INSTANT_WIRE);
        let mut rng = Rng::from_seed(2);
        // A data frame stuck behind retransmissions…
        let mut t = at(0);
        let mut slow = Instant::ZERO;
        while slow < at(300) {
            if let StreamVerdict::Arrive(a) =
                s.send((0, 1, D), t, 10, (false, ms(1), 0.9), &mut rng)
            {
                slow = a;
            }
            t += ms(1);
        }
        // …does not hold a control frame back.
        let c = s.send((0, 1, Lane::Control), t, 10, (false, ms(1), 0.0), &mut rng);
        assert_eq!(c, StreamVerdict::Arrive(t + ms(1)));
    }

    #[test]
    fn bandwidth_serialises_frames() {
        let mut s = Streams::new(StreamParams {
            bandwidth: 1_000_000,
            ..StreamParams::default()
        });
        let mut rng = Rng::from_seed(3);
        let a = s.send((0, 1, D), at(0), 10_000, (false, ms(1), 0.0), &mut rng);
        let b = s.send((0, 1, D), at(0), 10_000, (false, ms(1), 0.0), &mut rng);
        assert_eq!(a, StreamVerdict::Arrive(at(11)));
        assert_eq!(b, StreamVerdict::Arrive(at(21)));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut s = Streams::new(StreamParams {
            queue: 2,
            ..StreamParams::default()
        });
        let mut rng = Rng::from_seed(4);
        let send =
            |s: &mut Streams, rng: &mut Rng, t| s.send((0, 1, D), t, 10, (false, ms(5), 0.0), rng);
        assert!(matches!(
            send(&mut s, &mut rng, at(0)),
            StreamVerdict::Arrive(_)
        ));
        assert!(matches!(
            send(&mut s, &mut rng, at(0)),
            StreamVerdict::Arrive(_)
        ));
        assert_eq!(send(&mut s, &mut rng, at(0)), StreamVerdict::QueueFull);
        assert_eq!(s.stats().queue_full, 1);
        // Once delivered, they leave the queue.
        assert!(matches!(
            send(&mut s, &mut rng, at(10)),
            StreamVerdict::Arrive(_)
        ));
    }

    #[test]
    fn a_cut_link_holds_frames_and_resumes_at_the_backed_off_retransmission() {
        let mut s = Streams::new(INSTANT_WIRE);
        let mut rng = Rng::from_seed(5);
        let k = (0, 1, D);
        assert_eq!(
            s.send(k, at(1000), 10, (true, ms(1), 0.0), &mut rng),
            StreamVerdict::Stall
        );
        // Behind a waiting frame, even a passing link waits.
        assert_eq!(
            s.send(k, at(1500), 10, (false, ms(1), 0.0), &mut rng),
            StreamVerdict::Stall
        );
        assert_eq!(s.occupancy(k, at(2000)), 2);
        assert_eq!(s.stalled_keys(), vec![k]);
        // Retransmissions at 1.2, 1.6, 2.4, 4.0, 7.2 s: healed at 4.5 s, it resumes at 7.2.
        assert_eq!(s.resume(k, at(4500)), Some(at(7200)));
        let t = s.send_resumed(k, at(7200), 10, (ms(1), 0.0), &mut rng);
        assert_eq!(t, at(7201));
        assert!(s.stalled_keys().is_empty());
    }
}
