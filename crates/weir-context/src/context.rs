//! [`Context`]: Go's `context` on tokio-util's `CancellationToken`.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::cause::{Cause, CauseValue, Stopped};

struct Inner {
    token: CancellationToken,
    /// The effective deadline: the earlier of the parent's and its own.
    deadline: Option<Instant>,
    /// Set once, by the first cancellation of this context itself.
    cause: OnceLock<Cause>,
    parent: Option<Context>,
    /// The deadline timer, when this context has a deadline of its own.
    timer: Option<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(timer) = &self.timer {
            timer.abort();
        }
        // Unlink the parent chain iteratively: dropping a context nested
        // 100,000 deep must not recurse 100,000 times.
        let mut parent = self.parent.take();
        while let Some(ctx) = parent {
            parent = match Arc::try_unwrap(ctx.inner) {
                Ok(mut inner) => inner.parent.take(),
                Err(_shared) => None,
            };
        }
    }
}

/// Cancellation with a cause and a deadline: Go's `context`, on top of
/// tokio-util's `CancellationToken`.
///
/// A [`Context`] is a `CancellationToken` ([`Context::token`]) plus two
/// things the token lacks:
///
/// - a **deadline** that children inherit — a child never outlives its
///   parent's deadline, the earlier one wins ([`Context::with_timeout`],
///   [`Context::with_deadline`]);
/// - a **cause** — why it was cancelled: [`Cause::Cancelled`],
///   [`Cause::DeadlineExceeded`], or an error of yours given to
///   [`Context::cancel_with`]. The first cancellation of a context or of one
///   of its parents sets the cause, as in Go.
///
/// Every weir construct takes its `Context` the same way, with
/// `.context(ctx)` on its builder or options (a `CancellationToken`, or a
/// `&Context`, converts), runs on a child of it, and, when it stopped
/// because the context was cancelled, reports the cause in its error, so
/// "the deadline passed", "someone cancelled" and "a stage failed" can be
/// told apart.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_context::{Cause, Context};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let ctx = Context::background().with_timeout(Duration::from_secs(1));
/// let slow = tokio::time::sleep(Duration::from_secs(5));
/// let stopped = ctx.run(slow).await.unwrap_err();
/// assert!(matches!(stopped.cause(), Cause::DeadlineExceeded));
///
/// let ctx = Context::background();
/// ctx.cancel_with("user pressed stop");
/// assert_eq!(ctx.cause().map(|c| c.to_string()).as_deref(), Some("user pressed stop"));
/// # }
/// ```
///
/// # Timers and tasks
///
/// A context with a deadline of its own (earlier than its parent's) runs one
/// small tokio task that sleeps until the deadline and cancels the token; it
/// ends as soon as the context is cancelled, fires, or its last clone is
/// dropped. Contexts without their own deadline (`background`, `child`, a
/// timeout longer than the parent's) run no task and no timer.
///
/// # Dropped
///
/// Dropping the last clone of a context does not cancel its token (tokens
/// handed out with [`Context::token`] keep working), but it does stop its
/// deadline timer: a token that outlives every clone of its context is no
/// longer cancelled at the deadline. Keep the context, not just its token,
/// for as long as the deadline matters.
///
/// Cheap to clone: clones share one context.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("cancelled", &self.is_cancelled())
            .field("deadline", &self.inner.deadline)
            .field("cause", &self.cause())
            .finish()
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::background()
    }
}

impl From<CancellationToken> for Context {
    /// Wraps a token: cancelling the token cancels the context (with cause
    /// [`Cause::Cancelled`]) and the other way round. No deadline.
    fn from(token: CancellationToken) -> Self {
        Self::new(token, None, None, None)
    }
}

impl From<&CancellationToken> for Context {
    /// Wraps a clone of the token; see `From<CancellationToken>`.
    fn from(token: &CancellationToken) -> Self {
        Self::from(token.clone())
    }
}

impl From<&Context> for Context {
    /// The same context (a clone), so `.context(&ctx)` works beside
    /// `.context(ctx)`.
    fn from(ctx: &Context) -> Self {
        ctx.clone()
    }
}

impl Context {
    fn new(
        token: CancellationToken,
        deadline: Option<Instant>,
        parent: Option<Context>,
        timer: Option<AbortHandle>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                token,
                deadline,
                cause: OnceLock::new(),
                parent,
                timer,
            }),
        }
    }

    /// A new root context: never cancelled unless you cancel it, no
    /// deadline. (Go's `context.Background()`, but cancellable.)
    pub fn background() -> Self {
        Self::from(CancellationToken::new())
    }

    /// A child: cancelled when this context is (with this context's cause),
    /// and cancellable on its own without affecting this one. It inherits
    /// the deadline.
    pub fn child(&self) -> Self {
        Self::new(
            self.inner.token.child_token(),
            self.inner.deadline,
            Some(self.clone()),
            None,
        )
    }

    /// A child cancelled with [`Cause::DeadlineExceeded`] after `timeout`,
    /// or at this context's deadline if that comes first.
    ///
    /// This is the one way weir puts a deadline on a run: hand the child to
    /// the construct's `.context(..)`, and a passed deadline reports as
    /// [`Cause::DeadlineExceeded`] wherever it is seen. A `timeout` so long
    /// that the deadline is beyond the clock's range (`Duration::MAX`) means
    /// no deadline: the child is a plain [`child`](Self::child).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime when the child needs its own timer (like
    /// `tokio::time::sleep`).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.with_deadline(deadline),
            None => self.child(),
        }
    }

    /// A child cancelled with [`Cause::DeadlineExceeded`] at `deadline`, or
    /// at this context's deadline if that comes first (a child never
    /// outlives its parent's deadline).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime when the child needs its own timer (like
    /// `tokio::time::sleep`).
    pub fn with_deadline(&self, deadline: Instant) -> Self {
        if self.inner.deadline.is_some_and(|d| d <= deadline) {
            // The parent's deadline comes first; its timer serves the child.
            return self.child();
        }
        let token = self.inner.token.child_token();
        Self {
            inner: Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
                let weak = weak.clone();
                let fire = token.clone();
                let timer = tokio::spawn(async move {
                    tokio::select! {
                        _ = fire.cancelled() => {}
                        _ = tokio::time::sleep_until(deadline) => {
                            if let Some(inner) = weak.upgrade()
                                && !inner.token.is_cancelled()
                            {
                                let _ = inner.cause.set(Cause::DeadlineExceeded);
                                inner.token.cancel();
                            }
                        }
                    }
                });
                Inner {
                    token,
                    deadline: Some(deadline),
                    cause: OnceLock::new(),
                    parent: Some(self.clone()),
                    timer: Some(timer.abort_handle()),
                }
            }),
        }
    }

    /// Cancels this context and its children, with cause
    /// [`Cause::Cancelled`] unless it already has a cause.
    pub fn cancel(&self) {
        self.cancel_cause(Cause::Cancelled);
    }

    /// Cancels this context and its children with `cause`, unless it was
    /// already cancelled: the first cause wins, as with Go's
    /// `WithCancelCause`.
    ///
    /// `cause` is any value that displays: a `&str` or `String`, any
    /// `std::error::Error`, an `anyhow::Error`. It is kept as itself, shared
    /// ([`CauseValue`]), so every task that asks gets the same value and
    /// [`Cause::downcast_ref`] gets it back.
    pub fn cancel_with<V>(&self, cause: V)
    where
        V: fmt::Display + fmt::Debug + Send + Sync + 'static,
    {
        self.cancel_cause(Cause::Error(CauseValue::new(cause)));
    }

    /// Cancels with a cause you have already wrapped (to share one value
    /// between the cause and your own records); see
    /// [`cancel_with`](Self::cancel_with).
    pub fn cancel_with_value(&self, cause: CauseValue) {
        self.cancel_cause(Cause::Error(cause));
    }

    fn cancel_cause(&self, cause: Cause) {
        if !self.inner.token.is_cancelled() {
            let _ = self.inner.cause.set(cause);
        }
        self.inner.token.cancel();
    }

    /// Whether the context has been cancelled (by anyone, for any cause).
    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Why the context was cancelled; `None` while it has not been.
    pub fn cause(&self) -> Option<Cause> {
        if !self.inner.token.is_cancelled() {
            return None;
        }
        if let Some(cause) = self.inner.cause.get() {
            return Some(cause.clone());
        }
        // Cancelled, but not by itself: a parent's cancellation reached it.
        match &self.inner.parent {
            Some(parent) if parent.is_cancelled() => parent.cause(),
            // Its token was cancelled directly.
            _ => Some(Cause::Cancelled),
        }
    }

    /// The deadline, if the context or one of its parents has one.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Time left until the deadline (zero once it passed); `None` without a
    /// deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.inner
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The context's token: hand it to code that speaks `CancellationToken`.
    /// Cancelling it cancels the context (cause [`Cause::Cancelled`]).
    pub fn token(&self) -> CancellationToken {
        self.inner.token.clone()
    }

    /// Waits until the context is cancelled.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.inner.token.cancelled()
    }

    /// Runs `work` unless the context is cancelled first — the Go
    /// `select { case <-ctx.Done(): ...; case r := <-work: ... }` in one
    /// call. When the context wins, `work` is dropped (it does not go on
    /// running) and the cause is returned.
    ///
    /// # Errors
    ///
    /// [`Stopped`] with the cause when the context was cancelled first (or
    /// already).
    ///
    /// # Cancel safety
    ///
    /// As cancel safe as `work` is.
    pub async fn run<F: Future>(&self, work: F) -> Result<F::Output, Stopped> {
        if self.is_cancelled() {
            return Err(self.stopped());
        }
        tokio::select! {
            biased;
            out = work => Ok(out),
            _ = self.inner.token.cancelled() => Err(self.stopped()),
        }
    }

    /// The [`Stopped`] error for this context's cause right now
    /// ([`Cause::Cancelled`] if it was not cancelled).
    pub fn stopped(&self) -> Stopped {
        Stopped::new(self.cause().unwrap_or(Cause::Cancelled))
    }
}
