//! Spawning a group's tasks: named for tokio-console (`group <name> task
//! <index>`) when built with `--cfg tokio_unstable`, plain `tokio::spawn`
//! otherwise (no name is formatted then).

use std::future::Future;

use tokio::task::JoinHandle;

/// `tokio::spawn(fut)`, named `name()` under `tokio_unstable`.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::spawn` does.
pub(crate) fn spawn<F>(name: impl FnOnce() -> String, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(tokio_unstable)]
    {
        let name = name();
        match tokio::task::Builder::new().name(&name).spawn(fut) {
            Ok(handle) => handle,
            // tokio's builder does not refuse today; its result type leaves
            // room for it. The future is gone: the task ends as one of a
            // runtime that shuts down does, cancelled before it ran.
            Err(error) => {
                tracing::error!(task = %name, %error, "tokio refused to spawn a task; it is cancelled");
                let handle = tokio::spawn(std::future::pending::<F::Output>());
                handle.abort();
                handle
            }
        }
    }
    #[cfg(not(tokio_unstable))]
    {
        let _ = name;
        tokio::spawn(fut)
    }
}
