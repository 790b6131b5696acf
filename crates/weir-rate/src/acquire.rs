//! [`AcquireTokens`]: the future of a wait for tokens, with its context.

use std::fmt;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::task::{Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use weir_context::{Cause, Context};

use crate::error::{InsufficientCapacity, WaitError};
use crate::gcra::{Decision, Mode};
use crate::limiter::{RateLimiter, Refusal};
use crate::reservation::CancelOnDrop;

/// The part of a wait that has to wait: queueing, then sleeping. Boxed, so
/// that a wait that needs no waiting (the common case) allocates nothing.
type Waiting = Pin<Box<dyn Future<Output = Result<(), WaitError>> + Send + Sync>>;

pin_project! {
    /// A wait for tokens: the future returned by [`RateLimiter::acquire`],
    /// [`RateLimiter::acquire_n`] and the [`KeyedRateLimiter`] forms, Go's
    /// `Limiter.WaitN`. Await it to take the tokens; give it a context with
    /// [`context`](Self::context) to bound or cancel the wait.
    ///
    /// Waiters are served in arrival order: they queue on a FIFO lock, and
    /// the one at the head reserves its tokens and sleeps until they are
    /// ready (see [`RateLimiter`'s fairness](RateLimiter#fairness)). When no
    /// one is queued and the tokens are there, it completes on its first
    /// poll without allocating.
    ///
    /// # Errors
    ///
    /// Nothing is taken when it fails; each failure but a stop is reported
    /// at once, without waiting:
    ///
    /// - [`WaitError::InsufficientCapacity`] when `n` is above the burst, or
    ///   the bucket is a spent [`Rate::zero`](crate::Rate::zero) one: those
    ///   tokens could never come (an unlimited rate grants any `n`);
    /// - [`WaitError::WouldExceedDeadline`] when the context has a deadline
    ///   and the tokens would only be ready after it;
    /// - [`WaitError::Stopped`] with the context's [`Cause`] when it is
    ///   cancelled, or its deadline passes, before the tokens are granted
    ///   (including a context that had already ended: nothing is taken
    ///   then, even for `n = 0`). A passed deadline is
    ///   [`Cause::DeadlineExceeded`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it before it completes — a timeout, a
    /// `select!`, an aborted task — gives back the tokens it had reserved
    /// and leaves its place in the queue, so it takes nothing.
    ///
    /// # Panics
    ///
    /// Polled again after it completed, like most futures. While it sleeps
    /// it needs the tokio runtime's timer, as [`tokio::time::sleep`] does.
    ///
    /// # Examples
    ///
    /// ```
    /// # mod weir { pub use weir_rate as rate; pub use weir_context::{Cause, Context}; }
    /// use std::time::Duration;
    /// use weir::{Cause, Context};
    /// use weir::rate::{Rate, RateLimiter, WaitError};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// let limiter = RateLimiter::new(Rate::per_second(10))?;
    /// limiter.acquire().await?; // the burst of 1, at once
    ///
    /// // Cancelled while it waits for the next token (due at 100 ms).
    /// let ctx = Context::background();
    /// let canceller = ctx.clone();
    /// tokio::spawn(async move {
    ///     tokio::time::sleep(Duration::from_millis(30)).await;
    ///     canceller.cancel();
    /// });
    /// let err = limiter.acquire().context(&ctx).await.unwrap_err();
    /// assert_eq!(err, WaitError::Stopped(Cause::Cancelled));
    ///
    /// // The cancelled wait gave its token back: it is there at 100 ms.
    /// let ctx = Context::background().with_timeout(Duration::from_millis(70));
    /// limiter.acquire().context(ctx).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub struct AcquireTokens<'a> {
        limiter: Source<'a>,
        n: u32,
        ctx: Option<Context>,
        state: State,
        // `context` may only be set before the first poll: once pinned,
        // the future cannot be moved out to call it.
        #[pin]
        _pinned: PhantomPinned,
    }
}

enum Source<'a> {
    Borrowed(&'a RateLimiter),
    Owned(RateLimiter),
}

enum State {
    Start,
    Waiting(Waiting),
    Done,
}

impl<'a> AcquireTokens<'a> {
    pub(crate) fn borrowed(limiter: &'a RateLimiter, n: u32) -> Self {
        Self::with(Source::Borrowed(limiter), n)
    }

    fn with(limiter: Source<'a>, n: u32) -> Self {
        AcquireTokens {
            limiter,
            n,
            ctx: None,
            state: State::Start,
            _pinned: PhantomPinned,
        }
    }

    /// Waits only as long as `ctx` lets it (Go's `WaitN(ctx, n)`): a
    /// [`Context`], a `&Context` or a `CancellationToken`.
    ///
    /// If the tokens would be ready only after the context's deadline, the
    /// wait fails at once with [`WaitError::WouldExceedDeadline`], taking
    /// nothing; if the context is cancelled (or its deadline passes) first,
    /// it stops with [`WaitError::Stopped`] and its cause, giving back what
    /// it had reserved. Cancelling the wait never cancels the context.
    /// A context without a deadline (or with one beyond the clock's range)
    /// bounds nothing: the wait ends when the tokens come or the context is
    /// cancelled.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.ctx = Some(ctx.into());
        self
    }
}

impl AcquireTokens<'static> {
    /// A wait that holds its own clone of the limiter (the keyed limiter's
    /// buckets, a throttled stream).
    pub(crate) fn owned(limiter: RateLimiter, n: u32) -> Self {
        Self::with(Source::Owned(limiter), n)
    }
}

impl Source<'_> {
    fn get(&self) -> &RateLimiter {
        match self {
            Source::Borrowed(limiter) => limiter,
            Source::Owned(limiter) => limiter,
        }
    }
}

impl fmt::Debug for AcquireTokens<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Start => "start",
            State::Waiting(_) => "waiting",
            State::Done => "done",
        };
        f.debug_struct("AcquireTokens")
            .field("limiter", self.limiter.get())
            .field("tokens", &self.n)
            .field("context", &self.ctx)
            .field("state", &state)
            .finish()
    }
}

impl Future for AcquireTokens<'_> {
    type Output = Result<(), WaitError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let State::Start = this.state {
            let limiter = this.limiter.get();
            if let Some(decided) = decide_now(limiter, *this.n, this.ctx.as_ref()) {
                *this.state = State::Done;
                #[cfg(feature = "metrics")]
                record(limiter, &decided);
                return Poll::Ready(decided);
            }
            let waiting = wait(limiter.clone(), *this.n, this.ctx.clone());
            *this.state = State::Waiting(Box::pin(waiting));
        }
        match this.state {
            State::Waiting(waiting) => {
                let out = ready!(waiting.as_mut().poll(cx));
                *this.state = State::Done;
                #[cfg(feature = "metrics")]
                record(this.limiter.get(), &out);
                Poll::Ready(out)
            }
            _ => panic!("AcquireTokens polled after completion"),
        }
    }
}

/// Counts a wait's end as the limiter's decision: granted, or refused by
/// the limiter (a wait its context stopped is neither).
#[cfg(feature = "metrics")]
fn record(limiter: &RateLimiter, out: &Result<(), WaitError>) {
    match out {
        Ok(()) => limiter.label.decided(true),
        Err(WaitError::InsufficientCapacity(_) | WaitError::WouldExceedDeadline { .. }) => {
            limiter.label.decided(false);
        }
        Err(_) => {}
    }
}

/// What a wait can decide without waiting: `None` when it has to queue or
/// sleep.
#[inline]
fn decide_now(
    limiter: &RateLimiter,
    n: u32,
    ctx: Option<&Context>,
) -> Option<Result<(), WaitError>> {
    let quota = limiter.inner.gcra.quota();
    if quota.period_ns != 0 && n > quota.burst {
        return Some(Err(InsufficientCapacity::new(n, &quota).into()));
    }
    if let Some(cause) = ctx.and_then(ended) {
        return Some(Err(WaitError::Stopped(cause)));
    }
    if quota.period_ns == 0 || n == 0 {
        return Some(Ok(()));
    }
    // With nobody queued, tokens that are there now are taken at once.
    let _turn = limiter.inner.queue.try_lock().ok()?;
    match limiter.inner.gcra.decide(Mode::Take, n, limiter.now_ns()) {
        Decision::Granted { .. } => Some(Ok(())),
        Decision::Denied { earliest: None } => Some(Err(insufficient(limiter, n))),
        Decision::Denied { earliest: Some(at) } => {
            let deadline = ctx.and_then(Context::deadline)?;
            let too_late = limiter.instant_at(at).is_none_or(|at| at > deadline);
            too_late.then_some(Err(WaitError::WouldExceedDeadline { requested: n }))
        }
    }
}

/// Why `ctx` has ended, if it has: its cause, or a deadline that has passed
/// (before its timer has fired).
fn ended(ctx: &Context) -> Option<Cause> {
    ctx.cause()
        .or_else(|| (ctx.remaining() == Some(Duration::ZERO)).then_some(Cause::DeadlineExceeded))
}

fn insufficient(limiter: &RateLimiter, n: u32) -> WaitError {
    InsufficientCapacity::new(n, &limiter.inner.gcra.quota()).into()
}

/// Waits in line, then for the tokens, unless `ctx` ends first.
async fn wait(limiter: RateLimiter, n: u32, ctx: Option<Context>) -> Result<(), WaitError> {
    let Some(ctx) = ctx else {
        return wait_in_line(&limiter, n, None).await;
    };
    match ctx.run(wait_in_line(&limiter, n, Some(&ctx))).await {
        Ok(done) => done,
        Err(stopped) => Err(WaitError::Stopped(stopped.into_cause())),
    }
}

/// Queues for the head of the line, reserves the tokens there (so only the
/// head holds a reservation, and a cancel gives all of it back), and sleeps
/// until they are ready. Dropped at any point, it takes nothing.
async fn wait_in_line(
    limiter: &RateLimiter,
    n: u32,
    ctx: Option<&Context>,
) -> Result<(), WaitError> {
    // Only waits that could not be granted at their first poll get here:
    // the wait histogram's samples.
    #[cfg(feature = "metrics")]
    let started = tokio::time::Instant::now();
    let _turn = limiter.inner.queue.lock().await;
    let max_wait = match ctx.and_then(Context::remaining) {
        None => u64::MAX,
        Some(Duration::ZERO) => return Err(WaitError::Stopped(Cause::DeadlineExceeded)),
        Some(left) => u64::try_from(left.as_nanos()).unwrap_or(u64::MAX),
    };
    let reservation = match limiter.reserve_at_most(n, max_wait) {
        Ok(reservation) => reservation,
        Err(Refusal::Never) => return Err(insufficient(limiter, n)),
        Err(Refusal::Later) => return Err(WaitError::WouldExceedDeadline { requested: n }),
    };
    if reservation.is_due() {
        #[cfg(feature = "metrics")]
        limiter.label.waited(started.elapsed());
        return Ok(());
    }
    let reserved = CancelOnDrop::new(reservation);
    reserved.ready().await;
    reserved.keep();
    #[cfg(feature = "metrics")]
    limiter.label.waited(started.elapsed());
    Ok(())
}
