//! The pool's error types. Every error that refuses a job hands it back.

use std::fmt;

use weir_context::{Cause, ConfigError, Panic};

/// Why a pool's run did not end well: what [`Pool::join`](super::Pool::join)
/// and [`Pool::shutdown`](super::Pool::shutdown) return inside a
/// [`RunError`](weir_context::RunError), beside the final
/// [`PoolReport`](super::PoolReport).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The pool was stopped before every accepted job ran to its end: jobs
    /// still queued or running were cancelled (counted in the report's
    /// `cancelled`). The cause says why: [`Cause::Cancelled`] for
    /// [`Pool::cancel`](super::Pool::cancel) or a cancelled parent context,
    /// [`Cause::DeadlineExceeded`] for the context's deadline,
    /// [`GraceExpired`](weir_context::GraceExpired) when
    /// [`shutdown`](super::Pool::shutdown)'s grace period ran out, or the
    /// value given to `cancel_with`.
    #[error("pool stopped: {0}")]
    Stopped(Cause),
}

impl PoolError {
    /// Why the pool was stopped.
    pub fn cause(&self) -> &Cause {
        match self {
            Self::Stopped(cause) => cause,
        }
    }
}

/// Why [`Pool::resize`](super::Pool::resize) refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResizeError {
    /// The worker count is `0` ([`Problem::Zero`](weir_context::Problem::Zero))
    /// or above [`MAX_WORKERS`](weir_context::MAX_WORKERS)
    /// ([`Problem::TooLarge`](weir_context::Problem::TooLarge)).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The pool is closed (closed, shutting down, shut down or cancelled):
    /// its workers are leaving, there is nothing to resize.
    #[error("the pool is closed")]
    Closed,
}

/// [`Pool::submit`](super::Pool::submit) (or
/// [`submit_detached`](super::Pool::submit_detached)) refused the job; it is
/// handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError<J> {
    /// The pool is closed (closed, shutting down, shut down or cancelled),
    /// or it closed while the submit waited for room.
    #[error("the pool is closed")]
    Closed(J),
    /// The queue was full and [`max_waiting_submits`](super::PoolBuilder::max_waiting_submits)
    /// callers already waited for room, so this one was refused at once
    /// (ants' `ErrPoolOverload`).
    #[error("too many submits already wait for room in the pool's queue")]
    Overloaded(J),
}

impl<J> SubmitError<J> {
    /// The job that was not submitted.
    pub fn into_inner(self) -> J {
        match self {
            Self::Closed(job) | Self::Overloaded(job) => job,
        }
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }

    /// Whether too many submits already waited for room.
    pub fn is_overloaded(&self) -> bool {
        matches!(self, Self::Overloaded(_))
    }
}

impl<J> fmt::Debug for SubmitError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::Overloaded(_) => f.write_str("Overloaded(..)"),
        }
    }
}

/// [`Pool::try_submit`](super::Pool::try_submit) refused the job; it is
/// handed back.
///
/// Not `#[non_exhaustive]`, like tokio's `TrySendError`: a queue that never
/// waits is either full or closed, so a drop-pattern handler can match
/// both without a catch-all.
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

/// [`Pool::submit_timeout`](super::Pool::submit_timeout) refused the job; it
/// is handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitTimeoutError<J> {
    /// No room came before the deadline.
    #[error("timed out waiting for room in the pool's queue")]
    Timeout(J),
    /// The pool is closed.
    #[error("the pool is closed")]
    Closed(J),
    /// [`max_waiting_submits`](super::PoolBuilder::max_waiting_submits)
    /// callers already waited for room.
    #[error("too many submits already wait for room in the pool's queue")]
    Overloaded(J),
}

impl<J> SubmitTimeoutError<J> {
    /// The job that was not submitted.
    pub fn into_inner(self) -> J {
        match self {
            Self::Timeout(job) | Self::Closed(job) | Self::Overloaded(job) => job,
        }
    }

    /// Whether the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// Whether the pool was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }

    /// Whether too many submits already waited for room.
    pub fn is_overloaded(&self) -> bool {
        matches!(self, Self::Overloaded(_))
    }
}

impl<J> fmt::Debug for SubmitTimeoutError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::Overloaded(_) => f.write_str("Overloaded(..)"),
        }
    }
}

/// How one job ended when it did not produce its output. A
/// [`Ticket`](super::Ticket) resolves to `Result<O, JobError<E>>`.
///
/// `Failed(e)` displays as `e` alone: the construct around the pool adds
/// its own name (a pipeline stage reads `stage `x` failed: <your error>`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobError<E> {
    /// The handler returned `Err(e)`; `e` is kept as it was.
    Failed(E),
    /// The handler panicked; the worker carried on with the next job. The
    /// [`Panic`] keeps the message and the payload
    /// ([`Panic::downcast_payload`], [`Panic::take_payload`]).
    Panicked(Panic),
    /// The job was cancelled before it finished: still queued or running
    /// when the pool was stopped ([`Pool::cancel`](super::Pool::cancel), its
    /// context, or the grace period of [`Pool::shutdown`](super::Pool::shutdown)).
    /// The [`Cause`] says why.
    Cancelled(Cause),
}

impl<E> JobError<E> {
    /// The handler's error, if the job failed.
    pub fn into_failed(self) -> Option<E> {
        match self {
            Self::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The panic, if the handler panicked.
    pub fn panic(&self) -> Option<&Panic> {
        match self {
            Self::Panicked(p) => Some(p),
            _ => None,
        }
    }

    /// Why the job was cancelled, if it was.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Self::Cancelled(c) => Some(c),
            _ => None,
        }
    }

    /// Whether the handler returned an error.
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed(_))
    }

    /// Whether the handler panicked.
    pub fn is_panicked(&self) -> bool {
        matches!(self, Self::Panicked(_))
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled(_))
    }
}

impl<E: fmt::Display> fmt::Display for JobError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The user's error as it is, `{:#}` included.
            Self::Failed(e) => fmt::Display::fmt(e, f),
            Self::Panicked(p) => write!(f, "job panicked: {p}"),
            Self::Cancelled(cause) => write!(f, "job cancelled: {cause}"),
        }
    }
}

/// `source()` is `None`: the `Failed` text is already the user's error, and
/// the default `E`, `anyhow::Error`, is not itself a `std::error::Error`.
impl<E: fmt::Debug + fmt::Display> std::error::Error for JobError<E> {}
