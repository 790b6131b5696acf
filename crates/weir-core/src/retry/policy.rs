//! [`RetryPolicy`]: when to retry, how long to wait, and how much retrying
//! the callers may do together.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use weir_context::ConfigError;

use super::backoff::{Backoff, Jitter};
use super::budget::RetryBudget;
use super::report::RetryStats;

type Classifier<E> = Arc<dyn Fn(&E) -> bool + Send + Sync>;

/// The longest pause a [`RetryPolicy`] may take between two attempts (one
/// day): a longer `max_delay` is a [`ConfigError`], because a retry loop
/// that sleeps for days looks like a hang.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// When to retry a failed operation, how long to wait before each retry,
/// and when to stop. Built with [`RetryPolicy::builder`]; used with
/// [`retry`](super::retry) (and later by a pool or a pipeline stage).
///
/// `E` is the operation's error type, which the classifier
/// ([`RetryPolicyBuilder::retry_if`]) looks at.
///
/// Cheap to clone: clones share one random source, one budget and one set
/// of [`stats`](Self::stats).
pub struct RetryPolicy<E = anyhow::Error> {
    inner: Arc<Inner<E>>,
}

struct Inner<E> {
    backoff: Backoff,
    max_attempts: u32,
    max_elapsed: Option<Duration>,
    retry_if: Option<Classifier<E>>,
    budget: Option<RetryBudget>,
    rng: Mutex<SmallRng>,
    stats: Mutex<RetryStats>,
}

impl<E> Clone for RetryPolicy<E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E> fmt::Debug for RetryPolicy<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("RetryPolicy")
            .field("base", &i.backoff.base)
            .field("max_delay", &i.backoff.max)
            .field("multiplier", &i.backoff.multiplier)
            .field("jitter", &i.backoff.jitter)
            .field("max_attempts", &i.max_attempts)
            .field("max_elapsed", &i.max_elapsed)
            .field("classifier", &i.retry_if.is_some())
            .field("budget", &i.budget)
            .finish()
    }
}

impl<E> RetryPolicy<E> {
    /// The settings, starting from the defaults
    /// ([`RetryPolicyBuilder::new`]).
    pub fn builder() -> RetryPolicyBuilder<E> {
        RetryPolicyBuilder::new()
    }

    /// Totals over every call made with this policy and its clones.
    pub fn stats(&self) -> RetryStats {
        *self.lock_stats()
    }

    /// The most attempts a call makes, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.inner.max_attempts
    }

    /// The budget the retries draw on, if the policy has one.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.inner.budget.as_ref()
    }

    pub(super) fn max_elapsed(&self) -> Option<Duration> {
        self.inner.max_elapsed
    }

    /// Whether `error` is worth retrying.
    pub(super) fn retryable(&self, error: &E) -> bool {
        self.inner.retry_if.as_ref().is_none_or(|f| f(error))
    }

    /// The delay before retry `n` (1 for the first retry).
    pub(super) fn delay(&self, n: u32) -> Duration {
        // Only the draw runs under this lock.
        let mut rng = self
            .inner
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.backoff.delay(n, &mut *rng)
    }

    pub(super) fn lock_stats(&self) -> MutexGuard<'_, RetryStats> {
        // Only counter updates run under this lock.
        self.inner
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The settings of a [`RetryPolicy`]. Setters record;
/// [`build`](Self::build) checks them all and is the only step that can
/// fail.
#[must_use = "a builder does nothing until `build()`"]
pub struct RetryPolicyBuilder<E = anyhow::Error> {
    base: Duration,
    max_delay: Duration,
    multiplier: f64,
    jitter: Jitter,
    max_attempts: u32,
    max_elapsed: Option<Duration>,
    retry_if: Option<Classifier<E>>,
    budget: Option<RetryBudget>,
    seed: Option<u64>,
}

impl<E> fmt::Debug for RetryPolicyBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("base", &self.base)
            .field("max_delay", &self.max_delay)
            .field("multiplier", &self.multiplier)
            .field("jitter", &self.jitter)
            .field("max_attempts", &self.max_attempts)
            .field("max_elapsed", &self.max_elapsed)
            .field("classifier", &self.retry_if.is_some())
            .field("budget", &self.budget)
            .field("seed", &self.seed)
            .finish()
    }
}

impl<E> Default for RetryPolicyBuilder<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> RetryPolicyBuilder<E> {
    /// Three attempts; backoff from 100 ms doubling up to 10 s, with full
    /// jitter; no time limit; every error retried; no budget; a random
    /// seed.
    pub fn new() -> Self {
        Self {
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: Jitter::Full,
            max_attempts: 3,
            max_elapsed: None,
            retry_if: None,
            budget: None,
            seed: None,
        }
    }

    /// The ceiling of the first retry's delay (default 100 ms); retry `n`
    /// waits up to `base × multiplier^(n − 1)`, at most
    /// [`max_delay`](Self::max_delay). Checked at `build()`: not zero (a
    /// retry with no backoff is what turns a blip into an outage).
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The longest delay between two attempts (default 10 s). Checked at
    /// `build()`: not below `base`. `Duration::MAX` means no cap.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// How fast the ceiling grows (default 2: doubling). Checked at
    /// `build()`: a finite number, at least 1.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// How each delay is drawn below its ceiling (default [`Jitter::Full`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The most attempts, the first included (default 3). Checked at
    /// `build()`: at least 1 (1: never retry).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Start no attempt later than `max` after the first one began (no
    /// limit by default). A context's deadline bounds a call too, and is
    /// usually the better tool: it also cancels the attempt in progress.
    /// Checked at `build()`: not zero; `Duration::MAX` means no limit.
    pub fn max_elapsed(mut self, max: Duration) -> Self {
        self.max_elapsed = Some(max);
        self
    }

    /// Retry only the errors for which `retryable` returns `true` (every
    /// error by default). A "not found" or a validation error will not go
    /// away by asking again.
    pub fn retry_if(mut self, retryable: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Some(Arc::new(retryable));
        self
    }

    /// Draw every retry from `budget`, shared with every other policy and
    /// caller that holds a clone of it (none by default). See
    /// [`RetryBudget`].
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Seed the jitter's random source, so that the delays are the same on
    /// every run (tests, simulations). By default it is seeded from the
    /// operating system.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks every setting and makes the policy. Needs no runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: a zero `base`,
    /// `max_attempts` or `max_elapsed` ([`Problem::Zero`](crate::Problem::Zero)),
    /// a `max_delay` below `base` or above [`MAX_RETRY_DELAY`] (a pause that
    /// long between attempts would look like a hang), or a multiplier below
    /// 1 or not finite ([`Problem::Invalid`](crate::Problem::Invalid)).
    pub fn build(self) -> Result<RetryPolicy<E>, ConfigError> {
        const C: &str = "retry policy";
        if self.base.is_zero() {
            return Err(ConfigError::zero(C, "base"));
        }
        if self.max_delay > MAX_RETRY_DELAY {
            return Err(ConfigError::invalid(
                C,
                "max_delay",
                format!(
                    "must be at most {MAX_RETRY_DELAY:?} (got {:?})",
                    self.max_delay
                ),
            ));
        }
        if self.max_delay < self.base {
            return Err(ConfigError::invalid(
                C,
                "max_delay",
                format!(
                    "must not be below base (got {:?} < {:?})",
                    self.max_delay, self.base
                ),
            ));
        }
        let m = self.multiplier;
        if !(m.is_finite() && m >= 1.0) {
            return Err(ConfigError::invalid(
                C,
                "multiplier",
                format!("must be a finite number, at least 1 (got {m})"),
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::zero(C, "max_attempts"));
        }
        if self.max_elapsed == Some(Duration::ZERO) {
            return Err(ConfigError::zero(C, "max_elapsed"));
        }
        let rng = match self.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_rng(&mut rand::rng()),
        };
        Ok(RetryPolicy {
            inner: Arc::new(Inner {
                backoff: Backoff {
                    base: self.base,
                    max: self.max_delay,
                    multiplier: m,
                    jitter: self.jitter,
                },
                max_attempts: self.max_attempts,
                // A limit beyond any run is no limit.
                max_elapsed: self.max_elapsed.filter(|d| *d != Duration::MAX),
                retry_if: self.retry_if,
                budget: self.budget,
                rng: Mutex::new(rng),
                stats: Mutex::new(RetryStats::default()),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weir_context::Problem;

    type B = RetryPolicyBuilder<std::io::Error>;

    #[test]
    fn settings_are_checked_never_panic() {
        let err = |b: B| b.build().unwrap_err();
        assert_eq!(err(B::new().base(Duration::ZERO)).problem(), &Problem::Zero);
        assert_eq!(
            err(B::new()
                .base(Duration::from_secs(2))
                .max_delay(Duration::from_secs(1)))
            .setting(),
            "max_delay"
        );
        assert_eq!(err(B::new().multiplier(0.5)).setting(), "multiplier");
        assert_eq!(err(B::new().multiplier(f64::NAN)).setting(), "multiplier");
        assert_eq!(
            err(B::new().multiplier(f64::INFINITY)).setting(),
            "multiplier"
        );
        assert_eq!(err(B::new().max_attempts(0)).setting(), "max_attempts");
        assert_eq!(
            err(B::new().max_elapsed(Duration::ZERO)).setting(),
            "max_elapsed"
        );
        assert_eq!(
            err(B::new().max_delay(Duration::MAX)).setting(),
            "max_delay"
        );
        let fine = B::new()
            .max_delay(MAX_RETRY_DELAY)
            .max_elapsed(Duration::MAX)
            .max_attempts(u32::MAX)
            .multiplier(1.0)
            .build()
            .unwrap();
        assert_eq!(fine.max_attempts(), u32::MAX);
        assert_eq!(
            err(B::new().base(Duration::ZERO)).to_string(),
            "retry policy: base must be at least 1 (got 0)"
        );
    }

    #[test]
    fn the_classifier_decides_and_defaults_to_everything() {
        let all = B::new().build().unwrap();
        let timeouts = B::new()
            .retry_if(|e: &std::io::Error| e.kind() == std::io::ErrorKind::TimedOut)
            .build()
            .unwrap();
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(all.retryable(&missing));
        assert!(timeouts.retryable(&timeout));
        assert!(!timeouts.retryable(&missing));
    }
}
