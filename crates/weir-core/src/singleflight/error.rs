//! [`SingleflightError`]: why a call gave no value.

use std::sync::Arc;

use weir_context::{Cause, Panic};

/// Why a [`Singleflight::call`](super::Singleflight::call) gave no value.
///
/// `Failed` displays as the call's own error (it adds nothing to it);
/// `source()` is not set, since the message already contains the error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SingleflightError<E = anyhow::Error> {
    /// The call returned `Err(error)`; every caller of that call gets the
    /// same value.
    #[error("{error}")]
    Failed {
        /// The call's error, shared by its callers.
        error: Arc<E>,
        /// Whether more than one caller asked for this call (see
        /// [`Flight::shared`](super::Flight::shared)).
        shared: bool,
    },
    /// The call (or the closure that made it) panicked; the panic was
    /// caught and every caller of that call gets it.
    #[error("singleflight call panicked: {panic}")]
    Panicked {
        /// The panic: its message and its payload.
        panic: Panic,
        /// Whether more than one caller asked for this call.
        shared: bool,
    },
    /// This caller's context was cancelled or its deadline passed before
    /// the call ended; the call went on for the others.
    #[error("singleflight wait stopped: {0}")]
    Stopped(Cause),
}

impl<E> SingleflightError<E> {
    /// The call's own error, if it returned one.
    pub fn error(&self) -> Option<&E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Takes the call's own error out (shared with its other callers).
    pub fn into_error(self) -> Option<Arc<E>> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The panic, if the call panicked.
    pub fn panic(&self) -> Option<&Panic> {
        match self {
            Self::Panicked { panic, .. } => Some(panic),
            _ => None,
        }
    }

    /// Whether the call panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }

    /// Why this caller's wait was stopped, if it was.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Self::Stopped(cause) => Some(cause),
            _ => None,
        }
    }

    /// Whether this caller's wait was stopped by its context.
    pub fn is_stopped(&self) -> bool {
        matches!(self, Self::Stopped(_))
    }

    /// Whether more than one caller got this error (false for `Stopped`,
    /// which is this caller's own).
    pub fn is_shared(&self) -> bool {
        match self {
            Self::Failed { shared, .. } | Self::Panicked { shared, .. } => *shared,
            Self::Stopped(_) => false,
        }
    }
}

impl<E> Clone for SingleflightError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Failed { error, shared } => Self::Failed {
                error: Arc::clone(error),
                shared: *shared,
            },
            Self::Panicked { panic, shared } => Self::Panicked {
                panic: panic.clone(),
                shared: *shared,
            },
            Self::Stopped(cause) => Self::Stopped(cause.clone()),
        }
    }
}
