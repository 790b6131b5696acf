//! [`PoolReport`]: what a pool did, live ([`Pool::report`](super::Pool::report))
//! or final ([`Pool::join`](super::Pool::join), [`Pool::shutdown`](super::Pool::shutdown)).

use std::fmt;
use std::time::Duration;

/// The pool's counts: a live snapshot from [`Pool::report`](super::Pool::report),
/// or the final one from [`Pool::join`](super::Pool::join) and
/// [`Pool::shutdown`](super::Pool::shutdown) (also inside their error).
///
/// The accounting law ([`is_balanced`](Self::is_balanced)):
///
/// ```text
/// submitted = queued + running + completed + failed + panicked + cancelled
/// ```
///
/// The counters are read one after another while jobs move, so a snapshot
/// of a busy pool is only approximately simultaneous, but it always
/// balances; once the pool is quiet (no submit in progress, every job
/// ended) every count is exact, and in a final report `queued`, `running`
/// and `workers` are 0. `rejected` counts jobs handed back (full queue,
/// timeout, too many waiting submits, closed pool): they were never
/// submitted.
///
/// `Display` prints a compact table:
///
/// ```text
/// workers  submitted  queued  running  completed  failed  panicked  cancelled  rejected  elapsed
/// 0               30       0        0         25       1         1          3         5     1.6s
/// ```
///
/// A pool with an adaptive limit adds a `limit` column, one with a retry
/// policy `attempts` and `retries` columns (before `elapsed`). A job
/// under a retry policy counts once in the law above however many
/// attempts it made; a job that waits for a slot of an adaptive limit
/// counts as running.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolReport {
    /// Jobs accepted into the queue.
    pub submitted: u64,
    /// Jobs waiting in the queue (or taken by a worker and not started yet).
    pub queued: u64,
    /// Jobs a worker is running now (with an adaptive limit, including
    /// the ones waiting for a slot).
    pub running: u64,
    /// Jobs whose handler returned `Ok`.
    pub completed: u64,
    /// Jobs whose handler returned `Err`.
    pub failed: u64,
    /// Jobs whose handler panicked.
    pub panicked: u64,
    /// Jobs cancelled while queued or running.
    pub cancelled: u64,
    /// Jobs refused and handed back (never submitted).
    pub rejected: u64,
    /// Worker tasks alive (it lags a `resize` that shrinks the pool until
    /// the extra workers finish their current job; 0 once the pool ended).
    pub workers: usize,
    /// The adaptive limit in force, for a pool built with
    /// [`adaptive`](super::PoolBuilder::adaptive) (the worker count follows
    /// it); `None` otherwise.
    pub limit: Option<usize>,
    /// Attempts of jobs under the pool's
    /// [`retry`](super::PoolBuilder::retry) policy, first attempts
    /// included (0 without one).
    pub attempts: u64,
    /// Of `attempts`, the ones after a job's first: its retries.
    pub retries: u64,
    /// Retries the policy's [`RetryBudget`](crate::RetryBudget) refused
    /// (each ended its job with the last error).
    pub budget_refusals: u64,
    /// Time since the pool was built, up to now or, once every worker has
    /// ended, up to that end.
    pub elapsed: Duration,
}

impl PoolReport {
    /// Jobs that ended: `completed + failed + panicked + cancelled`.
    pub fn finished(&self) -> u64 {
        self.completed + self.failed + self.panicked + self.cancelled
    }

    /// Jobs accepted and not ended yet: `queued + running`.
    pub fn in_flight(&self) -> u64 {
        self.queued + self.running
    }

    /// Whether `submitted = queued + running + completed + failed +
    /// panicked + cancelled`.
    pub fn is_balanced(&self) -> bool {
        self.submitted == self.in_flight() + self.finished()
    }
}

impl fmt::Display for PoolReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = [
            self.submitted,
            self.queued,
            self.running,
            self.completed,
            self.failed,
            self.panicked,
            self.cancelled,
            self.rejected,
        ];
        let mut header = vec![
            "workers",
            "submitted",
            "queued",
            "running",
            "completed",
            "failed",
            "panicked",
            "cancelled",
            "rejected",
        ];
        let mut row = vec![self.workers.to_string()];
        row.extend(counts.iter().map(u64::to_string));
        // The options' columns only where the pool has them.
        if let Some(limit) = self.limit {
            header.push("limit");
            row.push(limit.to_string());
        }
        if self.attempts > 0 {
            header.extend(["attempts", "retries"]);
            row.extend([self.attempts.to_string(), self.retries.to_string()]);
        }
        header.push("elapsed");
        row.push(format!("{:.1?}", self.elapsed));
        weir_context::__private::write_table(f, &header, &[row])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> PoolReport {
        PoolReport {
            submitted: 30,
            queued: 0,
            running: 0,
            completed: 25,
            failed: 1,
            panicked: 1,
            cancelled: 3,
            rejected: 5,
            workers: 0,
            limit: None,
            attempts: 0,
            retries: 0,
            budget_refusals: 0,
            elapsed: Duration::from_millis(1_600),
        }
    }

    #[test]
    fn display_is_a_table() {
        assert_eq!(
            report().to_string(),
            "workers  submitted  queued  running  completed  failed  panicked  cancelled  rejected  elapsed\n\
             0               30       0        0         25       1         1          3         5     1.6s\n"
        );
    }

    #[test]
    fn the_options_add_their_columns() {
        let r = PoolReport {
            limit: Some(12),
            attempts: 40,
            retries: 10,
            ..report()
        };
        assert_eq!(
            r.to_string(),
            "workers  submitted  queued  running  completed  failed  panicked  cancelled  rejected  limit  attempts  retries  elapsed\n\
             0               30       0        0         25       1         1          3         5     12        40       10     1.6s\n"
        );
    }

    #[test]
    fn derived_values() {
        let mut r = report();
        assert_eq!((r.finished(), r.in_flight()), (30, 0));
        assert!(r.is_balanced());
        r.queued = 1;
        assert!(!r.is_balanced());
    }
}
