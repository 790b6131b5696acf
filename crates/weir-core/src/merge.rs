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
//! Its [`FanHandle`] says when every forwarding task has ended.
//! [`Fan`] holds the settings (token, channel capacity) shared by the fan-in
//! and fan-out functions of [`crate::fan_out`].
//!
//! # What happens when
//!
//! - **Every input closed:** the output closes after the last buffered item.
//! - **Token cancelled:** every forwarding task stops at its next `.await`;
//!   the output closes after the items already buffered. Items that were
//!   pulled from an input but not yet sent are dropped (with [`merge`], up
//!   to one chunk per input: see below).
//! - **Output dropped:** the forwarding tasks are cancelled at once, even if
//!   an input is idle; nothing keeps running.
//! - **An input panics** (its `poll_next` panics): that input's task ends, an
//!   error event is logged, the other inputs go on, and
//!   [`FanHandle::join`] returns [`FanError::Panicked`].
//!
//! # Examples
//!
//! ```
//! use futures::stream;
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), weir_core::merge::FanError> {
//! let token = CancellationToken::new();
//! let inputs = vec![stream::iter(vec![1, 2]), stream::iter(vec![10, 20, 30])];
//! let mut out = weir_core::merge::merge(inputs, &token);
//! let mut got = Vec::new();
//! while let Some(x) = out.recv().await {
//!     got.push(x);
//! }
//! out.join().await?; // every forwarding task has ended
//! got.sort();
//! assert_eq!(got, [1, 2, 10, 20, 30]);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::channel::ChunkRx;

/// Capacity of each output channel when none is set with [`Fan::capacity`].
pub const DEFAULT_CAPACITY: usize = 32;

/// Most items a [`merge`] forwarding task hands over at once.
const MERGE_BATCH: usize = 32;

/// Bad settings and failed branches of the fan-in and fan-out functions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FanError {
    /// A channel capacity of 0 was asked for.
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    /// `distribute` or `broadcast` was asked for 0 outputs.
    #[error("the number of outputs must be at least 1")]
    ZeroOutputs,
    /// A forwarding task panicked (the input stream's `poll_next`, or an
    /// item's `Clone` in `broadcast`). The first panic is reported.
    #[error("branch {branch} panicked: {message}")]
    Panicked {
        /// The index of the input (fan-in) or 0 (fan-out) whose task panicked.
        branch: usize,
        /// The panic message.
        message: String,
    },
}

/// Settings shared by [`merge`], [`merge_in_turn`],
/// [`distribute`](crate::fan_out::distribute) and
/// [`broadcast`](crate::fan_out::broadcast): the cancellation token and the
/// capacity of each output channel.
///
/// The free functions are shorthands for `Fan::new(&token).<function>(..)`
/// with [`DEFAULT_CAPACITY`].
///
/// # Examples
///
/// ```
/// use futures::stream;
/// use tokio_util::sync::CancellationToken;
/// use weir_core::merge::Fan;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), weir_core::merge::FanError> {
/// let token = CancellationToken::new();
/// let fan = Fan::new(&token).capacity(4)?;
/// let out = fan.merge_in_turn(vec![stream::iter(vec![1, 3]), stream::iter(vec![2, 4])]);
/// assert_eq!(out.collect_all().await, [1, 2, 3, 4]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Fan {
    pub(crate) token: CancellationToken,
    pub(crate) capacity: usize,
}

impl Fan {
    /// Settings with `token` as the parent of the tasks' token, and
    /// [`DEFAULT_CAPACITY`].
    pub fn new(token: &CancellationToken) -> Self {
        Fan {
            token: token.clone(),
            capacity: DEFAULT_CAPACITY,
        }
    }

    /// Settings whose tasks stop when `ctx` is cancelled or its deadline
    /// passes (their token is a child of `ctx`'s). The outputs close then;
    /// `ctx.cause()` says why.
    pub fn with_context(ctx: &crate::Context) -> Self {
        Self::new(&ctx.token())
    }

    /// Sets the capacity of each output channel (and, for
    /// [`merge_in_turn`](Fan::merge_in_turn), of each input's buffer).
    ///
    /// # Errors
    ///
    /// [`FanError::ZeroCapacity`] when `capacity` is 0.
    pub fn capacity(mut self, capacity: usize) -> Result<Self, FanError> {
        if capacity == 0 {
            return Err(FanError::ZeroCapacity);
        }
        self.capacity = capacity;
        Ok(self)
    }

    /// Merges `inputs` into one output; see [`merge`].
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (it spawns tasks).
    pub fn merge<I, S>(&self, inputs: I) -> FanReceiver<S::Item>
    where
        I: IntoIterator<Item = S>,
        S: Stream + Send + Unpin + 'static,
        S::Item: Send + 'static,
    {
        // Chunks of up to `batch` items; the channel holds `capacity` items.
        let batch = self.capacity.clamp(1, MERGE_BATCH);
        let (tx, rx) = mpsc::channel((self.capacity / batch).max(1));
        let core = Core::new(&self.token);
        for (index, mut input) in inputs.into_iter().enumerate() {
            let tx = tx.clone();
            let span = tracing::debug_span!("merge", input = index);
            core.spawn(index, span, async move {
                let mut chunk = Vec::with_capacity(batch);
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
                            send_chunk(&tx, &mut chunk, batch).await;
                            std::panic::resume_unwind(payload);
                        }
                        Ok(None) => {
                            if !send_chunk(&tx, &mut chunk, batch).await {
                                return;
                            }
                            input.next().await
                        }
                    };
                    let Some(item) = next else { break };
                    chunk.push(item);
                    if chunk.len() >= batch && !send_chunk(&tx, &mut chunk, batch).await {
                        return;
                    }
                }
                if !send_chunk(&tx, &mut chunk, batch).await {
                    return;
                }
                tracing::debug!("input closed");
            });
        }
        drop(tx);
        core.finish();
        FanReceiver::chunks(rx, core.handle, core.guard)
    }

    /// Merges `inputs` one item from each in turn; see [`merge_in_turn`].
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (it spawns tasks).
    pub fn merge_in_turn<I, S>(&self, inputs: I) -> FanReceiver<S::Item>
    where
        I: IntoIterator<Item = S>,
        S: Stream + Send + Unpin + 'static,
        S::Item: Send + 'static,
    {
        let (tx, rx) = mpsc::channel(self.capacity);
        let core = Core::new(&self.token);
        let mut lanes = Vec::new();
        for (index, mut input) in inputs.into_iter().enumerate() {
            let (lane_tx, lane_rx) = mpsc::channel(self.capacity);
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
        core.finish();
        FanReceiver::mpsc(rx, core.handle, core.guard)
    }
}

/// Sends `chunk`, if it holds anything, leaving an empty one of `batch`
/// capacity in its place; `false` when the output is gone.
async fn send_chunk<T>(tx: &mpsc::Sender<Vec<T>>, chunk: &mut Vec<T>, batch: usize) -> bool {
    if chunk.is_empty() {
        return true;
    }
    let full = std::mem::replace(chunk, Vec::with_capacity(batch));
    tx.send(full).await.is_ok()
}

/// Merges `inputs` into one bounded output, items forwarded as they come.
///
/// One task per input forwards its items; a slow consumer backpressures every
/// producer (the output channel holds [`DEFAULT_CAPACITY`] items; set another
/// with [`Fan::capacity`]). Items from one input keep their order; items from
/// different inputs interleave as they arrive, in runs of up to 32.
///
/// **Chunks.** A forwarding task takes what its input has ready and hands it
/// over in chunks of up to `min(capacity, 32)` items, sending a chunk when it
/// is full or right before it would wait on its input. Under load the
/// channel's synchronisation is paid once per chunk, not per item; an input
/// that yields one item now and then still delivers each at once. The output
/// holds at most `capacity` items plus one chunk per input being filled. A closed input costs nothing
/// (its task has ended): no polling loop over closed channels.
///
/// The output closes when every input has closed, or when `token` (or the
/// returned [`FanHandle`]) is cancelled. Dropping the output stops every task.
/// See the [module docs](self) for what happens on panic.
///
/// # Examples
///
/// See the [module docs](self).
///
/// # Panics
///
/// When called outside a tokio runtime (it spawns tasks).
pub fn merge<I, S>(inputs: I, token: &CancellationToken) -> FanReceiver<S::Item>
where
    I: IntoIterator<Item = S>,
    S: Stream + Send + Unpin + 'static,
    S::Item: Send + 'static,
{
    Fan::new(token).merge(inputs)
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
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let token = CancellationToken::new();
/// let chatty = stream::iter(vec!["c0", "c1", "c2", "c3"]);
/// let quiet = stream::iter(vec!["q0"]);
/// let out = weir_core::merge::merge_in_turn(vec![chatty, quiet], &token);
/// assert_eq!(out.collect_all().await, ["c0", "q0", "c1", "c2", "c3"]);
/// # }
/// ```
///
/// # Panics
///
/// When called outside a tokio runtime (it spawns tasks).
pub fn merge_in_turn<I, S>(inputs: I, token: &CancellationToken) -> FanReceiver<S::Item>
where
    I: IntoIterator<Item = S>,
    S: Stream + Send + Unpin + 'static,
    S::Item: Send + 'static,
{
    Fan::new(token).merge_in_turn(inputs)
}

/// The tasks of one fan-in or fan-out: a child token, a tracker, the first
/// panic, and the guard that cancels the child token when every output is gone.
pub(crate) struct Core {
    pub(crate) handle: FanHandle,
    pub(crate) guard: Arc<DropGuard>,
}

impl Core {
    pub(crate) fn new(parent: &CancellationToken) -> Self {
        let token = parent.child_token();
        let guard = Arc::new(token.clone().drop_guard());
        Core {
            handle: FanHandle {
                token,
                tracker: TaskTracker::new(),
                panic: Arc::new(OnceLock::new()),
            },
            guard,
        }
    }

    /// Spawns `fut` on the tracker, stopped by the token, with panics caught
    /// and recorded.
    pub(crate) fn spawn<F>(&self, branch: usize, span: tracing::Span, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // A `Halt` registers on the token once; after that, checking it is an
        // atomic load and parking costs no lock (`CancellationToken`'s own
        // `cancelled()` takes the token's mutex on every poll, which a
        // forwarding task does once per item under load).
        let mut halt = crate::channel::Halt::new(&self.handle.token);
        let panic = Arc::clone(&self.handle.panic);
        let task = async move {
            // Cancellation first: `or_stop` checks the flag before polling
            // `fut`, so once the token fires, not even the items that could
            // still be sent go through.
            let run = async move { halt.or_stop(fut).await };
            let caught = AssertUnwindSafe(run).catch_unwind().await;
            match caught {
                Ok(Some(())) => {}
                Ok(None) => tracing::debug!("stopped: cancelled or every output dropped"),
                Err(payload) => {
                    let message = weir_context::__private::panic_message(&*payload);
                    tracing::error!(%message, "branch panicked");
                    // Only the first panic is kept.
                    let _ = panic.set(FanError::Panicked { branch, message });
                }
            }
        };
        self.handle.tracker.spawn(task.instrument(span));
    }

    pub(crate) fn finish(&self) {
        self.handle.tracker.close();
    }
}

/// A cheap-to-clone handle on the tasks of one fan-in or fan-out: cancel them,
/// or wait until every one has ended.
#[derive(Clone)]
pub struct FanHandle {
    token: CancellationToken,
    tracker: TaskTracker,
    panic: Arc<OnceLock<FanError>>,
}

impl FanHandle {
    /// Cancels every task; outputs close after the items already buffered.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// The token the tasks watch (a child of the token given to [`Fan`]).
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Whether every task has ended.
    pub fn is_finished(&self) -> bool {
        self.tracker.is_closed() && self.tracker.is_empty()
    }

    /// Waits until every task has ended.
    ///
    /// The tasks end when their inputs close, when the token is cancelled or
    /// when every output is dropped. Waiting on this while you still hold an
    /// output you do not read can wait forever (the tasks are blocked on that
    /// output); drop or drain it first, or call [`cancel`](Self::cancel).
    ///
    /// # Errors
    ///
    /// [`FanError::Panicked`] when a task panicked (the first one).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future changes nothing.
    pub async fn join(&self) -> Result<(), FanError> {
        self.tracker.wait().await;
        match self.panic.get() {
            Some(err) => Err(err.clone()),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for FanHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanHandle")
            .field("cancelled", &self.token.is_cancelled())
            .field("tasks", &self.tracker.len())
            .field("finished", &self.is_finished())
            .finish()
    }
}

enum Chan<T> {
    Mpsc(mpsc::Receiver<T>),
    /// Chunks from [`merge`]'s forwarding tasks.
    Chunks(ChunkRx<T>),
    // async-channel's Receiver is !Unpin; boxed so FanReceiver is Unpin.
    Mpmc(Pin<Box<async_channel::Receiver<T>>>),
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
    // Cancels the tasks when the last output sharing it is dropped.
    _guard: Arc<DropGuard>,
}

impl<T> FanReceiver<T> {
    pub(crate) fn mpsc(rx: mpsc::Receiver<T>, handle: FanHandle, guard: Arc<DropGuard>) -> Self {
        FanReceiver {
            chan: Chan::Mpsc(rx),
            handle,
            _guard: guard,
        }
    }

    pub(crate) fn chunks(
        rx: mpsc::Receiver<Vec<T>>,
        handle: FanHandle,
        guard: Arc<DropGuard>,
    ) -> Self {
        FanReceiver {
            chan: Chan::Chunks(ChunkRx::new(rx)),
            handle,
            _guard: guard,
        }
    }

    pub(crate) fn mpmc(
        rx: async_channel::Receiver<T>,
        handle: FanHandle,
        guard: Arc<DropGuard>,
    ) -> Self {
        FanReceiver {
            chan: Chan::Mpmc(Box::pin(rx)),
            handle,
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

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match &mut self.chan {
            Chan::Mpsc(rx) => rx.poll_recv(cx),
            Chan::Chunks(rx) => rx.poll_next(cx, |_| {}),
            Chan::Mpmc(rx) => rx.as_mut().poll_next(cx),
        }
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

    /// Drops this output and waits until every task has ended.
    ///
    /// For [`merge`] and [`merge_in_turn`] this cancels what is still running
    /// (drain the output first if you want every item). For the outputs of
    /// `distribute` and `broadcast`, the task ends only once every output is
    /// dropped or the input closes.
    ///
    /// # Errors
    ///
    /// [`FanError::Panicked`] when a task panicked.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the output is already dropped; the tasks go on ending.
    pub async fn join(self) -> Result<(), FanError> {
        let handle = self.handle.clone();
        drop(self);
        handle.join().await
    }
}

// Nothing in a `FanReceiver` is pinned in place (the async-channel receiver,
// which must be, is boxed).
impl<T> Unpin for FanReceiver<T> {}

impl<T> Stream for FanReceiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_item(cx)
    }
}

impl<T> fmt::Debug for FanReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.chan {
            Chan::Mpsc(_) => "mpsc",
            Chan::Chunks(_) => "mpsc (chunks)",
            Chan::Mpmc(_) => "mpmc",
        };
        f.debug_struct("FanReceiver")
            .field("channel", &kind)
            .field("handle", &self.handle)
            .finish()
    }
}
