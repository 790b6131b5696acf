//! [`Rate`]: how many tokens per period, and how many may be taken at once.

use std::fmt;
use std::time::Duration;

use weir_context::ConfigError;

/// The construct named in a rate's [`ConfigError`].
const CONSTRUCT: &str = "rate";

/// The largest bucket, in nanoseconds of refill time (`burst × period`).
///
/// Keeps every theoretical-arrival-time sum far from `u64` overflow: a
/// limiter's clock starts near zero and runs for at most a few centuries.
pub(crate) const MAX_TAU_NS: u64 = 1 << 61;

/// The refill period used for [`Rate::zero`] buckets. Any value works (the
/// clock is frozen for them); one millisecond keeps `burst × period` in range
/// for every `u32` burst.
pub(crate) const ZERO_RATE_PERIOD_NS: u64 = 1_000_000;

/// A quota: `count` tokens per `per`, plus the burst (bucket size).
///
/// `Rate` is a plain value; building one never fails. It is checked when it
/// is handed to [`RateLimiter::new`](crate::RateLimiter::new),
/// [`set_rate`](crate::RateLimiter::set_rate) or a
/// [`KeyedRateLimiter`](crate::KeyedRateLimiter), which return a
/// [`ConfigError`] (construct `"rate"`) for a setting that cannot work:
///
/// | setting | problem |
/// |---|---|
/// | `burst` 0 (`burst(0)`, on any rate) | [`Problem::Zero`](weir_context::Problem::Zero) |
/// | `count` 0 (`per_second(0)`) | [`Problem::Invalid`](weir_context::Problem::Invalid): use [`Rate::zero`] for a bucket that never refills |
/// | `period` zero (`every(Duration::ZERO)`) | `Problem::Invalid`: use [`Rate::unlimited`] for no limit |
/// | `count` faster than one token per nanosecond (`Rate::new(u32::MAX, 1 ns)`) | `Problem::Invalid`: use `Rate::unlimited` |
/// | `period` (`per / count`) longer than 2^61 ns, about 73 years (`every(Duration::MAX)`) | `Problem::Invalid`: use `Rate::zero` |
/// | `burst` × period longer than 2^61 ns (`per_hour(1).burst(u32::MAX)`) | [`Problem::TooLarge`](weir_context::Problem::TooLarge) with the largest burst for that period |
///
/// Every other value works, `burst(u32::MAX)` included (at two tokens per
/// second or faster, where `u32::MAX` periods fit in 2^61 ns).
///
/// The refill period (`per / count`) is kept in whole nanoseconds, rounded
/// **up**, so a limiter never grants faster than the rate it was given.
///
/// The burst defaults to 1 (strict pacing, like Go's `time.Tick`); set it with
/// [`burst`](Rate::burst). Unlike governor, `per_second(50)` does not imply a
/// burst of 50.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_rate::Rate;
///
/// let api = Rate::per_second(10).burst(5);
/// let slow = Rate::every(Duration::from_millis(250));
/// let per_min = Rate::per_minute(600);
/// assert_eq!(api.burst_size(), Some(5));
/// assert_eq!(slow.burst_size(), None); // 1 for a new limiter
/// assert_eq!(per_min.period(), Some(Duration::from_millis(100)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    kind: Kind,
    burst: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Per { count: u32, per: Duration },
    Unlimited,
    Zero,
}

impl Rate {
    /// `count` tokens per `per`, evenly spaced (one every `per / count`).
    pub const fn new(count: u32, per: Duration) -> Self {
        Rate {
            kind: Kind::Per { count, per },
            burst: None,
        }
    }

    /// `n` tokens per second.
    pub const fn per_second(n: u32) -> Self {
        Self::new(n, Duration::from_secs(1))
    }

    /// `n` tokens per minute.
    pub const fn per_minute(n: u32) -> Self {
        Self::new(n, Duration::from_secs(60))
    }

    /// `n` tokens per hour.
    pub const fn per_hour(n: u32) -> Self {
        Self::new(n, Duration::from_secs(3600))
    }

    /// One token every `period` (Go's `rate.Every`).
    pub const fn every(period: Duration) -> Self {
        Self::new(1, period)
    }

    /// No limit at all: every request is granted at once, whatever its size
    /// (Go's `rate.Inf`), `n` above the burst included.
    ///
    /// The burst is not used while the rate is unlimited, but it is kept and
    /// checked like any other: it must be at least 1 (`unlimited().burst(0)`
    /// is a [`ConfigError`]), and it is the bucket's size when a later
    /// [`set_rate`](crate::RateLimiter::set_rate) gives a limited rate without
    /// a burst of its own. That bucket starts full, as Go refills a limiter
    /// leaving `Inf`. Without a burst, an unlimited limiter keeps a burst of 1.
    pub const fn unlimited() -> Self {
        Rate {
            kind: Kind::Unlimited,
            burst: None,
        }
    }

    /// A bucket that never refills (Go's `rate.Limit(0)`): it starts with
    /// `burst` tokens, and once they are spent every request is denied until
    /// the rate is changed with [`set_rate`](crate::RateLimiter::set_rate).
    pub const fn zero() -> Self {
        Rate {
            kind: Kind::Zero,
            burst: None,
        }
    }

    /// Sets the burst: how many tokens the bucket holds, so how many may be
    /// taken at once after an idle spell. Must be at least 1 (checked when the
    /// rate is used, see [`Rate`]).
    pub const fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The burst given with [`burst`](Rate::burst), if any.
    pub const fn burst_size(&self) -> Option<u32> {
        self.burst
    }

    /// The time between two tokens as given (`per / count`, rounded down to
    /// whole nanoseconds; a limiter rounds it up instead, see [`Rate`]).
    /// `None` for [`unlimited`](Rate::unlimited) and [`zero`](Rate::zero)
    /// rates and for a zero count.
    pub fn period(&self) -> Option<Duration> {
        match self.kind {
            Kind::Per { count, per } if count > 0 => Some(per / count),
            _ => None,
        }
    }

    /// Whether this is [`Rate::unlimited`].
    pub const fn is_unlimited(&self) -> bool {
        matches!(self.kind, Kind::Unlimited)
    }

    /// Whether this is [`Rate::zero`].
    pub const fn is_zero(&self) -> bool {
        matches!(self.kind, Kind::Zero)
    }

    /// Checks the rate and turns it into the limiter's integer form, taking
    /// the burst from `current_burst` when none was given. `construct` names
    /// what is being set up, for the error.
    pub(crate) fn to_quota(self, current_burst: Option<u32>) -> Result<Quota, ConfigError> {
        let burst = self.burst.or(current_burst).unwrap_or(1);
        if burst == 0 {
            return Err(ConfigError::zero(CONSTRUCT, "burst"));
        }
        let period_ns = match self.kind {
            Kind::Unlimited => {
                return Ok(Quota {
                    period_ns: 0,
                    burst,
                    zero: false,
                    rate: self.burst(burst),
                });
            }
            Kind::Zero => ZERO_RATE_PERIOD_NS,
            Kind::Per { count, per } => Self::period_ns(count, per)?,
        };
        let tau = period_ns
            .checked_mul(u64::from(burst))
            .filter(|t| *t <= MAX_TAU_NS)
            .ok_or_else(|| ConfigError::too_large(CONSTRUCT, "burst", MAX_TAU_NS / period_ns))?;
        debug_assert!(tau > 0);
        Ok(Quota {
            period_ns,
            burst,
            zero: matches!(self.kind, Kind::Zero),
            rate: self.burst(burst),
        })
    }

    /// `per / count` in whole nanoseconds, rounded up; at least 1 and at most
    /// [`MAX_TAU_NS`].
    fn period_ns(count: u32, per: Duration) -> Result<u64, ConfigError> {
        if count == 0 {
            return Err(ConfigError::invalid(
                CONSTRUCT,
                "count",
                "must be at least 1 (use Rate::zero() for a bucket that never refills)",
            ));
        }
        if per.is_zero() {
            return Err(ConfigError::invalid(
                CONSTRUCT,
                "period",
                "must be longer than zero (use Rate::unlimited() for no limit)",
            ));
        }
        if per.as_nanos() < u128::from(count) {
            return Err(ConfigError::invalid(
                CONSTRUCT,
                "count",
                format!(
                    "{count} per {per:?} is faster than one token per nanosecond, \
                     the fastest rate a limiter takes (use Rate::unlimited() for no limit)"
                ),
            ));
        }
        let ns = per.as_nanos().div_ceil(u128::from(count));
        match u64::try_from(ns) {
            Ok(ns) if ns <= MAX_TAU_NS => Ok(ns),
            _ => Err(ConfigError::invalid(
                CONSTRUCT,
                "period",
                format!(
                    "{:?} per token is longer than the longest period a limiter takes, \
                     2^61 ns (about 73 years); use Rate::zero() for a bucket that never refills",
                    per / count
                ),
            )),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Per { count, per } => write!(f, "{count} per {per:?}")?,
            Kind::Unlimited => f.write_str("unlimited")?,
            Kind::Zero => f.write_str("zero (no refill)")?,
        }
        if let Some(b) = self.burst {
            write!(f, ", burst {b}")?;
        }
        Ok(())
    }
}

/// A checked quota in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    /// Nanoseconds per token; 0 means unlimited.
    pub(crate) period_ns: u64,
    pub(crate) burst: u32,
    /// A bucket that never refills.
    pub(crate) zero: bool,
    /// The rate as given, with its burst filled in.
    pub(crate) rate: Rate,
}

impl Quota {
    /// `burst × period` in nanoseconds.
    pub(crate) fn tau_ns(&self) -> u64 {
        self.period_ns.saturating_mul(u64::from(self.burst))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weir_context::Problem;

    fn problem(rate: Rate) -> (String, Problem) {
        let err = rate.to_quota(None).unwrap_err();
        assert_eq!(err.construct(), "rate");
        (err.setting().to_owned(), err.problem().clone())
    }

    fn invalid(rate: Rate, setting: &str, hint: &str) {
        let err = rate.to_quota(None).unwrap_err();
        assert_eq!(err.setting(), setting, "{err}");
        assert!(matches!(err.problem(), Problem::Invalid(_)), "{err}");
        assert!(err.to_string().contains(hint), "{err}");
    }

    #[test]
    fn checks_values() {
        invalid(Rate::per_second(0), "count", "use Rate::zero()");
        invalid(
            Rate::every(Duration::ZERO),
            "period",
            "use Rate::unlimited()",
        );
        assert_eq!(
            problem(Rate::per_second(1).burst(0)),
            ("burst".to_owned(), Problem::Zero)
        );
        invalid(
            Rate::new(1_000_000_001, Duration::from_secs(1)),
            "count",
            "faster than one token per nanosecond",
        );
        invalid(
            Rate::new(u32::MAX, Duration::from_nanos(1)),
            "count",
            "use Rate::unlimited()",
        );
        invalid(Rate::every(Duration::MAX), "period", "use Rate::zero()");
        invalid(
            Rate::new(u32::MAX, Duration::MAX),
            "period",
            "about 73 years",
        );
        // 3600 s per token: at most 2^61 ns / 3.6e12 ns = 640 511 tokens.
        assert_eq!(
            problem(Rate::per_hour(1).burst(u32::MAX)),
            ("burst".to_owned(), Problem::TooLarge { max: 640_511 })
        );
        let q = Rate::per_second(3).to_quota(None).unwrap();
        assert_eq!(q.period_ns, 333_333_334, "rounded up, never faster");
        assert_eq!(q.burst, 1);
        let q = Rate::per_second(10).to_quota(Some(7)).unwrap();
        assert_eq!(q.burst, 7, "the current burst is kept when none is given");
        let q = Rate::zero().burst(u32::MAX).to_quota(None).unwrap();
        assert!(q.zero);
        assert_eq!(Rate::unlimited().to_quota(None).unwrap().period_ns, 0);
        // The extremes that work.
        let q = Rate::new(1, Duration::from_nanos(1)).burst(u32::MAX);
        assert_eq!(q.to_quota(None).unwrap().period_ns, 1);
        let q = Rate::per_second(2).burst(u32::MAX).to_quota(None).unwrap();
        assert_eq!(q.tau_ns(), 500_000_000 * u64::from(u32::MAX));
        assert_eq!(
            problem(Rate::per_second(1).burst(u32::MAX)),
            ("burst".to_owned(), Problem::TooLarge { max: 2_305_843_009 })
        );
        let q = Rate::every(Duration::from_nanos(MAX_TAU_NS)).to_quota(None);
        assert_eq!(q.unwrap().period_ns, MAX_TAU_NS);
    }

    #[test]
    fn an_unlimited_rate_checks_its_burst_and_keeps_it() {
        assert_eq!(
            problem(Rate::unlimited().burst(0)),
            ("burst".to_owned(), Problem::Zero)
        );
        assert_eq!(Rate::unlimited().to_quota(None).unwrap().burst, 1);
        let q = Rate::unlimited().burst(u32::MAX).to_quota(None).unwrap();
        assert_eq!((q.period_ns, q.burst), (0, u32::MAX));
    }

    #[test]
    fn every_matches_go() {
        // Go's TestEvery, for the periods that are representable here.
        for (period, per_sec) in [
            (Duration::from_nanos(1), 1e9),
            (Duration::from_micros(1), 1e6),
            (Duration::from_millis(1), 1e3),
            (Duration::from_millis(10), 100.0),
            (Duration::from_millis(100), 10.0),
            (Duration::from_secs(1), 1.0),
            (Duration::from_secs(2), 0.5),
            (Duration::from_millis(2500), 0.4),
            (Duration::from_secs(4), 0.25),
            (Duration::from_secs(10), 0.1),
        ] {
            let q = Rate::every(period).to_quota(None).unwrap();
            let got = 1e9 / q.period_ns as f64;
            assert!((got / per_sec - 1.0).abs() < 1e-9, "{period:?}");
        }
        invalid(
            Rate::every(Duration::ZERO),
            "period",
            "use Rate::unlimited()",
        );
    }

    #[test]
    fn display() {
        assert_eq!(
            Rate::per_second(10).burst(5).to_string(),
            "10 per 1s, burst 5"
        );
        assert_eq!(Rate::unlimited().to_string(), "unlimited");
    }
}
