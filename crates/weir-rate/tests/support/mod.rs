//! Shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

/// How long a case may take in real time before it counts as hung. Far
/// above what any case needs (they run on a paused clock): it only turns a
/// hang into a failure.
const HANG: Duration = Duration::from_secs(60);

/// Runs `case` on a thread of its own, inside a fresh current-thread
/// runtime with a paused clock, and fails if it panics or has not finished
/// after [`HANG`] of real time — a busy loop in a synchronous call is
/// caught as surely as an await that never ends.
pub(crate) fn within_bound<F, Fut>(name: &str, case: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (done, finished) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(case());
            let _ = done.send(());
        })
        .unwrap();
    match finished.recv_timeout(HANG) {
        Ok(()) => thread.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // It panicked: hand the panic on, message and all.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("`{name}` hung"),
    }
}

/// `fut`, or a failure if it does not finish within `limit` of (paused)
/// tokio time.
pub(crate) async fn within<F: Future>(limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("did not finish within {limit:?}"),
    }
}
