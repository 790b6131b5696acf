//! What can go wrong in a pipeline.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use weir_context::{Cause, ConfigError, Panic};

/// Why a pipeline, or one item in it, failed.
///
/// `E` is the error type the stage functions return (by default
/// [`anyhow::Error`]); a failure keeps that value. Every variant that comes
/// from a stage names it. The same type is an item's error on the
/// [`ErrorStream`](crate::ErrorStream) and, inside a
/// [`RunError`](crate::RunError) with the final report, the error of
/// [`PipelineHandle::join`](crate::PipelineHandle::join).
#[derive(Debug)]
#[non_exhaustive]
pub enum PipelineError<E = anyhow::Error> {
    /// A stage function returned `Err` (or a [`Stage`](crate::Stage)'s
    /// `setup`/`teardown` did, or a generator did).
    Failed {
        /// The stage's name (`"source"` for the pipeline's source).
        stage: Arc<str>,
        /// The stage's error.
        error: E,
    },
    /// A stage function (or the source: an iterator, a stream, a generator)
    /// panicked; the panic was caught in its task.
    Panicked {
        /// The stage's name (`"source"` for the pipeline's source).
        stage: Arc<str>,
        /// The panic: its message and its payload.
        panic: Panic,
    },
    /// An item ran past the stage's per-item timeout and was dropped.
    TimedOut {
        /// The stage's name.
        stage: Arc<str>,
        /// The timeout that was exceeded.
        after: Duration,
    },
    /// The pipeline was stopped from outside before it finished: through
    /// [`PipelineHandle::cancel`](crate::PipelineHandle::cancel) or the
    /// context given to [`Pipeline::context`](crate::Pipeline::context). The
    /// [`Cause`] tells which: [`Cause::Cancelled`],
    /// [`Cause::DeadlineExceeded`], a value given to
    /// [`Context::cancel_with`](crate::Context::cancel_with), or
    /// [`GraceExpired`](crate::GraceExpired) after
    /// [`shutdown`](crate::PipelineHandle::shutdown).
    Stopped(Cause),
    /// A setting cannot work (zero workers, zero capacity, a misplaced or
    /// zero timeout, no runtime); nothing was started.
    Config(ConfigError),
}

impl<E> PipelineError<E> {
    /// The name of the stage the error came from, if it came from a stage.
    pub fn stage(&self) -> Option<&str> {
        match self {
            Self::Failed { stage, .. }
            | Self::Panicked { stage, .. }
            | Self::TimedOut { stage, .. } => Some(stage),
            Self::Stopped(_) | Self::Config(_) => None,
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

    /// The panic, when a stage panicked.
    pub fn panic(&self) -> Option<&Panic> {
        match self {
            Self::Panicked { panic, .. } => Some(panic),
            _ => None,
        }
    }

    /// Whether a stage panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }

    /// Whether the pipeline was stopped from outside (any [`Cause`]).
    pub fn is_stopped(&self) -> bool {
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

impl<E> From<ConfigError> for PipelineError<E> {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl<E: fmt::Display> fmt::Display for PipelineError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { stage, error } => write!(f, "stage `{stage}` failed: {error}"),
            Self::Panicked { stage, panic } => write!(f, "stage `{stage}` panicked: {panic}"),
            Self::TimedOut { stage, after } => {
                write!(f, "stage `{stage}` timed out on an item after {after:?}")
            }
            Self::Stopped(cause) => write!(f, "pipeline stopped: {cause}"),
            Self::Config(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// The stage's error is part of the message (`stage `parse` failed: bad
/// digit`), so the error reads whole where `source()` is not followed, and
/// `source()` does not repeat it: it returns nothing for a stage's failure
/// (the default `E`, `anyhow::Error`, is not itself a
/// `std::error::Error`; use [`PipelineError::error`] to reach it) and for
/// the other variants, whose message already says everything.
impl<E: fmt::Debug + fmt::Display> std::error::Error for PipelineError<E> {}
