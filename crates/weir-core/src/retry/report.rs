//! [`RetryReport`] (one call) and [`RetryStats`] (every call of a policy).

use std::fmt;
use std::time::Duration;

use weir_context::__private::write_table;

/// What one retried call did: attempts, retries and time spent waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryReport {
    /// Attempts started (the first one included).
    pub attempts: u32,
    /// Attempts after the first: `attempts − 1`, or 0.
    pub retries: u32,
    /// Whether the retry budget refused a retry (then the call gave up).
    pub budget_refused: bool,
    /// Time spent in backoff between attempts.
    pub waited: Duration,
    /// From the first poll to the end of the call.
    pub elapsed: Duration,
}

impl fmt::Display for RetryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(
            f,
            &[
                "call",
                "attempts",
                "retries",
                "budget refused",
                "waited",
                "elapsed",
            ],
            &[vec![
                "retry".to_owned(),
                self.attempts.to_string(),
                self.retries.to_string(),
                self.budget_refused.to_string(),
                format!("{:?}", self.waited),
                format!("{:?}", self.elapsed),
            ]],
        )
    }
}

/// Totals over every call made with a [`RetryPolicy`](super::RetryPolicy)
/// and its clones ([`RetryPolicy::stats`](super::RetryPolicy::stats)).
///
/// Every call that began is in progress or ended one way:
///
/// ```text
/// calls = in_progress + succeeded + gave_up + stopped + abandoned
/// attempts = first attempts + retries   (first attempts ≤ calls)
/// ```
///
/// ([`is_balanced`](Self::is_balanced)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// Calls that began (were first polled).
    pub calls: u64,
    /// Calls running now.
    pub in_progress: u64,
    /// Calls that ended with a value (after any number of attempts).
    pub succeeded: u64,
    /// Calls whose policy gave up ([`RetryError::Failed`](super::RetryError::Failed)).
    pub gave_up: u64,
    /// Calls stopped by their context ([`RetryError::Stopped`](super::RetryError::Stopped)).
    pub stopped: u64,
    /// Calls whose future was dropped before it ended.
    pub abandoned: u64,
    /// Attempts started, first ones included.
    pub attempts: u64,
    /// Attempts after the first of their call.
    pub retries: u64,
    /// Retries the budget refused.
    pub budget_refusals: u64,
}

impl RetryStats {
    /// Calls that ended: `succeeded + gave_up + stopped + abandoned`.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.gave_up + self.stopped + self.abandoned
    }

    /// Whether `calls = in_progress + finished()` and no call made more
    /// than one first attempt (`attempts − retries ≤ calls`).
    pub fn is_balanced(&self) -> bool {
        self.calls == self.in_progress + self.finished()
            && self.attempts >= self.retries
            && self.attempts - self.retries <= self.calls
    }

    /// Attempts per call: the load the retries multiply the callers' by
    /// (1.0 when nothing was retried).
    pub fn amplification(&self) -> f64 {
        let first = self.attempts - self.retries.min(self.attempts);
        if first == 0 {
            1.0
        } else {
            self.attempts as f64 / first as f64
        }
    }
}

impl fmt::Display for RetryStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(
            f,
            &[
                "retry",
                "calls",
                "succeeded",
                "gave up",
                "stopped",
                "attempts",
                "retries",
                "budget refusals",
            ],
            &[vec![
                "totals".to_owned(),
                self.calls.to_string(),
                self.succeeded.to_string(),
                self.gave_up.to_string(),
                (self.stopped + self.abandoned).to_string(),
                self.attempts.to_string(),
                self.retries.to_string(),
                self.budget_refusals.to_string(),
            ]],
        )
    }
}
