//! The results stream of detached jobs: the workers' sending side and the
//! public [`PoolResults`] stream.
//!
//! Results travel on a chunked channel of weir's hand-off (`weir-chan`'s
//! `chunk`), as items do between pipeline stages: each worker collects the
//! results of the detached jobs it finishes in a local chunk and sends the
//! chunk when it holds `batch` results or — so that no result waits in a
//! chunk while it could be read — right before the worker itself would
//! wait: for the next job, for a job that is not done at its first poll,
//! for a fresh worker after a panic, or for its end. Under load the
//! channel's synchronisation is paid once per chunk; an idle pool still
//! delivers each result at once.
//!
//! Bounds: a stream of capacity `cap` holds at most `cap` results in the
//! channel (the channel counts results, not chunks, so an idle pool's
//! one-result chunks fill it no sooner than full ones do), plus one chunk
//! (of at most `min(cap, BATCH)`) being filled by each worker and one being
//! read.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use weir_chan::chunk::{ChunkRx, ChunkTx, Flushed, WeakChunkTx, chunked};

use super::JobResult;
use super::ticket::{Boxed, JobId};

/// One result on the channel.
type Item<O, E> = (JobId, Boxed<O, E>);

/// Makes the results channel for a stream of `capacity` results
/// (`0 < capacity <= MAX_CAPACITY`).
pub(crate) fn channel<O, E>(capacity: usize) -> (ResultTx<O, E>, PoolResults<O, E>) {
    let (tx, rx) = chunked(capacity);
    (ResultTx { tx }, PoolResults { rx })
}

/// A strong sender of the results channel; [`sink`](Self::sink) makes a
/// worker's chunked sending side from it.
#[derive(Debug)]
pub(crate) struct ResultTx<O, E> {
    tx: ChunkTx<Item<O, E>>,
}

impl<O, E> ResultTx<O, E> {
    /// A sender that does not keep the stream open.
    pub(crate) fn downgrade(&self) -> WeakResultTx<O, E> {
        WeakResultTx {
            tx: self.tx.downgrade(),
        }
    }

    /// A worker's sending side.
    pub(crate) fn sink(self) -> ResultSink<O, E> {
        ResultSink { tx: self.tx }
    }
}

/// A [`ResultTx`] that does not keep the stream open: the pool keeps one
/// to give each new worker a sender while any worker is alive.
#[derive(Debug)]
pub(crate) struct WeakResultTx<O, E> {
    tx: WeakChunkTx<Item<O, E>>,
}

impl<O, E> WeakResultTx<O, E> {
    /// The strong sender, while some worker still holds one.
    pub(crate) fn upgrade(&self) -> Option<ResultTx<O, E>> {
        Some(ResultTx {
            tx: self.tx.upgrade()?,
        })
    }
}

/// One worker's sending side: a local chunk in front of the channel.
#[derive(Debug)]
pub(crate) struct ResultSink<O, E> {
    tx: ChunkTx<Item<O, E>>,
}

impl<O, E> ResultSink<O, E> {
    /// Adds a result to the chunk; `true` when the chunk is full and must be
    /// flushed before the worker goes on.
    #[inline]
    pub(crate) fn push(&mut self, id: JobId, result: Boxed<O, E>) -> bool {
        self.tx.push((id, result))
    }

    /// Whether the stream is still there (not dropped by its reader).
    pub(crate) fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Whether results wait in the chunk.
    pub(crate) fn is_pending(&self) -> bool {
        self.tx.pending() > 0
    }

    /// Sends the chunk, waiting for room unless the pool is cancelled first
    /// (then the chunk is discarded, as a cancelled worker does not wait for
    /// the reader). A dropped stream discards it too. `on_wait` runs before
    /// it waits, if it has to.
    pub(crate) async fn flush(
        &mut self,
        cancelled: Pin<&mut WaitForCancellationFutureOwned>,
        on_wait: impl FnOnce(),
    ) {
        if self.tx.try_flush() != Flushed::Full {
            // Sent, or the reader is gone and the chunk was discarded.
            return;
        }
        on_wait();
        let n = self.tx.pending();
        tokio::select! {
            biased;
            _ = self.tx.flush() => {}
            () = cancelled => {
                tracing::debug!(results = n, "pool cancelled while waiting for room in the results stream; results discarded");
            }
        }
    }

    /// Sends the chunk if there is room now; otherwise it is discarded
    /// (best effort, for a cancelled worker).
    pub(crate) fn try_flush(&mut self) {
        if self.tx.try_flush() == Flushed::Full {
            let n = self.tx.discard();
            tracing::debug!(
                results = n,
                "results stream full while cancelling; results discarded"
            );
        }
    }
}

/// The results of detached jobs ([`Pool::submit_detached`](super::Pool::submit_detached)),
/// as a [`Stream`] of `(JobId, Result<O, JobError<E>>)` in completion order.
///
/// Take it once with [`Pool::results`](super::Pool::results). It is
/// bounded (the builder's `results(cap)`): when it is full, a worker
/// with a detached result waits for room, which is backpressure on the
/// pool. It never blocks the workers forever:
///
/// * detached results that finish before the stream is taken, or after it
///   is dropped, are discarded (still counted in the report; a failure or
///   panic nobody can receive is logged at `WARN`);
/// * cancelling the pool (`cancel`, its context, `shutdown`'s grace period)
///   frees a worker waiting for room; its unsent results are discarded.
///
/// Under load a worker hands its results over in chunks of up to
/// `min(cap, 64)` (weir's one batch size); it sends what it holds before it waits for anything
/// (the next job, a job that is not done at once, its end), so a result
/// never sits in a worker while the stream could read it. The stream holds
/// at most `cap` results plus one chunk per worker.
///
/// The stream ends when the pool has ended (closed and drained, or
/// cancelled) and every worker with it.
/// Results of jobs submitted with a [`Ticket`](super::Ticket) never appear
/// here.
#[must_use = "streams do nothing unless polled"]
pub struct PoolResults<O, E> {
    rx: ChunkRx<Item<O, E>>,
}

impl<O, E> PoolResults<O, E> {
    /// Waits for the next result; `None` once the pool has shut down and
    /// every result was read.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, no result
    /// is lost.
    pub async fn recv(&mut self) -> Option<(JobId, JobResult<O, E>)> {
        std::future::poll_fn(|cx| self.poll_result(cx)).await
    }

    /// Results waiting to be read.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no result is waiting to be read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Option<(JobId, JobResult<O, E>)>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|(id, result)| (id, result.map_err(|e| *e))))
    }
}

// Nothing in `PoolResults` is ever pinned in place.
impl<O, E> Unpin for PoolResults<O, E> {}

impl<O, E> Stream for PoolResults<O, E> {
    type Item = (JobId, JobResult<O, E>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_result(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), None)
    }
}

impl<O, E> fmt::Debug for PoolResults<O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolResults")
            .field("waiting", &self.len())
            .finish_non_exhaustive()
    }
}
