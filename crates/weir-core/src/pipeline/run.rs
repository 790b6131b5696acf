//! The tasks a running pipeline is made of: sources, stage workers, and the
//! dispatcher and re-orderer of an ordered stage.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::PipelineError;
use super::options::ItemOpts;
use super::report::StageCounters;
use super::stage::{Process, Stage, StageFn};
use weir_chan::lane::{LaneRx, LaneTx};

use crate::channel::{self, Delivery, EdgeRx, EdgeTx, Halt, Recv, Sent};
use weir_context::__private::catch_call;
use weir_context::{Context, ErrorPolicy, Panic};

/// What the consumer side (the output stream) shares with the handle.
#[derive(Debug)]
pub(crate) struct SinkState {
    pub(crate) token: CancellationToken,
    /// The consumer dropped the output stream before it ended.
    pub(crate) consumer_gone: AtomicBool,
    pub(crate) delivered: AtomicU64,
    pub(crate) undelivered: AtomicU64,
}

/// State shared by every task of one running pipeline and its handle.
pub(crate) struct Shared<E> {
    /// Where the pipeline was created (the leak check's listing).
    pub(crate) origin: weir_context::__private::Origin,
    /// The pipeline's name ([`Pipeline::name`](super::Pipeline::name)).
    pub(crate) name: Arc<str>,
    /// The pipeline's own context; `token` is its token.
    pub(crate) ctx: Context,
    pub(crate) token: CancellationToken,
    pub(crate) policy: ErrorPolicy,
    pub(crate) tracker: TaskTracker,
    /// The stages' tasks: `tracker` itself, unless the pipeline runs a task
    /// of its own beside them (the metrics publisher), which ends when
    /// these have.
    pub(crate) work: TaskTracker,
    pub(crate) sink: Arc<SinkState>,
    pub(crate) first_error: Mutex<Option<PipelineError<E>>>,
    pub(crate) errors_rx: Mutex<Option<LaneRx<PipelineError<E>>>>,
    /// The caller took the error stream: failures under `Continue` reach it
    /// as values, so they are logged at DEBUG, not WARN.
    pub(crate) errors_taken: AtomicBool,
    pub(crate) errors_dropped: AtomicU64,
    /// Some task stopped because the token fired, not because its input
    /// ended: the pipeline did not run to completion.
    pub(crate) interrupted: AtomicBool,
    pub(crate) stages: Mutex<Vec<Arc<StageCounters>>>,
    pub(crate) started: Instant,
}

impl<E> Shared<E> {
    /// A snapshot of the counters now.
    pub(crate) fn report(&self) -> super::PipelineReport {
        let stages = self
            .stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|c| c.snapshot())
            .collect();
        super::PipelineReport {
            stages,
            delivered: self.sink.delivered.load(Relaxed),
            undelivered: self.sink.undelivered.load(Relaxed),
            errors_dropped: self.errors_dropped.load(Relaxed),
            elapsed: self.started.elapsed(),
        }
    }
}

impl<E> fmt::Debug for Shared<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("cancelled", &self.token.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// What one task of a stage needs: the pipeline, its stage's counters, the
/// error channel and its own stop signal.
pub(crate) struct Env<E> {
    pub(crate) shared: Arc<Shared<E>>,
    pub(crate) counters: Arc<StageCounters>,
    pub(crate) errors: LaneTx<PipelineError<E>>,
    pub(crate) halt: Halt,
    /// `weir_stage_item_duration_seconds` of this stage.
    #[cfg(feature = "metrics")]
    pub(crate) item_duration: metrics::Histogram,
}

impl<E> Clone for Env<E> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            counters: Arc::clone(&self.counters),
            errors: self.errors.clone(),
            halt: Halt::new(&self.shared.token),
            #[cfg(feature = "metrics")]
            item_duration: self.item_duration.clone(),
        }
    }
}

/// How processing one item ended.
pub(crate) enum Outcome<O> {
    /// Pass this on.
    Item(O),
    /// Filtered out on purpose.
    Filtered,
    /// Failed; already counted and reported.
    Failed,
    /// The pipeline stopped while the item was being processed.
    Stopped,
}

impl<E: fmt::Display + Send + 'static> Env<E> {
    pub(super) fn stage(&self) -> Arc<str> {
        Arc::clone(&self.counters.name)
    }

    /// Notes that this task stopped because the pipeline was stopped.
    pub(crate) fn interrupted(&self) {
        self.shared.interrupted.store(true, Relaxed);
    }

    /// Reports a failure under the pipeline's error policy: the one event
    /// for it (DEBUG when the caller receives the error as a value, WARN
    /// when nobody will), then the error stream or the first-error slot.
    pub(crate) fn fail(&self, err: PipelineError<E>) {
        match self.shared.policy {
            ErrorPolicy::FailFast => self.fail_pipeline(err),
            ErrorPolicy::Continue => {
                let taken = self.shared.errors_taken.load(Relaxed);
                if !taken {
                    tracing::warn!(error = %err, "item failed; nobody took the error stream");
                } else if self.errors.is_full() {
                    tracing::warn!(error = %err, "item failed; the error stream is full, so the error is only counted");
                } else {
                    tracing::debug!(error = %err, "item failed");
                }
                if self.errors.try_send(err).is_err() {
                    self.shared.errors_dropped.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// Fails the whole pipeline, whatever the policy: records the error if it
    /// is the first (`join` returns it) and cancels every task.
    pub(crate) fn fail_pipeline(&self, err: PipelineError<E>) {
        let mut first = self
            .shared
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if first.is_none() && !self.halt.is_stopped() {
            tracing::debug!(error = %err, "stage failed; stopping the pipeline");
            *first = Some(err);
        } else {
            tracing::debug!(error = %err, "failure after the pipeline stopped");
        }
        drop(first);
        self.shared.token.cancel();
    }

    /// Runs one item through `proc`, catching panics and applying the
    /// per-item timeout (and the stage's adaptive limit and retries, see
    /// `options.rs`); failures are counted and reported here.
    pub(crate) async fn process<I, O, P, X>(
        &mut self,
        proc: &mut P,
        item: I,
        opts: &ItemOpts<I, E>,
        out: &mut EdgeTx<X>,
    ) -> Outcome<O>
    where
        P: Process<I, O, E>,
    {
        let timeout = opts.timeout;
        if let Some(extra) = &opts.extra {
            // Boxed: the plain path's future stays as small as it was.
            return Box::pin(self.process_with(proc, item, timeout, extra, out)).await;
        }
        // The call is inside the async block so that a closure that panics
        // before returning its future is caught too.
        let work = AssertUnwindSafe(async { proc.call(item).await }).catch_unwind();
        #[cfg(feature = "metrics")]
        let started = Instant::now();
        // Without a timeout the work is polled as it is: no timer state to
        // build and move for every item.
        let result = match timeout {
            None => self.run(work, out).await.map(Ok),
            Some(d) => self.run(tokio::time::timeout(d, work), out).await,
        };
        let Some(result) = result else {
            return Outcome::Stopped;
        };
        #[cfg(feature = "metrics")]
        self.item_duration.record(started.elapsed());
        let c = &self.counters;
        match result {
            Ok(Ok(Ok(Some(out)))) => Outcome::Item(out),
            Ok(Ok(Ok(None))) => Outcome::Filtered,
            Ok(Ok(Err(error))) => {
                c.failed.fetch_add(1, Relaxed);
                self.fail(PipelineError::Failed {
                    stage: self.stage(),
                    error,
                });
                Outcome::Failed
            }
            Ok(Err(payload)) => {
                c.failed.fetch_add(1, Relaxed);
                c.panicked.fetch_add(1, Relaxed);
                self.fail(PipelineError::Panicked {
                    stage: self.stage(),
                    panic: Panic::from_payload(payload),
                });
                Outcome::Failed
            }
            Err(_elapsed) => {
                c.failed.fetch_add(1, Relaxed);
                c.timed_out.fetch_add(1, Relaxed);
                self.fail(PipelineError::TimedOut {
                    stage: self.stage(),
                    after: timeout.unwrap_or_default(),
                });
                Outcome::Failed
            }
        }
    }

    /// Polls `work` once; if it must wait, sends what is ready in `out`'s
    /// chunk first, then waits for it or the stop signal. `None`: stopped.
    pub(super) async fn run<F: Future, X>(
        &mut self,
        work: F,
        out: &mut EdgeTx<X>,
    ) -> Option<F::Output> {
        let mut work = std::pin::pin!(work);
        match std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
            Poll::Ready(done) => Some(done),
            Poll::Pending => {
                // The work must wait: send what is ready downstream first.
                if out.pending() > 0 && !self.flush(out).await {
                    return None;
                }
                self.halt.or_stop(work).await
            }
        }
    }

    /// Counts what a send or flush did; false when this task must stop
    /// (downstream gone or pipeline stopped).
    fn account(&self, d: Delivery) -> bool {
        let c = &self.counters;
        if d.sent > 0 {
            c.output.fetch_add(d.sent, Relaxed);
        }
        if d.lost > 0 {
            c.cancelled.fetch_add(d.lost, Relaxed);
        }
        match d.status {
            Sent::Ok => true,
            Sent::Closed => false,
            Sent::Stopped => {
                self.interrupted();
                false
            }
        }
    }

    /// Passes `out` downstream (into the sender's chunk, or onto the
    /// channel) and counts it once it is on the channel. Returns false when
    /// this task must stop.
    pub(crate) async fn emit<O>(&mut self, tx: &mut EdgeTx<O>, out: O) -> bool {
        let d = tx.send(out, &mut self.halt).await;
        self.account(d)
    }

    /// Sends what waits in `tx`'s chunk now. Returns false when this task
    /// must stop.
    pub(crate) async fn flush<O>(&mut self, tx: &mut EdgeTx<O>) -> bool {
        // The common case needs no waiting: no send future to build.
        let d = match tx.try_flush(&self.halt) {
            Some(d) => d,
            None => tx.flush_full(&mut self.halt).await,
        };
        self.account(d)
    }

    /// At the end of a task: delivers what waits in `tx`'s chunk unless the
    /// pipeline stopped, in which case it is counted as cancelled.
    pub(crate) async fn close_out<O>(&mut self, tx: &mut EdgeTx<O>) {
        if !self.halt.is_stopped() {
            self.flush(tx).await;
        }
        let left = tx.discard();
        if left > 0 {
            self.counters.cancelled.fetch_add(left, Relaxed);
        }
    }

    /// Takes the next input item, without counting it; `None` when the task
    /// must stop. Before waiting for input it sends what waits in `out`'s
    /// chunk, so nothing sits in a chunk while this task is idle.
    pub(crate) async fn next<I, O>(
        &mut self,
        rx: &mut EdgeRx<I>,
        out: &mut EdgeTx<O>,
    ) -> Option<I> {
        if self.halt.is_stopped() {
            self.interrupted();
            return None;
        }
        let received = match rx.try_recv() {
            Ok(item) => Recv::Item(item),
            Err(true) => Recv::Closed,
            Err(false) => {
                if out.pending() > 0 && !self.flush(out).await {
                    return None;
                }
                channel::recv_wait(rx, &mut self.halt).await
            }
        };
        match received {
            Recv::Item(item) => Some(item),
            Recv::Closed => None,
            Recv::Stopped => {
                self.interrupted();
                None
            }
        }
    }

    /// Takes the next input item and counts it as the stage's input.
    pub(crate) async fn take<I, O>(
        &mut self,
        rx: &mut EdgeRx<I>,
        out: &mut EdgeTx<O>,
    ) -> Option<I> {
        let item = self.next(rx, out).await?;
        self.counters.input.fetch_add(1, Relaxed);
        Some(item)
    }

    /// Ends this task of the stage. The stage's last task closes its input
    /// and counts what was left there as taken in and cancelled, so that
    /// nothing upstream sent disappears from the accounts.
    pub(crate) fn finish<I>(&self, mut input: Option<&mut EdgeRx<I>>) {
        if let Some(rx) = input.as_deref_mut() {
            // Before this task counts as ended: the last task's drain must
            // find what this one took and did not start.
            rx.step_away();
        }
        if self.counters.task_ended()
            && let Some(rx) = input
        {
            self.drain(rx);
        }
    }

    /// Closes `rx` and counts what was left in it as taken in and cancelled.
    pub(crate) fn drain<I>(&self, rx: &mut EdgeRx<I>) {
        let left = channel::close_and_drain(rx);
        if left > 0 {
            self.counters.input.fetch_add(left, Relaxed);
            self.counters.cancelled.fetch_add(left, Relaxed);
            tracing::debug!(stage = %self.counters.name, left, "input closed with items left; counted as cancelled");
        }
    }
}

/// One worker of an unordered stage: take, process, pass on, until the input
/// ends or the pipeline stops.
pub(crate) async fn unordered_worker<I, O, E, P>(
    mut env: Env<E>,
    mut rx: EdgeRx<I>,
    mut tx: EdgeTx<O>,
    mut proc: P,
    opts: ItemOpts<I, E>,
) where
    E: fmt::Display + Send + 'static,
    P: Process<I, O, E>,
{
    work_loop(&mut env, &mut rx, &mut tx, &mut proc, &opts).await;
    env.close_out(&mut tx).await;
    env.finish(Some(&mut rx));
}

async fn work_loop<I, O, E, P>(
    env: &mut Env<E>,
    rx: &mut EdgeRx<I>,
    tx: &mut EdgeTx<O>,
    proc: &mut P,
    opts: &ItemOpts<I, E>,
) where
    E: fmt::Display + Send + 'static,
    P: Process<I, O, E>,
{
    while let Some(item) = env.take(rx, tx).await {
        match env.process(proc, item, opts, tx).await {
            Outcome::Item(out) => {
                if !env.emit(tx, out).await {
                    return;
                }
            }
            Outcome::Filtered => {
                env.counters.filtered.fetch_add(1, Relaxed);
            }
            Outcome::Failed => {}
            Outcome::Stopped => {
                env.counters.cancelled.fetch_add(1, Relaxed);
                env.interrupted();
                return;
            }
        }
    }
}

/// One worker of a [`Stage`]: setup, the unordered loop, teardown.
pub(crate) async fn stage_worker<I, S>(
    mut env: Env<S::Error>,
    mut rx: EdgeRx<I>,
    mut tx: EdgeTx<S::Out>,
    stage: Arc<S>,
    index: usize,
    opts: ItemOpts<I, S::Error>,
) where
    I: Send + 'static,
    S: Stage<I>,
    S::Error: fmt::Display,
{
    let setup = AssertUnwindSafe(stage.setup(index)).catch_unwind();
    let state = match env.halt.or_stop(setup).await {
        None => {
            env.interrupted();
            None
        }
        Some(Ok(Ok(state))) => Some(state),
        Some(Ok(Err(error))) => {
            let stage = env.stage();
            env.fail_pipeline(PipelineError::Failed { stage, error });
            None
        }
        Some(Err(payload)) => {
            let stage = env.stage();
            let panic = Panic::from_payload(payload);
            env.fail_pipeline(PipelineError::Panicked { stage, panic });
            None
        }
    };
    if let Some(state) = state {
        let mut proc = StageFn { stage, state };
        work_loop(&mut env, &mut rx, &mut tx, &mut proc, &opts).await;
        env.close_out(&mut tx).await;
        let StageFn { stage, state } = proc;
        match AssertUnwindSafe(stage.teardown(state)).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let stage = env.stage();
                env.fail(PipelineError::Failed { stage, error });
            }
            Err(payload) => {
                let stage = env.stage();
                let panic = Panic::from_payload(payload);
                env.fail(PipelineError::Panicked { stage, panic });
            }
        }
    }
    env.finish(Some(&mut rx));
}

/// The first task of an ordered stage: numbers the items and hands them to
/// the workers, never letting more than `window` items be between entering
/// the stage and leaving it.
pub(crate) async fn ordered_dispatcher<I, E>(
    mut env: Env<E>,
    mut rx: EdgeRx<I>,
    mut work: EdgeTx<(u64, I)>,
    window: Arc<Semaphore>,
) where
    E: fmt::Display + Send + 'static,
{
    let mut seq = 0u64;
    loop {
        // Room in the window first, then the item: an item is only taken in
        // when it can go straight to a worker.
        match env.halt.or_stop(window.acquire()).await {
            Some(Ok(permit)) => permit.forget(),
            // The re-orderer closed the window: it has stopped.
            Some(Err(_)) => break,
            None => {
                env.interrupted();
                break;
            }
        }
        let Some(item) = env.take(&mut rx, &mut work).await else {
            break;
        };
        // Numbered items are not the stage's output: only losses count here.
        match work.send((seq, item), &mut env.halt).await.status {
            Sent::Ok => seq += 1,
            Sent::Closed => {
                env.counters.cancelled.fetch_add(1, Relaxed);
                break;
            }
            Sent::Stopped => {
                env.counters.cancelled.fetch_add(1, Relaxed);
                env.interrupted();
                break;
            }
        }
    }
    // This task is the only reader of the stage's input.
    env.drain(&mut rx);
    env.finish::<I>(None);
}

/// A worker of an ordered stage: processes numbered items and reports each
/// outcome by number, so the re-orderer can fill every position.
pub(crate) async fn ordered_worker<I, O, E, P>(
    mut env: Env<E>,
    mut work: EdgeRx<(u64, I)>,
    mut done: EdgeTx<(u64, Option<O>)>,
    mut proc: P,
    opts: ItemOpts<I, E>,
    workers_left: Arc<std::sync::atomic::AtomicUsize>,
) where
    E: fmt::Display + Send + 'static,
    P: Process<I, O, E>,
{
    loop {
        // Items here were counted as input by the dispatcher.
        let Some((seq, item)) = env.next(&mut work, &mut done).await else {
            break;
        };
        let out = match env.process(&mut proc, item, &opts, &mut done).await {
            Outcome::Item(out) => Some(out),
            Outcome::Filtered => {
                env.counters.filtered.fetch_add(1, Relaxed);
                None
            }
            Outcome::Failed => None,
            Outcome::Stopped => {
                env.counters.cancelled.fetch_add(1, Relaxed);
                env.interrupted();
                break;
            }
        };
        let had_item = out.is_some();
        // `done` has room for the whole window, so this only waits if the
        // re-orderer is slow to take results; it fails if it has stopped.
        // `done` carries single results (it is built with many readers'
        // semantics, see `map_ordered`), so a loss is exactly this result.
        let d = done.send((seq, out), &mut env.halt).await;
        if d.status != Sent::Ok {
            if had_item {
                env.counters.cancelled.fetch_add(1, Relaxed);
            }
            break;
        }
    }
    // Before this worker counts as gone: the last one's drain must find
    // what this one took and did not start.
    work.step_away();
    env.counters.task_ended();
    // The last *worker* (not the last task of the stage: the dispatcher or
    // the re-orderer may end after it) closes the work queue and counts the
    // numbered items no worker took; the dispatcher counted them as input.
    if workers_left.fetch_sub(1, Relaxed) == 1 {
        let left = channel::close_and_drain(&mut work);
        env.counters.cancelled.fetch_add(left, Relaxed);
    }
}

/// The last task of an ordered stage: puts results back in input order and
/// passes them on, opening the window one place per position filled.
pub(crate) async fn ordered_reorderer<O, E>(
    mut env: Env<E>,
    mut done: EdgeRx<(u64, Option<O>)>,
    mut tx: EdgeTx<O>,
    window: Arc<Semaphore>,
) where
    E: fmt::Display + Send + 'static,
{
    let mut pending: BTreeMap<u64, Option<O>> = BTreeMap::new();
    let mut next = 0u64;
    'run: loop {
        let Some((seq, out)) = env.next(&mut done, &mut tx).await else {
            break;
        };
        pending.insert(seq, out);
        while let Some(out) = pending.remove(&next) {
            next += 1;
            window.add_permits(1);
            if let Some(out) = out
                && !env.emit(&mut tx, out).await
            {
                break 'run;
            }
        }
    }
    env.close_out(&mut tx).await;
    // Stop the dispatcher from waiting on a window that will not open again.
    window.close();
    let buffered = pending.values().filter(|o| o.is_some()).count() as u64;
    let mut left = 0;
    channel::close_and_drain_each(&mut done, |(_, out)| left += u64::from(out.is_some()));
    env.counters.cancelled.fetch_add(buffered + left, Relaxed);
    env.finish::<O>(None);
}

impl<E: fmt::Display + Send + 'static> Env<E> {
    /// The source's iterator or stream panicked: counted as one failed item
    /// of the source (its input includes it, so the source balances), and
    /// reported under the policy. The items it yielded before are already
    /// on their way (or counted as cancelled if the pipeline stops).
    fn source_panicked(&self, panic: Panic) {
        let c = &self.counters;
        c.input.fetch_add(1, Relaxed);
        c.failed.fetch_add(1, Relaxed);
        c.panicked.fetch_add(1, Relaxed);
        self.fail(PipelineError::Panicked {
            stage: self.stage(),
            panic,
        });
    }
}

/// Source over an iterator. A panic in `next` ends the source with a
/// panic error (see [`Env::source_panicked`]).
pub(crate) async fn iter_source<I, E>(mut env: Env<E>, mut iter: I, mut tx: EdgeTx<I::Item>)
where
    I: Iterator,
    E: fmt::Display + Send + 'static,
{
    loop {
        if env.halt.is_stopped() {
            env.interrupted();
            break;
        }
        let item = match catch_call(|| iter.next()) {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(panic) => {
                env.source_panicked(panic);
                break;
            }
        };
        env.counters.input.fetch_add(1, Relaxed);
        if !env.emit(&mut tx, item).await {
            break;
        }
    }
    env.close_out(&mut tx).await;
    env.finish::<I::Item>(None);
}

/// Source over a stream. A panic in `poll_next` ends the source with a
/// panic error (see [`Env::source_panicked`]).
pub(crate) async fn stream_source<S, E>(mut env: Env<E>, stream: S, mut tx: EdgeTx<S::Item>)
where
    S: Stream,
    E: fmt::Display + Send + 'static,
{
    let mut stream = std::pin::pin!(stream);
    loop {
        let mut next = AssertUnwindSafe(stream.next()).catch_unwind();
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut next).poll(cx))).await;
        let item = match polled {
            Poll::Ready(item) => Some(item),
            Poll::Pending => {
                // The stream must wait: send what is ready downstream first.
                if tx.pending() > 0 && !env.flush(&mut tx).await {
                    break;
                }
                env.halt.or_stop(next).await
            }
        };
        let item = match item {
            Some(Ok(Some(item))) => item,
            Some(Ok(None)) => break,
            Some(Err(payload)) => {
                env.source_panicked(Panic::from_payload(payload));
                break;
            }
            None => {
                env.interrupted();
                break;
            }
        };
        env.counters.input.fetch_add(1, Relaxed);
        if !env.emit(&mut tx, item).await {
            break;
        }
    }
    env.close_out(&mut tx).await;
    env.finish::<S::Item>(None);
}

/// Source running a generator function.
pub(crate) async fn generator_source<T, E, F, Fut>(env: Env<E>, f: F, tx: EdgeTx<T>)
where
    E: fmt::Display + Send + 'static,
    F: FnOnce(Emitter<T>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut env = env;
    let emitter = Emitter {
        out: tokio::sync::Mutex::new((tx, Halt::new(&env.shared.token))),
        token: env.shared.token.clone(),
        counters: Arc::clone(&env.counters),
        stopped: Arc::new(AtomicBool::new(false)),
    };
    let stopped = Arc::clone(&emitter.stopped);
    let run = AssertUnwindSafe(async move { f(emitter).await }).catch_unwind();
    match env.halt.or_stop(run).await {
        None => env.interrupted(),
        Some(Ok(Ok(()))) => {}
        // An error returned because a send failed is the consequence of the
        // stop, not a failure of its own.
        Some(Ok(Err(_))) if stopped.load(Relaxed) => {}
        Some(Ok(Err(error))) => {
            env.counters.failed.fetch_add(1, Relaxed);
            let stage = env.stage();
            env.fail(PipelineError::Failed { stage, error });
        }
        Some(Err(payload)) => {
            env.counters.failed.fetch_add(1, Relaxed);
            env.counters.panicked.fetch_add(1, Relaxed);
            let stage = env.stage();
            let panic = Panic::from_payload(payload);
            env.fail(PipelineError::Panicked { stage, panic });
        }
    }
    // A failed or panicked generator counts as one failed "item" of the
    // source, so the source's input includes it.
    let c = &env.counters;
    let failed = c.failed.load(Relaxed);
    c.input.fetch_add(failed, Relaxed);
    env.finish::<T>(None);
}

/// The sending end a generator function gets: items sent here enter the
/// pipeline.
///
/// Made by [`Pipeline::generate`](crate::Pipeline::generate).
pub struct Emitter<T> {
    out: tokio::sync::Mutex<(EdgeTx<T>, Halt)>,
    token: CancellationToken,
    counters: Arc<StageCounters>,
    stopped: Arc<AtomicBool>,
}

impl<T> fmt::Debug for Emitter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

/// [`Emitter::send`] failed: the pipeline has stopped (cancelled, failed,
/// or its consumer went away); a generator that gets this should return.
///
/// Returning it (or any error) from the generator after this is not counted
/// as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pipeline stopped; the generator should return")]
pub struct EmitError;

impl<T> Emitter<T> {
    /// Sends one item into the pipeline, waiting while the next stage is
    /// full (backpressure).
    ///
    /// # Errors
    ///
    /// [`EmitError`] when the pipeline stopped: the item is dropped and
    /// counted as cancelled, and the generator should return.
    ///
    /// # Cancel safety
    ///
    /// If the returned future is dropped before it completes, the item is
    /// dropped and was not sent.
    pub async fn send(&self, item: T) -> Result<(), EmitError> {
        self.counters.input.fetch_add(1, Relaxed);
        // If this future is dropped mid-send (the pipeline stopped and the
        // generator with it), the item is counted as cancelled.
        let mut pending = PendingSend {
            counters: &self.counters,
            done: false,
        };
        // Only one `send` runs at a time (they take `&self`, but the
        // generator awaits each); the lock is never contended in practice.
        // A generator may wait on anything between two sends, so its items
        // are sent at once, never left in a chunk.
        let sent = {
            let mut out = self.out.lock().await;
            let (tx, halt) = &mut *out;
            let d = tx.send(item, halt).await;
            let d = if d.status == Sent::Ok {
                tx.flush(halt).await
            } else {
                d
            };
            d.status == Sent::Ok
        };
        let sent = if sent { Ok(()) } else { Err(()) };
        pending.done = true;
        match sent {
            Ok(()) => {
                self.counters.output.fetch_add(1, Relaxed);
                Ok(())
            }
            Err(()) => {
                self.counters.cancelled.fetch_add(1, Relaxed);
                self.stopped.store(true, Relaxed);
                Err(EmitError)
            }
        }
    }

    /// Whether the pipeline has stopped; a generator doing expensive work
    /// between sends can check this.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Relaxed)
            || self.token.is_cancelled()
            || self.out.try_lock().is_ok_and(|out| out.0.is_closed())
    }

    /// Waits until the pipeline stops; for `select!` in a generator that
    /// waits on other things between sends.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn stopped(&self) {
        self.token.cancelled().await;
    }
}

/// Counts an item as cancelled if its send never finished.
struct PendingSend<'a> {
    counters: &'a StageCounters,
    done: bool,
}

impl Drop for PendingSend<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.counters.cancelled.fetch_add(1, Relaxed);
        }
    }
}
