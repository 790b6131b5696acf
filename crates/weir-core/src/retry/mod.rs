//! Retry with exponential backoff, full jitter and a budget.
//!
//! [`retry(&policy, || async { … })`](retry) runs an operation until it
//! succeeds or the [`RetryPolicy`] gives up:
//!
//! - **backoff**: retry `n` waits a random delay between zero and
//!   `min(max_delay, base × multiplier^(n − 1))` (AWS's full jitter), so
//!   callers that failed together do not retry together;
//! - **limits**: at most `max_attempts` attempts, none started after
//!   `max_elapsed`, and never a backoff that would end past the deadline of
//!   the call's [`Context`](crate::Context): then it stops at once with the
//!   last error;
//! - **a classifier** ([`retry_if`](RetryPolicyBuilder::retry_if)) decides
//!   which errors are worth another attempt;
//! - **a budget** ([`RetryBudget`], shared by every caller of a backend)
//!   caps retries at a fraction of requests, so that during an outage the
//!   retries do not multiply the load on what is already failing.
//!
//! The result is the operation's value, or a [`RetryError`] with the
//! **last** error (your value, kept as itself), why the policy gave up and
//! the call's [`RetryReport`] (attempts, retries, time spent waiting);
//! [`RetryPolicy::stats`] totals every call.
//!
//! # Examples
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use weir_core::{RetryError, RetryPolicy, retry};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> anyhow::Result<()> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(4)
//!     .base(Duration::from_millis(50))
//!     .retry_if(|e: &String| e.starts_with("busy"))
//!     .build()?;
//!
//! // Busy twice, then an answer.
//! let calls = AtomicU32::new(0);
//! let (answer, report) = retry(&policy, || async {
//!     match calls.fetch_add(1, Ordering::Relaxed) {
//!         0 | 1 => Err("busy".to_owned()),
//!         _ => Ok(42),
//!     }
//! })
//! .with_report()
//! .await;
//! assert_eq!(answer?, 42);
//! assert_eq!((report.attempts, report.retries), (3, 2));
//!
//! // Not retryable: given up at once, with the error itself.
//! let err = retry(&policy, || async { Err::<u32, _>("not found".to_owned()) })
//!     .await
//!     .unwrap_err();
//! assert!(matches!(&err, RetryError::Failed { error, .. } if error == "not found"));
//! assert_eq!(err.to_string(), "gave up after 1 attempt(s) (not retryable): not found");
//! # Ok(())
//! # }
//! ```
//!
//! # Cancellation, errors, panics and drop
//!
//! - With [`.context(ctx)`](RetryCall::context), cancelling `ctx` (or its
//!   deadline passing) drops the attempt in progress or cuts the backoff
//!   short: [`RetryError::Stopped`] with the cause and the last error, if
//!   an attempt had ended. A backoff that would end at or after the
//!   deadline is not slept at all: [`GiveUpReason::Deadline`].
//! - A panic in the operation is not caught: `retry` spawns nothing, and
//!   the panic unwinds to the caller as it would without `retry`.
//! - Dropping the future drops the attempt in progress; the call counts as
//!   `abandoned` in the policy's stats.
//! - Each retry is one `DEBUG` event (attempt, delay, the error in
//!   `Display` form, `{:#}` so an `anyhow::Error` shows its chain); giving
//!   up logs nothing, since the error is returned.
//! - Bad settings are a [`ConfigError`](crate::ConfigError) from `build()`;
//!   nothing here panics on any setting.
//!
//! # Time and randomness
//!
//! Backoffs sleep on tokio's clock, so on a paused runtime they take no
//! time. The jitter comes from a small seedable generator
//! ([`RetryPolicyBuilder::seed`]); with a seed the delays are the same on
//! every run.

mod backoff;
mod budget;
mod call;
mod error;
mod policy;
mod report;

pub use backoff::Jitter;
pub use budget::{RetryBudget, RetryBudgetBuilder};
pub use call::{RetryCall, RetryCallWithReport};
pub use error::{GiveUpReason, RetryError};
pub use policy::{MAX_RETRY_DELAY, RetryPolicy, RetryPolicyBuilder};
pub use report::{RetryReport, RetryStats};

/// Runs `op` until it returns `Ok`, or `policy` gives up; `.await` it,
/// after [`.context(ctx)`](RetryCall::context) to bound it. See the
/// [module docs](self).
///
/// `op` is called once per attempt and returns that attempt's future; a
/// closure over `async` blocks is the usual form: `|| async { … }`.
///
/// # Errors
///
/// [`RetryError::Failed`] with the last attempt's error when the policy
/// gave up ([`GiveUpReason`]: not retryable, out of attempts or time, the
/// next attempt past the deadline, the budget refused);
/// [`RetryError::Stopped`] when the context was cancelled first.
///
/// # Cancel safety
///
/// Dropping the future drops the attempt in progress, if any; nothing is
/// retried afterwards. Whether that attempt had an effect is up to the
/// operation.
pub fn retry<F, Fut, T, E>(policy: &RetryPolicy<E>, op: F) -> RetryCall<F, Fut, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    RetryCall::new(policy.clone(), op)
}

#[cfg(test)]
mod tests;
