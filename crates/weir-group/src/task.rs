//! What runs inside each spawned task: the user's future, wrapped so that its
//! failure or panic cancels the group at the moment it happens.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt as _;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// State shared by a group and its tasks (one `Arc` clone per task).
#[derive(Debug)]
pub(crate) struct Shared {
    /// The group's token: cancelled on the first failure (fail-fast), on
    /// `cancel()`, and when the group is dropped.
    pub(crate) token: CancellationToken,
    /// Orders failures by the moment they happened: each failing task takes
    /// the next number before it cancels the token.
    failures: AtomicU64,
    /// Tasks that were dropped before they finished (aborted), so that their
    /// `JoinError` can be reported with the task's name.
    aborted: Mutex<Vec<AbortedTask>>,
}

#[derive(Debug)]
struct AbortedTask {
    id: Option<tokio::task::Id>,
    index: u64,
    name: Option<Arc<str>>,
}

impl Shared {
    pub(crate) fn new(token: CancellationToken) -> Self {
        Shared {
            token,
            failures: AtomicU64::new(0),
            aborted: Mutex::new(Vec::new()),
        }
    }

    /// Finds (and forgets) the task aborted with tokio task id `id`.
    pub(crate) fn take_aborted(&self, id: tokio::task::Id) -> Option<(u64, Option<Arc<str>>)> {
        let mut aborted = self.aborted.lock().unwrap_or_else(PoisonError::into_inner);
        let pos = aborted.iter().position(|t| t.id == Some(id))?;
        let task = aborted.swap_remove(pos);
        Some((task.index, task.name))
    }
}

/// The label a task has in errors and events: its name, or `#<index>`.
pub(crate) fn label(index: u64, name: Option<&str>) -> String {
    match name {
        Some(name) => name.to_owned(),
        None => format!("#{index}"),
    }
}

/// What a task hands back to its group.
pub(crate) struct Done<T, E> {
    pub(crate) index: u64,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) outcome: Outcome<T, E>,
}

pub(crate) enum Outcome<T, E> {
    Ok(T),
    /// `seq` is the failure's place in the order failures happened.
    Err {
        seq: u64,
        error: E,
    },
    Panicked {
        seq: u64,
        /// In a `Mutex` only so that a group holding it stays `Sync`.
        payload: Mutex<Box<dyn Any + Send>>,
    },
}

/// Records the task as aborted when it is dropped before it finished: moved
/// into the task's future, so it runs even when the task is aborted before
/// its first poll.
struct AbortGuard {
    shared: Arc<Shared>,
    index: u64,
    name: Option<Arc<str>>,
    finished: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        tracing::debug!(
            task = %label(self.index, self.name.as_deref()),
            "task dropped before it finished (aborted)"
        );
        let mut aborted = self
            .shared
            .aborted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        aborted.push(AbortedTask {
            // tokio sets the task id while it drops an aborted task's future.
            id: tokio::task::try_id(),
            index: self.index,
            name: self.name.take(),
        });
    }
}

/// The future a group spawns for `fut`. The permit (if the group is limited)
/// lives inside it and is released the moment the task's work ends.
pub(crate) fn wrap<T, E, F>(
    fut: F,
    shared: Arc<Shared>,
    index: u64,
    name: Option<Arc<str>>,
    permit: Option<OwnedSemaphorePermit>,
    fail_fast: bool,
) -> impl Future<Output = Done<T, E>> + Send + 'static
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Display + Send + 'static,
{
    let span = tracing::info_span!("task", index, name = name.as_deref());
    let guard = AbortGuard {
        shared,
        index,
        name,
        finished: false,
    };
    async move {
        let mut guard = guard;
        let permit = permit;
        let outcome = match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(Ok(value)) => Outcome::Ok(value),
            Ok(Err(error)) => {
                let seq = guard.shared.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "task failed");
                if fail_fast {
                    guard.shared.token.cancel();
                }
                Outcome::Err { seq, error }
            }
            Err(payload) => {
                let seq = guard.shared.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    message = %weir_core::panic_message(&*payload),
                    "task panicked"
                );
                if fail_fast {
                    guard.shared.token.cancel();
                }
                Outcome::Panicked {
                    seq,
                    payload: Mutex::new(payload),
                }
            }
        };
        // The slot frees as soon as the work has ended, before the group
        // joins the task.
        drop(permit);
        guard.finished = true;
        Done {
            index: guard.index,
            name: guard.name.take(),
            outcome,
        }
    }
    .instrument(span)
}
