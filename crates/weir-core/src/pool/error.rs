//! The pool's error types. Every error that refuses a job hands it back.

use std::fmt;

/// Why a pool could not be built or resized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// `workers(0)` or `resize(0)`: a pool needs at least one worker.
    #[error("a pool needs at least one worker (got 0)")]
    ZeroWorkers,
    /// `build` was called outside a tokio runtime: the pool spawns its
    /// workers, so it needs one.
    #[error("a pool must be built inside a tokio runtime")]
    NoRuntime,
    /// `resize` on a pool that is shut down or shutting down.
    #[error("the pool is closed")]
    Closed,
}

/// [`Pool::submit`](super::Pool::submit) failed because the pool is closed
/// (shut down, shutting down, or cancelled). The job is handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("the pool is closed")]
pub struct SubmitError<J>(pub J);

impl<J> SubmitError<J> {
    /// The job that was not submitted.
    pub fn into_inner(self) -> J {
        self.0
    }
}

impl<J> fmt::Debug for SubmitError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubmitError(..)")
    }
}

/// [`Pool::try_submit`](super::Pool::try_submit) failed; the job is handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySubmitError<J> {
    /// The queue is full (or, with `queue(0)`, no worker is idle).
    #[error("the pool's queue is full")]
    Full(J),
    /// The pool is closed.
    #[error("the pool is closed")]
    Closed(J),
}

impl<J> TrySubmitError<J> {
    /// The job that was not submitted.
    pub fn into_inner(self) -> J {
        match self {
            Self::Full(job) | Self::Closed(job) => job,
        }
    }

    /// Whether the queue was full (as opposed to closed).
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
}

impl<J> fmt::Debug for TrySubmitError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// [`Pool::submit_timeout`](super::Pool::submit_timeout) failed; the job is
/// handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitTimeoutError<J> {
    /// No room came before the deadline.
    #[error("timed out waiting for room in the pool's queue")]
    Timeout(J),
    /// The pool is closed.
    #[error("the pool is closed")]
    Closed(J),
}

impl<J> SubmitTimeoutError<J> {
    /// The job that was not submitted.
    pub fn into_inner(self) -> J {
        match self {
            Self::Timeout(job) | Self::Closed(job) => job,
        }
    }

    /// Whether the deadline passed (as opposed to the pool being closed).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

impl<J> fmt::Debug for SubmitTimeoutError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// How one job ended when it did not produce its output. A
/// [`Ticket`](super::Ticket) resolves to `Result<O, JobError<E>>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError<E> {
    /// The handler returned `Err(e)`.
    #[error("job failed: {0}")]
    Failed(E),
    /// The handler panicked; the worker carried on with the next job.
    #[error("job panicked: {message}")]
    Panicked {
        /// The panic's message (see [`panic_message`](weir_context::Panic)).
        message: String,
    },
    /// The job was cancelled before it finished: still queued or running
    /// when the pool was cancelled (its token, [`Pool::cancel`](super::Pool::cancel),
    /// or the deadline of [`Pool::shutdown_timeout`](super::Pool::shutdown_timeout)).
    #[error("job cancelled before it finished")]
    Cancelled,
}

impl<E> JobError<E> {
    /// The handler's error, if the job failed.
    pub fn into_failed(self) -> Option<E> {
        match self {
            Self::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the handler returned an error.
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed(_))
    }

    /// Whether the handler panicked.
    pub fn is_panicked(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled)
    }
}
