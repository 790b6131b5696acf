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
//! [`FanReceiver`]s sharing one [`FanHandle`]. Settings (token, capacity) come
//! from [`Fan`]; the free functions use [`DEFAULT_CAPACITY`](crate::merge::DEFAULT_CAPACITY).
//!
//! # What happens when
//!
//! - **The input closes:** every output closes after its buffered items.
//! - **Token cancelled:** the task stops at its next `.await`; outputs close
//!   after the items already buffered. An item pulled from the input but not
//!   yet handed on is dropped.
//! - **An output is dropped:** `distribute` — the others take the remaining
//!   items, nothing is lost; `broadcast` — that output leaves the set (a warn
//!   event), the others go on. When **every** output is dropped the task is
//!   cancelled at once, even if the input is idle.
//! - **The input panics** (or, in `broadcast`, an item's `Clone`): the task
//!   ends, the outputs close, an error event is logged and
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
//! let outs = weir_core::fan_out::broadcast(stream::iter(1..=3), 2, &token)?;
//! for out in outs {
//!     assert_eq!(out.collect_all().await, [1, 2, 3]);
//! }
//! # Ok(())
//! # }
//! ```

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::merge::Core;
pub use crate::merge::{Fan, FanError, FanHandle, FanReceiver};

impl Fan {
    /// Shares the items of `input` among `n` outputs; see [`distribute`].
    ///
    /// # Errors
    ///
    /// [`FanError::ZeroOutputs`] when `n` is 0.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (it spawns a task).
    pub fn distribute<S>(&self, input: S, n: usize) -> Result<Vec<FanReceiver<S::Item>>, FanError>
    where
        S: Stream + Send + Unpin + 'static,
        S::Item: Send + 'static,
    {
        if n == 0 {
            return Err(FanError::ZeroOutputs);
        }
        let (tx, rx) = async_channel::bounded(self.capacity);
        let core = Core::new(&self.token);
        let mut input = input;
        core.spawn(
            0,
            tracing::debug_span!("distribute", outputs = n),
            async move {
                while let Some(item) = input.next().await {
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
                tracing::debug!("input closed");
            },
        );
        core.finish();
        Ok((0..n)
            .map(|_| FanReceiver::mpmc(rx.clone(), core.handle.clone(), core.guard.clone()))
            .collect())
    }

    /// Copies every item of `input` to `n` outputs; see [`broadcast`].
    ///
    /// # Errors
    ///
    /// [`FanError::ZeroOutputs`] when `n` is 0.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime (it spawns a task).
    pub fn broadcast<S>(&self, input: S, n: usize) -> Result<Vec<FanReceiver<S::Item>>, FanError>
    where
        S: Stream + Send + Unpin + 'static,
        S::Item: Clone + Send + 'static,
    {
        if n == 0 {
            return Err(FanError::ZeroOutputs);
        }
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..n).map(|_| mpsc::channel(self.capacity)).unzip();
        let core = Core::new(&self.token);
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
                                tracing::warn!(
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
        core.finish();
        Ok(receivers
            .into_iter()
            .map(|rx| FanReceiver::mpsc(rx, core.handle.clone(), core.guard.clone()))
            .collect())
    }
}

/// Shares the items of `input` among `n` outputs: each item goes to exactly
/// one output, whichever asks first.
///
/// The outputs share one bounded channel ([`DEFAULT_CAPACITY`] items; set
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
/// use tokio_util::sync::CancellationToken;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), weir_core::merge::FanError> {
/// let token = CancellationToken::new();
/// let outs = weir_core::fan_out::distribute(stream::iter(0..100), 4, &token)?;
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
/// [`FanError::ZeroOutputs`] when `n` is 0.
///
/// # Panics
///
/// When called outside a tokio runtime (it spawns a task).
///
/// [`DEFAULT_CAPACITY`]: crate::merge::DEFAULT_CAPACITY
pub fn distribute<S>(
    input: S,
    n: usize,
    token: &CancellationToken,
) -> Result<Vec<FanReceiver<S::Item>>, FanError>
where
    S: Stream + Send + Unpin + 'static,
    S::Item: Send + 'static,
{
    Fan::new(token).distribute(input, n)
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
/// [`FanError::ZeroOutputs`] when `n` is 0.
///
/// # Panics
///
/// When called outside a tokio runtime (it spawns a task).
///
/// [`DEFAULT_CAPACITY`]: crate::merge::DEFAULT_CAPACITY
pub fn broadcast<S>(
    input: S,
    n: usize,
    token: &CancellationToken,
) -> Result<Vec<FanReceiver<S::Item>>, FanError>
where
    S: Stream + Send + Unpin + 'static,
    S::Item: Clone + Send + 'static,
{
    Fan::new(token).broadcast(input, n)
}
