//! The workers: the [`JobHandler`] trait for stateful handlers, the
//! closure adapter, the state all workers share and the worker loop.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Poll;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::counters::{Counters, Outcome, Registered, WorkerCounters};
use super::results::{PoolResults, ResultSink, ResultTx, WeakResultTx};
use super::runner::JobRunner;
use super::ticket::{Envelope, JobId, JobResult, Reply, boxed};
use super::{JobError, PoolReport};
use crate::adaptive::AdaptiveLimit;
use weir_chan::queue::{Msg, QueueCtl, QueueRx};
use weir_context::__private::{Construct, Label, Origin, catch, catch_call};
use weir_context::{Cause, Context, Panic};

/// A job handler with its own state, for
/// [`PoolBuilder::build_with`](super::PoolBuilder::build_with).
///
/// The pool makes one value per worker slot with the factory given to
/// `build_with` (it gets the worker's index), runs [`setup`](Self::setup)
/// once, then [`handle`](Self::handle) for each job the worker takes, and
/// [`teardown`](Self::teardown) when the worker leaves (the pool ended, a
/// shrink, cancellation). Use it for a per-worker connection, buffer or
/// client. The methods are plain `async fn`s in the impl (no macro); their
/// futures must be `Send`.
///
/// * **Error** from `handle`: the job's ticket gets [`JobError::Failed`]; the
///   worker carries on.
/// * **Panic** in `handle`: the job's ticket gets [`JobError::Panicked`]; the
///   handler value (whose state the panic may have left half-updated) is
///   dropped without `teardown` and the slot gets a fresh one from the
///   factory, which runs `setup` again.
/// * **Error or panic in `setup`** (or a panic in the factory): logged at
///   `WARN`; the slot stays empty (see [`PoolReport::workers`]). If no
///   worker is left, the pool cancels its context with a `String` cause
///   ``pool `<name>`: no worker could start``, so queued jobs are cancelled
///   and no submitter waits forever.
/// * **Cancellation**: the running `handle` future is dropped at its next
///   `.await`, then `teardown` runs. Keep `teardown` short:
///   [`Pool::shutdown`](super::Pool::shutdown) waits for it.
///
/// # Examples
///
/// ```
/// use weir_core::pool::{JobHandler, Pool};
///
/// struct Summer {
///     seen: u64,
/// }
///
/// impl JobHandler for Summer {
///     type Job = u64;
///     type Output = u64;
///     type Error = std::convert::Infallible;
///
///     async fn handle(&mut self, job: u64) -> Result<u64, Self::Error> {
///         self.seen += job; // per-worker state, no lock
///         Ok(self.seen)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let pool = Pool::builder().workers(1).queue(4).build_with(|_index| Summer { seen: 0 })?;
/// let a = pool.submit(1).await?;
/// let b = pool.submit(2).await?;
/// assert_eq!(a.await?, 1);
/// assert_eq!(b.await?, 3);
/// pool.join().await?;
/// # Ok(())
/// # }
/// ```
pub trait JobHandler: Send + 'static {
    /// What a worker takes.
    type Job: Send + 'static;
    /// What a job produces.
    type Output: Send + 'static;
    /// How a job (or `setup`) fails.
    type Error: fmt::Display + Send + 'static;

    /// Runs once before the worker takes its first job. An error keeps the
    /// slot empty (logged at `WARN`).
    fn setup(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        std::future::ready(Ok(()))
    }

    /// Runs one job.
    fn handle(
        &mut self,
        job: Self::Job,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;

    /// Runs once when the worker leaves the pool (not after a panic).
    fn teardown(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// A closure `Fn(J) -> Future<Output = Result<O, E>>` as a handler, without
/// boxing its futures.
pub(crate) struct FnHandler<F, J> {
    f: Arc<F>,
    _job: PhantomData<fn(J)>,
}

impl<F, J> FnHandler<F, J> {
    pub(crate) fn new(f: Arc<F>) -> Self {
        Self {
            f,
            _job: PhantomData,
        }
    }
}

impl<F, J, Fut, O, E> JobHandler for FnHandler<F, J>
where
    F: Fn(J) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    J: Send + 'static,
    O: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    type Job = J;
    type Output = O;
    type Error = E;

    fn handle(&mut self, job: J) -> impl Future<Output = Result<O, E>> + Send {
        (self.f)(job)
    }
}

/// The pool's panic handler ([`PoolBuilder::on_panic`](super::PoolBuilder::on_panic)).
pub(crate) type OnPanic = Arc<dyn Fn(&Panic) + Send + Sync>;

/// Shows a user's error with `{:#}`, which prints an `anyhow::Error` with
/// its causes (and never its backtrace, which only `Debug` prints).
struct Chain<'a, E>(&'a E);

impl<E: fmt::Display> fmt::Display for Chain<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

/// Makes one worker task's future (type-erased over the handler).
pub(crate) type SpawnFn<J, O, E> = Box<
    dyn Fn(Arc<Shared<J, O, E>>, usize, Option<ResultTx<O, E>>) -> BoxFuture<'static, ()>
        + Send
        + Sync,
>;

/// How many workers there should be and are: the one source of truth for
/// the pool's size, changed only under `Shared::sizing`.
#[derive(Debug)]
struct Sizing {
    target: usize,
    live: usize,
    next_index: usize,
}

impl Sizing {
    /// How many live workers should leave (`live - target`, or 0).
    fn surplus(&self) -> usize {
        self.live.saturating_sub(self.target)
    }
}

/// What every worker and every handle of one pool share.
pub(crate) struct Shared<J, O, E> {
    pub(crate) name: Arc<str>,
    /// Where the pool was built (the leak check's listing).
    origin: Origin,
    queue: QueueCtl<Envelope<J, O, E>>,
    /// The pool's context; its token is asked through it (a token clone is
    /// taken once per worker, for the worker's cancellation future).
    pub(crate) ctx: Context,
    pub(crate) tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
    pub(crate) counters: Counters,
    sizing: Mutex<Sizing>,
    /// `sizing.surplus()` as of the last change, stored under the `sizing`
    /// lock: every worker reads it before each job it takes, and a look
    /// at the lock there would put one lock per job on jobs that otherwise
    /// come from the worker's own batch without any. A stale read only
    /// moves a retirement to the next check; the retirement itself is
    /// decided under the lock.
    surplus: AtomicUsize,
    /// Set by `cancel_now` before it cancels the context and closes the
    /// queue, so a worker that finds the queue closed finds this set too;
    /// a context cancelled from outside sets it through the watcher. It is
    /// the per-job check of a worker serving its batch without the queue's
    /// lock: the token's own `is_cancelled` takes the token tree's mutex.
    cancelled: AtomicBool,
    /// Cancelled when the last worker has ended; ends the token watcher
    /// and the progress streams.
    pub(crate) ended: CancellationToken,
    /// When the pool was built, and when its last worker ended.
    started: Instant,
    ended_at: OnceLock<Instant>,
    /// Permits for submits that wait for room (`max_waiting_submits`).
    pub(crate) waiting_limit: Option<Semaphore>,
    on_panic: Option<OnPanic>,
    results_rx: Mutex<Option<PoolResults<O, E>>>,
    /// Set once, under `results_rx`'s lock, as its slot is emptied: read
    /// for every detached job's result, where the slot's lock would be one
    /// more lock per job.
    results_taken: AtomicBool,
    results_tx: WeakResultTx<O, E>,
    spawn: SpawnFn<J, O, E>,
    /// The adaptive limit the worker count follows, if any.
    limit: Option<AdaptiveLimit>,
    /// `weir_pool_job_duration_seconds` of this pool.
    #[cfg(feature = "metrics")]
    job_duration: metrics::Histogram,
}

impl<J, O, E> fmt::Debug for Shared<J, O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("sizing", &self.sizing)
            .finish_non_exhaustive()
    }
}

impl<J, O, E> Shared<J, O, E> {
    /// Why the pool was cancelled ([`Cause::Cancelled`] if it was not).
    pub(crate) fn cause(&self) -> Cause {
        self.ctx.cause().unwrap_or(Cause::Cancelled)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The checked settings a pool starts with.
pub(crate) struct Settings {
    pub(crate) name: Arc<str>,
    pub(crate) workers: usize,
    /// The results stream's capacity, at least 1.
    pub(crate) results: usize,
    pub(crate) max_waiting: Option<usize>,
    pub(crate) on_panic: Option<OnPanic>,
    /// The limit the worker count follows (then `workers` is ignored).
    pub(crate) adaptive: Option<AdaptiveLimit>,
}

impl<J, O, E> Shared<J, O, E>
where
    J: Send + 'static,
    O: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    /// Builds the shared state and spawns the workers, the token watcher
    /// and, with an adaptive limit, the task that follows it.
    pub(crate) fn start(
        settings: Settings,
        queue: QueueCtl<Envelope<J, O, E>>,
        ctx: Context,
        runtime: tokio::runtime::Handle,
        spawn: SpawnFn<J, O, E>,
        origin: Origin,
    ) -> Arc<Self> {
        // Subscribed before the first count is read, so no move is missed.
        let moves = settings.adaptive.as_ref().map(AdaptiveLimit::subscribe);
        let workers = moves.as_ref().map_or(settings.workers, |m| *m.borrow());
        let (shared, results_tx) = Self::new(settings, workers, queue, ctx, runtime, spawn, origin);
        let shared = Arc::new(shared);
        shared.grow(&mut lock(&shared.sizing), workers);
        // The workers hold the only strong senders from here on, so the
        // results stream ends when the last worker does.
        drop(results_tx);
        shared.spawn_watcher();
        if let Some(moves) = moves {
            shared.spawn_follower(moves);
        }
        shared
    }

    /// The state of a pool that is to have `workers` workers and has none
    /// yet, and the results stream's only strong sender, which the caller
    /// holds until the first workers have theirs.
    fn new(
        settings: Settings,
        workers: usize,
        queue: QueueCtl<Envelope<J, O, E>>,
        ctx: Context,
        runtime: tokio::runtime::Handle,
        spawn: SpawnFn<J, O, E>,
        origin: Origin,
    ) -> (Self, ResultTx<O, E>) {
        let (results_tx, results_rx) = super::results::channel(settings.results);
        // A limit above what a semaphore holds means no limit.
        let waiting_limit = settings
            .max_waiting
            .map(|n| Semaphore::new(n.min(Semaphore::MAX_PERMITS)));
        let shared = Self {
            #[cfg(feature = "metrics")]
            job_duration: crate::metrics::pool_job_duration(&settings.name),
            name: settings.name,
            origin,
            queue,
            ctx,
            tracker: TaskTracker::new(),
            runtime,
            counters: Counters::default(),
            sizing: Mutex::new(Sizing {
                target: workers,
                live: 0,
                next_index: 0,
            }),
            surplus: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            ended: CancellationToken::new(),
            started: Instant::now(),
            ended_at: OnceLock::new(),
            waiting_limit,
            on_panic: settings.on_panic,
            results_rx: Mutex::new(Some(results_rx)),
            results_taken: AtomicBool::new(false),
            results_tx: results_tx.downgrade(),
            spawn,
            limit: settings.adaptive,
        };
        (shared, results_tx)
    }

    /// Spawns the task that turns the context's cancellation (the
    /// builder's context, `Pool::cancel`, a shutdown's grace period) into
    /// [`cancel_now`](Self::cancel_now), whose queue close wakes the idle
    /// workers: they wait on the queue alone. It ends with the last worker.
    fn spawn_watcher(self: &Arc<Self>) {
        let watcher = Arc::clone(self);
        let watch = async move {
            tokio::select! {
                () = watcher.ctx.cancelled() => watcher.cancel_now(),
                () = watcher.ended.cancelled() => {}
            }
        };
        // With metrics on, the same task publishes the counters until the
        // last worker has ended: no task more per pool.
        #[cfg(feature = "metrics")]
        let watch = {
            let publish = crate::metrics::publish_pool(
                Arc::clone(&self.name),
                self.progress(crate::metrics::PUBLISH_EVERY),
            );
            async move {
                futures::join!(watch, publish);
            }
        };
        let span = tracing::info_span!("watcher", pool = %self.name);
        crate::spawn::tracked_on(
            &self.tracker,
            &self.runtime,
            &self.label("watcher", None),
            watch.instrument(span),
        );
    }

    /// Spawns the task that keeps the worker count at an adaptive limit's
    /// value ([`follow_limit`]).
    fn spawn_follower(self: &Arc<Self>, moves: watch::Receiver<usize>) {
        let span = tracing::info_span!("limit follower", pool = %self.name);
        let follow = follow_limit(Arc::clone(self), moves);
        self.tracker
            .spawn_on(follow.instrument(span), &self.runtime);
    }

    /// Cancels the pool: running jobs end at their next `.await`, queued
    /// ones are cancelled, idle workers wake up (the queue closes). The
    /// flag goes first: see [`Shared::cancelled`].
    pub(crate) fn cancel_now(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.ctx.cancel();
        self.queue.close();
    }

    /// What the pool's tasks are called (tokio-console, the leak check).
    fn label(&self, task: &'static str, index: Option<usize>) -> Label<'_> {
        Label {
            construct: Construct::Pool,
            name: &self.name,
            task,
            stage: None,
            index,
            origin: self.origin,
        }
    }

    /// Spawns workers until `live == target` (call with the sizing lock).
    fn grow(self: &Arc<Self>, sizing: &mut Sizing, target: usize) {
        sizing.target = target;
        self.queue.set_workers(target);
        while sizing.live < target {
            let index = sizing.next_index;
            sizing.next_index += 1;
            sizing.live += 1;
            let results = self.results_tx.upgrade();
            let fut = (self.spawn)(self.clone(), index, results);
            let span = tracing::info_span!("worker", pool = %self.name, worker = index);
            crate::spawn::tracked_on(
                &self.tracker,
                &self.runtime,
                &self.label("worker", Some(index)),
                fut.instrument(span),
            );
        }
        self.sized(sizing);
    }

    /// Publishes a change of `sizing` to the workers' lock-free check (call
    /// with the sizing lock).
    fn sized(&self, sizing: &Sizing) {
        self.surplus.store(sizing.surplus(), Ordering::Relaxed);
    }

    /// Sets the number of workers (see [`Pool::resize`](super::Pool::resize));
    /// returns how many workers should leave, for the caller to wake.
    pub(crate) fn resize(self: &Arc<Self>, target: usize) -> usize {
        let mut sizing = lock(&self.sizing);
        self.grow(&mut sizing, target);
        sizing.surplus()
    }

    /// Sets the number of workers to an adaptive limit's new value, unless
    /// the pool is closing or cancelled (then it stays as it is: `false`).
    /// The check and the resize are one step under the sizing lock, which
    /// the last worker's end also takes, so no worker is spawned after the
    /// pool ended.
    fn follow(self: &Arc<Self>, target: usize) -> bool {
        let leaving = {
            let mut sizing = lock(&self.sizing);
            if self.queue.is_closed() || self.ctx.is_cancelled() {
                return false;
            }
            self.grow(&mut sizing, target);
            sizing.surplus()
        };
        // Wake idle workers that should leave; busy ones look after their job.
        if leaving > 0 {
            self.queue.kick(leaving);
        }
        true
    }

    /// A progress stream over the pool's counters; see [`Pool::progress`](super::Pool::progress).
    pub(crate) fn progress(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> Result<super::PoolProgress, weir_context::ConfigError> {
        let ended = self.ended.clone().cancelled_owned();
        let construct = format!("pool `{}`", self.name);
        let ticks = crate::progress::Ticks::new(construct, every, ended)?;
        let shared = Arc::clone(self);
        Ok(super::PoolProgress::new(
            Box::new(move || shared.report()),
            ticks,
        ))
    }

    /// Takes the results stream's receiver, once.
    pub(crate) fn take_results(&self) -> Option<PoolResults<O, E>> {
        let mut slot = lock(&self.results_rx);
        let rx = slot.take()?;
        self.results_taken.store(true, Ordering::Release);
        Some(rx)
    }

    /// A snapshot of the counters, timed up to now or to the pool's end.
    pub(crate) fn report(&self) -> PoolReport {
        let end = self.ended_at.get().copied().unwrap_or_else(Instant::now);
        let live = lock(&self.sizing).live;
        self.counters.snapshot(
            live,
            self.limit.as_ref().map(AdaptiveLimit::limit),
            end.saturating_duration_since(self.started),
        )
    }

    /// Whether every worker has ended.
    pub(crate) fn has_ended(&self) -> bool {
        self.ended_at.get().is_some()
    }

    /// Whether this worker should leave because the pool shrank, decided
    /// under the sizing lock; if so it is no longer counted as live.
    fn retire(&self) -> bool {
        let mut sizing = lock(&self.sizing);
        if sizing.surplus() == 0 {
            return false;
        }
        sizing.live -= 1;
        self.sized(&sizing);
        true
    }

    /// A worker ended for another reason than a shrink; returns how many are left.
    fn exited(&self) -> usize {
        let mut sizing = lock(&self.sizing);
        sizing.live = sizing.live.saturating_sub(1);
        self.sized(&sizing);
        sizing.live
    }
}

/// Makes and sets up a handler; `None` (logged) when that fails or panics.
async fn start_worker<H, M>(make: &M, index: usize) -> Option<H>
where
    H: JobHandler,
    M: Fn(usize) -> H,
{
    let mut handler = match catch_call(|| make(index)) {
        Ok(handler) => handler,
        Err(panic) => {
            tracing::warn!(%panic, "worker factory panicked; slot left empty");
            return None;
        }
    };
    match catch(handler.setup()).await {
        Ok(Ok(())) => Some(handler),
        Ok(Err(error)) => {
            tracing::warn!(error = %Chain(&error), "worker setup failed; slot left empty");
            None
        }
        Err(panic) => {
            tracing::warn!(%panic, "worker setup panicked; slot left empty");
            None
        }
    }
}

/// One worker task: take a job, run it, deliver its result, until the queue
/// closes and is empty, the pool shrinks, or the pool is cancelled.
///
/// Detached results collect in the worker's [`ResultSink`] and are sent
/// before every wait (see `results.rs`), so the results stream's channel is
/// paid per chunk under load and an idle pool still delivers at once.
pub(crate) async fn run_worker<H, M, X>(
    shared: Arc<Shared<H::Job, H::Output, H::Error>>,
    make: Arc<M>,
    runner: Arc<X>,
    index: usize,
    results: Option<ResultTx<H::Output, H::Error>>,
) where
    H: JobHandler,
    M: Fn(usize) -> H + Send + Sync + 'static,
    X: JobRunner<H>,
{
    let cancelled = shared.ctx.token().cancelled_owned();
    tokio::pin!(cancelled);
    let mut worker = Worker {
        shared: &shared,
        queue: shared.queue.receiver(),
        counters: shared.counters.register(),
        sink: results.map(ResultTx::sink),
        cancelled,
    };
    let mut handler = start_worker(&*make, index).await;
    let exit = worker.serve(&mut handler, &*make, &*runner, index).await;
    worker.leave(handler, exit).await;
}

/// Why a worker left its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// A shrink retired it; it is already no longer counted as live.
    Retired,
    /// The queue closed and drained, the pool was cancelled, or the slot
    /// has no handler (its setup failed).
    Stopped,
}

/// What a worker does after a job.
enum After {
    /// Takes the next one.
    Next,
    /// Leaves: the pool was cancelled.
    Stop,
    /// Replaces its handler, which panicked, then takes the next one.
    Restart(Panic),
}

/// A job's end: `None` when the pool was cancelled while it ran, `Err`
/// when it panicked.
type Ended<O, E> = Option<std::thread::Result<Result<O, E>>>;

/// One worker task's own state, beside its handler.
struct Worker<'a, H: JobHandler> {
    shared: &'a Shared<H::Job, H::Output, H::Error>,
    queue: QueueRx<Envelope<H::Job, H::Output, H::Error>>,
    counters: Registered,
    /// Detached results this worker finished and has not sent yet.
    sink: Option<ResultSink<H::Output, H::Error>>,
    /// The pool's cancellation, made once for the worker's life.
    cancelled: Pin<&'a mut WaitForCancellationFutureOwned>,
}

impl<H: JobHandler> Worker<'_, H> {
    /// Takes and runs jobs while the slot has a handler, and says why it
    /// stopped. The shrink check comes before each take, so a retired
    /// worker holds no job.
    ///
    /// The path of a job that is ready at its first poll stays in this one
    /// body: each `async fn` awaited per job adds a state machine to poll
    /// through, which a job that does nothing pays for. What only happens
    /// when something must wait or go wrong is in the helpers.
    async fn serve<M, X>(
        &mut self,
        handler: &mut Option<H>,
        make: &M,
        runner: &X,
        index: usize,
    ) -> Exit
    where
        M: Fn(usize) -> H,
        X: JobRunner<H>,
    {
        while let Some(h) = handler.as_mut() {
            if self.shared.try_retire_with(&mut self.queue) {
                return Exit::Retired;
            }
            // The idle wait is the queue alone (a shrink sends `Wake`,
            // cancellation and the pool's end close it); finished results
            // are sent first only if the pop has to wait, so they wait in
            // the sink only while the next job is already there.
            let msg = if self.sink.as_ref().is_some_and(ResultSink::is_pending) {
                let pop = self.queue.pop();
                tokio::pin!(pop);
                match futures::poll!(pop.as_mut()) {
                    Poll::Ready(msg) => msg,
                    Poll::Pending => {
                        // The batch is empty here: the pop had to wait.
                        before_wait(&mut self.sink, self.cancelled.as_mut(), || {}).await;
                        pop.await
                    }
                }
            } else {
                // Nothing to send first: one poll, not a look that registers
                // this worker as a sleeper and a second one that takes it
                // out of the sleepers' list again.
                self.queue.pop().await
            };
            let Envelope { id, job, reply } = match msg {
                Some(Msg::Item(env)) => env,
                Some(Msg::Wake) => continue,
                None => break,
            };
            self.counters.dequeued();
            // Checked before every job: the batch is served without the
            // queue's lock and may outlast the close.
            if self.shared.cancelled.load(Ordering::Acquire) {
                self.cancel_job(id, reply);
                break;
            }
            #[cfg(feature = "metrics")]
            let started = Instant::now();
            let ended = {
                let counters = &*self.counters;
                // `catch_unwind` inline, not `weir_context`'s `catch`, which
                // would put one more future around every job.
                let run =
                    AssertUnwindSafe(async { runner.run(h, job, counters).await }).catch_unwind();
                tokio::pin!(run);
                match futures::poll!(run.as_mut()) {
                    Poll::Ready(r) => Some(r),
                    Poll::Pending => {
                        wait_for_job(
                            &mut self.queue,
                            &mut self.sink,
                            self.cancelled.as_mut(),
                            run,
                        )
                        .await
                    }
                }
            };
            #[cfg(feature = "metrics")]
            if ended.is_some() {
                self.shared.job_duration.record(started.elapsed());
            }
            let (after, chunk_full) = self.finish_job(id, reply, ended);
            if chunk_full {
                // Sending a full chunk may wait for the reader: if it must,
                // the rest of the batch goes back to the queue first.
                let queue = &mut self.queue;
                before_wait(&mut self.sink, self.cancelled.as_mut(), || {
                    queue.step_away()
                })
                .await;
            }
            match after {
                After::Next => {}
                After::Stop => break,
                After::Restart(panic) => *handler = self.restart(&panic, make, index).await,
            }
        }
        Exit::Stopped
    }

    /// A job taken after the pool was cancelled: counted and answered as
    /// cancelled, not run.
    #[cold]
    fn cancel_job(&mut self, id: JobId, reply: Reply<H::Output, H::Error>) {
        self.counters.finished(Outcome::Cancelled);
        cancel_reply(self.shared, &mut self.sink, id, reply, self.shared.cause());
    }

    /// Counts a job's end, logs a failure once and delivers the result.
    /// Says what the worker does next, and whether the results chunk is
    /// full and must be sent before it goes on.
    fn finish_job(
        &mut self,
        id: JobId,
        reply: Reply<H::Output, H::Error>,
        ended: Ended<H::Output, H::Error>,
    ) -> (After, bool) {
        let (outcome, result, after) = conclude(self.shared, id, ended);
        self.counters.finished(outcome);
        if let Err(error) = &result
            && !error.is_cancelled()
        {
            log_failure(id, error, self.shared.is_heard(&reply, &self.sink));
        }
        let chunk_full = deliver(self.shared, &mut self.sink, id, reply, result);
        (after, chunk_full)
    }

    /// A fresh handler for a slot whose handler panicked (its state may be
    /// half-updated: it is dropped without teardown). `on_panic` runs
    /// first; the batch goes back and finished results are sent before
    /// the setup, which may take a while.
    async fn restart<M: Fn(usize) -> H>(
        &mut self,
        panic: &Panic,
        make: &M,
        index: usize,
    ) -> Option<H> {
        self.shared.panicked(panic);
        self.queue.step_away();
        before_wait(&mut self.sink, self.cancelled.as_mut(), || {}).await;
        start_worker(make, index).await
    }

    /// Leaves the pool: hands back the batch and the results, tears the
    /// handler down, and, as the last worker, ends the pool. This worker's
    /// results sender goes before its counters do, so the results stream
    /// ends no later than the pool.
    async fn leave(mut self, mut handler: Option<H>, exit: Exit) {
        self.hand_back().await;
        if let Some(h) = handler.as_mut()
            && catch(h.teardown()).await.is_err()
        {
            tracing::warn!("worker teardown panicked");
        }
        let last = exit == Exit::Stopped && self.shared.exited() == 0;
        if last {
            self.close_pool(handler.is_none());
        }
        let Worker {
            shared,
            counters,
            sink,
            ..
        } = self;
        drop(sink);
        shared.counters.unregister(&counters);
        if last {
            let _ = shared.ended_at.set(Instant::now());
            shared.ended.cancel();
        }
        tracing::trace!(retired = exit == Exit::Retired, "worker ended");
    }

    /// What a leaving worker gives back: if the pool was cancelled, what is
    /// queued (this worker's batch first) is cancelled; the rest of the
    /// batch goes to the other workers; finished results are sent (only
    /// if there is room, once cancelled).
    async fn hand_back(&mut self) {
        let cancelled = self.shared.ctx.is_cancelled();
        if cancelled {
            drain_cancelled(self.shared, &self.counters, &mut self.queue, &mut self.sink);
        }
        self.queue.step_away();
        if let Some(sink) = self.sink.as_mut() {
            if cancelled {
                sink.try_flush();
            } else {
                sink.flush(self.cancelled.as_mut(), || {}).await;
            }
        }
    }

    /// The last worker's close: the queue closes and what is left in it is
    /// cancelled. If no worker could start (`no_handler` and nothing
    /// cancelled the pool), the pool is cancelled first with a cause that
    /// says so, so that nobody waits on a queue that no one reads.
    fn close_pool(&mut self, no_handler: bool) {
        if no_handler && !self.shared.ctx.is_cancelled() {
            let cause = format!("pool `{}`: no worker could start", self.shared.name);
            tracing::warn!("{cause}; cancelling the pool");
            self.shared.ctx.cancel_with(cause);
            self.shared.cancel_now();
        }
        self.queue.close();
        drain_cancelled(self.shared, &self.counters, &mut self.queue, &mut self.sink);
        if let Some(sink) = self.sink.as_mut() {
            sink.try_flush();
        }
    }
}

/// The rest of a job that was not done at its first poll: nothing of the
/// worker's batch waits behind it and the finished results go first; then
/// the job runs until it ends or the pool is cancelled (`None`).
#[cold]
async fn wait_for_job<T, O, E, F: Future>(
    queue: &mut QueueRx<T>,
    sink: &mut Option<ResultSink<O, E>>,
    mut cancelled: Pin<&mut WaitForCancellationFutureOwned>,
    run: Pin<&mut F>,
) -> Option<F::Output> {
    queue.step_away();
    before_wait(sink, cancelled.as_mut(), || {}).await;
    tokio::select! {
        biased;
        r = run => Some(r),
        () = cancelled => None,
    }
}

/// What a job's end means: the count it takes, the result its ticket or the
/// results stream gets, and what the worker does next.
fn conclude<J, O, E>(
    shared: &Shared<J, O, E>,
    id: JobId,
    ended: Ended<O, E>,
) -> (Outcome, JobResult<O, E>, After) {
    match ended {
        Some(Ok(Ok(output))) => (Outcome::Completed, Ok(output), After::Next),
        Some(Ok(Err(error))) => (Outcome::Failed, Err(JobError::Failed(error)), After::Next),
        Some(Err(payload)) => {
            let panic = Panic::from_payload(payload);
            let result = Err(JobError::Panicked(panic.clone()));
            (Outcome::Panicked, result, After::Restart(panic))
        }
        None => {
            tracing::debug!(job = %id, "job cancelled while running");
            let result = Err(JobError::Cancelled(shared.cause()));
            (Outcome::Cancelled, result, After::Stop)
        }
    }
}

/// Logs a job's failure or panic once: `DEBUG` when its ticket or a held
/// results stream receives it, `WARN` when nobody can.
#[cold]
fn log_failure<E: fmt::Display>(id: JobId, error: &JobError<E>, heard: bool) {
    match (error, heard) {
        (JobError::Failed(e), true) => tracing::debug!(job = %id, error = %Chain(e), "job failed"),
        (JobError::Failed(e), false) => tracing::warn!(
            job = %id,
            error = %Chain(e),
            "detached job failed and nobody holds the results stream"
        ),
        (JobError::Panicked(panic), true) => tracing::debug!(job = %id, %panic, "job panicked"),
        (JobError::Panicked(panic), false) => tracing::warn!(
            job = %id,
            %panic,
            "detached job panicked and nobody holds the results stream"
        ),
        (JobError::Cancelled(_), _) => {}
    }
}

/// Sends the worker's finished detached results, if any (see
/// [`ResultSink::flush`]): what a worker does before it waits. `on_wait`
/// runs first if the send has to wait for room.
async fn before_wait<O, E>(
    sink: &mut Option<ResultSink<O, E>>,
    cancelled: Pin<&mut WaitForCancellationFutureOwned>,
    on_wait: impl FnOnce(),
) {
    if let Some(sink) = sink.as_mut()
        && sink.is_pending()
    {
        sink.flush(cancelled, on_wait).await;
    }
}

impl<J, O, E> Shared<J, O, E>
where
    J: Send + 'static,
    O: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    /// The shrink check before each job: lock-free while no worker should
    /// leave, then the hand-off queue's idle offer, then the decision
    /// under the sizing lock.
    fn try_retire_with(&self, queue: &mut QueueRx<Envelope<J, O, E>>) -> bool {
        if self.surplus.load(Ordering::Relaxed) == 0 {
            return false;
        }
        // A claimed idle offer means a job is on its way to this worker.
        queue.withdraw() && self.retire()
    }

    /// Whether a job's result reaches someone: its ticket, or a results
    /// stream that was taken and is still held.
    fn is_heard(&self, reply: &Reply<O, E>, sink: &Option<ResultSink<O, E>>) -> bool {
        match reply {
            Reply::Ticket(_) => true,
            Reply::Detached => {
                self.results_taken.load(Ordering::Acquire)
                    && sink.as_ref().is_some_and(ResultSink::is_open)
            }
        }
    }

    /// Calls the builder's `on_panic` handler, if any; a panic in it is
    /// caught and logged.
    fn panicked(&self, panic: &Panic) {
        if let Some(on_panic) = &self.on_panic
            && let Err(again) = catch_call(|| on_panic(panic))
        {
            tracing::warn!(panic = %again, "the pool's on_panic handler panicked");
        }
    }
}

/// Sends a job's result where it belongs: to its ticket at once, or into
/// the worker's results chunk. `true` when the chunk is full and must be
/// flushed.
fn deliver<J, O, E>(
    shared: &Shared<J, O, E>,
    sink: &mut Option<ResultSink<O, E>>,
    id: JobId,
    reply: Reply<O, E>,
    result: JobResult<O, E>,
) -> bool {
    match reply {
        // A dropped ticket just discards the result.
        Reply::Ticket(tx) => {
            let _ = tx.send(boxed(result));
            false
        }
        Reply::Detached => match sink {
            Some(sink) if shared.results_taken.load(Ordering::Acquire) => {
                sink.push(id, boxed(result))
            }
            // Nobody took the stream (or it is gone): discarded, counted.
            _ => false,
        },
    }
}

/// Tells a cancelled job's ticket or the results stream, without waiting
/// (a detached result joins the chunk, which a cancelled worker sends only
/// if there is room).
fn cancel_reply<J, O, E>(
    shared: &Shared<J, O, E>,
    sink: &mut Option<ResultSink<O, E>>,
    id: JobId,
    reply: Reply<O, E>,
    cause: Cause,
) {
    let cancelled = || Err(Box::new(JobError::Cancelled(cause)));
    match reply {
        Reply::Ticket(tx) => {
            let _ = tx.send(cancelled());
        }
        Reply::Detached => {
            if let Some(sink) = sink.as_mut()
                && shared.results_taken.load(Ordering::Acquire)
                && sink.push(id, cancelled())
            {
                sink.try_flush();
            }
        }
    }
}

/// Cancels every job still queued (their tickets resolve to `Cancelled`
/// with the pool's cause).
fn drain_cancelled<J, O, E>(
    shared: &Shared<J, O, E>,
    counters: &WorkerCounters,
    queue: &mut QueueRx<Envelope<J, O, E>>,
    sink: &mut Option<ResultSink<O, E>>,
) {
    queue.close();
    let mut n = 0_u64;
    let mut cause = None;
    while let Some(Envelope { id, reply, .. }) = queue.try_pop() {
        counters.dequeued();
        counters.finished(Outcome::Cancelled);
        n += 1;
        let cause = cause.get_or_insert_with(|| shared.cause()).clone();
        cancel_reply(shared, sink, id, reply, cause);
    }
    if n > 0 {
        tracing::debug!(cancelled = n, "pool stopped; queued jobs cancelled");
    }
}

/// Follows an adaptive limit with the worker count (the pool's
/// [`adaptive`](super::PoolBuilder::adaptive) option), until the pool
/// closes, is cancelled or its last worker ended.
async fn follow_limit<J, O, E>(shared: Arc<Shared<J, O, E>>, mut moves: watch::Receiver<usize>)
where
    J: Send + 'static,
    O: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    loop {
        tokio::select! {
            biased;
            () = shared.ctx.cancelled() => break,
            () = shared.ended.cancelled() => break,
            changed = moves.changed() => {
                // The pool holds the limit, so its sender outlives this.
                if changed.is_err() {
                    break;
                }
                let target = *moves.borrow_and_update();
                if !shared.follow(target) {
                    break;
                }
            }
        }
    }
}
