//! The clock under the progress streams ([`PipelineProgress`](crate::PipelineProgress),
//! [`PoolProgress`](crate::PoolProgress)): a tick every period, and one
//! last tick when the construct ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use weir_context::ConfigError;

/// Why a progress stream yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// A period has passed.
    Period,
    /// The construct has ended: the last snapshot.
    End,
}

/// A tick every `every` until `end` completes, then [`Tick::End`] once,
/// then nothing.
pub(crate) struct Ticks {
    every: Duration,
    /// `None` once the next tick would be beyond the clock's range: only
    /// the end is left to wait for.
    sleep: Option<Pin<Box<Sleep>>>,
    end: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// When the previous snapshot was taken.
    last: Instant,
}

impl Ticks {
    /// Checks `every` (zero is an error: a stream that never waits) and
    /// starts the clock; the first tick comes one period from now.
    pub(crate) fn new(
        construct: String,
        every: Duration,
        end: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Self, ConfigError> {
        if every.is_zero() {
            return Err(ConfigError::zero(construct, "progress interval"));
        }
        let now = Instant::now();
        Ok(Self {
            every,
            sleep: now
                .checked_add(every)
                .map(|at| Box::pin(tokio::time::sleep_until(at))),
            end: Some(Box::pin(end)),
            last: now,
        })
    }

    /// The next tick and the time since the previous one; `None` after
    /// [`Tick::End`].
    pub(crate) fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Option<(Tick, Duration)>> {
        let Some(end) = self.end.as_mut() else {
            return Poll::Ready(None);
        };
        // The end first: a construct that ended during a period reports
        // its final counts now, not a period later.
        let tick = if end.as_mut().poll(cx).is_ready() {
            self.end = None;
            Tick::End
        } else {
            let Some(sleep) = self.sleep.as_mut() else {
                return Poll::Pending;
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Missed periods are not made up: the next tick is a period
            // after this one.
            match Instant::now().checked_add(self.every) {
                Some(at) => sleep.as_mut().reset(at),
                None => self.sleep = None,
            }
            Tick::Period
        };
        let now = Instant::now();
        let since = now.saturating_duration_since(self.last);
        self.last = now;
        Poll::Ready(Some((tick, since)))
    }
}

impl std::fmt::Debug for Ticks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticks")
            .field("every", &self.every)
            .field("ended", &self.end.is_none())
            .finish_non_exhaustive()
    }
}

/// Items per second: `delta` over `since`; 0 over no time.
pub(crate) fn per_sec(delta: u64, since: Duration) -> f64 {
    let secs = since.as_secs_f64();
    if secs > 0.0 { delta as f64 / secs } else { 0.0 }
}
