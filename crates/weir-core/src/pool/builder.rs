//! [`PoolBuilder`]: the pool's settings and the two ways to start one.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use weir_context::Context;

use super::queue::queue;
use super::worker::{FnWorker, Handler, Shared, SpawnFn, TraitWorker, run_worker};
use super::{Pool, PoolError, PoolWorker};

/// The pool [`PoolBuilder::build_with`] makes for worker type `W`.
type WorkerPool<W> =
    Pool<<W as PoolWorker>::Job, <W as PoolWorker>::Output, <W as PoolWorker>::Error>;
/// The pool the internal `start` makes for handler type `H`.
type HandlerPool<H> = Pool<<H as Handler>::Job, <H as Handler>::Output, <H as Handler>::Error>;

/// Settings for a [`Pool`]; start with [`Pool::builder`].
///
/// | setting | default |
/// |---|---|
/// | [`workers`](Self::workers) | the number of CPUs ([`std::thread::available_parallelism`]) |
/// | [`queue`](Self::queue) | twice the number of workers |
/// | [`results`](Self::results) | the queue capacity (at least 1) |
/// | [`name`](Self::name) | `"pool"` |
/// | [`token`](Self::token) / [`context`](Self::context) | a fresh context |
#[derive(Clone)]
pub struct PoolBuilder {
    workers: Option<usize>,
    queue: Option<usize>,
    results: Option<usize>,
    name: Arc<str>,
    parent: Option<Context>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("queue", &self.queue)
            .field("results", &self.results)
            .field("name", &self.name)
            .field("parent", &self.parent.is_some())
            .finish()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self {
            workers: None,
            queue: None,
            results: None,
            name: Arc::from("pool"),
            parent: None,
        }
    }
}

impl PoolBuilder {
    /// The default settings (the same as [`Pool::builder`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of worker tasks. `0` makes [`build`](Self::build) fail
    /// with [`PoolError::ZeroWorkers`].
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// The queue's capacity: how many submitted jobs may wait for a worker.
    /// When it is full, [`Pool::submit`] waits and [`Pool::try_submit`] hands
    /// the job back.
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

    /// The capacity of the [`Results`](super::Results) stream of detached
    /// jobs (`0` is taken as 1). When it is full, a worker with a detached
    /// result waits for the reader.
    pub fn results(mut self, capacity: usize) -> Self {
        self.results = Some(capacity);
        self
    }

    /// The pool's name, in its tracing spans (`pool` field) and events.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// Stops the pool when `token` is cancelled: intake closes, running jobs
    /// are dropped at their next `.await` and queued ones are cancelled
    /// (their tickets resolve to [`JobError::Cancelled`](super::JobError::Cancelled)).
    /// The pool uses a child token, so [`Pool::cancel`] does not cancel
    /// `token`.
    pub fn token(mut self, token: CancellationToken) -> Self {
        self.parent = Some(Context::from(token));
        self
    }

    /// Runs the pool under `ctx`: when `ctx` is cancelled or its deadline
    /// passes, the pool stops as with [`token`](Self::token), and
    /// [`PoolReport::cause`](super::PoolReport::cause) says why. The pool
    /// uses a child context, so its own cancel does not cancel `ctx`.
    pub fn context(mut self, ctx: &Context) -> Self {
        self.parent = Some(ctx.clone());
        self
    }

    /// Starts the pool with a closure as the handler: each job runs as
    /// `handler(job).await`.
    ///
    /// # Errors
    ///
    /// [`PoolError::ZeroWorkers`] for `workers(0)`; [`PoolError::NoRuntime`]
    /// outside a tokio runtime (the pool spawns its workers on the current
    /// runtime).
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
    /// pool.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn build<J, O, E, F, Fut>(self, handler: F) -> Result<Pool<J, O, E>, PoolError>
    where
        F: Fn(J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        J: Send + 'static,
        O: Send + 'static,
        E: Send + fmt::Debug + 'static,
    {
        let handler = Arc::new(handler);
        self.start(move |_index| FnWorker::new(handler.clone()))
    }

    /// Starts the pool with a [`PoolWorker`] per worker slot, made by
    /// `factory(worker_index)`; see [`PoolWorker`] for setup, teardown and
    /// what happens after a panic.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_with<W, M>(self, factory: M) -> Result<WorkerPool<W>, PoolError>
    where
        W: PoolWorker,
        M: Fn(usize) -> W + Send + Sync + 'static,
    {
        self.start(move |index| TraitWorker(factory(index)))
    }

    fn start<H, M>(self, make: M) -> Result<HandlerPool<H>, PoolError>
    where
        H: Handler,
        M: Fn(usize) -> H + Send + Sync + 'static,
    {
        let workers = match self.workers {
            Some(0) => return Err(PoolError::ZeroWorkers),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| PoolError::NoRuntime)?;
        let capacity = self.queue.unwrap_or(workers.saturating_mul(2));
        let results = self.results.unwrap_or(capacity).max(1);
        let ctx = self
            .parent
            .as_ref()
            .map_or_else(Context::background, Context::child);
        let (tx, rx) = queue(capacity, workers);
        let make = Arc::new(make);
        let spawn: SpawnFn<H::Job, H::Output, H::Error> =
            Box::new(move |shared, index, results| {
                Box::pin(run_worker::<H, M>(shared, make.clone(), index, results))
            });
        let shared = Shared::start(self.name, workers, rx, ctx, runtime, results, spawn);
        Ok(Pool::from_parts(tx, shared))
    }
}
