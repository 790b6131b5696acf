//! Tower middleware (feature `tower`): [`AdaptiveLimitLayer`] puts an
//! [`AdaptiveLimit`] in front of a service, so the service's own latency
//! and errors set how many requests it gets at once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::classify::{ClassifyOutcome, DropOnError};
use super::{AdaptiveAcquire, AdaptiveLimit, AdaptivePermit};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `call` was used without a successful `poll_ready` first (a caller bug).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("adaptive limit service called before poll_ready returned Ready")]
pub struct AdaptiveLimitNotReady;

/// Applies [`AdaptiveLimitService`]: every clone of the wrapped service
/// takes its slots from the same [`AdaptiveLimit`], and each response
/// (classified by [`classify`](Self::classify)) teaches it.
///
/// Like tower's `ConcurrencyLimit`, the service waits in `poll_ready` while
/// every slot is taken; put tower's `LoadShed` outside it to refuse instead
/// of waiting.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt, service_fn};
/// use weir_core::{AdaptiveLimit, AdaptiveLimitLayer, LimitOutcome};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let limit = AdaptiveLimit::builder().name("backend").build()?;
/// // A 503 answer is an overload signal, though the call returned `Ok`.
/// let layer = AdaptiveLimitLayer::new(limit.clone()).classify(|r: &Result<u16, std::io::Error>| {
///     match r {
///         Ok(503) | Err(_) => LimitOutcome::Dropped,
///         Ok(_) => LimitOutcome::Success,
///     }
/// });
/// let svc = layer.layer(service_fn(|code: u16| async move {
///     tokio::time::sleep(Duration::from_millis(5)).await;
///     Ok::<_, std::io::Error>(code)
/// }));
/// assert_eq!(svc.clone().oneshot(200).await?, 200);
/// assert_eq!(svc.oneshot(503).await?, 503);
/// let stats = limit.stats();
/// assert_eq!((stats.succeeded, stats.dropped), (1, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveLimitLayer<C = DropOnError> {
    limit: AdaptiveLimit,
    classify: C,
}

impl AdaptiveLimitLayer {
    /// Limits with `limit`; errors count as drops ([`DropOnError`]).
    pub fn new(limit: AdaptiveLimit) -> Self {
        Self {
            limit,
            classify: DropOnError,
        }
    }
}

impl<C> AdaptiveLimitLayer<C> {
    /// Decides each response's outcome with `classify` (a
    /// `Fn(&Result<T, E>) -> LimitOutcome`, or any [`ClassifyOutcome`]).
    pub fn classify<C2>(self, classify: C2) -> AdaptiveLimitLayer<C2> {
        AdaptiveLimitLayer {
            limit: self.limit,
            classify,
        }
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveLimitLayer<C> {
    type Service = AdaptiveLimitService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimitService {
            inner,
            limit: self.limit.clone(),
            classify: self.classify.clone(),
            state: State::Idle,
        }
    }
}

/// The service made by [`AdaptiveLimitLayer`].
///
/// `poll_ready` waits for a slot, then polls the inner service; `call`
/// moves the slot into the response future, which gives it back with the
/// response's outcome. Dropping the service while it holds an unused slot,
/// or a response future before it completes, frees the slot with no
/// verdict (counted as `abandoned`). Clones start without a slot.
pub struct AdaptiveLimitService<S, C = DropOnError> {
    inner: S,
    limit: AdaptiveLimit,
    classify: C,
    state: State,
}

enum State {
    Idle,
    Acquiring(AdaptiveAcquire),
    Ready(AdaptivePermit),
}

impl<S: Clone, C: Clone> Clone for AdaptiveLimitService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limit: self.limit.clone(),
            classify: self.classify.clone(),
            state: State::Idle,
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveLimitService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle => "idle",
            State::Acquiring(_) => "acquiring",
            State::Ready(_) => "ready",
        };
        f.debug_struct("AdaptiveLimitService")
            .field("inner", &self.inner)
            .field("limit", &self.limit)
            .field("state", &state)
            .finish()
    }
}

impl<S, C, Req> Service<Req> for AdaptiveLimitService<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: ClassifyOutcome<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AdaptiveLimitFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.state {
                State::Idle => self.state = State::Acquiring(self.limit.acquire()),
                State::Acquiring(acquire) => {
                    let permit = ready!(Pin::new(acquire).poll(cx));
                    // Without a context the wait cannot be stopped; should it
                    // be, the error says why.
                    self.state = State::Ready(permit?);
                }
                State::Ready(_) => return self.inner.poll_ready(cx).map_err(Into::into),
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Ready(permit) => AdaptiveLimitFuture {
                kind: Kind::Called {
                    fut: self.inner.call(req),
                    permit: Some(permit),
                    classify: self.classify.clone(),
                },
            },
            other => {
                self.state = other;
                AdaptiveLimitFuture {
                    kind: Kind::NotReady,
                }
            }
        }
    }
}

pin_project! {
    /// The response future of [`AdaptiveLimitService`]: the inner call,
    /// holding its slot until it completes.
    #[must_use = "futures do nothing unless polled"]
    pub struct AdaptiveLimitFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called { #[pin] fut: F, permit: Option<AdaptivePermit>, classify: C },
        NotReady,
    }
}

impl<F, C> fmt::Debug for AdaptiveLimitFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdaptiveLimitFuture")
    }
}

impl<F, C, T, E> Future for AdaptiveLimitFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: ClassifyOutcome<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                fut,
                permit,
                classify,
            } => {
                let out = ready!(fut.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.finish(classify.classify(&out));
                }
                Poll::Ready(out.map_err(Into::into))
            }
            KindProj::NotReady => Poll::Ready(Err(AdaptiveLimitNotReady.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use tower::{ServiceExt, service_fn};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn clones_share_the_limit_and_wait_in_poll_ready() {
        let limit = AdaptiveLimit::builder().initial(2).build().unwrap();
        let svc = AdaptiveLimitLayer::new(limit.clone()).layer(service_fn(|ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if ms == 0 { Err("refused") } else { Ok(ms) }
        }));
        let start = tokio::time::Instant::now();
        let calls: Vec<_> = (0..4)
            .map(|_| tokio::spawn(svc.clone().oneshot(100)))
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap(), 100);
        }
        // Two at a time: two rounds of 100 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        let err = svc.clone().oneshot(0).await.unwrap_err();
        assert_eq!(err.to_string(), "refused");
        let stats = limit.stats();
        assert_eq!((stats.succeeded, stats.dropped, stats.in_flight), (4, 1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_response_future_frees_its_slot() {
        let limit = AdaptiveLimit::builder().initial(1).build().unwrap();
        let mut svc = AdaptiveLimitLayer::new(limit.clone()).layer(service_fn(|()| async {
            std::future::pending::<Result<(), std::convert::Infallible>>().await
        }));
        let fut = svc.ready().await.unwrap().call(());
        assert_eq!(limit.in_flight(), 1);
        drop(fut);
        assert_eq!(limit.in_flight(), 0);
        // Ready but never called, then dropped: the slot comes back too.
        svc.ready().await.unwrap();
        assert_eq!(limit.in_flight(), 1);
        drop(svc);
        let stats = limit.stats();
        assert_eq!((stats.in_flight, stats.abandoned), (0, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn call_without_ready_is_an_error_not_a_panic() {
        let limit = AdaptiveLimit::builder().build().unwrap();
        let mut svc = AdaptiveLimitLayer::new(limit).layer(service_fn(|()| async {
            Ok::<_, std::convert::Infallible>(())
        }));
        let err = svc.call(()).await.unwrap_err();
        assert!(err.is::<AdaptiveLimitNotReady>());
    }
}
