//! [`Ticker`]: fixed-rate ticks, Go's `time.Tick`, on tokio's clock.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::rate::RateError;

/// What a [`Ticker`] does when ticks were missed because the consumer was
/// late (a wrapper over tokio's [`MissedTickBehavior`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTick {
    /// Fire the missed ticks at once, one after another, to catch up: the
    /// long-run count is exact but bursts follow a stall.
    Burst,
    /// The default: the next tick comes one full period after the late one,
    /// so ticks are never closer than `period` (the schedule shifts).
    #[default]
    Delay,
    /// Drop the missed ticks and fire on the next multiple of the period on
    /// the original schedule (what Go's `time.Ticker` does for a slow reader).
    Skip,
}

impl From<MissedTick> for MissedTickBehavior {
    fn from(m: MissedTick) -> Self {
        match m {
            MissedTick::Burst => MissedTickBehavior::Burst,
            MissedTick::Delay => MissedTickBehavior::Delay,
            MissedTick::Skip => MissedTickBehavior::Skip,
        }
    }
}

/// Fixed-rate ticks: the seeds' `time.Tick` limiter. The first tick comes one
/// `period` after creation (as in Go, unlike [`tokio::time::interval`], whose
/// first tick is immediate). Also a [`Stream`] of tick instants that never
/// ends.
///
/// A ticker paces one consumer with no burst; share a
/// [`RateLimiter`](crate::RateLimiter) when several tasks must share a rate
/// or a burst is wanted.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_rate::{MissedTick, Ticker};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let start = tokio::time::Instant::now();
/// let mut ticker = Ticker::new(Duration::from_millis(200))?.missed_tick(MissedTick::Skip);
/// for i in 1..=3 {
///     let at = ticker.tick().await;
///     assert_eq!(at - start, Duration::from_millis(200) * i);
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Panics
///
/// [`Ticker::new`] panics outside a tokio runtime with the time driver
/// enabled, as [`tokio::time::interval`] does.
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct Ticker {
    interval: Interval,
}

impl Ticker {
    /// A ticker firing every `period`, first at `now + period`, with
    /// [`MissedTick::Delay`].
    ///
    /// # Errors
    ///
    /// [`RateError::ZeroPeriod`] for a zero period.
    pub fn new(period: Duration) -> Result<Self, RateError> {
        if period.is_zero() {
            return Err(RateError::ZeroPeriod);
        }
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Ticker { interval })
    }

    /// Sets what happens to missed ticks.
    pub fn missed_tick(mut self, behavior: MissedTick) -> Self {
        self.interval.set_missed_tick_behavior(behavior.into());
        self
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.interval.period()
    }

    /// The missed-tick behaviour.
    pub fn missed_tick_behavior(&self) -> MissedTick {
        match self.interval.missed_tick_behavior() {
            MissedTickBehavior::Burst => MissedTick::Burst,
            MissedTickBehavior::Skip => MissedTick::Skip,
            _ => MissedTick::Delay,
        }
    }

    /// Waits for the next tick and returns its scheduled instant.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped `tick()` loses no tick; the next call gets it.
    pub async fn tick(&mut self) -> Instant {
        self.interval.tick().await
    }

    /// Restarts the schedule: the next tick comes one period from now.
    pub fn reset(&mut self) {
        self.interval.reset();
    }
}

impl Stream for Ticker {
    type Item = Instant;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        self.interval.poll_tick(cx).map(Some)
    }
}
