//! The channels between stages, in one place.
//!
//! Every hop between two pipeline stages goes through [`edge`], [`recv`],
//! [`send`] and [`close_and_drain`]; nothing else in the crate touches the
//! channel type directly, so changing how items move (batching, another
//! channel crate) is a change to this file alone.
//!
//! An edge is a bounded multi-producer multi-consumer channel
//! (`async-channel`): a stage with several workers shares one receiver
//! without a lock, and each item goes to exactly one worker, whichever asks
//! first.
//!
//! Both directions try the channel without waiting first and only fall back
//! to a `select!` against the stop signal when they would have to wait, so an
//! item that can move at once costs one channel operation and no
//! cancellation-token bookkeeping.

use std::future::Future;
use std::pin::Pin;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The sending half of an edge.
pub(crate) type EdgeTx<T> = async_channel::Sender<T>;
/// The receiving half of an edge.
pub(crate) type EdgeRx<T> = async_channel::Receiver<T>;

/// A new bounded edge holding at most `capacity` items (`capacity > 0`).
pub(crate) fn edge<T>(capacity: usize) -> (EdgeTx<T>, EdgeRx<T>) {
    async_channel::bounded(capacity)
}

/// A worker's view of the pipeline's stop signal: the token plus one
/// registered wait on it, reused for every `select!` the worker makes.
#[derive(Debug)]
pub(crate) struct Halt {
    token: CancellationToken,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Halt {
    pub(crate) fn new(token: &CancellationToken) -> Self {
        Self {
            token: token.clone(),
            wait: Box::pin(token.clone().cancelled_owned()),
        }
    }

    /// Whether the pipeline has been told to stop.
    pub(crate) fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Runs `fut` unless the pipeline stops first; `None` means it stopped
    /// and `fut` was dropped.
    pub(crate) async fn or_stop<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            _ = self.wait.as_mut() => None,
            out = fut => Some(out),
        }
    }
}

/// What a receive produced.
#[derive(Debug)]
pub(crate) enum Recv<T> {
    /// An item.
    Item(T),
    /// Every sender is gone and the edge is empty: the upstream finished.
    Closed,
    /// The pipeline stopped first.
    Stopped,
}

/// Receives the next item, or reports why there is none.
pub(crate) async fn recv<T>(rx: &EdgeRx<T>, halt: &mut Halt) -> Recv<T> {
    if halt.is_stopped() {
        return Recv::Stopped;
    }
    match rx.try_recv() {
        Ok(item) => return Recv::Item(item),
        Err(async_channel::TryRecvError::Closed) => return Recv::Closed,
        Err(async_channel::TryRecvError::Empty) => {}
    }
    match halt.or_stop(rx.recv()).await {
        Some(Ok(item)) => Recv::Item(item),
        Some(Err(_)) => Recv::Closed,
        None => Recv::Stopped,
    }
}

/// What a send did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The item is on the edge.
    Ok,
    /// The receiving side is gone; the item was dropped.
    Closed,
    /// The pipeline stopped first; the item was dropped.
    Stopped,
}

/// Sends `item`, waiting for room unless the pipeline stops first.
pub(crate) async fn send<T>(tx: &EdgeTx<T>, item: T, halt: &mut Halt) -> Sent {
    if halt.is_stopped() {
        return Sent::Stopped;
    }
    let item = match tx.try_send(item) {
        Ok(()) => return Sent::Ok,
        Err(async_channel::TrySendError::Closed(_)) => return Sent::Closed,
        Err(async_channel::TrySendError::Full(item)) => item,
    };
    match halt.or_stop(tx.send(item)).await {
        Some(Ok(())) => Sent::Ok,
        Some(Err(_)) => Sent::Closed,
        None => Sent::Stopped,
    }
}

/// Closes the edge so no more items can be sent on it, then takes and drops
/// what is still buffered, returning how many items that was.
pub(crate) fn close_and_drain<T>(rx: &EdgeRx<T>) -> u64 {
    rx.close();
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    n
}
