//! [`AdaptiveLimitError`]: why no slot was handed out.

use weir_context::Cause;

/// Why [`AdaptiveLimit::acquire`](super::AdaptiveLimit::acquire) or
/// [`try_acquire`](super::AdaptiveLimit::try_acquire) handed out no slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdaptiveLimitError {
    /// The wait ended because its context was cancelled or its deadline
    /// passed ([`Cause::DeadlineExceeded`]).
    #[error("adaptive limit wait stopped: {0}")]
    Stopped(Cause),
    /// [`try_acquire`](super::AdaptiveLimit::try_acquire): every slot is
    /// taken (or others are waiting for theirs first).
    #[error("adaptive limit: all {limit} slot(s) are taken")]
    WouldWait {
        /// The limit when the slot was refused.
        limit: usize,
    },
}

impl AdaptiveLimitError {
    /// Why the wait was stopped, if it was.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Self::Stopped(cause) => Some(cause),
            Self::WouldWait { .. } => None,
        }
    }
}
