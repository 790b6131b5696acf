//! [`throttle`]: a stream adapter that takes a token per item.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::Stream;
use pin_project_lite::pin_project;

use crate::acquire::AcquireTokens;
use crate::limiter::RateLimiter;

pin_project! {
    /// The stream returned by [`throttle`] and [`ThrottleExt::throttle`].
    ///
    /// Each item is pulled from the inner stream first, then held until a
    /// token is taken from the limiter, then yielded: the limiter paces the
    /// output, and no token is spent once the inner stream has ended. A free
    /// token is taken at once ([`RateLimiter::try_acquire`]); when none is
    /// free the item queues with the limiter's other
    /// [`acquire`](RateLimiter::acquire) callers, in arrival order.
    ///
    /// Dropping it drops the held item (if any) and gives back a token it was
    /// waiting for (see [`RateLimiter::acquire`]). If the limiter can never
    /// grant a token (a spent [`Rate::zero`](crate::Rate::zero) bucket) the
    /// stream ends with a `warn` event rather than hang.
    #[must_use = "streams do nothing unless polled"]
    pub struct Throttle<S: Stream> {
        #[pin]
        stream: S,
        limiter: RateLimiter,
        pending: Option<S::Item>,
        wait: Option<Pin<Box<AcquireTokens<'static>>>>,
        done: bool,
    }
}

impl<S: Stream> fmt::Debug for Throttle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("limiter", &self.limiter)
            .field("waiting", &self.wait.is_some())
            .field("done", &self.done)
            .finish()
    }
}

/// Paces `stream` with `limiter`: one token per item (shared with every other
/// user of the limiter).
///
/// # Examples
///
/// ```
/// # mod weir { pub use weir_rate as rate; }
/// use std::time::Duration;
/// use futures::StreamExt;
/// use weir::rate::{Rate, RateLimiter, throttle};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RateLimiter::new(Rate::per_second(4))?;
/// let start = tokio::time::Instant::now();
/// let items: Vec<u32> = throttle(futures::stream::iter(0..5), &limiter).collect().await;
/// assert_eq!(items, vec![0, 1, 2, 3, 4]);
/// assert_eq!(start.elapsed(), Duration::from_secs(1)); // first at once, then every 250 ms
/// # Ok(())
/// # }
/// ```
pub fn throttle<S: Stream>(stream: S, limiter: &RateLimiter) -> Throttle<S> {
    Throttle {
        stream,
        limiter: limiter.clone(),
        pending: None,
        wait: None,
        done: false,
    }
}

/// `.throttle(&limiter)` on any [`Stream`].
///
/// Named `ThrottleExt` so it can sit beside `futures::StreamExt`; tokio-stream's
/// `StreamExt` also has a `throttle(Duration)`, so do not import both traits in
/// one scope (call [`throttle`] instead).
pub trait ThrottleExt: Stream + Sized {
    /// See [`throttle`].
    fn throttle(self, limiter: &RateLimiter) -> Throttle<Self> {
        throttle(self, limiter)
    }
}

impl<S: Stream> ThrottleExt for S {}

impl<S: Stream> Stream for Throttle<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        loop {
            if let Some(wait) = this.wait.as_mut() {
                let res = ready!(wait.as_mut().poll(cx));
                *this.wait = None;
                match res {
                    Ok(()) => return Poll::Ready(this.pending.take()),
                    Err(e) => {
                        tracing::warn!(error = %e, "throttle: the limiter can never grant a token; ending the stream");
                        *this.pending = None;
                        *this.done = true;
                    }
                }
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match ready!(this.stream.as_mut().poll_next(cx)) {
                Some(item) => {
                    if this.limiter.try_acquire().is_ok() {
                        return Poll::Ready(Some(item));
                    }
                    *this.pending = Some(item);
                    let wait = AcquireTokens::owned(this.limiter.clone(), 1);
                    *this.wait = Some(Box::pin(wait));
                }
                None => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        let extra = usize::from(self.pending.is_some());
        let (lo, hi) = self.stream.size_hint();
        (
            lo.saturating_add(extra),
            hi.and_then(|h| h.checked_add(extra)),
        )
    }
}
