//! [`AdaptiveLimitBuilder`]: the settings of an [`AdaptiveLimit`], checked
//! at [`build`](AdaptiveLimitBuilder::build).

use std::borrow::Cow;
use std::time::Duration;

use weir_context::__private::check_workers;
use weir_context::ConfigError;

use super::AdaptiveLimit;
use super::algorithm::{Aimd, Gradient, LimitAlgorithm};

/// The settings of an [`AdaptiveLimit`]. Setters record; [`build`](Self::build)
/// checks them all and is the only step that can fail.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()`"]
pub struct AdaptiveLimitBuilder {
    pub(super) algorithm: LimitAlgorithm,
    pub(super) min: usize,
    pub(super) max: usize,
    pub(super) initial: Option<usize>,
    pub(super) name: Option<Cow<'static, str>>,
    pub(super) window: Duration,
    pub(super) window_samples: u64,
}

impl Default for AdaptiveLimitBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// The longest measuring window: a limit that learns less than once an
/// hour is not adaptive.
const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// The most samples a window may wait for.
const MAX_WINDOW_SAMPLES: u64 = 1 << 20;

impl AdaptiveLimitBuilder {
    /// The default limit: [`Gradient`], between 1 and 1,000, starting at
    /// 10, windows of at least 10 ms and 20 verdicts.
    pub fn new() -> Self {
        Self {
            algorithm: LimitAlgorithm::default(),
            min: 1,
            max: 1000,
            initial: None,
            name: None,
            window: Duration::from_millis(10),
            window_samples: 20,
        }
    }

    /// The algorithm ([`LimitAlgorithm`], or an [`Aimd`] or [`Gradient`]).
    pub fn algorithm(mut self, algorithm: impl Into<LimitAlgorithm>) -> Self {
        self.algorithm = algorithm.into();
        self
    }

    /// Additive increase, multiplicative decrease ([`Aimd`]).
    pub fn aimd(self, aimd: Aimd) -> Self {
        self.algorithm(aimd)
    }

    /// The latency gradient ([`Gradient`]); the default.
    pub fn gradient(self, gradient: Gradient) -> Self {
        self.algorithm(gradient)
    }

    /// The lowest the limit goes (default 1). Checked at `build()`: at
    /// least 1, at most [`MAX_WORKERS`](crate::MAX_WORKERS), not above `max`.
    pub fn min(mut self, n: usize) -> Self {
        self.min = n;
        self
    }

    /// The highest the limit goes (default 1,000). Checked at `build()`: at
    /// least 1, at most [`MAX_WORKERS`](crate::MAX_WORKERS): the limit may
    /// become a pool's worker count.
    pub fn max(mut self, n: usize) -> Self {
        self.max = n;
        self
    }

    /// Where the limit starts (default 10, or the nearest value within
    /// `min..=max`). Checked at `build()`: within `min..=max`.
    pub fn initial(mut self, n: usize) -> Self {
        self.initial = Some(n);
        self
    }

    /// The name in the stats, in the tracing events and in errors (default
    /// `"adaptive limit"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The shortest measuring window (default 10 ms). The limit moves at
    /// most once a window. A window closes when it has lasted this long and
    /// holds enough verdicts of jobs admitted under the limit in force:
    /// one per slot (the limit), or only
    /// [`window_samples`](Self::window_samples) when they already show
    /// overload. Under load a window lasts about one job latency. Checked
    /// at `build()`: not zero, at most an hour.
    pub fn window(mut self, min_duration: Duration) -> Self {
        self.window = min_duration;
        self
    }

    /// The fewest verdicts (successes and drops) a window needs before it
    /// closes (default 20): enough for a mean latency to mean something.
    /// A window whose verdicts so far look fine waits for one per slot
    /// instead, since the first to come back are the quickest. Checked at
    /// `build()`: at least 1, at most 1,048,576.
    pub fn window_samples(mut self, n: u64) -> Self {
        self.window_samples = n;
        self
    }

    fn construct(&self) -> String {
        match &self.name {
            Some(name) => format!("adaptive limit `{name}`"),
            None => "adaptive limit".to_owned(),
        }
    }

    /// Checks every setting and makes the limit. Needs no runtime; the
    /// clock is tokio's, so a limit made inside a paused runtime measures
    /// paused time.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting: `min`, `max` or
    /// `initial` zero ([`Problem::Zero`](crate::Problem::Zero)) or above
    /// [`MAX_WORKERS`](crate::MAX_WORKERS) ([`Problem::TooLarge`](crate::Problem::TooLarge)),
    /// `min` above `max` or `initial` outside them, a zero or over-long
    /// window, or an algorithm setting out of its range
    /// ([`Problem::Invalid`](crate::Problem::Invalid)).
    pub fn build(self) -> Result<AdaptiveLimit, ConfigError> {
        let construct = self.construct();
        let min = check_workers(construct.clone(), "min", self.min)?;
        let max = check_workers(construct.clone(), "max", self.max)?;
        if min > max {
            return Err(ConfigError::invalid(
                construct,
                "min",
                format!("must not be above max (got min {min}, max {max})"),
            ));
        }
        let initial = match self.initial {
            None => 10usize.clamp(min, max),
            Some(n) => {
                let n = check_workers(construct.clone(), "initial", n)?;
                if !(min..=max).contains(&n) {
                    return Err(ConfigError::invalid(
                        construct,
                        "initial",
                        format!("must be within min..=max ({min}..={max}, got {n})"),
                    ));
                }
                n
            }
        };
        if self.window.is_zero() {
            return Err(ConfigError::zero(construct, "window"));
        }
        if self.window > MAX_WINDOW {
            return Err(ConfigError::invalid(
                construct,
                "window",
                "must be at most an hour",
            ));
        }
        match self.window_samples {
            0 => return Err(ConfigError::zero(construct, "window samples")),
            n if n > MAX_WINDOW_SAMPLES => {
                return Err(ConfigError::too_large(
                    construct,
                    "window samples",
                    MAX_WINDOW_SAMPLES,
                ));
            }
            _ => {}
        }
        self.algorithm.check(&construct)?;
        Ok(AdaptiveLimit::from_builder(self, min, max, initial))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weir_context::{MAX_WORKERS, Problem};

    fn err(b: AdaptiveLimitBuilder) -> ConfigError {
        b.build().unwrap_err()
    }

    #[test]
    fn sizes_are_checked_never_panic() {
        let b = AdaptiveLimit::builder;
        assert_eq!(err(b().min(0)).problem(), &Problem::Zero);
        assert_eq!(err(b().max(0)).setting(), "max");
        assert_eq!(err(b().initial(0)).setting(), "initial");
        assert_eq!(
            err(b().max(usize::MAX)).problem(),
            &Problem::TooLarge {
                max: MAX_WORKERS as u64
            }
        );
        assert_eq!(err(b().min(5).max(4)).setting(), "min");
        assert_eq!(err(b().min(5).max(9).initial(10)).setting(), "initial");
        assert_eq!(err(b().window(Duration::ZERO)).problem(), &Problem::Zero);
        assert_eq!(err(b().window(Duration::MAX)).setting(), "window");
        assert_eq!(err(b().window_samples(0)).setting(), "window samples");
        assert_eq!(
            err(b().window_samples(u64::MAX)).setting(),
            "window samples"
        );
        let named = err(b().name("db").min(0));
        assert_eq!(
            named.to_string(),
            "adaptive limit `db`: min must be at least 1 (got 0)"
        );
        assert!(b().max(MAX_WORKERS).min(MAX_WORKERS).build().is_ok());
    }

    #[test]
    fn the_default_initial_fits_the_range() {
        assert_eq!(AdaptiveLimit::builder().max(4).build().unwrap().limit(), 4);
        assert_eq!(
            AdaptiveLimit::builder()
                .min(32)
                .max(64)
                .build()
                .unwrap()
                .limit(),
            32
        );
        let default = AdaptiveLimit::builder().build().unwrap();
        assert_eq!(
            (default.limit(), default.min(), default.max()),
            (10, 1, 1000)
        );
    }
}
