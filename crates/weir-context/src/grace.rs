//! [`GraceExpired`]: the cause of a context that a `shutdown(grace)`
//! cancelled when the grace period ran out.

use std::time::Duration;

/// A `shutdown(grace)` waited `grace` for work to finish on its own, then
/// cancelled what was left. Every construct's `shutdown` cancels its context
/// with this value, so the cause reads the same everywhere and can be told
/// apart from a plain cancel or a deadline:
///
/// ```
/// use std::time::Duration;
/// use weir_context::{Context, GraceExpired};
///
/// let ctx = Context::background();
/// ctx.cancel_with(GraceExpired { grace: Duration::from_secs(5) });
/// let cause = ctx.cause().unwrap();
/// assert!(cause.downcast_ref::<GraceExpired>().is_some());
/// assert_eq!(cause.to_string(), "the shutdown grace period of 5s ran out");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GraceExpired {
    /// The grace period that ran out.
    pub grace: Duration,
}

impl std::fmt::Display for GraceExpired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the shutdown grace period of {:?} ran out", self.grace)
    }
}

impl std::error::Error for GraceExpired {}
