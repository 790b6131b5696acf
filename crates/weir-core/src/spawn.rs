//! Spawning weir's tasks: named for tokio-console when built with
//! `--cfg tokio_unstable`, plain `spawn` otherwise; registered with the
//! leak check with the `testing` feature (`weir_context::testing`).
//!
//! Every task weir-core spawns goes through here, with a [`Label`]
//! (`pool resize-images worker 3`, `pipeline etl stage parse 2`) that is
//! only formatted under `tokio_unstable` and only recorded with `testing`,
//! so a build with neither costs nothing more than the spawn it did before.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use weir_context::__private::{Label, track};

/// Spawns `fut` on `rt`, tracked by `tracker` (what
/// `tracker.spawn_on(fut, rt)` does), labelled `label`.
pub(crate) fn tracked_on<F>(
    tracker: &TaskTracker,
    rt: &Handle,
    label: &Label<'_>,
    fut: F,
) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_on(rt, label, tracker.track_future(fut))
}

/// Spawns `fut` on the current runtime (what `tokio::spawn` does),
/// labelled `label`.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::spawn` does.
pub(crate) fn spawn<F>(label: &Label<'_>, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_on(&Handle::current(), label, fut)
}

/// Spawns `fut` on `rt`, labelled `label`.
pub(crate) fn spawn_on<F>(rt: &Handle, label: &Label<'_>, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(tokio_unstable)]
    {
        let fut = track(label, fut);
        let name = label.to_string();
        match tokio::task::Builder::new().name(&name).spawn_on(fut, rt) {
            Ok(handle) => handle,
            Err(error) => refused(rt, &name, &error),
        }
    }
    #[cfg(not(tokio_unstable))]
    {
        rt.spawn(track(label, fut))
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

/// Spawns `fut` into `set` (what `set.spawn(fut)` does), labelled `label`.
pub(crate) fn in_set<T, F>(
    set: &mut tokio::task::JoinSet<T>,
    label: &Label<'_>,
    fut: F,
) -> tokio::task::AbortHandle
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    #[cfg(tokio_unstable)]
    {
        let fut = track(label, fut);
        let name = label.to_string();
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
        set.spawn(track(label, fut))
    }
}
