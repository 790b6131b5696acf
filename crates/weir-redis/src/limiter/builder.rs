//! [`SharedRateLimiterBuilder`]: the limiter's settings, checked at
//! [`build`](SharedRateLimiterBuilder::build).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_context::ConfigError;
use weir_rate::{Rate, RateLimiter};

use super::backend::{Backend, Params};
use super::breaker::Breaker;
use super::fallback::Fallback;
use super::lease::LeaseBook;
use super::{Counters, Inner, OutagePolicy, SharedRateLimiter};

/// The largest `burst × period` the script takes, in microseconds (about
/// 142 years): keeps every sum exact in Lua's doubles.
const MAX_TAU_US: u64 = 1 << 52;

/// The longest per-call timeout: a limiter must never hang on Redis.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Settings for a [`SharedRateLimiter`]; start with
/// [`SharedRateLimiter::builder`].
///
/// | setting | default |
/// |---|---|
/// | [`prefix`](Self::prefix) | `"weir:rate"` |
/// | [`timeout`](Self::timeout) | 100 ms per Redis call |
/// | [`on_outage`](Self::on_outage) | [`OutagePolicy::FailClosed`] |
/// | [`recheck_every`](Self::recheck_every) | 250 ms |
/// | [`lease`](Self::lease) | none: every decision is a round trip |
#[derive(Debug, Clone)]
pub struct SharedRateLimiterBuilder {
    rate: Rate,
    prefix: String,
    timeout: Duration,
    recheck: Duration,
    policy: OutagePolicy,
    lease: Option<u32>,
}

impl SharedRateLimiterBuilder {
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            rate,
            prefix: "weir:rate".to_owned(),
            timeout: Duration::from_millis(100),
            recheck: Duration::from_millis(250),
            policy: OutagePolicy::FailClosed,
            lease: None,
        }
    }

    /// The first part of every bucket's Redis key: a key `k` lives at
    /// `<prefix>:{k}`. Limiters with different rates need different
    /// prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one call may wait for Redis before the outage policy
    /// answers. Zero is a [`ConfigError`]; above an hour too.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to answer while Redis does not.
    pub fn on_outage(mut self, policy: OutagePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// While Redis is down, how often one call tries it again. Zero is a
    /// [`ConfigError`].
    pub fn recheck_every(mut self, interval: Duration) -> Self {
        self.recheck = interval;
        self
    }

    /// Takes up to `tokens` per round trip and spends the rest locally
    /// (see [the lease](SharedRateLimiter#the-local-lease)). Zero, or more
    /// than the burst, is a [`ConfigError`].
    pub fn lease(mut self, tokens: u32) -> Self {
        self.lease = Some(tokens);
        self
    }

    /// Builds the limiter on `client`. It connects on first use, so a
    /// limiter built while Redis is down starts under its outage policy and
    /// uses Redis as soon as it answers.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a rate that is unlimited, zero, invalid for
    /// `weir_rate::RateLimiter`, faster than one token per microsecond, or
    /// with `burst × period` above 2^52 µs; a zero or over-long timeout or
    /// recheck interval; a zero lease or one above the burst; a local share
    /// outside `(0, 1]`; or outside a tokio runtime.
    pub fn build(self, client: redis::Client) -> Result<SharedRateLimiter, ConfigError> {
        let construct = format!("shared rate limiter `{}`", self.prefix);
        let params = check_rate(&construct, self.rate)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::zero(construct, "timeout"));
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(ConfigError::invalid(
                construct,
                "timeout",
                "must be at most an hour",
            ));
        }
        if self.recheck.is_zero() {
            return Err(ConfigError::zero(construct, "recheck interval"));
        }
        let lease = match self.lease {
            None => None,
            Some(0) => return Err(ConfigError::zero(construct, "lease")),
            Some(k) if k > params.burst => {
                return Err(ConfigError::too_large(
                    construct,
                    "lease",
                    u64::from(params.burst),
                ));
            }
            Some(k) => Some(Mutex::new(LeaseBook::new(k))),
        };
        let fallback = match self.policy {
            OutagePolicy::Local { share } => Some(local_fallback(&construct, params, share)?),
            _ => None,
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::no_runtime(construct));
        }
        let conn = crate::conn::manager(client, self.timeout)
            .map_err(|e| ConfigError::invalid(construct.clone(), "client", e.to_string()))?;
        Ok(SharedRateLimiter {
            inner: Arc::new(Inner {
                backend: Backend::redis(conn),
                breaker: Breaker::new(construct, self.recheck),
                prefix: self.prefix,
                rate: self.rate,
                params,
                timeout: self.timeout,
                policy: self.policy,
                fallback,
                lease,
                counters: Counters::default(),
            }),
        })
    }

    /// [`build`](Self::build) on a client for `url`
    /// (`redis://host:port/db`).
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and a [`ConfigError`] for a URL the
    /// client does not accept.
    pub fn build_url(self, url: &str) -> Result<SharedRateLimiter, ConfigError> {
        let client = redis::Client::open(url).map_err(|e| {
            ConfigError::invalid(
                format!("shared rate limiter `{}`", self.prefix),
                "url",
                e.to_string(),
            )
        })?;
        self.build(client)
    }

    /// A limiter on the in-memory twin of the script, for this crate's
    /// unit tests on a paused clock.
    #[cfg(test)]
    pub(crate) fn build_fake(
        self,
        fake: Arc<super::backend::fake::FakeRedis>,
    ) -> Result<SharedRateLimiter, ConfigError> {
        let construct = format!("shared rate limiter `{}`", self.prefix);
        let params = check_rate(&construct, self.rate)?;
        let fallback = match self.policy {
            OutagePolicy::Local { share } => Some(local_fallback(&construct, params, share)?),
            _ => None,
        };
        Ok(SharedRateLimiter {
            inner: Arc::new(Inner {
                backend: Backend::Fake(fake),
                breaker: Breaker::new(construct, self.recheck),
                prefix: self.prefix,
                rate: self.rate,
                params,
                timeout: self.timeout,
                policy: self.policy,
                fallback,
                lease: self.lease.map(|k| Mutex::new(LeaseBook::new(k))),
                counters: Counters::default(),
            }),
        })
    }
}

/// The script's parameters for `rate`, or why it cannot be shared.
fn check_rate(construct: &str, rate: Rate) -> Result<Params, ConfigError> {
    let construct = construct.to_owned();
    if rate.is_unlimited() || rate.is_zero() {
        return Err(ConfigError::invalid(
            construct,
            "rate",
            "must refill at a finite rate (not unlimited or zero)",
        ));
    }
    RateLimiter::new(rate)
        .map_err(|e| ConfigError::invalid(construct.clone(), "rate", e.to_string()))?;
    let period = rate
        .period()
        .ok_or_else(|| ConfigError::invalid(construct.clone(), "rate", "has no period"))?;
    if period < Duration::from_micros(1) {
        return Err(ConfigError::invalid(
            construct,
            "rate",
            "is faster than one token per microsecond, the shared limiter's resolution",
        ));
    }
    let period_us = u64::try_from(period.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX);
    let burst = rate.burst_size().unwrap_or(1);
    if period_us.saturating_mul(u64::from(burst)) > MAX_TAU_US {
        return Err(ConfigError::invalid(
            construct,
            "rate",
            "burst × period must stay under 2^52 µs (about 142 years)",
        ));
    }
    Ok(Params { period_us, burst })
}

/// The local limiter of [`OutagePolicy::Local`]: `share` of the rate and of
/// the burst (at least 1).
fn local_fallback(construct: &str, p: Params, share: f64) -> Result<Fallback, ConfigError> {
    if !(share > 0.0 && share <= 1.0) {
        return Err(ConfigError::invalid(
            construct.to_owned(),
            "outage policy share",
            "must be in (0, 1]",
        ));
    }
    let invalid =
        |reason: String| ConfigError::invalid(construct.to_owned(), "outage policy share", reason);
    let period =
        Duration::try_from_secs_f64(Duration::from_micros(p.period_us).as_secs_f64() / share)
            .map_err(|_| invalid("makes the local rate too slow to represent".to_owned()))?;
    // `share` is in (0, 1], so this stays in range of the burst.
    let burst = ((f64::from(p.burst) * share).ceil() as u32).max(1);
    let rate = Rate::every(period).burst(burst);
    RateLimiter::new(rate).map_err(|e| invalid(e.to_string()))?;
    Ok(Fallback::new(rate, burst))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn built(b: SharedRateLimiterBuilder) -> Result<SharedRateLimiter, ConfigError> {
        b.build(redis::Client::open("redis://127.0.0.1:1/").unwrap())
    }

    #[tokio::test]
    async fn bad_settings_are_config_errors() {
        let rate = Rate::per_second(10).burst(5);
        let cases = [
            SharedRateLimiter::builder(Rate::unlimited()),
            SharedRateLimiter::builder(Rate::zero()),
            SharedRateLimiter::builder(Rate::per_second(0)),
            SharedRateLimiter::builder(Rate::per_second(10).burst(0)),
            SharedRateLimiter::builder(Rate::new(2_000_000, Duration::from_secs(1))),
            SharedRateLimiter::builder(Rate::per_hour(1).burst(u32::MAX)),
            SharedRateLimiter::builder(rate).timeout(Duration::ZERO),
            SharedRateLimiter::builder(rate).timeout(Duration::MAX),
            SharedRateLimiter::builder(rate).recheck_every(Duration::ZERO),
            SharedRateLimiter::builder(rate).lease(0),
            SharedRateLimiter::builder(rate).lease(6),
            SharedRateLimiter::builder(rate).on_outage(OutagePolicy::local(0.0)),
            SharedRateLimiter::builder(rate).on_outage(OutagePolicy::local(1.5)),
            SharedRateLimiter::builder(rate).on_outage(OutagePolicy::local(f64::NAN)),
            SharedRateLimiter::builder(Rate::per_hour(1).burst(1000))
                .on_outage(OutagePolicy::local(f64::MIN_POSITIVE)),
        ];
        for b in cases {
            let shown = format!("{b:?}");
            let err = built(b).expect_err(&shown);
            assert!(
                err.to_string()
                    .starts_with("shared rate limiter `weir:rate`"),
                "{err}"
            );
        }
        assert!(built(SharedRateLimiter::builder(rate).lease(5)).is_ok());
        assert!(
            built(SharedRateLimiter::builder(rate).on_outage(OutagePolicy::local(1e-9))).is_ok()
        );
    }

    #[test]
    fn outside_a_runtime() {
        let err = built(SharedRateLimiter::builder(Rate::per_second(1))).unwrap_err();
        assert_eq!(err.problem(), &weir_context::Problem::NoRuntime);
    }

    #[test]
    fn the_period_is_rounded_up_to_a_microsecond() {
        let p = check_rate("t", Rate::per_second(3)).unwrap();
        assert_eq!(p.period_us, 333_334);
        assert_eq!(p.burst, 1);
    }
}
