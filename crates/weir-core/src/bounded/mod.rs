//! Bounded fan-out: run a closure over many items with at most `limit` in
//! flight, each as its own tokio task.
//!
//! - [`for_each_bounded`] — the semaphore window: a new item starts as soon as
//!   one finishes, never more than `limit` at once.
//! - [`for_each_in_batches`] — the "stop tap": start `batch` items, wait for
//!   all of them, then start the next batch (100 requests as 5 rounds of 20).
//! - [`Bounded`] — the same with options: results in completion order, and the
//!   *continue* error policy ([`Bounded::run_all`]).
//!
//! Each item runs in a task spawned with `tokio::spawn`, so CPU-heavy bodies
//! use several cores on a multi-thread runtime. The window is a
//! [`tokio::sync::Semaphore`]: a permit is taken *before* the task is spawned
//! and moved into it, so it is released exactly when the work ends.
//!
//! # What happens when
//!
//! - **A body returns `Err`** (fail-fast, [`Bounded::run`]): the tasks in
//!   flight are aborted, no further item starts, and the first error is
//!   returned as [`BoundedError::Failed`] with the item's index. With
//!   [`Bounded::run_all`] (continue) every item runs and every result is kept.
//! - **A body panics:** the panic is caught in its task and becomes
//!   [`BoundedError::Panicked`] with the message; then as for an error.
//!   (`f` itself, the closure that *makes* each future, runs on the caller's
//!   task: a panic there unwinds into the caller, and the tasks in flight are
//!   aborted as the run is dropped.)
//! - **The token is cancelled:** the tasks in flight are aborted (dropped at
//!   their next `.await`), no further item starts, and [`BoundedError::Stopped`]
//!   is returned (`run_all`: for each item that did not finish).
//! - **The returned future is dropped:** every task in flight is aborted.
//! - **`limit` is 0:** [`BoundedError::ZeroLimit`], nothing runs.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), weir_core::bounded::BoundedError<std::io::Error>> {
//! let token = CancellationToken::new();
//! let start = tokio::time::Instant::now();
//! let squares = weir_core::bounded::for_each_bounded(1..=20u64, 5, &token, |n| async move {
//!     tokio::time::sleep(Duration::from_millis(100)).await;
//!     Ok::<_, std::io::Error>(n * n)
//! })
//! .await?;
//! assert_eq!(squares[..3], [1, 4, 9]); // input order
//! assert_eq!(start.elapsed(), Duration::from_millis(400)); // 20 jobs, 5 at a time
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use weir_context::{Cause, Context};

/// Why a bounded run (or, in [`Bounded::run_all`], one item) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoundedError<E> {
    /// The body returned an error for the item at `index`.
    #[error("item {index} failed: {error}")]
    Failed {
        /// Index of the item in the input.
        index: usize,
        /// The body's error.
        error: E,
    },
    /// The body panicked for the item at `index`.
    #[error("item {index} panicked: {message}")]
    Panicked {
        /// Index of the item in the input.
        index: usize,
        /// The panic message.
        message: String,
    },
    /// The token or context was cancelled (or the context's deadline
    /// passed) before the item, or the run, finished; the [`Cause`] says
    /// which ([`Cause::Cancelled`] for a plain token).
    #[error("stopped: {0}")]
    Stopped(Cause),
    /// A limit or batch size of 0 was given.
    #[error("limit must be at least 1")]
    ZeroLimit,
}

impl<E> BoundedError<E> {
    /// The index of the failed item, for [`Failed`](Self::Failed) and
    /// [`Panicked`](Self::Panicked).
    pub fn index(&self) -> Option<usize> {
        match self {
            BoundedError::Failed { index, .. } | BoundedError::Panicked { index, .. } => {
                Some(*index)
            }
            _ => None,
        }
    }
}

/// In which order results come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Order {
    /// Results in the order of the input items (the default).
    #[default]
    Input,
    /// Results in the order the items finished.
    Completion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Window,
    Batches,
}

/// Options for a bounded run: limit, token, window or batches, result order.
///
/// [`for_each_bounded`] is `Bounded::new(limit).token(&t).run(items, f)` and
/// [`for_each_in_batches`] is `Bounded::new(batch).in_batches().token(&t).run(items, f)`.
///
/// # Examples
///
/// The *continue* policy: every item runs, each result is kept.
///
/// ```
/// use weir_core::bounded::{Bounded, BoundedError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoundedError<String>> {
/// let results = Bounded::new(2)
///     .run_all(0..4, |n| async move {
///         if n == 2 { Err(format!("{n} is bad")) } else { Ok(n * 10) }
///     })
///     .await?;
/// assert_eq!(results[1].as_ref().ok(), Some(&10));
/// assert!(matches!(results[2], Err(BoundedError::Failed { index: 2, .. })));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Bounded {
    limit: usize,
    ctx: Context,
    mode: Mode,
    order: Order,
}

impl Bounded {
    /// At most `limit` items in flight (checked when run: 0 is
    /// [`BoundedError::ZeroLimit`]), a fresh token, results in input order.
    pub fn new(limit: usize) -> Self {
        Bounded {
            limit,
            ctx: Context::background(),
            mode: Mode::Window,
            order: Order::Input,
        }
    }

    /// Stops the run when `token` is cancelled.
    pub fn token(mut self, token: &CancellationToken) -> Self {
        self.ctx = Context::from(token.clone());
        self
    }

    /// Stops the run when `ctx` is cancelled or its deadline passes; the
    /// error then carries the context's [`Cause`]
    /// ([`BoundedError::Stopped`]).
    pub fn context(mut self, ctx: &Context) -> Self {
        self.ctx = ctx.clone();
        self
    }

    fn stopped<E>(&self) -> BoundedError<E> {
        BoundedError::Stopped(self.ctx.stopped().into_cause())
    }

    /// Runs batch by batch: start `limit` items, wait for all of them, then
    /// the next `limit` (the "stop tap").
    pub fn in_batches(mut self) -> Self {
        self.mode = Mode::Batches;
        self
    }

    /// Sets the order of the results.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Runs `f` on every item, fail-fast: the first error or panic aborts the
    /// items in flight, starts no further item, and is returned.
    ///
    /// `f` is called on the caller's task to make each future; the future
    /// runs in its own spawned task.
    ///
    /// # Errors
    ///
    /// The first [`BoundedError::Failed`] or [`BoundedError::Panicked`];
    /// [`BoundedError::Stopped`] when the token fires first;
    /// [`BoundedError::ZeroLimit`] when the limit is 0.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future aborts the items in flight and
    /// loses the results so far.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (it spawns tasks).
    pub async fn run<I, F, Fut, T, E>(&self, items: I, f: F) -> Result<Vec<T>, BoundedError<E>>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let mut out = Vec::new();
        let mut first_error = None;
        let outcome = self
            .drive(items, f, |index, result| match result {
                Ok(value) => {
                    out.push((index, value));
                    true
                }
                Err(err) => {
                    first_error = Some(err);
                    false
                }
            })
            .await?;
        if let Some(err) = first_error {
            return Err(err);
        }
        if outcome.cancelled {
            return Err(self.stopped());
        }
        if self.order == Order::Input {
            out.sort_unstable_by_key(|(index, _)| *index);
        }
        Ok(out.into_iter().map(|(_, value)| value).collect())
    }

    /// Runs `f` on every item and keeps every result (the *continue* error
    /// policy): one result per input item.
    ///
    /// If the token is cancelled, the items that had not finished get
    /// `Err(self.stopped())` (the ones not started never run).
    ///
    /// # Errors
    ///
    /// Only [`BoundedError::ZeroLimit`]; per-item failures are in the `Vec`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future aborts the items in flight and
    /// loses the results so far.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (it spawns tasks).
    #[allow(clippy::type_complexity)]
    pub async fn run_all<I, F, Fut, T, E>(
        &self,
        items: I,
        f: F,
    ) -> Result<Vec<Result<T, BoundedError<E>>>, BoundedError<E>>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let mut out = Vec::new();
        let mut items = items.into_iter();
        let outcome = self
            .drive(&mut items, f, |index, result| {
                out.push((index, result));
                true
            })
            .await?;
        if outcome.cancelled {
            // Account for every item: the ones that did not finish, and the
            // ones never started, are cancelled.
            let mut finished = vec![false; outcome.started];
            for (index, _) in &out {
                finished[*index] = true;
            }
            for (index, done) in finished.into_iter().enumerate() {
                if !done {
                    out.push((index, Err(self.stopped())));
                }
            }
            let rest = items.count();
            for index in outcome.started..outcome.started + rest {
                out.push((index, Err(self.stopped())));
            }
        }
        if self.order == Order::Input {
            out.sort_unstable_by_key(|(index, _)| *index);
        }
        Ok(out.into_iter().map(|(_, result)| result).collect())
    }

    /// The loop shared by `run` and `run_all`. `on_result` returns `false` to
    /// stop (fail-fast). Returns only after every task has ended.
    async fn drive<I, F, Fut, T, E>(
        &self,
        items: I,
        mut f: F,
        mut on_result: impl FnMut(usize, Result<T, BoundedError<E>>) -> bool,
    ) -> Result<Outcome, BoundedError<E>>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        if self.limit == 0 {
            return Err(BoundedError::ZeroLimit);
        }
        let token = self.ctx.token();
        let token = &token;
        let permits = Arc::new(Semaphore::new(self.limit));
        let mut tasks: JoinSet<(usize, Result<T, BoundedError<E>>)> = JoinSet::new();
        let mut items = items.into_iter().enumerate();
        let mut in_batch = 0;
        let mut round = 0usize;
        let mut started = 0usize;
        let mut stopped = false;
        // One waiter on the token for the whole run, not one per item.
        let cancelled = token.cancelled();
        tokio::pin!(cancelled);

        'feed: loop {
            if self.mode == Mode::Batches && in_batch == self.limit {
                // The tap is shut: wait for the whole batch before the next.
                while !tasks.is_empty() {
                    tokio::select! {
                        biased;
                        () = &mut cancelled => break 'feed,
                        Some(joined) = tasks.join_next() => {
                            if !on_result_of(joined, &mut on_result) {
                                stopped = true;
                                break 'feed;
                            }
                        }
                    }
                }
                in_batch = 0;
            }
            // Take a permit first (finishing tasks free them), then the item.
            let permit = loop {
                tokio::select! {
                    biased;
                    () = &mut cancelled => break 'feed,
                    Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                        if !on_result_of(joined, &mut on_result) {
                            stopped = true;
                            break 'feed;
                        }
                    }
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => break permit,
                        // The semaphore is never closed.
                        Err(_) => break 'feed,
                    },
                }
            };
            let Some((index, item)) = items.next() else {
                break;
            };
            if in_batch == 0 && self.mode == Mode::Batches {
                round += 1;
                tracing::debug!(round, "batch starts");
            }
            in_batch += 1;
            started += 1;
            let fut = f(item);
            let span = tracing::debug_span!("bounded", index);
            tasks.spawn(
                async move {
                    let _permit = permit; // released when the work ends
                    let result = match AssertUnwindSafe(fut).catch_unwind().await {
                        Ok(Ok(value)) => Ok(value),
                        Ok(Err(error)) => {
                            tracing::warn!("item failed");
                            Err(BoundedError::Failed { index, error })
                        }
                        Err(payload) => {
                            let message = weir_context::__private::panic_message(&*payload);
                            tracing::error!(%message, "item panicked");
                            Err(BoundedError::Panicked { index, message })
                        }
                    };
                    (index, result)
                }
                .instrument(span),
            );
        }

        if !stopped && !token.is_cancelled() {
            // Every item started: collect the rest.
            loop {
                tokio::select! {
                    biased;
                    () = &mut cancelled => break,
                    joined = tasks.join_next() => match joined {
                        None => return Ok(Outcome { started, cancelled: false }),
                        Some(joined) => {
                            if !on_result_of(joined, &mut on_result) {
                                stopped = true;
                                break;
                            }
                        }
                    },
                }
            }
        }
        // Fail-fast or cancelled: abort what is in flight and wait for it.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let cancelled = !stopped && token.is_cancelled();
        if cancelled {
            tracing::debug!(started, "bounded run cancelled");
        }
        Ok(Outcome { started, cancelled })
    }
}

/// How a `drive` loop ended: how many items started, and whether the token
/// stopped it (rather than the end of the items or a fail-fast error).
struct Outcome {
    started: usize,
    cancelled: bool,
}

fn on_result_of<T, E>(
    joined: Result<(usize, Result<T, BoundedError<E>>), tokio::task::JoinError>,
    on_result: &mut impl FnMut(usize, Result<T, BoundedError<E>>) -> bool,
) -> bool {
    match joined {
        Ok((index, result)) => on_result(index, result),
        // Tasks are only aborted after the loop; panics are caught inside.
        Err(_) => true,
    }
}

/// Runs `f` on every item with at most `limit` in flight, each in its own
/// task; results in input order; fail-fast.
///
/// Shorthand for `Bounded::new(limit).token(token).run(items, f)`; see
/// [`Bounded`] for completion order and the continue policy, and the
/// [module docs](self) for errors, panics, cancellation and drop.
///
/// # Errors
///
/// See [`Bounded::run`].
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future aborts the items in flight.
///
/// # Panics
///
/// When called outside a tokio runtime (it spawns tasks).
pub async fn for_each_bounded<I, F, Fut, T, E>(
    items: I,
    limit: usize,
    token: &CancellationToken,
    f: F,
) -> Result<Vec<T>, BoundedError<E>>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    Bounded::new(limit).token(token).run(items, f).await
}

/// Runs `f` on the items batch by batch: `batch` at once, wait for all, then
/// the next batch; results in input order; fail-fast (an error stops the
/// current batch and no later batch starts).
///
/// Use this when the other side wants rounds (a rate-limited API that allows
/// `batch` requests per window); otherwise [`for_each_bounded`] keeps the
/// window full and finishes sooner.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), weir_core::bounded::BoundedError<std::io::Error>> {
/// let token = CancellationToken::new();
/// let start = tokio::time::Instant::now();
/// let done = weir_core::bounded::for_each_in_batches(0..100, 20, &token, |i| async move {
///     tokio::time::sleep(Duration::from_millis(10 + i % 7)).await;
///     Ok::<_, std::io::Error>(i)
/// })
/// .await?;
/// assert_eq!(done.len(), 100);
/// // 5 rounds, each as long as its slowest job (16ms).
/// assert_eq!(start.elapsed(), Duration::from_millis(5 * 16));
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// See [`Bounded::run`]; a `batch` of 0 is [`BoundedError::ZeroLimit`].
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future aborts the items in flight.
///
/// # Panics
///
/// When called outside a tokio runtime (it spawns tasks).
pub async fn for_each_in_batches<I, F, Fut, T, E>(
    items: I,
    batch: usize,
    token: &CancellationToken,
    f: F,
) -> Result<Vec<T>, BoundedError<E>>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    Bounded::new(batch)
        .in_batches()
        .token(token)
        .run(items, f)
        .await
}

impl<E> BoundedError<E> {
    /// Maps the body's error type.
    pub fn map_err<E2>(self, f: impl FnOnce(E) -> E2) -> BoundedError<E2> {
        match self {
            BoundedError::Failed { index, error } => BoundedError::Failed {
                index,
                error: f(error),
            },
            BoundedError::Panicked { index, message } => BoundedError::Panicked { index, message },
            BoundedError::Stopped(cause) => BoundedError::Stopped(cause),
            BoundedError::ZeroLimit => BoundedError::ZeroLimit,
        }
    }
}
