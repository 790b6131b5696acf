//! Rate limits for HTTP services (feature `http`): a tower layer that
//! answers a refused request itself, with `429 Too Many Requests`,
//! `Retry-After` and the RateLimit fields, for any [`http`] request and
//! response body (axum, hyper) so a service adds one layer and is
//! done (no `HandleErrorLayer`, no error mapping).
//!
//! Through the facade: `weir::rate::http`, with
//! `weir = { version = "0.1", features = ["http"] }`.
//!
//! | item | for |
//! |---|---|
//! | [`HttpRateLimitLayer::builder`] | one [`RateLimiter`](crate::RateLimiter) for every request |
//! | [`HttpRateLimitLayer::keyed`] | a bucket per key, from a [`KeyedRateLimiter`](crate::KeyedRateLimiter) |
//! | [`KeyFromHeader`], [`KeyFromPeer`], a closure | where the key comes from ([`RequestKey`]) |
//! | [`WhenLimited`] | reject at once (the default) or hold requests, within bounds |
//! | [`RateLimitHeaders`] | which responses carry the RateLimit fields |
//!
//! # Examples
//!
//! ```
//! # mod weir { pub use weir_rate as rate; }
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use weir::rate::http::{HttpRateLimitLayer, KeyFromHeader};
//! use weir::rate::{KeyedRateLimiter, Rate};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 2 requests a second per API key, 2 at once.
//! let per_key = KeyedRateLimiter::new(Rate::per_second(2).burst(2))?;
//! let svc = ServiceBuilder::new()
//!     .layer(HttpRateLimitLayer::keyed(per_key, KeyFromHeader::new("x-api-key")).build()?)
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new("hello".to_owned()))
//!     });
//!
//! let req = || Request::get("/").header("x-api-key", "k1").body(String::new()).unwrap();
//! assert_eq!(svc.clone().oneshot(req()).await?.status(), StatusCode::OK);
//! assert_eq!(svc.clone().oneshot(req()).await?.status(), StatusCode::OK);
//! let refused = svc.clone().oneshot(req()).await?;
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["retry-after"], "1"); // 500 ms, rounded up
//! assert_eq!(refused.headers()["ratelimit-policy"], r#""default";q=2;w=1"#);
//! assert_eq!(refused.headers()["ratelimit"], r#""default";r=0;t=1"#);
//! # Ok(())
//! # }
//! ```
//!
//! # The fields
//!
//! They follow draft-ietf-httpapi-ratelimit-headers-11 (May 2026; an
//! Internet-Draft, so they may still change): `RateLimit-Policy` and
//! `RateLimit` are Structured Field Lists of one Item, the policy name as a
//! String (`"default"`, see
//! [`policy_name`](HttpRateLimitBuilder::policy_name)) with parameters.
//! For a bucket of rate `R` and burst `B`:
//!
//! | field | value |
//! |---|---|
//! | `Retry-After` | on a `429`: seconds until the request's token comes, rounded up (a client that waits that long is admitted, if nobody took the token meanwhile); left out when no token can ever come (a spent [`Rate::zero`](crate::Rate::zero) bucket) |
//! | `RateLimit-Policy` | `"default";q=Q;w=W`: `W` is the time to refill the whole bucket (`B / R`), at least 1 s (the field has no fractions), rounded up; `Q = R × W`, what the rate grants over it. A bucket that never refills: `q=B` and no `w` |
//! | `RateLimit` | `"default";r=N;t=T`: `N` whole tokens left, `T` seconds (rounded up) until one more comes, the draft's *effective window*, during which the client can use no more than `N`; no `t` when the bucket is full. On a `429`, `r=0` and `t` equals `Retry-After`, as the draft asks (`Retry-After` no earlier than the window's end) |
//!
//! An unlimited rate has no fields.
//!
//! # Waiting or rejecting
//!
//! [`WhenLimited::Reject`] is the default: a request over the rate is
//! answered at once, and nothing queues on the server, which is what an
//! HTTP client with its own timeouts and retries needs. (The `tower`
//! module's layers wait for a token unless given a `max_wait`.)
//! [`WhenLimited::Wait`] holds requests for their token instead, up to
//! `max_wait` each and `max_waiting` at once; beyond either, `429`.
//!
//! # Errors, cancellation, panics, drop
//!
//! - Bad settings are a [`ConfigError`](weir_context::ConfigError) from
//!   [`build`](HttpRateLimitBuilder::build) (construct
//!   `"http rate limit"`): a zero wait bound or slot count, an invalid
//!   policy name, header name or trusted proxy.
//! - The layer adds no error: the service's error is the inner service's.
//!   A refusal is a response; so is a request without a key (`400`, or
//!   `500` when the server does not give [`KeyFromPeer`] its peer address).
//!   Each is a `DEBUG` event (the client receives it).
//! - Dropping a response future while its request is held gives the token
//!   back and frees the slot; the inner service is never called. Dropping
//!   it after the call drops the inner service's future.
//! - Nothing is spawned: nothing outlives the service.
//! - [`HttpRateLimitFuture`] panics if polled after it completed, as
//!   futures may.

mod headers;
mod key;
mod layer;
mod service;

pub use key::{KeyFromHeader, KeyFromPeer, RequestKey};
pub use layer::{
    BucketPerKey, Buckets, HttpRateLimitBuilder, HttpRateLimitLayer, OneBucket, RateLimitHeaders,
    WhenLimited,
};
pub use service::{HttpRateLimit, HttpRateLimitFuture};

/// The construct named in this module's [`ConfigError`](weir_context::ConfigError)s.
const CONSTRUCT: &str = "http rate limit";
