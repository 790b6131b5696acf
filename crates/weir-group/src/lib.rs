//! An errgroup for tokio: a set of tasks that is bounded, stops at the first
//! error and never leaks.
//!
//! [`Group`] is Go's `golang.org/x/sync/errgroup` for tokio, following
//! weir's conventions (one way for every construct: `.context(..)`,
//! `cancel`, `join`, `shutdown`, a report, errors that keep your value):
//!
//! - **Bounded before spawning.** With [`GroupBuilder::limit`],
//!   [`Group::spawn`] takes a slot *before* it spawns (it waits while the
//!   group is full) and [`Group::try_spawn`] hands the future back
//!   ([`TrySpawnError::into_inner`]); at most `n` tasks exist at once.
//! - **Fail fast, with the cause.** Under [`ErrorPolicy::FailFast`] (the
//!   default) the first `Err` or panic cancels the group's
//!   [`context`](Group::context) the moment it happens, and the error value
//!   itself is the context's cause (`ctx.cause()` downcasts to your error
//!   type). [`ErrorPolicy::Continue`] lets every task run.
//! - **One ending.** [`Group::join`] waits for every task and returns a
//!   [`GroupReport`] (counts, and the values in completion or spawn order),
//!   or every failure in [`GroupErrors`] (Go's `errors.Join`) together with
//!   that report. [`Group::join_next`] streams results one by one;
//!   [`Group::shutdown`] cancels, waits up to a grace period, then aborts.
//! - **Never leaks.** `join` and `shutdown` return only when every task has
//!   ended; dropping the group aborts what is still running.
//! - **Panics are errors** ([`GroupError::Panicked`], with the task's name,
//!   the message and the payload), or are resumed in the joiner, with their
//!   original payload, if you ask.
//! - **Cheaper than a `JoinSet`.** Its tasks are plain `tokio::spawn`s that
//!   hand their results to the group through a completion queue (see
//!   [`Group`]'s "Comparison to JoinSet" and "Cost").
//!
//! [`Group`]'s docs map Go's `errgroup` API onto it ("Coming from Go").
//!
//! # Examples
//!
//! Three fetches; the second fails at 50 ms, which cancels the third:
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::sleep;
//! use weir_group::Group;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let mut group: Group<&str, String> = Group::new();
//! for (name, ms, ok) in [("a", 10, true), ("b", 50, false), ("c", 500, true)] {
//!     let ctx = group.context().clone();
//!     group
//!         .spawn_named(name, async move {
//!             match ctx.run(sleep(Duration::from_millis(ms))).await {
//!                 Err(stopped) => Err(stopped.to_string()),
//!                 Ok(()) if ok => Ok(name),
//!                 Ok(()) => Err("503".to_string()),
//!             }
//!         })
//!         .await;
//! }
//! let start = tokio::time::Instant::now();
//! let err = group.join().await.unwrap_err();
//! // "b" failed first; "c" stopped at 50 ms instead of running for 500 ms.
//! assert_eq!(err.error().first().to_string(), "task b failed: 503");
//! assert_eq!(err.error().len(), 2);
//! assert_eq!(start.elapsed(), Duration::from_millis(50));
//! // The report keeps what did succeed.
//! assert_eq!(err.report().succeeded, 1);
//! assert_eq!(err.into_report().into_values(), ["a"]);
//! # }
//! ```
//!
//! # Tracing
//!
//! Each task runs in an `info` span named `task` with its `index` and, if it
//! has one, its `name`. A failure that [`join`](Group::join),
//! [`join_next`](Group::join_next) or [`shutdown`](Group::shutdown) hands
//! back is a `DEBUG` event (formatted with `Display`); nothing is logged for
//! a task that succeeds; dropping a group with tasks not joined is a `WARN`
//! event.
#![forbid(unsafe_code)]

mod book;
mod builder;
mod error;
mod group;
#[cfg(feature = "metrics")]
mod metrics;
mod report;
mod spawn;
mod task;

pub use builder::GroupBuilder;
pub use error::{GroupError, GroupErrors, TrySpawnError};
pub use group::Group;
pub use report::GroupReport;
pub use weir_context::{Cause, ConfigError, Context, ErrorPolicy, Panic, RunError};
