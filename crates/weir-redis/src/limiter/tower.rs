//! Tower middleware (feature `tower`): [`SharedRateLimitLayer`] takes a
//! token from a key's shared bucket before each request.

use std::fmt;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;
use weir_context::Context;

use super::{SharedRateError, SharedRateLimiter, SharedWaitError};

/// The boxed error the service returns (tower's `BoxError`).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Applies [`SharedRateLimit`]: each request takes one token from the
/// shared bucket of the key `key(&request)` returns (a tenant, an API key,
/// a client address), so every replica of the service shares each key's
/// limit.
///
/// A request that gets no token is answered with the [`SharedRateError`]
/// (boxed) without calling the inner service: `Limited` with when to retry
/// (a `429` with `Retry-After`), or `Unavailable` when Redis is down and
/// the limiter fails closed.
///
/// # Examples
///
/// ```
/// use tower::{Layer, ServiceExt, service_fn};
/// use weir_rate::Rate;
/// use weir_redis::{SharedRateError, SharedRateLimitLayer, SharedRateLimiter};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// # let server = weir_redis::LocalRedisServer::start().await?;
/// # let url = server.url();
/// let limiter = SharedRateLimiter::builder(Rate::per_second(1)).build_url(&url)?;
/// let layer = SharedRateLimitLayer::new(limiter, |req: &(String, u32)| req.0.clone());
/// let svc = layer.layer(service_fn(|req: (String, u32)| async move {
///     Ok::<_, std::convert::Infallible>(req.1)
/// }));
/// assert_eq!(svc.clone().oneshot(("ann".into(), 1)).await?, 1);
/// let err = svc.clone().oneshot(("ann".into(), 2)).await.unwrap_err();
/// assert!(err.downcast_ref::<SharedRateError>().is_some_and(|e| e.is_limited()));
/// # Ok(())
/// # }
/// ```
pub struct SharedRateLimitLayer<F> {
    limiter: SharedRateLimiter,
    key: F,
    max_wait: Duration,
}

impl<F: Clone> Clone for SharedRateLimitLayer<F> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            max_wait: self.max_wait,
        }
    }
}

impl<F> fmt::Debug for SharedRateLimitLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRateLimitLayer")
            .field("limiter", &self.limiter)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl<F> SharedRateLimitLayer<F> {
    /// Takes each request's key with `key`; refuses a request at once when
    /// its key's bucket is empty.
    pub fn new(limiter: SharedRateLimiter, key: F) -> Self {
        Self {
            limiter,
            key,
            max_wait: Duration::ZERO,
        }
    }

    /// Lets a request wait up to `max_wait` for its token (one round trip
    /// reserves it; the request sleeps until it is due), refusing only
    /// those whose token is further away. `Duration::ZERO` (the default)
    /// never waits.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }
}

impl<S, F: Clone> Layer<S> for SharedRateLimitLayer<F> {
    type Service = SharedRateLimit<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        SharedRateLimit {
            inner,
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            max_wait: self.max_wait,
        }
    }
}

/// The service made by [`SharedRateLimitLayer`].
///
/// The key is only known in `call`, so `poll_ready` polls the inner
/// service, and `call` moves that ready service into the response future,
/// which takes the token and then calls it (the inner service must be
/// `Clone`). Dropping the response future before the token is granted
/// calls nothing; a token already taken in Redis stays taken.
pub struct SharedRateLimit<S, F> {
    inner: S,
    limiter: SharedRateLimiter,
    key: F,
    max_wait: Duration,
}

impl<S: Clone, F: Clone> Clone for SharedRateLimit<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            max_wait: self.max_wait,
        }
    }
}

impl<S: fmt::Debug, F> fmt::Debug for SharedRateLimit<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

impl<S, F, K, Req> Service<Req> for SharedRateLimit<S, F>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    S::Response: Send,
    Req: Send + 'static,
    F: Fn(&Req) -> K,
    K: AsRef<str>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key)(&req).as_ref().to_owned();
        let limiter = self.limiter.clone();
        let max_wait = self.max_wait;
        // The ready service goes into the future; this one continues with
        // a fresh clone (tower's "take the ready service" idiom).
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            let granted = if max_wait.is_zero() {
                limiter.try_acquire(&key).await.map(drop)
            } else {
                let ctx = Context::background().with_timeout(max_wait);
                limiter
                    .acquire(&key)
                    .context(&ctx)
                    .await
                    .map(drop)
                    .map_err(refusal)
            };
            if let Err(refused) = granted {
                tracing::debug!(key = %key, error = %refused, "shared rate limit: request refused");
                return Err(refused.into());
            }
            ready.call(req).await.map_err(Into::into)
        })
    }
}

/// A wait's failure as the layer's one rejection type.
fn refusal(e: SharedWaitError) -> SharedRateError {
    match e {
        SharedWaitError::Unavailable(f) => SharedRateError::Unavailable(f),
        _ => SharedRateError::Limited { retry_after: None },
    }
}
