//! The channels between stages, in one place.
//!
//! Every hop between two pipeline stages goes through this file: [`edge`]
//! makes one, [`EdgeTx`] and [`EdgeRx`] move items, [`close_and_drain`]
//! accounts for what is left when a reader stops. Changing how items move is
//! a change to this file alone.
//!
//! **An edge read by one task** (a one-worker stage, the dispatcher of an
//! ordered stage, the output stream) carries *chunks*: the sending worker
//! collects items in a local chunk and sends it when it holds `batch` items,
//! or — so that nothing waits in a chunk while the pipeline could move it —
//! right before the worker itself would wait: for input, for its work to
//! finish, or for its end. Under load, the channel's synchronisation (the
//! part that bounces between cores) is paid once per chunk; in an idle
//! pipeline an item still travels alone at once. The reader takes a whole
//! chunk at a time.
//!
//! **An edge read by several workers** carries single items on a
//! multi-consumer channel (`async-channel`), so each item goes to exactly one
//! worker, whichever asks first: a chunk of slow items must not land on one
//! worker while the others idle.
//!
//! Both directions try without waiting first and only wait (against the stop
//! signal) when they must, so an item that can move at once costs no
//! cancellation bookkeeping.
//!
//! How the channel was chosen (callgrind, 200k items through
//! generate -> map -> sum on a current-thread runtime, instructions per
//! item): async-channel on every edge 1287, 41% of it in its listener
//! notification; the same pipeline hand-written with tokio mpsc 930; tokio
//! mpsc per item with batched receive 737; chunked edges: see
//! `docs/benchmarks.md` (the channel section). The chunks first travelled
//! on tokio's bounded `mpsc`; they now travel on a [`lane`](crate::lane),
//! a `VecDeque` behind a lock. On a one-stage pipeline's idle round trip
//! (one packet each) that is 2700 -> 2520 instructions and 241 -> 199 ns
//! on one thread, and 1.20× -> 1.09× the hand-written hop on two (under
//! load a packet holds a whole chunk, so there it hardly matters).
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

use crate::lane::{LaneRx, LaneTx, TryRecvError, TrySendError, lane};

/// Most items in one chunk.
pub(crate) const BATCH: usize = 32;

/// What one send on a chunked edge carries: a chunk, or a lone item (what
/// an idle pipeline sends: no chunk to allocate, and the sender keeps its
/// chunk's buffer).
#[derive(Debug)]
pub(crate) enum Packet<T> {
    One(T),
    Many(Vec<T>),
}

/// A worker's sending half of an edge. Each clone has its own chunk.
#[derive(Debug)]
pub(crate) enum EdgeTx<T> {
    One {
        tx: LaneTx<Packet<T>>,
        /// The chunk being filled.
        chunk: Vec<T>,
        batch: usize,
    },
    Many(async_channel::Sender<T>),
}

impl<T> Clone for EdgeTx<T> {
    fn clone(&self) -> Self {
        match self {
            Self::One { tx, batch, .. } => Self::One {
                tx: tx.clone(),
                chunk: Vec::new(),
                batch: *batch,
            },
            Self::Many(tx) => Self::Many(tx.clone()),
        }
    }
}

/// The receiving half of an edge, as one reader task holds it.
#[derive(Debug)]
pub(crate) enum EdgeRx<T> {
    One {
        rx: LaneRx<Packet<T>>,
        /// The chunk being read, in reverse order (the next item is last).
        chunk: Vec<T>,
    },
    /// Boxed: async-channel's receiver is not `Unpin`.
    Many(Pin<Box<async_channel::Receiver<T>>>),
    /// The caller's own tokio receiver, read directly by the one task that
    /// reads the pipeline's source (`Pipeline::from_receiver`): no
    /// forwarding task, no extra hop.
    Direct(mpsc::Receiver<T>),
}

// Never pinned in place; the async-channel receiver, which must be, is boxed.
impl<T> Unpin for EdgeRx<T> {}

/// A new bounded edge for `capacity` items (`capacity > 0`), read by
/// `readers` tasks: one receiver for each.
pub(crate) fn edge<T>(capacity: usize, readers: usize) -> (EdgeTx<T>, Vec<EdgeRx<T>>) {
    if readers <= 1 {
        let batch = capacity.clamp(1, BATCH);
        let (tx, rx) = lane((capacity / batch).max(1));
        let tx = EdgeTx::One {
            tx,
            chunk: Vec::new(),
            batch,
        };
        let rx = EdgeRx::One {
            rx,
            chunk: Vec::new(),
        };
        (tx, vec![rx])
    } else {
        let (tx, rx) = async_channel::bounded(capacity);
        let rxs = (0..readers)
            .map(|_| EdgeRx::Many(Box::pin(rx.clone())))
            .collect();
        (EdgeTx::Many(tx), rxs)
    }
}

/// The reading end of a channel of chunks, handing out one item at a time:
/// the output of `merge` and the pool's results stream. (A pipeline edge
/// keeps its own chunk, see [`EdgeRx`], because it also drains and closes.)
#[derive(Debug)]
pub(crate) struct ChunkRx<T> {
    rx: mpsc::Receiver<Vec<T>>,
    /// The chunk being read.
    chunk: std::vec::IntoIter<T>,
}

impl<T> ChunkRx<T> {
    pub(crate) fn new(rx: mpsc::Receiver<Vec<T>>) -> Self {
        Self {
            rx,
            chunk: Vec::new().into_iter(),
        }
    }

    /// The next item; `None` once every sender is gone and all was read.
    /// `on_chunk` is told the length of each chunk taken off the channel.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        mut on_chunk: impl FnMut(usize),
    ) -> Poll<Option<T>> {
        loop {
            if let Some(item) = self.chunk.next() {
                return Poll::Ready(Some(item));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => {
                    on_chunk(chunk.len());
                    self.chunk = chunk.into_iter();
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Items of the chunk being read that were not handed out yet.
    pub(crate) fn in_hand(&self) -> usize {
        self.chunk.len()
    }
}

/// A new bounded edge for single items (no chunks) with one reader.
pub(crate) fn edge_of_items<T>(capacity: usize) -> (EdgeTx<T>, Vec<EdgeRx<T>>) {
    let (tx, rx) = async_channel::bounded(capacity);
    (EdgeTx::Many(tx), vec![EdgeRx::Many(Box::pin(rx))])
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

/// Takes what `chunk` holds (at least one item) as a packet: a lone item
/// keeps the chunk's buffer for the next ones; a chunk takes the buffer
/// with it, and the next push allocates a fresh one (see
/// [`EdgeTx::send`]), outside the lane's lock.
fn packet<T>(chunk: &mut Vec<T>) -> Packet<T> {
    if chunk.len() == 1
        && let Some(item) = chunk.pop()
    {
        return Packet::One(item);
    }
    Packet::Many(std::mem::take(chunk))
}

impl<T> EdgeTx<T> {
    /// Whether the receiving side is gone.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::One { tx, .. } => tx.is_closed(),
            Self::Many(tx) => tx.is_closed(),
        }
    }

    /// Items waiting in this sender's chunk.
    pub(crate) fn pending(&self) -> usize {
        match self {
            Self::One { chunk, .. } => chunk.len(),
            Self::Many(_) => 0,
        }
    }

    /// Sends `item`: into the chunk (sent when full), or straight to the
    /// channel for a multi-reader edge; waits for room unless the pipeline
    /// stops first.
    pub(crate) async fn send(&mut self, item: T, halt: &mut Halt) -> Delivery {
        match self {
            Self::One { chunk, batch, .. } => {
                if chunk.capacity() == 0 {
                    chunk.reserve_exact(*batch);
                }
                chunk.push(item);
                if chunk.len() >= *batch {
                    self.flush(halt).await
                } else {
                    Delivery::NOTHING
                }
            }
            Self::Many(tx) => {
                let status = if halt.is_stopped() {
                    Sent::Stopped
                } else {
                    match tx.try_send(item) {
                        Ok(()) => Sent::Ok,
                        Err(async_channel::TrySendError::Closed(_)) => Sent::Closed,
                        Err(async_channel::TrySendError::Full(item)) => {
                            match halt.or_stop(tx.send(item)).await {
                                Some(Ok(())) => Sent::Ok,
                                Some(Err(_)) => Sent::Closed,
                                None => Sent::Stopped,
                            }
                        }
                    }
                };
                let ok = u64::from(status == Sent::Ok);
                Delivery {
                    sent: ok,
                    lost: 1 - ok,
                    status,
                }
            }
        }
    }

    /// Sends this sender's chunk if that needs no waiting (the common case
    /// of [`flush`](Self::flush)): `None` when the channel is full; the
    /// chunk is kept.
    pub(crate) fn try_flush(&mut self, halt: &Halt) -> Option<Delivery> {
        let Self::One { tx, chunk, .. } = self else {
            return Some(Delivery::NOTHING);
        };
        let n = chunk.len() as u64;
        if n == 0 {
            return Some(Delivery::NOTHING);
        }
        let status = if halt.is_stopped() {
            Sent::Stopped
        } else {
            match tx.try_send_with(|| packet(chunk)) {
                Ok(()) => {
                    return Some(Delivery {
                        sent: n,
                        lost: 0,
                        status: Sent::Ok,
                    });
                }
                Err(TrySendError::Closed(())) => Sent::Closed,
                Err(TrySendError::Full(())) => return None,
            }
        };
        chunk.clear();
        Some(Delivery {
            sent: 0,
            lost: n,
            status,
        })
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
        let Self::One { tx, chunk, .. } = self else {
            return Delivery::NOTHING;
        };
        let n = chunk.len() as u64;
        let status = match halt.or_stop(tx.send(packet(chunk))).await {
            Some(Ok(())) => Sent::Ok,
            Some(Err(_)) => Sent::Closed,
            None => Sent::Stopped,
        };
        let sent = if status == Sent::Ok { n } else { 0 };
        Delivery {
            sent,
            lost: n - sent,
            status,
        }
    }

    /// Drops what waits in the chunk, returning how many items that was.
    pub(crate) fn discard(&mut self) -> u64 {
        match self {
            Self::One { chunk, .. } => {
                let n = chunk.len() as u64;
                chunk.clear();
                n
            }
            Self::Many(_) => 0,
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
            Self::One { rx, chunk } => {
                if let Some(item) = chunk.pop() {
                    return Ok(item);
                }
                match rx.try_recv() {
                    Ok(Packet::One(item)) => Ok(item),
                    Ok(Packet::Many(next)) => {
                        *chunk = next;
                        chunk.reverse();
                        chunk.pop().ok_or(false)
                    }
                    Err(TryRecvError::Empty) => Err(false),
                    Err(TryRecvError::Disconnected) => Err(true),
                }
            }
            Self::Many(rx) => match rx.try_recv() {
                Ok(item) => Ok(item),
                Err(async_channel::TryRecvError::Empty) => Err(false),
                Err(async_channel::TryRecvError::Closed) => Err(true),
            },
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
            Self::One { rx, chunk } => loop {
                if let Some(item) = chunk.pop() {
                    return Poll::Ready(Some(item));
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(Packet::One(item))) => return Poll::Ready(Some(item)),
                    Poll::Ready(Some(Packet::Many(next))) => {
                        *chunk = next;
                        chunk.reverse();
                    }
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            },
            Self::Many(rx) => {
                use futures::Stream;
                rx.as_mut().poll_next(cx)
            }
            Self::Direct(rx) => rx.poll_recv(cx),
        }
    }

    /// Whether every sender is gone and nothing is left to read.
    pub(crate) fn is_finished(&self) -> bool {
        match self {
            Self::One { rx, chunk } => chunk.is_empty() && rx.is_closed() && rx.is_empty(),
            Self::Many(rx) => rx.is_empty() && (rx.is_closed() || rx.sender_count() == 0),
            Self::Direct(rx) => rx.is_closed() && rx.is_empty(),
        }
    }

    /// Items in the chunk being read (one reader) or in the channel (many).
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::One { chunk, .. } => chunk.len(),
            Self::Many(rx) => rx.len(),
            Self::Direct(rx) => rx.len(),
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
        EdgeRx::One { rx, chunk } => {
            rx.close();
            while let Some(item) = chunk.pop() {
                f(item);
            }
            while let Ok(next) = rx.try_recv() {
                match next {
                    Packet::One(item) => f(item),
                    Packet::Many(items) => items.into_iter().for_each(&mut f),
                }
            }
        }
        EdgeRx::Many(rx) => {
            rx.close();
            while let Ok(item) = rx.try_recv() {
                f(item);
            }
        }
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
        let EdgeTx::One { chunk, .. } = tx else {
            panic!("a one-reader edge is chunked")
        };
        chunk.push(item);
    }

    #[test]
    fn lone_items_and_chunks_arrive_in_order_and_drain_counts_both() {
        let token = CancellationToken::new();
        let halt = Halt::new(&token);
        // Room for 32 packets (chunks of at most 32).
        let (mut tx, mut rx) = one_reader(1024);
        // A lone item goes out as itself and the sender keeps its buffer.
        stash(&mut tx, 0);
        assert_eq!(tx.try_flush(&halt).unwrap().sent, 1);
        let EdgeTx::One { chunk, .. } = &tx else {
            unreachable!()
        };
        assert!(chunk.is_empty() && chunk.capacity() > 0);
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
        // Capacity 2 with chunks of 2: the channel holds one packet.
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
}
