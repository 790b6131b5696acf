//! Timeouts: per message and per call. (For a whole conversation, use a
//! deadline on a [`Context`](crate::Context).)
//!
//! - [`recv_timeout`] waits for the next message of a `tokio::sync::mpsc`
//!   receiver at most `d` (Go's `select { case m := <-ch: ...; case <-time.After(d): ... }`),
//!   and [`next_timeout`] does the same for any [`Stream`].
//! - [`with_timeout`] bounds one call and fails with a typed [`Elapsed`] that
//!   says how long it waited.
//! - **A whole conversation** (one request, one session, one batch) gets a
//!   deadline the one way weir has:
//!   `Context::background().with_timeout(d)` (or `parent.with_timeout(d)`),
//!   handed to each construct's `.context(..)`; `ctx.run(fut)` bounds any
//!   future by it, and a passed deadline reports as
//!   [`Cause::DeadlineExceeded`](crate::Cause::DeadlineExceeded) wherever it
//!   is seen.
//!
//! Every limit here takes any `Duration`: `Duration::ZERO` means "try once"
//! (an item already waiting, a future ready at its first poll, is taken) and
//! a limit too far away for the clock (`Duration::MAX`) means no limit.
//! Nothing panics on a duration.
//!
//! All of it runs on `tokio::time`, so tests under a paused clock
//! (`#[tokio::test(start_paused = true)]`) run instantly and deterministically.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use weir_core::time::{recv_timeout, RecvTimeoutError};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let (tx, mut rx) = tokio::sync::mpsc::channel(4);
//! tx.send("hello").await.unwrap();
//! assert_eq!(recv_timeout(&mut rx, Duration::from_secs(1)).await, Ok("hello"));
//! // Nothing more arrives within a second.
//! assert!(matches!(
//!     recv_timeout(&mut rx, Duration::from_secs(1)).await,
//!     Err(RecvTimeoutError::Timeout(_))
//! ));
//! drop(tx);
//! assert_eq!(recv_timeout(&mut rx, Duration::from_secs(1)).await, Err(RecvTimeoutError::Closed));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

/// A call did not finish within its time limit; carries the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("timed out after {after:?}")]
pub struct Elapsed {
    after: Duration,
}

impl Elapsed {
    /// Creates the error for a limit of `after`.
    pub fn new(after: Duration) -> Self {
        Elapsed { after }
    }

    /// The time limit that passed.
    pub fn after(&self) -> Duration {
        self.after
    }
}

/// Why [`recv_timeout`] or [`next_timeout`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// No message arrived within the limit; the channel is still open.
    #[error("no message within {:?}", .0.after())]
    Timeout(Elapsed),
    /// The channel is closed (every sender dropped) and empty, or the stream
    /// ended.
    #[error("channel closed")]
    Closed,
}

/// Receives the next message from `rx`, waiting at most `d`.
///
/// Returns `Ok(message)`, `Err(RecvTimeoutError::Closed)` when every sender
/// is gone and the channel is empty, or `Err(RecvTimeoutError::Timeout)` when
/// `d` passes first. A timeout leaves the channel as it was: the next call can
/// still receive the next message. `Duration::ZERO` takes a message only if
/// one is already queued; `Duration::MAX` waits as long as `recv` would.
///
/// # Cancel safety
///
/// Cancel safe, like [`mpsc::Receiver::recv`]: if the future is dropped
/// before it completes, no message is lost.
///
/// # Examples
///
/// See the [module docs](self).
pub async fn recv_timeout<T>(
    rx: &mut mpsc::Receiver<T>,
    d: Duration,
) -> Result<T, RecvTimeoutError> {
    match tokio::time::timeout(d, rx.recv()).await {
        Ok(Some(item)) => Ok(item),
        Ok(None) => Err(RecvTimeoutError::Closed),
        Err(_) => Err(RecvTimeoutError::Timeout(Elapsed::new(d))),
    }
}

/// Takes the next item of `stream`, waiting at most `d`: [`recv_timeout`] for
/// any [`Stream`] (a [`ShedReceiver`](crate::shed::ShedReceiver), a
/// `tokio_stream` wrapper, a pipeline's output). `Duration::ZERO` takes an
/// item only if the stream has one ready; `Duration::MAX` waits as long as
/// the stream takes.
///
/// # Cancel safety
///
/// As cancel safe as the stream's `poll_next`: for channel-backed streams no
/// item is lost when the future is dropped.
pub async fn next_timeout<S>(stream: &mut S, d: Duration) -> Result<S::Item, RecvTimeoutError>
where
    S: Stream + Unpin + ?Sized,
{
    match tokio::time::timeout(d, stream.next()).await {
        Ok(Some(item)) => Ok(item),
        Ok(None) => Err(RecvTimeoutError::Closed),
        Err(_) => Err(RecvTimeoutError::Timeout(Elapsed::new(d))),
    }
}

/// Runs `fut` for at most `d`: `Ok(output)`, or `Err(Elapsed)` and `fut` is
/// dropped (which cancels it at its current `.await`).
///
/// A thin wrapper over [`tokio::time::timeout`] whose error says how long it
/// waited, so it can be `?`-ed into `anyhow::Error` with a useful message.
/// `fut` is polled before the clock is looked at, so `Duration::ZERO` still
/// returns the output of a future that is ready at once; `Duration::MAX`
/// (any limit beyond the clock's range) never times out.
///
/// # Cancel safety
///
/// Dropping the returned future drops `fut`; it is as cancel safe as `fut`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_core::time::with_timeout;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow = tokio::time::sleep(Duration::from_secs(10));
/// let err = with_timeout(slow, Duration::from_secs(1)).await.unwrap_err();
/// assert_eq!(err.after(), Duration::from_secs(1));
/// assert_eq!(err.to_string(), "timed out after 1s");
///
/// assert_eq!(with_timeout(async { 7 }, Duration::from_secs(1)).await, Ok(7));
/// # }
/// ```
pub fn with_timeout<F: Future>(fut: F, d: Duration) -> WithTimeout<F> {
    WithTimeout {
        inner: tokio::time::timeout(d, fut),
        after: d,
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`with_timeout`].
    #[must_use = "futures do nothing unless polled"]
    pub struct WithTimeout<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
        after: Duration,
    }
}

impl<F: Future> Future for WithTimeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let after = *this.after;
        this.inner
            .poll(cx)
            .map(|res| res.map_err(|_| Elapsed::new(after)))
    }
}

impl<F> fmt::Debug for WithTimeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithTimeout")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}
