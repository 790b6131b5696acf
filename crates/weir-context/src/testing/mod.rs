//! A leak check for your own tests, in the spirit of Go's `goleak`: start
//! it at the top of a test, verify it at the end; it fails, naming every
//! weir task still alive, if the test left one behind.
//!
//! ```
//! use std::time::Duration;
//! use weir_context::testing::LeakCheck;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let leaks = LeakCheck::start().grace(Duration::from_secs(1));
//! // ... the test: build pools, pipelines, groups, and join them ...
//! leaks.verify_none().await; // panics with the list of what is still alive
//! # }
//! ```
//!
//! # What it sees
//!
//! Every task weir spawns (a pool's workers and watcher, a pipeline's
//! source and stages, a group's tasks, `spawn_worker`, `Shutdown::spawn`,
//! fan-in and fan-out branches, bounded fan-out) registers with the check
//! that is current when it is spawned: the check started on the test's
//! thread, or, for a task spawned by a registered task, that task's check.
//! A leaked task is listed with its construct, the construct's name, its
//! role and index (`pool resize worker 3`, `pipeline etl stage parse 2`),
//! and where the construct was created (the line that called
//! `Pool::builder`, `Pipeline::from_iter`, `Group::new`, `spawn_worker`,
//! `Shutdown::spawn`, `merge`, ...).
//!
//! Beside weir's tasks it counts the runtime's own
//! (`Handle::current().metrics().num_alive_tasks()`): tasks alive that
//! weir did not spawn (your own `tokio::spawn`) fail the check too, as a
//! number, unless [`LeakCheck::ignore_other_tasks`] says otherwise.
//!
//! # Tests running at the same time
//!
//! Checks are kept apart per test: a check belongs to the thread that
//! started it, and libtest runs each test on its own thread with its own
//! `#[tokio::test]` runtime; the runtime's task count is that runtime's
//! only. One case is not attributed: a weir construct created inside a
//! task you spawned with `tokio::spawn` on a multi-thread runtime belongs
//! to no check (it is not on the test's thread and not inside a weir
//! task), so it shows only in the runtime's count. Build constructs in the
//! test body, or run such tests under `cargo nextest` (a process per test).
//!
//! # Cost
//!
//! Only with the `testing` feature (turn it on in `[dev-dependencies]`):
//! one registration per spawned task (a lock and an insert), none per item.
//! Without the feature the registration compiles to nothing.

pub(crate) mod registry;

use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

pub use crate::track::Construct;
use registry::{Check, Entry};

/// The grace period [`LeakCheck::start`] waits for tasks to end: one
/// second (of tokio's clock, so it passes at once under paused time).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(1);

/// The longest pause between two looks at the live tasks.
const MAX_STEP: Duration = Duration::from_millis(50);

/// A leak check: [`start`](LeakCheck::start) it at the top of a test,
/// [`verify`](LeakCheck::verify) (or [`verify_none`](LeakCheck::verify_none))
/// it at the end.
///
/// Dropping it without verifying ends the check silently: tasks spawned
/// after that belong to no check.
///
/// # Examples
///
/// ```
/// use weir_context::testing::{Construct, LeakCheck};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let leaks = LeakCheck::start().ignore_construct(Construct::Shutdown);
/// let handle = tokio::spawn(std::future::pending::<()>());
/// let err = leaks.verify().await.unwrap_err();
/// assert_eq!(err.other_tasks, 1); // the task above: weir did not spawn it
/// handle.abort();
/// # }
/// ```
#[must_use = "a leak check checks nothing until it is verified"]
#[derive(Debug)]
pub struct LeakCheck {
    check: Arc<Check>,
    /// The check that was current on this thread before; current again
    /// when this one ends.
    previous: Option<Arc<Check>>,
    /// The runtime's alive tasks when the check started.
    baseline: Option<usize>,
    grace: Duration,
    ignore_constructs: Vec<Construct>,
    ignore_names: Vec<String>,
    ignore_other: bool,
}

impl LeakCheck {
    /// Starts a check: weir tasks spawned from now on, from this thread or
    /// from within them, are watched. Call it first in the test body.
    ///
    /// Outside a tokio runtime the check still watches weir's tasks; it
    /// counts the runtime's tasks only if started inside one.
    pub fn start() -> Self {
        let check = Arc::new(Check::default());
        let previous = registry::enter(Some(Arc::clone(&check)));
        LeakCheck {
            check,
            previous,
            baseline: alive_in_runtime(),
            grace: DEFAULT_GRACE,
            ignore_constructs: Vec::new(),
            ignore_names: Vec::new(),
            ignore_other: false,
        }
    }

    /// How long [`verify`](LeakCheck::verify) waits for tasks to end
    /// before it fails ([`DEFAULT_GRACE`] unless set). `Duration::ZERO`
    /// looks once; a grace beyond the clock's range waits as long as
    /// tasks are alive.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Ignores every task of this kind of construct (goleak's
    /// `IgnoreTopFunction`, by construct).
    pub fn ignore_construct(mut self, construct: Construct) -> Self {
        self.ignore_constructs.push(construct);
        self
    }

    /// Ignores every task of the constructs with this name (a pool's or
    /// pipeline's `name`, a group's `name`, a worker's or shutdown task's
    /// name, a fan function's name such as `merge`).
    pub fn ignore_name(mut self, name: impl Into<String>) -> Self {
        self.ignore_names.push(name.into());
        self
    }

    /// Does not fail on tasks weir did not spawn (they are still counted
    /// in a failure's report).
    pub fn ignore_other_tasks(mut self) -> Self {
        self.ignore_other = true;
        self
    }

    /// Waits up to the grace period for every watched task to end, then
    /// returns what is still alive.
    ///
    /// # Errors
    ///
    /// A [`LeakError`] listing the weir tasks still alive after the grace
    /// period and the number of other tasks alive in the runtime.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future ends the check without a verdict.
    pub async fn verify(self) -> Result<(), LeakError> {
        let deadline = tokio::time::Instant::now().checked_add(self.grace);
        let mut step = Duration::from_millis(1);
        loop {
            let found = self.look();
            let now = tokio::time::Instant::now();
            let left = deadline.map(|d| d.saturating_duration_since(now));
            if found.is_clean(self.ignore_other) || left == Some(Duration::ZERO) {
                return found.into_result(self.ignore_other, self.grace);
            }
            let pause = left.map_or(step, |left| left.min(step));
            tokio::time::sleep(pause).await;
            step = (step * 2).min(MAX_STEP);
        }
    }

    /// [`verify`](LeakCheck::verify), panicking with the list of what is
    /// still alive: Go's `goleak.VerifyNone` for a test.
    ///
    /// # Panics
    ///
    /// When a task is still alive after the grace period; the message is
    /// the [`LeakError`]'s Display.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future ends the check without a verdict.
    pub async fn verify_none(self) {
        if let Err(err) = self.verify().await {
            panic!("{err}");
        }
    }

    /// One look at what is alive now.
    fn look(&self) -> Found {
        let alive = self.check.alive();
        let weir = alive.len();
        let leaked = alive
            .into_iter()
            .filter(|e| !self.ignores(e))
            .map(LeakedTask::from)
            .collect();
        let runtime = alive_in_runtime();
        let other = match (runtime, self.baseline) {
            (Some(now), Some(before)) => now.saturating_sub(before).saturating_sub(weir),
            _ => 0,
        };
        Found {
            leaked,
            other,
            runtime,
        }
    }

    fn ignores(&self, entry: &Entry) -> bool {
        self.ignore_constructs.contains(&entry.construct)
            || self.ignore_names.iter().any(|n| **n == *entry.name)
    }
}

impl Drop for LeakCheck {
    fn drop(&mut self) {
        // Only where this check is current: a check dropped on another
        // thread, or after a later one started, leaves that thread's alone.
        if registry::is_current(&self.check) {
            registry::enter(self.previous.take());
        }
    }
}

fn alive_in_runtime() -> Option<usize> {
    tokio::runtime::Handle::try_current()
        .ok()
        .map(|h| h.metrics().num_alive_tasks())
}

struct Found {
    leaked: Vec<LeakedTask>,
    other: usize,
    runtime: Option<usize>,
}

impl Found {
    fn is_clean(&self, ignore_other: bool) -> bool {
        self.leaked.is_empty() && (ignore_other || self.other == 0)
    }

    fn into_result(self, ignore_other: bool, grace: Duration) -> Result<(), LeakError> {
        if self.is_clean(ignore_other) {
            return Ok(());
        }
        Err(LeakError {
            leaked: self.leaked,
            other_tasks: self.other,
            runtime_tasks: self.runtime,
            grace,
        })
    }
}

/// A weir task still alive when a [`LeakCheck`] gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeakedTask {
    /// The kind of construct it belongs to.
    pub construct: Construct,
    /// The construct's name (empty when it has none).
    pub name: String,
    /// Its role: `worker`, `watcher`, `source`, `stage`, `task`, `branch`,
    /// `metrics`.
    pub task: &'static str,
    /// A pipeline stage's name.
    pub stage: Option<String>,
    /// The worker, task or branch index.
    pub index: Option<usize>,
    /// Where the construct was created.
    pub location: Option<&'static Location<'static>>,
}

impl From<Entry> for LeakedTask {
    fn from(e: Entry) -> Self {
        LeakedTask {
            construct: e.construct,
            name: e.name.into(),
            task: e.task,
            stage: e.stage.map(Into::into),
            index: e.index,
            location: e.location,
        }
    }
}

impl fmt::Display for LeakedTask {
    /// ``pool `resize` worker 3, created at tests/jobs.rs:12:5``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.construct.as_str())?;
        if !self.name.is_empty() {
            write!(f, " `{}`", self.name)?;
        }
        f.write_str(" ")?;
        f.write_str(self.task)?;
        if let Some(stage) = &self.stage {
            write!(f, " `{stage}`")?;
        }
        if let Some(index) = self.index {
            write!(f, " {index}")?;
        }
        if let Some(at) = self.location {
            write!(f, ", created at {at}")?;
        }
        Ok(())
    }
}

/// What a [`LeakCheck`] found alive after its grace period.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LeakError {
    /// weir's tasks still alive, in the order they were spawned (ignored
    /// ones left out).
    pub leaked: Vec<LeakedTask>,
    /// Tasks alive in the runtime that weir did not spawn and that were
    /// not alive when the check started.
    pub other_tasks: usize,
    /// The runtime's own count of alive tasks at the end, if the check ran
    /// in a runtime.
    pub runtime_tasks: Option<usize>,
    /// The grace period that ran out.
    pub grace: Duration,
}

impl fmt::Display for LeakError {
    /// A header line, then a line per leaked task and one for the others.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tasks still alive after a grace of {:?}: {} weir, {} other",
            self.grace,
            self.leaked.len(),
            self.other_tasks
        )?;
        for task in &self.leaked {
            write!(f, "\n  {task}")?;
        }
        if self.other_tasks > 0 {
            write!(f, "\n  {} task(s) weir did not spawn", self.other_tasks)?;
        }
        if let Some(n) = self.runtime_tasks {
            write!(f, "\n  (the runtime counts {n} alive)")?;
        }
        Ok(())
    }
}

impl std::error::Error for LeakError {}
