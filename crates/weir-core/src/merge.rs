//! Fan-in: many inputs into one bounded output.
//!
//! - [`merge`] forwards items from every input as they come (the Go
//!   `for { select { ... } }` fan-in, without the spin on closed channels).
//! - [`merge_in_turn`] takes one item from each live input in turn (the
//!   "restore sequence" fan-in): a chatty input cannot starve a quiet one.
//!
//! Inputs are any [`Stream`]s; a tokio `mpsc::Receiver` becomes one with
//! `tokio_stream::wrappers::ReceiverStream`. Each input gets its own forwarding
//! task, so producers that do work inside `poll_next` run on several cores.
//!
//! The output is a [`FanReceiver`]: `recv().await` or use it as a `Stream`.
//! Its [`FanHandle`] cancels the forwarding tasks and waits for them to end.
//! [`Fan`] holds the settings (context, channel capacity) shared by the
//! fan-in and fan-out functions of [`crate::fan_out`].
//!
//! # What happens when
//!
//! - **Every input closed:** the output closes after the last buffered item.
//! - **Cancelled** ([`FanHandle::cancel`], or the context given to
//!   [`Fan::context`]): every forwarding task stops at its next `.await`;
//!   the output closes after the items already buffered. Items that were
//!   pulled from an input but not yet sent are dropped (with [`merge`], up
//!   to one chunk per input: see below). `join` returns
//!   [`FanError::Stopped`] with the [`Cause`].
//! - **Output dropped:** the forwarding tasks are cancelled at once, even if
//!   an input is idle; nothing keeps running. That is the consumer's choice,
//!   not an error.
//! - **An input panics** (its `poll_next` panics): that input's task ends,
//!   the other inputs go on, and `join` returns [`FanError::Panicked`] with
//!   the [`Panic`].
//! - **Settings:** a capacity or an output count of 0, more than
//!   [`MAX_WORKERS`](crate::MAX_WORKERS) outputs, or a call outside a tokio
//!   runtime are a [`ConfigError`]; a capacity above
//!   [`MAX_CAPACITY`](crate::MAX_CAPACITY) is lowered to it.
//!
//! # Examples
//!
//! ```
//! use futures::stream;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let inputs = vec![stream::iter(vec![1, 2]), stream::iter(vec![10, 20, 30])];
//! let mut out = weir_core::merge(inputs)?;
//! let mut got = Vec::new();
//! while let Some(x) = out.recv().await {
//!     got.push(x);
//! }
//! let report = out.join().await?; // every forwarding task has ended
//! assert_eq!(report.delivered, 5);
//! got.sort();
//! assert_eq!(got, [1, 2, 10, 20, 30]);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use weir_context::__private::{Construct, Label, Origin, catch, check_capacity, write_table};
use weir_context::{Cause, ConfigError, Context, Panic, RunError};

use weir_chan::chunk::{ChunkRx, chunked};
use weir_chan::queue::{Msg, QueueRx};

use crate::DEFAULT_CAPACITY;

/// How a fan-in or fan-out ended when it did not end well; inside a
/// [`RunError`] with the [`FanReport`], from [`FanHandle::join`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FanError {
    /// A forwarding task panicked (the input stream's `poll_next`, or an
    /// item's `Clone` in `broadcast`). The first panic is reported.
    #[error("branch {branch} panicked: {panic}")]
    Panicked {
        /// The index of the input (fan-in) or 0 (fan-out) whose task panicked.
        branch: usize,
        /// The panic: its message and its payload.
        panic: Panic,
    },
    /// The tasks were cancelled ([`FanHandle::cancel`] or the context given
    /// to [`Fan::context`]) before their inputs ended.
    #[error("fan stopped: {0}")]
    Stopped(Cause),
}

/// What a fan-in or fan-out did, from [`FanHandle::join`].
///
/// There is no balance law: the inputs are your streams, and an item pulled
/// from one when the tasks were cancelled is dropped uncounted (see the
/// module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FanReport {
    /// Forwarding tasks the fan ran (one per input for fan-in, plus the
    /// rotation of `merge_in_turn`; one for fan-out).
    pub branches: u64,
    /// Items the outputs handed to their consumers.
    pub delivered: u64,
    /// Branches that panicked.
    pub panicked: u64,
    /// Time from the start until the last task ended (or until now).
    pub elapsed: Duration,
}

impl fmt::Display for FanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(
            f,
            &["branches", "delivered", "panicked", "elapsed"],
            &[vec![
                self.branches.to_string(),
                self.delivered.to_string(),
                self.panicked.to_string(),
                format!("{:?}", self.elapsed),
            ]],
        )
    }
}

/// Settings shared by [`merge`], [`merge_in_turn`],
/// [`distribute`](crate::fan_out::distribute) and
/// [`broadcast`](crate::fan_out::broadcast): the context their tasks run
/// under and the capacity of each output channel.
///
/// The free functions are shorthands for `Fan::new().<function>(..)`.
///
/// # Examples
///
/// ```
/// use futures::stream;
/// use weir_core::{Context, Fan};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let ctx = Context::background();
/// let fan = Fan::new().context(&ctx).capacity(4);
/// let out = fan.merge_in_turn(vec![stream::iter(vec![1, 3]), stream::iter(vec![2, 4])])?;
/// assert_eq!(out.collect_all().await, [1, 2, 3, 4]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Fan {
    pub(crate) parent: Option<Context>,
    pub(crate) capacity: usize,
}

impl Default for Fan {
    fn default() -> Self {
        Self::new()
    }
}

impl Fan {
    /// Default settings: a fresh context, [`DEFAULT_CAPACITY`].
    pub fn new() -> Self {
        Fan {
            parent: None,
            capacity: DEFAULT_CAPACITY,
        }
    }

    /// Runs the tasks under `ctx` (a [`Context`], `&Context` or
    /// `CancellationToken`): they stop when it is cancelled or its deadline
    /// passes, and `join` says why. They run on a child of `ctx`, so
    /// cancelling the fan does not cancel `ctx`.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.parent = Some(ctx.into());
        self
    }

    /// Sets the capacity of each output channel (and, for
    /// [`merge_in_turn`](Fan::merge_in_turn), of each input's buffer).
    /// Zero is a [`ConfigError`] when a function runs; above
    /// [`MAX_CAPACITY`](crate::MAX_CAPACITY) it is lowered to it.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The checked capacity and a fresh [`Core`] for one function's tasks.
    #[track_caller]
    pub(crate) fn start(&self, function: &'static str) -> Result<(usize, Core), ConfigError> {
        let capacity = check_capacity(function, "capacity", self.capacity)?;
        tokio::runtime::Handle::try_current().map_err(|_| ConfigError::no_runtime(function))?;
        let ctx = self
            .parent
            .as_ref()
            .map_or_else(Context::background, Context::child);
        Ok((capacity, Core::new(ctx, function, Origin::here())))
    }

    /// Merges `inputs` into one output; see [`merge`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a zero capacity or outside a tokio runtime.
    #[track_caller]
    pub fn merge<I, S>(&self, inputs: I) -> Result<FanReceiver<S::Item>, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Stream + Send + Unpin + 'static,
        S::Item: Send + 'static,
    {
        let (capacity, core) = self.start("merge")?;
        // Chunks of up to `min(capacity, BATCH)` items; the channel holds
        // `capacity` items.
        let (tx, rx) = chunked(capacity);
        for (index, mut input) in inputs.into_iter().enumerate() {
            let mut tx = tx.clone();
            let span = tracing::debug_span!("merge", input = index);
            core.spawn(index, span, async move {
                loop {
                    // Take what the input has without waiting; send the chunk
                    // when it is full or before waiting on the input, so no
                    // item sits here while the consumer could have it.
                    let polled =
                        std::panic::catch_unwind(AssertUnwindSafe(|| input.next().now_or_never()));
                    let next = match polled {
                        Ok(Some(next)) => next,
                        // The input panicked: what it yielded before still
                        // goes out, then the panic is reported as usual.
                        Err(payload) => {
                            let _ = tx.flush().await;
                            std::panic::resume_unwind(payload);
                        }
                        Ok(None) => {
                            if tx.flush().await.is_err() {
                                return;
                            }
                            input.next().await
                        }
                    };
                    let Some(item) = next else { break };
                    if tx.push(item) && tx.flush().await.is_err() {
                        return;
                    }
                }
                if tx.flush().await.is_err() {
                    return;
                }
                tracing::debug!("input closed");
            });
        }
        drop(tx);
        Ok(core.finish(|handle| FanReceiver::new(Chan::Chunks(rx), handle)))
    }

    /// Merges `inputs` one item from each in turn; see [`merge_in_turn`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a zero capacity or outside a tokio runtime.
    #[track_caller]
    pub fn merge_in_turn<I, S>(&self, inputs: I) -> Result<FanReceiver<S::Item>, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Stream + Send + Unpin + 'static,
        S::Item: Send + 'static,
    {
        let (capacity, core) = self.start("merge_in_turn")?;
        let (tx, rx) = mpsc::channel(capacity);
        let mut lanes = Vec::new();
        for (index, mut input) in inputs.into_iter().enumerate() {
            let (lane_tx, lane_rx) = mpsc::channel(capacity);
            lanes.push((index, lane_rx));
            let span = tracing::debug_span!("merge_in_turn", input = index);
            core.spawn(index, span, async move {
                while let Some(item) = input.next().await {
                    if lane_tx.send(item).await.is_err() {
                        return;
                    }
                }
            });
        }
        let turn_index = lanes.len();
        let span = tracing::debug_span!("merge_in_turn", turn = "rotation");
        core.spawn(turn_index, span, async move {
            // Strict rotation: wait for the input whose turn it is, even if
            // another has items ready, so the output order is exactly
            // a0 b0 c0 a1 b1 c1 ... while all are live.
            while !lanes.is_empty() {
                let mut at = 0;
                while at < lanes.len() {
                    match lanes[at].1.recv().await {
                        Some(item) => {
                            if tx.send(item).await.is_err() {
                                return;
                            }
                            at += 1;
                        }
                        None => {
                            let (index, _) = lanes.remove(at);
                            tracing::debug!(input = index, "input closed, leaves the rotation");
                        }
                    }
                }
            }
        });
        Ok(core.finish(|handle| FanReceiver::new(Chan::Mpsc(rx), handle)))
    }
}

/// Merges `inputs` into one bounded output, items forwarded as they come.
///
/// One task per input forwards its items; a slow consumer backpressures every
/// producer (the output channel holds [`DEFAULT_CAPACITY`] items; set another
/// with [`Fan::capacity`]). Items from one input keep their order; items from
/// different inputs interleave as they arrive, in runs of up to 64.
///
/// **Chunks.** A forwarding task takes what its input has ready and hands it
/// over in chunks of up to `min(capacity, 64)` items, sending a chunk when it
/// is full or right before it would wait on its input. Under load the
/// channel's synchronisation is paid once per chunk, not per item; an input
/// that yields one item now and then still delivers each at once. The output
/// holds at most `capacity` items plus one chunk per input being filled. A closed input costs nothing
/// (its task has ended): no polling loop over closed channels.
///
/// The output closes when every input has closed, or when the returned
/// [`FanHandle`] is cancelled (use [`Fan::context`] to run under a context).
/// Dropping the output stops every task. See the [module docs](self) for
/// what happens on panic.
///
/// # Examples
///
/// See the [module docs](self).
///
/// # Errors
///
/// A [`ConfigError`] outside a tokio runtime (it spawns tasks).
#[track_caller]
pub fn merge<I, S>(inputs: I) -> Result<FanReceiver<S::Item>, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Stream + Send + Unpin + 'static,
    S::Item: Send + 'static,
{
    Fan::new().merge(inputs)
}

/// Merges `inputs` taking one item from each live input in turn (strict
/// round robin), so a chatty input cannot starve a quiet one.
///
/// With inputs `a`, `b`, `c` the output is `a0 b0 c0 a1 b1 c1 ...`. An input
/// that closes leaves the rotation; the others go on in their order.
///
/// **Strict waiting:** when the input whose turn it is has nothing yet, the
/// rotation waits for it, even if other inputs have items ready. That is what
/// restores a sequence exactly (items numbered 0, 1, 2, ... dealt out to
/// workers come back as 0, 1, 2, ...), and it means one stalled input stalls
/// the output. If you want fairness without that stall, use [`merge`].
///
/// Each input has its own forwarding task and a buffer of the channel
/// capacity, so inputs keep producing while waiting for their turn.
/// Cancellation, drop and panics behave as in [`merge`].
///
/// # Examples
///
/// ```
/// use futures::stream;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let chatty = stream::iter(vec!["c0", "c1", "c2", "c3"]);
/// let quiet = stream::iter(vec!["q0"]);
/// let out = weir_core::merge_in_turn(vec![chatty, quiet])?;
/// assert_eq!(out.collect_all().await, ["c0", "q0", "c1", "c2", "c3"]);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// A [`ConfigError`] outside a tokio runtime (it spawns tasks).
#[track_caller]
pub fn merge_in_turn<I, S>(inputs: I) -> Result<FanReceiver<S::Item>, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Stream + Send + Unpin + 'static,
    S::Item: Send + 'static,
{
    Fan::new().merge_in_turn(inputs)
}

/// What the tasks of one fan-in or fan-out share with their handle and
/// outputs.
struct Shared {
    /// A child of the [`Fan`]'s context; its token stops the tasks.
    ctx: Context,
    tracker: TaskTracker,
    /// The first panic.
    panic: OnceLock<FanError>,
    /// A task stopped because the context was cancelled, not because its
    /// input ended.
    interrupted: AtomicBool,
    /// Every output was dropped (the consumer's choice, not an error).
    outputs_gone: AtomicBool,
    branches: AtomicU64,
    panicked: AtomicU64,
    delivered: AtomicU64,
    started: Instant,
    finished: OnceLock<Duration>,
}

/// The tasks of one fan-in or fan-out, while they are being spawned.
pub(crate) struct Core {
    shared: Arc<Shared>,
    /// The function that made it (`merge`, `distribute`, ...): its tasks'
    /// names.
    function: &'static str,
    /// Where the function was called (the leak check's listing).
    origin: Origin,
}

impl Core {
    fn new(ctx: Context, function: &'static str, origin: Origin) -> Self {
        Core {
            function,
            origin,
            shared: Arc::new(Shared {
                ctx,
                tracker: TaskTracker::new(),
                panic: OnceLock::new(),
                interrupted: AtomicBool::new(false),
                outputs_gone: AtomicBool::new(false),
                branches: AtomicU64::new(0),
                panicked: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                started: Instant::now(),
                finished: OnceLock::new(),
            }),
        }
    }

    /// Spawns `fut` on the tracker, stopped by the context, with panics
    /// caught and recorded.
    pub(crate) fn spawn<F>(&self, branch: usize, span: tracing::Span, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // A `Halt` registers on the token once; after that, checking it is an
        // atomic load and parking costs no lock (`CancellationToken`'s own
        // `cancelled()` takes the token's mutex on every poll, which a
        // forwarding task does once per item under load).
        let mut halt = crate::channel::Halt::new(&self.shared.ctx.token());
        let shared = Arc::clone(&self.shared);
        shared.branches.fetch_add(1, Relaxed);
        let task = async move {
            // Cancellation first: `or_stop` checks the flag before polling
            // `fut`, so once the token fires, not even the items that could
            // still be sent go through.
            match catch(halt.or_stop(fut)).await {
                Ok(Some(())) => {}
                Ok(None) => shared.interrupted.store(true, Relaxed),
                Err(panic) => {
                    // One event; `join` returns the first panic.
                    tracing::debug!(%panic, "branch panicked");
                    shared.panicked.fetch_add(1, Relaxed);
                    let _ = shared.panic.set(FanError::Panicked { branch, panic });
                }
            }
        };
        crate::spawn::tracked_on(
            &self.shared.tracker,
            &tokio::runtime::Handle::current(),
            &Label {
                construct: Construct::Fan,
                name: self.function,
                task: "branch",
                stage: None,
                index: Some(branch),
                origin: self.origin,
            },
            task.instrument(span),
        );
    }

    /// Closes the tracker and makes the outputs.
    pub(crate) fn finish<R>(self, make: impl FnOnce(FanHandle) -> R) -> R {
        self.shared.tracker.close();
        make(FanHandle {
            shared: self.shared,
        })
    }
}

/// Cancels the tasks when the last output that holds it is dropped.
struct OutputsGuard {
    shared: Arc<Shared>,
}

impl Drop for OutputsGuard {
    fn drop(&mut self) {
        // A fan already cancelled stays "stopped": the cancel came first.
        if !self.shared.ctx.is_cancelled() {
            self.shared.outputs_gone.store(true, Relaxed);
            self.shared.ctx.cancel();
        }
    }
}

/// A cheap-to-clone handle on the tasks of one fan-in or fan-out: cancel
/// them, or wait until every one has ended.
#[derive(Clone)]
pub struct FanHandle {
    shared: Arc<Shared>,
}

impl FanHandle {
    /// Cancels every task; outputs close after the items already buffered,
    /// and `join` returns [`FanError::Stopped`].
    pub fn cancel(&self) {
        self.shared.ctx.cancel();
    }

    /// The context the tasks run under: a child of the one given to
    /// [`Fan::context`]. Cancelling it is [`cancel`](Self::cancel).
    pub fn context(&self) -> &Context {
        &self.shared.ctx
    }

    /// Whether every task has ended.
    pub fn is_finished(&self) -> bool {
        self.shared.tracker.is_closed() && self.shared.tracker.is_empty()
    }

    /// The counters so far.
    pub fn report(&self) -> FanReport {
        let s = &self.shared;
        FanReport {
            branches: s.branches.load(Relaxed),
            delivered: s.delivered.load(Relaxed),
            panicked: s.panicked.load(Relaxed),
            elapsed: s
                .finished
                .get()
                .copied()
                .unwrap_or_else(|| s.started.elapsed()),
        }
    }

    /// Waits until every task has ended, then says how it went.
    ///
    /// The tasks end when their inputs close, when they are cancelled or
    /// when every output is dropped. Waiting on this while you still hold an
    /// output you do not read can wait forever (the tasks are blocked on that
    /// output); drop or drain it first, or call [`cancel`](Self::cancel).
    ///
    /// # Errors
    ///
    /// A [`RunError`] with the report and [`FanError::Panicked`] when a task
    /// panicked (the first one), or [`FanError::Stopped`] with the
    /// [`Cause`] when the tasks were cancelled before their inputs ended.
    /// Dropping every output is not an error.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future changes nothing.
    pub async fn join(self) -> Result<FanReport, RunError<FanError, FanReport>> {
        let s = &self.shared;
        s.tracker.wait().await;
        let _ = s.finished.set(s.started.elapsed());
        let report = self.report();
        if let Some(err) = s.panic.get() {
            return Err(RunError::new(err.clone(), report));
        }
        if s.interrupted.load(Relaxed) && !s.outputs_gone.load(Relaxed) {
            let cause = s.ctx.stopped().into_cause();
            return Err(RunError::new(FanError::Stopped(cause), report));
        }
        Ok(report)
    }
}

impl fmt::Debug for FanHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanHandle")
            .field("cancelled", &self.shared.ctx.is_cancelled())
            .field("tasks", &self.shared.tracker.len())
            .field("finished", &self.is_finished())
            .finish()
    }
}

pub(crate) enum Chan<T> {
    Mpsc(mpsc::Receiver<T>),
    /// Chunks from [`merge`]'s forwarding tasks.
    Chunks(ChunkRx<T>),
    /// One output of [`distribute`](crate::fan_out::distribute): a reader
    /// of the queue the outputs share.
    Shared(QueueRx<T>),
}

/// The bounded output of a fan-in or fan-out: `recv().await`, or use it as a
/// [`Stream`].
///
/// Dropping the output of [`merge`] or [`merge_in_turn`] cancels their tasks
/// at once. The outputs of [`distribute`](crate::fan_out::distribute) and
/// [`broadcast`](crate::fan_out::broadcast) share their task: it is cancelled
/// when the last of them is dropped.
pub struct FanReceiver<T> {
    chan: Chan<T>,
    handle: FanHandle,
    /// Items received by this output, added to the report when it is dropped.
    delivered: u64,
    // Cancels the tasks when the last output sharing it is dropped.
    _guard: Arc<OutputsGuard>,
}

impl<T> FanReceiver<T> {
    pub(crate) fn new(chan: Chan<T>, handle: FanHandle) -> Self {
        let guard = Arc::new(OutputsGuard {
            shared: Arc::clone(&handle.shared),
        });
        Self::sharing(chan, handle, guard)
    }

    /// Outputs that share one guard (`distribute`, `broadcast`): the tasks
    /// are cancelled when the last of them is dropped.
    pub(crate) fn many(
        chans: impl IntoIterator<Item = Chan<T>>,
        handle: &FanHandle,
    ) -> Vec<FanReceiver<T>> {
        let guard = Arc::new(OutputsGuard {
            shared: Arc::clone(&handle.shared),
        });
        chans
            .into_iter()
            .map(|chan| Self::sharing(chan, handle.clone(), Arc::clone(&guard)))
            .collect()
    }

    fn sharing(chan: Chan<T>, handle: FanHandle, guard: Arc<OutputsGuard>) -> Self {
        FanReceiver {
            chan,
            handle,
            delivered: 0,
            _guard: guard,
        }
    }

    /// Receives the next item, or `None` once the output is closed and
    /// drained.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it returns, no item is
    /// lost (usable in `tokio::select!`).
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    fn poll_item(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Option<T>> {
        let polled = match &mut self.chan {
            Chan::Mpsc(rx) => rx.poll_recv(cx),
            Chan::Chunks(rx) => rx.poll_recv(cx),
            Chan::Shared(rx) => loop {
                // No kicks on a fan-out's queue; a `Wake` is looked past.
                match std::task::ready!(rx.poll_pop(cx)) {
                    Some(Msg::Item(item)) => break Poll::Ready(Some(item)),
                    Some(Msg::Wake) => {}
                    None => break Poll::Ready(None),
                }
            },
        };
        if let Poll::Ready(Some(_)) = polled {
            self.delivered += 1;
        }
        polled
    }

    /// Receives every remaining item into a `Vec`, until the output closes.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: items received so far are lost if the future is
    /// dropped.
    pub async fn collect_all(mut self) -> Vec<T> {
        let mut items = Vec::new();
        while let Some(item) = self.recv().await {
            items.push(item);
        }
        items
    }

    /// A handle on the tasks feeding this output.
    pub fn handle(&self) -> FanHandle {
        self.handle.clone()
    }

    /// Drops this output and waits until every task has ended; see
    /// [`FanHandle::join`].
    ///
    /// For [`merge`] and [`merge_in_turn`] this cancels what is still running
    /// (drain the output first if you want every item), which is not an
    /// error. For the outputs of `distribute` and `broadcast`, the task ends
    /// only once every output is dropped or the input closes.
    ///
    /// # Errors
    ///
    /// As [`FanHandle::join`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the output is already dropped; the tasks go on ending.
    pub async fn join(self) -> Result<FanReport, RunError<FanError, FanReport>> {
        let handle = self.handle.clone();
        drop(self);
        handle.join().await
    }
}

impl<T> Drop for FanReceiver<T> {
    fn drop(&mut self) {
        self.handle
            .shared
            .delivered
            .fetch_add(self.delivered, Relaxed);
    }
}

// Nothing in a `FanReceiver` is pinned in place.
impl<T> Unpin for FanReceiver<T> {}

impl<T> Stream for FanReceiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_item(cx)
    }
}

impl<T> fmt::Debug for FanReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.chan {
            Chan::Mpsc(_) => "mpsc",
            Chan::Chunks(_) => "chunks",
            Chan::Shared(_) => "shared queue",
        };
        f.debug_struct("FanReceiver")
            .field("channel", &kind)
            .field("delivered", &self.delivered)
            .field("handle", &self.handle)
            .finish()
    }
}
