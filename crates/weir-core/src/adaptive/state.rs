//! The state behind the lock: the estimate, the limit in force, the jobs in
//! flight, the open window and the counters.
//!
//! One `Mutex` guards all of it. Every decision (admit a job, record its
//! verdict, close a window) is a few arithmetic steps on this state, once
//! per job; a lock taken once per job costs far less than the job it
//! measures, and it keeps the limit, the semaphore's permits and the
//! counters consistent with each other without a lock-free protocol to
//! verify. (So there are no atomics here, and no loom model.)

use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::algorithm::{Algo, Reason};
use super::permit::LimitOutcome;
use super::stats::AdaptiveLimitStats;
use super::window::Window;

/// A move of the limit, logged once the lock is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Change {
    pub(super) old: usize,
    pub(super) new: usize,
    pub(super) reason: Reason,
}

#[derive(Debug)]
pub(super) struct Settings {
    pub(super) min: usize,
    pub(super) max: usize,
    pub(super) window: Duration,
    pub(super) window_samples: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: u64,
    rejected: u64,
    stopped: u64,
    succeeded: u64,
    dropped: u64,
    ignored: u64,
    abandoned: u64,
    adjustments: u64,
    windows: u64,
}

#[derive(Debug)]
pub(super) struct State {
    settings: Settings,
    algo: Algo,
    /// The limit as the algorithm computes it (a fraction, so that small
    /// steps add up); the limit in force is its whole part.
    estimate: f64,
    limit: usize,
    in_flight: usize,
    /// Permits to take out of circulation as they come back: the limit fell
    /// by more than the permits that were free at the time.
    ///
    /// Invariant: free permits + `in_flight` = `limit` + `debt`.
    debt: usize,
    window: Window,
    /// How many times the limit moved: a job counts as a sample only if
    /// the limit has not moved since it was admitted.
    epoch: u64,
    min_seen: usize,
    max_seen: usize,
    last_mean: Option<Duration>,
    counters: Counters,
}

impl State {
    pub(super) fn new(settings: Settings, algo: Algo, initial: usize) -> Self {
        Self {
            settings,
            algo,
            estimate: initial as f64,
            limit: initial,
            in_flight: 0,
            debt: 0,
            window: Window::new(Instant::now(), 0),
            epoch: 0,
            min_seen: initial,
            max_seen: initial,
            last_mean: None,
            counters: Counters::default(),
        }
    }

    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// A job was admitted (its permit taken from the semaphore); returns
    /// the limit's epoch, which the job's verdict must match to count.
    ///
    /// A job admitted under one limit says nothing about the next: counting
    /// it would make one overload answer for two windows (a double
    /// back-off). A job admitted while more jobs than the limit are in
    /// flight counts nowhere either: tokio hands a freed permit to a waiter
    /// at once, but the waiter is admitted here only when it next runs, so
    /// after a fall of the limit such a job was let in under the old one.
    pub(super) fn admitted(&mut self) -> Option<u64> {
        self.in_flight += 1;
        self.counters.accepted += 1;
        self.window.saw_in_flight(self.in_flight);
        (self.in_flight <= self.limit).then_some(self.epoch)
    }

    /// A permit handed back unused (its job turned out not to exist): as
    /// if it had never been admitted.
    pub(super) fn unused(&mut self, permit: OwnedSemaphorePermit) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.counters.accepted = self.counters.accepted.saturating_sub(1);
        self.give_back(permit);
    }

    /// Returns a permit to the semaphore, or retires it to pay the debt of
    /// a lowered limit.
    fn give_back(&mut self, permit: OwnedSemaphorePermit) {
        if self.debt > 0 {
            self.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }

    pub(super) fn rejected(&mut self) {
        self.counters.rejected += 1;
    }

    pub(super) fn stopped(&mut self) {
        self.counters.stopped += 1;
    }

    /// A job ended with `outcome`: gives its permit back (or retires it, to
    /// pay the debt of a lowered limit), records the verdict, and closes
    /// the window when it has seen enough. Returns the limit's move, if any.
    pub(super) fn finished(
        &mut self,
        sem: &Semaphore,
        permit: OwnedSemaphorePermit,
        started: Instant,
        epoch: Option<u64>,
        outcome: Verdict,
    ) -> Option<Change> {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.give_back(permit);
        let now = Instant::now();
        let counts = epoch == Some(self.epoch);
        match outcome {
            Verdict::Given(LimitOutcome::Success) => {
                self.counters.succeeded += 1;
                if counts {
                    self.window.success(now.saturating_duration_since(started));
                }
            }
            Verdict::Given(LimitOutcome::Dropped) => {
                self.counters.dropped += 1;
                if counts {
                    self.window.drop_();
                }
            }
            Verdict::Given(LimitOutcome::Ignored) => self.counters.ignored += 1,
            Verdict::Abandoned => self.counters.abandoned += 1,
        }
        if !self.window_ready(now) {
            return None;
        }
        self.close_window(sem, now)
    }

    /// Whether the open window has seen enough to decide on.
    ///
    /// The first verdicts of a window are its quickest jobs (the ones that
    /// met the least queueing), so good news is trusted only once there is
    /// a verdict per slot, while bad news is acted on as soon as there are
    /// `window_samples` verdicts: the rest can only be slower.
    fn window_ready(&self, now: Instant) -> bool {
        let s = &self.settings;
        if !self.window.lasted(now, s.window) {
            return false;
        }
        let verdicts = self.window.verdicts();
        if verdicts >= s.window_samples.max(self.limit as u64) {
            return true;
        }
        verdicts >= s.window_samples && self.algo.overloaded(&self.window.summary())
    }

    fn close_window(&mut self, sem: &Semaphore, now: Instant) -> Option<Change> {
        let summary = self.window.summary();
        self.counters.windows += 1;
        if summary.mean.is_some() {
            self.last_mean = summary.mean;
        }
        let (next, reason) = self.algo.update(self.estimate, self.limit, &summary);

        self.window = Window::new(now, self.in_flight);
        let reason = reason?;
        self.set_estimate(sem, next, reason)
    }

    /// Moves the estimate and, when its whole part changes, the limit in
    /// force, adding or retiring permits to match.
    fn set_estimate(&mut self, sem: &Semaphore, next: f64, reason: Reason) -> Option<Change> {
        let (min, max) = (self.settings.min as f64, self.settings.max as f64);
        if !next.is_finite() {
            return None;
        }
        self.estimate = next.clamp(min, max);
        // In range by the clamp; `as` cannot truncate a value this small.
        let new = (self.estimate.floor() as usize).clamp(self.settings.min, self.settings.max);
        let old = self.limit;
        if new == old {
            return None;
        }
        if new > old {
            let raise = new - old;
            let paid = raise.min(self.debt);
            self.debt -= paid;
            sem.add_permits(raise - paid);
        } else {
            let cut = old - new;
            let retired = sem.forget_permits(cut);
            self.debt += cut - retired;
        }
        self.limit = new;
        self.epoch += 1;
        self.counters.adjustments += 1;
        self.min_seen = self.min_seen.min(new);
        self.max_seen = self.max_seen.max(new);
        Some(Change { old, new, reason })
    }

    pub(super) fn stats(&self, name: &str, algorithm: &'static str) -> AdaptiveLimitStats {
        let c = &self.counters;
        AdaptiveLimitStats {
            name: name.to_owned(),
            algorithm,
            limit: self.limit,
            in_flight: self.in_flight,
            min_seen: self.min_seen,
            max_seen: self.max_seen,
            adjustments: c.adjustments,
            windows: c.windows,
            accepted: c.accepted,
            rejected: c.rejected,
            stopped: c.stopped,
            succeeded: c.succeeded,
            dropped: c.dropped,
            ignored: c.ignored,
            abandoned: c.abandoned,
            last_window_latency: self.last_mean,
            baseline_latency: self.algo.baseline(),
        }
    }

    /// The permit invariant, for tests.
    #[cfg(test)]
    pub(super) fn balanced(&self, sem: &Semaphore) -> bool {
        sem.available_permits() + self.in_flight == self.limit + self.debt
    }
}

/// How a permit ended: a verdict given, or dropped without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Given(LimitOutcome),
    Abandoned,
}
