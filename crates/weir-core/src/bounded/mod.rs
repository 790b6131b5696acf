//! Bounded fan-out: run a closure over many items with at most `limit` in
//! flight, each as its own tokio task.
//!
//! - [`for_each_bounded`] — the semaphore window: a new item starts as soon as
//!   one finishes, never more than `limit` at once.
//! - [`for_each_in_batches`] — the "stop tap": start `batch` items, wait for
//!   all of them, then start the next batch (100 requests as 5 rounds of 20).
//! - [`Bounded`] — the same with options: a [`Context`] that stops the run,
//!   results in completion order ([`ResultOrder`]), and the *continue* error
//!   policy ([`Bounded::run_all`]).
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
//!   returned as [`BoundedError::Failed`] with the item's index and the
//!   body's error value, inside a [`RunError`] with the [`BoundedReport`].
//!   With [`Bounded::run_all`] (continue) every item runs and every result
//!   is kept.
//! - **A body panics** (or `f`, the closure that makes each future, panics
//!   for an item): the panic is caught and becomes
//!   [`BoundedError::Panicked`] with the [`Panic`](crate::Panic) (message
//!   and payload); then as for an error.
//! - **The context is cancelled or its deadline passes:** the tasks in
//!   flight are aborted (dropped at their next `.await`), no further item
//!   starts, and [`BoundedError::Stopped`] is returned with the
//!   [`Cause`](crate::Cause) ([`Cause::DeadlineExceeded`](crate::Cause::DeadlineExceeded)
//!   for a deadline). `run_all`: each item that did not finish gets that
//!   error.
//! - **The returned future is dropped:** every task in flight is aborted.
//! - **Settings**, checked when the run starts: a `limit` of 0, or a call
//!   outside a tokio runtime, is a [`ConfigError`] and nothing runs. A
//!   `limit` above what a tokio semaphore holds (`Semaphore::MAX_PERMITS`,
//!   `usize::MAX >> 3`) is lowered to it: such a limit means "no limit".
//! - Failures are handed to the caller, so each is logged once, as a DEBUG
//!   event; nothing is logged for a successful item.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> anyhow::Result<()> {
//! let start = tokio::time::Instant::now();
//! let squares = weir_core::for_each_bounded(1..=20u64, 5, |n| async move {
//!     tokio::time::sleep(Duration::from_millis(100)).await;
//!     Ok::<_, std::io::Error>(n * n)
//! })
//! .await?;
//! assert_eq!(squares[..3], [1, 4, 9]); // input order
//! assert_eq!(start.elapsed(), Duration::from_millis(400)); // 20 jobs, 5 at a time
//! # Ok(())
//! # }
//! ```

mod drive;
mod report;
mod window;

use std::fmt::{self, Display};
use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use weir_context::{ConfigError, Context, RunError};

pub use report::{BoundedError, BoundedReport};

use crate::adaptive::{AdaptiveLimit, ClassifyOutcome, IgnoreOnError};
use drive::{Flow, Halt, Mode, Outcome, drive};
use window::{Adaptive, Fixed};

/// In which order [`Bounded::run`] and [`Bounded::run_all`] return results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ResultOrder {
    /// Results in the order of the input items (the default).
    #[default]
    Input,
    /// Results in the order the items finished.
    Completion,
}

/// Options for a bounded run: limit, context, window or batches, result
/// order.
///
/// [`for_each_bounded`] is `Bounded::new(limit).run(items, f)` and
/// [`for_each_in_batches`] is `Bounded::new(batch).in_batches().run(items, f)`.
///
/// # Examples
///
/// A deadline for the whole run, and the report the error carries:
///
/// ```
/// use std::time::Duration;
/// use weir_core::{Bounded, BoundedError, Cause, Context};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let ctx = Context::background().with_timeout(Duration::from_millis(250));
/// let err = Bounded::new(2)
///     .context(ctx)
///     .run(0..10u64, |i| async move {
///         tokio::time::sleep(Duration::from_millis(100)).await;
///         anyhow::Ok(i)
///     })
///     .await
///     .unwrap_err();
/// assert!(matches!(err.error(), BoundedError::Stopped(Cause::DeadlineExceeded)));
/// let report = err.report();
/// assert_eq!((report.succeeded, report.cancelled), (4, 2));
/// assert!(report.is_balanced());
/// # }
/// ```
///
/// The *continue* policy: every item runs, each result is kept.
///
/// ```
/// use weir_core::{Bounded, BoundedError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), weir_core::ConfigError> {
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
///
/// An adaptive limit instead of a fixed one: each item holds a slot of
/// the limit while it runs, and its result teaches the limit.
///
/// ```
/// use std::time::Duration;
/// use weir_core::{AdaptiveLimit, Bounded};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> anyhow::Result<()> {
/// let limit = AdaptiveLimit::builder().initial(4).build()?;
/// let done = Bounded::adaptive(limit.clone())
///     .run(0..40u64, |i| async move {
///         tokio::time::sleep(Duration::from_millis(10)).await;
///         anyhow::Ok(i)
///     })
///     .await?;
/// assert_eq!(done.len(), 40);
/// assert_eq!(limit.stats().succeeded, 40);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Bounded<C = IgnoreOnError> {
    limit: usize,
    adaptive: Option<AdaptiveLimit>,
    ctx: Context,
    mode: Mode,
    order: ResultOrder,
    classify: C,
    /// Whether `classify` was called (it needs an adaptive limit).
    classified: bool,
}

impl<C> fmt::Debug for Bounded<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bounded")
            .field("limit", &self.limit)
            .field("adaptive", &self.adaptive)
            .field("ctx", &self.ctx)
            .field("mode", &self.mode)
            .field("order", &self.order)
            .field("classify", &self.classified)
            .finish()
    }
}

impl Bounded {
    /// At most `limit` items in flight, never cancelled from outside,
    /// results in input order. The limit is checked when the run starts (0
    /// is a [`ConfigError`]).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            adaptive: None,
            ctx: Context::background(),
            mode: Mode::Window,
            order: ResultOrder::Input,
            classify: IgnoreOnError,
            classified: false,
        }
    }

    /// At most as many items in flight as `limit` allows at each moment
    /// (see [`AdaptiveLimit`]): each item takes a slot of the limit before
    /// its task is spawned, holds it while it runs, and gives it back with
    /// its outcome ([`classify`](Self::classify); by default `Ok` is a
    /// success and `Err` says nothing, [`IgnoreOnError`]). A panicking or
    /// aborted item frees its slot with no verdict. When the limit falls,
    /// the items running go on; new ones start as they end. Other users of
    /// the same limit share its slots.
    ///
    /// The report's `limit` is the limit when the run ended, and its
    /// [`adaptive`](BoundedReport::adaptive) field the limit's stats then.
    /// Batches ([`in_batches`](Self::in_batches)) are a [`ConfigError`]
    /// with an adaptive limit.
    pub fn adaptive(limit: AdaptiveLimit) -> Self {
        Self {
            adaptive: Some(limit),
            ..Self::new(1)
        }
    }
}

impl<C> Bounded<C> {
    /// Stops the run when `ctx` is cancelled or its deadline passes; the
    /// error then carries the context's cause ([`BoundedError::Stopped`]).
    /// The run never cancels `ctx`. A `Context`, a `&Context` or a
    /// `CancellationToken` converts.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.ctx = ctx.into();
        self
    }

    /// Runs batch by batch: start `limit` items, wait for all of them, then
    /// the next `limit` (the "stop tap").
    pub fn in_batches(mut self) -> Self {
        self.mode = Mode::Batches;
        self
    }

    /// Sets the order of the results.
    pub fn order(mut self, order: ResultOrder) -> Self {
        self.order = order;
        self
    }

    /// Decides what each item's result tells the
    /// [`adaptive`](Bounded::adaptive) limit: a `Fn(&Result<T, E>) ->
    /// LimitOutcome` (or any [`ClassifyOutcome`]); say
    /// [`Dropped`](crate::LimitOutcome::Dropped) for the errors that mean
    /// overload. Checked when the run starts: only with an adaptive limit.
    pub fn classify<C2>(self, classify: C2) -> Bounded<C2> {
        Bounded {
            limit: self.limit,
            adaptive: self.adaptive,
            ctx: self.ctx,
            mode: self.mode,
            order: self.order,
            classify,
            classified: true,
        }
    }

    /// The limit to run with: at least 1, at most what a semaphore holds.
    fn check(&self) -> Result<usize, ConfigError> {
        if self.limit == 0 {
            return Err(ConfigError::zero("bounded", "limit"));
        }
        if let Some(limit) = &self.adaptive
            && self.mode == Mode::Batches
        {
            return Err(ConfigError::invalid(
                format!("bounded run under adaptive limit `{}`", limit.name()),
                "in_batches",
                "cannot size batches by an adaptive limit",
            ));
        }
        if self.classified && self.adaptive.is_none() {
            return Err(ConfigError::invalid(
                "bounded",
                "classify",
                "needs an adaptive limit (`Bounded::adaptive`) to tell",
            ));
        }
        tokio::runtime::Handle::try_current().map_err(|_| ConfigError::no_runtime("bounded"))?;
        Ok(self.limit.min(Semaphore::MAX_PERMITS))
    }

    /// Runs the driver with this run's window: the fixed one, or the
    /// adaptive limit's (whose stats go in the report).
    async fn drive<I, F, Fut, T, E>(
        self,
        limit: usize,
        items: I,
        f: F,
        sink: impl FnMut(usize, Result<T, BoundedError<E>>) -> Flow,
    ) -> Outcome
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Display + Send + 'static,
        C: ClassifyOutcome<T, E> + Send + Sync + 'static,
    {
        match self.adaptive {
            None => {
                let window = Fixed(Arc::new(Semaphore::new(limit)));
                drive(&self.ctx, window, limit, self.mode, items, f, sink).await
            }
            Some(adaptive) => {
                let window = Adaptive {
                    limit: adaptive.clone(),
                    classify: Arc::new(self.classify),
                };
                let mut outcome = drive(&self.ctx, window, limit, self.mode, items, f, sink).await;
                let stats = adaptive.stats();
                outcome.report.limit = stats.limit;
                outcome.report.adaptive = Some(stats);
                outcome
            }
        }
    }

    /// Runs `f` on every item, fail-fast: the first error or panic aborts the
    /// items in flight, starts no further item, and is returned. On success,
    /// the values, in input order (or completion order, see
    /// [`order`](Self::order)).
    ///
    /// `f` is called on the caller's task to make each future (a panic there
    /// is the item's panic); the future runs in its own spawned task.
    ///
    /// It takes the options by value, so the returned future owns them: it
    /// can be stored, joined or spawned (`Bounded` is `Clone` for reuse).
    ///
    /// # Errors
    ///
    /// A [`RunError`] with the [`BoundedReport`] and: the first
    /// [`BoundedError::Failed`] or [`BoundedError::Panicked`];
    /// [`BoundedError::Stopped`] when the context was cancelled first;
    /// [`BoundedError::Config`] for a limit of 0 or no tokio runtime.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future aborts the items in flight and
    /// loses the results so far.
    pub async fn run<I, F, Fut, T, E>(
        self,
        items: I,
        f: F,
    ) -> Result<Vec<T>, RunError<BoundedError<E>, BoundedReport>>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Display + Send + 'static,
        C: ClassifyOutcome<T, E> + Send + Sync + 'static,
    {
        let limit = match self.check() {
            Ok(limit) => limit,
            Err(e) => return Err(RunError::new(e.into(), BoundedReport::default())),
        };
        let (ctx, order) = (self.ctx.clone(), self.order);
        let mut out = Vec::new();
        let mut first_error = None;
        let outcome = self
            .drive(limit, items, f, |index, result| match result {
                Ok(value) => {
                    out.push((index, value));
                    Flow::Continue
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                    Flow::Stop
                }
            })
            .await;
        match (outcome.halt, first_error) {
            (Some(Halt::Cancelled), _) => Err(RunError::new(
                BoundedError::Stopped(ctx.stopped().into_cause()),
                outcome.report,
            )),
            (_, Some(err)) => Err(RunError::new(err, outcome.report)),
            (_, None) => Ok(sorted(order, out)),
        }
    }

    /// Runs `f` on every item and keeps every result (the *continue* error
    /// policy): one result per input item, in input order (or completion
    /// order, see [`order`](Self::order)).
    ///
    /// If the context is cancelled, the items that had not finished and the
    /// ones never started get `Err(BoundedError::Stopped(cause))`: to give
    /// each its result the rest of the input is read (not run), so an
    /// endless input under a context never ends here — use
    /// [`run`](Self::run) for endless inputs.
    ///
    /// This is not an `.error_policy(..)` option of [`run`](Self::run): the
    /// two policies return different things (values, or one result per
    /// item), and a `run` that returned only the values under *continue*
    /// would lose the failures' values.
    ///
    /// # Errors
    ///
    /// Only a [`ConfigError`] (a limit of 0, no tokio runtime); per-item
    /// failures are in the `Vec`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future aborts the items in flight and
    /// loses the results so far.
    #[allow(clippy::type_complexity)]
    pub async fn run_all<I, F, Fut, T, E>(
        self,
        items: I,
        f: F,
    ) -> Result<Vec<Result<T, BoundedError<E>>>, ConfigError>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Display + Send + 'static,
        C: ClassifyOutcome<T, E> + Send + Sync + 'static,
    {
        let limit = self.check()?;
        let (ctx, order) = (self.ctx.clone(), self.order);
        let mut out = Vec::new();
        let mut items = items.into_iter();
        let outcome = self
            .drive(limit, &mut items, f, |index, result| {
                out.push((index, result));
                Flow::Continue
            })
            .await;
        if outcome.halt.is_some() {
            // Account for every item: the ones that did not finish, and the
            // ones never started, were stopped.
            let stopped = || Err(BoundedError::Stopped(ctx.stopped().into_cause()));
            let started = outcome.report.started as usize;
            let mut finished = vec![false; started];
            for (index, _) in &out {
                finished[*index] = true;
            }
            for (index, done) in finished.into_iter().enumerate() {
                if !done {
                    out.push((index, stopped()));
                }
            }
            for (index, _) in items.enumerate() {
                out.push((started + index, stopped()));
            }
        }
        Ok(sorted(order, out))
    }
}

/// The results, in input order if `order` says so.
fn sorted<R>(order: ResultOrder, mut out: Vec<(usize, R)>) -> Vec<R> {
    if order == ResultOrder::Input {
        out.sort_unstable_by_key(|(index, _)| *index);
    }
    out.into_iter().map(|(_, value)| value).collect()
}

/// Runs `f` on every item with at most `limit` in flight, each in its own
/// task; results in input order; fail-fast.
///
/// Shorthand for `Bounded::new(limit).run(items, f)`; see [`Bounded`] for a
/// context, completion order and the continue policy, and the
/// [module docs](self) for errors, panics, cancellation and drop.
///
/// # Errors
///
/// See [`Bounded::run`].
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future aborts the items in flight.
pub async fn for_each_bounded<I, F, Fut, T, E>(
    items: I,
    limit: usize,
    f: F,
) -> Result<Vec<T>, RunError<BoundedError<E>, BoundedReport>>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Display + Send + 'static,
{
    Bounded::new(limit).run(items, f).await
}

/// Runs `f` on the items batch by batch: `batch` at once, wait for all, then
/// the next batch; results in input order; fail-fast (an error stops the
/// current batch and no later batch starts).
///
/// Use this when the other side wants rounds (a rate-limited API that allows
/// `batch` requests per window); otherwise [`for_each_bounded`] keeps the
/// window full and finishes sooner. Shorthand for
/// `Bounded::new(batch).in_batches().run(items, f)`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> anyhow::Result<()> {
/// let start = tokio::time::Instant::now();
/// let done = weir_core::for_each_in_batches(0..100, 20, |i| async move {
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
/// See [`Bounded::run`]; a `batch` of 0 is a [`ConfigError`].
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future aborts the items in flight.
pub async fn for_each_in_batches<I, F, Fut, T, E>(
    items: I,
    batch: usize,
    f: F,
) -> Result<Vec<T>, RunError<BoundedError<E>, BoundedReport>>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Display + Send + 'static,
{
    Bounded::new(batch).in_batches().run(items, f).await
}
