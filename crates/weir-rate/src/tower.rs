//! Tower middleware (feature `tower` of `weir`, or of `weir-rate`):
//! [`RateLimitLayer`] shares one [`RateLimiter`] across every clone of the
//! service, [`KeyedRateLimitLayer`] one bucket per key; both can shed load
//! instead of queueing.
//!
//! Through the facade, these are `weir::rate::tower::RateLimitLayer` and
//! friends, with `weir = { version = "0.1", features = ["tower"] }`. The
//! services' error type is tower's `BoxError`
//! (`Box<dyn std::error::Error + Send + Sync>`): a rejection downcasts to
//! [`RateLimitExceeded`], an inner service's error passes through as it is.
//!
//! ```
//! # mod weir { pub use weir_rate as rate; }
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//! use weir::rate::tower::{RateLimitExceeded, RateLimitLayer};
//! use weir::rate::{Rate, RateLimiter};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // 10 requests a second, 2 at once; a request whose token is more than
//! // 50 ms away is rejected rather than queued.
//! let limiter = RateLimiter::new(Rate::per_second(10).burst(2))?;
//! let svc = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(limiter).max_wait(Duration::from_millis(50)))
//!     .service_fn(|name: &'static str| async move { Ok::<_, std::convert::Infallible>(name.len()) });
//!
//! assert_eq!(svc.clone().oneshot("ann").await?, 3);
//! assert_eq!(svc.clone().oneshot("bob").await?, 3);
//! let err = svc.clone().oneshot("cy").await.unwrap_err();
//! assert!(err.is::<RateLimitExceeded>());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::future::BoxFuture;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::keyed::KeyedRateLimiter;
use crate::limiter::RateLimiter;
use crate::reservation::{CancelOnDrop, Reservation};

/// The boxed error the services return (the same type as tower's
/// `BoxError`).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request was rejected because its token would not be ready within the
/// layer's `max_wait` (load shedding), or the limiter can never grant it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitExceeded {
    max_wait: Duration,
}

impl RateLimitExceeded {
    /// The bound the wait would have exceeded (`Duration::MAX` for a layer
    /// without one, whose limiter can never grant a token: a spent
    /// [`Rate::zero`](crate::Rate::zero) bucket).
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }
}

impl fmt::Display for RateLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.max_wait == Duration::MAX {
            f.write_str("rate limit exceeded: the limiter can never grant a token")
        } else {
            write!(
                f,
                "rate limit exceeded: no token within {:?}",
                self.max_wait
            )
        }
    }
}

impl std::error::Error for RateLimitExceeded {}

/// [`RateLimit`]'s `call` was used without a successful `poll_ready` first
/// (a caller bug, reported as an error rather than a panic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit service called before poll_ready returned Ready")]
pub struct RateLimitNotReady;

/// Applies [`RateLimit`]: every clone of the wrapped service takes its tokens
/// from the same [`RateLimiter`] (tower's own `RateLimit` keeps a window per
/// clone, so N clones allow N× the rate).
///
/// # Examples
///
/// ```
/// # mod weir { pub use weir_rate as rate; }
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt, service_fn};
/// use weir::rate::tower::RateLimitLayer;
/// use weir::rate::{Rate, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let limiter = RateLimiter::new(Rate::per_second(10))?;
/// let layer = RateLimitLayer::new(limiter).max_wait(Duration::from_millis(50));
/// let svc = layer.layer(service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x * 2) }));
///
/// assert_eq!(svc.clone().oneshot(1).await?, 2);
/// // The next token is 100 ms away, over the 50 ms bound: shed.
/// let err = svc.clone().oneshot(2).await.unwrap_err();
/// assert!(err.is::<weir::rate::tower::RateLimitExceeded>());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
    max_wait: Option<Duration>,
}

impl RateLimitLayer {
    /// Waits for a token before each call, however long that takes.
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimitLayer {
            limiter,
            max_wait: None,
        }
    }

    /// Rejects a request with [`RateLimitExceeded`] (taking no token) when its
    /// token would not be ready within `max_wait`; `Duration::ZERO` rejects
    /// whenever no token is there now.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            max_wait: self.max_wait,
            state: State::Idle,
        }
    }
}

/// The service made by [`RateLimitLayer`].
///
/// `poll_ready` reserves a token (or decides to shed), sleeps until it is
/// ready, then polls the inner service. Dropping the service while it waits
/// gives the token back; a token taken by a ready service that is then
/// dropped without `call` stays spent. Clones start without a token.
pub struct RateLimit<S> {
    inner: S,
    limiter: RateLimiter,
    max_wait: Option<Duration>,
    state: State,
}

enum State {
    Idle,
    Waiting(Pin<Box<tokio::time::Sleep>>, Reservation),
    Ready(Reservation),
    Shed,
}

impl<S: Clone> Clone for RateLimit<S> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            max_wait: self.max_wait,
            state: State::Idle,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle => "idle",
            State::Waiting(..) => "waiting",
            State::Ready(_) => "ready",
            State::Shed => "shed",
        };
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("max_wait", &self.max_wait)
            .field("state", &state)
            .finish()
    }
}

impl<S> Drop for RateLimit<S> {
    fn drop(&mut self) {
        if let State::Waiting(_, r) | State::Ready(r) =
            std::mem::replace(&mut self.state, State::Idle)
        {
            // Nothing comes back once the token's time has passed.
            r.cancel();
        }
    }
}

impl<S, Req> Service<Req> for RateLimit<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = RateLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.state {
                State::Idle => {
                    let max = self.max_wait.unwrap_or(Duration::MAX);
                    let r = self.limiter.reserve_n_within(1, max);
                    self.state = match r.ready_at() {
                        None => {
                            tracing::debug!(max_wait = ?max, "rate limit: shedding a request");
                            State::Shed
                        }
                        Some(_) if r.is_due() => State::Ready(r),
                        Some(at) => State::Waiting(Box::pin(tokio::time::sleep_until(at)), r),
                    };
                }
                State::Waiting(sleep, _) => {
                    ready!(sleep.as_mut().poll(cx));
                    if let State::Waiting(_, r) = std::mem::replace(&mut self.state, State::Idle) {
                        self.state = State::Ready(r);
                    }
                }
                State::Ready(_) => return self.inner.poll_ready(cx).map_err(Into::into),
                // `call` answers with the rejection.
                State::Shed => return Poll::Ready(Ok(())),
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Ready(_token) => RateLimitFuture::called(self.inner.call(req)),
            State::Shed => RateLimitFuture::rejected(
                RateLimitExceeded {
                    max_wait: self.max_wait.unwrap_or(Duration::MAX),
                }
                .into(),
            ),
            other => {
                self.state = other;
                RateLimitFuture::rejected(RateLimitNotReady.into())
            }
        }
    }
}

pin_project! {
    /// The response future of [`RateLimit`] and [`KeyedRateLimit`]'s
    /// rejections.
    #[must_use = "futures do nothing unless polled"]
    pub struct RateLimitFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] fut: F },
        Rejected { err: Option<BoxError> },
    }
}

impl<F> RateLimitFuture<F> {
    fn called(fut: F) -> Self {
        RateLimitFuture {
            kind: Kind::Called { fut },
        }
    }

    fn rejected(err: BoxError) -> Self {
        RateLimitFuture {
            kind: Kind::Rejected { err: Some(err) },
        }
    }
}

impl<F> fmt::Debug for RateLimitFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RateLimitFuture")
    }
}

impl<F, T, E> Future for RateLimitFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { fut } => fut.poll(cx).map_err(Into::into),
            KindProj::Rejected { err } => {
                Poll::Ready(Err(err.take().unwrap_or_else(|| RateLimitNotReady.into())))
            }
        }
    }
}

/// Applies [`KeyedRateLimit`]: one bucket per key, the key taken from each
/// request by `extract` (a client address, an API key, a route).
///
/// # Examples
///
/// ```
/// # mod weir { pub use weir_rate as rate; }
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt, service_fn};
/// use weir::rate::tower::KeyedRateLimitLayer;
/// use weir::rate::{KeyedRateLimiter, Rate};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let per_user = KeyedRateLimiter::new(Rate::per_second(1))?;
/// let layer = KeyedRateLimitLayer::new(per_user, |req: &(&'static str, u32)| req.0)
///     .max_wait(Duration::ZERO);
/// let svc = layer.layer(service_fn(|req: (&'static str, u32)| async move {
///     Ok::<_, std::convert::Infallible>(req.1)
/// }));
/// assert_eq!(svc.clone().oneshot(("ann", 1)).await?, 1);
/// assert!(svc.clone().oneshot(("ann", 2)).await.is_err()); // ann waits a second
/// assert_eq!(svc.clone().oneshot(("bob", 3)).await?, 3); // bob does not
/// # Ok(())
/// # }
/// ```
pub struct KeyedRateLimitLayer<K, F> {
    limiter: KeyedRateLimiter<K>,
    extract: F,
    max_wait: Option<Duration>,
}

impl<K, F: Clone> Clone for KeyedRateLimitLayer<K, F> {
    fn clone(&self) -> Self {
        KeyedRateLimitLayer {
            limiter: self.limiter.clone(),
            extract: self.extract.clone(),
            max_wait: self.max_wait,
        }
    }
}

impl<K, F> fmt::Debug for KeyedRateLimitLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimitLayer")
            .field("limiter", &self.limiter)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl<K, F> KeyedRateLimitLayer<K, F> {
    /// Takes each request's key with `extract` and waits for a token from
    /// that key's bucket.
    pub fn new(limiter: KeyedRateLimiter<K>, extract: F) -> Self {
        KeyedRateLimitLayer {
            limiter,
            extract,
            max_wait: None,
        }
    }

    /// Rejects a request with [`RateLimitExceeded`] when its key's token would
    /// not be ready within `max_wait`.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }
}

impl<S, K, F: Clone> Layer<S> for KeyedRateLimitLayer<K, F> {
    type Service = KeyedRateLimit<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedRateLimit {
            inner,
            limiter: self.limiter.clone(),
            extract: self.extract.clone(),
            max_wait: self.max_wait,
        }
    }
}

/// The service made by [`KeyedRateLimitLayer`].
///
/// The key is only known in `call`, so `poll_ready` polls the inner service,
/// and `call` moves that ready service into the response future, which
/// waits for the key's token and then calls it (the inner service must be
/// `Clone`, as for tower's `Buffer`-style middleware). Dropping the response
/// future before the token is ready gives it back.
pub struct KeyedRateLimit<S, K, F> {
    inner: S,
    limiter: KeyedRateLimiter<K>,
    extract: F,
    max_wait: Option<Duration>,
}

impl<S: Clone, K, F: Clone> Clone for KeyedRateLimit<S, K, F> {
    fn clone(&self) -> Self {
        KeyedRateLimit {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            extract: self.extract.clone(),
            max_wait: self.max_wait,
        }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for KeyedRateLimit<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl<S, K, F, Req> Service<Req> for KeyedRateLimit<S, K, F>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    S::Response: Send,
    Req: Send + 'static,
    K: std::hash::Hash + Eq + Clone,
    F: Fn(&Req) -> K,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.extract)(&req);
        let max_wait = self.max_wait.unwrap_or(Duration::MAX);
        let reservation = self.limiter.limiter(&key).reserve_n_within(1, max_wait);
        if !reservation.ok() {
            tracing::debug!(?max_wait, "keyed rate limit: shedding a request");
            return Box::pin(std::future::ready(Err(
                RateLimitExceeded { max_wait }.into()
            )));
        }
        // The ready service goes into the future; this one continues with a
        // fresh clone (tower's "take the ready service" idiom).
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            let reserved = CancelOnDrop::new(reservation);
            reserved.ready().await;
            reserved.keep();
            ready.call(req).await.map_err(Into::into)
        })
    }
}
