//! The coordinator's bookkeeping: which tasks run, and how every task ended.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio_util::task::task_tracker::TaskTrackerToken;
use weir_context::{Cause, CauseValue, GraceExpired, Panic};

use super::report::{MAX_KEPT_FAILURES, ShutdownReport, TaskFailure};

/// How a task ended.
pub(super) enum End {
    Finished,
    Failed(CauseValue),
    Panicked(Panic),
    /// Dropped before it ended on its own.
    Aborted,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// No more spawns.
    pub(super) closed: bool,
    /// Set when a `shutdown(grace)` ran out of grace: the tasks aborted from
    /// then on were aborted for that reason.
    pub(super) grace_expired: Option<Duration>,
    next_id: u64,
    /// The tasks running now: bounded by what runs, never by what ran.
    pub(super) running: BTreeMap<u64, Running>,
    report: ShutdownReport,
}

#[derive(Debug)]
pub(super) struct Running {
    pub(super) name: Arc<str>,
    pub(super) abort: Option<AbortHandle>,
}

pub(super) type Shared = Arc<Mutex<State>>;

pub(super) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // No code path panics while holding the lock, and every update leaves the
    // state consistent, so a poisoned lock is still usable.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Registers a task about to be spawned; returns its id.
    pub(super) fn register(&mut self, name: Arc<str>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.report.spawned += 1;
        self.running.insert(id, Running { name, abort: None });
        id
    }

    /// Records how the task `id` ended, and returns what to log about it
    /// (logged by the caller, outside the lock).
    pub(super) fn record(&mut self, id: u64, name: &Arc<str>, end: End) -> Option<TaskFailure> {
        self.running.remove(&id);
        let report = &mut self.report;
        let failure = match end {
            End::Finished => {
                report.finished += 1;
                return None;
            }
            End::Failed(error) => {
                report.failed += 1;
                TaskFailure::Failed {
                    task: Arc::clone(name),
                    error,
                }
            }
            End::Panicked(panic) => {
                report.panicked += 1;
                TaskFailure::Panicked {
                    task: Arc::clone(name),
                    panic,
                }
            }
            End::Aborted => {
                report.aborted += 1;
                let cause = match self.grace_expired {
                    Some(grace) => Cause::Error(CauseValue::new(GraceExpired { grace })),
                    None => Cause::Cancelled,
                };
                TaskFailure::Aborted {
                    task: Arc::clone(name),
                    cause,
                }
            }
        };
        if report.failures.len() < MAX_KEPT_FAILURES {
            report.failures.push(failure.clone());
        }
        Some(failure)
    }

    /// The counts and failures so far (`cause`, `waited` and `elapsed` are
    /// the caller's to fill in).
    pub(super) fn report(&self) -> ShutdownReport {
        self.report.clone()
    }

    /// Aborts every task still running (each records its own end when its
    /// future is dropped).
    pub(super) fn abort_all(&self) {
        for task in self.running.values() {
            if let Some(abort) = &task.abort {
                abort.abort();
            }
        }
    }
}

/// Records the end of a task exactly once: by [`TaskGuard::end`] when its
/// future returned, or, when the future is dropped before that (aborted), by
/// `Drop` as [`End::Aborted`].
///
/// It holds the task's tracker token, which is released only after the end
/// is recorded (fields drop after `Drop::drop`): when `join` or `shutdown`
/// sees the tracker empty, every end is in the report.
pub(super) struct TaskGuard {
    pub(super) state: Shared,
    pub(super) id: u64,
    pub(super) name: Arc<str>,
    pub(super) ended: bool,
    pub(super) _tracked: TaskTrackerToken,
}

impl TaskGuard {
    pub(super) fn end(mut self, end: End) {
        self.ended = true;
        self.record(end);
    }

    fn record(&self, end: End) {
        let failure = lock(&self.state).record(self.id, &self.name, end);
        log(failure.as_ref());
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.record(End::Aborted);
        }
    }
}

/// One event per failure, from the coordinator, which owns it: nobody
/// receives a `Shutdown` task's failure at the time, so it is a WARN event.
/// A task aborted because its coordinator was dropped is the owner's choice,
/// not a failure of the task: DEBUG.
pub(super) fn log(failure: Option<&TaskFailure>) {
    match failure {
        None => {}
        Some(TaskFailure::Failed { task, error }) => {
            tracing::warn!(task = %task, error = %error, "task failed");
        }
        Some(TaskFailure::Panicked { task, panic }) => {
            tracing::warn!(task = %task, panic = %panic, "task panicked");
        }
        Some(TaskFailure::Aborted { task, cause }) if !cause.is_cancelled() => {
            tracing::warn!(task = %task, cause = %cause, "task did not stop in time, aborted");
        }
        Some(TaskFailure::Aborted { task, .. }) => {
            tracing::debug!(task = %task, "task aborted: its coordinator was dropped");
        }
    }
}
