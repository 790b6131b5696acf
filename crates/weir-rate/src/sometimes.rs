//! [`Sometimes`]: run an action the first few times, every Nth time, or at
//! most once per interval — Go's `rate.Sometimes`.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Runs an action occasionally: the first `N` times, every `M`th time,
/// and/or when an interval has passed since it last ran (Go's
/// `golang.org/x/time/rate.Sometimes`). For logging a repeated event without
/// flooding the log, sampling, or a warning worth giving now and then.
///
/// The filters are a **union**, as in Go: [`run`](Self::run) runs the
/// action if *any* configured filter allows it, and the very first call
/// always runs it.
///
/// - [`first(n)`](Self::first): the first `n` calls run it;
/// - [`every(m)`](Self::every): every `m`th call runs it, starting with the
///   first (calls 1, m + 1, 2m + 1, ...);
/// - [`interval(d)`](Self::interval): a call runs it when at least `d` has
///   passed since it last ran (by whichever filter).
///
/// A filter set to zero is not set. With no filter set it runs the action
/// exactly once, on the first call: like Go's zero `Sometimes`, a
/// `std::sync::Once` (less efficiently). An interval is measured on tokio's
/// clock ([`tokio::time::Instant`]), so a test on a paused runtime drives it
/// deterministically; outside a runtime that clock is std's. An interval too
/// long to ever pass (`Duration::MAX`) never runs the action by itself.
///
/// It is a plain value with `const` builders, so it can be a `static`, like
/// Go's package-level `var sometimes = rate.Sometimes{...}`. It is `Sync`:
/// share it by reference.
///
/// # Difference from Go
///
/// Go's `Do` runs the action while holding its mutex: concurrent calls wait
/// for one another, and an action that calls `Do` on the same value
/// deadlocks. Here only the decision is made under the (briefly held) lock;
/// the action runs after it is released. So calls never wait for another
/// call's action, an action may call `run` on the same value (that call
/// counts like any other), and actions of concurrent calls may overlap.
/// The interval is measured from the moment the run was decided (in Go:
/// from the moment the action returned), which is what keeps two racing
/// calls from both running it within one interval. A panicking action
/// still counts as run.
///
/// # Examples
///
/// ```
/// # mod weir { pub use weir_rate as rate; }
/// use std::time::Duration;
/// use weir::rate::Sometimes;
///
/// static NOISY: Sometimes = Sometimes::new().first(2).every(10);
///
/// let mut ran = Vec::new();
/// for call in 0..25 {
///     NOISY.run(|| ran.push(call));
/// }
/// assert_eq!(ran, [0, 1, 10, 20]); // the first 2, then every 10th
///
/// // At most once a minute (and the first time).
/// let warn = Sometimes::new().interval(Duration::from_secs(60));
/// assert_eq!(warn.run(|| "disk almost full"), Some("disk almost full"));
/// assert_eq!(warn.run(|| "disk almost full"), None);
/// ```
#[derive(Debug)]
pub struct Sometimes {
    first: u64,
    every: u64,
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Calls so far.
    count: u64,
    /// When the action last ran; only kept with an interval set.
    last: Option<Instant>,
}

impl Default for Sometimes {
    fn default() -> Self {
        Self::new()
    }
}

impl Sometimes {
    /// No filter: the action runs on the first call only (Go's zero
    /// `Sometimes`). Add filters with [`first`](Self::first),
    /// [`every`](Self::every) and [`interval`](Self::interval).
    pub const fn new() -> Self {
        Sometimes {
            first: 0,
            every: 0,
            interval: Duration::ZERO,
            state: Mutex::new(State {
                count: 0,
                last: None,
            }),
        }
    }

    /// The first `n` calls run the action (Go's `First`); 0 unsets it.
    pub const fn first(mut self, n: u64) -> Self {
        self.first = n;
        self
    }

    /// Every `m`th call runs the action, starting with the first (Go's
    /// `Every`); 0 unsets it, and 1 runs it every time.
    pub const fn every(mut self, m: u64) -> Self {
        self.every = m;
        self
    }

    /// A call runs the action when at least `d` has passed since it last
    /// ran (Go's `Interval`); `Duration::ZERO` unsets it.
    pub const fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }

    /// Runs `action` if the filters allow it this time (Go's `Do`), and
    /// returns what it returned; `None` when it did not run. Every call
    /// counts, whether the action runs or not.
    ///
    /// # Panics
    ///
    /// If `action` panics, the panic goes on to the caller; the call has
    /// been counted and the action counts as run.
    pub fn run<R>(&self, action: impl FnOnce() -> R) -> Option<R> {
        self.allows().then(action)
    }

    /// Whether this call may run the action, counting the call.
    fn allows(&self) -> bool {
        // The state is two plain stores away from consistent: a panic
        // cannot leave it half-written, so poisoning is ignored.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let count = state.count;
        state.count = count.saturating_add(1);
        let by_count = count == 0
            || (self.first > 0 && count < self.first)
            || (self.every > 0 && count.is_multiple_of(self.every));
        if self.interval.is_zero() {
            return by_count;
        }
        // The clock is read only when an interval is set.
        let now = Instant::now();
        let by_time = state
            .last
            .is_some_and(|last| now.saturating_duration_since(last) >= self.interval);
        let runs = by_count || by_time;
        if runs {
            state.last = Some(now);
        }
        runs
    }
}
