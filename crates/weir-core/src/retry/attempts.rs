//! [`Attempts`]: one retried call's decisions and accounting, the one
//! mechanism behind [`retry`](super::retry), a pool's
//! [`retry`](crate::PoolBuilder::retry) option and a pipeline stage's
//! [`retry`](crate::Pipeline::retry) option.
//!
//! Each user writes its own attempt loop (a pool's handler and a stage's
//! state are borrowed `&mut` by each attempt, which a closure returning a
//! future cannot express) and asks this type what to do after a failure.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::{GiveUpReason, RetryPolicy, RetryReport};

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Sleep this long, then attempt again.
    Retry(Duration),
    /// Give up with the last error.
    GiveUp(GiveUpReason),
}

/// How a call ended, for the policy's stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    Succeeded,
    GaveUp,
    Stopped,
}

/// One call under a [`RetryPolicy`]: counted in the policy's stats from
/// [`begin`](Self::begin) until [`end`](Self::end); dropped before its end,
/// it counts as abandoned.
pub(crate) struct Attempts<E> {
    policy: RetryPolicy<E>,
    /// No backoff may end at or after this (the call's context's deadline).
    deadline: Option<Instant>,
    started: Instant,
    report: RetryReport,
    ended: bool,
}

impl<E> Attempts<E> {
    /// A call begins (counted as in progress).
    pub(crate) fn begin(policy: &RetryPolicy<E>, deadline: Option<Instant>) -> Self {
        {
            let mut stats = policy.lock_stats();
            stats.calls += 1;
            stats.in_progress += 1;
        }
        Self {
            policy: policy.clone(),
            deadline,
            started: Instant::now(),
            report: RetryReport::default(),
            ended: false,
        }
    }

    /// An attempt starts. The first one is the call's request: it is
    /// deposited in the budget, if the policy has one.
    pub(crate) fn attempt(&mut self) {
        if self.report.attempts == 0
            && let Some(budget) = self.policy.budget()
        {
            budget.deposit();
        }
        self.report.attempts += 1;
        self.policy.lock_stats().attempts += 1;
    }

    /// Whether the attempt in progress is the last the policy allows (so
    /// its input need not be kept for another).
    pub(crate) fn is_last(&self) -> bool {
        self.report.attempts >= self.policy.max_attempts()
    }

    /// The policy's decision after a failed attempt whose error is
    /// `retryable` (or not); a retry is drawn from the budget here. Logs
    /// the retry (one `DEBUG` event, the error in `Display` form: `{:#}`,
    /// so an `anyhow::Error` shows its chain).
    pub(crate) fn after_failure(&mut self, retryable: bool, error: &dyn fmt::Display) -> Next {
        let next = self.decide(retryable);
        if let Next::Retry(delay) = next {
            tracing::debug!(
                attempt = self.report.attempts,
                delay = ?delay,
                error = %format_args!("{error:#}"),
                "attempt failed; retrying"
            );
        }
        next
    }

    fn decide(&mut self, retryable: bool) -> Next {
        let policy = &self.policy;
        if !retryable {
            return Next::GiveUp(GiveUpReason::NotRetryable);
        }
        let attempts = self.report.attempts;
        if attempts >= policy.max_attempts() {
            return Next::GiveUp(GiveUpReason::MaxAttempts);
        }
        let delay = policy.delay(attempts);
        // `None`: beyond the clock's range, past any limit.
        let resume = Instant::now().checked_add(delay);
        if let Some(max) = policy.max_elapsed() {
            match resume {
                Some(at) if at.saturating_duration_since(self.started) <= max => {}
                _ => return Next::GiveUp(GiveUpReason::MaxElapsed),
            }
        }
        if let Some(deadline) = self.deadline {
            match resume {
                Some(at) if at < deadline => {}
                _ => return Next::GiveUp(GiveUpReason::Deadline),
            }
        }
        if let Some(budget) = policy.budget()
            && !budget.withdraw()
        {
            self.report.budget_refused = true;
            policy.lock_stats().budget_refusals += 1;
            return Next::GiveUp(GiveUpReason::Budget);
        }
        Next::Retry(delay)
    }

    /// A backoff of `waited` is over: the next attempt is a retry.
    pub(crate) fn backed_off(&mut self, waited: Duration) {
        self.report.waited += waited;
        self.report.retries += 1;
        self.policy.lock_stats().retries += 1;
    }

    /// Time spent in a backoff that was cut short.
    pub(crate) fn waited(&mut self, waited: Duration) {
        self.report.waited += waited;
    }

    /// The call ends: counted in the policy's stats; the call's report.
    pub(crate) fn end(&mut self, how: Finished) -> RetryReport {
        if !self.ended {
            self.ended = true;
            self.report.elapsed = self.started.elapsed();
            let mut stats = self.policy.lock_stats();
            stats.in_progress -= 1;
            match how {
                Finished::Succeeded => stats.succeeded += 1,
                Finished::GaveUp => stats.gave_up += 1,
                Finished::Stopped => stats.stopped += 1,
            }
        }
        self.report
    }

    /// The report so far.
    pub(crate) fn report(&self) -> &RetryReport {
        &self.report
    }

    /// Whether `error` is worth another attempt, by the policy's classifier.
    pub(crate) fn retryable(&self, error: &E) -> bool {
        self.policy.retryable(error)
    }
}

impl<E> Drop for Attempts<E> {
    fn drop(&mut self) {
        if !self.ended {
            let mut stats = self.policy.lock_stats();
            stats.in_progress -= 1;
            stats.abandoned += 1;
        }
    }
}

impl<E> fmt::Debug for Attempts<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempts")
            .field("report", &self.report)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
