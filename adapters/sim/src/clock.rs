//! Each node's local clock: an offset from true (global) time plus a drift in parts per
//! million, never running backwards.
//!
//! Machines see only local time, and the deadlines they return are local too. The
//! simulator converts a deadline back to the earliest global instant at which the local
//! clock has reached it, so a timer event never wakes a machine early.

use flotilla_core::Instant;

/// Largest drift accepted, in parts per million. Half a second per second is far beyond
/// any real oscillator and keeps the rate strictly positive.
pub const MAX_DRIFT_PPM: i64 = 500_000;

const PPM: i128 = 1_000_000;

/// A piecewise-linear, monotonic local clock.
///
/// Since the last change (at global `anchor_global`) the raw reading is
/// `anchor_local + (g - anchor_global) * (1 + drift_ppm / 1e6)`; the local time is the
/// larger of that and `floor`, the reading at the moment of the change. A step backwards
/// therefore freezes the local clock until the raw reading catches up, as a monotonic OS
/// clock would behave, instead of rewinding a machine's time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalClock {
    anchor_global: u64,
    anchor_local: i128,
    drift_ppm: i64,
    floor: u64,
}

impl LocalClock {
    /// The local reading at global time `global` (which must not precede the last change).
    pub fn local(&self, global: Instant) -> Instant {
        let elapsed = i128::from(global.as_nanos().saturating_sub(self.anchor_global));
        let raw = self.anchor_local + elapsed * (PPM + i128::from(self.drift_ppm)) / PPM;
        let raw = u64::try_from(raw.max(0)).unwrap_or(u64::MAX);
        Instant::from_nanos(raw.max(self.floor))
    }

    /// The earliest global instant, not before `not_before`, at which the local clock reads
    /// at least `local`. [`Instant::MAX`] stays "never".
    pub fn global_at(&self, local: Instant, not_before: Instant) -> Instant {
        if local == Instant::MAX {
            return Instant::MAX;
        }
        let l = i128::from(local.as_nanos());
        let need = l - self.anchor_local;
        let g = if l <= i128::from(self.floor) || need <= 0 {
            i128::from(self.anchor_global)
        } else {
            let rate = PPM + i128::from(self.drift_ppm);
            // Ceiling division: the first global nanosecond whose raw reading reaches `l`
            // (the reading floors, so this is exact).
            i128::from(self.anchor_global) + (need * PPM + rate - 1) / rate
        };
        let g = Instant::from_nanos(u64::try_from(g).unwrap_or(u64::MAX));
        debug_assert!(g == Instant::MAX || self.local(g) >= local);
        g.max(not_before)
    }

    /// Changes the model at global time `now`. `offset` is the new difference
    /// local − global (nanoseconds; `None` keeps the current one, including drift
    /// accumulated so far); `drift_ppm` the new rate error (`None` keeps it).
    pub fn set(&mut self, now: Instant, offset: Option<i64>, drift_ppm: Option<i64>) {
        let current = self.local(now);
        let g = i128::from(now.as_nanos());
        let offset = offset.map_or(i128::from(current.as_nanos()) - g, i128::from);
        self.anchor_global = now.as_nanos();
        self.anchor_local = g + offset;
        self.drift_ppm = drift_ppm
            .unwrap_or(self.drift_ppm)
            .clamp(-MAX_DRIFT_PPM, MAX_DRIFT_PPM);
        self.floor = current.as_nanos();
    }

    /// Current drift in parts per million.
    pub fn drift_ppm(&self) -> i64 {
        self.drift_ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unskewed_clock_is_global_time() {
        let c = LocalClock::default();
        assert_eq!(c.local(Instant::from_secs(3)), Instant::from_secs(3));
        assert_eq!(
            c.global_at(Instant::from_secs(3), Instant::ZERO),
            Instant::from_secs(3)
        );
    }

    #[test]
    fn offset_and_drift() {
        let mut c = LocalClock::default();
        c.set(Instant::ZERO, Some(50_000_000), Some(1000));
        // After 1 s of true time a clock that is 0.1 % fast has gained 1 ms.
        assert_eq!(
            c.local(Instant::from_secs(1)),
            Instant::from_nanos(1_051_000_000)
        );
        assert_eq!(
            c.global_at(Instant::from_nanos(1_051_000_000), Instant::ZERO),
            Instant::from_secs(1)
        );
    }

    #[test]
    fn stepping_back_freezes_instead_of_rewinding() {
        let mut c = LocalClock::default();
        c.set(Instant::from_secs(10), Some(-2_000_000_000), None);
        assert_eq!(c.local(Instant::from_secs(10)), Instant::from_secs(10));
        assert_eq!(c.local(Instant::from_secs(11)), Instant::from_secs(10));
        assert_eq!(c.local(Instant::from_secs(13)), Instant::from_secs(11));
        // A deadline inside the frozen stretch is reached as soon as the clock moves on.
        assert_eq!(
            c.global_at(Instant::from_secs(11), Instant::from_secs(10)),
            Instant::from_secs(13)
        );
    }

    proptest! {
        #[test]
        fn deadlines_round_up_and_time_is_monotonic(
            steps in proptest::collection::vec((0u64..5_000_000_000, -1_000_000_000i64..1_000_000_000, -MAX_DRIFT_PPM..MAX_DRIFT_PPM), 1..8),
            probe in 0u64..10_000_000_000,
        ) {
            let mut c = LocalClock::default();
            let mut now = Instant::ZERO;
            let mut last = c.local(now);
            for (dt, off, drift) in steps {
                now = Instant::from_nanos(now.as_nanos() + dt);
                let l = c.local(now);
                prop_assert!(l >= last);
                c.set(now, Some(off), Some(drift));
                // A forward step jumps at once; a backward one freezes.
                let l = c.local(now);
                prop_assert!(l >= last);
                last = l;
                let deadline = Instant::from_nanos(l.as_nanos() + probe);
                let g = c.global_at(deadline, now);
                prop_assert!(g >= now);
                prop_assert!(c.local(g) >= deadline);
                if g > now {
                    prop_assert!(c.local(Instant::from_nanos(g.as_nanos() - 1)) < deadline);
                }
            }
        }
    }
}
