//! What runs inside each spawned task: the user's future, wrapped so that its
//! failure or panic cancels the group at the moment it happens.
//!
//! The wrapper is kept as small as it can be, because tokio allocates each
//! task in a cell sized by its future and its output (in steps of 128 bytes):
//! a task that is spawned unlimited, unnamed and untraced carries only one
//! pointer besides the user's future ([`PlainTask`]), and its output is the
//! user's `Result` with a third case for a panic ([`Outcome`]). Everything
//! else a group knows about a task (its index, its name, the order in which
//! failures happened) is kept by the group, keyed by the tokio task id, as
//! `tokio_util::task::JoinMap` does.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::Id;
use tokio_util::sync::CancellationToken;
use weir_core::Context as WeirContext;

/// State shared by a group and its tasks (one `Arc` clone per task).
#[derive(Debug)]
pub(crate) struct Shared {
    /// The group's context: cancelled on the first failure (fail-fast, with
    /// that failure as its cause), on `cancel()`, and when the group is
    /// dropped.
    pub(crate) ctx: WeirContext,
    /// `ctx`'s token.
    pub(crate) token: CancellationToken,
    /// Whether a failure cancels the token.
    fail_fast: AtomicBool,
    /// The tasks that failed or panicked, in the order it happened.
    failures: Mutex<Vec<Id>>,
}

impl Shared {
    pub(crate) fn new(ctx: WeirContext) -> Self {
        Shared {
            token: ctx.token(),
            ctx,
            fail_fast: AtomicBool::new(true),
            failures: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn set_fail_fast(&self, yes: bool) {
        self.fail_fast.store(yes, Ordering::Relaxed);
    }

    pub(crate) fn fail_fast(&self) -> bool {
        self.fail_fast.load(Ordering::Relaxed)
    }

    /// The failed tasks, in the order they failed.
    pub(crate) fn failures(&self) -> std::sync::MutexGuard<'_, Vec<Id>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the current task failed, then cancels the group with
    /// the failure as the cause of its context.
    fn failed(&self, cause: impl FnOnce() -> String) {
        // Called from inside the task, so the task has an id.
        if let Some(id) = tokio::task::try_id() {
            self.failures().push(id);
        }
        if self.fail_fast() {
            self.ctx.cancel_with(cause());
        }
    }
}

/// A caught panic. The payload sits in a `Mutex` only so that a group holding
/// it stays `Sync`, and in a `Box` so that the output stays small.
pub(crate) struct Payload(Mutex<Box<dyn Any + Send>>);

impl Payload {
    pub(crate) fn into_inner(self) -> Box<dyn Any + Send> {
        self.0.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a task hands back to its group.
pub(crate) enum Outcome<T, E> {
    Ok(T),
    Err(E),
    Panicked(Box<Payload>),
}

/// Polls the user's future, catching a panic; on failure records it and
/// cancels the group.
fn poll_task<F, T, E>(
    fut: Pin<&mut F>,
    shared: &Shared,
    cx: &mut Context<'_>,
) -> Poll<Outcome<T, E>>
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(Ok(value))) => Poll::Ready(Outcome::Ok(value)),
        Ok(Poll::Ready(Err(error))) => {
            tracing::warn!(task.id = ?tokio::task::try_id(), %error, "task failed");
            shared.failed(|| format!("task failed: {error}"));
            Poll::Ready(Outcome::Err(error))
        }
        Err(payload) => {
            let message = weir_core::panic_message(&*payload);
            tracing::error!(task.id = ?tokio::task::try_id(), %message, "task panicked");
            shared.failed(|| format!("task panicked: {message}"));
            Poll::Ready(Outcome::Panicked(Box::new(Payload(Mutex::new(payload)))))
        }
    }
}

pin_project_lite::pin_project! {
    /// A task of an unlimited group with no tracing span enabled: the user's
    /// future and one pointer.
    pub(crate) struct PlainTask<F> {
        #[pin]
        fut: F,
        shared: Arc<Shared>,
    }
}

impl<F> PlainTask<F> {
    pub(crate) fn new(fut: F, shared: Arc<Shared>) -> Self {
        PlainTask { fut, shared }
    }
}

impl<F, T, E> Future for PlainTask<F>
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    type Output = Outcome<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        poll_task(this.fut, this.shared, cx)
    }
}

pin_project_lite::pin_project! {
    /// A task that holds a slot of a limited group or runs in an enabled
    /// tracing span.
    pub(crate) struct RichTask<F> {
        #[pin]
        fut: F,
        shared: Arc<Shared>,
        permit: Option<OwnedSemaphorePermit>,
        span: tracing::Span,
    }
}

impl<F> RichTask<F> {
    pub(crate) fn new(
        fut: F,
        shared: Arc<Shared>,
        permit: Option<OwnedSemaphorePermit>,
        span: tracing::Span,
    ) -> Self {
        RichTask {
            fut,
            shared,
            permit,
            span,
        }
    }
}

impl<F, T, E> Future for RichTask<F>
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    type Output = Outcome<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let poll = poll_task(this.fut, this.shared, cx);
        if poll.is_ready() {
            // The slot frees the moment the work ends, before the group
            // joins the task.
            *this.permit = None;
        }
        poll
    }
}
