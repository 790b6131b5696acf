//! [`Reservation`]: tokens taken now for use later.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::limiter::RateLimiter;

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
    /// Granted tokens, usable at `ready_at` (the bucket's `act`); `tat_after`
    /// and `generation` identify it for a cancel.
    pub(crate) fn granted(
        limiter: RateLimiter,
        n: u32,
        ready_at: Instant,
        act: u64,
        tat_after: u64,
        generation: u64,
    ) -> Self {
        Reservation {
            limiter,
            n,
            ready_at: Some(ready_at),
            act,
            tat_after,
            generation,
        }
    }

    /// A reservation that is not ok: it took nothing.
    pub(crate) fn refused(limiter: RateLimiter, n: u32) -> Self {
        Reservation {
            limiter,
            n,
            ready_at: None,
            act: 0,
            tat_after: 0,
            generation: 0,
        }
    }

    /// Whether the tokens were reserved. A reservation that is not ok took
    /// nothing (n above the burst, a spent zero-rate bucket, or a delay
    /// longer than the bound given to [`RateLimiter::reserve_n_within`]).
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
            Some(_) if self.is_due() => Duration::ZERO,
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        }
    }

    /// The limiter the tokens come from.
    #[cfg(feature = "http")]
    pub(crate) fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Whether the tokens may be used now, by the bucket's own clock. On a
    /// multi-thread runtime that clock is the timestamp counter, which may
    /// run a hair ahead of `tokio::time::Instant::now()`: comparing
    /// `ready_at` with the latter could call a due reservation early and
    /// sleep a whole timer tick (1 ms) for nothing.
    pub(crate) fn is_due(&self) -> bool {
        self.ready_at.is_some() && self.act <= self.limiter.now_ns()
    }

    /// Sleeps until the tokens may be used; returns at once if not
    /// [`ok`](Self::ok) (check that first).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only sleeps; the reservation is untouched.
    pub async fn ready(&self) {
        if let Some(at) = self.ready_at
            && !self.is_due()
        {
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

/// Cancels a reservation when dropped, unless [`keep`](Self::keep) was
/// called first: what a wait holds while it sleeps, so that a dropped wait
/// takes nothing.
#[derive(Debug)]
pub(crate) struct CancelOnDrop(Option<Reservation>);

impl CancelOnDrop {
    pub(crate) fn new(reservation: Reservation) -> Self {
        CancelOnDrop(Some(reservation))
    }

    /// The reservation held, until [`keep`](Self::keep).
    #[cfg(feature = "http")]
    pub(crate) fn reservation(&self) -> Option<&Reservation> {
        self.0.as_ref()
    }

    /// Sleeps until the tokens may be used.
    pub(crate) async fn ready(&self) {
        if let Some(r) = &self.0 {
            r.ready().await;
        }
    }

    /// The tokens were used: keep them taken.
    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.cancel();
        }
    }
}
