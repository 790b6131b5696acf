//! The errors a [`Group`](crate::Group) reports: one task's
//! ([`GroupError`]), every failure of a run ([`GroupErrors`]), and a refused
//! [`try_spawn`](crate::Group::try_spawn) ([`TrySpawnError`]).

use std::fmt;
use std::sync::Arc;

use weir_context::Panic;

/// Why one task of a [`Group`](crate::Group) did not produce a value.
///
/// Every variant names the task: the name given to
/// [`spawn_named`](crate::Group::spawn_named), or `#<index>` (the task's
/// spawn index in its group, from 0) for a task spawned without a name.
///
/// The task's own error is kept as the value it returned, in an [`Arc`]:
/// under [`ErrorPolicy::FailFast`](crate::ErrorPolicy::FailFast) the first
/// failure is also the cause of the group's context, as that same value
/// (`group.context().cause()` downcasts to your error type, Go's
/// `errors.Is(context.Cause(ctx), err)`). Reach it with
/// [`error`](Self::error). A panic keeps its message and its payload
/// ([`Panic`]).
///
/// The message names the task once and then reads as the task's own error
/// (`task fetch-a failed: timed out`). [`source`](std::error::Error::source)
/// returns nothing: the message already holds the error, and a group
/// accepts error types (such as `anyhow::Error`) that are not
/// `std::error::Error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError<E = anyhow::Error> {
    /// The task returned `Err(error)`.
    #[error("task {task} failed: {error}")]
    Failed {
        /// The task's name, or `#<index>`.
        task: String,
        /// The error the task returned, shared with the group context's
        /// cause when it was the group's first failure.
        error: Arc<E>,
    },
    /// The task panicked. The panic was caught in the task and, under
    /// [`ErrorPolicy::FailFast`](crate::ErrorPolicy::FailFast), cancelled
    /// the group like an error.
    #[error("task {task} panicked: {panic}")]
    Panicked {
        /// The task's name, or `#<index>`.
        task: String,
        /// The panic: its message and its payload.
        panic: Panic,
    },
    /// The task was aborted before it finished: by
    /// [`shutdown`](crate::Group::shutdown) when the grace period ran out,
    /// or because the runtime it ran on shut down.
    #[error("task {task} was aborted before it finished")]
    Aborted {
        /// The task's name, or `#<index>`.
        task: String,
    },
}

impl<E> GroupError<E> {
    /// The name of the task (or `#<index>` for an unnamed one).
    pub fn task(&self) -> &str {
        match self {
            Self::Failed { task, .. } | Self::Panicked { task, .. } | Self::Aborted { task } => {
                task
            }
        }
    }

    /// The error the task returned, if it returned one (not for a panic or
    /// an abort).
    pub fn error(&self) -> Option<&E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Takes the error the task returned, if it returned one. It is shared
    /// with the group context's cause when it was the group's first
    /// failure; `Arc::try_unwrap` gets the value itself once the context is
    /// gone, `Arc::unwrap_or_clone` always (for a `Clone` error).
    pub fn into_error(self) -> Option<Arc<E>> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The panic, if the task panicked.
    pub fn panic(&self) -> Option<&Panic> {
        match self {
            Self::Panicked { panic, .. } => Some(panic),
            _ => None,
        }
    }

    /// Whether the task returned an error.
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }

    /// Whether the task was aborted before it finished.
    pub fn is_aborted(&self) -> bool {
        matches!(self, Self::Aborted { .. })
    }
}

/// Clones share the error value and the panic payload; `E` need not be
/// `Clone`.
impl<E> Clone for GroupError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Failed { task, error } => Self::Failed {
                task: task.clone(),
                error: Arc::clone(error),
            },
            Self::Panicked { task, panic } => Self::Panicked {
                task: task.clone(),
                panic: panic.clone(),
            },
            Self::Aborted { task } => Self::Aborted { task: task.clone() },
        }
    }
}

/// Every failure of a group's run, in the order the failures happened (the
/// first first): the error of [`Group::join`](crate::Group::join) and
/// [`Group::shutdown`](crate::Group::shutdown). Never empty.
///
/// This is Go's `errors.Join` for a task group: its message is the message
/// of each failure, one per line. Under
/// [`ErrorPolicy::FailFast`](crate::ErrorPolicy::FailFast),
/// [`first`](Self::first) is the failure that cancelled the group and the
/// others are what the cancellation led to (tasks that stopped with an
/// error); under [`ErrorPolicy::Continue`](crate::ErrorPolicy::Continue)
/// every task ran and each failure is its own.
///
/// # Examples
///
/// ```
/// use weir_group::{ErrorPolicy, Group};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), weir_group::ConfigError> {
/// let mut group: Group<u32, String> = Group::builder()
///     .error_policy(ErrorPolicy::Continue)
///     .build()?;
/// group.spawn_named("a", async { Err("disk full".to_string()) }).await;
/// group.spawn_named("b", async { Ok(2) }).await;
/// group.spawn_named("c", async { Err("no route".to_string()) }).await;
///
/// let err = group.join().await.unwrap_err();
/// let errors = err.error();
/// assert_eq!(errors.len(), 2);
/// assert_eq!(errors.first().task(), "a");
/// assert_eq!(
///     errors.to_string(),
///     "task a failed: disk full\ntask c failed: no route"
/// );
/// assert_eq!(err.report().succeeded, 1);
/// # Ok(())
/// # }
/// ```
pub struct GroupErrors<E = anyhow::Error> {
    /// Never empty: [`GroupErrors::new`] makes none without a failure.
    errors: Vec<GroupError<E>>,
}

impl<E> GroupErrors<E> {
    /// The failures, or `None` when there were none.
    pub(crate) fn new(errors: Vec<GroupError<E>>) -> Option<Self> {
        (!errors.is_empty()).then_some(Self { errors })
    }

    /// How many tasks failed (at least 1).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always `false`: a `GroupErrors` holds at least one failure. Here for
    /// symmetry with [`len`](Self::len).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The failure that happened first.
    pub fn first(&self) -> &GroupError<E> {
        &self.errors[0]
    }

    /// The failures, in the order they happened.
    pub fn iter(&self) -> std::slice::Iter<'_, GroupError<E>> {
        self.errors.iter()
    }

    /// The failures, in the order they happened.
    pub fn into_vec(self) -> Vec<GroupError<E>> {
        self.errors
    }
}

impl<E> Clone for GroupErrors<E> {
    fn clone(&self) -> Self {
        Self {
            errors: self.errors.clone(),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for GroupErrors<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.errors).finish()
    }
}

impl<E: fmt::Display> fmt::Display for GroupErrors<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for GroupErrors<E> {}

impl<E> IntoIterator for GroupErrors<E> {
    type Item = GroupError<E>;
    type IntoIter = std::vec::IntoIter<GroupError<E>>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a, E> IntoIterator for &'a GroupErrors<E> {
    type Item = &'a GroupError<E>;
    type IntoIter = std::slice::Iter<'a, GroupError<E>>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// The future handed back by [`Group::try_spawn`](crate::Group::try_spawn)
/// and [`try_spawn_named`](crate::Group::try_spawn_named) when the group is
/// at its limit. Take it back with [`into_inner`](Self::into_inner),
/// unchanged and never polled, to retry later or run it elsewhere.
pub struct TrySpawnError<F> {
    future: F,
}

impl<F> TrySpawnError<F> {
    pub(crate) fn new(future: F) -> Self {
        Self { future }
    }

    /// The refused future, unchanged.
    pub fn into_inner(self) -> F {
        self.future
    }

    /// A reference to the refused future.
    pub fn get_ref(&self) -> &F {
        &self.future
    }
}

impl<F> fmt::Debug for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrySpawnError").finish_non_exhaustive()
    }
}

impl<F> fmt::Display for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task group is at its limit")
    }
}

impl<F> std::error::Error for TrySpawnError<F> {}
