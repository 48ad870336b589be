//! How the simulator models effects (SPEC.md §6.3): each takes a latency drawn from the
//! effects' own random stream, may fail or hang with set probabilities, runs out of time
//! like a real driver's limit, and is lost — no outcome at all — when its node crashes
//! before it finishes. What a successful effect *does* (and what it returns) is the
//! protocol plug-in's to model ([`crate::Protocol::effect`]), so its "disk" can outlive a
//! crash as a real one would.

use core::time::Duration;

use flotilla_core::Rng;

/// Effect behaviour for every node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EffectParams {
    /// Minimum time an effect takes.
    pub latency: Duration,
    /// Mean of an exponential tail added to the latency.
    pub jitter: Duration,
    /// Probability an effect fails (nothing is done; the machine hears `Failed`).
    pub fail: f64,
    /// Probability an effect hangs (the machine hears `TimedOut` at its limit; nothing is
    /// done).
    pub hang: f64,
    /// The driver's limit for effects whose request names none.
    pub timeout: Duration,
}

impl Default for EffectParams {
    /// Quick and reliable: 1 ms, no tail, no failures, a 30 s limit (the drivers'
    /// default).
    fn default() -> Self {
        EffectParams {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            fail: 0.0,
            hang: 0.0,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A change to effect parameters; `None` fields keep their value.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EffectPatch {
    /// See [`EffectParams::latency`].
    pub latency: Option<Duration>,
    /// See [`EffectParams::jitter`].
    pub jitter: Option<Duration>,
    /// See [`EffectParams::fail`].
    pub fail: Option<f64>,
    /// See [`EffectParams::hang`].
    pub hang: Option<f64>,
    /// See [`EffectParams::timeout`].
    pub timeout: Option<Duration>,
}

impl EffectPatch {
    /// `base` with this patch applied.
    pub fn apply(&self, base: EffectParams) -> EffectParams {
        EffectParams {
            latency: self.latency.unwrap_or(base.latency),
            jitter: self.jitter.unwrap_or(base.jitter),
            fail: self.fail.unwrap_or(base.fail),
            hang: self.hang.unwrap_or(base.hang),
            timeout: self.timeout.unwrap_or(base.timeout),
        }
    }
}

/// How one effect will end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It runs (the plug-in models it) after the delay.
    Run,
    /// It fails after the delay, doing nothing.
    Fail,
    /// It runs out of time: the limit passes first, and it does nothing.
    TimedOut(Duration),
}

impl EffectParams {
    /// Draws one effect's fate and when the machine hears it, given its time limit.
    pub fn draw(&self, rng: &mut Rng, limit: Duration) -> (Duration, Fate) {
        let hang = rng.chance(self.hang);
        let fail = rng.chance(self.fail);
        let mut delay = self.latency;
        if !self.jitter.is_zero() {
            delay += rng.exponential(self.jitter);
        }
        if hang || delay > limit {
            (limit, Fate::TimedOut(limit))
        } else if fail {
            (delay, Fate::Fail)
        } else {
            (delay, Fate::Run)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_follow_the_probabilities_and_the_limit() {
        let p = EffectParams {
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(20),
            fail: 0.25,
            hang: 0.1,
            timeout: Duration::from_secs(1),
        };
        let mut rng = Rng::from_seed(3);
        let limit = Duration::from_millis(60);
        let (mut run, mut fail, mut out) = (0, 0, 0);
        for _ in 0..10_000 {
            match p.draw(&mut rng, limit) {
                (d, Fate::Run) => {
                    assert!(d >= p.latency && d <= limit);
                    run += 1;
                }
                (d, Fate::Fail) => {
                    assert!(d <= limit);
                    fail += 1;
                }
                (d, Fate::TimedOut(l)) => {
                    assert_eq!((d, l), (limit, limit));
                    out += 1;
                }
            }
        }
        // Hangs (10 %) plus tails past 60 ms (e^-2.5 ≈ 8 % of the rest) time out.
        assert!((1_400..2_200).contains(&out), "{out}");
        assert!((1_900..2_600).contains(&fail), "{fail}");
        assert_eq!(run + fail + out, 10_000);
    }
}
