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
///
/// Both parts live in one box, so a `Result` carrying a `RunError` stays
/// one pointer wide on its error side.
#[derive(Clone)]
pub struct RunError<E, R> {
    parts: Box<(E, R)>,
}

impl<E, R> RunError<E, R> {
    /// The error `error`, with the run's final `report`.
    pub fn new(error: E, report: R) -> Self {
        Self {
            parts: Box::new((error, report)),
        }
    }

    /// What went wrong.
    pub fn error(&self) -> &E {
        &self.parts.0
    }

    /// The run's final report.
    pub fn report(&self) -> &R {
        &self.parts.1
    }

    /// Takes the error out, dropping the report.
    pub fn into_error(self) -> E {
        self.parts.0
    }

    /// Takes the report out, dropping the error.
    pub fn into_report(self) -> R {
        self.parts.1
    }

    /// Both parts.
    pub fn into_parts(self) -> (E, R) {
        *self.parts
    }
}

impl<E: fmt::Debug, R: fmt::Debug> fmt::Debug for RunError<E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunError")
            .field("error", &self.parts.0)
            .field("report", &self.parts.1)
            .finish()
    }
}

impl<E: fmt::Display, R> fmt::Display for RunError<E, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.parts.0, f)
    }
}

impl<E: StdError, R: fmt::Debug> StdError for RunError<E, R> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.parts.0.source()
    }
}
