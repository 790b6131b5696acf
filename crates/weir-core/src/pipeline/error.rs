//! What can go wrong in a pipeline, and what to do about it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use weir_context::Cause;

/// A mistake in how a pipeline was put together, found before any task runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A stage was given zero workers; it could never process an item.
    #[error("stage `{stage}` has zero workers; a stage needs at least one")]
    ZeroWorkers {
        /// The stage's name.
        stage: String,
    },
    /// `capacity(0)`: a pipeline's channels need room for at least one item.
    #[error("pipeline capacity is zero; channels between stages need room for at least one item")]
    ZeroCapacity,
    /// `timeout(Duration::ZERO)`: every item would time out.
    #[error("per-item timeout is zero; every item would time out")]
    ZeroTimeout,
    /// `timeout(..)` was called before any stage was added.
    #[error("timeout() applies to the stage added before it, and there is none")]
    TimeoutWithoutStage,
    /// The pipeline was started outside a tokio runtime, so its tasks
    /// cannot be spawned.
    #[error("a pipeline must be started from within a tokio runtime")]
    NoRuntime,
}

/// Why a pipeline, or one item in it, failed.
///
/// `E` is the error type the stage functions return (by default
/// [`anyhow::Error`]). Every variant that comes from a stage names it.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipelineError<E = anyhow::Error> {
    /// A stage function returned `Err` (or a [`Stage`](crate::Stage)'s
    /// `setup`/`teardown` did).
    Failed {
        /// The stage's name.
        stage: Arc<str>,
        /// The stage's error.
        error: E,
    },
    /// A stage function panicked; the panic was caught in its worker.
    Panicked {
        /// The stage's name.
        stage: Arc<str>,
        /// The panic's message.
        message: String,
    },
    /// An item ran past the stage's per-item timeout and was dropped.
    TimedOut {
        /// The stage's name.
        stage: Arc<str>,
        /// The timeout that was exceeded.
        after: Duration,
    },
    /// The pipeline was stopped from outside before it finished: through
    /// [`PipelineHandle::cancel`](crate::PipelineHandle::cancel), the token
    /// given to [`Pipeline::token`](crate::Pipeline::token), or the context
    /// given to [`Pipeline::context`](crate::Pipeline::context). The
    /// [`Cause`] tells which: [`Cause::Cancelled`],
    /// [`Cause::DeadlineExceeded`], or the error given to
    /// [`Context::cancel_with`](crate::Context::cancel_with).
    Stopped(Cause),
    /// The pipeline was put together wrongly and never started.
    Build(BuildError),
}

impl<E> PipelineError<E> {
    /// The name of the stage the error came from, if it came from a stage.
    pub fn stage(&self) -> Option<&str> {
        match self {
            Self::Failed { stage, .. }
            | Self::Panicked { stage, .. }
            | Self::TimedOut { stage, .. } => Some(stage),
            Self::Stopped(_) | Self::Build(_) => None,
        }
    }

    /// The stage's own error, when the stage returned one.
    pub fn error(&self) -> Option<&E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Takes the stage's own error out, when the stage returned one.
    pub fn into_error(self) -> Option<E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether a stage panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }

    /// Whether the pipeline was stopped from outside (any [`Cause`]).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Stopped(_))
    }

    /// Why the pipeline was stopped from outside, if it was.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Self::Stopped(cause) => Some(cause),
            _ => None,
        }
    }
}

impl<E> From<BuildError> for PipelineError<E> {
    fn from(e: BuildError) -> Self {
        Self::Build(e)
    }
}

impl<E: fmt::Display> fmt::Display for PipelineError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { stage, error } => write!(f, "stage `{stage}` failed: {error}"),
            Self::Panicked { stage, message } => {
                write!(f, "stage `{stage}` panicked: {message}")
            }
            Self::TimedOut { stage, after } => {
                write!(f, "stage `{stage}` timed out on an item after {after:?}")
            }
            Self::Stopped(cause) => write!(f, "pipeline stopped: {cause}"),
            Self::Build(e) => write!(f, "pipeline could not start: {e}"),
        }
    }
}

/// The stage's error is part of the message (`stage `parse` failed: bad
/// digit`), so the error reads whole even where `source()` is not followed.
/// `source()` returns the [`BuildError`] for `Build` and the [`Cause`] for
/// `Stopped`; it cannot return the
/// stage's `E`, because the default `E`, `anyhow::Error`, is not itself a
/// `std::error::Error`. Use [`PipelineError::error`] to reach it.
impl<E: fmt::Debug + fmt::Display> std::error::Error for PipelineError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Build(e) => Some(e),
            Self::Stopped(cause) => Some(cause),
            _ => None,
        }
    }
}
