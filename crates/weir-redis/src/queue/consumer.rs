//! [`QueueConsumer`]: the handle of a running consumer.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use weir_context::{ConfigError, Context, RunError};

use super::builder::QueueConsumerBuilder;
use super::delivery::DeliveryStream;
use super::shared::Shared;
use super::{QueueError, QueueReport};

/// A consumer of a queue: reads the group in batches and hands each job on
/// as a [`Delivery`](super::Delivery) with its ack handle.
///
/// Take the deliveries as a `Stream` with [`deliveries`](Self::deliveries)
/// (a source for `weir_core::Pipeline::from_stream`), or let
/// [`feed`](Self::feed) run them on a `weir_core::Pool` and record each
/// job's outcome from its result.
///
/// # What it does
///
/// - **Reads** new entries with `XREADGROUP … COUNT n BLOCK ms`, only as
///   many as its [`prefetch`](QueueConsumerBuilder::prefetch) has room for.
/// - **Acknowledges after success**: [`Delivery::ack`](super::Delivery::ack).
///   Acknowledgements travel in batches (up to 512 in one `MULTI` /
///   `XACK` / `XDEL`, four batches in flight): keep many `ack()`s going at
///   once (a `FuturesUnordered`, a pool, a stage with many workers) for big
///   batches.
/// - **Retries, then dead-letters**: a failed job is added again until its
///   last delivery, then moved with its error to the dead-letter stream.
/// - **Reclaims** the jobs of a consumer that died (`XAUTOCLAIM` of entries
///   idle past the visibility timeout, checked twice per timeout), and
///   renews its own (buffered and in progress) so that only those of a
///   dead or stalled consumer are reclaimed.
/// - **Shuts down gracefully**: [`close`](Self::close) stops reading,
///   gives the deliveries it read but did not hand on back to the others
///   at once, lets those handed on finish and record their outcomes, and
///   leaves the group if it has nothing pending.
///
/// Redis down: every call is bounded by the timeout; reads back off and
/// retry; outcomes are retried until the visibility timeout. The change to
/// degraded and back is logged once each.
///
/// # Cancellation, errors, drop
///
/// - [`cancel`](Self::cancel) (or the context) stops now: no more reads,
///   buffered deliveries and outcomes not yet recorded are abandoned (they
///   stay pending in Redis and are reclaimed by the others after the
///   visibility timeout); [`join`](Self::join) then returns
///   [`QueueError::Stopped`] with the cause, and the report.
/// - Dropping the handle closes the consumer (as [`close`](Self::close)).
/// - When `join` or `shutdown` returns, none of the consumer's tasks is
///   alive (the client's own connection tasks end as their connections
///   are dropped, right after).
pub struct QueueConsumer<T> {
    shared: Arc<Shared>,
    stream: Mutex<Option<DeliveryStream<T>>>,
    tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
}

impl<T> QueueConsumer<T> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        stream: DeliveryStream<T>,
        tracker: TaskTracker,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            shared,
            stream: Mutex::new(Some(stream)),
            tracker,
            runtime,
        }
    }
}

impl<T> fmt::Debug for QueueConsumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueConsumer")
            .field("queue", &self.shared.queue)
            .field("consumer", &self.shared.consumer)
            .field("report", &self.shared.report())
            .finish()
    }
}

impl<T: DeserializeOwned + Send + 'static> QueueConsumer<T> {
    /// Starts configuring a consumer of the queue `name`:
    /// `QueueConsumer::<Job>::builder("jobs")`.
    pub fn builder(name: impl Into<String>) -> QueueConsumerBuilder<T> {
        QueueConsumerBuilder::new(name.into())
    }

    /// The deliveries, as a `Stream`, the first time it is called (`None`
    /// after that, or after [`feed`](Self::feed)).
    pub fn deliveries(&self) -> Option<DeliveryStream<T>> {
        crate::lock(&self.stream).take()
    }

    /// Runs every delivery on `pool` (a pool whose handler takes the job),
    /// and records each job's outcome from its result: `Ok` acknowledges
    /// it, `Err` and a panic fail it (retry or dead-letter, with the
    /// error's or the panic's message), a job the pool cancelled is
    /// released. The feeding task is one of the consumer's: `close` lets
    /// the jobs it submitted finish, `cancel` abandons them.
    ///
    /// A pool that is closed ends the feeding and closes the consumer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the deliveries were already taken.
    pub fn feed<O, E>(&self, pool: weir_core::Pool<T, O, E>) -> Result<(), ConfigError>
    where
        O: Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let stream = self.deliveries().ok_or_else(|| {
            ConfigError::invalid(
                format!(
                    "queue `{}` consumer `{}`",
                    self.shared.queue, self.shared.consumer
                ),
                "deliveries",
                "were already taken (deliveries() or feed() was called before)",
            )
        })?;
        self.tracker.spawn_on(
            super::feed::run(Arc::clone(&self.shared), stream, pool).instrument(
                tracing::info_span!(
                    "queue consumer",
                    queue = %self.shared.queue,
                    consumer = %self.shared.consumer,
                    task = "feeder"
                ),
            ),
            &self.runtime,
        );
        Ok(())
    }
}

impl<T> QueueConsumer<T> {
    /// This consumer's name in the group.
    pub fn name(&self) -> &str {
        &self.shared.consumer
    }

    /// The Redis keys: the job stream and the dead-letter stream.
    pub fn keys(&self) -> (&str, &str) {
        (&self.shared.keys.stream, &self.shared.keys.dead)
    }

    /// The report so far (its counts may be mid-update while the consumer
    /// runs; after `join` they add up).
    pub fn report(&self) -> QueueReport {
        self.shared.report()
    }

    /// The run's context (a child of the one given to the builder).
    pub fn context(&self) -> &Context {
        &self.shared.ctx
    }

    /// Stops reading; the deliveries already handed on finish and record
    /// their outcomes, the ones not yet handed on are released.
    pub fn close(&self) {
        self.shared.closing.cancel();
    }

    /// Stops now: see [the type's docs](Self#cancellation-errors-drop).
    pub fn cancel(&self) {
        self.shared.ctx.cancel();
    }

    /// Closes the consumer, waits until every delivery has ended and every
    /// task with it, and returns the report.
    ///
    /// # Errors
    ///
    /// [`QueueError::Stopped`] with the cause when the consumer was
    /// cancelled (its `cancel`, or its context); the report is in the
    /// error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the consumer closing; its tasks end by
    /// themselves.
    // The report travels in the error (the convention for every run); a
    // run ends once, so the size of the result does not matter.
    #[allow(clippy::result_large_err)]
    pub async fn join(self) -> Result<QueueReport, RunError<QueueError, QueueReport>> {
        self.close();
        self.tracker.close();
        self.tracker.wait().await;
        self.finish(None)
    }

    /// Closes the consumer and waits up to `grace` for it to end; then
    /// cancels it (abandoning the deliveries still in flight) and waits
    /// for its tasks.
    ///
    /// # Errors
    ///
    /// [`QueueError::GraceExpired`] when `grace` ran out;
    /// [`QueueError::Stopped`] when it was cancelled before. The report is
    /// in the error.
    ///
    /// # Cancel safety
    ///
    /// As [`join`](Self::join).
    #[allow(clippy::result_large_err)]
    pub async fn shutdown(
        self,
        grace: Duration,
    ) -> Result<QueueReport, RunError<QueueError, QueueReport>> {
        self.close();
        self.tracker.close();
        let in_time = match Instant::now().checked_add(grace) {
            Some(deadline) => tokio::time::timeout_at(deadline, self.tracker.wait())
                .await
                .is_ok(),
            None => {
                self.tracker.wait().await;
                true
            }
        };
        if in_time {
            return self.finish(None);
        }
        tracing::warn!(queue = %self.shared.queue, consumer = %self.shared.consumer, ?grace, "queue consumer did not finish within its grace period: cancelled");
        self.shared.ctx.cancel();
        self.tracker.wait().await;
        self.finish(Some(QueueError::GraceExpired(grace)))
    }

    #[allow(clippy::result_large_err)]
    fn finish(
        &self,
        error: Option<QueueError>,
    ) -> Result<QueueReport, RunError<QueueError, QueueReport>> {
        crate::lock(&self.shared.ended_at).get_or_insert_with(Instant::now);
        let report = self.shared.report();
        match error {
            Some(e) => Err(RunError::new(e, report)),
            None if self.shared.ctx.is_cancelled() => {
                Err(RunError::new(self.shared.stopped(), report))
            }
            None => Ok(report),
        }
    }
}

impl<T> Drop for QueueConsumer<T> {
    fn drop(&mut self) {
        self.shared.closing.cancel();
    }
}
