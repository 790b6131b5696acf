//! [`HttpRateLimitLayer`], its builder and settings, and the buckets it
//! takes tokens from.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::request::Parts;
use tokio::sync::Semaphore;
use tower_layer::Layer;
use weir_context::ConfigError;

use super::CONSTRUCT;
use super::headers::sf_string;
use super::key::RequestKey;
use super::service::HttpRateLimit;
use crate::keyed::KeyedRateLimiter;
use crate::limiter::RateLimiter;

/// What the layer does with a request whose token is not there yet.
///
/// The default is [`Reject`](Self::Reject): an HTTP client that is over its
/// rate gets `429 Too Many Requests` at once, with `Retry-After`; nothing
/// queues on the server. [`Wait`](Self::Wait) holds such requests until
/// their token comes, within two bounds; a request beyond either bound is
/// rejected in the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenLimited {
    /// Answer `429 Too Many Requests` when no token is there now (the
    /// default).
    #[default]
    Reject,
    /// Hold the request until its token comes, if that is within
    /// `max_wait` and fewer than `max_waiting` requests are already held;
    /// otherwise answer `429`. A held request takes its token when it is
    /// admitted, so the wait does not let more requests through than the
    /// rate.
    Wait {
        /// The longest a request is held. Zero is a [`ConfigError`] (use
        /// `Reject`); `Duration::MAX` holds it until its token comes,
        /// however far away.
        max_wait: Duration,
        /// How many requests may be held at once (across every clone of
        /// the service and every key). Zero is a [`ConfigError`]; above
        /// what a tokio semaphore holds it is lowered to that.
        max_waiting: usize,
    },
}

/// Which responses carry the `RateLimit-Policy` and `RateLimit` fields.
/// A refusal always carries `Retry-After` (unless no token can ever come).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RateLimitHeaders {
    /// Only the `429` answers (the default): the fields cost a few
    /// allocations per response, which admitted requests are spared.
    #[default]
    OnRefusal,
    /// Every response the layer sees: admitted ones get the fields after
    /// the inner service answers (replacing any it set).
    Always,
    /// None: refusals carry only `Retry-After`.
    RetryAfterOnly,
}

/// The buckets a layer takes tokens from: [`OneBucket`] (one limiter for
/// every request) or [`BucketPerKey`] (a bucket per request key). Sealed.
pub trait Buckets: sealed::Sealed + Clone + Send + Sync + 'static {}

mod sealed {
    use super::*;

    /// The per-request step: pick the request's bucket and run `f` on it,
    /// or say which status answers a request without a key.
    pub trait Sealed {
        fn with_bucket<R>(
            &self,
            req: &Parts,
            f: impl FnOnce(&RateLimiter) -> R,
        ) -> Result<R, StatusCode>;

        fn check(&self) -> Result<(), ConfigError>;
    }
}

/// One [`RateLimiter`] for every request
/// ([`HttpRateLimitLayer::builder`]).
#[derive(Debug, Clone)]
pub struct OneBucket {
    limiter: RateLimiter,
}

impl Buckets for OneBucket {}

impl sealed::Sealed for OneBucket {
    #[inline]
    fn with_bucket<R>(
        &self,
        _: &Parts,
        f: impl FnOnce(&RateLimiter) -> R,
    ) -> Result<R, StatusCode> {
        Ok(f(&self.limiter))
    }

    fn check(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// A bucket per request key, from a [`KeyedRateLimiter`]
/// ([`HttpRateLimitLayer::keyed`]).
pub struct BucketPerKey<X: RequestKey> {
    limiter: KeyedRateLimiter<X::Key>,
    key: X,
    missing: Option<X::Key>,
}

impl<X: RequestKey> Clone for BucketPerKey<X> {
    fn clone(&self) -> Self {
        BucketPerKey {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
            missing: self.missing.clone(),
        }
    }
}

impl<X: RequestKey + fmt::Debug> fmt::Debug for BucketPerKey<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketPerKey")
            .field("limiter", &self.limiter)
            .field("key", &self.key)
            .field("key_when_missing", &self.missing.is_some())
            .finish()
    }
}

impl<X: RequestKey> Buckets for BucketPerKey<X> {}

impl<X: RequestKey> sealed::Sealed for BucketPerKey<X> {
    #[inline]
    fn with_bucket<R>(
        &self,
        req: &Parts,
        f: impl FnOnce(&RateLimiter) -> R,
    ) -> Result<R, StatusCode> {
        match self.key.key(req) {
            Some(key) => Ok(self.limiter.with_limiter(&key, f)),
            None => match &self.missing {
                Some(key) => Ok(self.limiter.with_limiter(key, f)),
                None => Err(self.key.missing_status()),
            },
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.key.check()
    }
}

/// The checked settings every clone of a layer and its services share.
pub(crate) struct Settings<B> {
    pub(crate) buckets: B,
    pub(crate) when: WhenLimited,
    pub(crate) headers: RateLimitHeaders,
    /// The policy name as a Structured Field String.
    pub(crate) policy: Box<str>,
    /// Slots for held requests (`WhenLimited::Wait` only).
    pub(crate) waiting: Option<Arc<Semaphore>>,
}

/// Settings for an [`HttpRateLimitLayer`] before it is built: where the
/// tokens come from, [`WhenLimited`], [`RateLimitHeaders`] and the policy
/// name. Nothing is checked until [`build`](Self::build).
pub struct HttpRateLimitBuilder<B: Buckets> {
    buckets: B,
    when: WhenLimited,
    headers: RateLimitHeaders,
    policy: String,
}

impl<B: Buckets + fmt::Debug> fmt::Debug for HttpRateLimitBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRateLimitBuilder")
            .field("buckets", &self.buckets)
            .field("when_limited", &self.when)
            .field("headers", &self.headers)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<B: Buckets> HttpRateLimitBuilder<B> {
    fn new(buckets: B) -> Self {
        HttpRateLimitBuilder {
            buckets,
            when: WhenLimited::Reject,
            headers: RateLimitHeaders::OnRefusal,
            policy: "default".to_owned(),
        }
    }

    /// Reject (the default) or hold a request whose token is not there
    /// yet; see [`WhenLimited`].
    pub fn when_limited(mut self, when: WhenLimited) -> Self {
        self.when = when;
        self
    }

    /// Which responses carry the `RateLimit-Policy` and `RateLimit` fields
    /// (by default the refusals); see [`RateLimitHeaders`].
    pub fn headers(mut self, headers: RateLimitHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// The policy's name in the `RateLimit-Policy` and `RateLimit` fields
    /// (by default `default`): non-empty printable ASCII, checked at
    /// [`build`](Self::build).
    pub fn policy_name(mut self, name: impl Into<String>) -> Self {
        self.policy = name.into();
        self
    }

    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (construct `"http rate limit"`): a zero `max_wait`
    /// or `max_waiting` ([`Problem::Zero`](weir_context::Problem::Zero)),
    /// a policy name that is empty or not printable ASCII, or a key source
    /// whose own setting is invalid (a header name, a trusted proxy).
    pub fn build(self) -> Result<HttpRateLimitLayer<B>, ConfigError> {
        self.buckets.check()?;
        let policy = sf_string(&self.policy)?.into_boxed_str();
        let waiting = match self.when {
            WhenLimited::Reject => None,
            WhenLimited::Wait { max_wait, .. } if max_wait.is_zero() => {
                return Err(ConfigError::zero(CONSTRUCT, "max_wait"));
            }
            WhenLimited::Wait { max_waiting: 0, .. } => {
                return Err(ConfigError::zero(CONSTRUCT, "max_waiting"));
            }
            WhenLimited::Wait { max_waiting, .. } => Some(Arc::new(Semaphore::new(
                max_waiting.min(Semaphore::MAX_PERMITS),
            ))),
        };
        Ok(HttpRateLimitLayer {
            settings: Arc::new(Settings {
                buckets: self.buckets,
                when: self.when,
                headers: self.headers,
                policy,
                waiting,
            }),
        })
    }
}

/// A tower layer that rate-limits HTTP requests and answers a refusal
/// itself: `429 Too Many Requests` with `Retry-After` and the RateLimit
/// fields (see the [module docs](super)). Every clone and every service it
/// makes share its buckets, and its bound on held requests.
///
/// Made by [`builder`](Self::builder) (one limiter for every request) or
/// [`keyed`](Self::keyed) (a bucket per key), then `build()`.
pub struct HttpRateLimitLayer<B: Buckets = OneBucket> {
    settings: Arc<Settings<B>>,
}

impl<B: Buckets> Clone for HttpRateLimitLayer<B> {
    fn clone(&self) -> Self {
        HttpRateLimitLayer {
            settings: Arc::clone(&self.settings),
        }
    }
}

impl<B: Buckets + fmt::Debug> fmt::Debug for HttpRateLimitLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("HttpRateLimitLayer")
            .field("buckets", &s.buckets)
            .field("when_limited", &s.when)
            .field("headers", &s.headers)
            .field("policy", &s.policy)
            .finish()
    }
}

impl HttpRateLimitLayer<OneBucket> {
    /// A layer whose requests all take their tokens from `limiter` (and
    /// from every other holder of a clone of it).
    pub fn builder(limiter: RateLimiter) -> HttpRateLimitBuilder<OneBucket> {
        HttpRateLimitBuilder::new(OneBucket { limiter })
    }

    /// A layer with a bucket per key: `key` takes each request's key
    /// ([`KeyFromHeader`](super::KeyFromHeader),
    /// [`KeyFromPeer`](super::KeyFromPeer) or a closure), and `limiter`
    /// holds a bucket per key, with its default rate or the key's override.
    /// Call [`KeyedRateLimiter::retain_recent`] now and then to drop idle
    /// buckets.
    pub fn keyed<X: RequestKey>(
        limiter: KeyedRateLimiter<X::Key>,
        key: X,
    ) -> HttpRateLimitBuilder<BucketPerKey<X>> {
        HttpRateLimitBuilder::new(BucketPerKey {
            limiter,
            key,
            missing: None,
        })
    }
}

impl<X: RequestKey> HttpRateLimitBuilder<BucketPerKey<X>> {
    /// Requests without a key take their tokens from `key`'s bucket (one
    /// bucket shared by all of them) instead of being answered with the key
    /// source's [`missing_status`](RequestKey::missing_status).
    pub fn key_when_missing(mut self, key: X::Key) -> Self {
        self.buckets.missing = Some(key);
        self
    }
}

impl<B: Buckets> HttpRateLimitLayer<B> {
    /// The settings, for the service.
    pub(crate) fn settings(&self) -> &Arc<Settings<B>> {
        &self.settings
    }

    /// How many requests are held waiting for a token now (always 0 with
    /// [`WhenLimited::Reject`]).
    pub fn waiting(&self) -> usize {
        match (&self.settings.waiting, self.settings.when) {
            (Some(slots), WhenLimited::Wait { max_waiting, .. }) => {
                max_waiting.min(Semaphore::MAX_PERMITS) - slots.available_permits()
            }
            _ => 0,
        }
    }
}

impl<S, B: Buckets> Layer<S> for HttpRateLimitLayer<B> {
    type Service = HttpRateLimit<S, B>;

    fn layer(&self, inner: S) -> HttpRateLimit<S, B> {
        HttpRateLimit::new(inner, Arc::clone(self.settings()))
    }
}
