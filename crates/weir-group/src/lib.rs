//! An errgroup for tokio: a set of tasks that is bounded, cancels on the first
//! error and never leaks.
//!
//! [`Group`] is Go's `golang.org/x/sync/errgroup` for tokio. Its tasks are
//! plain `tokio::spawn`s that hand their results to the group through a
//! completion queue, which costs well under what a
//! [`JoinSet`](tokio::task::JoinSet) does (see [`Group`]'s "Cost"):
//!
//! - **Bounded before spawning.** With [`Group::limit`], [`Group::spawn`]
//!   takes a slot *before* it spawns (it waits while the group is full) and
//!   [`Group::try_spawn`] hands the future back; at most `n` tasks exist at
//!   once.
//! - **Fail fast.** The first `Err` or panic cancels the group's
//!   [`token`](Group::token) at the moment it happens; [`Group::wait`]
//!   returns that first failure once every task has ended.
//! - **Never leaks.** Waiting methods return only when every task has ended;
//!   dropping the group aborts what is still running;
//!   [`Group::shutdown`] bounds the wait with a grace period.
//! - **Panics are errors** ([`GroupError::Panicked`], with the message and the
//!   task's name), or are resumed in the waiter if you ask.
//! - **Every failure, if you want them all:** [`Group::wait_all`] (one result
//!   per task) and [`Group::wait_joined`] ([`GroupErrors`], Go's
//!   `errors.Join`).
//!
//! # Examples
//!
//! Three fetches; the second fails at 50 ms, which cancels the third:
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::sleep;
//! use weir_group::{Group, GroupError};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let mut group: Group<&str, String> = Group::new();
//! for (name, ms, ok) in [("a", 10, true), ("b", 50, false), ("c", 500, true)] {
//!     let token = group.token().clone();
//!     group
//!         .spawn_named(name, async move {
//!             tokio::select! {
//!                 _ = token.cancelled() => return Err("cancelled".to_string()),
//!                 _ = sleep(Duration::from_millis(ms)) => {}
//!             }
//!             if ok { Ok(name) } else { Err(format!("{name}: 503")) }
//!         })
//!         .await;
//! }
//! let start = tokio::time::Instant::now();
//! match group.wait().await {
//!     Err(GroupError::Failed { task, error }) => {
//!         assert_eq!((task.as_str(), error.as_str()), ("b", "b: 503"));
//!     }
//!     other => panic!("unexpected: {other:?}"),
//! }
//! // "c" stopped at 50 ms instead of running for 500 ms.
//! assert_eq!(start.elapsed(), Duration::from_millis(50));
//! # }
//! ```
//!
//! # Tracing
//!
//! Each task runs in an `info` span named `task` with its `index` and `name`.
//! A failure is a `warn` event, a panic an `error` event, both inside the
//! task's span; dropping a group with tasks still running is a `warn` event.
#![forbid(unsafe_code)]

mod error;
mod group;
mod task;

pub use error::{GroupError, GroupErrors, LimitError, Rejected};
pub use group::{Group, ShutdownReport};
