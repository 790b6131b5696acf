//! What runs inside each spawned task, and how its result reaches the group.
//!
//! Each task is a plain `tokio::spawn` of the user's future in a small
//! wrapper. When the future returns (or panics), the wrapper catches the
//! panic, cancels the group on a failure (the moment it happens, with the
//! failure as the cause of the group's context), and *delivers* the
//! outcome, keyed by the tokio task id, into the group's completion queue
//! ([`Shared::deliver`]), all inside the task's last poll.
//! The group reads results from the queue; it keeps the tasks'
//! `JoinHandle`s to abort them, to see them end (tokio drops a task's future
//! just after its last poll, so a result can arrive a moment before its task
//! has ended), and to hear of a panic in the destructor of a future that had
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
//! spawned task that the group has not taken yet; the group takes a whole
//! batch per lock.
//!
//! **Small tasks.** tokio allocates each task in a cell sized by its future
//! and its output (in steps of 128 bytes on x86-64): a task that is spawned
//! unlimited, unnamed and untraced carries only one pointer besides the
//! user's future ([`PlainTask`]), and its output is that pointer
//! ([`Returned`]). Everything else a group knows about a task (its index,
//! its name) is kept by the group, keyed by the tokio task id; a named task
//! also carries its name, for the cause of its panic.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::Id;
use weir_chan::lane::{LaneRx, LaneTx, lane};
use weir_context::{CauseValue, Context as WeirContext, ErrorPolicy, Panic};

use crate::error::GroupError;

/// What a task carries of its name, for the cause of its panic: nothing
/// for an unnamed task (`()`, so that the smallest task stays as small as a
/// `JoinSet`'s: tokio keeps a task's future in a cell sized in steps of 128
/// bytes), the name for a named one.
pub(crate) trait Name {
    fn name(&self) -> Option<&str>;
}

impl Name for () {
    fn name(&self) -> Option<&str> {
        None
    }
}

impl Name for Option<Arc<str>> {
    fn name(&self) -> Option<&str> {
        self.as_deref()
    }
}

/// One delivered task: its tokio id and how it ended.
pub(crate) type Delivered<T, E> = (Id, Outcome<T, E>);

/// What a task returns to tokio: its clone of the group's `Arc`, which the
/// group drops when it reads the task's `JoinHandle`. So the `Arc`'s count
/// is raised (spawn) and lowered (join) on the group's thread, and stays in
/// its cache, instead of bouncing to every thread that completes a task.
pub(crate) type Returned<T, E> = Option<Arc<Shared<T, E>>>;

/// State shared by a group and its tasks (one `Arc` clone per task, until
/// the group reads the task's `JoinHandle`).
pub(crate) struct Shared<T, E> {
    /// The group's context: cancelled on the first failure (fail-fast, with
    /// that failure as its cause), on `cancel()`, and when the group is
    /// dropped.
    pub(crate) ctx: WeirContext,
    /// Whether a failure cancels `ctx`.
    policy: ErrorPolicy,
    /// The completion queue, a lane of weir's hand-off that the group
    /// reads: outcomes in the order the tasks delivered them (which is also
    /// the order in which failures happened). Unbounded in its capacity,
    /// bounded by the tasks: at most one entry per task of the group not
    /// yet taken by the group.
    done: LaneTx<Delivered<T, E>>,
}

impl<T, E> Shared<T, E> {
    /// The state and the group's end of the completion queue.
    pub(crate) fn new(ctx: WeirContext, policy: ErrorPolicy) -> (Self, LaneRx<Delivered<T, E>>) {
        let (done, rx) = lane(usize::MAX);
        (Self { ctx, policy, done }, rx)
    }

    pub(crate) fn policy(&self) -> ErrorPolicy {
        self.policy
    }

    /// Puts a task's outcome in the queue and wakes the group if it waits;
    /// once the group is gone (the queue closed), the outcome is dropped
    /// here, outside the queue's lock.
    ///
    /// A failure's `cause` cancels the group's context under the queue's
    /// lock, so that when failures race, the one that cancelled is the one
    /// queued first: the cause is `join`'s first error.
    fn deliver(&self, id: Id, outcome: Outcome<T, E>, cause: Option<CauseValue>) {
        let ctx = &self.ctx;
        let _gone = self.done.try_send_with(1, move || {
            if let Some(cause) = cause {
                // A no-op if something else cancelled the context first.
                ctx.cancel_with_value(cause);
            }
            (id, outcome)
        });
    }
}

/// How a task ended, as it delivers it to its group.
pub(crate) enum Outcome<T, E> {
    Ok(T),
    /// In an `Arc`: the first failure is also the cause of the group's
    /// context.
    Err(Arc<E>),
    /// Boxed, so that the outcome stays small.
    Panicked(Box<Panic>),
    /// The task's future was dropped before it finished: aborted, or its
    /// runtime shut down.
    Aborted,
}

/// The task's way to its group's queue; delivers [`Outcome::Aborted`] if it
/// is dropped before the task delivered its outcome.
pub(crate) struct Delivery<T, E, N: Name> {
    /// `None` once delivered.
    shared: Option<Arc<Shared<T, E>>>,
    name: N,
}

impl<T, E, N: Name> Delivery<T, E, N> {
    pub(crate) fn new(shared: Arc<Shared<T, E>>, name: N) -> Self {
        Self {
            shared: Some(shared),
            name,
        }
    }
}

impl<T, E, N> Delivery<T, E, N>
where
    E: Display + Debug + Send + Sync + 'static,
    N: Name,
{
    /// Delivers the outcome (under fail-fast, a failure cancels the group
    /// first); returns the `Arc`, for the task to return.
    fn deliver(&mut self, outcome: Outcome<T, E>) -> Returned<T, E> {
        let shared = self.shared.take()?;
        // Polled by tokio, so inside the task: it has an id.
        if let Some(id) = tokio::task::try_id() {
            let cause = self.cause_of(&shared, id, &outcome);
            shared.deliver(id, outcome, cause);
        }
        Some(shared)
    }

    /// The cause a failure gives the group's context under fail-fast, if
    /// the context is not cancelled yet: a task's error is the cause as
    /// that very value (shared with the outcome); a panic is
    /// `task <name> panicked: <message>` (a [`GroupError::Panicked`] that
    /// shares the panic's payload). The task does not know its spawn index
    /// (the group keeps it), so an unnamed task is named by its tokio id.
    fn cause_of(
        &self,
        shared: &Shared<T, E>,
        id: Id,
        outcome: &Outcome<T, E>,
    ) -> Option<CauseValue> {
        // A success asks nothing more (a token's `is_cancelled` takes a lock).
        if matches!(outcome, Outcome::Ok(_) | Outcome::Aborted)
            || shared.policy != ErrorPolicy::FailFast
            || shared.ctx.is_cancelled()
        {
            return None;
        }
        match outcome {
            Outcome::Err(error) => Some(CauseValue::shared(Arc::clone(error))),
            Outcome::Panicked(panic) => {
                let task = match self.name.name() {
                    Some(name) => name.to_owned(),
                    None => format!("#? (tokio task {id})"),
                };
                Some(CauseValue::new(GroupError::<E>::Panicked {
                    task,
                    panic: Panic::clone(panic),
                }))
            }
            Outcome::Ok(_) | Outcome::Aborted => None,
        }
    }
}

impl<T, E, N: Name> Drop for Delivery<T, E, N> {
    fn drop(&mut self) {
        // Inside the task when tokio drops it (abort, runtime shutdown);
        // outside any task when the spawn itself failed, and then the group
        // does not wait for this task.
        if let Some(shared) = self.shared.take()
            && let Some(id) = tokio::task::try_id()
        {
            shared.deliver(id, Outcome::Aborted, None);
        }
    }
}

/// Polls the user's future, catching a panic.
fn poll_outcome<F, T, E>(fut: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<Outcome<T, E>>
where
    F: Future<Output = Result<T, E>>,
{
    match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(Ok(value))) => Poll::Ready(Outcome::Ok(value)),
        Ok(Poll::Ready(Err(error))) => Poll::Ready(Outcome::Err(Arc::new(error))),
        Err(payload) => Poll::Ready(Outcome::Panicked(Box::new(Panic::from_payload(payload)))),
    }
}

pin_project_lite::pin_project! {
    /// A task of an unlimited group with no tracing span enabled: the
    /// user's future, one pointer and the task's label (its index, or its
    /// index and name).
    pub(crate) struct PlainTask<F, T, E, N: Name> {
        #[pin]
        fut: F,
        // Dropped after `fut`: an aborted task's future is gone by the time
        // the group hears of it.
        delivery: Delivery<T, E, N>,
    }
}

impl<F, T, E, N: Name> PlainTask<F, T, E, N> {
    pub(crate) fn new(fut: F, delivery: Delivery<T, E, N>) -> Self {
        Self { fut, delivery }
    }
}

impl<F, T, E, N> Future for PlainTask<F, T, E, N>
where
    F: Future<Output = Result<T, E>>,
    E: Display + Debug + Send + Sync + 'static,
    N: Name,
{
    type Output = Returned<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match poll_outcome(this.fut, cx) {
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
        delivery: Delivery<T, E, Option<Arc<str>>>,
    }
}

impl<F, T, E> RichTask<F, T, E> {
    pub(crate) fn new(
        fut: F,
        delivery: Delivery<T, E, Option<Arc<str>>>,
        permit: Option<OwnedSemaphorePermit>,
        span: tracing::Span,
    ) -> Self {
        Self {
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
    E: Display + Debug + Send + Sync + 'static,
{
    type Output = Returned<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        match poll_outcome(this.fut, cx) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// tokio keeps a task's future, then its output, in a `#[repr(C)]`
    /// enum (`Stage` in its `runtime/task/core.rs`): a tag beside the
    /// larger of the two. For a small future, a task cell stays at 128
    /// bytes only while the wrapper adds no more than the output does, one
    /// pointer: an unnamed task's wrapper adds exactly that.
    #[test]
    fn an_unnamed_task_adds_one_pointer_to_its_future() {
        let (shared, _done) =
            Shared::<u64, Infallible>::new(WeirContext::background(), ErrorPolicy::FailFast);
        let shared = Arc::new(shared);
        let i: u64 = 1;
        let fut = async move { Ok::<u64, Infallible>(std::hint::black_box(i)) };
        let bare = std::mem::size_of_val(&fut);
        let task = PlainTask::new(fut, Delivery::new(shared, ()));
        assert_eq!(
            std::mem::size_of_val(&task),
            bare + std::mem::size_of::<usize>()
        );
        assert_eq!(
            std::mem::size_of::<Returned<u64, Infallible>>(),
            std::mem::size_of::<usize>()
        );
    }
}
