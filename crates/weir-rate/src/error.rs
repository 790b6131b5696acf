//! The errors of the limiters: [`NotUntil`] (not now), [`WaitError`] (a
//! wait that took nothing) and [`InsufficientCapacity`] (never).

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;
use weir_context::Cause;

use crate::rate::Quota;

/// A request that is not granted now ([`RateLimiter::try_acquire`]): says
/// when to retry.
///
/// [`RateLimiter::try_acquire`]: crate::RateLimiter::try_acquire
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NotUntil {
    origin: Instant,
    /// Nanoseconds after `origin`, plus one; 0 = never. (Instants are
    /// only built when asked for: a refusal stays as cheap as a grant.)
    earliest: u64,
    /// Nanoseconds after `origin` of the decision.
    decided: u64,
}

impl NotUntil {
    #[inline]
    pub(crate) fn new(origin: Instant, earliest: u64, decided: u64) -> Self {
        NotUntil {
            origin,
            earliest,
            decided,
        }
    }

    /// The earliest instant the same request could be granted, if nothing
    /// else takes tokens meanwhile; `None` if it never can be under the
    /// current quota (more than the burst, or a spent
    /// [`Rate::zero`](crate::Rate::zero) bucket).
    pub fn earliest_possible(&self) -> Option<Instant> {
        match self.earliest {
            0 => None,
            // Beyond `Instant`'s range: never.
            ns => self.origin.checked_add(Duration::from_nanos(ns - 1)),
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

impl fmt::Debug for NotUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotUntil")
            .field("earliest_possible", &self.earliest_possible())
            .field("wait_time", &self.wait_time())
            .finish()
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

/// A wait asked for more tokens than the limiter can ever grant: more than
/// its burst, or any token from a spent [`Rate::zero`](crate::Rate::zero)
/// bucket. Waiting would never end, so the wait fails at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot acquire {requested} tokens: more than the limiter can ever grant (burst {burst}{})", if *.zero_rate { ", rate zero" } else { "" })]
pub struct InsufficientCapacity {
    requested: u32,
    burst: u32,
    zero_rate: bool,
}

impl InsufficientCapacity {
    pub(crate) fn new(requested: u32, quota: &Quota) -> Self {
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

/// Why a wait for tokens ([`RateLimiter::acquire_n`],
/// [`KeyedRateLimiter::acquire_n`]) took none.
///
/// [`RateLimiter::acquire_n`]: crate::RateLimiter::acquire_n
/// [`KeyedRateLimiter::acquire_n`]: crate::KeyedRateLimiter::acquire_n
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The tokens can never be granted: more than the burst, or a spent
    /// [`Rate::zero`](crate::Rate::zero) bucket. Reported at once, without
    /// waiting.
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
    /// The context was cancelled, or its deadline passed, before the tokens
    /// were granted ([`Cause::DeadlineExceeded`] for a deadline); the
    /// reserved tokens were given back.
    #[error("rate: wait stopped: {0}")]
    Stopped(Cause),
}
