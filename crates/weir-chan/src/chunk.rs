//! Chunked sending over a [`lane`](crate::lane): each sender fills a local
//! chunk and sends it when it holds `batch` items, or — so that nothing
//! waits in a chunk while it could move — when its owner is about to wait
//! for anything (the owner calls [`ChunkTx::try_flush`] /
//! [`ChunkTx::flush`] then). Under load the lane's lock is paid once per
//! chunk; an idle sender still moves each item at once, as a
//! [`Packet::One`] that needs no allocation.
//!
//! The lane is weighed by items, so a channel of `capacity` holds at most
//! `capacity` items (a lone chunk heavier than what is free still enters an
//! empty lane), plus one chunk being filled by each sender and one being
//! read by the reader.

use std::future::Future;
use std::task::{Context, Poll};

use crate::BATCH;
use crate::lane::{LaneRx, LaneTx, TryRecvError, TrySendError, WeakLaneTx, lane_weighed};

/// What one send carries: a chunk, or a lone item (what an idle sender
/// sends: nothing to allocate, and the sender keeps its chunk's buffer).
#[derive(Debug)]
pub enum Packet<T> {
    /// One item.
    One(T),
    /// A chunk of items, in the order they were pushed.
    Many(Vec<T>),
}

impl<T> Packet<T> {
    /// How many items the packet holds.
    pub fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(items) => items.len(),
        }
    }

    /// Whether the packet holds no item (never true for a packet sent here).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A new chunked channel holding at most `capacity` items (at least 1), in
/// chunks of at most `min(capacity, BATCH)`.
pub fn chunked<T>(capacity: usize) -> (ChunkTx<T>, ChunkRx<T>) {
    let batch = capacity.clamp(1, BATCH);
    let (tx, rx) = lane_weighed(capacity, Packet::len);
    (
        ChunkTx {
            tx,
            chunk: Vec::new(),
            batch,
        },
        ChunkRx {
            rx,
            chunk: Vec::new().into_iter(),
        },
    )
}

/// What [`ChunkTx::try_flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// The chunk (this many items, maybe 0) reached the channel.
    Sent(usize),
    /// The channel is full; the chunk is kept.
    Full,
    /// The reader is gone; the chunk (this many items) was dropped.
    Closed(usize),
}

/// A sending half with its own chunk. A clone shares the channel and starts
/// with an empty chunk; the reader sees the end once every sender is gone.
/// Dropping a sender drops what its chunk holds: flush it first.
#[derive(Debug)]
pub struct ChunkTx<T> {
    tx: LaneTx<Packet<T>>,
    /// The chunk being filled.
    chunk: Vec<T>,
    batch: usize,
}

impl<T> Clone for ChunkTx<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            chunk: Vec::new(),
            batch: self.batch,
        }
    }
}

/// Takes what `chunk` holds (at least one item) as a packet: a lone item
/// keeps the chunk's buffer for the next ones; a chunk takes the buffer
/// with it, and the next push allocates a fresh one (see
/// [`ChunkTx::push`]), outside the lane's lock.
fn packet<T>(chunk: &mut Vec<T>) -> Packet<T> {
    if chunk.len() == 1
        && let Some(item) = chunk.pop()
    {
        return Packet::One(item);
    }
    Packet::Many(std::mem::take(chunk))
}

impl<T> ChunkTx<T> {
    /// Adds `item` to the chunk; `true` when the chunk is full and must be
    /// flushed before the sender goes on.
    #[inline]
    pub fn push(&mut self, item: T) -> bool {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve_exact(self.batch);
        }
        self.chunk.push(item);
        self.chunk.len() >= self.batch
    }

    /// Items waiting in this sender's chunk.
    pub fn pending(&self) -> usize {
        self.chunk.len()
    }

    /// Sends the chunk if that needs no waiting.
    pub fn try_flush(&mut self) -> Flushed {
        let n = self.chunk.len();
        if n == 0 {
            return Flushed::Sent(0);
        }
        let chunk = &mut self.chunk;
        match self.tx.try_send_with(n, || packet(chunk)) {
            Ok(()) => Flushed::Sent(n),
            Err(TrySendError::Full(())) => Flushed::Full,
            Err(TrySendError::Closed(())) => {
                self.chunk.clear();
                Flushed::Closed(n)
            }
        }
    }

    /// Sends the chunk, waiting for room: `Ok(n)` with the items sent,
    /// `Err(n)` with the items dropped because the reader is gone. Nothing
    /// happens until the future is polled; dropping it while it waits for
    /// room drops the chunk.
    pub async fn flush(&mut self) -> Result<usize, usize> {
        match self.try_flush() {
            Flushed::Sent(n) => Ok(n),
            Flushed::Closed(n) => Err(n),
            Flushed::Full => self.send_chunk().await,
        }
    }

    /// Takes the chunk out *now* and returns the wait for room to send it:
    /// `Ok(n)` once sent, `Err(n)` if the reader is gone. Dropping the
    /// future, polled or not, drops those `n` items, so a caller that
    /// races it against a stop counts them lost exactly once (the chunk is
    /// already empty).
    pub fn send_chunk(&mut self) -> impl Future<Output = Result<usize, usize>> + '_ {
        let n = self.chunk.len();
        let taken = (n > 0).then(|| packet(&mut self.chunk));
        let tx = &self.tx;
        async move {
            match taken {
                None => Ok(0),
                Some(packet) => tx.send(packet).await.map(|()| n).map_err(|_| n),
            }
        }
    }

    /// Drops what waits in the chunk, returning how many items that was.
    pub fn discard(&mut self) -> usize {
        let n = self.chunk.len();
        self.chunk.clear();
        n
    }

    /// Whether the reader is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// A sender that does not keep the channel open.
    pub fn downgrade(&self) -> WeakChunkTx<T> {
        WeakChunkTx {
            tx: self.tx.downgrade(),
            batch: self.batch,
        }
    }
}

/// A [`ChunkTx`] that does not keep the channel open.
#[derive(Debug)]
pub struct WeakChunkTx<T> {
    tx: WeakLaneTx<Packet<T>>,
    batch: usize,
}

impl<T> WeakChunkTx<T> {
    /// A strong sender with an empty chunk, while some strong sender lives.
    pub fn upgrade(&self) -> Option<ChunkTx<T>> {
        Some(ChunkTx {
            tx: self.tx.upgrade()?,
            chunk: Vec::new(),
            batch: self.batch,
        })
    }
}

/// The reading half, handing out one item at a time. Dropping it closes
/// the channel.
#[derive(Debug)]
pub struct ChunkRx<T> {
    rx: LaneRx<Packet<T>>,
    /// The chunk being read.
    chunk: std::vec::IntoIter<T>,
}

impl<T> ChunkRx<T> {
    /// An item if one can be had without waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        if let Some(item) = self.chunk.next() {
            return Ok(item);
        }
        loop {
            match self.rx.try_recv()? {
                Packet::One(item) => return Ok(item),
                Packet::Many(items) => {
                    self.chunk = items.into_iter();
                    if let Some(item) = self.chunk.next() {
                        return Ok(item);
                    }
                }
            }
        }
    }

    /// The next item; `None` once every sender is gone and all was read.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            if let Some(item) = self.chunk.next() {
                return Poll::Ready(Some(item));
            }
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some(Packet::One(item)) => return Poll::Ready(Some(item)),
                Some(Packet::Many(items)) => self.chunk = items.into_iter(),
                None => return Poll::Ready(None),
            }
        }
    }

    /// Items of the chunk being read that were not handed out yet.
    pub fn in_hand(&self) -> usize {
        self.chunk.len()
    }

    /// Items waiting: in the channel and in hand.
    pub fn len(&self) -> usize {
        self.in_hand() + self.rx.weight()
    }

    /// Whether no item waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every sender is gone (or the channel was closed) and
    /// nothing is left to read.
    pub fn is_finished(&self) -> bool {
        self.chunk.len() == 0 && self.rx.is_closed() && self.rx.is_empty()
    }

    /// Closes the channel (sends fail from now on), then hands each item
    /// still buffered to `f`.
    pub fn close_and_drain_each(&mut self, mut f: impl FnMut(T)) {
        self.rx.close();
        self.chunk.by_ref().for_each(&mut f);
        while let Ok(packet) = self.rx.try_recv() {
            match packet {
                Packet::One(item) => f(item),
                Packet::Many(items) => items.into_iter().for_each(&mut f),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn noop_cx() -> Context<'static> {
        Context::from_waker(futures::task::noop_waker_ref())
    }

    #[test]
    fn items_travel_in_chunks_of_batch_in_order() {
        let (mut tx, mut rx) = chunked::<u32>(1000);
        let mut full_at = Vec::new();
        for i in 0..(BATCH as u32 * 2 + 3) {
            if tx.push(i) {
                full_at.push(i);
                assert_eq!(tx.try_flush(), Flushed::Sent(BATCH));
            }
        }
        assert_eq!(full_at, [BATCH as u32 - 1, 2 * BATCH as u32 - 1]);
        assert_eq!(tx.pending(), 3);
        assert_eq!(rx.len(), 2 * BATCH);
        assert_eq!(tx.try_flush(), Flushed::Sent(3));
        drop(tx);
        let mut got = Vec::new();
        while let Poll::Ready(Some(i)) = rx.poll_recv(&mut noop_cx()) {
            got.push(i);
        }
        assert_eq!(got, (0..(BATCH as u32 * 2 + 3)).collect::<Vec<_>>());
        assert!(rx.is_finished());
    }

    #[test]
    fn a_lone_item_travels_alone_and_the_bound_counts_items() {
        let (mut tx, mut rx) = chunked::<u32>(2);
        assert!(!tx.push(1));
        assert_eq!(tx.try_flush(), Flushed::Sent(1));
        assert!(!tx.push(2));
        assert_eq!(tx.try_flush(), Flushed::Sent(1));
        // Two items are in the channel: full, though it holds two packets.
        assert!(!tx.push(3));
        assert_eq!(tx.try_flush(), Flushed::Full);
        assert_eq!(tx.pending(), 1, "kept");
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(tx.try_flush(), Flushed::Sent(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn a_full_flush_waits_for_room_and_a_closed_one_reports_what_it_lost() {
        let (mut tx, mut rx) = chunked::<u32>(1);
        tx.push(1);
        assert_eq!(tx.flush().await, Ok(1));
        tx.push(2);
        let reader = tokio::spawn(async move {
            let first = std::future::poll_fn(|cx| rx.poll_recv(cx)).await;
            (first, rx)
        });
        assert_eq!(tx.flush().await, Ok(1), "room came when the reader read");
        let (first, mut rx) = reader.await.unwrap();
        assert_eq!(first, Some(1));
        let mut left = Vec::new();
        rx.close_and_drain_each(|i| left.push(i));
        assert_eq!(left, [2]);
        tx.push(3);
        tx.push(4);
        assert_eq!(tx.flush().await, Err(2));
        assert_eq!(tx.pending(), 0);
    }

    #[test]
    fn a_weak_sender_does_not_keep_the_channel_open() {
        let (tx, mut rx) = chunked::<u32>(4);
        let weak = tx.downgrade();
        let mut strong = weak.upgrade().unwrap();
        drop(tx);
        strong.push(7);
        assert_eq!(strong.try_flush(), Flushed::Sent(1));
        drop(strong);
        assert!(weak.upgrade().is_none());
        assert_eq!(rx.try_recv(), Ok(7));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert!(rx.is_finished());
    }
}
