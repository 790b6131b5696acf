//! [`HttpRateLimit`], the service, and [`HttpRateLimitFuture`], its
//! response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;
use tower_service::Service;

use super::headers::{Admitted, write_refusal};
use super::layer::{Buckets, RateLimitHeaders, Settings, WhenLimited};
use crate::limiter::RateLimiter;
use crate::reservation::{CancelOnDrop, Reservation};

/// The service made by [`HttpRateLimitLayer`](super::HttpRateLimitLayer).
///
/// `poll_ready` is the inner service's; `call` decides. An admitted
/// request is passed to the inner service (with
/// [`WhenLimited::Wait`], a held one is passed when its token comes, to the
/// inner service made ready for it, so the inner service must be `Clone`,
/// as axum's and hyper's services are). A refused one is answered here:
/// `429 Too Many Requests` with an empty body (`ResBody::default()`) and
/// the fields; the inner service never sees it. Errors are the inner
/// service's, unchanged: the layer adds none.
pub struct HttpRateLimit<S, B: Buckets> {
    inner: S,
    settings: Arc<Settings<B>>,
}

impl<S: Clone, B: Buckets> Clone for HttpRateLimit<S, B> {
    fn clone(&self) -> Self {
        HttpRateLimit {
            inner: self.inner.clone(),
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<S: fmt::Debug, B: Buckets> fmt::Debug for HttpRateLimit<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRateLimit")
            .field("inner", &self.inner)
            .field("when_limited", &self.settings.when)
            .field("headers", &self.settings.headers)
            .finish()
    }
}

impl<S, B: Buckets> HttpRateLimit<S, B> {
    pub(crate) fn new(inner: S, settings: Arc<Settings<B>>) -> Self {
        HttpRateLimit { inner, settings }
    }
}

/// What the bucket said about one request.
enum Verdict {
    /// Go ahead; the fields for the response if `RateLimitHeaders::Always`.
    Admit(Option<Admitted>),
    /// No token in time: `wait` until one comes (`None`: never).
    Refuse {
        wait: Option<Duration>,
        limiter: Option<RateLimiter>,
    },
    /// A token reserved for later: hold the request until then.
    Hold(Reservation),
}

impl<B: Buckets> Settings<B> {
    /// Decides on the token, with `WhenLimited::Reject`.
    #[inline]
    fn try_now(&self, lim: &RateLimiter) -> Verdict {
        match lim.try_acquire() {
            Ok(()) => Verdict::Admit(self.admitted(lim)),
            Err(not_until) => Verdict::Refuse {
                wait: not_until.wait_time(),
                limiter: self.refusal_fields().then(|| lim.clone()),
            },
        }
    }

    /// Decides on the token, with `WhenLimited::Wait`.
    fn reserve(&self, lim: &RateLimiter, max_wait: Duration) -> Verdict {
        let r = lim.reserve_n_within(1, max_wait);
        if !r.ok() {
            let wait = match lim.peek() {
                Ok(()) => Some(Duration::ZERO),
                Err(not_until) => not_until.wait_time(),
            };
            return Verdict::Refuse {
                wait,
                limiter: self.refusal_fields().then(|| lim.clone()),
            };
        }
        if r.is_due() {
            // Dropping a due reservation keeps its token taken.
            return Verdict::Admit(self.admitted(lim));
        }
        Verdict::Hold(r)
    }

    fn admitted(&self, lim: &RateLimiter) -> Option<Admitted> {
        if self.headers != RateLimitHeaders::Always {
            return None;
        }
        lim.standing().map(|s| Admitted::new(&self.policy, &s))
    }

    fn refusal_fields(&self) -> bool {
        self.headers != RateLimitHeaders::RetryAfterOnly
    }

    fn refusal<T: Default>(
        &self,
        wait: Option<Duration>,
        limiter: Option<&RateLimiter>,
    ) -> Response<T> {
        tracing::debug!(retry_after = ?wait, "http rate limit: refusing a request");
        let mut res = Response::new(T::default());
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        let standing = limiter.and_then(RateLimiter::standing);
        let fields = standing.as_ref().map(|s| (&*self.policy, s));
        write_refusal(res.headers_mut(), wait, fields);
        res
    }
}

impl<S, B, ReqBody, ResBody> Service<Request<ReqBody>> for HttpRateLimit<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    B: Buckets,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = HttpRateLimitFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let settings = &*self.settings;
        let (parts, body) = req.into_parts();
        let verdict = match settings.when {
            WhenLimited::Wait { max_wait, .. } => settings
                .buckets
                .with_bucket(&parts, |lim| settings.reserve(lim, max_wait)),
            _ => settings
                .buckets
                .with_bucket(&parts, |lim| settings.try_now(lim)),
        };
        let req = Request::from_parts(parts, body);
        match verdict {
            Ok(Verdict::Admit(fields)) => HttpRateLimitFuture::called(self.inner.call(req), fields),
            Ok(Verdict::Refuse { wait, limiter }) => {
                HttpRateLimitFuture::answered(settings.refusal(wait, limiter.as_ref()))
            }
            Ok(Verdict::Hold(r)) => self.hold(r, req),
            Err(status) => {
                tracing::debug!(%status, "http rate limit: a request without a key");
                let mut res = Response::new(ResBody::default());
                *res.status_mut() = status;
                HttpRateLimitFuture::answered(res)
            }
        }
    }
}

impl<S, B: Buckets> HttpRateLimit<S, B> {
    /// Holds `req` until its reserved token comes, if a slot is free.
    fn hold<ReqBody, ResBody>(
        &mut self,
        r: Reservation,
        req: Request<ReqBody>,
    ) -> HttpRateLimitFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
        ResBody: Default,
    {
        let settings = &*self.settings;
        let permit = settings
            .waiting
            .as_ref()
            .and_then(|slots| Arc::clone(slots).try_acquire_owned().ok());
        let Some(permit) = permit else {
            let wait = Some(r.delay());
            let limiter = settings.refusal_fields().then(|| r.limiter().clone());
            r.cancel();
            return HttpRateLimitFuture::answered(settings.refusal(wait, limiter.as_ref()));
        };
        let at = r.ready_at().unwrap_or_else(tokio::time::Instant::now);
        // The ready service goes with the request; this one continues with
        // a fresh clone (tower's "take the ready service" idiom).
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let always = settings.headers == RateLimitHeaders::Always;
        HttpRateLimitFuture {
            state: State::Held {
                held: Box::pin(Held {
                    sleep: tokio::time::sleep_until(at),
                    token: Some(CancelOnDrop::new(r)),
                    permit: Some(permit),
                    svc: ready,
                    req: Some(req),
                    policy: always.then(|| settings.policy.clone()),
                }),
            },
        }
    }
}

pin_project! {
    /// A request held for its token (boxed: the admitted path stays small).
    struct Held<S, ReqBody> {
        #[pin]
        sleep: tokio::time::Sleep,
        // Given back if the future is dropped before the token comes.
        token: Option<CancelOnDrop>,
        // The request's waiting slot, freed when the held state ends.
        permit: Option<OwnedSemaphorePermit>,
        svc: S,
        req: Option<Request<ReqBody>>,
        // The policy name, when admitted responses carry the fields.
        policy: Option<Box<str>>,
    }
}

pin_project! {
    /// The response future of [`HttpRateLimit`]: the inner service's
    /// future (plus the fields, with [`RateLimitHeaders::Always`]), a
    /// refusal ready at once, or a held request waiting for its token.
    ///
    /// Dropping it while the request is held gives the token back and
    /// frees the waiting slot; the inner service is not called.
    #[must_use = "futures do nothing unless polled"]
    pub struct HttpRateLimitFuture<S: Service<Request<ReqBody>>, ReqBody> {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S: Service<Request<ReqBody>>, ReqBody> {
        Called { #[pin] fut: S::Future, fields: Option<Admitted> },
        Answered { res: Option<S::Response> },
        Held { held: Pin<Box<Held<S, ReqBody>>> },
    }
}

impl<S: Service<Request<ReqBody>>, ReqBody> HttpRateLimitFuture<S, ReqBody> {
    fn called(fut: S::Future, fields: Option<Admitted>) -> Self {
        HttpRateLimitFuture {
            state: State::Called { fut, fields },
        }
    }

    fn answered(res: S::Response) -> Self {
        HttpRateLimitFuture {
            state: State::Answered { res: Some(res) },
        }
    }
}

impl<S: Service<Request<ReqBody>>, ReqBody> fmt::Debug for HttpRateLimitFuture<S, ReqBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Answered { .. } => "answered",
            State::Held { .. } => "held",
        };
        f.debug_struct("HttpRateLimitFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Future for HttpRateLimitFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Called { fut, fields } => {
                    let mut res = ready!(fut.poll(cx))?;
                    if let Some(fields) = fields.take() {
                        fields.write(res.headers_mut());
                    }
                    return Poll::Ready(Ok(res));
                }
                StateProj::Answered { res } => match res.take() {
                    Some(res) => return Poll::Ready(Ok(res)),
                    None => panic!("HttpRateLimitFuture polled after completion"),
                },
                StateProj::Held { held } => {
                    let (fut, fields) = ready!(held.as_mut().poll_token(cx));
                    self.as_mut()
                        .project()
                        .state
                        .set(State::Called { fut, fields });
                }
            }
        }
    }
}

impl<S: Service<Request<ReqBody>>, ReqBody> Held<S, ReqBody> {
    /// Waits for the token, then calls the service with it.
    fn poll_token(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<(S::Future, Option<Admitted>)> {
        let this = self.project();
        ready!(this.sleep.poll(cx));
        let (Some(token), Some(req)) = (this.token.take(), this.req.take()) else {
            panic!("HttpRateLimitFuture polled after completion");
        };
        let fields = match (this.policy.as_deref(), token.reservation()) {
            (Some(policy), Some(r)) => r.limiter().standing().map(|s| Admitted::new(policy, &s)),
            _ => None,
        };
        token.keep();
        // The slot is for waiting: the request no longer waits.
        drop(this.permit.take());
        Poll::Ready((this.svc.call(req), fields))
    }
}
