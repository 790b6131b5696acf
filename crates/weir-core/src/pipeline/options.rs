//! A stage's per-item options beyond the timeout: a slot of an adaptive
//! limit around each attempt ([`Pipeline::adaptive`](super::Pipeline::adaptive))
//! and retries ([`Pipeline::retry`](super::Pipeline::retry)).
//!
//! The nesting, from the outside in: the retries; for each attempt a slot
//! of the limit; inside it the per-item timeout; inside that the stage
//! function, its panic caught. So a timeout is the attempt's (and a
//! `dropped` verdict for the limit), a backoff holds no slot, and a panic
//! frees the slot unjudged and is not retried.

use std::any::Any;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures::FutureExt;

use super::error::PipelineError;
use super::run::{Env, Outcome};
use super::stage::Process;
use crate::adaptive::AdaptiveLimit;
use crate::channel::EdgeTx;
use crate::retry::{Attempts, Finished, GiveUpReason, Next, RetryPolicy};
use weir_context::Panic;

/// What a stage's workers apply to each item, read when the pipeline
/// starts.
pub(crate) struct ItemOpts<I, E> {
    pub(crate) timeout: Option<Duration>,
    /// The adaptive limit and the retry policy, if either was set: `None`
    /// keeps the plain path.
    pub(crate) extra: Option<Arc<Extra<I, E>>>,
}

impl<I, E> ItemOpts<I, E> {
    /// The stage's adaptive limit, if it has one.
    pub(crate) fn limit(&self) -> Option<AdaptiveLimit> {
        self.extra.as_ref().and_then(|x| x.limit.clone())
    }
}

impl<I, E> Clone for ItemOpts<I, E> {
    fn clone(&self) -> Self {
        Self {
            timeout: self.timeout,
            extra: self.extra.clone(),
        }
    }
}

/// The options that change how an item runs.
pub(crate) struct Extra<I, E> {
    pub(crate) limit: Option<AdaptiveLimit>,
    pub(crate) retry: Option<Retry<I, E>>,
}

/// A stage's retry policy, with the clone of its input type that gives
/// each attempt its own item (`Clone` was required by
/// [`Pipeline::retry`](super::Pipeline::retry)).
pub(crate) struct Retry<I, E> {
    pub(crate) policy: RetryPolicy<E>,
    pub(crate) clone: fn(&I) -> I,
}

/// How one attempt ended.
enum Attempt<O, E> {
    Done(Option<O>),
    Failed(E),
    TimedOut(Duration),
    Panicked(Box<dyn Any + Send>),
}

/// An attempt's failure, as the retry's log shows it.
struct Failure<'a, O, E>(&'a Attempt<O, E>);

impl<O, E: fmt::Display> fmt::Display for Failure<'_, O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Attempt::Failed(e) => write!(f, "{e:#}"),
            Attempt::TimedOut(after) => write!(f, "timed out after {after:?}"),
            Attempt::Done(_) | Attempt::Panicked(_) => Ok(()),
        }
    }
}

impl<E: fmt::Display + Send + 'static> Env<E> {
    /// [`Env::process`] for a stage with an adaptive limit or a retry
    /// policy: runs the item's attempts, then counts and reports how it
    /// ended as the plain path does.
    pub(crate) async fn process_with<I, O, P, X>(
        &mut self,
        proc: &mut P,
        item: I,
        timeout: Option<Duration>,
        extra: &Extra<I, E>,
        out: &mut EdgeTx<X>,
    ) -> Outcome<O>
    where
        P: Process<I, O, E>,
    {
        let deadline = self.shared.ctx.deadline();
        let counters = Arc::clone(&self.counters);
        let work = async {
            match &extra.retry {
                None => attempt(proc, item, timeout, extra.limit.as_ref()).await,
                Some(retry) => {
                    let limit = extra.limit.as_ref();
                    let mut attempts = Attempts::begin(&retry.policy, deadline);
                    loop {
                        attempts.attempt();
                        counters.attempts.fetch_add(1, Relaxed);
                        if attempts.is_last() {
                            break;
                        }
                        let end = attempt(proc, (retry.clone)(&item), timeout, limit).await;
                        let retryable = match &end {
                            Attempt::Done(_) => {
                                attempts.end(Finished::Succeeded);
                                return end;
                            }
                            Attempt::Panicked(_) => {
                                attempts.end(Finished::GaveUp);
                                return end;
                            }
                            Attempt::Failed(e) => attempts.retryable(e),
                            // A timeout is the transient failure retry is for.
                            Attempt::TimedOut(_) => true,
                        };
                        let next = attempts.after_failure(retryable, &Failure(&end));
                        match next {
                            Next::Retry(delay) => {
                                drop(end);
                                tokio::time::sleep(delay).await;
                                attempts.backed_off(delay);
                                counters.retries.fetch_add(1, Relaxed);
                            }
                            Next::GiveUp(reason) => {
                                if reason == GiveUpReason::Budget {
                                    counters.budget_refusals.fetch_add(1, Relaxed);
                                }
                                attempts.end(Finished::GaveUp);
                                return end;
                            }
                        }
                    }
                    // The last attempt the policy allows takes the item itself.
                    let end = attempt(proc, item, timeout, limit).await;
                    attempts.end(match end {
                        Attempt::Done(_) => Finished::Succeeded,
                        _ => Finished::GaveUp,
                    });
                    end
                }
            }
        };
        let Some(end) = self.run(work, out).await else {
            return Outcome::Stopped;
        };
        let c = &self.counters;
        match end {
            Attempt::Done(Some(out)) => Outcome::Item(out),
            Attempt::Done(None) => Outcome::Filtered,
            Attempt::Failed(error) => {
                c.failed.fetch_add(1, Relaxed);
                self.fail(PipelineError::Failed {
                    stage: self.stage(),
                    error,
                });
                Outcome::Failed
            }
            Attempt::Panicked(payload) => {
                c.failed.fetch_add(1, Relaxed);
                c.panicked.fetch_add(1, Relaxed);
                self.fail(PipelineError::Panicked {
                    stage: self.stage(),
                    panic: Panic::from_payload(payload),
                });
                Outcome::Failed
            }
            Attempt::TimedOut(after) => {
                c.failed.fetch_add(1, Relaxed);
                c.timed_out.fetch_add(1, Relaxed);
                self.fail(PipelineError::TimedOut {
                    stage: self.stage(),
                    after,
                });
                Outcome::Failed
            }
        }
    }
}

/// One attempt: a slot of the limit (if any) around the timeout (if any)
/// around the stage function. The slot's verdict: a success for a value
/// (or a filtered item), nothing learnt from an error (yours, most often),
/// a drop for a timeout; a panic frees it unjudged.
async fn attempt<I, O, E, P>(
    proc: &mut P,
    item: I,
    timeout: Option<Duration>,
    limit: Option<&AdaptiveLimit>,
) -> Attempt<O, E>
where
    P: Process<I, O, E>,
{
    let permit = match limit {
        Some(limit) => Some(limit.slot().await),
        None => None,
    };
    let work = AssertUnwindSafe(async { proc.call(item).await }).catch_unwind();
    let ended = match timeout {
        None => Some(work.await),
        Some(d) => tokio::time::timeout(d, work).await.ok(),
    };
    let end = match ended {
        Some(Ok(Ok(out))) => Attempt::Done(out),
        Some(Ok(Err(error))) => Attempt::Failed(error),
        Some(Err(payload)) => Attempt::Panicked(payload),
        None => Attempt::TimedOut(timeout.unwrap_or_default()),
    };
    if let Some(permit) = permit {
        match &end {
            Attempt::Done(_) => permit.success(),
            Attempt::Failed(_) => permit.ignore(),
            Attempt::TimedOut(_) => permit.dropped(),
            Attempt::Panicked(_) => drop(permit),
        }
    }
    end
}
