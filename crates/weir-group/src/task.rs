//! What runs inside each spawned task, and how its result reaches the group.
//!
//! Each task is a plain `tokio::spawn` of the user's future in a small
//! wrapper. When the future returns (or panics), the wrapper catches the
//! panic, cancels the group on a failure (the moment it happens), and
//! *delivers* the outcome, keyed by the tokio task id, into the group's
//! completion queue ([`Shared::deliver`]), all inside the task's last poll.
//! The group reads results from the queue; it keeps the tasks' `JoinHandle`s
//! to abort them, to see them end (tokio drops a task's future just after
//! its last poll, so a result can arrive a moment before its task has
//! ended), and to hear of a panic in the destructor of a future that had
//! already returned. This replaces a `JoinSet`, whose per-task linked-list
//! bookkeeping (an `Arc` per task, a mutex on spawn, on completion and on
//! join) cost as much as the spawn itself.
//!
//! **Exactly one delivery per task.** A task delivers when its future
//! returns, or panics; a task whose future is dropped before that (aborted
//! by [`Group::shutdown`](crate::Group::shutdown) or by dropping the group,
//! or stopped because its runtime shut down) delivers [`Outcome::Aborted`]
//! from the wrapper's destructor. tokio runs a task's destructor with the
//! task's id set, on completion and on abort (tokio tests this:
//! `task_id_future_destructor_completion` and `..._abort` in its
//! `tests/task_id.rs`). A wrapper dropped outside any task (the spawn itself
//! failed: no runtime) delivers nothing, and the group never counted it.
//!
//! **The queue is bounded by the tasks.** It holds at most one entry per
//! spawned task that the group has not taken yet, so it never holds more
//! entries than the group has tasks; the group takes a whole batch per lock.
//!
//! **Small tasks.** tokio allocates each task in a cell sized by its future
//! and its output (in steps of 128 bytes on x86-64): a task that is spawned
//! unlimited, unnamed and untraced carries only one pointer besides the
//! user's future ([`PlainTask`]), and its output is that pointer
//! ([`Returned`]). Everything else a group knows about a task (its index,
//! its name) is kept by the group, keyed by the tokio task id.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::Id;
use tokio_util::sync::CancellationToken;
use weir_context::Context as WeirContext;

/// One delivered task: its tokio id and how it ended.
pub(crate) type Delivered<T, E> = (Id, Outcome<T, E>);

/// What a task returns to tokio: its clone of the group's `Arc`, which the
/// group drops when it reads the task's `JoinHandle`. So the `Arc`'s count
/// is raised (spawn) and lowered (join) on the group's thread, and stays in
/// its cache, instead of bouncing to every thread that completes a task.
pub(crate) type Returned<T, E> = Option<Arc<Shared<T, E>>>;

/// State shared by a group and its tasks (one `Arc` clone per task, until the
/// group reads the task's `JoinHandle`).
pub(crate) struct Shared<T, E> {
    /// The group's context: cancelled on the first failure (fail-fast, with
    /// that failure as its cause), on `cancel()`, and when the group is
    /// dropped.
    pub(crate) ctx: WeirContext,
    /// `ctx`'s token.
    pub(crate) token: CancellationToken,
    /// Whether a failure cancels the token.
    fail_fast: AtomicBool,
    /// The completion queue.
    done: Mutex<Done<T, E>>,
}

/// The completion queue: outcomes in the order the tasks delivered them
/// (which is also the order in which failures happened), and the group's
/// waker while it waits for one.
struct Done<T, E> {
    /// At most one entry per task of the group not yet taken by the group.
    outcomes: VecDeque<Delivered<T, E>>,
    waker: Option<Waker>,
    /// The group is gone: outcomes are dropped on delivery.
    closed: bool,
}

impl<T, E> Done<T, E> {
    fn move_into(&mut self, into: &mut VecDeque<Delivered<T, E>>) {
        if into.is_empty() {
            // Swapping keeps both buffers' capacity in use.
            std::mem::swap(&mut self.outcomes, into);
        } else {
            into.append(&mut self.outcomes);
        }
    }
}

impl<T, E> Shared<T, E> {
    pub(crate) fn new(ctx: WeirContext) -> Self {
        Shared {
            token: ctx.token(),
            ctx,
            fail_fast: AtomicBool::new(true),
            done: Mutex::new(Done {
                outcomes: VecDeque::new(),
                waker: None,
                closed: false,
            }),
        }
    }

    pub(crate) fn set_fail_fast(&self, yes: bool) {
        self.fail_fast.store(yes, Ordering::Relaxed);
    }

    pub(crate) fn fail_fast(&self) -> bool {
        self.fail_fast.load(Ordering::Relaxed)
    }

    /// Cancels the group, with the failure as the cause of its context, if
    /// the group is fail-fast.
    fn failed(&self, cause: impl FnOnce() -> String) {
        if self.fail_fast() {
            self.ctx.cancel_with(cause());
        }
    }

    fn done(&self) -> MutexGuard<'_, Done<T, E>> {
        self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a task's outcome in the queue and wakes the group if it waits.
    fn deliver(&self, id: Id, outcome: Outcome<T, E>) {
        let mut done = self.done();
        if done.closed {
            drop(done);
            // Dropped here, outside the lock.
            drop(outcome);
            return;
        }
        done.outcomes.push_back((id, outcome));
        let waker = done.waker.take();
        drop(done);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Moves every delivered outcome to the end of `into`.
    pub(crate) fn take(&self, into: &mut VecDeque<Delivered<T, E>>) {
        self.done().move_into(into);
    }

    /// [`take`](Shared::take), or, when nothing was delivered, registers the
    /// waker and returns `Pending`.
    pub(crate) fn poll_take(
        &self,
        into: &mut VecDeque<Delivered<T, E>>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let mut done = self.done();
        if done.outcomes.is_empty() {
            match &mut done.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        done.move_into(into);
        Poll::Ready(())
    }

    /// The group is gone: drops what was delivered, and what will be.
    pub(crate) fn close(&self) {
        let (outcomes, waker) = {
            let mut done = self.done();
            done.closed = true;
            (std::mem::take(&mut done.outcomes), done.waker.take())
        };
        // Dropped outside the lock: a value's destructor may do anything.
        drop(outcomes);
        drop(waker);
    }
}

/// A caught panic. The payload sits in a `Mutex` only so that a group holding
/// it stays `Sync`, and in a `Box` so that the outcome stays small.
pub(crate) struct Payload(Mutex<Box<dyn Any + Send>>);

impl Payload {
    pub(crate) fn new(payload: Box<dyn Any + Send>) -> Self {
        Payload(Mutex::new(payload))
    }

    pub(crate) fn into_inner(self) -> Box<dyn Any + Send> {
        self.0.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a task ended, as it delivers it to its group.
pub(crate) enum Outcome<T, E> {
    Ok(T),
    Err(E),
    Panicked(Box<Payload>),
    /// The task's future was dropped before it finished: aborted, or its
    /// runtime shut down.
    Aborted,
}

/// The task's way to its group's queue; delivers [`Outcome::Aborted`] if it
/// is dropped before the task delivered its outcome.
pub(crate) struct Delivery<T, E> {
    /// `None` once delivered.
    shared: Option<Arc<Shared<T, E>>>,
}

impl<T, E> Delivery<T, E> {
    pub(crate) fn new(shared: Arc<Shared<T, E>>) -> Self {
        Delivery {
            shared: Some(shared),
        }
    }

    /// Delivers the outcome; returns the `Arc`, for the task to return.
    fn deliver(&mut self, outcome: Outcome<T, E>) -> Returned<T, E> {
        let shared = self.shared.take()?;
        // Polled by tokio, so inside the task: it has an id.
        if let Some(id) = tokio::task::try_id() {
            shared.deliver(id, outcome);
        }
        Some(shared)
    }
}

impl<T, E> Drop for Delivery<T, E> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            // Inside the task when tokio drops it (abort, runtime shutdown);
            // outside any task when the spawn itself failed, and then the
            // group does not wait for this task.
            if let Some(id) = tokio::task::try_id() {
                shared.deliver(id, Outcome::Aborted);
            }
        }
    }
}

/// Polls the user's future, catching a panic; on failure cancels the group.
fn poll_outcome<F, T, E>(
    fut: Pin<&mut F>,
    delivery: &Delivery<T, E>,
    cx: &mut Context<'_>,
) -> Poll<Outcome<T, E>>
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    let shared = delivery.shared.as_deref();
    match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(Ok(value))) => Poll::Ready(Outcome::Ok(value)),
        Ok(Poll::Ready(Err(error))) => {
            tracing::warn!(task.id = ?tokio::task::try_id(), %error, "task failed");
            if let Some(shared) = shared {
                shared.failed(|| format!("task failed: {error}"));
            }
            Poll::Ready(Outcome::Err(error))
        }
        Err(payload) => {
            let message = weir_context::__private::panic_message(&*payload);
            tracing::error!(task.id = ?tokio::task::try_id(), %message, "task panicked");
            if let Some(shared) = shared {
                shared.failed(|| format!("task panicked: {message}"));
            }
            Poll::Ready(Outcome::Panicked(Box::new(Payload::new(payload))))
        }
    }
}

pin_project_lite::pin_project! {
    /// A task of an unlimited group with no tracing span enabled: the user's
    /// future and one pointer.
    pub(crate) struct PlainTask<F, T, E> {
        #[pin]
        fut: F,
        // Dropped after `fut`: an aborted task's future is gone by the time
        // the group hears of it.
        delivery: Delivery<T, E>,
    }
}

impl<F, T, E> PlainTask<F, T, E> {
    pub(crate) fn new(fut: F, delivery: Delivery<T, E>) -> Self {
        PlainTask { fut, delivery }
    }
}

impl<F, T, E> Future for PlainTask<F, T, E>
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    type Output = Returned<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match poll_outcome(this.fut, this.delivery, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(outcome) => Poll::Ready(this.delivery.deliver(outcome)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A task that holds a slot of a limited group or runs in an enabled
    /// tracing span.
    pub(crate) struct RichTask<F, T, E> {
        #[pin]
        fut: F,
        permit: Option<OwnedSemaphorePermit>,
        span: tracing::Span,
        delivery: Delivery<T, E>,
    }
}

impl<F, T, E> RichTask<F, T, E> {
    pub(crate) fn new(
        fut: F,
        delivery: Delivery<T, E>,
        permit: Option<OwnedSemaphorePermit>,
        span: tracing::Span,
    ) -> Self {
        RichTask {
            fut,
            permit,
            span,
            delivery,
        }
    }
}

impl<F, T, E> Future for RichTask<F, T, E>
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    type Output = Returned<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        match poll_outcome(this.fut, this.delivery, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(outcome) => {
                // The slot frees the moment the work ends, before the group
                // hears of it.
                *this.permit = None;
                Poll::Ready(this.delivery.deliver(outcome))
            }
        }
    }
}
