//! What a [`Shutdown`](super::Shutdown) reports: [`ShutdownReport`],
//! [`TaskFailure`], [`ShutdownError`] and [`SpawnRefused`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use weir_context::__private::write_table;
use weir_context::{Cause, CauseValue, Panic};

/// How many [`TaskFailure`]s a report keeps by name; later ones are only
/// counted. A service that spawns a task per connection and sees many of
/// them fail must not grow a list without end.
pub const MAX_KEPT_FAILURES: usize = 256;

/// How many failures [`ShutdownReport`]'s `Display` lists.
const SHOWN_FAILURES: usize = 10;

/// A task of a [`Shutdown`](super::Shutdown) that did not finish well: it
/// returned an error, panicked, or was aborted. Keeps the task's name and
/// the error value or the panic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskFailure {
    /// The task returned `Err(error)`. The error is kept as itself:
    /// [`TaskFailure::downcast_ref`] gets your type back.
    Failed {
        /// The task's name.
        task: Arc<str>,
        /// The task's error.
        error: CauseValue,
    },
    /// The task panicked; the panic was caught in its task.
    Panicked {
        /// The task's name.
        task: Arc<str>,
        /// The panic: its message and its payload.
        panic: Panic,
    },
    /// The task was aborted before it ended on its own: the grace period of
    /// [`Shutdown::shutdown`](super::Shutdown::shutdown) ran out (the cause
    /// is [`GraceExpired`](crate::GraceExpired)), or the last `Shutdown`
    /// handle was dropped (the cause is [`Cause::Cancelled`]).
    Aborted {
        /// The task's name.
        task: Arc<str>,
        /// Why it was aborted.
        cause: Cause,
    },
}

impl TaskFailure {
    /// The name of the task.
    pub fn task(&self) -> &str {
        match self {
            Self::Failed { task, .. }
            | Self::Panicked { task, .. }
            | Self::Aborted { task, .. } => task,
        }
    }

    /// The task's error, when it returned one.
    pub fn error(&self) -> Option<&CauseValue> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The task's error, when it returned one and it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.error()?.downcast_ref()
    }

    /// The panic, when the task panicked.
    pub fn panic(&self) -> Option<&Panic> {
        match self {
            Self::Panicked { panic, .. } => Some(panic),
            _ => None,
        }
    }

    /// Whether the task was aborted.
    pub fn is_aborted(&self) -> bool {
        matches!(self, Self::Aborted { .. })
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { task, error } => write!(f, "task `{task}` failed: {error}"),
            Self::Panicked { task, panic } => write!(f, "task `{task}` panicked: {panic}"),
            Self::Aborted { task, cause } => write!(f, "task `{task}` aborted: {cause}"),
        }
    }
}

/// The message says everything; `source()` repeats nothing.
impl std::error::Error for TaskFailure {}

/// What the tasks of a [`Shutdown`](super::Shutdown) did, from its creation
/// until now or until [`join`](super::Shutdown::join) or
/// [`shutdown`](super::Shutdown::shutdown) returned.
///
/// Every task's end is counted whenever it happens, before the shutdown or
/// during it. Failures (an error, a panic, an abort) are also kept with the
/// task's name and the value, in [`failures`](Self::failures); successful
/// tasks are only counted, so a service that spawns a task per connection
/// does not grow a list.
///
/// Accounting law: `spawned = finished + failed + panicked + aborted +
/// running()`; once `join` or `shutdown` has returned, `running()` is 0
/// ([`is_balanced`](Self::is_balanced)).
///
/// `Display` prints a table, the failures, and why the shutdown started:
///
/// ```text
/// tasks  spawned  finished  failed  panicked  aborted
/// all          3         2       0         0        1
/// task `legacy-sync` aborted: the shutdown grace period of 1s ran out
/// cause: received SIGTERM; waited 1s, elapsed 1m 2s
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Tasks started by [`spawn`](super::Shutdown::spawn).
    pub spawned: u64,
    /// Tasks that returned `()` or `Ok(())`.
    pub finished: u64,
    /// Tasks that returned `Err`.
    pub failed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Tasks aborted before they ended on their own.
    pub aborted: u64,
    /// The failed, panicked and aborted tasks, in the order they ended, with
    /// their names and values; the first [`MAX_KEPT_FAILURES`] of them.
    pub failures: Vec<TaskFailure>,
    /// Why the shutdown started: the signal ([`ShutdownTrigger`](super::ShutdownTrigger)),
    /// the parent context's cause (a deadline, a value given to
    /// `cancel_with`), or [`Cause::Cancelled`] when
    /// [`shutdown`](super::Shutdown::shutdown) was simply called. `None`
    /// while the root context was never cancelled (after a plain `join`).
    /// The first cause wins.
    pub cause: Option<Cause>,
    /// How long [`join`](super::Shutdown::join) or
    /// [`shutdown`](super::Shutdown::shutdown) waited for the tasks to end
    /// (zero in a [`report`](super::Shutdown::report) snapshot).
    pub waited: Duration,
    /// Time from the coordinator's creation until the report was made.
    pub elapsed: Duration,
}

impl ShutdownReport {
    /// Tasks that ended, for any reason.
    pub fn ended(&self) -> u64 {
        self.finished + self.failed + self.panicked + self.aborted
    }

    /// Tasks still running when the report was made (zero after `join` or
    /// `shutdown`).
    pub fn running(&self) -> u64 {
        self.spawned.saturating_sub(self.ended())
    }

    /// Whether every spawned task is accounted for as ended.
    pub fn is_balanced(&self) -> bool {
        self.spawned == self.ended()
    }

    /// Whether no task ever failed, panicked or was aborted.
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.panicked == 0 && self.aborted == 0
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut header = vec![
            "tasks", "spawned", "finished", "failed", "panicked", "aborted",
        ];
        let mut row = vec![
            "all".to_owned(),
            self.spawned.to_string(),
            self.finished.to_string(),
            self.failed.to_string(),
            self.panicked.to_string(),
            self.aborted.to_string(),
        ];
        if self.running() > 0 {
            header.push("running");
            row.push(self.running().to_string());
        }
        write_table(f, &header, &[row])?;
        for failure in self.failures.iter().take(SHOWN_FAILURES) {
            writeln!(f, "{failure}")?;
        }
        let unshown = (self.failed + self.panicked + self.aborted)
            .saturating_sub(self.failures.len().min(SHOWN_FAILURES) as u64);
        if unshown > 0 {
            writeln!(f, "... and {unshown} more")?;
        }
        match &self.cause {
            Some(cause) => write!(f, "cause: {cause}; ")?,
            None => f.write_str("cause: none; ")?,
        }
        write!(f, "waited {:?}, elapsed {:?}", self.waited, self.elapsed)
    }
}

/// Why [`Shutdown::join`](super::Shutdown::join) or
/// [`Shutdown::shutdown`](super::Shutdown::shutdown) returned an error: at
/// least one task failed, panicked or was aborted. It names the first
/// (`first()`) and says how many there were; the
/// [`ShutdownReport`] beside it (`err.report()`) keeps them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownError {
    first: TaskFailure,
    count: u64,
}

impl ShutdownError {
    pub(crate) fn new(first: TaskFailure, count: u64) -> Self {
        Self { first, count }
    }

    /// The first task that failed, panicked or was aborted.
    pub fn first(&self) -> &TaskFailure {
        &self.first
    }

    /// The name of the first task that failed, panicked or was aborted.
    pub fn task(&self) -> &str {
        self.first.task()
    }

    /// How many tasks failed, panicked or were aborted, in all.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.first, f)?;
        match self.count {
            0 | 1 => Ok(()),
            2 => f.write_str(" (and 1 more task)"),
            n => write!(f, " (and {} more tasks)", n - 1),
        }
    }
}

/// The message says everything; `source()` repeats nothing.
impl std::error::Error for ShutdownError {}

/// [`Shutdown::spawn`](super::Shutdown::spawn) did not start the task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnRefused {
    /// The coordinator is closed ([`close`](super::Shutdown::close),
    /// [`join`](super::Shutdown::join) or
    /// [`shutdown`](super::Shutdown::shutdown) was called): it accepts no
    /// more tasks.
    #[error("task `{task}` not started: the shutdown coordinator is closed")]
    Closed {
        /// The task's name.
        task: Arc<str>,
    },
    /// `spawn` was called outside a tokio runtime.
    #[error("task `{task}` not started: no tokio runtime")]
    NoRuntime {
        /// The task's name.
        task: Arc<str>,
    },
}

impl SpawnRefused {
    /// The name of the task that was not started.
    pub fn task(&self) -> &str {
        match self {
            Self::Closed { task } | Self::NoRuntime { task } => task,
        }
    }
}
