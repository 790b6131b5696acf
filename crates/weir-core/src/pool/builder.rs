//! [`PoolBuilder`]: the pool's settings, checked when one of the two ways to
//! start it runs.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use weir_context::__private::{check_capacity, check_workers};
use weir_context::{ConfigError, Context, MAX_CAPACITY, MAX_WORKERS, Panic};

use super::runner::{JobRunner, Limited, Plain, Retrying};
use super::worker::{FnHandler, OnPanic, Settings, Shared, SpawnFn, run_worker};
use super::{JobHandler, Pool};
use crate::adaptive::{AdaptiveLimit, ClassifyOutcome, IgnoreOnError};
use crate::retry::RetryPolicy;
use tokio::time::Instant;
use weir_chan::queue::queue;

/// The pool a handler type `H` runs in.
type HandlerPool<H> =
    Pool<<H as JobHandler>::Job, <H as JobHandler>::Output, <H as JobHandler>::Error>;

/// Settings for a [`Pool`]; start with [`Pool::builder`].
///
/// Setters only record; [`build`](Self::build) and
/// [`build_with`](Self::build_with) check everything and return a
/// [`ConfigError`] naming the pool and the setting.
///
/// | setting | default | checked at build |
/// |---|---|---|
/// | [`workers`](Self::workers) | the number of CPUs ([`std::thread::available_parallelism`]) | 0: [`Problem::Zero`](weir_context::Problem::Zero); above [`MAX_WORKERS`]: [`Problem::TooLarge`](weir_context::Problem::TooLarge) |
/// | [`queue`](Self::queue) | twice the number of workers | 0 is the hand-off queue; above [`MAX_CAPACITY`]: lowered to it |
/// | [`results`](Self::results) | the queue's capacity (at least 1) | 0: `Problem::Zero`; above `MAX_CAPACITY`: lowered to it |
/// | [`max_waiting_submits`](Self::max_waiting_submits) | no limit | 0: `Problem::Zero` |
/// | [`name`](Self::name) | `"pool"` | |
/// | [`context`](Self::context) | a fresh [`Context::background`] | |
/// | [`on_panic`](Self::on_panic) | none | |
/// | [`adaptive`](Self::adaptive) | none: a fixed worker count | not with `workers` ([`Problem::Invalid`](weir_context::Problem::Invalid)) |
/// | [`classify`](Self::classify) | [`IgnoreOnError`] | only with `adaptive` (`Problem::Invalid`) |
/// | [`retry`](Self::retry) | none: each job runs once | (the policy was checked when it was built) |
///
/// The two type parameters are the options that depend on the jobs'
/// types: `R` is `()` or the [`RetryPolicy`] given to
/// [`retry`](Self::retry), `C` the [`classify`](Self::classify)
/// function. They are inferred; a program names the builder as
/// `PoolBuilder` (no options of that kind).
pub struct PoolBuilder<R = (), C = IgnoreOnError> {
    workers: Option<usize>,
    queue: Option<usize>,
    results: Option<usize>,
    max_waiting: Option<usize>,
    name: Arc<str>,
    parent: Option<Context>,
    on_panic: Option<OnPanic>,
    adaptive: Option<AdaptiveLimit>,
    /// Whether `classify` was called (it needs `adaptive`).
    classified: bool,
    classify: C,
    retry: R,
}

impl<R: Clone, C: Clone> Clone for PoolBuilder<R, C> {
    fn clone(&self) -> Self {
        Self {
            workers: self.workers,
            queue: self.queue,
            results: self.results,
            max_waiting: self.max_waiting,
            name: self.name.clone(),
            parent: self.parent.clone(),
            on_panic: self.on_panic.clone(),
            adaptive: self.adaptive.clone(),
            classified: self.classified,
            classify: self.classify.clone(),
            retry: self.retry.clone(),
        }
    }
}

impl<R: fmt::Debug, C> fmt::Debug for PoolBuilder<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("queue", &self.queue)
            .field("results", &self.results)
            .field("max_waiting_submits", &self.max_waiting)
            .field("name", &self.name)
            .field("context", &self.parent)
            .field("on_panic", &self.on_panic.is_some())
            .field("adaptive", &self.adaptive)
            .field("classify", &self.classified)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self {
            workers: None,
            queue: None,
            results: None,
            max_waiting: None,
            name: Arc::from("pool"),
            parent: None,
            on_panic: None,
            adaptive: None,
            classified: false,
            classify: IgnoreOnError,
            retry: (),
        }
    }
}

impl PoolBuilder {
    /// The default settings (the same as [`Pool::builder`]).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<R, C> PoolBuilder<R, C> {
    /// The number of worker tasks, 1 to [`MAX_WORKERS`].
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// The queue's capacity: how many submitted jobs may wait for a worker
    /// (at most [`MAX_CAPACITY`]; more is lowered to it, and nothing is
    /// allocated up front). When it is full, [`Pool::submit`] waits and
    /// [`Pool::try_submit`] hands the job back.
    ///
    /// Workers take jobs in shares (`len / workers`, 1 to 64 jobs) and give
    /// back what they have not started as soon as one of their jobs waits;
    /// a share counts as queued, so at most `capacity + 64 × workers` jobs
    /// are held at once (see the module docs).
    ///
    /// `0` means hand-off: a job is only accepted when an idle worker takes
    /// it at once (`submit` waits for an idle worker; `try_submit` succeeds
    /// only if one is idle), like Go's unbuffered channel.
    pub fn queue(mut self, capacity: usize) -> Self {
        self.queue = Some(capacity);
        self
    }

    /// The capacity of the [`PoolResults`](super::PoolResults) stream of
    /// detached jobs, 1 to [`MAX_CAPACITY`] (more is lowered to it). When it
    /// is full, a worker with a detached result waits for the reader.
    pub fn results(mut self, capacity: usize) -> Self {
        self.results = Some(capacity);
        self
    }

    /// At most `n` callers wait for room in a full queue at once (ants'
    /// `MaxBlockingTasks`): when `n` calls of [`submit`](Pool::submit),
    /// [`submit_detached`](Pool::submit_detached) or the `_timeout` ones
    /// already wait, the next one that would wait is refused at once with
    /// [`SubmitError::Overloaded`](super::SubmitError::Overloaded) (or
    /// [`SubmitTimeoutError::Overloaded`](super::SubmitTimeoutError::Overloaded)),
    /// its job handed back and counted as rejected. A submit that finds room
    /// never waits and is never refused by this. By default any number of
    /// callers may wait.
    pub fn max_waiting_submits(mut self, n: usize) -> Self {
        self.max_waiting = Some(n);
        self
    }

    /// The pool's name, in its tracing spans (`pool` field), its events and
    /// its [`ConfigError`]s.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// Runs the pool on a child of `ctx` (a [`Context`], a `&Context`, a
    /// `CancellationToken` or a `&CancellationToken`): when `ctx` is
    /// cancelled or its deadline passes, the pool stops as with
    /// [`Pool::cancel`] (intake closes, running jobs are dropped at their
    /// next `.await`, queued ones are cancelled; their tickets resolve to
    /// [`JobError::Cancelled`](super::JobError::Cancelled) with the cause).
    /// The pool's own cancel never cancels `ctx`.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.parent = Some(ctx.into());
        self
    }

    /// Calls `handler` once for each job that panics, after the job's
    /// ticket (or the results stream) got [`JobError::Panicked`](super::JobError::Panicked)
    /// — pond's and ants' panic handler. It runs on the worker, so keep it
    /// short; the [`Panic`] gives the message and the payload. A panic in
    /// `handler` is caught and logged. Panics in a handler's `setup` or
    /// the factory are not jobs and do not call it.
    pub fn on_panic(mut self, handler: impl Fn(&Panic) + Send + Sync + 'static) -> Self {
        self.on_panic = Some(Arc::new(handler));
        self
    }

    /// Sizes the pool by an [`AdaptiveLimit`]: it starts
    /// [`limit.limit()`](AdaptiveLimit::limit) workers and resizes itself
    /// each time the limit moves (between the limit's
    /// [`min`](AdaptiveLimit::min) and [`max`](AdaptiveLimit::max)), and
    /// each job holds a slot of the limit while it runs, given back with
    /// the job's outcome ([`classify`](Self::classify); by default `Ok` is
    /// a success and `Err` says nothing, [`IgnoreOnError`]), so the limit
    /// learns from the jobs' latency.
    ///
    /// A worker takes its slot after it dequeued a job, so the limit
    /// measures the job alone and counts only jobs that run; such a job
    /// waits for its slot only when the limit fell below the jobs running
    /// (or other users of the same limit hold its slots), and counts as
    /// running meanwhile. A panic or a cancellation frees the slot with no
    /// verdict (`abandoned` in [`AdaptiveLimit::stats`]). With
    /// [`retry`](Self::retry), each attempt takes its own slot: a backoff
    /// holds none.
    ///
    /// The report's [`limit`](super::PoolReport::limit) is the limit in
    /// force, [`workers`](super::PoolReport::workers) the workers alive
    /// (a shrink lets busy workers finish their job first); each move is
    /// the limit's own `DEBUG` event. A [`resize`](Pool::resize) holds
    /// only until the limit's next move. Once the pool closes, the worker
    /// count stays as it is while the queue drains.
    ///
    /// Checked at build: not together with [`workers`](Self::workers).
    pub fn adaptive(mut self, limit: AdaptiveLimit) -> Self {
        self.adaptive = Some(limit);
        self
    }

    /// Decides what each job's result tells the
    /// [`adaptive`](Self::adaptive) limit: a `Fn(&Result<O, E>) ->
    /// LimitOutcome` (or any [`ClassifyOutcome`]). Say
    /// [`Dropped`](crate::LimitOutcome::Dropped) for the errors that mean
    /// overload (a timeout, a "busy" answer) so the limit backs off.
    ///
    /// Checked at build: only with `adaptive`.
    pub fn classify<C2>(self, classify: C2) -> PoolBuilder<R, C2> {
        PoolBuilder {
            workers: self.workers,
            queue: self.queue,
            results: self.results,
            max_waiting: self.max_waiting,
            name: self.name,
            parent: self.parent,
            on_panic: self.on_panic,
            adaptive: self.adaptive,
            classified: true,
            classify,
            retry: self.retry,
        }
    }

    /// Runs each job again after a failure, as `policy` says (backoff with
    /// jitter, attempts, the budget, which errors are retried: see
    /// [`RetryPolicy`]). Each attempt gets a clone of the job (the last
    /// one the job itself), so the jobs must be `Clone`: the pool's
    /// `build` and `build_with` ask for it once this is set.
    ///
    /// A job whose policy gives up fails with its last error
    /// ([`JobError::Failed`](super::JobError::Failed)); a panic in an
    /// attempt is not retried ([`JobError::Panicked`](super::JobError::Panicked));
    /// a cancellation of the pool ends the attempt or the backoff in
    /// progress ([`JobError::Cancelled`](super::JobError::Cancelled) with
    /// the cause), and no backoff is slept that would end after the
    /// pool's deadline (the job fails with its last error instead). The
    /// worker holds the job through its backoffs. The report counts
    /// [`attempts`](super::PoolReport::attempts),
    /// [`retries`](super::PoolReport::retries) and
    /// [`budget_refusals`](super::PoolReport::budget_refusals); each retry
    /// is a `DEBUG` event, and the policy's [`stats`](RetryPolicy::stats)
    /// count this pool's calls too (a job cancelled mid-call as
    /// `abandoned`).
    pub fn retry<E>(self, policy: RetryPolicy<E>) -> PoolBuilder<RetryPolicy<E>, C> {
        PoolBuilder {
            workers: self.workers,
            queue: self.queue,
            results: self.results,
            max_waiting: self.max_waiting,
            name: self.name,
            parent: self.parent,
            on_panic: self.on_panic,
            adaptive: self.adaptive,
            classified: self.classified,
            classify: self.classify,
            retry: policy,
        }
    }
}

/// Without a retry policy.
impl<C> PoolBuilder<(), C> {
    /// Starts the pool with a closure as the handler: each job runs as
    /// `handler(job).await`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad setting (see the table above), or
    /// [`Problem::NoRuntime`](weir_context::Problem::NoRuntime) outside a
    /// tokio runtime (the pool spawns its workers on the current runtime).
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_core::pool::Pool;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// let pool = Pool::builder()
    ///     .workers(4)
    ///     .queue(16)
    ///     .name("squares")
    ///     .build(|n: u64| async move { Ok::<_, anyhow::Error>(n * n) })?;
    /// assert_eq!(pool.submit(7).await?.await?, 49);
    /// let report = pool.join().await?;
    /// assert_eq!(report.completed, 1);
    ///
    /// let err = Pool::builder()
    ///     .workers(0)
    ///     .name("none")
    ///     .build(|n: u64| async move { Ok::<_, anyhow::Error>(n) })
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "pool `none`: workers must be at least 1 (got 0)");
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn build<J, O, E, F, Fut>(self, handler: F) -> Result<Pool<J, O, E>, ConfigError>
    where
        F: Fn(J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        J: Send + 'static,
        O: Send + 'static,
        E: fmt::Display + Send + 'static,
        C: ClassifyOutcome<O, E> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.build_with(move |_index| FnHandler::new(handler.clone()))
    }

    /// Starts the pool with a [`JobHandler`] per worker slot, made by
    /// `factory(worker_index)`; see [`JobHandler`] for setup, teardown and
    /// what happens after a panic.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    // The pool's type is written out (not a private alias) so that the docs
    // show what `build_with` returns.
    #[allow(clippy::type_complexity)]
    #[track_caller]
    pub fn build_with<H, M>(
        self,
        factory: M,
    ) -> Result<Pool<H::Job, H::Output, H::Error>, ConfigError>
    where
        H: JobHandler,
        M: Fn(usize) -> H + Send + Sync + 'static,
        C: ClassifyOutcome<H::Output, H::Error> + Send + Sync + 'static,
    {
        match self.adaptive.clone() {
            None => self.start(factory, |_, (), _| Plain),
            Some(limit) => self.start(factory, |classify, (), _| Limited { limit, classify }),
        }
    }
}

/// With a retry policy ([`retry`](PoolBuilder::retry)): the jobs must be
/// `Clone`, each attempt gets its own.
impl<E, C> PoolBuilder<RetryPolicy<E>, C> {
    /// Starts the pool with a closure as the handler, retrying each job
    /// as the [`retry`](Self::retry) policy says: each attempt runs
    /// `handler(job.clone()).await` (the last one `handler(job)`).
    ///
    /// # Errors
    ///
    /// As [`build`](PoolBuilder::build) without a retry policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use weir_core::{Pool, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// let policy = RetryPolicy::builder().base(Duration::from_millis(10)).max_attempts(3).build()?;
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let seen = Arc::clone(&calls);
    /// let pool = Pool::builder()
    ///     .workers(2)
    ///     .retry(policy)
    ///     .build(move |name: String| {
    ///         let seen = Arc::clone(&seen);
    ///         async move {
    ///             // Busy once, then an answer.
    ///             match seen.fetch_add(1, Ordering::SeqCst) {
    ///                 0 => anyhow::bail!("{name}: busy"),
    ///                 _ => Ok(name.len()),
    ///             }
    ///         }
    ///     })?;
    /// assert_eq!(pool.submit("weir".to_owned()).await?.await?, 4);
    /// let report = pool.join().await?;
    /// assert_eq!((report.completed, report.attempts, report.retries), (1, 2, 1));
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn build<J, O, F, Fut>(self, handler: F) -> Result<Pool<J, O, E>, ConfigError>
    where
        F: Fn(J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        J: Clone + Send + 'static,
        O: Send + 'static,
        E: fmt::Display + Send + 'static,
        C: ClassifyOutcome<O, E> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.build_with(move |_index| FnHandler::new(handler.clone()))
    }

    /// Starts the pool with a [`JobHandler`] per worker slot, retrying
    /// each job as the [`retry`](Self::retry) policy says: each attempt is
    /// one [`handle`](JobHandler::handle) call, with a clone of the job
    /// (the last one with the job itself).
    ///
    /// # Errors
    ///
    /// As [`build`](PoolBuilder::build) without a retry policy.
    #[allow(clippy::type_complexity)]
    #[track_caller]
    pub fn build_with<H, M>(
        self,
        factory: M,
    ) -> Result<Pool<H::Job, H::Output, H::Error>, ConfigError>
    where
        H: JobHandler<Error = E>,
        H::Job: Clone,
        E: fmt::Display + Send + 'static,
        M: Fn(usize) -> H + Send + Sync + 'static,
        C: ClassifyOutcome<H::Output, H::Error> + Send + Sync + 'static,
    {
        match self.adaptive.clone() {
            None => self.start(factory, |_, policy, deadline| Retrying {
                inner: Plain,
                policy,
                deadline,
            }),
            Some(limit) => self.start(factory, |classify, policy, deadline| Retrying {
                inner: Limited { limit, classify },
                policy,
                deadline,
            }),
        }
    }
}

impl<R, C> PoolBuilder<R, C> {
    /// Checks the settings, then spawns the workers, each running its jobs
    /// with the runner that `runner(classify, retry, deadline)` makes
    /// (`deadline`: the pool's).
    #[track_caller]
    fn start<H, M, X>(
        self,
        make: M,
        runner: impl FnOnce(C, R, Option<Instant>) -> X,
    ) -> Result<HandlerPool<H>, ConfigError>
    where
        H: JobHandler,
        M: Fn(usize) -> H + Send + Sync + 'static,
        X: JobRunner<H>,
    {
        let origin = weir_context::__private::Origin::here();
        let (settings, capacity) = self.check()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::no_runtime(self.construct()))?;
        let ctx = self
            .parent
            .as_ref()
            .map_or_else(Context::background, Context::child);
        let runner = Arc::new(runner(self.classify, self.retry, ctx.deadline()));
        let (tx, rx) = queue(capacity, settings.workers);
        let make = Arc::new(make);
        let spawn: SpawnFn<H::Job, H::Output, H::Error> =
            Box::new(move |shared, index, results| {
                Box::pin(run_worker::<H, M, X>(
                    shared,
                    make.clone(),
                    runner.clone(),
                    index,
                    results,
                ))
            });
        let shared = Shared::start(settings, rx, ctx, runtime, spawn, origin);
        Ok(Pool::from_parts(tx, shared))
    }

    /// The settings as the pool uses them, and the queue's capacity.
    fn check(&self) -> Result<(Settings, usize), ConfigError> {
        let construct = self.construct();
        let workers = match (self.workers, &self.adaptive) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    construct,
                    "workers",
                    "cannot be set together with an adaptive limit: the limit sets the worker count",
                ));
            }
            (Some(n), None) => check_workers(construct.clone(), "workers", n)?,
            // The limit's `max` was checked against MAX_WORKERS when it was built.
            (None, Some(limit)) => limit.limit(),
            (None, None) => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_WORKERS),
        };
        if self.classified && self.adaptive.is_none() {
            return Err(ConfigError::invalid(
                construct,
                "classify",
                "needs an adaptive limit (`adaptive(limit)`) to tell",
            ));
        }
        // 0 is the hand-off queue, not an error.
        let capacity = self
            .queue
            .unwrap_or(workers.saturating_mul(2))
            .min(MAX_CAPACITY);
        let results = match self.results {
            Some(n) => check_capacity(construct.clone(), "results", n)?,
            None => capacity.max(1),
        };
        if self.max_waiting == Some(0) {
            return Err(ConfigError::zero(construct, "max_waiting_submits"));
        }
        let settings = Settings {
            name: self.name.clone(),
            workers,
            results,
            max_waiting: self.max_waiting,
            on_panic: self.on_panic.clone(),
            adaptive: self.adaptive.clone(),
        };
        Ok((settings, capacity))
    }

    /// How a [`ConfigError`] names this pool: ``pool `name` ``.
    fn construct(&self) -> String {
        format!("pool `{}`", self.name)
    }
}
