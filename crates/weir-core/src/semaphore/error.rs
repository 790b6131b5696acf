//! [`SemaphoreError`]: why a semaphore call took or gave back nothing.

use weir_context::Cause;

/// Why a [`Semaphore`](super::Semaphore) call took or gave back nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// The wait of [`acquire`](super::Semaphore::acquire) ended because its
    /// context was cancelled or its deadline passed
    /// ([`Cause::DeadlineExceeded`]).
    #[error("semaphore wait stopped: {0}")]
    Stopped(Cause),
    /// [`try_acquire`](super::Semaphore::try_acquire): the permits are not free
    /// now, or others are waiting for theirs first.
    #[error("semaphore: {requested} permit(s) are not free without waiting")]
    WouldWait {
        /// Permits asked for.
        requested: u32,
    },
    /// More permits asked for than the semaphore's whole size
    /// ([`try_acquire`](super::Semaphore::try_acquire), or
    /// [`acquire`](super::Semaphore::acquire) without a context).
    #[error("semaphore: {requested} permit(s) asked for, more than its size of {size}")]
    TooLarge {
        /// Permits asked for.
        requested: u32,
        /// The semaphore's size.
        size: usize,
    },
    /// [`release`](super::Semaphore::release) of more permits than forgotten
    /// guards hold.
    #[error("semaphore: released {released} permit(s) but only {held} are held")]
    ReleaseExceedsHeld {
        /// Permits asked to release.
        released: usize,
        /// Permits held by forgotten guards.
        held: usize,
    },
}

impl SemaphoreError {
    /// Why the wait was stopped, if it was.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Self::Stopped(cause) => Some(cause),
            _ => None,
        }
    }
}
