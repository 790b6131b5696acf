//! How a worker runs one job: the handler alone ([`Plain`]), or inside the
//! pool's options — a slot of an adaptive limit ([`Limited`]) and retries
//! ([`Retrying`]).
//!
//! The worker loop is generic over its [`JobRunner`], so a pool without
//! options runs the handler's own future with nothing around it (the same
//! code as before the options existed), and each option costs only the
//! pools that use it.

use std::future::Future;

use tokio::time::Instant;

use super::JobHandler;
use super::counters::WorkerCounters;
use crate::adaptive::{AdaptiveLimit, ClassifyOutcome};
use crate::retry::{Attempts, Finished, GiveUpReason, Next, RetryPolicy};

/// Runs one job with handler `H`.
pub(crate) trait JobRunner<H: JobHandler>: Send + Sync + 'static {
    /// The job's result. A panic unwinds through the future (the worker
    /// catches it); the worker drops the future when the pool is
    /// cancelled.
    fn run<'a>(
        &'a self,
        handler: &'a mut H,
        job: H::Job,
        counters: &'a WorkerCounters,
    ) -> impl Future<Output = Result<H::Output, H::Error>> + Send + 'a;
}

/// No option: the handler's future as it is.
#[derive(Debug)]
pub(crate) struct Plain;

impl<H: JobHandler> JobRunner<H> for Plain {
    #[inline]
    fn run<'a>(
        &'a self,
        handler: &'a mut H,
        job: H::Job,
        _: &'a WorkerCounters,
    ) -> impl Future<Output = Result<H::Output, H::Error>> + Send + 'a {
        handler.handle(job)
    }
}

/// Each job holds a slot of an adaptive limit while it runs, taken after
/// the job was dequeued (so the limit measures the job alone, and counts
/// in flight only the jobs that run) and given back with the job's
/// outcome, as `classify` says. A panic or a cancellation drops the permit
/// (counted as abandoned, no sample).
#[derive(Debug)]
pub(crate) struct Limited<C> {
    pub(crate) limit: AdaptiveLimit,
    pub(crate) classify: C,
}

impl<H, C> JobRunner<H> for Limited<C>
where
    H: JobHandler,
    C: ClassifyOutcome<H::Output, H::Error> + Send + Sync + 'static,
{
    async fn run<'a>(
        &'a self,
        handler: &'a mut H,
        job: H::Job,
        _: &'a WorkerCounters,
    ) -> Result<H::Output, H::Error> {
        let permit = self.limit.slot().await;
        let result = handler.handle(job).await;
        permit.finish(self.classify.classify(&result));
        result
    }
}

/// Retries of the inner runner's failures, under a policy: the job is
/// cloned for every attempt but the last. A panic is not retried (it
/// unwinds through here to the worker).
#[derive(Debug)]
pub(crate) struct Retrying<X, E> {
    pub(crate) inner: X,
    pub(crate) policy: RetryPolicy<E>,
    /// The pool's deadline: no backoff is slept that would end after it.
    pub(crate) deadline: Option<Instant>,
}

impl<H, X> JobRunner<H> for Retrying<X, H::Error>
where
    H: JobHandler,
    H::Job: Clone,
    X: JobRunner<H>,
{
    async fn run<'a>(
        &'a self,
        handler: &'a mut H,
        job: H::Job,
        counters: &'a WorkerCounters,
    ) -> Result<H::Output, H::Error> {
        let mut attempts = Attempts::begin(&self.policy, self.deadline);
        loop {
            attempts.attempt();
            counters.attempted();
            if attempts.is_last() {
                break;
            }
            let error = match self.inner.run(handler, job.clone(), counters).await {
                Ok(out) => {
                    attempts.end(Finished::Succeeded);
                    return Ok(out);
                }
                Err(error) => error,
            };
            let retryable = attempts.retryable(&error);
            let next = attempts.after_failure(retryable, &error);
            match next {
                Next::Retry(delay) => {
                    drop(error);
                    tokio::time::sleep(delay).await;
                    attempts.backed_off(delay);
                    counters.retried();
                }
                Next::GiveUp(reason) => {
                    if reason == GiveUpReason::Budget {
                        counters.budget_refused();
                    }
                    attempts.end(Finished::GaveUp);
                    return Err(error);
                }
            }
        }
        // The last attempt the policy allows takes the job itself.
        let result = self.inner.run(handler, job, counters).await;
        attempts.end(if result.is_ok() {
            Finished::Succeeded
        } else {
            Finished::GaveUp
        });
        result
    }
}
