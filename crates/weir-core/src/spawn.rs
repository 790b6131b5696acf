//! Spawning weir's tasks: named for tokio-console when built with
//! `--cfg tokio_unstable`, plain `spawn` otherwise.
//!
//! Every task weir-core spawns goes through here, with its name as a
//! closure (`pool resize-images worker 3`, `stage parse 2`), so that a
//! build without `tokio_unstable` formats no name and costs nothing more
//! than the spawn it did before.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// Spawns `fut` on `rt`, tracked by `tracker` (what
/// `tracker.spawn_on(fut, rt)` does), named `name()`.
pub(crate) fn tracked_on<F>(
    tracker: &TaskTracker,
    rt: &Handle,
    name: impl FnOnce() -> String,
    fut: F,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_on(rt, name, tracker.track_future(fut))
}

/// Spawns `fut` on the current runtime (what `tokio::spawn` does), named
/// `name()`.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::spawn` does.
pub(crate) fn spawn<F>(name: impl FnOnce() -> String, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_on(&Handle::current(), name, fut)
}

/// Spawns `fut` on `rt`, named `name()`.
pub(crate) fn spawn_on<F>(
    rt: &Handle,
    name: impl FnOnce() -> String,
    fut: F,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(tokio_unstable)]
    {
        let name = name();
        match tokio::task::Builder::new().name(&name).spawn_on(fut, rt) {
            Ok(handle) => handle,
            Err(error) => refused(rt, &name, &error),
        }
    }
    #[cfg(not(tokio_unstable))]
    {
        let _ = name;
        rt.spawn(fut)
    }
}

/// tokio's task builder refused the spawn (it does not today; its result
/// type leaves room for it) and dropped the future: the task ends as a
/// task of a runtime that is shutting down does, cancelled before it ran.
#[cfg(tokio_unstable)]
#[cold]
fn refused<T: Send + 'static>(rt: &Handle, name: &str, error: &std::io::Error) -> JoinHandle<T> {
    tracing::error!(task = name, %error, "tokio refused to spawn a task; it is cancelled");
    let handle = rt.spawn(std::future::pending::<T>());
    handle.abort();
    handle
}

/// Spawns `fut` into `set` (what `set.spawn(fut)` does), named `name()`.
pub(crate) fn in_set<T, F>(
    set: &mut tokio::task::JoinSet<T>,
    name: impl FnOnce() -> String,
    fut: F,
) -> tokio::task::AbortHandle
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    #[cfg(tokio_unstable)]
    {
        let name = name();
        match set.build_task().name(&name).spawn(fut) {
            Ok(handle) => handle,
            Err(error) => {
                tracing::error!(task = %name, %error, "tokio refused to spawn a task; it is cancelled");
                let handle = set.spawn(std::future::pending::<T>());
                handle.abort();
                handle
            }
        }
    }
    #[cfg(not(tokio_unstable))]
    {
        let _ = name;
        set.spawn(fut)
    }
}
