//! [`RunError`]: how a run ended when it did not end well, with the report
//! of everything it did.

use std::error::Error as StdError;
use std::fmt;

/// A run (a pipeline, a pool, a group, a fan-in, a shutdown) that ended in
/// an error, together with its final report.
///
/// Every weir construct ends with `join(self)` (or `shutdown(grace)`)
/// returning `Result<Report, RunError<Error, Report>>`: on success the
/// report, on failure the error *and* the report, so the counts are never
/// lost when a deadline passes or ctrl-c arrives.
///
/// `Display` is the error's own message; `source()` is the error's source,
/// so the report never repeats in an error chain. Print the report with
/// [`report`](Self::report).
#[derive(Debug, Clone)]
pub struct RunError<E, R> {
    error: E,
    report: R,
}

impl<E, R> RunError<E, R> {
    /// The error `error`, with the run's final `report`.
    pub fn new(error: E, report: R) -> Self {
        Self { error, report }
    }

    /// What went wrong.
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The run's final report.
    pub fn report(&self) -> &R {
        &self.report
    }

    /// Takes the error out, dropping the report.
    pub fn into_error(self) -> E {
        self.error
    }

    /// Takes the report out, dropping the error.
    pub fn into_report(self) -> R {
        self.report
    }

    /// Both parts.
    pub fn into_parts(self) -> (E, R) {
        (self.error, self.report)
    }
}

impl<E: fmt::Display, R> fmt::Display for RunError<E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<E: StdError, R: fmt::Debug> StdError for RunError<E, R> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}
