//! The pool's counters and its shutdown report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A counter on its own cache line, so submitters and workers do not
/// invalidate each other's lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Line<T>(T);

/// Written by submitters.
#[derive(Debug, Default)]
struct SubmitSide {
    submitted: AtomicU64,
    next_id: AtomicU64,
}

/// Written by workers.
#[derive(Debug, Default)]
struct WorkerSide {
    dequeued: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
}

/// The live counters behind [`PoolStats`]. `queued` and `running` are derived
/// (`submitted - dequeued`, `dequeued - finished`), so the accounting law holds
/// by construction of each snapshot; the tests check every counter against
/// what the tickets say.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    submit: Line<SubmitSide>,
    rejected: Line<AtomicU64>,
    worker: Line<WorkerSide>,
}

/// How a job ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Failed,
    Panicked,
    Cancelled,
}

impl Counters {
    /// The id for the next job.
    pub(crate) fn next_id(&self) -> u64 {
        self.submit.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A job entered the queue. (A worker may count its dequeue first; the
    /// snapshot clamps that moment away.)
    pub(crate) fn submitted(&self) {
        self.submit.0.submitted.fetch_add(1, Ordering::Release);
    }

    /// Counts a job refused and handed back.
    pub(crate) fn rejected(&self) {
        self.rejected.0.fetch_add(1, Ordering::Relaxed);
    }

    /// A worker took a job off the queue.
    pub(crate) fn dequeued(&self) {
        self.worker.0.dequeued.fetch_add(1, Ordering::Relaxed);
    }

    /// A dequeued job ended.
    pub(crate) fn finished(&self, outcome: Outcome) {
        let w = &self.worker.0;
        let c = match outcome {
            Outcome::Completed => &w.completed,
            Outcome::Failed => &w.failed,
            Outcome::Panicked => &w.panicked,
            Outcome::Cancelled => &w.cancelled,
        };
        // Release: a reader that sees this count also sees the dequeue.
        c.fetch_add(1, Ordering::Release);
    }

    /// Reads a snapshot, in the order finished → dequeued → submitted. A
    /// submitter counts its job just after it entered the queue, so a worker
    /// can count the same job first; the snapshot clamps such a moment to
    /// `finished <= dequeued <= submitted`.
    pub(crate) fn snapshot(&self, workers: usize) -> PoolStats {
        let w = &self.worker.0;
        let completed = w.completed.load(Ordering::Acquire);
        let failed = w.failed.load(Ordering::Acquire);
        let panicked = w.panicked.load(Ordering::Acquire);
        let cancelled = w.cancelled.load(Ordering::Acquire);
        let dequeued = w.dequeued.load(Ordering::Acquire);
        let submitted = self.submit.0.submitted.load(Ordering::Acquire);
        let finished = completed + failed + panicked + cancelled;
        let dequeued = dequeued.max(finished);
        let submitted = submitted.max(dequeued);
        PoolStats {
            submitted,
            queued: submitted - dequeued,
            running: dequeued - finished,
            completed,
            failed,
            panicked,
            cancelled,
            rejected: self.rejected.0.load(Ordering::Relaxed),
            workers,
        }
    }
}

/// A snapshot of a pool's counters, from [`Pool::stats`](super::Pool::stats).
///
/// The counters are read one after another while jobs move, so a snapshot
/// taken while the pool is busy is only approximately simultaneous; it always
/// satisfies the accounting law
///
/// ```text
/// submitted = queued + running + completed + failed + panicked + cancelled
/// ```
///
/// and once the pool is quiet (no submit in progress, every ticket resolved)
/// every counter is exact. `rejected` counts jobs handed back by `try_submit`,
/// `submit_timeout` and `submit` on a closed pool: they were never submitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Jobs accepted into the queue.
    pub submitted: u64,
    /// Jobs waiting in the queue.
    pub queued: u64,
    /// Jobs a worker is running now.
    pub running: u64,
    /// Jobs whose handler returned `Ok`.
    pub completed: u64,
    /// Jobs whose handler returned `Err`.
    pub failed: u64,
    /// Jobs whose handler panicked.
    pub panicked: u64,
    /// Jobs cancelled while queued or running.
    pub cancelled: u64,
    /// Jobs refused and handed back (full queue, timeout, closed pool).
    pub rejected: u64,
    /// Worker tasks alive now (it lags a `resize` that shrinks the pool until
    /// the extra workers finish their current job).
    pub workers: usize,
}

impl PoolStats {
    /// Jobs that ended: `completed + failed + panicked + cancelled`.
    pub fn finished(&self) -> u64 {
        self.completed + self.failed + self.panicked + self.cancelled
    }

    /// Jobs accepted but not yet ended: `queued + running`.
    pub fn in_flight(&self) -> u64 {
        self.queued + self.running
    }
}

/// What [`Pool::shutdown`](super::Pool::shutdown) and
/// [`Pool::shutdown_timeout`](super::Pool::shutdown_timeout) report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolReport {
    /// Jobs that ran to their end (completed, failed or panicked) while the
    /// pool shut down: the queued and running jobs it drained.
    pub drained: u64,
    /// Jobs cancelled while the pool shut down: still queued or running at
    /// the deadline of `shutdown_timeout` (always 0 for `shutdown`, unless
    /// the pool's token fired meanwhile).
    pub cancelled: u64,
    /// Whether `shutdown_timeout`'s deadline passed and the rest was cancelled.
    pub timed_out: bool,
    /// How long the shutdown took.
    pub elapsed: Duration,
    /// The counters once every worker had ended.
    pub stats: PoolStats,
}
