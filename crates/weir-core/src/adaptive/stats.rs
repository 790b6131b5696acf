//! [`AdaptiveLimitStats`]: what a limit has done so far.

use std::fmt;
use std::time::Duration;

/// A snapshot of an [`AdaptiveLimit`](super::AdaptiveLimit): the limit
/// now, how it moved, and what happened to the jobs it admitted.
///
/// Every admitted job is in flight or ended with one verdict:
///
/// ```text
/// accepted = in_flight + succeeded + dropped + ignored + abandoned
/// ```
///
/// ([`is_balanced`](Self::is_balanced)). `rejected` and `stopped` count
/// requests that were never admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveLimitStats {
    /// The limit's name (see [`AdaptiveLimitBuilder::name`](super::AdaptiveLimitBuilder::name)).
    pub name: String,
    /// `"aimd"` or `"gradient"`.
    pub algorithm: &'static str,
    /// The limit in force now.
    pub limit: usize,
    /// Jobs holding a slot now (above `limit` for a while after it fell).
    pub in_flight: usize,
    /// The lowest limit so far.
    pub min_seen: usize,
    /// The highest limit so far.
    pub max_seen: usize,
    /// How many times the limit moved.
    pub adjustments: u64,
    /// Measuring windows closed.
    pub windows: u64,
    /// Slots handed out.
    pub accepted: u64,
    /// `try_acquire` calls refused: every slot was taken.
    pub rejected: u64,
    /// `acquire` waits ended by their context.
    pub stopped: u64,
    /// Jobs that ended with [`LimitOutcome::Success`](super::LimitOutcome::Success).
    pub succeeded: u64,
    /// Jobs that ended with [`LimitOutcome::Dropped`](super::LimitOutcome::Dropped).
    pub dropped: u64,
    /// Jobs that ended with [`LimitOutcome::Ignored`](super::LimitOutcome::Ignored).
    pub ignored: u64,
    /// Permits dropped without a verdict.
    pub abandoned: u64,
    /// The mean latency of the last window that had successes.
    pub last_window_latency: Option<Duration>,
    /// The unloaded latency the gradient compares with (`None` for AIMD).
    pub baseline_latency: Option<Duration>,
}

impl AdaptiveLimitStats {
    /// Jobs admitted that ended: `succeeded + dropped + ignored + abandoned`.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.dropped + self.ignored + self.abandoned
    }

    /// Whether `accepted = in_flight + finished()`.
    pub fn is_balanced(&self) -> bool {
        self.accepted == self.in_flight as u64 + self.finished()
    }
}

impl fmt::Display for AdaptiveLimitStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or_else(
                || "-".to_owned(),
                |d| format!("{:.1}ms", d.as_secs_f64() * 1e3),
            )
        };
        weir_context::__private::write_table(
            f,
            &[
                "limit",
                "now",
                "min",
                "max",
                "moves",
                "in flight",
                "accepted",
                "rejected",
                "succeeded",
                "dropped",
                "ignored",
                "latency",
                "baseline",
            ],
            &[vec![
                format!("{} ({})", self.name, self.algorithm),
                self.limit.to_string(),
                self.min_seen.to_string(),
                self.max_seen.to_string(),
                self.adjustments.to_string(),
                self.in_flight.to_string(),
                self.accepted.to_string(),
                (self.rejected + self.stopped).to_string(),
                self.succeeded.to_string(),
                self.dropped.to_string(),
                (self.ignored + self.abandoned).to_string(),
                ms(self.last_window_latency),
                ms(self.baseline_latency),
            ]],
        )
    }
}
