//! [`BoundedError`] and [`BoundedReport`]: how a bounded run went.

use std::fmt;
use std::time::Duration;

use weir_context::__private::write_table;
use weir_context::{Cause, ConfigError, Panic};

use crate::adaptive::AdaptiveLimitStats;

/// Why a bounded run (or, in [`Bounded::run_all`](super::Bounded::run_all),
/// one item) failed.
///
/// `E` is the error type the closure's futures return; a failure keeps that
/// value.
#[derive(Debug)]
#[non_exhaustive]
pub enum BoundedError<E> {
    /// The body returned an error for the item at `index`.
    Failed {
        /// Index of the item in the input.
        index: usize,
        /// The body's error.
        error: E,
    },
    /// The body (or the closure making it) panicked for the item at `index`.
    Panicked {
        /// Index of the item in the input.
        index: usize,
        /// The panic: its message and its payload.
        panic: Panic,
    },
    /// The context given to [`Bounded::context`](super::Bounded::context)
    /// was cancelled (or its deadline passed) before the item, or the run,
    /// finished; the [`Cause`] says which.
    Stopped(Cause),
    /// A setting cannot work (a limit of 0, no tokio runtime); nothing ran.
    Config(ConfigError),
}

impl<E> BoundedError<E> {
    /// The index of the item, for [`Failed`](Self::Failed) and
    /// [`Panicked`](Self::Panicked).
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::Failed { index, .. } | Self::Panicked { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// The body's own error, when it returned one.
    pub fn error(&self) -> Option<&E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Takes the body's own error out, when it returned one.
    pub fn into_error(self) -> Option<E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The panic, when the body panicked.
    pub fn panic(&self) -> Option<&Panic> {
        match self {
            Self::Panicked { panic, .. } => Some(panic),
            _ => None,
        }
    }

    /// Why the run was stopped from outside, if it was.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Self::Stopped(cause) => Some(cause),
            _ => None,
        }
    }

    /// Maps the body's error type.
    pub fn map_err<E2>(self, f: impl FnOnce(E) -> E2) -> BoundedError<E2> {
        match self {
            Self::Failed { index, error } => BoundedError::Failed {
                index,
                error: f(error),
            },
            Self::Panicked { index, panic } => BoundedError::Panicked { index, panic },
            Self::Stopped(cause) => BoundedError::Stopped(cause),
            Self::Config(e) => BoundedError::Config(e),
        }
    }
}

impl<E> From<ConfigError> for BoundedError<E> {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl<E: fmt::Display> fmt::Display for BoundedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { index, error } => write!(f, "item {index} failed: {error}"),
            Self::Panicked { index, panic } => write!(f, "item {index} panicked: {panic}"),
            Self::Stopped(cause) => write!(f, "bounded run stopped: {cause}"),
            Self::Config(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// The body's error is part of the message, so `source()` does not repeat
/// it; use [`BoundedError::error`] to reach it.
impl<E: fmt::Debug + fmt::Display> std::error::Error for BoundedError<E> {}

/// What a bounded run did, carried by its error
/// (`RunError::report()`).
///
/// Accounting law: `started = succeeded + failed + panicked + cancelled`
/// ([`is_balanced`](Self::is_balanced)); items the run never started (after
/// a fail-fast error or a cancellation) are not counted.
///
/// `Display` prints a table:
///
/// ```text
/// run      limit  started  succeeded  failed  panicked  cancelled
/// bounded      4       10          7       1         0          2
/// elapsed 1.2s
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BoundedReport {
    /// The limit (or batch size) the run used: the one asked for, lowered
    /// to what a tokio semaphore holds; under an adaptive limit, the limit
    /// in force when the run ended.
    pub limit: usize,
    /// Items whose body was started.
    pub started: u64,
    /// Items whose body returned `Ok`.
    pub succeeded: u64,
    /// Items whose body returned `Err` (panics not included).
    pub failed: u64,
    /// Items whose body panicked.
    pub panicked: u64,
    /// Items started but aborted before they ended, because the run stopped
    /// (a fail-fast failure, the context, or the run's future dropped).
    pub cancelled: u64,
    /// Time from the start of the run until its last task ended.
    pub elapsed: Duration,
    /// Under an adaptive limit ([`Bounded::adaptive`](super::Bounded::adaptive)),
    /// the limit's stats when the run ended (how it moved, every verdict;
    /// other users of the same limit count there too). `None` otherwise.
    pub adaptive: Option<AdaptiveLimitStats>,
}

impl BoundedReport {
    /// Whether every started item is accounted for.
    pub fn is_balanced(&self) -> bool {
        self.started == self.succeeded + self.failed + self.panicked + self.cancelled
    }
}

impl fmt::Display for BoundedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(
            f,
            &[
                "run",
                "limit",
                "started",
                "succeeded",
                "failed",
                "panicked",
                "cancelled",
            ],
            &[vec![
                "bounded".to_owned(),
                self.limit.to_string(),
                self.started.to_string(),
                self.succeeded.to_string(),
                self.failed.to_string(),
                self.panicked.to_string(),
                self.cancelled.to_string(),
            ]],
        )?;
        write!(f, "elapsed {:?}", self.elapsed)?;
        if let Some(stats) = &self.adaptive {
            write!(f, "\n{stats}")?;
        }
        Ok(())
    }
}
