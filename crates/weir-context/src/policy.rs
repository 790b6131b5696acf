//! [`ErrorPolicy`]: what a failure does to the rest of a run.

/// What a construct does when one of its items or tasks fails (returns
/// `Err`, panics, or runs past a per-item timeout). Pipelines, task groups
/// and bounded fan-out take it the same way (`.error_policy(..)`), so
/// fail-fast or continue is always a choice written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ErrorPolicy {
    /// The first failure cancels the whole run: everything else stops
    /// promptly, work in flight is counted as cancelled, and `join()`
    /// returns that failure (like Go's errgroup). The default.
    #[default]
    FailFast,
    /// A failure is counted and handed to the caller (an error stream, the
    /// report), and the run goes on with the next item or task.
    Continue,
}
