//! [`WeightedAcquire`]: the future of [`Semaphore::acquire`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use weir_context::{Cause, Context};

use super::{Semaphore, SemaphoreError, WeightedPermit};

type Wait = Pin<Box<dyn Future<Output = Result<WeightedPermit, SemaphoreError>> + Send>>;

/// The future of [`Semaphore::acquire`]: takes `n` permits, waiting in line.
///
/// Bound the wait with [`context`](Self::context). Without it, the wait
/// ends only when the permits are handed over.
///
/// # Panics
///
/// When polled again after it completed.
#[must_use = "futures do nothing unless polled"]
pub struct WeightedAcquire<'a> {
    sem: &'a Semaphore,
    n: u32,
    ctx: Option<Context>,
    /// The wait, once the permits were not free at the first poll (boxed:
    /// tokio's acquire future cannot be named; the free path allocates
    /// nothing).
    wait: Option<Wait>,
    done: bool,
}

impl<'a> WeightedAcquire<'a> {
    pub(super) fn new(sem: &'a Semaphore, n: u32) -> Self {
        Self {
            sem,
            n,
            ctx: None,
            wait: None,
            done: false,
        }
    }

    /// Waits only as long as `ctx` (a [`Context`] or a
    /// `CancellationToken`) is not cancelled and its deadline has not
    /// passed. Set it before the first poll; setting it later restarts the
    /// wait at the back of the queue.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.ctx = Some(ctx.into());
        self.wait = None;
        self
    }

    /// The first poll: the answer now, or the wait.
    fn start(&mut self) -> Result<Result<WeightedPermit, SemaphoreError>, Wait> {
        let ctx = self.ctx.clone();
        if let Some(ctx) = &ctx
            && ctx.is_cancelled()
        {
            return Ok(Err(stopped(ctx)));
        }
        if self.n as usize > self.sem.size() {
            // Hopeless: it must not hold back the queue, so it waits for its
            // context alone (Go), or fails when nothing could end the wait.
            return match ctx {
                None => Ok(Err(self.sem.too_large(self.n))),
                Some(ctx) => Err(Box::pin(async move {
                    ctx.cancelled().await;
                    Err(stopped(&ctx))
                })),
            };
        }
        if let Ok(permit) = Arc::clone(&self.sem.inner.fair).try_acquire_many_owned(self.n) {
            return Ok(Ok(self.sem.wrap(permit)));
        }
        let sem = self.sem.clone();
        let n = self.n;
        Err(Box::pin(async move {
            let take = Arc::clone(&sem.inner.fair).acquire_many_owned(n);
            let permit = match &ctx {
                None => take.await,
                Some(ctx) => tokio::select! {
                    // The context first: once it is cancelled the call must
                    // take nothing, even if the permits came at the same
                    // time (dropping `take` hands them to the next waiter).
                    biased;
                    _ = ctx.cancelled() => return Err(stopped(ctx)),
                    permit = take => permit,
                },
            };
            match permit {
                Ok(permit) => Ok(sem.wrap(permit)),
                // The tokio semaphore is never closed; if it were, this wait
                // could only end this way.
                Err(_closed) => Err(SemaphoreError::Stopped(Cause::Cancelled)),
            }
        }))
    }
}

fn stopped(ctx: &Context) -> SemaphoreError {
    SemaphoreError::Stopped(ctx.stopped().into_cause())
}

impl Future for WeightedAcquire<'_> {
    type Output = Result<WeightedPermit, SemaphoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "`WeightedAcquire` polled after completion");
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
        if out.is_ready() {
            this.done = true;
            this.wait = None;
        }
        out
    }
}

impl fmt::Debug for WeightedAcquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightedAcquire")
            .field("n", &self.n)
            .field("context", &self.ctx)
            .field("waiting", &self.wait.is_some())
            .finish()
    }
}
