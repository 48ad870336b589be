//! Paced repeats: send something again only after a wait without progress, and wait
//! twice as long after each repeat that brought none.
//!
//! Over TCP a lost segment is retransmitted by the kernel after 200 ms, then 400, 800…;
//! a protocol that resends on a fixed short period while the connection recovers only
//! stacks duplicates in the queue behind the lost segment — under 10 % loss most of the
//! traffic, until the queue is full and the driver starts dropping for real. A repeat
//! paced by this waits `first` after the last progress (so a segment retransmitted once
//! arrives first), then doubles up to `max`, and starts over at the next progress.

use core::time::Duration;

use crate::time::Instant;

/// When the next repeat of one thing (to one peer) is due.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    wait: Duration,
    since: Instant,
}

impl Backoff {
    /// Nothing due before `now + first`.
    pub fn new(first: Duration, max: Duration, now: Instant) -> Self {
        Backoff {
            first,
            max: max.max(first),
            wait: first,
            since: now,
        }
    }

    /// Progress was made at `now`: the next repeat waits `first` again from here.
    pub fn progress(&mut self, now: Instant) {
        self.wait = self.first;
        self.since = now;
    }

    /// True when a repeat is due at `now`; the caller then repeats, and the next one
    /// waits twice as long (at most `max`).
    pub fn fire(&mut self, now: Instant) -> bool {
        if now < self.since + self.wait {
            return false;
        }
        self.repeated(now);
        true
    }

    /// The peer showed it misses what the repeat carries (it asked again on its own):
    /// true when the repeat may go at once — at least `first` after the last repeat or
    /// progress, so one still on its way is not doubled —, and it then counts as the
    /// next repeat (the wait doubles), so hurried and paced repeats together keep the
    /// pace and add no traffic over a stream that only delays.
    pub fn hurry(&mut self, now: Instant) -> bool {
        if now < self.since + self.first {
            return false;
        }
        self.repeated(now);
        true
    }

    /// A repeat went at `now`: the next waits twice as long (at most `max`).
    fn repeated(&mut self, now: Instant) {
        self.since = now;
        self.wait = (self.wait * 2).min(self.max);
    }

    /// The current wait.
    pub fn wait(&self) -> Duration {
        self.wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn waits_double_and_progress_starts_over() {
        let t = Instant::from_millis;
        let mut b = Backoff::new(ms(400), ms(3200), t(0));
        assert!(!b.fire(t(399)));
        assert!(b.fire(t(400)));
        assert!(!b.fire(t(1199)));
        assert!(b.fire(t(1200)));
        assert!(b.fire(t(2800)));
        assert!(b.fire(t(6000)));
        assert_eq!(b.wait(), ms(3200));
        b.progress(t(6100));
        assert!(!b.fire(t(6499)));
        assert!(b.fire(t(6500)));
    }

    #[test]
    fn a_hurry_goes_at_once_but_not_twice_within_first() {
        let t = Instant::from_millis;
        let mut b = Backoff::new(ms(400), ms(1600), t(0));
        // Too soon after the start: what went may be on its way.
        assert!(!b.hurry(t(399)));
        assert!(b.hurry(t(400)));
        assert_eq!(
            b.wait(),
            ms(800),
            "a hurried repeat counts as the next repeat"
        );
        assert!(!b.hurry(t(799)));
        assert!(b.hurry(t(800)));
        // The paced repeat waits from the hurried one.
        assert!(!b.fire(t(800 + 1599)));
        assert!(b.fire(t(800 + 1600)));
    }

    proptest! {
        /// Without progress, repeats over a span are logarithmic until the wait reaches
        /// its maximum, then one per `max`: never more than span / first.
        #[test]
        fn repeats_are_bounded(step in 1u64..500, steps in 1usize..2000) {
            let mut b = Backoff::new(ms(400), ms(3200), Instant::ZERO);
            let mut fired = 0u64;
            let mut now = Instant::ZERO;
            for _ in 0..steps {
                now += ms(step);
                if b.fire(now) {
                    fired += 1;
                }
            }
            let span = now.as_nanos() / 1_000_000;
            prop_assert!(fired <= 4 + span / 3200, "{fired} repeats in {span} ms");
        }
    }
}
