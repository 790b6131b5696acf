//! [`PoolBuilder`]: the pool's settings, checked when one of the two ways to
//! start it runs.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use weir_context::__private::{check_capacity, check_workers};
use weir_context::{ConfigError, Context, MAX_CAPACITY, MAX_WORKERS, Panic};

use super::queue::queue;
use super::worker::{FnHandler, OnPanic, Settings, Shared, SpawnFn, run_worker};
use super::{JobHandler, Pool};

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
#[derive(Clone)]
pub struct PoolBuilder {
    workers: Option<usize>,
    queue: Option<usize>,
    results: Option<usize>,
    max_waiting: Option<usize>,
    name: Arc<str>,
    parent: Option<Context>,
    on_panic: Option<OnPanic>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("queue", &self.queue)
            .field("results", &self.results)
            .field("max_waiting_submits", &self.max_waiting)
            .field("name", &self.name)
            .field("context", &self.parent)
            .field("on_panic", &self.on_panic.is_some())
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
        }
    }
}

impl PoolBuilder {
    /// The default settings (the same as [`Pool::builder`]).
    pub fn new() -> Self {
        Self::default()
    }

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
    {
        let handler = Arc::new(handler);
        self.start(move |_index| FnHandler::new(handler.clone()))
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
    {
        self.start(factory)
    }

    /// Checks the settings, then spawns the workers.
    #[track_caller]
    fn start<H, M>(self, make: M) -> Result<HandlerPool<H>, ConfigError>
    where
        H: JobHandler,
        M: Fn(usize) -> H + Send + Sync + 'static,
    {
        let origin = weir_context::__private::Origin::here();
        let (settings, capacity) = self.check()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::no_runtime(self.construct()))?;
        let ctx = self
            .parent
            .as_ref()
            .map_or_else(Context::background, Context::child);
        let (tx, rx) = queue(capacity, settings.workers);
        let make = Arc::new(make);
        let spawn: SpawnFn<H::Job, H::Output, H::Error> =
            Box::new(move |shared, index, results| {
                Box::pin(run_worker::<H, M>(shared, make.clone(), index, results))
            });
        let shared = Shared::start(settings, rx, ctx, runtime, spawn, origin);
        Ok(Pool::from_parts(tx, shared))
    }

    /// The settings as the pool uses them, and the queue's capacity.
    fn check(&self) -> Result<(Settings, usize), ConfigError> {
        let construct = self.construct();
        let workers = match self.workers {
            Some(n) => check_workers(construct.clone(), "workers", n)?,
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_WORKERS),
        };
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
        };
        Ok((settings, capacity))
    }

    /// How a [`ConfigError`] names this pool: ``pool `name` ``.
    fn construct(&self) -> String {
        format!("pool `{}`", self.name)
    }
}
