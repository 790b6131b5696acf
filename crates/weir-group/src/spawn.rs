//! Spawning a group's tasks: named for tokio-console (`group <name> task
//! <index>`) when built with `--cfg tokio_unstable`, plain `tokio::spawn`
//! otherwise (no name is formatted then); registered with the leak check
//! (`weir_context::testing`) with the `testing` feature, and not otherwise.

use std::future::Future;

use tokio::task::JoinHandle;
use weir_context::__private::{Label, track};

/// `tokio::spawn(fut)`, labelled `label`.
///
/// # Panics
///
/// Outside a tokio runtime, as `tokio::spawn` does.
pub(crate) fn spawn<F>(label: &Label<'_>, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(tokio_unstable)]
    {
        let fut = track(label, fut);
        let name = label.to_string();
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
        tokio::spawn(track(label, fut))
    }
}
