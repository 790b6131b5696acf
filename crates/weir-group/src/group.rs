//! [`Group`]: the task group itself.

use std::collections::VecDeque;
use std::fmt::{self, Debug, Display};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::Id;
use tokio::time::Instant;
use weir_chan::lane::LaneRx;
use weir_context::__private::{Construct, Label, Origin};
use weir_context::{Context, ErrorPolicy, Panic, RunError};

use crate::book::{Book, Late};
use crate::builder::GroupBuilder;
use crate::error::{GroupError, GroupErrors, TrySpawnError};
#[cfg(feature = "metrics")]
use crate::metrics::Settled;
use crate::report::Order;
use crate::report::{Counts, GroupReport};
use crate::spawn::spawn;
use crate::task::{Delivered, Delivery, Outcome, PlainTask, Returned, RichTask, Shared};

/// What [`Group::join`] and [`Group::shutdown`] return: the report, or every
/// failure together with the report.
type Joined<T, E> = Result<GroupReport<T>, RunError<GroupErrors<E>, GroupReport<T>>>;

/// A set of tasks that run concurrently under one [`Context`], stop together
/// at the first failure, and are all joined (or aborted) before the group is
/// gone: Go's `errgroup` for tokio.
///
/// `T` is what each task returns on success, `E` its error: every task is a
/// future of `Result<T, E>`. The defaults, `Group<(), anyhow::Error>`, fit
/// the common "run these, stop at the first error" case. Rust does not use
/// type defaults for inference, so name the type where you create the
/// group: `let mut group: Group = Group::new();`.
///
/// [`Group::new`] has no limit, fails fast and runs under a fresh context;
/// [`Group::builder`] sets a limit, the [`ErrorPolicy`], whether panics are
/// resumed, and the context to run under.
///
/// # Examples
///
/// Fetch three pages at most two at a time; keep the pages in spawn order:
///
/// ```
/// use std::time::Duration;
/// use weir_group::Group;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> anyhow::Result<()> {
/// let mut group: Group<String> = Group::builder().limit(2).build()?;
/// for page in ["a", "b", "c"] {
///     // `spawn` waits here while two fetches are running.
///     group
///         .spawn_named(page, async move {
///             tokio::time::sleep(Duration::from_millis(10)).await;
///             Ok(format!("<page {page}>"))
///         })
///         .await;
/// }
/// let report = group.join().await?;
/// assert_eq!(report.succeeded, 3);
/// assert_eq!(report.into_values_ordered(), ["<page a>", "<page b>", "<page c>"]);
/// # Ok(())
/// # }
/// ```
///
/// # On error
///
/// Under [`ErrorPolicy::FailFast`] (the default) a task's `Err` cancels the
/// group's [`context`](Group::context) the moment it happens, with that
/// error — the value itself — as the cause: `ctx.cause()` downcasts to
/// `E`. Tasks that watch the context stop; tasks that do not run to their
/// end. [`join`](Group::join) still waits for every task, then returns every
/// failure, the first first. Under [`ErrorPolicy::Continue`] a failure
/// cancels nothing and every task runs.
///
/// # On panic
///
/// A panic inside a task is caught in that task and reported as
/// [`GroupError::Panicked`], with the task's name and the [`Panic`] (its
/// message and its payload); under fail-fast it cancels the group like an
/// error, with the cause `task <name> panicked: <message>` (a task spawned
/// without a name is named there by its tokio task id: only the group knows
/// its spawn index). With
/// [`resume_panics(true)`](GroupBuilder::resume_panics) the code that joins
/// the group re-raises it instead, with its original payload.
///
/// # On cancellation
///
/// [`cancel`](Group::cancel), or the cancellation or deadline of the
/// context given to [`GroupBuilder::context`], cancels the group's context.
/// The group does not abort anything on cancellation: tasks are expected to
/// watch the context (`ctx.cancelled()`, `ctx.run(..)`). Use
/// [`shutdown`](Group::shutdown) to bound how long they may take. A task
/// that stops because of a cancellation decides how it ends: an `Err` is a
/// failure like any other, an `Ok` a success.
///
/// # On drop
///
/// Dropping the group cancels its context and aborts every task still
/// running (a `WARN` event says how many tasks were not joined); their
/// results, and those of finished tasks not yet joined, are dropped.
/// [`join`](Group::join) and [`shutdown`](Group::shutdown) consume the
/// group, so dropping their future half-way aborts the tasks too.
///
/// # Comparison to JoinSet
///
/// A [`JoinSet`](tokio::task::JoinSet) runs tasks and hands back their
/// results; what a group adds is what an errgroup needs around it:
///
/// | | `JoinSet` | `Group` |
/// |---|---|---|
/// | results | `join_next`, one `Result<T, JoinError>` | [`join_next`](Group::join_next) per task, or [`join`](Group::join): every value (completion or spawn order) and every failure at once, with counts |
/// | first error cancels the rest | by hand | [`ErrorPolicy::FailFast`], the moment it happens, the error as the context's cause |
/// | concurrency limit | by hand (a `Semaphore`) | [`limit`](GroupBuilder::limit): the slot is taken before the task exists; [`try_spawn`](Group::try_spawn) hands the future back |
/// | panics | a `JoinError` (`join_all` re-raises) | [`GroupError::Panicked`] with the task's name and the payload, or resumed |
/// | errors name their task | no | `task fetch-a failed: ..` ([`spawn_named`](Group::spawn_named)) |
/// | bounded wait | by hand | [`shutdown(grace)`](Group::shutdown): cancel, wait, abort, report |
/// | on drop | aborts its tasks | cancels the context and aborts its tasks |
///
/// It is also cheaper: see "Cost" below. Use a bare `JoinSet` when you need
/// neither cancellation nor errors, and tokio-util's `TaskTracker` when the
/// tasks return nothing and you only wait for them all.
///
/// # Coming from Go
///
/// | Go (`golang.org/x/sync/errgroup`) | weir |
/// |---|---|
/// | `var g errgroup.Group` | `let mut g: Group = Group::new();` |
/// | `g, ctx := errgroup.WithContext(ctx)` | `let mut g: Group = Group::builder().context(&ctx).build()?;` and `g.context()` |
/// | `g.SetLimit(n)` | `Group::builder().limit(n)`; `0` is a [`ConfigError`](crate::ConfigError), not a hang; the limit is fixed once built |
/// | `g.Go(func() error { .. })` | `g.spawn(async move { ..; Ok(()) }).await` (waits for a slot) |
/// | `ok := g.TryGo(f)` | `g.try_spawn(fut)`: `Err(TrySpawnError)`, `into_inner()` gives `fut` back |
/// | `err := g.Wait()` | `g.join().await`: `Ok(report)`, or `Err` holding every failure (first first) and the report |
/// | `context.Cause(ctx)` after a failure | `g.context().cause()`: the first error itself, `downcast_ref::<E>()` |
/// | `errors.Join` of every error | [`ErrorPolicy::Continue`] and the [`GroupErrors`] of `join` |
///
/// Tasks return values, not only errors, so you do not need a shared slice
/// and an index per goroutine: [`GroupReport::into_values_ordered`] gives
/// them back in spawn order. `join` consumes the group (Go's `Wait` may be
/// called again); to go on with the same group, take every result with
/// [`join_next`](Group::join_next).
///
/// # Cost
///
/// A task is a plain [`tokio::spawn`] of your future in a wrapper that
/// carries one pointer more (and its name, a tracing span when a subscriber
/// wants it, and its permit when the group is limited), so a small future
/// takes a task cell no larger than in a `JoinSet`. When your future
/// returns, the wrapper puts its result in the group's completion queue (a
/// lane of weir's one hand-off, `weir-chan`) that holds at most one entry
/// per task not yet joined and that the group takes a whole batch at a time. The group keeps each task's `JoinHandle` in a `Vec` in spawn
/// order, to abort the task and to see that it has ended, and now and then
/// lets go of the handles of tasks that have ended, which frees their task
/// memory before the final `join`. So spawning and joining costs about what
/// `tokio::spawn` and a `Vec` of handles cost, well under what a `JoinSet`
/// costs, whose per-task bookkeeping (an `Arc`'d list entry, a mutex taken
/// on spawn, completion and join) this avoids; weir's `benches/group.rs`
/// measures it (figures in `docs/benchmarks.md`).
pub struct Group<T = (), E = anyhow::Error> {
    shared: Arc<Shared<T, E>>,
    /// The group's end of the completion queue.
    done: LaneRx<Delivered<T, E>>,
    /// Outcomes taken from the completion queue and not yet handed to the
    /// caller, in the order the tasks delivered them.
    delivered: VecDeque<Delivered<T, E>>,
    /// Tasks spawned and not yet handed to the caller (running or ended).
    live: usize,
    /// Panics that tokio caught after a task had delivered its outcome.
    late: Late,
    limit: Option<Limit>,
    book: Book<Returned<T, E>>,
    resume_panics: bool,
    counts: Counts,
    started: Instant,
    name: Arc<str>,
    /// Where the group was made (the leak check's listing).
    origin: Origin,
    #[cfg(feature = "metrics")]
    series: crate::metrics::GroupSeries,
}

/// The name of a group nobody named.
pub(crate) const DEFAULT_NAME: &str = "group";

#[derive(Debug)]
struct Limit {
    max: usize,
    slots: Arc<Semaphore>,
}

impl<T, E> Default for Group<T, E> {
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> Group<T, E> {
    /// An empty group with the default settings: no limit,
    /// [`ErrorPolicy::FailFast`], panics reported as errors, and a fresh
    /// context that only the group cancels. Needs no runtime.
    #[track_caller]
    pub fn new() -> Self {
        Self::from_settings(
            Context::background(),
            None,
            ErrorPolicy::FailFast,
            false,
            Arc::from(DEFAULT_NAME),
        )
    }

    /// The settings of a new group: [`limit`](GroupBuilder::limit),
    /// [`error_policy`](GroupBuilder::error_policy),
    /// [`resume_panics`](GroupBuilder::resume_panics),
    /// [`context`](GroupBuilder::context); then
    /// [`build`](GroupBuilder::build).
    pub fn builder() -> GroupBuilder<T, E> {
        GroupBuilder::new()
    }

    /// The one constructor; `new` and `GroupBuilder::build` feed it.
    #[track_caller]
    pub(crate) fn from_settings(
        ctx: Context,
        limit: Option<usize>,
        policy: ErrorPolicy,
        resume_panics: bool,
        name: Arc<str>,
    ) -> Self {
        let (shared, done) = Shared::new(ctx, policy);
        Self {
            #[cfg(feature = "metrics")]
            series: crate::metrics::GroupSeries::new(&name),
            name,
            origin: Origin::here(),
            shared: Arc::new(shared),
            done,
            delivered: VecDeque::new(),
            live: 0,
            late: Vec::new(),
            limit: limit.map(|max| Limit {
                max,
                slots: Arc::new(Semaphore::new(max)),
            }),
            book: Book::default(),
            resume_panics,
            counts: Counts::default(),
            started: Instant::now(),
        }
    }

    /// The group's name ([`GroupBuilder::name`]; `"group"` unless set).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limit, or `None` when the group is unlimited.
    pub fn max_tasks(&self) -> Option<usize> {
        self.limit.as_ref().map(|l| l.max)
    }

    /// The group's context: a child of the one given to
    /// [`GroupBuilder::context`] (or a fresh one). Clone it into tasks that
    /// should stop when the group does (`ctx.cancelled().await`,
    /// `ctx.run(work)`, or `ctx.token()` for code that speaks
    /// `CancellationToken`).
    ///
    /// It is cancelled by the first failure under
    /// [`ErrorPolicy::FailFast`], by [`cancel`](Group::cancel), by the
    /// parent context, and when the group is dropped (so also once `join`
    /// or `shutdown` returns, as Go cancels a `WithContext` context when
    /// `Wait` returns). Its [`cause`](Context::cause) says why: the first
    /// failing task's error itself (`cause.downcast_ref::<E>()`), a
    /// [`GroupError::Panicked`] (`task <name> panicked: ..`, downcast to
    /// `GroupError<E>`), [`Cause::Cancelled`](weir_context::Cause::Cancelled),
    /// or the parent's cause.
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_group::Group;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Doom;
    /// impl std::fmt::Display for Doom {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("doomed")
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut group: Group<(), Doom> = Group::new();
    /// let ctx = group.context().clone();
    /// group.spawn(async { Err(Doom) }).await;
    /// let err = group.join().await.unwrap_err();
    /// assert_eq!(err.error().first().error(), Some(&Doom));
    /// // Go: errors.Is(context.Cause(ctx), errDoom)
    /// assert_eq!(ctx.cause().unwrap().downcast_ref::<Doom>(), Some(&Doom));
    /// # }
    /// ```
    pub fn context(&self) -> &Context {
        &self.shared.ctx
    }

    /// Cancels the group's context (cause
    /// [`Cause::Cancelled`](weir_context::Cause::Cancelled), unless it was
    /// cancelled already). Nothing is aborted: tasks that watch the context
    /// end on their own; [`shutdown`](Group::shutdown) bounds the wait.
    pub fn cancel(&self) {
        self.shared.ctx.cancel();
    }

    /// Whether the group's context is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.shared.ctx.is_cancelled()
    }

    /// How many tasks were spawned and not yet joined (running or finished).
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether every spawned task has been joined.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least one more outcome is in `delivered`. Cancel safe:
    /// what it takes is kept in `delivered`.
    async fn deliveries(&mut self) {
        // The group holds a sender (in `shared`), so the queue never ends
        // while it reads.
        std::future::poll_fn(|cx| self.done.poll_recv_all(cx, &mut self.delivered)).await;
    }

    /// Waits until every task has delivered its outcome. Cancel safe.
    async fn all_delivered(&mut self) {
        // Each task delivers exactly once, so this ends.
        while self.delivered.len() < self.live {
            self.deliveries().await;
        }
    }

    /// A late panic noted for this task, if any.
    fn take_late(&mut self, id: Id) -> Option<Panic> {
        if self.late.is_empty() {
            return None;
        }
        let at = self.late.iter().position(|(late, _)| *late == id)?;
        Some(self.late.swap_remove(at).1)
    }
}

impl<T, E> Group<T, E>
where
    T: Send + 'static,
    E: Display + Debug + Send + Sync + 'static,
{
    /// Spawns `fut` as a task of the group, first waiting for a free slot if
    /// the group is limited (Go's `Go`).
    ///
    /// The task runs inside a `task` tracing span with its index. Its `Err`
    /// or panic cancels the group's context the moment it happens (under
    /// [`ErrorPolicy::FailFast`]). A task spawned after the group was
    /// cancelled still runs, with the context cancelled, as in Go.
    ///
    /// `E` is `Send + Sync + Debug` because the first failure becomes the
    /// cause of the group's context as the value itself, shared.
    ///
    /// # Cancel safety
    ///
    /// Dropping this future while it waits for a slot takes no slot and
    /// spawns nothing; but `fut` is dropped with it. Use
    /// [`try_spawn`](Group::try_spawn) to keep the future when there is no
    /// slot.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`tokio::spawn`]; the group is left as
    /// it was.
    pub async fn spawn<F>(&mut self, fut: F)
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let permit = self.slot().await;
        self.start(None, fut, permit);
    }

    /// [`spawn`](Group::spawn) with a name, used in the task's span and in
    /// its errors (`task fetch-a failed: ..`).
    ///
    /// # Cancel safety
    ///
    /// As for [`spawn`](Group::spawn).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`tokio::spawn`].
    pub async fn spawn_named<F>(&mut self, name: impl Into<Arc<str>>, fut: F)
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let permit = self.slot().await;
        self.start(Some(name.into()), fut, permit);
    }

    /// Spawns `fut` if the group has a free slot, without waiting (Go's
    /// `TryGo`). An unlimited group always has one.
    ///
    /// # Errors
    ///
    /// [`TrySpawnError`] when the group is at its limit; it hands `fut`
    /// back unchanged and never polled ([`TrySpawnError::into_inner`]).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`tokio::spawn`].
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_group::Group;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// let mut group: Group<u32> = Group::builder().limit(1).build()?;
    /// let slow = async {
    ///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    ///     Ok(1)
    /// };
    /// group.try_spawn(slow)?;
    /// let refused = group.try_spawn(async { Ok(2) }).unwrap_err();
    /// group.join_next().await; // the slot frees
    /// group.try_spawn(refused.into_inner())?;
    /// assert_eq!(group.join().await?.into_values(), [2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_spawn<F>(&mut self, fut: F) -> Result<(), TrySpawnError<F>>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.try_start(None, fut)
    }

    /// [`try_spawn`](Group::try_spawn) with a name.
    ///
    /// # Errors
    ///
    /// [`TrySpawnError`] when the group is at its limit, handing `fut` back.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like [`tokio::spawn`].
    pub fn try_spawn_named<F>(
        &mut self,
        name: impl Into<Arc<str>>,
        fut: F,
    ) -> Result<(), TrySpawnError<F>>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.try_start(Some(name.into()), fut)
    }

    /// Waits for the next task to finish and returns its result, in
    /// completion order; `None` once every spawned task has been joined.
    ///
    /// The task has ended when this returns: its future has been dropped.
    /// The task is counted in the report of [`join`](Group::join), but its
    /// value or error is yours, not the report's. A failure handed out here
    /// is a `DEBUG` event.
    ///
    /// # Panics
    ///
    /// With [`resume_panics(true)`](GroupBuilder::resume_panics), resumes the
    /// panic of a task that panicked, with its original payload.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, no result
    /// is lost.
    pub async fn join_next(&mut self) -> Option<Result<T, GroupError<E>>> {
        if self.live == 0 {
            return None;
        }
        if self.delivered.is_empty() {
            self.deliveries().await;
        }
        let id = self.delivered.front()?.0;
        // The task delivered its outcome from inside its last poll; tokio
        // drops its future right after (on another thread, it may not have
        // yet). Nothing is taken out until that is done.
        self.book.wait_ended(id, &mut self.late).await;
        let delivered = self.delivered.pop_front()?;
        let result = self.settle(delivered);
        if self.is_empty() {
            // Everything is joined: what the group knew of its tasks can go.
            self.book.clear();
        } else {
            self.book.joined_one(id);
        }
        match result {
            Ok((_, value)) => Some(Ok(value)),
            Err(error) => {
                if self.resume_panics
                    && let Some(panic) = error.panic()
                {
                    panic.clone().resume();
                }
                Some(Err(error))
            }
        }
    }

    /// Waits for every task to end (Go's `Wait`), then returns the report:
    /// how many tasks ended each way, and the values of those that
    /// succeeded ([`GroupReport::into_values`] in completion order,
    /// [`into_values_ordered`](GroupReport::into_values_ordered) in spawn
    /// order).
    ///
    /// Tasks already taken with [`join_next`](Group::join_next) are counted
    /// but their results are not repeated. The group is consumed; its
    /// context is cancelled when this returns. No task of the group is alive
    /// when it returns.
    ///
    /// # Errors
    ///
    /// When any task it joined failed, panicked or was aborted: a
    /// [`RunError`] holding every such failure in [`GroupErrors`], in the
    /// order they happened (the first first; under fail-fast the first is
    /// what cancelled the group), and the report, with the values of the
    /// tasks that did succeed (`err.report()`, `err.into_report()`). Each
    /// failure is also a `DEBUG` event.
    ///
    /// # Panics
    ///
    /// With [`resume_panics(true)`](GroupBuilder::resume_panics), resumes the
    /// earliest panic, with its original payload, once every task has ended.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future drops the group, which cancels
    /// its context and aborts the tasks still running; finished results are
    /// lost. Use [`join_next`](Group::join_next) in a `select!` loop to keep
    /// them.
    pub async fn join(mut self) -> Joined<T, E> {
        self.all_delivered().await;
        self.book.finish(&mut self.late).await;
        self.conclude(self.resume_panics)
    }

    /// Stops the group: cancels its context, waits up to `grace` for the
    /// tasks to end, then aborts those still running and waits for them to
    /// go. Returns what [`join`](Group::join) returns; aborted tasks are
    /// failures of kind [`GroupError::Aborted`] and are counted in the
    /// report's `aborted`. Panics are reported, never resumed.
    ///
    /// The group first cancels, then waits: it has no intake to close, and
    /// the grace period is the time its tasks get to clean up after the
    /// cancel. A `grace` so long that the deadline is beyond the clock's
    /// range (`Duration::MAX`) waits for every task. When this returns no
    /// task of the group is left; a task that never yields to the runtime
    /// cannot be aborted, and this waits for it.
    ///
    /// # Errors
    ///
    /// As [`join`](Group::join): every failure (an `Err`, a panic, an
    /// abort), with the report.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future drops the group, which aborts the
    /// tasks still running at once.
    pub async fn shutdown(mut self, grace: Duration) -> Joined<T, E> {
        self.shared.ctx.cancel();
        let drained = match weir_context::__private::deadline_after(grace) {
            Some(deadline) => tokio::time::timeout_at(deadline, self.all_delivered())
                .await
                .is_ok(),
            None => {
                self.all_delivered().await;
                true
            }
        };
        if !drained {
            tracing::debug!(
                tasks = self.live - self.delivered.len(),
                ?grace,
                "task group: grace period over; aborting the tasks still running"
            );
            self.book.abort_all();
            // An aborted task delivers `Aborted` as tokio drops it.
            self.all_delivered().await;
        }
        self.book.finish(&mut self.late).await;
        self.conclude(false)
    }

    /// Takes a slot of a limited group, waiting for one.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let slots = Arc::clone(&self.limit.as_ref()?.slots);
        // The semaphore is never closed, so this always gets a permit.
        slots.acquire_owned().await.ok()
    }

    fn try_start<F>(&mut self, name: Option<Arc<str>>, fut: F) -> Result<(), TrySpawnError<F>>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let permit = match &self.limit {
            None => None,
            Some(limit) => match Arc::clone(&limit.slots).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return Err(TrySpawnError::new(fut)),
            },
        };
        self.start(name, fut, permit);
        Ok(())
    }

    fn start<F>(&mut self, name: Option<Arc<str>>, fut: F, permit: Option<OwnedSemaphorePermit>)
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let index = self.book.next_index();
        let span = tracing::info_span!("task", index, name = name.as_deref());
        let shared = Arc::clone(&self.shared);
        // tokio sizes a task's memory by its future: the common case (no
        // slot to hold, no span to enter, no name) spawns the smallest
        // wrapper. If this panics (no runtime), the wrapper is dropped
        // outside any task and delivers nothing: the group is as it was.
        let label = Label {
            construct: Construct::Group,
            name: &self.name,
            task: "task",
            stage: None,
            index: usize::try_from(index).ok(),
            origin: self.origin,
        };
        let handle = match (permit, span.is_disabled(), &name) {
            (None, true, None) => spawn(&label, PlainTask::new(fut, Delivery::new(shared, ()))),
            (None, true, Some(_)) => spawn(
                &label,
                PlainTask::new(fut, Delivery::new(shared, name.clone())),
            ),
            (permit, _, _) => {
                let delivery = Delivery::new(shared, name.clone());
                spawn(&label, RichTask::new(fut, delivery, permit, span))
            }
        };
        self.live += 1;
        self.counts.spawned += 1;
        #[cfg(feature = "metrics")]
        self.series.spawned();
        self.book.record(handle, name, &mut self.late);
    }

    /// Turns a delivered outcome into the task's value and spawn index, or
    /// an error that names the task; counts it, and logs a failure.
    fn settle(&mut self, (id, outcome): Delivered<T, E>) -> Result<(Id, T), GroupError<E>> {
        self.live -= 1;
        let outcome = match self.take_late(id) {
            Some(panic) => Outcome::Panicked(Box::new(panic)),
            None => outcome,
        };
        let error = match outcome {
            Outcome::Ok(value) => {
                self.counts.succeeded += 1;
                #[cfg(feature = "metrics")]
                self.series.settled(Settled::Succeeded);
                self.book.forget_name(id);
                return Ok((id, value));
            }
            Outcome::Err(error) => {
                self.counts.failed += 1;
                #[cfg(feature = "metrics")]
                self.series.settled(Settled::Failed);
                GroupError::Failed {
                    task: self.book.take_label(id),
                    error,
                }
            }
            Outcome::Panicked(panic) => {
                self.counts.panicked += 1;
                #[cfg(feature = "metrics")]
                self.series.settled(Settled::Panicked);
                GroupError::Panicked {
                    task: self.book.take_label(id),
                    panic: *panic,
                }
            }
            Outcome::Aborted => {
                self.counts.aborted += 1;
                #[cfg(feature = "metrics")]
                self.series.settled(Settled::Aborted);
                GroupError::Aborted {
                    task: self.book.take_label(id),
                }
            }
        };
        // Handed to the caller as a value: a DEBUG event, once.
        tracing::debug!(%error, "task group: task did not succeed");
        Err(error)
    }

    /// Hands out every delivered outcome, once every task has ended: the
    /// report, or every failure with the report. Resumes the earliest panic
    /// if asked to.
    fn conclude(&mut self, resume: bool) -> Joined<T, E> {
        let mut values = Vec::with_capacity(self.delivered.len());
        let mut ids = Vec::with_capacity(self.delivered.len());
        let mut errors = Vec::new();
        while let Some(delivered) = self.delivered.pop_front() {
            match self.settle(delivered) {
                Ok((id, value)) => {
                    ids.push(id);
                    values.push(value);
                }
                Err(error) => errors.push(error),
            }
        }
        if resume && let Some(panic) = errors.iter().find_map(GroupError::panic) {
            panic.clone().resume();
        }
        let order = if self.book.ids_in_spawn_order() {
            Order::Ids(ids)
        } else {
            // Never with today's tokio; spawn indexes then, from the book.
            Order::Indexes(
                ids.into_iter()
                    .map(|id| self.book.index(id).unwrap_or(u64::MAX))
                    .collect(),
            )
        };
        let report = GroupReport::new(self.counts, self.started.elapsed(), values, order);
        match GroupErrors::new(errors) {
            None => Ok(report),
            Some(errors) => Err(RunError::new(errors, report)),
        }
    }
}

impl<T, E> Drop for Group<T, E> {
    fn drop(&mut self) {
        if self.live > 0 {
            tracing::warn!(
                tasks = self.live,
                "task group dropped before its tasks were joined; aborting them"
            );
            // They are no longer the group's: counted as aborted.
            #[cfg(feature = "metrics")]
            for _ in 0..self.live {
                self.series.settled(Settled::Aborted);
            }
        }
        // Go cancels a WithContext context when Wait returns; weir when the
        // group is gone (`join` and `shutdown` consume it).
        self.shared.ctx.cancel();
        self.book.abort_all();
        // What was delivered and not joined goes now; the aborted tasks'
        // deliveries are dropped as they come.
        drop(self.done.close_and_take());
    }
}

impl<T, E> fmt::Debug for Group<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("tasks", &self.len())
            .field("max_tasks", &self.max_tasks())
            .field("cancelled", &self.is_cancelled())
            .field("error_policy", &self.shared.policy())
            .field("resume_panics", &self.resume_panics)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::book::{COMPACT_AFTER, SWEEP_EVERY};

    /// A long-lived group joined one task at a time, with a task that lives
    /// through all the others: what the book keeps stays bounded.
    #[tokio::test(start_paused = true)]
    async fn a_long_lived_group_joined_one_by_one_keeps_its_book_bounded() {
        let mut group: Group<u64, &'static str> = Group::builder().limit(8).build().unwrap();
        group
            .spawn(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(0)
            })
            .await;
        let mut most = 0;
        for i in 1..=20_000u64 {
            group
                .spawn(async move {
                    tokio::time::sleep(Duration::from_millis(i % 3)).await;
                    Ok(i)
                })
                .await;
            while group.len() > 4 {
                group.join_next().await.unwrap().unwrap();
            }
            most = most.max(group.book.kept());
            assert!(
                group.book.held() <= group.len(),
                "a joined task's handle is kept"
            );
            assert!(group.delivered.len() <= group.len());
        }
        assert!(most <= 3 * COMPACT_AFTER, "the book grew to {most}");
        let report = group.join().await.unwrap();
        assert_eq!(report.into_values().len(), 4);
    }

    /// A group that is never joined until the end lets go of the handles of
    /// the tasks that ended as it spawns (freeing their task memory), even
    /// past a task that runs all along; `join` still has every value.
    #[tokio::test(start_paused = true)]
    async fn spawning_lets_go_of_the_handles_of_ended_tasks() {
        let mut group: Group<u64, &'static str> = Group::builder().limit(4).build().unwrap();
        group
            .spawn(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(0)
            })
            .await;
        for i in 1..10_000u64 {
            group
                .spawn(async move {
                    tokio::task::yield_now().await;
                    Ok(i)
                })
                .await;
            // Three times the running tasks, plus what spawned since the
            // last sweep.
            let bound = 3 * 4 + SWEEP_EVERY;
            let held = group.book.held();
            assert!(held <= bound, "{held} handles held");
        }
        assert_eq!(group.len(), 10_000);
        let values = group.join().await.unwrap().into_values_ordered();
        assert_eq!(values, (0..10_000).collect::<Vec<_>>());
    }
}
