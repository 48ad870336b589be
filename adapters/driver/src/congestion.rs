//! Backpressure from peers to clients.
//!
//! A machine that turns client input into frames for peers (a flood daemon taking
//! updates) can be handed input faster than its peer links drain; their queues are
//! bounded, and past them frames are dropped (peer delivery is best effort). So while a
//! peer link's queue is more than three quarters full, the driver stops reading client
//! streams and holds back the client input it already read — pipelining clients slow
//! down to the pace of the network instead of their updates being dropped — and goes on
//! once the queue is back under half. A
//! link that stays congested for [`STUCK_AFTER`] (a peer that stopped reading) no longer
//! holds the clients back: frames to it are dropped as before, until it drains again.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use flotilla_core::Instant;
use tokio::sync::watch;

/// How long a congested link may hold client input back.
pub(crate) const STUCK_AFTER: Duration = Duration::from_millis(500);
/// How often congestion is looked at again while there is some.
pub(crate) const RECHECK: Duration = Duration::from_millis(2);

pub(crate) struct Congestion {
    /// Links congested now, and since when.
    since: BTreeMap<SocketAddr, Instant>,
    /// Links that stayed congested too long: ignored until they drain.
    stuck: BTreeSet<SocketAddr>,
    /// Congested at fewer free slots than this; clear again at `clear` or more.
    low: usize,
    clear: usize,
    /// Whether client input is held back (what client tasks watch).
    hold: watch::Sender<bool>,
}

impl Congestion {
    pub(crate) fn new(queue: usize, hold: watch::Sender<bool>) -> Self {
        Congestion {
            since: BTreeMap::new(),
            stuck: BTreeSet::new(),
            low: (queue / 4).max(1),
            clear: (queue / 2).max(1),
            hold,
        }
    }

    /// A frame was queued on the link to `peer`, which has `room` free slots left.
    pub(crate) fn queued(&mut self, now: Instant, peer: SocketAddr, room: usize) {
        if room < self.low && !self.stuck.contains(&peer) {
            self.since.entry(peer).or_insert(now);
            self.publish();
        }
    }

    /// Looks at the congested and stuck links again (`room` gives a link's free slots,
    /// `None` once it is gone); how soon to look again, if there is anything to watch.
    pub(crate) fn recheck(
        &mut self,
        now: Instant,
        room: impl Fn(SocketAddr) -> Option<usize>,
    ) -> Option<Duration> {
        let clear = self.clear;
        let drained = |p: &SocketAddr| room(*p).is_none_or(|r| r >= clear);
        self.stuck.retain(|p| !drained(p));
        let mut newly_stuck = Vec::new();
        self.since.retain(|p, t| {
            if drained(p) {
                return false;
            }
            if now.saturating_duration_since(*t) >= STUCK_AFTER {
                newly_stuck.push(*p);
                return false;
            }
            true
        });
        self.stuck.extend(newly_stuck);
        self.publish();
        (!self.since.is_empty() || !self.stuck.is_empty()).then_some(RECHECK)
    }

    fn publish(&self) {
        let hold = !self.since.is_empty();
        self.hold.send_if_modified(|h| {
            let changed = *h != hold;
            *h = hold;
            changed
        });
    }

    /// Whether client input is held back now.
    pub(crate) fn holding(&self) -> bool {
        !self.since.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn congestion_holds_clients_until_the_link_drains_or_is_stuck() {
        let (tx, rx) = watch::channel(false);
        let mut c = Congestion::new(256, tx);
        let t = Instant::from_millis(10);
        c.queued(t, addr(1), 100);
        assert!(!c.holding(), "plenty of room");
        c.queued(t, addr(1), 10);
        assert!(c.holding() && *rx.borrow());
        // Still full a little later: still holding; then drained: released.
        assert_eq!(
            c.recheck(t + Duration::from_millis(1), |_| Some(20)),
            Some(RECHECK)
        );
        assert!(*rx.borrow());
        assert_eq!(c.recheck(t + Duration::from_millis(2), |_| Some(200)), None);
        assert!(!*rx.borrow());
        // A link that never drains is given up on after STUCK_AFTER, and not counted
        // again until it has drained once.
        c.queued(t, addr(2), 0);
        assert!(*rx.borrow());
        c.recheck(t + STUCK_AFTER, |_| Some(0));
        assert!(!*rx.borrow(), "a stuck peer does not hold the clients back");
        c.queued(t + STUCK_AFTER, addr(2), 0);
        assert!(!*rx.borrow());
        assert_eq!(c.recheck(t + STUCK_AFTER, |_| Some(200)), None);
        c.queued(t + STUCK_AFTER, addr(2), 0);
        assert!(*rx.borrow(), "drained once, it counts again");
        // A link that is gone releases its hold.
        assert_eq!(c.recheck(t + STUCK_AFTER, |_| None), None);
        assert!(!*rx.borrow());
    }
}
