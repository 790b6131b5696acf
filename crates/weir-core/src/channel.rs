//! The channels between stages, in one place.
//!
//! Every hop between two pipeline stages goes through this file: [`edge`]
//! makes one, [`EdgeTx`] and [`EdgeRx`] move items, [`close_and_drain`]
//! accounts for what is left when a reader stops. The channels themselves
//! are weir's one hand-off (the `weir-chan` crate); this file adds the
//! pipeline's stop signal ([`Halt`]) and its accounting ([`Delivery`]).
//!
//! **An edge read by one task** (a one-worker stage, the dispatcher of an
//! ordered stage, the output stream) is a [`chunked`] channel: the sending
//! worker collects items in a local chunk and sends it when it holds
//! `batch` items, or — so that nothing waits in a chunk while the pipeline
//! could move it — right before the worker itself would wait: for input,
//! for its work to finish, or for its end. Under load, the channel's
//! synchronisation (the part that bounces between cores) is paid once per
//! chunk; in an idle pipeline an item still travels alone at once.
//!
//! **An edge read by several workers** is a [`queue`], the one a pool's
//! workers share: each item goes to exactly one worker; under load a worker
//! takes a share of what is queued (at most `BATCH` items), and a worker
//! that finds the queue empty steals from a busy one's share, so a slow
//! item never holds others while a worker idles. A worker gives its share
//! back before it ends ([`EdgeRx::step_away`]).
//!
//! Both directions try without waiting first and only wait (against the stop
//! signal) when they must, so an item that can move at once costs no
//! cancellation bookkeeping. How the channels were chosen is in
//! `docs/benchmarks.md` (the channel sections).
//!
//! Bounds: an edge of `capacity` holds at most `capacity` items in the
//! channel, plus one chunk (at most `min(capacity, BATCH)` items) being
//! filled by each sending worker and one being read by the reader.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::task::ArcWake;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use weir_chan::chunk::{ChunkRx, ChunkTx, Flushed, chunked};
use weir_chan::lane::{LaneRx, LaneTx, TryRecvError, TrySendError, lane};
use weir_chan::queue::{Msg, QueueRx, QueueTx, TryPushError, queue};

/// A worker's sending half of an edge. Each clone has its own chunk.
#[derive(Debug)]
pub(crate) enum EdgeTx<T> {
    One(ChunkTx<T>),
    Many(QueueTx<T>),
    /// Single items to one reader, no chunk (`edge_of_items`).
    Items(LaneTx<T>),
}

impl<T> Clone for EdgeTx<T> {
    fn clone(&self) -> Self {
        match self {
            Self::One(tx) => Self::One(tx.clone()),
            Self::Many(tx) => Self::Many(tx.clone()),
            Self::Items(tx) => Self::Items(tx.clone()),
        }
    }
}

/// The receiving half of an edge, as one reader task holds it.
#[derive(Debug)]
pub(crate) enum EdgeRx<T> {
    One(ChunkRx<T>),
    Many(QueueRx<T>),
    Items(LaneRx<T>),
    /// The caller's own tokio receiver, read directly by the one task that
    /// reads the pipeline's source (`Pipeline::from_receiver`): no
    /// forwarding task, no extra hop.
    Direct(mpsc::Receiver<T>),
}

/// A new bounded edge for `capacity` items (`capacity > 0`), read by
/// `readers` tasks: one receiver for each.
pub(crate) fn edge<T>(capacity: usize, readers: usize) -> (EdgeTx<T>, Vec<EdgeRx<T>>) {
    if readers <= 1 {
        let (tx, rx) = chunked(capacity);
        (EdgeTx::One(tx), vec![EdgeRx::One(rx)])
    } else {
        let (tx, ctl) = queue(capacity, readers);
        let rxs = (0..readers).map(|_| EdgeRx::Many(ctl.receiver())).collect();
        (EdgeTx::Many(tx), rxs)
    }
}

/// A new bounded edge for single items (no chunks) with one reader.
pub(crate) fn edge_of_items<T>(capacity: usize) -> (EdgeTx<T>, Vec<EdgeRx<T>>) {
    let (tx, rx) = lane(capacity);
    (EdgeTx::Items(tx), vec![EdgeRx::Items(rx)])
}

/// What a send or a flush did, in items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// Items that reached the channel.
    pub(crate) sent: u64,
    /// Items dropped because the edge closed or the pipeline stopped.
    pub(crate) lost: u64,
    pub(crate) status: Sent,
}

impl Delivery {
    const NOTHING: Self = Self {
        sent: 0,
        lost: 0,
        status: Sent::Ok,
    };

    /// One item's send that ended with `status`.
    fn one(status: Sent) -> Self {
        let ok = u64::from(status == Sent::Ok);
        Self {
            sent: ok,
            lost: 1 - ok,
            status,
        }
    }

    fn lost(n: usize, status: Sent) -> Self {
        Self {
            sent: 0,
            lost: n as u64,
            status,
        }
    }
}

/// How a send that had to wait ended: `None` is a stop, `Err` a closed
/// channel.
fn sent<E>(waited: Option<Result<(), E>>) -> Sent {
    match waited {
        Some(Ok(())) => Sent::Ok,
        Some(Err(_)) => Sent::Closed,
        None => Sent::Stopped,
    }
}

/// How a send or flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Everything reached the channel (or waits in the chunk).
    Ok,
    /// The receiving side is gone; the items were dropped.
    Closed,
    /// The pipeline stopped first; the items were dropped.
    Stopped,
}

impl<T> EdgeTx<T> {
    /// Whether the receiving side is gone.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::One(tx) => tx.is_closed(),
            Self::Many(tx) => tx.is_closed(),
            Self::Items(tx) => tx.is_closed(),
        }
    }

    /// Items waiting in this sender's chunk.
    pub(crate) fn pending(&self) -> usize {
        match self {
            Self::One(tx) => tx.pending(),
            Self::Many(_) | Self::Items(_) => 0,
        }
    }

    /// Sends `item`: into the chunk (sent when full), or straight to the
    /// channel for a multi-reader edge; waits for room unless the pipeline
    /// stops first.
    pub(crate) async fn send(&mut self, item: T, halt: &mut Halt) -> Delivery {
        match self {
            Self::One(tx) => {
                if tx.push(item) {
                    self.flush(halt).await
                } else {
                    Delivery::NOTHING
                }
            }
            Self::Many(tx) => {
                let status = if halt.is_stopped() {
                    Sent::Stopped
                } else {
                    match tx.try_push(item) {
                        Ok(()) => Sent::Ok,
                        Err(TryPushError::Closed(_)) => Sent::Closed,
                        Err(TryPushError::Full(item)) => sent(halt.or_stop(tx.push(item)).await),
                    }
                };
                Delivery::one(status)
            }
            Self::Items(tx) => {
                let status = if halt.is_stopped() {
                    Sent::Stopped
                } else {
                    match tx.try_send(item) {
                        Ok(()) => Sent::Ok,
                        Err(TrySendError::Closed(_)) => Sent::Closed,
                        Err(TrySendError::Full(item)) => sent(halt.or_stop(tx.send(item)).await),
                    }
                };
                Delivery::one(status)
            }
        }
    }

    /// Sends this sender's chunk if that needs no waiting (the common case
    /// of [`flush`](Self::flush)): `None` when the channel is full; the
    /// chunk is kept.
    pub(crate) fn try_flush(&mut self, halt: &Halt) -> Option<Delivery> {
        let Self::One(tx) = self else {
            return Some(Delivery::NOTHING);
        };
        if tx.pending() == 0 {
            return Some(Delivery::NOTHING);
        }
        if halt.is_stopped() {
            return Some(Delivery::lost(tx.discard(), Sent::Stopped));
        }
        match tx.try_flush() {
            Flushed::Sent(n) => Some(Delivery {
                sent: n as u64,
                lost: 0,
                status: Sent::Ok,
            }),
            Flushed::Closed(n) => Some(Delivery::lost(n, Sent::Closed)),
            Flushed::Full => None,
        }
    }

    /// Sends this sender's chunk now, if it holds anything, waiting for room
    /// unless the pipeline stops first.
    pub(crate) async fn flush(&mut self, halt: &mut Halt) -> Delivery {
        match self.try_flush(halt) {
            Some(d) => d,
            None => self.flush_full(halt).await,
        }
    }

    /// The rest of [`flush`](Self::flush) once [`try_flush`](Self::try_flush)
    /// found the channel full: waits for room unless the pipeline stops.
    pub(crate) async fn flush_full(&mut self, halt: &mut Halt) -> Delivery {
        let Self::One(tx) = self else {
            return Delivery::NOTHING;
        };
        let n = tx.pending();
        // The chunk leaves the sender here, before the race: a stop that
        // wins without polling the send still finds it gone, so its items
        // are counted lost once (not again by `discard` at the task's end).
        match halt.or_stop(tx.send_chunk()).await {
            Some(Ok(sent)) => Delivery {
                sent: sent as u64,
                lost: 0,
                status: Sent::Ok,
            },
            Some(Err(lost)) => Delivery::lost(lost, Sent::Closed),
            None => Delivery::lost(n, Sent::Stopped),
        }
    }

    /// Drops what waits in the chunk, returning how many items that was.
    pub(crate) fn discard(&mut self) -> u64 {
        match self {
            Self::One(tx) => tx.discard() as u64,
            Self::Many(_) | Self::Items(_) => 0,
        }
    }
}

impl<T> EdgeRx<T> {
    /// The caller's receiver as an edge read by one task.
    pub(crate) fn direct(rx: mpsc::Receiver<T>) -> Self {
        Self::Direct(rx)
    }

    /// An item if one can be had without waiting; `Err(true)` when the edge
    /// is closed and empty, `Err(false)` when it is just empty for now.
    pub(crate) fn try_recv(&mut self) -> Result<T, bool> {
        match self {
            Self::One(rx) => rx.try_recv().map_err(|e| e == TryRecvError::Disconnected),
            // Whether the queue ended is for `recv_wait` to find out: it
            // looks at the other workers' shares first.
            Self::Many(rx) => take_shared(rx).ok_or(false),
            Self::Items(rx) => rx.try_recv().map_err(|e| e == TryRecvError::Disconnected),
            Self::Direct(rx) => match rx.try_recv() {
                Ok(item) => Ok(item),
                Err(mpsc::error::TryRecvError::Empty) => Err(false),
                Err(mpsc::error::TryRecvError::Disconnected) => Err(true),
            },
        }
    }

    /// Waits for the next item; `None` when closed and empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match self {
            Self::One(rx) => rx.poll_recv(cx),
            Self::Many(rx) => poll_shared(rx, cx),
            Self::Items(rx) => rx.poll_recv(cx),
            Self::Direct(rx) => rx.poll_recv(cx),
        }
    }

    /// Gives back what this reader took from a shared queue and has not
    /// started; a no-op for an edge with one reader. A worker calls it
    /// before it ends, so that the stage's last task finds every item
    /// left when it drains the edge.
    pub(crate) fn step_away(&mut self) {
        if let Self::Many(rx) = self {
            rx.step_away();
        }
    }

    /// Whether every sender is gone and nothing is left to read.
    pub(crate) fn is_finished(&self) -> bool {
        match self {
            Self::One(rx) => rx.is_finished(),
            Self::Many(rx) => rx.is_drained(),
            Self::Items(rx) => rx.is_closed() && rx.is_empty(),
            Self::Direct(rx) => rx.is_closed() && rx.is_empty(),
        }
    }

    /// Items in the chunk being read (one reader) or in the channel (many).
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::One(rx) => rx.in_hand(),
            Self::Many(rx) => rx.len(),
            Self::Items(rx) => rx.len(),
            Self::Direct(rx) => rx.len(),
        }
    }
}

/// [`EdgeRx::try_recv`] on a shared queue. Out of line, so that the
/// one-reader path, which an idle pipeline's latency is made of, stays small.
#[inline(never)]
fn take_shared<T>(rx: &mut QueueRx<T>) -> Option<T> {
    rx.try_take()
}

/// [`EdgeRx::poll_recv`] on a shared queue; out of line as [`take_shared`].
#[inline(never)]
fn poll_shared<T>(rx: &mut QueueRx<T>, cx: &mut Context<'_>) -> Poll<Option<T>> {
    loop {
        // No kicks on a pipeline's queue; a `Wake` is looked past.
        match std::task::ready!(rx.poll_pop(cx)) {
            Some(Msg::Item(item)) => return Poll::Ready(Some(item)),
            Some(Msg::Wake) => {}
            None => return Poll::Ready(None),
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

/// Waits for the next item unless the pipeline stops first.
pub(crate) async fn recv_wait<T>(rx: &mut EdgeRx<T>, halt: &mut Halt) -> Recv<T> {
    if let EdgeRx::Many(rx) = rx {
        // The pop future leaves the sleepers if the stop wins.
        loop {
            return match halt.or_stop(rx.pop()).await {
                Some(Some(Msg::Item(item))) => Recv::Item(item),
                Some(Some(Msg::Wake)) => continue,
                Some(None) => Recv::Closed,
                None => Recv::Stopped,
            };
        }
    }
    match halt
        .or_stop(std::future::poll_fn(|cx| rx.poll_recv(cx)))
        .await
    {
        Some(Some(item)) => Recv::Item(item),
        Some(None) => Recv::Closed,
        None => Recv::Stopped,
    }
}

/// Closes the edge so no more items can be sent on it, then takes and drops
/// what is still buffered, returning how many items that was.
pub(crate) fn close_and_drain<T>(rx: &mut EdgeRx<T>) -> u64 {
    let mut n = 0;
    close_and_drain_each(rx, |_| n += 1);
    n
}

/// Closes the edge, then hands each item still buffered to `f`.
pub(crate) fn close_and_drain_each<T>(rx: &mut EdgeRx<T>, mut f: impl FnMut(T)) {
    match rx {
        EdgeRx::One(rx) => rx.close_and_drain_each(f),
        EdgeRx::Many(rx) => {
            rx.close();
            while let Some(item) = rx.try_pop() {
                f(item);
            }
        }
        EdgeRx::Items(rx) => rx.close_and_take().into_iter().for_each(f),
        EdgeRx::Direct(rx) => {
            rx.close();
            while let Ok(item) = rx.try_recv() {
                f(item);
            }
        }
    }
}

/// One task's view of a stop signal: a registration on the token whose
/// waker sets a flag and wakes the task.
///
/// Waiting on `CancellationToken::cancelled()` takes the token's mutex on
/// every poll; a task that parks once per item would take it once per item.
/// A `Halt` registers on the token once, when it is made; after that,
/// checking costs an atomic load and parking an `AtomicWaker` registration.
pub(crate) struct Halt {
    stop: Arc<TaskStop>,
    /// Keeps the registration on the token alive.
    _registration: Pin<Box<WaitForCancellationFutureOwned>>,
}

#[derive(Debug, Default)]
struct TaskStop {
    stopped: AtomicBool,
    task: futures::task::AtomicWaker,
}

impl ArcWake for TaskStop {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.stopped.store(true, Ordering::Release);
        arc_self.task.wake();
    }
}

impl fmt::Debug for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Halt")
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Halt {
    /// Registers on `token`.
    pub(crate) fn new(token: &CancellationToken) -> Self {
        let stop = Arc::new(TaskStop::default());
        let mut registration = Box::pin(token.clone().cancelled_owned());
        let waker = futures::task::waker(Arc::clone(&stop));
        if registration
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            stop.stopped.store(true, Ordering::Release);
        }
        Self {
            stop,
            _registration: registration,
        }
    }

    /// Whether the token has been cancelled.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stop.stopped.load(Ordering::Acquire)
    }

    /// Runs `fut` unless the token is cancelled first; `None` means it was
    /// and `fut` was dropped.
    ///
    /// The flag is checked first and `fut` polled before anything else, so
    /// work that is ready at once costs one atomic load.
    pub(crate) async fn or_stop<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        let stop = &self.stop;
        std::future::poll_fn(move |cx| {
            if stop.stopped.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            stop.task.register(cx.waker());
            // Cancelled between the first check and the registration?
            if stop.stopped.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn one_reader(capacity: usize) -> (EdgeTx<u32>, EdgeRx<u32>) {
        let (tx, mut rxs) = edge(capacity, 1);
        (tx, rxs.pop().unwrap())
    }

    fn stash(tx: &mut EdgeTx<u32>, item: u32) {
        let EdgeTx::One(tx) = tx else {
            panic!("a one-reader edge is chunked")
        };
        tx.push(item);
    }

    #[test]
    fn lone_items_and_chunks_arrive_in_order_and_drain_counts_both() {
        let token = CancellationToken::new();
        let halt = Halt::new(&token);
        let (mut tx, mut rx) = one_reader(1024);
        // A lone item goes out as itself and the sender keeps its buffer.
        stash(&mut tx, 0);
        assert_eq!(tx.try_flush(&halt).unwrap().sent, 1);
        assert_eq!(tx.pending(), 0);
        // Then a chunk, then a lone item again.
        for i in 1..4 {
            stash(&mut tx, i);
        }
        assert_eq!(tx.try_flush(&halt).unwrap().sent, 3);
        stash(&mut tx, 4);
        assert_eq!(tx.try_flush(&halt).unwrap().sent, 1);
        assert_eq!(rx.try_recv(), Ok(0));
        assert_eq!(rx.try_recv(), Ok(1));
        stash(&mut tx, 5);
        assert_eq!(tx.try_flush(&halt).unwrap().sent, 1);
        // Left: 2 and 3 in the reader's chunk, 4 and 5 as lone packets.
        assert_eq!(close_and_drain(&mut rx), 4);
    }

    #[test]
    fn try_flush_on_a_full_edge_keeps_the_chunk_for_flush() {
        let token = CancellationToken::new();
        let mut halt = Halt::new(&token);
        // Capacity 2 with chunks of 2: one item in the channel leaves no
        // room for a chunk of two.
        let (mut tx, mut rx) = one_reader(2);
        stash(&mut tx, 1);
        assert_eq!(tx.try_flush(&halt).unwrap().sent, 1);
        stash(&mut tx, 2);
        stash(&mut tx, 3);
        assert!(tx.try_flush(&halt).is_none(), "full: nothing sent or lost");
        assert_eq!(tx.pending(), 2);
        assert_eq!(rx.try_recv(), Ok(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let d = rt.block_on(tx.flush(&mut halt));
        assert_eq!((d.sent, d.lost, d.status), (2, 0, Sent::Ok));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
    }

    #[test]
    fn try_flush_after_a_stop_or_a_gone_reader_counts_the_chunk_as_lost() {
        let token = CancellationToken::new();
        let halt = Halt::new(&token);
        let (mut tx, rx) = one_reader(8);
        stash(&mut tx, 1);
        stash(&mut tx, 2);
        token.cancel();
        let d = tx.try_flush(&halt).unwrap();
        assert_eq!((d.sent, d.lost, d.status), (0, 2, Sent::Stopped));
        assert_eq!(tx.pending(), 0);

        let token = CancellationToken::new();
        let halt = Halt::new(&token);
        drop(rx);
        stash(&mut tx, 3);
        let d = tx.try_flush(&halt).unwrap();
        assert_eq!((d.sent, d.lost, d.status), (0, 1, Sent::Closed));
    }

    /// A stop that wins the race with a full edge's send, without the send
    /// ever being polled: the chunk's items are lost once, and the chunk is
    /// empty afterwards, so the task's end does not count them again.
    #[test]
    fn a_stop_before_a_full_flush_is_polled_counts_the_chunk_lost_once() {
        let token = CancellationToken::new();
        let mut halt = Halt::new(&token);
        let (mut tx, _rx) = one_reader(2);
        stash(&mut tx, 1);
        stash(&mut tx, 2);
        assert_eq!(tx.try_flush(&halt).unwrap().sent, 2);
        stash(&mut tx, 3);
        stash(&mut tx, 4);
        assert!(tx.try_flush(&halt).is_none(), "full");
        token.cancel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let d = rt.block_on(tx.flush_full(&mut halt));
        assert_eq!((d.sent, d.lost, d.status), (0, 2, Sent::Stopped));
        assert_eq!(tx.pending(), 0);
        assert_eq!(tx.discard(), 0, "not counted a second time");
    }
}
