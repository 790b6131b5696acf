//! [`Ticker`]: fixed-rate ticks, Go's `time.Tick`, on tokio's clock.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use weir_context::ConfigError;

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
/// A period so long that its first tick would be beyond the clock's range
/// (`Duration::MAX`) is a ticker that never ticks. tokio's timer waits at
/// most about 30 years at a time, so after a first tick that far away the
/// next ones come every 30 years or so.
///
/// # Examples
///
/// ```
/// # mod weir { pub use weir_rate as rate; }
/// use std::time::Duration;
/// use weir::rate::{MissedTick, Ticker};
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
/// [`Ticker::new`] panics inside a tokio runtime whose time driver is not
/// enabled, as [`tokio::time::interval`] does (outside any runtime it is an
/// error).
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct Ticker {
    /// `None`: the first tick is beyond the clock's range, so none comes.
    interval: Option<Interval>,
    period: Duration,
    missed: MissedTick,
}

impl Ticker {
    /// A ticker firing every `period`, first at `now + period`, with
    /// [`MissedTick::Delay`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (construct `"ticker"`): [`Problem::Zero`] for a
    /// zero period, [`Problem::NoRuntime`] outside a tokio runtime.
    ///
    /// [`Problem::Zero`]: weir_context::Problem::Zero
    /// [`Problem::NoRuntime`]: weir_context::Problem::NoRuntime
    pub fn new(period: Duration) -> Result<Self, ConfigError> {
        if period.is_zero() {
            return Err(ConfigError::zero("ticker", "period"));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::no_runtime("ticker"));
        }
        let missed = MissedTick::default();
        let interval = Instant::now().checked_add(period).map(|first| {
            let mut interval = tokio::time::interval_at(first, period);
            interval.set_missed_tick_behavior(missed.into());
            interval
        });
        Ok(Ticker {
            interval,
            period,
            missed,
        })
    }

    /// Sets what happens to missed ticks.
    pub fn missed_tick(mut self, behavior: MissedTick) -> Self {
        self.missed = behavior;
        if let Some(interval) = &mut self.interval {
            interval.set_missed_tick_behavior(behavior.into());
        }
        self
    }

    /// The period, as given.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The missed-tick behaviour.
    pub fn missed_tick_behavior(&self) -> MissedTick {
        self.missed
    }

    /// Waits for the next tick and returns its scheduled instant (forever,
    /// for a ticker whose first tick is beyond the clock's range).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped `tick()` loses no tick; the next call gets it.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        match &mut self.interval {
            Some(interval) => interval.poll_tick(cx),
            None => Poll::Pending,
        }
    }

    /// Restarts the schedule: the next tick comes one period from now.
    pub fn reset(&mut self) {
        let Some(next) = Instant::now().checked_add(self.period) else {
            // Beyond the clock's range: no tick comes.
            self.interval = None;
            return;
        };
        if let Some(interval) = &mut self.interval {
            interval.reset_at(next);
        }
    }
}

impl Stream for Ticker {
    type Item = Instant;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        self.poll_tick(cx).map(Some)
    }
}
