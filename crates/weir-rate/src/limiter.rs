//! [`RateLimiter`]: a shared GCRA token bucket on tokio time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use weir_context::{Cause, Context};

use crate::clock::Clock;
use crate::gcra::{Decision, Gcra};
use crate::rate::{Quota, Rate, RateError};

/// Clock values handed to the bucket start here, so that "one nanosecond
/// before now" always exists (see `Gcra::set_quota`).
const CLOCK_BIAS: u64 = 1_000_000_000;

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
/// use std::time::Duration;
/// use weir_rate::{Rate, RateLimiter};
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
    inner: Arc<Inner>,
}

struct Inner {
    gcra: Gcra,
    clock: Clock,
    /// Waiters in [`RateLimiter::acquire_n`] queue here (tokio's mutex is
    /// FIFO), so only the head holds a reservation.
    queue: tokio::sync::Mutex<()>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate())
            .field("available", &self.available())
            .finish()
    }
}

impl RateLimiter {
    /// A limiter with a full bucket.
    ///
    /// # Errors
    ///
    /// [`RateError`] for a zero count, period or burst, or a rate that cannot
    /// be represented.
    pub fn new(rate: Rate) -> Result<Self, RateError> {
        Ok(Self::from_quota(rate.to_quota(None)?))
    }

    pub(crate) fn from_quota(quota: Quota) -> Self {
        RateLimiter {
            inner: Arc::new(Inner {
                gcra: Gcra::new(quota, CLOCK_BIAS),
                clock: Clock::new(),
                queue: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The bucket's clock now (see `clock.rs` for where it reads the time).
    #[inline]
    fn now_ns(&self) -> u64 {
        self.inner.clock.elapsed_ns() + CLOCK_BIAS
    }

    fn instant_at(&self, clock: u64) -> Instant {
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
        self.check(n, true)
    }

    /// Whether [`try_acquire`](Self::try_acquire) would succeed now, without
    /// taking anything.
    ///
    /// # Errors
    ///
    /// [`NotUntil`] as for `try_acquire`.
    pub fn peek(&self) -> Result<(), NotUntil> {
        self.check(1, false)
    }

    /// Whether [`try_acquire_n`](Self::try_acquire_n) would succeed now,
    /// without taking anything.
    ///
    /// # Errors
    ///
    /// [`NotUntil`] as for `try_acquire_n`.
    pub fn peek_n(&self, n: u32) -> Result<(), NotUntil> {
        self.check(n, false)
    }

    #[inline]
    fn check(&self, n: u32, consume: bool) -> Result<(), NotUntil> {
        let clock = self.now_ns();
        match self.inner.gcra.decide(n, clock, 0, consume, false) {
            Decision::Granted { .. } => Ok(()),
            Decision::Denied { earliest } => Err(NotUntil {
                origin: self.inner.clock.origin(),
                earliest: earliest.map_or(0, |c| c - CLOCK_BIAS + 1),
                decided: clock - CLOCK_BIAS,
            }),
        }
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
    pub async fn acquire(&self) -> Result<(), InsufficientCapacity> {
        self.acquire_n(1).await
    }

    /// Waits until `n` tokens can be taken, and takes them (Go's `WaitN`).
    ///
    /// Waiters are served in arrival order (see [Fairness](Self#fairness)).
    /// To bound the wait, wrap it in [`tokio::time::timeout`] — that is
    /// Go's `WaitN` with a context deadline — or use
    /// [`reserve_n_within`](Self::reserve_n_within), which fails at once
    /// instead of waiting past a bound.
    ///
    /// # Errors
    ///
    /// [`InsufficientCapacity`] at once, without waiting, when `n` is larger
    /// than the burst (it could never be granted) or the bucket is a spent
    /// [`Rate::zero`] one. `n = 0` and an unlimited rate succeed at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, the tokens
    /// it had reserved are given back as [`Reservation::cancel`] does, so it
    /// takes nothing (tokens reserved by [`reserve_n`](Self::reserve_n)
    /// callers after it keep their place, as in Go).
    pub async fn acquire_n(&self, n: u32) -> Result<(), InsufficientCapacity> {
        let quota = self.inner.gcra.quota();
        if quota.period_ns == 0 || n == 0 {
            return Ok(());
        }
        if n > quota.burst {
            return Err(InsufficientCapacity::new(n, &quota));
        }
        let _turn = match self.inner.queue.try_lock() {
            Ok(turn) => turn,
            Err(_) => self.inner.queue.lock().await,
        };
        let reservation = self.reserve_inner(n, u64::MAX);
        let Some(ready_at) = reservation.ready_at else {
            return Err(InsufficientCapacity::new(n, &self.inner.gcra.quota()));
        };
        if ready_at <= Instant::now() {
            return Ok(());
        }
        // Cancels the reservation if this future is dropped while it sleeps.
        let mut guard = CancelOnDrop(Some(reservation));
        tokio::time::sleep_until(ready_at).await;
        guard.0 = None;
        Ok(())
    }

    /// [`acquire_n_within`](Self::acquire_n_within) for one token.
    ///
    /// # Errors
    ///
    /// As [`acquire_n_within`](Self::acquire_n_within).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future takes nothing.
    pub async fn acquire_within(&self, ctx: &Context) -> Result<(), WaitError> {
        self.acquire_n_within(ctx, 1).await
    }

    /// Go's `WaitN(ctx, n)`: waits until `n` tokens can be taken and takes
    /// them, unless `ctx` ends first — and if `ctx` has a deadline that
    /// comes before the tokens could, fails at once without waiting (and
    /// without taking anything).
    ///
    /// # Errors
    ///
    /// - [`WaitError::InsufficientCapacity`] when `n` exceeds the burst (or
    ///   the bucket is a spent [`Rate::zero`] one);
    /// - [`WaitError::WouldExceedDeadline`] when the tokens would only be
    ///   ready after `ctx`'s deadline;
    /// - [`WaitError::Stopped`] with the context's [`Cause`] when it was
    ///   cancelled (or its deadline passed) first; the reserved tokens are
    ///   given back.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future gives back what it had reserved.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_context::Context;
    /// use weir_rate::{Rate, RateLimiter, WaitError};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// let limiter = RateLimiter::new(Rate::per_second(10))?; // one token per 100ms
    /// limiter.try_acquire()?; // the burst of 1 is spent
    /// let hurried = Context::background().with_timeout(Duration::from_millis(50));
    /// let err = limiter.acquire_within(&hurried).await.unwrap_err();
    /// assert!(matches!(err, WaitError::WouldExceedDeadline { .. }));
    /// let patient = Context::background().with_timeout(Duration::from_millis(150));
    /// limiter.acquire_within(&patient).await?; // granted at 100ms
    /// # Ok(())
    /// # }
    /// ```
    pub async fn acquire_n_within(&self, ctx: &Context, n: u32) -> Result<(), WaitError> {
        let quota = self.inner.gcra.quota();
        if quota.period_ns != 0 && n > quota.burst {
            return Err(InsufficientCapacity::new(n, &quota).into());
        }
        if ctx.is_cancelled() {
            return Err(WaitError::Stopped(ctx.stopped().into_cause()));
        }
        if quota.period_ns == 0 || n == 0 {
            return Ok(());
        }
        let wait = async {
            let _turn = match self.inner.queue.try_lock() {
                Ok(turn) => turn,
                Err(_) => self.inner.queue.lock().await,
            };
            let max_wait = ctx.remaining().map_or(u64::MAX, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
            });
            let reservation = self.reserve_inner(n, max_wait);
            let Some(ready_at) = reservation.ready_at else {
                return Err(if ctx.deadline().is_some() {
                    WaitError::WouldExceedDeadline { requested: n }
                } else {
                    InsufficientCapacity::new(n, &self.inner.gcra.quota()).into()
                });
            };
            if ready_at <= Instant::now() {
                return Ok(());
            }
            // Gives the reservation back if the context wins the race.
            let mut guard = CancelOnDrop(Some(reservation));
            tokio::time::sleep_until(ready_at).await;
            guard.0 = None;
            Ok(())
        };
        match ctx.run(wait).await {
            Ok(done) => done,
            Err(stopped) => Err(WaitError::Stopped(stopped.into_cause())),
        }
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
    /// The reservation is not [`ok`](Reservation::ok) when `n` exceeds the
    /// burst or the bucket is a spent [`Rate::zero`] one.
    pub fn reserve_n(&self, n: u32) -> Reservation {
        self.reserve_inner(n, u64::MAX)
    }

    /// Reserves `n` tokens only if they are ready within `max_wait`;
    /// otherwise returns a reservation that is not [`ok`](Reservation::ok)
    /// and takes nothing (the load-shedding form of Go's internal
    /// `reserveN(maxFutureReserve)`).
    pub fn reserve_n_within(&self, n: u32, max_wait: Duration) -> Reservation {
        let max = u64::try_from(max_wait.as_nanos()).unwrap_or(u64::MAX);
        self.reserve_inner(n, max)
    }

    fn reserve_inner(&self, n: u32, max_wait: u64) -> Reservation {
        let clock = self.now_ns();
        let now = self.instant_at(clock);
        match self.inner.gcra.decide(n, clock, max_wait, true, true) {
            Decision::Granted {
                act,
                tat_after,
                generation,
            } => Reservation {
                limiter: self.clone(),
                n,
                ready_at: Some(self.instant_at(act).max(now)),
                act,
                tat_after,
                generation,
            },
            Decision::Denied { .. } => Reservation {
                limiter: self.clone(),
                n,
                ready_at: None,
                act: 0,
                tat_after: 0,
                generation: 0,
            },
        }
    }

    /// Changes the refill rate from the next decision on (Go's `SetLimit`).
    /// The burst stays as it is unless `rate` sets one with
    /// [`Rate::burst`]. Tokens already taken stay taken: the token count is
    /// carried over, and pending reservations stay in debt at the new rate.
    ///
    /// # Errors
    ///
    /// [`RateError`] for an invalid rate; the limiter is left unchanged.
    pub fn set_rate(&self, rate: Rate) -> Result<(), RateError> {
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
    /// [`RateError::ZeroBurst`] (or [`RateError::TooSlow`] when
    /// `burst × period` overflows); the limiter is left unchanged.
    pub fn set_burst(&self, burst: u32) -> Result<(), RateError> {
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

/// Cancels a reservation when dropped (an [`RateLimiter::acquire_n`] future
/// dropped while it sleeps).
struct CancelOnDrop(Option<Reservation>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.cancel();
        }
    }
}

/// Tokens reserved by [`RateLimiter::reserve_n`], usable at
/// [`ready_at`](Self::ready_at) (Go's `rate.Reservation`).
///
/// Dropping a reservation keeps its tokens taken, as in Go; call
/// [`cancel`](Self::cancel) to give them back.
#[must_use = "a reservation takes tokens: wait for `delay()` or `cancel()` it"]
pub struct Reservation {
    limiter: RateLimiter,
    n: u32,
    /// `None`: not ok.
    ready_at: Option<Instant>,
    act: u64,
    tat_after: u64,
    generation: u64,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("tokens", &self.n)
            .field("ready_at", &self.ready_at)
            .finish()
    }
}

impl Reservation {
    /// Whether the tokens were reserved. A reservation that is not ok took
    /// nothing (n above the burst, a spent zero-rate bucket, or a wait longer
    /// than the bound given to [`RateLimiter::reserve_n_within`]).
    pub fn ok(&self) -> bool {
        self.ready_at.is_some()
    }

    /// How many tokens were asked for.
    pub fn tokens(&self) -> u32 {
        self.n
    }

    /// When the tokens may be used; `None` if not [`ok`](Self::ok).
    pub fn ready_at(&self) -> Option<Instant> {
        self.ready_at
    }

    /// How long to wait from now before using the tokens: zero once
    /// ready, `Duration::MAX` if not [`ok`](Self::ok) (Go's `Delay`).
    pub fn delay(&self) -> Duration {
        match self.ready_at {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        }
    }

    /// Sleeps until the tokens may be used; returns at once if not
    /// [`ok`](Self::ok) (check that first).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only sleeps; the reservation is untouched.
    pub async fn ready(&self) {
        if let Some(at) = self.ready_at {
            tokio::time::sleep_until(at).await;
        }
    }

    /// Gives the tokens back, as far as possible (Go's `Cancel`): nothing
    /// once [`ready_at`](Self::ready_at) has passed, and the tokens reserved
    /// by later requests are not given back (those requests keep their
    /// place). A reservation made before more than 32 quota changes is not
    /// refunded. Returns the whole tokens given back.
    pub fn cancel(self) -> u32 {
        if self.ready_at.is_none() {
            return 0;
        }
        let clock = self.limiter.now_ns();
        self.limiter
            .inner
            .gcra
            .cancel(self.n, self.act, self.tat_after, self.generation, clock)
    }
}

/// A request that is not granted now ([`RateLimiter::try_acquire`]): says
/// when to retry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NotUntil {
    origin: Instant,
    /// Nanoseconds after `origin`, plus one; 0 = never. (Instants are
    /// only built when asked for: a refusal stays as cheap as a grant.)
    earliest: u64,
    /// Nanoseconds after `origin` of the decision.
    decided: u64,
}

impl fmt::Debug for NotUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotUntil")
            .field("earliest_possible", &self.earliest_possible())
            .field("wait_time", &self.wait_time())
            .finish()
    }
}

impl NotUntil {
    /// The earliest instant the same request could be granted, if nothing
    /// else takes tokens meanwhile; `None` if it never can be under the
    /// current quota (more than the burst, or a spent [`Rate::zero`] bucket).
    pub fn earliest_possible(&self) -> Option<Instant> {
        match self.earliest {
            0 => None,
            ns => Some(self.origin + Duration::from_nanos(ns - 1)),
        }
    }

    /// How long from the decision until [`earliest_possible`](Self::earliest_possible).
    pub fn wait_time(&self) -> Option<Duration> {
        match self.earliest {
            0 => None,
            ns => Some(Duration::from_nanos((ns - 1).saturating_sub(self.decided))),
        }
    }

    /// How long from `from` until [`earliest_possible`](Self::earliest_possible)
    /// (zero if that has passed).
    pub fn wait_time_from(&self, from: Instant) -> Option<Duration> {
        self.earliest_possible()
            .map(|e| e.saturating_duration_since(from))
    }
}

impl fmt::Display for NotUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.wait_time() {
            Some(d) => write!(f, "rate limited: retry in {d:?}"),
            None => f.write_str(
                "rate limited: the request can never be granted under the current quota",
            ),
        }
    }
}

impl std::error::Error for NotUntil {}

/// [`RateLimiter::acquire_n`] asked for more tokens than the limiter can
/// ever grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot acquire {requested} tokens: more than the limiter can ever grant (burst {burst}{})", if *.zero_rate { ", rate zero" } else { "" })]
pub struct InsufficientCapacity {
    requested: u32,
    burst: u32,
    zero_rate: bool,
}

impl InsufficientCapacity {
    fn new(requested: u32, quota: &Quota) -> Self {
        InsufficientCapacity {
            requested,
            burst: quota.burst,
            zero_rate: quota.zero,
        }
    }

    /// The tokens asked for.
    pub fn requested(&self) -> u32 {
        self.requested
    }

    /// The burst at the time of the request.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

/// Why [`RateLimiter::acquire_n_within`] took no tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// More tokens than the burst were asked for: they could never be
    /// granted at once.
    #[error(transparent)]
    InsufficientCapacity(#[from] InsufficientCapacity),
    /// The tokens would be ready only after the context's deadline; nothing
    /// was taken and nothing was waited for (Go: "would exceed context
    /// deadline").
    #[error("rate: waiting for {requested} token(s) would exceed the context's deadline")]
    WouldExceedDeadline {
        /// How many tokens were asked for.
        requested: u32,
    },
    /// The context was cancelled, or its deadline passed, while waiting; the
    /// reserved tokens were given back.
    #[error("rate: wait stopped: {0}")]
    Stopped(Cause),
}
