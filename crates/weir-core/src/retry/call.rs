//! [`RetryCall`]: the future of [`retry`](super::retry), a small state
//! machine: attempt, then (after a failure the policy retries) back off,
//! then attempt again.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;
use weir_context::{Cause, Context};

use super::attempts::{Attempts, Finished, Next};
use super::{GiveUpReason, RetryError, RetryPolicy, RetryReport};

type Outcome<T, E> = (Result<T, RetryError<E>>, RetryReport);

pin_project! {
    #[project = StateProj]
    enum State<Fut> {
        // Not polled yet.
        Idle,
        Running { #[pin] fut: Fut },
        Sleeping { #[pin] sleep: Sleep, since: Instant },
        Done,
    }
}

pin_project! {
    #[project = RetryCallProj]
    /// The future of [`retry`](super::retry): runs the operation until it
    /// succeeds or the policy gives up. Resolves to `Result<T, RetryError<E>>`;
    /// [`with_report`](Self::with_report) adds the call's [`RetryReport`]
    /// on success too.
    ///
    /// Nothing runs until it is polled. Bound it with
    /// [`context`](Self::context).
    ///
    /// # Panics
    ///
    /// When polled again after it completed. A panic in the operation is
    /// not caught: it unwinds through this future's `poll`, as with any
    /// future the caller awaits (retry spawns nothing).
    #[must_use = "futures do nothing unless polled"]
    pub struct RetryCall<F, Fut, E> {
        policy: RetryPolicy<E>,
        op: F,
        ctx: Option<Context>,
        cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
        #[pin]
        state: State<Fut>,
        // The call's accounting, from the first poll (dropped before its
        // end, it counts the call as abandoned).
        attempts: Option<Attempts<E>>,
        last_error: Option<E>,
    }
}

impl<F, Fut, E> RetryCall<F, Fut, E> {
    pub(super) fn new(policy: RetryPolicy<E>, op: F) -> Self {
        Self {
            policy,
            op,
            ctx: None,
            cancelled: None,
            state: State::Idle,
            attempts: None,
            last_error: None,
        }
    }

    /// Runs under `ctx` (a [`Context`] or a `CancellationToken`): its
    /// cancellation stops the call (the attempt in progress is dropped, a
    /// backoff is cut short) with [`RetryError::Stopped`], and no backoff
    /// is slept that would end at or after its deadline: the call gives up
    /// with [`GiveUpReason::Deadline`](super::GiveUpReason::Deadline) and
    /// the last error instead. Set it before the first poll; later it is
    /// ignored.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        if matches!(self.state, State::Idle) {
            self.ctx = Some(ctx.into());
        }
        self
    }

    /// Resolves to the result and the call's [`RetryReport`], so the
    /// attempts of a success can be counted too.
    pub fn with_report(self) -> RetryCallWithReport<F, Fut, E> {
        RetryCallWithReport { call: self }
    }
}

impl<F, Fut, T, E> RetryCall<F, Fut, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    fn poll_outcome(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Outcome<T, E>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Idle => {
                    let deadline = this.ctx.as_ref().and_then(Context::deadline);
                    let attempts = this.attempts.insert(Attempts::begin(this.policy, deadline));
                    if let Some(ctx) = this.ctx.as_ref() {
                        if ctx.is_cancelled() {
                            let cause = ctx.stopped().into_cause();
                            return Poll::Ready(stopped(&mut this, cause));
                        }
                        *this.cancelled = Some(Box::pin(ctx.token().cancelled_owned()));
                    }
                    attempts.attempt();
                    let fut = (this.op)();
                    this.state.set(State::Running { fut });
                }
                StateProj::Running { fut } => match fut.poll(cx) {
                    Poll::Ready(Ok(value)) => {
                        let report = end(&mut this, Finished::Succeeded);
                        return Poll::Ready((Ok(value), report));
                    }
                    Poll::Ready(Err(error)) => {
                        // An attempt runs only after the call began.
                        let next = this.attempts.as_mut().map_or(
                            Next::GiveUp(GiveUpReason::NotRetryable),
                            |a| {
                                let retryable = a.retryable(&error);
                                a.after_failure(retryable, &error)
                            },
                        );
                        match next {
                            Next::Retry(delay) => {
                                *this.last_error = Some(error);
                                this.state.set(State::Sleeping {
                                    sleep: sleep(delay),
                                    since: Instant::now(),
                                });
                            }
                            Next::GiveUp(reason) => {
                                let report = end(&mut this, Finished::GaveUp);
                                let err = RetryError::Failed {
                                    error,
                                    reason,
                                    report,
                                };
                                return Poll::Ready((Err(err), report));
                            }
                        }
                    }
                    Poll::Pending => {
                        if let Some(cause) = poll_cancelled(this.cancelled, this.ctx, cx) {
                            return Poll::Ready(stopped(&mut this, cause));
                        }
                        return Poll::Pending;
                    }
                },
                StateProj::Sleeping { sleep, since } => {
                    let since = *since;
                    if let Some(cause) = poll_cancelled(this.cancelled, this.ctx, cx) {
                        if let Some(a) = this.attempts.as_mut() {
                            a.waited(since.elapsed());
                        }
                        return Poll::Ready(stopped(&mut this, cause));
                    }
                    ready!(sleep.poll(cx));
                    if let Some(a) = this.attempts.as_mut() {
                        a.backed_off(since.elapsed());
                        a.attempt();
                    }
                    let fut = (this.op)();
                    this.state.set(State::Running { fut });
                }
                StateProj::Done => panic!("`RetryCall` polled after completion"),
            }
        }
    }
}

type Proj<'a, F, Fut, E> = RetryCallProj<'a, F, Fut, E>;

/// The cause, once the call's context is cancelled.
fn poll_cancelled(
    cancelled: &mut Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    ctx: &Option<Context>,
    cx: &mut TaskContext<'_>,
) -> Option<Cause> {
    let cancelled = cancelled.as_mut()?;
    cancelled.as_mut().poll(cx).is_ready().then(|| {
        ctx.as_ref()
            .map_or(Cause::Cancelled, |ctx| ctx.stopped().into_cause())
    })
}

/// Ends the call: drops the attempt in progress, counts the end, and
/// returns the final report.
fn end<F, Fut, E>(this: &mut Proj<'_, F, Fut, E>, how: Finished) -> RetryReport {
    this.state.set(State::Done);
    this.attempts
        .as_mut()
        .map_or_else(RetryReport::default, |a| a.end(how))
}

fn stopped<F, Fut, T, E>(this: &mut Proj<'_, F, Fut, E>, cause: Cause) -> Outcome<T, E> {
    let report = end(this, Finished::Stopped);
    let last_error = this.last_error.take();
    let err = RetryError::Stopped {
        cause,
        last_error,
        report,
    };
    (Err(err), report)
}

impl<F, Fut, T, E> Future for RetryCall<F, Fut, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    type Output = Result<T, RetryError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.poll_outcome(cx).map(|(result, _)| result)
    }
}

impl<F, Fut, E> fmt::Debug for RetryCall<F, Fut, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle => "idle",
            State::Running { .. } => "running",
            State::Sleeping { .. } => "backing off",
            State::Done => "done",
        };
        f.debug_struct("RetryCall")
            .field("state", &state)
            .field("report", &self.attempts.as_ref().map(Attempts::report))
            .field("context", &self.ctx)
            .finish()
    }
}

pin_project! {
    /// [`RetryCall::with_report`]: resolves to the result and the call's
    /// [`RetryReport`].
    #[must_use = "futures do nothing unless polled"]
    pub struct RetryCallWithReport<F, Fut, E> {
        #[pin]
        call: RetryCall<F, Fut, E>,
    }
}

impl<F, Fut, T, E> Future for RetryCallWithReport<F, Fut, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    type Output = (Result<T, RetryError<E>>, RetryReport);

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.project().call.poll_outcome(cx)
    }
}

impl<F, Fut, E> fmt::Debug for RetryCallWithReport<F, Fut, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RetryCallWithReport")
            .field(&self.call)
            .finish()
    }
}
