//! The workers: the [`PoolWorker`] trait for stateful workers, the closure
//! adapter, the state all workers share and the worker loop.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::queue::{Msg, QueueCtl, QueueRx};
use super::results::{ResultSink, ResultTx, Results, WeakResultTx};
use super::stats::{Counters, Outcome, WorkerCounters};
use super::ticket::{Envelope, JobId, JobResult, Reply, boxed};
use super::{JobError, PoolStats};
use weir_context::__private::panic_message;
use weir_context::Context;

/// A pool worker with its own state, for [`PoolBuilder::build_with`](super::PoolBuilder::build_with).
///
/// The pool makes one value per worker slot with the factory given to
/// `build_with` (it gets the worker's index), runs [`setup`](Self::setup)
/// once, then [`handle`](Self::handle) for each job the worker takes, and
/// [`teardown`](Self::teardown) when the worker leaves (shutdown, shrink,
/// cancellation). Use it for a per-worker connection, buffer or client.
///
/// * **Error** from `handle`: the job's ticket gets [`JobError::Failed`]; the
///   worker carries on.
/// * **Panic** in `handle`: the job's ticket gets [`JobError::Panicked`]; the
///   worker value (whose state the panic may have left half-updated) is
///   dropped without `teardown` and the slot gets a fresh one from the
///   factory, which runs `setup` again.
/// * **Error or panic in `setup`**: logged at `error`; the slot stays empty
///   (see [`PoolStats::workers`]). If no worker is left, the pool closes and
///   cancels what is queued, so no submitter waits forever.
/// * **Cancellation**: the running `handle` future is dropped at its next
///   `.await`, then `teardown` runs. Keep `teardown` short: `shutdown_timeout`
///   waits for it.
///
/// # Examples
///
/// ```
/// use weir_core::pool::{Pool, PoolWorker};
///
/// struct Summer {
///     seen: u64,
/// }
///
/// #[async_trait::async_trait]
/// impl PoolWorker for Summer {
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
/// pool.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[async_trait::async_trait]
pub trait PoolWorker: Send + 'static {
    /// What a worker takes.
    type Job: Send + 'static;
    /// What a job produces.
    type Output: Send + 'static;
    /// How a job fails.
    type Error: Send + fmt::Debug + 'static;

    /// Runs once before the worker takes its first job. An error keeps the
    /// slot empty (logged at `error`).
    async fn setup(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Runs one job.
    async fn handle(&mut self, job: Self::Job) -> Result<Self::Output, Self::Error>;

    /// Runs once when the worker leaves the pool (not after a panic).
    async fn teardown(&mut self) {}
}

/// What the worker loop runs: a [`PoolWorker`] or a closure, without boxing
/// the closure's futures.
pub(crate) trait Handler: Send + 'static {
    type Job: Send + 'static;
    type Output: Send + 'static;
    type Error: Send + fmt::Debug + 'static;

    fn setup(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send + '_;
    fn handle(
        &mut self,
        job: Self::Job,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send + '_;
    fn teardown(&mut self) -> impl Future<Output = ()> + Send + '_;
}

/// A closure `Fn(J) -> Future<Output = Result<O, E>>` as a worker.
pub(crate) struct FnWorker<F, J> {
    f: Arc<F>,
    _job: PhantomData<fn(J)>,
}

impl<F, J> FnWorker<F, J> {
    pub(crate) fn new(f: Arc<F>) -> Self {
        Self {
            f,
            _job: PhantomData,
        }
    }
}

impl<F, J, Fut, O, E> Handler for FnWorker<F, J>
where
    F: Fn(J) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    J: Send + 'static,
    O: Send + 'static,
    E: Send + fmt::Debug + 'static,
{
    type Job = J;
    type Output = O;
    type Error = E;

    fn setup(&mut self) -> impl Future<Output = Result<(), E>> + Send + '_ {
        std::future::ready(Ok(()))
    }

    fn handle(&mut self, job: J) -> impl Future<Output = Result<O, E>> + Send + '_ {
        (self.f)(job)
    }

    fn teardown(&mut self) -> impl Future<Output = ()> + Send + '_ {
        std::future::ready(())
    }
}

/// A [`PoolWorker`] as a worker.
pub(crate) struct TraitWorker<W>(pub(crate) W);

impl<W: PoolWorker> Handler for TraitWorker<W> {
    type Job = W::Job;
    type Output = W::Output;
    type Error = W::Error;

    fn setup(&mut self) -> impl Future<Output = Result<(), W::Error>> + Send + '_ {
        self.0.setup()
    }

    fn handle(
        &mut self,
        job: W::Job,
    ) -> impl Future<Output = Result<W::Output, W::Error>> + Send + '_ {
        self.0.handle(job)
    }

    fn teardown(&mut self) -> impl Future<Output = ()> + Send + '_ {
        self.0.teardown()
    }
}

/// Makes one worker task's future (type-erased over the handler).
pub(crate) type SpawnFn<J, O, E> = Box<
    dyn Fn(Arc<Shared<J, O, E>>, usize, Option<ResultTx<O, E>>) -> BoxFuture<'static, ()>
        + Send
        + Sync,
>;

/// How many workers there should be and are.
#[derive(Debug)]
struct Sizing {
    target: usize,
    live: usize,
    next_index: usize,
}

/// What every worker and every handle of one pool share.
pub(crate) struct Shared<J, O, E> {
    pub(crate) name: Arc<str>,
    queue: QueueCtl<Envelope<J, O, E>>,
    /// The pool's context; `token` is its token.
    pub(crate) ctx: Context,
    pub(crate) token: CancellationToken,
    pub(crate) tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
    pub(crate) counters: Counters,
    sizing: Mutex<Sizing>,
    /// Mirrors of `sizing` for the workers' lock-free check.
    target: AtomicUsize,
    live: AtomicUsize,
    /// Set (before the queue closes) once the pool is cancelled: the
    /// workers' per-job check, cheaper than asking the token.
    cancelled: AtomicBool,
    /// Cancelled when the last worker has ended; ends the token watcher.
    ended: CancellationToken,
    results_rx: Mutex<Option<Results<O, E>>>,
    results_taken: AtomicBool,
    results_tx: WeakResultTx<O, E>,
    spawn: SpawnFn<J, O, E>,
}

impl<J, O, E> fmt::Debug for Shared<J, O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("target", &self.target)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<J, O, E> Shared<J, O, E>
where
    J: Send + 'static,
    O: Send + 'static,
    E: Send + 'static,
{
    /// Builds the shared state and spawns `workers` workers.
    pub(crate) fn start(
        name: Arc<str>,
        workers: usize,
        queue: QueueCtl<Envelope<J, O, E>>,
        ctx: Context,
        runtime: tokio::runtime::Handle,
        results_cap: usize,
        spawn: SpawnFn<J, O, E>,
    ) -> Arc<Self> {
        let (results_tx, results_rx) = super::results::channel(results_cap.max(1));
        let shared = Arc::new(Self {
            name,
            queue,
            token: ctx.token(),
            ctx,
            tracker: TaskTracker::new(),
            runtime,
            counters: Counters::default(),
            sizing: Mutex::new(Sizing {
                target: workers,
                live: 0,
                next_index: 0,
            }),
            target: AtomicUsize::new(workers),
            live: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            ended: CancellationToken::new(),
            results_rx: Mutex::new(Some(results_rx)),
            results_taken: AtomicBool::new(false),
            results_tx: results_tx.downgrade(),
            spawn,
        });
        {
            let mut sizing = lock(&shared.sizing);
            shared.grow(&mut sizing, workers);
        }
        // The workers hold the only strong senders from here on, so the
        // results stream ends when the last worker does.
        drop(results_tx);
        // Idle workers wait on the queue alone; when the token fires (from
        // the builder's parent, `Pool::cancel` or a shutdown deadline) this
        // watcher closes the queue, which wakes them.
        let watcher = shared.clone();
        let span = tracing::info_span!("watcher", pool = %shared.name);
        shared.tracker.spawn_on(
            async move {
                tokio::select! {
                    () = watcher.token.cancelled() => watcher.cancel_now(),
                    () = watcher.ended.cancelled() => {}
                }
            }
            .instrument(span),
            &shared.runtime,
        );
        shared
    }

    /// Cancels the pool: running jobs end at their next `.await`, queued
    /// ones are cancelled, idle workers wake up (the queue closes).
    pub(crate) fn cancel_now(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.ctx.cancel();
        self.queue.close();
    }

    /// Spawns workers until `live == target` (call with the sizing lock).
    fn grow(self: &Arc<Self>, sizing: &mut Sizing, target: usize) {
        sizing.target = target;
        self.target.store(target, Ordering::Relaxed);
        self.queue.set_workers(target);
        while sizing.live < target {
            let index = sizing.next_index;
            sizing.next_index += 1;
            sizing.live += 1;
            let results = self.results_tx.upgrade();
            let fut = (self.spawn)(self.clone(), index, results);
            let span = tracing::info_span!("worker", pool = %self.name, worker = index);
            self.tracker.spawn_on(fut.instrument(span), &self.runtime);
        }
        self.live.store(sizing.live, Ordering::Relaxed);
    }

    /// Sets the number of workers (see [`Pool::resize`](super::Pool::resize));
    /// returns how many workers should leave, for the caller to wake.
    pub(crate) fn resize(self: &Arc<Self>, target: usize) -> usize {
        let mut sizing = lock(&self.sizing);
        self.grow(&mut sizing, target);
        sizing.live.saturating_sub(target)
    }

    /// Takes the results stream's receiver, once.
    pub(crate) fn take_results(&self) -> Option<Results<O, E>> {
        let rx = lock(&self.results_rx).take()?;
        self.results_taken.store(true, Ordering::Release);
        Some(rx)
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> PoolStats {
        self.counters.snapshot(self.live.load(Ordering::Relaxed))
    }

    /// Whether this worker should leave because the pool shrank; if so it is
    /// no longer counted as live.
    fn try_retire(&self) -> bool {
        if self.live.load(Ordering::Relaxed) <= self.target.load(Ordering::Relaxed) {
            return false;
        }
        let mut sizing = lock(&self.sizing);
        if sizing.live > sizing.target {
            sizing.live -= 1;
            self.live.store(sizing.live, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// A worker ended for another reason than a shrink; returns how many are left.
    fn exited(&self) -> usize {
        let mut sizing = lock(&self.sizing);
        sizing.live = sizing.live.saturating_sub(1);
        self.live.store(sizing.live, Ordering::Relaxed);
        sizing.live
    }
}

/// Makes and sets up a worker; `None` (logged) when that fails or panics.
async fn start_worker<H, M>(make: &M, index: usize) -> Option<H>
where
    H: Handler,
    M: Fn(usize) -> H,
{
    let mut worker = match std::panic::catch_unwind(AssertUnwindSafe(|| make(index))) {
        Ok(worker) => worker,
        Err(payload) => {
            tracing::error!(panic = %panic_message(&*payload), "worker factory panicked; slot left empty");
            return None;
        }
    };
    match AssertUnwindSafe(worker.setup()).catch_unwind().await {
        Ok(Ok(())) => Some(worker),
        Ok(Err(error)) => {
            tracing::error!(?error, "worker setup failed; slot left empty");
            None
        }
        Err(payload) => {
            tracing::error!(panic = %panic_message(&*payload), "worker setup panicked; slot left empty");
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
pub(crate) async fn run_worker<H, M>(
    shared: Arc<Shared<H::Job, H::Output, H::Error>>,
    make: Arc<M>,
    index: usize,
    results: Option<ResultTx<H::Output, H::Error>>,
) where
    H: Handler,
    M: Fn(usize) -> H + Send + Sync + 'static,
{
    let mut queue = shared.queue.receiver();
    let counters = shared.counters.register();
    let cancelled = shared.token.clone().cancelled_owned();
    tokio::pin!(cancelled);
    let mut sink = results.map(ResultTx::sink);

    let mut worker = start_worker(&*make, index).await;
    let mut retired = false;
    while let Some(w) = worker.as_mut() {
        if shared.try_retire_with(&mut queue) {
            retired = true;
            break;
        }
        // The idle wait is the queue alone: a shrink sends `Wake`,
        // cancellation and shutdown close the queue. Results wait in the
        // sink only while the next job is already there.
        let msg = {
            let pop = queue.pop();
            tokio::pin!(pop);
            match futures::poll!(pop.as_mut()) {
                Poll::Ready(msg) => msg,
                Poll::Pending => {
                    // The batch is empty here: the pop had to wait.
                    before_wait(&mut sink, cancelled.as_mut(), || {}).await;
                    pop.await
                }
            }
        };
        let Envelope { id, job, reply } = match msg {
            Some(Msg::Item(env)) => env,
            Some(Msg::Wake) => continue,
            None => break,
        };
        counters.dequeued();
        if shared.cancelled.load(Ordering::Acquire) {
            counters.finished(Outcome::Cancelled);
            cancel_reply(&shared, &mut sink, id, reply);
            break;
        }
        let ended = {
            let run = AssertUnwindSafe(async { w.handle(job).await }).catch_unwind();
            tokio::pin!(run);
            // A job that is done at its first poll needs no race with the
            // token; one that is not sends the finished results first.
            match futures::poll!(run.as_mut()) {
                Poll::Ready(r) => Some(r),
                Poll::Pending => {
                    // Nothing of this worker's batch waits behind a job
                    // that waits.
                    queue.step_away();
                    before_wait(&mut sink, cancelled.as_mut(), || {}).await;
                    tokio::select! {
                        biased;
                        r = run => Some(r),
                        () = &mut cancelled => None,
                    }
                }
            }
        };
        let mut panicked = false;
        let (outcome, result) = match ended {
            Some(Ok(Ok(output))) => (Outcome::Completed, Ok(output)),
            Some(Ok(Err(error))) => {
                tracing::warn!(job = %id, ?error, "job failed");
                (Outcome::Failed, Err(JobError::Failed(error)))
            }
            Some(Err(payload)) => {
                let message = panic_message(&*payload);
                tracing::error!(job = %id, panic = %message, "job panicked; replacing the worker");
                panicked = true;
                (Outcome::Panicked, Err(JobError::Panicked { message }))
            }
            None => {
                tracing::debug!(job = %id, "job cancelled while running");
                (Outcome::Cancelled, Err(JobError::Cancelled))
            }
        };
        counters.finished(outcome);
        if deliver(&shared, &mut sink, id, reply, result) {
            // Sending a full chunk may wait for the reader: if it must, the
            // rest of the batch goes back to the queue first.
            before_wait(&mut sink, cancelled.as_mut(), || queue.step_away()).await;
        }
        if outcome == Outcome::Cancelled {
            break;
        }
        if panicked {
            // The panic may have left the worker's state half-updated: drop
            // it (no teardown) and start a fresh one in this slot, after
            // sending what is done (setup may take a while).
            queue.step_away();
            before_wait(&mut sink, cancelled.as_mut(), || {}).await;
            worker = start_worker(&*make, index).await;
        }
    }

    if shared.token.is_cancelled() {
        // Cancelled: nothing more is taken; what is queued (this worker's
        // batch first) is cancelled.
        drain_cancelled(&shared, &counters, &mut queue, &mut sink);
    }
    // Leaving (shutdown drained the queue, a shrink, an empty slot): what is
    // left of the batch goes to the other workers.
    queue.step_away();
    if let Some(sink) = sink.as_mut() {
        if shared.token.is_cancelled() {
            sink.try_flush();
        } else {
            sink.flush(cancelled.as_mut(), || {}).await;
        }
    }
    if let Some(w) = worker.as_mut()
        && AssertUnwindSafe(w.teardown()).catch_unwind().await.is_err()
    {
        tracing::error!("worker teardown panicked");
    }
    let last = !retired && shared.exited() == 0;
    if last {
        // The last worker is gone (shutdown, cancellation, or every setup
        // failed): make sure nobody waits on a queue that no one reads.
        queue.close();
        drain_cancelled(&shared, &counters, &mut queue, &mut sink);
        if let Some(sink) = sink.as_mut() {
            sink.try_flush();
        }
    }
    // This worker's sender goes before the last counters do, so the results
    // stream ends no later than the pool.
    drop(sink);
    shared.counters.unregister(&counters);
    if last {
        shared.ended.cancel();
    }
    tracing::trace!(retired, "worker ended");
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
    E: Send + 'static,
{
    /// The shrink check, including the hand-off queue's idle offer.
    fn try_retire_with(&self, queue: &mut QueueRx<Envelope<J, O, E>>) -> bool {
        if self.live.load(Ordering::Relaxed) <= self.target.load(Ordering::Relaxed) {
            return false;
        }
        // A claimed idle offer means a job is on its way to this worker.
        queue.withdraw() && self.try_retire()
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
) {
    match reply {
        Reply::Ticket(tx) => {
            let _ = tx.send(Err(Box::new(JobError::Cancelled)));
        }
        Reply::Detached => {
            if let Some(sink) = sink.as_mut()
                && shared.results_taken.load(Ordering::Acquire)
                && sink.push(id, Err(Box::new(JobError::Cancelled)))
            {
                sink.try_flush();
            }
        }
    }
}

/// Cancels every job still queued (their tickets resolve to `Cancelled`).
fn drain_cancelled<J, O, E>(
    shared: &Shared<J, O, E>,
    counters: &WorkerCounters,
    queue: &mut QueueRx<Envelope<J, O, E>>,
    sink: &mut Option<ResultSink<O, E>>,
) {
    queue.close();
    let mut n = 0_u64;
    while let Some(Envelope { id, reply, .. }) = queue.try_pop() {
        counters.dequeued();
        counters.finished(Outcome::Cancelled);
        n += 1;
        cancel_reply(shared, sink, id, reply);
    }
    if n > 0 {
        tracing::warn!(cancelled = n, "pool cancelled; queued jobs dropped");
    }
}
