//! Per-stage counters and the report built from them.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;
use weir_context::__private::write_table;

use crate::adaptive::AdaptiveLimit;

/// What happened in one stage.
///
/// Accounting law: once the pipeline has been joined,
/// `input == output + filtered + failed + cancelled` for every stage
/// ([`StageReport::is_balanced`]). Before that, the difference is the
/// number of items the stage is working on ([`StageReport::in_flight`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageReport {
    /// The stage's name (`"source"` for the pipeline's source).
    pub name: String,
    /// How many workers the stage ran.
    pub workers: usize,
    /// Items the stage took from its input (for the source: items it
    /// produced).
    pub input: u64,
    /// Items the stage passed on to the next stage.
    pub output: u64,
    /// Items a filter stage dropped on purpose.
    pub filtered: u64,
    /// Items that failed: an `Err`, a panic or a timeout. Includes
    /// `panicked` and `timed_out`.
    pub failed: u64,
    /// Of `failed`, the items whose stage function panicked.
    pub panicked: u64,
    /// Of `failed`, the items that ran past the per-item timeout.
    pub timed_out: u64,
    /// Items the stage took in but could not finish or pass on because the
    /// pipeline stopped (cancel, first error under fail-fast, or the
    /// consumer went away).
    pub cancelled: u64,
    /// The adaptive limit in force, for a stage with
    /// [`adaptive`](crate::Pipeline::adaptive); `None` otherwise.
    pub limit: Option<usize>,
    /// Attempts under the stage's [`retry`](crate::Pipeline::retry)
    /// policy, first attempts included (0 without one).
    pub attempts: u64,
    /// Of `attempts`, the ones after an item's first: its retries.
    pub retries: u64,
    /// Retries the policy's [`RetryBudget`](crate::RetryBudget) refused.
    pub budget_refusals: u64,
    /// Time from the pipeline's start until the stage's last worker ended
    /// (or until now, while it runs).
    pub elapsed: Duration,
}

impl StageReport {
    /// `input - (output + filtered + failed + cancelled)`: items inside the
    /// stage right now. Zero after `join()`.
    pub fn in_flight(&self) -> i64 {
        self.input as i64 - (self.output + self.filtered + self.failed + self.cancelled) as i64
    }

    /// Whether every item that entered the stage is accounted for.
    pub fn is_balanced(&self) -> bool {
        self.in_flight() == 0
    }
}

/// What happened in a pipeline: one [`StageReport`] per stage, source
/// first, plus what the consumer did with the output.
///
/// `Display` prints it as a table, a row per stage:
///
/// ```text
/// stage   workers  in  out  filtered  failed  cancelled
/// source        1  10   10         0       0          0
/// square        4  10   10         0       0          0
/// delivered 10, undelivered 0, errors dropped 0, elapsed 1.2ms
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelineReport {
    /// The stages in pipeline order; the first is the source (except for
    /// [`Pipeline::from_receiver`](crate::Pipeline::from_receiver) feeding a
    /// one-worker stage, which reads the caller's channel directly).
    pub stages: Vec<StageReport>,
    /// Items the consumer received from the output stream.
    pub delivered: u64,
    /// Items the last stage passed on that the consumer never received,
    /// because it dropped the output stream first.
    pub undelivered: u64,
    /// Errors that could not be put on the error stream under
    /// [`ErrorPolicy::Continue`](crate::ErrorPolicy::Continue) because it
    /// was full (nobody reading it). They are still counted in `failed`.
    pub errors_dropped: u64,
    /// Time since the pipeline started, until its last task ended (or
    /// until now, while it runs).
    pub elapsed: Duration,
}

impl PipelineReport {
    /// The report of the stage with this name, if there is one.
    pub fn stage(&self, name: &str) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Items that failed in any stage.
    pub fn failed(&self) -> u64 {
        self.stages.iter().map(|s| s.failed).sum()
    }

    /// Items cancelled in any stage, plus undelivered output.
    pub fn cancelled(&self) -> u64 {
        self.stages.iter().map(|s| s.cancelled).sum::<u64>() + self.undelivered
    }

    /// Items filtered out in any stage.
    pub fn filtered(&self) -> u64 {
        self.stages.iter().map(|s| s.filtered).sum()
    }

    /// Whether every stage balances and everything the last stage passed on
    /// was either delivered or counted as undelivered.
    pub fn is_balanced(&self) -> bool {
        let last_out = self.stages.last().map_or(0, |s| s.output);
        self.stages.iter().all(StageReport::is_balanced)
            && self.stages.windows(2).all(|w| w[0].output == w[1].input)
            && last_out == self.delivered + self.undelivered
    }
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The options' columns only where a stage has them.
        let limits = self.stages.iter().any(|s| s.limit.is_some());
        let retries = self.stages.iter().any(|s| s.attempts > 0);
        let rows: Vec<Vec<String>> = self
            .stages
            .iter()
            .map(|s| {
                let mut row = vec![
                    s.name.clone(),
                    s.workers.to_string(),
                    s.input.to_string(),
                    s.output.to_string(),
                    s.filtered.to_string(),
                    s.failed.to_string(),
                    s.cancelled.to_string(),
                ];
                if limits {
                    row.push(s.limit.map_or_else(|| "-".to_owned(), |l| l.to_string()));
                }
                if retries {
                    row.extend([s.attempts.to_string(), s.retries.to_string()]);
                }
                row
            })
            .collect();
        let mut header = vec![
            "stage",
            "workers",
            "in",
            "out",
            "filtered",
            "failed",
            "cancelled",
        ];
        if limits {
            header.push("limit");
        }
        if retries {
            header.extend(["attempts", "retries"]);
        }
        write_table(f, &header, &rows)?;
        write!(
            f,
            "delivered {}, undelivered {}, errors dropped {}, elapsed {:?}",
            self.delivered, self.undelivered, self.errors_dropped, self.elapsed
        )
    }
}

/// Live counters of one stage, shared by its workers.
#[derive(Debug)]
pub(crate) struct StageCounters {
    pub(crate) name: Arc<str>,
    pub(crate) workers: usize,
    pub(crate) input: AtomicU64,
    pub(crate) output: AtomicU64,
    pub(crate) filtered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) attempts: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) budget_refusals: AtomicU64,
    /// The stage's adaptive limit, for the report.
    pub(crate) limit: Option<AdaptiveLimit>,
    /// Tasks of the stage still running; the last one to end closes and
    /// drains the stage's input.
    pub(crate) live: AtomicUsize,
    started: Instant,
    finished: Mutex<Option<Duration>>,
}

impl StageCounters {
    pub(crate) fn new(
        name: Arc<str>,
        workers: usize,
        tasks: usize,
        started: Instant,
        limit: Option<AdaptiveLimit>,
    ) -> Self {
        Self {
            name,
            workers,
            input: AtomicU64::new(0),
            output: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            budget_refusals: AtomicU64::new(0),
            limit,
            live: AtomicUsize::new(tasks),
            started,
            finished: Mutex::new(None),
        }
    }

    /// Marks one of the stage's tasks as ended; returns true for the last.
    pub(crate) fn task_ended(&self) -> bool {
        let last = self.live.fetch_sub(1, Relaxed) == 1;
        if last && let Ok(mut f) = self.finished.lock() {
            *f = Some(self.started.elapsed());
        }
        last
    }

    pub(crate) fn snapshot(&self) -> StageReport {
        let elapsed = self
            .finished
            .lock()
            .ok()
            .and_then(|f| *f)
            .unwrap_or_else(|| self.started.elapsed());
        StageReport {
            name: self.name.to_string(),
            workers: self.workers,
            input: self.input.load(Relaxed),
            output: self.output.load(Relaxed),
            filtered: self.filtered.load(Relaxed),
            failed: self.failed.load(Relaxed),
            panicked: self.panicked.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            limit: self.limit.as_ref().map(AdaptiveLimit::limit),
            attempts: self.attempts.load(Relaxed),
            retries: self.retries.load(Relaxed),
            budget_refusals: self.budget_refusals.load(Relaxed),
            elapsed,
        }
    }
}
