//! The quit handshake: stop a background worker and receive its goodbye.
//!
//! [`spawn_worker`] runs `f(token)` in its own task. The worker loops until
//! its [`CancellationToken`] is cancelled, cleans up and returns
//! `Ok(goodbye)`. [`WorkerHandle::stop`] cancels the token and then waits for
//! that goodbye — Go's `quit <- true; <-quit` (or `quit <- "Bye"` and the
//! reply), without the second channel: the goodbye travels in the task's
//! result.
//!
//! [`WorkerHandle::stop_timeout`] does the same but gives up after `d`:
//! the worker is aborted and the result says so
//! ([`StopError::TimedOut`]).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use weir_core::worker::spawn_worker;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> anyhow::Result<()> {
//! let worker = spawn_worker(|token| async move {
//!     let mut ticks = 0u32;
//!     loop {
//!         tokio::select! {
//!             () = token.cancelled() => break,
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
//! # Errors, panics, drop
//!
//! - The worker's `Err(e)` comes back from `stop` as [`StopError::Failed`];
//!   a panic as [`StopError::Panicked`] with the panic message (the panic does
//!   not propagate into the caller).
//! - Dropping a [`WorkerHandle`] without stopping it cancels the token and
//!   aborts the task: a worker never outlives its handle. To let a worker run
//!   on its own, keep the handle.
//! - Every worker runs in a tracing span `worker` with its `name`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why a worker gave no goodbye.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StopError<E = anyhow::Error> {
    /// The worker returned `Err(error)`.
    #[error("worker `{name}` failed: {error}")]
    Failed {
        /// The worker's name.
        name: Arc<str>,
        /// The error it returned.
        error: E,
    },
    /// The worker panicked.
    #[error("worker `{name}` panicked: {message}")]
    Panicked {
        /// The worker's name.
        name: Arc<str>,
        /// The panic message.
        message: String,
    },
    /// [`stop_timeout`](WorkerHandle::stop_timeout): the worker did not
    /// finish within the limit after being cancelled, and was aborted.
    #[error("worker `{name}` did not stop within {after:?} and was aborted")]
    TimedOut {
        /// The worker's name.
        name: Arc<str>,
        /// The limit it was given.
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

impl<E> StopError<E> {
    /// The name of the worker the error is about.
    pub fn name(&self) -> &str {
        match self {
            StopError::Failed { name, .. }
            | StopError::Panicked { name, .. }
            | StopError::TimedOut { name, .. }
            | StopError::Aborted { name } => name,
        }
    }

    /// `true` for [`StopError::TimedOut`].
    pub fn is_timed_out(&self) -> bool {
        matches!(self, StopError::TimedOut { .. })
    }
}

/// Spawns a worker named `"worker"` with a fresh token; see [`Worker`] for a
/// name or a parent token.
///
/// `f` receives the worker's [`CancellationToken`] and returns the worker's
/// future; the future should return once the token is cancelled, with
/// `Ok(goodbye)` or `Err(error)`.
///
/// # Panics
///
/// Outside a tokio runtime (like [`tokio::spawn`]).
///
/// # Examples
///
/// See the [module docs](self).
pub fn spawn_worker<F, Fut, G, E>(f: F) -> WorkerHandle<G, E>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<G, E>> + Send + 'static,
    G: Send + 'static,
    E: Send + 'static,
{
    Worker::new("worker").spawn(f)
}

/// Settings for a worker before it is spawned: its name and its parent token.
///
/// ```
/// use tokio_util::sync::CancellationToken;
/// use weir_core::worker::Worker;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let root = CancellationToken::new();
/// let worker = Worker::new("flusher").child_of(&root).spawn(|token| async move {
///     token.cancelled().await;
///     Ok::<_, std::io::Error>("flushed")
/// });
/// root.cancel(); // cancelling the parent stops the worker too
/// assert_eq!(worker.join().await.unwrap(), "flushed");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Worker {
    name: Arc<str>,
    parent: Option<CancellationToken>,
}

impl Worker {
    /// A worker called `name` (the `name` field of its tracing span and of
    /// its errors).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Worker {
            name: name.into(),
            parent: None,
        }
    }

    /// Makes the worker's token a child of `parent`: cancelling `parent`
    /// cancels the worker too; stopping the worker does not touch `parent`.
    pub fn child_of(mut self, parent: &CancellationToken) -> Self {
        self.parent = Some(parent.clone());
        self
    }

    /// Spawns the worker on the current tokio runtime; see [`spawn_worker`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (like [`tokio::spawn`]).
    pub fn spawn<F, Fut, G, E>(self, f: F) -> WorkerHandle<G, E>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<G, E>> + Send + 'static,
        G: Send + 'static,
        E: Send + 'static,
    {
        let token = match &self.parent {
            Some(parent) => parent.child_token(),
            None => CancellationToken::new(),
        };
        let span = tracing::info_span!("worker", name = %self.name);
        let fut = f(token.clone());
        let join = tokio::spawn(fut.instrument(span));
        WorkerHandle {
            name: self.name,
            token,
            join: Some(join),
        }
    }
}

/// The handle of a worker spawned by [`spawn_worker`] or [`Worker::spawn`].
///
/// Dropping it cancels the worker's token and aborts its task.
pub struct WorkerHandle<G, E = anyhow::Error> {
    name: Arc<str>,
    token: CancellationToken,
    // `Some` until consumed by `stop`/`stop_timeout`/`join`.
    join: Option<JoinHandle<Result<G, E>>>,
}

impl<G, E> WorkerHandle<G, E> {
    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The worker's token (a clone). Cancelling it asks the worker to stop,
    /// like [`cancel`](Self::cancel).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Asks the worker to stop without waiting for it.
    pub fn cancel(&self) {
        self.token.cancel();
    }

    /// `true` once the worker's task has ended (returned, failed, panicked or
    /// was aborted).
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Cancels the worker and waits for its goodbye: `Ok(goodbye)`, or the
    /// worker's error or panic as a [`StopError`]. Waits as long as the worker
    /// takes; see [`stop_timeout`](Self::stop_timeout) for a limit.
    ///
    /// # Errors
    ///
    /// [`StopError::Failed`] with the worker's error, [`StopError::Panicked`]
    /// with its panic message, [`StopError::Aborted`] if its task was aborted
    /// from outside.
    ///
    /// # Cancel safety
    ///
    /// If this future is dropped before it completes, the handle inside it is
    /// dropped: the worker is aborted and its goodbye is lost.
    pub async fn stop(self) -> Result<G, StopError<E>> {
        self.cancel();
        self.join().await
    }

    /// Cancels the worker and waits at most `d` for its goodbye. If it does
    /// not come in time the worker's task is aborted and the result is
    /// [`StopError::TimedOut`]. The worker has ended when this returns (once
    /// aborted, a task ends at its next `.await`; a task that blocks its
    /// thread without ever awaiting cannot be aborted by anyone).
    ///
    /// # Errors
    ///
    /// [`StopError::TimedOut`], or any error of [`stop`](Self::stop).
    ///
    /// # Cancel safety
    ///
    /// As [`stop`](Self::stop): dropping the future aborts the worker.
    pub async fn stop_timeout(mut self, d: Duration) -> Result<G, StopError<E>> {
        self.cancel();
        // The JoinHandle stays in `self` while awaited, so dropping this
        // future drops `self`, whose Drop aborts the worker.
        let Some(join) = self.join.as_mut() else {
            return Err(StopError::Aborted {
                name: self.name.clone(),
            });
        };
        let outcome = match tokio::time::timeout(d, &mut *join).await {
            Ok(res) => res,
            Err(_) => {
                join.abort();
                match join.await {
                    // It finished between the timeout and the abort: keep its goodbye.
                    Ok(res) => Ok(res),
                    Err(err) if err.is_cancelled() => {
                        self.join = None;
                        tracing::warn!(worker = %self.name, after = ?d, "worker did not stop in time, aborted");
                        return Err(StopError::TimedOut {
                            name: self.name.clone(),
                            after: d,
                        });
                    }
                    Err(err) => Err(err),
                }
            }
        };
        self.join = None;
        self.finish(outcome)
    }

    /// Waits for the worker to end on its own, without cancelling it (it ends
    /// when its token or its parent token is cancelled, or when its work is
    /// done).
    ///
    /// # Errors
    ///
    /// As [`stop`](Self::stop).
    ///
    /// # Cancel safety
    ///
    /// As [`stop`](Self::stop): dropping the future aborts the worker.
    pub async fn join(mut self) -> Result<G, StopError<E>> {
        let Some(join) = self.join.as_mut() else {
            return Err(StopError::Aborted {
                name: self.name.clone(),
            });
        };
        let outcome = join.await;
        self.join = None;
        self.finish(outcome)
    }

    fn finish(&self, outcome: Result<Result<G, E>, JoinError>) -> Result<G, StopError<E>> {
        let name = self.name.clone();
        match outcome {
            Ok(Ok(goodbye)) => Ok(goodbye),
            Ok(Err(error)) => {
                tracing::warn!(worker = %name, "worker failed");
                Err(StopError::Failed { name, error })
            }
            Err(err) if err.is_panic() => {
                let message = weir_context::__private::panic_message(&*err.into_panic());
                tracing::error!(worker = %name, panic = %message, "worker panicked");
                Err(StopError::Panicked { name, message })
            }
            Err(_) => Err(StopError::Aborted { name }),
        }
    }
}

impl<G, E> Drop for WorkerHandle<G, E> {
    fn drop(&mut self) {
        if let Some(join) = self.join.take() {
            self.token.cancel();
            join.abort();
        }
    }
}

impl<G, E> fmt::Debug for WorkerHandle<G, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("name", &self.name)
            .field("cancelled", &self.token.is_cancelled())
            .field("finished", &self.is_finished())
            .finish()
    }
}
