//! The errors a [`Group`](crate::Group) reports.

use std::fmt;

/// Why one task of a [`Group`](crate::Group) did not produce a value.
///
/// Every variant names the task: the name given to
/// [`spawn_named`](crate::Group::spawn_named), or `#<index>` (the task's spawn
/// index in its group, from 0) for a task spawned without a name.
///
/// The user's error is part of the message (`task fetch-a failed: timed out`)
/// and is reachable with [`error`](GroupError::error) and
/// [`into_error`](GroupError::into_error). It is not returned by
/// [`source`](std::error::Error::source): a group accepts any `E: Display`,
/// including [`anyhow::Error`], which is not a [`std::error::Error`], and
/// a message that already contains the cause must not repeat it as a source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError<E> {
    /// The task returned `Err(error)`.
    #[error("task {task} failed: {error}")]
    Failed {
        /// The task's name, or `#<index>`.
        task: String,
        /// The error the task returned.
        error: E,
    },
    /// The task panicked; the panic was caught and cancelled the group like an
    /// error (unless [`fail_fast(false)`](crate::Group::fail_fast)).
    #[error("task {task} panicked: {message}")]
    Panicked {
        /// The task's name, or `#<index>`.
        task: String,
        /// The panic message (see [`weir_context::panic_message`]).
        message: String,
    },
    /// The task was aborted before it finished: by
    /// [`shutdown`](crate::Group::shutdown) after its grace period, or because
    /// the runtime shut down.
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
            GroupError::Failed { task, .. }
            | GroupError::Panicked { task, .. }
            | GroupError::Aborted { task } => task,
        }
    }

    /// The error the task returned, if it returned one (not for a panic or an
    /// abort).
    pub fn error(&self) -> Option<&E> {
        match self {
            GroupError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Takes the error the task returned, if it returned one.
    pub fn into_error(self) -> Option<E> {
        match self {
            GroupError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, GroupError::Panicked { .. })
    }

    /// Whether the task was aborted before it finished.
    pub fn is_aborted(&self) -> bool {
        matches!(self, GroupError::Aborted { .. })
    }
}

/// Every failure of a group, in the order the failures happened: the error
/// of [`Group::wait_joined`](crate::Group::wait_joined).
///
/// This is Go's `errors.Join` for a task group: its message is the message of
/// each failure, one per line.
///
/// # Examples
///
/// ```
/// use weir_group::Group;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut group: Group<u32, String> = Group::new().fail_fast(false);
/// group.spawn_named("a", async { Err("disk full".to_string()) }).await;
/// group.spawn_named("b", async { Ok(2) }).await;
/// group.spawn_named("c", async { Err("no route".to_string()) }).await;
///
/// let errors = group.wait_joined().await.unwrap_err();
/// assert_eq!(errors.len(), 2);
/// assert_eq!(
///     errors.to_string(),
///     "task a failed: disk full\ntask c failed: no route"
/// );
/// # }
/// ```
#[derive(Debug)]
pub struct GroupErrors<E> {
    errors: Vec<GroupError<E>>,
}

impl<E> GroupErrors<E> {
    pub(crate) fn new(errors: Vec<GroupError<E>>) -> Self {
        GroupErrors { errors }
    }

    /// How many tasks failed (never 0).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always `false`: a `GroupErrors` holds at least one failure. Here for
    /// symmetry with [`len`](GroupErrors::len).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The failure that happened first.
    pub fn first(&self) -> Option<&GroupError<E>> {
        self.errors.first()
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
/// when the group is at its limit. Take it back with
/// [`into_inner`](Rejected::into_inner), unchanged and never polled, to retry
/// later or run it elsewhere.
pub struct Rejected<F> {
    future: F,
}

impl<F> Rejected<F> {
    pub(crate) fn new(future: F) -> Self {
        Rejected { future }
    }

    /// The rejected future, unchanged.
    pub fn into_inner(self) -> F {
        self.future
    }

    /// A reference to the rejected future.
    pub fn get_ref(&self) -> &F {
        &self.future
    }
}

impl<F> fmt::Debug for Rejected<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected").finish_non_exhaustive()
    }
}

impl<F> fmt::Display for Rejected<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task group is at its limit")
    }
}

impl<F> std::error::Error for Rejected<F> {}

/// A limit that [`Group::limit`](crate::Group::limit) or
/// [`Group::set_limit`](crate::Group::set_limit) refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A limit of 0 would let no task run and make every `spawn` wait forever
    /// (Go's `SetLimit(0)`); weir refuses it.
    #[error("a task group limit must be at least 1")]
    Zero,
    /// The limit cannot change while tasks of the group are still running
    /// (where Go's `SetLimit` panics). Join them first, e.g. by calling
    /// [`join_next`](crate::Group::join_next) until it returns `None`.
    #[error("cannot change the limit of a task group while {running} of its tasks are running")]
    Busy {
        /// How many tasks were still running.
        running: usize,
    },
}
