//! How a job's result comes back to its submitter: a [`Ticket`] per job
//! (detached jobs use the pool's [`PoolResults`](super::PoolResults) stream, in
//! `results.rs`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use weir_context::Cause;

use super::JobError;

/// What a job ends with: its output, or why there is none.
pub type JobResult<O, E> = Result<O, JobError<E>>;

/// A job's number within its pool, in submission order (starting at 0).
/// Detached jobs are matched to their result on the
/// [`PoolResults`](super::PoolResults) stream by it.
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
    /// To the pool's [`PoolResults`](super::PoolResults) stream.
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
/// [`Pool::report`](super::Pool::report); only its result is discarded. If
/// the job is cancelled ([`Pool::cancel`](super::Pool::cancel), the pool's
/// context, [`Pool::shutdown`](super::Pool::shutdown)'s grace period) the
/// ticket resolves to [`JobError::Cancelled`] with the cause. A job that
/// panics resolves it to [`JobError::Panicked`].
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
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(dropped())),
        }
    }
}

impl<O, E> Future for Ticket<O, E> {
    type Output = JobResult<O, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|r| match r {
            Ok(result) => result.map_err(|e| *e),
            Err(_) => Err(dropped()),
        })
    }
}

/// The job was dropped without a result: only a cancellation does that (the
/// worker tasks dropped with their runtime, say).
fn dropped<E>() -> JobError<E> {
    JobError::Cancelled(Cause::Cancelled)
}

impl<O, E> fmt::Debug for Ticket<O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
