//! [`Delivery`]: a job with the handle that records its outcome, and
//! [`DeliveryStream`]: the consumer's deliveries as a `Stream`.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures::Stream;
use tokio::sync::oneshot;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::QueueError;
use super::report::Ending;
use super::shared::Shared;

/// How [`Delivery::fail`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailOutcome {
    /// Added again for another delivery (it had deliveries left).
    Retried,
    /// Moved to the dead-letter stream with the error (its last delivery).
    DeadLettered,
    /// Another consumer had reclaimed it meanwhile (this one was slower
    /// than the visibility timeout): that consumer records its outcome.
    Reclaimed,
}

/// A job read from the queue, and the handle that records its outcome.
///
/// Acknowledge it after the work succeeded ([`ack`](Self::ack)), or
/// [`fail`](Self::fail) it with the error: it is then retried, or, on its
/// last delivery, moved to the dead-letter stream with the error. That is
/// at-least-once delivery: a job is only gone once its success is
/// acknowledged.
///
/// **Dropped** without an outcome (a cancelled task, a panic), the job is
/// not acknowledged: it stays pending in Redis and is delivered again after
/// the visibility timeout (counted as `abandoned`).
///
/// [`into_parts`](Self::into_parts) splits the job from its [`AckHandle`],
/// to hand the job to code that owns it (a pool) and record the outcome
/// afterwards.
pub struct Delivery<T> {
    job: T,
    handle: AckHandle,
}

impl<T: fmt::Debug> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.handle.id)
            .field("attempt", &self.handle.attempt)
            .field("job", &self.job)
            .finish()
    }
}

impl<T> Delivery<T> {
    pub(crate) fn new(job: T, handle: AckHandle) -> Self {
        Self { job, handle }
    }

    /// The job.
    pub fn job(&self) -> &T {
        &self.job
    }

    /// The job, to change before use.
    pub fn job_mut(&mut self) -> &mut T {
        &mut self.job
    }

    /// The entry's id in the stream (a retried job gets a new one).
    pub fn id(&self) -> &str {
        &self.handle.id
    }

    /// Which delivery of the job this is: 1 the first time, up to the
    /// consumer's `max_deliveries`.
    pub fn attempt(&self) -> u32 {
        self.handle.attempt
    }

    /// Whether it was reclaimed from another consumer.
    pub fn is_reclaimed(&self) -> bool {
        self.handle.reclaimed
    }

    /// The job and its handle.
    pub fn into_parts(self) -> (T, AckHandle) {
        (self.job, self.handle)
    }

    /// Acknowledges the job: it is done and deleted from the stream. See
    /// [`AckHandle::ack`].
    ///
    /// # Errors
    ///
    /// As [`AckHandle::ack`].
    ///
    /// # Cancel safety
    ///
    /// As [`AckHandle::ack`].
    pub async fn ack(self) -> Result<(), QueueError> {
        self.handle.ack().await
    }

    /// Records a failure: see [`AckHandle::fail`].
    ///
    /// # Errors
    ///
    /// As [`AckHandle::fail`].
    ///
    /// # Cancel safety
    ///
    /// As [`AckHandle::fail`].
    pub async fn fail(self, error: impl fmt::Display) -> Result<FailOutcome, QueueError> {
        self.handle.fail(error).await
    }

    /// Gives the job back unstarted: see [`AckHandle::release`].
    ///
    /// # Errors
    ///
    /// As [`AckHandle::release`].
    ///
    /// # Cancel safety
    ///
    /// As [`AckHandle::release`].
    pub async fn release(self) -> Result<(), QueueError> {
        self.handle.release().await
    }
}

/// Records the outcome of one [`Delivery`] (see there); each handle records
/// one outcome. Dropped without one, the job is delivered again after the
/// visibility timeout.
pub struct AckHandle {
    shared: Arc<Shared>,
    pub(crate) id: Arc<str>,
    pub(crate) payload: String,
    /// Failed deliveries before this entry was added.
    pub(crate) attempts: u32,
    attempt: u32,
    reclaimed: bool,
    ended: bool,
}

impl fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckHandle")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .finish()
    }
}

/// An acknowledgement on its way to the consumer's acker task, which sends
/// many in one round trip.
pub(crate) struct AckRequest {
    pub(crate) handle: AckHandle,
    pub(crate) reply: oneshot::Sender<Result<(), QueueError>>,
}

impl AckHandle {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: Arc<str>,
        payload: String,
        attempts: u32,
        deliveries: u32,
        reclaimed: bool,
    ) -> Self {
        Self {
            shared,
            id,
            payload,
            attempts,
            attempt: attempts.saturating_add(deliveries.max(1)),
            reclaimed,
            ended: false,
        }
    }

    /// See [`Delivery::id`].
    pub fn id(&self) -> &str {
        &self.id
    }

    /// See [`Delivery::attempt`].
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Acknowledges the job after it succeeded: it is deleted from the
    /// stream and never delivered again. Acknowledgements from many jobs
    /// travel together in one round trip; this returns once Redis
    /// confirmed this one.
    ///
    /// # Errors
    ///
    /// [`QueueError::Redis`] when Redis did not confirm it within the
    /// visibility timeout (calls are retried until then), or
    /// [`QueueError::Stopped`] when the consumer was cancelled first. The
    /// job then stays pending and is delivered again.
    ///
    /// # Cancel safety
    ///
    /// Once the acknowledgement is on its way, dropping the future does not
    /// stop it; before that, the job is abandoned (delivered again later).
    pub async fn ack(self) -> Result<(), QueueError> {
        let shared = Arc::clone(&self.shared);
        let (reply, answer) = oneshot::channel();
        // The acker ends the delivery (or, if the request is dropped, the
        // handle's drop abandons it).
        if shared
            .acks
            .send(AckRequest {
                handle: self,
                reply,
            })
            .await
            .is_err()
        {
            return Err(shared.stopped());
        }
        answer.await.unwrap_or_else(|_| Err(shared.stopped()))
    }

    /// Records that the job failed with `error`: on a delivery before the
    /// consumer's `max_deliveries` it is added again (at the back of the
    /// queue) for another delivery, on the last one it moves to the
    /// dead-letter stream with `error`'s `Display` text. One atomic script
    /// either way: the job is never both retried and dead, nor lost.
    ///
    /// # Errors
    ///
    /// As [`ack`](Self::ack).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the job (delivered again later) unless
    /// the script already ran.
    pub async fn fail(mut self, error: impl fmt::Display) -> Result<FailOutcome, QueueError> {
        let shared = Arc::clone(&self.shared);
        let error = error.to_string();
        let dead = self.attempt >= shared.settings.max_deliveries;
        match shared.record_failure(&self, &error, dead).await {
            Ok(2) => {
                tracing::debug!(queue = %shared.queue, id = %self.id, error = %error, "job dead-lettered");
                self.end(Ending::DeadLettered);
                Ok(FailOutcome::DeadLettered)
            }
            Ok(1) => {
                tracing::debug!(queue = %shared.queue, id = %self.id, error = %error, "job failed, retried");
                self.end(Ending::Retried);
                Ok(FailOutcome::Retried)
            }
            Ok(_) => {
                self.end(Ending::Abandoned);
                Ok(FailOutcome::Reclaimed)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the job back unstarted, for any consumer to take at once (it
    /// is added again at the back, with its deliveries unchanged).
    ///
    /// # Errors
    ///
    /// As [`ack`](Self::ack).
    ///
    /// # Cancel safety
    ///
    /// As [`fail`](Self::fail).
    pub async fn release(self) -> Result<(), QueueError> {
        let shared = Arc::clone(&self.shared);
        shared.release(vec![self]).await
    }

    /// Marks the delivery ended without recording how (the caller records
    /// a batch at once); `false` if it had ended already.
    pub(crate) fn mark_ended(&mut self) -> bool {
        !std::mem::replace(&mut self.ended, true)
    }

    /// Records how the delivery ended (once).
    pub(crate) fn end(&mut self, how: Ending) {
        if !self.ended {
            self.ended = true;
            self.shared.ended(&self.id, how);
        }
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        if !self.ended {
            tracing::debug!(queue = %self.shared.queue, id = %self.id, "delivery dropped without an outcome: it will be delivered again");
            self.end(Ending::Abandoned);
        }
    }
}

/// The deliveries of a [`QueueConsumer`](super::QueueConsumer), as a
/// `Stream`: hand it to `Pipeline::from_stream`, or poll it yourself.
///
/// It ends when the consumer is closed or cancelled; the deliveries read
/// but not yet taken from it are then given back to the other consumers
/// (released). Dropping it stops nothing (the consumer keeps up to its
/// prefetch read; close it).
pub struct DeliveryStream<T> {
    rx: Pin<Box<async_channel::Receiver<Delivery<T>>>>,
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
}

impl<T> fmt::Debug for DeliveryStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryStream")
            .field("buffered", &self.rx.len())
            .field("done", &self.done)
            .finish()
    }
}

impl<T> DeliveryStream<T> {
    pub(crate) fn new(
        rx: async_channel::Receiver<Delivery<T>>,
        closing: WaitForCancellationFutureOwned,
    ) -> Self {
        Self {
            rx: Box::pin(rx),
            closing: Box::pin(closing),
            done: false,
        }
    }
}

impl<T> Stream for DeliveryStream<T> {
    type Item = Delivery<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Delivery<T>>> {
        if self.done || self.closing.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(None);
        }
        let polled = self.rx.as_mut().poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }
}
