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

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::task::ArcWake;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The sending half of an edge.
pub(crate) type EdgeTx<T> = async_channel::Sender<T>;
/// The receiving half of an edge.
pub(crate) type EdgeRx<T> = async_channel::Receiver<T>;

/// A new bounded edge holding at most `capacity` items (`capacity > 0`).
pub(crate) fn edge<T>(capacity: usize) -> (EdgeTx<T>, EdgeRx<T>) {
    async_channel::bounded(capacity)
}

/// A pipeline's stop signal as a plain flag.
///
/// `CancellationToken::is_cancelled` takes a mutex shared by every clone of
/// the token, and so does every poll of its `cancelled()` future; checking it
/// on every hop would make all workers of a pipeline contend on one lock. So
/// the pipeline registers one wait on its token, whose waker does nothing
/// but set this flag: the token's cancellation sets it synchronously, and the
/// hot path reads an atomic.
pub(crate) struct StopSignal {
    flag: Arc<StopFlag>,
    /// Keeps the flag's registration on the token alive.
    _registration: Mutex<Pin<Box<WaitForCancellationFutureOwned>>>,
    token: CancellationToken,
}

#[derive(Debug, Default)]
struct StopFlag(AtomicBool);

impl ArcWake for StopFlag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::Release);
    }
}

impl StopSignal {
    pub(crate) fn new(token: &CancellationToken) -> Self {
        let flag = Arc::new(StopFlag::default());
        let mut registration = Box::pin(token.clone().cancelled_owned());
        let waker = futures::task::waker(Arc::clone(&flag));
        if registration
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker))
            .is_ready()
        {
            flag.0.store(true, Ordering::Release);
        }
        Self {
            flag,
            _registration: Mutex::new(registration),
            token: token.clone(),
        }
    }

    /// Whether the token has been cancelled.
    pub(crate) fn is_stopped(&self) -> bool {
        self.flag.0.load(Ordering::Acquire)
    }

    /// A worker's own view of the signal.
    pub(crate) fn halt(&self) -> Halt {
        Halt {
            flag: Arc::clone(&self.flag),
            wait: Box::pin(self.token.clone().cancelled_owned()),
        }
    }
}

impl fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopSignal")
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

/// A worker's view of the pipeline's stop signal: the shared flag plus one
/// registered wait on the token, reused for every wait the worker makes.
pub(crate) struct Halt {
    flag: Arc<StopFlag>,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl fmt::Debug for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Halt")
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Halt {
    /// Whether the pipeline has been told to stop.
    pub(crate) fn is_stopped(&self) -> bool {
        self.flag.0.load(Ordering::Acquire)
    }

    /// Runs `fut` unless the pipeline stops first; `None` means it stopped
    /// and `fut` was dropped.
    ///
    /// The flag is checked first and `fut` polled before the token, so work
    /// that is ready at once never touches the token's lock.
    pub(crate) async fn or_stop<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        let flag = &self.flag;
        let wait = &mut self.wait;
        std::future::poll_fn(move |cx| {
            if flag.0.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            match wait.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
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
