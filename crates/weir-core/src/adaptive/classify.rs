//! [`ClassifyOutcome`]: what a job's result tells an adaptive limit, and
//! the two usual answers, [`IgnoreOnError`] and [`DropOnError`].

use super::LimitOutcome;

/// Decides the [`LimitOutcome`] of a job's result: what a pool, a bounded
/// fan-out or a tower service following an
/// [`AdaptiveLimit`](super::AdaptiveLimit) tells it when a job ends. Any
/// `Fn(&Result<T, E>) -> LimitOutcome` is one.
pub trait ClassifyOutcome<T, E> {
    /// The outcome of `result` for the limit.
    fn classify(&self, result: &Result<T, E>) -> LimitOutcome;
}

impl<T, E, F> ClassifyOutcome<T, E> for F
where
    F: Fn(&Result<T, E>) -> LimitOutcome,
{
    fn classify(&self, result: &Result<T, E>) -> LimitOutcome {
        self(result)
    }
}

/// `Ok` is [`LimitOutcome::Success`], `Err` is [`LimitOutcome::Dropped`]:
/// the default of the tower layer, where an error is most often a
/// timeout, a refused connection or a shed request (overload).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropOnError;

impl<T, E> ClassifyOutcome<T, E> for DropOnError {
    fn classify(&self, result: &Result<T, E>) -> LimitOutcome {
        match result {
            Ok(_) => LimitOutcome::Success,
            Err(_) => LimitOutcome::Dropped,
        }
    }
}

/// `Ok` is [`LimitOutcome::Success`], `Err` is [`LimitOutcome::Ignored`]:
/// the default of a [`Pool`](crate::Pool) and a [`Bounded`](crate::Bounded)
/// run, whose jobs' errors are most often your own (a bad input, a "not
/// found") and say nothing about the load. Say otherwise with their
/// `classify(..)` option when your errors include timeouts or "busy"
/// answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgnoreOnError;

impl<T, E> ClassifyOutcome<T, E> for IgnoreOnError {
    fn classify(&self, result: &Result<T, E>) -> LimitOutcome {
        match result {
            Ok(_) => LimitOutcome::Success,
            Err(_) => LimitOutcome::Ignored,
        }
    }
}
