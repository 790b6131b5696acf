//! [`QueueConsumer::feed`](super::QueueConsumer::feed): deliveries into a
//! `weir_core::Pool`, outcomes from the tickets.

use std::fmt;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use weir_core::{JobError, Pool};

use super::FailOutcome;
use super::delivery::{AckHandle, DeliveryStream};
use super::shared::Shared;

/// Submits each delivery's job to `pool` and records its outcome when its
/// ticket resolves; ends when the stream ends (the consumer closed) and
/// every submitted job has its outcome, or at once on cancellation.
pub(crate) async fn run<T, O, E>(
    shared: Arc<Shared>,
    mut stream: DeliveryStream<T>,
    pool: Pool<T, O, E>,
) where
    T: Send + 'static,
    O: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            biased;
            _ = shared.ctx.cancelled() => return,
            Some(()) = pending.next(), if !pending.is_empty() => {}
            next = stream.next(), if open => match next {
                Some(delivery) => {
                    let (job, handle) = delivery.into_parts();
                    match pool.submit(job).await {
                        Ok(ticket) => pending.push(async move { settle(handle, ticket.await).await }),
                        Err(_closed) => {
                            tracing::warn!(queue = %shared.queue, "the pool fed by the queue consumer is closed: the consumer closes");
                            let _ = handle.release().await;
                            shared.closing.cancel();
                            open = false;
                        }
                    }
                }
                None => open = false,
            },
        }
    }
}

/// Records one job's outcome from its pool result.
async fn settle<O, E: fmt::Display>(handle: AckHandle, result: Result<O, JobError<E>>) {
    match result {
        Ok(_) => {
            let _ = handle.ack().await;
        }
        Err(e) if e.is_cancelled() => {
            let _ = handle.release().await;
        }
        Err(e) => {
            let id = handle.id().to_owned();
            // The handler's own error reads as itself; a panic as the pool
            // words it.
            let error = if e.is_failed() {
                e.into_failed()
                    .map(|inner| inner.to_string())
                    .unwrap_or_default()
            } else {
                e.to_string()
            };
            // Nobody else sees this failure: a dead letter is logged here.
            if let Ok(FailOutcome::DeadLettered) = handle.fail(&error).await {
                tracing::warn!(job = %id, error = %error, "job failed on its last delivery: moved to the dead-letter stream");
            }
        }
    }
}
