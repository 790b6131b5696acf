//! [`PoolProgress`]: a running pool's counts and rates, a snapshot every
//! period, from [`Pool::progress`](super::Pool::progress).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;

use super::PoolReport;
use crate::progress::{Tick, Ticks, per_sec};

/// One look at a running pool: its counts ([`PoolReport`]) and its rates
/// since the previous snapshot. Made by [`PoolProgress`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PoolSnapshot {
    /// The counts now, as [`Pool::report`](super::Pool::report) gives them.
    pub report: PoolReport,
    /// Jobs accepted per second since the previous snapshot.
    pub submitted_per_sec: f64,
    /// Jobs ended per second (completed, failed, panicked or cancelled)
    /// since the previous snapshot.
    pub finished_per_sec: f64,
    /// Time since the previous snapshot (since the stream was made, for the
    /// first): what the rates are measured over.
    pub since_previous: Duration,
    /// Whether every worker has ended: this is the stream's last snapshot,
    /// and its report is the final one.
    pub is_final: bool,
}

/// A [`Stream`] of [`PoolSnapshot`]s: one every period while the pool
/// runs, then a last one (`is_final`) as soon as its last worker has ended,
/// then the end of the stream. Made by [`Pool::progress`](super::Pool::progress).
///
/// It only reads the pool's counters (the ones [`PoolReport`] is made
/// of): it costs the pool nothing, and it does not keep the pool open.
/// Periods missed while it was not polled are not made up. Dropping it does
/// not affect the pool.
#[must_use = "streams do nothing unless polled"]
pub struct PoolProgress {
    report: Box<dyn Fn() -> PoolReport + Send + Sync>,
    ticks: Ticks,
    /// `submitted` and `finished` at the previous snapshot.
    previous: (u64, u64),
}

impl PoolProgress {
    pub(crate) fn new(report: Box<dyn Fn() -> PoolReport + Send + Sync>, ticks: Ticks) -> Self {
        Self {
            report,
            ticks,
            previous: (0, 0),
        }
    }

    fn snapshot(&mut self, since_previous: Duration, is_final: bool) -> PoolSnapshot {
        let report = (self.report)();
        let (submitted, finished) = (report.submitted, report.finished());
        let (submitted_before, finished_before) = self.previous;
        self.previous = (submitted.max(submitted_before), finished);
        PoolSnapshot {
            submitted_per_sec: per_sec(submitted.saturating_sub(submitted_before), since_previous),
            finished_per_sec: per_sec(finished.saturating_sub(finished_before), since_previous),
            report,
            since_previous,
            is_final,
        }
    }
}

impl Stream for PoolProgress {
    type Item = PoolSnapshot;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.ticks.poll_tick(cx) {
            Poll::Ready(Some((tick, since))) => {
                Poll::Ready(Some(this.snapshot(since, tick == Tick::End)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for PoolProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolProgress")
            .field("ticks", &self.ticks)
            .finish_non_exhaustive()
    }
}
