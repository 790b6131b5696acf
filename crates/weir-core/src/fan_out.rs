//! Fan-out: one input to many outputs.
//!
//! - [`distribute`] shares the work: each item goes to exactly one of `n`
//!   outputs, whichever asks first. A slow consumer takes fewer items; it does
//!   not stall the others (not blind round robin).
//! - [`broadcast`] copies: each item goes to every output, in order. The
//!   slowest consumer sets the pace (each output holds at most the channel
//!   capacity); an output that is dropped leaves the set and the others go on.
//!
//! Both spawn one task that reads the input and return `n`
//! [`FanReceiver`]s sharing one [`FanHandle`]. Settings (context, capacity)
//! come from [`Fan`]; the free functions use
//! [`DEFAULT_CAPACITY`](crate::DEFAULT_CAPACITY).
//!
//! # What happens when
//!
//! - **The input closes:** every output closes after its buffered items.
//! - **Cancelled** ([`FanHandle::cancel`] or the context given to
//!   [`Fan::context`]): the task stops at its next `.await`; outputs close
//!   after the items already buffered. An item pulled from the input but not
//!   yet handed on is dropped. `join` returns [`FanError::Stopped`].
//! - **An output is dropped:** `distribute` — the others take the remaining
//!   items, nothing is lost; `broadcast` — that output leaves the set (a
//!   debug event), the others go on. When **every** output is dropped the
//!   task is cancelled at once, even if the input is idle.
//! - **The input panics** (or, in `broadcast`, an item's `Clone`): the task
//!   ends, the outputs close and `join` returns [`FanError::Panicked`].
//! - **Settings:** 0 outputs or more than
//!   [`MAX_WORKERS`](crate::MAX_WORKERS), a zero capacity, or a call outside
//!   a tokio runtime are a [`ConfigError`].
//!
//! # Examples
//!
//! ```
//! use futures::stream;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let outs = weir_core::broadcast(stream::iter(1..=3), 2)?;
//! for out in outs {
//!     assert_eq!(out.collect_all().await, [1, 2, 3]);
//! }
//! # Ok(())
//! # }
//! ```

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use weir_chan::queue::queue_unshared;
use weir_context::__private::check_workers;
use weir_context::ConfigError;

use crate::merge::Chan;
pub use crate::merge::{Fan, FanError, FanHandle, FanReceiver, FanReport};

impl Fan {
    /// Shares the items of `input` among `n` outputs; see [`distribute`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for 0 or more than [`MAX_WORKERS`](crate::MAX_WORKERS)
    /// outputs, a zero capacity, or outside a tokio runtime.
    #[track_caller]
    pub fn distribute<S>(
        &self,
        input: S,
        n: usize,
    ) -> Result<Vec<FanReceiver<S::Item>>, ConfigError>
    where
        S: Stream + Send + Unpin + 'static,
        S::Item: Send + 'static,
    {
        let n = check_workers("distribute", "outputs", n)?;
        let (capacity, core) = self.start("distribute")?;
        // One item per take: an output is the user's stream, which cannot
        // hand back a share it is not reading.
        let (tx, outputs) = queue_unshared(capacity);
        let mut input = input;
        core.spawn(
            0,
            tracing::debug_span!("distribute", outputs = n),
            async move {
                while let Some(item) = input.next().await {
                    if tx.push(item).await.is_err() {
                        return;
                    }
                }
                tracing::debug!("input closed");
            },
        );
        Ok(core.finish(|handle| {
            FanReceiver::many((0..n).map(|_| Chan::Shared(outputs.receiver())), &handle)
        }))
    }

    /// Copies every item of `input` to `n` outputs; see [`broadcast`].
    ///
    /// # Errors
    ///
    /// As [`Fan::distribute`].
    #[track_caller]
    pub fn broadcast<S>(&self, input: S, n: usize) -> Result<Vec<FanReceiver<S::Item>>, ConfigError>
    where
        S: Stream + Send + Unpin + 'static,
        S::Item: Clone + Send + 'static,
    {
        let n = check_workers("broadcast", "outputs", n)?;
        let (capacity, core) = self.start("broadcast")?;
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..n).map(|_| mpsc::channel(capacity)).unzip();
        let mut input = input;
        core.spawn(
            0,
            tracing::debug_span!("broadcast", outputs = n),
            async move {
                // (output index, sender) of the outputs still in the set.
                let mut live: Vec<(usize, mpsc::Sender<S::Item>)> =
                    senders.into_iter().enumerate().collect();
                while let Some(item) = input.next().await {
                    // Send in turn: this takes as long as the slowest output
                    // either way, since the outputs drain concurrently. The last
                    // live output gets the item itself (one clone fewer); a failed
                    // send hands the value back.
                    let mut item = Some(item);
                    let mut at = 0;
                    while at < live.len() {
                        let Some(value) = item.take() else { break };
                        let (to_send, keep) = if at + 1 == live.len() {
                            (value, None)
                        } else {
                            (value.clone(), Some(value))
                        };
                        match live[at].1.send(to_send).await {
                            Ok(()) => {
                                item = keep;
                                at += 1;
                            }
                            Err(mpsc::error::SendError(back)) => {
                                let (index, _) = live.remove(at);
                                tracing::debug!(
                                    output = index,
                                    "output dropped, leaves the broadcast"
                                );
                                item = Some(keep.unwrap_or(back));
                            }
                        }
                    }
                    if live.is_empty() {
                        tracing::debug!("every output dropped");
                        return;
                    }
                }
                tracing::debug!("input closed");
            },
        );
        Ok(core.finish(|handle| FanReceiver::many(receivers.into_iter().map(Chan::Mpsc), &handle)))
    }
}

/// Shares the items of `input` among `n` outputs: each item goes to exactly
/// one output, whichever asks first.
///
/// The outputs share one bounded queue ([`DEFAULT_CAPACITY`] items; set
/// another with [`Fan::capacity`]), so an item waits for any free consumer: a
/// slow consumer takes fewer items and never holds back the others. Dropping
/// some outputs loses nothing (the others take the remaining items); dropping
/// all of them stops the task. See the [module docs](self) for cancellation and
/// panics.
///
/// This is the channel-shared-by-workers shape of Go (several goroutines
/// reading one channel). For a long-lived set of workers with results and
/// stats, see [`crate::pool`].
///
/// # Examples
///
/// ```
/// use futures::stream;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let outs = weir_core::distribute(stream::iter(0..100), 4)?;
/// let mut workers = Vec::new();
/// for out in outs {
///     workers.push(tokio::spawn(out.collect_all()));
/// }
/// let mut total = 0;
/// for w in workers {
///     total += w.await.map_or(0, |items| items.len());
/// }
/// assert_eq!(total, 100); // each item exactly once
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// A [`ConfigError`] for 0 or more than [`MAX_WORKERS`](crate::MAX_WORKERS)
/// outputs, or outside a tokio runtime.
///
/// [`DEFAULT_CAPACITY`]: crate::DEFAULT_CAPACITY
#[track_caller]
pub fn distribute<S>(input: S, n: usize) -> Result<Vec<FanReceiver<S::Item>>, ConfigError>
where
    S: Stream + Send + Unpin + 'static,
    S::Item: Send + 'static,
{
    Fan::new().distribute(input, n)
}

/// Copies every item of `input` to each of `n` outputs, in order.
///
/// Each output has its own bounded channel ([`DEFAULT_CAPACITY`] items; set
/// another with [`Fan::capacity`]); the task hands an item to every output
/// before taking the next one, so the slowest consumer sets the pace and no
/// output falls more than the capacity behind. An output that is dropped
/// leaves the set (a warn event) and the others go on; when all are dropped
/// the task stops. See the [module docs](self) for cancellation and panics.
///
/// Unlike `tokio::sync::broadcast`, no consumer ever misses an item
/// (no `Lagged`): a slow one slows the others down instead.
///
/// # Examples
///
/// See the [module docs](self).
///
/// # Errors
///
/// As [`distribute`].
///
/// [`DEFAULT_CAPACITY`]: crate::DEFAULT_CAPACITY
#[track_caller]
pub fn broadcast<S>(input: S, n: usize) -> Result<Vec<FanReceiver<S::Item>>, ConfigError>
where
    S: Stream + Send + Unpin + 'static,
    S::Item: Clone + Send + 'static,
{
    Fan::new().broadcast(input, n)
}
