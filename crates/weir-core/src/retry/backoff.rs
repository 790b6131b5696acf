//! Exponential backoff with full jitter: the delay before each retry.

use std::time::Duration;

use rand::Rng;

/// How a retry's delay is drawn below its exponential ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Jitter {
    /// A delay drawn uniformly between zero and the ceiling (AWS's "full
    /// jitter"): clients that failed together do not retry together, and
    /// the total work is the lowest of the usual schemes. The default.
    #[default]
    Full,
    /// The ceiling itself, no randomness: every client that failed at the
    /// same moment retries at the same moment. For tests and for a single
    /// caller only.
    None,
}

/// The exponential ceiling of retry `n` (1 for the first retry):
/// `min(max, base × multiplier^(n − 1))`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Backoff {
    pub(super) base: Duration,
    pub(super) max: Duration,
    pub(super) multiplier: f64,
    pub(super) jitter: Jitter,
}

impl Backoff {
    /// The ceiling of retry `n`; never above `max`, never a panic.
    pub(super) fn ceiling(&self, n: u32) -> Duration {
        // Past 2^11 doublings every ceiling is `max`; the cap keeps `powi`'s
        // argument in range.
        let exp = n.saturating_sub(1).min(2048) as i32;
        let secs = self.base.as_secs_f64() * self.multiplier.powi(exp);
        match Duration::try_from_secs_f64(secs) {
            Ok(d) => d.min(self.max),
            Err(_) => self.max,
        }
    }

    /// The delay before retry `n`, drawn with `rng`.
    pub(super) fn delay(&self, n: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(n);
        match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => {
                let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rng.random_range(0..=nanos))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn backoff(base_ms: u64, max_ms: u64, multiplier: f64) -> Backoff {
        Backoff {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
            multiplier,
            jitter: Jitter::Full,
        }
    }

    #[test]
    fn ceilings_grow_then_stop_at_max() {
        let b = backoff(100, 1000, 2.0);
        let ceilings: Vec<u64> = (1..=6).map(|n| b.ceiling(n).as_millis() as u64).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_millis(1000));
        let huge = Backoff {
            max: Duration::MAX,
            ..b
        };
        assert_eq!(huge.ceiling(u32::MAX), Duration::MAX);
        assert_eq!(
            backoff(100, 1000, 1.0).ceiling(50),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_seed_gives_the_same_delays() {
        let b = backoff(100, 10_000, 2.0);
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (1..=8).map(|n| b.delay(n, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let none = Backoff {
            jitter: Jitter::None,
            ..b
        };
        assert_eq!(
            none.delay(3, &mut SmallRng::seed_from_u64(0)),
            Duration::from_millis(400)
        );
    }

    proptest! {
        /// Every delay lies between zero and its ceiling, and ceilings never
        /// fall as retries go on, whatever the settings.
        #[test]
        fn delays_stay_under_their_ceiling(
            base in 1u64..10_000,
            max in 1u64..1_000_000,
            multiplier in 1.0f64..10.0,
            n in 1u32..200,
            seed in any::<u64>(),
        ) {
            let b = backoff(base, max.max(base), multiplier);
            let mut rng = SmallRng::seed_from_u64(seed);
            let d = b.delay(n, &mut rng);
            prop_assert!(d <= b.ceiling(n));
            prop_assert!(b.ceiling(n) <= b.ceiling(n + 1));
            prop_assert!(b.ceiling(n) <= b.max);
        }
    }
}
