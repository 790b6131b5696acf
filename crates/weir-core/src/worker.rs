//! The quit handshake: stop a background worker and receive its goodbye.
//!
//! [`spawn_worker`] runs `f(ctx)` in its own task. The worker loops until
//! its [`Context`] is cancelled, cleans up and returns `Ok(goodbye)`.
//! [`WorkerHandle::stop`] cancels the context and then waits for that
//! goodbye — Go's `quit <- true; <-quit` (or `quit <- "Bye"` and the reply),
//! without the second channel: the goodbye travels in the task's result.
//!
//! [`WorkerHandle::shutdown`] does the same but waits at most `grace`: then
//! the worker is aborted and the result says so ([`WorkerError::TimedOut`]).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use weir_core::spawn_worker;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> anyhow::Result<()> {
//! let worker = spawn_worker(|ctx| async move {
//!     let mut ticks = 0u32;
//!     loop {
//!         tokio::select! {
//!             () = ctx.cancelled() => break,
//!             () = tokio::time::sleep(Duration::from_millis(100)) => ticks += 1,
//!         }
//!     }
//!     // Clean up here (flush, close files), then say goodbye.
//!     anyhow::Ok(format!("bye after {ticks} ticks"))
//! });
//! tokio::time::sleep(Duration::from_millis(350)).await;
//! assert_eq!(worker.stop().await?, "bye after 3 ticks");
//! # Ok(())
//! # }
//! ```
//!
//! # Deviation from the report convention
//!
//! Other constructs end with `join` returning a `<Construct>Report` inside
//! `Result<Report, RunError<Error, Report>>`. A worker is one task whose
//! outcome *is* a value: its "report" is its goodbye `G`, so `stop`, `join`
//! and `shutdown` return `Result<G, WorkerError<E>>`, and the error names the
//! worker.
//!
//! # Errors, panics, drop
//!
//! - The worker's `Err(e)` comes back as [`WorkerError::Failed`] with `e`
//!   itself; a panic as [`WorkerError::Panicked`] with the
//!   [`Panic`] (message and payload): it does not propagate into the caller.
//!   The failure is handed to the caller, so it is logged only as a DEBUG
//!   event.
//! - Dropping a [`WorkerHandle`] without `stop`, `join` or `shutdown`
//!   cancels the worker's context and aborts its task: a worker never
//!   outlives its handle. To let a worker run on its own, keep the handle.
//! - Every worker runs in a tracing span `worker` with its `name`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument;
use weir_context::__private::{catch, catch_call};
use weir_context::{Context, Panic};

/// Why a worker gave no goodbye.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError<E = anyhow::Error> {
    /// The worker returned `Err(error)`.
    #[error("worker `{name}` failed: {error}")]
    Failed {
        /// The worker's name.
        name: Arc<str>,
        /// The error it returned.
        error: E,
    },
    /// The worker panicked (or the closure that makes its future did).
    #[error("worker `{name}` panicked: {panic}")]
    Panicked {
        /// The worker's name.
        name: Arc<str>,
        /// The panic: its message and its payload.
        panic: Panic,
    },
    /// [`shutdown(grace)`](WorkerHandle::shutdown): the worker did not end
    /// within `grace` after being cancelled, and was aborted.
    #[error("worker `{name}` did not stop within {after:?} and was aborted")]
    TimedOut {
        /// The worker's name.
        name: Arc<str>,
        /// The grace period it was given.
        after: Duration,
    },
    /// The worker's task was aborted from outside (for instance because the
    /// runtime is shutting down) before it said goodbye.
    #[error("worker `{name}` was aborted before it said goodbye")]
    Aborted {
        /// The worker's name.
        name: Arc<str>,
    },
}

impl<E> WorkerError<E> {
    /// The name of the worker the error is about.
    pub fn name(&self) -> &str {
        match self {
            Self::Failed { name, .. }
            | Self::Panicked { name, .. }
            | Self::TimedOut { name, .. }
            | Self::Aborted { name } => name,
        }
    }

    /// The worker's own error, when it returned one.
    pub fn error(&self) -> Option<&E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Takes the worker's own error out, when it returned one.
    pub fn into_error(self) -> Option<E> {
        match self {
            Self::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The panic, when the worker panicked.
    pub fn panic(&self) -> Option<&Panic> {
        match self {
            Self::Panicked { panic, .. } => Some(panic),
            _ => None,
        }
    }

    /// Whether the worker ran out of its grace period and was aborted.
    pub fn is_timed_out(&self) -> bool {
        matches!(self, Self::TimedOut { .. })
    }
}

/// Spawns a worker named `"worker"` with a fresh context; see
/// [`WorkerBuilder`] for a name or a parent context.
///
/// `f` receives the worker's [`Context`] and returns the worker's future;
/// the future should return once the context is cancelled, with
/// `Ok(goodbye)` or `Err(error)`. `E` is any error that displays
/// (`anyhow::Error`, `std::io::Error`, your own type), the bound every weir
/// error type has.
///
/// # Panics
///
/// Outside a tokio runtime (like [`tokio::spawn`]). A panic in `f` or in the
/// worker's future is caught and returned as [`WorkerError::Panicked`].
///
/// # Examples
///
/// See the [module docs](self).
#[track_caller]
pub fn spawn_worker<F, Fut, G, E>(f: F) -> WorkerHandle<G, E>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<G, E>> + Send + 'static,
    G: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    WorkerBuilder::new("worker").spawn(f)
}

/// Settings for a worker before it is spawned: its name and the context its
/// own context is a child of.
///
/// ```
/// use weir_core::{Context, WorkerBuilder};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = Context::background();
/// let worker = WorkerBuilder::new("flusher").context(&service).spawn(|ctx| async move {
///     ctx.cancelled().await;
///     Ok::<_, std::io::Error>("flushed")
/// });
/// service.cancel(); // cancelling the parent stops the worker too
/// assert_eq!(worker.join().await.unwrap(), "flushed");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WorkerBuilder {
    name: Arc<str>,
    parent: Option<Context>,
}

impl WorkerBuilder {
    /// A worker called `name` (the `name` field of its tracing span and of
    /// its errors).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            parent: None,
        }
    }

    /// Makes the worker's context a child of `ctx`: cancelling `ctx` (or
    /// passing its deadline) cancels the worker too, with `ctx`'s cause;
    /// stopping the worker never cancels `ctx`. A `Context`, a `&Context` or
    /// a `CancellationToken` converts.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.parent = Some(ctx.into());
        self
    }

    /// Spawns the worker on the current tokio runtime; see [`spawn_worker`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (like [`tokio::spawn`]). A panic in `f` or in
    /// the worker's future is caught and returned as
    /// [`WorkerError::Panicked`].
    #[track_caller]
    pub fn spawn<F, Fut, G, E>(self, f: F) -> WorkerHandle<G, E>
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future<Output = Result<G, E>> + Send + 'static,
        G: Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let origin = weir_context::__private::Origin::here();
        let ctx = match &self.parent {
            Some(parent) => parent.child(),
            None => Context::background(),
        };
        let made = catch_call(|| f(ctx.clone()));
        let task = async move {
            match made {
                Ok(fut) => catch(fut).await,
                Err(panic) => Err(panic),
            }
        };
        let span = tracing::info_span!("worker", name = %self.name);
        let label = weir_context::__private::Label {
            construct: weir_context::__private::Construct::Worker,
            name: &self.name,
            task: "task",
            stage: None,
            index: None,
            origin,
        };
        let join = crate::spawn::spawn(&label, task.instrument(span));
        WorkerHandle {
            name: self.name,
            ctx,
            join: Some(join),
        }
    }
}

type Outcome<G, E> = Result<Result<G, E>, Panic>;

/// The handle of a worker spawned by [`spawn_worker`] or
/// [`WorkerBuilder::spawn`].
///
/// | call | does |
/// |---|---|
/// | [`cancel`](Self::cancel) | asks the worker to stop, returns at once |
/// | [`stop`](Self::stop) | cancels and waits for the goodbye: the quit handshake |
/// | [`join`](Self::join) | waits for the worker to end on its own, cancels nothing |
/// | [`shutdown(grace)`](Self::shutdown) | cancels, waits up to `grace`, then aborts |
///
/// Dropping it cancels the worker's context and aborts its task.
pub struct WorkerHandle<G, E = anyhow::Error> {
    name: Arc<str>,
    ctx: Context,
    // `Some` until consumed by `stop`/`shutdown`/`join`.
    join: Option<JoinHandle<Outcome<G, E>>>,
}

impl<G, E> WorkerHandle<G, E> {
    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The worker's context: the one its closure received. Cancelling it
    /// asks the worker to stop, like [`cancel`](Self::cancel);
    /// `context().token()` hands it to code that speaks
    /// `CancellationToken`.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Asks the worker to stop (cancels its context, cause
    /// [`Cause::Cancelled`](crate::Cause::Cancelled)) without waiting for it.
    pub fn cancel(&self) {
        self.ctx.cancel();
    }

    /// Whether the worker's task has ended (returned, failed, panicked or was
    /// aborted).
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl<G, E: fmt::Display> WorkerHandle<G, E> {
    /// Cancels the worker and waits for its goodbye: the quit handshake.
    /// Waits as long as the worker takes; see
    /// [`shutdown`](Self::shutdown) for a limit.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Failed`] with the worker's error,
    /// [`WorkerError::Panicked`] with its panic, [`WorkerError::Aborted`] if
    /// its task was aborted from outside.
    ///
    /// # Cancel safety
    ///
    /// If this future is dropped before it completes, the handle inside it is
    /// dropped: the worker is aborted and its goodbye is lost.
    pub async fn stop(self) -> Result<G, WorkerError<E>> {
        self.cancel();
        self.join().await
    }

    /// Waits for the worker to end on its own, without cancelling it (it
    /// ends when its context or a parent of it is cancelled, or when its work
    /// is done).
    ///
    /// # Errors
    ///
    /// As [`stop`](Self::stop).
    ///
    /// # Cancel safety
    ///
    /// As [`stop`](Self::stop): dropping the future aborts the worker.
    pub async fn join(mut self) -> Result<G, WorkerError<E>> {
        let Some(join) = self.join.as_mut() else {
            return Err(self.aborted());
        };
        let outcome = join.await;
        self.join = None;
        self.finish(outcome)
    }

    /// Cancels the worker and waits at most `grace` for its goodbye. If it
    /// does not come in time the worker's task is aborted and the result is
    /// [`WorkerError::TimedOut`]. The worker has ended when this returns
    /// (once aborted, a task ends at its next `.await`; a task that blocks
    /// its thread without ever awaiting cannot be aborted by anyone).
    ///
    /// `Duration::ZERO` takes the goodbye only if the worker has already
    /// ended; `Duration::MAX` waits as long as [`stop`](Self::stop).
    ///
    /// # Errors
    ///
    /// [`WorkerError::TimedOut`], or any error of [`stop`](Self::stop).
    ///
    /// # Cancel safety
    ///
    /// As [`stop`](Self::stop): dropping the future aborts the worker.
    pub async fn shutdown(mut self, grace: Duration) -> Result<G, WorkerError<E>> {
        self.cancel();
        // The JoinHandle stays in `self` while awaited, so dropping this
        // future drops `self`, whose Drop aborts the worker.
        let Some(join) = self.join.as_mut() else {
            return Err(self.aborted());
        };
        let outcome = match tokio::time::timeout(grace, &mut *join).await {
            Ok(outcome) => outcome,
            Err(_) => {
                join.abort();
                let outcome = join.await;
                self.join = None;
                return match outcome {
                    // It ended between the timeout and the abort: keep its goodbye.
                    Ok(outcome) => self.finish(Ok(outcome)),
                    Err(_) => {
                        tracing::debug!(worker = %self.name, after = ?grace, "worker did not stop in time, aborted");
                        Err(WorkerError::TimedOut {
                            name: self.name.clone(),
                            after: grace,
                        })
                    }
                };
            }
        };
        self.join = None;
        self.finish(outcome)
    }

    fn aborted(&self) -> WorkerError<E> {
        WorkerError::Aborted {
            name: self.name.clone(),
        }
    }

    /// Turns the task's outcome into the result. The failure goes back to
    /// the caller, so it is a DEBUG event, once.
    fn finish(&self, outcome: Result<Outcome<G, E>, JoinError>) -> Result<G, WorkerError<E>> {
        let name = self.name.clone();
        match outcome {
            Ok(Ok(Ok(goodbye))) => Ok(goodbye),
            Ok(Ok(Err(error))) => {
                tracing::debug!(worker = %name, error = %error, "worker failed");
                Err(WorkerError::Failed { name, error })
            }
            Ok(Err(panic)) => {
                tracing::debug!(worker = %name, panic = %panic, "worker panicked");
                Err(WorkerError::Panicked { name, panic })
            }
            // Panics are caught inside the task: a JoinError is an abort.
            Err(_) => Err(self.aborted()),
        }
    }
}

impl<G, E> Drop for WorkerHandle<G, E> {
    fn drop(&mut self) {
        if let Some(join) = self.join.take() {
            self.ctx.cancel();
            join.abort();
        }
    }
}

impl<G, E> fmt::Debug for WorkerHandle<G, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("name", &self.name)
            .field("cancelled", &self.ctx.is_cancelled())
            .field("finished", &self.is_finished())
            .finish()
    }
}
