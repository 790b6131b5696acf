//! [`AdaptiveAcquire`]: the future of [`AdaptiveLimit::acquire`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tokio::sync::OwnedSemaphorePermit;
use weir_context::{Cause, Context};

use super::{AdaptiveLimit, AdaptiveLimitError, AdaptivePermit};

type Wait = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AdaptiveLimitError>> + Send>>;

/// The future of [`AdaptiveLimit::acquire`]: waits for a slot under the
/// limit, in first-come, first-served order.
///
/// Bound the wait with [`context`](Self::context). Without it, the wait
/// ends only when a slot is free. It owns a handle to the limit (no
/// borrow), so it can be stored in a service or moved into a task.
///
/// # Panics
///
/// When polled again after it completed.
#[must_use = "futures do nothing unless polled"]
pub struct AdaptiveAcquire {
    limit: AdaptiveLimit,
    ctx: Option<Context>,
    /// The wait, once no slot was free at the first poll (boxed: tokio's
    /// acquire future cannot be named; the free path allocates nothing).
    wait: Option<Wait>,
    done: bool,
}

impl AdaptiveAcquire {
    pub(super) fn new(limit: AdaptiveLimit) -> Self {
        Self {
            limit,
            ctx: None,
            wait: None,
            done: false,
        }
    }

    /// Waits only as long as `ctx` (a [`Context`] or a `CancellationToken`)
    /// is not cancelled and its deadline has not passed. Set it before the
    /// first poll; setting it later restarts the wait at the back of the
    /// queue.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.ctx = Some(ctx.into());
        self.wait = None;
        self
    }

    /// The first poll: a permit now, a refusal, or the wait.
    fn start(&mut self) -> Result<Result<OwnedSemaphorePermit, AdaptiveLimitError>, Wait> {
        let ctx = self.ctx.clone();
        if let Some(ctx) = &ctx
            && ctx.is_cancelled()
        {
            return Ok(Err(stopped(ctx)));
        }
        let sem = Arc::clone(&self.limit.inner.sem);
        if let Ok(permit) = Arc::clone(&sem).try_acquire_owned() {
            return Ok(Ok(permit));
        }
        Err(Box::pin(async move {
            let take = sem.acquire_owned();
            let permit = match &ctx {
                None => take.await,
                Some(ctx) => tokio::select! {
                    // The context first: once it is cancelled the call takes
                    // nothing, even if a slot came free at the same time
                    // (dropping `take` hands it to the next waiter).
                    biased;
                    _ = ctx.cancelled() => return Err(stopped(ctx)),
                    permit = take => permit,
                },
            };
            // The semaphore is never closed; if it were, the wait could only
            // end this way.
            permit.map_err(|_closed| AdaptiveLimitError::Stopped(Cause::Cancelled))
        }))
    }
}

fn stopped(ctx: &Context) -> AdaptiveLimitError {
    AdaptiveLimitError::Stopped(ctx.stopped().into_cause())
}

impl Future for AdaptiveAcquire {
    type Output = Result<AdaptivePermit, AdaptiveLimitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "`AdaptiveAcquire` polled after completion");
        let this = &mut *self;
        let out = match this.wait.as_mut() {
            Some(wait) => wait.as_mut().poll(cx),
            None => match this.start() {
                Ok(now) => Poll::Ready(now),
                Err(mut wait) => {
                    let polled = wait.as_mut().poll(cx);
                    this.wait = Some(wait);
                    polled
                }
            },
        };
        let Poll::Ready(out) = out else {
            return Poll::Pending;
        };
        this.done = true;
        this.wait = None;
        Poll::Ready(match out {
            Ok(permit) => Ok(this.limit.admit(permit)),
            Err(err) => {
                this.limit.note_stopped();
                Err(err)
            }
        })
    }
}

impl fmt::Debug for AdaptiveAcquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveAcquire")
            .field("limit", &self.limit.name())
            .field("context", &self.ctx)
            .field("waiting", &self.wait.is_some())
            .finish()
    }
}
