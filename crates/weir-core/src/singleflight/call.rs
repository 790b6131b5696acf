//! [`SingleflightCall`]: one caller's share of a call, and [`Flight`], what
//! it gets.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use tokio_util::sync::WaitForCancellationFutureOwned;
use weir_context::Context;

use super::{Call, Outcome, Singleflight, SingleflightError};

/// What one call produced, as each of its callers gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Flight<V> {
    /// The call's value (a clone, for every caller).
    pub value: V,
    /// Whether more than one caller asked for this call while it ran (Go's
    /// `shared`): true for every caller that joined a call in flight, and
    /// for the caller that started it when anyone joined.
    pub shared: bool,
}

impl<V> Flight<V> {
    /// The value.
    pub fn into_value(self) -> V {
        self.value
    }
}

/// The future of [`Singleflight::call`]: one caller's share of a call.
///
/// # Panics
///
/// When polled again after it completed.
#[must_use = "futures do nothing unless polled"]
pub struct SingleflightCall<'a, K, V, E, F> {
    group: &'a Singleflight<K, V, E>,
    /// The key and the closure, until the first poll joins or starts a call.
    start: Option<(K, F)>,
    ctx: Option<Context>,
    /// The context's cancellation, once the wait began (boxed to keep this
    /// future `Unpin`).
    stop: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    call: Option<Call<V, E>>,
}

impl<'a, K, V, E, F> SingleflightCall<'a, K, V, E, F> {
    pub(super) fn new(group: &'a Singleflight<K, V, E>, key: K, f: F) -> Self {
        Self {
            group,
            start: Some((key, f)),
            ctx: None,
            stop: None,
            call: None,
        }
    }

    /// Waits only as long as `ctx` (a [`Context`] or a
    /// `CancellationToken`) is not cancelled and its deadline has not
    /// passed; it bounds this caller's wait, not the call.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.ctx = Some(ctx.into());
        self.stop = None;
        self
    }
}

// The key and the closure are moved out by value and never pinned; the
// shared call and the cancellation wait are `Unpin` (boxed).
impl<K, V, E, F> Unpin for SingleflightCall<'_, K, V, E, F> {}

impl<K, V, E, F, Fut> Future for SingleflightCall<'_, K, V, E, F>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<V, E>> + Send + 'static,
{
    type Output = Outcome<V, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.call.is_none() {
            let Some((key, f)) = this.start.take() else {
                panic!("`SingleflightCall` polled after completion");
            };
            if let Some(ctx) = &this.ctx
                && ctx.is_cancelled()
            {
                return Poll::Ready(Err(stopped(ctx)));
            }
            this.call = Some(this.group.join_or_start(key, f));
        }
        // The result first: a call that ended is worth returning even if
        // this caller's context ends at the same time.
        if let Some(call) = this.call.as_mut()
            && let Poll::Ready(out) = Pin::new(call).poll(cx)
        {
            this.call = None;
            return Poll::Ready(out);
        }
        if let Some(ctx) = &this.ctx {
            let stop = this
                .stop
                .get_or_insert_with(|| Box::pin(ctx.token().cancelled_owned()));
            if stop.as_mut().poll(cx).is_ready() {
                this.call = None;
                return Poll::Ready(Err(stopped(ctx)));
            }
        }
        Poll::Pending
    }
}

fn stopped<E>(ctx: &Context) -> SingleflightError<E> {
    SingleflightError::Stopped(ctx.stopped().into_cause())
}

impl<K, V, E, F> fmt::Debug for SingleflightCall<'_, K, V, E, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleflightCall")
            .field("started", &self.start.is_none())
            .field("context", &self.ctx)
            .finish()
    }
}
