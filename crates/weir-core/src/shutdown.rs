//! Graceful shutdown: one coordinator for all the tasks of a service.
//!
//! A [`Shutdown`] owns a root [`CancellationToken`] and a [`TaskTracker`].
//! Every long-running task of the service is started with
//! [`spawn(name, |token| fut)`](Shutdown::spawn) and gets a child of the root
//! token. When it is time to stop — [`on_signal`](Shutdown::on_signal) saw
//! ctrl-c or SIGTERM, or any code cancelled [`token`](Shutdown::token) —
//! [`shutdown(grace)`](Shutdown::shutdown) cancels the root token, waits up to
//! `grace` for the tasks to finish, aborts the ones that did not, and returns
//! a [`ShutdownReport`] that names which tasks finished, which failed
//! (error or panic, with the message) and which had to be aborted.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use weir_core::shutdown::Shutdown;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let shutdown = Shutdown::new();
//! shutdown.spawn("http", |token| async move {
//!     token.cancelled().await; // serve until asked to stop
//!     tokio::time::sleep(Duration::from_millis(100)).await; // close connections
//! });
//! shutdown.spawn("stubborn", |_token| async move {
//!     tokio::time::sleep(Duration::from_secs(3600)).await; // ignores the token
//! });
//!
//! // In a service: `shutdown.on_signal().await;` waits for ctrl-c / SIGTERM.
//! let report = shutdown.shutdown(Duration::from_secs(1)).await;
//! assert_eq!(report.finished, ["http"]);
//! assert_eq!(report.aborted, ["stubborn"]);
//! assert_eq!(report.elapsed, Duration::from_secs(1));
//! # }
//! ```
//!
//! # Errors, panics, drop
//!
//! - A task that returns `Err(e)` or panics is logged at `error` level when
//!   it happens and, if that happens during the shutdown, listed in
//!   [`ShutdownReport::failed`] with its message. A failing task does not
//!   start a shutdown by itself; call `token().cancel()` in it for that.
//! - The report lists the tasks that were still running when the shutdown
//!   began (when the root token was cancelled); tasks that ended before are
//!   only counted
//!   ([`ShutdownReport::ended_before`]), so a service that spawns a task per
//!   connection does not grow a list forever.
//! - Dropping the last `Shutdown` clone without calling `shutdown` cancels
//!   the root token and aborts every task still running: nothing outlives the
//!   coordinator.
//! - Every task runs in a tracing span `task` with its `name`.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tokio_util::task::TaskTracker;
use tracing::Instrument;
use weir_context::{Cause, Context};

/// What a task spawned by [`Shutdown::spawn`] may return: `()` (it cannot
/// fail) or `Result<(), E>` with a displayable `E` (an `Err` is reported as a
/// failure with its message).
pub trait TaskOutput: Send + 'static {
    /// `None` for success, `Some(message)` for a failure.
    fn failure(self) -> Option<String>;
}

impl TaskOutput for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: fmt::Display + Send + 'static> TaskOutput for Result<(), E> {
    fn failure(self) -> Option<String> {
        // `{:#}` prints an anyhow::Error with its causes; other types ignore the flag.
        self.err().map(|e| format!("{e:#}"))
    }
}

/// What [`Shutdown::shutdown`] did, task by task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Tasks that returned successfully within the grace period, in the order
    /// they finished.
    pub finished: Vec<String>,
    /// Tasks that returned an error or panicked during the shutdown: `(name,
    /// message)`; a panic's message starts with `panicked: `.
    pub failed: Vec<(String, String)>,
    /// Tasks that had not finished when the grace period was over and were
    /// aborted, in the order they were spawned.
    pub aborted: Vec<String>,
    /// How many tasks had already ended before the shutdown began (not listed
    /// by name).
    pub ended_before: u64,
    /// Time from the call of [`Shutdown::shutdown`] until every task had
    /// ended.
    pub elapsed: Duration,
    /// Why the shutdown started: the signal (`"received SIGTERM"`), the
    /// parent context's cause (for example a deadline), a cause given to
    /// [`Shutdown::context`]'s `cancel_with`, or [`Cause::Cancelled`] when
    /// [`Shutdown::shutdown`] was simply called.
    pub cause: Option<Cause>,
}

impl ShutdownReport {
    /// `true` when every task finished successfully within the grace period.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.aborted.is_empty()
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shutdown took {:?}: {} finished, {} failed, {} aborted",
            self.elapsed,
            self.finished.len(),
            self.failed.len(),
            self.aborted.len()
        )?;
        if !self.aborted.is_empty() {
            write!(f, " ({})", self.aborted.join(", "))?;
        }
        Ok(())
    }
}

/// What ended the wait in [`Shutdown::on_signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// ctrl-c (SIGINT on unix).
    CtrlC,
    /// SIGTERM (unix only), what `kill`, systemd and Kubernetes send.
    Terminate,
    /// The root token was cancelled by code (`token().cancel()` or
    /// `shutdown()`).
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Tasks run; nobody asked them to stop.
    Running,
    /// The root token is cancelled; waiting for the grace period.
    Draining,
    /// The grace period is over; stragglers were aborted. No more spawns.
    Swept,
}

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    // `None` for the moment between registering and spawning.
    abort: Option<AbortHandle>,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    next_id: u64,
    running: BTreeMap<u64, Entry>,
    finished: Vec<Arc<str>>,
    failed: Vec<(Arc<str>, String)>,
    aborted: Vec<(u64, Arc<str>)>,
    ended_before: u64,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // No code path panics while holding the lock, and every update leaves the
    // state consistent, so a poisoned lock is still usable.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    fn record(&mut self, name: Arc<str>, failure: Option<String>) {
        match failure {
            None => self.finished.push(name),
            Some(message) => self.failed.push((name, message)),
        }
    }

    /// A task's future returned (or panicked).
    fn task_ended(&mut self, id: u64, failure: Option<String>, root_cancelled: bool) {
        if let Some(entry) = self.running.remove(&id) {
            if self.phase == Phase::Running && !root_cancelled {
                self.ended_before += 1;
            } else {
                self.record(entry.name, failure);
            }
        } else if let Some(pos) = self.aborted.iter().position(|(i, _)| *i == id) {
            // Swept while its last poll was finishing on another thread: it
            // did end on its own.
            let (_, name) = self.aborted.remove(pos);
            self.record(name, failure);
        }
    }

    /// Aborts every task still running; they are reported as aborted.
    fn sweep(&mut self) {
        self.phase = Phase::Swept;
        for (id, entry) in std::mem::take(&mut self.running) {
            if let Some(abort) = &entry.abort {
                abort.abort();
            }
            tracing::warn!(task = %entry.name, "task did not stop within the grace period, aborted");
            self.aborted.push((id, entry.name));
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// The root context; `token` is its token.
    ctx: Context,
    token: CancellationToken,
    tracker: TaskTracker,
    state: Arc<Mutex<State>>,
    report: tokio::sync::OnceCell<ShutdownReport>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last `Shutdown` handle is gone: no one can wait for the tasks
        // any more, so stop them rather than leak them.
        self.token.cancel();
        let mut state = lock(&self.state);
        for entry in state.running.values() {
            if let Some(abort) = &entry.abort {
                abort.abort();
            }
        }
        state.phase = Phase::Swept;
    }
}

/// The shutdown coordinator of a service. Cheap to clone (an `Arc` inside);
/// all clones share the token, the tasks and the report.
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
    /// A coordinator with a fresh root token.
    pub fn new() -> Self {
        Self::with_token(CancellationToken::new())
    }

    /// A coordinator whose root token is `token` (cancelling `token` starts
    /// the shutdown; pass `parent.child_token()` to nest a coordinator in a
    /// larger one).
    pub fn with_token(token: CancellationToken) -> Self {
        Self::from_context(Context::from(token))
    }

    /// A coordinator whose root context is a child of `parent`: `parent`'s
    /// cancellation or deadline starts the shutdown (and is the report's
    /// [`cause`](ShutdownReport::cause)); the shutdown itself does not
    /// cancel `parent`.
    pub fn with_context(parent: &Context) -> Self {
        Self::from_context(parent.child())
    }

    fn from_context(ctx: Context) -> Self {
        Shutdown {
            inner: Arc::new(Inner {
                token: ctx.token(),
                ctx,
                tracker: TaskTracker::new(),
                state: Arc::new(Mutex::new(State {
                    phase: Phase::Running,
                    next_id: 0,
                    running: BTreeMap::new(),
                    finished: Vec::new(),
                    failed: Vec::new(),
                    aborted: Vec::new(),
                    ended_before: 0,
                })),
                report: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// The root token (a clone). Cancelling it starts the shutdown: every
    /// task's token is cancelled; [`shutdown`](Self::shutdown) still has to be
    /// awaited to wait for the tasks and abort the stragglers.
    pub fn token(&self) -> CancellationToken {
        self.inner.token.clone()
    }

    /// The root context: its token is [`token`](Self::token); cancel it with
    /// a cause (`context().cancel_with("config reloaded")`) to start the
    /// shutdown and have the report say why.
    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    /// A new child of the root token, for work not started by
    /// [`spawn`](Self::spawn) (cancelled when the shutdown starts; cancelling
    /// it does not start the shutdown).
    pub fn child_token(&self) -> CancellationToken {
        self.inner.token.child_token()
    }

    /// `true` once the shutdown has started (the root token is cancelled).
    pub fn is_shutting_down(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// The names of the tasks running now, in the order they were spawned.
    pub fn running(&self) -> Vec<String> {
        lock(&self.inner.state)
            .running
            .values()
            .map(|e| e.name.to_string())
            .collect()
    }

    /// Spawns a task called `name`: `f` gets a child of the root token and
    /// returns the task's future, which should return soon after the token is
    /// cancelled. Its output is `()` or `Result<(), E>` (see [`TaskOutput`];
    /// a future that is a bare endless `loop {}` has the output `!`, which is
    /// neither: give the loop an exit, as every task here should have).
    ///
    /// A task spawned after the shutdown started gets an already-cancelled
    /// token and is part of the drain. A task spawned after the grace period
    /// is over is not started: `f` is not called and a `warn` event is logged.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (like [`tokio::spawn`]). A panic inside the
    /// task is caught and reported, never propagated.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, f: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        let name: Arc<str> = Arc::from(name.into());
        let id = {
            let mut state = lock(&self.inner.state);
            if state.phase == Phase::Swept {
                drop(state);
                tracing::warn!(task = %name, "spawn after the shutdown finished, task not started");
                return;
            }
            let id = state.next_id;
            state.next_id += 1;
            state.running.insert(
                id,
                Entry {
                    name: Arc::clone(&name),
                    abort: None,
                },
            );
            id
        };

        let fut = f(self.inner.token.child_token());
        let state = Arc::clone(&self.inner.state);
        let root = self.inner.token.clone();
        let task_name = Arc::clone(&name);
        let task = async move {
            let failure = match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(output) => output.failure(),
                Err(payload) => Some(format!(
                    "panicked: {}",
                    weir_context::__private::panic_message(&*payload)
                )),
            };
            if let Some(message) = &failure {
                tracing::error!(task = %task_name, error = %message, "task failed");
            }
            // Once the root token is cancelled (by `shutdown`, `on_signal` or
            // any code) a task that ends is part of the shutdown's report.
            lock(&state).task_ended(id, failure, root.is_cancelled());
        };
        let handle = self
            .inner
            .tracker
            .spawn(task.instrument(tracing::info_span!("task", name = %name)));

        let mut state = lock(&self.inner.state);
        if let Some(entry) = state.running.get_mut(&id) {
            entry.abort = Some(handle.abort_handle());
        } else if state.aborted.iter().any(|(i, _)| *i == id) {
            // Swept between registering and spawning: abort it now.
            handle.abort();
        }
    }

    /// Waits for ctrl-c or (on unix) SIGTERM, then cancels the root token,
    /// which starts the shutdown. Also returns, with [`Trigger::Cancelled`],
    /// when the root token is cancelled by other code, so
    /// `shutdown.on_signal().await; shutdown.shutdown(grace).await` covers
    /// every way a service is told to stop.
    ///
    /// The signal handlers are installed when this future is first polled;
    /// from then on the process no longer dies on these signals (tokio keeps
    /// its handlers for the life of the process). If a handler cannot be
    /// installed a `warn` event is logged and that signal is not waited for.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future stops waiting and starts nothing.
    pub async fn on_signal(&self) -> Trigger {
        let trigger = tokio::select! {
            trigger = wait_for_signal() => trigger,
            () = self.inner.token.cancelled() => Trigger::Cancelled,
        };
        if trigger != Trigger::Cancelled {
            tracing::info!(signal = ?trigger, "signal received, shutting down");
            let cause = match trigger {
                Trigger::CtrlC => "received ctrl-c",
                Trigger::Terminate => "received SIGTERM",
                Trigger::Cancelled => "cancelled",
            };
            self.inner.ctx.cancel_with(cause);
        }
        trigger
    }

    /// Shuts down: cancels the root token, waits up to `grace` for every task
    /// to end, aborts the ones still running, waits for them to unwind and
    /// returns the report.
    ///
    /// Calling it again (or from several clones at once) runs the shutdown
    /// once; every caller gets the same report.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped before it completes, the root token stays
    /// cancelled but no task is aborted; a later call starts the wait again,
    /// with its own grace period and its own `elapsed`.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.inner
            .report
            .get_or_init(|| self.drain(grace))
            .await
            .clone()
    }

    async fn drain(&self, grace: Duration) -> ShutdownReport {
        let start = Instant::now();
        {
            let mut state = lock(&self.inner.state);
            if state.phase == Phase::Running {
                state.phase = Phase::Draining;
            }
        }
        tracing::info!(grace = ?grace, "shutdown started");
        self.inner.ctx.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            lock(&self.inner.state).sweep();
            // Aborted tasks end at their next `.await`.
            self.inner.tracker.wait().await;
        }
        let mut state = lock(&self.inner.state);
        state.phase = Phase::Swept;
        let report = ShutdownReport {
            finished: state.finished.drain(..).map(|n| n.to_string()).collect(),
            failed: state
                .failed
                .drain(..)
                .map(|(n, m)| (n.to_string(), m))
                .collect(),
            aborted: state
                .aborted
                .drain(..)
                .map(|(_, n)| n.to_string())
                .collect(),
            ended_before: state.ended_before,
            elapsed: start.elapsed(),
            cause: self.inner.ctx.cause(),
        };
        drop(state);
        tracing::info!(
            finished = report.finished.len(),
            failed = report.failed.len(),
            aborted = report.aborted.len(),
            elapsed = ?report.elapsed,
            "shutdown complete"
        );
        report
    }
}

async fn wait_for_signal() -> Trigger {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Trigger::CtrlC,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for ctrl-c");
                std::future::pending().await
            }
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                if sigterm.recv().await.is_some() {
                    Trigger::Terminate
                } else {
                    std::future::pending().await
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<Trigger>();
    tokio::select! {
        trigger = ctrl_c => trigger,
        trigger = terminate => trigger,
    }
}
