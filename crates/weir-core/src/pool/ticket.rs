//! How a job's result comes back: a [`Ticket`] per job, or the pool's
//! [`Results`] stream for fire-and-forget submitters.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::oneshot;

use super::JobError;

/// What a job ends with: its output, or why there is none.
pub type JobResult<O, E> = Result<O, JobError<E>>;

/// A job's number within its pool, in submission order (starting at 0).
/// Detached jobs are matched to their result on the [`Results`] stream by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub(crate) u64);

impl JobId {
    /// The number as a `u64`.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The receiving side of the results channel.
pub(crate) type ResultRx<O, E> = async_channel::Receiver<(JobId, Boxed<O, E>)>;

/// What a ticket's oneshot carries: the error boxed, so that the common
/// `Ok` case moves (and the oneshot allocates) no more than the output.
pub(crate) type Boxed<O, E> = Result<O, Box<JobError<E>>>;

/// Boxes the error of a job result for a ticket.
pub(crate) fn boxed<O, E>(result: JobResult<O, E>) -> Boxed<O, E> {
    result.map_err(Box::new)
}

/// Where a job's result goes.
pub(crate) enum Reply<O, E> {
    /// To the submitter's [`Ticket`].
    Ticket(oneshot::Sender<Boxed<O, E>>),
    /// To the pool's [`Results`] stream.
    Detached,
}

/// A job with its id and its way back, as it travels through the queue.
pub(crate) struct Envelope<J, O, E> {
    pub(crate) id: JobId,
    pub(crate) job: J,
    pub(crate) reply: Reply<O, E>,
}

/// The result of one submitted job: a future that resolves to
/// `Result<O, JobError<E>>` when the job ends.
///
/// Dropping a ticket does not cancel the job: it still runs and is counted in
/// [`Pool::stats`](super::Pool::stats); only its result is discarded. If the
/// job is cancelled (pool token, [`Pool::cancel`](super::Pool::cancel),
/// `shutdown_timeout`'s deadline) the ticket resolves to
/// [`JobError::Cancelled`].
///
/// # Cancel safety
///
/// Awaiting a ticket is cancel safe: polling it again later, or dropping it,
/// changes nothing for the job.
#[must_use = "futures do nothing unless polled; dropping a ticket discards the job's result"]
pub struct Ticket<O, E> {
    id: JobId,
    rx: oneshot::Receiver<Boxed<O, E>>,
}

impl<O, E> Ticket<O, E> {
    pub(crate) fn new(id: JobId, rx: oneshot::Receiver<Boxed<O, E>>) -> Self {
        Self { id, rx }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The result if the job has ended, without waiting. `None` while it is
    /// queued or running; after `Some` the ticket is spent.
    pub fn try_result(&mut self) -> Option<JobResult<O, E>> {
        match self.rx.try_recv() {
            Ok(result) => Some(result.map_err(|e| *e)),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(JobError::Cancelled)),
        }
    }
}

impl<O, E> Future for Ticket<O, E> {
    type Output = JobResult<O, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| match r {
            Ok(result) => result.map_err(|e| *e),
            // The job was dropped without a result: only cancellation does that.
            Err(_) => Err(JobError::Cancelled),
        })
    }
}

impl<O, E> fmt::Debug for Ticket<O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .finish_non_exhaustive()
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
///   is dropped, are discarded (still counted in `stats()`, and a failure
///   or panic still logs its event);
/// * cancelling the pool (token, `cancel`, `shutdown_timeout`'s deadline)
///   frees a worker waiting for room; that result is discarded.
///
/// The stream ends when the pool has shut down and every worker has ended.
/// Results of jobs submitted with a [`Ticket`] never appear here.
#[must_use = "streams do nothing unless polled"]
pub struct Results<O, E> {
    // Boxed so that `Results` is `Unpin` (the receiver is not).
    rx: Pin<Box<ResultRx<O, E>>>,
}

impl<O, E> Results<O, E> {
    pub(crate) fn new(rx: ResultRx<O, E>) -> Self {
        Self { rx: Box::pin(rx) }
    }

    /// Waits for the next result; `None` once the pool has shut down and
    /// every result was read.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, no result
    /// is lost.
    pub async fn recv(&mut self) -> Option<(JobId, JobResult<O, E>)> {
        let (id, result) = self.rx.recv().await.ok()?;
        Some((id, result.map_err(|e| *e)))
    }

    /// Results waiting to be read.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no result is waiting to be read.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<O, E> Stream for Results<O, E> {
    type Item = (JobId, JobResult<O, E>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx
            .as_mut()
            .poll_next(cx)
            .map(|item| item.map(|(id, result)| (id, result.map_err(|e| *e))))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rx.size_hint()
    }
}

impl<O, E> fmt::Debug for Results<O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Results")
            .field("waiting", &self.rx.len())
            .finish_non_exhaustive()
    }
}
