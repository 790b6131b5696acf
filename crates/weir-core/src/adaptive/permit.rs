//! [`AdaptivePermit`]: one admitted job, and its verdict ([`LimitOutcome`]).

use std::fmt;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::AdaptiveLimit;
use super::state::Verdict;

/// How a job ended, as far as the limit is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitOutcome {
    /// The job reached the resource and came back: its latency is a sample.
    /// An error that the resource answered quickly (a "not found", a
    /// validation error) is a success here: it says the resource kept up.
    Success,
    /// The resource could not keep up: a timeout, a "busy" or "503" answer,
    /// a shed request. An overload signal: the limit shrinks.
    Dropped,
    /// The job says nothing about the resource's load (it failed before
    /// reaching it, or was cancelled): the slot is freed, nothing is learnt.
    Ignored,
}

/// One admitted job: its slot under the limit, and the clock of its latency.
///
/// Give a verdict when the job ends, with [`success`](Self::success),
/// [`dropped`](Self::dropped), [`ignore`](Self::ignore) or
/// [`finish`](Self::finish): the slot is freed at once and the latency (from
/// the moment the permit was handed out) and outcome feed the algorithm.
///
/// # Drop
///
/// Dropping the permit without a verdict frees the slot and counts the job
/// as `abandoned` in the [stats](super::AdaptiveLimitStats): no sample, as
/// with [`ignore`](Self::ignore). It happens when the task holding the
/// permit is cancelled, aborted or panics; a job that timed out should say
/// so with [`dropped`](Self::dropped) instead, or the limit will not learn
/// from it.
#[must_use = "a permit dropped at once frees its slot with no verdict"]
pub struct AdaptivePermit {
    limit: AdaptiveLimit,
    permit: Option<OwnedSemaphorePermit>,
    started: Instant,
    /// The limit's epoch when it was admitted (`None`: it counts nowhere).
    epoch: Option<u64>,
}

impl AdaptivePermit {
    pub(super) fn new(
        limit: AdaptiveLimit,
        permit: OwnedSemaphorePermit,
        epoch: Option<u64>,
    ) -> Self {
        Self {
            limit,
            permit: Some(permit),
            started: Instant::now(),
            epoch,
        }
    }

    /// The job succeeded: its latency is a sample ([`LimitOutcome::Success`]).
    pub fn success(self) {
        self.finish(LimitOutcome::Success);
    }

    /// The resource was overloaded: a timeout, a rejection
    /// ([`LimitOutcome::Dropped`]).
    pub fn dropped(self) {
        self.finish(LimitOutcome::Dropped);
    }

    /// The job's outcome says nothing about the load
    /// ([`LimitOutcome::Ignored`]).
    pub fn ignore(self) {
        self.finish(LimitOutcome::Ignored);
    }

    /// Ends the job with `outcome`.
    pub fn finish(mut self, outcome: LimitOutcome) {
        self.end(Verdict::Given(outcome));
    }

    /// Gives the slot back as if it had never been taken, for a construct
    /// that took a slot before it knew whether there was a job for it (a
    /// bounded run at the end of its input): not counted as accepted.
    pub(crate) fn unused(mut self) {
        if let Some(permit) = self.permit.take() {
            self.limit.unused(permit);
        }
    }

    /// When the permit was handed out: the start of the job's latency.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The limit this permit belongs to.
    pub fn limit(&self) -> &AdaptiveLimit {
        &self.limit
    }

    fn end(&mut self, verdict: Verdict) {
        if let Some(permit) = self.permit.take() {
            self.limit
                .finished(permit, self.started, self.epoch, verdict);
        }
    }
}

impl Drop for AdaptivePermit {
    fn drop(&mut self) {
        self.end(Verdict::Abandoned);
    }
}

impl fmt::Debug for AdaptivePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptivePermit")
            .field("limit", &self.limit.name())
            .field("started", &self.started)
            .finish()
    }
}
