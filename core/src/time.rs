//! The core's own notion of time.
//!
//! Machines never read a clock: every mutating call carries `now`. [`Instant`] is a plain
//! count of nanoseconds since an origin the driver picks (process start for the real
//! adapters, zero for the simulator), so traces print small stable numbers and two runs of
//! one seed produce identical logs.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use core::time::Duration;

/// A point in time, in nanoseconds since the driver's origin.
///
/// Arithmetic saturates instead of overflowing: a deadline far in the future is clamped to
/// [`Instant::MAX`], which drivers treat as "never".
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The driver's origin.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant; used as "never".
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000_000))
    }

    /// An instant `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Self {
        Instant(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_nanos(d)))
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(duration_nanos(d)))
    }
}

/// Nanoseconds in `d`, saturating at `u64::MAX` (about 584 years).
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Instant {
    /// Seconds with microsecond precision, e.g. `12.000350s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Instant::MAX {
            return f.write_str("never");
        }
        let micros = self.0 / 1_000;
        write!(f, "{}.{:06}s", micros / 1_000_000, micros % 1_000_000)
    }
}

/// Tracks the latest `now` a machine has seen and keeps time monotonic.
///
/// Drivers must pass non-decreasing time; a debug build asserts it, a release build clamps
/// (str0m and quinn take the same line), so a clock that steps back cannot rewind timers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    last: Instant,
}

impl Clock {
    /// Record `now` and return the time the machine should act on.
    pub fn advance(&mut self, now: Instant) -> Instant {
        debug_assert!(
            now >= self.last,
            "time went backwards: {now} after {}",
            self.last
        );
        if now > self.last {
            self.last = now;
        }
        self.last
    }

    /// The latest time seen.
    pub fn now(&self) -> Instant {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(
            Instant::ZERO.saturating_sub(Duration::from_secs(1)),
            Instant::ZERO
        );
        assert_eq!(
            Instant::from_secs(1) - Instant::from_secs(2),
            Duration::ZERO
        );
        assert_eq!(
            Instant::from_secs(3) - Instant::from_secs(1),
            Duration::from_secs(2)
        );
    }

    /// An instant reads back as the nanoseconds it was made of.
    #[test]
    fn an_instant_reads_back_in_nanoseconds() {
        assert_eq!(Instant::from_millis(3).as_nanos(), 3_000_000);
        assert_eq!(Instant::ZERO.as_nanos(), 0);
    }

    #[test]
    fn display_is_seconds_with_micros() {
        assert_eq!(
            Instant::from_nanos(12_000_350_999).to_string(),
            "12.000350s"
        );
        assert_eq!(Instant::MAX.to_string(), "never");
    }

    #[test]
    fn clock_keeps_latest() {
        let mut c = Clock::default();
        assert_eq!(c.advance(Instant::from_secs(2)), Instant::from_secs(2));
        assert_eq!(c.now(), Instant::from_secs(2));
    }
}
