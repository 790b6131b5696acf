//! [`RetryError`]: how a retried call ended without a value.

use std::fmt;

use weir_context::Cause;

use super::RetryReport;

/// Why [`retry`](super::retry) stopped trying after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// The policy's classifier said this error is not worth retrying.
    NotRetryable,
    /// The last allowed attempt failed.
    MaxAttempts,
    /// The next attempt would have started after the policy's
    /// `max_elapsed` since the first.
    MaxElapsed,
    /// The next attempt would have started at or after the deadline of the
    /// call's context: it is not slept for.
    Deadline,
    /// The retry budget refused the retry.
    Budget,
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotRetryable => "not retryable",
            Self::MaxAttempts => "out of attempts",
            Self::MaxElapsed => "out of time",
            Self::Deadline => "the next backoff would end past the deadline",
            Self::Budget => "retry budget exhausted",
        })
    }
}

/// How a retried call ended without a value: its **last** error (the
/// user's value, kept as itself) and why no further attempt was made, or the
/// cause of a cancellation. Both carry the call's [`RetryReport`].
///
/// `Failed` displays as `gave up after <n> attempt(s) (<reason>): <error>`;
/// `source()` is not set, since the message already contains the error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError<E = anyhow::Error> {
    /// The last attempt failed with `error` and the policy gave up.
    #[error("gave up after {} attempt(s) ({reason}): {error}", report.attempts)]
    Failed {
        /// The last attempt's error.
        error: E,
        /// Why there was no further attempt.
        reason: GiveUpReason,
        /// Attempts, retries and waits of this call.
        report: RetryReport,
    },
    /// The context was cancelled (or its deadline passed) during an attempt
    /// or a backoff; the attempt in progress, if any, was dropped.
    #[error("retry stopped after {} attempt(s): {cause}", report.attempts)]
    Stopped {
        /// Why the context was cancelled.
        cause: Cause,
        /// The error of the last attempt that ended, if one did.
        last_error: Option<E>,
        /// Attempts, retries and waits of this call.
        report: RetryReport,
    },
}

impl<E> RetryError<E> {
    /// The last attempt's error, if an attempt ended.
    pub fn last_error(&self) -> Option<&E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            Self::Stopped { last_error, .. } => last_error.as_ref(),
        }
    }

    /// Takes the last attempt's error out.
    pub fn into_last_error(self) -> Option<E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            Self::Stopped { last_error, .. } => last_error,
        }
    }

    /// Why the policy gave up (`None` when the context stopped the call).
    pub fn reason(&self) -> Option<GiveUpReason> {
        match self {
            Self::Failed { reason, .. } => Some(*reason),
            Self::Stopped { .. } => None,
        }
    }

    /// Why the context was cancelled, if it stopped the call.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Self::Stopped { cause, .. } => Some(cause),
            Self::Failed { .. } => None,
        }
    }

    /// The call's attempts, retries and waits.
    pub fn report(&self) -> &RetryReport {
        match self {
            Self::Failed { report, .. } | Self::Stopped { report, .. } => report,
        }
    }

    /// How many attempts were made.
    pub fn attempts(&self) -> u32 {
        self.report().attempts
    }
}
