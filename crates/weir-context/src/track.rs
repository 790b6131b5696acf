//! What weir's crates call when they spawn a task, so that the leak check
//! (`testing`, feature `testing`) can name the tasks still alive.
//!
//! With the feature off, [`Origin`] is a zero-sized type and [`track`]
//! returns the future it was given: a spawn costs what it cost before.
//! With it on, [`track`] registers the task with the leak check that is
//! current on this thread (if any) and wraps the future so that the
//! registration ends when the future is dropped (when the task ends or is
//! aborted), and so that tasks it spawns belong to the same check.

use std::fmt;

/// The kind of weir construct a task belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Construct {
    /// A `Pool`'s workers and its watcher.
    Pool,
    /// A `Pipeline`'s source and stage tasks.
    Pipeline,
    /// A `Group`'s tasks.
    Group,
    /// A task started with `spawn_worker` or `WorkerBuilder::spawn`.
    Worker,
    /// A task started with `Shutdown::spawn`.
    Shutdown,
    /// A fan-in or fan-out (`merge`, `merge_in_turn`, `distribute`,
    /// `broadcast`): its name is the function's.
    Fan,
    /// Bounded fan-out (`for_each_bounded`, `for_each_in_batches`,
    /// `Bounded`).
    Bounded,
}

impl Construct {
    /// The construct's name in lowercase: `pool`, `pipeline`, `group`,
    /// `worker`, `shutdown`, `fan`, `bounded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Construct::Pool => "pool",
            Construct::Pipeline => "pipeline",
            Construct::Group => "group",
            Construct::Worker => "worker",
            Construct::Shutdown => "shutdown",
            Construct::Fan => "fan",
            Construct::Bounded => "bounded",
        }
    }
}

impl fmt::Display for Construct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a construct was created: the caller of a `#[track_caller]`
/// constructor. Zero-sized, and recording nothing, without the `testing`
/// feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    #[cfg(feature = "testing")]
    location: Option<&'static std::panic::Location<'static>>,
}

impl Origin {
    /// The caller's location (through any chain of `#[track_caller]`
    /// functions).
    #[track_caller]
    #[inline]
    #[must_use]
    pub fn here() -> Self {
        Origin {
            #[cfg(feature = "testing")]
            location: Some(std::panic::Location::caller()),
        }
    }

    /// The recorded location; `None` for `Origin::default()`.
    #[cfg(feature = "testing")]
    pub fn location(&self) -> Option<&'static std::panic::Location<'static>> {
        self.location
    }
}

/// What one spawned task is: `pool resize worker 3`, `pipeline etl stage
/// parse 2`, `group crawl task 17`.
#[derive(Clone, Copy, Debug)]
pub struct Label<'a> {
    /// The construct's kind.
    pub construct: Construct,
    /// The construct's name (a pool's or pipeline's name, a fan function's
    /// name); may be empty.
    pub name: &'a str,
    /// The task's role in it: `worker`, `watcher`, `stage`, `task`,
    /// `branch`, `metrics`.
    pub task: &'static str,
    /// A pipeline stage's name.
    pub stage: Option<&'a str>,
    /// The worker, task or branch index.
    pub index: Option<usize>,
    /// Where the construct was created.
    pub origin: Origin,
}

impl fmt::Display for Label<'_> {
    /// `pool resize worker 3`: the name tokio-console shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.construct.as_str())?;
        for part in [self.name, self.task, self.stage.unwrap_or("")] {
            if !part.is_empty() {
                write!(f, " {part}")?;
            }
        }
        if let Some(index) = self.index {
            write!(f, " {index}")?;
        }
        Ok(())
    }
}

/// The future [`track`] returns: the future itself without the `testing`
/// feature.
#[cfg(not(feature = "testing"))]
pub type Tracked<F> = F;

/// Registers the task that will run `fut` (nothing without the `testing`
/// feature).
#[cfg(not(feature = "testing"))]
#[inline(always)]
pub fn track<F: std::future::Future>(label: &Label<'_>, fut: F) -> Tracked<F> {
    let _ = label;
    fut
}

#[cfg(feature = "testing")]
pub use crate::testing::registry::{Tracked, track};
