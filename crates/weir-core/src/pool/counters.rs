//! The pool's live counters, read into a [`PoolReport`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::PoolReport;

/// A counter on its own cache line, so submitters and workers do not
/// invalidate each other's lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Line<T>(T);

/// Written by submitters.
#[derive(Debug, Default)]
struct SubmitSide {
    /// Ids handed out: one per submit attempt.
    next_id: AtomicU64,
}

/// Written by submitters on the slow path only.
#[derive(Debug, Default)]
struct WaitSide {
    /// Submits waiting for room now.
    waiting: AtomicU64,
    /// Submit futures dropped while they waited (their job never entered).
    abandoned: AtomicU64,
}

/// One worker's counters. Only that worker writes them (single writer: a
/// load and a store, no read-modify-write and no cache line shared with
/// other workers); [`Counters::snapshot`] sums them.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerCounters {
    dequeued: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    /// Written only by pools with a retry policy.
    retry: RetryCounters,
}

/// Attempts, retries and refused retries of a worker's jobs (a pool with
/// a retry policy).
#[derive(Debug, Default)]
struct RetryCounters {
    attempts: AtomicU64,
    retries: AtomicU64,
    budget_refusals: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64) {
    // Single writer: see `WorkerCounters`.
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Release);
}

impl WorkerCounters {
    /// This worker took a job off the queue.
    #[inline]
    pub(crate) fn dequeued(&self) {
        bump(&self.dequeued);
    }

    /// A job this worker dequeued ended.
    #[inline]
    pub(crate) fn finished(&self, outcome: Outcome) {
        bump(match outcome {
            Outcome::Completed => &self.completed,
            Outcome::Failed => &self.failed,
            Outcome::Panicked => &self.panicked,
            Outcome::Cancelled => &self.cancelled,
        });
    }

    /// An attempt of a job under the pool's retry policy starts.
    pub(crate) fn attempted(&self) {
        bump(&self.retry.attempts);
    }

    /// A job under the pool's retry policy is attempted again.
    pub(crate) fn retried(&self) {
        bump(&self.retry.retries);
    }

    /// The retry budget refused a job's retry.
    pub(crate) fn budget_refused(&self) {
        bump(&self.retry.budget_refusals);
    }
}

/// Sums of worker counters.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    dequeued: u64,
    completed: u64,
    failed: u64,
    panicked: u64,
    cancelled: u64,
    attempts: u64,
    retries: u64,
    budget_refusals: u64,
}

impl Totals {
    fn add_finished(&mut self, w: &WorkerCounters) {
        self.completed += w.completed.load(Ordering::Acquire);
        self.failed += w.failed.load(Ordering::Acquire);
        self.panicked += w.panicked.load(Ordering::Acquire);
        self.cancelled += w.cancelled.load(Ordering::Acquire);
        let r = &w.retry;
        self.attempts += r.attempts.load(Ordering::Acquire);
        self.retries += r.retries.load(Ordering::Acquire);
        self.budget_refusals += r.budget_refusals.load(Ordering::Acquire);
    }

    fn finished(&self) -> u64 {
        self.completed + self.failed + self.panicked + self.cancelled
    }
}

/// The live workers' counters and the sums of the ended ones. A worker
/// keeps its slot, so that leaving is O(1): 65,536 workers that end
/// together do not search the list 65,536 times.
#[derive(Debug, Default)]
struct Registry {
    slots: Vec<Option<Arc<WorkerCounters>>>,
    /// Slots of ended workers, for reuse.
    free: Vec<usize>,
    ended: Totals,
}

impl Registry {
    fn live(&self) -> impl Iterator<Item = &WorkerCounters> {
        self.slots.iter().flatten().map(|w| &**w)
    }
}

/// A worker's counters, registered in its pool's [`Counters`].
#[derive(Debug)]
pub(crate) struct Registered {
    counters: Arc<WorkerCounters>,
    slot: usize,
}

impl std::ops::Deref for Registered {
    type Target = WorkerCounters;

    fn deref(&self) -> &WorkerCounters {
        &self.counters
    }
}

/// The live counters behind [`PoolReport`]. `queued` and `running` are derived
/// (`submitted - dequeued`, `dequeued - finished`); the tests check every
/// counter against what the tickets say.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    submit: Line<SubmitSide>,
    wait: Line<WaitSide>,
    rejected: Line<AtomicU64>,
    workers: Mutex<Registry>,
}

/// How a job ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Failed,
    Panicked,
    Cancelled,
}

fn lock(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    // Nothing panics while holding this lock; recover anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Counters {
    /// The id for a submit attempt. An attempt ends submitted (the
    /// default: no second count on the fast path), [`rejected`](Self::rejected)
    /// or abandoned (see [`Waiting`]); `submitted` is derived from that.
    #[inline]
    pub(crate) fn next_id(&self) -> u64 {
        self.submit.0.next_id.fetch_add(1, Ordering::AcqRel)
    }

    /// A submit starts waiting for room; see [`Waiting`].
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.wait.0.waiting.fetch_add(1, Ordering::AcqRel);
        Waiting {
            counters: self,
            done: false,
        }
    }

    /// Counts a job refused and handed back.
    pub(crate) fn rejected(&self) {
        self.rejected.0.fetch_add(1, Ordering::AcqRel);
    }

    /// Counters for a new worker.
    pub(crate) fn register(&self) -> Registered {
        let counters = Arc::new(WorkerCounters::default());
        let mut reg = lock(&self.workers);
        let slot = match reg.free.pop() {
            Some(slot) => slot,
            None => {
                reg.slots.push(None);
                reg.slots.len() - 1
            }
        };
        reg.slots[slot] = Some(counters.clone());
        Registered { counters, slot }
    }

    /// A worker ended: keep its counts, free its slot.
    pub(crate) fn unregister(&self, w: &Registered) {
        let mut reg = lock(&self.workers);
        if reg.slots[w.slot].take().is_some() {
            reg.ended.add_finished(w);
            reg.ended.dequeued += w.dequeued.load(Ordering::Acquire);
            reg.free.push(w.slot);
        }
    }

    /// Reads a snapshot: finished counts first, then dequeued, then the
    /// submit side. `submitted` is the ids handed out minus the attempts
    /// that were rejected, are waiting or were abandoned, so the fast path
    /// of a submit costs one atomic add. A job being pushed right now counts
    /// as submitted a moment early, and workers count on their own lines, so
    /// a snapshot taken while jobs move is clamped to
    /// `finished <= dequeued <= submitted`.
    pub(crate) fn snapshot(
        &self,
        workers: usize,
        limit: Option<usize>,
        elapsed: Duration,
    ) -> PoolReport {
        let t = {
            let reg = lock(&self.workers);
            let mut t = reg.ended;
            for w in reg.live() {
                t.add_finished(w);
            }
            for w in reg.live() {
                t.dequeued += w.dequeued.load(Ordering::Acquire);
            }
            t
        };
        let rejected = self.rejected.0.load(Ordering::Acquire);
        let waiting = self.wait.0.waiting.load(Ordering::Acquire);
        let abandoned = self.wait.0.abandoned.load(Ordering::Acquire);
        let issued = self.submit.0.next_id.load(Ordering::Acquire);
        let submitted = issued.saturating_sub(rejected + waiting + abandoned);
        let finished = t.finished();
        let dequeued = t.dequeued.max(finished);
        let submitted = submitted.max(dequeued);
        PoolReport {
            submitted,
            queued: submitted - dequeued,
            running: dequeued - finished,
            completed: t.completed,
            failed: t.failed,
            panicked: t.panicked,
            cancelled: t.cancelled,
            rejected,
            workers,
            limit,
            attempts: t.attempts,
            retries: t.retries,
            budget_refusals: t.budget_refusals,
            elapsed,
        }
    }
}

/// A submit waiting for room (the slow path). Counted as waiting, not as
/// submitted, until [`done`](Self::done); if the submit future is dropped
/// while it waits, the attempt counts as abandoned (neither submitted nor
/// rejected: the job never entered the pool).
pub(crate) struct Waiting<'a> {
    counters: &'a Counters,
    done: bool,
}

impl Waiting<'_> {
    /// The wait is over: the job is in the queue, or it was rejected (count
    /// the rejection first).
    pub(crate) fn done(mut self) {
        self.done = true;
        self.counters.wait.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.done {
            let w = &self.counters.wait.0;
            w.abandoned.fetch_add(1, Ordering::AcqRel);
            w.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
