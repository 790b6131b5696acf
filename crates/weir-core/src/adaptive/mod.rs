//! An adaptive concurrency limit: how many jobs may run at once against a
//! resource whose capacity nobody knows, found from each job's latency and
//! outcome (Netflix's `concurrency-limits`, failsafe-go's adaptive limiter).
//!
//! An [`AdaptiveLimit`] is a semaphore whose size moves. A caller takes a
//! slot with [`acquire`](AdaptiveLimit::acquire) (waiting while the slots
//! in use reach the limit) or [`try_acquire`](AdaptiveLimit::try_acquire),
//! runs its job, and gives the [`AdaptivePermit`] a verdict:
//! [`success`](AdaptivePermit::success) (the latency is a sample),
//! [`dropped`](AdaptivePermit::dropped) (an overload signal) or
//! [`ignore`](AdaptivePermit::ignore). At the end of each measuring window
//! the algorithm moves the limit:
//!
//! - [`Aimd`]: +1 after a fully used window, ×0.75 after a drop or a window
//!   slower than a latency threshold you give;
//! - [`Gradient`] (the default): follows the ratio of the unloaded latency
//!   (probed) to the latency now, so it needs no threshold.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use weir_core::AdaptiveLimit;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> anyhow::Result<()> {
//! let limit = AdaptiveLimit::builder().name("db").min(2).max(200).build()?;
//! let mut moves = limit.subscribe(); // a pool can resize from this
//! for _ in 0..200 {
//!     let permit = limit.acquire().await?;
//!     tokio::time::sleep(Duration::from_millis(5)).await; // the job
//!     permit.success();
//! }
//! // One job at a time never fills 10 slots: nothing was learnt.
//! assert_eq!(limit.limit(), 10);
//! assert!(!moves.has_changed()?);
//! assert_eq!(limit.stats().succeeded, 200);
//! # Ok(())
//! # }
//! ```
//!
//! # Observing it
//!
//! - [`AdaptiveLimit::limit`] and [`AdaptiveLimit::stats`]
//!   ([`AdaptiveLimitStats`]): the limit now, the lowest and highest so far,
//!   how often it moved, and what happened to each admitted job;
//! - [`AdaptiveLimit::subscribe`]: a `tokio::sync::watch` receiver of the
//!   limit, for code that follows it (a pool resizing its workers);
//! - a `DEBUG` tracing event (target `weir_core::adaptive`) each time the
//!   limit moves, with its `name`, `algorithm`, `old` and `new` values and
//!   the `reason`. `DEBUG`, not `INFO`: in a steady state AIMD moves the
//!   limit every few windows (a sawtooth around the capacity), which at
//!   `INFO` would flood a service's log; the limit's level is a metric,
//!   read from `stats()` or `subscribe()`.
//!
//! # Cancellation, errors, panics and drop
//!
//! - A wait ends early when its context (given with
//!   [`AdaptiveAcquire::context`]) is cancelled or its deadline passes:
//!   [`AdaptiveLimitError::Stopped`] with the cause; nothing is taken.
//!   Dropping a waiting [`AdaptiveAcquire`] takes nothing either.
//! - A permit dropped without a verdict (its task cancelled, aborted or
//!   panicking) frees its slot and is counted as `abandoned`, not sampled.
//! - When the limit falls below the jobs in flight, nothing is interrupted:
//!   new jobs wait until enough of the running ones end.
//! - Nothing here spawns a task or panics on any input; bad settings are a
//!   [`ConfigError`](crate::ConfigError) from
//!   [`build`](AdaptiveLimitBuilder::build).
//!
//! # Time
//!
//! Latency is measured on tokio's clock, so on a paused runtime (tests, the
//! simulation in `tests/adaptive_simulation.rs`) the algorithms run
//! deterministically and in no time.

mod acquire;
mod algorithm;
mod builder;
mod classify;
mod error;
mod permit;
mod state;
mod stats;
#[cfg(feature = "tower")]
pub mod tower;
mod window;

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

pub use acquire::AdaptiveAcquire;
pub use algorithm::{Aimd, Gradient, LimitAlgorithm};
pub use builder::AdaptiveLimitBuilder;
pub use classify::{ClassifyOutcome, DropOnError, IgnoreOnError};
pub use error::AdaptiveLimitError;
pub use permit::{AdaptivePermit, LimitOutcome};
pub use stats::AdaptiveLimitStats;

use algorithm::Algo;
use state::{Change, Settings, State, Verdict};

/// A concurrency limit that finds its own value from the latency and outcome
/// of the jobs it admits. See the [module docs](self).
///
/// Cheap to clone: clones share one limit.
#[derive(Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

struct Inner {
    name: Cow<'static, str>,
    min: usize,
    max: usize,
    algorithm: &'static str,
    /// One permit per slot; its size follows the limit (see `State::debt`).
    sem: Arc<Semaphore>,
    state: Mutex<State>,
    /// The limit in force, for followers. Written under the state lock, so
    /// followers never see the moves out of order.
    watch: watch::Sender<usize>,
}

impl AdaptiveLimit {
    /// The settings, starting from the defaults ([`AdaptiveLimitBuilder::new`]).
    pub fn builder() -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder::new()
    }

    fn from_builder(b: AdaptiveLimitBuilder, min: usize, max: usize, initial: usize) -> Self {
        let algorithm = b.algorithm.name();
        let settings = Settings {
            min,
            max,
            window: b.window,
            window_samples: b.window_samples,
        };
        let state = State::new(settings, Algo::new(b.algorithm), initial);
        Self {
            inner: Arc::new(Inner {
                name: b.name.unwrap_or(Cow::Borrowed("adaptive limit")),
                min,
                max,
                algorithm,
                sem: Arc::new(Semaphore::new(initial)),
                state: Mutex::new(state),
                watch: watch::Sender::new(initial),
            }),
        }
    }

    /// Takes a slot, waiting while the jobs in flight reach the limit;
    /// `.await` it, after [`.context(ctx)`](AdaptiveAcquire::context) to
    /// bound the wait. Waiters are served first come, first served.
    ///
    /// # Errors
    ///
    /// [`AdaptiveLimitError::Stopped`] with the cause when the context was
    /// cancelled (or its deadline passed) before a slot was handed over, or
    /// already when the call began; nothing is taken.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes takes nothing,
    /// and a slot set aside for it goes on to the next waiter. It loses its
    /// place in the queue.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::{AdaptiveLimit, AdaptiveLimitError, Cause, Context};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// let limit = AdaptiveLimit::builder().initial(1).build()?;
    /// let held = limit.acquire().await?;
    /// let ctx = Context::background().with_timeout(Duration::from_millis(50));
    /// let err = limit.acquire().context(&ctx).await.unwrap_err();
    /// assert_eq!(err, AdaptiveLimitError::Stopped(Cause::DeadlineExceeded));
    /// held.success();
    /// # Ok(())
    /// # }
    /// ```
    pub fn acquire(&self) -> AdaptiveAcquire {
        AdaptiveAcquire::new(self.clone())
    }

    /// A slot, however long that takes: for a construct that drops this
    /// future when it is cancelled (a pool's worker, a stage, a bounded
    /// run watch their own cancellation).
    pub(crate) async fn slot(&self) -> AdaptivePermit {
        match self.acquire().await {
            Ok(permit) => permit,
            // Without a context the wait ends only with a slot: the
            // semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Takes a slot if one is free now and nobody is waiting; never waits.
    ///
    /// # Errors
    ///
    /// [`AdaptiveLimitError::WouldWait`] when every slot is taken or others
    /// are waiting; counted as `rejected` in the stats.
    pub fn try_acquire(&self) -> Result<AdaptivePermit, AdaptiveLimitError> {
        match Arc::clone(&self.inner.sem).try_acquire_owned() {
            Ok(permit) => Ok(self.admit(permit)),
            Err(_) => {
                let mut state = self.lock();
                state.rejected();
                Err(AdaptiveLimitError::WouldWait {
                    limit: state.limit(),
                })
            }
        }
    }

    /// The limit in force now.
    pub fn limit(&self) -> usize {
        self.lock().limit()
    }

    /// Jobs holding a slot now. Above [`limit`](Self::limit) for a while
    /// after the limit fell: running jobs are not interrupted.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight()
    }

    /// The lowest the limit goes (the builder's `min`): what a pool or a
    /// stage following the limit starts its workers at, at least.
    pub fn min(&self) -> usize {
        self.inner.min
    }

    /// The highest the limit goes (the builder's `max`): the most workers a
    /// pool or a stage following the limit will need.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// The name given to the builder (`"adaptive limit"` by default).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A receiver that sees every move of the limit (the latest value; a
    /// slow reader skips to it). This is how a pool, a stage or a bounded
    /// fan-out follows the limit with its worker count.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.inner.watch.subscribe()
    }

    /// A snapshot of the limit and its counters.
    pub fn stats(&self) -> AdaptiveLimitStats {
        self.lock().stats(&self.inner.name, self.inner.algorithm)
    }

    fn admit(&self, permit: OwnedSemaphorePermit) -> AdaptivePermit {
        let epoch = self.lock().admitted();
        AdaptivePermit::new(self.clone(), permit, epoch)
    }

    fn unused(&self, permit: OwnedSemaphorePermit) {
        self.lock().unused(permit);
    }

    fn note_stopped(&self) {
        self.lock().stopped();
    }

    fn finished(
        &self,
        permit: OwnedSemaphorePermit,
        started: Instant,
        epoch: Option<u64>,
        verdict: Verdict,
    ) {
        let change = {
            let mut state = self.lock();
            let change = state.finished(&self.inner.sem, permit, started, epoch, verdict);
            if let Some(c) = change {
                self.inner.watch.send_replace(c.new);
            }
            change
        };
        if let Some(change) = change {
            self.log(change);
        }
    }

    fn log(&self, c: Change) {
        tracing::debug!(
            target: "weir_core::adaptive",
            name = %self.inner.name,
            algorithm = self.inner.algorithm,
            old = c.old,
            new = c.new,
            reason = c.reason.as_str(),
            "adaptive limit moved"
        );
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock calls user code or can panic midway, so a
        // poisoned lock still holds consistent state.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn balanced(&self) -> bool {
        self.lock().balanced(&self.inner.sem)
    }
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("AdaptiveLimit")
            .field("name", &self.inner.name)
            .field("algorithm", &self.inner.algorithm)
            .field("limit", &state.limit())
            .field("in_flight", &state.in_flight())
            .finish()
    }
}

#[cfg(test)]
mod tests;
