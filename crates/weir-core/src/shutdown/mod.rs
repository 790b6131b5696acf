//! Graceful shutdown: one coordinator for all the tasks of a service.
//!
//! A [`Shutdown`] owns a root [`Context`] and tracks every task started with
//! [`spawn(name, |ctx| fut)`](Shutdown::spawn); each task gets a child of
//! the root context. Two ways to end:
//!
//! - [`join`](Shutdown::join): accept no more tasks and wait for every task
//!   to end **on its own** (a batch of work, a service whose tasks end when
//!   their input does). Nothing is cancelled.
//! - [`shutdown(grace)`](Shutdown::shutdown): accept no more tasks, **cancel
//!   the root context** (every task's context with it), wait up to `grace`,
//!   then abort the tasks still running. [`on_signal`](Shutdown::on_signal)
//!   waits for ctrl-c or SIGTERM and cancels the root context itself.
//!
//! Both return `Ok(`[`ShutdownReport`]`)` when every task finished without
//! an error or a panic, and otherwise a [`RunError`] with a
//! [`ShutdownError`] naming the first failed task, and the report.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use weir_core::{GraceExpired, Shutdown};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> anyhow::Result<()> {
//! let shutdown = Shutdown::new();
//! shutdown.spawn("http", |ctx| async move {
//!     ctx.cancelled().await; // serve until asked to stop
//!     tokio::time::sleep(Duration::from_millis(100)).await; // close connections
//! })?;
//! shutdown.spawn("stubborn", |_ctx| async move {
//!     tokio::time::sleep(Duration::from_secs(3600)).await; // ignores its context
//! })?;
//!
//! // In a service: `shutdown.on_signal().await;` waits for ctrl-c / SIGTERM.
//! let err = shutdown.shutdown(Duration::from_secs(1)).await.unwrap_err();
//! assert_eq!(err.error().task(), "stubborn");
//! let report = err.report();
//! assert_eq!((report.finished, report.aborted), (1, 1));
//! assert_eq!(report.waited, Duration::from_secs(1));
//! let aborted = &report.failures[0];
//! assert!(matches!(aborted, weir_core::TaskFailure::Aborted { cause, .. }
//!     if cause.downcast_ref::<GraceExpired>().is_some()));
//! # Ok(())
//! # }
//! ```
//!
//! # Errors, panics, cancellation, drop
//!
//! - A task returns `()` or `Result<(), E>` ([`TaskOutput`]). An `Err(e)` is
//!   kept as the value `e` ([`TaskFailure::Failed`], downcastable), a panic
//!   as a [`Panic`](crate::Panic) with its payload
//!   ([`TaskFailure::Panicked`]). Either is logged as a WARN event when it
//!   happens (nobody else receives it then) and counted in the report, before
//!   the shutdown or during it. A failing task does not start a shutdown by
//!   itself; call `shutdown.context().cancel()` in it for that.
//! - The report counts every task's end; it keeps the failed, panicked and
//!   aborted ones by name, never the successful ones, so a service that
//!   spawns a task per connection does not grow a list.
//! - Dropping the last `Shutdown` clone without `join` or `shutdown` cancels
//!   the root context and aborts every task still running: nothing outlives
//!   the coordinator.
//! - Every task runs in a tracing span `task` with its `name`.
//!
//! # Comparison to `TaskTracker`
//!
//! tokio-util's `TaskTracker` waits for tasks; `Shutdown` adds the root
//! context handed to each task, names, a bounded wait that aborts the
//! stragglers, signal handling, and a report of how every task ended.

mod report;
mod signal;
mod state;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use weir_context::__private::{catch, catch_call};
use weir_context::{CauseValue, Context, RunError};

pub use report::{MAX_KEPT_FAILURES, ShutdownError, ShutdownReport, SpawnRefused, TaskFailure};
pub use signal::ShutdownTrigger;

use state::{End, Shared, State, TaskGuard, lock};

/// What a task spawned by [`Shutdown::spawn`] may return: `()` (it cannot
/// fail) or `Result<(), E>`, where an `Err(e)` is a failure kept as the
/// value `e` ([`TaskFailure::Failed`]). `E` is any error that displays and
/// can be shared between threads: `anyhow::Error`, `std::io::Error`, your
/// own `thiserror` type, a `String`.
///
/// Sealed: these are the only two shapes.
pub trait TaskOutput: sealed::Sealed + Send + 'static {
    /// `None` for success, the error for a failure.
    #[doc(hidden)]
    fn into_failure(self) -> Option<CauseValue>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for () {}
    impl<E> Sealed for Result<(), E> {}
}

impl TaskOutput for () {
    fn into_failure(self) -> Option<CauseValue> {
        None
    }
}

impl<E> TaskOutput for Result<(), E>
where
    E: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
{
    fn into_failure(self) -> Option<CauseValue> {
        self.err().map(CauseValue::new)
    }
}

#[derive(Debug)]
struct Inner {
    /// The root context; every task's context is a child of it.
    ctx: Context,
    /// Counts the tasks alive, so `join`/`shutdown` can wait for the last.
    tracker: TaskTracker,
    state: Shared,
    created: Instant,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last `Shutdown` handle is gone: no one can wait for the tasks
        // any more, so stop them rather than leak them.
        self.ctx.cancel();
        let mut state = lock(&self.state);
        state.closed = true;
        state.abort_all();
    }
}

/// Settings for a [`Shutdown`] before it is built: the context its root is
/// a child of.
///
/// ```
/// use weir_core::{Context, Shutdown};
///
/// let service = Context::background();
/// let shutdown = Shutdown::builder().context(&service).build();
/// service.cancel_with("config reloaded");
/// assert!(shutdown.is_shutting_down());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ShutdownBuilder {
    parent: Option<Context>,
}

impl ShutdownBuilder {
    /// Makes the root context a child of `ctx`: cancelling `ctx` (or passing
    /// its deadline) starts the shutdown of every task, and its cause is the
    /// report's [`cause`](ShutdownReport::cause); the coordinator never
    /// cancels `ctx`. A `Context`, a `&Context` or a `CancellationToken`
    /// converts.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.parent = Some(ctx.into());
        self
    }

    /// The coordinator. Needs no runtime: tasks are spawned on the runtime
    /// current at each [`spawn`](Shutdown::spawn).
    pub fn build(self) -> Shutdown {
        let ctx = match self.parent {
            Some(parent) => parent.child(),
            None => Context::background(),
        };
        Shutdown {
            inner: Arc::new(Inner {
                ctx,
                tracker: TaskTracker::new(),
                state: Arc::new(Mutex::new(State::default())),
                created: Instant::now(),
            }),
        }
    }
}

/// The shutdown coordinator of a service. Cheap to clone (an `Arc` inside);
/// all clones share the root context, the tasks and the counts.
///
/// See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A coordinator with a fresh root context (cancelled only by
    /// [`shutdown`](Self::shutdown), [`on_signal`](Self::on_signal) or
    /// your own `context().cancel()`).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Settings: the context the root context is a child of.
    pub fn builder() -> ShutdownBuilder {
        ShutdownBuilder::default()
    }

    /// The root context. Cancelling it (`context().cancel()`, or
    /// `cancel_with(cause)` to have the report say why) starts the shutdown:
    /// every task's context is cancelled. [`shutdown`](Self::shutdown) still
    /// has to be awaited to wait for the tasks and abort the stragglers.
    ///
    /// For work not started by [`spawn`](Self::spawn): `context().child()`
    /// is cancelled when the shutdown starts (cancelling it does not start
    /// the shutdown), and `context().token()` is the root's
    /// `CancellationToken`.
    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    /// Whether the shutdown has started (the root context is cancelled).
    pub fn is_shutting_down(&self) -> bool {
        self.inner.ctx.is_cancelled()
    }

    /// Whether the coordinator accepts no more tasks ([`close`](Self::close),
    /// [`join`](Self::join) or [`shutdown`](Self::shutdown) was called).
    pub fn is_closed(&self) -> bool {
        lock(&self.inner.state).closed
    }

    /// The names of the tasks running now, in the order they were spawned.
    pub fn running(&self) -> Vec<String> {
        lock(&self.inner.state)
            .running
            .values()
            .map(|task| task.name.to_string())
            .collect()
    }

    /// The counts so far, as a snapshot (`waited` is zero; `running()` may
    /// not be).
    pub fn report(&self) -> ShutdownReport {
        self.make_report(Duration::ZERO)
    }

    /// Spawns a task called `name`: `f` gets the task's [`Context`] (a child
    /// of the root context) and returns the task's future, which should end
    /// soon after the context is cancelled. Its output is `()` or
    /// `Result<(), E>` (see [`TaskOutput`]; a bare endless `loop {}` has the
    /// output `!`, which is neither: give the loop an exit, as every task
    /// here should have).
    ///
    /// A task spawned after the shutdown started (but before
    /// [`close`](Self::close)) gets an already-cancelled context and is
    /// waited for like the others. `f` runs on the caller's task; a panic in
    /// `f` is caught and counted as that task's panic.
    ///
    /// # Errors
    ///
    /// [`SpawnRefused::Closed`] once the coordinator is closed (`close`,
    /// `join`, `shutdown`): the task is not started (`f` is not called, or,
    /// when the close came while `f` ran, its future is dropped unpolled).
    /// [`SpawnRefused::NoRuntime`] outside a tokio runtime. The closure is
    /// not handed back: spawning is not a hand-off of work that can be
    /// retried elsewhere, and [`is_closed`](Self::is_closed) says up front.
    #[track_caller]
    pub fn spawn<F, Fut>(&self, name: impl Into<Arc<str>>, f: F) -> Result<(), SpawnRefused>
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        let origin = weir_context::__private::Origin::here();
        let name: Arc<str> = name.into();
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SpawnRefused::NoRuntime { task: name });
        }
        if self.is_closed() {
            return Err(SpawnRefused::Closed { task: name });
        }
        // `f` is the user's code: never call it under the lock.
        let made = catch_call(|| f(self.inner.ctx.child()));

        let state = &self.inner.state;
        let mut locked = lock(state);
        if locked.closed {
            return Err(SpawnRefused::Closed { task: name });
        }
        let id = locked.register(Arc::clone(&name));
        let guard = TaskGuard {
            state: Arc::clone(state),
            id,
            name: Arc::clone(&name),
            ended: false,
            // Taken under the lock, before `close` can close the tracker, so
            // a `join` never misses a task registered before it.
            _tracked: self.inner.tracker.token(),
        };
        let fut = match made {
            Ok(fut) => fut,
            Err(panic) => {
                drop(locked);
                guard.end(End::Panicked(panic));
                return Ok(());
            }
        };
        let task = async move {
            let end = match catch(fut).await {
                Ok(output) => output.into_failure().map_or(End::Finished, End::Failed),
                Err(panic) => End::Panicked(panic),
            };
            guard.end(end);
        };
        // Spawning never runs the task inline, so holding the lock is safe;
        // it keeps registering and setting the abort handle one step.
        let span = tracing::info_span!("task", name = %name);
        let label = weir_context::__private::Label {
            construct: weir_context::__private::Construct::Shutdown,
            name: &name,
            task: "task",
            stage: None,
            index: None,
            origin,
        };
        let handle = crate::spawn::spawn(&label, task.instrument(span));
        if let Some(running) = locked.running.get_mut(&id) {
            running.abort = Some(handle.abort_handle());
        }
        Ok(())
    }

    /// Accepts no more tasks: every later [`spawn`](Self::spawn) is refused.
    /// The tasks running go on; cancels nothing. Like tokio-util's
    /// `TaskTracker::close`. Idempotent.
    pub fn close(&self) {
        lock(&self.inner.state).closed = true;
        self.inner.tracker.close();
    }

    /// Closes the coordinator and waits for every task to end **on its
    /// own**, without cancelling anything (the root context is cancelled
    /// only if someone else does it). For a service whose tasks end by
    /// themselves; a task that waits for its context to be cancelled makes
    /// `join` wait until that happens: use [`shutdown`](Self::shutdown) to
    /// stop such tasks.
    ///
    /// When it returns, no task of the coordinator is alive.
    ///
    /// # Errors
    ///
    /// A [`RunError`] with a [`ShutdownError`] (the first task that failed,
    /// panicked or was aborted, and how many) and the report, when any task
    /// did, ever — before the call as well as during it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future stops waiting; the coordinator stays
    /// closed and no task is touched.
    pub async fn join(self) -> Result<ShutdownReport, RunError<ShutdownError, ShutdownReport>> {
        let start = Instant::now();
        self.close();
        self.inner.tracker.wait().await;
        self.finish(start)
    }

    /// Shuts down: closes the coordinator, cancels the root context (with
    /// [`Cause::Cancelled`](crate::Cause::Cancelled) unless it already has a
    /// cause: the first cause wins), waits up to `grace` for every task to
    /// end, then aborts the tasks still running (each recorded as
    /// [`TaskFailure::Aborted`] with the cause
    /// [`GraceExpired { grace }`](crate::GraceExpired)) and waits for them to
    /// unwind.
    ///
    /// `grace` of `Duration::ZERO` aborts whatever did not end at once;
    /// `Duration::MAX` waits as long as the tasks take.
    ///
    /// When it returns, no task of the coordinator is alive. Calling it
    /// again, or from several clones, is harmless: each call waits for the
    /// same tasks, and every caller gets the same counts.
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join): any task that failed, panicked or was
    /// aborted, ever.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped before it completes, the root context stays
    /// cancelled and the coordinator closed, but no task is aborted; a later
    /// call starts the wait again, with its own grace period.
    pub async fn shutdown(
        &self,
        grace: Duration,
    ) -> Result<ShutdownReport, RunError<ShutdownError, ShutdownReport>> {
        let start = Instant::now();
        self.close();
        tracing::info!(grace = ?grace, "shutdown started");
        self.inner.ctx.cancel();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            {
                let mut state = lock(&self.inner.state);
                state.grace_expired.get_or_insert(grace);
                state.abort_all();
            }
            // Aborted tasks end at their next `.await`.
            self.inner.tracker.wait().await;
        }
        self.finish(start)
    }

    /// Waits for ctrl-c or (on unix) SIGTERM, then **cancels the root
    /// context, which starts the shutdown of every task**, with the signal
    /// as the cause ([`ShutdownTrigger`], `"received SIGTERM"`), and returns
    /// which signal it was. If the root context is cancelled by other code
    /// first (its parent, its deadline, `context().cancel()`, `shutdown`) it
    /// returns [`ShutdownTrigger::Cancelled`] and cancels nothing. So
    /// `shutdown.on_signal().await; shutdown.shutdown(grace).await` covers
    /// every way a service is told to stop.
    ///
    /// The signal handlers are installed when this future is first polled;
    /// from then on the process no longer dies on these signals (tokio keeps
    /// its handlers for the life of the process). If a handler cannot be
    /// installed, a WARN event says so and that signal is not waited for.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future stops waiting and cancels nothing.
    pub async fn on_signal(&self) -> ShutdownTrigger {
        let trigger = tokio::select! {
            trigger = signal::wait_for_signal() => trigger,
            () = self.inner.ctx.cancelled() => ShutdownTrigger::Cancelled,
        };
        if trigger != ShutdownTrigger::Cancelled {
            tracing::info!(signal = %trigger, "signal received, shutting down");
            self.inner.ctx.cancel_with(trigger);
        }
        trigger
    }

    fn make_report(&self, waited: Duration) -> ShutdownReport {
        let mut report = lock(&self.inner.state).report();
        report.cause = self.inner.ctx.cause();
        report.waited = waited;
        report.elapsed = self.inner.created.elapsed();
        report
    }

    fn finish(
        &self,
        start: Instant,
    ) -> Result<ShutdownReport, RunError<ShutdownError, ShutdownReport>> {
        let report = self.make_report(start.elapsed());
        tracing::info!(
            finished = report.finished,
            failed = report.failed,
            panicked = report.panicked,
            aborted = report.aborted,
            waited = ?report.waited,
            "every task ended"
        );
        match report.failures.first() {
            None => Ok(report),
            Some(first) => {
                let count = report.failed + report.panicked + report.aborted;
                Err(RunError::new(
                    ShutdownError::new(first.clone(), count),
                    report,
                ))
            }
        }
    }
}
