//! [`RateLimiter`]: a shared GCRA token bucket on tokio time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weir_context::ConfigError;

use crate::acquire::AcquireTokens;
use crate::clock::Clock;
use crate::error::NotUntil;
use crate::gcra::{Decision, Gcra, Mode};
use crate::label::{DEFAULT_NAME, Label};
use crate::rate::{Quota, Rate};
use crate::reservation::Reservation;

/// Clock values handed to the bucket start here, so that "one nanosecond
/// before now" always exists (see `Gcra::set_quota`).
pub(crate) const CLOCK_BIAS: u64 = 1_000_000_000;

/// A token bucket shared by every clone: Go's `rate.Limiter`, lock-free, on
/// tokio's clock.
///
/// The bucket holds up to `burst` tokens and refills at the [`Rate`]. A
/// request for `n` tokens is granted when `n` tokens are there (or, for
/// [`reserve_n`](Self::reserve_n) and [`acquire_n`](Self::acquire_n), at the
/// instant they will be). The decision is one compare-and-swap on an
/// `AtomicU64` (the GCRA theoretical arrival time), as in governor.
///
/// Time is tokio's: a limiter made on a current-thread runtime (or outside
/// any runtime) reads [`tokio::time::Instant`], so a test on a paused
/// runtime (`#[tokio::test(start_paused = true)]`) drives it
/// deterministically. One made on a multi-thread runtime, whose clock tokio
/// cannot pause, reads the CPU's timestamp counter instead (through quanta,
/// as governor does), anchored to tokio's clock: a clock read of a few
/// nanoseconds instead of a `clock_gettime`. Either way it hands out
/// `tokio::time::Instant`s and sleeps on tokio's timer. Create the limiter
/// inside the runtime whose clock it should follow.
///
/// # Examples
///
/// ```
/// # mod weir { pub use weir_rate as rate; }
/// use std::time::Duration;
/// use weir::rate::{Rate, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RateLimiter::new(Rate::per_second(10).burst(5))?;
/// let start = tokio::time::Instant::now();
/// for _ in 0..10 {
///     limiter.acquire().await?;
/// }
/// // 5 at once (the burst), then one every 100 ms.
/// assert_eq!(start.elapsed(), Duration::from_millis(500));
///
/// // Non-blocking: Go's Allow.
/// let err = limiter.try_acquire().unwrap_err();
/// assert_eq!(err.wait_time(), Some(Duration::from_millis(100)));
/// # Ok(())
/// # }
/// ```
///
/// # Fairness
///
/// [`acquire_n`](Self::acquire_n) callers are served in arrival order: they
/// queue on a FIFO lock, and the one at the head *reserves* its tokens before
/// it sleeps, so a large request is never starved by a stream of small ones —
/// not even by [`try_acquire`](Self::try_acquire), which sees the reserved
/// tokens as spent.
///
/// # Comparison with governor and Go
///
/// Like governor it is a GCRA with a lock-free CAS decision; unlike governor
/// its clock can be paused, its quota changed at runtime
/// ([`set_rate`](Self::set_rate), [`set_burst`](Self::set_burst)), and it has
/// reservations that can be cancelled. Its semantics (token counts, delays,
/// refunds, quota changes) follow Go's `golang.org/x/time/rate`.
#[derive(Clone)]
pub struct RateLimiter {
    pub(crate) inner: Arc<Inner>,
    /// The handle's name (and, with the `metrics` feature, its series).
    pub(crate) label: Arc<Label>,
}

pub(crate) struct Inner {
    pub(crate) gcra: Gcra,
    clock: Clock,
    /// Waiters in [`RateLimiter::acquire_n`] queue here (tokio's mutex is
    /// FIFO), so only the head holds a reservation.
    pub(crate) queue: tokio::sync::Mutex<()>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.name())
            .field("rate", &self.rate())
            .field("available", &self.available())
            .finish()
    }
}

/// Why a reservation was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The tokens can never be granted under the current quota (more than
    /// the burst, a spent zero-rate bucket, a time beyond the clock's range).
    Never,
    /// Not within the bound asked for.
    Later,
}

impl RateLimiter {
    /// A limiter with a full bucket.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (construct `"rate"`) for a zero burst, a zero count
    /// or period, or a rate too fast or too slow to represent: see [`Rate`]
    /// for each case.
    pub fn new(rate: Rate) -> Result<Self, ConfigError> {
        Ok(Self::from_quota(
            rate.to_quota(None)?,
            Label::new(DEFAULT_NAME),
        ))
    }

    pub(crate) fn from_quota(quota: Quota, label: Arc<Label>) -> Self {
        RateLimiter {
            inner: Arc::new(Inner {
                gcra: Gcra::new(quota, CLOCK_BIAS),
                clock: Clock::new(),
                queue: tokio::sync::Mutex::new(()),
            }),
            label,
        }
    }

    /// Names this handle (default `"limiter"`): the `limiter` label of the
    /// decisions it records with the `metrics` feature (see
    /// docs/observability.md), and its `Debug` output. Name a limiter
    /// before cloning it: clones made afterwards share the name, clones
    /// made before keep theirs (they still share the bucket).
    ///
    /// # Examples
    ///
    /// ```
    /// # mod weir { pub use weir_rate as rate; }
    /// use weir::rate::{Rate, RateLimiter};
    ///
    /// let api = RateLimiter::new(Rate::per_second(100))?.named("api");
    /// assert_eq!(api.clone().name(), "api");
    /// # Ok::<(), weir_context::ConfigError>(())
    /// ```
    #[must_use = "named returns the named handle"]
    pub fn named(mut self, name: impl AsRef<str>) -> Self {
        self.label = Label::new(name.as_ref());
        self
    }

    /// This handle's name (see [`named`](Self::named)).
    pub fn name(&self) -> &str {
        &self.label.name
    }

    /// The bucket's clock now (see `clock.rs` for where it reads the time).
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.inner.clock.elapsed_ns() + CLOCK_BIAS
    }

    /// The instant of a bucket clock value; `None` beyond `Instant`'s range.
    pub(crate) fn instant_at(&self, clock: u64) -> Option<Instant> {
        self.inner
            .clock
            .instant_at(clock.saturating_sub(CLOCK_BIAS))
    }

    /// The current quota, burst included.
    pub fn rate(&self) -> Rate {
        self.inner.gcra.quota().rate
    }

    /// The current burst (bucket size).
    pub fn burst(&self) -> u32 {
        self.inner.gcra.quota().burst
    }

    /// Takes one token if there is one now (Go's `Allow`).
    ///
    /// # Errors
    ///
    /// [`NotUntil`] when the bucket is empty; it says when to retry.
    #[inline]
    pub fn try_acquire(&self) -> Result<(), NotUntil> {
        self.try_acquire_n(1)
    }

    /// Takes `n` tokens if they are all there now (Go's `AllowN`); takes
    /// nothing otherwise. `n = 0` is granted unless the bucket is in debt.
    ///
    /// # Errors
    ///
    /// [`NotUntil`] when they are not; its
    /// [`earliest_possible`](NotUntil::earliest_possible) is `None` when they
    /// never can be (`n` above the burst, or a spent [`Rate::zero`] bucket).
    #[inline]
    pub fn try_acquire_n(&self, n: u32) -> Result<(), NotUntil> {
        self.check(Mode::Take, n)
    }

    /// Whether [`try_acquire`](Self::try_acquire) would succeed now, without
    /// taking anything.
    ///
    /// # Errors
    ///
    /// [`NotUntil`] as for `try_acquire`.
    pub fn peek(&self) -> Result<(), NotUntil> {
        self.check(Mode::Peek, 1)
    }

    /// Whether [`try_acquire_n`](Self::try_acquire_n) would succeed now,
    /// without taking anything.
    ///
    /// # Errors
    ///
    /// [`NotUntil`] as for `try_acquire_n`.
    pub fn peek_n(&self, n: u32) -> Result<(), NotUntil> {
        self.check(Mode::Peek, n)
    }

    #[inline]
    fn check(&self, mode: Mode, n: u32) -> Result<(), NotUntil> {
        let clock = self.now_ns();
        let decided = match self.inner.gcra.decide(mode, n, clock) {
            Decision::Granted { .. } => Ok(()),
            Decision::Denied { earliest } => Err(NotUntil::new(
                self.inner.clock.origin(),
                earliest.map_or(0, |c| c - CLOCK_BIAS + 1),
                clock - CLOCK_BIAS,
            )),
        };
        #[cfg(feature = "metrics")]
        if mode == Mode::Take {
            self.label.decided(decided.is_ok());
        }
        decided
    }

    /// Whole tokens in the bucket now (0 while reservations are pending);
    /// `u32::MAX` for an unlimited rate. Takes nothing.
    pub fn available(&self) -> u32 {
        let clock = self.now_ns();
        self.inner.gcra.available(clock).unwrap_or(u32::MAX)
    }

    /// Waits for one token (Go's `Wait`). See [`acquire_n`](Self::acquire_n).
    ///
    /// # Errors
    ///
    /// As for `acquire_n`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes takes nothing.
    #[inline]
    pub fn acquire(&self) -> AcquireTokens<'_> {
        self.acquire_n(1)
    }

    /// Waits until `n` tokens can be taken, and takes them (Go's `WaitN`).
    ///
    /// Waiters are served in arrival order (see [Fairness](Self#fairness)).
    /// Bound or cancel the wait with
    /// [`.context(ctx)`](AcquireTokens::context) — Go's `WaitN(ctx, n)`: a
    /// wait that would end after the context's deadline fails at once, and
    /// one the context ends first stops with its [`Cause`](weir_context::Cause).
    /// [`reserve_n_within`](Self::reserve_n_within) is the immediate form:
    /// a reservation only if the tokens come within a bound.
    ///
    /// # Errors
    ///
    /// A [`WaitError`](crate::WaitError); see [`AcquireTokens`] for each case.
    /// `n = 0` and an unlimited rate succeed at once (unless the context has
    /// already ended).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, the tokens
    /// it had reserved are given back as [`Reservation::cancel`] does, so it
    /// takes nothing (tokens reserved by [`reserve_n`](Self::reserve_n)
    /// callers after it keep their place, as in Go).
    ///
    /// # Examples
    ///
    /// ```
    /// # mod weir { pub use weir_rate as rate; pub use weir_context::{Cause, Context}; }
    /// use std::time::Duration;
    /// use weir::Context;
    /// use weir::rate::{Rate, RateLimiter, WaitError};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// let limiter = RateLimiter::new(Rate::per_second(10))?; // one token per 100ms
    /// limiter.try_acquire()?; // the burst of 1 is spent
    ///
    /// let hurried = Context::background().with_timeout(Duration::from_millis(50));
    /// let err = limiter.acquire().context(&hurried).await.unwrap_err();
    /// assert!(matches!(err, WaitError::WouldExceedDeadline { .. })); // failed at once
    ///
    /// let patient = Context::background().with_timeout(Duration::from_millis(150));
    /// limiter.acquire().context(&patient).await?; // granted at 100ms
    ///
    /// assert!(matches!(limiter.acquire_n(2).await, Err(WaitError::InsufficientCapacity(_))));
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn acquire_n(&self, n: u32) -> AcquireTokens<'_> {
        AcquireTokens::borrowed(self, n)
    }

    /// Reserves one token. See [`reserve_n`](Self::reserve_n).
    pub fn reserve(&self) -> Reservation {
        self.reserve_n(1)
    }

    /// Reserves `n` tokens now for use at [`Reservation::ready_at`] (Go's
    /// `ReserveN`). The tokens count as taken from now on: later requests
    /// queue behind them. [`Reservation::cancel`] gives them back; dropping
    /// the reservation keeps them taken.
    ///
    /// A reservation is a decision made now, not a wait: it never blocks and
    /// takes no context. The reservation is not [`ok`](Reservation::ok)
    /// when `n` exceeds the burst or the bucket is a spent [`Rate::zero`]
    /// one.
    pub fn reserve_n(&self, n: u32) -> Reservation {
        self.reserve_n_within(n, Duration::MAX)
    }

    /// Reserves `n` tokens only if they are ready within `max_delay`
    /// (their [`Reservation::delay`] would be at most `max_delay`);
    /// otherwise returns a reservation that is not [`ok`](Reservation::ok)
    /// and takes nothing — the load-shedding form of Go's internal
    /// `reserveN(maxFutureReserve)`, and the check Go's `WaitN` makes against
    /// a context's deadline.
    ///
    /// Like [`reserve_n`](Self::reserve_n) it decides at once and waits for
    /// nothing, so its bound is a plain `Duration` rather than a context:
    /// `Duration::ZERO` reserves only tokens that are there now (like
    /// [`try_acquire_n`](Self::try_acquire_n), but as a reservation), and
    /// `Duration::MAX` (or any bound beyond the clock's range) is no bound,
    /// as [`reserve_n`](Self::reserve_n).
    pub fn reserve_n_within(&self, n: u32, max_delay: Duration) -> Reservation {
        let max = u64::try_from(max_delay.as_nanos()).unwrap_or(u64::MAX);
        let reserved = self.reserve_at_most(n, max);
        #[cfg(feature = "metrics")]
        self.label.decided(reserved.is_ok());
        reserved.unwrap_or_else(|_| Reservation::refused(self.clone(), n))
    }

    /// Reserves `n` tokens if they conform within `max_wait` nanoseconds.
    pub(crate) fn reserve_at_most(&self, n: u32, max_wait: u64) -> Result<Reservation, Refusal> {
        let clock = self.now_ns();
        match self.inner.gcra.decide(Mode::Reserve { max_wait }, n, clock) {
            Decision::Granted {
                act,
                tat_after,
                generation,
            } => {
                // `act >= clock`: a grant is never for the past.
                let Some(ready_at) = self.instant_at(act) else {
                    // Beyond the clock's range: a time that never comes.
                    self.inner.gcra.cancel(n, act, tat_after, generation, clock);
                    return Err(Refusal::Never);
                };
                Ok(Reservation::granted(
                    self.clone(),
                    n,
                    ready_at,
                    act,
                    tat_after,
                    generation,
                ))
            }
            Decision::Denied { earliest: None } => Err(Refusal::Never),
            Decision::Denied { earliest: Some(_) } => Err(Refusal::Later),
        }
    }

    /// Changes the refill rate from the next decision on (Go's `SetLimit`).
    /// The burst stays as it is unless `rate` sets one with
    /// [`Rate::burst`]. Tokens already taken stay taken: the token count is
    /// carried over, and pending reservations stay in debt at the new rate.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a rate that cannot work (see [`Rate`]); the
    /// limiter is left unchanged.
    pub fn set_rate(&self, rate: Rate) -> Result<(), ConfigError> {
        let current = self.inner.gcra.quota();
        let quota = rate.to_quota(Some(current.burst))?;
        self.install(quota);
        Ok(())
    }

    /// Changes the burst from the next decision on (Go's `SetBurst`). The
    /// token count is kept: a larger bucket is not refilled at once, a
    /// smaller one is capped.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a zero burst ([`Problem::Zero`]) or a burst
    /// whose refill time, `burst × period`, is beyond 2^61 ns
    /// ([`Problem::TooLarge`] with the largest burst for the current
    /// period); the limiter is left unchanged.
    ///
    /// [`Problem::Zero`]: weir_context::Problem::Zero
    /// [`Problem::TooLarge`]: weir_context::Problem::TooLarge
    pub fn set_burst(&self, burst: u32) -> Result<(), ConfigError> {
        let current = self.inner.gcra.quota();
        let quota = current.rate.burst(burst).to_quota(None)?;
        self.install(quota);
        Ok(())
    }

    fn install(&self, quota: Quota) {
        let clock = self.now_ns();
        tracing::debug!(rate = %quota.rate, "rate limiter quota changed");
        self.inner.gcra.set_quota(quota, clock);
    }

    /// The bucket now, as HTTP responses report it (`None`: unlimited).
    #[cfg(feature = "http")]
    pub(crate) fn standing(&self) -> Option<crate::gcra::Standing> {
        self.inner.gcra.standing(self.now_ns())
    }

    /// Whether `a` and `b` share one bucket.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    /// Whether the bucket is full and no clone but this one exists: it is
    /// then indistinguishable from a new limiter (used by the keyed limiter's
    /// eviction).
    pub(crate) fn is_idle(&self) -> bool {
        if Arc::strong_count(&self.inner) != 1 {
            return false;
        }
        let quota = self.inner.gcra.quota();
        quota.period_ns == 0 || self.available() >= quota.burst
    }
}
